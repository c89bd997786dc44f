//! The YAML library's errors in the project's words: `file:line:col: what is wrong; allowed: …`.
//!
//! serde-saphyr reports where and what in its own terms (`invalid u64`, `expected mapping start`,
//! `duplicate mapping key: at, set DuplicateKeyPolicy …`). [`yaml_error`] finds the key written at
//! that place in the source (and the key of the map around it, so `rate` in `random` and `rate` in
//! `link` read differently), names it, and says what the key allows from one table, [`allowed`].

use std::path::Path;

use super::PlanError;
use super::limits::{MAX_FILES, MAX_NAME_LEN, MAX_PEERS, MAX_SOAK_CONCURRENT};
use super::units::{DURATION_ALLOWED, SIZE_ALLOWED, SOAK_DURATION_ALLOWED};

const SELECTOR: &str = "a peer name, a list of peer names, all, one, minority, majority, or {random: k}";
const PERCENT: &str = "a percentage from 0 to 100";
const PATH: &str = "a relative path inside the sync folder, e.g. docs/a.txt";

/// What `key` (inside the map under `parent`) accepts; `None` for a key the plan does not have.
pub fn allowed(parent: Option<&str>, key: &str) -> Option<String> {
    let s = |t: &str| Some(t.to_string());
    match (parent, key) {
        (_, "name") => Some(format!(
            "letters, digits, `-`, `_` (and `.` in step names), at most {MAX_NAME_LEN} characters"
        )),
        (_, "description") => s("free text"),
        (_, "seed") => s("a whole number from 0 to 18446744073709551615"),
        (None, "peers") => Some(format!("a whole number from 1 to {MAX_PEERS}")),
        (_, "topology") => s(
            "full-mesh, ring, line, star, tree, random, the name of a file in topologies/, or a map with `kind` or `edges`",
        ),
        (_, "image") => {
            s("an image reference such as syftchaos/peer:latest or registry.example:5000/team/peer@sha256:<64 hex>")
        }
        (None, "peer") => s("a peer profile's name (syncpeer, syncthing) or folder"),
        (_, "flavor") => s("default, legacy, leak, mutant-* (syncpeer's; other profiles list their own)"),
        (Some("soak"), "duration") => s(SOAK_DURATION_ALLOWED),
        (Some("faults"), "duration") => {
            s("a map {min: <duration>, max: <duration>}, e.g. {min: 5s, max: 1m}, max at most the soak's window")
        }
        (Some("stagger" | "duration"), "min" | "max") => s(DURATION_ALLOWED),
        (
            _,
            "anti_entropy" | "quarantine" | "converge_within" | "quiet" | "at" | "duration" | "warmup" | "min_span",
        ) => s(DURATION_ALLOWED),
        (_, "memory_pct_per_hour" | "tasks_per_hour") => s("a number from 0 to 1000000"),
        (_, "leak") => s("a map with `warmup`, `min_span`, `memory_pct_per_hour` and `tasks_per_hour`"),
        (_, "recovery" | "propagation_p50" | "propagation_p95" | "propagation_p99") => {
            s("a duration more than 0, at most 24h, e.g. 100ms, 30s")
        }
        (_, "flood_slowdown") => s("a multiple of the calm propagation p99, more than 0, e.g. 2"),
        (_, "bytes_ratio" | "messages_ratio") => s("a multiple of the minimum, more than 0, at most 1000000, e.g. 1.5"),
        (_, "conflict_pct") => s("a percentage of writes, from 0 to 100, e.g. 0.1"),
        (_, "cpu_pct") => s("a percentage of one core, more than 0, at most 100000, e.g. 10"),
        (_, "memory") => Some(format!(
            "a size more than 0, at most 4GiB, e.g. 100MiB ({SIZE_ALLOWED})"
        )),
        (_, "criteria") => s(
            "a map of thresholds: recovery, propagation_p50, propagation_p95, propagation_p99, bytes_ratio, messages_ratio, conflict_pct, cpu_pct, memory, flood_slowdown",
        ),
        (_, "soak") => s("a map with duration, window, workload, max_concurrent, stagger, exclusive, faults"),
        (_, "window") => s("a duration from 10s to 24h, e.g. 10m"),
        (_, "max_concurrent") => Some(format!("a whole number from 1 to {MAX_SOAK_CONCURRENT}")),
        (_, "stagger") => s("a map {min: <duration>, max: <duration>} from 100ms, e.g. {min: 10s, max: 1m}"),
        (_, "exclusive") => s("a list of groups of fault names or fault keys, e.g. [[partition, link], [kill, pause]]"),
        (Some("soak"), "faults") => s("a list of faults such as {weight: 3, partition: {shape: halves}}"),
        (_, "weight") => s("a whole-number weight from 0 to 4294967295"),
        (Some("soak"), "workload") => s("a map {peers, rate, files, size, mix}, e.g. {rate: 10, files: 500}"),
        (Some("workload"), "rate") => s("operations per second, more than 0, at most 1000"),
        (_, "every") => s("a duration from 100ms to the step's `duration`, e.g. 2s"),
        (_, "delay" | "jitter" | "reorder_delay") => s("a duration from 0 to 1m, e.g. 150ms"),
        (_, "disk_limit") => Some(format!("a size from 4MiB to 4GiB ({SIZE_ALLOWED})")),
        (_, "engine") => s("auto, netem, userspace"),
        (_, "workload") => s("a list of entries such as {at: 1s, peer: p1, create: a.txt}"),
        (_, "steps") => s("a list of steps such as {at: 1s, duration: 2s, partition: {shape: halves}}"),
        (_, "expect") => s("a map with `converge_within`, `quiet`, `leak` and `criteria`"),
        (_, "kind") => s("full-mesh, ring, line, star, tree, random"),
        (_, "fanout") => s("a whole number from 1 to the peer count"),
        (_, "degree") => s("a whole number from 1 to the peer count minus one, with peers x degree even"),
        (_, "edges") => s("a list of pairs of peer names, e.g. [[p1, p2], [p2, p3]]"),
        (Some("mix"), "create" | "modify" | "delete" | "touch" | "chmod") => {
            s("a whole-number weight from 0 to 4294967295")
        }
        (_, "create" | "modify" | "delete" | "touch" | "chmod" | "stale") => s(PATH),
        (_, "random") => random_allowed(parent),
        (Some("byzantine"), "paths") => s("a path glob or a list of them, e.g. \"secret/**\""),
        (Some("byzantine"), "to") => s("a peer name or a list of peer names"),
        (_, "peer" | "peers" | "to" | "from") => s(SELECTOR),
        (_, "size") => s("a size or a range of sizes, e.g. 4KiB or 1KiB..64KiB, at most 1GiB each"),
        (Some("random"), "rate") => s("operations per second, more than 0, at most 1000"),
        (Some("link"), "rate") => s("a bandwidth from 1kbit to 100gbit, e.g. 500kbit, 2mbit"),
        (Some("clock"), "rate") => s("a speed factor, more than 0, at most 100"),
        (_, "rate") => s("a number (ops per second in `random`, a bandwidth in `link`, a speed factor in `clock`)"),
        (_, "files") => Some(format!("a whole number from 1 to {MAX_FILES}")),
        (_, "mix") => s("weights, e.g. {create: 50, modify: 40, delete: 10, touch: 0, chmod: 0}"),
        (_, "partition") => s("a map with `groups` or `shape`, e.g. {shape: halves}"),
        (_, "link") => s(
            "a map of packet faults, e.g. {peers: p1, delay: 100ms, loss: 5}, or a man in the middle, {peers: p1, to: p2, mitm: alter}",
        ),
        (_, "mitm") => s("alter, drop or replay (a man in the middle on the link's streams)"),
        (_, "clock") => s("a map such as {peers: p1, offset: +1h}"),
        (_, "kill" | "stop" | "pause") => s("a map {peers: <peers>}"),
        (_, "lock") => s("a map {peers: <peers>, stale: <path>} or {peers: <peers>, unwritable: true}"),
        (_, "disk") => s("a map {peers: <peers>} with one of corrupt: <path>|true, truncate: <path>|true, fill: true"),
        (_, "byzantine") => s("a map {peers: <peers>, behaviour: <behaviour>}, with `paths` and `to` for drop"),
        (_, "shape") => s("halves, isolate, islands, bridge, majorities-ring, one-way, rolling"),
        (_, "groups") => s("a list of at least two peer lists, e.g. [[p1], [p2, p3]]"),
        (_, "mode") => s("drop, new-connections"),
        (_, "port") => s("a port number from 1 to 65535, or a port name of the peer profile (e.g. sync)"),
        (_, "direction") => s("egress, ingress, both"),
        (_, "distribution") => s("uniform, normal, pareto"),
        (Some("link"), "corrupt") | (_, "loss" | "loss_correlation" | "duplicate" | "reorder") => s(PERCENT),
        (_, "corrupt" | "truncate") => s("a path in the sync folder, or true for a seeded pick"),
        (_, "offset") => s("a signed offset such as +1h, -30m, +90s, -2d, at most 3650d either way"),
        (_, "strobe") => s("two offsets, e.g. [+0s, +2h]"),
        (_, "unwritable" | "fill") => s("true"),
        (_, "behaviour") => s(
            "tamper, forge, withhold, flood, slowloris, equivocate, replay, drop, sybil, lie-timestamp, lie-counter, or a list of them",
        ),
        _ => None,
    }
}

