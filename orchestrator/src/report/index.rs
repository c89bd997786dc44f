//! `reports/index.html`: every run under `reports/`, grouped by plan and daemon under test (peer
//! profile), so a nightly job's trends compare like with like. Per group: the verdicts over time,
//! recovery-time quantiles, propagation latency and the peers' peak memory, as a chart across runs
//! (oldest left) and a table (newest first). Run folders without `result.json` are listed too: as
//! `interrupted` (killed, crashed or failed before judging; the last line of their `chaos.log` says
//! why) or `in progress` (their orchestrator is alive). Regenerated after every run and by
//! `chaos prune`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::svg::{self, esc};
use crate::record::run_folder::{self, parse_run_name};

/// What the index shows of a run folder without `result.json`.
pub const INTERRUPTED: &str = "interrupted";
pub const IN_PROGRESS: &str = "in progress";

/// What the index shows of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunRow {
    pub folder: String,
    pub plan: String,
    pub flavor: String,
    /// The daemon under test (runs from before profiles: `syncpeer`).
    pub profile: String,
    /// `valid`, `invalid`, `unknown`, or [`INTERRUPTED`] / [`IN_PROGRESS`] without `result.json`.
    pub verdict: String,
    pub started_at: String,
    pub duration_ms: u64,
    /// The final heal -> converged time.
    pub final_recovery_ms: Option<u64>,
    /// Nearest-rank quantiles of the recovery times of every heal in the run, and the slowest.
    pub p50_recovery_ms: Option<u64>,
    pub p95_recovery_ms: Option<u64>,
    pub max_recovery_ms: Option<u64>,
    pub p50_propagation_ms: Option<u64>,
    pub p95_propagation_ms: Option<u64>,
    pub p99_propagation_ms: Option<u64>,
    /// The largest memory any peer's container used (Docker stats, MiB), when metrics were scraped.
    pub peak_memory_mib: Option<f64>,
    /// Why an interrupted run ended, as far as its `chaos.log` says (its last line).
    pub reason: Option<String>,
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn row(folder: &str, v: &Value) -> RunRow {
    let recs = v["recovery"].as_array().cloned().unwrap_or_default();
    let after = |r: &Value| r["converged_after_ms"].as_u64();
    let mut heals: Vec<u64> = recs.iter().filter_map(after).collect();
    heals.sort_unstable();
    let prop = &v["figures"]["propagation"];
    RunRow {
        folder: folder.to_string(),
        plan: v["plan"].as_str().unwrap_or("?").to_string(),
        flavor: v["flavor"].as_str().unwrap_or("?").to_string(),
        profile: v["profile"].as_str().unwrap_or("syncpeer").to_string(),
        verdict: v["verdict"].as_str().unwrap_or("unknown").to_string(),
        started_at: v["started_at"].as_str().unwrap_or("").to_string(),
        duration_ms: v["duration_ms"].as_u64().unwrap_or(0),
        // A soak's windows each end with one (`w<k> heal-all`): its last is the soak's final heal.
        final_recovery_ms: recs
            .iter()
            .rev()
            .find(|r| {
                r["fault"]
                    .as_str()
                    .is_some_and(|f| f == "heal-all" || f.ends_with(" heal-all"))
            })
            .and_then(after),
        p50_recovery_ms: quantile(&heals, 0.5),
        p95_recovery_ms: quantile(&heals, 0.95),
        max_recovery_ms: heals.last().copied(),
        p50_propagation_ms: prop["p50_ms"].as_u64(),
        p95_propagation_ms: prop["p95_ms"].as_u64(),
        p99_propagation_ms: prop["p99_ms"].as_u64(),
        peak_memory_mib: None,
        reason: None,
    }
}

/// `20261124T050102Z` as `2026-11-24T05:01:02Z` (what `result.json`'s `started_at` looks like).
fn stamp_time(stamp: &str) -> String {
    let s = stamp.as_bytes();
    let part = |a: usize, b: usize| String::from_utf8_lossy(&s[a..b]).into_owned();
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        part(0, 4),
        part(4, 6),
        part(6, 8),
        part(9, 11),
        part(11, 13),
        part(13, 15)
    )
}

