//! The sources a job can read, behind one small interface: read the batch at a checkpoint position.
//!
//! A position is the JSON value stored as the checkpoint in the ledger (`psystem.checkpoints.position`):
//! - GHO OData: `{"next_skip": N}` — the `$skip` of the next page;
//! - files: `{"byte": B, "line": L, "record": R}` — where the next batch starts in the file
//!   ([`psystem_sources::files::FilePosition`]).

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use psystem_core::plugin::SourceKind;
use psystem_sources::files::{FilePosition, FilesConfig, FilesSource};
use psystem_sources::gho::{GhoConfig, GhoSource};
use psystem_sources::SourceError;
use std::collections::BTreeSet;

/// What a job reads: the configuration of one source.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A WHO GHO OData indicator.
    Gho(GhoConfig),
    /// A local or remote table.
    Files(FilesConfig),
}

impl SourceSpec {
    /// The source kind, as recorded in the ledger.
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceSpec::Gho(_) => SourceKind::GhoOdata,
            SourceSpec::Files(_) => SourceKind::Files,
        }
    }

    /// Where the data comes from: the API base URL or the file's path/URL (shown to people, kept in status.yaml).
    pub fn location(&self) -> String {
        match self {
            SourceSpec::Gho(c) => c.api.clone(),
            SourceSpec::Files(c) => c.path.clone(),
        }
    }

    /// Rows per page (GHO `$top`) or per batch (files).
    pub fn page_rows(&self) -> u64 {
        match self {
            SourceSpec::Gho(c) => c.page_size.max(1),
            SourceSpec::Files(c) => c.batch_rows.max(1) as u64,
        }
    }
}

/// One batch read at a position, with the position after it.
#[derive(Debug)]
pub struct SourceBatch {
    /// The rows, in the source's schema.
    pub batch: RecordBatch,
    /// The checkpoint position after this batch.
    pub next: serde_json::Value,
    /// Bytes received or read for this batch.
    pub bytes: u64,
    /// Rows in all, when the source says (GHO `@odata.count`).
    pub total_rows: Option<u64>,
    /// Fields the source sent that its schema does not have.
    pub unknown_fields: BTreeSet<String>,
    /// True when nothing follows this batch.
    pub last: bool,
}

/// An open source.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per job, never in a collection
pub enum OpenSource {
    /// A GHO indicator.
    Gho {
        /// The reader.
        source: GhoSource,
        /// Rows in all, once known.
        total: Option<u64>,
    },
    /// A table.
    Files(Box<FilesSource>),
}

impl OpenSource {
    /// Opens a source. `total_rows` is what an earlier page of this load announced.
    ///
    /// # Errors
    /// [`SourceError`] when the configuration is invalid or the file cannot be opened.
    pub async fn open(
        spec: &SourceSpec,
        total_rows: Option<u64>,
    ) -> Result<OpenSource, SourceError> {
        Ok(match spec {
            SourceSpec::Gho(c) => OpenSource::Gho {
                source: GhoSource::new(c.clone())?,
                total: total_rows,
            },
            SourceSpec::Files(c) => {
                OpenSource::Files(Box::new(FilesSource::open(c.clone()).await?))
            }
        })
    }

    /// What this source reads, as recorded in the ledger (`psystem.loads.source_fingerprint`): the kind, the
    /// location and what selects the rows — for GHO the indicator URL and the `TimeDim` window, for files the path
    /// and the SHA-256 of the content (so a changed file is a new load, and an unchanged one is skipped).
    pub fn fingerprint(&self) -> String {
        match self {
            OpenSource::Gho { source, .. } => {
                let c = source.config();
                let mut s = format!("gho_odata {}/{}", c.api.trim_end_matches('/'), c.indicator);
                if let Some(y) = c.since {
                    s.push_str(&format!(" since={y}"));
                }
                if let Some(y) = c.until {
                    s.push_str(&format!(" until={y}"));
                }
                s
            }
            OpenSource::Files(f) => format!(
                "files {} sha256={}",
                f.path().display(),
                f.fingerprint().sha256
            ),
        }
    }

