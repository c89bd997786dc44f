//! Two network namespaces joined by a veth pair, a UDP echo, probes, and cleanup on drop.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub const ECHO_PORT: u16 = 9000;
pub const TCP_PORT: u16 = 9100;

/// True when the measurement tests can run here; otherwise prints why (or panics under CI).
pub fn can_run() -> bool {
    let reason = if unsafe { libc::geteuid() } != 0 {
        Some("not root".to_string())
    } else {
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!("`ip netns` failed: {}", String::from_utf8_lossy(&o.stderr))),
            Err(e) => Some(format!("no `ip` command: {e}")),
        }
    };
    match reason {
        None => true,
        Some(r) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but the netns measurement tests cannot run: {r}")
        }
        Some(r) => {
            eprintln!("SKIPPED: netns measurement tests need root and `ip netns`: {r}");
            false
        }
    }
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

fn must(args: &[&str]) -> String {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Namespace A (where netfault runs) and B (the echo), joined by veth; removed on drop.
pub struct NetPair {
    pub ns_a: String,
    pub ns_b: String,
    pub dev_a: String,
    pub ip_a: Ipv4Addr,
    pub ip_b: Ipv4Addr,
    pub state_dir: PathBuf,
}

impl NetPair {
    pub fn new() -> NetPair {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{}{n}", pid % 100_000);
        let subnet = 1 + (n % 250) as u8;
        let p = NetPair {
            ns_a: format!("nfa{tag}"),
            ns_b: format!("nfb{tag}"),
            dev_a: format!("nfva{tag}"),
            ip_a: Ipv4Addr::new(10, 250, subnet, 1),
            ip_b: Ipv4Addr::new(10, 250, subnet, 2),
            state_dir: std::env::temp_dir().join(format!("netfault-it-{tag}")),
        };
        let dev_b = format!("nfvb{tag}");
        // Construct first so that Drop cleans up whatever part got created.
        must(&["ip", "netns", "add", &p.ns_a]);
        must(&["ip", "netns", "add", &p.ns_b]);
        must(&["ip", "link", "add", &p.dev_a, "type", "veth", "peer", "name", &dev_b]);
        must(&["ip", "link", "set", &p.dev_a, "netns", &p.ns_a]);
        must(&["ip", "link", "set", &dev_b, "netns", &p.ns_b]);
        for (ns, dev, ip) in [(&p.ns_a, &p.dev_a, p.ip_a), (&p.ns_b, &dev_b, p.ip_b)] {
            must(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    /// Run netfault inside namespace A with this pair's state directory.
    pub fn netfault(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns_a, env!("CARGO_BIN_EXE_netfault")])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .output()
            .expect("cannot run netfault")
    }

    /// Run netfault in namespace A with extra environment variables.
    pub fn netfault_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns_a, env!("CARGO_BIN_EXE_netfault")])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("cannot run netfault")
    }

    /// Run netfault and parse its JSON, asserting success.
    pub fn netfault_ok(&self, args: &[&str]) -> serde_json::Value {
        let o = self.netfault(args);
        assert!(
            o.status.success(),
            "netfault {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).expect("netfault printed no JSON")
    }

    pub fn apply(&self, spec: &str) -> serde_json::Value {
        self.netfault_ok(&["apply", "--spec", spec])
    }

    pub fn counters(&self, id: &str) -> serde_json::Value {
        let st = self.netfault_ok(&["status"]);
        st["faults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no fault {id} in status {st}"))["counters"]
            .clone()
    }

    pub fn exec_a(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.ns_a];
        v.extend_from_slice(args);
        must(&v)
    }

    pub fn exec_b(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.ns_b];
        v.extend_from_slice(args);
        must(&v)
    }

    /// A counter from /proc/net/snmp in namespace B, e.g. ("Udp", "InCsumErrors").
    pub fn snmp_b(&self, proto: &str, field: &str) -> u64 {
        let text = self.exec_b(&["cat", "/proc/net/snmp"]);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("{proto}:"))).collect();
        let names: Vec<&str> = lines[0].split_whitespace().collect();
        let values: Vec<&str> = lines[1].split_whitespace().collect();
        let i = names.iter().position(|n| *n == field).expect("no such field");
        values[i].parse().unwrap()
    }

    /// Everything netfault may leave behind in namespace A, for "restored exactly" checks.
    pub fn leftovers(&self) -> (String, String) {
        (
            self.exec_a(&["iptables-save", "-t", "mangle"]),
            self.exec_a(&["tc", "qdisc", "show", "dev", &self.dev_a]),
        )
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Heal (stops engine daemons, which would otherwise keep namespace A alive), then delete.
        let _ = self.netfault(&["clear"]);
        let _ = Command::new("ip").args(["netns", "del", &self.ns_a]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns_b]).output();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Run `f` on a thread that has entered namespace `ns` (only that thread moves).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// A UDP echo server in namespace B; stops on drop.
