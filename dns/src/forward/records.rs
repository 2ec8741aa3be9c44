//! A forwarded answer's records in wire form for roster's [`MessageWriter`], so that forwarded answers
//! are compressed like authoritative ones. Built from the upstream's hickory records: owners and rdata
//! names uncompressed and in the case the upstream sent (the writer compares names case-insensitively).
//!
//! One allocation holds every record: `[section u8][owner len u8][owner][type u16][class u16][ttl u32]
//! [rdlength u16][rdata]`, in section order.

use hickory_proto::rr::{Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use crate::wire::{MessageWriter, Section, WireName};

#[derive(Clone, Debug, Default)]
pub struct Forwarded {
    blob: Vec<u8>,
}

/// One record read back from the blob.
struct Entry<'a> {
    section: u8,
    owner: &'a [u8],
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: &'a [u8],
}

impl Forwarded {
    /// The records of the three sections; records hickory cannot encode are left out.
    pub fn new(answers: &[Record], authority: &[Record], additionals: &[Record]) -> Self {
        let mut blob = Vec::new();
        let mut scratch = Vec::with_capacity(64);
        for (section, records) in
            [(Section::Answer, answers), (Section::Authority, authority), (Section::Additional, additionals)]
        {
            for record in records {
                push(&mut blob, &mut scratch, section, record);
            }
        }
        // Cached for minutes: hold no spare capacity.
        blob.shrink_to_fit();
        Self { blob }
    }

    pub fn is_empty(&self) -> bool {
        self.blob.is_empty()
    }

    /// True when the answer section holds a record.
    pub fn has_answers(&self) -> bool {
        self.entries().any(|(_, entry)| entry.section == Section::Answer as u8)
    }

    /// Bytes held (for the cache's accounting).
    pub fn byte_len(&self) -> usize {
        self.blob.capacity()
    }

    /// The same records without the additional section.
    pub fn without_additionals(&self) -> Self {
        let mut blob = Vec::with_capacity(self.blob.len());
        for (range, entry) in self.entries() {
            if entry.section != Section::Additional as u8 {
                blob.extend_from_slice(&self.blob[range]);
            }
        }
        Self { blob }
    }

    /// A copy with every TTL reduced by `age` seconds and at most `remaining` (a cache hit).
    pub fn aged(&self, age: u32, remaining: u32) -> Self {
        let mut blob = self.blob.clone();
        for (range, entry) in self.entries() {
            // the TTL sits before rdlength (2 bytes) and rdata
            let ttl_at = range.end - entry.rdata.len() - 6;
            let ttl = entry.ttl.saturating_sub(age).min(remaining);
            blob[ttl_at..ttl_at + 4].copy_from_slice(&ttl.to_be_bytes());
        }
        Self { blob }
    }

    /// The TTL of every record, in order.
    pub fn ttls(&self) -> Vec<u32> {
        self.entries().map(|(_, entry)| entry.ttl).collect()
    }

    /// Writes the records of `section`; false when one did not fit (the writer has set TC).
    pub fn write(&self, writer: &mut MessageWriter<'_>, section: Section) -> bool {
        self.entries().filter(|(_, entry)| entry.section == section as u8).all(|(_, entry)| {
            writer.record_in(section, entry.owner, RecordType::from(entry.rtype), entry.class, entry.ttl, entry.rdata)
        })
    }

    /// Every record with its byte range in the blob.
    fn entries(&self) -> impl Iterator<Item = (std::ops::Range<usize>, Entry<'_>)> {
        let mut at = 0;
        std::iter::from_fn(move || {
            let (entry, next) = self.entry(at)?;
            let range = at..next;
            at = next;
            Some((range, entry))
        })
    }

    fn entry(&self, at: usize) -> Option<(Entry<'_>, usize)> {
        let blob = &self.blob;
        let section = *blob.get(at)?;
        let owner_len = usize::from(*blob.get(at + 1)?);
        let owner = blob.get(at + 2..at + 2 + owner_len)?;
        let fixed = at + 2 + owner_len;
        let field = blob.get(fixed..fixed + 10)?;
        let rtype = u16::from_be_bytes([field[0], field[1]]);
        let class = u16::from_be_bytes([field[2], field[3]]);
        let ttl = u32::from_be_bytes([field[4], field[5], field[6], field[7]]);
        let rdlength = usize::from(u16::from_be_bytes([field[8], field[9]]));
        let rdata = blob.get(fixed + 10..fixed + 10 + rdlength)?;
        Some((Entry { section, owner, rtype, class, ttl, rdata }, fixed + 10 + rdlength))
    }
}

