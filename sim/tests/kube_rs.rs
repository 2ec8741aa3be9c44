//! kube-rs against the stand-in: watchers and reflectors survive dropped connections and `410 Gone`,
//! stale writes get 409, and the control loops (GC, finalizers, graceful deletion, PVC binding) behave.

mod common;

use std::time::Duration;

use common::{eventually, start};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Config};
use serde_json::json;

async fn client(sim: &roster_sim::SimHandle) -> Client {
    let kc = Kubeconfig::read_from(sim.kubeconfig_path()).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig loads");
    Client::try_from(config).expect("client builds")
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": name}})).expect("configmap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_survives_dropped_connections_and_410_gone() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&sim).await, "default");
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("a{i}"))).await.expect("create");
    }
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream =
        reflector(writer, watcher(api.clone(), watcher::Config::default())).default_backoff().applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    let count = |n: usize| {
        let reader = reader.clone();
        move || (reader.state().len() == n).then_some(())
    };
    eventually("5 objects listed", Duration::from_secs(20), count(5)).await;

    // a dropped connection: the watcher resumes from its last resourceVersion
    sim.store().disconnect_watchers();
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("b{i}"))).await.expect("create");
    }
    eventually("8 objects after a dropped connection", Duration::from_secs(20), count(8)).await;

    // an outage during which the history is compacted: resuming gets 410 Gone, the watcher re-lists
    sim.store().refuse_watches(true);
    for i in 0..2 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"))).await.expect("create");
    }
    api.delete("a0", &DeleteParams::default()).await.expect("delete");
    sim.store().compact_history();
    sim.store().refuse_watches(false);
    eventually("9 objects after 410 Gone and a re-list", Duration::from_secs(30), count(9)).await;
    let mut names: Vec<String> = reader.state().iter().map(|c| c.metadata.name.clone().unwrap_or_default()).collect();
    names.sort();
    assert_eq!(names, ["a1", "a2", "a3", "a4", "b0", "b1", "b2", "c0", "c1"]);
    assert!(sim.store().gone_served() >= 1, "the resumed watch was answered 410 Gone");
    task.abort();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_version_is_410_gone_and_bookmarks_flow() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&sim).await, "default");
    let first = api.create(&PostParams::default(), &cm("x")).await.expect("create");
    let old_rv = first.metadata.resource_version.clone().unwrap_or_default();
    api.create(&PostParams::default(), &cm("y")).await.expect("create");
    sim.store().compact_history();
    let mut stream = api.watch(&WatchParams::default().timeout(5), &old_rv).await.expect("watch starts").boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410, "{e:?}"),
        Some(Err(kube::Error::Api(e))) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    // a watch from the current version gets bookmarks
    let list = api.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.unwrap_or_default();
    let mut stream = api
        .watch(&WatchParams { bookmarks: true, ..WatchParams::default() }.timeout(5), &rv)
        .await
        .expect("watch starts")
        .boxed();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = stream.next().await {
            if let Ok(WatchEvent::Bookmark(_)) = ev {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(got, "a bookmark within 5 s");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_update_gets_409_conflict() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&sim).await, "default");
    let created = api.create(&PostParams::default(), &cm("c")).await.expect("create");
    let mut first = created.clone();
    first.data = Some([("k".to_owned(), "1".to_owned())].into());
    api.replace("c", &PostParams::default(), &first).await.expect("first update");
    let mut stale = created;
    stale.data = Some([("k".to_owned(), "2".to_owned())].into());
    match api.replace("c", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409);
            assert_eq!(e.reason, "Conflict");
            assert!(e.message.contains("the object has been modified"), "{}", e.message);
        }
        other => panic!("expected 409, got {other:?}"),
    }
    let dup = api.create(&PostParams::default(), &cm("c")).await;
    assert!(matches!(dup, Err(kube::Error::Api(ref e)) if e.code == 409 && e.reason == "AlreadyExists"), "{dup:?}");
    let missing = api.get("nope").await;
    assert!(matches!(missing, Err(kube::Error::Api(ref e)) if e.code == 404 && e.reason == "NotFound"), "{missing:?}");
    let invalid = api.create(&PostParams::default(), &cm("UPPER")).await;
    assert!(matches!(invalid, Err(kube::Error::Api(ref e)) if e.code == 422 && e.reason == "Invalid"), "{invalid:?}");
    sim.shutdown().await;
}

fn owned_cm(name: &str, owner: &ConfigMap) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid,
        "blockOwnerDeletion": true,
    }]}}))
    .expect("configmap")
}

