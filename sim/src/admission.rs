//! Per-kind defaulting and validation, the parts of the real registry strategies clients rely on.

use serde_json::{Map, Value, json};

use crate::meta::{self, dns1123_label_error, dns1123_subdomain_error};
use crate::resources::ResourceType;
use crate::status::Cause;

fn cause(field: impl Into<String>, message: impl Into<String>, reason: &'static str) -> Cause {
    Cause { field: field.into(), message: message.into(), reason }
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    let Value::Object(map) = v else { unreachable!("made an object") };
    let child = map.entry(key).or_insert_with(|| json!({}));
    if !child.is_object() {
        *child = json!({});
    }
    match child {
        Value::Object(m) => m,
        _ => unreachable!("made an object"),
    }
}

fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    let missing = map.get(key).is_none_or(Value::is_null);
    if missing {
        map.insert(key.to_owned(), value);
    }
}

/// Fill defaults on a new object (the real server's defaulting plus PrepareForCreate).
pub fn prepare_create(rt: &ResourceType, obj: &mut Value) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => {
            default_pod_spec(obj_mut(obj, "spec"));
            if let Some(map) = obj.as_object_mut() {
                map.insert("status".into(), json!({"phase": "Pending", "qosClass": "BestEffort"}));
            }
        }
        ("", "namespaces") => {
            let name = meta::name(obj).to_owned();
            let labels = meta::metadata_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            default(obj_mut(obj, "spec"), "finalizers", json!(["kubernetes"]));
            if let Some(map) = obj.as_object_mut() {
                map.insert("status".into(), json!({"phase": "Active"}));
            }
        }
        ("", "services") => {
            default_service_spec(obj_mut(obj, "spec"));
            if let Some(map) = obj.as_object_mut() {
                map.insert("status".into(), json!({"loadBalancer": {}}));
            }
        }
        ("", "persistentvolumeclaims") => {
            default(obj_mut(obj, "spec"), "volumeMode", json!("Filesystem"));
            if let Some(map) = obj.as_object_mut() {
                map.insert("status".into(), json!({"phase": "Pending"}));
            }
        }
        ("", "persistentvolumes") => {
            let spec = obj_mut(obj, "spec");
            default(spec, "volumeMode", json!("Filesystem"));
            default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            if let Some(map) = obj.as_object_mut() {
                map.insert("status".into(), json!({"phase": "Available"}));
            }
        }
        ("apps", "statefulsets") => {
            default_statefulset_spec(obj_mut(obj, "spec"));
            if let Some(map) = obj.as_object_mut() {
                map.insert("status".into(), json!({"replicas": 0, "availableReplicas": 0}));
            }
        }
        ("apps", "deployments") => {
            default_deployment_spec(obj_mut(obj, "spec"));
            if let Some(map) = obj.as_object_mut() {
                map.insert("status".into(), json!({}));
            }
        }
        ("apps", "replicasets") => {
            default_replicaset_spec(obj_mut(obj, "spec"));
            if let Some(map) = obj.as_object_mut() {
                map.insert("status".into(), json!({"replicas": 0}));
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let names = meta::path(obj, "spec.names").cloned().unwrap_or(json!({}));
            let stored: Vec<Value> = meta::path(obj, "spec.versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(false))
                        .filter_map(|v| v.get("name").cloned())
                        .collect()
                })
                .unwrap_or_default();
            let now = meta::now_rfc3339();
            if let Some(map) = obj.as_object_mut() {
                map.insert(
                    "status".into(),
                    json!({
                        "acceptedNames": names,
                        "storedVersions": stored,
                        "conditions": [
                            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                             "message": "no conflicts found", "lastTransitionTime": now},
                            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                             "message": "the initial names have been accepted", "lastTransitionTime": now},
                        ],
                    }),
                );
            }
        }
        _ => {
            if rt.status
                && !is_builtin(rt)
                && let Some(map) = obj.as_object_mut()
            {
                map.remove("status");
            }
        }
    }
}

