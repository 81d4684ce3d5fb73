//! hickory's [`RequestHandler`] for the agent's zone: checks the question, reads the name,
//! answers from the current catalog snapshot, and lets hickory frame it (UDP truncation with TC
//! at the client's EDNS buffer size or 512 bytes, TCP length prefixes).
//!
//! What is refused and how: a message that does not parse is FORMERR (hickory answers that
//! before the handler); more or fewer than one question is FORMERR; an opcode other than QUERY
//! is NOTIMP; a class other than IN, or a name outside the agent's domain, is REFUSED (the
//! agent is authoritative for its domain only and does not recurse). Nothing a client sends
//! can make it panic.

use super::answer::{Answer, CandidateCache, Zone};
use super::name;
use crate::metrics::DnsMetrics;
use crate::snapshots::Snapshots;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name};
use hickory_proto::serialize::binary::BinDecoder;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use std::sync::Arc;

/// The largest UDP answer the agent sends, whatever buffer a client advertises (the common
/// EDNS default; larger answers fragment and get lost).
pub const MAX_UDP_PAYLOAD: u16 = 4096;

/// Answers questions about the agent's zone.
pub struct Handler {
    zone: Zone,
    cache: CandidateCache,
    snapshots: Arc<Snapshots>,
    metrics: DnsMetrics,
}

impl Handler {
    /// A handler for `zone`, reading `snapshots` and counting answers into `metrics`.
    pub fn new(zone: Zone, snapshots: Arc<Snapshots>, metrics: DnsMetrics) -> Self {
        Handler {
            zone,
            cache: CandidateCache::default(),
            snapshots,
            metrics,
        }
    }

    /// The response code and records for the request's only question.
    fn resolve(&self, request: &Request) -> Result<Answer, ResponseCode> {
        if request.metadata.op_code != OpCode::Query {
            return Err(ResponseCode::NotImp);
        }
        let [query] = request.queries.queries() else {
            return Err(ResponseCode::FormErr);
        };
        if !echoes_cleanly(request) {
            return Err(ResponseCode::FormErr);
        }
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return Err(ResponseCode::Refused);
        }
        let qname = Name::from(query.name().clone());
        if !self.zone.domain.zone_of(&qname) {
            return Err(ResponseCode::Refused);
        }
        let skip = usize::from(self.zone.domain.num_labels());
        let all: Vec<String> = qname
            .iter()
            .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
            .collect();
        let labels = &all[..all.len().saturating_sub(skip)];
        let lookup = name::parse(labels, &self.zone.node.datacenter).ok();
        let catalog = self.snapshots.load();
        let mut rng = fastrand::Rng::new();
        Ok(self.zone.answer(
            &catalog,
            &self.cache,
            &qname,
            query.query_type(),
            lookup,
            &mut rng,
        ))
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let start = tokio::time::Instant::now();
        // RFC 6891: a request with OPT gets OPT back, with the buffer size the answer may use.
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns
        });
        // hickory echoes the question section byte for byte; when that would not parse (see
        // `echoes_cleanly`) the answer, a FORMERR, leaves it out, as RFC 1035 §4.1.1 allows.
        let no_questions = Queries::read(&mut BinDecoder::new(&[]), 0).ok();
        let mut builder = match &no_questions {
            Some(none) if !echoes_cleanly(request) => MessageResponseBuilder::new(none, None),
            _ => MessageResponseBuilder::from_message_request(request),
        };
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = false;
        let resolved = self.resolve(request);
        let code = match &resolved {
            Ok(answer) => answer.code,
            Err(code) => *code,
        };
        let sent = match resolved {
            Ok(answer) => {
                metadata.authoritative = true;
                metadata.response_code = answer.code;
                let response = builder.build(
                    metadata,
                    answer.answers.iter(),
                    std::iter::empty(),
                    answer.soa.iter(),
                    answer.additionals.iter(),
                );
                response_handle.send_response(response).await
            }
            Err(code) => {
                let response = builder.error_msg(&request.metadata, code);
                response_handle.send_response(response).await
            }
        };
        self.metrics.answered(code, start.elapsed().as_secs_f64());
        sent.unwrap_or_else(|error| {
            tracing::debug!(%error, src = %request.src(), "cannot send a DNS answer");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        })
    }
}

