//! `cargo bench -p syncpeer --bench transport`: what the sync port's mutual TLS costs, measured in
//! one process, side by side: one node with the same handlers (`server::router`) served over plain
//! TCP and over the TLS listener, each request sent to both in turn, so that a noisy machine
//! slows both alike.
//!
//! Per request kind: median and p90 latency (request sent -> whole answer read), wire bytes per
//! request and per payload byte. Wire bytes are everything the server's sockets read and wrote
//! (HTTP heads, TLS records and handshakes); payload bytes are the HTTP bodies both ways. "New per
//! request" opens a connection for every request (TCP, and for TLS the whole handshake), what a
//! neighbour pays once per connection: the daemon keeps one open per neighbour.
//! Knobs: `BENCH_SAMPLES` (200; the large blob a quarter of it), `BENCH_FILES` (300 files of
//! 1 KiB, about one pull page of inline content), `BENCH_BLOB_MB` (4).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::connect_info::MockConnectInfo;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use syncpeer::client::{PeerClient, Request};
use syncpeer::codec::{PullReq, encode_pull_req};
use syncpeer::identity::Identity;
use syncpeer::knowledge::Knowledge;
use syncpeer::listener::{PeerAddr, TlsListener};
use syncpeer::tls::{Credentials, client_config, server_config};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