    /// What a person should know about how the source reads its data: for a table, the file, its format and one
    /// line per column with its type and how it was chosen (the type inference report); empty for GHO, whose schema
    /// is declared.
    pub fn report(&self) -> Vec<String> {
        match self {
            OpenSource::Gho { .. } => Vec::new(),
            OpenSource::Files(f) => {
                let delimiter = match f.delimiter() {
                    Some(b'\t') => ", tab-delimited".to_string(),
                    Some(d) => format!(", delimiter `{}`", (d as char).escape_default()),
                    None => String::new(),
                };
                let mut lines = vec![format!(
                    "{} ({}{delimiter}):",
                    f.path().display(),
                    f.format()
                )];
                lines.extend(f.inference().iter().map(|c| format!("  {c}")));
                lines
            }
        }
    }

    /// When the file was last modified (files only).
    pub fn modified(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            OpenSource::Gho { .. } => None,
            OpenSource::Files(f) => f.fingerprint().modified,
        }
    }

    /// The schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        match self {
            OpenSource::Gho { .. } => GhoSource::schema(),
            OpenSource::Files(f) => f.schema(),
        }
    }

    /// Where row `row` (0-based) of the batch read at `position` came from, for messages about one of its values
    /// (files: `data.csv, line 3`, `data.parquet, row 7`; see
    /// [`FilesSource::place_of_row`](psystem_sources::files::FilesSource::place_of_row)); `None` for a GHO page or
    /// when it cannot be found.
    pub async fn place_of_row(
        &mut self,
        position: Option<&serde_json::Value>,
        row: usize,
    ) -> Option<String> {
        match self {
            OpenSource::Gho { .. } => None,
            OpenSource::Files(f) => {
                let from: Option<FilePosition> = match position {
                    Some(p) => Some(serde_json::from_value(p.clone()).ok()?),
                    None => None,
                };
                f.place_of_row(from.as_ref(), row).await
            }
        }
    }

    /// Reads the batch at `position` (`None` = the beginning); `Ok(None)` when there is nothing more.
    ///
    /// # Errors
    /// The source's errors; a position this source cannot understand is a [`SourceError::Config`].
    pub async fn read(
        &mut self,
        position: Option<&serde_json::Value>,
    ) -> Result<Option<SourceBatch>, SourceError> {
        match self {
            OpenSource::Gho { source, total } => {
                let skip = position
                    .and_then(|p| p.get("next_skip"))
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
                if total.is_some_and(|t| skip >= t) && skip > 0 {
                    return Ok(None);
                }
                let page = source.fetch_page(skip).await?;
                if page.total.is_some() {
                    *total = page.total;
                }
                let next = page.next_skip();
                let last = page.is_last() || total.is_some_and(|t| next >= t);
                Ok(Some(SourceBatch {
                    next: serde_json::json!({ "next_skip": next }),
                    bytes: page.bytes,
                    total_rows: *total,
                    last,
                    unknown_fields: page.unknown_fields,
                    batch: page.batch,
                }))
            }
            OpenSource::Files(f) => {
                let from: Option<FilePosition> = match position {
                    Some(p) => Some(serde_json::from_value(p.clone()).map_err(|e| SourceError::Config {
                        detail: format!("the checkpoint {p} is not a file position ({e}); run with --restart"),
                    })?),
                    None => None,
                };
                Ok(f.read_batch(from.as_ref()).await?.map(|b| SourceBatch {
                    next: serde_json::to_value(&b.next).unwrap_or(serde_json::Value::Null),
                    bytes: b.bytes,
                    total_rows: None,
                    unknown_fields: BTreeSet::new(),
                    last: b.last,
                    batch: b.batch,
                }))
            }
        }
    }
}