pub struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    pub fn start(pair: &NetPair) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let addr = SocketAddrV4::new(pair.ip_b, ECHO_PORT);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = in_ns(&pair.ns_b, move || {
            let sock = UdpSocket::bind(addr).expect("bind echo");
            sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            while !s2.load(Ordering::SeqCst) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        rx.recv().expect("echo did not start");
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a probe run went.
#[derive(Debug, Default)]
pub struct Probes {
    pub sent: u32,
    /// (seq, round-trip ms) of every echo received, duplicates included, in arrival order.
    pub echoes: Vec<(u32, f64)>,
    /// Echoes whose payload differs from what was sent.
    pub mangled: u32,
}

impl Probes {
    pub fn rtts(&self) -> Vec<f64> {
        let mut seen = std::collections::HashSet::new();
        self.echoes
            .iter()
            .filter(|(s, _)| seen.insert(*s))
            .map(|(_, r)| *r)
            .collect()
    }
    pub fn unique(&self) -> usize {
        self.rtts().len()
    }
    /// Echoes that arrive after an echo with a higher sequence number (first copies only).
    pub fn out_of_order(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        let mut max = None;
        let mut n = 0;
        for (s, _) in &self.echoes {
            if !seen.insert(*s) {
                continue;
            }
            if max.is_some_and(|m| *s < m) {
                n += 1;
            }
            max = max.max(Some(*s));
        }
        n
    }
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * q).round() as usize]
}

pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, var.sqrt())
}

fn payload(seq: u32, sent_ns: u64, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&sent_ns.to_be_bytes());
    while p.len() < len {
        p.push((seq as usize * 31 + p.len()) as u8);
    }
    p
}

/// Send `n` UDP probes from A to B's echo, one every `interval`, round-robin over `flows`
/// source sockets, then wait up to `linger` for stragglers (less once every probe came back).
pub fn probe(pair: &NetPair, n: u32, interval: Duration, flows: usize, linger: Duration) -> Probes {
    probe_until(pair, n, interval, flows, linger, move |p| p.unique() == n as usize)
}

/// A reader of fault `id`'s counters as its engine last wrote them (every 250 ms), for
/// [`probe_until`]'s `done`, which runs on the prober's thread.
pub fn engine_counters(pair: &NetPair, id: &str) -> impl Fn() -> Option<serde_json::Value> + Send + 'static {
    let path = pair.state_dir.join(format!("{id}.counters.json"));
    move || serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
}

/// Done when fault `id` has seen all `n` probes and every echo it let through is back: the `n`
/// probes less those it dropped, plus the copies it made. A count on a loaded machine waits for
/// this instead of a fixed linger: a starved echo thread answers late, not never.
pub fn all_back(pair: &NetPair, n: u32, id: &str) -> impl Fn(&Probes) -> bool + Send + 'static {
    let counters = engine_counters(pair, id);
    move |p| {
        let Some(c) = counters() else { return false };
        let count = |k: &str| c[k].as_u64().unwrap_or(0) as usize;
        count("seen") >= n as usize && p.echoes.len() + count("dropped") >= n as usize + count("duplicated")
    }
}

