//! The autopath client map: pod address → namespace, as the record stream carries it (the same
//! generation as the records, so a deleted or finished pod's address never maps to it, and a reused
//! address maps to its new pod with the frame that publishes it).
//!
//! Memory is the point (CoreDNS's pod cache roughly triples its footprint): one entry is the address
//! and a pointer to the namespace, which is shared by every pod of that namespace.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rustc_hash::FxHasher;

type Fx = BuildHasherDefault<FxHasher>;

#[derive(Debug, Default)]
pub struct Clients {
    /// Split by family: an IPv4 entry is 24 bytes instead of the 40 an `IpAddr` key would take.
    v4: HashMap<Ipv4Addr, Arc<str>, Fx>,
    v6: HashMap<Ipv6Addr, Arc<str>, Fx>,
    /// Each namespace's name once; dropped when its last client goes.
    namespaces: HashSet<Arc<str>, Fx>,
}

impl Clients {
    /// Maps `ip` to `namespace`, or forgets it (`None`).
    pub fn set(&mut self, ip: IpAddr, namespace: Option<&str>) {
        let interned = namespace.map(|namespace| self.intern(namespace));
        let old = match (ip.to_canonical(), interned) {
            (IpAddr::V4(ip), Some(namespace)) => self.v4.insert(ip, namespace),
            (IpAddr::V4(ip), None) => self.v4.remove(&ip),
            (IpAddr::V6(ip), Some(namespace)) => self.v6.insert(ip, namespace),
            (IpAddr::V6(ip), None) => self.v6.remove(&ip),
        };
        if let Some(old) = old {
            self.release(old);
        }
    }

    /// The namespace of the pod at `ip` (IPv4-mapped IPv6 sources count as IPv4).
    pub fn namespace(&self, ip: IpAddr) -> Option<&str> {
        match ip.to_canonical() {
            IpAddr::V4(ip) => self.v4.get(&ip),
            IpAddr::V6(ip) => self.v6.get(&ip),
        }
        .map(|namespace| &**namespace)
    }

    /// Makes room for `v4` and `v6` more clients, so that filling the map never rehashes (each rehash
    /// leaves the smaller table's pages behind in the allocator).
    pub fn reserve(&mut self, v4: usize, v6: usize) {
        self.v4.reserve(v4);
        self.v6.reserve(v6);
    }

    /// How many IPv4 and IPv6 clients are held.
    pub fn len_by_family(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn intern(&mut self, namespace: &str) -> Arc<str> {
        if let Some(existing) = self.namespaces.get(namespace) {
            return existing.clone();
        }
        let interned: Arc<str> = Arc::from(namespace);
        self.namespaces.insert(interned.clone());
        interned
    }

    /// Drops one client's hold on its namespace, and the namespace with the last one.
    fn release(&mut self, namespace: Arc<str>) {
        // Two holders left: the interning set and `namespace` itself.
        if Arc::strong_count(&namespace) == 2 {
            self.namespaces.remove(&*namespace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn addresses_map_to_namespaces_and_namespaces_are_shared_until_their_last_client_goes() {
        let mut clients = Clients::default();
        clients.set(ip("10.0.0.1"), Some("demo"));
        clients.set(ip("10.0.0.2"), Some("demo"));
        clients.set(ip("fd00::1"), Some("other"));
        assert_eq!(clients.namespace(ip("10.0.0.1")), Some("demo"));
        assert_eq!(clients.namespace(ip("::ffff:10.0.0.2")), Some("demo"), "mapped IPv4 is IPv4");
        assert_eq!(clients.namespace(ip("fd00::1")), Some("other"));
        assert_eq!(clients.namespaces.len(), 2);
        // A reused address moves to its new namespace.
        clients.set(ip("10.0.0.1"), Some("other"));
        assert_eq!(clients.namespace(ip("10.0.0.1")), Some("other"));
        clients.set(ip("10.0.0.2"), None);
        assert_eq!(clients.namespace(ip("10.0.0.2")), None);
        assert_eq!(clients.namespaces.len(), 1, "demo has no client left");
        clients.set(ip("10.0.0.1"), None);
        clients.set(ip("fd00::1"), None);
        clients.set(ip("fd00::9"), None);
        assert!(clients.is_empty() && clients.namespaces.is_empty());
    }
}
