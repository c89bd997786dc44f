//! Wire types of the peer protocol (HTTP/1.1 over mutual TLS on the sync port, see [`crate::tls`]),
//! and the framing of batched blobs. A request's sender is its connection's certificate key.
//!
//! | request | kind | purpose |
//! |---|---|---|
//! | `POST /v1/summary` [`SummaryReq`] -> [`SummaryResp`] | summary | periodic digest exchange |
//! | `POST /v1/pull` (binary, [`crate::codec`]) | index + blob | the versions the puller's knowledge lacks, small content inline |
//! | `POST /v1/hint` (binary knowledge) | hint | "my index changed; this is what I know" |
//! | `GET /v1/index?after&limit` -> [`IndexResp`] | index | every entry in path order (full resync, debugging) |
//! | `GET /v1/blob/{hash}` (+ `Range`) | blob | one file's content, resumable |
//! | `POST /v1/blobs` [`BlobsReq`] | blob | many small files in one response |

use serde::{Deserialize, Serialize};

use crate::entry::Entry;

/// The sender header of the plain-HTTP protocol: no longer sent (the sender is the TLS identity);
/// a request that carries one naming another peer is refused (`server::admit`).
pub const FROM_HEADER: &str = "x-syncpeer-from";

/// Set on a hint's answer by a receiver that already had what the hint named (it heard of it
/// from another neighbour first, or keeps doing so): the hinter stops hinting it (`broadcast:
/// tree`, see `sync`). Unknown to the hinter, the header is ignored.
pub const PRUNE_HEADER: &str = "x-syncpeer-prune";

/// Files at most this large travel in batches (and inline in pulls); larger ones stream through
/// `GET /v1/blob`.
pub const BATCH_FILE_MAX: u64 = 1 << 20;
/// Upper bound of one batched response body.
pub const BATCH_BYTES_MAX: u64 = 2 << 20;
/// What the fetcher asks one neighbour for at once (smaller than the bound: less memory at both
/// ends, measured about 1 MiB of peak RSS with 10k files).
pub const FETCH_BATCH_BYTES: u64 = 512 << 10;
/// Hashes in one `/v1/blobs` request: a fetch pass asks for at most 1024 versions in all; each
/// hash costs the server an index lookup and a file open.
pub const BLOBS_HASHES_MAX: usize = 4096;
/// Entries per `/v1/index` page (~100 KB of JSON: small pages keep connection buffers small).
pub const INDEX_PAGE: usize = 250;
/// Versions per pull page (~90 KB of metadata without content).
pub const PULL_ITEMS_MAX: usize = 1000;
/// Inline content per pull page: small pages keep each pull short (pulls from different
/// neighbours take turns, see [`crate::sync`]) and memory low; ~2 bytes of request and headers
/// per 1 KiB file.
pub const PULL_INLINE_MAX: u64 = 256 << 10;

#[derive(Debug, Serialize, Deserialize)]
pub struct SummaryReq {
    pub digest: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SummaryResp {
    pub digest: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct IndexQuery {
    /// List paths after this one (exclusive); empty for the start.
    #[serde(default)]
    pub after: String,
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct IndexResp {
    pub entries: Vec<Entry>,
    /// Where the next page starts (`after`), if there is one.
    pub next: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BlobsReq {
    pub hashes: Vec<String>,
}

/// Appends one batched blob: `1u8, len u64 BE, bytes`, or `0u8` when missing.
pub fn frame_blob(out: &mut Vec<u8>, content: Option<&[u8]>) {
    match content {
        Some(b) => {
            out.push(1);
            out.extend_from_slice(&(b.len() as u64).to_be_bytes());
            out.extend_from_slice(b);
        }
        None => out.push(0),
    }
}

/// Splits a batched body into one optional blob per requested hash (None if malformed).
pub fn unframe_blobs(mut body: &[u8], n: usize) -> Option<Vec<Option<&[u8]>>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (&tag, rest) = body.split_first()?;
        body = rest;
        if tag == 0 {
            out.push(None);
            continue;
        }
        if body.len() < 8 {
            return None;
        }
        let len = u64::from_be_bytes(body[..8].try_into().ok()?) as usize;
        body = &body[8..];
        if body.len() < len {
            return None;
        }
        out.push(Some(&body[..len]));
        body = &body[len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_framing_round_trip() {
        let mut b = Vec::new();
        frame_blob(&mut b, Some(b"abc"));
        frame_blob(&mut b, None);
        frame_blob(&mut b, Some(b""));
        let parts = unframe_blobs(&b, 3).unwrap();
        assert_eq!(parts, vec![Some(&b"abc"[..]), None, Some(&b""[..])]);
        assert!(unframe_blobs(&b[..5], 3).is_none());
    }
}
