//! Cluster and partition timings on real Docker (`cargo bench -p syftchaos --bench cluster`).
//!
//! For each size: peer containers and their fault agents created + started + every peer ready by its
//! profile's probe; a `halves` partition applied to every peer through its agent; healed; torn down;
//! and the agents' memory (Docker's figure, as `docker stats` shows it). Sizes come from `SYFTCHAOS_BENCH_SIZES` (default
//! `3,10,20,50`). Results go to docs/BENCHMARKS.md by hand, with the machine they ran on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use syftchaos::cluster::{Cluster, ClusterSpec};
use syftchaos::docker::Engine;
use syftchaos::generator::ConcreteFault;
use syftchaos::nemesis::Nemesis;
use syftchaos::partition::{Cut, CutMode, Shape};
use syftchaos::profile::{self, PlanFacts};
use syftchaos::record::history::History;

#[tokio::main]
async fn main() {
    let engine = match Engine::connect().await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("skipping the cluster bench: {e}");
            return;
        }
    };
    let sizes: Vec<usize> = std::env::var("SYFTCHAOS_BENCH_SIZES")
        .unwrap_or_else(|_| "3,10,20,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let profiles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../peer-image/profiles");
    let syncpeer = Arc::new(profile::load("syncpeer", &profiles).expect("the syncpeer profile"));
    println!("| peers | up + ready | partition applied | healed | torn down | agent memory (median, max) |");
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let run_id = format!("{:08x}", rand::random::<u32>());
        let names: Vec<String> = (1..=n).map(|i| format!("p{i}")).collect();
        let spec = ClusterSpec {
            keys: syftchaos::record::recipe::RunKeys::random(&names),
            names,
            neighbours: (0..n).map(|i| vec![(i + 1) % n, (i + n - 1) % n]).collect(),
            image: syncpeer.image.clone(),
            profile: syncpeer.clone(),
            plan: PlanFacts {
                name: "bench".into(),
                seed: 1,
                flavor: "default".into(),
                anti_entropy_ms: 1000,
                quarantine_ms: None,
            },
            disk_limit: None,
        };
        let t = Instant::now();
        let mut cluster = Cluster::provision(engine.clone(), &run_id, dir.path(), &spec)
            .await
            .expect("provision");
        let result = async {
            cluster.start_all().await?;
            cluster.wait_ready(Duration::from_secs(300), |_, _| {}).await?;
            let up = t.elapsed();
            let history = Arc::new(History::create(&dir.path().join("history.jsonl"))?);
            let nemesis = Nemesis::new(&cluster, history);
            nemesis.prepare().await?;
            let cut = Cut {
                links: Shape::Halves.links(n, 1),
                mode: CutMode::Drop,
                port: None,
            };
            let t = Instant::now();
            nemesis
                .start("halves#1", "halves", ConcreteFault::Partition(cut))
                .await?;
            let applied = t.elapsed();
            let t = Instant::now();
            nemesis.heal_all().await?;
            let healed = t.elapsed();
            let mut mem: Vec<u64> = Vec::new();
            for p in &cluster.peers {
                mem.push(engine.stats(&p.agent).await?.mem_bytes);
            }
            mem.sort_unstable();
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            anyhow::Ok((up, applied, healed, (mib(mem[mem.len() / 2]), mib(mem[mem.len() - 1]))))
        }
        .await;
        let t = Instant::now();
        cluster.teardown().await.expect("teardown");
        let down = t.elapsed();
        let (up, applied, healed, (mem_median, mem_max)) = result.expect("bench run");
        println!(
            "| {n} | {:.1} s | {:.2} s | {:.2} s | {:.1} s | {mem_median:.1} MiB, {mem_max:.1} MiB |",
            up.as_secs_f64(),
            applied.as_secs_f64(),
            healed.as_secs_f64(),
            down.as_secs_f64()
        );
    }
}
