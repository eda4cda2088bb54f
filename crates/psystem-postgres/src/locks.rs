//! Bounded waits for the locks a load takes on its target table.
//!
//! PostgreSQL waits for a table lock for as long as another session holds a conflicting one (`lock_timeout` is 0 by
//! default): a `LOCK TABLE … IN ACCESS EXCLUSIVE MODE` left open in a psql session would stall a load silently and
//! forever. Every step of a load that touches the target table takes its lock first through [`lock_table`], which
//! waits at most [`lock_timeout`] (`PSYSTEM_LOCK_TIMEOUT`, default 10 s) and then fails with
//! [`DestinationError::TableLocked`], naming the sessions that hold a conflicting lock (process id, lock mode,
//! and their application, user, state and query from `pg_stat_activity`). Only that one lock is bounded: the
//! rest of the transaction keeps the server's setting, so waits that are part of normal work (two jobs assigning
//! the same ID cache key) are not cut short.

use std::time::Duration;

use psystem_core::TableRef;
use sqlx::{PgConnection, PgPool, Row};
use tracing::warn;

use crate::ident::quote_table;
use crate::DestinationError;

/// The environment variable that sets how long a load waits for a lock on its target table, as a duration
/// (`10s`, `500ms`, `2m`; humantime syntax). Default [`DEFAULT_LOCK_TIMEOUT`].
pub const LOCK_TIMEOUT_ENV: &str = "PSYSTEM_LOCK_TIMEOUT";

/// How long a load waits for a lock on its target table unless [`LOCK_TIMEOUT_ENV`] says otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a load waits for a lock on its target table: [`LOCK_TIMEOUT_ENV`] when it holds a valid, non-zero
/// duration (an invalid one is logged and ignored), else [`DEFAULT_LOCK_TIMEOUT`].
pub fn lock_timeout() -> Duration {
    match std::env::var(LOCK_TIMEOUT_ENV) {
        Ok(v) if !v.trim().is_empty() => match humantime::parse_duration(v.trim()) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                warn!(value = %v, "{LOCK_TIMEOUT_ENV} is not a duration like 10s or 500ms; using {} s.", DEFAULT_LOCK_TIMEOUT.as_secs());
                DEFAULT_LOCK_TIMEOUT
            }
        },
        _ => DEFAULT_LOCK_TIMEOUT,
    }
}

/// A table lock mode a load takes (`LOCK TABLE … IN <mode> MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableLock {
    /// `ROW EXCLUSIVE`: what INSERT and COPY take (append, merge by page).
    RowExclusive,
    /// `SHARE ROW EXCLUSIVE`: no other writer, readers go on (a release merge).
    ShareRowExclusive,
    /// `ACCESS EXCLUSIVE`: what DROP, RENAME and ALTER TABLE take (replace, schema evolution).
    AccessExclusive,
}

impl TableLock {
    fn sql(self) -> &'static str {
        match self {
            TableLock::RowExclusive => "ROW EXCLUSIVE",
            TableLock::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            TableLock::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// The `pg_locks.mode` names that conflict with this mode (PostgreSQL's table-level lock conflict table).
    fn conflicting(self) -> &'static [&'static str] {
        match self {
            TableLock::RowExclusive => &[
                "ShareLock",
                "ShareRowExclusiveLock",
                "ExclusiveLock",
                "AccessExclusiveLock",
            ],
            TableLock::ShareRowExclusive => &[
                "RowExclusiveLock",
                "ShareUpdateExclusiveLock",
                "ShareLock",
                "ShareRowExclusiveLock",
                "ExclusiveLock",
                "AccessExclusiveLock",
            ],
            TableLock::AccessExclusive => &[
                "AccessShareLock",
                "RowShareLock",
                "RowExclusiveLock",
                "ShareUpdateExclusiveLock",
                "ShareLock",
                "ShareRowExclusiveLock",
                "ExclusiveLock",
                "AccessExclusiveLock",
            ],
        }
    }
}

