//! Per-peer time series for the report, reduced on the fly while streaming `metrics.jsonl` (a long
//! run's samples are never all in memory: each sample becomes four numbers per peer).

use std::collections::BTreeMap;
use std::path::Path;

use crate::profile::Role;
use crate::record::samples::{self, Sample, key_name};

/// Points are (run time in ms, value).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerSeries {
    /// Protocol messages sent per second, all kinds (from `/metrics` differences).
    pub messages_per_s: Vec<(u64, f64)>,
    /// Protocol bytes sent per second, all kinds.
    pub bytes_per_s: Vec<(u64, f64)>,
    /// CPU use in percent of one core (from the container's CPU time differences).
    pub cpu_pct: Vec<(u64, f64)>,
    /// Memory in MiB.
    pub mem_mib: Vec<(u64, f64)>,
    /// Bytes per second through the container's network interfaces, received plus sent (Docker's
    /// counters: everything on the wire, the protocol's bytes and TCP/IP overhead).
    pub net_bytes_per_s: Vec<(u64, f64)>,
}

#[derive(Default)]
struct Last {
    metrics: Option<(u64, f64, f64)>,
    cpu: Option<(u64, u64)>,
    net: Option<(u64, u64)>,
}

/// A rate between two cumulative readings; a counter that went down (a restarted peer) restarts
/// from zero.
fn rate(prev: (u64, f64), now: (u64, f64)) -> Option<f64> {
    let dt = now.0.checked_sub(prev.0).filter(|d| *d > 0)? as f64 / 1000.0;
    let dv = if now.1 >= prev.1 { now.1 - prev.1 } else { now.1 };
    Some(dv / dt)
}

/// Reads `metrics.jsonl` into per-peer series (empty when the file is missing).
pub fn read(path: &Path) -> BTreeMap<String, PeerSeries> {
    reduce(samples::read(path))
}

pub fn reduce(samples: impl Iterator<Item = Sample>) -> BTreeMap<String, PeerSeries> {
    let mut out: BTreeMap<String, PeerSeries> = BTreeMap::new();
    let mut last: BTreeMap<String, Last> = BTreeMap::new();
    for s in samples {
        match s {
            Sample::Roles { t_ms, peer, values } => {
                // Every message and byte the daemon counts, changes and background alike; a daemon
                // without metrics of its own has none (its network line comes from Docker below).
                let (mut msgs, mut bytes, mut any) = (0.0, 0.0, false);
                for (k, v) in &values {
                    match Role::parse(key_name(k)) {
                        Some(Role::MessagesSent | Role::BackgroundMessagesSent) => (msgs, any) = (msgs + v, true),
                        Some(Role::BytesSent | Role::BackgroundBytesSent) => bytes += v,
                        _ => {}
                    }
                }
                if !any {
                    continue;
                }
                let l = last.entry(peer.clone()).or_default();
                let series = out.entry(peer).or_default();
                if let Some((t0, m0, b0)) = l.metrics {
                    if let Some(r) = rate((t0, m0), (t_ms, msgs)) {
                        series.messages_per_s.push((t_ms, r));
                    }
                    if let Some(r) = rate((t0, b0), (t_ms, bytes)) {
                        series.bytes_per_s.push((t_ms, r));
                    }
                }
                l.metrics = Some((t_ms, msgs, bytes));
            }
            Sample::Docker { t_ms, peer, stats } => {
                let l = last.entry(peer.clone()).or_default();
                let series = out.entry(peer).or_default();
                if let Some((t0, c0)) = l.cpu
                    && let Some(r) = rate((t0, c0 as f64), (t_ms, stats.cpu_ns as f64))
                {
                    // ns of CPU per s of run time / 1e9 = cores; x 100 = percent of one core.
                    series.cpu_pct.push((t_ms, r / 1e7));
                }
                l.cpu = Some((t_ms, stats.cpu_ns));
                let net = stats.rx_bytes + stats.tx_bytes;
                if let Some((t0, n0)) = l.net
                    && let Some(r) = rate((t0, n0 as f64), (t_ms, net as f64))
                {
                    series.net_bytes_per_s.push((t_ms, r));
                }
                l.net = Some((t_ms, net));
                series.mem_mib.push((t_ms, stats.mem_bytes as f64 / (1024.0 * 1024.0)));
            }
            Sample::Metrics { .. } | Sample::MetricsError { .. } | Sample::State { .. } => {}
        }
    }
    out
}

/// Shrinks every series of `s` to at most `max` points: consecutive points are averaged in equal
/// groups (a soak's hours of samples drawn in a chart a person reads; the peaks stay in the raw files).
pub fn downsample(s: &mut PeerSeries, max: usize) {
    for v in [
        &mut s.messages_per_s,
        &mut s.bytes_per_s,
        &mut s.cpu_pct,
        &mut s.mem_mib,
        &mut s.net_bytes_per_s,
    ] {
        if v.len() <= max || max == 0 {
            continue;
        }
        let group = v.len().div_ceil(max);
        *v = v
            .chunks(group)
            .map(|c| {
                let t = c[c.len() / 2].0;
                (t, c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64)
            })
            .collect();
    }
}

