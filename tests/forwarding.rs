//! Forwarding of names outside the cluster zones: cache, upstream faults, TCP fallback, fallthrough of
//! reverse names, ExternalName chasing, the concurrency bound, loop detection, and the metrics.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use support::upstream::{self, Behaviour};
use support::{DnsClient, FIXTURE, Options, Transport, sorted};

fn options(upstreams: &[&upstream::FakeUpstream]) -> Options {
    Options { upstreams: upstreams.iter().map(|u| u.addr).collect(), ..Options::default() }
}

#[tokio::test]
async fn forwarded_answers_are_cached_with_decreasing_ttls() {
    let good = upstream::start(Behaviour::Good).await;
    let server = support::start(Some(Path::new(FIXTURE)), options(&[&good])).await;
    let mut client = DnsClient::connect(server.addr, Transport::Udp).await;
    let first = client.query("www.example.com.", RecordType::A).await;
    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    assert!(!first.metadata.authoritative, "forwarded answers are not authoritative");
    assert!(first.metadata.recursion_available);
    assert_eq!(sorted(&first.answers), ["www.example.com. 300 IN A 192.0.2.16"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = client.query("WWW.example.com.", RecordType::A).await;
    assert_eq!(second.answers.len(), 1);
    assert!(second.answers[0].ttl < 300, "TTL counts down in the cache");
    assert_eq!(good.queries.load(Ordering::SeqCst), 1, "the second answer came from the cache");

    // Negative answers are cached too (RFC 2308), with the SOA.
    for _ in 0..2 {
        let nx = client.query("nope.nowhere.test.", RecordType::A).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(nx.authorities.len(), 1);
    }
    assert_eq!(good.queries.load(Ordering::SeqCst), 2);
    // Our own zone is never cached: it answers from the store, without the upstream.
    let ours = client.query("web-0.nginx.demo.svc.cluster.local.", RecordType::A).await;
    assert!(ours.metadata.authoritative);
    assert_eq!(good.queries.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_silent_or_failing_upstream_is_passed_over() {
    let silent = upstream::start(Behaviour::Silent).await;
    let failing = upstream::start(Behaviour::ServFail).await;
    let good = upstream::start(Behaviour::Good).await;
    let server = support::start(None, options(&[&silent, &failing, &good])).await;
    let mut client = DnsClient::connect(server.addr, Transport::Tcp).await;
    for i in 0..6 {
        let started = Instant::now();
        let name = format!("host{i}.example.com.");
        let answer = client.query(&name, RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(answer.answers.len(), 1, "{name}");
        assert!(started.elapsed() < Duration::from_secs(2), "{name} took {:?}", started.elapsed());
    }
    // After its failures the silent upstream is marked down and skipped: later queries are fast.
    let started = Instant::now();
    client.query("fast.example.com.", RecordType::A).await;
    assert!(started.elapsed() < Duration::from_millis(300), "{:?}", started.elapsed());
}

#[tokio::test]
async fn only_failing_upstreams_give_a_prompt_servfail() {
    let failing = upstream::start(Behaviour::ServFail).await;
    let silent = upstream::start(Behaviour::Silent).await;
    let server = support::start(None, options(&[&failing, &silent])).await;
    let mut client = DnsClient::connect(server.addr, Transport::Udp).await;
    let started = Instant::now();
    let answer = client.query("www.example.com.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn truncated_upstream_answers_are_fetched_over_tcp() {
    let truncating = upstream::start(Behaviour::Truncating).await;
    let server = support::start(None, options(&[&truncating])).await;
    let mut client = DnsClient::connect(server.addr, Transport::Tcp).await;
    let answer = client.query("big.example.com.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer.answers.len(), 40, "the whole answer, fetched over TCP");
}

#[tokio::test]
async fn reverse_names_fall_through_and_external_names_are_chased() {
    let good = upstream::start(Behaviour::Good).await;
    let server = support::start(Some(Path::new(FIXTURE)), options(&[&good])).await;
    let mut client = DnsClient::connect(server.addr, Transport::Udp).await;
    // A reverse name we hold nothing for goes to the upstream (which says NXDOMAIN, not authoritative).
    let reverse = client.query("9.9.9.9.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(reverse.metadata.response_code, ResponseCode::NXDomain);
    assert!(!reverse.metadata.authoritative);
    assert_eq!(good.queries.load(Ordering::SeqCst), 1);
    // One we hold is answered here.
    let ours = client.query("10.1.244.10.in-addr.arpa.", RecordType::PTR).await;
    assert!(ours.metadata.authoritative);
    // ExternalName → www.example.com: the CNAME, then the upstream's address.
    let chased = client.query("ext.demo.svc.cluster.local.", RecordType::A).await;
    assert_eq!(
        sorted(&chased.answers),
        ["ext.demo.svc.cluster.local. 30 IN CNAME www.example.com.", "www.example.com. 300 IN A 192.0.2.16"]
    );
}

#[tokio::test]
async fn the_concurrency_bound_refuses_the_excess() {
    let silent = upstream::start(Behaviour::Silent).await;
    let options = Options { max_concurrent: 1, forward_timeout: Duration::from_millis(800), ..options(&[&silent]) };
    let server = support::start(None, options).await;
    let addr = server.addr;
    // TCP: the hickory UDP client retransmits, and a retransmission would itself be refused.
    let slow = tokio::spawn(async move {
        let mut client = DnsClient::connect(addr, Transport::Tcp).await;
        client.query("slow.example.com.", RecordType::A).await
    });
    // Wait until the slow query holds the only permit (it has reached the upstream).
    let holding = format!("coredns_forward_requests_total{{to=\"{}\"}} 1", silent.addr);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !server.metrics.render().contains(&holding) {
        assert!(Instant::now() < deadline, "the slow query never reached the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut client = DnsClient::connect(addr, Transport::Udp).await;
    let refused = client.query("other.example.com.", RecordType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert_eq!(slow.await.unwrap().metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn a_forwarding_loop_is_detected() {
    let target = Arc::new(parking_lot::Mutex::new(None));
    let relay = upstream::relay(target.clone()).await;
    let server = support::start(None, options(&[&relay])).await;
    *target.lock() = Some(server.addr);
    let forwarder = server.forwarder.clone().unwrap();
    let mut detected = forwarder.loop_detected();
    forwarder.probe_for_loops().await;
    let message = tokio::time::timeout(Duration::from_secs(10), detected.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert!(message.unwrap().contains("forwarding loop detected"));
}

#[tokio::test]
async fn metrics_count_a_known_query_mix() {
    let good = upstream::start(Behaviour::Good).await;
    let server = support::start(Some(Path::new(FIXTURE)), options(&[&good])).await;
    let mut udp = DnsClient::connect(server.addr, Transport::Udp).await;
    let mut tcp = DnsClient::connect(server.addr, Transport::Tcp).await;
    for _ in 0..3 {
        udp.query("web-0.nginx.demo.svc.cluster.local.", RecordType::A).await;
    }
    udp.query("web-9.nginx.demo.svc.cluster.local.", RecordType::A).await;
    tcp.query("_web._tcp.nginx.demo.svc.cluster.local.", RecordType::SRV).await;
    udp.query("www.example.com.", RecordType::A).await;
    udp.query("www.example.com.", RecordType::A).await;
    let text = server.metrics.render();
    let value = |needle: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no line starting with {needle} in:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let server_label = "server=\"dns://127.0.0.1:0\"";
    assert_eq!(
        value(&format!(
            "coredns_dns_requests_total{{{server_label},zone=\"cluster.local.\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"}}"
        )),
        4.0
    );
    assert_eq!(
        value(&format!(
            "coredns_dns_requests_total{{{server_label},zone=\"cluster.local.\",view=\"\",proto=\"tcp\",family=\"1\",type=\"SRV\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!(
            "coredns_dns_requests_total{{{server_label},zone=\".\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"}}"
        )),
        2.0
    );
    assert_eq!(
        value(&format!(
            "coredns_dns_responses_total{{{server_label},zone=\"cluster.local.\",view=\"\",rcode=\"NOERROR\",plugin=\"kubernetes\"}}"
        )),
        4.0
    );
    assert_eq!(
        value(&format!(
            "coredns_dns_responses_total{{{server_label},zone=\"cluster.local.\",view=\"\",rcode=\"NXDOMAIN\",plugin=\"kubernetes\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!(
            "coredns_dns_responses_total{{{server_label},zone=\".\",view=\"\",rcode=\"NOERROR\",plugin=\"forward\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!(
            "coredns_dns_responses_total{{{server_label},zone=\".\",view=\"\",rcode=\"NOERROR\",plugin=\"cache\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!("coredns_cache_hits_total{{{server_label},type=\"success\",zones=\".\",view=\"\"}}")),
        1.0
    );
    assert_eq!(value(&format!("coredns_cache_misses_total{{{server_label},zones=\".\",view=\"\"}}")), 1.0);
    assert_eq!(value(&format!("coredns_cache_entries{{{server_label},type=\"success\",zones=\".\",view=\"\"}}")), 1.0);
    assert_eq!(value(&format!("coredns_forward_requests_total{{to=\"{}\"}}", good.addr)), 1.0);
    assert_eq!(value(&format!("coredns_forward_responses_total{{to=\"{}\",rcode=\"NOERROR\"}}", good.addr)), 1.0);
    assert_eq!(
        value(&format!(
            "coredns_dns_request_duration_seconds_count{{{server_label},zone=\"cluster.local.\",view=\"\",type=\"A\"}}"
        )),
        4.0
    );
    assert_eq!(
        value(&format!(
            "coredns_dns_request_size_bytes_count{{{server_label},zone=\"cluster.local.\",view=\"\",proto=\"udp\"}}"
        )),
        4.0
    );
    assert_eq!(
        value(&format!("coredns_dns_response_size_bytes_count{{{server_label},zone=\".\",view=\"\",proto=\"udp\"}}")),
        2.0
    );
    assert!(text.contains("coredns_build_info{version=\""), "{text}");
    assert!(text.contains("# TYPE coredns_kubernetes_dns_programming_duration_seconds histogram"), "{text}");
}
