//! The HTTP API: path routing, request decoding, and the verbs over [`crate::store::Store`].

mod discovery;
mod exec;
mod openapi;
mod table;
mod validation;
mod view;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::meta;
use crate::patch::{self, PatchType};
use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{DeleteOptions, Store, Subresource};
use view::Shape;

/// Shared state of the HTTP layer.
pub struct App {
    /// The object store.
    pub store: Arc<Store>,
    /// Where the server listens (for discovery's serverAddressByClientCIDRs).
    pub addr: SocketAddr,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Flips to true at shutdown; open watches end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// pods/exec and pods/attach: the pod network and the sessions.
    pub exec: exec::ExecRuntime,
}

pub use exec::ExecRuntime;

/// The router: every path goes through one dispatcher, since Kubernetes paths are regular enough.
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(app)
}

type Params = HashMap<String, String>;

fn params_of(req: &Request) -> Params {
    req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// JSON response with the given status.
pub(crate) fn json_response(code: StatusCode, v: &Value) -> Response {
    let mut resp = (code, v.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    match route(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// What a resource path names.
struct Target {
    rt: ResourceType,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

async fn route(app: &Arc<App>, req: Request) -> Result<Response, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    let params = params_of(&req);
    match segs.as_slice() {
        ["version"] => return Ok(ok(&discovery::version())),
        ["healthz" | "livez" | "readyz", ..] => return Ok((StatusCode::OK, "ok").into_response()),
        ["api"] => return Ok(ok(&discovery::api_versions(app.addr))),
        ["apis"] => return Ok(ok(&discovery::api_groups(&app.store.registry))),
        ["api", v] => return discovery::resource_list(&app.store.registry, "", v).map(|v| ok(&v)),
        ["apis", g] => return discovery::api_group(&app.store.registry, g).map(|v| ok(&v)),
        ["apis", g, v] => return discovery::resource_list(&app.store.registry, g, v).map(|v| ok(&v)),
        ["openapi", "v3"] => return Ok(ok(&openapi::index(&app.store.registry.all(), &crds(app)))),
        ["openapi", "v3", rest @ ..] => {
            let doc = openapi::group_version(&app.store.registry.all(), &crds(app), &rest.join("/"))?;
            let mut resp = (StatusCode::OK, doc.text.to_string()).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Ok(resp);
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route(&path)),
    };
    let target = resolve(app, group, version, rest).ok_or_else(|| ApiError::no_route(&path))?;
    if exec::handles(&target) {
        // a WebSocket session, not a verb over the store
        return exec::serve(app, target, req).await;
    }
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
    // the verbs block (store lock, serializing big lists, fsync): keep them off the async workers
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let resp = handle(&app, &method, &headers, &params, target, &body)?;
        if method != Method::GET {
            // acknowledge a write only once it is durable
            app.store.wait_durable()?;
        }
        Ok(resp)
    })
    .await
    .map_err(|e| ApiError::internal(format!("serving the request: {e}")))?
}

/// The CRD objects (their schemas feed the OpenAPI documents of their groups).
/// For an update of a claim: the StorageClasses, read before the store's lock is taken, for the
/// PersistentVolumeClaimResize admission check (which reads them from an informer upstream).
fn resize_classes(store: &Store, rt: &ResourceType, which: Subresource) -> Option<Vec<Arc<Value>>> {
    (rt.group.is_empty() && rt.plural == "persistentvolumeclaims" && which == Subresource::Main)
        .then(|| store.list(&crate::bootstrap::builtin("storage.k8s.io", "storageclasses"), None).0)
}

fn crds(app: &App) -> Vec<Arc<Value>> {
    match app.store.registry.find("apiextensions.k8s.io", "v1", "customresourcedefinitions") {
        Some(rt) => app.store.list(&rt, None).0,
        None => Vec::new(),
    }
}

fn resolve(app: &App, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let reg = &app.store.registry;
    let find = |plural: &str| reg.find(group, version, plural);
    let owned = |s: &str| s.to_owned();
    match rest {
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 2 && !matches!(*plural, "status" | "finalize") => {
            let rt = find(plural).filter(|t| t.namespaced)?;
            Some(Target { rt, ns: owned(ns), name: tail.first().map(|s| owned(s)), sub: tail.get(1).map(|s| owned(s)) })
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let rt = find(plural)?;
            if rt.namespaced && !tail.is_empty() {
                return None;
            }
            Some(Target {
                rt,
                ns: String::new(),
                name: tail.first().map(|s| owned(s)),
                sub: tail.get(1).map(|s| owned(s)),
            })
        }
        _ => None,
    }
}

/// Serve a verb, after checking a written body's fields against its kind's schema.
fn handle(
    app: &Arc<App>,
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    t: Target,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let (warnings, pruned) = check_fields(method, headers, params, &t, body)?;
    let mut resp = serve_verb(app, method, headers, params, t, pruned.as_ref().unwrap_or(body))?;
    for w in warnings {
        let quoted = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{quoted}\"")) {
            resp.headers_mut().append("warning", v);
        }
    }
    Ok(resp)
}

