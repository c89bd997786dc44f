//! Pending versions and the download of their content.
//!
//! [`offer`] verifies entries received from a neighbour (trust, signature) and queues those that
//! would change the index; content that came inline with a pull is staged at once. The fetcher
//! task stages the rest in the temp folder, verified by
//! hash before anything is written to the sync folder: from a local file with the same content if
//! there is one, else from the neighbours that advertised the entry, then from any neighbour.
//! Small files come in batches, large ones stream with HTTP `Range` resume. A peer that sends
//! content with the wrong hash gets a strike and the next peer is tried.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::http::{HeaderValue, header};
use tokio::sync::watch;

use crate::apply::{Staged, apply_batch};
use crate::audit::{Event, Line};
use crate::client::Request;
use crate::codec::Item;
use crate::entry::{Entry, Invalid, MetadataLie, Resolution};
use crate::metrics::{Kind, Reason};
use crate::mutex::lock;
use crate::node::{Node, PendingItem};
use crate::protocol::{BATCH_FILE_MAX, BlobsReq, FETCH_BATCH_BYTES, unframe_blobs};
use crate::wire::{self, SMALL_TIMEOUT, WireError};

/// What [`offer`] did with a page.
pub struct Offered {
    /// Versions queued (they would change the index).
    pub queued: usize,
    /// The pending queue was full: some versions were left for a later pull.
    pub full: bool,
}

/// Verifies and queues versions from neighbour `src`, staging content that came inline.
pub fn offer(node: &Node, src: usize, items: Vec<Item>, received: Instant) -> Offered {
    let mut queued = 0;
    let mut full = false;
    let src_name = node.peers[src].cfg.name.as_str();
    for Item { entry: e, content } in items {
        // Cheap checks first: a version equal to what we hold, or already queued, changes
        // nothing, so its signature need not be checked (ed25519 verification dominated the CPU).
        // A dominated one changes nothing either, but its dot is recorded as seen (so nobody
        // offers it again), and that is state: only once its signature holds, or a forged dot
        // would hide the genuine version that has it.
        let superseded = {
            let idx = node.index();
            match node.resolve(idx.get(&e.path), &e) {
                Resolution::Same => {
                    node.metrics.versions_redundant.inc();
                    continue;
                }
                Resolution::Ignore => true,
                _ => false,
            }
        };
        if !superseded {
            let mut pending = lock(&node.pending);
            if let Some(item) = pending.get_mut(&e.path)
                && item.entry == e
            {
                node.metrics.versions_redundant.inc();
                if !item.sources.contains(&src) {
                    item.sources.push(src);
                }
                continue;
            }
        }
        match e.verify(|a| node.key_of(a)) {
            // Signed, but nonsense no honest author writes: refused like bad data.
            Ok(()) if let Some(lie) = e.metadata_lie(crate::hlc::wall_ms()) => {
                let reason = match lie {
                    MetadataLie::Timestamp => Reason::bad_timestamp,
                    MetadataLie::Counter => Reason::bad_counter,
                };
                refuse(node, src, &e, reason, None);
                continue;
            }
            // Genuine, but perhaps one of two statements its author signed under one counter.
            Ok(()) => {
                crate::equivocation::check_received(node, &e, src);
            }
            Err(Invalid::Untrusted) => {
                // Relaying a stranger's version is no offence of the sender's: no strike.
                node.metrics.reject(Reason::untrusted);
                node.audit
                    .record(Line::version(Event::Rejected, src_name, &e, Some("untrusted")));
                continue;
            }
            Err(Invalid::BadSignature) => {
                // With inline content this is also what tampered content looks like: the hash
                // the receiver computed is not the one the author signed.
                let reason = if content.is_some() {
                    Reason::bad_hash
                } else {
                    Reason::bad_signature
                };
                refuse(node, src, &e, reason, None);
                continue;
            }
        }
        if superseded {
            node.index().saw(&e);
            continue;
        }
        if content.as_ref().is_some_and(|c| c.len() as u64 != e.size) {
            refuse(node, src, &e, Reason::bad_hash, Some("bad_size"));
            continue;
        }
        // Never reuse a counter that others saw from us (e.g. our index was lost and restored).
        node.index().observe_counter(e.vv.get(&node.short));
        let room =
            |pending: &BTreeMap<String, PendingItem>| pending.len() < node.pending_max || pending.contains_key(&e.path);
        if !room(&lock(&node.pending)) {
            full = true;
            continue;
        }
        let staged = content.and_then(|c| stage_bytes(node, &e, &c));
        let mut pending = lock(&node.pending);
        let at_cap = pending.len() >= node.pending_max;
        match pending.get_mut(&e.path) {
            Some(item) if item.entry == e => {
                if !item.sources.contains(&src) {
                    item.sources.push(src);
                }
                discard(staged);
            }
            Some(item) => {
                if matches!(node.resolve(Some(&item.entry), &e), Resolution::TakeRemote { .. }) {
                    discard(item.staged.take());
                    node.audit.record(Line::version(Event::Offered, src_name, &e, None));
                    *item = new_item(e, src, received, staged);
                    queued += 1;
                } else {
                    discard(staged);
                }
            }
            None if at_cap => {
                full = true;
                discard(staged);
            }
            None => {
                node.audit.record(Line::version(Event::Offered, src_name, &e, None));
                pending.insert(e.path.clone(), new_item(e, src, received, staged));
                queued += 1;
            }
        }
    }
    if queued > 0 {
        node.fetch_wake.notify_one();
    }
    Offered { queued, full }
}

