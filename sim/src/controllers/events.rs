//! Event expiry: kube-apiserver stores Events with a time to live (`--event-ttl`, 1 h by default);
//! the stand-in deletes them after the same time, and also keeps at most a fixed number of them, so
//! that a busy stand-in (thousands of pod lifecycles an hour) does not grow for the whole hour.

use std::time::Duration;

use serde_json::Value;

use crate::bootstrap::builtin;
use crate::meta;
use crate::store::{DeleteOptions, Store, rv_of};

/// How long an Event lives after it last occurred (kube-apiserver's default `--event-ttl`).
pub const EVENT_TTL: Duration = Duration::from_secs(3600);

/// The most Events kept per API group (core/v1 and events.k8s.io/v1 are stored apart here); beyond,
/// the least recently written go first. kube-apiserver has no such bound; at ~5 KB an Event in memory
/// this caps them near 10 MiB each, where one hour of a StatefulSet cycling 30 pods would be ~250 MiB.
pub const MAX_EVENTS: usize = 2_000;

/// The storage keys of Events.
pub const EVENT_KEYS: [&str; 2] = ["/events", "events.k8s.io/events"];

/// When an Event last occurred: the latest of its timestamps (core/v1 and events.k8s.io/v1 names),
/// else its creation.
fn last_seen(event: &Value) -> Option<i64> {
    ["lastTimestamp", "eventTime", "series.lastObservedTime", "deprecatedLastTimestamp"]
        .iter()
        .filter_map(|k| meta::parse_rfc3339(meta::path_str(event, k)))
        .max()
        .or_else(|| meta::parse_rfc3339(meta::meta_str(event, "creationTimestamp")))
}

/// Delete the Events older than `ttl`, then the oldest beyond `max` (per group), as of `now` (Unix
/// seconds). Returns how many were deleted.
pub fn expire(store: &Store, ttl: Duration, max: usize, now: i64) -> usize {
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let mut deleted = 0;
    for (group, rt) in [("", builtin("", "events")), ("events.k8s.io", builtin("events.k8s.io", "events"))] {
        let (events, _) = store.list(&rt, None);
        let (expired, mut live): (Vec<_>, Vec<_>) =
            events.into_iter().partition(|e| last_seen(e).is_some_and(|t| now.saturating_sub(t) > ttl));
        // least recently written first: a recurring Event is patched, which moves it to the back
        live.sort_by_key(|e| rv_of(e));
        let excess = live.len().saturating_sub(max);
        for e in expired.iter().chain(&live[..excess]) {
            match store.delete(&rt, meta::namespace(e), meta::name(e), &DeleteOptions::default()) {
                Ok(_) => deleted += 1,
                // written or deleted meanwhile: the next pass sees it again
                Err(err) => tracing::debug!(group, error = %err, "expiring an event"),
            }
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HistoryLimits;
    use serde_json::json;

    fn store() -> Store {
        let store = Store::open(None, HistoryLimits::default()).expect("in-memory store");
        crate::bootstrap::ensure(&store, 1).expect("bootstrap");
        store
    }

    fn core_event(store: &Store, name: &str, last: i64) {
        let ev = json!({
            "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p"},
            "reason": "Started", "message": "m", "type": "Normal", "count": 1,
            "firstTimestamp": meta::rfc3339(last), "lastTimestamp": meta::rfc3339(last),
        });
        store.create(&builtin("", "events"), "default", ev).expect("create event");
    }

    fn names(store: &Store, group: &str) -> Vec<String> {
        store.list(&builtin(group, "events"), None).0.iter().map(|e| meta::name(e).to_owned()).collect()
    }

    #[test]
    fn events_past_their_ttl_are_deleted_by_their_last_occurrence() {
        let store = store();
        let now = 1_000_000;
        core_event(&store, "old", now - 3601);
        core_event(&store, "fresh", now - 3599);
        let ev = json!({
            "metadata": {"name": "series"},
            "eventTime": meta::rfc3339(now - 7200), "series": {"count": 2, "lastObservedTime": meta::rfc3339(now - 10)},
            "reason": "Created", "action": "Create", "type": "Normal", "reportingController": "c", "reportingInstance": "i",
            "regarding": {"kind": "Pod", "namespace": "default", "name": "p"},
        });
        store.create(&builtin("events.k8s.io", "events"), "default", ev).expect("create series");
        assert_eq!(expire(&store, EVENT_TTL, MAX_EVENTS, now), 1);
        assert_eq!(names(&store, ""), ["fresh"]);
        assert_eq!(names(&store, "events.k8s.io"), ["series"], "a series is as old as its last observation");
    }

    #[test]
    fn beyond_the_count_bound_the_least_recently_written_go() {
        let store = store();
        let now = meta::now_secs();
        for i in 0..8 {
            core_event(&store, &format!("e{i}"), now);
        }
        // e0 recurs: patched, it is now the most recently written
        store
            .mutate(&builtin("", "events"), "default", "e0", crate::store::Subresource::Main, |old| {
                let mut e = old.clone();
                e["count"] = json!(2);
                Ok(e)
            })
            .expect("patch");
        assert_eq!(expire(&store, EVENT_TTL, 5, now), 3);
        let mut left = names(&store, "");
        left.sort();
        assert_eq!(left, ["e0", "e4", "e5", "e6", "e7"]);
        assert_eq!(expire(&store, EVENT_TTL, 5, now), 0, "within both bounds nothing more goes");
    }
}
