//! Anti-entropy with each neighbour (pull-based, one task per neighbour) and push hints.
//!
//! A pull sends our [`Knowledge`] (the dots of every version we have seen or queued) and gets back
//! the versions the neighbour holds that we lack, small content inline ([`crate::codec`]); they
//! are verified and queued in [`crate::fetch`], which applies them (and downloads content that did
//! not come inline). On every index change a node sends a `hint` carrying its own knowledge to
//! each neighbour; the neighbour pulls only if the hinter knows something it does not. A change
//! relays hop by hop because applying a version is itself an index change (a hint to the next
//! hop), and it stops because a version a node has seen is never sent to it again.
//!
//! With `broadcast: tree` (the default) hints follow a broadcast tree, as Plumtree's do: a
//! neighbour hinted of nothing new answers with a prune ([`PRUNE_HEADER`]) and is hinted again
//! only of our own versions, until a digest round makes it pull a relayed version from us, which
//! grafts it back (`server::pull`). `flood` hints every neighbour after every change.
//!
//! Every `anti_entropy_interval_ms` a node also compares index digests with each neighbour
//! (`summary`) and pulls when they differ: the backstop for lost hints. If two digests stay apart
//! for several rounds while nothing moves, something is missing that knowledge cannot name (a
//! version whose dot we hold in another form, e.g. a forked author): we then list the neighbour's
//! whole index. Data flows only by pulling: a node never accepts pushed versions, so a flood of
//! pushed data is impossible by construction.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::client::Request;
use crate::codec::{self, PullReq};
use crate::config::Broadcast;
use crate::fetch::{self, Offered};
use crate::hlc::wall_ms;
use crate::knowledge::{KNOWLEDGE_RANGES_MAX, Knowledge, author_key, dot};
use crate::metrics::Kind;
use crate::mutant::{Mutant, SLOW_CATCH_UP};
use crate::mutex::lock;
use crate::node::Node;
use crate::protocol::{INDEX_PAGE, IndexQuery, IndexResp, PRUNE_HEADER, SummaryReq, SummaryResp};
use crate::wire::{self, SMALL_TIMEOUT, WireError};

/// Rounds with the same two differing digests after which the whole index is listed again
/// (recovers entries that were dropped, e.g. pending downloads lost in a crash).
const FULL_PULL_AFTER: u32 = 3;
/// How long a pull waits for another neighbour's pull to finish before going ahead anyway (a
/// partitioned neighbour must not hold up the others for a whole timeout).
const PULL_TURN_WAIT: Duration = Duration::from_secs(5);
/// Pages per pull or listing (a neighbour that always says "more" cannot keep us busy forever).
const MAX_PAGES: usize = 10_000;

/// Pulls from neighbour `i` everything it holds that we lack, page by page.
async fn pull(node: &Arc<Node>, i: usize) -> Result<usize, WireError> {
    let peer = &node.peers[i];
    // Dots received in this pull: counted as known for the next page even if they were rejected
    // (a bad version must not be sent again and again).
    let mut got = Knowledge::new();
    let mut queued = 0;
    for _ in 0..MAX_PAGES {
        // A neighbour that did not answer lately may be cut off: it must not hold the turn.
        let turn = if peer.reachable.load(Ordering::Relaxed) {
            let t = tokio::time::timeout(PULL_TURN_WAIT, node.pull_turn.lock()).await.ok();
            if t.is_none() {
                tracing::debug!(peer = %peer.cfg.name, "pull turn not granted in time: pulling alongside");
            }
            t
        } else {
            None
        };
        let mut knowledge = node.knowledge_for(i);
        knowledge.union(&got);
        let req = Request::post("/v1/pull")
            .body(codec::encode_pull_req(&PullReq {
                knowledge,
                inline: true,
            }))
            .timeout(SMALL_TIMEOUT);
        let resp = wire::send(node, peer, Kind::index, req).await?;
        let received = Instant::now();
        let body: Bytes = wire::read_body(peer, resp).await?;
        let len = body.len() as u64;
        let page = codec::decode_pull_resp(body).map_err(|_| WireError::Malformed {
            peer: peer.cfg.name.clone(),
            what: "pull response",
        })?;
        // Inline content counts as blob bytes, the rest as index bytes.
        let content: u64 = page
            .items
            .iter()
            .filter_map(|it| it.content.as_ref())
            .map(|c| c.len() as u64)
            .sum();
        node.metrics.received_bytes(&peer.cfg.name, Kind::index, len - content);
        node.metrics.received_bytes(&peer.cfg.name, Kind::blob, content);
        lock(&peer.fills).union_capped(&page.fills, KNOWLEDGE_RANGES_MAX);
        // A page that names nothing new, or comes from a neighbour its lies just quarantined,
        // ends the pull whatever it says about "more" (a liar could keep us paging forever).
        let news = page.items.iter().any(|it| !got.contains(dot(&it.entry)));
        got.union(&Knowledge::from_dots(
            page.items.iter().map(|it| dot(&it.entry)).collect(),
        ));
        // A neighbour paging out scattered dots would grow `got` (and our requests) without end.
        let too_much = got.ranges() > KNOWLEDGE_RANGES_MAX;
        let Offered { queued: q, full } = fetch::offer(node, i, page.items, received);
        queued += q;
        drop(turn);
        // A full pending queue takes no more: the rest is asked for once it drains.
        if !page.more || !news || too_much || full || node.is_quarantined(&peer.short) {
            break;
        }
    }
    Ok(queued)
}

