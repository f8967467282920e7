//! A decoder for pgoutput, protocol version 1: the messages of Postgres's
//! built-in logical decoding plugin, byte for byte as the server sends them.
//!
//! Bad bytes give a [`DecodeError`], never a panic: the decoder is
//! property-tested on arbitrary input.

use std::fmt;

/// A decoded pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// A transaction starts.
    Begin {
        final_lsn: u64,
        commit_time_micros: i64,
        xid: u32,
    },
    /// A transaction committed.
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
        commit_time_micros: i64,
    },
    /// Where a transaction came from (replication origins); ignored.
    Origin,
    /// The shape of a table; sent before its first change and after it changes.
    Relation(Relation),
    /// A non-builtin type used by a table.
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    /// A new row.
    Insert { relation: u32, new: Tuple },
    /// A changed row. `old` is present only when Postgres sends it: the
    /// replica identity changed (`Key`) or is FULL (`Full`).
    Update {
        relation: u32,
        old: Option<OldTuple>,
        new: Tuple,
    },
    /// A deleted row: its key columns, or all of it under REPLICA IDENTITY FULL.
    Delete { relation: u32, old: OldTuple },
    /// Tables emptied.
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// A logical decoding message (`pg_logical_emit_message`).
    Logical {
        transactional: bool,
        lsn: u64,
        prefix: String,
        content: Vec<u8>,
    },
}

/// A table as the Relation message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relation {
    pub(crate) id: u32,
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub(crate) replica_identity: u8,
    pub(crate) columns: Vec<Column>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    /// Part of the replica identity.
    pub(crate) key: bool,
    pub(crate) name: String,
    pub(crate) type_oid: u32,
    pub(crate) type_modifier: i32,
}

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Datum {
    /// SQL NULL.
    Null,
    /// A TOASTed value that did not change and was not sent.
    Unchanged,
    /// The value in the type's text format.
    Text(Vec<u8>),
    /// The value in the type's binary format (only with `binary 'true'`).
    Binary(Vec<u8>),
}

/// A row, as a list of column values in relation order.
pub(crate) type Tuple = Vec<Datum>;

/// Which old values an update or delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OldKind {
    /// The replica identity (key) columns only.
    Key,
    /// The whole old row (REPLICA IDENTITY FULL).
    Full,
}

/// The old values of an update or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OldTuple {
    pub(crate) kind: OldKind,
    pub(crate) tuple: Tuple,
}

/// Why bytes are not a pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad pgoutput message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError(format!(
                "{what}: needs {n} bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn i16(&mut self, what: &str) -> Result<i16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        Ok(self.u32(what)? as i32)
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let end = self
            .bytes
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| DecodeError(format!("{what}: string without terminator")))?;
        let s = std::str::from_utf8(&self.bytes[..end])
            .map_err(|_| DecodeError(format!("{what}: not UTF-8")))?
            .to_owned();
        self.bytes = &self.bytes[end + 1..];
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.i16("column count")?;
        if n < 0 {
            return Err(DecodeError(format!("negative column count {n}")));
        }
        let mut tuple = Vec::with_capacity((n as usize).min(self.bytes.len()));
        for _ in 0..n {
            let datum = match self.u8("column kind")? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = self.i32("value length")?;
                    if len < 0 {
                        return Err(DecodeError(format!("negative value length {len}")));
                    }
                    let value = self.take(len as usize, "value")?.to_vec();
                    if kind == b't' {
                        Datum::Text(value)
                    } else {
                        Datum::Binary(value)
                    }
                }
                other => return Err(DecodeError(format!("unknown column kind {other:#x}"))),
            };
            tuple.push(datum);
        }
        Ok(tuple)
    }

    fn old_tuple(&mut self, tag: u8) -> Result<OldTuple, DecodeError> {
        let kind = match tag {
            b'K' => OldKind::Key,
            b'O' => OldKind::Full,
            other => return Err(DecodeError(format!("expected K or O, found {other:#x}"))),
        };
        Ok(OldTuple {
            kind,
            tuple: self.tuple()?,
        })
    }

    fn expect_new(&mut self, tag: u8) -> Result<Tuple, DecodeError> {
        if tag != b'N' {
            return Err(DecodeError(format!("expected N, found {tag:#x}")));
        }
        self.tuple()
    }

    fn done(&self, what: &str) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{what}: {} bytes left over",
                self.bytes.len()
            )))
        }
    }
}

