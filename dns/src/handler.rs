//! The front request handler: validates the request, gates cluster names on sync, answers from the
//! store. It implements hickory's `RequestHandler` directly rather than going through `Catalog`,
//! because the Catalog turns handler errors into NOERROR and costs allocations on every query.

use std::sync::Arc;

use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::debug;

use crate::lookup::{Answer, answer};
use crate::store::ZoneStore;

/// The UDP payload size roster accepts and caps its own answers at (RFC 6891 §6.2.5 leaves it to us;
/// 4096 is what BIND and CoreDNS advertise).
const MAX_UDP_PAYLOAD: u16 = 4096;

#[derive(Clone)]
pub struct FrontHandler {
    store: Arc<ZoneStore>,
}

impl FrontHandler {
    pub fn new(store: Arc<ZoneStore>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<ZoneStore> {
        &self.store
    }

    /// Decides the answer to a request that parsed.
    fn decide(&self, request: &Request) -> Answer {
        let mut refused = Answer { rcode: ResponseCode::Refused, ..Answer::default() };
        if request.metadata.op_code != OpCode::Query {
            refused.rcode = ResponseCode::NotImp;
            return refused;
        }
        let Ok(info) = request.request_info() else {
            // Zero or several questions: nobody sends that on purpose.
            refused.rcode = ResponseCode::FormErr;
            return refused;
        };
        let query = info.query;
        let Some(zone) = self.store.zone_of(query.name()) else {
            return refused;
        };
        if query.query_class() != DNSClass::IN {
            return refused;
        }
        match query.query_type() {
            RecordType::AXFR | RecordType::IXFR => return refused,
            RecordType::OPT => {
                refused.rcode = ResponseCode::FormErr;
                return refused;
            }
            _ => {}
        }
        if !self.store.is_synced() {
            return Answer { rcode: ResponseCode::ServFail, ..Answer::default() };
        }
        answer(&self.store, zone, query.name(), query.original().name(), query.query_type())
    }
}

#[async_trait::async_trait]
impl RequestHandler for FrontHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut response_edns = None;
        if let Some(request_edns) = &request.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(request_edns.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns.set_version(0);
            response_edns = Some(edns);
        }
        let bad_version = request.edns.as_ref().is_some_and(|e| e.version() > 0);
        if bad_version && let Some(edns) = response_edns.as_mut() {
            edns.set_rcode_high(ResponseCode::BADVERS.high());
        }

        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &response_edns {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.message_type = MessageType::Response;

        let decided = if bad_version {
            Answer { rcode: ResponseCode::BADVERS, ..Answer::default() }
        } else {
            self.decide(request)
        };
        metadata.response_code = decided.rcode;
        metadata.authoritative = matches!(decided.rcode, ResponseCode::NoError | ResponseCode::NXDomain);
        metadata.recursion_available = false;

        let response = builder.build(
            metadata,
            decided.answer_records(),
            std::iter::empty(),
            decided.soa_records(),
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                debug!(%error, "failed to send a response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_proto::op::Header { metadata, counts: Default::default() })
            }
        }
    }
}