/// Lists neighbour `i`'s whole index (no knowledge, no inline content) and queues what we lack.
async fn full_pull(node: &Arc<Node>, i: usize) -> Result<usize, WireError> {
    let peer = &node.peers[i];
    let mut after = String::new();
    let mut queued = 0;
    // A neighbour that keeps naming a next page cannot keep us listing forever.
    for _ in 0..MAX_PAGES {
        let query = IndexQuery {
            after: after.clone(),
            limit: Some(INDEX_PAGE),
        };
        let query = serde_urlencoded::to_string(&query).expect("strings and numbers encode");
        let req = Request::get(format!("/v1/index?{query}")).timeout(SMALL_TIMEOUT);
        let resp = wire::send(node, peer, Kind::index, req).await?;
        let received = Instant::now();
        let page: IndexResp = wire::json(node, peer, Kind::index, resp).await?;
        // More than asked for: refused before a signature is checked (a 16 MiB page held ~50 000).
        if page.entries.len() > INDEX_PAGE {
            return Err(WireError::Malformed {
                peer: peer.cfg.name.clone(),
                what: "listing page larger than asked",
            });
        }
        let items = page
            .entries
            .into_iter()
            .map(|entry| codec::Item { entry, content: None })
            .collect();
        queued += fetch::offer(node, i, items, received).queued;
        match page.next {
            Some(n) if n > after => after = n,
            _ => break,
        }
    }
    Ok(queued)
}

/// One digest exchange; returns the neighbour's digest.
async fn summary(node: &Arc<Node>, i: usize) -> Result<String, WireError> {
    let peer = &node.peers[i];
    let digest = node.index().digest();
    let req = Request::post("/v1/summary")
        .json(&SummaryReq { digest })
        .timeout(SMALL_TIMEOUT);
    let resp = wire::send(node, peer, Kind::summary, req).await?;
    let r: SummaryResp = wire::json(node, peer, Kind::summary, resp).await?;
    Ok(r.digest)
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
        // A successful pull within the last period already did what a round would do.
        let since_sync = wall_ms().saturating_sub(peer.last_sync_ms.load(Ordering::Relaxed));
        if !hinted && since_sync < period.as_millis() as u64 / 2 {
            continue;
        }
        // By the time our turn comes, another neighbour may have brought everything this one
        // hinted: the pull would carry nothing, and its next hint is answered with a prune.
        if hinted && node.settings.broadcast == Broadcast::Tree && lock(&peer.known).is_subset(&node.knowledge_for(i)) {
            peer.prune_owed.store(true, Ordering::Relaxed);
            continue;
        }
        let result = if hinted {
            pull(&node, i).await.map(|_| ())
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
                    if node.mutant(Mutant::SlowCatchUp) {
                        // The bug: a neighbour lost is not asked again for a minute, whatever
                        // its hints say, so a healed partition stays unhealed that long.
                        tokio::select! {
                            _ = stop.changed() => return,
                            _ = tokio::time::sleep(SLOW_CATCH_UP) => {}
                        }
                    }
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
    if theirs == ours {
        *stuck = Stuck::default();
        return Ok(());
    }
    let queued = pull(node, i).await?;
    if queued > 0 {
        *stuck = Stuck::default();
    } else {
        // Differing digests are normal while the neighbour is still pulling from us; only when
        // neither side moves for several rounds is something missing that knowledge cannot name:
        // then list its whole index.
        let pair = (theirs, ours);
        if stuck.last.as_ref() == Some(&pair) {
            stuck.rounds += 1;
        } else {
            *stuck = Stuck {
                last: Some(pair),
                rounds: 1,
            };
        }
        // Only when the neighbour knows every version we know (by its last hint or pull) can the
        // difference be one that knowledge cannot name; a neighbour that is merely behind (still
        // fetching content) would only cost a useless listing.
        let not_behind = || {
            let mine = node.index().seen().clone();
            mine.is_subset(&lock(&peer.known))
        };
        if stuck.rounds >= FULL_PULL_AFTER && lock(&node.pending).is_empty() && not_behind() {
            *stuck = Stuck::default();
            tracing::debug!(peer = %peer.cfg.name, "digests stuck apart: listing the whole index");
            full_pull(node, i).await?;
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
        let mine = node.index().seen().clone();
        // In a mesh most of what we apply, the neighbour pulled from the same source already;
        // its own hints and pulls told us so.
        let tree = node.settings.broadcast == Broadcast::Tree;
        let mut news = mine.minus(&lock(&peer.known));
        if tree {
            news = news.minus(&lock(&peer.told));
        }
        if news.is_empty() {
            continue;
        }
        // A neighbour that pruned us hears of relayed versions from another neighbour first: the
        // digest rounds are its backstop, and a pull that brings it news grafts it back. Our own
        // new versions it can hear of from no one sooner, so they are always hinted (the first
        // hop goes to every neighbour, which also keeps a write's first hop fast).
        let own = author_key(&node.short);
        if tree && peer.pruned.load(Ordering::Relaxed) && !news.authors().any(|(a, _)| a == own) {
            continue;
        }
        let body = codec::encode_knowledge(&mine);
        let req = Request::post("/v1/hint").body(body).timeout(SMALL_TIMEOUT);
        match wire::send(&node, peer, Kind::hint, req).await {
            Ok(resp) => {
                if tree {
                    lock(&peer.told).union_capped(&mine, KNOWLEDGE_RANGES_MAX);
                }
                if tree && resp.headers().contains_key(PRUNE_HEADER) && !peer.pruned.swap(true, Ordering::Relaxed) {
                    node.metrics.tree_prunes.inc();
                    tracing::debug!(peer = %peer.cfg.name, "pruned: no more hints to it until it pulls news from us");
                }
            }
            Err(e) => tracing::debug!(peer = %peer.cfg.name, "hint not delivered: {e}"),
        }
    }
}
