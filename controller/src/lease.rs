//! Leader election on a `coordination.k8s.io/v1` Lease, shared by the identity controller and the
//! record stream: acquire the Lease when it is free or its holder stopped renewing, renew it while
//! holding it, and give up as soon as renewals fail for most of a term.
//!
//! Expiry is judged as client-go's leaderelection judges it: never by comparing our clock with the
//! `renewTime` another holder wrote (clocks differ between machines), but by when *we* last saw the
//! record change, on our own monotonic clock. A holder whose record has not changed for its
//! `leaseDurationSeconds` of our time has stopped renewing. (kube-leader-election and
//! kube-lease-manager, the maintained crates, both compare `renewTime` with the local wall clock, and
//! neither can carry the stream's epoch in `acquireTime`; see docs/design.md.)
//!
//! Each term's `acquireTime` (microseconds) is `max(now, previous acquireTime + 1µs)`, written with the
//! Lease's resourceVersion, so terms strictly increase whatever the clocks: the record stream uses it
//! as its epoch.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

/// Where the Lease lives, who we are, and the timing.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This instance's identity (holderIdentity).
    pub identity: String,
    /// How long a term lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews (and a candidate retries).
    pub retry: Duration,
}

/// One candidate for a Lease, remembering what it last saw of the record and when (monotonic).
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<(LeaseSpec, Instant)>,
}

fn micros(t: &MicroTime) -> Option<u64> {
    u64::try_from(t.0.as_microsecond()).ok()
}

fn micro_time(us: u64) -> Option<MicroTime> {
    Timestamp::from_microsecond(i64::try_from(us).ok()?).map(MicroTime).ok()
}

fn conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// What a candidate may do with a record it has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// We hold it in the term we know: renew it.
    Renew,
    /// Free, or its holder stopped renewing: take it for a new term.
    Take,
    /// Someone else holds it (or we did, in a term we no longer know).
    Held,
}

/// The decision, given the record, our term (when we think we hold it) and how long ago (our clock)
/// the record last changed.
fn verdict(spec: &LeaseSpec, identity: &str, term: Option<u64>, unchanged_for: Duration, default_secs: i32) -> Verdict {
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
    let previous = spec.acquire_time.as_ref().and_then(micros);
    if holder == Some(identity) && term.is_some() && term == previous {
        return Verdict::Renew;
    }
    let secs = u64::try_from(spec.lease_duration_seconds.unwrap_or(default_secs).max(0)).unwrap_or(0);
    if holder.is_none() || unchanged_for > Duration::from_secs(secs) { Verdict::Take } else { Verdict::Held }
}

