//! `pods/exec` and `pods/attach` over WebSocket, the remotecommand protocol `v5.channel.k8s.io` (and
//! `v4.channel.k8s.io`), as kubectl speaks it (client-go tools/remotecommand): every binary message is
//! one channel byte and its data — 0 stdin, 1 stdout, 2 stderr, 3 the error channel (a `metav1.Status`
//! with the exit code, sent once at the end), 4 terminal resizes (`{"Width":W,"Height":H}`), and in
//! v5, 255 = "the client closed this channel" (`[255, 0]`: stdin ended). The server ends the session
//! with a normal close once the process exited and its output was sent.
//!
//! The command is the host's, run in the pod's network namespace ([`crate::podnet`]). exec runs what
//! the request names; attach runs the container's own command (`command` + `args`; the host's
//! `/bin/sh` when neither is set, busybox's default), one attach at a time, and records its end in the
//! pod's status as a kubelet would (so `kubectl run -i --rm --restart=Never` reads the exit code).

mod process;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::extract::Request;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::header;
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use super::{App, Target};
use crate::meta::{self, path, path_str};
use crate::podnet::{PodInfo, PodNamespace, PodNetwork};
use crate::status::ApiError;
use crate::store::{Store, Subresource};
use process::{Input, Launch, Running};

const PROTOCOL_V5: &str = "v5.channel.k8s.io";
const PROTOCOL_V4: &str = "v4.channel.k8s.io";
const STDIN: u8 = 0;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;
/// Sessions at once (each is a process, a pty or pipes, and a WebSocket).
const MAX_SESSIONS: usize = 64;
/// Largest message accepted from a client (kubectl sends stdin in 32 KiB chunks).
const MAX_MESSAGE: usize = 1 << 20;
/// kubectl pings every 5 s: this long without a single frame means the client is gone.
const CLIENT_SILENCE: Duration = Duration::from_secs(120);
/// After the process exited, how long its output may stay open (held by something it left behind).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// What exec and attach share: the pod network, the session bound, the attached containers.
pub struct ExecRuntime {
    network: Arc<PodNetwork>,
    sessions: Arc<Semaphore>,
    attached: Mutex<HashSet<String>>,
}

impl ExecRuntime {
    /// Exec and attach over `network`.
    pub fn new(network: Arc<PodNetwork>) -> Self {
        Self { network, sessions: Arc::new(Semaphore::new(MAX_SESSIONS)), attached: Mutex::default() }
    }
}

/// Whether `target` is a pod's exec or attach subresource.
pub(super) fn handles(target: &Target) -> bool {
    target.rt.plural == "pods"
        && target.rt.group.is_empty()
        && target.name.is_some()
        && matches!(target.sub.as_deref(), Some("exec" | "attach"))
}

/// The request's options (`PodExecOptions` / `PodAttachOptions` as query parameters).
#[derive(Debug, PartialEq)]
struct Options {
    command: Vec<String>,
    container: String,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn parse_options(query: &str, attach: bool) -> Result<Options, ApiError> {
    let mut options = Options {
        command: Vec::new(),
        container: String::new(),
        stdin: false,
        stdout: false,
        stderr: false,
        tty: false,
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let flag = || matches!(value.as_ref(), "true" | "1");
        match key.as_ref() {
            "command" => options.command.push(value.into_owned()),
            "container" => options.container = value.into_owned(),
            "stdin" => options.stdin = flag(),
            "stdout" => options.stdout = flag(),
            "stderr" => options.stderr = flag(),
            "tty" => options.tty = flag(),
            _ => {}
        }
    }
    if !attach && options.command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least one command for the container"));
    }
    if !(options.stdin || options.stdout || options.stderr) {
        return Err(ApiError::bad_request("you must specify at least 1 of stdin, stdout, stderr"));
    }
    if options.tty && options.stderr {
        return Err(ApiError::bad_request("tty and stderr cannot both be true: a terminal carries both outputs"));
    }
    Ok(options)
}

/// The container the request names (or the pod's only one).
fn container<'a>(pod: &'a Value, name: &str) -> Result<&'a Value, ApiError> {
    let containers = path(pod, "spec.containers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| path_str(c, "name")).collect();
    let pod_name = meta::name(pod);
    if name.is_empty() {
        return match containers {
            [only] => Ok(only),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                names.join(" ")
            ))),
        };
    }
    containers.iter().find(|c| path_str(c, "name") == name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "container {name} is not valid for pod {pod_name}: choose one of: [{}]",
            names.join(" ")
        ))
    })
}

