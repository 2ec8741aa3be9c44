//! Leader election on a `coordination.k8s.io/v1` Lease: acquire it when free or expired, renew it while
//! leading, and drop the leadership flag (which every write checks) as soon as a renewal is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use super::error::{Error, kube_conflict};

/// Where the lease lives and who we are.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This instance's identity (holderIdentity).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews (and a candidate retries).
    pub retry: Duration,
}

impl Default for LeaseSettings {
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
    api: Api<Lease>,
    settings: LeaseSettings,
    flag: Arc<AtomicBool>,
}

impl Leader {
    /// A candidate that reports leadership through `flag`.
    pub fn new(client: kube::Client, settings: LeaseSettings, flag: Arc<AtomicBool>) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        Leader { api, settings, flag }
    }

    fn secs(&self) -> i32 {
        i32::try_from(self.settings.duration.as_secs().max(1)).unwrap_or(15)
    }

    /// One attempt: `true` when we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        let now = Timestamp::now();
        let me = self.settings.identity.clone();
        let Some(existing) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(self.secs()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if kube_conflict(&e) => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = existing.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(me.as_str());
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(self.secs()));
        let expired = spec.renew_time.as_ref().is_none_or(|t| now.as_second() - t.0.as_second() > duration);
        if !(ours || holder.is_none() || expired) {
            return Ok(false);
        }
        let mut lease = existing.clone();
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(self.secs()),
            acquire_time: if ours { spec.acquire_time.clone() } else { Some(MicroTime(now)) },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
            ..spec
        });
        match self.api.replace(&self.settings.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) if kube_conflict(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Wait until we hold the lease; sets the flag.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.settings.identity, lease = %self.settings.name, "became the leader");
                    self.flag.store(true, Ordering::SeqCst);
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, lease = %self.settings.name, "acquiring the lease failed"),
            }
            tokio::time::sleep(self.settings.retry).await;
        }
    }

    /// Renew until the lease is lost (someone else holds it, or no renewal succeeded for a whole lease
    /// duration); then clear the flag and return.
    pub async fn hold(&self) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.settings.retry).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = Instant::now(),
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the lease failed");
                    // Stop writing before the lease could have expired for the others.
                    if last_ok.elapsed() + self.settings.retry >= self.settings.duration {
                        break;
                    }
                }
            }
        }
        self.flag.store(false, Ordering::SeqCst);
        tracing::warn!(identity = %self.settings.identity, "lost the lease");
    }
}
