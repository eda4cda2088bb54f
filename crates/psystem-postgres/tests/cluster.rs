//! The managed local cluster against the real PostgreSQL server binaries (no mocks).
//!
//! Every test uses its own temporary psystem home and a [`StopGuard`] that stops the cluster with
//! `pg_ctl stop -m immediate` (and removes a `/var/lib/psystem/<hash>` fallback) even when the
//! test fails.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use psystem_postgres::cluster::{ClusterError, ClusterStatus, LocalCluster};
use sqlx::{Connection, PgConnection};

/// Set in the child process of `empty_pg_bin_folder_reports_missing_binaries`.
const CHILD_MARKER: &str = "PSYSTEM_CLUSTER_TEST_EXPECT_MISSING";

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A temporary psystem home whose folder is world-traversable (0755), under /tmp (also o+x).
fn traversable_home() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("psystem-cluster-")
        .permissions(fs::Permissions::from_mode(0o755))
        .tempdir()
        .expect("temp home")
}

/// Stops the cluster of a home when dropped (also on panic): `pg_ctl stop -m immediate`, as the
/// recorded OS user when root, then removes a `/var/lib/psystem/<hash>` fallback folder.
struct StopGuard {
    home: PathBuf,
}

impl StopGuard {
    fn new(home: &Path) -> StopGuard {
        StopGuard {
            home: home.to_path_buf(),
        }
    }
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        let Ok(text) = fs::read_to_string(self.home.join("postgres/cluster.yaml")) else {
            return;
        };
        let Ok(state) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) else {
            return;
        };
        let field = |name: &str| state.get(name).and_then(|v| v.as_str()).map(PathBuf::from);
        let (Some(data_dir), Some(bin_dir)) = (field("data_dir"), field("bin_dir")) else {
            return;
        };
        let run_as = state
            .get("run_as")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let pg_ctl = bin_dir.join("pg_ctl");
        let mut cmd = match run_as {
            Some(user) if is_root() => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", &user, "--"]).arg(&pg_ctl);
                cmd
            }
            _ => Command::new(&pg_ctl),
        };
        let _ = cmd
            .arg("stop")
            .arg("-D")
            .arg(&data_dir)
            .args(["-m", "immediate", "-w"])
            .current_dir("/")
            .stdin(Stdio::null())
            .output();
        if data_dir.starts_with("/var/lib/psystem/") {
            if let Some(root) = data_dir.parent() {
                let _ = fs::remove_dir_all(root);
            }
        }
    }
}

async fn select_one(url: &str) -> i32 {
    let mut conn = PgConnection::connect(url).await.expect("connect to url()");
    let one: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&mut conn)
        .await
        .expect("select 1");
    conn.close().await.expect("close");
    one
}

fn assert_running(status: &ClusterStatus) -> u16 {
    assert!(status.initialized, "{status:?}");
    assert!(status.running, "{status:?}");
    let port = status.port.expect("a port while running");
    let url = status.url.as_deref().expect("a url while running");
    assert!(
        url.starts_with("postgres://") && url.ends_with(&format!("@127.0.0.1:{port}/psystem")),
        "{url}"
    );
    port
}

fn saved_port(home: &Path) -> u64 {
    let text = fs::read_to_string(home.join("postgres/cluster.yaml")).expect("cluster.yaml");
    let state: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    state["port"].as_u64().expect("port in cluster.yaml")
}