fn check_fields(
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    t: &Target,
    body: &Bytes,
) -> Result<(Vec<String>, Option<Bytes>), ApiError> {
    use validation::{Mode, Write};
    if !matches!(t.sub.as_deref(), None | Some("status")) {
        return Ok((Vec::new(), None));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let write = match (method.as_str(), PatchType::from_content_type(content_type)) {
        ("POST", _) if t.name.is_none() && content_type.starts_with("application/json") => Write::Object,
        ("PUT", _) if t.name.is_some() && content_type.starts_with("application/json") => Write::Object,
        ("PATCH", Some(PatchType::Apply)) => Write::Apply,
        ("PATCH", Some(PatchType::Merge | PatchType::Strategic)) => Write::Patch,
        _ => return Ok((Vec::new(), None)),
    };
    let mode = Mode::parse(params.get("fieldValidation").map(String::as_str))?;
    // a body that does not parse is the verb's to reject
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else { return Ok((Vec::new(), None)) };
    let name = t.name.clone().unwrap_or_else(|| meta::name(&value).to_owned());
    let target = if t.ns.is_empty() { name } else { format!("{}/{name}", t.ns) };
    let (warnings, changed) = validation::check(&t.rt, &target, mode, write, &mut value)?;
    let pruned = changed.then(|| Bytes::from(value.to_string()));
    Ok((warnings, pruned))
}

fn serve_verb(
    app: &Arc<App>,
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    t: Target,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let store = &app.store;
    let rt = &t.rt;
    // the type whose storage serves this one (events.k8s.io Events live with core Events)
    let srt = &view::storage_type(rt);
    let ns = t.ns.as_str();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let shape = view::shape(accept);
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_owned();
    let out = |v: &Value| match shape {
        Shape::Metadata => ok(&view::metadata_only(v)),
        _ => ok(&view::present(rt, v)),
    };
    let sub = t.sub.as_deref();
    match (method.as_str(), t.name.as_deref(), sub) {
        ("GET", None, None) => {
            let watching = matches!(params.get("watch").map(String::as_str), Some("1" | "true"));
            if watching {
                return watch::serve(app, rt, ns, params, shape);
            }
            list(store, rt, ns, params, shape)
        }
        ("POST", None, None) if rt.group != "authorization.k8s.io" => {
            let obj = view::to_storage(rt, decode_body(&content_type, body, rt)?);
            if is_dry_run(params) {
                return Ok(json_response(StatusCode::CREATED, &view::present(rt, &obj)));
            }
            let created = store.create(srt, ns, obj)?;
            Ok(json_response(StatusCode::CREATED, &view::present(rt, &created)))
        }
        ("DELETE", None, None) => {
            let opts = delete_options(params, body)?;
            let (items, rv) = store.list(srt, ns_filter(rt, ns));
            let filter = Filter::from_params(params)?;
            let mut deleted = Vec::new();
            for item in items.iter().filter(|o| filter.matches(o)) {
                if let Ok(v) = store.delete(srt, meta::namespace(item), meta::name(item), &opts) {
                    deleted.push(view::present(rt, &v).into_owned());
                }
            }
            Ok(ok(&json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(),
                          "metadata": {"resourceVersion": rv.to_string()}, "items": deleted})))
        }
        ("GET", Some(name), None | Some("status")) => {
            let obj = store.get(srt, ns, name)?;
            if shape == Shape::Table {
                return Ok(ok(&table::render(store, srt, &[obj], store.current_rv(), true, params)));
            }
            Ok(out(&obj))
        }
        (_, Some(name), Some("portforward")) if rt.plural == "pods" && rt.group.is_empty() => {
            store.get(rt, ns, name)?;
            Err(ApiError::bad_request(format!(
                "pod {name}: the stand-in cluster's containers are imaginary, so port-forward is not available"
            )))
        }
        ("POST", None, None) if rt.group == "authorization.k8s.io" => {
            // no authorization here: every review is allowed
            let mut review = decode_body(&content_type, body, rt)?;
            review["apiVersion"] = json!(rt.api_version());
            review["kind"] = json!(rt.kind);
            review["status"] = if rt.plural == "selfsubjectrulesreviews" {
                json!({"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                       "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": false})
            } else {
                json!({"allowed": true, "reason": "the stand-in cluster authorizes everything"})
            };
            Ok(json_response(StatusCode::CREATED, &review))
        }
        ("POST", Some(name), Some("eviction")) if rt.plural == "pods" && rt.group.is_empty() => {
            // no PodDisruptionBudgets here: every eviction is a delete
            let eviction = decode_body(&content_type, body, rt).unwrap_or(Value::Null);
            let opts = eviction.get("deleteOptions").map(|o| o.to_string()).unwrap_or_default();
            let opts = delete_options(params, &Bytes::from(opts))?;
            store.delete(rt, ns, name, &opts)?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        ("GET", Some(name), Some("log")) if rt.plural == "pods" && rt.group.is_empty() => {
            // the containers are imaginary: they exist, and print nothing
            store.get(rt, ns, name)?;
            let mut resp = (StatusCode::OK, "").into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok(resp)
        }
        ("GET", Some(name), Some("scale")) if rt.scale.is_some() => {
            let obj = store.get(rt, ns, name)?;
            Ok(ok(&scale_of(rt, &obj)))
        }
        ("PUT", Some(name), None | Some("status")) => {
            let which = if sub == Some("status") { Subresource::Status } else { Subresource::Main };
            if which == Subresource::Status && !rt.status {
                return Err(ApiError::no_route(&format!("{}/{name}/status", rt.plural)));
            }
            let obj = view::to_storage(rt, decode_body(&content_type, body, rt)?);
            if is_dry_run(params) {
                return Ok(out(&obj));
            }
            let classes = resize_classes(store, rt, which);
            let updated = store.mutate(srt, ns, name, which, |old| {
                if let Some(classes) = &classes {
                    crate::admission::claim_resize(old, &obj, classes)?;
                }
                Ok(obj)
            })?;
            Ok(out(&updated))
        }
        ("PUT", Some(name), Some("finalize")) if rt.plural == "namespaces" && rt.group.is_empty() => {
            let obj = decode_body(&content_type, body, rt)?;
            let fins = meta::path(&obj, "spec.finalizers").cloned().unwrap_or(json!([]));
            let updated = store.mutate(rt, ns, name, Subresource::Main, |old| {
                let mut o = old.clone();
                meta::set_path(&mut o, "spec.finalizers", fins);
                Ok(o)
            })?;
            Ok(ok(&updated))
        }
        ("PUT" | "PATCH", Some(name), Some("scale")) if rt.scale.is_some() => {
            let patch_type = (method == Method::PATCH).then(|| PatchType::from_content_type(&content_type)).flatten();
            let body_json = parse_json(body)?;
            let paths = rt.scale.clone().ok_or_else(|| ApiError::internal("no scale"))?;
            let updated = store.mutate(rt, ns, name, Subresource::Main, |old| {
                let scale = scale_of(rt, old);
                let new_scale = match patch_type {
                    Some(pt) => patch::apply(pt, &scale, &body_json)?,
                    None => body_json.clone(),
                };
                let want_rv = meta::meta_str(&new_scale, "resourceVersion");
                if !want_rv.is_empty() && want_rv != meta::meta_str(old, "resourceVersion") {
                    return Err(ApiError::stale(&rt.group, &rt.plural, name));
                }
                let replicas = meta::path(&new_scale, "spec.replicas").and_then(Value::as_i64).unwrap_or(0);
                let mut o = old.clone();
                meta::set_path(&mut o, &paths.spec_replicas, json!(replicas));
                if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                Ok(o)
            })?;
            Ok(ok(&scale_of(rt, &updated)))
        }
        ("PATCH", Some(name), None | Some("status")) => {
            let which = if sub == Some("status") { Subresource::Status } else { Subresource::Main };
            let pt = PatchType::from_content_type(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            let patch_body = if pt == PatchType::Apply {
                parse_json(body).map_err(|_| {
                    ApiError::unsupported_media_type("application/apply-patch+yaml (YAML bodies: send JSON)")
                })?
            } else {
                parse_json(body)?
            };
            let manager = params.get("fieldManager").cloned().unwrap_or_else(|| "unknown".into());
            let now = meta::now_rfc3339();
            let exists = store.get(srt, ns, name).is_ok();
            if !exists && pt == PatchType::Apply && which == Subresource::Main {
                let obj = patch::server_side_apply(&Value::Null, &patch_body, &manager, &now)?;
                let created = store.create(srt, ns, view::to_storage(rt, obj))?;
                return Ok(json_response(StatusCode::CREATED, &view::present(rt, &created)));
            }
            let compute = |old: &Value| {
                let current = view::present(rt, old);
                let mut new = match pt {
                    PatchType::Apply => patch::server_side_apply(&current, &patch_body, &manager, &now)?,
                    other => patch::apply(other, &current, &patch_body)?,
                };
                // a patch only checks the resourceVersion when it sets one itself
                if meta::meta_str(&patch_body, "resourceVersion").is_empty()
                    && let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    m.remove("resourceVersion");
                }
                Ok(view::to_storage(rt, new))
            };
            if is_dry_run(params) {
                // `kubectl diff`: what the patch would make, nothing stored
                let current = store.get(srt, ns, name)?;
                let mut preview = compute(&current)?;
                meta::metadata_mut(&mut preview)
                    .insert("resourceVersion".into(), json!(meta::meta_str(&current, "resourceVersion")));
                return Ok(out(&preview));
            }
            let classes = resize_classes(store, rt, which);
            let updated = store.mutate(srt, ns, name, which, |old| {
                let new = compute(old)?;
                if let Some(classes) = &classes {
                    crate::admission::claim_resize(old, &new, classes)?;
                }
                Ok(new)
            })?;
            Ok(out(&updated))
        }
        ("DELETE", Some(name), None) => {
            let opts = delete_options(params, body)?;
            if is_dry_run(params) {
                return Ok(out(store.get(srt, ns, name)?.as_ref()));
            }
            let obj = store.delete(srt, ns, name, &opts)?;
            Ok(out(&obj))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            rt.plural
        ))),
    }
}

