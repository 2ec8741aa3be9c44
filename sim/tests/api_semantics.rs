//! The API's list/watch/write semantics at the HTTP level, as tables of behaviour.

mod common;

use std::time::Duration;

use common::start;
use futures_util::StreamExt;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

async fn client(sim: &roster_sim::SimHandle) -> Client {
    let kc = Kubeconfig::read_from(sim.kubeconfig_path()).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(config).expect("client")
}

/// (status code, JSON body) of a request.
async fn call(c: &Client, method: &str, uri: &str, body: Option<Value>, content_type: &str) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
        .expect("request");
    match c.request_text(req).await {
        Ok(text) => {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = if method == "POST" { 201 } else { 200 };
            (code, v)
        }
        Err(kube::Error::Api(status)) => {
            let v = serde_json::to_value(&status).unwrap_or(Value::Null);
            (status.code, v)
        }
        Err(e) => panic!("{method} {uri}: {e}"),
    }
}

async fn get(c: &Client, uri: &str) -> (u16, Value) {
    call(c, "GET", uri, None, "application/json").await
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// Read a watch stream's events until `n` arrived or `wait` passed.
async fn watch_events(c: &Client, uri: &str, n: usize, wait: Duration) -> Vec<Value> {
    use futures_util::AsyncBufReadExt;
    let req = http::Request::get(uri).body(Vec::new()).expect("request");
    let reader = c.request_stream(req).await.expect("watch response");
    let mut lines = Box::pin(reader).lines();
    let mut events = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        while let Some(Ok(line)) = lines.next().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                events.push(v);
            }
            if events.len() >= n {
                return;
            }
        }
    })
    .await;
    events
}

