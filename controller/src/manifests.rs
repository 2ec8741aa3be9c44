//! The manifest source: Kubernetes objects read from YAML or JSON files instead of an API server.
//!
//! A path is a file or a directory (searched recursively for `.yaml`, `.yml` and `.json`). Files hold
//! one or more documents; a `v1 List` contributes its items. Namespaces, Services, EndpointSlices,
//! Pods and ServiceImports (multicluster.x-k8s.io/v1alpha1) are kept; other kinds are skipped with a
//! debug log.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use roster_shared::ClusterState;
use serde::Deserialize as _;
use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tracing::{debug, warn};

use crate::manifest_objects::{Object as Fields, Text, Typed};
use crate::service_import::ServiceImport;
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
            Ok(text) => {
                let mut loaded = ClusterState::default();
                load_text(&file, &text, &mut loaded, &mut errors);
                merge(&mut state, loaded);
            }
            Err(e) => errors.push(LoadError { file: file.clone(), document: 0, reason: e.to_string() }),
        }
    }
    if errors.is_empty() { Ok(state) } else { Err(LoadErrors(errors)) }
}

/// Adds the objects of a later file to `into`; a later file's object replaces an earlier one's of the
/// same key, as one file's later document does.
fn merge(into: &mut ClusterState, from: ClusterState) {
    if *into == ClusterState::default() {
        *into = from;
        return;
    }
    let ClusterState { namespaces, services, endpoint_slices, pods, service_imports, imported_slices } = from;
    into.namespaces.extend(namespaces);
    into.services.extend(services);
    into.endpoint_slices.extend(endpoint_slices);
    into.pods.extend(pods);
    into.service_imports.extend(service_imports);
    into.imported_slices.extend(imported_slices);
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

pub(crate) fn load_text(file: &Path, text: &str, state: &mut ClusterState, errors: &mut Vec<LoadError>) {
    let is_json = file.extension().and_then(|e| e.to_str()) == Some("json");
    if is_json {
        // The whole file is one document, read in one pass (`read_json`). Anything unusual — above all
        // an error — and it is read again the careful way, which says what is wrong and where. Each
        // way starts from an empty state, so the first pass leaves nothing behind.
        if !is_blank(text) {
            let mut loaded = ClusterState::default();
            if read_json(text, &mut loaded).is_err() {
                loaded = ClusterState::default();
                let result = json_document(text).and_then(|object| load_object(object, &mut loaded));
                if let Err(reason) = result {
                    errors.push(LoadError { file: file.to_owned(), document: 1, reason });
                    return;
                }
            }
            merge(state, loaded);
        }
        return;
    }
    // Blank documents (a leading `---`, comments) are skipped but still counted, as kubectl numbers them.
    for (index, (first_line, document)) in
        split_documents(text).into_iter().enumerate().filter(|(_, (_, d))| !is_blank(d))
    {
        let number = index + 1;
        let result = serde_saphyr::from_str(&document)
            .map_err(|e| {
                format!("invalid YAML (document starts at line {first_line}; lines below count from there): {e}")
            })
            .and_then(yaml_object)
            .and_then(|object| load_object(object, state));
        if let Err(reason) = result {
            errors.push(LoadError { file: file.to_owned(), document: number, reason });
        }
    }
}

/// One object (a document or a list item) whose `kind` and `apiVersion` are known and whose body is
/// not yet typed.
struct Object<'a> {
    api_version: String,
    kind: String,
    body: Body<'a>,
}

enum Body<'a> {
    /// `text` is the object's JSON, a slice of `file` (for error positions); `items` its `items` field.
    Json { file: &'a str, text: &'a str, items: Option<&'a RawValue> },
    /// YAML documents are small: one `Value` per document, consumed (never cloned) when typed.
    Yaml(Map<String, Value>),
}

const NOT_A_MAPPING: &str = "a Kubernetes object must be a mapping";

fn header(kind: Option<String>, api_version: Option<String>) -> Result<(String, String), String> {
    let kind = kind.ok_or("`kind` is missing")?;
    let api_version = api_version.ok_or("`apiVersion` is missing")?;
    Ok((kind, api_version))
}

/// Reads the top-level fields of a whole JSON document. A broken file is "invalid JSON" whatever its
/// shape: reading a mapping's fields checks the whole text's syntax on the way (one pass over the
/// file, not a check and then a read), and anything else is checked before it is called no mapping.
fn json_document(file: &str) -> Result<Object<'_>, String> {
    let text = file.trim_start_matches([' ', '\n', '\t', '\r']);
    if !text.starts_with('{') {
        serde_json::from_str::<&RawValue>(file).map_err(|e| format!("invalid JSON: {e}"))?;
        return Err(NOT_A_MAPPING.to_owned());
    }
    json_object(file, text)
}

