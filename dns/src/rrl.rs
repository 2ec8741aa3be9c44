//! Response rate limiting with BIND's semantics (ARM, `rate-limit`), to blunt reflection attacks
//! through the UDP port. Each account — a client netblock (IPv4 /24, IPv6 /56) and one kind of
//! response (an answer for a name and type, NXDOMAIN for a domain, any error) — earns
//! `responses_per_second` credits a second, never holding more than that; a response costs one.
//! While the balance is negative responses are dropped, except every `slip`-th, which is answered
//! truncated (TC=1, no records) so that a real client behind a spoofed address retries over TCP.
//! The balance never falls below `-window × responses_per_second`, so a client that stops recovers
//! within `window` seconds. TCP is never limited (its source cannot be spoofed). The table of
//! accounts is bounded: when full, accounts idle for a whole window go, then the stalest of a sample.
//!
//! The UDP loop decides per response with [`ResponseRateLimiter::check`] (through
//! `FrontHandler::rate_limit`) and sends [`truncated_reply`] for a slip.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::LowerName;
use parking_lot::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrlConfig {
    /// Identical responses per second to one netblock before limiting; 0 turns limiting off.
    pub responses_per_second: u32,
    /// Seconds over which rates are tracked (BIND: 1..=3600, default 15).
    pub window: u32,
    /// Every `slip`-th limited response is sent truncated; 0 never, 1 always (BIND: 0..=10, default 2).
    pub slip: u32,
    /// Accounts tracked at most (BIND's `max-table-size`, default 20000).
    pub max_accounts: usize,
}

impl RrlConfig {
    pub fn new(responses_per_second: u32) -> Self {
        Self { responses_per_second, window: 15, slip: 2, max_accounts: 20_000 }
    }

    /// Checks the ranges BIND accepts; the error names the option.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=3600).contains(&self.window) {
            return Err(format!("window {} is out of range 1..=3600 seconds", self.window));
        }
        if self.slip > 10 {
            return Err(format!("slip {} is out of range 0..=10", self.slip));
        }
        Ok(())
    }
}

/// What a response is, for grouping identical ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResponseKind {
    /// An answer (or NODATA) for this name and type.
    Answer(LowerName, u16),
    /// NXDOMAIN within this domain (the zone of the SOA, or the zone the server holds).
    NxDomain(LowerName),
    /// SERVFAIL, REFUSED, FORMERR and the like, whatever the name.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Drop,
    /// Send a truncated, empty reply instead ([`truncated_reply`]).
    Slip,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Account {
    netblock: IpAddr,
    kind: ResponseKind,
}

#[derive(Debug)]
struct Bucket {
    balance: i64,
    /// Credits were last added at this time (whole seconds are added).
    credited: Instant,
    /// Limited responses so far, for the slip.
    limited: u64,
}

pub struct ResponseRateLimiter {
    config: RrlConfig,
    accounts: Mutex<HashMap<Account, Bucket>>,
}

/// The client's netblock: IPv4 /24, IPv6 /56 (BIND's defaults).
pub fn netblock(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::from(std::net::Ipv4Addr::from(u32::from(v4) & 0xFFFF_FF00)),
        IpAddr::V6(v6) => IpAddr::from(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 72) - 1))),
    }
}

impl ResponseRateLimiter {
    pub fn new(config: RrlConfig) -> Self {
        Self { config, accounts: Mutex::default() }
    }

