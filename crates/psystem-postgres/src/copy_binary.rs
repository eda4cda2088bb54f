//! Our encoder of Arrow record batches into PostgreSQL's binary `COPY` format.
//!
//! The stream is the `PGCOPY\n\xff\r\n\0` signature, a zero flags word and a zero header-extension length,
//! then one tuple per row (the field count as int2, then per field `-1` for NULL or the length as int4 followed
//! by the value in the type's binary send format), and the int2 trailer `-1`. The per-type value formats are in
//! the table of [`crate::types`] and in `docs/TYPES.md`. Binary COPY has no escaping, so tabs, newlines,
//! backslashes and quotes in text arrive unchanged. PostgreSQL `text` and `jsonb` cannot hold U+0000; what
//! happens to a NUL character is the [`NulPolicy`] of the [`CopyOptions`] (default: the error
//! [`DestinationError::NulInText`] naming column and row).
//!
//! Nested values (lists other than lists of strings, structs, maps) become `jsonb`: the binary jsonb format is
//! the version byte `1` followed by the JSON text, which this module renders itself (the JSON forms are listed
//! in `docs/TYPES.md`; `arrow-json`'s encoder was evaluated and not used because it cannot report a NUL with
//! its row, cannot apply a NUL policy to keys, refuses maps with non-string keys and omits nulls or formats
//! temporal values differently from PostgreSQL's own JSON).
//!
//! Every column is prepared once per batch (downcast to its concrete array type, nested children included), so
//! writing a row does no type dispatch on `DataType`.
//!
//! [`encode_copy_binary`] writes a whole batch; [`CopyEncoder`] writes row by row so that the load path can
//! send a page in chunks while it encodes it.

use std::ops::Range;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::{NullBuffer, ScalarBuffer};
use arrow_schema::{DataType, IntervalUnit, TimeUnit};
use bytes::{BufMut, BytesMut};
use chrono::Datelike;
use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64;

use crate::types::pg_type;
use crate::DestinationError;

/// The 11-byte signature, the flags word and the header extension length of a binary COPY stream.
const HEADER: &[u8; 19] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;
/// PostgreSQL's type OID of `text`, written in each array value's header.
const TEXT_OID: i32 = 25;
/// The UTF-8 bytes of U+FFFD REPLACEMENT CHARACTER, what [`NulPolicy::Replace`] puts in place of a NUL.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// What to do with a NUL character (U+0000) in a value that goes into `text`, a `text[]` item, or a string
/// (key or value) inside `jsonb` — PostgreSQL can store none of them. `bytea` columns take NUL bytes as they are.
///
/// Serialized in lowercase (`error`, `strip`, `replace`) so that plugin manifests can carry it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NulPolicy {
    /// Fail the page with [`DestinationError::NulInText`] naming the column and the row (the default).
    #[default]
    Error,
    /// Remove every NUL character (`"a\0b"` → `"ab"`).
    Strip,
    /// Replace every NUL character with U+FFFD REPLACEMENT CHARACTER (`"a\0b"` → `"a\u{FFFD}b"`).
    Replace,
}

/// Options of the binary COPY encoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CopyOptions {
    /// What to do with NUL characters in text, `text[]` items and strings inside `jsonb`.
    pub nul: NulPolicy,
}

/// Encodes a whole record batch as a binary COPY stream (header, rows, trailer) appended to `out`, with the
/// default [`CopyOptions`] (a NUL in text is an error).
///
/// On error `out` is left as it was. Errors: [`DestinationError::UnsupportedType`] for a column without a
/// mapping, [`DestinationError::NulInText`] for a NUL character in text, [`DestinationError::ValueOutOfRange`]
/// for a value its PostgreSQL type cannot hold (e.g. a timestamp in seconds beyond year 294276).
pub fn encode_copy_binary(batch: &RecordBatch, out: &mut BytesMut) -> Result<(), DestinationError> {
    encode_copy_binary_with(batch, &CopyOptions::default(), out)
}

