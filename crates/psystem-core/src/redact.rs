//! Keeping secrets out of messages, logs and files: redaction of connection URLs.

/// Returns `url` with any password replaced by `***`, for error messages and logs.
///
/// Handles URLs (`postgres://user:secret@host/db`, also `?password=secret` in the query) and libpq key/value
/// strings (`host=h password=secret`). A string that is neither is returned with everything after the first
/// `:` of a `user:password@` part hidden.
///
/// ```
/// use psystem_core::redact::redact_url;
/// assert_eq!(redact_url("postgres://me:s3cret@db:5432/x"), "postgres://me:***@db:5432/x");
/// assert_eq!(redact_url("postgres://me@db/x"), "postgres://me@db/x");
/// ```
pub fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.has_host() || parsed.scheme().starts_with("postgres") {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            if parsed.query_pairs().any(|(k, _)| is_secret_key(&k)) {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if is_secret_key(&k) {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            return parsed.to_string();
        }
    }
    if url.contains('=') && !url.contains("://") {
        return redact_key_value(url);
    }
    // Unparseable URL: hide a `user:password@` part if there is one.
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &url[..s + 3 + colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Returns `url` without its user name and password (for URLs stored where other machines read them, such as a
/// shared load's worker spec); a string that is not a URL with a host is returned unchanged.
///
/// ```
/// use psystem_core::redact::strip_credentials;
/// assert_eq!(strip_credentials("https://me:pw@ftp.example.org/pub/"), "https://ftp.example.org/pub/");
/// assert_eq!(strip_credentials("file:///data/uniprot/"), "file:///data/uniprot/");
/// ```
pub fn strip_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.has_host() => {
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

fn is_secret_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword")
}

/// Redacts `password=…` in a libpq key/value connection string (values may be single-quoted).
fn redact_key_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq]
            .trim_end()
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or("");
        out.push_str(&rest[..=eq]);
        rest = &rest[eq + 1..];
        let rest_trim = rest.trim_start();
        out.push_str(&rest[..rest.len() - rest_trim.len()]);
        rest = rest_trim;
        // The value: quoted (with \' escapes) or up to whitespace.
        let end = if let Some(stripped) = rest.strip_prefix('\'') {
            let mut i = 0;
            let bytes = stripped.as_bytes();
            while i < bytes.len() && bytes[i] != b'\'' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            (i + 2).min(rest.len())
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        if is_secret_key(key) {
            out.push_str("***");
        } else {
            out.push_str(&rest[..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn url_password() {
        assert_eq!(
            redact_url("postgres://u:p%40ss@h:1/d"),
            "postgres://u:***@h:1/d"
        );
        assert_eq!(redact_url("postgresql://u@h/d"), "postgresql://u@h/d");
        assert_eq!(
            redact_url("postgres://h/d?user=u&password=pw&sslmode=disable"),
            "postgres://h/d?user=u&password=***&sslmode=disable"
        );
    }

    #[test]
    fn key_value() {
        assert_eq!(
            redact_url("host=h password=secret user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact_url("host=h password = 'a b\\' c' user=u"),
            "host=h password = *** user=u"
        );
    }

    #[test]
    fn unparseable() {
        let r = redact_url("postgres://u:pw@[bad/d");
        assert!(!r.contains("pw"), "{r}");
    }
}
