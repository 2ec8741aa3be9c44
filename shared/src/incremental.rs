//! Incremental synthesis: the zone kept as the union of its parts ([`Source`]), so that a change to
//! one object re-synthesises only the parts that object feeds — a pod's readiness flip costs one
//! service's records, not the whole cluster's. [`synthesize`](crate::synthesize) of the same state is
//! the reference: both build every part with the same functions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::frame::Change;
use crate::name::DomainName;
use crate::records::{RData, ZoneData};
use crate::synth::{Source, SynthConfig, pod_clients, synthesize_part};
use crate::views::{
    ClusterState, EndpointSliceView, NamespaceView, PodView, ServiceImportView, ServiceView, object_key,
};

/// A name of the merged zone: how many parts hold it (an empty non-terminal counts too) and how many
/// parts hold each of its records, since parts may share both (a hostNetwork pod's address, the
/// ancestors every part needs).
#[derive(Debug, Default)]
struct MergedName {
    parts: u32,
    records: BTreeMap<RData, u32>,
}

#[derive(Debug)]
pub struct IncrementalSynthesis {
    config: SynthConfig,
    state: ClusterState,
    /// `ns/service` → keys of the EndpointSlices that name it, so that a service's part finds its
    /// slices without scanning all of them.
    slices_by_service: BTreeMap<String, BTreeSet<String>>,
    /// `ns/import` → keys of the imported slices that name it.
    slices_by_import: BTreeMap<String, BTreeSet<String>>,
    parts: HashMap<Source, ZoneData>,
    merged: HashMap<DomainName, MergedName>,
    record_count: usize,
    /// Autopath claims of every pod: address → namespace → how many pods claim it.
    claims: HashMap<IpAddr, BTreeMap<String, u32>>,
    /// Names whose records may have changed since [`IncrementalSynthesis::take_changes`].
    touched: BTreeSet<DomainName>,
    /// Addresses whose client may have changed since then.
    touched_clients: BTreeSet<IpAddr>,
}

impl IncrementalSynthesis {
    /// The zone of an empty cluster; objects are then added one by one.
    pub fn new(config: SynthConfig) -> Self {
        let mut synthesis = Self {
            config,
            state: ClusterState::default(),
            slices_by_service: BTreeMap::new(),
            slices_by_import: BTreeMap::new(),
            parts: HashMap::new(),
            merged: HashMap::new(),
            record_count: 0,
            claims: HashMap::new(),
            touched: BTreeSet::new(),
            touched_clients: BTreeSet::new(),
        };
        synthesis.refresh(Source::Apex);
        synthesis
    }

    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// Adds or replaces a namespace; false when it was already there as it is.
    pub fn upsert_namespace(&mut self, view: NamespaceView) -> bool {
        let name = view.name.clone();
        if self.state.namespaces.get(&name) == Some(&view) {
            return false;
        }
        self.state.namespaces.insert(name.clone(), view);
        self.refresh(Source::Namespace(name));
        true
    }

    pub fn remove_namespace(&mut self, name: &str) -> bool {
        if self.state.namespaces.remove(name).is_none() {
            return false;
        }
        self.refresh(Source::Namespace(name.to_owned()));
        true
    }

    pub fn upsert_service(&mut self, view: ServiceView) -> bool {
        let key = object_key(&view.namespace, &view.name);
        if self.state.services.get(&key) == Some(&view) {
            return false;
        }
        let namespace = view.namespace.clone();
        self.state.services.insert(key.clone(), view);
        self.service_changed(key, namespace);
        true
    }

    /// Removes the service `ns/name`.
    pub fn remove_service(&mut self, key: &str) -> bool {
        let Some(view) = self.state.services.remove(key) else { return false };
        self.service_changed(key.to_owned(), view.namespace);
        true
    }

