//! The userspace engine: one daemon per fault, bound to one NFQUEUE number.
//!
//! One thread does everything: wait (ppoll) until the queue socket is readable or the next
//! held packet is due, drain the socket (non-blocking), decide each packet with the seeded
//! [`Decider`], hold it in the [`DelayScheduler`], and issue verdicts when due. A single thread
//! is needed anyway: the kernel accepts verdicts only from the socket bound to the queue.
//! On SIGTERM/SIGINT every held packet is released (accepted), never dropped.
//!
//! "Release" means: set this fault's mark bit and return NF_REPEAT, so the packet walks the
//! mangle chain again, skips this fault's rule and meets the next fault that matches it (faults
//! compose). Without a mark bit (`--mark 0`), release is a plain NF_ACCEPT.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use nfq::{Queue, Verdict};
use serde::{Deserialize, Serialize};

use netfault::decide::{Decider, Decision};
use netfault::packet::{self, Ipv4View};
use netfault::rules::DUP_MARK;
use netfault::schedule::{DelayScheduler, Scheduled};
use netfault::spec::FaultSpec;

use crate::sys;

/// Bytes of each packet copied to userspace. Above an Ethernet MTU with room for jumbo
/// frames, small enough that holding thousands of packets stays cheap (each receive buffer is
/// page + copy range). Longer packets pass unmodified (counted in `too_long_to_mangle`).
pub const COPY_RANGE: u16 = 9216;
/// Kernel queue length; with fail-open the kernel accepts packets beyond it.
pub const QUEUE_MAXLEN: u32 = 16_384;

/// What the engine has done, written to `<id>.counters.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub ready: bool,
    pub pid: u32,
    pub queue: u16,
    pub seen: u64,
    pub passed: u64,
    pub delayed: u64,
    pub dropped: u64,
    pub corrupted: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub too_long_to_mangle: u64,
    pub held_now: u64,
    pub held_max: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    pub updated_unix_ms: u64,
}

struct Held {
    msg: nfq::Message,
    duplicate: bool,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Find the netlink socket nfq opened: the crate does not expose it, and we need it to wait
/// with a timeout. It is the one descriptor that appeared across `Queue::open` (the daemon is
/// single-threaded at that point), checked to be an AF_NETLINK socket.
fn queue_fd(before: &[(i32, String)]) -> Result<i32> {
    let new: Vec<i32> = sys::open_fds()
        .into_iter()
        .filter(|fd| !before.contains(fd) && fd.1.starts_with("socket:"))
        .map(|(fd, _)| fd)
        .filter(|fd| {
            let mut dom: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt into a c_int we own.
            unsafe {
                libc::getsockopt(
                    *fd,
                    libc::SOL_SOCKET,
                    libc::SO_DOMAIN,
                    &mut dom as *mut _ as *mut libc::c_void,
                    &mut len,
                ) == 0
                    && dom == libc::AF_NETLINK
            }
        })
        .collect();
    match new.as_slice() {
        [fd] => Ok(*fd),
        other => bail!("expected one new netlink socket after opening the queue, found {other:?}"),
    }
}

/// The engine's mutable state.
struct Engine {
    queue: Queue,
    queue_num: u16,
    decider: Decider,
    sched: DelayScheduler<Held>,
    raw: Option<sys::RawSender>,
    fix_checksum: bool,
    reorder_us: u64,
    mark: u32,
    origin: Instant,
    c: Counters,
    counters_path: PathBuf,
}

impl Engine {
    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    fn error(&mut self, what: String) {
        self.c.errors += 1;
        if self.c.errors <= 5 {
            tracing::warn!("{what}");
        }
        self.c.last_error = Some(what);
    }

    fn handle(&mut self, mut msg: nfq::Message) {
        if self.mark != 0 && msg.get_nfmark() & self.mark != 0 {
            // Already through this fault (the rule should have skipped it): never loop.
            msg.set_verdict(Verdict::Accept);
            if let Err(e) = self.queue.verdict(msg) {
                self.error(format!("verdict: {e}"));
            }
            return;
        }
        self.c.seen += 1;
        let plan = match self.decider.decide() {
            Decision::Drop => {
                self.c.dropped += 1;
                msg.set_verdict(Verdict::Drop);
                if let Err(e) = self.queue.verdict(msg) {
                    self.error(format!("verdict: {e}"));
                }
                return;
            }
            Decision::Pass(p) => p,
        };
        let whole = msg.get_original_len() == msg.get_payload().len();
        let mut duplicate = plan.duplicate && self.raw.is_some();
        if (plan.corrupt.is_some() || duplicate) && !whole {
            self.c.too_long_to_mangle += 1;
            duplicate = false;
        } else if let Some(pick) = plan.corrupt
            && packet::corrupt(msg.get_payload_mut(), pick, self.fix_checksum).is_some()
        {
            self.c.corrupted += 1;
        }
        if plan.reorder {
            self.c.reordered += 1;
        }
        let flow = packet::flow_key(msg.get_payload());
        let now = self.now_us();
        let held = Held { msg, duplicate };
        let reorder = plan.reorder.then_some(self.reorder_us);
        match self.sched.schedule(now, flow, plan.delay_us, reorder, held) {
            Scheduled::Now(h) => self.release(h),
            Scheduled::Held { .. } => {
                self.c.delayed += 1;
                self.c.held_now = self.sched.len() as u64;
                self.c.held_max = self.c.held_max.max(self.c.held_now);
            }
        }
    }