#[tokio::test]
async fn lifecycle_keeps_port_and_data() {
    let tmp = traversable_home();
    let home = tmp.path();
    let _guard = StopGuard::new(home);
    let cluster = LocalCluster::new(home);

    let before = cluster.status().await.expect("status before init");
    assert!(
        !before.initialized && !before.running && before.port.is_none() && before.url.is_none()
    );
    assert!(matches!(
        cluster.url(),
        Err(ClusterError::NotInitialized { .. })
    ));
    // Stopping a cluster that never existed is fine.
    assert!(!cluster.down().await.expect("down before init").running);

    let up = cluster.up().await.expect("first up");
    let port = assert_running(&up);
    assert_eq!(up.data_dir, home.join("postgres/data"));
    assert_eq!(up.log_file, home.join("postgres/server.log"));
    if is_root() {
        assert_eq!(up.run_as.as_deref(), Some("postgres"));
    } else {
        assert_eq!(up.run_as, None);
    }
    let major = fs::read_to_string(up.data_dir.join("PG_VERSION")).expect("PG_VERSION");
    let version = up.server_version.clone().expect("server version");
    assert!(version.starts_with(major.trim()), "{version} vs {major}");
    assert_eq!(saved_port(home), u64::from(port));

    let url = cluster.url().expect("url");
    assert_eq!(up.url.as_deref(), Some(url.as_str()));
    assert_eq!(select_one(&url).await, 1);

    let status = cluster.status().await.expect("status");
    assert_eq!(assert_running(&status), port);

    {
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        sqlx::query("create table kept (id int primary key, name text)")
            .execute(&mut conn)
            .await
            .expect("create table");
        sqlx::query("insert into kept values (1, 'survives restarts')")
            .execute(&mut conn)
            .await
            .expect("insert");
        conn.close().await.expect("close");
    }

    let again = cluster.up().await.expect("second up is idempotent");
    assert_eq!(assert_running(&again), port);

    let down = cluster.down().await.expect("down");
    assert!(down.initialized && !down.running, "{down:?}");
    let status = cluster.status().await.expect("status after down");
    assert!(status.initialized && !status.running, "{status:?}");
    assert_eq!(status.port, Some(port));
    assert!(
        PgConnection::connect(&url).await.is_err(),
        "server still answers"
    );
    assert!(!cluster.down().await.expect("down again").running);

    let up = cluster.up().await.expect("up after down");
    assert_eq!(assert_running(&up), port, "a free saved port is reused");
    let mut conn = PgConnection::connect(&url)
        .await
        .expect("connect after restart");
    let name: String = sqlx::query_scalar("select name from kept where id = 1")
        .fetch_one(&mut conn)
        .await
        .expect("table survives");
    assert_eq!(name, "survives restarts");
    conn.close().await.expect("close");

    let down = cluster.down().await.expect("final down");
    assert!(!down.running);
}

