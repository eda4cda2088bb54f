//! Keeping secrets out of messages, logs and files.

/// A connection URL with its password replaced by `***`: `postgres://u:secret@h/db` → `postgres://u:***@h/db`.
/// Text that is not a URL is returned unchanged; query parameters named `password` are masked too.
pub fn redact_url(s: &str) -> String {
    let Ok(mut url) = url::Url::parse(s) else { return s.to_string() };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") { "***".to_string() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::redact_url;
    #[test]
    fn hides_passwords() {
        assert_eq!(redact_url("postgres://u:s3cret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert!(!redact_url("postgres://h/db?user=u&password=s3cret").contains("s3cret"));
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