    fn release(&mut self, h: Held) {
        let Held { mut msg, duplicate } = h;
        let copy = duplicate.then(|| msg.get_payload().to_vec());
        if self.mark != 0 {
            msg.set_nfmark(msg.get_nfmark() | self.mark);
            msg.set_verdict(Verdict::Repeat);
        } else {
            msg.set_verdict(Verdict::Accept);
        }
        match self.queue.verdict(msg) {
            Ok(()) => self.c.passed += 1,
            Err(e) => self.error(format!("verdict: {e}")),
        }
        if let (Some(copy), Some(raw)) = (copy, &self.raw) {
            let sent = match Ipv4View::parse(&copy) {
                Some(v) => raw.send(&copy, v.dst).map_err(|e| e.to_string()),
                None => Err("not an IPv4 packet".to_string()),
            };
            match sent {
                Ok(()) => self.c.duplicated += 1,
                Err(e) => self.error(format!("duplicate: {e}")),
            }
        }
    }

    fn release_due(&mut self) {
        let now = self.now_us();
        while let Some(h) = self.sched.pop_due(now) {
            self.release(h);
        }
        self.c.held_now = self.sched.len() as u64;
    }

    fn write_counters(&mut self) {
        self.c.updated_unix_ms = unix_ms();
        self.c.queue = self.queue_num;
        match serde_json::to_vec(&self.c) {
            Ok(j) => {
                if let Err(e) = sys::write_atomic(&self.counters_path, &j) {
                    tracing::warn!("counters: {e:#}");
                }
            }
            Err(e) => tracing::warn!("counters: {e}"),
        }
    }
}

/// Run the engine for `spec` on queue `queue_num` until SIGTERM.
pub fn run(spec: FaultSpec, queue_num: u16, mark: u32, counters_path: PathBuf) -> Result<()> {
    sys::catch_daemon_signals();
    // SAFETY: a plain prctl on this process.
    unsafe {
        // Timer slack defaults to 50 us; held packets should leave when due, not 50 us later.
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    tracing::info!(id = %spec.id, queue = queue_num, seed = spec.seed, "engine starting");
    let before = sys::open_fds();
    let mut queue = Queue::open().context("cannot open an NFQUEUE netlink socket")?;
    let fd = queue_fd(&before)?;
    queue
        .bind(queue_num)
        .with_context(|| format!("cannot bind NFQUEUE {queue_num}"))?;
    queue.set_copy_range(queue_num, COPY_RANGE)?;
    queue.set_queue_max_len(queue_num, QUEUE_MAXLEN)?;
    // If we cannot keep up, the kernel accepts instead of dropping: we never add loss by accident.
    queue.set_fail_open(queue_num, true)?;
    queue.set_nonblocking(true);
    let raw = if spec.duplicate_pct > 0.0 {
        Some(sys::RawSender::open(DUP_MARK)?)
    } else {
        None
    };
    let mut e = Engine {
        queue,
        queue_num,
        decider: Decider::new(&spec),
        sched: DelayScheduler::default(),
        raw,
        fix_checksum: spec.corrupt_fix_checksum,
        reorder_us: (spec.reorder_delay_ms * 1000.0) as u64,
        mark,
        origin: Instant::now(),
        c: Counters {
            ready: true,
            pid: std::process::id(),
            ..Counters::default()
        },
        counters_path,
    };
    e.write_counters();
    let mut last_write = Instant::now();
    while !sys::STOP.load(Ordering::SeqCst) {
        e.release_due();
        let now = e.now_us();
        let wait = e
            .sched
            .next_release()
            .map(|r| Duration::from_micros(r.saturating_sub(now)))
            .unwrap_or(Duration::from_millis(200))
            .min(Duration::from_millis(200));
        if sys::wait_readable(fd, wait) {
            loop {
                match e.queue.recv() {
                    Ok(msg) => {
                        e.handle(msg);
                        // Keep releasing while a burst is drained, so a long burst does not
                        // delay due packets.
                        if e.c.seen.is_multiple_of(64) {
                            e.release_due();
                        }
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => break,
                    Err(err) => {
                        e.error(format!("recv: {err}"));
                        break;
                    }
                }
            }
        }
        // `status` sends SIGUSR1 to get fresh counters.
        if sys::FLUSH.swap(false, Ordering::SeqCst) || last_write.elapsed() >= Duration::from_millis(250) {
            e.write_counters();
            last_write = Instant::now();
        }
    }
    tracing::info!(held = e.sched.len(), "engine stopping: releasing held packets");
    for h in e.sched.drain_all() {
        e.release(h);
    }
    // Packets still in the kernel queue would be dropped when the socket closes: accept them.
    while let Ok(msg) = e.queue.recv() {
        e.c.seen += 1;
        e.release(Held { msg, duplicate: false });
    }
    e.c.held_now = 0;
    e.c.ready = false;
    e.write_counters();
    let _ = e.queue.unbind(queue_num);
    Ok(())
}
