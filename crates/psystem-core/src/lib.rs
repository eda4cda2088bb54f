//! Core types of psystem: where its state lives (`PSYSTEM_HOME`), plugin manifests, job states and
//! load modes, and the column transforms applied to Arrow record batches.
#![deny(missing_docs)]

pub mod atomic;
pub mod error;
pub mod flatten;
pub mod job;
pub mod paths;
pub mod plugin;
pub mod redact;
pub mod transform;
pub mod unique_key;

pub use job::{Counters, JobState, LoadMode, TableRef};
pub use paths::Home;
