//! Schema evolution: how the columns of a release compare with the columns of the existing table.
//!
//! Types are compared by their `format_type(oid, NULL)` names (typmods ignored). A change from the existing type
//! to the incoming one is:
//! - the same type: nothing to do;
//! - a **widening** (every value of the existing type has an exact form in the incoming one):
//!   `smallint → integer → bigint → numeric`, `real → double precision`, `date → timestamp → timestamptz`,
//!   `date → timestamptz`, `character varying → text`, anything except `bytea` → `text`, anything → `jsonb`;
//! - a **narrowing** (the existing type can hold every incoming value, the reverse of a widening): the existing
//!   type is kept in `merge`/`append`, the release's type is used in `replace` (the values come from the release);
//! - otherwise **incompatible** ([`DestinationError::IncompatibleColumn`] unless `allow_casts`).
//!
//! Conversions to `jsonb` use `to_jsonb(value)`; every other conversion is `CAST(value AS type)`. Timestamp
//! conversions run with `TimeZone = UTC` (a `timestamp` is read as UTC wall-clock time).

use arrow_schema::Schema;
use psystem_core::TableRef;

use crate::ident::quote_ident;
use crate::types::{catalog_type_name, pg_type};
use crate::DestinationError;

/// A column of an existing table: its name, base type (`format_type(oid, NULL)`), full type with typmod and
/// whether it is `NOT NULL`.
#[derive(Debug, Clone)]
pub(crate) struct ExistingColumn {
    pub name: String,
    pub base: String,
    pub full: String,
    pub not_null: bool,
}

/// What happens to one column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ColumnPlan {
    /// The column is new: added with `incoming`.
    Added { incoming: String },
    /// Same type.
    Same,
    /// The existing type is widened to `incoming`.
    Widened { existing: String, incoming: String },
    /// The existing type can hold the incoming values.
    Narrowed { existing: String, incoming: String },
    /// Not a widening; applied only with `allow_casts`.
    Cast { existing: String, incoming: String },
}

/// The plan for all columns of a release against an existing table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Evolution {
    /// One entry per incoming column, in the release's order: (name, plan).
    pub columns: Vec<(String, ColumnPlan)>,
    /// Existing columns the release lacks.
    pub missing: Vec<ExistingColumn>,
}

/// The order of the integer/numeric widening chain.
fn numeric_rank(t: &str) -> Option<u8> {
    match t {
        "smallint" => Some(1),
        "integer" => Some(2),
        "bigint" => Some(3),
        "numeric" => Some(4),
        _ => None,
    }
}

/// The order of the temporal widening chain.
fn time_rank(t: &str) -> Option<u8> {
    match t {
        "date" => Some(1),
        "timestamp without time zone" => Some(2),
        "timestamp with time zone" => Some(3),
        _ => None,
    }
}

/// Whether a column of type `from` can be widened to `to` without losing values (both `format_type` names).
pub(crate) fn is_widening(from: &str, to: &str) -> bool {
    if from == to {
        return false;
    }
    if let (Some(a), Some(b)) = (numeric_rank(from), numeric_rank(to)) {
        return a < b;
    }
    if let (Some(a), Some(b)) = (time_rank(from), time_rank(to)) {
        return a < b;
    }
    matches!(
        (from, to),
        ("real", "double precision") | ("character varying", "text")
    ) || to == "jsonb"
        || (to == "text" && from != "bytea")
}

/// The SQL expression converting `value` (an already quoted column reference) to `to_full` (base `to_base`).
pub(crate) fn convert_expr(value: &str, from_base: &str, to_base: &str, to_full: &str) -> String {
    if from_base == to_base {
        value.to_string()
    } else if to_base == "jsonb" {
        format!("to_jsonb({value})")
    } else {
        format!("CAST({value} AS {to_full})")
    }
}

/// Compares the release's `schema` with the `existing` columns of `table`. Incompatible changes are
/// [`DestinationError::IncompatibleColumn`] unless `allow_casts`.
pub(crate) fn plan(
    table: &TableRef,
    schema: &Schema,
    existing: &[ExistingColumn],
    allow_casts: bool,
) -> Result<Evolution, DestinationError> {
    let mut evolution = Evolution::default();
    for field in schema.fields() {
        let incoming = catalog_type_name(pg_type(field)?).to_string();
        let plan = match existing.iter().find(|c| &c.name == field.name()) {
            None => ColumnPlan::Added { incoming },
            Some(c) if c.base == incoming => ColumnPlan::Same,
            Some(c) if is_widening(&c.base, &incoming) => ColumnPlan::Widened {
                existing: c.base.clone(),
                incoming,
            },
            Some(c) if is_widening(&incoming, &c.base) => ColumnPlan::Narrowed {
                existing: c.base.clone(),
                incoming,
            },
            Some(c) if allow_casts => ColumnPlan::Cast {
                existing: c.base.clone(),
                incoming,
            },
            Some(c) => {
                return Err(DestinationError::IncompatibleColumn {
                    table: table.to_string(),
                    column: field.name().clone(),
                    existing: c.base.clone(),
                    incoming,
                })
            }
        };
        evolution.columns.push((field.name().clone(), plan));
    }
    evolution.missing = existing
        .iter()
        .filter(|c| schema.fields().iter().all(|f| f.name() != &c.name))
        .cloned()
        .collect();
    Ok(evolution)
}

/// `ALTER TABLE … ALTER COLUMN … TYPE … USING …` for one column.
pub(crate) fn alter_type_sql(
    table_sql: &str,
    column: &str,
    from_base: &str,
    to_base: &str,
    to_full: &str,
) -> String {
    let col = quote_ident(column);
    format!(
        "ALTER TABLE {table_sql} ALTER COLUMN {col} TYPE {to_full} USING {}",
        convert_expr(&col, from_base, to_base, to_full)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widenings() {
        assert!(is_widening("smallint", "bigint"));
        assert!(is_widening("integer", "numeric"));
        assert!(!is_widening("bigint", "integer"));
        assert!(is_widening("real", "double precision"));
        assert!(!is_widening("double precision", "real"));
        assert!(is_widening("date", "timestamp with time zone"));
        assert!(is_widening("text[]", "jsonb"));
        assert!(is_widening("bigint", "text"));
        assert!(!is_widening("bytea", "text"));
        assert!(!is_widening("bigint", "boolean"));
        assert!(!is_widening("text", "integer"));
        assert!(!is_widening("jsonb", "jsonb"));
    }

    #[test]
    fn conversions() {
        assert_eq!(
            convert_expr("\"a\"", "text[]", "jsonb", "jsonb"),
            "to_jsonb(\"a\")"
        );
        assert_eq!(
            convert_expr("\"a\"", "integer", "bigint", "bigint"),
            "CAST(\"a\" AS bigint)"
        );
        assert_eq!(convert_expr("\"a\"", "text", "text", "text"), "\"a\"");
    }
}
