//! The IdentitySet CRD validates the spec as the API server validates a StatefulSet's: a real
//! kube-apiserver (scripts/cluster.sh) refuses each malformed spec, and kubectl says which field and why.
//! (The stand-in does not evaluate CRD schemas, so this needs the real control plane.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod real_support;
mod support;

use real_support::RealCluster;

/// An IdentitySet whose spec has `extra` (YAML at spec indentation) beside a valid selector and template.
fn set_with(extra: &str) -> String {
    format!(
        "apiVersion: roster.dev/v1\nkind: IdentitySet\nmetadata: {{name: v}}\nspec:\n  \
         selector: {{matchLabels: {{app: v}}}}\n  template: {{metadata: {{labels: {{app: v}}}}}}\n{extra}"
    )
}

#[test]
fn the_api_server_refuses_malformed_identityset_specs() {
    let cluster = RealCluster::up(&["--nodes", "1"]);
    let crd = roster_controller::identity::crd_yaml();
    let out = cluster.kubectl_as(&cluster.kubeconfig, &["apply", "-f", "-"], Some(&crd));
    assert!(out.ok, "the CRD is refused: {}", out.stderr);
    cluster.kubectl_ok(&["wait", "--for=condition=Established", "crd/identitysets.roster.dev", "--timeout=60s"]);

    // (spec lines, what kubectl must report)
    let refused = [
        ("  replicas: -1\n", "spec.replicas"),
        ("  ordinals: {start: -1}\n", "spec.ordinals.start"),
        ("  minReadySeconds: -1\n", "spec.minReadySeconds"),
        ("  revisionHistoryLimit: -1\n", "spec.revisionHistoryLimit"),
        ("  replicas: 2147483647\n  ordinals: {start: 1}\n", "replicas + ordinals.start"),
        ("  podManagementPolicy: Sometimes\n", "spec.podManagementPolicy"),
        ("  updateStrategy: {type: Whenever}\n", "spec.updateStrategy.type"),
        ("  updateStrategy: {rollingUpdate: {partition: -1}}\n", "spec.updateStrategy.rollingUpdate.partition"),
        (
            "  updateStrategy: {rollingUpdate: {maxUnavailable: 0}}\n",
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
        ),
        ("  updateStrategy: {rollingUpdate: {maxUnavailable: '150%'}}\n", "maxUnavailable"),
        ("  updateStrategy: {rollingUpdate: {maxUnavailable: 'half'}}\n", "maxUnavailable"),
        ("  updateStrategy: {rollingUpdate: {maxUnavailable: '5'}}\n", "maxUnavailable"),
        ("  updateStrategy: {type: OnDelete, rollingUpdate: {partition: 1}}\n", "only allowed with type RollingUpdate"),
        ("  persistentVolumeClaimRetentionPolicy: {whenDeleted: Keep}\n", "whenDeleted"),
        // IdentitySet-only fields.
        ("  reserveOrdinals: [-1]\n", "spec.reserveOrdinals[0]"),
        ("  reserveOrdinals: ['a-b']\n", "spec.reserveOrdinals[0]"),
        ("  reserveOrdinals: ['1-']\n", "spec.reserveOrdinals[0]"),
        ("  rolloutRecovery: Sometimes\n", "spec.rolloutRecovery"),
        ("  volumeClaimUpdatePolicy: Always\n", "spec.volumeClaimUpdatePolicy"),
        ("  updateStrategy: {rollingUpdate: {paused: maybe}}\n", "spec.updateStrategy.rollingUpdate.paused"),
    ];
    for (extra, field) in refused {
        let out =
            cluster.kubectl_as(&cluster.kubeconfig, &["apply", "--dry-run=server", "-f", "-"], Some(&set_with(extra)));
        assert!(!out.ok, "accepted:\n{extra}");
        assert!(out.stderr.contains(field), "for\n{extra}kubectl does not name {field}: {}", out.stderr);
    }

    // What a StatefulSet may hold, an IdentitySet may hold too.
    let accepted = [
        "  replicas: 0\n  ordinals: {start: 5}\n  minReadySeconds: 0\n  revisionHistoryLimit: 0\n",
        "  podManagementPolicy: Parallel\n  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 2, maxUnavailable: 3}}\n",
        "  updateStrategy: {rollingUpdate: {maxUnavailable: '100%'}}\n",
        "  updateStrategy: {type: OnDelete}\n  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Retain}\n",
        "  reserveOrdinals: [1, '3', '5-9']\n  rolloutRecovery: Replace\n  volumeClaimUpdatePolicy: InPlace\n  updateStrategy: {rollingUpdate: {paused: true, partition: 1}}\n",
        "  rolloutRecovery: Freeze\n  volumeClaimUpdatePolicy: OnClaimDelete\n",
    ];
    for extra in accepted {
        let out =
            cluster.kubectl_as(&cluster.kubeconfig, &["apply", "--dry-run=server", "-f", "-"], Some(&set_with(extra)));
        assert!(out.ok, "refused:\n{extra}{}", out.stderr);
    }
}
