//! `http://` and `https://` transport: files by URL, `Range` requests, and folder listings parsed from
//! Apache/nginx autoindex HTML pages (e.g. `https://ftp.ebi.ac.uk/pub/databases/opentargets/platform/`).

use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::{Client, StatusCode};
use scraper::{Html, Selector};
use url::Url;

use crate::error::{from_reqwest, status_error};
use crate::{encode_path, Body, Entry, Operation, TransportError, TransportOptions};

pub(crate) struct HttpBackend {
    client: Client,
    base: Url,
}

/// The HTTP client of a transport: user agent, connect and idle-read timeouts, no automatic decompression
/// (byte ranges must be of the stored bytes).
pub(crate) fn client(options: &TransportOptions, url: &str) -> Result<Client, TransportError> {
    Client::builder()
        .user_agent(options.user_agent.clone())
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.timeout)
        .build()
        .map_err(|e| from_reqwest(url, Operation::Open, e))
}

impl HttpBackend {
    pub(crate) fn new(base: Url, options: &TransportOptions) -> Result<Self, TransportError> {
        let client = client(options, &crate::redact_url(base.as_str()))?;
        Ok(HttpBackend { client, base })
    }

    fn request_url(&self, rel: &str, url: &str, op: Operation) -> Result<Url, TransportError> {
        self.base
            .join(&encode_path(rel))
            .map_err(|e| TransportError::InvalidUrl {
                url: url.to_string(),
                operation: op,
                message: e.to_string(),
            })
    }

    pub(crate) async fn list(&self, url: &str, dir: &str) -> Result<Vec<Entry>, TransportError> {
        let op = Operation::List;
        let dir_url = self.request_url(dir, url, op)?;
        let resp = self
            .client
            .get(dir_url.clone())
            .send()
            .await
            .map_err(|e| from_reqwest(url, op, e))?;
        if !resp.status().is_success() {
            return Err(status_error(url, op, resp.status().as_u16()));
        }
        // A redirect (e.g. `/latest/` → `/25.09/`) changes the folder the links are relative to.
        let page_url = resp.url().clone();
        let html = resp.text().await.map_err(|e| from_reqwest(url, op, e))?;
        Ok(parse_index(&page_url, &html))
    }

    pub(crate) async fn size(
        &self,
        url: &str,
        path: &str,
        op: Operation,
    ) -> Result<Option<u64>, TransportError> {
        let req_url = self.request_url(path, url, op)?;
        let resp = self
            .client
            .head(req_url.clone())
            .send()
            .await
            .map_err(|e| from_reqwest(url, op, e))?;
        let status = resp.status();
        if status.is_success() {
            // Read the header itself: for a HEAD response the body's size hint is 0.
            if let Some(len) = header_u64(resp.headers().get(CONTENT_LENGTH)) {
                return Ok(Some(len));
            }
        } else if status != StatusCode::METHOD_NOT_ALLOWED && status != StatusCode::NOT_IMPLEMENTED
        {
            return Err(status_error(url, op, status.as_u16()));
        }
        // No usable HEAD: ask for one byte and read the total from `Content-Range: bytes 0-0/TOTAL`.
        let resp = self
            .client
            .get(req_url)
            .header(RANGE, "bytes=0-0")
            .send()
            .await
            .map_err(|e| from_reqwest(url, op, e))?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                Ok(content_range(resp.headers().get(CONTENT_RANGE)).and_then(|r| r.2))
            }
            s if s.is_success() => Ok(header_u64(resp.headers().get(CONTENT_LENGTH))),
            // An empty file cannot satisfy `bytes=0-0`.
            StatusCode::RANGE_NOT_SATISFIABLE => {
                Ok(content_range(resp.headers().get(CONTENT_RANGE))
                    .and_then(|r| r.2)
                    .or(Some(0)))
            }
            s => Err(status_error(url, op, s.as_u16())),
        }
    }

    pub(crate) async fn open(
        &self,
        url: &str,
        path: &str,
        offset: u64,
        end: Option<u64>,
        op: Operation,
    ) -> Result<Body, TransportError> {
        let req_url = self.request_url(path, url, op)?;
        ranged_get(&self.client, req_url, url, offset, end, op).await
    }

    pub(crate) async fn open_all(
        &self,
        url: &str,
        path: &str,
        op: Operation,
    ) -> Result<(Body, Option<u64>), TransportError> {
        let req_url = self.request_url(path, url, op)?;
        full_get(&self.client, req_url, url, op).await
    }
}

/// `GET` of a whole file; the body and its `Content-Length`.
pub(crate) async fn full_get(
    client: &Client,
    req_url: Url,
    url: &str,
    op: Operation,
) -> Result<(Body, Option<u64>), TransportError> {
    let resp = client
        .get(req_url)
        .send()
        .await
        .map_err(|e| from_reqwest(url, op, e))?;
    if !resp.status().is_success() {
        return Err(status_error(url, op, resp.status().as_u16()));
    }
    let len = header_u64(resp.headers().get(CONTENT_LENGTH));
    Ok((
        Body {
            start: 0,
            chunks: body_stream(resp, url, op),
        },
        len,
    ))
}

