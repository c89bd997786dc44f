//! The man in the middle's proxy daemon (`netfault mitm start` spawns it; see [`netfault::mitm`]):
//! accepts the streams the NAT rules redirect to it, opens each one's original destination with
//! [`MARK`] on its socket (so it is not redirected again), pumps both ways on two threads, acts on
//! one message per stream, and judges each acted-on stream when it closes or [`WINDOW`] after
//! the act. Its tally is written after every judged stream, on SIGUSR1, and when it stops
//! (SIGTERM: open streams are judged on what they showed so far).

use std::io::{Read, Write};
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use netfault::mitm::{Framer, MARK, MitmSpec, Outcome, Tally, WINDOW, act};

use crate::engine::unix_ms;
use crate::sys;

/// One stream, shared by its two pump threads and the judge.
struct Stream {
    dst: String,
    opened: Instant,
    tls: bool,
    acted: Option<Instant>,
    back_bytes: u64,
    closed_by: Option<&'static str>,
    judged: bool,
}

impl Stream {
    /// The verdict, once there is one to give: closed after the act, or watched long enough.
    fn judge(&mut self, now: Instant, force: bool) -> Option<Outcome> {
        let acted = self.acted?;
        if self.judged || !(force || self.closed_by.is_some() || now.duration_since(acted) >= WINDOW) {
            return None;
        }
        self.judged = true;
        Some(Outcome::judge(
            self.dst.clone(),
            self.tls,
            acted.duration_since(self.opened).as_millis() as u64,
            self.back_bytes,
            self.closed_by.unwrap_or("open"),
        ))
    }
}

struct Shared {
    spec: MitmSpec,
    /// Fixed upstream (tests); otherwise each stream's original destination.
    upstream: Option<SocketAddr>,
    tally: Mutex<Tally>,
    streams: Mutex<Vec<Arc<Mutex<Stream>>>>,
    counters: PathBuf,
}

impl Shared {
    fn write(&self) {
        let mut t = self.tally.lock().unwrap();
        t.updated_unix_ms = unix_ms();
        if let Ok(b) = serde_json::to_vec_pretty(&*t) {
            let _ = sys::write_atomic(&self.counters, &b);
        }
    }

    fn error(&self, e: &anyhow::Error) {
        let mut t = self.tally.lock().unwrap();
        t.errors += 1;
        t.last_error = Some(format!("{e:#}"));
    }

    /// Judges what can be judged; drops closed streams from the watch list.
    fn sweep(&self, force: bool) {
        let now = Instant::now();
        let mut judged = Vec::new();
        let mut passed = 0;
        self.streams.lock().unwrap().retain(|s| {
            let mut s = s.lock().unwrap();
            if let Some(o) = s.judge(now, force) {
                judged.push(o);
            }
            if s.closed_by.is_some() && s.acted.is_none() {
                passed += 1;
                return false;
            }
            !(s.judged && s.closed_by.is_some())
        });
        let mut t = self.tally.lock().unwrap();
        t.passed += passed;
        for o in judged {
            t.record(o);
        }
    }
}

/// Runs the proxy until SIGTERM. `upstream` fixes where streams go (tests); `None` in a fault.
pub fn run(spec: MitmSpec, upstream: Option<SocketAddr>, state_dir: &Path) -> Result<()> {
    sys::catch_daemon_signals();
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).context("cannot bind the proxy's port")?;
    listener.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        tally: Mutex::new(Tally {
            ready: true,
            pid: std::process::id(),
            listen_port: listener.local_addr()?.port(),
            mode: Some(spec.mode),
            ..Tally::default()
        }),
        counters: counters_path(state_dir, &spec.id),
        spec,
        upstream,
        streams: Mutex::new(Vec::new()),
    });
    shared.write();
    let mut last_sweep = Instant::now();
    while !sys::STOP.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(&shared, client) {
                        shared.error(&e);
                        shared.write();
                    }
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                shared.error(&anyhow::Error::from(e).context("accept"));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if last_sweep.elapsed() >= Duration::from_millis(200) || sys::FLUSH.swap(false, Ordering::SeqCst) {
            last_sweep = Instant::now();
            shared.sweep(false);
            shared.write();
        }
    }
    shared.sweep(true);
    shared.write();
    Ok(())
}

