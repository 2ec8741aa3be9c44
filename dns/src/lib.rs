//! roster's authoritative cluster DNS server.
//!
//! A [`store::ZoneStore`] holds precompiled wire record sets of the authoritative zones; frames from the
//! controller (`roster_shared::Frame`) are applied to it atomically. [`handler::FrontHandler`] is the
//! hickory-server `RequestHandler`: it gates on sync, picks the zone, and answers from the store.
//! hickory types stay inside this crate.

pub mod config;
pub mod convert;
pub mod forward;
pub mod handler;
pub mod lookup;
pub mod metrics;
pub mod probes;
pub mod server;
pub mod store;
pub mod subscriber;
pub mod udp;
pub mod wire;

pub use config::{ConfigError, DnsConfig};
pub use handler::FrontHandler;
pub use server::{DnsServer, ServeError};
pub use store::ZoneStore;
