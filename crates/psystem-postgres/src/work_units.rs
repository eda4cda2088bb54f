//! The work units of a load (`psystem.work_units`): claimed by workers, kept alive by heartbeats, reclaimed when
//! their worker dies, retried up to a limit.
//!
//! Every load that is split into units uses this queue: a release dataset (one unit per Parquet file,
//! [`crate::release_load`]) and a UniProt flat file (one unit per byte range of entries, [`crate::protein`]).
//! Workers may be tasks of one process or `psystem worker` processes on other machines: everything goes through
//! the database, so nothing else needs to be shared.
//!
//! The life of a unit: `pending` → [`WorkQueue::claim`] (`running`, attempts + 1, heartbeat now; the claim takes
//! the lowest pending id with `FOR UPDATE SKIP LOCKED`, so concurrent claimers never get the same unit) →
//! [`WorkQueue::heartbeat`] every few seconds → the worker's own transaction writes the unit's rows, calls
//! [`WorkQueue::lock_for_commit`] and [`WorkQueue::mark_done`] and commits (rows and the `done` mark commit
//! together). A worker that fails calls [`WorkQueue::fail`] (`pending` again, or `failed` after
//! `max_attempts`); a worker that dies stops heartbeating and its unit is claimed again once the heartbeat is
//! older than the queue's timeout.

use std::time::Duration;

use sqlx::{PgConnection, Row};
use tracing::{debug, warn};

use crate::{Destination, DestinationError};

/// How long [`WorkQueue::lock_for_commit`] waits for the row lock of a unit that another transaction holds for
/// a moment (a concurrent claim or heartbeat) before it gives the unit up as lost.
pub const UNIT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// The state of a work unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitState {
    /// Waiting to be claimed.
    Pending,
    /// Claimed by a worker.
    Running,
    /// Written (its rows committed with its `done` mark).
    Done,
    /// Failed `max_attempts` times; opening the load again sets it pending.
    Failed,
}

impl UnitState {
    pub(crate) fn parse(s: &str) -> UnitState {
        match s {
            "running" => UnitState::Running,
            "done" => UnitState::Done,
            "failed" => UnitState::Failed,
            _ => UnitState::Pending,
        }
    }
}

/// A work unit claimed by a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedUnit {
    /// The unit's row id (`psystem.work_units.id`).
    pub id: i64,
    /// The unit key (a file path, or `<file>@<start offset>`).
    pub key: String,
    /// The size recorded for the unit, in bytes.
    pub bytes: Option<u64>,
    /// The unit's extra spec (`psystem.work_units.spec`).
    pub spec: Option<serde_json::Value>,
    /// Which attempt this is (1 = first).
    pub attempt: u32,
    /// The worker that claimed it.
    pub worker: String,
}

/// The work units of a load by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitCounts {
    /// Units waiting to be claimed.
    pub pending: u64,
    /// Units being worked on.
    pub running: u64,
    /// Units done.
    pub done: u64,
    /// Units that failed too often.
    pub failed: u64,
    /// Rows of the done units.
    pub rows: u64,
    /// Bytes of the done units.
    pub bytes_done: u64,
    /// Bytes of all units.
    pub bytes_total: u64,
}

impl UnitCounts {
    /// Units in all.
    pub fn total(&self) -> u64 {
        self.pending + self.running + self.done + self.failed
    }
}

/// The work-unit queue of one load.
#[derive(Debug, Clone, Copy)]
pub struct WorkQueue {
    load_id: i64,
    heartbeat_timeout: Duration,
}

impl WorkQueue {
    /// The queue of load `load_id` (`psystem.loads.id`); a `running` unit whose heartbeat is older than
    /// `heartbeat_timeout` may be claimed again.
    pub fn new(load_id: i64, heartbeat_timeout: Duration) -> WorkQueue {
        WorkQueue {
            load_id,
            heartbeat_timeout,
        }
    }

    /// The load id.
    pub fn load_id(&self) -> i64 {
        self.load_id
    }

