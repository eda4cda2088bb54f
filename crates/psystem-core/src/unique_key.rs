//! Unique keystrings: the stable text identity of an entity, built from the values of its key columns.
//!
//! psystem remembers the id it gave an entity (see `psystem_postgres::idcache`) under a *keystring* built from
//! the entity's key columns, like the Kids First ingest library: the record `P1, Cleft Ear, 765` of a phenotype
//! keyed on (participant, phenotype, age) becomes `p1__cleft-ear__765`. The same entity must give the same
//! keystring in every run, in every release of psystem, so **the rules below are a stable contract**: changing
//! any of them changes keys and therefore ids. They are also in `docs/ID_CACHE.md`.
//!
//! # From components to a keystring ([`keystring`])
//!
//! 1. **Normalise** each component ([`normalize`]): Unicode lower case (`str::to_lowercase`, no Unicode
//!    normalisation such as NFC), leading and trailing whitespace removed, every inner run of whitespace
//!    (Unicode `White_Space`: spaces, tabs, newlines, no-break spaces, …) replaced by one `-`.
//!    `"  Cleft \t Ear "` → `cleft-ear`. Normalisation deliberately identifies case and spacing variants (and a
//!    whitespace run with a literal `-`: `cleft ear` and `cleft-ear` are the same key, as in Kids First).
//! 2. **Escape** the normalised text (percent escapes with lower-case hex, [`ESCAPE`] = `%`):
//!    - `%` → `%25`;
//!    - the NUL character → `%00` (PostgreSQL `text` cannot hold it);
//!    - an `_` that is the first or last character, or next to another `_`, → `%5f`
//!      (`snake_case` stays, `a__b` → `a%5f%5fb`, `_x` → `%5fx`);
//!    - a normalised text that is exactly `<none>` → `%3cnone>` (so it cannot be taken for a null).
//! 3. A **null** component is the marker [`NULL_MARKER`] `<none>`.
//! 4. The components are **joined** with [`SEPARATOR`] `__`.
//!
//! After step 2 no component contains `__`, starts or ends with `_`, or equals `<none>`, so splitting a keystring
//! on `__` gives back exactly the escaped components: **two different lists of normalised components of the same
//! length never give the same keystring**. (Across lengths only the empty list and `[""]` coincide, both `""`;
//! an entity always has the same number of key columns.)
//!
//! # From Arrow values to components ([`batch_keystrings`], [`column_texts`])
//!
//! Each value is first rendered as text, so that the same value arriving as an integer, a float or a string gives
//! the same key:
//!
//! | Arrow type | text |
//! |---|---|
//! | `Int*`, `UInt*` | decimal: `765`, `-3` |
//! | `Float16/32/64` | Rust's shortest round-trip decimal form, never with an exponent; an integral value has no fraction (`765.0` → `765`), `-0.0` → `0`, `NaN`, `inf`, `-inf` (lower-cased later); `Float16` as its exact `f32` value |
//! | `Decimal32/64/128/256` | the exact decimal with trailing fractional zeros removed: `765.00` → `765`, `1.50` → `1.5` |
//! | `Boolean` | `true` / `false` |
//! | `Utf8`, `LargeUtf8`, `Utf8View` | as is |
//! | `Date32`, `Date64` | ISO `YYYY-MM-DD` (a `Date64` time of day is ignored) |
//! | `Timestamp(unit, tz)` | RFC 3339 in UTC with `Z`, fraction only when non-zero (3, 6 or 9 digits): `2024-01-02T03:04:05Z`, `2024-01-02T03:04:05.250Z`; a timestamp without zone is read as UTC |
//! | `Time32`, `Time64` | `HH:MM:SS`, fraction only when non-zero (`12:30:00.500`) |
//! | `Dictionary(_, T)` | the text of the value it points to |
//! | `List(T)`, `LargeList(T)`, `FixedSizeList(T)` of the scalar types above | a **set**: each element rendered, normalised as in step 1, a null element → `<none>`, an empty element → `<empty>`; in elements `%` → `%25`, `,` → `%2c`, and an element exactly `<none>` / `<empty>` → `%3cnone>` / `%3cempty>`; the elements **sorted** (byte order) and joined with `,`. `["B", null, "a"]` → `<none>,a,b`; an empty list → `` |
//! | `Null` | null |
//!
//! Lists are treated as sets because sources seldom promise an order for multi-valued fields; a list whose order
//! matters should be turned into a string in the entry's transform. A null value of any type is a null
//! component. Other types (binary, structs, maps, nested lists, intervals, durations) are refused with
//! [`KeyError::UnsupportedType`].

