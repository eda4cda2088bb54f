//! Running, resuming and inspecting jobs.

use crate::request::ReleaseRunRequest;
use crate::{Api, ApiError, DATABASE_URL_ENV};
use psystem_core::plugin::{ConfigValue, SourceKind};
use psystem_core::plugin::{ReferenceConfig, TargetIdConfig};
use psystem_core::redact::redact_url;
use psystem_core::transform::ColumnMap;
use psystem_core::{LoadMode, TableRef};
use psystem_jobs::SourceSpec;
use psystem_jobs::{JobEvent, JobHandle, JobSpec, JobStatus, StatusStore};
use psystem_postgres::entities::DEFAULT_ID_COLUMN;
use psystem_postgres::{CacheTarget, EntitySpec, IdPlan, IdStrategy, ReferencePlan};
use psystem_sources::files::FilesConfig;
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
    /// `--force`: load even what a completed load already holds.
    pub force: bool,
    /// `--since`: GHO only, the first year (`TimeDim`) to load.
    pub since: Option<i64>,
    /// `--until`: GHO only, the last year (`TimeDim`) to load.
    pub until: Option<i64>,
    /// Set by [`Api::resume_request`]: the load status.yaml recorded for the job.
    pub resume_load: Option<i64>,
}

/// What `psystem resume` (or the desktop app's Resume) says about a job; everything it leaves out comes from
/// what status.yaml recorded when the job started. See [`Api::resume_plan`] for which options may change.
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    /// `--db`: the destination (needed when the recorded one had a password).
    pub db_url: Option<String>,
    /// GHO, files: rows per request from here on (safe to change).
    pub page_size: Option<u64>,
    /// Releases: files or work units worked on at the same time (safe to change).
    pub workers: Option<usize>,
    /// Releases: heartbeat timeout of work units (safe to change).
    pub heartbeat_timeout: Option<std::time::Duration>,
    /// Releases: turn on `--allow-unverified` (the ledger records the load as unverified).
    pub allow_unverified: bool,
    /// Releases: turn on `--allow-casts`.
    pub allow_casts: bool,
    /// UniProt: turn on `--skip-bad-entries` (units written so far had no malformed entry, or they would have
    /// failed).
    pub skip_bad_entries: bool,
    /// Releases: must equal the job's mode.
    pub mode: Option<LoadMode>,
    /// Releases: must equal the job's release.
    pub release: Option<String>,
    /// Must name the job's source (status.yaml keeps it without credentials; this one may carry them).
    pub source_url: Option<String>,
    /// GHO, files: must equal the job's `--since`.
    pub since: Option<i64>,
    /// GHO, files: must equal the job's `--until`.
    pub until: Option<i64>,
    /// UniProt: must equal the job's unit size (bytes).
    pub unit_bytes: Option<u64>,
}

