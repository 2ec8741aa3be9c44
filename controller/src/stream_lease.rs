//! Who serves the record stream: only the holder of a `coordination.k8s.io/v1` Lease, and each term of
//! holding it is a new epoch, the term's `acquireTime` in microseconds ([`crate::lease`]: strictly
//! increasing from term to term whatever the clocks, and past every earlier term when the Lease is
//! deleted, since the clock carries on). Replicas compare (epoch, generation) and refuse to go back, so
//! whichever controller they reach, history only moves on.

use std::time::Duration;

use tracing::{info, warn};

use crate::hub::Hub;
use crate::lease::{Elector, LeaseSettings};

/// The retry period of a stream Lease whose term is `duration`: renewals (and attempts to acquire)
/// five times a term.
pub fn retry(duration: Duration) -> Duration {
    (duration / 5).max(Duration::from_millis(200))
}

/// Competes for the Lease forever: while holding it, the hub publishes under the term's epoch and
/// serves the stream; on losing it (another holder, or no renewal for most of a term) it stops serving
/// at once, so that two controllers never serve at the same time for longer than a renewal period.
pub async fn run(client: kube::Client, lease: LeaseSettings, hub: Hub) {
    let mut elector = Elector::new(client, lease);
    loop {
        let epoch = elector.acquire().await;
        info!(identity = %elector.settings().identity, epoch, "serving the record stream");
        hub.begin_term(epoch);
        elector.hold(epoch).await;
        hub.end_term();
        warn!(identity = %elector.settings().identity, "not serving the record stream");
    }
}
