//! Plan parsing and validation: good plans resolve, bad ones name file:line:column.

use super::*;

fn parse_str(text: &str) -> Result<Plan, PlanError> {
    parse(text, Path::new("test.yaml"), Path::new("../topologies"))
}

const SMOKE: &str = "\
name: smoke
seed: 7
peers: 3
topology: ring
workload:
  - {at: 1s, peer: p1, create: notes/a.txt, size: 4KiB}
  - at: 2s
    peer: all
    random: {duration: 3s, rate: 2, files: 5}
steps:
  - at: 3s
    duration: 5s
    partition: {groups: [[p1], [p2, p3]]}
expect:
  converge_within: 30s
";

#[test]
fn a_good_plan_resolves() {
    let plan = parse_str(SMOKE).unwrap();
    assert_eq!(plan.peers, vec!["p1", "p2", "p3"]);
    assert_eq!(plan.seed, 7);
    assert_eq!(plan.topology.edges.len(), 3);
    assert_eq!(plan.workload.len(), 2);
    assert!(matches!(
        plan.workload[0].kind,
        WorkloadKind::Single {
            op: FileOpKind::Create,
            size: SizeRange { min: 4096, .. },
            ..
        }
    ));
    assert_eq!(plan.steps[0].duration, Some(Dur::from_ms(5000)));
    assert!(
        matches!(&plan.steps[0].fault, Fault::Partition(PartitionSpec { shape: PartitionShape::Groups(g), .. }) if g == &vec![vec![0], vec![1, 2]])
    );
    assert_eq!(plan.expect.converge_within, Dur::from_ms(30_000));
}

#[test]
fn touch_and_chmod_are_workload_operations() {
    let text = SMOKE.replace(
        "    random: {duration: 3s, rate: 2, files: 5}",
        "    random: {duration: 3s, rate: 2, files: 5, mix: {create: 1, touch: 2, chmod: 3}}\n  - {at: 3s, peer: p2, touch: notes/a.txt}\n  - {at: 4s, peer: p3, chmod: notes/a.txt}",
    );
    let plan = parse_str(&text).unwrap();
    assert!(matches!(
        plan.workload[2].kind,
        WorkloadKind::Single {
            op: FileOpKind::Touch,
            ..
        }
    ));
    assert!(matches!(
        plan.workload[3].kind,
        WorkloadKind::Single {
            op: FileOpKind::Chmod,
            ..
        }
    ));
    assert!(matches!(
        plan.workload[1].kind,
        WorkloadKind::Random {
            mix: Mix { touch: 2, chmod: 3, .. },
            ..
        }
    ));
    let e = error_of(&SMOKE.replace(
        "create: notes/a.txt, size: 4KiB",
        "touch: notes/a.txt, chmod: notes/a.txt",
    ));
    assert!(
        e.to_string()
            .contains("exactly one of create, modify, delete, touch, chmod, random"),
        "{e}"
    );
}

fn error_of(text: &str) -> PlanError {
    parse_str(text).expect_err("plan should be rejected")
}

#[test]
fn unknown_key_is_located() {
    let e = error_of("name: x\npeers: 3\nsteps:\n  - at: 1s\n    duraton: 2s\n    partition: {shape: halves}\n");
    assert_eq!((e.line, e.column), (5, 5), "{e}");
    assert!(e.message.contains("duraton"), "{e}");
    assert!(e.to_string().starts_with("test.yaml:5:5: "), "{e}");
}

#[test]
fn negative_duration_is_located() {
    let e = error_of("name: x\npeers: 3\nsteps:\n  - at: 1s\n    duration: -2s\n    partition: {shape: halves}\n");
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("negative"), "{e}");
}

#[test]
fn unknown_peer_is_located() {
    let e = error_of("name: x\npeers: 3\nworkload:\n  - {at: 1s, peer: p9, create: a.txt}\n");
    assert_eq!(e.line, 4, "{e}");
    assert!(
        e.message.contains("unknown peer `p9`") && e.message.contains("p1 to p3"),
        "{e}"
    );
}

#[test]
fn unknown_peer_in_groups_is_located() {
    let e = error_of("name: x\npeers: 2\nsteps:\n  - at: 1s\n    partition: {groups: [[p1], [p7]]}\n");
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("p7"), "{e}");
}