fn random_allowed(parent: Option<&str>) -> Option<String> {
    Some(match parent {
        Some("peer" | "peers" | "to" | "from") => "a whole number of peers from 1 to the peer count".to_string(),
        _ => "a map {duration, rate, files, mix}, or {random: k} to pick k peers".to_string(),
    })
}

/// What a file's keys allow, and the document that describes them.
struct Schema {
    allowed: fn(Option<&str>, &str) -> Option<String>,
    doc: &'static str,
}

const PLAN: Schema = Schema {
    allowed,
    doc: "docs/PLANS.md",
};

/// Peer profiles share the plans' words, not their keys.
const PROFILE: Schema = Schema {
    allowed: |_, _| None,
    doc: "docs/PEER-CONTRACT.md",
};

/// A YAML library error in a plan or topology file: located, the key named, what it allows said.
pub fn yaml_error(file: &Path, text: &str, e: &serde_saphyr::Error) -> PlanError {
    located(file, text, e, &PLAN)
}

/// The same for a peer profile (its keys are described in docs/PEER-CONTRACT.md).
pub fn profile_yaml_error(file: &Path, text: &str, e: &serde_saphyr::Error) -> PlanError {
    located(file, text, e, &PROFILE)
}

fn located(file: &Path, text: &str, e: &serde_saphyr::Error, schema: &Schema) -> PlanError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .filter(|(l, _)| *l > 0)
        .unwrap_or((1, 1));
    let full = e.without_snippet().to_string();
    // The crate appends its own "at line L, column C"; we print the location first, in one style.
    let raw = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => full.as_str(),
    }
    .trim();
    let place = Place::find(text, line, column);
    PlanError {
        file: file.to_path_buf(),
        line,
        column,
        message: explain(raw, &place, schema),
    }
}