/// Reads only the top-level fields of `text`, valid JSON and a slice of `file`; their values stay text.
fn json_object<'a>(file: &'a str, text: &'a str) -> Result<Object<'a>, String> {
    if !text.starts_with('{') {
        return Err(NOT_A_MAPPING.to_owned());
    }
    let fields: TopFields<'a> =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {}", in_file(file, text, &e)))?;
    let string = |raw: Option<&RawValue>| raw.and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    let (kind, api_version) = header(string(fields.kind), string(fields.api_version))?;
    Ok(Object { api_version, kind, body: Body::Json { file, text, items: fields.items } })
}

/// The top-level fields of a JSON object that say what it is, as text; the rest is skipped without
/// being kept (no map of every field, with a string per key, for each of 100k objects). A duplicated key
/// keeps its last value, as `serde_json::Value` does.
#[derive(Default)]
struct TopFields<'a> {
    kind: Option<&'a RawValue>,
    api_version: Option<&'a RawValue>,
    items: Option<&'a RawValue>,
}

impl<'de> serde::Deserialize<'de> for TopFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TopFieldsVisitor)
    }
}

struct TopFieldsVisitor;

impl<'de> serde::de::Visitor<'de> for TopFieldsVisitor {
    type Value = TopFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = TopFields::default();
        while let Some(key) = map.next_key::<TopKey>()? {
            match key {
                TopKey::Kind => fields.kind = Some(map.next_value()?),
                TopKey::ApiVersion => fields.api_version = Some(map.next_value()?),
                TopKey::Items => fields.items = Some(map.next_value()?),
                TopKey::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// A top-level key, read without allocating.
enum TopKey {
    Kind,
    ApiVersion,
    Items,
    Other,
}

impl<'de> serde::Deserialize<'de> for TopKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = TopKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<TopKey, E> {
                Ok(match key {
                    "kind" => TopKey::Kind,
                    "apiVersion" => TopKey::ApiVersion,
                    "items" => TopKey::Items,
                    _ => TopKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

fn yaml_object<'a>(value: Value) -> Result<Object<'a>, String> {
    let Value::Object(map) = value else {
        return Err(NOT_A_MAPPING.to_owned());
    };
    let string = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
    let (kind, api_version) = header(string("kind"), string("apiVersion"))?;
    Ok(Object { api_version, kind, body: Body::Yaml(map) })
}

impl<'a> Body<'a> {
    /// The list's items one by one; a missing or non-array `items` is an empty list.
    fn items(self) -> Box<dyn Iterator<Item = Result<Object<'a>, String>> + 'a> {
        match self {
            Body::Json { file, items, .. } => {
                let items: Vec<&'a RawValue> =
                    items.and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or_default();
                Box::new(items.into_iter().map(move |item| json_object(file, item.get())))
            }
            Body::Yaml(mut map) => {
                let items = match map.remove("items") {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                Box::new(items.into_iter().map(yaml_object))
            }
        }
    }

    /// The object's fields DNS reads, with the path of any that does not match the schema.
    fn typed(self, api_version: &str, kind: &str) -> Result<Typed<'a>, String> {
        let mismatch = |path: &serde_path_to_error::Path, inner: String| {
            format!("{kind} does not match the Kubernetes schema at `{path}`: {inner}")
        };
        let typed = Typed::new(api_version, kind);
        if matches!(typed.object, Fields::Ignored) {
            return Ok(typed);
        }
        let mut track = serde_path_to_error::Track::new();
        match self {
            Body::Json { file, text, .. } => {
                let mut json = serde_json::Deserializer::from_str(text);
                FieldsSeed(typed)
                    .deserialize(serde_path_to_error::Deserializer::new(&mut json, &mut track))
                    .map_err(|e| mismatch(&track.path(), in_file(file, text, &e)))
            }
            Body::Yaml(map) => FieldsSeed(typed)
                .deserialize(serde_path_to_error::Deserializer::new(Value::Object(map), &mut track))
                .map_err(|e| mismatch(&track.path(), e.to_string())),
        }
    }
}

/// Decodes an object whose kind is known into `Typed`: `kind` and `apiVersion` skipped, every other
/// field handed to [`Typed::field`].
struct FieldsSeed<'a>(Typed<'a>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for FieldsSeed<'a> {
    type Value = Typed<'a>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Typed<'a>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for FieldsSeed<'a> {
    type Value = Typed<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Typed<'a>, A::Error> {
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if matches!(&*key.0, "kind" | "apiVersion") {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(FieldSeed { typed: &mut self.0, key: &key.0 })?;
            }
        }
        Ok(self.0)
    }
}

/// The value of one top-level field of `typed`.
struct FieldSeed<'t, 'a> {
    typed: &'t mut Typed<'a>,
    key: &'t str,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for FieldSeed<'_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.typed.field(self.key, deserializer)
    }
}

/// Reads a whole JSON file into `state` in one pass over its text: each object's fields are decoded
/// as they come once its `kind` and `apiVersion` are known (kubectl writes them first); a field that
/// comes before them is kept as text and decoded when they are. A list's items are read the same way,
/// in place. `Err` says only "read it the careful way" (`json_document`, `load_object`): an error,
/// a header that is not a string, a repeated header — that way names the problem, or reads what this
/// one does not (a repeated `kind` whose last value counts).
fn read_json(text: &str, state: &mut ClusterState) -> Result<(), serde_json::Error> {
    let mut json = serde_json::Deserializer::from_str(text);
    ObjectSeed { state }.deserialize(&mut json)?;
    json.end()
}

/// One object (the document or a list item) read into `state`.
struct ObjectSeed<'s> {
    state: &'s mut ClusterState,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// What an object read in one pass turned out to be, once its header is known.
// One lives on the stack per object being read, never in a collection: boxing would only add an
// allocation per object.
#[allow(clippy::large_enum_variant)]
enum Reading<'a> {
    /// A list, and whether its `items` were read.
    List {
        items_read: bool,
    },
    Object(Typed<'a>),
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut api_version: Option<Text<'de>> = None;
        let mut kind: Option<Text<'de>> = None;
        let mut reading: Option<Reading> = None;
        // Fields before the header, as text; decoded once the header is read (rare).
        let mut early: Vec<(Text<'de>, &'de RawValue)> = Vec::new();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let header = match &*key.0 {
                "apiVersion" => Some(&mut api_version),
                "kind" => Some(&mut kind),
                _ => None,
            };
            if let Some(slot) = header {
                if slot.is_some() || reading.is_some() {
                    return Err(A::Error::custom("a repeated or late header: read carefully"));
                }
                *slot = Some(map.next_value()?);
                continue;
            }
            if reading.is_none()
                && let (Some(api_version), Some(kind)) = (&api_version, &kind)
            {
                reading = Some(Reading::new(&api_version.0, &kind.0));
            }
            match &mut reading {
                Some(reading) => map.next_value_seed(ReadingSeed { reading, state: self.state, key: &key.0 })?,
                None => early.push((key, map.next_value()?)),
            }
        }
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            return Err(A::Error::custom("no header: read carefully"));
        };
        let mut reading = reading.unwrap_or_else(|| Reading::new(&api_version.0, &kind.0));
        for (key, raw) in early {
            let mut json = serde_json::Deserializer::from_str(raw.get());
            ReadingSeed { reading: &mut reading, state: self.state, key: &key.0 }
                .deserialize(&mut json)
                .map_err(A::Error::custom)?;
        }
        match reading {
            Reading::List { .. } => Ok(()),
            Reading::Object(typed) => insert(&api_version.0, &kind.0, typed, self.state).map_err(A::Error::custom),
        }
    }
}

