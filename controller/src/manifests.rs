//! The manifest source: Kubernetes objects read from YAML or JSON files instead of an API server.
//!
//! A path is a file or a directory (searched recursively for `.yaml`, `.yml` and `.json`). Files hold
//! one or more documents; a `v1 List` contributes its items. Namespaces, Services, EndpointSlices and
//! Pods are kept; other kinds are skipped with a debug log.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use roster_shared::ClusterState;
use serde_json::Value;
use tracing::debug;

use crate::slim;

/// One problem with one document of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    /// 1-based document number within the file; 0 when the file itself could not be read.
    pub document: usize,
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document == 0 {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: document {}: {}", self.file.display(), self.document, self.reason)
        }
    }
}

/// Every problem found in one load; the load as a whole is rejected when there is any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for LoadErrors {}

/// Reads every manifest under `path` into a cluster state. All-or-nothing: one bad document fails
/// the load, so that a half-edited file never removes records.
pub fn load_path(path: &Path) -> Result<ClusterState, LoadErrors> {
    let files = manifest_files(path)
        .map_err(|reason| LoadErrors(vec![LoadError { file: path.to_owned(), document: 0, reason }]))?;
    let mut state = ClusterState::default();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => load_text(&file, &text, &mut state, &mut errors),
            Err(e) => errors.push(LoadError { file: file.clone(), document: 0, reason: e.to_string() }),
        }
    }
    if errors.is_empty() { Ok(state) } else { Err(LoadErrors(errors)) }
}

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// The manifest files under `path`, sorted so that loads are deterministic.
fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let entry_path = entry.path();
            // Editors and kubectl leave dotfiles (swap files, `..data` links); skip them.
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if entry_path.is_dir() {
                pending.push(entry_path);
            } else if is_manifest(&entry_path) {
                files.push(entry_path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Splits YAML text into documents at `---` lines; each comes with the file line it starts on.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = vec![(1, String::new())];
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            documents.push((index + 2, String::new()));
            continue;
        }
        if trimmed == "..." {
            continue;
        }
        if let Some((_, current)) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
}

