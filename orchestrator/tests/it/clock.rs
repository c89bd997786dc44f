//! Clock faults on real containers: a peer's own reported wall clock moves by the configured offset,
//! at run time, without a restart, and nobody else's clock moves.

use std::time::{SystemTime, UNIX_EPOCH};

use syftchaos::generator::ConcreteFault;

use crate::bed::{Bed, with_bed};
use crate::util::*;

/// A clock fault moving one peer by `offset_ms`.
pub fn clock_fault(peer: usize, offset_ms: i64) -> ConcreteFault {
    ConcreteFault::Clock {
        peers: vec![peer],
        offset_ms,
        rate: None,
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The peer's reported wall clock minus ours, in ms (half the round trip corrected).
pub async fn offset(bed: &Bed, peer: usize) -> i64 {
    let daemon = bed.cluster.daemon();
    let before = now_ms();
    let theirs = daemon
        .wall_clock_ms(&bed.cluster.peers[peer], &bed.cluster.facts[peer])
        .await
        .expect("the peer reports its clock");
    theirs - (before + now_ms()) / 2
}

async fn daemon_pid(bed: &Bed, peer: usize) -> String {
    bed.sh_peer(peer, "pgrep -x syncpeer").await.stdout.trim().to_string()
}

#[test]
fn clock_offsets_move_one_peers_clock_at_run_time() {
    if !docker_ready("clock_offsets_move_one_peers_clock_at_run_time") {
        return;
    }
    let _lock = docker_lock();
    with_bed(2, |bed| {
        Box::pin(async move {
            assert!(offset(bed, 0).await.abs() < 1000, "no skew before the fault");
            let pid = daemon_pid(bed, 0).await;
            assert!(!pid.is_empty(), "the daemon runs");
            let host_before = (now_ms(), std::time::Instant::now());

            bed.nemesis
                .start("ahead#1", "ahead", clock_fault(0, 3_600_000))
                .await
                .unwrap();
            let ahead = offset(bed, 0).await;
            eprintln!("p1 offset after +1h: {ahead} ms; p2: {} ms", offset(bed, 1).await);
            assert!(
                (ahead - 3_600_000).abs() <= 1000,
                "p1 is {ahead} ms off, configured +1h"
            );
            assert!(offset(bed, 1).await.abs() <= 1000, "p2 keeps the real time");

            bed.nemesis.stop("ahead#1").await.unwrap();
            let minus = ConcreteFault::Clock {
                peers: vec![0],
                offset_ms: -7_200_000,
                rate: None,
            };
            bed.nemesis.start("behind#1", "behind", minus).await.unwrap();
            let behind = offset(bed, 0).await;
            eprintln!("p1 offset after -2h: {behind} ms");
            assert!(
                (behind + 7_200_000).abs() <= 1000,
                "p1 is {behind} ms off, configured -2h"
            );
            assert_eq!(daemon_pid(bed, 0).await, pid, "the clock changed without a restart");

            // The host's wall clock advanced like its monotonic clock: it was not skewed.
            let wall = now_ms() - host_before.0;
            let mono = host_before.1.elapsed().as_millis() as i64;
            assert!((wall - mono).abs() < 1000, "host wall {wall} ms vs monotonic {mono} ms");

            bed.nemesis.heal_all().await.unwrap();
            assert!(offset(bed, 0).await.abs() <= 1000, "heal puts the clock back");
        })
    });
}
