//! The man in the middle (`netfault mitm`): the pure parts.
//!
//! A TCP proxy is put on every stream of one link (both ways: this peer connecting to the target,
//! and the target connecting to this peer) by NAT redirection. It passes each stream untouched
//! until the stream is [`MitmSpec::after_ms`] old (past any handshake), then does one thing, once,
//! to the next message the connecting side sends ([`Mode`]): alters a byte of it, drops it, or
//! sends the message before it again in its place. From then on it counts what the other side
//! sends back. A daemon that authenticates its streams (TLS) answers with an alert and a close,
//! a few dozen bytes at most; one that does not answers the forged request ([`Outcome::answered`]).
//!
//! Here: the modes, the message framing, the act itself, the verdict of one stream, the tally the
//! proxy writes, and its iptables rules as data. The binary's `proxy` module moves the bytes.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the proxy does to the one message it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Flip one bit in the middle of the message's payload and pass it on.
    Alter,
    /// Do not pass the message on (the streams after it still flow).
    Drop,
    /// Send the message before it (already delivered once) in its place: an old message replayed.
    Replay,
}

impl Mode {
    pub const ALL: &'static str = "alter, drop, replay";

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "alter" => Some(Mode::Alter),
            "drop" => Some(Mode::Drop),
            "replay" => Some(Mode::Replay),
            _ => None,
        }
    }
}

/// One man in the middle, as `netfault mitm start` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MitmSpec {
    pub id: String,
    /// The other end of the link: streams to these addresses' `port`, and from them to ours.
    pub targets: Vec<Ipv4Addr>,
    /// The daemon's sync port (the same on both ends).
    pub port: u16,
    pub mode: Mode,
    /// A stream is acted on once it is this old (default [`AFTER_MS`]): handshakes pass untouched.
    #[serde(default = "after_default")]
    pub after_ms: u64,
}

/// Default of [`MitmSpec::after_ms`]: a TLS handshake on a busy 2-core host takes well under this.
pub const AFTER_MS: u64 = 500;

fn after_default() -> u64 {
    AFTER_MS
}

/// Bytes the answering side may still send after the act without having taken the forged
/// message: a TLS 1.3 alert record is 24 bytes, and a close_notify another 24.
pub const ANSWER_BYTES: u64 = 64;

/// How long after the act a stream that stays open is watched before it is judged.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Largest TLS record: 2^14 bytes of plaintext plus 256 of expansion, plus its 5-byte header.
const TLS_RECORD_MAX: usize = (1 << 14) + 256 + 5;

/// Splits what the connecting side sends into messages: whole TLS records when the stream opens
/// like a TLS handshake (content type 22, version 3.x), else each read as it came.
#[derive(Debug, Default)]
pub struct Framer {
    tls: Option<bool>,
    buf: Vec<u8>,
}

impl Framer {
    /// Takes the next bytes read; returns the messages now complete.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        if self.tls.is_none() {
            if self.buf.len() < 2 {
                return vec![];
            }
            self.tls = Some(self.buf[0] == 0x16 && self.buf[1] == 0x03);
        }
        if self.tls == Some(false) {
            return vec![std::mem::take(&mut self.buf)];
        }
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 5 {
                break;
            }
            let len = 5 + u16::from_be_bytes([self.buf[3], self.buf[4]]) as usize;
            if len > TLS_RECORD_MAX {
                // Not TLS after all (or broken): pass the rest through as it comes.
                self.tls = Some(false);
                out.push(std::mem::take(&mut self.buf));
                break;
            }
            if self.buf.len() < len {
                break;
            }
            out.push(self.buf.drain(..len).collect());
        }
        out
    }

    /// Whether the stream is TLS (`None` until its first two bytes).
    pub fn is_tls(&self) -> Option<bool> {
        self.tls
    }
}

