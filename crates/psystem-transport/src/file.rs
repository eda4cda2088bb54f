//! `file://` transport: a folder of the local file system.

use std::path::PathBuf;

use futures::StreamExt;
use tokio::io::AsyncSeekExt;
use tokio_util::io::ReaderStream;

use crate::error::from_io;
use crate::{Body, Entry, Operation, TransportError, FILE_CHUNK};

pub(crate) struct FileBackend {
    root: PathBuf,
}

impl FileBackend {
    pub(crate) fn new(root: PathBuf) -> Self {
        FileBackend { root }
    }

    fn local(&self, rel: &str) -> PathBuf {
        let mut p = self.root.clone();
        for seg in rel.split('/').filter(|s| !s.is_empty()) {
            p.push(seg);
        }
        p
    }

    pub(crate) async fn list(&self, url: &str, dir: &str) -> Result<Vec<Entry>, TransportError> {
        let op = Operation::List;
        let mut rd = tokio::fs::read_dir(self.local(dir))
            .await
            .map_err(|e| from_io(url, op, e))?;
        let mut out = Vec::new();
        while let Some(entry) = rd.next_entry().await.map_err(|e| from_io(url, op, e))? {
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(url = %url, name = ?entry.file_name(), "skipping a file name that is not UTF-8");
                continue;
            };
            // Follow symbolic links, as a web or FTP server would.
            let meta = match tokio::fs::metadata(entry.path()).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(url = %url, name = %name, error = %e, "skipping an unreadable entry");
                    continue;
                }
            };
            let is_dir = meta.is_dir();
            out.push(Entry {
                name,
                is_dir,
                size: (!is_dir).then_some(meta.len()),
            });
        }
        Ok(out)
    }

    pub(crate) async fn size(
        &self,
        url: &str,
        path: &str,
        op: Operation,
    ) -> Result<u64, TransportError> {
        let meta = tokio::fs::metadata(self.local(path))
            .await
            .map_err(|e| from_io(url, op, e))?;
        if meta.is_dir() {
            return Err(TransportError::Protocol {
                url: url.into(),
                operation: op,
                message: "is a folder".into(),
            });
        }
        Ok(meta.len())
    }

    pub(crate) async fn open(
        &self,
        url: &str,
        path: &str,
        offset: u64,
        op: Operation,
    ) -> Result<Body, TransportError> {
        let mut f = tokio::fs::File::open(self.local(path))
            .await
            .map_err(|e| from_io(url, op, e))?;
        if offset > 0 {
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| from_io(url, op, e))?;
        }
        let url = url.to_string();
        let chunks = ReaderStream::with_capacity(f, FILE_CHUNK)
            .map(move |r| r.map_err(|e| from_io(&url, op, e)))
            .boxed();
        Ok(Body {
            start: offset,
            chunks,
        })
    }
}