use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Decimal256Type, Decimal32Type, Decimal64Type,
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrowPrimitiveType, OffsetSizeTrait, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chrono::{NaiveDateTime, NaiveTime, SecondsFormat};

/// The text of a null component: `<none>`.
pub const NULL_MARKER: &str = "<none>";

/// The separator between components: `__` (as in Kids First).
pub const SEPARATOR: &str = "__";

/// The escape character: `%`, followed by two lower-case hex digits.
pub const ESCAPE: char = '%';

/// The text of an empty element inside a list value: `<empty>`.
pub const EMPTY_ELEMENT: &str = "<empty>";

/// Why keystrings cannot be built from a record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No key columns were given.
    #[error("the unique key names no columns; list at least one column")]
    NoColumns,
    /// A key column is not in the batch.
    #[error("unique key column `{column}` is not in the data (columns: `{}`); fix the unique key or the entry's column selection", available.join("`, `"))]
    MissingColumn {
        /// The missing column.
        column: String,
        /// The columns the batch has.
        available: Vec<String>,
    },
    /// A key column has a type that has no key text.
    #[error("unique key column `{column}` has Arrow type {data_type}, which cannot be part of a unique key; cast it to a string in the entry's transform")]
    UnsupportedType {
        /// The column.
        column: String,
        /// The Arrow type, as text.
        data_type: String,
    },
}

/// Normalises one component: Unicode lower case, trimmed, inner whitespace runs → one `-`.
///
/// ```
/// use psystem_core::unique_key::normalize;
/// assert_eq!(normalize("  Cleft \t Ear "), "cleft-ear");
/// ```
pub fn normalize(component: &str) -> String {
    let lower = component.to_lowercase();
    let mut out = String::with_capacity(lower.len());
    for (i, word) in lower.split_whitespace().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.push_str(word);
    }
    out
}

/// Appends the escaped form of an already normalised component to `out` (step 2 of the module docs).
fn escape_component(normalised: &str, out: &mut String) {
    if normalised == NULL_MARKER {
        out.push_str("%3cnone>");
        return;
    }
    let chars: Vec<char> = normalised.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '%' => out.push_str("%25"),
            '\0' => out.push_str("%00"),
            '_' => {
                let first_or_last = i == 0 || i + 1 == chars.len();
                let next_to_underscore =
                    (i > 0 && chars[i - 1] == '_') || chars.get(i + 1) == Some(&'_');
                if first_or_last || next_to_underscore {
                    out.push_str("%5f");
                } else {
                    out.push('_');
                }
            }
            c => out.push(c),
        }
    }
}

/// Builds the keystring of one entity from its key components (`None` = null), in key-column order.
///
/// ```
/// use psystem_core::unique_key::keystring;
/// assert_eq!(keystring(&[Some("P1"), Some("Cleft Ear"), Some("765")]), "p1__cleft-ear__765");
/// assert_eq!(keystring(&[Some("a__b"), None]), "a%5f%5fb__<none>");
/// ```
pub fn keystring(components: &[Option<&str>]) -> String {
    let mut out = String::new();
    for (i, component) in components.iter().enumerate() {
        if i > 0 {
            out.push_str(SEPARATOR);
        }
        match component {
            None => out.push_str(NULL_MARKER),
            Some(text) => escape_component(&normalize(text), &mut out),
        }
    }
    out
}

