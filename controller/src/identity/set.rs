//! The two kinds of set the controller reconciles, seen through one shape: apps/v1 `StatefulSet` and
//! roster's `IdentitySet`. Everything downstream works on a [`SetView`].

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use kube::core::NamespaceResourceScope;
use kube::core::{Selector, SelectorExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::crd::IdentitySet;
use super::error::Error;

/// A set kind the controller can reconcile.
pub trait SetKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The spec in StatefulSet form.
    fn set_spec(&self) -> StatefulSetSpec;
    /// The status in StatefulSet form (default when absent).
    fn set_status(&self) -> StatefulSetStatus;
    /// What the kind adds to the StatefulSet spec (IdentitySets' opt-in features; none for StatefulSets).
    fn extensions(&self) -> Extensions {
        Extensions::default()
    }
    /// The merge patch of `status` that writes `status` (kinds may add fields).
    fn status_patch(status: &StatefulSetStatus, spec: &StatefulSetSpec) -> Value {
        let _ = spec;
        json!({ "status": status })
    }
}

/// IdentitySets' opt-in features beyond the StatefulSet spec (docs/design.md, "Beyond the StatefulSet
/// controller"). A StatefulSet has none of them, so its behaviour stays upstream's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extensions {
    /// `reserveOrdinals`: ordinals never created (ints, and `"a-b"` ranges), as OpenKruise's.
    pub reserve_ordinals: Vec<IntOrString>,
    /// `updateStrategy.rollingUpdate.paused`: existing pods are not replaced while true.
    pub paused: bool,
    /// `rolloutRecovery: Replace`: a not-Ready pod of a superseded revision is replaced without waiting.
    pub replace_stuck_pods: bool,
    /// `volumeClaimUpdatePolicy: InPlace`: a larger storage request is applied to existing claims.
    pub claims_in_place: bool,
    /// `status.volumeClaims` as stored (written only with `InPlace`).
    pub volume_claims_status: Option<Value>,
}

/// The largest number of entries `reserveOrdinals` may hold (the CRD's `maxItems`).
pub const MAX_RESERVED_ENTRIES: usize = 1024;

/// One `reserveOrdinals` entry as an inclusive range: an integer, or a string `"n"` or `"a-b"` (a ≤ b).
pub fn parse_reserved(entry: &IntOrString) -> Result<(i32, i32), String> {
    let bad = || format!("reserveOrdinals entry {entry:?} is neither an ordinal nor a range \"a-b\" with a <= b");
    match entry {
        IntOrString::Int(n) if *n >= 0 => Ok((*n, *n)),
        IntOrString::Int(_) => Err(bad()),
        IntOrString::String(s) => {
            let num = |t: &str| {
                (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse::<i32>().ok()).flatten()
            };
            let (a, b) = match s.split_once('-') {
                Some((a, b)) => (num(a).ok_or_else(bad)?, num(b).ok_or_else(bad)?),
                None => {
                    let n = num(s).ok_or_else(bad)?;
                    (n, n)
                }
            };
            if a > b { Err(bad()) } else { Ok((a, b)) }
        }
    }
}

impl SetKind for StatefulSet {
    fn set_spec(&self) -> StatefulSetSpec {
        self.spec.clone().unwrap_or_default()
    }
    fn set_status(&self) -> StatefulSetStatus {
        self.status.clone().unwrap_or_default()
    }
}

impl SetKind for IdentitySet {
    fn set_spec(&self) -> StatefulSetSpec {
        StatefulSetSpec::from(&self.spec)
    }
    fn set_status(&self) -> StatefulSetStatus {
        self.status.as_ref().map(StatefulSetStatus::from).unwrap_or_default()
    }
    fn extensions(&self) -> Extensions {
        self.spec.extensions(self.status.as_ref())
    }
    fn status_patch(status: &StatefulSetStatus, spec: &StatefulSetSpec) -> Value {
        let mut v = json!({ "status": status });
        let ready = format!("{}/{}", status.ready_replicas.unwrap_or(0), spec.replicas.unwrap_or(1));
        if let Some(s) = v.get_mut("status").and_then(Value::as_object_mut) {
            s.insert("selector".into(), json!(selector_string(&spec.selector)));
            s.insert("ready".into(), json!(ready));
        }
        v
    }
}

