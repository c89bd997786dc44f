//! Shipped plans run for real (issue 5's "Done when"): process, lock and disk faults end `valid`
//! with the reference peer, and the evidence that matters is in the run folder.

use crate::util::*;

/// Runs a shipped plan; returns its exit code, result.json and history records.
fn run_plan(name: &str) -> (Option<i32>, serde_json::Value, Vec<serde_json::Value>) {
    let (_, _, code, result, history) = run_plan_kept(name);
    (code, result, history)
}

/// [`run_plan`], keeping the run folder (in the returned temp dir) for a look at peer files and logs.
fn run_plan_kept(
    name: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Option<i32>,
    serde_json::Value,
    Vec<serde_json::Value>,
) {
    let reports = tempfile::tempdir().unwrap();
    // --keep-files: some tests look into the peers' folders after a valid run.
    let out = run(chaos()
        .args(["run", &format!("chaos-plans/{name}.yaml"), "--keep-files", "--reports"])
        .arg(reports.path()));
    let dir = run_dir(reports.path()).expect("a run folder");
    assert_eq!(labelled(Some(&run_id_of(&dir))), (0, 0), "{name}: nothing left behind");
    let result = result_of(reports.path());
    let history = std::fs::read_to_string(dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (reports, dir, out.status.code(), result, history)
}

fn events<'a>(history: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    history.iter().filter(|r| r["type"] == kind).collect()
}

