//! Column plans, cell parsing, type inference and the Arrow builders shared by the text formats
//! (CSV/TSV and JSON Lines).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde_json::Value;

use super::{ColumnReport, ColumnType, Rename, TypeOrigin};

/// How the values of one column are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// One value per cell. `strict`: the type was inferred from the sample, so later values must
    /// follow the inference rules exactly; a declared type (`casts`) parses leniently.
    Typed { ty: ColumnType, strict: bool },
    /// A multi-valued cell split on `delimiter` into a `List<Utf8>`.
    List { delimiter: String },
}

impl Kind {
    pub(super) fn data_type(&self) -> DataType {
        match self {
            Kind::Typed { ty, .. } => ty.data_type(),
            Kind::List { .. } => list_type(),
        }
    }
}

/// `List<Utf8>` with a nullable item named `item` (what [`ListBuilder`] makes).
pub(super) fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// One column of the schema and where its values come from.
#[derive(Debug, Clone)]
pub(super) struct ColumnPlan {
    /// Name in the schema.
    pub name: String,
    /// CSV/TSV: 0-based field index in the file's rows. JSON Lines: order of first appearance.
    pub index: usize,
    /// JSON Lines: the object key. CSV/TSV: the (trimmed) header cell.
    pub source: String,
    pub kind: Kind,
}

