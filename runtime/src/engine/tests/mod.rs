//! The engine's own logic, tested in memory: the in-memory broker
//! ([`super::memory`]) stands for Pulsar, and the script connectors
//! ([`super::testkit`]) for the systems. No service runs; time is paused
//! where the engine waits out a backoff.

mod effectively_once;
mod sink;
mod source;
mod supervise;
mod takeover;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::memory::Memory;
use super::status::ConnectorStatus;

/// A status for a connector under test.
fn status(kind: &'static str) -> Arc<ConnectorStatus> {
    Arc::new(ConnectorStatus::new(kind, kind))
}

/// How long a test waits for what it expects (in paused time, where
/// waiting costs nothing), before it fails.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Run `run` until `done` holds of the broker, then ask it to stop, and
/// give what it returned. A run that ends by itself first returns at once;
/// one that gets nowhere fails the test after [`LIMIT`].
async fn until<T>(
    broker: &Memory,
    shutdown: &CancellationToken,
    run: impl Future<Output = T>,
    done: impl FnMut(&Memory) -> bool,
) -> T {
    let stop = async {
        broker.until(done).await;
        shutdown.cancel();
        std::future::pending::<()>().await;
    };
    tokio::select! {
        r = run => r,
        () = stop => unreachable!(),
        () = tokio::time::sleep(LIMIT) => panic!("the run did not get there in {LIMIT:?}"),
    }
}

/// The values of `n` records `r0`, `r1`, …
fn values(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("r{i}")).collect()
}
