//! A snapshot line decoded as its bytes arrive, straight into the store's nodes.
//!
//! A 100k-pod snapshot is a ~35 MB line. Held whole and decoded into a `ZoneData` (~165 MiB) before the
//! new table was built beside the old one, it tripled a replica's memory during the swap. Here the line
//! goes through a bounded channel of chunks to a blocking thread, where serde_json reads it through
//! `std::io::Read` and a visitor hands each name to a [`SnapshotBuilder`] as soon as that entry is
//! decoded: nothing but the table being built (and a name's records) is held.
//!
//! Only lines that start as the controller writes a snapshot ([`SNAPSHOT_START`]: serde writes an
//! internally tagged enum's tag first) come here; any other line, a snapshot with its keys in another
//! order included, is decoded whole as before. The wire format is unchanged.
//!
//! A packed snapshot (`?snapshot=packed4`: a `packed_snapshot` header line, then its bytes) takes the same
//! path through [`decode_packed`]: `roster_shared::packed`'s decoder hands each name and client over as
//! soon as it is whole.

use std::io::{BufReader, Read};
use std::net::IpAddr;

use bytes::{Buf, Bytes};
use roster_shared::{DomainName, RData, packed};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use tokio::sync::mpsc;

use crate::store::{PreparedSnapshot, SnapshotBuilder, ZoneStore};

/// How the controller starts every snapshot line.
pub const SNAPSHOT_START: &[u8] = br#"{"kind":"snapshot""#;

/// Chunks queued between the network and the decoder: enough to keep both busy, few enough that the
/// queue stays a few hundred KiB (a chunk is one read of the body, decompressed).
pub const CHUNKS_IN_FLIGHT: usize = 4;

/// serde_json reads byte by byte; a buffer makes that a slice index, not a call into the channel.
const READ_BUFFER: usize = 64 << 10;

