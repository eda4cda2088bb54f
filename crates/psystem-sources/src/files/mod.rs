//! Tables in files — CSV, TSV, JSON Lines and Parquet, local or downloaded over HTTP — as Arrow
//! record batches, read page by page and resumable from a [`FilePosition`].
//!
//! A [`FilesSource`] is opened from a [`FilesConfig`]: it locates the file (a local path, a
//! `file://` URL, or an `http(s)://` URL downloaded once into [`FilesConfig::cache_dir`]),
//! fingerprints it ([`FileFingerprint`]: size, modification time, SHA-256), works out its format,
//! reads the header and a sample of the first [`SAMPLE_ROWS`] data rows to settle the schema, and
//! reports how each column was typed ([`FilesSource::inference`], one [`ColumnReport`] each).
//! [`FilesSource::read_batch`] then returns up to [`FilesConfig::batch_rows`] rows at a time — one
//! page, one checkpoint — together with the [`FilePosition`] where the next batch starts. That
//! position is what a job stores as its checkpoint; reading from it yields exactly the rows after
//! it, in a new process too.
//!
//! # Formats
//! [`FilesConfig::format`] wins; else the extension decides (`.csv`, `.tsv`/`.tab`,
//! `.parquet`/`.pq`, `.jsonl`/`.ndjson`; `.txt` is a delimited file whose delimiter is detected);
//! else the content is sniffed (`PAR1` → Parquet, a first `{` → JSON Lines, else delimited).
//! Compressed files (`.gz`, `.zip`, …) are refused with a message to decompress them first.
//! Text must be UTF-8 (a BOM at the start is skipped); other encodings stop with an error naming
//! the line and column and how to convert the file.
//!
//! ## CSV and TSV
//! * The delimiter is [`FilesConfig::delimiter`], else detected from the first lines among
//!   `,` `\t` `;` `|`: the candidate that splits every sampled row into the same number (≥ 2) of
//!   fields, preferring the format's own (`,` for CSV, tab for TSV).
//! * Quoted cells (quote [`FilesConfig::quote`], `"` by default, doubled to escape) may hold
//!   delimiters and line breaks. Line ends are `\n`, `\r\n` or `\r`; blank lines are skipped.
//!   A quote that is never closed (it would swallow the rest of the file into one cell) is an
//!   error naming the line where it opened.
//! * [`FilesConfig::skip_rows`] rows are skipped first; then, with [`FilesConfig::header`], the
//!   next row names the columns: names are trimmed, an empty one becomes `column_<n>` (`n` = the
//!   1-based position in the row), a repeated one gets `_2`, `_3`, … (both reported in
//!   [`ColumnReport::renamed`]). Without a header the columns are `column_1`, `column_2`, ….
//! * Every row must have as many fields as the header (or the first row); a ragged row is an error
//!   naming the file and line — after the ignore rules below, so a marked row may be ragged.
//!
//! ### The Kids First `[ignore]` convention
//! The Kids First data ingest library (kids-first/kf-lib-data-ingest) lets study submitters mark
//! parts of a spreadsheet that are not data by writing `[ignore]` into cells: a row whose every
//! non-empty cell is the marker (e.g. a row of notes above the header) is skipped, and a column
//! whose header cell is the marker is dropped. psystem follows it with
//! [`FilesConfig::ignore_marker`] (default [`DEFAULT_IGNORE_MARKER`]; `None` turns it off). Cells
//! are trimmed before the comparison.
//!
//! ## JSON Lines
//! One JSON object per line (blank lines skipped). Columns are the keys in order of first
//! appearance in the sample; keys first seen after the sample are not loaded (a warning is logged
//! once per key). Arrays and objects are kept as JSON text (Utf8) for now, unless the column is
//! multi-valued (an array of strings becomes the list).
//!
//! ## Parquet
//! Types come from the file; [`FilesConfig::casts`] and [`FilesConfig::multi_valued`] are refused.
//! Positions count rows ([`FilePosition::record`]). INT96 timestamps are read as exact
//! microseconds, and a file whose footer's row count is not its row groups' is refused
//! ([`crate::parquet_read`]).
//!
//! # Types
//! A column's type is, in this order: a list of text if it is in [`FilesConfig::multi_valued`]
//! (the cell is split on the given delimiter, parts trimmed, empty parts dropped); the type
//! declared in [`FilesConfig::casts`]; text when [`FilesConfig::infer_types`] is off; else inferred
//! from the sample's non-empty values, the first of these that every value fits:
//!
//! | type | values (trimmed) |
//! |---|---|
//! | `int64` | `-12`, `0`, `435` — no leading zero (`007` stays text, identifiers keep their zeros) |
//! | `float64` | `3.0`, `0.1666`, `1e-3` — no `NaN`/`inf` |
//! | `bool` | `true`/`false`/`yes`/`no`, any case (not `1`/`0`: those are integers) |
//! | `date` | `YYYY-MM-DD` |
//! | `timestamp` | RFC 3339 with an offset (`2013-06-11T14:01:25.3+02:00`), stored in UTC, microseconds |
//! | `text` | anything else, and a column without any value |
//!
//! JSON Lines infer from the JSON types instead (integers → `int64`, numbers → `float64`, booleans
//! → `bool`, strings → `date`/`timestamp` when every one fits, else `text`; mixed → `text`).
//!
//! Only empty cells (after trimming; for JSON: `null`, a missing key, `""`) are null — `NA`,
//! `N/A`, `null`, `None`, `na` are kept as text, so a numeric column holding them is text unless a
//! cast says otherwise (then they are errors). Text keeps the cell exactly, spaces included.
//! A declared type parses more leniently than inference: `int64` takes `007` and `3.0`, `float64`
//! takes `NaN`/`inf`, `bool` takes `1`/`0`, `timestamp` takes a timestamp without an offset (UTC).
//!
//! A value past the sample that does not fit the inferred type stops the read with a
//! [`SourceError::File`] naming the file, line, column and value, and asking to declare the
//! column's type in `casts`.
//!
//! # Positions
//! [`FilePosition`] is where the next batch starts: CSV/TSV and JSON Lines the byte offset of the
//! next record's first byte and its 1-based line; Parquet the row index (`byte` is then an
//! estimate, for progress only). `record` is the number of data rows before the position in every
//! format. A position is only meaningful for the file it came from: compare
//! [`FilesSource::fingerprint`] with the one stored beside the checkpoint before resuming.
//!
//! # Example
//! A configuration as it appears in a plugin manifest (YAML; every key but `path` optional):
//! ```yaml
//! path: data/family_and_phenotype.tsv   # or file:///…, or https://…
//! format: tsv                           # csv | tsv | parquet | jsonl; default: from the extension
//! delimiter: "\t"                       # default: detected among , \t ; |
//! header: true
//! skip_rows: 0
//! ignore_marker: "[ignore]"             # null turns the Kids First convention off
//! multi_valued: { specimens: "," }      # column → delimiter: a list of text
//! casts: { mother: text, "age (hrs)": int64 }
//! infer_types: true
//! batch_rows: 10000
//! cache_dir: /var/cache/psystem         # needed for http(s) paths
//! ```
//! ```no_run
//! use psystem_sources::files::{FilesConfig, FilesSource};
//!
//! # async fn run() -> Result<(), psystem_sources::SourceError> {
//! let mut config = FilesConfig::new("data/family_and_phenotype.tsv");
//! config.multi_valued.insert("specimens".into(), ",".into());
//! let mut source = FilesSource::open(config).await?;
//! for column in source.inference() {
//!     tracing::info!("{column}");
//! }
//! let mut position = None;
//! while let Some(page) = source.read_batch(position.as_ref()).await? {
//!     // … load page.batch, then store page.next as the checkpoint in the same transaction …
//!     position = Some(page.next);
//! }
//! # Ok(()) }
//! ```

