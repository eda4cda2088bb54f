//! Core types of psystem: where its state lives (`PSYSTEM_HOME`), plugin manifests, job states and
//! load modes, and the column transforms applied to Arrow record batches.
#![deny(missing_docs)]

pub mod job;

pub use job::{Counters, JobState, LoadMode, TableRef};
