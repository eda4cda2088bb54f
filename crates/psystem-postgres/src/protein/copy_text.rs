//! Rows in PostgreSQL's COPY text format (<https://www.postgresql.org/docs/15/sql-copy.html>, "Text Format"):
//! fields separated by a tab, rows ended by a newline, `\N` for NULL, and backslash escapes for backslash, tab,
//! newline and carriage return. Arrays are written as array literals (`{"a","b"}`, elements double-quoted with
//! `"` and `\` escaped), then escaped like any other text.

use std::fmt::Write as _;

/// A buffer of COPY text rows.
#[derive(Debug, Default)]
pub(crate) struct TextRows {
    buf: String,
    row_open: bool,
    rows: u64,
}

impl TextRows {
    pub(crate) fn new() -> TextRows {
        TextRows::default()
    }

    /// The bytes written so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.as_bytes()
    }

    /// Rows ended so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.row_open = false;
        self.rows = 0;
    }

    fn sep(&mut self) {
        if self.row_open {
            self.buf.push('\t');
        }
        self.row_open = true;
    }

    /// A text field.
    pub(crate) fn text(&mut self, value: &str) -> &mut Self {
        self.sep();
        escape_into(&mut self.buf, value);
        self
    }

    /// A nullable text field.
    pub(crate) fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    /// NULL.
    pub(crate) fn null(&mut self) -> &mut Self {
        self.sep();
        self.buf.push_str("\\N");
        self
    }

    /// An integer field.
    pub(crate) fn int(&mut self, value: impl itoa::Integer) -> &mut Self {
        self.sep();
        self.buf.push_str(itoa::Buffer::new().format(value));
        self
    }

    /// A nullable integer field.
    pub(crate) fn opt_int(&mut self, value: Option<impl itoa::Integer>) -> &mut Self {
        match value {
            Some(v) => self.int(v),
            None => self.null(),
        }
    }

    /// A boolean field (`t` / `f`).
    pub(crate) fn bool(&mut self, value: bool) -> &mut Self {
        self.sep();
        self.buf.push(if value { 't' } else { 'f' });
        self
    }

    /// A date field (`YYYY-MM-DD`).
    pub(crate) fn date(&mut self, value: chrono::NaiveDate) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{}", value.format("%Y-%m-%d"));
        self
    }

    /// A `text[]` field.
    pub(crate) fn array<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.sep();
        let mut literal =
            String::with_capacity(2 + items.iter().map(|s| s.as_ref().len() + 3).sum::<usize>());
        literal.push('{');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                literal.push(',');
            }
            literal.push('"');
            for c in item.as_ref().chars() {
                if c == '"' || c == '\\' {
                    literal.push('\\');
                }
                literal.push(c);
            }
            literal.push('"');
        }
        literal.push('}');
        escape_into(&mut self.buf, &literal);
        self
    }

    /// A `jsonb` field: `value` serialized with serde_json.
    pub(crate) fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        self.sep();
        // Serializing our own model types into a String cannot fail (no maps with non-string keys).
        let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
        escape_into(&mut self.buf, &text);
        self
    }

    /// Ends the row.
    pub(crate) fn end_row(&mut self) {
        self.buf.push('\n');
        self.row_open = false;
        self.rows += 1;
    }
}

fn escape_into(out: &mut String, value: &str) {
    if !value.contains(['\\', '\t', '\n', '\r']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_nulls() {
        let mut rows = TextRows::new();
        rows.text("a\tb\\c\nd\re")
            .null()
            .int(-5i32)
            .bool(true)
            .array(&["x\"y", "p\\q", "t\tu"])
            .json(&serde_json::json!({"k": "v\n"}));
        rows.end_row();
        let got = String::from_utf8(rows.as_bytes().to_vec()).unwrap();
        assert_eq!(
            got,
            "a\\tb\\\\c\\nd\\re\t\\N\t-5\tt\t{\"x\\\\\"y\",\"p\\\\\\\\q\",\"t\\tu\"}\t{\"k\":\"v\\\\n\"}\n"
        );
        assert_eq!(rows.rows(), 1);
    }
}
