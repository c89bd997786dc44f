//! A container's CPU, memory, task and network counters read straight from the kernel, the same
//! numbers Docker's stats API reports ([`ContainerStats`]), without a call to the engine per sample.
//!
//! Why: the scraper samples every container once a second. At 100 peers that was 100 stats calls a
//! second, and dockerd, containerd and their shims spent 20 to 35 % of the 2 cores answering them
//! (docs/BENCHMARKS.md, `scale-100`). Read here, a sample is a handful of small files.
//!
//! Where: the container's init process (its pid, from one inspect) names its cgroups in
//! `/proc/<pid>/cgroup`. With cgroup v1 (this machine: Docker's `cgroupfs` driver), CPU is
//! `cpuacct.usage`, memory `memory.usage_in_bytes` and `memory.stat`'s `rss`, tasks `pids.current`
//! under `/sys/fs/cgroup/<controller>/<path>`; with cgroup v2, `cpu.stat`'s `usage_usec`,
//! `memory.current`, `memory.stat`'s `anon` and `pids.current` under `/sys/fs/cgroup/<path>`. Network
//! bytes are the container's interfaces but `lo` in `/proc/<pid>/net/dev`, as Docker counts them.
//!
//! The process is checked on every sample (its cgroup file must still name the container's id): a
//! restarted container has a new init process and is looked up again. Where the files cannot be
//! read (an orchestrator that does not share the engine's host, or its `/proc`), the sample comes
//! from the stats API, as before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::docker::{ContainerStats, Engine};

/// Where one running container's counters are.
#[derive(Debug, Clone, PartialEq)]
struct Source {
    id: String,
    pid: u32,
    files: Files,
}

#[derive(Debug, Clone, PartialEq)]
enum Files {
    V1 {
        cpuacct: PathBuf,
        memory: PathBuf,
        pids: PathBuf,
    },
    V2 {
        dir: PathBuf,
    },
}

/// Samples containers from the kernel's files, falling back to the engine's stats API.
pub struct StatsReader {
    engine: Engine,
    root: PathBuf,
    sources: Mutex<HashMap<String, Source>>,
}

impl StatsReader {
    pub fn new(engine: Engine) -> StatsReader {
        StatsReader {
            engine,
            root: PathBuf::from("/"),
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// One sample of `container`.
    pub async fn stats(&self, container: &str) -> anyhow::Result<ContainerStats> {
        let cached = self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(container)
            .cloned();
        let source = match cached.filter(|s| self.still_there(s)) {
            Some(s) => Some(s),
            None => self.locate(container).await,
        };
        if let Some(s) = source {
            match read(&self.root, &s) {
                Ok(stats) => {
                    self.sources
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(container.to_string(), s);
                    return Ok(stats);
                }
                Err(e) => tracing::debug!("kernel counters of {container}: {e}; asking the engine"),
            }
        }
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).remove(container);
        Ok(self.engine.stats(container).await?)
    }

    /// Whether `container`'s last sample came from the kernel's files (not the stats API).
    pub fn reads_kernel(&self, container: &str) -> bool {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(container)
    }

    /// Whether `s`'s process still is the container's (not restarted, not gone).
    fn still_there(&self, s: &Source) -> bool {
        std::fs::read_to_string(self.proc(s.pid).join("cgroup")).is_ok_and(|c| c.contains(&s.id))
    }

    /// The running container's init process and its cgroup files; `None` when it is not running
    /// or its files are out of reach.
    async fn locate(&self, container: &str) -> Option<Source> {
        let (id, pid) = self.engine.init_process(container).await.ok().flatten()?;
        let cgroup = std::fs::read_to_string(self.proc(pid).join("cgroup")).ok()?;
        if !cgroup.contains(&id) {
            return None;
        }
        let files = files(&self.root, &cgroup)?;
        Some(Source { id, pid, files })
    }

    fn proc(&self, pid: u32) -> PathBuf {
        self.root.join("proc").join(pid.to_string())
    }
}

/// The counters' files from a `/proc/<pid>/cgroup` text: v1 when it names a `cpuacct` hierarchy,
/// else v2's unified one (`0::<path>`).
fn files(root: &Path, cgroup: &str) -> Option<Files> {
    let cg = root.join("sys/fs/cgroup");
    let mut v1: HashMap<&str, &str> = HashMap::new();
    let mut unified = None;
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.is_empty() {
            unified = Some(path);
        }
        for c in controllers.split(',') {
            v1.insert(c, path);
        }
    }
    let under = |base: PathBuf, path: &str| base.join(path.trim_start_matches('/'));
    match (v1.get("cpuacct"), v1.get("memory"), v1.get("pids")) {
        (Some(cpu), Some(mem), Some(pids)) => Some(Files::V1 {
            cpuacct: under(cg.join("cpuacct"), cpu),
            memory: under(cg.join("memory"), mem),
            pids: under(cg.join("pids"), pids),
        }),
        _ => unified.map(|p| Files::V2 { dir: under(cg, p) }),
    }
}

