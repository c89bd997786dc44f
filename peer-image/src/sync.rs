//! Anti-entropy with each neighbour (pull-based, one task per neighbour) and push hints.
//!
//! Every `anti_entropy_interval_ms` a node sends its index digest to each neighbour (`summary`).
//! If the digests differ and the neighbour's index moved past what we pulled, we pull the delta
//! (`index`); received entries are verified and offered to [`crate::fetch`], which pulls content by
//! hash (`blob`). On every index change a node sends a `hint` to its neighbours so they pull at
//! once instead of at the next round. A change relays hop by hop because applying a version is
//! itself an index change (hint to the next hop), and it stops because an entry that changes
//! nothing (equal or dominated) is not an index change. Data flows only by pulling: a node never
//! accepts pushed versions, so a flood of pushed data is impossible by construction.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::fetch;
use crate::hlc::wall_ms;
use crate::metrics::Kind;
use crate::node::{Node, lock};
use crate::protocol::{EntriesReq, EntriesResp, HintReq, INDEX_PAGE, SummariesResp, SummaryReq, SummaryResp};
use crate::wire::{self, SMALL_TIMEOUT, WireError};

/// Rounds with the same two differing digests after which the whole index is pulled again
/// (recovers entries that were dropped, e.g. pending downloads lost in a crash).
const FULL_PULL_AFTER: u32 = 3;

/// Pulls `i`'s index from our cursor (or from the start) to its latest: summaries first, then
/// the full entries we do not hold yet, which are offered to the fetcher.
async fn pull_index(node: &Arc<Node>, i: usize, from_scratch: bool) -> Result<usize, WireError> {
    let peer = &node.peers[i];
    let mut offered = 0;
    let mut cursor = {
        let c = *lock(&peer.cursor);
        if from_scratch { (c.0, 0) } else { c }
    };
    loop {
        let path = format!("/v1/summaries?since={}&epoch={}", cursor.1, cursor.0);
        let req = node.client.get(wire::url(peer, &path)).timeout(SMALL_TIMEOUT);
        let resp = wire::send(node, peer, Kind::index, req).await?;
        let received = Instant::now();
        let page: SummariesResp = wire::json(node, peer, Kind::index, resp).await?;
        let n = page.items.len();
        let wanted = fetch::wanted(node, i, page.items);
        for chunk in wanted.chunks(INDEX_PAGE) {
            let req = node
                .client
                .post(wire::url(peer, "/v1/entries"))
                .json(&EntriesReq { paths: chunk.to_vec() })
                .timeout(SMALL_TIMEOUT);
            let resp = wire::send(node, peer, Kind::index, req).await?;
            let got: EntriesResp = wire::json(node, peer, Kind::index, resp).await?;
            offered += fetch::offer(node, i, got.entries, received);
        }
        cursor = (page.epoch, page.next);
        *lock(&peer.cursor) = cursor;
        if n == 0 || page.next >= page.latest {
            break;
        }
    }
    Ok(offered)
}

/// One digest exchange; returns the neighbour's answer.
async fn summary(node: &Arc<Node>, i: usize) -> Result<SummaryResp, WireError> {
    let peer = &node.peers[i];
    let digest = node.index().digest();
    let req = node
        .client
        .post(wire::url(peer, "/v1/summary"))
        .json(&SummaryReq { digest })
        .timeout(SMALL_TIMEOUT);
    let resp = wire::send(node, peer, Kind::summary, req).await?;
    wire::json(node, peer, Kind::summary, resp).await
}

/// The anti-entropy task for neighbour `i`.
pub async fn neighbour_loop(node: Arc<Node>, i: usize, mut stop: watch::Receiver<bool>) {
    let peer = &node.peers[i];
    // Spread rounds of different neighbours so they do not all fire together.
    let period = node.settings.anti_entropy;
    let offset = Duration::from_millis((rand::random::<u64>() % period.as_millis().max(1) as u64) / 2);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_millis(20) + offset, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stuck = Stuck::default();
    loop {
        let hinted = tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => false,
            _ = peer.pull.notified() => true,
        };
        if node.is_quarantined(&peer.short) {
            continue;
        }
        let result = if hinted {
            pull_index(&node, i, false).await.map(|_| ())
        } else {
            round(&node, i, &mut stuck).await
        };
        match result {
            Ok(()) => {
                peer.reachable.store(true, Ordering::Relaxed);
                peer.last_sync_ms.store(wall_ms(), Ordering::Relaxed);
            }
            Err(e) => {
                if peer.reachable.swap(false, Ordering::Relaxed) {
                    tracing::info!(peer = %peer.cfg.name, "neighbour unreachable: {e}");
                } else {
                    tracing::debug!(peer = %peer.cfg.name, "{e}");
                }
            }
        }
    }
}

/// Rounds in which both digests stood still yet differed: the two indexes are stuck apart.
#[derive(Default)]
struct Stuck {
    last: Option<(String, String)>,
    rounds: u32,
}

async fn round(node: &Arc<Node>, i: usize, stuck: &mut Stuck) -> Result<(), WireError> {
    let peer = &node.peers[i];
    let theirs = summary(node, i).await?;
    let ours = node.index().digest();
    if theirs.digest == ours {
        *stuck = Stuck::default();
        return Ok(());
    }
    let (epoch, since) = *lock(&peer.cursor);
    if theirs.epoch != epoch || theirs.seq > since {
        pull_index(node, i, false).await?;
        *stuck = Stuck::default();
    } else {
        // Differing digests are normal while the neighbour is still pulling from us; only when
        // neither side moves for several rounds is something missing that deltas cannot bring
        // (e.g. a version whose download was lost in a crash): then re-read its whole index.
        let pair = (theirs.digest, ours);
        if stuck.last.as_ref() == Some(&pair) {
            stuck.rounds += 1;
        } else {
            *stuck = Stuck {
                last: Some(pair),
                rounds: 1,
            };
        }
        if stuck.rounds >= FULL_PULL_AFTER && lock(&node.pending).is_empty() {
            *stuck = Stuck::default();
            tracing::debug!(peer = %peer.cfg.name, "digests stuck apart: pulling the whole index");
            pull_index(node, i, true).await?;
        }
    }
    // Content that failed before (a neighbour was down) is retried every round.
    node.fetch_wake.notify_one();
    Ok(())
}

/// Sends a hint to neighbour `i` after every local index change (coalesced by the watch channel).
pub async fn hint_loop(node: Arc<Node>, i: usize, mut stop: watch::Receiver<bool>) {
    let peer = &node.peers[i];
    let mut rx = node.changed.subscribe();
    rx.mark_unchanged();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = rx.changed() => if r.is_err() { return },
        }
        if node.is_quarantined(&peer.short) {
            continue;
        }
        let (digest, seq) = {
            let mut idx = node.index();
            (idx.digest(), idx.seq())
        };
        let req = node
            .client
            .post(wire::url(peer, "/v1/hint"))
            .json(&HintReq { digest, seq })
            .timeout(SMALL_TIMEOUT);
        if let Err(e) = wire::send(&node, peer, Kind::hint, req).await {
            tracing::debug!(peer = %peer.cfg.name, "hint not delivered: {e}");
        }
    }
}
