//! The Tauri commands: each one call into [`psystem_api::Api`] (or the shell's [`crate::jobs::Jobs`] and
//! [`crate::databases::DatabaseStore`]). Names and arguments are the IPC contract of `docs/DESKTOP.md`; JavaScript
//! passes arguments in camelCase (`sourceUrl`), Tauri maps them to these snake_case parameters.

use crate::databases::{ConnectionTest, DatabaseView};
use crate::error::{IpcError, IpcResult};
use crate::jobs::{JobCard, StartRequest};
use crate::AppState;
use psystem_api::idcache::CacheScope;
use psystem_api::plugins::{PluginDetail, PluginList, PluginSummary};
use psystem_api::releases::{ReleaseDetail, ShowOptions, VerifyReport};
use psystem_api::{ApiError, ClusterStatus};
use psystem_postgres::idcache::{CacheQuery, CacheSort, EntitySummary};
use psystem_postgres::metrics::{RunDetail, RunSummary};
use psystem_releases::model::ReleaseName;
use serde::Serialize;
use tauri::{AppHandle, Emitter, State};

type St<'a> = State<'a, AppState>;

impl AppState {
    /// The active saved database's URL (with password), if one is active; a keychain failure is an error.
    fn active_url(&self) -> IpcResult<Option<String>> {
        self.databases.active_url()
    }

    /// `db`, else the active database: the database of ledger-side operations (the API then falls back to
    /// `DATABASE_URL`, then the local cluster).
    fn db_or_active(&self, db: Option<String>) -> IpcResult<Option<String>> {
        match db.filter(|d| !d.is_empty()) {
            Some(d) => Ok(Some(d)),
            None => self.active_url(),
        }
    }
}

// ---- Plugins ----

/// `plugins_list()` → `PluginList` (`{ plugins: PluginSummary[], errors: string[] }`).
#[tauri::command]
pub async fn plugins_list(state: St<'_>) -> IpcResult<PluginList> {
    Ok(state.api.plugins_list())
}

/// `plugin_show({ name })` → `PluginDetail`.
#[tauri::command]
pub async fn plugin_show(state: St<'_>, name: String) -> IpcResult<PluginDetail> {
    Ok(state.api.plugin_show(&name)?)
}

/// `plugin_set_enabled({ name, enabled })` → `PluginSummary`, persisted as `psystem plugins enable|disable` does.
#[tauri::command]
pub async fn plugin_set_enabled(
    state: St<'_>,
    name: String,
    enabled: bool,
) -> IpcResult<PluginSummary> {
    Ok(state.api.set_plugin_enabled(&name, enabled)?)
}

// ---- Releases ----

/// `releases_list({ plugin, sourceUrl? })` → `[{ name, latest }]`, newest first.
#[tauri::command]
pub async fn releases_list(
    state: St<'_>,
    plugin: String,
    source_url: Option<String>,
) -> IpcResult<Vec<ReleaseName>> {
    Ok(state
        .api
        .releases_list(&plugin, source_url.as_deref())
        .await?)
}

/// `release_show({ plugin, release?, datasets?, files?, schema?, sourceUrl? })` → `ReleaseDetail`.
#[tauri::command]
#[allow(clippy::too_many_arguments)]
pub async fn release_show(
    state: St<'_>,
    plugin: String,
    release: Option<String>,
    datasets: Option<Vec<String>>,
    files: Option<bool>,
    schema: Option<bool>,
    source_url: Option<String>,
) -> IpcResult<ReleaseDetail> {
    let options = ShowOptions {
        datasets: datasets.unwrap_or_default(),
        files: files.unwrap_or(false),
        schema: schema.unwrap_or(false),
        suggest_keys: false,
    };
    Ok(state
        .api
        .release_show(&plugin, release.as_deref(), source_url.as_deref(), &options)
        .await?)
}

/// `verify-progress` payload.
#[derive(Debug, Clone, Serialize)]
struct VerifyProgress {
    plugin: String,
    release: String,
    path: String,
    done: usize,
    total: usize,
    status: String,
    detail: Option<String>,
}

