//! `gs://bucket/prefix/` transport over the anonymous Google Cloud Storage JSON API
//! (<https://cloud.google.com/storage/docs/json_api/v1/objects/list>):
//!
//! - list: `GET {endpoint}/storage/v1/b/{bucket}/o?prefix={prefix}&delimiter=/&pageToken={token}` →
//!   `{"items": [{"name", "size"}], "prefixes": ["…/"], "nextPageToken"}` (`size` is a decimal string);
//! - metadata: `GET {endpoint}/storage/v1/b/{bucket}/o/{percent-encoded name}` → `{"name", "size"}`;
//! - media: the same URL with `?alt=media`, with `Range` for partial reads.

use reqwest::Client;
use serde::Deserialize;
use url::Url;

use crate::error::{from_reqwest, status_error};
use crate::http::{full_get, ranged_get};
use crate::{Body, Entry, Operation, TransportError, TransportOptions, SEGMENT};

pub(crate) struct GcsBackend {
    client: Client,
    endpoint: Url,
    bucket: String,
    /// Object name prefix of the base, `""` or ending with `/`.
    prefix: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<Object>,
    #[serde(default)]
    prefixes: Vec<String>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Object {
    name: String,
    #[serde(default, deserialize_with = "de_size")]
    size: Option<u64>,
}

/// GCS sends `size` as a decimal string (`"12345"`); accept a number too.
fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Text(String),
        Number(u64),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Number(n)) => Ok(Some(n)),
        Some(Size::Text(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

impl GcsBackend {
    pub(crate) fn new(
        base: &Url,
        endpoint: &str,
        options: &TransportOptions,
    ) -> Result<Self, String> {
        let bucket = base
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or("a gs:// URL needs a bucket")?
            .to_string();
        let prefix = percent_encoding::percent_decode_str(base.path().trim_start_matches('/'))
            .decode_utf8()
            .map_err(|e| e.to_string())?
            .into_owned();
        let mut endpoint =
            Url::parse(endpoint).map_err(|e| format!("GCS endpoint `{endpoint}`: {e}"))?;
        if !endpoint.path().ends_with('/') {
            let p = format!("{}/", endpoint.path());
            endpoint.set_path(&p);
        }
        let client = crate::http::client(options, base.as_str()).map_err(|e| e.to_string())?;
        Ok(GcsBackend {
            client,
            endpoint,
            bucket,
            prefix,
        })
    }

    fn object_url(&self, rel: &str, url: &str, op: Operation) -> Result<Url, TransportError> {
        let name = format!("{}{}", self.prefix, rel);
        let path = format!(
            "storage/v1/b/{}/o/{}",
            percent_encoding::utf8_percent_encode(&self.bucket, SEGMENT),
            percent_encoding::utf8_percent_encode(&name, SEGMENT)
        );
        self.endpoint
            .join(&path)
            .map_err(|e| TransportError::InvalidUrl {
                url: url.to_string(),
                operation: op,
                message: e.to_string(),
            })
    }

    pub(crate) async fn list(&self, url: &str, dir: &str) -> Result<Vec<Entry>, TransportError> {
        let op = Operation::List;
        let prefix = format!("{}{}", self.prefix, dir);
        let list_url = self
            .endpoint
            .join(&format!(
                "storage/v1/b/{}/o",
                percent_encoding::utf8_percent_encode(&self.bucket, SEGMENT)
            ))
            .map_err(|e| TransportError::InvalidUrl {
                url: url.into(),
                operation: op,
                message: e.to_string(),
            })?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("prefix", prefix.as_str()), ("delimiter", "/")];
            if let Some(t) = &token {
                query.push(("pageToken", t));
            }
            let resp = self
                .client
                .get(list_url.clone())
                .query(&query)
                .send()
                .await
                .map_err(|e| from_reqwest(url, op, e))?;
            if !resp.status().is_success() {
                return Err(status_error(url, op, resp.status().as_u16()));
            }
            let page: ObjectList = resp.json().await.map_err(|e| TransportError::Protocol {
                url: url.into(),
                operation: op,
                message: format!("not a GCS object list: {}", e.without_url()),
            })?;
            for item in page.items {
                let Some(name) = item.name.strip_prefix(&prefix) else {
                    continue;
                };
                // A zero-length "folder placeholder" object named like the prefix itself.
                if name.is_empty() {
                    continue;
                }
                out.push(Entry {
                    name: name.to_string(),
                    is_dir: false,
                    size: item.size,
                });
            }
            for p in page.prefixes {
                let Some(name) = p.strip_prefix(&prefix).and_then(|n| n.strip_suffix('/')) else {
                    continue;
                };
                if !name.is_empty() {
                    out.push(Entry {
                        name: name.to_string(),
                        is_dir: true,
                        size: None,
                    });
                }
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        // GCS answers an empty list (not 404) for a prefix without objects.
        if out.is_empty() && !dir.is_empty() {
            return Err(TransportError::NotFound {
                url: url.into(),
                operation: op,
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
        let meta_url = self.object_url(path, url, op)?;
        let resp = self
            .client
            .get(meta_url)
            .send()
            .await
            .map_err(|e| from_reqwest(url, op, e))?;
        if !resp.status().is_success() {
            return Err(status_error(url, op, resp.status().as_u16()));
        }
        let obj: Object = resp.json().await.map_err(|e| TransportError::Protocol {
            url: url.into(),
            operation: op,
            message: format!("not a GCS object resource: {}", e.without_url()),
        })?;
        obj.size.ok_or_else(|| TransportError::Protocol {
            url: url.into(),
            operation: op,
            message: "the object resource has no size".into(),
        })
    }

    fn media_url(&self, path: &str, url: &str, op: Operation) -> Result<Url, TransportError> {
        let mut u = self.object_url(path, url, op)?;
        u.set_query(Some("alt=media"));
        Ok(u)
    }

    pub(crate) async fn open(
        &self,
        url: &str,
        path: &str,
        offset: u64,
        end: Option<u64>,
        op: Operation,
    ) -> Result<Body, TransportError> {
        let media = self.media_url(path, url, op)?;
        ranged_get(&self.client, media, url, offset, end, op).await
    }

    pub(crate) async fn open_all(
        &self,
        url: &str,
        path: &str,
        op: Operation,
    ) -> Result<(Body, Option<u64>), TransportError> {
        let media = self.media_url(path, url, op)?;
        full_get(&self.client, media, url, op).await
    }
}
