//! Forwarding of names outside the cluster zones: cache (bounded in bytes, also in a `roster dns`
//! process's RSS), coalesced misses, answers checked against the query, upstream faults, TCP fallback,
//! fallthrough of reverse names, ExternalName chasing, the concurrency bound, loop detection (and its
//! probe's look-alikes), the per-client TCP connection limit, and the metrics.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use roster_dns::forward::{Forwarder, ForwarderConfig};
use roster_dns::metrics::Metrics;
use roster_dns::{DnsServer, FrontHandler, ZoneStore};
use support::process::{Proc, free_port};
use support::upstream::{self, Behaviour};
use support::{DnsClient, FIXTURE, Options, Transport, sorted};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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

/// dig's question, answer and authority lines for `name` `rtype` (plus `extra` flags), and whether the
/// response carried an OPT record. dig blocks: it runs off the runtime, which the forwarder needs.
async fn dig_sections(port: u16, name: &str, rtype: &str, extra: &[&str]) -> (Vec<String>, bool) {
    let mut args = vec![name.to_owned(), rtype.to_owned(), "+noall".into(), "+question".into()];
    args.extend(["+answer", "+authority", "+comments"].map(str::to_owned));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let text = tokio::task::spawn_blocking(move || {
        support::process::dig(port, &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let edns = text.contains("OPT PSEUDOSECTION");
    let records = text
        .lines()
        // Records, and the question (`;name`); not dig's comments (`;;`) or the OPT's lines (`; EDNS`).
        .filter(|l| !l.is_empty() && !l.starts_with(";;") && !l.starts_with("; "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (records, edns)
}

fn ttl_of(line: &str) -> u32 {
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Cache hits as a real client sees them (dig over UDP, answered inline by the UDP workers from the
/// shared wire form): the question's case in the question and the answer's owner, the TTL counted
/// down, an NXDOMAIN's SOA at most the negative TTL (the SOA minimum, 60 s here, not its 900 s TTL) and
/// counting down, EDNS answered with EDNS, and the DO bit keyed apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_keep_the_question_case_and_age_every_ttl() {
    let good = upstream::start(Behaviour::Good).await;
    let server = support::start(Some(Path::new(FIXTURE)), options(&[&good])).await;
    let port = server.addr.port();
    let (miss, _) = dig_sections(port, "wWw.ExAmPlE.CoM.", "A", &[]).await;
    assert_eq!(miss, [";wWw.ExAmPlE.CoM. IN A", "wWw.ExAmPlE.CoM. 300 IN A 192.0.2.16"]);
    let (nx_miss, _) = dig_sections(port, "Nope.Nowhere.TEST.", "A", &[]).await;
    assert_eq!(nx_miss.len(), 2, "{nx_miss:?}");
    assert_eq!(good.queries.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (hit, edns) = dig_sections(port, "WwW.eXaMpLe.cOm.", "A", &[]).await;
    assert!(edns, "EDNS in, EDNS out");
    assert_eq!(hit[0], ";WwW.eXaMpLe.cOm. IN A");
    assert!(hit[1].starts_with("WwW.eXaMpLe.cOm. ") && hit[1].ends_with(" IN A 192.0.2.16"), "{hit:?}");
    assert!((290..300).contains(&ttl_of(&hit[1])), "counted down: {hit:?}");
    let (nx_hit, _) = dig_sections(port, "nOPE.nowhere.test.", "A", &[]).await;
    assert_eq!(nx_hit[0], ";nOPE.nowhere.test. IN A");
    assert!(nx_hit[1].starts_with(". ") && nx_hit[1].contains(" IN SOA ns.example.com. h.example.com. "), "{nx_hit:?}");
    assert!(ttl_of(&nx_hit[1]) < 60, "the negative TTL, counted down: {nx_hit:?}");
    let (no_edns, edns) = dig_sections(port, "www.example.com.", "A", &["+noedns"]).await;
    assert!(!edns && no_edns.len() == 2, "{no_edns:?}");
    assert_eq!(good.queries.load(Ordering::SeqCst), 2, "every answer since came from the cache");

    // DO set is another key: one more upstream query, then a hit.
    for _ in 0..2 {
        let (secure, _) = dig_sections(port, "www.example.com.", "A", &["+dnssec"]).await;
        assert_eq!(secure.len(), 2, "{secure:?}");
    }
    assert_eq!(good.queries.load(Ordering::SeqCst), 3);
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

/// An upstream that ignores the payload size roster advertised and sends more than roster's receive
/// buffer over UDP: roster does not keep a cut datagram but asks again over TCP.
#[tokio::test]
async fn oversized_udp_answers_are_fetched_over_tcp() {
    let oversize = upstream::start(Behaviour::Oversize).await;
    let server = support::start(None, options(&[&oversize])).await;
    let mut client = DnsClient::connect(server.addr, Transport::Tcp).await;
    let answer = client.query("big.example.com.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer.answers.len(), 40, "the TCP answer, not the oversized UDP one");
    assert_eq!(oversize.queries.load(Ordering::SeqCst), 2, "UDP, then TCP");
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
    // ExternalName → a name of our zone without AAAA: the chain ends here, NODATA with our SOA; the
    // upstream is never asked about a name we are authoritative for.
    let asked = good.queries.load(Ordering::SeqCst);
    let in_zone = client.query("alias-v4.demo.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(in_zone.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        sorted(&in_zone.answers),
        ["alias-v4.demo.svc.cluster.local. 30 IN CNAME kubernetes.default.svc.cluster.local."]
    );
    assert_eq!(in_zone.authorities.len(), 1, "{:?}", in_zone.authorities);
    assert_eq!(in_zone.authorities[0].name.to_string(), "cluster.local.");
    assert_eq!(good.queries.load(Ordering::SeqCst), asked, "an in-zone target went upstream");
    // The name server our NS and SOA records name: the kube-dns Service's address (without that
    // Service it still exists, as NODATA: tests/real_coredns.rs).
    let ns = client.query("ns.dns.cluster.local.", RecordType::A).await;
    assert_eq!(ns.metadata.response_code, ResponseCode::NoError);
    assert_eq!(sorted(&ns.answers), ["ns.dns.cluster.local. 30 IN A 10.96.0.10"]);
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
    // A UDP worker records a response just after sending it: wait for the last one (the cache hit).
    let last = "zone=\".\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"} 2";
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = server.metrics.render();
    while !text.contains(last) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        text = server.metrics.render();
    }
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

/// The value of the first metric line starting with `needle`.
fn metric(text: &str, needle: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(needle))
        .unwrap_or_else(|| panic!("no line starting with {needle} in:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn identical_concurrent_misses_go_upstream_once() {
    let delayed = upstream::start(Behaviour::Delayed).await;
    let options = Options { forward_timeout: Duration::from_secs(3), ..options(&[&delayed]) };
    let server = support::start(None, options).await;
    let addr = server.addr;
    let mut clients = Vec::new();
    for i in 0..20 {
        // Half over TCP, half over UDP; the name's case varies (one cache key).
        let transport = if i % 2 == 0 { Transport::Udp } else { Transport::Tcp };
        let name = if i % 3 == 0 { "SAME.example.com." } else { "same.example.com." };
        clients.push(tokio::spawn(async move {
            let mut client = DnsClient::connect(addr, transport).await;
            client.query(name, RecordType::A).await
        }));
    }
    for client in clients {
        let answer = client.await.unwrap();
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert_eq!(answer.answers.len(), 1);
    }
    assert_eq!(delayed.queries.load(Ordering::SeqCst), 1, "20 concurrent identical misses, one upstream query");

    // Different questions are not merged: two names, two upstream queries.
    let (a, b) = tokio::join!(
        async { DnsClient::connect(addr, Transport::Udp).await.query("one.example.com.", RecordType::A).await },
        async { DnsClient::connect(addr, Transport::Udp).await.query("two.example.com.", RecordType::A).await },
    );
    assert_eq!((a.answers.len(), b.answers.len()), (1, 1));
    assert_eq!(delayed.queries.load(Ordering::SeqCst), 3);
}

/// Datagrams that are not the answer (another ID, QR clear, another opcode, question name, type or
/// class, two questions, garbage) arrive first and claim 192.0.2.66: all are dropped and counted, and
/// the real answer, after them, is the one given.
#[tokio::test]
async fn udp_datagrams_that_do_not_answer_the_query_are_dropped() {
    let spoofing = upstream::start(Behaviour::Spoofing).await;
    let server = support::start(None, options(&[&spoofing])).await;
    let mut client = DnsClient::connect(server.addr, Transport::Udp).await;
    let answer = client.query("www.example.com.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(sorted(&answer.answers), ["www.example.com. 300 IN A 192.0.2.16"]);
    let text = server.metrics.render();
    let needle = format!("roster_forward_rejected_answers_total{{to=\"{}\",proto=\"udp\"}}", spoofing.addr);
    assert_eq!(metric(&text, &needle), 8.0);
}

#[tokio::test]
async fn a_tcp_answer_to_another_question_is_dropped() {
    let wrong = upstream::start(Behaviour::TruncatingWrongQuestion).await;
    let server = support::start(None, options(&[&wrong])).await;
    let mut client = DnsClient::connect(server.addr, Transport::Tcp).await;
    let answer = client.query("www.example.com.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(answer.answers.is_empty());
    let text = server.metrics.render();
    let needle = format!("roster_forward_rejected_answers_total{{to=\"{}\",proto=\"tcp\"}}", wrong.addr);
    assert_eq!(metric(&text, &needle), 1.0);
}

/// Look-alikes of the loop probe (another 128-bit label, the bare suffix) are forwarded like any other
/// name and never count as our probe coming back, however often they are sent.
#[tokio::test]
async fn look_alikes_of_the_loop_probe_do_not_trigger_loop_detection() {
    let good = upstream::start(Behaviour::Good).await;
    let server = support::start(None, options(&[&good])).await;
    let forwarder = server.forwarder.clone().unwrap();
    let mut client = DnsClient::connect(server.addr, Transport::Udp).await;
    for name in ["0123456789abcdef0123456789abcdef.roster-loop-probe.", "roster-loop-probe."] {
        for _ in 0..5 {
            let answer = client.query(name, RecordType::HINFO).await;
            assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain, "{name}");
        }
    }
    assert!(!forwarder.loop_seen());
    assert_eq!(forwarder.loop_detected().borrow().clone(), None);
}

/// A forwarder with its cache bounded at `cache_bytes`, on 127.0.0.1.
async fn server_with_cache(upstream: SocketAddr, cache_bytes: u64) -> (DnsServer, Arc<Forwarder>, Arc<Metrics>) {
    let store = Arc::new(ZoneStore::new(roster_dns::DnsConfig::new("cluster.local", 30, Default::default()).unwrap()));
    let metrics = Metrics::new("127.0.0.1:0");
    let mut config = ForwarderConfig::new(vec![upstream]);
    config.cache_bytes = cache_bytes;
    let forwarder = Forwarder::new(config, metrics.clone());
    let handler = FrontHandler::new(store).with_metrics(metrics.clone()).with_forwarder(forwarder.clone());
    let server = DnsServer::bind_with("127.0.0.1:0".parse().unwrap(), handler).await.unwrap();
    (server, forwarder, metrics)
}

/// 300 distinct names answered with ~30 KB each (9 MB in all) through a 1 MiB cache: the accounted
/// bytes never pass the bound, and the gauges say so.
#[tokio::test]
async fn many_large_answers_keep_the_cache_within_its_bytes() {
    let large = upstream::start(Behaviour::LargeTxt).await;
    let bound = 1 << 20;
    let (server, forwarder, metrics) = server_with_cache(large.addr, bound).await;
    let mut client = DnsClient::connect(server.tcp_addr(), Transport::Tcp).await;
    for i in 0..300 {
        let answer = client.query(&format!("big{i}.example.net."), RecordType::TXT).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        let RData::TXT(txt) = &answer.answers[0].data else { panic!("{answer:?}") };
        assert_eq!(txt.txt_data.len(), 120);
        let (bytes, max) = forwarder.cache_bytes();
        assert_eq!(max, bound);
        assert!(bytes <= bound, "{bytes} bytes accounted after {i} answers");
    }
    let entries = forwarder.cache_len();
    assert!((10..=34).contains(&entries), "{entries} entries of ~30 KB in 1 MiB");
    let text = metrics.render();
    let bytes = metric(&text, "roster_cache_size_bytes{server=\"dns://127.0.0.1:0\",zones=\".\",view=\"\"}");
    assert!(bytes > 0.0 && bytes <= bound as f64, "{bytes}");
    let counted = metric(&text, "coredns_cache_entries{server=\"dns://127.0.0.1:0\",type=\"success\"");
    assert_eq!(counted, entries as f64);
    assert_eq!(large.queries.load(Ordering::SeqCst), 600, "each name: UDP (truncated), then TCP");
}

/// A raw DNS-over-TCP exchange on `stream`: the answer, or `None` when the server closed the stream.
async fn tcp_exchange(stream: &mut TcpStream, name: &str, rtype: RecordType) -> Option<Message> {
    static NEXT_ID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let mut query = Message::new(NEXT_ID.fetch_add(1, Ordering::Relaxed), MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let bytes = query.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.ok()?;
    let exchange = async {
        let len = stream.read_u16().await.ok()?;
        let mut body = vec![0u8; usize::from(len)];
        stream.read_exact(&mut body).await.ok()?;
        Message::from_vec(&body).ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await.unwrap()
}

async fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// `roster dns` on a free loopback port with `args`, once it answers over TCP.
async fn roster_dns(args: &[&str]) -> (Proc, SocketAddr) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec!["dns", "--objects", FIXTURE, "--listen", &listen];
    all.extend_from_slice(args);
    let process = Proc::roster(&all);
    let addr: SocketAddr = listen.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut stream) = TcpStream::connect(addr).await
            && tcp_exchange(&mut stream, "web-0.nginx.demo.svc.cluster.local.", RecordType::A)
                .await
                .is_some_and(|m| m.metadata.response_code == ResponseCode::NoError)
        {
            return (process, addr);
        }
        assert!(Instant::now() < deadline, "roster dns did not come up:\n{}", process.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Beyond its limit a client's new connections are closed at once; another client address is served
/// meanwhile, and a closed connection frees its slot.
#[tokio::test]
async fn tcp_connections_are_limited_per_client() {
    let (process, addr) = roster_dns(&["--max-tcp-connections-per-client", "3"]).await;
    let name = "web-0.nginx.demo.svc.cluster.local.";
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.1", addr).await;
        assert!(tcp_exchange(&mut stream, name, RecordType::A).await.is_some());
        held.push(stream);
    }
    let mut fourth = connect_from("127.0.0.1", addr).await;
    assert!(tcp_exchange(&mut fourth, name, RecordType::A).await.is_none(), "the 4th connection is closed");
    let mut other = connect_from("127.0.0.2", addr).await;
    let answer = tcp_exchange(&mut other, name, RecordType::A).await.expect("another client is served");
    assert_eq!(answer.answers.len(), 1);
    assert!(tcp_exchange(&mut held[0], name, RecordType::A).await.is_some(), "held connections still work");

    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from("127.0.0.1", addr).await;
        if tcp_exchange(&mut again, name, RecordType::A).await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the closed connection's slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.kill();
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 4,000 distinct names answered with ~30 KB each (~120 MB through the cache) against a `roster dns`
/// with `--cache-bytes 16Mi`: the process's RSS grows by far less than that (an entry-count bound let
/// 20,000 such answers grow it by 327 MiB). Bounded: 4,000 queries, 8 connections, 120 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_answers_leaves_rss_bounded() {
    let large = upstream::start(Behaviour::LargeTxt).await;
    let upstream_addr = large.addr.to_string();
    let (process, addr) = roster_dns(&["--upstream", &upstream_addr, "--cache-bytes", "16Mi"]).await;
    let pid = process.child.id();
    let before = vm_rss_kib(pid);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut workers = Vec::new();
    for worker in 0..8 {
        workers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            for i in 0..500 {
                assert!(Instant::now() < deadline, "flood took too long");
                let name = format!("flood{worker}-{i}.example.net.");
                let answer = tcp_exchange(&mut stream, &name, RecordType::TXT).await.unwrap();
                assert_eq!(answer.metadata.response_code, ResponseCode::NoError, "{name}");
                assert_eq!(answer.answers.len(), 1, "{name}");
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let after = vm_rss_kib(pid);
    let growth_mib = after.saturating_sub(before) / 1024;
    eprintln!("roster dns VmRSS {} MiB -> {} MiB (+{growth_mib} MiB)", before / 1024, after / 1024);
    assert!(large.queries.load(Ordering::SeqCst) >= 8000, "every name went upstream (UDP, then TCP)");
    // 16 MiB of cache, allocator slack and buffers: far below the ~120 MB the answers add up to.
    assert!(growth_mib < 64, "RSS grew by {growth_mib} MiB");
    process.kill();
}
