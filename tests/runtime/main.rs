//! The runtime end to end with the `sluice` binary: pipelines,
//! EFFECTIVELY_ONCE sources and standbys, supervision, settings that could
//! weaken security, and the HTTP source.
//!
//! One test binary per area: its files are modules, so a change links one
//! binary, not one per file. Tests that restart a service or change a
//! server-wide setting stay in binaries of their own (db_restart, faults,
//! cdc_slot_invalidated).

mod effectively_once;
mod http_source;
mod http_source_limits;
mod partitions;
mod runtime_pipeline;
mod settings_security;
mod supervision;