/// Inside the caller's transaction on `conn`: locks `table` in `mode`, waiting at most [`lock_timeout`]; the
/// transaction's own `lock_timeout` is restored afterwards. Does nothing when the table does not exist.
///
/// # Errors
/// [`DestinationError::TableLocked`] when another session held a conflicting lock for the whole wait (the
/// transaction is then aborted; the holders are looked up on another connection of `pool`);
/// [`DestinationError::Database`].
pub async fn lock_table(
    conn: &mut PgConnection,
    pool: &PgPool,
    table: &TableRef,
    mode: TableLock,
) -> Result<(), DestinationError> {
    let ctx = |what: &str| format!("locking table {table} ({what})");
    let quoted = quote_table(table);
    let row = sqlx::query(
        "SELECT pg_backend_pid() AS pid, current_setting('lock_timeout') AS previous, \
         to_regclass($1) IS NOT NULL AS present",
    )
    .bind(&quoted)
    .fetch_one(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("read the lock timeout")))?;
    if !row.get::<bool, _>("present") {
        return Ok(());
    }
    let pid: i32 = row.get("pid");
    let previous: String = row.get("previous");
    let wait = lock_timeout();
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(format!("{}ms", wait.as_millis().max(1)))
        .execute(&mut *conn)
        .await
        .map_err(DestinationError::db(ctx("set the lock timeout")))?;
    let locked = sqlx::query(&format!("LOCK TABLE {quoted} IN {} MODE", mode.sql()))
        .execute(&mut *conn)
        .await;
    if let Err(source) = locked {
        let timed_out = source
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "55P03");
        if !timed_out {
            return Err(DestinationError::db(ctx(mode.sql()))(source));
        }
        let holders = holders(pool, &quoted, mode, pid).await;
        warn!(table = %table, ?holders, "Target table locked by another session; gave up waiting.");
        return Err(DestinationError::TableLocked {
            table: table.to_string(),
            waited: humantime::format_duration(wait).to_string(),
            holders,
            source,
        });
    }
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(&previous)
        .execute(&mut *conn)
        .await
        .map_err(DestinationError::db(ctx("restore the lock timeout")))?;
    Ok(())
}

/// The sessions other than `own_pid` holding a lock on `quoted` that conflicts with `mode`, each described as
/// `process <pid> holding <mode> (application …, user …, state …, query: …)`. Best effort: empty when the
/// lookup fails.
async fn holders(pool: &PgPool, quoted: &str, mode: TableLock, own_pid: i32) -> Vec<String> {
    let rows = sqlx::query(
        "SELECT l.pid, l.mode, a.application_name, a.usename::text AS usename, a.state, \
         left(regexp_replace(a.query, '\\s+', ' ', 'g'), 200) AS query \
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'relation' AND l.relation = to_regclass($1) AND l.granted AND l.pid <> $2 \
         AND l.mode = ANY($3) ORDER BY l.pid",
    )
    .bind(quoted)
    .bind(own_pid)
    .bind(mode.conflicting())
    .fetch_all(pool)
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "Looking up the sessions holding a table lock failed.");
            return Vec::new();
        }
    };
    rows.iter()
        .map(|r| {
            let pid: Option<i32> = r.get("pid");
            let lock: String = r.get("mode");
            let mut about = Vec::new();
            let mut push = |label: &str, value: Option<String>| {
                if let Some(v) = value.filter(|v| !v.is_empty()) {
                    about.push(format!("{label} {v}"));
                }
            };
            push("application", r.get("application_name"));
            push("user", r.get("usename"));
            push("state", r.get("state"));
            push("last query:", r.get("query"));
            let pid = pid.map_or_else(|| "?".to_string(), |p| p.to_string());
            if about.is_empty() {
                format!("process {pid} holding {lock}")
            } else {
                format!("process {pid} holding {lock} ({})", about.join(", "))
            }
        })
        .collect()
}
