//! Partitions as data: which directed links are cut, computed from a shape, then turned into iptables
//! rules for one node. Nothing here touches a container.
//!
//! A [`Cut`] is a set of directed links `(from, to)`: packets from `from` to `to` are dropped (turmoil's
//! habit: a link has two directions, so a one-way partition is just one side set). Symmetric shapes
//! cut both directions. Several active cuts compose by union; healing one recomputes the rest.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The iptables chain the project owns inside every peer; heal flushes only this chain.
pub const CHAIN: &str = "SYFTCHAOS";

/// What a cut drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CutMode {
    /// Every packet on the link is dropped (for one-way cuts this also breaks TCP replies, which is what
    /// "A cannot reach B" means at the packet level).
    Drop,
    /// Only new connections from `from` to `to` are dropped (conntrack state NEW): B can still open
    /// connections to A and get answers; established connections survive.
    NewConnections,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Cut {
    pub links: BTreeSet<(usize, usize)>,
    pub mode: CutMode,
    /// When set, only TCP traffic to or from this port is cut (a partial partition).
    pub port: Option<u16>,
}

/// Partition shapes a plan can ask for, resolved to peer indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Peers in no common group cannot talk; peers named in no group are unaffected.
    Groups(Vec<Vec<usize>>),
    /// A seeded random split into two halves (the first half has `n / 2` peers).
    Halves,
    /// The listed peers are cut from everyone else (not from each other).
    Isolate(Vec<usize>),
    /// Everyone alone.
    Islands,
    /// Two halves with one bridge peer that sees both sides.
    Bridge,
    /// Each peer sees a majority around it on a seeded ring; no two majorities are the same.
    MajoritiesRing,
    /// `from` peers cannot reach `to` peers; the other direction works.
    OneWay { from: Vec<usize>, to: Vec<usize> },
}

impl Shape {
    /// Directed links cut by this shape on `n` peers. `seed` drives the random shapes.
    pub fn links(&self, n: usize, seed: u64) -> BTreeSet<(usize, usize)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let both_ways = |can_talk: &dyn Fn(usize, usize) -> bool| {
            let mut cut = BTreeSet::new();
            for a in 0..n {
                for b in 0..n {
                    if a != b && !can_talk(a, b) {
                        cut.insert((a, b));
                    }
                }
            }
            cut
        };
        match self {
            Shape::Groups(groups) => {
                let listed: BTreeSet<usize> = groups.iter().flatten().copied().collect();
                both_ways(&|a, b| {
                    !listed.contains(&a)
                        || !listed.contains(&b)
                        || groups.iter().any(|g| g.contains(&a) && g.contains(&b))
                })
            }
            Shape::Halves => {
                let first: BTreeSet<usize> = order[..n / 2].iter().copied().collect();
                both_ways(&|a, b| first.contains(&a) == first.contains(&b))
            }
            Shape::Isolate(targets) => both_ways(&|a, b| targets.contains(&a) == targets.contains(&b)),
            Shape::Islands => both_ways(&|_, _| false),
            Shape::Bridge => {
                // order[0] is the bridge; the rest split into two sides.
                let bridge = order[0];
                let rest = &order[1..];
                let left: BTreeSet<usize> = rest[..rest.len() / 2].iter().copied().collect();
                both_ways(&|a, b| a == bridge || b == bridge || left.contains(&a) == left.contains(&b))
            }
            Shape::MajoritiesRing => {
                let pos: Vec<usize> = {
                    let mut p = vec![0; n];
                    for (i, &node) in order.iter().enumerate() {
                        p[node] = i;
                    }
                    p
                };
                // Each peer sees the peers within `reach` ring steps: itself plus 2*reach >= a majority.
                let reach = (n / 2).div_ceil(2);
                both_ways(&|a, b| {
                    let d = pos[a].abs_diff(pos[b]);
                    d.min(n - d) <= reach
                })
            }
            Shape::OneWay { from, to } => from
                .iter()
                .flat_map(|&f| to.iter().map(move |&t| (f, t)))
                .filter(|(f, t)| f != t)
                .collect(),
        }
    }
}

/// Which peers `node` can still send to under `links` (for reachability checks and the report).
pub fn reachable_from(node: usize, n: usize, links: &BTreeSet<(usize, usize)>) -> BTreeSet<usize> {
    (0..n).filter(|&m| m != node && !links.contains(&(node, m))).collect()
}

