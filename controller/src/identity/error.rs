//! The identity controller's one error type.

/// Everything that can go wrong while reconciling sets, electing a leader or installing the CRD.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A write was attempted while this instance does not hold the lease.
    #[error("not the leader: writes are refused")]
    NotLeader,
    /// An object could not be converted between its wire form and the shape the controller uses.
    #[error("converting {what}: {source}")]
    Convert {
        /// What was being converted.
        what: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// The set's spec cannot be acted on (for example a selector that does not select the template).
    #[error("invalid set {name}: {reason}")]
    InvalidSet {
        /// The set.
        name: String,
        /// Why.
        reason: String,
    },
    /// The set object lacks something every stored object has (name, namespace, uid).
    #[error("the set object has no {0}")]
    MissingField(&'static str),
    /// Rendering the CRD as YAML failed.
    #[error("rendering the CRD: {0}")]
    Yaml(String),
    /// A ControllerRevision name collided with a different revision too many times.
    #[error("revision hash collisions for set {0}")]
    HashCollision(String),
    /// A reconcile's task was cancelled.
    #[error("the reconcile was cancelled")]
    Cancelled,
    /// The caches' watches stopped.
    #[error("the watch caches stopped")]
    CachesStopped,
}

impl Error {
    /// `404 Not Found` from the API.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 404)
    }

    /// `409 Conflict` / AlreadyExists from the API.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 409)
    }
}

/// Whether a kube error is `404 Not Found`.
pub fn kube_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a kube error is `409` (AlreadyExists or a stale resourceVersion).
pub fn kube_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether a kube error is `422 Invalid` (a patch the object refuses, e.g. a changed UID).
pub fn kube_invalid(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422)
}