/// A set, kind-independent: what reconciliation needs.
#[derive(Debug, Clone)]
pub struct SetView {
    /// `StatefulSet` or `IdentitySet`.
    pub kind: String,
    /// `apps/v1` or `roster.dev/v1`.
    pub api_version: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
    /// metadata.generation.
    pub generation: i64,
    /// Being deleted.
    pub deleting: bool,
    /// Annotations (copied to ControllerRevisions, as upstream does).
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The spec.
    pub spec: StatefulSetSpec,
    /// The status as stored.
    pub status: StatefulSetStatus,
    /// IdentitySets' opt-in features (all off for StatefulSets).
    pub extensions: Extensions,
}

impl SetView {
    /// View a set object.
    pub fn of<K: SetKind>(obj: &K) -> Result<Self, Error> {
        let meta = obj.meta();
        Ok(SetView {
            kind: K::kind(&()).into_owned(),
            api_version: K::api_version(&()).into_owned(),
            name: meta.name.clone().ok_or(Error::MissingField("metadata.name"))?,
            namespace: meta.namespace.clone().ok_or(Error::MissingField("metadata.namespace"))?,
            uid: meta.uid.clone().ok_or(Error::MissingField("metadata.uid"))?,
            generation: meta.generation.unwrap_or(0),
            deleting: meta.deletion_timestamp.is_some(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            spec: obj.set_spec(),
            status: obj.set_status(),
            extensions: obj.extensions(),
        })
    }

    /// `spec.replicas`, default 1.
    pub fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1).max(0)
    }

    /// `spec.ordinals.start`, default 0.
    pub fn start_ordinal(&self) -> i32 {
        self.spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0)
    }

    /// The reserved ordinals as sorted, merged inclusive ranges (empty for StatefulSets).
    pub fn reserved(&self) -> Result<Vec<(i32, i32)>, String> {
        let entries = &self.extensions.reserve_ordinals;
        if entries.len() > MAX_RESERVED_ENTRIES {
            return Err(format!("reserveOrdinals has {} entries, more than {MAX_RESERVED_ENTRIES}", entries.len()));
        }
        let mut ranges = entries.iter().map(parse_reserved).collect::<Result<Vec<_>, _>>()?;
        ranges.sort_unstable();
        let mut merged: Vec<(i32, i32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if i64::from(a) <= i64::from(last.1) + 1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Ok(merged)
    }

    /// Whether `ordinal` is reserved (never created).
    pub fn is_reserved(&self, ordinal: i32) -> bool {
        self.reserved().is_ok_and(|r| r.iter().any(|(a, b)| (*a..=*b).contains(&ordinal)))
    }

    /// The ordinals the set wants, ascending: the first `replicas` ordinals from `start` that are not
    /// reserved; `None` when they pass `i32::MAX` or `reserveOrdinals` is malformed.
    pub fn wanted_ordinals(&self) -> Option<Vec<i32>> {
        let reserved = self.reserved().ok()?;
        let mut out = Vec::with_capacity(usize::try_from(self.replicas()).unwrap_or(0).min(1 << 16));
        let mut next = i64::from(self.start_ordinal());
        let mut left = i64::from(self.replicas());
        // Walk the gaps between reserved ranges: never one step per reserved ordinal.
        for (a, b) in reserved.iter().map(|(a, b)| (i64::from(*a), i64::from(*b))) {
            if left == 0 {
                break;
            }
            if b < next {
                continue;
            }
            let take = (a - next).max(0).min(left);
            out.extend((next..next + take).filter_map(|o| i32::try_from(o).ok()));
            left -= take;
            if left > 0 {
                next = b + 1;
            }
        }
        // As `end_ordinal`: one past the last ordinal must fit too.
        if next + left > i64::from(i32::MAX) {
            return None;
        }
        out.extend((next..next + left).filter_map(|o| i32::try_from(o).ok()));
        Some(out)
    }

    /// Whether `ordinal` is one the set wants (`[start, start + replicas)` without reserved ordinals;
    /// the range is computed in 64 bits: the sum may pass `i32::MAX`).
    pub fn in_range(&self, ordinal: i32) -> bool {
        if self.extensions.reserve_ordinals.is_empty() {
            return ordinal >= self.start_ordinal()
                && i64::from(ordinal) < i64::from(self.start_ordinal()) + i64::from(self.replicas());
        }
        ordinal >= self.start_ordinal()
            && self.end_ordinal().is_some_and(|end| ordinal < end)
            && !self.is_reserved(ordinal)
    }

    /// One past the highest wanted ordinal (`start + replicas` without reserved ordinals); `None` when it
    /// passes `i32::MAX` (pod names could not hold it: the spec cannot be acted on) or `reserveOrdinals`
    /// is malformed.
    pub fn end_ordinal(&self) -> Option<i32> {
        let start = i64::from(self.start_ordinal());
        let mut end = start + i64::from(self.replicas());
        // Each reserved range that starts before the end so far pushes the end past itself.
        for (a, b) in self.reserved().ok()? {
            let (a, b) = (i64::from(a), i64::from(b));
            if b < start {
                continue;
            }
            if a >= end {
                break;
            }
            end += b - a.max(start) + 1;
        }
        i32::try_from(end).ok()
    }

    /// `maxUnavailable` resolved against the replica count, as upstream's getStatefulSetMaxUnavailable:
    /// default 1; a percentage rounds down; at least 1. `Err` names what is malformed (never read as 100 %).
    pub fn max_unavailable(&self) -> Result<i32, String> {
        let v = self
            .spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref());
        let n = match v {
            None => 1,
            Some(IntOrString::Int(i)) => *i,
            Some(IntOrString::String(s)) => {
                let pct: i64 = s.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or_else(|| {
                    format!("updateStrategy.rollingUpdate.maxUnavailable {s:?} is neither an integer nor a percentage")
                })?;
                pct.checked_mul(i64::from(self.replicas()))
                    .map(|x| x / 100)
                    .and_then(|x| i32::try_from(x).ok())
                    .ok_or_else(|| {
                        format!(
                            "updateStrategy.rollingUpdate.maxUnavailable {s:?} of {} replicas is out of range",
                            self.replicas()
                        )
                    })?
            }
        };
        Ok(n.max(1))
    }

    /// Why the spec cannot be acted on, if it cannot (the API server refuses such StatefulSets, and the
    /// CRD such IdentitySets, but a pass must not guess at what it was given).
    pub fn spec_problem(&self) -> Option<String> {
        if let Err(why) = self.reserved() {
            return Some(why);
        }
        if self.end_ordinal().is_none() {
            return Some(format!(
                "ordinals.start ({}) + replicas ({}) passes {}",
                self.start_ordinal(),
                self.replicas(),
                i32::MAX
            ));
        }
        self.max_unavailable().err()
    }

    /// `OrderedReady` (the default): one at a time, in order.
    pub fn monotonic(&self) -> bool {
        self.spec.pod_management_policy.as_deref() != Some("Parallel")
    }

    /// `OnDelete` strategy.
    pub fn on_delete(&self) -> bool {
        self.spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()) == Some("OnDelete")
    }

    /// `rollingUpdate.partition`, default 0.
    pub fn partition(&self) -> i32 {
        self.spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .max(0)
    }

    /// `minReadySeconds`, default 0.
    pub fn min_ready_seconds(&self) -> i64 {
        i64::from(self.spec.min_ready_seconds.unwrap_or(0).max(0))
    }

    /// `revisionHistoryLimit`, default 10.
    pub fn revision_history_limit(&self) -> usize {
        usize::try_from(self.spec.revision_history_limit.unwrap_or(10).max(0)).unwrap_or(10)
    }

    /// The controller reference children carry.
    pub fn controller_ref(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// The reference Events are about.
    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            ..ObjectReference::default()
        }
    }

    /// The pod name of an ordinal.
    pub fn pod_name(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// The ordinal of a pod name of this set, if it is one.
    pub fn ordinal_of(&self, pod_name: &str) -> Option<i32> {
        let rest = pod_name.strip_prefix(&self.name)?.strip_prefix('-')?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || (rest.len() > 1 && rest.starts_with('0')) {
            return None;
        }
        rest.parse().ok()
    }
}

