//! A test-only fake peer speaking the peer protocol from a hand-fed list of entries and blobs:
//! it can replay old versions, deliver them out of order, lie about content or forge signatures.
//! It answers every pull with its whole list, whatever the puller says it knows (a replayer).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use syncpeer::codec::{Item, PullResp, encode_pull_resp};
use syncpeer::entry::Entry;
use syncpeer::identity::Identity;
use syncpeer::listener::TlsListener;
use syncpeer::protocol::{BlobsReq, IndexQuery, IndexResp, SummaryResp, frame_blob};

use crate::util::{Cluster, Peer, free_port, fresh_ip};

#[derive(Default)]
pub struct FakeState {
    pub entries: Vec<Entry>,
    pub blobs: HashMap<String, Vec<u8>>,
    pub blob_requests: usize,
    /// Large blobs are cut off after this many bytes (a broken connection).
    pub cut_after: Option<usize>,
    /// Send content inline in pull responses (else only through the blob endpoints).
    pub inline: bool,
    /// Answer pulls with this many bytes of garbage instead (a flood of data).
    pub oversized: Option<usize>,
    /// Say "more pages follow" on every pull page (a liar keeping the puller busy).
    pub always_more: bool,
    pub pull_requests: usize,
    /// Answer pulls with nothing: the entries are only listed by `/v1/index`.
    pub listing_only: bool,
    pub index_requests: usize,
}

/// An `AsyncRead` that fails: the end of a cut connection.
struct Broken;

impl tokio::io::AsyncRead for Broken {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut")))
    }
}

pub struct FakePeer {
    pub name: String,
    pub addr: String,
    pub id: Identity,
    pub state: Arc<Mutex<FakeState>>,
    _rt: tokio::runtime::Runtime,
}

type S = State<Arc<Mutex<FakeState>>>;

async fn summary(State(s): S) -> Json<SummaryResp> {
    let n = s.lock().unwrap().entries.len() as u64;
    Json(SummaryResp {
        digest: format!("fake-{n}"),
    })
}

async fn index(State(s): S, Query(q): Query<IndexQuery>) -> Json<IndexResp> {
    let mut st = s.lock().unwrap();
    st.index_requests += 1;
    let entries = st.entries.iter().filter(|e| e.path > q.after).cloned().collect();
    Json(IndexResp { entries, next: None })
}

/// Every entry ever delivered, in delivery order: a replayed entry for a path shows up again like
/// a late message would.
async fn pull(State(s): S) -> Vec<u8> {
    let mut st = s.lock().unwrap();
    st.pull_requests += 1;
    if let Some(n) = st.oversized {
        return vec![0x5a; n];
    }
    let items = st
        .entries
        .iter()
        .filter(|_| !st.listing_only)
        .map(|e| Item {
            entry: e.clone(),
            content: st
                .blobs
                .get(&e.hash)
                .filter(|_| st.inline && !e.deleted)
                .map(|b| b.clone().into()),
        })
        .collect();
    encode_pull_resp(&PullResp {
        items,
        more: st.always_more,
        ..PullResp::default()
    })
}

async fn blob(State(s): S, Path(hash): Path<String>) -> Response {
    let mut st = s.lock().unwrap();
    st.blob_requests += 1;
    match (st.blobs.get(&hash), st.cut_after) {
        (Some(b), Some(cut)) => {
            let head = std::io::Cursor::new(b[..cut.min(b.len())].to_vec());
            let reader = tokio::io::AsyncReadExt::chain(head, Broken);
            axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(reader)).into_response()
        }
        (Some(b), None) => b.clone().into_response(),
        (None, _) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn blobs(State(s): S, body: Bytes) -> Vec<u8> {
    let req: BlobsReq = serde_json::from_slice(&body).unwrap();
    let mut st = s.lock().unwrap();
    st.blob_requests += 1;
    let mut out = Vec::new();
    for h in &req.hashes {
        frame_blob(&mut out, st.blobs.get(h).map(|b| b.as_slice()));
    }
    out
}

impl FakePeer {
    /// A fake neighbour of every peer of `c`: it serves mutual TLS like a real peer and accepts
    /// their certificates.
    pub fn start(name: &str, c: &Cluster) -> FakePeer {
        Self::start_as(name, Identity::generate(), c)
    }

    /// [`FakePeer::start`] with a chosen identity.
    pub fn start_as(name: &str, id: Identity, c: &Cluster) -> FakePeer {
        let ip = fresh_ip();
        let port = free_port(&ip);
        let addr = format!("{ip}:{port}");
        let state = Arc::new(Mutex::new(FakeState::default()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let app = Router::new()
            .route("/v1/summary", post(summary))
            .route("/v1/index", get(index))
            .route("/v1/pull", post(pull))
            .route("/v1/hint", post(|| async { StatusCode::NO_CONTENT }))
            .route("/v1/blob/{hash}", get(blob))
            .route("/v1/blobs", post(blobs))
            .with_state(state.clone());
        let clients = c.peers.iter().map(|p| p.id.id()).collect();
        let tls = syncpeer::tls::server_config(&syncpeer::tls::Credentials::new(&id).unwrap(), clients).unwrap();
        let listener = rt.block_on(async {
            let tcp = tokio::net::TcpListener::bind(&addr).await.unwrap();
            TlsListener::new(tcp, tls, id.id()).unwrap()
        });
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakePeer {
            name: name.into(),
            addr,
            id,
            state,
            _rt: rt,
        }
    }

    /// YAML for a `peers:` item naming this fake.
    pub fn peer_yaml(&self) -> String {
        format!(
            "  - name: {}\n    addr: {}\n    public_key: {}\n",
            self.name,
            self.addr,
            self.id.id().hex()
        )
    }

    pub fn push(&self, e: Entry, content: Option<Vec<u8>>) {
        let mut st = self.state.lock().unwrap();
        if let Some(c) = content {
            st.blobs.insert(e.hash.clone(), c);
        }
        st.entries.push(e);
    }
}

/// Fetches a real peer's current index entries from its sync port, as its neighbour `me`.
pub fn entries_of(peer: &Peer, me: &Identity) -> Vec<Entry> {
    let (code, body) = peer.sync_get(me, "/v1/index?limit=250").unwrap();
    assert_eq!(code, 200);
    serde_json::from_slice::<IndexResp>(&body).unwrap().entries
}
