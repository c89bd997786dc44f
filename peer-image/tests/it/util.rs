//! Shared helpers: a [`Cluster`] of real `syncpeer` processes on 127.0.0.x loopback addresses,
//! each with its own temp dir, plus polling waits, a tiny HTTP client and metric parsing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use syncpeer::identity::{Identity, PeerId};

pub const BIN: &str = env!("CARGO_BIN_EXE_syncpeer");

/// Generous: the suite runs on 2 cores next to other builds.
pub const TIMEOUT: Duration = Duration::from_secs(40);

static NEXT_IP: AtomicU32 = AtomicU32::new(0);

/// A fresh loopback IP per peer, so tests running in parallel never share an address.
pub fn fresh_ip() -> String {
    let n = NEXT_IP.fetch_add(1, Ordering::Relaxed) + std::process::id() % 50 * 200;
    format!("127.{}.{}.{}", 1 + (n / 60000) % 200, (n / 250) % 240 + 1, n % 250 + 2)
}

/// A free port on `ip` (bind to 0 and release).
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// Polls `cond` every 25 ms until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// `GET http://addr/path` -> (status, body): plain HTTP, as the status port speaks it.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let (status, body) = parse_response(&buf)?;
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// An HTTP/1.0 response -> (status, body).
pub fn parse_response(buf: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    if !head.starts_with("HTTP/1.") {
        return None;
    }
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, buf[end + 4..].to_vec()))
}

/// One HTTP/1.0 request to a sync port over mutual TLS, presenting `me`'s certificate and
/// expecting the server to hold `server`'s key, as a neighbour does. `headers` are extra lines
/// (`name: value`). Ok((status, body)), or the error that ended the exchange (a refused handshake
/// shows up here, at the latest when the response is read).
pub fn sync_request(
    addr: &str,
    me: &Identity,
    server: PeerId,
    method: &str,
    path: &str,
    headers: &[String],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut raw = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    let answer = sync_raw(addr, me, server, &raw)?;
    parse_response(&answer).ok_or_else(|| std::io::Error::other("not an HTTP response"))
}

/// Sends `raw` bytes (one request or several pipelined, the last one closing) over one mutual TLS
/// connection to a sync port as `me`, and returns everything the server sent back.
pub fn sync_raw(addr: &str, me: &Identity, server: PeerId, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let creds = syncpeer::tls::Credentials::new(me).unwrap();
    let config = syncpeer::tls::client_config(&creds, server).unwrap();
    let sock: std::net::SocketAddr = addr.parse().unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(sock.ip().into());
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(raw)?;
    tls.flush()?;
    let mut buf = Vec::new();
    match tls.read_to_end(&mut buf) {
        Ok(_) => Ok(buf),
        // A server that closes without TLS's goodbye after a whole response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => Ok(buf),
        Err(e) => Err(e),
    }
}

/// A `peers:` item for a test client that only ever connects (a neighbour that listens
/// nowhere): lets the test talk to a peer's sync port as `id`.
pub fn probe_yaml(name: &str, id: &Identity) -> String {
    format!(
        "  - name: {name}\n    addr: 127.0.0.1:1\n    public_key: {}\n",
        id.id().hex()
    )
}

pub struct Peer {
    pub name: String,
    pub ip: String,
    pub sync_port: u16,
    pub http_port: u16,
    pub root: PathBuf,
    pub id: Identity,
    pub child: Option<Child>,
    /// Appended to the config (top-level keys).
    pub extra_yaml: String,
    /// Appended to the `peers:` list (e.g. a fake peer).
    pub extra_peers: String,
    /// Extra environment of the process (e.g. a test-only fault hook).
    pub env: Vec<(String, String)>,
}

