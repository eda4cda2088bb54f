//! A local Open Targets release mirror built from the real fixture files in `../shared/fixtures/opentargets`.
//!
//! [`build_release`] lays the fixture Parquet files out as one release in either layout — up to 24.09
//! `<release>/output/etl/parquet/<camelCase>/`, from 25.03 `<release>/output/<snake_case>/` — keeping the Spark side
//! files (`_SUCCESS`, `.crc`) and the Hive partition folder, and writes a real `release_data_integrity` (GNU
//! `sha1sum` lines `<sha1>  ./<path>` in directory-walk order, over every file but the manifest itself, as Open
//! Targets' `find . -type f ! -iname "release_data_integrity*" -exec sha1sum {} \;` does) and its `.sha1`.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

/// The two Open Targets layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtLayout {
    /// ≤ 24.09: `output/etl/parquet/<camelCase>/`.
    EtlParquet,
    /// ≥ 25.03: `output/<snake_case>/`.
    Output,
}

/// One fixture dataset: the fixture folder and its names in the two layouts.
#[derive(Debug, Clone, Copy)]
pub struct FixtureDataset {
    /// Folder under `fixtures/opentargets/parquet/`.
    pub fixture: &'static str,
    /// Name from 25.03 on.
    pub name: &'static str,
    /// Name up to 24.09.
    pub legacy_name: &'static str,
}

/// The fixture datasets, as they appear in the mirror.
pub const DATASETS: &[FixtureDataset] = &[
    FixtureDataset {
        fixture: "target",
        name: "target",
        legacy_name: "targets",
    },
    FixtureDataset {
        fixture: "disease",
        name: "disease",
        legacy_name: "diseases",
    },
    FixtureDataset {
        fixture: "interaction",
        name: "interaction",
        legacy_name: "interaction",
    },
    FixtureDataset {
        fixture: "efo_diseases_input",
        name: "efo_disease",
        legacy_name: "efoDisease",
    },
    FixtureDataset {
        fixture: "spark_dir_credible-sets",
        name: "credible_set",
        legacy_name: "credibleSet",
    },
    FixtureDataset {
        fixture: "spark_dir_credible-sets-extended",
        name: "credible_set_extended",
        legacy_name: "credibleSetExtended",
    },
    FixtureDataset {
        fixture: "study_locus_partitioned",
        name: "study_locus",
        legacy_name: "studyLocus",
    },
];

/// The Open Targets fixture folder `shared/fixtures/opentargets/parquet`: `$PSYSTEM_FIXTURES/opentargets/parquet`
/// when that variable is set, else found beside the repository (`<repo>/../shared/fixtures`) from this crate's
/// manifest directory or, when the build happened elsewhere, from the current directory.
pub fn fixture_dir() -> PathBuf {
    const REL: &str = "opentargets/parquet";
    if let Some(dir) = std::env::var_os("PSYSTEM_FIXTURES") {
        return PathBuf::from(dir).join(REL);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    let mut candidates = vec![built.clone()];
    if let Ok(cwd) = std::env::current_dir() {
        for up in cwd.ancestors().take(4) {
            candidates.push(up.join("../shared/fixtures"));
        }
    }
    candidates
        .into_iter()
        .find(|c| c.join(REL).is_dir())
        .unwrap_or(built)
        .join(REL)
}

/// Builds release `release` under `root` in `layout` from `datasets` (all of [`DATASETS`] when empty), with its
/// `release_data_integrity` and `.sha1`. Returns the release folder. Copied files are made writable so that tests
/// can corrupt them.
///
/// # Errors
/// I/O errors (a missing fixture folder among them).
pub fn build_release(
    root: &Path,
    release: &str,
    layout: OtLayout,
    datasets: &[&str],
) -> io::Result<PathBuf> {
    let dir = root.join(release);
    let data_root = match layout {
        OtLayout::EtlParquet => dir.join("output/etl/parquet"),
        OtLayout::Output => dir.join("output"),
    };
    for d in DATASETS
        .iter()
        .filter(|d| datasets.is_empty() || datasets.contains(&d.name))
    {
        let name = match layout {
            OtLayout::EtlParquet => d.legacy_name,
            OtLayout::Output => d.name,
        };
        copy_tree(&fixture_dir().join(d.fixture), &data_root.join(name))?;
    }
    write_integrity(&dir)?;
    Ok(dir)
}

/// (Re)writes `release_data_integrity` and its `.sha1` for the release folder `dir`.
///
/// # Errors
/// I/O errors.
pub fn write_integrity(dir: &Path) -> io::Result<()> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    let mut manifest = String::new();
    for rel in files {
        if rel.starts_with("release_data_integrity") {
            continue;
        }
        let digest = sha1_hex(&fs::read(dir.join(&rel))?);
        let _ = writeln!(manifest, "{digest}  ./{rel}");
    }
    fs::write(dir.join("release_data_integrity"), &manifest)?;
    fs::write(
        dir.join("release_data_integrity.sha1"),
        format!(
            "{}  release_data_integrity\n",
            sha1_hex(manifest.as_bytes())
        ),
    )
}

/// The lower-case hex SHA-1 of `bytes`.
pub fn sha1_hex(bytes: &[u8]) -> String {
    let digest = Sha1::digest(bytes);
    digest.iter().fold(String::with_capacity(40), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(root, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            out.push(rel);
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
            let mut perms = fs::metadata(&target)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            fs::set_permissions(&target, perms)?;
        }
    }
    Ok(())
}
