//! UniProtKB releases (Swiss-Prot and TrEMBL flat files).
//!
//! The source's base URL is the folder holding `current_release/` and `previous_releases/`:
//! `https://ftp.uniprot.org/pub/databases/uniprot/`, `ftp://ftp.uniprot.org/pub/databases/uniprot/` or EBI's
//! `https://ftp.ebi.ac.uk/pub/databases/uniprot/` (layout: `../shared/fixtures/README.md`, uniprot section).
//!
//! - The current release is `current_release/knowledgebase/complete/`: `uniprot_sprot.dat.gz`,
//!   `uniprot_trembl.dat.gz`, their `.fasta.gz`, `uniprot_sprot_varsplic.fasta.gz`, `reldate.txt` (whose first
//!   lines name the release: `UniProt Knowledgebase Release 2024_02 consists of:` /
//!   `UniProtKB/Swiss-Prot Release 2024_02 of 27-Mar-2024` / `UniProtKB/TrEMBL Release 2024_02 of 27-Mar-2024`)
//!   and `RELEASE.metalink` (Metalink 3.0 with an MD5 per file, named by bare file name).
//! - Older releases are `previous_releases/release-YYYY_MM/knowledgebase/`: on the real site tarballs
//!   (`uniprot_sprot-only2024_01.tar.gz`, `knowledgebase2024_01.tar.gz`); a mirror may hold the `complete/` layout
//!   instead (`previous_releases/release-YYYY_MM/knowledgebase/complete/`), which is preferred when present.
//!
//! A release is named `YYYY_MM`. Its root ([`Release::root`]) is the folder holding its files, relative to the
//! base URL, so a file's release-relative path is its bare name — exactly how `RELEASE.metalink` names it.

use chrono::NaiveDate;
use psystem_transport::{Transport, TransportError};
use serde::Serialize;
use tracing::debug;

use crate::model::{DataFile, Dataset, Layout, Release, ReleaseName};
use crate::opentargets::shorten;
use crate::ReleaseError;

/// The current release's folder, relative to the source's base URL.
pub const CURRENT_ROOT: &str = "current_release/knowledgebase/complete/";

/// The folder of older releases, relative to the source's base URL.
pub const PREVIOUS_RELEASES: &str = "previous_releases/";

/// The file naming the release and its dates, in the release folder.
pub const RELDATE: &str = "reldate.txt";

/// The checksum manifest UniProt publishes in each release folder (Metalink 3.0).
pub const METALINK: &str = "RELEASE.metalink";

/// The data files a release folder may hold and the dataset each one is: `(dataset, file name)`.
pub const DATASET_FILES: &[(&str, &str)] = &[
    ("sprot", "uniprot_sprot.dat.gz"),
    ("trembl", "uniprot_trembl.dat.gz"),
    ("sprot_fasta", "uniprot_sprot.fasta.gz"),
    ("trembl_fasta", "uniprot_trembl.fasta.gz"),
    ("sprot_varsplic_fasta", "uniprot_sprot_varsplic.fasta.gz"),
];

/// A UniProtKB release's `reldate.txt`, read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelDate {
    /// The release name, `YYYY_MM` (e.g. `2024_02`).
    pub release: String,
    /// The Swiss-Prot release date (`UniProtKB/Swiss-Prot Release 2024_02 of 27-Mar-2024`).
    pub swissprot: NaiveDate,
    /// The TrEMBL release date (`UniProtKB/TrEMBL Release 2024_02 of 27-Mar-2024`).
    pub trembl: NaiveDate,
}

impl RelDate {
    /// `Swiss-Prot 2024_02 of 2024-03-27, TrEMBL 2024_02 of 2024-03-27` for people.
    pub fn describe(&self) -> String {
        format!(
            "Swiss-Prot {r} of {}, TrEMBL {r} of {}",
            self.swissprot,
            self.trembl,
            r = self.release
        )
    }
}

