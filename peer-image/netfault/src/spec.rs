//! The fault spec: what `netfault apply --spec` accepts, and its validation.
//!
//! A spec is JSON. Every field but `id` has a default, so `{"id":"x","delay_ms":100}` is a
//! complete spec. Defaults: `target` "all", `direction` egress, every percentage 0,
//! `distribution` uniform, `reorder_delay_ms` 10, `seed` 0, `engine` auto, `dev` chosen from the
//! routes to the targets (or every non-loopback interface for "all").

use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Upper bound for any delay or jitter: a held packet costs memory, and a minute of delay is
/// already a partition in all but name.
pub const MAX_DELAY_MS: f64 = 60_000.0;

/// The errors a spec can have; each names the field.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("spec is not valid JSON for a fault: {0}")]
    Json(String),
    #[error("`id` must be 1..=32 characters of [A-Za-z0-9_-], got {0:?}")]
    BadId(String),
    #[error("`{field}` must be between 0 and 100, got {value}")]
    Percent { field: &'static str, value: f64 },
    #[error("`{field}` must be between 0 and {MAX_DELAY_MS} ms, got {value}")]
    Millis { field: &'static str, value: f64 },
    #[error("`target` must be \"all\" or a non-empty list of IPv4 addresses")]
    EmptyTarget,
    #[error("`rate_kbit` must be at least 8, got {0}")]
    Rate(u64),
    #[error(
        "`duplicate_pct` works on egress only (the copy is re-sent through a raw socket); \
         direction {0:?} includes ingress"
    )]
    DuplicateIngress(Direction),
    #[error("the spec asks for no fault at all (every field is 0; engine \"userspace\" allows a pass-through)")]
    Empty,
    #[error("`{0}` cannot be done by kernel netem; use engine \"userspace\" or \"auto\"")]
    NotNetem(&'static str),
    #[error("`loss_model` and `loss_pct` are exclusive: give one")]
    TwoLossModels,
    #[error("`reorder_pct` needs `reorder_delay_ms` > 0 (how much longer a reordered packet waits)")]
    ReorderWithoutDelay,
}

/// Which destinations the fault applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Target {
    /// Every packet except loopback traffic.
    #[default]
    All,
    /// Packets to (egress) or from (ingress) these addresses.
    Hosts(Vec<Ipv4Addr>),
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Target::All => s.serialize_str("all"),
            Target::Hosts(h) => h.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let parse = |s: &str| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| serde::de::Error::custom(format!("not an IPv4 address: {s:?}")))
        };
        match Raw::deserialize(d)? {
            Raw::One(s) if s == "all" => Ok(Target::All),
            Raw::One(s) => Ok(Target::Hosts(vec![parse(&s)?])),
            Raw::Many(v) => Ok(Target::Hosts(v.iter().map(|s| parse(s)).collect::<Result<_, _>>()?)),
        }
    }
}

/// Which way the affected packets travel, seen from the peer the fault is applied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Packets this peer sends (iptables OUTPUT).
    #[default]
    Egress,
    /// Packets this peer receives (iptables PREROUTING).
    Ingress,
    /// Both: a delay then counts twice in a round trip.
    Both,
}

impl Direction {
    pub fn egress(self) -> bool {
        matches!(self, Direction::Egress | Direction::Both)
    }
    pub fn ingress(self) -> bool {
        matches!(self, Direction::Ingress | Direction::Both)
    }
}

/// How the delay of each packet spreads around `delay_ms` with spread `jitter_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Uniform on [delay - jitter, delay + jitter] (netem's default).
    #[default]
    Uniform,
    /// Normal with mean `delay` and standard deviation `jitter`, cut at 0.
    Normal,
    /// Heavy right tail: mean `delay`, standard deviation `jitter`, cut at 0 (Pareto, shape 3).
    Pareto,
}

/// Which engine carries out delay, loss, corruption, duplication and reordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// Kernel netem when `probe` finds it and the spec allows it, else userspace.
    #[default]
    Auto,
    Netem,
    Userspace,
}

/// Gilbert-Elliott burst loss: a good and a bad state, each with its own loss rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GilbertElliott {
    /// Chance per packet of moving good -> bad.
    pub p_pct: f64,
    /// Chance per packet of moving bad -> good.
    pub r_pct: f64,
    /// Loss rate in the bad state (netem's 1-h). Default 100.
    #[serde(default = "hundred")]
    pub loss_bad_pct: f64,
    /// Loss rate in the good state (netem's 1-k). Default 0.
    #[serde(default)]
    pub loss_good_pct: f64,
}

fn hundred() -> f64 {
    100.0
}

