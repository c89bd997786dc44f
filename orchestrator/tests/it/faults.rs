//! Faults measured between real containers (issue 4 and 5): each fault is asserted by what it does to
//! traffic or clocks, not by a command's exit code.

use std::collections::BTreeSet;

use syftchaos::generator::ConcreteFault;
use syftchaos::partition::{Cut, CutMode, Shape};
use syftchaos::plan::{Dur, LinkParams, ProcessAction};

use crate::bed::{Bed, ping_stats, with_bed};
use crate::util::*;

fn link(peers: Vec<usize>, to: Vec<usize>, params: LinkParams) -> ConcreteFault {
    ConcreteFault::Link {
        peers,
        to,
        params: Box::new(params),
        seed: 7,
    }
}

async fn ping(bed: &Bed, from: usize, to: usize, args: &str) -> String {
    let out = bed.sh(from, &format!("ping {args} {}", bed.ip(to))).await;
    out.stdout
}

#[test]
fn link_faults_are_measured_between_containers() {
    if !docker_ready("link_faults_are_measured_between_containers") {
        return;
    }
    let _lock = docker_lock_alone();
    with_bed(3, |bed| {
        Box::pin(async move {
            let base = ping_stats(&ping(bed, 0, 1, "-q -c 20 -i 0.02").await).3;
            assert!(base < 5.0, "baseline rtt {base} ms");

            // Delay: only p1 -> p2 is slowed; p1 -> p3 is not.
            let delay = LinkParams {
                delay: Some(Dur::from_ms(100)),
                ..Default::default()
            };
            bed.nemesis
                .start("delay#1", "delay", link(vec![0], vec![1], delay))
                .await
                .unwrap();
            let slowed = ping_stats(&ping(bed, 0, 1, "-q -c 10 -i 0.05").await).3;
            let other = ping_stats(&ping(bed, 0, 2, "-q -c 10 -i 0.05").await).3;
            eprintln!("delay: base {base:.2} ms, p1->p2 {slowed:.2} ms, p1->p3 {other:.2} ms");
            assert!(
                (95.0..=130.0).contains(&(slowed - base)),
                "added {:.1} ms, configured 100",
                slowed - base
            );
            assert!(other - base < 20.0, "p1->p3 must be untouched: {other}");
            bed.nemesis.stop("delay#1").await.unwrap();
            let healed = ping_stats(&ping(bed, 0, 1, "-q -c 10 -i 0.05").await).3;
            assert!(healed - base < 20.0, "heal restores the link: {healed} ms");

            // Jitter spreads the delay (normal, sd 30 ms).
            let jitter = LinkParams {
                delay: Some(Dur::from_ms(100)),
                jitter: Some(Dur::from_ms(30)),
                distribution: Some("normal".into()),
                ..Default::default()
            };
            bed.nemesis
                .start("jitter#1", "jitter", link(vec![0], vec![1], jitter))
                .await
                .unwrap();
            let (_, _, _, avg, mdev) = ping_stats(&ping(bed, 0, 1, "-q -c 40 -i 0.02").await);
            eprintln!("jitter: avg {avg:.1} ms mdev {mdev:.1} ms");
            assert!(mdev >= 12.0 && (80.0..=135.0).contains(&avg), "avg {avg} mdev {mdev}");
            bed.nemesis.stop("jitter#1").await.unwrap();

            // Loss: 30% over 400 probes lies within 4 binomial standard deviations.
            let loss = LinkParams {
                loss: Some(30.0),
                ..Default::default()
            };
            bed.nemesis
                .start("loss#1", "loss", link(vec![0], vec![1], loss))
                .await
                .unwrap();
            let (sent, recv, ..) = ping_stats(&ping(bed, 0, 1, "-q -c 400 -i 0.005 -W 1").await);
            let lost = 1.0 - recv as f64 / sent as f64;
            let sd = (0.3f64 * 0.7 / sent as f64).sqrt();
            eprintln!("loss: {lost:.3} of {sent} (sd {sd:.3})");
            assert!(
                (lost - 0.3).abs() <= 4.0 * sd,
                "loss {lost:.3}, configured 0.30 +- {:.3}",
                4.0 * sd
            );
            bed.nemesis.stop("loss#1").await.unwrap();

            // Duplication: the receiver's replies come back twice for about half the probes.
            let dup = LinkParams {
                duplicate: Some(50.0),
                ..Default::default()
            };
            bed.nemesis
                .start("dup#1", "dup", link(vec![0], vec![1], dup))
                .await
                .unwrap();
            let (sent, _, dups, ..) = ping_stats(&ping(bed, 0, 1, "-q -c 200 -i 0.005").await);
            eprintln!("duplicates: {dups} of {sent}");
            assert!(
                (60..=140).contains(&dups),
                "{dups} duplicates of {sent}, configured 50%"
            );
            bed.nemesis.stop("dup#1").await.unwrap();

            // Corruption: corrupted echo requests fail p2's ICMP checksum and are counted there.
            let csum = |s: String| -> u64 {
                let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("Icmp:")).collect();
                let (names, vals) = (lines[0].split_whitespace(), lines[1].split_whitespace());
                names
                    .zip(vals)
                    .find(|(n, _)| *n == "InCsumErrors")
                    .map_or(0, |(_, v)| v.parse().unwrap())
            };
            let before = csum(bed.sh(1, "cat /proc/net/snmp").await.stdout);
            let corrupt = LinkParams {
                corrupt: Some(50.0),
                ..Default::default()
            };
            bed.nemesis
                .start("corrupt#1", "corrupt", link(vec![0], vec![1], corrupt))
                .await
                .unwrap();
            let (sent, recv, ..) = ping_stats(&ping(bed, 0, 1, "-q -c 200 -i 0.005 -W 1").await);
            let after = csum(bed.sh(1, "cat /proc/net/snmp").await.stdout);
            eprintln!(
                "corruption: {} of {sent} lost, {} checksum errors at p2",
                sent - recv,
                after - before
            );
            assert!(after - before >= 40, "p2 saw {} ICMP checksum errors", after - before);
            assert!((40..=160).contains(&(sent - recv)), "{} of {sent} lost", sent - recv);
            bed.nemesis.stop("corrupt#1").await.unwrap();

            // Reordering: held-back packets arrive after later ones (icmp_seq out of order).
            let reorder = LinkParams {
                reorder: Some(30.0),
                reorder_delay: Some(Dur::from_ms(40)),
                ..Default::default()
            };
            bed.nemesis
                .start("reorder#1", "reorder", link(vec![0], vec![1], reorder))
                .await
                .unwrap();
            let out = ping(bed, 0, 1, "-c 100 -i 0.005").await;
            let seqs: Vec<u32> = out
                .lines()
                .filter_map(|l| l.split("icmp_seq=").nth(1)?.split_whitespace().next()?.parse().ok())
                .collect();
            let inversions = seqs.windows(2).filter(|w| w[1] < w[0]).count();
            eprintln!("reordering: {inversions} inversions in {} replies", seqs.len());
            assert!(inversions >= 5, "{inversions} inversions");
            bed.nemesis.stop("reorder#1").await.unwrap();

            // Bandwidth: 1 MB through a 4 mbit/s cap takes about 2 s.
            let rate = LinkParams {
                rate: Some("4mbit".into()),
                ..Default::default()
            };
            bed.nemesis
                .start("rate#1", "rate", link(vec![0], vec![1], rate))
                .await
                .unwrap();
            let listener = bed.sh(
                1,
                "timeout 30 nc -l -p 5001 > /dev/null || timeout 30 nc -l 5001 > /dev/null",
            );
            let sender = async {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let script = format!(
                    "s=$(date +%s%N); head -c 1000000 /dev/zero | nc -N -w 30 {} 5001; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))",
                    bed.ip(1)
                );
                bed.sh(0, &script).await
            };
            let (_, sent) = tokio::join!(listener, sender);
            let ms: f64 = sent.stdout.trim().lines().last().unwrap().parse().unwrap();
            let mbit = 8.0 / (ms / 1000.0);
            eprintln!("bandwidth: 1 MB in {ms} ms = {mbit:.2} mbit/s (cap 4)");
            assert!((3.0..=4.6).contains(&mbit), "{mbit:.2} mbit/s through a 4 mbit/s cap");
            bed.nemesis.stop("rate#1").await.unwrap();
        })
    });
}

