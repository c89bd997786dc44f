//! `netfault clock`: skews the wall clock of running processes, whatever their binary (glibc, musl
//! static, Go), by patching their vDSO through ptrace. The acting part; the code page itself is
//! built by [`netfault::trampoline`], the vDSO read by [`netfault::vdso`].
//!
//! `set` on a process not yet patched: every thread is stopped (PTRACE_SEIZE + PTRACE_INTERRUPT,
//! until `/proc/<pid>/task` lists no thread left running) and, when no thread is inside one of the
//! vDSO's clock functions (else all are let go for a millisecond and stopped again), one thread runs
//! an injected `mmap` (a `syscall` written for a moment at the vDSO's clock_gettime, one
//! single-step); the page is written there through `/proc/<pid>/mem`, the three vDSO entries are
//! overwritten with jumps into it, and every thread is let go. The vDSO is shared by every thread,
//! so threads started later are covered. `set` on a patched process only rewrites the offset (the
//! idle slot, then the index). `clear` puts the vDSO's original bytes back (recorded in the page)
//! and leaves the page mapped, inert, for a later `set` to reuse: a thread may still be returning
//! through it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde_json::{Value, json};

use netfault::trampoline::{self, Offset, PAGE_LEN, PATCH_LEN, VdsoEntries, VdsoEntry};
use netfault::vdso::{self, VdsoClock, VdsoFunction};

/// How many times to stop a process before giving up on finding no thread in a clock function.
const ATTEMPTS: u32 = 200;

/// A target's memory, through `/proc/<pid>/mem` (which may write read-only pages: FOLL_FORCE).
struct Mem(File);

impl Mem {
    fn open(pid: i32) -> Result<Mem> {
        let f = File::options()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .with_context(|| format!("opening /proc/{pid}/mem (needs CAP_SYS_PTRACE)"))?;
        Ok(Mem(f))
    }

    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        self.0
            .read_exact_at(&mut b, addr)
            .with_context(|| format!("reading {len} bytes at {addr:#x}"))?;
        Ok(b)
    }

    fn write(&self, addr: u64, bytes: &[u8]) -> Result<()> {
        self.0
            .write_all_at(bytes, addr)
            .with_context(|| format!("writing {} bytes at {addr:#x}", bytes.len()))
    }
}

/// How far [`Stopped::run`] lets a thread go.
#[derive(Clone, Copy)]
enum Step {
    One,
    UntilTrap,
}

/// Every thread of a process, stopped under our ptrace; let go (with any signal held back) on drop.
struct Stopped {
    tids: Vec<Pid>,
    held: Vec<(Pid, Signal)>,
}

impl Stopped {
    /// Stops every thread of `pid` (only the leader with `leader_only`).
    fn attach(pid: i32, leader_only: bool) -> Result<Stopped> {
        let mut s = Stopped {
            tids: Vec::new(),
            held: Vec::new(),
        };
        loop {
            let tids = if leader_only { vec![pid] } else { threads(pid)? };
            let new: Vec<Pid> = tids
                .into_iter()
                .map(Pid::from_raw)
                .filter(|t| !s.tids.contains(t))
                .collect();
            if new.is_empty() {
                return Ok(s);
            }
            for t in new {
                match ptrace::seize(t, ptrace::Options::empty()) {
                    Ok(()) => {}
                    Err(Errno::ESRCH) => continue,
                    Err(e) => bail!(
                        "ptrace refused on {t} ({e}): the agent needs CAP_SYS_PTRACE in the peer's \
PID namespace, and no seccomp profile or LSM forbidding ptrace"
                    ),
                }
                s.tids.push(t);
                match ptrace::interrupt(t) {
                    Ok(()) => s.wait_stopped(t)?,
                    // It exited between the two calls.
                    Err(Errno::ESRCH) => s.tids.retain(|x| *x != t),
                    Err(e) => bail!("PTRACE_INTERRUPT {t}: {e}"),
                }
            }
        }
    }

