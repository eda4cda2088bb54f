//! E2E support: tauri-driver (started on free ports, stopped with SIGTERM from a Drop guard), a fantoccini client
//! for the release app, and small waiting helpers.

#![allow(dead_code)]

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `tauri-driver`; SIGTERM on drop (SIGKILL would leave WebKitWebDriver holding the native port).
pub struct Driver {
    child: Child,
    /// The WebDriver port.
    pub port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tauri-driver` from `$TAURI_DRIVER`, else `~/.cargo/bin/tauri-driver`, else `PATH`.
fn tauri_driver() -> PathBuf {
    if let Some(p) = std::env::var_os("TAURI_DRIVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cargo = home.join(".cargo/bin/tauri-driver");
    if cargo.exists() {
        cargo
    } else {
        PathBuf::from("tauri-driver")
    }
}

impl Driver {
    /// Starts tauri-driver with `env` added to its environment (the app it launches inherits it) and waits until
    /// it accepts connections.
    pub fn start(env: &[(&str, String)], log: &Path) -> Driver {
        let port = free_port();
        let native = free_port();
        let log = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(tauri_driver());
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start tauri-driver ({e}); install it with `cargo install tauri-driver@2.1.0 --locked` \
                 (scripts/test-desktop.sh does)"
            )
        });
        let driver = Driver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tauri-driver did not listen on {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    /// A WebDriver session running `app` (the release binary).
    pub async fn session(&self, app: &Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "wry".into());
        caps.insert(
            "tauri:options".into(),
            serde_json::json!({ "application": app.display().to_string() }),
        );
        // Both rustls crypto providers are linked (fantoccini's and the test servers'): choose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        ClientBuilder::rustls()
            .expect("rustls client")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session with the app")
    }
}

/// `[data-testid="<id>"]`.
pub fn tid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// Polls `f` every 200 ms until it returns `Some`, for at most `secs` seconds; panics with `what` otherwise.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The text of the first element with test id `id`, if present.
pub async fn text_of(c: &Client, id: &str) -> Option<String> {
    let e = c.find(Locator::Css(&tid(id))).await.ok()?;
    e.text().await.ok()
}

/// The text of element `inner` inside element `outer` (both test ids).
pub async fn inner_text(c: &Client, outer: &str, inner: &str) -> Option<String> {
    let e = c
        .find(Locator::Css(&format!("{} {}", tid(outer), tid(inner))))
        .await
        .ok()?;
    e.text().await.ok()
}

/// Clicks the element with test id `id`, waiting up to `secs` for it to appear.
pub async fn click(c: &Client, id: &str, secs: u64) {
    let sel = tid(id);
    let e = wait_for(secs, &format!("element {sel}"), || async {
        c.find(Locator::Css(&sel)).await.ok()
    })
    .await;
    e.click()
        .await
        .unwrap_or_else(|err| panic!("clicking {sel}: {err}"));
}

/// Clicks element `inner` inside element `outer` (test ids), waiting up to `secs` for it.
pub async fn click_in(c: &Client, outer: &str, inner: &str, secs: u64) {
    let sel = format!("{} {}", tid(outer), tid(inner));
    let e = wait_for(secs, &format!("element {sel}"), || async {
        c.find(Locator::Css(&sel)).await.ok()
    })
    .await;
    e.click()
        .await
        .unwrap_or_else(|err| panic!("clicking {sel}: {err}"));
}

/// Clicks a sidebar entry (`nav-<screen>`).
pub async fn nav(c: &Client, screen: &str) {
    click(c, &format!("nav-{screen}"), 20).await;
}

/// Saves a screenshot of the window as `docs/screenshots/<name>.png` in the repository.
pub async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The first integer in `text` after removing thousands separators (`1,234 rows` → 1234).
pub fn first_number(text: &str) -> Option<u64> {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, ',' | '\u{202f}' | '\u{a0}' | '\''))
        .collect();
    cleaned
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
}