/// The bytes sent instead of `msg` (`previous` is the message before it on the same stream).
/// A TLS record keeps its 5-byte header: the alteration lands in the encrypted payload.
pub fn act(mode: Mode, msg: &[u8], previous: Option<&[u8]>, tls: bool) -> Vec<u8> {
    match mode {
        Mode::Alter => {
            let mut out = msg.to_vec();
            let head = if tls { 5.min(out.len()) } else { 0 };
            if out.len() > head {
                let i = head + (out.len() - head) / 2;
                out[i] ^= 0x01;
            }
            out
        }
        Mode::Drop => Vec::new(),
        // Nothing before it: a replay of nothing is a drop.
        Mode::Replay => previous.map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

/// How one acted-on stream ended, as far as the proxy saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The stream's original destination (`ip:port`).
    pub dst: String,
    pub tls: bool,
    /// The stream's age when the proxy acted.
    pub acted_after_ms: u64,
    /// Bytes the answering side sent after the act.
    pub back_bytes: u64,
    /// Who closed first after the act: `server`, `client`, or `open` (still open when judged).
    pub closed_by: String,
    /// True when more than [`ANSWER_BYTES`] came back: the forged message was taken.
    pub answered: bool,
}

impl Outcome {
    pub fn judge(dst: String, tls: bool, acted_after_ms: u64, back_bytes: u64, closed_by: &str) -> Outcome {
        Outcome {
            dst,
            tls,
            acted_after_ms,
            back_bytes,
            closed_by: closed_by.into(),
            answered: back_bytes > ANSWER_BYTES,
        }
    }
}

/// Streams kept as evidence in the tally (answered ones are never pushed out by refused ones).
pub const RECENT_MAX: usize = 20;

/// What the proxy has done, written to `<state>/mitm-<id>.counters.json` after every stream it
/// judged and when it stops.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub ready: bool,
    pub pid: u32,
    pub listen_port: u16,
    pub mode: Option<Mode>,
    /// Streams that went through the proxy.
    pub streams: u64,
    /// Streams that closed before the proxy acted on them.
    pub passed: u64,
    pub acted: u64,
    /// Acted-on streams the answering side did not answer.
    pub refused: u64,
    /// Acted-on streams it answered: the forgery was taken.
    pub answered: u64,
    /// Streams the proxy could not open (no original destination, upstream unreachable).
    pub errors: u64,
    pub last_error: Option<String>,
    /// Up to [`RECENT_MAX`] judged streams, answered ones first.
    pub recent: Vec<Outcome>,
    pub updated_unix_ms: u64,
}

impl Tally {
    pub fn record(&mut self, o: Outcome) {
        if o.answered {
            self.answered += 1;
        } else {
            self.refused += 1;
        }
        if self.recent.len() >= RECENT_MAX {
            // Push out the oldest refused stream; once all are answered ones, keep the first.
            match self.recent.iter().position(|r| !r.answered) {
                Some(i) => {
                    self.recent.remove(i);
                }
                None => return,
            }
        }
        self.recent.push(o);
    }
}

/// The packet mark on the proxy's own upstream streams, so that its redirection skips them (the
/// upper half; netfault's packet engines own the lower 16 bits and 0x5ecf for duplicates).
pub const MARK: u32 = 0x5ec7_0000;
pub const MARK_MASK: u32 = 0xffff_0000;

/// One iptables rule of a man in the middle: its table, chain and match/target arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MitmRule {
    pub table: String,
    pub chain: String,
    pub args: Vec<String>,
}

impl MitmRule {
    fn argv(&self, op: &str) -> Vec<String> {
        let mut v = vec![
            "-w".into(),
            "-t".into(),
            self.table.clone(),
            op.into(),
            self.chain.clone(),
        ];
        v.extend(self.args.iter().cloned());
        v
    }
    pub fn append(&self) -> Vec<String> {
        self.argv("-A")
    }
    pub fn delete(&self) -> Vec<String> {
        self.argv("-D")
    }
}

