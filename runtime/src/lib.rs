//! sluice runtime
