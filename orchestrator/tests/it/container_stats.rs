//! Issue 16: the scraper's container counters, read from the kernel's cgroup and `/proc` files
//! instead of a Docker stats call per container per second, agree with Docker's stats API, and a
//! restarted container is found again.

use syftchaos::kernel_stats::StatsReader;

use crate::bed::with_bed;
use crate::util::{docker_lock, docker_ready};

#[test]
fn kernel_counters_agree_with_the_docker_stats_api_and_follow_a_restart() {
    if !docker_ready("kernel_counters_agree_with_the_docker_stats_api_and_follow_a_restart") {
        return;
    }
    let _lock = docker_lock();
    with_bed(2, |bed| {
        Box::pin(async move {
            let engine = bed.cluster.engine.clone();
            let reader = StatsReader::new(engine.clone());
            let c = bed.cluster.peers[0].container.clone();
            // Traffic, so that the network counters have moved.
            let ping = bed.sh(0, &format!("ping -q -c 5 -i 0.05 {}", bed.ip(1))).await;
            assert_eq!(ping.exit_code, 0, "{}", ping.stderr);

            let before = engine.stats(&c).await.unwrap();
            let kernel = reader.stats(&c).await.unwrap();
            let after = engine.stats(&c).await.unwrap();
            assert!(reader.reads_kernel(&c), "the sample came from the stats API");
            // Cumulative counters: the kernel's read lies between two of the engine's.
            for (what, b, k, a) in [
                ("cpu_ns", before.cpu_ns, kernel.cpu_ns, after.cpu_ns),
                ("rx_bytes", before.rx_bytes, kernel.rx_bytes, after.rx_bytes),
                ("tx_bytes", before.tx_bytes, kernel.tx_bytes, after.tx_bytes),
            ] {
                assert!(b <= k && k <= a, "{what}: engine {b}, kernel {k}, engine {a}");
            }
            assert!(kernel.rx_bytes > 0 && kernel.cpu_ns > 0, "{kernel:?}");
            // Levels: near the engine's (the daemon allocates and starts threads meanwhile).
            let near = |x: u64, y: u64| x.abs_diff(y) <= y / 4 + (1 << 20);
            assert!(
                near(kernel.anon_bytes, after.anon_bytes),
                "anon {kernel:?} vs {after:?}"
            );
            assert!(
                near(kernel.mem_bytes, after.mem_bytes),
                "memory {kernel:?} vs {after:?}"
            );
            assert!(kernel.tasks.abs_diff(after.tasks) <= 4, "tasks {kernel:?} vs {after:?}");

            // A restart: a new init process, found again; the old one's files are not read.
            engine.kill(&c, "SIGKILL").await.unwrap();
            engine.start(&c).await.unwrap();
            let again = reader.stats(&c).await.unwrap();
            assert!(
                reader.reads_kernel(&c),
                "after the restart the sample came from the stats API"
            );
            let engine_again = engine.stats(&c).await.unwrap();
            assert!(again.cpu_ns <= engine_again.cpu_ns, "{again:?} vs {engine_again:?}");
            assert!(again.tasks > 0, "{again:?}");
        })
    });
}
