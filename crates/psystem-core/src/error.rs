//! Error messages for people.

/// `e` and its causes on one line, joined with `: `, skipping a cause whose text the line already holds (many
/// errors, sqlx's and reqwest's among them, repeat their source's message in their own).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer: inner failed")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner failed")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn joins_causes_without_repeats() {
        let e = Outer(Inner(std::io::Error::other("disk full")));
        assert_eq!(super::error_chain(&e), "outer: inner failed: disk full");
    }
}
