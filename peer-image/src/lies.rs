//! Byzantine mode's lies about the versions a liar serves (see [`crate::byzantine`] for the
//! behaviours and the switch): what `replay`, `equivocate` and `drop` change in a pull page or a
//! listing for one requester, and which blobs `drop` keeps back. Called by [`crate::server`] only
//! when the liar is not honest; `withhold`, `forge`, `tamper` and `slowloris` stay where the
//! server builds its answers.

use crate::byzantine::{self, Behaviours};
use crate::entry::Entry;
use crate::knowledge::{Knowledge, dot};
use crate::node::Node;

/// Whether a targeted liar keeps back the content `hash` from this requester: by the path that
/// holds it.
pub fn drops_blob(node: &Node, liar: &Behaviours, hash: &str, (short, name): (&str, &str)) -> bool {
    if liar.drop.is_empty() {
        return false;
    }
    liar.drops_all(short, name)
        || node
            .index()
            .path_for_hash(hash)
            .is_some_and(|p| liar.drops(&p, short, name))
}

/// Versions whose own forks a liar re-sends on every pull, at most (see [`versions`]).
const FORK_RESEND_MAX: usize = 64;

/// Byzantine mode's lies about the versions offered to one requester (`who`: short id, name), in
/// a pull page or a listing:
/// * `replay`: versions held when it went on, once their path moved on, are offered as current;
/// * `equivocate`: the liar's own versions since it went on are offered whatever the requester
///   knows, and to every other neighbour ([`byzantine::told_the_twin`]) as their [`byzantine::twin`];
/// * `lie-timestamp`, `lie-counter`: the liar's own versions signed again with lying metadata
///   ([`byzantine::lie`]);
/// * `sybil`: one version signed by each identity the liar made up ([`crate::sybil::versions`]);
/// * `drop`: the versions a rule keeps back from this requester are left out, and their dots
///   claimed as seen and superseded (`fills`), which would hide them for good if fills counted
///   beyond the neighbour that sent them.
pub fn versions(n: &Node, liar: &Behaviours, who: (&str, &str), entries: &mut Vec<Entry>, fills: &mut Knowledge) {
    let (short, name) = who;
    let offer = |entries: &mut Vec<Entry>, e: Entry| match entries.iter_mut().find(|x| x.path == e.path) {
        Some(x) => *x = e,
        None => entries.push(e),
    };
    if liar.replay {
        let idx = n.index();
        let archive = n
            .byzantine
            .replay
            .get(|| idx.iter().take(crate::replay::REPLAY_MAX).cloned().collect());
        for old in crate::replay::stale(&archive, &idx) {
            offer(entries, old);
        }
    }
    if liar.equivocate
        && let Some(since) = n.byzantine.equivocating_since()
    {
        let own: Vec<Entry> = n
            .index()
            .iter()
            .filter(|e| byzantine::equivocates_on(e, &n.short, since))
            .take(FORK_RESEND_MAX)
            .cloned()
            .collect();
        for e in own {
            offer(entries, e);
        }
        let neighbours: Vec<&str> = n.peers.iter().map(|p| p.short.as_str()).collect();
        if byzantine::told_the_twin(&neighbours, short) {
            for e in entries
                .iter_mut()
                .filter(|e| byzantine::equivocates_on(e, &n.short, since))
            {
                *e = byzantine::twin(&n.me, e);
            }
        }
    }
    if liar.lie_timestamp || liar.lie_counter {
        let neighbours: Vec<&str> = n.peers.iter().map(|p| p.short.as_str()).collect();
        for e in entries.iter_mut().filter(|e| e.author == n.short) {
            if let Some(lying) = byzantine::lie(&n.me, liar, e, &neighbours) {
                *e = lying;
            }
        }
    }
    if liar.sybil {
        for e in crate::sybil::versions(n) {
            offer(entries, e);
        }
    }
    if !liar.drop.is_empty() {
        entries.retain(|e| {
            let dropped = liar.drops(&e.path, short, name);
            if dropped {
                fills.insert(dot(e));
            }
            !dropped
        });
    }
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
}
