//! Plugin manifests: the YAML files that name a source and its ETL entries, and where they are found.
//!
//! A plugin is a folder holding `plugin.yaml` (or `config.yaml`, the name the Psystem seed used). Folders are
//! discovered in the bundled `assets/plugins/` and in the user's `$PSYSTEM_HOME/plugins/`; a user plugin with the
//! same `name` as a bundled one takes its place.
//!
//! The format is the Psystem seed's, unchanged, with extensions (the full reference is in the README):
//!
//! ```yaml
//! name: GHOTopOSTGRES          # the plugin's name (required)
//! creator: Zenysis             # who wrote it
//! description: …               # one line shown in lists
//! enabled: true                # false refuses every run until `psystem plugins enable NAME`
//! run: NCDMORT3070             # the ETL entry run when none is named
//! source:                      # optional; defaults to kind gho_odata
//!   kind: gho_odata
//!   page_size: 1000
//! etl:
//!   NCDMORT3070:               # an ETL entry
//!     indicator: NCDMORT3070
//!     api: https://ghoapi.azureedge.net/api
//!     transform:
//!       columns: {Id: Id, Value: Value}     # source column: destination column, in this order
//!     destination:
//!       postgres:
//!         url: !GHOTopOSTGRES_DATABASE_URL  # value of that environment variable, then the tag's scalar
//!         schema: public
//!         table: ncdmort3070
//!         mode: merge                       # append | replace | merge
//!         primary_key: [Id]
//! ```
//!
//! Secrets are never written in a manifest: `!env NAME` (our form) and `!NAME suffix` (the seed's form) read them
//! from the environment when the value is used. Unknown keys and type errors are reported with the file, line and
//! column.

mod duplicate_keys;

use crate::job::LoadMode;
use crate::paths::Home;
use indexmap::IndexMap;
use serde::de::{self, Deserializer, EnumAccess, VariantAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// File names recognised as a plugin manifest inside a plugin folder, in order of preference.
pub const MANIFEST_FILE_NAMES: [&str; 2] = ["plugin.yaml", "config.yaml"];

/// A plugin manifest as written in its YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginManifest {
    /// The plugin's name, used on the command line (matched case-insensitively).
    pub name: String,
    /// Who wrote the plugin.
    #[serde(default)]
    pub creator: Option<String>,
    /// A one-line description.
    #[serde(default)]
    pub description: Option<String>,
    /// `false` refuses every run of the plugin. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The ETL entry run when the user names none.
    #[serde(default)]
    pub run: Option<String>,
    /// Settings shared by every entry. Absent means a WHO GHO OData source (the seed's only kind).
    #[serde(default)]
    pub source: Option<SourceConfig>,
    /// The ETL entries, in file order.
    pub etl: IndexMap<String, EtlEntry>,
}

fn default_true() -> bool {
    true
}

/// The kind of source a plugin reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// WHO Global Health Observatory OData API (<https://www.who.int/data/gho/info/gho-odata-api>).
    #[default]
    GhoOdata,
    /// Local or remote tables: CSV, TSV, Parquet, JSON lines (`etl.<key>.file`).
    Files,
    /// Releases of a data provider (`source.provider`, e.g. `opentargets`) under `source.url`: each entry loads
    /// one dataset (`etl.<key>.dataset`) of a release into one table.
    Release,
}

impl SourceKind {
    /// The snake_case name used in manifests and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::GhoOdata => "gho_odata",
            SourceKind::Files => "files",
            SourceKind::Release => "release",
        }
    }
}

/// Plugin-wide source settings (`source:`); each entry may override `api` and `page_size`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The kind of source.
    #[serde(default)]
    pub kind: SourceKind,
    /// Base URL of the API, for entries that name none.
    #[serde(default)]
    pub api: Option<String>,
    /// Rows per request. Default 1000.
    #[serde(default)]
    pub page_size: Option<u64>,
    /// `release` sources: the provider whose layout the releases follow (`opentargets`).
    #[serde(default)]
    pub provider: Option<String>,
    /// `release` sources: the URL of the folder holding the releases (`file://`, `http(s)://`, `ftp://`, `gs://`).
    #[serde(default)]
    pub url: Option<String>,
    /// `release` sources: other URLs serving the same releases (shown to the user; `--source-url` picks one).
    #[serde(default)]
    pub mirrors: Option<Vec<String>>,
}

