//! The append-only log that makes the store durable: one JSON record a line, fsync'd before a write is
//! acknowledged, replayed (and compacted into a snapshot) at start.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

/// One logged write: the object's new state, or `None` when it was removed.
#[derive(Debug, Clone)]
pub struct Record {
    /// Global resourceVersion after the write.
    pub rv: u64,
    /// Storage key of the resource type.
    pub key: String,
    /// Namespace ("" for cluster-scoped).
    pub ns: String,
    /// Object name.
    pub name: String,
    /// New state, or `None` for a removal.
    pub object: Option<Value>,
}

/// What replaying the log found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Records in log order.
    pub records: Vec<Record>,
    /// The highest resourceVersion seen.
    pub rv: u64,
    /// The pod IP allocator's next index, if a snapshot header carried it.
    pub ip_next: Option<u32>,
}

/// Group commit: appends happen under the store lock without an fsync; a writer about to acknowledge
/// waits here, and whoever gets the lock first fsyncs for every append made so far.
#[derive(Debug, Default)]
pub struct Durability {
    file: parking_lot::Mutex<Option<File>>,
    written: std::sync::atomic::AtomicU64,
    synced: std::sync::atomic::AtomicU64,
}

impl Durability {
    fn set_file(&self, file: File, synced_rv: u64) {
        *self.file.lock() = Some(file);
        self.synced.fetch_max(synced_rv, Ordering::SeqCst);
    }

    /// Block until every append made so far is on disk.
    pub fn wait(&self) -> std::io::Result<()> {
        let want = self.written.load(Ordering::SeqCst);
        if self.synced.load(Ordering::SeqCst) >= want {
            return Ok(());
        }
        let guard = self.file.lock();
        if self.synced.load(Ordering::SeqCst) >= want {
            return Ok(());
        }
        let target = self.written.load(Ordering::SeqCst);
        if let Some(f) = guard.as_ref() {
            f.sync_data()?;
        }
        self.synced.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }
}

/// The open log.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
    appended: usize,
    durability: std::sync::Arc<Durability>,
}

fn io_err(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Wal {
    /// Replay `dir/state.log` (ignoring a torn last line), then rewrite it as a compact snapshot of
    /// `objects` produced by `snapshot` and open it for appending.
    pub fn open(dir: &Path) -> std::io::Result<(Self, Replayed)> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let path = dir.join("state.log");
        let replayed = if path.exists() { read_log(&path)? } else { Replayed::default() };
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io_err(&path, e))?;
        let durability = std::sync::Arc::new(Durability::default());
        durability.set_file(file.try_clone()?, replayed.rv);
        Ok((Self { file, path, appended: 0, durability }, replayed))
    }

    /// Replace the log with a snapshot: a header, then one record per live object.
    pub fn compact<'a>(
        &mut self,
        rv: u64,
        ip_next: u32,
        objects: impl Iterator<Item = (&'a str, &'a str, &'a str, &'a Value)>,
    ) -> std::io::Result<()> {
        let tmp = self.path.with_extension("log.tmp");
        {
            let mut out = std::io::BufWriter::new(File::create(&tmp).map_err(|e| io_err(&tmp, e))?);
            writeln!(out, "{}", json!({"header": true, "rv": rv, "ipNext": ip_next}))?;
            for (key, ns, name, obj) in objects {
                writeln!(out, "{}", json!({"rv": rv, "key": key, "ns": ns, "name": name, "object": obj}))?;
            }
            out.flush()?;
            out.get_ref().sync_all()?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| io_err(&self.path, e))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            d.sync_all()?;
        }
        self.appended = 0;
        self.file = OpenOptions::new().append(true).open(&self.path).map_err(|e| io_err(&self.path, e))?;
        self.durability.set_file(self.file.try_clone()?, rv);
        Ok(())
    }

    /// Append one record (durable once [`Durability::wait`] returns).
    pub fn append(&mut self, rv: u64, key: &str, ns: &str, name: &str, object: Option<&Value>) -> std::io::Result<()> {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            rv: u64,
            key: &'a str,
            ns: &'a str,
            name: &'a str,
            object: Option<&'a Value>,
        }
        let mut bytes = serde_json::to_vec(&Line { rv, key, ns, name, object })?;
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        self.appended += 1;
        self.durability.written.fetch_max(rv, Ordering::SeqCst);
        Ok(())
    }

    /// The group-commit handle writers wait on.
    pub fn durability(&self) -> std::sync::Arc<Durability> {
        self.durability.clone()
    }

    /// Records appended since the last compaction.
    pub fn appended(&self) -> usize {
        self.appended
    }
}

fn read_log(path: &Path) -> std::io::Result<Replayed> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut reader = BufReader::new(file);
    let mut out = Replayed::default();
    let mut good_len: u64 = 0;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            break;
        }
        if !line.ends_with('\n') {
            break; // torn write: never acknowledged
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            break;
        };
        good_len += n as u64;
        let rv = v.get("rv").and_then(Value::as_u64).unwrap_or(0);
        out.rv = out.rv.max(rv);
        if v.get("header").is_some() {
            out.ip_next = v.get("ipNext").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok());
            continue;
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let object = v.get("object").filter(|o| !o.is_null()).cloned();
        out.records.push(Record { rv, key: s("key"), ns: s("ns"), name: s("name"), object });
    }
    let len = std::fs::metadata(path)?.len();
    if good_len < len {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(good_len)?;
        f.sync_all()?;
    }
    Ok(out)
}