    pub fn upsert_endpoint_slice(&mut self, view: EndpointSliceView) -> bool {
        let key = object_key(&view.namespace, &view.name);
        if self.state.endpoint_slices.get(&key) == Some(&view) {
            return false;
        }
        let service = object_key(&view.namespace, &view.service);
        self.slices_by_service.entry(service.clone()).or_default().insert(key.clone());
        // A slice may move to another service (its label changed): both services change.
        if let Some(old) = self.state.endpoint_slices.insert(key.clone(), view) {
            let old_service = object_key(&old.namespace, &old.service);
            if old_service != service {
                unindex(&mut self.slices_by_service, &old_service, &key);
                self.refresh(Source::Service(old_service));
            }
        }
        self.refresh(Source::Service(service));
        true
    }

    /// Removes the EndpointSlice `ns/name`.
    pub fn remove_endpoint_slice(&mut self, key: &str) -> bool {
        let Some(old) = self.state.endpoint_slices.remove(key) else { return false };
        let service = object_key(&old.namespace, &old.service);
        unindex(&mut self.slices_by_service, &service, key);
        self.refresh(Source::Service(service));
        true
    }

    pub fn upsert_service_import(&mut self, view: ServiceImportView) -> bool {
        let key = object_key(&view.namespace, &view.name);
        if self.state.service_imports.get(&key) == Some(&view) {
            return false;
        }
        let namespace = view.namespace.clone();
        self.state.service_imports.insert(key.clone(), view);
        self.refresh(Source::Import(key));
        self.refresh(Source::Namespace(namespace));
        true
    }

    /// Removes the ServiceImport `ns/name`.
    pub fn remove_service_import(&mut self, key: &str) -> bool {
        let Some(view) = self.state.service_imports.remove(key) else { return false };
        self.refresh(Source::Import(key.to_owned()));
        self.refresh(Source::Namespace(view.namespace));
        true
    }

    /// Adds or replaces an EndpointSlice of a ServiceImport (`multicluster.kubernetes.io/service-name`).
    pub fn upsert_imported_slice(&mut self, view: EndpointSliceView) -> bool {
        let key = object_key(&view.namespace, &view.name);
        if self.state.imported_slices.get(&key) == Some(&view) {
            return false;
        }
        let import = object_key(&view.namespace, &view.service);
        self.slices_by_import.entry(import.clone()).or_default().insert(key.clone());
        if let Some(old) = self.state.imported_slices.insert(key.clone(), view) {
            let old_import = object_key(&old.namespace, &old.service);
            if old_import != import {
                unindex(&mut self.slices_by_import, &old_import, &key);
                self.refresh(Source::Import(old_import));
            }
        }
        self.refresh(Source::Import(import));
        true
    }

    /// Removes the imported EndpointSlice `ns/name`.
    pub fn remove_imported_slice(&mut self, key: &str) -> bool {
        let Some(old) = self.state.imported_slices.remove(key) else { return false };
        let import = object_key(&old.namespace, &old.service);
        unindex(&mut self.slices_by_import, &import, key);
        self.refresh(Source::Import(import));
        true
    }

    pub fn upsert_pod(&mut self, view: PodView) -> bool {
        let key = object_key(&view.namespace, &view.name);
        if self.state.pods.get(&key) == Some(&view) {
            return false;
        }
        let namespace = view.namespace.clone();
        self.claim(&view, 1);
        if let Some(old) = self.state.pods.insert(key.clone(), view) {
            self.claim(&old, -1);
        }
        self.refresh(Source::Pod(key));
        self.refresh(Source::Namespace(namespace));
        true
    }

