//! Discovery documents: /version, /api, /apis and the per-group-version resource lists.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::resources::{Registry, ResourceType};
use crate::status::ApiError;

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-roster-sim",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn api_versions(addr: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}],
    })
}

fn groups(reg: &Registry) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in reg.all().iter().filter(|t| !t.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) => {
                if !vs.contains(&t.version) {
                    vs.push(t.version.clone());
                }
            }
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    out
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": vs.clone(), "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// `/apis`.
pub fn api_groups(reg: &Registry) -> Value {
    let gs: Vec<Value> = groups(reg).iter().map(|(g, vs)| group_json(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

/// `/apis/<group>`.
pub fn api_group(reg: &Registry, group: &str) -> Result<Value, ApiError> {
    let (g, vs) = groups(reg)
        .into_iter()
        .find(|(g, _)| g == group)
        .ok_or_else(|| ApiError::no_route(&format!("/apis/{group}")))?;
    let mut v = group_json(&g, &vs);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Ok(v)
}

fn resource_json(t: &ResourceType) -> Vec<Value> {
    let verbs = if t.group == "authorization.k8s.io" {
        json!(["create"])
    } else {
        json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])
    };
    let mut main = json!({
        "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind, "verbs": verbs,
    });
    if !t.short_names.is_empty() {
        main["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        main["categories"] = json!(t.categories);
    }
    let mut out = vec![main];
    if t.status {
        out.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                        "kind": t.kind, "verbs": ["get", "patch", "update"]}));
    }
    if t.scale.is_some() {
        out.push(json!({"name": format!("{}/scale", t.plural), "singularName": "", "namespaced": t.namespaced,
                        "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    if t.group.is_empty() && t.plural == "namespaces" {
        out.push(json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false,
                        "kind": "Namespace", "verbs": ["update"]}));
    }
    out
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Result<Value, ApiError> {
    let all = reg.all();
    let types: Vec<&ResourceType> = all.iter().filter(|t| t.group == group && t.version == version).collect();
    let gv = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    if types.is_empty() {
        return Err(ApiError::no_route(&gv));
    }
    let resources: Vec<Value> = types.iter().flat_map(|t| resource_json(t)).collect();
    Ok(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}