/// Parses a UniProt release name `YYYY_MM` (also `release-YYYY_MM`, as the previous-release folders are named)
/// into a sortable `(year, month)`; `None` for anything else.
pub fn parse_release_name(name: &str) -> Option<(u32, u32)> {
    let name = name.trim_end_matches('/');
    let name = name.strip_prefix("release-").unwrap_or(name);
    let (y, m) = name.split_once('_')?;
    if y.len() != 4
        || m.len() != 2
        || !y.bytes().all(|b| b.is_ascii_digit())
        || !m.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (y, m) = (y.parse().ok()?, m.parse().ok()?);
    (1..=12).contains(&m).then_some((y, m))
}

/// Parses `reldate.txt`: the lines `UniProt Knowledgebase Release <YYYY_MM> consists of:`,
/// `UniProtKB/Swiss-Prot Release <YYYY_MM> of <DD-Mon-YYYY>` and `UniProtKB/TrEMBL Release <YYYY_MM> of
/// <DD-Mon-YYYY>`, in any order, other lines ignored.
///
/// Errors: [`ReleaseError::Reldate`] when one of the three lines is missing, a release name is not `YYYY_MM`, a
/// date is not `DD-Mon-YYYY`, or the three lines name different releases.
pub fn parse_reldate(text: &str) -> Result<RelDate, ReleaseError> {
    let bad = |detail: String| ReleaseError::Reldate { detail };
    let mut release: Option<String> = None;
    let mut swissprot: Option<(String, NaiveDate)> = None;
    let mut trembl: Option<(String, NaiveDate)> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let n = i + 1;
        if let Some(rest) = line.strip_prefix("UniProt Knowledgebase Release ") {
            let name = rest
                .strip_suffix("consists of:")
                .map(str::trim)
                .ok_or_else(|| {
                    bad(format!(
                        "line {n}: expected `… consists of:`, found `{line}`"
                    ))
                })?;
            release = Some(release_name(name, n)?);
        } else if let Some(rest) = line.strip_prefix("UniProtKB/Swiss-Prot Release ") {
            swissprot = Some(release_and_date(rest, n)?);
        } else if let Some(rest) = line.strip_prefix("UniProtKB/TrEMBL Release ") {
            trembl = Some(release_and_date(rest, n)?);
        }
    }
    let missing = |what: &str| {
        bad(format!(
            "no `{what}` line (the file starts `{}`)",
            text.chars().take(80).collect::<String>()
        ))
    };
    let release =
        release.ok_or_else(|| missing("UniProt Knowledgebase Release YYYY_MM consists of:"))?;
    let swissprot =
        swissprot.ok_or_else(|| missing("UniProtKB/Swiss-Prot Release YYYY_MM of DD-Mon-YYYY"))?;
    let trembl =
        trembl.ok_or_else(|| missing("UniProtKB/TrEMBL Release YYYY_MM of DD-Mon-YYYY"))?;
    for (what, name) in [("Swiss-Prot", &swissprot.0), ("TrEMBL", &trembl.0)] {
        if *name != release {
            return Err(bad(format!(
                "the knowledgebase is release {release} but {what} is release {name}"
            )));
        }
    }
    Ok(RelDate {
        release,
        swissprot: swissprot.1,
        trembl: trembl.1,
    })
}

fn release_name(name: &str, line: usize) -> Result<String, ReleaseError> {
    if parse_release_name(name).is_some() && !name.starts_with("release-") {
        Ok(name.to_string())
    } else {
        Err(ReleaseError::Reldate {
            detail: format!("line {line}: release name `{name}` is not YYYY_MM"),
        })
    }
}