/// One ETL entry (`etl.<key>`): what to read, how to transform it and where to write it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtlEntry {
    /// GHO indicator code, e.g. `WSH_8` (requested as `{api}/{indicator}`).
    #[serde(default)]
    pub indicator: Option<String>,
    /// `release` sources: the dataset folder this entry loads (`target`), as named from 25.03 on.
    #[serde(default)]
    pub dataset: Option<String>,
    /// `release` sources: other names of the dataset in older layouts (`targets` up to 24.09).
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    /// `release` sources: how structs become columns (`depth`, default 1; `separator`, default `_`).
    #[serde(default)]
    pub flatten: Option<crate::flatten::FlattenOptions>,
    /// Base URL of the API, e.g. `https://ghoapi.azureedge.net/api`.
    #[serde(default)]
    pub api: Option<String>,
    /// Rows per request; overrides `source.page_size`.
    #[serde(default)]
    pub page_size: Option<u64>,
    /// GHO only: load only rows whose `TimeDim` (year) is at least this (`--since` overrides).
    #[serde(default)]
    pub since: Option<i64>,
    /// GHO only: load only rows whose `TimeDim` (year) is at most this (`--until` overrides).
    #[serde(default)]
    pub until: Option<i64>,
    /// `files` sources: the table to read.
    #[serde(default)]
    pub file: Option<FileConfig>,
    /// Column selection and renaming.
    #[serde(default)]
    pub transform: Option<TransformConfig>,
    /// The entity each row is (participant, phenotype, biospecimen, …): rows get a stable target ID from the ID
    /// cache. Needs `unique_key`.
    #[serde(default)]
    pub entity: Option<String>,
    /// The columns (destination names, in order) whose values identify an entity; see `docs/ID_CACHE.md` for the
    /// keystring built from them.
    #[serde(default)]
    pub unique_key: Option<Vec<String>>,
    /// How target IDs are made. Default: `{prefix: <first two letters of the entity, upper case>_}`.
    #[serde(default)]
    pub target_id: Option<TargetIdConfig>,
    /// Foreign keys: `column: entity` (the column holds the referenced entity's one-column unique key) or
    /// `column: {entity: E, columns: [a, b]}`. The referenced target ID is written into `<column>_target_id`.
    #[serde(default)]
    pub references: Option<IndexMap<String, ReferenceConfig>>,
    /// Where the rows go.
    #[serde(default)]
    pub destination: Option<DestinationConfig>,
}

/// `etl.<key>.file`: a table read by the `files` source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// A path (relative paths are relative to the plugin's folder), a `file://` URL or an `http(s)://` URL.
    pub path: String,
    /// `csv`, `tsv`, `parquet` or `jsonl`; default from the file name.
    #[serde(default)]
    pub format: Option<String>,
    /// One character; default detected from the first lines (`,` tab `;` `|`).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// One character; default `"`.
    #[serde(default)]
    pub quote: Option<String>,
    /// Whether the first row names the columns. Default `true`.
    #[serde(default)]
    pub header: Option<bool>,
    /// Rows to skip before the header. Default 0.
    #[serde(default)]
    pub skip_rows: Option<usize>,
    /// Rows whose every non-empty cell is this marker are skipped, and columns whose header is this marker are
    /// dropped (the Kids First convention). Default `[ignore]`.
    #[serde(default)]
    pub ignore_marker: Option<String>,
    /// `column: delimiter`: cells split into arrays (text[]).
    #[serde(default)]
    pub multi_valued: Option<IndexMap<String, String>>,
    /// `column: type` (`text`, `int64`, `float64`, `bool`, `date`, `timestamp`), winning over inference.
    #[serde(default)]
    pub casts: Option<IndexMap<String, String>>,
    /// Infer column types from the first rows. Default `true`; `false` loads every column as text.
    #[serde(default)]
    pub infer_types: Option<bool>,
    /// Rows per batch (one checkpoint each). Default 10000.
    #[serde(default)]
    pub batch_rows: Option<usize>,
}

/// `etl.<key>.target_id`: how target IDs are made — exactly one of `prefix` (with an optional `length`),
/// `uuid_v7: true`, or `from_column`.
///
/// ```yaml
/// target_id: {prefix: PT_}            # PT_ + 8 random Crockford base32 characters, e.g. PT_3QMCQXHZ
/// target_id: {prefix: PT_, length: 10}
/// target_id: {uuid_v7: true}          # a time-ordered UUID
/// target_id: {from_column: kf_id}     # IDs the study already assigned
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetIdConfig {
    /// A prefix followed by a short random code.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Characters of the random code after `prefix` (default 8).
    #[serde(default)]
    pub length: Option<usize>,
    /// A UUID version 7.
    #[serde(default)]
    pub uuid_v7: Option<bool>,
    /// Taken from this column (destination name).
    #[serde(default)]
    pub from_column: Option<String>,
}

