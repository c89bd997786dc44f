//! Each fault measured between two namespaces, then healed and checked gone.

use std::time::Duration;

use crate::util::*;

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

/// Binomial bound: |observed - n p| within `k` standard deviations.
fn within_binomial(observed: usize, n: usize, p: f64, k: f64) -> bool {
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (observed as f64 - n as f64 * p).abs() <= k * sd
}

fn assert_clean(pair: &NetPair) {
    let (mangle, qdisc) = pair.leftovers();
    assert!(!mangle.contains("SYFTCHAOS"), "chains left behind:\n{mangle}");
    assert!(!mangle.contains("NFQUEUE"), "rules left behind:\n{mangle}");
    assert!(qdisc.contains("noqueue"), "qdisc not restored: {qdisc}");
    let st = pair.netfault_ok(&["status"]);
    assert_eq!(st["faults"].as_array().unwrap().len(), 0, "{st}");
}

#[test]
fn delay_adds_round_trip_time_and_clear_restores_baseline() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    let base = probe(&pair, 100, ms(2), 1, ms(200));
    assert_eq!(base.unique(), 100);
    let base_med = median(&base.rtts());

    let out = pair.apply(&format!(r#"{{"id":"lag","delay_ms":50,"target":"{}"}}"#, pair.ip_b));
    assert_eq!(out["engine"], "userspace");
    let pid = out["pid"].as_u64().unwrap() as u32;
    let lag = probe(&pair, 100, ms(5), 1, ms(300));
    let rtts = lag.rtts();
    assert_eq!(rtts.len(), 100, "no probe may be lost");
    let added = median(&rtts) - base_med;
    eprintln!(
        "delay 50 ms: baseline median {base_med:.3} ms, added median {added:.3} ms, min {:.3}",
        rtts.iter().cloned().fold(f64::MAX, f64::min)
    );
    assert!((49.5..53.0).contains(&added), "added {added} ms");
    assert!(rtts.iter().all(|r| *r >= 50.0), "a probe beat the delay");
    let c = pair.counters("lag");
    assert_eq!(c["seen"], 100, "{c}");
    assert_eq!(c["delayed"], 100, "{c}");

    pair.netfault_ok(&["clear", "--id", "lag"]);
    assert_clean(&pair);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read(format!("/proc/{pid}/cmdline")).unwrap().is_empty(),
        "engine {pid} still running"
    );
    let after = probe(&pair, 100, ms(2), 1, ms(200));
    let after_med = median(&after.rtts());
    eprintln!("after clear: median {after_med:.3} ms (baseline {base_med:.3})");
    assert_eq!(after.unique(), 100);
    assert!(after_med < base_med + 1.0, "{after_med} vs {base_med}");
}

#[test]
fn jitter_spreads_the_delay_and_never_reorders_a_flow() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    pair.apply(r#"{"id":"jit","delay_ms":40,"jitter_ms":10,"distribution":"normal","seed":11}"#);
    // Many flows: per-flow ordering would otherwise bunch packets of one flow together.
    let many = probe(&pair, 400, ms(2), 100, ms(400));
    let rtts = many.rtts();
    let (mean, sd) = mean_sd(&rtts);
    // Median and interquartile range (sd = IQR / 1.349 for a normal): robust to the few probes
    // a busy 2-core machine delays on its own.
    let (q1, med, q3) = (quantile(&rtts, 0.25), median(&rtts), quantile(&rtts, 0.75));
    let sd_iqr = (q3 - q1) / 1.349;
    eprintln!(
        "delay 40 jitter 10 normal, 100 flows: mean {mean:.2} ms sd {sd:.2} ms, \
         median {med:.2} ms, sd from IQR {sd_iqr:.2} ms"
    );
    assert_eq!(many.unique(), 400);
    assert!((38.0..43.0).contains(&med), "median {med}");
    assert!((8.0..12.5).contains(&sd_iqr), "sd from IQR {sd_iqr}");

    // One flow, probes closer together than the jitter: order is kept.
    let one = probe(&pair, 300, ms(1), 1, ms(400));
    assert_eq!(one.unique(), 300);
    eprintln!("one flow: out of order {}", one.out_of_order());
    assert_eq!(one.out_of_order(), 0);
}

