//! Templates in profiles (per-peer files, the command, environment, HTTP paths, headers and bodies) are
//! minijinja (Jinja2 syntax) rendered with the cluster's [`Facts`]. Undefined names are errors, so a typo
//! in a profile fails `chaos validate`, not a run.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// What a template may use about one peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerFacts {
    pub name: String,
    /// 0-based position in the plan's peer list.
    pub index: usize,
    pub ip: String,
    /// The peer's identity (a public key, a device id), once known; empty before.
    pub id: String,
}

/// The plan's settings a profile may pass on to its daemon.
#[derive(Clone, Debug, Serialize)]
pub struct PlanFacts {
    pub name: String,
    pub seed: u64,
    pub flavor: String,
    pub anti_entropy_ms: u64,
    /// `none` in templates when the plan does not set it (test with `is none`).
    pub quarantine_ms: Option<u64>,
}

/// Everything a template is rendered with, for one peer.
#[derive(Clone, Debug, Serialize)]
pub struct Facts {
    pub peer: PeerFacts,
    /// This peer's secrets, never shared with other peers' templates: `secret` (32 random bytes in
    /// hex, usable as an API key) and `key_hex` (the host-made ed25519 secret seed, with
    /// `identity.from: host-ed25519`).
    pub secret: String,
    pub key_hex: String,
    pub peers: Vec<PeerFacts>,
    pub neighbours: Vec<PeerFacts>,
    pub ports: BTreeMap<String, u16>,
    pub plan: PlanFacts,
    pub run_id: String,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env
}

/// Renders `source` with `facts`; the error names the template's line.
pub fn render(source: &str, facts: &Facts) -> Result<String, String> {
    let env = environment();
    env.render_str(source, facts).map_err(|e| describe(&e))
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = e
        .detail()
        .map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
    if let Some(line) = e.line() {
        s = format!("template line {line}: {s}");
    }
    s
}

impl Facts {
    /// Facts for checking templates before a run: three peers in a full mesh, identities known.
    pub fn sample(ports: &BTreeMap<String, u16>) -> Facts {
        let peers: Vec<PeerFacts> = (0..3)
            .map(|i| PeerFacts {
                name: format!("p{}", i + 1),
                index: i,
                ip: format!("10.213.0.{}", i + 2),
                id: format!("ID-OF-P{}", i + 1),
            })
            .collect();
        Facts {
            peer: peers[0].clone(),
            secret: "00".repeat(32),
            key_hex: "00".repeat(32),
            neighbours: peers[1..].to_vec(),
            peers,
            ports: ports.clone(),
            plan: PlanFacts {
                name: "sample".into(),
                seed: 1,
                flavor: "default".into(),
                anti_entropy_ms: 1000,
                quarantine_ms: None,
            },
            run_id: "00000000".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_see_the_cluster_and_reject_unknown_names() {
        let f = Facts::sample(&BTreeMap::from([("sync".to_string(), 7000)]));
        let out = render(
            "{% for n in neighbours %}{{ n.name }}@{{ n.ip }}:{{ ports.sync }} {% endfor %}{{ peer.name }}",
            &f,
        )
        .unwrap();
        assert_eq!(out, "p2@10.213.0.3:7000 p3@10.213.0.4:7000 p1");
        assert_eq!(
            render("{{ neighbours | map(attribute='id') | list | tojson }}", &f).unwrap(),
            r#"["ID-OF-P2","ID-OF-P3"]"#
        );
        let e = render("a\n{{ peer.nmae }}", &f).unwrap_err();
        assert!(e.contains("line 2") && e.contains("undefined"), "{e}");
        assert!(
            render("{% if %}", &f).unwrap_err().contains("syntax"),
            "syntax errors are named"
        );
        assert_eq!(render("{{ plan.quarantine_ms is none }}", &f).unwrap(), "True");
    }
}
