//! The one API layer of psystem: every operation the `psystem` CLI and the desktop app offer is one call here.
//!
//! Results are plain serialisable structs (the CLI prints them, `--json` dumps them, the desktop app sends them
//! over IPC); errors are [`ApiError`]s, each with a stable [`ApiError::code`] that a UI can branch on.
//!
//! ## Which database a job loads into
//! The first of:
//! 1. `--db URL` on the command line (the `db_url` of a [`RunRequest`]);
//! 2. the ETL entry's `destination.postgres.url` in the plugin manifest (`!env NAME` / `!NAME` resolved from the
//!    environment; an unset variable counts as absent, and the user is told);
//! 3. the `DATABASE_URL` environment variable;
//! 4. the local PostgreSQL cluster that psystem manages under `$PSYSTEM_HOME/postgres` (started on demand).
#![deny(missing_docs)]

mod error;
pub mod idcache;
pub mod plugins;
pub mod proteins;
pub mod releases;
mod request;
pub mod runs;

pub use error::ApiError;
pub use psystem_postgres::cluster::{ClusterStatus, LocalCluster};

use psystem_core::Home;
use std::path::PathBuf;

/// The environment variable consulted third when choosing a destination.
pub const DATABASE_URL_ENV: &str = "DATABASE_URL";

/// Entry point of the API: a psystem home and the bundled assets.
#[derive(Debug, Clone)]
pub struct Api {
    home: Home,
    assets: PathBuf,
}

impl Api {
    /// An API over `$PSYSTEM_HOME` (or `~/.psystem`) and the bundled assets found by
    /// [`psystem_core::paths::assets_dir`].
    ///
    /// # Errors
    /// [`ApiError::Home`] when no home folder can be determined.
    pub fn from_env() -> Result<Api, ApiError> {
        Ok(Api {
            home: Home::from_env().map_err(|e| ApiError::Home(e.to_string()))?,
            assets: psystem_core::paths::assets_dir(),
        })
    }

    /// An API over explicit folders (tests).
    pub fn new(home: Home, assets: PathBuf) -> Api {
        Api { home, assets }
    }

    /// The psystem home.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The bundled assets folder.
    pub fn assets(&self) -> &PathBuf {
        &self.assets
    }

    /// The managed local cluster of this home.
    pub fn local_cluster(&self) -> LocalCluster {
        LocalCluster::new(self.home.root())
    }

    /// Starts the local cluster (initialising it the first time).
    ///
    /// # Errors
    /// [`ApiError::LocalDatabase`].
    pub async fn db_up(&self) -> Result<ClusterStatus, ApiError> {
        Ok(self.local_cluster().up().await?)
    }

    /// Stops the local cluster.
    ///
    /// # Errors
    /// [`ApiError::LocalDatabase`].
    pub async fn db_down(&self) -> Result<ClusterStatus, ApiError> {
        Ok(self.local_cluster().down().await?)
    }

    /// The local cluster's state.
    ///
    /// # Errors
    /// [`ApiError::LocalDatabase`].
    pub async fn db_status(&self) -> Result<ClusterStatus, ApiError> {
        Ok(self.local_cluster().status().await?)
    }

    /// The local cluster's connection URL.
    ///
    /// # Errors
    /// [`ApiError::LocalDatabase`] when it was never initialised.
    pub fn db_url(&self) -> Result<String, ApiError> {
        Ok(self.local_cluster().url()?)
    }
}