#[test]
fn bad_values_say_what_is_allowed() {
    assert!(error_of("name: x\npeers: 0\n").message.contains("1 to 200"));
    assert!(
        error_of("name: x\npeers: 2\nflavor: fancy\n")
            .message
            .contains("allowed: default, legacy")
    );
    assert!(
        error_of("name: x\npeers: 2\ntopology: hypercube\n")
            .message
            .contains("unknown topology")
    );
    assert!(
        error_of("name: x\npeers: 2\nsteps:\n  - {at: 1s, partition: {shape: donut}}\n")
            .message
            .contains("allowed: halves")
    );
    assert!(
        error_of("name: x\npeers: 2\nsteps:\n  - {at: 1s}\n")
            .message
            .contains("needs a fault")
    );
    assert!(
        error_of("name: x\npeers: 2\nworkload:\n  - {at: 1s, peer: p1, create: ../etc/passwd}\n")
            .message
            .contains("relative")
    );
    assert!(
        error_of("name: x\npeers: 2\nworkload:\n  - {at: 1s, peer: p1, create: a, delete: a}\n")
            .message
            .contains("exactly one")
    );
    assert!(
        error_of("name: x\npeers: 3\nsteps:\n  - {at: 1s, partition: {shape: rolling}}\n")
            .message
            .contains("every")
    );
}

#[test]
fn named_topology_files_are_read() {
    let plan = parse_str("name: x\npeers: 4\ntopology: line\n").unwrap();
    assert_eq!(plan.topology.edges.len(), 3);
    let plan = parse_str("name: x\npeers: 7\ntopology: {kind: tree, fanout: 3}\n").unwrap();
    assert_eq!(plan.topology.neighbours(0).len(), 3);
}

#[test]
fn every_checked_in_plan_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../chaos-plans");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            load(&path, &dir.join("../topologies")).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1, "no plans found in {}", dir.display());
}

#[test]
fn the_packet_fault_engine_can_be_forced_for_the_whole_plan() {
    let plan = parse_str("name: x\npeers: 2\nengine: userspace\nsteps:\n  - {at: 1s, link: {delay: 10ms}}\n").unwrap();
    assert_eq!(plan.engine, "userspace");
    let s = crate::generator::generate(&plan);
    let crate::generator::Action::FaultStart {
        fault: crate::generator::ConcreteFault::Link { params, .. },
        ..
    } = &s.ops[0].action
    else {
        panic!("a link fault")
    };
    assert_eq!(params.engine.as_deref(), Some("userspace"));
    assert!(
        error_of("name: x\npeers: 2\nengine: turbo\n")
            .message
            .contains("allowed: auto, netem, userspace")
    );
}

#[test]
fn byzantine_steps_resolve_and_bad_behaviours_say_what_is_allowed() {
    let plan = parse_str(
        "name: x\npeers: 4\nquarantine: 4s\nsteps:\n  - {at: 1s, duration: 3s, byzantine: {peers: p4, behaviour: tamper}}\n  - {at: 5s, byzantine: {peers: [p3, p4], behaviour: [withhold, flood]}}\n",
    )
    .unwrap();
    assert_eq!(plan.quarantine, Some(Dur::from_ms(4000)));
    assert!(
        matches!(&plan.steps[0].fault, Fault::Byzantine(b) if b == &ByzantineSpec { peers: Selector::Peers(vec![3]), behaviours: vec!["tamper".into()] })
    );
    assert!(matches!(&plan.steps[1].fault, Fault::Byzantine(b) if b.behaviours == ["withhold", "flood"]));
    let e = error_of("name: x\npeers: 3\nsteps:\n  - at: 1s\n    byzantine: {peers: p3, behaviour: sulk}\n");
    assert_eq!(e.line, 5, "{e}");
    assert!(
        e.message
            .contains("unknown byzantine behaviour `sulk`; allowed: tamper, forge, withhold, flood, slowloris"),
        "{e}"
    );
    let e = error_of("name: x\npeers: 3\nsteps:\n  - {at: 1s, byzantine: {peers: p3, behaviour: [tamper, tamper]}}\n");
    assert!(e.message.contains("twice"), "{e}");
    let e = error_of("name: x\npeers: 3\nsteps:\n  - {at: 1s, byzantine: {peers: p3, behaviour: []}}\n");
    assert!(e.message.contains("needs a `behaviour`"), "{e}");
    let e = error_of("name: x\npeers: 3\nsteps:\n  - {at: 1s, byzantine: {peers: p9, behaviour: flood}}\n");
    assert!(e.message.contains("unknown peer `p9`"), "{e}");
    let e = error_of("name: x\npeers: 3\nquarantine: 0s\n");
    assert_eq!(e.line, 3, "{e}");
    let e = error_of(
        "name: x\npeers: 3\nsteps:\n  - {at: 1s, duration: 4s, every: 2s, byzantine: {peers: p3, behaviour: flood}}\n",
    );
    assert!(e.message.contains("`every`"), "{e}");
}

