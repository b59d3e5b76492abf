//! Media types every server of the project answers with, beside the specific ones of the way
//! in ([`crate::access`]) and the log ([`crate::tlog`]).

/// JSON bodies (directories, evidence, the workloads' requests and answers).
pub const JSON: &str = "application/json";
/// Plain text (health answers, the witness's cosignature lines).
pub const TEXT: &str = "text/plain";
/// Opaque bytes.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The essence of a `Content-Type` value (`application/json; charset=utf-8` →
/// `application/json`), for comparing media types (RFC 9110 §8.3.1: case-insensitive).
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Whether `content_type` names the media type `media`.
pub fn is(content_type: &str, media: &str) -> bool {
    essence(content_type).eq_ignore_ascii_case(media)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_and_case_do_not_change_the_type() {
        assert!(is("Application/JSON; charset=utf-8", JSON));
        assert!(!is("application/jsonx", JSON));
        assert_eq!(essence(" text/plain ;q=1"), "text/plain");
    }
}
