//! Where the relay and the issuer are: `https://HOST[:PORT][/PREFIX]` (or `http://`, for a
//! loopback test or a TLS-originating proxy in front of the driver), parsed strictly (no user
//! information, query or fragment), and the media type of a `Content-Type` value.

use std::str::FromStr;

use crate::error::ClientError;

/// A base URL, `https://HOST[:PORT][/PREFIX]` or `http://…`: where the relay or the issuer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    tls: bool,
    host: String,
    port: u16,
    host_header: String,
    prefix: String,
}

impl FromStr for BaseUrl {
    type Err = ClientError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ClientError::Url {
            url: url.chars().take(100).collect(),
            reason,
        };
        let (tls, rest) = if url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        {
            (true, &url[8..])
        } else if url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        {
            (false, &url[7..])
        } else {
            return Err(bad("expected https://HOST[:PORT][/PREFIX] or http://…"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', ' ', '\t', '?', '#']) {
            return Err(bad("the host is missing or carries user information"));
        }
        if path.contains(['?', '#', ' ', '\t', '\r', '\n']) {
            return Err(bad("the path prefix has a query, fragment or whitespace"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) =
            split_host_port(authority, default_port).ok_or_else(|| bad("bad host or port"))?;
        Ok(BaseUrl {
            tls,
            host,
            port,
            host_header: authority.to_owned(),
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// `host[:port]` or `[v6][:port]`; `default` when absent.
fn split_host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => default,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header, self.prefix)
    }
}

impl BaseUrl {
    /// Whether the URL is `https://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host (without brackets for IPv6).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (443 or 80 when the URL gives none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `HOST[:PORT]` as given (the `Host` header).
    pub fn authority(&self) -> &str {
        &self.host_header
    }

    /// The request target for `path` (which starts with `/`) under this URL's prefix.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

/// The media type of a `Content-Type` value: lower-case, parameters dropped.
pub fn media_type(value: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(value).ok()?;
    let m = s.split(';').next().unwrap_or_default().trim();
    (!m.is_empty()).then(|| m.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_strictly() {
        let b: BaseUrl = "http://relay.example:8080/r/".parse().expect("valid");
        assert_eq!(b.authority(), "relay.example:8080");
        assert_eq!(b.join("/ohttp-keys"), "/r/ohttp-keys");
        assert_eq!(b.to_string(), "http://relay.example:8080/r");
        let b: BaseUrl = "http://[::1]:9".parse().expect("v6");
        assert_eq!((b.host.as_str(), b.port), ("::1", 9));
        assert_eq!(b.join("/"), "/");
        let b: BaseUrl = "HTTP://h".parse().expect("no port");
        assert_eq!((b.port, b.is_tls()), (80, false));
        let b: BaseUrl = "https://relay.example/r".parse().expect("https");
        assert_eq!((b.port, b.is_tls()), (443, true));
        assert_eq!(b.to_string(), "https://relay.example/r");
        for bad in [
            "ftp://x",
            "relay.example:80",
            "http://",
            "http://user@h:1",
            "http://h:0",
            "http://h:99999",
            "http://h:1/a?b",
            "http://[::1",
        ] {
            assert!(bad.parse::<BaseUrl>().is_err(), "{bad}");
        }
        let e = "ftp://x".parse::<BaseUrl>().expect_err("ftp");
        assert!(e.to_string().contains("https://"), "{e}");
    }

    #[test]
    fn media_types_drop_parameters() {
        assert_eq!(
            media_type(b"Application/JSON; charset=utf-8").as_deref(),
            Some("application/json")
        );
        assert_eq!(media_type(b"  "), None);
    }
}
