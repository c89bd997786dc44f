//! The run's report: `result.json` (for machines), `junit.xml` (one test case per check, for CI
//! systems) and `index.html` (for people: self-contained, no network needed to open it). Also keeps
//! `reports/latest` pointing at the newest run.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::checker::{Check, Recovery, Verdict};
use crate::history::{Event, Record};

#[derive(Clone, Debug, Serialize)]
pub struct PeerSummary {
    pub name: String,
    pub files: usize,
    pub tree_hash: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub plan: String,
    pub seed: u64,
    pub run_id: String,
    pub verdict: Verdict,
    pub started_at: String,
    pub duration_ms: u64,
    pub image: String,
    pub flavor: String,
    pub checks: Vec<Check>,
    pub recovery: Vec<Recovery>,
    pub peers: Vec<PeerSummary>,
}

pub fn write_all(run_dir: &Path, result: &RunResult, history: &[Record]) -> std::io::Result<()> {
    std::fs::write(
        run_dir.join("result.json"),
        serde_json::to_vec_pretty(result).expect("serializable"),
    )?;
    std::fs::write(run_dir.join("junit.xml"), junit(result))?;
    std::fs::write(run_dir.join("index.html"), html(result, history))?;
    Ok(())
}

/// Points `reports/latest` at `run_dir` (a relative symlink, replaced atomically).
pub fn link_latest(reports: &Path, run_dir: &Path) -> std::io::Result<()> {
    let name = run_dir.file_name().expect("run folder has a name");
    let tmp = reports.join(".latest.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp)?;
    std::fs::rename(&tmp, reports.join("latest"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub fn junit(r: &RunResult) -> String {
    let failures = r.checks.iter().filter(|c| c.verdict == Verdict::Invalid).count();
    let skipped = r.checks.iter().filter(|c| c.verdict == Verdict::Unknown).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">",
        esc(&r.plan),
        r.checks.len(),
        r.duration_ms as f64 / 1000.0
    );
    let _ = writeln!(
        x,
        "  <properties><property name=\"seed\" value=\"{}\"/><property name=\"run_id\" value=\"{}\"/></properties>",
        r.seed,
        esc(&r.run_id)
    );
    for c in &r.checks {
        let _ = write!(
            x,
            "  <testcase classname=\"syftchaos.{}\" name=\"{}\">",
            esc(&r.plan),
            esc(&c.name)
        );
        match c.verdict {
            Verdict::Valid => {}
            Verdict::Invalid => {
                let _ = write!(
                    x,
                    "<failure message=\"{}\">{}</failure>",
                    esc(&c.summary),
                    esc(&c.evidence.to_string())
                );
            }
            Verdict::Unknown => {
                let _ = write!(x, "<skipped message=\"{}\"/>", esc(&c.summary));
            }
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite>\n");
    x
}

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}\
h1{margin-bottom:.2em}table{border-collapse:collapse;width:100%;margin:1em 0}\
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}\
.valid{color:#06702b;font-weight:bold}.invalid{color:#b00020;font-weight:bold}.unknown{color:#a66b00;font-weight:bold}\
pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:20em;font-size:12px}.meta{color:#666}";

pub fn html(r: &RunResult, history: &[Record]) -> String {
    let mut h = String::new();
    let v = r.verdict.as_str();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{plan}: {v}</title><style>{CSS}</style></head><body>\
         <h1>{plan} <span class=\"{v}\">{v}</span></h1>\
         <p class=\"meta\">run <code>{run}</code> · seed {seed} · started {start} · {dur:.1} s · image <code>{image}</code> · flavor {flavor}</p>",
        plan = esc(&r.plan),
        run = esc(&r.run_id),
        seed = r.seed,
        start = esc(&r.started_at),
        dur = r.duration_ms as f64 / 1000.0,
        image = esc(&r.image),
        flavor = esc(&r.flavor),
    );
    h.push_str("<h2>Checks</h2><table><tr><th>check</th><th>verdict</th><th>summary</th><th>evidence</th></tr>");
    for c in &r.checks {
        let ev = serde_json::to_string_pretty(&c.evidence).unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"{v}\">{v}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            esc(&c.name),
            esc(&c.summary),
            esc(&ev),
            v = c.verdict.as_str()
        );
    }
    h.push_str("</table><h2>Recovery after each heal</h2><table><tr><th>fault</th><th>healed at</th><th>converged after</th></tr>");
    for rec in &r.recovery {
        let after = rec
            .converged_after_ms
            .map_or("never".to_string(), |t| format!("{t} ms"));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{} ms</td><td>{after}</td></tr>",
            esc(&rec.fault),
            rec.healed_at_ms
        );
    }
    h.push_str("</table><h2>Peers</h2><table><tr><th>peer</th><th>files</th><th>tree hash</th><th>log</th></tr>");
    for p in &r.peers {
        let _ = write!(
            h,
            "<tr><td>{n}</td><td>{}</td><td><code>{}</code></td><td><a href=\"logs/{n}.log\">log</a></td></tr>",
            p.files,
            esc(&p.tree_hash),
            n = esc(&p.name)
        );
    }
    h.push_str("</table><h2>Timeline</h2><table><tr><th>t (ms)</th><th>event</th></tr>");
    for rec in history.iter().filter(|r| !matches!(r.event, Event::Write { .. })) {
        let text = serde_json::to_string(&rec.event).unwrap_or_default();
        let _ = write!(h, "<tr><td>{}</td><td><code>{}</code></td></tr>", rec.t_ms, esc(&text));
    }
    let writes = history
        .iter()
        .filter(|r| matches!(r.event, Event::Write { .. }))
        .count();
    let _ = writeln!(
        h,
        "</table><p class=\"meta\">{writes} workload operations in <a href=\"history.jsonl\">history.jsonl</a>; plan as run in <a href=\"plan.yaml\">plan.yaml</a>.</p></body></html>"
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(verdict: Verdict) -> RunResult {
        RunResult {
            plan: "smoke<&>".into(),
            seed: 1,
            run_id: "abc".into(),
            verdict,
            started_at: "now".into(),
            duration_ms: 1500,
            image: "img".into(),
            flavor: "default".into(),
            checks: vec![
                Check {
                    name: "converged".into(),
                    verdict: Verdict::Valid,
                    summary: "ok".into(),
                    evidence: serde_json::Value::Null,
                },
                Check {
                    name: "no-crash".into(),
                    verdict,
                    summary: "bad <peer>".into(),
                    evidence: serde_json::json!({"x": 1}),
                },
            ],
            recovery: vec![],
            peers: vec![],
        }
    }

    #[test]
    fn junit_has_one_case_per_check_and_marks_failures() {
        let x = junit(&result(Verdict::Invalid));
        assert_eq!(x.matches("<testcase ").count(), 2);
        assert!(x.contains("failures=\"1\""));
        assert!(x.contains("<failure message=\"bad &lt;peer&gt;\""));
        assert!(x.contains("name=\"smoke&lt;&amp;&gt;\""), "escaped: {x}");
    }

    #[test]
    fn html_escapes_and_shows_the_verdict() {
        let h = html(&result(Verdict::Valid), &[]);
        assert!(h.contains("<span class=\"valid\">valid</span>"));
        assert!(!h.contains("smoke<&>"));
        assert!(
            !h.contains("http://") && !h.contains("https://"),
            "self-contained: no external resources"
        );
    }
}