impl Reading<'_> {
    fn new(api_version: &str, kind: &str) -> Self {
        if is_list(kind) { Reading::List { items_read: false } } else { Reading::Object(Typed::new(api_version, kind)) }
    }
}

/// One field of an object read in one pass: a list's `items` go into `state` item by item.
struct ReadingSeed<'r, 's, 'a> {
    reading: &'r mut Reading<'a>,
    state: &'s mut ClusterState,
    key: &'r str,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for ReadingSeed<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.reading {
            Reading::List { items_read } if self.key == "items" => {
                if std::mem::replace(items_read, true) {
                    return Err(D::Error::custom("repeated items: read carefully"));
                }
                deserializer.deserialize_seq(ItemsVisitor { state: self.state })
            }
            Reading::List { .. } => IgnoredAny::deserialize(deserializer).map(drop),
            Reading::Object(typed) => typed.field(self.key, deserializer),
        }
    }
}

/// A list's items, each read into `state` as it comes.
struct ItemsVisitor<'s> {
    state: &'s mut ClusterState,
}

impl<'de> Visitor<'de> for ItemsVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        while items.next_element_seed(ObjectSeed { state: &mut *self.state })?.is_some() {}
        Ok(())
    }
}

/// A JSON error from parsing `text`, a slice of `file`, with its position counted in `file` (the
/// error's own position counts from the start of the object).
fn in_file(file: &str, text: &str, error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let Some(message) = message.strip_suffix(&suffix) else { return message };
    let offset = (text.as_ptr() as usize).saturating_sub(file.as_ptr() as usize).min(file.len());
    let before = &file.as_bytes()[..offset];
    // Only an error on the object's first line shares that line with text before the object.
    let column = if error.line() == 1 {
        let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        offset - line_start + error.column()
    } else {
        error.column()
    };
    let line = before.iter().filter(|b| **b == b'\n').count() + error.line();
    format!("{message} at line {line} column {column}")
}

