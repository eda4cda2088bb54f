//! End-to-end tests of `psystem releases list|show|verify` on the bundled `uniprot` plugin, through the real
//! binary, against a UniProt mirror built from the real fixture entries (`psystem_testkit::uniprot`) served over
//! HTTP (Apache index pages, Range): releases newest first with the current one flagged, files with sizes and the
//! reldate dates, MD5 verification against `RELEASE.metalink` (Metalink 3.0 and RFC 5854), a wrong MD5, an
//! unreadable metalink, an unknown release, and a tarball-only previous release.

mod support;

use std::process::Output;

use psystem_testkit::mirror::MirrorServer;
use psystem_testkit::uniprot::{
    md5_hex, MetalinkFormat, MirrorRelease, PreviousLayout, UniprotMirror,
};
use serde_json::Value;
use support::Env;

/// The mirror tree and its HTTP server (stops when dropped).
struct Site {
    _dir: tempfile::TempDir,
    mirror: UniprotMirror,
    http: MirrorServer,
}

impl Site {
    /// Current release 2024_02 (the successor of 2024_01), previous 2024_01 (complete/ layout) and 2023_11
    /// (tarballs only, as on the real site). `tweak` adjusts the current release before it is written.
    async fn start(tweak: impl FnOnce(&mut MirrorRelease)) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let r1 = MirrorRelease::from_fixtures("2024_01").unwrap();
        let (mut r2, _) = r1.successor("2024_02").unwrap();
        r2.date = "27-Mar-2024".into();
        tweak(&mut r2);
        let mut r0 = MirrorRelease::from_fixtures("2023_11").unwrap();
        r0.layout = PreviousLayout::Tarballs;
        let mirror = UniprotMirror::build(dir.path(), &[r1, r2, r0]).unwrap();
        let http = mirror.serve().await.unwrap();
        Site {
            _dir: dir,
            mirror,
            http,
        }
    }

    /// `psystem releases <args…> --source-url <mirror>` in `env`.
    fn releases(&self, env: &Env, args: &[&str]) -> Output {
        let url = self.http.base_url();
        let mut all = vec!["releases"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--source-url", &url]);
        env.run(&all)
    }

    /// The size of a file of release `release` in the mirror.
    fn size(&self, release: &str, file: &str) -> u64 {
        std::fs::metadata(self.mirror.release_dir(release).join(file))
            .unwrap()
            .len()
    }

    fn md5(&self, release: &str, file: &str) -> String {
        md5_hex(&std::fs::read(self.mirror.release_dir(release).join(file)).unwrap())
    }
}

