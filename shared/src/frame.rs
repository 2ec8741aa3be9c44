//! Frames of the record stream from the controller to DNS replicas: a snapshot, then deltas.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::name::DomainName;
use crate::records::{RData, ZoneData};

/// The stream's optional content encoding: a replica that sends `Accept-Encoding: zstd` receives every
/// line as its own zstd frame (`Content-Encoding: zstd`), so the controller compresses each frame once for
/// all subscribers and the body is still one standard zstd stream (concatenated frames).
pub const STREAM_ENCODING_ZSTD: &str = "zstd";

/// The zstd window the controller compresses stream frames with: 2^21 bytes (2 MiB). A decoder keeps one
/// window of history, so this, not the snapshot's size, bounds a replica's decompression buffer; a
/// larger window gains under 1% on a 100k-record snapshot (bench/README.md, `zstd_window`).
pub const STREAM_ZSTD_WINDOW_LOG: u32 = 21;

/// The largest zstd window a replica accepts: 2^23 bytes (8 MiB, the format's recommended decoder
/// limit). A frame asking for more is refused before anything is allocated for it, whoever sent it.
pub const STREAM_ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// One change to one name: its complete new record list (empty for an empty non-terminal), or its removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    Set {
        name: DomainName,
        records: Vec<RData>,
    },
    Remove {
        name: DomainName,
    },
    /// The autopath client at `ip`: the namespace of the one pod there that may be autopathed, or
    /// `None` when there is none (see [`ZoneData::clients`]).
    Client {
        ip: IpAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
}

/// The earliest cause of a delta: an EndpointSlice's `endpoints.kubernetes.io/last-change-trigger-time`
/// or, without it, when the controller saw the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// CoreDNS's `service_kind` label: `cluster_ip`, `headless_with_selector`, `headless_without_selector`.
    pub service_kind: String,
}

/// A message of the stream. Generations increase by one per published change set; a replica applies a
/// delta only on top of `generation - 1`. The epoch identifies one publisher's history: generations of
/// different epochs (a restarted controller) are unrelated, so a replica resumes only within its epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Frame {
    Snapshot {
        #[serde(default)]
        epoch: u64,
        generation: u64,
        /// Shared: the publisher, every subscriber's catch-up and the live channel hold one copy.
        zone: Arc<ZoneData>,
    },
    Delta {
        generation: u64,
        changes: Vec<Change>,
        /// When the change that caused this delta happened, for the DNS programming latency metric.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trigger: Option<Trigger>,
    },
    Bookmark {
        generation: u64,
    },
}

impl Frame {
    pub fn generation(&self) -> u64 {
        match self {
            Self::Snapshot { generation, .. } | Self::Delta { generation, .. } | Self::Bookmark { generation } => {
                *generation
            }
        }
    }
}
