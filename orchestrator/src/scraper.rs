//! The metrics scraper: every interval (1 s by default) it reads every peer's Prometheus `/metrics`
//! (when its profile has one) and its container's CPU, memory and network counters (from the kernel's
//! cgroup and `/proc` files, [`crate::kernel_stats`], or else the Docker stats API), and appends one JSON line per (peer, source) to `<run>/metrics.jsonl`, plus one `roles`
//! line: the same scrape as what the counters *mean* ([`Role`]: the profile maps its metric names to
//! roles; Docker's network counters are roles for every daemon). Checkers read roles only, never a
//! daemon's metric names. Nothing is kept in memory: the checkers and the report read the file back.
//!
//! Parsing uses `prometheus-parse` 0.2.5, which is unmaintained since 2023 and has known gaps (it
//! splits label values containing `,` or `=`; histogram `_sum`/`_count` come out untyped; `_total`
//! counters under a `# TYPE x counter` header come out untyped too). We only keep plain samples keyed
//! by name and labels, which it gets right for what `syncpeer` emits: the tests below parse a real
//! `/metrics` page captured from a running `syncpeer` (`tests/it/fixtures/syncpeer-metrics.txt`).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::docker::Engine;
use crate::kernel_stats::StatsReader;
use crate::profile::{Metrics, Role};
use crate::record::beneath::Kind;
use crate::record::history::History;
use crate::record::run_folder::PeerDir;
use crate::record::samples::{METRICS_FILE, Sample, series_key};
use crate::record::segment::{Appender, Segments};

/// Default scrape interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Who to scrape.
#[derive(Clone, Debug)]
pub struct Target {
    pub peer: String,
    pub container: String,
    /// `None`: the daemon has no Prometheus metrics (its profile declares none).
    pub metrics_url: Option<String>,
    /// The profile's map from metric names to roles.
    pub roles: Option<Arc<Metrics>>,
    /// The peer's data folder, whose size outside the sync folder (its state: index, database,
    /// logs) is sampled for the growth check; `None`: not sampled.
    pub data: Option<PeerDir>,
}

/// Bytes in the peer's data folder outside its sync folder (and the workload's staging folder),
/// never through a symlink; at most [`STATE_WALK_MAX`] entries are looked at, so a state folder of
/// millions of files costs a bounded walk (the sum is then a lower bound).
pub fn state_bytes(dir: &PeerDir) -> Option<u64> {
    let data = dir.data().ok()?;
    let sync_top = std::path::Path::new(&dir.sync_rel)
        .components()
        .next()
        .map(|c| c.as_os_str().to_owned());
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = data.read_dir(&rel) else { continue };
        for (name, meta) in entries {
            seen += 1;
            if seen > STATE_WALK_MAX {
                return Some(total);
            }
            let top = rel.as_os_str().is_empty();
            if top && (Some(&name) == sync_top.as_ref() || name == ".syftchaos-workload") {
                continue;
            }
            match meta.kind {
                Kind::File => total += meta.len,
                Kind::Dir => stack.push(rel.join(&name)),
                _ => {}
            }
        }
    }
    Some(total)
}

/// How many entries [`state_bytes`] looks at, at most.
pub const STATE_WALK_MAX: usize = 100_000;

/// Parses a Prometheus text page into series keys and values. Counters, gauges and untyped samples
/// are kept; histogram buckets and summary quantiles are dropped (their `_sum` and `_count` stay).
pub fn parse(text: &str) -> std::io::Result<BTreeMap<String, f64>> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))?;
    let mut out = BTreeMap::new();
    for s in scrape.samples {
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let labels: BTreeMap<String, String> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.insert(series_key(&s.metric, &labels), v);
    }
    Ok(out)
}