/// Removes a staged temp file nobody will apply.
pub(crate) fn discard(staged: Option<PathBuf>) {
    if let Some(t) = staged {
        let _ = std::fs::remove_file(t);
    }
}

/// Writes verified inline content to the temp folder.
fn stage_bytes(node: &Node, e: &Entry, content: &[u8]) -> Option<PathBuf> {
    if e.deleted {
        return None;
    }
    let tmp = temp_path(node, &e.hash);
    match std::fs::write(&tmp, content) {
        Ok(()) => Some(tmp),
        Err(err) => {
            tracing::warn!("cannot stage {}: {err}", e.path);
            let _ = std::fs::remove_file(&tmp);
            None
        }
    }
}

fn new_item(entry: Entry, src: usize, received: Instant, staged: Option<PathBuf>) -> PendingItem {
    PendingItem {
        entry,
        sources: vec![src],
        tried: Vec::new(),
        received,
        staged,
        next_try: Instant::now(),
        failures: 0,
    }
}

fn temp_path(node: &Node, hash: &str) -> PathBuf {
    node.tmp_dir.join(format!(
        ".syncpeer-{}-{:016x}.tmp",
        &hash[..16.min(hash.len())],
        rand::random::<u64>()
    ))
}

/// The next neighbour to ask for an item: its advertisers first, then everyone else.
fn pick_source(node: &Node, item: &PendingItem) -> Option<usize> {
    let usable = |i: &usize| !item.tried.contains(i) && !node.is_quarantined(&node.peers[*i].short);
    let order = || item.sources.iter().copied().chain(0..node.peers.len()).filter(usable);
    // Neighbours that answered their last summary first: a partitioned one costs a timeout.
    order()
        .find(|i| node.peers[*i].reachable.load(std::sync::atomic::Ordering::Relaxed))
        .or_else(|| order().next())
}

/// Copies local content with the same hash (a renamed or duplicated file, or the loser of a
/// conflict we hold ourselves), verifying it.
fn stage_local(node: &Node, e: &Entry) -> Option<PathBuf> {
    let src = node.index().path_for_hash(&e.hash)?;
    let tmp = temp_path(node, &e.hash);
    let ok = (|| -> std::io::Result<bool> {
        let mut f = crate::beneath::open_file(&node.settings.sync_dir, &src)?;
        let mut out = std::fs::File::create(&tmp)?;
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
        Ok(h.finalize().to_hex().as_str() == e.hash)
    })();
    if matches!(ok, Ok(true)) {
        Some(tmp)
    } else {
        let _ = std::fs::remove_file(&tmp);
        None
    }
}

/// Whether downloaded content is checked against the signed hash: not by the legacy flavor, nor by
/// `mutant-data-poisoning` (see [`crate::mutant`]); both check the size only.
fn checks_hashes(node: &Node) -> bool {
    !node.legacy() && !node.mutant(crate::mutant::Mutant::DataPoisoning)
}

pub(crate) enum Got {
    Staged(PathBuf),
    /// The neighbour does not have it (or failed): try another.
    Missing,
    /// It sent wrong content: strike, try another.
    Bad,
}

