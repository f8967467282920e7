//! A regular expression matched against a whole name, and a replacement
//! written as Java's `Matcher.replaceFirst` reads it, so that the
//! `topic.regex` / `topic.replacement` a Debezium user already has mean the
//! same here: `$1` is group 1 (`$12` group 12 when there are that many,
//! else group 1 and a `2`), `${name}` a named group, `\$` a dollar sign.

use regex_lite::Regex;

/// A pattern that must match the whole text.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    regex: Regex,
    /// As written, for messages and comparison.
    text: String,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Pattern {
    pub(crate) fn new(text: &str) -> Result<Self, String> {
        let regex = Regex::new(&format!("^(?:{text})$"))
            .map_err(|e| format!("is not a regular expression: {e}"))?;
        Ok(Self {
            regex,
            text: text.to_owned(),
        })
    }

    /// `text` with the replacement applied, when the pattern matches all of it.
    pub(crate) fn replace(&self, text: &str, with: &Replacement) -> Option<String> {
        let groups = self.regex.captures(text)?;
        let mut out = String::with_capacity(text.len());
        for part in &with.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Group(i) => out.push_str(groups.get(*i).map_or("", |m| m.as_str())),
                Part::Named(name) => out.push_str(groups.name(name).map_or("", |m| m.as_str())),
            }
        }
        Some(out)
    }
}

/// What a match is replaced with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Replacement {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Group(usize),
    Named(String),
}

impl Replacement {
    /// Read `text` against the groups `pattern` has; a reference to a group
    /// it does not have is an error, as in Java.
    pub(crate) fn new(text: &str, pattern: &Pattern) -> Result<Self, String> {
        let groups = pattern.regex.captures_len() - 1;
        let names: Vec<&str> = pattern.regex.capture_names().flatten().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(escaped) => literal.push(escaped),
                    None => return Err("ends with a lone \\".into()),
                },
                '$' => {
                    let group = if chars.peek() == Some(&'{') {
                        chars.next();
                        let mut name = String::new();
                        loop {
                            match chars.next() {
                                Some('}') => break,
                                Some(c) => name.push(c),
                                None => {
                                    return Err(format!("has ${{{name} without its closing }}"));
                                }
                            }
                        }
                        if !names.contains(&name.as_str()) {
                            return Err(format!(
                                "names the group {name}, which the regex does not have"
                            ));
                        }
                        Part::Named(name)
                    } else {
                        let Some(first) = chars.next_if(char::is_ascii_digit) else {
                            return Err("has a $ that is not followed by a group number or {name} (write \\$ for a dollar sign)".into());
                        };
                        let mut number = first as usize - '0' as usize;
                        if number > groups {
                            return Err(format!(
                                "names group {number}, and the regex has {groups}"
                            ));
                        }
                        // Java takes more digits while the number stays a group.
                        while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                            let longer = number * 10 + d as usize;
                            if longer > groups {
                                break;
                            }
                            number = longer;
                            chars.next();
                        }
                        Part::Group(number)
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(group);
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace(regex: &str, with: &str, text: &str) -> Option<String> {
        let p = Pattern::new(regex).unwrap();
        let r = Replacement::new(with, &p).unwrap();
        p.replace(text, &r)
    }

    #[test]
    fn debeziums_documented_routing_is_read_as_java_reads_it() {
        // ByLogicalTableRouter's example: shards of one table to one topic.
        assert_eq!(
            replace(
                "(.*)customers_shard(.*)",
                "$1customers_all_shards",
                "myserver.mydb.customers_shard1"
            )
            .as_deref(),
            Some("myserver.mydb.customers_all_shards")
        );
        assert_eq!(
            replace(
                "(.*)customers_shard(.*)",
                "$1customers_all_shards",
                "a.b.orders"
            ),
            None
        );
        // The key field's example: the shard's number.
        assert_eq!(
            replace(
                "(.*)customers_shard(.*)",
                "$2",
                "myserver.mydb.customers_shard3"
            )
            .as_deref(),
            Some("3")
        );
    }

    #[test]
    fn the_pattern_matches_the_whole_name() {
        assert_eq!(replace("orders", "x", "retail.public.orders"), None);
        assert_eq!(replace("a|b", "x", "ab"), None);
        assert_eq!(replace("a|b", "x", "b").as_deref(), Some("x"));
    }

    #[test]
    fn group_numbers_escapes_and_names_follow_java() {
        // One group: `$12` is group 1 and a 2.
        assert_eq!(replace("(a)", "$12", "a").as_deref(), Some("a2"));
        let twelve = "(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)";
        assert_eq!(replace(twelve, "$12", "abcdefghijkl").as_deref(), Some("l"));
        assert_eq!(replace("(a)", "\\$1", "a").as_deref(), Some("$1"));
        assert_eq!(
            replace("(?P<shard>\\d+)", "s${shard}", "7").as_deref(),
            Some("s7")
        );
        let p = Pattern::new("(a)").unwrap();
        assert!(Replacement::new("$2", &p).unwrap_err().contains("has 1"));
        assert!(
            Replacement::new("${x}", &p)
                .unwrap_err()
                .contains("group x")
        );
        assert!(Replacement::new("cost $", &p).unwrap_err().contains("\\$"));
        let named = Pattern::new("(?P<shard>\\d+)").unwrap();
        assert!(
            Replacement::new("${shard", &named)
                .unwrap_err()
                .contains("closing")
        );
        assert!(
            Pattern::new("(")
                .unwrap_err()
                .contains("regular expression")
        );
    }
}
