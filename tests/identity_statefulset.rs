//! The identity controller owning apps/v1 StatefulSets, driven with the real kubectl against the
//! in-process stand-in: one test per seed workflow, asserting the observable order.
#![allow(clippy::unwrap_used)]

mod identity_support;

use identity_support::Kind;
use identity_support::scenarios as s;

const K: Kind = Kind::StatefulSet;

identity_support::seed_scenarios!(K);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pod_returns_with_same_name_new_ip_and_dns_follows() {
    s::delete_pod_returns(K, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_rolls_every_pod() {
    s::rollout_restart(K).await;
}