/// Builds the keystring of every row of `batch` from the key `columns` (in that order); see the module docs for
/// how values become text.
///
/// Errors: no columns ([`KeyError::NoColumns`]), a column missing from the batch ([`KeyError::MissingColumn`])
/// or of a type without key text ([`KeyError::UnsupportedType`]).
pub fn batch_keystrings(batch: &RecordBatch, columns: &[String]) -> Result<Vec<String>, KeyError> {
    if columns.is_empty() {
        return Err(KeyError::NoColumns);
    }
    let schema = batch.schema();
    let mut texts = Vec::with_capacity(columns.len());
    for name in columns {
        let index = schema.index_of(name).map_err(|_| KeyError::MissingColumn {
            column: name.clone(),
            available: schema.fields().iter().map(|f| f.name().clone()).collect(),
        })?;
        texts.push(column_texts(batch.column(index).as_ref(), name)?);
    }
    Ok((0..batch.num_rows())
        .map(|row| {
            let components: Vec<Option<&str>> =
                texts.iter().map(|column| column[row].as_deref()).collect();
            keystring(&components)
        })
        .collect())
}

/// The key text of every value of one column (`None` = null), before normalisation; `column` names the column in
/// errors. See the module docs for the rendering of each type.
pub fn column_texts(array: &dyn Array, column: &str) -> Result<Vec<Option<String>>, KeyError> {
    render(array, column, true)
}

fn unsupported(column: &str, data_type: &DataType) -> KeyError {
    KeyError::UnsupportedType {
        column: column.to_string(),
        data_type: data_type.to_string(),
    }
}

