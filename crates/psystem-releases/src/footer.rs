//! A Parquet file's schema from its footer, read with two range requests instead of a download.
//!
//! A Parquet file ends with the Thrift-encoded `FileMetaData`, its length as a 4-byte little-endian integer and
//! the magic `PAR1` (<https://parquet.apache.org/docs/file-format/>). We read the last 64 KiB (which holds most
//! footers), and the rest of the metadata with a second range request when it is longer.

use std::sync::Arc;

use arrow_schema::Schema;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use psystem_sources::parquet_read::{check_row_counts, exact_schema};
use psystem_transport::Transport;
use serde::Serialize;

use crate::ReleaseError;

/// Bytes read from the end of the file in the first request.
const FIRST_READ: u64 = 64 * 1024;

/// What a Parquet footer says about a file.
#[derive(Debug, Clone, Serialize)]
pub struct FooterSummary {
    /// The Arrow schema (from the footer's embedded Arrow schema if Spark or arrow-rs wrote one, else converted
    /// from the Parquet schema), INT96 columns as microseconds as [`crate::reader::read_file`] reads them.
    #[serde(skip)]
    pub schema: Arc<Schema>,
    /// Rows in the file.
    pub rows: u64,
    /// Row groups in the file.
    pub row_groups: usize,
    /// The writer (`created_by`), e.g. `parquet-mr version 1.12.3`.
    pub created_by: Option<String>,
}

/// Reads the footer of the Parquet file at `path` (relative to the transport's base) whose size is `size` bytes.
///
/// Errors: [`ReleaseError::Parquet`] for a file too short or without the `PAR1` magic (a truncated download, or
/// not Parquet), a footer that does not decode, or one whose row count is not its row groups'; transport errors as
/// they come.
pub async fn read_footer(
    transport: &Transport,
    path: &str,
    size: u64,
) -> Result<FooterSummary, ReleaseError> {
    let bad = |detail: String| ReleaseError::Parquet {
        path: path.to_string(),
        detail,
    };
    if size < 12 {
        return Err(bad(format!(
            "{size} bytes is too short for a Parquet file (truncated?)"
        )));
    }
    let first = FIRST_READ.min(size);
    let tail = transport.read_range(path, size - first..size).await?;
    let footer = parse_footer(&tail, size, path)?;
    let metadata = if (footer as u64) + 8 <= first {
        let start = tail.len() - 8 - footer;
        decode(&tail[start..tail.len() - 8], path)?
    } else {
        if footer as u64 + 8 > size {
            return Err(bad(format!(
                "the footer claims {footer} bytes of metadata but the file has {size} bytes (truncated?)"
            )));
        }
        let start = size - 8 - footer as u64;
        let bytes = transport.read_range(path, start..size - 8).await?;
        decode(&bytes, path)?
    };
    summarize(&metadata, path)
}

/// Reads the footer of a local Parquet file (same result as [`read_footer`]).
pub fn read_local_footer(path: &std::path::Path) -> Result<FooterSummary, ReleaseError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ReleaseError::Io {
        path: shown.clone(),
        source,
    })?;
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| ReleaseError::Parquet {
            path: shown.clone(),
            detail: e.to_string(),
        })?;
    summarize(&metadata, &shown)
}

fn parse_footer(tail: &[u8], size: u64, path: &str) -> Result<usize, ReleaseError> {
    let last8: [u8; 8] = tail[tail.len() - 8..].try_into().expect("8 bytes");
    let footer = FooterTail::try_new(&last8).map_err(|_| ReleaseError::Parquet {
        path: path.to_string(),
        detail: format!(
            "no PAR1 magic at the end of its {size} bytes: the file is truncated or not Parquet"
        ),
    })?;
    if footer.is_encrypted_footer() {
        return Err(ReleaseError::Parquet {
            path: path.to_string(),
            detail: "the footer is encrypted".into(),
        });
    }
    Ok(footer.metadata_length())
}

fn decode(bytes: &[u8], path: &str) -> Result<ParquetMetaData, ReleaseError> {
    ParquetMetaDataReader::decode_metadata(bytes).map_err(|e| ReleaseError::Parquet {
        path: path.to_string(),
        detail: format!("cannot decode the footer: {e}"),
    })
}

fn summarize(metadata: &ParquetMetaData, path: &str) -> Result<FooterSummary, ReleaseError> {
    let file = metadata.file_metadata();
    check_row_counts(metadata).map_err(|e| ReleaseError::Parquet {
        path: path.to_string(),
        detail: e.to_string(),
    })?;
    let schema =
        parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata()).map_err(|e| {
            ReleaseError::Parquet {
                path: path.to_string(),
                detail: format!("cannot convert its schema to Arrow: {e}"),
            }
        })?;
    let schema = exact_schema(metadata, &schema).unwrap_or(schema);
    Ok(FooterSummary {
        schema: Arc::new(schema),
        rows: u64::try_from(file.num_rows()).unwrap_or(0),
        row_groups: metadata.num_row_groups(),
        created_by: file.created_by().map(str::to_string),
    })
}
