//! The controller's watches against the stand-in's faults: cut connections, an API outage, and `410 Gone`
//! after the watch history is compacted. Nothing may be lost: the published record set must equal a
//! fresh synthesis from a full list.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use roster_controller::{Hub, slim};
use roster_shared::{ClusterState, DomainName, SynthConfig, ZoneData, synthesize};

async fn fresh_synthesis(client: &Client, config: &SynthConfig) -> ZoneData {
    let lp = ListParams::default();
    let mut state = ClusterState::default();
    for o in Api::<Namespace>::all(client.clone()).list(&lp).await.unwrap() {
        state.insert_namespace(slim::namespace_view(&o).unwrap());
    }
    for o in Api::<Service>::all(client.clone()).list(&lp).await.unwrap() {
        state.insert_service(slim::service_view(&o).unwrap());
    }
    for o in Api::<EndpointSlice>::all(client.clone()).list(&lp).await.unwrap() {
        if let Some(view) = slim::endpoint_slice_view(&o).unwrap() {
            state.insert_endpoint_slice(view);
        }
    }
    for o in Api::<Pod>::all(client.clone()).list(&lp).await.unwrap() {
        state.insert_pod(slim::pod_view(&o).unwrap());
    }
    synthesize(&state, config)
}

fn service(name: &str, headless: bool) -> Service {
    let cluster_ip = if headless { "clusterIP: None" } else { "" };
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  {cluster_ip}\n  selector: {{app: {name}}}\n  ports: [{{name: web, port: 80}}]\n"
    );
    serde_json::from_value(serde_saphyr::from_str::<serde_json::Value>(&yaml).unwrap()).unwrap()
}

fn pod(name: &str, app: &str) -> Pod {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\nspec:\n  hostname: {name}\n  subdomain: {app}\n  containers: [{{name: c, image: nginx}}]\n"
    );
    serde_json::from_value(serde_saphyr::from_str::<serde_json::Value>(&yaml).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_change_is_lost_across_cut_watches_outages_and_410() {
    let sim = roster_sim::start(roster_sim::SimConfig {
        ready_delay: Duration::from_millis(20),
        start_delay: Duration::from_millis(10),
        ..roster_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(sim.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let client = Client::try_from(config).unwrap();
    let synth = SynthConfig::new(DomainName::parse("cluster.local").unwrap());

    let hub = Hub::default();
    let (synced_tx, mut synced) = tokio::sync::watch::channel(false);
    let source =
        tokio::spawn(roster_controller::kube_source::run(client.clone(), synth.clone(), hub.clone(), synced_tx));
    tokio::time::timeout(Duration::from_secs(20), synced.wait_for(|s| *s)).await.unwrap().unwrap();

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let store = sim.store().clone();
    for round in 0..6 {
        let app = format!("app-{round}");
        services.create(&pp, &service(&app, round % 2 == 0)).await.unwrap();
        pods.create(&pp, &pod(&format!("{app}-a"), &app)).await.unwrap();
        match round % 3 {
            // A dropped connection: the watch resumes from its resourceVersion.
            0 => store.disconnect_watchers(),
            // An outage with changes during it, and the history compacted: the resume gets 410 and the
            // controller must re-list, noticing deletions it never saw as events.
            1 => {
                store.refuse_watches(true);
                pods.create(&pp, &pod(&format!("{app}-b"), &app)).await.unwrap();
                if round > 1 {
                    let old = format!("app-{}", round - 2);
                    services.delete(&old, &DeleteParams::default()).await.unwrap();
                    pods.delete(
                        &format!("{old}-a"),
                        &DeleteParams { grace_period_seconds: Some(0), ..Default::default() },
                    )
                    .await
                    .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                store.compact_history();
                store.refuse_watches(false);
            }
            // Compaction alone: the next resume is answered 410.
            _ => {
                store.compact_history();
                store.disconnect_watchers();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Let the kubelet stand-in and EndpointSlice controller settle, then compare.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let expected = fresh_synthesis(&client, &synth).await;
        let published = hub.current().unwrap();
        if *published == expected
            && expected.names.keys().any(|n| n.as_str() == "app-5-a.app-5.default.svc.cluster.local")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "published records never matched a fresh synthesis:\n{:#?}",
            expected.diff(&published)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(store.gone_served() > 0, "the test must have produced at least one 410 Gone");
    source.abort();
    sim.shutdown().await;
}
