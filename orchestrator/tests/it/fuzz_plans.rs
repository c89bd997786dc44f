//! Plans fuzzed (issue 13): mutants of the shipped plans, the bad-plans corpus and the topology
//! files go through parse, resolve, the profile check and the generator (and a soak's first and last
//! windows), in process. Properties: nothing panics, every input
//! is done within a generous bound, every error is located (`line >= 1`) and explained (`; allowed: `),
//! and every schedule made stays within the documented limits.
//!
//! Bounded for CI: `CHAOS_FUZZ_SECS` (default 20) seconds over `CHAOS_FUZZ_THREADS` (default 1)
//! threads from `CHAOS_FUZZ_SEED` (default 1). The long run in docs/FUZZING.md is
//! `CHAOS_FUZZ_SECS=600 CHAOS_FUZZ_THREADS=2 cargo test -p syftchaos --test it fuzz_plans -- --nocapture`.
//! A failing input is written to `target/fuzz-plans-failure.yaml` with what went wrong.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use syftchaos::plan::limits::{MAX_FAULT_INTERVALS, MAX_WORKLOAD_OPS};
use syftchaos::soak::SoakSchedule;
use syftchaos::{generator, plan, profile};

use crate::util::*;

/// One input may take this long (parse, resolve, generate at the limits, in a debug build).
const PER_INPUT: Duration = Duration::from_secs(5);

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "3",
    "200",
    "201",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "1e308",
    "1e-300",
    "-0",
    "0.0001",
    ".nan",
    ".inf",
    "-.inf",
    "1.5",
    "0x10",
    "1_000",
];
const DURATIONS: &[&str] = &[
    "0s",
    "1ms",
    "99ms",
    "100ms",
    "1s",
    "24h",
    "25h",
    "86400",
    "86401",
    "292277025y",
    "-1s",
    "1e300s",
    "18446744073709551615s",
    "1.5s",
    "0.0000001s",
    "1h 30m",
    "3650d",
    "3651d",
    "+2h",
    "-2d",
    "soon",
    "",
];
const WORDS: &[&str] = &[
    "all",
    "one",
    "minority",
    "majority",
    "{random: 0}",
    "{random: 2}",
    "{random: 300}",
    "[]",
    "{}",
    "~",
    "\"\"",
    "p0",
    "p1",
    "p2",
    "p3",
    "p201",
    "../x",
    "/abs",
    ".syncpeer/x",
    "halves",
    "rolling",
    "isolate",
    "one-way",
    "islands",
    "bridge",
    "majorities-ring",
    "true",
    "false",
    "sync",
    "legacy",
    "netem",
    "[p1, p1]",
    "[[p1], [p2]]",
    "new-connections",
    "tamper",
    "[forge, flood]",
    "2mbit",
    "0kbit",
    "normal",
    "ring",
    "tree",
    "random",
    "star",
    "{kind: random, degree: 3}",
    "{edges: [[p1, p2]]}",
    "*a",
    "&a x",
    "!!str",
    "'",
    "\"",
    "\t",
    "- ",
    ": ",
];
const LINES: &[&str] = &[
    "  - {at: 0s, duration: 23h, every: 100ms, partition: {shape: halves}}",
    "  - {at: 1s, duration: 2s, kill: {peers: all}}",
    "  - {at: 1s, kill: {peers: one}}",
    "  - {at: 0s, peer: all, random: {duration: 23h, rate: 1000}}",
    "  - {at: 0s, peer: all, random: {duration: 100s, rate: 1000}}",
    "  - {at: 0s, duration: 24h, every: 100ms, clock: {peers: all, strobe: [-3650d, +3650d]}}",
    "  - {at: 0s, duration: 10s, every: 1s, partition: {shape: rolling}}",
    "  - {at: 0s, partition: {shape: one-way, from: minority, to: majority}}",
    "  - {at: 0s, partition: {shape: bridge}}",
    "  - {at: 0s, partition: {shape: majorities-ring}}",
    "  - {at: 0s, duration: 1s, link: {peers: {random: 1}, to: one, delay: 1m, jitter: 1m, rate: 100gbit}}",
    "  - {at: 0s, disk: {peers: all, fill: true}}",
    "peers: 1",
    "peers: 2",
    "peers: 200",
    "topology: {kind: tree, fanout: 1}",
    "topology: {kind: random, degree: 1}",
    "topology: line",
    "disk_limit: 4GiB",
    "image: a/b:c@sha256:0123456789abcdef0123456789abcdef",
    "x: &a [1, 2]",
    "<<: {peers: 3}",
    "---",
];