pub fn counters_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("mitm-{id}.counters.json"))
}

/// One redirected stream: open its destination, then pump both ways until both sides are done.
fn serve(shared: &Arc<Shared>, client: TcpStream) -> Result<()> {
    client.set_nonblocking(false)?;
    let dst = match shared.upstream {
        Some(a) => a,
        None => original_dst(&client)?,
    };
    let server = connect_marked(dst).with_context(|| format!("cannot reach {dst}"))?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let stream = Arc::new(Mutex::new(Stream {
        dst: dst.to_string(),
        opened: Instant::now(),
        tls: false,
        acted: None,
        back_bytes: 0,
        closed_by: None,
        judged: false,
    }));
    shared.tally.lock().unwrap().streams += 1;
    shared.streams.lock().unwrap().push(stream.clone());

    // Server to client: counted after the act.
    let back = {
        let (mut from, mut to, stream) = (server.try_clone()?, client.try_clone()?, stream.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        {
                            let mut s = stream.lock().unwrap();
                            if s.acted.is_some() {
                                s.back_bytes += n as u64;
                            }
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            stream.lock().unwrap().closed_by.get_or_insert("server");
            let _ = to.shutdown(Shutdown::Write);
        })
    };

    // Client to server: framed, one message acted on.
    let (mut from, mut to) = (client, server);
    let mut framer = Framer::default();
    let mut previous: Option<Vec<u8>> = None;
    let after = Duration::from_millis(shared.spec.after_ms);
    let mut buf = vec![0u8; 64 << 10];
    'pump: loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for msg in framer.push(&buf[..n]) {
            let acted = {
                let mut s = stream.lock().unwrap();
                s.tls = framer.is_tls() == Some(true);
                if s.acted.is_none() && s.opened.elapsed() >= after {
                    s.acted = Some(Instant::now());
                    Some(act(shared.spec.mode, &msg, previous.as_deref(), s.tls))
                } else {
                    None
                }
            };
            let out = match acted {
                Some(forged) => {
                    shared.tally.lock().unwrap().acted += 1;
                    forged
                }
                None => msg.clone(),
            };
            if to.write_all(&out).is_err() {
                break 'pump;
            }
            previous = Some(msg);
        }
    }
    stream.lock().unwrap().closed_by.get_or_insert("client");
    let _ = to.shutdown(Shutdown::Write);
    let _ = back.join();
    Ok(())
}

/// Where a redirected stream was going (`SO_ORIGINAL_DST`, kept by conntrack).
fn original_dst(s: &TcpStream) -> Result<SocketAddr> {
    const SO_ORIGINAL_DST: libc::c_int = 80;
    // SAFETY: getsockopt into a zeroed sockaddr_in of the size we pass.
    let mut addr: libc::sockaddr_in = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        bail!(
            "no original destination (was the stream redirected?): {}",
            std::io::Error::last_os_error()
        );
    }
    let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    Ok(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(addr.sin_port))))
}

/// A TCP connection to `dst` whose packets carry [`MARK`] (needs CAP_NET_ADMIN).
fn connect_marked(dst: SocketAddr) -> Result<TcpStream> {
    let SocketAddr::V4(v4) = dst else {
        bail!("IPv4 only: {dst}");
    };
    // SAFETY: a fresh socket, owned by the TcpStream below (or closed on error).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let mark = MARK;
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const u32).cast(),
            size_of::<u32>() as libc::socklen_t,
        ) != 0
        {
            bail!("SO_MARK (needs CAP_NET_ADMIN): {}", std::io::Error::last_os_error());
        }
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        if libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            bail!("connect: {}", std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}
