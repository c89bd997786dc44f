//! What netfault has installed, kept as JSON so `clear` can undo it and `restore` can redo it.
//!
//! Lives in the state directory (default `/run/netfault/`): `state.json` (this type),
//! `<id>.counters.json` (written by each engine daemon), `<id>.log` (its stderr), `lock`.

use serde::{Deserialize, Serialize};

use crate::rules::Rule;
use crate::spec::FaultSpec;
use crate::tc::TcClass;

/// First NFQUEUE number handed out; faults get the lowest free number from here.
pub const FIRST_QUEUE: u16 = 7700;
/// First htb class minor handed out per interface.
pub const FIRST_MINOR: u16 = 0x10;

/// The engine carrying a fault's per-packet effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Netem,
    Userspace,
    /// Bandwidth only: no per-packet engine.
    None,
}

/// One installed fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveFault {
    pub spec: FaultSpec,
    pub engine: Engine,
    pub queue: Option<u16>,
    /// Slot of the packet-mark bit this fault's engine sets (see `rules::mark_bit`).
    #[serde(default)]
    pub mark_slot: Option<u8>,
    pub pid: Option<u32>,
    pub rules: Vec<Rule>,
    pub tc: Vec<TcClass>,
    pub applied_unix_ms: u64,
}

/// Everything installed, plus the iptables binary used (so undo uses the same backend).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct State {
    pub iptables: Option<String>,
    pub faults: Vec<ActiveFault>,
}

impl State {
    pub fn get(&self, id: &str) -> Option<&ActiveFault> {
        self.faults.iter().find(|f| f.spec.id == id)
    }

    /// The lowest queue number no fault uses.
    pub fn free_queue(&self) -> u16 {
        (FIRST_QUEUE..)
            .find(|q| !self.faults.iter().any(|f| f.queue == Some(*q)))
            .expect("fewer faults than queue numbers")
    }

    /// The lowest mark slot no fault uses, if any is left.
    pub fn free_mark_slot(&self) -> Option<u8> {
        (0..crate::rules::MARK_BITS).find(|s| !self.faults.iter().any(|f| f.mark_slot == Some(*s)))
    }

    /// The lowest class minor free on `dev`.
    pub fn free_minor(&self, dev: &str) -> u16 {
        (FIRST_MINOR..)
            .find(|m| {
                !self
                    .faults
                    .iter()
                    .flat_map(|f| &f.tc)
                    .any(|c| c.dev == dev && c.minor == *m)
            })
            .expect("fewer faults than class numbers")
    }

    /// Does any fault other than `except` hold a class on `dev`?
    pub fn dev_in_use(&self, dev: &str, except: &str) -> bool {
        self.faults
            .iter()
            .filter(|f| f.spec.id != except)
            .flat_map(|f| &f.tc)
            .any(|c| c.dev == dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(id: &str, queue: Option<u16>, tc: Vec<TcClass>) -> ActiveFault {
        ActiveFault {
            spec: FaultSpec::from_json(&format!(r#"{{"id":"{id}","delay_ms":1}}"#)).unwrap(),
            engine: Engine::Userspace,
            queue,
            mark_slot: queue.map(|q| (q - FIRST_QUEUE) as u8),
            pid: None,
            rules: vec![],
            tc,
            applied_unix_ms: 0,
        }
    }

    #[test]
    fn allocates_lowest_free_numbers_and_round_trips() {
        let c = |dev: &str, minor| TcClass {
            dev: dev.into(),
            minor,
            ingress_of: None,
        };
        let st = State {
            iptables: Some("iptables".into()),
            faults: vec![
                fault("a", Some(FIRST_QUEUE), vec![c("eth0", FIRST_MINOR)]),
                fault("b", Some(FIRST_QUEUE + 2), vec![c("eth1", FIRST_MINOR)]),
            ],
        };
        assert_eq!(st.free_queue(), FIRST_QUEUE + 1);
        assert_eq!(st.free_mark_slot(), Some(1));
        assert_eq!(st.free_minor("eth0"), FIRST_MINOR + 1);
        assert_eq!(st.free_minor("eth2"), FIRST_MINOR);
        assert!(st.dev_in_use("eth0", "b"));
        assert!(!st.dev_in_use("eth0", "a"));
        let back: State = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
        assert_eq!(back, st);
        assert!(st.get("b").is_some() && st.get("z").is_none());
    }
}
