//! The idempotency journal of the `http` source under EFFECTIVELY_ONCE: for
//! each request that carried an idempotency key, the key, the sequences its
//! records were given, a digest of its body, and when it came. A line is
//! written and synced before the records are handed to the runtime, so a
//! key is never published without its line.
//!
//! On start the runtime says which sequence was the last published. A key
//! whose records are at or below it was published: a retry of it is
//! answered without publishing. A key above it was not (the runtime
//! publishes in sequence order, each request in one transaction): its line
//! is dropped and a retry publishes the records under new sequences.
//!
//! A line counts only when whole, ended by its newline: a line cut short by
//! a crash, even inside a multi-byte character, is skipped. While the
//! source runs the journal is compacted, keeping the keys within retention
//! and those on their way (see [`Journal::compact`]).
//!
//! A key is remembered scoped by the topic its request named (see
//! `server::scoped`): `k <first> <last> <at> <digest> <topic>\t<key>`.
//! Lines of the older form, `<first> <last> <at> <digest> <key>`, are keys
//! of the connector's own topic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One request's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    /// The sequences of its first and last record.
    pub(crate) first: u64,
    pub(crate) last: u64,
    /// Hex SHA-256 of the request's body.
    pub(crate) digest: String,
    /// Unix seconds when it was accepted.
    pub(crate) at: u64,
}

impl Entry {
    fn line(&self) -> String {
        format!(
            "k {} {} {} {} {}\n",
            self.first, self.last, self.at, self.digest, self.key
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let (line, scoped) = match line.strip_prefix("k ") {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let mut parts = line.splitn(5, ' ');
        let first = parts.next()?.parse().ok()?;
        let last = parts.next()?.parse().ok()?;
        let at = parts.next()?.parse().ok()?;
        let digest = parts.next()?.to_owned();
        let key = parts.next()?;
        if first > last || key.is_empty() {
            return None;
        }
        Some(Self {
            key: if scoped {
                key.to_owned()
            } else {
                super::server::scoped(None, key)
            },
            first,
            last,
            digest,
            at,
        })
    }
}

/// The journal file, appended to.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    file: Arc<Mutex<std::fs::File>>,
    path: PathBuf,
}

/// What a journal held when it was opened.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) journal: Journal,
    /// The keys whose records were published, still within retention.
    pub(crate) published: Vec<Entry>,
    /// The highest sequence any line ever gave out.
    pub(crate) last_given: u64,
}

/// The journal of the source `name` in `dir`.
pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{safe}.idempotency"))
}

/// Open the journal at `path`, keeping the published keys younger than
/// `retention_secs` at `now`, and writing it back compacted.
pub(crate) fn open(
    path: &Path,
    published: Option<u64>,
    retention_secs: u64,
    now: u64,
) -> std::io::Result<Opened> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut last_given = 0;
    let mut kept = Vec::new();
    // Only whole lines: what follows the last newline was cut short.
    let whole = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(&bytes[..0], |end| &bytes[..end]);
    for line in whole.split(|b| *b == b'\n') {
        // A line that is not text was damaged: it is skipped like a torn one.
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if let Some(given) = line.strip_prefix("given ") {
            last_given = last_given.max(given.trim().parse().unwrap_or(0));
            continue;
        }
        // A line cut short by a crash was never acted on: its records were
        // not handed over before the line was synced.
        let Some(entry) = Entry::parse(line) else {
            continue;
        };
        last_given = last_given.max(entry.last);
        let was_published = published.is_some_and(|p| entry.last <= p);
        if was_published && now.saturating_sub(entry.at) <= retention_secs {
            kept.push(entry);
        }
    }
    rewrite(path, last_given, &kept)?;
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    Ok(Opened {
        journal: Journal {
            file: Arc::new(Mutex::new(file)),
            path: path.to_owned(),
        },
        published: kept,
        last_given,
    })
}

