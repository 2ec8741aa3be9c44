//! The EndpointSlice controller: one slice per service with a selector, listing the selected pods that
//! have an IP, with ready/serving/terminating conditions, hostname (when the pod's subdomain is the
//! service), targetRef, node, and ports resolved from named target ports.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::bootstrap::builtin;
use crate::meta::{self, path, path_str};
use crate::selector::LabelSelector;
use crate::store::{DeleteOptions, Store, Subresource};

/// Label naming the service of a slice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Our managed-by value (the upstream controller's).
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

fn slice_name(svc: &Value) -> String {
    let uid = meta::meta_str(svc, "uid");
    let h = uid.bytes().fold(5381u64, |h, b| h.wrapping_mul(33) ^ u64::from(b));
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut suffix = String::new();
    let mut n = h;
    for _ in 0..5 {
        let i = usize::try_from(n % ALPHABET.len() as u64).unwrap_or(0);
        suffix.push(char::from(ALPHABET[i]));
        n /= ALPHABET.len() as u64;
    }
    format!("{}-{suffix}", meta::name(svc))
}

fn is_ready(pod: &Value) -> bool {
    path(pod, "status.conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| path_str(c, "type") == "Ready"))
        .is_some_and(|c| path_str(c, "status") == "True")
}

fn resolve_port(target: Option<&Value>, port: i64, pods: &[&Arc<Value>]) -> Option<i64> {
    match target {
        None | Some(Value::Null) => Some(port),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => match s.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => pods.iter().find_map(|p| {
                path(p, "spec.containers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c.get("ports").and_then(Value::as_array).into_iter().flatten())
                    .find(|cp| path_str(cp, "name") == s)
                    .and_then(|cp| cp.get("containerPort").and_then(Value::as_i64))
            }),
        },
        Some(_) => None,
    }
}

fn desired(svc: &Value, pods: &[Arc<Value>]) -> Option<Value> {
    let selector = path(svc, "spec.selector").and_then(Value::as_object)?;
    if selector.is_empty() {
        return None;
    }
    let sel = LabelSelector::from_map(selector);
    let svc_name = meta::name(svc);
    let ns = meta::namespace(svc);
    let publish_not_ready = path(svc, "spec.publishNotReadyAddresses").and_then(Value::as_bool) == Some(true);
    let mut chosen: Vec<&Arc<Value>> = pods
        .iter()
        .filter(|p| meta::namespace(p) == ns && sel.matches_object(p))
        .filter(|p| !path_str(p, "status.podIP").is_empty())
        .filter(|p| !matches!(path_str(p, "status.phase"), "Failed" | "Succeeded"))
        .collect();
    chosen.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
    let endpoints: Vec<Value> = chosen
        .iter()
        .map(|p| {
            let terminating = meta::is_terminating(p);
            let serving = is_ready(p);
            let ready = publish_not_ready || (serving && !terminating);
            let mut e = json!({
                "addresses": [path_str(p, "status.podIP")],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                "targetRef": {"kind": "Pod", "namespace": ns, "name": meta::name(p), "uid": meta::meta_str(p, "uid")},
            });
            let node = path_str(p, "spec.nodeName");
            if !node.is_empty() {
                e["nodeName"] = json!(node);
            }
            let hostname = path_str(p, "spec.hostname");
            if !hostname.is_empty() && path_str(p, "spec.subdomain") == svc_name {
                e["hostname"] = json!(hostname);
            }
            e
        })
        .collect();
    let ports: Vec<Value> = path(svc, "spec.ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            let port = sp.get("port").and_then(Value::as_i64).unwrap_or(0);
            let resolved = resolve_port(sp.get("targetPort"), port, &chosen)?;
            let mut p = json!({
                "name": path_str(sp, "name"),
                "protocol": sp.get("protocol").and_then(Value::as_str).unwrap_or("TCP"),
                "port": resolved,
            });
            if let Some(ap) = sp.get("appProtocol") {
                p["appProtocol"] = ap.clone();
            }
            Some(p)
        })
        .collect();
    let mut labels = path(svc, "metadata.labels").and_then(Value::as_object).cloned().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), json!(svc_name));
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    if path_str(svc, "spec.clusterIP") == "None" {
        labels.insert("service.kubernetes.io/headless".into(), json!(""));
    }
    Some(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(svc),
            "namespace": ns,
            "labels": Value::Object(labels),
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Service", "name": svc_name, "uid": meta::meta_str(svc, "uid"),
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
}

/// What the controller owns in a slice: endpoints, ports, address type and labels.
fn content(v: &Value) -> [Option<&Value>; 4] {
    [v.get("endpoints"), v.get("ports"), v.get("addressType"), path(v, "metadata.labels")]
}