#[test]
fn loss_rate_lies_within_a_binomial_bound() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    pair.apply(&format!(
        r#"{{"id":"loss","loss_pct":25,"target":["{}"],"seed":5}}"#,
        pair.ip_b
    ));
    let n = 2000;
    let p = probe(&pair, n, Duration::from_micros(500), 1, ms(300));
    let lost = n as usize - p.unique();
    eprintln!("loss 25%: lost {lost} of {n}");
    assert!(within_binomial(lost, n as usize, 0.25, 4.5), "lost {lost}");
    let c = pair.counters("loss");
    assert_eq!(c["dropped"].as_u64().unwrap() as usize, lost, "{c}");
    assert_eq!(c["seen"], n, "{c}");
}

#[test]
fn burst_loss_comes_in_runs() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    pair.apply(r#"{"id":"ge","loss_model":{"p_pct":2,"r_pct":20},"seed":8}"#);
    let n = 3000;
    let p = probe(&pair, n, Duration::from_micros(300), 1, ms(300));
    let got: std::collections::HashSet<u32> = p.echoes.iter().map(|e| e.0).collect();
    let lost: Vec<bool> = (0..n).map(|s| !got.contains(&s)).collect();
    let rate = lost.iter().filter(|l| **l).count() as f64 / n as f64;
    let after: Vec<bool> = lost.windows(2).filter(|w| w[0]).map(|w| w[1]).collect();
    let cond = after.iter().filter(|l| **l).count() as f64 / after.len() as f64;
    eprintln!("gilbert-elliott p=2% r=20%: loss {rate:.3} (expect 0.091), P(loss|loss) {cond:.2} (expect 0.80)");
    assert!((0.05..0.14).contains(&rate), "rate {rate}");
    assert!(cond > 0.65, "losses not bursty: {cond}");
}

#[test]
fn corruption_shows_as_checksum_errors_or_bad_payloads() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    let csum0 = pair.snmp_b("Udp", "InCsumErrors");
    pair.apply(r#"{"id":"bad","corrupt_pct":30,"seed":2}"#);
    let n = 1000;
    let p = probe(&pair, n, Duration::from_micros(500), 1, ms(300));
    let csum = pair.snmp_b("Udp", "InCsumErrors") - csum0;
    let c = pair.counters("bad");
    eprintln!(
        "corrupt 30%: receiver InCsumErrors +{csum}, echoes {} of {n}, engine corrupted {}",
        p.unique(),
        c["corrupted"]
    );
    assert!(within_binomial(csum as usize, n as usize, 0.3, 4.5), "{csum}");
    assert_eq!(c["corrupted"].as_u64().unwrap(), csum);
    assert_eq!(p.unique() + csum as usize, n as usize);
    assert_eq!(p.mangled, 0);

    // With the checksum fixed, the bad bytes reach the application.
    pair.apply(r#"{"id":"bad","corrupt_pct":30,"corrupt_fix_checksum":true,"seed":2}"#);
    let csum1 = pair.snmp_b("Udp", "InCsumErrors");
    let p = probe(&pair, n, Duration::from_micros(500), 1, ms(300));
    let csum_fixed = pair.snmp_b("Udp", "InCsumErrors") - csum1;
    eprintln!(
        "corrupt 30% + fix checksum: bad payloads {}, good {}, InCsumErrors +{csum_fixed}",
        p.mangled,
        p.unique()
    );
    assert_eq!(csum_fixed, 0);
    assert!(within_binomial(p.mangled as usize, n as usize, 0.3, 4.5));
}

#[test]
fn duplicates_are_received_twice() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    pair.apply(&format!(
        r#"{{"id":"dup","duplicate_pct":30,"target":"{}","seed":4}}"#,
        pair.ip_b
    ));
    let n = 1000;
    let all = all_back(&pair, n, "dup");
    let p = probe_until(&pair, n, Duration::from_micros(500), 1, ms(10_000), all);
    let copies = copies(&p);
    let twice = copies.values().filter(|c| **c == 2).count();
    let c = pair.counters("dup");
    eprintln!(
        "duplicate 30%: {twice} of {n} probes echoed twice, engine duplicated {}, seen {}",
        c["duplicated"], c["seen"]
    );
    assert_eq!(p.unique(), n as usize);
    assert!(copies.values().all(|c| *c <= 2));
    assert!(within_binomial(twice, n as usize, 0.3, 4.5), "{twice}");
    assert_eq!(c["duplicated"].as_u64().unwrap() as usize, twice);
    // The copies are marked and pass our chain without being queued again.
    assert_eq!(c["seen"], n, "{c}");
}