/// The bytes of one line, as a blocking reader over the chunks the network side sends; the end of the
/// line is the channel's close.
pub struct ChunkReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChunkReader {
    pub fn new(chunks: mpsc::Receiver<Bytes>) -> Self {
        Self { chunks, current: Bytes::new() }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Decodes one snapshot line from `line` into a table for `store` (blocking: run it off the runtime).
/// The table is swapped in by the caller, so an error leaves the store as it was.
pub fn decode(line: impl Read, store: &ZoneStore) -> Result<PreparedSnapshot, String> {
    let mut builder = store.snapshot_builder();
    let mut json = serde_json::Deserializer::from_reader(BufReader::with_capacity(READ_BUFFER, line));
    let (epoch, generation) = json
        .deserialize_map(SnapshotVisitor { builder: &mut builder })
        .and_then(|position| json.end().map(|()| position))
        .map_err(|e| format!("undecodable snapshot: {e}"))?;
    Ok(builder.finish(epoch, generation))
}

/// Decodes the packed bytes of a snapshot at (`epoch`, `generation`) from `bytes` (to its end) into a
/// table for `store` (blocking: run it off the runtime). An error leaves the store as it was.
pub fn decode_packed(
    bytes: impl Read,
    store: &ZoneStore,
    epoch: u64,
    generation: u64,
) -> Result<PreparedSnapshot, String> {
    let mut builder = store.snapshot_builder();
    let mut visitor = PackedToBuilder { builder: &mut builder, twice: None };
    packed::decode(bytes, &mut visitor).map_err(|e| format!("undecodable snapshot: {e}"))?;
    if let Some(name) = visitor.twice {
        // Only an implied PTR can meet a name again (written names are in strict order), and no encoder
        // implies one where its name has other records.
        return Err(format!("undecodable snapshot: `{name}` is given twice"));
    }
    Ok(builder.finish(epoch, generation))
}

/// Hands each decoded name and client to the store's builder, noting the first name given twice.
struct PackedToBuilder<'b, 's> {
    builder: &'b mut SnapshotBuilder<'s>,
    twice: Option<DomainName>,
}

impl PackedToBuilder<'_, '_> {
    fn add(&mut self, name: DomainName, records: &[RData]) {
        if !self.builder.add_name(&name, records) && self.twice.is_none() {
            self.twice = Some(name);
        }
    }
}

impl packed::Visitor for PackedToBuilder<'_, '_> {
    fn name(&mut self, name: packed::CheckedName<'_>, records: packed::Records<'_>) {
        self.add(name.to_name(), &records.to_rdata());
    }

    fn ptr(&mut self, ip: IpAddr, target: packed::CheckedName<'_>) {
        self.add(DomainName::reverse_of(ip), &[RData::Ptr { target: target.to_name() }]);
    }

    fn client(&mut self, ip: IpAddr, namespace: &str) {
        self.builder.add_client(ip, namespace);
    }
}

/// `{"kind":"snapshot","epoch":E,"generation":G,"zone":{…}}`, keys in any order, unknown keys ignored
/// (as the derived `Frame` does).
struct SnapshotVisitor<'b, 's> {
    builder: &'b mut SnapshotBuilder<'s>,
}

impl<'de> Visitor<'de> for SnapshotVisitor<'_, '_> {
    type Value = (u64, u64);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a snapshot frame")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(u64, u64), A::Error> {
        let builder = self.builder;
        let (mut kind, mut epoch, mut generation, mut zone) = (false, None, None, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "kind" => {
                    let value: String = map.next_value()?;
                    if kind {
                        return Err(de::Error::duplicate_field("kind"));
                    }
                    if value != "snapshot" {
                        return Err(de::Error::custom(format!("a snapshot line of kind `{value}`")));
                    }
                    kind = true;
                }
                "epoch" => once(&mut epoch, map.next_value()?, "epoch")?,
                "generation" => once(&mut generation, map.next_value()?, "generation")?,
                "zone" => {
                    if zone {
                        return Err(de::Error::duplicate_field("zone"));
                    }
                    map.next_value_seed(ZoneSeed { builder: &mut *builder })?;
                    zone = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !zone {
            return Err(de::Error::missing_field("zone"));
        }
        let generation = generation.ok_or_else(|| de::Error::missing_field("generation"))?;
        // `epoch` defaults to 0, as in `Frame`.
        Ok((epoch.unwrap_or(0), generation))
    }
}

fn once<E: de::Error>(slot: &mut Option<u64>, value: u64, field: &'static str) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(field));
    }
    Ok(())
}

/// `ZoneData`'s serde form: `{"names":{name:[rdata…],…},"clients":{ip:namespace,…}}` (clients optional).
struct ZoneSeed<'b, 's> {
    builder: &'b mut SnapshotBuilder<'s>,
}

impl<'de> DeserializeSeed<'de> for ZoneSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ZoneSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a zone")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let builder = self.builder;
        let (mut names, mut clients) = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "names" if names => return Err(de::Error::duplicate_field("names")),
                "names" => {
                    map.next_value_seed(Entries { builder: &mut *builder, of: Of::Names })?;
                    names = true;
                }
                "clients" if clients => return Err(de::Error::duplicate_field("clients")),
                "clients" => {
                    map.next_value_seed(Entries { builder: &mut *builder, of: Of::Clients })?;
                    clients = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !names {
            return Err(de::Error::missing_field("names"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Of {
    Names,
    Clients,
}

/// The entries of the zone's `names` or `clients` map, each handed to the builder as it is decoded.
struct Entries<'b, 's> {
    builder: &'b mut SnapshotBuilder<'s>,
    of: Of,
}

impl<'de> DeserializeSeed<'de> for Entries<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.of {
            Of::Names => "a map of names to records",
            Of::Clients => "a map of addresses to namespaces",
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let builder = self.builder;
        match self.of {
            Of::Names => {
                while let Some((name, records)) = map.next_entry::<DomainName, Vec<RData>>()? {
                    builder.add_name(&name, &records);
                }
            }
            Of::Clients => {
                while let Some((ip, namespace)) = map.next_entry::<IpAddr, String>()? {
                    builder.add_client(ip, &namespace);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::DnsConfig;
    use crate::convert::to_wire;
    use roster_shared::{Frame, PodMode, ZoneData};
    use std::sync::Arc;

    /// Serials from a fixed base: the tests compare two stores' apexes, SOA included.
    fn store() -> ZoneStore {
        ZoneStore::new(DnsConfig::new("cluster.local", 30, PodMode::Insecure).unwrap()).with_serial_base(1)
    }

    fn name(text: &str) -> DomainName {
        DomainName::parse(text).unwrap()
    }

    fn zone(count: u32, extra: Option<&str>) -> ZoneData {
        let apex = name("cluster.local");
        let mut zone = ZoneData::default();
        for i in 0..count {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            zone.add(name(&format!("p{i}.default.svc.cluster.local")), RData::A { ip }, &apex);
        }
        if let Some(extra) = extra {
            zone.add(name(extra), RData::A { ip: "10.9.9.9".parse().unwrap() }, &apex);
        }
        zone.clients.insert("10.0.0.1".parse().unwrap(), "default".to_owned());
        zone
    }

    fn line(epoch: u64, generation: u64, zone: ZoneData) -> Vec<u8> {
        serde_json::to_vec(&Frame::Snapshot { epoch, generation, zone: Arc::new(zone) }).unwrap()
    }

    /// Every name of `store`, as (wire name, node bytes), for comparing two stores.
    fn contents(store: &ZoneStore, zone: &ZoneData) -> Vec<Option<crate::wire::Node>> {
        let view = store.view();
        zone.names.keys().map(|owner| view.node(&to_wire(owner)).cloned()).collect()
    }

    #[test]
    fn streamed_and_whole_line_snapshots_build_the_same_table() {
        let zone = zone(500, None);
        let bytes = line(3, 7, zone.clone());
        assert!(bytes.starts_with(SNAPSHOT_START), "{}", String::from_utf8_lossy(&bytes[..40]));
        let whole = store();
        whole.apply(&Frame::Snapshot { epoch: 3, generation: 7, zone: Arc::new(zone.clone()) }).unwrap();
        let streamed = store();
        let prepared = decode(&bytes[..], &streamed).unwrap();
        assert_eq!(prepared.position(), (3, 7));
        streamed.swap_in(prepared);
        assert_eq!(streamed.position(), Some((3, 7)));
        assert_eq!(streamed.name_count(), whole.name_count());
        assert_eq!(contents(&streamed, &zone), contents(&whole, &zone));
    }

    #[test]
    fn unchanged_names_share_the_held_node() {
        let store = store();
        store.swap_in(decode(&line(1, 1, zone(300, None))[..], &store).unwrap());
        let next = zone(300, Some("new.default.svc.cluster.local"));
        let prepared = decode(&line(2, 1, next.clone())[..], &store).unwrap();
        // Every name but the new one (the apexes are rebuilt at the swap, never shared).
        assert_eq!(prepared.reused(), next.names.len() - 1 - 1, "of {}", prepared.name_count());
        store.swap_in(prepared);
        assert!(store.view().node(&to_wire(&name("new.default.svc.cluster.local"))).is_some());
    }

    #[test]
    fn keys_in_another_order_and_unknown_keys_are_accepted() {
        let store = store();
        let text = r#"{"kind":"snapshot","zone":{"future":[1],"clients":{},"names":{"a.default.svc.cluster.local":[{"type":"A","ip":"10.0.0.1"}]}},"later":{"x":1},"generation":4}"#;
        let prepared = decode(text.as_bytes(), &store).unwrap();
        assert_eq!(prepared.position(), (0, 4));
        let whole: Frame = serde_json::from_slice(text.as_bytes()).unwrap();
        assert_eq!(whole.generation(), 4, "the whole-line decoder accepts it too");
        store.swap_in(prepared);
        assert!(store.view().node(&to_wire(&name("a.default.svc.cluster.local"))).is_some());
    }

    #[test]
    fn packed_and_json_snapshots_build_the_same_table() {
        let zone = zone(500, None);
        let json = store();
        json.swap_in(decode(&line(3, 7, zone.clone())[..], &json).unwrap());
        let packed_store = store();
        let bytes = packed::encode(&zone).unwrap();
        let prepared = decode_packed(&bytes[..], &packed_store, 3, 7).unwrap();
        assert_eq!(prepared.position(), (3, 7));
        packed_store.swap_in(prepared);
        assert_eq!(packed_store.name_count(), json.name_count());
        assert_eq!(contents(&packed_store, &zone), contents(&json, &zone));
        let error = decode_packed(&bytes[..bytes.len() - 1], &packed_store, 4, 1).unwrap_err();
        assert!(error.starts_with("undecodable snapshot: packed snapshot") && error.contains("ends inside"), "{error}");
        assert_eq!(packed_store.position(), Some((3, 7)), "a broken snapshot changes nothing");
    }

    /// A headless service as synthesis makes it: pods with their own names, the service's addresses and
    /// SRV sets to them, a PTR to each pod.
    fn headless_zone(pods: u32) -> ZoneData {
        let apex = name("cluster.local");
        let service = name("nginx.default.svc.cluster.local");
        let mut zone = ZoneData::default();
        for i in 0..pods {
            let ip = std::net::Ipv4Addr::from(0x0a00_0100 + i);
            let pod = name(&format!("web-{i}.nginx.default.svc.cluster.local"));
            zone.add(pod.clone(), RData::A { ip }, &apex);
            zone.add(service.clone(), RData::A { ip }, &apex);
            let srv = RData::Srv { priority: 0, weight: 10, port: 80, target: pod.clone() };
            zone.add(service.clone(), srv.clone(), &apex);
            zone.add(name("_http._tcp.nginx.default.svc.cluster.local"), srv, &apex);
            zone.add(DomainName::reverse_of(ip.into()), RData::Ptr { target: pod }, &name("in-addr.arpa"));
        }
        zone.normalise();
        zone
    }

    #[test]
    fn a_packed_headless_service_builds_the_table_its_json_does() {
        let zone = headless_zone(40);
        let json = store();
        json.swap_in(decode(&line(1, 1, zone.clone())[..], &json).unwrap());
        let packed_store = store();
        packed_store.swap_in(decode_packed(&packed::encode(&zone).unwrap()[..], &packed_store, 1, 1).unwrap());
        assert_eq!(packed_store.name_count(), json.name_count());
        assert_eq!(contents(&packed_store, &zone), contents(&json, &zone));
        assert!(packed_store.view().node(&to_wire(&name("1.1.0.10.in-addr.arpa"))).is_some(), "an implied PTR");
    }

    #[test]
    fn an_implied_ptr_whose_name_is_also_written_is_refused() {
        // `1.0.0.10.in-addr.arpa` written with a PTR, and implied again by the member `x.a.cluster.local`.
        let mut bytes = b"RSPK\x04\x03\x03\x00".to_vec();
        bytes.extend_from_slice(&[0, 6, 4, b'a', b'r', b'p', b'a', 7]);
        bytes.extend_from_slice(b"in-addr");
        bytes.extend_from_slice(&[2, b'1', b'0', 1, b'0', 1, b'0', 1, b'1', 2, 4, 0, 4, 5]);
        bytes.extend_from_slice(b"local");
        bytes.extend_from_slice(&[7]);
        bytes.extend_from_slice(b"cluster");
        bytes.extend_from_slice(&[1, b'a', 1, b'x', 0, 3, 5]);
        bytes.extend_from_slice(b"local");
        bytes.extend_from_slice(&[7]);
        bytes.extend_from_slice(b"cluster");
        bytes.extend_from_slice(&[1, b'a', 1, 1, 1, 0, 1, b'x', 1, 4, 10, 0, 0, 1]);
        assert!(packed::decode_zone(&bytes).is_ok(), "well formed: only a table sees the name twice");
        let store = store();
        let error = decode_packed(&bytes[..], &store, 1, 1).unwrap_err();
        assert_eq!(error, "undecodable snapshot: `1.0.0.10.in-addr.arpa` is given twice");
        assert!(!store.is_synced());
    }

    #[test]
    fn bad_snapshots_are_refused_with_the_reason() {
        let store = store();
        let cases = [
            (r#"{"kind":"snapshot","generation":1}"#, "missing field `zone`"),
            (r#"{"kind":"snapshot","zone":{"names":{}}}"#, "missing field `generation`"),
            (r#"{"kind":"snapshot","generation":1,"generation":2,"zone":{"names":{}}}"#, "duplicate field"),
            (r#"{"kind":"snapshot","generation":1,"zone":{}}"#, "missing field `names`"),
            (r#"{"kind":"snapshot","generation":1,"zone":{"names":{"-bad-.cluster.local":[]}}}"#, "bad"),
            (r#"{"kind":"snapshot","generation":1,"zone":{"names":{"a.cluster.local":[{"type":"MX"}]}}}"#, "MX"),
            (r#"{"kind":"snapshot","generation":1,"zone":{"names":{}}} trailing"#, "trailing"),
            (r#"{"kind":"snapshot","generation":1,"zone":{"names":{"a.cluster.local":["#, "EOF"),
        ];
        for (text, reason) in cases {
            let error = decode(text.as_bytes(), &store).unwrap_err();
            assert!(error.starts_with("undecodable snapshot") && error.contains(reason), "{text}: {error}");
            // The whole-line decoder (old replicas, and lines that do not start as a snapshot) agrees.
            assert!(serde_json::from_slice::<Frame>(text.as_bytes()).is_err(), "{text}");
        }
        assert!(!store.is_synced(), "nothing was swapped in");
    }
}
