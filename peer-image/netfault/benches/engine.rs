//! The userspace engine's added latency and CPU, between two network namespaces (needs root):
//! `cargo bench -p netfault --bench engine` (also run by `make bench`); copy the table into
//! docs/BENCHMARKS.md.

#[path = "../tests/it/util.rs"]
#[allow(dead_code)]
mod util;

use std::time::{Duration, Instant};

use util::*;

fn pct(xs: &[f64], p: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    let modes: [(&str, Option<&str>); 4] = [
        ("no fault (no rule)", None),
        (
            "pass-through (= 0 ms delay)",
            Some(r#"{"id":"b","engine":"userspace"}"#),
        ),
        ("delay 1 ms", Some(r#"{"id":"b","delay_ms":1}"#)),
        (
            "delay 10 ms jitter 2 ms",
            Some(r#"{"id":"b","delay_ms":10,"jitter_ms":2}"#),
        ),
    ];
    println!("| mode | median RTT ms | p99 RTT ms | daemon CPU at 2000 pps | at 5000 pps |");
    println!("|---|---|---|---|---|");
    for (name, spec) in modes {
        let pid = spec.map(|s| pair.apply(s)["pid"].as_u64().unwrap() as u32);
        // Latency: 2000 strict ping-pongs (blocking receive), one flow.
        let rtts = pingpong(&pair, 2000);
        assert_eq!(rtts.len(), 2000);
        // CPU: 3 s at each rate; the engine sees every probe once (egress only).
        let mut cpu = Vec::new();
        for pps in [2000u32, 5000] {
            let c0 = pid.map(cpu_seconds);
            let t0 = Instant::now();
            let n = pps * 3;
            let p = probe(&pair, n, Duration::from_secs(1) / pps, 1, Duration::from_millis(100));
            let wall = t0.elapsed().as_secs_f64();
            if p.unique() < n as usize {
                // A busy machine's echo thread can fall behind; report, do not fail a benchmark.
                eprintln!(
                    "{name} at {pps} pps: {} of {n} probes unanswered",
                    n as usize - p.unique()
                );
            }
            cpu.push(match (pid, c0) {
                (Some(pid), Some(c0)) => format!("{:.1}%", 100.0 * (cpu_seconds(pid) - c0) / wall),
                _ => "-".into(),
            });
        }
        println!(
            "| {name} | {:.3} | {:.3} | {} | {} |",
            median(&rtts),
            pct(&rtts, 0.99),
            cpu[0],
            cpu[1]
        );
        if spec.is_some() {
            pair.netfault_ok(&["clear"]);
        }
    }
    // Time to apply and to clear one fault (includes `ip netns exec` and process start-up).
    let (mut apply, mut clear) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let t = Instant::now();
        pair.apply(r#"{"id":"c","delay_ms":20,"loss_pct":1}"#);
        apply.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        pair.netfault_ok(&["clear", "--id", "c"]);
        clear.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!();
    println!(
        "apply (userspace engine) median {:.1} ms, max {:.1} ms; clear median {:.1} ms, max {:.1} ms",
        median(&apply),
        pct(&apply, 1.0),
        median(&clear),
        pct(&clear, 1.0)
    );
    // Bulk TCP through the engine: every segment crosses to userspace and back.
    println!();
    println!("| TCP stream A->B, 3 s | throughput |");
    println!("|---|---|");
    for (name, spec) in [
        ("no rule", None),
        ("pass-through engine", Some(r#"{"id":"t","engine":"userspace"}"#)),
    ] {
        if let Some(s) = spec {
            pair.apply(s);
        }
        let bps = tcp_throughput(&pair, 3.0, 0.5);
        println!("| {name} | {:.0} Mbit/s |", bps * 8.0 / 1e6);
        pair.netfault_ok(&["clear"]);
    }
}
