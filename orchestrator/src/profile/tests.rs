use super::*;

fn shipped(name: &str) -> Profile {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peer-image/profiles");
    load(name, &dir).unwrap_or_else(|e| panic!("{e}"))
}

const MINIMAL: &str = "name: mine\nimage: {tag: me/mine:1}\ncontainer: {data_dir: /data, sync_dir: /data/sync, ports: {http: 8080}}\nready: {tcp: {port: http}}\nfaults: [partition]\n";

fn parse_err(text: &str) -> PlanError {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("profile.yaml");
    parse(text, &f).expect_err("should be rejected")
}

#[test]
fn the_shipped_profiles_load() {
    let p = shipped("syncpeer");
    assert_eq!(
        (p.image.as_str(), p.sync_rel.as_str()),
        ("syftchaos/peer:latest", "sync")
    );
    assert!(matches!(p.identity, IdentitySource::HostEd25519));
    assert_eq!(p.clock, ClockMethod::Libfaketime);
    assert!(p.metrics.as_ref().unwrap().has(Role::LocalChanges));
    assert_eq!(p.flavors[..3], ["default", "legacy", "leak"]);
    // Issue 15: the mutants, each named `mutant-*` so that none is switched on by a near miss.
    assert!(
        p.flavors[3..].iter().all(|f| f.starts_with("mutant-")),
        "{:?}",
        p.flavors
    );
    assert_eq!(p.flavors.len(), 9);
    let conflict = p.conventions.conflicts.as_ref().unwrap();
    let c = conflict.captures("d/a.tar.sync-conflict-0123abcd-89ef0123.gz").unwrap();
    assert_eq!((&c["stem"], &c["ext"], &c["author"]), ("d/a.tar", ".gz", "0123abcd"));
    let known = known_profiles(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../peer-image/profiles"));
    assert!(known.contains(&"syncpeer".to_string()), "{known:?}");
}

#[test]
fn the_syncpeer_config_renders_neighbours_and_trust() {
    let p = shipped("syncpeer");
    let mut f = Facts::sample(&p.ports);
    f.plan.quarantine_ms = Some(4000);
    let config = template::render(&p.files[0].template, &f).unwrap();
    assert!(
        config.contains("addr: 10.213.0.3:7000") && config.contains("quarantine_ms: 4000"),
        "{config}"
    );
    assert_eq!(
        config.matches("public_key").count(),
        5,
        "2 neighbours + 3 trusted: {config}"
    );
    let v: serde_json::Value = serde_saphyr::from_str(&config).expect("valid YAML");
    assert_eq!(v["trusted"][2]["name"], "p3");
    f.neighbours.clear();
    let lone = template::render(&p.files[0].template, &f).unwrap();
    let v: serde_json::Value = serde_saphyr::from_str(&lone).expect("valid YAML without neighbours");
    assert_eq!(v["peers"], serde_json::json!([]));
}

/// `syncpeer-static` is syncpeer with another image and clock mechanism, nothing else: the same
/// files (its template is a link to syncpeer's), readiness, conventions, metrics and flavors.
#[test]
fn syncpeer_static_is_syncpeer_with_its_static_image_and_vdso_clock() {
    let (dynamic, fixed) = (shipped("syncpeer"), shipped("syncpeer-static"));
    assert_eq!(fixed.image, "syftchaos/peer-static:latest");
    assert_eq!(fixed.clock, ClockMethod::Vdso);
    assert!(
        fixed
            .build
            .as_deref()
            .is_some_and(|b| b.ends_with("build-static-image.sh")),
        "{:?}",
        fixed.build
    );
    let facts = Facts::sample(&fixed.ports);
    let render = |p: &Profile| template::render(&p.files[0].template, &facts).unwrap();
    assert_eq!(render(&fixed), render(&dynamic));
    assert_eq!(fixed.faults, dynamic.faults);
    assert_eq!(fixed.flavors, dynamic.flavors);
    assert_eq!(fixed.sync_rel, dynamic.sync_rel);
}

#[test]
fn a_minimal_profile_is_enough() {
    let dir = tempfile::tempdir().unwrap();
    let p = parse(MINIMAL, &dir.path().join("profile.yaml")).unwrap();
    assert!(matches!(p.ready, Probe::Tcp(8080)));
    assert!(p.metrics.is_none() && p.conventions.conflicts.is_none());
    assert!(p.refuses("partition").is_none());
    let why = p.refuses("clock").unwrap();
    assert!(
        why.contains("cannot take clock faults") && why.contains("mine"),
        "{why}"
    );
    let why = p.refuses("kill").unwrap();
    assert!(why.contains("cannot take `kill` faults; allowed: partition"), "{why}");
}

#[test]
fn bad_profiles_are_refused_with_the_place_and_what_is_allowed() {
    let cases: &[(&str, &str, u64)] = &[
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /elsewhere}\nready: {tcp: {port: 1}}\nfaults: []\n",
            "`sync_dir` must be",
            3,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s, ports: {http: 70000}}\nready: {tcp: {port: http}}\nfaults: []\n",
            "allowed: 1 to 65535",
            3,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s}\nready: {tcp: {port: web}}\nfaults: []\n",
            "no port named `web`",
            4,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s}\nready: {tcp: {port: 1}, exec: [true]}\nfaults: []\n",
            "exactly one of `http`, `tcp`, `exec`",
            4,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s}\nready: {tcp: {port: 1}}\nfaults: [partition, netem]\n",
            "unknown fault kind `netem`; allowed: partition",
            5,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s}\nready: {tcp: {port: 1}}\nfaults: [clock]\n",
            "`clock` is neither `libfaketime` nor `vdso`",
            5,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s, env: {A: \"{{ peer.nmae }}\"}}\nready: {tcp: {port: 1}}\nfaults: []\n",
            "undefined",
            3,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s}\nready: {tcp: {port: 1}}\nconflicts: '(.*)\\.conflict'\nfaults: []\n",
            "needs a group `(?P<stem>",
            5,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s}\nready: {tcp: {port: 1}}\nfaults: []\nfiles: [{path: ../x, content: a}]\n",
            "without `..`",
            6,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s}\nready: {tcp: {port: 1}}\nfaults: []\nidentity: {from: http}\n",
            "takes an `http` call",
            6,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s}\nready: {tcp: {port: 1}}\nfaults: []\nmetrics: {port: 1, counters: {msgs: x}}\n",
            "unknown counter role `msgs`; allowed: messages_sent",
            6,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s}\nready: {tcp: {port: 1}}\nfaults: []\nbogus: 1\n",
            "unknown key `bogus`",
            6,
        ),
        (
            "name: mine\nimage: {tag: x}\ncontainer: {data_dir: /data, sync_dir: /data/s, user: bob}\nready: {tcp: {port: 1}}\nfaults: []\n",
            "numeric `uid` or `uid:gid`",
            3,
        ),
    ];
    for (text, want, line) in cases {
        let e = parse_err(text);
        assert!(e.message.contains(want), "{text}\n=> {e}");
        assert_eq!(e.line, *line, "{text}\n=> {e}");
        assert!(e.column > 0, "{e}");
    }
}