mod columns;
mod delimited;
mod jsonl;
mod parquet_file;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::SourceError;

/// Default rows per batch ([`FilesConfig::batch_rows`]).
pub const DEFAULT_BATCH_ROWS: usize = 10_000;
/// Data rows read when opening a file to infer the column types.
pub const SAMPLE_ROWS: usize = 1000;
/// The Kids First marker of rows and columns that are not data ([`FilesConfig::ignore_marker`]).
pub const DEFAULT_IGNORE_MARKER: &str = "[ignore]";

/// Bytes read from the start of a file to detect its format and delimiter.
const HEAD_BYTES: usize = 64 * 1024;

/// The format of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Comma-separated values (the delimiter is detected unless given).
    Csv,
    /// Tab-separated values (the delimiter is detected unless given; tab preferred).
    Tsv,
    /// Apache Parquet.
    Parquet,
    /// JSON Lines: one JSON object per line.
    Jsonl,
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileFormat::Csv => "csv",
            FileFormat::Tsv => "tsv",
            FileFormat::Parquet => "parquet",
            FileFormat::Jsonl => "jsonl",
        })
    }
}

/// A column type that can be declared in [`FilesConfig::casts`] or inferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// Text (Arrow `Utf8`).
    Text,
    /// A 64-bit integer.
    Int64,
    /// A 64-bit floating point number.
    Float64,
    /// A boolean.
    Bool,
    /// A calendar date (Arrow `Date32`).
    Date,
    /// A point in time, microseconds, UTC (Arrow `Timestamp(Microsecond, "UTC")`).
    Timestamp,
}

impl ColumnType {
    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Text => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// What a value of this type looks like, for messages.
    fn describe(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Int64 => "an integer",
            ColumnType::Float64 => "a number",
            ColumnType::Bool => "a boolean (true/false/yes/no)",
            ColumnType::Date => "a date (YYYY-MM-DD)",
            ColumnType::Timestamp => "an RFC 3339 timestamp (e.g. 2013-06-11T14:01:25+02:00)",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Text => "text",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Bool => "bool",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
        })
    }
}

