//! A receiver's answer quoted without the sink's own header values, in
//! any form an echo may give them.

/// An answer's excerpt without the values of the sink's own headers
/// (credentials), which a receiver that echoes its request would quote:
/// each value, as sent or as an echo may encode it (JSON-escaped,
/// percent-encoded, base64, the credential after its scheme), and a start
/// of one that the excerpt is cut in, becomes `***`.
pub(super) fn redacted(excerpt: &str, headers: &[(String, crate::config::Secret)]) -> String {
    let mut out = excerpt.to_owned();
    for (_, value) in headers {
        for form in echoed_forms(value.expose()) {
            out = out.replace(&form, "***");
            // Cut off inside the value: its start ends the excerpt.
            for cut in (4..form.len()).rev() {
                if form.is_char_boundary(cut) && out.ends_with(&form[..cut]) {
                    out.truncate(out.len() - cut);
                    out.push_str("***");
                    break;
                }
            }
        }
    }
    out
}

/// The forms in which an answer may quote a header's value, longest
/// first, each of at least 4 bytes.
pub(super) fn echoed_forms(value: &str) -> Vec<String> {
    use base64::Engine as _;
    let mut plain = vec![value.to_owned()];
    // `Bearer <token>`, `Basic <credentials>`: the credential alone.
    if let Some((_, credential)) = value.split_once(' ') {
        plain.push(credential.trim().to_owned());
    }
    let mut forms = Vec::new();
    for v in plain {
        let json = serde_json::to_string(&v).unwrap_or_default();
        let json = json.trim_matches('"').to_owned();
        forms.push(json.replace('/', "\\/"));
        forms.push(json);
        forms.push(percent_encoded(&v, true));
        forms.push(percent_encoded(&v, false));
        forms.push(base64::engine::general_purpose::STANDARD.encode(&v));
        forms.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&v));
        forms.push(v);
    }
    forms.retain(|f| f.len() >= 4);
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
}

/// `value` with every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`)
/// as `%XX`, in upper or lower case hex.
pub(super) fn percent_encoded(value: &str, upper: bool) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}