/// `2024_02 of 27-Mar-2024` → (`2024_02`, 2024-03-27).
fn release_and_date(rest: &str, line: usize) -> Result<(String, NaiveDate), ReleaseError> {
    let (name, date) = rest
        .split_once(" of ")
        .ok_or_else(|| ReleaseError::Reldate {
            detail: format!(
                "line {line}: expected `Release YYYY_MM of DD-Mon-YYYY`, found `{rest}`"
            ),
        })?;
    let name = release_name(name.trim(), line)?;
    let date =
        NaiveDate::parse_from_str(date.trim(), "%d-%b-%Y").map_err(|e| ReleaseError::Reldate {
            detail: format!(
                "line {line}: date `{}` is not DD-Mon-YYYY: {e}",
                date.trim()
            ),
        })?;
    Ok((name, date))
}

/// Reads and parses `reldate.txt` at `path` (relative to the base URL). `Ok(None)` when there is no such file.
async fn read_reldate_at(
    transport: &Transport,
    path: &str,
) -> Result<Option<RelDate>, ReleaseError> {
    match transport.read_all(path).await {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            parse_reldate(&text).map(Some).map_err(|e| match e {
                ReleaseError::Reldate { detail } => ReleaseError::Reldate {
                    detail: format!("{}: {detail}", transport.url_of(path)),
                },
                e => e,
            })
        }
        Err(TransportError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The `reldate.txt` of a discovered release (in its root folder); `Ok(None)` when the release has none (the
/// tarball-only previous releases).
///
/// Errors: [`ReleaseError::Reldate`] for a file that does not parse; transport errors.
pub async fn fetch_reldate(
    transport: &Transport,
    release: &Release,
) -> Result<Option<RelDate>, ReleaseError> {
    read_reldate_at(transport, &release.source_path(RELDATE)).await
}

/// The current release's name from `current_release/knowledgebase/complete/reldate.txt`; `None` when the source
/// has no current release.
async fn current_release(transport: &Transport) -> Result<Option<RelDate>, ReleaseError> {
    read_reldate_at(transport, &format!("{CURRENT_ROOT}{RELDATE}")).await
}

/// The names of the `previous_releases/release-YYYY_MM/` folders, newest first (none when the folder is absent).
async fn previous_releases(
    transport: &Transport,
) -> Result<Vec<((u32, u32), String)>, ReleaseError> {
    let entries = match transport.list(PREVIOUS_RELEASES).await {
        Ok(e) => e,
        Err(TransportError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names: Vec<((u32, u32), String)> = entries
        .into_iter()
        .filter(|e| e.is_dir)
        .filter_map(|e| {
            let folder = e.name.trim_end_matches('/');
            let name = folder.strip_prefix("release-")?;
            parse_release_name(name).map(|key| (key, name.to_string()))
        })
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.0));
    names.dedup_by(|a, b| a.0 == b.0);
    Ok(names)
}

/// The releases at the source: the current one (named by its `reldate.txt`, marked `latest`) and the previous
/// ones (`previous_releases/release-YYYY_MM/`), newest first. A previous folder of the current release's name is
/// listed once. Without a current release, the newest previous one is marked `latest`.
///
/// Errors: [`ReleaseError::NoUniProtRelease`] when there is neither a current release nor a previous one;
/// [`ReleaseError::Reldate`] for a `reldate.txt` that does not parse; transport errors.
pub async fn list_releases(transport: &Transport) -> Result<Vec<ReleaseName>, ReleaseError> {
    let current = current_release(transport).await?;
    let mut names = previous_releases(transport).await?;
    if let Some(c) = &current {
        if let Some(key) = parse_release_name(&c.release) {
            names.retain(|n| n.0 != key);
            names.push((key, c.release.clone()));
            names.sort_by_key(|n| std::cmp::Reverse(n.0));
        }
    }
    if names.is_empty() {
        return Err(ReleaseError::NoUniProtRelease {
            url: psystem_transport::redact_url(transport.base_url()),
        });
    }
    let latest = current
        .map(|c| c.release)
        .unwrap_or_else(|| names[0].1.clone());
    Ok(names
        .into_iter()
        .map(|(_, name)| ReleaseName {
            latest: name == latest,
            name,
        })
        .collect())
}

/// Resolves a release argument: `None`, `latest` or `current` → the current release; a `YYYY_MM` (or
/// `release-YYYY_MM`) equal to the current release → it; otherwise a previous release of that name.
///
/// Errors: [`ReleaseError::ReleaseNotFound`] listing the releases there are; as [`list_releases`].
pub async fn resolve_release(
    transport: &Transport,
    source: &str,
    wanted: Option<&str>,
) -> Result<String, ReleaseError> {
    let releases = list_releases(transport).await?;
    let latest = || {
        releases
            .iter()
            .find(|r| r.latest)
            .unwrap_or(&releases[0])
            .name
            .clone()
    };
    match wanted {
        None | Some("latest") | Some("current") => Ok(latest()),
        Some(name) => {
            let name = name.trim_end_matches('/');
            let name = name.strip_prefix("release-").unwrap_or(name);
            if releases.iter().any(|r| r.name == name) {
                Ok(name.to_string())
            } else {
                Err(ReleaseError::ReleaseNotFound {
                    source_name: source.to_string(),
                    release: name.to_string(),
                    available: shorten(releases.iter().map(|r| r.name.as_str())),
                })
            }
        }
    }
}

/// Discovers release `release` (`YYYY_MM`, as [`resolve_release`] returns it): its folder, its datasets (one file
/// each, with its size) and its manifest.
///
/// The current release is `current_release/knowledgebase/complete/`; a previous one is
/// `previous_releases/release-YYYY_MM/knowledgebase/complete/` when that folder exists, else
/// `previous_releases/release-YYYY_MM/knowledgebase/` whose tarballs become the datasets `sprot_tarball`
/// (`uniprot_sprot-only<YYYY_MM>.tar.gz`) and `knowledgebase_tarball` (`knowledgebase<YYYY_MM>.tar.gz`). Flat-file
/// datasets are named by [`DATASET_FILES`]; other files are ignored. `manifest` is `RELEASE.metalink` when present,
/// else the first `*.metalink` / `*.meta4` file of the folder.
///
/// Errors: [`ReleaseError::ReleaseNotFound`] when neither the current release nor a previous folder has that
/// name; [`ReleaseError::UnknownLayout`] when the folder holds none of the known files; transport errors.
pub async fn discover(
    transport: &Transport,
    source: &str,
    release: &str,
) -> Result<Release, ReleaseError> {
    let name = release.trim_end_matches('/');
    let name = name.strip_prefix("release-").unwrap_or(name).to_string();
    let current = current_release(transport).await?;
    let root = if current.as_ref().is_some_and(|c| c.release == name) {
        CURRENT_ROOT.to_string()
    } else {
        let folder = format!("{PREVIOUS_RELEASES}release-{name}/knowledgebase/");
        match transport.list(&folder).await {
            Ok(entries) => {
                if entries
                    .iter()
                    .any(|e| e.is_dir && e.name.trim_end_matches('/') == "complete")
                {
                    format!("{folder}complete/")
                } else {
                    folder
                }
            }
            Err(TransportError::NotFound { .. }) => {
                let releases = list_releases(transport).await?;
                return Err(ReleaseError::ReleaseNotFound {
                    source_name: source.to_string(),
                    release: name,
                    available: shorten(releases.iter().map(|r| r.name.as_str())),
                });
            }
            Err(e) => return Err(e.into()),
        }
    };
    let entries = transport.list(&root).await?;
    let files: Vec<_> = entries.iter().filter(|e| !e.is_dir).collect();
    let mut datasets: Vec<Dataset> = Vec::new();
    let tarballs = [
        ("sprot_tarball", format!("uniprot_sprot-only{name}.tar.gz")),
        (
            "knowledgebase_tarball",
            format!("knowledgebase{name}.tar.gz"),
        ),
    ];
    let known = DATASET_FILES
        .iter()
        .map(|(d, f)| (*d, f.to_string()))
        .chain(tarballs);
    for (dataset, file) in known {
        let Some(entry) = files.iter().find(|e| e.name == file) else {
            continue;
        };
        let size = match entry.size {
            Some(s) => s,
            None => transport.size(&format!("{root}{file}")).await?,
        };
        datasets.push(Dataset {
            name: dataset.to_string(),
            path: String::new(),
            files: vec![DataFile {
                path: file,
                size,
                partitions: Vec::new(),
            }],
            partition_keys: Vec::new(),
        });
    }
    if datasets.is_empty() {
        return Err(ReleaseError::UnknownLayout {
            release: name,
            detail: format!(
                "{root} holds none of {}; it has: {}",
                DATASET_FILES
                    .iter()
                    .map(|(_, f)| *f)
                    .collect::<Vec<_>>()
                    .join(", "),
                shorten(entries.iter().map(|e| e.name.as_str()))
            ),
        });
    }
    datasets.sort_by(|a, b| a.name.cmp(&b.name));
    let manifest = files
        .iter()
        .find(|e| e.name == METALINK)
        .or_else(|| {
            files
                .iter()
                .find(|e| e.name.ends_with(".metalink") || e.name.ends_with(".meta4"))
        })
        .map(|e| e.name.clone());
    debug!(release = %name, root = %root, datasets = datasets.len(), "UniProt release discovered.");
    Ok(Release {
        source: source.to_string(),
        name,
        root,
        layout: Layout::UniProt,
        datasets,
        manifest,
        sidecars: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "UniProt Knowledgebase Release 2024_02 consists of:\nUniProtKB/Swiss-Prot Release 2024_02 of 27-Mar-2024\nUniProtKB/TrEMBL Release 2024_02 of 27-Mar-2024\n";

    #[test]
    fn reldate_of_a_real_release() {
        let r = parse_reldate(REAL).unwrap();
        assert_eq!(r.release, "2024_02");
        assert_eq!(r.swissprot, NaiveDate::from_ymd_opt(2024, 3, 27).unwrap());
        assert_eq!(r.trembl, NaiveDate::from_ymd_opt(2024, 3, 27).unwrap());
        assert_eq!(
            r.describe(),
            "Swiss-Prot 2024_02 of 2024-03-27, TrEMBL 2024_02 of 2024-03-27"
        );
        // CRLF line ends, more lines after the header, different dates.
        let text = "UniProt Knowledgebase Release 2023_05 consists of:\r\nUniProtKB/Swiss-Prot Release 2023_05 of 08-Nov-2023\r\nUniProtKB/TrEMBL Release 2023_05 of 09-Nov-2023\r\n\r\nSwiss-Prot: 570,420 entries\r\n";
        let r = parse_reldate(text).unwrap();
        assert_eq!(r.release, "2023_05");
        assert_eq!(r.trembl, NaiveDate::from_ymd_opt(2023, 11, 9).unwrap());
    }

    #[test]
    fn malformed_reldate_files_are_errors_naming_the_problem() {
        let err = |t: &str| parse_reldate(t).unwrap_err().to_string();
        assert!(
            err("").contains("no `UniProt Knowledgebase Release"),
            "{}",
            err("")
        );
        assert!(err("<html>404 Not Found</html>").contains("404 Not Found"));
        let no_trembl = "UniProt Knowledgebase Release 2024_02 consists of:\nUniProtKB/Swiss-Prot Release 2024_02 of 27-Mar-2024\n";
        assert!(
            err(no_trembl).contains("UniProtKB/TrEMBL"),
            "{}",
            err(no_trembl)
        );
        let bad_date = REAL.replace(
            "27-Mar-2024\nUniProtKB/TrEMBL",
            "2024-03-27\nUniProtKB/TrEMBL",
        );
        let e = err(&bad_date);
        assert!(
            e.contains("line 2") && e.contains("2024-03-27") && e.contains("DD-Mon-YYYY"),
            "{e}"
        );
        let bad_day = REAL.replace("27-Mar", "31-Feb");
        assert!(err(&bad_day).contains("31-Feb-2024"), "{}", err(&bad_day));
        let bad_name = REAL.replace("Release 2024_02 consists", "Release 24.02 consists");
        assert!(
            err(&bad_name).contains("`24.02` is not YYYY_MM"),
            "{}",
            err(&bad_name)
        );
        let disagree = REAL.replace("TrEMBL Release 2024_02", "TrEMBL Release 2024_01");
        let e = err(&disagree);
        assert!(
            e.contains("2024_02") && e.contains("TrEMBL is release 2024_01"),
            "{e}"
        );
        let no_of = REAL.replace(
            "2024_02 of 27-Mar-2024\nUniProtKB/TrEMBL",
            "2024_02\nUniProtKB/TrEMBL",
        );
        assert!(err(&no_of).contains("line 2"), "{}", err(&no_of));
    }

    /// A mirror of three releases over HTTP: current 2024_02, previous 2024_01 (complete/), 2023_11 (tarballs).
    async fn mirror(
        dir: &std::path::Path,
    ) -> (
        psystem_testkit::uniprot::UniprotMirror,
        psystem_testkit::mirror::MirrorServer,
        Transport,
    ) {
        use psystem_testkit::uniprot::{MirrorRelease, PreviousLayout, UniprotMirror};
        let r1 = MirrorRelease::from_fixtures("2024_01").unwrap();
        let (r2, _) = r1.successor("2024_02").unwrap();
        let mut r0 = MirrorRelease::from_fixtures("2023_11").unwrap();
        r0.layout = PreviousLayout::Tarballs;
        r0.metalink = None;
        let m = UniprotMirror::build(dir, &[r0, r1, r2]).unwrap();
        let server = m.serve().await.unwrap();
        let t = Transport::new(&server.base_url(), Default::default()).unwrap();
        (m, server, t)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn discovery_and_md5_verification_over_http() {
        use crate::verify::{fetch_file, fetch_manifest, FileStatus};
        use psystem_sources::manifest::{Algorithm, ManifestKind};
        let dir = tempfile::tempdir().unwrap();
        let (m, _server, t) = mirror(dir.path()).await;
        let list = list_releases(&t).await.unwrap();
        let names: Vec<(&str, bool)> = list.iter().map(|r| (r.name.as_str(), r.latest)).collect();
        assert_eq!(
            names,
            [("2024_02", true), ("2024_01", false), ("2023_11", false)]
        );
        assert_eq!(
            resolve_release(&t, "uniprot", None).await.unwrap(),
            "2024_02"
        );
        assert_eq!(
            resolve_release(&t, "uniprot", Some("latest"))
                .await
                .unwrap(),
            "2024_02"
        );
        assert_eq!(
            resolve_release(&t, "uniprot", Some("2024_02"))
                .await
                .unwrap(),
            "2024_02"
        );
        assert_eq!(
            resolve_release(&t, "uniprot", Some("release-2024_01"))
                .await
                .unwrap(),
            "2024_01"
        );
        let e = resolve_release(&t, "uniprot", Some("2019_01"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2019_01") && e.contains("2024_02, 2024_01, 2023_11"),
            "{e}"
        );
        let e = discover(&t, "uniprot", "2019_01")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("2024_02, 2024_01, 2023_11"), "{e}");

        let cur = discover(&t, "uniprot", "2024_02").await.unwrap();
        assert_eq!(cur.root, CURRENT_ROOT);
        assert_eq!(cur.layout, Layout::UniProt);
        assert_eq!(cur.manifest.as_deref(), Some(METALINK));
        let names: Vec<&str> = cur.datasets.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sprot", "sprot_fasta", "trembl"]);
        let sprot = cur.dataset("sprot").unwrap();
        let local = dir.path().join(CURRENT_ROOT).join("uniprot_sprot.dat.gz");
        assert_eq!(sprot.files[0].path, "uniprot_sprot.dat.gz");
        assert_eq!(
            sprot.files[0].size,
            std::fs::metadata(&local).unwrap().len()
        );
        let dates = fetch_reldate(&t, &cur).await.unwrap().unwrap();
        assert_eq!(dates.release, "2024_02");
        assert_eq!(
            dates.swissprot,
            NaiveDate::from_ymd_opt(2024, 2, 15).unwrap()
        );

        // The metalink's MD5 entries, keyed by the release-relative path; fetch_file hashes with MD5.
        let manifest = fetch_manifest(&t, &cur).await.unwrap().unwrap();
        assert_eq!(manifest.manifest.kind, ManifestKind::Metalink3);
        let entry = manifest.entry("uniprot_sprot.dat.gz").unwrap();
        assert_eq!(entry.algorithm, Algorithm::Md5);
        assert!(
            manifest
                .describe()
                .starts_with("RELEASE.metalink (4 files, md5"),
            "{}",
            manifest.describe()
        );
        let cache = psystem_transport::Cache::new(dir.path().join("cache"));
        let cancel = tokio_util::sync::CancellationToken::new();
        let fetched = fetch_file(
            &t,
            &cache,
            &cur,
            &sprot.files[0],
            Some(entry),
            &cancel,
            &mut |_| {},
        )
        .await
        .unwrap();
        assert_eq!(
            fetched.check.status,
            FileStatus::Verified,
            "{:?}",
            fetched.check
        );
        assert_eq!(fetched.check.algorithm.as_deref(), Some("md5"));
        assert_eq!(
            fetched.check.computed.as_deref(),
            Some(entry.digest.as_str())
        );
        assert_eq!(entry.digest.len(), 32);

        let prev = discover(&t, "uniprot", "2024_01").await.unwrap();
        assert_eq!(
            prev.root,
            "previous_releases/release-2024_01/knowledgebase/complete/"
        );
        assert_eq!(prev.dataset("sprot").unwrap().files[0].size, {
            let p = m.release_dir("2024_01").join("uniprot_sprot.dat.gz");
            std::fs::metadata(p).unwrap().len()
        });
        let old = discover(&t, "uniprot", "2023_11").await.unwrap();
        assert_eq!(old.root, "previous_releases/release-2023_11/knowledgebase/");
        let names: Vec<&str> = old.datasets.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["knowledgebase_tarball", "sprot_tarball"]);
        assert_eq!(
            old.dataset("sprot_tarball").unwrap().files[0].path,
            "uniprot_sprot-only2023_11.tar.gz"
        );
        assert!(old.manifest.is_none());
        assert!(fetch_reldate(&t, &old).await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_source_without_releases_and_a_bad_reldate_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let server = psystem_testkit::mirror::MirrorServer::start(dir.path().to_path_buf())
            .await
            .unwrap();
        let t = Transport::new(&server.base_url(), Default::default()).unwrap();
        let e = list_releases(&t).await.unwrap_err().to_string();
        assert!(
            e.contains("no UniProt release found")
                && e.contains("current_release/knowledgebase/complete/reldate.txt"),
            "{e}"
        );
        let cur = dir.path().join(CURRENT_ROOT);
        std::fs::create_dir_all(&cur).unwrap();
        std::fs::write(
            cur.join(RELDATE),
            "UniProt Knowledgebase Release 2024_02 consists of:\n",
        )
        .unwrap();
        let e = list_releases(&t).await.unwrap_err().to_string();
        assert!(
            e.contains("reldate.txt") && e.contains("UniProtKB/Swiss-Prot"),
            "{e}"
        );
        assert!(e.contains(&server.base_url()), "{e}");
    }

    #[test]
    fn release_names() {
        assert_eq!(parse_release_name("2024_02"), Some((2024, 2)));
        assert_eq!(parse_release_name("release-2024_01/"), Some((2024, 1)));
        assert_eq!(parse_release_name("2024_13"), None);
        assert_eq!(parse_release_name("24.02"), None);
        assert_eq!(parse_release_name("2024_2"), None);
        assert_eq!(parse_release_name("current_release"), None);
    }
}
