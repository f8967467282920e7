//! Which replication slot the source may use, and what it does with it.
//!
//! A slot holds the server's WAL for its consumer, so it belongs to whoever
//! made it. sluice records the slots it creates, in lines of its
//! publication's comment:
//! - `sluice: slot <name> owned`, written before the slot is created;
//! - `sluice: snapshot complete for slot <name>`, once the snapshot taken
//!   with it is durable (from then on the topics follow the slot).
//!
//! It never drops or takes over a slot without one of these lines. And a
//! slot it streamed from that has gone (dropped, or invalidated when
//! `max_slot_wal_keep_size` let the server remove its WAL) is a gap in the
//! topics: the source stops and says so, unless `snapshot.mode` asks for a
//! new snapshot in that case (`when_needed`, `always`).

use tokio_postgres::Client;

use super::catalog::{format_lsn, pg_error, quote_ident, quote_literal};
use super::config::{PostgresCdcConfig, SnapshotMode};
use crate::api::ConnectorError;

/// The slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SlotState {
    pub(crate) confirmed_flush: Option<u64>,
    pub(crate) active_pid: Option<i32>,
    pub(crate) plugin: Option<String>,
    pub(crate) database: Option<String>,
    /// The server removed WAL the slot still needed: it cannot stream.
    pub(crate) lost: bool,
}

