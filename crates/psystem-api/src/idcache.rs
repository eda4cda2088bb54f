//! ID cache and run history operations: what `psystem idcache …` and `psystem runs …` (and the desktop app's ID
//! cache and History screens) call.
//!
//! The database is the one named by `--db`, else `DATABASE_URL`, else the local cluster psystem manages; the
//! cache target is that database and a schema (default `public`), see `docs/ID_CACHE.md`.

use crate::{Api, ApiError, DATABASE_URL_ENV};
use psystem_postgres::idcache::{
    self, CachePage, CacheQuery, CacheTarget, EntitySummary, ImportReport,
};
use psystem_postgres::metrics::{self, RunDetail, RunSummary};
use psystem_postgres::Destination;

/// Which database and schema an ID cache operation is about.
#[derive(Debug, Clone, Default)]
pub struct CacheScope {
    /// `--db`; `None` = `DATABASE_URL`, else the local cluster.
    pub db_url: Option<String>,
    /// The destination schema the cache entries belong to. Default `public`.
    pub schema: Option<String>,
}

impl Api {
    /// The database URL for ledger-side operations: `--db`, else `DATABASE_URL`, else the local cluster (started
    /// if needed).
    ///
    /// # Errors
    /// [`ApiError::LocalDatabase`].
    pub async fn ledger_url(&self, db_url: Option<String>) -> Result<String, ApiError> {
        if let Some(u) = db_url.filter(|u| !u.is_empty()) {
            return Ok(u);
        }
        if let Some(u) = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
        {
            return Ok(u);
        }
        let status = self.db_up().await?;
        status
            .url
            .ok_or_else(|| ApiError::Config("the local database has no URL".into()))
    }

    async fn cache_target(
        &self,
        scope: &CacheScope,
    ) -> Result<(Destination, CacheTarget), ApiError> {
        let url = self.ledger_url(scope.db_url.clone()).await?;
        let dest = Destination::connect(&url).await?;
        let target = CacheTarget::new(&url, scope.schema.as_deref().unwrap_or("public"));
        Ok((dest, target))
    }

    /// The entities in the ID cache of a database (every schema when `scope.schema` is `None`).
    ///
    /// # Errors
    /// [`ApiError::Destination`].
    pub async fn idcache_entities(
        &self,
        scope: &CacheScope,
    ) -> Result<Vec<EntitySummary>, ApiError> {
        let url = self.ledger_url(scope.db_url.clone()).await?;
        let dest = Destination::connect(&url).await?;
        let target = scope.schema.as_deref().map(|s| CacheTarget::new(&url, s));
        Ok(idcache::entities(dest.pool(), target.as_ref()).await?)
    }

    /// One page of an entity's entries: searched, sorted and paged in the database.
    ///
    /// # Errors
    /// [`ApiError::Destination`].
    pub async fn idcache_list(
        &self,
        scope: &CacheScope,
        entity: &str,
        query: &CacheQuery,
    ) -> Result<CachePage, ApiError> {
        let (dest, target) = self.cache_target(scope).await?;
        Ok(idcache::list(dest.pool(), &target, entity, query).await?)
    }

    /// The entry whose unique key or target ID is `key_or_id`.
    ///
    /// # Errors
    /// [`ApiError::Destination`].
    pub async fn idcache_show(
        &self,
        scope: &CacheScope,
        entity: &str,
        key_or_id: &str,
    ) -> Result<Option<idcache::CacheEntry>, ApiError> {
        let (dest, target) = self.cache_target(scope).await?;
        Ok(idcache::show(dest.pool(), &target, entity, key_or_id).await?)
    }

    /// Writes an entity's entries as CSV (`unique_key,target_id,first_seen_run,last_seen_run`); returns the count.
    ///
    /// # Errors
    /// [`ApiError::Destination`].
    pub async fn idcache_export(
        &self,
        scope: &CacheScope,
        entity: &str,
        out: &mut (impl std::io::Write + Send),
    ) -> Result<u64, ApiError> {
        let (dest, target) = self.cache_target(scope).await?;
        Ok(idcache::export_csv(dest.pool(), &target, entity, out).await?)
    }

    /// Reads entries from CSV (as written by export); never overwrites a different cached ID.
    ///
    /// # Errors
    /// [`ApiError::Destination`].
    pub async fn idcache_import(
        &self,
        scope: &CacheScope,
        entity: &str,
        input: impl std::io::Read + Send,
    ) -> Result<ImportReport, ApiError> {
        let (dest, target) = self.cache_target(scope).await?;
        Ok(idcache::import_csv(dest.pool(), &target, entity, input).await?)
    }

    /// Deletes an entity's entries and its unique key definition; returns how many entries went.
    ///
    /// # Errors
    /// [`ApiError::Destination`].
    pub async fn idcache_clear(&self, scope: &CacheScope, entity: &str) -> Result<u64, ApiError> {
        let (dest, target) = self.cache_target(scope).await?;
        Ok(idcache::clear(dest.pool(), &target, entity).await?)
    }

    /// Past loads, newest first, with their metrics.
    ///
    /// # Errors
    /// [`ApiError::Destination`].
    pub async fn runs(
        &self,
        db_url: Option<String>,
        limit: i64,
    ) -> Result<Vec<RunSummary>, ApiError> {
        let url = self.ledger_url(db_url).await?;
        let dest = Destination::connect(&url).await?;
        Ok(metrics::runs(dest.pool(), limit).await?)
    }

    /// One load with its metrics.
    ///
    /// # Errors
    /// [`ApiError::Destination`].
    pub async fn run_detail(
        &self,
        db_url: Option<String>,
        load_id: i64,
    ) -> Result<Option<RunDetail>, ApiError> {
        let url = self.ledger_url(db_url).await?;
        let dest = Destination::connect(&url).await?;
        Ok(metrics::run(dest.pool(), load_id).await?)
    }
}
