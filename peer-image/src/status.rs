//! The status/metrics port: `GET /v1/status` (JSON, see `docs/PEER-CONTRACT.md`), `GET /metrics`
//! (Prometheus text format), `GET /v1/evidence` (the proofs of equivocation this peer accepted,
//! see [`crate::evidence`]) and `GET /v1/audit?limit=N` (the latest lines of the audit trail, see
//! [`crate::audit`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;

use crate::hlc::wall_ms;
use crate::mutex::lock;
use crate::node::Node;

#[derive(Serialize)]
pub struct NeighbourStatus {
    pub name: String,
    pub addr: String,
    pub reachable: bool,
    pub last_sync_ms: Option<u64>,
    pub quarantined: bool,
    /// It pruned us: we do not hint it (`broadcast: tree`), the digest rounds still run.
    pub pruned: bool,
}

#[derive(Serialize)]
pub struct Status {
    pub name: String,
    pub id: String,
    pub flavor: &'static str,
    /// The process's own `SystemTime::now()` (libfaketime's skew shows here).
    pub wall_clock_ms: u64,
    pub index_digest: String,
    /// Live (non-deleted) entries.
    pub entries: usize,
    pub tombstones: usize,
    pub neighbours: Vec<NeighbourStatus>,
    /// Versions waiting for their content.
    pub pending: usize,
    /// Proofs of equivocation kept (listed by `GET /v1/evidence`).
    pub equivocations: usize,
}

/// `GET /v1/evidence`.
#[derive(Serialize)]
pub struct EvidenceList {
    pub equivocations: Vec<crate::evidence::Record>,
}

pub fn status(node: &Node) -> Status {
    let (digest, entries, tombstones) = {
        let mut idx = node.index();
        (idx.digest(), idx.live(), idx.tombstones())
    };
    Status {
        name: node.settings.name.clone(),
        id: node.me.id().hex(),
        flavor: node.settings.flavor.as_str(),
        wall_clock_ms: wall_ms(),
        index_digest: digest,
        entries,
        tombstones,
        neighbours: node
            .peers
            .iter()
            .map(|p| {
                let last = p.last_sync_ms.load(Ordering::Relaxed);
                NeighbourStatus {
                    name: p.cfg.name.clone(),
                    addr: p.cfg.addr.clone(),
                    reachable: p.reachable.load(Ordering::Relaxed),
                    last_sync_ms: (last > 0).then_some(last),
                    quarantined: node.is_quarantined(&p.short),
                    pruned: p.pruned.load(Ordering::Relaxed),
                }
            })
            .collect(),
        pending: lock(&node.pending).len(),
        equivocations: node.evidence.len(),
    }
}

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route(
            "/v1/status",
            get(|State(n): State<Arc<Node>>| async move { Json(status(&n)) }),
        )
        .route("/metrics", get(metrics))
        .route(
            "/v1/evidence",
            get(|State(n): State<Arc<Node>>| async move {
                Json(EvidenceList {
                    equivocations: n.evidence.records(),
                })
            }),
        )
        .route("/v1/audit", get(audit))
        .with_state(node)
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

/// `GET /v1/audit`.
#[derive(Serialize)]
pub struct AuditList {
    pub lines: Vec<crate::audit::Line>,
}

async fn audit(State(node): State<Arc<Node>>, Query(q): Query<AuditQuery>) -> Json<AuditList> {
    let limit = q.limit.unwrap_or(200).min(crate::audit::RECENT_MAX);
    Json(AuditList {
        lines: node.audit.recent(limit),
    })
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    {
        let idx = node.index();
        node.metrics.index_entries.set(idx.live() as i64);
        node.metrics.index_tombstones.set(idx.tombstones() as i64);
    }
    node.metrics
        .quarantined_peers
        .set(lock(&node.reputation).count() as i64);
    let mut r = node.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}