/// How a job resumes: a GHO/files run ([`Api::plan`], [`Api::start`]) or a release run ([`Api::plan_release`]).
#[derive(Debug, Clone)]
pub enum ResumePlan {
    /// A GHO or files job.
    Run(RunRequest),
    /// A release job (Open Targets, UniProt): one entry.
    Release(ReleaseRunRequest),
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

/// The GHO source settings of an entry: `--source-url`, else `etl.<key>.api`, else `source.api`; page size from
/// `--page-size`, else the entry, else `source.page_size`, else 1000; `--since/--until` or the entry's window.
fn gho_config(
    plugin: &psystem_core::plugin::Plugin,
    key: &str,
    entry: &psystem_core::plugin::EtlEntry,
    req: &RunRequest,
    where_: &str,
) -> Result<GhoConfig, ApiError> {
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
    source.since = req.since.or(entry.since);
    source.until = req.until.or(entry.until);
    Ok(source)
}

/// Parses a one-character option (`delimiter`, `quote`); `\t` and `tab` mean a tab.
fn one_byte(value: &str, what: &str, where_: &str) -> Result<u8, ApiError> {
    match value {
        "\t" | "\\t" | "tab" => Ok(b'\t'),
        v if v.len() == 1 && v.is_ascii() => Ok(v.as_bytes()[0]),
        v => Err(ApiError::Config(format!(
            "{where_}: `{what}` must be one ASCII character, not `{v}`"
        ))),
    }
}

impl Api {
    /// The `files` source settings of an entry; a relative path is relative to the plugin's folder, and
    /// `--source-url` replaces the path.
    fn files_config(
        &self,
        plugin: &psystem_core::plugin::Plugin,
        key: &str,
        entry: &psystem_core::plugin::EtlEntry,
        req: &RunRequest,
        where_: &str,
    ) -> Result<FilesConfig, ApiError> {
        let file = entry.file.clone().ok_or_else(|| {
            ApiError::Config(format!("{where_}: a files entry needs `file: {{path: …}}`"))
        })?;
        let path = req.source_url.clone().unwrap_or(file.path.clone());
        let path = if path.contains("://") || std::path::Path::new(&path).is_absolute() {
            path
        } else {
            let base = plugin.path.parent().unwrap_or(std::path::Path::new("."));
            base.join(&path).display().to_string()
        };
        let mut c = FilesConfig::new(path);
        fn parse<T: serde::de::DeserializeOwned>(
            v: &str,
            what: &str,
            where_: &str,
            key: &str,
        ) -> Result<T, ApiError> {
            serde_json::from_value(serde_json::json!(v))
                .map_err(|e| ApiError::Config(format!("{where_}: etl.{key}.file.{what}: {e}")))
        }
        if let Some(f) = &file.format {
            c.format = Some(parse(f, "format", where_, key)?);
        }
        if let Some(d) = &file.delimiter {
            c.delimiter = Some(one_byte(d, "delimiter", where_)?);
        }
        if let Some(q) = &file.quote {
            c.quote = Some(one_byte(q, "quote", where_)?);
        }
        if let Some(h) = file.header {
            c.header = h;
        }
        if let Some(n) = file.skip_rows {
            c.skip_rows = n;
        }
        if let Some(m) = &file.ignore_marker {
            c.ignore_marker = Some(m.clone()).filter(|m| !m.is_empty());
        }
        if let Some(mv) = &file.multi_valued {
            c.multi_valued = mv.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        if let Some(casts) = &file.casts {
            for (col, ty) in casts {
                c.casts.insert(
                    col.clone(),
                    parse(ty, &format!("casts.{col}"), where_, key)?,
                );
            }
        }
        if let Some(i) = file.infer_types {
            c.infer_types = i;
        }
        if let Some(n) = req.page_size.map(|n| n as usize).or(file.batch_rows) {
            if n == 0 {
                return Err(ApiError::Config(format!(
                    "{where_}: batch_rows must be at least 1"
                )));
            }
            c.batch_rows = n;
        }
        c.cache_dir = Some(self.home().root().join("cache").join("files"));
        Ok(c)
    }
}

/// The ID cache plan of an entry: its entity (with `unique_key` and `target_id`) and its references. Every
/// reference starts non-deferred; [`Api::plan_run`] marks those whose entity the same run loads.
fn id_plan(
    entry: &psystem_core::plugin::EtlEntry,
    url: &str,
    schema: &str,
    id_column: String,
    where_: &str,
) -> Result<Option<IdPlan>, ApiError> {
    let entity = match (&entry.entity, &entry.unique_key) {
        (Some(entity), Some(key)) => {
            let strategy = match &entry.target_id {
                None => {
                    let letters: String = entity
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric())
                        .take(2)
                        .collect();
                    IdStrategy::prefixed(format!("{}_", letters.to_uppercase()))
                }
                Some(TargetIdConfig {
                    prefix: Some(p),
                    length,
                    ..
                }) => IdStrategy::Prefixed {
                    prefix: p.clone(),
                    length: length.unwrap_or(psystem_postgres::idcache::DEFAULT_ID_LENGTH),
                },
                Some(TargetIdConfig {
                    from_column: Some(c),
                    ..
                }) => IdStrategy::FromColumn(c.clone()),
                Some(_) => IdStrategy::UuidV7,
            };
            Some(EntitySpec {
                entity: entity.clone(),
                unique_key: key.clone(),
                strategy,
            })
        }
        _ => None,
    };
    let references: Vec<ReferencePlan> = entry
        .references
        .iter()
        .flatten()
        .map(|(column, r)| {
            let columns = match r {
                ReferenceConfig::Entity(_) => vec![column.clone()],
                ReferenceConfig::Columns { columns, .. } => columns.clone(),
            };
            ReferencePlan {
                entity: r.entity().to_string(),
                columns,
                out_column: format!("{column}_target_id"),
                deferred: false,
            }
        })
        .collect();
    if entity.is_none() && references.is_empty() {
        return Ok(None);
    }
    if entry.target_id.is_some() && entity.is_none() {
        return Err(ApiError::Config(format!(
            "{where_}: `target_id` needs `entity` and `unique_key`"
        )));
    }
    Ok(Some(IdPlan {
        target: CacheTarget::new(url, schema),
        entity,
        id_column,
        references,
    }))
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