/// What is written at an error's place: the key there (if the place is a key), the key whose value
/// holds the place and the key of the map around that, and the value's first text.
#[derive(Debug, Default)]
struct Place {
    /// The place is `word:` (a key, or the first key of a block map that is itself the value).
    here: Option<String>,
    /// The place opens a block line: only indentation and `- ` before it.
    block: bool,
    /// That line is a list item (`- `).
    item: bool,
    /// The key whose value holds the place (found on the line, or on a less indented line above).
    key: Option<String>,
    /// The key of the map around `key` (`random` for its `rate`), to tell same-named keys apart.
    parent: Option<String>,
    /// The text at the place (after `here:` when the place is a key).
    value: Option<String>,
}

impl Place {
    fn find(text: &str, line: u64, column: u64) -> Place {
        let lines: Vec<&str> = text.lines().collect();
        let Some(row) = usize::try_from(line).ok().and_then(|l| l.checked_sub(1)) else {
            return Place::default();
        };
        let Some(this) = lines.get(row) else {
            return Place::default();
        };
        let col = usize::try_from(column).unwrap_or(1).saturating_sub(1);
        let prefix: String = this.chars().take(col).collect();
        let rest: String = this.chars().skip(col).take(200).collect();
        let block = prefix.trim_matches([' ', '-']).is_empty();
        let item = this.trim_start().starts_with("- ") || rest.starts_with("- ");
        let (here, rest) = match rest.trim_start_matches(['-', ' ']).split_once(':') {
            Some((k, v)) if is_key(k.trim()) => (Some(k.trim().to_string()), v.to_string()),
            _ => (None, rest),
        };
        let value = Some(value_text(&rest)).filter(|v| !v.is_empty());
        let (mut key, mut parent) = flow_keys(&prefix);
        if key.is_none() || parent.is_none() {
            // Block style: the key (or the parent) is on an earlier, less indented line.
            let mut indent = indent_of(this);
            let mut found: Vec<String> = key.iter().cloned().collect();
            for l in lines[..row].iter().rev() {
                if found.len() >= 2 {
                    break;
                }
                let t = l.trim_start();
                if t.is_empty() || t.starts_with('#') || indent_of(l) >= indent {
                    continue;
                }
                indent = indent_of(l);
                if let Some(k) = block_key(t) {
                    found.push(k);
                }
            }
            let mut it = found.into_iter();
            key = it.next();
            parent = it.next().or(parent);
        }
        Place {
            here,
            block,
            item,
            key,
            parent,
            value,
        }
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '-']).len()
}

