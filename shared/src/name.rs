//! DNS names as roster stores them: absolute, lower-cased, without the trailing dot.

use std::borrow::Borrow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest presentation-form name that still fits 255 octets on the wire.
pub const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name `{0}` is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error("name `{name}` has an empty label")]
    EmptyLabel { name: String },
    #[error("label `{label}` is longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong { label: String },
    #[error("label `{label}` has a character other than a-z, 0-9, '-' or a leading '_'")]
    BadCharacter { label: String },
    #[error("label `{label}` starts or ends with '-'")]
    BadHyphen { label: String },
}

/// True when `label` is an RFC 1123 label as Kubernetes checks it (DNS-1123 label: lower-case
/// alphanumerics and '-', starting and ending with an alphanumeric, at most 63 characters).
pub fn is_dns1123_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL_LEN
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Longest DNS-1123 subdomain the Kubernetes API accepts (pod, EndpointSlice and most object names).
pub const MAX_SUBDOMAIN_LEN: usize = 253;

/// True when `text` is a DNS-1123 subdomain as the Kubernetes API checks it: at most 253 characters,
/// labels of lower-case alphanumerics and '-' that start and end with an alphanumeric, joined by '.'.
/// The API puts no limit on each label's length (its regular expression has none), so a valid pod
/// name such as 72 letters without a dot is not a DNS label.
pub fn is_dns1123_subdomain(text: &str) -> bool {
    text.len() <= MAX_SUBDOMAIN_LEN
        && text.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

/// True when `text` is an IANA service name as the Kubernetes API checks container port names
/// (IANA_SVC_NAME, RFC 6335 §5.1): 1-15 lower-case alphanumerics and '-', at least one letter, no
/// '-' at either end and no "--".
pub fn is_iana_svc_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 15
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.iter().any(u8::is_ascii_lowercase)
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && !text.contains("--")
}

/// A label as `DomainName::parse` keeps it: 1-63 of a-z, 0-9 and '-', not at either end, or a service
/// label: '_' then such a label. (The caller bounds the length: the packed decoder reads at most 63 bytes.)
pub(crate) fn is_canonical_label(label: &[u8]) -> bool {
    let body = match label {
        [b'_', rest @ ..] => rest,
        _ => label,
    };
    match body {
        [first, .., last] if *first == b'-' || *last == b'-' => false,
        [b'-'] | [] => false,
        _ => body.iter().all(|&b| LABEL_BYTE[usize::from(b)]),
    }
}

/// Whether `label`, whose first `checked` bytes are the start of a canonical label, is canonical: with
/// two or more such bytes (its first byte, and a leading '_' with the one after it, among them), only
/// the rest and its last byte need reading.
pub(crate) fn is_canonical_label_after(label: &[u8], checked: usize) -> bool {
    if checked < 2 {
        return is_canonical_label(label);
    }
    label.last() != Some(&b'-') && label[checked..].iter().all(|&b| LABEL_BYTE[usize::from(b)])
}

/// The bytes of a canonical label (other than a service label's leading '_'): one load per byte.
const LABEL_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
        byte += 1;
    }
    table
};

/// Checks one label of a host name in any case; `_` is allowed as the first character of service
/// labels such as `_http` and `_tcp` (RFC 2782).
fn check_label(label: &str, name: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel { name: name.to_owned() });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(NameError::LabelTooLong { label: label.to_owned() });
    }
    let body = label.strip_prefix('_').unwrap_or(label);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(NameError::BadCharacter { label: label.to_owned() });
    }
    if body.starts_with('-') || body.ends_with('-') {
        return Err(NameError::BadHyphen { label: label.to_owned() });
    }
    Ok(())
}

/// An absolute domain name in canonical form: lower case, labels joined by '.', no trailing dot.
///
/// The text is shared: a clone (an SRV or PTR target, a record added at a name already held) is a
/// reference count, not a copy. At 100k pod records synthesis cloned ~400k names, a third of its
/// allocations (bench/README.md, "Start-up"). Compared, ordered and hashed as its text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(Arc<str>);

