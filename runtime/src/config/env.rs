//! `${NAME}` substitution in config text, before it is parsed.
//!
//! `${NAME}` takes the environment variable NAME, which must be set;
//! `${NAME:-default}` falls back to `default`; `$${` is a literal `${`.
//! Comments are left alone, so a commented-out line may name an unset
//! variable.
//!
//! A value stays one scalar, whatever it holds: it cannot add keys or
//! entries to the file. Inside double quotes it is escaped; inside single
//! quotes its quotes are doubled; unquoted, it goes in as it is when YAML
//! would read it as plain text, and as a double-quoted scalar when it is the
//! whole value. A value that could only be read as structure where it
//! stands is an error that says to quote it.

/// What went wrong with a `${NAME}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The variable is not set.
    Missing,
    /// Its value cannot stand there as one scalar.
    Unsafe,
}

/// A `${NAME}` that could not be substituted, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissingVariable {
    pub(crate) name: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) problem: Problem,
}

/// Characters that open a YAML node when they start a plain scalar.
const INDICATORS: &[char] = &[
    '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`',
];

/// Whether `value` reads back as the same plain scalar, where it stands.
fn plain_safe(value: &str, at_start: bool, in_flow: bool) -> bool {
    let structure = value.chars().any(char::is_control)
        || value.contains(": ")
        || value.ends_with(':')
        || value.contains(" #")
        || value.trim() != value
        || (at_start && value.starts_with(INDICATORS))
        || (in_flow && value.contains([',', '[', ']', '{', '}']));
    !structure
}

