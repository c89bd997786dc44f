//! A small started cluster with its nemesis, for tests that measure faults between real containers.

use std::sync::Arc;
use std::time::Duration;

use syftchaos::cluster::{Cluster, ClusterSpec};
use syftchaos::docker::{Engine, ExecOutput};
use syftchaos::nemesis::Nemesis;
use syftchaos::profile::{self, PlanFacts, Profile};
use syftchaos::record::history::History;

pub struct Bed {
    pub cluster: Cluster,
    pub nemesis: Nemesis,
    /// Kept alive while the bed runs: the peers' data folders live in it.
    _dir: tempfile::TempDir,
}

/// A shipped peer profile (`peer-image/profiles/<name>`).
pub fn shipped_profile(name: &str) -> Arc<Profile> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../peer-image/profiles");
    Arc::new(profile::load(name, &dir).unwrap_or_else(|e| panic!("{e}")))
}

impl Bed {
    /// `n` peers of `profile` in a full mesh, started, ready, introduced, with the fault chain
    /// prepared.
    pub async fn up_with(n: usize, profile: Arc<Profile>) -> Bed {
        let engine = Engine::connect().await.expect("docker");
        let dir = tempfile::tempdir().unwrap();
        let run_id = format!("{:08x}", rand::random::<u32>());
        let names: Vec<String> = (1..=n).map(|i| format!("p{i}")).collect();
        let spec = ClusterSpec {
            keys: syftchaos::record::recipe::RunKeys::random(&names),
            neighbours: (0..n).map(|i| (0..n).filter(|&j| j != i).collect()).collect(),
            names,
            image: profile.image.clone(),
            profile,
            plan: PlanFacts {
                name: "bed".into(),
                seed: 1,
                flavor: "default".into(),
                anti_entropy_ms: 1000,
                quarantine_ms: None,
            },
            disk_limit: None,
        };
        let mut cluster = Cluster::provision(engine.clone(), &run_id, dir.path(), &spec)
            .await
            .expect("provision");
        let history = Arc::new(History::create(&dir.path().join("history.jsonl")).unwrap());
        let ready = async {
            cluster.start_all().await?;
            cluster.wait_ready(Duration::from_secs(90), |_, _| {}).await?;
            cluster.introduce().await
        };
        if let Err(e) = ready.await {
            let _ = cluster.teardown().await;
            panic!("test bed did not come up: {e:#}");
        }
        let nemesis = Nemesis::new(&cluster, history);
        if let Err(e) = nemesis.prepare().await {
            let _ = cluster.teardown().await;
            panic!("test bed's fault agents did not come up: {e:#}");
        }
        Bed {
            cluster,
            nemesis,
            _dir: dir,
        }
    }

    /// Runs a shell script as root in the peer's network namespace: in its fault agent (the tools
    /// image: iptables, ping, nc), never needing anything from the daemon's image.
    pub async fn sh(&self, peer: usize, script: &str) -> ExecOutput {
        self.cluster
            .engine
            .exec(&self.cluster.peers[peer].agent, "root", &["sh", "-c", script])
            .await
            .unwrap()
    }

    /// Runs a shell script as root in the peer's own container.
    pub async fn sh_peer(&self, peer: usize, script: &str) -> ExecOutput {
        self.cluster
            .engine
            .exec(&self.cluster.peers[peer].container, "root", &["sh", "-c", script])
            .await
            .unwrap()
    }

    pub fn ip(&self, peer: usize) -> String {
        self.cluster.peers[peer].ip.to_string()
    }

    pub async fn down(self) {
        self.cluster.teardown().await.expect("teardown");
    }
}

/// Runs `body` on a fresh bed and always tears it down, even when `body` panics.
pub fn with_bed<F>(n: usize, body: F)
where
    F: for<'a> FnOnce(&'a Bed) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>,
{
    with_bed_of(n, shipped_profile("syncpeer"), body)
}

/// [`with_bed`] with peers of `profile`.
pub fn with_bed_of<F>(n: usize, profile: Arc<Profile>, body: F)
where
    F: for<'a> FnOnce(&'a Bed) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>,
{
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bed = Bed::up_with(n, profile).await;
        let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(body(&bed))).await;
        bed.down().await;
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    });
}

/// `ping` summary: (sent, received, duplicates, avg rtt ms, mdev ms).
pub fn ping_stats(out: &str) -> (u32, u32, u32, f64, f64) {
    let mut sent = 0;
    let mut received = 0;
    let mut dups = 0;
    let (mut avg, mut mdev) = (f64::NAN, f64::NAN);
    for line in out.lines() {
        if line.contains("packets transmitted") {
            let nums: Vec<u32> = line
                .split([',', ' '])
                .filter_map(|w| w.trim_start_matches('+').parse().ok())
                .collect();
            sent = nums[0];
            received = nums[1];
            if line.contains("duplicates") {
                dups = nums[2];
            }
        }
        if let Some(rest) = line.split("= ").nth(1).filter(|_| line.starts_with("rtt")) {
            // "0.04/0.11/0.25/0.10 ms", and ", pipe 3" may follow.
            let v: Vec<f64> = rest
                .split(" ms")
                .next()
                .unwrap_or_default()
                .split('/')
                .filter_map(|x| x.parse().ok())
                .collect();
            avg = v[1];
            mdev = v[3];
        }
    }
    (sent, received, dups, avg, mdev)
}