#[test]
fn the_liars_of_issue_14_resolve_and_a_drop_names_its_paths_and_peers() {
    let plan = parse_str(
        "name: x\npeers: 4\nsteps:\n  - {at: 1s, byzantine: {peers: p4, behaviour: [equivocate, replay]}}\n  - {at: 2s, byzantine: {peers: p4, behaviour: drop, paths: [\"secret/**\", \"**/*.key\"], to: [p2, p3]}}\n  - {at: 3s, byzantine: {peers: p3, behaviour: drop, to: p1}}\n",
    )
    .unwrap();
    assert!(matches!(&plan.steps[0].fault, Fault::Byzantine(b) if b.behaviours == ["equivocate", "replay"]));
    assert!(
        matches!(&plan.steps[1].fault, Fault::Byzantine(b) if b.behaviours == ["drop paths=secret/**,**/*.key peers=p2,p3"])
    );
    assert!(matches!(&plan.steps[2].fault, Fault::Byzantine(b) if b.behaviours == ["drop peers=p1"]));
    let head = "name: x\npeers: 3\nsteps:\n";
    let cases = [
        // (step, line, column, what the message must hold)
        (
            "  - {at: 1s, byzantine: {peers: p3, behaviour: drop}}\n",
            4,
            "needs `paths`, `to` or both",
        ),
        (
            "  - {at: 1s, byzantine: {peers: p3, behaviour: tamper, paths: a/*}}\n",
            4,
            "go with behaviour `drop` only",
        ),
        (
            "  - {at: 1s, byzantine: {peers: p3, behaviour: drop, paths: \"a b\"}}\n",
            4,
            "`paths`: ` ` in a glob; allowed: a relative path glob",
        ),
        (
            "  - {at: 1s, byzantine: {peers: p3, behaviour: drop, paths: \"a/**b\"}}\n",
            4,
            "`**` inside the component `**b`",
        ),
        (
            "  - at: 1s\n    byzantine:\n      peers: p3\n      behaviour: drop\n      to: p9\n",
            8,
            "unknown peer `p9`",
        ),
        (
            "  - {at: 1s, byzantine: {peers: p3, behaviour: drop, to: [p1, p1]}}\n",
            4,
            "listed twice",
        ),
        (
            "  - {at: 1s, byzantine: {peers: p3, behaviour: drop, to: {random: 1}}}\n",
            4,
            "allowed: one peer name or a list",
        ),
        (
            "  - {at: 1s, byzantine: {peers: p3, behaviour: drop, glob: a}}\n",
            4,
            "unknown key `glob`; allowed: peers, behaviour, paths, to",
        ),
    ];
    for (step, line, needle) in cases {
        let e = error_of(&format!("{head}{step}"));
        assert_eq!(e.line, line, "{e}");
        assert!(e.column > 0, "{e}");
        assert!(e.message.contains(needle), "{needle}: {e}");
    }
}

