//! The light subscriber's visitor, shared by the benchmarks that decode packed snapshots.

use roster_shared::packed;

/// Takes every decoded name, record and client (the decoder has checked them), keeps none, and reads
/// every field into a running tally, so that nothing decoded goes unread; at the end the records it
/// was handed must be the records the snapshot declares. (A `black_box` per record read less and cost
/// more: the compiler built each record on the stack in parts and read it back whole, a failed store
/// forward per record.)
#[derive(Default)]
pub struct Verified {
    records: u64,
    clients: u64,
    tally: u64,
}

impl Verified {
    /// After the decoder's summary: every record and client it declares was handed over (and none is
    /// empty), and the tally is kept from being optimised away.
    pub fn check(&self, summary: &packed::Summary) -> Result<(), String> {
        std::hint::black_box(self.tally);
        if summary.records == 0 || (summary.records, summary.clients) != (self.records, self.clients) {
            return Err(format!(
                "the packed snapshot declares {} records and {} clients, {} and {} were decoded",
                summary.records, summary.clients, self.records, self.clients
            ));
        }
        Ok(())
    }

    fn name_bytes(&mut self, name: packed::CheckedName<'_>) {
        let bytes = name.as_bytes();
        self.tally = self.tally.wrapping_add(bytes.len() as u64 ^ u64::from(bytes.first().copied().unwrap_or(0)));
    }

    fn address(&mut self, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(ip) => self.v4(ip),
            std::net::IpAddr::V6(ip) => self.v6(ip),
        }
    }

    // The octets in memory order: any order reads them all, and this one needs no byte swap.
    fn v4(&mut self, ip: std::net::Ipv4Addr) {
        self.tally = self.tally.wrapping_add(u64::from(u32::from_ne_bytes(ip.octets())));
    }

    fn v6(&mut self, ip: std::net::Ipv6Addr) {
        let bits = u128::from_ne_bytes(ip.octets());
        self.tally = self.tally.wrapping_add(bits as u64 ^ (bits >> 64) as u64);
    }
}

impl packed::Visitor for Verified {
    fn name(&mut self, name: packed::CheckedName<'_>, records: packed::Records<'_>) {
        self.name_bytes(name);
        for record in records.iter() {
            self.records += 1;
            match record {
                packed::Record::A(ip) => self.v4(ip),
                packed::Record::Aaaa(ip) => self.v6(ip),
                packed::Record::Srv { priority, weight, port, target } => {
                    self.tally =
                        self.tally.wrapping_add(u64::from(priority) << 32 | u64::from(weight) << 16 | u64::from(port));
                    self.name_bytes(target);
                }
                packed::Record::Ptr(target) | packed::Record::Cname(target) | packed::Record::Ns(target) => {
                    self.name_bytes(target)
                }
                packed::Record::Txt(text) => self.tally = self.tally.wrapping_add(text.len() as u64),
            }
        }
    }

    fn ptr(&mut self, ip: std::net::IpAddr, target: packed::CheckedName<'_>) {
        self.records += 1;
        self.address(ip);
        self.name_bytes(target);
    }

    fn client(&mut self, ip: std::net::IpAddr, namespace: &str) {
        self.clients += 1;
        self.address(ip);
        self.tally = self.tally.wrapping_add(namespace.len() as u64);
    }
}