impl Peer {
    pub fn sync_dir(&self) -> PathBuf {
        self.root.join("sync")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn http(&self) -> String {
        format!("{}:{}", self.ip, self.http_port)
    }
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.sync_port)
    }
    pub fn pubkey(&self) -> String {
        self.id.id().hex()
    }

    /// `GET path` on this peer's sync port, as the neighbour `me` -> (status, body).
    pub fn sync_get(&self, me: &Identity, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        sync_request(&self.addr(), me, self.id.id(), "GET", path, &[], b"")
    }

    /// `POST path` on this peer's sync port, as the neighbour `me` -> (status, body).
    pub fn sync_post(&self, me: &Identity, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        sync_request(&self.addr(), me, self.id.id(), "POST", path, &[], body)
    }

    pub fn status(&self) -> Option<serde_json::Value> {
        let (code, body) = http_get(&self.http(), "/v1/status")?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// Whether `/v1/status` shows `flag` (e.g. `quarantined`, `pruned`) true for neighbour `name`.
    pub fn neighbour_flag(&self, name: &str, flag: &str) -> bool {
        self.status().is_some_and(|s| {
            s["neighbours"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["name"] == name && n[flag] == true)
        })
    }

    pub fn digest(&self) -> Option<String> {
        self.status()
            .and_then(|s| s["index_digest"].as_str().map(str::to_string))
    }

    pub fn metrics(&self) -> Metrics {
        Metrics(http_get(&self.http(), "/metrics").map(|(_, b)| b).unwrap_or_default())
    }

    pub fn write(&self, rel: &str, content: &[u8]) {
        let p = self.sync_dir().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.sync_dir().join(rel)).ok()
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.sync_dir().join(rel)).unwrap();
    }

    /// The user-visible tree: relative path -> content (names starting `.syncpeer` skipped).
    pub fn tree(&self) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            let Ok(rd) = std::fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".syncpeer") {
                    continue;
                }
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else if let Ok(b) = std::fs::read(&p) {
                    out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), b);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.sync_dir(), &self.sync_dir(), &mut out);
        out
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Metric text with a lookup helper.
pub struct Metrics(pub String);

impl Metrics {
    /// Sum of all samples of `name` whose label set contains every `labels` pair.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut total = 0.0;
        for line in self.0.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (n, lbl) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                continue;
            }
            if labels
                .iter()
                .all(|(k, v)| lbl.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            {
                total += value.parse::<f64>().unwrap_or(0.0);
            }
        }
        total
    }

    /// Every message/byte counter except `kind="summary"` (what must be flat at quiescence),
    /// plus the change counters.
    pub fn non_summary_activity(&self) -> f64 {
        let mut t = 0.0;
        for m in ["syncpeer_messages_sent_total", "syncpeer_messages_received_total"] {
            for k in ["index", "blob", "hint"] {
                t += self.sum(m, &[("kind", k)]);
            }
        }
        for m in [
            "syncpeer_local_changes_total",
            "syncpeer_versions_applied_total",
            "syncpeer_conflicts_total",
        ] {
            t += self.sum(m, &[]);
        }
        t
    }
}

pub struct Cluster {
    pub peers: Vec<Peer>,
    pub edges: Vec<(usize, usize)>,
    pub _dir: tempfile::TempDir,
    pub interval_ms: u64,
    /// `flavor:` of every peer's config (`default`, or `legacy`).
    pub flavor: &'static str,
}

impl Cluster {
    /// `n` peers (not started) connected by undirected `edges`.
    pub fn new(n: usize, edges: &[(usize, usize)]) -> Cluster {
        let mut dir = tempfile::tempdir().unwrap();
        // SYNCPEER_KEEP=1 keeps every peer's folders and logs for a post-mortem.
        if std::env::var_os("SYNCPEER_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("cluster folder kept: {}", dir.path().display());
        }
        let peers = (0..n)
            .map(|i| {
                let ip = fresh_ip();
                let root = dir.path().join(format!("p{i}"));
                std::fs::create_dir_all(root.join("sync")).unwrap();
                Peer {
                    name: format!("p{i}"),
                    sync_port: free_port(&ip),
                    http_port: free_port(&ip),
                    ip,
                    root,
                    id: Identity::generate(),
                    child: None,
                    extra_yaml: String::new(),
                    extra_peers: String::new(),
                    env: Vec::new(),
                }
            })
            .collect();
        Cluster {
            peers,
            edges: edges.to_vec(),
            _dir: dir,
            interval_ms: 300,
            flavor: "default",
        }
    }