        let (source, natural_key) = match plugin.source_kind() {
            SourceKind::GhoOdata => (
                SourceSpec::Gho(gho_config(plugin, key, entry, req, &where_)?),
                Some(GHO_NATURAL_KEY),
            ),
            SourceKind::Files => (
                SourceSpec::Files(self.files_config(plugin, key, entry, req, &where_)?),
                None,
            ),
            SourceKind::Release => {
                return Err(ApiError::Config(format!(
                    "{where_}: plugin {} loads releases; plan it with Api::plan_release (`psystem run {}` does)",
                    plugin.name(),
                    plugin.name()
                )))
            }
        };

        let columns = ColumnMap::new(entry.transform.as_ref().and_then(|t| t.columns.clone()));
        let pg = entry
            .destination
            .as_ref()
            .and_then(|d| d.postgres.clone())
            .unwrap_or_default();
        let id_column = DEFAULT_ID_COLUMN.to_string();
        let primary_key = match pg.primary_key.clone() {
            Some(pk) => pk,
            None if entry.entity.is_some() => vec![id_column.clone()],
            None => natural_key
                .and_then(|k| columns.rename(k))
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
        let ids = id_plan(entry, &destination_url, &table.schema, id_column, &where_)?;
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
            force: req.force,
            ids,
            file_window: (matches!(plugin.source_kind(), SourceKind::Files)
                && (req.since.is_some() || req.until.is_some()))
            .then_some((req.since, req.until)),
            resume_load: req.resume_load,
        };
        Ok(PlannedJob {
            spec,
            destination_origin,
            notes,
        })
    }