/// Write the journal at `path` anew, holding `entries` (see
/// [`crate::state_file`]).
fn rewrite(path: &Path, last_given: u64, entries: &[Entry]) -> std::io::Result<()> {
    let mut text = format!("given {last_given}\n");
    for entry in entries {
        text.push_str(&entry.line());
    }
    crate::state_file::replace(path, text.as_bytes())
}

impl Journal {
    /// Write the journal anew with only `entries`, which must hold every
    /// key still remembered and every key on its way, and `last_given`.
    /// Appends wait meanwhile.
    pub(crate) async fn compact(
        &self,
        last_given: u64,
        entries: Vec<Entry>,
    ) -> std::io::Result<()> {
        let (file, path) = (Arc::clone(&self.file), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let mut f = file
                .lock()
                .map_err(|_| std::io::Error::other("the journal's lock is poisoned"))?;
            let rewritten = rewrite(&path, last_given, &entries);
            // The new file may be in place even when the rewrite failed
            // after its rename (syncing the directory): appends go to the
            // file at `path`, whichever it is, never to one renamed over.
            *f = std::fs::OpenOptions::new().append(true).open(&path)?;
            rewritten
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Append `entries` and sync them to disk.
    pub(crate) async fn append(&self, entries: Vec<Entry>) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            let text: String = entries.iter().map(Entry::line).collect();
            let mut f = file
                .lock()
                .map_err(|_| std::io::Error::other("the journal's lock is poisoned"))?;
            f.write_all(text.as_bytes())?;
            f.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, first: u64, last: u64, at: u64) -> Entry {
        Entry {
            key: crate::http_source::server::scoped(None, key),
            first,
            last,
            digest: "d".repeat(64),
            at,
        }
    }

    #[tokio::test]
    async fn published_keys_survive_a_restart_and_unpublished_ones_do_not() {
        let dir = std::env::temp_dir().join(format!("sluice-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = path(&dir, "public/default/orders api");
        assert!(path.ends_with("public_default_orders_api.idempotency"));
        let _ = std::fs::remove_file(&path);

        let opened = open(&path, None, 100, 1000).unwrap();
        assert_eq!((opened.published.len(), opened.last_given), (0, 0));
        opened
            .journal
            .append(vec![
                entry("old", 1, 1, 10),
                entry("a key with spaces", 2, 4, 1000),
                entry("late", 5, 5, 1000),
            ])
            .await
            .unwrap();
        // A line cut short by a crash, inside a two-byte character.
        let mut torn = b"k 6 6 1000 ".to_vec();
        torn.extend_from_slice(&"d".repeat(64).into_bytes());
        torn.extend_from_slice(" \tcaf\u{e9}".as_bytes());
        torn.pop();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&torn)
            .unwrap();

        // The runtime published up to 4: "late" was not published, "old"
        // is past retention, and the torn line is skipped.
        let opened = open(&path, Some(4), 100, 1050).unwrap();
        assert_eq!(opened.published, [entry("a key with spaces", 2, 4, 1000)]);
        assert_eq!(opened.last_given, 5);
        // Compacted, and what it gave out is remembered even with no line left.
        let opened = open(&path, Some(4), 10, 5000).unwrap();
        assert!(opened.published.is_empty());
        assert_eq!(opened.last_given, 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lines_of_the_older_form_are_keys_of_the_connectors_own_topic() {
        let digest = "d".repeat(64);
        let old = Entry::parse(&format!("2 4 1000 {digest} a key")).unwrap();
        assert_eq!(old, entry("a key", 2, 4, 1000));
        let new = Entry::parse(&format!("k 2 4 1000 {digest} payments\ta key")).unwrap();
        assert_eq!(new.key, "payments\ta key");
        assert_eq!(Entry::parse(new.line().trim_end_matches('\n')), Some(new));
        assert_eq!(Entry::parse(&format!("4 2 1000 {digest} k")), None);
    }
}