    pub fn neighbours(&self, i: usize) -> Vec<usize> {
        self.edges
            .iter()
            .filter_map(|&(a, b)| {
                if a == i {
                    Some(b)
                } else if b == i {
                    Some(a)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Writes `config.yaml` and the key file for peer `i`.
    pub fn write_config(&self, i: usize) -> PathBuf {
        let p = &self.peers[i];
        let key = p.root.join("identity.key");
        if !key.exists() {
            p.id.save(&key).unwrap();
        }
        let mut y = format!(
            "name: {}\nlisten: {}\nhttp: {}\nsync_dir: {}\nstate_dir: {}\nkey_file: {}\nanti_entropy_interval_ms: {}\nflavor: {}\n",
            p.name,
            p.addr(),
            p.http(),
            p.sync_dir().display(),
            p.state_dir().display(),
            key.display(),
            self.interval_ms,
            self.flavor
        );
        y.push_str("peers:\n");
        for j in self.neighbours(i) {
            let q = &self.peers[j];
            y.push_str(&format!(
                "  - name: {}\n    addr: {}\n    public_key: {}\n",
                q.name,
                q.addr(),
                q.pubkey()
            ));
        }
        y.push_str(&p.extra_peers);
        y.push_str("trusted:\n");
        for q in &self.peers {
            y.push_str(&format!("  - name: {}\n    public_key: {}\n", q.name, q.pubkey()));
        }
        y.push_str(&p.extra_yaml);
        let cfg = p.root.join("config.yaml");
        std::fs::write(&cfg, y).unwrap();
        cfg
    }

    pub fn start(&mut self, i: usize) {
        let cfg = self.write_config(i);
        let log = std::fs::File::create(
            self.peers[i]
                .root
                .join(format!("log-{}", Instant::now().elapsed().as_nanos())),
        )
        .unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "syncpeer=debug,info")
            .envs(self.peers[i].env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.peers[i].child = Some(child);
        let http = self.peers[i].http();
        wait_until(&format!("{} ready", self.peers[i].name), TIMEOUT, || {
            http_get(&http, "/v1/status").is_some()
        });
    }

    pub fn start_all(&mut self) {
        for i in 0..self.peers.len() {
            self.start(i);
        }
    }

    /// All running peers report the same digest.
    pub fn converged(&self) -> bool {
        let ds: Vec<Option<String>> = self.peers.iter().map(|p| p.digest()).collect();
        ds[0].is_some() && ds.windows(2).all(|w| w[0] == w[1])
    }

    pub fn wait_converged(&self) {
        wait_until("all digests equal", TIMEOUT, || self.converged());
    }

    /// Waits until digests agree and every peer's tree equals `expected`.
    pub fn wait_trees(&self, expected: &BTreeMap<String, Vec<u8>>) {
        wait_until("trees as expected", TIMEOUT, || {
            self.converged() && self.peers.iter().all(|p| &p.tree() == expected)
        });
    }

    /// Sum of non-summary activity over all peers.
    pub fn activity(&self) -> f64 {
        self.peers.iter().map(|p| p.metrics().non_summary_activity()).sum()
    }

    /// Waits until digests agree and activity stays unchanged for `quiet` (several rounds).
    pub fn wait_quiescent(&self, quiet: Duration) -> f64 {
        self.wait_converged();
        let mut last = self.activity();
        let mut since = Instant::now();
        let start = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.activity();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet && self.converged() {
                return now;
            }
            assert!(start.elapsed() < TIMEOUT, "never quiescent");
        }
    }

    pub fn tree_of(files: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        files.iter().map(|(p, c)| (p.to_string(), c.to_vec())).collect()
    }
}

/// A first version of `path` by `author` (its counter `counter`), genuinely signed.
pub fn signed(author: &Identity, path: &str, content: &[u8], counter: u64) -> syncpeer::entry::Entry {
    let mut vv = syncpeer::version_vector::VersionVector::new();
    vv.set(&author.id().short(), counter);
    let hash = blake3::hash(content).to_hex().to_string();
    let hlc = syncpeer::hlc::Hlc { ms: 1_000, c: 0 };
    syncpeer::entry::Entry::author(author, path.into(), vv, hash, content.len() as u64, false, hlc)
}
