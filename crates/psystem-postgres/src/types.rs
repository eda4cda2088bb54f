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
//! | `Float16`, `Float32` | `real` | IEEE 754 float4, big endian (`Float16` widened exactly) |
//! | `Float64` | `double precision` | IEEE 754 float8, big endian |
//! | `Decimal32/64/128/256(p, s)` | `numeric` | numeric with dscale = `max(s, 0)` (a negative scale appends zeros) |
//! | `Boolean` | `boolean` | one byte, 0 or 1 |
//! | `Utf8`, `LargeUtf8`, `Utf8View` | `text` | UTF-8 bytes; a NUL character follows the [`NulPolicy`](crate::copy_binary::NulPolicy) |
//! | `Binary`, `LargeBinary`, `BinaryView`, `FixedSizeBinary` | `bytea` | the raw bytes |
//! | `Date32`, `Date64` | `date` | days since 2000-01-01, int4 (`Date64` milliseconds floored to days) |
//! | `Timestamp(unit, Some(tz))` | `timestamptz` | microseconds since 2000-01-01 00:00 UTC, int8 (the Arrow value is a UTC instant) |
//! | `Timestamp(unit, None)` | `timestamp` | microseconds since 2000-01-01 00:00, int8 (wall-clock time, no zone) |
//! | `Time32(unit)`, `Time64(unit)` | `time` | microseconds since midnight, int8 |
//! | `Duration(unit)`, `Interval(_)` | `interval` | int8 microseconds, int4 days, int4 months |
//! | `Null` | `text` | always NULL |
//! | `Dictionary(key, value)` | the type of `value` | the decoded value |
//! | `List`/`LargeList`/`FixedSizeList` of `Utf8`/`LargeUtf8`/`Utf8View` | `text[]` | one-dimensional array |
//! | every other list (also `ListView`, `LargeListView`), `Struct`, `Map` | `jsonb` | version byte 1 + JSON text |
//!
//! Every [`TimeUnit`](arrow_schema::TimeUnit) is converted to microseconds; nanoseconds are rounded down
//! (towards the past). Run-end encoded arrays and unions (also nested in a list, struct or map) are rejected
//! with [`DestinationError::UnsupportedType`]. The JSON forms of nested values and the details are in
//! `docs/TYPES.md`.
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

/// The PostgreSQL column type for an Arrow data type, `None` when there is no mapping (run-end encoded arrays,
/// unions, or a nested type containing one of them).
pub fn pg_type_of(data_type: &DataType) -> Option<&'static str> {
    Some(match data_type {
        DataType::Int8 | DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        DataType::Int64 => "bigint",
        DataType::UInt8 | DataType::UInt16 => "integer",
        DataType::UInt32 => "bigint",
        DataType::UInt64 => "numeric(20,0)",
        DataType::Float16 | DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric",
        DataType::Boolean => "boolean",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "bytea",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Time32(_) | DataType::Time64(_) => "time",
        DataType::Duration(_) | DataType::Interval(_) => "interval",
        DataType::Null => "text",
        DataType::Dictionary(key, value) if key.is_dictionary_key_type() => {
            return pg_type_of(value)
        }
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
            if matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            "text[]"
        }
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(_, _)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::Struct(_)
        | DataType::Map(_, _)
            if has_json_form(data_type) =>
        {
            "jsonb"
        }
        _ => return None,
    })
}

/// Whether every value of `data_type` (and of every type nested in it) has a JSON form inside `jsonb`.
fn has_json_form(data_type: &DataType) -> bool {
    match data_type {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::Map(f, _) => has_json_form(f.data_type()),
        DataType::Struct(fields) => fields.iter().all(|f| has_json_form(f.data_type())),
        DataType::Dictionary(key, value) => key.is_dictionary_key_type() && has_json_form(value),
        DataType::RunEndEncoded(_, _) | DataType::Union(_, _) => false,
        other => pg_type_of(other).is_some(),
    }
}

/// The name PostgreSQL's `format_type(oid, NULL)` gives the type [`pg_type_of`] maps to, used to compare with
/// the columns of an existing table.
pub(crate) fn catalog_type_name(pg_type: &str) -> &'static str {
    match pg_type {
        "smallint" => "smallint",
        "integer" => "integer",
        "bigint" => "bigint",
        "numeric(20,0)" | "numeric" => "numeric",
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
        "interval" => "interval",
        "jsonb" => "jsonb",
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
    use std::sync::Arc;

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
    fn nested_and_new_types() {
        let f = |t: DataType| pg_type_of(&t);
        let item = |t: DataType| Arc::new(Field::new("item", t, true));
        assert_eq!(f(DataType::Decimal128(38, 2)), Some("numeric"));
        assert_eq!(f(DataType::Decimal256(76, -3)), Some("numeric"));
        assert_eq!(f(DataType::Float16), Some("real"));
        assert_eq!(f(DataType::Date64), Some("date"));
        assert_eq!(f(DataType::FixedSizeBinary(16)), Some("bytea"));
        assert_eq!(f(DataType::Duration(TimeUnit::Second)), Some("interval"));
        assert_eq!(
            f(DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano)),
            Some("interval")
        );
        assert_eq!(
            f(DataType::Dictionary(
                Box::new(DataType::UInt16),
                Box::new(DataType::Utf8)
            )),
            Some("text")
        );
        assert_eq!(
            f(DataType::FixedSizeList(item(DataType::Utf8View), 2)),
            Some("text[]")
        );
        assert_eq!(f(DataType::List(item(DataType::Int64))), Some("jsonb"));
        assert_eq!(f(DataType::ListView(item(DataType::Utf8))), Some("jsonb"));
        let s = DataType::Struct(vec![Field::new("a", DataType::Int32, true)].into());
        assert_eq!(f(s.clone()), Some("jsonb"));
        assert_eq!(f(DataType::LargeList(item(s))), Some("jsonb"));
        let ree = DataType::RunEndEncoded(
            Arc::new(Field::new("run_ends", DataType::Int32, false)),
            Arc::new(Field::new("values", DataType::Utf8, true)),
        );
        assert_eq!(f(ree.clone()), None);
        assert_eq!(f(DataType::List(item(ree))), None);
        for t in ["numeric", "interval", "jsonb"] {
            assert_ne!(catalog_type_name(t), "unknown", "{t}");
        }
    }

    #[test]
    fn unsupported_names_the_column() {
        let ree = DataType::RunEndEncoded(
            Arc::new(Field::new("run_ends", DataType::Int32, false)),
            Arc::new(Field::new("values", DataType::Utf8, true)),
        );
        let err = pg_type(&Field::new("prices", ree.clone(), true)).unwrap_err();
        match err {
            DestinationError::UnsupportedType { column, data_type } => {
                assert_eq!(column, "prices");
                assert_eq!(data_type, ree);
            }
            e => panic!("{e}"),
        }
    }
}
