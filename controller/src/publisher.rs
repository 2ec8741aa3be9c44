//! The publisher: turns successive record sets into generation-numbered frames — a snapshot first,
//! then one delta per change.

use roster_shared::{Frame, ZoneData};

#[derive(Debug, Default)]
pub struct Publisher {
    current: Option<ZoneData>,
    generation: u64,
}

impl Publisher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The frame that brings a subscriber from the previous record set to `next`; `None` when nothing
    /// changed.
    pub fn publish(&mut self, next: ZoneData) -> Option<Frame> {
        let frame = match &self.current {
            None => {
                self.generation += 1;
                Frame::Snapshot { generation: self.generation, zone: next.clone() }
            }
            Some(current) => {
                let changes = current.diff(&next);
                if changes.is_empty() {
                    return None;
                }
                self.generation += 1;
                Frame::Delta { generation: self.generation, changes }
            }
        };
        self.current = Some(next);
        Some(frame)
    }

    /// A snapshot of the current record set, for a subscriber that joins late.
    pub fn snapshot(&self) -> Option<Frame> {
        self.current.as_ref().map(|zone| Frame::Snapshot { generation: self.generation, zone: zone.clone() })
    }
}
