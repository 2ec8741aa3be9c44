//! The EndpointSlice controller: one slice per service with a selector, listing the selected pods that
//! have an IP, with ready/serving/terminating conditions, hostname (when the pod's subdomain is the
//! service), targetRef, node, and ports resolved from named target ports.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::bootstrap::builtin;
use crate::meta::{self, path, path_str};
use crate::selector::LabelSelector;
use crate::store::{Change, DeleteOptions, Store, Subresource};

use super::Pass;

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

fn is_managed_endpoints(e: &Value) -> bool {
    path(e, "metadata.annotations").and_then(Value::as_object).is_some_and(|a| a.contains_key(TRIGGER_ANNOTATION))
}

fn is_our_slice(s: &Value) -> bool {
    meta::labels(s).and_then(|l| l.get(MANAGED_BY_LABEL)).and_then(Value::as_str) == Some(MANAGED_BY)
}

fn service_of_slice(s: &Value) -> Option<&str> {
    meta::labels(s).and_then(|l| l.get(SERVICE_NAME_LABEL)).and_then(Value::as_str)
}

/// Create or update the slice `want` (`existing` is the stored one of the same name).
fn apply_slice(store: &Store, existing: Option<&Value>, want: Value) {
    let slices_rt = builtin("discovery.k8s.io", "endpointslices");
    let (ns, name) = (meta::namespace(&want).to_owned(), meta::name(&want).to_owned());
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
        tracing::debug!(slice = name, error = %e, "endpointslice sync");
    }
}

