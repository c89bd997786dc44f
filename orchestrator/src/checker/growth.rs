//! Growth over a long run (issue 12 item 4, the seed's "memory growth" and "resource leaks"): per
//! peer, the trend of the daemon's own memory (the container's anonymous memory: no page cache, which
//! grows with every file synced and says nothing of a leak) and of its task count (processes and
//! threads) and of the size of its state folder (its data folder outside the sync folder: index,
//! database, logs: the seed's "log growth over time"), after a warm-up, against limits.
//!
//! The trend is a least-squares slope over every sample after the warm-up, so one spike or one
//! garbage collection does not decide it; memory growth is that slope per hour as a share of the
//! peer's median memory. A peer that restarted (a kill fault) starts afresh: only the samples after
//! its last restart count. Runs shorter than the warm-up plus [`GrowthLimits::min_span_ms`] are not
//! judged (the check is absent): a minute says nothing about an hour.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Check, Verdict};
use crate::record::samples::Resource;

/// What counts as a leak; the defaults are issue 12's example (RSS growth < 5 % per hour after
/// warm-up) and a task count that may not climb steadily.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrowthLimits {
    /// Samples before this (from the peer's first, or its last restart) are not judged.
    pub warmup_ms: u64,
    /// At least this much judged time per peer, else the peer is not judged.
    pub min_span_ms: u64,
    /// Allowed memory growth, percent of the median per hour.
    pub memory_pct_per_hour: f64,
    /// Growth below this many bytes over the judged span is never a leak (allocator noise).
    pub memory_floor_bytes: f64,
    /// Allowed task growth per hour.
    pub tasks_per_hour: f64,
    /// Growth of at most this many tasks over the judged span is never a leak: thread pools (tokio's
    /// blocking pool) start a thread or two under load and let them go when idle.
    pub tasks_floor: u64,
    /// Allowed growth of the state folder (index, database, logs: the seed's "log growth over
    /// time"), bytes per hour.
    pub state_bytes_per_hour: f64,
}

impl Default for GrowthLimits {
    fn default() -> Self {
        GrowthLimits {
            warmup_ms: 120_000,
            min_span_ms: 300_000,
            memory_pct_per_hour: 5.0,
            memory_floor_bytes: 4.0 * 1024.0 * 1024.0,
            tasks_per_hour: 10.0,
            tasks_floor: 4,
            state_bytes_per_hour: 64.0 * 1024.0 * 1024.0,
        }
    }
}

impl From<&crate::plan::LeakLimits> for GrowthLimits {
    fn from(l: &crate::plan::LeakLimits) -> Self {
        GrowthLimits {
            warmup_ms: l.warmup.ms(),
            min_span_ms: l.min_span.ms(),
            memory_pct_per_hour: l.memory_pct_per_hour,
            tasks_per_hour: l.tasks_per_hour,
            ..GrowthLimits::default()
        }
    }
}

