//! Server side of the peer protocol on the sync port (axum, behind [`crate::listener`]). Every
//! request is admitted first: its sender is the neighbour whose key the connection's certificate
//! proved (a sender header, if one is sent, must name the same peer), not quarantined, within its
//! rate limit. A refused request is answered after a [`TARPIT`], so a flood cannot set the pace, and
//! a neighbour that keeps going over its limit is quarantined (strikes, see [`Node::admit_rate`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::io::AsyncSeekExt;

use crate::byzantine::{self, Behaviours};
use crate::codec::{self, Item};
use crate::config::Broadcast;
use crate::evidence::Proof;
use crate::knowledge::Knowledge;
use crate::lies;
use crate::listener::PeerAddr;
use crate::metrics::{Kind, Reason, header_bytes};
use crate::node::Node;
use crate::protocol::{
    BATCH_BYTES_MAX, BATCH_FILE_MAX, BLOBS_HASHES_MAX, BlobsReq, FROM_HEADER, INDEX_PAGE, IndexQuery, IndexResp,
    PRUNE_HEADER, PULL_INLINE_MAX, PULL_ITEMS_MAX, SummaryReq, SummaryResp, frame_blob,
};
use crate::scan_queue::Urgency;

type S = State<Arc<Node>>;
type Peer = ConnectInfo<PeerAddr>;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/summary", post(summary))
        .route("/v1/index", get(index))
        .route("/v1/pull", post(pull))
        .route("/v1/hint", post(hint))
        .route("/v1/blob/{hash}", get(blob))
        .route("/v1/blobs", post(blobs))
        .route("/v1/evidence", post(evidence))
        .with_state(node)
}

/// Who is asking (short id), counted and checked; `Err` is the refusal to send. The sender is the
/// TLS identity of the connection, never what the request says about itself.
fn admit(
    node: &Node,
    from: &PeerAddr,
    headers: &HeaderMap,
    kind: Kind,
    body_len: usize,
) -> Result<(String, String), StatusCode> {
    let short = from.id.short();
    let label = node.peer_label(&short);
    node.metrics
        .received(&label, kind, header_bytes(headers) + body_len as u64);
    // Peers no longer send the header; one that names someone else is lying about who it is.
    if headers
        .get(FROM_HEADER)
        .is_some_and(|v| v.as_bytes() != short.as_bytes())
    {
        tracing::warn!(peer = %label, "refused a request claiming to come from another peer");
        node.metrics.reject(Reason::sender_mismatch);
        return Err(StatusCode::FORBIDDEN);
    }
    if node.is_quarantined(&short) {
        node.metrics.reject(Reason::quarantined);
        return Err(StatusCode::FORBIDDEN);
    }
    if !node.admit_rate(&short) {
        node.metrics.reject(Reason::rate_limited);
        return Err(StatusCode::TOO_MANY_REQUESTS);
    }
    Ok((short, label))
}

/// How long a refused request is held before its refusal is sent. A flooding neighbour's
/// connection then waits instead of asking again at once, so however fast the liar sends, each of
/// its connections costs this peer at most one refused request per `TARPIT`. Over the rate limit,
/// that holds a flood near the limit (for `flood`'s 8 connections: the limit plus 32 a second);
/// once the flooder is quarantined (30 refusals), at 32 a second in all, instead of at the liar's
/// pace. A held response is a parked future, no CPU. An honest neighbour over its budget (a burst
/// after a heal) waits the same 250 ms, then retries.
pub const TARPIT: std::time::Duration = std::time::Duration::from_millis(250);

/// The answer to a request `admit` refused (over the rate limit, quarantined, or lying about its
/// sender), after [`TARPIT`].
async fn refusal(code: StatusCode) -> Response {
    tokio::time::sleep(TARPIT).await;
    code.into_response()
}

/// Counts a response as sent to `label`.
fn counted(node: &Node, label: &str, kind: Kind, resp: Response, body_len: u64) -> Response {
    node.metrics.sent(label, kind, header_bytes(resp.headers()) + body_len);
    resp
}

fn json_resp<T: serde::Serialize>(node: &Node, label: &str, kind: Kind, v: &T) -> Response {
    let body = serde_json::to_vec(v).expect("serializable");
    let len = body.len() as u64;
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    counted(node, label, kind, r, len)
}

