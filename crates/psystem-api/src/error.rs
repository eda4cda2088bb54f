//! Errors of the API layer, with stable codes for user interfaces.

use psystem_core::plugin::PluginError;

/// An API error. [`ApiError::code`] is stable; the message says what failed, where, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No psystem home folder.
    #[error("{0}")]
    Home(String),
    /// A plugin problem: not found, disabled, invalid manifest, unknown entry.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The entry cannot run as configured (for example a GHO entry without `indicator`).
    #[error("{0}")]
    Config(String),
    /// No job with this key in status.yaml.
    #[error("no job `{job}` in {path}; jobs: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    NoSuchJob {
        /// The key asked for.
        job: String,
        /// status.yaml.
        path: String,
        /// Keys that exist.
        known: Vec<String>,
    },
    /// `psystem cancel KEY` for a job that has nothing unfinished: its last load completed (or it was cancelled
    /// already) and the ledger holds no unfinished load of it. Nothing is changed.
    #[error("nothing to cancel: job `{job}` is {state} and has no unfinished load; its table stays as it is (to load it again, run `{run}`)")]
    NothingToCancel {
        /// The job key.
        job: String,
        /// Its state in status.yaml, e.g. `completed`.
        state: String,
        /// The command that runs the job again, e.g. `psystem run opentargets disease`.
        run: String,
    },
    /// `psystem resume KEY` for a job status.yaml does not have: a run stopped in its first moments (before its
    /// first step) leaves none, so there is nothing to resume and the run must be started again.
    #[error("nothing to resume: {path} has no job `{job}` (a run stopped in its first moments leaves none); run it again: `{run}`{}", if known.is_empty() { String::new() } else { format!(" — jobs there: {}", known.join(", ")) })]
    NothingToResume {
        /// The key asked for.
        job: String,
        /// status.yaml.
        path: String,
        /// The command that starts the job again, e.g. `psystem run opentargets disease`.
        run: String,
        /// Keys that exist.
        known: Vec<String>,
    },
    /// `psystem resume` without a job name, and not exactly one unfinished job.
    #[error("{}", if unfinished.is_empty() { format!("no unfinished job in {path}; start one with `psystem run PLUGIN`") } else { format!("several unfinished jobs in {path}; name one: {}", unfinished.join(", ")) })]
    AmbiguousResume {
        /// status.yaml.
        path: String,
        /// The unfinished jobs' keys.
        unfinished: Vec<String>,
    },
    /// The job failed or could not start.
    #[error(transparent)]
    Job(#[from] psystem_jobs::JobError),
    /// The destination database failed.
    #[error(transparent)]
    Destination(#[from] psystem_postgres::DestinationError),
    /// The managed local cluster failed.
    #[error(transparent)]
    LocalDatabase(#[from] psystem_postgres::cluster::ClusterError),
    /// status.yaml could not be read or written.
    #[error(transparent)]
    Status(#[from] psystem_jobs::status::StatusError),
    /// A release could not be listed, read or verified.
    #[error(transparent)]
    Release(#[from] psystem_releases::ReleaseError),
}

impl ApiError {
    /// A stable, snake_case code for user interfaces to branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Home(_) => "home",
            ApiError::Plugin(PluginError::NotFound { .. }) => "plugin_not_found",
            ApiError::Plugin(PluginError::Disabled { .. }) => "plugin_disabled",
            // The plugin is there but its manifest does not load: the message has file, line and column.
            ApiError::Plugin(PluginError::Broken { .. }) => "invalid_manifest",
            ApiError::Plugin(
                PluginError::NoSuchEntry { .. } | PluginError::NoDefaultEntry { .. },
            ) => "entry_not_found",
            ApiError::Plugin(_) => "invalid_manifest",
            ApiError::Config(_) => "invalid_config",
            ApiError::NoSuchJob { .. }
            | ApiError::NothingToResume { .. }
            | ApiError::AmbiguousResume { .. } => "job_not_found",
            ApiError::NothingToCancel { .. } => "nothing_to_cancel",
            ApiError::Job(psystem_jobs::JobError::Busy { .. }) => "job_busy",
            ApiError::Job(psystem_jobs::JobError::Source { .. }) => "source",
            ApiError::Job(psystem_jobs::JobError::Destination(_)) | ApiError::Destination(_) => {
                "destination"
            }
            ApiError::Job(_) => "job",
            ApiError::LocalDatabase(_) => "local_database",
            ApiError::Status(_) => "status_file",
            ApiError::Release(psystem_releases::ReleaseError::Manifest(_)) => "manifest",
            ApiError::Release(
                psystem_releases::ReleaseError::ReleaseNotFound { .. }
                | psystem_releases::ReleaseError::DatasetNotFound { .. },
            ) => "release_not_found",
            ApiError::Release(psystem_releases::ReleaseError::Transport(_)) => "transport",
            ApiError::Release(_) => "release",
        }
    }

    /// True for errors in what the user asked or configured (exit code 2), as opposed to failures while running.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ApiError::Plugin(_)
                | ApiError::Config(_)
                | ApiError::NoSuchJob { .. }
                | ApiError::NothingToResume { .. }
                | ApiError::NothingToCancel { .. }
                | ApiError::AmbiguousResume { .. }
        )
    }
}
