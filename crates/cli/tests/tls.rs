//! TLS against the real binary: the HTTP API over HTTPS, mutual TLS with `--tls-client-ca`
//! (a client without a certificate is refused in the handshake), the gateway's listener over
//! HTTPS, and `proto=https` routes to an instance that speaks only HTTPS, verified against
//! `--gateway-upstream-ca`. Certificates are made per test with rcgen: a CA, a server
//! certificate for 127.0.0.1 and a client certificate.

mod support;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::Agent;
use support::backend::Backend;

/// PEM files of one test's public-key infrastructure.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a PEM file");
    path
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &issuer).expect("leaf cert");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            vec!["client".to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let d = dir.path();
        Pki {
            ca: write(d, "ca.pem", &ca_cert.pem()),
            server_cert: write(d, "server.pem", &server_cert),
            server_key: write(d, "server-key.pem", &server_key),
            client_cert: write(d, "client.pem", &client_cert),
            client_key: write(d, "client-key.pem", &client_key),
            _dir: dir,
        }
    }

    fn path(path: &Path) -> &str {
        path.to_str().expect("utf-8 path")
    }

    /// A client that trusts this CA, with the client certificate when `with_identity`.
    fn client(&self, with_identity: bool) -> reqwest::blocking::Client {
        let _ = support::http_client(); // installs ring as rustls' provider
        let ca = std::fs::read(&self.ca).expect("read ca");
        let mut builder = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca pem"));
        if with_identity {
            let mut pem = std::fs::read(&self.client_cert).expect("read client cert");
            pem.extend(std::fs::read(&self.client_key).expect("read client key"));
            builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
        }
        builder.build().expect("https client")
    }
}

fn get_json(client: &reqwest::blocking::Client, url: &str) -> (u16, Value) {
    let response = client
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn the_api_speaks_https_and_nothing_else_on_its_port() {
    let pki = Pki::new();
    let agent = Agent::start(&[
        "--tls-cert",
        Pki::path(&pki.server_cert),
        "--tls-key",
        Pki::path(&pki.server_key),
    ]);
    assert!(
        agent.stdout().contains("HTTP API:      https://"),
        "{}",
        agent.stdout()
    );
    let base = format!("https://{}", agent.addr());
    let client = pki.client(false);
    let registered = client
        .put(format!("{base}/v1/agent/service/register"))
        .body(json!({"Name": "web", "ID": "web-1", "Port": 8080}).to_string())
        .send()
        .expect("register over https");
    assert_eq!(registered.status().as_u16(), 200);
    let (status, services) = get_json(&client, &format!("{base}/v1/catalog/services"));
    assert_eq!(status, 200);
    assert!(services.get("web").is_some(), "{services}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = support::http_client()
        .get(format!("http://{}/v1/status/leader", agent.addr()))
        .send();
    assert!(plain.is_err() || !plain.is_ok_and(|r| r.status().is_success()));
    // A client that does not trust the CA is refused in the handshake.
    let untrusting = support::http_client()
        .get(format!("{base}/v1/status/leader"))
        .send();
    assert!(untrusting.is_err(), "an unknown CA was accepted");
}

#[test]
fn with_a_client_ca_only_clients_with_a_certificate_get_in() {
    let pki = Pki::new();
    let agent = Agent::start(&[
        "--tls-cert",
        Pki::path(&pki.server_cert),
        "--tls-key",
        Pki::path(&pki.server_key),
        "--tls-client-ca",
        Pki::path(&pki.ca),
    ]);
    let url = format!("https://{}/v1/status/leader", agent.addr());
    assert!(
        pki.client(false).get(&url).send().is_err(),
        "no client certificate, yet let in"
    );
    let (status, _) = get_json(&pki.client(true), &url);
    assert_eq!(status, 200);
}

#[test]
fn bad_certificate_files_stop_the_agent_with_the_reason() {
    let pki = Pki::new();
    let (status, _, stderr) = Agent::start_expecting_failure(&[
        "--tls-cert",
        Pki::path(&pki.server_cert),
        "--tls-key",
        Pki::path(&pki.ca), // a certificate, not a key
    ]);
    assert!(!status.success());
    assert!(stderr.contains("key"), "{stderr}");
}

#[test]
fn the_gateway_takes_https_and_speaks_https_to_instances_that_ask_for_it() {
    let pki = Pki::new();
    let backend = Backend::start_tls("secure-1", pki.server_cert.clone(), pki.server_key.clone());
    let agent = Agent::start(&[
        "--gateway-addr",
        "127.0.0.1:0",
        "--gateway-tls-cert",
        Pki::path(&pki.server_cert),
        "--gateway-tls-key",
        Pki::path(&pki.server_key),
        "--gateway-upstream-ca",
        Pki::path(&pki.ca),
    ]);
    agent.register(&json!({
        "Name": "secure", "ID": "secure-1", "Address": "127.0.0.1", "Port": backend.port(),
        "Tags": ["urlprefix-/secure proto=https"],
    }));
    let gateway = format!("https://{}", agent.gateway_addr());
    let client = pki.client(false);
    let answer = agent.eventually(Duration::from_secs(10), "the https route to answer", || {
        let response = client
            .get(format!("{gateway}/secure/hello"))
            .send()
            .map_err(|e| format!("{e:?}"))?;
        match response.status().as_u16() {
            200 => response.json::<Value>().map_err(|e| e.to_string()),
            status => Err(format!("{status}: {}", response.text().unwrap_or_default())),
        }
    });
    assert_eq!(answer["id"], "secure-1");
    assert_eq!(answer["path"], "/secure/hello");
    assert_eq!(answer["headers"]["x-forwarded-proto"], "https");

    // HTTP/2 from clients, negotiated by ALPN on the TLS listener.
    let response = client
        .get(format!("{gateway}/secure/h2"))
        .send()
        .expect("GET over TLS");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status().as_u16(), 200);
}