    /// Plans a run of several entries of one plugin: `entries` (empty = the plugin's `run` entry), or every entry
    /// with `all`. Entries are ordered so that an entity is loaded before the entries that refer to it (file order
    /// otherwise); a reference to an entity that this run loads at the same step or later (a self-reference, or a
    /// cycle) is *deferred*: left null and resolved in a second pass ([`Api::resolve_deferred`]).
    ///
    /// # Errors
    /// As [`Api::plan`].
    pub async fn plan_run(
        &self,
        req: &RunRequest,
        entries: &[String],
        all: bool,
    ) -> Result<Vec<PlannedJob>, ApiError> {
        let catalog = self.catalog();
        let plugin = catalog.get(&req.plugin)?;
        plugin.ensure_enabled()?;
        let keys: Vec<String> = if all {
            plugin.manifest.etl.keys().cloned().collect()
        } else if entries.is_empty() {
            vec![plugin.entry(req.entry.as_deref())?.0.to_string()]
        } else {
            entries
                .iter()
                .map(|e| plugin.entry(Some(e)).map(|(k, _)| k.to_string()))
                .collect::<Result<_, _>>()?
        };
        let mut jobs = Vec::with_capacity(keys.len());
        for key in &keys {
            jobs.push(
                self.plan(&RunRequest {
                    entry: Some(key.clone()),
                    ..req.clone()
                })
                .await?,
            );
        }
        // Producers first: repeatedly take the first job whose referenced entities are all produced already (or
        // by no job of this run); a cycle falls back to file order.
        let produces = |j: &PlannedJob| {
            j.spec
                .ids
                .as_ref()
                .and_then(|p| p.entity.as_ref())
                .map(|e| e.entity.clone())
        };
        let needs = |j: &PlannedJob| -> Vec<String> {
            j.spec
                .ids
                .as_ref()
                .map(|p| p.references.iter().map(|r| r.entity.clone()).collect())
                .unwrap_or_default()
        };
        let all_produced: Vec<String> = jobs.iter().filter_map(produces).collect();
        let mut ordered: Vec<PlannedJob> = Vec::with_capacity(jobs.len());
        let mut done: Vec<String> = Vec::new();
        while !jobs.is_empty() {
            let ready = jobs.iter().position(|j| {
                needs(j).iter().all(|e| {
                    done.contains(e)
                        || !all_produced.contains(e)
                        || produces(j).as_deref() == Some(e)
                })
            });
            let j = jobs.remove(ready.unwrap_or(0));
            if let Some(e) = produces(&j) {
                done.push(e);
            }
            ordered.push(j);
        }
        let mut loaded: Vec<String> = Vec::new();
        for j in &mut ordered {
            let own = j
                .spec
                .ids
                .as_ref()
                .and_then(|p| p.entity.as_ref())
                .map(|e| e.entity.clone());
            if let Some(plan) = j.spec.ids.as_mut() {
                for r in &mut plan.references {
                    r.deferred = all_produced.contains(&r.entity) && !loaded.contains(&r.entity);
                }
            }
            if let Some(e) = own {
                loaded.push(e);
            }
        }
        Ok(ordered)
    }

    /// The second pass of a run: fills deferred references of `job` from the ID cache. Returns the references
    /// still unresolved, as (column, keystring), at most 50.
    ///
    /// # Errors
    /// [`ApiError::Destination`].
    pub async fn resolve_deferred(
        &self,
        job: &PlannedJob,
    ) -> Result<Vec<(String, String)>, ApiError> {
        let Some(plan) = &job.spec.ids else {
            return Ok(Vec::new());
        };
        let dest = psystem_postgres::Destination::connect(&job.spec.destination_url).await?;
        let mut left = Vec::new();
        for r in plan.references.iter().filter(|r| r.deferred) {
            for key in dest
                .resolve_deferred(&job.spec.table, &plan.target, r)
                .await?
            {
                left.push((r.out_column.clone(), key));
            }
        }
        left.truncate(50);
        Ok(left)
    }

    /// The destination URL by the documented order; starts the local cluster when it is the one chosen.
    /// The destination in the documented order (for release plans, which live in another module).
    pub(crate) async fn resolve_destination_for(
        &self,
        cli: Option<String>,
        manifest: Option<&ConfigValue>,
        notes: &mut Vec<String>,
    ) -> Result<(String, DestinationOrigin), ApiError> {
        self.resolve_destination(cli, manifest, notes).await
    }

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

    /// The request that resumes a GHO or files job of status.yaml, as [`Api::resume_plan`] makes it with only
    /// `db_url` and `page_size` given.
    ///
    /// # Errors
    /// As [`Api::resume_plan`]; [`ApiError::Config`] for a release job (resume it with [`Api::resume_plan`]).
    pub fn resume_request(
        &self,
        job: Option<&str>,
        db_url: Option<String>,
        page_size: Option<u64>,
    ) -> Result<RunRequest, ApiError> {
        let options = ResumeOptions {
            db_url,
            page_size,
            ..ResumeOptions::default()
        };
        match self.resume_plan(job, &options)? {
            ResumePlan::Run(req) => Ok(req),
            ResumePlan::Release(req) => Err(ApiError::Config(format!(
                "{}/{} is a release job; resume it with Api::resume_plan (`psystem resume` does)",
                req.plugin,
                req.entries.join(",")
            ))),
        }
    }

