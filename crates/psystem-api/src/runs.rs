//! Running, resuming and inspecting jobs.

use crate::{Api, ApiError, DATABASE_URL_ENV};
use psystem_core::plugin::{ConfigValue, SourceKind};
use psystem_core::redact::redact_url;
use psystem_core::transform::ColumnMap;
use psystem_core::{LoadMode, TableRef};
use psystem_jobs::{JobEvent, JobHandle, JobSpec, JobStatus, StatusStore};
use psystem_sources::gho::GhoConfig;
use serde::Serialize;
use tokio::sync::mpsc;

/// What the user asked to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Plugin name (or folder name), case-insensitive.
    pub plugin: String,
    /// ETL entry key; `None` runs the plugin's `run` entry.
    pub entry: Option<String>,
    /// `--db`: the destination, overriding the manifest and `DATABASE_URL`.
    pub db_url: Option<String>,
    /// `--source-url`: the API base URL, overriding the manifest (a mirror, a local test server).
    pub source_url: Option<String>,
    /// `--page-size`: rows per request, overriding the manifest.
    pub page_size: Option<u64>,
    /// `--restart`: start over instead of resuming an unfinished load.
    pub restart: bool,
    /// Set by [`Api::resume_request`]: the load status.yaml recorded for the job.
    pub resume_load: Option<i64>,
}

/// Where the destination URL came from (step of the documented order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationOrigin {
    /// `--db`.
    CommandLine,
    /// The plugin manifest's `destination.postgres.url`.
    Manifest,
    /// `DATABASE_URL`.
    Environment,
    /// The local cluster managed by psystem.
    LocalCluster,
    /// The destination recorded in status.yaml for the job being resumed.
    StatusFile,
}

/// A job ready to start, with notes for the user about how it was put together.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    /// The job.
    pub spec: JobSpec,
    /// Where the destination came from.
    pub destination_origin: DestinationOrigin,
    /// Things the user should know (an unset environment variable, a started local cluster).
    pub notes: Vec<String>,
}

/// The default table name of an entry: its key in lower case.
pub fn default_table_name(entry_key: &str) -> String {
    entry_key.to_lowercase()
}

/// Columns a GHO source identifies rows by.
const GHO_NATURAL_KEY: &str = "Id";

