//! A received request, as the handler needs it. roster reads the common query itself — one question
//! of class IN, no answer or authority records, at most an OPT record with options hickory stores as
//! bytes — without allocating (hickory's parse cost ~3.8k instructions per query: two name allocations,
//! the queries' `Vec`, the raw copy, the EDNS record; bench/README.md, issue 14). Anything else
//! (several questions, other classes, TSIG, options hickory decodes, pointers in the question,
//! responses, other opcodes, malformed bytes) goes to hickory's full parser, as before. The fast
//! parser only accepts what hickory accepts and reads the same values from it (a differential test
//! below checks both on generated packets), so which parser read a request never shows in the answer.

use std::net::SocketAddr;

use hickory_proto::op::{OpCode, Query};
use hickory_proto::rr::{DNSClass, LowerName, Name, RecordType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;

use crate::wire::{MAX_NAME, WireName, first_label, parent};

/// A question section of one uncompressed name (at most 255 bytes), type and class.
const MAX_QUESTION: usize = MAX_NAME + 4;

/// The record type of EDNS's OPT pseudo-record (RFC 6891).
const OPT: u16 = 41;

/// EDNS option codes hickory decodes rather than storing as bytes (NSID, DAU, DHU, N3U, client
/// subnet): requests with them take hickory's parser, so its verdict on their contents stands.
const DECODED_OPTIONS: [u16; 5] = [3, 5, 6, 7, 8];

/// The request's EDNS (RFC 6891) fields the handler uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdnsInfo {
    /// The advertised UDP payload size, at least 512 (as hickory reads it).
    pub max_payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// The request's question, when it has exactly one.
#[derive(Clone)]
pub struct Question {
    /// Lowercase wire form; `None` when it does not fit (then only hickory's parsed name exists).
    pub name: Option<WireName>,
    pub qtype: RecordType,
    pub qclass: DNSClass,
}

/// A parsed request: header fields, question, EDNS, and where it came from. Owned, so that a request
/// that has to wait (forwarding) can move into its own task.
pub struct Incoming {
    pub id: u16,
    pub op_code: OpCode,
    pub is_response: bool,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    pub edns: Option<EdnsInfo>,
    /// Exactly one question; `None` for zero or several.
    pub question: Option<Question>,
    pub src: SocketAddr,
    pub udp: bool,
    /// The request's size in bytes, as received.
    pub size: usize,
    questions: Questions,
}

/// The question section as sent (echoed in the response).
#[allow(clippy::large_enum_variant, reason = "the inline question is the common case, kept off the heap on purpose")]
enum Questions {
    /// One question read by roster's parser.
    Inline { bytes: [u8; MAX_QUESTION], len: usize },
    /// hickory's parse of the whole request.
    Parsed(Box<Request>),
}

/// Why a message gets no answer from the handler.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// The body cannot be parsed: FORMERR from the header alone (`wire::format_error`).
    Malformed,
}

