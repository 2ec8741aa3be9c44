//! Kubernetes strategic merge patch: maps merge recursively, lists of the built-in types merge by their
//! merge keys, and the `$patch`, `$setElementOrder`, `$retainKeys` and `$deleteFromPrimitiveList`
//! directives apply.

use serde_json::{Map, Value};

use crate::status::ApiError;

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// The merge key of a list field, judged by its name and (for `ports`) its elements.
pub(super) fn merge_key(field: &str, sample: &[&Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "hostAliases" => "ip",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if sample.iter().any(|e| e.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Lists of scalars merged as sets.
fn is_primitive_merge_list(field: &str) -> bool {
    field == "finalizers"
}

/// Apply a strategic merge patch.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => merge_map(d, p).map(Value::Object),
        (_, Value::Object(p)) => merge_map(&Map::new(), p).map(Value::Object),
        (_, other) => Ok(other.clone()),
    }
}

fn strip_directives(p: &Map<String, Value>) -> Map<String, Value> {
    p.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn merge_map(doc: &Map<String, Value>, patch: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        return Ok(strip_directives(patch));
    }
    let mut out = doc.clone();
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(SET_ORDER) {
            orders.push((field.to_owned(), v.as_array().cloned().unwrap_or_default()));
            continue;
        }
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) {
            let remove = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = out.get_mut(field) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let merged = match (out.get(k), v) {
            (_, Value::Object(pm)) if pm.get("$patch").and_then(Value::as_str) == Some("delete") => {
                out.remove(k);
                continue;
            }
            (Some(Value::Object(dm)), Value::Object(pm)) => Value::Object(merge_map(dm, pm)?),
            (None | Some(Value::Null), Value::Object(pm)) => Value::Object(merge_map(&Map::new(), pm)?),
            (existing, Value::Array(pl)) => {
                let dl = match existing {
                    Some(Value::Array(dl)) => dl.clone(),
                    _ => Vec::new(),
                };
                Value::Array(merge_list(k, &dl, pl)?)
            }
            (_, other) => other.clone(),
        };
        out.insert(k.clone(), merged);
    }
    for (field, order) in orders {
        if let Some(Value::Array(list)) = out.get_mut(&field) {
            apply_order(&field, list, &order);
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(out)
}

fn merge_list(field: &str, doc: &[Value], patch: &[Value]) -> Result<Vec<Value>, ApiError> {
    let replace = patch.iter().any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"));
    let items: Vec<&Value> =
        patch.iter().filter(|e| e.get("$patch").and_then(Value::as_str) != Some("replace")).collect();
    if replace {
        return Ok(items
            .iter()
            .map(|e| match e {
                Value::Object(m) => Value::Object(strip_directives(m)),
                other => (*other).clone(),
            })
            .collect());
    }
    if is_primitive_merge_list(field) {
        let mut out = doc.to_vec();
        for e in items {
            if !out.contains(e) {
                out.push(e.clone());
            }
        }
        return Ok(out);
    }
    let sample: Vec<&Value> = doc.iter().chain(items.iter().copied()).collect();
    let all_objects = !sample.is_empty() && sample.iter().all(|e| e.is_object());
    let Some(key) = merge_key(field, &sample).filter(|_| all_objects) else {
        return Ok(items.into_iter().cloned().collect());
    };
    let mut out = doc.to_vec();
    for e in items {
        let Some(pm) = e.as_object() else { continue };
        let id = pm.get(key).cloned().unwrap_or(Value::Null);
        let pos = out.iter().position(|d| d.get(key) == Some(&id));
        let delete = pm.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                let dm = out[i].as_object().cloned().unwrap_or_default();
                out[i] = Value::Object(merge_map(&dm, pm)?);
            }
            (None, false) => out.push(Value::Object(merge_map(&Map::new(), pm)?)),
        }
    }
    Ok(out)
}

fn apply_order(field: &str, list: &mut [Value], order: &[Value]) {
    let sample: Vec<&Value> = list.iter().collect();
    let key = merge_key(field, &sample);
    let rank = |v: &Value| -> usize {
        order
            .iter()
            .position(|o| match key {
                Some(k) => o.get(k).is_some() && o.get(k) == v.get(k),
                None => o == v,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn behaviour_table() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}, "metadata": {"finalizers": ["f1"], "labels": {"x": "1"}}});
        let cases = [
            (
                json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}),
                json!({"spec": {"containers": [
                    {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
                    {"name": "b", "image": "b:2"}
                ]}, "metadata": {"finalizers": ["f1"], "labels": {"x": "1"}}}),
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}, "metadata": {"labels": {"x": null, "y": "2"}, "finalizers": ["f2"]}}),
                json!({"spec": {"containers": [{"name": "b", "image": "b:1"}]},
                       "metadata": {"finalizers": ["f1", "f2"], "labels": {"y": "2"}}}),
            ),
            (
                json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                                "containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}]}}),
                json!({"spec": {"containers": [
                    {"name": "b", "image": "b:1"},
                    {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}
                ]}, "metadata": {"finalizers": ["f1"], "labels": {"x": "1"}}}),
            ),
            (
                json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "c"}]},
                       "metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}}),
                json!({"spec": {"containers": [{"name": "c", "image": "c"}]},
                       "metadata": {"finalizers": [], "labels": {"x": "1"}}}),
            ),
        ];
        for (patch, want) in cases {
            assert_eq!(apply(&pod, &patch).expect("applies"), want, "{patch}");
        }
    }
}