pub(crate) async fn slot(sql: &Client, name: &str) -> Result<Option<SlotState>, ConnectorError> {
    let row = sql
        .query_opt(
            "SELECT confirmed_flush_lsn::text, active_pid, plugin::text, database::text, \
             coalesce(wal_status = 'lost', false) \
             FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .map_err(|e| pg_error("read pg_replication_slots", e))?;
    Ok(row.map(|r| SlotState {
        confirmed_flush: r
            .get::<_, Option<String>>(0)
            .and_then(|s| super::catalog::parse_lsn(&s)),
        active_pid: r.get(1),
        plugin: r.get(2),
        database: r.get(3),
        lost: r.get(4),
    }))
}

/// How long a walsender terminated by [`free`] may take to let go.
const FREE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Free sluice's own slot `name` from walsender `pid`, which serves an
/// instance the runtime has fenced out (it stopped beating, and can no
/// longer publish): without this, the slot stays in use until Postgres's
/// `wal_sender_timeout` ends the walsender. Called only for a slot sluice
/// created. The slot as it is once free.
pub(crate) async fn free(
    sql: &Client,
    name: &str,
    pid: i32,
) -> Result<Option<SlotState>, ConnectorError> {
    tracing::warn!(slot = %name, pid, "ending the walsender of the fenced-out instance, which still holds the slot");
    if let Err(e) = sql
        .execute(
            "SELECT pg_catalog.pg_terminate_backend(active_pid) FROM pg_catalog.pg_replication_slots \
             WHERE slot_name = $1 AND active_pid = $2",
            &[&name, &pid],
        )
        .await
    {
        // Without the right to (another role's walsender), the slot frees
        // itself at wal_sender_timeout, as before.
        tracing::warn!(slot = %name, pid, error = %pg_error("end the walsender", e), "could not end the walsender; waiting for wal_sender_timeout");
        return slot(sql, name).await;
    }
    let until = tokio::time::Instant::now() + FREE_WITHIN;
    loop {
        let state = slot(sql, name).await?;
        if state.as_ref().is_none_or(|s| s.active_pid != Some(pid))
            || tokio::time::Instant::now() >= until
        {
            return Ok(state);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The line recording that sluice created `slot`.
pub(crate) fn owned_marker(slot: &str) -> String {
    format!("sluice: slot {slot} owned")
}

/// The line recording that the snapshot taken with `slot` is complete.
pub(crate) fn snapshot_marker(slot: &str) -> String {
    format!("sluice: snapshot complete for slot {slot}")
}

/// The start of the line holding the snapshot's progress for `slot`.
fn progress_prefix(slot: &str) -> String {
    format!("sluice: snapshot progress for slot {slot}: ")
}

/// The snapshot progress recorded for `slot`, as text.
pub(crate) async fn progress(
    sql: &Client,
    publication: &str,
    slot: &str,
) -> Result<Option<String>, ConnectorError> {
    let text = comment(sql, publication).await?;
    let prefix = progress_prefix(slot);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned))
}

/// Record the snapshot's progress for `slot` (one line, replaced).
pub(crate) async fn set_progress(
    sql: &Client,
    publication: &str,
    slot: &str,
    progress: &str,
) -> Result<(), ConnectorError> {
    let prefix = progress_prefix(slot);
    let current = comment(sql, publication).await?;
    let mut lines: Vec<String> = current
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    lines.push(format!("{prefix}{progress}"));
    write_comment(sql, publication, &lines.join("\n")).await
}

/// What the publication's comment records about a slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Markers {
    /// sluice created the slot.
    pub(crate) owned: bool,
    /// The snapshot taken with the slot is complete and durable.
    pub(crate) complete: bool,
}

async fn comment(sql: &Client, publication: &str) -> Result<String, ConnectorError> {
    let row = sql
        .query_opt(
            "SELECT obj_description(oid, 'pg_publication') FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| pg_error("read the publication comment", e))?;
    Ok(row.and_then(|r| r.get(0)).unwrap_or_default())
}

pub(crate) async fn markers(
    sql: &Client,
    publication: &str,
    slot: &str,
) -> Result<Markers, ConnectorError> {
    let text = comment(sql, publication).await?;
    let has = |line: String| text.lines().any(|l| l == line);
    Ok(Markers {
        owned: has(owned_marker(slot)),
        complete: has(snapshot_marker(slot)),
    })
}

/// Add or remove one line of the publication's comment.
pub(crate) async fn set_marker(
    sql: &Client,
    publication: &str,
    line: &str,
    present: bool,
) -> Result<(), ConnectorError> {
    let current = comment(sql, publication).await?;
    let mut lines: Vec<&str> = current.lines().filter(|l| *l != line).collect();
    if present {
        lines.push(line);
    }
    write_comment(sql, publication, &lines.join("\n")).await
}

async fn write_comment(sql: &Client, publication: &str, text: &str) -> Result<(), ConnectorError> {
    let value = if text.is_empty() {
        "NULL".to_owned()
    } else {
        quote_literal(text)
    };
    sql.batch_execute(&format!(
        "COMMENT ON PUBLICATION {} IS {value}",
        quote_ident(publication)
    ))
    .await
    .map_err(|e| {
        ConnectorError::permanent(format!(
            "cannot record the slot's state on publication {publication} ({}): the user must own the publication",
            e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned())
        ))
    })
}

/// What start-up does with the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Stream from the existing slot; with `snapshot`, copy the tables
    /// chunk by chunk alongside (resuming a copy that did not finish).
    Resume { snapshot: bool },
    /// Drop sluice's own slot, which the server invalidated, and create it
    /// again with a new snapshot.
    Recreate,
    /// Create the slot, with or without a snapshot.
    Create { snapshot: bool },
    /// Take over another client's slot (`slot.adopt`) and stream from it.
    Adopt,
}

/// The decision, and, when the slot sluice streamed from is gone, what the
/// operator must be told about the gap even though a new snapshot covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) plan: Plan,
    pub(crate) gap: Option<String>,
}

