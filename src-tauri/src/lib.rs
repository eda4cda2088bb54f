//! The psystem desktop app: a Tauri 2 shell whose commands each make one call into `psystem-api`, the API layer the
//! `psystem` CLI uses. The UI (Svelte, `ui/`) talks to it through the IPC contract in `docs/DESKTOP.md`: commands
//! returning `Result<T, {code, message}>` and events (`job-progress`, `job-finished`, `verify-progress`,
//! `quit-requested`).
//!
//! Environment: `PSYSTEM_HOME` (default `~/.psystem`), `PSYSTEM_ASSETS` (bundled plugins), `DATABASE_URL` (a
//! destination used when no saved database is active and the plugin names none), `RUST_LOG` (log filter; logs go to
//! stderr and never contain passwords).

pub mod commands;
pub mod databases;
pub mod error;
pub mod jobs;

use databases::DatabaseStore;
use jobs::{EventSink, Jobs};
use psystem_api::Api;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tauri::{AppHandle, Emitter, Manager};

/// What every command can reach.
pub struct AppState {
    /// The API layer (psystem home and bundled assets).
    pub api: Api,
    /// Jobs this app runs, and the view of status.yaml.
    pub jobs: Jobs,
    /// Saved databases.
    pub databases: DatabaseStore,
    /// Set once the window's close was refused and `quit-requested` sent; a second close then pauses and quits.
    pub quit_asked: AtomicBool,
}

struct TauriSink(AppHandle);

impl EventSink for TauriSink {
    fn emit(&self, name: &str, payload: serde_json::Value) {
        if let Err(e) = self.0.emit(name, payload) {
            tracing::warn!("cannot send event {name} to the window: {e}");
        }
    }
}

/// `quit-requested` payload.
#[derive(Debug, Clone, Serialize)]
struct QuitRequested {
    running: usize,
}

/// Starts the app; returns when it exits.
///
/// # Errors
/// No psystem home folder, or Tauri cannot start (no display).
pub fn run() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let api = Api::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(
        home = %api.home().root().display(),
        assets = %api.assets().display(),
        "psystem desktop starting"
    );
    tauri::Builder::default()
        .setup(move |app| {
            let sink: Arc<dyn EventSink> = Arc::new(TauriSink(app.handle().clone()));
            let databases = DatabaseStore::new(api.home());
            app.manage(AppState {
                jobs: Jobs::new(api.clone(), sink),
                databases,
                api: api.clone(),
                quit_asked: AtomicBool::new(false),
            });
            Ok(())
        })
        .on_window_event(|window, event| {
            if let tauri::WindowEvent::CloseRequested { api, .. } = event {
                let app = window.app_handle().clone();
                let state = app.state::<AppState>();
                let running = state.jobs.running().len();
                if running == 0 {
                    return;
                }
                api.prevent_close();
                if !state.quit_asked.swap(true, Ordering::SeqCst) {
                    let _ = app.emit("quit-requested", QuitRequested { running });
                } else {
                    // Closed twice without an answer: pause at a safe point, then quit.
                    let jobs = state.jobs.clone();
                    tauri::async_runtime::spawn(async move {
                        jobs.pause_all_and_wait(std::time::Duration::from_secs(120))
                            .await;
                        app.exit(0);
                    });
                }
            }
        })
        .invoke_handler(tauri::generate_handler![
            commands::plugins_list,
            commands::plugin_show,
            commands::plugin_set_enabled,
            commands::releases_list,
            commands::release_show,
            commands::release_verify,
            commands::file_checks,
            commands::databases_list,
            commands::database_save,
            commands::database_remove,
            commands::database_activate,
            commands::database_test,
            commands::local_db_status,
            commands::local_db_up,
            commands::local_db_down,
            commands::jobs_list,
            commands::job_start,
            commands::job_pause,
            commands::job_resume,
            commands::job_cancel,
            commands::job_log,
            commands::idcache_entities,
            commands::idcache_list,
            commands::idcache_export,
            commands::runs_list,
            commands::run_detail,
            commands::app_quit,
        ])
        .run(tauri::generate_context!())
        .map_err(|e| anyhow::anyhow!("the desktop app failed: {e}"))
}
