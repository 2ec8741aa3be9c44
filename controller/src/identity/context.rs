//! The reconciler's context: the client, the event recorder, the leadership flag every write checks, and
//! the caches passes read from.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::cache::Caches;
use super::error::Error;
use super::set::SetView;

/// Shared by every reconcile call (no globals).
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events in upstream's format.
    pub recorder: Recorder,
    /// Whether this instance holds the lease; every write checks it.
    pub leader: Arc<AtomicBool>,
    /// API writes made (creates, updates, patches, deletes, Events), for benchmarks.
    pub writes: Arc<AtomicU64>,
    /// The watch-backed caches passes read children from.
    pub caches: Arc<Caches>,
}

impl Context {
    /// A context publishing Events as `reporter`.
    pub fn new(
        client: Client,
        reporter: Reporter,
        leader: Arc<AtomicBool>,
        writes: Arc<AtomicU64>,
        caches: Arc<Caches>,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), reporter);
        Context { client, recorder, leader, writes, caches }
    }

    /// Refuse the write unless this instance leads; count it otherwise.
    pub fn guard_write(&self) -> Result<(), Error> {
        if !self.leader.load(Ordering::SeqCst) {
            return Err(Error::NotLeader);
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether this instance currently leads.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Publish an Event about `set` (best effort: a failed Event never fails reconciliation).
    pub async fn event(
        &self,
        set: &SetView,
        warning: bool,
        reason: &str,
        note: String,
        related: Option<ObjectReference>,
    ) {
        if !self.is_leader() {
            return;
        }
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: related,
        };
        self.writes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.recorder.publish(&ev, &set.object_ref()).await {
            tracing::debug!(error = %e, set = %set.name, "publishing an event failed");
        }
    }
}
