//! The run's report: `result.json` (for machines), `junit.xml` (one test case per check, for CI
//! systems) and `index.html` (for people: self-contained, inline SVG charts and CSS, no JavaScript,
//! nothing fetched, so it opens offline). Also keeps `reports/latest` pointing at the newest run and
//! regenerates `reports/index.html`, the list of all runs with a trend of recovery times.
//!
//! Every figure is explained in `docs/REPORTS.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::checker::figures::LATENCY_BUCKETS_MS;
use crate::checker::{Check, Figures, Recovery, Verdict};
use crate::record::history::{Event, Record};

pub mod index;
pub mod series;
pub mod soak;
pub mod svg;

pub use index::write_index;
use svg::{Bar, Line, TimeAxis, esc};

#[derive(Clone, Debug, Serialize)]
pub struct PeerSummary {
    pub name: String,
    pub files: usize,
    pub tree_hash: String,
    /// The peer's public key from `/v1/status` at the end (conflict copies carry its first 8 chars).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl From<&crate::checker::PeerFinal> for PeerSummary {
    fn from(f: &crate::checker::PeerFinal) -> PeerSummary {
        PeerSummary {
            name: f.name.clone(),
            files: f.tree.files.len(),
            tree_hash: f.tree.digest(),
            id: f.id.clone(),
        }
    }
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
    /// The image's id when the run started (as in `recipe.json`): which build of the daemon ran.
    pub image_id: Option<String>,
    /// The orchestrator that ran it: `chaos`'s crate version, and the git commit it was built from
    /// (`unknown` for a build outside a git checkout).
    pub version: String,
    pub commit: String,
    /// The command that runs this run again: `chaos replay <run folder>` (same plan, seed, keys,
    /// image; see `README.md`).
    pub replay: String,
    /// The peer profile (the daemon under test).
    #[serde(default)]
    pub profile: String,
    /// How clock faults reached the daemon: `libfaketime`, `vdso`, or `none` (refused).
    #[serde(default)]
    pub clock: String,
    pub flavor: String,
    /// The packet-fault engine used for `link` faults (`userspace` or `netem`), as `netfault probe`
    /// chose it on this kernel, and the whole probe (which kernel features exist).
    pub engine: String,
    pub engines_probed: serde_json::Value,
    pub checks: Vec<Check>,
    pub recovery: Vec<Recovery>,
    /// Propagation latency, conflict rate, traffic per operation (see `docs/REPORTS.md`).
    pub figures: Figures,
    pub peers: Vec<PeerSummary>,
    /// A soak's windows and facts (`windows`, `soak`); absent for a plain run.
    #[serde(flatten)]
    pub soak: Option<crate::soak::summary::SoakSummary>,
}

/// The command that replays the run in `run_dir`: the folder as an absolute path, so that it works
/// from any working directory, quoted for a POSIX shell when it needs to be.
pub fn replay_command(run_dir: &Path) -> String {
    let dir = std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
    format!("chaos replay {}", shell_quote(&dir.to_string_lossy()))
}

/// `s` as one POSIX shell word.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,=@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub fn write_all(run_dir: &Path, result: &RunResult, history: &[Record]) -> std::io::Result<()> {
    std::fs::write(
        run_dir.join("result.json"),
        serde_json::to_vec_pretty(result).expect("serializable"),
    )?;
    std::fs::write(run_dir.join("junit.xml"), junit(result))?;
    let series = match &result.soak {
        None => series::read(&run_dir.join(crate::record::samples::METRICS_FILE)),
        Some(s) => soak::series_of(run_dir, s),
    };
    std::fs::write(run_dir.join("index.html"), html(result, history, &series))?;
    Ok(())
}

