//! `reports/index.html`: every run under `reports/` (read from each run's `result.json`), newest
//! first, with a trend chart of recovery times across runs. Regenerated after every run.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::svg::{self, esc};

/// What the index shows of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    pub folder: String,
    pub plan: String,
    pub flavor: String,
    /// The daemon under test (runs from before profiles: `syncpeer`).
    pub profile: String,
    pub verdict: String,
    pub started_at: String,
    pub duration_ms: u64,
    /// The final heal -> converged time.
    pub final_recovery_ms: Option<u64>,
    /// The slowest recovery of any heal in the run.
    pub max_recovery_ms: Option<u64>,
    pub p95_propagation_ms: Option<u64>,
}

fn row(folder: &str, v: &Value) -> RunRow {
    let recs = v["recovery"].as_array().cloned().unwrap_or_default();
    let after = |r: &Value| r["converged_after_ms"].as_u64();
    RunRow {
        folder: folder.to_string(),
        plan: v["plan"].as_str().unwrap_or("?").to_string(),
        flavor: v["flavor"].as_str().unwrap_or("?").to_string(),
        profile: v["profile"].as_str().unwrap_or("syncpeer").to_string(),
        verdict: v["verdict"].as_str().unwrap_or("unknown").to_string(),
        started_at: v["started_at"].as_str().unwrap_or("").to_string(),
        duration_ms: v["duration_ms"].as_u64().unwrap_or(0),
        final_recovery_ms: recs.iter().rev().find(|r| r["fault"] == "heal-all").and_then(after),
        max_recovery_ms: recs.iter().filter_map(after).max(),
        p95_propagation_ms: v["figures"]["propagation"]["p95_ms"].as_u64(),
    }
}