/// Least-squares slope of `points` (ms, value) in value per hour; `None` with fewer than 2 distinct times.
pub fn slope_per_hour(points: &[(u64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_t = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(t, v) in points {
        let dt = t as f64 - mean_t;
        num += dt * (v - mean_v);
        den += dt * dt;
    }
    (den > 0.0).then(|| num / den * 3_600_000.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The samples after the peer's last restart (memory and tasks both drop to a fresh process's) and
/// its warm-up. A restart shows as the task count or memory falling to under half of the sample before.
fn judged(samples: &[Resource], warmup_ms: u64) -> &[Resource] {
    let restart = samples
        .windows(2)
        .rposition(|w| w[1].tasks * 2 < w[0].tasks && w[1].anon_bytes * 2 < w[0].anon_bytes)
        .map_or(0, |i| i + 1);
    let tail = &samples[restart..];
    let Some(first) = tail.first() else { return tail };
    let from = tail
        .iter()
        .position(|s| s.t_ms >= first.t_ms + warmup_ms)
        .unwrap_or(tail.len());
    &tail[from..]
}

/// The `no-leak` check, or `None` when no peer ran long enough to be judged.
pub fn no_leak(resources: &BTreeMap<String, Vec<Resource>>, limits: &GrowthLimits) -> Option<Check> {
    let mut peers = Vec::new();
    let mut problems = Vec::new();
    for (peer, samples) in resources {
        // Samples of a stopped or paused container read 0: not the daemon's memory.
        let live: Vec<Resource> = samples.iter().copied().filter(|s| s.anon_bytes > 0).collect();
        let judged = judged(&live, limits.warmup_ms);
        let (Some(first), Some(last)) = (judged.first(), judged.last()) else {
            continue;
        };
        let span_ms = last.t_ms - first.t_ms;
        if span_ms < limits.min_span_ms {
            continue;
        }
        let mem: Vec<(u64, f64)> = judged.iter().map(|s| (s.t_ms, s.anon_bytes as f64)).collect();
        let tasks: Vec<(u64, f64)> = judged.iter().map(|s| (s.t_ms, s.tasks as f64)).collect();
        let mem_slope = slope_per_hour(&mem).unwrap_or(0.0);
        let level = median(mem.iter().map(|p| p.1).collect());
        let mem_pct = if level > 0.0 { mem_slope / level * 100.0 } else { 0.0 };
        let grown = mem_slope * span_ms as f64 / 3_600_000.0;
        let task_slope = slope_per_hour(&tasks).unwrap_or(0.0);
        let state: Vec<(u64, f64)> = judged
            .iter()
            .filter_map(|s| s.state_bytes.map(|b| (s.t_ms, b as f64)))
            .collect();
        let state_slope = slope_per_hour(&state);
        let summary = json!({
            "peer": peer,
            "from_ms": first.t_ms, "to_ms": last.t_ms,
            "memory_start": first.anon_bytes, "memory_end": last.anon_bytes,
            "memory_pct_per_hour": (mem_pct * 100.0).round() / 100.0,
            "tasks_start": first.tasks, "tasks_end": last.tasks,
            "tasks_per_hour": (task_slope * 100.0).round() / 100.0,
            "state_start": state.first().map(|p| p.1), "state_end": state.last().map(|p| p.1),
            "state_bytes_per_hour": state_slope.map(f64::round),
        });
        if let Some(slope) = state_slope
            && slope > limits.state_bytes_per_hour
        {
            problems.push(json!({
                "peer": peer, "series": "state folder",
                "expected": format!("at most {:.0} MiB per hour", limits.state_bytes_per_hour / 1048576.0),
                "found": format!("{:.1} MiB per hour", slope / 1048576.0),
                "series_points": downsample(&state, 20),
            }));
        }
        if mem_pct > limits.memory_pct_per_hour && grown > limits.memory_floor_bytes {
            problems.push(json!({
                "peer": peer, "series": "memory",
                "expected": format!("at most {} % of the median per hour", limits.memory_pct_per_hour),
                "found": format!("{mem_pct:.1} % per hour ({:.1} MiB over {:.0} s)", grown / 1048576.0, span_ms as f64 / 1000.0),
                "series_points": downsample(&mem, 20),
            }));
        }
        if task_slope > limits.tasks_per_hour && last.tasks > first.tasks + limits.tasks_floor {
            problems.push(json!({
                "peer": peer, "series": "tasks",
                "expected": format!("at most {} more tasks per hour", limits.tasks_per_hour),
                "found": format!("{task_slope:.1} per hour ({} -> {})", first.tasks, last.tasks),
                "series_points": downsample(&tasks, 20),
            }));
        }
        peers.push(summary);
    }
    if peers.is_empty() {
        return None;
    }
    let (verdict, summary) = if problems.is_empty() {
        (
            Verdict::Valid,
            format!(
                "{} peers judged: memory within {} %/h, tasks within {}/h after a {} s warm-up",
                peers.len(),
                limits.memory_pct_per_hour,
                limits.tasks_per_hour,
                limits.warmup_ms / 1000
            ),
        )
    } else {
        (
            Verdict::Invalid,
            format!("{} growing series (a leak; see evidence)", problems.len()),
        )
    };
    Some(Check {
        name: "no-leak".into(),
        rests_on: "the containers' anonymous memory and task count (Docker stats)".into(),
        verdict,
        summary,
        evidence: json!({ "peers": peers, "problems": problems }),
    })
}

/// At most `n` points, evenly picked (first and last kept), for evidence a person can read.
fn downsample(points: &[(u64, f64)], n: usize) -> Vec<(u64, f64)> {
    if points.len() <= n {
        return points.to_vec();
    }
    (0..n).map(|i| points[i * (points.len() - 1) / (n - 1)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(minutes: u64, mem: impl Fn(u64) -> u64, tasks: impl Fn(u64) -> u64) -> Vec<Resource> {
        (0..minutes * 6)
            .map(|i| {
                let t_ms = i * 10_000;
                Resource {
                    t_ms,
                    anon_bytes: mem(t_ms),
                    tasks: tasks(t_ms),
                    state_bytes: None,
                    cpu_ns: 0,
                }
            })
            .collect()
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn slopes_are_per_hour() {
        let s = slope_per_hour(&[(0, 1.0), (1_800_000, 2.0), (3_600_000, 3.0)]).unwrap();
        assert!((s - 2.0).abs() < 1e-9, "{s}");
        assert_eq!(slope_per_hour(&[(5, 1.0)]), None);
        assert_eq!(slope_per_hour(&[(5, 1.0), (5, 2.0)]), None);
    }

    #[test]
    fn a_leaking_peer_is_invalid_and_a_steady_one_valid() {
        let limits = GrowthLimits::default();
        // 30 MiB steady with noise; the leaker gains 1 MiB a minute (200 %/h of ~30 MiB).
        let steady = series(20, |t| 30 * MIB + (t / 10_000 % 3) * 200_000, |_| 12);
        let leaking = series(20, |t| 30 * MIB + t / 60_000 * MIB, |_| 12);
        let r = BTreeMap::from([("p1".to_string(), steady.clone()), ("p2".to_string(), leaking)]);
        let c = no_leak(&r, &limits).unwrap();
        assert_eq!(c.verdict, Verdict::Invalid, "{}", c.evidence);
        assert_eq!(c.evidence["problems"][0]["peer"], "p2");
        assert_eq!(c.evidence["problems"][0]["series"], "memory");
        assert_eq!(c.evidence["problems"].as_array().unwrap().len(), 1);
        let only_steady = BTreeMap::from([("p1".to_string(), steady)]);
        assert_eq!(no_leak(&only_steady, &limits).unwrap().verdict, Verdict::Valid);
    }

    #[test]
    fn threads_that_keep_coming_are_a_leak() {
        let r = BTreeMap::from([("p1".to_string(), series(20, |_| 30 * MIB, |t| 10 + t / 60_000))]);
        let c = no_leak(&r, &GrowthLimits::default()).unwrap();
        assert_eq!(c.verdict, Verdict::Invalid);
        assert_eq!(c.evidence["problems"][0]["series"], "tasks");
    }

    #[test]
    fn a_state_folder_that_keeps_growing_is_caught() {
        let mut s = series(20, |_| 30 * MIB, |_| 8);
        for r in &mut s {
            r.state_bytes = Some(MIB + r.t_ms / 60_000 * 4 * MIB);
        }
        let c = no_leak(
            &BTreeMap::from([("p1".to_string(), s.clone())]),
            &GrowthLimits::default(),
        )
        .unwrap();
        assert_eq!(c.verdict, Verdict::Invalid);
        assert_eq!(c.evidence["problems"][0]["series"], "state folder");
        for r in &mut s {
            r.state_bytes = Some(MIB + r.t_ms / 600);
        }
        let c = no_leak(&BTreeMap::from([("p1".to_string(), s)]), &GrowthLimits::default()).unwrap();
        assert_eq!(c.verdict, Verdict::Valid, "6 MB/h is within 64 MiB/h: {}", c.evidence);
    }

    #[test]
    fn a_thread_or_two_more_is_not_a_leak() {
        // Seen on an honest syncpeer: 7 tasks, then 8 for the rest of a one-minute run (80/h).
        let r = BTreeMap::from([(
            "p1".to_string(),
            series(20, |_| 30 * MIB, |t| if t < 600_000 { 7 } else { 9 }),
        )]);
        assert_eq!(no_leak(&r, &GrowthLimits::default()).unwrap().verdict, Verdict::Valid);
    }

    #[test]
    fn warm_up_short_runs_restarts_and_stopped_samples_are_not_judged() {
        let limits = GrowthLimits::default();
        // Growth during the warm-up only.
        let warming = series(20, |t| (20 + (t / 60_000).min(2) * 10) * MIB, |_| 12);
        let r = BTreeMap::from([("p1".to_string(), warming)]);
        assert_eq!(no_leak(&r, &limits).unwrap().verdict, Verdict::Valid);
        // Three minutes: not judged at all.
        let short = BTreeMap::from([("p1".to_string(), series(3, |t| 30 * MIB + t * 100, |_| 12))]);
        assert!(no_leak(&short, &limits).is_none());
        // A restart halfway: the climb before it does not count, nor the zero while it was down.
        let restarted = series(
            30,
            |t| {
                if t < 600_000 {
                    30 * MIB + t / 60_000 * MIB
                } else if t < 610_000 {
                    0
                } else {
                    10 * MIB
                }
            },
            |t| if t < 600_000 { 12 } else { 3 },
        );
        let r = BTreeMap::from([("p1".to_string(), restarted)]);
        let c = no_leak(&r, &limits).unwrap();
        assert_eq!(c.verdict, Verdict::Valid, "{}", c.evidence);
        assert!(c.evidence["peers"][0]["from_ms"].as_u64().unwrap() >= 600_000 + limits.warmup_ms);
    }
}