    /// Removes the pod `ns/name`.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(old) = self.state.pods.remove(key) else { return false };
        self.claim(&old, -1);
        self.refresh(Source::Pod(key.to_owned()));
        self.refresh(Source::Namespace(old.namespace));
        true
    }

    /// The changes since the last call, one per name that may have changed (a `Set` may repeat the
    /// records a name already had; the publisher drops those).
    pub fn take_changes(&mut self) -> Vec<Change> {
        let names = std::mem::take(&mut self.touched).into_iter().map(|name| match self.merged.get(&name) {
            Some(merged) => Change::Set { name, records: merged.records.keys().cloned().collect() },
            None => Change::Remove { name },
        });
        let mut changes: Vec<Change> = names.collect();
        for ip in std::mem::take(&mut self.touched_clients) {
            changes.push(Change::Client { ip, namespace: self.client(ip) });
        }
        changes
    }

    /// The whole zone as it is now, equal to `synthesize(self.state(), config)`.
    pub fn zone(&self) -> ZoneData {
        let names =
            self.merged.iter().map(|(name, merged)| (name.clone(), merged.records.keys().cloned().collect())).collect();
        let clients = self.claims.keys().filter_map(|ip| Some((*ip, self.client(*ip)?))).collect();
        ZoneData { names, clients }
    }

    /// The namespace `ip` maps to: the only one claiming it (see `synth::unambiguous_clients`).
    fn client(&self, ip: IpAddr) -> Option<String> {
        let claims = self.claims.get(&ip)?;
        let mut namespaces = claims.keys();
        match (namespaces.next(), namespaces.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        }
    }

    fn service_changed(&mut self, key: String, namespace: String) {
        // `ns.dns.<zone>` follows the cluster DNS service.
        if key == object_key("kube-system", "kube-dns") {
            self.refresh(Source::Apex);
        }
        self.refresh(Source::Service(key));
        self.refresh(Source::Namespace(namespace));
    }

    /// Synthesises `source` again and folds the difference into the merged zone.
    fn refresh(&mut self, source: Source) {
        let slices: Vec<&EndpointSliceView> = match &source {
            Source::Service(key) => self
                .slices_by_service
                .get(key)
                .into_iter()
                .flatten()
                .filter_map(|slice| self.state.endpoint_slices.get(slice))
                .collect(),
            Source::Import(key) => self
                .slices_by_import
                .get(key)
                .into_iter()
                .flatten()
                .filter_map(|slice| self.state.imported_slices.get(slice))
                .collect(),
            _ => Vec::new(),
        };
        let next = synthesize_part(&source, &self.state, &slices, &self.config);
        let previous = self.parts.remove(&source);
        if previous.as_ref() != Some(&next) {
            if let Some(previous) = &previous {
                self.subtract(previous);
            }
            self.add(&next);
        }
        if !next.is_empty() {
            self.parts.insert(source, next);
        }
    }

    fn add(&mut self, part: &ZoneData) {
        for (name, records) in &part.names {
            let merged = self.merged.entry(name.clone()).or_default();
            merged.parts += 1;
            for rdata in records {
                let count = merged.records.entry(rdata.clone()).or_default();
                if *count == 0 {
                    self.record_count += 1;
                }
                *count += 1;
            }
            self.touched.insert(name.clone());
        }
    }

    fn subtract(&mut self, part: &ZoneData) {
        for (name, records) in &part.names {
            let Some(merged) = self.merged.get_mut(name) else { continue };
            for rdata in records {
                if let Some(count) = merged.records.get_mut(rdata) {
                    *count -= 1;
                    if *count == 0 {
                        merged.records.remove(rdata);
                        self.record_count -= 1;
                    }
                }
            }
            merged.parts -= 1;
            if merged.parts == 0 {
                self.merged.remove(name);
            }
            self.touched.insert(name.clone());
        }
    }

    /// Adds (`delta` 1) or withdraws (-1) a pod's autopath claims (`synth::pod_clients`). Kept beside
    /// the parts, not in them: most pods have no records of their own, and a part per pod would cost
    /// far more than a count per address.
    fn claim(&mut self, pod: &PodView, delta: i32) {
        for (ip, namespace) in pod_clients(pod) {
            let claims = self.claims.entry(ip).or_default();
            let count = claims.entry(namespace.to_owned()).or_default();
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                claims.remove(namespace);
            }
            if claims.is_empty() {
                self.claims.remove(&ip);
            }
            self.touched_clients.insert(ip);
        }
    }
}