    /// How long a running unit may go without a heartbeat before it is reclaimed.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// Claims the next `pending` unit (lowest id first), or a `running` one whose heartbeat is older than the
    /// timeout (its worker died), for `worker`: state `running`, attempts + 1, heartbeat now. Units locked by
    /// another transaction are skipped (`FOR UPDATE SKIP LOCKED`). `None` when no unit is available.
    ///
    /// # Errors
    /// [`DestinationError::LoadNotActive`] when the load is not `running`; [`DestinationError::Database`].
    pub async fn claim(
        &self,
        dest: &Destination,
        worker: &str,
    ) -> Result<Option<ClaimedUnit>, DestinationError> {
        let load_id = self.load_id;
        let ctx = || format!("claiming a unit of load #{load_id}");
        let mut conn = dest
            .pool()
            .acquire()
            .await
            .map_err(DestinationError::db(ctx()))?;
        check_running(&mut conn, load_id).await?;
        let row = sqlx::query(
            "UPDATE psystem.work_units u SET state = 'running', attempts = u.attempts + 1, worker = $2, \
             heartbeat_at = now(), started_at = now(), finished_at = NULL \
             WHERE u.id = (SELECT w.id FROM psystem.work_units w WHERE w.load_id = $1 AND (w.state = 'pending' \
               OR (w.state = 'running' AND (w.heartbeat_at IS NULL OR w.heartbeat_at < now() - make_interval(secs => $3)))) \
               ORDER BY w.id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING u.id, u.unit_key, u.bytes, u.spec, u.attempts",
        )
        .bind(load_id)
        .bind(worker)
        .bind(self.heartbeat_timeout.as_secs_f64())
        .fetch_optional(&mut *conn)
        .await
        .map_err(DestinationError::db(ctx()))?;
        Ok(row.map(|row| {
            let unit = ClaimedUnit {
                id: row.get("id"),
                key: row.get("unit_key"),
                bytes: row.get::<Option<i64>, _>("bytes").map(|b| b.max(0) as u64),
                spec: row
                    .get::<Option<sqlx::types::Json<serde_json::Value>>, _>("spec")
                    .map(|j| j.0),
                attempt: row.get::<i32, _>("attempts").max(0) as u32,
                worker: worker.to_string(),
            };
            debug!(load_id, unit = %unit.key, attempt = unit.attempt, worker, "Work unit claimed.");
            unit
        }))
    }

    /// Records that `unit` is still being worked on (`heartbeat_at = now()`). A unit whose row is locked by the
    /// writing transaction of this worker is alive by that lock and is left as it is.
    ///
    /// # Errors
    /// [`DestinationError::UnitLost`] when the unit was reclaimed by another worker or is no longer running;
    /// [`DestinationError::Database`].
    pub async fn heartbeat(
        &self,
        dest: &Destination,
        unit: &ClaimedUnit,
    ) -> Result<(), DestinationError> {
        let ctx = format!("heartbeat of unit `{}` of load #{}", unit.key, self.load_id);
        let updated = sqlx::query(
            "UPDATE psystem.work_units SET heartbeat_at = now() WHERE id = (SELECT id FROM psystem.work_units \
             WHERE id = $1 AND state = 'running' AND worker = $2 AND attempts = $3 FOR UPDATE SKIP LOCKED)",
        )
        .bind(unit.id)
        .bind(&unit.worker)
        .bind(unit.attempt as i32)
        .execute(dest.pool())
        .await
        .map_err(DestinationError::db(ctx.clone()))?;
        if updated.rows_affected() == 1 {
            return Ok(());
        }
        let row =
            sqlx::query("SELECT state, worker, attempts FROM psystem.work_units WHERE id = $1")
                .bind(unit.id)
                .fetch_optional(dest.pool())
                .await
                .map_err(DestinationError::db(ctx))?;
        self.check_holder(unit, row.as_ref())
    }