/// `release_verify({ plugin, release?, datasets?, db?, sourceUrl? })` → `VerifyReport`; emits `verify-progress` per
/// file. Verdicts are recorded in `psystem.files` of `db`, else the active database, else `DATABASE_URL` (none of
/// them: not recorded).
#[tauri::command]
pub async fn release_verify(
    app: AppHandle,
    state: St<'_>,
    plugin: String,
    release: Option<String>,
    datasets: Option<Vec<String>>,
    db: Option<String>,
    source_url: Option<String>,
) -> IpcResult<VerifyReport> {
    let datasets = datasets.unwrap_or_default();
    let db = state.db_or_active(db)?.or_else(env_database_url);
    // The file count for `total`: one listing before the downloads.
    let show = state
        .api
        .release_show(
            &plugin,
            release.as_deref(),
            source_url.as_deref(),
            &ShowOptions {
                datasets: datasets.clone(),
                ..ShowOptions::default()
            },
        )
        .await?;
    let total: usize = show.datasets.iter().map(|d| d.files).sum();
    let release_name = show.release.clone();
    let mut done = 0usize;
    let mut on_file = |c: &psystem_releases::verify::FileCheck| {
        done += 1;
        let _ = app.emit(
            "verify-progress",
            VerifyProgress {
                plugin: plugin.clone(),
                release: release_name.clone(),
                path: c.path.clone(),
                done,
                total,
                status: c.status.as_str().to_string(),
                detail: c.detail.clone(),
            },
        );
    };
    Ok(state
        .api
        .release_verify(
            &plugin,
            Some(&show.release),
            source_url.as_deref(),
            &datasets,
            db.as_deref(),
            &mut on_file,
        )
        .await?)
}

fn env_database_url() -> Option<String> {
    std::env::var(psystem_api::DATABASE_URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
}

/// `file_checks({ plugin, release, db? })` → the `psystem.files` verdicts of that release (`[]` when there is no
/// database to ask: no `db`, no active database, no `DATABASE_URL`, or the ledger does not exist yet).
#[tauri::command]
pub async fn file_checks(
    state: St<'_>,
    plugin: String,
    release: String,
    db: Option<String>,
) -> IpcResult<Vec<psystem_postgres::release_load::FileCheck>> {
    let Some(url) = state.db_or_active(db)?.or_else(env_database_url) else {
        return Ok(Vec::new());
    };
    let dest = psystem_postgres::Destination::connect(&url)
        .await
        .map_err(ApiError::from)?;
    match psystem_postgres::release_load::file_checks(&dest, &plugin, &release).await {
        Ok(v) => Ok(v),
        // No psystem.files table yet: nothing verified.
        Err(e) if e.to_string().contains("does not exist") => Ok(Vec::new()),
        Err(e) => Err(ApiError::from(e).into()),
    }
}

// ---- Databases ----

/// `databases_list()` payload.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseList {
    /// The active database's name.
    pub active: Option<String>,
    /// Saved databases.
    pub databases: Vec<DatabaseView>,
    /// The local cluster psystem manages (`null` when its state cannot be read; see `localError`).
    pub local: Option<ClusterStatus>,
    /// Why `local` is null.
    pub local_error: Option<String>,
}

/// `databases_list()` → `{ active, databases, local, localError }`.
#[tauri::command]
pub async fn databases_list(state: St<'_>) -> IpcResult<DatabaseList> {
    let (active, databases) = state.databases.list()?;
    let (local, local_error) = match state.api.db_status().await {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(IpcError::from(e).message)),
    };
    Ok(DatabaseList {
        active,
        databases,
        local,
        local_error,
    })
}

/// `database_save({ name, url, password?, passwordEnv? })` → the saved entry.
#[tauri::command]
pub async fn database_save(
    state: St<'_>,
    name: String,
    url: String,
    password: Option<String>,
    password_env: Option<String>,
) -> IpcResult<DatabaseView> {
    state.databases.save(&name, &url, password, password_env)
}

/// `database_remove({ name })`.
#[tauri::command]
pub async fn database_remove(state: St<'_>, name: String) -> IpcResult<()> {
    state.databases.remove(&name)
}

/// `database_activate({ name })` → the entry, now active.
#[tauri::command]
pub async fn database_activate(state: St<'_>, name: String) -> IpcResult<DatabaseView> {
    state.databases.activate(&name)
}

/// `database_test({ name })` → `{ ok, serverVersion?, message? }`.
#[tauri::command]
pub async fn database_test(state: St<'_>, name: String) -> IpcResult<ConnectionTest> {
    let url = match state.databases.connection_url(&name) {
        Ok(u) => u,
        Err(e) if e.code == "database_not_found" => return Err(e),
        Err(e) => {
            return Ok(ConnectionTest {
                ok: false,
                server_version: None,
                message: Some(e.message),
            })
        }
    };
    Ok(crate::databases::test_connection(&url).await)
}

/// `local_db_status()` → `ClusterStatus`.
#[tauri::command]
pub async fn local_db_status(state: St<'_>) -> IpcResult<ClusterStatus> {
    Ok(state.api.db_status().await?)
}

