//! The causal order of a run's file operations, derived from the history and the monitor's
//! observations (no access to the peers' version vectors: the checker judges what a user could see).
//!
//! For two acknowledged operations on the same path, `a` happened before `b` (on peer X) when:
//! * `a` was on X too, earlier (a peer's own operations are ordered);
//! * `b` replaced (or deleted) `a`'s content: the workload records each operation's base, the hash
//!   of what was at the path on X just before;
//! * `a` wrote content `h` and X's tree showed `h` at that path before `b` happened (by more than
//!   [`WRITE_SLACK_MS`]);
//! * `a` was a delete and X's tree, after `a`, showed the path gone right after holding a version
//!   that happened before `a`;
//! * or transitively through other operations on the path.
//!
//! With bases, a delete `a` (which records the content it removed) is also ordered against an
//! operation `b` on X by what X held: if `b` replaced exactly what `a` deleted, X had not applied
//! `a` (concurrent); if `b` found the path empty, X last showed `a`'s deleted content, and `a` is the
//! only delete on the path before `b`, then X had applied `a` (before).
//!
//! Everything else is concurrent, except pairs the history cannot decide (only when the history has
//! no bases, or for deletes the rules above leave open, which the monitor's samples alone show): `a` came before `b` in time
//! (by at least [`MIN_PROPAGATION_MS`]) and X first showed `a`'s effect within [`AMBIGUITY_MS`]
//! after `b`, so X may already have applied `a` when its daemon turned `b` into a version (the
//! monitor samples every 200 ms and the daemon notices a local change a little after it happens).
//! Such pairs make the verdicts that depend on them `unknown` rather than a guess.

use std::collections::{BTreeMap, BTreeSet};

use crate::plan::FileOpKind;
use crate::record::history::{Event, Outcome, Record};
use crate::record::observations::Observation;

/// How long after an operation its peer may still have been applying a remote version unseen by the
/// monitor (a monitor interval, a tree read, the daemon's change detection, with margin).
pub const AMBIGUITY_MS: u64 = 1000;

/// Less than this after `a`, no other peer can have applied `a` yet: change detection, a push hint,
/// an index and a blob fetch, and a file write take longer. Operations started this close together
/// on different peers (`peer: all` in a plan) are concurrent unless an observation says otherwise.
pub const MIN_PROPAGATION_MS: u64 = 50;

/// An operation's `t_ms` is recorded when the workload finished it (after an fsync and a rename), so
/// the file may have changed up to this long before: an observation this close before `t_ms` cannot
/// tell whether the peer had the other version before or after its own write.
pub const WRITE_SLACK_MS: u64 = 50;

/// One acknowledged operation (a write, or a delete that removed a file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub op: u64,
    pub peer: String,
    pub path: String,
    pub t_ms: u64,
    /// `None` for a delete.
    pub hash: Option<String>,
    /// What the client replaced or deleted (the content its peer held at the path just before), if
    /// anything was there; histories from before bases were recorded have `None` everywhere.
    pub base: Option<String>,
}

/// The operations on one path in time order, with their causal predecessors.
#[derive(Clone, Debug, Default)]
pub struct PathOrder {
    pub ops: Vec<Op>,
    /// `preds[i]`: indices of the operations that happened before `ops[i]` (transitively).
    pub preds: Vec<BTreeSet<usize>>,
    /// Pairs (earlier, later) the history cannot order: maybe before, maybe concurrent.
    pub ambiguous: Vec<(usize, usize)>,
}

impl PathOrder {
    /// Operations nothing else on the path happened after: the ones that must be visible at the end.
    pub fn maximal(&self) -> Vec<usize> {
        let dominated: BTreeSet<usize> = self.preds.iter().flatten().copied().collect();
        (0..self.ops.len()).filter(|i| !dominated.contains(i)).collect()
    }

    /// Whether `i` is known to have been superseded by a later operation.
    pub fn superseded(&self, i: usize) -> bool {
        self.preds.iter().any(|p| p.contains(&i))
    }

    /// Whether `i` may have happened before some other operation without the history showing it.
    pub fn maybe_superseded(&self, i: usize) -> bool {
        self.ambiguous.iter().any(|(a, _)| *a == i)
    }
}