/// One entry of `etl.<key>.references`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ReferenceConfig {
    /// The referenced entity; the column holds its one-column unique key.
    Entity(String),
    /// The referenced entity and the columns (destination names) that hold its unique key, in key order.
    Columns {
        /// The referenced entity.
        entity: String,
        /// Columns holding the referenced entity's unique key components.
        columns: Vec<String>,
    },
}

impl ReferenceConfig {
    /// The referenced entity.
    pub fn entity(&self) -> &str {
        match self {
            ReferenceConfig::Entity(e) => e,
            ReferenceConfig::Columns { entity, .. } => entity,
        }
    }
}

/// `transform:` of an ETL entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// `source column: destination column`, in output order. Absent keeps every column under its own name.
    #[serde(default)]
    pub columns: Option<IndexMap<String, String>>,
}

/// `destination:` of an ETL entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// A PostgreSQL destination.
    #[serde(default)]
    pub postgres: Option<PostgresDestinationConfig>,
}

/// `destination.postgres:` of an ETL entry. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresDestinationConfig {
    /// Connection URL; use `!env NAME` (or the seed's `!NAME`) so that no password is written in the file.
    #[serde(default)]
    pub url: Option<ConfigValue>,
    /// Schema of the table. Default `public`.
    #[serde(default)]
    pub schema: Option<String>,
    /// Table name. Default: the entry key in lower case.
    #[serde(default)]
    pub table: Option<String>,
    /// Load mode. Default `merge` when a primary key is known, else `append`.
    #[serde(default)]
    pub mode: Option<LoadMode>,
    /// Primary key columns (destination names). Default: the source's natural key when it is kept
    /// (`Id` for GHO).
    #[serde(default)]
    pub primary_key: Option<Vec<String>>,
}

/// A manifest value that may come from the environment.
///
/// * a plain scalar → [`ConfigValue::Literal`];
/// * `!env NAME` → [`ConfigValue::Env`] with an empty suffix;
/// * `!NAME scalar` (the Psystem seed's form, e.g. `!GHOTopOSTGRES_DATABASE_URL`) → the variable `NAME` followed by
///   the scalar (empty when the tag stands alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    /// Written in the file as is.
    Literal(String),
    /// Read from an environment variable when used.
    Env {
        /// The variable's name.
        var: String,
        /// Text appended to the variable's value.
        suffix: String,
    },
}

impl ConfigValue {
    /// The value: the literal, or the variable's value followed by the suffix; `None` when the variable is unset
    /// or empty.
    pub fn resolve(&self) -> Option<String> {
        match self {
            ConfigValue::Literal(s) => Some(s.clone()),
            ConfigValue::Env { var, suffix } => std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{v}{suffix}")),
        }
    }