/// Fill defaults on an updated object, carrying over what the server allocated.
pub fn prepare_update(rt: &ResourceType, old: &Value, new: &mut Value) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => default_pod_spec(obj_mut(new, "spec")),
        ("", "services") => {
            for key in ["clusterIP", "clusterIPs"] {
                let old_v = meta::path(old, &format!("spec.{key}")).cloned();
                let spec = obj_mut(new, "spec");
                // an empty clusterIP on update keeps the allocated one, as the real strategy does
                if spec.get(key).is_some_and(|v| v == "" || v.as_array().is_some_and(Vec::is_empty)) {
                    spec.remove(key);
                }
                if let Some(v) = old_v {
                    default(spec, key, v);
                }
            }
            default_service_spec(obj_mut(new, "spec"));
        }
        ("", "namespaces") => {
            default(obj_mut(new, "spec"), "finalizers", json!(["kubernetes"]));
        }
        ("apps", "statefulsets") => default_statefulset_spec(obj_mut(new, "spec")),
        ("apps", "deployments") => default_deployment_spec(obj_mut(new, "spec")),
        ("apps", "replicasets") => default_replicaset_spec(obj_mut(new, "spec")),
        _ => {}
    }
}

fn is_builtin(rt: &ResourceType) -> bool {
    crate::resources::builtins().iter().any(|b| b.group == rt.group && b.plural == rt.plural)
}

fn default_pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    default(spec, "priority", json!(0));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let last = image.rsplit('/').next().unwrap_or("");
                let policy = if !last.contains(':') || last.ends_with(":latest") { "Always" } else { "IfNotPresent" };
                default(c, "imagePullPolicy", json!(policy));
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                default(c, "resources", json!({}));
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

fn default_service_spec(spec: &mut Map<String, Value>) {
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let external = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
    if !external {
        default(spec, "ipFamilies", json!(["IPv4"]));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ip) = spec.get("clusterIP").and_then(Value::as_str).map(str::to_owned)
        && !ip.is_empty()
    {
        default(spec, "clusterIPs", json!([ip]));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default(p, "targetPort", port);
            }
        }
    }
}

