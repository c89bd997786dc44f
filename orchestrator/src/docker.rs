//! The only module that talks to Docker, through bollard. Every call maps bollard's error to a
//! [`DockerError`] named after the operation ("failed to pause container p2-...: ..."), because raw
//! bollard errors do not tell a user what was being attempted (testcontainers-rs does the same).
//!
//! Another backend (Swarm, Kubernetes) would replace this module and [`crate::cluster`] only.

use std::collections::HashMap;

use bollard::Docker;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, ExecConfig, HostConfig, Ipam, IpamConfig,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

/// Label on everything the project creates.
pub const LABEL_MANAGED: &str = "io.syftchaos.managed";
/// Label naming the run a container or network belongs to.
pub const LABEL_RUN: &str = "io.syftchaos.run";
/// Label holding the orchestrator's pid, so a later start can tell live runs from stale ones.
pub const LABEL_PID: &str = "io.syftchaos.pid";
/// Label naming the peer a container plays.
pub const LABEL_PEER: &str = "io.syftchaos.peer";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine ({0}); is it running, and may this user use it (root or the docker group)?"
    )]
    Connect(String),
    #[error("failed to {op}: {source}")]
    Op {
        op: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("image `{0}` is missing; build it with `make image` (or the profile's `image.build`)")]
    MissingImage(String),
    #[error("cannot read {0} from the image's archive: {1}")]
    Archive(String, String),
    #[error("exec `{0}` in container {1} started detached; an attached one was asked for")]
    Detached(String, String),
    /// Another network took the subnet between our look and our create (a concurrent run).
    #[error("subnet {0} was taken by another network meanwhile")]
    SubnetTaken(String),
}

type Result<T> = std::result::Result<T, DockerError>;

fn op(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    let op = what.into();
    move |source| DockerError::Op { op, source }
}

/// What `docker exec` printed and returned.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// A process started in a container with its streams attached ([`Engine::exec_attached`]).
pub struct Attached {
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    pub output: std::pin::Pin<
        Box<
            dyn futures_util::Stream<Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>>
                + Send,
        >,
    >,
}

/// A container to create: on a run's network at a static address, or (a fault-agent sidecar) in
/// another container's network namespace (`network: container:<name>`, no `ip`).
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub network: String,
    pub ip: Option<String>,
    pub binds: Vec<String>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub cap_add: Vec<String>,
    /// `None`: the image's own.
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// Kernel settings of the container's namespaces (`--sysctl`).
    pub sysctls: HashMap<String, String>,
    /// `--pid`: e.g. `container:<name>` to share another container's PID namespace.
    pub pid_mode: Option<String>,
}

