//! Did the faults the plan asked for take? A run whose clock faults never reached the daemon (a static
//! binary under libfaketime, which only moves programs that call glibc) tested nothing about clocks,
//! and a `valid` verdict would say it did. The nemesis measures every peer's clock after each change
//! (`clock-measured`); this check holds each measurement to its request.

use super::{Check, Verdict};
use crate::record::history::{Event, Record};

/// How far a measured clock offset may be from the requested one. Measurements here land within
/// 1 ms (docs/FAULTS.md); the slack covers a status call answered late on a loaded host. What the
/// check catches is a fault that did not take at all, off by the whole offset.
pub const CLOCK_TOLERANCE_MS: i64 = 1000;

/// `clock-applied`: every measured clock offset is within [`CLOCK_TOLERANCE_MS`] of the request.
/// `None` for a run without clock faults. A measurement that could not be made (a peer down, a
/// daemon with no clock to read) is listed but judges nothing; an offset set with a `rate` drifts
/// by design and is left out. A fault that did not take makes the verdict `unknown`: the daemon did
/// nothing wrong, but the run did not test what its plan says.
pub fn clock_applied(history: &[Record]) -> Option<Check> {
    let mut judged = 0usize;
    let mut unmeasured = Vec::new();
    let mut off = Vec::new();
    let mut any = false;
    for r in history {
        let Event::ClockMeasured {
            peer,
            requested_ms,
            measured_ms,
            rate,
        } = &r.event
        else {
            continue;
        };
        any = true;
        if rate.is_some() {
            continue;
        }
        match measured_ms {
            None => unmeasured.push(serde_json::json!({"t_ms": r.t_ms, "peer": peer, "requested_ms": requested_ms})),
            Some(m) => {
                judged += 1;
                if (m - requested_ms).abs() > CLOCK_TOLERANCE_MS {
                    off.push(serde_json::json!({
                        "t_ms": r.t_ms,
                        "peer": peer,
                        "requested_ms": requested_ms,
                        "measured_ms": m,
                        "problem": format!(
                            "{peer}'s clock was asked to be {requested_ms:+} ms off and measured {m:+} ms off"
                        ),
                    }));
                }
            }
        }
    }
    // Only rates (or nothing): there is no measurement to hold to its request.
    if !any || (judged == 0 && unmeasured.is_empty()) {
        return None;
    }
    let (verdict, summary) = if !off.is_empty() {
        (
            Verdict::Unknown,
            format!(
                "{} of {judged} clock changes did not take (measured more than {CLOCK_TOLERANCE_MS} ms from the request): \
                 the run did not test the clocks its plan asks for; is the daemon's clock mechanism the right one (`--clock`)?",
                off.len()
            ),
        )
    } else if judged == 0 {
        (
            Verdict::Unknown,
            format!(
                "no clock change could be measured ({} not measured): whether the clock faults took is not known",
                unmeasured.len()
            ),
        )
    } else {
        (
            Verdict::Valid,
            format!("{judged} clock changes, each measured within {CLOCK_TOLERANCE_MS} ms of its request"),
        )
    };
    Some(Check {
        name: "clock-applied".into(),
        verdict,
        summary,
        rests_on: String::new(),
        evidence: serde_json::json!({
            "tolerance_ms": CLOCK_TOLERANCE_MS,
            "judged": judged,
            "problems": off,
            "not_measured": unmeasured,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(t_ms: u64, requested_ms: i64, measured_ms: Option<i64>, rate: Option<f64>) -> Record {
        Record {
            t_ms,
            wall: String::new(),
            event: Event::ClockMeasured {
                peer: "p1".into(),
                requested_ms,
                measured_ms,
                rate,
            },
        }
    }

    #[test]
    fn a_run_without_clock_faults_has_no_clock_check() {
        assert!(clock_applied(&[]).is_none());
    }

    #[test]
    fn measured_offsets_near_their_requests_are_valid() {
        let c = clock_applied(&[
            measured(10, 3_600_000, Some(3_600_001), None),
            measured(20, 0, Some(-1), None),
        ])
        .unwrap();
        assert_eq!(c.verdict, Verdict::Valid, "{}", c.summary);
        assert_eq!(c.evidence["judged"], 2);
    }

    /// A static daemon under libfaketime: asked +1 h, its clock stays true.
    #[test]
    fn a_clock_fault_that_did_not_take_makes_the_run_unknown_with_the_numbers() {
        let c = clock_applied(&[measured(10, 3_600_000, Some(2), None), measured(20, 0, Some(0), None)]).unwrap();
        assert_eq!(c.verdict, Verdict::Unknown);
        assert!(
            c.summary.starts_with("1 of 2 clock changes did not take"),
            "{}",
            c.summary
        );
        let p = &c.evidence["problems"][0];
        assert_eq!(
            (p["requested_ms"].as_i64(), p["measured_ms"].as_i64()),
            (Some(3_600_000), Some(2))
        );
    }

    #[test]
    fn rates_drift_by_design_and_unmeasured_changes_judge_nothing() {
        let c = clock_applied(&[
            measured(10, 0, Some(90_000), Some(2.0)),
            measured(20, 5_000, None, None),
        ])
        .unwrap();
        assert_eq!(c.verdict, Verdict::Unknown, "nothing was judged: {}", c.summary);
        assert_eq!(c.evidence["not_measured"].as_array().unwrap().len(), 1);
        assert!(
            clock_applied(&[measured(10, 0, Some(90_000), Some(2.0))]).is_none(),
            "only a rate"
        );
        let c = clock_applied(&[
            measured(10, 0, Some(90_000), Some(2.0)),
            measured(20, 5_000, Some(5_003), None),
        ])
        .unwrap();
        assert_eq!(c.verdict, Verdict::Valid, "{}", c.summary);
    }
}
