//! The psystem job runner: runs a load page by page with exactly-once checkpoints, pauses and resumes it, mirrors
//! its state into `status.yaml` and reports progress as [`runner::JobEvent`]s.
#![deny(missing_docs)]

pub mod dryrun;
pub mod release;
pub mod release_dryrun;
pub mod runner;
pub mod source;
pub mod status;
pub mod uniprot;
pub mod worker;

pub use runner::{job_key, spawn, Control, JobError, JobEvent, JobHandle, JobOutcome, JobSpec};
pub use source::{OpenSource, SourceBatch, SourceSpec};
pub use status::{JobStatus, RunOptions, StatusFile, StatusStore};
