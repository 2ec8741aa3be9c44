//! Field validation (`?fieldValidation=Strict|Warn|Ignore`): fields of a request body that the kind's
//! schema does not declare are rejected, reported as `Warning` headers (the default, as on a real
//! server), or ignored. Only built-in kinds are checked; custom resources keep what they are sent.

use serde_json::{Map, Value};

use super::openapi::{SCHEMA_PREFIX, kind_schema};
use crate::resources::ResourceType;
use crate::status::ApiError;

/// How the request asked for unknown fields to be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reject the request.
    Strict,
    /// Accept it with a warning per field.
    Warn,
    /// Accept it silently.
    Ignore,
}

impl Mode {
    /// The mode of a `fieldValidation` query value (absent: `Warn`).
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("" | "Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// The request body's kind of write, which decides the wording of a strict rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// POST or PUT of a whole object.
    Object,
    /// JSON merge or strategic merge patch.
    Patch,
    /// Server-side apply.
    Apply,
}

/// Check `body` against the kind's schema and drop the fields it does not declare (a real server decodes
/// into typed structs, which keep none): the warnings to send and whether the body changed, or the
/// rejection.
pub fn check(
    rt: &ResourceType,
    target: &str,
    mode: Mode,
    write: Write,
    body: &mut Value,
) -> Result<(Vec<String>, bool), ApiError> {
    let Some((doc, name)) = kind_schema(rt) else { return Ok((Vec::new(), false)) };
    let Some(schemas) = doc.pointer("/components/schemas").and_then(Value::as_object) else {
        return Ok((Vec::new(), false));
    };
    let mut unknown = Vec::new();
    let mut changed = false;
    if let Some(root) = schemas.get(&name) {
        walk(schemas, root, body, "", &mut unknown, &mut changed);
    }
    unknown.sort();
    if unknown.is_empty() || mode == Mode::Ignore {
        return Ok((Vec::new(), changed));
    }
    if mode == Mode::Warn {
        return Ok((unknown.iter().map(|p| format!("unknown field \"{p}\"")).collect(), changed));
    }
    let msg = match write {
        Write::Apply => format!(
            "failed to create typed patch object ({target}; {}, Kind={}): {}",
            rt.api_version(),
            rt.kind,
            unknown.iter().map(|p| format!(".{p}: field not declared in schema")).collect::<Vec<_>>().join(", ")
        ),
        Write::Patch => format!(
            "strict decoding error: {}",
            unknown.iter().map(|p| format!("unknown field \"{p}\"")).collect::<Vec<_>>().join(", ")
        ),
        Write::Object => format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
            unknown.iter().map(|p| format!("unknown field \"{p}\"")).collect::<Vec<_>>().join(", "),
            kind = rt.kind,
            v = rt.version,
        ),
    };
    Err(ApiError::bad_request(msg))
}

/// The schema a `$ref` or a single-element `allOf` stands for.
fn resolve<'a>(schemas: &'a Map<String, Value>, mut s: &'a Value) -> &'a Value {
    for _ in 0..8 {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix(SCHEMA_PREFIX).and_then(|n| schemas.get(n)) {
                Some(t) => s = t,
                None => return s,
            }
        } else if let Some([one]) = s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
            s = one;
        } else {
            return s;
        }
    }
    s
}

/// Collect the undeclared fields of `v` (as `spec.containers[0].name` paths) and remove them.
fn walk(
    schemas: &Map<String, Value>,
    schema: &Value,
    v: &mut Value,
    path: &str,
    out: &mut Vec<String>,
    changed: &mut bool,
) {
    let s = resolve(schemas, schema);
    if s.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let join = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
    match v {
        Value::Object(m) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                let mut undeclared = Vec::new();
                for (k, fv) in m.iter_mut() {
                    // strategic merge directives (`$patch`, `$setElementOrder/...`)
                    if k.starts_with('$') {
                        continue;
                    }
                    match props.get(k) {
                        Some(ps) => walk(schemas, ps, fv, &join(k), out, changed),
                        None => undeclared.push(k.clone()),
                    }
                }
                for k in undeclared {
                    *changed = true;
                    // a merge patch's null removes a field: nothing unknown gets stored
                    if m.remove(&k).is_some_and(|fv| !fv.is_null()) {
                        out.push(join(&k));
                    }
                }
            } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, fv) in m.iter_mut() {
                    if !k.starts_with('$') {
                        walk(schemas, ap, fv, &join(k), out, changed);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(schemas, is, item, &format!("{path}[{i}]"), out, changed);
                }
            }
        }
        _ => {}
    }
}
