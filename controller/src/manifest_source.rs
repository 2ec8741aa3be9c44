//! Runs the manifest source: load, synthesise, publish; again whenever the files change.

use std::path::PathBuf;
use std::time::Duration;

use roster_shared::{SynthConfig, ZoneData, synthesize};
use tracing::{error, info};

use crate::manifests::{ManifestWatcher, load_path};

/// Polls `path` every `interval` and hands every new record set to `publish` (which returns the
/// generation it published, `None` when nothing changed), forever. The source keeps nothing between
/// loads: whoever `publish` hands the records to decides what to keep (`roster dns --objects` keeps
/// only the DNS store's nodes, see `ZoneStore::load`).
/// A load that fails is reported document by document and changes nothing: the last good records stay.
pub async fn run(
    path: PathBuf,
    config: SynthConfig,
    interval: Duration,
    mut publish: impl FnMut(ZoneData) -> Option<u64>,
) {
    let mut watcher = ManifestWatcher::new(path.clone(), interval);
    loop {
        if watcher.changed() {
            match load_path(&path) {
                Ok(state) => {
                    let zone = synthesize(&state, &config);
                    // Freed before publishing, so that the memory of the parsed objects is free by the
                    // time the DNS side trims the heap after its snapshot (`roster_dns::memory`).
                    drop(state);
                    let records = zone.record_count();
                    if let Some(generation) = publish(zone) {
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