    /// Waits for `t`'s interrupt stop; signals arriving first are delivered on the way.
    fn wait_stopped(&mut self, t: Pid) -> Result<()> {
        loop {
            match waitpid(t, Some(WaitPidFlag::__WALL)).with_context(|| format!("waitpid {t}"))? {
                WaitStatus::PtraceEvent(..) => return Ok(()),
                WaitStatus::Stopped(_, sig) => ptrace::cont(t, Some(sig))?,
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                    self.tids.retain(|x| *x != t);
                    return Ok(());
                }
                _ => {}
            }
        }
    }

    /// Every stopped thread's instruction pointer.
    fn ips(&self) -> Result<Vec<u64>> {
        self.tids
            .iter()
            .map(|t| Ok(ptrace::getregs(*t).with_context(|| format!("PTRACE_GETREGS {t}"))?.rip))
            .collect()
    }

    /// Runs one system call in thread `t` through the `syscall` instruction at `at`.
    fn syscall(&mut self, t: Pid, at: u64, nr: u64, args: [u64; 6]) -> Result<i64> {
        self.run(
            t,
            |regs| {
                regs.rip = at;
                regs.rax = nr;
                (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9) =
                    (args[0], args[1], args[2], args[3], args[4], args[5]);
            },
            Step::One,
        )
        .map(|regs| regs.rax as i64)
    }

    /// Runs thread `t` from registers set by `set` (from its own, with no syscall restart pending)
    /// for one instruction, or until it traps (`int3`); returns the registers then, and puts the
    /// thread's own back. Signals arriving meanwhile are held and delivered when we let go.
    fn run(
        &mut self,
        t: Pid,
        set: impl FnOnce(&mut libc::user_regs_struct),
        how: Step,
    ) -> Result<libc::user_regs_struct> {
        let saved = ptrace::getregs(t)?;
        let mut regs = saved;
        regs.orig_rax = u64::MAX; // no syscall restart for the interrupted call while we run ours
        set(&mut regs);
        ptrace::setregs(t, regs)?;
        let mut signal = None;
        let outcome = loop {
            match how {
                Step::One => ptrace::step(t, None)?,
                Step::UntilTrap => ptrace::cont(t, None)?,
            }
            match waitpid(t, Some(WaitPidFlag::__WALL))? {
                WaitStatus::Stopped(_, Signal::SIGTRAP) => break Ok(ptrace::getregs(t)?),
                WaitStatus::Stopped(_, sig) => signal = Some(sig),
                WaitStatus::PtraceEvent(..) => {}
                other => break Err(anyhow!("thread {t} ended while running injected code: {other:?}")),
            }
        };
        ptrace::setregs(t, saved)?;
        if let Some(sig) = signal {
            self.held.push((t, sig));
        }
        outcome
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for t in &self.tids {
            let sig = self.held.iter().find(|(x, _)| x == t).map(|(_, s)| *s);
            if let Err(e) = ptrace::detach(*t, sig) {
                tracing::warn!("detaching {t}: {e}");
            }
        }
    }
}

/// The thread ids of `pid`.
fn threads(pid: i32) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("no process {pid}"))? {
        if let Some(t) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(t);
        }
    }
    Ok(out)
}