    /// The job of status.yaml named `job` (case-insensitive), or the only unfinished one when `job` is `None`.
    /// An unknown key is [`ApiError::NothingToResume`] when `resuming`, else [`ApiError::NoSuchJob`].
    fn find_job(&self, job: Option<&str>, resuming: bool) -> Result<(String, JobStatus), ApiError> {
        let file = self.status_store().read()?;
        let unfinished: Vec<(&String, &JobStatus)> = file
            .jobs
            .iter()
            .filter(|(_, j)| j.state.is_resumable())
            .collect();
        let (key, status) = match job {
            Some(k) => match file
                .jobs
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
            {
                Some(found) => found,
                None if resuming => return Err(self.nothing_to_resume(k, &file)),
                None => return Err(self.no_such_job(k, &file)),
            },
            None if unfinished.len() == 1 => unfinished[0],
            None => {
                return Err(ApiError::AmbiguousResume {
                    path: self.status_store().path().display().to_string(),
                    unfinished: unfinished.iter().map(|(k, _)| k.to_string()).collect(),
                })
            }
        };
        Ok((key.clone(), status.clone()))
    }

    fn nothing_to_resume(&self, k: &str, file: &psystem_jobs::StatusFile) -> ApiError {
        let (plugin, entry) = match k.split_once('/') {
            Some((p, e)) => (p.to_string(), Some(e.to_string())),
            None => (k.to_string(), None),
        };
        let catalog = self.catalog();
        let plugin = catalog
            .get(&plugin)
            .map(|p| p.name().to_string())
            .unwrap_or(plugin);
        let run = match entry {
            Some(e) => format!("psystem run {plugin} {e}"),
            None => format!("psystem run {plugin}"),
        };
        ApiError::NothingToResume {
            job: k.to_string(),
            path: self.status_store().path().display().to_string(),
            run,
            known: file.jobs.keys().cloned().collect(),
        }
    }

