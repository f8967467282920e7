//! Fault injection for tests of recovery. `SLUICE_FAILPOINT=<name>@<n>`
//! makes the process abort, as `kill -9` would (no draining, no
//! flushing), the `n`th time execution passes the point `name`. Unset, a
//! point costs one load of a set-once value.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The armed point and the pass that fires it.
static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static PASSES: AtomicU64 = AtomicU64::new(0);

fn armed() -> Option<&'static (String, u64)> {
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("SLUICE_FAILPOINT").ok()?;
            let (name, n) = spec.split_once('@').unwrap_or((&spec, "1"));
            Some((name.to_owned(), n.parse().ok()?))
        })
        .as_ref()
}

/// Execution passes the point `name`.
pub(crate) fn pass(name: &str) {
    let Some((armed, n)) = armed() else {
        return;
    };
    if armed == name && PASSES.fetch_add(1, Ordering::Relaxed) + 1 == *n {
        eprintln!("sluice: failpoint {name} reached (pass {n}); aborting");
        std::process::abort();
    }
}