    /// How the value is written, safe to show: literals are shown with any URL password replaced by `***`.
    pub fn describe(&self) -> String {
        match self {
            ConfigValue::Literal(s) => crate::redact::redact_url(s),
            ConfigValue::Env { var, suffix } if suffix.is_empty() => format!("${var}"),
            ConfigValue::Env { var, suffix } => format!("${var}{suffix}"),
        }
    }
}

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConfigValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a string, `!env NAME`, or `!NAME` (value of environment variable NAME)",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigValue, E> {
                Ok(ConfigValue::Literal(v.to_string()))
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<ConfigValue, A::Error> {
                let (tag, rest): (String, _) = data.variant()?;
                let scalar: Option<String> = rest.newtype_variant()?;
                let scalar = scalar.unwrap_or_default();
                if tag == "env" {
                    let var = scalar.trim().to_string();
                    if var.is_empty() {
                        return Err(de::Error::custom(
                            "`!env` needs the name of an environment variable",
                        ));
                    }
                    Ok(ConfigValue::Env {
                        var,
                        suffix: String::new(),
                    })
                } else {
                    Ok(ConfigValue::Env {
                        var: tag,
                        suffix: scalar,
                    })
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Where a plugin was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginOrigin {
    /// Shipped with psystem (`assets/plugins/`); its enabled state is kept in `settings.yaml`.
    Bundled,
    /// The user's (`$PSYSTEM_HOME/plugins/`); its enabled state is edited in its own file.
    User,
}

/// A discovered plugin: its manifest, where it is and whether it is enabled.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// The parsed manifest.
    pub manifest: PluginManifest,
    /// The manifest file.
    pub path: PathBuf,
    /// Bundled or the user's.
    pub origin: PluginOrigin,
    /// Effective enabled state: `settings.yaml` overrides a bundled manifest's `enabled`.
    pub enabled: bool,
}

impl Plugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The name of the plugin's folder (`ghotopostgres` for `assets/plugins/ghotopostgres/config.yaml`).
    pub fn folder_name(&self) -> String {
        self.path
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The source kind (`source.kind`, default `gho_odata`).
    pub fn source_kind(&self) -> SourceKind {
        self.manifest
            .source
            .as_ref()
            .map(|s| s.kind)
            .unwrap_or_default()
    }

    /// The entry named `key`, or the `run` entry when `key` is `None` (the only entry if there is one and no
    /// `run`).
    ///
    /// # Errors
    /// [`PluginError::NoSuchEntry`] naming the entries that exist, or [`PluginError::NoDefaultEntry`].
    pub fn entry(&self, key: Option<&str>) -> Result<(&str, &EtlEntry), PluginError> {
        let wanted = match key {
            Some(k) => k.to_string(),
            None => match (&self.manifest.run, self.manifest.etl.len()) {
                (Some(r), _) => r.clone(),
                (None, 1) => self.manifest.etl.keys().next().cloned().unwrap_or_default(),
                (None, _) => {
                    return Err(PluginError::NoDefaultEntry {
                        plugin: self.name().to_string(),
                        path: self.path.clone(),
                        entries: self.manifest.etl.keys().cloned().collect(),
                    })
                }
            },
        };
        self.manifest
            .etl
            .get_key_value(wanted.as_str())
            .or_else(|| {
                self.manifest
                    .etl
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&wanted))
            })
            .map(|(k, e)| (k.as_str(), e))
            .ok_or_else(|| PluginError::NoSuchEntry {
                plugin: self.name().to_string(),
                path: self.path.clone(),
                entry: wanted,
                entries: self.manifest.etl.keys().cloned().collect(),
            })
    }

    /// Refuses a disabled plugin.
    ///
    /// # Errors
    /// [`PluginError::Disabled`], whose message says how to enable it.
    pub fn ensure_enabled(&self) -> Result<(), PluginError> {
        if self.enabled {
            Ok(())
        } else {
            Err(PluginError::Disabled {
                plugin: self.name().to_string(),
                path: self.path.clone(),
            })
        }
    }
}

/// Errors about plugins: unreadable or invalid manifests, unknown names, disabled plugins.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The manifest could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not valid: bad YAML, an unknown key, or a value of the wrong type.
    #[error("{}{}: {message}", path.display(), location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line and column (1-based) when known.
        location: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
    /// No plugin has this name.
    #[error("no plugin named `{name}`; plugins: {}", available.join(", "))]
    NotFound {
        /// The name asked for.
        name: String,
        /// The names that exist.
        available: Vec<String>,
    },
    /// The plugin asked for is there, but its manifest does not load (bad YAML, an unknown key, a wrong type, …):
    /// `source` says where and why.
    #[error("plugin `{name}` cannot be used: {source}; fix the file (`psystem plugins list` shows every manifest that does not load)")]
    Broken {
        /// The name asked for.
        name: String,
        /// The manifest's error ([`PluginError::Invalid`] with file, line and column, or [`PluginError::Io`]).
        #[source]
        source: Box<PluginError>,
    },
    /// The plugin is disabled.
    #[error("plugin `{plugin}` is disabled ({}); enable it with `psystem plugins enable {plugin}`", path.display())]
    Disabled {
        /// The plugin's name.
        plugin: String,
        /// Its manifest.
        path: PathBuf,
    },
    /// The plugin has no ETL entry with this key.
    #[error("plugin `{plugin}` ({}) has no ETL entry `{entry}`; entries: {}", path.display(), entries.join(", "))]
    NoSuchEntry {
        /// The plugin's name.
        plugin: String,
        /// Its manifest.
        path: PathBuf,
        /// The key asked for.
        entry: String,
        /// The keys that exist.
        entries: Vec<String>,
    },
    /// No entry was named and the plugin has no `run` key.
    #[error("plugin `{plugin}` ({}) has no `run` key; name an entry: {}", path.display(), entries.join(", "))]
    NoDefaultEntry {
        /// The plugin's name.
        plugin: String,
        /// Its manifest.
        path: PathBuf,
        /// The keys that exist.
        entries: Vec<String>,
    },
}

