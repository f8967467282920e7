//! Fault injection for tests of recovery. `SLUICE_FAILPOINT=<name>@<n>`
//! makes the process abort, as `kill -9` would (no draining, no
//! flushing), the `n`th time execution passes the point `name`;
//! `<name>@<n>:panic` makes that pass and every later one panic instead,
//! as a bug would. Unset, a point costs one load of a set-once value.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The armed point, the pass that fires it, and whether it panics.
static ARMED: OnceLock<Option<(String, u64, bool)>> = OnceLock::new();
static PASSES: AtomicU64 = AtomicU64::new(0);

fn armed() -> Option<&'static (String, u64, bool)> {
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("SLUICE_FAILPOINT").ok()?;
            let (name, n) = spec.split_once('@').unwrap_or((&spec, "1"));
            let (n, panics) = match n.strip_suffix(":panic") {
                Some(n) => (n, true),
                None => (n, false),
            };
            Some((name.to_owned(), n.parse().ok()?, panics))
        })
        .as_ref()
}

/// Execution passes the point `name`.
pub(crate) fn pass(name: &str) {
    let Some((armed, n, panics)) = armed() else {
        return;
    };
    if armed != name {
        return;
    }
    let pass = PASSES.fetch_add(1, Ordering::Relaxed) + 1;
    if *panics && pass >= *n {
        panic!("failpoint {name} reached (pass {pass})");
    }
    if pass == *n {
        eprintln!("sluice: failpoint {name} reached (pass {n}); aborting");
        std::process::abort();
    }
}
