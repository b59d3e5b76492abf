//! The `Authorization` credentials of a redemption, read as RFC 9110 §11 defines them, so that
//! every conforming client is understood — not only the `privacypass` crate's own form.
//!
//! ```text
//! credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param  = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! RFC 9577 §2.2.2: the `PrivateToken` scheme has one parameter, `token`, the base64url Token
//! (with padding), "either a token or a quoted-string" — its own example is quoted — and
//! "all unknown or unsupported parameters … MUST be ignored". Scheme and parameter names are
//! case-insensitive (RFC 9110 §11.1, §11.2); list elements may be empty (§5.6.1). Only the
//! decoded Token bytes go on to the `privacypass` crate.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

/// Why the credentials carry no usable `PrivateToken`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Not `PrivateToken` credentials (another scheme, or no scheme).
    #[error("the credentials are not of the PrivateToken scheme")]
    OtherScheme,
    /// The auth-params do not follow RFC 9110 §11.2.
    #[error("the credentials' parameters are malformed: {0}")]
    Syntax(&'static str),
    /// No `token` parameter.
    #[error("the credentials have no token parameter")]
    NoToken,
    /// `token` given more than once (RFC 9110 §11.2: a parameter name occurs once).
    #[error("the token parameter is given more than once")]
    DuplicateToken,
    /// The `token` value is not base64url.
    #[error("the token is not base64url")]
    NotBase64,
}

/// The decoded Token of `PrivateToken` credentials.
pub fn private_token(value: &[u8]) -> Result<Vec<u8>, CredentialsError> {
    let text = std::str::from_utf8(value).map_err(|_| CredentialsError::Syntax("not text"))?;
    let text = text.trim_matches(is_ows);
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("PrivateToken") {
        return Err(CredentialsError::OtherScheme);
    }
    let mut token = None;
    for (name, value) in params(rest.trim_start_matches(' '))? {
        if name.eq_ignore_ascii_case("token") && token.replace(value).is_some() {
            return Err(CredentialsError::DuplicateToken);
        }
    }
    let token = token.ok_or(CredentialsError::NoToken)?;
    // RFC 9577 asks for padding; a client that leaves it out is still understood.
    URL_SAFE
        .decode(&token)
        .or_else(|_| URL_SAFE_NO_PAD.decode(&token))
        .map_err(|_| CredentialsError::NotBase64)
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// The `#auth-param` list: `(name, unquoted value)` pairs.
fn params(input: &str) -> Result<Vec<(String, String)>, CredentialsError> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ows = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        // Empty list elements (`, ,`) are allowed.
        skip_ows(&mut i);
        while i < bytes.len() && bytes[i] == b',' {
            i += 1;
            skip_ows(&mut i);
        }
        if i == bytes.len() {
            return Ok(out);
        }
        let start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        if i == start {
            return Err(CredentialsError::Syntax("a parameter name is not a token"));
        }
        let name = input[start..i].to_owned();
        skip_ows(&mut i);
        if bytes.get(i) != Some(&b'=') {
            return Err(CredentialsError::Syntax("a parameter has no `=`"));
        }
        i += 1;
        skip_ows(&mut i);
        let value = if bytes.get(i) == Some(&b'"') {
            quoted(bytes, &mut i)?
        } else {
            // A token; `=` is accepted too, for base64 padding sent unquoted (the form the
            // `privacypass` crate itself writes).
            let start = i;
            while i < bytes.len() && (is_tchar(bytes[i]) || bytes[i] == b'=') {
                i += 1;
            }
            if i == start {
                return Err(CredentialsError::Syntax("a parameter has no value"));
            }
            input[start..i].to_owned()
        };
        out.push((name, value));
        skip_ows(&mut i);
        match bytes.get(i) {
            None => return Ok(out),
            Some(b',') => i += 1,
            Some(_) => {
                return Err(CredentialsError::Syntax(
                    "parameters are not comma-separated",
                ));
            }
        }
    }
}

