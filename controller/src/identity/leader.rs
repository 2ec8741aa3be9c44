//! The identity controller's leadership: the shared Lease election ([`crate::lease`]) on its own Lease,
//! reported through a flag that every write checks and that drops as soon as a renewal is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::lease::Elector;
pub use crate::lease::LeaseSettings;

impl Default for LeaseSettings {
    /// The identity controller's Lease.
    fn default() -> Self {
        LeaseSettings {
            namespace: "kube-system".into(),
            name: "roster-identity-controller".into(),
            identity: default_identity(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        }
    }
}

/// `$POD_NAME`, else `$HOSTNAME`, else `roster`, plus the process id.
pub fn default_identity() -> String {
    let host = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "roster".into());
    format!("{host}_{}", std::process::id())
}

/// One candidate for the lease.
pub struct Leader {
    elector: Elector,
    flag: Arc<AtomicBool>,
    term: Option<u64>,
}

impl Leader {
    /// A candidate that reports leadership through `flag`.
    pub fn new(client: kube::Client, settings: LeaseSettings, flag: Arc<AtomicBool>) -> Self {
        Leader { elector: Elector::new(client, settings), flag, term: None }
    }

    /// Wait until we hold the lease; sets the flag.
    pub async fn acquire(&mut self) {
        self.term = Some(self.elector.acquire().await);
        tracing::info!(identity = %self.elector.settings().identity, "became the identity controller's leader");
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Renew until the lease is lost; then clear the flag and return.
    pub async fn hold(&mut self) {
        if let Some(term) = self.term.take() {
            self.elector.hold(term).await;
        }
        self.flag.store(false, Ordering::SeqCst);
    }
}