/// Marker annotation of the Endpoints objects this controller manages (the upstream one sets it too).
const TRIGGER_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// The legacy core/v1 Endpoints mirror of a slice: ready addresses, not-ready addresses, ports.
fn endpoints_for(svc: &Value, slice: &Value) -> Value {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for e in slice.get("endpoints").and_then(Value::as_array).into_iter().flatten() {
        if e.pointer("/conditions/terminating") == Some(&json!(true))
            && e.pointer("/conditions/ready") != Some(&json!(true))
        {
            continue;
        }
        let mut a =
            json!({"ip": e.pointer("/addresses/0").cloned().unwrap_or(Value::Null), "targetRef": e["targetRef"]});
        if let Some(h) = e.get("hostname") {
            a["hostname"] = h.clone();
        }
        if let Some(n) = e.get("nodeName") {
            a["nodeName"] = n.clone();
        }
        if e.pointer("/conditions/ready") == Some(&json!(true)) {
            ready.push(a);
        } else {
            not_ready.push(a);
        }
    }
    let subsets = if ready.is_empty() && not_ready.is_empty() {
        json!([])
    } else {
        let mut subset = json!({"ports": slice["ports"]});
        if !ready.is_empty() {
            subset["addresses"] = json!(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = json!(not_ready);
        }
        json!([subset])
    };
    let labels = path(svc, "metadata.labels").cloned().unwrap_or(json!({}));
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": meta::name(svc), "namespace": meta::namespace(svc), "labels": labels,
                     "annotations": {TRIGGER_ANNOTATION: meta::now_rfc3339()}},
        "subsets": subsets,
    })
}

fn sync_endpoints(store: &Store, services: &[Arc<Value>], desired_slices: &[(Arc<Value>, Value)]) {
    let ep_rt = builtin("", "endpoints");
    let (existing, _) = store.list(&ep_rt, None);
    for (svc, slice) in desired_slices {
        let want = endpoints_for(svc, slice);
        let (ns, name) = (meta::namespace(svc), meta::name(svc));
        let cur = existing.iter().find(|e| meta::namespace(e) == ns && meta::name(e) == name);
        let result = match cur {
            None => store.create(&ep_rt, ns, want).map(|_| ()),
            Some(cur)
                if cur.get("subsets") != want.get("subsets")
                    || path(cur, "metadata.labels") != path(&want, "metadata.labels") =>
            {
                store
                    .mutate(&ep_rt, ns, name, Subresource::Main, |old| {
                        let mut o = old.clone();
                        o["subsets"] = want["subsets"].clone();
                        o["metadata"]["labels"] = want["metadata"]["labels"].clone();
                        o["metadata"]["annotations"] = want["metadata"]["annotations"].clone();
                        meta::metadata_mut(&mut o).remove("resourceVersion");
                        Ok(o)
                    })
                    .map(|_| ())
            }
            Some(_) => Ok(()),
        };
        if let Err(e) = result {
            tracing::debug!(service = name, error = %e, "endpoints sync");
        }
    }
    for e in &existing {
        let managed = e.pointer(&format!("/metadata/annotations/{}", TRIGGER_ANNOTATION.replace('/', "~1"))).is_some();
        let wanted = desired_slices
            .iter()
            .any(|(svc, _)| meta::namespace(svc) == meta::namespace(e) && meta::name(svc) == meta::name(e));
        let svc_alive =
            services.iter().any(|s| meta::namespace(s) == meta::namespace(e) && meta::name(s) == meta::name(e));
        if managed && !wanted && !svc_alive {
            let _ = store.delete(&ep_rt, meta::namespace(e), meta::name(e), &DeleteOptions::default());
        }
    }
}

/// One pass: create, update or delete slices to match services and pods.
pub fn reconcile(store: &Store) {
    let services_rt = builtin("", "services");
    let pods_rt = builtin("", "pods");
    let slices_rt = builtin("discovery.k8s.io", "endpointslices");
    let (services, _) = store.list(&services_rt, None);
    let (pods, _) = store.list(&pods_rt, None);
    let (slices, _) = store.list(&slices_rt, None);
    let mut wanted: HashSet<(String, String)> = HashSet::new();
    let mut desired_slices = Vec::new();
    for svc in services.iter().filter(|s| !meta::is_terminating(s)) {
        let Some(want) = desired(svc, &pods) else { continue };
        desired_slices.push((svc.clone(), want.clone()));
        let ns = meta::namespace(svc).to_owned();
        let name = meta::name(&want).to_owned();
        wanted.insert((ns.clone(), name.clone()));
        let existing = slices.iter().find(|s| meta::namespace(s) == ns && meta::name(s) == name);
        let result = match existing {
            None => store.create(&slices_rt, &ns, want).map(|_| ()),
            Some(cur) if content(cur) != content(&want) => store
                .mutate(&slices_rt, &ns, &name, Subresource::Main, |old| {
                    let mut o = old.clone();
                    for k in ["endpoints", "ports", "addressType"] {
                        o[k] = want[k].clone();
                    }
                    o["metadata"]["labels"] = want["metadata"]["labels"].clone();
                    Ok(o)
                })
                .map(|_| ()),
            Some(_) => Ok(()),
        };
        if let Err(e) = result {
            tracing::debug!(service = meta::name(svc), error = %e, "endpointslice sync");
        }
    }
    sync_endpoints(store, &services, &desired_slices);
    for s in &slices {
        let ours = meta::labels(s).and_then(|l| l.get(MANAGED_BY_LABEL)).and_then(Value::as_str) == Some(MANAGED_BY);
        let key = (meta::namespace(s).to_owned(), meta::name(s).to_owned());
        if ours && !wanted.contains(&key) && !meta::is_terminating(s) {
            let _ = store.delete(&slices_rt, &key.0, &key.1, &DeleteOptions::default());
        }
    }
}
