//! Each connector's keys in one table: name, type, default and meaning.
//!
//! The table drives the [`super::ConfigReader`]: which keys exist, a key's
//! default, its other names, which keys are accepted and ignored, and what
//! an unknown key was likely meant to be. The key tables in
//! docs/configuration.md are made from it, and a test holds them to it.

/// The type of value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (numbers and booleans are taken as their text).
    Text,
    /// A string kept as a [`super::Secret`].
    Secret,
    /// A non-negative integer.
    Integer,
    /// `true` or `false`.
    Flag,
    /// A YAML list, or one comma-separated string.
    List,
    /// A map of names to strings.
    Map,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Secret => "secret",
            Self::Integer => "integer",
            Self::Flag => "boolean",
            Self::List => "list",
            Self::Map => "map",
        }
    }
}

/// What a key is when it is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// It must be set.
    Required,
    /// Nothing: the feature it configures is off.
    Nothing,
    /// This integer.
    Int(u64),
    /// This boolean.
    Flag(bool),
    /// This text.
    Text(&'static str),
    /// What these words say (a default that depends on other keys).
    Said(&'static str),
}

/// What a key is to the connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A setting it reads.
    Setting,
    /// A setting it reads, whose own keys are `<name>.<anything>`, read
    /// by the code that handles it (`transforms`).
    Nested,
    /// Another name of the setting named (Debezium 1.x's names): either
    /// may be set, not both.
    OldNameOf(&'static str),
    /// A key other implementations of the connector take, meaningless
    /// here: accepted with a warning that gives this reason.
    Ignored(&'static str),
}

/// One key of a connector's `configs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key as written in `configs`.
    pub name: &'static str,
    /// The type of its value.
    pub kind: Kind,
    /// Its value when not set.
    pub unset: Unset,
    /// What it does, for the docs.
    pub doc: &'static str,
    /// What it is to the connector.
    pub role: Role,
}

impl Key {
    /// A setting.
    pub const fn new(name: &'static str, kind: Kind, unset: Unset, doc: &'static str) -> Self {
        Self {
            name,
            kind,
            unset,
            doc,
            role: Role::Setting,
        }
    }

    /// This setting, with keys of its own under `<name>.`.
    pub const fn nested(self) -> Self {
        Self {
            role: Role::Nested,
            ..self
        }
    }

    /// `name`, another name of the setting `of`.
    pub const fn old_name(name: &'static str, of: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Text,
            unset: Unset::Nothing,
            doc: "",
            role: Role::OldNameOf(of),
        }
    }

    /// `name`, accepted and ignored with a warning that says `why`.
    pub const fn ignored(name: &'static str, why: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Text,
            unset: Unset::Nothing,
            doc: "",
            role: Role::Ignored(why),
        }
    }
}

/// The entry of `keys` that declares `name`: its own, or a nested setting
/// it falls under.
pub(super) fn find<'k>(keys: &'k [Key], name: &str) -> Option<&'k Key> {
    keys.iter().find(|k| k.name == name).or_else(|| {
        keys.iter().find(|k| {
            k.role == Role::Nested
                && name
                    .strip_prefix(k.name)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    })
}

/// The key of `keys` that `name` was most likely meant to be; see
/// [`nearest_name`]. Ignored keys are not offered, and an old name is
/// offered as its current one.
pub(super) fn nearest(keys: &[Key], name: &str) -> Option<&'static str> {
    let near = nearest_name(
        name,
        keys.iter()
            .filter(|k| !matches!(k.role, Role::Ignored(_)))
            .map(|k| k.name),
    )?;
    match keys.iter().find(|k| k.name == near).map(|k| k.role) {
        Some(Role::OldNameOf(current)) => Some(current),
        _ => Some(near),
    }
}

/// The one of `names` that `name` was most likely meant to be: the same
/// but for case, a few letters off, or one that `name` is the last part
/// of (`port` for `database.port`).
pub fn nearest_name<'n>(name: &str, names: impl IntoIterator<Item = &'n str>) -> Option<&'n str> {
    let wanted = name.to_ascii_lowercase();
    let mut best: Option<(usize, &'n str)> = None;
    for candidate in names {
        let have = candidate.to_ascii_lowercase();
        let distance = if have.ends_with(&format!(".{wanted}")) {
            1
        } else {
            edit_distance(&wanted, &have)
        };
        if distance <= (have.len() / 4).max(1) && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, name)| name)
}

