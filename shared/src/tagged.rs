//! Reading the stream's tagged objects (`RData` by `type`, `Change` by `op`, `Frame` by `kind`) in one
//! pass. serde's derived reader of an internally tagged enum first copies the whole object into a
//! generic tree (to find the tag, which may come last), then reads the variant from that tree: every
//! delta a replica received was parsed twice, with an allocation per field. These readers put each known
//! field into its own slot as it comes, in any order, and build the variant at the end. The JSON is the
//! derived writer's; unknown fields are ignored and a repeated one is refused, as the derived readers do.
//! (Measured at 1,000 subscribers: bench/README.md, "Record stream at node scale".)

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::frame::{Change, Frame, Trigger};
use crate::name::DomainName;
use crate::records::{RData, ZoneData};

/// Sets `slot` to the map's next value, refusing a second one.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    field: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(field));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

fn required<T, E: de::Error>(slot: Option<T>, field: &'static str) -> Result<T, E> {
    slot.ok_or_else(|| E::missing_field(field))
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum RecordType {
    A,
    Aaaa,
    Srv,
    Ptr,
    Cname,
    Txt,
    Ns,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum RecordField {
    Type,
    Ip,
    Priority,
    Weight,
    Port,
    Target,
    Text,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for RData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RDataVisitor)
    }
}

struct RDataVisitor;