/// A labelled container as listed.
#[derive(Debug, Clone)]
pub struct Managed {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    pub state: String,
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    pub async fn connect() -> Result<Engine> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| DockerError::Connect(e.to_string()))?;
        docker.ping().await.map_err(|e| DockerError::Connect(e.to_string()))?;
        Ok(Engine { docker })
    }

    /// The image's id, or [`DockerError::MissingImage`].
    pub async fn require_image(&self, image: &str) -> Result<String> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.id.unwrap_or_default()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                Err(DockerError::MissingImage(image.to_string()))
            }
            Err(e) => Err(op(format!("inspect image {image}"))(e)),
        }
    }

    /// Subnets of every existing network, so a new one can avoid them.
    pub async fn used_subnets(&self) -> Result<Vec<String>> {
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptionsBuilder::new().build()))
            .await
            .map_err(op("list networks"))?;
        Ok(nets
            .into_iter()
            .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
            .filter_map(|c| c.subnet)
            .collect())
    }

    pub async fn create_network(
        &self,
        name: &str,
        subnet: &str,
        gateway: &str,
        labels: HashMap<String, String>,
    ) -> Result<String> {
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.into()),
                    gateway: Some(gateway.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(labels),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(resp) => Ok(resp.id),
            // Docker answers 403 "Pool overlaps with other one on this address space".
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 403,
                message,
            }) if message.contains("overlaps") => Err(DockerError::SubnetTaken(subnet.to_string())),
            Err(e) => Err(op(format!("create network {name} ({subnet})"))(e)),
        }
    }

    pub async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(op(format!("remove network {name}"))(e)),
        }
    }

    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let networking_config = spec.ip.as_ref().map(|ip| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.clone(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(ip.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // A container in another's namespace shares its hostname (Docker refuses one of its own).
            hostname: spec.ip.as_ref().map(|_| spec.name.clone()),
            cmd: spec.cmd.clone(),
            entrypoint: spec.entrypoint.clone(),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            host_config: Some(HostConfig {
                binds: Some(spec.binds.clone()),
                cap_add: Some(spec.cap_add.clone()),
                sysctls: (!spec.sysctls.is_empty()).then(|| spec.sysctls.clone()),
                network_mode: Some(spec.network.clone()),
                pid_mode: spec.pid_mode.clone(),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(&spec.name).build();
        let resp = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(op(format!("create container {}", spec.name)))?;
        Ok(resp.id)
    }

    pub async fn start(&self, name: &str) -> Result<()> {
        self.docker
            .start_container(name, None)
            .await
            .map_err(op(format!("start container {name}")))
    }

    /// SIGTERM, then SIGKILL after `grace_s`.
    pub async fn stop(&self, name: &str, grace_s: i32) -> Result<()> {
        let opts = StopContainerOptionsBuilder::new().t(grace_s).build();
        match self.docker.stop_container(name, Some(opts)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(op(format!("stop container {name}"))(e)),
        }
    }

    pub async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        let opts = KillContainerOptionsBuilder::new().signal(signal).build();
        self.docker
            .kill_container(name, Some(opts))
            .await
            .map_err(op(format!("kill container {name} with {signal}")))
    }

    pub async fn pause(&self, name: &str) -> Result<()> {
        self.docker
            .pause_container(name)
            .await
            .map_err(op(format!("pause container {name}")))
    }

    pub async fn unpause(&self, name: &str) -> Result<()> {
        self.docker
            .unpause_container(name)
            .await
            .map_err(op(format!("unpause container {name}")))
    }

    /// Force-removes a container; a missing one is not an error (cleanup is idempotent).
    pub async fn remove_container(&self, name: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.docker.remove_container(name, Some(opts)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            // Someone else (a concurrent `chaos clean`) is removing it already: the outcome is the same.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(op(format!("remove container {name}"))(e)),
        }
    }

    pub async fn is_running(&self, name: &str) -> Result<bool> {
        let info = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(op(format!("inspect container {name}")))?;
        Ok(info.state.and_then(|s| s.running).unwrap_or(false))
    }

    /// The running container's full id and the pid of its init process (as the host sees it);
    /// `None` when it is not running.
    pub async fn init_process(&self, name: &str) -> Result<Option<(String, u32)>> {
        let info = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(op(format!("inspect container {name}")))?;
        let state = info.state.unwrap_or_default();
        let pid = state.pid.filter(|&p| p > 0 && state.running == Some(true));
        Ok(info.id.zip(pid).map(|(id, pid)| (id, pid as u32)))
    }

    /// The bytes of one regular file of `image` (e.g. a library to mount into peers), read through a
    /// container that is created, never started, and removed.
    pub async fn file_from_image(&self, image: &str, path: &str, labels: HashMap<String, String>) -> Result<Vec<u8>> {
        let name = format!("syftchaos-copy-{:08x}", rand::random::<u32>());
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            labels: Some(labels),
            network_disabled: Some(true),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(op(format!("create a container of {image} to copy {path} out")))?;
        let opts = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let mut stream = self.docker.download_from_container(&name, Some(opts));
        let mut archive = Vec::new();
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(b) => archive.extend_from_slice(&b),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.remove_container(&name).await?;
        if let Some(e) = failed {
            return Err(op(format!("copy {path} out of {image}"))(e));
        }
        let mut tar = tar::Archive::new(archive.as_slice());
        let entries = tar
            .entries()
            .map_err(|e| DockerError::Archive(path.to_string(), e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| DockerError::Archive(path.to_string(), e.to_string()))?;
            if entry.header().entry_type().is_file() {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes)
                    .map_err(|e| DockerError::Archive(path.to_string(), e.to_string()))?;
                return Ok(bytes);
            }
        }
        Err(DockerError::Archive(
            path.to_string(),
            "no regular file there (a symlink?)".into(),
        ))
    }

    /// Runs `cmd` in the container as `user` and waits for it.
    pub async fn exec(&self, name: &str, user: &str, cmd: &[&str]) -> Result<ExecOutput> {
        let what = || format!("exec `{}` in container {name}", cmd.join(" "));
        let (id, mut attached) = self.start_exec(name, user, cmd, false).await?;
        let (mut stdout, mut stderr) = (String::new(), String::new());
        while let Some(chunk) = attached.output.next().await {
            match chunk.map_err(op(what()))? {
                bollard::container::LogOutput::StdErr { message } => {
                    stderr.push_str(&String::from_utf8_lossy(&message))
                }
                other => stdout.push_str(&String::from_utf8_lossy(&other.into_bytes())),
            }
        }
        let inspect = self.docker.inspect_exec(&id).await.map_err(op(what()))?;
        Ok(ExecOutput {
            exit_code: inspect.exit_code.unwrap_or(-1),
            stdout,
            stderr,
        })
    }

    /// Starts `cmd` in the container as `user` with its stdin, stdout and stderr attached, and
    /// returns them without waiting: for a shell kept open ([`crate::cluster::agent_shell`]).
    pub async fn exec_attached(&self, name: &str, user: &str, cmd: &[&str]) -> Result<Attached> {
        Ok(self.start_exec(name, user, cmd, true).await?.1)
    }

    /// Creates and starts an exec with stdout and stderr (and with `stdin`, stdin) attached: its id
    /// and its streams.
    async fn start_exec(&self, name: &str, user: &str, cmd: &[&str], stdin: bool) -> Result<(String, Attached)> {
        let what = || format!("exec `{}` in container {name}", cmd.join(" "));
        let config = ExecConfig {
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            user: Some(user.to_string()),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let created = self.docker.create_exec(name, config).await.map_err(op(what()))?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    ..Default::default()
                }),
            )
            .await
            .map_err(op(what()))?;
        match started {
            StartExecResults::Attached { output, input } => Ok((created.id, Attached { input, output })),
            StartExecResults::Detached => Err(DockerError::Detached(cmd.join(" "), name.to_string())),
        }
    }

    /// The container's whole log (stdout and stderr, interleaved as Docker stored them).
    pub async fn logs(&self, name: &str) -> Result<String> {
        self.logs_since(name, 0).await
    }

    /// A container's output from `since` (Unix seconds; 0: all of it) on.
    pub async fn logs_since(&self, name: &str, since: i32) -> Result<String> {
        let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).since(since).build();
        let mut stream = self.docker.logs(name, Some(opts));
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            out.push_str(&String::from_utf8_lossy(
                &chunk.map_err(op(format!("read logs of {name}")))?.into_bytes(),
            ));
        }
        Ok(out)
    }

    /// Every container carrying the project's label (all states).
    pub async fn managed_containers(&self) -> Result<Vec<Managed>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_MANAGED}=true")])]);
        let opts = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(op("list containers"))?;
        Ok(list
            .into_iter()
            .map(|c| Managed {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                labels: c.labels.unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            })
            .collect())
    }

    /// Every network carrying the project's label: (name, labels).
    pub async fn managed_networks(&self) -> Result<Vec<(String, HashMap<String, String>)>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_MANAGED}=true")])]);
        let opts = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let list = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(op("list networks"))?;
        Ok(list
            .into_iter()
            .map(|n| (n.name.unwrap_or_default(), n.labels.unwrap_or_default()))
            .collect())
    }
}

