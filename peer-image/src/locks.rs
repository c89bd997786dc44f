//! [`Locks`]: lock files under `<state>/locks/` held by in-flight applies.
//!
//! A lock records the holder's pid, an id of the process incarnation and its start time. The seed's
//! failure modes (a crash leaves a lock that blocks sync forever; a corrupt lock breaks sync) are
//! handled by treating a lock as stale when its pid is dead, when it names our own pid but another
//! incarnation (containers reuse pid 1), when it is older than the TTL, or when it cannot be parsed.
//! Stale locks are removed at start and periodically, and an apply that meets one removes it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::hlc::wall_ms;

pub struct Locks {
    dir: PathBuf,
    ttl: Duration,
    pid: u32,
    incarnation: u64,
}

/// A held lock; dropping it removes the file.
#[must_use = "dropping the guard releases the lock"]
pub struct LockGuard {
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct LockInfo {
    pid: u32,
    incarnation: u64,
    start_ms: u64,
}

fn parse(text: &str) -> Option<LockInfo> {
    let mut pid = None;
    let mut inc = None;
    let mut start = None;
    for line in text.lines() {
        let (k, v) = line.split_once('=')?;
        match k {
            "pid" => pid = v.parse().ok(),
            "incarnation" => inc = v.parse().ok(),
            "start_ms" => start = v.parse().ok(),
            _ => {}
        }
    }
    Some(LockInfo {
        pid: pid?,
        incarnation: inc?,
        start_ms: start?,
    })
}

fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl Locks {
    pub fn new(state_dir: &Path, ttl: Duration) -> std::io::Result<Locks> {
        let dir = state_dir.join("locks");
        std::fs::create_dir_all(&dir)?;
        Ok(Locks {
            dir,
            ttl,
            pid: std::process::id(),
            incarnation: rand::random::<u64>() | 1,
        })
    }

    fn is_stale(&self, text: &str) -> bool {
        let Some(info) = parse(text) else {
            return true; // corrupt lock file
        };
        let age = wall_ms().saturating_sub(info.start_ms);
        // A lock from the future (clock moved back) is judged by pid only.
        let too_old = age > self.ttl.as_millis() as u64;
        if info.pid == self.pid {
            info.incarnation != self.incarnation
        } else {
            !pid_alive(info.pid) || too_old
        }
    }

    /// Removes every stale lock; returns how many.
    pub fn sweep(&self) -> usize {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut n = 0;
        for ent in rd.flatten() {
            let p = ent.path();
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            if self.is_stale(&text) && std::fs::remove_file(&p).is_ok() {
                tracing::info!(lock = %p.display(), "removed stale lock");
                n += 1;
            }
        }
        n
    }

    fn path_lock(&self, key: &str) -> PathBuf {
        self.dir
            .join(format!("{}.lock", &blake3::hash(key.as_bytes()).to_hex()[..24]))
    }

    /// Takes the lock of one apply batch (`apply-<pid>.lock`, listing the paths). One file per
    /// batch, not per path: creating and deleting an inode per file made ext4's inode allocator
    /// (its `recently_deleted` scan) the daemon's top CPU cost when syncing 10k files.
    pub fn hold_batch(&self, paths: &[&str]) -> std::io::Result<LockGuard> {
        use std::io::Write;
        let path = self.dir.join(format!("apply-{}.lock", self.pid));
        // Never through a symlink planted at our lock's name (it would truncate its target):
        // such a link is removed, then the lock created.
        let open = || {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
        };
        let mut f = match open() {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                std::fs::remove_file(&path)?;
                open()?
            }
            r => r?,
        };
        let mut text = format!(
            "pid={}\nincarnation={}\nstart_ms={}\n",
            self.pid,
            self.incarnation,
            wall_ms()
        );
        for p in paths.iter().take(64) {
            text.push_str(&format!("path={}\n", p.replace('\n', " ")));
        }
        f.write_all(text.as_bytes())?;
        Ok(LockGuard { path })
    }

    /// Whether another holder has a live per-path lock on `key` (a foreign lock: another process,
    /// an operator, a chaos fault). Stale ones are removed; returns `(blocked, removed)`.
    pub fn blocked(&self, key: &str) -> (bool, usize) {
        let path = self.path_lock(key);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return (false, 0);
        };
        if self.is_stale(&text) {
            let removed = std::fs::remove_file(&path).is_ok() as usize;
            return (false, removed);
        }
        (true, 0)
    }

    /// Takes the per-path lock for `key`. Returns `(guard, stale locks removed)`, or `None` in the
    /// guard when a live holder has it.
    pub fn acquire(&self, key: &str) -> std::io::Result<(Option<LockGuard>, usize)> {
        use std::io::Write;
        let path = self.path_lock(key);
        let mut removed = 0;
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    write!(
                        f,
                        "pid={}\nincarnation={}\nstart_ms={}\npath={}\n",
                        self.pid,
                        self.incarnation,
                        wall_ms(),
                        key.replace('\n', " ")
                    )?;
                    return Ok((Some(LockGuard { path }), removed));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let (blocked, r) = self.blocked(key);
                    removed += r;
                    if blocked {
                        return Ok((None, removed));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok((None, removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_locks_are_swept_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let locks = Locks::new(dir.path(), Duration::from_secs(60)).unwrap();
        let d = dir.path().join("locks");
        std::fs::write(
            d.join("dead.lock"),
            format!("pid=999999999\nincarnation=1\nstart_ms={}\n", wall_ms()),
        )
        .unwrap();
        std::fs::write(d.join("corrupt.lock"), "garbage").unwrap();
        std::fs::write(d.join("old.lock"), "pid=1\nincarnation=1\nstart_ms=5\n").unwrap();
        let (held, _) = locks.acquire("a/b.txt").unwrap();
        assert!(held.is_some());
        assert_eq!(locks.sweep(), 3);
        // Our own live lock stays, and a second acquire of it fails.
        assert!(locks.acquire("a/b.txt").unwrap().0.is_none());
        assert_eq!(locks.blocked("a/b.txt"), (true, 0));
        drop(held);
        assert!(locks.acquire("a/b.txt").unwrap().0.is_some());
        let batch = locks.hold_batch(&["x", "y"]).unwrap();
        assert!(
            dir.path()
                .join(format!("locks/apply-{}.lock", std::process::id()))
                .exists()
        );
        assert_eq!(locks.sweep(), 0);
        drop(batch);
    }

    #[test]
    fn issue_13_the_batch_lock_never_writes_through_a_symlink() {
        // A symlink planted at the batch lock's name (the locks folder is a chaos target): the
        // lock was written through it, truncating the file it points to.
        let dir = tempfile::tempdir().unwrap();
        let locks = Locks::new(dir.path(), Duration::from_secs(60)).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let name = dir.path().join(format!("locks/apply-{}.lock", std::process::id()));
        std::os::unix::fs::symlink(&victim, &name).unwrap();
        let batch = locks.hold_batch(&["x"]).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&name).unwrap().is_file());
        drop(batch);
        assert!(!name.exists() && victim.exists());
    }
}
