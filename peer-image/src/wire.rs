//! Client side of the peer protocol: requests to a neighbour (over its pinned TLS client,
//! [`crate::client`]) with per-neighbour, per-kind message and byte accounting
//! (`docs/PEER-CONTRACT.md`). No sender header is sent: the server knows us by our certificate.

use std::time::Duration;

use crate::client::{ClientError, Request, Response};
use crate::metrics::{Kind, header_bytes};
use crate::node::{Node, PeerState};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("request to {peer} failed: {source}")]
    Http { peer: String, source: ClientError },
    #[error("{peer} answered {status}")]
    Status { peer: String, status: u16 },
    #[error("{peer} sent a malformed {what}")]
    Malformed { peer: String, what: &'static str },
}

/// Timeout for small requests (summary, index, hint, batched blobs).
pub const SMALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a request built by `build` and counts it; the response's headers are counted as received
/// and the caller counts its body with [`Node::metrics`]`.received_bytes` as it reads it.
pub async fn send(node: &Node, peer: &PeerState, kind: Kind, req: Request) -> Result<Response, WireError> {
    let name = &peer.cfg.name;
    let http = |source| WireError::Http {
        peer: name.clone(),
        source,
    };
    node.metrics.sent(
        name,
        kind,
        header_bytes(req.headers()) + (req.path().len() + req.body_len()) as u64,
    );
    let resp = peer.client.execute(req).await.map_err(http)?;
    node.metrics.received(name, kind, header_bytes(resp.headers()));
    if !resp.status().is_success() {
        return Err(WireError::Status {
            peer: name.clone(),
            status: resp.status().as_u16(),
        });
    }
    Ok(resp)
}

/// Largest body [`read_body`] accepts: a page or batch is a few MiB at most, and a neighbour that
/// sends more (a Byzantine flood) must not make us buffer it.
pub const BODY_MAX: usize = 16 << 20;

/// Reads a whole (small) body, at most [`BODY_MAX`], without counting it.
pub async fn read_body(peer: &PeerState, mut resp: Response) -> Result<bytes::Bytes, WireError> {
    let oversized = || WireError::Malformed {
        peer: peer.cfg.name.clone(),
        what: "oversized body",
    };
    if resp.content_length().is_some_and(|n| n > BODY_MAX as u64) {
        return Err(oversized());
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| WireError::Http {
        peer: peer.cfg.name.clone(),
        source,
    })? {
        if buf.len() + chunk.len() > BODY_MAX {
            return Err(oversized());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads a whole (small) body, counting it.
pub async fn body(node: &Node, peer: &PeerState, kind: Kind, resp: Response) -> Result<bytes::Bytes, WireError> {
    let b = read_body(peer, resp).await?;
    node.metrics.received_bytes(&peer.cfg.name, kind, b.len() as u64);
    Ok(b)
}

/// Reads and parses a JSON body, counting it.
pub async fn json<T: serde::de::DeserializeOwned>(
    node: &Node,
    peer: &PeerState,
    kind: Kind,
    resp: Response,
) -> Result<T, WireError> {
    let b = body(node, peer, kind, resp).await?;
    serde_json::from_slice(&b).map_err(|_| WireError::Malformed {
        peer: peer.cfg.name.clone(),
        what: "JSON body",
    })
}