/// A label selector as a string (`a=b,c in (d)`), the form `/scale` and `kubectl -l` use; `<error>` for
/// one that cannot be parsed (an unknown operator, `In` without values), as upstream's
/// `FormatLabelSelector`.
pub fn selector_string(sel: &LabelSelector) -> String {
    Selector::try_from(sel.clone()).map_or_else(|_| "<error>".to_owned(), |s| s.to_string())
}

/// Whether a label map satisfies a selector. An empty selector matches nothing, as upstream's controllers
/// treat it, and so does one that cannot be parsed (upstream's pass fails on it).
pub fn selector_matches(sel: &LabelSelector, labels: &std::collections::BTreeMap<String, String>) -> bool {
    match Selector::try_from(sel.clone()) {
        Ok(selector) if !selector.selects_all() => selector.matches(labels),
        _ => false,
    }
}

#[cfg(test)]
impl SetView {
    /// The unit tests' set: StatefulSet `default/web`, uid `u`, generation 1, with this spec.
    pub(crate) fn fixture(spec: StatefulSetSpec) -> SetView {
        SetView {
            kind: "StatefulSet".into(),
            api_version: "apps/v1".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "u".into(),
            generation: 1,
            deleting: false,
            annotations: Default::default(),
            spec,
            status: StatefulSetStatus::default(),
            extensions: Extensions::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn view(start: i32, replicas: i32) -> SetView {
        SetView::fixture(StatefulSetSpec {
            replicas: Some(replicas),
            ordinals: Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(start) }),
            ..StatefulSetSpec::default()
        })
    }