fn is_dry_run(params: &Params) -> bool {
    params.get("dryRun").is_some_and(|v| v == "All")
}

fn ns_filter<'a>(rt: &ResourceType, ns: &'a str) -> Option<&'a str> {
    (rt.namespaced && !ns.is_empty()).then_some(ns)
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding the request body as JSON: {e}")))
}

fn decode_body(content_type: &str, body: &Bytes, rt: &ResourceType) -> Result<Value, ApiError> {
    let base = content_type.split(';').next().unwrap_or("").trim();
    match base {
        "application/json" | "" | "*/*" => parse_json(body),
        "application/vnd.kubernetes.protobuf" => crate::proto::decode(body, rt),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn delete_options(params: &Params, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let from_body = if body.is_empty() { Value::Null } else { serde_json::from_slice(body).unwrap_or(Value::Null) };
    let s = |k: &str| from_body.get(k).and_then(Value::as_str).map(str::to_owned);
    let grace = params
        .get("gracePeriodSeconds")
        .map(|g| g.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}"))))
        .transpose()?
        .or_else(|| from_body.get("gracePeriodSeconds").and_then(Value::as_i64));
    let mut propagation = params.get("propagationPolicy").cloned().or_else(|| s("propagationPolicy"));
    if propagation.is_none() {
        let orphan = params
            .get("orphanDependents")
            .map(|v| v == "true")
            .or_else(|| from_body.get("orphanDependents").and_then(Value::as_bool));
        if orphan == Some(true) {
            propagation = Some("Orphan".into());
        }
    }
    let pre = from_body.get("preconditions");
    Ok(DeleteOptions {
        grace_period_seconds: grace,
        precondition_uid: pre.and_then(|p| p.get("uid")).and_then(Value::as_str).map(str::to_owned),
        precondition_rv: pre.and_then(|p| p.get("resourceVersion")).and_then(Value::as_str).map(str::to_owned),
        propagation,
    })
}

/// The label and field selectors of a list or watch.
pub(crate) struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub(crate) fn from_params(params: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            labels: LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))?,
            fields: FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))?,
        })
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(obj)
    }
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    format!("{rv}:{ns}:{name}").bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid");
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = s.splitn(3, ':');
    let _rv = parts.next().ok_or_else(bad)?;
    let ns = parts.next().ok_or_else(bad)?.to_owned();
    let name = parts.next().ok_or_else(bad)?.to_owned();
    Ok((ns, name))
}

