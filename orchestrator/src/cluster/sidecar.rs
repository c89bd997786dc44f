//! The fault-agent sidecar: one container per peer, from the project's tools image (`iptables`, `tc`,
//! `netfault`), in the peer's network namespace (`network_mode: container:<peer>`, `NET_ADMIN`), the way
//! Pumba reaches a container. Network faults are exec'd here, so they need nothing from the daemon's
//! image, and the daemon itself runs without `NET_ADMIN`: it cannot undo its own partition.
//!
//! A sidecar keeps the namespace it joined. A restarted peer gets a new one, so its sidecar is
//! replaced ([`reattach`]) and the nemesis re-applies the peer's active faults there.

use crate::docker::{ContainerSpec, Engine};

use super::{Peer, run_labels};

/// The tools image `make image` builds (`peer-image/tools/`).
pub const TOOLS_IMAGE: &str = "syftchaos/tools:latest";
/// Where the tools image keeps libfaketime (copied out and mounted into peers for clock faults).
pub const TOOLS_LIBFAKETIME: &str = "/opt/syftchaos/lib/libfaketime.so.1";
/// Label marking a container as a peer's fault agent; its value is the peer's name.
pub const LABEL_AGENT_OF: &str = "io.syftchaos.agent-of";

/// The tools image to use: `SYFTCHAOS_TOOLS_IMAGE`, or [`TOOLS_IMAGE`].
pub fn tools_image() -> String {
    std::env::var("SYFTCHAOS_TOOLS_IMAGE").unwrap_or_else(|_| TOOLS_IMAGE.to_string())
}

/// The agent's container name for a peer container.
pub fn agent_name(peer_container: &str) -> String {
    format!("{peer_container}{AGENT_SUFFIX}")
}

/// What ends a fault agent's container name.
pub const AGENT_SUFFIX: &str = "-agent";

/// Creates and starts `peer`'s agent in the peer's current network namespace (the peer must run).
/// With `ptrace` (the profile's clock faults patch the daemon's vDSO, `clock: vdso`) the agent also
/// joins the peer's PID namespace, with `SYS_PTRACE`, for `netfault clock`.
pub async fn attach(engine: &Engine, run_id: &str, peer: &Peer, ptrace: bool) -> anyhow::Result<()> {
    let mut labels = run_labels(run_id);
    labels.insert(LABEL_AGENT_OF.to_string(), peer.name.clone());
    // NET_RAW: ping and raw sockets for the reachability measurements of network faults.
    let mut cap_add = vec!["NET_ADMIN".to_string(), "NET_RAW".to_string()];
    if ptrace {
        cap_add.push("SYS_PTRACE".into());
    }
    engine
        .create_container(&ContainerSpec {
            name: peer.agent.clone(),
            image: tools_image(),
            network: format!("container:{}", peer.container),
            ip: None,
            labels,
            cap_add,
            pid_mode: ptrace.then(|| format!("container:{}", peer.container)),
            ..Default::default()
        })
        .await?;
    engine.start(&peer.agent).await?;
    Ok(())
}

/// Replaces `peer`'s agent after the peer restarted (the old one holds the old namespace).
pub async fn reattach(engine: &Engine, run_id: &str, peer: &Peer, ptrace: bool) -> anyhow::Result<()> {
    engine.remove_container(&peer.agent).await?;
    attach(engine, run_id, peer, ptrace).await
}
