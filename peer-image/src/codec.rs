//! The compact binary encoding of `POST /v1/pull` (and of hints): a puller's [`Knowledge`], and
//! the versions it lacks, each optionally followed by its content.
//!
//! Why binary: for a 1 KiB file, a signed entry as JSON (hex hash, hex signature, hex author ids,
//! field names) was ~420 bytes, 40 % of the payload. Here an entry is its signature (64 bytes,
//! the one part that cannot shrink), the path's suffix after the previous entry's path, and
//! varints; ~80 bytes. When the content travels inline, its hash is not sent at all: the receiver
//! computes it (it must hash the content anyway) and the signature covers it, so a tampered body
//! fails the signature.
//!
//! ```text
//! varint    LEB128, unsigned
//! knowledge varint authors, then per author: u64 LE author key, varint ranges,
//!           per range: varint (lo - previous hi - 1, or lo for the first), varint (hi - lo)
//! request   u8 flags (1 = send small content inline), knowledge
//! response  u8 flags (1 = more pages follow), varint authors, u64 LE each, then per item:
//!             u8 flags (1 deleted, 2 origin, 4 inline content, 8 hash present, 16 vv is the author's)
//!             varint shared prefix with the previous item's path, varint suffix len, suffix
//!             [origin: varint len, bytes]
//!             varint author (index into the table), then the version vector: with flag 16 only the
//!             author's counter (varint), else varint entries, (varint author, varint counter)*
//!             zigzag varint hlc.ms delta from the previous item, varint hlc.c, varint size
//!             [hash: 32 bytes] sig: 64 bytes [content: size bytes]
//!           u8 0x80 (end of items), knowledge fills
//! ```
//!
//! A hint's body is the hinter's knowledge (so a node pulls only when the hinter has news).

use bytes::Bytes;

use crate::entry::{Entry, PATH_MAX_BYTES, VV_AUTHORS_MAX};
use crate::hlc::Hlc;
use crate::knowledge::{KNOWLEDGE_RANGES_MAX, Knowledge, author_key, author_short};
use crate::version_vector::VersionVector;

const F_MORE: u8 = 1;
const F_INLINE: u8 = 1;
const I_DELETED: u8 = 1;
const I_ORIGIN: u8 = 2;
const I_INLINE: u8 = 4;
const I_HASH: u8 = 8;
/// The version vector is just the author's own counter (a path's first version, or one edited by
/// a single author): only the counter is sent.
const I_VV_SELF: u8 = 16;
/// Ends the item list (no item has this flag combination).
const I_END: u8 = 0x80;

/// Decoding limits (listed in `docs/PEER.md`, "What a neighbour can make us spend"): a malformed
/// or hostile body fails cleanly, and every allocation is checked against the bytes received and
/// these caps before it is made.
/// Items in one pull page: what a server sends at most (`protocol::PULL_ITEMS_MAX`, checked by a
/// test; not imported, so that the codec stays below the protocol).
pub const PAGE_ITEMS_MAX: usize = 1000;
/// Authors in a page's table or in one knowledge.
const MAX_AUTHORS: u64 = 65_536;
/// Authors in one version vector ([`crate::entry::VV_AUTHORS_MAX`]).
const MAX_VV: u64 = VV_AUTHORS_MAX as u64;
/// A whole path or origin in bytes ([`crate::entry::PATH_MAX_BYTES`]), prefix shared with the
/// previous item included: with only the suffix capped, reused prefixes made a 1.2 MiB page
/// decode to 3.1 GiB.
const MAX_PATH: u64 = PATH_MAX_BYTES as u64;
/// Heap the metadata of one decoded page may take (paths, origins, hex hash and signature,
/// version vectors). A full page of the deepest paths with 64-author vectors and conflict origins
/// takes ~12 MiB. Inline content is not counted: it stays a slice of the received body.
pub const PAGE_DECODED_MAX: usize = 16 << 20;
/// What one version-vector author costs once decoded (its slot plus a 16-byte string).
const VV_ENTRY_COST: usize = std::mem::size_of::<(String, u64)>() + 16;