/// The kinds whose `items` are read, whatever their `apiVersion`.
fn is_list(kind: &str) -> bool {
    matches!(kind, "List" | "ServiceList" | "PodList" | "NamespaceList" | "EndpointSliceList" | "ServiceImportList")
}

fn load_object(object: Object<'_>, state: &mut ClusterState) -> Result<(), String> {
    let Object { api_version, kind, body } = object;
    if is_list(&kind) {
        for (i, item) in body.items().enumerate() {
            item.and_then(|item| load_object(item, state)).map_err(|e| format!("items[{i}]: {e}"))?;
        }
        return Ok(());
    }
    let typed = body.typed(&api_version, &kind)?;
    insert(&api_version, &kind, typed, state)
}

/// Converts a decoded object to its slim view at once (so only one is alive at a time) and keeps it.
fn insert(api_version: &str, kind: &str, typed: Typed<'_>, state: &mut ClusterState) -> Result<(), String> {
    match typed.object {
        Fields::Namespace(object) => {
            let name = object.metadata.as_ref().and_then(|m| m.name());
            state.insert_namespace(slim::namespace_fields_view(&object).map_err(|e| at(kind, name, e))?);
        }
        Fields::Service(object) => {
            let name = object.metadata.as_ref().and_then(|m| m.name());
            let view = slim::service_fields_view(&object).map_err(|e| at(kind, name, e))?;
            warn_notes(kind, name, slim::service_notes(&view));
            state.insert_service(view);
        }
        Fields::EndpointSlice(object) => {
            let name = object.metadata.as_ref().and_then(|m| m.name());
            let (own, imported) = slim::slice_fields_views(&object).map_err(|e| at(kind, name, e))?;
            if let Some(view) = own {
                warn_notes(kind, name, slim::endpoint_slice_notes(&view));
                state.insert_endpoint_slice(view);
            }
            // A slice of a ServiceImport (read only with a multicluster zone).
            if let Some(view) = imported {
                warn_notes(kind, name, slim::imported_slice_notes(&view));
                state.insert_imported_slice(view);
            }
        }
        Fields::ServiceImport(object) => {
            let object: ServiceImport = object.into();
            let name = object.metadata.name.as_deref();
            state.insert_service_import(slim::service_import_view(&object).map_err(|e| at(kind, name, e))?);
        }
        Fields::Pod(object) => {
            let name = object.metadata.as_ref().and_then(|m| m.name());
            state.insert_pod(slim::pod_fields_view(&object).map_err(|e| at(kind, name, e))?);
        }
        Fields::Ignored => debug!(%api_version, %kind, "ignoring a kind DNS does not need"),
    }
    Ok(())
}

/// A valid object whose names cannot all be DNS labels is loaded; what it loses is reported (once per
/// load: loads happen only when the files change).
fn warn_notes(kind: &str, name: Option<&str>, notes: Vec<String>) {
    for note in notes {
        warn!(%kind, object = name.unwrap_or("?"), %note, "published with fewer names");
    }
}

fn at(kind: &str, name: Option<&str>, error: slim::ConvertError) -> String {
    format!("{kind} {}: {error}", name.unwrap_or("?"))
}

/// Notices changes under a manifest path by polling modification times and sizes: robust across
/// editors' rename-on-save and ConfigMap symlink swaps, where change notifications often miss.
pub struct ManifestWatcher {
    path: PathBuf,
    /// What was last reported as changed (and so loaded).
    loaded: Option<Fingerprint>,
    /// What the previous poll saw.
    seen: Option<Fingerprint>,
    pub interval: Duration,
}

type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

