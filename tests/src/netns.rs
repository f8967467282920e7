//! A sluice process in a network namespace of its own (`scripts/netns`,
//! root only), to cut it off from the broker, from Postgres or from both,
//! and heal it. From inside, the broker is [`PULSAR_URL`] (a listener that
//! advertises the address the namespace reaches) and Postgres is on
//! [`HOST`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

use crate::Sluice;

/// This machine, as a namespace reaches it.
pub const HOST: &str = "10.200.0.1";
/// The broker, from a namespace.
pub const PULSAR_URL: &str = "pulsar://10.200.0.1:6652";

/// What to cut a namespace off from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The broker's namespace listener.
    Broker,
    /// Postgres.
    Postgres,
    /// This machine altogether.
    All,
}

impl Cut {
    fn word(self) -> &'static str {
        match self {
            Self::Broker => "broker",
            Self::Postgres => "postgres",
            Self::All => "all",
        }
    }
}

/// A network namespace, deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    n: u32,
}

fn script() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns")
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(script())
        .args(args)
        .output()
        .context("run scripts/netns")?;
    if !out.status.success() {
        bail!(
            "scripts/netns {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Netns {
    /// A new namespace, with a number no other one of this machine has.
    pub fn new() -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = std::process::id() % 200;
        for _ in 0..250 {
            let n = (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 250 + 1;
            let taken = || std::path::Path::new(&format!("/run/netns/sluice-{n}")).exists();
            if taken() {
                continue;
            }
            match run(&["add", &n.to_string()]) {
                Ok(()) => return Ok(Self { n }),
                // Another run took the number in between.
                Err(_) if taken() => continue,
                Err(e) => return Err(e),
            }
        }
        bail!("no free namespace number")
    }

    /// The namespace's own address.
    pub fn address(&self) -> String {
        format!("10.200.{}.2", self.n)
    }

    /// Start `sluice run` inside it, its HTTP endpoints on the
    /// namespace's own address.
    pub fn start(&self, dir: &std::path::Path, config: &str, port: u16) -> anyhow::Result<Sluice> {
        let ns = format!("sluice-{}", self.n);
        let mut sluice =
            Sluice::start_under(&["ip", "netns", "exec", &ns], dir, config, port, &[])?;
        sluice.http_host = self.address();
        Ok(sluice)
    }

    /// Drop every packet between it and `what`, both ways.
    pub fn cut(&self, what: Cut) -> anyhow::Result<()> {
        run(&["cut", &self.n.to_string(), what.word()])
    }

    /// Whether a TCP connection from inside reaches this machine's `port`
    /// within 2 s (tried on a blocking thread: the test's runtime goes on).
    pub async fn reaches(&self, port: u16) -> anyhow::Result<bool> {
        let ns = format!("sluice-{}", self.n);
        tokio::task::spawn_blocking(move || {
            let status = std::process::Command::new("ip")
                .args(["netns", "exec", &ns])
                .args(["timeout", "2", "bash", "-c"])
                .arg(format!("exec 3<>/dev/tcp/{HOST}/{port}"))
                .stderr(std::process::Stdio::null())
                .status()?;
            Ok(status.success())
        })
        .await?
    }

    /// Let every packet through again.
    pub fn heal(&self) -> anyhow::Result<()> {
        run(&["heal", &self.n.to_string()])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["del", &self.n.to_string()]);
    }
}