/// Parses a manifest's text. `path` is used in error messages only.
///
/// Besides YAML and type errors, checks that no mapping gives a key twice (at any level: two `etl` entries with
/// one name, a repeated field, a repeated column) and that `run` names an entry.
///
/// # Errors
/// [`PluginError::Invalid`] with the file, line and column.
pub fn parse_manifest(text: &str, path: &Path) -> Result<PluginManifest, PluginError> {
    if let Some(dup) = duplicate_keys::find(text) {
        let at = |l: Option<(usize, usize)>| {
            l.map(|(line, column)| format!("line {line} column {column}"))
                .unwrap_or_else(|| "an unknown place".into())
        };
        let mut dotted = dup.path.join(".").replace(".[", "[");
        if !dotted.is_empty() {
            dotted.push('.');
        }
        let what = if dup.path == ["etl"] {
            format!("the ETL entry `{}`", dup.key)
        } else {
            format!("the key `{dotted}{}`", dup.key)
        };
        return Err(PluginError::Invalid {
            path: path.to_path_buf(),
            location: dup.second,
            message: format!(
                "{what} is given twice, at {} and again at {}; keep one (YAML keys must be unique, and the second would silently replace the first)",
                at(dup.first),
                at(dup.second)
            ),
        });
    }
    let manifest: PluginManifest =
        serde_yaml_ng::from_str(text).map_err(|e| PluginError::Invalid {
            path: path.to_path_buf(),
            location: e.location().map(|l| (l.line(), l.column())),
            message: strip_location(&e.to_string()),
        })?;
    for (key, entry) in &manifest.etl {
        if let Some(t) = &entry.target_id {
            let chosen = [
                t.prefix.is_some(),
                t.uuid_v7 == Some(true),
                t.from_column.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if chosen != 1 || (t.length.is_some() && t.prefix.is_none()) {
                return Err(PluginError::Invalid {
                    path: path.to_path_buf(),
                    location: find_key_under(text, key, "target_id"),
                    message: format!(
                        "etl.{key}.target_id: give exactly one of `prefix` (with an optional `length`), `uuid_v7: true` or `from_column`"
                    ),
                });
            }
        }
        if entry.entity.is_some() != entry.unique_key.is_some() {
            return Err(PluginError::Invalid {
                path: path.to_path_buf(),
                location: find_key_under(text, key, "entity")
                    .or_else(|| find_key_under(text, key, "unique_key")),
                message: format!(
                    "etl.{key}: `entity` and `unique_key` go together; give both or neither"
                ),
            });
        }
    }
    if let Some(run) = &manifest.run {
        if !manifest.etl.contains_key(run.as_str()) {
            return Err(PluginError::Invalid {
                path: path.to_path_buf(),
                location: find_top_level_key(text, "run"),
                message: format!(
                    "`run: {run}` names no ETL entry; entries: {}",
                    manifest.etl.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    Ok(manifest)
}

/// serde_yaml_ng appends " at line L column C" to messages; we print the location as `file:L:C` instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Line and column (1-based) of a top-level `key:` in YAML text.
fn find_top_level_key(text: &str, key: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let rest = line.strip_prefix(key)?;
        rest.trim_start().starts_with(':').then_some((i + 1, 1))
    })
}

/// Line and column (1-based) of `child:` in the block of the `etl` entry `entry` (a best-effort text search).
fn find_key_under(text: &str, entry: &str, child: &str) -> Option<(usize, usize)> {
    let mut in_entry = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with(&format!("{entry}:")) && indent > 0 {
            in_entry = true;
            continue;
        }
        if in_entry && trimmed.starts_with(&format!("{child}:")) {
            return Some((i + 1, indent + 1));
        }
    }
    None
}

/// Reads and parses one manifest file.
///
/// # Errors
/// [`PluginError::Io`] or [`PluginError::Invalid`].
pub fn load_manifest(path: &Path) -> Result<PluginManifest, PluginError> {
    let text = std::fs::read_to_string(path).map_err(|source| PluginError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_manifest(&text, path)
}

/// `settings.yaml` in the psystem home.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Per-plugin settings by plugin name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSettings>,
}

/// Settings of one plugin in `settings.yaml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Overrides the manifest's `enabled` (bundled plugins, whose files are not the user's to edit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl Settings {
    /// Reads `settings.yaml`; a missing file gives the defaults.
    ///
    /// # Errors
    /// [`PluginError::Io`] or [`PluginError::Invalid`] (with line and column).
    pub fn load(home: &Home) -> Result<Settings, PluginError> {
        let path = home.settings_file();
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => Ok(Settings::default()),
            Ok(text) => serde_yaml_ng::from_str(&text).map_err(|e| PluginError::Invalid {
                location: e.location().map(|l| (l.line(), l.column())),
                message: strip_location(&e.to_string()),
                path,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(source) => Err(PluginError::Io { path, source }),
        }
    }

    /// Writes `settings.yaml` atomically.
    ///
    /// # Errors
    /// [`PluginError::Io`].
    pub fn save(&self, home: &Home) -> Result<(), PluginError> {
        let path = home.settings_file();
        let text = serde_yaml_ng::to_string(self).map_err(|e| PluginError::Invalid {
            path: path.clone(),
            location: None,
            message: e.to_string(),
        })?;
        crate::atomic::write_atomic(&path, text.as_bytes())
            .map_err(|source| PluginError::Io { path, source })
    }
}

/// Every plugin found, and the manifests that could not be read (reported, not fatal for listing).
#[derive(Debug, Default)]
pub struct PluginCatalog {
    /// Valid plugins, sorted by name.
    pub plugins: Vec<Plugin>,
    /// Manifests that failed to load.
    pub errors: Vec<PluginError>,
    /// The manifests that failed to load, with the names they answer to, for [`PluginCatalog::get`].
    broken: Vec<BrokenManifest>,
}

/// A manifest that failed to load: where it is, and the names a lookup may use for it.
#[derive(Debug)]
struct BrokenManifest {
    /// Bundled or the user's.
    origin: PluginOrigin,
    /// Its folder's name and the `name:` it gives (when that much can be read), lower case.
    names: Vec<String>,
    /// Index of its error in [`PluginCatalog::errors`].
    error: usize,
}

/// The names a manifest that does not load answers to: its folder's name, and its top-level `name:` when the
/// file is YAML enough to read it (else the text of a `name:` line at the start of a line), lower case.
fn names_of_broken(path: &Path) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(folder) = path.parent().and_then(|p| p.file_name()) {
        names.push(folder.to_string_lossy().to_lowercase());
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let declared = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text)
        .ok()
        .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_string))
        .or_else(|| {
            text.lines().find_map(|l| {
                let v = l.strip_prefix("name:")?.trim();
                let v = v.split(" #").next().unwrap_or(v).trim();
                let v = v.trim_matches(|c| c == '"' || c == '\'');
                (!v.is_empty()).then(|| v.to_string())
            })
        });
    if let Some(n) = declared {
        names.push(n.to_lowercase());
    }
    names
}