    pub fn len(&self) -> usize {
        self.accounts.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether to send, drop or slip a response of `kind` to `client` at `now`.
    pub fn check(&self, client: IpAddr, tcp: bool, kind: ResponseKind, now: Instant) -> Verdict {
        let rate = i64::from(self.config.responses_per_second);
        if tcp || rate == 0 {
            return Verdict::Send;
        }
        let account = Account { netblock: netblock(client), kind };
        let mut accounts = self.accounts.lock();
        if !accounts.contains_key(&account) && accounts.len() >= self.config.max_accounts {
            self.make_room(&mut accounts, now);
        }
        let bucket = accounts.entry(account).or_insert(Bucket { balance: rate, credited: now, limited: 0 });
        let seconds = now.saturating_duration_since(bucket.credited).as_secs();
        if seconds > 0 {
            let earned = rate.saturating_mul(i64::try_from(seconds).unwrap_or(i64::MAX));
            bucket.balance = bucket.balance.saturating_add(earned).min(rate);
            bucket.credited += Duration::from_secs(seconds);
        }
        let floor = -rate * i64::from(self.config.window);
        bucket.balance = (bucket.balance - 1).max(floor);
        if bucket.balance >= 0 {
            return Verdict::Send;
        }
        bucket.limited += 1;
        let slip = u64::from(self.config.slip);
        if slip > 0 && bucket.limited.is_multiple_of(slip) { Verdict::Slip } else { Verdict::Drop }
    }

    /// Drops accounts idle for a whole window (they would start afresh anyway); if none is, the
    /// stalest of a sample.
    fn make_room(&self, accounts: &mut HashMap<Account, Bucket>, now: Instant) {
        let window = Duration::from_secs(u64::from(self.config.window));
        let before = accounts.len();
        accounts.retain(|_, bucket| now.saturating_duration_since(bucket.credited) < window);
        if accounts.len() < before {
            return;
        }
        let stalest = accounts.iter().take(16).min_by_key(|(_, bucket)| bucket.credited).map(|(a, _)| a.clone());
        if let Some(account) = stalest {
            accounts.remove(&account);
        }
    }
}

/// A slip: the request's header and question with QR and TC set, RD kept, no records, NOERROR.
/// `None` when the request has no complete question to copy.
pub fn truncated_reply(request: &[u8]) -> Option<Vec<u8>> {
    let header = request.get(..12)?;
    // The question: one name (labels, no compression in a query) and type and class.
    let mut at = 12;
    loop {
        let len = usize::from(*request.get(at)?);
        if len & 0xC0 != 0 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = request.get(12..at + 4)?;
    let mut reply = Vec::with_capacity(12 + question.len());
    reply.extend_from_slice(&header[..2]);
    reply.push((header[2] & 0x79) | 0x80 | 0x02); // QR, opcode and RD kept, TC; AA off
    reply.push(0); // RA off, RCODE NOERROR
    reply.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    fn answer(name: &str) -> ResponseKind {
        ResponseKind::Answer(LowerName::new(&Name::from_ascii(name).unwrap()), 1)
    }

    fn client(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// `count` identical responses within one instant, as verdicts.
    fn burst(rrl: &ResponseRateLimiter, from: &str, kind: &ResponseKind, now: Instant, count: usize) -> Vec<Verdict> {
        (0..count).map(|_| rrl.check(client(from), false, kind.clone(), now)).collect()
    }

    #[test]
    fn over_the_rate_responses_are_dropped_and_every_slip_th_truncated() {
        let rrl =
            ResponseRateLimiter::new(RrlConfig { responses_per_second: 5, window: 15, slip: 2, max_accounts: 100 });
        let now = Instant::now();
        let www = answer("www.example.com.");
        let verdicts = burst(&rrl, "192.0.2.1", &www, now, 11);
        assert_eq!(&verdicts[..5], [Verdict::Send; 5], "the per-second allowance");
        assert_eq!(
            &verdicts[5..],
            [Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]
        );
        // The same /24 shares the account; another /24, another response or TCP do not.
        assert_eq!(rrl.check(client("192.0.2.200"), false, www.clone(), now), Verdict::Drop);
        assert_eq!(rrl.check(client("192.0.3.1"), false, www.clone(), now), Verdict::Send);
        assert_eq!(rrl.check(client("192.0.2.1"), false, answer("mail.example.com."), now), Verdict::Send);
        assert_eq!(rrl.check(client("192.0.2.1"), true, www, now), Verdict::Send, "TCP is never limited");
    }

    #[test]
    fn slip_zero_drops_all_and_slip_one_truncates_all() {
        let now = Instant::now();
        let www = answer("www.example.com.");
        for (slip, expected) in [(0, Verdict::Drop), (1, Verdict::Slip)] {
            let rrl =
                ResponseRateLimiter::new(RrlConfig { responses_per_second: 2, window: 15, slip, max_accounts: 100 });
            assert_eq!(burst(&rrl, "192.0.2.1", &www, now, 6)[2..], [expected; 4], "slip {slip}");
        }
    }

    /// A flooding client's debt is capped at window × rate: once it stops, it recovers within the
    /// window, not sooner.
    #[test]
    fn a_client_that_stops_recovers_within_the_window() {
        let rrl =
            ResponseRateLimiter::new(RrlConfig { responses_per_second: 10, window: 5, slip: 0, max_accounts: 100 });
        let start = Instant::now();
        let www = answer("www.example.com.");
        burst(&rrl, "192.0.2.1", &www, start, 1_000);
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(rrl.check(client("192.0.2.1"), false, www.clone(), at(4)), Verdict::Drop, "still in debt");
        assert_eq!(rrl.check(client("192.0.2.1"), false, www, at(6)), Verdict::Send, "recovered after the window");
    }

    #[test]
    fn ipv6_clients_share_a_56_and_nxdomain_and_errors_group() {
        let rrl =
            ResponseRateLimiter::new(RrlConfig { responses_per_second: 1, window: 15, slip: 0, max_accounts: 100 });
        let now = Instant::now();
        let nx = ResponseKind::NxDomain(LowerName::new(&Name::from_ascii("example.com.").unwrap()));
        assert_eq!(rrl.check(client("2001:db8:0:ab::1"), false, nx.clone(), now), Verdict::Send);
        assert_eq!(rrl.check(client("2001:db8:0:ff::2"), false, nx.clone(), now), Verdict::Drop, "same /56");
        assert_eq!(rrl.check(client("2001:db8:0:100::1"), false, nx, now), Verdict::Send, "another /56");
        assert_eq!(rrl.check(client("192.0.2.1"), false, ResponseKind::Error, now), Verdict::Send);
        assert_eq!(rrl.check(client("192.0.2.9"), false, ResponseKind::Error, now), Verdict::Drop);
        assert_eq!(netblock(client("198.51.100.77")), client("198.51.100.0"));
    }

    #[test]
    fn the_table_is_bounded() {
        let rrl =
            ResponseRateLimiter::new(RrlConfig { responses_per_second: 5, window: 15, slip: 2, max_accounts: 64 });
        let now = Instant::now();
        for i in 0..10_000u32 {
            let ip = IpAddr::from((0x0A00_0000 | (i << 8)).to_be_bytes());
            rrl.check(ip, false, answer("www.example.com."), now);
            assert!(rrl.len() <= 64);
        }
        assert!(RrlConfig { window: 0, ..RrlConfig::new(5) }.validate().unwrap_err().contains("window 0"));
        assert!(RrlConfig { slip: 11, ..RrlConfig::new(5) }.validate().unwrap_err().contains("slip 11"));
    }

    #[test]
    fn a_slip_is_the_question_with_tc_and_no_records() {
        let mut query = Message::new(0x1234, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(Name::from_ascii("Www.Example.com.").unwrap(), RecordType::A));
        let reply = Message::from_vec(&truncated_reply(&query.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert!(reply.metadata.truncation && reply.metadata.recursion_desired);
        assert_eq!(reply.queries, query.queries);
        assert!(reply.answers.is_empty() && reply.authorities.is_empty() && reply.additionals.is_empty());
        assert_eq!(truncated_reply(&[0x12, 0x34, 1]), None);
    }
}