/// Create or update the legacy Endpoints mirroring `slice` (`existing` is the stored one).
fn apply_endpoints(store: &Store, svc: &Value, slice: &Value, existing: Option<&Value>) {
    let ep_rt = builtin("", "endpoints");
    let want = endpoints_for(svc, slice);
    let (ns, name) = (meta::namespace(svc), meta::name(svc));
    let result = match existing {
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

/// One pass: the whole store on a [`Pass::Full`], otherwise only the services the changes touch.
pub fn reconcile(store: &Store, pass: Pass<'_>) {
    match pass {
        Pass::Full => reconcile_all(store),
        Pass::Changes(changes) => {
            let mut pods = PodsByNamespace::default();
            for (ns, name) in touched_services(store, changes) {
                sync_service(store, &ns, &name, pods.get(store, &ns));
            }
        }
    }
}

/// The pods of each namespace a pass has looked at, listed once per pass.
#[derive(Default)]
struct PodsByNamespace(HashMap<String, Vec<Arc<Value>>>);

impl PodsByNamespace {
    fn get(&mut self, store: &Store, ns: &str) -> &[Arc<Value>] {
        self.0.entry(ns.to_owned()).or_insert_with(|| store.list(&builtin("", "pods"), Some(ns)).0)
    }
}

/// The services whose slices and Endpoints the changes may alter.
fn touched_services(store: &Store, changes: &[Arc<Change>]) -> BTreeSet<(String, String)> {
    let services_rt = builtin("", "services");
    let mut touched = BTreeSet::new();
    let mut services_by_ns: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
    for change in changes {
        let ns = meta::namespace(&change.object).to_owned();
        match change.key.as_str() {
            "/services" => {
                touched.insert((ns, meta::name(&change.object).to_owned()));
            }
            "/pods" => {
                // a pod matters to the services selecting it now or before (labels may have changed)
                let services =
                    services_by_ns.entry(ns.clone()).or_insert_with(|| store.list(&services_rt, Some(&ns)).0);
                let versions = std::iter::once(&change.object).chain(change.prev.as_ref());
                let selects = |svc: &Value, pod: &Value| {
                    path(svc, "spec.selector")
                        .and_then(Value::as_object)
                        .is_some_and(|sel| !sel.is_empty() && LabelSelector::from_map(sel).matches_object(pod))
                };
                for pod in versions {
                    for svc in services.iter().filter(|svc| selects(svc, pod)) {
                        touched.insert((ns.clone(), meta::name(svc).to_owned()));
                    }
                }
            }
            _ => {
                let slices = std::iter::once(&change.object).chain(change.prev.as_ref());
                for svc in slices.filter(|s| is_our_slice(s)).filter_map(|s| service_of_slice(s)) {
                    touched.insert((ns.clone(), svc.to_owned()));
                }
            }
        }
    }
    touched
}

/// Bring one service's slice and Endpoints up to date. The slices of a deleted service (or of an earlier
/// service of the same name) are the garbage collector's: their owner is gone.
fn sync_service(store: &Store, ns: &str, name: &str, pods: &[Arc<Value>]) {
    let slices_rt = builtin("discovery.k8s.io", "endpointslices");
    let ep_rt = builtin("", "endpoints");
    let svc = store.get(&builtin("", "services"), ns, name).ok().filter(|s| !meta::is_terminating(s));
    let want = svc.as_deref().and_then(|s| desired(s, pods));
    match (svc.as_deref(), want) {
        (Some(svc), Some(want)) => {
            let existing = store.get(&slices_rt, ns, meta::name(&want)).ok();
            let existing_ep = store.get(&ep_rt, ns, name).ok();
            apply_endpoints(store, svc, &want, existing_ep.as_deref());
            apply_slice(store, existing.as_deref(), want);
        }
        // the selector was removed: the user manages its endpoints from now on
        (Some(svc), None) => {
            if store.get(&slices_rt, ns, &slice_name(svc)).is_ok_and(|s| is_our_slice(&s)) {
                let _ = store.delete(&slices_rt, ns, &slice_name(svc), &DeleteOptions::default());
            }
        }
        (None, _) => {
            if store.get(&ep_rt, ns, name).is_ok_and(|ep| is_managed_endpoints(&ep)) {
                let _ = store.delete(&ep_rt, ns, name, &DeleteOptions::default());
            }
        }
    }
}

/// The whole store: every service's slice and Endpoints, and no slice or managed Endpoints without a
/// service.
fn reconcile_all(store: &Store) {
    let slices_rt = builtin("discovery.k8s.io", "endpointslices");
    let ep_rt = builtin("", "endpoints");
    let (services, _) = store.list(&builtin("", "services"), None);
    let (pods, _) = store.list(&builtin("", "pods"), None);
    let (slices, _) = store.list(&slices_rt, None);
    let (endpoints, _) = store.list(&ep_rt, None);
    let key = |v: &Arc<Value>| (meta::namespace(v).to_owned(), meta::name(v).to_owned());
    let mut pods_by_ns: HashMap<&str, Vec<Arc<Value>>> = HashMap::new();
    for p in &pods {
        pods_by_ns.entry(meta::namespace(p)).or_default().push(p.clone());
    }
    let slices_by_key: HashMap<_, _> = slices.iter().map(|s| (key(s), s)).collect();
    let endpoints_by_key: HashMap<_, _> = endpoints.iter().map(|e| (key(e), e)).collect();
    let alive: HashSet<_> = services.iter().map(key).collect();
    let mut wanted_slices: HashSet<(String, String)> = HashSet::new();
    let mut wanted_endpoints: HashSet<(String, String)> = HashSet::new();
    for svc in services.iter().filter(|s| !meta::is_terminating(s)) {
        let ns_pods = pods_by_ns.get(meta::namespace(svc)).map_or(&[][..], Vec::as_slice);
        let Some(want) = desired(svc, ns_pods) else { continue };
        let slice_key = (meta::namespace(svc).to_owned(), meta::name(&want).to_owned());
        apply_endpoints(store, svc, &want, endpoints_by_key.get(&key(svc)).map(|e| e.as_ref()));
        apply_slice(store, slices_by_key.get(&slice_key).map(|s| s.as_ref()), want);
        wanted_endpoints.insert(key(svc));
        wanted_slices.insert(slice_key);
    }
    for e in &endpoints {
        let k = key(e);
        if is_managed_endpoints(e) && !wanted_endpoints.contains(&k) && !alive.contains(&k) {
            let _ = store.delete(&ep_rt, &k.0, &k.1, &DeleteOptions::default());
        }
    }
    for s in &slices {
        let k = key(s);
        if is_our_slice(s) && !wanted_slices.contains(&k) && !meta::is_terminating(s) {
            let _ = store.delete(&slices_rt, &k.0, &k.1, &DeleteOptions::default());
        }
    }
}