async fn summary(State(node): S, ConnectInfo(from): Peer, headers: HeaderMap, body: Bytes) -> Response {
    let (_, label) = match admit(&node, &from, &headers, Kind::summary, body.len()) {
        Ok(x) => x,
        Err(r) => return refusal(r).await,
    };
    if serde_json::from_slice::<SummaryReq>(&body).is_err() {
        return StatusCode::BAD_REQUEST.into_response();
    }
    // A replaying or vouching liar claims news it does not have, so that its neighbours keep pulling.
    let liar = node.byzantine.current();
    let digest = if liar.replay || liar.sybil {
        blake3::hash(b"replayed versions").to_hex().to_string()
    } else {
        node.index().digest()
    };
    let resp = SummaryResp { digest };
    json_resp(&node, &label, Kind::summary, &resp)
}

async fn index(State(node): S, ConnectInfo(from): Peer, headers: HeaderMap, Query(q): Query<IndexQuery>) -> Response {
    let (short, label) = match admit(&node, &from, &headers, Kind::index, 0) {
        Ok(x) => x,
        Err(r) => return refusal(r).await,
    };
    let limit = q.limit.unwrap_or(INDEX_PAGE).clamp(1, INDEX_PAGE);
    let mut entries = node.index().after(&q.after, limit);
    let liar = node.byzantine.current();
    let full = entries.len() == limit;
    let next = full.then(|| entries.last().map(|e| e.path.clone())).flatten();
    if !liar.is_honest() {
        // A listing is a set of current versions: lies replace, never add (nothing beyond the page).
        let paths: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
        lies::versions(&node, &liar, (&short, &label), &mut entries, &mut Knowledge::new());
        entries.retain(|e| paths.contains(&e.path));
    }
    if liar.withhold {
        entries.clear();
    } else if liar.forge {
        entries.iter_mut().for_each(byzantine::forge);
    }
    json_resp(&node, &label, Kind::index, &IndexResp { entries, next })
}

