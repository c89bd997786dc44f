//! `cargo bench -p syncpeer --bench propagation`: real `syncpeer` processes on loopback.
//!
//! Measures, for 2 and then 10 peers (full mesh): one-hop propagation latency of a small file
//! (p50/p99), 10k small files (time, bytes on the wire / payload bytes, peak RSS per peer), and
//! one large file to every other peer (2 and 10 peers: the seed's "1 GB across 10 peers") against
//! the disk's own limit, `cp` of the same file once per receiver on the same disk, then `sync`.
//! Knobs: `BENCH_SAMPLES` (200), `BENCH_FILES` (10000), `BENCH_FILE_BYTES` (1024),
//! `BENCH_BIG_MB` (1024), `BENCH_PEERS` ("2,10"), `BENCH_BIG_PEERS` ("2,10"), `BENCH_BIG_ROUNDS` (3).

#[allow(dead_code)]
#[path = "../tests/it/util.rs"]
mod util;

use std::time::{Duration, Instant};

use util::{Cluster, Peer};

fn env_or(name: &str, d: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn mesh(n: usize) -> Vec<(usize, usize)> {
    let mut e = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            e.push((a, b));
        }
    }
    e
}

/// Polls `cond` every `every` (file checks are cheap; status polls load the daemons).
fn wait(what: &str, limit: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "bench timed out waiting for {what}");
        std::thread::sleep(every);
    }
    start.elapsed()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn wire_bytes(c: &Cluster) -> f64 {
    c.peers
        .iter()
        .map(|p| p.metrics().sum("syncpeer_bytes_sent_total", &[]))
        .sum()
}

const KINDS: [&str; 4] = ["summary", "index", "blob", "hint"];

/// Bytes sent by all peers, per message kind.
fn wire_by_kind(c: &Cluster) -> Vec<f64> {
    KINDS
        .iter()
        .map(|k| {
            c.peers
                .iter()
                .map(|p| p.metrics().sum("syncpeer_bytes_sent_total", &[("kind", k)]))
                .sum()
        })
        .collect()
}

fn peak_rss_kib(p: &Peer) -> u64 {
    proc_kib(p, "VmHWM:")
}