async fn make_cm(c: &Client, name: &str, labels: Value) -> Value {
    let (code, v) = call(
        c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})),
        "application/json",
    )
    .await;
    assert_eq!(code, 201, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_selectors_and_pagination() {
    let sim = start().await;
    let c = client(&sim).await;
    for (name, env, tier) in [("a", "prod", "web"), ("b", "prod", "db"), ("c", "dev", "web"), ("d", "test", "")] {
        let labels = if tier.is_empty() { json!({"env": env}) } else { json!({"env": env, "tier": tier}) };
        make_cm(&c, name, labels).await;
    }
    let cases: &[(&str, &[&str])] = &[
        ("labelSelector=env%3Dprod", &["a", "b"]),
        ("labelSelector=env%20in%20(prod,dev),tier%3Dweb", &["a", "c"]),
        ("labelSelector=env%20notin%20(prod)", &["c", "d"]),
        ("labelSelector=!tier", &["d"]),
        ("labelSelector=tier,env!%3Dprod", &["c"]),
        ("fieldSelector=metadata.name%3Db", &["b"]),
        ("fieldSelector=metadata.name!%3Db,metadata.namespace%3Ddefault", &["a", "c", "d"]),
        ("fieldSelector=metadata.namespace%3Dother", &[]),
    ];
    for (query, want) in cases {
        let (code, list) = get(&c, &format!("/api/v1/namespaces/default/configmaps?{query}")).await;
        assert_eq!(code, 200, "{query}: {list}");
        assert_eq!(names(&list), *want, "{query}");
    }
    let (code, bad) = get(&c, "/api/v1/configmaps?labelSelector=env%20in%20prod").await;
    assert_eq!((code, bad["reason"].as_str()), (400, Some("BadRequest")), "{bad}");

    // limit/continue walks everything exactly once
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let uri = format!("/api/v1/namespaces/default/configmaps?limit=3&continue={token}");
        let (_, page) = get(&c, &uri).await;
        seen.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(t) => {
                assert!(page["metadata"]["remainingItemCount"].as_u64().is_some_and(|n| n > 0));
                token = t.to_owned();
            }
            None => break,
        }
    }
    let (_, all) = get(&c, "/api/v1/namespaces/default/configmaps").await;
    assert_eq!(seen, names(&all));
    assert_eq!(seen, ["a", "b", "c", "d"]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_filter_by_node_and_phase() {
    let sim = start().await;
    let c = client(&sim).await;
    for name in ["p1", "p2"] {
        let (code, v) = call(
            &c,
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})),
            "application/json",
        )
        .await;
        assert_eq!(code, 201, "{v}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = get(&c, "/api/v1/pods?fieldSelector=status.phase%3DRunning,spec.nodeName%3Dsim-node-0").await;
        if names(&list) == ["p1", "p2"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, none) = get(&c, "/api/v1/pods?fieldSelector=spec.nodeName%3Delsewhere").await;
    assert!(names(&none).is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_from_a_version_and_follows_selector_transitions() {
    let sim = start().await;
    let c = client(&sim).await;
    let first = make_cm(&c, "w1", json!({"watch": "yes"})).await;
    let rv = first["metadata"]["resourceVersion"].as_str().expect("rv").to_owned();
    make_cm(&c, "w2", json!({"watch": "yes"})).await;
    make_cm(&c, "w3", json!({"watch": "no"})).await;
    // replay: only what came after `rv`, filtered
    let uri = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&labelSelector=watch%3Dyes");
    let events = watch_events(&c, &uri, 1, Duration::from_secs(3)).await;
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["type"].as_str().unwrap_or(""), e["object"]["metadata"]["name"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(got, [("ADDED", "w2")]);

    // an object leaving the selection is DELETED for the watcher; entering it is ADDED
    let (_, list) = get(&c, "/api/v1/namespaces/default/configmaps").await;
    let now = list["metadata"]["resourceVersion"].as_str().expect("rv").to_owned();
    let c2 = c.clone();
    let watcher = tokio::spawn(async move {
        let uri =
            format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={now}&labelSelector=watch%3Dyes");
        watch_events(&c2, &uri, 2, Duration::from_secs(10)).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let patch = |name: &str, v: &str| {
        let c = c.clone();
        let (name, v) = (name.to_owned(), v.to_owned());
        async move {
            let uri = format!("/api/v1/namespaces/default/configmaps/{name}");
            let body = json!({"metadata": {"labels": {"watch": v}}});
            call(&c, "PATCH", &uri, Some(body), "application/merge-patch+json").await
        }
    };
    assert_eq!(patch("w1", "no").await.0, 200);
    assert_eq!(patch("w3", "yes").await.0, 200);
    let events = watcher.await.expect("watcher");
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["type"].as_str().unwrap_or(""), e["object"]["metadata"]["name"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(got, [("DELETED", "w1"), ("ADDED", "w3")]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_initial_events_bookmarks_and_timeout() {
    let sim = start().await;
    let c = client(&sim).await;
    make_cm(&c, "i1", json!({})).await;
    let uri = "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";
    let events = watch_events(&c, uri, 2, Duration::from_secs(5)).await;
    assert_eq!(events[0]["type"], "ADDED");
    let end = events.iter().find(|e| e["type"] == "BOOKMARK").expect("a bookmark");
    assert_eq!(end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    // timeoutSeconds ends the stream by itself
    let started = std::time::Instant::now();
    let events = watch_events(
        &c,
        "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1",
        1000,
        Duration::from_secs(10),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5), "the watch ended at its timeout");
    assert!(events.iter().all(|e| e["type"] == "ADDED"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_keep_metadata_semantics() {
    let sim = start().await;
    let c = client(&sim).await;
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
        "spec": {"serviceName": "s", "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}},
    });
    let (code, created) =
        call(&c, "POST", "/apis/apps/v1/namespaces/default/statefulsets", Some(sts), "application/json").await;
    assert_eq!(code, 201, "{created}");
    let uid = created["metadata"]["uid"].clone();
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["creationTimestamp"].is_string());
    let uri = "/apis/apps/v1/namespaces/default/statefulsets/s";
    let table: &[(&str, Value, &str, i64)] = &[
        ("application/merge-patch+json", json!({"metadata": {"labels": {"x": "1"}}}), "labels", 1),
        ("application/merge-patch+json", json!({"spec": {"replicas": 3}}), "spec", 2),
        ("application/merge-patch+json", json!({"status": {"replicas": 3}}), "status ignored on main", 2),
        (
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]),
            "json patch",
            3,
        ),
    ];
    let mut last_rv = 0u64;
    for (ct, body, what, generation) in table {
        let (code, v) = call(&c, "PATCH", uri, Some(body.clone()), ct).await;
        assert_eq!(code, 200, "{what}: {v}");
        assert_eq!(v["metadata"]["generation"], *generation, "{what}");
        assert_eq!(v["metadata"]["uid"], uid);
        let rv: u64 = v["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0);
        assert!(rv >= last_rv, "{what}: resourceVersion moves forward");
        last_rv = rv;
    }
    let (_, s) = get(&c, uri).await;
    assert!(s["status"].get("replicas").is_none_or(|r| r == 0), "{s}");
    // the status subresource changes only status, without touching generation
    let (code, v) = call(
        &c,
        "PATCH",
        &format!("{uri}/status"),
        Some(json!({"status": {"replicas": 4, "readyReplicas": 4}, "spec": {"replicas": 9}})),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["status"]["readyReplicas"].as_i64(), v["spec"]["replicas"].as_i64(), v["metadata"]["generation"].as_i64()),
        (Some(4), Some(4), Some(3))
    );
    // the scale subresource
    let (_, scale) = get(&c, &format!("{uri}/scale")).await;
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64(), scale["status"]["selector"].as_str()),
        (Some("Scale"), Some(4), Some("a=b"))
    );
    // a stale PUT is a 409 Conflict; an invalid one is a 422 with causes
    let mut stale = created.clone();
    stale["spec"]["replicas"] = json!(1);
    let (code, v) = call(&c, "PUT", uri, Some(stale), "application/json").await;
    assert_eq!((code, v["reason"].as_str()), (409, Some("Conflict")), "{v}");
    let (code, v) = call(
        &c,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": []}})),
        "application/json",
    )
    .await;
    assert_eq!((code, v["reason"].as_str()), (422, Some("Invalid")), "{v}");
    let fields: Vec<&str> =
        v["details"]["causes"].as_array().into_iter().flatten().filter_map(|c| c["field"].as_str()).collect();
    assert_eq!(fields, ["metadata.name", "spec.containers"]);
    // delete preconditions
    let (code, v) =
        call(&c, "DELETE", uri, Some(json!({"preconditions": {"uid": "not-it"}})), "application/json").await;
    assert_eq!((code, v["reason"].as_str()), (409, Some("Conflict")), "{v}");
    let (code, _) = call(&c, "DELETE", uri, Some(json!({"preconditions": {"uid": uid}})), "application/json").await;
    assert_eq!(code, 200);
    let (code, v) = get(&c, uri).await;
    assert_eq!(
        (code, v["reason"].as_str(), v["details"]["kind"].as_str()),
        (404, Some("NotFound"), Some("statefulsets"))
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_describes_resources() {
    let sim = start().await;
    let c = client(&sim).await;
    let (_, v) = get(&c, "/version").await;
    assert_eq!(v["major"], "1");
    let (_, core) = get(&c, "/api/v1").await;
    let find = |list: &Value, name: &str| {
        list["resources"].as_array().and_then(|r| r.iter().find(|x| x["name"] == name)).cloned().unwrap_or(Value::Null)
    };
    let pods = find(&core, "pods");
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["categories"], json!(["all"]));
    assert!(pods["verbs"].as_array().is_some_and(|v| v.contains(&json!("watch"))));
    assert_eq!(find(&core, "pods/status")["kind"], "Pod");
    let (_, apps) = get(&c, "/apis/apps/v1").await;
    assert_eq!(find(&apps, "statefulsets/scale")["group"], "autoscaling");
    assert_eq!(find(&apps, "statefulsets")["shortNames"], json!(["sts"]));
    let (_, groups) = get(&c, "/apis").await;
    let group_names: Vec<&str> =
        groups["groups"].as_array().into_iter().flatten().filter_map(|g| g["name"].as_str()).collect();
    for g in
        ["apps", "discovery.k8s.io", "storage.k8s.io", "events.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io"]
    {
        assert!(group_names.contains(&g), "{g} in {group_names:?}");
    }
    let (code, _) = get(&c, "/apis/nope.example/v1").await;
    assert_eq!(code, 404);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_respect_immutable_fields() {
    let sim = start().await;
    let c = client(&sim).await;
    let merge = "application/merge-patch+json";
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}});
    assert_eq!(call(&c, "POST", "/api/v1/namespaces/default/pods", Some(pod), "application/json").await.0, 201);
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
        "spec": {"serviceName": "s", "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}},
    });
    assert_eq!(
        call(&c, "POST", "/apis/apps/v1/namespaces/default/statefulsets", Some(sts), "application/json").await.0,
        201
    );
    let pvc = json!({"metadata": {"name": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    assert_eq!(
        call(&c, "POST", "/api/v1/namespaces/default/persistentvolumeclaims", Some(pvc), "application/json").await.0,
        201
    );
    let svc = json!({"metadata": {"name": "v"}, "spec": {"ports": [{"port": 80}]}});
    assert_eq!(call(&c, "POST", "/api/v1/namespaces/default/services", Some(svc), "application/json").await.0, 201);
    let cases: &[(&str, Value, u16)] = &[
        (
            "/api/v1/namespaces/default/pods/p",
            json!({"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}),
            200,
        ),
        ("/api/v1/namespaces/default/pods/p", json!({"spec": {"hostname": "other"}}), 422),
        (
            "/apis/apps/v1/namespaces/default/statefulsets/s",
            json!({"spec": {"replicas": 5, "minReadySeconds": 3}}),
            200,
        ),
        ("/apis/apps/v1/namespaces/default/statefulsets/s", json!({"spec": {"serviceName": "t"}}), 422),
        (
            "/api/v1/namespaces/default/persistentvolumeclaims/d",
            json!({"spec": {"accessModes": ["ReadWriteMany"]}}),
            422,
        ),
        ("/api/v1/namespaces/default/services/v", json!({"spec": {"clusterIP": "10.96.9.9"}}), 422),
        ("/api/v1/namespaces/default/services/v", json!({"spec": {"ports": [{"port": 81}]}}), 200),
    ];
    for (uri, patch, want) in cases {
        let (code, v) = call(&c, "PATCH", uri, Some(patch.clone()), merge).await;
        assert_eq!(code, *want, "{uri} {patch}: {v}");
    }
    claims_grow_only_as_the_api_server_allows(&c, merge).await;
    sim.shutdown().await;
}

/// A bound claim's request grows only when its StorageClass allows expansion (kube-apiserver's
/// PersistentVolumeClaimResize admission: 403), never below its capacity (validation: 422); the binder
/// then expands the volume, as a CSI driver with online expansion would.
async fn claims_grow_only_as_the_api_server_allows(c: &Client, merge: &str) {
    let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "grows"},
                       "provisioner": "roster.dev/sim-hostpath", "allowVolumeExpansion": true});
    assert_eq!(call(c, "POST", "/apis/storage.k8s.io/v1/storageclasses", Some(class), "application/json").await.0, 201);
    let e = json!({"metadata": {"name": "e"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "grows",
                   "resources": {"requests": {"storage": "1Gi"}}}});
    assert_eq!(
        call(c, "POST", "/api/v1/namespaces/default/persistentvolumeclaims", Some(e), "application/json").await.0,
        201
    );
    for name in ["d", "e"] {
        let uri = format!("/api/v1/namespaces/default/persistentvolumeclaims/{name}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while call(c, "GET", &uri, None, "application/json").await.1["status"]["phase"] != "Bound" {
            assert!(std::time::Instant::now() < deadline, "{name} never bound");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let grow = json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}});
    let (code, v) =
        call(c, "PATCH", "/api/v1/namespaces/default/persistentvolumeclaims/d", Some(grow.clone()), merge).await;
    assert_eq!(code, 403, "{v}");
    assert!(
        v["message"].as_str().unwrap_or("").contains("the storageclass that provisions the pvc must support resize"),
        "{v}"
    );
    let shrink = json!({"spec": {"resources": {"requests": {"storage": "500Mi"}}}});
    let (code, v) = call(c, "PATCH", "/api/v1/namespaces/default/persistentvolumeclaims/d", Some(shrink), merge).await;
    assert_eq!(code, 422, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("can not be less than status.capacity"), "{v}");
    let (code, v) = call(c, "PATCH", "/api/v1/namespaces/default/persistentvolumeclaims/e", Some(grow), merge).await;
    assert_eq!(code, 200, "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let uri = "/api/v1/namespaces/default/persistentvolumeclaims/e";
    while call(c, "GET", uri, None, "application/json").await.1["status"]["capacity"]["storage"] != "2Gi" {
        assert!(std::time::Instant::now() < deadline, "e never grew");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_fields_and_names_are_validated() {
    let sim = start().await;
    let c = client(&sim).await;
    let cases: &[(&str, Value, &[&str])] = &[
        (
            "/api/v1/namespaces/default/persistentvolumeclaims",
            json!({"metadata": {"name": "x"}, "spec": {}}),
            &["spec.accessModes", "spec.resources[storage]"],
        ),
        (
            "/api/v1/persistentvolumes",
            json!({"metadata": {"name": "x"}, "spec": {"accessModes": ["ReadWriteOnce"]}}),
            &["spec.capacity"],
        ),
        (
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
            json!({"metadata": {"name": "x"}, "endpoints": []}),
            &["addressType"],
        ),
        (
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            json!({"metadata": {"name": "wrong.example.com"}, "spec": {"group": "example.com", "names": {"plural": "things", "kind": "Thing"}, "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": false}]}}),
            &["metadata.name", "spec.versions"],
        ),
        (
            "/api/v1/namespaces/default/services",
            json!({"metadata": {"name": "9svc"}, "spec": {"ports": [{"port": 0}]}}),
            &["metadata.name", "spec.ports[0].port"],
        ),
        (
            "/apis/apps/v1/namespaces/default/statefulsets",
            json!({"metadata": {"name": "s"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "c"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
            &["spec.template.metadata.labels"],
        ),
        // an empty selector would select every pod of the namespace: the real API rejects it
        (
            "/apis/apps/v1/namespaces/default/statefulsets",
            json!({"metadata": {"name": "s"}, "spec": {"selector": {}, "template": {"metadata": {"labels": {"a": "c"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
            &["spec.selector"],
        ),
        (
            "/apis/apps/v1/namespaces/default/deployments",
            json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {}}, "template": {"metadata": {"labels": {"a": "c"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
            &["spec.selector"],
        ),
        ("/api/v1/namespaces", json!({"metadata": {"name": "a.b"}}), &["metadata.name"]),
        ("/api/v1/namespaces/default/configmaps", json!({"metadata": {}}), &["metadata.name"]),
    ];
    for (uri, body, fields) in cases {
        let (code, v) = call(&c, "POST", uri, Some(body.clone()), "application/json").await;
        assert_eq!((code, v["reason"].as_str()), (422, Some("Invalid")), "{uri}: {v}");
        let got: Vec<&str> =
            v["details"]["causes"].as_array().into_iter().flatten().filter_map(|c| c["field"].as_str()).collect();
        assert_eq!(got, *fields, "{uri}: {v}");
    }
    // kubectl shows the message: it must name the rule as kube-apiserver does
    let empty = json!({"metadata": {"name": "s"}, "spec": {"selector": {}, "template": {"metadata": {"labels": {"a": "c"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
    let (_, v) =
        call(&c, "POST", "/apis/apps/v1/namespaces/default/statefulsets", Some(empty), "application/json").await;
    let message = v["message"].as_str().unwrap_or_default();
    assert!(message.contains("spec.selector: Invalid value: {}: empty selector is invalid for statefulset"), "{v}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_not_ready_addresses_marks_unready_pods_ready() {
    let sim = start().await;
    let c = client(&sim).await;
    for (name, publish) in [("pub", true), ("plain", false)] {
        let svc = json!({"metadata": {"name": name}, "spec": {"clusterIP": "None", "publishNotReadyAddresses": publish,
                         "selector": {"app": "slow"}, "ports": [{"port": 80}]}});
        assert_eq!(call(&c, "POST", "/api/v1/namespaces/default/services", Some(svc), "application/json").await.0, 201);
    }
    let pod = json!({"metadata": {"name": "slow-0", "labels": {"app": "slow"}, "annotations": {"sim.roster.dev/ready": "false"}},
                     "spec": {"containers": [{"name": "c", "image": "x"}]}});
    assert_eq!(call(&c, "POST", "/api/v1/namespaces/default/pods", Some(pod), "application/json").await.0, 201);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cond = |svc: &'static str| {
            let c = c.clone();
            async move {
                let (_, list) = get(&c, &format!("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{svc}")).await;
                list["items"][0]["endpoints"][0]["conditions"].clone()
            }
        };
        let (p, q) = (cond("pub").await, cond("plain").await);
        if p["ready"] == true && q["ready"] == false && p["serving"] == false && q["serving"] == false {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "pub: {p}, plain: {q}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.shutdown().await;
}

/// Slices follow each change without waiting for the controller's periodic full pass (5 s): a pod whose
/// labels stop matching leaves the slice, a service recreated under the same name gets exactly one slice
/// owned by the new object, and a deleted service takes its Endpoints along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slices_follow_each_change_promptly() {
    let sim = start().await;
    let c = client(&sim).await;
    let soon = Duration::from_secs(2);
    let until = |what: &'static str, check: fn(&[Value], &Value) -> bool, arg: Value| {
        let c = c.clone();
        async move {
            let uri = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dfollow";
            let deadline = tokio::time::Instant::now() + soon;
            loop {
                let slices = get(&c, uri).await.1["items"].as_array().cloned().unwrap_or_default();
                if check(&slices, &arg) {
                    return;
                }
                assert!(tokio::time::Instant::now() < deadline, "{what}: {slices:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let svc = json!({"metadata": {"name": "follow"}, "spec": {"selector": {"app": "f"}, "ports": [{"port": 80}]}});
    let (code, first) =
        call(&c, "POST", "/api/v1/namespaces/default/services", Some(svc.clone()), "application/json").await;
    assert_eq!(code, 201, "{first}");
    let pod = json!({"metadata": {"name": "f-0", "labels": {"app": "f"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
    assert_eq!(call(&c, "POST", "/api/v1/namespaces/default/pods", Some(pod), "application/json").await.0, 201);
    // the pod gets its IP from the kubelet stand-in after its start delay
    tokio::time::sleep(Duration::from_millis(300)).await;
    until(
        "the pod joins the slice",
        |s, _| s.len() == 1 && s[0]["endpoints"][0]["targetRef"]["name"] == "f-0",
        Value::Null,
    )
    .await;

    let relabel = json!({"metadata": {"labels": {"app": "other"}}});
    let (code, v) =
        call(&c, "PATCH", "/api/v1/namespaces/default/pods/f-0", Some(relabel), "application/merge-patch+json").await;
    assert_eq!(code, 200, "{v}");
    until(
        "the relabelled pod leaves the slice",
        |s, _| s.len() == 1 && s[0]["endpoints"].as_array().is_some_and(Vec::is_empty),
        Value::Null,
    )
    .await;

    assert_eq!(call(&c, "DELETE", "/api/v1/namespaces/default/services/follow", None, "application/json").await.0, 200);
    let (code, second) = call(&c, "POST", "/api/v1/namespaces/default/services", Some(svc), "application/json").await;
    assert_eq!(code, 201, "{second}");
    let new_uid = second["metadata"]["uid"].clone();
    assert_ne!(first["metadata"]["uid"], new_uid);
    let owned_by = |s: &[Value], uid: &Value| s.len() == 1 && s[0]["metadata"]["ownerReferences"][0]["uid"] == *uid;
    until("one slice, owned by the new service", owned_by, new_uid).await;
    assert_eq!(get(&c, "/api/v1/namespaces/default/endpoints/follow").await.0, 200);

    assert_eq!(call(&c, "DELETE", "/api/v1/namespaces/default/services/follow", None, "application/json").await.0, 200);
    until("no slice after the service is deleted", |s, _| s.is_empty(), Value::Null).await;
    let deadline = tokio::time::Instant::now() + soon;
    while get(&c, "/api/v1/namespaces/default/endpoints/follow").await.0 != 404 {
        assert!(tokio::time::Instant::now() < deadline, "the Endpoints outlive their service");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.shutdown().await;
}

/// ClusterIPs are unique: allocated ones differ, a requested one in use is refused, and a deleted
/// service's address can be requested again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_are_allocated_once() {
    let sim = start().await;
    let c = client(&sim).await;
    let post = |name: &'static str, ip: Option<String>| {
        let c = c.clone();
        async move {
            let mut spec = json!({"ports": [{"port": 80}]});
            if let Some(ip) = ip {
                spec["clusterIP"] = json!(ip);
            }
            let body = json!({"metadata": {"name": name}, "spec": spec});
            call(&c, "POST", "/api/v1/namespaces/default/services", Some(body), "application/json").await
        }
    };
    let (_, a) = post("ip-a", None).await;
    let (_, b) = post("ip-b", None).await;
    let ip_a = a["spec"]["clusterIP"].as_str().expect("allocated").to_owned();
    assert_ne!(Some(ip_a.as_str()), b["spec"]["clusterIP"].as_str());
    let (code, v) = post("ip-c", Some(ip_a.clone())).await;
    assert_eq!(code, 422, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("already allocated")), "{v}");
    assert_eq!(call(&c, "DELETE", "/api/v1/namespaces/default/services/ip-a", None, "application/json").await.0, 200);
    let (code, v) = post("ip-c", Some(ip_a.clone())).await;
    assert_eq!((code, v["spec"]["clusterIP"].as_str()), (201, Some(ip_a.as_str())), "{v}");
    sim.shutdown().await;
}
