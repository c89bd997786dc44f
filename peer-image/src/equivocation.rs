//! The honest peers' defence against a forked author (Byzantine `equivocate`): detection, conviction
//! and telling the neighbours.
//!
//! * **Detection** ([`check_received`], called by [`crate::fetch::offer`] for every version whose
//!   signature holds): a version is compared with the one held (in the index, at any path, or
//!   waiting for content) under the same dot. Two different signed statements under one dot are a
//!   [`Proof`] (see [`crate::evidence`]).
//! * **Conviction** ([`convict`]): the proof is kept as evidence (on disk), counted in
//!   `syncpeer_equivocations_detected_total`, and the author is quarantined at once for
//!   `quarantine_ms` (no strikes needed: the proof is certain), so we stop pulling from it and
//!   refuse its requests.
//! * **Telling** ([`run`]): each new proof is sent to every other neighbour (`POST /v1/evidence`,
//!   counted as a `hint`). A receiver ([`accept`]) checks both signatures itself before acting,
//!   so a forged proof convicts nobody and costs its sender a strike; a valid one is convicted
//!   and passed on in turn (once per dot, so telling stops), and its two statements are offered
//!   like versions from the teller, so the fork resolves on every honest peer the same way
//!   ([`crate::entry::resolve`] orders equal vectors by a total order) without waiting for the
//!   stuck-digest listing.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, header};
use tokio::sync::watch;

use crate::audit::{Event, Line};
use crate::client::Request;
use crate::entry::{Entry, Invalid};
use crate::evidence::{How, Proof, Record};
use crate::hlc::wall_ms;
use crate::knowledge::dot;
use crate::metrics::{Kind, Reason};
use crate::mutex::lock;
use crate::node::Node;
use crate::wire::{self, SMALL_TIMEOUT};

/// Compares a verified received version `e` (from neighbour `src`) with the statement held under
/// its dot; a different one convicts the author. Returns whether it did.
pub fn check_received(node: &Node, e: &Entry, src: usize) -> bool {
    // Our own counter signed twice would mean our state was lost: not a neighbour's lie.
    if e.author == node.short {
        return false;
    }
    let d = dot(e);
    // One lock at a time (pending before index is the order elsewhere).
    let queued = lock(&node.pending)
        .get(&e.path)
        .map(|p| p.entry.clone())
        .filter(|p| dot(p) == d);
    let held = queued.or_else(|| node.index().holding(d).cloned());
    let Some(held) = held.filter(|h| h.canonical() != e.canonical()) else {
        return false;
    };
    let from = node.peers[src].cfg.name.clone();
    convict(node, Proof::new(held, e.clone()), How::Seen, &from, None)
}

/// Acts on a checked proof: keeps it, quarantines the author, queues it for the neighbours (but
/// `told_by`, a short id). Returns false if this dot was convicted already (nothing is redone).
pub fn convict(node: &Node, proof: Proof, how: How, from: &str, told_by: Option<String>) -> bool {
    let author = proof.author().to_string();
    if node.evidence.knows(&author, proof.counter()) {
        return false;
    }
    let record = Record {
        author_name: node.peer_label(&author),
        author: author.clone(),
        counter: proof.counter(),
        statements: [proof.a, proof.b],
        how,
        from: from.to_string(),
        detected_ms: wall_ms(),
    };
    tracing::warn!(
        offender = %record.author_name, counter = record.counter, path = %record.statements[0].path,
        ?how, %from, "equivocation proven: two statements signed under one counter; offender quarantined"
    );
    node.quarantine(&author);
    node.metrics.equivocations_detected.inc();
    node.audit.record(Line {
        ms: record.detected_ms,
        event: Event::Convicted,
        from: from.to_string(),
        path: Some(record.statements[0].path.clone()),
        author: Some(author.clone()),
        counter: Some(record.counter),
        hash: None,
        reason: Some(format!("{how:?}").to_lowercase()),
    });
    node.evidence.keep(record, told_by)
}

/// A proof sent by `sender` (short id): checked here before anything is done with it. `Ok(true)`:
/// a new conviction; `Ok(false)`: known already, or about ourselves (nothing to do).
pub fn accept(node: &Node, proof: Proof, sender: &str) -> Result<bool, Invalid> {
    if let Err(e) = proof.check(|a| node.key_of(a)) {
        // A lie about a third peer: as bad as bad data.
        tracing::warn!(peer = %node.peer_label(sender), "rejected a proof of equivocation that does not hold ({e:?})");
        let reason = match e {
            Invalid::Untrusted => Reason::untrusted,
            Invalid::BadSignature => Reason::bad_signature,
        };
        node.metrics.reject(reason);
        node.audit.record(Line {
            ms: wall_ms(),
            event: Event::Rejected,
            from: node.peer_label(sender),
            path: None,
            author: Some(proof.author().to_string()),
            counter: Some(proof.counter()),
            hash: None,
            reason: Some(format!("proof: {reason:?}")),
        });
        node.strike(sender);
        return Err(e);
    }
    if proof.author() == node.short {
        return Ok(false);
    }
    let from = node.peer_label(sender);
    Ok(convict(node, proof, How::Told, &from, Some(sender.to_string())))
}

/// Tells every neighbour each new proof (but the one that told us, and the offender), once; a
/// neighbour that misses it finds the fork itself, or hears of it from another.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = node.evidence.wake.notified() => {}
        }
        for (proof, told_by) in node.evidence.take_outbox() {
            let body = serde_json::to_vec(&proof).expect("serializable");
            let mut sends = tokio::task::JoinSet::new();
            for i in 0..node.peers.len() {
                let short = &node.peers[i].short;
                if Some(short) == told_by.as_ref() || short == proof.author() {
                    continue;
                }
                let (node, body) = (node.clone(), body.clone());
                sends.spawn(async move {
                    let peer = &node.peers[i];
                    let req = Request::post("/v1/evidence")
                        .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
                        .body(body)
                        .timeout(SMALL_TIMEOUT);
                    if let Err(e) = wire::send(&node, peer, Kind::hint, req).await {
                        tracing::info!(peer = %peer.cfg.name, "proof of equivocation not delivered: {e}");
                    }
                });
            }
            // Bounded by the request timeout; a stop cuts it short.
            let _ = tokio::time::timeout(SMALL_TIMEOUT + Duration::from_secs(1), async {
                while sends.join_next().await.is_some() {}
            })
            .await;
        }
    }
}