/// The versions the puller's knowledge lacks; small content inline (hashed again here, so a file
/// damaged or edited since it was indexed is never sent as the signed version's content).
async fn pull(State(node): S, ConnectInfo(from): Peer, headers: HeaderMap, body: Bytes) -> Response {
    let (short, label) = match admit(&node, &from, &headers, Kind::index, body.len()) {
        Ok(x) => x,
        Err(r) => return refusal(r).await,
    };
    let Ok(req) = codec::decode_pull_req(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    node.learn_known(&short, &req.knowledge);
    let short_of_puller = short.clone();
    // Building a page reads and hashes up to PULL_INLINE_MAX of files: a few at a time, so nine
    // neighbours pulling at once do not hold nine pages in memory.
    let Ok(_permit) = node.pull_builders.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let n = node.clone();
    let liar = node.byzantine.current();
    let slowloris = liar.slowloris;
    let built = tokio::task::spawn_blocking(move || {
        let mut missing = n.index().missing(&req.knowledge, PULL_ITEMS_MAX);
        if !liar.is_honest() {
            lies::versions(
                &n,
                &liar,
                (&short, &n.peer_label(&short)),
                &mut missing.entries,
                &mut missing.fills,
            );
        }
        // Path order shares longer prefixes (~5 bytes a file); a page is a set, and what a cut
        // leaves out the next request's knowledge still lacks.
        missing.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        if n.mutant(crate::mutant::Mutant::SoftwareBug)
            && missing.entries.iter().any(|e| e.deleted)
            && !n.mutant_fired.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            // The bug: an edge case nobody handled, on a rare path (the first delete served). The
            // page builder dies, the puller gets a 500 and asks again; the daemon lives on.
            panic!("mutant-software-bug: unhandled tombstone in a pull page");
        }
        let (complete, inline) = lie_about_page(&liar, &mut missing.entries, missing.complete, req.inline);
        let (body, _, inline_bytes) = codec::encode_pull_page(
            &missing.entries,
            &missing.fills,
            complete,
            inline,
            BATCH_FILE_MAX,
            PULL_INLINE_MAX,
            |e| {
                let mut b = servable(&n, &e.hash)
                    .and_then(read_all)
                    .filter(|b| b.len() as u64 == e.size && blake3::hash(b).to_hex().as_str() == e.hash)?;
                if liar.tamper {
                    byzantine::tamper(&mut b);
                }
                Some(b)
            },
        );
        // Our own versions are hinted to every neighbour, pruned or not: only a relayed one
        // served says the tree failed this neighbour.
        let served = missing.entries.iter().filter(|e| e.author != n.short).count();
        (body, inline_bytes, served)
    })
    .await;
    let Ok((out, inline_bytes, served)) = built else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    // A neighbour that pruned us and still lacked a version we relay is not hearing of it from
    // anyone else in time: hint it again (Plumtree's graft).
    if served > 0
        && let Some(p) = node.peers.iter().find(|p| p.short == short_of_puller)
        && p.pruned.swap(false, Ordering::Relaxed)
    {
        node.metrics.tree_grafts.inc();
        tracing::debug!(peer = %p.cfg.name, "grafted: it pulled news from us, hinting it again");
    }
    let len = out.len() as u64;
    let body = if slowloris {
        byzantine::pumped(std::io::Cursor::new(out), false, true)
    } else {
        Body::from(out)
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    // Inline content counts as blob bytes, the rest as index bytes.
    node.metrics.sent_bytes(&label, Kind::blob, inline_bytes);
    counted(&node, &label, Kind::index, r, len - inline_bytes)
}

async fn hint(State(node): S, ConnectInfo(from): Peer, headers: HeaderMap, body: Bytes) -> Response {
    let (short, label) = match admit(&node, &from, &headers, Kind::hint, body.len()) {
        Ok(x) => x,
        Err(r) => return refusal(r).await,
    };
    let Ok(theirs) = codec::decode_knowledge(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    node.learn_known(&short, &theirs);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(i) = node.peers.iter().position(|p| p.short == short) {
        // Pull only if the hinter knows something we do not.
        let news = !theirs.is_subset(&node.knowledge_for(i));
        if news {
            node.peers[i].pull.notify_one();
        }
        // A hint that names nothing new, or a neighbour whose last hint another beat, is an edge
        // we need not be hinted on: we hear first from someone else (Plumtree's prune). The
        // digest rounds still run on it, and a pull that brings news grafts it back.
        let owed = node.peers[i].prune_owed.swap(false, Ordering::Relaxed);
        if node.settings.broadcast == Broadcast::Tree && (!news || owed) {
            resp.headers_mut().insert(PRUNE_HEADER, HeaderValue::from_static("1"));
        }
    }
    counted(&node, &label, Kind::hint, resp, 0)
}

/// The file currently holding `hash`, open, if it is still exactly what was indexed (a file
/// edited since would be served with the wrong content and get us blamed). Opened without
/// following a symlink, and the stamp checked is the open file's.
fn servable(node: &Node, hash: &str) -> Option<std::fs::File> {
    let idx = node.index();
    let rel = idx.path_for_hash(hash)?;
    if node.damage.is_damaged(&rel) {
        return None;
    }
    let file = crate::beneath::open_file(&node.settings.sync_dir, &rel).ok()?;
    let meta = file.metadata().ok()?;
    if idx.stamp(&rel) != Some(crate::index::Stamp::of(&meta)) {
        let _ = node.scan_tx.send((node.full_path(&rel), Urgency::Now));
        return None;
    }
    Some(file)
}

fn read_all(mut f: std::fs::File) -> Option<Vec<u8>> {
    let mut b = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut b).ok()?;
    Some(b)
}

async fn blob(State(node): S, ConnectInfo(from): Peer, headers: HeaderMap, Path(hash): Path<String>) -> Response {
    let (short, label) = match admit(&node, &from, &headers, Kind::blob, 0) {
        Ok(x) => x,
        Err(r) => return refusal(r).await,
    };
    let liar = node.byzantine.current();
    let dropped = lies::drops_blob(&node, &liar, &hash, (&short, &label));
    let Some(file) = servable(&node, &hash).filter(|_| !liar.withhold && !dropped) else {
        return counted(&node, &label, Kind::blob, StatusCode::NOT_FOUND.into_response(), 0);
    };
    let mut file = tokio::fs::File::from_std(file);
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s <= size);
    let mut resp = match start {
        Some(s) if s > 0 => {
            if file.seek(std::io::SeekFrom::Start(s)).await.is_err() {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {s}-{}/{size}", size.saturating_sub(1))).expect("ascii"),
            );
            r
        }
        _ => Response::new(Body::empty()),
    };
    let len = size - start.unwrap_or(0);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let content = tokio::io::AsyncReadExt::take(file, len);
    *resp.body_mut() = if liar.tamper || liar.slowloris {
        byzantine::pumped(content, liar.tamper, liar.slowloris)
    } else {
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(content, 256 * 1024))
    };
    counted(&node, &label, Kind::blob, resp, len)
}

