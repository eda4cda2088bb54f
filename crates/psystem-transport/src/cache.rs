//! The download cache: `<root>/<source>/<release>/<relative path>`, e.g.
//! `~/.psystem/cache/opentargets/25.03/output/target/part-00000.parquet`.

use std::path::{Component, Path, PathBuf};

use crate::{Operation, TransportError};

/// The download cache rooted at a folder (the caller passes its home's cache folder, e.g. `~/.psystem/cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (created lazily by the downloads, not here).
    pub fn new(root: PathBuf) -> Cache {
        Cache { root }
    }

    /// The cache's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the file `rel_path` (a `/`-separated path relative to the release, e.g.
    /// `output/target/part-0.parquet`) of `release` of `source` is cached:
    /// `<root>/<source>/<release>/<rel_path>`.
    ///
    /// # Errors
    /// [`TransportError::InvalidUrl`] (operation [`Operation::CachePath`]) when `source` or `release` is not a
    /// single plain name, or `rel_path` is empty, absolute (`/x`, `C:\x`), or has an empty, `.` or `..`
    /// segment or a backslash or NUL: nothing can land outside the cache.
    pub fn path_for(
        &self,
        source: &str,
        release: &str,
        rel_path: &str,
    ) -> Result<PathBuf, TransportError> {
        let invalid = |message: String| TransportError::InvalidUrl {
            url: format!("{source}/{release}/{rel_path}"),
            operation: Operation::CachePath,
            message,
        };
        for (what, name) in [("source", source), ("release", release)] {
            if name.contains('/') {
                return Err(invalid(format!("the {what} must be a single name")));
            }
            check_segment(name).map_err(|m| invalid(format!("{what}: {m}")))?;
        }
        if rel_path.is_empty() {
            return Err(invalid("empty path".into()));
        }
        if rel_path.starts_with('/') || Path::new(rel_path).is_absolute() {
            return Err(invalid("absolute paths are not allowed".into()));
        }
        let mut path = self.root.join(source).join(release);
        for seg in rel_path.split('/') {
            check_segment(seg).map_err(invalid)?;
            path.push(seg);
        }
        Ok(path)
    }
}

fn check_segment(seg: &str) -> Result<(), String> {
    match seg {
        "" => Err("empty path segment".into()),
        "." | ".." => Err(format!("`{seg}` segments are not allowed")),
        s if s.contains('\\') || s.contains('\0') => {
            Err("backslashes and NUL are not allowed".into())
        }
        // `C:` and the like would make a Windows path absolute.
        s if Path::new(s)
            .components()
            .any(|c| !matches!(c, Component::Normal(_))) =>
        {
            Err(format!("`{s}` is not a plain name"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_paths() {
        let cache = Cache::new(PathBuf::from("/home/a/.psystem/cache"));
        assert_eq!(
            cache
                .path_for("opentargets", "25.03", "output/target/p.parquet")
                .unwrap(),
            PathBuf::from("/home/a/.psystem/cache/opentargets/25.03/output/target/p.parquet")
        );
        for bad in ["../x", "/abs", "a//b", "a/./b", "a\\b", ""] {
            assert!(cache.path_for("s", "r", bad).is_err(), "{bad}");
        }
        assert!(cache.path_for("..", "r", "x").is_err());
        assert!(cache.path_for("s", "a/b", "x").is_err());
    }
}
