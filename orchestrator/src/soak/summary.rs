//! A soak's windows folded into one result: each check's worst verdict over the windows (with the
//! first failing window's evidence), the windows' figures added up, recovery per window, and the
//! soak's own facts (windows judged, first failure, MTBF, the orchestrator's memory).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use crate::checker::{Check, Figures, Judgement, Recovery, Verdict};

/// One judged window, as `result.json`'s `windows[]` lists it (the whole evidence is in the
/// window's own `windows/<k>/window.json`).
#[derive(Clone, Debug, Serialize)]
pub struct WindowResult {
    pub window: u64,
    /// The window's span of the soak's schedule (ms from the soak's start).
    pub from_ms: u64,
    pub to_ms: u64,
    /// Run time (ms) when the window began and when it had been judged; the difference beyond the
    /// span is the heal, the convergence wait and the judging.
    pub started_ms: u64,
    pub judged_ms: u64,
    pub verdict: Verdict,
    /// Every check's verdict in this window.
    pub checks: BTreeMap<String, Verdict>,
    /// The checks that were not valid, with their one-line summaries.
    pub failures: Vec<String>,
    pub faults: usize,
    pub operations: usize,
    /// Time from the window's final heal to all peers holding one tree (`None`: never).
    pub recovered_after_ms: Option<u64>,
    /// Paths the peers disagreed on when the window began (0 when the previous window converged).
    pub began_divergent: usize,
    /// The orchestrator's resident memory when the window was judged (KiB, `VmRSS`).
    pub orchestrator_rss_kib: Option<u64>,
    /// The window's folder in the run folder (`windows/0003`).
    pub folder: String,
    /// The command that plays this window's schedule alone, on a fresh cluster.
    pub replay: String,
}

/// The soak's own facts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakFacts {
    pub duration_ms: u64,
    pub window_ms: u64,
    pub windows_planned: u64,
    pub windows_judged: u64,
    pub windows_failed: Vec<u64>,
    pub first_failure: Option<u64>,
    /// `--stop-on-failure` ended the soak at its first failed window.
    pub stopped_at_failure: bool,
    pub mtbf: Mtbf,
    /// The orchestrator's resident memory (KiB) when the soak began and when it ended.
    pub orchestrator_rss_kib: (Option<u64>, Option<u64>),
}

/// Crashes per peer-hour: the daemon's own (a peer found dead, or a crash line in its log, per
/// window) against the nemesis's planned restarts (kill, stop).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Mtbf {
    pub peer_hours: f64,
    pub crashes: u64,
    pub planned_restarts: u64,
    pub crashes_per_peer_hour: f64,
    /// Peer-hours per crash (`None`: no crash, so more than `peer_hours`).
    pub mtbf_hours: Option<f64>,
}

impl Mtbf {
    pub fn new(peer_hours: f64, crashes: u64, planned_restarts: u64) -> Mtbf {
        Mtbf {
            peer_hours,
            crashes,
            planned_restarts,
            crashes_per_peer_hour: if peer_hours > 0.0 {
                crashes as f64 / peer_hours
            } else {
                0.0
            },
            mtbf_hours: (crashes > 0).then(|| peer_hours / crashes as f64),
        }
    }
}

/// What `result.json` adds for a soak (flattened into it: `windows` and `soak`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakSummary {
    pub windows: Vec<WindowResult>,
    pub soak: SoakFacts,
}

/// One check folded over windows.
struct Fold {
    worst: Verdict,
    invalid: Vec<u64>,
    unknown: Vec<u64>,
    /// The first window where it was not valid, and that check.
    first: Option<(u64, Check)>,
    last: Check,
}

/// The windows' judgements as they come.
#[derive(Default)]
pub struct Folded {
    checks: BTreeMap<String, Fold>,
    order: Vec<String>,
    figures: Option<Figures>,
    recoveries: Vec<Recovery>,
    windows: u64,
}