/// One chart's peers as a band: at each of `buckets` equal slices of run time, the minimum, median,
/// 90th percentile and maximum across peers of each peer's mean in that slice; and the peers with the
/// highest peaks, named (a hundred overlapping lines are unreadable; a band and its outliers are not).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Band {
    pub min: Vec<(u64, f64)>,
    pub median: Vec<(u64, f64)>,
    pub p90: Vec<(u64, f64)>,
    pub max: Vec<(u64, f64)>,
    /// (peer, its highest point), highest first, at most `outliers`.
    pub outliers: Vec<(String, f64)>,
}

pub fn band<'a>(
    series: impl Iterator<Item = (&'a str, &'a [(u64, f64)])>,
    end_ms: u64,
    buckets: usize,
    outliers: usize,
) -> Band {
    let buckets = buckets.max(1);
    let width = (end_ms / buckets as u64).max(1);
    // Per slice, each peer's mean there.
    let mut slices: Vec<Vec<f64>> = vec![Vec::new(); buckets];
    let mut peaks: Vec<(String, f64)> = Vec::new();
    for (peer, points) in series {
        let mut sums = vec![(0.0, 0u32); buckets];
        let mut peak: Option<f64> = None;
        for &(t, v) in points {
            let b = ((t / width) as usize).min(buckets - 1);
            sums[b].0 += v;
            sums[b].1 += 1;
            peak = Some(peak.map_or(v, |p: f64| p.max(v)));
        }
        for (slice, (sum, n)) in slices.iter_mut().zip(sums) {
            if n > 0 {
                slice.push(sum / f64::from(n));
            }
        }
        if let Some(p) = peak {
            peaks.push((peer.to_string(), p));
        }
    }
    let mut b = Band::default();
    for (i, slice) in slices.iter_mut().enumerate() {
        if slice.is_empty() {
            continue;
        }
        slice.sort_by(f64::total_cmp);
        let t = i as u64 * width + width / 2;
        let at = |q: f64| slice[((q * slice.len() as f64).ceil() as usize).clamp(1, slice.len()) - 1];
        b.min.push((t, slice[0]));
        b.median.push((t, at(0.5)));
        b.p90.push((t, at(0.9)));
        b.max.push((t, slice[slice.len() - 1]));
    }
    peaks.sort_by(|a, c| c.1.total_cmp(&a.1).then_with(|| a.0.cmp(&c.0)));
    peaks.truncate(outliers);
    b.outliers = peaks;
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::ContainerStats;

    #[test]
    fn rates_come_from_differences_and_survive_a_restart() {
        let m = |t_ms, v: f64| Sample::Roles {
            t_ms,
            peer: "p1".into(),
            values: BTreeMap::from([
                ("messages_sent{kind=\"blob\",peer=\"p2\"}".to_string(), v),
                ("bytes_sent{kind=\"blob\",peer=\"p2\"}".to_string(), v * 100.0),
            ]),
        };
        let d = |t_ms, cpu_ns| Sample::Docker {
            t_ms,
            peer: "p1".into(),
            stats: ContainerStats {
                cpu_ns,
                mem_bytes: 2 * 1024 * 1024,
                rx_bytes: cpu_ns / 1000,
                tx_bytes: 0,
                ..Default::default()
            },
        };
        let s = reduce(vec![m(0, 0.0), d(0, 0), m(1000, 10.0), d(1000, 500_000_000), m(2000, 4.0)].into_iter());
        let p = &s["p1"];
        assert_eq!(p.messages_per_s, vec![(1000, 10.0), (2000, 4.0)]);
        assert_eq!(p.bytes_per_s[0], (1000, 1000.0));
        assert_eq!(p.cpu_pct, vec![(1000, 50.0)]);
        assert_eq!(p.mem_mib, vec![(0, 2.0), (1000, 2.0)]);
        assert_eq!(p.net_bytes_per_s, vec![(1000, 500_000.0)]);
    }

    #[test]
    fn a_band_is_min_median_p90_max_across_peers_and_names_the_highest() {
        let flat: Vec<(u64, f64)> = (0..10).map(|i| (i * 100, 1.0)).collect();
        let mut hot = flat.clone();
        hot[9].1 = 50.0;
        let mut series: Vec<(String, Vec<(u64, f64)>)> = (0..20).map(|i| (format!("p{i}"), flat.clone())).collect();
        series.push(("p99".into(), hot));
        let b = band(series.iter().map(|(p, v)| (p.as_str(), v.as_slice())), 1000, 5, 2);
        assert_eq!(b.min.len(), 5);
        assert!(b.min.iter().chain(&b.median).chain(&b.p90).all(|p| p.1 == 1.0), "{b:?}");
        assert_eq!(b.max[4].1, 25.5, "the hot peer's mean in the last slice");
        assert_eq!(b.outliers[0], ("p99".to_string(), 50.0));
        assert_eq!(b.outliers.len(), 2);
    }

    #[test]
    fn downsampling_averages_groups_and_keeps_short_series() {
        let mut s = PeerSeries {
            cpu_pct: (0..1000).map(|i| (i * 1000, (i % 2) as f64)).collect(),
            mem_mib: vec![(0, 1.0), (1000, 2.0)],
            ..Default::default()
        };
        downsample(&mut s, 100);
        assert_eq!(s.cpu_pct.len(), 100);
        assert!(
            s.cpu_pct.iter().all(|p| (p.1 - 0.5).abs() < 1e-9),
            "{:?}",
            &s.cpu_pct[..3]
        );
        assert_eq!(s.mem_mib, vec![(0, 1.0), (1000, 2.0)]);
    }
}
