//! HTTPS and gRPC-over-TLS checks against real TLS servers on loopback, with the test CA in
//! `tests/fixtures` (see its README): verification, `TLSSkipVerify` and `TLSServerName`.

mod support;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};
use wayfinder_catalog::{CheckKind, Command, Status};
use wayfinder_health::SchedulerConfig;

const CA: &[u8] = include_bytes!("fixtures/ca.der");
const LEAF: &[u8] = include_bytes!("fixtures/leaf.der");
const LEAF_KEY: &[u8] = include_bytes!("fixtures/leaf.key.der");

fn server_config(alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(LEAF_KEY.to_vec().into());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![LEAF.to_vec().into()], key)
        .expect("test certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TCP listener that completes the TLS handshake before handing connections to axum.
/// Failed handshakes (a client refusing our certificate) are skipped.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// An HTTPS server on 127.0.0.1 answering `/` with the `Host` header it received.
async fn https_server() -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(server_config(&[b"http/1.1"])),
    };
    let router = Router::new().route(
        "/",
        get(|headers: HeaderMap| async move {
            let host = headers
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            format!("host={host}")
        }),
    );
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    addr
}

fn https_check(
    id: &str,
    url: &str,
    skip_verify: bool,
    server_name: &str,
) -> wayfinder_catalog::CheckDefinition {
    let mut definition = check(id, http(url));
    if let CheckKind::Http {
        tls_skip_verify,
        tls_server_name,
        ..
    } = &mut definition.kind
    {
        *tls_skip_verify = skip_verify;
        *tls_server_name = server_name.to_owned();
    }
    definition
}

fn trusting_the_test_ca() -> SchedulerConfig {
    SchedulerConfig {
        ca_certificates: vec![CA.to_vec()],
        ..SchedulerConfig::default()
    }
}

#[tokio::test]
async fn skip_verify_accepts_a_certificate_nobody_trusts() {
    let addr = https_server().await;
    let mut h = Harness::new();
    h.register(
        "web-1",
        vec![https_check("tls", &format!("https://{addr}/"), true, "")],
    );
    let report = h.next_written(PATIENCE).await;
    assert_eq!(
        status_of(&report),
        (
            "tls",
            Status::Passing,
            format!("HTTP GET https://{addr}/: 200 OK Output: host={addr}").as_str()
        )
    );
}

#[tokio::test]
async fn verification_fails_for_an_unknown_issuer_or_a_wrong_name() {
    let addr = https_server().await;
    // Without the test CA: the issuer is unknown.
    let mut h = Harness::new();
    h.register(
        "web-1",
        vec![https_check(
            "untrusted",
            &format!("https://{addr}/"),
            false,
            "health.test",
        )],
    );
    let untrusted = h.observe("untrusted", |_| true).await;
    assert_eq!(untrusted.status, Status::Critical);
    assert!(
        untrusted.output.contains("certificate") || untrusted.output.contains("CA certificates"),
        "{}",
        untrusted.output
    );

    // With the CA, but reached as 127.0.0.1, which the certificate does not name.
    let mut h = Harness::with_config(trusting_the_test_ca());
    h.register(
        "web-1",
        vec![https_check("by-ip", &format!("https://{addr}/"), false, "")],
    );
    let by_ip = h.observe("by-ip", |_| true).await;
    assert_eq!(by_ip.status, Status::Critical);
    assert!(
        by_ip.output.to_lowercase().contains("certificate"),
        "{}",
        by_ip.output
    );
}

#[tokio::test]
async fn tls_server_name_is_sent_and_verified_while_the_url_host_is_connected_to() {
    let addr = https_server().await;
    let mut h = Harness::with_config(trusting_the_test_ca());
    h.register(
        "web-1",
        vec![https_check(
            "sni",
            &format!("https://{addr}/"),
            false,
            "health.test",
        )],
    );
    let report = h.next_written(PATIENCE).await;
    // The output names the URL as registered, and the Host header is the URL's, as in Consul.
    assert_eq!(
        status_of(&report),
        (
            "sni",
            Status::Passing,
            format!("HTTP GET https://{addr}/: 200 OK Output: host={addr}").as_str()
        )
    );
}

#[tokio::test]
async fn grpc_over_tls_verifies_the_server() {
    // 127.0.0.2 is loopback too, and the one address the test certificate names.
    let tcp = TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let addr = tcp.local_addr().expect("addr");
    let acceptor = TlsAcceptor::from(server_config(&[b"h2"]));
    let incoming = futures::stream::unfold((tcp, acceptor), |(tcp, acceptor)| async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = acceptor.accept(stream).await {
                return Some((Ok::<_, std::io::Error>(tls), (tcp, acceptor)));
            }
        }
    });
    let (_reporter, service) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .expect("grpc server");
    });

    let mut h = Harness::with_config(trusting_the_test_ca());
    h.register(
        "web-1",
        vec![check("grpc-tls", grpc(addr.to_string(), true))],
    );
    let report = h.next_written(PATIENCE).await;
    assert_eq!(
        status_of(&report),
        (
            "grpc-tls",
            Status::Passing,
            format!("gRPC check {addr}: success").as_str()
        )
    );

    // Without the CA the same server is not trusted.
    let mut untrusting = Harness::new();
    let mut definition = check("grpc-untrusted", grpc(addr.to_string(), true));
    definition.initial_status = Some(Status::Passing);
    untrusting.apply(Command::RegisterCheck(Box::new(definition)));
    let report = untrusting.next_written(PATIENCE).await;
    assert_eq!(status_of(&report).1, Status::Critical, "{report:?}");
}

#[tokio::test]
async fn unloadable_roots_fail_https_checks_with_the_reason_but_not_plain_http() {
    let tls_addr = https_server().await;
    let plain_addr = serve(Router::new().route("/", get(|| async { "plain" }))).await;
    let mut h = Harness::with_config(SchedulerConfig {
        ca_certificates: vec![b"not a certificate".to_vec()],
        ..SchedulerConfig::default()
    });
    h.register(
        "web-1",
        vec![
            check("plain", http(&format!("http://{plain_addr}/"))),
            https_check("tls", &format!("https://{tls_addr}/"), false, "health.test"),
        ],
    );
    let report = h.next_written(PATIENCE).await;
    assert_eq!(status_of(&report).0, "plain");
    assert_eq!(status_of(&report).1, Status::Passing);
    let tls = h.observe("tls", |_| true).await;
    assert_eq!(tls.status, Status::Critical);
    assert!(
        tls.output.contains("cannot verify TLS certificates"),
        "{}",
        tls.output
    );
}
