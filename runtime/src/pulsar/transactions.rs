//! Transactions: open, register topics, commit and abort.

use std::time::Duration;

use magnetar::runtime_tokio as rt;

use super::{Client, PulsarError, dial};

/// An open Pulsar transaction. magnetar does not register the topics a
/// transaction writes (decision record 0001): [`Client::register`] must be
/// called for each before the first send, or their readers stall until the
/// transaction times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Txn {
    pub(super) id: magnetar::proto::TxnId,
}

impl Txn {
    /// The id as text (`most:least`), to find the transaction again.
    pub fn id_text(&self) -> String {
        format!("{}:{}", self.id.most_sig_bits, self.id.least_sig_bits)
    }

    /// A transaction from [`Txn::id_text`].
    pub fn from_id_text(text: &str) -> Option<Self> {
        let (most, least) = text.split_once(':')?;
        Some(Self {
            id: magnetar::proto::TxnId {
                most_sig_bits: most.parse().ok()?,
                least_sig_bits: least.parse().ok()?,
            },
        })
    }
}

impl Client {
    /// The connection that talks to the transaction coordinator, opened on
    /// first use. It is apart from magnetar's client, whose transaction
    /// handle cannot be rebuilt from an id, which aborting a crashed
    /// instance's transaction needs.
    async fn coordinator(&self) -> Result<&rt::Client, PulsarError> {
        self.coordinator
            .get_or_try_init(|| async {
                // The same credentials and TLS as the main client's.
                let context = format!(
                    "connect to the transaction coordinator at {}",
                    self.settings.service_url
                );
                dial(&self.settings, &self.credentials, &context, None).await
            })
            .await
    }

    /// Open a transaction that the coordinator aborts after `timeout`.
    pub async fn begin(&self, timeout: Duration) -> Result<Txn, PulsarError> {
        let id = self
            .coordinator()
            .await?
            .new_txn(timeout)
            .await
            .map_err(|e| PulsarError::new("open a transaction", e))?;
        Ok(Txn { id })
    }

    /// Tell the coordinator that `txn` writes to `topic`.
    pub async fn register(&self, txn: &Txn, topic: &str) -> Result<(), PulsarError> {
        self.coordinator()
            .await?
            .add_partition_to_txn(txn.id, topic)
            .await
            .map_err(|e| PulsarError::new(format!("add {topic} to a transaction"), e))
    }

    /// Commit: everything sent in the transaction becomes visible at once.
    pub async fn commit(&self, txn: Txn) -> Result<(), PulsarError> {
        let state = self
            .coordinator()
            .await?
            .end_txn(txn.id, magnetar::proto::TxnAction::Commit)
            .await
            .map_err(|e| PulsarError::new("commit a transaction", e))?;
        match state {
            magnetar::TxnState::Committed => Ok(()),
            other => Err(PulsarError::from_message(format!(
                "the transaction ended {other:?}, not committed"
            ))),
        }
    }

    /// Abort: nothing sent in the transaction becomes visible.
    pub async fn abort(&self, txn: Txn) -> Result<(), PulsarError> {
        self.coordinator()
            .await?
            .end_txn(txn.id, magnetar::proto::TxnAction::Abort)
            .await
            .map(|_| ())
            .map_err(|e| PulsarError::new("abort a transaction", e))
    }

    /// Abort a transaction that another connection opened, such as one a
    /// crashed or fenced-out instance left open, and say how it ended. An
    /// error means the coordinator did not answer: the transaction may
    /// still be open, and commit.
    pub async fn abort_orphan(&self, txn: Txn) -> Result<OrphanEnd, PulsarError> {
        // The client waits for the coordinator's answer without a deadline.
        tokio::time::timeout(ORPHAN_ABORT_WITHIN, self.end_orphan(txn))
            .await
            .unwrap_or_else(|_| {
                Err(PulsarError::from_message(format!(
                    "abort a transaction: the coordinator did not answer within {} s",
                    ORPHAN_ABORT_WITHIN.as_secs()
                )))
            })
    }

    async fn end_orphan(&self, txn: Txn) -> Result<OrphanEnd, PulsarError> {
        let coordinator = self.coordinator().await?;
        // The coordinator answers only once a transaction was opened on the
        // connection; a fresh connection opens and aborts one first.
        let probe = coordinator
            .new_txn(Duration::from_secs(10))
            .await
            .map_err(|e| PulsarError::new("open a transaction", e))?;
        let _ = coordinator
            .end_txn(probe, magnetar::proto::TxnAction::Abort)
            .await;
        match coordinator
            .end_txn(txn.id, magnetar::proto::TxnAction::Abort)
            .await
        {
            Ok(_) => Ok(OrphanEnd::Aborted),
            Err(e) => refused_abort(&e).ok_or_else(|| PulsarError::new("abort a transaction", e)),
        }
    }

    /// Whether the broker runs transactions: open one and abort it.
    pub async fn check_transactions(&self) -> Result<(), PulsarError> {
        let txn = self.begin(Duration::from_secs(10)).await?;
        self.abort(txn).await
    }
}

/// What the coordinator's refusal of an abort says of the transaction, if
/// it says anything: the client's words for TransactionNotFound (and
/// TransactionCoordinatorNotFound, which it does not tell apart) and for
/// InvalidTxnStatus. The test below pins them to the client's version.
fn refused_abort(error: &rt::ClientError) -> Option<OrphanEnd> {
    let text = error.to_string();
    if text.contains("transaction not found") {
        Some(OrphanEnd::Unknown)
    } else if text.contains("transaction aborted") {
        Some(OrphanEnd::Committing)
    } else {
        None
    }
}

/// How long the abort of another instance's transaction may wait for the
/// coordinator.
const ORPHAN_ABORT_WITHIN: Duration = Duration::from_secs(15);

/// How the abort of another instance's transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanEnd {
    /// Aborted now: it never commits.
    Aborted,
    /// The coordinator no longer knows it: it ended (committed, with its
    /// markers written; aborted; or timed out) and was forgotten, or never
    /// began.
    Unknown,
    /// It is being committed (the coordinator refuses the abort of a
    /// transaction in that state): its marker shows once that is done.
    Committing,
}

#[cfg(test)]
mod tests {
    use super::*;
    use magnetar::proto::TxnError;
    use magnetar::proto::pb::ServerError;

    /// The refusal as the client hands it over: its end_txn wraps the
    /// coordinator's error this way.
    fn refusal(code: ServerError) -> rt::ClientError {
        let error = TxnError::from_broker(code as i32, "from the coordinator".into());
        rt::ClientError::Other(format!("end_txn: {error}"))
    }

    #[test]
    fn the_coordinators_refusals_of_an_abort_are_told_apart() {
        assert_eq!(
            refused_abort(&refusal(ServerError::TransactionNotFound)),
            Some(OrphanEnd::Unknown)
        );
        assert_eq!(
            refused_abort(&refusal(ServerError::InvalidTxnStatus)),
            Some(OrphanEnd::Committing)
        );
        // Anything else may leave the transaction open: not an answer.
        assert_eq!(refused_abort(&refusal(ServerError::NotAllowedError)), None);
        assert_eq!(refused_abort(&rt::ClientError::PeerClosed), None);
    }
}
