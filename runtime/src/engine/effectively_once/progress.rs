//! What a message on a source's offsets topic says, and what a backlog of
//! them says was committed.

use std::collections::HashSet;

use sluice_connectors::{Position, Sequence};

/// What a message on the offsets topic says: on a marker, the progress
/// its transaction commits, and which transaction that is; on an intent,
/// the transaction opened, and the progress committed when it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// The highest sequence published.
    pub(crate) sequence: Option<Sequence>,
    /// The last source position committed.
    pub(crate) position: Option<Position>,
    /// On an intent: the id of the transaction it opens.
    pub(crate) open: Option<String>,
    /// On a marker: the id of the transaction it belongs to (absent on
    /// markers written before transactions were opened ahead).
    pub(crate) txn: Option<String>,
    /// The source's state at the position (see `SourceBatch::state`).
    pub(crate) state: Option<String>,
    /// What the source that wrote it reads (`SourceConnector::origin`);
    /// absent on markers of a source that does not say, or written before
    /// it was recorded.
    pub(crate) origin: Option<String>,
}

impl Progress {
    pub(super) fn to_json(&self) -> Vec<u8> {
        let mut doc = serde_json::json!({
            "sequence": self.sequence.map(|s| s.to_string()),
            "position": self.position.map(|p| p.0),
        });
        if let Some(open) = &self.open {
            doc["open"] = serde_json::Value::String(open.clone());
        }
        if let Some(txn) = &self.txn {
            doc["txn"] = serde_json::Value::String(txn.clone());
        }
        if let Some(state) = &self.state {
            doc["state"] = serde_json::Value::String(state.clone());
        }
        if let Some(origin) = &self.origin {
            doc["origin"] = serde_json::Value::String(origin.clone());
        }
        doc.to_string().into_bytes()
    }

    pub(super) fn from_json(bytes: &[u8]) -> Option<Self> {
        let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let sequence = match &doc["sequence"] {
            serde_json::Value::Null => None,
            v => Some(v.as_str()?.parse().ok()?),
        };
        let position = match &doc["position"] {
            serde_json::Value::Null => None,
            v => Some(Position(v.as_u64()?)),
        };
        let text = |key: &str| match &doc[key] {
            serde_json::Value::Null => Some(None),
            v => v.as_str().map(|t| Some(t.to_owned())),
        };
        Some(Self {
            sequence,
            position,
            open: text("open")?,
            txn: text("txn")?,
            state: text("state")?,
            origin: text("origin")?,
        })
    }
}

/// Of the messages on an offsets topic, in order: how many precede the
/// last marker (they may be released), the progress committed (the last
/// marker's), and the transactions whose intent has no marker, which never
/// committed. A transaction is opened ahead of its use, so its intent can
/// come before an earlier transaction's marker. Without a marker, the
/// first intent's progress is the committed one: it was written when that
/// was the latest.
pub(super) fn committed(messages: &[Progress]) -> (usize, Progress, Vec<&String>) {
    let last_marker = messages.iter().rposition(|m| m.open.is_none());
    let (keep, progress) = match last_marker {
        Some(i) => (
            i,
            Progress {
                txn: None,
                ..messages[i].clone()
            },
        ),
        None => (
            0,
            messages
                .first()
                .map(|m| Progress {
                    open: None,
                    ..m.clone()
                })
                .unwrap_or_default(),
        ),
    };
    let marked: HashSet<&String> = messages.iter().filter_map(|m| m.txn.as_ref()).collect();
    // A marker that names no transaction was written when transactions
    // were opened one at a time: every intent before it committed.
    let legacy = messages
        .iter()
        .rposition(|m| m.open.is_none() && m.txn.is_none())
        .map_or(0, |i| i + 1);
    let orphans = messages[legacy..]
        .iter()
        .filter_map(|m| m.open.as_ref())
        .filter(|id| !marked.contains(id))
        .collect();
    (keep, progress, orphans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        let p = Progress {
            sequence: Some(Sequence::from_parts(7, 3)),
            position: Some(Position(9)),
            open: None,
            txn: Some("1:1".into()),
            state: Some("{\"tables\":[]}".into()),
            origin: Some("postgres database orders, slot sluice".into()),
        };
        assert_eq!(Progress::from_json(&p.to_json()), Some(p.clone()));
        let intent = Progress {
            open: Some("1:2".into()),
            txn: None,
            ..p
        };
        assert_eq!(Progress::from_json(&intent.to_json()), Some(intent));
        assert_eq!(
            Progress::from_json(&Progress::default().to_json()),
            Some(Progress::default())
        );
        assert_eq!(Progress::from_json(br#"{"sequence": 5}"#), None);
    }

    /// The progress of sequence `n`, as committed.
    fn at(n: u64) -> Progress {
        Progress {
            sequence: Some(Sequence::from_parts(n, 0)),
            position: Some(Position(n * 10)),
            ..Progress::default()
        }
    }

    /// The marker of transaction `txn`, committing sequence `n`.
    fn marker(n: u64, txn: &str) -> Progress {
        Progress {
            txn: Some(txn.into()),
            ..at(n)
        }
    }

    /// The intent of transaction `txn`, written when `n` had committed.
    fn intent(n: u64, txn: &str) -> Progress {
        Progress {
            open: Some(txn.into()),
            ..at(n)
        }
    }

    #[test]
    fn the_progress_is_the_last_markers_and_unmarked_intents_are_orphans() {
        // Nothing yet.
        assert_eq!(committed(&[]), (0, Progress::default(), vec![]));
        // A clean stop: every intent has its marker.
        let clean = [
            intent(1, "0:1"),
            marker(2, "0:1"),
            intent(2, "0:2"),
            marker(3, "0:2"),
        ];
        assert_eq!(committed(&clean), (3, at(3), vec![]));
        // Killed while 0:3 committed and 0:4, opened ahead while 0:3
        // filled, was filling: 0:4's intent comes before 0:3's marker and
        // names sequence 2. The progress is 3, and 0:4 is an orphan.
        let ahead = [
            marker(2, "0:2"),
            intent(2, "0:3"),
            intent(2, "0:4"),
            marker(3, "0:3"),
        ];
        let (keep, progress, orphans) = committed(&ahead);
        assert_eq!((keep, progress), (3, at(3)));
        assert_eq!(orphans, vec!["0:4"]);
        // Killed before either committed: both are orphans.
        let both = [marker(2, "0:2"), intent(2, "0:3"), intent(2, "0:4")];
        let (keep, progress, orphans) = committed(&both);
        assert_eq!((keep, progress), (0, at(2)));
        assert_eq!(orphans, vec!["0:3", "0:4"]);
        // A backlog that starts at an intent (its marker released): the
        // intent's progress is what had committed.
        let released = [intent(5, "0:9")];
        let (keep, progress, orphans) = committed(&released);
        assert_eq!((keep, progress), (0, at(5)));
        assert_eq!(orphans, vec!["0:9"]);
        // Markers written before they named their transaction: an intent
        // after the last one is an orphan.
        let legacy = [intent(1, "0:1"), at(2), intent(2, "0:5")];
        let (keep, progress, orphans) = committed(&legacy);
        assert_eq!((keep, progress), (1, at(2)));
        assert_eq!(orphans, vec!["0:5"]);
    }
}