/// What to read and how (see the [module documentation](self) for the rules).
///
/// Deserialises from a manifest with every key but `path` optional; `delimiter` and `quote` are
/// one-character strings (`","`, `"\t"`, or `tab`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// A local path, a `file://` URL, or an `http(s)://` URL (downloaded once into `cache_dir`).
    pub path: String,
    /// The format; `None`: from the extension, else sniffed from the content.
    pub format: Option<FileFormat>,
    /// CSV/TSV field delimiter (ASCII); `None`: detected from the first lines among `,` `\t` `;` `|`.
    #[serde(with = "ascii_char")]
    pub delimiter: Option<u8>,
    /// CSV/TSV quote character (ASCII); `None`: `"`.
    #[serde(with = "ascii_char")]
    pub quote: Option<u8>,
    /// CSV/TSV: the first row (after `skip_rows` and ignored rows) names the columns. Default true.
    pub header: bool,
    /// CSV/TSV rows (records) skipped at the start, before the header. Default 0.
    pub skip_rows: usize,
    /// The Kids First marker (default `Some("[ignore]")`): a row whose every non-empty cell is the
    /// marker is skipped, a column whose header cell is the marker is dropped. `None`: off.
    pub ignore_marker: Option<String>,
    /// Column name → delimiter: the column is a list of text, its cells split on the delimiter,
    /// parts trimmed, empty parts dropped.
    pub multi_valued: BTreeMap<String, String>,
    /// Column name → declared type; wins over inference. Names are the final ones (after renaming
    /// duplicates, e.g. `age (hrs)_2`).
    pub casts: BTreeMap<String, ColumnType>,
    /// Infer column types from the sample (default true); false: every column not in `casts` or
    /// `multi_valued` is text.
    pub infer_types: bool,
    /// Rows per batch, i.e. per page and checkpoint. Default [`DEFAULT_BATCH_ROWS`].
    pub batch_rows: usize,
    /// Where `http(s)` files are downloaded (required for them).
    pub cache_dir: Option<PathBuf>,
}

impl Default for FilesConfig {
    /// An empty `path` (which [`FilesSource::open`] rejects: set it) and the defaults above.
    fn default() -> Self {
        FilesConfig {
            path: String::new(),
            format: None,
            delimiter: None,
            quote: None,
            header: true,
            skip_rows: 0,
            ignore_marker: Some(DEFAULT_IGNORE_MARKER.to_string()),
            multi_valued: BTreeMap::new(),
            casts: BTreeMap::new(),
            infer_types: true,
            batch_rows: DEFAULT_BATCH_ROWS,
            cache_dir: None,
        }
    }
}

impl FilesConfig {
    /// A configuration for `path` with every default.
    pub fn new(path: impl Into<String>) -> FilesConfig {
        FilesConfig {
            path: path.into(),
            ..FilesConfig::default()
        }
    }
}

/// `Option<u8>` as a one-character string (`"\t"`, `","`, or the word `tab`).
mod ascii_char {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&char::from(*b).to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        match s.as_str() {
            "tab" | "\\t" => Ok(Some(b'\t')),
            _ if s.len() == 1 && s.is_ascii() => Ok(Some(s.as_bytes()[0])),
            _ => Err(de::Error::custom(format!(
                "expected one ASCII character such as `,` or `\\t` (or the word tab), found `{s}`"
            ))),
        }
    }
}

/// Where a batch starts: stored as the job's checkpoint (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FilePosition {
    /// CSV/TSV, JSON Lines: byte offset of the next record's first byte. Parquet: an estimate
    /// (`size × record / rows`) for progress only, ignored when resuming.
    pub byte: u64,
    /// CSV/TSV, JSON Lines: the 1-based line at `byte` (1 + line feeds before it). Parquet: 0.
    pub line: u64,
    /// Data rows before this position (the 0-based index of the next data row); Parquet resumes
    /// from it.
    pub record: u64,
}

/// One batch (page) of rows.
#[derive(Debug, Clone)]
pub struct FilesBatch {
    /// The rows, with the schema of [`FilesSource::schema`]; at least one row.
    pub batch: RecordBatch,
    /// Where the next batch starts; store it as the checkpoint with these rows.
    pub next: FilePosition,
    /// Bytes of the file this batch covers: `next.byte` minus the starting position's byte (0 when
    /// the read started at the beginning, so the header is counted and the batches add up to the
    /// file's size). Parquet: prorated by rows.
    pub bytes: u64,
    /// Whether this is the last batch: no data row follows `next`.
    pub last: bool,
}

/// What identifies the contents of a file, to tell whether a checkpoint still applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, if the file system reports one.
    pub modified: Option<DateTime<Utc>>,
    /// SHA-256 of the contents, lowercase hex. Computed by reading the whole file once while
    /// opening (files are expected to be modest; a cheaper fingerprint may replace it for huge ones).
    pub sha256: String,
}

/// How a column's type was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeOrigin {
    /// Declared in [`FilesConfig::casts`].
    Declared,
    /// Inferred from the sample.
    Inferred,
    /// Text because [`FilesConfig::infer_types`] is off.
    NotInferred,
    /// A list of text: the column is in [`FilesConfig::multi_valued`].
    MultiValued,
    /// Declared by the file itself (Parquet).
    File,
}