fn list(store: &Store, rt: &ResourceType, ns: &str, params: &Params, shape: Shape) -> Result<Response, ApiError> {
    let srt = view::storage_type(rt);
    let filter = Filter::from_params(params)?;
    let (items, rv) = store.list(&srt, ns_filter(rt, ns));
    let after = params.get("continue").filter(|c| !c.is_empty()).map(|c| decode_continue(c)).transpose()?;
    let limit = params.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let mut selected: Vec<Arc<Value>> = items
        .into_iter()
        .filter(|o| match &after {
            Some((ans, aname)) => (meta::namespace(o), meta::name(o)) > (ans.as_str(), aname.as_str()),
            None => true,
        })
        .filter(|o| filter.matches(o))
        .collect();
    let mut list_meta = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = limit
        && selected.len() > limit
    {
        let remaining = selected.len() - limit;
        selected.truncate(limit);
        if let Some(last) = selected.last() {
            list_meta["continue"] = json!(encode_continue(rv, meta::namespace(last), meta::name(last)));
            list_meta["remainingItemCount"] = json!(remaining);
        }
    }
    match shape {
        Shape::Table => {
            let mut t = table::render(store, &srt, &selected, rv, true, params);
            if let (Some(m), Some(c)) = (t.get_mut("metadata"), list_meta.get("continue")) {
                m["continue"] = c.clone();
            }
            Ok(ok(&t))
        }
        Shape::Metadata => {
            let items: Vec<Value> = selected.iter().map(|o| view::metadata_only(o)).collect();
            Ok(ok(&json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                          "metadata": list_meta, "items": items})))
        }
        Shape::Object if srt != *rt => {
            let converted: Vec<Arc<Value>> =
                selected.iter().map(|o| Arc::new(view::present(rt, o).into_owned())).collect();
            Ok(list_response(rt, &list_meta, &converted))
        }
        Shape::Object => Ok(list_response(rt, &list_meta, &selected)),
    }
}