/// Drops `slice` from the slices indexed under `owner` (and the entry when it empties).
fn unindex(index: &mut BTreeMap<String, BTreeSet<String>>, owner: &str, slice: &str) {
    if let Some(slices) = index.get_mut(owner) {
        slices.remove(slice);
        if slices.is_empty() {
            index.remove(owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::views::ServiceKind;

    fn config() -> SynthConfig {
        SynthConfig::new(DomainName::parse("cluster.local").unwrap())
    }

    fn cluster_ip_service(namespace: &str, name: &str, ip: &str) -> ServiceView {
        ServiceView {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind: ServiceKind::ClusterIp(vec![ip.parse::<IpAddr>().unwrap()]),
            ports: Vec::new(),
            publish_not_ready: false,
        }
    }

    #[test]
    fn the_cluster_dns_service_names_the_nameserver() {
        let mut synthesis = IncrementalSynthesis::new(config());
        let ns_dns = DomainName::parse("ns.dns.cluster.local").unwrap();
        assert!(synthesis.upsert_service(cluster_ip_service("kube-system", "kube-dns", "10.96.0.10")));
        assert_eq!(synthesis.zone().names[&ns_dns], vec![RData::A { ip: "10.96.0.10".parse().unwrap() }]);
        assert!(!synthesis.upsert_service(cluster_ip_service("kube-system", "kube-dns", "10.96.0.10")));
        synthesis.take_changes();
        assert!(synthesis.remove_service("kube-system/kube-dns"));
        let changes = synthesis.take_changes();
        assert!(changes.contains(&Change::Remove { name: ns_dns }), "{changes:?}");
        assert_eq!(synthesis.zone(), crate::synthesize(synthesis.state(), &config()));
    }

    fn client_pod(namespace: &str, name: &str, ip: &str, autopath: bool) -> PodView {
        PodView { namespace: namespace.to_owned(), name: name.to_owned(), ips: vec![ip.parse().unwrap()], autopath }
    }

    fn clients(changes: &[Change]) -> Vec<(IpAddr, Option<String>)> {
        changes
            .iter()
            .filter_map(|change| match change {
                Change::Client { ip, namespace } => Some((*ip, namespace.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_reused_address_maps_to_its_new_pod_in_the_batch_that_brings_it() {
        let mut synthesis = IncrementalSynthesis::new(config());
        let ip: IpAddr = "10.244.0.7".parse().unwrap();
        synthesis.upsert_pod(client_pod("demo", "a", "10.244.0.7", true));
        assert_eq!(clients(&synthesis.take_changes()), [(ip, Some("demo".to_owned()))]);
        // The old pod goes and a pod of another namespace gets its address: one change, to the new one.
        synthesis.remove_pod("demo/a");
        synthesis.upsert_pod(client_pod("other", "b", "10.244.0.7", true));
        assert_eq!(clients(&synthesis.take_changes()), [(ip, Some("other".to_owned()))]);
        // Claimed from two namespaces at once: nobody's.
        synthesis.upsert_pod(client_pod("demo", "c", "10.244.0.7", true));
        assert_eq!(clients(&synthesis.take_changes()), [(ip, None)]);
        synthesis.remove_pod("demo/c");
        assert_eq!(clients(&synthesis.take_changes()), [(ip, Some("other".to_owned()))]);
        // Failed: no longer a client.
        synthesis.upsert_pod(client_pod("other", "b", "10.244.0.7", false));
        assert_eq!(clients(&synthesis.take_changes()), [(ip, None)]);
        assert_eq!(synthesis.zone(), crate::synthesize(synthesis.state(), &config()));
    }

    #[test]
    fn an_unchanged_object_reports_nothing() {
        let mut synthesis = IncrementalSynthesis::new(config());
        synthesis.upsert_service(cluster_ip_service("default", "web", "10.96.0.20"));
        assert!(!synthesis.take_changes().is_empty());
        assert!(!synthesis.upsert_service(cluster_ip_service("default", "web", "10.96.0.20")));
        assert!(synthesis.take_changes().is_empty());
        assert!(!synthesis.remove_pod("default/nothing"));
        assert!(synthesis.take_changes().is_empty());
    }
}