    /// Inside the worker's writing transaction, before it commits: locks the unit's row, checks that it is still
    /// this worker's claim and that the load is still `running`.
    ///
    /// Another transaction may hold the row lock for a moment although the unit is still this worker's: another
    /// worker's claim (its `FOR UPDATE SKIP LOCKED` locks the newest version of a unit its snapshot still saw
    /// pending, and keeps that lock to the end of its statement although the unit no longer qualifies), or this
    /// worker's own heartbeat on another connection. So the lock is waited for — at most [`UNIT_LOCK_WAIT`] —
    /// and the holder checked on the row as it is then: a unit reclaimed by another worker meanwhile is refused.
    ///
    /// # Errors
    /// [`DestinationError::UnitLost`] (reclaimed, done, or its row locked for the whole wait),
    /// [`DestinationError::LoadNotActive`], [`DestinationError::Database`].
    pub async fn lock_for_commit(
        &self,
        conn: &mut PgConnection,
        unit: &ClaimedUnit,
    ) -> Result<(), DestinationError> {
        let ctx = || format!("locking unit `{}` of load #{}", unit.key, self.load_id);
        let previous: String = sqlx::query_scalar("SELECT current_setting('lock_timeout')")
            .fetch_one(&mut *conn)
            .await
            .map_err(DestinationError::db(ctx()))?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(format!("{}ms", UNIT_LOCK_WAIT.as_millis()))
            .execute(&mut *conn)
            .await
            .map_err(DestinationError::db(ctx()))?;
        let row = sqlx::query(
            "SELECT state, worker, attempts FROM psystem.work_units WHERE id = $1 FOR UPDATE",
        )
        .bind(unit.id)
        .fetch_optional(&mut *conn)
        .await;
        let row = match row {
            Ok(row) => row,
            Err(e)
                if e.as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| c == "55P03") =>
            {
                return Err(DestinationError::UnitLost {
                    load_id: self.load_id,
                    unit: unit.key.clone(),
                    detail: format!(
                        "another transaction kept its row locked for more than {} s",
                        UNIT_LOCK_WAIT.as_secs()
                    ),
                });
            }
            Err(e) => return Err(DestinationError::db(ctx())(e)),
        };
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(&previous)
            .execute(&mut *conn)
            .await
            .map_err(DestinationError::db(ctx()))?;
        self.check_holder(unit, row.as_ref())?;
        check_running(conn, self.load_id).await
    }

    /// Inside the worker's writing transaction: marks `unit` done with its row count and an optional report
    /// (`psystem.work_units.report`, e.g. rows inserted/updated/unchanged).
    ///
    /// # Errors
    /// [`DestinationError::Database`].
    pub async fn mark_done(
        &self,
        conn: &mut PgConnection,
        unit: &ClaimedUnit,
        rows: u64,
        report: Option<&serde_json::Value>,
    ) -> Result<(), DestinationError> {
        sqlx::query(
            "UPDATE psystem.work_units SET state = 'done', rows = $2, report = $3, heartbeat_at = now(), \
             finished_at = now(), last_error = NULL WHERE id = $1",
        )
        .bind(unit.id)
        .bind(i64::try_from(rows).unwrap_or(i64::MAX))
        .bind(report.map(sqlx::types::Json))
        .execute(&mut *conn)
        .await
        .map_err(DestinationError::db(format!(
            "marking unit `{}` of load #{} done",
            unit.key, self.load_id
        )))?;
        Ok(())
    }

    /// Records that `unit` failed with `error` (must not contain secrets): it becomes `pending` again for
    /// another attempt, or `failed` once it has been attempted `max_attempts` times. Returns the new state.
    ///
    /// # Errors
    /// [`DestinationError::UnitLost`] when the unit is no longer this worker's; [`DestinationError::Database`].
    pub async fn fail(
        &self,
        dest: &Destination,
        unit: &ClaimedUnit,
        error: &str,
        max_attempts: u32,
    ) -> Result<UnitState, DestinationError> {
        let ctx = format!(
            "recording the failure of unit `{}` of load #{}",
            unit.key, self.load_id
        );
        let state: Option<String> = sqlx::query_scalar(
            "UPDATE psystem.work_units SET state = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'pending' END, \
             last_error = $5, worker = NULL, heartbeat_at = NULL, finished_at = now() \
             WHERE id = $1 AND state = 'running' AND worker = $2 AND attempts = $3 RETURNING state",
        )
        .bind(unit.id)
        .bind(&unit.worker)
        .bind(unit.attempt as i32)
        .bind(max_attempts.min(i32::MAX as u32) as i32)
        .bind(error)
        .fetch_optional(dest.pool())
        .await
        .map_err(DestinationError::db(ctx))?;
        match state {
            Some(s) => {
                let state = UnitState::parse(&s);
                warn!(load_id = self.load_id, unit = %unit.key, attempt = unit.attempt, ?state, error, "Work unit failed.");
                Ok(state)
            }
            None => Err(DestinationError::UnitLost {
                load_id: self.load_id,
                unit: unit.key.clone(),
                detail: "it is no longer running under this worker and attempt".into(),
            }),
        }
    }

    /// The units by state, with the rows and bytes of the done ones.
    ///
    /// # Errors
    /// [`DestinationError::Database`].
    pub async fn counts(&self, dest: &Destination) -> Result<UnitCounts, DestinationError> {
        unit_counts(dest.pool(), self.load_id).await
    }

    /// Checks a `work_units` row (state, worker, attempts) against the claim.
    fn check_holder(
        &self,
        unit: &ClaimedUnit,
        row: Option<&sqlx::postgres::PgRow>,
    ) -> Result<(), DestinationError> {
        let lost = |detail: String| DestinationError::UnitLost {
            load_id: self.load_id,
            unit: unit.key.clone(),
            detail,
        };
        let Some(row) = row else {
            return Err(lost("it is no longer in the ledger".into()));
        };
        let state: String = row.get("state");
        let worker: Option<String> = row.get("worker");
        let attempts: i32 = row.get("attempts");
        if state == "running"
            && worker.as_deref() == Some(unit.worker.as_str())
            && attempts == unit.attempt as i32
        {
            Ok(())
        } else {
            Err(lost(format!(
                "it is {state} under worker {} at attempt {attempts} (this worker: {} at attempt {})",
                worker.as_deref().unwrap_or("-"),
                unit.worker,
                unit.attempt
            )))
        }
    }
}