/// The error for a key that no entry of `keys` declares.
pub fn unknown(keys: &[Key], name: &str, of: &str) -> String {
    match nearest(keys, name) {
        Some(near) => format!("is not a setting of {of}: did you mean {near}?"),
        None => format!("is not a setting of {of} (docs/configuration.md lists its keys)"),
    }
}

/// Edits (insertions, deletions, substitutions, swaps of neighbours) that
/// turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// The table of `keys` in Markdown, as docs/configuration.md shows it:
/// each key under `prefix`, its type, default and meaning; then its other
/// names, and the keys it ignores.
pub fn markdown(keys: &[Key], prefix: &str) -> String {
    let mut out = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
    for key in keys
        .iter()
        .filter(|k| matches!(k.role, Role::Setting | Role::Nested))
    {
        let unset = match key.unset {
            Unset::Required => "required".to_owned(),
            Unset::Nothing => "none".to_owned(),
            Unset::Int(n) => format!("`{n}`"),
            Unset::Flag(b) => format!("`{b}`"),
            Unset::Text(t) => format!("`{t}`"),
            Unset::Said(words) => words.to_owned(),
        };
        out.push_str(&format!(
            "| `{prefix}{}` | {} | {unset} | {} |\n",
            key.name,
            key.kind.name(),
            key.doc
        ));
    }
    let old: Vec<String> = keys
        .iter()
        .filter_map(|k| match k.role {
            Role::OldNameOf(of) => Some(format!("`{prefix}{}` for `{prefix}{of}`", k.name)),
            _ => None,
        })
        .collect();
    if !old.is_empty() {
        out.push_str(&format!(
            "\nOther names, taken too (not both names of one key): {}.\n",
            old.join(", ")
        ));
    }
    let mut reasons: Vec<&str> = Vec::new();
    for key in keys {
        if let Role::Ignored(why) = key.role
            && !reasons.contains(&why)
        {
            reasons.push(why);
        }
    }
    for why in reasons {
        let names: Vec<String> = keys
            .iter()
            .filter(|k| k.role == Role::Ignored(why))
            .map(|k| format!("`{prefix}{}`", k.name))
            .collect();
        out.push_str(&format!(
            "\nAccepted and ignored, with a warning ({why}): {}.\n",
            names.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[Key] = &[
        Key::new("database.port", Kind::Integer, Unset::Int(5432), "the port"),
        Key::new("database.hostname", Kind::Text, Unset::Required, "the host"),
        Key::new("batchSize", Kind::Integer, Unset::Int(1), "records"),
        Key::new("transforms", Kind::List, Unset::Nothing, "aliases").nested(),
        Key::old_name("table.whitelist", "table.include.list"),
        Key::ignored("key.converter", "sluice writes JSON"),
    ];

    #[test]
    fn a_misspelt_key_names_the_one_meant() {
        assert_eq!(nearest(KEYS, "databse.port"), Some("database.port"));
        assert_eq!(nearest(KEYS, "database.prot"), Some("database.port"));
        assert_eq!(nearest(KEYS, "batchsize"), Some("batchSize"));
        assert_eq!(nearest(KEYS, "hostname"), Some("database.hostname"));
        assert_eq!(nearest(KEYS, "table.whitelst"), Some("table.include.list"));
        assert_eq!(nearest(KEYS, "slot.name"), None);
        assert_eq!(
            nearest(KEYS, "key.converters"),
            None,
            "ignored keys are not offered"
        );
        assert_eq!(
            unknown(KEYS, "databse.port", "postgres-cdc"),
            "is not a setting of postgres-cdc: did you mean database.port?"
        );
    }

    #[test]
    fn nested_settings_declare_their_own_keys() {
        assert_eq!(
            find(KEYS, "transforms.unwrap.type").map(|k| k.name),
            Some("transforms")
        );
        assert_eq!(find(KEYS, "transformsx"), None);
        assert_eq!(
            find(KEYS, "database.port").map(|k| k.unset),
            Some(Unset::Int(5432))
        );
    }

    #[test]
    fn the_markdown_lists_settings_then_other_names_then_ignored_keys() {
        let text = markdown(&KEYS[..1], "");
        assert_eq!(
            text,
            "| key | type | default | meaning |\n|---|---|---|---|\n| `database.port` | integer | `5432` | the port |\n"
        );
        let text = markdown(KEYS, "");
        assert!(text.contains("\nOther names, taken too (not both names of one key): `table.whitelist` for `table.include.list`.\n"));
        assert!(text.ends_with(
            "\nAccepted and ignored, with a warning (sluice writes JSON): `key.converter`.\n"
        ));
    }
}
