//! DNS messages from arbitrary bytes, through the agent's DNS request handler.
//!
//! Each input is parsed as hickory's server parses a datagram (`Request::from_bytes`; what does
//! not parse hickory answers FORMERR before our handler runs) and handed to
//! `dns::handler::Handler::handle_request` over UDP and over TCP, against a small catalog (IPv4,
//! IPv6, node-address, hostname, warning and critical instances, tags). The response is
//! encoded as hickory's `ResponseHandle` encodes it (the client's EDNS size or 512 bytes on UDP)
//! and must parse back as a response to the same ID.
#![no_main]

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use wayfinder_catalog::{Catalog, Command, Source};
use wayfinder_server::consul::request::ServiceBody;
use wayfinder_server::consul::response::NodeInfo;
use wayfinder_server::dns::answer::Zone;
use wayfinder_server::dns::handler::Handler;
use wayfinder_server::metrics::DnsMetrics;
use wayfinder_server::snapshots::Snapshots;

/// The handler, its zone `consul.`, and a catalog of `web` and `db` instances.
static HANDLER: LazyLock<Handler> = LazyLock::new(|| {
    let zone = Zone {
        domain: Name::from_ascii("consul.").expect("domain"),
        ttl: 0,
        negative_ttl: 30,
        only_passing: false,
        node: NodeInfo::new("node1".into(), "127.0.0.1".into(), "dc1".into()),
    };
    Handler::new(
        zone,
        Arc::new(Snapshots::new(catalog())),
        DnsMetrics::default(),
    )
});

/// A current-thread runtime: the handler is async, but never waits on anything.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
});

fn catalog() -> Catalog {
    let ttl = |status: &str| json!({"Name": "alive", "TTL": "30s", "Status": status});
    let bodies = [
        json!({"ID": "web-1", "Name": "web", "Address": "10.0.0.1", "Port": 8080,
               "Tags": ["v1", "primary"], "Weights": {"Passing": 3, "Warning": 1}}),
        json!({"ID": "web-2", "Name": "web", "Port": 8081, "Tags": ["v1"]}),
        json!({"ID": "web-3", "Name": "web", "Address": "2001:db8::1", "Port": 80,
               "Tags": ["v2"]}),
        json!({"ID": "web-4", "Name": "web", "Address": "web4.example.com", "Port": 80}),
        json!({"ID": "web-5", "Name": "web", "Address": "10.0.0.5", "Port": 80,
               "Check": ttl("warning")}),
        json!({"ID": "web-6", "Name": "web", "Address": "10.0.0.6", "Port": 80,
               "Check": ttl("critical")}),
        json!({"ID": "db-1", "Name": "db", "Address": "10.0.1.1", "Port": 5432,
               "Tags": ["primary"]}),
    ];
    let mut catalog = Catalog::new(1);
    for body in bodies {
        let registration = ServiceBody::decode(body)
            .expect("decodes")
            .into_registration(Source::Api, false)
            .expect("valid");
        catalog
            .apply(
                catalog.index() + 1,
                &Command::Register(Box::new(registration)),
            )
            .expect("registers");
    }
    catalog
}

/// Keeps the encoded response instead of sending it.
#[derive(Clone)]
struct Capture {
    protocol: Protocol,
    sent: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // As hickory's ResponseHandle::send_response: UDP answers fit the client's buffer.
        let max_size = match self.protocol {
            Protocol::Udp => response.edns().map_or(512, |edns| edns.max_payload()),
            _ => u16::MAX,
        };
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        let info = response.destructive_emit(&mut encoder)?;
        assert!(
            bytes.len() <= usize::from(max_size),
            "{} > {max_size}",
            bytes.len()
        );
        *self.sent.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes);
        Ok(info)
    }
}

fuzz_target!(|data: &[u8]| {
    let src: SocketAddr = ([127, 0, 0, 1], 5353).into();
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        let Ok(request) = Request::from_bytes(data.to_vec(), src, protocol) else {
            return;
        };
        let capture = Capture {
            protocol,
            sent: Arc::default(),
        };
        let handler = &*HANDLER;
        RUNTIME.block_on(handler.handle_request::<_, TokioTime>(&request, capture.clone()));
        let sent = capture
            .sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // None: the response did not encode, and the handler answered SERVFAIL instead.
        if let Some(bytes) = sent {
            let response = Message::from_vec(&bytes).unwrap_or_else(|e| {
                panic!(
                    "the response over {protocol:?} to {} questions ({} bytes) does not parse: {e}",
                    request.queries.queries().len(),
                    bytes.len()
                )
            });
            assert_eq!(response.metadata.message_type, MessageType::Response);
            assert_eq!(response.metadata.id, request.metadata.id);
        }
    }
});