/// `local_db_up()` → `ClusterStatus` (initialises the cluster the first time).
#[tauri::command]
pub async fn local_db_up(state: St<'_>) -> IpcResult<ClusterStatus> {
    Ok(state.api.db_up().await?)
}

/// `local_db_down()` → `ClusterStatus`.
#[tauri::command]
pub async fn local_db_down(state: St<'_>) -> IpcResult<ClusterStatus> {
    Ok(state.api.db_down().await?)
}

// ---- Jobs ----

/// `jobs_list()` → `JobCard[]`, from status.yaml plus the live state of jobs this app runs.
#[tauri::command]
pub async fn jobs_list(state: St<'_>) -> IpcResult<Vec<JobCard>> {
    state.jobs.list()
}

/// `job_start({ plugin, entry?, db?, release?, mode?, sourceUrl?, pageSize?, restart?, force? })` → `{ key }`.
/// Without `db`, the active database is the destination unless the plugin names its own.
#[tauri::command]
#[allow(clippy::too_many_arguments)]
pub async fn job_start(
    state: St<'_>,
    plugin: String,
    entry: Option<String>,
    db: Option<String>,
    release: Option<String>,
    mode: Option<String>,
    source_url: Option<String>,
    page_size: Option<u64>,
    restart: Option<bool>,
    force: Option<bool>,
) -> IpcResult<JobKey> {
    let entry = entry.filter(|e| !e.is_empty());
    let active = if db.as_deref().is_some_and(|d| !d.is_empty()) {
        None
    } else {
        state.active_url()?
    };
    let db = state.jobs.default_db(&plugin, entry.as_deref(), db, active);
    let key = state
        .jobs
        .start(StartRequest {
            plugin,
            entry,
            db,
            release: release.filter(|r| !r.is_empty()),
            mode: mode.filter(|m| !m.is_empty()),
            source_url: source_url.filter(|u| !u.is_empty()),
            page_size,
            restart: restart.unwrap_or(false),
            force: force.unwrap_or(false),
        })
        .await?;
    Ok(JobKey { key })
}

/// `{ key }`.
#[derive(Debug, Clone, Serialize)]
pub struct JobKey {
    /// The job key `<plugin>/<entry>`.
    pub key: String,
}

/// `job_pause({ key })`: pause at the next safe point (page or file boundary).
#[tauri::command]
pub async fn job_pause(state: St<'_>, key: String) -> IpcResult<()> {
    state.jobs.pause(&key)
}

/// `job_resume({ key })` → `{ key }`: resume from the checkpoint (as `psystem resume KEY`).
#[tauri::command]
pub async fn job_resume(state: St<'_>, key: String) -> IpcResult<JobKey> {
    let active = state.active_url().ok().flatten();
    let key = state.jobs.resume(&key, active).await?;
    Ok(JobKey { key })
}

/// `job_cancel({ key })`: stop (if running here) and mark cancelled (as `psystem cancel KEY`).
#[tauri::command]
pub async fn job_cancel(state: St<'_>, key: String) -> IpcResult<()> {
    let active = state.active_url().ok().flatten();
    state.jobs.cancel(&key, active).await
}

/// `job_log({ key, lines? })` → the last `lines` (default 100) log lines of the job.
#[tauri::command]
pub async fn job_log(state: St<'_>, key: String, lines: Option<usize>) -> IpcResult<Vec<String>> {
    Ok(state.jobs.log(&key, lines.unwrap_or(100)))
}

// ---- ID cache and history ----

/// `idcache_entities({ db? })` → `EntitySummary[]` (every schema).
#[tauri::command]
pub async fn idcache_entities(state: St<'_>, db: Option<String>) -> IpcResult<Vec<EntitySummary>> {
    let scope = CacheScope {
        db_url: state.db_or_active(db)?,
        schema: None,
    };
    Ok(state.api.idcache_entities(&scope).await?)
}

/// One row of `idcache_list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheRow {
    /// The unique key (keystring).
    pub unique_key: String,
    /// The target ID.
    pub target_id: String,
    /// The load (`psystem.loads.id`) that first saw it.
    pub first_seen: i64,
    /// The load that last saw it.
    pub last_seen: i64,
}

/// `idcache_list` payload.
#[derive(Debug, Clone, Serialize)]
pub struct CacheRows {
    /// Matching entries in all.
    pub total: i64,
    /// This page.
    pub rows: Vec<CacheRow>,
}