impl Api {
    /// Builds the job for a request: finds the plugin and entry, refuses a disabled plugin, resolves the
    /// destination (see the crate docs for the order; the local cluster is started if it is the one chosen).
    ///
    /// # Errors
    /// [`ApiError::Plugin`] (not found, disabled, no such entry), [`ApiError::Config`] (an entry that cannot run),
    /// [`ApiError::LocalDatabase`].
    pub async fn plan(&self, req: &RunRequest) -> Result<PlannedJob, ApiError> {
        let catalog = self.catalog();
        let plugin = catalog.get(&req.plugin)?;
        plugin.ensure_enabled()?;
        let (key, entry) = plugin.entry(req.entry.as_deref())?;
        let where_ = format!("{} (entry `{key}`)", plugin.path.display());
        let mut notes = Vec::new();

        let SourceKind::GhoOdata = plugin.source_kind();
        let indicator = entry.indicator.clone().ok_or_else(|| {
            ApiError::Config(format!(
                "{where_}: a gho_odata entry needs `indicator` (e.g. WSH_8)"
            ))
        })?;
        let source_cfg = plugin.manifest.source.clone().unwrap_or_default();
        let api = req
            .source_url
            .clone()
            .or_else(|| entry.api.clone())
            .or(source_cfg.api)
            .ok_or_else(|| {
                ApiError::Config(format!(
                    "{where_}: no `api` URL (set etl.{key}.api or source.api)"
                ))
            })?;
        let mut source = GhoConfig::new(api.trim_end_matches('/'), &indicator);
        if let Some(n) = req.page_size.or(entry.page_size).or(source_cfg.page_size) {
            if n == 0 {
                return Err(ApiError::Config(format!(
                    "{where_}: page_size must be at least 1"
                )));
            }
            source.page_size = n;
        }

        let columns = ColumnMap::new(entry.transform.as_ref().and_then(|t| t.columns.clone()));
        let pg = entry
            .destination
            .as_ref()
            .and_then(|d| d.postgres.clone())
            .unwrap_or_default();
        let primary_key = match pg.primary_key.clone() {
            Some(pk) => pk,
            None => columns
                .rename(GHO_NATURAL_KEY)
                .map(|c| vec![c.to_string()])
                .unwrap_or_default(),
        };
        let mode = pg.mode.unwrap_or(if primary_key.is_empty() {
            LoadMode::Append
        } else {
            LoadMode::Merge
        });
        if mode == LoadMode::Merge && primary_key.is_empty() {
            return Err(ApiError::Config(format!(
                "{where_}: load mode `merge` needs a primary key (destination.postgres.primary_key)"
            )));
        }
        let table = TableRef::new(
            pg.schema.clone().unwrap_or_else(|| "public".into()),
            pg.table.clone().unwrap_or_else(|| default_table_name(key)),
        );

        let (destination_url, destination_origin) = self
            .resolve_destination(req.db_url.clone(), pg.url.as_ref(), &mut notes)
            .await?;
        let spec = JobSpec {
            plugin: plugin.name().to_string(),
            entry: key.to_string(),
            source,
            columns,
            destination_url,
            table,
            mode,
            primary_key,
            restart: req.restart,
            resume_load: req.resume_load,
        };
        Ok(PlannedJob {
            spec,
            destination_origin,
            notes,
        })
    }

    /// The destination URL by the documented order; starts the local cluster when it is the one chosen.
    async fn resolve_destination(
        &self,
        cli: Option<String>,
        manifest: Option<&ConfigValue>,
        notes: &mut Vec<String>,
    ) -> Result<(String, DestinationOrigin), ApiError> {
        if let Some(url) = cli.filter(|u| !u.is_empty()) {
            return Ok((url, DestinationOrigin::CommandLine));
        }
        if let Some(v) = manifest {
            match v.resolve() {
                Some(url) => return Ok((url, DestinationOrigin::Manifest)),
                None => notes.push(format!(
                    "the plugin's destination URL comes from {}, which is not set; using the next choice",
                    v.describe()
                )),
            }
        }
        if let Some(url) = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
        {
            return Ok((url, DestinationOrigin::Environment));
        }
        let status = self.db_up().await?;
        let url = status
            .url
            .clone()
            .ok_or_else(|| ApiError::Config("the local database has no URL".into()))?;
        notes.push(format!(
            "loading into the local database psystem manages: {}",
            redact_url(&url)
        ));
        Ok((url, DestinationOrigin::LocalCluster))
    }

    /// Starts a planned job on its own task; events arrive on `events`.
    pub fn start(&self, job: &PlannedJob, events: mpsc::UnboundedSender<JobEvent>) -> JobHandle {
        psystem_jobs::spawn(job.spec.clone(), self.status_store(), events)
    }

