//! `netfault`: the packet-fault agent run (as root) inside a peer's network namespace.
//!
//! Exit codes: 0 done, 2 error (bad spec, missing kernel feature, a command failed).
//! Output: one JSON document on stdout per command.

mod agent;
mod engine;
mod mitm_agent;
mod probe;
mod proxy;
mod skew;
mod sys;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use netfault::spec::FaultSpec;

#[derive(Parser)]
#[command(
    name = "netfault",
    version,
    about = "Packet faults (delay, jitter, loss, corruption, \
duplication, reordering, bandwidth) with or without kernel netem"
)]
struct Cli {
    /// Where state, counters and engine logs live.
    #[arg(long, global = true, env = "NETFAULT_STATE_DIR", default_value = "/run/netfault")]
    state_dir: PathBuf,
    /// Force an iptables binary (default: the first of iptables, iptables-nft, iptables-legacy
    /// that works here).
    #[arg(long, global = true, env = "NETFAULT_IPTABLES")]
    iptables: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print which engines work here (kernel netem, NFQUEUE, htb, tbf) as JSON.
    Probe,
    /// Install one fault; a fault with the same id is replaced.
    Apply {
        /// The spec: inline JSON, a file path, or `-` for stdin.
        #[arg(long)]
        spec: String,
    },
    /// Remove one fault (`--id`) or everything netfault installed, restoring the link.
    Clear {
        #[arg(long)]
        id: Option<String>,
    },
    /// Show installed faults and their engines' counters as JSON.
    Status,
    /// Re-install every recorded fault (after a container restart).
    Restore,
    /// Skew the wall clock of running processes (any binary: glibc, static musl, Go), by patching
    /// their vDSO through ptrace. Needs CAP_SYS_PTRACE and the target's PID namespace; x86_64 only.
    Clock {
        #[command(subcommand)]
        op: ClockOp,
        /// Target processes (default: every process outside this agent's mount namespace, i.e.
        /// the peer's, when the agent shares its PID namespace).
        #[arg(long, global = true, value_delimiter = ',')]
        pid: Vec<i32>,
    },
    /// A man in the middle on one link: a TCP proxy on every stream between this host and the
    /// targets' port (both ways), which alters, drops or replays one message per stream and counts
    /// whether the other side answers. Needs CAP_NET_ADMIN (NAT rules, SO_MARK).
    Mitm {
        #[command(subcommand)]
        op: MitmOp,
    },
    /// The man in the middle's proxy (started by `mitm start`; not for direct use).
    #[command(hide = true)]
    MitmProxy {
        #[arg(long)]
        spec: String,
        /// Send every stream here instead of its original destination (tests).
        #[arg(long)]
        upstream: Option<std::net::SocketAddr>,
    },
    /// The userspace engine for one fault (started by `apply`; not for direct use).
    #[command(hide = true)]
    Daemon {
        #[arg(long)]
        queue: u16,
        /// Packet-mark bit set on packets this engine has handled (0: accept instead).
        #[arg(long, default_value_t = 0)]
        mark: u32,
        #[arg(long)]
        spec: String,
    },
}

#[derive(Subcommand)]
enum ClockOp {
    /// Set the wall-clock offset (CLOCK_REALTIME and its coarse variant, gettimeofday, time).
    Set {
        /// Signed nanoseconds added to the true wall clock.
        #[arg(long, allow_hyphen_values = true)]
        offset_ns: i64,
    },
    /// Remove the skew: the vDSO's original code back.
    Clear,
    /// Whether each target is skewed, and by how much.
    Status,
    /// Each skewed target's own wall clock against the agent's (`measured_ns`): the target calls
    /// its patched clock_gettime once.
    Measure,
}

#[derive(Subcommand)]
enum MitmOp {
    /// Put the proxy on the link (replacing one with the same id).
    Start {
        #[arg(long)]
        id: String,
        /// The other end(s) of the link.
        #[arg(long, value_delimiter = ',', required = true)]
        targets: Vec<std::net::Ipv4Addr>,
        /// The daemon's sync port.
        #[arg(long)]
        port: u16,
        /// alter, drop or replay.
        #[arg(long, value_parser = parse_mode)]
        mode: netfault::mitm::Mode,
        /// Act on a stream once it is this old (past its handshake).
        #[arg(long, default_value_t = netfault::mitm::AFTER_MS)]
        after_ms: u64,
    },
    /// Take it away; prints its final tally.
    Stop {
        #[arg(long)]
        id: String,
    },
    /// Every man in the middle and its tally so far.
    Status,
}

fn parse_mode(s: &str) -> Result<netfault::mitm::Mode, String> {
    netfault::mitm::Mode::parse(s).ok_or_else(|| format!("{s:?} is not a mode; one of {}", netfault::mitm::Mode::ALL))
}

fn read_spec(arg: &str) -> Result<FaultSpec> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_string()
    } else if arg == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(arg).with_context(|| format!("cannot read spec file {arg}"))?
    };
    Ok(FaultSpec::from_json(&text)?)
}

fn print(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    let default_level = match cli.cmd {
        Cmd::Daemon { .. } | Cmd::MitmProxy { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    let agent = agent::Agent {
        dir: cli.state_dir.clone(),
        iptables: cli.iptables.clone(),
    };
    match cli.cmd {
        Cmd::Probe => print(&serde_json::to_value(probe::probe(cli.iptables.as_deref()))?),
        Cmd::Apply { spec } => print(&agent.apply(read_spec(&spec)?)?),
        Cmd::Clear { id } => print(&agent.clear(id.as_deref())?),
        Cmd::Status => print(&agent.status()?),
        Cmd::Restore => print(&agent.restore()?),
        Cmd::Clock { op, pid } => {
            // One clock change at a time in an agent: two `set`s racing on an unpatched process
            // would each inject a page (the second's ptrace would fail, but only after the first).
            let _lock = sys::StateLock::take(&cli.state_dir)?;
            let mut out = Vec::new();
            for p in skew::targets(&pid)? {
                let done = match &op {
                    ClockOp::Set { offset_ns } => skew::set(p, *offset_ns),
                    ClockOp::Clear => skew::clear(p),
                    ClockOp::Status => skew::status(p),
                    ClockOp::Measure => skew::measure(p),
                };
                out.push(match done {
                    // A process that ended meanwhile (a short-lived child of the daemon) is no error.
                    Err(_) if !std::path::Path::new(&format!("/proc/{p}")).exists() => {
                        serde_json::json!({"pid": p, "gone": true})
                    }
                    other => other?,
                });
            }
            print(&serde_json::json!({"mechanism": "vdso", "targets": out}));
        }
        Cmd::Mitm { op } => print(&match op {
            MitmOp::Start {
                id,
                targets,
                port,
                mode,
                after_ms,
            } => agent.mitm_start(netfault::mitm::MitmSpec {
                id,
                targets,
                port,
                mode,
                after_ms,
            })?,
            MitmOp::Stop { id } => agent.mitm_stop(&id)?,
            MitmOp::Status => agent.mitm_status()?,
        }),
        Cmd::MitmProxy { spec, upstream } => {
            let spec: netfault::mitm::MitmSpec = serde_json::from_str(&spec).context("bad --spec")?;
            proxy::run(spec, upstream, &cli.state_dir)?;
        }
        Cmd::Daemon { queue, mark, spec } => {
            let spec = FaultSpec::from_json(&spec)?;
            let counters = cli.state_dir.join(format!("{}.counters.json", spec.id));
            engine::run(spec, queue, mark, counters)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netfault: {e:#}");
            ExitCode::from(2)
        }
    }
}
