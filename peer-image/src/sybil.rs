//! The Byzantine `sybil` behaviour (see [`crate::byzantine`]): one container presenting many
//! identities, the seed's Sybil attack (§6.2). While the control file names `sybil`, the liar
//! * **knocks** ([`run`]): once a second, each of its [`SYBILS`] made-up identities (a fresh
//!   ed25519 key with its own certificate, built exactly as an honest peer builds its own) opens a
//!   mutual-TLS connection to every neighbour's sync port and asks for a pull page. What each
//!   attempt got is counted on the liar: `syncpeer_sybil_requests_total{outcome="refused"|"answered"}`.
//!   An honest neighbour pins its neighbours' keys from its config, so every attempt must be
//!   `refused` in the handshake: `answered` is the bug (an identity nobody trusted got in);
//! * **vouches** ([`versions`]): on every pull through its own, genuine link it offers one version
//!   signed by each made-up identity (`sybil/<short id>.txt`). An honest neighbour must refuse
//!   them as `untrusted` (the author is in no trust list; its audit trail names the liar as the
//!   sender), and never write them: content no honest write produced is poisoning.
//!
//! Idle, the task only polls the switch every [`REREAD`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::byzantine::{REREAD, SYBILS};
use crate::client::{PeerClient, Request};
use crate::entry::Entry;
use crate::hlc::{Hlc, wall_ms};
use crate::identity::Identity;
use crate::metrics::{Outcome, OutcomeLabel};
use crate::node::Node;
use crate::protocol::SummaryReq;
use crate::tls::Credentials;
use crate::version_vector::VersionVector;

/// Content every vouched-for version claims (never served: the receiver refuses the author first).
const VOUCHED: &[u8] = b"written by nobody anyone trusts\n";

/// The knocking task: while `sybil` is on, each made-up identity sends every neighbour one request
/// a second on a connection of its own.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    // Clients are made the first time `sybil` is on (a certificate per identity per neighbour).
    let mut knockers: Vec<(PeerClient, usize)> = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(REREAD) => {}
        }
        if !node.byzantine.current().sybil {
            continue;
        }
        if knockers.is_empty() {
            match clients(&node) {
                Ok(c) => knockers = c,
                Err(e) => {
                    tracing::error!("sybil: no TLS client: {e}");
                    return;
                }
            }
            tracing::warn!(
                identities = SYBILS,
                "sybil: knocking on every neighbour under made-up identities"
            );
        }
        let mut round = tokio::task::JoinSet::new();
        for (client, i) in &knockers {
            let (node, client, i) = (node.clone(), client.clone(), *i);
            round.spawn(async move {
                let outcome = knock(&client).await;
                if outcome == Outcome::answered {
                    tracing::warn!(peer = %node.peers[i].cfg.name, "sybil: a made-up identity was answered");
                }
                node.metrics
                    .sybil_requests
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc();
            });
        }
        while round.join_next().await.is_some() {}
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(REREAD)).await;
    }
}

/// One client per (made-up identity, neighbour), with no idle connection kept: each knock is a
/// new handshake, as a fresh identity's would be.
fn clients(node: &Node) -> anyhow::Result<Vec<(PeerClient, usize)>> {
    let mut out = Vec::new();
    for id in node.byzantine.sybils() {
        let creds = Credentials::new(id)?;
        for (i, p) in node.peers.iter().enumerate() {
            out.push((
                PeerClient::new(&p.cfg.addr, crate::tls::client_config(&creds, p.cfg.key)?, 0),
                i,
            ));
        }
    }
    Ok(out)
}

async fn knock(client: &PeerClient) -> Outcome {
    let req = Request::post("/v1/summary")
        .json(&SummaryReq { digest: String::new() })
        .timeout(Duration::from_secs(5));
    match client.execute(req).await {
        Ok(_) => Outcome::answered,
        Err(_) => Outcome::refused,
    }
}

/// The versions the liar vouches for on every pull: one per made-up identity, each signed by it.
pub fn versions(node: &Node) -> Vec<Entry> {
    node.byzantine.sybils().iter().map(vouched).collect()
}

fn vouched(id: &Identity) -> Entry {
    let short = id.id().short();
    let mut vv = VersionVector::new();
    vv.set(&short, 1);
    Entry::author(
        id,
        format!("sybil/{short}.txt"),
        vv,
        blake3::hash(VOUCHED).to_hex().to_string(),
        VOUCHED.len() as u64,
        false,
        Hlc { ms: wall_ms(), c: 0 },
    )
}
