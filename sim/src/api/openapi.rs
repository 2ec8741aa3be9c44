//! The OpenAPI v3 documents, one per group version, as a real API server publishes them.
//!
//! kubectl reads them for `kubectl explain` (it finds a kind by the `x-kubernetes-group-version-kind` of a
//! component schema and follows `$ref`s from there) and to learn that the server validates fields itself
//! (the `fieldValidation` parameter of each PATCH operation), so `kubectl apply` needs no
//! `--validate=false`. The PATCH operations declare no request body on purpose: kubectl then computes
//! strategic merge patches from its compiled-in types rather than from these schemas.
//!
//! The component schemas come from k8s-openapi's JSON schemas (the upstream definitions with their field
//! descriptions). The built-in documents are large and never change, so they are built once; documents of
//! CRD groups are built per request from the CRDs' `openAPIV3Schema`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::resources::{ResourceType, builtins};
use crate::status::ApiError;

/// Where component schemas live; `$ref`s point here.
pub const SCHEMA_PREFIX: &str = "#/components/schemas/";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// A serialized document and its content hash (what the index's `?hash=` carries, so clients' caches
/// notice a change).
#[derive(Debug, Clone)]
pub struct Doc {
    /// The document.
    pub value: Arc<Value>,
    /// The JSON text.
    pub text: Arc<String>,
    /// Hex hash of the text.
    pub hash: String,
}

impl Doc {
    fn new(value: Value) -> Self {
        let text = value.to_string();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        Self { hash: format!("{:016X}", h.finish()), value: Arc::new(value), text: Arc::new(text) }
    }
}

fn gv_key(t: &ResourceType) -> String {
    if t.group.is_empty() { format!("api/{}", t.version) } else { format!("apis/{}/{}", t.group, t.version) }
}

type Register = fn(&mut SchemaGenerator) -> String;

fn reg<T: JsonSchema>(g: &mut SchemaGenerator) -> String {
    g.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The k8s-openapi type of a built-in kind.
fn builtin_schema(group: &str, kind: &str) -> Option<Register> {
    use k8s_openapi::api::{apps, authorization, coordination, core, discovery, events, storage};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    Some(match (group, kind) {
        ("", "Namespace") => reg::<core::v1::Namespace>,
        ("", "Pod") => reg::<core::v1::Pod>,
        ("", "Service") => reg::<core::v1::Service>,
        ("", "Endpoints") => reg::<core::v1::Endpoints>,
        ("", "PersistentVolumeClaim") => reg::<core::v1::PersistentVolumeClaim>,
        ("", "PersistentVolume") => reg::<core::v1::PersistentVolume>,
        ("", "Node") => reg::<core::v1::Node>,
        ("", "Event") => reg::<core::v1::Event>,
        ("", "ConfigMap") => reg::<core::v1::ConfigMap>,
        ("", "Secret") => reg::<core::v1::Secret>,
        ("", "ServiceAccount") => reg::<core::v1::ServiceAccount>,
        ("apps", "StatefulSet") => reg::<apps::v1::StatefulSet>,
        ("apps", "Deployment") => reg::<apps::v1::Deployment>,
        ("apps", "ReplicaSet") => reg::<apps::v1::ReplicaSet>,
        ("apps", "ControllerRevision") => reg::<apps::v1::ControllerRevision>,
        ("discovery.k8s.io", "EndpointSlice") => reg::<discovery::v1::EndpointSlice>,
        ("storage.k8s.io", "StorageClass") => reg::<storage::v1::StorageClass>,
        ("events.k8s.io", "Event") => reg::<events::v1::Event>,
        ("coordination.k8s.io", "Lease") => reg::<coordination::v1::Lease>,
        ("authorization.k8s.io", "SelfSubjectAccessReview") => reg::<authorization::v1::SelfSubjectAccessReview>,
        ("authorization.k8s.io", "SelfSubjectRulesReview") => reg::<authorization::v1::SelfSubjectRulesReview>,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => reg::<apiextensions::v1::CustomResourceDefinition>,
        _ => return None,
    })
}

fn gvk(t: &ResourceType) -> Value {
    json!([{"group": t.group, "version": t.version, "kind": t.kind}])
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

fn document(key: &str, types: &[&ResourceType], schemas: Map<String, Value>) -> Value {
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
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn generator() -> SchemaGenerator {
    SchemaSettings::openapi3().with(|s| s.meta_schema = None).into_generator()
}

/// The component schemas for a set of built-in kinds: each kind's closure of referenced definitions, the
/// kinds marked with their group-version-kind.
fn builtin_schemas(types: &[&ResourceType]) -> Map<String, Value> {
    let mut g = generator();
    let mut kinds = Vec::new();
    for t in types {
        if let Some(register) = builtin_schema(&t.group, &t.kind) {
            kinds.push((register(&mut g), gvk(t)));
        }
    }
    let mut schemas = g.take_definitions(true);
    for (name, gvk) in kinds {
        if let Some(Value::Object(s)) = schemas.get_mut(&name) {
            s.insert("x-kubernetes-group-version-kind".into(), gvk);
            // k8s-openapi's structs make metadata mandatory; the API server's schemas do not
            if let Some(Value::Array(req)) = s.get_mut("required") {
                req.retain(|f| f != "metadata");
                if req.is_empty() {
                    s.remove("required");
                }
            }
        }
    }
    schemas
}

/// Every built-in group version's document, built on first use.
fn builtin_docs() -> &'static HashMap<String, Doc> {
    static DOCS: OnceLock<HashMap<String, Doc>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let all = builtins();
        let mut keys: Vec<String> = all.iter().map(gv_key).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|key| {
                let types: Vec<&ResourceType> = all.iter().filter(|t| gv_key(t) == key).collect();
                let doc = Doc::new(document(&key, &types, builtin_schemas(&types)));
                (key, doc)
            })
            .collect()
    })
}

