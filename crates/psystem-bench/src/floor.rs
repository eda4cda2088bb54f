//! The floor of the release-load benchmark: how fast the PostgreSQL server itself ingests the release's rows,
//! with no client in the way.
//!
//! [`encode_release`] reads the Parquet files of one dataset of a release folder (`output/<dataset>/*.parquet`,
//! in name order), flattens every batch as psystem's load does (`psystem_core::flatten::flatten_batch`, depth 1,
//! separator `_`: the generated release becomes `id, name, description, score, location_chromosome,
//! location_start, location_end, synonyms`) and encodes the rows with psystem's own binary COPY encoder
//! (`psystem_postgres::CopyEncoder`) into ONE file in PostgreSQL's binary COPY format (header, tuples, trailer),
//! readable by every user (mode 0644) so that the server process can open it.
//!
//! [`run_floor`] then creates an unindexed table with the column types psystem would choose
//! (`psystem_postgres::pg_type`) and times only `COPY <table> FROM '<file>' (FORMAT binary)`, executed by the
//! server (this needs a superuser or a member of `pg_read_server_files`, and the file on the server's machine).
//! Each run starts from an empty table (`TRUNCATE`) after a `CHECKPOINT`; the best run is the floor.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_schema::SchemaRef;
use bytes::BytesMut;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use psystem_core::flatten::{flatten_batch, FlattenError, FlattenOptions};
use psystem_postgres::{pg_type, quote_ident, CopyEncoder, DestinationError};
use sqlx::{Connection, Executor, PgConnection};

/// Rows per record batch read from Parquet.
const READ_BATCH_ROWS: usize = 8192;
/// Encoded bytes buffered before they are written to the COPY file.
const FLUSH_BYTES: usize = 4 << 20;

/// Why the floor could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// The dataset folder has no `.parquet` file.
    #[error("no .parquet files in {0}")]
    NoFiles(PathBuf),
    /// Two files (or batches) of the dataset flatten to different schemas.
    #[error("{path}: flattened schema {found} differs from the first file's {expected}")]
    SchemaMismatch {
        /// The file whose schema differs.
        path: PathBuf,
        /// The first file's flattened schema.
        expected: String,
        /// This file's flattened schema.
        found: String,
    },
    /// Reading a folder or writing the COPY file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A Parquet file could not be read.
    #[error("{path}: reading Parquet: {source}")]
    Parquet {
        /// The Parquet file.
        path: PathBuf,
        /// The reader's error.
        source: ParquetError,
    },
    /// A batch could not be flattened.
    #[error("{path}: flattening: {source}")]
    Flatten {
        /// The Parquet file.
        path: PathBuf,
        /// The flattening error.
        source: FlattenError,
    },
    /// A column has no PostgreSQL type, or a value cannot be encoded.
    #[error("{path}: encoding binary COPY: {source}")]
    Encode {
        /// The Parquet file.
        path: PathBuf,
        /// psystem's encoder error (boxed: it is large).
        source: Box<DestinationError>,
    },
    /// The server refused a statement (connecting, `CREATE TABLE`, `COPY`, …).
    #[error("{what}: {source}")]
    Database {
        /// What was being done, with the statement.
        what: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// `COPY` reported another number of rows than were encoded.
    #[error("COPY loaded {loaded} rows, but {encoded} were encoded")]
    RowCount {
        /// Rows encoded into the file.
        encoded: u64,
        /// Rows the server reported.
        loaded: u64,
    },
}

/// What [`encode_release`] wrote.
#[derive(Debug, Clone)]
pub struct EncodedRelease {
    /// The Parquet files read, in order.
    pub files: Vec<PathBuf>,
    /// The flattened schema (the columns of the COPY file, in order).
    pub schema: SchemaRef,
    /// Rows encoded.
    pub rows: u64,
    /// The binary COPY file.
    pub copy_file: PathBuf,
    /// Its size in bytes.
    pub copy_bytes: u64,
    /// Wall time of read + flatten + encode + write, seconds.
    pub seconds: f64,
}