/// Decide, from the slot's state and the comment's records, what to do.
/// Pure, so that `check` and start-up decide alike.
pub(crate) fn plan(
    config: &PostgresCdcConfig,
    existing: Option<&SlotState>,
    markers: Markers,
) -> Result<Decision, ConnectorError> {
    let name = &config.slot;
    let ours = markers.owned || markers.complete;
    let resnapshot_on_gap = matches!(
        config.snapshot_mode,
        SnapshotMode::WhenNeeded | SnapshotMode::Always
    );
    let gap = |what: String, plan: Plan| -> Result<Decision, ConnectorError> {
        if resnapshot_on_gap {
            return Ok(Decision {
                plan,
                gap: Some(what),
            });
        }
        Err(ConnectorError::permanent(format!(
            "{what}. The topics now miss the changes made since the slot's last confirmed position, \
             so the source stops rather than hide the gap. To resynchronise, start once with \
             snapshot.mode: when_needed, which takes a new snapshot (rows deleted in the gap are not \
             deleted downstream: clear the targets first if that matters); or, to start over from \
             nothing, remove sluice's records with COMMENT ON PUBLICATION {} IS NULL",
            quote_ident(&config.publication)
        )))
    };
    let Some(slot) = existing else {
        // Gone: a gap if sluice had streamed from it.
        let streamed =
            markers.complete || (markers.owned && config.snapshot_mode == SnapshotMode::Never);
        if streamed {
            return gap(
                format!(
                    "replication slot {name}, which sluice created and streamed from, no longer exists (dropped?)"
                ),
                Plan::Create { snapshot: true },
            );
        }
        return Ok(Decision {
            plan: Plan::Create {
                snapshot: config.snapshot_mode != SnapshotMode::Never,
            },
            gap: None,
        });
    };
    usable(config, slot, ours)?;
    if slot.lost {
        return gap(
            format!(
                "replication slot {name} was invalidated: the server removed WAL it still needed \
                 (max_slot_wal_keep_size), after position {}",
                slot.confirmed_flush
                    .map_or_else(|| "unknown".to_owned(), format_lsn)
            ),
            Plan::Recreate,
        );
    }
    if !ours {
        return Ok(Decision {
            plan: Plan::Adopt,
            gap: None,
        });
    }
    // A snapshot that did not finish is resumed with the slot, not retaken
    // on a new one: the slot's stream covers every change made meanwhile,
    // deletes included (decision 0017).
    let plan = match config.snapshot_mode {
        SnapshotMode::Never => Plan::Resume { snapshot: false },
        SnapshotMode::Always => Plan::Resume { snapshot: true },
        SnapshotMode::Initial | SnapshotMode::WhenNeeded | SnapshotMode::InitialOnly => {
            Plan::Resume {
                snapshot: !markers.complete,
            }
        }
    };
    Ok(Decision { plan, gap: None })
}