/// Every run folder under `reports` with a readable `result.json`, oldest first.
pub fn runs(reports: &Path) -> Vec<RunRow> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(reports) else {
        return out;
    };
    for e in dir.flatten() {
        let path = e.path();
        if !path.is_dir() || path.is_symlink() {
            continue;
        }
        let Ok(bytes) = std::fs::read(path.join("result.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        out.push(row(&e.file_name().to_string_lossy(), &v));
    }
    out.sort_by(|a, b| (&a.started_at, &a.folder).cmp(&(&b.started_at, &b.folder)));
    out
}

/// Recovery times of the last runs, oldest left: final heal and slowest heal, one point per run,
/// coloured by verdict.
pub fn trend_chart(rows: &[RunRow]) -> String {
    let rows = &rows[rows.len().saturating_sub(60)..];
    let (w, h, left, right, top, bottom) = (svg::WIDTH, 240.0, 70.0, 20.0, 30.0, 200.0);
    let max = rows
        .iter()
        .flat_map(|r| [r.final_recovery_ms, r.max_recovery_ms])
        .flatten()
        .max()
        .unwrap_or(0) as f64;
    let step = svg::nice_step(if max > 0.0 { max / 4.0 } else { 250.0 });
    let ymax = (max / step).ceil().max(1.0) * step;
    let n = rows.len().max(1) as f64;
    let x = |i: usize| left + (i as f64 + 0.5) / n * (w - left - right);
    let y = |v: f64| bottom - v / ymax * (bottom - top);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"recovery trend\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">\
         <title>recovery time across runs</title><text x=\"{left}\" y=\"16\" class=\"ctitle\">Recovery time across runs <tspan class=\"unit\">(ms; oldest left)</tspan></text>"
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
    for (series, colour, pick) in [
        (
            "final heal",
            "#0072b2",
            (|r: &RunRow| r.final_recovery_ms) as fn(&RunRow) -> Option<u64>,
        ),
        ("slowest heal", "#e69f00", |r: &RunRow| r.max_recovery_ms),
    ] {
        let pts: Vec<String> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| pick(r).map(|v| format!("{:.1},{:.1}", x(i), y(v as f64))))
            .collect();
        let _ = write!(
            s,
            "<polyline class=\"series\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"><title>{series}</title></polyline>",
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
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\" stroke=\"{stroke}\" stroke-width=\"2\"><title>{}: {series} {v} ms ({})</title></circle>",
                    x(i),
                    y(v as f64),
                    esc(&r.folder),
                    esc(&r.verdict)
                );
            }
        }
    }
    for (i, (name, colour)) in [("final heal", "#0072b2"), ("slowest heal", "#e69f00")]
        .iter()
        .enumerate()
    {
        let lx = left + 10.0 + i as f64 * 120.0;
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

pub fn html(rows: &[RunRow]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>syftchaos runs</title><style>{}</style></head><body>\
         <h1>syftchaos runs</h1><p class=\"meta\">{} runs; newest first. Regenerated after every run.</p>",
        super::CSS,
        rows.len()
    );
    h.push_str(&trend_chart(rows));
    h.push_str("<table><tr><th>run</th><th>plan</th><th>daemon</th><th>flavor</th><th>verdict</th><th>started</th><th>duration</th><th>final recovery</th><th>slowest recovery</th><th>p95 propagation</th></tr>");
    let ms = |v: Option<u64>| v.map_or("n/a".to_string(), |v| format!("{v} ms"));
    for r in rows.iter().rev() {
        let _ = write!(
            h,
            "<tr><td><a href=\"{f}/index.html\">{f}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"{v}\">{v}</td><td>{}</td><td>{:.1} s</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.plan),
            esc(&r.profile),
            esc(&r.flavor),
            esc(&r.started_at),
            r.duration_ms as f64 / 1000.0,
            ms(r.final_recovery_ms),
            ms(r.max_recovery_ms),
            ms(r.p95_propagation_ms),
            f = esc(&r.folder),
            v = esc(&r.verdict),
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

/// Rewrites `reports/index.html` from every run's `result.json` (through a temporary file of this
/// process's own: runs finishing together each write a whole index, and the last rename wins).
pub fn write_index(reports: &Path) -> std::io::Result<()> {
    let tmp = reports.join(format!(".index.html.{}.tmp", std::process::id()));
    std::fs::write(&tmp, html(&runs(reports)))?;
    std::fs::rename(tmp, reports.join("index.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_runs_oldest_first_and_charts_their_recoveries() {
        let dir = tempfile::tempdir().unwrap();
        for (name, started, verdict, rec) in [
            ("b-run", "2026-11-24T02:00:00Z", "invalid", Some(900)),
            ("a-run", "2026-11-24T01:00:00Z", "valid", Some(300)),
            ("c-run", "2026-11-24T03:00:00Z", "valid", None),
        ] {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            let v = serde_json::json!({
                "plan": "smoke", "verdict": verdict, "started_at": started, "duration_ms": 1000,
                "recovery": [{"fault": "cut#1", "healed_at_ms": 1, "converged_after_ms": 50},
                             {"fault": "heal-all", "healed_at_ms": 2, "converged_after_ms": rec}],
            });
            std::fs::write(dir.path().join(name).join("result.json"), v.to_string()).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("no-result")).unwrap();
        let rows = runs(dir.path());
        assert_eq!(
            rows.iter().map(|r| r.folder.as_str()).collect::<Vec<_>>(),
            ["a-run", "b-run", "c-run"]
        );
        assert_eq!(rows[1].final_recovery_ms, Some(900));
        assert_eq!(rows[2].final_recovery_ms, None);
        assert_eq!(rows[2].max_recovery_ms, Some(50));
        write_index(dir.path()).unwrap();
        let h = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
        assert!(
            h.find("c-run/index.html").unwrap() < h.find("a-run/index.html").unwrap(),
            "newest first"
        );
        assert_eq!(
            h.matches("<circle").count(),
            5,
            "two points per run with recoveries, one without"
        );
        assert!(!h.contains("<script"));
    }
}