/// Points `reports/latest` at `run_dir` (a relative symlink, replaced atomically). The temporary
/// name is the run's own, so that runs finishing together in one reports folder do not trip on
/// each other's.
pub fn link_latest(reports: &Path, run_dir: &Path) -> std::io::Result<()> {
    let name = run_dir.file_name().expect("run folder has a name");
    let tmp = reports.join(format!(".latest.{}.tmp", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp)?;
    std::fs::rename(&tmp, reports.join("latest"))
}

/// One `<testcase>` per check. `invalid` and `unknown` are both `<failure>`s (with `type` saying
/// which), carrying the summary and the evidence: the run exits 1 for either, and a CI system that
/// showed `unknown` as skipped would look green while the job failed.
pub fn junit(r: &RunResult) -> String {
    let failures = r.checks.iter().filter(|c| c.verdict != Verdict::Valid).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\">",
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
        if c.verdict != Verdict::Valid {
            let v = c.verdict.as_str();
            let _ = write!(
                x,
                "<failure type=\"{v}\" message=\"{v}: {}\">{}</failure>",
                esc(&c.summary),
                esc(&c.evidence.to_string())
            );
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite>\n");
    x
}

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}\
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #eee}table{border-collapse:collapse;width:100%;margin:1em 0}\
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}\
.valid{color:#06702b;font-weight:bold}.invalid{color:#b00020;font-weight:bold}.unknown{color:#a66b00;font-weight:bold}\
pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:20em;font-size:12px;margin:0}.meta{color:#666}\
details summary{cursor:pointer;color:#0645ad;white-space:nowrap}\
svg.chart{display:block;max-width:100%;height:auto;margin:.6em 0;font:11px system-ui,sans-serif}\
svg .grid{stroke:#e4e4e4;stroke-width:1}svg .axis{stroke:#888}svg .tick{fill:#555}svg .legend{fill:#333}\
svg .ctitle{font-weight:bold;fill:#222;font-size:12px}svg .unit{font-weight:normal;fill:#666}svg .empty{fill:#999}\
svg .bar.ok{fill:#4c9be8}svg .bar.bad{fill:#d9534f}svg .bar.fault{fill:#f0ad4e}svg .bar.clock{fill:#9b59b6}\
svg .conv{fill:#5cb85c}svg .div{fill:#d9534f}svg .none{fill:#ddd}svg .heal{stroke:#06702b;stroke-dasharray:4 3}\
.figs td:first-child{width:40%}ul.problems{margin:.4em 0 0;padding-left:1.2em;font-size:12px}ul.problems li{margin:.15em 0}";

/// Milliseconds as a short human figure.
fn ms(v: Option<u64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v >= 10_000 => format!("{:.1} s", v as f64 / 1000.0),
        Some(v) => format!("{v} ms"),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("n/a".to_string(), |v| format!("{v:.digits$}"))
}

/// The run's end on the shared time axis: the last history record.
fn end_ms(history: &[Record]) -> u64 {
    history.iter().map(|r| r.t_ms).max().unwrap_or(0).max(1000)
}

/// Above this many operations the timeline draws one tick per pixel column.
const MAX_TICKS: usize = 1500;

/// Above this many records the events table stops (the rest is in `history.jsonl`).
const MAX_EVENT_ROWS: usize = 2000;

/// Faults as bars, convergence state as coloured segments, writes as ticks, the final heal as a line.
pub fn timeline(history: &[Record], peers: &[String], axis: TimeAxis) -> String {
    let mut faults: Vec<(String, String, u64, Option<u64>)> = Vec::new();
    let mut heal_all = None;
    let mut clocks = Vec::new();
    for r in history {
        match &r.event {
            Event::FaultStarted { id, kind, .. } => faults.push((id.clone(), kind.clone(), r.t_ms, None)),
            Event::FaultStopped { id, .. } => {
                if let Some(f) = faults.iter_mut().rev().find(|f| &f.0 == id && f.3.is_none()) {
                    f.3 = Some(r.t_ms);
                }
            }
            Event::HealedAll => {
                heal_all.get_or_insert(r.t_ms);
                for f in faults.iter_mut().filter(|f| f.3.is_none()) {
                    f.3 = Some(r.t_ms);
                }
            }
            Event::ClockMeasured {
                peer,
                requested_ms,
                measured_ms,
                ..
            } => clocks.push((r.t_ms, peer.clone(), *requested_ms, *measured_ms)),
            _ => {}
        }
    }
    let row = 20.0;
    let top = 28.0;
    let rows = faults.len() + 2 + usize::from(!clocks.is_empty());
    let bottom = top + rows as f64 * row;
    let h = bottom + 24.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"fault timeline\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">\
         <title>fault timeline</title><text x=\"{l}\" y=\"16\" class=\"ctitle\">Faults, convergence and writes over run time</text>",
        w = svg::WIDTH,
        l = svg::LEFT
    );
    s.push_str(&axis.ticks(top, bottom));
    let label = |s: &mut String, i: usize, text: &str| {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            svg::LEFT - 6.0,
            top + i as f64 * row + 14.0,
            esc(text)
        );
    };
    // Row 0: convergence state.
    label(&mut s, 0, "converged?");
    let mut state: (u64, &str) = (0, "none");
    let mut segs = Vec::new();
    for r in history {
        let next = match r.event {
            Event::Converged { .. } => "conv",
            Event::Diverged => "div",
            _ => continue,
        };
        if next == state.1 {
            // Converged again on a new tree: one unbroken segment (adjacent rects leave seams).
            continue;
        }
        segs.push((state.0, r.t_ms, state.1));
        state = (r.t_ms, next);
    }
    segs.push((state.0, axis.end_ms, state.1));
    for (a, b, class) in segs.into_iter().filter(|(a, b, _)| b > a) {
        let what = match class {
            "conv" => "converged",
            "div" => "diverged",
            _ => "not yet converged",
        };
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" class=\"{class}\"><title>{what} {:.1}s-{:.1}s</title></rect>",
            axis.x(a),
            top + 2.0,
            (axis.x(b) - axis.x(a)).max(0.5),
            row - 4.0,
            a as f64 / 1000.0,
            b as f64 / 1000.0
        );
    }
    // Row 1: writes, coloured by peer; in a long run, one tick per pixel column (the first op in it).
    label(&mut s, 1, "operations");
    let mut drawn = std::collections::BTreeSet::new();
    let many = history
        .iter()
        .filter(|r| matches!(r.event, Event::Write { .. }))
        .count()
        > MAX_TICKS;
    for r in history {
        if many && !drawn.insert(axis.x(r.t_ms).round() as i64) {
            continue;
        }
        if let Event::Write {
            peer, path, kind, op, ..
        } = &r.event
        {
            let i = peers.iter().position(|p| p == peer).unwrap_or(0);
            let x = axis.x(r.t_ms);
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"2\"><title>op {op} {kind:?} {} on {}</title></line>",
                top + row + 3.0,
                top + 2.0 * row - 3.0,
                svg::colour(i),
                esc(path),
                esc(peer)
            );
        }
    }
    // Fault rows.
    for (i, (id, kind, a, b)) in faults.iter().enumerate() {
        let y = top + (i + 2) as f64 * row;
        label(&mut s, i + 2, &format!("{id} ({kind})"));
        let b = b.unwrap_or(axis.end_ms);
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" class=\"bar fault\"><title>{} {:.1}s-{:.1}s</title></rect>",
            axis.x(*a),
            y + 2.0,
            (axis.x(b) - axis.x(*a)).max(1.0),
            row - 4.0,
            esc(id),
            *a as f64 / 1000.0,
            b as f64 / 1000.0
        );
    }
    if !clocks.is_empty() {
        let i = faults.len() + 2;
        label(&mut s, i, "clock measured");
        for (t, peer, req, measured) in &clocks {
            let x = axis.x(*t);
            let _ = write!(
                s,
                "<circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"5\" class=\"bar clock\"><title>{} asked {} ms, measured {}</title></circle>",
                top + i as f64 * row + row / 2.0,
                esc(peer),
                req,
                measured.map_or("n/a".to_string(), |m| format!("{m} ms"))
            );
        }
    }
    if let Some(t) = heal_all {
        let x = axis.x(t);
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" class=\"heal\"><title>all faults healed at {:.1}s</title></line>",
            top - 4.0,
            t as f64 / 1000.0
        );
    }
    s.push_str("</svg>");
    s
}

