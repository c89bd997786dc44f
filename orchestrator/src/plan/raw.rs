//! The YAML as written: every `Raw*` type mirrors the file exactly (unknown keys are rejected) and
//! keeps the spans the resolver needs for its messages. Nothing here checks meaning; `resolve` does.

use std::fmt;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::units::{Dur, LongDur, Size, SizeRange, check_path};
use super::{LinkParams, Mix};
use crate::partition::CutMode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlan {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) seed: Option<u64>,
    pub(super) peers: Spanned<i64>,
    #[serde(default)]
    pub(super) topology: Option<Spanned<RawTopology>>,
    #[serde(default)]
    pub(super) image: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) peer: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) flavor: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) anti_entropy: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) disk_limit: Option<Spanned<Size>>,
    #[serde(default)]
    pub(super) engine: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) quarantine: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) workload: Vec<Spanned<RawWrite>>,
    #[serde(default)]
    pub(super) steps: Vec<Spanned<RawStep>>,
    #[serde(default)]
    pub(super) expect: Option<RawExpect>,
    #[serde(default)]
    pub(super) soak: Option<Spanned<RawSoak>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    #[serde(default)]
    pub(super) converge_within: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) quiet: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) quarantine_within: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) leak: Option<RawLeak>,
    #[serde(default)]
    pub(super) criteria: Option<RawCriteria>,
}

/// `expect.criteria`: thresholds on the run's figures, each optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCriteria {
    #[serde(default)]
    pub(super) recovery: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) propagation_p50: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) propagation_p95: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) propagation_p99: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) bytes_ratio: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) messages_ratio: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) conflict_pct: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) cpu_pct: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) memory: Option<Spanned<Size>>,
    #[serde(default)]
    pub(super) flood_slowdown: Option<Spanned<f64>>,
}

/// `expect.leak`: the limits of the growth check (`no-leak`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLeak {
    #[serde(default)]
    pub(super) warmup: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) min_span: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) memory_pct_per_hour: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) tasks_per_hour: Option<Spanned<f64>>,
}