/// [`probe`], waiting after the last send until `done` holds (then 50 ms more for stragglers) or
/// `max_wait` has passed.
pub fn probe_until(
    pair: &NetPair,
    n: u32,
    interval: Duration,
    flows: usize,
    max_wait: Duration,
    done: impl Fn(&Probes) -> bool + Send + 'static,
) -> Probes {
    let (ip_a, ip_b) = (pair.ip_a, pair.ip_b);
    in_ns(&pair.ns_a, move || {
        let socks: Vec<UdpSocket> = (0..flows)
            .map(|_| {
                let s = UdpSocket::bind(SocketAddrV4::new(ip_a, 0)).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let dst = SocketAddrV4::new(ip_b, ECHO_PORT);
        let origin = Instant::now();
        let mut out = Probes::default();
        let mut buf = [0u8; 2048];
        let mut recv_all = |out: &mut Probes| {
            for s in &socks {
                while let Ok(len) = s.recv(&mut buf) {
                    let now = origin.elapsed().as_nanos() as u64;
                    if len < 12 {
                        out.mangled += 1;
                        continue;
                    }
                    let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
                    let sent = u64::from_be_bytes(buf[4..12].try_into().unwrap());
                    if seq >= n || sent > now || buf[..len] != payload(seq, sent, len)[..] {
                        out.mangled += 1;
                        continue;
                    }
                    out.echoes.push((seq, (now - sent) as f64 / 1e6));
                }
            }
        };
        for seq in 0..n {
            let due = interval * seq;
            while origin.elapsed() < due {
                recv_all(&mut out);
                std::thread::sleep(Duration::from_micros(50));
            }
            let sent = origin.elapsed().as_nanos() as u64;
            let pkt = payload(seq, sent, 64);
            // Held packets count against the socket's send buffer: wait for room.
            loop {
                match socks[seq as usize % flows].send_to(&pkt, dst) {
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        recv_all(&mut out);
                        std::thread::sleep(Duration::from_micros(20));
                    }
                    Err(e) => panic!("send: {e}"),
                }
            }
            out.sent += 1;
        }
        let end = origin.elapsed() + max_wait;
        let mut done_at = None;
        let mut checked = Duration::ZERO;
        while origin.elapsed() < end {
            recv_all(&mut out);
            let now = origin.elapsed();
            if done_at.is_none() && now - checked >= Duration::from_millis(20) {
                checked = now;
                done_at = done(&out).then_some(now);
            }
            if done_at.is_some_and(|t| now - t >= Duration::from_millis(50)) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        out
    })
    .join()
    .unwrap()
}

/// Strict ping-pong: send one probe, block until its echo (or 1 s); returns RTTs in ms.
/// Blocking receive gives the exact round trip, unlike the polling `probe`.
#[allow(dead_code)] // used by benches/engine.rs, which includes this file
pub fn pingpong(pair: &NetPair, n: u32) -> Vec<f64> {
    let (ip_a, ip_b) = (pair.ip_a, pair.ip_b);
    in_ns(&pair.ns_a, move || {
        let s = UdpSocket::bind(SocketAddrV4::new(ip_a, 0)).unwrap();
        s.connect(SocketAddrV4::new(ip_b, ECHO_PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 2048];
        let mut out = Vec::new();
        for seq in 0..n {
            let t = Instant::now();
            s.send(&payload(seq, 0, 64)).unwrap();
            while let Ok(len) = s.recv(&mut buf) {
                if len >= 4 && buf[..4] == seq.to_be_bytes() {
                    out.push(t.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
            }
        }
        out
    })
    .join()
    .unwrap()
}

/// Stream TCP from A to B for `secs`; returns bytes/s measured at B after `warmup` seconds.
pub fn tcp_throughput(pair: &NetPair, secs: f64, warmup: f64) -> f64 {
    tcp_stream(&pair.ns_a, &pair.ns_b, pair.ip_b, secs, warmup)
}

/// The same from B to A (what A receives).
pub fn tcp_throughput_to_a(pair: &NetPair, secs: f64, warmup: f64) -> f64 {
    tcp_stream(&pair.ns_b, &pair.ns_a, pair.ip_a, secs, warmup)
}

fn tcp_stream(from_ns: &str, to_ns: &str, to_ip: Ipv4Addr, secs: f64, warmup: f64) -> f64 {
    let addr = SocketAddrV4::new(to_ip, TCP_PORT);
    let (tx, rx) = std::sync::mpsc::channel();
    let server = in_ns(to_ns, move || {
        let l = TcpListener::bind(addr).unwrap();
        tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let t0 = Instant::now();
        let mut marks: Vec<(f64, u64)> = Vec::new();
        let mut total = 0u64;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
            marks.push((t0.elapsed().as_secs_f64(), total));
        }
        marks
    });
    rx.recv().unwrap();
    let client = in_ns(from_ns, move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let chunk = vec![7u8; 1 << 16];
        let t0 = Instant::now();
        while t0.elapsed().as_secs_f64() < secs {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        // Dropping closes; unsent data in the socket buffer is not counted by the receiver's window.
    });
    client.join().unwrap();
    let marks = server.join().unwrap();
    let at = |t: f64| {
        marks
            .iter()
            .take_while(|(x, _)| *x <= t)
            .last()
            .map(|m| (m.0, m.1))
            .unwrap_or((0.0, 0))
    };
    let (t1, b1) = at(warmup);
    let (t2, b2) = at(secs);
    (b2 - b1) as f64 / (t2 - t1)
}

/// Send `data` over TCP from A to B; returns what B received.
pub fn tcp_transfer(pair: &NetPair, data: Vec<u8>) -> Vec<u8> {
    let addr = SocketAddrV4::new(pair.ip_b, TCP_PORT + 1);
    let (tx, rx) = std::sync::mpsc::channel();
    let server = in_ns(&pair.ns_b, move || {
        let l = TcpListener::bind(addr).unwrap();
        tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    rx.recv().unwrap();
    in_ns(&pair.ns_a, move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&data).unwrap();
    })
    .join()
    .unwrap();
    server.join().unwrap()
}

/// CPU time (user + system, seconds) a process has used so far.
#[allow(dead_code)] // used by benches/engine.rs
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Map of seq -> copies received.
pub fn copies(p: &Probes) -> HashMap<u32, usize> {
    let mut m = HashMap::new();
    for (s, _) in &p.echoes {
        *m.entry(*s).or_insert(0) += 1;
    }
    m
}
