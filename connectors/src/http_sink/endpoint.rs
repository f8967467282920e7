//! Where the sink sends: an `http` or `https` URL taken apart into what a
//! connection and a request need.

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// True for `https`.
    pub tls: bool,
    /// The host name or address, without brackets for IPv6.
    pub host: String,
    /// The port, the scheme's default when the URL has none.
    pub port: u16,
    /// The path and query, `/` at least.
    pub path: String,
    /// The `Host` header: the host, and the port when it is not the default.
    pub authority: String,
}

impl Endpoint {
    /// Parse `url`. User information (`user:password@`) is refused: a
    /// credential goes in `headers`, where it is kept as a secret.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("\"{url}\" is not an http or https URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let path = path.split('#').next().unwrap_or("/").to_owned();
        if authority.contains('@') {
            return Err("the URL carries a user or password: put credentials in headers".into());
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("\"{url}\" has an unclosed IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p, url)?,
                None if after.is_empty() => default_port,
                None => return Err(format!("\"{url}\" is not a valid URL")),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, p)) => (host.to_owned(), parse_port(p, url)?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty()
            || path
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!("\"{url}\" is not a valid URL"));
        }
        let shown = if authority.starts_with('[') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let authority = if port == default_port {
            shown
        } else {
            format!("{shown}:{port}")
        };
        Ok(Self {
            tls,
            host,
            port,
            path,
            authority,
        })
    }
}

fn parse_port(text: &str, url: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("\"{url}\" has no valid port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_come_apart() {
        let e = Endpoint::parse("http://127.0.0.1:8080/hook").unwrap();
        assert_eq!((e.tls, e.host.as_str(), e.port), (false, "127.0.0.1", 8080));
        assert_eq!(
            (e.path.as_str(), e.authority.as_str()),
            ("/hook", "127.0.0.1:8080")
        );
        let e = Endpoint::parse("https://example.com").unwrap();
        assert_eq!(
            (e.port, e.path.as_str(), e.authority.as_str()),
            (443, "/", "example.com")
        );
        let e = Endpoint::parse("https://[::1]:9443?a=b#frag").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9443));
        assert_eq!(
            (e.path.as_str(), e.authority.as_str()),
            ("/?a=b", "[::1]:9443")
        );
        for bad in [
            "ftp://x/",
            "http://user:pw@x/",
            "http://x:0/",
            "http://x:99999/",
            "http:///path",
            "http://x/a b",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
