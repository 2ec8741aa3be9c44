//! How objects are presented: the shape the client asked for (object, Table, PartialObjectMetadata), and
//! version conversion where two API versions share one storage (`events.k8s.io/v1` Events are stored as
//! core/v1 Events, as in the real server, so both `kubectl get events` and event recorders see them).

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::resources::ResourceType;

/// What the client's Accept header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The objects themselves.
    Object,
    /// A `meta.k8s.io/v1 Table`.
    Table,
    /// `PartialObjectMetadata` (metadata only).
    Metadata,
}

/// The shape from an Accept header.
pub fn shape(accept: &str) -> Shape {
    if accept.contains("as=Table") {
        Shape::Table
    } else if accept.contains("as=PartialObjectMetadata") {
        Shape::Metadata
    } else {
        Shape::Object
    }
}

fn is_events_v1(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.plural == "events"
}

/// The type whose storage serves `rt`.
pub fn storage_type(rt: &ResourceType) -> ResourceType {
    if is_events_v1(rt) { crate::bootstrap::builtin("", "events") } else { rt.clone() }
}

/// Field renames between events.k8s.io/v1 (left) and core/v1 (right).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, to_core: bool, api_version: &str) -> Value {
    let Some(map) = obj.as_object() else { return obj.clone() };
    let mut out = Map::new();
    for (k, v) in map {
        let renamed = EVENT_FIELDS
            .iter()
            .find(|(v1, core)| if to_core { v1 == k } else { core == k })
            .map(|(v1, core)| if to_core { *core } else { *v1 });
        out.insert(renamed.unwrap_or(k).to_owned(), v.clone());
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// A client's object as stored.
pub fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    if is_events_v1(rt) { rename(&obj, true, "v1") } else { obj }
}

/// A stored object as the client's version shows it.
pub fn present<'a>(rt: &ResourceType, obj: &'a Value) -> Cow<'a, Value> {
    if is_events_v1(rt) { Cow::Owned(rename(obj, false, "events.k8s.io/v1")) } else { Cow::Borrowed(obj) }
}

/// The `PartialObjectMetadata` of an object.
pub fn metadata_only(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_between_versions() {
        let rt = crate::bootstrap::builtin("events.k8s.io", "events");
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
                        "regarding": {"kind": "Pod", "name": "p"}, "note": "hi", "reason": "Started",
                        "reportingController": "roster", "reportingInstance": "a", "type": "Normal"});
        let core = to_storage(&rt, v1.clone());
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["reportingComponent"], "roster");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(present(&rt, &core).into_owned(), v1);
    }
}
