//! Release end-to-end test support: an Open Targets release mirror built from the real fixture files (both
//! layouts, a real `release_data_integrity`), served over `file://`, HTTP (Apache index pages), FTP (libunftp) and
//! the GCS JSON API, and a release plugin pointing at it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use psystem_testkit::ftp::FtpServer;
use psystem_testkit::mirror::MirrorServer;
#[allow(unused_imports)]
pub use psystem_testkit::opentargets::{build_release, write_integrity, OtLayout, DATASETS};

use super::Env;

/// How psystem reaches the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    File,
    Http,
    Ftp,
    Gcs,
}

impl Via {
    pub const ALL: [Via; 4] = [Via::File, Via::Http, Via::Ftp, Via::Gcs];
}

/// A folder of releases and the servers serving it. Servers stop when dropped.
pub struct Mirror {
    pub dir: tempfile::TempDir,
    pub http: MirrorServer,
    pub ftp: FtpServer,
}

impl Mirror {
    /// Builds `releases` (name, layout, datasets by their ≥25.03 name; empty = every fixture dataset) and starts
    /// the servers on the caller's tokio runtime (use a multi-thread runtime: psystem runs as a child process).
    pub async fn start(releases: &[(&str, OtLayout, &[&str])]) -> Mirror {
        let dir = tempfile::tempdir().unwrap();
        for (name, layout, datasets) in releases {
            build_release(dir.path(), name, *layout, datasets).unwrap_or_else(|e| {
                panic!(
                    "building release {name} from {:?}: {e}",
                    psystem_testkit::opentargets::fixture_dir()
                )
            });
        }
        let http = MirrorServer::start(dir.path().to_path_buf()).await.unwrap();
        let ftp = FtpServer::start(dir.path().to_path_buf()).await.unwrap();
        Mirror { dir, http, ftp }
    }

    /// The folder of releases.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The folder of one release.
    pub fn release(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `--source-url` for `via`.
    pub fn url(&self, via: Via) -> String {
        match via {
            Via::File => format!("file://{}/", self.dir.path().display()),
            Via::Http => self.http.base_url(),
            Via::Ftp => self.ftp.url(),
            Via::Gcs => format!("gs://{}/", self.http.bucket()),
        }
    }

    /// Runs psystem in `env` with `args`, able to reach the GCS endpoint of this mirror.
    pub fn run(&self, env: &Env, args: &[&str]) -> Output {
        env.cmd()
            .env("PSYSTEM_GCS_ENDPOINT", self.http.gcs_endpoint())
            .args(args)
            .output()
            .unwrap()
    }

    /// The one Parquet file of a fixture dataset in release `release` (`layout` names its folder).
    pub fn parquet_file(&self, release: &str, layout: OtLayout, dataset: &str) -> PathBuf {
        let d = DATASETS.iter().find(|d| d.name == dataset).unwrap();
        let folder = match layout {
            OtLayout::EtlParquet => self
                .release(release)
                .join("output/etl/parquet")
                .join(d.legacy_name),
            OtLayout::Output => self.release(release).join("output").join(d.name),
        };
        let mut found = Vec::new();
        collect_parquet(&folder, &mut found);
        assert_eq!(found.len(), 1, "{folder:?}: {found:?}");
        found.pop().unwrap()
    }
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect_parquet(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet")
            && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        {
            out.push(p);
        }
    }
}

/// One entry of the test release plugin.
pub struct Entry<'a> {
    pub key: &'a str,
    pub dataset: &'a str,
    pub table: &'a str,
    pub mode: &'a str,
    pub primary_key: &'a [&'a str],
}

/// Writes a release plugin `ot` (provider opentargets, `source.url` = `url`) into `env` whose entries load
/// into schema `schema` of the database in `PSYSTEM_OT_TEST_DATABASE_URL` (pass it with `--db` or the env var).
pub fn write_plugin(env: &Env, url: &str, schema: &str, entries: &[Entry<'_>]) -> PathBuf {
    let mut yaml = format!(
        "name: ot\ncreator: tests\ndescription: Open Targets fixture mirror\nenabled: true\nsource:\n  kind: release\n  provider: opentargets\n  url: {url}\netl:\n"
    );
    for e in entries {
        let legacy = DATASETS
            .iter()
            .find(|d| d.name == e.dataset)
            .map(|d| d.legacy_name)
            .unwrap_or(e.dataset);
        yaml.push_str(&format!(
            "  {key}:\n    dataset: {dataset}\n    aliases: [{legacy}]\n    flatten: {{depth: 1, separator: _}}\n    destination:\n      postgres:\n        url: !env PSYSTEM_OT_TEST_DATABASE_URL\n        schema: {schema}\n        table: {table}\n        mode: {mode}\n",
            key = e.key,
            dataset = e.dataset,
            table = e.table,
            mode = e.mode,
        ));
        if !e.primary_key.is_empty() {
            yaml.push_str(&format!(
                "        primary_key: [{}]\n",
                e.primary_key
                    .iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    env.add_plugin("ot", &yaml)
}

/// Every fixture dataset as an entry named like the dataset, table of the same name, mode replace, no key.
pub fn every_dataset() -> Vec<Entry<'static>> {
    DATASETS
        .iter()
        .map(|d| Entry {
            key: d.name,
            dataset: d.name,
            table: d.name,
            mode: "replace",
            primary_key: &[],
        })
        .collect()
}

/// stdout + stderr of an output, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
