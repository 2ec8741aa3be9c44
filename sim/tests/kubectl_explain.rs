//! End-to-end: `kubectl explain` reads the OpenAPI v3 documents, and the server validates fields against
//! the same schemas (`--validate=strict|warn|false`).

mod common;

use common::{kubectl, kubectl_ok, kubectl_stdin, start};

#[tokio::test(flavor = "multi_thread")]
async fn explain_prints_the_upstream_field_documentation() {
    let sim = start().await;
    let out = kubectl_ok(&sim, &["explain", "statefulset"]).await;
    assert!(out.contains("KIND:       StatefulSet"), "{out}");
    assert!(out.contains("StatefulSet represents a set of pods with consistent identities."), "{out}");
    assert!(!out.contains("-required-"), "metadata is not required on a real server: {out}");
    let out = kubectl_ok(&sim, &["explain", "statefulset.spec"]).await;
    assert!(out.contains("serviceName\t<string>"), "{out}");
    assert!(out.contains("selector\t<LabelSelector> -required-"), "{out}");
    let out = kubectl_ok(&sim, &["explain", "statefulset.spec.updateStrategy"]).await;
    assert!(out.contains("FIELD: updateStrategy <StatefulSetUpdateStrategy>"), "{out}");
    assert!(out.contains("rollingUpdate\t<RollingUpdateStatefulSetStrategy>"), "{out}");
    assert!(out.contains("Type indicates the type of the StatefulSetUpdateStrategy. Default is"), "{out}");
    let out = kubectl_ok(&sim, &["explain", "pods.spec.containers.ports"]).await;
    assert!(out.contains("FIELD: ports <[]ContainerPort>"), "{out}");
    assert!(out.contains("containerPort\t<integer> -required-"), "{out}");
    let out = kubectl_ok(&sim, &["explain", "svc.spec.ports.targetPort"]).await;
    assert!(out.contains("<IntOrString>"), "{out}");
    for kind in [
        "namespace",
        "node",
        "pvc",
        "pv",
        "cm",
        "secret",
        "sa",
        "ev",
        "endpoints",
        "endpointslice",
        "sc",
        "lease",
        "crd",
        "controllerrevision",
    ] {
        kubectl_ok(&sim, &["explain", kind]).await;
    }
    let out = kubectl_ok(&sim, &["explain", "deploy.spec.strategy"]).await;
    assert!(out.contains("The deployment strategy to use to replace existing pods with new ones."), "{out}");
    assert!(out.contains("rollingUpdate\t<RollingUpdateDeployment>"), "{out}");
    let out = kubectl_ok(&sim, &["explain", "rs.status"]).await;
    assert!(out.contains("fullyLabeledReplicas\t<integer>"), "{out}");
    let out = kubectl_ok(&sim, &["explain", "events", "--api-version=events.k8s.io/v1"]).await;
    assert!(out.contains("GROUP:      events.k8s.io"), "{out}");
    sim.shutdown().await;
}

const BAD: &str = r"
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
  namespace: default
  labelz: {a: b}
data: {k: v}
bogus: 1
";

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_are_rejected_warned_or_dropped() {
    let sim = start().await;
    let out = kubectl_stdin(&sim, &["apply", "-f", "-"], Some(BAD)).await;
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains(
            r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "bogus", unknown field "metadata.labelz""#
        ),
        "{}",
        out.stderr
    );
    let out = kubectl_stdin(&sim, &["apply", "--validate=warn", "-f", "-"], Some(BAD)).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stderr.contains(r#"Warning: unknown field "bogus""#), "{}", out.stderr);
    assert!(out.stderr.contains(r#"Warning: unknown field "metadata.labelz""#), "{}", out.stderr);
    // the unknown fields are not stored, as a real server's typed decoding drops them
    let stored = kubectl_ok(&sim, &["get", "cm", "cm", "-o", "jsonpath={.bogus}{.metadata.labelz}{.data.k}"]).await;
    assert_eq!(stored, "v");
    // an update with the same unknown fields goes through as a strategic merge patch
    let out = kubectl_stdin(&sim, &["apply", "-f", "-"], Some(&BAD.replace("{k: v}", "{k: w}"))).await;
    assert!(out.stderr.contains(r#"strict decoding error: unknown field "bogus""#), "{}", out.stderr);
    let out =
        kubectl_stdin(&sim, &["apply", "--validate=false", "-f", "-"], Some(&BAD.replace("{k: v}", "{k: w}"))).await;
    assert!(out.ok && !out.stderr.contains("Warning"), "{}", out.stderr);
    let out = kubectl_stdin(&sim, &["apply", "--server-side", "-f", "-"], Some(BAD)).await;
    assert!(out.stderr.contains(".bogus: field not declared in schema"), "{}", out.stderr);
    let out = kubectl(&sim, &["get", "cm", "cm", "-o", "jsonpath={.data.k}"]).await;
    assert_eq!(out.stdout, "w");
    sim.shutdown().await;
}
