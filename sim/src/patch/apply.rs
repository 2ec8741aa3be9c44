//! Server-side apply, simplified: the applied configuration is merged (strategic-merge rules), and the
//! fields a manager applied before but leaves out now are removed, unless another applier still claims
//! them. Each applier's fields are kept in `metadata.managedFields` in the real `FieldsV1` form. Conflicts
//! with other managers are not detected (every apply is forced).

use serde_json::{Map, Value, json};

use super::strategic;
use crate::status::ApiError;

/// The `FieldsV1` set of the fields a configuration sets.
pub fn fields_of(config: &Value) -> Value {
    let mut out = Map::new();
    if let Value::Object(m) = config {
        for (k, v) in m {
            if matches!(k.as_str(), "apiVersion" | "kind") || k.starts_with('$') {
                continue;
            }
            out.insert(format!("f:{k}"), field_value(k, v));
        }
    }
    Value::Object(out)
}

fn field_value(name: &str, v: &Value) -> Value {
    match v {
        Value::Object(_) => fields_of(v),
        Value::Array(items) => {
            let refs: Vec<&Value> = items.iter().collect();
            match strategic::merge_key(name, &refs) {
                Some(key) if items.iter().all(Value::is_object) => {
                    let mut out = Map::new();
                    for item in items {
                        let id = json!({ key: item.get(key).cloned().unwrap_or(Value::Null) });
                        let mut inner = match fields_of(item) {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        inner.insert(".".into(), json!({}));
                        out.insert(format!("k:{id}"), Value::Object(inner));
                    }
                    Value::Object(out)
                }
                _ => json!({}),
            }
        }
        _ => json!({}),
    }
}

/// Remove from `obj` the fields in `old` that are in neither `new` nor `keep`.
fn prune(obj: &mut Value, old: &Value, new: &Value, keep: &[&Value]) {
    let (Value::Object(old_m), Some(map)) = (old, obj.as_object_mut()) else { return };
    for (fk, old_child) in old_m {
        let Some(field) = fk.strip_prefix("f:") else { continue };
        let new_child = new.get(fk);
        let kept: Vec<&Value> = keep.iter().filter_map(|k| k.get(fk)).collect();
        match new_child {
            None if kept.is_empty() => {
                map.remove(field);
            }
            _ => {
                let empty = json!({});
                let new_child = new_child.unwrap_or(&empty);
                match map.get_mut(field) {
                    Some(Value::Array(items)) => prune_list(items, old_child, new_child, &kept),
                    Some(child @ Value::Object(_)) => prune(child, old_child, new_child, &kept),
                    _ => {}
                }
            }
        }
    }
}

fn prune_list(items: &mut Vec<Value>, old: &Value, new: &Value, keep: &[&Value]) {
    let Value::Object(old_m) = old else { return };
    for (kk, old_child) in old_m {
        let Some(id) = kk.strip_prefix("k:").and_then(|j| serde_json::from_str::<Map<String, Value>>(j).ok()) else {
            continue;
        };
        let matches = |item: &Value| id.iter().all(|(k, v)| item.get(k) == Some(v));
        let kept: Vec<&Value> = keep.iter().filter_map(|k| k.get(kk)).collect();
        match new.get(kk) {
            None if kept.is_empty() => items.retain(|i| !matches(i)),
            new_child => {
                let empty = json!({});
                let new_child = new_child.unwrap_or(&empty);
                for item in items.iter_mut().filter(|i| matches(i)) {
                    prune(item, old_child, new_child, &kept);
                }
            }
        }
    }
}

fn managed(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// Apply `config` as `manager` onto `current` (`Null` when the object does not exist yet).
pub fn apply(current: &Value, config: &Value, manager: &str, now: &str) -> Result<Value, ApiError> {
    if !config.is_object() {
        return Err(ApiError::bad_request("an apply configuration must be an object"));
    }
    let new_fields = fields_of(config);
    let entries = managed(current);
    let is_mine = |e: &Value| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Apply")
    };
    let old_fields = entries.iter().find(|e| is_mine(e)).and_then(|e| e.get("fieldsV1")).cloned().unwrap_or(json!({}));
    let others: Vec<Value> = entries
        .iter()
        .filter(|e| !is_mine(e) && e.get("operation").and_then(Value::as_str) == Some("Apply"))
        .filter_map(|e| e.get("fieldsV1").cloned())
        .collect();
    let keep: Vec<&Value> = others.iter().collect();
    let mut base = current.clone();
    prune(&mut base, &old_fields, &new_fields, &keep);
    let mut merged = strategic::apply(&base, config)?;
    let mut entries: Vec<Value> = entries.into_iter().filter(|e| !is_mine(e)).collect();
    entries.push(json!({
        "manager": manager, "operation": "Apply",
        "apiVersion": config.get("apiVersion").cloned().unwrap_or(Value::Null),
        "time": now, "fieldsType": "FieldsV1", "fieldsV1": new_fields,
    }));
    if let Some(m) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("managedFields".into(), Value::Array(entries));
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reapplying_without_a_field_removes_it() {
        let first = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}},
                           "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "E", "value": "1"}]},
                                                   {"name": "d", "image": "j"}]}});
        let live = apply(&Value::Null, &first, "kubectl", "t").expect("apply");
        let mut live = live;
        // another writer's field survives re-applies
        live["spec"]["nodeName"] = json!("n1");
        let second = json!({"metadata": {"name": "a", "labels": {"x": "1"}},
                            "spec": {"containers": [{"name": "c", "image": "i2"}]}});
        let out = apply(&live, &second, "kubectl", "t").expect("apply");
        assert_eq!(out["metadata"]["labels"], json!({"x": "1"}));
        assert_eq!(out["spec"]["containers"], json!([{"name": "c", "image": "i2"}]));
        assert_eq!(out["spec"]["nodeName"], "n1");
        // a second applier keeps what it applied when the first drops it
        let other = apply(&out, &json!({"metadata": {"labels": {"team": "t"}}}), "other", "t").expect("apply");
        let third = apply(&other, &json!({"metadata": {"name": "a"}}), "kubectl", "t").expect("apply");
        assert_eq!(third["metadata"]["labels"], json!({"team": "t"}));
        let managers: Vec<&str> = third["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(managers, ["other", "kubectl"]);
    }
}
