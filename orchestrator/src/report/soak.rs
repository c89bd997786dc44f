//! A soak's part of the report: one cell per window on a strip (its verdict), each window's recovery
//! after its heal, and a table of the windows with their failures and replay commands. Its charts
//! come from every window's samples, downsampled ([`series::downsample`]) so that an 8-hour soak's
//! report stays small.

use std::fmt::Write;

use super::series;
use super::svg::esc;
use crate::checker::Verdict;
use crate::soak::summary::SoakSummary;

/// At most this many points per peer and series in a soak's charts.
pub const MAX_POINTS: usize = 600;

/// The "Windows" section.
pub fn windows_section(s: &SoakSummary) -> String {
    let f = &s.soak;
    let mut h = String::new();
    let _ = write!(
        h,
        "<h2>Windows</h2><p class=\"meta\">A soak of {} ms of schedule in windows of {} ms: {} of {} judged, each healed and judged on its own{}{}. \
         Crashes: {} in {:.2} peer-hours ({}); planned restarts by the nemesis: {}. Orchestrator memory {} → {}.</p>",
        f.duration_ms,
        f.window_ms,
        f.windows_judged,
        f.windows_planned,
        match f.first_failure {
            Some(k) => format!("; first failure in window {k}"),
            None => String::new(),
        },
        if f.stopped_at_failure {
            " (stopped there: --stop-on-failure)"
        } else {
            ""
        },
        f.mtbf.crashes,
        f.mtbf.peer_hours,
        f.mtbf
            .mtbf_hours
            .map_or("no crash".to_string(), |m| format!("MTBF {m:.2} peer-hours")),
        f.mtbf.planned_restarts,
        kib(f.orchestrator_rss_kib.0),
        kib(f.orchestrator_rss_kib.1),
    );
    // The strip: one cell per window, coloured by verdict, its title says what happened.
    let n = s.windows.len().max(1);
    let _ = write!(
        h,
        "<svg viewBox=\"0 0 1000 28\" width=\"100%\" height=\"28\" role=\"img\" aria-label=\"window verdicts\">"
    );
    for (i, w) in s.windows.iter().enumerate() {
        let colour = match w.verdict {
            Verdict::Valid => "#2e9e4f",
            Verdict::Unknown => "#d59b00",
            Verdict::Invalid => "#c62828",
        };
        let (x, width) = (i as f64 * 1000.0 / n as f64, 1000.0 / n as f64);
        let _ = write!(
            h,
            "<rect x=\"{x:.2}\" y=\"2\" width=\"{:.2}\" height=\"24\" fill=\"{colour}\"><title>window {}: {}</title></rect>",
            (width - 0.5).max(0.5),
            w.window,
            w.verdict.as_str()
        );
    }
    h.push_str("</svg>");
    h.push_str(
        "<table><tr><th>window</th><th>schedule (s)</th><th>verdict</th><th>operations</th><th>faults</th>\
         <th>converged after the heal</th><th>what failed</th><th>replay this window</th></tr>",
    );
    for w in &s.windows {
        let v = w.verdict.as_str();
        let _ = write!(
            h,
            "<tr><td><a href=\"{folder}/window.json\">{k}</a></td><td>{:.0}–{:.0}</td><td class=\"{v}\">{v}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            w.from_ms as f64 / 1000.0,
            w.to_ms as f64 / 1000.0,
            w.operations,
            w.faults,
            w.recovered_after_ms.map_or("never".to_string(), |t| format!("{t} ms")),
            esc(&w.failures.join("; ")),
            if w.verdict == Verdict::Valid {
                String::new()
            } else {
                esc(&w.replay)
            },
            folder = esc(&w.folder),
            k = w.window,
        );
    }
    h.push_str("</table>");
    h
}

fn kib(v: Option<u64>) -> String {
    v.map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// Every window's samples as one set of series, downsampled to [`MAX_POINTS`].
pub fn series_of(run_dir: &std::path::Path, s: &SoakSummary) -> std::collections::BTreeMap<String, series::PeerSeries> {
    let samples = s.windows.iter().flat_map(|w| {
        crate::record::samples::read(&run_dir.join(&w.folder).join(crate::record::samples::METRICS_FILE))
    });
    let mut all = series::reduce(samples);
    for p in all.values_mut() {
        series::downsample(p, MAX_POINTS);
    }
    all
}