/// Serves `GET …/pods/NAME/exec|attach?…` with a WebSocket upgrade.
pub(super) async fn serve(app: &Arc<App>, target: Target, req: Request) -> Result<Response, ApiError> {
    let attach = target.sub.as_deref() == Some("attach");
    let verb = if attach { "attach" } else { "exec" };
    let options = parse_options(req.uri().query().unwrap_or(""), attach)?;
    let name = target.name.clone().unwrap_or_default();
    let pod = app.store.get(&target.rt, &target.ns, &name)?;
    let spec = container(&pod, &options.container)?.clone();
    let phase = path_str(&pod, "status.phase");
    match phase {
        "Running" => {}
        "Succeeded" | "Failed" => {
            let verb = if attach { "attach a container" } else { "exec into a container" };
            return Err(ApiError::bad_request(format!("cannot {verb} in a completed pod; current phase is {phase}")));
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "pod {name} is not running yet (phase {phase}): wait for it, e.g. `kubectl wait --for=condition=Ready pod/{name}`"
            )));
        }
    }
    let upgrade = websocket(req).await?;
    let Some(protocol) = upgrade.selected_protocol().and_then(|p| p.to_str().ok()).map(str::to_owned) else {
        return Err(ApiError::bad_request(format!(
            "{verb}: none of the offered WebSocket protocols is served here: the stand-in speaks {PROTOCOL_V5} and {PROTOCOL_V4}"
        )));
    };
    let permit = app.exec.sessions.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(format!("the stand-in runs at most {MAX_SESSIONS} exec and attach sessions at once"))
    })?;
    let claim = if attach {
        let key = format!("{}/{}", meta::meta_str(&pod, "uid"), path_str(&spec, "name"));
        let claim = AttachClaim::take(app, key).ok_or_else(|| {
            ApiError::bad_request(format!(
                "container {} of pod {name} already has an attached session: the stand-in runs one at a time",
                path_str(&spec, "name")
            ))
        })?;
        Some(claim)
    } else {
        None
    };
    let session =
        Session { app: app.clone(), pod, container: spec, options, attach: claim, v5: protocol == PROTOCOL_V5 };
    Ok(upgrade.on_upgrade(move |socket| async move {
        session.run(socket).await;
        drop(permit);
    }))
}

/// The WebSocket upgrade of the request, or a clear refusal (SPDY is not served).
async fn websocket(req: Request) -> Result<WebSocketUpgrade, ApiError> {
    let (mut parts, _body) = req.into_parts();
    let upgrade_header = parts.headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => Ok(upgrade
            .protocols([PROTOCOL_V5, PROTOCOL_V4])
            .max_message_size(MAX_MESSAGE)
            .max_frame_size(MAX_MESSAGE)
            .max_write_buffer_size(4 * MAX_MESSAGE)),
        Err(_) if upgrade_header.to_ascii_lowercase().starts_with("spdy") => Err(ApiError::bad_request(
            "the stand-in serves exec and attach over WebSocket only (v5.channel.k8s.io), not SPDY: use kubectl 1.30 \
             or later, without KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false",
        )),
        Err(rejection) => Err(ApiError::bad_request(format!(
            "exec and attach need a WebSocket upgrade (protocol {PROTOCOL_V5}): {rejection}"
        ))),
    }
}

type Sink = SplitSink<WebSocket, Message>;

/// A container's one attach, released when dropped (also when the upgrade never completes).
struct AttachClaim {
    app: Arc<App>,
    key: String,
}

impl AttachClaim {
    fn take(app: &Arc<App>, key: String) -> Option<Self> {
        app.exec.attached.lock().insert(key.clone()).then(|| Self { app: app.clone(), key })
    }
}

impl Drop for AttachClaim {
    fn drop(&mut self) {
        self.app.exec.attached.lock().remove(&self.key);
    }
}

/// One exec or attach, from the upgrade to the close.
struct Session {
    app: Arc<App>,
    pod: Arc<Value>,
    container: Value,
    options: Options,
    /// For attach: the container's claim, held until the session ends.
    attach: Option<AttachClaim>,
    v5: bool,
}

