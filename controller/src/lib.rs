//! roster's controller: where Kubernetes objects come in, become slim views, and leave as record frames.
//!
//! Kubernetes types (k8s-openapi) stop here: [`slim`] turns them into `roster_shared` views.

pub mod health;
pub mod hub;
pub mod identity;
pub mod kube_source;
pub mod lease;
mod manifest_objects;
pub mod manifest_source;
pub mod manifests;
pub mod metrics;
pub mod publisher;
pub mod service_import;
pub mod slim;
pub mod stream;
pub mod stream_lease;
pub mod tls;

pub use hub::{Hub, SnapshotForm};
pub use manifests::{LoadError, LoadErrors, ManifestWatcher, load_path};
pub use publisher::Publisher;
pub use rustls;

/// Entry points for the fuzz targets in `fuzz/`; not an API (hidden, changes with them).
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    use roster_shared::ClusterState;

    use crate::manifests::{LoadErrors, load_text};

    /// Loads the text of one manifest file as [`crate::load_path`] loads each file it reads; `file`'s
    /// extension picks JSON (`.json`) or YAML.
    pub fn load_manifest(file: &Path, text: &str) -> Result<ClusterState, LoadErrors> {
        let mut state = ClusterState::default();
        let mut errors = Vec::new();
        load_text(file, text, &mut state, &mut errors);
        if errors.is_empty() { Ok(state) } else { Err(LoadErrors(errors)) }
    }
}
