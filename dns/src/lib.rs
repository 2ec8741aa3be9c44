//! roster's authoritative cluster DNS server.
//!
//! A [`store::ZoneStore`] holds precompiled wire record sets of the authoritative zones; frames from the
//! controller (`roster_shared::Frame`) are applied to it atomically. [`handler::FrontHandler`] gates
//! on sync, picks the zone, answers from the store or the forwarder and encodes every response with
//! roster's writer ([`wire::MessageWriter`]); `udp` (worker threads) and `tcp` serve the sockets.
//! hickory types stay inside this crate.

pub mod autopath;
pub mod clients;
pub mod config;
pub mod convert;
pub mod forward;
pub mod handler;
mod histogram;
pub mod lookup;
pub mod memory;
pub mod metrics;
pub mod probes;
pub mod request;
pub mod rrl;
pub mod server;
pub mod snapshot_decode;
pub mod store;
pub mod stream_encoding;
pub mod subscriber;
pub mod tcp;
pub mod udp;
pub mod wire;

pub use config::{ConfigError, DnsConfig};
pub use handler::FrontHandler;
pub use server::{DnsServer, ServeError};
pub use store::ZoneStore;

/// Entry points for the fuzz targets in `fuzz/`; not an API (hidden, changes with them).
#[doc(hidden)]
pub mod fuzzing {
    use crate::handler::FrontHandler;
    use crate::request::Incoming;
    use crate::wire::format_error;

    pub use crate::request::question_pointers_stay_inside;

    /// What a UDP worker (`udp`, answering inline through `now_or_never`) or, with `tcp`, the TCP loop
    /// (`tcp::read_requests`) does with one received message: the bytes sent back, or `None` when
    /// nothing is. Keep in step with both.
    pub async fn answer(handler: &FrontHandler, message: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let src = std::net::SocketAddr::from(([192, 0, 2, 1], 40000));
        let mut response = Vec::new();
        let Ok(request) = Incoming::parse(message, src, !tcp) else {
            // The TCP loop passes only the header; `format_error` reads no further either way.
            return format_error(message, &mut response).then_some(response);
        };
        if request.is_response {
            return None;
        }
        let _ = handler.answers_without_waiting(&request);
        let outcome = handler.respond(&request, &mut response).await;
        handler.observe(&request, &outcome, response.len());
        Some(response)
    }
}
