//! Saved database connections: `$PSYSTEM_HOME/databases.yaml` (names, URLs without passwords, environment-variable
//! references, the active one) and passwords in the OS keychain (the `keyring` crate).
//!
//! File format (written by this module, atomically):
//! ```yaml
//! active: analytics
//! databases:
//!   - name: analytics
//!     url: postgres://me@db.example.org:5432/health   # never a password
//!     password: keychain                              # keychain | env | none
//!   - name: ci
//!     url: postgres://postgres@127.0.0.1:55432/postgres
//!     password: env
//!     env: CI_DB_PASSWORD                             # the variable holding the password
//! ```
//! Keychain entries: service `psystem`, user `database:<name>`. On Linux the `linux-native` backend (kernel keyutils,
//! user keyring) is used: it works without a desktop session, but its entries live until reboot or logout.
//!
//! This belongs in psystem-api eventually (the CLI could then use `--db NAME`).

use crate::error::{IpcError, IpcResult};
use psystem_core::Home;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The keychain service name of psystem's entries.
pub const KEYCHAIN_SERVICE: &str = "psystem";

/// Where a saved database's password comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PasswordSource {
    /// The OS keychain (service `psystem`, user `database:<name>`).
    Keychain,
    /// An environment variable, named by `env`.
    Env,
    /// No password (trust, peer or `.pgpass` authentication).
    #[default]
    None,
}

/// One saved database as stored in `databases.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDatabase {
    /// Unique name chosen by the user (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// `postgres://user@host:port/database`, without password.
    pub url: String,
    /// Where the password comes from.
    #[serde(default)]
    pub password: PasswordSource,
    /// The environment variable holding the password, with `password: env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// The whole `databases.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseFile {
    /// The name of the active database (the default destination of new jobs), if any.
    #[serde(default)]
    pub active: Option<String>,
    /// Saved databases, in the order they were added.
    #[serde(default)]
    pub databases: Vec<SavedDatabase>,
}

/// A saved database as the UI sees it (`databases_list`, `database_save`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseView {
    /// The name.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port (5432 when the URL has none).
    pub port: u16,
    /// Database name (empty when the URL has none).
    pub database: String,
    /// User name (empty when the URL has none).
    pub user: String,
    /// `keychain`, `env` or `none`.
    pub password_source: PasswordSource,
    /// The environment variable, for `env`.
    pub env_var: Option<String>,
    /// True for 127.0.0.1, ::1 and localhost.
    pub is_local: bool,
    /// True for the active database.
    pub active: bool,
}

/// The result of `database_test`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTest {
    /// True when a connection was made and the server answered.
    pub ok: bool,
    /// `SHOW server_version`, when ok.
    pub server_version: Option<String>,
    /// Why it failed (never with the password), or a note.
    pub message: Option<String>,
}

/// The saved databases of one psystem home.
#[derive(Debug, Clone)]
pub struct DatabaseStore {
    path: PathBuf,
}

fn invalid(message: impl Into<String>) -> IpcError {
    IpcError::new("invalid_database", message)
}

fn keychain_error(name: &str, e: keyring::Error) -> IpcError {
    IpcError::new(
        "keychain",
        format!(
            "the OS keychain failed for database `{name}`: {e}; save the password in an environment variable instead \
             (passwordEnv)"
        ),
    )
}

fn keychain_entry(name: &str) -> Result<keyring::Entry, IpcError> {
    keyring::Entry::new(KEYCHAIN_SERVICE, &format!("database:{name}"))
        .map_err(|e| keychain_error(name, e))
}

impl DatabaseStore {
    /// The store of `home`: `<home>/databases.yaml`.
    pub fn new(home: &Home) -> DatabaseStore {
        DatabaseStore {
            path: home.root().join("databases.yaml"),
        }
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reads the file; a missing file is an empty list.
    ///
    /// # Errors
    /// `io` when it cannot be read, `invalid_database` when it is not valid YAML of this shape.
    pub fn read(&self) -> IpcResult<DatabaseFile> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if text.trim().is_empty() => Ok(DatabaseFile::default()),
            Ok(text) => serde_yaml_ng::from_str(&text)
                .map_err(|e| invalid(format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DatabaseFile::default()),
            Err(e) => Err(IpcError::new("io", format!("{}: {e}", self.path.display()))),
        }
    }