impl Elector {
    /// A candidate that has seen nothing yet.
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        Elector { api, settings, observed: None }
    }

    /// The settings.
    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    fn seconds(&self) -> i32 {
        i32::try_from(self.settings.duration.as_secs().max(1)).unwrap_or(15)
    }

    /// Note the record as seen now; its age restarts only when it changed.
    fn observe(&mut self, spec: &LeaseSpec) -> Duration {
        match &self.observed {
            Some((seen, at)) if seen == spec => at.elapsed(),
            _ => {
                self.observed = Some((spec.clone(), Instant::now()));
                Duration::ZERO
            }
        }
    }

    /// One attempt; `term` is the term we believe we hold. Returns the term held afterwards.
    pub async fn try_acquire_or_renew(&mut self, term: Option<u64>) -> Result<Option<u64>, kube::Error> {
        let now = Timestamp::now();
        let now_us = u64::try_from(now.as_microsecond()).unwrap_or(0);
        let seconds = self.seconds();
        let Some(existing) = self.api.get_opt(&self.settings.name).await? else {
            let spec = LeaseSpec {
                holder_identity: Some(self.settings.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: micro_time(now_us),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            };
            let object = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec.clone()),
            };
            return match self.api.create(&PostParams::default(), &object).await {
                Ok(_) => {
                    self.observe(&spec);
                    Ok(Some(now_us))
                }
                Err(e) if conflict(&e) => Ok(None),
                Err(e) => Err(e),
            };
        };
        let spec = existing.spec.clone().unwrap_or_default();
        let unchanged_for = self.observe(&spec);
        let verdict = verdict(&spec, &self.settings.identity, term, unchanged_for, seconds);
        if verdict == Verdict::Held {
            return Ok(None);
        }
        let ours = verdict == Verdict::Renew;
        let previous = spec.acquire_time.as_ref().and_then(micros).unwrap_or(0);
        // A new term: strictly after the last one, even when our clock is behind its holder's.
        let epoch = if ours { previous } else { now_us.max(previous + 1) };
        let renewed = LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: micro_time(epoch),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
            ..spec
        };
        let mut object = existing;
        object.spec = Some(renewed.clone());
        match self.api.replace(&self.settings.name, &PostParams::default(), &object).await {
            Ok(_) => {
                self.observe(&renewed);
                Ok(Some(epoch))
            }
            Err(e) if conflict(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Wait until we hold the Lease; returns the term.
    pub async fn acquire(&mut self) -> u64 {
        loop {
            match self.try_acquire_or_renew(None).await {
                Ok(Some(term)) => {
                    info!(identity = %self.settings.identity, lease = %self.settings.name, term, "acquired the lease");
                    return term;
                }
                Ok(None) => {}
                Err(error) => warn!(%error, lease = %self.settings.name, "acquiring the lease failed"),
            }
            tokio::time::sleep(self.settings.retry).await;
        }
    }

    /// Renew the term until it is lost: another holder, or no renewal succeeded for a whole term less
    /// one retry (so we stop before the others may take over).
    pub async fn hold(&mut self, term: u64) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.settings.retry).await;
            match self.try_acquire_or_renew(Some(term)).await {
                Ok(Some(_)) => last_ok = Instant::now(),
                Ok(None) => break,
                Err(error) => {
                    warn!(%error, lease = %self.settings.name, "renewing the lease failed");
                    if last_ok.elapsed() + self.settings.retry >= self.settings.duration {
                        break;
                    }
                }
            }
        }
        warn!(identity = %self.settings.identity, lease = %self.settings.name, "lost the lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, acquire_us: u64, renew: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(10),
            acquire_time: micro_time(acquire_us),
            renew_time: Some(MicroTime(renew)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn another_holder_expires_by_our_observation_not_by_its_renew_time() {
        // a renewTime an hour in the past (the holder's clock is behind ours) is still a live holder
        let behind = Timestamp::from_second(Timestamp::now().as_second() - 3600).expect("timestamp");
        let s = spec("other", 5, behind);
        assert_eq!(verdict(&s, "me", None, Duration::from_secs(1), 10), Verdict::Held);
        assert_eq!(verdict(&s, "me", None, Duration::from_secs(11), 10), Verdict::Take, "unchanged for a term");
        // and one in the future (clock ahead) cannot hold it forever
        let ahead = Timestamp::from_second(Timestamp::now().as_second() + 3600).expect("timestamp");
        assert_eq!(verdict(&spec("other", 5, ahead), "me", None, Duration::from_secs(11), 10), Verdict::Take);
    }

    #[test]
    fn we_renew_only_the_term_we_hold() {
        let s = spec("me", 5, Timestamp::now());
        assert_eq!(verdict(&s, "me", Some(5), Duration::ZERO, 10), Verdict::Renew);
        assert_eq!(verdict(&s, "me", Some(4), Duration::ZERO, 10), Verdict::Held, "a term we no longer know");
        assert_eq!(verdict(&s, "me", None, Duration::ZERO, 10), Verdict::Held);
    }

    #[test]
    fn a_lease_without_holder_is_free() {
        let s = LeaseSpec { holder_identity: Some(String::new()), ..LeaseSpec::default() };
        assert_eq!(verdict(&s, "me", None, Duration::ZERO, 10), Verdict::Take);
    }
}