/// Resource use of one container at one moment, as the Docker stats API reports it (cumulative
/// counters: rates come from differences between two samples).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerStats {
    /// CPU time used by the container since it started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, in bytes (the cgroup's usage; page cache included, as `docker stats` without
    /// subtracting the cache).
    pub mem_bytes: u64,
    /// Memory the processes hold themselves: the cgroup's anonymous memory (`anon`, cgroup v2; `rss`
    /// on v1), without the page cache, which grows with every file synced and says nothing of a leak.
    #[serde(default)]
    pub anon_bytes: u64,
    /// Tasks (processes and threads) in the container.
    #[serde(default)]
    pub tasks: u64,
    /// Bytes received and sent on all the container's interfaces.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl Engine {
    /// One stats sample of a container (`one-shot`: no second sample for a CPU percentage, which the
    /// caller computes from its own successive samples).
    pub async fn stats(&self, name: &str) -> Result<ContainerStats> {
        let opts = bollard::query_parameters::StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stream = self.docker.stats(name, Some(opts));
        let Some(resp) = stream.next().await else {
            return Ok(ContainerStats::default());
        };
        let s = resp.map_err(op(format!("read stats of container {name}")))?;
        let (rx_bytes, tx_bytes) = s.networks.unwrap_or_default().values().fold((0, 0), |(r, t), n| {
            (r + n.rx_bytes.unwrap_or(0), t + n.tx_bytes.unwrap_or(0))
        });
        Ok(ContainerStats {
            cpu_ns: s
                .cpu_stats
                .and_then(|c| c.cpu_usage)
                .and_then(|u| u.total_usage)
                .unwrap_or(0),
            mem_bytes: s.memory_stats.as_ref().and_then(|m| m.usage).unwrap_or(0),
            anon_bytes: s
                .memory_stats
                .and_then(|m| m.stats)
                .and_then(|st| st.get("anon").or_else(|| st.get("rss")).copied())
                .unwrap_or(0),
            tasks: s.pids_stats.and_then(|p| p.current).unwrap_or(0),
            rx_bytes,
            tx_bytes,
        })
    }
}
