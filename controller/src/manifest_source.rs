//! Runs the manifest source: load, synthesise, publish; again whenever the files change.

use std::path::PathBuf;
use std::time::Duration;

use roster_shared::{Frame, SynthConfig, synthesize};
use tokio::sync::mpsc;
use tracing::{error, info};

use crate::manifests::{ManifestWatcher, load_path};
use crate::publisher::Publisher;

/// Polls `path` every `interval` and sends a frame for every change until the receiver goes away.
/// A load that fails is reported document by document and changes nothing: the last good records stay.
pub async fn run(path: PathBuf, config: SynthConfig, interval: Duration, frames: mpsc::Sender<Frame>) {
    let mut watcher = ManifestWatcher::new(path.clone(), interval);
    let mut publisher = Publisher::new();
    loop {
        if watcher.changed() {
            match load_path(&path) {
                Ok(state) => {
                    let zone = synthesize(&state, &config);
                    let records = zone.record_count();
                    if let Some(frame) = publisher.publish(zone) {
                        info!(path = %path.display(), generation = frame.generation(), records, "loaded manifests");
                        if frames.send(frame).await.is_err() {
                            return;
                        }
                    }
                }
                Err(errors) => {
                    for problem in &errors.0 {
                        error!(file = %problem.file.display(), document = problem.document, reason = %problem.reason,
                            "manifest rejected; keeping the last good records");
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = frames.closed() => return,
        }
    }
}