/// Fetches a batch of small blobs from one neighbour.
pub(crate) async fn fetch_batch(node: &Arc<Node>, src: usize, entries: &[Entry]) -> Result<Vec<Got>, WireError> {
    let peer = &node.peers[src];
    let hashes: Vec<String> = entries.iter().map(|e| e.hash.clone()).collect();
    let req = Request::post("/v1/blobs")
        .json(&BlobsReq { hashes })
        .timeout(SMALL_TIMEOUT);
    let resp = wire::send(node, peer, Kind::blob, req).await?;
    let body = wire::body(node, peer, Kind::blob, resp).await?;
    let parts = unframe_blobs(&body, entries.len()).ok_or_else(|| WireError::Malformed {
        peer: peer.cfg.name.clone(),
        what: "blob batch",
    })?;
    let mut out = Vec::with_capacity(entries.len());
    for (e, part) in entries.iter().zip(parts) {
        let Some(bytes) = part else {
            out.push(Got::Missing);
            continue;
        };
        if bytes.len() as u64 != e.size || (checks_hashes(node) && blake3::hash(bytes).to_hex().as_str() != e.hash) {
            out.push(Got::Bad);
            continue;
        }
        let tmp = temp_path(node, &e.hash);
        match std::fs::write(&tmp, bytes) {
            Ok(()) => out.push(Got::Staged(tmp)),
            Err(err) => {
                tracing::warn!("cannot stage {}: {err}", e.path);
                out.push(Got::Missing);
            }
        }
    }
    Ok(out)
}

/// Streams one large blob into `<tmp>/.syncpeer-<hash>.part`, resuming a previous partial
/// download with `Range`.
pub(crate) async fn fetch_large(node: &Arc<Node>, src: usize, e: &Entry) -> Got {
    let peer = &node.peers[src];
    let part = node.tmp_dir.join(format!(".syncpeer-{}.part", e.hash));
    let mut hasher = blake3::Hasher::new();
    let mut have = 0u64;
    let mut resumed = false;
    if let Ok(mut f) = std::fs::File::open(&part) {
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            have += n as u64;
        }
        resumed = have > 0;
        if have > e.size {
            let _ = std::fs::remove_file(&part);
            hasher = blake3::Hasher::new();
            have = 0;
            resumed = false;
        }
    }
    let mut req = Request::get(format!("/v1/blob/{}", e.hash));
    if have > 0 {
        let range = HeaderValue::from_str(&format!("bytes={have}-")).expect("ascii");
        req = req.header(header::RANGE, range);
    }
    let mut resp = match wire::send(node, peer, Kind::blob, req).await {
        Ok(r) => r,
        Err(err) => {
            tracing::debug!("{err}");
            return Got::Missing;
        }
    };
    if resp.status().as_u16() != 206 {
        // A full body: start over.
        hasher = blake3::Hasher::new();
        have = 0;
        resumed = false;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(have == 0)
        .open(&part);
    let Ok(file) = file else {
        return Got::Missing;
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    if have > 0 && std::io::Seek::seek(out.get_mut(), std::io::SeekFrom::Start(have)).is_err() {
        return Got::Missing;
    }
    // A stalled or crawling sender (slowloris) must not hold the fetcher: at most 10 s without
    // data, and the whole attempt within 30 s plus 1 s per MiB; the partial file is kept for a
    // resume from another peer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30 + (e.size >> 20));
    loop {
        let wait = Duration::from_secs(10).min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                node.metrics
                    .received_bytes(&peer.cfg.name, Kind::blob, chunk.len() as u64);
                have += chunk.len() as u64;
                if have > e.size {
                    break;
                }
                hasher.update(&chunk);
                if out.write_all(&chunk).is_err() {
                    return Got::Missing;
                }
            }
            Ok(Ok(None)) => break,
            // Broken or stalled connection (slowloris): keep the partial file for a resume.
            Ok(Err(_)) | Err(_) => {
                let _ = out.flush();
                return Got::Missing;
            }
        }
    }
    if out.flush().is_err() {
        return Got::Missing;
    }
    drop(out);
    if have != e.size || (checks_hashes(node) && hasher.finalize().to_hex().as_str() != e.hash) {
        let _ = std::fs::remove_file(&part);
        // Only blame the sender when it sent the whole file.
        return if resumed { Got::Missing } else { Got::Bad };
    }
    let tmp = temp_path(node, &e.hash);
    match std::fs::rename(&part, &tmp) {
        Ok(()) => Got::Staged(tmp),
        Err(_) => Got::Missing,
    }
}

