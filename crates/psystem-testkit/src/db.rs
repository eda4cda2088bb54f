//! Throwaway databases on a real PostgreSQL server for tests.
//!
//! [`TestDb::create`] makes a fresh database `psystem_test_<random>` on the server named by the environment
//! variable `PSYSTEM_TEST_DATABASE_URL` (an admin URL, e.g. `postgres://postgres@127.0.0.1:55432/postgres`) and
//! drops it again (`DROP DATABASE … WITH (FORCE)`) when the [`TestDb`] is dropped. Without the variable the
//! test panics with instructions: database tests fail, they never silently skip.

use std::fmt;
use std::thread;

use sqlx::{Connection, Executor, PgConnection};

/// The environment variable holding the admin URL of the PostgreSQL server that tests use.
pub const TEST_DATABASE_URL_ENV: &str = "PSYSTEM_TEST_DATABASE_URL";

/// A fresh, empty database that is dropped when this value is dropped.
pub struct TestDb {
    admin_url: String,
    url: String,
    name: String,
}

impl fmt::Debug for TestDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs may carry a password; only the database name is shown.
        f.debug_struct("TestDb")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestDb {
    /// Creates a fresh database on the server from `PSYSTEM_TEST_DATABASE_URL`.
    ///
    /// # Panics
    /// When the variable is missing or malformed, or the server cannot be reached or refuses `CREATE DATABASE`.
    pub async fn create() -> TestDb {
        let admin_url = admin_url_from_env();
        let name = format!("psystem_test_{:016x}", rand::random::<u64>());
        let url = database_url(&admin_url, &name);
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("cannot connect to the test server from {TEST_DATABASE_URL_ENV}: {e}")
        });
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = conn.close().await;
        tracing::debug!(database = %name, "Test database created.");
        TestDb {
            admin_url,
            url,
            name,
        }
    }

    /// Like [`TestDb::create`], for synchronous tests (works inside and outside a tokio runtime).
    ///
    /// # Panics
    /// As [`TestDb::create`].
    pub fn create_blocking() -> TestDb {
        run_on_own_thread(TestDb::create()).unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// The connection URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name of this database (`psystem_test_<random>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Best effort: a fresh thread with its own runtime works whether or not we are inside tokio.
        let result = run_on_own_thread(async move {
            let mut conn = PgConnection::connect(&admin_url).await?;
            conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await?;
            let _ = conn.close().await;
            Ok::<(), sqlx::Error>(())
        });
        match result {
            Ok(Ok(())) => tracing::debug!(database = %self.name, "Test database dropped."),
            Ok(Err(e)) => {
                tracing::warn!(database = %self.name, error = %e, "Could not drop test database.")
            }
            Err(_) => tracing::warn!(database = %self.name, "Dropping the test database panicked."),
        }
    }
}

/// Runs a future to completion on a new thread with its own current-thread runtime.
fn run_on_own_thread<F>(fut: F) -> thread::Result<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot build a tokio runtime for the test database");
        rt.block_on(fut)
    })
    .join()
}

fn admin_url_from_env() -> String {
    match std::env::var(TEST_DATABASE_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{TEST_DATABASE_URL_ENV} is not set. Database tests need a PostgreSQL server: set it to an admin URL, \
             e.g. `export {TEST_DATABASE_URL_ENV}=postgres://postgres@127.0.0.1:55432/postgres` \
             (a role allowed to CREATE DATABASE)."
        ),
    }
}

/// The admin URL with its database path replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin_url).unwrap_or_else(|e| {
        panic!("{TEST_DATABASE_URL_ENV} is not a valid URL ({e}); expected postgres://user@host:port/db")
    });
    url.set_path(&format!("/{name}"));
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_path_and_keeps_query() {
        assert_eq!(
            database_url("postgres://u:p@h:5/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(database_url("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    }
}