#[tokio::test]
async fn private_home_uses_var_lib_when_root() {
    // A 0700 parent: the `postgres` user cannot traverse into the home.
    let parent = tempfile::Builder::new()
        .prefix("psystem-private-")
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("temp parent");
    assert_eq!(
        fs::metadata(parent.path()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let home = parent.path().join("home");
    let _guard = StopGuard::new(&home);

    // Two concurrent `up`s of the same home: one initialises, both end up on the same server.
    let (first, second) = (LocalCluster::new(&home), LocalCluster::new(&home));
    let (a, b) = tokio::join!(first.up(), second.up());
    let (a, b) = (a.expect("up a"), b.expect("up b"));
    let port = assert_running(&a);
    assert_eq!(assert_running(&b), port);

    let cluster = LocalCluster::new(&home);
    let status = cluster.status().await.expect("status");
    assert_eq!(assert_running(&status), port);
    if is_root() {
        assert_eq!(status.run_as.as_deref(), Some("postgres"));
        assert!(
            status.data_dir.starts_with("/var/lib/psystem/"),
            "{}",
            status.data_dir.display()
        );
        let root = status.data_dir.parent().unwrap();
        let meta = fs::metadata(root).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        assert_eq!(meta.uid(), postgres.uid.as_raw());
        assert!(status.log_file.starts_with(root));
        let text = fs::read_to_string(home.join("postgres/cluster.yaml")).unwrap();
        assert!(
            text.contains(&status.data_dir.display().to_string()),
            "cluster.yaml records the fallback: {text}"
        );
    } else {
        assert_eq!(status.data_dir, home.join("postgres/data"));
    }
    assert_eq!(select_one(&cluster.url().unwrap()).await, 1);

    let down = cluster.down().await.expect("down");
    assert!(down.initialized && !down.running);
    assert!(!cluster.status().await.expect("status").running);
}

/// Whether `/proc` shows the process, not counting a zombie.
fn process_alive(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}

/// Kills the postmaster with SIGKILL and waits until it is gone.
fn kill_postmaster(data_dir: &Path) -> String {
    let pid_file = fs::read_to_string(data_dir.join("postmaster.pid")).expect("postmaster.pid");
    let pid = pid_file.lines().next().unwrap().trim().to_string();
    let killed = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while process_alive(&pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    pid_file
}

/// A live process that is not PostgreSQL, owned by the user the server runs as.
fn foreign_process(run_as: Option<&str>) -> Child {
    let mut cmd = match run_as {
        Some(user) if is_root() => {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--init-groups",
                "sleep",
                "120",
            ]);
            cmd
        }
        _ => {
            let mut cmd = Command::new("sleep");
            cmd.arg("120");
            cmd
        }
    };
    cmd.current_dir("/").spawn().expect("spawn sleep")
}

#[tokio::test]
async fn stale_postmaster_pid_does_not_block_up() {
    let tmp = traversable_home();
    let home = tmp.path();
    let _guard = StopGuard::new(home);
    let cluster = LocalCluster::new(home);

    let up = cluster.up().await.expect("up");
    let port = assert_running(&up);
    let url = cluster.url().unwrap();

    // 1. A server killed with SIGKILL leaves postmaster.pid behind.
    let stale = kill_postmaster(&up.data_dir);
    assert!(up.data_dir.join("postmaster.pid").exists());
    let status = cluster.status().await.expect("status after kill");
    assert!(status.initialized && !status.running, "{status:?}");
    let up = cluster
        .up()
        .await
        .expect("up over a killed server's postmaster.pid");
    assert_eq!(assert_running(&up), port);
    assert_eq!(select_one(&url).await, 1);
    cluster.down().await.expect("down");

    // 2. postmaster.pid naming a live process of the same user that is not PostgreSQL
    //    (a reused pid): pg_ctl thinks the server runs; psystem must notice and start it.
    let mut sleeper = foreign_process(up.run_as.as_deref());
    let mut lines: Vec<String> = stale.lines().take(5).map(str::to_string).collect();
    lines[0] = sleeper.id().to_string();
    let pid_file = up.data_dir.join("postmaster.pid");
    fs::write(&pid_file, lines.join("\n") + "\n").unwrap();
    if is_root() {
        let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        std::os::unix::fs::chown(
            &pid_file,
            Some(postgres.uid.as_raw()),
            Some(postgres.gid.as_raw()),
        )
        .unwrap();
    }
    let result = cluster.up().await;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let up = result.expect("up over a postmaster.pid naming a foreign process");
    assert_eq!(assert_running(&up), port);
    assert_eq!(select_one(&url).await, 1);
    cluster.down().await.expect("down");

    // 3. postmaster.pid naming the postmaster of another cluster (same OS user, same program).
    let other_tmp = traversable_home();
    let _other_guard = StopGuard::new(other_tmp.path());
    let other = LocalCluster::new(other_tmp.path());
    let other_up = other.up().await.expect("up of a second cluster");
    let other_pid = fs::read_to_string(other_up.data_dir.join("postmaster.pid")).unwrap();
    lines[0] = other_pid.lines().next().unwrap().to_string();
    fs::write(&pid_file, lines.join("\n") + "\n").unwrap();
    let up = cluster
        .up()
        .await
        .expect("up over a postmaster.pid naming another cluster's server");
    assert_eq!(assert_running(&up), port);
    assert_eq!(select_one(&url).await, 1);
    assert!(
        other.status().await.unwrap().running,
        "the other cluster is left alone"
    );
    cluster.down().await.expect("down");
    other.down().await.expect("down of the second cluster");
}

#[tokio::test]
async fn taken_saved_port_is_replaced() {
    let tmp = traversable_home();
    let home = tmp.path();
    let _guard = StopGuard::new(home);
    let cluster = LocalCluster::new(home);

    let port = assert_running(&cluster.up().await.expect("up"));
    cluster.down().await.expect("down");

    let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("occupy the saved port");
    let up = cluster.up().await.expect("up with the saved port taken");
    let new_port = assert_running(&up);
    assert_ne!(new_port, port);
    assert_eq!(saved_port(home), u64::from(new_port));
    let url = cluster.url().unwrap();
    assert!(url.contains(&format!(":{new_port}/")), "{url}");
    assert_eq!(select_one(&url).await, 1);
    drop(squatter);
    cluster.down().await.expect("down");
}

#[test]
fn server_binaries_are_found() {
    let bin = LocalCluster::server_binaries().expect(
        "this test needs the PostgreSQL server binaries (e.g. `apt-get install postgresql`)",
    );
    for tool in ["initdb", "pg_ctl", "postgres"] {
        assert!(bin.join(tool).is_file(), "{}", bin.join(tool).display());
    }
}

/// Runs only inside the child process started by `empty_pg_bin_folder_reports_missing_binaries`
/// (where PSYSTEM_PG_BIN points at an empty folder); a no-op otherwise.
#[tokio::test]
async fn missing_binaries_child() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    let err = LocalCluster::server_binaries().expect_err("an empty PSYSTEM_PG_BIN folder");
    assert!(
        matches!(err, ClusterError::ServerBinariesMissing { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("apt-get install postgresql"), "{message}");
    assert!(message.contains("PSYSTEM_PG_BIN"), "{message}");

    let home = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::new(home.path());
    let err = cluster.up().await.expect_err("up without binaries");
    assert!(
        matches!(err, ClusterError::ServerBinariesMissing { .. }),
        "{err:?}"
    );
    assert!(!home.path().join("postgres/cluster.yaml").exists());
    println!("child checked the missing binaries");
}

#[test]
fn empty_pg_bin_folder_reports_missing_binaries() {
    // PSYSTEM_PG_BIN is process-wide: set it in a child run of this test binary rather than in
    // this process, where other tests run in parallel.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "missing_binaries_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PSYSTEM_PG_BIN", empty.path())
        .env(CHILD_MARKER, "1")
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("child checked the missing binaries"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}
