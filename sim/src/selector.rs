//! Label selectors (equality- and set-based, from a query string or a `LabelSelector` object) and field
//! selectors.

use serde_json::Value;

use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Exists,
    NotExists,
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn set_values(s: &str) -> Result<Vec<String>, ApiError> {
    let s = s.trim();
    let inner = s.strip_prefix('(').and_then(|x| x.strip_suffix(')')).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unable to parse requirement: expected a set of values in parentheses, found {s:?}"
        ))
    })?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect())
}

impl LabelSelector {
    /// Parse the `labelSelector` query syntax.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement { key: key.trim().to_owned(), op: Op::NotExists }
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement { key: k.trim().to_owned(), op: Op::NotIn(vec![v.trim().to_owned()]) }
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement { key: k.trim().to_owned(), op: Op::In(vec![v.trim().to_owned()]) }
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Requirement { key: k.trim().to_owned(), op: Op::NotIn(set_values(v)?) }
            } else if let Some((k, v)) = part.split_once(" in ") {
                Requirement { key: k.trim().to_owned(), op: Op::In(set_values(v)?) }
            } else if let Some((k, v)) = part.split_once('>') {
                let n = v.trim().parse().map_err(|_| {
                    ApiError::bad_request(format!("unable to parse requirement: {part:?}: not an integer"))
                })?;
                Requirement { key: k.trim().to_owned(), op: Op::Gt(n) }
            } else if let Some((k, v)) = part.split_once('<') {
                let n = v.trim().parse().map_err(|_| {
                    ApiError::bad_request(format!("unable to parse requirement: {part:?}: not an integer"))
                })?;
                Requirement { key: k.trim().to_owned(), op: Op::Lt(n) }
            } else if part.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Requirement { key: part.to_owned(), op: Op::Exists }
            } else {
                return Err(ApiError::bad_request(format!("unable to parse requirement: {part:?}")));
            };
            reqs.push(req);
        }
        Ok(Self { reqs })
    }

    /// From a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_json(v: &Value) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        if let Some(ml) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in ml {
                reqs.push(Requirement { key: k.clone(), op: Op::In(vec![val.as_str().unwrap_or("").to_owned()]) });
            }
        }
        for e in v.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("").to_owned();
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let op = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::NotExists,
                other => {
                    return Err(ApiError::bad_request(format!("{other:?} is not a valid label selector operator")));
                }
            };
            reqs.push(Requirement { key, op });
        }
        Ok(Self { reqs })
    }

    /// A selector matching a service's `spec.selector` map (empty map: nothing to select).
    pub fn from_map(map: &serde_json::Map<String, Value>) -> Self {
        Self {
            reqs: map
                .iter()
                .map(|(k, v)| Requirement { key: k.clone(), op: Op::In(vec![v.as_str().unwrap_or("").to_owned()]) })
                .collect(),
        }
    }

    /// Whether it selects nothing in particular (matches all).
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether the labels map matches.
    pub fn matches(&self, labels: &Value) -> bool {
        self.reqs.iter().all(|r| {
            let got = labels.get(&r.key).and_then(Value::as_str);
            match &r.op {
                Op::Exists => got.is_some(),
                Op::NotExists => got.is_none(),
                Op::In(vals) => got.is_some_and(|g| vals.iter().any(|v| v == g)),
                Op::NotIn(vals) => got.is_none_or(|g| vals.iter().all(|v| v != g)),
                Op::Gt(n) => got.and_then(|g| g.parse::<i64>().ok()).is_some_and(|g| g > *n),
                Op::Lt(n) => got.and_then(|g| g.parse::<i64>().ok()).is_some_and(|g| g < *n),
            }
        })
    }

    /// Whether an object's labels match.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.reqs.is_empty() {
            return true;
        }
        let empty = Value::Object(serde_json::Map::new());
        let labels = obj.get("metadata").and_then(|m| m.get("labels")).unwrap_or(&empty);
        self.matches(labels)
    }

    /// The string form (`a=b,c in (d)`), as a Scale status selector.
    pub fn to_query(&self) -> String {
        self.reqs
            .iter()
            .map(|r| match &r.op {
                Op::Exists => r.key.clone(),
                Op::NotExists => format!("!{}", r.key),
                Op::In(v) if v.len() == 1 => format!("{}={}", r.key, v[0]),
                Op::In(v) => format!("{} in ({})", r.key, v.join(",")),
                Op::NotIn(v) => format!("{} notin ({})", r.key, v.join(",")),
                Op::Gt(n) => format!("{}>{n}", r.key),
                Op::Lt(n) => format!("{}<{n}", r.key),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A parsed field selector: `path=value` / `path!=value` terms over any dotted field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parse `metadata.name=x,status.phase!=Running`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{s}'; can't understand '{part}'")));
            };
            terms.push((k.trim().to_owned(), eq, v.trim().to_owned()));
        }
        Ok(Self { terms })
    }

    /// Whether an object matches every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(path, eq, want)| {
            let got = match crate::meta::path(obj, path) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let labels = json!({"app": "web", "tier": "front", "n": "5"});
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("tier,!missing", true),
            ("missing", false),
            ("n>4,n<6", true),
            ("app in (db),tier", false),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).expect(sel);
            assert_eq!(s.matches(&labels), want, "{sel}");
        }
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let s = FieldSelector::parse("metadata.name=a,spec.nodeName=n1,status.phase!=Pending").expect("parse");
        assert!(s.matches(&pod));
        assert!(!FieldSelector::parse("metadata.namespace=x").expect("parse").matches(&pod));
    }
}