/// The inputs mutants are made from: the shipped plans (valid) and the corpus plans (each one slip away).
struct Seeds {
    shipped: Vec<String>,
    corpus: Vec<String>,
    /// Topology files, shipped and broken: mutated, they are read as `topology: fz`.
    topologies: Vec<String>,
}

impl Seeds {
    fn load() -> Seeds {
        Seeds {
            shipped: yaml_files(&plans()),
            corpus: yaml_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-plans")),
            topologies: [
                repo().join("topologies"),
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-plans/topologies"),
            ]
            .iter()
            .flat_map(|d| yaml_files(d))
            .collect(),
        }
    }

    /// Mostly a shipped plan, so that most mutants are one or two slips from a valid plan.
    fn pick(&self, rng: &mut ChaCha8Rng) -> &String {
        let pool = if rng.random_bool(0.7) {
            &self.shipped
        } else {
            &self.corpus
        };
        pool.choose(rng).expect("seed plans")
    }
}

fn yaml_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned())
        .collect()
}

/// 1 to 4 mutations: bytes, numbers, durations, words, whole lines (dropped, doubled, spliced, re-indented).
fn mutate(seeds: &Seeds, base: &str, rng: &mut ChaCha8Rng) -> String {
    let mut text = base.to_string();
    for _ in 0..rng.random_range(1..=4) {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = rng.random_range(0..lines.len());
        match rng.random_range(0..10) {
            0 => {
                // A byte flipped, inserted or removed (kept UTF-8: the loader refuses the rest itself).
                let mut bytes = std::mem::take(&mut lines[i]).into_bytes();
                let at = rng.random_range(0..=bytes.len());
                match rng.random_range(0..3) {
                    0 if at < bytes.len() => bytes[at] ^= 1 << rng.random_range(0..7),
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, *b" -:{}[],&*!#'\"\t0123456789".choose(rng).unwrap()),
                }
                lines[i] = String::from_utf8_lossy(&bytes).into_owned();
            }
            1 | 2 => lines[i] = replace_token(&lines[i], rng, is_number, NUMBERS),
            3 => lines[i] = replace_token(&lines[i], rng, is_duration, DURATIONS),
            4 => lines[i] = replace_value(&lines[i], rng),
            5 => {
                lines.remove(i);
            }
            6 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            7 => lines.insert(i, LINES.choose(rng).unwrap().to_string()),
            8 => {
                let other = seeds.pick(rng);
                if let Some(l) = other.lines().collect::<Vec<_>>().choose(rng) {
                    lines.insert(i, l.to_string());
                }
            }
            _ => {
                if rng.random_bool(0.5) {
                    lines[i].insert_str(0, "  ");
                } else if lines[i].starts_with("  ") {
                    lines[i].replace_range(..2, "");
                }
            }
        }
        text = lines.join("\n");
        text.push('\n');
    }
    text
}

fn is_number(t: &str) -> bool {
    !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-')
}

fn is_duration(t: &str) -> bool {
    let t = t.trim_start_matches(['+', '-']);
    t.starts_with(|c: char| c.is_ascii_digit()) && t.ends_with(['s', 'm', 'h', 'd'])
}

/// One whitespace/punctuation-separated token matching `pick` swapped for one of `with`.
fn replace_token(line: &str, rng: &mut ChaCha8Rng, pick: fn(&str) -> bool, with: &[&str]) -> String {
    let parts: Vec<&str> = line.split_inclusive([' ', ',', '{', '}', '[', ']']).collect();
    let spots: Vec<usize> = (0..parts.len())
        .filter(|i| pick(parts[*i].trim_end_matches([' ', ',', '{', '}', '[', ']'])))
        .collect();
    let Some(&at) = spots.choose(rng) else {
        return line.to_string();
    };
    let token = parts[at].trim_end_matches([' ', ',', '{', '}', '[', ']']);
    let tail = &parts[at][token.len()..];
    let mut out: String = parts[..at].concat();
    out.push_str(with.choose(rng).unwrap());
    out.push_str(tail);
    out.push_str(&parts[at + 1..].concat());
    out
}

/// The value after one `key: ` swapped for a word, a number or a duration.
fn replace_value(line: &str, rng: &mut ChaCha8Rng) -> String {
    let keys: Vec<usize> = line.match_indices(": ").map(|(i, _)| i + 2).collect();
    let Some(&at) = keys.choose(rng) else {
        return line.to_string();
    };
    let end = line[at..].find([',', '}', ']']).map_or(line.len(), |e| at + e);
    let pool = [WORDS, NUMBERS, DURATIONS].choose(rng).unwrap();
    format!("{}{}{}", &line[..at], pool.choose(rng).unwrap(), &line[end..])
}