impl DomainName {
    /// Parses a presentation-form name (a trailing dot is accepted), checking every label.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        if trimmed.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(trimmed.to_owned()));
        }
        for label in trimmed.split('.') {
            check_label(label, trimmed)?;
        }
        let mut text = Assembly::new();
        text.push_lowercase(trimmed);
        Ok(Self(text.share()))
    }

    /// `label.self`, checked.
    pub fn child(&self, label: &str) -> Result<Self, NameError> {
        self.prefixed(&[label])
    }

    /// `a.b.self` for labels given outermost first, checked innermost first (the first error found is
    /// the innermost label's, or the shortest suffix that is too long). One allocation: synthesis makes
    /// ~500k names at 100k pod records, and building them label by label with `format!` was a fifth of
    /// its cost.
    pub fn prefixed(&self, labels: &[&str]) -> Result<Self, NameError> {
        let mut len = self.0.len();
        for (index, label) in labels.iter().enumerate().rev() {
            check_label(label, label)?;
            len += label.len() + 1;
            if len > MAX_NAME_LEN {
                return Err(NameError::TooLong(Self::join(&labels[index..], &self.0)));
            }
        }
        let mut text = Assembly::new();
        for label in labels {
            text.push_lowercase(label);
            text.push(".");
        }
        text.push(&self.0);
        Ok(Self(text.share()))
    }

    /// `labels` (lower-cased) and `suffix`, joined by dots (for error messages).
    fn join(labels: &[&str], suffix: &str) -> String {
        let mut joined = String::with_capacity(labels.iter().map(|l| l.len() + 1).sum::<usize>() + suffix.len());
        for label in labels {
            joined.push_str(label);
            joined.push('.');
        }
        joined.make_ascii_lowercase();
        joined.push_str(suffix);
        joined
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without its first label, or `None` for a single-label name.
    pub fn parent(&self) -> Option<Self> {
        self.parent_str().map(|rest| Self(rest.into()))
    }

    /// The text of [`Self::parent`], without making a name of it.
    pub fn parent_str(&self) -> Option<&str> {
        self.0.split_once('.').map(|(_, rest)| rest)
    }

    /// True when `self` equals `zone` or lies below it.
    pub fn is_within(&self, zone: &DomainName) -> bool {
        is_within_str(&self.0, &zone.0)
    }

    pub fn label_count(&self) -> usize {
        self.0.split('.').count()
    }

    /// The reverse-lookup name of an address: `d.c.b.a.in-addr.arpa` or the nibble form under `ip6.arpa`.
    pub fn reverse_of(ip: IpAddr) -> Self {
        let mut text = Assembly::new();
        match ip {
            IpAddr::V4(v4) => {
                for octet in v4.octets().iter().rev() {
                    text.push_decimal(*octet);
                    text.push(".");
                }
                text.push("in-addr.arpa");
            }
            IpAddr::V6(v6) => {
                for byte in v6.octets().iter().rev() {
                    for half in [byte & 0x0f, byte >> 4] {
                        text.push_byte(NIBBLES[usize::from(half)]);
                        text.push(".");
                    }
                }
                text.push("ip6.arpa");
            }
        }
        Self(text.share())
    }
}

/// [`DomainName::is_within`] on texts: `name` equals `zone` or ends with `.zone`.
pub fn is_within_str(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len() && name.ends_with(zone) && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

const NIBBLES: &[u8; 16] = b"0123456789abcdef";

/// A name's text assembled on the stack, then shared: one allocation per name, not a `String` and
/// then its copy. Callers check the length first (at most [`MAX_NAME_LEN`]); pushing more panics.
struct Assembly {
    bytes: [u8; MAX_NAME_LEN],
    len: usize,
}

impl Assembly {
    fn new() -> Self {
        Self { bytes: [0; MAX_NAME_LEN], len: 0 }
    }

    fn push(&mut self, text: &str) {
        let end = self.len + text.len();
        self.bytes[self.len..end].copy_from_slice(text.as_bytes());
        self.len = end;
    }

    fn push_lowercase(&mut self, text: &str) {
        let start = self.len;
        self.push(text);
        self.bytes[start..self.len].make_ascii_lowercase();
    }

    /// An ASCII byte.
    fn push_byte(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn push_decimal(&mut self, value: u8) {
        if value >= 100 {
            self.push_byte(b'0' + value / 100);
        }
        if value >= 10 {
            self.push_byte(b'0' + value / 10 % 10);
        }
        self.push_byte(b'0' + value % 10);
    }

    fn share(&self) -> Arc<str> {
        // Only whole strings and ASCII were pushed, so the bytes are UTF-8: the lossy copy is never
        // taken. (`from_utf8_lossy` on every name was 3 % of start-up at 100k pod records.)
        let bytes = &self.bytes[..self.len];
        match std::str::from_utf8(bytes) {
            Ok(text) => Arc::from(text),
            Err(_) => Arc::from(&*String::from_utf8_lossy(bytes)),
        }
    }
}

/// The label CoreDNS gives an endpoint without a hostname: its address with '.' or ':' turned into '-'
/// (`10-244-1-7`, `fd00--1`), padded with `0` where an IPv6 form would start or end with '-'.
pub fn dashed_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let text = v6.to_string();
            // IPv4-mapped forms print with dots (`::ffff:1.2.3.4`); spell those out in hex groups.
            let text = if text.contains('.') {
                v6.segments().iter().map(|s| format!("{s:x}")).collect::<Vec<_>>().join(":")
            } else {
                text
            };
            let mut label = text.replace(':', "-");
            if label.starts_with('-') {
                label.insert(0, '0');
            }
            if label.ends_with('-') {
                label.push('0');
            }
            label
        }
    }
}