fn is_blank(document: &str) -> bool {
    document.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

fn load_text(file: &Path, text: &str, state: &mut ClusterState, errors: &mut Vec<LoadError>) {
    let is_json = file.extension().and_then(|e| e.to_str()) == Some("json");
    let documents = if is_json { vec![(1, text.to_owned())] } else { split_documents(text) };
    // Blank documents (a leading `---`, comments) are skipped but still counted, as kubectl numbers them.
    for (index, (first_line, document)) in documents.iter().enumerate().filter(|(_, (_, d))| !is_blank(d)) {
        let number = index + 1;
        let parsed: Result<Value, String> = if is_json {
            serde_json::from_str(document).map_err(|e| format!("invalid JSON: {e}"))
        } else {
            serde_saphyr::from_str(document).map_err(|e| {
                format!("invalid YAML (document starts at line {first_line}; lines below count from there): {e}")
            })
        };
        let result = parsed.and_then(|value| load_object(value, state));
        if let Err(reason) = result {
            errors.push(LoadError { file: file.to_owned(), document: number, reason });
        }
    }
}

fn load_object(value: Value, state: &mut ClusterState) -> Result<(), String> {
    let Value::Object(map) = &value else {
        return Err("a Kubernetes object must be a mapping".to_owned());
    };
    let kind = map.get("kind").and_then(Value::as_str).ok_or("`kind` is missing")?.to_owned();
    let api_version = map.get("apiVersion").and_then(Value::as_str).ok_or("`apiVersion` is missing")?.to_owned();
    let label = |name: &Value| name.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?").to_owned();
    match (api_version.as_str(), kind.as_str()) {
        (_, "List") | (_, "ServiceList" | "PodList" | "NamespaceList" | "EndpointSliceList") => {
            let items = map.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            for (i, item) in items.into_iter().enumerate() {
                load_object(item, state).map_err(|e| format!("items[{i}]: {e}"))?;
            }
            Ok(())
        }
        ("v1", "Namespace") => {
            let object: Namespace = typed(&value, &kind)?;
            state.insert_namespace(slim::namespace_view(&object).map_err(|e| at(&kind, &label(&value), e))?);
            Ok(())
        }
        ("v1", "Service") => {
            let object: Service = typed(&value, &kind)?;
            state.insert_service(slim::service_view(&object).map_err(|e| at(&kind, &label(&value), e))?);
            Ok(())
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            let object: EndpointSlice = typed(&value, &kind)?;
            if let Some(view) = slim::endpoint_slice_view(&object).map_err(|e| at(&kind, &label(&value), e))? {
                state.insert_endpoint_slice(view);
            }
            Ok(())
        }
        ("v1", "Pod") => {
            let object: Pod = typed(&value, &kind)?;
            state.insert_pod(slim::pod_view(&object).map_err(|e| at(&kind, &label(&value), e))?);
            Ok(())
        }
        _ => {
            debug!(%api_version, %kind, "ignoring a kind DNS does not need");
            Ok(())
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(value: &Value, kind: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(value.clone())
        .map_err(|e| format!("{kind} does not match the Kubernetes schema at `{}`: {}", e.path(), e.inner()))
}

fn at(kind: &str, name: &str, error: slim::ConvertError) -> String {
    format!("{kind} {name}: {error}")
}

/// Notices changes under a manifest path by polling modification times and sizes: robust across
/// editors' rename-on-save and ConfigMap symlink swaps, where change notifications often miss.
pub struct ManifestWatcher {
    path: PathBuf,
    fingerprint: Option<Vec<(PathBuf, Option<SystemTime>, u64)>>,
    pub interval: Duration,
}

impl ManifestWatcher {
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        Self { path, fingerprint: None, interval }
    }

    fn current_fingerprint(&self) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
        manifest_files(&self.path)
            .unwrap_or_default()
            .into_iter()
            .map(|file| {
                let meta = std::fs::metadata(&file).ok();
                let modified = meta.as_ref().and_then(|m| m.modified().ok());
                let len = meta.map(|m| m.len()).unwrap_or(0);
                (file, modified, len)
            })
            .collect()
    }

    /// True the first time and whenever the files changed since the previous call.
    pub fn changed(&mut self) -> bool {
        let now = self.current_fingerprint();
        let changed = self.fingerprint.as_ref() != Some(&now);
        self.fingerprint = Some(now);
        changed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn loads_yaml_documents_json_lists_and_skips_other_kinds() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "---\n# leading separator and a comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec: {clusterIP: None}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n...\n",
        );
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "demo"},
                 "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "pg", "port": 5432}]}},
                {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": "db-1", "namespace": "demo", "labels": {"kubernetes.io/service-name": "db"}},
                 "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.9"]}]}
            ]
        });
        write(dir.path(), "b.json", &list.to_string());
        std::fs::create_dir(dir.path().join("nested")).unwrap();
        write(&dir.path().join("nested"), "c.yml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n");
        write(dir.path(), "notes.txt", "not a manifest");
        let state = load_path(dir.path()).unwrap();
        assert_eq!(state.services.len(), 2);
        assert_eq!(state.endpoint_slices.len(), 1);
        assert!(state.endpoint_slices["demo/db-1"].endpoints[0].ready, "absent ready means ready");
        assert!(state.namespaces.contains_key("other"));
    }

    #[test]
    fn errors_name_the_file_the_document_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "bad.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: fine}\n---\nkind: Service\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: why}\nspec: {clusterIP: 10.96.0.300}\n---\n: : :\n",
        );
        write(dir.path(), "bad.json", "{\"apiVersion\": \"v1\",");
        let errors = load_path(dir.path()).unwrap_err().0;
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 4, "{text:#?}");
        assert!(text[0].contains("bad.json") && text[0].contains("invalid JSON"), "{}", text[0]);
        assert!(text[1].contains("bad.yaml: document 2: `apiVersion` is missing"), "{}", text[1]);
        assert!(text[2].contains("document 3") && text[2].contains("10.96.0.300"), "{}", text[2]);
        assert!(text[3].contains("document 4") && text[3].contains("line 13"), "{}", text[3]);
    }

    #[test]
    fn schema_violations_and_bad_names_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: many}]}\n",
        );
        write(dir.path(), "b.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: UPPER}\n");
        write(
            dir.path(),
            "c.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec: {type: ExternalName, externalName: 'bad name!'}\n",
        );
        let errors = load_path(dir.path()).unwrap_err().0;
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(text[0].contains("does not match the Kubernetes schema at `spec.ports[0].port`"), "{}", text[0]);
        assert!(text[1].contains("UPPER") && text[1].contains("DNS-1123"), "{}", text[1]);
        assert!(text[2].contains("spec.externalName"), "{}", text[2]);
    }

    #[test]
    fn a_missing_path_is_an_error() {
        let errors = load_path(Path::new("/no/such/manifests")).unwrap_err();
        assert!(errors.to_string().contains("/no/such/manifests"));
    }
}