fn ten() -> f64 {
    10.0
}

/// One packet fault, as given to `netfault apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub id: String,
    #[serde(default)]
    pub target: Target,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub delay_ms: f64,
    #[serde(default)]
    pub jitter_ms: f64,
    #[serde(default)]
    pub distribution: Distribution,
    #[serde(default)]
    pub loss_pct: f64,
    /// Lag-1 correlation of loss decisions: 0 independent, 100 all-or-nothing. The mean loss
    /// rate stays `loss_pct` (a two-state Markov chain, unlike netem's historic correlation).
    #[serde(default)]
    pub loss_correlation_pct: f64,
    #[serde(default)]
    pub loss_model: Option<GilbertElliott>,
    #[serde(default)]
    pub corrupt_pct: f64,
    /// Recompute the TCP/UDP/ICMP checksum after corrupting, so the application sees the bad
    /// bytes instead of the kernel dropping the packet (userspace engine only).
    #[serde(default)]
    pub corrupt_fix_checksum: bool,
    #[serde(default)]
    pub duplicate_pct: f64,
    #[serde(default)]
    pub reorder_pct: f64,
    /// Extra hold time of a reordered packet, so the packets behind it overtake it.
    #[serde(default = "ten")]
    pub reorder_delay_ms: f64,
    #[serde(default)]
    pub rate_kbit: Option<u64>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub engine: EngineChoice,
    /// Interface(s) for the bandwidth limit and netem; default: from the routes.
    #[serde(default)]
    pub dev: Option<String>,
}