/// The rules that put the proxy listening on `listen_port` on every stream between this host and
/// `spec.targets` on `spec.port`, both ways, and cut the streams that were open before (their
/// next packet gets a reset, so they reconnect through the proxy). The proxy's own streams carry
/// [`MARK`] and are left alone.
pub fn rules(spec: &MitmSpec, listen_port: u16) -> Vec<MitmRule> {
    let comment = format!("netfault-mitm:{}", spec.id);
    let port = spec.port.to_string();
    let lport = listen_port.to_string();
    let not_ours = format!("{MARK:#x}/{MARK_MASK:#x}");
    let mut out = Vec::new();
    let rule = |table: &str, chain: &str, matches: &[String], target: &[&str]| MitmRule {
        table: table.into(),
        chain: chain.into(),
        args: matches
            .iter()
            .cloned()
            .chain(target.iter().map(|a| a.to_string()))
            .collect(),
    };
    let redirect = ["-j", "REDIRECT", "--to-ports", &lport];
    // Streams opened before the proxy came: their next packet is refused with a reset (new ones
    // are redirected before the filter table sees them, so these rules never match them).
    let reset = ["-j", "REJECT", "--reject-with", "tcp-reset"];
    for t in &spec.targets {
        let ip = format!("{t}/32");
        let words = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        // This peer connecting to the target (not the proxy's own streams), and the target
        // connecting to this peer.
        let outbound = words(&[
            "-p",
            "tcp",
            "-d",
            &ip,
            "--dport",
            &port,
            "-m",
            "mark",
            "!",
            "--mark",
            &not_ours,
            "-m",
            "comment",
            "--comment",
            &comment,
        ]);
        let inbound = words(&[
            "-p",
            "tcp",
            "-s",
            &ip,
            "--dport",
            &port,
            "-m",
            "comment",
            "--comment",
            &comment,
        ]);
        out.push(rule("nat", "OUTPUT", &outbound, &redirect));
        out.push(rule("nat", "PREROUTING", &inbound, &redirect));
        out.push(rule("filter", "OUTPUT", &outbound, &reset));
        out.push(rule("filter", "INPUT", &inbound, &reset));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend((body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn tls_streams_are_cut_into_whole_records_across_reads() {
        let mut f = Framer::default();
        let hello = record(0x16, &[1; 40]);
        let data = record(0x17, &[2; 300]);
        let mut stream = hello.clone();
        stream.extend(&data);
        assert!(f.push(&stream[..1]).is_empty(), "one byte says nothing yet");
        assert_eq!(f.push(&stream[1..100]), vec![hello]);
        assert_eq!(f.is_tls(), Some(true));
        assert!(f.push(&stream[100..200]).is_empty(), "half a record waits");
        assert_eq!(f.push(&stream[200..]), vec![data]);
    }

    #[test]
    fn plain_streams_pass_read_by_read() {
        let mut f = Framer::default();
        assert_eq!(
            f.push(b"POST /v1/pull HTTP/1.1\r\n"),
            vec![b"POST /v1/pull HTTP/1.1\r\n".to_vec()]
        );
        assert_eq!(f.is_tls(), Some(false));
        assert_eq!(f.push(b"x"), vec![b"x".to_vec()]);
    }

    #[test]
    fn a_record_longer_than_tls_allows_ends_the_framing() {
        let mut f = Framer::default();
        let mut bogus = vec![0x16, 0x03, 0x01, 0xff, 0xff];
        bogus.extend([0; 10]);
        assert_eq!(f.push(&bogus), vec![bogus.clone()]);
        assert_eq!(f.is_tls(), Some(false));
    }

    #[test]
    fn each_mode_does_its_one_thing() {
        let msg = record(0x17, &[0u8; 10]);
        let altered = act(Mode::Alter, &msg, None, true);
        assert_eq!(&altered[..5], &msg[..5], "the header is kept");
        assert_eq!(altered.iter().zip(&msg).filter(|(a, b)| a != b).count(), 1);
        assert_eq!(altered[5 + 5], 1, "the middle of the payload");
        assert!(act(Mode::Drop, &msg, Some(b"old"), true).is_empty());
        assert_eq!(act(Mode::Replay, &msg, Some(b"old"), true), b"old");
        assert!(act(Mode::Replay, &msg, None, true).is_empty());
        assert_eq!(act(Mode::Alter, b"abc", None, false), b"acc");
    }

    #[test]
    fn an_alert_and_a_close_are_not_an_answer() {
        assert!(!Outcome::judge("a".into(), true, 600, 48, "server").answered);
        assert!(Outcome::judge("a".into(), false, 600, 180, "open").answered);
    }

    #[test]
    fn the_tally_keeps_answered_streams_as_evidence() {
        let mut t = Tally::default();
        t.record(Outcome::judge("x".into(), false, 1, 500, "open"));
        for _ in 0..RECENT_MAX * 2 {
            t.record(Outcome::judge("y".into(), true, 1, 24, "server"));
        }
        assert_eq!((t.answered, t.refused), (1, 2 * RECENT_MAX as u64));
        assert_eq!(t.recent.len(), RECENT_MAX);
        assert!(t.recent[0].answered);
    }

    #[test]
    fn rules_redirect_both_ways_and_cut_old_streams_skipping_the_proxys_own() {
        let spec = MitmSpec {
            id: "m1".into(),
            targets: vec!["10.0.0.3".parse().unwrap()],
            port: 7000,
            mode: Mode::Alter,
            after_ms: AFTER_MS,
        };
        let r = rules(&spec, 40123);
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0].append().join(" "),
            "-w -t nat -A OUTPUT -p tcp -d 10.0.0.3/32 --dport 7000 -m mark ! --mark 0x5ec70000/0xffff0000 \
             -m comment --comment netfault-mitm:m1 -j REDIRECT --to-ports 40123"
        );
        assert_eq!(r[1].chain, "PREROUTING");
        assert!(r[1].args.contains(&"-s".to_string()));
        assert_eq!(r[2].table, "filter");
        assert!(
            r[2].args
                .ends_with(&["REJECT".to_string(), "--reject-with".into(), "tcp-reset".into()])
        );
        assert_eq!(r[3].delete()[3], "-D");
    }
}