/// docs/plan.schema.json (for editors) and the parser know the same keys, map by map: the parser's
/// own "unknown key; allowed: …" list is compared with the schema's `properties`.
#[test]
fn the_json_schema_has_exactly_the_parsers_keys() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/plan.schema.json")).unwrap(),
    )
    .unwrap();
    let head = "name: x\npeers: 3\n";
    let cases = [
        ("zzz: 1\n", "/properties"),
        ("expect: {zzz: 1}\n", "/properties/expect/properties"),
        ("expect: {leak: {zzz: 1}}\n", "/definitions/leak/properties"),
        ("expect: {criteria: {zzz: 1}}\n", "/definitions/criteria/properties"),
        ("topology: {zzz: 1}\n", "/definitions/topologySpec/properties"),
        (
            "workload:\n  - {at: 1s, peer: p1, zzz: 1}\n",
            "/definitions/workloadEntry/properties",
        ),
        (
            "workload:\n  - {at: 1s, peer: p1, random: {duration: 1s, rate: 1, zzz: 1}}\n",
            "/definitions/random/properties",
        ),
        (
            "workload:\n  - {at: 1s, peer: p1, random: {duration: 1s, rate: 1, mix: {zzz: 1}}}\n",
            "/definitions/mix/properties",
        ),
        ("steps:\n  - {at: 1s, zzz: 1}\n", "/definitions/step/properties"),
        (
            "steps:\n  - {at: 1s, partition: {zzz: 1}}\n",
            "/definitions/partition/properties",
        ),
        ("steps:\n  - {at: 1s, link: {zzz: 1}}\n", "/definitions/link/properties"),
        (
            "steps:\n  - {at: 1s, clock: {peers: p1, zzz: 1}}\n",
            "/definitions/clock/properties",
        ),
        (
            "steps:\n  - {at: 1s, kill: {peers: p1, zzz: 1}}\n",
            "/definitions/peersOnly/properties",
        ),
        (
            "steps:\n  - {at: 1s, lock: {peers: p1, zzz: 1}}\n",
            "/definitions/lock/properties",
        ),
        (
            "steps:\n  - {at: 1s, disk: {peers: p1, zzz: 1}}\n",
            "/definitions/disk/properties",
        ),
        (
            "steps:\n  - {at: 1s, byzantine: {peers: p1, zzz: 1}}\n",
            "/definitions/byzantine/properties",
        ),
        ("soak: {duration: 1h, zzz: 1}\n", "/definitions/soak/properties"),
        (
            "soak: {duration: 1h, workload: {rate: 1, zzz: 1}}\n",
            "/definitions/soakWorkload/properties",
        ),
        (
            "soak: {duration: 1h, stagger: {min: 1s, max: 2s, zzz: 1}}\n",
            "/definitions/durRange/properties",
        ),
        (
            "soak:\n  duration: 1h\n  faults:\n    - {zzz: 1, partition: {shape: halves}}\n",
            "/definitions/soakFault/properties",
        ),
    ];
    for (tail, pointer) in cases {
        let e = error_of(&format!("{head}{tail}"));
        let list = e
            .message
            .split_once("unknown key `zzz`; allowed: ")
            .unwrap_or_else(|| panic!("{tail}: {e}"))
            .1;
        let mut parser: Vec<&str> = list.split(", ").map(str::trim).collect();
        parser.sort();
        let mut keys: Vec<&str> = schema
            .pointer(pointer)
            .and_then(|p| p.as_object())
            .unwrap_or_else(|| panic!("no {pointer} in the schema"))
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            parser, keys,
            "{pointer}: the parser's keys (left) and the schema's (right)"
        );
    }
}

const SOAK: &str = "\
name: soak
peers: 4
soak:
  duration: 8h
  window: 10m
  workload: {rate: 5, files: 50}
  max_concurrent: 2
  stagger: {min: 20s, max: 2m}
  exclusive: [[partition], [crash, pause]]
  faults:
    - {weight: 3, partition: {shape: halves}}
    - {name: crash, duration: {min: 2s, max: 20s}, kill: {peers: one}}
    - {pause: {peers: one}}
";

#[test]
fn a_soak_section_resolves_with_its_defaults() {
    let plan = parse_str(SOAK).unwrap();
    let s = plan.soak.unwrap();
    assert_eq!(
        (s.duration.ms(), s.window.ms(), s.windows()),
        (8 * 3_600_000, 600_000, 48)
    );
    assert_eq!(s.max_concurrent, 2);
    let names: Vec<&str> = s.faults.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["partition-1", "crash", "pause-3"]);
    assert_eq!(s.faults[2].weight, 1);
    assert_eq!(s.faults[2].duration.min, Dur::from_ms(5_000), "the default duration");
    // `partition` names every partition entry; `crash` one entry; `pause` the pause entries.
    assert_eq!(s.exclusive, vec![vec![0], vec![1, 2]]);
    assert_eq!(s.workload.unwrap().peers, Selector::All);
}

