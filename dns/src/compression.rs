//! Where the name suffixes already written in a message start, for compression (RFC 1035 §4.1.4):
//! a small direct-mapped table keyed by a hash of each suffix's lowercase wire bytes. Finding a
//! suffix is one hash and one comparison, instead of comparing against every name written so far
//! (up to 64 of them per suffix before: ~3.6k instructions per query on the mixed load, most of it
//! SRV answers' additional records; bench/README.md, issue 14). A slot has two places: one for
//! suffixes written all in lowercase (our zones' names), one for those with capitals (a question
//! asked with 0x20 mixed case, an upstream's names), so that a name in rdata, which must match byte
//! for byte, still finds a lowercase suffix that sits beside the question's mixed-case one. Each place
//! holds the first suffix that hashed to it; a later one that collides is not remembered, which only
//! costs a pointer (the name is written in full, still valid). The writer checks every hit against
//! the message's bytes.

/// Slots in the table: a response has a few dozen distinct suffixes at most (an SRV answer's ten
/// targets share all but their first label), so collisions are rare at 128.
const SLOTS: usize = 128;

/// Pointers reach only the first 16 KiB of a message.
pub const MAX_POINTER: usize = 0x3FFF;

/// Labels of a name that is indexed: an ip6.arpa name has 34 under its zone, a cluster name under 10.
/// A name with more (up to 127 fit in 255 bytes) is written in full, which is valid, and keeps the
/// per-name arrays small (they are zeroed for every name written).
const MAX_LABELS: usize = 48;

/// Suffix offsets by hash, [all lowercase, with capitals]; 0 is empty (no name starts in the header).
pub struct SuffixIndex {
    slots: [[u16; 2]; SLOTS],
}

impl Default for SuffixIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl SuffixIndex {
    pub fn new() -> Self {
        Self { slots: [[0; 2]; SLOTS] }
    }

    /// Which place of its slot a suffix goes to: its hash's low bit says whether it has capitals.
    fn place(hash: u32) -> usize {
        (hash & 1) as usize
    }

    fn slot(hash: u32) -> usize {
        // The top bits: the multiply in `mix` carries every byte up there.
        (hash >> (32 - SLOTS.trailing_zeros())) as usize
    }

    /// Where a suffix with `hash` may have been written (the caller compares the bytes): written in
    /// the same case class first, then, when `any_case`, in the other.
    pub fn get(&self, hash: u32, any_case: bool) -> impl Iterator<Item = usize> {
        let slot = self.slots[Self::slot(hash)];
        let place = Self::place(hash);
        let other = if any_case { slot[1 - place] } else { 0 };
        [slot[place], other].into_iter().filter(|at| *at != 0).map(usize::from)
    }

    /// Remembers that the suffix with `hash` is written at `at`, unless its place is taken or a
    /// pointer could not reach it.
    pub fn insert(&mut self, hash: u32, at: usize) {
        let slot = &mut self.slots[Self::slot(hash)][Self::place(hash)];
        if *slot == 0
            && let Ok(at) = u16::try_from(at)
            && usize::from(at) <= MAX_POINTER
        {
            *slot = at;
        }
    }

    /// Forgets every suffix at `mark` or after (the message was cut back to `mark`).
    pub fn forget_from(&mut self, mark: usize) {
        for slot in self.slots.iter_mut().flatten() {
            if usize::from(*slot) >= mark {
                *slot = 0;
            }
        }
    }
}

/// One name's suffixes, longest first: where each starts in the name and its hash. The root is not
/// among them (a pointer to it would be longer than it).
pub struct Suffixes {
    starts: [u8; MAX_LABELS],
    hashes: [u32; MAX_LABELS],
    count: usize,
}

