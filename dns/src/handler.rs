//! The front request handler: validates the request, gates cluster names on sync, answers from the
//! store or through the forwarder, and records metrics. It implements hickory's `RequestHandler`
//! directly rather than going through `Catalog`, because the Catalog turns handler errors into NOERROR
//! and costs allocations on every query.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hickory_proto::op::{Edns, Header, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::debug;

use crate::forward::Forwarder;
use crate::lookup::{Answer, answer};
use crate::metrics::{Metrics, Observation, static_label};
use crate::store::ZoneStore;

/// The UDP payload size roster accepts and caps its own answers at (RFC 6891 §6.2.5 leaves it to us;
/// 4096 is what BIND and CoreDNS advertise).
const MAX_UDP_PAYLOAD: u16 = 4096;

#[derive(Clone)]
pub struct FrontHandler {
    store: Arc<ZoneStore>,
    forwarder: Option<Arc<Forwarder>>,
    metrics: Option<Arc<Metrics>>,
    /// The `zone` metric label of each authoritative zone (`cluster.local.`), by zone index.
    zone_labels: Arc<[&'static str]>,
    rotation: Arc<AtomicUsize>,
}

impl FrontHandler {
    pub fn new(store: Arc<ZoneStore>) -> Self {
        let zone_labels: Vec<&'static str> =
            store.zones().iter().map(|z| static_label(format!("{}.", z.name))).collect();
        Self { store, forwarder: None, metrics: None, zone_labels: zone_labels.into(), rotation: Arc::default() }
    }

    pub fn with_forwarder(mut self, forwarder: Arc<Forwarder>) -> Self {
        self.forwarder = Some(forwarder);
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn store(&self) -> &Arc<ZoneStore> {
        &self.store
    }

    /// True when the answer comes from the store alone (no upstream to wait for), so that the UDP loop
    /// may answer inline. With a forwarder, names outside the cluster zone, reverse names (which may fall
    /// through) and CNAMEs (ExternalName, which may be chased) may wait.
    pub fn answers_without_waiting(&self, request: &Request) -> bool {
        let Some(forwarder) = &self.forwarder else { return true };
        let Some(query) = request.queries.queries().first() else { return true };
        if self.store.zone_of(query.name()) != Some(0) {
            let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
            return self.store.zone_of(query.name()).is_none() && forwarder.is_cached(query.original(), dnssec_ok);
        }
        let view = self.store.view();
        view.node(query.name()).is_none_or(|node| node.get(RecordType::CNAME).is_none())
    }

    /// Decides the answer to a request that parsed; also returns the zone label for metrics.
    async fn decide(&self, request: &Request) -> (Answer, &'static str) {
        if request.metadata.op_code != OpCode::Query {
            return (Answer::error(ResponseCode::NotImp), ".");
        }
        let Ok(info) = request.request_info() else {
            // Zero or several questions: nobody sends that on purpose.
            return (Answer::error(ResponseCode::FormErr), ".");
        };
        let query = info.query;
        let qtype = query.query_type();
        if qtype == RecordType::OPT {
            return (Answer::error(ResponseCode::FormErr), ".");
        }
        let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let Some(zone) = self.store.zone_of(query.name()) else {
            return (self.forward(query.name(), query.original(), dnssec_ok).await, ".");
        };
        let zone_label = self.zone_labels.get(zone).copied().unwrap_or(".");
        if query.query_class() != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return (Answer::error(ResponseCode::Refused), zone_label);
        }
        if !self.store.is_synced() {
            return (Answer::error(ResponseCode::ServFail), zone_label);
        }
        let mut found = answer(&self.store, zone, query.name(), query.original().name(), qtype);
        let Some(forwarder) = &self.forwarder else { return (found, zone_label) };

        // Reverse names we hold nothing for fall through to the upstreams (kubeadm's `fallthrough`).
        if found.rcode == ResponseCode::NXDomain && zone > 0 {
            return (forwarder.resolve(query.original(), dnssec_ok).await, zone_label);
        }
        // ExternalName: chase the CNAME's target through the forwarder; the CNAME alone if that fails.
        if matches!(qtype, RecordType::A | RecordType::AAAA)
            && let Some(target) = found.dangling_cname().cloned()
        {
            let chased = forwarder.resolve(&Query::query(target, qtype), dnssec_ok).await;
            if matches!(chased.rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
                found.rcode = chased.rcode;
                found.answers.extend(chased.answers);
                found.authority.extend(chased.authority);
            }
        }
        (found, zone_label)
    }

    async fn forward(&self, name: &LowerName, query: &Query, dnssec_ok: bool) -> Answer {
        let Some(forwarder) = &self.forwarder else { return Answer::error(ResponseCode::Refused) };
        if forwarder.is_returning_probe(name) && forwarder.loop_seen() {
            return Answer::error(ResponseCode::ServFail);
        }
        if query.query_class() != DNSClass::IN || matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR) {
            return Answer::error(ResponseCode::Refused);
        }
        forwarder.resolve(query, dnssec_ok).await
    }
}

#[async_trait::async_trait]
impl RequestHandler for FrontHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
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

        let (decided, zone_label) =
            if bad_version { (Answer::error(ResponseCode::BADVERS), ".") } else { self.decide(request).await };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.message_type = MessageType::Response;
        metadata.response_code = decided.rcode;
        metadata.authoritative = decided.authoritative;
        metadata.recursion_available = self.forwarder.is_some();

        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &response_edns {
            builder.edns(edns);
        }
        let rotation = self.rotation.fetch_add(1, Ordering::Relaxed);
        let response = builder.build(
            metadata,
            decided.answer_records(rotation),
            decided.authority_records(),
            std::iter::empty(),
            decided.additional_records(),
        );
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                debug!(%error, "failed to send a response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header { metadata, counts: Default::default() })
            }
        };
        if let Some(metrics) = &self.metrics {
            let qtype = request.queries.queries().first().map(|q| q.query_type()).unwrap_or(RecordType::NULL);
            // Header 12 + question + records (uncompressed) + OPT 11: an upper bound of the wire size.
            let question = request.queries.as_bytes().len();
            let opt = if response_edns.is_some() { 11 } else { 0 };
            metrics.observe(&Observation {
                zone: zone_label,
                udp: request.protocol() == Protocol::Udp,
                ipv6: request.src().is_ipv6(),
                qtype,
                rcode: decided.rcode,
                plugin: decided.plugin,
                request_size: request.as_slice().len(),
                response_size: (12 + question + decided.records_wire_len() + opt).min(usize::from(u16::MAX)),
                duration: started.elapsed(),
            });
        }
        info
    }
}