/// Why a column's name differs from its header cell.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rename {
    /// The header repeats an earlier column's name `of`; a suffix `_2`, `_3`, … was added.
    Duplicate {
        /// The repeated name.
        of: String,
    },
    /// The header cell is empty: the column is `column_<n>`.
    Empty,
    /// The file has no header row ([`FilesConfig::header`] is false): the column is `column_<n>`.
    NoHeader,
}

/// The type inference report of one column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnReport {
    /// The column's name in the schema.
    pub name: String,
    /// The name in the file: the trimmed header cell (empty without a header), the JSON key, the
    /// Parquet field.
    pub source_name: String,
    /// 0-based position in the file (CSV/TSV field index, counting dropped `[ignore]` columns; JSON
    /// key order; Parquet field index).
    pub position: usize,
    /// The Arrow type in the schema.
    #[serde(serialize_with = "display_type")]
    pub data_type: DataType,
    /// How the type was chosen.
    pub origin: TypeOrigin,
    /// Why `name` differs from `source_name`, if it does.
    pub renamed: Option<Rename>,
    /// Data rows in the sample.
    pub sample_rows: u64,
    /// Sample rows with a value (not null) in this column.
    pub non_null: u64,
    /// The first value in the sample, at most 60 characters.
    pub example: Option<String>,
}

fn display_type<S: serde::Serializer>(t: &DataType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_string())
}

impl fmt::Display for ColumnReport {
    /// One line, e.g. `age (hrs)_2: Int64, inferred from 9 sample rows (9 non-null, e.g. "4");
    /// renamed: repeats "age (hrs)"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}, ", self.name, self.data_type)?;
        match self.origin {
            TypeOrigin::Declared => write!(f, "declared in casts")?,
            TypeOrigin::Inferred => write!(f, "inferred")?,
            TypeOrigin::NotInferred => write!(f, "text (type inference off)")?,
            TypeOrigin::MultiValued => write!(f, "multi-valued")?,
            TypeOrigin::File => write!(f, "from the file")?,
        }
        write!(
            f,
            "; {} of {} sample rows non-null",
            self.non_null, self.sample_rows
        )?;
        if let Some(example) = &self.example {
            write!(f, ", e.g. `{example}`")?;
        }
        match &self.renamed {
            Some(Rename::Duplicate { of }) => write!(f, "; renamed: repeats `{of}`")?,
            Some(Rename::Empty) => write!(
                f,
                "; renamed: empty header cell at position {}",
                self.position + 1
            )?,
            Some(Rename::NoHeader) => write!(f, "; named by position (no header row)")?,
            None => {}
        }
        Ok(())
    }
}

/// What never changes while a file is read.
#[derive(Debug)]
struct Common {
    /// The configured path or URL, password redacted, for messages.
    display: String,
    /// The local file read.
    path: PathBuf,
    /// Size at opening.
    size: u64,
    batch_rows: usize,
}

impl Common {
    fn err(
        &self,
        line: Option<u64>,
        column: Option<&str>,
        detail: impl Into<String>,
    ) -> SourceError {
        SourceError::File {
            path: self.display.clone(),
            line,
            column: column.map(str::to_string),
            detail: detail.into(),
        }
    }

    fn io(&self, what: &str, e: &std::io::Error) -> SourceError {
        self.err(None, None, format!("{what}: {e}"))
    }

    /// Where a read starts: `from` (checked to lie within the file's data), else the start of the data.
    fn start_position(
        &self,
        from: Option<&FilePosition>,
        data_start: &FilePosition,
    ) -> Result<FilePosition, SourceError> {
        match from {
            Some(p) => {
                self.check_position(p, data_start)?;
                Ok(p.clone())
            }
            None => Ok(data_start.clone()),
        }
    }

    /// Checks that a resume position lies within the file's data.
    fn check_position(
        &self,
        from: &FilePosition,
        data_start: &FilePosition,
    ) -> Result<(), SourceError> {
        if from.byte < data_start.byte || from.byte > self.size || from.line == 0 {
            return Err(self.err(
                None,
                None,
                format!(
                    "the position to resume from (byte {}, line {}) is outside the file's data (bytes {}..={}); \
                     the file has changed since the checkpoint was written — compare its fingerprint, and start the load again",
                    from.byte, from.line, data_start.byte, self.size
                ),
            ));
        }
        Ok(())
    }
}

/// The format-specific part of an open file.
#[derive(Debug)]
enum Plan {
    Delimited(delimited::Plan),
    Jsonl(jsonl::Plan),
    Parquet(parquet_file::Plan),
}

impl Plan {
    /// Where the data rows start (Parquet: row 0).
    fn data_start(&self) -> FilePosition {
        match self {
            Plan::Delimited(p) => p.data_start.clone(),
            Plan::Jsonl(p) => p.data_start.clone(),
            Plan::Parquet(_) => FilePosition {
                byte: 0,
                line: 0,
                record: 0,
            },
        }
    }
}