/// The row of a run folder without `result.json`, from its name, recipe and log; `None` when it is
/// not a run folder.
fn unfinished_row(dir: &Path, folder: &str) -> Option<RunRow> {
    let (plan, stamp, _) = parse_run_name(folder)?;
    let recipe: Option<Value> = std::fs::read(dir.join(crate::record::recipe::RECIPE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if recipe.is_none() && !dir.join("history.jsonl").is_file() {
        return None;
    }
    let recipe = recipe.unwrap_or_default();
    let profile = recipe["profile"]
        .as_str()
        .and_then(|p| Path::new(p).file_name())
        .map_or("?".to_string(), |n| n.to_string_lossy().into_owned());
    let log = std::fs::read_to_string(dir.join(crate::console::LOG_FILE)).unwrap_or_default();
    let reason = log
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect());
    let live = run_folder::orchestrator_alive(dir);
    Some(RunRow {
        folder: folder.to_string(),
        plan: plan.to_string(),
        flavor: recipe["flavor"].as_str().unwrap_or("?").to_string(),
        profile,
        verdict: if live { IN_PROGRESS } else { INTERRUPTED }.to_string(),
        started_at: stamp_time(stamp),
        reason,
        ..RunRow::default()
    })
}

/// The largest memory any peer used in a run, from its `metrics.jsonl`.
fn peak_memory(dir: &Path) -> Option<f64> {
    let path = dir.join(crate::record::samples::METRICS_FILE);
    if !path.is_file() {
        return None;
    }
    super::series::read(&path)
        .values()
        .flat_map(|s| s.mem_mib.iter().map(|p| p.1))
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
}

/// Every run folder under `reports`, oldest first: runs with a readable `result.json`, and run
/// folders without one (interrupted or in progress).
pub fn runs(reports: &Path) -> Vec<RunRow> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(reports) else {
        return out;
    };
    for e in dir.flatten() {
        let path = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let folder = e.file_name().to_string_lossy().into_owned();
        let mut r = match std::fs::read(path.join("result.json")) {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => row(&folder, &v),
                Err(_) => continue,
            },
            Err(_) => match unfinished_row(&path, &folder) {
                Some(r) => r,
                None => continue,
            },
        };
        r.peak_memory_mib = peak_memory(&path);
        out.push(r);
    }
    out.sort_by(|a, b| (&a.started_at, &a.folder).cmp(&(&b.started_at, &b.folder)));
    out
}

/// Runs grouped by (plan, daemon), each group oldest first.
pub fn groups(rows: &[RunRow]) -> BTreeMap<(String, String), Vec<RunRow>> {
    let mut g: BTreeMap<(String, String), Vec<RunRow>> = BTreeMap::new();
    for r in rows {
        g.entry((r.plan.clone(), r.profile.clone()))
            .or_default()
            .push(r.clone());
    }
    g
}

/// A CSS class for a verdict (`in progress` has a space).
fn class(verdict: &str) -> String {
    verdict.replace(' ', "-")
}

type Pick = fn(&RunRow) -> Option<f64>;

/// One value per run across the last runs of a group, oldest left, one line per series; dots
/// outlined by the run's verdict.
pub fn trend_chart(title: &str, unit: &str, rows: &[RunRow], series: &[(&str, &str, Pick)]) -> String {
    let rows = &rows[rows.len().saturating_sub(60)..];
    let (w, h, left, right, top, bottom) = (svg::WIDTH, 240.0, 70.0, 20.0, 30.0, 200.0);
    let max = rows
        .iter()
        .flat_map(|r| series.iter().filter_map(move |s| (s.2)(r)))
        .fold(0.0, f64::max);
    let step = svg::nice_step(if max > 0.0 { max / 4.0 } else { 250.0 });
    let ymax = (max / step).ceil().max(1.0) * step;
    let n = rows.len().max(1) as f64;
    let x = |i: usize| left + (i as f64 + 0.5) / n * (w - left - right);
    let y = |v: f64| bottom - v / ymax * (bottom - top);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"{t}\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">\
         <title>{t}</title><text x=\"{left}\" y=\"16\" class=\"ctitle\">{t} <tspan class=\"unit\">({u}; one point per run, oldest left)</tspan></text>",
        t = esc(title),
        u = esc(unit)
    );
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let _ = write!(
            s,
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            w - right,
            left - 6.0,
            y(v) + 4.0,
            svg::fmt_num(v),
            yy = y(v)
        );
        v += step;
    }
    for (name, colour, pick) in series {
        let pts: Vec<String> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| pick(r).map(|v| format!("{:.1},{:.1}", x(i), y(v))))
            .collect();
        let _ = write!(
            s,
            "<polyline class=\"series\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"><title>{name}</title></polyline>",
            pts.join(" ")
        );
        for (i, r) in rows.iter().enumerate() {
            if let Some(v) = pick(r) {
                let stroke = match r.verdict.as_str() {
                    "valid" => "#06702b",
                    "invalid" => "#b00020",
                    _ => "#a66b00",
                };
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\" stroke=\"{stroke}\" stroke-width=\"2\"><title>{}: {name} {} {} ({})</title></circle>",
                    x(i),
                    y(v),
                    esc(&r.folder),
                    svg::fmt_num(v),
                    esc(unit),
                    esc(&r.verdict)
                );
            }
        }
    }
    for (i, (name, colour, _)) in series.iter().enumerate() {
        let lx = left + 10.0 + i as f64 * 150.0;
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"legend\">{name}</text>",
            bottom + 18.0,
            lx + 14.0,
            bottom + 27.0
        );
    }
    if rows.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"empty\">no runs yet</text>",
            w / 2.0,
            h / 2.0
        );
    }
    s.push_str("</svg>");
    s
}