/// User + system CPU seconds of a peer so far.
fn cpu_s(p: &Peer) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{}/stat", p.pid())).unwrap_or_default();
    let after = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn proc_kib(p: &Peer, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn latency(c: &Cluster, samples: u64) {
    let n = c.peers.len();
    let mut one_hop = Vec::new();
    let mut all = Vec::new();
    for i in 0..samples {
        let rel = format!("lat/{i}.txt");
        let body = format!("sample {i}");
        let t0 = Instant::now();
        c.peers[0].write(&rel, body.as_bytes());
        let mut first = None;
        let mut done = vec![false; n];
        done[0] = true;
        wait(
            "latency sample",
            Duration::from_secs(30),
            Duration::from_micros(200),
            || {
                for (j, p) in c.peers.iter().enumerate() {
                    if !done[j] && p.read(&rel).as_deref() == Some(body.as_bytes()) {
                        done[j] = true;
                        if j == 1 {
                            first = Some(t0.elapsed());
                        }
                    }
                }
                done.iter().all(|d| *d)
            },
        );
        one_hop.push(first.unwrap().as_secs_f64() * 1000.0);
        all.push(t0.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(20));
    }
    one_hop.sort_by(f64::total_cmp);
    all.sort_by(f64::total_cmp);
    println!(
        "| {n} peers | small-file latency p0->p1 (ms) | p50 {:.1} | p99 {:.1} | max {:.1} |",
        pct(&one_hop, 0.5),
        pct(&one_hop, 0.99),
        one_hop[one_hop.len() - 1]
    );
    println!(
        "| {n} peers | small-file latency p0->all (ms) | p50 {:.1} | p99 {:.1} | max {:.1} |",
        pct(&all, 0.5),
        pct(&all, 0.99),
        all[all.len() - 1]
    );
}

fn many_files(c: &Cluster, files: u64, size: u64) {
    let n = c.peers.len();
    c.wait_converged();
    let w0 = wire_bytes(c);
    let k0 = wire_by_kind(c);
    let cpu0: f64 = c.peers.iter().map(cpu_s).sum();
    let target = c.peers[0].status().unwrap()["entries"].as_i64().unwrap() + files as i64;
    let t0 = Instant::now();
    for i in 0..files {
        let mut body = format!("file {i} ").into_bytes();
        body.resize(size as usize, b'x');
        c.peers[0].write(&format!("many/{:02}/{i:05}.txt", i % 100), &body);
    }
    let written = t0.elapsed();
    wait(
        "10k files everywhere",
        Duration::from_secs(900),
        Duration::from_millis(20),
        || {
            c.peers
                .iter()
                .all(|p| p.status().is_some_and(|s| s["entries"].as_i64() == Some(target)))
                && c.converged()
        },
    );
    let took = t0.elapsed();
    // Let the last hints and summaries of this phase finish.
    std::thread::sleep(Duration::from_millis(1500));
    let wire = wire_bytes(c) - w0;
    let payload = (files * size) as f64 * (n - 1) as f64;
    let kinds: Vec<String> = wire_by_kind(c)
        .iter()
        .zip(&k0)
        .zip(KINDS)
        .map(|((b, a), k)| format!("{k} {:.3}", (b - a) / payload))
        .collect();
    let rss: Vec<u64> = c.peers.iter().map(peak_rss_kib).collect();
    let now: Vec<u64> = c.peers.iter().map(|p| proc_kib(p, "VmRSS:")).collect();
    let cpu = c.peers.iter().map(cpu_s).sum::<f64>() - cpu0;
    let redundant: f64 = c
        .peers
        .iter()
        .map(|p| p.metrics().sum("syncpeer_versions_redundant_total", &[]))
        .sum();
    println!(
        "| {n} peers | {files} files of {size} B | written in {:.2} s | on all peers after {:.2} s | wire/payload {:.3} ({}) | peak RSS per peer max {:.1} MiB, mean {:.1} MiB | RSS after, max {:.1} MiB | CPU of all peers {:.1} s | redundant versions received {:.0} |",
        written.as_secs_f64(),
        took.as_secs_f64(),
        wire / payload,
        kinds.join(", "),
        *rss.iter().max().unwrap() as f64 / 1024.0,
        rss.iter().sum::<u64>() as f64 / rss.len() as f64 / 1024.0,
        *now.iter().max().unwrap() as f64 / 1024.0,
        cpu,
        redundant,
    );
}

/// Writes `mb` MiB of seeded pseudo-random bytes (`round` picks the seed) to `path`, then `sync`s
/// so that what writing it dirtied is not paid for by what is timed next.
fn write_big(path: &std::path::Path, mb: u64, round: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ round.wrapping_mul(0xA24B_AED4_963E_E407);
    for _ in 0..mb {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    drop(f);
    let _ = std::process::Command::new("sync").status();
}

/// One `mb` MiB file written on p0 of an `n`-peer full mesh, until all `n - 1` others hold it,
/// against the disk's own limit: the same bytes copied `n - 1` times on the same disk, then `sync`
/// (syncpeer fsyncs before it commits). `rounds` pairs, side by side (limit, then syncpeer), each
/// file deleted everywhere before the next; medians of both. A bare `cp` is shown once for 2
/// peers only: beyond the page cache's dirty limit it is flushing too, so it means nothing alone.
fn big_file(mb: u64, n: usize, rounds: u64) {
    let mut c = Cluster::new(n, &mesh(n));
    c.interval_ms = 1000;
    c.start_all();
    let scratch = c.peers[0].root.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let src = scratch.join("big.bin");
    let size = mb << 20;
    let copies: Vec<String> = (1..n)
        .map(|i| scratch.join(format!("cp{i}.bin")).display().to_string())
        .collect();
    let cp_all = |then_sync: bool| {
        let mut script: Vec<String> = copies.iter().map(|d| format!("cp {} {d}", src.display())).collect();
        if then_sync {
            script.push("sync".into());
        }
        let t = Instant::now();
        assert!(
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script.join(" && "))
                .status()
                .unwrap()
                .success()
        );
        let took = t.elapsed().as_secs_f64();
        for d in &copies {
            let _ = std::fs::remove_file(d);
        }
        let _ = std::process::Command::new("sync").status();
        took
    };
    let (mut limit, mut ours, mut wire) = (Vec::new(), Vec::new(), 0.0);
    for round in 0..rounds {
        write_big(&src, mb, round);
        if n == 2 && round == 0 {
            println!("| 2 peers | bare cp of {mb} MiB (no sync) | {:.2} s |", cp_all(false));
        }
        limit.push(cp_all(true));
        let name = format!("big-{round}.bin");
        let w0 = wire_bytes(&c);
        let t = Instant::now();
        // A rename into the folder: the file is complete when the daemon first sees it.
        std::fs::rename(&src, c.peers[0].sync_dir().join(&name)).unwrap();
        wait("big file", Duration::from_secs(1800), Duration::from_millis(5), || {
            c.peers[1..]
                .iter()
                .all(|p| std::fs::metadata(p.sync_dir().join(&name)).is_ok_and(|m| m.len() == size))
                && c.converged()
        });
        ours.push(t.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_millis(1500));
        wire += wire_bytes(&c) - w0;
        std::fs::remove_file(c.peers[0].sync_dir().join(&name)).unwrap();
        wait(
            "big file deleted",
            Duration::from_secs(600),
            Duration::from_millis(20),
            || c.peers.iter().all(|p| !p.sync_dir().join(&name).exists()) && c.converged(),
        );
        let _ = std::process::Command::new("sync").status();
        println!(
            "| {n} peers | round {round}: {}x cp + sync {:.2} s | syncpeer to all {:.2} s | ratio {:.2} |",
            n - 1,
            limit[round as usize],
            ours[round as usize],
            ours[round as usize] / limit[round as usize]
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let ratios: Vec<f64> = ours.iter().zip(&limit).map(|(a, b)| a / b).collect();
    let (m_limit, m_ours, m_ratio) = (median(&mut limit), median(&mut ours), median(&mut ratios.clone()));
    println!(
        "| {n} peers | one {mb} MiB file to {} others, median of {rounds} | syncpeer **{m_ours:.2} s** | {}x cp + sync {m_limit:.2} s | ratio of medians {:.2}, median ratio **{m_ratio:.2}** | wire/payload {:.3} | peak RSS max {:.1} MiB |",
        n - 1,
        n - 1,
        m_ours / m_limit,
        wire / (size as f64 * (n - 1) as f64 * rounds as f64),
        c.peers.iter().map(peak_rss_kib).max().unwrap() as f64 / 1024.0
    );
}

/// Peer counts from a comma-separated knob (default "2,10").
fn peer_counts(knob: &str) -> Vec<usize> {
    std::env::var(knob)
        .unwrap_or_else(|_| "2,10".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n >= 2)
        .collect()
}

fn main() {
    let samples = env_or("BENCH_SAMPLES", 200);
    let files = env_or("BENCH_FILES", 10_000);
    let size = env_or("BENCH_FILE_BYTES", 1024);
    let mb = env_or("BENCH_BIG_MB", 1024);
    let peers = peer_counts("BENCH_PEERS");
    println!(
        "syncpeer bench: {} cores, binary {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        util::BIN
    );
    for &n in &peers {
        let mut c = Cluster::new(n, &mesh(n));
        c.interval_ms = 1000;
        c.start_all();
        let idle: Vec<u64> = c.peers.iter().map(|p| proc_kib(p, "VmRSS:")).collect();
        println!(
            "| {n} peers | idle RSS per peer | max {:.1} MiB |",
            *idle.iter().max().unwrap() as f64 / 1024.0
        );
        latency(&c, samples);
        if files > 0 {
            many_files(&c, files, size);
        }
    }
    if mb > 0 {
        for n in peer_counts("BENCH_BIG_PEERS") {
            big_file(mb, n, env_or("BENCH_BIG_ROUNDS", 3));
        }
    }
}
