//! roster's authoritative cluster DNS server.
//!
//! A [`store::ZoneStore`] holds precompiled wire record sets of the authoritative zones; frames from the
//! controller (`roster_shared::Frame`) are applied to it atomically. [`handler::FrontHandler`] gates
//! on sync, picks the zone, answers from the store or the forwarder and encodes every response with
//! roster's writer ([`wire::MessageWriter`]); `udp` and `tcp` are the server loops. hickory types stay
//! inside this crate.

pub mod config;
pub mod convert;
pub mod forward;
pub mod handler;
pub mod lookup;
pub mod metrics;
pub mod probes;
pub mod rrl;
pub mod server;
pub mod store;
pub mod subscriber;
pub mod tcp;
pub mod udp;
pub mod wire;

pub use config::{ConfigError, DnsConfig};
pub use handler::FrontHandler;
pub use server::{DnsServer, ServeError};
pub use store::ZoneStore;
