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

/// The zstd window of a packed snapshot's frame: 2^18 bytes (256 KiB). The packed form repeats little
/// beyond its neighbours, so a larger window gains nothing (100k pod records: 1,214,029 bytes at 2^18,
/// 1,215,964 at 2^21; 1,302,740 at 2^17), while each replica's decoder allocates and clears the window
/// it is told: 2 MiB of pages per subscriber was a tenth of 1,000 light subscribers' CPU (bench/README.md,
/// "Record stream at node scale").
pub const PACKED_ZSTD_WINDOW_LOG: u32 = 18;

/// The largest zstd window a replica accepts: 2^23 bytes (8 MiB, the format's recommended decoder
/// limit). A frame asking for more is refused before anything is allocated for it, whoever sent it.
pub const STREAM_ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// The query parameter and value with which a replica asks for the packed snapshot:
/// `GET /v1/records?snapshot=packed4` (the layout's version 4: versions 1 to 3 were asked as `packed`,
/// `packed2` and `packed3`, which a controller now answers with JSON like any form it does not know, so
/// old replicas keep working). A controller that does not know the value ignores it and sends JSON; a
/// client that does not ask gets only JSON lines.
pub const SNAPSHOT_FORM_PARAM: &str = "snapshot";
pub const SNAPSHOT_FORM_PACKED: &str = "packed4";

/// How the controller starts a packed snapshot's header line (serde writes the tag first). Replicas take
/// a line for a packed header by this start (serde does not check a struct's tag when reading it).
pub const PACKED_SNAPSHOT_START: &[u8] = br#"{"kind":"packed_snapshot""#;

/// The line before a packed snapshot: `{"kind":"packed_snapshot","epoch":E,"generation":G,"bytes":N}`,
/// then exactly N bytes of [`crate::packed`] data (no newline after them), then the next line. It takes
/// the place of a `snapshot` frame for a replica that asked for it; under zstd, header and bytes are one
/// zstd frame like every line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "packed_snapshot")]
pub struct PackedSnapshotHeader {
    #[serde(default)]
    pub epoch: u64,
    pub generation: u64,
    pub bytes: u64,
}

/// One change to one name: its complete new record list (empty for an empty non-terminal), or its removal.
/// Read by a hand-written reader (`tagged.rs`): the derived one parsed each change twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
/// Read by a hand-written reader (`tagged.rs`): the derived one parsed each frame twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_packed_header_line_starts_as_replicas_look_for_it() {
        let header = PackedSnapshotHeader { epoch: 3, generation: 9, bytes: 1234 };
        let text = serde_json::to_vec(&header).unwrap();
        assert!(text.starts_with(PACKED_SNAPSHOT_START), "{}", String::from_utf8_lossy(&text));
        assert_eq!(&text[..], br#"{"kind":"packed_snapshot","epoch":3,"generation":9,"bytes":1234}"#);
        assert_eq!(serde_json::from_slice::<PackedSnapshotHeader>(&text).unwrap(), header);
        // A packed header is not a `Frame`: a replica that never asked refuses it rather than misreads it.
        assert!(serde_json::from_slice::<Frame>(&text).is_err());
    }
}
