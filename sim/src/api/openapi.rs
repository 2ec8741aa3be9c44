//! A minimal OpenAPI v3 document: enough for kubectl to learn that the server validates fields itself
//! (the `fieldValidation` parameter of each PATCH operation), so `kubectl apply` needs no
//! `--validate=false`.

use serde_json::{Map, Value, json};

use crate::resources::{Registry, ResourceType};
use crate::status::ApiError;

fn gv_key(t: &ResourceType) -> String {
    if t.group.is_empty() { format!("api/{}", t.version) } else { format!("apis/{}/{}", t.group, t.version) }
}

/// `/openapi/v3`: the index of group-version documents.
pub fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for t in reg.all().iter() {
        let key = gv_key(t);
        let url = format!("/openapi/v3/{key}?hash={}", doc_hash(reg, &key));
        paths.insert(key, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

fn doc_hash(reg: &Registry, key: &str) -> String {
    let n: usize = reg.all().iter().filter(|t| gv_key(t) == key).map(|t| t.plural.len() + t.kind.len()).sum();
    format!("{n:016X}")
}

fn operation(t: &ResourceType, action: &str) -> Value {
    json!({
        "operationId": format!("{action}{}", t.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
        "parameters": [
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ],
        "responses": {"200": {"description": "OK"}},
    })
}

/// `/openapi/v3/<api/v1 | apis/group/version>`.
pub fn group_version(reg: &Registry, key: &str) -> Result<Value, ApiError> {
    let all = reg.all();
    let types: Vec<&ResourceType> = all.iter().filter(|t| gv_key(t) == key).collect();
    if types.is_empty() {
        return Err(ApiError::no_route(&format!("/openapi/v3/{key}")));
    }
    let mut paths = Map::new();
    for t in types {
        let base = if t.namespaced {
            format!("/{key}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("/{key}/{}", t.plural)
        };
        paths.insert(base.clone(), json!({"post": operation(t, "post")}));
        paths.insert(format!("{base}/{{name}}"), json!({"put": operation(t, "put"), "patch": operation(t, "patch")}));
    }
    Ok(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
