//! Parquet: the `parquet` crate's Arrow reader; positions are row indexes.

use std::fs::File;

use arrow_array::Array;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::columns::preview;
use super::{
    config_err, ColumnReport, Common, FileFormat, FilePosition, FilesBatch, FilesConfig, Opened,
    Plan as AnyPlan, TypeOrigin, SAMPLE_ROWS,
};
use crate::parquet_read::ParquetReadError;
use crate::SourceError;

/// An open Parquet file's row layout.
#[derive(Debug)]
pub(super) struct Plan {
    /// Rows of each row group.
    group_rows: Vec<u64>,
    total_rows: u64,
}

fn builder(common: &Common) -> Result<ParquetRecordBatchReaderBuilder<File>, SourceError> {
    let file = File::open(&common.path).map_err(|e| common.io("cannot open it", &e))?;
    crate::parquet_read::reader_builder(file).map_err(|e| match e {
        ParquetReadError::Unreadable(e) => common.err(
            None,
            None,
            format!("it is not a readable Parquet file: {e}; check that the file is complete and is Parquet"),
        ),
        inconsistent => common.err(None, None, inconsistent.to_string()),
    })
}

/// `size × record / total`: the byte position reported for a row index.
fn estimate(size: u64, record: u64, total: u64) -> u64 {
    if total == 0 {
        return size;
    }
    (u128::from(size) * u128::from(record.min(total)) / u128::from(total)) as u64
}

pub(super) fn open(common: &Common, config: &FilesConfig) -> Result<Opened, SourceError> {
    if !config.casts.is_empty() || !config.multi_valued.is_empty() {
        return Err(config_err(format!(
            "files: {} is Parquet, whose column types come from the file; remove casts and multi_valued",
            common.display
        )));
    }
    let builder = builder(common)?;
    let schema = builder.schema().clone();
    let group_rows: Vec<u64> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| u64::try_from(g.num_rows()).unwrap_or(0))
        .collect();
    let total_rows = group_rows.iter().sum();
    let sample = builder
        .with_batch_size(SAMPLE_ROWS)
        .with_limit(SAMPLE_ROWS)
        .build()
        .and_then(|mut r| r.next().transpose().map_err(Into::into))
        .map_err(|e| common.err(None, None, format!("cannot read its first rows: {e}")))?;
    let options = FormatOptions::default();
    let reports = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let (sample_rows, non_null, example) = match &sample {
                Some(batch) => {
                    let array = batch.column(i);
                    let example = (0..array.len()).find(|&r| array.is_valid(r)).and_then(|r| {
                        ArrayFormatter::try_new(array.as_ref(), &options)
                            .ok()
                            .map(|f| preview(&f.value(r).to_string()))
                    });
                    (
                        array.len() as u64,
                        (array.len() - array.null_count()) as u64,
                        example,
                    )
                }
                None => (0, 0, None),
            };
            ColumnReport {
                name: field.name().clone(),
                source_name: field.name().clone(),
                position: i,
                data_type: field.data_type().clone(),
                origin: TypeOrigin::File,
                renamed: None,
                sample_rows,
                non_null,
                example,
            }
        })
        .collect();
    Ok(Opened {
        plan: AnyPlan::Parquet(Plan {
            group_rows,
            total_rows,
        }),
        schema,
        reports,
        format: FileFormat::Parquet,
        delimiter: None,
    })
}

/// A Parquet reader between batches.
pub(super) struct Reader {
    inner: Option<ParquetRecordBatchReader>,
    /// The row index `inner` continues from.
    at: Option<u64>,
}

impl Reader {
    pub(super) fn new(_common: &Common, _plan: &Plan) -> Reader {
        Reader {
            inner: None,
            at: None,
        }
    }

    /// A reader starting at row `start`: the row groups from the one holding it, minus an offset.
    fn reader_at(
        common: &Common,
        plan: &Plan,
        start: u64,
    ) -> Result<ParquetRecordBatchReader, SourceError> {
        let mut first_row = 0u64;
        let mut group = 0usize;
        while group < plan.group_rows.len() && first_row + plan.group_rows[group] <= start {
            first_row += plan.group_rows[group];
            group += 1;
        }
        builder(common)?
            .with_row_groups((group..plan.group_rows.len()).collect())
            .with_offset((start - first_row) as usize)
            .with_batch_size(common.batch_rows)
            .build()
            .map_err(|e| common.err(None, None, format!("cannot read it: {e}")))
    }

    pub(super) fn read(
        &mut self,
        common: &Common,
        plan: &Plan,
        from: Option<&FilePosition>,
    ) -> Result<Option<FilesBatch>, SourceError> {
        let start = from.map_or(0, |p| p.record);
        if start > plan.total_rows {
            return Err(common.err(
                None,
                None,
                format!(
                    "the position to resume from (row {start}) is past the file's {} rows; the file has changed \
                     since the checkpoint was written — compare its fingerprint, and start the load again",
                    plan.total_rows
                ),
            ));
        }
        if start == plan.total_rows {
            return Ok(None);
        }
        if self.at.take() != Some(start) || self.inner.is_none() {
            self.inner = Some(Self::reader_at(common, plan, start)?);
        }
        let Some(inner) = self.inner.as_mut() else {
            unreachable!("set above")
        };
        let batch = match inner.next() {
            None => return Ok(None),
            Some(Err(e)) => {
                return Err(common.err(
                    None,
                    None,
                    format!("cannot decode rows from row {start} on: {e}"),
                ))
            }
            Some(Ok(batch)) => batch,
        };
        let record = start + batch.num_rows() as u64;
        self.at = Some(record);
        let byte = estimate(common.size, record, plan.total_rows);
        Ok(Some(FilesBatch {
            batch,
            bytes: byte - estimate(common.size, start, plan.total_rows),
            last: record >= plan.total_rows,
            next: FilePosition {
                byte,
                line: 0,
                record,
            },
        }))
    }
}