fn default_statefulset_spec(spec: &mut Map<String, Value>) {
    default(spec, "replicas", json!(1));
    default(spec, "podManagementPolicy", json!("OrderedReady"));
    default(spec, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
    if let Some(Value::Object(us)) = spec.get_mut("updateStrategy")
        && us.get("type").and_then(Value::as_str) == Some("RollingUpdate")
    {
        let ru = us.entry("rollingUpdate").or_insert_with(|| json!({}));
        if let Some(ru) = ru.as_object_mut() {
            default(ru, "partition", json!(0));
        }
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "persistentVolumeClaimRetentionPolicy", json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if let Some(t) = template.as_object_mut() {
        let pod_spec = t.entry("spec").or_insert_with(|| json!({}));
        if let Some(ps) = pod_spec.as_object_mut() {
            default_pod_spec(ps);
        }
    }
    if let Some(Value::Array(vcts)) = spec.get_mut("volumeClaimTemplates") {
        for t in vcts.iter_mut().filter_map(Value::as_object_mut) {
            default(t, "apiVersion", json!("v1"));
            default(t, "kind", json!("PersistentVolumeClaim"));
            let s = t.entry("spec").or_insert_with(|| json!({}));
            if let Some(s) = s.as_object_mut() {
                default(s, "volumeMode", json!("Filesystem"));
            }
            default(t, "status", json!({"phase": "Pending"}));
        }
    }
}

fn default_template(spec: &mut Map<String, Value>) {
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if let Some(t) = template.as_object_mut() {
        let pod_spec = t.entry("spec").or_insert_with(|| json!({}));
        if let Some(ps) = pod_spec.as_object_mut() {
            default_pod_spec(ps);
        }
    }
}

fn default_deployment_spec(spec: &mut Map<String, Value>) {
    default(spec, "replicas", json!(1));
    default(spec, "strategy", json!({"type": "RollingUpdate"}));
    if let Some(Value::Object(st)) = spec.get_mut("strategy") {
        default(st, "type", json!("RollingUpdate"));
        if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let Some(ru) = ru.as_object_mut() {
                default(ru, "maxUnavailable", json!("25%"));
                default(ru, "maxSurge", json!("25%"));
            }
        }
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec);
}

fn default_replicaset_spec(spec: &mut Map<String, Value>) {
    default(spec, "replicas", json!(1));
    default_template(spec);
}

/// A workload's selector is required, must not be empty and must select its pod template, as
/// kube-apiserver's apps validation. `kind` names the workload in the empty-selector message; upstream
/// says "deployment" for ReplicaSets too.
fn validate_selector(obj: &Value, kind: &str, causes: &mut Vec<Cause>) {
    let selector = meta::path(obj, "spec.selector").filter(|s| !s.is_null());
    let Some(selector) = selector else {
        causes.push(cause("spec.selector", "Required value", "FieldValueRequired"));
        return;
    };
    let parsed = crate::selector::LabelSelector::from_json(selector);
    if parsed.as_ref().is_ok_and(|s| s.is_empty()) {
        // An empty selector would select every pod in the namespace. Upstream skips the template
        // check then (an empty selector matches any labels), so this is the only complaint.
        causes.push(cause(
            "spec.selector",
            format!("Invalid value: {selector}: empty selector is invalid for {kind}"),
            "FieldValueInvalid",
        ));
        return;
    }
    let labels = meta::path(obj, "spec.template.metadata.labels").cloned();
    let empty = json!({});
    if !parsed.is_ok_and(|s| s.matches(labels.as_ref().unwrap_or(&empty))) {
        causes.push(cause(
            "spec.template.metadata.labels",
            format!("Invalid value: {}: `selector` does not match template `labels`", labels.unwrap_or(Value::Null)),
            "FieldValueInvalid",
        ));
    }
}

/// Validation errors of an object about to be stored.
pub fn validate(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = meta::name(obj);
    let name_err = match rt.plural.as_str() {
        "namespaces" if rt.group.is_empty() => dns1123_label_error(name),
        "services" if rt.group.is_empty() => dns1123_label_error(name).or_else(|| {
            name.starts_with(|c: char| c.is_ascii_digit()).then(|| {
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_owned()
            })
        }),
        "events" | "leases" | "controllerrevisions" => None,
        _ => dns1123_subdomain_error(name),
    };
    if let Some(msg) = name_err {
        causes.push(cause("metadata.name", format!("Invalid value: \"{name}\": {msg}"), "FieldValueInvalid"));
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => validate_pod_spec(meta::path(obj, "spec"), "spec", &mut causes),
        ("", "services") => {
            let ports = meta::path(obj, "spec.ports").and_then(Value::as_array);
            let headless_or_external = matches!(meta::path_str(obj, "spec.clusterIP"), "None")
                || meta::path_str(obj, "spec.type") == "ExternalName";
            if ports.is_none_or(Vec::is_empty) && !headless_or_external {
                causes.push(cause("spec.ports", "Required value", "FieldValueRequired"));
            }
            for (i, p) in ports.into_iter().flatten().enumerate() {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    causes.push(cause(
                        format!("spec.ports[{i}].port"),
                        format!("Invalid value: {port}: must be between 1 and 65535, inclusive"),
                        "FieldValueInvalid",
                    ));
                }
            }
        }
        ("", "persistentvolumeclaims") => {
            if meta::path(obj, "spec.accessModes").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                causes.push(cause(
                    "spec.accessModes",
                    "Required value: at least 1 access mode is required",
                    "FieldValueRequired",
                ));
            }
            if meta::path_str(obj, "spec.resources.requests.storage").is_empty() {
                causes.push(cause("spec.resources[storage]", "Required value", "FieldValueRequired"));
            }
        }
        ("", "persistentvolumes") => {
            if meta::path(obj, "spec.accessModes").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                causes.push(cause(
                    "spec.accessModes",
                    "Required value: must specify at least 1 access mode",
                    "FieldValueRequired",
                ));
            }
            if meta::path_str(obj, "spec.capacity.storage").is_empty() {
                causes.push(cause("spec.capacity", "Required value", "FieldValueRequired"));
            }
        }
        ("discovery.k8s.io", "endpointslices")
            if !matches!(meta::path_str(obj, "addressType"), "IPv4" | "IPv6" | "FQDN") =>
        {
            causes.push(cause(
                "addressType",
                "Unsupported value: supported values: \"FQDN\", \"IPv4\", \"IPv6\"",
                "FieldValueNotSupported",
            ));
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let (group, plural) = (meta::path_str(obj, "spec.group"), meta::path_str(obj, "spec.names.plural"));
            if name != format!("{plural}.{group}") {
                causes.push(cause(
                    "metadata.name",
                    format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
                    "FieldValueInvalid",
                ));
            }
            if meta::path_str(obj, "spec.names.kind").is_empty() {
                causes.push(cause("spec.names.kind", "Required value", "FieldValueRequired"));
            }
            let versions = meta::path(obj, "spec.versions").and_then(Value::as_array).cloned().unwrap_or_default();
            let storage = versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).count();
            if versions.is_empty() {
                causes.push(cause(
                    "spec.versions",
                    "Invalid value: null: must have exactly one version marked as storage version",
                    "FieldValueInvalid",
                ));
            } else if storage != 1 {
                causes.push(cause(
                    "spec.versions",
                    format!(
                        "Invalid value: {}: must have exactly one version marked as storage version",
                        Value::Array(versions)
                    ),
                    "FieldValueInvalid",
                ));
            }
        }
        ("apps", "deployments" | "replicasets") => {
            validate_selector(obj, "deployment", &mut causes);
            if meta::path(obj, "spec.replicas").and_then(Value::as_i64).is_some_and(|r| r < 0) {
                causes.push(cause(
                    "spec.replicas",
                    "Invalid value: must be greater than or equal to 0",
                    "FieldValueInvalid",
                ));
            }
            if rt.plural == "deployments" {
                let strategy = meta::path_str(obj, "spec.strategy.type");
                if !matches!(strategy, "RollingUpdate" | "Recreate") {
                    causes.push(cause(
                        "spec.strategy.type",
                        format!("Unsupported value: \"{strategy}\": supported values: \"Recreate\", \"RollingUpdate\""),
                        "FieldValueNotSupported",
                    ));
                }
                if strategy == "Recreate"
                    && meta::path(obj, "spec.strategy.rollingUpdate").is_some_and(|r| !r.is_null())
                {
                    causes.push(cause(
                        "spec.strategy.rollingUpdate",
                        "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                        "FieldValueForbidden",
                    ));
                }
                let zero = |p: &str| match meta::path(obj, p) {
                    Some(Value::Number(n)) => n.as_i64() == Some(0),
                    Some(Value::String(s)) => s == "0" || s == "0%",
                    _ => false,
                };
                if strategy == "RollingUpdate"
                    && zero("spec.strategy.rollingUpdate.maxSurge")
                    && zero("spec.strategy.rollingUpdate.maxUnavailable")
                {
                    causes.push(cause(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        "Invalid value: 0: may not be 0 when `maxSurge` is 0",
                        "FieldValueInvalid",
                    ));
                }
            }
            validate_pod_spec(meta::path(obj, "spec.template.spec"), "spec.template.spec", &mut causes);
        }
        ("apps", "statefulsets") => {
            validate_selector(obj, "statefulset", &mut causes);
            validate_pod_spec(meta::path(obj, "spec.template.spec"), "spec.template.spec", &mut causes);
        }
        _ => {}
    }
    causes
}

