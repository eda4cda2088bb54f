//! Quoting and checking of SQL identifiers.
//!
//! Every schema, table and column name that reaches SQL goes through [`quote_ident`]; values are never spliced
//! into SQL, they are bound as parameters.

use psystem_core::TableRef;

use crate::DestinationError;

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1` bytes); longer ones are silently truncated by the
/// server, so psystem rejects them instead.
pub const MAX_IDENT_BYTES: usize = 63;

/// Quotes an identifier for SQL: wraps it in double quotes and doubles any double quote inside.
///
/// ```
/// assert_eq!(psystem_postgres::quote_ident(r#"My "odd" col"#), r#""My ""odd"" col""#);
/// ```
pub fn quote_ident(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('"');
    for c in ident.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes a schema-qualified table name: `"schema"."name"`.
pub fn quote_table(table: &TableRef) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    )
}

/// Checks that a name can be a PostgreSQL identifier as it is: not empty, no NUL, at most 63 bytes.
pub fn check_ident(ident: &str) -> Result<(), DestinationError> {
    let reason = if ident.is_empty() {
        "it is empty".to_string()
    } else if ident.contains('\0') {
        "it contains a NUL character".to_string()
    } else if ident.len() > MAX_IDENT_BYTES {
        format!(
            "it is {} bytes long and PostgreSQL keeps at most {MAX_IDENT_BYTES}",
            ident.len()
        )
    } else {
        return Ok(());
    };
    Err(DestinationError::InvalidIdentifier {
        identifier: ident.to_string(),
        reason,
    })
}

/// `base` followed by `suffix`, with `base` shortened (at a character boundary) so that the whole fits in
/// [`MAX_IDENT_BYTES`].
pub(crate) fn ident_with_suffix(base: &str, suffix: &str) -> String {
    let room = MAX_IDENT_BYTES.saturating_sub(suffix.len());
    let mut end = base.len().min(room);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", &base[..end], suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes() {
        assert_eq!(quote_ident("a"), "\"a\"");
        assert_eq!(quote_ident("A b"), "\"A b\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident(""), "\"\"");
        assert_eq!(quote_table(&TableRef::new("s\"", "T")), "\"s\"\"\".\"T\"");
    }

    #[test]
    fn checks() {
        assert!(check_ident("ok name").is_ok());
        assert!(check_ident("").is_err());
        assert!(check_ident("a\0b").is_err());
        assert!(check_ident(&"x".repeat(63)).is_ok());
        assert!(check_ident(&"x".repeat(64)).is_err());
    }

    #[test]
    fn suffix_truncates_at_char_boundary() {
        let s = ident_with_suffix(&"é".repeat(40), "__psystem_load_12");
        assert!(s.len() <= MAX_IDENT_BYTES);
        assert!(s.ends_with("__psystem_load_12"));
        assert_eq!(ident_with_suffix("t", "_pkey"), "t_pkey");
    }
}