/// One pass over the ready pending items; returns whether anything was attempted.
async fn pass(node: &Arc<Node>) -> bool {
    let now = Instant::now();
    // Choose work: up to a few hundred items, grouped by source.
    let mut tomb = Vec::new();
    let mut local = Vec::new();
    let mut small: BTreeMap<usize, Vec<Entry>> = BTreeMap::new();
    let mut large = Vec::new();
    let mut ready = Vec::new();
    {
        let mut pending = lock(&node.pending);
        // Versions overtaken meanwhile (a newer one was applied) need no content any more, and
        // waiting for content nobody serves any longer would keep them pending forever.
        {
            let mut idx = node.index();
            pending.retain(|p, item| {
                let keep = !matches!(
                    node.resolve(idx.get(p), &item.entry),
                    Resolution::Ignore | Resolution::Same
                );
                if !keep {
                    idx.saw(&item.entry);
                    discard(item.staged.take());
                }
                keep
            });
        }
        let mut budget = 0u64;
        let mut count = 0usize;
        for item in pending.values_mut() {
            if item.next_try > now {
                continue;
            }
            if item.entry.deleted {
                tomb.push(item.entry.clone());
                continue;
            }
            if count >= 1024 || budget >= 64 << 20 {
                break;
            }
            // Content that came inline is ready; if applying it fails, it is fetched like any other.
            if let Some(t) = item.staged.take() {
                ready.push((item.entry.clone(), t));
                count += 1;
                continue;
            }
            let e = &item.entry;
            let have_local = node.index().path_for_hash(&e.hash).is_some();
            if have_local {
                local.push(e.clone());
                count += 1;
                continue;
            }
            let Some(src) = pick_source(node, item) else {
                // Everyone was tried: back off, then start over.
                item.tried.clear();
                item.failures += 1;
                item.next_try = now + Duration::from_millis((250u64 << item.failures.min(7)).min(30_000));
                continue;
            };
            if e.size <= BATCH_FILE_MAX {
                let group = small.entry(src).or_default();
                let bytes: u64 = group.iter().map(|x| x.size).sum();
                if bytes + e.size > FETCH_BATCH_BYTES && !group.is_empty() {
                    continue; // next pass
                }
                group.push(e.clone());
            } else {
                large.push((src, e.clone()));
            }
            budget += e.size;
            count += 1;
        }
    }
    if tomb.is_empty() && local.is_empty() && small.is_empty() && large.is_empty() && ready.is_empty() {
        return false;
    }
    let received = |path: &str| lock(&node.pending).get(path).map_or(now, |i| i.received);
    let mut staged: Vec<Staged> = tomb
        .into_iter()
        .map(|e| {
            let r = received(&e.path);
            Staged {
                entry: e,
                temp: None,
                received: r,
            }
        })
        .collect();
    staged.extend(ready.into_iter().map(|(e, t)| Staged {
        received: received(&e.path),
        entry: e,
        temp: Some(t),
    }));
    let mut failed: Vec<(String, Option<usize>)> = Vec::new();
    for e in local {
        let n = node.clone();
        let e2 = e.clone();
        match tokio::task::spawn_blocking(move || stage_local(&n, &e2))
            .await
            .ok()
            .flatten()
        {
            Some(t) => staged.push(Staged {
                received: received(&e.path),
                entry: e,
                temp: Some(t),
            }),
            None => failed.push((e.path.clone(), None)),
        }
    }
    // One batch per neighbour, all at once: a slow or partitioned neighbour delays only its own.
    let mut batches = tokio::task::JoinSet::new();
    for (src, entries) in small {
        let n = node.clone();
        batches.spawn(async move {
            let r = fetch_batch(&n, src, &entries).await;
            (src, entries, r)
        });
    }
    while let Some(joined) = batches.join_next().await {
        let Ok((src, entries, r)) = joined else { continue };
        match r {
            Ok(gots) => {
                for (e, got) in entries.into_iter().zip(gots) {
                    match got {
                        Got::Staged(t) => staged.push(Staged {
                            received: received(&e.path),
                            entry: e,
                            temp: Some(t),
                        }),
                        Got::Missing => failed.push((e.path, Some(src))),
                        Got::Bad => {
                            bad_hash(node, src, &e);
                            failed.push((e.path, Some(src)));
                        }
                    }
                }
            }
            Err(err) => {
                tracing::debug!("{err}");
                failed.extend(entries.into_iter().map(|e| (e.path, Some(src))));
            }
        }
    }
    // Apply what is ready before the (slow) large files.
    apply(node, std::mem::take(&mut staged)).await;
    for (src, e) in large {
        match fetch_large(node, src, &e).await {
            Got::Staged(t) => {
                let r = received(&e.path);
                apply(
                    node,
                    vec![Staged {
                        entry: e,
                        temp: Some(t),
                        received: r,
                    }],
                )
                .await;
            }
            Got::Missing => failed.push((e.path, Some(src))),
            Got::Bad => {
                bad_hash(node, src, &e);
                failed.push((e.path, Some(src)));
            }
        }
    }
    let mut pending = lock(&node.pending);
    for (path, src) in failed {
        if let Some(item) = pending.get_mut(&path) {
            match src {
                Some(s) => item.tried.push(s),
                None => item.next_try = now + Duration::from_millis(200),
            }
        }
    }
    true
}