#[test]
fn bad_soak_sections_are_located_and_explained() {
    for (from, to, line, needle) in [
        ("duration: 8h", "duration: 31d", 4, "`duration`"),
        ("window: 10m", "window: 1s", 5, "`window`"),
        ("{rate: 5, files: 50}", "{rate: 5000, files: 50}", 6, "`rate`"),
        ("max_concurrent: 2", "max_concurrent: 0", 7, "`max_concurrent`"),
        ("{min: 20s, max: 2m}", "{min: 2m, max: 20s}", 8, "`stagger`"),
        ("[crash, pause]", "[crash, nosuch]", 9, "`exclusive` names `nosuch`"),
        ("{min: 2s, max: 20s}", "{min: 2s, max: 20m}", 12, "longer than a window"),
        ("{pause: {peers: one}}", "{pause: {peers: p9}}", 13, "unknown peer `p9`"),
        ("{pause: {peers: one}}", "{}", 13, "needs a fault"),
        ("name: crash", "name: kill", 12, "not a fault key"),
        ("{weight: 3, ", "{weight: 3, every: 10s, ", 11, "`every`"),
    ] {
        assert!(SOAK.contains(from), "{from}");
        let e = error_of(&SOAK.replace(from, to));
        assert_eq!(e.line, line, "{to}: {e}");
        assert!(
            e.message.contains(needle) && e.message.contains("; allowed: "),
            "{to}: {e}"
        );
    }
    let e = error_of(&format!("{SOAK}steps:\n  - {{at: 1s, partition: {{shape: halves}}}}\n"));
    assert!(e.message.contains("`soak`"), "{e}");
}

#[test]
fn criteria_are_thresholds_each_optional_and_range_checked() {
    let head = "name: x\npeers: 3\nexpect:\n  criteria:\n";
    let plan = parse_str(&format!(
        "{head}    recovery: 30s\n    propagation_p50: 20ms\n    propagation_p95: 50ms\n    propagation_p99: 100ms\n    \
         bytes_ratio: 1.5\n    messages_ratio: 3\n    conflict_pct: 0.1\n    cpu_pct: 10\n    memory: 100MiB\n"
    ))
    .unwrap();
    let c = plan.expect.criteria;
    assert_eq!(c.recovery.map(|d| d.ms()), Some(30_000));
    let ms = |d: Option<Dur>| d.map(Dur::ms);
    assert_eq!(
        (ms(c.propagation_p50), ms(c.propagation_p95), ms(c.propagation_p99)),
        (Some(20), Some(50), Some(100))
    );
    assert_eq!((c.bytes_ratio, c.messages_ratio), (Some(1.5), Some(3.0)));
    assert_eq!(
        (c.conflict_pct, c.cpu_pct, c.memory),
        (Some(0.1), Some(10.0), Some(100 << 20))
    );
    // Unset thresholds stay unset; no `criteria` at all is no threshold.
    let only = parse_str(&format!("{head}    cpu_pct: 10\n")).unwrap().expect.criteria;
    assert_eq!((only.cpu_pct, only.recovery, only.memory), (Some(10.0), None, None));
    assert!(parse_str("name: x\npeers: 3\n").unwrap().expect.criteria.is_empty());
    // A conflict rate may be held to 0.
    assert_eq!(
        parse_str(&format!("{head}    conflict_pct: 0\n"))
            .unwrap()
            .expect
            .criteria
            .conflict_pct,
        Some(0.0)
    );
    for (line, needle) in [
        ("recovery: 0s", "`criteria.recovery` is 0; allowed: more than 0"),
        ("propagation_p99: 0ms", "`criteria.propagation_p99` is 0"),
        ("propagation_p99: soon", "soon"),
        (
            "bytes_ratio: 0",
            "`criteria.bytes_ratio` is 0; allowed: a multiple of the minimum",
        ),
        ("messages_ratio: -2", "`criteria.messages_ratio` is -2"),
        (
            "conflict_pct: 101",
            "`criteria.conflict_pct` is 101; allowed: a percentage of writes, from 0 to 100",
        ),
        ("cpu_pct: -1", "`criteria.cpu_pct` is -1"),
        ("memory: 0", "`criteria.memory` is 0 bytes"),
        ("memory: lots", "lots"),
        ("p99: 100ms", "unknown key `p99`; allowed: recovery, propagation_p50"),
    ] {
        let e = error_of(&format!("{head}    {line}\n"));
        assert_eq!(e.line, 5, "{line}: {e}");
        assert!(e.message.contains(needle), "{line}: {e}");
    }
}