/// `value` as a double-quoted YAML scalar's content.
fn escape_double(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
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
    let mut scan = Scan::new(line_no);
    let mut i = 0;
    while i < line.len() {
        let rest = &line[i..];
        if scan.quote != Some('\'') && rest.starts_with("$${") {
            out.push_str("${");
            i += 3;
            scan.column += 3;
            scan.scalar_start = false;
            scan.prev = '{';
            continue;
        }
        if let Some(consumed) = scan.variable(rest, lookup, out, missing) {
            i += consumed;
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        i += c.len_utf8();
        if scan.quote == Some('"') && c == '\\' {
            // An escape: the next character is taken as it is.
            if let Some(next) = line[i..].chars().next() {
                out.push(next);
                i += next.len_utf8();
                scan.column += 1;
            }
        }
        scan.copied(c);
    }
}

/// Where the scan of one line is.
struct Scan {
    line_no: usize,
    column: usize,
    /// The quote a scalar is inside, if any.
    quote: Option<char>,
    /// Unclosed `[` and `{` outside quotes: inside them `,` ends a scalar.
    depth: usize,
    /// Whether a plain scalar would start here (only indentation or an
    /// indicator and blanks before it).
    scalar_start: bool,
    prev: char,
}

impl Scan {
    fn new(line_no: usize) -> Self {
        Self {
            line_no,
            column: 1,
            quote: None,
            depth: 0,
            scalar_start: true,
            prev: ' ',
        }
    }

    /// Replace the `${NAME}` or `${NAME:-default}` that `rest` starts
    /// with, if it does; the bytes it took.
    fn variable(
        &mut self,
        rest: &str,
        lookup: &impl Fn(&str) -> Option<String>,
        out: &mut String,
        missing: &mut Vec<MissingVariable>,
    ) -> Option<usize> {
        let body = rest.strip_prefix("${")?;
        let end = body.find('}')?;
        let expr = &body[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        let consumed = 2 + end + 1;
        let after = &rest[consumed..];
        let problem = match lookup(name).or_else(|| default.map(str::to_owned)) {
            None => Some(Problem::Missing),
            Some(value) => place(
                &value,
                self.quote,
                self.scalar_start,
                self.depth > 0,
                after,
                out,
            ),
        };
        if let Some(problem) = problem {
            missing.push(MissingVariable {
                name: name.to_owned(),
                line: self.line_no,
                column: self.column,
                problem,
            });
        }
        self.column += rest[..consumed].chars().count();
        self.scalar_start = false;
        self.prev = '}';
        Some(consumed)
    }

    /// Follow one character copied as it is.
    fn copied(&mut self, c: char) {
        self.column += 1;
        match self.quote {
            Some('"') if c == '\\' => {}
            Some(q) if c == q => self.quote = None,
            Some(_) => {}
            None => {
                match c {
                    '"' | '\'' if self.scalar_start => self.quote = Some(c),
                    '[' | '{' => self.depth += 1,
                    ']' | '}' => self.depth = self.depth.saturating_sub(1),
                    _ => {}
                }
                self.scalar_start = match c {
                    ' ' | '\t' => {
                        self.scalar_start || matches!(self.prev, ':' | '-' | ',' | '[' | '{')
                    }
                    '[' | '{' | ',' => true,
                    _ => false,
                };
            }
        }
        self.prev = c;
    }
}

/// Write `value` where a `${...}` stood, so that it stays one scalar; the
/// problem when it cannot.
fn place(
    value: &str,
    quote: Option<char>,
    scalar_start: bool,
    in_flow: bool,
    after: &str,
    out: &mut String,
) -> Option<Problem> {
    match quote {
        Some('"') => out.push_str(&escape_double(value)),
        // Single quotes fold a line break into a space: it cannot be kept.
        Some(_) if value.contains(['\n', '\r']) => return Some(Problem::Unsafe),
        Some(_) => out.push_str(&value.replace('\'', "''")),
        None if plain_safe(value, scalar_start, in_flow) => out.push_str(value),
        // The whole value: quote it.
        None if scalar_start && !in_flow && after.trim().is_empty() => {
            out.push('"');
            out.push_str(&escape_double(value));
            out.push('"');
        }
        None => return Some(Problem::Unsafe),
    }
    None
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
                    column: 5,
                    problem: Problem::Missing,
                },
                MissingVariable {
                    name: "ALSO".into(),
                    line: 2,
                    column: 14,
                    problem: Problem::Missing,
                },
            ]
        );
    }

    fn hostile(name: &str) -> Option<String> {
        match name {
            "NL" => Some("pw\nsinks: []".into()),
            "QUOTE" => Some("it's \"quoted\"".into()),
            "FLOW" => Some("[a, b]".into()),
            "COLON" => Some("a: b".into()),
            _ => env(name),
        }
    }

    #[test]
    fn a_value_stays_one_scalar_whatever_it_holds() {
        let out = substitute(
            "a: ${NL}\nb: \"${NL}\"\nc: '${QUOTE}'\nd: ${FLOW}\ne: ${COLON}\nf: x-${HOST}\n",
            hostile,
        )
        .unwrap();
        assert_eq!(
            out,
            "a: \"pw\\nsinks: []\"\nb: \"pw\\nsinks: []\"\nc: 'it''s \"quoted\"'\nd: \"[a, b]\"\ne: \"a: b\"\nf: x-db.local\n"
        );
    }

    #[test]
    fn a_value_that_cannot_stand_as_one_scalar_is_refused() {
        let err = substitute("a: x ${NL}\nb: '${NL}'\nc: [${FLOW}]\n", hostile).unwrap_err();
        let problems: Vec<(usize, Problem)> = err.iter().map(|m| (m.line, m.problem)).collect();
        assert_eq!(
            problems,
            [
                (1, Problem::Unsafe),
                (2, Problem::Unsafe),
                (3, Problem::Unsafe)
            ]
        );
    }

    #[test]
    fn leaves_comments_escapes_and_lone_dollars_alone() {
        let out = substitute("a: $${HOST} $5 # uses ${NOPE}\nb: \"x # ${HOST}\"\n", env).unwrap();
        assert_eq!(out, "a: ${HOST} $5 # uses ${NOPE}\nb: \"x # db.local\"\n");
    }
}