    #[test]
    fn reserved_ordinals_are_skipped() {
        let mut v = view(0, 4);
        let reserve = |items: &[IntOrString]| items.to_vec();
        v.extensions.reserve_ordinals = reserve(&[IntOrString::Int(1)]);
        assert_eq!(v.wanted_ordinals(), Some(vec![0, 2, 3, 4]), "OpenKruise's example: replicas count the others");
        assert!(!v.in_range(1) && v.in_range(4) && !v.in_range(5));
        assert_eq!(v.end_ordinal(), Some(5));
        v.extensions.reserve_ordinals = reserve(&[IntOrString::String("1-2".into()), IntOrString::Int(5)]);
        assert_eq!(v.wanted_ordinals(), Some(vec![0, 3, 4, 6]));
        // A huge range is walked as one gap, not ordinal by ordinal.
        v.extensions.reserve_ordinals = reserve(&[IntOrString::String("1-2000000000".into())]);
        assert_eq!(v.wanted_ordinals(), Some(vec![0, 2_000_000_001, 2_000_000_002, 2_000_000_003]));
        v.extensions.reserve_ordinals = reserve(&[IntOrString::String("1-2147483646".into())]);
        assert_eq!(v.wanted_ordinals(), None, "past i32::MAX");
        assert!(v.spec_problem().is_some());
        // Ordinals below start and overlapping ranges.
        let mut v = view(5, 2);
        v.extensions.reserve_ordinals =
            reserve(&[IntOrString::Int(1), IntOrString::String("5-6".into()), IntOrString::String("6-7".into())]);
        assert_eq!(v.wanted_ordinals(), Some(vec![8, 9]));
        for bad in ["a", "3-1", "-1", "1-", "", "1-2-3", "99999999999"] {
            assert!(parse_reserved(&IntOrString::String(bad.into())).is_err(), "{bad:?} accepted");
        }
        assert!(parse_reserved(&IntOrString::Int(-1)).is_err());
        v.extensions.reserve_ordinals = reserve(&[IntOrString::String("x".into())]);
        assert!(v.spec_problem().is_some_and(|p| p.contains("reserveOrdinals")));
    }

