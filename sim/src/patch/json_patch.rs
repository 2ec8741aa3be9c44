//! RFC 6902 JSON patch.

use serde_json::Value;

use crate::status::ApiError;

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(pointer: &str) -> Result<Vec<String>, ApiError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest =
        pointer.strip_prefix('/').ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {pointer:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, ApiError> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => {
                m.get_mut(t).ok_or_else(|| ApiError::invalid_patch(format!("missing path element {t:?}")))?
            }
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| ApiError::invalid_patch(format!("invalid array index {t:?}")))?;
                a.get_mut(i).ok_or_else(|| ApiError::invalid_patch(format!("array index {i} out of range")))?
            }
            _ => return Err(ApiError::invalid_patch(format!("cannot descend into {t:?}"))),
        };
    }
    Ok(cur)
}

fn get(doc: &Value, pointer: &str) -> Result<Value, ApiError> {
    doc.pointer(pointer).cloned().ok_or_else(|| ApiError::invalid_patch(format!("path {pointer:?} does not exist")))
}

fn add(doc: &mut Value, pointer: &str, value: Value) -> Result<(), ApiError> {
    let toks = tokens(pointer)?;
    let Some((last, parents)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize =
                    last.parse().map_err(|_| ApiError::invalid_patch(format!("invalid array index {last:?}")))?;
                if i > a.len() {
                    return Err(ApiError::invalid_patch(format!("array index {i} out of range")));
                }
                a.insert(i, value);
            }
        }
        _ => return Err(ApiError::invalid_patch(format!("cannot add at {pointer:?}"))),
    }
    Ok(())
}

fn remove(doc: &mut Value, pointer: &str) -> Result<Value, ApiError> {
    let toks = tokens(pointer)?;
    let Some((last, parents)) = toks.split_last() else {
        return Err(ApiError::invalid_patch("cannot remove the whole document"));
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.remove(last).ok_or_else(|| ApiError::invalid_patch(format!("path {pointer:?} does not exist")))
        }
        Value::Array(a) => {
            let i: usize =
                last.parse().map_err(|_| ApiError::invalid_patch(format!("invalid array index {last:?}")))?;
            if i >= a.len() {
                return Err(ApiError::invalid_patch(format!("array index {i} out of range")));
            }
            Ok(a.remove(i))
        }
        _ => Err(ApiError::invalid_patch(format!("cannot remove {pointer:?}"))),
    }
}

/// Apply an RFC 6902 patch (an array of operations).
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    let ops = patch.as_array().ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    let mut out = doc.clone();
    for op in ops {
        let s = |k: &str| op.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let path = s("path");
        let value =
            || op.get("value").cloned().ok_or_else(|| ApiError::invalid_patch(format!("operation {op} needs a value")));
        match s("op").as_str() {
            "add" => add(&mut out, &path, value()?)?,
            "remove" => {
                remove(&mut out, &path)?;
            }
            "replace" => {
                remove(&mut out, &path)?;
                add(&mut out, &path, value()?)?;
            }
            "move" => {
                let v = remove(&mut out, &s("from"))?;
                add(&mut out, &path, v)?;
            }
            "copy" => {
                let v = get(&out, &s("from"))?;
                add(&mut out, &path, v)?;
            }
            "test" => {
                if get(&out, &path)? != value()? {
                    return Err(ApiError::invalid_patch(format!("test failed at {path:?}")));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!("unknown JSON patch operation {other:?}")));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations() {
        let doc = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}, "metadata": {"labels": {"a/b": "1"}}});
        let patch = json!([
            {"op": "replace", "path": "/spec/containers/0/image", "value": "y"},
            {"op": "add", "path": "/spec/containers/-", "value": {"name": "b"}},
            {"op": "remove", "path": "/metadata/labels/a~1b"},
            {"op": "test", "path": "/spec/containers/1/name", "value": "b"},
        ]);
        let out = apply(&doc, &patch).expect("patch applies");
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "a", "image": "y"}, {"name": "b"}]}, "metadata": {"labels": {}}})
        );
        assert!(apply(&doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
