//! `${NAME}` substitution in config text, before it is parsed.
//!
//! `${NAME}` takes the environment variable NAME, which must be set;
//! `${NAME:-default}` falls back to `default`; `$${` is a literal `${`.
//! Comments are left alone, so a commented-out line may name an unset
//! variable.

/// A `${NAME}` whose variable is not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissingVariable {
    pub(crate) name: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// Replace every `${NAME}` in `text` with `lookup(NAME)`.
pub(crate) fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<MissingVariable>> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let (content, comment) = split_comment(line);
        substitute_line(content, index + 1, &lookup, &mut out, &mut missing);
        out.push_str(comment);
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

fn substitute_line(
    line: &str,
    line_no: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
    missing: &mut Vec<MissingVariable>,
) {
    let mut rest = line;
    let mut column = 1;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        column += rest[..at].chars().count();
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            column += 3;
            continue;
        }
        if let Some(body) = after.strip_prefix("${")
            && let Some(end) = body.find('}')
        {
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            match lookup(name).or_else(|| default.map(str::to_owned)) {
                Some(value) => out.push_str(&value),
                None => missing.push(MissingVariable {
                    name: name.to_owned(),
                    line: line_no,
                    column,
                }),
            }
            let consumed = 2 + end + 1;
            column += after[..consumed].chars().count();
            rest = &after[consumed..];
            continue;
        }
        out.push('$');
        rest = &after[1..];
        column += 1;
    }
    out.push_str(rest);
}

/// Split a YAML line into its content and a trailing comment: a `#` at the
/// start or after a space, outside quotes.
fn split_comment(line: &str) -> (&str, &str) {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return line.split_at(i),
            None => {}
        }
        prev = c;
    }
    (line, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        let out = substitute("a: ${HOST}:5432\nb: ${UNSET:-x}\nc: '${EMPTY}'\n", env).unwrap();
        assert_eq!(out, "a: db.local:5432\nb: x\nc: ''\n");
    }

    #[test]
    fn reports_each_missing_variable_with_its_position() {
        let err = substitute("a: 1\nb: x${NOPE}y ${ALSO}\n", env).unwrap_err();
        assert_eq!(
            err,
            [
                MissingVariable {
                    name: "NOPE".into(),
                    line: 2,
                    column: 5
                },
                MissingVariable {
                    name: "ALSO".into(),
                    line: 2,
                    column: 14
                },
            ]
        );
    }

    #[test]
    fn leaves_comments_escapes_and_lone_dollars_alone() {
        let out = substitute("a: $${HOST} $5 # uses ${NOPE}\nb: \"x # ${HOST}\"\n", env).unwrap();
        assert_eq!(out, "a: ${HOST} $5 # uses ${NOPE}\nb: \"x # db.local\"\n");
    }
}