/// An open reader, kept between batches so that a read continuing where the last one stopped
/// needs no seek.
enum Reader {
    Delimited(Box<delimited::Reader>),
    Jsonl(Box<jsonl::Reader>),
    Parquet(Box<parquet_file::Reader>),
}

impl Reader {
    fn new(common: &Common, plan: &Plan) -> Result<Reader, SourceError> {
        Ok(match plan {
            Plan::Delimited(p) => Reader::Delimited(Box::new(delimited::Reader::new(common, p)?)),
            Plan::Jsonl(p) => Reader::Jsonl(Box::new(jsonl::Reader::new(common, p)?)),
            Plan::Parquet(p) => Reader::Parquet(Box::new(parquet_file::Reader::new(common, p))),
        })
    }

    fn read(
        &mut self,
        common: &Common,
        plan: &Plan,
        schema: &SchemaRef,
        from: Option<&FilePosition>,
    ) -> Result<Option<FilesBatch>, SourceError> {
        match (self, plan) {
            (Reader::Delimited(r), Plan::Delimited(p)) => r.read(common, p, schema, from),
            (Reader::Jsonl(r), Plan::Jsonl(p)) => r.read(common, p, schema, from),
            (Reader::Parquet(r), Plan::Parquet(p)) => r.read(common, p, from),
            _ => unreachable!("the reader is made from the plan"),
        }
    }
}

/// What a format's `open` settles.
struct Opened {
    plan: Plan,
    schema: SchemaRef,
    reports: Vec<ColumnReport>,
    format: FileFormat,
    delimiter: Option<u8>,
}

/// Reads one file batch by batch (see the [module documentation](self)).
pub struct FilesSource {
    common: Arc<Common>,
    plan: Arc<Plan>,
    schema: SchemaRef,
    reports: Vec<ColumnReport>,
    fingerprint: FileFingerprint,
    format: FileFormat,
    delimiter: Option<u8>,
    reader: Option<Reader>,
}

impl fmt::Debug for FilesSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilesSource")
            .field("path", &self.common.display)
            .field("format", &self.format)
            .field("delimiter", &self.delimiter.map(char::from))
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl FilesSource {
    /// Locates (downloading an `http(s)` file into `cache_dir` unless it is there already),
    /// fingerprints and opens the file, reads its header and a sample of up to [`SAMPLE_ROWS`]
    /// data rows, and settles the schema.
    ///
    /// # Errors
    /// * [`SourceError::Config`] — an invalid configuration: empty path, `batch_rows` 0, a
    ///   delimiter or quote that is not ASCII or is a line break, a column named in `casts` or
    ///   `multi_valued` that the file does not have (or in both), `casts`/`multi_valued` for
    ///   Parquet, an `http(s)` path without `cache_dir`;
    /// * [`SourceError::File`] — the file cannot be read, downloaded or decoded: missing,
    ///   compressed, not UTF-8, empty, a ragged row or bad JSON in the sample, not Parquet.
    pub async fn open(config: FilesConfig) -> Result<FilesSource, SourceError> {
        check_config(&config)?;
        let (path, display) = locate(&config).await?;
        let name_hint = config.path.clone();
        blocking(&display.clone(), move || {
            open_blocking(config, path, display, &name_hint)
        })
        .await?
    }

    /// The schema of every batch: the columns in file order, all nullable.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The type inference report: one entry per column of the schema, in order.
    pub fn inference(&self) -> &[ColumnReport] {
        &self.reports
    }

    /// The local file read (the download in `cache_dir` for an `http(s)` path).
    pub fn path(&self) -> &Path {
        &self.common.path
    }

    /// The file's fingerprint, computed while opening.
    pub fn fingerprint(&self) -> FileFingerprint {
        self.fingerprint.clone()
    }

    /// The format read (configured, from the extension, or sniffed).
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// The CSV/TSV delimiter used (configured or detected); `None` for JSON Lines and Parquet.
    pub fn delimiter(&self) -> Option<u8> {
        self.delimiter
    }

    /// Reads the batch starting at `from` (`None`: the first data row), up to
    /// [`FilesConfig::batch_rows`] rows; `Ok(None)` when no data row is left.
    ///
    /// Reading on from the `next` of the previous batch continues the open reader; any other
    /// position (a checkpoint from an earlier run) seeks straight to it.
    ///
    /// # Errors
    /// [`SourceError::File`] naming the file, line and column: a ragged row, a value that does
    /// not fit its column's type, invalid UTF-8 or JSON, an I/O error, or a position outside the
    /// file. After an error the next call seeks afresh.
    pub async fn read_batch(
        &mut self,
        from: Option<&FilePosition>,
    ) -> Result<Option<FilesBatch>, SourceError> {
        let reader = self.reader.take();
        let common = Arc::clone(&self.common);
        let plan = Arc::clone(&self.plan);
        let schema = Arc::clone(&self.schema);
        let from = from.cloned();
        let (reader, result) = blocking(&self.common.display, move || {
            let mut reader = match reader {
                Some(r) => r,
                None => match Reader::new(&common, &plan) {
                    Ok(r) => r,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = reader.read(&common, &plan, &schema, from.as_ref());
            (Some(reader), result)
        })
        .await?;
        self.reader = reader;
        result
    }

    /// Where row `row` (0-based) of the batch read from `from` (`None`: the first data row) is in the file, for
    /// messages about one of its values: `data.csv, line 3` (the 1-based line the row starts on) for CSV, TSV and
    /// JSON Lines, `data.parquet, row 7` (the 1-based data row) for Parquet. The rows before it are read again
    /// (the reader between batches is left alone); `None` when they cannot be.
    pub async fn place_of_row(
        &mut self,
        from: Option<&FilePosition>,
        row: usize,
    ) -> Option<String> {
        let plan = Arc::clone(&self.plan);
        let schema = Arc::clone(&self.schema);
        let common = Common {
            display: self.common.display.clone(),
            path: self.common.path.clone(),
            size: self.common.size,
            batch_rows: row.max(1),
        };
        let from = from.cloned();
        blocking(&self.common.display, move || {
            let start = from.clone().unwrap_or_else(|| plan.data_start());
            let at = if row == 0 || matches!(*plan, Plan::Parquet(_)) {
                FilePosition {
                    record: start.record + row as u64,
                    ..start
                }
            } else {
                let mut reader = Reader::new(&common, &plan).ok()?;
                let before = reader.read(&common, &plan, &schema, from.as_ref()).ok()??;
                if before.batch.num_rows() != row {
                    return None;
                }
                before.next
            };
            Some(match *plan {
                Plan::Parquet(_) => format!("{}, row {}", common.display, at.record + 1),
                _ => format!("{}, line {}", common.display, at.line),
            })
        })
        .await
        .ok()
        .flatten()
    }
}

/// Runs blocking file work off the async runtime's threads.
async fn blocking<T: Send + 'static>(
    display: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SourceError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(SourceError::File {
            path: display.to_string(),
            line: None,
            column: None,
            detail: format!("the read was cancelled ({e}); the runtime is shutting down"),
        }),
    }
}

