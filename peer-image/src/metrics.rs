//! [`Metrics`]: the Prometheus metrics of `docs/PEER-CONTRACT.md`, all prefixed `syncpeer_`, kept
//! in a `prometheus-client` registry and rendered in the text format by `GET /metrics`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Protocol message kinds.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Kind {
    /// The periodic digest exchange.
    summary,
    /// Index deltas.
    index,
    /// File content.
    blob,
    /// "I changed, pull from me" push hints.
    hint,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerKind {
    pub peer: String,
    pub kind: Kind,
}

/// Why received data was refused.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Reason {
    bad_hash,
    bad_signature,
    untrusted,
    rate_limited,
    quarantined,
    /// A request whose sender header names another peer than its TLS identity.
    sender_mismatch,
    /// A validly signed version dated further ahead of our clock than any clock can be wrong
    /// ([`crate::hlc::MAX_FUTURE_MS`]): a timestamp lie.
    bad_timestamp,
    /// A validly signed version whose version vector claims a counter no author can reach
    /// ([`crate::entry::COUNTER_MAX`]): a counter lie.
    bad_counter,
}

/// What a Sybil identity's request got (Byzantine `sybil`, see [`crate::sybil`]).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// The TLS handshake or the request failed: the neighbour gave it nothing.
    refused,
    /// An HTTP answer came back: the neighbour let an identity it never trusted in.
    answered,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: Reason,
}

pub struct Metrics {
    pub registry: Registry,
    pub messages_sent: Family<PeerKind, Counter>,
    pub messages_received: Family<PeerKind, Counter>,
    pub bytes_sent: Family<PeerKind, Counter>,
    pub bytes_received: Family<PeerKind, Counter>,
    pub local_changes: Counter,
    pub versions_applied: Counter,
    pub versions_redundant: Counter,
    pub echoes_suppressed: Counter,
    pub tree_prunes: Counter,
    pub tree_grafts: Counter,
    pub conflicts: Counter,
    pub rejections: Family<ReasonLabel, Counter>,
    pub quarantined_peers: Gauge,
    pub stale_locks_removed: Counter,
    pub corruptions_detected: Counter,
    pub corruptions_repaired: Counter,
    pub equivocations_detected: Counter,
    /// Only a `sybil` liar counts here: what its made-up identities got from the neighbours.
    pub sybil_requests: Family<OutcomeLabel, Counter>,
    pub index_entries: Gauge,
    pub index_tombstones: Gauge,
    pub apply_latency: Histogram,
}

