//! `netfault mitm` between two namespaces: the proxy on the link from A to B's port, against two
//! servers in B. A *sealed* server checks every record's sequence number and checksum (what TLS
//! does for every record) and answers a bad one with a 24-byte alert and a close: every mode is
//! refused. A *plain* server answers whatever arrives: the altered stream is answered, which is
//! how the `mitm-refused` check of a daemon without authenticated streams fails.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::util::*;

const PORT: u16 = 9300;

fn checksum(seq: u64, data: &[u8]) -> u64 {
    // FNV-1a over the sequence number and the data: a stand-in for a record's MAC.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seq.to_be_bytes().iter().chain(data) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// A record: TLS's 5-byte header (type, version 3.3, length), then seq, data, checksum.
fn seal(kind: u8, seq: u64, data: &[u8]) -> Vec<u8> {
    let mut payload = seq.to_be_bytes().to_vec();
    payload.extend_from_slice(data);
    payload.extend(checksum(seq, data).to_be_bytes());
    let mut r = vec![kind, 3, 3];
    r.extend((payload.len() as u16).to_be_bytes());
    r.extend(payload);
    r
}

fn read_record(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).ok()?;
    let mut body = vec![0u8; u16::from_be_bytes([head[3], head[4]]) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// A server in namespace B; `sealed` checks records, else it answers every read.
struct Server {
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(pair: &NetPair, sealed: bool) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (ip, flag) = (pair.ip_b, stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        in_ns(&pair.ns_b, move || {
            let l = TcpListener::bind(SocketAddrV4::new(ip, PORT)).unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !flag.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || if sealed { serve_sealed(s) } else { serve_plain(s) });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        rx.recv().unwrap();
        Server { stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_sealed(mut s: TcpStream) {
    let mut want = 0u64;
    while let Some(body) = read_record(&mut s) {
        let ok = body.len() >= 16 && {
            let (seq, rest) = body.split_at(8);
            let (data, sum) = rest.split_at(rest.len() - 8);
            let seq = u64::from_be_bytes(seq.try_into().unwrap());
            seq == want && checksum(seq, data).to_be_bytes() == sum
        };
        if !ok {
            // The alert, and the stream is over.
            let _ = s.write_all(&[0x15; 24]);
            let _ = s.shutdown(Shutdown::Both);
            return;
        }
        let _ = s.write_all(&seal(0x17, want, &[7; 200]));
        want += 1;
    }
}

fn serve_plain(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&[b'k'; 200]).is_err() {
            return;
        }
    }
}

/// From namespace A: a hello, its answer, then (once the proxy will act) two more records; returns
/// the bytes that came back after the hello's answer.
fn client(pair: &NetPair) -> usize {
    let ip = pair.ip_b;
    in_ns(&pair.ns_a, move || {
        let mut s = TcpStream::connect(SocketAddrV4::new(ip, PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(&seal(0x16, 0, b"hello")).unwrap();
        let mut first = [0u8; 4096];
        let _ = s.read(&mut first);
        std::thread::sleep(Duration::from_millis(700));
        let _ = s.write_all(&seal(0x17, 1, b"GET /v1/index"));
        std::thread::sleep(Duration::from_millis(300));
        let _ = s.write_all(&seal(0x17, 2, b"GET /v1/index?after=x"));
        let mut back = 0;
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            back += n;
        }
        back
    })
    .join()
    .unwrap()
}

fn start(pair: &NetPair, id: &str, mode: &str) -> serde_json::Value {
    let target = pair.ip_b.to_string();
    let port = PORT.to_string();
    pair.netfault_ok(&[
        "mitm",
        "start",
        "--id",
        id,
        "--targets",
        &target,
        "--port",
        &port,
        "--mode",
        mode,
    ])
}

fn assert_gone(pair: &NetPair) {
    let rules = pair.exec_a(&["iptables-save"]);
    assert!(!rules.contains("netfault-mitm"), "rules left behind:\n{rules}");
    let st = pair.netfault_ok(&["mitm", "status"]);
    assert_eq!(st["mitm"].as_array().unwrap().len(), 0, "{st}");
}

#[test]
fn a_sealed_stream_refuses_every_alteration_drop_and_replay() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _server = Server::start(&pair, true);
    for mode in ["alter", "drop", "replay"] {
        let out = start(&pair, "m1", mode);
        assert!(out["listen_port"].as_u64().unwrap() > 0, "{out}");
        let back = client(&pair);
        let end = pair.netfault_ok(&["mitm", "stop", "--id", "m1"]);
        let t = &end["final"];
        eprintln!("{mode}: {back} bytes back to the client; tally {t}");
        assert_eq!(t["streams"], 1, "{mode}: {t}");
        assert_eq!(t["acted"], 1, "{mode}: {t}");
        assert_eq!(
            (t["refused"].as_u64(), t["answered"].as_u64()),
            (Some(1), Some(0)),
            "{mode}: {t}"
        );
        assert!(t["recent"][0]["tls"].as_bool().unwrap(), "framed as TLS records: {t}");
        assert!(t["recent"][0]["acted_after_ms"].as_u64().unwrap() >= 500, "{t}");
        assert_gone(&pair);
    }
}

#[test]
fn a_plain_stream_answers_the_altered_message_and_the_tally_says_so() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _server = Server::start(&pair, false);
    start(&pair, "m2", "alter");
    let back = client(&pair);
    let t = pair.netfault_ok(&["mitm", "stop", "--id", "m2"])["final"].clone();
    assert!(
        back >= 400,
        "the plain server answered both records after the act: {back}"
    );
    assert_eq!((t["acted"].as_u64(), t["answered"].as_u64()), (Some(1), Some(1)), "{t}");
    assert!(t["recent"][0]["answered"].as_bool().unwrap(), "kept as evidence: {t}");
    assert_gone(&pair);
}

#[test]
fn streams_open_before_the_proxy_are_cut_and_a_total_clear_takes_it_away() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    let _server = Server::start(&pair, false);
    let ip = pair.ip_b;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let old = in_ns(&pair.ns_a, move || {
        let mut s = TcpStream::connect(SocketAddrV4::new(ip, PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"before").unwrap();
        let mut buf = [0u8; 200];
        s.read_exact(&mut buf).unwrap();
        rx.recv().unwrap();
        // The proxy is on: the stream was closed under it (without anything sent on it).
        let got = s.read(&mut buf);
        (true, got.map_err(|e| e.kind()))
    });
    std::thread::sleep(Duration::from_millis(300));
    let out = start(&pair, "m3", "alter");
    assert_eq!(out["streams_cut"], 1, "{out}");
    tx.send(()).unwrap();
    let (_, got) = old.join().unwrap();
    assert!(
        !matches!(got, Ok(n) if n > 0),
        "the stream opened before the proxy still carried an answer: {got:?}"
    );
    // New streams go through the proxy.
    assert!(client(&pair) > 0);
    let cleared = pair.netfault_ok(&["clear"]);
    assert_eq!(cleared["mitm"]["m3"]["streams"], 1, "{cleared}");
    assert_gone(&pair);
}

/// The other way: a stream the target opened to this host before the proxy came (this host
/// serving) is cut too, and the target's next stream goes through the proxy.
#[test]
fn streams_the_target_opened_before_the_proxy_are_cut_too() {
    if !can_run() {
        return;
    }
    let pair = NetPair::new();
    // The server is in A (where the proxy goes); the target B connects to it.
    let ip_a = pair.ip_a;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    in_ns(&pair.ns_a, move || {
        let l = TcpListener::bind(SocketAddrV4::new(ip_a, PORT)).unwrap();
        ready_tx.send(()).unwrap();
        for s in l.incoming().take(2).flatten() {
            std::thread::spawn(move || serve_plain(s));
        }
    });
    ready_rx.recv().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let old = in_ns(&pair.ns_b, move || {
        let mut s = TcpStream::connect(SocketAddrV4::new(ip_a, PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"before").unwrap();
        let mut buf = [0u8; 200];
        s.read_exact(&mut buf).unwrap();
        rx.recv().unwrap();
        let _ = s.write_all(b"after");
        s.read(&mut buf).map_err(|e| e.kind())
    });
    std::thread::sleep(Duration::from_millis(300));
    start(&pair, "m4", "alter");
    tx.send(()).unwrap();
    let got = old.join().unwrap();
    assert!(
        !matches!(got, Ok(n) if n > 0),
        "the stream the target opened before the proxy still carried an answer: {got:?}"
    );
    let new = in_ns(&pair.ns_b, move || {
        let mut s = TcpStream::connect(SocketAddrV4::new(ip_a, PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"through the proxy").unwrap();
        let mut buf = [0u8; 200];
        s.read(&mut buf).unwrap_or(0)
    })
    .join()
    .unwrap();
    assert!(new > 0, "the new stream was not answered");
    let t = pair.netfault_ok(&["mitm", "stop", "--id", "m4"])["final"].clone();
    assert_eq!(t["streams"], 1, "the target's new stream went through the proxy: {t}");
    assert_gone(&pair);
}