#[derive(Debug, thiserror::Error)]
#[error("malformed binary body: {0}")]
pub struct Malformed(&'static str);

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn u8(&mut self) -> Result<u8, Malformed> {
        let b = *self.buf.get(self.pos).ok_or(Malformed("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f).checked_shl(shift).ok_or(Malformed("varint"))?;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed("varint too long"))
    }

    fn bounded(&mut self, max: u64, what: &'static str) -> Result<usize, Malformed> {
        let v = self.varint()?;
        if v > max {
            return Err(Malformed(what));
        }
        Ok(v as usize)
    }

    fn take(&mut self, n: usize) -> Result<Bytes, Malformed> {
        if self.buf.len() - self.pos < n {
            return Err(Malformed("truncated"));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn u64le(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b[..].try_into().expect("8 bytes")))
    }

    fn done(&self) -> Result<(), Malformed> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes"))
        }
    }
}

pub fn put_knowledge(out: &mut Vec<u8>, k: &Knowledge) {
    let authors: Vec<_> = k.authors().filter(|(_, r)| !r.is_empty()).collect();
    put_varint(out, authors.len() as u64);
    for (a, r) in authors {
        out.extend_from_slice(&a.to_le_bytes());
        put_varint(out, r.ranges().len() as u64);
        let mut next = 0u64;
        for &(lo, hi) in r.ranges() {
            put_varint(out, lo - next);
            put_varint(out, hi - lo);
            next = hi.saturating_add(1);
        }
    }
}

fn get_knowledge(r: &mut Reader) -> Result<Knowledge, Malformed> {
    let mut k = Knowledge::new();
    let n = r.bounded(MAX_AUTHORS, "too many authors")?;
    let mut total = 0usize;
    let mut prev_author = None;
    for _ in 0..n {
        let a = r.u64le()?;
        // Authors come in order (the encoder walks a sorted map) and ranges in order within an
        // author, so every range appends: decoding is linear. A repeated author would insert into
        // the middle (quadratic).
        if prev_author.is_some_and(|p| p >= a) {
            return Err(Malformed("knowledge authors out of order"));
        }
        prev_author = Some(a);
        let ranges = r.bounded(KNOWLEDGE_RANGES_MAX as u64, "too many ranges")?;
        total += ranges;
        if total > KNOWLEDGE_RANGES_MAX {
            return Err(Malformed("too many ranges"));
        }
        let mut next = 0u64;
        for _ in 0..ranges {
            let lo = next.checked_add(r.varint()?).ok_or(Malformed("range"))?;
            let hi = lo.checked_add(r.varint()?).ok_or(Malformed("range"))?;
            k.insert_range(a, lo, hi);
            next = hi.saturating_add(1);
        }
    }
    Ok(k)
}

/// Just a knowledge (a hint's body).
pub fn encode_knowledge(k: &Knowledge) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 12 * k.ranges());
    put_knowledge(&mut out, k);
    out
}

pub fn decode_knowledge(body: Bytes) -> Result<Knowledge, Malformed> {
    let mut r = Reader { buf: body, pos: 0 };
    let k = get_knowledge(&mut r)?;
    r.done()?;
    Ok(k)
}

/// What a puller asks for: everything it lacks, with small content inline or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReq {
    pub knowledge: Knowledge,
    pub inline: bool,
}

pub fn encode_pull_req(req: &PullReq) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + 12 * req.knowledge.ranges());
    out.push(if req.inline { F_INLINE } else { 0 });
    put_knowledge(&mut out, &req.knowledge);
    out
}

pub fn decode_pull_req(body: Bytes) -> Result<PullReq, Malformed> {
    let mut r = Reader { buf: body, pos: 0 };
    let inline = r.u8()? & F_INLINE != 0;
    let knowledge = get_knowledge(&mut r)?;
    r.done()?;
    Ok(PullReq { knowledge, inline })
}

/// One version in a pull response, with its content when it travelled inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub entry: Entry,
    pub content: Option<Bytes>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullResp {
    pub items: Vec<Item>,
    /// Dots the responder has seen but holds no version of any more (superseded): the puller
    /// counts them as known *when talking to this responder*, so its requests stay small.
    pub fills: Knowledge,
    /// The page was cut by the size budget: pull again.
    pub more: bool,
}

fn hex_to<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

