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
            // The client's words for the coordinator's TransactionNotFound
            // and InvalidTxnStatus (magnetar 1.7.4's TxnError).
            Err(e) if e.to_string().contains("transaction not found") => Ok(OrphanEnd::Unknown),
            Err(e) if e.to_string().contains("transaction aborted") => Ok(OrphanEnd::Committing),
            Err(e) => Err(PulsarError::new("abort a transaction", e)),
        }
    }

    /// Whether the broker runs transactions: open one and abort it.
    pub async fn check_transactions(&self) -> Result<(), PulsarError> {
        let txn = self.begin(Duration::from_secs(10)).await?;
        self.abort(txn).await
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