/// `peers:` or `- name: x` opening a block: the key.
fn block_key(t: &str) -> Option<String> {
    let t = t.trim_start_matches(['-', ' ']);
    let (k, _) = t.split_once(':')?;
    is_key(k).then(|| k.to_string())
}

fn is_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 40 && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// In `a: {b: 1, c: [x, ` the key is `c` and the key of its map `a`: found by scanning the line's
/// prefix with a stack of open `{` and `[` (a list's items belong to the list's key).
fn flow_keys(prefix: &str) -> (Option<String>, Option<String>) {
    struct Frame {
        map: bool,
        opener: Option<String>,
        last: Option<String>,
    }
    let mut frames = vec![Frame {
        map: true,
        opener: None,
        last: None,
    }];
    let mut word = String::new();
    for c in prefix.chars() {
        let top = frames.last_mut().expect("the root frame is never popped");
        match c {
            '{' | '[' => {
                let opener = top.last.clone();
                let last = if c == '[' { opener.clone() } else { None };
                frames.push(Frame {
                    map: c == '{',
                    opener,
                    last,
                });
                word.clear();
            }
            '}' | ']' => {
                if frames.len() > 1 {
                    frames.pop();
                }
                word.clear();
            }
            ':' => {
                if is_key(word.trim()) {
                    top.last = Some(word.trim().to_string());
                }
                word.clear();
            }
            ',' => word.clear(),
            _ => word.push(c),
        }
    }
    let key = frames.last().and_then(|f| f.last.clone());
    let parent = frames[1..].iter().rev().find(|f| f.map).and_then(|f| f.opener.clone());
    (key, parent)
}

/// The value's text as the user wrote it: a scalar up to `,`, `}`, `]` or the end of line; a map
/// or list by its kind.
fn value_text(rest: &str) -> String {
    let t = rest.trim_start();
    if t.starts_with('{') {
        return "a map".to_string();
    }
    if t.starts_with('[') || t.starts_with("- ") {
        return "a list".to_string();
    }
    let end = t.find([',', '}', ']', '#']).unwrap_or(t.len());
    let v = t[..end].trim();
    let shown: String = v.chars().take(40).collect();
    if shown.is_empty() {
        return String::new();
    }
    format!("`{shown}`")
}