fn validate_pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let containers = spec.and_then(|s| s.get("containers")).and_then(Value::as_array);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(cause(format!("{at}.containers"), "Required value", "FieldValueRequired"));
        return;
    };
    for (i, c) in containers.iter().enumerate() {
        let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
        if cname.is_empty() {
            causes.push(cause(format!("{at}.containers[{i}].name"), "Required value", "FieldValueRequired"));
        } else if let Some(msg) = dns1123_label_error(cname) {
            causes.push(cause(
                format!("{at}.containers[{i}].name"),
                format!("Invalid value: \"{cname}\": {msg}"),
                "FieldValueInvalid",
            ));
        }
        if c.get("image").and_then(Value::as_str).unwrap_or("").is_empty() {
            causes.push(cause(format!("{at}.containers[{i}].image"), "Required value", "FieldValueRequired"));
        }
    }
}

/// What an update may not change (the real strategies' immutability rules for the kinds roster writes).
/// kube-apiserver's PersistentVolumeClaimResize admission plugin (on by default): a claim's storage
/// request may grow only when the claim is bound and its StorageClass (`classes`) has
/// `allowVolumeExpansion: true`. Run on updates of claims, before they are stored.
pub fn claim_resize(
    old: &Value,
    new: &Value,
    classes: &[std::sync::Arc<Value>],
) -> Result<(), crate::status::ApiError> {
    let bytes =
        |v: &Value| crate::controllers::pvc::quantity_bytes(meta::path_str(v, "spec.resources.requests.storage"));
    if bytes(new).unwrap_or(0) <= bytes(old).unwrap_or(0) {
        return Ok(());
    }
    let refuse = |why: &str| {
        Err(crate::status::ApiError::forbidden(format!(
            "persistentvolumeclaims \"{}\" is forbidden: {why}",
            meta::name(old)
        )))
    };
    if meta::path_str(old, "status.phase") != "Bound" {
        // Validation, which runs first upstream, already refuses any change of an unbound claim's
        // request (422, "spec is immutable"); the plugin's own "Only bound …" is never reached.
        return Ok(());
    }
    let (class, old_class) =
        (meta::path_str(new, "spec.storageClassName"), meta::path_str(old, "spec.storageClassName"));
    let allows = !class.is_empty()
        && class == old_class
        && classes
            .iter()
            .find(|c| meta::name(c) == class)
            .and_then(|c| c.get("allowVolumeExpansion"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    if allows {
        Ok(())
    } else {
        refuse(
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        )
    }
}

pub fn validate_update(rt: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
    let spec = |v: &Value| v.get("spec").cloned().unwrap_or(json!({}));
    let forbidden =
        |field: &str, message: &str| vec![cause(field, format!("Forbidden: {message}"), "FieldValueForbidden")];
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => {
            let (mut o, mut n) = (spec(old), spec(new));
            // the scheduler's binding sets nodeName once
            if meta::path_str(old, "spec.nodeName").is_empty() {
                o["nodeName"] = n.get("nodeName").cloned().unwrap_or(Value::Null);
            }
            for list in ["containers", "initContainers"] {
                if let (Some(Value::Array(oc)), Some(Value::Array(nc))) = (o.get_mut(list), n.get(list))
                    && oc.len() == nc.len()
                {
                    for (a, b) in oc.iter_mut().zip(nc) {
                        a["image"] = b.get("image").cloned().unwrap_or(Value::Null);
                    }
                }
            }
            for field in ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"] {
                match n.get(field) {
                    Some(v) => o[field] = v.clone(),
                    None => {
                        if let Some(m) = o.as_object_mut() {
                            m.remove(field);
                        }
                    }
                }
            }
            if let Some(m) = n.as_object_mut() {
                m.retain(|_, v| !v.is_null());
            }
            if let Some(m) = o.as_object_mut() {
                m.retain(|_, v| !v.is_null());
            }
            if o == n {
                return Vec::new();
            }
            forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            )
        }
        ("apps", "statefulsets") => {
            let strip = |v: &Value| {
                let mut s = spec(v);
                if let Some(m) = s.as_object_mut() {
                    for k in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "revisionHistoryLimit",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(k);
                    }
                }
                s
            };
            if strip(old) == strip(new) {
                return Vec::new();
            }
            forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )
        }
        ("apps", "deployments" | "replicasets") => {
            let (o, n) = (meta::path(old, "spec.selector"), meta::path(new, "spec.selector"));
            if o == n {
                return Vec::new();
            }
            vec![cause(
                "spec.selector",
                format!("Invalid value: {}: field is immutable", n.cloned().unwrap_or(Value::Null)),
                "FieldValueInvalid",
            )]
        }
        ("", "persistentvolumeclaims") => {
            let (mut o, mut n) = (spec(old), spec(new));
            for field in ["volumeName", "storageClassName"] {
                if meta::path_str(old, &format!("spec.{field}")).is_empty() {
                    o[field] = n.get(field).cloned().unwrap_or(Value::Null);
                }
            }
            // Only a bound claim's storage request may change (ValidatePersistentVolumeClaimUpdate).
            let bound = meta::path_str(new, "status.phase") == "Bound";
            for v in [&mut o, &mut n] {
                if let Some(m) = v.as_object_mut() {
                    m.retain(|_, x| !x.is_null());
                    if bound
                        && let Some(Value::Object(requests)) =
                            m.get_mut("resources").and_then(|r| r.get_mut("requests"))
                    {
                        requests.remove("storage");
                    }
                    m.remove("volumeAttributesClassName");
                }
            }
            let mut causes = if o == n {
                Vec::new()
            } else {
                forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                )
            };
            // A smaller request only down to (not to) status.capacity: RecoverVolumeExpansionFailure, GA
            // and locked on since 1.34, lets users back out of a failed expansion.
            let bytes = |v: &Value, p: &str| crate::controllers::pvc::quantity_bytes(meta::path_str(v, p));
            let (was, wants) =
                (bytes(old, "spec.resources.requests.storage"), bytes(new, "spec.resources.requests.storage"));
            if let (Some(was), Some(wants)) = (was, wants)
                && wants < was
                && wants <= bytes(old, "status.capacity.storage").unwrap_or(0)
            {
                causes
                    .extend(forbidden("spec.resources.requests.storage", "field can not be less than status.capacity"));
            }
            causes
        }
        ("", "services") => {
            let (o, n) = (meta::path_str(old, "spec.clusterIP"), meta::path_str(new, "spec.clusterIP"));
            if o.is_empty() || o == n {
                return Vec::new();
            }
            vec![cause(
                "spec.clusterIPs[0]",
                format!("Invalid value: []string{{\"{n}\"}}: may not change once set"),
                "FieldValueInvalid",
            )]
        }
        _ => Vec::new(),
    }
}