/// The schemas of one served group version, keyed by component name, and the name of each kind's schema.
/// Unknown-field validation walks these.
pub fn kind_schema(t: &ResourceType) -> Option<(Arc<Value>, String)> {
    let doc = builtin_docs().get(&gv_key(t))?;
    let schemas = doc.value.pointer("/components/schemas")?.as_object()?;
    let name = schemas.iter().find_map(|(name, s)| {
        let g = s.get("x-kubernetes-group-version-kind")?.get(0)?;
        (g.get("kind")? == t.kind.as_str() && g.get("group")? == t.group.as_str()).then(|| name.clone())
    })?;
    Some((doc.value.clone(), name))
}

/// The component name of a CRD kind's schema, as the real server names it (`dev.roster.v1alpha1.Kind`).
fn crd_schema_name(t: &ResourceType) -> String {
    let reversed: Vec<&str> = t.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), t.version, t.kind)
}

/// A CRD group version: each version's `openAPIV3Schema` with `metadata` pointing at ObjectMeta (and the
/// definitions ObjectMeta needs).
fn crd_document(key: &str, types: &[&ResourceType], crds: &[Arc<Value>]) -> Value {
    let mut g = generator();
    reg::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(&mut g);
    let mut schemas = g.take_definitions(true);
    for t in types {
        let schema = crds
            .iter()
            .filter(|c| crate::meta::path_str(c, "spec.group") == t.group)
            .filter(|c| crate::meta::path_str(c, "spec.names.kind") == t.kind)
            .filter_map(|c| c.pointer("/spec/versions")?.as_array())
            .flatten()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(t.version.as_str()))
            .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
            .cloned();
        let mut schema = match schema {
            Some(Value::Object(m)) => m,
            _ => Map::from_iter([
                ("type".to_owned(), json!("object")),
                ("x-kubernetes-preserve-unknown-fields".to_owned(), json!(true)),
            ]),
        };
        let props = schema.entry("properties").or_insert_with(|| json!({}));
        if let Value::Object(p) = props {
            p.insert(
                "metadata".into(),
                json!({
                    "allOf": [{"$ref": format!("{SCHEMA_PREFIX}{OBJECT_META}")}],
                    "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                }),
            );
        }
        schema.insert("x-kubernetes-group-version-kind".into(), gvk(t));
        schemas.insert(crd_schema_name(t), Value::Object(schema));
    }
    document(key, types, schemas)
}

/// The document of a group version, given every served type and the CRD objects.
fn doc_for(key: &str, all: &[ResourceType], crds: &[Arc<Value>]) -> Option<Doc> {
    if let Some(doc) = builtin_docs().get(key) {
        return Some(doc.clone());
    }
    let types: Vec<&ResourceType> = all.iter().filter(|t| gv_key(t) == key).collect();
    if types.is_empty() {
        return None;
    }
    Some(Doc::new(crd_document(key, &types, crds)))
}

/// `/openapi/v3`: the index of group-version documents.
pub fn index(all: &[ResourceType], crds: &[Arc<Value>]) -> Value {
    let mut paths = Map::new();
    for t in all {
        let key = gv_key(t);
        if paths.contains_key(&key) {
            continue;
        }
        if let Some(doc) = doc_for(&key, all, crds) {
            let url = format!("/openapi/v3/{key}?hash={}", doc.hash);
            paths.insert(key, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<api/v1 | apis/group/version>`.
pub fn group_version(all: &[ResourceType], crds: &[Arc<Value>], key: &str) -> Result<Doc, ApiError> {
    doc_for(key, all, crds).ok_or_else(|| ApiError::no_route(&format!("/openapi/v3/{key}")))
}
