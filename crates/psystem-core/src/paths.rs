//! Where psystem keeps its state.
//!
//! Everything lives under one folder, the *psystem home*: `$PSYSTEM_HOME` when that environment variable is set
//! and not empty, else `~/.psystem`. Inside it:
//!
//! | path | content |
//! |---|---|
//! | `status.yaml` | jobs and their checkpoints (see `docs/STATUS.md`) |
//! | `settings.yaml` | user settings, such as the enabled state of bundled plugins |
//! | `plugins/<folder>/plugin.yaml` | the user's plugins |
//! | `postgres/` | the managed local PostgreSQL cluster |
//! | `logs/` | log files of runs |

use std::path::{Path, PathBuf};

/// Environment variable that overrides `~/.psystem`.
pub const HOME_ENV: &str = "PSYSTEM_HOME";
/// Environment variable that overrides the folder of bundled assets (which holds `plugins/`).
pub const ASSETS_ENV: &str = "PSYSTEM_ASSETS";

/// The psystem home folder and the paths inside it. Cheap to clone; creates nothing by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home at an explicit folder (tests, `--home`).
    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// `$PSYSTEM_HOME` if set and not empty, else `~/.psystem`.
    ///
    /// # Errors
    /// [`HomeError`] when neither `PSYSTEM_HOME` nor the user's home folder can be determined.
    pub fn from_env() -> Result<Home, HomeError> {
        if let Some(v) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            return Ok(Home::at(PathBuf::from(v)));
        }
        let base = directories::BaseDirs::new().ok_or(HomeError)?;
        Ok(Home::at(base.home_dir().join(".psystem")))
    }

    /// The home folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `status.yaml`: jobs and their checkpoints.
    pub fn status_file(&self) -> PathBuf {
        self.root.join("status.yaml")
    }
    /// `settings.yaml`: user settings.
    pub fn settings_file(&self) -> PathBuf {
        self.root.join("settings.yaml")
    }
    /// `plugins/`: the user's plugin folders.
    pub fn plugins_dir(&self) -> PathBuf {
        self.root.join("plugins")
    }
    /// `logs/`: log files.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// `postgres/`: the managed local PostgreSQL cluster.
    pub fn postgres_dir(&self) -> PathBuf {
        self.root.join("postgres")
    }
}

/// Neither `PSYSTEM_HOME` nor the user's home folder is known.
#[derive(Debug, thiserror::Error)]
#[error("cannot find the psystem home: set PSYSTEM_HOME or HOME")]
pub struct HomeError;

/// The folder of bundled assets (`plugins/`, demo data), first found of:
/// `$PSYSTEM_ASSETS`; `<exe dir>/../share/psystem/assets` (an installed layout); `/usr/share/psystem/assets`;
/// the `assets/` folder of the source tree this binary was built from.
pub fn assets_dir() -> PathBuf {
    if let Some(v) = std::env::var_os(ASSETS_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("../share/psystem/assets"));
        }
    }
    candidates.push(PathBuf::from("/usr/share/psystem/assets"));
    for c in &candidates {
        if c.join("plugins").is_dir() {
            return c.clone();
        }
    }
    let built = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets"));
    std::fs::canonicalize(&built).unwrap_or(built)
}