/// Renders every value of `array`; `allow_lists` is false inside a list (nested lists are refused).
fn render(
    array: &dyn Array,
    column: &str,
    allow_lists: bool,
) -> Result<Vec<Option<String>>, KeyError> {
    fn each<F: Fn(usize) -> String>(array: &dyn Array, f: F) -> Vec<Option<String>> {
        (0..array.len())
            .map(|i| (!array.is_null(i)).then(|| f(i)))
            .collect()
    }
    fn ints<T: ArrowPrimitiveType>(array: &dyn Array) -> Vec<Option<String>>
    where
        T::Native: std::fmt::Display,
    {
        let a = array.as_primitive::<T>();
        each(array, |i| a.value(i).to_string())
    }
    fn timestamps<T: ArrowPrimitiveType<Native = i64>>(array: &dyn Array) -> Vec<Option<String>> {
        let a = array.as_primitive::<T>();
        (0..array.len())
            .map(|i| {
                if array.is_null(i) {
                    return None;
                }
                let v = a.value(i);
                Some(
                    match arrow_array::temporal_conversions::as_datetime::<T>(v) {
                        Some(dt) => timestamp_text(dt),
                        // Out of chrono's range: keep the raw number, still stable.
                        None => v.to_string(),
                    },
                )
            })
            .collect()
    }
    fn times<T: ArrowPrimitiveType>(array: &dyn Array) -> Vec<Option<String>>
    where
        T::Native: Into<i64>,
    {
        let a = array.as_primitive::<T>();
        each(array, |i| {
            let v: i64 = a.value(i).into();
            match arrow_array::temporal_conversions::as_time::<T>(v) {
                Some(t) => time_text(t),
                None => v.to_string(),
            }
        })
    }

    let data_type = array.data_type();
    Ok(match data_type {
        DataType::Null => vec![None; array.len()],
        DataType::Boolean => {
            let a = array.as_boolean();
            each(array, |i| a.value(i).to_string())
        }
        DataType::Int8 => ints::<Int8Type>(array),
        DataType::Int16 => ints::<Int16Type>(array),
        DataType::Int32 => ints::<Int32Type>(array),
        DataType::Int64 => ints::<Int64Type>(array),
        DataType::UInt8 => ints::<UInt8Type>(array),
        DataType::UInt16 => ints::<UInt16Type>(array),
        DataType::UInt32 => ints::<UInt32Type>(array),
        DataType::UInt64 => ints::<UInt64Type>(array),
        DataType::Float16 => {
            let a = array.as_primitive::<Float16Type>();
            each(array, |i| f32_text(a.value(i).to_f32()))
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            each(array, |i| f32_text(a.value(i)))
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            each(array, |i| f64_text(a.value(i)))
        }
        DataType::Decimal32(..) => {
            let a = array.as_primitive::<Decimal32Type>();
            each(array, |i| decimal_text(a.value_as_string(i)))
        }
        DataType::Decimal64(..) => {
            let a = array.as_primitive::<Decimal64Type>();
            each(array, |i| decimal_text(a.value_as_string(i)))
        }
        DataType::Decimal128(..) => {
            let a = array.as_primitive::<Decimal128Type>();
            each(array, |i| decimal_text(a.value_as_string(i)))
        }
        DataType::Decimal256(..) => {
            let a = array.as_primitive::<Decimal256Type>();
            each(array, |i| decimal_text(a.value_as_string(i)))
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            each(array, |i| a.value(i).to_string())
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            each(array, |i| a.value(i).to_string())
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            each(array, |i| a.value(i).to_string())
        }
        DataType::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            each(array, |i| {
                let v = a.value(i);
                match arrow_array::temporal_conversions::as_date::<Date32Type>(v.into()) {
                    Some(d) => d.format("%Y-%m-%d").to_string(),
                    None => v.to_string(),
                }
            })
        }
        DataType::Date64 => {
            let a = array.as_primitive::<Date64Type>();
            each(array, |i| {
                let v = a.value(i);
                match arrow_array::temporal_conversions::as_date::<Date64Type>(v) {
                    Some(d) => d.format("%Y-%m-%d").to_string(),
                    None => v.to_string(),
                }
            })
        }
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => timestamps::<TimestampSecondType>(array),
            TimeUnit::Millisecond => timestamps::<TimestampMillisecondType>(array),
            TimeUnit::Microsecond => timestamps::<TimestampMicrosecondType>(array),
            TimeUnit::Nanosecond => timestamps::<TimestampNanosecondType>(array),
        },
        DataType::Time32(TimeUnit::Second) => times::<Time32SecondType>(array),
        DataType::Time32(TimeUnit::Millisecond) => times::<Time32MillisecondType>(array),
        DataType::Time64(TimeUnit::Microsecond) => times::<Time64MicrosecondType>(array),
        DataType::Time64(TimeUnit::Nanosecond) => times::<Time64NanosecondType>(array),
        DataType::Dictionary(_, _) => {
            let dict = array
                .as_any_dictionary_opt()
                .ok_or_else(|| unsupported(column, data_type))?;
            let values = render(dict.values().as_ref(), column, allow_lists)?;
            if values.is_empty() {
                vec![None; array.len()]
            } else {
                let keys = dict.normalized_keys();
                (0..array.len())
                    .map(|i| {
                        if array.is_null(i) {
                            None
                        } else {
                            values[keys[i]].clone()
                        }
                    })
                    .collect()
            }
        }
        DataType::List(_) if allow_lists => list_texts(array.as_list::<i32>(), column)?,
        DataType::LargeList(_) if allow_lists => list_texts(array.as_list::<i64>(), column)?,
        DataType::FixedSizeList(_, size) if allow_lists => {
            let a = array.as_fixed_size_list();
            let elements = render(a.values().as_ref(), column, false)?;
            let size = (*size).max(0) as usize;
            (0..array.len())
                .map(|i| {
                    (!array.is_null(i)).then(|| {
                        let start = a.value_offset_at(i);
                        set_text(&elements[start..start + size])
                    })
                })
                .collect()
        }
        other => return Err(unsupported(column, other)),
    })
}

fn list_texts<O: OffsetSizeTrait>(
    list: &arrow_array::GenericListArray<O>,
    column: &str,
) -> Result<Vec<Option<String>>, KeyError> {
    let elements = render(list.values().as_ref(), column, false)?;
    let offsets = list.value_offsets();
    Ok((0..list.len())
        .map(|i| {
            (!list.is_null(i)).then(|| {
                let start = offsets[i].as_usize();
                let end = offsets[i + 1].as_usize();
                set_text(&elements[start..end])
            })
        })
        .collect())
}

