//! The transports against real local servers: the file system, `psystem_testkit::mirror::MirrorServer`
//! (HTTP with Range + Apache index pages, and the GCS JSON API) and `psystem_testkit::ftp::FtpServer`
//! (libunftp), over a release tree built from the Open Targets fixtures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use psystem_testkit::ftp::FtpServer;
use psystem_testkit::mirror::MirrorServer;
use psystem_transport::{part_path, Cache, Entry, Transport, TransportError, TransportOptions};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/opentargets/parquet"
);
const TARGET: &str =
    "25.03/output/target/part-00161-86fc51a8-1d24-4753-b840-4a0b6289c221-c000.snappy.parquet";
const INTERACTION: &str = "25.03/output/interaction/otp_interactions_sample.parquet";
const SPARK_DIR: &str = "25.03/output/credible_set";

fn fixtures() -> PathBuf {
    let p = PathBuf::from(FIXTURES);
    if p.is_dir() {
        p
    } else {
        PathBuf::from("/work/shared/fixtures/opentargets/parquet")
    }
}

/// `root/25.03/output/{target,interaction,credible_set}/…` (credible_set is a whole Spark output folder with
/// `_SUCCESS` and `.crc` side files) plus `root/25.03/release notes.txt` (a name to percent-encode).
fn release_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fx = fixtures();
    let copy = |from: &Path, to: &str| {
        let to = root.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    };
    copy(
        &fx.join("target/part-00161-86fc51a8-1d24-4753-b840-4a0b6289c221-c000.snappy.parquet"),
        TARGET,
    );
    copy(
        &fx.join("interaction/otp_interactions_sample.parquet"),
        INTERACTION,
    );
    for e in std::fs::read_dir(fx.join("spark_dir_credible-sets")).unwrap() {
        let e = e.unwrap();
        copy(
            &e.path(),
            &format!("{SPARK_DIR}/{}", e.file_name().to_string_lossy()),
        );
    }
    std::fs::write(root.join("25.03/release notes.txt"), b"25.03 release\n").unwrap();
    dir
}

fn options() -> TransportOptions {
    TransportOptions {
        retries: 3,
        backoff_base: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
        ..TransportOptions::default()
    }
}

fn file_transport(root: &Path) -> Transport {
    Transport::new(&format!("file://{}/", root.display()), options()).unwrap()
}

fn gcs_transport(server: &MirrorServer) -> Transport {
    let opts = TransportOptions {
        gcs_endpoint: Some(server.gcs_endpoint()),
        ..options()
    };
    Transport::new(&format!("gs://{}/", server.bucket()), opts).unwrap()
}