#[test]
fn reordering_is_observed_in_one_flow() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    pair.apply(r#"{"id":"ro","reorder_pct":20,"reorder_delay_ms":15,"seed":6}"#);
    let n = 800;
    let p = probe_until(&pair, n, ms(1), 1, ms(10_000), all_back(&pair, n, "ro"));
    let ooo = p.out_of_order();
    let c = pair.counters("ro");
    eprintln!(
        "reorder 20% (+15 ms): {ooo} of {n} echoes out of order, engine reordered {}",
        c["reordered"]
    );
    assert_eq!(p.unique(), n as usize);
    // A reordered packet arrives after later ones, unless it was one of the last.
    let reordered = c["reordered"].as_u64().unwrap() as usize;
    assert!(within_binomial(reordered, n as usize, 0.2, 4.5));
    assert!(ooo + 5 >= reordered && ooo <= reordered, "{ooo} vs {reordered}");
}

#[test]
fn bandwidth_cap_is_measured_on_a_tcp_stream() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let out = pair.apply(&format!(r#"{{"id":"bw","rate_kbit":8000,"target":"{}"}}"#, pair.ip_b));
    assert_eq!(out["engine"], "none");
    let (_, qdisc) = pair.leftovers();
    assert!(qdisc.contains("htb"), "{qdisc}");
    assert_eq!(pair.netfault_ok(&["status"])["faults"][0]["healthy"], true);
    let bps = tcp_throughput(&pair, 3.0, 1.0);
    eprintln!(
        "rate 8000 kbit: measured {:.0} kbit/s of TCP payload",
        bps * 8.0 / 1000.0
    );
    assert!((800_000.0..1_200_000.0).contains(&bps), "{bps} B/s, want 1e6 +-20%");
    pair.netfault_ok(&["clear"]);
    assert_clean(&pair);
}

#[test]
fn ingress_bandwidth_cap_goes_through_an_ifb() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    pair.apply(&format!(
        r#"{{"id":"bwin","rate_kbit":4000,"direction":"ingress","target":"{}"}}"#,
        pair.ip_b
    ));
    let links = pair.exec_a(&["ip", "link"]);
    assert!(links.contains("nfinfva"), "no ifb: {links}");
    let bps = tcp_throughput_to_a(&pair, 3.0, 1.0);
    eprintln!(
        "ingress rate 4000 kbit: measured {:.0} kbit/s of TCP payload",
        bps * 8.0 / 1000.0
    );
    assert!((400_000.0..600_000.0).contains(&bps), "{bps} B/s, want 5e5 +-20%");
    // Egress is not shaped.
    let out = tcp_throughput(&pair, 1.5, 0.5);
    assert!(out > 5_000_000.0, "egress shaped too: {out} B/s");
    // A second ingress cap on "all" shares the ifb and never shapes the ifb itself.
    let all = pair.apply(r#"{"id":"bwall","rate_kbit":100000,"direction":"ingress"}"#);
    let devs: Vec<&str> = all["tc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["dev"].as_str().unwrap())
        .collect();
    assert_eq!(devs.len(), 1, "{all}");
    assert!(devs[0].starts_with("nfi"), "{all}");
    pair.netfault_ok(&["clear"]);
    assert_clean(&pair);
    let qdisc = pair.exec_a(&["tc", "qdisc", "show", "dev", &pair.dev_a]);
    assert!(!qdisc.contains("ingress"), "{qdisc}");
    assert!(!pair.exec_a(&["ip", "link"]).contains("nfinfva"));
}

#[test]
fn ingress_delay_applies_to_received_packets() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    let base = median(&probe(&pair, 50, ms(2), 1, ms(200)).rtts());
    pair.apply(&format!(
        r#"{{"id":"in","delay_ms":30,"direction":"ingress","target":"{}"}}"#,
        pair.ip_b
    ));
    let (mangle, _) = pair.leftovers();
    assert!(mangle.contains("-A PREROUTING -j SYFTCHAOS_NETEM_IN"), "{mangle}");
    let rtts = probe(&pair, 50, ms(5), 1, ms(300)).rtts();
    let added = median(&rtts) - base;
    eprintln!("ingress delay 30 ms: added median {added:.3} ms");
    assert_eq!(rtts.len(), 50);
    assert!((29.5..33.0).contains(&added), "{added}");
    // Same id again with both directions: replaced, and the delay counts twice per round trip.
    pair.apply(r#"{"id":"in","delay_ms":10,"direction":"both"}"#);
    let added = median(&probe(&pair, 50, ms(5), 1, ms(300)).rtts()) - base;
    eprintln!("both directions, delay 10 ms: added median {added:.3} ms");
    assert!((19.5..23.0).contains(&added), "{added}");
    assert_eq!(pair.netfault_ok(&["status"])["faults"].as_array().unwrap().len(), 1);
    pair.netfault_ok(&["clear"]);
    assert_clean(&pair);
}

#[test]
fn restore_reinstalls_after_a_simulated_container_restart() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    let out = pair.apply(r#"{"id":"lag","delay_ms":40}"#);
    let pid = out["pid"].as_u64().unwrap() as i32;
    // A restart loses the rules and the daemon but keeps the state file.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    pair.exec_a(&["iptables", "-t", "mangle", "-F"]);
    pair.exec_a(&["iptables", "-t", "mangle", "-X"]);
    std::thread::sleep(ms(100));
    let st = pair.netfault_ok(&["status"]);
    assert_eq!(st["faults"][0]["healthy"], false, "{st}");
    let base = median(&probe(&pair, 20, ms(2), 1, ms(200)).rtts());
    assert!(base < 5.0, "fault still active after the simulated restart: {base}");

    pair.netfault_ok(&["restore"]);
    let st = pair.netfault_ok(&["status"]);
    assert_eq!(st["faults"][0]["healthy"], true, "{st}");
    let rtt = median(&probe(&pair, 20, ms(5), 1, ms(300)).rtts());
    eprintln!("after restore: median rtt {rtt:.2} ms (want >= 40)");
    assert!((40.0..44.0).contains(&rtt), "{rtt}");
    pair.netfault_ok(&["clear"]);
    assert_clean(&pair);
}

#[test]
fn two_faults_clear_one_at_a_time_and_a_dead_engine_does_not_blackhole() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    let a = pair.apply(&format!(r#"{{"id":"a","delay_ms":20,"target":"{}"}}"#, pair.ip_b));
    pair.apply(r#"{"id":"b","rate_kbit":100000}"#);
    assert_eq!(pair.netfault_ok(&["status"])["faults"].as_array().unwrap().len(), 2);
    // --queue-bypass: with the engine gone, traffic passes (undelayed) instead of vanishing.
    unsafe { libc::kill(a["pid"].as_u64().unwrap() as i32, libc::SIGKILL) };
    std::thread::sleep(ms(100));
    let p = probe(&pair, 20, ms(2), 1, ms(200));
    assert_eq!(p.unique(), 20, "traffic black-holed by a dead engine");
    assert!(median(&p.rtts()) < 5.0);

    pair.netfault_ok(&["clear", "--id", "a"]);
    let (mangle, qdisc) = pair.leftovers();
    assert!(!mangle.contains("SYFTCHAOS"), "{mangle}");
    assert!(qdisc.contains("htb"), "fault b lost its qdisc: {qdisc}");
    pair.netfault_ok(&["clear", "--id", "b"]);
    assert_clean(&pair);
}

#[test]
fn the_legacy_iptables_backend_works_too() {
    if !can_run() {
        return;
    }
    if std::process::Command::new("iptables-legacy")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no iptables-legacy here");
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    let out = pair.netfault_ok(&[
        "--iptables",
        "iptables-legacy",
        "apply",
        "--spec",
        r#"{"id":"leg","delay_ms":20}"#,
    ]);
    assert!(out["iptables"][0].as_str().unwrap().starts_with("iptables-legacy "));
    let save = pair.exec_a(&["iptables-legacy-save", "-t", "mangle"]);
    assert!(save.contains("SYFTCHAOS_NETEM_OUT"), "{save}");
    let rtt = median(&probe(&pair, 20, ms(5), 1, ms(200)).rtts());
    eprintln!("legacy backend, delay 20 ms: median rtt {rtt:.2} ms");
    assert!((20.0..23.0).contains(&rtt), "{rtt}");
    // The state remembers the backend: a plain clear undoes it.
    pair.netfault_ok(&["clear"]);
    let save = pair.exec_a(&["iptables-legacy-save", "-t", "mangle"]);
    assert!(!save.contains("SYFTCHAOS"), "{save}");
    assert_clean(&pair);
}

#[test]
fn probe_reports_nfqueue_and_htb() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let p = pair.netfault_ok(&["probe"]);
    eprintln!("probe: {p}");
    assert_eq!(p["nfqueue"], true, "{p}");
    assert_eq!(p["htb"], true, "{p}");
    assert_eq!(p["ifb"], true, "{p}");
    assert!(p["netem"].is_boolean());
    // The probe leaves nothing behind.
    let (mangle, qdisc) = pair.leftovers();
    assert!(!mangle.contains("SYFTCHAOS"), "{mangle}");
    assert!(qdisc.contains("noqueue"));
    assert!(!pair.exec_a(&["ip", "link"]).contains("nfprobe0"));
}

#[test]
fn tcp_delivers_intact_data_through_loss_corruption_duplication_and_delay() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let spec_file = pair.state_dir.with_extension("spec.json");
    std::fs::write(
        &spec_file,
        r#"{"id":"mix","delay_ms":5,"jitter_ms":2,"loss_pct":2,"corrupt_pct":2,
            "duplicate_pct":2,"reorder_pct":2,"seed":12}"#,
    )
    .unwrap();
    pair.netfault_ok(&["apply", "--spec", spec_file.to_str().unwrap()]);
    let csum0 = pair.snmp_b("Tcp", "InCsumErrors");
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let got = tcp_transfer(&pair, data.clone());
    let csum = pair.snmp_b("Tcp", "InCsumErrors") - csum0;
    let c = pair.counters("mix");
    eprintln!(
        "2 MB over TCP through the mix: intact {}, receiver Tcp InCsumErrors +{csum}, {c}",
        got == data
    );
    assert!(
        got == data,
        "TCP delivered different bytes ({} of {})",
        got.len(),
        data.len()
    );
    assert!(csum > 0, "no checksum error seen at the receiver");
    for k in ["dropped", "corrupted", "duplicated", "reordered"] {
        assert!(c[k].as_u64().unwrap() > 0, "{k} never happened: {c}");
    }
    assert_eq!(c["errors"], 0, "{c}");
    let _ = std::fs::remove_file(spec_file);
}

#[test]
fn overlapping_faults_compose() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _echo = Echo::start(&pair);
    let a = pair.apply(r#"{"id":"lag","delay_ms":30}"#);
    let b = pair.apply(&format!(
        r#"{{"id":"lossy","loss_pct":40,"target":"{}","seed":3}}"#,
        pair.ip_b
    ));
    assert_ne!(a["mark"], b["mark"]);
    let n = 500;
    let p = probe_until(&pair, n, ms(1), 1, ms(10_000), all_back(&pair, n, "lossy"));
    let rtts = p.rtts();
    let lost = n as usize - rtts.len();
    let (ca, cb) = (pair.counters("lag"), pair.counters("lossy"));
    eprintln!(
        "delay 30 ms on all + 40% loss to B: median rtt {:.2} ms, lost {lost} of {n}; \
         lag saw {}, lossy saw {} dropped {}",
        median(&rtts),
        ca["seen"],
        cb["seen"],
        cb["dropped"]
    );
    assert!((30.0..33.0).contains(&median(&rtts)));
    assert!(within_binomial(lost, n as usize, 0.4, 4.5), "{lost}");
    assert_eq!(ca["seen"], n, "every probe passes the first fault");
    assert_eq!(cb["seen"], n, "and then the second");
    assert_eq!(cb["dropped"].as_u64().unwrap() as usize, lost);
    pair.netfault_ok(&["clear", "--id", "lag"]);
    let rtts = probe(&pair, 100, ms(1), 1, ms(200)).rtts();
    assert!(median(&rtts) < 5.0, "delay still there after clearing it");
    assert!(rtts.len() < 90, "loss gone with the delay");
    pair.netfault_ok(&["clear"]);
    assert_clean(&pair);
}

#[test]
fn forcing_netem_on_a_kernel_without_it_fails_cleanly() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    if pair.netfault_ok(&["probe"])["netem"] == true {
        eprintln!("SKIPPED: this kernel has netem");
        return;
    }
    let o = pair.netfault(&["apply", "--spec", r#"{"id":"n","delay_ms":5,"engine":"netem"}"#]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no sch_netem"));
    assert_clean(&pair);
}

/// The netem engine cannot run on this kernel; this checks everything around it with a `tc`
/// that pretends to have netem (it logs every call and fakes only the netem ones, passing the
/// rest to the real tc): the engine choice, the commands, the state, status and the undo.
#[test]
fn netem_engine_path_with_a_tc_that_fakes_only_netem() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let real_tc = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v tc"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let bin = pair.state_dir.with_extension("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = bin.join("tc.log");
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> {log}\ncase \"$*\" in *netem*) exit 0;; esac\nexec {real_tc} \"$@\"\n",
        log = log.display()
    );
    let fake = bin.join("tc");
    std::fs::write(&fake, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let env = [("PATH", path.as_str())];
    let run = |args: &[&str]| {
        let o = pair.netfault_env(&env, args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    assert_eq!(run(&["probe"])["netem"], true);
    let out = run(&[
        "apply",
        "--spec",
        &format!(
            r#"{{"id":"k","delay_ms":100,"jitter_ms":10,"distribution":"normal","loss_pct":1,"target":"{}"}}"#,
            pair.ip_b
        ),
    ]);
    assert_eq!(out["engine"], "netem", "{out}");
    assert_eq!(out["iptables"].as_array().unwrap().len(), 0);
    // A spec netem cannot honour still goes to userspace under "auto".
    let us = run(&[
        "apply",
        "--spec",
        r#"{"id":"u","loss_pct":1,"loss_correlation_pct":50}"#,
    ]);
    assert_eq!(us["engine"], "userspace");
    let st = run(&["status"]);
    assert_eq!(st["faults"][0]["healthy"], true, "{st}");
    run(&["clear"]);
    assert_clean(&pair);
    let calls = std::fs::read_to_string(&log).unwrap();
    let dev = &pair.dev_a;
    for want in [
        format!("qdisc add dev {dev} root handle 1: htb default 0 direct_qlen 1000"),
        format!("class add dev {dev} parent 1: classid 1:10 htb rate 10000000kbit ceil 10000000kbit"),
        format!("qdisc add dev {dev} parent 1:10 handle 10: netem delay 100ms 10ms distribution normal loss random 1%"),
        format!(
            "filter add dev {dev} parent 1: protocol ip prio 16 u32 match ip dst {}/32 flowid 1:10",
            pair.ip_b
        ),
        format!("filter del dev {dev} parent 1: prio 16"),
        format!("class del dev {dev} classid 1:10"),
        format!("qdisc del dev {dev} root"),
    ] {
        assert!(calls.contains(&want), "missing `tc {want}` in:\n{calls}");
    }
    let _ = std::fs::remove_dir_all(bin);
}

#[test]
fn a_bad_spec_exits_2_and_names_the_field() {
    // Fails in validation, before touching anything: no root needed.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_netfault"))
        .args(["--state-dir", "/nonexistent/never-created"])
        .args(["apply", "--spec", r#"{"id":"x","loss_pct":150}"#])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("loss_pct"), "{err}");
}