impl<'de> Visitor<'de> for RDataVisitor {
    type Value = RData;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record: an object with its `type` and fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RData, A::Error> {
        let mut kind: Option<RecordType> = None;
        let mut ip: Option<IpAddr> = None;
        let (mut priority, mut weight, mut port): (Option<u16>, Option<u16>, Option<u16>) = (None, None, None);
        let mut target: Option<DomainName> = None;
        let mut text: Option<String> = None;
        while let Some(field) = map.next_key::<RecordField>()? {
            match field {
                RecordField::Type => once(&mut map, &mut kind, "type")?,
                RecordField::Ip => once(&mut map, &mut ip, "ip")?,
                RecordField::Priority => once(&mut map, &mut priority, "priority")?,
                RecordField::Weight => once(&mut map, &mut weight, "weight")?,
                RecordField::Port => once(&mut map, &mut port, "port")?,
                RecordField::Target => once(&mut map, &mut target, "target")?,
                RecordField::Text => once(&mut map, &mut text, "text")?,
                RecordField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let family = |ip: IpAddr, want: &str| -> A::Error {
            de::Error::invalid_value(de::Unexpected::Str(&ip.to_string()), &want)
        };
        Ok(match required(kind, "type")? {
            RecordType::A => match required(ip, "ip")? {
                IpAddr::V4(ip) => RData::A { ip },
                other => return Err(family(other, "an IPv4 address")),
            },
            RecordType::Aaaa => match required(ip, "ip")? {
                IpAddr::V6(ip) => RData::Aaaa { ip },
                other => return Err(family(other, "an IPv6 address")),
            },
            RecordType::Srv => RData::Srv {
                priority: required(priority, "priority")?,
                weight: required(weight, "weight")?,
                port: required(port, "port")?,
                target: required(target, "target")?,
            },
            RecordType::Ptr => RData::Ptr { target: required(target, "target")? },
            RecordType::Cname => RData::Cname { target: required(target, "target")? },
            RecordType::Ns => RData::Ns { target: required(target, "target")? },
            RecordType::Txt => RData::Txt { text: required(text, "text")? },
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ChangeOp {
    Set,
    Remove,
    Client,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum ChangeField {
    Op,
    Name,
    Records,
    Ip,
    Namespace,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ChangeVisitor)
    }
}

struct ChangeVisitor;

impl<'de> Visitor<'de> for ChangeVisitor {
    type Value = Change;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a change: an object with its `op` and fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Change, A::Error> {
        let mut op: Option<ChangeOp> = None;
        let mut name: Option<DomainName> = None;
        let mut records: Option<Vec<RData>> = None;
        let mut ip: Option<IpAddr> = None;
        // `null` and absent are both "no namespace".
        let mut namespace: Option<Option<String>> = None;
        while let Some(field) = map.next_key::<ChangeField>()? {
            match field {
                ChangeField::Op => once(&mut map, &mut op, "op")?,
                ChangeField::Name => once(&mut map, &mut name, "name")?,
                ChangeField::Records => once(&mut map, &mut records, "records")?,
                ChangeField::Ip => once(&mut map, &mut ip, "ip")?,
                ChangeField::Namespace => once(&mut map, &mut namespace, "namespace")?,
                ChangeField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match required(op, "op")? {
            ChangeOp::Set => Change::Set { name: required(name, "name")?, records: required(records, "records")? },
            ChangeOp::Remove => Change::Remove { name: required(name, "name")? },
            ChangeOp::Client => Change::Client { ip: required(ip, "ip")?, namespace: namespace.flatten() },
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum FrameKind {
    Snapshot,
    Delta,
    Bookmark,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum FrameField {
    Kind,
    Epoch,
    Generation,
    Zone,
    Changes,
    Trigger,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Frame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FrameVisitor)
    }
}

struct FrameVisitor;

impl<'de> Visitor<'de> for FrameVisitor {
    type Value = Frame;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a frame: an object with its `kind` and fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Frame, A::Error> {
        let mut kind: Option<FrameKind> = None;
        let (mut epoch, mut generation): (Option<u64>, Option<u64>) = (None, None);
        let mut zone: Option<Arc<ZoneData>> = None;
        let mut changes: Option<Vec<Change>> = None;
        let mut trigger: Option<Option<Trigger>> = None;
        while let Some(field) = map.next_key::<FrameField>()? {
            match field {
                FrameField::Kind => once(&mut map, &mut kind, "kind")?,
                FrameField::Epoch => once(&mut map, &mut epoch, "epoch")?,
                FrameField::Generation => once(&mut map, &mut generation, "generation")?,
                FrameField::Zone => once(&mut map, &mut zone, "zone")?,
                FrameField::Changes => once(&mut map, &mut changes, "changes")?,
                FrameField::Trigger => once(&mut map, &mut trigger, "trigger")?,
                FrameField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let kind = required(kind, "kind")?;
        let generation = required(generation, "generation")?;
        Ok(match kind {
            // `epoch` defaults to 0 (a publisher from before epochs).
            FrameKind::Snapshot => {
                Frame::Snapshot { epoch: epoch.unwrap_or(0), generation, zone: required(zone, "zone")? }
            }
            FrameKind::Delta => {
                Frame::Delta { generation, changes: required(changes, "changes")?, trigger: trigger.flatten() }
            }
            FrameKind::Bookmark => Frame::Bookmark { generation },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn name(text: &str) -> DomainName {
        DomainName::parse(text).unwrap()
    }

    fn every_record() -> Vec<RData> {
        vec![
            RData::A { ip: Ipv4Addr::new(10, 0, 0, 1) },
            RData::Aaaa { ip: Ipv6Addr::LOCALHOST },
            RData::Srv { priority: 0, weight: 100, port: 80, target: name("web-0.nginx.default.svc.cluster.local") },
            RData::Ptr { target: name("web-0.nginx.default.svc.cluster.local") },
            RData::Cname { target: name("example.com") },
            RData::Txt { text: "a \"quoted\" text".to_owned() },
            RData::Ns { target: name("ns.dns.cluster.local") },
        ]
    }

    fn every_frame() -> Vec<Frame> {
        let mut zone = ZoneData::default();
        zone.names.insert(name("a.cluster.local"), every_record());
        zone.clients.insert("10.0.0.1".parse().unwrap(), "default".to_owned());
        let trigger = Trigger { unix_ms: 1_700_000_000_000, service_kind: "cluster_ip".to_owned() };
        vec![
            Frame::Snapshot { epoch: 3, generation: 7, zone: Arc::new(zone) },
            Frame::Delta {
                generation: 8,
                changes: vec![
                    Change::Set { name: name("a.cluster.local"), records: every_record() },
                    Change::Set { name: name("b.cluster.local"), records: vec![] },
                    Change::Remove { name: name("c.cluster.local") },
                    Change::Client { ip: "10.0.0.2".parse().unwrap(), namespace: Some("default".to_owned()) },
                    Change::Client { ip: "fd00::2".parse().unwrap(), namespace: None },
                ],
                trigger: Some(trigger),
            },
            Frame::Delta { generation: 9, changes: vec![], trigger: None },
            Frame::Bookmark { generation: 9 },
        ]
    }

    #[test]
    fn what_the_derived_writer_writes_is_read_back() {
        for frame in every_frame() {
            let text = serde_json::to_string(&frame).unwrap();
            assert_eq!(serde_json::from_str::<Frame>(&text).unwrap(), frame, "{text}");
        }
    }

    /// Each object's keys in reverse order (or sorted, where `serde_json` does not keep the order): the tag
    /// is not first, as the derived writer puts it.
    fn reversed(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.reverse();
                let mut out = serde_json::Map::new();
                for (key, value) in entries {
                    out.insert(key, reversed(value));
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(reversed).collect()),
            other => other,
        }
    }

    #[test]
    fn fields_are_read_in_any_order_and_unknown_ones_ignored() {
        for frame in every_frame() {
            let mut value = reversed(serde_json::to_value(&frame).unwrap());
            let text = serde_json::to_string(&value).unwrap();
            assert!(!text.starts_with(r#"{"kind""#), "{text}");
            assert_eq!(serde_json::from_str::<Frame>(&text).unwrap(), frame, "{text}");
            value.as_object_mut().unwrap().insert("future".to_owned(), serde_json::json!({"any": [1, "thing"]}));
            assert_eq!(serde_json::from_value::<Frame>(value).unwrap(), frame);
        }
        let record = r#"{"ttl":30,"ip":"10.0.0.9","type":"A","note":null}"#;
        assert_eq!(serde_json::from_str::<RData>(record).unwrap(), RData::A { ip: Ipv4Addr::new(10, 0, 0, 9) });
        let client = r#"{"op":"client","ip":"10.0.0.3","namespace":null}"#;
        let expected = Change::Client { ip: "10.0.0.3".parse().unwrap(), namespace: None };
        assert_eq!(serde_json::from_str::<Change>(client).unwrap(), expected);
        // `epoch` absent: 0, as from a publisher from before epochs.
        let snapshot = r#"{"kind":"snapshot","generation":1,"zone":{"names":{}}}"#;
        assert!(matches!(serde_json::from_str::<Frame>(snapshot).unwrap(), Frame::Snapshot { epoch: 0, .. }));
    }

    #[test]
    fn bad_objects_are_refused_with_the_problem_named() {
        for (text, problem) in [
            (r#"{"type":"A"}"#, "missing field `ip`"),
            (r#"{"ip":"10.0.0.1"}"#, "missing field `type`"),
            (r#"{"type":"MX","ip":"10.0.0.1"}"#, "unknown variant `MX`"),
            (r#"{"type":"A","ip":"fd00::1"}"#, "expected an IPv4 address"),
            (r#"{"type":"AAAA","ip":"10.0.0.1"}"#, "expected an IPv6 address"),
            (r#"{"type":"A","ip":"10.0.0.1","ip":"10.0.0.2"}"#, "duplicate field `ip`"),
            (r#"{"type":"SRV","priority":0,"weight":1,"port":70000,"target":"a.b"}"#, "70000"),
            (r#"{"type":"PTR","target":"Not..Valid"}"#, "Not..Valid"),
            (r#"["A","10.0.0.1"]"#, "a record"),
        ] {
            let error = serde_json::from_str::<RData>(text).unwrap_err().to_string();
            assert!(error.contains(problem), "{text}: {error}");
        }
        for (text, problem) in [
            (r#"{"op":"set","name":"a.cluster.local"}"#, "missing field `records`"),
            (r#"{"op":"move","name":"a.cluster.local"}"#, "unknown variant `move`"),
            (r#"{"op":"remove","op":"remove","name":"a.cluster.local"}"#, "duplicate field `op`"),
        ] {
            let error = serde_json::from_str::<Change>(text).unwrap_err().to_string();
            assert!(error.contains(problem), "{text}: {error}");
        }
        for (text, problem) in [
            (r#"{"kind":"delta","generation":2}"#, "missing field `changes`"),
            (r#"{"kind":"bookmark"}"#, "missing field `generation`"),
            (r#"{"generation":2}"#, "missing field `kind`"),
            (r#"{"kind":"packed_snapshot","generation":2,"bytes":10}"#, "unknown variant `packed_snapshot`"),
            (r#"{"kind":"delta","generation":2,"changes":[{"op":"set"}]}"#, "missing field `name`"),
        ] {
            let error = serde_json::from_str::<Frame>(text).unwrap_err().to_string();
            assert!(error.contains(problem), "{text}: {error}");
        }
    }
}
