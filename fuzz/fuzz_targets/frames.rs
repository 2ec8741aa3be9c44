//! Arbitrary bytes as the record stream: newline-delimited JSON frames (snapshot, delta, bookmark),
//! each decoded as the subscriber decodes it (`serde_json::from_slice::<Frame>`) and applied to a
//! store. Checks: a decoded frame re-encodes to itself; the store accepts exactly the frames that
//! follow its position; after each frame the apex still has its SOA and every name the frame
//! mentions answers with a response that parses.

#![no_main]

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use libfuzzer_sys::fuzz_target;
use roster_dns::FrontHandler;
use roster_dns::fuzzing::answer;
use roster_fuzz::{empty_store, now, parse_exactly, query};
use roster_shared::{Change, DomainName, Frame};

/// Names a frame mentions (at most a few: each costs two queries).
fn names(frame: &Frame) -> Vec<&DomainName> {
    let names: Box<dyn Iterator<Item = &DomainName>> = match frame {
        Frame::Snapshot { zone, .. } => Box::new(zone.names.keys()),
        Frame::Delta { changes, .. } => Box::new(changes.iter().filter_map(|change| match change {
            Change::Set { name, .. } | Change::Remove { name } => Some(name),
            Change::Client { .. } => None,
        })),
        Frame::Bookmark { .. } => Box::new(std::iter::empty()),
    };
    names.take(4).collect()
}

fn ask(handler: &FrontHandler, qname: &str, qtype: RecordType, tcp: bool) -> hickory_proto::op::Message {
    let bytes = query(7, qname, u16::from(qtype), 1, None);
    let response = now(answer(handler, &bytes, tcp)).unwrap_or_else(|| panic!("no response to a query"));
    assert!(response.len() <= if tcp { 65535 } else { 512 });
    parse_exactly(&response).unwrap_or_else(|e| panic!("{qname} {qtype}: response does not parse: {e}"))
}

fuzz_target!(|data: &[u8]| {
    let store = empty_store();
    let handler = FrontHandler::new(store.clone());
    // The subscriber cuts the stream at newlines; a last line without one is decoded here too.
    for line in data.split(|b| *b == b'\n') {
        let Ok(frame) = serde_json::from_slice::<Frame>(line) else { continue };
        let encoded = serde_json::to_vec(&frame).unwrap_or_else(|e| panic!("frame does not encode: {e}"));
        let decoded: Frame = serde_json::from_slice(&encoded).unwrap_or_else(|e| panic!("re-encoded frame: {e}"));
        assert_eq!(decoded, frame, "a frame survives the stream unchanged");

        let follows = match &frame {
            Frame::Snapshot { .. } | Frame::Bookmark { .. } => true,
            Frame::Delta { generation, .. } => store.generation().and_then(|g| g.checked_add(1)) == Some(*generation),
        };
        let before = store.position();
        assert_eq!(store.apply(&frame).is_ok(), follows, "frame {frame:?} after {before:?}");
        if !follows || matches!(frame, Frame::Bookmark { .. }) {
            assert_eq!(store.position(), before, "a refused frame changes nothing");
        }
        if !store.is_synced() {
            continue;
        }
        let soa = ask(&handler, "cluster.local", RecordType::SOA, false);
        assert_eq!(soa.metadata.response_code, ResponseCode::NoError);
        assert_eq!(soa.answers.len(), 1, "the apex keeps its SOA");
        for name in names(&frame) {
            for (qtype, tcp) in [(RecordType::A, false), (RecordType::ANY, true)] {
                let message = ask(&handler, name.as_str(), qtype, tcp);
                assert_ne!(message.metadata.response_code, ResponseCode::ServFail, "{name}: synced, yet SERVFAIL");
            }
        }
    }
});