/// An existing slot sluice may stream from: made for pgoutput on this
/// database, sluice's own (or `slot.adopt` set), and not in use.
fn usable(config: &PostgresCdcConfig, slot: &SlotState, ours: bool) -> Result<(), ConnectorError> {
    let name = &config.slot;
    if slot.plugin.as_deref() != Some("pgoutput")
        || slot.database.as_deref() != Some(config.dbname.as_str())
    {
        return Err(ConnectorError::permanent(format!(
            "replication slot {name} exists for plugin {} on database {}, not pgoutput on {}: \
             it is not sluice's, and sluice leaves it alone; choose another slot.name",
            slot.plugin.as_deref().unwrap_or("(none)"),
            slot.database.as_deref().unwrap_or("(none)"),
            config.dbname
        )));
    }
    if !ours && !config.adopt_slot {
        return Err(ConnectorError::permanent(format!(
            "replication slot {name} exists but sluice did not create it (no record on publication {}): \
             sluice never takes over or drops another client's slot unless told to. Choose another slot.name; \
             or, to move from the client that made it (Pulsar's Debezium source), stop that client and set \
             slot.adopt: true; or, if nothing uses it, drop it: SELECT pg_drop_replication_slot({})",
            config.publication,
            quote_literal(name)
        )));
    }
    if let Some(pid) = slot.active_pid {
        return Err(ConnectorError::retryable(format!(
            "replication slot {name} is in use by process {pid}: stop the other consumer first (another sluice instance?)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigMap, ConfigValue};

    fn config(mode: &str) -> PostgresCdcConfig {
        let map: ConfigMap = [
            ("database.hostname", "h"),
            ("database.user", "u"),
            ("database.dbname", "orders"),
            ("topic.prefix", "p"),
            ("slot.name", "s"),
            ("snapshot.mode", mode),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ConfigValue::String((*v).to_owned())))
        .collect();
        let (config, report) = PostgresCdcConfig::from_configs(&map);
        assert!(report.errors.is_empty(), "{report:?}");
        config.unwrap_or_else(|| panic!("no config"))
    }

    fn ours() -> SlotState {
        SlotState {
            plugin: Some("pgoutput".into()),
            database: Some("orders".into()),
            ..SlotState::default()
        }
    }

    const NONE: Markers = Markers {
        owned: false,
        complete: false,
    };
    const OWNED: Markers = Markers {
        owned: true,
        complete: false,
    };
    const COMPLETE: Markers = Markers {
        owned: true,
        complete: true,
    };

    fn plan_of(mode: &str, slot: Option<&SlotState>, m: Markers) -> Result<Plan, String> {
        plan(&config(mode), slot, m)
            .map(|d| d.plan)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_new_slot_is_created_with_a_snapshot_unless_never() {
        assert_eq!(
            plan_of("initial", None, NONE),
            Ok(Plan::Create { snapshot: true })
        );
        assert_eq!(
            plan_of("never", None, NONE),
            Ok(Plan::Create { snapshot: false })
        );
    }

    #[test]
    fn another_clients_slot_is_refused_whatever_the_mode() {
        for mode in ["initial", "never", "always", "when_needed"] {
            let err = plan_of(mode, Some(&ours()), NONE).unwrap_err();
            assert!(err.contains("sluice did not create it"), "{err}");
            assert!(err.contains("pg_drop_replication_slot('s')"), "{err}");
        }
        let mut other = ours();
        other.plugin = Some("test_decoding".into());
        let err = plan_of("initial", Some(&other), COMPLETE).unwrap_err();
        assert!(err.contains("plugin test_decoding"), "{err}");
    }

    #[test]
    fn another_clients_slot_is_adopted_when_told_whatever_the_mode() {
        for mode in ["initial", "never", "always", "when_needed"] {
            let mut c = config(mode);
            c.adopt_slot = true;
            let decision = plan(&c, Some(&ours()), NONE).map_err(|e| e.to_string());
            assert_eq!(decision.map(|d| d.plan), Ok(Plan::Adopt), "{mode}");
            // Once adopted, the slot is sluice's own.
            let decision = plan(&c, Some(&ours()), COMPLETE).map_err(|e| e.to_string());
            assert_ne!(decision.map(|d| d.plan), Ok(Plan::Adopt), "{mode}");
        }
        let mut c = config("initial");
        c.adopt_slot = true;
        let mut busy = ours();
        busy.active_pid = Some(42);
        let err = plan(&c, Some(&busy), NONE)
            .map(|d| d.plan)
            .map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.contains("in use by process 42")));
    }

    #[test]
    fn an_own_slot_resumes_with_or_without_a_snapshot_as_the_mode_says() {
        assert_eq!(
            plan_of("initial", Some(&ours()), COMPLETE),
            Ok(Plan::Resume { snapshot: false })
        );
        // A snapshot that did not finish goes on, on the same slot.
        assert_eq!(
            plan_of("initial", Some(&ours()), OWNED),
            Ok(Plan::Resume { snapshot: true })
        );
        assert_eq!(
            plan_of("always", Some(&ours()), COMPLETE),
            Ok(Plan::Resume { snapshot: true })
        );
        assert_eq!(
            plan_of("never", Some(&ours()), OWNED),
            Ok(Plan::Resume { snapshot: false })
        );
    }

    #[test]
    fn a_vanished_slot_is_a_gap_unless_the_mode_asks_for_a_snapshot() {
        let err = plan_of("initial", None, COMPLETE).unwrap_err();
        assert!(
            err.contains("no longer exists") && err.contains("when_needed"),
            "{err}"
        );
        assert!(plan_of("never", None, OWNED).is_err());
        let d = plan(&config("when_needed"), None, COMPLETE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.plan, Plan::Create { snapshot: true });
        assert!(d.gap.is_some());
        // A snapshot that never finished left nothing streamed: no gap.
        assert_eq!(
            plan_of("initial", None, OWNED),
            Ok(Plan::Create { snapshot: true })
        );
    }

    #[test]
    fn an_invalidated_slot_is_a_gap_unless_the_mode_asks_for_a_snapshot() {
        let lost = SlotState {
            lost: true,
            confirmed_flush: Some(0x1_0000_0010),
            ..ours()
        };
        let err = plan_of("initial", Some(&lost), COMPLETE).unwrap_err();
        assert!(err.contains("invalidated") && err.contains("1/10"), "{err}");
        assert_eq!(
            plan_of("when_needed", Some(&lost), COMPLETE),
            Ok(Plan::Recreate)
        );
    }
}