/// The rules (arguments to `iptables -A CHAIN ...`) node `me` needs so that every cut in `cuts` holds.
/// Each cut link `(a, b)` is enforced twice: on `a` for outgoing packets and on `b` for incoming ones, so
/// a peer restarted mid-fault is covered as soon as either side has its rules.
pub fn rules_for(me: usize, cuts: &[Cut], addrs: &[Ipv4Addr]) -> Vec<String> {
    let mut rules = BTreeSet::new();
    for cut in cuts {
        let state = match cut.mode {
            CutMode::Drop => "",
            CutMode::NewConnections => " -m conntrack --ctstate NEW",
        };
        for &(from, to) in &cut.links {
            let (dir, other) = if from == me {
                ("-d", addrs[to])
            } else if to == me {
                ("-s", addrs[from])
            } else {
                continue;
            };
            let ports: Vec<String> = match cut.port {
                None => vec![String::new()],
                Some(p) => vec![format!(" -p tcp --dport {p}"), format!(" -p tcp --sport {p}")],
            };
            for port in ports {
                rules.insert(format!("{dir} {other}/32{port}{state} -j DROP"));
            }
        }
    }
    rules.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(links: &BTreeSet<(usize, usize)>) -> bool {
        links.iter().all(|&(a, b)| links.contains(&(b, a)))
    }

    #[test]
    fn groups_cut_across_and_not_within() {
        let links = Shape::Groups(vec![vec![0], vec![1, 2]]).links(3, 0);
        assert_eq!(links, BTreeSet::from([(0, 1), (1, 0), (0, 2), (2, 0)]));
    }

    #[test]
    fn overlapping_groups_leave_the_shared_peer_connected_to_both() {
        let links = Shape::Groups(vec![vec![0, 1], vec![1, 2]]).links(3, 0);
        assert_eq!(links, BTreeSet::from([(0, 2), (2, 0)]));
    }

    #[test]
    fn unlisted_peers_are_unaffected() {
        let links = Shape::Groups(vec![vec![0], vec![1]]).links(3, 0);
        assert!(!links.iter().any(|&(a, b)| a == 2 || b == 2));
    }

    #[test]
    fn halves_split_evenly_and_symmetrically() {
        let links = Shape::Halves.links(5, 42);
        assert!(sym(&links));
        let reach: Vec<usize> = (0..5).map(|n| reachable_from(n, 5, &links).len()).collect();
        let mut sorted = reach.clone();
        sorted.sort();
        assert_eq!(sorted, vec![1, 1, 2, 2, 2], "a side of 2 and a side of 3: {reach:?}");
        assert_eq!(links, Shape::Halves.links(5, 42), "seeded");
    }

    #[test]
    fn islands_cut_everything() {
        assert_eq!(Shape::Islands.links(4, 0).len(), 12);
    }

    #[test]
    fn bridge_peer_sees_everyone_and_sides_do_not_see_each_other() {
        let links = Shape::Bridge.links(5, 3);
        let bridges: Vec<usize> = (0..5).filter(|&n| reachable_from(n, 5, &links).len() == 4).collect();
        assert_eq!(bridges.len(), 1);
        let others: Vec<usize> = (0..5).filter(|n| *n != bridges[0]).collect();
        for &n in &others {
            assert_eq!(reachable_from(n, 5, &links).len(), 2, "bridge + one same-side peer");
        }
    }

    #[test]
    fn majorities_ring_gives_everyone_a_majority_but_not_all() {
        for n in [3usize, 4, 5, 7] {
            let links = Shape::MajoritiesRing.links(n, 9);
            assert!(sym(&links));
            for node in 0..n {
                let sees = reachable_from(node, n, &links).len() + 1;
                assert!(sees > n / 2, "n={n} node={node} sees {sees}");
            }
            if n >= 5 {
                assert!(!links.is_empty(), "n={n}: some links must be cut");
            }
        }
    }

    #[test]
    fn one_way_cuts_a_single_direction() {
        let links = Shape::OneWay {
            from: vec![0],
            to: vec![1],
        }
        .links(3, 0);
        assert_eq!(links, BTreeSet::from([(0, 1)]));
    }

    #[test]
    fn rules_enforce_each_link_at_both_ends() {
        let addrs: Vec<Ipv4Addr> = (2..5).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let cut = Cut {
            links: BTreeSet::from([(0, 1)]),
            mode: CutMode::Drop,
            port: None,
        };
        assert_eq!(
            rules_for(0, std::slice::from_ref(&cut), &addrs),
            vec!["-d 10.0.0.3/32 -j DROP"]
        );
        assert_eq!(
            rules_for(1, std::slice::from_ref(&cut), &addrs),
            vec!["-s 10.0.0.2/32 -j DROP"]
        );
        assert!(rules_for(2, &[cut], &addrs).is_empty());
    }

    #[test]
    fn new_connection_cuts_and_port_cuts_render() {
        let addrs: Vec<Ipv4Addr> = (2..4).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let cut = Cut {
            links: BTreeSet::from([(0, 1)]),
            mode: CutMode::NewConnections,
            port: Some(7000),
        };
        let rules = rules_for(0, &[cut], &addrs);
        assert_eq!(
            rules,
            vec![
                "-d 10.0.0.3/32 -p tcp --dport 7000 -m conntrack --ctstate NEW -j DROP",
                "-d 10.0.0.3/32 -p tcp --sport 7000 -m conntrack --ctstate NEW -j DROP",
            ]
        );
    }
}