/// A `<Kind>List` body, serialized straight from the stored objects (no intermediate copy).
fn list_response(rt: &ResourceType, list_meta: &Value, items: &[Arc<Value>]) -> Response {
    let mut body = Vec::with_capacity(256 + items.len() * 1024);
    body.extend_from_slice(
        format!(
            "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{list_meta},\"items\":[",
            json!(rt.list_kind()),
            json!(rt.api_version())
        )
        .as_bytes(),
    );
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        if serde_json::to_writer(&mut body, item.as_ref()).is_err() {
            return ApiError::internal("serializing a list").into_response();
        }
    }
    body.extend_from_slice(b"]}");
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The `autoscaling/v1 Scale` view of a scalable object.
fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let Some(paths) = &rt.scale else { return Value::Null };
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let selector = match &paths.label_selector {
        Some(p) => meta::path_str(obj, p).to_owned(),
        None => meta::path(obj, "spec.selector")
            .and_then(|s| LabelSelector::from_json(s).ok())
            .map(|s| s.to_query())
            .unwrap_or_default(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"), "namespace": m.get("namespace"), "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"), "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": meta::path(obj, &paths.spec_replicas).and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": meta::path(obj, &paths.status_replicas).and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// Serve a body as a streaming response.
pub(crate) fn streaming(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    resp
}
