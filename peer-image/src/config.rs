//! [`Settings`]: the resolved configuration, built in two stages (ripgrep's habit): [`Cli`] flags
//! and `SYNCPEER_*` environment variables as parsed by clap, layered over the YAML file
//! (`docs/PEER-CONTRACT.md`), then validated once into `Settings`.
//!
//! Defaults: `anti_entropy_interval_ms` 1000, `rescan_interval_ms` 10000, `scrub_interval_ms` 60000,
//! `lock_ttl_ms` 60000,
//! `quarantine_ms` 30000, `strike_limit` 3 within `strike_window_ms` 60000, `rate_limit_per_sec`
//! 500 with `rate_limit_burst` 1000, `flavor` `default`, `broadcast` `tree`, `byzantine_file`
//! `<state_dir>/byzantine`, `audit_max_bytes` 4194304.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::identity::PeerId;
use crate::mutant::Mutant;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Yaml(String),
    #[error("cannot read config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config: {0}")]
    Invalid(String),
}

/// `syncpeer`: the reference peer-to-peer file-sync daemon of syftchaos.
///
/// Without a subcommand it runs the daemon. Every setting comes from the YAML config file and can
/// be overridden by a flag or a `SYNCPEER_<FIELD>` environment variable. Exit codes: 0 after a
/// clean shutdown (SIGTERM/SIGINT), 1 on a runtime failure, 2 on a bad config or usage.
#[derive(Debug, Parser)]
#[command(name = "syncpeer", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run,
    /// Make an ed25519 key file (64 hex chars of seed + newline) and print the public key.
    Keygen {
        /// Where to write the key (mode 0600). Refuses to overwrite an existing file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Daemon settings. Flags and environment variables override the config file.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// YAML config file (see docs/PEER-CONTRACT.md).
    #[arg(long, env = "SYNCPEER_CONFIG", default_value = "/data/config.yaml", global = true)]
    pub config: PathBuf,
    /// Node name, unique in the cluster.
    #[arg(long, env = "SYNCPEER_NAME")]
    pub name: Option<String>,
    /// Peer protocol listen address (host:port).
    #[arg(long, env = "SYNCPEER_LISTEN")]
    pub listen: Option<String>,
    /// Status and metrics listen address (host:port): GET /v1/status, GET /metrics.
    #[arg(long, env = "SYNCPEER_HTTP")]
    pub http: Option<String>,
    /// The user's folder that is kept in sync.
    #[arg(long, env = "SYNCPEER_SYNC_DIR")]
    pub sync_dir: Option<PathBuf>,
    /// The daemon's own state: index, locks, temp files.
    #[arg(long, env = "SYNCPEER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// ed25519 identity key file.
    #[arg(long, env = "SYNCPEER_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Period of the anti-entropy digest exchange with each neighbour [default: 1000].
    #[arg(long, env = "SYNCPEER_ANTI_ENTROPY_INTERVAL_MS")]
    pub anti_entropy_interval_ms: Option<u64>,
    /// Behaviour flavour: `default`, or `legacy` (the seed's original design, for checker tests).
    #[arg(long, env = "SYNCPEER_FLAVOR")]
    pub flavor: Option<String>,
    /// How hints spread: `tree` (a neighbour that keeps hearing of versions it already has asks
    /// to be told by the digest rounds only, as Plumtree prunes) or `flood` (every neighbour is
    /// hinted after every change) [default: tree].
    #[arg(long, env = "SYNCPEER_BROADCAST", value_enum)]
    pub broadcast: Option<Broadcast>,
    /// Neighbours as YAML flow text: `[{name: p2, addr: "h:7000", public_key: <hex>}]`.
    #[arg(long, env = "SYNCPEER_PEERS")]
    pub peers: Option<String>,
    /// Extra trusted authors as YAML flow text: `[{name: p3, public_key: <hex>}]`.
    #[arg(long, env = "SYNCPEER_TRUSTED")]
    pub trusted: Option<String>,
    /// Period of the full rescan that backs up filesystem events [default: 10000].
    #[arg(long, env = "SYNCPEER_RESCAN_INTERVAL_MS")]
    pub rescan_interval_ms: Option<u64>,
    /// Period of the scrub that re-hashes every file to find disk damage [default: 60000].
    #[arg(long, env = "SYNCPEER_SCRUB_INTERVAL_MS")]
    pub scrub_interval_ms: Option<u64>,
    /// A lock older than this is stale even if its process lives [default: 60000].
    #[arg(long, env = "SYNCPEER_LOCK_TTL_MS")]
    pub lock_ttl_ms: Option<u64>,
    /// How long a misbehaving peer is ignored [default: 30000].
    #[arg(long, env = "SYNCPEER_QUARANTINE_MS")]
    pub quarantine_ms: Option<u64>,
    /// Strikes (a bad hash, a bad signature, 10 more refusals over the rate limit) within the window
    /// that quarantine a peer [default: 3].
    #[arg(long, env = "SYNCPEER_STRIKE_LIMIT")]
    pub strike_limit: Option<u32>,
    /// Window for counting strikes [default: 60000].
    #[arg(long, env = "SYNCPEER_STRIKE_WINDOW_MS")]
    pub strike_window_ms: Option<u64>,
    /// Sustained incoming requests per second allowed from one peer [default: 500].
    #[arg(long, env = "SYNCPEER_RATE_LIMIT_PER_SEC")]
    pub rate_limit_per_sec: Option<f64>,
    /// Burst of incoming requests allowed from one peer [default: 1000].
    #[arg(long, env = "SYNCPEER_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<f64>,
    /// Byzantine mode's control file, re-read every 200 ms: behaviour names (tamper, forge,
    /// withhold, flood, slowloris, equivocate, replay, sybil, lie-timestamp, lie-counter, drop) turn
    /// this peer into a liar for chaos tests; missing or empty means honest
    /// [default: <state_dir>/byzantine].
    #[arg(long, env = "SYNCPEER_BYZANTINE_FILE")]
    pub byzantine_file: Option<PathBuf>,
    /// Size at which the audit trail (`<state_dir>/audit.jsonl`) is rotated; at most about twice
    /// this is kept [default: 4194304].
    #[arg(long, env = "SYNCPEER_AUDIT_MAX_BYTES")]
    pub audit_max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    listen: Option<String>,
    http: Option<String>,
    sync_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    anti_entropy_interval_ms: Option<u64>,
    flavor: Option<String>,
    broadcast: Option<Broadcast>,
    /// `Option` so that an empty `peers:` (YAML null) means none.
    peers: Option<Vec<PeerConf>>,
    trusted: Option<Vec<TrustedConf>>,
    rescan_interval_ms: Option<u64>,
    scrub_interval_ms: Option<u64>,
    lock_ttl_ms: Option<u64>,
    quarantine_ms: Option<u64>,
    strike_limit: Option<u32>,
    strike_window_ms: Option<u64>,
    rate_limit_per_sec: Option<f64>,
    rate_limit_burst: Option<f64>,
    byzantine_file: Option<PathBuf>,
    audit_max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct PeerConf {
    name: String,
    addr: String,
    public_key: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct TrustedConf {
    name: String,
    public_key: String,
}

/// Which behaviour to run: the design built to pass the seed, or the seed's original design
/// (see [`crate::legacy`]), kept to prove that the chaos checkers catch its bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Default,
    Legacy,
    /// Leaks memory per version (see [`crate::leak`]): proves the lab's leak verdict.
    Leak,
    /// One deliberate bug (see [`crate::mutant`]): proves one of the lab's checks.
    Mutant(Mutant),
}

impl Flavor {
    pub fn as_str(&self) -> &'static str {
        match self {
            Flavor::Default => "default",
            Flavor::Legacy => "legacy",
            Flavor::Leak => "leak",
            Flavor::Mutant(m) => m.name(),
        }
    }
}