/// Inside a load's finishing transaction: locks its `psystem.loads` row, checks that it is `running` and that every
/// unit is done. Returns the unit counts.
///
/// # Errors
/// [`DestinationError::LoadNotFound`], [`DestinationError::LoadNotActive`] (e.g. another worker finished it),
/// [`DestinationError::UnitsNotDone`] with up to 5 examples, [`DestinationError::Database`].
pub(crate) async fn lock_for_finish(
    conn: &mut PgConnection,
    load_id: i64,
) -> Result<UnitCounts, DestinationError> {
    let ctx = |what: &str| format!("finishing load #{load_id}: {what}");
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM psystem.loads WHERE id = $1 FOR UPDATE")
            .bind(load_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(DestinationError::db(ctx("lock the load")))?
            .ok_or(DestinationError::LoadNotFound { load_id })?;
    crate::ledger::require_running(load_id, state)?;
    let counts = unit_counts(&mut *conn, load_id).await?;
    if counts.pending + counts.running + counts.failed > 0 {
        let examples: Vec<String> = sqlx::query_scalar(
            "SELECT unit_key || ' (' || state || ')' FROM psystem.work_units WHERE load_id = $1 \
             AND state <> 'done' ORDER BY id LIMIT 5",
        )
        .bind(load_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(DestinationError::db(ctx("list the units not done")))?;
        return Err(DestinationError::UnitsNotDone {
            load_id,
            pending: counts.pending,
            running: counts.running,
            failed: counts.failed,
            examples,
        });
    }
    Ok(counts)
}

/// Inside the transaction that opens a new load: marks the job's unfinished loads (`RESUMABLE` states)
/// `cancelled` and drops their staging (or seen) tables, so that exactly one load of the job is open.
///
/// # Errors
/// [`DestinationError::Database`].
pub(crate) async fn cancel_unfinished(
    conn: &mut PgConnection,
    job_key: &str,
) -> Result<(), DestinationError> {
    let cancelled = sqlx::query(
        "UPDATE psystem.loads SET state = 'cancelled', finished_at = now(), updated_at = now() \
         WHERE job_key = $1 AND state = ANY($2) RETURNING id, target_schema, staging_table",
    )
    .bind(job_key)
    .bind(crate::destination::RESUMABLE)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(format!(
        "cancelling the unfinished loads of job `{job_key}`"
    )))?;
    for row in &cancelled {
        let schema: Option<String> = row.get("target_schema");
        let staging: Option<String> = row.get("staging_table");
        if let (Some(schema), Some(staging)) = (schema, staging) {
            crate::destination::drop_table_if_exists(
                conn,
                &psystem_core::TableRef::new(schema, staging),
            )
            .await?;
        }
        tracing::info!(
            load_id = row.get::<i64, _>("id"),
            job_key,
            "Unfinished load cancelled."
        );
    }
    Ok(())
}

/// `psystem cancel`: abandons every unfinished load of `job_key` (any source kind) in one transaction — each is
/// marked `cancelled`, its staging (or seen) table is dropped and its work units that are not done are deleted,
/// so no worker claims them again. The rows an `append` load had committed are deleted in the same transaction
/// (found by the transactions its pages recorded, as a restart does), so the next run, which starts over, does not
/// add them a second time; when they can no longer be told apart from the table's other rows they stay, and the
/// outcome says how many. Rows a `merge` load or a UniProt load already wrote stay (loading the same data again
/// gives the same table). The caller holds the job's advisory lock, so no process of this job is writing it.
///
/// # Errors
/// [`DestinationError::Database`].
pub async fn cancel_job(
    dest: &Destination,
    job_key: &str,
) -> Result<CancelledJob, DestinationError> {
    let ctx = |what: &str| format!("cancelling the unfinished loads of job `{job_key}`: {what}");
    let mut tx = dest
        .pool()
        .begin()
        .await
        .map_err(DestinationError::db(ctx("begin")))?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM psystem.loads WHERE job_key = $1 AND state = ANY($2) ORDER BY id FOR UPDATE",
    )
    .bind(job_key)
    .bind(crate::destination::RESUMABLE)
    .fetch_all(&mut *tx)
    .await
    .map_err(DestinationError::db(ctx("find them")))?;
    sqlx::query("DELETE FROM psystem.work_units WHERE load_id = ANY($1) AND state <> 'done'")
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("delete their pending work units")))?;
    let appended: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT id, target_schema, target_table, rows FROM psystem.loads \
         WHERE id = ANY($1) AND mode = 'append' AND rows > 0 AND target_schema IS NOT NULL \
         AND target_table IS NOT NULL ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(DestinationError::db(ctx("find the rows of append loads")))?;
    let mut outcome = CancelledJob {
        loads: ids.clone(),
        ..CancelledJob::default()
    };
    for (id, schema, table, rows) in appended {
        let table = psystem_core::TableRef::new(schema, table);
        let rows = rows.max(0) as u64;
        sqlx::query("SAVEPOINT psystem_cancel_rows")
            .execute(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx("savepoint")))?;
        match crate::destination::remove_appended_rows(&mut tx, job_key, id, &table, rows).await {
            Ok(n) => outcome.removed_rows += n,
            Err(DestinationError::RestartCannotRemoveRows { reason, .. }) => {
                sqlx::query("ROLLBACK TO SAVEPOINT psystem_cancel_rows")
                    .execute(&mut *tx)
                    .await
                    .map_err(DestinationError::db(ctx("roll back to the savepoint")))?;
                tracing::warn!(load_id = id, %table, %reason, "The rows of the cancelled append load stay.");
                outcome.kept_rows += rows;
            }
            Err(e) => return Err(e),
        }
    }
    cancel_unfinished(&mut tx, job_key).await?;
    tx.commit()
        .await
        .map_err(DestinationError::db(ctx("commit")))?;
    Ok(outcome)
}