/// A JSON evidence value as one short line: operations as "op N by pX at T s (content)".
fn compact(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(o) if o.contains_key("op") && o.contains_key("peer") => format!(
            "op {} by {} at {:.1} s ({})",
            o["op"],
            o["peer"].as_str().unwrap_or("?"),
            o.get("t_ms").and_then(Value::as_u64).unwrap_or(0) as f64 / 1000.0,
            o.get("content").and_then(Value::as_str).unwrap_or("?")
        ),
        Value::Object(o) if o.contains_key("content") && o.contains_key("written_by") => {
            let by = match &o["written_by"] {
                Value::Object(w) if w.contains_key("op") => format!(
                    "op {} by {} at {:.1} s",
                    w["op"],
                    w["peer"].as_str().unwrap_or("?"),
                    w.get("t_ms").and_then(Value::as_u64).unwrap_or(0) as f64 / 1000.0
                ),
                _ => "no write".to_string(),
            };
            format!("{} (from {by})", o["content"].as_str().unwrap_or("?"))
        }
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{}: {}", k.replace('_', " "), compact(v)))
            .collect::<Vec<_>>()
            .join("; "),
        Value::Array(a) => a.iter().map(compact).collect::<Vec<_>>().join(" | "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first problems (or undecided items) of a check's evidence as readable lines.
fn problem_lines(ev: &serde_json::Value, max: usize) -> Vec<String> {
    let items = ev["problems"]
        .as_array()
        .filter(|a| !a.is_empty())
        .or_else(|| ev["undecided"].as_array())
        .or_else(|| ev["differences"].as_array());
    let Some(items) = items else { return Vec::new() };
    items
        .iter()
        .take(max)
        .map(|p| match p.as_object() {
            Some(o) => {
                let head: Vec<&str> = ["peer", "path"]
                    .iter()
                    .filter_map(|k| o.get(*k).and_then(|v| v.as_str()))
                    .collect();
                let rest: Vec<String> = o
                    .iter()
                    .filter(|(k, _)| *k != "peer" && *k != "path")
                    .map(|(k, v)| format!("{}: {}", k.replace('_', " "), compact(v)))
                    .collect();
                format!("{} — {}", head.join(" · "), rest.join("; "))
            }
            None => compact(p),
        })
        .collect()
}

/// Each peer's measured clock offset (s) over run time, as steps from one measurement to the next.
fn clock_chart(history: &[Record], peers: &[String], axis: TimeAxis) -> String {
    let mut per_peer: BTreeMap<&str, Vec<(u64, f64)>> = BTreeMap::new();
    for r in history {
        if let Event::ClockMeasured {
            peer,
            requested_ms,
            measured_ms,
            ..
        } = &r.event
        {
            let v = measured_ms.unwrap_or(*requested_ms) as f64 / 1000.0;
            let pts = per_peer.entry(peer.as_str()).or_default();
            if let Some(&(_, prev)) = pts.last() {
                pts.push((r.t_ms, prev));
            }
            pts.push((r.t_ms, v));
        }
    }
    for pts in per_peer.values_mut() {
        if let Some(&(_, last)) = pts.last() {
            pts.push((axis.end_ms, last));
        }
    }
    let lines: Vec<Line> = per_peer
        .iter()
        .map(|(name, pts)| Line {
            name,
            colour: svg::colour(peers.iter().position(|p| p == name).unwrap_or(0)),
            points: pts,
        })
        .collect();
    svg::time_chart("clock offset", "s, measured from the peer's /v1/status", axis, &lines)
}

/// Above this many peers, per-peer charts become bands ([`series::band`]) and the peers table folds.
pub const BAND_ABOVE: usize = 12;
/// Slices of run time a band is computed over.
const BAND_SLICES: usize = 240;

pub fn html(r: &RunResult, history: &[Record], series: &BTreeMap<String, series::PeerSeries>) -> String {
    let mut h = String::new();
    let v = r.verdict.as_str();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>{plan}: {v}</title><style>{CSS}</style></head><body>\
         <h1>{plan} <span class=\"{v}\">{v}</span></h1>\
         <p class=\"meta\">run <code>{run}</code> · seed {seed} · started {start} · {dur:.1} s · daemon <b>{profile}</b> · image <code>{image}</code> · flavor {flavor} · clock faults by {clock}</p>",
        plan = esc(&r.plan),
        run = esc(&r.run_id),
        seed = r.seed,
        start = esc(&r.started_at),
        dur = r.duration_ms as f64 / 1000.0,
        image = esc(&r.image),
        profile = esc(&r.profile),
        flavor = esc(&r.flavor),
        clock = esc(&r.clock),
    );
    h.push_str("<h2>Checks</h2><table><tr><th>check</th><th>verdict</th><th>summary</th><th>evidence</th></tr>");
    for c in &r.checks {
        let ev = serde_json::to_string_pretty(&c.evidence).unwrap_or_default();
        let mut detail = String::new();
        let mut open = "";
        if c.verdict != Verdict::Valid {
            let lines = problem_lines(&c.evidence, 10);
            // The raw evidence opens by itself only when no readable lines summarize it.
            if lines.is_empty() {
                open = " open";
            } else {
                detail.push_str("<ul class=\"problems\">");
                for l in lines {
                    let _ = write!(detail, "<li>{}</li>", esc(&l));
                }
                detail.push_str("</ul>");
            }
        }
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"{v}\">{v}</td><td>{}{detail}{basis}</td><td><details{open}><summary>evidence</summary><pre>{}</pre></details></td></tr>",
            esc(&c.name),
            esc(&c.summary),
            esc(&ev),
            basis = if c.rests_on.is_empty() {
                String::new()
            } else {
                format!("<p class=\"meta\">judged from: {}</p>", esc(&c.rests_on))
            },
            v = c.verdict.as_str()
        );
    }
    h.push_str("</table>");
    if let Some(s) = &r.soak {
        h.push_str(&soak::windows_section(s));
    }

    let peers: Vec<String> = r.peers.iter().map(|p| p.name.clone()).collect();
    let last_sample = series
        .values()
        .flat_map(|s| {
            [
                &s.messages_per_s,
                &s.bytes_per_s,
                &s.cpu_pct,
                &s.mem_mib,
                &s.net_bytes_per_s,
            ]
        })
        .filter_map(|v| v.last().map(|p| p.0))
        .max()
        .unwrap_or(0);
    let axis = TimeAxis {
        end_ms: end_ms(history).max(last_sample),
    };
    h.push_str("<h2>Timeline</h2><p class=\"meta\">Run time on every chart below is the same axis: seconds since the run started. Green: all peers held the same tree; red: they differed again; grey: not converged yet. The dashed line is the final heal.</p>");
    h.push_str(&timeline(history, &peers, axis));

    h.push_str("<h2>Recovery after each heal</h2>");
    let bars: Vec<Bar> = r
        .recovery
        .iter()
        .map(|rec| match rec.converged_after_ms {
            Some(t) => Bar {
                label: rec.fault.clone(),
                value: t as f64,
                text: format!("{t} ms"),
                class: "ok",
            },
            None => Bar {
                label: rec.fault.clone(),
                value: r
                    .recovery
                    .iter()
                    .filter_map(|x| x.converged_after_ms)
                    .max()
                    .unwrap_or(1) as f64,
                text: "never converged".into(),
                class: "bad",
            },
        })
        .collect();
    h.push_str(&svg::bar_chart("heal -> all peers converged", &bars));
    h.push_str("<table><tr><th>fault</th><th>healed at</th><th>converged after</th></tr>");
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
    h.push_str("</table>");

    let p = &r.figures.propagation;
    h.push_str("<h2>Propagation latency</h2>");
    let _ = write!(
        h,
        "<p>From a write at one peer to the same content visible at the same path on each other peer, and from a delete to the path gone ({} pairs, {} of them deletes; {} never visible: overwritten first or lost a conflict). \
         <b>p50</b> {} · <b>p95</b> {} · <b>p99</b> {} · <b>max</b> {}</p>",
        p.samples,
        p.delete_pairs,
        p.never_visible,
        ms(p.p50_ms),
        ms(p.p95_ms),
        ms(p.p99_ms),
        ms(p.max_ms)
    );
    if let Some(resolution) = p.resolution_ms {
        let _ = write!(
            h,
            "<p>Outside faults (the pairs no fault touched, what <code>expect.criteria</code> judges; {} pairs):              <b>p50</b> {} · <b>p95</b> {} · <b>p99</b> {} · <b>max</b> {}.              Timed by <b>{}</b>, resolution <b>{resolution} ms</b> ({} pairs by the inotify watcher, {} by the 200 ms poll alone, {} where the poll saw it first).</p>",
            p.calm.samples,
            ms(p.calm.p50_ms),
            ms(p.calm.p95_ms),
            ms(p.calm.p99_ms),
            ms(p.calm.max_ms),
            esc(&p.source),
            p.from_inotify,
            p.poll_only,
            p.poll_first
        );
    }
    let mut cols = Vec::new();
    let mut lower = 0;
    for (i, ub) in LATENCY_BUCKETS_MS.iter().enumerate() {
        cols.push((
            format!("{lower}-{}", svg::fmt_num(*ub as f64)),
            p.histogram.get(i).copied().unwrap_or(0),
        ));
        lower = *ub;
    }
    cols.push((
        format!(">{}", svg::fmt_num(lower as f64)),
        p.histogram.get(LATENCY_BUCKETS_MS.len()).copied().unwrap_or(0),
    ));
    // Trailing empty buckets say nothing; keep up to the last non-empty one (at least 6).
    let keep = cols.iter().rposition(|c| c.1 > 0).map_or(6, |i| (i + 1).max(6));
    cols.truncate(keep);
    h.push_str(&svg::column_chart(
        "write -> visible elsewhere, count per latency bucket (ms)",
        &cols,
    ));

    let c = &r.figures.conflicts;
    let t = &r.figures.traffic;
    h.push_str("<h2>Conflicts and traffic</h2><table class=\"figs\">");
    let rows = [
        ("writes (creates and modifies)", c.writes.to_string()),
        ("conflict copies in the final trees", c.copies.to_string()),
        ("conflict rate (copies / writes)", format!("{:.3}", c.rate)),
        (
            "conflicts reported by the peers (their `conflicts` counter)",
            opt(c.reported_by_peers, 0),
        ),
        ("operations (writes and deletes)", t.ops.to_string()),
        (
            "messages sent per operation (all peers, without summaries)",
            opt(t.messages_per_op, 2),
        ),
        (
            "theoretical minimum (N-1 peers reached once)",
            format!("{:.2}", t.min_messages_per_op),
        ),
        ("message overhead (actual / minimum)", opt(t.message_overhead, 2)),
        ("bytes sent per operation (without summaries)", opt(t.bytes_per_op, 0)),
        (
            "theoretical minimum (content to N-1 peers)",
            format!("{:.0}", t.min_bytes_per_op),
        ),
        ("byte overhead (actual / minimum)", opt(t.byte_overhead, 2)),
        (
            "summary exchange: messages, bytes",
            format!("{:.0}, {:.0}", t.summary_messages, t.summary_bytes),
        ),
    ];
    for (k, v) in rows {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&v));
    }
    h.push_str("</table>");

    if !r.figures.steady.is_empty() {
        h.push_str("<h2>Steady state</h2><p class=\"meta\">Each peer from the moment the trees last agreed to the end: CPU time over wall time (percent of one core) and anonymous memory at its highest (Docker stats, every second).</p>");
        h.push_str("<table><tr><th>peer</th><th>from (ms)</th><th>to (ms)</th><th>samples</th><th>CPU</th><th>memory</th></tr>");
        for s in &r.figures.steady {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.peer),
                s.from_ms,
                s.to_ms,
                s.samples,
                s.cpu_pct.map_or("-".to_string(), |c| format!("{c:.2} %")),
                s.memory_bytes
                    .map_or("-".to_string(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Peers over time</h2>");
    if series.is_empty() {
        h.push_str("<p class=\"meta\">No metrics were scraped (no <code>metrics.jsonl</code>).</p>");
    }
    type Pick = fn(&series::PeerSeries) -> &Vec<(u64, f64)>;
    let charts: [(&str, &str, Pick); 5] = [
        ("messages sent", "per s, all kinds", |s| &s.messages_per_s),
        ("bytes sent", "per s, all kinds", |s| &s.bytes_per_s),
        ("container network", "bytes per s, in + out, Docker stats", |s| {
            &s.net_bytes_per_s
        }),
        ("CPU", "% of one core", |s| &s.cpu_pct),
        ("memory", "MiB", |s| &s.mem_mib),
    ];
    if !series.is_empty() && series.len() > BAND_ABOVE {
        let _ = write!(
            h,
            "<p class=\"meta\">{} peers: each chart is a band across them (at each of {BAND_SLICES} slices of run time, the minimum, median, 90th percentile and maximum of the peers' means there), with the peers of the highest peaks named.</p>",
            series.len()
        );
    }
    if !series.is_empty() {
        for (title, unit, pick) in charts {
            if series.len() > BAND_ABOVE {
                let b = series::band(
                    series.iter().map(|(p, s)| (p.as_str(), pick(s).as_slice())),
                    axis.end_ms,
                    BAND_SLICES,
                    3,
                );
                let lines = [
                    ("max", svg::colour(3), &b.max),
                    ("p90", svg::colour(1), &b.p90),
                    ("median", svg::colour(0), &b.median),
                    ("min", svg::colour(2), &b.min),
                ]
                .map(|(name, colour, points)| Line { name, colour, points });
                h.push_str(&svg::time_chart(title, unit, axis, &lines));
                let named: Vec<String> = b
                    .outliers
                    .iter()
                    .map(|(p, v)| format!("<a href=\"#peer-{p}\">{p}</a> ({})", svg::fmt_num(*v), p = esc(p)))
                    .collect();
                let _ = write!(h, "<p class=\"meta\">highest: {}</p>", named.join(", "));
                continue;
            }
            let lines: Vec<Line> = series
                .iter()
                .map(|(name, s)| Line {
                    name,
                    colour: svg::colour(peers.iter().position(|p| p == name).unwrap_or(0)),
                    points: pick(s),
                })
                .collect();
            h.push_str(&svg::time_chart(title, unit, axis, &lines));
        }
    }

    let clocks: Vec<&Record> = history
        .iter()
        .filter(|r| matches!(r.event, Event::ClockMeasured { .. }))
        .collect();
    if !clocks.is_empty() {
        h.push_str("<h2>Clock offsets</h2>");
        h.push_str(&clock_chart(history, &peers, axis));
        h.push_str("<table><tr><th>t</th><th>peer</th><th>requested offset</th><th>measured offset</th></tr>");
        for rec in clocks {
            if let Event::ClockMeasured {
                peer,
                requested_ms,
                measured_ms,
                ..
            } = &rec.event
            {
                let _ = write!(
                    h,
                    "<tr><td>{:.1} s</td><td>{}</td><td>{requested_ms} ms</td><td>{}</td></tr>",
                    rec.t_ms as f64 / 1000.0,
                    esc(peer),
                    measured_ms.map_or("n/a".to_string(), |m| format!("{m} ms"))
                );
            }
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Peers</h2>");
    if r.peers.len() > BAND_ABOVE {
        // Screens of rows otherwise: folded, with the peers whose tree differs from the most common named.
        let mut trees: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &r.peers {
            *trees.entry(p.tree_hash.as_str()).or_default() += 1;
        }
        let common = trees
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(t, _)| *t)
            .unwrap_or_default();
        let odd: Vec<String> = r
            .peers
            .iter()
            .filter(|p| p.tree_hash != common)
            .map(|p| format!("<a href=\"#peer-{n}\">{n}</a>", n = esc(&p.name)))
            .collect();
        if !odd.is_empty() {
            let _ = write!(
                h,
                "<p class=\"meta\">holding another tree than the other {}: {}</p>",
                trees.get(common).copied().unwrap_or(0),
                odd.join(", ")
            );
        }
        let _ = write!(h, "<details><summary>{} peers</summary>", r.peers.len());
    }
    h.push_str("<table><tr><th>peer</th><th>key</th><th>files</th><th>tree hash</th><th>log</th></tr>");
    for p in &r.peers {
        let key =
            p.id.as_deref()
                .map_or("?".to_string(), |k| format!("{}…", &k[..k.len().min(16)]));
        let _ = write!(
            h,
            "<tr id=\"peer-{n}\"><td>{n}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td><a href=\"logs/{n}.log\">log</a></td></tr>",
            esc(&key),
            p.files,
            esc(&p.tree_hash),
            n = esc(&p.name)
        );
    }
    h.push_str("</table>");
    if r.peers.len() > BAND_ABOVE {
        h.push_str("</details>");
    }
    h.push_str("<h2>Events</h2><details><summary>every fault, heal and convergence record</summary><table><tr><th>t (ms)</th><th>event</th></tr>");
    let events: Vec<&Record> = history
        .iter()
        .filter(|r| !matches!(r.event, Event::Write { .. } | Event::Meta { .. }))
        .collect();
    for rec in events.iter().take(MAX_EVENT_ROWS) {
        let text = serde_json::to_string(&rec.event).unwrap_or_default();
        let _ = write!(h, "<tr><td>{}</td><td><code>{}</code></td></tr>", rec.t_ms, esc(&text));
    }
    if events.len() > MAX_EVENT_ROWS {
        let _ = write!(
            h,
            "<tr><td></td><td>… {} more in history.jsonl</td></tr>",
            events.len() - MAX_EVENT_ROWS
        );
    }
    let writes = history
        .iter()
        .filter(|r| matches!(r.event, Event::Write { .. } | Event::Meta { .. }))
        .count();
    let _ = writeln!(
        h,
        "</table></details><p class=\"meta\">{writes} workload operations in <a href=\"history.jsonl\">history.jsonl</a>; \
         tree changes in <a href=\"observations.jsonl\">observations.jsonl</a>; metrics in <a href=\"metrics.jsonl\">metrics.jsonl</a>; \
         plan as run in <a href=\"plan.yaml\">plan.yaml</a>; figures explained in docs/REPORTS.md.</p></body></html>"
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(verdict: Verdict) -> RunResult {
        RunResult {
            profile: "syncpeer".into(),
            clock: "libfaketime".into(),
            plan: "smoke<&>".into(),
            seed: 1,
            run_id: "abc".into(),
            verdict,
            started_at: "now".into(),
            duration_ms: 1500,
            image: "img".into(),
            image_id: Some("sha256:0123".into()),
            version: crate::VERSION.into(),
            commit: crate::COMMIT.into(),
            replay: replay_command(Path::new("/r/smoke-20261124T050102Z-abc")),
            flavor: "default".into(),
            engine: "userspace".into(),
            engines_probed: serde_json::Value::Null,
            checks: vec![
                Check {
                    name: "converged".into(),
                    rests_on: String::new(),
                    verdict: Verdict::Valid,
                    summary: "ok".into(),
                    evidence: serde_json::Value::Null,
                },
                Check {
                    name: "no-crash".into(),
                    rests_on: String::new(),
                    verdict,
                    summary: "bad <peer>".into(),
                    evidence: serde_json::json!({"x": 1}),
                },
            ],
            recovery: vec![],
            figures: Figures::default(),
            peers: vec![],
            soak: None,
        }
    }

    /// Issue 12: an 8-hour soak (288 windows of 100 s, five peers, a fault every 30 s, every window's
    /// heal and convergence) makes a report under 5 MB.
    #[test]
    fn an_eight_hour_soak_report_stays_under_five_megabytes() {
        use crate::soak::summary::{SoakFacts, SoakSummary, WindowResult};
        let peers: Vec<String> = (1..=5).map(|i| format!("p{i}")).collect();
        let mut r = result(Verdict::Invalid);
        r.peers = peers
            .iter()
            .map(|p| PeerSummary {
                name: p.clone(),
                files: 500,
                tree_hash: "ab".into(),
                id: None,
            })
            .collect();
        let rec = |t_ms, event| Record {
            t_ms,
            wall: String::new(),
            event,
        };
        let mut history = Vec::new();
        let mut windows = Vec::new();
        for k in 0..288u64 {
            let t = k * 110_000;
            history.push(rec(t, Event::Diverged));
            for f in 0..3u64 {
                let id = format!("partition-1.w{k}.{f}#1");
                history.push(rec(
                    t + f * 30_000,
                    Event::FaultStarted {
                        id: id.clone(),
                        step: id.clone(),
                        kind: "partition".into(),
                        detail: serde_json::json!({"links": [[0, 1], [1, 0]]}),
                    },
                ));
                history.push(rec(t + f * 30_000 + 20_000, Event::FaultStopped { id, undo_ms: None }));
            }
            history.push(rec(t + 100_000, Event::HealedAll));
            history.push(rec(t + 100_500, Event::Converged { tree_hash: "x".into() }));
            r.recovery.push(Recovery {
                fault: format!("w{k} heal-all"),
                healed_at_ms: t + 100_000,
                converged_after_ms: Some(500),
            });
            windows.push(WindowResult {
                window: k,
                from_ms: k * 100_000,
                to_ms: (k + 1) * 100_000,
                started_ms: t,
                judged_ms: t + 108_000,
                verdict: if k == 7 { Verdict::Invalid } else { Verdict::Valid },
                checks: BTreeMap::new(),
                failures: if k == 7 {
                    vec!["no-lost-update: 1 lost update".into()]
                } else {
                    vec![]
                },
                faults: 3,
                operations: 500,
                recovered_after_ms: Some(500),
                began_divergent: 0,
                orchestrator_rss_kib: Some(40_000),
                folder: format!("windows/{k:04}"),
                replay: format!("chaos soak chaos-plans/soak.yaml --seed 1 --duration 8h --window {k}"),
            });
        }
        r.soak = Some(SoakSummary {
            windows,
            soak: SoakFacts::default(),
        });
        let end = 288 * 110_000u64;
        let line: Vec<(u64, f64)> = (0..600u64).map(|i| (i * end / 600, (i % 7) as f64)).collect();
        let one = series::PeerSeries {
            messages_per_s: line.clone(),
            bytes_per_s: line.clone(),
            cpu_pct: line.clone(),
            mem_mib: line.clone(),
            net_bytes_per_s: line,
        };
        let series: BTreeMap<String, series::PeerSeries> = peers.iter().map(|p| (p.clone(), one.clone())).collect();
        let page = html(&r, &history, &series);
        assert!(page.contains("window 7: invalid"));
        assert!(page.len() < 5 << 20, "{} bytes", page.len());
    }

    #[test]
    fn junit_has_one_case_per_check_and_marks_failures() {
        let x = junit(&result(Verdict::Invalid));
        assert_eq!(x.matches("<testcase ").count(), 2);
        assert!(x.contains("failures=\"1\""));
        assert!(x.contains("<failure type=\"invalid\" message=\"invalid: bad &lt;peer&gt;\""));
        assert!(x.contains("name=\"smoke&lt;&amp;&gt;\""), "escaped: {x}");
    }

    #[test]
    fn junit_reports_unknown_as_a_failure_with_its_reason() {
        let x = junit(&result(Verdict::Unknown));
        assert!(x.contains("failures=\"1\""), "{x}");
        assert!(x.contains("skipped=\"0\""), "{x}");
        assert!(!x.contains("<skipped"), "unknown is not skipped: {x}");
        assert!(
            x.contains("<failure type=\"unknown\" message=\"unknown: bad &lt;peer&gt;\">{&quot;x&quot;:1}</failure>"),
            "the reason and the evidence: {x}"
        );
        let valid = junit(&result(Verdict::Valid));
        assert!(
            valid.contains("failures=\"0\"") && !valid.contains("<failure"),
            "{valid}"
        );
    }

    #[test]
    fn result_json_names_the_tool_the_image_and_the_replay() {
        let v: serde_json::Value = serde_json::to_value(result(Verdict::Valid)).unwrap();
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        let commit = v["commit"].as_str().unwrap();
        assert!(
            commit == "unknown" || (commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
            "{commit}"
        );
        assert_eq!(v["image_id"], "sha256:0123");
        assert_eq!(v["replay"], "chaos replay /r/smoke-20261124T050102Z-abc");
    }

    #[test]
    fn the_replay_command_is_absolute_and_quoted() {
        let rel = replay_command(Path::new("reports/smoke-x"));
        let cwd = std::env::current_dir().unwrap();
        assert!(rel.starts_with(&format!("chaos replay {}", cwd.display())), "{rel}");
        assert!(rel.ends_with("/reports/smoke-x"), "{rel}");
        assert_eq!(
            replay_command(Path::new("/r/it's here")),
            "chaos replay '/r/it'\\''s here'"
        );
    }

    #[test]
    fn a_long_run_timeline_stays_small() {
        let history: Vec<Record> = (0..20_000u64)
            .map(|i| Record {
                t_ms: i * 100,
                wall: String::new(),
                event: Event::Write {
                    op: i,
                    peer: "p1".into(),
                    kind: crate::plan::FileOpKind::Modify,
                    path: "a".into(),
                    size: 1,
                    hash: None,
                    base: None,
                    outcome: crate::record::history::Outcome::Ok,
                },
            })
            .collect();
        let t = timeline(&history, &["p1".to_string()], TimeAxis { end_ms: 2_000_000 });
        let ticks = t.matches("<line").count();
        assert!(ticks < 1000, "{ticks} ticks for 20000 operations");
        assert!(ticks > 500, "still one per pixel column: {ticks}");
    }

    #[test]
    fn problems_are_listed_readably() {
        let ev = serde_json::json!({"problems": [{
            "peer": "p1", "path": "a.txt",
            "lost_write": {"op": 38, "peer": "p5", "t_ms": 7819, "content": "9b98"},
            "found_at_path": {"content": "07c3", "written_by": {"op": 37, "peer": "p4", "t_ms": 7814, "content": "07c3"}},
        }]});
        let l = problem_lines(&ev, 10);
        assert_eq!(
            l,
            vec![
                "p1 · a.txt — found at path: 07c3 (from op 37 by p4 at 7.8 s); lost write: op 38 by p5 at 7.8 s (9b98)"
            ]
        );
    }

    #[test]
    fn html_escapes_and_shows_the_verdict() {
        let h = html(&result(Verdict::Valid), &[], &BTreeMap::new());
        assert!(h.contains("<span class=\"valid\">valid</span>"));
        assert!(!h.contains("smoke<&>"));
        assert!(
            !h.contains("http://") && !h.contains("https://"),
            "self-contained: no external resources"
        );
    }
}
