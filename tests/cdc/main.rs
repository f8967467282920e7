//! The CDC source against real Postgres and the real broker: streaming, the
//! chunked snapshot, tables production holds, schemas, slots, TLS, rows
//! over the broker's limit, and Debezium's transforms.
//!
//! One test binary per area: its files are modules, so a change links one
//! binary, not one per file. Tests that restart a service or change a
//! server-wide setting stay in binaries of their own (db_restart, faults,
//! cdc_slot_invalidated).

mod cdc_large_rows;
mod cdc_schema;
mod cdc_slots;
mod cdc_snapshot;
mod cdc_tables;
mod cdc_takeover;
mod cdc_tls;
mod cdc_transforms;
mod postgres_cdc;
