//! `jdbc`: the database sink for Postgres, MySQL/MariaDB and SQLite.
//!
//! Only its SQL generation exists so far ([`sql`]); the connector itself,
//! its config and its registration as a `className` come next.

pub mod sql;
