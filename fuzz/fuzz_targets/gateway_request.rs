//! The gateway's request handling up to the forwarding, from arbitrary text: a route table built
//! from `urlprefix-` tags, and an HTTP/1.1 request head matched against it.
//!
//! Input: tag lines, a blank line, then a request head (`GET /api/x HTTP/1.1`, header lines).
//! Without a blank line the whole input is the head and the tags are `DEFAULT_TAGS`. The tags go
//! on an instance of `web`; `api` (with its own tags) and `--gateway-service-routes` add claims
//! of other services, so conflicts are settled too. The head is parsed with httparse and built
//! into an `http::Request` with the checks hyper makes, then taken through the steps of
//! `Proxy::handle` that need no connection, using the same public functions it calls: the route
//! (`Routing::route`), the client check (`Access::permits`), the path rewrite (`Rewrite::apply`
//! into a `PathAndQuery`, as its `upstream_path`), the forwarding headers
//! (`forwarded::prepare`), a pick from the route's balancer, the instance's `Host`
//! (`forwarded::host`) and the upstream URI. Not covered: reading the body and the request on
//! the wire (`upstream.rs`), which need sockets; and `hash_key`, which is private (a consistent
//! hash pick here uses the client address).
#![no_main]

use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Request, Uri, header};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use std::net::IpAddr;
use wayfinder_balance::Pick;
use wayfinder_catalog::{Catalog, Command, Source};
use wayfinder_gateway::forwarded;
use wayfinder_gateway::{Routing, RoutingConfig};
use wayfinder_server::consul::request::ServiceBody;

/// The tags of `web` when the input gives none.
const DEFAULT_TAGS: &str = "urlprefix-/web strip=/web\nurlprefix-example.com/ host=dst\n\
                            urlprefix-/v2 prepend=/api/v2 strategy=consistent_hash";

/// Headers hyper lets through per request, as many as the proxy could see.
const MAX_HEADERS: usize = 64;

fn routing(web_tags: &str) -> Routing {
    let tags: Vec<&str> = web_tags.lines().collect();
    let bodies = [
        json!({"ID": "web-1", "Name": "web", "Address": "10.0.0.1", "Port": 8080, "Tags": tags}),
        json!({"ID": "web-2", "Name": "web", "Address": "2001:db8::2", "Port": 8080,
               "Tags": tags}),
        json!({"ID": "api-1", "Name": "api", "Port": 9090,
               "Tags": ["urlprefix-/api strip=/api", "urlprefix-/web/admin allow=127.0.0.0/8"]}),
    ];
    let mut catalog = Catalog::new(1);
    for body in bodies {
        // Tags the catalog refuses (too long, too many) make no instance, as over the API.
        let Ok(registration) = ServiceBody::decode(body)
            .map_err(drop)
            .and_then(|b| b.into_registration(Source::Api, false).map_err(drop))
        else {
            continue;
        };
        let _ = catalog.apply(
            catalog.index() + 1,
            &Command::Register(Box::new(registration)),
        );
    }
    let config = RoutingConfig {
        service_routes: true,
        node_address: "127.0.0.1".to_owned(),
        ..RoutingConfig::default()
    };
    Routing::new(config, &catalog).expect("default settings are valid")
}

/// The request head as hyper would hand it to the proxy, or `None` where hyper answers 400.
fn request(head: &[u8]) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(head).ok()?;
    let mut builder = Request::builder().method(parsed.method?).uri(parsed.path?);
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    builder.body(()).ok()
}

/// As the proxy's `request_host`: `Host`, else the URI's authority.
fn request_host(request: &Request<()>) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
}

fn handle(routing: &Routing, request: &Request<()>, client: IpAddr) {
    let host = request_host(request);
    let Some(route) = routing.route(host.as_deref(), request.uri().path()) else {
        return;
    };
    let _ = route.spec.access.permits(client);
    let path = route.spec.rewrite.apply(request.uri().path());
    assert!(
        path.starts_with('/'),
        "{:?} rewritten to {path:?}",
        request.uri()
    );
    let text = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    // An invalid rewritten path is a 400 in the proxy, not a panic.
    let Ok(path_and_query) = PathAndQuery::try_from(text) else {
        return;
    };

    let mut headers: HeaderMap = request.headers().clone();
    let upgrade = forwarded::is_upgrade(&headers);
    forwarded::prepare(
        &mut headers,
        &forwarded::Client::new(client, "http"),
        host.as_deref(),
    );
    for hop in [
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
    ] {
        assert!(!headers.contains_key(hop), "{hop} forwarded");
    }
    if upgrade {
        assert_eq!(
            headers.get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
    } else {
        assert!(
            !headers.contains_key(header::CONNECTION) && !headers.contains_key(header::UPGRADE)
        );
    }
    assert!(headers.contains_key(forwarded::X_FORWARDED_FOR));
    assert!(headers.contains_key(header::FORWARDED));

    let backends = route.service.backends();
    let mut rng = fastrand::Rng::with_seed(7);
    let key = client.to_string();
    let pick = Pick::new(routing.now(), &mut rng).key(key.as_bytes());
    let Some(target) = route
        .balancer
        .pick(&backends.set, pick)
        .map(|i| backends.targets.get(i).expect("a pick indexes the targets"))
    else {
        return;
    };
    let host_header = forwarded::host(
        &route.spec.host_header,
        host.as_deref(),
        target.authority.as_str(),
    );
    assert!(host_header.is_some(), "no Host for {}", target.authority);
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(target.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .expect("an authority and a path make a URI");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (tags, head) = text.split_once("\n\n").unwrap_or((DEFAULT_TAGS, text));
    let routing = routing(tags);
    let Some(request) = request(head.as_bytes()) else {
        return;
    };
    for client in ["192.0.2.7", "127.0.0.1", "::1", "::ffff:10.0.0.9"] {
        handle(&routing, &request, client.parse().expect("ip"));
    }
});
