//! Wiring: builds the [`Node`] from [`Settings`], recovers, scans, starts every task and both
//! servers (the sync port behind mutual TLS, [`crate::listener`]; status and metrics in plain HTTP),
//! and shuts down gracefully on SIGTERM/SIGINT.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::sync::{Notify, watch};

use crate::client::PeerClient;
use crate::config::Settings;
use crate::entry::Entry;
use crate::identity::Identity;
use crate::index::Index;
use crate::legacy;
use crate::listener::{PeerAddr, TlsListener};
use crate::locks::Locks;
use crate::metrics::Metrics;
use crate::node::PENDING_MAX;
use crate::node::{Node, PeerState, pick_tmp_dir};
use crate::rate_limit::RateLimiter;
use crate::scan_queue::ScanRx;
use crate::tls::{self, Credentials};
use crate::{apply, fetch, scanner, server, status, sync};

/// Connections kept open to each neighbour between requests. A hint, a pull, a digest round and a
/// content batch to the same neighbour often overlap; with room for one idle connection the others
/// were closed after each exchange and the next overlap paid a new TLS handshake.
const IDLE_CONNECTIONS: usize = 4;

/// Runs the daemon until a signal; returns after a clean shutdown.
pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    work_from_data_root(&mut settings)?;
    let (node, intents, scan_rx) = build_node(settings)?;
    let node = Arc::new(node);
    let s = &node.settings;
    tracing::info!(name = %s.name, id = %node.me.id().hex(), sync = %s.sync_dir.display(), "starting");

    let stale = node.locks.sweep();
    node.metrics.stale_locks_removed.inc_by(stale as u64);
    apply::recover_intents(&node, intents)?;
    {
        let n = node.clone();
        tokio::task::spawn_blocking(move || scanner::full_scan(&n)).await?;
    }
    node.index_changed(&node.index());

    let sync_listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("cannot listen on {}", s.listen))?;
    let http_listener = tokio::net::TcpListener::bind(s.http)
        .await
        .with_context(|| format!("cannot listen on {}", s.http))?;
    let _watcher = match scanner::watch(&node) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("no filesystem events ({e}); relying on the periodic rescan");
            None
        }
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(scanner::run(node.clone(), scan_rx, stop_rx.clone())));
    tasks.push(tokio::spawn(fetch::run(node.clone(), stop_rx.clone())));
    for i in 0..node.peers.len() {
        tasks.push(tokio::spawn(sync::neighbour_loop(node.clone(), i, stop_rx.clone())));
        tasks.push(tokio::spawn(sync::hint_loop(node.clone(), i, stop_rx.clone())));
    }
    tasks.push(tokio::spawn(lock_sweeper(node.clone(), stop_rx.clone())));
    tasks.push(tokio::spawn(crate::flood::run(node.clone(), stop_rx.clone())));
    tasks.push(tokio::spawn(crate::sybil::run(node.clone(), stop_rx.clone())));
    tasks.push(tokio::spawn(crate::equivocation::run(node.clone(), stop_rx.clone())));
    if node.legacy() {
        // The seed's design: deletes are forgotten, and nothing scrubs.
        tasks.push(tokio::spawn(forget_deletes(node.clone(), stop_rx.clone())));
    } else {
        tasks.push(tokio::spawn(crate::scrub::run(node.clone(), stop_rx.clone())));
    }
    let mut srv_stop = stop_rx.clone();
    // Only neighbours get through the handshake; each request knows its sender by certificate.
    let neighbours = node.peers.iter().map(|p| p.cfg.key).collect();
    // No Nagle: a TLS record's small tail would otherwise wait for the reader's delayed ACK
    // (measured: 40 ms more on every pull page, `benches/transport.rs`).
    let sync_listener = sync_listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let sync_listener = TlsListener::new(
        sync_listener,
        tls::server_config(&node.credentials, neighbours)?,
        node.me.id(),
    )?;
    let sync_app = server::router(node.clone()).into_make_service_with_connect_info::<PeerAddr>();
    let sync_srv = axum::serve(sync_listener, sync_app).with_graceful_shutdown(async move {
        let _ = srv_stop.changed().await;
    });
    let mut http_stop = stop_rx.clone();
    let http_srv = axum::serve(http_listener, status::router(node.clone())).with_graceful_shutdown(async move {
        let _ = http_stop.changed().await;
    });
    let servers = tokio::spawn(async move {
        let (a, b) = tokio::join!(sync_srv, http_srv);
        a.and(b)
    });
    tracing::info!(listen = %s.listen, http = %s.http, "ready");

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    // In-flight applies finish (they are short); long transfers are cut and resume next time.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), servers).await;
    tracing::info!("stopped");
    Ok(())
}

