//! Runs the manifest source: load, synthesise, publish; again whenever the files change.

use std::path::PathBuf;
use std::time::Duration;

use roster_shared::{SynthConfig, synthesize};
use tracing::{error, info};

use crate::hub::Hub;
use crate::manifests::{ManifestWatcher, load_path};

/// Polls `path` every `interval` and publishes every change into `hub`, forever.
/// A load that fails is reported document by document and changes nothing: the last good records stay.
pub async fn run(path: PathBuf, config: SynthConfig, interval: Duration, hub: Hub) {
    let mut watcher = ManifestWatcher::new(path.clone(), interval);
    loop {
        if watcher.changed() {
            match load_path(&path) {
                Ok(state) => {
                    let zone = synthesize(&state, &config);
                    let records = zone.record_count();
                    if let Some(generation) = hub.publish(zone) {
                        info!(path = %path.display(), generation, records, "loaded manifests");
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
        tokio::time::sleep(interval).await;
    }
}