const LATENCY_SERIES: [(&str, &str, Pick); 4] = [
    ("recovery: final heal", "#0072b2", |r| {
        r.final_recovery_ms.map(|v| v as f64)
    }),
    ("recovery: p95 of heals", "#e69f00", |r| {
        r.p95_recovery_ms.map(|v| v as f64)
    }),
    ("propagation p50", "#009e73", |r| r.p50_propagation_ms.map(|v| v as f64)),
    ("propagation p99", "#cc79a7", |r| r.p99_propagation_ms.map(|v| v as f64)),
];

const MEMORY_SERIES: [(&str, &str, Pick); 1] = [("peak peer memory", "#555555", |r| r.peak_memory_mib)];

/// The verdicts of a group's runs as a strip of coloured cells, oldest left.
fn verdict_strip(rows: &[RunRow]) -> String {
    let mut s = String::from("<p class=\"strip\">");
    for r in rows {
        let _ = write!(
            s,
            "<a href=\"{f}/index.html\" class=\"cell {c}\" title=\"{f}: {v}\"></a>",
            f = esc(&r.folder),
            c = class(&r.verdict),
            v = esc(&r.verdict)
        );
    }
    s.push_str("</p>");
    s
}

fn anchor(plan: &str, profile: &str) -> String {
    format!("{plan}--{profile}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect()
}

const CSS: &str = ".strip{margin:.4em 0;line-height:0}.cell{display:inline-block;width:12px;height:16px;margin-right:2px;border-radius:2px;background:#ccc}\
.cell.valid{background:#5cb85c}.cell.invalid{background:#d9534f}.cell.unknown{background:#f0ad4e}.cell.interrupted{background:#888}.cell.in-progress{background:#9ecae1}\
.interrupted{color:#555;font-weight:bold}.in-progress{color:#31708f;font-weight:bold}td.reason{font-size:12px;color:#555}";

pub fn html(rows: &[RunRow]) -> String {
    let ms = |v: Option<u64>| v.map_or("n/a".to_string(), |v| format!("{v} ms"));
    let groups = groups(rows);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>syftchaos runs</title><style>{}{CSS}</style></head><body>\
         <h1>syftchaos runs</h1><p class=\"meta\">{} runs of {} plan and daemon pairs; trends per plan and daemon below. Regenerated after every run and by <code>chaos prune</code>.</p>",
        super::CSS,
        rows.len(),
        groups.len()
    );
    h.push_str("<table><tr><th>plan</th><th>daemon</th><th>runs</th><th>verdicts (oldest left)</th><th>latest</th><th>final recovery</th><th>p95 propagation</th></tr>");
    for ((plan, profile), g) in &groups {
        let last = g.last().expect("a group has runs");
        let _ = write!(
            h,
            "<tr><td><a href=\"#{a}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"{c}\">{v}</td><td>{}</td><td>{}</td></tr>",
            esc(plan),
            esc(profile),
            g.len(),
            verdict_strip(g),
            ms(last.final_recovery_ms),
            ms(last.p95_propagation_ms),
            a = anchor(plan, profile),
            c = class(&last.verdict),
            v = esc(&last.verdict),
        );
    }
    h.push_str("</table>");
    if groups.is_empty() {
        h.push_str(&trend_chart("Recovery and propagation", "ms", &[], &LATENCY_SERIES));
    }
    for ((plan, profile), g) in &groups {
        let counts = ["valid", "invalid", "unknown", INTERRUPTED, IN_PROGRESS]
            .iter()
            .map(|v| (v, g.iter().filter(|r| r.verdict == *v).count()))
            .filter(|(_, n)| *n > 0)
            .map(|(v, n)| format!("{n} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            h,
            "<h2 id=\"{}\">{} · daemon {}</h2><p class=\"meta\">{} runs: {counts}</p>",
            anchor(plan, profile),
            esc(plan),
            esc(profile),
            g.len()
        );
        h.push_str(&verdict_strip(g));
        h.push_str(&trend_chart("Recovery and propagation", "ms", g, &LATENCY_SERIES));
        if g.iter().any(|r| r.peak_memory_mib.is_some()) {
            h.push_str(&trend_chart("Peak peer memory", "MiB, Docker stats", g, &MEMORY_SERIES));
        }
        h.push_str("<table><tr><th>run</th><th>flavor</th><th>verdict</th><th>started</th><th>duration</th><th>recovery: final heal</th><th>p50 / p95 / max of heals</th><th>propagation p50 / p95 / p99</th><th>peak peer memory</th></tr>");
        for r in g.iter().rev() {
            let _ = write!(
                h,
                "<tr><td><a href=\"{f}/index.html\">{f}</a></td><td>{}</td><td class=\"{c}\">{v}</td><td>{}</td><td>{:.1} s</td><td>{}</td><td>{} / {} / {}</td><td>{} / {} / {}</td><td>{}</td></tr>",
                esc(&r.flavor),
                esc(&r.started_at),
                r.duration_ms as f64 / 1000.0,
                ms(r.final_recovery_ms),
                ms(r.p50_recovery_ms),
                ms(r.p95_recovery_ms),
                ms(r.max_recovery_ms),
                ms(r.p50_propagation_ms),
                ms(r.p95_propagation_ms),
                ms(r.p99_propagation_ms),
                r.peak_memory_mib.map_or("n/a".to_string(), |m| format!("{m:.1} MiB")),
                f = esc(&r.folder),
                c = class(&r.verdict),
                v = esc(&r.verdict),
            );
            if let Some(why) = &r.reason {
                let _ = write!(
                    h,
                    "<tr><td></td><td colspan=\"8\" class=\"reason\">last line of <a href=\"{f}/chaos.log\">chaos.log</a>: {}</td></tr>",
                    esc(why),
                    f = esc(&r.folder)
                );
            }
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

/// Rewrites `reports/index.html` from every run folder (through a temporary file of this process's
/// own: runs finishing together each write a whole index, and the last rename wins).
pub fn write_index(reports: &Path) -> std::io::Result<()> {
    let tmp = reports.join(format!(".index.html.{}.tmp", std::process::id()));
    std::fs::write(&tmp, html(&runs(reports)))?;
    std::fs::rename(tmp, reports.join("index.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(dir: &Path, name: &str, plan: &str, profile: &str, started: &str, verdict: &str, rec: Option<u64>) {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        let v = serde_json::json!({
            "plan": plan, "profile": profile, "verdict": verdict, "started_at": started, "duration_ms": 1000,
            "recovery": [{"fault": "cut#1", "healed_at_ms": 1, "converged_after_ms": 50},
                         {"fault": "cut#2", "healed_at_ms": 1, "converged_after_ms": 70},
                         {"fault": "heal-all", "healed_at_ms": 2, "converged_after_ms": rec}],
            "figures": {"propagation": {"p50_ms": 120, "p95_ms": 300, "p99_ms": 410}},
        });
        std::fs::write(dir.join(name).join("result.json"), v.to_string()).unwrap();
    }

    #[test]
    fn runs_are_grouped_by_plan_and_daemon_with_their_figures() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        finished(
            d,
            "b-run",
            "smoke",
            "syncpeer",
            "2026-11-24T02:00:00Z",
            "invalid",
            Some(900),
        );
        finished(
            d,
            "a-run",
            "smoke",
            "syncpeer",
            "2026-11-24T01:00:00Z",
            "valid",
            Some(300),
        );
        finished(d, "c-run", "smoke", "syncthing", "2026-11-24T03:00:00Z", "valid", None);
        finished(
            d,
            "d-run",
            "kill-restart",
            "syncpeer",
            "2026-11-24T04:00:00Z",
            "unknown",
            Some(40),
        );
        std::fs::create_dir_all(d.join("not-a-run")).unwrap();
        let rows = runs(d);
        assert_eq!(
            rows.iter().map(|r| r.folder.as_str()).collect::<Vec<_>>(),
            ["a-run", "b-run", "c-run", "d-run"]
        );
        let b = &rows[1];
        assert_eq!(b.final_recovery_ms, Some(900));
        assert_eq!(
            (b.p50_recovery_ms, b.p95_recovery_ms, b.max_recovery_ms),
            (Some(70), Some(900), Some(900))
        );
        assert_eq!((b.p50_propagation_ms, b.p99_propagation_ms), (Some(120), Some(410)));
        assert_eq!(rows[2].final_recovery_ms, None);
        assert_eq!(rows[2].max_recovery_ms, Some(70));

        let g = groups(&rows);
        let keys: Vec<(&str, &str)> = g.keys().map(|(p, d)| (p.as_str(), d.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("kill-restart", "syncpeer"),
                ("smoke", "syncpeer"),
                ("smoke", "syncthing")
            ],
            "one group per plan and daemon, not one line mixing them"
        );
        assert_eq!(g[&("smoke".to_string(), "syncpeer".to_string())].len(), 2);

        write_index(d).unwrap();
        let h = std::fs::read_to_string(d.join("index.html")).unwrap();
        for id in ["kill-restart--syncpeer", "smoke--syncpeer", "smoke--syncthing"] {
            assert_eq!(h.matches(&format!("<h2 id=\"{id}\"")).count(), 1, "{id}");
        }
        let section = &h[h.find("<h2 id=\"smoke--syncpeer\"").unwrap()..h.find("<h2 id=\"smoke--syncthing\"").unwrap()];
        assert!(
            section.find("b-run/index.html\">b-run").unwrap() < section.find("a-run/index.html\">a-run").unwrap(),
            "newest first in a group's table"
        );
        assert!(
            !section.contains("c-run") && !section.contains("d-run"),
            "only its own runs"
        );
        assert_eq!(section.matches("<svg").count(), 1, "no memory chart without metrics");
        // Two runs with final heal, p95 of heals, p50 and p99 propagation each.
        assert_eq!(section.matches("<circle").count(), 8);
        assert!(section.contains("1 valid, 1 invalid"));
        assert!(!h.contains("<script"));
    }

    #[test]
    fn run_folders_without_a_result_are_listed_as_interrupted_or_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        finished(
            d,
            "smoke-20261124T010000Z-00000001",
            "smoke",
            "syncpeer",
            "2026-11-24T01:00:00Z",
            "valid",
            Some(1),
        );
        let killed = d.join("smoke-20261124T020000Z-00000002");
        std::fs::create_dir_all(&killed).unwrap();
        std::fs::write(
            killed.join("recipe.json"),
            serde_json::json!({"flavor": "default", "profile": "/x/profiles/syncpeer"}).to_string(),
        )
        .unwrap();
        std::fs::write(
            killed.join("chaos.log"),
            "chaos: run 00000002\nchaos: error: peers not ready <p2>\n\n",
        )
        .unwrap();
        std::fs::write(killed.join(run_folder::PID_FILE), "4194304999\n").unwrap();
        let live = d.join("kill-mid-transfer-20261124T030000Z-00000003");
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(live.join("history.jsonl"), "").unwrap();
        run_folder::mark_live(&live).unwrap();
        // Neither a result nor a recipe or history: not a run folder.
        std::fs::create_dir_all(d.join("smoke-20261124T040000Z-00000004")).unwrap();

        let rows = runs(d);
        assert_eq!(rows.len(), 3);
        let k = &rows[1];
        assert_eq!(
            (
                k.plan.as_str(),
                k.profile.as_str(),
                k.verdict.as_str(),
                k.started_at.as_str()
            ),
            ("smoke", "syncpeer", INTERRUPTED, "2026-11-24T02:00:00Z")
        );
        assert_eq!(k.reason.as_deref(), Some("chaos: error: peers not ready <p2>"));
        assert_eq!(rows[2].verdict, IN_PROGRESS);
        assert_eq!(
            groups(&rows)[&("smoke".to_string(), "syncpeer".to_string())].len(),
            2,
            "in its plan's group"
        );

        let h = html(&rows);
        assert!(h.contains("<td class=\"interrupted\">interrupted</td>"), "{h}");
        assert!(h.contains("<td class=\"in-progress\">in progress</td>"));
        assert!(
            h.contains("chaos: error: peers not ready &lt;p2&gt;"),
            "the reason, escaped"
        );
        assert!(h.contains("cell interrupted"));
    }

    #[test]
    fn nearest_rank_quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.95), Some(7));
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!((quantile(&v, 0.5), quantile(&v, 0.95)), (Some(10), Some(19)));
    }
}
