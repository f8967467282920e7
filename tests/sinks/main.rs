//! The database and HTTP sinks against real targets and the real broker:
//! each engine, the trust boundary, failures by class, TLS, and what a
//! record may ask of a table.
//!
//! One test binary per area: its files are modules, so a change links one
//! binary, not one per file. Tests that restart a service or change a
//! server-wide setting stay in binaries of their own (db_restart, faults,
//! cdc_slot_invalidated).

mod db_boundary;
mod db_errors;
mod db_sink;
mod db_targets;
mod db_tls;
mod http_sink;
mod record_format;