    /// The request that resumes a job of status.yaml: same plugin, entry, source URL and page size (unless
    /// `page_size` is given); the destination is
    /// `db_url` if given, else the one status.yaml recorded when it holds no password, else the usual order (which
    /// must lead to the same database, or the job starts over there and the user is told).
    ///
    /// `job` may be omitted when exactly one job is unfinished.
    ///
    /// # Errors
    /// [`ApiError::NoSuchJob`], [`ApiError::Status`].
    pub fn resume_request(
        &self,
        job: Option<&str>,
        db_url: Option<String>,
        page_size: Option<u64>,
    ) -> Result<RunRequest, ApiError> {
        let file = self.status_store().read()?;
        let unfinished: Vec<(&String, &JobStatus)> = file
            .jobs
            .iter()
            .filter(|(_, j)| j.state.is_resumable())
            .collect();
        let (_, status) = match job {
            Some(k) => file
                .jobs
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .ok_or_else(|| self.no_such_job(k, &file))?,
            None if unfinished.len() == 1 => unfinished[0],
            None => {
                return Err(ApiError::NoSuchJob {
                    job: "(none named)".into(),
                    path: self.status_store().path().display().to_string(),
                    known: unfinished.iter().map(|(k, _)| k.to_string()).collect(),
                })
            }
        };
        let recorded =
            Some(status.destination.clone()).filter(|d| !d.is_empty() && !d.contains("***"));
        Ok(RunRequest {
            plugin: status.plugin.clone(),
            entry: Some(status.entry.clone()),
            db_url: db_url.or(recorded),
            source_url: status.source_url.clone(),
            page_size: page_size.or(status.page_size),
            restart: false,
            resume_load: status.load_id,
        })
    }

    /// `psystem cancel JOB`: abandons an unfinished job. Its load is marked `cancelled` in the destination (a
    /// `replace` load's staging table is dropped; rows an `append` or `merge` load already committed stay), and
    /// status.yaml says so; the next `psystem run` starts from the beginning. The destination is found as for
    /// [`Api::resume_request`].
    ///
    /// # Errors
    /// [`ApiError::NoSuchJob`]; [`ApiError::Job`] with `JobError::Busy` while a process runs the job (pause it
    /// there first); [`ApiError::Destination`].
    pub async fn cancel(
        &self,
        job: Option<&str>,
        db_url: Option<String>,
    ) -> Result<JobStatus, ApiError> {
        let req = self.resume_request(job, db_url, None)?;
        let planned = self
            .plan(&RunRequest {
                restart: false,
                ..req.clone()
            })
            .await?;
        let key = planned.spec.key();
        let dest = psystem_postgres::Destination::connect(&planned.spec.destination_url).await?;
        let _lock = dest
            .try_lock_job(&key)
            .await?
            .ok_or_else(|| ApiError::Job(psystem_jobs::JobError::Busy { job: key.clone() }))?;
        for load in dest.loads(Some(&key), 100).await? {
            if load.state.is_resumable() {
                dest.set_state(load.id, psystem_core::JobState::Cancelled, None)
                    .await?;
            }
        }
        let updated = self.status_store().update(|f| {
            f.jobs.get_mut(&key).map(|j| {
                j.state = psystem_core::JobState::Cancelled;
                j.updated_at = Some(chrono::Utc::now());
                j.clone()
            })
        })?;
        updated.ok_or_else(|| ApiError::NoSuchJob {
            job: key,
            path: self.status_store().path().display().to_string(),
            known: Vec::new(),
        })
    }

    fn no_such_job(&self, k: &str, file: &psystem_jobs::StatusFile) -> ApiError {
        ApiError::NoSuchJob {
            job: k.to_string(),
            path: self.status_store().path().display().to_string(),
            known: file.jobs.keys().cloned().collect(),
        }
    }

    /// The jobs in status.yaml.
    ///
    /// # Errors
    /// [`ApiError::Status`] when status.yaml cannot be read.
    pub fn status(&self) -> Result<Vec<(String, JobStatus)>, ApiError> {
        Ok(self.status_store().read()?.jobs.into_iter().collect())
    }

    /// The status.yaml store of this home.
    pub fn status_store(&self) -> StatusStore {
        StatusStore::new(&self.home)
    }

    /// Up to `limit` rows of a table (for the summary after a load), ordered by its first column.
    ///
    /// # Errors
    /// [`ApiError::Destination`].
    pub async fn preview(
        &self,
        db_url: &str,
        table: &TableRef,
        limit: i64,
    ) -> Result<psystem_postgres::TablePreview, ApiError> {
        let dest = psystem_postgres::Destination::connect(db_url).await?;
        Ok(dest.preview(table, limit).await?)
    }
}