impl ManifestWatcher {
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        Self { path, loaded: None, seen: None, interval }
    }

    fn current_fingerprint(&self) -> Fingerprint {
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

    /// True the first time, and when the files changed since they were last reported and have held
    /// still since the previous call: a file rewritten in place is truncated before it is written,
    /// and loading it in between would publish its objects' removal.
    pub fn changed(&mut self) -> bool {
        let now = self.current_fingerprint();
        let settled = self.loaded.is_none() || self.seen.as_ref() == Some(&now);
        self.seen = Some(now.clone());
        if settled && self.loaded.as_ref() != Some(&now) {
            self.loaded = Some(now);
            return true;
        }
        false
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
    fn a_change_is_reported_once_it_holds_still_for_one_poll() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n");
        let mut watcher = ManifestWatcher::new(dir.path().to_owned(), Duration::from_millis(10));
        assert!(watcher.changed(), "the first poll loads at once");
        assert!(!watcher.changed());
        // Truncated on its way to new content: seen, not yet reported.
        write(dir.path(), "a.yaml", "");
        assert!(!watcher.changed());
        write(dir.path(), "a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: bb}\n");
        assert!(!watcher.changed(), "changed since the previous poll");
        assert!(watcher.changed(), "held still for one poll");
        assert!(!watcher.changed());
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
    fn json_lists_nest_keep_the_last_duplicate_key_and_read_escapes() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.json",
            r#"
            {"kind": "Deployment", "apiVersion": "v1", "kind": "List", "metadata": {}, "items": [
              {"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "inner"}}
              ]},
              {"apiVersion": "v1", "kind": "Serv\u0069ce", "metadata": {"name": "web", "namespace": "inner"}},
              {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "not checked"}},
              {"apiVersion": "v1", "kind": "List", "items": {"not": "an array"}}
            ]}
            "#,
        );
        write(
            dir.path(),
            "b.yaml",
            "apiVersion: v1\nkind: PodList\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p, namespace: inner}\n  status: {podIP: 10.244.0.1}\n",
        );
        let state = load_path(dir.path()).unwrap();
        assert!(state.namespaces.contains_key("inner"));
        assert_eq!(state.services.len(), 1);
        assert_eq!(state.pods.len(), 1);
    }

    #[test]
    fn json_item_errors_name_the_item_and_the_position_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n  {\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}},\n  {\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"web\"},\n   \"spec\": {\"ports\": [{\"port\": \"many\"}]}}\n]}\n";
        write(dir.path(), "schema.json", text);
        write(dir.path(), "item.json", r#"{"apiVersion": "v1", "kind": "List", "items": [{"kind": "Pod"}, 5]}"#);
        write(
            dir.path(),
            "kind.json",
            r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": 3}]}"#,
        );
        write(dir.path(), "mapping.json", "[]");
        write(
            dir.path(),
            "name.json",
            r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "UPPER"}}]}"#,
        );
        let errors = load_path(dir.path()).unwrap_err().0;
        let text_of = |file: &str| {
            let error = errors.iter().find(|e| e.file.ends_with(file)).unwrap();
            assert_eq!(error.document, 1);
            error.reason.clone()
        };
        assert_eq!(text_of("item.json"), "items[0]: `apiVersion` is missing", "the first bad item stops the list");
        assert_eq!(text_of("kind.json"), "items[0]: `kind` is missing");
        assert_eq!(text_of("mapping.json"), "a Kubernetes object must be a mapping");
        assert!(text_of("name.json").starts_with("items[0]: Pod UPPER: metadata.name"), "{}", text_of("name.json"));
        // Line 4 of the file, just past `"many"`: the position counts in the file, not in the item.
        let column = text.lines().nth(3).unwrap().find("\"many\"").unwrap() + "\"many\"".len();
        assert_eq!(
            text_of("schema.json"),
            format!(
                "items[1]: Service does not match the Kubernetes schema at `spec.ports[0].port`: \
                 invalid type: string \"many\", expected i32 at line 4 column {column}"
            )
        );
    }

    #[test]
    fn an_error_on_a_line_shared_with_the_list_counts_columns_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"port": "many"}]}}]}"#;
        write(dir.path(), "one-line.json", text);
        let errors = load_path(dir.path()).unwrap_err().0;
        let column = text.find("\"many\"").unwrap() + "\"many\"".len();
        assert!(errors[0].reason.ends_with(&format!("at line 1 column {column}")), "{}", errors[0].reason);
    }

    /// Only the fields DNS reads are decoded: others may hold anything, `null` reads as absent, and a
    /// read field of the wrong type still names its path.
    #[test]
    fn only_the_fields_dns_reads_are_decoded() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.json",
            r#"{"apiVersion": "v1", "kind": "List", "items": [
              {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo",
                "labels": {"app": "web"}, "annotations": {"x": "y"}, "uid": 5},
               "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80,
                "targetPort": "http", "nodePort": null}], "publishNotReadyAddresses": null}},
              {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "web-1", "namespace": "demo", "labels": {"kubernetes.io/service-name": "web",
                "other": "label"}, "ownerReferences": [{"not": "checked"}]},
               "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "appProtocol": 3}],
               "endpoints": [{"addresses": ["10.244.0.9"], "hostname": "web-0", "conditions": null,
                 "targetRef": {"kind": "Pod", "name": "web-0", "uid": ["not", "checked"]}, "zone": {}}]},
              {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "demo"},
               "spec": {"containers": "not checked", "dnsPolicy": "Default"},
               "status": {"podIPs": [{"ip": "10.244.0.9"}], "conditions": 7}}
            ]}"#,
        );
        let state = load_path(dir.path()).unwrap();
        let slice = &state.endpoint_slices["demo/web-1"];
        assert_eq!((slice.service.as_str(), slice.endpoints[0].ready), ("web", true), "null conditions: ready");
        assert_eq!(slice.endpoints[0].pod_name.as_deref(), Some("web-0"));
        assert_eq!(state.services["demo/web"].ports[0].port, 80);
        let pod = &state.pods["demo/web-0"];
        assert_eq!(pod.ips, vec!["10.244.0.9".parse::<std::net::IpAddr>().unwrap()]);
        assert!(!pod.autopath, "dnsPolicy Default is no autopath client");

        write(
            dir.path(),
            "a.json",
            r#"{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "s"},
                "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": "yes"}}]}"#,
        );
        let errors = load_path(dir.path()).unwrap_err().0;
        assert!(
            errors[0].reason.starts_with(
                "EndpointSlice does not match the Kubernetes schema at `endpoints[0].conditions.ready`: invalid type"
            ),
            "{}",
            errors[0].reason
        );
    }

    /// Every name the API server accepts loads: a 72-character pod name and EndpointSlice name (DNS-1123
    /// subdomains, up to 253), an endpoint hostname with dots, an ExternalName with a 64-character
    /// label. Their neighbours and services load with them.
    #[test]
    fn every_name_the_api_accepts_loads() {
        let dir = tempfile::tempdir().unwrap();
        let long = "p".repeat(72);
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {long}, namespace: demo}}\nstatus: {{podIP: 10.244.0.7}}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {{name: {max}, namespace: demo}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: demo}}\nspec: {{clusterIP: None}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {long}.x, namespace: demo, labels: {{kubernetes.io/service-name: db}}}}\n\
             addressType: IPv4\nendpoints:\n\
             - addresses: [10.244.0.7]\n  hostname: db.primary\n  targetRef: {{kind: Pod, name: {long}}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: ext, namespace: demo}}\n\
             spec: {{type: ExternalName, externalName: {label64}.example.com}}\n",
            max = "p".repeat(253),
            label64 = "x".repeat(64),
        );
        write(dir.path(), "long.yaml", &text);
        let state = load_path(dir.path()).unwrap();
        assert_eq!(state.pods.len(), 2);
        assert_eq!(state.pods[&format!("demo/{long}")].ips, vec!["10.244.0.7".parse::<std::net::IpAddr>().unwrap()]);
        let slice = &state.endpoint_slices[&format!("demo/{long}.x")];
        assert_eq!(slice.endpoints[0].hostname.as_deref(), Some("db.primary"));
        assert_eq!(slice.endpoints[0].pod_name.as_deref(), Some(long.as_str()));
        assert_eq!(state.services.len(), 2);
    }

    /// Names the API server rejects still fail the load, with the rule they break.
    #[test]
    fn names_the_api_rejects_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {}}}\n", "p".repeat(254)));
        write(
            dir.path(),
            "b.yaml",
            &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {}}}\n", "s".repeat(64)),
        );
        write(
            dir.path(),
            "c.yaml",
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: x}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.1], hostname: 'Bad_Host'}]\n",
        );
        let errors = load_path(dir.path()).unwrap_err().0;
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{text:#?}");
        assert!(text[0].contains("metadata.name") && text[0].contains("DNS-1123 subdomain"), "{}", text[0]);
        assert!(text[1].contains("metadata.name") && text[1].contains("DNS-1123 label"), "{}", text[1]);
        assert!(text[2].contains("endpoints.hostname") && text[2].contains("Bad_Host"), "{}", text[2]);
    }

    /// The one-pass reader (`read_json`) and the careful one (`json_document`, `load_object`) read a
    /// file to the same state, whatever the order of its fields.
    fn both_readers(text: &str) -> ClusterState {
        let mut one_pass = ClusterState::default();
        read_json(text, &mut one_pass).unwrap();
        let mut careful = ClusterState::default();
        load_object(json_document(text).unwrap(), &mut careful).unwrap();
        assert_eq!(one_pass, careful);
        one_pass
    }

    /// kubectl's `get -o json` sorts a list's keys: `items` comes before `kind`. An item may hold its
    /// body before its header too; both are read, and read alike by both readers.
    #[test]
    fn fields_before_the_header_are_read() {
        let kubectl_order = r#"{"apiVersion": "v1", "items": [
            {"metadata": {"name": "web", "namespace": "demo"}, "spec": {"clusterIP": "None"},
             "kind": "Service", "apiVersion": "v1"},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}},
            {"addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1",
             "endpoints": [{"addresses": ["10.244.0.9"], "hostname": "web-0"}], "kind": "EndpointSlice",
             "metadata": {"labels": {"kubernetes.io/service-name": "web"}, "name": "web-1", "namespace": "demo"}}
          ], "kind": "List", "metadata": {"resourceVersion": ""}}"#;
        let state = both_readers(kubectl_order);
        assert!(state.namespaces.contains_key("demo"));
        assert_eq!(state.services["demo/web"].kind, roster_shared::ServiceKind::Headless);
        assert_eq!(state.endpoint_slices["demo/web-1"].endpoints[0].hostname.as_deref(), Some("web-0"));
        // A list's items before its header, an object's fields before `apiVersion` only.
        both_readers(
            r#"{"items": [{"kind": "Pod", "metadata": {"name": "p"}, "apiVersion": "v1"}], "kind": "PodList", "apiVersion": "v1"}"#,
        );
    }

    /// Whatever the one-pass reader cannot settle is read the careful way: a `kind` repeated after the
    /// body counts with its last value (the items read as a list are dropped), a header that is no string
    /// is missing, `items` that is no array is an empty list.
    #[test]
    fn the_careful_reader_settles_what_one_pass_cannot() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.json",
            r#"{"apiVersion": "v1", "kind": "List", "items": [
                 {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}}], "kind": "Deployment"}"#,
        );
        write(dir.path(), "b.json", r#"{"apiVersion": "v1", "kind": "List", "items": {"not": "an array"}}"#);
        write(
            dir.path(),
            "c.json",
            r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kept"}}]}"#,
        );
        let state = load_path(dir.path()).unwrap();
        assert_eq!(state.namespaces.keys().collect::<Vec<_>>(), ["kept"]);
        let mut one_pass = ClusterState::default();
        assert!(read_json(r#"{"apiVersion": "v1", "kind": 3}"#, &mut one_pass).is_err());
    }

    /// A malformed item read in one pass is reported as the careful reader reports it: the item, the
    /// kind, the path and the position in the file (here a field before the header, and the list's
    /// items before its `kind`, as kubectl writes them).
    #[test]
    fn a_malformed_item_read_in_one_pass_names_the_item_the_path_and_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"apiVersion\": \"v1\", \"items\": [\n  {\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}},\n  {\"spec\": {\"ports\": [{\"port\": \"many\"}]}, \"apiVersion\": \"v1\", \"kind\": \"Service\"}\n], \"kind\": \"List\"}\n";
        write(dir.path(), "a.json", text);
        let dup = r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {}, "spec": {}}]}"#;
        write(dir.path(), "b.json", dup);
        let mut one_pass = ClusterState::default();
        assert!(read_json(text, &mut one_pass).is_err());
        let errors = load_path(dir.path()).unwrap_err().0;
        let column = text.lines().nth(2).unwrap().find("\"many\"").unwrap() + "\"many\"".len();
        assert_eq!(
            errors[0].reason,
            format!(
                "items[1]: Service does not match the Kubernetes schema at `spec.ports[0].port`: \
                 invalid type: string \"many\", expected i32 at line 3 column {column}"
            )
        );
        assert!(
            errors[1].reason.starts_with(
                "items[0]: Service does not match the Kubernetes schema at `spec`: duplicate field `spec`"
            ),
            "{}",
            errors[1].reason
        );
    }

    /// Objects with every field the API allows — status, managed fields, owner references, probes —
    /// still decode (the fields DNS does not read are skipped), by both readers.
    #[test]
    fn objects_with_every_field_the_api_allows_decode() {
        let meta = |name: &str, labels: &str| {
            format!(
                r#"{{"name": "{name}", "generateName": "x-", "namespace": "demo", "selfLink": "", "uid": "1b4e-28ba",
                "resourceVersion": "42", "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                "deletionTimestamp": null, "deletionGracePeriodSeconds": 30, "labels": {labels},
                "annotations": {{"a": "b"}}, "ownerReferences": [{{"apiVersion": "apps/v1", "kind": "StatefulSet",
                "name": "web", "uid": "u", "controller": true, "blockOwnerDeletion": true}}], "finalizers": ["f"],
                "managedFields": [{{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {{"f:metadata": {{}}}}}}]}}"#
            )
        };
        let service = format!(
            r#"{{"apiVersion": "v1", "kind": "Service", "metadata": {}, "spec": {{"type": "ClusterIP",
            "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10"], "ipFamilies": ["IPv4", "IPv6"],
            "ipFamilyPolicy": "PreferDualStack", "selector": {{"app": "web"}}, "ports": [{{"name": "HTTP",
            "protocol": "TCP", "appProtocol": "http", "port": 80, "targetPort": "http", "nodePort": null}}],
            "sessionAffinity": "ClientIP", "sessionAffinityConfig": {{"clientIP": {{"timeoutSeconds": 10800}}}},
            "externalIPs": [], "loadBalancerSourceRanges": [], "externalTrafficPolicy": null,
            "internalTrafficPolicy": "Cluster", "publishNotReadyAddresses": false, "allocateLoadBalancerNodePorts": null,
            "trafficDistribution": "PreferClose"}}, "status": {{"loadBalancer": {{}}, "conditions": []}}}}"#,
            meta("web", "{\"app\": \"web\"}")
        );
        let slice = format!(
            r#"{{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {}, "addressType": "IPv4",
            "endpoints": [{{"addresses": ["10.244.0.9"], "conditions": {{"ready": false, "serving": true,
            "terminating": true}}, "hostname": "web-0", "nodeName": "node-1", "zone": "a", "hints": {{"forZones":
            [{{"name": "a"}}], "forNodes": [{{"name": "node-1"}}]}}, "deprecatedTopology": {{"k": "v"}},
            "targetRef": {{"kind": "Pod", "namespace": "demo", "name": "web-0", "uid": "u", "apiVersion": "v1",
            "resourceVersion": "1", "fieldPath": ""}}}}], "ports": [{{"name": "http", "protocol": "TCP", "port": 80,
            "appProtocol": "http"}}]}}"#,
            meta(
                "web-abc",
                "{\"kubernetes.io/service-name\": \"web\", \"endpointslice.kubernetes.io/managed-by\": \"x\"}"
            )
        );
        let pod = format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {{"containers": [{{"name": "c",
            "image": "nginx", "ports": [{{"containerPort": 80, "protocol": "TCP"}}], "readinessProbe": {{"httpGet":
            {{"path": "/", "port": 80}}}}, "resources": {{"limits": {{"cpu": "1"}}}}}}], "hostname": "web-0",
            "subdomain": "web", "dnsPolicy": "ClusterFirst", "hostNetwork": false, "dnsConfig": {{"nameservers": ["1.1.1.1"],
            "searches": [], "options": [{{"name": "ndots", "value": "2"}}]}}, "nodeName": "node-1",
            "tolerations": [], "volumes": [], "securityContext": {{}}, "restartPolicy": "Always"}},
            "status": {{"phase": "Running", "conditions": [{{"type": "Ready", "status": "True"}}], "hostIP": "172.18.0.2",
            "hostIPs": [{{"ip": "172.18.0.2"}}], "podIP": "10.244.0.9", "podIPs": [{{"ip": "10.244.0.9"}}, {{"ip": "fd00::9"}}],
            "startTime": "2026-01-01T00:00:00Z", "containerStatuses": [], "qosClass": "BestEffort"}}}}"#,
            meta("web-0", "{\"app\": \"web\"}")
        );
        let list = format!(r#"{{"apiVersion": "v1", "kind": "List", "items": [{service}, {slice}, {pod}]}}"#);
        let state = both_readers(&list);
        let service = &state.services["demo/web"];
        assert_eq!(
            service.kind,
            roster_shared::ServiceKind::ClusterIp(vec!["10.96.0.10".parse().unwrap(), "fd00::10".parse().unwrap()])
        );
        assert_eq!(service.ports[0].name.as_deref(), Some("http"));
        let endpoint = &state.endpoint_slices["demo/web-abc"].endpoints[0];
        assert_eq!((endpoint.ready, endpoint.terminating, endpoint.pod_name.as_deref()), (false, true, Some("web-0")));
        let pod = &state.pods["demo/web-0"];
        assert_eq!(pod.ips.len(), 2);
        assert!(pod.autopath, "ClusterFirst, Running, no searches of its own");
    }

    #[test]
    fn a_missing_path_is_an_error() {
        let errors = load_path(Path::new("/no/such/manifests")).unwrap_err();
        assert!(errors.to_string().contains("/no/such/manifests"));
    }
}