#[test]
fn an_unknown_profile_lists_the_known_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peer-image/profiles");
    let e = load("nosuch", &dir).unwrap_err();
    assert!(
        e.message.contains("cannot read the peer profile `nosuch`") && e.message.contains("syncpeer"),
        "{e}"
    );
}

#[test]
fn metrics_become_roles_with_their_labels() {
    let p = shipped("syncpeer");
    let m = p.metrics.unwrap();
    let values = BTreeMap::from([
        (
            "syncpeer_messages_sent_total{kind=\"blob\",peer=\"p2\"}".to_string(),
            3.0,
        ),
        (
            "syncpeer_messages_sent_total{kind=\"summary\",peer=\"p2\"}".to_string(),
            5.0,
        ),
        ("syncpeer_rejections_total{reason=\"bad_hash\"}".to_string(), 2.0),
        ("unrelated_total".to_string(), 9.0),
    ]);
    let r = m.roles(&values);
    assert_eq!(r["messages_sent{kind=\"blob\",peer=\"p2\"}"], 3.0);
    assert_eq!(r["background_messages_sent{kind=\"summary\",peer=\"p2\"}"], 5.0);
    assert_eq!(r["rejections{reason=\"bad_hash\"}"], 2.0);
    assert_eq!(r.len(), 3, "{r:?}");
}

#[test]
fn a_plan_with_a_fault_the_profile_cannot_take_is_refused_at_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let profile = parse(MINIMAL, &dir.path().join("profile.yaml")).unwrap();
    let topologies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    let text = "name: t\npeers: 2\npeer: mine\nsteps:\n  - {at: 1s, duration: 1s, partition: {groups: [[p1], [p2]]}}\n  - {at: 1s, duration: 1s, clock: {peers: p1, offset: +1h}}\n";
    let mut plan = crate::plan::parse(text, Path::new("t.yaml"), &topologies).unwrap();
    assert_eq!(plan.peer, "mine");
    let e = check_plan(&mut plan, &profile).unwrap_err();
    assert_eq!((e.line, e.column), (6, 5), "{e}");
    assert!(
        e.message.contains("step `step-2`") && e.message.contains("cannot take clock faults"),
        "{e}"
    );
    let mut legacy = crate::plan::parse(
        "name: t\npeers: 2\npeer: mine\nflavor: legacy\n",
        Path::new("t.yaml"),
        &topologies,
    )
    .unwrap();
    let e = check_plan(&mut legacy, &profile).unwrap_err();
    assert!(
        e.message.contains("flavor `legacy`") && e.message.contains("mine"),
        "{e}"
    );
    assert_eq!(e.line, 3, "points at `peer`: {e}");
}

