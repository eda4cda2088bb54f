//! Plugin operations: list, show, enable, disable.

use crate::{Api, ApiError};
use psystem_core::plugin::{self, Plugin, PluginCatalog, PluginOrigin};
use serde::Serialize;

/// One line of `psystem plugins list`.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    /// Plugin name.
    pub name: String,
    /// Who wrote it.
    pub creator: Option<String>,
    /// One-line description.
    pub description: Option<String>,
    /// Effective enabled state.
    pub enabled: bool,
    /// Bundled or the user's.
    pub origin: PluginOrigin,
    /// Source kind.
    pub source: String,
    /// The default ETL entry (`run`).
    pub run: Option<String>,
    /// ETL entry keys, in file order.
    pub entries: Vec<String>,
    /// The manifest file.
    pub path: String,
}

/// `psystem plugins list`: the plugins, and the manifests that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct PluginList {
    /// Valid plugins, by name.
    pub plugins: Vec<PluginSummary>,
    /// Messages (with file, line and column) of manifests that failed to load.
    pub errors: Vec<String>,
}

/// One ETL entry as `psystem plugins show` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryDetail {
    /// Entry key.
    pub key: String,
    /// GHO indicator.
    pub indicator: Option<String>,
    /// API base URL.
    pub api: Option<String>,
    /// `source column → destination column`, in order; empty = every column.
    pub columns: Vec<(String, String)>,
    /// The destination URL as written (an environment reference or a redacted literal).
    pub destination_url: Option<String>,
    /// Destination table, `schema.table`.
    pub table: String,
    /// Load mode, when set.
    pub mode: Option<String>,
    /// Primary key, when set.
    pub primary_key: Vec<String>,
    /// True for the `run` entry.
    pub default: bool,
    /// `files` sources: the table's path or URL as written.
    pub file: Option<String>,
    /// The entity the rows are, if any.
    pub entity: Option<String>,
    /// The entity's unique key columns.
    pub unique_key: Vec<String>,
    /// References: (column, referenced entity).
    pub references: Vec<(String, String)>,
}

/// `psystem plugins show NAME`.
#[derive(Debug, Clone, Serialize)]
pub struct PluginDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: PluginSummary,
    /// Every entry.
    pub etl: Vec<EntryDetail>,
}

fn summary(p: &Plugin) -> PluginSummary {
    PluginSummary {
        name: p.name().to_string(),
        creator: p.manifest.creator.clone(),
        description: p.manifest.description.clone(),
        enabled: p.enabled,
        origin: p.origin,
        source: p.source_kind().as_str().to_string(),
        run: p.manifest.run.clone(),
        entries: p.manifest.etl.keys().cloned().collect(),
        path: p.path.display().to_string(),
    }
}

impl Api {
    /// Discovers the plugins (bundled and the user's).
    pub fn catalog(&self) -> PluginCatalog {
        PluginCatalog::discover(&self.home, &self.assets)
    }

    /// `psystem plugins list`.
    pub fn plugins_list(&self) -> PluginList {
        let c = self.catalog();
        PluginList {
            plugins: c.plugins.iter().map(summary).collect(),
            errors: c.errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// `psystem plugins show NAME`.
    ///
    /// # Errors
    /// [`ApiError::Plugin`] when no plugin has that name.
    pub fn plugin_show(&self, name: &str) -> Result<PluginDetail, ApiError> {
        let c = self.catalog();
        let p = c.get(name)?;
        let etl = p
            .manifest
            .etl
            .iter()
            .map(|(key, e)| {
                let pg = e
                    .destination
                    .as_ref()
                    .and_then(|d| d.postgres.clone())
                    .unwrap_or_default();
                EntryDetail {
                    key: key.clone(),
                    indicator: e.indicator.clone(),
                    api: e
                        .api
                        .clone()
                        .or_else(|| p.manifest.source.as_ref().and_then(|s| s.api.clone())),
                    columns: e
                        .transform
                        .as_ref()
                        .and_then(|t| t.columns.as_ref())
                        .map(|c| c.iter().map(|(a, b)| (a.clone(), b.clone())).collect())
                        .unwrap_or_default(),
                    destination_url: pg.url.as_ref().map(|u| u.describe()),
                    table: format!(
                        "{}.{}",
                        pg.schema.clone().unwrap_or_else(|| "public".into()),
                        pg.table
                            .clone()
                            .unwrap_or_else(|| crate::runs::default_table_name(key))
                    ),
                    mode: pg.mode.map(|m| m.to_string()),
                    primary_key: pg.primary_key.clone().unwrap_or_default(),
                    default: p.manifest.run.as_deref() == Some(key.as_str()),
                    file: e.file.as_ref().map(|f| f.path.clone()),
                    entity: e.entity.clone(),
                    unique_key: e.unique_key.clone().unwrap_or_default(),
                    references: e
                        .references
                        .iter()
                        .flatten()
                        .map(|(c, r)| (c.clone(), r.entity().to_string()))
                        .collect(),
                }
            })
            .collect();
        Ok(PluginDetail {
            summary: summary(p),
            etl,
        })
    }

    /// `psystem plugins enable|disable NAME`: persists the plugin's enabled state (see
    /// [`psystem_core::plugin::set_enabled`]) and returns the plugin as it now is.
    ///
    /// # Errors
    /// [`ApiError::Plugin`] when the plugin does not exist or its file cannot be written.
    pub fn set_plugin_enabled(&self, name: &str, enabled: bool) -> Result<PluginSummary, ApiError> {
        let c = self.catalog();
        let p = c.get(name)?;
        plugin::set_enabled(&self.home, p, enabled)?;
        let c = self.catalog();
        Ok(summary(c.get(p.name())?))
    }
}