fn push(blob: &mut Vec<u8>, scratch: &mut Vec<u8>, section: Section, record: &Record) {
    let Some(owner) = WireName::with_case(&record.name) else { return };
    let owner = owner.as_bytes();
    // Names inside rdata uncompressed and in their own case: the writer compresses the types it may.
    scratch.clear();
    let mut encoder = BinEncoder::new(scratch);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    if record.data.emit(&mut encoder).is_err() {
        return;
    }
    let Ok(rdlength) = u16::try_from(scratch.len()) else { return };
    blob.push(section as u8);
    blob.push(u8::try_from(owner.len()).unwrap_or(0));
    blob.extend_from_slice(owner);
    blob.extend_from_slice(&u16::from(record.record_type()).to_be_bytes());
    blob.extend_from_slice(&u16::from(record.dns_class).to_be_bytes());
    blob.extend_from_slice(&record.ttl.to_be_bytes());
    blob.extend_from_slice(&rdlength.to_be_bytes());
    blob.extend_from_slice(scratch);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::{A, CNAME, MX, SOA};
    use hickory_proto::rr::{Name, RData};

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    /// A question for `qname` A, as a client sends it.
    fn question(qname: &str) -> Vec<u8> {
        let mut q = Vec::new();
        for label in name(qname).iter() {
            q.push(u8::try_from(label.len()).unwrap());
            q.extend_from_slice(label);
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    const HEADER: [u8; 12] = [0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];

    /// A CNAME chain and an MX from an upstream that lowercases: the owner points at the question
    /// (whatever its case); the CNAME target keeps the upstream's case (only `com` is the question's
    /// bytes), the next owner points at it, the MX exchange is compressed against it.
    #[test]
    fn forwarded_names_compress_against_the_question_and_each_other() {
        let answers = vec![
            Record::from_rdata(name("www.example.com."), 300, RData::CNAME(CNAME(name("web.example.com.")))),
            Record::from_rdata(name("web.example.com."), 300, RData::A(A::new(192, 0, 2, 1))),
            Record::from_rdata(name("web.example.com."), 300, RData::MX(MX::new(10, name("mail.example.com.")))),
        ];
        let soa = SOA::new(name("ns.example.com."), name("h.example.com."), 1, 2, 3, 4, 60);
        let authority = vec![Record::from_rdata(name("example.com."), 900, RData::SOA(soa))];
        let forwarded = Forwarded::new(&answers, &authority, &[]);

        let q = question("WWW.Example.com.");
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 512);
        assert!(forwarded.write(&mut writer, Section::Answer));
        assert!(forwarded.write(&mut writer, Section::Authority));
        let len = writer.finish(None);
        let question_end = 12 + q.len();
        assert_eq!(&buf[question_end..question_end + 2], &[0xC0, 12], "owner is the question");
        // CNAME 2+10 + rdata (`web`, `example` + pointer = 14); A: owner pointer 2+10+4; MX: 2+10 + 2 +
        // (`mail` + ptr 7); SOA: owner ptr 2+10 + (`ns`+ptr 5) + (`h`+ptr 4) + 20.
        assert_eq!(len, question_end + 26 + 16 + 21 + 41);
        assert_eq!(&buf[question_end + 12..question_end + 24], b"\x03web\x07example");
        let message = Message::from_vec(&buf).unwrap();
        assert_eq!(message.answers[0].name, name("WWW.Example.com."), "the question's case");
        assert_eq!(message.answers[1..], answers[1..]);
        assert_eq!(message.authorities, authority);
        assert_eq!(message.answers[0].data, answers[0].data);
    }

    #[test]
    fn aging_lowers_every_ttl() {
        let a = |ttl| Record::from_rdata(name("a.example.com."), ttl, RData::A(A::new(192, 0, 2, 1)));
        let forwarded = Forwarded::new(&[a(300), a(20)], &[a(900)], &[]);
        assert_eq!(forwarded.ttls(), [300, 20, 900]);
        assert_eq!(forwarded.aged(15, 250).ttls(), [250, 5, 250]);
        assert_eq!(forwarded.aged(30, 270).ttls(), [270, 0, 270]);
    }

    #[test]
    fn additionals_can_be_dropped_and_overflow_sets_tc() {
        let a = |n| Record::from_rdata(name("big.example.com."), 300, RData::A(A::new(192, 0, 2, n)));
        let forwarded = Forwarded::new(&(1..=40).map(a).collect::<Vec<_>>(), &[], &[a(99)]);
        assert!(forwarded.without_additionals().entry(0).is_some());
        let q = question("big.example.com.");
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 512);
        assert!(!forwarded.write(&mut writer, Section::Answer));
        writer.finish(None);
        let message = Message::from_vec(&buf).unwrap();
        assert!(message.metadata.truncation);
        assert_eq!(message.answers.len(), (512 - 12 - q.len()) / 16);
        let without = forwarded.without_additionals();
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, &HEADER, &q, 4096);
        assert!(without.write(&mut writer, Section::Answer) && without.write(&mut writer, Section::Additional));
        writer.finish(None);
        let message = Message::from_vec(&buf).unwrap();
        assert_eq!((message.answers.len(), message.additionals.len()), (40, 0));
    }
}