impl FaultSpec {
    /// Parse JSON and validate.
    pub fn from_json(text: &str) -> Result<FaultSpec, SpecError> {
        let spec: FaultSpec = serde_json::from_str(text).map_err(|e| SpecError::Json(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Does the spec need a per-packet engine (anything but a bandwidth limit)?
    pub fn needs_packet_engine(&self) -> bool {
        self.delay_ms > 0.0
            || self.jitter_ms > 0.0
            || self.loss_pct > 0.0
            || self.loss_model.is_some()
            || self.corrupt_pct > 0.0
            || self.duplicate_pct > 0.0
            || self.reorder_pct > 0.0
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 32
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(SpecError::BadId(self.id.clone()));
        }
        let mut pcts = vec![
            ("loss_pct", self.loss_pct),
            ("loss_correlation_pct", self.loss_correlation_pct),
            ("corrupt_pct", self.corrupt_pct),
            ("duplicate_pct", self.duplicate_pct),
            ("reorder_pct", self.reorder_pct),
        ];
        if let Some(ge) = &self.loss_model {
            pcts.extend([
                ("loss_model.p_pct", ge.p_pct),
                ("loss_model.r_pct", ge.r_pct),
                ("loss_model.loss_bad_pct", ge.loss_bad_pct),
                ("loss_model.loss_good_pct", ge.loss_good_pct),
            ]);
            if self.loss_pct > 0.0 {
                return Err(SpecError::TwoLossModels);
            }
        }
        for (field, value) in pcts {
            if !(0.0..=100.0).contains(&value) {
                return Err(SpecError::Percent { field, value });
            }
        }
        for (field, value) in [
            ("delay_ms", self.delay_ms),
            ("jitter_ms", self.jitter_ms),
            ("reorder_delay_ms", self.reorder_delay_ms),
        ] {
            if !(0.0..=MAX_DELAY_MS).contains(&value) {
                return Err(SpecError::Millis { field, value });
            }
        }
        if let Target::Hosts(h) = &self.target
            && h.is_empty()
        {
            return Err(SpecError::EmptyTarget);
        }
        if let Some(r) = self.rate_kbit
            && r < 8
        {
            return Err(SpecError::Rate(r));
        }
        if self.duplicate_pct > 0.0 && self.direction.ingress() {
            return Err(SpecError::DuplicateIngress(self.direction));
        }
        if self.reorder_pct > 0.0 && self.reorder_delay_ms <= 0.0 {
            return Err(SpecError::ReorderWithoutDelay);
        }
        // A forced userspace engine with nothing to do is a valid pass-through (benchmarks).
        if !self.needs_packet_engine() && self.rate_kbit.is_none() && self.engine != EngineChoice::Userspace {
            return Err(SpecError::Empty);
        }
        if self.engine == EngineChoice::Netem
            && let Some(what) = self.netem_cannot()
        {
            return Err(SpecError::NotNetem(what));
        }
        Ok(())
    }

    /// The first field kernel netem (as driven here) cannot honour, if any.
    pub fn netem_cannot(&self) -> Option<&'static str> {
        if self.direction != Direction::Egress {
            Some("direction")
        } else if self.corrupt_fix_checksum {
            Some("corrupt_fix_checksum")
        } else if self.loss_correlation_pct > 0.0 {
            // netem's own correlation does not keep the mean loss rate; refuse rather than lie.
            Some("loss_correlation_pct")
        } else if self.reorder_pct > 0.0 && self.delay_ms > 0.0 {
            // netem's reordered share skips the delay entirely; ours waits longer.
            Some("reorder_pct with delay_ms > 0")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_spec_gets_documented_defaults() {
        let s = FaultSpec::from_json(r#"{"id":"a","delay_ms":100}"#).unwrap();
        assert_eq!(s.target, Target::All);
        assert_eq!(s.direction, Direction::Egress);
        assert_eq!(s.distribution, Distribution::Uniform);
        assert_eq!(s.engine, EngineChoice::Auto);
        assert_eq!(s.reorder_delay_ms, 10.0);
        assert_eq!(s.seed, 0);
        assert!(s.needs_packet_engine());
    }

    #[test]
    fn target_accepts_all_one_or_many_and_round_trips() {
        let one = FaultSpec::from_json(r#"{"id":"a","loss_pct":1,"target":"10.0.0.2"}"#).unwrap();
        assert_eq!(one.target, Target::Hosts(vec!["10.0.0.2".parse().unwrap()]));
        let many = FaultSpec::from_json(r#"{"id":"a","loss_pct":1,"target":["10.0.0.2","10.0.0.3"]}"#).unwrap();
        let back = FaultSpec::from_json(&serde_json::to_string(&many).unwrap()).unwrap();
        assert_eq!(back, many);
        let all = serde_json::to_string(&one.clone()).unwrap();
        assert!(all.contains(r#""target":["10.0.0.2"]"#));
        assert!(FaultSpec::from_json(r#"{"id":"a","loss_pct":1,"target":"nope"}"#).is_err());
        assert_eq!(
            FaultSpec::from_json(r#"{"id":"a","loss_pct":1,"target":[]}"#),
            Err(SpecError::EmptyTarget)
        );
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let e = FaultSpec::from_json(r#"{"id":"a","loss_pct":120}"#).unwrap_err();
        assert_eq!(
            e,
            SpecError::Percent {
                field: "loss_pct",
                value: 120.0
            }
        );
        assert!(matches!(
            FaultSpec::from_json(r#"{"id":"a","delay_ms":-1}"#),
            Err(SpecError::Millis { field: "delay_ms", .. })
        ));
        assert!(matches!(
            FaultSpec::from_json(r#"{"id":"a b","delay_ms":1}"#),
            Err(SpecError::BadId(_))
        ));
        assert_eq!(FaultSpec::from_json(r#"{"id":"a"}"#), Err(SpecError::Empty));
        assert!(matches!(
            FaultSpec::from_json(r#"{"id":"a","delay":1}"#),
            Err(SpecError::Json(_))
        ));
    }

    #[test]
    fn rejects_what_no_engine_can_do() {
        assert_eq!(
            FaultSpec::from_json(r#"{"id":"a","rate_kbit":4}"#),
            Err(SpecError::Rate(4))
        );
        assert_eq!(
            FaultSpec::from_json(r#"{"id":"a","duplicate_pct":5,"direction":"both"}"#),
            Err(SpecError::DuplicateIngress(Direction::Both))
        );
        assert_eq!(
            FaultSpec::from_json(r#"{"id":"a","corrupt_pct":5,"corrupt_fix_checksum":true,"engine":"netem"}"#),
            Err(SpecError::NotNetem("corrupt_fix_checksum"))
        );
        assert_eq!(
            FaultSpec::from_json(r#"{"id":"a","loss_pct":5,"loss_model":{"p_pct":1,"r_pct":20}}"#),
            Err(SpecError::TwoLossModels)
        );
        assert_eq!(
            FaultSpec::from_json(r#"{"id":"a","reorder_pct":5,"reorder_delay_ms":0}"#),
            Err(SpecError::ReorderWithoutDelay)
        );
    }

    #[test]
    fn forced_userspace_may_pass_through() {
        let s = FaultSpec::from_json(r#"{"id":"p","engine":"userspace"}"#).unwrap();
        assert!(!s.needs_packet_engine());
    }

    #[test]
    fn rate_only_spec_needs_no_packet_engine() {
        let s = FaultSpec::from_json(r#"{"id":"bw","rate_kbit":8000}"#).unwrap();
        assert!(!s.needs_packet_engine());
    }
}
