//! The identity controller owning apps/v1 StatefulSets, driven with the real kubectl against the
//! in-process stand-in: one test per seed workflow, asserting the observable order.
#![allow(clippy::unwrap_used)]

mod identity_support;

use identity_support::Kind;
use identity_support::scenarios as s;

const K: Kind = Kind::StatefulSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_pods_in_order_with_claims_and_dns() {
    s::create_in_order(K, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_in_order_and_down_highest_first() {
    s::scale_up_and_down(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pod_returns_with_same_name_new_ip_and_dns_follows() {
    s::delete_pod_returns(K, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_image_rolls_in_reverse_order_one_at_a_time() {
    s::rolling_update(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_canary_restore_and_finish() {
    s::partition_canary(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_moves_only_deleted_pods() {
    s::on_delete(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_and_deletes_in_bursts() {
    s::parallel_burst(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_set_keeps_claims_and_reapply_rebinds_them() {
    s::delete_set_and_reapply(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_policy_delete_on_scale_down_and_deletion() {
    s::retention_delete(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_policy_retain_on_scale_delete_on_deletion() {
    s::retention_mixed(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unready_pod_blocks_scaling_and_rollout() {
    s::unready_pod_blocks(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_mid_rollout_resumes_in_order() {
    s::controller_killed_mid_rollout(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pod_is_replaced() {
    s::failed_pod_replaced(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_seconds_and_ordinals_start() {
    s::min_ready_seconds_and_start_ordinal(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_unavailable_rolls_two_at_a_time() {
    s::max_unavailable(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_undo_returns_to_the_previous_revision() {
    s::rollout_undo(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_history_limit_trims_old_revisions() {
    s::history_limit(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_every_pod_brings_them_back_in_order() {
    s::delete_all_pods_returns_in_order(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_writes_and_a_standby_takes_over() {
    s::only_the_leader_writes(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_pods_are_adopted_by_the_set_applied_again() {
    s::orphaned_pods_are_adopted(K).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_rolls_every_pod() {
    s::rollout_restart(K).await;
}
