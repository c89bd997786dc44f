//! Topologies: who knows whom. A [`Topology`] is an undirected graph over peer indexes, computed as data.
//!
//! Shapes: full mesh, ring, line, star (hub = first peer), tree with fan-out k (breadth-first, root =
//! first peer), random k-regular (seeded, configuration model with retries), or explicit edges.
//! The overlay only says which peers are configured as neighbours; network faults act on addresses and
//! are independent of it.

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The shape a plan or a `topologies/*.yaml` file asks for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Shape {
    FullMesh,
    Ring,
    Line,
    Star,
    Tree { fanout: usize },
    Random { degree: usize },
    Edges { edges: Vec<(usize, usize)> },
}

/// Names a user may write for a shape, for error messages.
pub const SHAPE_NAMES: &str = "full-mesh, ring, line, star, tree, random, or explicit `edges`";

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Topology {
    pub size: usize,
    /// Undirected edges as normalised pairs (`a < b`).
    pub edges: BTreeSet<(usize, usize)>,
}

impl Topology {
    /// Builds the graph; `seed` only matters for random shapes.
    pub fn build(shape: &Shape, size: usize, seed: u64) -> Result<Topology, String> {
        let mut edges = BTreeSet::new();
        let mut add = |a: usize, b: usize| {
            if a != b {
                edges.insert((a.min(b), a.max(b)));
            }
        };
        match shape {
            Shape::FullMesh => {
                for a in 0..size {
                    for b in a + 1..size {
                        add(a, b);
                    }
                }
            }
            Shape::Ring => {
                for a in 0..size {
                    add(a, (a + 1) % size);
                }
            }
            Shape::Line => {
                for a in 1..size {
                    add(a - 1, a);
                }
            }
            Shape::Star => {
                for a in 1..size {
                    add(0, a);
                }
            }
            Shape::Tree { fanout } => {
                if *fanout == 0 {
                    return Err("tree fanout must be at least 1".into());
                }
                for a in 1..size {
                    add((a - 1) / fanout, a);
                }
            }
            Shape::Random { degree } => {
                return random_regular(size, *degree, seed).map(|edges| Topology { size, edges });
            }
            Shape::Edges { edges: list } => {
                for &(a, b) in list {
                    if a >= size || b >= size {
                        return Err(format!("edge ({a}, {b}) names a peer outside 0..{size}"));
                    }
                    if a == b {
                        return Err(format!("edge ({a}, {b}) joins a peer to itself"));
                    }
                    add(a, b);
                }
            }
        }
        Ok(Topology { size, edges })
    }

    pub fn neighbours(&self, node: usize) -> Vec<usize> {
        self.edges
            .iter()
            .filter_map(|&(a, b)| match (a == node, b == node) {
                (true, _) => Some(b),
                (_, true) => Some(a),
                _ => None,
            })
            .collect()
    }

    /// True when every peer can reach every other over the overlay (else some writes can never spread).
    pub fn is_connected(&self) -> bool {
        if self.size <= 1 {
            return true;
        }
        let mut seen = vec![false; self.size];
        let mut stack = vec![0];
        seen[0] = true;
        while let Some(n) = stack.pop() {
            for m in self.neighbours(n) {
                if !seen[m] {
                    seen[m] = true;
                    stack.push(m);
                }
            }
        }
        seen.iter().all(|s| *s)
    }
}

/// A random simple k-regular graph by the configuration model, retried until no loops or multi-edges.
fn random_regular(size: usize, degree: usize, seed: u64) -> Result<BTreeSet<(usize, usize)>, String> {
    if degree >= size {
        return Err(format!("random degree {degree} must be below the peer count {size}"));
    }
    if !(size * degree).is_multiple_of(2) {
        return Err(format!(
            "random k-regular needs peers x degree even; {size} x {degree} is odd"
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    'attempt: for _ in 0..2000 {
        let mut stubs: Vec<usize> = (0..size).flat_map(|n| std::iter::repeat_n(n, degree)).collect();
        stubs.shuffle(&mut rng);
        let mut edges = BTreeSet::new();
        for pair in stubs.chunks(2) {
            let (a, b) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
            if a == b || !edges.insert((a, b)) {
                continue 'attempt;
            }
        }
        return Ok(edges);
    }
    Err(format!(
        "could not draw a simple {degree}-regular graph on {size} peers"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn degrees(t: &Topology) -> Vec<usize> {
        (0..t.size).map(|n| t.neighbours(n).len()).collect()
    }

    #[test]
    fn shapes_have_the_expected_degrees() {
        let mesh = Topology::build(&Shape::FullMesh, 5, 0).unwrap();
        assert_eq!(mesh.edges.len(), 10);
        assert_eq!(degrees(&Topology::build(&Shape::Ring, 5, 0).unwrap()), vec![2; 5]);
        assert_eq!(degrees(&Topology::build(&Shape::Line, 4, 0).unwrap()), vec![1, 2, 2, 1]);
        assert_eq!(degrees(&Topology::build(&Shape::Star, 4, 0).unwrap()), vec![3, 1, 1, 1]);
        let tree = Topology::build(&Shape::Tree { fanout: 2 }, 7, 0).unwrap();
        assert_eq!(degrees(&tree), vec![2, 3, 3, 1, 1, 1, 1]);
    }

    #[test]
    fn random_regular_is_seeded_simple_and_regular() {
        let a = Topology::build(&Shape::Random { degree: 3 }, 10, 7).unwrap();
        let b = Topology::build(&Shape::Random { degree: 3 }, 10, 7).unwrap();
        assert_eq!(a, b, "same seed, same graph");
        assert_eq!(degrees(&a), vec![3; 10]);
        assert!(
            Topology::build(&Shape::Random { degree: 3 }, 5, 1).is_err(),
            "odd stub count"
        );
    }

    #[test]
    fn connectivity_is_detected() {
        assert!(Topology::build(&Shape::Ring, 6, 0).unwrap().is_connected());
        let split = Topology::build(
            &Shape::Edges {
                edges: vec![(0, 1), (2, 3)],
            },
            4,
            0,
        )
        .unwrap();
        assert!(!split.is_connected());
    }
}
