//! The HTTP request signature that the `http` sink sends and the `http`
//! source checks, an HMAC-SHA256 under a shared secret in one header:
//!
//! - `t=<unix seconds>,v2=<hex>`, the default, over
//!   `"<t>\n<METHOD>\n<path>\n<content type>\n<idempotency key>\n<body>"`:
//!   the request's method, its path with the query (which names the topic
//!   at the source), its `Content-Type` and its idempotency key header
//!   (each empty when it has none) and its body;
//! - `t=<unix seconds>,v1=<hex>`, the older form, over `"<t>.<body>"`
//!   only, taken or sent only when `signatureVersion: v1` says so: a
//!   request signed so can be replayed to another path or as another
//!   content type while its time is within tolerance.
//!
//! The receiver recomputes it over what it received and compares in
//! constant time; the time lets it refuse old requests replayed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Which form of signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Over the time and the body only.
    V1,
    /// Over the time, method, path, content type, idempotency key and
    /// body.
    V2,
}

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The path and query, as in the request line.
    pub path: &'a str,
    /// The `Content-Type` header's value; empty when absent.
    pub content_type: &'a str,
    /// The idempotency key header's value; empty when absent. Covered so
    /// that a captured request cannot be replayed under a new key.
    pub idempotency_key: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// The signature header's value for `request`, sent at `unix_seconds`.
pub fn sign(secret: &[u8], version: Version, unix_seconds: u64, request: &Signed<'_>) -> String {
    let tag = match version {
        Version::V1 => "v1",
        Version::V2 => "v2",
    };
    format!(
        "t={unix_seconds},{tag}={}",
        hex(&mac(secret, version, unix_seconds, request))
    )
}

/// The time a signature `header` carries, when it is a valid signature of
/// `request` under `secret` in a form `accept_v1` allows: v2 always, v1
/// only when it says so.
pub fn verify(secret: &[u8], header: &str, request: &Signed<'_>, accept_v1: bool) -> Option<u64> {
    let mut t = None;
    let (mut v1, mut v2) = (None, None);
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = unhex(v),
            Some(("v2", v)) => v2 = unhex(v),
            _ => {}
        }
    }
    let t = t?;
    let (version, given) = match (v2, v1) {
        (Some(v2), _) => (Version::V2, v2),
        (None, Some(v1)) if accept_v1 => (Version::V1, v1),
        _ => return None,
    };
    let mut m = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    feed(&mut m, version, t, request);
    m.verify_slice(&given).ok().map(|()| t)
}

fn feed(m: &mut Hmac<Sha256>, version: Version, t: u64, request: &Signed<'_>) {
    match version {
        Version::V1 => m.update(format!("{t}.").as_bytes()),
        Version::V2 => m.update(
            format!(
                "{t}\n{}\n{}\n{}\n{}\n",
                request.method, request.path, request.content_type, request.idempotency_key
            )
            .as_bytes(),
        ),
    }
    m.update(request.body);
}

fn mac(secret: &[u8], version: Version, unix_seconds: u64, request: &Signed<'_>) -> Vec<u8> {
    // HMAC takes a key of any length.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret) else {
        return Vec::new();
    };
    feed(&mut m, version, unix_seconds, request);
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(path: &'a str, content_type: &'a str, body: &'a [u8]) -> Signed<'a> {
        Signed {
            method: "POST",
            path,
            content_type,
            idempotency_key: "order-1",
            body,
        }
    }

    #[test]
    fn a_signature_verifies_and_a_changed_request_does_not() {
        let secret = b"0123456789abcdef-secret";
        let signed = request("/topics/orders", "application/json", b"{\"id\":1}");
        let header = sign(secret, Version::V2, 1_700_000_000, &signed);
        assert!(header.starts_with("t=1700000000,v2="));
        assert_eq!(header.len(), "t=1700000000,v2=".len() + 64);
        assert_eq!(verify(secret, &header, &signed, false), Some(1_700_000_000));
        for changed in [
            request("/topics/orders", "application/json", b"{\"id\":2}"),
            request("/topics/payments", "application/json", b"{\"id\":1}"),
            request("/topics/orders", "text/plain", b"{\"id\":1}"),
            Signed {
                method: "PUT",
                ..signed
            },
            Signed {
                idempotency_key: "order-2",
                ..signed
            },
        ] {
            assert_eq!(verify(secret, &header, &changed, true), None, "{changed:?}");
        }
        assert_eq!(verify(b"another secret!!", &header, &signed, false), None);
        assert_eq!(verify(secret, "t=1,v2=zz", &signed, false), None);
    }

    #[test]
    fn the_older_form_covers_the_body_only_and_is_taken_only_when_asked() {
        let secret = b"0123456789abcdef-secret";
        let signed = request("/", "application/json", b"{\"id\":1}");
        let header = sign(secret, Version::V1, 1_700_000_000, &signed);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify(secret, &header, &signed, false), None, "not asked");
        assert_eq!(verify(secret, &header, &signed, true), Some(1_700_000_000));
        let elsewhere = request("/topics/payments", "text/plain", b"{\"id\":1}");
        assert_eq!(
            verify(secret, &header, &elsewhere, true),
            Some(1_700_000_000)
        );
        // The MAC itself, against RFC 4231's test case 2.
        let mut m = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