async fn exists(api: &Api<ConfigMap>, name: &str) -> bool {
    api.get_opt(name).await.expect("get").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_background_foreground_orphan() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&sim).await, "default");
    for (policy, owner) in [
        (PropagationPolicy::Background, "bg"),
        (PropagationPolicy::Foreground, "fg"),
        (PropagationPolicy::Orphan, "or"),
    ] {
        let o = api.create(&PostParams::default(), &cm(owner)).await.expect("owner");
        let dep = format!("{owner}-dep");
        api.create(&PostParams::default(), &owned_cm(&dep, &o)).await.expect("dependent");
        let dp = DeleteParams { propagation_policy: Some(policy.clone()), ..DeleteParams::default() };
        api.delete(owner, &dp).await.expect("delete owner");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let owner_gone = !exists(&api, owner).await;
            let dep_obj = api.get_opt(&dep).await.expect("get");
            let done = match policy {
                PropagationPolicy::Orphan => {
                    owner_gone
                        && dep_obj
                            .as_ref()
                            .is_some_and(|d| d.metadata.owner_references.as_ref().is_none_or(Vec::is_empty))
                }
                _ => owner_gone && dep_obj.is_none(),
            };
            if done {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{policy:?} did not finish");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // a dependent created after its owner is gone (the uid names no object) is collected too
    let mut ghost = cm("ghost");
    ghost.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    api.create(&PostParams::default(), &owned_cm("ghost-dep", &ghost)).await.expect("dependent");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while exists(&api, "ghost-dep").await {
        assert!(tokio::time::Instant::now() < deadline, "a dependent without an owner was kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_deletion_and_pods_terminate_gracefully() {
    let sim = start().await;
    let client = client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut held = cm("held");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &held).await.expect("create");
    api.delete("held", &DeleteParams::default()).await.expect("delete");
    let marked = api.get("held").await.expect("still there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    api.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("release");
    assert!(!exists(&api, "held").await, "gone once its finalizers are");

    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
    )
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
    let p = pods.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cur = p.get("p").await.expect("pod");
        if cur.status.and_then(|s| s.phase).as_deref() == Some("Running") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "pod never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pods.delete("p", &DeleteParams { grace_period_seconds: Some(30), ..DeleteParams::default() })
        .await
        .expect("delete pod");
    let terminating = pods.get("p").await.expect("pod terminating");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while pods.get_opt("p").await.expect("get").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "pod never went away");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvc_binds_through_the_default_storage_class_and_namespaces_delete() {
    let sim = start().await;
    let client = client(&sim).await;
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    ns_api
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "vol"}})).expect("ns"))
        .await
        .expect("namespace");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "vol");
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data-db-0"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .expect("pvc");
    pvcs.create(&PostParams::default(), &claim).await.expect("create pvc");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let bound = loop {
        let c = pvcs.get("data-db-0").await.expect("pvc");
        if c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
            break c;
        }
        assert!(tokio::time::Instant::now() < deadline, "claim never bound");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let spec = bound.spec.expect("spec");
    assert_eq!(spec.storage_class_name.as_deref(), Some("standard"));
    assert!(spec.volume_name.is_some_and(|v| v.starts_with("pvc-")));
    let table = common::kubectl_ok(&sim, &["get", "pvc", "-n", "vol"]).await;
    let row = table.lines().find(|l| l.starts_with("data-db-0")).unwrap_or_default();
    assert!(row.contains("Bound") && row.contains("RWO") && row.contains("standard") && row.contains("1Gi"), "{table}");
    let pv_table = common::kubectl_ok(&sim, &["get", "pv"]).await;
    assert!(pv_table.contains("vol/data-db-0") && pv_table.contains("Delete"), "{pv_table}");
    ns_api.delete("vol", &DeleteParams::default()).await.expect("delete ns");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ns_api.get_opt("vol").await.expect("get").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "namespace never went away");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pvcs.list(&ListParams::default()).await.expect("list").items.is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_events_show_in_kubectl_and_metadata_watchers_work() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let sim = start().await;
    let client = client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = api.create(&PostParams::default(), &cm("observed")).await.expect("create");
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "roster-test".into(), instance: Some("a".into()) });
    let reference = kube::Resource::object_ref(&created, &());
    let event = Event {
        type_: EventType::Normal,
        reason: "Reconciled".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.expect("first publish creates");
    recorder.publish(&event, &reference).await.expect("second publish patches the series");
    // events.k8s.io/v1 and core/v1 are one store, as in the real server
    let core = common::kubectl_ok(&sim, &["get", "events.v1.", "-o", "json"]).await;
    let core: serde_json::Value = serde_json::from_str(&core).expect("json");
    let ev =
        core["items"].as_array().and_then(|a| a.iter().find(|e| e["reason"] == "Reconciled")).cloned().expect("event");
    assert_eq!(ev["message"], "all good");
    assert_eq!(ev["involvedObject"]["name"], "observed");
    assert_eq!(ev["reportingComponent"], "roster-test");
    assert_eq!(ev["series"]["count"], 2);
    let described = common::kubectl_ok(&sim, &["describe", "configmap", "observed"]).await;
    assert!(described.contains("Reconciled") && described.contains("all good"), "{described}");

    let metas: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), "default");
    let stream = watcher(metas, watcher::Config::default()).applied_objects().boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.into_future()).await.expect("an event").0;
    let meta = first.expect("stream item").expect("no error");
    assert!(meta.metadata.name.is_some());
    sim.shutdown().await;
}