/// Decode one pgoutput message. One arm per message tag, in the order of
/// Postgres's "Logical Replication Message Formats": it is over 100 lines so
/// that it reads side by side with that page.
pub(crate) fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { bytes };
    let message = match r.u8("message tag")? {
        b'B' => Message::Begin {
            final_lsn: r.u64("begin lsn")?,
            commit_time_micros: r.u64("begin time")? as i64,
            xid: r.u32("xid")?,
        },
        b'C' => {
            r.u8("commit flags")?;
            Message::Commit {
                commit_lsn: r.u64("commit lsn")?,
                end_lsn: r.u64("end lsn")?,
                commit_time_micros: r.u64("commit time")? as i64,
            }
        }
        b'O' => {
            r.u64("origin lsn")?;
            r.string("origin name")?;
            Message::Origin
        }
        b'R' => {
            let id = r.u32("relation id")?;
            let namespace = r.string("namespace")?;
            let name = r.string("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            let n = r.i16("column count")?;
            if n < 0 {
                return Err(DecodeError(format!("negative column count {n}")));
            }
            let mut columns = Vec::with_capacity((n as usize).min(r.bytes.len()));
            for _ in 0..n {
                columns.push(Column {
                    key: r.u8("column flags")? & 1 == 1,
                    name: r.string("column name")?,
                    type_oid: r.u32("column type")?,
                    type_modifier: r.i32("type modifier")?,
                });
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => Message::Type {
            oid: r.u32("type oid")?,
            namespace: r.string("type namespace")?,
            name: r.string("type name")?,
        },
        b'I' => {
            let relation = r.u32("relation id")?;
            let tag = r.u8("tuple tag")?;
            Message::Insert {
                relation,
                new: r.expect_new(tag)?,
            }
        }
        b'U' => {
            let relation = r.u32("relation id")?;
            let tag = r.u8("tuple tag")?;
            let (old, tag) = match tag {
                b'K' | b'O' => {
                    let old = r.old_tuple(tag)?;
                    (Some(old), r.u8("tuple tag")?)
                }
                _ => (None, tag),
            };
            Message::Update {
                relation,
                old,
                new: r.expect_new(tag)?,
            }
        }
        b'D' => {
            let relation = r.u32("relation id")?;
            let tag = r.u8("tuple tag")?;
            Message::Delete {
                relation,
                old: r.old_tuple(tag)?,
            }
        }
        b'T' => {
            let n = r.u32("relation count")?;
            let options = r.u8("truncate options")?;
            let mut relations = Vec::with_capacity((n as usize).min(r.bytes.len() / 4));
            for _ in 0..n {
                relations.push(r.u32("relation id")?);
            }
            Message::Truncate {
                relations,
                cascade: options & 1 != 0,
                restart_identity: options & 2 != 0,
            }
        }
        b'M' => {
            let flags = r.u8("message flags")?;
            let lsn = r.u64("message lsn")?;
            let prefix = r.string("message prefix")?;
            let len = r.u32("message length")? as usize;
            Message::Logical {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content: r.take(len, "message content")?.to_vec(),
            }
        }
        other => return Err(DecodeError(format!("unknown message tag {other:#x}"))),
    };
    r.done("message")?;
    Ok(message)
}

/// Encoding, the inverse of [`decode`], for tests.
#[cfg(test)]
pub(crate) mod encode {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn tuple(out: &mut Vec<u8>, t: &Tuple) {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        for d in t {
            match d {
                Datum::Null => out.push(b'n'),
                Datum::Unchanged => out.push(b'u'),
                Datum::Text(v) | Datum::Binary(v) => {
                    out.push(if matches!(d, Datum::Text(_)) {
                        b't'
                    } else {
                        b'b'
                    });
                    out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
    }

    fn old(out: &mut Vec<u8>, o: &OldTuple) {
        out.push(if o.kind == OldKind::Key { b'K' } else { b'O' });
        tuple(out, &o.tuple);
    }

    /// The bytes Postgres would send for `m`.
    pub(crate) fn message(m: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        match m {
            Message::Begin {
                final_lsn,
                commit_time_micros,
                xid,
            } => {
                out.push(b'B');
                out.extend_from_slice(&final_lsn.to_be_bytes());
                out.extend_from_slice(&commit_time_micros.to_be_bytes());
                out.extend_from_slice(&xid.to_be_bytes());
            }
            Message::Commit {
                commit_lsn,
                end_lsn,
                commit_time_micros,
            } => {
                out.push(b'C');
                out.push(0);
                out.extend_from_slice(&commit_lsn.to_be_bytes());
                out.extend_from_slice(&end_lsn.to_be_bytes());
                out.extend_from_slice(&commit_time_micros.to_be_bytes());
            }
            Message::Origin => {
                out.push(b'O');
                out.extend_from_slice(&0u64.to_be_bytes());
                string(&mut out, "origin");
            }
            Message::Relation(r) => {
                out.push(b'R');
                out.extend_from_slice(&r.id.to_be_bytes());
                string(&mut out, &r.namespace);
                string(&mut out, &r.name);
                out.push(r.replica_identity);
                out.extend_from_slice(&(r.columns.len() as i16).to_be_bytes());
                for c in &r.columns {
                    out.push(u8::from(c.key));
                    string(&mut out, &c.name);
                    out.extend_from_slice(&c.type_oid.to_be_bytes());
                    out.extend_from_slice(&c.type_modifier.to_be_bytes());
                }
            }
            Message::Type {
                oid,
                namespace,
                name,
            } => {
                out.push(b'Y');
                out.extend_from_slice(&oid.to_be_bytes());
                string(&mut out, namespace);
                string(&mut out, name);
            }
            Message::Insert { relation, new } => {
                out.push(b'I');
                out.extend_from_slice(&relation.to_be_bytes());
                out.push(b'N');
                tuple(&mut out, new);
            }
            Message::Update {
                relation,
                old: o,
                new,
            } => {
                out.push(b'U');
                out.extend_from_slice(&relation.to_be_bytes());
                if let Some(o) = o {
                    old(&mut out, o);
                }
                out.push(b'N');
                tuple(&mut out, new);
            }
            Message::Delete { relation, old: o } => {
                out.push(b'D');
                out.extend_from_slice(&relation.to_be_bytes());
                old(&mut out, o);
            }
            Message::Truncate {
                relations,
                cascade,
                restart_identity,
            } => {
                out.push(b'T');
                out.extend_from_slice(&(relations.len() as u32).to_be_bytes());
                out.push(u8::from(*cascade) | (u8::from(*restart_identity) << 1));
                for r in relations {
                    out.extend_from_slice(&r.to_be_bytes());
                }
            }
            Message::Logical {
                transactional,
                lsn,
                prefix,
                content,
            } => {
                out.push(b'M');
                out.push(u8::from(*transactional));
                out.extend_from_slice(&lsn.to_be_bytes());
                string(&mut out, prefix);
                out.extend_from_slice(&(content.len() as u32).to_be_bytes());
                out.extend_from_slice(content);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