impl Suffixes {
    /// The suffixes of the uncompressed name `name` starts with (bytes after its root are ignored);
    /// `None` when it has a pointer or an extended label type, runs past the end, passes 255 bytes or
    /// has more than `MAX_LABELS` labels.
    pub fn of(name: &[u8]) -> Option<Self> {
        let mut suffixes = Self { starts: [0; MAX_LABELS], hashes: [0; MAX_LABELS], count: 0 };
        let mut at = 0;
        loop {
            let len = usize::from(*name.get(at)?);
            if len == 0 {
                break;
            }
            if len > 63 || at + 1 + len >= 255 || suffixes.count == MAX_LABELS {
                return None;
            }
            suffixes.starts[suffixes.count] = u8::try_from(at).ok()?;
            suffixes.count += 1;
            at += 1 + len;
        }
        // Each suffix's hash from the next (shorter) one's: one pass over the bytes, right to left. The
        // low bit says whether the suffix has capitals (`SuffixIndex::place`).
        let (mut hash, mut capitals) = (0u32, false);
        let mut end = at;
        for i in (0..suffixes.count).rev() {
            let start = usize::from(suffixes.starts[i]);
            for &byte in &name[start..end] {
                let lower = byte.to_ascii_lowercase();
                capitals |= lower != byte;
                hash = mix(hash, lower);
            }
            suffixes.hashes[i] = (hash & !1) | u32::from(capitals);
            end = start;
        }
        Some(suffixes)
    }

    /// How many labels (suffixes) the name has.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Where suffix `i` starts in the name.
    pub fn start(&self, i: usize) -> usize {
        usize::from(self.starts[i])
    }

    pub fn hash(&self, i: usize) -> u32 {
        self.hashes[i]
    }
}

/// FxHash's step: cheap, and the multiply spreads each byte into the top bits the slot is taken from.
fn mix(hash: u32, byte: u8) -> u32 {
    (hash.rotate_left(5) ^ u32::from(byte)).wrapping_mul(0x9E37_79B9)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn suffixes_hash_alike_in_any_case_and_apart_otherwise() {
        let upper = Suffixes::of(b"\x03WWW\x07Example\x03com\x00").unwrap();
        let lower = Suffixes::of(b"\x03www\x07example\x03com\x00\x00\x01").unwrap();
        assert_eq!(upper.count(), 3);
        assert_eq!((upper.start(1), upper.start(2)), (4, 12));
        for i in 0..3 {
            assert_eq!(upper.hash(i) & !1, lower.hash(i) & !1);
        }
        assert_eq!([upper.hash(0) & 1, upper.hash(1) & 1, upper.hash(2) & 1], [1, 1, 0], "capitals");
        assert_eq!(lower.hash(0) & 1, 0);
        let other = Suffixes::of(b"\x07example\x03com\x00").unwrap();
        assert_eq!(other.hash(0), lower.hash(1), "a suffix hashes the same wherever it sits");
        let org = Suffixes::of(b"\x07example\x03org\x00").unwrap();
        assert_ne!(org.hash(0), other.hash(0));
        assert!(Suffixes::of(b"\x03www\xC0\x0C").is_none(), "pointer");
        assert!(Suffixes::of(b"\x03ww").is_none(), "cut short");
        assert!(Suffixes::of(b"\x40").is_none(), "extended label type");
        assert_eq!(Suffixes::of(b"\x00").unwrap().count(), 0);
        let deep: Vec<u8> = (0..MAX_LABELS + 1).flat_map(|_| [1, b'a']).chain([0]).collect();
        assert!(Suffixes::of(&deep).is_none(), "more labels than indexed");
        assert_eq!(Suffixes::of(&deep[2..]).unwrap().count(), MAX_LABELS);
    }

    #[test]
    fn the_first_suffix_in_a_slot_stays_until_forgotten() {
        let mut index = SuffixIndex::new();
        let get = |index: &SuffixIndex, hash, any_case| index.get(hash, any_case).collect::<Vec<usize>>();
        let hash = Suffixes::of(b"\x03com\x00").unwrap().hash(0);
        let capital = Suffixes::of(b"\x03COM\x00").unwrap().hash(0);
        assert_eq!(get(&index, hash, true), Vec::<usize>::new());
        index.insert(hash, 20);
        index.insert(hash, 40);
        assert_eq!(get(&index, hash, false), [20]);
        index.insert(capital, 30);
        assert_eq!(get(&index, capital, false), [30], "each case class has its place");
        assert_eq!(get(&index, capital, true), [30, 20]);
        assert_eq!(get(&index, hash, true), [20, 30]);
        index.forget_from(30);
        assert_eq!(get(&index, hash, true), [20]);
        index.forget_from(20);
        assert_eq!(get(&index, hash, true), Vec::<usize>::new());
        index.insert(hash, MAX_POINTER + 1);
        assert_eq!(get(&index, hash, true), Vec::<usize>::new(), "beyond a pointer's reach");
    }
}