/// Runs one input through everything `chaos validate` does: `Ok(true)` if it is a valid plan,
/// `Ok(false)` if it is refused as it should be, `Err` saying which property broke.
fn check(text: &str, topologies: &Path, pr: &profile::Profile) -> Result<bool, String> {
    let path = Path::new("fuzz.yaml");
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut p = match plan::parse(text, path, topologies) {
            Ok(p) => p,
            Err(e) => return Some(e),
        };
        if let Err(e) = profile::check_plan(&mut p, pr) {
            return Some(e);
        }
        let s = generator::generate(&p);
        let writes = s
            .ops
            .iter()
            .filter(|o| matches!(o.action, generator::Action::Write(_)))
            .count() as u64;
        let faults = s
            .ops
            .iter()
            .filter(|o| matches!(o.action, generator::Action::FaultStart { .. }))
            .count() as u64;
        assert!(writes <= MAX_WORKLOAD_OPS, "{writes} workload ops made");
        assert!(faults <= MAX_FAULT_INTERVALS, "{faults} fault intervals made");
        // A soak's schedule is drawn lazily: its first and last windows' first actions, in time order.
        if let Some(soak) = SoakSchedule::new(&p) {
            for ops in [
                soak.actions().take(2_000).collect::<Vec<_>>(),
                soak.window(soak.windows().saturating_sub(1)).take(2_000).collect(),
            ] {
                assert!(
                    ops.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
                    "soak actions out of order"
                );
            }
        }
        None
    }));
    let took = started.elapsed();
    match outcome {
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panicked: {why}"))
        }
        Ok(_) if took > PER_INPUT => Err(format!("took {took:?}")),
        Ok(Some(e)) if e.line == 0 || !e.message.contains("; allowed: ") || e.message.contains('\n') => {
            Err(format!("error not located or not explained: {e}"))
        }
        Ok(refused) => Ok(refused.is_none()),
    }
}

#[test]
fn mutated_plans_never_panic_hang_or_go_unexplained() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let budget = Duration::from_secs(env("CHAOS_FUZZ_SECS", 20));
    let threads = env("CHAOS_FUZZ_THREADS", 1).max(1);
    let seed = env("CHAOS_FUZZ_SEED", 1);
    let seeds = Seeds::load();
    let topologies = repo().join("topologies");
    let pr = profile::load("syncpeer", &repo().join("peer-image/profiles")).expect("the syncpeer profile");
    // Panics are caught and counted; the default hook's message per mutant would drown the output.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let (done, rejected, stop) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    let failure = std::sync::Mutex::new(None::<(String, String)>);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (seeds, topologies, pr, done, rejected, stop, failure) =
                (&seeds, &topologies, &pr, &done, &rejected, &stop, &failure);
            s.spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(t));
                let own = tempfile::tempdir().unwrap();
                while started.elapsed() < budget && !stop.load(Ordering::Relaxed) {
                    // One in ten mutants is a topology file, read by a plan that names it.
                    let (text, topologies) = if rng.random_bool(0.1) {
                        let base = seeds.topologies.choose(&mut rng).expect("topology files");
                        std::fs::write(own.path().join("fz.yaml"), mutate(seeds, base, &mut rng)).unwrap();
                        let n = [1, 2, 3, 4, 5, 6, 10, 100].choose(&mut rng).unwrap();
                        (format!("name: fz\npeers: {n}\ntopology: fz\n"), own.path())
                    } else {
                        (mutate(seeds, seeds.pick(&mut rng), &mut rng), topologies.as_path())
                    };
                    match check(&text, topologies, pr) {
                        Ok(true) => {}
                        Ok(false) => {
                            rejected.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(why) => {
                            stop.store(true, Ordering::Relaxed);
                            let text = match std::fs::read_to_string(topologies.join("fz.yaml")) {
                                Ok(topo) if topologies != repo().join("topologies") => {
                                    format!("{text}# topologies/fz.yaml:\n{topo}")
                                }
                                _ => text,
                            };
                            failure.lock().unwrap().get_or_insert((text, why));
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    std::panic::set_hook(hook);
    let (n, r) = (done.load(Ordering::Relaxed), rejected.load(Ordering::Relaxed));
    eprintln!(
        "fuzz_plans: {n} inputs ({r} rejected, {} accepted) in {:.0?} on {threads} threads from seed {seed}, {} seeds",
        n - r,
        started.elapsed(),
        seeds.shipped.len() + seeds.corpus.len()
    );
    if let Some((text, why)) = failure.into_inner().unwrap() {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-plans-failure.yaml");
        let _ = std::fs::write(&out, format!("# {why}\n{text}"));
        panic!("{why}\n(input written to {})\n{text}", out.display());
    }
    assert!(n > 0 && r > 0 && r < n, "the mutants must reach both outcomes");
}
