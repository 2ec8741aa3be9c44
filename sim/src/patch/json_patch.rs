//! RFC 6902 JSON patch, applied by the `json-patch` crate, with kube-apiserver's status codes.

use json_patch::PatchOperation;
use serde_json::Value;

use crate::status::ApiError;

/// Apply an RFC 6902 patch (an array of operations).
///
/// kube-apiserver (evanphx/json-patch) decodes the body as a list of objects and answers 400 when
/// that fails; everything about a single operation — an unknown `op`, a missing `value`, a path
/// that is not a pointer or does not exist, a failing `test` — surfaces only when the patch is
/// applied, as 422. So the operations are decoded one by one here and their errors are 422 too.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    let ops = patch.as_array().ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    if let Some(op) = ops.iter().find(|op| !op.is_object()) {
        return Err(ApiError::bad_request(format!("a JSON patch operation must be an object, not {op}")));
    }
    let ops = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            serde_json::from_value::<PatchOperation>(op.clone())
                .map_err(|e| ApiError::invalid_patch(format!("operation {i} ({op}): {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = doc.clone();
    // `patch_unsafe` skips the crate's undo log: on error `out`, a copy, is dropped anyway.
    json_patch::patch_unsafe(&mut out, &ops).map_err(|e| ApiError::invalid_patch(e.to_string()))?;
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
            {"op": "copy", "from": "/spec/containers/1", "path": "/spec/first"},
            {"op": "move", "from": "/spec/first/name", "path": "/spec/moved"},
        ]);
        let out = apply(&doc, &patch).expect("patch applies");
        assert_eq!(
            out,
            json!({
                "spec": {"containers": [{"name": "a", "image": "y"}, {"name": "b"}], "first": {}, "moved": "b"},
                "metadata": {"labels": {}}
            })
        );
    }

    /// The status codes kube-apiserver gives: 400 when the body is not a list of operations, 422 for
    /// an operation that cannot be applied (kubectl prints the latter as "Invalid").
    #[test]
    fn errors_have_kube_apiserver_status_codes() {
        let doc = json!({"spec": {"replicas": 1}});
        let cases = [
            (json!({"op": "add", "path": "/a", "value": 1}), 400),
            (json!(["add"]), 400),
            (json!([{"op": "test", "path": "/spec/replicas", "value": 2}]), 422),
            (json!([{"op": "remove", "path": "/nope"}]), 422),
            (json!([{"op": "replace", "path": "/spec/nope", "value": 1}]), 422),
            (json!([{"op": "add", "path": "spec", "value": 1}]), 422),
            (json!([{"op": "add", "path": "/spec/x"}]), 422),
            (json!([{"op": "frobnicate", "path": "/spec"}]), 422),
        ];
        for (patch, code) in cases {
            let error = apply(&doc, &patch).expect_err(&patch.to_string());
            assert_eq!(error.code, code, "{patch}: {error:?}");
        }
    }
}
