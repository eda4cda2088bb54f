//! `--dry-run`: the whole pipeline (source, transform, ID cache look-ups) without writing to the destination.
//!
//! Reports, per table, the rows that would be inserted, updated and deleted and the target IDs that would be newly
//! assigned (see [`psystem_postgres::dryrun`] for how they are counted), and with `--output DIR` writes what would
//! be loaded to `DIR/<table>.parquet` (or `.csv`; list columns are written there as JSON arrays).

use crate::runner::{JobError, JobSpec};
use crate::source::OpenSource;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use psystem_postgres::dryrun::{DryRun, DryRunReport};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file format of `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Apache Parquet (snappy), every type kept.
    #[default]
    Parquet,
    /// CSV with a header; list columns as JSON arrays.
    Csv,
}

pub(crate) enum Writer {
    Parquet(parquet::arrow::ArrowWriter<File>),
    Csv(arrow_csv::Writer<File>),
}

/// Runs a job as a dry run; writes the pages to `output` (a folder, created if missing) when given.
///
/// # Errors
/// Source, transform and destination errors (the database is left as it was in every case), and I/O errors of the
/// output file.
/// `pending` carries, per entity, the keys earlier entries of the same dry run would have given new IDs; this
/// entry's are added to it.
pub async fn dry_run(
    spec: &JobSpec,
    output: Option<(&Path, OutputFormat)>,
    pending: &mut HashMap<String, HashSet<String>>,
) -> Result<(DryRunReport, Option<PathBuf>), JobError> {
    let key = spec.key();
    let mut source = OpenSource::open(&spec.source, None)
        .await
        .map_err(|source| JobError::Source { page: 1, source })?;
    let schema = spec.load_schema(&source.schema())?;
    let load_spec = spec.load_spec(schema, None);
    let mut dry = DryRun::start(&spec.destination_url, load_spec, pending.clone()).await?;
    let mut writer: Option<(Writer, PathBuf)> = None;
    let mut position: Option<serde_json::Value> = None;
    let mut page = 0;
    loop {
        page += 1;
        let Some(read) = source
            .read(position.as_ref())
            .await
            .map_err(|source| JobError::Source { page, source })?
        else {
            break;
        };
        let batch = spec
            .columns
            .apply(&read.batch)
            .map_err(|source| JobError::Transform {
                job: key.clone(),
                source,
            })?;
        let loaded = dry.add_page(&batch).await?;
        if let Some((dir, format)) = output {
            if writer.is_none() {
                writer = Some(open_writer(dir, format, &spec.table.name, &loaded)?);
            }
            if let Some((w, path)) = writer.as_mut() {
                write(w, &loaded).map_err(|e| io_error(path, e))?;
            }
        }
        position = Some(read.next);
        if read.last {
            break;
        }
    }
    let (report, new_keys) = dry.finish().await?;
    if let Some(entity) = spec.ids.as_ref().and_then(|p| p.entity.as_ref()) {
        pending
            .entry(entity.entity.clone())
            .or_default()
            .extend(new_keys);
    }
    let written = match writer {
        Some((Writer::Parquet(w), path)) => {
            w.close().map_err(|e| io_error(&path, e.to_string()))?;
            Some(path)
        }
        Some((Writer::Csv(w), path)) => {
            drop(w);
            Some(path)
        }
        None => None,
    };
    Ok((report, written))
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> JobError {
    JobError::Setup(format!("{}: {e}", path.display()))
}

pub(crate) fn open_writer(
    dir: &Path,
    format: OutputFormat,
    table: &str,
    first: &RecordBatch,
) -> Result<(Writer, PathBuf), JobError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let safe: String = table
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match format {
        OutputFormat::Parquet => {
            let path = dir.join(format!("{safe}.parquet"));
            let file = File::create(&path).map_err(|e| io_error(&path, e))?;
            let w = parquet::arrow::ArrowWriter::try_new(file, first.schema(), None)
                .map_err(|e| io_error(&path, e))?;
            Ok((Writer::Parquet(w), path))
        }
        OutputFormat::Csv => {
            let path = dir.join(format!("{safe}.csv"));
            let file = File::create(&path).map_err(|e| io_error(&path, e))?;
            Ok((
                Writer::Csv(
                    arrow_csv::WriterBuilder::new()
                        .with_header(true)
                        .build(file),
                ),
                path,
            ))
        }
    }
}

/// Writes `batch` to the output file `path`.
pub(crate) fn write_batch(
    w: &mut Writer,
    path: &Path,
    batch: &RecordBatch,
) -> Result<(), JobError> {
    write(w, batch).map_err(|e| io_error(path, e))
}

/// Finishes the output file (the Parquet footer); returns its path.
pub(crate) fn close_writer((w, path): (Writer, PathBuf)) -> Result<PathBuf, JobError> {
    match w {
        Writer::Parquet(w) => {
            w.close().map_err(|e| io_error(&path, e.to_string()))?;
        }
        Writer::Csv(w) => drop(w),
    }
    Ok(path)
}

fn write(w: &mut Writer, batch: &RecordBatch) -> Result<(), String> {
    match w {
        Writer::Parquet(w) => w.write(batch).map_err(|e| e.to_string()),
        Writer::Csv(w) => w.write(&lists_as_json(batch)).map_err(|e| e.to_string()),
    }
}

/// CSV has no lists: list columns become JSON array text.
fn lists_as_json(batch: &RecordBatch) -> RecordBatch {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if let DataType::List(_) = f.data_type() {
            let list = c.as_list::<i32>();
            let texts: Vec<Option<String>> = (0..list.len())
                .map(|i| {
                    (!list.is_null(i)).then(|| {
                        let items = list.value(i);
                        let strings: Vec<Option<String>> = match items.data_type() {
                            DataType::Utf8 => items
                                .as_string::<i32>()
                                .iter()
                                .map(|s| s.map(str::to_string))
                                .collect(),
                            _ => Vec::new(),
                        };
                        serde_json::to_string(&strings).unwrap_or_default()
                    })
                })
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from(texts)));
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or_else(|_| batch.clone())
}