impl Folded {
    /// Adds window `k`'s judgement; the window's heal-all recovery is kept as `w<k> heal-all` (the
    /// per-fault recoveries stay in the window's own file).
    pub fn add(&mut self, k: u64, j: &Judgement) {
        self.windows += 1;
        for c in &j.checks {
            if !self.checks.contains_key(&c.name) {
                self.order.push(c.name.clone());
            }
            let f = self.checks.entry(c.name.clone()).or_insert_with(|| Fold {
                worst: Verdict::Valid,
                invalid: Vec::new(),
                unknown: Vec::new(),
                first: None,
                last: c.clone(),
            });
            f.worst = f.worst.max(c.verdict);
            match c.verdict {
                Verdict::Invalid => f.invalid.push(k),
                Verdict::Unknown => f.unknown.push(k),
                Verdict::Valid => {}
            }
            if c.verdict != Verdict::Valid && f.first.is_none() {
                f.first = Some((k, c.clone()));
            }
            f.last = c.clone();
        }
        match &mut self.figures {
            Some(f) => f.merge(&j.figures),
            None => self.figures = Some(j.figures.clone()),
        }
        self.recoveries
            .extend(j.recoveries.iter().filter(|r| r.fault == "heal-all").map(|r| Recovery {
                fault: format!("w{k} heal-all"),
                ..r.clone()
            }));
    }

    /// The soak's checks: per check, its worst verdict over the windows judged.
    pub fn checks(&self) -> Vec<Check> {
        self.order
            .iter()
            .map(|name| {
                let f = &self.checks[name];
                let judged = self.windows;
                let summary = match &f.first {
                    None => format!("valid in all {judged} windows; last: {}", f.last.summary),
                    Some((k, c)) => format!(
                        "{} in {} of {judged} windows; first in window {k}: {}",
                        f.worst.as_str(),
                        f.invalid.len() + f.unknown.len(),
                        c.summary
                    ),
                };
                let shown = f.first.as_ref().map_or(&f.last, |(_, c)| c);
                Check {
                    name: name.clone(),
                    verdict: f.worst,
                    summary,
                    rests_on: shown.rests_on.clone(),
                    evidence: json!({
                        "windows_invalid": f.invalid,
                        "windows_unknown": f.unknown,
                        "window": f.first.as_ref().map(|(k, _)| *k),
                        "evidence": shown.evidence,
                    }),
                }
            })
            .collect()
    }

    pub fn figures(&self) -> Figures {
        self.figures.clone().unwrap_or_default()
    }

    pub fn recoveries(&self) -> Vec<Recovery> {
        self.recoveries.clone()
    }
}

/// The orchestrator's own resident memory (KiB), from `/proc/self/status`.
pub fn own_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(verdicts: &[(&str, Verdict)]) -> Judgement {
        Judgement {
            checks: verdicts
                .iter()
                .map(|(n, v)| Check {
                    name: n.to_string(),
                    verdict: *v,
                    summary: format!("{n} {}", v.as_str()),
                    rests_on: String::new(),
                    evidence: json!({"n": n}),
                })
                .collect(),
            recoveries: vec![Recovery {
                fault: "heal-all".into(),
                healed_at_ms: 5,
                converged_after_ms: Some(7),
            }],
            figures: Figures::default(),
        }
    }

    #[test]
    fn a_check_is_as_bad_as_its_worst_window_and_names_the_first() {
        let mut f = Folded::default();
        f.add(0, &judged(&[("a", Verdict::Valid), ("b", Verdict::Valid)]));
        f.add(1, &judged(&[("a", Verdict::Unknown), ("b", Verdict::Valid)]));
        f.add(2, &judged(&[("a", Verdict::Invalid), ("b", Verdict::Valid)]));
        let checks = f.checks();
        assert_eq!(checks[0].name, "a");
        assert_eq!(checks[0].verdict, Verdict::Invalid);
        assert_eq!(checks[0].evidence["window"], 1);
        assert_eq!(checks[0].evidence["windows_invalid"], json!([2]));
        assert!(
            checks[0].summary.contains("2 of 3 windows; first in window 1"),
            "{}",
            checks[0].summary
        );
        assert_eq!(checks[1].verdict, Verdict::Valid);
        assert!(checks[1].summary.starts_with("valid in all 3 windows"));
        let r = f.recoveries();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].fault, "w2 heal-all");
    }

    #[test]
    fn mtbf_is_peer_hours_per_crash() {
        let m = Mtbf::new(40.0, 2, 9);
        assert_eq!(m.mtbf_hours, Some(20.0));
        assert!((m.crashes_per_peer_hour - 0.05).abs() < 1e-9);
        assert_eq!(Mtbf::new(40.0, 0, 9).mtbf_hours, None);
        assert!(own_rss_kib().is_some_and(|k| k > 0));
    }
}
