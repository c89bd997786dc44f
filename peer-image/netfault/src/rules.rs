//! The iptables rules netfault owns, as data (argument vectors), so they can be tested.
//!
//! Two chains in the mangle table: [`CHAIN_OUT`] jumped to from OUTPUT (egress) and
//! [`CHAIN_IN`] jumped to from PREROUTING (ingress). Each chain starts with a rule that lets
//! packets carrying [`DUP_MARK`] through (the copies the engine re-sends), then one NFQUEUE
//! rule per target and fault, tagged with a comment `netfault:<id>`, with `--queue-bypass` so
//! that a dead engine lets traffic pass instead of black-holing it. Clearing everything removes
//! the jumps and both chains; nothing else in any table is touched.
//!
//! Faults compose: each NFQUEUE fault owns one bit of the packet mark ([`mark_bit`]); its rule
//! skips packets carrying that bit, and its engine, instead of accepting a packet, sets the bit
//! and returns NF_REPEAT, so the packet walks the chain again and reaches the next matching
//! fault (a delay on "all" plus a loss to one peer both apply to that peer).

use serde::{Deserialize, Serialize};

use crate::spec::{FaultSpec, Target};

pub const TABLE: &str = "mangle";
pub const CHAIN_OUT: &str = "SYFTCHAOS_NETEM_OUT";
pub const CHAIN_IN: &str = "SYFTCHAOS_NETEM_IN";
/// Mark put (with SO_MARK) on duplicated packets so they are not queued a second time.
pub const DUP_MARK: u32 = 0x5ecf_0000;
pub const DUP_MARK_MASK: u32 = 0xffff_0000;
/// How many NFQUEUE faults can be active at once (one mark bit each, bits 0..15).
pub const MARK_BITS: u8 = 16;

/// The packet-mark bit of the fault holding slot `slot`.
pub fn mark_bit(slot: u8) -> u32 {
    assert!(slot < MARK_BITS, "mark slot {slot} out of range");
    1 << slot
}

/// One rule: the chain it lives in and the match/target arguments after `-A <chain>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub chain: String,
    pub args: Vec<String>,
}

impl Rule {
    fn argv(&self, op: &str) -> Vec<String> {
        let mut v = vec!["-w".into(), "-t".into(), TABLE.into(), op.into(), self.chain.clone()];
        v.extend(self.args.iter().cloned());
        v
    }
    /// Arguments to append the rule.
    pub fn append(&self) -> Vec<String> {
        self.argv("-A")
    }
    /// Arguments to delete the rule.
    pub fn delete(&self) -> Vec<String> {
        self.argv("-D")
    }
    /// Arguments to check whether the rule exists.
    pub fn check(&self) -> Vec<String> {
        self.argv("-C")
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// The built-in chain each of our chains is jumped to from.
pub fn parent_of(chain: &str) -> &'static str {
    if chain == CHAIN_IN { "PREROUTING" } else { "OUTPUT" }
}

/// The jump from the built-in chain into ours (inserted first, so other mangle rules cannot
/// shadow it).
pub fn jump(chain: &str) -> Rule {
    Rule {
        chain: parent_of(chain).into(),
        args: s(&["-j", chain]),
    }
}

/// The first rule of each chain: duplicated copies pass untouched.
pub fn dup_bypass(chain: &str) -> Rule {
    Rule {
        chain: chain.into(),
        args: vec![
            "-m".into(),
            "mark".into(),
            "--mark".into(),
            format!("{DUP_MARK:#x}/{DUP_MARK_MASK:#x}"),
            "-j".into(),
            "RETURN".into(),
        ],
    }
}

/// The NFQUEUE rules of one fault sent to queue `queue`, skipping packets marked `mark`.
pub fn fault_rules(spec: &FaultSpec, queue: u16, mark: u32) -> Vec<Rule> {
    let mut out = Vec::new();
    let tail = |mut v: Vec<String>| {
        v.extend([
            "-m".into(),
            "mark".into(),
            "!".into(),
            "--mark".into(),
            format!("{mark:#x}/{mark:#x}"),
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            format!("netfault:{}", spec.id),
            "-j".into(),
            "NFQUEUE".into(),
            "--queue-num".into(),
            queue.to_string(),
            "--queue-bypass".into(),
        ]);
        v
    };
    let dirs = [
        (spec.direction.egress(), CHAIN_OUT, "-d", "-o"),
        (spec.direction.ingress(), CHAIN_IN, "-s", "-i"),
    ];
    for (on, chain, addr_flag, if_flag) in dirs {
        if !on {
            continue;
        }
        match &spec.target {
            Target::All => out.push(Rule {
                chain: chain.into(),
                args: tail(s(&["!", if_flag, "lo"])),
            }),
            Target::Hosts(hosts) => {
                for h in hosts {
                    out.push(Rule {
                        chain: chain.into(),
                        args: tail(vec![addr_flag.into(), format!("{h}/32")]),
                    });
                }
            }
        }
    }
    out
}

/// Does `iptables-save` output mention any of our chains? (Used by tests and `status`.)
pub fn save_mentions_ours(save: &str) -> bool {
    save.contains(CHAIN_OUT) || save.contains(CHAIN_IN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_hosts_get_one_rule_each_with_bypass_and_comment() {
        let spec = FaultSpec::from_json(r#"{"id":"lag","delay_ms":5,"target":["10.0.0.2","10.0.0.3"]}"#).unwrap();
        let rules = fault_rules(&spec, 7701, mark_bit(2));
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0].append().join(" "),
            "-w -t mangle -A SYFTCHAOS_NETEM_OUT -d 10.0.0.2/32 -m mark ! --mark 0x4/0x4 \
             -m comment --comment netfault:lag -j NFQUEUE --queue-num 7701 --queue-bypass"
        );
        assert_eq!(rules[1].delete()[3], "-D");
        assert!(rules[1].args.contains(&"10.0.0.3/32".to_string()));
    }

    #[test]
    fn both_directions_on_all_skip_loopback() {
        let spec = FaultSpec::from_json(r#"{"id":"x","loss_pct":1,"direction":"both"}"#).unwrap();
        let rules = fault_rules(&spec, 1, mark_bit(0));
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].chain, CHAIN_OUT);
        assert_eq!(&rules[0].args[..3], &["!", "-o", "lo"]);
        assert_eq!(rules[1].chain, CHAIN_IN);
        assert_eq!(&rules[1].args[..3], &["!", "-i", "lo"]);
    }

    #[test]
    fn ingress_matches_source_and_jumps_from_prerouting() {
        let spec =
            FaultSpec::from_json(r#"{"id":"x","delay_ms":1,"direction":"ingress","target":"10.1.2.3"}"#).unwrap();
        let rules = fault_rules(&spec, 3, mark_bit(15));
        assert_eq!(rules.len(), 1);
        assert_eq!(&rules[0].args[..2], &["-s", "10.1.2.3/32"]);
        assert_eq!(
            jump(CHAIN_IN).append().join(" "),
            "-w -t mangle -A PREROUTING -j SYFTCHAOS_NETEM_IN"
        );
        assert_eq!(
            dup_bypass(CHAIN_OUT).args.join(" "),
            "-m mark --mark 0x5ecf0000/0xffff0000 -j RETURN"
        );
    }
}
