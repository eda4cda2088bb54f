//! Opening a Parquet file so that what is read is what the file holds, on every path that reads Parquet (the
//! files source and the Open Targets release reader):
//!
//! * **INT96 timestamps** (what Spark and Hive write) are read as microseconds since 1970-01-01 instead of the
//!   `parquet` crate's default nanoseconds, whose `i64` holds only 1677-09-21 to 2262-04-11 and silently wraps
//!   outside it (9999-12-31 became 1816-03-29). Microseconds hold every instant from 290308 BC to 294247 AD, which
//!   covers PostgreSQL's `timestamp` range but for its last 30 years; PostgreSQL itself stores microseconds.
//! * **Row counts**: the footer's row count must equal the sum of its row groups' (the `parquet` crate reads no
//!   more rows than the footer says, so a footer claiming 0 rows over a row group of 6 would read as empty).

use std::fs::File;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::Type as PhysicalType;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::schema::types::Type;

/// Why a Parquet file cannot be read as it is.
#[derive(Debug, thiserror::Error)]
pub enum ParquetReadError {
    /// The `parquet` crate cannot read the file (not Parquet, truncated, a bad footer, an unsupported feature).
    #[error("{0}")]
    Unreadable(#[from] ParquetError),
    /// The footer's row count differs from the sum of the row groups' counts.
    #[error(
        "the file is inconsistent: its footer says it holds {footer_rows} rows but its row groups hold \
         {group_rows}; it was written by a faulty writer or altered afterwards — write it again"
    )]
    Inconsistent {
        /// `FileMetaData.num_rows`.
        footer_rows: i64,
        /// The sum of the row groups' `num_rows`.
        group_rows: i64,
    },
}

/// Opens `file` as record batches: INT96 columns as `Timestamp(Microsecond)` (see the module documentation), the
/// row counts checked ([`check_row_counts`]).
///
/// Errors: [`ParquetReadError::Unreadable`] for a file the `parquet` crate cannot read;
/// [`ParquetReadError::Inconsistent`] when the footer's row count is not its row groups'.
pub fn reader_builder(
    file: File,
) -> Result<ParquetRecordBatchReaderBuilder<File>, ParquetReadError> {
    let options = ArrowReaderOptions::new();
    let loaded = ArrowReaderMetadata::load(&file, options.clone())?;
    check_row_counts(loaded.metadata())?;
    let loaded = match exact_schema(loaded.metadata(), loaded.schema()) {
        Some(schema) => ArrowReaderMetadata::try_new(
            Arc::clone(loaded.metadata()),
            options.with_schema(Arc::new(schema)),
        )?,
        None => loaded,
    };
    Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
        file, loaded,
    ))
}

/// Checks that the footer's row count (`FileMetaData.num_rows`) is the sum of its row groups' counts.
///
/// Errors: [`ParquetReadError::Inconsistent`] with both counts.
pub fn check_row_counts(metadata: &ParquetMetaData) -> Result<(), ParquetReadError> {
    let footer_rows = metadata.file_metadata().num_rows();
    let group_rows = metadata
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .fold(0i64, i64::saturating_add);
    if footer_rows != group_rows {
        return Err(ParquetReadError::Inconsistent {
            footer_rows,
            group_rows,
        });
    }
    Ok(())
}

/// `schema` (the file's Arrow schema as the `parquet` crate reads it by default) with every INT96 column, at the
/// top level, in a struct or as a list's items, as `Timestamp(Microsecond)` (its time zone kept); `None` when the
/// file has no INT96 column there (read it as it is).
pub fn exact_schema(metadata: &ParquetMetaData, schema: &Schema) -> Option<Schema> {
    let root = metadata.file_metadata().schema_descr().root_schema();
    let fields = exact_fields(schema.fields(), root.get_fields())?;
    Some(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The fields with INT96 leaves changed, or `None` when none is.
fn exact_fields(fields: &Fields, types: &[Arc<Type>]) -> Option<Fields> {
    if fields.len() != types.len() {
        return None;
    }
    let mut changed = false;
    let out: Vec<Arc<Field>> = fields
        .iter()
        .zip(types)
        .map(|(f, t)| match exact_field(f, t) {
            Some(new) => {
                changed = true;
                Arc::new(new)
            }
            None => Arc::clone(f),
        })
        .collect();
    changed.then(|| Fields::from(out))
}

/// The field with INT96 leaves as microseconds, or `None` when it has none.
fn exact_field(field: &Field, ty: &Type) -> Option<Field> {
    let data_type = match (field.data_type(), ty) {
        (DataType::Timestamp(TimeUnit::Nanosecond, tz), Type::PrimitiveType { .. })
            if ty.get_physical_type() == PhysicalType::INT96 =>
        {
            DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
        }
        (DataType::Struct(children), Type::GroupType { fields, .. }) => {
            DataType::Struct(exact_fields(children, fields)?)
        }
        (DataType::List(item), Type::GroupType { fields, .. }) => {
            DataType::List(Arc::new(exact_field(item, list_item(fields)?)?))
        }
        (DataType::LargeList(item), Type::GroupType { fields, .. }) => {
            DataType::LargeList(Arc::new(exact_field(item, list_item(fields)?)?))
        }
        _ => return None,
    };
    Some(field.clone().with_data_type(data_type))
}

/// The item of a Parquet list group: `list { repeated group list { element } }` (three levels) or
/// `list { repeated element }` (two levels, older writers).
fn list_item(fields: &[Arc<Type>]) -> Option<&Type> {
    let [repeated] = fields else {
        return None;
    };
    match repeated.as_ref() {
        Type::GroupType { fields, .. } if fields.len() == 1 => Some(fields[0].as_ref()),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::data_type::{Int96, Int96Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    /// Writes one INT96 column `ts` holding `days` (Julian days) at `nanos` past midnight.
    fn int96_file(values: &[(u32, u64)]) -> tempfile::NamedTempFile {
        let schema = Arc::new(parse_message_type("message spark { optional int96 ts; }").unwrap());
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut writer = SerializedFileWriter::new(
            file.reopen().unwrap(),
            schema,
            Arc::new(WriterProperties::builder().build()),
        )
        .unwrap();
        let mut group = writer.next_row_group().unwrap();
        let mut column = group.next_column().unwrap().unwrap();
        let data: Vec<Int96> = values
            .iter()
            .map(|&(day, nanos)| {
                let mut v = Int96::new();
                v.set_data(nanos as u32, (nanos >> 32) as u32, day);
                v
            })
            .collect();
        column
            .typed::<Int96Type>()
            .write_batch(&data, Some(&vec![1; data.len()]), None)
            .unwrap();
        column.close().unwrap();
        group.close().unwrap();
        writer.close().unwrap();
        file
    }

    #[test]
    fn int96_is_read_as_exact_microseconds() {
        // 9999-12-31 03:00:00 UTC is Julian day 5373484; 1970-01-01 is 2440588.
        let file = int96_file(&[(5_373_484, 3 * 3_600_000_000_000), (2_440_588, 1_000)]);
        let builder = reader_builder(file.reopen().unwrap()).unwrap();
        assert_eq!(
            builder.schema().field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        let batch = builder.build().unwrap().next().unwrap().unwrap();
        let ts = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
            .unwrap();
        let expected = chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
            .unwrap()
            .and_hms_opt(3, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        assert_eq!(ts.value(0), expected);
        assert_eq!(ts.value(1), 1);
    }
}
