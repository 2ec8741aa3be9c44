//! The "container runtime" of exec and attach: the host's command, run by `nsenter --uts=… ip netns
//! exec …` in the pod's namespaces (so it sees the pod's hostname, IP, resolv.conf and hosts), on pipes
//! or on a pty.

use std::process::{ExitStatus, Stdio};

use axum::body::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

/// The remotecommand channels the process writes to.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// What to run, and how.
pub struct Launch {
    /// The pod's `ip netns` name.
    pub netns: String,
    /// The file holding the pod's UTS namespace (its hostname).
    pub uts: String,
    /// The command and its arguments (the host's program).
    pub argv: Vec<String>,
    /// The environment (the process gets only this).
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub workdir: String,
    pub tty: bool,
    /// The terminal's size at start (rows × columns 24 × 80 when the client sent none).
    pub size: Option<pty_process::Size>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// Where the client's stdin goes.
pub enum Input {
    /// A pipe (`None`: no stdin asked for, or already closed).
    Pipe(Option<ChildStdin>),
    /// The pty's master: keystrokes, and the window size.
    Pty(pty_process::OwnedWritePty),
}

impl Input {
    /// Passes the client's bytes on; an error means the process no longer reads.
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Input::Pipe(Some(pipe)) => pipe.write_all(data).await,
            Input::Pipe(None) => Ok(()),
            Input::Pty(pty) => pty.write_all(data).await,
        }
    }

    /// Passes the client's bytes on; when the process no longer reads, its stdin is closed (later
    /// bytes go nowhere, as on a closed pipe).
    pub async fn write_or_close(&mut self, data: &[u8]) {
        if self.write(data).await.is_err() {
            self.close().await;
        }
    }

    /// The client's stdin ended: a pipe is closed; a terminal gets end-of-file (^D), as typed.
    pub async fn close(&mut self) {
        match self {
            Input::Pipe(pipe) => drop(pipe.take()),
            Input::Pty(pty) => {
                let _ = pty.write_all(&[0x04]).await;
            }
        }
    }

    /// A resize message for a pty.
    pub fn resize(&self, message: &[u8]) {
        if let (Input::Pty(pty), Some(size)) = (self, terminal_size(message)) {
            let _ = pty.resize(size);
        }
    }
}

/// A resize message: `{"Width":W,"Height":H}`, client-go's TerminalSize.
pub fn terminal_size(message: &[u8]) -> Option<pty_process::Size> {
    let size = serde_json::from_slice::<serde_json::Value>(message).ok()?;
    let dim = |key: &str| size.get(key).and_then(serde_json::Value::as_u64).and_then(|v| u16::try_from(v).ok());
    Some(pty_process::Size::new(dim("Height")?, dim("Width")?))
}

/// A started process: its stdin, and its output as (channel, bytes), which ends when every output
/// reached end-of-file.
pub struct Running {
    pub child: Child,
    pub input: Input,
    pub output: mpsc::Receiver<(u8, Bytes)>,
}

impl Running {
    /// Ends the process and everything it started in its process group (its own PID's group).
    pub fn kill(&mut self) {
        if let Some(pid) =
            self.child.id().and_then(|id| i32::try_from(id).ok()).and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
    }
}

/// Output chunks in flight per process: with 32 KiB reads, at most ~0.5 MiB waits for the client.
const OUTPUT_QUEUE: usize = 16;
const READ_SIZE: usize = 32 * 1024;

/// Starts `launch` (blocking only briefly: fork and exec).
pub fn spawn(launch: &Launch) -> std::io::Result<Running> {
    // nsenter and ip both exec what follows: the process is the command itself
    let mut args =
        vec![format!("--uts={}", launch.uts), "ip".into(), "netns".into(), "exec".into(), launch.netns.clone()];
    args.extend(launch.argv.iter().cloned());
    let (sender, output) = mpsc::channel(OUTPUT_QUEUE);
    if launch.tty {
        let (pty, pts) = pty_process::open().map_err(std::io::Error::other)?;
        pty.resize(launch.size.unwrap_or(pty_process::Size::new(24, 80))).map_err(std::io::Error::other)?;
        // The child leads a new session with the pty as its controlling terminal (so its process
        // group is its PID, and closing the master hangs it up).
        let child = pty_process::Command::new("nsenter")
            .args(&args)
            .env_clear()
            .envs(launch.env.iter().cloned())
            .current_dir(&launch.workdir)
            .kill_on_drop(true)
            .spawn(pts)
            .map_err(std::io::Error::other)?;
        let (reader, writer) = pty.into_split();
        tokio::spawn(forward(reader, STDOUT, sender));
        return Ok(Running { child, input: Input::Pty(writer), output });
    }
    let piped = |wanted: bool| if wanted { Stdio::piped() } else { Stdio::null() };
    let mut child = tokio::process::Command::new("nsenter")
        .args(&args)
        .env_clear()
        .envs(launch.env.iter().cloned())
        .current_dir(&launch.workdir)
        .stdin(piped(launch.stdin))
        .stdout(piped(launch.stdout))
        .stderr(piped(launch.stderr))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward(out, STDOUT, sender.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward(err, STDERR, sender));
    }
    let input = Input::Pipe(child.stdin.take());
    Ok(Running { child, input, output })
}

/// Copies one output to the channel until end-of-file (a pty's master reads EIO once the terminal's
/// last holder closed it: that is its end-of-file too) or until nobody listens.
async fn forward(mut from: impl AsyncRead + Unpin, channel: u8, to: mpsc::Sender<(u8, Bytes)>) {
    let mut buffer = vec![0u8; READ_SIZE];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send((channel, Bytes::copy_from_slice(&buffer[..n]))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The exit code as a container runtime reports it: the code, or 128 + the signal that ended it.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|signal| 128 + signal)).unwrap_or(1)
}
