//! Text read back from a target. MySQL and MariaDB mark text of a binary
//! collation (such as `utf8mb4_bin`, and any `CAST(... AS CHAR)` under it)
//! as binary, and sqlx's MySQL driver then decodes it only as bytes. Every
//! string the sink reads from a target goes through here.

use sqlx::Row;
use sqlx::any::AnyRow;

/// Column `index` of `row` as text, or `None` for NULL.
pub(crate) fn nullable(row: &AnyRow, index: usize) -> Result<Option<String>, sqlx::Error> {
    match row.try_get::<Option<String>, _>(index) {
        Err(sqlx::Error::ColumnDecode { .. }) => row
            .try_get::<Option<Vec<u8>>, _>(index)?
            .map(|bytes| {
                String::from_utf8(bytes).map_err(|e| sqlx::Error::ColumnDecode {
                    index: index.to_string(),
                    source: Box::new(e),
                })
            })
            .transpose(),
        read => read,
    }
}

/// Column `index` of `row` as text; NULL is an error.
pub(crate) fn required(row: &AnyRow, index: usize) -> Result<String, sqlx::Error> {
    nullable(row, index)?.ok_or_else(|| sqlx::Error::ColumnDecode {
        index: index.to_string(),
        source: "unexpected NULL".into(),
    })
}
