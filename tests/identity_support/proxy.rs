//! A counting proxy in front of the stand-in's API: the controller's client talks through it, so tests
//! and the benchmark can count the controller's requests per verb and resource (the stand-in keeps no
//! request counters). It forwards bytes untouched and parses only the request heads (HTTP/1.1,
//! keep-alive, bodies framed by Content-Length or chunked).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Request counts keyed by (verb, resource): verb is `list`, `watch`, `get`, `create`, `update`, `patch`
/// or `delete`; resource the plural (`pods`, `persistentvolumeclaims`, …, with `/status` for the
/// subresource).
#[derive(Clone, Default)]
pub struct ApiCounts(Arc<Mutex<BTreeMap<(String, String), u64>>>, Arc<Mutex<Vec<(String, String)>>>);

impl ApiCounts {
    /// How many `verb` requests on `resource` were made.
    pub fn get(&self, verb: &str, resource: &str) -> u64 {
        self.0.lock().unwrap().get(&(verb.to_owned(), resource.to_owned())).copied().unwrap_or(0)
    }

    /// The bodies of PATCH requests (with a Content-Length) to paths ending in `suffix`, in order.
    pub fn patches(&self, suffix: &str) -> Vec<serde_json::Value> {
        let bodies = self.1.lock().unwrap();
        bodies
            .iter()
            .filter(|(target, _)| target.split('?').next().unwrap_or("").ends_with(suffix))
            .filter_map(|(_, body)| serde_json::from_str(body).ok())
            .collect()
    }

    /// A copy of every count.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.0.lock().unwrap().clone()
    }

    /// Requests whose verb is a read (`list`, `get`, `watch`).
    pub fn reads(&self) -> u64 {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|((v, _), _)| matches!(v.as_str(), "list" | "get" | "watch"))
            .map(|(_, n)| n)
            .sum()
    }

    /// A one-line rendering (`list pods=3, get statefulsets=40, …`).
    pub fn render(&self) -> String {
        self.snapshot().iter().map(|((v, r), n)| format!("{v} {r}={n}")).collect::<Vec<_>>().join(", ")
    }

    fn count(&self, method: &str, target: &str) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // /api/v1/... or /apis/<group>/<version>/...
        let rest: &[&str] = match segs.first() {
            Some(&"api") if segs.len() >= 2 => &segs[2..],
            Some(&"apis") if segs.len() >= 3 => &segs[3..],
            _ => return,
        };
        let (resource, tail): (&str, &[&str]) = match rest {
            ["namespaces", _, r, tail @ ..] => (r, tail),
            [r, tail @ ..] => (r, tail),
            [] => return,
        };
        let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
        let named = !tail.is_empty();
        let verb = match method {
            "GET" if watch => "watch",
            "GET" if named => "get",
            "GET" => "list",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => return,
        };
        let resource = match tail.get(1) {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_owned(),
        };
        *self.0.lock().unwrap().entry((verb.to_owned(), resource)).or_default() += 1;
    }
}

/// Start the proxy in front of `upstream`; it lives as long as the runtime.
pub async fn start(upstream: SocketAddr) -> (SocketAddr, ApiCounts) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = ApiCounts::default();
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else { return };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async move {
                    let mut parser = Parser::default();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        parser.feed(&buf[..n], &c);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                futures_util::future::join(up, down).await;
            });
        }
    });
    (addr, counts)
}

/// Where the request parser is in the client's byte stream.
#[derive(Default)]
enum Body {
    /// Reading a request head.
    #[default]
    Head,
    /// Skipping this many body bytes.
    Fixed(usize),
    /// Inside a chunked body: reading a chunk-size line.
    ChunkSize,
    /// Skipping chunk data plus its CRLF.
    ChunkData(usize),
    /// After the last chunk: skipping trailers up to the empty line.
    Trailers,
    /// Something unparseable went by: stop counting on this connection.
    Lost,
}

#[derive(Default)]
struct Parser {
    buf: Vec<u8>,
    state: Body,
    /// The target of a PATCH whose body is being read, and the body so far.
    patch: Option<(String, Vec<u8>)>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Parser {
    fn feed(&mut self, bytes: &[u8], counts: &ApiCounts) {
        self.buf.extend_from_slice(bytes);
        loop {
            match self.state {
                Body::Lost => {
                    self.buf.clear();
                    return;
                }
                Body::Head => {
                    let Some(end) = find(&self.buf, b"\r\n\r\n") else { return };
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 4);
                    let mut lines = head.split("\r\n");
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
                    counts.count(method, target);
                    self.patch = (method == "PATCH").then(|| (target.to_owned(), Vec::new()));
                    let mut state = Body::Head;
                    for l in lines {
                        let Some((k, v)) = l.split_once(':') else { continue };
                        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                        if k == "content-length" {
                            state = v.parse().map_or(Body::Lost, Body::Fixed);
                        } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                            state = Body::ChunkSize;
                        }
                    }
                    self.state = state;
                }
                Body::Fixed(n) => {
                    let take = n.min(self.buf.len());
                    let taken: Vec<u8> = self.buf.drain(..take).collect();
                    if let Some((_, body)) = self.patch.as_mut() {
                        body.extend_from_slice(&taken);
                    }
                    if take < n {
                        self.state = Body::Fixed(n - take);
                        return;
                    }
                    if let Some((target, body)) = self.patch.take() {
                        counts.1.lock().unwrap().push((target, String::from_utf8_lossy(&body).into_owned()));
                    }
                    self.state = Body::Head;
                }
                Body::ChunkSize => {
                    let Some(end) = find(&self.buf, b"\r\n") else { return };
                    let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 2);
                    let size = line.split(';').next().unwrap_or("").trim();
                    self.state = match usize::from_str_radix(size, 16) {
                        Ok(0) => Body::Trailers,
                        Ok(n) => Body::ChunkData(n + 2),
                        Err(_) => Body::Lost,
                    };
                }
                Body::ChunkData(n) => {
                    let take = n.min(self.buf.len());
                    self.buf.drain(..take);
                    if take < n {
                        self.state = Body::ChunkData(n - take);
                        return;
                    }
                    self.state = Body::ChunkSize;
                }
                Body::Trailers => {
                    let Some(end) = find(&self.buf, b"\r\n") else { return };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        self.state = Body::Head;
                    }
                }
            }
        }
    }
}
