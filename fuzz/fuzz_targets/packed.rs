//! Arbitrary bytes as a packed snapshot (`roster_shared::packed`, what a replica that asked
//! `snapshot=packed4` decodes). The first byte chooses how the rest is cut into the pieces the decoder
//! is fed, as network reads would cut it. Checks: no panic; the result does not depend on the cutting;
//! every name and target decoded is what `DomainName::parse` makes of its text (valid and canonical, as
//! the decoder claims), every client's namespace a DNS-1123 label; a decoded zone packs and unpacks to
//! itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_shared::{DomainName, RData, ZoneData, packed};

/// The zone, or the problem (not the position text: a cut changes nothing of what is refused).
fn decode_in_pieces(bytes: &[u8], piece: usize) -> Result<ZoneData, packed::Problem> {
    let mut zone = ZoneData::default();
    let mut decoder = packed::Decoder::new();
    for chunk in bytes.chunks(piece.max(1)) {
        decoder.feed(chunk, &mut zone).map_err(|e| e.problem)?;
    }
    decoder.finish().map_err(|e| e.problem)?;
    Ok(zone)
}

fn check_name(name: &DomainName) {
    let parsed = DomainName::parse(name.as_str()).unwrap_or_else(|e| panic!("decoded `{name}` does not parse: {e}"));
    assert_eq!(&parsed, name, "decoded `{name}` is not canonical");
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else { return };
    let whole = decode_in_pieces(bytes, bytes.len());
    let cut_up = decode_in_pieces(bytes, usize::from(cut % 17) + 1);
    assert_eq!(whole, cut_up, "the same bytes in pieces of {}", cut % 17 + 1);
    let Ok(zone) = whole else { return };
    for (name, records) in &zone.names {
        check_name(name);
        for record in records {
            match record {
                RData::Srv { target, .. } | RData::Ptr { target } | RData::Cname { target } | RData::Ns { target } => {
                    check_name(target)
                }
                RData::A { .. } | RData::Aaaa { .. } | RData::Txt { .. } => {}
            }
        }
    }
    for namespace in zone.clients.values() {
        assert!(roster_shared::name::is_dns1123_label(namespace), "client namespace `{namespace}`");
    }
    let packed = packed::encode(&zone).unwrap_or_else(|e| panic!("a decoded zone does not pack: {e}"));
    let again = packed::decode_zone(&packed).unwrap_or_else(|e| panic!("a packed zone does not unpack: {e}"));
    assert_eq!(again, zone, "a decoded zone survives packing");
});