/// Whether every compression pointer met while reading the question names of `message` (a request
/// hickory parsed, whose question section is `questions_len` bytes from offset 12) points inside that
/// section: only then does the echoed question read the same in the response.
pub fn question_pointers_stay_inside(message: &[u8], questions_len: usize) -> bool {
    let end = 12 + questions_len;
    let mut pos = 12;
    while pos < end {
        let (mut at, mut resume, mut hops) = (pos, None, 0);
        loop {
            let Some(&len) = message.get(at) else { return false };
            match len & 0xC0 {
                0x00 if len == 0 => {
                    at += 1;
                    break;
                }
                0x00 => at += 1 + usize::from(len),
                0xC0 => {
                    let Some(&low) = message.get(at + 1) else { return false };
                    let target = (usize::from(len & 0x3F) << 8) | usize::from(low);
                    hops += 1;
                    if !(12..end).contains(&target) || hops > 127 {
                        return false;
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                _ => return false,
            }
        }
        // Past the name (after its first pointer, if any), then QTYPE and QCLASS.
        pos = resume.unwrap_or(at) + 4;
    }
    pos == end
}

impl Incoming {
    /// Parses `message` received from `src`: roster's parser for the common query, hickory's for the
    /// rest.
    pub fn parse(message: &[u8], src: SocketAddr, udp: bool) -> Result<Self, Unreadable> {
        if let Some(incoming) = Self::parse_common(message, src, udp) {
            return Ok(incoming);
        }
        let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
        let request = Request::from_bytes(message.to_vec(), src, protocol).map_err(|_| Unreadable::Malformed)?;
        // The question is echoed as sent, at the same offset: a pointer in it that leaves the question
        // section (into the header or a later section) would point at other bytes in the response.
        if !question_pointers_stay_inside(message, request.queries.as_bytes().len()) {
            return Err(Unreadable::Malformed);
        }
        Ok(Self::from_hickory(request, udp))
    }

    /// roster's parser: `None` whenever the message is not the common case (hickory decides then).
    fn parse_common(message: &[u8], src: SocketAddr, udp: bool) -> Option<Self> {
        let header = message.get(..12)?;
        let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
        // A query (QR clear) with opcode QUERY; one question, no answers or authorities, at most OPT.
        if header[2] & 0xF8 != 0 || count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
            return None;
        }
        // The name uncompressed (pointers and extended label types go to hickory), within 255 bytes.
        let name = WireName::from_question(&message[12..])?;
        let name_end = 12 + name.as_bytes().len();
        let question_end = name_end + 4;
        let fixed = message.get(name_end..question_end)?;
        let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        if u16::from_be_bytes([fixed[2], fixed[3]]) != u16::from(DNSClass::IN) {
            return None;
        }
        let edns = if count(10) == 1 { Some(read_opt(message.get(question_end..)?)?) } else { None };
        let mut bytes = [0u8; MAX_QUESTION];
        let len = question_end - 12;
        bytes[..len].copy_from_slice(&message[12..question_end]);
        Some(Self {
            id: count(0),
            op_code: OpCode::Query,
            is_response: false,
            recursion_desired: header[2] & 0x01 != 0,
            checking_disabled: header[3] & 0x10 != 0,
            edns,
            question: Some(Question { name: Some(name), qtype: RecordType::from(qtype), qclass: DNSClass::IN }),
            src,
            udp,
            size: message.len(),
            questions: Questions::Inline { bytes, len },
        })
    }

    /// The fields of a request hickory parsed.
    pub fn from_hickory(request: Request, udp: bool) -> Self {
        let metadata = &request.metadata;
        let edns = request.edns.as_ref().map(|edns| EdnsInfo {
            max_payload: edns.max_payload(),
            version: edns.version(),
            dnssec_ok: edns.flags().dnssec_ok,
        });
        let question = match request.queries.queries() {
            [query] => Some(Question {
                // From the raw question (cheaper than the parsed name's labels) unless it uses a pointer.
                name: WireName::from_question(request.queries.as_bytes())
                    .or_else(|| WireName::from_name(query.original().name())),
                qtype: query.query_type(),
                qclass: query.query_class(),
            }),
            _ => None,
        };
        Self {
            id: metadata.id,
            op_code: metadata.op_code,
            is_response: metadata.message_type == hickory_proto::op::MessageType::Response,
            recursion_desired: metadata.recursion_desired,
            checking_disabled: metadata.checking_disabled,
            edns,
            question,
            src: request.src(),
            udp,
            size: request.as_slice().len(),
            questions: Questions::Parsed(Box::new(request)),
        }
    }

    /// The question section as sent.
    pub fn question_bytes(&self) -> &[u8] {
        match &self.questions {
            Questions::Inline { bytes, len } => &bytes[..*len],
            Questions::Parsed(request) => request.queries.as_bytes(),
        }
    }

    /// How many questions the request has.
    pub fn question_count(&self) -> usize {
        match &self.questions {
            Questions::Inline { .. } => 1,
            Questions::Parsed(request) => request.queries.len(),
        }
    }

    /// The first question's type (for metrics), `NULL` when there is none.
    pub fn first_qtype(&self) -> RecordType {
        match &self.questions {
            Questions::Inline { .. } => self.question.as_ref().map_or(RecordType::NULL, |q| q.qtype),
            Questions::Parsed(request) => {
                request.queries.queries().first().map_or(RecordType::NULL, |q| q.query_type())
            }
        }
    }

    /// The single question as a hickory query, in the case it was sent (for the forwarder and
    /// autopath, off the common path: this allocates).
    pub fn query(&self) -> Option<Query> {
        let question = self.question.as_ref()?;
        match &self.questions {
            Questions::Inline { bytes, len } => {
                let name = name_with_case(&bytes[..len.saturating_sub(4)])?;
                let mut query = Query::query(name, question.qtype);
                query.set_query_class(question.qclass);
                Some(query)
            }
            Questions::Parsed(request) => request.queries.queries().first().map(|q| q.original().clone()),
        }
    }

    /// The single question's name, lowercase, as hickory's type.
    pub fn lower_name(&self) -> Option<LowerName> {
        self.query().map(|query| LowerName::new(query.name()))
    }
}

/// A hickory name from an uncompressed wire name, keeping its case.
fn name_with_case(wire: &[u8]) -> Option<Name> {
    let mut labels = Vec::new();
    let mut rest = wire;
    while let Some(up) = parent(rest) {
        labels.push(first_label(rest));
        rest = up;
    }
    Name::from_labels(labels).ok()
}

/// Reads the OPT record at the start of `bytes`: root owner, type OPT, options (if any) complete
/// and of codes hickory keeps as bytes. `None` otherwise.
fn read_opt(bytes: &[u8]) -> Option<EdnsInfo> {
    let fixed = bytes.get(..11)?;
    if fixed[0] != 0 || u16::from_be_bytes([fixed[1], fixed[2]]) != OPT {
        return None;
    }
    let payload = u16::from_be_bytes([fixed[3], fixed[4]]);
    let (version, flags) = (fixed[6], u16::from_be_bytes([fixed[7], fixed[8]]));
    let rdlength = usize::from(u16::from_be_bytes([fixed[9], fixed[10]]));
    let mut options = bytes.get(11..11 + rdlength)?;
    while !options.is_empty() {
        let (&[c0, c1, l0, l1], rest) = options.split_first_chunk::<4>()?;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if DECODED_OPTIONS.contains(&u16::from_be_bytes([c0, c1])) || rest.len() < len {
            return None;
        }
        options = &rest[len..];
    }
    Some(EdnsInfo { max_payload: payload.max(512), version, dnssec_ok: flags & 0x8000 != 0 })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn src() -> SocketAddr {
        "192.0.2.1:40000".parse().unwrap()
    }

    /// The question is echoed at the same offset, so a pointer may only lead inside the question section;
    /// one into the header (a fuzzer's find: the response's flags then read as a label) or past the
    /// section is unreadable, while pointers inside it still parse.
    #[test]
    fn question_pointers_must_stay_in_the_question_section() {
        // `a` then a pointer to offset 2, the flags.
        let mut into_header = query("", 1, None);
        into_header.truncate(12);
        into_header.extend_from_slice(&[1, b'a', 0xC0, 2, 0, 1, 0, 1]);
        into_header[2] = 1; // flags 01 00: a one-byte label `\0`, then the root at offset 4
        into_header[3] = 0;
        assert!(Request::from_bytes(into_header.clone(), src(), Protocol::Udp).is_ok(), "hickory reads it");
        assert!(matches!(Incoming::parse(&into_header, src(), true), Err(Unreadable::Malformed)));
        // Two questions, the second's name a pointer to the first's: inside the section, kept.
        let mut two = query("a.example", 1, None);
        two[5] = 2;
        two.extend_from_slice(&[0xC0, 12, 0, 28, 0, 1]);
        let parsed = Incoming::parse(&two, src(), true).unwrap();
        assert_eq!(parsed.question_count(), 2);
        // A pointer past the question section (into an additional record's bytes).
        let mut past = query("", 1, None);
        past.truncate(12);
        past[11] = 1;
        past.extend_from_slice(&[1, b'a', 0xC0, 20, 0, 1, 0, 1]);
        past.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(Incoming::parse(&past, src(), true), Err(Unreadable::Malformed)));
    }

    /// A query for `name` (dotted, no trailing dot) with `qtype`, class IN, and `opt` appended as the
    /// one additional record when given.
    fn query(name: &str, qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
        let mut bytes = vec![0xAB, 0xCD, 0x01, 0x10, 0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            bytes.push(u8::try_from(label.len()).unwrap());
            bytes.extend_from_slice(label.as_bytes());
        }
        bytes.push(0);
        bytes.extend_from_slice(&qtype.to_be_bytes());
        bytes.extend_from_slice(&[0, 1]);
        if let Some(opt) = opt {
            bytes.extend_from_slice(opt);
        }
        bytes
    }

    /// An OPT record: payload, version, DO, options.
    fn opt(payload: u16, version: u8, dnssec_ok: bool, options: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, 41];
        bytes.extend_from_slice(&payload.to_be_bytes());
        bytes.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0]);
        bytes.extend_from_slice(&u16::try_from(options.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(options);
        bytes
    }

    /// What a handler sees of a request, to compare the two parsers.
    #[derive(Debug, PartialEq)]
    struct Seen {
        id: u16,
        op_code: OpCode,
        is_response: bool,
        rd: bool,
        cd: bool,
        edns: Option<EdnsInfo>,
        question: Option<(Option<Vec<u8>>, RecordType, DNSClass)>,
        question_bytes: Vec<u8>,
        question_count: usize,
        first_qtype: RecordType,
        query: Option<Query>,
        size: usize,
    }

    fn seen(incoming: &Incoming) -> Seen {
        Seen {
            id: incoming.id,
            op_code: incoming.op_code,
            is_response: incoming.is_response,
            rd: incoming.recursion_desired,
            cd: incoming.checking_disabled,
            edns: incoming.edns,
            question: incoming
                .question
                .as_ref()
                .map(|q| (q.name.as_ref().map(|n| n.as_bytes().to_vec()), q.qtype, q.qclass)),
            question_bytes: incoming.question_bytes().to_vec(),
            question_count: incoming.question_count(),
            first_qtype: incoming.first_qtype(),
            query: incoming.query(),
            size: incoming.size,
        }
    }

    fn by_hickory(message: &[u8]) -> Option<Seen> {
        let request = Request::from_bytes(message.to_vec(), src(), Protocol::Udp).ok()?;
        Some(seen(&Incoming::from_hickory(request, true)))
    }

    fn by_roster(message: &[u8]) -> Option<Seen> {
        Incoming::parse_common(message, src(), true).map(|incoming| seen(&incoming))
    }

    #[test]
    fn the_common_query_is_read_by_roster_the_same_as_by_hickory() {
        let plain = query("Web-0.NGINX.default.svc.cluster.local", 1, None);
        let with_edns = query("web-0.nginx.default.svc.cluster.local", 33, Some(&opt(1232, 0, true, &[])));
        // dig's default: a COOKIE option (10), kept as bytes by hickory.
        let cookie = opt(4096, 0, false, &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        let with_cookie = query("a.b", 28, Some(&cookie));
        let root = query("", 2, None);
        let small_payload = query("a.b", 1, Some(&opt(100, 0, false, &[])));
        for message in [plain, with_edns, with_cookie, root, small_payload] {
            let fast = by_roster(&message).expect("read by roster's parser");
            assert_eq!(Some(&fast), by_hickory(&message).as_ref());
        }
        let fast = by_roster(&query("Web-0.NGINX.cluster.local", 1, Some(&opt(1232, 0, true, &[])))).unwrap();
        let (name, qtype, _) = fast.question.unwrap();
        assert_eq!(name.unwrap(), b"\x05web-0\x05nginx\x07cluster\x05local\x00", "lowercased");
        assert_eq!(qtype, RecordType::A);
        assert_eq!(fast.edns, Some(EdnsInfo { max_payload: 1232, version: 0, dnssec_ok: true }));
        assert!(fast.rd && fast.cd);
        assert_eq!(fast.query.unwrap().name().to_ascii(), "Web-0.NGINX.cluster.local.", "case kept");
    }

    #[test]
    fn uncommon_requests_go_to_hickory() {
        let mut pointer = query("www", 1, None);
        // `www` then a pointer to offset 12 — cut: name `www` + pointer back into itself is hickory's call.
        pointer.splice(16..17, [0xC0, 12]);
        let mut two = query("a.b", 1, None);
        two[5] = 2;
        two.extend_from_slice(b"\x01c\x00\x00\x01\x00\x01");
        let mut response = query("a.b", 1, None);
        response[2] |= 0x80;
        let mut notify = query("a.b", 6, None);
        notify[2] = 4 << 3;
        let mut chaos = query("version.bind", 16, None);
        let class_at = chaos.len() - 2;
        chaos[class_at..].copy_from_slice(&[0, 3]);
        let mut answer_count = query("a.b", 1, None);
        answer_count[7] = 1;
        let subnet = query("a.b", 1, Some(&opt(1232, 0, false, &[0, 8, 0, 4, 0, 1, 24, 0])));
        let nsid = query("a.b", 1, Some(&opt(1232, 0, false, &[0, 3, 0, 0])));
        let not_opt = query("a.b", 1, Some(&[0, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4]));
        let opt_named = query("a.b", 1, Some(&[1, b'x', 0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0]));
        for (why, message) in [
            ("pointer in the question name", pointer),
            ("two questions", two),
            ("a response", response),
            ("opcode NOTIFY", notify),
            ("class CH", chaos),
            ("an answer record", answer_count),
            ("client subnet option", subnet),
            ("NSID option", nsid),
            ("additional record not OPT", not_opt),
            ("OPT with a non-root owner", opt_named),
        ] {
            assert!(by_roster(&message).is_none(), "{why}");
        }
    }

    /// Malformed edges: roster's parser declines, and hickory's verdict (FORMERR or an answer) is
    /// what stands.
    #[test]
    fn malformed_edges_are_hickorys_call() {
        let good = query("a.b", 1, Some(&opt(1232, 0, false, &[0, 10, 0, 2, 1, 2])));
        for cut in 0..good.len() {
            assert!(by_roster(&good[..cut]).is_none(), "cut at {cut}");
            assert!(by_hickory(&good[..cut]).is_none(), "hickory rejects the cut at {cut} too");
        }
        // An option longer than the OPT's rdata.
        let overlong = query("a.b", 1, Some(&opt(1232, 0, false, &[0, 10, 0, 9, 1, 2])));
        assert!(by_roster(&overlong).is_none());
        // A label over 63 bytes (0x40: an extended label type).
        let mut extended = query("a.b", 1, None);
        extended[12] = 0x40;
        assert!(by_roster(&extended).is_none());
        assert!(by_hickory(&extended).is_none());
        // A name over 255 bytes.
        let long = (0..5).map(|_| "a".repeat(60)).collect::<Vec<_>>().join(".");
        assert!(by_roster(&query(&long, 1, None)).is_none());
        assert!(by_hickory(&query(&long, 1, None)).is_none());
    }

    /// Trailing bytes after the counted records are ignored by both (as hickory always did); EDNS
    /// version 1 is read as such (the handler answers BADVERS).
    #[test]
    fn trailing_bytes_and_edns_versions_read_alike() {
        let mut trailing = query("a.b", 1, None);
        trailing.extend_from_slice(b"garbage");
        let mut trailing_opt = query("a.b", 1, Some(&opt(1232, 0, false, &[])));
        trailing_opt.extend_from_slice(&[0xFF; 9]);
        let version_1 = query("a.b", 1, Some(&opt(1232, 1, false, &[])));
        for message in [trailing, trailing_opt, version_1] {
            let fast = by_roster(&message).expect("common case");
            assert_eq!(Some(fast), by_hickory(&message));
        }
        assert_eq!(by_roster(&query("a.b", 1, Some(&opt(1232, 1, false, &[])))).unwrap().edns.unwrap().version, 1);
    }

    /// Bytes near the common case: a header with small counts and flags, a name of short labels
    /// (sometimes a pointer or an overlong label), type and class, maybe an OPT, maybe cut or extended.
    fn near_common() -> impl Strategy<Value = Vec<u8>> {
        let label = prop_oneof![
            8 => prop::collection::vec(prop_oneof![Just(b'a'), Just(b'Z'), Just(b'-'), any::<u8>()], 1..6)
                .prop_map(|l| { let mut v = vec![u8::try_from(l.len()).unwrap()]; v.extend(l); v }),
            1 => Just(vec![0xC0, 12]),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ];
        let option = (
            prop_oneof![Just(10u16), Just(3), Just(8), Just(12), any::<u16>()],
            prop::collection::vec(any::<u8>(), 0..6),
        )
            .prop_map(|(code, data)| {
                let mut v = code.to_be_bytes().to_vec();
                v.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
                v.extend(data);
                v
            });
        let opt_record =
            (any::<u16>(), prop_oneof![Just(0u8), any::<u8>()], any::<bool>(), prop::collection::vec(option, 0..3))
                .prop_map(|(payload, version, dnssec_ok, options)| opt(payload, version, dnssec_ok, &options.concat()));
        (
            any::<u16>(),
            prop_oneof![Just(0x01u8), Just(0x00), any::<u8>()],
            any::<u8>(),
            prop_oneof![4 => Just([1u16, 0, 0, 0]), 1 => prop::array::uniform4(0u16..3)],
            prop::collection::vec(label, 0..5),
            prop_oneof![Just(1u16), Just(28), Just(41), any::<u16>()],
            prop_oneof![4 => Just(1u16), 1 => any::<u16>()],
            prop::option::of(opt_record),
            prop::collection::vec(any::<u8>(), 0..4),
            any::<usize>(),
            any::<bool>(),
        )
            .prop_map(|(id, flags, flags2, counts, labels, qtype, qclass, opt, extra, cut, do_cut)| {
                let mut bytes = id.to_be_bytes().to_vec();
                bytes.extend_from_slice(&[flags, flags2]);
                let arcount = counts[3] + u16::from(opt.is_some());
                for count in [counts[0], counts[1], counts[2], arcount] {
                    bytes.extend_from_slice(&count.to_be_bytes());
                }
                bytes.extend(labels.concat());
                bytes.push(0);
                bytes.extend_from_slice(&qtype.to_be_bytes());
                bytes.extend_from_slice(&qclass.to_be_bytes());
                bytes.extend(opt.unwrap_or_default());
                bytes.extend(extra);
                if do_cut {
                    bytes.truncate(cut % (bytes.len() + 1));
                }
                bytes
            })
    }

    /// Whatever roster's parser accepts, hickory accepts too and reads the same — on 5,000 generated
    /// messages, of which a good share must take each path (or the test checks nothing).
    #[test]
    fn roster_reads_what_hickory_reads() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strategy = near_common();
        let (mut fast, mut full, mut rejected) = (0, 0, 0);
        for _ in 0..5_000 {
            let message = strategy.new_tree(&mut runner).unwrap().current();
            match (by_roster(&message), by_hickory(&message)) {
                (Some(roster), hickory) => {
                    assert_eq!(Some(roster), hickory, "{message:02x?}");
                    fast += 1;
                }
                (None, Some(_)) => full += 1,
                (None, None) => rejected += 1,
            }
        }
        assert!(fast > 500 && full > 500 && rejected > 500, "fast {fast}, full {full}, rejected {rejected}");
    }
}
