//! The requests of release loads, shared by `releases` (which plans them) and `runs` (whose resume of a release
//! job produces one) without either module depending on the other.

use psystem_core::LoadMode;

/// What the user asked to load from a release.
#[derive(Debug, Clone, Default)]
pub struct ReleaseRunRequest {
    /// The plugin.
    pub plugin: String,
    /// Entries (datasets) to load; empty = the plugin's `run` entry; see `all`.
    pub entries: Vec<String>,
    /// Every entry of the plugin.
    pub all: bool,
    /// `--release` (default: latest).
    pub release: Option<String>,
    /// `--source-url`: another folder of releases (a mirror).
    pub source_url: Option<String>,
    /// `--db`.
    pub db_url: Option<String>,
    /// `--mode`: overrides the entries' modes.
    pub mode: Option<LoadMode>,
    /// `--parallel` datasets.
    pub parallel: Option<usize>,
    /// `--workers` files per dataset.
    pub workers: Option<usize>,
    /// `--fail-fast`.
    pub fail_fast: bool,
    /// `--force`.
    pub force: bool,
    /// `--restart`.
    pub restart: bool,
    /// `--allow-unverified`.
    pub allow_unverified: bool,
    /// `--allow-casts`.
    pub allow_casts: bool,
    /// UniProt: `--unit-size`, the target size of a work unit in decompressed bytes.
    pub unit_bytes: Option<u64>,
    /// UniProt: `--skip-bad-entries` (count and list malformed entries instead of failing).
    pub skip_bad_entries: bool,
    /// `--heartbeat-timeout`, after which a silent worker's unit is reclaimed.
    pub heartbeat_timeout: Option<std::time::Duration>,
}
