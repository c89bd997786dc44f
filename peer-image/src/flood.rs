//! The Byzantine `flood` behaviour (see [`crate::byzantine`]): a task that, while the control file
//! names `flood`, sends every neighbour [`FLOOD_RATE`] cheap requests a second. Idle, it only
//! polls the switch; the liar's other behaviours live where data is served (`server.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::byzantine::REREAD;
use crate::client::{PeerClient, Request};
use crate::metrics::{Kind, header_bytes};
use crate::node::Node;
use crate::protocol::SummaryReq;

/// Concurrent connections per neighbour while flooding.
pub const FLOOD_WORKERS: usize = 8;
/// Requests per second per neighbour while flooding: four times the default `rate_limit_per_sec`
/// (500). Paced rather than as fast as possible: an unpaced flood also starves the liar's host of
/// CPU, which tests something else (and slowed every other process on the test machine).
pub const FLOOD_RATE: u32 = 2000;

/// The flood task: while `flood` is on, [`FLOOD_WORKERS`] connections per neighbour send digest
/// requests (the cheapest request to send, and each one costs the receiver an admission check),
/// [`FLOOD_RATE`] a second per neighbour in all. Idle otherwise, polling the switch every [`REREAD`].
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    // Its own connection pools: a neighbour's client keeps one idle connection, so a burst
    // through it would open and close a connection (and make a TLS handshake) per request. The
    // liar is an authenticated neighbour: its flood passes the handshake like honest traffic.
    let mut clients = Vec::new();
    for p in &node.peers {
        match crate::tls::client_config(&node.credentials, p.cfg.key) {
            Ok(tls) => clients.push(PeerClient::new(&p.cfg.addr, tls, FLOOD_WORKERS)),
            Err(e) => {
                tracing::error!("flood: no TLS client: {e}");
                return;
            }
        }
    }
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(REREAD) => {}
        }
        if !node.byzantine.current().flood {
            continue;
        }
        let mut workers = tokio::task::JoinSet::new();
        for (i, client) in clients.iter().enumerate() {
            for _ in 0..FLOOD_WORKERS {
                let (node, client, stop) = (node.clone(), client.clone(), stop.clone());
                workers.spawn(async move {
                    let period = Duration::from_secs(FLOOD_WORKERS as u64) / FLOOD_RATE;
                    while !*stop.borrow() && node.byzantine.current().flood {
                        let next = tokio::time::Instant::now() + period;
                        flood_once(&node, &client, i).await;
                        tokio::time::sleep_until(next).await;
                    }
                });
            }
        }
        while workers.join_next().await.is_some() {}
    }
}

async fn flood_once(node: &Node, client: &PeerClient, i: usize) {
    let peer = &node.peers[i];
    let req = Request::post("/v1/summary")
        .json(&SummaryReq { digest: String::new() })
        .timeout(Duration::from_secs(5));
    // Counted like every request (`wire::send`), so the liar's own metrics show the flood.
    node.metrics.sent(
        &peer.cfg.name,
        Kind::summary,
        header_bytes(req.headers()) + (req.path().len() + req.body_len()) as u64,
    );
    match client.execute(req).await {
        // Read to its end, so the connection goes back to the pool: a handshake per request
        // would make the flood a test of TLS rather than of the rate limit.
        Ok(mut resp) => while let Ok(Some(_)) = resp.chunk().await {},
        // Unreachable (partitioned, down): do not spin.
        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
    }
}