/// How a node tells its neighbours about a change (see [`crate::sync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Broadcast {
    /// Hints go to neighbours that have not pruned us; the others learn from the digest rounds.
    Tree,
    /// Every neighbour is hinted after every change.
    Flood,
}

/// A neighbour: a peer this node exchanges digests, indexes and blobs with.
#[derive(Debug, Clone)]
pub struct Neighbour {
    pub name: String,
    /// `host:port` of its sync port.
    pub addr: String,
    pub key: PeerId,
}

/// An author whose signed versions are accepted.
#[derive(Debug, Clone)]
pub struct Trusted {
    pub name: String,
    pub key: PeerId,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub listen: SocketAddr,
    pub http: SocketAddr,
    pub sync_dir: PathBuf,
    pub state_dir: PathBuf,
    pub key_file: PathBuf,
    pub anti_entropy: Duration,
    pub flavor: Flavor,
    pub broadcast: Broadcast,
    pub peers: Vec<Neighbour>,
    pub trusted: Vec<Trusted>,
    pub rescan: Duration,
    pub scrub_interval: Duration,
    pub lock_ttl: Duration,
    pub quarantine: Duration,
    pub strike_limit: u32,
    pub strike_window: Duration,
    pub rate_limit_per_sec: f64,
    pub rate_limit_burst: f64,
    /// Byzantine mode's control file (see [`crate::byzantine`]).
    pub byzantine_file: PathBuf,
    /// Rotation size of the audit trail (see [`crate::audit`]).
    pub audit_max_bytes: u64,
}