    /// How to resume a job of status.yaml (`job` may be omitted when exactly one job is unfinished): the same
    /// plugin, entry and every option the job was started with — GHO/files: source URL, page size, `--since`,
    /// `--until`; releases: release, mode, source URL, workers, unit size, `--skip-bad-entries`,
    /// `--allow-unverified`, `--allow-casts`, heartbeat timeout (status.yaml keeps them, see docs/STATUS.md).
    ///
    /// `options` may change what is safe to change (page size, workers, heartbeat timeout; turning on
    /// `--skip-bad-entries`, `--allow-unverified`, `--allow-casts`); an option that would make the rest of the
    /// load differ from what is already loaded (mode, release, source URL, `--since`, `--until`, unit size) must
    /// equal the job's own or is refused, naming the command that starts over with it. The destination is
    /// `options.db_url` if given, else the one status.yaml recorded when it holds no password, else the usual
    /// order.
    ///
    /// # Errors
    /// [`ApiError::NothingToResume`] (no such job), [`ApiError::AmbiguousResume`], [`ApiError::Config`] (an option
    /// that may not change, or does not apply to the job's kind), [`ApiError::Status`].
    pub fn resume_plan(
        &self,
        job: Option<&str>,
        options: &ResumeOptions,
    ) -> Result<ResumePlan, ApiError> {
        let (key, status) = self.find_job(job, true)?;
        let stored = &status.options;
        let recorded =
            Some(status.destination.clone()).filter(|d| !d.is_empty() && !d.contains("***"));
        let db_url = options.db_url.clone().or(recorded);
        let start_over = |flag: &str, asked: &str| {
            format!(
                "start over with it: `psystem run {} {} {flag} {asked} --restart` (or `psystem cancel {key}` first)",
                status.plugin, status.entry
            )
        };
        let fixed = |flag: &str, was: Option<String>, asked: String| -> Result<(), ApiError> {
            if was.as_deref() == Some(asked.as_str()) {
                return Ok(());
            }
            let was = match was {
                Some(w) => format!("was started with {flag} {w}"),
                None => format!("was started without {flag}"),
            };
            Err(ApiError::Config(format!(
                "job {key} {was}; a resume continues that load exactly as it started, so {flag} {asked} is refused. \
                 To load with {flag} {asked}, {}",
                start_over(flag, &asked)
            )))
        };
        // The source URL: the recorded one (status.yaml keeps it without credentials); an explicit one must be
        // the same place, and is used as given (it may carry the credentials the recorded one lacks).
        let source_url = match &options.source_url {
            Some(asked) => {
                let was = status.source_url.clone();
                if was.as_deref() != Some(redact_url(asked).as_str())
                    && was.as_deref() != Some(asked.as_str())
                {
                    fixed("--source-url", was, redact_url(asked))?;
                }
                Some(asked.clone())
            }
            None => status.source_url.clone().filter(|u| !u.contains("***")),
        };
        if status.source == psystem_jobs::release::SOURCE_KIND {
            let misplaced: Vec<&str> = [
                ("--page-size", options.page_size.is_some()),
                ("--since", options.since.is_some()),
                ("--until", options.until.is_some()),
            ]
            .iter()
            .filter(|(_, given)| *given)
            .map(|(f, _)| *f)
            .collect();
            if !misplaced.is_empty() {
                return Err(ApiError::Config(format!(
                    "{} appl{} to GHO and files jobs; {key} loads a release",
                    misplaced.join(", "),
                    if misplaced.len() == 1 { "ies" } else { "y" }
                )));
            }
            let mode = LoadMode::parse(&status.mode)
                .filter(|m| matches!(m, LoadMode::Replace | LoadMode::Merge));
            if let Some(asked) = options.mode {
                fixed("--mode", mode.map(|m| m.to_string()), asked.to_string())?;
            }
            if let Some(asked) = &options.release {
                fixed("--release", status.release.clone(), asked.clone())?;
            }
            if let (Some(asked), Some(was)) = (options.unit_bytes, stored.unit_bytes) {
                if asked != was {
                    fixed(
                        "--unit-size",
                        Some(format!("{was} bytes")),
                        format!("{asked} bytes"),
                    )?;
                }
            }
            return Ok(ResumePlan::Release(ReleaseRunRequest {
                plugin: status.plugin.clone(),
                entries: vec![status.entry.clone()],
                all: false,
                release: status.release.clone(),
                source_url,
                db_url,
                mode,
                parallel: None,
                workers: options.workers.or(stored.workers),
                fail_fast: false,
                force: false,
                restart: false,
                allow_unverified: options.allow_unverified || stored.allow_unverified,
                allow_casts: options.allow_casts || stored.allow_casts,
                unit_bytes: options.unit_bytes.or(stored.unit_bytes),
                skip_bad_entries: options.skip_bad_entries || stored.skip_bad_entries,
                heartbeat_timeout: options.heartbeat_timeout.or(stored
                    .heartbeat_timeout_secs
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(std::time::Duration::from_secs_f64)),
            }));
        }
        let misplaced: Vec<&str> = [
            ("--mode", options.mode.is_some()),
            ("--release", options.release.is_some()),
            ("--workers", options.workers.is_some()),
            ("--unit-size", options.unit_bytes.is_some()),
            ("--skip-bad-entries", options.skip_bad_entries),
            ("--allow-unverified", options.allow_unverified),
            ("--allow-casts", options.allow_casts),
            ("--heartbeat-timeout", options.heartbeat_timeout.is_some()),
        ]
        .iter()
        .filter(|(_, given)| *given)
        .map(|(f, _)| *f)
        .collect();
        if !misplaced.is_empty() {
            return Err(ApiError::Config(format!(
                "{} appl{} to release jobs; {key} is a {} job (its mode is set in its plugin file)",
                misplaced.join(", "),
                if misplaced.len() == 1 { "ies" } else { "y" },
                status.source
            )));
        }
        if let Some(asked) = options.since {
            fixed(
                "--since",
                stored.since.map(|y| y.to_string()),
                asked.to_string(),
            )?;
        }
        if let Some(asked) = options.until {
            fixed(
                "--until",
                stored.until.map(|y| y.to_string()),
                asked.to_string(),
            )?;
        }
        Ok(ResumePlan::Run(RunRequest {
            plugin: status.plugin.clone(),
            entry: Some(status.entry.clone()),
            db_url,
            source_url,
            page_size: options.page_size.or(status.page_size),
            restart: false,
            force: false,
            since: stored.since,
            until: stored.until,
            resume_load: status.load_id,
        }))
    }