impl Metrics {
    /// Registers everything; `neighbours` get zero-valued series up front so that a checker sees
    /// every label combination from the first scrape.
    pub fn new(neighbours: &[String]) -> Metrics {
        let mut registry = Registry::with_prefix("syncpeer");
        let m = Metrics {
            messages_sent: Family::default(),
            messages_received: Family::default(),
            bytes_sent: Family::default(),
            bytes_received: Family::default(),
            local_changes: Counter::default(),
            versions_applied: Counter::default(),
            versions_redundant: Counter::default(),
            echoes_suppressed: Counter::default(),
            tree_prunes: Counter::default(),
            tree_grafts: Counter::default(),
            conflicts: Counter::default(),
            rejections: Family::default(),
            quarantined_peers: Gauge::default(),
            stale_locks_removed: Counter::default(),
            corruptions_detected: Counter::default(),
            corruptions_repaired: Counter::default(),
            equivocations_detected: Counter::default(),
            sybil_requests: Family::default(),
            index_entries: Gauge::default(),
            index_tombstones: Gauge::default(),
            apply_latency: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            registry: Registry::default(),
        };
        registry.register("messages_sent", "Protocol messages sent", m.messages_sent.clone());
        registry.register(
            "messages_received",
            "Protocol messages received",
            m.messages_received.clone(),
        );
        registry.register(
            "bytes_sent",
            "Bytes on the wire sent (HTTP start line, headers, body)",
            m.bytes_sent.clone(),
        );
        registry.register("bytes_received", "Bytes on the wire received", m.bytes_received.clone());
        registry.register(
            "local_changes",
            "New versions authored from local file changes",
            m.local_changes.clone(),
        );
        registry.register(
            "versions_applied",
            "Remote versions applied",
            m.versions_applied.clone(),
        );
        registry.register(
            "versions_redundant",
            "Versions received that were already held or queued (each one crossed a link for nothing)",
            m.versions_redundant.clone(),
        );
        registry.register(
            "echoes_suppressed",
            "File events whose content already matched the index",
            m.echoes_suppressed.clone(),
        );
        registry.register(
            "tree_prunes",
            "Neighbours that asked us to stop hinting them (they had heard of our versions first elsewhere)",
            m.tree_prunes.clone(),
        );
        registry.register(
            "tree_grafts",
            "Pruned neighbours hinted again because they pulled from us a version they lacked",
            m.tree_grafts.clone(),
        );
        registry.register(
            "conflicts",
            "Concurrent versions resolved into a conflict copy",
            m.conflicts.clone(),
        );
        registry.register("rejections", "Received data refused, by reason", m.rejections.clone());
        registry.register(
            "quarantined_peers",
            "Peers currently quarantined",
            m.quarantined_peers.clone(),
        );
        registry.register(
            "equivocations_detected",
            "Forks proven (two statements signed under one author counter), seen here or told by a neighbour and checked",
            m.equivocations_detected.clone(),
        );
        registry.register(
            "sybil_requests",
            "Requests a Byzantine `sybil` liar sent under identities it made up, by what they got",
            m.sybil_requests.clone(),
        );
        registry.register(
            "stale_locks_removed",
            "Stale lock files removed",
            m.stale_locks_removed.clone(),
        );
        registry.register(
            "corruptions_detected",
            "Damaged files found (content changed, mtime kept): not authored as versions",
            m.corruptions_detected.clone(),
        );
        registry.register(
            "corruptions_repaired",
            "Damaged files put back from a good copy",
            m.corruptions_repaired.clone(),
        );
        registry.register(
            "index_entries",
            "Live (non-deleted) index entries",
            m.index_entries.clone(),
        );
        registry.register(
            "index_tombstones",
            "Tombstones in the index",
            m.index_tombstones.clone(),
        );
        registry.register(
            "apply_latency_seconds",
            "Remote version received -> file in place",
            m.apply_latency.clone(),
        );
        for peer in neighbours {
            for kind in [Kind::summary, Kind::index, Kind::blob, Kind::hint] {
                let l = PeerKind {
                    peer: peer.clone(),
                    kind,
                };
                let _ = m.messages_sent.get_or_create(&l);
                let _ = m.messages_received.get_or_create(&l);
                let _ = m.bytes_sent.get_or_create(&l);
                let _ = m.bytes_received.get_or_create(&l);
            }
        }
        for reason in [
            Reason::bad_hash,
            Reason::bad_signature,
            Reason::untrusted,
            Reason::rate_limited,
            Reason::quarantined,
            Reason::sender_mismatch,
            Reason::bad_timestamp,
            Reason::bad_counter,
        ] {
            let _ = m.rejections.get_or_create(&ReasonLabel { reason });
        }
        Metrics { registry, ..m }
    }

    pub fn sent(&self, peer: &str, kind: Kind, bytes: u64) {
        let l = PeerKind {
            peer: peer.to_string(),
            kind,
        };
        self.messages_sent.get_or_create(&l).inc();
        self.bytes_sent.get_or_create(&l).inc_by(bytes);
    }

    pub fn received(&self, peer: &str, kind: Kind, bytes: u64) {
        let l = PeerKind {
            peer: peer.to_string(),
            kind,
        };
        self.messages_received.get_or_create(&l).inc();
        self.bytes_received.get_or_create(&l).inc_by(bytes);
    }

    /// Adds bytes to a message already counted (streamed bodies are counted as they flow).
    pub fn received_bytes(&self, peer: &str, kind: Kind, bytes: u64) {
        self.bytes_received
            .get_or_create(&PeerKind {
                peer: peer.to_string(),
                kind,
            })
            .inc_by(bytes);
    }

    pub fn sent_bytes(&self, peer: &str, kind: Kind, bytes: u64) {
        self.bytes_sent
            .get_or_create(&PeerKind {
                peer: peer.to_string(),
                kind,
            })
            .inc_by(bytes);
    }

    pub fn reject(&self, reason: Reason) {
        self.rejections.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry).expect("writing to a String");
        s
    }
}

/// Approximate HTTP/1.1 header bytes: start line + `name: value\r\n` per header + blank line.
pub fn header_bytes(headers: &axum::http::HeaderMap) -> u64 {
    let h: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    (h + 32 + 2) as u64
}
