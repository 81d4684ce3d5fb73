//! One embedded file of the UI and how it is answered: its type, a validator so a browser
//! revalidates instead of downloading again, and headers that keep the page to its own origin.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Browsers must revalidate every time (a new agent version must show at once), and a
/// matching `If-None-Match` makes that a 304 with no body.
const CACHE_CONTROL: &str = "no-cache";

/// Everything the page loads comes from the agent itself: no CDN, no inline script (the
/// favicon is an inline `data:` SVG). Check output is shown as text, so this is a second line
/// of defence, not the first.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

/// A file compiled into the binary.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    /// A strong validator: the body's FNV-1a hash, computed at compile time.
    etag: u64,
}

impl Asset {
    /// Describes `body`, served as `content_type`.
    pub(super) const fn new(body: &'static [u8], content_type: &'static str) -> Self {
        Self {
            body,
            content_type,
            etag: fnv1a(body),
        }
    }

    /// The file, or 304 when the request's `If-None-Match` names this version.
    pub(super) fn serve(&self, request: &HeaderMap) -> Response {
        let etag = format!("\"{:016x}\"", self.etag);
        let fresh = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
            });
        let headers = [
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(CACHE_CONTROL),
            ),
            // Hex digits and quotes only, so this cannot fail; an empty value is the fallback.
            (
                header::ETAG,
                HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("")),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        (
            headers,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            )],
            self.body,
        )
            .into_response()
    }
}

/// 64-bit FNV-1a: tiny, `const`, and plenty to tell two versions of a file apart (a validator,
/// not a security boundary).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSET: Asset = Asset::new(b"body", "text/plain");

    fn etag_of(response: &Response) -> String {
        response.headers()[header::ETAG]
            .to_str()
            .expect("ASCII")
            .to_owned()
    }

    #[test]
    fn a_matching_if_none_match_is_answered_304_and_others_get_the_body() {
        let first = ASSET.serve(&HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let etag = etag_of(&first);

        let mut request = HeaderMap::new();
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"other\", W/{etag}")).expect("header"),
        );
        assert_eq!(ASSET.serve(&request).status(), StatusCode::NOT_MODIFIED);

        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(ASSET.serve(&request).status(), StatusCode::OK);
    }

    #[test]
    fn different_bodies_have_different_etags() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