/// The text of a list value: elements normalised and escaped, sorted, joined with `,`.
fn set_text(elements: &[Option<String>]) -> String {
    let mut parts: Vec<String> = elements
        .iter()
        .map(|element| match element {
            None => NULL_MARKER.to_string(),
            Some(text) => {
                let normalised = normalize(text);
                match normalised.as_str() {
                    "" => EMPTY_ELEMENT.to_string(),
                    NULL_MARKER => "%3cnone>".to_string(),
                    EMPTY_ELEMENT => "%3cempty>".to_string(),
                    _ => {
                        let mut out = String::with_capacity(normalised.len());
                        for c in normalised.chars() {
                            match c {
                                '%' => out.push_str("%25"),
                                ',' => out.push_str("%2c"),
                                c => out.push(c),
                            }
                        }
                        out
                    }
                }
            }
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// Shortest round-trip text of a double, integral values without a fraction, `-0` as `0`.
fn f64_text(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    // `Display` of f64 is the shortest representation that round-trips, never in exponent form, and prints an
    // integral value without `.0`.
    format!("{v}")
}

/// As [`f64_text`], with the shortest text that round-trips as an `f32` (`0.1f32` → `0.1`).
fn f32_text(v: f32) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    format!("{v}")
}

/// Removes trailing fractional zeros (and a bare `.`) from an exact decimal; `-0` → `0`.
fn decimal_text(mut s: String) -> String {
    if s.contains('.') {
        let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(trimmed);
    }
    if s == "-0" || s.is_empty() {
        s = "0".to_string();
    }
    s
}

fn timestamp_text(dt: NaiveDateTime) -> String {
    dt.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn time_text(t: NaiveTime) -> String {
    let mut s = String::with_capacity(18);
    let _ = write!(s, "{}", t.format("%H:%M:%S%.f"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{
        ArrayRef, BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float32Array,
        Float64Array, Int64Array, StringArray, Time64MicrosecondArray, TimestampMillisecondArray,
        UInt64Array,
    };
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn keystring_table() {
        let cases: &[(&[Option<&str>], &str)] = &[
            // The Kids First example.
            (
                &[Some("P1"), Some("Cleft Ear"), Some("765")],
                "p1__cleft-ear__765",
            ),
            // Trimming, case, runs of spaces and tabs.
            (&[Some("  P1 ")], "p1"),
            (&[Some("Cleft   Ear")], "cleft-ear"),
            (&[Some("Cleft\tEar")], "cleft-ear"),
            (&[Some("Cleft \t\n Ear")], "cleft-ear"),
            (&[Some("a\u{00A0}b")], "a-b"),
            (&[Some("a\u{3000}b")], "a-b"),
            (&[Some("cleft-ear")], "cleft-ear"),
            // Unicode lower case.
            (&[Some("ÉCOLE Ärzte")], "école-ärzte"),
            (&[Some("ΟΔΟΣ")], "οδος"),
            (&[Some("İstanbul")], "i\u{307}stanbul"),
            (&[Some("STRASSE ẞ")], "strasse-ß"),
            // Nulls and empties.
            (&[None], "<none>"),
            (&[Some("P1"), None, Some("765")], "p1__<none>__765"),
            (&[Some("")], ""),
            (&[Some("   ")], ""),
            (&[Some(""), Some("")], "__"),
            (&[None, None], "<none>__<none>"),
            // Escaping.
            (&[Some("<none>")], "%3cnone>"),
            (&[Some(" <NONE> ")], "%3cnone>"),
            (&[Some("<none>x")], "<none>x"),
            (&[Some("a__b")], "a%5f%5fb"),
            (&[Some("a___b")], "a%5f%5f%5fb"),
            (&[Some("snake_case_name")], "snake_case_name"),
            (&[Some("_lead")], "%5flead"),
            (&[Some("trail_")], "trail%5f"),
            (&[Some("_")], "%5f"),
            (&[Some("100%")], "100%25"),
            (&[Some("%5f")], "%255f"),
            (&[Some("a\0b")], "a%00b"),
            (&[Some("a_"), Some("b")], "a%5f__b"),
            (&[Some("a"), Some("_b")], "a__%5fb"),
            // Already-normalised text is unchanged apart from escaping.
            (
                &[Some("p1"), Some("cleft-ear"), Some("765")],
                "p1__cleft-ear__765",
            ),
        ];
        for (components, expected) in cases {
            assert_eq!(
                keystring(components),
                *expected,
                "components {components:?}"
            );
        }
    }

    #[test]
    fn keystrings_do_not_collide() {
        // Component lists that naive joining would confuse.
        let lists: Vec<Vec<Option<&str>>> = vec![
            vec![Some("a__b")],
            vec![Some("a"), Some("b")],
            vec![Some("a_"), Some("_b")],
            vec![Some("a_"), Some("b")],
            vec![Some("a"), Some("_b")],
            vec![Some("a___b")],
            vec![Some("a_"), Some("__b")],
            vec![Some("<none>")],
            vec![None],
            vec![Some("%5f")],
            vec![Some("_")],
            vec![Some("")],
            vec![Some(""), Some("")],
            vec![Some("__")],
            vec![Some("a%5f%5fb")],
            vec![Some("a"), None],
            vec![Some("a"), Some("<none>")],
        ];
        let mut seen = std::collections::HashMap::new();
        for list in &lists {
            if let Some(other) = seen.insert(keystring(list), list.clone()) {
                panic!("{list:?} and {other:?} give the same keystring");
            }
        }
    }

    #[test]
    fn splitting_on_the_separator_recovers_the_components() {
        let list = [Some("x__"), Some("__y"), None, Some("_"), Some("m_n")];
        let key = keystring(&list);
        assert_eq!(key.split(SEPARATOR).count(), list.len(), "{key}");
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    fn texts(array: ArrayRef) -> Vec<Option<String>> {
        column_texts(array.as_ref(), "c").unwrap()
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn value_texts() {
        assert_eq!(
            texts(Arc::new(Int64Array::from(vec![Some(765), Some(-3), None]))),
            vec![Some("765".into()), Some("-3".into()), None]
        );
        assert_eq!(
            texts(Arc::new(UInt64Array::from(vec![u64::MAX]))),
            some(&["18446744073709551615"])
        );
        assert_eq!(
            texts(Arc::new(Float64Array::from(vec![
                765.0,
                0.1,
                -0.0,
                1.5e-7,
                1e21,
                f64::NAN,
                f64::INFINITY,
                -2.5
            ]))),
            some(&[
                "765",
                "0.1",
                "0",
                "0.00000015",
                "1000000000000000000000",
                "NaN",
                "inf",
                "-2.5"
            ])
        );
        assert_eq!(
            texts(Arc::new(Float32Array::from(vec![0.1f32, 765.0]))),
            some(&["0.1", "765"])
        );
        let dec = Decimal128Array::from(vec![76500, 150, 0, -1200])
            .with_precision_and_scale(10, 2)
            .unwrap();
        assert_eq!(texts(Arc::new(dec)), some(&["765", "1.5", "0", "-12"]));
        assert_eq!(
            texts(Arc::new(BooleanArray::from(vec![true, false]))),
            some(&["true", "false"])
        );
        assert_eq!(
            texts(Arc::new(Date32Array::from(vec![0, 19_723]))),
            some(&["1970-01-01", "2024-01-01"])
        );
        assert_eq!(
            texts(Arc::new(
                TimestampMillisecondArray::from(vec![1_704_164_645_000, 1_704_164_645_250])
                    .with_timezone("Europe/Paris")
            )),
            some(&["2024-01-02T03:04:05Z", "2024-01-02T03:04:05.250Z"])
        );
        assert_eq!(
            texts(Arc::new(Time64MicrosecondArray::from(vec![
                45_000_000_000,
                45_000_500_000
            ]))),
            some(&["12:30:00", "12:30:00.500"])
        );
        let dict: DictionaryArray<arrow_array::types::Int32Type> =
            vec![Some("x"), None, Some("y"), Some("x")]
                .into_iter()
                .collect();
        assert_eq!(
            texts(Arc::new(dict)),
            vec![Some("x".into()), None, Some("y".into()), Some("x".into())]
        );
    }

    #[test]
    fn lists_are_sets() {
        let mut b = ListBuilder::new(StringBuilder::new());
        for row in [
            Some(vec![Some("B"), None, Some("a")]),
            Some(vec![Some("a"), Some("b"), None]),
            Some(vec![]),
            Some(vec![Some("")]),
            None,
            Some(vec![Some("a,b")]),
            Some(vec![Some("a"), Some("b")]),
            Some(vec![Some("<empty>"), Some("x y")]),
        ] {
            match row {
                None => b.append_null(),
                Some(items) => {
                    for item in items {
                        b.values().append_option(item);
                    }
                    b.append(true);
                }
            }
        }
        let list: ArrayRef = Arc::new(b.finish());
        assert_eq!(
            texts(list),
            vec![
                Some("<none>,a,b".into()),
                Some("<none>,a,b".into()),
                Some("".into()),
                Some("<empty>".into()),
                None,
                Some("a%2cb".into()),
                Some("a,b".into()),
                Some("%3cempty>,x-y".into()),
            ]
        );
    }

    #[test]
    fn csv_integer_and_float_give_the_same_key() {
        let a = batch(vec![
            ("p", Arc::new(StringArray::from(vec!["P1"])) as ArrayRef),
            ("age", Arc::new(Int64Array::from(vec![765]))),
        ]);
        let b = batch(vec![
            ("p", Arc::new(StringArray::from(vec![" p1 "])) as ArrayRef),
            ("age", Arc::new(Float64Array::from(vec![765.0]))),
        ]);
        let c = batch(vec![
            ("p", Arc::new(StringArray::from(vec!["P1"])) as ArrayRef),
            ("age", Arc::new(StringArray::from(vec!["765"]))),
        ]);
        let cols = vec!["p".to_string(), "age".to_string()];
        let ka = batch_keystrings(&a, &cols).unwrap();
        assert_eq!(ka, vec!["p1__765".to_string()]);
        assert_eq!(batch_keystrings(&b, &cols).unwrap(), ka);
        assert_eq!(batch_keystrings(&c, &cols).unwrap(), ka);
    }

    #[test]
    fn batch_keystrings_in_column_order_with_nulls() {
        let b = batch(vec![
            (
                "participant",
                Arc::new(StringArray::from(vec![Some("P1"), Some("P2"), None])) as ArrayRef,
            ),
            (
                "phenotype",
                Arc::new(StringArray::from(vec![Some("Cleft Ear"), None, Some("x")])),
            ),
            (
                "age",
                Arc::new(Int64Array::from(vec![Some(765), Some(1), None])),
            ),
        ]);
        let cols: Vec<String> = ["participant", "phenotype", "age"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            batch_keystrings(&b, &cols).unwrap(),
            vec!["p1__cleft-ear__765", "p2__<none>__1", "<none>__x__<none>"]
        );
        let reversed: Vec<String> = cols.iter().rev().cloned().collect();
        assert_eq!(
            batch_keystrings(&b, &reversed).unwrap()[0],
            "765__cleft-ear__p1"
        );
    }

    #[test]
    fn batch_keystrings_errors() {
        let b = batch(vec![(
            "a",
            Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
        )]);
        assert_eq!(batch_keystrings(&b, &[]), Err(KeyError::NoColumns));
        match batch_keystrings(&b, &["nope".to_string()]) {
            Err(KeyError::MissingColumn { column, available }) => {
                assert_eq!(column, "nope");
                assert_eq!(available, vec!["a".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        let bin = batch(vec![(
            "bin",
            Arc::new(arrow_array::BinaryArray::from(vec![&b"x"[..]])) as ArrayRef,
        )]);
        assert!(matches!(
            batch_keystrings(&bin, &["bin".to_string()]),
            Err(KeyError::UnsupportedType { .. })
        ));
    }
}
