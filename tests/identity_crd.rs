//! The identity controller's own kind, IdentitySet.roster.dev/v1: the CRD file matches `crd_yaml()`, and
//! the seed workflows pass with the CRD kind as with StatefulSets.
#![allow(clippy::unwrap_used)]

mod identity_support;

use identity_support::Kind;
use identity_support::scenarios as s;

const K: Kind = Kind::IdentitySet;

#[test]
fn deploy_crd_file_is_crd_yaml() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crd/identitysets.roster.dev.yaml");
    let file = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        file,
        roster_controller::identity::crd_yaml(),
        "regenerate with: cargo test --test identity_crd regenerate -- --ignored"
    );
    let crd: serde_json::Value = serde_saphyr::from_str(&file).unwrap();
    assert_eq!(crd["metadata"]["name"], "identitysets.roster.dev");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "idset");
}

/// Writes deploy/crd/identitysets.roster.dev.yaml from `crd_yaml()`.
#[test]
#[ignore = "writes the CRD file"]
fn regenerate() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crd/identitysets.roster.dev.yaml");
    std::fs::write(path, roster_controller::identity::crd_yaml()).unwrap();
}

identity_support::seed_scenarios!(K);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pod_returns_with_same_name() {
    s::delete_pod_returns(K, false).await;
}