impl PluginCatalog {
    /// Discovers plugins in `assets/plugins/` (bundled) and `home/plugins/` (the user's).
    ///
    /// Each direct sub-folder holding a manifest (see [`MANIFEST_FILE_NAMES`]) is a plugin; a user plugin replaces
    /// a bundled one of the same name. Bundled plugins take their enabled state from `settings.yaml` when it has one.
    pub fn discover(home: &Home, assets: &Path) -> PluginCatalog {
        let mut catalog = PluginCatalog::default();
        let settings = match Settings::load(home) {
            Ok(s) => s,
            Err(e) => {
                catalog.errors.push(e);
                Settings::default()
            }
        };
        let mut by_name: BTreeMap<String, Plugin> = BTreeMap::new();
        for (dir, origin) in [
            (assets.join("plugins"), PluginOrigin::Bundled),
            (home.plugins_dir(), PluginOrigin::User),
        ] {
            for path in manifest_files(&dir) {
                match load_manifest(&path) {
                    Ok(manifest) => {
                        let mut enabled = manifest.enabled;
                        if origin == PluginOrigin::Bundled {
                            if let Some(e) =
                                settings.plugins.get(&manifest.name).and_then(|s| s.enabled)
                            {
                                enabled = e;
                            }
                        }
                        let key = manifest.name.to_lowercase();
                        by_name.insert(
                            key,
                            Plugin {
                                manifest,
                                path,
                                origin,
                                enabled,
                            },
                        );
                    }
                    Err(e) => {
                        catalog.broken.push(BrokenManifest {
                            origin,
                            names: names_of_broken(&path),
                            error: catalog.errors.len(),
                        });
                        catalog.errors.push(e);
                    }
                }
            }
        }
        catalog.plugins = by_name.into_values().collect();
        catalog
    }