/// [`encode_copy_binary`] with explicit [`CopyOptions`]; same errors, `out` untouched on error.
pub fn encode_copy_binary_with(
    batch: &RecordBatch,
    options: &CopyOptions,
    out: &mut BytesMut,
) -> Result<(), DestinationError> {
    let start = out.len();
    let result = (|| {
        let encoder = CopyEncoder::with_options(batch, options)?;
        CopyEncoder::write_header(out);
        encoder.write_rows(0..batch.num_rows(), out)?;
        CopyEncoder::write_trailer(out);
        Ok(())
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Encodes the rows of one record batch in binary COPY format, row by row.
pub struct CopyEncoder<'a> {
    names: Vec<&'a str>,
    columns: Vec<Column<'a>>,
    num_rows: usize,
    nul: NulPolicy,
}

impl<'a> CopyEncoder<'a> {
    /// Prepares an encoder for `batch` with the default [`CopyOptions`]; fails with
    /// [`DestinationError::UnsupportedType`] when a column type has no PostgreSQL mapping.
    pub fn new(batch: &'a RecordBatch) -> Result<CopyEncoder<'a>, DestinationError> {
        CopyEncoder::with_options(batch, &CopyOptions::default())
    }

    /// Prepares an encoder for `batch` with `options`: every column is downcast once here. Fails with
    /// [`DestinationError::UnsupportedType`] naming the column when its type has no PostgreSQL mapping, or
    /// [`DestinationError::ValueOutOfRange`] when the batch has more columns than a tuple can hold (32767).
    pub fn with_options(
        batch: &'a RecordBatch,
        options: &CopyOptions,
    ) -> Result<CopyEncoder<'a>, DestinationError> {
        let schema = batch.schema_ref();
        if batch.num_columns() > i16::MAX as usize {
            return Err(DestinationError::ValueOutOfRange {
                column: String::new(),
                row: 0,
                detail: format!(
                    "{} columns are more than a COPY tuple can hold",
                    batch.num_columns()
                ),
            });
        }
        let mut names = Vec::with_capacity(batch.num_columns());
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            pg_type(field)?;
            names.push(field.name().as_str());
            columns.push(Column::new(array, options.nul).ok_or_else(|| {
                DestinationError::UnsupportedType {
                    column: field.name().clone(),
                    data_type: field.data_type().clone(),
                }
            })?);
        }
        Ok(CopyEncoder {
            names,
            columns,
            num_rows: batch.num_rows(),
            nul: options.nul,
        })
    }

    /// The number of rows of the batch.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Appends the stream header (signature, flags, header extension length).
    pub fn write_header(out: &mut BytesMut) {
        out.put_slice(HEADER);
    }

    /// Appends the stream trailer (field count `-1`).
    pub fn write_trailer(out: &mut BytesMut) {
        out.put_i16(-1);
    }

    /// Appends the tuples of the rows in `rows`. On error, `out` may hold part of a tuple.
    pub fn write_rows(
        &self,
        rows: Range<usize>,
        out: &mut BytesMut,
    ) -> Result<(), DestinationError> {
        for row in rows {
            self.write_row(row, out)?;
        }
        Ok(())
    }

    /// Appends the tuple of one row followed by one more field: the row's content hash, an `int8` (the
    /// XXH3-64 of the row's encoded fields, the bytes between the field count and the hash, read as a signed
    /// big-endian 64-bit integer). Equal rows of the same column types give equal hashes in every process and
    /// version of psystem that keeps this encoding; the merge of a release compares rows by it
    /// (`docs/LOAD_MODES.md`). On error, `out` may hold part of the tuple.
    pub fn write_row_hashed(&self, row: usize, out: &mut BytesMut) -> Result<(), DestinationError> {
        out.put_i16(self.columns.len() as i16 + 1);
        let start = out.len();
        for (i, column) in self.columns.iter().enumerate() {
            column
                .write(row, out, self.nul)
                .map_err(|e| e.into_error(self.names[i], row))?;
        }
        let hash = XxHash3_64::oneshot(&out[start..]);
        out.put_i32(8);
        out.put_i64(hash as i64);
        Ok(())
    }

    /// Appends the tuple of one row. On error, `out` may hold part of the tuple.
    pub fn write_row(&self, row: usize, out: &mut BytesMut) -> Result<(), DestinationError> {
        out.put_i16(self.columns.len() as i16);
        for (i, column) in self.columns.iter().enumerate() {
            column
                .write(row, out, self.nul)
                .map_err(|e| e.into_error(self.names[i], row))?;
        }
        Ok(())
    }
}

/// A value-level encoding problem, before the column name and row are attached.
#[derive(Debug)]
enum ValueError {
    Nul,
    OutOfRange(String),
}

impl ValueError {
    fn into_error(self, column: &str, row: usize) -> DestinationError {
        match self {
            ValueError::Nul => DestinationError::NulInText {
                column: column.to_string(),
                row,
            },
            ValueError::OutOfRange(detail) => DestinationError::ValueOutOfRange {
                column: column.to_string(),
                row,
                detail,
            },
        }
    }
}

/// The nulls of an array as a validity test; `None` when every value is valid.
fn is_null(nulls: &Option<NullBuffer>, i: usize) -> bool {
    nulls.as_ref().is_some_and(|n| n.is_null(i))
}

/// The values of a primitive array with 4-byte native values (Date32, Time32, Interval(YearMonth), …) as i32.
fn i32_values(a: &dyn Array) -> ScalarBuffer<i32> {
    let data = a.to_data();
    ScalarBuffer::new(data.buffers()[0].clone(), data.offset(), data.len())
}

/// The values of a primitive array with 8-byte native values (timestamps, Time64, Date64, durations) as i64.
fn i64_values(a: &dyn Array) -> ScalarBuffer<i64> {
    let data = a.to_data();
    ScalarBuffer::new(data.buffers()[0].clone(), data.offset(), data.len())
}

/// The string arrays of every offset width, downcast once.
enum Strs<'a> {
    Utf8(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
}

impl<'a> Strs<'a> {
    fn new(a: &'a dyn Array) -> Option<Strs<'a>> {
        Some(match a.data_type() {
            DataType::Utf8 => Strs::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => Strs::Large(a.as_string::<i64>()),
            DataType::Utf8View => Strs::View(a.as_string_view()),
            _ => return None,
        })
    }

    #[inline]
    fn value(&self, i: usize) -> &'a str {
        match self {
            Strs::Utf8(a) => a.value(i),
            Strs::Large(a) => a.value(i),
            Strs::View(a) => a.value(i),
        }
    }
}

/// The binary arrays of every kind, downcast once.
enum Bins<'a> {
    Binary(&'a arrow_array::BinaryArray),
    Large(&'a arrow_array::LargeBinaryArray),
    View(&'a arrow_array::BinaryViewArray),
    Fixed(&'a arrow_array::FixedSizeBinaryArray),
}

impl<'a> Bins<'a> {
    fn new(a: &'a dyn Array) -> Option<Bins<'a>> {
        Some(match a.data_type() {
            DataType::Binary => Bins::Binary(a.as_binary::<i32>()),
            DataType::LargeBinary => Bins::Large(a.as_binary::<i64>()),
            DataType::BinaryView => Bins::View(a.as_binary_view()),
            DataType::FixedSizeBinary(_) => Bins::Fixed(a.as_fixed_size_binary()),
            _ => return None,
        })
    }

    #[inline]
    fn value(&self, i: usize) -> &'a [u8] {
        match self {
            Bins::Binary(a) => a.value(i),
            Bins::Large(a) => a.value(i),
            Bins::View(a) => a.value(i),
            Bins::Fixed(a) => a.value(i),
        }
    }
}

/// Where the items of each list value are in its child array.
enum Spans<'a> {
    List(&'a [i32]),
    Large(&'a [i64]),
    Fixed(usize),
    View(&'a [i32], &'a [i32]),
    LargeView(&'a [i64], &'a [i64]),
}

impl Spans<'_> {
    #[inline]
    fn range(&self, row: usize) -> Range<usize> {
        match self {
            Spans::List(o) => o[row] as usize..o[row + 1] as usize,
            Spans::Large(o) => o[row] as usize..o[row + 1] as usize,
            Spans::Fixed(size) => row * size..(row + 1) * size,
            Spans::View(o, s) => o[row] as usize..(o[row] + s[row]) as usize,
            Spans::LargeView(o, s) => o[row] as usize..(o[row] + s[row]) as usize,
        }
    }
}

/// A list-like array split into its spans and its child array; `None` for other types.
fn list_parts(a: &dyn Array) -> Option<(Spans<'_>, &ArrayRef)> {
    Some(match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            (Spans::List(l.value_offsets()), l.values())
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            (Spans::Large(l.value_offsets()), l.values())
        }
        DataType::FixedSizeList(_, size) => {
            let l = a.as_fixed_size_list();
            (Spans::Fixed(*size as usize), l.values())
        }
        DataType::ListView(_) => {
            let l = a.as_list_view::<i32>();
            (Spans::View(l.value_offsets(), l.value_sizes()), l.values())
        }
        DataType::LargeListView(_) => {
            let l = a.as_list_view::<i64>();
            (
                Spans::LargeView(l.value_offsets(), l.value_sizes()),
                l.values(),
            )
        }
        _ => return None,
    })
}

/// One top-level column, prepared once per batch: its nulls and its values downcast to their concrete type.
struct Column<'a> {
    nulls: Option<NullBuffer>,
    kind: Kind<'a>,
}

/// The binary COPY value format of a column, with the values it reads.
enum Kind<'a> {
    Null,
    Int8(&'a arrow_array::Int8Array),
    Int16(&'a arrow_array::Int16Array),
    Int32(&'a arrow_array::Int32Array),
    Int64(&'a arrow_array::Int64Array),
    UInt8(&'a arrow_array::UInt8Array),
    UInt16(&'a arrow_array::UInt16Array),
    UInt32(&'a arrow_array::UInt32Array),
    UInt64(&'a arrow_array::UInt64Array),
    Float16(&'a arrow_array::Float16Array),
    Float32(&'a arrow_array::Float32Array),
    Float64(&'a arrow_array::Float64Array),
    Decimal(Decimals<'a>),
    Boolean(&'a arrow_array::BooleanArray),
    Text(Strs<'a>),
    Bytea(Bins<'a>),
    Date32(ScalarBuffer<i32>),
    /// Milliseconds since 1970-01-01.
    Date64(ScalarBuffer<i64>),
    Timestamp(ScalarBuffer<i64>, TimeUnit),
    Time32(ScalarBuffer<i32>, TimeUnit),
    Time64(ScalarBuffer<i64>, TimeUnit),
    Duration(ScalarBuffer<i64>, TimeUnit),
    IntervalYearMonth(ScalarBuffer<i32>),
    IntervalDayTime(&'a arrow_array::IntervalDayTimeArray),
    IntervalMonthDayNano(&'a arrow_array::IntervalMonthDayNanoArray),
    /// A dictionary: the key of each row as an index into the prepared values.
    Dictionary(Vec<usize>, Box<Column<'a>>),
    /// A list of strings, as a one-dimensional `text[]`.
    TextList(Spans<'a>, Strs<'a>, Option<NullBuffer>),
    /// Any nested value, as `jsonb`.
    Json(Json<'a>),
}

/// The decimal arrays of every width, with their scale.
enum Decimals<'a> {
    D32(&'a arrow_array::Decimal32Array, i8),
    D64(&'a arrow_array::Decimal64Array, i8),
    D128(&'a arrow_array::Decimal128Array, i8),
    D256(&'a arrow_array::Decimal256Array, i8),
}

impl<'a> Decimals<'a> {
    fn new(a: &'a dyn Array) -> Option<Decimals<'a>> {
        Some(match a.data_type() {
            DataType::Decimal32(_, s) => Decimals::D32(a.as_primitive::<Decimal32Type>(), *s),
            DataType::Decimal64(_, s) => Decimals::D64(a.as_primitive::<Decimal64Type>(), *s),
            DataType::Decimal128(_, s) => Decimals::D128(a.as_primitive::<Decimal128Type>(), *s),
            DataType::Decimal256(_, s) => Decimals::D256(a.as_primitive::<Decimal256Type>(), *s),
            _ => return None,
        })
    }

    /// Calls `f` with the sign, the decimal digits of the absolute value (ASCII) and the scale of value `i`.
    #[inline]
    fn with_digits<R>(&self, i: usize, f: impl FnOnce(bool, &[u8], i8) -> R) -> R {
        let mut buf = itoa::Buffer::new();
        match self {
            Decimals::D32(a, s) => {
                let v = a.value(i);
                f(v < 0, buf.format(v.unsigned_abs()).as_bytes(), *s)
            }
            Decimals::D64(a, s) => {
                let v = a.value(i);
                f(v < 0, buf.format(v.unsigned_abs()).as_bytes(), *s)
            }
            Decimals::D128(a, s) => {
                let v = a.value(i);
                f(v < 0, buf.format(v.unsigned_abs()).as_bytes(), *s)
            }
            Decimals::D256(a, s) => {
                let v = a.value(i);
                let text = v.to_string();
                let negative = text.starts_with('-');
                f(negative, text.trim_start_matches('-').as_bytes(), *s)
            }
        }
    }
}

impl<'a> Column<'a> {
    /// Prepares a top-level column; `None` when its type has no mapping.
    fn new(array: &'a ArrayRef, nul: NulPolicy) -> Option<Column<'a>> {
        Column::from_array(array.as_ref(), nul)
    }

    fn from_array(a: &'a dyn Array, nul: NulPolicy) -> Option<Column<'a>> {
        let nulls = a.nulls().cloned();
        let kind = match a.data_type() {
            DataType::Null => Kind::Null,
            DataType::Int8 => Kind::Int8(a.as_primitive::<Int8Type>()),
            DataType::Int16 => Kind::Int16(a.as_primitive::<Int16Type>()),
            DataType::Int32 => Kind::Int32(a.as_primitive::<Int32Type>()),
            DataType::Int64 => Kind::Int64(a.as_primitive::<Int64Type>()),
            DataType::UInt8 => Kind::UInt8(a.as_primitive::<UInt8Type>()),
            DataType::UInt16 => Kind::UInt16(a.as_primitive::<UInt16Type>()),
            DataType::UInt32 => Kind::UInt32(a.as_primitive::<UInt32Type>()),
            DataType::UInt64 => Kind::UInt64(a.as_primitive::<UInt64Type>()),
            DataType::Float16 => Kind::Float16(a.as_primitive::<Float16Type>()),
            DataType::Float32 => Kind::Float32(a.as_primitive::<Float32Type>()),
            DataType::Float64 => Kind::Float64(a.as_primitive::<Float64Type>()),
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => Kind::Decimal(Decimals::new(a)?),
            DataType::Boolean => Kind::Boolean(a.as_boolean()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Text(Strs::new(a)?),
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => Kind::Bytea(Bins::new(a)?),
            DataType::Date32 => Kind::Date32(i32_values(a)),
            DataType::Date64 => Kind::Date64(i64_values(a)),
            DataType::Timestamp(unit, _) => Kind::Timestamp(i64_values(a), *unit),
            DataType::Time32(unit) => Kind::Time32(i32_values(a), *unit),
            DataType::Time64(unit) => Kind::Time64(i64_values(a), *unit),
            DataType::Duration(unit) => Kind::Duration(i64_values(a), *unit),
            DataType::Interval(IntervalUnit::YearMonth) => Kind::IntervalYearMonth(i32_values(a)),
            DataType::Interval(IntervalUnit::DayTime) => {
                Kind::IntervalDayTime(a.as_primitive::<IntervalDayTimeType>())
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                Kind::IntervalMonthDayNano(a.as_primitive::<IntervalMonthDayNanoType>())
            }
            DataType::Dictionary(_, _) => {
                let d = a.as_any_dictionary();
                let values = Column::from_array(d.values().as_ref(), nul)?;
                Kind::Dictionary(d.normalized_keys(), Box::new(values))
            }
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
                if matches!(
                    f.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                let (spans, items) = list_parts(a)?;
                Kind::TextList(spans, Strs::new(items.as_ref())?, items.nulls().cloned())
            }
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(_, _)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::Struct(_)
            | DataType::Map(_, _) => Kind::Json(Json::new(a, nul)?),
            _ => return None,
        };
        Some(Column { nulls, kind })
    }

    fn write(&self, row: usize, out: &mut BytesMut, nul: NulPolicy) -> Result<(), ValueError> {
        if is_null(&self.nulls, row) {
            out.put_i32(-1);
            return Ok(());
        }
        match &self.kind {
            Kind::Null => out.put_i32(-1),
            Kind::Int8(a) => put_i16(out, a.value(row) as i16),
            Kind::Int16(a) => put_i16(out, a.value(row)),
            Kind::Int32(a) => put_i32(out, a.value(row)),
            Kind::Int64(a) => put_i64(out, a.value(row)),
            Kind::UInt8(a) => put_i32(out, a.value(row) as i32),
            Kind::UInt16(a) => put_i32(out, a.value(row) as i32),
            Kind::UInt32(a) => put_i64(out, a.value(row) as i64),
            Kind::UInt64(a) => put_numeric_u64(out, a.value(row)),
            Kind::Float16(a) => {
                out.put_i32(4);
                out.put_f32(a.value(row).to_f32());
            }
            Kind::Float32(a) => {
                out.put_i32(4);
                out.put_f32(a.value(row));
            }
            Kind::Float64(a) => {
                out.put_i32(8);
                out.put_f64(a.value(row));
            }
            Kind::Decimal(d) => d.with_digits(row, |negative, digits, scale| {
                put_numeric(out, negative, digits, scale as i32)
            })?,
            Kind::Boolean(a) => {
                out.put_i32(1);
                out.put_u8(a.value(row) as u8);
            }
            Kind::Text(s) => put_text(out, s.value(row), nul)?,
            Kind::Bytea(b) => put_bytes(out, b.value(row))?,
            Kind::Date32(v) => put_i32(out, pg_days(v[row] as i64)?),
            Kind::Date64(v) => put_i32(out, pg_days(v[row].div_euclid(86_400_000))?),
            Kind::Timestamp(v, unit) => put_i64(out, pg_timestamp(v[row], *unit)?),
            Kind::Time32(v, unit) => put_i64(out, time_micros(v[row] as i64, *unit)?),
            Kind::Time64(v, unit) => put_i64(out, time_micros(v[row], *unit)?),
            Kind::Duration(v, unit) => put_interval(out, 0, 0, duration_micros(v[row], *unit)?),
            Kind::IntervalYearMonth(v) => put_interval(out, v[row], 0, 0),
            Kind::IntervalDayTime(a) => {
                let v = a.value(row);
                put_interval(out, 0, v.days, v.milliseconds as i64 * 1_000)
            }
            Kind::IntervalMonthDayNano(a) => {
                let v = a.value(row);
                put_interval(out, v.months, v.days, v.nanoseconds.div_euclid(1_000))
            }
            Kind::Dictionary(keys, values) => values.write(keys[row], out, nul)?,
            Kind::TextList(spans, items, item_nulls) => {
                put_text_array(out, spans.range(row), items, item_nulls, nul)?
            }
            Kind::Json(json) => {
                let len_at = out.len();
                out.put_i32(0); // value length, patched below
                out.put_u8(1); // jsonb binary format version
                json.write(row, out)?;
                patch_len(out, len_at)?;
            }
        }
        Ok(())
    }
}

/// Overwrites the int4 length placeholder at `len_at` with the number of bytes written after it.
fn patch_len(out: &mut BytesMut, len_at: usize) -> Result<(), ValueError> {
    let len = out.len() - len_at - 4;
    let len = i32::try_from(len).map_err(|_| {
        ValueError::OutOfRange(format!(
            "a value of {len} bytes is larger than PostgreSQL can store (1 GB)"
        ))
    })?;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Writes a one-dimensional `text[]` value in PostgreSQL's array send format: dimensions (1), a has-nulls flag,
/// the element type OID, then the length and lower bound (1) of the dimension, then each element as length +
/// UTF-8 bytes (-1 for NULL). An empty list is an array with zero dimensions.
fn put_text_array(
    out: &mut BytesMut,
    items: Range<usize>,
    strs: &Strs<'_>,
    item_nulls: &Option<NullBuffer>,
    nul: NulPolicy,
) -> Result<(), ValueError> {
    let len_at = out.len();
    out.put_i32(0); // value length, patched below
    if items.is_empty() {
        out.put_i32(0); // no dimensions
        out.put_i32(0);
        out.put_i32(TEXT_OID);
    } else {
        let has_nulls = items.clone().any(|i| is_null(item_nulls, i));
        out.put_i32(1);
        out.put_i32(has_nulls as i32);
        out.put_i32(TEXT_OID);
        out.put_i32(items.len() as i32);
        out.put_i32(1);
        for i in items {
            if is_null(item_nulls, i) {
                out.put_i32(-1);
            } else {
                put_text(out, strs.value(i), nul)?;
            }
        }
    }
    patch_len(out, len_at)
}

/// The first `date` PostgreSQL can hold, in days since 2000-01-01: 4714-11-24 BC (Julian day 0).
const PG_MIN_DAYS: i64 = -2_451_545;
/// The day after the last `date` PostgreSQL can hold (5874898-01-01), in days since 2000-01-01.
const PG_END_DAYS: i64 = 2_147_483_494 - 2_451_545;
/// The first `timestamp[tz]` PostgreSQL can hold, in microseconds since 2000-01-01: 4714-11-24 00:00 BC.
const PG_MIN_MICROS: i64 = -211_813_488_000_000_000;
/// The first instant after the last `timestamp[tz]` PostgreSQL can hold (294277-01-01 00:00), in microseconds
/// since 2000-01-01.
const PG_END_MICROS: i64 = 9_223_371_331_200_000_000;

/// Days since 1970-01-01 → days since 2000-01-01 (PostgreSQL's `date`).
///
/// Errors: [`ValueError::OutOfRange`] for a date PostgreSQL cannot hold (before 4714-11-24 BC or after
/// 5874897-12-31), never a wrapped value.
fn pg_days(days: i64) -> Result<i32, ValueError> {
    days.checked_sub(PG_EPOCH_DAYS as i64)
        .filter(|d| (PG_MIN_DAYS..PG_END_DAYS).contains(d))
        .and_then(|d| i32::try_from(d).ok())
        .ok_or_else(|| {
            ValueError::OutOfRange(format!(
                "the date {} is outside the range PostgreSQL's date can hold (4714-11-24 BC to 5874897-12-31); \
                 correct the value in the source",
                show_date(days)
            ))
        })
}

/// A timestamp in `unit` since 1970 → microseconds since 2000-01-01 (PostgreSQL's `timestamp[tz]`).
///
/// Errors: [`ValueError::OutOfRange`] for an instant PostgreSQL cannot hold (before 4714-11-24 BC or from
/// 294277-01-01 on), never a wrapped value.
fn pg_timestamp(v: i64, unit: TimeUnit) -> Result<i64, ValueError> {
    // In i128: seconds and milliseconds near PostgreSQL's end overflow microseconds since 1970 in an i64.
    let micros = match unit {
        TimeUnit::Second => i128::from(v) * 1_000_000,
        TimeUnit::Millisecond => i128::from(v) * 1_000,
        TimeUnit::Microsecond => i128::from(v),
        TimeUnit::Nanosecond => i128::from(v.div_euclid(1_000)),
    } - i128::from(PG_EPOCH_MICROS);
    i64::try_from(micros)
        .ok()
        .filter(|m| (PG_MIN_MICROS..PG_END_MICROS).contains(m))
        .ok_or_else(|| {
            ValueError::OutOfRange(format!(
                "the timestamp {} is outside the range PostgreSQL's timestamp can hold (4714-11-24 BC to \
                 294276-12-31 23:59:59.999999); correct the value in the source",
                show_timestamp(v, unit)
            ))
        })
}

/// `days` since 1970-01-01 as a date for messages, as PostgreSQL writes it (`4714-11-23 BC`, `300000-01-01`), or
/// as a count of days when even that cannot be shown.
fn show_date(days: i64) -> String {
    i32::try_from(days)
        .ok()
        .and_then(|d| chrono::NaiveDate::from_num_days_from_ce_opt(d.checked_add(719_163)?))
        .map(|d| with_era(d.year(), &d.format("-%m-%d").to_string()))
        .unwrap_or_else(|| format!("{days} days after 1970-01-01"))
}

/// A timestamp of `v` `unit`s since 1970-01-01 for messages, as PostgreSQL writes it
/// (`4714-11-23 00:00:00 BC`), or as the count of units when even that cannot be shown.
fn show_timestamp(v: i64, unit: TimeUnit) -> String {
    let (instant, name) = match unit {
        TimeUnit::Second => (chrono::DateTime::from_timestamp(v, 0), "seconds"),
        TimeUnit::Millisecond => (chrono::DateTime::from_timestamp_millis(v), "milliseconds"),
        TimeUnit::Microsecond => (chrono::DateTime::from_timestamp_micros(v), "microseconds"),
        TimeUnit::Nanosecond => (
            Some(chrono::DateTime::from_timestamp_nanos(v)),
            "nanoseconds",
        ),
    };
    match instant {
        Some(t) => with_era(t.year(), &t.format("-%m-%d %H:%M:%S%.f").to_string()),
        None => format!("{v} {name} after 1970-01-01"),
    }
}

/// The astronomical `year` (0 = 1 BC) followed by `rest`, with ` BC` after years before 1 AD.
fn with_era(year: i32, rest: &str) -> String {
    if year < 1 {
        format!("{:04}{rest} BC", 1 - i64::from(year))
    } else {
        format!("{year:04}{rest}")
    }
}

/// A time of day in `unit` → microseconds since midnight, which must lie between 00:00 and 24:00.
fn time_micros(v: i64, unit: TimeUnit) -> Result<i64, ValueError> {
    match to_micros(v, unit) {
        Some(m) if (0..=DAY_MICROS).contains(&m) => Ok(m),
        _ => Err(ValueError::OutOfRange(format!(
            "time of day {v} ({} since midnight) is not between 00:00 and 24:00",
            unit_word(unit)
        ))),
    }
}

/// A duration in `unit` → microseconds (nanoseconds rounded down).
fn duration_micros(v: i64, unit: TimeUnit) -> Result<i64, ValueError> {
    to_micros(v, unit).ok_or_else(|| {
        ValueError::OutOfRange(format!(
            "duration {v} ({}) is out of range for a PostgreSQL interval",
            unit_word(unit)
        ))
    })
}

/// `unit` as a plural English word for messages (`seconds` … `nanoseconds`).
fn unit_word(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "seconds",
        TimeUnit::Millisecond => "milliseconds",
        TimeUnit::Microsecond => "microseconds",
        TimeUnit::Nanosecond => "nanoseconds",
    }
}

/// Converts a value in `unit` to microseconds; nanoseconds are rounded down. `None` on overflow.
fn to_micros(v: i64, unit: TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000),
        TimeUnit::Microsecond => Some(v),
        TimeUnit::Nanosecond => Some(v.div_euclid(1_000)),
    }
}

fn put_i16(out: &mut BytesMut, v: i16) {
    out.put_i32(2);
    out.put_i16(v);
}

fn put_i32(out: &mut BytesMut, v: i32) {
    out.put_i32(4);
    out.put_i32(v);
}

fn put_i64(out: &mut BytesMut, v: i64) {
    out.put_i32(8);
    out.put_i64(v);
}

/// PostgreSQL's binary `interval`: int8 microseconds, int4 days, int4 months.
fn put_interval(out: &mut BytesMut, months: i32, days: i32, micros: i64) {
    out.put_i32(16);
    out.put_i64(micros);
    out.put_i32(days);
    out.put_i32(months);
}

/// Writes text with its length, applying the NUL policy.
fn put_text(out: &mut BytesMut, s: &str, nul: NulPolicy) -> Result<(), ValueError> {
    let b = s.as_bytes();
    if !b.contains(&0) {
        // `contains` on bytes is a memchr: the common case costs one fast scan.
        return put_bytes(out, b);
    }
    let nuls = b.iter().filter(|&&c| c == 0).count();
    let len = match nul {
        NulPolicy::Error => return Err(ValueError::Nul),
        NulPolicy::Strip => b.len() - nuls,
        NulPolicy::Replace => b.len() + nuls * (REPLACEMENT.len() - 1),
    };
    let len = i32::try_from(len).map_err(|_| {
        ValueError::OutOfRange(format!(
            "a value of {len} bytes is larger than PostgreSQL can store (1 GB)"
        ))
    })?;
    out.put_i32(len);
    for (i, part) in b.split(|&c| c == 0).enumerate() {
        if i > 0 && nul == NulPolicy::Replace {
            out.put_slice(REPLACEMENT);
        }
        out.put_slice(part);
    }
    Ok(())
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) -> Result<(), ValueError> {
    let len = i32::try_from(b.len()).map_err(|_| {
        ValueError::OutOfRange(format!(
            "a value of {} bytes is larger than PostgreSQL can store (1 GB)",
            b.len()
        ))
    })?;
    out.put_i32(len);
    out.put_slice(b);
    Ok(())
}

/// Writes an unsigned 64-bit integer as a PostgreSQL `numeric` (see [`put_numeric`]).
fn put_numeric_u64(out: &mut BytesMut, v: u64) {
    let mut buf = itoa::Buffer::new();
    put_numeric(out, false, buf.format(v).as_bytes(), 0).expect("a u64 always fits a numeric");
}

/// Powers of ten inside one base-10000 digit.
const POW10: [i16; 4] = [1, 10, 100, 1000];

/// Writes `±digits × 10^-scale` in PostgreSQL's binary `numeric` format: int2 ndigits, int2 weight (of the first
/// base-10000 digit, 0 = the units group), uint2 sign (0x0000 positive, 0x4000 negative), int2 display scale
/// (`max(scale, 0)`: a negative Arrow scale only appends zeros before the point), then the base-10000 digits from
/// the most significant, without leading or trailing zero digits (as PostgreSQL itself writes them). `digits`
/// are ASCII decimal digits of the absolute value.
fn put_numeric(
    out: &mut BytesMut,
    negative: bool,
    digits: &[u8],
    scale: i32,
) -> Result<(), ValueError> {
    let dscale = scale.max(0);
    let first = digits
        .iter()
        .position(|&c| c != b'0')
        .unwrap_or(digits.len());
    let digits = &digits[first..];
    if digits.is_empty() {
        out.put_i32(8);
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(0);
        out.put_i16(dscale as i16);
        return Ok(());
    }
    let len = digits.len() as i32;
    let point = len - scale; // decimal digits before the point
    let first_group = (point - 1).div_euclid(4);
    let last_group = (point - len).div_euclid(4);
    let n = (first_group - last_group + 1) as usize;
    if n > 64 || !(-32_768..=32_767).contains(&first_group) || dscale > 0x3fff {
        return Err(ValueError::OutOfRange(format!(
            "a decimal with {len} digits and scale {scale} is out of range for PostgreSQL numeric"
        )));
    }
    let mut groups = [0i16; 64];
    for (i, &c) in digits.iter().enumerate() {
        let e = point - 1 - i as i32;
        groups[(first_group - e.div_euclid(4)) as usize] +=
            (c - b'0') as i16 * POW10[e.rem_euclid(4) as usize];
    }
    let mut n = n;
    while n > 0 && groups[n - 1] == 0 {
        n -= 1;
    }
    out.put_i32(8 + 2 * n as i32);
    out.put_i16(n as i16);
    out.put_i16(first_group as i16);
    out.put_u16(if negative { 0x4000 } else { 0 });
    out.put_i16(dscale as i16);
    for g in &groups[..n] {
        out.put_i16(*g);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// JSON rendering of nested values (jsonb)
// ---------------------------------------------------------------------------------------------------------------

/// A nested value prepared once per batch for JSON rendering: its nulls and its concrete arrays.
struct Json<'a> {
    nulls: Option<NullBuffer>,
    nul: NulPolicy,
    kind: JsonKind<'a>,
}

/// The JSON form of a prepared value (see `docs/TYPES.md`).
enum JsonKind<'a> {
    Null,
    Bool(&'a arrow_array::BooleanArray),
    I8(&'a arrow_array::Int8Array),
    I16(&'a arrow_array::Int16Array),
    I32(&'a arrow_array::Int32Array),
    I64(&'a arrow_array::Int64Array),
    U8(&'a arrow_array::UInt8Array),
    U16(&'a arrow_array::UInt16Array),
    U32(&'a arrow_array::UInt32Array),
    U64(&'a arrow_array::UInt64Array),
    F16(&'a arrow_array::Float16Array),
    F32(&'a arrow_array::Float32Array),
    F64(&'a arrow_array::Float64Array),
    Decimal(Decimals<'a>),
    Str(Strs<'a>),
    Bin(Bins<'a>),
    /// Days since 1970-01-01.
    Date32(ScalarBuffer<i32>),
    /// Milliseconds since 1970-01-01.
    Date64(ScalarBuffer<i64>),
    /// Values, unit, whether the type has a time zone (then the value is a UTC instant, written with `Z`).
    Timestamp(ScalarBuffer<i64>, TimeUnit, bool),
    Time32(ScalarBuffer<i32>, TimeUnit),
    Time64(ScalarBuffer<i64>, TimeUnit),
    Duration(ScalarBuffer<i64>, TimeUnit),
    IntervalYearMonth(ScalarBuffer<i32>),
    IntervalDayTime(&'a arrow_array::IntervalDayTimeArray),
    IntervalMonthDayNano(&'a arrow_array::IntervalMonthDayNanoArray),
    List(Spans<'a>, Box<Json<'a>>),
    /// A struct: per child its key (`"name":`, escaped, NUL policy applied; `None` when the name holds a NUL
    /// and the policy is `error`) and its prepared values.
    Struct(Vec<(Option<Vec<u8>>, Json<'a>)>),
    /// A map: offsets into the entries, keys, values, and whether the keys are strings (→ object).
    Map(&'a [i32], Box<Json<'a>>, Box<Json<'a>>, bool),
    Dictionary(Vec<usize>, Box<Json<'a>>),
}

impl<'a> Json<'a> {
    /// Prepares `a` for JSON rendering; `None` when a type inside has no JSON form.
    fn new(a: &'a dyn Array, nul: NulPolicy) -> Option<Json<'a>> {
        let mut nulls = a.nulls().cloned();
        let kind = match a.data_type() {
            DataType::Null => JsonKind::Null,
            DataType::Boolean => JsonKind::Bool(a.as_boolean()),
            DataType::Int8 => JsonKind::I8(a.as_primitive::<Int8Type>()),
            DataType::Int16 => JsonKind::I16(a.as_primitive::<Int16Type>()),
            DataType::Int32 => JsonKind::I32(a.as_primitive::<Int32Type>()),
            DataType::Int64 => JsonKind::I64(a.as_primitive::<Int64Type>()),
            DataType::UInt8 => JsonKind::U8(a.as_primitive::<UInt8Type>()),
            DataType::UInt16 => JsonKind::U16(a.as_primitive::<UInt16Type>()),
            DataType::UInt32 => JsonKind::U32(a.as_primitive::<UInt32Type>()),
            DataType::UInt64 => JsonKind::U64(a.as_primitive::<UInt64Type>()),
            DataType::Float16 => JsonKind::F16(a.as_primitive::<Float16Type>()),
            DataType::Float32 => JsonKind::F32(a.as_primitive::<Float32Type>()),
            DataType::Float64 => JsonKind::F64(a.as_primitive::<Float64Type>()),
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => JsonKind::Decimal(Decimals::new(a)?),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                JsonKind::Str(Strs::new(a)?)
            }
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => JsonKind::Bin(Bins::new(a)?),
            DataType::Date32 => JsonKind::Date32(i32_values(a)),
            DataType::Date64 => JsonKind::Date64(i64_values(a)),
            DataType::Timestamp(unit, tz) => {
                JsonKind::Timestamp(i64_values(a), *unit, tz.is_some())
            }
            DataType::Time32(unit) => JsonKind::Time32(i32_values(a), *unit),
            DataType::Time64(unit) => JsonKind::Time64(i64_values(a), *unit),
            DataType::Duration(unit) => JsonKind::Duration(i64_values(a), *unit),
            DataType::Interval(IntervalUnit::YearMonth) => {
                JsonKind::IntervalYearMonth(i32_values(a))
            }
            DataType::Interval(IntervalUnit::DayTime) => {
                JsonKind::IntervalDayTime(a.as_primitive::<IntervalDayTimeType>())
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                JsonKind::IntervalMonthDayNano(a.as_primitive::<IntervalMonthDayNanoType>())
            }
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(_, _)
            | DataType::ListView(_)
            | DataType::LargeListView(_) => {
                let (spans, items) = list_parts(a)?;
                JsonKind::List(spans, Box::new(Json::new(items.as_ref(), nul)?))
            }
            DataType::Struct(fields) => {
                let s = a.as_struct();
                let mut children = Vec::with_capacity(fields.len());
                for (field, child) in fields.iter().zip(s.columns()) {
                    let mut key = BytesMut::with_capacity(field.name().len() + 3);
                    let key = match put_json_str(&mut key, field.name(), nul) {
                        Ok(()) => {
                            key.put_u8(b':');
                            Some(key.to_vec())
                        }
                        Err(_) => None,
                    };
                    children.push((key, Json::new(child.as_ref(), nul)?));
                }
                JsonKind::Struct(children)
            }
            DataType::Map(_, _) => {
                let m = a.as_map();
                let keys = Json::new(m.keys().as_ref(), nul)?;
                let string_keys = keys.is_string();
                let values = Json::new(m.values().as_ref(), nul)?;
                JsonKind::Map(
                    m.value_offsets(),
                    Box::new(keys),
                    Box::new(values),
                    string_keys,
                )
            }
            DataType::Dictionary(_, _) => {
                let d = a.as_any_dictionary();
                let values = Json::new(d.values().as_ref(), nul)?;
                JsonKind::Dictionary(d.normalized_keys(), Box::new(values))
            }
            _ => return None,
        };
        if matches!(kind, JsonKind::Null) {
            nulls = None;
        }
        Some(Json { nulls, nul, kind })
    }

    /// Whether the values render as JSON strings that can be object keys.
    fn is_string(&self) -> bool {
        match &self.kind {
            JsonKind::Str(_) => true,
            JsonKind::Dictionary(_, values) => values.is_string(),
            _ => false,
        }
    }

    /// Appends the JSON text of value `i`.
    fn write(&self, i: usize, out: &mut BytesMut) -> Result<(), ValueError> {
        if is_null(&self.nulls, i) {
            out.put_slice(b"null");
            return Ok(());
        }
        match &self.kind {
            JsonKind::Null => out.put_slice(b"null"),
            JsonKind::Bool(a) => out.put_slice(if a.value(i) { b"true" } else { b"false" }),
            JsonKind::I8(a) => put_int(out, a.value(i)),
            JsonKind::I16(a) => put_int(out, a.value(i)),
            JsonKind::I32(a) => put_int(out, a.value(i)),
            JsonKind::I64(a) => put_int(out, a.value(i)),
            JsonKind::U8(a) => put_int(out, a.value(i)),
            JsonKind::U16(a) => put_int(out, a.value(i)),
            JsonKind::U32(a) => put_int(out, a.value(i)),
            JsonKind::U64(a) => put_int(out, a.value(i)),
            JsonKind::F16(a) => put_f32(out, a.value(i).to_f32()),
            JsonKind::F32(a) => put_f32(out, a.value(i)),
            JsonKind::F64(a) => put_f64(out, a.value(i)),
            JsonKind::Decimal(d) => d.with_digits(i, |negative, digits, scale| {
                put_decimal_json(out, negative, digits, scale as i32)
            }),
            JsonKind::Str(s) => put_json_str(out, s.value(i), self.nul)?,
            JsonKind::Bin(b) => {
                let b = b.value(i);
                out.reserve(b.len() * 2 + 5);
                out.put_slice(b"\"\\\\x");
                for &c in b {
                    out.put_u8(HEX[(c >> 4) as usize]);
                    out.put_u8(HEX[(c & 15) as usize]);
                }
                out.put_u8(b'"');
            }
            JsonKind::Date32(v) => {
                out.put_u8(b'"');
                put_date(out, v[i] as i64);
                out.put_u8(b'"');
            }
            JsonKind::Date64(v) => {
                out.put_u8(b'"');
                put_date(out, v[i].div_euclid(86_400_000));
                out.put_u8(b'"');
            }
            JsonKind::Timestamp(v, unit, tz) => {
                let micros = to_micros(v[i], *unit).ok_or_else(|| {
                    ValueError::OutOfRange(format!(
                        "the timestamp {} cannot be written as microseconds",
                        show_timestamp(v[i], *unit)
                    ))
                })?;
                out.put_u8(b'"');
                put_date(out, micros.div_euclid(DAY_MICROS));
                out.put_u8(b'T');
                put_time_of_day(out, micros.rem_euclid(DAY_MICROS));
                if *tz {
                    out.put_u8(b'Z');
                }
                out.put_u8(b'"');
            }
            JsonKind::Time32(v, unit) => {
                out.put_u8(b'"');
                put_time_of_day(out, time_micros(v[i] as i64, *unit)?);
                out.put_u8(b'"');
            }
            JsonKind::Time64(v, unit) => {
                out.put_u8(b'"');
                put_time_of_day(out, time_micros(v[i], *unit)?);
                out.put_u8(b'"');
            }
            JsonKind::Duration(v, unit) => {
                put_iso_interval(out, 0, 0, duration_micros(v[i], *unit)?)
            }
            JsonKind::IntervalYearMonth(v) => put_iso_interval(out, v[i], 0, 0),
            JsonKind::IntervalDayTime(a) => {
                let v = a.value(i);
                put_iso_interval(out, 0, v.days, v.milliseconds as i64 * 1_000)
            }
            JsonKind::IntervalMonthDayNano(a) => {
                let v = a.value(i);
                put_iso_interval(out, v.months, v.days, v.nanoseconds.div_euclid(1_000))
            }
            JsonKind::List(spans, items) => {
                out.put_u8(b'[');
                for (n, j) in spans.range(i).enumerate() {
                    if n > 0 {
                        out.put_u8(b',');
                    }
                    items.write(j, out)?;
                }
                out.put_u8(b']');
            }
            JsonKind::Struct(children) => {
                out.put_u8(b'{');
                for (n, (key, child)) in children.iter().enumerate() {
                    if n > 0 {
                        out.put_u8(b',');
                    }
                    out.put_slice(key.as_deref().ok_or(ValueError::Nul)?);
                    child.write(i, out)?;
                }
                out.put_u8(b'}');
            }
            JsonKind::Map(offsets, keys, values, string_keys) => {
                let range = offsets[i] as usize..offsets[i + 1] as usize;
                if *string_keys {
                    out.put_u8(b'{');
                    for (n, j) in range.enumerate() {
                        if n > 0 {
                            out.put_u8(b',');
                        }
                        if keys.is_null_at(j) {
                            return Err(ValueError::OutOfRange(
                                "a map has a null key, which JSON objects cannot hold".into(),
                            ));
                        }
                        keys.write(j, out)?;
                        out.put_u8(b':');
                        values.write(j, out)?;
                    }
                    out.put_u8(b'}');
                } else {
                    out.put_u8(b'[');
                    for (n, j) in range.enumerate() {
                        if n > 0 {
                            out.put_u8(b',');
                        }
                        out.put_slice(b"{\"key\":");
                        keys.write(j, out)?;
                        out.put_slice(b",\"value\":");
                        values.write(j, out)?;
                        out.put_u8(b'}');
                    }
                    out.put_u8(b']');
                }
            }
            JsonKind::Dictionary(keys, values) => values.write(keys[i], out)?,
        }
        Ok(())
    }

    /// Whether value `i` renders as JSON `null` (looking through dictionaries).
    fn is_null_at(&self, i: usize) -> bool {
        if is_null(&self.nulls, i) {
            return true;
        }
        match &self.kind {
            JsonKind::Null => true,
            JsonKind::Dictionary(keys, values) => values.is_null_at(keys[i]),
            _ => false,
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_int<I: itoa::Integer>(out: &mut BytesMut, v: I) {
    let mut buf = itoa::Buffer::new();
    out.put_slice(buf.format(v).as_bytes());
}

/// A float as the shortest decimal that reads back to the same `f32`; NaN and ±infinity as `null`.
fn put_f32(out: &mut BytesMut, v: f32) {
    if v.is_finite() {
        let mut buf = ryu::Buffer::new();
        out.put_slice(buf.format_finite(v).as_bytes());
    } else {
        out.put_slice(b"null");
    }
}

/// A float as the shortest decimal that reads back to the same `f64`; NaN and ±infinity as `null`.
fn put_f64(out: &mut BytesMut, v: f64) {
    if v.is_finite() {
        let mut buf = ryu::Buffer::new();
        out.put_slice(buf.format_finite(v).as_bytes());
    } else {
        out.put_slice(b"null");
    }
}

/// A decimal as a JSON number with exactly its digits: `scale` digits after the point (trailing zeros kept),
/// a negative scale appends zeros (`123` at scale -2 → `12300`).
fn put_decimal_json(out: &mut BytesMut, negative: bool, digits: &[u8], scale: i32) {
    let first = digits
        .iter()
        .position(|&c| c != b'0')
        .unwrap_or(digits.len());
    let digits = &digits[first..];
    if negative && !digits.is_empty() {
        out.put_u8(b'-');
    }
    let len = digits.len() as i32;
    if scale <= 0 {
        if digits.is_empty() {
            out.put_u8(b'0');
        } else {
            out.put_slice(digits);
            for _ in 0..-scale {
                out.put_u8(b'0');
            }
        }
    } else if len > scale {
        let point = (len - scale) as usize;
        out.put_slice(&digits[..point]);
        out.put_u8(b'.');
        out.put_slice(&digits[point..]);
    } else {
        out.put_slice(b"0.");
        for _ in 0..scale - len {
            out.put_u8(b'0');
        }
        out.put_slice(digits);
    }
}

/// Writes a JSON string: `"` and `\` escaped with a backslash, `\n`, `\r`, `\t`, `\b`, `\f` as such, other
/// control characters as `\u00XX`, everything else (multi-byte UTF-8 included) as it is; a NUL character
/// follows the policy.
fn put_json_str(out: &mut BytesMut, s: &str, nul: NulPolicy) -> Result<(), ValueError> {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.put_u8(b'"');
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if c >= 0x20 && c != b'"' && c != b'\\' {
            continue;
        }
        out.put_slice(&b[start..i]);
        start = i + 1;
        match c {
            b'"' => out.put_slice(b"\\\""),
            b'\\' => out.put_slice(b"\\\\"),
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b'\t' => out.put_slice(b"\\t"),
            0x08 => out.put_slice(b"\\b"),
            0x0c => out.put_slice(b"\\f"),
            0 => match nul {
                NulPolicy::Error => return Err(ValueError::Nul),
                NulPolicy::Strip => {}
                NulPolicy::Replace => out.put_slice(REPLACEMENT),
            },
            _ => {
                out.put_slice(b"\\u00");
                out.put_u8(HEX[(c >> 4) as usize]);
                out.put_u8(HEX[(c & 15) as usize]);
            }
        }
    }
    out.put_slice(&b[start..]);
    out.put_u8(b'"');
    Ok(())
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + (m <= 2) as i64;
    (y, m, d)
}

/// Appends `n` as at least `width` digits, zero-padded.
fn put_padded(out: &mut BytesMut, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let s = buf.format(n);
    for _ in s.len()..width {
        out.put_u8(b'0');
    }
    out.put_slice(s.as_bytes());
}

/// ISO-8601 calendar date `YYYY-MM-DD`; years outside 0000–9999 get a sign and at least four digits
/// (`+10000`, `-0001` = 2 BC), like chrono.
fn put_date(out: &mut BytesMut, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        put_padded(out, y as u64, 4);
    } else {
        out.put_u8(if y < 0 { b'-' } else { b'+' });
        put_padded(out, y.unsigned_abs(), 4);
    }
    out.put_u8(b'-');
    put_padded(out, m as u64, 2);
    out.put_u8(b'-');
    put_padded(out, d as u64, 2);
}

/// `HH:MM:SS` and, when not zero, `.` and the microseconds without trailing zeros (`24:00:00` for a whole day).
fn put_time_of_day(out: &mut BytesMut, micros: i64) {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    put_padded(out, (secs / 3_600) as u64, 2);
    out.put_u8(b':');
    put_padded(out, (secs / 60 % 60) as u64, 2);
    out.put_u8(b':');
    put_padded(out, (secs % 60) as u64, 2);
    put_fraction(out, frac.unsigned_abs());
}

/// `.` and six digits of microseconds without trailing zeros; nothing for zero.
fn put_fraction(out: &mut BytesMut, micros: u64) {
    if micros == 0 {
        return;
    }
    let mut digits = [b'0'; 6];
    let mut v = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let end = 6 - digits.iter().rev().take_while(|&&c| c == b'0').count();
    out.put_u8(b'.');
    out.put_slice(&digits[..end]);
}

/// An interval as a JSON string in ISO 8601 duration form exactly as PostgreSQL prints it with
/// `IntervalStyle = iso_8601`: `P1Y2M3DT4H5M6.5S`, each part with its own sign, zero parts left out, `PT0S`
/// for zero. Months split into years and months, microseconds into hours, minutes and seconds, truncating.
fn put_iso_interval(out: &mut BytesMut, months: i32, days: i32, micros: i64) {
    let year = months / 12;
    let month = months % 12;
    let hour = micros / 3_600_000_000;
    let rest = micros - hour * 3_600_000_000;
    let minute = rest / 60_000_000;
    let rest = rest - minute * 60_000_000;
    let sec = rest / 1_000_000;
    let fsec = rest - sec * 1_000_000;
    out.put_u8(b'"');
    if year == 0 && month == 0 && days == 0 && micros == 0 {
        out.put_slice(b"PT0S\"");
        return;
    }
    fn part(out: &mut BytesMut, v: i64, unit: u8) {
        if v != 0 {
            put_int(out, v);
            out.put_u8(unit);
        }
    }
    out.put_u8(b'P');
    part(out, year as i64, b'Y');
    part(out, month as i64, b'M');
    part(out, days as i64, b'D');
    if hour != 0 || minute != 0 || sec != 0 || fsec != 0 {
        out.put_u8(b'T');
    }
    part(out, hour, b'H');
    part(out, minute, b'M');
    if sec != 0 || fsec != 0 {
        if sec < 0 || fsec < 0 {
            out.put_u8(b'-');
        }
        put_int(out, sec.unsigned_abs());
        put_fraction(out, fsec.unsigned_abs());
        out.put_u8(b'S');
    }
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, StringArray};
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    /// The hash field (the tuple's last 8 bytes) of each row of `batch`, and checks the tuple layout.
    fn row_hashes(batch: &RecordBatch) -> Vec<i64> {
        let encoder = CopyEncoder::new(batch).unwrap();
        (0..batch.num_rows())
            .map(|row| {
                let mut plain = BytesMut::new();
                encoder.write_row(row, &mut plain).unwrap();
                let mut hashed = BytesMut::new();
                encoder.write_row_hashed(row, &mut hashed).unwrap();
                // One more field: count + 1, the same fields, then length 8 and the hash.
                let fields = i16::from_be_bytes([plain[0], plain[1]]);
                assert_eq!(i16::from_be_bytes([hashed[0], hashed[1]]), fields + 1);
                assert_eq!(&hashed[2..plain.len()], &plain[2..]);
                assert_eq!(&hashed[plain.len()..plain.len() + 4], &8i32.to_be_bytes());
                assert_eq!(hashed.len(), plain.len() + 12);
                i64::from_be_bytes(hashed[hashed.len() - 8..].try_into().unwrap())
            })
            .collect()
    }

    #[test]
    fn row_hashes_follow_the_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = |ids: Vec<i32>, names: Vec<Option<&str>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int32Array::from(ids)),
                    Arc::new(StringArray::from(names)),
                ],
            )
            .unwrap()
        };
        let a = row_hashes(&batch(
            vec![1, 2, 3, 4, 1],
            vec![Some("a"), Some(""), None, Some("a\tb"), Some("a")],
        ));
        // Equal rows hash equal (also in another batch); "" and NULL, and a changed value, differ.
        assert_eq!(a[0], a[4]);
        assert_eq!(row_hashes(&batch(vec![1], vec![Some("a")])), vec![a[0]]);
        let distinct: std::collections::HashSet<i64> = a[..4].iter().copied().collect();
        assert_eq!(distinct.len(), 4, "{a:?}");
        let b = row_hashes(&batch(vec![2, 3], vec![None, Some("")]));
        assert_ne!(b[0], a[1], "NULL is not the empty string");
        assert_ne!(b[1], a[2], "the empty string is not NULL");
    }

    fn numeric(v: u64) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_numeric_u64(&mut b, v);
        b.to_vec()
    }

    fn decimal(negative: bool, digits: &str, scale: i32) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_numeric(&mut b, negative, digits.as_bytes(), scale).unwrap();
        b.to_vec()
    }

    fn json_decimal(negative: bool, digits: &str, scale: i32) -> String {
        let mut b = BytesMut::new();
        put_decimal_json(&mut b, negative, digits.as_bytes(), scale);
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn numeric_format() {
        assert_eq!(numeric(0), [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        // 1 → one digit 1, weight 0
        assert_eq!(numeric(1), [0, 0, 0, 10, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        // 10000 → one digit 1, weight 1 (trailing zero digit dropped)
        assert_eq!(numeric(10_000), [0, 0, 0, 10, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1]);
        // 12345678 → 1234 5678, weight 1
        assert_eq!(
            numeric(12_345_678),
            [0, 0, 0, 12, 0, 2, 0, 1, 0, 0, 0, 0, 0x04, 0xd2, 0x16, 0x2e]
        );
        // u64::MAX = 1844 6744 0737 0955 1615 → 5 digits, weight 4
        let m = numeric(u64::MAX);
        assert_eq!(&m[4..8], &[0, 5, 0, 4]);
        assert_eq!(m.len(), 4 + 8 + 10);
    }

    #[test]
    fn decimal_numeric_format() {
        // -1.5 at scale 2 (-1.50) → digits 1, 5000; weight 0; negative; dscale 2
        assert_eq!(
            decimal(true, "150", 2),
            [0, 0, 0, 12, 0, 2, 0, 0, 0x40, 0, 0, 2, 0, 1, 0x13, 0x88]
        );
        // 0.0001 (1 at scale 4) → digit 1 at weight -1
        assert_eq!(
            decimal(false, "1", 4),
            [0, 0, 0, 10, 0, 1, 0xff, 0xff, 0, 0, 0, 4, 0, 1]
        );
        // 123 at scale -5 = 12300000 → 1230 0000 → one digit 1230 at weight 1, dscale 0
        assert_eq!(
            decimal(false, "123", -5),
            [0, 0, 0, 10, 0, 1, 0, 1, 0, 0, 0, 0, 0x04, 0xce]
        );
        // zero at scale 3 → no digits, dscale 3
        assert_eq!(decimal(true, "0", 3), [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 3]);
    }

    #[test]
    fn decimal_json_keeps_digits() {
        assert_eq!(json_decimal(true, "150", 2), "-1.50");
        assert_eq!(json_decimal(false, "1", 4), "0.0001");
        assert_eq!(json_decimal(false, "123", -2), "12300");
        assert_eq!(json_decimal(true, "0", 2), "0.00");
        assert_eq!(json_decimal(false, "0", 0), "0");
    }

    #[test]
    fn json_strings_escape_and_apply_the_nul_policy() {
        let s = |v: &str, nul| {
            let mut b = BytesMut::new();
            put_json_str(&mut b, v, nul).map(|_| String::from_utf8(b.to_vec()).unwrap())
        };
        assert_eq!(
            s("a\"b\\c\nd\te\u{1}ü", NulPolicy::Error).unwrap(),
            r#""a\"b\\c\nd\te\u0001ü""#
        );
        assert!(matches!(s("a\0b", NulPolicy::Error), Err(ValueError::Nul)));
        assert_eq!(s("a\0b", NulPolicy::Strip).unwrap(), "\"ab\"");
        assert_eq!(s("a\0b", NulPolicy::Replace).unwrap(), "\"a\u{FFFD}b\"");
    }

    #[test]
    fn dates_times_and_intervals_render_like_postgres() {
        let text = |f: &dyn Fn(&mut BytesMut)| {
            let mut b = BytesMut::new();
            f(&mut b);
            String::from_utf8(b.to_vec()).unwrap()
        };
        assert_eq!(text(&|b| put_date(b, 0)), "1970-01-01");
        assert_eq!(text(&|b| put_date(b, -1)), "1969-12-31");
        assert_eq!(text(&|b| put_date(b, 19_782)), "2024-02-29");
        assert_eq!(text(&|b| put_date(b, -719_529)), "-0001-12-31");
        assert_eq!(text(&|b| put_time_of_day(b, 3_723_500_000)), "01:02:03.5");
        assert_eq!(text(&|b| put_time_of_day(b, DAY_MICROS)), "24:00:00");
        assert_eq!(text(&|b| put_iso_interval(b, 0, 0, 0)), "\"PT0S\"");
        assert_eq!(
            text(&|b| put_iso_interval(b, 14, 3, 14_706_500_000)),
            "\"P1Y2M3DT4H5M6.5S\""
        );
        assert_eq!(
            text(&|b| put_iso_interval(b, -1, 0, -1_500_000)),
            "\"P-1MT-1.5S\""
        );
    }

    #[test]
    fn header_rows_trailer() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(7), None])),
                Arc::new(StringArray::from(vec![None, Some("hi")])),
            ],
        )
        .unwrap();
        let mut out = BytesMut::new();
        encode_copy_binary(&batch, &mut out).unwrap();
        let mut expected = HEADER.to_vec();
        expected.extend([0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff]);
        expected.extend([0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, b'h', b'i']);
        expected.extend([0xff, 0xff]);
        assert_eq!(out.to_vec(), expected);
    }

    #[test]
    fn nul_in_text_names_column_and_row_and_leaves_out_untouched() {
        let schema = Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec!["ok", "bad\0"]))],
        )
        .unwrap();
        let mut out = BytesMut::from(&b"prefix"[..]);
        match encode_copy_binary(&batch, &mut out).unwrap_err() {
            DestinationError::NulInText { column, row } => {
                assert_eq!((column.as_str(), row), ("name", 1))
            }
            e => panic!("{e}"),
        }
        assert_eq!(&out[..], b"prefix");
        let options = CopyOptions {
            nul: NulPolicy::Strip,
        };
        encode_copy_binary_with(&batch, &options, &mut out).unwrap();
        assert!(out.ends_with(&[0, 1, 0, 0, 0, 3, b'b', b'a', b'd', 0xff, 0xff]));
    }

    #[test]
    fn nul_policy_serde_names() {
        let p: NulPolicy = serde_json::from_str("\"replace\"").unwrap();
        assert_eq!(p, NulPolicy::Replace);
        assert_eq!(
            serde_json::to_string(&NulPolicy::Strip).unwrap(),
            "\"strip\""
        );
        let o: CopyOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o.nul, NulPolicy::Error);
        assert!(serde_json::from_str::<NulPolicy>("\"drop\"").is_err());
    }

    #[test]
    fn timestamps_and_times_convert_units() {
        assert_eq!(to_micros(1, TimeUnit::Second), Some(1_000_000));
        assert_eq!(to_micros(-1, TimeUnit::Nanosecond), Some(-1));
        assert_eq!(to_micros(1_999, TimeUnit::Nanosecond), Some(1));
        assert_eq!(to_micros(i64::MAX, TimeUnit::Second), None);
        assert!(time_micros(86_400_000_001, TimeUnit::Microsecond).is_err());
        assert!(time_micros(-1, TimeUnit::Second).is_err());
    }

    /// PostgreSQL's own limits: `'4714-11-24 00:00:00 BC'` and `'294276-12-31 23:59:59.999999'` are the first and
    /// last timestamps it accepts, `'4714-11-24 BC'` and `'5874897-12-31'` the first and last dates; one unit
    /// past either end, and any value whose conversion overflows, is an error naming the value, never a wrap.
    #[test]
    fn timestamps_and_dates_outside_postgresql_are_errors() {
        let micros = |y: i32, m: u32, d: u32| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros()
        };
        let first = micros(-4713, 11, 24);
        assert_eq!(
            pg_timestamp(first, TimeUnit::Microsecond).ok(),
            Some(PG_MIN_MICROS)
        );
        assert!(pg_timestamp(first - 1, TimeUnit::Microsecond).is_err());
        // Every microsecond or nanosecond count is a timestamp PostgreSQL holds once the start is passed.
        assert!(pg_timestamp(i64::MAX, TimeUnit::Microsecond).is_ok());
        assert!(pg_timestamp(i64::MIN, TimeUnit::Nanosecond).is_ok());
        // 294277-01-01 (past chrono's last year) in seconds: the last second before it loads, it does not.
        let end = (i128::from(PG_END_MICROS) + i128::from(PG_EPOCH_MICROS)) / 1_000_000;
        let end = i64::try_from(end).unwrap();
        assert_eq!(
            pg_timestamp(end - 1, TimeUnit::Second).ok(),
            Some(PG_END_MICROS - 1_000_000)
        );
        let ValueError::OutOfRange(detail) = pg_timestamp(end, TimeUnit::Second).unwrap_err()
        else {
            panic!("not out of range")
        };
        assert!(
            detail.contains(&format!("{end} seconds after 1970-01-01")),
            "{detail}"
        );
        let ValueError::OutOfRange(detail) =
            pg_timestamp(micros(-5000, 1, 1) / 1000, TimeUnit::Millisecond).unwrap_err()
        else {
            panic!("not out of range")
        };
        assert!(detail.contains("5001-01-01 00:00:00 BC"), "{detail}");
        // 9999-12-31 03:00 in every unit is exact.
        let late = micros(9999, 12, 31) + 3 * 3_600_000_000;
        assert_eq!(
            pg_timestamp(late / 1_000_000, TimeUnit::Second).ok(),
            Some(late - PG_EPOCH_MICROS)
        );
        assert_eq!(
            pg_timestamp(late / 1_000, TimeUnit::Millisecond).ok(),
            Some(late - PG_EPOCH_MICROS)
        );
        for unit in [TimeUnit::Second, TimeUnit::Millisecond] {
            assert!(pg_timestamp(i64::MAX, unit).is_err());
            assert!(pg_timestamp(i64::MIN, unit).is_err());
        }
        let ValueError::OutOfRange(detail) = pg_timestamp(i64::MAX, TimeUnit::Second).unwrap_err()
        else {
            panic!("not out of range")
        };
        assert!(
            detail.contains("9223372036854775807 seconds after 1970-01-01"),
            "{detail}"
        );
        let days = |y: i32, m: u32, d: u32| {
            (chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap()
                - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days()
        };
        assert_eq!(pg_days(days(-4713, 11, 24)).ok(), Some(PG_MIN_DAYS as i32));
        assert!(pg_days(days(-4713, 11, 23)).is_err());
        assert_eq!(pg_days(days(2000, 1, 1)).ok(), Some(0));
        assert_eq!(
            pg_days(PG_END_DAYS + PG_EPOCH_DAYS as i64 - 1).ok(),
            Some(PG_END_DAYS as i32 - 1)
        );
        assert!(pg_days(PG_END_DAYS + PG_EPOCH_DAYS as i64).is_err());
        assert!(pg_days(i64::from(i32::MAX)).is_err());
        assert!(pg_days(i64::MIN).is_err());
    }

    #[test]
    fn unsupported_type_is_rejected() {
        let run_ends = arrow_array::Int32Array::from(vec![2]);
        let values = arrow_array::Int64Array::from(vec![5]);
        let arr = arrow_array::RunArray::<Int32Type>::try_new(&run_ends, &values).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "r",
            arr.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(arr)]).unwrap();
        assert!(matches!(
            encode_copy_binary(&batch, &mut BytesMut::new()),
            Err(DestinationError::UnsupportedType { .. })
        ));
    }
}