async fn scrape_one(
    http: &reqwest::Client,
    engine: Option<&StatsReader>,
    t: &Target,
    history: &History,
) -> Vec<Sample> {
    // Each source is stamped when its answer arrived: a slow stats call must not shift the metrics.
    let metrics = async {
        let Some(url) = &t.metrics_url else {
            return None;
        };
        let got = async {
            let text = http
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            parse(&text).map_err(|e| e.to_string())
        }
        .await;
        Some((history.now_ms(), got))
    };
    let stats = async {
        match engine {
            Some(e) => {
                let got = e.stats(&t.container).await;
                Some((history.now_ms(), got))
            }
            None => None,
        }
    };
    let (metrics, stats) = tokio::join!(metrics, stats);
    let mut out = Vec::new();
    let mut roles = BTreeMap::new();
    let mut roles_t = 0;
    match metrics {
        Some((t_ms, Ok(values))) => {
            if let Some(m) = &t.roles {
                roles = m.roles(&values);
            }
            roles_t = t_ms;
            out.push(Sample::Metrics {
                t_ms,
                peer: t.peer.clone(),
                values,
            });
        }
        Some((t_ms, Err(error))) => out.push(Sample::MetricsError {
            t_ms,
            peer: t.peer.clone(),
            error,
        }),
        None => {}
    }
    let metrics_failed = matches!(out.last(), Some(Sample::MetricsError { .. }));
    if let Some((t_ms, Ok(stats))) = &stats {
        roles.insert(Role::NetTxBytes.as_str().into(), stats.tx_bytes as f64);
        roles.insert(Role::NetRxBytes.as_str().into(), stats.rx_bytes as f64);
        roles_t = roles_t.max(*t_ms);
    }
    // A scrape whose metrics failed is no evidence of flat counters: no roles line for it.
    if !roles.is_empty() && !metrics_failed {
        out.push(Sample::Roles {
            t_ms: roles_t,
            peer: t.peer.clone(),
            values: roles,
        });
    }
    if let Some(state_bytes) = t.data.as_ref().and_then(state_bytes) {
        out.push(Sample::State {
            t_ms: history.now_ms(),
            peer: t.peer.clone(),
            state_bytes,
        });
    }
    match stats {
        Some((t_ms, Ok(stats))) => out.push(Sample::Docker {
            t_ms,
            peer: t.peer.clone(),
            stats,
        }),
        Some((_, Err(e))) => tracing::debug!("stats of {}: {e}", t.container),
        None => {}
    }
    out
}