/// What [`cancel_job`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CancelledJob {
    /// The loads marked `cancelled` (none when nothing was unfinished).
    pub loads: Vec<i64>,
    /// Rows of cancelled `append` loads deleted from their tables.
    pub removed_rows: u64,
    /// Rows of cancelled `append` loads that stay because they can no longer be told apart from the table's
    /// other rows (pages older than the page records, rows changed since).
    pub kept_rows: u64,
}

/// Inside the transaction that opens a new load: records its work units (key, bytes, optional spec), `pending`.
///
/// # Errors
/// [`DestinationError::Database`] (a repeated unit key included).
pub(crate) async fn record_units(
    conn: &mut PgConnection,
    load_id: i64,
    units: &[UnitSpec],
) -> Result<(), DestinationError> {
    let keys: Vec<&str> = units.iter().map(|u| u.key.as_str()).collect();
    let bytes: Vec<i64> = units
        .iter()
        .map(|u| i64::try_from(u.bytes).unwrap_or(i64::MAX))
        .collect();
    let specs: Vec<Option<sqlx::types::Json<&serde_json::Value>>> = units
        .iter()
        .map(|u| u.spec.as_ref().map(sqlx::types::Json))
        .collect();
    sqlx::query(
        "INSERT INTO psystem.work_units (load_id, unit_key, bytes, spec) \
         SELECT $1, k, b, s FROM unnest($2::text[], $3::bigint[], $4::jsonb[]) AS u(k, b, s)",
    )
    .bind(load_id)
    .bind(&keys)
    .bind(&bytes)
    .bind(&specs)
    .execute(&mut *conn)
    .await
    .map_err(DestinationError::db(format!(
        "recording the work units of load #{load_id}"
    )))?;
    Ok(())
}