/// `file:line:column: message` for a YAML error.
fn yaml_error(origin: &str, err: &serde_saphyr::Error) -> ConfigError {
    let msg = err.without_snippet().to_string();
    let mut msg = msg.lines().next().unwrap_or("invalid YAML").to_string();
    // The location goes in front, in the `file:line:column` form editors understand.
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    match err.location() {
        Some(loc) => ConfigError::Yaml(format!("{origin}:{}:{}: {msg}", loc.line(), loc.column())),
        None => ConfigError::Yaml(format!("{origin}: {msg}")),
    }
}

fn parse_addr(field: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::Invalid(format!("{field}: `{s}` is not an ip:port address")))
}

impl Settings {
    /// Reads the config file named by `args` and layers the flags/environment over it.
    pub fn load(args: &RunArgs) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(&args.config).map_err(|source| ConfigError::Read {
            path: args.config.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &args.config, args)
    }

    pub fn from_yaml(text: &str, origin: &Path, args: &RunArgs) -> Result<Settings, ConfigError> {
        let origin = origin.display().to_string();
        let file: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| yaml_error(&origin, &e))?
        };
        let need = |v: Option<String>, f: &str| {
            v.ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "`{f}` is required (in {origin} or SYNCPEER_{})",
                    f.to_uppercase()
                ))
            })
        };
        let need_path = |v: Option<PathBuf>, f: &str| {
            v.ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "`{f}` is required (in {origin} or SYNCPEER_{})",
                    f.to_uppercase()
                ))
            })
        };
        let name = need(args.name.clone().or(file.name), "name")?;
        if name.is_empty() {
            return Err(ConfigError::Invalid("`name` must not be empty".into()));
        }
        let listen = parse_addr("listen", &need(args.listen.clone().or(file.listen), "listen")?)?;
        let http = parse_addr("http", &need(args.http.clone().or(file.http), "http")?)?;
        let flavor = match args.flavor.clone().or(file.flavor).as_deref() {
            None | Some("default") => Flavor::Default,
            Some("legacy") => Flavor::Legacy,
            Some("leak") => Flavor::Leak,
            Some(other) => match Mutant::parse(other) {
                Some(m) => Flavor::Mutant(m),
                None => {
                    let mutants: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
                    return Err(ConfigError::Invalid(format!(
                        "flavor `{other}` is not supported (supported: default, legacy, leak, {})",
                        mutants.join(", ")
                    )));
                }
            },
        };
        let broadcast = args.broadcast.or(file.broadcast).unwrap_or(Broadcast::Tree);
        let peers_conf = match &args.peers {
            Some(t) => serde_saphyr::from_str::<Vec<PeerConf>>(t).map_err(|e| yaml_error("SYNCPEER_PEERS", &e))?,
            None => file.peers.unwrap_or_default(),
        };
        let trusted_conf = match &args.trusted {
            Some(t) => serde_saphyr::from_str::<Vec<TrustedConf>>(t).map_err(|e| yaml_error("SYNCPEER_TRUSTED", &e))?,
            None => file.trusted.unwrap_or_default(),
        };
        let mut peers = Vec::new();
        for p in peers_conf {
            let key =
                PeerId::parse(&p.public_key).map_err(|e| ConfigError::Invalid(format!("peer `{}`: {e}", p.name)))?;
            if p.addr
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .is_none()
            {
                return Err(ConfigError::Invalid(format!(
                    "peer `{}`: addr `{}` is not host:port",
                    p.name, p.addr
                )));
            }
            peers.push(Neighbour {
                name: p.name,
                addr: p.addr,
                key,
            });
        }
        let mut trusted = Vec::new();
        for t in trusted_conf {
            let key =
                PeerId::parse(&t.public_key).map_err(|e| ConfigError::Invalid(format!("trusted `{}`: {e}", t.name)))?;
            trusted.push(Trusted { name: t.name, key });
        }
        let ms = |v: Option<u64>, f: Option<u64>, d: u64| Duration::from_millis(v.or(f).unwrap_or(d));
        let state_dir = need_path(args.state_dir.clone().or(file.state_dir), "state_dir")?;
        let byzantine_file = args
            .byzantine_file
            .clone()
            .or(file.byzantine_file)
            .unwrap_or_else(|| state_dir.join("byzantine"));
        let settings = Settings {
            name,
            listen,
            http,
            sync_dir: need_path(args.sync_dir.clone().or(file.sync_dir), "sync_dir")?,
            state_dir,
            key_file: need_path(args.key_file.clone().or(file.key_file), "key_file")?,
            anti_entropy: ms(args.anti_entropy_interval_ms, file.anti_entropy_interval_ms, 1000),
            flavor,
            broadcast,
            peers,
            trusted,
            rescan: ms(args.rescan_interval_ms, file.rescan_interval_ms, 10_000),
            scrub_interval: ms(args.scrub_interval_ms, file.scrub_interval_ms, 60_000),
            lock_ttl: ms(args.lock_ttl_ms, file.lock_ttl_ms, 60_000),
            quarantine: ms(args.quarantine_ms, file.quarantine_ms, 30_000),
            strike_limit: args.strike_limit.or(file.strike_limit).unwrap_or(3).max(1),
            strike_window: ms(args.strike_window_ms, file.strike_window_ms, 60_000),
            rate_limit_per_sec: args.rate_limit_per_sec.or(file.rate_limit_per_sec).unwrap_or(500.0),
            rate_limit_burst: args.rate_limit_burst.or(file.rate_limit_burst).unwrap_or(1000.0),
            byzantine_file,
            audit_max_bytes: args
                .audit_max_bytes
                .or(file.audit_max_bytes)
                .unwrap_or(4 << 20)
                .max(1024),
        };
        if settings.anti_entropy.is_zero() || settings.rescan.is_zero() || settings.scrub_interval.is_zero() {
            return Err(ConfigError::Invalid("intervals must be greater than 0".into()));
        }
        if settings.rate_limit_per_sec <= 0.0 || settings.rate_limit_burst < 1.0 {
            return Err(ConfigError::Invalid("rate limits must be positive".into()));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn yaml(extra: &str) -> String {
        format!(
            "name: p1\nlisten: 127.0.0.1:7000\nhttp: 127.0.0.1:9100\nsync_dir: /s\nstate_dir: /t\nkey_file: /k\n{extra}"
        )
    }

    #[test]
    fn minimal_config_with_defaults() {
        let s = Settings::from_yaml(&yaml("peers:\ntrusted:\n"), Path::new("c.yaml"), &RunArgs::default()).unwrap();
        assert_eq!(s.anti_entropy, Duration::from_millis(1000));
        assert_eq!(s.flavor, Flavor::Default);
        assert_eq!(s.broadcast, Broadcast::Tree);
        assert_eq!(s.byzantine_file, Path::new("/t/byzantine"));
    }

    #[test]
    fn env_overrides_file() {
        let args = RunArgs {
            name: Some("p9".into()),
            anti_entropy_interval_ms: Some(50),
            ..Default::default()
        };
        let s = Settings::from_yaml(
            &yaml(&format!(
                "peers:\n  - name: p2\n    addr: 127.0.0.2:7000\n    public_key: {KEY}\n"
            )),
            Path::new("c.yaml"),
            &args,
        )
        .unwrap();
        assert_eq!(s.name, "p9");
        assert_eq!(s.anti_entropy, Duration::from_millis(50));
        assert_eq!(s.peers.len(), 1);
    }

    #[test]
    fn yaml_errors_carry_file_line_column() {
        let err = Settings::from_yaml(
            &yaml("anti_entropy_interval_ms: fast\n"),
            Path::new("c.yaml"),
            &RunArgs::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("c.yaml:7:"), "{err}");
    }

    #[test]
    fn broadcast_is_tree_or_flood() {
        let s = Settings::from_yaml(&yaml("broadcast: flood\n"), Path::new("c"), &RunArgs::default()).unwrap();
        assert_eq!(s.broadcast, Broadcast::Flood);
        let e = Settings::from_yaml(&yaml("broadcast: gossip\n"), Path::new("c"), &RunArgs::default()).unwrap_err();
        // A bad value is a YAML error with its place and what is allowed.
        let e = e.to_string();
        assert!(e.starts_with("c:7:12: "), "{e}");
        assert!(e.contains("gossip") && e.contains("tree") && e.contains("flood"), "{e}");
    }

    #[test]
    fn unknown_flavor_and_bad_keys_are_rejected() {
        let e = Settings::from_yaml(&yaml("flavor: seed\n"), Path::new("c"), &RunArgs::default()).unwrap_err();
        assert!(e.to_string().contains("flavor `seed`"));
        let s = Settings::from_yaml(&yaml("flavor: legacy\n"), Path::new("c"), &RunArgs::default()).unwrap();
        assert_eq!(s.flavor, Flavor::Legacy);
        let s = Settings::from_yaml(&yaml("flavor: mutant-echo-loop\n"), Path::new("c"), &RunArgs::default()).unwrap();
        assert_eq!(s.flavor, Flavor::Mutant(Mutant::EchoLoop));
        // A mutant is never a prefix or a guess away: only its full `mutant-` name switches it on.
        let e = Settings::from_yaml(&yaml("flavor: echo-loop\n"), Path::new("c"), &RunArgs::default()).unwrap_err();
        assert!(e.to_string().contains("mutant-echo-loop"), "{e}");
        let e = Settings::from_yaml(
            &yaml("trusted:\n  - name: x\n    public_key: zz\n"),
            Path::new("c"),
            &RunArgs::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("trusted `x`"));
    }
}