    /// The plugin whose name or folder name equals `name`, ignoring case.
    ///
    /// A manifest that does not load but answers to `name` (by its folder's name or the `name:` it gives) is
    /// reported rather than passed over: when no valid plugin has the name, or when the valid one is bundled and
    /// the broken one is the user's (which would have replaced it).
    ///
    /// # Errors
    /// [`PluginError::Broken`] with the manifest's error (file, line and column); [`PluginError::NotFound`]
    /// listing the names that exist.
    pub fn get(&self, name: &str) -> Result<&Plugin, PluginError> {
        let found = self
            .plugins
            .iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
            .or_else(|| {
                self.plugins
                    .iter()
                    .find(|p| p.folder_name().eq_ignore_ascii_case(name))
            });
        let wanted = name.to_lowercase();
        let broken = self
            .broken
            .iter()
            .filter(|b| b.names.contains(&wanted))
            .find(|b| match found {
                None => true,
                Some(p) => p.origin == PluginOrigin::Bundled && b.origin == PluginOrigin::User,
            });
        if let Some(b) = broken {
            let source = match &self.errors[b.error] {
                PluginError::Invalid {
                    path,
                    location,
                    message,
                } => PluginError::Invalid {
                    path: path.clone(),
                    location: *location,
                    message: message.clone(),
                },
                PluginError::Io { path, source } => PluginError::Io {
                    path: path.clone(),
                    source: std::io::Error::new(source.kind(), source.to_string()),
                },
                other => PluginError::Invalid {
                    path: PathBuf::new(),
                    location: None,
                    message: other.to_string(),
                },
            };
            return Err(PluginError::Broken {
                name: name.to_string(),
                source: Box::new(source),
            });
        }
        found.ok_or_else(|| PluginError::NotFound {
            name: name.to_string(),
            available: self.plugins.iter().map(|p| p.name().to_string()).collect(),
        })
    }
}

/// Manifest files of the plugin folders directly under `dir`, sorted by path. A missing `dir` gives none.
fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = read
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter_map(|d| {
            MANIFEST_FILE_NAMES
                .iter()
                .map(|n| d.join(n))
                .find(|f| f.is_file())
        })
        .collect();
    out.sort();
    out
}

/// Switches a plugin on or off so that it stays so after a restart.
///
/// A user plugin's own file is edited in place: only the value of its top-level `enabled:` line changes (comments,
/// order and formatting stay), or an `enabled:` line is added after `name:`. A bundled plugin's state goes to
/// `settings.yaml`.
///
/// # Errors
/// [`PluginError::Io`], or [`PluginError::Invalid`] if the edited file would no longer parse (the file is then left
/// unchanged).
pub fn set_enabled(home: &Home, plugin: &Plugin, enabled: bool) -> Result<(), PluginError> {
    match plugin.origin {
        PluginOrigin::Bundled => {
            let mut settings = Settings::load(home)?;
            settings
                .plugins
                .entry(plugin.name().to_string())
                .or_default()
                .enabled = Some(enabled);
            settings.save(home)
        }
        PluginOrigin::User => {
            let path = &plugin.path;
            let text = std::fs::read_to_string(path).map_err(|source| PluginError::Io {
                path: path.clone(),
                source,
            })?;
            let edited = set_enabled_in_text(&text, enabled);
            let manifest = parse_manifest(&edited, path)?;
            debug_assert_eq!(manifest.enabled, enabled);
            crate::atomic::write_atomic(path, edited.as_bytes()).map_err(|source| PluginError::Io {
                path: path.clone(),
                source,
            })
        }
    }
}