/// The schema of `columns`, every field nullable.
pub(super) fn schema_of(columns: &[ColumnPlan]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.data_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Final column names for the (trimmed) header cells: an empty name becomes `column_<n>` (`n` the
/// 1-based position in the file, `position`), a repeated name gets `_2`, `_3`, … (skipping names
/// that exist in the header anyway).
pub(super) fn unique_names(headers: &[(usize, String)]) -> Vec<(String, Option<Rename>)> {
    let reserved: BTreeSet<&str> = headers.iter().map(|(_, h)| h.as_str()).collect();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(headers.len());
    for (position, header) in headers {
        let (base, mut rename) = if header.is_empty() {
            (format!("column_{}", position + 1), Some(Rename::Empty))
        } else {
            (header.clone(), None)
        };
        let mut name = base.clone();
        if used.contains(&name) {
            let mut k = 2usize;
            loop {
                let candidate = format!("{base}_{k}");
                if !used.contains(&candidate) && !reserved.contains(candidate.as_str()) {
                    name = candidate;
                    break;
                }
                k += 1;
            }
            rename = Some(Rename::Duplicate { of: base.clone() });
        }
        used.insert(name.clone());
        out.push((name, rename));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing cells.

/// An integer as inference accepts it: optional sign, ASCII digits, no leading zero (`007` stays
/// text, so identifiers keep their zeros), within the i64 range.
pub(super) fn parse_int_strict(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// An integer as a declared `int64` accepts it: any i64 text (leading zeros too), or an integral
/// number such as `3.0` or `1e3`.
fn parse_int_lenient(s: &str) -> Option<i64> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(i);
    }
    let f = parse_float_strict(s).or_else(|| s.parse::<f64>().ok().filter(|f| f.is_finite()))?;
    // 2^63 is exactly representable; i64::MAX is not.
    if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
    {
        Some(f as i64)
    } else {
        None
    }
}

/// A decimal number as inference accepts it: digits with an optional sign, point and exponent
/// (`3.0`, `-0.1666`, `.5`, `1e-3`); no `NaN`/`inf`, no leading zero before another digit (`007.5`).
pub(super) fn parse_float_strict(s: &str) -> Option<f64> {
    if !s.bytes().any(|b| b.is_ascii_digit())
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return None;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let b = unsigned.as_bytes();
    if b.len() > 1 && b[0] == b'0' && b[1].is_ascii_digit() {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `true`/`false`/`yes`/`no` in any case; a declared `bool` also takes `1`/`0`.
fn parse_bool(s: &str, declared: bool) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") || s.eq_ignore_ascii_case("no") {
        Some(false)
    } else if declared && s == "1" {
        Some(true)
    } else if declared && s == "0" {
        Some(false)
    } else {
        None
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (exactly that shape).
pub(super) fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return None;
    }
    let date = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((date - epoch).num_days()).ok()
}

/// Microseconds since the Unix epoch of an RFC 3339 timestamp with an offset
/// (`2013-06-11T14:01:25.3+02:00`, `…Z`). A declared `timestamp` also takes a timestamp without an
/// offset (`2013-06-11T14:01:25`, `2013-06-11 14:01:25.3`), read as UTC.
pub(super) fn parse_timestamp(s: &str, declared: bool) -> Option<i64> {
    if s.len() < 11 || !s.as_bytes()[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros());
    }
    if declared {
        for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(s, format) {
                return Some(naive.and_utc().timestamp_micros());
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Inference.

/// What the non-empty sample values of a text column allow.
#[derive(Debug, Clone)]
pub(super) struct TextInference {
    int: bool,
    float: bool,
    boolean: bool,
    date: bool,
    timestamp: bool,
    /// Non-empty values seen.
    pub non_null: u64,
    /// The first non-empty value.
    pub example: Option<String>,
}

impl TextInference {
    pub(super) fn new() -> TextInference {
        TextInference {
            int: true,
            float: true,
            boolean: true,
            date: true,
            timestamp: true,
            non_null: 0,
            example: None,
        }
    }

    /// Records one cell (untrimmed); empty cells are nulls and allow every type.
    pub(super) fn observe(&mut self, raw: &str) {
        let v = raw.trim();
        if v.is_empty() {
            return;
        }
        self.non_null += 1;
        if self.example.is_none() {
            self.example = Some(preview(raw));
        }
        self.int = self.int && parse_int_strict(v).is_some();
        self.float = self.float && parse_float_strict(v).is_some();
        self.boolean = self.boolean && parse_bool(v, false).is_some();
        self.date = self.date && parse_date(v).is_some();
        self.timestamp = self.timestamp && parse_timestamp(v, false).is_some();
    }

    /// The narrowest type every value fits: Int64, Float64, Bool, Date, Timestamp, else Text (also
    /// for a column without any value).
    pub(super) fn result(&self) -> ColumnType {
        if self.non_null == 0 {
            ColumnType::Text
        } else if self.int {
            ColumnType::Int64
        } else if self.float {
            ColumnType::Float64
        } else if self.boolean {
            ColumnType::Bool
        } else if self.date {
            ColumnType::Date
        } else if self.timestamp {
            ColumnType::Timestamp
        } else {
            ColumnType::Text
        }
    }
}

/// A value for messages and reports: at most 60 characters.
pub(super) fn preview(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Building arrays.

/// One cell of a row.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cell<'a> {
    /// Missing (a JSON key that is absent).
    Null,
    /// A CSV/TSV cell, untrimmed.
    Text(&'a str),
    /// A JSON value (`null` is a null).
    Json(&'a Value),
}

/// The Arrow builder of one column.
pub(super) enum Builder {
    Text(StringBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    List(ListBuilder<StringBuilder>),
}

impl Builder {
    pub(super) fn new(kind: &Kind, rows: usize) -> Builder {
        match kind {
            Kind::List { .. } => Builder::List(ListBuilder::with_capacity(
                StringBuilder::with_capacity(rows, rows * 8),
                rows,
            )),
            Kind::Typed { ty, .. } => match ty {
                ColumnType::Text => Builder::Text(StringBuilder::with_capacity(rows, rows * 8)),
                ColumnType::Int64 => Builder::Int64(Int64Builder::with_capacity(rows)),
                ColumnType::Float64 => Builder::Float64(Float64Builder::with_capacity(rows)),
                ColumnType::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
                ColumnType::Date => Builder::Date(Date32Builder::with_capacity(rows)),
                ColumnType::Timestamp => Builder::Timestamp(
                    TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
                ),
            },
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Text(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::List(b) => b.append_null(),
        }
    }

    /// Appends one cell. `Err` holds the offending value as shown to the user.
    pub(super) fn append(&mut self, kind: &Kind, cell: Cell<'_>) -> Result<(), String> {
        let text = match cell {
            Cell::Null | Cell::Json(Value::Null) => {
                self.append_null();
                return Ok(());
            }
            Cell::Text(s) => s,
            Cell::Json(Value::String(s)) => s.as_str(),
            Cell::Json(v) => return self.append_json(kind, v),
        };
        let v = text.trim();
        if v.is_empty() {
            self.append_null();
            return Ok(());
        }
        let declared = matches!(kind, Kind::Typed { strict: false, .. });
        let bad = || format!("`{}`", preview(text));
        match self {
            // Text keeps the cell as it is, surrounding spaces included.
            Builder::Text(b) => b.append_value(text),
            Builder::Int64(b) => {
                let i = if declared {
                    parse_int_lenient(v)
                } else {
                    parse_int_strict(v)
                };
                b.append_value(i.ok_or_else(bad)?)
            }
            Builder::Float64(b) => {
                let f = if declared {
                    v.parse::<f64>().ok()
                } else {
                    parse_float_strict(v)
                };
                b.append_value(f.ok_or_else(bad)?)
            }
            Builder::Bool(b) => b.append_value(parse_bool(v, declared).ok_or_else(bad)?),
            Builder::Date(b) => b.append_value(parse_date(v).ok_or_else(bad)?),
            Builder::Timestamp(b) => b.append_value(parse_timestamp(v, declared).ok_or_else(bad)?),
            Builder::List(b) => {
                let Kind::List { delimiter } = kind else {
                    unreachable!("a list builder always has a list kind")
                };
                for part in text.split(delimiter.as_str()) {
                    let part = part.trim();
                    if !part.is_empty() {
                        b.values().append_value(part);
                    }
                }
                b.append(true);
            }
        }
        Ok(())
    }

    /// A JSON number, boolean, array or object.
    fn append_json(&mut self, kind: &Kind, v: &Value) -> Result<(), String> {
        let declared = matches!(kind, Kind::Typed { strict: false, .. });
        let bad = || format!("`{}`", preview(&v.to_string()));
        match self {
            Builder::Text(b) => b.append_value(v.to_string()),
            Builder::Int64(b) => {
                let i = match v.as_i64() {
                    Some(i) => Some(i),
                    None if declared => v.as_f64().and_then(|f| parse_int_lenient(&f.to_string())),
                    None => None,
                };
                b.append_value(i.ok_or_else(bad)?)
            }
            Builder::Float64(b) => b.append_value(v.as_f64().ok_or_else(bad)?),
            Builder::Bool(b) => match v {
                Value::Bool(x) => b.append_value(*x),
                Value::Number(n)
                    if declared && (n.as_u64() == Some(1) || n.as_u64() == Some(0)) =>
                {
                    b.append_value(n.as_u64() == Some(1))
                }
                _ => return Err(bad()),
            },
            Builder::Date(_) | Builder::Timestamp(_) => return Err(bad()),
            Builder::List(b) => {
                match v {
                    Value::Array(items) => {
                        for item in items {
                            match item {
                                Value::Null => {}
                                Value::String(s) => {
                                    let s = s.trim();
                                    if !s.is_empty() {
                                        b.values().append_value(s);
                                    }
                                }
                                other => b.values().append_value(other.to_string()),
                            }
                        }
                    }
                    other => b.values().append_value(other.to_string()),
                }
                b.append(true);
            }
        }
        Ok(())
    }

    pub(super) fn finish(self) -> ArrayRef {
        match self {
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::Float64(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Date(mut b) => Arc::new(b.finish()),
            Builder::Timestamp(mut b) => Arc::new(b.finish()),
            Builder::List(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The message for a value that does not fit its column's type.
pub(super) fn type_mismatch(column: &ColumnPlan, value: &str, sample_rows: u64) -> String {
    match &column.kind {
        Kind::Typed { ty, strict: true } => format!(
            "value {value} is not {} ({ty}), the type inferred from the first {sample_rows} data rows; \
             declare the column's type in the config's `casts`, e.g. casts: {{'{}': text}}",
            ty.describe(),
            column.name
        ),
        Kind::Typed { ty, strict: false } => format!(
            "value {value} is not {} ({ty}) as declared in `casts`; fix the value, or declare the \
             column text",
            ty.describe()
        ),
        Kind::List { .. } => format!("value {value} cannot be split into a list"),
    }
}

/// The report line of one column planned from text.
/// How a column is read, by precedence: multi-valued (`multi_valued`), declared (`casts`), all text (type
/// inference off), else the type `inferred` from the sample.
pub(super) fn choose_kind(
    config: &super::FilesConfig,
    name: &str,
    inferred: impl FnOnce() -> ColumnType,
) -> (Kind, TypeOrigin) {
    if let Some(d) = config.multi_valued.get(name) {
        (
            Kind::List {
                delimiter: d.clone(),
            },
            TypeOrigin::MultiValued,
        )
    } else if let Some(ty) = config.casts.get(name) {
        (
            Kind::Typed {
                ty: *ty,
                strict: false,
            },
            TypeOrigin::Declared,
        )
    } else if !config.infer_types {
        (
            Kind::Typed {
                ty: ColumnType::Text,
                strict: false,
            },
            TypeOrigin::NotInferred,
        )
    } else {
        (
            Kind::Typed {
                ty: inferred(),
                strict: true,
            },
            TypeOrigin::Inferred,
        )
    }
}

pub(super) fn report(
    column: &ColumnPlan,
    header: String,
    origin: TypeOrigin,
    renamed: Option<Rename>,
    sample_rows: u64,
    non_null: u64,
    example: Option<String>,
) -> ColumnReport {
    ColumnReport {
        name: column.name.clone(),
        source_name: header,
        position: column.index,
        data_type: column.kind.data_type(),
        origin,
        renamed,
        sample_rows,
        non_null,
        example,
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Typed { ty, .. } => write!(f, "{ty}"),
            Kind::List { delimiter } => write!(f, "list of text split on `{delimiter}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_numbers() {
        assert_eq!(parse_int_strict("42"), Some(42));
        assert_eq!(parse_int_strict("-7"), Some(-7));
        assert_eq!(parse_int_strict("0"), Some(0));
        assert_eq!(parse_int_strict("007"), None);
        assert_eq!(parse_int_strict("3.0"), None);
        assert_eq!(parse_int_strict("99999999999999999999"), None);
        assert_eq!(parse_float_strict("3.0"), Some(3.0));
        assert_eq!(parse_float_strict("0.1666"), Some(0.1666));
        assert_eq!(parse_float_strict("1e-3"), Some(0.001));
        assert_eq!(parse_float_strict("NaN"), None);
        assert_eq!(parse_float_strict("inf"), None);
        assert_eq!(parse_float_strict("007.5"), None);
        assert_eq!(parse_float_strict("-"), None);
        assert_eq!(parse_int_lenient("007"), Some(7));
        assert_eq!(parse_int_lenient("3.0"), Some(3));
        assert_eq!(parse_int_lenient("3.5"), None);
    }

    #[test]
    fn bools_dates_timestamps() {
        assert_eq!(parse_bool("TRUE", false), Some(true));
        assert_eq!(parse_bool("No", false), Some(false));
        assert_eq!(parse_bool("1", false), None);
        assert_eq!(parse_bool("1", true), Some(true));
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("2020-1-5"), None);
        assert_eq!(parse_date("2020-02-30"), None);
        assert_eq!(
            parse_timestamp("2013-06-11T14:01:25.3+02:00", false),
            Some(1_370_952_085_300_000)
        );
        assert_eq!(parse_timestamp("2013-06-11T12:01:25.3", false), None);
        assert_eq!(
            parse_timestamp("2013-06-11 12:01:25.3", true),
            Some(1_370_952_085_300_000)
        );
    }

    #[test]
    fn inference_picks_the_narrowest_type() {
        let infer = |values: &[&str]| {
            let mut i = TextInference::new();
            for v in values {
                i.observe(v);
            }
            i.result()
        };
        assert_eq!(infer(&["1", " ", "22"]), ColumnType::Int64);
        assert_eq!(infer(&["1", "2.5"]), ColumnType::Float64);
        assert_eq!(infer(&["TRUE", "false", ""]), ColumnType::Bool);
        assert_eq!(infer(&["0", "1"]), ColumnType::Int64);
        assert_eq!(infer(&["2020-01-01"]), ColumnType::Date);
        assert_eq!(infer(&["2020-01-01T00:00:00Z"]), ColumnType::Timestamp);
        assert_eq!(infer(&["F", "M"]), ColumnType::Text);
        assert_eq!(infer(&["001", "002"]), ColumnType::Text);
        assert_eq!(infer(&["", " "]), ColumnType::Text);
    }

    #[test]
    fn names_are_unique() {
        let headers: Vec<(usize, String)> = ["a", "a", "", "a_2", "a"]
            .iter()
            .enumerate()
            .map(|(i, h)| (i, h.to_string()))
            .collect();
        let names: Vec<String> = unique_names(&headers).into_iter().map(|n| n.0).collect();
        assert_eq!(names, ["a", "a_3", "column_3", "a_2", "a_4"]);
    }
}
