//! The stand-in's address allocators: pod IPs (10.244.0.0/16), ClusterIPs (10.96.0.0/12) and node
//! ports (30000-32767), as the real control plane hands them out.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::meta;
use crate::status::{ApiError, Cause};

/// The first pod IP index (10.244.0.2).
const POD_IP_FIRST: u32 = 2;

/// Pod IPs, never reused before the whole /16 has been handed out.
#[derive(Debug, Clone, Copy)]
pub struct PodIps {
    next: u32,
}

impl Default for PodIps {
    fn default() -> Self {
        Self { next: POD_IP_FIRST }
    }
}

impl PodIps {
    /// Resume after the log's recorded position and every address a replayed pod holds.
    pub fn resume<'a>(recorded: Option<u32>, pods: impl Iterator<Item = &'a Value>) -> Self {
        let next = pods
            .filter_map(|p| pod_ip_index(meta::path_str(p, "status.podIP")))
            .map(|i| i + 1)
            .fold(recorded.unwrap_or(POD_IP_FIRST), u32::max);
        Self { next }
    }

    /// The position the log records.
    pub fn next_index(self) -> u32 {
        self.next
    }

    /// The next address, skipping each /24's network and broadcast-looking ones.
    pub fn allocate(&mut self) -> String {
        let mut idx = self.next;
        while matches!(idx % 256, 0 | 1 | 255) {
            idx += 1;
        }
        self.next = idx + 1;
        let base = u32::from(Ipv4Addr::new(10, 244, 0, 0));
        Ipv4Addr::from(base + idx % (1 << 16)).to_string()
    }
}

fn pod_ip_index(ip: &str) -> Option<u32> {
    let addr: Ipv4Addr = ip.parse().ok()?;
    let o = addr.octets();
    (o[0] == 10 && o[1] == 244).then(|| u32::from(o[2]) * 256 + u32::from(o[3]))
}

const SERVICE_CIDR_BASE: u32 = 0x0A60_0000; // 10.96.0.0/12
const SERVICE_CIDR_SIZE: u32 = 1 << 20;
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

/// The ClusterIPs in use, indexed so that allocating one does not read every service.
#[derive(Debug, Default)]
pub struct ServiceIps {
    in_use: HashSet<u32>,
}

impl ServiceIps {
    /// Keep the index in step with a service being stored (`next`) or removed (`prev` only).
    pub fn track(&mut self, prev: Option<&Value>, next: Option<&Value>) {
        let ip = |svc: &Value| meta::path_str(svc, "spec.clusterIP").parse::<Ipv4Addr>().ok().map(u32::from);
        if let Some(old) = prev.and_then(ip) {
            self.in_use.remove(&old);
        }
        if let Some(new) = next.and_then(ip) {
            self.in_use.insert(new);
        }
    }

    /// Give a new service its ClusterIP (the requested one if free) and node ports; `services` are the
    /// stored ones (their node ports are taken).
    pub fn allocate<'a>(&self, svc: &mut Value, services: impl Iterator<Item = &'a Value>) -> Result<(), ApiError> {
        if meta::path_str(svc, "spec.type") == "ExternalName" {
            return Ok(());
        }
        let requested = meta::path_str(svc, "spec.clusterIP").to_owned();
        if requested == "None" {
            meta::set_path(svc, "spec.clusterIPs", json!(["None"]));
            return Ok(());
        }
        let name = meta::name(svc).to_owned();
        let invalid = |msg: String| {
            ApiError::invalid(
                "",
                "Service",
                &name,
                &[Cause { field: "spec.clusterIPs".into(), message: msg, reason: "FieldValueInvalid" }],
            )
        };
        let ip = if requested.is_empty() {
            // 10.96.0.1 is the `kubernetes` service, 10.96.0.10 is kept for cluster DNS
            (2..SERVICE_CIDR_SIZE - 1)
                .filter(|n| *n != 10)
                .map(|n| SERVICE_CIDR_BASE + n)
                .find(|ip| !self.in_use.contains(ip))
                .map(|ip| Ipv4Addr::from(ip).to_string())
                .ok_or_else(|| invalid("failed to allocate a serviceIP: range is full".into()))?
        } else {
            let addr: Ipv4Addr = requested
                .parse()
                .map_err(|_| invalid(format!("Invalid value: \"{requested}\": must be a valid IP")))?;
            let n = u32::from(addr).wrapping_sub(SERVICE_CIDR_BASE);
            if n >= SERVICE_CIDR_SIZE {
                return Err(invalid(format!(
                    "Invalid value: []string{{\"{requested}\"}}: failed to allocate IP {requested}: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"
                )));
            }
            if self.in_use.contains(&u32::from(addr)) {
                return Err(invalid(format!(
                    "Invalid value: []string{{\"{requested}\"}}: failed to allocate IP {requested}: provided IP is already allocated"
                )));
            }
            requested
        };
        meta::set_path(svc, "spec.clusterIP", json!(ip));
        meta::set_path(svc, "spec.clusterIPs", json!([ip]));
        allocate_node_ports(svc, services)
    }
}

fn allocate_node_ports<'a>(svc: &mut Value, services: impl Iterator<Item = &'a Value>) -> Result<(), ApiError> {
    if !matches!(meta::path_str(svc, "spec.type"), "NodePort" | "LoadBalancer") {
        return Ok(());
    }
    let mut used: HashSet<i64> = services
        .flat_map(|s| meta::path(s, "spec.ports").and_then(Value::as_array).into_iter().flatten())
        .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
        .collect();
    let name = meta::name(svc).to_owned();
    let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else { return Ok(()) };
    for (i, p) in ports.iter_mut().enumerate() {
        match p.get("nodePort").and_then(Value::as_i64) {
            Some(np) if !NODE_PORTS.contains(&np) || !used.insert(np) => {
                let why = if NODE_PORTS.contains(&np) {
                    "provided port is already allocated"
                } else {
                    "provided port is not in the valid range. The range of valid ports is 30000-32767"
                };
                return Err(ApiError::invalid(
                    "",
                    "Service",
                    &name,
                    &[Cause {
                        field: format!("spec.ports[{i}].nodePort"),
                        message: format!("Invalid value: {np}: {why}"),
                        reason: "FieldValueInvalid",
                    }],
                ));
            }
            Some(_) => {}
            None => {
                let free = NODE_PORTS
                    .clone()
                    .find(|n| !used.contains(n))
                    .ok_or_else(|| ApiError::internal("failed to allocate a nodePort: range is full"))?;
                used.insert(free);
                p["nodePort"] = json!(free);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ips_skip_network_and_broadcast_addresses_and_resume_past_replayed_pods() {
        let mut ips = PodIps::default();
        assert_eq!(ips.allocate(), "10.244.0.2");
        let pod = json!({"status": {"podIP": "10.244.0.254"}});
        let mut resumed = PodIps::resume(Some(5), std::iter::once(&pod));
        assert_eq!(resumed.allocate(), "10.244.1.2", "past .254, skipping .255, .0 and .1");
    }

    #[test]
    fn a_requested_cluster_ip_in_use_is_refused() {
        let mut ips = ServiceIps::default();
        let existing = json!({"spec": {"clusterIP": "10.96.0.5"}});
        ips.track(None, Some(&existing));
        let mut svc = json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.5"}});
        let err = ips.allocate(&mut svc, std::iter::empty()).expect_err("taken");
        assert!(format!("{err:?}").contains("already allocated"), "{err:?}");
        ips.track(Some(&existing), None);
        ips.allocate(&mut svc, std::iter::empty()).expect("free again once the service is gone");
    }
}