fn config_err(detail: impl Into<String>) -> SourceError {
    SourceError::Config {
        detail: detail.into(),
    }
}

fn check_config(config: &FilesConfig) -> Result<(), SourceError> {
    if config.path.trim().is_empty() {
        return Err(config_err(
            "files: path is empty; set it to a file path or URL",
        ));
    }
    if config.batch_rows == 0 {
        return Err(config_err("files: batch_rows must be at least 1"));
    }
    for (what, c) in [("delimiter", config.delimiter), ("quote", config.quote)] {
        if let Some(c) = c {
            if !c.is_ascii() || c == b'\n' || c == b'\r' {
                return Err(config_err(format!(
                    "files: {what} `{}` must be one ASCII character other than a line break",
                    char::from(c).escape_default()
                )));
            }
        }
    }
    if config.delimiter.is_some() && config.delimiter == config.quote {
        return Err(config_err("files: delimiter and quote must differ"));
    }
    if config
        .ignore_marker
        .as_deref()
        .is_some_and(|m| m.trim().is_empty())
    {
        return Err(config_err(
            "files: ignore_marker is empty; give a marker such as \"[ignore]\", or null to turn it off",
        ));
    }
    for (column, delimiter) in &config.multi_valued {
        if delimiter.is_empty() {
            return Err(config_err(format!(
                "files: multi_valued `{column}` has an empty delimiter; give one such as `,`"
            )));
        }
        if config.casts.contains_key(column) {
            return Err(config_err(format!(
                "files: column `{column}` is both in multi_valued (a list of text) and in casts; keep one"
            )));
        }
    }
    Ok(())
}