/// One round: every target at once; returns the samples in target order.
pub async fn scrape_all(
    http: &reqwest::Client,
    engine: Option<&StatsReader>,
    targets: &[Target],
    history: &History,
) -> Vec<Sample> {
    let rounds = targets.iter().map(|t| scrape_one(http, engine, t, history));
    futures_util::future::join_all(rounds)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn write_samples(out: &mut impl Write, samples: &[Sample]) -> std::io::Result<()> {
    for s in samples {
        serde_json::to_writer(&mut *out, s)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Scrapes every `interval` until `stop` turns true, then scrapes once more (so the last sample is
/// fresh) and returns. Errors writing the file are logged, not fatal.
pub async fn run(
    targets: Vec<Target>,
    engine: Option<Engine>,
    history: Arc<History>,
    segments: Segments,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_millis(900).min(interval))
        .no_proxy()
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("metrics scraper: {e}");
            return;
        }
    };
    let mut out = match Appender::create(&segments, METRICS_FILE) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("cannot write {METRICS_FILE} in {}: {e}", segments.dir().display());
            return;
        }
    };
    // Container counters from the kernel's files (a Docker stats call per container per second
    // kept the engine busy at 100 peers), the stats API where those are out of reach.
    let stats = engine.map(StatsReader::new);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        let samples = scrape_all(&http, stats.as_ref(), &targets, &history).await;
        if let Err(e) = out.write(|w| write_samples(w, &samples)) {
            tracing::error!("cannot write metrics samples: {e}");
        }
        if stopping || *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::loops::quiet_between;
    use crate::docker::ContainerStats;
    use crate::record::samples::*;
    use std::fs::File;
    use std::io::BufWriter;

    const FIXTURE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/fixtures/syncpeer-metrics.txt"
    ));

    #[test]
    fn parses_a_real_syncpeer_metrics_page() {
        let m = parse(FIXTURE).unwrap();
        // Counters keep their `_total` name and every label (peer and kind both survive).
        assert_eq!(m["syncpeer_messages_sent_total{kind=\"blob\",peer=\"p2\"}"], 2.0);
        assert_eq!(m["syncpeer_messages_sent_total{kind=\"summary\",peer=\"p2\"}"], 20.0);
        assert_eq!(m["syncpeer_bytes_received_total{kind=\"summary\",peer=\"p2\"}"], 4710.0);
        assert_eq!(m["syncpeer_local_changes_total"], 1.0);
        assert_eq!(m["syncpeer_versions_applied_total"], 1.0);
        assert_eq!(m["syncpeer_conflicts_total"], 1.0);
        assert_eq!(m["syncpeer_rejections_total{reason=\"bad_hash\"}"], 0.0);
        assert_eq!(m["syncpeer_index_entries"], 2.0);
        // Histogram: `_sum` and `_count` as plain samples, buckets dropped.
        assert_eq!(m["syncpeer_apply_latency_seconds_count"], 1.0);
        assert!((m["syncpeer_apply_latency_seconds_sum"] - 0.343275215).abs() < 1e-12);
        assert!(!m.keys().any(|k| k.contains("le=")), "{m:?}");
        // 4 kinds x 4 traffic families, 5 reasons, and the 10 plain series.
        assert_eq!(m.len(), 16 + 5 + 10, "{:#?}", m.keys().collect::<Vec<_>>());
    }

    #[test]
    fn the_keys_work_with_the_checkers_label_lookup() {
        use crate::checker::loops::must_stay_flat;
        let m = parse(FIXTURE).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../peer-image/profiles");
        let roles = crate::profile::load("syncpeer", &dir)
            .unwrap()
            .metrics
            .unwrap()
            .roles(&m);
        let flat: Vec<&String> = roles.keys().filter(|k| must_stay_flat(k)).collect();
        // 3 non-summary kinds x 4 traffic families + versions applied + local changes.
        assert_eq!(flat.len(), 14, "{flat:?}");
        let k = "syncpeer_bytes_sent_total{kind=\"index\",peer=\"p2\"}";
        assert_eq!(
            (key_name(k), key_label(k, "kind"), key_label(k, "peer")),
            ("syncpeer_bytes_sent_total", Some("index"), Some("p2"))
        );
    }

    #[test]
    fn a_page_from_an_unknown_peer_name_with_odd_characters_is_the_known_gap() {
        // prometheus-parse splits label values at `,`: peer names in plans are `p<N>`, so this never
        // happens with our peers; the test documents the limit instead of hiding it.
        let m = parse("x_total{peer=\"a,b\"} 1\n").unwrap();
        assert!(!m.contains_key("x_total{peer=\"a,b\"}"));
    }

    #[test]
    fn samples_round_trip_and_checks_get_the_window_and_the_last_scrape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let mut w = BufWriter::new(File::create(&path).unwrap());
        let m = |t_ms, peer: &str, v: f64| Sample::Roles {
            t_ms,
            peer: peer.into(),
            values: BTreeMap::from([("messages_sent".to_string(), v)]),
        };
        let samples = vec![
            m(1000, "p1", 1.0),
            m(1000, "p2", 1.0),
            Sample::Docker {
                t_ms: 1000,
                peer: "p1".into(),
                stats: ContainerStats {
                    cpu_ns: 5,
                    mem_bytes: 6,
                    rx_bytes: 7,
                    tx_bytes: 8,
                    ..Default::default()
                },
            },
            Sample::MetricsError {
                t_ms: 2000,
                peer: "p2".into(),
                error: "timeout".into(),
            },
            m(2000, "p1", 2.0),
            m(3000, "p1", 3.0),
        ];
        write_samples(&mut w, &samples).unwrap();
        drop(w);
        let back: Vec<Sample> = read(&path).collect();
        assert_eq!(back, samples);
        assert!(!settled(&path, 2, 1000, quiet_between), "p2 has no window");
        let c = counters_for_checks(&path, Some(2000));
        let mut got: Vec<(u64, &str)> = c.iter().map(|c| (c.t_ms, c.peer.as_str())).collect();
        got.sort();
        assert_eq!(got, vec![(1000, "p2"), (2000, "p1"), (3000, "p1")]);
    }

    #[test]
    fn settled_means_flat_counters_over_the_last_window_for_every_peer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let key = "messages_sent{kind=\"index\",peer=\"p2\"}";
        let summary = "background_messages_sent{kind=\"summary\",peer=\"p2\"}";
        let m = |t_ms, peer: &str, v: f64, s: f64| Sample::Roles {
            t_ms,
            peer: peer.into(),
            values: BTreeMap::from([(key.to_string(), v), (summary.to_string(), s)]),
        };
        let write = |samples: &[Sample]| {
            let mut w = BufWriter::new(File::create(&path).unwrap());
            write_samples(&mut w, samples).unwrap();
        };
        // Summaries tick, index messages are flat for 2 s on both peers.
        write(&[
            m(0, "p1", 1.0, 1.0),
            m(0, "p2", 1.0, 1.0),
            m(2000, "p1", 1.0, 5.0),
            m(2000, "p2", 1.0, 5.0),
        ]);
        assert!(settled(&path, 2, 2000, quiet_between));
        assert!(
            !settled(&path, 3, 2000, quiet_between),
            "a peer without samples is not settled"
        );
        assert!(
            !settled(&path, 2, 3000, quiet_between),
            "window longer than what was watched"
        );
        write(&[
            m(0, "p1", 1.0, 1.0),
            m(0, "p2", 1.0, 1.0),
            m(2000, "p1", 1.0, 5.0),
            m(2000, "p2", 2.0, 5.0),
        ]);
        assert!(!settled(&path, 2, 2000, quiet_between), "p2's index messages moved");
        assert_eq!(
            settle_since(&path, 2, 2000, 0, quiet_between),
            Settle {
                watched: true,
                quiet: false,
                until_ms: 2000
            },
            "watched long enough to judge: a loop, not an unknown"
        );
        write(&[
            m(0, "p1", 1.0, 1.0),
            m(0, "p2", 1.0, 1.0),
            m(2000, "p1", 1.0, 5.0),
            m(2000, "p2", 1.0, 5.0),
        ]);
        assert!(settle_since(&path, 2, 2000, 0, quiet_between).quiet);
        assert!(
            !settle_since(&path, 2, 2000, 1, quiet_between).watched,
            "the window must start after the heal, or the reaction to it goes unseen"
        );
        assert!(
            !settle_since(&path, 2, 2000, 2500, quiet_between).watched,
            "no scrape after the heal yet"
        );
    }

    /// Seen on a 10-peer soak: each peer's counters are labelled per neighbour, so a scrape's line is
    /// several KiB and the fixed tail held under 2 s of scrapes; the window was never watched whole
    /// and every settle waited the 90 s limit. The tail now grows until every window fits.
    #[test]
    fn a_window_is_watched_whatever_the_length_of_the_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let peers: Vec<String> = (1..=10).map(|i| format!("p{i}")).collect();
        // 400 counters per scrape (about 16 KiB a line), flat, one scrape a second for 10 s.
        let values: BTreeMap<String, f64> = (0..400)
            .map(|i| (format!("bytes_sent{{kind=\"blob\",peer=\"neighbour-{i:04}\"}}"), 7.0))
            .collect();
        let mut w = BufWriter::new(File::create(&path).unwrap());
        for t in 0..10u64 {
            let round: Vec<Sample> = peers
                .iter()
                .map(|p| Sample::Roles {
                    t_ms: t * 1000,
                    peer: p.clone(),
                    values: values.clone(),
                })
                .collect();
            write_samples(&mut w, &round).unwrap();
        }
        drop(w);
        assert!(
            std::fs::metadata(&path).unwrap().len() > 10 * 6 * 8192 * 2,
            "lines long enough"
        );
        let s = settle_since(&path, 10, 2000, 3000, quiet_between);
        assert!(s.watched && s.quiet, "{s:?}");
        assert_eq!(s.until_ms, 9000);
    }

    /// Serves the fixture as `/metrics` on a local port, like a peer would.
    async fn fake_peer() -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        FIXTURE.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(FIXTURE.as_bytes()).await;
                });
            }
        });
        (url, task)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scraper_streams_every_peer_and_records_unreachable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (url, server) = fake_peer().await;
        let history = Arc::new(History::create(&dir.path().join("history.jsonl")).unwrap());
        let path = dir.path().join(METRICS_FILE);
        let targets = vec![
            Target {
                peer: "p1".into(),
                container: "none".into(),
                metrics_url: Some(url),
                roles: None,
                data: None,
            },
            Target {
                peer: "p2".into(),
                container: "none".into(),
                // Nothing listens on port 9 here: the scrape fails and is recorded as such.
                metrics_url: Some("http://127.0.0.1:9/metrics".into()),
                roles: None,
                data: None,
            },
        ];
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            targets,
            None,
            history,
            Segments::new(dir.path()),
            Duration::from_millis(200),
            stop_rx,
        ));
        tokio::time::sleep(Duration::from_millis(700)).await;
        let _ = stop_tx.send(true);
        task.await.unwrap();
        server.abort();
        let samples: Vec<Sample> = read(&path).collect();
        let ok: Vec<&BTreeMap<String, f64>> = samples
            .iter()
            .filter_map(|s| match s {
                Sample::Metrics { peer, values, .. } if peer == "p1" => Some(values),
                _ => None,
            })
            .collect();
        assert!(
            ok.len() >= 3,
            "a scrape every 200 ms, and a last one at the stop: {}",
            ok.len()
        );
        assert_eq!(ok[0]["syncpeer_conflicts_total"], 1.0);
        assert!(
            samples
                .iter()
                .any(|s| matches!(s, Sample::MetricsError { peer, .. } if peer == "p2")),
            "{samples:?}"
        );
    }
}
