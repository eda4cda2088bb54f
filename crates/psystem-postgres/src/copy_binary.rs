//! Our encoder of Arrow record batches into PostgreSQL's binary `COPY` format.
//!
//! The stream is the `PGCOPY\n\xff\r\n\0` signature, a zero flags word and a zero header-extension length,
//! then one tuple per row (the field count as int2, then per field `-1` for NULL or the length as int4 followed
//! by the value in the type's binary send format), and the int2 trailer `-1`. The per-type value formats are in
//! the table of [`crate::types`]. Binary COPY has no escaping, so tabs, newlines, backslashes and quotes in text
//! arrive unchanged; a NUL character in text is an error ([`DestinationError::NulInText`]) because PostgreSQL
//! text cannot store it.
//!
//! [`encode_copy_binary`] writes a whole batch; [`CopyEncoder`] writes row by row so that the load path can
//! send a page in chunks while it encodes it.

use std::ops::Range;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use bytes::{BufMut, BytesMut};

use crate::types::pg_type;
use crate::DestinationError;

/// The 11-byte signature, the flags word and the header extension length of a binary COPY stream.
const HEADER: &[u8; 19] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Writes a one-dimensional `text[]` value in PostgreSQL's array send format: dimensions (1), a has-nulls flag,
/// the element type OID, then the length and lower bound (1) of the dimension, then each element as length +
/// UTF-8 bytes (-1 for NULL). An empty list is an array with zero dimensions.
fn put_text_array(out: &mut BytesMut, items: &dyn Array) -> Result<(), ValueError> {
    let strings: Vec<Option<&str>> = match items.data_type() {
        DataType::Utf8 => items.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => items.as_string::<i64>().iter().collect(),
        other => {
            return Err(ValueError::OutOfRange(format!(
                "list items of type {other} are not text"
            )))
        }
    };
    let len_at = out.len();
    out.put_i32(0); // value length, patched below
    if strings.is_empty() {
        out.put_i32(0); // no dimensions
        out.put_i32(0);
        out.put_i32(TEXT_OID);
    } else {
        out.put_i32(1);
        out.put_i32(strings.iter().any(|s| s.is_none()) as i32);
        out.put_i32(TEXT_OID);
        out.put_i32(strings.len() as i32);
        out.put_i32(1);
        for s in strings {
            match s {
                None => out.put_i32(-1),
                Some(s) => put_text(out, s)?,
            }
        }
    }
    let len = (out.len() - len_at - 4) as i32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Encodes a whole record batch as a binary COPY stream (header, rows, trailer) appended to `out`.
///
/// On error `out` is left as it was. Errors: [`DestinationError::UnsupportedType`] for a column without a
/// mapping, [`DestinationError::NulInText`] for a NUL character in text, [`DestinationError::ValueOutOfRange`]
/// for a value its PostgreSQL type cannot hold (e.g. a timestamp in seconds beyond year 294276).
pub fn encode_copy_binary(batch: &RecordBatch, out: &mut BytesMut) -> Result<(), DestinationError> {
    let start = out.len();
    let result = (|| {
        let encoder = CopyEncoder::new(batch)?;
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
}

impl<'a> CopyEncoder<'a> {
    /// Prepares an encoder for `batch`; fails with [`DestinationError::UnsupportedType`] when a column type
    /// has no PostgreSQL mapping.
    pub fn new(batch: &'a RecordBatch) -> Result<CopyEncoder<'a>, DestinationError> {
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
            columns.push(
                Column::new(array).ok_or_else(|| DestinationError::UnsupportedType {
                    column: field.name().clone(),
                    data_type: field.data_type().clone(),
                })?,
            );
        }
        Ok(CopyEncoder {
            names,
            columns,
            num_rows: batch.num_rows(),
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

    /// Appends the tuple of one row. On error, `out` may hold part of the tuple.
    pub fn write_row(&self, row: usize, out: &mut BytesMut) -> Result<(), DestinationError> {
        out.put_i16(self.columns.len() as i16);
        for (i, column) in self.columns.iter().enumerate() {
            column
                .write(row, out)
                .map_err(|e| e.into_error(self.names[i], row))?;
        }
        Ok(())
    }
}

/// A value-level encoding problem, before the column name and row are attached.
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

/// One column, downcast once to its concrete array type.
enum Column<'a> {
    Null,
    Int8(&'a arrow_array::Int8Array),
    Int16(&'a arrow_array::Int16Array),
    Int32(&'a arrow_array::Int32Array),
    Int64(&'a arrow_array::Int64Array),
    UInt8(&'a arrow_array::UInt8Array),
    UInt16(&'a arrow_array::UInt16Array),
    UInt32(&'a arrow_array::UInt32Array),
    UInt64(&'a arrow_array::UInt64Array),
    Float32(&'a arrow_array::Float32Array),
    Float64(&'a arrow_array::Float64Array),
    Boolean(&'a arrow_array::BooleanArray),
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
    Binary(&'a arrow_array::BinaryArray),
    LargeBinary(&'a arrow_array::LargeBinaryArray),
    BinaryView(&'a arrow_array::BinaryViewArray),
    Date32(&'a arrow_array::Date32Array),
    /// Timestamps of any unit: the array as int64 values plus the unit.
    Timestamp(&'a dyn Array, &'a [i64], TimeUnit),
    /// Time32 values (seconds or milliseconds since midnight).
    Time32(&'a dyn Array, &'a [i32], TimeUnit),
    /// Time64 values (microseconds or nanoseconds since midnight).
    Time64(&'a dyn Array, &'a [i64], TimeUnit),
    /// A list of strings, as a one-dimensional `text[]`.
    TextList(&'a dyn Array, ListOfText<'a>),
}

/// The two offset widths of a list of strings.
enum ListOfText<'a> {
    List(&'a arrow_array::ListArray),
    LargeList(&'a arrow_array::LargeListArray),
}

/// PostgreSQL's type OID of `text`, written in each array value's header.
const TEXT_OID: i32 = 25;

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef) -> Option<Column<'a>> {
        let a: &'a dyn Array = array.as_ref();
        Some(match a.data_type() {
            DataType::Null => Column::Null,
            DataType::Int8 => Column::Int8(a.as_primitive::<Int8Type>()),
            DataType::Int16 => Column::Int16(a.as_primitive::<Int16Type>()),
            DataType::Int32 => Column::Int32(a.as_primitive::<Int32Type>()),
            DataType::Int64 => Column::Int64(a.as_primitive::<Int64Type>()),
            DataType::UInt8 => Column::UInt8(a.as_primitive::<UInt8Type>()),
            DataType::UInt16 => Column::UInt16(a.as_primitive::<UInt16Type>()),
            DataType::UInt32 => Column::UInt32(a.as_primitive::<UInt32Type>()),
            DataType::UInt64 => Column::UInt64(a.as_primitive::<UInt64Type>()),
            DataType::Float32 => Column::Float32(a.as_primitive::<Float32Type>()),
            DataType::Float64 => Column::Float64(a.as_primitive::<Float64Type>()),
            DataType::Boolean => Column::Boolean(a.as_boolean()),
            DataType::Utf8 => Column::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => Column::LargeUtf8(a.as_string::<i64>()),
            DataType::Utf8View => Column::Utf8View(a.as_string_view()),
            DataType::Binary => Column::Binary(a.as_binary::<i32>()),
            DataType::LargeBinary => Column::LargeBinary(a.as_binary::<i64>()),
            DataType::BinaryView => Column::BinaryView(a.as_binary_view()),
            DataType::Date32 => Column::Date32(a.as_primitive::<Date32Type>()),
            DataType::Timestamp(unit, _) => {
                let values: &'a [i64] = match unit {
                    TimeUnit::Second => a.as_primitive::<TimestampSecondType>().values(),
                    TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().values(),
                    TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().values(),
                    TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().values(),
                };
                Column::Timestamp(a, values, *unit)
            }
            DataType::Time32(unit) => {
                let values: &'a [i32] = match unit {
                    TimeUnit::Second => a.as_primitive::<Time32SecondType>().values(),
                    TimeUnit::Millisecond => a.as_primitive::<Time32MillisecondType>().values(),
                    _ => return None,
                };
                Column::Time32(a, values, *unit)
            }
            DataType::Time64(unit) => {
                let values: &'a [i64] = match unit {
                    TimeUnit::Microsecond => a.as_primitive::<Time64MicrosecondType>().values(),
                    TimeUnit::Nanosecond => a.as_primitive::<Time64NanosecondType>().values(),
                    _ => return None,
                };
                Column::Time64(a, values, *unit)
            }
            DataType::List(f) if matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8) => {
                Column::TextList(a, ListOfText::List(a.as_list::<i32>()))
            }
            DataType::LargeList(f)
                if matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8) =>
            {
                Column::TextList(a, ListOfText::LargeList(a.as_list::<i64>()))
            }
            _ => return None,
        })
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Column::Null => true,
            Column::Int8(a) => a.is_null(row),
            Column::Int16(a) => a.is_null(row),
            Column::Int32(a) => a.is_null(row),
            Column::Int64(a) => a.is_null(row),
            Column::UInt8(a) => a.is_null(row),
            Column::UInt16(a) => a.is_null(row),
            Column::UInt32(a) => a.is_null(row),
            Column::UInt64(a) => a.is_null(row),
            Column::Float32(a) => a.is_null(row),
            Column::Float64(a) => a.is_null(row),
            Column::Boolean(a) => a.is_null(row),
            Column::Utf8(a) => a.is_null(row),
            Column::LargeUtf8(a) => a.is_null(row),
            Column::Utf8View(a) => a.is_null(row),
            Column::Binary(a) => a.is_null(row),
            Column::LargeBinary(a) => a.is_null(row),
            Column::BinaryView(a) => a.is_null(row),
            Column::Date32(a) => a.is_null(row),
            Column::Timestamp(a, _, _) | Column::Time32(a, _, _) | Column::Time64(a, _, _) => {
                a.is_null(row)
            }
            Column::TextList(a, _) => a.is_null(row),
        }
    }

    fn write(&self, row: usize, out: &mut BytesMut) -> Result<(), ValueError> {
        if self.is_null(row) {
            out.put_i32(-1);
            return Ok(());
        }
        match self {
            Column::Null => out.put_i32(-1),
            Column::Int8(a) => put_i16(out, a.value(row) as i16),
            Column::Int16(a) => put_i16(out, a.value(row)),
            Column::Int32(a) => put_i32(out, a.value(row)),
            Column::Int64(a) => put_i64(out, a.value(row)),
            Column::UInt8(a) => put_i32(out, a.value(row) as i32),
            Column::UInt16(a) => put_i32(out, a.value(row) as i32),
            Column::UInt32(a) => put_i64(out, a.value(row) as i64),
            Column::UInt64(a) => put_numeric_u64(out, a.value(row)),
            Column::Float32(a) => {
                out.put_i32(4);
                out.put_f32(a.value(row));
            }
            Column::Float64(a) => {
                out.put_i32(8);
                out.put_f64(a.value(row));
            }
            Column::Boolean(a) => {
                out.put_i32(1);
                out.put_u8(a.value(row) as u8);
            }
            Column::Utf8(a) => put_text(out, a.value(row))?,
            Column::LargeUtf8(a) => put_text(out, a.value(row))?,
            Column::Utf8View(a) => put_text(out, a.value(row))?,
            Column::Binary(a) => put_bytes(out, a.value(row))?,
            Column::LargeBinary(a) => put_bytes(out, a.value(row))?,
            Column::BinaryView(a) => put_bytes(out, a.value(row))?,
            Column::Date32(a) => {
                let days = a.value(row);
                let pg = days.checked_sub(PG_EPOCH_DAYS).ok_or_else(|| {
                    ValueError::OutOfRange(format!(
                        "date {days} days after 1970-01-01 is out of range for PostgreSQL"
                    ))
                })?;
                put_i32(out, pg);
            }
            Column::Timestamp(_, values, unit) => {
                let v = values[row];
                let micros = to_micros(v, *unit)
                    .and_then(|m| m.checked_sub(PG_EPOCH_MICROS))
                    .ok_or_else(|| {
                        ValueError::OutOfRange(format!(
                        "timestamp {v} ({unit:?} since 1970-01-01) is out of range for PostgreSQL"
                    ))
                    })?;
                put_i64(out, micros);
            }
            Column::Time32(_, values, unit) => {
                let v = values[row];
                let micros =
                    to_micros(v as i64, *unit).expect("an i32 time always fits in microseconds");
                put_time(out, micros, v as i64, *unit)?;
            }
            Column::Time64(_, values, unit) => {
                let v = values[row];
                let micros = to_micros(v, *unit).ok_or_else(|| {
                    ValueError::OutOfRange(format!("time {v} ({unit:?}) is out of range"))
                })?;
                put_time(out, micros, v, *unit)?;
            }
            Column::TextList(_, list) => {
                let items = match list {
                    ListOfText::List(l) => l.value(row),
                    ListOfText::LargeList(l) => l.value(row),
                };
                put_text_array(out, items.as_ref())?;
            }
        }
        Ok(())
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

fn put_time(out: &mut BytesMut, micros: i64, raw: i64, unit: TimeUnit) -> Result<(), ValueError> {
    const DAY: i64 = 86_400_000_000;
    if !(0..=DAY).contains(&micros) {
        return Err(ValueError::OutOfRange(format!(
            "time of day {raw} ({unit:?} since midnight) is not between 00:00 and 24:00"
        )));
    }
    put_i64(out, micros);
    Ok(())
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

fn put_text(out: &mut BytesMut, s: &str) -> Result<(), ValueError> {
    if s.as_bytes().contains(&0) {
        return Err(ValueError::Nul);
    }
    put_bytes(out, s.as_bytes())
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

/// Writes an unsigned 64-bit integer in PostgreSQL's binary numeric format: int2 ndigits, int2 weight (of the
/// first base-10000 digit), uint2 sign (0 = positive), int2 display scale (0), then the base-10000 digits from
/// the most significant, without trailing zero digits (as PostgreSQL itself writes them).
fn put_numeric_u64(out: &mut BytesMut, v: u64) {
    // u64::MAX has 20 decimal digits: at most 5 base-10000 digits.
    let mut digits = [0i16; 5];
    let mut n = 0;
    let mut x = v;
    while x > 0 {
        digits[n] = (x % 10_000) as i16;
        x /= 10_000;
        n += 1;
    }
    // digits[0..n] are least significant first; drop trailing (least significant) zero digits.
    let mut first = 0;
    while first < n && digits[first] == 0 {
        first += 1;
    }
    let ndigits = n - first;
    let weight = if n == 0 { 0 } else { n as i16 - 1 };
    out.put_i32(8 + 2 * ndigits as i32);
    out.put_i16(ndigits as i16);
    out.put_i16(weight);
    out.put_u16(0x0000);
    out.put_i16(0);
    for d in digits[first..n].iter().rev() {
        out.put_i16(*d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, StringArray, UInt64Array};
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    fn numeric(v: u64) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_numeric_u64(&mut b, v);
        b.to_vec()
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
    }

    #[test]
    fn timestamps_and_times_convert_units() {
        assert_eq!(to_micros(1, TimeUnit::Second), Some(1_000_000));
        assert_eq!(to_micros(-1, TimeUnit::Nanosecond), Some(-1));
        assert_eq!(to_micros(1_999, TimeUnit::Nanosecond), Some(1));
        assert_eq!(to_micros(i64::MAX, TimeUnit::Second), None);
        let mut b = BytesMut::new();
        assert!(put_time(&mut b, 86_400_000_001, 0, TimeUnit::Microsecond).is_err());
    }

    #[test]
    fn unsupported_type_is_rejected() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "d",
            DataType::Decimal128(5, 1),
            true,
        )]));
        let arr = arrow_array::Decimal128Array::from(vec![1i128])
            .with_precision_and_scale(5, 1)
            .unwrap();
        let batch = RecordBatch::try_new(schema, vec![Arc::new(arr)]).unwrap();
        assert!(matches!(
            encode_copy_binary(&batch, &mut BytesMut::new()),
            Err(DestinationError::UnsupportedType { .. })
        ));
        let _ = UInt64Array::from(vec![1u64]);
    }
}
