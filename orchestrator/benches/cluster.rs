//! Cluster and partition timings on real Docker (`cargo bench -p syftchaos --bench cluster`).
//!
//! For each size: containers created + started + every `/v1/status` answering; a `halves` partition
//! applied to every peer; healed; torn down. Sizes come from `SYFTCHAOS_BENCH_SIZES` (default
//! `3,10,20,50`). Results go to docs/BENCHMARKS.md by hand, with the machine they ran on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use syftchaos::cluster::{Cluster, ClusterSpec};
use syftchaos::docker::Engine;
use syftchaos::generator::ConcreteFault;
use syftchaos::history::History;
use syftchaos::nemesis::Nemesis;
use syftchaos::partition::{Cut, CutMode, Shape};

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
    println!("| peers | up + ready | partition applied | healed | torn down |");
    println!("|---|---|---|---|---|");
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let run_id = format!("{:08x}", rand::random::<u32>());
        let spec = ClusterSpec {
            names: (1..=n).map(|i| format!("p{i}")).collect(),
            neighbours: (0..n).map(|i| vec![(i + 1) % n, (i + n - 1) % n]).collect(),
            image: "syftchaos/peer:latest".into(),
            key_seed: 1,
            anti_entropy_ms: 1000,
            flavor: "default".into(),
            disk_limit: None,
            quarantine_ms: None,
        };
        let t = Instant::now();
        let cluster = Cluster::provision(engine.clone(), &run_id, dir.path(), &spec)
            .await
            .expect("provision");
        let result = async {
            cluster.start_all().await?;
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(2))
                .build()?;
            cluster.wait_ready(&http, Duration::from_secs(300), |_, _| {}).await?;
            let up = t.elapsed();
            let history = Arc::new(History::create(&dir.path().join("history.jsonl"))?);
            let nemesis = Nemesis::new(engine.clone(), cluster.peers.clone(), history);
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
            anyhow::Ok((up, applied, healed))
        }
        .await;
        let t = Instant::now();
        cluster.teardown().await.expect("teardown");
        let down = t.elapsed();
        let (up, applied, healed) = result.expect("bench run");
        println!(
            "| {n} | {:.1} s | {:.2} s | {:.2} s | {:.1} s |",
            up.as_secs_f64(),
            applied.as_secs_f64(),
            healed.as_secs_f64(),
            down.as_secs_f64()
        );
    }
}
