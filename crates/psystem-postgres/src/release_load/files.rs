//! The files ledger (`psystem.files`, ledger version 5): the checksum verification of each file of a release.

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Destination, DestinationError};

/// The outcome of verifying one release file against its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// The computed checksum equals the expected one.
    Verified,
    /// The computed checksum differs from the expected one.
    Mismatch,
    /// The release publishes no checksum for the file (or verification was skipped).
    Unverified,
    /// The manifest lists the file but it is not in the release.
    Missing,
}

impl FileStatus {
    /// The stored form: `verified`, `mismatch`, `unverified` or `missing`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Verified => "verified",
            FileStatus::Mismatch => "mismatch",
            FileStatus::Unverified => "unverified",
            FileStatus::Missing => "missing",
        }
    }

    /// Parses the stored form; `None` for anything else.
    pub fn parse(s: &str) -> Option<FileStatus> {
        Some(match s {
            "verified" => FileStatus::Verified,
            "mismatch" => FileStatus::Mismatch,
            "unverified" => FileStatus::Unverified,
            "missing" => FileStatus::Missing,
            _ => return None,
        })
    }
}

impl fmt::Display for FileStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `psystem.files`: the checksum verification of a release file. Identified by
/// `(source, release, path)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileCheck {
    /// The source kind, e.g. `opentargets`.
    pub source: String,
    /// The release, e.g. `25.03`.
    pub release: String,
    /// The file's path relative to the release root, e.g. `output/target/part-00000.parquet`.
    pub path: String,
    /// The file's size in bytes, when known.
    pub size: Option<u64>,
    /// The checksum algorithm, e.g. `sha1`, `md5`, `sha256`.
    pub algorithm: Option<String>,
    /// The checksum the manifest gives (lowercase hex).
    pub expected: Option<String>,
    /// The checksum computed over the file (lowercase hex).
    pub computed: Option<String>,
    /// The outcome.
    pub status: FileStatus,
    /// A human-readable detail (e.g. why it is unverified).
    pub detail: Option<String>,
    /// When the file was verified; `None` = now, when recording.
    pub verified_at: Option<DateTime<Utc>>,
}

/// Records (inserts, or replaces the previous record of the same `source`, `release` and `path`) one file
/// check in `psystem.files`. `check.verified_at = None` records the server's `now()`.
///
/// # Errors
/// [`DestinationError::InvalidSpec`] when `size` does not fit a bigint; [`DestinationError::Database`].
pub async fn record_file_check(
    dest: &Destination,
    check: &FileCheck,
) -> Result<(), DestinationError> {
    let size = check
        .size
        .map(|s| {
            i64::try_from(s).map_err(|_| DestinationError::InvalidSpec {
                job_key: format!("{}/{}", check.source, check.release),
                message: format!("the size {s} of {} does not fit a bigint", check.path),
            })
        })
        .transpose()?;
    sqlx::query(
        "INSERT INTO psystem.files (source, release, path, size, algorithm, expected, computed, status, detail, verified_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, now())) \
         ON CONFLICT (source, release, path) DO UPDATE SET size = EXCLUDED.size, algorithm = EXCLUDED.algorithm, \
         expected = EXCLUDED.expected, computed = EXCLUDED.computed, status = EXCLUDED.status, \
         detail = EXCLUDED.detail, verified_at = EXCLUDED.verified_at",
    )
    .bind(&check.source)
    .bind(&check.release)
    .bind(&check.path)
    .bind(size)
    .bind(&check.algorithm)
    .bind(&check.expected)
    .bind(&check.computed)
    .bind(check.status.as_str())
    .bind(&check.detail)
    .bind(check.verified_at)
    .execute(dest.pool())
    .await
    .map_err(DestinationError::db(format!(
        "recording the check of {} ({} {}) in psystem.files",
        check.path, check.source, check.release
    )))?;
    Ok(())
}

/// The file checks recorded for one release of a source, ordered by path.
///
/// # Errors
/// [`DestinationError::Database`]; [`DestinationError::CorruptFileRecord`] for a status or size this program
/// cannot read.
pub async fn file_checks(
    dest: &Destination,
    source: &str,
    release: &str,
) -> Result<Vec<FileCheck>, DestinationError> {
    let rows = sqlx::query(
        "SELECT path, size, algorithm, expected, computed, status, detail, verified_at FROM psystem.files \
         WHERE source = $1 AND release = $2 ORDER BY path",
    )
    .bind(source)
    .bind(release)
    .fetch_all(dest.pool())
    .await
    .map_err(DestinationError::db(format!(
        "reading the file checks of {source} {release} from psystem.files"
    )))?;
    rows.iter()
        .map(|row| {
            let path: String = row.get("path");
            let corrupt = |detail: String| DestinationError::CorruptFileRecord {
                source_name: source.to_string(),
                release: release.to_string(),
                path: path.clone(),
                detail,
            };
            let status: String = row.get("status");
            let size: Option<i64> = row.get("size");
            Ok(FileCheck {
                source: source.to_string(),
                release: release.to_string(),
                size: size
                    .map(|s| u64::try_from(s).map_err(|_| corrupt(format!("negative size {s}"))))
                    .transpose()?,
                algorithm: row.get("algorithm"),
                expected: row.get("expected"),
                computed: row.get("computed"),
                status: FileStatus::parse(&status)
                    .ok_or_else(|| corrupt(format!("unknown status `{status}`")))?,
                detail: row.get("detail"),
                verified_at: row.get("verified_at"),
                path: path.clone(),
            })
        })
        .collect()
}
