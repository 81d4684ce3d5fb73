//! The headers a request carries on its way to an instance.
//!
//! Owns the rewriting of a client's headers into an instance's: hop-by-hop headers dropped
//! (RFC 9110 §7.6.1; they describe the client's connection, not the request), the client named in
//! `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and RFC 7239 `Forwarded`
//! (appended to what earlier proxies wrote), and `Host` set as the route says. An upgrade
//! (WebSocket) keeps its `Upgrade` and `Connection: upgrade`, which are hop-by-hop but must
//! reach the instance for the handshake to happen.

use crate::route::HostHeader;
use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};
use std::net::IpAddr;

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection and are never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The client of one connection, with the forwarding values that name it rendered once.
///
/// Every request on a keep-alive connection comes from the same address over the same
/// protocol, so `X-Forwarded-For`'s value and the start of `Forwarded` are built when the
/// connection is accepted rather than formatted again for each request (the address's text
/// form was a visible share of the gateway's per-request CPU: docs/BENCHMARKS.md).
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's address.
    pub ip: IpAddr,
    /// `http` or `https`: how the client reached the gateway.
    pub proto: &'static str,
    /// The address as `X-Forwarded-For` names it.
    for_header: HeaderValue,
    /// `for=<node>;proto=<proto>`: the `Forwarded` element without the host.
    forwarded: String,
}

impl Client {
    /// The client at `ip`, connected over `proto` (`http` or `https`).
    pub fn new(ip: IpAddr, proto: &'static str) -> Self {
        let text = ip.to_string();
        let forwarded = format!("for={};proto={proto}", forwarded_node(ip));
        Self {
            ip,
            proto,
            // An IP address's text is always a valid header value.
            for_header: HeaderValue::from_str(&text)
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            forwarded,
        }
    }
}

/// Whether the request asks to switch protocols (`Connection: upgrade` and an `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Rewrites the client's `headers` in place for forwarding (everything but `Host`, which
/// depends on the instance: see [`host`]). `host` is the host the client asked for (`Host`, or
/// the HTTP/2 authority).
pub fn prepare(headers: &mut HeaderMap, client: &Client, host: Option<&str>) {
    let upgrade = is_upgrade(headers);
    if headers.contains_key(header::CONNECTION) {
        // Headers the client named in `Connection` are hop-by-hop too.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .filter(|name| !(upgrade && name == header::UPGRADE))
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }

    if headers.contains_key(&X_FORWARDED_FOR) {
        append(
            headers,
            X_FORWARDED_FOR,
            client.for_header.to_str().unwrap_or_default(),
        );
    } else {
        headers.insert(X_FORWARDED_FOR, client.for_header.clone());
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(client.proto));
    if let Some(host) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(X_FORWARDED_HOST, host);
    }
    match host.filter(|h| is_token_safe(h)) {
        Some(host) => {
            let mut forwarded = String::with_capacity(client.forwarded.len() + 6 + host.len());
            forwarded.push_str(&client.forwarded);
            forwarded.push_str(";host=");
            forwarded.push_str(host);
            append(headers, header::FORWARDED, &forwarded);
        }
        None => append(headers, header::FORWARDED, &client.forwarded),
    }
}

/// The `Host` the instance at `destination` (`address:port`) is sent: the client's, the
/// destination's, or a fixed name, as the route says; the destination when the client sent none.
pub fn host(
    host_header: &HostHeader,
    client_host: Option<&str>,
    destination: &str,
) -> Option<HeaderValue> {
    let host = match host_header {
        HostHeader::Incoming => client_host.unwrap_or(destination),
        HostHeader::Destination => destination,
        HostHeader::Fixed(name) => name.as_str(),
    };
    HeaderValue::from_str(host)
        .ok()
        .or_else(|| HeaderValue::from_str(destination).ok())
}

/// Appends `value` to a comma-separated header, keeping what earlier proxies wrote.
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let combined = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(earlier) if !earlier.trim().is_empty() => format!("{earlier}, {value}"),
        _ => value.to_owned(),
    };
    if let Ok(combined) = HeaderValue::from_str(&combined) {
        headers.insert(name, combined);
    }
}

/// A `Forwarded` node: IPv6 addresses are bracketed and quoted (RFC 7239 §6).
fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// Whether a host can stand unquoted in `Forwarded` (a token, or host:port).
fn is_token_safe(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new("192.0.2.7".parse().expect("ip"), "http")
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_and_forwarding_headers_added() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.1"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        prepare(&mut headers, &client(), Some("shop.example"));
        for gone in ["connection", "x-secret", "keep-alive", "te"] {
            assert!(!headers.contains_key(gone), "{gone} must not be forwarded");
        }
        assert_eq!(headers["x-kept"], "yes");
        assert_eq!(headers[X_FORWARDED_FOR], "198.51.100.1, 192.0.2.7");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_HOST], "shop.example");
        assert_eq!(
            headers[header::FORWARDED],
            "for=192.0.2.7;proto=http;host=shop.example"
        );
    }

    #[test]
    fn a_first_proxy_names_the_client_alone() {
        let mut headers = HeaderMap::new();
        prepare(&mut headers, &client(), None);
        assert_eq!(headers[X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(headers[header::FORWARDED], "for=192.0.2.7;proto=http");
        assert!(!headers.contains_key(X_FORWARDED_HOST));
        // The same connection's next request gets the same values.
        let mut next = HeaderMap::new();
        prepare(&mut next, &client(), Some("a.example"));
        assert_eq!(next[X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(
            next[header::FORWARDED],
            "for=192.0.2.7;proto=http;host=a.example"
        );
    }

    #[test]
    fn host_follows_the_route() {
        let dst = "10.0.0.1:80";
        assert_eq!(
            host(&HostHeader::Incoming, Some("a"), dst),
            Some(HeaderValue::from_static("a"))
        );
        assert_eq!(
            host(&HostHeader::Incoming, None, dst),
            Some(HeaderValue::from_static(dst))
        );
        assert_eq!(
            host(&HostHeader::Destination, Some("a"), dst),
            Some(HeaderValue::from_static(dst))
        );
        let fixed = HostHeader::Fixed("internal".into());
        assert_eq!(
            host(&fixed, Some("a"), dst),
            Some(HeaderValue::from_static("internal"))
        );
    }

    #[test]
    fn upgrades_keep_their_handshake_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&headers));
        prepare(&mut headers, &client(), None);
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");

        let mut plain = HeaderMap::new();
        plain.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!is_upgrade(&plain), "Upgrade without Connection: upgrade");
        prepare(&mut plain, &client(), None);
        assert!(!plain.contains_key(header::UPGRADE));
    }

    #[test]
    fn ipv6_clients_are_quoted_in_forwarded() {
        let mut headers = HeaderMap::new();
        let client = Client::new("::1".parse().expect("ip"), "https");
        prepare(&mut headers, &client, Some("bad host\""));
        assert_eq!(headers[header::FORWARDED], "for=\"[::1]\";proto=https");
    }
}