fn bad_hash(node: &Node, src: usize, e: &Entry) {
    refuse(node, src, e, Reason::bad_hash, None);
}

/// What happens to bad data from neighbour `src` (a version or its content): counted by `reason`,
/// written to the audit trail (as `audit_reason` when the trail can say more than the metric), and
/// a strike against the sender.
fn refuse(node: &Node, src: usize, e: &Entry, reason: Reason, audit_reason: Option<&str>) {
    let peer = &node.peers[src];
    let why = audit_reason.map_or_else(|| format!("{reason:?}"), str::to_string);
    tracing::warn!(peer = %peer.cfg.name, path = %e.path, "rejected a version or its content ({why})");
    node.metrics.reject(reason);
    node.audit
        .record(Line::version(Event::Rejected, &peer.cfg.name, e, Some(&why)));
    node.strike(&peer.short);
}

async fn apply(node: &Arc<Node>, staged: Vec<Staged>) {
    if staged.is_empty() {
        return;
    }
    let entries: Vec<Entry> = staged.iter().map(|s| s.entry.clone()).collect();
    let temps: Vec<PathBuf> = staged.iter().filter_map(|s| s.temp.clone()).collect();
    let n = node.clone();
    let done = tokio::task::spawn_blocking(move || apply_batch(&n, staged))
        .await
        .unwrap_or_default();
    // Staged files that were not moved into place are garbage now.
    for t in temps {
        let _ = std::fs::remove_file(t);
    }
    let mut pending = lock(&node.pending);
    for e in entries {
        if done.contains(&e.path) && pending.get(&e.path).is_some_and(|i| i.entry == e) {
            pending.remove(&e.path);
        } else if let Some(i) = pending.get_mut(&e.path) {
            i.next_try = Instant::now() + Duration::from_millis(200);
        }
    }
}

/// The fetcher task: runs passes while there is ready work, then waits for new work or a tick.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(node.settings.anti_entropy.min(Duration::from_millis(500)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = node.fetch_wake.notified() => {}
            _ = tick.tick() => {}
        }
        while pass(&node).await {
            if *stop.borrow() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::identity::Identity;
    use crate::knowledge::dot;
    use crate::version_vector::VersionVector;

    fn version(author: &Identity, path: &str, counter: u64) -> Item {
        let mut vv = VersionVector::new();
        vv.set(&author.id().short(), counter);
        let hash = blake3::hash(path.as_bytes()).to_hex().to_string();
        let hlc = Hlc { ms: 1_000, c: 0 };
        Item {
            entry: Entry::author(author, path.into(), vv, hash, 4, false, hlc),
            content: None,
        }
    }

    #[test]
    fn issue_13_the_pending_queue_is_bounded_and_what_does_not_fit_comes_again() {
        // Every verified version that would change the index was queued, however many.
        let dir = tempfile::tempdir().unwrap();
        let author = Identity::generate();
        let mut node = crate::daemon::test_node(dir.path(), &author);
        node.pending_max = 10;
        let items: Vec<Item> = (1..=25).map(|i| version(&author, &format!("f-{i}"), i)).collect();
        let dots: Vec<_> = items.iter().map(|i| dot(&i.entry)).collect();
        let offered = offer(&node, 0, items, Instant::now());
        assert_eq!((offered.queued, offered.full), (10, true));
        assert_eq!(lock(&node.pending).len(), 10);
        // Not queued, not seen: the next pull asks for them again.
        let k = node.knowledge_for(0);
        assert_eq!(dots.iter().filter(|d| k.contains(**d)).count(), 10);
    }
}