/// Columns named in `casts` or `multi_valued` must exist.
fn check_columns(config: &FilesConfig, names: &[String]) -> Result<(), SourceError> {
    let missing: Vec<&String> = config
        .casts
        .keys()
        .chain(config.multi_valued.keys())
        .filter(|k| !names.contains(k))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(config_err(format!(
        "files: casts/multi_valued name column(s) {} that {} does not have; its columns are {}",
        missing
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", "),
        config.path,
        names
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// The local file to read and the name to show: downloads `http(s)` files.
async fn locate(config: &FilesConfig) -> Result<(PathBuf, String), SourceError> {
    let raw = config.path.trim();
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with("file://") {
        let url = url::Url::parse(raw)
            .map_err(|e| config_err(format!("files: path `{raw}` is not a valid file URL: {e}")))?;
        let path = url.to_file_path().map_err(|()| {
            config_err(format!(
                "files: path `{raw}` is not a local file URL (expected file:///absolute/path)"
            ))
        })?;
        return Ok((path, raw.to_string()));
    }
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let display = psystem_core::redact::redact_url(raw);
        let url = url::Url::parse(raw)
            .map_err(|e| config_err(format!("files: path `{display}` is not a valid URL: {e}")))?;
        let Some(cache_dir) = &config.cache_dir else {
            return Err(config_err(format!(
                "files: {display} is remote, but no cache_dir is set to download it into; set cache_dir"
            )));
        };
        let path = download(&url, &display, cache_dir).await?;
        return Ok((path, display));
    }
    Ok((PathBuf::from(raw), raw.to_string()))
}

/// Downloads `url` into `cache_dir` once: `<sha256(url)[..16]>-<last path segment>`; an existing
/// download is reused (delete it to download again). Written to a `.part` file first, then renamed.
async fn download(url: &url::Url, shown: &str, cache_dir: &Path) -> Result<PathBuf, SourceError> {
    let err = |detail: String| SourceError::File {
        path: shown.to_string(),
        line: None,
        column: None,
        detail,
    };
    let mut key = url.clone();
    key.set_fragment(None);
    let hash = hex(&Sha256::digest(key.as_str().as_bytes()));
    let name: String = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|s| !s.is_empty())
        .unwrap_or("download")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let target = cache_dir.join(format!("{}-{name}", &hash[..16]));
    if tokio::fs::metadata(&target)
        .await
        .is_ok_and(|m| m.is_file())
    {
        tracing::debug!(url = %shown, path = %target.display(), "using the earlier download");
        return Ok(target);
    }
    tokio::fs::create_dir_all(cache_dir).await.map_err(|e| {
        err(format!(
            "cannot create the download directory {}: {e}; check cache_dir",
            cache_dir.display()
        ))
    })?;
    tracing::info!(url = %shown, path = %target.display(), "downloading");
    let client = reqwest::Client::builder()
        .user_agent(concat!("psystem/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| SourceError::Client {
            detail: e.to_string(),
        })?;
    let mut response = client.get(url.clone()).send().await.map_err(|e| {
        err(format!(
            "download failed: {}; check the URL and the network, then try again",
            psystem_core::error::error_chain(&e)
        ))
    })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(err(format!(
            "download failed: HTTP {status}: `{}`; check the URL",
            columns::preview(body.trim())
        )));
    }
    let part = target.with_file_name(format!("{}-{name}.part", &hash[..16]));
    let result = async {
        use tokio::io::AsyncWriteExt;
        let mut file = tokio::fs::File::create(&part)
            .await
            .map_err(|e| err(format!("cannot write {}: {e}", part.display())))?;
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            err(format!(
                "the download broke off after {bytes} bytes: {}; try again",
                psystem_core::error::error_chain(&e)
            ))
        })? {
            bytes += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| err(format!("cannot write {}: {e}", part.display())))?;
        }
        file.flush()
            .await
            .map_err(|e| err(format!("cannot write {}: {e}", part.display())))?;
        drop(file);
        tokio::fs::rename(&part, &target)
            .await
            .map_err(|e| err(format!("cannot move the download into place: {e}")))?;
        tracing::info!(url = %shown, bytes, "downloaded");
        Ok(target.clone())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    result
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the name's extension says about the format.
enum FromName {
    Known(FileFormat),
    /// `.txt`: delimited, delimiter detected.
    Delimited,
    Compressed(&'static str),
    Unknown,
}

fn format_from_name(name: &str) -> FromName {
    // A URL's query and fragment are not part of the name.
    let name = name.split(['?', '#']).next().unwrap_or(name);
    let ext = name
        .rsplit(['/', '\\'])
        .next()
        .and_then(|file| file.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "csv" => FromName::Known(FileFormat::Csv),
        "tsv" | "tab" => FromName::Known(FileFormat::Tsv),
        "parquet" | "pq" => FromName::Known(FileFormat::Parquet),
        "jsonl" | "ndjson" => FromName::Known(FileFormat::Jsonl),
        "txt" => FromName::Delimited,
        "gz" | "gzip" => FromName::Compressed("gzip"),
        "zip" | "xlsx" => FromName::Compressed("zip"),
        "bz2" => FromName::Compressed("bzip2"),
        "xz" => FromName::Compressed("xz"),
        "zst" => FromName::Compressed("zstd"),
        _ => FromName::Unknown,
    }
}

fn open_blocking(
    config: FilesConfig,
    path: PathBuf,
    shown: String,
    name_hint: &str,
) -> Result<FilesSource, SourceError> {
    let err = |detail: String| SourceError::File {
        path: shown.clone(),
        line: None,
        column: None,
        detail,
    };
    let meta = std::fs::metadata(&path).map_err(|e| {
        err(format!(
            "cannot open it: {e}; check the path (relative paths are relative to the working directory {})",
            std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()
        ))
    })?;
    if !meta.is_file() {
        return Err(err(
            "it is not a file (a directory?); give a file's path".into()
        ));
    }
    // Fingerprint: size, mtime, SHA-256 (one pass over the file); keep the head for sniffing.
    let mut file = std::fs::File::open(&path).map_err(|e| err(format!("cannot open it: {e}")))?;
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| err(format!("cannot read it: {e}")))?;
        if n == 0 {
            break;
        }
        if head.len() < HEAD_BYTES {
            let take = n.min(HEAD_BYTES - head.len());
            head.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let fingerprint = FileFingerprint {
        size,
        modified: meta.modified().ok().map(DateTime::<Utc>::from),
        sha256: hex(&hasher.finalize()),
    };

    let compressed = |kind: &str| {
        err(format!(
            "it is {kind}-compressed; decompress it first (psystem reads CSV, TSV, JSON Lines and Parquet as they are)"
        ))
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err(compressed("gzip"));
    }
    if head.starts_with(b"PK\x03\x04") {
        return Err(err(
            "it is a zip archive (or an Excel workbook); extract the file, or export the sheet as CSV".into(),
        ));
    }
    let by_name = format_from_name(name_hint);
    if let (None, FromName::Compressed(kind)) = (config.format, &by_name) {
        return Err(compressed(kind));
    }
    let format = match (config.format, by_name) {
        (Some(f), _) | (None, FromName::Known(f)) => Some(f),
        (None, FromName::Delimited) => None,
        (None, _) => {
            let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head);
            if head.starts_with(b"PAR1") {
                Some(FileFormat::Parquet)
            } else if text.trim_ascii_start().starts_with(b"{") {
                Some(FileFormat::Jsonl)
            } else {
                None
            }
        }
    };
    let common = Common {
        display: shown.clone(),
        path: path.clone(),
        size,
        batch_rows: config.batch_rows,
    };
    let opened = match format {
        Some(FileFormat::Parquet) => parquet_file::open(&common, &config)?,
        Some(FileFormat::Jsonl) => jsonl::open(&common, &config, &head)?,
        Some(FileFormat::Csv) | Some(FileFormat::Tsv) | None => {
            delimited::open(&common, &config, &head, format)?
        }
    };
    tracing::debug!(
        path = %shown,
        format = %opened.format,
        delimiter = ?opened.delimiter.map(char::from),
        columns = opened.reports.len(),
        size,
        "file opened"
    );
    Ok(FilesSource {
        common: Arc::new(common),
        plan: Arc::new(opened.plan),
        schema: opened.schema,
        reports: opened.reports,
        fingerprint,
        format: opened.format,
        delimiter: opened.delimiter,
        reader: None,
    })
}