/// Bytes of a DNS header, where the question section starts.
const HEADER_LEN: usize = 12;

/// Whether the request's question section reads the same when hickory copies it, byte for byte,
/// into the response: one question whose name is not compressed. A compression pointer names an
/// offset in the request; in the response other bytes sit there (its header differs), so the
/// echoed name would not parse, or would name something else (found by fuzzing,
/// docs/FUZZING.md). The only question's name has no earlier name to point at, so a pointer in
/// it is malformed anyway; several questions are refused without an echo.
fn echoes_cleanly(request: &Request) -> bool {
    request.queries.queries().len() == 1 && !starts_with_compressed_name(request.as_slice())
}

/// Whether the name after the header uses a pointer (or a reserved label type) before its end.
fn starts_with_compressed_name(raw: &[u8]) -> bool {
    let mut at = HEADER_LEN;
    while let Some(&len) = raw.get(at) {
        match len {
            0 => return false,
            len if len & 0xC0 != 0 => return true,
            len => at += 1 + usize::from(len),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consul::response::NodeInfo;
    use hickory_proto::op::Message;
    use hickory_proto::rr::Record;
    use hickory_proto::serialize::binary::BinEncoder;
    use hickory_server::net::NetError;
    use hickory_server::net::runtime::TokioTime;
    use hickory_server::net::xfer::Protocol;
    use hickory_server::zone_handler::MessageResponse;
    use std::sync::Mutex;
    use wayfinder_catalog::Catalog;

    /// Keeps the encoded response, as hickory's `ResponseHandle` would encode it over TCP.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    #[async_trait::async_trait]
    impl ResponseHandler for Capture {
        async fn send_response<'a>(
            &mut self,
            response: MessageResponse<
                '_,
                'a,
                impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
            >,
        ) -> Result<ResponseInfo, NetError> {
            let mut bytes = Vec::new();
            let info = response.destructive_emit(&mut BinEncoder::new(&mut bytes))?;
            *self.0.lock().expect("lock") = bytes;
            Ok(info)
        }
    }

    fn handler() -> Handler {
        let zone = Zone {
            domain: Name::from_ascii("consul.").expect("domain"),
            ttl: 0,
            negative_ttl: 0,
            only_passing: false,
            node: NodeInfo::new("node1".into(), "127.0.0.1".into(), "dc1".into()),
        };
        let snapshots = Arc::new(Snapshots::new(Catalog::new(1)));
        Handler::new(zone, snapshots, DnsMetrics::default())
    }

    /// A query with the given question section, ID 7.
    fn query(count: u16, questions: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 7, 1, 0];
        bytes.extend(count.to_be_bytes());
        bytes.extend([0; 6]);
        bytes.extend(questions);
        bytes
    }

    async fn formerr_parses(raw: Vec<u8>, protocol: Protocol) {
        let request =
            Request::from_bytes(raw, ([127, 0, 0, 1], 5353).into(), protocol).expect("parses");
        let capture = Capture::default();
        handler()
            .handle_request::<_, TokioTime>(&request, capture.clone())
            .await;
        let bytes = capture.0.lock().expect("lock").clone();
        let response = Message::from_vec(&bytes).expect("the response parses");
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(response.metadata.id, 7);
        assert!(response.queries.is_empty());
    }

    #[tokio::test]
    async fn compressed_questions_are_a_formerr_that_parses() {
        // Found by fuzzing: a name pointing into the request's header (offset 2, its flags),
        // echoed into the response, pointed at the response's flags and did not parse.
        let pointer_into_header = b"\x03web\xc0\x02\x00\x01\x00\x01";
        formerr_parses(query(1, pointer_into_header), Protocol::Udp).await;
        // Several questions, the second pointing into the header.
        let mut two = b"\x03web\x07service\x06consul\x00\x00\x01\x00\x01".to_vec();
        two.extend(pointer_into_header);
        formerr_parses(query(2, &two), Protocol::Tcp).await;
    }
}