/// Makes the folder holding both the sync and the state folder the working directory, and those
/// folders (and the Byzantine control file, when it is inside) relative to it, so that no file
/// operation resolves a path from `/`.
///
/// Why: in a container whose root file system is a FUSE mount (Docker's `fuse-overlayfs` storage
/// driver, the usual one for rootless Docker), every lookup that starts at `/` asks the FUSE daemon
/// for the root folder's ACL before it crosses into the bind-mounted data folder: a round trip to
/// another process per `open`, `stat` or `rename`. At 100 peers on 2 cores that was a sixth of the
/// machine's CPU in `fuse-overlayfs` alone (`docs/BENCHMARKS.md`). A relative lookup starts at the
/// working directory, which is on the data folder's own file system. The semantics are those of the
/// absolute paths: each lookup still walks from the (fixed) data folder down, so a sync folder that
/// is removed and made again is found again. Nothing changes when the two folders share no parent
/// but `/`.
pub fn work_from_data_root(settings: &mut Settings) -> anyhow::Result<()> {
    for dir in [&settings.sync_dir, &settings.state_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let sync = settings.sync_dir.canonicalize()?;
    let state = settings.state_dir.canonicalize()?;
    let Some(root) = common_root(&sync, &state) else {
        return Ok(());
    };
    // Files named relative to where the daemon was started must stay those files.
    let started_in = std::env::current_dir().context("cannot read the working directory")?;
    for file in [&mut settings.key_file, &mut settings.byzantine_file] {
        if file.is_relative() {
            *file = started_in.join(&*file);
        }
    }
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    let below = |p: &std::path::Path| p.strip_prefix(&root).map(std::path::Path::to_path_buf);
    settings.sync_dir = below(&sync)?;
    settings.state_dir = below(&state)?;
    if let Ok(rel) = below(&settings.byzantine_file) {
        settings.byzantine_file = rel;
    }
    Ok(())
}

/// The deepest folder above both `a` and `b` (absolute, canonical), if it is not `/` and neither
/// of them is that folder itself (a relative path must never be empty).
fn common_root(a: &std::path::Path, b: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut root = std::path::PathBuf::new();
    for (x, y) in a.components().zip(b.components()) {
        if x != y {
            break;
        }
        root.push(x);
    }
    let useful = root.parent().is_some() && root != a && root != b;
    useful.then_some(root)
}

/// The shared state of a daemon from its settings: folders created, index opened (with the
/// intents of an interrupted apply), nothing started. Also the receiving end of the scanner's
/// queue.
pub fn build_node(mut settings: Settings) -> anyhow::Result<(Node, Vec<Entry>, ScanRx)> {
    let me = Identity::load(&settings.key_file)?;
    std::fs::create_dir_all(&settings.sync_dir)
        .with_context(|| format!("cannot create sync_dir {}", settings.sync_dir.display()))?;
    std::fs::create_dir_all(&settings.state_dir)
        .with_context(|| format!("cannot create state_dir {}", settings.state_dir.display()))?;
    // notify reports canonical paths; strip_prefix needs the same spelling. Folders made relative
    // by [`work_from_data_root`] are canonical already, below the working directory.
    if settings.sync_dir.is_absolute() {
        settings.sync_dir = settings.sync_dir.canonicalize()?;
    }
    if settings.state_dir.is_absolute() {
        settings.state_dir = settings.state_dir.canonicalize()?;
    }
    let (index, intents) = Index::open(&settings.state_dir)?;
    let locks = Locks::new(&settings.state_dir, settings.lock_ttl).context("cannot create the locks folder")?;
    let tmp_dir = pick_tmp_dir(&settings.state_dir, &settings.sync_dir).context("cannot create a temp folder")?;
    // Leftover staged files from a previous run (partial downloads are kept for resume).
    if let Ok(rd) = std::fs::read_dir(&tmp_dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let mut keys = HashMap::new();
    keys.insert(me.id().short(), (settings.name.clone(), me.id()));
    for t in &settings.trusted {
        keys.insert(t.key.short(), (t.name.clone(), t.key));
    }
    for p in &settings.peers {
        keys.insert(p.key.short(), (p.name.clone(), p.key));
    }
    let credentials = Credentials::new(&me)?;
    let mut peers = Vec::new();
    for p in &settings.peers {
        peers.push(PeerState {
            client: PeerClient::new(&p.addr, tls::client_config(&credentials, p.key)?, IDLE_CONNECTIONS),
            cfg: p.clone(),
            short: p.key.short(),
            pull: Notify::new(),
            reachable: AtomicBool::new(false),
            last_sync_ms: AtomicU64::new(0),
            fills: Mutex::default(),
            known: Mutex::default(),
            pruned: AtomicBool::new(false),
            prune_owed: AtomicBool::new(false),
            told: Mutex::default(),
        });
    }
    let (scan_tx, scan_rx) = tokio::sync::mpsc::unbounded_channel();
    let names: Vec<String> = settings.peers.iter().map(|p| p.name.clone()).collect();
    let node = Node {
        short: me.id().short(),
        me,
        index: Mutex::new(index),
        metrics: Metrics::new(&names),
        locks,
        peers,
        keys,
        reputation: Mutex::default(),
        rate: Mutex::new(RateLimiter::new(settings.rate_limit_per_sec, settings.rate_limit_burst)),
        pending: Mutex::default(),
        fetch_wake: Notify::new(),
        pull_turn: tokio::sync::Mutex::new(()),
        pull_builders: tokio::sync::Semaphore::new(2),
        changed: watch::channel(0).0,
        tmp_dir,
        credentials,
        scan_tx,
        damage: crate::damage::Damage::load(&settings.state_dir),
        byzantine: crate::byzantine::ByzantineSwitch::new(&settings.byzantine_file),
        evidence: crate::evidence::Evidence::load(&settings.state_dir),
        audit: crate::audit::Audit::open(&settings.state_dir, settings.audit_max_bytes),
        pending_max: PENDING_MAX,
        mutant_fired: AtomicBool::new(false),
        settings,
    };
    Ok((node, intents, scan_rx))
}

/// For tests: a node (nothing started) with one neighbour, `author`, in a temp folder.
#[cfg(test)]
pub(crate) fn test_node(dir: &std::path::Path, author: &Identity) -> Node {
    let me = Identity::generate();
    me.save(&dir.join("key")).unwrap();
    let yaml = format!(
        "name: me\nlisten: 127.0.0.1:1\nhttp: 127.0.0.1:2\nsync_dir: {d}/sync\nstate_dir: {d}/state\nkey_file: {d}/key\n\
         peers:\n  - name: n\n    addr: 127.0.0.1:3\n    public_key: {}\ntrusted:\n",
        author.id().hex(),
        d = dir.display()
    );
    let settings = crate::config::Settings::from_yaml(&yaml, &dir.join("c.yaml"), &Default::default()).unwrap();
    build_node(settings).unwrap().0
}

async fn lock_sweeper(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let period = (node.settings.lock_ttl / 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let n = node.locks.sweep();
        if n > 0 {
            node.metrics.stale_locks_removed.inc_by(n as u64);
        }
        crate::node::release_memory();
    }
}

/// The legacy flavor's task (instead of the scrub): forgets deletes once their grace period is
/// over (see [`legacy::forget_due`]).
async fn forget_deletes(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut seen: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let mut idx = node.index();
        let tombs: Vec<String> = idx.iter().filter(|e| e.deleted).map(|e| e.path.clone()).collect();
        let due = legacy::forget_due(&mut seen, tombs, Instant::now(), legacy::TOMBSTONE_GRACE);
        if due.is_empty() {
            continue;
        }
        match idx.forget(&due) {
            Ok(()) => {
                tracing::debug!(n = due.len(), "legacy: deletes forgotten");
                node.index_changed(&idx);
            }
            Err(e) => tracing::error!("cannot forget deletes: {e}"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::common_root;

    #[test]
    fn the_data_root_is_the_deepest_shared_folder_below_the_root() {
        let root = |a: &str, b: &str| common_root(Path::new(a), Path::new(b));
        assert_eq!(root("/data/sync", "/data/state"), Some(PathBuf::from("/data")));
        assert_eq!(root("/a/b/sync", "/a/b/c/state"), Some(PathBuf::from("/a/b")));
        // Nothing shared but `/`: absolute paths stay.
        assert_eq!(root("/sync", "/state"), None);
        assert_eq!(root("/x/sync", "/y/state"), None);
        // One inside the other: the outer one would become an empty relative path.
        assert_eq!(root("/data", "/data/state"), None);
        assert_eq!(root("/data/sync", "/data/sync/.state"), None);
    }
}