fn shared_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !b.is_char_boundary(n) {
        n -= 1;
    }
    n
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Writes a response body item by item, straight into the final buffer (no second copy of the
/// content: with nine neighbours pulling at once, copies were a large part of peak memory).
struct RespWriter {
    out: Vec<u8>,
    table: Vec<u64>,
    prev_path: String,
    prev_ms: u64,
}

impl RespWriter {
    /// `entries`: every entry that may be pushed (their authors form the table).
    fn new(entries: &[&Entry], capacity: usize) -> RespWriter {
        let mut table: Vec<u64> = Vec::new();
        for e in entries {
            for a in std::iter::once(e.author.as_str()).chain(e.vv.iter().map(|(a, _)| a)) {
                let k = author_key(a);
                if !table.contains(&k) {
                    table.push(k);
                }
            }
        }
        let mut out = Vec::with_capacity(capacity + 16 + 8 * table.len());
        out.push(0); // flags, set by `finish`
        put_varint(&mut out, table.len() as u64);
        for a in &table {
            out.extend_from_slice(&a.to_le_bytes());
        }
        RespWriter {
            out,
            table,
            prev_path: String::new(),
            prev_ms: 0,
        }
    }

    fn author(&self, a: &str) -> u64 {
        let k = author_key(a);
        self.table.iter().position(|x| *x == k).expect("author in the table") as u64
    }

    fn push(&mut self, e: &Entry, content: Option<&[u8]>) {
        let content = content.filter(|_| !e.deleted);
        let hash_bytes: Option<[u8; 32]> = if e.deleted || content.is_some() {
            None
        } else {
            hex_to(&e.hash)
        };
        let mut flags = 0;
        if e.deleted {
            flags |= I_DELETED;
        }
        if e.origin.is_some() {
            flags |= I_ORIGIN;
        }
        if content.is_some() {
            flags |= I_INLINE;
        }
        if hash_bytes.is_some() {
            flags |= I_HASH;
        }
        let vv_self = e.vv.len() == 1 && e.vv.iter().all(|(a, _)| a == e.author);
        if vv_self {
            flags |= I_VV_SELF;
        }
        let out = &mut self.out;
        out.push(flags);
        let p = shared_prefix(&self.prev_path, &e.path);
        put_varint(out, p as u64);
        put_varint(out, (e.path.len() - p) as u64);
        out.extend_from_slice(&e.path.as_bytes()[p..]);
        self.prev_path.clone_from(&e.path);
        if let Some(o) = &e.origin {
            put_varint(out, o.len() as u64);
            out.extend_from_slice(o.as_bytes());
        }
        let a = self.author(&e.author);
        let out = &mut self.out;
        put_varint(out, a);
        if vv_self {
            put_varint(out, e.vv.get(&e.author));
        } else {
            put_varint(out, e.vv.len() as u64);
            for (author, counter) in e.vv.iter() {
                let a = self
                    .table
                    .iter()
                    .position(|x| *x == author_key(author))
                    .expect("author in the table") as u64;
                put_varint(&mut self.out, a);
                put_varint(&mut self.out, counter);
            }
        }
        let out = &mut self.out;
        put_varint(out, zigzag(e.hlc.ms.wrapping_sub(self.prev_ms) as i64));
        self.prev_ms = e.hlc.ms;
        put_varint(out, u64::from(e.hlc.c));
        put_varint(out, e.size);
        if let Some(h) = hash_bytes {
            out.extend_from_slice(&h);
        }
        out.extend_from_slice(&hex_to::<64>(&e.sig).unwrap_or([0; 64]));
        if let Some(c) = content {
            out.extend_from_slice(c);
        }
    }

    fn finish(mut self, fills: &Knowledge, more: bool) -> Vec<u8> {
        self.out.push(I_END);
        if more {
            self.out[0] = F_MORE;
            put_knowledge(&mut self.out, &Knowledge::new());
        } else {
            put_knowledge(&mut self.out, fills);
        }
        self.out
    }
}

/// Encodes a whole response (tests, fakes). An item's content must be the entry's exact content.
pub fn encode_pull_resp(resp: &PullResp) -> Vec<u8> {
    let entries: Vec<&Entry> = resp.items.iter().map(|i| &i.entry).collect();
    let mut w = RespWriter::new(&entries, 0);
    for it in &resp.items {
        w.push(&it.entry, it.content.as_deref());
    }
    w.finish(&resp.fills, resp.more)
}

/// Encodes one page of a pull answer: `entries` in order, content from `read` for those that may
/// go inline (`inline`, not deleted, at most `file_max`), until the inline bytes would pass
/// `budget` (one entry always goes). Returns the body, how many entries it holds and the inline
/// bytes. `complete`: `entries` is all there is (else the page says "more" and drops `fills`).
pub fn encode_pull_page(
    entries: &[Entry],
    fills: &Knowledge,
    complete: bool,
    inline: bool,
    file_max: u64,
    budget: u64,
    mut read: impl FnMut(&Entry) -> Option<Vec<u8>>,
) -> (Vec<u8>, usize, u64) {
    let refs: Vec<&Entry> = entries.iter().collect();
    let estimate = entries.iter().map(|e| 100 + e.path.len()).sum::<usize>() + budget as usize;
    let mut w = RespWriter::new(&refs, estimate.min(budget as usize + (1 << 20)));
    let mut more = !complete;
    let mut inline_bytes = 0u64;
    let mut n = 0;
    for e in entries {
        let eligible = inline && !e.deleted && e.size <= file_max;
        if eligible && n > 0 && inline_bytes + e.size > budget {
            more = true;
            break;
        }
        let content = if eligible { read(e) } else { None };
        inline_bytes += content.as_ref().map_or(0, |c| c.len() as u64);
        w.push(e, content.as_deref());
        n += 1;
    }
    (w.finish(fills, more), n, inline_bytes)
}

/// What a page's decoded metadata has cost so far, against [`PAGE_DECODED_MAX`]: charged before
/// each allocation.
struct Budget(usize);

impl Budget {
    fn charge(&mut self, bytes: usize) -> Result<(), Malformed> {
        self.0 = self.0.saturating_add(bytes);
        if self.0 > PAGE_DECODED_MAX {
            return Err(Malformed("decoded page too large"));
        }
        Ok(())
    }
}

pub fn decode_pull_resp(body: Bytes) -> Result<PullResp, Malformed> {
    let mut r = Reader { buf: body, pos: 0 };
    let more = r.u8()? & F_MORE != 0;
    let n_authors = r.bounded(MAX_AUTHORS, "too many authors")?;
    // Each author is 8 bytes on the wire: the count cannot ask for more than the body holds.
    if n_authors > (r.buf.len() - r.pos) / 8 {
        return Err(Malformed("truncated"));
    }
    let mut budget = Budget(0);
    budget.charge(n_authors * (8 + std::mem::size_of::<String>() + 16))?;
    let mut keys = Vec::with_capacity(n_authors);
    for _ in 0..n_authors {
        keys.push(r.u64le()?);
    }
    let table: Vec<String> = keys.iter().map(|k| author_short(*k)).collect();
    let author = |r: &mut Reader| -> Result<usize, Malformed> {
        let i = r.varint()? as usize;
        if i < table.len() {
            Ok(i)
        } else {
            Err(Malformed("author index"))
        }
    };
    let mut items = Vec::new();
    let mut prev_path = String::new();
    let mut prev_ms = 0u64;
    loop {
        let flags = r.u8()?;
        if flags == I_END {
            break;
        }
        if items.len() >= PAGE_ITEMS_MAX {
            return Err(Malformed("too many items"));
        }
        let p = r.bounded(prev_path.len() as u64, "path prefix")?;
        let suffix_len = r.bounded(MAX_PATH - p as u64, "path too long")?;
        let suffix = r.take(suffix_len)?;
        budget.charge(std::mem::size_of::<Item>() + p + suffix_len + 64 + 128)?;
        let mut raw = Vec::with_capacity(p + suffix_len);
        raw.extend_from_slice(&prev_path.as_bytes()[..p]);
        raw.extend_from_slice(&suffix);
        let path = String::from_utf8(raw).map_err(|_| Malformed("path is not UTF-8"))?;
        let origin = if flags & I_ORIGIN != 0 {
            let len = r.bounded(MAX_PATH, "origin too long")?;
            let bytes = r.take(len)?;
            budget.charge(len)?;
            Some(String::from_utf8(bytes.to_vec()).map_err(|_| Malformed("origin is not UTF-8"))?)
        } else {
            None
        };
        let author_i = author(&mut r)?;
        let author_id = table[author_i].clone();
        let mut vv = VersionVector::new();
        if flags & I_VV_SELF != 0 {
            budget.charge(VV_ENTRY_COST)?;
            vv.set(&author_id, r.varint()?);
        } else {
            let n_vv = r.bounded(MAX_VV, "version vector too long")?;
            // Two bytes at least per author on the wire.
            if n_vv > (r.buf.len() - r.pos) / 2 {
                return Err(Malformed("truncated"));
            }
            budget.charge(n_vv * VV_ENTRY_COST)?;
            let mut pairs = Vec::with_capacity(n_vv);
            for _ in 0..n_vv {
                let a = author(&mut r)?;
                // The encoder writes a vector sorted by author; anything else would make each
                // insert shift the vector (quadratic in a length the sender picks).
                if pairs.last().is_some_and(|&(last, _)| keys[last] >= keys[a]) {
                    return Err(Malformed("version vector authors out of order"));
                }
                pairs.push((a, r.varint()?));
            }
            vv = VersionVector::from_sorted(pairs.into_iter().map(|(a, c)| (table[a].clone(), c)).collect());
        }
        let ms = prev_ms.wrapping_add(unzigzag(r.varint()?) as u64);
        prev_ms = ms;
        let c = u32::try_from(r.varint()?).map_err(|_| Malformed("hlc counter"))?;
        let size = r.varint()?;
        let deleted = flags & I_DELETED != 0;
        let hash = if flags & I_HASH != 0 {
            hex::encode(r.take(32)?)
        } else {
            String::new()
        };
        let sig = hex::encode(r.take(64)?);
        let content = if flags & I_INLINE != 0 {
            let len = usize::try_from(size).map_err(|_| Malformed("size"))?;
            Some(r.take(len)?)
        } else {
            None
        };
        let hash = match &content {
            Some(c) if !deleted => blake3::hash(c).to_hex().to_string(),
            _ => hash,
        };
        prev_path.clone_from(&path);
        items.push(Item {
            entry: Entry {
                path,
                origin,
                vv,
                hash,
                size,
                deleted,
                author: author_id,
                hlc: Hlc { ms, c },
                sig,
            },
            content,
        });
    }
    let fills = get_knowledge(&mut r)?;
    r.done()?;
    Ok(PullResp { items, fills, more })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn entry(me: &Identity, path: &str, n: u64, content: &[u8], ms: u64) -> Entry {
        let mut vv = VersionVector::new();
        vv.set(&me.id().short(), n);
        vv.set("00000000000000aa", 3);
        let hash = blake3::hash(content).to_hex().to_string();
        Entry::author(me, path.into(), vv, hash, content.len() as u64, false, Hlc { ms, c: 2 })
    }

    #[test]
    fn pull_response_round_trips_with_and_without_inline_content() {
        let a = Identity::from_seed([7; 32]);
        let mut del = entry(&a, "docs/gone.txt", 9, b"", 1_700_000_000_500);
        del.deleted = true;
        del.hash.clear();
        let mut copy = entry(&a, "docs/ü.sync-conflict-x.txt", 4, b"loser", 1_700_000_000_000);
        copy.origin = Some("docs/ü.txt".into());
        let items = vec![
            Item {
                entry: entry(&a, "docs/ünïcode-1.txt", 1, b"one", 1_700_000_000_000),
                content: Some(Bytes::from_static(b"one")),
            },
            Item {
                entry: entry(&a, "docs/ünïcode-2.txt", 2, b"two", 1_699_999_999_000),
                content: None,
            },
            Item {
                entry: del,
                content: None,
            },
            Item {
                entry: copy,
                content: None,
            },
        ];
        let mut fills = Knowledge::new();
        fills.insert_range(5, 10, 20);
        let resp = PullResp {
            items,
            fills,
            more: false,
        };
        let bytes = encode_pull_resp(&resp);
        let back = decode_pull_resp(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(back, resp);
        // A page cut short says so, and its fills wait for the last page.
        let cut = PullResp {
            more: true,
            ..resp.clone()
        };
        let back_cut = decode_pull_resp(Bytes::from(encode_pull_resp(&cut))).unwrap();
        assert!(back_cut.more && back_cut.fills.is_empty() && back_cut.items == resp.items);
        let key = |s: &str| (s == a.id().short()).then(|| a.id());
        // (the last two were edited after signing: only the first two are genuine)
        assert!(back.items[..2].iter().all(|i| i.entry.verify(key).is_ok()));
        // Any truncation is malformed, never a panic.
        for cut in 0..bytes.len() {
            assert!(
                decode_pull_resp(Bytes::copy_from_slice(&bytes[..cut])).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn inline_content_is_hashed_by_the_receiver_so_tampering_breaks_the_signature() {
        let a = Identity::from_seed([7; 32]);
        let e = entry(&a, "f.txt", 1, b"honest", 1_000);
        let resp = PullResp {
            items: vec![Item {
                entry: e,
                content: Some(Bytes::from_static(b"honesT")),
            }],
            ..PullResp::default()
        };
        let back = decode_pull_resp(Bytes::from(encode_pull_resp(&resp))).unwrap();
        let key = |s: &str| (s == a.id().short()).then(|| a.id());
        assert!(back.items[0].entry.verify(key).is_err());
    }

    #[test]
    fn an_entry_is_small() {
        // 1 KiB files in one folder, each a first version: the per-file overhead is the signature
        // plus ~15 bytes.
        let a = Identity::from_seed([7; 32]);
        let content = vec![7u8; 1024];
        let hash = blake3::hash(&content).to_hex().to_string();
        let items: Vec<Item> = (0..100)
            .map(|i| {
                let mut vv = VersionVector::new();
                vv.set(&a.id().short(), 1000 + i);
                let hlc = Hlc {
                    ms: 1_700_000_000_000 + i,
                    c: 0,
                };
                let path = format!("bench/d042/file-{i:05}.bin");
                Item {
                    entry: Entry::author(&a, path, vv, hash.clone(), 1024, false, hlc),
                    content: Some(Bytes::from(content.clone())),
                }
            })
            .collect();
        let bytes = encode_pull_resp(&PullResp {
            items,
            ..PullResp::default()
        });
        let per_file = (bytes.len() - 100 * 1024) / 100;
        assert!(per_file <= 80, "{per_file} bytes of metadata per file");
    }

    /// A hand-built response page: a one-author table, then `items` as (shared prefix, suffix
    /// length, vector authors as table indexes) with everything else zero. What a hostile
    /// neighbour can send without signing anything.
    fn hostile_page(authors: u64, items: &[(u64, usize, Vec<u64>)]) -> Vec<u8> {
        let mut out = vec![0u8];
        put_varint(&mut out, authors);
        for a in 0..authors {
            out.extend_from_slice(&(a + 1).to_le_bytes());
        }
        for (prefix, suffix, vv) in items {
            out.push(if vv.is_empty() { I_VV_SELF } else { 0 });
            put_varint(&mut out, *prefix);
            put_varint(&mut out, *suffix as u64);
            out.extend(std::iter::repeat_n(b'a', *suffix));
            put_varint(&mut out, 0); // author
            if vv.is_empty() {
                put_varint(&mut out, 1);
            } else {
                put_varint(&mut out, vv.len() as u64);
                for a in vv {
                    put_varint(&mut out, *a);
                    put_varint(&mut out, 1);
                }
            }
            out.extend_from_slice(&[0, 0, 0]); // hlc delta, hlc counter, size
            out.extend_from_slice(&[0; 64]); // signature
        }
        out.push(I_END);
        put_varint(&mut out, 0); // no fills
        out
    }

    /// The error a hostile page is refused with (a short panic if it is accepted: the decoded
    /// page may be huge).
    fn refused(body: Vec<u8>) -> String {
        match decode_pull_resp(Bytes::from(body)) {
            Ok(p) => panic!("accepted: {} items", p.items.len()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn issue_13_paths_cannot_grow_past_the_cap_through_shared_prefixes() {
        // Each item reuses all of the previous path and adds 4 KiB: with only the suffix capped,
        // 256 such items (1 MiB on the wire) made a 1 MiB path that 0.2 MiB of empty-suffix items
        // then copied 2900 times (3.1 GiB), before any signature was checked.
        let mut items = vec![(0, 4096, vec![])];
        items.push((4096, 4096, vec![]));
        let err = refused(hostile_page(1, &items));
        assert!(err.contains("path too long"), "{err}");
        // A path of exactly the cap is fine, and so is reusing it.
        let ok = [(0, MAX_PATH as usize, vec![]), (MAX_PATH, 0, vec![])];
        let page = decode_pull_resp(Bytes::from(hostile_page(1, &ok))).unwrap();
        assert_eq!(page.items[1].entry.path.len(), MAX_PATH as usize);
    }

    #[test]
    fn issue_13_a_page_decodes_to_at_most_the_documented_metadata_cap() {
        // Version vectors of 4096 authors: 8 KiB on the wire each, ~200 KiB once decoded.
        let authors = 4096;
        let vv: Vec<u64> = (0..authors).collect();
        let items: Vec<_> = (0..PAGE_ITEMS_MAX as u64).map(|_| (0, 1, vv.clone())).collect();
        let body = hostile_page(authors, &items);
        assert!(body.len() < 12 << 20, "{}", body.len());
        let err = refused(body);
        assert!(err.contains("decoded page too large"), "{err}");
    }

    #[test]
    fn issue_13_an_honest_page_of_deep_paths_still_decodes() {
        // The honest worst case: a full page of the deepest paths with the largest vectors a mesh of
        // 64 authors makes (the fake author table is sorted, like the encoder's vectors).
        let deep = MAX_PATH as usize - 8;
        let mut items = vec![(0, deep, (0..64).collect::<Vec<u64>>())];
        items.extend((1..PAGE_ITEMS_MAX).map(|_| (deep as u64, 8, (0..64).collect())));
        let page = decode_pull_resp(Bytes::from(hostile_page(64, &items))).unwrap();
        assert_eq!(page.items.len(), PAGE_ITEMS_MAX);
    }

    #[test]
    fn issue_13_more_items_than_a_page_holds_are_malformed() {
        assert_eq!(PAGE_ITEMS_MAX, crate::protocol::PULL_ITEMS_MAX);
        let items: Vec<_> = (0..=PAGE_ITEMS_MAX).map(|_| (0, 1, vec![])).collect();
        let err = refused(hostile_page(1, &items));
        assert!(err.contains("too many items"), "{err}");
    }

    #[test]
    fn issue_13_version_vector_authors_must_come_in_order() {
        // The encoder writes a vector sorted by author; out of order, each insert shifted the whole
        // vector (quadratic in a peer-chosen length).
        let err = refused(hostile_page(2, &[(0, 1, vec![1, 0])]));
        assert!(err.contains("version vector"), "{err}");
    }

    /// A hint body: `authors` (given in that order) with `ranges` one-counter ranges each, a gap
    /// of one between them.
    fn hint_body(authors: &[u64], ranges: usize) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, authors.len() as u64);
        for a in authors {
            out.extend_from_slice(&a.to_le_bytes());
            put_varint(&mut out, ranges as u64);
            for _ in 0..ranges {
                out.extend_from_slice(&[1, 0]);
            }
        }
        out
    }

    #[test]
    fn issue_13_a_knowledge_holds_at_most_the_range_cap_over_all_authors() {
        // The cap was per author: 65 536 authors could each bring a million ranges.
        let half = KNOWLEDGE_RANGES_MAX / 2 + 1;
        let err = decode_knowledge(Bytes::from(hint_body(&[1, 2], half))).err();
        assert!(err.is_some_and(|e| e.to_string().contains("too many ranges")));
        let k = decode_knowledge(Bytes::from(hint_body(&[1, 2], half - 1))).unwrap();
        assert_eq!(k.ranges(), 2 * (half - 1));
    }

    #[test]
    fn issue_13_knowledge_authors_must_come_in_order() {
        // A repeated author's ranges were inserted into the middle of the first ones: quadratic.
        let err = decode_knowledge(Bytes::from(hint_body(&[7, 7], 10))).err();
        assert!(err.is_some_and(|e| e.to_string().contains("out of order")));
        assert!(decode_knowledge(Bytes::from(hint_body(&[2, 1], 10))).is_err());
        assert!(decode_knowledge(Bytes::from(hint_body(&[1, 2], 10))).is_ok());
    }

    #[test]
    fn requests_and_hints_round_trip() {
        let mut k = Knowledge::new();
        k.insert_range(1, 1, 10_000);
        k.insert_range(1, 10_002, 10_005);
        k.insert((u64::MAX, u64::MAX));
        let req = PullReq {
            knowledge: k.clone(),
            inline: true,
        };
        let bytes = encode_pull_req(&req);
        assert!(bytes.len() < 40, "{}", bytes.len());
        assert_eq!(decode_pull_req(Bytes::from(bytes)).unwrap(), req);
        assert_eq!(decode_knowledge(Bytes::from(encode_knowledge(&k))).unwrap(), k);
        assert!(decode_knowledge(Bytes::from_static(&[0xff; 12])).is_err());
    }
}