#[test]
fn a_named_port_is_bound_to_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let profile = parse(MINIMAL, &dir.path().join("profile.yaml")).unwrap();
    let topologies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    let step = |port: &str| {
        format!(
            "name: t\npeers: 2\nsteps:\n  - {{at: 1s, duration: 1s, partition: {{groups: [[p1], [p2]], port: {port}}}}}\n"
        )
    };
    let mut plan = crate::plan::parse(&step("http"), Path::new("t.yaml"), &topologies).unwrap();
    check_plan(&mut plan, &profile).unwrap();
    let crate::plan::Fault::Partition(spec) = &plan.steps[0].fault else {
        panic!()
    };
    assert_eq!(spec.port, Some(crate::plan::PortRef::Number(8080)));
    let mut plan = crate::plan::parse(&step("sync"), Path::new("t.yaml"), &topologies).unwrap();
    let e = check_plan(&mut plan, &profile).unwrap_err();
    assert!(
        e.message.contains("no port named `sync`") && e.message.contains("http"),
        "{e}"
    );
    assert_eq!(e.line, 4);
}

#[test]
fn clock_vdso_takes_offsets_and_strobes_and_refuses_a_rate_or_another_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL.replace("faults: [", "clock: vdso\nfaults: [clock, ");
    let profile = parse(&text, &dir.path().join("profile.yaml")).unwrap();
    assert_eq!(profile.clock, ClockMethod::Vdso);
    let topologies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    let plan = |step: &str| {
        crate::plan::parse(
            &format!("name: t\npeers: 2\npeer: mine\nsteps:\n  - {step}\n"),
            Path::new("t.yaml"),
            &topologies,
        )
        .unwrap()
    };
    let mut offset = plan("{at: 1s, duration: 1s, clock: {peers: p1, offset: +1h}}");
    let mut strobe = plan("{at: 1s, duration: 4s, every: 2s, clock: {peers: p1, strobe: [+0s, +2h]}}");
    if std::env::consts::ARCH == "x86_64" {
        check_plan(&mut offset, &profile).unwrap();
        check_plan(&mut strobe, &profile).unwrap();
    }
    let mut rate = plan("{at: 1s, clock: {peers: p1, rate: 2}}");
    let e = check_plan(&mut rate, &profile).unwrap_err();
    assert!(
        e.message.contains("no `rate`") || e.message.contains("x86_64 only"),
        "{e}"
    );
    let change = crate::plan::ClockChange::Offset(1000);
    assert!(
        vdso_refuses(&ClockMethod::Vdso, &change, "aarch64")
            .unwrap()
            .contains("aarch64")
    );
    assert_eq!(vdso_refuses(&ClockMethod::Vdso, &change, "x86_64"), None);
    assert_eq!(
        vdso_refuses(
            &ClockMethod::Libfaketime,
            &crate::plan::ClockChange::Rate(2.0),
            "x86_64"
        ),
        None
    );
}

#[test]
fn evidence_pointers_read_each_conviction_and_a_bad_pointer_is_refused_where_it_is() {
    let probe = shipped("syncpeer").evidence.expect("syncpeer lists its proofs");
    let body = r#"{"equivocations": [
        {"author": "ab12", "author_name": "p5", "counter": 3, "statements": [{"sig": "a"}, {"sig": "b"}],
         "how": "seen", "from": "p2", "detected_ms": 1796626803000},
        {"author_name": "p5", "statements": [{"sig": "c"}]}]}"#;
    let c = probe.convictions(body).unwrap();
    assert_eq!(
        c,
        vec![
            Conviction {
                offender: "p5".into(),
                detected_ms: Some(1_796_626_803_000),
                statements: 2
            },
            Conviction {
                offender: "p5".into(),
                detected_ms: None,
                statements: 1
            },
        ]
    );
    assert!(probe.convictions("not json").is_none());
    assert!(probe.convictions(r#"{"other": []}"#).is_none());

    let text = format!(
        "{MINIMAL}evidence:\n  http: {{port: http, path: /proofs}}\n  list: proofs\n  offender: /who\n  detected_ms: /at\n  statements: /both\n"
    );
    let e = parse_err(&text);
    assert!(e.to_string().contains("`proofs` is not a JSON pointer"), "{e}");
    assert!(e.to_string().contains(":8:"), "line 8: {e}");
}