fn env_or(name: &str, d: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// Bytes read and written by the server's sockets.
#[derive(Default)]
struct Tally {
    read: AtomicU64,
    written: AtomicU64,
}

impl Tally {
    fn take(&self) -> u64 {
        self.read.swap(0, Ordering::Relaxed) + self.written.swap(0, Ordering::Relaxed)
    }
}

/// A socket that counts its bytes into a [`Tally`].
struct Counted {
    inner: TcpStream,
    tally: Arc<Tally>,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.tally.read.fetch_add(n, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.tally.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener whose connections are [`Counted`].
struct CountingListener {
    inner: TcpListener,
    tally: Arc<Tally>,
}

impl axum::serve::Listener for CountingListener {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            if let Ok((s, a)) = self.inner.accept().await {
                // As the daemon's sync port does (see `daemon::run`).
                let _ = s.set_nodelay(true);
                let tally = self.tally.clone();
                return (Counted { inner: s, tally }, a);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A sync folder of `files` small files and one large one, indexed: the node both servers serve.
fn node(dir: &std::path::Path, me: &Identity, client: &Identity, files: u64, blob_mb: u64) -> syncpeer::node::Node {
    let key = dir.join("key");
    me.save(&key).unwrap();
    let sync = dir.join("sync");
    std::fs::create_dir_all(&sync).unwrap();
    for i in 0..files {
        let content: Vec<u8> = (0..1024u32).map(|j| (j as u64 * 31 + i * 7) as u8).collect();
        std::fs::write(sync.join(format!("f-{i:05}.bin")), content).unwrap();
    }
    let big: Vec<u8> = (0..(blob_mb << 20) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(sync.join("big.bin"), big).unwrap();
    let yaml = format!(
        "name: bench\nlisten: 127.0.0.1:1\nhttp: 127.0.0.1:2\nsync_dir: {d}/sync\nstate_dir: {d}/state\nkey_file: {}\n\
         peers:\n  - name: client\n    addr: 127.0.0.1:3\n    public_key: {}\ntrusted:\n",
        key.display(),
        client.id().hex(),
        d = dir.display()
    );
    let settings = syncpeer::config::Settings::from_yaml(&yaml, &dir.join("c.yaml"), &Default::default()).unwrap();
    let node = syncpeer::daemon::build_node(settings).unwrap().0;
    syncpeer::scanner::full_scan(&node);
    node
}

/// One request kind: method, path, body.
struct Kind {
    name: String,
    method: &'static str,
    path: String,
    body: Bytes,
    samples: u64,
}

/// Plain HTTP client on a kept-open connection (or a new one per request: `idle` 0).
fn plain_client(idle: usize) -> Client<HttpConnector, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle)
        .build(http)
}

async fn plain(client: &Client<HttpConnector, Full<Bytes>>, addr: SocketAddr, k: &Kind) -> u64 {
    let req = hyper::Request::builder()
        .method(k.method)
        .uri(format!("http://{addr}{}", k.path))
        .body(Full::new(k.body.clone()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert!(resp.status().is_success(), "{} plain: {}", k.name, resp.status());
    resp.into_body().collect().await.unwrap().to_bytes().len() as u64
}

async fn tls(client: &PeerClient, k: &Kind) -> u64 {
    let req = if k.method == "GET" {
        Request::get(k.path.clone())
    } else {
        Request::post(k.path.clone())
    };
    let mut resp = client.execute(req.body(k.body.clone())).await.unwrap();
    assert!(resp.status().is_success(), "{} TLS: {}", k.name, resp.status());
    let mut n = 0;
    while let Some(c) = resp.chunk().await.unwrap() {
        n += c.len() as u64;
    }
    n
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Samples of one side: latencies (ms), wire and payload bytes.
#[derive(Default)]
struct Side {
    ms: Vec<f64>,
    wire: u64,
    payload: u64,
}

impl Side {
    fn add(&mut self, t: Duration, wire: u64, payload: u64) {
        self.ms.push(t.as_secs_f64() * 1000.0);
        self.wire += wire;
        self.payload += payload;
    }

    fn cells(&mut self) -> String {
        let ratio = self.wire as f64 / self.payload.max(1) as f64;
        let per_request = self.wire as f64 / self.ms.len().max(1) as f64;
        format!(
            "{:.3} | {:.3} | {:.0} | {:.3}",
            pct(&mut self.ms, 0.5),
            pct(&mut self.ms, 0.9),
            per_request,
            ratio
        )
    }
}

fn main() {
    let samples = env_or("BENCH_SAMPLES", 200);
    let files = env_or("BENCH_FILES", 300);
    let blob_mb = env_or("BENCH_BLOB_MB", 4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (me, them) = (Identity::generate(), Identity::generate());
    let node = Arc::new(node(dir.path(), &me, &them, files, blob_mb));
    let big_hash = node.index().get("big.bin").unwrap().hash.clone();
    let (plain_tally, tls_tally) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let _guard = rt.enter();
    let (plain_addr, tls_addr) = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_addr = l.local_addr().unwrap();
        let counted = CountingListener {
            inner: l,
            tally: plain_tally.clone(),
        };
        // The plain server is told who the client is (what the old header did).
        let as_them = MockConnectInfo(PeerAddr {
            addr: plain_addr,
            id: them.id(),
        });
        let app = syncpeer::server::router(node.clone()).layer(as_them);
        tokio::spawn(async move { axum::serve(counted, app).await });
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_addr = l.local_addr().unwrap();
        let counted = CountingListener {
            inner: l,
            tally: tls_tally.clone(),
        };
        let config = server_config(&Credentials::new(&me).unwrap(), vec![them.id()]).unwrap();
        let listener = TlsListener::new(counted, config, me.id()).unwrap();
        let app = syncpeer::server::router(node.clone()).into_make_service_with_connect_info::<PeerAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (plain_addr, tls_addr)
    });
    let creds = Credentials::new(&them).unwrap();
    let tls_config = client_config(&creds, me.id()).unwrap();
    let pull = encode_pull_req(&PullReq {
        knowledge: Knowledge::new(),
        inline: true,
    });
    let kinds = [
        Kind {
            name: "summary".into(),
            method: "POST",
            path: "/v1/summary".into(),
            body: Bytes::from(format!("{{\"digest\":\"{}\"}}", "0".repeat(64))),
            samples,
        },
        Kind {
            name: "pull page (1 KiB files inline)".into(),
            method: "POST",
            path: "/v1/pull".into(),
            body: pull.into(),
            samples,
        },
        Kind {
            name: format!("blob {blob_mb} MiB"),
            method: "GET",
            path: format!("/v1/blob/{big_hash}"),
            body: Bytes::new(),
            samples: (samples / 4).max(5),
        },
    ];
    println!(
        "syncpeer transport bench: {} cores, {samples} samples, plain and TLS alternating",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let side = |s: &str| format!("{s} p50 ms | {s} p90 ms | {s} wire B/req | {s} wire/payload");
    println!("| request | connection | {} | {} |", side("plain"), side("TLS"));
    println!("|---|---|{}", "---|".repeat(8));
    for (fresh, label) in [(false, "kept open"), (true, "new per request")] {
        for k in &kinds {
            if fresh && k.name != "summary" {
                continue;
            }
            let idle = if fresh { 0 } else { 1 };
            let (pc, tc) = (
                plain_client(idle),
                PeerClient::new(&tls_addr.to_string(), tls_config.clone(), idle),
            );
            let (mut p, mut t) = (Side::default(), Side::default());
            rt.block_on(async {
                // Warm-up (and the kept connection opened) outside the measurement.
                plain(&pc, plain_addr, k).await;
                tls(&tc, k).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                plain_tally.take();
                tls_tally.take();
                for _ in 0..k.samples {
                    let t0 = Instant::now();
                    let n = plain(&pc, plain_addr, k).await;
                    let took = t0.elapsed();
                    // A connection closed after its request shows its goodbye a little later.
                    if fresh {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    p.add(took, plain_tally.take(), n + k.body.len() as u64);
                    let t0 = Instant::now();
                    let n = tls(&tc, k).await;
                    let took = t0.elapsed();
                    if fresh {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    t.add(took, tls_tally.take(), n + k.body.len() as u64);
                }
            });
            println!("| {} | {label} | {} | {} |", k.name, p.cells(), t.cells());
        }
    }
}
