//! The sluice connector API and the built-in connectors.
//!
//! A connector moves records between an external system and the runtime. It
//! never sees a Pulsar type: the runtime owns every interaction with the
//! broker.