    /// `psystem cancel JOB` (and the desktop app's Cancel of a job it does not run): abandons an unfinished job of
    /// any kind — GHO, files, Open Targets or UniProt release. In one transaction its unfinished loads are marked
    /// `cancelled`, their staging (or seen) tables dropped and their work units not done deleted
    /// ([`psystem_postgres::work_units::cancel_job`]); the rows an `append` load had committed are deleted there
    /// too (the status's `rows` then counts what stays), rows a `merge` load (or a UniProt load) already wrote
    /// into the live table stay. status.yaml then says `cancelled`, and the next `psystem run`
    /// starts from the beginning. The destination is `db_url`, else status.yaml's when it holds no password,
    /// else the entry's manifest, `DATABASE_URL`, the local database.
    ///
    /// A job that a live process runs is refused (`JobError::Busy`): its advisory job lock is held, or
    /// status.yaml says `running` with that process alive. Pause it there first. A job that is `completed` (or
    /// already `cancelled`) with no unfinished load in the ledger is refused with [`ApiError::NothingToCancel`],
    /// changing nothing.
    ///
    /// # Errors
    /// [`ApiError::NoSuchJob`], [`ApiError::AmbiguousResume`], [`ApiError::NothingToCancel`]; [`ApiError::Job`]
    /// with `JobError::Busy` while a process runs the job; [`ApiError::Destination`].
    pub async fn cancel(
        &self,
        job: Option<&str>,
        db_url: Option<String>,
    ) -> Result<JobStatus, ApiError> {
        let (key, status) = self.find_job(job, false)?;
        let busy = || ApiError::Job(psystem_jobs::JobError::Busy { job: key.clone() });
        if status.state == psystem_core::JobState::Running
            && !status.is_interrupted()
            && status.pid.is_some_and(|p| p != std::process::id())
        {
            return Err(busy());
        }
        let recorded =
            Some(status.destination.clone()).filter(|d| !d.is_empty() && !d.contains("***"));
        let catalog = self.catalog();
        let manifest_url = catalog
            .get(&status.plugin)
            .ok()
            .and_then(|p| p.entry(Some(&status.entry)).ok())
            .and_then(|(_, e)| e.destination.as_ref())
            .and_then(|d| d.postgres.as_ref())
            .and_then(|pg| pg.url.clone());
        let mut notes = Vec::new();
        let (url, _) = self
            .resolve_destination(db_url.or(recorded), manifest_url.as_ref(), &mut notes)
            .await?;
        let dest = psystem_postgres::Destination::connect(&url).await?;
        let lock = dest.try_lock_job(&key).await?.ok_or_else(busy)?;
        let cancelled = psystem_postgres::work_units::cancel_job(&dest, &key).await?;
        drop(lock);
        if cancelled.loads.is_empty()
            && matches!(
                status.state,
                psystem_core::JobState::Completed | psystem_core::JobState::Cancelled
            )
        {
            // Marking a completed job cancelled would tell a lie about a complete table.
            return Err(ApiError::NothingToCancel {
                job: key,
                state: status.state.to_string(),
                run: format!("psystem run {} {}", status.plugin, status.entry),
            });
        }
        tracing::info!(job = %key, loads = ?cancelled.loads, removed_rows = cancelled.removed_rows,
            kept_rows = cancelled.kept_rows, "Job cancelled.");
        let updated = self.status_store().update(|f| {
            f.jobs.get_mut(&key).map(|j| {
                j.state = psystem_core::JobState::Cancelled;
                j.pid = None;
                if cancelled.removed_rows > 0 {
                    // The rows it had appended are gone from the table; `rows` counts what stays.
                    j.rows = j.rows.saturating_sub(cancelled.removed_rows);
                }
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