/// `GET` with `Range: bytes=offset-[end-1]` (no header when `offset` is 0 and `end` is `None`). A `206`
/// must start at `offset`; a `200` is a server that ignored the range (the body starts at 0).
pub(crate) async fn ranged_get(
    client: &Client,
    req_url: Url,
    url: &str,
    offset: u64,
    end: Option<u64>,
    op: Operation,
) -> Result<Body, TransportError> {
    let mut req = client.get(req_url);
    let ranged = offset > 0 || end.is_some();
    if ranged {
        let value = match end {
            Some(end) => format!("bytes={offset}-{}", end.saturating_sub(1)),
            None => format!("bytes={offset}-"),
        };
        req = req.header(RANGE, value);
    }
    let resp = req.send().await.map_err(|e| from_reqwest(url, op, e))?;
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            let start = content_range(resp.headers().get(CONTENT_RANGE)).map(|r| r.0);
            if start != Some(offset) {
                return Err(TransportError::Protocol {
                    url: url.to_string(),
                    operation: op,
                    message: format!(
                        "asked for bytes from {offset}, got Content-Range `{}`",
                        resp.headers()
                            .get(CONTENT_RANGE)
                            .map_or("(none)", |v| v.to_str().unwrap_or("(not text)"))
                    ),
                });
            }
            Ok(Body {
                start: offset,
                chunks: body_stream(resp, url, op),
            })
        }
        s if s.is_success() => Ok(Body {
            start: 0,
            chunks: body_stream(resp, url, op),
        }),
        StatusCode::RANGE_NOT_SATISFIABLE => Err(TransportError::Protocol {
            url: url.to_string(),
            operation: op,
            message: format!(
                "range from byte {offset} not satisfiable (file size {})",
                content_range(resp.headers().get(CONTENT_RANGE))
                    .and_then(|r| r.2)
                    .map_or_else(|| "unknown".to_string(), |t| t.to_string())
            ),
        }),
        s => Err(status_error(url, op, s.as_u16())),
    }
}

fn body_stream(
    resp: reqwest::Response,
    url: &str,
    op: Operation,
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, TransportError>> {
    let url = url.to_string();
    resp.bytes_stream()
        .map(move |r| r.map_err(|e| from_reqwest(&url, op, e)))
        .boxed()
}

fn header_u64(v: Option<&reqwest::header::HeaderValue>) -> Option<u64> {
    v?.to_str().ok()?.trim().parse().ok()
}

/// `Content-Range: bytes a-b/total` (total may be `*`) → `(a, b, total)`.
fn content_range(v: Option<&reqwest::header::HeaderValue>) -> Option<(u64, u64, Option<u64>)> {
    let s = v?.to_str().ok()?.trim();
    let rest = s.strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok();
    if range.trim() == "*" {
        // `bytes */total` (a 416 answer): no range, only the size.
        return Some((u64::MAX, u64::MAX, total));
    }
    let (a, b) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

/// The direct children linked from an autoindex page at `page_url`: `<a href>` targets that resolve to
/// `page_url` + one segment (+ `/` for folders). Parent links, sort links (`?C=N;O=D`), fragments, links
/// with a query and links to other hosts or folders are skipped; names are percent-decoded; duplicates
/// (an icon and a text link to the same file) are kept once.
pub(crate) fn parse_index(page_url: &Url, html: &str) -> Vec<Entry> {
    let doc = Html::parse_document(html);
    let selector = Selector::parse("a[href]").expect("static selector");
    let mut out: Vec<Entry> = Vec::new();
    let base_path = page_url.path();
    for a in doc.select(&selector) {
        let Some(href) = a.value().attr("href") else {
            continue;
        };
        let href = href.trim();
        if href.is_empty() || href.starts_with('?') || href.starts_with('#') {
            continue;
        }
        let Ok(target) = page_url.join(href) else {
            continue;
        };
        if target.scheme() != page_url.scheme()
            || target.host_str() != page_url.host_str()
            || target.port_or_known_default() != page_url.port_or_known_default()
            || target.query().is_some()
        {
            continue;
        }
        let Some(rest) = target.path().strip_prefix(base_path) else {
            continue;
        };
        let (seg, is_dir) = match rest.strip_suffix('/') {
            Some(s) => (s, true),
            None => (rest, false),
        };
        if seg.is_empty() || seg.contains('/') {
            continue;
        }
        let Ok(name) = percent_encoding::percent_decode_str(seg).decode_utf8() else {
            continue;
        };
        if name == "." || name == ".." || out.iter().any(|e| e.name == name) {
            continue;
        }
        out.push(Entry {
            name: name.into_owned(),
            is_dir,
            size: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apache_index_links_are_children_only() {
        let page = Url::parse("https://ftp.ebi.ac.uk/pub/databases/opentargets/platform/").unwrap();
        let html = r#"<html><body><h1>Index of /pub/databases/opentargets/platform</h1><table>
            <tr><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th></tr>
            <tr><td><a href="/pub/databases/opentargets/">Parent Directory</a></td></tr>
            <tr><td><a href="25.03/">25.03/</a></td></tr>
            <tr><td><a href="25.06/"><img src="/icons/folder.gif"></a> <a href="25.06/">25.06/</a></td></tr>
            <tr><td><a href="latest/">latest/</a></td></tr>
            <tr><td><a href="README%20now.txt">README now.txt</a></td></tr>
            <tr><td><a href="https://elsewhere.org/x">x</a></td></tr>
            <tr><td><a href="../">../</a></td></tr>
            <tr><td><a href="sub/deeper/file">deep</a></td></tr>
            </table></body></html>"#;
        let names: Vec<(String, bool)> = parse_index(&page, html)
            .into_iter()
            .map(|e| (e.name, e.is_dir))
            .collect();
        assert_eq!(
            names,
            vec![
                ("25.03".into(), true),
                ("25.06".into(), true),
                ("latest".into(), true),
                ("README now.txt".into(), false)
            ]
        );
    }

    #[test]
    fn content_range_is_parsed() {
        let v = reqwest::header::HeaderValue::from_static("bytes 10-19/100");
        assert_eq!(content_range(Some(&v)), Some((10, 19, Some(100))));
    }
}
