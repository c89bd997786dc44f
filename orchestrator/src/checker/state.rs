//! The checkers of the final trees against the causal order of the operations: right final state,
//! no lost update, no zombie, no corruption. Each looks at every peer separately, so the evidence names
//! the peer, the path, what was expected and what was found.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::causal::{Op, PathOrder};
use super::{Check, PeerFinal, Verdict};
use crate::profile::Conventions;
use crate::tree::Tree;

/// Evidence lists are cut to this many items (the count is always given).
const MAX_ITEMS: usize = 50;

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// An operation as evidence: op id, peer, time, content.
pub fn describe(op: &Op) -> Value {
    json!({
        "op": op.op,
        "peer": op.peer,
        "t_ms": op.t_ms,
        "content": op.hash.as_deref().map_or("deleted".to_string(), |h| short(h).to_string()),
    })
}

/// What a peer holds at a path, as evidence.
fn found_at(tree: &Tree, path: &str, order: Option<&PathOrder>) -> Value {
    match tree.files.get(path) {
        None => json!("absent"),
        Some(e) => {
            let by = order.and_then(|o| o.ops.iter().find(|op| op.hash.as_deref() == Some(e.hash.as_str())));
            match by {
                Some(op) => json!({"content": short(&e.hash), "written_by": describe(op)}),
                None => json!({"content": short(&e.hash), "written_by": null}),
            }
        }
    }
}

/// A peer's conflict copies as (origin path, content hash) -> author prefixes (empty when the daemon
/// names no author), built once per peer so that asking "is this write kept as a copy?" costs a
/// lookup, not a walk over the tree. Copies are recognised by the profile's `conflicts` pattern; a
/// hash prefix in the name, when the daemon writes one, must match the content.
struct Copies<'a>(BTreeMap<(String, &'a str), Vec<String>>);