/// `topology: ring` (a built-in shape or a file `topologies/<name>.yaml`) or an inline map.
pub(super) enum RawTopology {
    Named(String),
    Inline(Box<RawTopologySpec>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopologySpec {
    #[serde(default)]
    pub(super) kind: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) fanout: Option<Spanned<usize>>,
    #[serde(default)]
    pub(super) degree: Option<Spanned<usize>>,
    #[serde(default)]
    pub(super) edges: Option<Vec<Spanned<(String, String)>>>,
    /// Free text for people reading the file; accepted and ignored.
    #[serde(default, rename = "description")]
    pub(super) _description: Option<String>,
}

/// `peer: p1`, `peer: [p1, p2]`, `peer: all|one|minority|majority`, `peer: {random: 2}`.
pub(super) enum RawTargets {
    Word(String),
    List(Vec<String>),
    Random { random: usize },
}

// Hand-written instead of `#[serde(untagged)]`: untagged enums replace every inner error (an unknown
// key, a bad number) with "data did not match any variant", losing what the user needs to know.
impl<'de> Deserialize<'de> for RawTopology {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawTopology;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a topology name (full-mesh, ring, line, star, tree, random, or a file in topologies/) or a map with `kind` or `edges`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawTopology, E> {
                Ok(RawTopology::Named(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawTopology, E> {
                Ok(RawTopology::Named(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawTopology, A::Error> {
                RawTopologySpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|s| RawTopology::Inline(Box::new(s)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawTargets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawTargets;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a peer name, a list of peer names, all, one, minority, majority, or {random: k}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawTargets, E> {
                Ok(RawTargets::Word(v.to_string()))
            }
            // `peer: 42` reads as a name, so the resolver can say which names the plan has.
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawTargets, E> {
                Ok(RawTargets::Word(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawTargets, E> {
                Ok(RawTargets::Word(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawTargets, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(RawTargets::List(names))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawTargets, A::Error> {
                use serde::de::Error;
                const ALLOWED: &str = "a peer name, a list of peer names, all, one, minority, majority, or {random: k}";
                let mut random = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "random" || random.is_some() {
                        return Err(A::Error::custom(format!(
                            "unknown key `{key}`; allowed: random (as in {{random: k}})"
                        )));
                    }
                    random = Some(map.next_value::<usize>()?);
                }
                match random {
                    Some(random) => Ok(RawTargets::Random { random }),
                    None => Err(A::Error::custom(format!("an empty map; allowed: {ALLOWED}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWrite {
    pub(super) at: Dur,
    pub(super) peer: Spanned<RawTargets>,
    #[serde(default)]
    pub(super) create: Option<String>,
    #[serde(default)]
    pub(super) modify: Option<String>,
    #[serde(default)]
    pub(super) delete: Option<String>,
    #[serde(default)]
    pub(super) touch: Option<String>,
    #[serde(default)]
    pub(super) chmod: Option<String>,
    #[serde(default)]
    pub(super) random: Option<RawRandom>,
    #[serde(default)]
    pub(super) size: Option<Spanned<SizeRange>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRandom {
    pub(super) duration: Dur,
    pub(super) rate: Spanned<f64>,
    #[serde(default)]
    pub(super) files: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) mix: Option<Mix>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    #[serde(default)]
    pub(super) name: Option<Spanned<String>>,
    pub(super) at: Dur,
    #[serde(default)]
    pub(super) duration: Option<Dur>,
    #[serde(default)]
    pub(super) every: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) partition: Option<Spanned<RawPartition>>,
    #[serde(default)]
    pub(super) link: Option<Spanned<RawLink>>,
    #[serde(default)]
    pub(super) clock: Option<Spanned<RawClock>>,
    #[serde(default)]
    pub(super) kill: Option<Spanned<RawPeersOnly>>,
    #[serde(default)]
    pub(super) stop: Option<Spanned<RawPeersOnly>>,
    #[serde(default)]
    pub(super) pause: Option<Spanned<RawPeersOnly>>,
    #[serde(default)]
    pub(super) lock: Option<Spanned<RawLock>>,
    #[serde(default)]
    pub(super) disk: Option<Spanned<RawDisk>>,
    #[serde(default)]
    pub(super) byzantine: Option<Spanned<RawByzantine>>,
}

// The link parameters are spelled out again here rather than `#[serde(flatten)]`ed: serde does not
// support `deny_unknown_fields` together with `flatten`, and unknown keys must be errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    #[serde(default)]
    pub(super) peers: Option<RawTargets>,
    #[serde(default)]
    pub(super) to: Option<RawTargets>,
    #[serde(default)]
    pub(super) direction: Option<String>,
    #[serde(default)]
    pub(super) delay: Option<Dur>,
    #[serde(default)]
    pub(super) jitter: Option<Dur>,
    #[serde(default)]
    pub(super) distribution: Option<String>,
    #[serde(default)]
    pub(super) loss: Option<f64>,
    #[serde(default)]
    pub(super) loss_correlation: Option<f64>,
    #[serde(default)]
    pub(super) corrupt: Option<f64>,
    #[serde(default)]
    pub(super) duplicate: Option<f64>,
    #[serde(default)]
    pub(super) reorder: Option<f64>,
    #[serde(default)]
    pub(super) reorder_delay: Option<Dur>,
    #[serde(default)]
    pub(super) rate: Option<String>,
    #[serde(default)]
    pub(super) engine: Option<String>,
    #[serde(default)]
    pub(super) mitm: Option<String>,
}

impl RawLink {
    pub(super) fn params(&self) -> LinkParams {
        LinkParams {
            direction: self.direction.clone(),
            delay: self.delay,
            jitter: self.jitter,
            distribution: self.distribution.clone(),
            loss: self.loss,
            loss_correlation: self.loss_correlation,
            corrupt: self.corrupt,
            duplicate: self.duplicate,
            reorder: self.reorder,
            reorder_delay: self.reorder_delay,
            rate: self.rate.clone(),
            engine: self.engine.clone(),
            mitm: self.mitm.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClock {
    pub(super) peers: RawTargets,
    #[serde(default)]
    pub(super) offset: Option<String>,
    #[serde(default)]
    pub(super) strobe: Option<(String, String)>,
    #[serde(default)]
    pub(super) rate: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeersOnly {
    pub(super) peers: RawTargets,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLock {
    pub(super) peers: RawTargets,
    #[serde(default)]
    pub(super) stale: Option<String>,
    #[serde(default)]
    pub(super) unwritable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisk {
    pub(super) peers: RawTargets,
    /// A path, or `true` for a seeded pick among the peer's files.
    #[serde(default)]
    pub(super) corrupt: Option<RawPathOrPick>,
    #[serde(default)]
    pub(super) truncate: Option<RawPathOrPick>,
    #[serde(default)]
    pub(super) fill: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawByzantine {
    pub(super) peers: RawTargets,
    /// One behaviour name or a list of them (read like a peer list; `{random: k}` is refused).
    pub(super) behaviour: Spanned<RawTargets>,
    /// With `drop`: the paths kept back, one glob or a list (read like a peer list).
    #[serde(default)]
    pub(super) paths: Option<Spanned<RawTargets>>,
    /// With `drop`: the peers they are kept back from, one name or a list.
    #[serde(default)]
    pub(super) to: Option<Spanned<RawTargets>>,
}

pub(super) enum RawPathOrPick {
    Path(String),
    Pick,
}

impl<'de> Deserialize<'de> for RawPathOrPick {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawPathOrPick;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path in the sync folder, or `true` for a seeded pick")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawPathOrPick, E> {
                check_path(v).map(RawPathOrPick::Path).map_err(E::custom)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawPathOrPick, E> {
                if v {
                    Ok(RawPathOrPick::Pick)
                } else {
                    Err(E::custom(
                        "`false` is not an action; allowed: a path in the sync folder, or true for a seeded pick",
                    ))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPartition {
    #[serde(default)]
    pub(super) shape: Option<String>,
    #[serde(default)]
    pub(super) groups: Option<Vec<Vec<String>>>,
    #[serde(default)]
    pub(super) peers: Option<RawTargets>,
    #[serde(default)]
    pub(super) from: Option<RawTargets>,
    #[serde(default)]
    pub(super) to: Option<RawTargets>,
    #[serde(default)]
    pub(super) mode: Option<CutMode>,
    #[serde(default)]
    pub(super) port: Option<super::PortRef>,
}

/// The `soak:` section as written (resolved in `plan/soak.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSoak {
    pub(super) duration: Spanned<LongDur>,
    #[serde(default)]
    pub(super) window: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) workload: Option<Spanned<RawSoakWorkload>>,
    #[serde(default)]
    pub(super) max_concurrent: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) stagger: Option<Spanned<RawDurRange>>,
    #[serde(default)]
    pub(super) exclusive: Vec<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) faults: Vec<Spanned<RawSoakFault>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSoakWorkload {
    #[serde(default)]
    pub(super) peers: Option<Spanned<RawTargets>>,
    pub(super) rate: Spanned<f64>,
    #[serde(default)]
    pub(super) files: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) size: Option<Spanned<SizeRange>>,
    #[serde(default)]
    pub(super) mix: Option<Spanned<Mix>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDurRange {
    pub(super) min: Dur,
    pub(super) max: Dur,
}

// The fault keys are spelled out again rather than shared with `RawStep` through `flatten`: serde
// does not support `deny_unknown_fields` with `flatten`, and unknown keys must be errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSoakFault {
    #[serde(default)]
    pub(super) name: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) weight: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) duration: Option<Spanned<RawDurRange>>,
    #[serde(default)]
    pub(super) every: Option<Spanned<Dur>>,
    #[serde(default)]
    pub(super) partition: Option<Spanned<RawPartition>>,
    #[serde(default)]
    pub(super) link: Option<Spanned<RawLink>>,
    #[serde(default)]
    pub(super) clock: Option<Spanned<RawClock>>,
    #[serde(default)]
    pub(super) kill: Option<Spanned<RawPeersOnly>>,
    #[serde(default)]
    pub(super) stop: Option<Spanned<RawPeersOnly>>,
    #[serde(default)]
    pub(super) pause: Option<Spanned<RawPeersOnly>>,
    #[serde(default)]
    pub(super) lock: Option<Spanned<RawLock>>,
    #[serde(default)]
    pub(super) disk: Option<Spanned<RawDisk>>,
    #[serde(default)]
    pub(super) byzantine: Option<Spanned<RawByzantine>>,
}
