//! The publisher: turns successive record sets into generation-numbered frames — a snapshot first,
//! then one delta per change — and keeps a bounded history of deltas so that a replica that was away
//! briefly catches up without a full snapshot.

use std::collections::VecDeque;
use std::sync::Arc;

use roster_shared::{Change, Frame, Trigger, ZoneData};

/// How many deltas are kept for replicas that resume.
pub const DEFAULT_HISTORY: usize = 1024;

#[derive(Debug)]
pub struct Publisher {
    epoch: u64,
    current: Option<Arc<ZoneData>>,
    generation: u64,
    /// Deltas in order; the last one has generation `self.generation`.
    history: VecDeque<(u64, Vec<Change>, Option<Trigger>)>,
    history_limit: usize,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

/// The epoch of a publisher that is not elected (`roster local`, `roster dns --objects`): its start in
/// microseconds since the Unix epoch, so that a restart's epoch comes after the last run's (replicas
/// refuse to go back to an older epoch). Elected controllers take theirs from the stream Lease.
fn new_epoch() -> u64 {
    let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
    u64::try_from(micros).unwrap_or(u64::MAX)
}

impl Publisher {
    pub fn new() -> Self {
        Self::with_history(DEFAULT_HISTORY)
    }

    pub fn with_history(history_limit: usize) -> Self {
        Self { epoch: new_epoch(), current: None, generation: 0, history: VecDeque::new(), history_limit }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Publishes from now on under `epoch` (a new term): resumptions from any other epoch get a snapshot.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The current generation; `None` before the first publication.
    pub fn generation(&self) -> Option<u64> {
        self.current.as_ref().map(|_| self.generation)
    }

    pub fn current(&self) -> Option<&Arc<ZoneData>> {
        self.current.as_ref()
    }

    /// The frame that brings a subscriber from the previous record set to `next`; `None` when nothing
    /// changed.
    pub fn publish(&mut self, next: ZoneData) -> Option<Frame> {
        self.publish_with(next, None)
    }

    /// As [`Publisher::publish`], recording what triggered the change.
    pub fn publish_with(&mut self, next: ZoneData, trigger: Option<Trigger>) -> Option<Frame> {
        let next = Arc::new(next);
        let frame = match &self.current {
            None => {
                self.generation += 1;
                Frame::Snapshot { epoch: self.epoch, generation: self.generation, zone: next.clone() }
            }
            Some(current) => {
                let changes = current.diff(&next);
                if changes.is_empty() {
                    return None;
                }
                self.push_delta(changes, trigger)
            }
        };
        self.current = Some(next);
        Some(frame)
    }

    /// As [`Publisher::publish_with`], from candidate changes instead of a whole record set: the ones
    /// that change nothing are dropped, the rest applied to the current set. `full` builds the whole
    /// record set for the first publication.
    pub fn publish_changes(
        &mut self,
        candidates: Vec<Change>,
        trigger: Option<Trigger>,
        full: impl FnOnce() -> ZoneData,
    ) -> Option<Frame> {
        let Some(current) = &mut self.current else {
            return self.publish_with(full(), trigger);
        };
        let changes: Vec<Change> = candidates.into_iter().filter(|change| !current.already_has(change)).collect();
        if changes.is_empty() {
            return None;
        }
        // Copies the set only while a snapshot frame still shares it; after that, changes apply in place.
        Arc::make_mut(current).apply(&changes);
        Some(self.push_delta(changes, trigger))
    }

    fn push_delta(&mut self, changes: Vec<Change>, trigger: Option<Trigger>) -> Frame {
        self.generation += 1;
        self.history.push_back((self.generation, changes.clone(), trigger.clone()));
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
        Frame::Delta { generation: self.generation, changes, trigger }
    }

    /// The frames a subscriber at `from` (epoch, generation) needs to be current: nothing when it is,
    /// the deltas it missed when the history still has them, else a snapshot. Empty before the first
    /// publication.
    pub fn catch_up(&self, from: Option<(u64, u64)>) -> Vec<Frame> {
        let Some(zone) = &self.current else { return Vec::new() };
        if let Some((epoch, since)) = from
            && epoch == self.epoch
            && since <= self.generation
        {
            if since == self.generation {
                return Vec::new();
            }
            let oldest = self.history.front().map(|(g, _, _)| *g);
            if oldest.is_some_and(|oldest| oldest <= since + 1) {
                return self
                    .history
                    .iter()
                    .filter(|(g, _, _)| *g > since)
                    .map(|(generation, changes, trigger)| Frame::Delta {
                        generation: *generation,
                        changes: changes.clone(),
                        trigger: trigger.clone(),
                    })
                    .collect();
            }
        }
        vec![Frame::Snapshot { epoch: self.epoch, generation: self.generation, zone: zone.clone() }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_shared::{DomainName, RData};

    fn zone(ip: &str) -> ZoneData {
        let mut zone = ZoneData::default();
        let apex = DomainName::parse("cluster.local").unwrap();
        zone.add(DomainName::parse("a.svc.cluster.local").unwrap(), RData::A { ip: ip.parse().unwrap() }, &apex);
        zone
    }

    #[test]
    fn snapshot_then_deltas_and_resume_within_history() {
        let mut publisher = Publisher::with_history(2);
        assert!(publisher.catch_up(None).is_empty());
        assert!(matches!(publisher.publish(zone("10.0.0.1")), Some(Frame::Snapshot { generation: 1, .. })));
        assert!(publisher.publish(zone("10.0.0.1")).is_none(), "no change, no frame");
        for (i, ip) in ["10.0.0.2", "10.0.0.3", "10.0.0.4"].iter().enumerate() {
            let frame = publisher.publish(zone(ip)).unwrap();
            assert_eq!(frame.generation(), i as u64 + 2);
        }
        let epoch = publisher.epoch();
        assert!(publisher.catch_up(Some((epoch, 4))).is_empty());
        let missed: Vec<u64> = publisher.catch_up(Some((epoch, 2))).iter().map(Frame::generation).collect();
        assert_eq!(missed, [3, 4]);
        // Too old for the history, another epoch, or from the future: a snapshot.
        for from in [Some((epoch, 1)), Some((epoch + 1, 3)), Some((epoch, 9)), None] {
            let frames = publisher.catch_up(from);
            assert!(matches!(frames.as_slice(), [Frame::Snapshot { generation: 4, .. }]), "{from:?}");
        }
    }

    #[test]
    fn candidate_changes_that_change_nothing_are_dropped() {
        let mut publisher = Publisher::new();
        let name = DomainName::parse("a.svc.cluster.local").unwrap();
        let set = |ip: &str| Change::Set { name: name.clone(), records: vec![RData::A { ip: ip.parse().unwrap() }] };
        let first = publisher.publish_changes(vec![set("10.0.0.1")], None, || zone("10.0.0.1"));
        assert!(matches!(first, Some(Frame::Snapshot { generation: 1, .. })), "the first publication is whole");
        // A snapshot frame still shares the zone: applying must not change what it carries.
        let Some(Frame::Snapshot { zone: shared, .. }) = publisher.catch_up(None).pop() else { panic!() };
        assert!(publisher.publish_changes(vec![set("10.0.0.1")], None, || unreachable!()).is_none());
        let gone = DomainName::parse("b.svc.cluster.local").unwrap();
        let unknown_removal = Change::Remove { name: gone };
        assert!(publisher.publish_changes(vec![unknown_removal.clone()], None, || unreachable!()).is_none());
        let frame = publisher.publish_changes(vec![set("10.0.0.2"), unknown_removal], None, || unreachable!());
        let Some(Frame::Delta { generation: 2, changes, .. }) = frame else { panic!("{frame:?}") };
        assert_eq!(changes, [set("10.0.0.2")]);
        assert_eq!(**publisher.current().unwrap(), zone("10.0.0.2"));
        assert_eq!(*shared, zone("10.0.0.1"));
    }
}
