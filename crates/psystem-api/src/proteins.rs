//! Shared loads and UniProt exports: joining the shared loads of a database as a worker (`psystem worker`, UniProt
//! and Open Targets loads) and exporting loaded UniProt entries as FASTA or JSON (`psystem export`).

use std::time::Duration;

use psystem_jobs::worker::{self, WorkerEvent, WorkerOptions};
use psystem_jobs::Control;
use psystem_postgres::protein::export::{self, ExportFilter, ExportFormat};
use psystem_postgres::Destination;
use psystem_transport::TransportOptions;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, watch};

use crate::{Api, ApiError};

/// `psystem worker` options.
#[derive(Debug, Clone)]
pub struct WorkerRequest {
    /// `--db`: the database whose shared loads to join (default: `DATABASE_URL`, else the local database).
    pub db_url: Option<String>,
    /// `--threads`: worker loops in this process.
    pub threads: usize,
    /// `--exit-when-idle`.
    pub exit_when_idle: bool,
    /// `--poll`: how often to look for new loads when idle.
    pub poll: Duration,
}

impl Api {
    /// `psystem worker`: joins the shared loads of a database until stopped (or idle, with `exit_when_idle`).
    /// Returns the number of units this process wrote.
    ///
    /// # Errors
    /// [`ApiError::Destination`] when the database cannot be reached; [`ApiError::Job`].
    pub async fn run_worker(
        &self,
        req: &WorkerRequest,
        events: mpsc::UnboundedSender<WorkerEvent>,
        control: watch::Receiver<Control>,
    ) -> Result<u64, ApiError> {
        let url = self.ledger_url(req.db_url.clone()).await?;
        let options = WorkerOptions {
            destination_url: url,
            cache_root: self.cache().root().to_path_buf(),
            threads: req.threads.max(1),
            exit_when_idle: req.exit_when_idle,
            poll: req.poll,
            transport: TransportOptions::default(),
        };
        Ok(worker::run_worker(options, events, control).await?)
    }

    /// `psystem export`: writes the loaded entries chosen by `filter` to `out` as FASTA or JSON lines; returns
    /// how many. `target` names `out` in errors.
    ///
    /// # Errors
    /// [`ApiError::Destination`] (no protein table in the schema, a write error, the database).
    pub async fn export_proteins<W: AsyncWrite + Unpin>(
        &self,
        db_url: Option<String>,
        filter: &ExportFilter,
        format: ExportFormat,
        out: &mut W,
        target: &str,
    ) -> Result<u64, ApiError> {
        let url = self.ledger_url(db_url).await?;
        let dest = Destination::connect(&url).await?;
        let n = export::export(&dest, filter, format, out, target).await?;
        dest.close().await;
        Ok(n)
    }
}