fn read(root: &Path, s: &Source) -> std::io::Result<ContainerStats> {
    let text = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    let number = |p: PathBuf| -> std::io::Result<u64> {
        let t = text(p.clone())?;
        t.trim().parse().map_err(|_| bad(&p))
    };
    let (cpu_ns, mem_bytes, anon_bytes, tasks) = match &s.files {
        Files::V1 { cpuacct, memory, pids } => (
            number(cpuacct.join("cpuacct.usage"))?,
            number(memory.join("memory.usage_in_bytes"))?,
            field(&text(memory.join("memory.stat"))?, "rss").ok_or_else(|| bad(&memory.join("memory.stat")))?,
            number(pids.join("pids.current"))?,
        ),
        Files::V2 { dir } => (
            field(&text(dir.join("cpu.stat"))?, "usage_usec").ok_or_else(|| bad(&dir.join("cpu.stat")))? * 1000,
            number(dir.join("memory.current"))?,
            field(&text(dir.join("memory.stat"))?, "anon").ok_or_else(|| bad(&dir.join("memory.stat")))?,
            number(dir.join("pids.current"))?,
        ),
    };
    let (rx_bytes, tx_bytes) = net_dev(&text(root.join("proc").join(s.pid.to_string()).join("net/dev"))?);
    Ok(ContainerStats {
        cpu_ns,
        mem_bytes,
        anon_bytes,
        tasks,
        rx_bytes,
        tx_bytes,
    })
}

fn bad(p: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: not the expected format", p.display()),
    )
}

/// `key value` lines (`memory.stat`, `cpu.stat`): the value of `key`.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Received and sent bytes over every interface but `lo` in a `/proc/<pid>/net/dev` text.
fn net_dev(text: &str) -> (u64, u64) {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim() != "lo")
        .filter_map(|(_, nums)| {
            let n: Vec<u64> = nums.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (n.len() >= 16).then(|| (n[0], n[8]))
        })
        .fold((0, 0), |(r, t), (a, b)| (r + a, t + b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "9:name=systemd:/docker/abc\n8:pids:/docker/abc\n4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/docker/abc\n";

    #[test]
    fn cgroup_v1_is_chosen_when_its_controllers_are_named_and_v2_otherwise() {
        let root = Path::new("/r");
        assert_eq!(
            files(root, V1),
            Some(Files::V1 {
                cpuacct: "/r/sys/fs/cgroup/cpuacct/docker/abc".into(),
                memory: "/r/sys/fs/cgroup/memory/docker/abc".into(),
                pids: "/r/sys/fs/cgroup/pids/docker/abc".into(),
            })
        );
        assert_eq!(
            files(root, "0::/system.slice/docker-abc.scope\n"),
            Some(Files::V2 {
                dir: "/r/sys/fs/cgroup/system.slice/docker-abc.scope".into()
            })
        );
        assert_eq!(files(root, "garbage"), None);
    }

    #[test]
    fn net_dev_sums_every_interface_but_lo() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  999999      10    0    0    0     0          0         0   999999      10    0    0    0     0       0          0
  eth0:    1500      12    0    0    0     0          0         0     2500      20    0    0    0     0       0          0
  eth1:     100       1    0    0    0     0          0         0       10       1    0    0    0     0       0          0
";
        assert_eq!(net_dev(text), (1600, 2510));
    }

    #[test]
    fn a_sample_reads_the_v1_files_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cg = |c: &str| root.join("sys/fs/cgroup").join(c).join("docker/abc");
        for c in ["cpuacct", "memory", "pids"] {
            std::fs::create_dir_all(cg(c)).unwrap();
        }
        std::fs::write(cg("cpuacct").join("cpuacct.usage"), "123456789\n").unwrap();
        std::fs::write(cg("memory").join("memory.usage_in_bytes"), "4096000\n").unwrap();
        std::fs::write(cg("memory").join("memory.stat"), "cache 100\nrss 2048000\nrss_huge 0\n").unwrap();
        std::fs::write(cg("pids").join("pids.current"), "7\n").unwrap();
        std::fs::create_dir_all(root.join("proc/42/net")).unwrap();
        std::fs::write(
            root.join("proc/42/net/dev"),
            "h\nh\n  eth0: 10 0 0 0 0 0 0 0 20 0 0 0 0 0 0 0\n",
        )
        .unwrap();
        let s = Source {
            id: "abc".into(),
            pid: 42,
            files: files(root, V1).unwrap(),
        };
        assert_eq!(
            read(root, &s).unwrap(),
            ContainerStats {
                cpu_ns: 123456789,
                mem_bytes: 4096000,
                anon_bytes: 2048000,
                tasks: 7,
                rx_bytes: 10,
                tx_bytes: 20,
            }
        );
        std::fs::write(cg("pids").join("pids.current"), "max?\n").unwrap();
        let e = read(root, &s).unwrap_err().to_string();
        assert!(e.contains("pids.current: not the expected format"), "{e}");
    }
}