/// How a process's run ended.
enum End {
    Exited(i32),
    /// The client went away: the process was killed.
    Abandoned,
}

impl Session {
    async fn run(self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let early = if self.options.tty { initial_size(&mut stream).await } else { Early::default() };
        match self.start(early.size).await {
            Ok((running, pod_ns)) => {
                let end = self.follow(running, pod_ns, &mut sink, stream, early.messages).await;
                if let End::Exited(code) = end {
                    if self.attach.is_some() {
                        // attach reports the end of the stream, not the exit code (as the kubelet's):
                        // the code is in the pod's status, where `kubectl run` reads it
                        self.record_exit(code).await;
                        finish(&mut sink, &exit_status(&[], 0)).await;
                    } else {
                        finish(&mut sink, &exit_status(&self.argv(), code)).await;
                    }
                }
            }
            Err(message) => finish(&mut sink, &failure_status(&message)).await,
        }
    }

    fn argv(&self) -> Vec<String> {
        if self.attach.is_none() {
            return self.options.command.clone();
        }
        let strings = |key: &str| -> Vec<String> {
            path(&self.container, key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        let argv: Vec<String> = strings("command").into_iter().chain(strings("args")).collect();
        if argv.is_empty() { vec!["/bin/sh".to_owned()] } else { argv }
    }

    /// The pod's namespace (made now if needed) and the process in it; the error is for the client.
    async fn start(&self, size: Option<pty_process::Size>) -> Result<(Running, PodNamespace), String> {
        PodNetwork::check_privileges().map_err(|e| e.to_string())?;
        let network = self.app.exec.network.clone();
        let pod = self.pod.clone();
        let pod_ns = tokio::task::spawn_blocking(move || {
            network.ensure_pod(&PodInfo {
                uid: meta::meta_str(&pod, "uid"),
                namespace: meta::namespace(&pod),
                name: meta::name(&pod),
                hostname: path_str(&pod, "spec.hostname"),
                subdomain: path_str(&pod, "spec.subdomain"),
                ip: path_str(&pod, "status.podIP"),
            })
        })
        .await
        .map_err(|e| format!("making the pod's network namespace: {e}"))?
        .map_err(|e| e.to_string())?;
        // deleted meanwhile: its DELETED event may have passed before the namespace existed
        let uid = meta::meta_str(&self.pod, "uid");
        let current = self.app.store.get(
            &crate::bootstrap::builtin("", "pods"),
            meta::namespace(&self.pod),
            meta::name(&self.pod),
        );
        if current.map_or(true, |pod| meta::meta_str(&pod, "uid") != uid) {
            let (network, uid) = (self.app.exec.network.clone(), uid.to_owned());
            let _ = tokio::task::spawn_blocking(move || network.remove_pod(&uid)).await;
            return Err(format!("pod {} was deleted", meta::name(&self.pod)));
        }
        let launch = Launch {
            netns: pod_ns.netns.clone(),
            uts: pod_ns.uts.clone(),
            argv: self.argv(),
            env: self.environment(),
            workdir: self.workdir(),
            tty: self.options.tty,
            size,
            stdin: self.options.stdin,
            stdout: self.options.stdout,
            stderr: self.options.stderr,
        };
        let running = process::spawn(&launch)
            .map_err(|e| format!("starting {:?} in pod {}: {e}", launch.argv, meta::name(&self.pod)))?;
        Ok((running, pod_ns))
    }

    /// The container's literal `env` entries, the pod's HOSTNAME, and what a shell needs.
    fn environment(&self) -> Vec<(String, String)> {
        let hostname = match path_str(&self.pod, "spec.hostname") {
            "" => meta::name(&self.pod),
            set => set,
        };
        let host_path = std::env::var("PATH")
            .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        let mut env = vec![
            ("PATH".to_owned(), host_path),
            ("HOME".to_owned(), "/root".to_owned()),
            ("HOSTNAME".to_owned(), hostname.to_owned()),
        ];
        if self.options.tty {
            env.push(("TERM".to_owned(), "xterm".to_owned()));
        }
        for var in path(&self.container, "env").and_then(Value::as_array).into_iter().flatten() {
            if let Some(value) = var.get("value").and_then(Value::as_str) {
                env.push((path_str(var, "name").to_owned(), value.to_owned()));
            }
        }
        env
    }

    /// The container's `workingDir` when the host has it, else `/` (an image's usual default).
    fn workdir(&self) -> String {
        let dir = path_str(&self.container, "workingDir");
        if !dir.is_empty() && std::path::Path::new(dir).is_dir() { dir.to_owned() } else { "/".to_owned() }
    }

    /// Streams until the process exited and its output was sent, or until the session is abandoned.
    async fn follow(
        &self,
        mut running: Running,
        mut pod_ns: PodNamespace,
        sink: &mut Sink,
        stream: SplitStream<WebSocket>,
        early: Vec<Bytes>,
    ) -> End {
        let input = std::mem::replace(&mut running.input, Input::Pipe(None));
        let mut client = tokio::spawn(read_client(stream, early, input, self.v5));
        let mut shutdown = self.app.shutdown.clone();
        let mut exit: Option<i32> = None;
        let mut output_open = true;
        // the pod was deleted or the stand-in stops: the container's processes are killed, and the
        // client hears the exit code that gives (137), as from a real container
        let mut killed = false;
        // armed when the process exits
        let drain = tokio::time::sleep(Duration::from_secs(86_400));
        tokio::pin!(drain);
        let end = loop {
            if let (Some(code), false) = (exit, output_open) {
                break End::Exited(code);
            }
            tokio::select! {
                _ = &mut client => break End::Abandoned,
                () = turns_true(&mut shutdown), if !killed => {
                    running.kill();
                    killed = true;
                }
                () = turns_true(&mut pod_ns.gone), if !killed => {
                    running.kill();
                    killed = true;
                }
                chunk = running.output.recv(), if output_open => match chunk {
                    Some((channel, data)) => {
                        if sink.send(frame(channel, &data)).await.is_err() {
                            break End::Abandoned;
                        }
                    }
                    None => output_open = false,
                },
                status = running.child.wait(), if exit.is_none() => {
                    exit = Some(status.map(process::exit_code).unwrap_or(1));
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                _ = &mut drain, if exit.is_some() && output_open => output_open = false,
            }
        };
        if matches!(end, End::Abandoned) || output_open {
            running.kill();
        }
        client.abort();
        end
    }

    /// Records the attached process's end as the kubelet would: a `Never` pod (or `OnFailure` with 0)
    /// completes; otherwise the container "restarts" and the pod keeps running.
    async fn record_exit(&self, code: i32) {
        let store = self.app.store.clone();
        let (ns, name) = (meta::namespace(&self.pod).to_owned(), meta::name(&self.pod).to_owned());
        let uid = meta::meta_str(&self.pod, "uid").to_owned();
        let container = path_str(&self.container, "name").to_owned();
        let result = tokio::task::spawn_blocking(move || record_exit(&store, &ns, &name, &uid, &container, code)).await;
        if let Ok(Err(e)) = result {
            tracing::debug!(error = %e, "recording an attached container's exit");
        }
    }
}

fn record_exit(store: &Store, ns: &str, name: &str, uid: &str, container: &str, code: i32) -> Result<(), ApiError> {
    let pods = crate::bootstrap::builtin("", "pods");
    store.mutate(&pods, ns, name, Subresource::Status, |old| {
        if meta::meta_str(old, "uid") != uid {
            return Err(ApiError::conflict("", "pods", name, "the pod was replaced"));
        }
        let mut pod = old.clone();
        let now = meta::now_rfc3339();
        let completes = match path_str(old, "spec.restartPolicy") {
            "Never" => true,
            "OnFailure" => code == 0,
            _ => false,
        };
        let terminated = |started: &Value| {
            json!({"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                   "startedAt": started, "finishedAt": now})
        };
        if let Some(statuses) = pod.pointer_mut("/status/containerStatuses").and_then(Value::as_array_mut) {
            for status in statuses.iter_mut().filter(|s| path_str(s, "name") == container) {
                let started = path(status, "state.running.startedAt").cloned().unwrap_or(Value::Null);
                if completes {
                    status["state"] = json!({"terminated": terminated(&started)});
                    status["ready"] = json!(false);
                    status["started"] = json!(false);
                } else {
                    // restarted at once: the pod stays Running
                    status["lastState"] = json!({"terminated": terminated(&started)});
                    let restarts = path(status, "restartCount").and_then(Value::as_i64).unwrap_or(0);
                    status["restartCount"] = json!(restarts + 1);
                }
            }
        }
        if completes {
            pod["status"]["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
            if let Some(conditions) = pod.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
                for condition in conditions.iter_mut() {
                    if matches!(path_str(condition, "type"), "Ready" | "ContainersReady") {
                        condition["status"] = json!("False");
                        condition["reason"] = json!("PodCompleted");
                        condition["lastTransitionTime"] = json!(now);
                    }
                }
            }
        }
        Ok(pod)
    })?;
    Ok(())
}

/// What a terminal session's client sent before its process started.
#[derive(Default)]
struct Early {
    /// The first window size.
    size: Option<pty_process::Size>,
    /// Messages that came before it (kubectl sends the size first; anything else is replayed).
    messages: Vec<Bytes>,
}

/// With a terminal, kubectl's first message is the window size: the process starts with it, rather
/// than at 80×24 and resized after it may already have asked (`stty size`). Reads until that message,
/// at most 16 others, for at most 1 s, or until the client goes (then the session ends as usual).
async fn initial_size(stream: &mut SplitStream<WebSocket>) -> Early {
    let mut early = Early::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while early.messages.len() < 16 {
        let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, stream.next()).await else { break };
        match message {
            Message::Binary(data) if data.first() == Some(&RESIZE) => {
                early.size = process::terminal_size(&data[1..]);
                break;
            }
            Message::Binary(data) => early.messages.push(data),
            Message::Close(_) => break,
            _ => {}
        }
    }
    early
}

/// Reads the client's messages (after replaying `early` ones): stdin to the process, resizes to its
/// terminal, v5's close of stdin. Returns when the client closes, fails or falls silent.
async fn read_client(mut stream: SplitStream<WebSocket>, early: Vec<Bytes>, mut input: Input, v5: bool) {
    for data in early {
        handle_client_message(&data, &mut input, v5).await;
    }
    loop {
        let message = match tokio::time::timeout(CLIENT_SILENCE, stream.next()).await {
            Ok(Some(Ok(message))) => message,
            _ => return,
        };
        match message {
            Message::Binary(data) => handle_client_message(&data, &mut input, v5).await,
            Message::Close(_) => return,
            _ => {}
        }
    }
}

async fn handle_client_message(data: &[u8], input: &mut Input, v5: bool) {
    let Some((&channel, payload)) = data.split_first() else { return };
    match channel {
        STDIN => input.write_or_close(payload).await,
        RESIZE => input.resize(payload),
        CLOSE if v5 && payload.first() == Some(&STDIN) => input.close().await,
        _ => {}
    }
}

/// Waits until the flag is true (or its sender is gone).
async fn turns_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// Sends the final status on the error channel and closes the WebSocket normally, which ends every
/// stream on the client's side.
async fn finish(sink: &mut Sink, status: &Value) {
    let _ = sink.send(frame(ERROR, status.to_string().as_bytes())).await;
    let _ = sink.send(Message::Close(Some(CloseFrame { code: close_code::NORMAL, reason: "".into() }))).await;
    let _ = sink.close().await;
}

/// The error channel's `metav1.Status` for an exit code (client-go reads the code from the
/// `ExitCode` cause).
fn exit_status(argv: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {argv:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The error channel's `metav1.Status` for a session that could not start (kubectl prints the message).
fn failure_status(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_keep_every_command_word() {
        let options =
            parse_options("command=sh&command=-c&command=exit+3&container=nginx&stdout=true&stderr=true", false)
                .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(options.command, ["sh", "-c", "exit 3"]);
        assert_eq!(options.container, "nginx");
        assert!(options.stdout && options.stderr && !options.stdin && !options.tty);
    }

    #[test]
    fn options_are_checked_as_the_api_server_does() {
        let refused = |query: &str, attach: bool| parse_options(query, attach).err().map(|e| e.message);
        assert!(refused("stdout=true", false).is_some_and(|e| e.contains("at least one command")));
        assert!(refused("command=ls", false).is_some_and(|e| e.contains("at least 1 of stdin, stdout, stderr")));
        assert!(refused("command=sh&tty=true&stderr=true", false).is_some_and(|e| e.contains("tty and stderr")));
        assert!(refused("stdin=true&stdout=true&tty=true", true).is_none());
    }

    #[test]
    fn exit_codes_travel_as_client_go_reads_them() {
        assert_eq!(exit_status(&[], 0)["status"], "Success");
        let failed = exit_status(&["sh".into()], 3);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
    }
}