/// Pings every ordered pair once; returns the set of (from, to) that got an answer.
async fn reachable(bed: &Bed, n: usize) -> BTreeSet<(usize, usize)> {
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
        .collect();
    let outs = futures_util::future::join_all(pairs.iter().map(|&(a, b)| async move {
        let out = bed.sh(a, &format!("ping -c 1 -W 1 {}", bed.ip(b))).await;
        (a, b, out.exit_code == 0)
    }))
    .await;
    outs.into_iter()
        .filter(|(_, _, ok)| *ok)
        .map(|(a, b, _)| (a, b))
        .collect()
}

#[test]
fn partitions_block_exactly_the_pairs_their_map_says() {
    if !docker_ready("partitions_block_exactly_the_pairs_their_map_says") {
        return;
    }
    let _lock = docker_lock();
    with_bed(4, |bed| {
        Box::pin(async move {
            let n = 4;
            let everyone: BTreeSet<(usize, usize)> = (0..n)
                .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
                .collect();
            assert_eq!(reachable(bed, n).await, everyone, "before any fault");
            for (name, shape) in [
                ("groups", Shape::Groups(vec![vec![0], vec![1, 2, 3]])),
                ("overlap", Shape::Groups(vec![vec![0, 1], vec![1, 2, 3]])),
                ("bridge", Shape::Bridge),
                (
                    "one-way",
                    Shape::OneWay {
                        from: vec![0],
                        to: vec![1, 2],
                    },
                ),
            ] {
                let links = shape.links(n, 3);
                bed.nemesis
                    .start(
                        name,
                        name,
                        ConcreteFault::Partition(Cut {
                            links: links.clone(),
                            mode: CutMode::Drop,
                            port: None,
                        }),
                    )
                    .await
                    .unwrap();
                // With `drop`, a ping needs both directions: the request and the reply.
                let expected: BTreeSet<(usize, usize)> = everyone
                    .iter()
                    .copied()
                    .filter(|&(a, b)| !links.contains(&(a, b)) && !links.contains(&(b, a)))
                    .collect();
                assert_eq!(reachable(bed, n).await, expected, "{name}: cut {links:?}");
                bed.nemesis.stop(name).await.unwrap();
                assert_eq!(reachable(bed, n).await, everyone, "{name}: heal restores every pair");
            }
            // One-way with `new-connections`: p1 cannot start talking to p2, p2 can to p1.
            let links = BTreeSet::from([(0, 1)]);
            let cut = Cut {
                links,
                mode: CutMode::NewConnections,
                port: None,
            };
            bed.nemesis
                .start("nc", "nc", ConcreteFault::Partition(cut))
                .await
                .unwrap();
            let got = reachable(bed, n).await;
            assert!(!got.contains(&(0, 1)) && got.contains(&(1, 0)), "asymmetric: {got:?}");
            bed.nemesis.heal_all().await.unwrap();
            assert_eq!(reachable(bed, n).await, everyone, "heal-all restores every pair");
        })
    });
}

