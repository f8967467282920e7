//! What a target's error says, without the values it may quote: the
//! SQLSTATE or error number, its condition, and the table, column and
//! constraint where the database names them. Logs, `/connectors` and
//! metrics get this; a dead letter keeps the database's full message too,
//! since it holds the record anyway.

use sqlx::error::DatabaseError;

/// Conditions worth naming, by SQLSTATE (Postgres, and MySQL's SQLSTATE).
const SQLSTATES: &[(&str, &str)] = &[
    ("08000", "connection exception"),
    ("08006", "connection failure"),
    ("22001", "value too long for the column"),
    ("22003", "numeric value out of range"),
    ("22007", "invalid date or time format"),
    ("22008", "date or time out of range"),
    ("22012", "division by zero"),
    ("22021", "character not in the encoding (a NUL byte?)"),
    ("22P02", "invalid text for the column's type"),
    ("22P05", "untranslatable character"),
    ("23502", "null in a NOT NULL column"),
    ("23503", "foreign key violation"),
    ("23505", "unique violation"),
    ("23514", "check violation"),
    ("40001", "serialization failure"),
    ("40P01", "deadlock"),
    ("42501", "insufficient privilege"),
    ("42703", "undefined column"),
    ("42P01", "undefined table"),
    ("53300", "too many connections"),
    ("57P01", "the server is shutting down"),
];

/// MySQL/MariaDB error numbers worth naming.
const MYSQL_ERRORS: &[(u16, &str)] = &[
    (1048, "null in a NOT NULL column"),
    (1062, "duplicate key"),
    (1142, "command denied on the table"),
    (1146, "table does not exist"),
    (1153, "packet larger than max_allowed_packet"),
    (1205, "lock wait timeout"),
    (1213, "deadlock"),
    (1264, "value out of range"),
    (1292, "incorrect date or time value"),
    (1366, "incorrect value for the column"),
    (1406, "value too long for the column"),
    (1452, "foreign key violation"),
];

/// SQLite primary result codes worth naming.
const SQLITE_CODES: &[(u32, &str)] = &[
    (1, "SQL error or missing table"),
    (5, "database is busy"),
    (6, "table is locked"),
    (8, "read-only database"),
    (13, "database is full"),
    (18, "value too big"),
    (19, "constraint violation"),
    (20, "datatype mismatch"),
];

/// Whether the same statement may work when tried again, by each engine's
/// own codes: a lost connection, a server going down, too many
/// connections, a deadlock or serialization failure, a lock wait; on
/// SQLite only, a busy or locked file. Anything else (a bad value, a
/// constraint, a missing table or privilege) will fail again.
pub(crate) fn retryable(db: &dyn DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let c = pg.code();
        return c.starts_with("08")
            || c.starts_with("57P")
            || c.starts_with("53")
            || c == "40001"
            || c == "40P01"
            || c == "55P03";
    }
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(my.number(), 1040 | 1053 | 1205 | 1213 | 2006 | 2013)
            || my
                .code()
                .is_some_and(|s| s.starts_with("08") || s == "40001");
    }
    if let Some(lite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        let primary = lite
            .code()
            .and_then(|c| c.parse::<u32>().ok())
            .map(|n| n & 0xff);
        return matches!(primary, Some(5 | 6));
    }
    false
}

/// Whether the error is the setup's, not the record's: a missing privilege
/// or table, a refused login. Every record would meet it alike.
pub(crate) fn configuration(db: &dyn DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return matches!(
            pg.code(),
            "42501" | "42P01" | "28000" | "28P01" | "3D000" | "3F000"
        );
    }
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(my.number(), 1044 | 1045 | 1049 | 1142 | 1146);
    }
    if let Some(lite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        // READONLY and CANTOPEN: the file, not the record.
        let primary = lite
            .code()
            .and_then(|c| c.parse::<u32>().ok())
            .map(|n| n & 0xff);
        return matches!(primary, Some(8 | 14));
    }
    false
}

/// The error, described without the values it may quote.
pub(crate) fn describe(db: &dyn DatabaseError) -> String {
    let mut text = if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let code = pg.code();
        let mut t = format!("SQLSTATE {code}");
        if let Some((_, name)) = SQLSTATES.iter().find(|(c, _)| *c == code) {
            t.push_str(&format!(" ({name})"));
        }
        if let Some(column) = pg.column() {
            t.push_str(&format!(", column {column}"));
        }
        t
    } else if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        let number = my.number();
        let mut t = format!("MySQL error {number}");
        if let Some(state) = my.code() {
            t.push_str(&format!(" (SQLSTATE {state})"));
        }
        if let Some((_, name)) = MYSQL_ERRORS.iter().find(|(n, _)| *n == number) {
            t.push_str(&format!(": {name}"));
        }
        t
    } else {
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        let primary = code.parse::<u32>().map(|n| n & 0xff).ok();
        let mut t = format!("SQLite result code {code}");
        if let Some((_, name)) = primary.and_then(|p| SQLITE_CODES.iter().find(|(c, _)| *c == p)) {
            t.push_str(&format!(" ({name})"));
        }
        t
    };
    if let Some(table) = db.table() {
        text.push_str(&format!(", table {table}"));
    }
    if let Some(constraint) = db.constraint() {
        text.push_str(&format!(", constraint {constraint}"));
    }
    text
}