    fn write(&self, file: &DatabaseFile) -> IpcResult<()> {
        let text = serde_yaml_ng::to_string(file)
            .map_err(|e| IpcError::new("io", format!("{}: {e}", self.path.display())))?;
        let header = "# Saved databases of the psystem desktop app. Passwords are never stored here: they are in the \
                      OS keychain (password: keychain) or an environment variable (password: env).\n";
        psystem_core::atomic::write_atomic(&self.path, format!("{header}{text}").as_bytes())
            .map_err(|e| IpcError::new("io", format!("{}: {e}", self.path.display())))
    }

    /// The views of every saved database, and the active name.
    ///
    /// # Errors
    /// As [`DatabaseStore::read`].
    pub fn list(&self) -> IpcResult<(Option<String>, Vec<DatabaseView>)> {
        let file = self.read()?;
        let views = file
            .databases
            .iter()
            .map(|d| view(d, file.active.as_deref() == Some(d.name.as_str())))
            .collect::<IpcResult<Vec<_>>>()?;
        Ok((file.active, views))
    }

    /// Saves (adds or replaces) database `name`. A password in `url` is taken out of it; it, or `password`, goes to
    /// the keychain. `password_env` names an environment variable instead. The first database saved becomes active.
    ///
    /// # Errors
    /// `invalid_database` for a bad name or URL (not `postgres://` / `postgresql://`), `keychain` when the keychain
    /// refuses the password (nothing is saved then), `io`.
    pub fn save(
        &self,
        name: &str,
        url: &str,
        password: Option<String>,
        password_env: Option<String>,
    ) -> IpcResult<DatabaseView> {
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(format!(
                "database name `{name}`: use letters, digits, `-`, `_` and `.`"
            )));
        }
        let mut parsed = url::Url::parse(url.trim()).map_err(|e| {
            invalid(format!(
                "database URL: {e} (expected postgres://user@host:port/db)"
            ))
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") || !parsed.has_host() {
            return Err(invalid(
                "database URL must look like postgres://user@host:port/database",
            ));
        }
        let in_url = parsed.password().map(percent_decode);
        let _ = parsed.set_password(None);
        let password = password.filter(|p| !p.is_empty()).or(in_url);
        let password_env = password_env
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        if let Some(var) = &password_env {
            if !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(format!(
                    "environment variable name `{var}`: use letters, digits and `_`"
                )));
            }
        }
        let source = match (&password, &password_env) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "give either a password (kept in the keychain) or an environment variable, not both",
                ))
            }
            (Some(p), None) => {
                keychain_entry(name)?
                    .set_password(p)
                    .map_err(|e| keychain_error(name, e))?;
                PasswordSource::Keychain
            }
            (None, Some(_)) => PasswordSource::Env,
            (None, None) => PasswordSource::None,
        };
        let saved = SavedDatabase {
            name: name.to_string(),
            url: parsed.to_string(),
            password: source,
            env: password_env,
        };
        let mut file = self.read()?;
        if let Some(old) = file.databases.iter().find(|d| d.name == name) {
            if old.password == PasswordSource::Keychain && source != PasswordSource::Keychain {
                let _ = keychain_entry(name)
                    .and_then(|e| e.delete_credential().map_err(|e| keychain_error(name, e)));
            }
        }
        file.databases.retain(|d| d.name != name);
        file.databases.push(saved.clone());
        if file.active.is_none() {
            file.active = Some(name.to_string());
        }
        self.write(&file)?;
        view(&saved, file.active.as_deref() == Some(name))
    }

    /// Removes database `name` (and its keychain entry). If it was active, none is active afterwards.
    ///
    /// # Errors
    /// `database_not_found`, `io`.
    pub fn remove(&self, name: &str) -> IpcResult<()> {
        let mut file = self.read()?;
        let found = self.find(&file, name)?.clone();
        if found.password == PasswordSource::Keychain {
            // A missing entry is fine; the file is what matters.
            if let Ok(e) = keychain_entry(name) {
                let _ = e.delete_credential();
            }
        }
        file.databases.retain(|d| d.name != found.name);
        if file.active.as_deref() == Some(found.name.as_str()) {
            file.active = None;
        }
        self.write(&file)
    }

    /// Makes database `name` the active one.
    ///
    /// # Errors
    /// `database_not_found`, `io`.
    pub fn activate(&self, name: &str) -> IpcResult<DatabaseView> {
        let mut file = self.read()?;
        let found = self.find(&file, name)?.clone();
        file.active = Some(found.name.clone());
        self.write(&file)?;
        view(&found, true)
    }

    fn find<'a>(&self, file: &'a DatabaseFile, name: &str) -> IpcResult<&'a SavedDatabase> {
        file.databases
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| {
                IpcError::new(
                    "database_not_found",
                    format!(
                        "no saved database `{name}` in {}; saved: {}",
                        self.path.display(),
                        if file.databases.is_empty() {
                            "none".to_string()
                        } else {
                            file.databases
                                .iter()
                                .map(|d| d.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                )
            })
    }

    /// The full connection URL of database `name`, with its password from the keychain or environment.
    /// Keep it in memory only: never log it or write it anywhere.
    ///
    /// # Errors
    /// `database_not_found`; `keychain` when the keychain has no password for it or fails; `invalid_database` when
    /// its environment variable is not set.
    pub fn connection_url(&self, name: &str) -> IpcResult<String> {
        let file = self.read()?;
        let d = self.find(&file, name)?;
        let password = match d.password {
            PasswordSource::None => None,
            PasswordSource::Keychain => Some(
                keychain_entry(name)?
                    .get_password()
                    .map_err(|e| keychain_error(name, e))?,
            ),
            PasswordSource::Env => {
                let var = d.env.clone().unwrap_or_default();
                Some(std::env::var(&var).map_err(|_| {
                    invalid(format!(
                        "database `{name}` takes its password from ${var}, which is not set in the app's environment"
                    ))
                })?)
            }
        };
        let mut url = url::Url::parse(&d.url).map_err(|e| invalid(format!("{}: {e}", d.url)))?;
        if let Some(p) = password {
            url.set_password(Some(&p)).map_err(|_| {
                invalid(format!(
                    "database `{name}`: cannot set a password on {}",
                    d.url
                ))
            })?;
        }
        Ok(url.to_string())
    }

    /// The active database's full connection URL, when one is active.
    ///
    /// # Errors
    /// As [`DatabaseStore::connection_url`].
    pub fn active_url(&self) -> IpcResult<Option<String>> {
        match self.read()?.active {
            Some(name) => self.connection_url(&name).map(Some),
            None => Ok(None),
        }
    }

    /// The active database's name.
    ///
    /// # Errors
    /// As [`DatabaseStore::read`].
    pub fn active_name(&self) -> IpcResult<Option<String>> {
        Ok(self.read()?.active)
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn view(d: &SavedDatabase, active: bool) -> IpcResult<DatabaseView> {
    let url = url::Url::parse(&d.url).map_err(|e| invalid(format!("{}: {e}", d.url)))?;
    let host = url.host_str().unwrap_or_default().to_string();
    let is_local = matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]");
    Ok(DatabaseView {
        name: d.name.clone(),
        port: url.port().unwrap_or(5432),
        database: url.path().trim_start_matches('/').to_string(),
        user: percent_decode(url.username()),
        host,
        password_source: d.password,
        env_var: d.env.clone(),
        is_local,
        active,
    })
}

/// Connects to `url` (at most 10 s) and asks for `SHOW server_version`. Failures are `ok: false` with a message
/// that never contains the password.
pub async fn test_connection(url: &str) -> ConnectionTest {
    use sqlx::Connection;
    let attempt = async {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok::<String, sqlx::Error>(version)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), attempt).await {
        Ok(Ok(version)) => ConnectionTest {
            ok: true,
            server_version: Some(version),
            message: None,
        },
        Ok(Err(e)) => ConnectionTest {
            ok: false,
            server_version: None,
            message: Some(scrub(&e.to_string(), url)),
        },
        Err(_) => ConnectionTest {
            ok: false,
            server_version: None,
            message: Some(format!(
                "no answer from {} within 10 s",
                psystem_core::redact::redact_url(url)
            )),
        },
    }
}

