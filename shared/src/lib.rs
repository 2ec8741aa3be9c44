//! Pure core shared by roster's controller and DNS server: DNS names, the record model, the synthesis of
//! the cluster zone from slim views of Kubernetes objects, and the frames of the record stream.
//!
//! Nothing here knows about kube-rs or hickory; both edges convert into and out of these types.

pub mod frame;
pub mod incremental;
pub mod name;
pub mod packed;
pub mod records;
pub mod synth;
mod tagged;
pub mod views;

pub use frame::{
    Change, Frame, PACKED_SNAPSHOT_START, PACKED_ZSTD_WINDOW_LOG, PackedSnapshotHeader, SNAPSHOT_FORM_PACKED,
    SNAPSHOT_FORM_PARAM, STREAM_ENCODING_ZSTD, STREAM_ZSTD_WINDOW_LOG, STREAM_ZSTD_WINDOW_LOG_MAX, Trigger,
};
pub use incremental::IncrementalSynthesis;
pub use name::{DomainName, NameError};
pub use records::{RData, ZoneBuilder, ZoneData};
pub use synth::{PodMode, Source, SynthConfig, synthesize, synthesize_part};
pub use views::{
    ClusterState, EndpointPort, EndpointSliceView, EndpointView, ImportKind, NamespaceView, PodView, PortProtocol,
    ServiceImportView, ServiceKind, ServicePort, ServiceView,
};