/// A quoted-string starting at `bytes[*i] == '"'`, unescaped (RFC 9110 §5.6.4).
fn quoted(bytes: &[u8], i: &mut usize) -> Result<String, CredentialsError> {
    let mut out = Vec::new();
    *i += 1;
    loop {
        match bytes.get(*i) {
            None => return Err(CredentialsError::Syntax("an unterminated quoted-string")),
            Some(b'"') => {
                *i += 1;
                return String::from_utf8(out)
                    .map_err(|_| CredentialsError::Syntax("a quoted-string is not text"));
            }
            Some(b'\\') => {
                // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                match bytes.get(*i + 1) {
                    Some(&c) if c == b'\t' || c >= 0x20 && c != 0x7f => out.push(c),
                    _ => return Err(CredentialsError::Syntax("a bad quoted-pair")),
                }
                *i += 2;
            }
            // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
            Some(&c) if c == b'\t' || (c >= 0x20 && c != 0x7f) => {
                out.push(c);
                *i += 1;
            }
            Some(_) => {
                return Err(CredentialsError::Syntax(
                    "a control character in a quoted-string",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 354-byte type-0x0002 Token, padded base64url (354 = 3 × 118: no padding needed), and
    /// one whose length needs padding.
    fn encoded(len: usize) -> (Vec<u8>, String) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let text = URL_SAFE.encode(&bytes);
        (bytes, text)
    }

    #[test]
    fn the_rfc_9577_example_form_is_read_quoted_or_not() {
        let (bytes, text) = encoded(354);
        // RFC 9577 §2.2.2's example: `Authorization: PrivateToken token="abc..."`.
        for header in [
            format!("PrivateToken token=\"{text}\""),
            format!("PrivateToken token={text}"),
            format!("privatetoken TOKEN = \"{text}\""),
            format!("PrivateToken  token=\"{text}\"  "),
        ] {
            assert_eq!(
                private_token(header.as_bytes()),
                Ok(bytes.clone()),
                "{header}"
            );
        }
    }

    #[test]
    fn padding_may_be_quoted_unquoted_or_absent() {
        let (bytes, text) = encoded(355);
        assert!(text.ends_with('='), "{text}");
        let bare = text.trim_end_matches('=');
        for header in [
            format!("PrivateToken token=\"{text}\""),
            format!("PrivateToken token={text}"),
            format!("PrivateToken token={bare}"),
        ] {
            assert_eq!(
                private_token(header.as_bytes()),
                Ok(bytes.clone()),
                "{header}"
            );
        }
    }

    #[test]
    fn unknown_parameters_and_empty_elements_are_ignored() {
        let (bytes, text) = encoded(354);
        for header in [
            format!("PrivateToken token={text}, ext=abc"),
            format!("PrivateToken ext=abc, token=\"{text}\""),
            format!("PrivateToken , token=\"{text}\" ,, ext=\"a \\\"b\\\" c\","),
            format!("PrivateToken token=\"{text}\",ext=\"\""),
        ] {
            assert_eq!(
                private_token(header.as_bytes()),
                Ok(bytes.clone()),
                "{header}"
            );
        }
    }

    #[test]
    fn escapes_inside_a_quoted_token_are_undone() {
        let (bytes, text) = encoded(354);
        let escaped: String = text.chars().flat_map(|c| ['\\', c]).collect();
        let header = format!("PrivateToken token=\"{escaped}\"");
        assert_eq!(private_token(header.as_bytes()), Ok(bytes));
    }

    #[test]
    fn every_malformation_is_named() {
        let (_, text) = encoded(354);
        let cases: Vec<(String, CredentialsError)> = vec![
            (
                format!("Bearer token={text}"),
                CredentialsError::OtherScheme,
            ),
            (String::new(), CredentialsError::OtherScheme),
            ("PrivateToken".into(), CredentialsError::NoToken),
            ("PrivateToken ext=1".into(), CredentialsError::NoToken),
            (
                format!("PrivateToken token={text}, token={text}"),
                CredentialsError::DuplicateToken,
            ),
            (
                "PrivateToken token=\"abc".into(),
                CredentialsError::Syntax("an unterminated quoted-string"),
            ),
            (
                "PrivateToken token".into(),
                CredentialsError::Syntax("a parameter has no `=`"),
            ),
            (
                "PrivateToken token=".into(),
                CredentialsError::Syntax("a parameter has no value"),
            ),
            (
                "PrivateToken token=a b".into(),
                CredentialsError::Syntax("parameters are not comma-separated"),
            ),
            (
                "PrivateToken =a".into(),
                CredentialsError::Syntax("a parameter name is not a token"),
            ),
            (
                "PrivateToken token=\"a\u{1}\"".into(),
                CredentialsError::Syntax("a control character in a quoted-string"),
            ),
            (
                "PrivateToken token=\"!!\"".into(),
                CredentialsError::NotBase64,
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(
                private_token(header.as_bytes()),
                Err(expected),
                "{header:?}"
            );
        }
        assert_eq!(
            private_token(b"PrivateToken token=\"\xff\""),
            Err(CredentialsError::Syntax("not text"))
        );
    }
}
