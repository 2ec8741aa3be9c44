//! roster's controller: where Kubernetes objects come in, become slim views, and leave as record frames.
//!
//! Kubernetes types (k8s-openapi) stop here: [`slim`] turns them into `roster_shared` views.

pub mod health;
pub mod hub;
pub mod identity;
pub mod kube_source;
pub mod manifest_source;
pub mod manifests;
pub mod metrics;
pub mod publisher;
pub mod slim;
pub mod stream;
pub mod stream_lease;
pub mod tls;

pub use hub::Hub;
pub use manifests::{LoadError, LoadErrors, ManifestWatcher, load_path};
pub use publisher::Publisher;
pub use rustls;