/// The peer's network namespace as seen from a container (`net:[inode]`).
async fn netns(bed: &Bed, peer: usize, in_agent: bool) -> String {
    let script = "readlink /proc/self/ns/net";
    let out = if in_agent {
        bed.sh(peer, script).await
    } else {
        bed.sh_peer(peer, script).await
    };
    out.stdout.trim().to_string()
}

#[test]
fn a_restarted_peer_gets_a_new_fault_agent_and_its_partition_back() {
    if !docker_ready("a_restarted_peer_gets_a_new_fault_agent_and_its_partition_back") {
        return;
    }
    let _lock = docker_lock();
    with_bed(3, |bed| {
        Box::pin(async move {
            // The daemon holds no capability: it cannot undo its own partition.
            let caps = bed.sh_peer(0, "grep CapEff /proc/$(pgrep -x syncpeer)/status").await;
            assert!(
                caps.stdout.contains("0000000000000000"),
                "daemon capabilities: {}",
                caps.stdout
            );
            assert_eq!(
                netns(bed, 0, true).await,
                netns(bed, 0, false).await,
                "the agent is in the peer's namespace"
            );
            let cut = Cut {
                links: Shape::Groups(vec![vec![0], vec![1, 2]]).links(3, 1),
                mode: CutMode::Drop,
                port: None,
            };
            bed.nemesis
                .start("cut", "cut", ConcreteFault::Partition(cut))
                .await
                .unwrap();
            let isolated: BTreeSet<(usize, usize)> = BTreeSet::from([(1, 2), (2, 1)]);
            assert_eq!(reachable(bed, 3).await, isolated, "p1 is cut off");
            let before = netns(bed, 0, false).await;
            let kill = ConcreteFault::Process {
                peers: vec![0],
                action: ProcessAction::Kill,
            };
            bed.nemesis.start("kill", "kill", kill).await.unwrap();
            bed.nemesis.stop("kill").await.unwrap();
            let after = netns(bed, 0, false).await;
            assert_ne!(before, after, "a restarted container has a new namespace");
            assert_eq!(
                netns(bed, 0, true).await,
                after,
                "the new agent joined the new namespace"
            );
            assert_eq!(
                reachable(bed, 3).await,
                isolated,
                "the partition was re-applied after the restart"
            );
            bed.nemesis.stop("cut").await.unwrap();
            let everyone: BTreeSet<(usize, usize)> = (0..3)
                .flat_map(|a| (0..3).filter(move |&b| b != a).map(move |b| (a, b)))
                .collect();
            assert_eq!(reachable(bed, 3).await, everyone, "heal restores every pair");
        })
    });
}
