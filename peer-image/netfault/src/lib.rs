//! netfault: packet faults for syftchaos peers, on kernels with or without `sch_netem`.
//!
//! Brief overview of the pure parts (the binary adds the acting parts: iptables, tc, NFQUEUE):
//!
//! * [`spec::FaultSpec`]: one fault as JSON (delay, jitter, loss, corruption, duplication,
//!   reordering, bandwidth), validated up front.
//! * [`decide::Decider`]: given a spec and its seed, the fate of each packet.
//! * [`schedule::DelayScheduler`]: holds delayed packets, keeping each flow in order unless a
//!   packet is picked for reordering.
//! * [`packet`]: IPv4 flow keys, corruption, checksum repair.
//! * [`rules`] and [`tc`]: the exact iptables and tc commands, as data.
//! * [`state::State`]: what is installed, so it can be undone and redone.
//! * [`mitm`]: the man in the middle (`netfault mitm`): message framing, the act on one message
//!   per stream, the verdict, and its NAT rules as data.
//! * [`vdso`] and [`trampoline`]: clock skew for any binary (`netfault clock`): where a process's
//!   vDSO clock functions are, and the code page that replaces them with a skewed wall clock.
//!
//! ```
//! use netfault::decide::{Decider, Decision};
//! use netfault::spec::FaultSpec;
//!
//! let spec = FaultSpec::from_json(r#"{"id":"lag","delay_ms":100,"loss_pct":10,"seed":1}"#)?;
//! let mut decider = Decider::new(&spec);
//! let dropped = (0..1000).filter(|_| decider.decide() == Decision::Drop).count();
//! assert!((50..150).contains(&dropped));
//! # Ok::<(), netfault::spec::SpecError>(())
//! ```

pub mod decide;
pub mod mitm;
pub mod packet;
pub mod rules;
pub mod schedule;
pub mod spec;
pub mod state;
pub mod tc;
pub mod trampoline;
pub mod vdso;