/// Stops every thread of `pid` at a moment when none is inside one of `funcs`.
fn stop_outside(pid: i32, funcs: &[VdsoFunction]) -> Result<Stopped> {
    for _ in 0..ATTEMPTS {
        let stopped = Stopped::attach(pid, false)?;
        if !stopped.ips()?.iter().any(|ip| funcs.iter().any(|f| f.contains(*ip))) {
            return Ok(stopped);
        }
        drop(stopped);
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!("process {pid}: a thread was inside a vDSO clock function at each of {ATTEMPTS} stops")
}

/// The process's vDSO, read from its memory.
struct Vdso {
    start: u64,
    image: Vec<u8>,
    clock: VdsoClock,
}

impl Vdso {
    fn read(pid: i32, mem: &Mem) -> Result<Vdso> {
        if !cfg!(target_arch = "x86_64") {
            bail!("clock skew by vDSO patching is implemented for x86_64 only");
        }
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .with_context(|| format!("reading /proc/{pid}/maps"))?;
        let (start, end) = vdso::vdso_range(&maps).ok_or_else(|| anyhow!("process {pid} has no vDSO"))?;
        let image = mem.read(start, (end - start) as usize)?;
        let clock = vdso::clock_functions(&image, start)?;
        Ok(Vdso { start, image, clock })
    }

    fn code(&self, f: VdsoFunction, len: usize) -> Vec<u8> {
        let at = (f.addr - self.start) as usize;
        self.image[at..(at + len).min(self.image.len())].to_vec()
    }

    /// The page this vDSO jumps into, if it was patched by us.
    /// The clock functions' addresses and first bytes, as a page is built for them.
    fn entries(&self) -> VdsoEntries {
        let entry = |f: VdsoFunction| VdsoEntry {
            addr: f.addr,
            code: self.code(f, 32),
        };
        VdsoEntries {
            clock_gettime: entry(self.clock.clock_gettime),
            gettimeofday: entry(self.clock.gettimeofday),
            time: entry(self.clock.time),
        }
    }

    fn page(&self, mem: &Mem) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(target) = trampoline::patched_target(&self.code(self.clock.clock_gettime, PATCH_LEN)) else {
            return Ok(None);
        };
        let base = target & !(PAGE_LEN as u64 - 1);
        let page = mem.read(base, PAGE_LEN)?;
        let magic = &page[trampoline::DATA as usize..trampoline::DATA as usize + 8];
        if magic != trampoline::MAGIC.to_le_bytes() {
            bail!("the vDSO's clock_gettime jumps to {target:#x}, which is not our page");
        }
        Ok(Some((base, page)))
    }
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Sets `pid`'s wall-clock offset, patching its vDSO first if needed.
pub fn set(pid: i32, offset_ns: i64) -> Result<Value> {
    let t0 = Instant::now();
    let mem = Mem::open(pid)?;
    let vdso = Vdso::read(pid, &mem)?;
    let offset = Offset::from_nanos(offset_ns);
    if let Some((base, page)) = vdso.page(&mem)? {
        // Only the offset changes. Being the tracer while writing keeps /proc/<pid>/mem writable
        // on kernels with proc_mem.force_override=ptrace.
        let _leader = Stopped::attach(pid, true)?;
        for (at, bytes) in trampoline::offset_writes(&page, offset).expect("a full page") {
            mem.write(base + at, &bytes)?;
        }
        return Ok(
            json!({"pid": pid, "comm": comm(pid), "patched": "already", "page": format!("{base:#x}"),
            "offset_ns": offset.as_nanos(), "apply_us": t0.elapsed().as_micros() as u64}),
        );
    }
    let entries = vdso.entries();
    if let Some((base, mut page)) = idle_page(pid, &mem, &entries)? {
        // Left by a `clear`: the same code for the same vDSO; only the offset and the jumps.
        let stopped = stop_outside(pid, &vdso.clock.all())?;
        for (at, bytes) in trampoline::offset_writes(&page.bytes, offset).expect("a full page") {
            mem.write(base + at, &bytes)?;
            page.bytes[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
        }
        for (entry, bytes) in page.patches(&entries) {
            mem.write(entry, &bytes)?;
        }
        let threads = stopped.tids.len();
        drop(stopped);
        return Ok(
            json!({"pid": pid, "comm": comm(pid), "patched": "again", "page": format!("{base:#x}"),
            "threads": threads, "offset_ns": offset.as_nanos(), "apply_us": t0.elapsed().as_micros() as u64}),
        );
    }
    let mut stopped = stop_outside(pid, &vdso.clock.all())?;
    let leader = Pid::from_raw(pid);
    let leader = if stopped.tids.contains(&leader) {
        leader
    } else {
        stopped.tids[0]
    };
    // A `syscall` instruction for a moment at clock_gettime's entry: no thread is there.
    let cgt = vdso.clock.clock_gettime;
    let original = vdso.code(cgt, 2);
    mem.write(cgt.addr, &[0x0f, 0x05])?;
    let mapped = stopped.syscall(
        leader,
        cgt.addr,
        libc::SYS_mmap as u64,
        [
            0,
            PAGE_LEN as u64,
            (libc::PROT_READ | libc::PROT_EXEC) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
            u64::MAX,
            0,
        ],
    );
    mem.write(cgt.addr, &original)?;
    let base = mapped?;
    if !(0..0x7fff_ffff_f000).contains(&base) {
        bail!(
            "the injected mmap failed in process {pid}: {}",
            Errno::from_raw(-base as i32)
        );
    }
    let base = base as u64;
    let mut page = trampoline::build(base, &entries)?;
    for (at, bytes) in trampoline::offset_writes(&page.bytes, offset).expect("a full page") {
        page.bytes[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
    }
    mem.write(base, &page.bytes)?;
    for (entry, bytes) in page.patches(&entries) {
        mem.write(entry, &bytes)?;
    }
    let threads = stopped.tids.len();
    drop(stopped);
    Ok(
        json!({"pid": pid, "comm": comm(pid), "patched": "now", "page": format!("{base:#x}"),
        "threads": threads, "displaced": page.displaced,
        "offset_ns": offset.as_nanos(), "apply_us": t0.elapsed().as_micros() as u64}),
    )
}

/// A page of ours that a `clear` left in `pid`, built for these entries: its code is what
/// [`trampoline::build`] makes for its address (checked byte for byte). With its bytes as now.
fn idle_page(pid: i32, mem: &Mem, entries: &VdsoEntries) -> Result<Option<(u64, trampoline::Page)>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    for base in vdso::anonymous_code_pages(&maps, PAGE_LEN as u64) {
        let Ok(bytes) = mem.read(base, PAGE_LEN) else { continue };
        if bytes[trampoline::DATA as usize..trampoline::DATA as usize + 8] != trampoline::MAGIC.to_le_bytes() {
            continue;
        }
        let Ok(built) = trampoline::build(base, entries) else {
            continue;
        };
        if built.bytes[..trampoline::DATA as usize] == bytes[..trampoline::DATA as usize] {
            return Ok(Some((base, trampoline::Page { bytes, ..built })));
        }
    }
    Ok(None)
}

/// Removes the skew: the vDSO's original bytes back.
pub fn clear(pid: i32) -> Result<Value> {
    let t0 = Instant::now();
    let mem = Mem::open(pid)?;
    let vdso = Vdso::read(pid, &mem)?;
    let Some((base, page)) = vdso.page(&mem)? else {
        return Ok(json!({"pid": pid, "comm": comm(pid), "patched": false}));
    };
    let stopped = stop_outside(pid, &vdso.clock.all())?;
    for record in trampoline::records(&page) {
        mem.write(record.entry, &record.original)?;
    }
    // Inert, and at zero for a thread still returning through it.
    for (at, bytes) in trampoline::offset_writes(&page, Offset::from_nanos(0)).expect("a full page") {
        mem.write(base + at, &bytes)?;
    }
    drop(stopped);
    Ok(json!({"pid": pid, "comm": comm(pid), "patched": false, "cleared": true,
        "apply_us": t0.elapsed().as_micros() as u64}))
}

fn realtime_ns() -> i128 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as i128
}

/// The target's own wall clock against ours: its leader calls its (patched) vDSO clock_gettime,
/// on a scratch page mapped for the call and unmapped after it, while the other threads run on.
/// `measured_ns` is its clock minus the midpoint of ours around the call (a ptrace round trip,
/// tens of µs).
///
/// After a `clear` the page is still there, unhooked: the call then reaches the vDSO's own code, and
/// the measurement shows the skew is gone (`patched: false` with `measured_ns`). A process never
/// patched has no page to call from: nothing is measured.
pub fn measure(pid: i32) -> Result<Value> {
    let mem = Mem::open(pid)?;
    let vdso = Vdso::read(pid, &mem)?;
    let (base, page, patched) = match vdso.page(&mem)? {
        Some((base, page)) => (base, page, true),
        None => match idle_page(pid, &mem, &vdso.entries())? {
            Some((base, page)) => (base, page.bytes, false),
            None => return Ok(json!({"pid": pid, "comm": comm(pid), "patched": false})),
        },
    };
    let mut stopped = Stopped::attach(pid, true)?;
    let t = *stopped.tids.first().ok_or_else(|| anyhow!("process {pid} is gone"))?;
    let trap = base + trampoline::SYSCALL_TRAP;
    let mmap = [
        0,
        PAGE_LEN as u64,
        (libc::PROT_READ | libc::PROT_WRITE) as u64,
        (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
        u64::MAX,
        0,
    ];
    let scratch = stopped.syscall(t, trap, libc::SYS_mmap as u64, mmap)?;
    if !(0..0x7fff_ffff_f000).contains(&scratch) {
        bail!(
            "the injected mmap failed in process {pid}: {}",
            Errno::from_raw(-scratch as i32)
        );
    }
    let scratch = scratch as u64;
    // The scratch page is the call's stack (top, 8 mod 16 as at a function's entry, holding the
    // return address: our int3) and holds the timespec at its start.
    let sp = scratch + PAGE_LEN as u64 - 24;
    let called = mem.write(sp, &(base + trampoline::TRAP).to_le_bytes()).and_then(|()| {
        let before = realtime_ns();
        let regs = stopped.run(
            t,
            |r| {
                (r.rip, r.rsp, r.rdi, r.rsi) = (vdso.clock.clock_gettime.addr, sp, 0, scratch);
            },
            Step::UntilTrap,
        )?;
        let after = realtime_ns();
        let ts = mem.read(scratch, 16)?;
        let sec = i64::from_le_bytes(ts[..8].try_into().expect("8 bytes")) as i128;
        let nsec = i64::from_le_bytes(ts[8..].try_into().expect("8 bytes")) as i128;
        if regs.rax != 0 {
            bail!("clock_gettime in process {pid} returned {}", regs.rax as i64);
        }
        Ok((sec * 1_000_000_000 + nsec - (before + after) / 2, after - before))
    });
    stopped.syscall(t, trap, libc::SYS_munmap as u64, [scratch, PAGE_LEN as u64, 0, 0, 0, 0])?;
    let (measured, window) = called?;
    Ok(json!({"pid": pid, "comm": comm(pid), "patched": patched,
        "offset_ns": trampoline::current_offset(&page).map(Offset::as_nanos).filter(|_| patched),
        "measured_ns": measured as i64, "window_ns": window as i64}))
}

/// Whether `pid` is skewed, and by how much; fails, with the reason, where a skew could not be set
/// (no ptrace: the leader is stopped and let go at once to prove it; no vDSO; not x86_64).
pub fn status(pid: i32) -> Result<Value> {
    let mem = Mem::open(pid)?;
    let vdso = Vdso::read(pid, &mem)?;
    drop(Stopped::attach(pid, true)?);
    Ok(match vdso.page(&mem)? {
        Some((base, page)) => json!({"pid": pid, "comm": comm(pid), "patched": true,
            "page": format!("{base:#x}"),
            "offset_ns": trampoline::current_offset(&page).map(Offset::as_nanos)}),
        None => json!({"pid": pid, "comm": comm(pid), "patched": false}),
    })
}

/// The processes to act on: `pids`, or else every process with a vDSO that is not in this
/// process's mount namespace (in a fault agent sharing the peer's PID namespace: the peer's).
pub fn targets(pids: &[i32]) -> Result<Vec<i32>> {
    if !pids.is_empty() {
        return Ok(pids.to_vec());
    }
    let own = std::fs::read_link("/proc/self/ns/mnt")?;
    let mut out = Vec::new();
    let mut denied = 0;
    for e in std::fs::read_dir("/proc")? {
        let Some(pid) = e?.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let ns = match std::fs::read_link(format!("/proc/{pid}/ns/mnt")) {
            Ok(ns) => ns,
            Err(e) => {
                denied += usize::from(e.kind() == std::io::ErrorKind::PermissionDenied);
                continue;
            }
        };
        let has_vdso =
            std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| vdso::vdso_range(&m).is_some());
        if ns != own && has_vdso {
            out.push(pid);
        }
    }
    out.sort_unstable();
    if out.is_empty() && denied > 0 {
        bail!("{denied} processes cannot be inspected from here: the agent needs CAP_SYS_PTRACE");
    }
    if out.is_empty() {
        bail!("no process outside this agent's mount namespace: is the agent in the peer's PID namespace?");
    }
    Ok(out)
}