fn explain(raw: &str, place: &Place, schema: &Schema) -> String {
    let key = place.key.as_deref();
    let parent = place.parent.as_deref();
    let allows = |k: &str| (schema.allowed)(parent, k).unwrap_or_else(|| format!("see {}", schema.doc));
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let list = expected
            .trim_start_matches(", expected one of ")
            .trim_start_matches(", expected ")
            .replace('`', "");
        let list = if list.trim().is_empty() {
            "no keys here".to_string()
        } else {
            list
        };
        return format!("unknown key `{name}`; allowed: {list}");
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        return format!("`{name}` is required here; allowed: {}", allows(name));
    }
    if let Some(rest) = raw.strip_prefix("duplicate mapping key: ") {
        let name = rest.split(',').next().unwrap_or(rest).trim();
        return format!("`{name}` is given twice in one map; allowed: each key once");
    }
    if raw.contains("multiple YAML documents") {
        return "a second YAML document (`---`) in the file; allowed: one plan per file".to_string();
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let list = expected.trim_start_matches(", expected one of ").replace('`', "");
        let k = key.map(|k| format!("`{k}`: ")).unwrap_or_default();
        return format!("{k}unknown value `{name}`; allowed: {list}");
    }
    if let Some(why) = budget(raw) {
        return why;
    }
    let from_visitor = ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|p| raw.starts_with(p));
    let shape_error = from_visitor
        || [
            "invalid u",
            "invalid i",
            "invalid floating",
            "invalid boolean",
            "expected string",
            "expected mapping",
            "expected sequence",
            "expected a ",
            "data did not match",
            "expected scalar",
            "expected integer",
            "expected float",
            "expected bool",
            "cannot deserialize null",
        ]
        .iter()
        .any(|p| raw.starts_with(p));
    // Which key is wrong, and what its value is.
    let (key, value) = match (&place.here, from_visitor) {
        // A visitor's error points at the key whose value it refused.
        (Some(here), true) => (Some(here.as_str()), place.value.clone().or_else(|| kind_in(raw))),
        // The library's own type errors point at the value: a key there opens a map (or a list of
        // maps) that is itself the wrong value, of the key above it.
        (Some(_), false) if place.block => (key, Some(if place.item { "a list" } else { "a map" }.to_string())),
        (Some(here), false) => (Some(here.as_str()), place.value.clone()),
        (None, _) => (key, place.value.clone().or_else(|| kind_in(raw))),
    };
    match key {
        Some(k) if shape_error => {
            let value = value.unwrap_or_else(|| "this value".to_string());
            format!("`{k}` cannot be {value}; allowed: {}", allows(k))
        }
        Some(k) if raw.contains("; allowed: ") => {
            if raw.starts_with(&format!("`{k}`")) {
                raw.to_string()
            } else {
                format!("`{k}`: {raw}")
            }
        }
        _ if raw.contains("; allowed: ") => raw.to_string(),
        None if shape_error => format!(
            "the file holds {} where a map belongs; allowed: a map of keys as described in {}",
            value.unwrap_or_else(|| "something else".to_string()),
            schema.doc
        ),
        _ if raw.contains("tab") => {
            format!("YAML syntax: {raw}; allowed: indentation with spaces, never tabs")
        }
        _ => format!("YAML syntax: {raw}; allowed: well-formed YAML (see {})", schema.doc),
    }
}

/// `invalid type: sequence, expected …` names the kind of value it got.
fn kind_in(raw: &str) -> Option<String> {
    let got = raw.strip_prefix("invalid type: ")?.split(", expected").next()?;
    Some(match got {
        "sequence" => "a list".to_string(),
        "map" => "a map".to_string(),
        other => other.replace('"', "`"),
    })
}