/// The inverse of [`dashed_ip`] for pod records: `10-244-1-7` → 10.244.1.7, `fd00--1` → fd00::1.
pub fn parse_dashed_ip(label: &str) -> Option<IpAddr> {
    if label.contains('.') || label.contains(':') {
        return None;
    }
    let dotted = label.replace('-', ".");
    if let Ok(v4) = dotted.parse::<std::net::Ipv4Addr>() {
        // Reject forms the dashed encoding never produces, such as leading zeros.
        return (dashed_ip(IpAddr::V4(v4)) == label).then_some(IpAddr::V4(v4));
    }
    label.replace('-', ":").parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DomainName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<DomainName> for String {
    fn from(value: DomainName) -> Self {
        value.0.as_ref().to_owned()
    }
}

/// Lets hash maps keyed by names be searched with a name's text, without making a name of it.
impl Borrow<str> for DomainName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// For decoders that check a name's text themselves, piecewise (`packed`): a name made of labels
/// already checked needs only its new labels checked.
impl DomainName {
    /// Checks every label of `text` as [`DomainName::parse`] does (in any case; not the total length).
    pub(crate) fn check_labels(text: &str) -> Result<(), NameError> {
        text.split('.').try_for_each(|label| check_label(label, text))
    }

    /// `text`, which the caller checked is a valid name in canonical form (a checked name's suffix, or
    /// text the packed decoder checked): nothing to check again.
    pub(crate) fn from_checked(text: &str) -> Self {
        Self(Arc::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_lowercases_and_strips_the_root() {
        let name = DomainName::parse("Web-0.NGINX.default.svc.Cluster.Local.").unwrap();
        assert_eq!(name.as_str(), "web-0.nginx.default.svc.cluster.local");
    }

    #[test]
    fn parse_rejects_bad_names() {
        assert_eq!(DomainName::parse(""), Err(NameError::Empty));
        assert!(matches!(DomainName::parse("a..b"), Err(NameError::EmptyLabel { .. })));
        assert!(matches!(DomainName::parse("-a.b"), Err(NameError::BadHyphen { .. })));
        assert!(matches!(DomainName::parse("a b.c"), Err(NameError::BadCharacter { .. })));
        assert!(matches!(DomainName::parse(&"a".repeat(64)), Err(NameError::LabelTooLong { .. })));
        let long = vec!["abcdefghi"; 30].join(".");
        assert!(matches!(DomainName::parse(&long), Err(NameError::TooLong(_))));
        assert!(DomainName::parse("_http._tcp.web.default.svc.cluster.local").is_ok());
    }

    #[test]
    fn within_respects_label_boundaries() {
        let zone = DomainName::parse("cluster.local").unwrap();
        assert!(DomainName::parse("a.cluster.local").unwrap().is_within(&zone));
        assert!(zone.is_within(&zone));
        assert!(!DomainName::parse("acluster.local").unwrap().is_within(&zone));
    }

    #[test]
    fn reverse_names() {
        assert_eq!(DomainName::reverse_of("10.244.1.7".parse().unwrap()).as_str(), "7.1.244.10.in-addr.arpa");
        let v6 = DomainName::reverse_of("fd00::1".parse().unwrap());
        assert!(v6.as_str().starts_with("1.0.0.0.0.0.0.0"));
        assert!(v6.as_str().ends_with("0.0.d.f.ip6.arpa"));
        assert_eq!(v6.label_count(), 34);
    }

    #[test]
    fn dashed_forms() {
        assert_eq!(dashed_ip("10.244.1.7".parse().unwrap()), "10-244-1-7");
        assert_eq!(dashed_ip("fd00::1".parse().unwrap()), "fd00--1");
        assert_eq!(dashed_ip("::1".parse().unwrap()), "0--1");
        assert_eq!(dashed_ip("fd00::".parse().unwrap()), "fd00--0");
        assert_eq!(parse_dashed_ip("10-244-1-7"), Some("10.244.1.7".parse().unwrap()));
        assert_eq!(parse_dashed_ip("fd00--1"), Some("fd00::1".parse().unwrap()));
        assert_eq!(parse_dashed_ip("10-244-1"), None);
        assert_eq!(parse_dashed_ip("web-0"), None);
    }

    proptest! {
        #[test]
        fn a_label_checked_after_a_canonical_start_is_checked_as_a_whole(
            start in "_?[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", cut in 0usize..14, rest in "[a-z0-9_.A-]{0,8}"
        ) {
            prop_assume!(is_canonical_label(start.as_bytes()));
            let cut = cut.min(start.len());
            let label = format!("{}{rest}", &start[..cut]);
            prop_assert_eq!(is_canonical_label_after(label.as_bytes(), cut), is_canonical_label(label.as_bytes()), "{}", label);
        }

        #[test]
        fn the_fast_label_check_agrees_with_parse_on_lower_case(label in "[a-z0-9_.A-]{0,63}") {
            // What `packed` accepts is what `parse` accepts and keeps unchanged (lower case).
            let parses = !label.contains('.') && label.len() <= MAX_LABEL_LEN && check_label(&label, &label).is_ok()
                && !label.bytes().any(|b| b.is_ascii_uppercase());
            prop_assert_eq!(is_canonical_label(label.as_bytes()), parses, "{}", label);
        }

        #[test]
        fn dashed_ip_round_trips(ip in any::<IpAddr>()) {
            let label = dashed_ip(ip);
            prop_assert!(check_label(&label, &label).is_ok());
            prop_assert_eq!(parse_dashed_ip(&label), Some(ip));
        }

        #[test]
        fn parse_is_idempotent_and_lowercase(labels in prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?", 1..6)) {
            let text = labels.join(".");
            let name = DomainName::parse(&text).unwrap();
            prop_assert_eq!(name.as_str(), text.to_ascii_lowercase());
            prop_assert_eq!(DomainName::parse(name.as_str()).unwrap(), name.clone());
            prop_assert_eq!(name.label_count(), labels.len());
        }

        #[test]
        fn parse_never_panics(text in ".{0,300}") {
            let _ = DomainName::parse(&text);
        }

        /// The reverse name written byte by byte is the one `format!` gives.
        #[test]
        fn reverse_names_are_the_formatted_ones(ip in any::<IpAddr>()) {
            let expected = match ip {
                IpAddr::V4(v4) => {
                    let [a, b, c, d] = v4.octets();
                    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
                }
                IpAddr::V6(v6) => {
                    let nibbles: Vec<String> =
                        v6.octets().iter().rev().flat_map(|byte| [byte & 0x0f, byte >> 4]).map(|n| format!("{n:x}")).collect();
                    format!("{}.ip6.arpa", nibbles.join("."))
                }
            };
            prop_assert_eq!(DomainName::reverse_of(ip).as_str().to_owned(), expected);
        }

        /// Names built label by label equal the same text parsed, and the text finds the name in a map.
        #[test]
        fn prefixed_equals_parsed(labels in prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", 1..4)) {
            let zone = DomainName::parse("cluster.local").unwrap();
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            let built = zone.prefixed(&refs).unwrap();
            let parsed = DomainName::parse(&format!("{}.cluster.local", labels.join("."))).unwrap();
            prop_assert_eq!(&built, &parsed);
            let map: std::collections::HashMap<DomainName, ()> = [(built, ())].into_iter().collect();
            prop_assert!(map.contains_key(parsed.as_str()));
        }

        #[test]
        fn reverse_names_are_valid(ip in any::<IpAddr>()) {
            let name = DomainName::reverse_of(ip);
            prop_assert_eq!(DomainName::parse(name.as_str()).unwrap(), name);
        }
    }
}