fn sha(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// Downloads `path` with an observer that hashes and checks that chunks come in order from offset 0.
async fn download_hashed(
    t: &Transport,
    path: &str,
    dest: &Path,
    cancel: &CancellationToken,
) -> (
    Result<psystem_transport::Downloaded, TransportError>,
    Vec<u8>,
    u64,
) {
    let mut hasher = Sha256::new();
    let mut seen = 0u64;
    let r = t
        .download(path, dest, cancel, &mut |p, bytes| {
            assert_eq!(p.offset, seen, "observer chunks must be contiguous");
            assert_eq!(p.done, p.offset + bytes.len() as u64);
            seen += bytes.len() as u64;
            hasher.update(bytes);
        })
        .await;
    (r, hasher.finalize().to_vec(), seen)
}

fn names(entries: &[Entry]) -> Vec<(&str, bool)> {
    entries
        .iter()
        .map(|e| (e.name.as_str(), e.is_dir))
        .collect()
}

/// Listing, size, footer range, full download and a missing file, the same for every scheme.
async fn exercise(t: &Transport, root: &Path, sizes_in_listing: bool) {
    let top = t.list("").await.unwrap();
    assert_eq!(names(&top), vec![("25.03", true)]);
    let release = t.list("25.03").await.unwrap();
    assert_eq!(
        names(&release),
        vec![("output", true), ("release notes.txt", false)]
    );
    let output = t.list("25.03/output/").await.unwrap();
    assert_eq!(
        names(&output),
        vec![
            ("credible_set", true),
            ("interaction", true),
            ("target", true)
        ]
    );
    let spark = t.list(SPARK_DIR).await.unwrap();
    let mut expected: Vec<String> = std::fs::read_dir(root.join(SPARK_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert_eq!(
        spark.iter().map(|e| e.name.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(spark.iter().any(|e| e.name == "_SUCCESS" && !e.is_dir));
    if sizes_in_listing {
        let succ = spark.iter().find(|e| e.name == "_SUCCESS").unwrap();
        assert_eq!(succ.size, Some(0));
        let target = t.list("25.03/output/target").await.unwrap();
        assert_eq!(
            target[0].size,
            Some(std::fs::metadata(root.join(TARGET)).unwrap().len())
        );
    }

    let source = std::fs::read(root.join(TARGET)).unwrap();
    let len = source.len() as u64;
    assert_eq!(t.size(TARGET).await.unwrap(), len);
    assert_eq!(t.size("25.03/release notes.txt").await.unwrap(), 14);

    let tail = t.read_range(TARGET, len - 8..len).await.unwrap();
    assert_eq!(&tail[4..], b"PAR1");
    assert_eq!(&tail[..], &source[source.len() - 8..]);
    let head = t.read_range(TARGET, 0..4).await.unwrap();
    assert_eq!(&head[..], b"PAR1");
    let mid = t.read_range(TARGET, 1000..1500).await.unwrap();
    assert_eq!(&mid[..], &source[1000..1500]);
    let past = t.read_range(TARGET, len - 4..len + 10).await.unwrap_err();
    assert!(matches!(past, TransportError::Protocol { .. }), "{past:?}");

    assert_eq!(
        &t.read_all("25.03/release notes.txt").await.unwrap()[..],
        b"25.03 release\n"
    );

    let dest_dir = tempfile::tempdir().unwrap();
    let dest = dest_dir.path().join("cache/target.parquet");
    let (r, hash, seen) = download_hashed(t, TARGET, &dest, &CancellationToken::new()).await;
    let done = r.unwrap();
    assert_eq!(done.bytes, len);
    assert_eq!(done.resumed_from, 0);
    assert_eq!(seen, len);
    assert_eq!(hash, sha(&source));
    assert_eq!(std::fs::read(&dest).unwrap(), source);
    assert!(!part_path(&dest).exists());

    let missing = t
        .size("25.03/output/target/nope.parquet")
        .await
        .unwrap_err();
    assert!(
        matches!(missing, TransportError::NotFound { .. }),
        "{missing:?}"
    );
    assert!(
        missing
            .to_string()
            .contains("25.03/output/target/nope.parquet"),
        "{missing}"
    );
    let missing = t
        .download(
            "25.03/nope.parquet",
            &dest_dir.path().join("nope"),
            &CancellationToken::new(),
            &mut |_, _| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(missing, TransportError::NotFound { .. }),
        "{missing:?}"
    );
    assert!(
        missing.to_string().contains("25.03/nope.parquet"),
        "{missing}"
    );
    assert!(!dest_dir.path().join("nope").exists());
    let missing = t.list("25.03/absent/").await.unwrap_err();
    assert!(
        matches!(missing, TransportError::NotFound { .. }),
        "{missing:?}"
    );

    let bad = t.size("../etc/passwd").await.unwrap_err();
    assert!(matches!(bad, TransportError::InvalidUrl { .. }), "{bad:?}");
}

/// A download cancelled from its observer leaves a `.part`; a second call resumes and completes it, and its
/// observer sees every byte in order (the first from disk).
async fn cancel_then_resume(t: &Transport, root: &Path) -> u64 {
    let source = std::fs::read(root.join(TARGET)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("t.parquet");
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let err = t
        .download(TARGET, &dest, &cancel, &mut |p, _| {
            if p.done >= 50_000 {
                c.cancel();
            }
        })
        .await
        .unwrap_err();
    let TransportError::Cancelled { bytes, .. } = err else {
        panic!("{err:?}")
    };
    let part = part_path(&dest);
    let part_len = std::fs::metadata(&part).unwrap().len();
    assert_eq!(part_len, bytes);
    assert!(
        part_len >= 50_000 && part_len < source.len() as u64,
        "{part_len}"
    );
    assert!(!dest.exists());
    assert_eq!(std::fs::read(&part).unwrap(), source[..part_len as usize]);

    let (r, hash, seen) = download_hashed(t, TARGET, &dest, &CancellationToken::new()).await;
    let done = r.unwrap();
    assert_eq!(done.resumed_from, part_len);
    assert_eq!(done.bytes, source.len() as u64);
    assert_eq!(seen, source.len() as u64);
    assert_eq!(hash, sha(&source));
    assert_eq!(std::fs::read(&dest).unwrap(), source);
    part_len
}

#[tokio::test]
async fn file_transport_lists_reads_and_downloads() {
    let tree = release_tree();
    let t = file_transport(tree.path());
    exercise(&t, tree.path(), true).await;
    cancel_then_resume(&t, tree.path()).await;
}

#[tokio::test]
async fn file_transport_resumes_an_existing_part_and_discards_an_overlong_one() {
    let tree = release_tree();
    let t = file_transport(tree.path());
    let source = std::fs::read(tree.path().join(TARGET)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("t.parquet");
    std::fs::write(part_path(&dest), &source[..1234]).unwrap();
    let (r, hash, _) = download_hashed(&t, TARGET, &dest, &CancellationToken::new()).await;
    assert_eq!(r.unwrap().resumed_from, 1234);
    assert_eq!(hash, sha(&source));

    let mut longer = source.clone();
    longer.extend_from_slice(b"junk");
    std::fs::write(part_path(&dest), &longer).unwrap();
    let (r, hash, _) = download_hashed(&t, TARGET, &dest, &CancellationToken::new()).await;
    assert_eq!(r.unwrap().resumed_from, 0);
    assert_eq!(hash, sha(&source));
    assert_eq!(std::fs::read(&dest).unwrap(), source);
}

#[tokio::test]
async fn transports_reject_bad_urls() {
    for url in [
        "relative/path",
        "gopher://x/",
        "file://relative",
        "gs:///nobucket/",
    ] {
        let err = Transport::new(url, options()).unwrap_err();
        assert!(
            matches!(err, TransportError::InvalidUrl { .. }),
            "{url}: {err:?}"
        );
    }
}

#[tokio::test]
async fn http_transport_lists_reads_and_downloads() {
    let tree = release_tree();
    let server = MirrorServer::start(tree.path().to_path_buf())
        .await
        .unwrap();
    let t = Transport::new(&server.base_url(), options()).unwrap();
    assert_eq!(t.base_url(), server.base_url());
    exercise(&t, tree.path(), false).await;
    // The footer read asked for the last 8 bytes with a Range header.
    let len = std::fs::metadata(tree.path().join(TARGET)).unwrap().len();
    let want = format!("bytes={}-{}", len - 8, len - 1);
    assert!(server
        .requests()
        .iter()
        .any(|r| r.range.as_deref() == Some(want.as_str()) && r.status == 206));
    let part_len = cancel_then_resume(&t, tree.path()).await;
    let want = format!("bytes={part_len}-");
    assert!(server
        .requests()
        .iter()
        .any(|r| r.range.as_deref() == Some(want.as_str()) && r.status == 206));
}

#[tokio::test]
async fn http_download_cut_midway_resumes_from_the_part_file() {
    let tree = release_tree();
    let server = MirrorServer::start(tree.path().to_path_buf())
        .await
        .unwrap();
    let t = Transport::new(&server.base_url(), options()).unwrap();
    let source = std::fs::read(tree.path().join(TARGET)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("t.parquet");
    server.cut_next_download_after(100_000);
    server.clear_requests();
    let (r, hash, seen) = download_hashed(&t, TARGET, &dest, &CancellationToken::new()).await;
    let done = r.unwrap();
    assert_eq!(done.bytes, source.len() as u64);
    assert_eq!(seen, source.len() as u64);
    assert_eq!(hash, sha(&source));
    assert_eq!(std::fs::read(&dest).unwrap(), source);
    let gets: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    let resumed: u64 = gets[1]
        .range
        .as_deref()
        .unwrap()
        .strip_prefix("bytes=")
        .unwrap()
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(resumed > 0 && resumed <= 100_000, "resumed from {resumed}");
    assert_eq!(gets[1].status, 206);
}

#[tokio::test]
async fn http_retries_503_then_succeeds_and_gives_up_after_the_retries() {
    let tree = release_tree();
    let server = MirrorServer::start(tree.path().to_path_buf())
        .await
        .unwrap();
    let t = Transport::new(&server.base_url(), options()).unwrap();
    server.fail_next(2, 503);
    assert_eq!(
        &t.read_all("25.03/release notes.txt").await.unwrap()[..],
        b"25.03 release\n"
    );
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);

    server.fail_next(4, 503);
    let err = t.size(TARGET).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Http { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(TARGET));

    // 429 is retried too; a 403 is not.
    server.fail_next(1, 429);
    assert!(t.list("25.03/").await.is_ok());
    server.fail_next(1, 403);
    let err = t.list("25.03/").await.unwrap_err();
    assert!(
        matches!(err, TransportError::Http { status: 403, .. }),
        "{err:?}"
    );
    assert!(t.list("25.03/").await.is_ok());

    // A download whose first attempts fail is retried as well.
    server.fail_next(1, 500);
    let dir = tempfile::tempdir().unwrap();
    let (r, hash, _) = download_hashed(
        &t,
        INTERACTION,
        &dir.path().join("i"),
        &CancellationToken::new(),
    )
    .await;
    r.unwrap();
    assert_eq!(
        hash,
        sha(&std::fs::read(tree.path().join(INTERACTION)).unwrap())
    );
}

#[tokio::test]
async fn http_errors_name_the_url_without_the_password() {
    // Nothing listens on port 9 of 127.0.0.1: the connection is refused.
    let opts = TransportOptions {
        retries: 1,
        ..options()
    };
    let t = Transport::new("http://user:s3cret@127.0.0.1:9/pub/", opts.clone()).unwrap();
    let err = t.size("x.parquet").await.unwrap_err();
    assert!(matches!(err, TransportError::Network { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("127.0.0.1:9/pub/x.parquet"), "{shown}");
    let t = Transport::new("ftp://user:s3cret@127.0.0.1:9/pub/", opts).unwrap();
    let err = t.list("").await.unwrap_err();
    let shown = format!("{err} {err:?} {t:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn gcs_transport_lists_reads_and_downloads() {
    let tree = release_tree();
    let server = MirrorServer::start(tree.path().to_path_buf())
        .await
        .unwrap();
    server.set_gcs_page_size(3);
    let t = gcs_transport(&server);
    exercise(&t, tree.path(), true).await;
    // The Spark folder has 4 objects: with 3 a page, its listing took two pages.
    let pages: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| {
            r.path.ends_with("/o")
                && r.query
                    .as_deref()
                    .is_some_and(|q| q.contains("credible_set"))
        })
        .collect();
    assert!(pages.len() >= 2, "{pages:?}");
    assert!(
        pages
            .iter()
            .any(|r| r.query.as_deref().unwrap().contains("pageToken=")),
        "{pages:?}"
    );
    cancel_then_resume(&t, tree.path()).await;

    // A prefix under the base: gs://bucket/25.03/output/
    let opts = TransportOptions {
        gcs_endpoint: Some(server.gcs_endpoint()),
        ..options()
    };
    let sub = Transport::new(&format!("gs://{}/25.03/output", server.bucket()), opts).unwrap();
    assert_eq!(
        names(&sub.list("").await.unwrap()),
        vec![
            ("credible_set", true),
            ("interaction", true),
            ("target", true)
        ]
    );
    assert_eq!(
        sub.size("interaction/otp_interactions_sample.parquet")
            .await
            .unwrap(),
        t.size(INTERACTION).await.unwrap()
    );

    // Another bucket does not exist.
    let opts = TransportOptions {
        gcs_endpoint: Some(server.gcs_endpoint()),
        ..options()
    };
    let other = Transport::new("gs://other-bucket/", opts).unwrap();
    assert!(matches!(
        other.size(TARGET).await.unwrap_err(),
        TransportError::NotFound { .. }
    ));
}

#[tokio::test]
async fn gcs_download_cut_midway_resumes_and_503_is_retried() {
    let tree = release_tree();
    let server = MirrorServer::start(tree.path().to_path_buf())
        .await
        .unwrap();
    let t = gcs_transport(&server);
    let source = std::fs::read(tree.path().join(TARGET)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("t.parquet");
    server.cut_next_download_after(70_000);
    server.fail_next(1, 503);
    server.clear_requests();
    let (r, hash, seen) = download_hashed(&t, TARGET, &dest, &CancellationToken::new()).await;
    r.unwrap();
    assert_eq!((seen, hash), (source.len() as u64, sha(&source)));
    let media: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.query.as_deref() == Some("alt=media"))
        .collect();
    assert_eq!(media.len(), 2, "{media:?}");
    assert!(
        media[1]
            .range
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "{media:?}"
    );
    assert_eq!(server.requests()[0].status, 503);
}

#[tokio::test]
async fn ftp_transport_lists_reads_and_downloads() {
    let tree = release_tree();
    let server = FtpServer::start(tree.path().to_path_buf()).await.unwrap();
    let t = Transport::new(&server.url(), options()).unwrap();
    exercise(&t, tree.path(), true).await;
    let part_len = cancel_then_resume(&t, tree.path()).await;
    assert!(
        server.retrievals().iter().any(|r| r.offset == part_len),
        "{:?}",
        server.retrievals()
    );
}

#[tokio::test]
async fn ftp_download_cut_midway_resumes_with_rest() {
    let tree = release_tree();
    let server = FtpServer::start(tree.path().to_path_buf()).await.unwrap();
    let t = Transport::new(&server.url(), options()).unwrap();
    let source = std::fs::read(tree.path().join(TARGET)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("t.parquet");
    server.cut_next_download_after(100_000);
    let (r, hash, seen) = download_hashed(&t, TARGET, &dest, &CancellationToken::new()).await;
    let done = r.unwrap();
    assert_eq!(done.bytes, source.len() as u64);
    assert_eq!((seen, hash), (source.len() as u64, sha(&source)));
    assert_eq!(std::fs::read(&dest).unwrap(), source);
    let retr = server.retrievals();
    assert_eq!(retr.len(), 2, "{retr:?}");
    assert_eq!(retr[0].offset, 0);
    assert!(retr[1].offset > 0 && retr[1].offset <= 100_000, "{retr:?}");
}

#[test]
fn cache_paths_stay_inside_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let cache = Cache::new(root.path().to_path_buf());
    let p = cache
        .path_for("opentargets", "25.03", "output/target/part-0.parquet")
        .unwrap();
    assert_eq!(
        p,
        root.path()
            .join("opentargets/25.03/output/target/part-0.parquet")
    );
    for bad in ["../x", "/abs", "a/../../x", "a//b", ""] {
        let err = cache.path_for("opentargets", "25.03", bad).unwrap_err();
        assert!(
            matches!(err, TransportError::InvalidUrl { .. }),
            "{bad}: {err:?}"
        );
    }
    assert!(cache.path_for("..", "25.03", "x").is_err());
    assert!(cache.path_for("opentargets", "../..", "x").is_err());
}
