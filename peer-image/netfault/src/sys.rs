//! Thin wrappers over the outside world: running iptables/tc/ip, processes, files.

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Run a program, returning stdout; the error carries the command line and stderr.
pub fn run(prog: &str, args: &[String]) -> Result<String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {prog}"))?;
    if !out.status.success() {
        bail!(
            "`{prog} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run_str(prog: &str, args: &[&str]) -> Result<String> {
    let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run(prog, &v)
}

/// Is a process with this pid alive and a netfault engine daemon?
pub fn is_engine_alive(pid: u32) -> bool {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => {
            let s = String::from_utf8_lossy(&cmd);
            // A zombie has an empty cmdline: count it as gone.
            s.contains("netfault") && s.contains("daemon")
        }
        Err(_) => false,
    }
}

/// Stop an engine daemon: SIGTERM (it releases held packets), then SIGKILL after `grace`.
pub fn stop_engine(pid: u32, grace: Duration) {
    if !is_engine_alive(pid) {
        return;
    }
    // SAFETY: plain syscall on a pid we checked belongs to a netfault daemon.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        reap(pid);
        if !is_engine_alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(20));
    reap(pid);
}

fn reap(pid: u32) {
    // Only succeeds when the daemon is our own child (tests); harmless otherwise.
    unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
}

/// Write a file atomically (temp file + rename), so readers never see half a JSON document.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).with_context(|| format!("cannot write {tmp:?}"))?;
    f.write_all(data)?;
    drop(f);
    fs::rename(&tmp, path).with_context(|| format!("cannot rename into {path:?}"))?;
    Ok(())
}

/// An exclusive lock on the state directory, held until dropped (serialises CLI calls).
pub struct StateLock(#[allow(dead_code)] OwnedFd);

impl StateLock {
    pub fn take(dir: &Path) -> Result<StateLock> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {dir:?}"))?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("cannot lock {dir:?}: {}", std::io::Error::last_os_error());
        }
        Ok(StateLock(OwnedFd::from(f)))
    }
}

/// The open file descriptors of this process with what they point to (`socket:[inode]`...),
/// so a number reused between two listings is still told apart.
pub fn open_fds() -> Vec<(i32, String)> {
    let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    fds.into_iter()
        .filter_map(|fd| {
            let target = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// A raw IPv4 socket that sends whole IP packets (IP_HDRINCL), marked so our own NFQUEUE
/// rules let them through.
pub struct RawSender(OwnedFd);

impl RawSender {
    pub fn open(mark: u32) -> Result<RawSender> {
        // SAFETY: socket(2) and setsockopt(2) with valid arguments; the fd is owned at once.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
            if fd < 0 {
                bail!("raw socket: {}", std::io::Error::last_os_error());
            }
            let owned = OwnedFd::from_raw_fd(fd);
            let m = mark as libc::c_int;
            if libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_MARK,
                &m as *const _ as *const libc::c_void,
                std::mem::size_of_val(&m) as libc::socklen_t,
            ) != 0
            {
                bail!("SO_MARK: {}", std::io::Error::last_os_error());
            }
            Ok(RawSender(owned))
        }
    }

    /// Send a complete IPv4 packet to its destination address.
    pub fn send(&self, packet: &[u8], dst: std::net::Ipv4Addr) -> std::io::Result<()> {
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst.octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: buffer and address are valid for the duration of the call.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                packet.as_ptr() as *const libc::c_void,
                packet.len(),
                0,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of_val(&addr) as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Wait until `fd` is readable or `timeout` passes (microsecond resolution, unlike poll(2)).
/// Returns false on timeout or signal.
pub fn wait_readable(fd: i32, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask change.
    let n = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    n > 0
}

/// Interfaces of this namespace except loopback and netfault's own ifb/probe devices.
pub fn non_loopback_interfaces() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n != "lo" && !n.starts_with("nfi") && !n.starts_with("nfprobe"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The interface the kernel routes `ip` through.
pub fn route_dev(ip: std::net::Ipv4Addr) -> Result<String> {
    let out = run_str("ip", &["-o", "route", "get", &ip.to_string()])?;
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "dev" {
            return words
                .next()
                .map(str::to_string)
                .context("`ip route get` printed `dev` without a name");
        }
    }
    bail!("no route to {ip}: {out}")
}

/// Set by SIGTERM or SIGINT: a daemon (packet engine, proxy) finishes up and exits.
pub static STOP: AtomicBool = AtomicBool::new(false);
/// Set by SIGUSR1: a daemon writes its counters now (`status` asks for fresh ones).
pub static FLUSH: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGUSR1 {
        FLUSH.store(true, Ordering::SeqCst);
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
}

/// A daemon's signals: TERM and INT set [`STOP`], USR1 sets [`FLUSH`]; a hang-up and a closed
/// pipe are ignored (the `docker exec` that started it may be gone).
pub fn catch_daemon_signals() {
    // SAFETY: installing an async-signal-safe handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGUSR1, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Starts this netfault binary again as a detached daemon (`args` after the binary; its stderr to
/// `log`), and waits up to 5 s until `ready(pid)` says it is up. `what` names it in errors.
pub fn spawn_daemon(args: &[String], log: &Path, what: &str, ready: impl Fn(u32) -> bool) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find the netfault binary")?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log)?)
        // Its own process group: a Ctrl-C or hang-up of `docker exec` must not reach it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start the {what}"))?;
    let pid = child.id();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if ready(pid) {
            // Dropping a Child neither kills nor waits: the daemon lives on, and whoever
            // inherits it (the container's PID 1) reaps it.
            drop(child);
            return Ok(pid);
        }
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(log).unwrap_or_default();
            bail!("the {what} exited ({status}): {}", log.trim());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("the {what} did not become ready within 5 s (log: {log:?})")
}