/// The `.parquet` files of `<release_dir>/output/<dataset>/`, sorted by name (side files such as `_SUCCESS`
/// and `.crc` are skipped). Errors: [`FloorError::Io`] for an unreadable folder, [`FloorError::NoFiles`].
pub fn dataset_files(release_dir: &Path, dataset: &str) -> Result<Vec<PathBuf>, FloorError> {
    let dir = release_dir.join("output").join(dataset);
    let io_err = |source| FloorError::Io {
        path: dir.clone(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        if path.extension().is_some_and(|e| e == "parquet") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(FloorError::NoFiles(dir));
    }
    Ok(files)
}

/// The flattening psystem applies to Open Targets datasets: depth 1, separator `_`.
pub fn flatten_options() -> FlattenOptions {
    FlattenOptions {
        depth: 1,
        separator: "_".into(),
    }
}

/// Reads, flattens and encodes every row of `<release_dir>/output/<dataset>/*.parquet` into one binary COPY
/// file at `copy_file` (replaced if it exists; mode 0644). Memory stays bounded: one record batch of 8,192 rows
/// and 4 MiB of encoded bytes at a time.
///
/// Errors: those of [`dataset_files`], [`FloorError::Parquet`], [`FloorError::Flatten`],
/// [`FloorError::Encode`], [`FloorError::SchemaMismatch`], [`FloorError::Io`] for the COPY file.
pub fn encode_release(
    release_dir: &Path,
    dataset: &str,
    copy_file: &Path,
) -> Result<EncodedRelease, FloorError> {
    let started = Instant::now();
    let files = dataset_files(release_dir, dataset)?;
    let out_err = |source| FloorError::Io {
        path: copy_file.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(copy_file)
        .map_err(out_err)?;
    fs::set_permissions(copy_file, fs::Permissions::from_mode(0o644)).map_err(out_err)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut buf = BytesMut::with_capacity(FLUSH_BYTES + (1 << 20));
    CopyEncoder::write_header(&mut buf);
    let options = flatten_options();
    let mut schema: Option<SchemaRef> = None;
    let mut rows = 0u64;
    for path in &files {
        let pq_err = |source| FloorError::Parquet {
            path: path.clone(),
            source,
        };
        let input = File::open(path).map_err(|source| FloorError::Io {
            path: path.clone(),
            source,
        })?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(input)
            .map_err(pq_err)?
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(pq_err)?;
        for batch in reader {
            let batch = batch.map_err(|e| pq_err(ParquetError::from(e)))?;
            let flat = flatten_batch(&batch, &options).map_err(|source| FloorError::Flatten {
                path: path.clone(),
                source,
            })?;
            match &schema {
                None => {
                    for field in flat.schema().fields() {
                        pg_type(field).map_err(|source| FloorError::Encode {
                            path: path.clone(),
                            source: Box::new(source),
                        })?;
                    }
                    schema = Some(flat.schema());
                }
                Some(s) if s.fields() != flat.schema().fields() => {
                    return Err(FloorError::SchemaMismatch {
                        path: path.clone(),
                        expected: s.to_string(),
                        found: flat.schema().to_string(),
                    })
                }
                Some(_) => {}
            }
            let encode_err = |source| FloorError::Encode {
                path: path.clone(),
                source: Box::new(source),
            };
            let encoder = CopyEncoder::new(&flat).map_err(encode_err)?;
            encoder
                .write_rows(0..flat.num_rows(), &mut buf)
                .map_err(encode_err)?;
            rows += flat.num_rows() as u64;
            if buf.len() >= FLUSH_BYTES {
                out.write_all(&buf).map_err(out_err)?;
                buf.clear();
            }
        }
    }
    CopyEncoder::write_trailer(&mut buf);
    out.write_all(&buf).map_err(out_err)?;
    let file = out.into_inner().map_err(|e| out_err(e.into_error()))?;
    file.sync_all().map_err(out_err)?;
    let copy_bytes = file.metadata().map_err(out_err)?.len();
    let schema =
        schema.ok_or_else(|| FloorError::NoFiles(release_dir.join("output").join(dataset)))?;
    Ok(EncodedRelease {
        files,
        schema,
        rows,
        copy_file: copy_file.to_path_buf(),
        copy_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// How [`run_floor`] measures.
#[derive(Debug, Clone)]
pub struct FloorSpec {
    /// The database URL; the user must be allowed to `COPY … FROM` a server file (superuser or
    /// `pg_read_server_files`) and to `CHECKPOINT` (superuser or, from PostgreSQL 15, `pg_checkpoint`).
    pub db_url: String,
    /// The table to create (dropped first if it exists), in the connection's default schema.
    pub table: String,
    /// How many timed COPY runs (≥ 1); the best counts.
    pub runs: usize,
    /// Keep the table (holding the last run's rows) instead of dropping it at the end.
    pub keep_table: bool,
    /// Also time `ALTER TABLE … ADD PRIMARY KEY (<these columns>)` after each run's COPY: the keyed floor, the
    /// same end state as a first load with a primary key (the key is dropped again before the next run).
    pub primary_key: Vec<String>,
}

/// The floor's measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FloorResult {
    /// Rows per run (checked against the server's `COPY n`).
    pub rows: u64,
    /// Seconds of each run's `COPY`, in run order.
    pub run_seconds: Vec<f64>,
    /// The best (shortest) run, seconds.
    pub best_seconds: f64,
    /// `rows / best_seconds`.
    pub rows_per_s: f64,
    /// `SHOW server_version`.
    pub server_version: String,
    /// `pg_total_relation_size` of the table after the last run, bytes.
    pub table_bytes: i64,
    /// With [`FloorSpec::primary_key`]: seconds of each run's COPY + ADD PRIMARY KEY, in run order.
    pub keyed_run_seconds: Vec<f64>,
    /// The best keyed run, seconds (`None` without a primary key).
    pub keyed_best_seconds: Option<f64>,
    /// `rows / keyed_best_seconds`.
    pub keyed_rows_per_s: Option<f64>,
}

/// Creates the unindexed table for `encoded.schema` and times `COPY <table> FROM '<copy_file>' (FORMAT binary)`
/// `spec.runs` times (TRUNCATE and CHECKPOINT before each run; only the COPY statement is timed).
///
/// Errors: [`FloorError::Database`] naming the statement (no connection, no permission to read server files,
/// a file the server cannot see, …); [`FloorError::RowCount`] when the server loads another number of rows.
pub async fn run_floor(
    spec: &FloorSpec,
    encoded: &EncodedRelease,
) -> Result<FloorResult, FloorError> {
    let db = |what: String| move |source| FloorError::Database { what, source };
    let mut conn = PgConnection::connect(&spec.db_url)
        .await
        .map_err(db(format!(
            "connecting to {}",
            psystem_postgres::redact_url(&spec.db_url)
        )))?;
    let server_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .map_err(db("SHOW server_version".into()))?;
    let table = quote_ident(&spec.table);
    let mut columns = Vec::new();
    for field in encoded.schema.fields() {
        let ty = pg_type(field).map_err(|source| FloorError::Encode {
            path: encoded.copy_file.clone(),
            source: Box::new(source),
        })?;
        columns.push(format!("{} {ty}", quote_ident(field.name())));
    }
    let ddl = format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({})",
        columns.join(", ")
    );
    conn.execute(ddl.as_str()).await.map_err(db(ddl.clone()))?;
    let copy = format!(
        "COPY {table} FROM '{}' (FORMAT binary)",
        encoded.copy_file.display().to_string().replace('\'', "''")
    );
    let mut run_seconds = Vec::new();
    let mut keyed_run_seconds = Vec::new();
    let key_columns = spec
        .primary_key
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let constraint = quote_ident(&format!("{}_floor_pkey", spec.table));
    let add_key =
        format!("ALTER TABLE {table} ADD CONSTRAINT {constraint} PRIMARY KEY ({key_columns})");
    let drop_key = format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {constraint}");
    let result = async {
        for run in 0..spec.runs.max(1) {
            let prepare = if spec.primary_key.is_empty() {
                format!("TRUNCATE {table}; CHECKPOINT")
            } else {
                format!("{drop_key}; TRUNCATE {table}; CHECKPOINT")
            };
            conn.execute(prepare.as_str())
                .await
                .map_err(db(prepare.clone()))?;
            let started = Instant::now();
            let done = conn
                .execute(copy.as_str())
                .await
                .map_err(db(copy.clone()))?;
            let seconds = started.elapsed().as_secs_f64();
            if done.rows_affected() != encoded.rows {
                return Err(FloorError::RowCount {
                    encoded: encoded.rows,
                    loaded: done.rows_affected(),
                });
            }
            tracing::info!(run, seconds, rows = encoded.rows, "floor COPY run");
            run_seconds.push(seconds);
            if !spec.primary_key.is_empty() {
                conn.execute(add_key.as_str())
                    .await
                    .map_err(db(add_key.clone()))?;
                let keyed = started.elapsed().as_secs_f64();
                tracing::info!(run, seconds = keyed, "floor COPY + primary key run");
                keyed_run_seconds.push(keyed);
            }
        }
        let size = format!(
            "SELECT pg_total_relation_size('{}')",
            table.replace('\'', "''")
        );
        let table_bytes: i64 = sqlx::query_scalar(&size)
            .fetch_one(&mut conn)
            .await
            .map_err(db(size.clone()))?;
        Ok(table_bytes)
    }
    .await;
    if !spec.keep_table || result.is_err() {
        let drop = format!("DROP TABLE IF EXISTS {table}");
        if let Err(e) = conn.execute(drop.as_str()).await {
            tracing::warn!(error = %e, "could not drop the floor table");
        }
    }
    let _ = conn.close().await;
    let table_bytes = result?;
    let best_seconds = run_seconds.iter().copied().fold(f64::INFINITY, f64::min);
    let keyed_best_seconds = keyed_run_seconds.iter().copied().reduce(f64::min);
    Ok(FloorResult {
        rows: encoded.rows,
        rows_per_s: encoded.rows as f64 / best_seconds,
        run_seconds,
        best_seconds,
        server_version,
        table_bytes,
        keyed_rows_per_s: keyed_best_seconds.map(|s| encoded.rows as f64 / s),
        keyed_run_seconds,
        keyed_best_seconds,
    })
}