/// The library's resource limits (aliases, nesting, size), in the plan's terms (the numbers are
/// the ones `yaml_options` in `plan/mod.rs` sets from `limits`).
fn budget(raw: &str) -> Option<String> {
    use super::limits::{MAX_PLAN_BYTES, MAX_YAML_ALIASES, MAX_YAML_DEPTH, MAX_YAML_NODES, MAX_YAML_REPLAYED};
    let breach = raw.strip_prefix("budget breached: ").unwrap_or(raw);
    let kind = breach.split([' ', '{', '(']).next().unwrap_or_default();
    let (what, allowed) = match kind {
        "AliasAnchorRatio" => (
            "too many aliases (`*name`) for the anchors (`&name`) they repeat".to_string(),
            "at most 10 aliases per anchor once a file has 100 aliases".to_string(),
        ),
        "Aliases" => (
            "too many aliases (`*name`)".into(),
            format!("at most {MAX_YAML_ALIASES}"),
        ),
        "Anchors" => (
            "too many anchors (`&name`)".into(),
            format!("at most {MAX_YAML_ALIASES}"),
        ),
        "Depth" => (
            "the YAML is nested too deeply".into(),
            format!("at most {MAX_YAML_DEPTH} levels"),
        ),
        "Nodes" | "Events" | "SequenceUnbalanced" => (
            "the YAML has too many values".into(),
            format!("at most {MAX_YAML_NODES} values (maps, lists and scalars)"),
        ),
        "ScalarBytes" | "InputBytes" | "CommentBytes" => (
            "the YAML holds too much text".into(),
            format!("at most {MAX_PLAN_BYTES} bytes"),
        ),
        "Documents" => (
            "a second YAML document (`---`) in the file".into(),
            "one plan per file".into(),
        ),
        "MergeKeys" => ("too many merge keys (`<<`)".into(), "a few".into()),
        _ if raw.starts_with("alias replay") => (
            "aliases (`*name`) repeat too much of the file".into(),
            format!("at most {MAX_YAML_REPLAYED} values replayed by aliases, nested at most 8 deep"),
        ),
        _ if raw.contains("nesting") || raw.contains("recursion") => (
            "the YAML is nested too deeply".into(),
            format!("at most {MAX_YAML_DEPTH} levels"),
        ),
        _ => return None,
    };
    Some(format!("{what}; allowed: {allowed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_keys_find_the_key_and_its_map() {
        let (k, p) = flow_keys("  - {at: 1s, peer: all, random: {duration: 5s, rate: ");
        assert_eq!((k.as_deref(), p.as_deref()), (Some("rate"), Some("random")));
        let (k, p) = flow_keys("  - {at: 1s, duration: 4s, clock: {peers: p1, strobe: [+0s, ");
        assert_eq!((k.as_deref(), p.as_deref()), (Some("strobe"), Some("clock")));
        let (k, p) = flow_keys("peers: ");
        assert_eq!((k.as_deref(), p), (Some("peers"), None));
    }

    #[test]
    fn block_keys_are_found_above() {
        let text = "name: x\nsteps:\n  - at 1s\n";
        let place = Place::find(text, 3, 5);
        assert_eq!(place.key.as_deref(), Some("steps"));
    }

    #[test]
    fn library_words_become_the_plans() {
        let place = Place {
            key: Some("peers".into()),
            value: Some("`abc`".into()),
            ..Place::default()
        };
        let m = explain("invalid i64", &place, &PLAN);
        assert_eq!(m, "`peers` cannot be `abc`; allowed: a whole number from 1 to 200");
        let m = explain(
            "duplicate mapping key: at, set DuplicateKeyPolicy in Options if acceptable",
            &place,
            &PLAN,
        );
        assert!(
            !m.contains("DuplicateKeyPolicy") && m.contains("`at` is given twice"),
            "{m}"
        );
        let m = budget("budget breached: AliasAnchorRatio { aliases: 900, anchors: 1 }").unwrap();
        assert_eq!(
            m,
            "too many aliases (`*name`) for the anchors (`&name`) they repeat; allowed: at most 10 aliases per anchor once a file has 100 aliases"
        );
    }
}
