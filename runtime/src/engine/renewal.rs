//! Connections that outlive their token. The Pulsar client presents the
//! token it was built with on every connection it opens, and does not tell
//! the broker that it can answer a re-authentication challenge, so the
//! broker closes its connections once that token expires. A connector
//! therefore ends its run gracefully, as on shutdown (draining what is in
//! flight), a little before the token expires, and starts again on a new
//! client with the current token. Nothing fails and nothing is lost, under
//! every guarantee.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::info;

/// The stop signal for one run on one client: the process's shutdown, or
/// the client's credentials coming due.
pub(crate) struct Run {
    /// Cancelled on shutdown or renewal.
    pub(crate) stop: CancellationToken,
    renewing: Arc<AtomicBool>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl Run {
    /// A run that stops with `shutdown`, or at `renew_at` to renew.
    pub(crate) fn new(
        shutdown: &CancellationToken,
        renew_at: Option<Instant>,
        connector: &str,
    ) -> Self {
        let stop = shutdown.child_token();
        let renewing = Arc::new(AtomicBool::new(false));
        let timer = renew_at.map(|at| {
            let (stop, renewing, connector) = (stop.clone(), Arc::clone(&renewing), connector.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                info!(%connector, "the connection's token expires soon: reconnecting with a fresh one");
                renewing.store(true, Ordering::SeqCst);
                stop.cancel();
            })
        });
        Self {
            stop,
            renewing,
            timer,
        }
    }

    /// Whether the run stopped to renew its credentials, not for shutdown.
    pub(crate) fn renewing(&self, shutdown: &CancellationToken) -> bool {
        self.renewing.load(Ordering::SeqCst) && !shutdown.is_cancelled()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}
