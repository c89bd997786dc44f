//! The plan's success criteria (`expect.criteria`) as checks: each threshold set becomes one
//! `criterion-*` check over a figure the run already computes, so the seed's numbers (§9.2, §9.3:
//! recovery < 30 s, propagation p99 < 100 ms, bandwidth < 1.5 x the minimum, conflicts < 0.1 %, CPU
//! < 10 %, memory < 100 MB) are verdicts, not only figures. A threshold not set makes no check.
//!
//! A check is `invalid` when the figure exceeds its limit (the evidence names the figure, the limit
//! and the heal or peer), `unknown` when the figure could not be measured (no write reached another
//! peer, no counters, no steady state), and `valid` otherwise. Propagation quantiles are known only
//! to their resolution (`Propagation::resolution_ms`: 1 ms from inotify, 200 ms from the poll), so a
//! quantile over its limit by less than that is `unknown`, not `invalid`.

use serde_json::json;

use super::figures::{Figures, SteadyUse};
use super::{Check, Recovery, Verdict};
use crate::plan::Criteria;

/// One check per threshold set in `c`, in the order of [`Criteria`]'s fields.
pub fn criteria(c: &Criteria, recoveries: &[Recovery], f: &Figures) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(limit) = c.recovery {
        out.push(recovery(recoveries, limit.ms()));
    }
    let p = &f.propagation;
    // The seed's latency is "within same region": judged over the pairs no fault touched.
    for (q, limit, found, all) in [
        ("p50", c.propagation_p50, p.calm.p50_ms, p.p50_ms),
        ("p95", c.propagation_p95, p.calm.p95_ms, p.p95_ms),
        ("p99", c.propagation_p99, p.calm.p99_ms, p.p99_ms),
    ] {
        if let Some(limit) = limit {
            out.push(propagation(q, limit.ms(), (found, all), f));
        }
    }
    let t = &f.traffic;
    if let Some(limit) = c.bytes_ratio {
        let evidence = json!({
            "bytes_per_op": t.bytes_per_op, "min_bytes_per_op": t.min_bytes_per_op,
            "bytes_from": t.bytes_from, "ops": t.ops,
        });
        out.push(ratio("criterion-bytes", "bytes", limit, t.byte_overhead, evidence));
    }
    if let Some(limit) = c.messages_ratio {
        let evidence = json!({
            "messages_per_op": t.messages_per_op, "min_messages_per_op": t.min_messages_per_op, "ops": t.ops,
        });
        out.push(ratio(
            "criterion-messages",
            "messages",
            limit,
            t.message_overhead,
            evidence,
        ));
    }
    if let Some(limit) = c.conflict_pct {
        out.push(conflicts(limit, f));
    }
    if let Some(limit) = c.cpu_pct {
        out.push(per_peer(
            "criterion-cpu",
            &f.steady,
            |s| s.cpu_pct,
            limit,
            |v| format!("{v:.2} %"),
        ));
    }
    if let Some(limit) = c.memory {
        out.push(per_peer(
            "criterion-memory",
            &f.steady,
            |s| s.memory_bytes.map(|b| b as f64),
            limit as f64,
            |v| format!("{:.1} MiB", v / 1048576.0),
        ));
    }
    out
}