fn text(o: &Output) -> String {
    support::text(o)
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_releases_newest_first_with_the_current_one_flagged() {
    let site = Site::start(|_| {}).await;
    let env = Env::new();
    let out = site.releases(&env, &["list", "uniprot"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        ["2024_02  (latest)", "2024_01", "2023_11"],
        "{}",
        text(&out)
    );

    let list = json(&site.releases(&env, &["--json", "list", "uniprot"]));
    let got: Vec<(String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["latest"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("2024_02".to_string(), true),
            ("2024_01".to_string(), false),
            ("2023_11".to_string(), false)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn show_lists_files_with_sizes_and_the_reldate_dates() {
    let site = Site::start(|_| {}).await;
    let env = Env::new();
    let out = site.releases(&env, &["show", "uniprot"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("uniprot release 2024_02"), "{stdout}");
    assert!(
        stdout.contains("Swiss-Prot 2024_02 of 2024-03-27, TrEMBL 2024_02 of 2024-03-27"),
        "{stdout}"
    );
    assert!(
        stdout.contains("RELEASE.metalink (4 files, md5)"),
        "{stdout}"
    );
    assert!(stdout.contains("uniprot_sprot.dat.gz"), "{stdout}");
    assert!(stdout.contains("→ entry sprot"), "{stdout}");

    let d = json(&site.releases(&env, &["--json", "show", "uniprot", "2024_02"]));
    assert_eq!(d["release"], "2024_02");
    assert!(
        d["layout"]
            .as_str()
            .unwrap()
            .contains("current_release/knowledgebase/complete/"),
        "{d}"
    );
    let datasets = d["datasets"].as_array().unwrap();
    let names: Vec<&str> = datasets
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sprot", "sprot_fasta", "trembl"]);
    for (dataset, file) in [
        ("sprot", "uniprot_sprot.dat.gz"),
        ("trembl", "uniprot_trembl.dat.gz"),
        ("sprot_fasta", "uniprot_sprot.fasta.gz"),
    ] {
        let x = datasets.iter().find(|x| x["name"] == dataset).unwrap();
        let size = site.size("2024_02", file);
        assert_eq!(x["files"], 1, "{x}");
        assert_eq!(x["bytes"], size, "{x}");
        assert_eq!(x["file_list"], serde_json::json!([[file, size]]), "{x}");
    }

    // A previous release in the complete/ layout, and one holding tarballs only.
    let d = json(&site.releases(&env, &["--json", "show", "uniprot", "2024_01"]));
    assert!(d["layout"]
        .as_str()
        .unwrap()
        .contains("previous_releases/release-2024_01/knowledgebase/complete/; Swiss-Prot 2024_01 of 2024-01-15"));
    let d = json(&site.releases(&env, &["--json", "show", "uniprot", "2023_11"]));
    let names: Vec<&str> = d["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["knowledgebase_tarball", "sprot_tarball"]);
    let size = site.size("2023_11", "uniprot_sprot-only2023_11.tar.gz");
    assert_eq!(
        d["datasets"][1]["file_list"],
        serde_json::json!([["uniprot_sprot-only2023_11.tar.gz", size]])
    );

    // --schema reads Parquet footers: a clear refusal for flat files.
    let out = site.releases(&env, &["show", "uniprot", "--schema"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UniProtKB flat files"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_release_lists_the_available_ones() {
    let site = Site::start(|_| {}).await;
    let env = Env::new();
    for cmd in ["show", "verify"] {
        let out = site.releases(&env, &[cmd, "uniprot", "2019_01"]);
        assert!(!out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("2019_01") && err.contains("available: 2024_02, 2024_01, 2023_11"),
            "{}",
            text(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_checks_every_file_against_the_metalink_md5s() {
    let site = Site::start(|_| {}).await;
    let env = Env::new();
    let r = json(&site.releases(&env, &["--json", "verify", "uniprot"]));
    assert_eq!(r["release"], "2024_02");
    let files = r["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{r}");
    for f in files {
        let path = f["path"].as_str().unwrap();
        assert_eq!(f["status"], "verified", "{f}");
        assert_eq!(f["algorithm"], "md5", "{f}");
        assert_eq!(f["computed"], site.md5("2024_02", path), "{f}");
        assert_eq!(f["size"], site.size("2024_02", path), "{f}");
    }
    // The files are in the cache now; a second verify hashes the cached copies and agrees.
    let out = site.releases(&env, &["verify", "uniprot", "--dataset", "sprot"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 files checked, 0 mismatched"),
        "{}",
        text(&out)
    );
    // A previous release verifies too.
    let r = json(&site.releases(&env, &["--json", "verify", "uniprot", "2024_01"]));
    assert!(r["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["status"] == "verified"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_md5_is_a_mismatch_naming_both_digests() {
    let site = Site::start(|r| r.corrupt_md5_of = Some("uniprot_sprot.dat.gz".into())).await;
    let env = Env::new();
    let out = site.releases(&env, &["verify", "uniprot"]);
    assert!(!out.status.success(), "{}", text(&out));
    let computed = site.md5("2024_02", "uniprot_sprot.dat.gz");
    let metalink =
        std::fs::read_to_string(site.mirror.release_dir("2024_02").join("RELEASE.metalink"))
            .unwrap();
    assert!(!metalink.contains(&computed));
    let expected: String = computed
        .chars()
        .map(|c| std::char::from_digit((c.to_digit(16).unwrap() + 1) % 16, 16).unwrap())
        .collect();
    assert!(metalink.contains(&expected));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MISMATCH uniprot_sprot.dat.gz")
            && err.contains(&expected)
            && err.contains(&computed),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 files checked, 1 mismatched"),
        "{}",
        text(&out)
    );
    // The other files still verify.
    assert!(
        err.contains("verified   uniprot_trembl.dat.gz"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_metalink_is_a_clear_error_not_zero_files() {
    let site = Site::start(|_| {}).await;
    let env = Env::new();
    let path = site.mirror.release_dir("2024_02").join("RELEASE.metalink");
    for garbage in [
        "<html><body>503 Service Unavailable</body></html>\n",
        "<metalink xmlns=\"http://www.metalinker.org/\" version=\"3.0\"><files></files></metalink>\n",
        "<metalink xmlns=\"http://www.metalinker.org/\" version=\"3.0\"><files><file name=\"uniprot_sprot.dat.gz\">",
    ] {
        std::fs::write(&path, garbage).unwrap();
        let out = site.releases(&env, &["verify", "uniprot"]);
        assert!(!out.status.success(), "{garbage}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("RELEASE.metalink"), "{garbage}: {}", text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("files checked"),
            "{garbage}: {}",
            text(&out)
        );
        // show reads the manifest too, and refuses the same way.
        let out = site.releases(&env, &["show", "uniprot"]);
        assert!(!out.status.success(), "{garbage}: {}", text(&out));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_rfc_5854_metalink_verifies() {
    let site = Site::start(|r| r.metalink = Some(MetalinkFormat::Rfc5854)).await;
    let env = Env::new();
    let metalink =
        std::fs::read_to_string(site.mirror.release_dir("2024_02").join("RELEASE.metalink"))
            .unwrap();
    assert!(metalink.contains("urn:ietf:params:xml:ns:metalink"));
    let r = json(&site.releases(&env, &["--json", "verify", "uniprot"]));
    let files = r["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert!(files.iter().all(|f| f["status"] == "verified"), "{r}");
}
