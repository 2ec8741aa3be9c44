//! Server-side search completion (autopath), as CoreDNS's `autopath @kubernetes` answers: a query for
//! the first name of a pod's search list (`<name>.<ns>.svc.<zone>`) that does not exist is walked
//! through the rest of that list here — `<name>.svc.<zone>`, `<name>.<zone>`, the node's search
//! domains, then `<name>` as asked — and answered with the first candidate that exists, behind a
//! CNAME from the asked name. The pod (and so its namespace) comes from the client map the record
//! stream carries (`crate::clients`). This module only computes the candidates; the front handler
//! answers them.

use std::path::Path;

use hickory_proto::rr::Name;

use crate::config::DnsConfig;
use crate::convert::to_name;

/// The search domains after a pod's first one: the same for every pod of a cluster.
#[derive(Debug, Clone)]
pub struct SearchPath {
    /// `svc.<zone>`.
    svc: Name,
    zone: Name,
    /// The node's search domains, which the kubelet appends.
    node: Vec<Name>,
}

impl SearchPath {
    /// `None` when autopath is off.
    pub fn new(config: &DnsConfig) -> Option<Self> {
        let node = config.autopath.as_ref()?.iter().map(to_name).collect();
        let zone = to_name(&config.cluster_zone).to_lowercase();
        let svc = Name::from_ascii("svc").ok()?.append_domain(&zone).ok()?;
        Some(Self { svc, zone, node })
    }

    /// The names to try after `qname`, in the client's order, when `qname` is the first search
    /// candidate of a pod in `namespace` (strictly below `<namespace>.svc.<zone>`); `None` otherwise.
    /// Candidates that would pass 255 octets are left out, as the client's resolver leaves them out.
    pub fn candidates(&self, namespace: &str, qname: &Name) -> Option<Vec<Name>> {
        let qname = qname.to_lowercase();
        let first = Name::from_ascii(namespace).ok()?.append_domain(&self.svc).ok()?;
        if qname.num_labels() <= first.num_labels() || !first.zone_of(&qname) {
            return None;
        }
        let keep = usize::from(qname.num_labels() - first.num_labels());
        let mut base = Name::from_labels(qname.iter().take(keep)).ok()?;
        base.set_fqdn(true);
        let suffixes = [&self.svc, &self.zone].into_iter().chain(&self.node);
        let mut candidates: Vec<Name> = suffixes.filter_map(|suffix| base.clone().append_domain(suffix).ok()).collect();
        candidates.push(base);
        Some(candidates)
    }
}

/// The search domains of a resolv.conf (its last `search` or `domain` line, as the resolver reads
/// it): the node's, which the kubelet appends to every ClusterFirst pod's list. CoreDNS's
/// `autopath @kubernetes` reads its own resolv.conf the same way.
pub fn node_search(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut search = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let Some("search" | "domain") = words.next() {
            search = words.map(|w| w.trim_end_matches('.').to_owned()).filter(|w| !w.is_empty()).collect();
        }
    }
    Ok(search)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use roster_shared::PodMode;

    fn search(node: &[&str]) -> SearchPath {
        let node: Vec<String> = node.iter().map(|s| (*s).to_owned()).collect();
        let config = DnsConfig::new("cluster.local", 30, PodMode::Insecure).unwrap().with_autopath(&node).unwrap();
        SearchPath::new(&config).unwrap()
    }

    fn names(list: Option<Vec<Name>>) -> Option<Vec<String>> {
        list.map(|names| names.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_first_candidate_of_the_clients_namespace_walks_the_rest_of_its_search_list() {
        let search = search(&["corp.example"]);
        let asked = Name::from_ascii("API.example.com.Demo.svc.cluster.local.").unwrap();
        assert_eq!(
            names(search.candidates("demo", &asked)).unwrap(),
            [
                "api.example.com.svc.cluster.local.",
                "api.example.com.cluster.local.",
                "api.example.com.corp.example.",
                "api.example.com.",
            ]
        );
        // Another namespace's first candidate, the search domain itself, or a name above it: untouched.
        assert_eq!(names(search.candidates("other", &asked)), None);
        for name in ["demo.svc.cluster.local.", "svc.cluster.local.", "web.svc.cluster.local.", "example.com."] {
            assert_eq!(names(search.candidates("demo", &Name::from_ascii(name).unwrap())), None, "{name}");
        }
    }

    #[test]
    fn the_node_search_list_is_the_last_search_or_domain_line() {
        let dir = std::env::temp_dir().join(format!("roster-autopath-{}", std::process::id()));
        std::fs::write(&dir, "domain old.example\nnameserver 192.0.2.1\nsearch a.example b.example.\n").unwrap();
        assert_eq!(node_search(&dir).unwrap(), ["a.example", "b.example"]);
        std::fs::write(&dir, "nameserver 192.0.2.1\n").unwrap();
        assert!(node_search(&dir).unwrap().is_empty());
        std::fs::remove_file(&dir).unwrap();
        assert!(node_search(&dir).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn candidates_that_would_be_too_long_are_left_out() {
        let search = search(&["corp-network-internal.example"]);
        // 254 octets asked; with the node's domain instead of `x.svc.cluster.local`, 264.
        let base = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(40)].join(".");
        let asked = Name::from_ascii(format!("{base}.x.svc.cluster.local.")).unwrap();
        let expected = [format!("{base}.svc.cluster.local."), format!("{base}.cluster.local."), format!("{base}.")];
        assert_eq!(names(search.candidates("x", &asked)).unwrap(), expected);
    }
}