impl<'a> Copies<'a> {
    fn of(tree: &'a Tree, conv: &Conventions) -> Copies<'a> {
        let mut m: BTreeMap<(String, &'a str), Vec<String>> = BTreeMap::new();
        for (p, e) in &tree.files {
            if let Some(c) = conv.conflict(p)
                && c.hash.as_ref().is_none_or(|h| e.hash.starts_with(h.as_str()))
            {
                m.entry((c.origin, e.hash.as_str()))
                    .or_default()
                    .push(c.author.unwrap_or_default());
            }
        }
        Copies(m)
    }

    /// Whether `hash` is kept as a conflict copy of `origin`, named after `author` when known.
    fn has(&self, origin: &str, hash: &str, author: Option<&str>) -> bool {
        self.0
            .get(&(origin.to_string(), hash))
            .is_some_and(|authors| author.is_none_or(|a| authors.iter().any(|x| a.starts_with(x.as_str()))))
    }
}

/// Each peer's public key by name, for the author part of conflict-copy names.
fn ids(peers: &[PeerFinal]) -> BTreeMap<&str, &str> {
    peers
        .iter()
        .filter_map(|p| p.id.as_deref().map(|id| (p.name.as_str(), id)))
        .collect()
}

fn check(name: &str, problems: Vec<Value>, unknowns: Vec<Value>, ok: String, what: &str) -> Check {
    let (verdict, summary) = if !problems.is_empty() {
        (Verdict::Invalid, format!("{} {what}", problems.len()))
    } else if !unknowns.is_empty() {
        (
            Verdict::Unknown,
            format!("{} paths the history cannot order (see evidence)", unknowns.len()),
        )
    } else {
        (Verdict::Valid, ok)
    };
    let (np, nu) = (problems.len(), unknowns.len());
    Check {
        name: name.into(),
        rests_on: String::new(),
        verdict,
        summary,
        evidence: json!({
            "problems": problems.into_iter().take(MAX_ITEMS).collect::<Vec<_>>(),
            "problem_count": np,
            "undecided": unknowns.into_iter().take(MAX_ITEMS).collect::<Vec<_>>(),
            "undecided_count": nu,
        }),
    }
}

fn is_delete(op: &Op) -> bool {
    op.hash.is_none()
}

/// Paths whose final state depends on an order the history cannot decide.
fn undecided(order: &BTreeMap<String, PathOrder>) -> BTreeMap<&str, Value> {
    order
        .iter()
        .filter_map(|(path, o)| {
            let max = o.maximal();
            let pairs: Vec<Value> = o
                .ambiguous
                .iter()
                // Whether a delete came before another delete that nothing followed, the path ends
                // absent either way: that order decides nothing.
                .filter(|(a, b)| {
                    max.contains(a) && !(is_delete(&o.ops[*a]) && is_delete(&o.ops[*b]) && max.contains(b))
                })
                .map(|(a, b)| json!({"earlier": describe(&o.ops[*a]), "later": describe(&o.ops[*b])}))
                .collect();
            (!pairs.is_empty()).then(|| (path.as_str(), json!({"path": path, "maybe_ordered": pairs})))
        })
        .collect()
}

/// Invariant 2: per path, the final content is the causally last write; concurrent last operations
/// leave one winner at the path and conflict copies of the losing writes. Every other file must be a
/// conflict copy of some write to its origin path.
pub fn right_final_state(order: &BTreeMap<String, PathOrder>, peers: &[PeerFinal], conv: &Conventions) -> Check {
    let undecided = undecided(order);
    let ids = ids(peers);
    let mut problems = Vec::new();
    for p in peers {
        let copies = Copies::of(&p.tree, conv);
        for (path, o) in order {
            if undecided.contains_key(path.as_str()) {
                continue;
            }
            let max = o.maximal();
            let writes: Vec<&Op> = max.iter().map(|&i| &o.ops[i]).filter(|op| op.hash.is_some()).collect();
            let deletes: Vec<&Op> = max.iter().map(|&i| &o.ops[i]).filter(|op| op.hash.is_none()).collect();
            let found = p.tree.files.get(path).map(|e| e.hash.as_str());
            let winner_ok = match found {
                None => !deletes.is_empty(),
                Some(h) => writes.iter().any(|w| w.hash.as_deref() == Some(h)),
            };
            let expected = || {
                let mut e: Vec<Value> = writes.iter().map(|w| describe(w)).collect();
                if !deletes.is_empty() {
                    e.push(json!("absent"));
                }
                e
            };
            if !winner_ok {
                problems.push(json!({
                    "peer": p.name,
                    "path": path,
                    "expected_one_of": expected(),
                    "found": found_at(&p.tree, path, Some(o)),
                }));
                continue;
            }
            for w in &writes {
                let h = w.hash.as_deref().expect("writes have content");
                let author = ids.get(w.peer.as_str()).copied();
                if found != Some(h) && !copies.has(path, h, author) {
                    problems.push(json!({
                        "peer": p.name,
                        "path": path,
                        "expected": {"conflict_copy_of": describe(w), "author": author},
                        "found": "no conflict copy with that content and author",
                    }));
                }
            }
        }
        for (path, e) in &p.tree.files {
            if order.contains_key(path) {
                continue;
            }
            // A conflict copy of some write to its origin, named after that write's author when known.
            let legit = conv.conflict(path).is_some_and(|c| {
                c.hash.as_ref().is_none_or(|h| e.hash.starts_with(h.as_str()))
                    && order.get(&c.origin).is_some_and(|o| {
                        o.ops.iter().any(|op| {
                            op.hash.as_deref() == Some(e.hash.as_str())
                                && c.author.as_ref().is_none_or(|a| {
                                    ids.get(op.peer.as_str()).is_none_or(|id| id.starts_with(a.as_str()))
                                })
                        })
                    })
            });
            if !legit {
                problems.push(json!({
                    "peer": p.name,
                    "path": path,
                    "expected": "absent (no operation wrote this path, and it is no conflict copy of a write)",
                    "found": {"content": short(&e.hash), "size": e.size},
                }));
            }
        }
    }
    let paths = order.len();
    check(
        "right-final-state",
        problems,
        undecided.into_values().collect(),
        format!("every peer holds the causally last version of all {paths} written paths, with conflict copies"),
        "wrong final states (peer, path, expected vs found in evidence)",
    )
}

/// Invariant 3: every acknowledged write that nothing causally overwrote or deleted survives on every
/// peer, at its path or as a conflict copy.
pub fn no_lost_update(order: &BTreeMap<String, PathOrder>, peers: &[PeerFinal], conv: &Conventions) -> Check {
    let mut problems = Vec::new();
    let mut unknowns = Vec::new();
    let mut survivors = 0usize;
    let copies: Vec<Copies> = peers.iter().map(|p| Copies::of(&p.tree, conv)).collect();
    // A write survives as a copy whatever the copy's author part says (a misnamed copy is a wrong
    // final state, not a lost update).
    for (path, o) in order {
        for i in o.maximal() {
            let w = &o.ops[i];
            let Some(h) = w.hash.as_deref() else { continue };
            survivors += 1;
            for (p, copies) in peers.iter().zip(&copies) {
                let kept = p.tree.files.get(path).is_some_and(|e| e.hash == h) || copies.has(path, h, None);
                if kept {
                    continue;
                }
                let item = json!({
                    "peer": p.name,
                    "path": path,
                    "lost_write": describe(w),
                    "found_at_path": found_at(&p.tree, path, Some(o)),
                });
                if o.maybe_superseded(i) {
                    unknowns.push(item);
                } else {
                    problems.push(item);
                }
            }
        }
    }
    check(
        "no-lost-update",
        problems,
        unknowns,
        format!("all {survivors} writes that nothing overwrote survive on every peer"),
        "lost updates (acknowledged writes gone from a peer; see evidence)",
    )
}

/// Invariant 4: content that a delete causally superseded never comes back at its path.
pub fn no_zombie(order: &BTreeMap<String, PathOrder>, peers: &[PeerFinal]) -> Check {
    let mut problems = Vec::new();
    let mut deletes = 0usize;
    for (path, o) in order {
        // content hash -> the delete that superseded it
        let mut deleted: BTreeMap<&str, &Op> = BTreeMap::new();
        for (i, op) in o.ops.iter().enumerate() {
            if op.hash.is_none() {
                deletes += 1;
                for &a in &o.preds[i] {
                    if let Some(h) = o.ops[a].hash.as_deref() {
                        deleted.entry(h).or_insert(op);
                    }
                }
            }
        }
        for p in peers {
            if let Some(e) = p.tree.files.get(path)
                && let Some(d) = deleted.get(e.hash.as_str())
            {
                problems.push(json!({
                    "peer": p.name,
                    "path": path,
                    "expected": "absent, or a version written after the delete",
                    "deleted_by": describe(d),
                    "found": found_at(&p.tree, path, Some(o)),
                }));
            }
        }
    }
    check(
        "no-zombie",
        problems,
        Vec::new(),
        format!("no deleted content came back ({deletes} deletes)"),
        "zombies (deleted content back at its path; see evidence)",
    )
}

/// Invariant 5: every file's content is the content of some acknowledged write.
pub fn no_corruption(order: &BTreeMap<String, PathOrder>, peers: &[PeerFinal]) -> Check {
    let written: BTreeSet<&str> = order
        .values()
        .flat_map(|o| o.ops.iter().filter_map(|op| op.hash.as_deref()))
        .collect();
    let mut problems = Vec::new();
    let mut files = 0usize;
    for p in peers {
        for (path, e) in &p.tree.files {
            files += 1;
            if !written.contains(e.hash.as_str()) {
                problems.push(json!({
                    "peer": p.name,
                    "path": path,
                    "expected": "content some write produced",
                    "found": {"content": short(&e.hash), "size": e.size},
                }));
            }
        }
    }
    check(
        "no-corruption",
        problems,
        Vec::new(),
        format!("all {files} files on all peers hold written content"),
        "corrupted files (content no write produced; see evidence)",
    )
}
