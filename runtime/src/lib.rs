//! The sluice runtime: configuration, the engine that runs connectors around
//! Pulsar, and the command line of the `sluice` binary.

pub mod cli;
pub mod config;
pub mod engine;
mod failpoint;
#[doc(hidden)]
pub mod fuzzing;
pub mod histogram;
pub mod http;
pub mod metrics;
pub mod pulsar;
pub mod status;