async fn blobs(State(node): S, ConnectInfo(from): Peer, headers: HeaderMap, body: Bytes) -> Response {
    let (short, label) = match admit(&node, &from, &headers, Kind::blob, body.len()) {
        Ok(x) => x,
        Err(r) => return refusal(r).await,
    };
    let Ok(req) = serde_json::from_slice::<BlobsReq>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if req.hashes.len() > BLOBS_HASHES_MAX {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let n = node.clone();
    let liar = node.byzantine.current();
    let slowloris = liar.slowloris;
    let who = (short, label.clone());
    let out = tokio::task::spawn_blocking(move || {
        // Sizes first, so the body is allocated once at its final size (a doubling buffer held up
        // to twice the batch, for each neighbour at once). Files are opened again to be read, not
        // held open: a batch may name thousands.
        let mut total = 0u64;
        let plan: Vec<Option<u64>> = req
            .hashes
            .iter()
            .map(|h| {
                if total >= BATCH_BYTES_MAX || liar.withhold || lies::drops_blob(&n, &liar, h, (&who.0, &who.1)) {
                    return None;
                }
                let len = servable(&n, h)?.metadata().ok()?.len();
                if len > BATCH_FILE_MAX {
                    return None;
                }
                total += len;
                Some(len)
            })
            .collect();
        let mut out = Vec::with_capacity(total as usize + 9 * plan.len());
        for (h, len) in req.hashes.iter().zip(plan) {
            let mut content = len.and_then(|len| servable(&n, h).and_then(read_all).filter(|c| c.len() as u64 == len));
            if let Some(c) = content.as_mut().filter(|_| liar.tamper) {
                byzantine::tamper(c);
            }
            frame_blob(&mut out, content.as_deref());
        }
        out
    })
    .await
    .unwrap_or_default();
    let len = out.len() as u64;
    let body = if slowloris {
        byzantine::pumped(std::io::Cursor::new(out), false, true)
    } else {
        Body::from(out)
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    counted(&node, &label, Kind::blob, r, len)
}

/// A proof of equivocation from a neighbour ([`crate::equivocation::accept`] checks it first). A
/// new one is passed on, and its two statements are offered like versions from the teller, so the
/// fork resolves here as everywhere.
async fn evidence(State(node): S, ConnectInfo(from): Peer, headers: HeaderMap, body: Bytes) -> Response {
    let (short, label) = match admit(&node, &from, &headers, Kind::hint, body.len()) {
        Ok(x) => x,
        Err(r) => return refusal(r).await,
    };
    let Ok(proof) = serde_json::from_slice::<Proof>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let statements = [proof.a.clone(), proof.b.clone()];
    let status = match crate::equivocation::accept(&node, proof, &short) {
        Err(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Ok(new) => {
            if let Some(i) = node.peers.iter().position(|p| p.short == short)
                && new
            {
                let items = statements.map(|entry| Item { entry, content: None }).into();
                crate::fetch::offer(&node, i, items, std::time::Instant::now());
            }
            StatusCode::NO_CONTENT
        }
    };
    counted(&node, &label, Kind::hint, status.into_response(), 0)
}

/// Byzantine mode's lies about a pull page (none when honest). Returns (complete, inline).
/// Withheld: nothing is offered and the page says it is complete. Forged: every entry carries a
/// lie its signature does not cover; content is not sent inline (its hash would be computed from
/// it and the lie lost), and the page claims to be complete, so a puller that rejects the lies
/// does not ask for the same page again and again.
fn lie_about_page(
    liar: &Behaviours,
    entries: &mut Vec<crate::entry::Entry>,
    complete: bool,
    inline: bool,
) -> (bool, bool) {
    if liar.withhold {
        entries.clear();
        return (true, inline);
    }
    if liar.forge {
        entries.iter_mut().for_each(byzantine::forge);
        return (true, false);
    }
    (complete, inline)
}
