//! The watch history: the most recent committed changes, so that a watch resuming from a
//! resourceVersion replays what it missed. Bounded in count and in bytes, as kube-apiserver's watch
//! cache is bounded (and etcd compacts): a resume from before the oldest change kept is `410 Gone`.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;

use super::Change;

/// How much history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Changes kept, at most.
    pub changes: usize,
    /// Estimated heap bytes the kept changes hold alive, at most ([`approx_bytes`]).
    pub bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        // 10,000 changes was the only bound before; at ~5 KB a pod version that alone could hold
        // ~50 MiB. 16 MiB keeps a few thousand pod versions: minutes of history on a busy stand-in.
        Self { changes: 10_000, bytes: 16 << 20 }
    }
}

/// The resume point is older than the history: the caller must relist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld {
    /// The oldest resourceVersion a watch may still resume from.
    pub compacted_rv: u64,
}

/// Recent changes, oldest first.
pub struct WatchHistory {
    changes: VecDeque<(Arc<Change>, usize)>,
    bytes: usize,
    limits: HistoryLimits,
    /// Resuming from below this is too old.
    compacted_rv: u64,
}

impl WatchHistory {
    /// An empty history; a resume from before `start_rv` is too old.
    pub fn new(limits: HistoryLimits, start_rv: u64) -> Self {
        let limits = HistoryLimits { changes: limits.changes.max(1), bytes: limits.bytes };
        Self { changes: VecDeque::new(), bytes: 0, limits, compacted_rv: start_rv }
    }

    /// Record a change, dropping the oldest ones beyond either bound (the newest is always kept).
    pub fn push(&mut self, change: Arc<Change>) {
        let size = change_bytes(&change);
        self.bytes += size;
        self.changes.push_back((change, size));
        while self.changes.len() > self.limits.changes || (self.bytes > self.limits.bytes && self.changes.len() > 1) {
            if let Some((old, size)) = self.changes.pop_front() {
                self.bytes -= size;
                self.compacted_rv = old.rv;
            }
        }
    }

    /// The changes of storage key `key` after `rv`, or [`TooOld`].
    pub fn since(&self, key: &str, rv: u64) -> Result<Vec<Arc<Change>>, TooOld> {
        if rv < self.compacted_rv {
            return Err(TooOld { compacted_rv: self.compacted_rv });
        }
        // changes are in resourceVersion order: skip to the first one after `rv`
        let first = self.changes.partition_point(|(c, _)| c.rv <= rv);
        Ok(self.changes.range(first..).filter(|(c, _)| c.key == key).map(|(c, _)| c.clone()).collect())
    }

    /// Forget everything up to `rv` (the current resourceVersion): every resume before it is too old.
    pub fn clear(&mut self, rv: u64) {
        self.changes.clear();
        self.bytes = 0;
        self.compacted_rv = rv;
    }

    /// Changes kept.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Estimated bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What a change holds alive: its object and the previous version (often shared with the change
/// before it; counted twice, so the estimate errs on the high side).
fn change_bytes(c: &Change) -> usize {
    std::mem::size_of::<Change>() + c.key.len() + approx_bytes(&c.object) + c.prev.as_deref().map_or(0, approx_bytes)
}

/// An estimate of the heap a JSON value occupies: every node, string and map entry.
pub fn approx_bytes(v: &Value) -> usize {
    // a map entry: its key String, its value, and the map's per-entry bookkeeping
    const ENTRY_OVERHEAD: usize = std::mem::size_of::<String>() + 16;
    let node = std::mem::size_of::<Value>();
    node + match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(approx_bytes).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| ENTRY_OVERHEAD + k.len() + approx_bytes(v)).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventType;
    use serde_json::json;

    fn change(rv: u64, key: &str, payload: usize) -> Arc<Change> {
        Arc::new(Change {
            rv,
            key: key.to_owned(),
            event: EventType::Modified,
            object: Arc::new(json!({"metadata": {"name": "x"}, "data": "a".repeat(payload)})),
            prev: None,
        })
    }

    #[test]
    fn the_byte_bound_drops_the_oldest_changes() {
        let one = change_bytes(&change(1, "/pods", 1000));
        let mut h = WatchHistory::new(HistoryLimits { changes: 1000, bytes: one * 10 }, 0);
        for rv in 1..=100 {
            h.push(change(rv, "/pods", 1000));
            assert!(h.bytes() <= one * 10, "{} bytes kept after rv {rv}", h.bytes());
        }
        assert_eq!(h.len(), 10, "ten changes of this size fit");
        assert_eq!(h.since("/pods", 90).map(|v| v.len()), Ok(10), "rv 90 is the oldest resumable point");
        assert_eq!(h.since("/pods", 89).map(|v| v.len()), Err(TooOld { compacted_rv: 90 }), "rv 89 is gone");
    }

    #[test]
    fn the_count_bound_holds_for_small_changes() {
        let mut h = WatchHistory::new(HistoryLimits { changes: 5, bytes: usize::MAX }, 0);
        for rv in 1..=20 {
            h.push(change(rv, "/pods", 1));
        }
        assert_eq!(h.len(), 5);
        assert!(h.since("/pods", 14).is_err());
        assert_eq!(
            h.since("/pods", 15).map(|v| v.iter().map(|c| c.rv).collect::<Vec<_>>()),
            Ok(vec![16, 17, 18, 19, 20])
        );
    }

    #[test]
    fn one_change_over_the_byte_bound_is_still_kept() {
        let mut h = WatchHistory::new(HistoryLimits { changes: 10, bytes: 100 }, 0);
        h.push(change(1, "/pods", 10_000));
        h.push(change(2, "/pods", 10_000));
        assert_eq!(h.len(), 1, "the newest change stays so a watch at the previous rv can resume");
        assert_eq!(h.since("/pods", 1).map(|v| v.len()), Ok(1));
        assert!(h.since("/pods", 0).is_err());
    }

    #[test]
    fn replay_is_filtered_by_key_and_starts_after_the_resume_point() {
        let mut h = WatchHistory::new(HistoryLimits::default(), 0);
        for (rv, key) in [(1, "/pods"), (2, "/services"), (3, "/pods"), (4, "/pods")] {
            h.push(change(rv, key, 1));
        }
        let rvs = |v: Vec<Arc<Change>>| v.iter().map(|c| c.rv).collect::<Vec<_>>();
        assert_eq!(h.since("/pods", 0).map(rvs), Ok(vec![1, 3, 4]));
        assert_eq!(h.since("/pods", 3).map(rvs), Ok(vec![4]));
        assert_eq!(h.since("/services", 4).map(rvs), Ok(vec![]));
    }

    #[test]
    fn clearing_makes_every_earlier_resume_too_old() {
        let mut h = WatchHistory::new(HistoryLimits::default(), 0);
        h.push(change(1, "/pods", 1));
        h.push(change(2, "/pods", 1));
        h.clear(2);
        assert_eq!(h.bytes(), 0);
        assert_eq!(h.since("/pods", 1).map(|v| v.len()), Err(TooOld { compacted_rv: 2 }));
        assert_eq!(h.since("/pods", 2).map(|v| v.len()), Ok(0));
    }

    #[test]
    fn the_estimate_grows_with_content() {
        let small = approx_bytes(&json!({"a": "b"}));
        let big = approx_bytes(&json!({"a": "b".repeat(1000), "c": [1, 2, 3]}));
        assert!(big >= small + 1000 + 3 * std::mem::size_of::<Value>());
    }
}
