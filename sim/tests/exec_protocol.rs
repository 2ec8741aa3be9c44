//! The remotecommand WebSocket protocol of pods/exec and pods/attach, frame by frame, with a raw client
//! (kubectl's end-to-end use is tests/local_exec.rs at the workspace root): channel bytes, the exit
//! code in the error channel's Status, the v5 close of stdin, v4 (no close signal), protocol
//! negotiation, the request checks, and a session ended by the pod's deletion. Needs root (the process runs in the pod's network namespace).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roster_sim::SimHandle;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `pods/web/exec?QUERY` offering `protocols`: the socket and the protocol the server chose, or
/// the HTTP status and body of a refusal.
async fn open(sim: &SimHandle, query: &str, protocols: &str) -> Result<(Socket, String), (u16, String)> {
    let url = format!("ws://{}/api/v1/namespaces/default/pods/web/exec?{query}", sim.addr());
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => {
            let chosen = response.headers().get("Sec-WebSocket-Protocol").unwrap().to_str().unwrap().to_owned();
            Ok((socket, chosen))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("connecting: {e}"),
    }
}

/// Everything the server sent until it closed: (stdout, stderr, the error channel's Status).
async fn collect(socket: &mut Socket) -> (String, String, Value) {
    let (mut out, mut err, mut status) = (String::new(), String::new(), Value::Null);
    let read = async {
        while let Some(message) = socket.next().await {
            match message.unwrap() {
                Message::Binary(data) => {
                    let text = String::from_utf8_lossy(&data[1..]).into_owned();
                    match data[0] {
                        1 => out.push_str(&text),
                        2 => err.push_str(&text),
                        3 => status = serde_json::from_str(&text).unwrap(),
                        other => panic!("unexpected channel {other}"),
                    }
                }
                Message::Close(frame) => {
                    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000), "a normal close");
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("the session ends");
    (out, err, status)
}

fn command(words: &[&str]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for word in words {
        query.append_pair("command", word);
    }
    query.finish()
}

async fn running_pod() -> SimHandle {
    let sim = common::start().await;
    common::kubectl_ok(&sim, &["run", "web", "--image=nginx"]).await;
    for _ in 0..300 {
        let phase = common::kubectl_ok(&sim, &["get", "pod", "web", "-o", "jsonpath={.status.phase}"]).await;
        if phase == "Running" {
            return sim;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pod web never ran");
}

#[tokio::test]
async fn frames_exit_codes_and_stdin() {
    assert!(is_root(), "exec makes network namespaces: run as root");
    let sim = running_pod().await;

    // v5 preferred; stdout and stderr on their channels; the exit code as client-go reads it
    let query = format!("{}&stdout=true&stderr=true", command(&["sh", "-c", "echo out; echo err >&2; exit 7"]));
    let (mut socket, chosen) = open(&sim, &query, "v5.channel.k8s.io, v4.channel.k8s.io").await.unwrap();
    assert_eq!(chosen, "v5.channel.k8s.io");
    let (out, err, status) = collect(&mut socket).await;
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "7");

    // stdin, then v5's close signal [255, 0]: cat sees end-of-file and exits 0
    let query = format!("{}&stdin=true&stdout=true", command(&["cat"]));
    let (mut socket, _) = open(&sim, &query, "v5.channel.k8s.io").await.unwrap();
    socket.send(Message::binary(b"\x00hello ".to_vec())).await.unwrap();
    socket.send(Message::binary(b"\x00world".to_vec())).await.unwrap();
    socket.send(Message::binary(vec![255, 0])).await.unwrap();
    let (out, _, status) = collect(&mut socket).await;
    assert_eq!(out, "hello world");
    assert_eq!(status["status"], "Success");

    // v4 has no close signal: the process ends on its own
    let query = format!("{}&stdout=true", command(&["hostname"]));
    let (mut socket, chosen) = open(&sim, &query, "v4.channel.k8s.io").await.unwrap();
    assert_eq!(chosen, "v4.channel.k8s.io");
    let (out, _, status) = collect(&mut socket).await;
    assert_eq!((out.as_str(), &status["status"]), ("web\n", &Value::from("Success")));

    // refusals before the upgrade, with the API server's words
    let refused = |query: String, protocols: &'static str| {
        let sim = &sim;
        async move { open(sim, &query, protocols).await.err().unwrap() }
    };
    let (code, body) = refused(command(&["ls"]), "v5.channel.k8s.io").await;
    assert_eq!(code, 400);
    assert!(body.contains("at least 1 of stdin, stdout, stderr"), "{body}");
    let (code, body) = refused(format!("{}&stdout=true", command(&["ls"])), "channel.k8s.io").await;
    assert_eq!(code, 400);
    assert!(body.contains("speaks v5.channel.k8s.io and v4.channel.k8s.io"), "{body}");

    // deleting the pod kills what runs in it: the client hears SIGKILL's exit code
    let query = format!("{}&stdout=true", command(&["sh", "-c", "echo started; exec sleep 60"]));
    let (mut socket, _) = open(&sim, &query, "v5.channel.k8s.io").await.unwrap();
    let Some(Ok(Message::Binary(first))) = socket.next().await else { panic!("no output") };
    assert_eq!(&first[..], b"\x01started\n");
    common::kubectl_ok(&sim, &["delete", "pod", "web", "--grace-period=0", "--force"]).await;
    let (_, _, status) = collect(&mut socket).await;
    assert_eq!(status["details"]["causes"][0]["message"], "137", "{status}");
    sim.shutdown().await;
}

fn is_root() -> bool {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}
