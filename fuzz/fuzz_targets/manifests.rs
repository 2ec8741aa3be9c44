//! Arbitrary text through the manifest loader (`roster dns --objects`), as YAML or JSON: the first
//! byte picks the format and the synthesis options, the rest is the file. A file that loads is
//! synthesised into a zone as the manifest source does; every name in it must be canonical and in a
//! zone, the zone must survive the record stream's JSON, and a store must take it.

#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use roster_controller::fuzzing::load_manifest;
use roster_fuzz::{empty_store, name};
use roster_shared::{DomainName, Frame, PodMode, RData, SynthConfig, synthesize};

fn canonical(name: &DomainName) {
    let again = DomainName::parse(name.as_str()).unwrap_or_else(|e| panic!("synthesised name `{name}`: {e}"));
    assert_eq!(&again, name, "names are stored canonical");
}

fuzz_target!(|data: &[u8]| {
    let Some((&options, text)) = data.split_first() else { return };
    // Files are read with `read_to_string`: text that is not UTF-8 never reaches the loader.
    let Ok(text) = std::str::from_utf8(text) else { return };
    let file = if options & 1 == 0 { Path::new("fuzz.yaml") } else { Path::new("fuzz.json") };
    let Ok(state) = load_manifest(file, text) else { return };

    let mut config = SynthConfig::new(name("cluster.local"));
    config.pod_mode = [PodMode::Insecure, PodMode::Verified, PodMode::Disabled][usize::from(options >> 1 & 3) % 3];
    config.endpoint_pod_names = options & 8 != 0;
    let zone = synthesize(&state, &config);
    let zones = [name("cluster.local"), name("in-addr.arpa"), name("ip6.arpa")];
    for (owner, records) in &zone.names {
        canonical(owner);
        assert!(zones.iter().any(|z| owner.is_within(z)), "`{owner}` is outside the zones");
        for record in records {
            if let RData::Srv { target, .. } | RData::Ptr { target } | RData::Cname { target } | RData::Ns { target } =
                record
            {
                canonical(target);
            }
        }
    }
    let frame = Frame::Snapshot { epoch: 1, generation: 1, zone: Arc::new(zone) };
    let json = serde_json::to_vec(&frame).unwrap_or_else(|e| panic!("zone does not encode: {e}"));
    let decoded: Frame = serde_json::from_slice(&json).unwrap_or_else(|e| panic!("zone does not decode: {e}"));
    assert_eq!(decoded, frame, "the zone survives the record stream");
    empty_store().apply(&frame).unwrap_or_else(|e| panic!("store refused the zone: {e}"));
});