/// Every heal (a fault's stop, the final heal-all) followed by convergence within `limit_ms`.
fn recovery(recoveries: &[Recovery], limit_ms: u64) -> Check {
    let late: Vec<&Recovery> = recoveries
        .iter()
        .filter(|r| r.converged_after_ms.is_none_or(|t| t > limit_ms))
        .collect();
    let worst = recoveries.iter().filter_map(|r| r.converged_after_ms).max();
    let (verdict, summary) = match (recoveries.is_empty(), late.first()) {
        (true, _) => (Verdict::Unknown, "the run has no heal to judge".to_string()),
        (false, None) => (
            Verdict::Valid,
            format!(
                "all {} heals recovered within {limit_ms} ms (slowest {} ms)",
                recoveries.len(),
                worst.unwrap_or(0)
            ),
        ),
        (false, Some(first)) => (
            Verdict::Invalid,
            format!(
                "{} of {} heals recovered later than {limit_ms} ms; first: {} ({})",
                late.len(),
                recoveries.len(),
                first.fault,
                first
                    .converged_after_ms
                    .map_or("never converged".to_string(), |t| format!("{t} ms"))
            ),
        ),
    };
    Check {
        name: "criterion-recovery".into(),
        verdict,
        summary,
        rests_on: "recovery time per heal: the monitor's converged/diverged transitions after each fault's stop and the final heal".into(),
        evidence: json!({ "limit_ms": limit_ms, "late": late, "heals": recoveries.len(), "slowest_ms": worst }),
    }
}

/// `found`: the quantile over the pairs no fault touched, and over all pairs (evidence only).
fn propagation(q: &str, limit_ms: u64, (found, all): (Option<u64>, Option<u64>), f: &Figures) -> Check {
    let p = &f.propagation;
    let resolution = p.resolution_ms.unwrap_or(0);
    let samples = p.calm.samples;
    let (verdict, summary) = match found {
        None => (
            Verdict::Unknown,
            "no write reached another peer outside the faults: no latency to judge".to_string(),
        ),
        Some(v) if v <= limit_ms => (
            Verdict::Valid,
            format!(
                "propagation {q} {v} ms, within {limit_ms} ms ({samples} pairs outside faults, {resolution} ms resolution, {})",
                p.source
            ),
        ),
        Some(v) if v.saturating_sub(resolution) <= limit_ms => (
            Verdict::Unknown,
            format!(
                "propagation {q} {v} ms is over {limit_ms} ms by less than its resolution ({resolution} ms, {}): cannot tell",
                p.source
            ),
        ),
        Some(v) => (
            Verdict::Invalid,
            format!(
                "propagation {q} {v} ms, over the limit of {limit_ms} ms ({samples} pairs outside faults, {resolution} ms resolution, {})",
                p.source
            ),
        ),
    };
    Check {
        name: format!("criterion-propagation-{q}"),
        verdict,
        summary,
        rests_on: "propagation latency per (write, other peer) with no fault active from the write to its arrival: the inotify watcher's sightings, cross-checked by the monitor's polls".into(),
        evidence: json!({
            "quantile": q, "found_ms": found, "limit_ms": limit_ms, "resolution_ms": p.resolution_ms,
            "source": p.source, "samples": samples, "all_pairs_ms": all, "all_pairs": p.samples,
            "never_visible": p.never_visible,
            "from_inotify": p.from_inotify, "poll_only": p.poll_only, "poll_first": p.poll_first,
            "max_ms": p.max_ms,
        }),
    }
}

/// A figure that is a multiple of its theoretical minimum.
fn ratio(name: &str, what: &str, limit: f64, found: Option<f64>, mut evidence: serde_json::Value) -> Check {
    let (verdict, summary) = match found {
        None => (
            Verdict::Unknown,
            format!("{what} per operation were not measured (no counters, or no operation)"),
        ),
        Some(v) if v <= limit => (
            Verdict::Valid,
            format!("{what} per operation {v:.2} x the minimum, within {limit} x"),
        ),
        Some(v) => (
            Verdict::Invalid,
            format!("{what} per operation {v:.2} x the minimum, over the limit of {limit} x"),
        ),
    };
    evidence["found"] = json!(found.map(|v| (v * 1000.0).round() / 1000.0));
    evidence["limit"] = json!(limit);
    Check {
        name: name.into(),
        verdict,
        summary,
        rests_on: format!(
            "the peers' {what} counters at the last scrape against the minimum: each operation sent once to each other peer"
        ),
        evidence,
    }
}

