//! What the runtime reads from and writes to Pulsar: the two clients'
//! behaviour, a secured cluster, partitioned and compressed topics, key
//! order on a Key_Shared subscription, and decoding by the registered
//! schema.
//!
//! One test binary per area: its files are modules, so a change links one
//! binary, not one per file. Tests that restart a service or change a
//! server-wide setting stay in binaries of their own (db_restart, faults,
//! cdc_slot_invalidated).

mod compressed_topics;
mod key_shared;
mod partitioned_topics;
mod pulsar_client_magnetar;
mod pulsar_client_pulsar_rs;
mod pulsar_secure;
mod schema_decoding;
