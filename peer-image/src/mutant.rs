//! Mutants: small, documented bugs switched into the real daemon, one per invariant of the chaos
//! lab, so that every check is seen failing on real containers for the right reason (issue 15; the
//! way Dropbox proved its sync checkers, by mutation). A mutant is a flavor whose name starts with
//! `mutant-` (`flavor: mutant-echo-loop`, `--flavor mutant-echo-loop`), so no ordinary setting can
//! switch one on: the default flavor, `legacy` and `leak` run none of this code.
//!
//! Each is named after the seed bullet it embodies (`../shared/seed/p2p-test-strategy.md`):
//!
//! | flavor | the bug | hook | caught by |
//! |---|---|---|---|
//! | `mutant-echo-loop` (1.1 Echo Loop) | every received version is re-announced as a new local change of the same content | [`crate::apply::apply_batch`] | `no-loop` |
//! | `mutant-metadata-loop` (1.3 Metadata Loops) | a file whose mtime moved (a `touch`) but whose content did not is authored as a new version | [`crate::edits::reconcile`] | `no-metadata-version` |
//! | `mutant-software-bug` (3.2 Software Bugs) | the first pull page that carries a delete panics the page builder (the daemon lives on; the puller retries) | [`crate::server`] `pull` | `no-crash` |
//! | `mutant-data-poisoning` (3.1 Data Poisoning) | downloaded blobs are not checked against the signed hash (size only), so a tampering neighbour's bytes are written | [`crate::fetch`] | `no-poisoning` |
//! | `mutant-consensus-failure` (2.3 Consensus Failures) | between concurrent versions each peer prefers its own: the tie-break differs per peer | [`Tie::PreferOwn`] in [`crate::entry::resolve_with`] | `converged`, `recovered-in-time` |
//! | `mutant-slow-catch-up` (4.3 Catch-up Sync) | a neighbour that became unreachable is not asked again for [`SLOW_CATCH_UP`], whatever its hints say: a healed partition stays apart that long | [`crate::sync::neighbour_loop`] | `recovered-in-time` (and `converged`: the run judges when the limit passes) |
//!
//! The mutant is a value of the node's settings ([`crate::config::Flavor::Mutant`]), read where
//! the bug lives through [`crate::node::Node::mutant`]; the pure rule takes its tie-break as an
//! argument ([`Tie`]).

use std::time::Duration;

/// How long `mutant-slow-catch-up` leaves a neighbour alone once it was lost: longer than any
/// shipped plan's `converge_within`.
pub const SLOW_CATCH_UP: Duration = Duration::from_secs(60);

/// One deliberate bug (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    EchoLoop,
    MetadataLoop,
    SoftwareBug,
    DataPoisoning,
    ConsensusFailure,
    SlowCatchUp,
}

impl Mutant {
    pub const ALL: [Mutant; 6] = [
        Mutant::EchoLoop,
        Mutant::MetadataLoop,
        Mutant::SoftwareBug,
        Mutant::DataPoisoning,
        Mutant::ConsensusFailure,
        Mutant::SlowCatchUp,
    ];

    /// The flavor name that switches it on.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::EchoLoop => "mutant-echo-loop",
            Mutant::MetadataLoop => "mutant-metadata-loop",
            Mutant::SoftwareBug => "mutant-software-bug",
            Mutant::DataPoisoning => "mutant-data-poisoning",
            Mutant::ConsensusFailure => "mutant-consensus-failure",
            Mutant::SlowCatchUp => "mutant-slow-catch-up",
        }
    }

    pub fn parse(name: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// How concurrent versions are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tie<'a> {
    /// The honest rule: the largest `(hlc, author, hash, deleted)` wins, the same on every peer.
    Total,
    /// `mutant-consensus-failure`: a version authored by this short id beats any other author's
    /// concurrent one, so two peers each keep their own write and never agree.
    PreferOwn(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_is_named_mutant_dash_and_parses_back() {
        for m in Mutant::ALL {
            assert!(m.name().starts_with("mutant-"), "{m:?}");
            assert_eq!(Mutant::parse(m.name()), Some(m));
        }
        assert_eq!(Mutant::parse("echo-loop"), None);
        assert_eq!(Mutant::parse("default"), None);
    }
}