fn conflicts(limit_pct: f64, f: &Figures) -> Check {
    let c = &f.conflicts;
    let pct = c.rate * 100.0;
    let (verdict, summary) = if c.writes == 0 {
        (Verdict::Unknown, "no content write: no conflict rate".to_string())
    } else if pct <= limit_pct {
        (
            Verdict::Valid,
            format!(
                "{} conflict copies for {} writes ({pct:.3} %), within {limit_pct} %",
                c.copies, c.writes
            ),
        )
    } else {
        (
            Verdict::Invalid,
            format!(
                "{} conflict copies for {} writes ({pct:.3} %), over the limit of {limit_pct} %",
                c.copies, c.writes
            ),
        )
    };
    Check {
        name: "criterion-conflicts".into(),
        verdict,
        summary,
        rests_on: "conflict copies in the final trees (the profile's pattern) per content write".into(),
        evidence: json!({ "copies": c.copies, "writes": c.writes, "found_pct": pct, "limit_pct": limit_pct }),
    }
}

/// A per-peer steady-state figure against one limit: invalid when any peer is over, unknown when
/// any peer (or every one) could not be measured.
fn per_peer(
    name: &str,
    steady: &[SteadyUse],
    figure: impl Fn(&SteadyUse) -> Option<f64>,
    limit: f64,
    show: impl Fn(f64) -> String,
) -> Check {
    let what = name.trim_start_matches("criterion-");
    let over: Vec<serde_json::Value> = steady
        .iter()
        .filter_map(|s| figure(s).filter(|v| *v > limit).map(|v| (s, v)))
        .map(|(s, v)| json!({"peer": s.peer, "found": show(v), "from_ms": s.from_ms, "to_ms": s.to_ms}))
        .collect();
    let unmeasured: Vec<&str> = steady
        .iter()
        .filter(|s| figure(s).is_none())
        .map(|s| s.peer.as_str())
        .collect();
    let highest = steady
        .iter()
        .filter_map(|s| figure(s).map(|v| (s.peer.as_str(), v)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let top = highest.map_or(String::new(), |(peer, v)| format!("highest {peer} ({})", show(v)));
    let (verdict, summary) = if !over.is_empty() {
        (
            Verdict::Invalid,
            format!("{} peers over {} at steady state; {top}", over.len(), show(limit)),
        )
    } else if steady.is_empty() {
        (
            Verdict::Unknown,
            "no steady state to judge (the trees never agreed, or no container samples)".to_string(),
        )
    } else if !unmeasured.is_empty() {
        (
            Verdict::Unknown,
            format!(
                "{what} not measured at steady state for {} (fewer than two samples over a second)",
                unmeasured.join(", ")
            ),
        )
    } else {
        (
            Verdict::Valid,
            format!(
                "all {} peers within {} at steady state; {top}",
                steady.len(),
                show(limit)
            ),
        )
    };
    let peers: Vec<serde_json::Value> = steady
        .iter()
        .map(|s| json!({"peer": s.peer, "found": figure(s).map(&show), "samples": s.samples, "from_ms": s.from_ms, "to_ms": s.to_ms}))
        .collect();
    Check {
        name: name.into(),
        verdict,
        summary,
        rests_on: format!(
            "each peer's container {what} (Docker stats, every second) from the moment the trees last agreed to the end"
        ),
        evidence: json!({ "limit": show(limit), "over": over, "unmeasured": unmeasured, "peers": peers }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::figures::{Conflicts, Propagation, Quantiles, Traffic};
    use crate::plan::Dur;

    fn rec(fault: &str, after: Option<u64>) -> Recovery {
        Recovery {
            fault: fault.into(),
            healed_at_ms: 1000,
            converged_after_ms: after,
        }
    }

    fn one(c: Criteria, recoveries: &[Recovery], f: &Figures) -> Check {
        let mut checks = criteria(&c, recoveries, f);
        assert_eq!(checks.len(), 1, "{checks:?}");
        checks.remove(0)
    }

    fn steady(peer: &str, cpu: Option<f64>, mem: Option<u64>) -> SteadyUse {
        SteadyUse {
            peer: peer.into(),
            from_ms: 10_000,
            to_ms: 15_000,
            samples: 6,
            cpu_pct: cpu,
            memory_bytes: mem,
        }
    }

    #[test]
    fn no_threshold_no_check() {
        assert!(criteria(&Criteria::default(), &[rec("heal-all", None)], &Figures::default()).is_empty());
    }

    #[test]
    fn recovery_judges_every_heal() {
        let c = Criteria {
            recovery: Some(Dur::from_ms(30_000)),
            ..Criteria::default()
        };
        let f = Figures::default();
        let ok = one(c, &[rec("cut#1", Some(4_000)), rec("heal-all", Some(0))], &f);
        assert_eq!((ok.name.as_str(), ok.verdict), ("criterion-recovery", Verdict::Valid));
        let late = one(c, &[rec("cut#1", Some(31_000)), rec("heal-all", Some(0))], &f);
        assert_eq!(late.verdict, Verdict::Invalid);
        assert_eq!(late.evidence["late"][0]["fault"], "cut#1", "{}", late.evidence);
        assert_eq!(late.evidence["limit_ms"], 30_000);
        let never = one(c, &[rec("heal-all", None)], &f);
        assert_eq!(never.verdict, Verdict::Invalid);
        assert!(never.summary.contains("never converged"), "{}", never.summary);
        assert_eq!(one(c, &[], &f).verdict, Verdict::Unknown);
    }

    #[test]
    fn propagation_quantiles_are_judged_to_their_resolution() {
        let c = Criteria {
            propagation_p99: Some(Dur::from_ms(100)),
            ..Criteria::default()
        };
        let figures = |p99: Option<u64>, source: &str, resolution: u64| Figures {
            propagation: Propagation {
                samples: 50,
                p99_ms: p99.map(|v| v + 5000),
                calm: Quantiles {
                    samples: 40,
                    p99_ms: p99,
                    ..Quantiles::default()
                },
                source: source.into(),
                resolution_ms: p99.map(|_| resolution),
                ..Propagation::default()
            },
            ..Figures::default()
        };
        let v = |f: &Figures| one(c, &[], f).verdict;
        assert_eq!(v(&figures(Some(80), "inotify", 1)), Verdict::Valid);
        assert_eq!(v(&figures(Some(140), "inotify", 1)), Verdict::Invalid);
        // From the poll, 140 ms may be 60 ms: the poll cannot tell.
        assert_eq!(v(&figures(Some(140), "poll", 200)), Verdict::Unknown);
        assert_eq!(v(&figures(Some(400), "poll", 200)), Verdict::Invalid);
        assert_eq!(v(&figures(None, "", 0)), Verdict::Unknown);
        let bad = one(c, &[], &figures(Some(140), "inotify", 1));
        assert_eq!(bad.name, "criterion-propagation-p99");
        assert_eq!(
            (
                &bad.evidence["found_ms"],
                &bad.evidence["limit_ms"],
                &bad.evidence["source"]
            ),
            (
                &serde_json::json!(140),
                &serde_json::json!(100),
                &serde_json::json!("inotify")
            )
        );
        // Each quantile set is a check of its own.
        let three = Criteria {
            propagation_p50: Some(Dur::from_ms(50)),
            propagation_p95: Some(Dur::from_ms(90)),
            ..c
        };
        let names: Vec<String> = criteria(&three, &[], &figures(Some(80), "inotify", 1))
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            [
                "criterion-propagation-p50",
                "criterion-propagation-p95",
                "criterion-propagation-p99"
            ]
        );
    }

    #[test]
    fn traffic_against_the_minimum() {
        let c = Criteria {
            bytes_ratio: Some(1.5),
            messages_ratio: Some(3.0),
            ..Criteria::default()
        };
        let f = |bytes: Option<f64>, messages: Option<f64>| Figures {
            traffic: Traffic {
                byte_overhead: bytes,
                message_overhead: messages,
                ..Traffic::default()
            },
            ..Figures::default()
        };
        let verdicts = |f: &Figures| -> Vec<(String, Verdict)> {
            criteria(&c, &[], f).into_iter().map(|c| (c.name, c.verdict)).collect()
        };
        assert_eq!(
            verdicts(&f(Some(1.2), Some(2.0))),
            [
                ("criterion-bytes".to_string(), Verdict::Valid),
                ("criterion-messages".to_string(), Verdict::Valid)
            ]
        );
        assert_eq!(verdicts(&f(Some(1.7), Some(2.0)))[0].1, Verdict::Invalid);
        assert_eq!(verdicts(&f(None, Some(4.0)))[0].1, Verdict::Unknown);
        assert_eq!(verdicts(&f(None, Some(4.0)))[1].1, Verdict::Invalid);
    }

    #[test]
    fn conflict_rate_in_percent() {
        let c = Criteria {
            conflict_pct: Some(0.1),
            ..Criteria::default()
        };
        let f = |copies: usize, writes: usize| Figures {
            conflicts: Conflicts {
                writes,
                copies,
                rate: if writes == 0 {
                    0.0
                } else {
                    copies as f64 / writes as f64
                },
                reported_by_peers: None,
            },
            ..Figures::default()
        };
        assert_eq!(one(c, &[], &f(1, 2000)).verdict, Verdict::Valid);
        let over = one(c, &[], &f(1, 100));
        assert_eq!(over.verdict, Verdict::Invalid);
        assert_eq!(over.evidence["found_pct"], 1.0);
        assert_eq!(one(c, &[], &f(0, 0)).verdict, Verdict::Unknown);
        let zero = Criteria {
            conflict_pct: Some(0.0),
            ..c
        };
        assert_eq!(one(zero, &[], &f(0, 10)).verdict, Verdict::Valid);
        assert_eq!(one(zero, &[], &f(1, 10)).verdict, Verdict::Invalid);
    }

    #[test]
    fn cpu_and_memory_per_peer_at_steady_state() {
        let c = Criteria {
            cpu_pct: Some(10.0),
            memory: Some(100 << 20),
            ..Criteria::default()
        };
        let f = |s: Vec<SteadyUse>| Figures {
            steady: s,
            ..Figures::default()
        };
        let checks = criteria(
            &c,
            &[],
            &f(vec![
                steady("p1", Some(2.5), Some(30 << 20)),
                steady("p2", Some(4.0), Some(40 << 20)),
            ]),
        );
        assert_eq!(
            checks.iter().map(|c| (c.name.as_str(), c.verdict)).collect::<Vec<_>>(),
            [("criterion-cpu", Verdict::Valid), ("criterion-memory", Verdict::Valid)]
        );
        let checks = criteria(
            &c,
            &[],
            &f(vec![
                steady("p1", Some(2.5), Some(30 << 20)),
                steady("p2", Some(35.0), Some(150 << 20)),
            ]),
        );
        assert!(checks.iter().all(|c| c.verdict == Verdict::Invalid), "{checks:?}");
        assert_eq!(checks[0].evidence["over"][0]["peer"], "p2");
        assert_eq!(checks[1].evidence["over"][0]["found"], "150.0 MiB");
        // A peer whose CPU could not be measured leaves the check unknown; no steady state at all too.
        let checks = criteria(&c, &[], &f(vec![steady("p1", None, Some(30 << 20))]));
        assert_eq!(
            (checks[0].verdict, checks[1].verdict),
            (Verdict::Unknown, Verdict::Valid)
        );
        assert_eq!(checks[0].evidence["unmeasured"][0], "p1");
        assert!(
            criteria(&c, &[], &f(vec![]))
                .iter()
                .all(|c| c.verdict == Verdict::Unknown)
        );
    }
}