/// `RecordBatch::try_new`, its error reported as a bug.
fn make_batch(
    common: &Common,
    schema: &SchemaRef,
    builders: Vec<columns::Builder>,
) -> Result<RecordBatch, SourceError> {
    let arrays = builders.into_iter().map(columns::Builder::finish).collect();
    RecordBatch::try_new(Arc::clone(schema), arrays).map_err(|source| SourceError::Arrow {
        url: common.display.clone(),
        source,
    })
}

/// The message for bytes that are not UTF-8.
fn not_utf8(raw: &[u8], e: std::str::Utf8Error) -> String {
    let bad = raw.get(e.valid_up_to()).copied().unwrap_or(0);
    format!(
        "invalid UTF-8: byte 0x{bad:02X} at offset {} of the value `{}`; psystem reads UTF-8 text only — \
         convert the file first, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`",
        e.valid_up_to(),
        columns::preview(&String::from_utf8_lossy(raw))
    )
}

#[cfg(test)]
mod message_tests {
    use super::*;

    /// User-facing messages quote names and values in backticks, never as Rust debug text.
    #[test]
    fn messages_have_no_debug_text() {
        let mut messages = Vec::new();

        let mut config = FilesConfig::new("/data/ages.csv");
        config.delimiter = Some(b'\n');
        messages.push(check_config(&config).unwrap_err().to_string());

        let mut config = FilesConfig::new("/data/ages.csv");
        config.multi_valued.insert("tags".into(), String::new());
        messages.push(check_config(&config).unwrap_err().to_string());

        let mut config = FilesConfig::new("/data/ages.csv");
        config.casts.insert("agee".into(), ColumnType::Int64);
        let names = ["age".to_string(), "sex".to_string()];
        let missing = check_columns(&config, &names).unwrap_err().to_string();
        assert!(
            missing.contains("`agee`") && missing.contains("`age`, `sex`"),
            "{missing}"
        );
        messages.push(missing);

        messages.push(
            SourceError::File {
                path: "/data/ages.csv".into(),
                line: Some(3),
                column: Some("age".into()),
                detail: "value `x` is not an integer".into(),
            }
            .to_string(),
        );
        messages.push(
            SourceError::Http {
                url: "https://example.org/api/WSH_8".into(),
                status: 404,
                excerpt: "not found".into(),
            }
            .to_string(),
        );

        let sha = "a".repeat(40);
        for text in [format!("{sha}  a\n{sha}  ./a\n"), "zz  ./a\n".to_string()] {
            let e =
                crate::manifest::parse_checksum_list(&text, crate::manifest::Algorithm::Sha1, "m");
            messages.push(e.unwrap_err().to_string());
        }
        messages.push(crate::manifest::check_path("../x").unwrap_err().to_string());

        for m in &messages {
            assert!(!m.contains("Some(") && !m.contains('"'), "{m}");
        }
        assert!(messages[0].contains("`\\n`"), "{}", messages[0]);
    }
}
