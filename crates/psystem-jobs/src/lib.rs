//! psystem-jobs
