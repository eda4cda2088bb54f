//! A downloaded Parquet data file as record batches ready for COPY: Hive partition values added as text columns,
//! structs flattened ([`psystem_core::flatten`]), every batch in the dataset's one schema.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use psystem_core::flatten::{flatten_batch, flatten_schema, FlattenOptions};
use psystem_sources::parquet_read::reader_builder;
use tokio::sync::mpsc;

use crate::ReleaseError;

/// Rows per record batch read from Parquet (one COPY chunk).
pub const BATCH_ROWS: usize = 8192;

/// Batches in flight between the reading thread and the COPY (bounds memory: at most this many + 2 batches).
const CHANNEL_BATCHES: usize = 2;

/// An error crossing into the load path (the COPY stream takes boxed errors).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The schemas of a dataset: as read (file columns + partition columns) and as loaded (flattened).
#[derive(Debug, Clone)]
pub struct DatasetSchema {
    /// The dataset's name (for errors).
    pub dataset: String,
    /// The file schema with the partition columns appended (Utf8), before flattening.
    pub source: SchemaRef,
    /// The flattened schema: the table's columns.
    pub flat: SchemaRef,
    /// The partition keys appended to [`DatasetSchema::source`] (those not already file columns).
    pub partition_keys: Vec<String>,
    /// The flattening options.
    pub flatten: FlattenOptions,
    /// The file the schema was read from (release path), named when another file differs; see
    /// [`DatasetSchema::with_origin`].
    pub origin: Option<String>,
}

impl DatasetSchema {
    /// Builds the dataset's schemas from one file's Arrow schema (e.g. [`crate::footer::FooterSummary::schema`]).
    ///
    /// Errors: [`ReleaseError::Flatten`] when flattened names collide.
    pub fn new(
        dataset: &str,
        file_schema: &Schema,
        partition_keys: &[String],
        flatten: &FlattenOptions,
    ) -> Result<DatasetSchema, ReleaseError> {
        let mut fields: Vec<Arc<Field>> = file_schema.fields().iter().cloned().collect();
        let mut added = Vec::new();
        for key in partition_keys {
            if file_schema.field_with_name(key).is_err() {
                fields.push(Arc::new(Field::new(key, DataType::Utf8, true)));
                added.push(key.clone());
            }
        }
        let source = Arc::new(Schema::new(fields));
        let flat = flatten_schema(&source, flatten).map_err(|e| ReleaseError::Flatten {
            path: dataset.to_string(),
            detail: e.to_string(),
        })?;
        Ok(DatasetSchema {
            dataset: dataset.to_string(),
            source,
            flat,
            partition_keys: added,
            flatten: flatten.clone(),
            origin: None,
        })
    }

    /// Records `path` (release-relative) as the file the schema was read from, for error messages.
    pub fn with_origin(mut self, path: &str) -> DatasetSchema {
        self.origin = Some(path.to_string());
        self
    }

    /// Checks that a file of the dataset (`file`: its Arrow schema, e.g. from its footer; `shown`: its release
    /// path) has the dataset's columns, in the same order, with the same types (nullability may differ).
    ///
    /// Errors: [`ReleaseError::SchemaConflict`] naming both files, every column that differs and both its types.
    pub fn check_file(&self, file: &Schema, shown: &str) -> Result<(), ReleaseError> {
        check_file_schema(file, self, shown)
    }
}

