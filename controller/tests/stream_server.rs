//! The record stream server against hostile and broken clients, in process over real TLS on loopback:
//! no client certificate or a foreign one gets no records; a snapshot is encoded once for many
//! subscribers; a subscriber that stops reading is cut off; slow handshakes and headers are dropped;
//! connections beyond the cap are closed.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_controller::stream::{self, StreamConfig};
use roster_controller::tls::{self, Pem};
use roster_controller::{Hub, Publisher};
use roster_shared::{DomainName, RData, ZoneData};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn zone(count: usize, tag: u8) -> ZoneData {
    let apex = DomainName::parse("cluster.local").unwrap();
    let mut zone = ZoneData::default();
    for i in 0..count {
        let name = DomainName::parse(&format!("s{i}-{tag}.default.svc.cluster.local")).unwrap();
        zone.add(name, RData::A { ip: format!("10.{tag}.{}.{}", i / 250, i % 250).parse().unwrap() }, &apex);
    }
    zone
}

struct Server {
    addr: SocketAddr,
    hub: Hub,
    material: tls::Material,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(config: StreamConfig) -> Server {
    let hub = Hub::new(Publisher::new());
    hub.publish(zone(200, 1));
    let material = tls::generate(&["127.0.0.1".into()], 1).unwrap();
    let server_tls = tls::server_config(&material.server).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = stream::router(hub.clone(), config.clone());
    let task = tokio::spawn(stream::serve(listener, router, server_tls, config, hub.clone()));
    Server { addr, hub, material, task }
}

/// A TLS client trusting `ca`, presenting `identity` when given.
fn client_config(ca: &str, identity: Option<&Pem>) -> Arc<rustls::ClientConfig> {
    let roots = tls::parse_roots(ca, "test").unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(pem) => {
            let (certs, key) = tls::parse_identity(&pem.cert, &pem.key, "test").unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(server: &Server, identity: Option<&Pem>) -> std::io::Result<Tls> {
    let connector = tokio_rustls::TlsConnector::from(client_config(&server.material.server.ca, identity));
    let tcp = TcpStream::connect(server.addr).await?;
    connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await
}

/// Sends `GET path` and reads for up to `wait`: what arrived (or the error that ended it).
async fn get(stream: &mut Tls, path: &str, wait: Duration) -> Result<String, String> {
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(read) = tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer)).await {
        match read {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buffer[..n]),
            Err(e) if text.is_empty() => return Err(e.to_string()),
            Err(_) => break,
        }
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

fn metric(hub: &Hub, name: &str) -> f64 {
    let text = hub.metrics().render();
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn only_a_client_certificate_from_the_stream_ca_gets_records() {
    let server = start(StreamConfig::default()).await;
    let client = server.material.client.clone();

    let mut anonymous = connect(&server, None).await.unwrap();
    let answer = get(&mut anonymous, "/v1/records", Duration::from_secs(2)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains("snapshot"), "{answer}");
    // Probes need no certificate and carry no records.
    let mut probe = connect(&server, None).await.unwrap();
    let answer = get(&mut probe, "/readyz", Duration::from_millis(500)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A certificate from another CA: the handshake fails, nothing is served.
    let foreign = tls::generate(&["127.0.0.1".into()], 1).unwrap().client;
    let refused = match connect(&server, Some(&foreign)).await {
        Err(error) => error.to_string(),
        Ok(mut stream) => match get(&mut stream, "/v1/records", Duration::from_secs(2)).await {
            Err(error) => error,
            Ok(text) => text,
        },
    };
    assert!(!refused.contains("snapshot"), "{refused}");
    assert!(refused.contains("alert") || refused.contains("certificate"), "refused how? {refused}");
    // The server's own certificate is not a client certificate (serverAuth only).
    let as_client = Pem {
        ca: client.ca.clone(),
        cert: server.material.server.cert.clone(),
        key: server.material.server.key.clone(),
    };
    let answer = match connect(&server, Some(&as_client)).await {
        Err(error) => error.to_string(),
        Ok(mut stream) => get(&mut stream, "/v1/records", Duration::from_secs(2)).await.unwrap_or_else(|e| e),
    };
    assert!(!answer.contains("snapshot"), "{answer}");

    let mut replica = connect(&server, Some(&client)).await.unwrap();
    let answer = get(&mut replica, "/v1/records", Duration::from_millis(500)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"kind":"snapshot""#), "{answer}");

    // A replica trusting another CA refuses the controller.
    let wrong_ca = tls::generate(&["127.0.0.1".into()], 1).unwrap().client;
    let connector = tokio_rustls::TlsConnector::from(client_config(&wrong_ca.ca, Some(&client)));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let error = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap_err();
    assert!(error.to_string().contains("invalid peer certificate"), "{error}");
}

#[tokio::test]
async fn a_snapshot_is_encoded_once_for_every_subscriber() {
    let server = start(StreamConfig::default()).await;
    let mut streams = Vec::new();
    for _ in 0..6 {
        let mut stream = connect(&server, Some(&server.material.client)).await.unwrap();
        let answer = get(&mut stream, "/v1/records", Duration::from_millis(300)).await.unwrap();
        assert!(answer.contains(r#"{"kind":"snapshot""#));
        streams.push(stream);
    }
    assert_eq!(metric(&server.hub, "roster_controller_snapshot_encodings_total"), 1.0);
    assert_eq!(metric(&server.hub, "roster_controller_stream_subscribers"), 6.0);
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_cut_off() {
    let config = StreamConfig { min_buffer_bytes: 64 * 1024, ..StreamConfig::default() };
    let server = start(config).await;
    let mut stalled = connect(&server, Some(&server.material.client)).await.unwrap();
    stalled.write_all(b"GET /v1/records HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // Never read. Publish changes (~10 KB each) until the server gives up on this subscriber; without a
    // cut-off its frames would pile up (bounded here by count and time).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut published = 0;
    while metric(&server.hub, "roster_controller_stream_cutoffs_total") < 1.0 {
        assert!(published < 20_000 && Instant::now() < deadline, "never cut off after {published} changes");
        server.hub.publish(zone(200, (published % 2) as u8 + 2));
        published += 1;
        if published % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Its connection is closed: reading what the kernel buffered ends, and it no longer counts.
    let mut buffer = vec![0; 1 << 20];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled subscriber's connection stayed open");
    assert_eq!(metric(&server.hub, "roster_controller_stream_subscribers"), 0.0);
    // A snapshot's worth: the bound was the larger of the snapshot and the floor.
    assert!(metric(&server.hub, "roster_controller_snapshot_bytes") > 0.0);
}

#[tokio::test]
async fn slow_handshakes_and_slow_headers_are_dropped() {
    let config = StreamConfig {
        handshake_timeout: Duration::from_millis(300),
        header_timeout: Duration::from_millis(300),
        ..StreamConfig::default()
    };
    let server = start(config).await;
    // Connects and says nothing.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let mut byte = [0; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Finishes the handshake, then sends half a request header.
    let mut slow = connect(&server, Some(&server.material.client)).await.unwrap();
    slow.write_all(b"GET /v1/records HTTP/1.1\r\nHost:").await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    // Closed (EOF or reset) well before the 5 s the test waits.
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await.unwrap();
    assert!(!String::from_utf8_lossy(&rest).contains("snapshot"));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(metric(&server.hub, "roster_controller_stream_refused_total{reason=\"handshake\"}") >= 1.0);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed() {
    let config = StreamConfig { max_connections: 2, ..StreamConfig::default() };
    let server = start(config).await;
    let _a = connect(&server, Some(&server.material.client)).await.unwrap();
    let _b = connect(&server, Some(&server.material.client)).await.unwrap();
    let third = connect(&server, Some(&server.material.client)).await;
    assert!(third.is_err(), "a third connection was served");
    assert_eq!(metric(&server.hub, "roster_controller_stream_refused_total{reason=\"capacity\"}"), 1.0);
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect(&server, Some(&server.material.client)).await.unwrap();
    assert!(get(&mut again, "/readyz", Duration::from_millis(500)).await.unwrap().starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn only_the_term_holder_serves_and_each_term_is_a_later_epoch() {
    let hub = Hub::elected(Publisher::new());
    hub.publish(zone(3, 1));
    let material = tls::generate(&["127.0.0.1".into()], 1).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = StreamConfig::default();
    let router = stream::router(hub.clone(), config.clone());
    let task = tokio::spawn(stream::serve(
        listener,
        router,
        tls::server_config(&material.server).unwrap(),
        config,
        hub.clone(),
    ));
    let server = Server { addr, hub: hub.clone(), material, task };
    let mut standby = connect(&server, Some(&server.material.client)).await.unwrap();
    let answer = get(&mut standby, "/v1/records", Duration::from_millis(500)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

    hub.begin_term(1_000);
    let mut follower = connect(&server, Some(&server.material.client)).await.unwrap();
    let answer = get(&mut follower, "/v1/records", Duration::from_millis(300)).await.unwrap();
    assert!(answer.contains(r#""epoch":1000"#), "{answer}");
    // Losing the term ends the stream.
    hub.end_term();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), follower.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the stream outlived the term");
    // The next term resumes nobody from the old one: a snapshot under the new epoch.
    hub.begin_term(2_000);
    let mut again = connect(&server, Some(&server.material.client)).await.unwrap();
    let answer = get(&mut again, "/v1/records?epoch=1000&since=1", Duration::from_millis(300)).await.unwrap();
    assert!(answer.contains(r#"{"kind":"snapshot","epoch":2000"#), "{answer}");
}

#[tokio::test]
async fn a_replica_that_accepts_zstd_gets_every_frame_compressed() {
    use futures::StreamExt;
    use roster_dns::subscriber::{ClientTls, FrameSource, HttpSource, Received};
    let server = start(StreamConfig::default()).await;
    let client = &server.material.client;

    // The header says so; a request without Accept-Encoding gets plain NDJSON (the tests above).
    let mut raw = connect(&server, Some(client)).await.unwrap();
    raw.write_all(b"GET /v1/records HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, zstd\r\n\r\n").await.unwrap();
    let mut head = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), raw.read(&mut head)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
    assert!(head.contains("content-encoding: zstd"), "{head}");
    assert!(!head.contains(r#"{"kind":"snapshot""#), "{head}");

    // The replica's own client decodes the same frames the hub published.
    let tls = ClientTls::from_pem(&client.ca, &client.cert, &client.key, None).unwrap();
    let mut source = HttpSource::new(&[format!("https://{}", server.addr)], tls).unwrap();
    let store = replica_store();
    let mut frames = source.connect(None, &store).await.unwrap();
    // The snapshot comes decoded as it streamed, built for `store`: the same table as the hub's zone makes.
    let first = frames.next().await.unwrap().unwrap();
    let Received::Snapshot(snapshot) = first else { panic!("{first:?}") };
    assert_eq!(snapshot.position().1, 1);
    store.swap_in(snapshot);
    let zone = zone_of(&server.hub);
    let expected = replica_store();
    expected
        .apply(&roster_shared::Frame::Snapshot { epoch: 0, generation: 1, zone: std::sync::Arc::new(zone.clone()) })
        .unwrap();
    assert_eq!(store.name_count(), expected.name_count());
    for name in zone.names.keys() {
        let wire = roster_dns::convert::to_wire(name);
        assert_eq!(store.view().node(&wire), expected.view().node(&wire), "{name}");
    }
    let generation = server.hub.publish(zone_with_extra()).unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), frames.next()).await.unwrap().unwrap().unwrap();
    assert!(
        matches!(next, Received::Frame(roster_shared::Frame::Delta { generation: g, .. }) if g == generation),
        "{next:?}"
    );
    assert_eq!(metric(&server.hub, "roster_controller_snapshot_encodings_total"), 1.0);
}

fn replica_store() -> std::sync::Arc<roster_dns::ZoneStore> {
    let config = roster_dns::DnsConfig::new("cluster.local", 5, roster_shared::PodMode::Insecure).unwrap();
    std::sync::Arc::new(roster_dns::ZoneStore::new(config))
}

fn zone_of(hub: &Hub) -> ZoneData {
    (*hub.current().unwrap()).clone()
}

fn zone_with_extra() -> ZoneData {
    let mut zone = zone(200, 1);
    let apex = DomainName::parse("cluster.local").unwrap();
    zone.add(
        DomainName::parse("extra.default.svc.cluster.local").unwrap(),
        RData::A { ip: "10.9.9.9".parse().unwrap() },
        &apex,
    );
    zone
}

/// The body of `GET path` over a client-certificate connection, read until it holds `want` bytes or
/// 5 s pass (the stream never ends by itself).
async fn body_of(server: &Server, path: &str, want: usize) -> Vec<u8> {
    use http_body_util::BodyExt;
    let tls = connect(server, Some(&server.material.client)).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "127.0.0.1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert!(response.headers().get(hyper::header::CONTENT_ENCODING).is_none());
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while bytes.len() < want {
        let frame = tokio::time::timeout_at(deadline.into(), body.frame()).await.unwrap().unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    bytes
}

#[tokio::test]
async fn the_snapshot_is_packed_only_for_clients_that_ask() {
    use roster_shared::{Frame, PackedSnapshotHeader, packed};
    let server = start(StreamConfig::default()).await;
    let (epoch, generation) = server.hub.position().unwrap();
    let zone = std::sync::Arc::new(zone_of(&server.hub));
    let mut json_line = serde_json::to_vec(&Frame::Snapshot { epoch, generation, zone: zone.clone() }).unwrap();
    json_line.push(b'\n');

    // A client that does not ask (curl, an older replica) gets exactly today's line.
    let body = body_of(&server, "/v1/records", json_line.len()).await;
    assert_eq!(body, json_line);
    let body = body_of(&server, "/v1/records?snapshot=json&other=1", json_line.len()).await;
    assert_eq!(body, json_line, "an unknown form is JSON");

    // A client that asks gets the header line and exactly the packed bytes of the same zone, then JSON lines.
    let packed_bytes = packed::encode(&zone).unwrap();
    let header = PackedSnapshotHeader { epoch, generation, bytes: packed_bytes.len() as u64 };
    let mut header_line = serde_json::to_vec(&header).unwrap();
    header_line.push(b'\n');
    let want = header_line.len() + packed_bytes.len();
    let body = body_of(&server, "/v1/records?snapshot=packed4", want).await;
    assert_eq!(&body[..header_line.len()], &header_line[..]);
    assert_eq!(packed::decode_zone(&body[header_line.len()..want]).unwrap(), *zone);
    assert!(packed_bytes.len() * 3 < json_line.len(), "{} vs {}", packed_bytes.len(), json_line.len());
    // One encoding per generation, whatever the forms.
    assert_eq!(metric(&server.hub, "roster_controller_snapshot_encodings_total"), 1.0);
    let resumed = body_of(&server, &format!("/v1/records?epoch={epoch}&since=0&snapshot=packed4"), want).await;
    assert_eq!(&resumed[..want], &body[..want], "a catch-up snapshot is packed too");
}

#[tokio::test]
async fn a_replica_reads_json_from_a_controller_that_ignores_the_ask() {
    use futures::StreamExt;
    use roster_dns::subscriber::{ClientTls, FrameSource, HttpSource, Received};
    let hub = Hub::new(Publisher::new());
    hub.publish(zone(200, 1));
    let material = tls::generate(&["127.0.0.1".into()], 1).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = StreamConfig::default();
    // An older controller: the query's `snapshot` is dropped before the handler sees it.
    let router = stream::router(hub.clone(), config.clone()).layer(axum::middleware::map_request(
        |mut request: axum::extract::Request| async move {
            let path = request.uri().path().to_owned();
            let query: Vec<&str> =
                request.uri().query().unwrap_or("").split('&').filter(|p| !p.starts_with("snapshot=")).collect();
            *request.uri_mut() = format!("{path}?{}", query.join("&")).parse().unwrap();
            request
        },
    ));
    let task = tokio::spawn(stream::serve(
        listener,
        router,
        tls::server_config(&material.server).unwrap(),
        config,
        hub.clone(),
    ));
    let server = Server { addr, hub: hub.clone(), material, task };
    let client = &server.material.client;
    let tls = ClientTls::from_pem(&client.ca, &client.cert, &client.key, None).unwrap();
    let mut source = HttpSource::new(&[format!("https://{addr}")], tls).unwrap();
    assert!(source.ask_packed);
    let store = replica_store();
    let mut frames = source.connect(None, &store).await.unwrap();
    let first = frames.next().await.unwrap().unwrap();
    let Received::Snapshot(snapshot) = first else { panic!("{first:?}") };
    store.swap_in(snapshot);
    let zone = zone_of(&hub);
    for name in zone.names.keys() {
        assert!(store.view().node(&roster_dns::convert::to_wire(name)).is_some(), "{name}");
    }
    assert_eq!(store.name_count(), {
        let expected = replica_store();
        expected
            .apply(&roster_shared::Frame::Snapshot { epoch: 0, generation: 1, zone: std::sync::Arc::new(zone) })
            .unwrap();
        expected.name_count()
    });
    // Nobody asked for it packed, as far as the controller knows: it never packed it.
    assert_eq!(hub.snapshot_bytes(roster_controller::SnapshotForm::Packed), 0);
    assert!(hub.snapshot_bytes(roster_controller::SnapshotForm::Json) > 0);
}
