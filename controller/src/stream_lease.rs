//! Who serves the record stream: only the holder of a `coordination.k8s.io/v1` Lease, and each term of
//! holding it is a new epoch, written into the Lease as its `acquireTime` (microseconds).
//!
//! A new holder picks `max(now, previous acquireTime + 1µs)` and writes it with the Lease's
//! resourceVersion (optimistic concurrency), so epochs strictly increase from term to term whatever the
//! clocks say, and survive the Lease being deleted (then the clock carries on). Replicas compare
//! (epoch, generation) and refuse to go back, so whichever controller they reach, history only moves on.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

use crate::hub::Hub;

#[derive(Debug, Clone)]
pub struct StreamLease {
    pub namespace: String,
    pub name: String,
    /// This instance's holderIdentity.
    pub identity: String,
    /// How long a term lasts without renewal.
    pub duration: Duration,
}

impl StreamLease {
    /// Renewals (and attempts to acquire) happen this often.
    fn retry(&self) -> Duration {
        (self.duration / 5).max(Duration::from_millis(200))
    }
}

/// The result of one attempt: the term's epoch when we hold the Lease afterwards.
async fn try_hold(api: &Api<Lease>, lease: &StreamLease, term: Option<u64>) -> Result<Option<u64>, kube::Error> {
    let now = Timestamp::now();
    let now_us = u64::try_from(now.as_microsecond()).unwrap_or(0);
    let seconds = i32::try_from(lease.duration.as_secs().max(1)).unwrap_or(15);
    let micro = |us: u64| Timestamp::from_microsecond(i64::try_from(us).unwrap_or(i64::MAX)).map(MicroTime).ok();
    let Some(existing) = api.get_opt(&lease.name).await? else {
        let object = Lease {
            metadata: ObjectMeta {
                name: Some(lease.name.clone()),
                namespace: Some(lease.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(lease.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: micro(now_us),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &object).await {
            Ok(_) => Ok(Some(now_us)),
            Err(e) if conflict(&e) => Ok(None),
            Err(e) => Err(e),
        };
    };
    let spec = existing.spec.clone().unwrap_or_default();
    let previous = spec.acquire_time.as_ref().and_then(|t| u64::try_from(t.0.as_microsecond()).ok()).unwrap_or(0);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(lease.identity.as_str()) && term == Some(previous);
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(seconds));
    let expired = spec.renew_time.as_ref().is_none_or(|t| now.as_second() - t.0.as_second() > duration);
    if !(ours || holder.is_none() || expired) {
        return Ok(None);
    }
    // A new term: strictly after the last one, even when our clock is behind its holder's.
    let epoch = if ours { previous } else { now_us.max(previous + 1) };
    let mut object = existing;
    object.spec = Some(LeaseSpec {
        holder_identity: Some(lease.identity.clone()),
        lease_duration_seconds: Some(seconds),
        acquire_time: micro(epoch),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
        ..spec
    });
    match api.replace(&lease.name, &PostParams::default(), &object).await {
        Ok(_) => Ok(Some(epoch)),
        Err(e) if conflict(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Competes for the Lease forever: while holding it, the hub publishes under the term's epoch and
/// serves the stream; on losing it (another holder, or no renewal for most of a term) it stops serving
/// at once, so that two controllers never serve at the same time for longer than a renewal period.
pub async fn run(client: kube::Client, lease: StreamLease, hub: Hub) {
    let api: Api<Lease> = Api::namespaced(client, &lease.namespace);
    let retry = lease.retry();
    loop {
        let epoch = loop {
            match try_hold(&api, &lease, None).await {
                Ok(Some(epoch)) => break epoch,
                Ok(None) => {}
                Err(error) => warn!(%error, lease = %lease.name, "acquiring the stream lease failed"),
            }
            tokio::time::sleep(retry).await;
        };
        info!(identity = %lease.identity, lease = %lease.name, epoch, "serving the record stream");
        hub.begin_term(epoch);
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(retry).await;
            match try_hold(&api, &lease, Some(epoch)).await {
                Ok(Some(_)) => last_ok = Instant::now(),
                Ok(None) => break,
                Err(error) => {
                    warn!(%error, "renewing the stream lease failed");
                    // Stop before the Lease could have expired for the others.
                    if last_ok.elapsed() + retry >= lease.duration {
                        break;
                    }
                }
            }
        }
        hub.end_term();
        warn!(identity = %lease.identity, "lost the stream lease: not serving the record stream");
    }
}