/// `idcache_list({ db?, schema?, entity, search?, sort?, desc?, page, pageSize })` → `{ total, rows }`; `sort` is
/// `uniqueKey` (default; `unique_key` too), `targetId`, `firstSeen` or `lastSeen`; `page` starts at 0 (offset =
/// `page × pageSize`), `pageSize` is 1 to 10000 (default 100).
#[tauri::command]
#[allow(clippy::too_many_arguments)]
pub async fn idcache_list(
    state: St<'_>,
    db: Option<String>,
    schema: Option<String>,
    entity: String,
    search: Option<String>,
    sort: Option<String>,
    desc: Option<bool>,
    page: Option<i64>,
    page_size: Option<i64>,
) -> IpcResult<CacheRows> {
    let sort = match sort.as_deref().unwrap_or("uniqueKey") {
        "uniqueKey" | "unique_key" | "key" => CacheSort::UniqueKey,
        "targetId" | "target_id" | "id" => CacheSort::TargetId,
        "firstSeen" | "first_seen" | "first" => CacheSort::FirstSeen,
        "lastSeen" | "last_seen" | "last" => CacheSort::LastSeen,
        other => {
            return Err(IpcError::new(
                "invalid_argument",
                format!("sort must be uniqueKey, targetId, firstSeen or lastSeen, not `{other}`"),
            ))
        }
    };
    let page = page.unwrap_or(0);
    let page_size = page_size.unwrap_or(100);
    if page < 0 || !(1..=10_000).contains(&page_size) {
        return Err(IpcError::new(
            "invalid_argument",
            "page starts at 0 and pageSize is 1 to 10000",
        ));
    }
    let query = CacheQuery {
        search: search.filter(|s| !s.is_empty()),
        sort,
        descending: desc.unwrap_or(false),
        offset: page * page_size,
        limit: page_size,
    };
    let scope = CacheScope {
        db_url: state.db_or_active(db)?,
        schema: Some(schema.unwrap_or_else(|| "public".into())),
    };
    let found = state.api.idcache_list(&scope, &entity, &query).await?;
    Ok(CacheRows {
        total: found.total,
        rows: found
            .entries
            .into_iter()
            .map(|e| CacheRow {
                unique_key: e.unique_key,
                target_id: e.target_id,
                first_seen: e.first_seen_run,
                last_seen: e.last_seen_run,
            })
            .collect(),
    })
}

/// `{ rows }` of an export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportCount {
    /// Entries written.
    pub rows: u64,
}

/// `idcache_export({ db?, schema?, entity, path })` → `{ rows }`: CSV `unique_key,target_id,first_seen_run,
/// last_seen_run` written to `path`.
#[tauri::command]
pub async fn idcache_export(
    state: St<'_>,
    db: Option<String>,
    schema: Option<String>,
    entity: String,
    path: String,
) -> IpcResult<ExportCount> {
    let scope = CacheScope {
        db_url: state.db_or_active(db)?,
        schema: Some(schema.unwrap_or_else(|| "public".into())),
    };
    let file =
        std::fs::File::create(&path).map_err(|e| IpcError::new("io", format!("{path}: {e}")))?;
    let mut out = std::io::BufWriter::new(file);
    let rows = state.api.idcache_export(&scope, &entity, &mut out).await?;
    std::io::Write::flush(&mut out).map_err(|e| IpcError::new("io", format!("{path}: {e}")))?;
    Ok(ExportCount { rows })
}

/// `runs_list({ db?, limit? })` → `RunSummary[]`, newest first (default 50).
#[tauri::command]
pub async fn runs_list(
    state: St<'_>,
    db: Option<String>,
    limit: Option<i64>,
) -> IpcResult<Vec<RunSummary>> {
    let db = state.db_or_active(db)?;
    Ok(state.api.runs(db, limit.unwrap_or(50)).await?)
}

/// `run_detail({ db?, id })` → `RunDetail`, or `null` when the ledger has no such load.
#[tauri::command]
pub async fn run_detail(
    state: St<'_>,
    db: Option<String>,
    id: i64,
) -> IpcResult<Option<RunDetail>> {
    let db = state.db_or_active(db)?;
    Ok(state.api.run_detail(db, id).await?)
}

// ---- App ----

/// `app_quit({ pauseJobs })`: with `pauseJobs`, pauses every running job at its next safe point and waits (at most
/// 2 minutes) until they report paused; then exits.
#[tauri::command]
pub async fn app_quit(app: AppHandle, state: St<'_>, pause_jobs: Option<bool>) -> IpcResult<()> {
    if pause_jobs.unwrap_or(true) {
        let left = state
            .jobs
            .pause_all_and_wait(std::time::Duration::from_secs(120))
            .await;
        if !left.is_empty() {
            tracing::warn!("quitting while {} still run", left.join(", "));
        }
    }
    app.exit(0);
    Ok(())
}