#[test]
fn a_killed_peer_comes_back_and_loses_nothing() {
    if !docker_ready("a_killed_peer_comes_back_and_loses_nothing") {
        return;
    }
    let _lock = docker_lock();
    let (code, result, history) = run_plan("kill-restart");
    assert_eq!(check(&result, "no-lost-update")["verdict"], "valid");
    let kills: Vec<_> = events(&history, "fault-started")
        .into_iter()
        .filter(|e| e["kind"] == "kill")
        .collect();
    assert_eq!(kills.len(), 1, "the plan killed p2 once");
    assert!(
        events(&history, "fault-stopped")
            .iter()
            .any(|e| e["id"] == "crash-p2#1"),
        "and brought it back"
    );
    let back = events(&history, "peer-back");
    assert!(
        back.iter().any(|e| e["peer"] == "p2" && e["after"] == "kill"),
        "p2 answered again: {back:?}"
    );
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

#[test]
fn a_paused_peer_catches_up_after_unpause() {
    if !docker_ready("a_paused_peer_catches_up_after_unpause") {
        return;
    }
    let _lock = docker_lock();
    let (code, result, _) = run_plan("pause-unpause");
    assert_eq!(check(&result, "converged")["verdict"], "valid");
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

#[test]
fn a_stale_lock_is_cleared_and_sync_goes_on() {
    if !docker_ready("a_stale_lock_is_cleared_and_sync_goes_on") {
        return;
    }
    let _lock = docker_lock();
    let (code, result, history) = run_plan("stale-lock");
    let seen = events(&history, "observed");
    assert!(
        seen.iter()
            .any(|e| e["fault"] == "crashed-apply#1" && e["detail"]["p2"]["cleared"] == true),
        "the stale lock on p2 was removed before the fault ended: {seen:?}"
    );
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

#[test]
fn a_bit_flipped_file_is_repaired_and_never_spreads() {
    if !docker_ready("a_bit_flipped_file_is_repaired_and_never_spreads") {
        return;
    }
    let _lock = docker_lock();
    let (code, result, _) = run_plan("disk-corruption");
    assert_eq!(
        check(&result, "no-corruption")["verdict"],
        "valid",
        "damage must not survive or spread"
    );
    assert_eq!(check(&result, "converged")["verdict"], "valid");
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

#[test]
fn a_full_disk_is_survived_and_caught_up() {
    if !docker_ready("a_full_disk_is_survived_and_caught_up") {
        return;
    }
    let _lock = docker_lock();
    let (code, result, history) = run_plan("disk-full");
    let fill = events(&history, "fault-started")
        .into_iter()
        .find(|e| e["kind"] == "disk")
        .expect("fill started");
    assert!(
        fill["detail"]["p2"]["filled_bytes"].as_u64().unwrap() > 16 << 20,
        "p2's 32 MiB disk was filled"
    );
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

/// The liars of issue 14 (plans `byzantine-equivocate`, `byzantine-replay`, `byzantine-drop`, p5 the
/// liar in each, and `byzantine-lies`, p4), over mutual TLS: every plan ends valid (the honest peers
/// converge, hold nothing no writer wrote), in the equivocation plan every honest peer proved the
/// fork (its `syncpeer_equivocations_detected_total` rose), in the lies plan every honest peer
/// refused both signed metadata lies. The flood has its own test, alone on the machine.
#[test]
fn the_liars_equivocate_replay_drop_and_lie_and_every_plan_ends_valid() {
    if !docker_ready("the_liars_equivocate_replay_drop_and_lie_and_every_plan_ends_valid") {
        return;
    }
    let _lock = docker_lock();
    for plan in [
        "byzantine-equivocate",
        "byzantine-replay",
        "byzantine-drop",
        "byzantine-lies",
    ] {
        let (_reports, dir, code, result, history) = run_plan_kept(plan);
        let switched: Vec<&serde_json::Value> = events(&history, "fault-started")
            .into_iter()
            .filter(|e| e["kind"] == "byzantine")
            .collect();
        assert!(!switched.is_empty(), "{plan}: the liar was switched on");
        for name in ["converged", "no-poisoning", "no-lost-update"] {
            assert_eq!(
                check(&result, name)["verdict"],
                "valid",
                "{plan} {name}: {}",
                check(&result, name)
            );
        }
        assert_eq!(code, Some(0), "{plan}: verdict {}", result["verdict"]);
        if plan == "byzantine-lies" {
            // Every honest peer refused both signed lies (they would have been taken otherwise).
            for p in ["p1", "p2", "p3"] {
                let r = &check(&result, "no-poisoning")["evidence"]["honest_peers"][p]["rejections"];
                for reason in ["bad_timestamp", "bad_counter"] {
                    assert!(r[reason].as_f64().unwrap_or(0.0) >= 1.0, "{p} {reason}: {r}");
                }
            }
        }
        if plan == "byzantine-equivocate" {
            for name in ["forks-detected", "offender-quarantined"] {
                assert_eq!(check(&result, name)["verdict"], "valid", "{}", check(&result, name));
            }
            // The evidence each honest peer listed is kept in the run folder: both statements.
            for p in ["p1", "p2", "p3", "p4"] {
                let kept: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(dir.join("evidence").join(format!("{p}.json"))).unwrap())
                        .unwrap();
                let proofs = kept["equivocations"].as_array().unwrap();
                assert!(
                    proofs
                        .iter()
                        .any(|r| r["author_name"] == "p5" && r["statements"].as_array().unwrap().len() == 2),
                    "{p}: {kept}"
                );
            }
            let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
            let mut detected = std::collections::BTreeMap::new();
            for line in metrics.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(n) = v["values"]["syncpeer_equivocations_detected_total"].as_f64() {
                    let peer = v["peer"].as_str().unwrap().to_string();
                    let seen: &mut f64 = detected.entry(peer).or_default();
                    *seen = seen.max(n);
                }
            }
            for p in ["p1", "p2", "p3", "p4"] {
                assert!(
                    detected.get(p).is_some_and(|n| *n >= 1.0),
                    "{p} proved no fork: {detected:?}"
                );
            }
        }
    }
}

/// `byzantine-flood` (issue 14 item 4): p5 floods every neighbour at four times the rate limit while
/// the honest peers write. The flood is refused as `rate_limited`, then the flooder is quarantined;
/// nothing is lost or poisoned, and `criterion-flood` is judged with its numbers: honest
/// propagation p99 under the flood against the same run's calm p99, within 2x plus 100 ms. That
/// bound is generous since the quarantine (measured 1.0x: 12 ms against 12 ms; 2.7-7x with only the
/// tarpit), so the plan must exit 0. Alone on the machine, so that the numbers mean something.
#[test]
fn a_flood_is_refused_and_the_flood_criterion_is_judged() {
    if !docker_ready("a_flood_is_refused_and_the_flood_criterion_is_judged") {
        return;
    }
    let _lock = docker_lock_alone();
    let (_reports, _dir, code, result, history) = run_plan_kept("byzantine-flood");
    assert!(
        events(&history, "fault-started")
            .iter()
            .any(|e| e["kind"] == "byzantine"),
        "the liar was switched on"
    );
    for name in ["converged", "no-poisoning", "no-lost-update", "no-corruption"] {
        assert_eq!(
            check(&result, name)["verdict"],
            "valid",
            "{name}: {}",
            check(&result, name)
        );
    }
    let flood = check(&result, "criterion-flood");
    eprintln!("criterion-flood: {}", flood["summary"]);
    assert!(
        flood["evidence"]["flooded"]["pairs"].as_u64().unwrap_or(0) > 0,
        "{flood}"
    );
    assert!(flood["evidence"]["calm"]["pairs"].as_u64().unwrap_or(0) > 0, "{flood}");
    assert_eq!(flood["verdict"], "valid", "{flood}");
    // Refused somewhere: how the flood spreads over the four honest peers depends on how fast each
    // answers (the liar's 32 connections share 2 cores with them), so the sum is asserted.
    let honest = &check(&result, "no-poisoning")["evidence"]["honest_peers"];
    let limited: f64 = ["p1", "p2", "p3", "p4"]
        .iter()
        .map(|p| honest[p]["rejections"]["rate_limited"].as_f64().unwrap_or(0.0))
        .sum();
    assert!(limited >= 1.0, "no request was refused over the rate limit: {honest}");
    let quarantined: f64 = ["p1", "p2", "p3", "p4"]
        .iter()
        .map(|p| honest[p]["rejections"]["quarantined"].as_f64().unwrap_or(0.0))
        .sum();
    assert!(quarantined >= 1.0, "the flooder was never quarantined: {honest}");
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

/// An eclipse (plan `byzantine-eclipse`): while its one honest link is cut, every neighbour p1 can
/// reach (p2, p3) tampers and forges. p1 must reject the lies itself, never hold a byte no writer
/// wrote, and catch up through p4 once the cut heals, the liars still lying.
#[test]
fn an_eclipsed_peer_rejects_its_lying_neighbours_and_recovers_through_the_honest_path() {
    if !docker_ready("an_eclipsed_peer_rejects_its_lying_neighbours_and_recovers_through_the_honest_path") {
        return;
    }
    let _lock = docker_lock();
    let (_reports, _dir, code, result, _history) = run_plan_kept("byzantine-eclipse");
    for name in ["converged", "no-poisoning", "no-lost-update"] {
        assert_eq!(
            check(&result, name)["verdict"],
            "valid",
            "{name}: {}",
            check(&result, name)
        );
    }
    let victim = &check(&result, "no-poisoning")["evidence"]["honest_peers"]["p1"]["rejections"];
    assert!(
        victim["bad_signature"].as_f64().unwrap_or(0.0) + victim["bad_hash"].as_f64().unwrap_or(0.0) >= 1.0,
        "the victim noticed no lie: {victim}"
    );
    let eclipse = result["recovery"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["fault"] == "eclipse#1")
        .unwrap_or_else(|| panic!("no recovery after the eclipse: {}", result["recovery"]));
    // Caught up while the liars still lied (they stop 8 s after the cut heals).
    assert!(
        eclipse["converged_after_ms"].as_u64().is_some_and(|ms| ms < 8_000),
        "{eclipse}"
    );
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

/// A Sybil attack (plan `byzantine-sybil`): p4 presents eight made-up identities. Every attempt
/// they make on an honest peer is refused in the handshake (`sybils-refused`), the versions they
/// signed are refused as `untrusted` by every honest peer and never written (`no-poisoning`), and
/// each honest peer's audit trail names p4 as the sender of those versions.
#[test]
fn sybil_identities_get_nothing_and_their_versions_are_refused_by_every_honest_peer() {
    if !docker_ready("sybil_identities_get_nothing_and_their_versions_are_refused_by_every_honest_peer") {
        return;
    }
    let _lock = docker_lock();
    let (_reports, dir, code, result, _history) = run_plan_kept("byzantine-sybil");
    for name in ["sybils-refused", "no-poisoning", "converged", "no-lost-update"] {
        assert_eq!(
            check(&result, name)["verdict"],
            "valid",
            "{name}: {}",
            check(&result, name)
        );
    }
    let attempts = &check(&result, "sybils-refused")["evidence"]["attempts_per_liar"]["p4"];
    assert!(attempts["refused"].as_f64().unwrap_or(0.0) >= 8.0, "{attempts}");
    for p in ["p1", "p2", "p3"] {
        let untrusted = &check(&result, "sybils-refused")["evidence"]["untrusted_rejections_per_honest_peer"][p];
        assert!(untrusted.as_f64().unwrap_or(0.0) >= 8.0, "{p}: {untrusted}");
        let trail = std::fs::read_to_string(dir.join(format!("peers/{p}/state/audit.jsonl"))).unwrap();
        let refused: Vec<serde_json::Value> = trail
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["reason"] == "untrusted")
            .collect();
        assert!(!refused.is_empty(), "{p}'s audit trail names no refused Sybil version");
        assert!(refused.iter().all(|l| l["from"] == "p4"), "{p}: {refused:?}");
        assert!(
            !dir.join(format!("peers/{p}/sync/sybil")).exists(),
            "{p} wrote Sybil versions"
        );
    }
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

/// A man in the middle on the p1-p2 link (plan `byzantine-mitm`): a proxy in p1's fault agent
/// alters, then drops, then replays one message of every stream between p1 and p2 on the sync port.
/// Mutual TLS refuses every tampered stream (`mitm-refused`: acted on, never answered), in each
/// mode; nothing forged lands anywhere, everyone converges, and the proxy's rules are gone after.
#[test]
fn a_man_in_the_middle_is_refused_by_tls_in_every_mode() {
    if !docker_ready("a_man_in_the_middle_is_refused_by_tls_in_every_mode") {
        return;
    }
    let _lock = docker_lock();
    let (_reports, _dir, code, result, history) = run_plan_kept("byzantine-mitm");
    for name in ["mitm-refused", "converged", "no-corruption", "no-lost-update"] {
        assert_eq!(
            check(&result, name)["verdict"],
            "valid",
            "{name}: {}",
            check(&result, name)
        );
    }
    let faults = &check(&result, "mitm-refused")["evidence"]["faults"];
    for mode in ["alter", "drop", "replay"] {
        let (id, f) = faults
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, f)| f["mode"] == mode)
            .unwrap_or_else(|| panic!("no {mode} tally: {faults}"));
        let p1 = &f["proxies"]["p1"];
        assert!(
            p1["acted"].as_u64().unwrap_or(0) >= 1,
            "{mode} ({id}) acted on no stream: {p1}"
        );
        assert_eq!(p1["answered"], 0, "{mode}: {p1}");
    }
    // Every man in the middle was taken off with its tally (one `observed` per step).
    assert_eq!(events(&history, "observed").len(), 3);
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

/// A liar among honest peers (plan `byzantine-peer`): p5 withholds, forges, tampers, floods and
/// trickles in turn. The honest peers reject its lies themselves (bad hashes, bad signatures,
/// quarantine), never hold a byte no writer wrote, and everyone converges once the
/// control file is gone.
#[test]
fn a_byzantine_peer_is_caught_by_the_honest_ones_and_poisons_nothing() {
    if !docker_ready("a_byzantine_peer_is_caught_by_the_honest_ones_and_poisons_nothing") {
        return;
    }
    let _lock = docker_lock();
    let (_reports, dir, code, result, history) = run_plan_kept("byzantine-peer");
    let lies: Vec<&str> = events(&history, "fault-started")
        .into_iter()
        .filter(|e| e["kind"] == "byzantine" && e["detail"]["written"]["p5"].is_array())
        .filter_map(|e| e["detail"]["behaviours"][0].as_str())
        .collect();
    assert_eq!(lies, ["withhold", "forge", "tamper", "flood", "slowloris"]);
    assert!(
        !dir.join("peers/p5/state/byzantine").exists(),
        "the heal removes the control file"
    );
    let log = std::fs::read_to_string(dir.join("logs/p5.log")).unwrap();
    assert!(log.contains("byzantine mode off: honest again"), "p5 read the heal");

    for name in ["no-poisoning", "no-corruption", "converged"] {
        assert_eq!(
            check(&result, name)["verdict"],
            "valid",
            "{name}: {}",
            check(&result, name)
        );
    }
    let honest = check(&result, "no-poisoning")["evidence"]["honest_peers"]
        .as_object()
        .expect("the honest peers' rejections")
        .clone();
    assert_eq!(honest.len(), 4, "p1..p4 judged, not the liar: {honest:?}");
    let total = |reason: &str| -> f64 {
        honest
            .values()
            .map(|p| p["rejections"][reason].as_f64().unwrap_or(0.0))
            .sum()
    };
    assert!(total("bad_hash") > 0.0, "tampered content rejected: {honest:?}");
    assert!(total("bad_signature") > 0.0, "forged versions rejected: {honest:?}");
    // Its lies have it quarantined before it floods, so the flood is refused as from a quarantined
    // peer here; `byzantine-flood`'s test sees it refused over the rate limit first.
    assert!(total("quarantined") > 0.0, "the liar was quarantined: {honest:?}");
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

#[test]
fn touch_and_chmod_make_no_versions() {
    if !docker_ready("touch_and_chmod_make_no_versions") {
        return;
    }
    let _lock = docker_lock();
    let (code, result, history) = run_plan("metadata-churn");
    let meta = check(&result, "no-metadata-version");
    assert_eq!(meta["verdict"], "valid", "{meta}");
    assert!(meta["evidence"]["metadata_ops"].as_u64().unwrap() > 20, "{meta}");
    assert!(!events(&history, "meta").is_empty());
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

/// Issue 12 item 8: the seed's success criteria as checks. `seed-criteria` sets the seed's numbers;
/// every one is a `criterion-*` check, valid for syncpeer, and the propagation latency it judges was
/// timed by the inotify watcher (1 ms), not the monitor's 200 ms poll, with the cross-check agreeing.
#[test]
fn seed_criteria_are_checks_and_propagation_is_timed_by_inotify() {
    if !docker_ready("seed_criteria_are_checks_and_propagation_is_timed_by_inotify") {
        return;
    }
    let _lock = docker_lock_alone();
    let (_reports, dir, code, result, _) = run_plan_kept("seed-criteria");
    for name in [
        "criterion-recovery",
        "criterion-propagation-p99",
        "criterion-bytes",
        "criterion-conflicts",
        "criterion-cpu",
        "criterion-memory",
    ] {
        assert_eq!(check(&result, name)["verdict"], "valid", "{}", check(&result, name));
    }
    let p = &result["figures"]["propagation"];
    assert_eq!(
        (&p["source"], &p["resolution_ms"]),
        (&"inotify".into(), &1.into()),
        "{p}"
    );
    assert_eq!(p["poll_only"], 0, "the watcher saw every arrival the poll saw: {p}");
    assert!(p["calm"]["samples"].as_u64().unwrap() > 100, "{p}");
    assert!(dir.join("sightings.jsonl").is_file());
    assert_eq!(result["figures"]["steady"].as_array().unwrap().len(), 4);
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

/// The same run held to limits syncpeer cannot meet: each criterion over its limit is `invalid`, with
/// the figure, the limit and the heal or peer as evidence, and the run exits 1.
#[test]
fn criteria_over_their_limits_are_invalid_with_evidence() {
    if !docker_ready("criteria_over_their_limits_are_invalid_with_evidence") {
        return;
    }
    let _lock = docker_lock();
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(plans().join("seed-criteria.yaml")).unwrap();
    let mut tight = text.split("  criteria:").next().unwrap().to_string();
    tight.push_str(
        "  criteria: {recovery: 1ms, propagation_p99: 1ms, cpu_pct: 0.001, memory: 1KiB, conflict_pct: 0.1}\n",
    );
    let plan = tmp.path().join("seed-criteria-tight.yaml");
    std::fs::write(&plan, tight).unwrap();
    let out = run(chaos()
        .arg("run")
        .arg(&plan)
        .arg("--profiles")
        .arg(repo().join("peer-image/profiles"))
        .arg("--topologies")
        .arg(repo().join("topologies"))
        .arg("--reports")
        .arg(tmp.path().join("reports")));
    let result = result_of(&tmp.path().join("reports"));
    let recovery = check(&result, "criterion-recovery");
    assert_eq!(recovery["verdict"], "invalid", "{recovery}");
    assert!(
        recovery["evidence"]["late"][0]["fault"]
            .as_str()
            .unwrap()
            .starts_with("cut-p4"),
        "the partition's heal is named: {recovery}"
    );
    let p99 = check(&result, "criterion-propagation-p99");
    assert_eq!(p99["verdict"], "invalid", "{p99}");
    assert_eq!(
        (&p99["evidence"]["limit_ms"], &p99["evidence"]["resolution_ms"]),
        (&1.into(), &1.into())
    );
    for name in ["criterion-cpu", "criterion-memory"] {
        let c = check(&result, name);
        assert_eq!(c["verdict"], "invalid", "{c}");
        assert_eq!(
            c["evidence"]["over"].as_array().unwrap().len(),
            4,
            "every peer is named: {c}"
        );
    }
    assert_eq!(
        check(&result, "criterion-conflicts")["verdict"],
        "valid",
        "single writers: no conflict"
    );
    assert!(
        result["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "criterion-bytes"),
        "not set, not judged"
    );
    assert_eq!(out.status.code(), Some(1));
}