/// Acknowledged operations from the history: successful writes and deletes (no-op and failed
/// operations changed nothing).
pub fn ops(history: &[Record]) -> Vec<Op> {
    history
        .iter()
        .filter_map(|r| match &r.event {
            Event::Write {
                op,
                peer,
                kind,
                path,
                hash,
                base,
                outcome: Outcome::Ok,
                ..
            } => Some(Op {
                op: *op,
                peer: peer.clone(),
                path: path.clone(),
                t_ms: r.t_ms,
                hash: if *kind == FileOpKind::Delete {
                    None
                } else {
                    hash.clone()
                },
                base: base.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Per (peer, path), the observed states in time order.
pub type Timelines<'a> = BTreeMap<(&'a str, &'a str), Vec<(u64, Option<&'a str>)>>;

pub fn timelines(obs: &[Observation]) -> Timelines<'_> {
    let mut t: Timelines = BTreeMap::new();
    for o in obs {
        t.entry((o.peer.as_str(), o.path.as_str()))
            .or_default()
            .push((o.t_ms, o.hash.as_deref()));
    }
    for v in t.values_mut() {
        v.sort_by_key(|x| x.0);
    }
    t
}

/// The causal order of every path's operations.
pub fn order(history: &[Record], obs: &[Observation]) -> BTreeMap<String, PathOrder> {
    let tl = timelines(obs);
    let all = ops(history);
    let bases = all.iter().any(|o| o.base.is_some());
    let mut by_path: BTreeMap<String, Vec<Op>> = BTreeMap::new();
    for o in all {
        by_path.entry(o.path.clone()).or_default().push(o);
    }
    by_path
        .into_iter()
        .map(|(path, mut ops)| {
            ops.sort_by_key(|o| (o.t_ms, o.op));
            let order = order_path(ops, &tl, bases);
            (path, order)
        })
        .collect()
}

/// When `peer` first showed the effect of `a` (content for a write; the path gone after holding a
/// predecessor of `a` for a delete), if ever.
fn first_effect(a: usize, peer: &str, ord: &PathOrder, tl: &Timelines) -> Option<u64> {
    let op = &ord.ops[a];
    let states = tl.get(&(peer, op.path.as_str()))?;
    match &op.hash {
        Some(h) => states.iter().find(|s| s.1 == Some(h.as_str())).map(|s| s.0),
        None => {
            let before: BTreeSet<&str> = ord.preds[a]
                .iter()
                .filter_map(|&i| ord.ops[i].hash.as_deref())
                .collect();
            states
                .windows(2)
                .find(|w| w[1].0 > op.t_ms && w[1].1.is_none() && w[0].1.is_some_and(|h| before.contains(h)))
                .map(|w| w[1].0)
        }
    }
}

/// Whether delete `a` had reached `b`'s peer when `b` happened, decided by what that peer held
/// (see the module's overview); `None` when `a` is not a delete with a base or the rules leave it open.
fn delete_seen(a: usize, b: usize, ord: &PathOrder, tl: &Timelines) -> Option<bool> {
    let (del, op) = (&ord.ops[a], &ord.ops[b]);
    let deleted = del.base.as_deref().filter(|_| del.hash.is_none())?;
    if op.base.as_deref() == Some(deleted) {
        return Some(false);
    }
    let only_delete = !ord.ops[..b]
        .iter()
        .enumerate()
        .any(|(i, o)| i != a && o.hash.is_none() && o.t_ms <= op.t_ms);
    let last_held = tl
        .get(&(op.peer.as_str(), op.path.as_str()))?
        .iter()
        .filter(|s| s.0 + WRITE_SLACK_MS < op.t_ms)
        .filter_map(|s| s.1)
        .next_back();
    (op.base.is_none() && only_delete && last_held == Some(deleted)).then_some(true)
}

/// `bases`: the history records what each operation replaced, which decides every "had X seen this
/// write?" question exactly; only deletes seen through the monitor's samples can stay undecided.
fn order_path(ops: Vec<Op>, tl: &Timelines, bases: bool) -> PathOrder {
    let mut ord = PathOrder {
        preds: Vec::with_capacity(ops.len()),
        ops,
        ambiguous: Vec::new(),
    };
    for b in 0..ord.ops.len() {
        let (peer, t_b) = (ord.ops[b].peer.clone(), ord.ops[b].t_ms);
        let mut preds = BTreeSet::new();
        let mut maybe = Vec::new();
        for a in 0..b {
            if ord.ops[a].t_ms > t_b {
                continue;
            }
            let replaced = ord.ops[a].hash.is_some() && ord.ops[a].hash == ord.ops[b].base;
            let before = if ord.ops[a].peer == peer || replaced {
                Some(true)
            } else if let Some(decided) = bases.then(|| delete_seen(a, b, &ord, tl)).flatten() {
                Some(decided)
            } else {
                match first_effect(a, &peer, &ord, tl) {
                    Some(s) if s + WRITE_SLACK_MS < t_b => Some(true),
                    // With bases, a write `b` did not replace was not on b's peer at the time (or lost a
                    // conflict there and survives as a copy): concurrent, not undecided.
                    _ if bases && ord.ops[a].hash.is_some() => Some(false),
                    Some(s) if ord.ops[a].t_ms + MIN_PROPAGATION_MS <= t_b && s <= t_b + AMBIGUITY_MS => None,
                    _ => Some(false),
                }
            };
            match before {
                Some(true) => {
                    preds.insert(a);
                    preds.extend(ord.preds[a].iter().copied());
                }
                None => maybe.push(a),
                Some(false) => {}
            }
        }
        for a in maybe {
            if !preds.contains(&a) {
                ord.ambiguous.push((a, b));
            }
        }
        ord.preds.push(preds);
    }
    ord
}