/// Removes the password of `url` from `text`, should a driver message quote it.
fn scrub(text: &str, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        Some(p) if !p.is_empty() => text.replace(&p, "***"),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, DatabaseStore) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        (dir, DatabaseStore::new(&home))
    }

    #[test]
    fn save_env_reference_keeps_no_password_in_the_file() {
        let (_d, s) = store();
        // A password in the URL goes to the keychain. In a sandbox whose kernel refuses keyutils that is a
        // `keychain` error and nothing is written; else the file has no password and the URL gets it back.
        match s.save(
            "ci",
            "postgres://me:secret@127.0.0.1:55432/postgres",
            None,
            None,
        ) {
            Err(e) => {
                assert_eq!(e.code, "keychain", "{e}");
                assert!(!e.message.contains("secret"));
                assert!(s.read().unwrap().databases.is_empty());
            }
            Ok(v) => {
                assert_eq!(v.password_source, PasswordSource::Keychain);
                let text = std::fs::read_to_string(s.path()).unwrap();
                assert!(!text.contains("secret"), "{text}");
                assert_eq!(
                    s.connection_url("ci").unwrap(),
                    "postgres://me:secret@127.0.0.1:55432/postgres"
                );
                s.remove("ci").unwrap();
                assert_eq!(
                    s.connection_url("ci").unwrap_err().code,
                    "database_not_found"
                );
            }
        }
        std::env::set_var("PSYSTEM_DB_TEST_PW", "pw-from-env");
        let v = s
            .save(
                "envdb",
                "postgres://me@db.example.org/health",
                None,
                Some("PSYSTEM_DB_TEST_PW".into()),
            )
            .unwrap();
        assert_eq!(v.password_source, PasswordSource::Env);
        assert_eq!(v.port, 5432);
        assert_eq!(v.database, "health");
        assert!(!v.is_local);
        let text = std::fs::read_to_string(s.path()).unwrap();
        assert!(
            !text.contains("secret") && !text.contains("pw-from-env"),
            "{text}"
        );
        assert_eq!(
            s.connection_url("envdb").unwrap(),
            "postgres://me:pw-from-env@db.example.org/health"
        );
    }

    #[test]
    fn activate_remove_and_errors() {
        let (_d, s) = store();
        assert!(s.list().unwrap().1.is_empty());
        s.save("a", "postgres://u@localhost:5433/x", None, None)
            .unwrap();
        s.save("b", "postgresql://u@127.0.0.1/y", None, None)
            .unwrap();
        assert_eq!(s.active_name().unwrap().as_deref(), Some("a"));
        s.activate("b").unwrap();
        assert_eq!(
            s.active_url().unwrap().as_deref(),
            Some("postgresql://u@127.0.0.1/y")
        );
        assert_eq!(s.activate("nope").unwrap_err().code, "database_not_found");
        assert_eq!(
            s.save("bad name", "postgres://u@h/x", None, None)
                .unwrap_err()
                .code,
            "invalid_database"
        );
        assert_eq!(
            s.save("c", "mysql://u@h/x", None, None).unwrap_err().code,
            "invalid_database"
        );
        s.remove("b").unwrap();
        assert_eq!(s.active_name().unwrap(), None);
        let (_, list) = s.list().unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].is_local);
        std::env::remove_var("PSYSTEM_DB_TEST_UNSET");
        s.save(
            "e",
            "postgres://u@h/x",
            None,
            Some("PSYSTEM_DB_TEST_UNSET".into()),
        )
        .unwrap();
        assert_eq!(s.connection_url("e").unwrap_err().code, "invalid_database");
    }

    #[tokio::test]
    async fn connection_test_reports_failures_without_password() {
        let t = test_connection("postgres://me:topsecret@127.0.0.1:1/nope").await;
        assert!(!t.ok);
        assert!(!t.message.unwrap_or_default().contains("topsecret"));
        if let Ok(url) = std::env::var("PSYSTEM_TEST_DATABASE_URL") {
            let t = test_connection(&url).await;
            assert!(t.ok, "{t:?}");
            assert!(t.server_version.unwrap().starts_with("15"));
        }
    }
}