    #[test]
    fn ordinals_of_pod_names() {
        let v = view(0, 3);
        let table = [
            ("web-0", Some(0)),
            ("web-12", Some(12)),
            ("web-", None),
            ("web-01", None),
            ("web-a", None),
            ("web", None),
            ("webx-1", None),
            ("web-1-2", None),
            ("other-1", None),
        ];
        for (name, want) in table {
            assert_eq!(v.ordinal_of(name), want, "{name}");
        }
    }

    #[test]
    fn range_follows_ordinals_start() {
        let v = view(5, 2);
        assert!(!v.in_range(4));
        assert!(v.in_range(5));
        assert!(v.in_range(6));
        assert!(!v.in_range(7));
        assert_eq!(v.pod_name(5), "web-5");
    }

    #[test]
    fn the_range_end_never_overflows() {
        let v = view(i32::MAX - 1, 5);
        assert_eq!(v.end_ordinal(), None);
        assert!(v.spec_problem().is_some_and(|p| p.contains("passes")), "{:?}", v.spec_problem());
        assert!(v.in_range(i32::MAX), "the range is computed in 64 bits");
        assert!(!v.in_range(i32::MAX - 2));
        let v = view(i32::MAX - 5, 5);
        assert_eq!(v.end_ordinal(), Some(i32::MAX));
        assert_eq!(v.spec_problem(), None);
        // The ordinal list agrees with the end.
        assert_eq!(view(i32::MAX - 2, 2).wanted_ordinals(), Some(vec![i32::MAX - 2, i32::MAX - 1]));
        assert_eq!(view(i32::MAX - 1, 2).wanted_ordinals(), None);
    }

    #[test]
    fn max_unavailable_is_upstreams_or_an_error() {
        let with = |replicas: i32, v: Option<IntOrString>| {
            let mut s = view(0, replicas);
            s.spec.update_strategy = Some(k8s_openapi::api::apps::v1::StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(k8s_openapi::api::apps::v1::RollingUpdateStatefulSetStrategy {
                    max_unavailable: v,
                    partition: None,
                }),
            });
            s.max_unavailable()
        };
        let pct = |p: &str| Some(IntOrString::String(p.into()));
        // As upstream's getStatefulSetMaxUnavailable: percentages round down, and never below 1.
        assert_eq!(with(4, None), Ok(1));
        assert_eq!(with(4, Some(IntOrString::Int(2))), Ok(2));
        assert_eq!(with(4, Some(IntOrString::Int(0))), Ok(1));
        assert_eq!(with(10, pct("25%")), Ok(2));
        assert_eq!(with(1000, pct("10%")), Ok(100));
        assert_eq!(with(3, pct("1%")), Ok(1));
        assert_eq!(with(3, pct("100%")), Ok(3));
        // Malformed: an error, where the old code read every one of these as 100 %.
        for bad in ["abc", "50", "%", "x%", "50%%", ""] {
            assert!(with(4, pct(bad)).is_err(), "{bad:?} accepted");
        }
        assert!(with(i32::MAX, pct("1000000000000%")).is_err(), "overflow is an error");
    }

    #[test]
    fn selectors_match_and_print() {
        let mut sel = LabelSelector {
            match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        assert_eq!(selector_string(&sel), "app=web,tier in (a,b)");
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert!(selector_matches(&sel, &labels(&[("app", "web"), ("tier", "a")])));
        assert!(!selector_matches(&sel, &labels(&[("app", "web"), ("tier", "c")])));
        assert!(!selector_matches(&sel, &labels(&[("tier", "a")])));
        sel.match_expressions = None;
        assert!(selector_matches(&sel, &labels(&[("app", "web")])));
        assert!(!selector_matches(&LabelSelector::default(), &labels(&[("app", "web")])), "empty selects nothing");
        let bad = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Near".into(),
                values: None,
            }]),
        };
        assert!(!selector_matches(&bad, &labels(&[("tier", "a")])), "an unknown operator selects nothing");
        assert_eq!(selector_string(&bad), "<error>");
    }
}