/// Reads one local Parquet file as flattened record batches of the dataset's schema.
///
/// `shown` names the file in errors (its release path); `partitions` are its Hive partition values.
/// INT96 timestamps are read as exact microseconds ([`psystem_sources::parquet_read`]).
///
/// Errors: [`ReleaseError::Parquet`] for an unreadable or truncated file, or one whose footer's row count is not
/// its row groups' (naming it and both counts); [`ReleaseError::SchemaConflict`] when its columns differ from the
/// dataset's.
pub fn read_file(
    local: &Path,
    shown: &str,
    partitions: &[(String, String)],
    schema: &DatasetSchema,
) -> Result<impl Iterator<Item = Result<RecordBatch, ReleaseError>>, ReleaseError> {
    let parquet_err = |e: &dyn std::fmt::Display| ReleaseError::Parquet {
        path: shown.to_string(),
        detail: e.to_string(),
    };
    let file = File::open(local).map_err(|source| ReleaseError::Io {
        path: local.display().to_string(),
        source,
    })?;
    let builder = reader_builder(file).map_err(|e| parquet_err(&e))?;
    check_file_schema(builder.schema(), schema, shown)?;
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| parquet_err(&e))?;
    let schema = schema.clone();
    let shown = shown.to_string();
    let values: Vec<String> = schema
        .partition_keys
        .iter()
        .map(|k| {
            partitions
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect();
    Ok(reader.map(move |batch| {
        let batch = batch.map_err(|e| ReleaseError::Parquet {
            path: shown.clone(),
            detail: e.to_string(),
        })?;
        let n = batch.num_rows();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for v in &values {
            columns.push(Arc::new(StringArray::from_iter_values(
                std::iter::repeat_n(v.as_str(), n),
            )));
        }
        let batch = RecordBatch::try_new(schema.source.clone(), columns).map_err(|e| {
            ReleaseError::SchemaConflict {
                dataset: schema.dataset.clone(),
                path: shown.clone(),
                first: schema
                    .origin
                    .clone()
                    .unwrap_or_else(|| "the dataset's first file".to_string()),
                detail: e.to_string(),
            }
        })?;
        flatten_batch(&batch, &schema.flatten).map_err(|e| ReleaseError::Flatten {
            path: shown.clone(),
            detail: e.to_string(),
        })
    }))
}

/// The file's columns must be the dataset's, in the same order, with the same types (nullability may differ).
fn check_file_schema(
    file: &Schema,
    dataset: &DatasetSchema,
    shown: &str,
) -> Result<(), ReleaseError> {
    let own = dataset.source.fields().len() - dataset.partition_keys.len();
    let expected = &dataset.source.fields()[..own];
    let same = file.fields().len() == own
        && file
            .fields()
            .iter()
            .zip(expected.iter())
            .all(|(f, d)| f.name() == d.name() && types_match(f.data_type(), d.data_type()));
    if same {
        return Ok(());
    }
    let first = dataset
        .origin
        .clone()
        .unwrap_or_else(|| "the dataset's first file".to_string());
    let short = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let (a, b) = (short(&first), short(shown));
    let mut differences = Vec::new();
    for d in expected {
        match file.fields().iter().find(|f| f.name() == d.name()) {
            Some(f) if !types_match(f.data_type(), d.data_type()) => differences.push(format!(
                "column {} is {} in {a} but {} in {b}",
                d.name(),
                d.data_type(),
                f.data_type()
            )),
            Some(_) => {}
            None => differences.push(format!(
                "column {} ({}) is in {a} but not in {b}",
                d.name(),
                d.data_type()
            )),
        }
    }
    for f in file.fields() {
        if !expected.iter().any(|d| d.name() == f.name()) {
            differences.push(format!(
                "column {} ({}) is in {b} but not in {a}",
                f.name(),
                f.data_type()
            ));
        }
    }
    if differences.is_empty() {
        let names = |fields: &mut dyn Iterator<Item = &String>| {
            fields.map(String::as_str).collect::<Vec<_>>().join(", ")
        };
        differences.push(format!(
            "the same columns in another order ({a}: {}; {b}: {})",
            names(&mut expected.iter().map(|f| f.name())),
            names(&mut file.fields().iter().map(|f| f.name()))
        ));
    }
    Err(ReleaseError::SchemaConflict {
        dataset: dataset.dataset.clone(),
        path: shown.to_string(),
        first,
        detail: differences.join("; "),
    })
}

/// Data types equal up to the nullability and metadata of nested fields.
fn types_match(a: &DataType, b: &DataType) -> bool {
    a.equals_datatype(b)
}

/// Runs [`read_file`] on a blocking thread and returns its batches as a stream for the COPY, at most a few
/// batches ahead (bounded memory). The stream ends after the last batch or after the first error.
pub fn stream_file(
    local: PathBuf,
    shown: String,
    partitions: Vec<(String, String)>,
    schema: DatasetSchema,
) -> mpsc::Receiver<Result<RecordBatch, BoxError>> {
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    std::thread::spawn(
        move || match read_file(&local, &shown, &partitions, &schema) {
            Err(e) => {
                let _ = tx.blocking_send(Err(Box::new(e) as BoxError));
            }
            Ok(batches) => {
                for batch in batches {
                    let failed = batch.is_err();
                    if tx
                        .blocking_send(batch.map_err(|e| Box::new(e) as BoxError))
                        .is_err()
                        || failed
                    {
                        break;
                    }
                }
            }
        },
    );
    rx
}
