//! Job states, load modes and counters shared by the runner, the ledger and status.yaml.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The lifecycle of a job (one load of one ETL entry into one destination table).
///
/// `queued → running → (paused ⇄ running) → completed | failed | cancelled`.
/// Written in lower case in status.yaml, the ledger (`psystem.loads.state`) and `--json` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Created, not started yet.
    Queued,
    /// A process is working on it now.
    Running,
    /// Stopped at a checkpoint; `psystem resume` continues it.
    Paused,
    /// Every row is in the destination.
    Completed,
    /// Stopped by an error; the last checkpoint is intact and `psystem resume` retries from it.
    Failed,
    /// Abandoned by the user; a later run starts from the beginning.
    Cancelled,
}

impl JobState {
    /// The lower-case name used in files and in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses the lower-case name; `None` for anything else.
    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "paused" => JobState::Paused,
            "completed" => JobState::Completed,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    /// True for states a job can be resumed from (`queued`, `running` left by a killed process, `paused`, `failed`).
    pub fn is_resumable(self) -> bool {
        matches!(
            self,
            JobState::Queued | JobState::Running | JobState::Paused | JobState::Failed
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How rows reach the destination table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Rows are added to the table as they come; the table is created if missing.
    #[default]
    Append,
    /// A complete new table is built beside the old one and swapped in atomically at the end.
    Replace,
    /// Each page goes to a staging table and is upserted into the table by primary key.
    Merge,
}

impl LoadMode {
    /// The lower-case name used in manifests and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMode::Append => "append",
            LoadMode::Replace => "replace",
            LoadMode::Merge => "merge",
        }
    }

    /// Parses the lower-case name; `None` for anything else.
    pub fn parse(s: &str) -> Option<LoadMode> {
        Some(match s {
            "append" => LoadMode::Append,
            "replace" => LoadMode::Replace,
            "merge" => LoadMode::Merge,
            _ => return None,
        })
    }
}

impl fmt::Display for LoadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Progress counters of a job, as committed with its last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Pages (source requests or batches) committed.
    pub pages: u64,
    /// Rows committed to the destination.
    pub rows: u64,
    /// Bytes read from the source (response bodies as received).
    pub bytes: u64,
}

/// A destination table, schema-qualified. Both parts are identifiers and are always quoted in SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableRef {
    /// Schema name, `public` by default.
    pub schema: String,
    /// Table name.
    pub name: String,
}

impl TableRef {
    /// A table in the given schema.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableRef {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}
