//! The mapping from Arrow data types to PostgreSQL column types.
//!
//! | Arrow type | PostgreSQL type | binary COPY value |
//! |---|---|---|
//! | `Int8`, `Int16` | `smallint` | int2, big endian |
//! | `Int32` | `integer` | int4, big endian |
//! | `Int64` | `bigint` | int8, big endian |
//! | `UInt8`, `UInt16` | `integer` | int4, big endian |
//! | `UInt32` | `bigint` | int8, big endian |
//! | `UInt64` | `numeric(20,0)` | numeric (ndigits, weight, sign, dscale, base-10000 digits) |
//! | `Float32` | `real` | IEEE 754 float4, big endian |
//! | `Float64` | `double precision` | IEEE 754 float8, big endian |
//! | `Boolean` | `boolean` | one byte, 0 or 1 |
//! | `Utf8`, `LargeUtf8`, `Utf8View` | `text` | UTF-8 bytes; a NUL character is an error ([`DestinationError::NulInText`]) |
//! | `Binary`, `LargeBinary`, `BinaryView` | `bytea` | the raw bytes |
//! | `Date32` | `date` | days since 2000-01-01, int4 |
//! | `Timestamp(unit, Some(tz))` | `timestamptz` | microseconds since 2000-01-01 00:00 UTC, int8 (the Arrow value is a UTC instant) |
//! | `Timestamp(unit, None)` | `timestamp` | microseconds since 2000-01-01 00:00, int8 (wall-clock time, no zone) |
//! | `Time32(unit)`, `Time64(unit)` | `time` | microseconds since midnight, int8 |
//! | `Null` | `text` | always NULL |
//!
//! Every [`TimeUnit`](arrow_schema::TimeUnit) is converted to microseconds; nanoseconds are rounded down
//! (towards the past), like the rest of the pipeline would floor them. Anything else (decimals, dictionaries,
//! lists, structs, maps, `Float16`, `Date64`, intervals, durations, …) is rejected with
//! [`DestinationError::UnsupportedType`] for now. The same table is in `docs/TYPES.md`.
//!
//! New tables get no `NOT NULL` constraints from Arrow nullability (only the primary-key columns are `NOT NULL`,
//! through the primary key itself).

use arrow_schema::{DataType, Field};

use crate::DestinationError;

/// The PostgreSQL column type (as written in `CREATE TABLE`) for an Arrow field, or
/// [`DestinationError::UnsupportedType`] naming the column.
pub fn pg_type(field: &Field) -> Result<&'static str, DestinationError> {
    pg_type_of(field.data_type()).ok_or_else(|| DestinationError::UnsupportedType {
        column: field.name().clone(),
        data_type: field.data_type().clone(),
    })
}

/// The PostgreSQL column type for an Arrow data type, `None` when there is no mapping.
pub fn pg_type_of(data_type: &DataType) -> Option<&'static str> {
    Some(match data_type {
        DataType::Int8 | DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        DataType::Int64 => "bigint",
        DataType::UInt8 | DataType::UInt16 => "integer",
        DataType::UInt32 => "bigint",
        DataType::UInt64 => "numeric(20,0)",
        DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Boolean => "boolean",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea",
        DataType::Date32 => "date",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Time32(_) | DataType::Time64(_) => "time",
        DataType::Null => "text",
        DataType::List(f) | DataType::LargeList(f)
            if matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8) =>
        {
            "text[]"
        }
        _ => return None,
    })
}

/// The name PostgreSQL's `format_type(oid, NULL)` gives the type [`pg_type_of`] maps to, used to compare with
/// the columns of an existing table.
pub(crate) fn catalog_type_name(pg_type: &str) -> &'static str {
    match pg_type {
        "smallint" => "smallint",
        "integer" => "integer",
        "bigint" => "bigint",
        "numeric(20,0)" => "numeric",
        "real" => "real",
        "double precision" => "double precision",
        "boolean" => "boolean",
        "text" => "text",
        "bytea" => "bytea",
        "date" => "date",
        "timestamptz" => "timestamp with time zone",
        "timestamp" => "timestamp without time zone",
        "time" => "time without time zone",
        "text[]" => "text[]",
        _ => "unknown",
    }
}

/// Whether an existing column whose `format_type` is `found` can receive binary COPY values of `expected`
/// (also a `format_type` name). The binary formats of `text` and `character varying` are the same.
pub(crate) fn compatible(expected: &str, found: &str) -> bool {
    expected == found || (expected == "text" && found == "character varying")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::TimeUnit;

    #[test]
    fn mapping() {
        let f = |t: DataType| pg_type(&Field::new("c", t, true)).unwrap();
        assert_eq!(f(DataType::Int8), "smallint");
        assert_eq!(f(DataType::UInt64), "numeric(20,0)");
        assert_eq!(
            f(DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some("+02:00".into())
            )),
            "timestamptz"
        );
        assert_eq!(f(DataType::Timestamp(TimeUnit::Second, None)), "timestamp");
        assert_eq!(f(DataType::Time32(TimeUnit::Millisecond)), "time");
        assert_eq!(f(DataType::Null), "text");
        for t in [
            "smallint",
            "integer",
            "bigint",
            "numeric(20,0)",
            "real",
            "double precision",
            "boolean",
            "text",
            "bytea",
            "date",
            "timestamptz",
            "timestamp",
            "time",
        ] {
            assert_ne!(catalog_type_name(t), "unknown", "{t}");
        }
    }

    #[test]
    fn unsupported_names_the_column() {
        let err = pg_type(&Field::new("prices", DataType::Decimal128(10, 2), true)).unwrap_err();
        match err {
            DestinationError::UnsupportedType { column, data_type } => {
                assert_eq!(column, "prices");
                assert_eq!(data_type, DataType::Decimal128(10, 2));
            }
            e => panic!("{e}"),
        }
    }
}