/// Inside the transaction that resumes a load: its `running` and `failed` units become `pending` (the caller
/// holds the job, so no worker of it is running; a failed unit gets new attempts).
///
/// # Errors
/// [`DestinationError::Database`].
pub(crate) async fn reset_unfinished_units(
    conn: &mut PgConnection,
    load_id: i64,
) -> Result<(), DestinationError> {
    sqlx::query(
        "UPDATE psystem.work_units SET state = 'pending', worker = NULL, heartbeat_at = NULL \
         WHERE load_id = $1 AND state IN ('running', 'failed')",
    )
    .bind(load_id)
    .execute(&mut *conn)
    .await
    .map_err(DestinationError::db(format!(
        "resetting the running units of load #{load_id}"
    )))?;
    Ok(())
}

/// A running load that `psystem worker` processes may join: it has a `worker_spec` and units to claim.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedLoad {
    /// The load id.
    pub load_id: i64,
    /// The job key.
    pub job_key: String,
    /// What a worker needs to join it (`kind`: `uniprot` or `parquet`).
    pub worker_spec: serde_json::Value,
}

/// The running loads that workers may join: a `worker_spec`, and units pending or running (a running unit may
/// need taking over when its worker stops heartbeating). Oldest load first.
///
/// # Errors
/// [`DestinationError::Database`].
pub async fn shared_loads(dest: &Destination) -> Result<Vec<SharedLoad>, DestinationError> {
    let rows = sqlx::query(
        "SELECT l.id, l.job_key, l.worker_spec FROM psystem.loads l WHERE l.state = 'running' \
         AND l.worker_spec IS NOT NULL AND EXISTS (SELECT 1 FROM psystem.work_units w WHERE w.load_id = l.id \
         AND w.state IN ('pending', 'running')) ORDER BY l.id",
    )
    .fetch_all(dest.pool())
    .await
    .map_err(DestinationError::db("listing shared loads"))?;
    Ok(rows
        .into_iter()
        .map(|r| SharedLoad {
            load_id: r.get("id"),
            job_key: r.get("job_key"),
            worker_spec: r
                .get::<sqlx::types::Json<serde_json::Value>, _>("worker_spec")
                .0,
        })
        .collect())
}

/// Errors unless load `load_id` is `running`.
pub(crate) async fn check_running(
    conn: &mut PgConnection,
    load_id: i64,
) -> Result<(), DestinationError> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM psystem.loads WHERE id = $1")
        .bind(load_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(DestinationError::db(format!(
            "reading the state of load #{load_id}"
        )))?
        .ok_or(DestinationError::LoadNotFound { load_id })?;
    crate::ledger::require_running(load_id, state)
}

/// The units of load `load_id` by state.
pub(crate) async fn unit_counts<'c, E>(
    executor: E,
    load_id: i64,
) -> Result<UnitCounts, DestinationError>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE state = 'pending') AS pending, \
         count(*) FILTER (WHERE state = 'running') AS running, \
         count(*) FILTER (WHERE state = 'done') AS done, \
         count(*) FILTER (WHERE state = 'failed') AS failed, \
         COALESCE(sum(rows) FILTER (WHERE state = 'done'), 0)::bigint AS rows, \
         COALESCE(sum(bytes) FILTER (WHERE state = 'done'), 0)::bigint AS bytes_done, \
         COALESCE(sum(bytes), 0)::bigint AS bytes_total \
         FROM psystem.work_units WHERE load_id = $1",
    )
    .bind(load_id)
    .fetch_one(executor)
    .await
    .map_err(DestinationError::db(format!(
        "counting the units of load #{load_id}"
    )))?;
    let n = |c: &str| row.get::<i64, _>(c).max(0) as u64;
    Ok(UnitCounts {
        pending: n("pending"),
        running: n("running"),
        done: n("done"),
        failed: n("failed"),
        rows: n("rows"),
        bytes_done: n("bytes_done"),
        bytes_total: n("bytes_total"),
    })
}

/// One work unit of a load: usually one file of the dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSpec {
    /// The unit key, unique in the load: the file's path relative to the dataset (or release) folder.
    pub key: String,
    /// The file's size in bytes (recorded, summed into the load's `bytes`).
    pub bytes: u64,
    /// Anything else a worker needs to process the unit (stored in `psystem.work_units.spec`).
    pub spec: Option<serde_json::Value>,
}

impl UnitSpec {
    /// A unit with a key and a size, no extra spec.
    pub fn new(key: impl Into<String>, bytes: u64) -> UnitSpec {
        UnitSpec {
            key: key.into(),
            bytes,
            spec: None,
        }
    }
}