/// Rewrites the value of the top-level `enabled:` key in YAML text, keeping everything else byte for byte.
pub fn set_enabled_in_text(text: &str, enabled: bool) -> String {
    let value = if enabled { "true" } else { "false" };
    let mut out = String::with_capacity(text.len() + 16);
    let mut done = false;
    for line in text.split_inclusive('\n') {
        if !done {
            if let Some(rest) = line.strip_prefix("enabled") {
                let after_key = rest.trim_start_matches([' ', '\t']);
                if let Some(after_colon) = after_key.strip_prefix(':') {
                    // Keep a trailing comment and the line ending.
                    let body = after_colon.trim_end_matches(['\n', '\r']);
                    let ending = &after_colon[body.len()..];
                    // Whatever follows the old value (spaces, a comment) is kept verbatim.
                    let old = body.trim_start();
                    let tail = &old[old.find([' ', '\t']).unwrap_or(old.len())..];
                    out.push_str(&format!("enabled: {value}{tail}{ending}"));
                    done = true;
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    if done {
        return out;
    }
    // No `enabled:` line: add one after the top-level `name:` line, or at the top.
    let mut out = String::with_capacity(text.len() + 16);
    let mut inserted = false;
    for line in text.split_inclusive('\n') {
        out.push_str(line);
        if !inserted
            && line.starts_with("name")
            && line["name".len()..].trim_start().starts_with(':')
        {
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("enabled: {value}\n"));
            inserted = true;
        }
    }
    if !inserted {
        out = format!("enabled: {value}\n{text}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../../assets/plugins/ghotopostgres/config.yaml");

    #[test]
    fn seed_config_loads_unchanged() {
        let m = parse_manifest(SEED, Path::new("config.yaml")).unwrap();
        assert_eq!(m.name, "GHOTopOSTGRES");
        assert_eq!(m.creator.as_deref(), Some("Zenysis"));
        assert_eq!(m.run.as_deref(), Some("NCDMORT3070"));
        assert_eq!(
            m.etl.keys().collect::<Vec<_>>(),
            ["NCD_CCS_BreastCancer", "NCDMORT3070"]
        );
        let e = &m.etl["NCD_CCS_BreastCancer"];
        let cols = e.transform.as_ref().unwrap().columns.as_ref().unwrap();
        assert_eq!(
            cols.get_index(1),
            Some((&"SpatialDim".to_string(), &"Country".to_string()))
        );
        assert_eq!(cols.len(), 8);
        let url = e
            .destination
            .as_ref()
            .unwrap()
            .postgres
            .as_ref()
            .unwrap()
            .url
            .clone()
            .unwrap();
        assert_eq!(
            url,
            ConfigValue::Env {
                var: "GHOTopOSTGRES_DATABASE_URL".into(),
                suffix: String::new()
            }
        );
    }

    #[test]
    fn tags_resolve_from_the_environment() {
        let m = parse_manifest(
            "name: t\netl:\n  a:\n    destination:\n      postgres:\n        url: !env PSYSTEM_TEST_TAG_A\n  b:\n    destination:\n      postgres:\n        url: !PSYSTEM_TEST_TAG_B /db2\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        let url = |k: &str| {
            m.etl[k]
                .destination
                .clone()
                .unwrap()
                .postgres
                .unwrap()
                .url
                .unwrap()
        };
        assert_eq!(
            url("a"),
            ConfigValue::Env {
                var: "PSYSTEM_TEST_TAG_A".into(),
                suffix: String::new()
            }
        );
        assert_eq!(
            url("b"),
            ConfigValue::Env {
                var: "PSYSTEM_TEST_TAG_B".into(),
                suffix: "/db2".into()
            }
        );
        assert_eq!(url("b").resolve(), None);
        std::env::set_var("PSYSTEM_TEST_TAG_B", "postgres://u:secret@h:5432");
        assert_eq!(
            url("b").resolve().as_deref(),
            Some("postgres://u:secret@h:5432/db2")
        );
        assert_eq!(url("b").describe(), "$PSYSTEM_TEST_TAG_B/db2");
    }

    #[test]
    fn unknown_key_is_reported_with_line_and_column() {
        let text = "name: x\netl:\n  e:\n    indicator: WSH_8\n    colums: {}\n";
        let err = parse_manifest(text, Path::new("/p/plugin.yaml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/p/plugin.yaml:5:"), "{msg}");
        assert!(msg.contains("unknown field `colums`"), "{msg}");
    }

    #[test]
    fn type_error_is_reported_with_line_and_column() {
        let text = "name: x\nenabled: maybe\netl: {}\n";
        let msg = parse_manifest(text, Path::new("p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("p.yaml:2:"), "{msg}");
        let text = "name: x\netl:\n  e:\n    page_size: -3\n";
        let msg = parse_manifest(text, Path::new("p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("p.yaml:4:"), "{msg}");
        let text = "name: x\nrun: nope\netl:\n  e: {}\n";
        let msg = parse_manifest(text, Path::new("p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("p.yaml:2:1: `run: nope` names no ETL entry; entries: e"),
            "{msg}"
        );
    }

    #[test]
    fn enabled_edit_keeps_comments() {
        let text =
            "# my plugin\nname: x   # the name\nenabled: true   # switch\netl:\n  e: {} # entry\n";
        let off = set_enabled_in_text(text, false);
        assert_eq!(
            off,
            "# my plugin\nname: x   # the name\nenabled: false   # switch\netl:\n  e: {} # entry\n"
        );
        assert_eq!(set_enabled_in_text(&off, true), text);
        let no_line = "# c\nname: x\netl: {}\n";
        assert_eq!(
            set_enabled_in_text(no_line, false),
            "# c\nname: x\nenabled: false\netl: {}\n"
        );
    }
}
