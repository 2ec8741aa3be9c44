//! What a DNS replica is configured with: its zones, TTL and pod mode.

use roster_shared::{DomainName, PodMode};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid zone `{zone}`: {reason}")]
    BadZone { zone: String, reason: String },
    #[error("TTL {0} is out of range (0..=2147483647)")]
    BadTtl(u32),
    #[error("multicluster zone `{zone}` overlaps the zone `{other}`: it must be a zone of its own")]
    OverlappingZone { zone: String, other: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The cluster domain, e.g. `cluster.local`.
    pub cluster_zone: DomainName,
    /// Reverse zones served authoritatively (`in-addr.arpa` and `ip6.arpa` by default).
    pub reverse_zones: Vec<DomainName>,
    /// TTL of every record, and the SOA minimum (negative TTL).
    pub ttl: u32,
    pub pod_mode: PodMode,
    /// Autopath (server-side search completion) when set: the search domains the kubelet appends
    /// after the cluster's (the node's, from `--resolv-conf`), in order. `None`: off.
    pub autopath: Option<Vec<DomainName>>,
    /// The multicluster zone (KEP-1645, e.g. `clusterset.local`) served authoritatively beside the
    /// cluster zone; `None`: off, and its names are foreign like any other.
    pub multicluster_zone: Option<DomainName>,
}

impl DnsConfig {
    pub fn new(cluster_zone: &str, ttl: u32, pod_mode: PodMode) -> Result<Self, ConfigError> {
        if ttl > i32::MAX as u32 {
            return Err(ConfigError::BadTtl(ttl));
        }
        let cluster_zone = parse_zone(cluster_zone)?;
        let reverse_zones = vec![parse_zone("in-addr.arpa")?, parse_zone("ip6.arpa")?];
        Ok(Self { cluster_zone, reverse_zones, ttl, pod_mode, autopath: None, multicluster_zone: None })
    }

    /// Replaces the reverse zones, e.g. with the zones of configured CIDRs.
    pub fn with_reverse_zones(mut self, zones: &[String]) -> Result<Self, ConfigError> {
        self.reverse_zones = zones.iter().map(|z| parse_zone(z)).collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Turns autopath on, with the node's search domains after the cluster's.
    pub fn with_autopath(mut self, node_search: &[String]) -> Result<Self, ConfigError> {
        self.autopath = Some(node_search.iter().map(|z| parse_zone(z)).collect::<Result<_, _>>()?);
        Ok(self)
    }

    /// Serves `zone` as the multicluster zone. It must not contain, or lie within, the cluster zone
    /// or a reverse zone: each name has one zone.
    pub fn with_multicluster_zone(mut self, zone: &str) -> Result<Self, ConfigError> {
        let parsed = parse_zone(zone)?;
        if let Some(other) = self.zones().find(|other| parsed.is_within(other) || other.is_within(&parsed)) {
            return Err(ConfigError::OverlappingZone { zone: zone.to_owned(), other: other.to_string() });
        }
        self.multicluster_zone = Some(parsed);
        Ok(self)
    }

    /// Every authoritative zone: the cluster zone first, then the reverse zones, then the multicluster
    /// zone (the index order [`Self::is_reverse_zone`] relies on).
    pub fn zones(&self) -> impl Iterator<Item = &DomainName> {
        std::iter::once(&self.cluster_zone).chain(&self.reverse_zones).chain(&self.multicluster_zone)
    }

    /// True when the zone at `index` of [`Self::zones`] is a reverse zone (whose missing names fall
    /// through to the forwarder).
    pub fn is_reverse_zone(&self, index: usize) -> bool {
        (1..=self.reverse_zones.len()).contains(&index)
    }
}

fn parse_zone(zone: &str) -> Result<DomainName, ConfigError> {
    DomainName::parse(zone).map_err(|e| ConfigError::BadZone { zone: zone.to_owned(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_multicluster_zone_is_a_zone_of_its_own_after_the_reverse_zones() {
        let config = DnsConfig::new("cluster.local", 30, PodMode::Insecure).unwrap();
        let with = config.clone().with_multicluster_zone("ClusterSet.local.").unwrap();
        let zones: Vec<String> = with.zones().map(ToString::to_string).collect();
        assert_eq!(zones, ["cluster.local", "in-addr.arpa", "ip6.arpa", "clusterset.local"]);
        assert!(!with.is_reverse_zone(0) && with.is_reverse_zone(1) && with.is_reverse_zone(2));
        assert!(!with.is_reverse_zone(3), "the multicluster zone does not fall through");
        for overlapping in ["cluster.local", "svc.cluster.local", "local", "arpa", "1.10.in-addr.arpa"] {
            let error = config.clone().with_multicluster_zone(overlapping).unwrap_err();
            assert!(matches!(error, ConfigError::OverlappingZone { .. }), "{overlapping}: {error}");
        }
        assert!(matches!(config.with_multicluster_zone("a..b"), Err(ConfigError::BadZone { .. })));
    }
}
