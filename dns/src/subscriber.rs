//! Applies frames of the record stream to the store, in order.

use std::sync::Arc;

use roster_shared::Frame;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::store::ZoneStore;

/// Applies every frame from an in-process channel until it closes.
pub async fn apply_channel(mut frames: mpsc::Receiver<Frame>, store: Arc<ZoneStore>) {
    while let Some(frame) = frames.recv().await {
        let generation = frame.generation();
        match store.apply(&frame) {
            Ok(()) => info!(generation, names = store.name_count(), "applied records"),
            Err(error) => warn!(%error, "frame not applied"),
        }
    }
}
