//! The Byzantine `flood` behaviour (see [`crate::byzantine`]): a task that, while the control file
//! names `flood`, sends every neighbour [`FLOOD_RATE`] cheap requests a second. Idle, it only
//! polls the switch; the liar's other behaviours live where data is served (`server.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::byzantine::REREAD;
use crate::metrics::{Kind, header_bytes};
use crate::node::Node;
use crate::protocol::{FROM_HEADER, SummaryReq};
use crate::wire;

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
    // Its own connection pool: the shared client keeps one idle connection per neighbour, so a
    // burst through it would open and close a connection per request.
    let Ok(client) = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(FLOOD_WORKERS)
        .no_proxy()
        .build()
    else {
        return;
    };
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(REREAD) => {}
        }
        if !node.byzantine.current().flood {
            continue;
        }
        let mut workers = tokio::task::JoinSet::new();
        for i in 0..node.peers.len() {
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

async fn flood_once(node: &Node, client: &reqwest::Client, i: usize) {
    let peer = &node.peers[i];
    let Ok(req) = client
        .post(wire::url(peer, "/v1/summary"))
        .header(FROM_HEADER, &node.short)
        .json(&SummaryReq { digest: String::new() })
        .build()
    else {
        return;
    };
    // Counted like every request (`wire::send`), so the liar's own metrics show the flood.
    let body = req.body().and_then(|b| b.as_bytes()).map_or(0, <[u8]>::len) as u64;
    node.metrics.sent(
        &peer.cfg.name,
        Kind::summary,
        header_bytes(req.headers()) + req.url().path().len() as u64 + body,
    );
    if client.execute(req).await.is_err() {
        // Unreachable (partitioned, down): do not spin.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
