//! Host-side file operations on a peer's folder that never leave it.
//!
//! The orchestrator runs as root, and a peer container can write into its bind-mounted folder: plant a
//! symlink, or swap a folder for one while the orchestrator works in it. A path-based call
//! (`std::fs::write(root.join(p))`) follows such a link, so a peer could make the orchestrator write,
//! truncate, chown or read any file of the host. A [`Beneath`] is an open handle on one folder; every
//! operation takes a path relative to it, made of plain names only (`..` and absolute paths are
//! refused), and:
//!
//! * resolves the folders on the way with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_XDEV)`: a symlink anywhere on the way is an error (`ELOOP`), never followed, and
//!   nothing resolves outside the handle, even while a peer renames things under it;
//! * acts on the last name with calls on its parent's handle that do not follow it either
//!   (`unlinkat`, `renameat`, `mkdirat`, `fstatat` and `fchownat` with `AT_SYMLINK_NOFOLLOW`,
//!   `O_CREAT | O_EXCL`);
//! * opens an existing file as `O_PATH` first and checks that it is a regular file (or a folder, for
//!   a mode change) before opening it for reading or writing through `/proc/self/fd` (the same inode,
//!   not its name again), so a FIFO (which would block) or a device node (which could act) planted by
//!   a peer is never opened.
//!
//! A symlink where a file or folder was expected is thus an error for the caller to record. A
//! listing ([`Beneath::read_dir`]) reports symlinks as [`Kind::Symlink`], and [`Beneath::read_link`]
//! reads what one says without following it. Files the orchestrator alone owns (the report, the
//! history) stay with `std::fs`: they are not in a peer's folder.
//!
//! ```no_run
//! # use syftchaos::record::beneath::Beneath;
//! let peer = Beneath::open("/runs/r1/peers/p1".as_ref())?.owned_by(Some((1000, 1000)));
//! peer.create_dir_all("sync/docs")?; // new levels are handed to uid 1000
//! peer.write_atomically("sync/docs/a.txt", "sync/docs/.a.tmp", b"hello")?;
//! assert!(peer.read("sync/docs/../../../etc/passwd").is_err()); // `..` is refused
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Built on `rustix` (already in the build through `tempfile`), whose safe wrappers over the `*at`
//! system calls need no unsafe code here. `cap-std` was measured too: ten more crates, and its `Dir`
//! follows symlinks that stay inside the folder, which is more than a peer's folder should get.
//! `openat2` needs Linux 5.6.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use rustix::fs::RenameFlags;
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

/// How every path under a handle is resolved.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_XDEV);

/// `openat2` fails with `EAGAIN` when a rename raced the resolution; it is safe to retry, and a peer
/// renaming without pause only turns the operation into an error.
const RETRIES: usize = 8;

/// What a name is, as `lstat` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, a socket or a device node.
    Other,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a folder",
            Kind::Symlink => "a symlink",
            Kind::Other => "a FIFO, a socket or a device node",
        }
    }
}

/// A name's metadata, never through a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub len: u64,
    pub modified: SystemTime,
    /// The permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Meta {
    // The stat fields' widths differ between targets; on x86_64 some of these casts are no-ops.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &rustix::fs::Stat) -> Meta {
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        let (secs, nanos) = (st.st_mtime as i64, st.st_mtime_nsec as u32);
        let modified = if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
        };
        Meta {
            kind,
            len: st.st_size.max(0) as u64,
            modified,
            mode: st.st_mode as u32 & 0o7777,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
        }
    }
}

/// An open folder under which every operation stays (see the module's overview).
#[derive(Debug)]
pub struct Beneath {
    fd: OwnedFd,
    /// For messages only: operations go through `fd`.
    path: PathBuf,
    /// Who new folders and files are handed to (the daemon's uid and gid).
    owner: Option<(u32, u32)>,
}

impl Beneath {
    /// Opens `root`, a folder the orchestrator made (its own path is trusted; only its last name must
    /// not be a symlink). Everything below it is the peer's.
    pub fn open(root: &Path) -> io::Result<Beneath> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(root, flags, Mode::empty())
            .map_err(|e| described(e, format!("opening {}", root.display())))?;
        Ok(Beneath {
            fd,
            path: root.to_path_buf(),
            owner: None,
        })
    }

    /// The same handle, handing what it creates (and [`Beneath::chown_tree`]) to `owner`.
    pub fn owned_by(mut self, owner: Option<(u32, u32)>) -> Beneath {
        self.owner = owner;
        self
    }

    /// The folder's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder `rel` below this one, as a handle of its own (same owner).
    pub fn dir(&self, rel: impl AsRef<Path>) -> io::Result<Beneath> {
        let rel = rel.as_ref();
        let clean = plain(rel)?;
        let fd = self
            .resolve(&clean, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| self.error(e, "opening the folder", rel))?;
        Ok(Beneath {
            fd,
            path: self.path.join(&clean),
            owner: self.owner,
        })
    }

    /// Makes the folder `rel` and any missing level above it; each new level is handed to the owner.
    /// An existing level that is a symlink is an error, as anywhere.
    pub fn create_dir_all(&self, rel: impl AsRef<Path>) -> io::Result<Beneath> {
        let rel = rel.as_ref();
        let mut here = self.dir("")?;
        for name in names(rel)? {
            let made = match rustix::fs::mkdirat(&here.fd, name, Mode::from_raw_mode(0o777)) {
                Ok(()) => true,
                Err(Errno::EXIST) => false,
                Err(e) => return Err(here.error(e, "making the folder", Path::new(name))),
            };
            let next = here.dir(name)?;
            if made {
                next.hand_over(&next.fd, Path::new(""))?;
            }
            here = next;
        }
        Ok(here)
    }

    /// `rel`'s metadata; a symlink is reported as one ([`Kind::Symlink`]), not followed.
    pub fn metadata(&self, rel: impl AsRef<Path>) -> io::Result<Meta> {
        let rel = rel.as_ref();
        let (dir, leaf) = self.split(rel, "reading the metadata of")?;
        let st = match leaf {
            Some(name) => rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW),
            None => rustix::fs::fstat(&dir),
        };
        st.map(|st| Meta::of(&st))
            .map_err(|e| self.error(e, "reading the metadata of", rel))
    }

    /// Opens the existing regular file `rel` for reading, or reading and writing.
    pub fn open_file(&self, rel: impl AsRef<Path>, write: bool) -> io::Result<File> {
        self.open_vetted(rel.as_ref(), &[Kind::File], write)
    }

    /// The content of the regular file `rel`.
    pub fn read(&self, rel: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_file(rel, false)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Creates the file `rel` afresh with `mode` (before the umask), handed to the owner, and opens
    /// it for writing. A name already there (a leftover of ours, or anything a peer planted that is
    /// not a folder) is unlinked first, never followed or opened; if a peer races a new one in, the
    /// exclusive create fails.
    pub fn create_new(&self, rel: impl AsRef<Path>, mode: u32) -> io::Result<File> {
        let rel = rel.as_ref();
        let (dir, leaf) = self.split(rel, "creating")?;
        let name = leaf.ok_or_else(|| refused(rel, "names the folder itself, not a file"))?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(self.error(e, "replacing", rel)),
        }
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(mode))
            .map_err(|e| self.error(e, "creating", rel))?;
        self.hand_over(&fd, rel)?;
        Ok(File::from(fd))
    }

    /// Writes `bytes` to a new file `rel` (see [`Beneath::create_new`]) and syncs it.
    pub fn write_new(&self, rel: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
        let mut f = self.create_new(rel, 0o644)?;
        f.write_all(bytes)?;
        f.sync_all()
    }

    /// Renames `from` to `to`, both below this folder. Neither last name is followed: a symlink at
    /// `to` is replaced, not written through.
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let (from_dir, from_name) = self.split(from, "renaming")?;
        let (to_dir, to_name) = self.split(to, "renaming onto")?;
        let (Some(from_name), Some(to_name)) = (from_name, to_name) else {
            return Err(refused(from, "a rename names files, not the folder itself"));
        };
        rustix::fs::renameat(&from_dir, from_name, &to_dir, to_name).map_err(|e| self.error(e, "renaming", from))
    }

    /// Renames `from` to `to` with `renameat2` flags (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`): both
    /// below this folder, neither last name followed. Errors keep the kernel's code (`EEXIST`,
    /// `ENOENT`, `EINVAL` where the file system lacks the flag) so callers can act on it.
    pub fn rename_with(&self, from: impl AsRef<Path>, to: impl AsRef<Path>, flags: RenameFlags) -> io::Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let (from_dir, from_name) = self.split(from, "renaming")?;
        let (to_dir, to_name) = self.split(to, "renaming onto")?;
        let (Some(from_name), Some(to_name)) = (from_name, to_name) else {
            return Err(refused(from, "a rename names files, not the folder itself"));
        };
        rustix::fs::renameat_with(&from_dir, from_name, &to_dir, to_name, flags)
            .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))
    }

    /// Unlinks `rel` whatever it is but a folder (a file, or a symlink itself: never followed).
    pub fn unlink(&self, rel: impl AsRef<Path>) -> io::Result<()> {
        let rel = rel.as_ref();
        let (dir, leaf) = self.split(rel, "removing")?;
        let name = leaf.ok_or_else(|| refused(rel, "names the folder itself, not a file"))?;
        rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(|e| self.error(e, "removing", rel))
    }

    /// Writes `bytes` at `rel` through the temporary name `tmp`, renamed over it, so a reader never
    /// sees half a file.
    pub fn write_atomically(&self, rel: impl AsRef<Path>, tmp: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
        self.write_new(tmp.as_ref(), bytes)?;
        self.rename(tmp, rel)
    }

    /// Removes the file `rel`. A symlink there is refused and left alone; a folder is refused by the
    /// kernel. (Checked, then unlinked: `unlinkat` never follows, so a swap in between removes a link,
    /// never what it points at.)
    pub fn remove_file(&self, rel: impl AsRef<Path>) -> io::Result<()> {
        let rel = rel.as_ref();
        let (dir, leaf) = self.split(rel, "removing")?;
        let name = leaf.ok_or_else(|| refused(rel, "names the folder itself, not a file"))?;
        let st =
            rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| self.error(e, "removing", rel))?;
        if Meta::of(&st).kind == Kind::Symlink {
            return Err(refused(&self.path.join(rel), "is a symlink: not followed, left alone"));
        }
        rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(|e| self.error(e, "removing", rel))
    }

    /// Sets the permission bits of the file or folder `rel` (the folder itself for `""`).
    pub fn set_mode(&self, rel: impl AsRef<Path>, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let f = self.open_vetted(rel.as_ref(), &[Kind::File, Kind::Dir], false)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
    }

    /// Hands `rel` and everything below it to the owner (nothing to do without one). Symlinks below
    /// are neither followed nor changed; a symlink at `rel` itself is left alone. Without the right to
    /// chown (not root), nothing is changed and that is not an error.
    pub fn chown_tree(&self, rel: impl AsRef<Path>) -> io::Result<()> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        let rel = rel.as_ref();
        let start = self.metadata(rel)?;
        if start.kind == Kind::Symlink {
            return Ok(());
        }
        let (dir, leaf) = self.split(rel, "handing over")?;
        let first = match leaf {
            Some(name) => chownat(&dir, name, uid, gid),
            None => rustix::fs::fchown(&dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))),
        };
        match first {
            Err(Errno::PERM) => return Ok(()),
            other => other.map_err(|e| self.error(e, "handing over", rel))?,
        }
        // Folders to walk, by path from this handle: one open folder at a time, however wide or deep
        // the tree a peer made.
        let mut pending = if start.kind == Kind::Dir {
            vec![plain(rel)?]
        } else {
            Vec::new()
        };
        while let Some(folder) = pending.pop() {
            let fd = self
                .resolve(&folder, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .map_err(|e| self.error(e, "handing over", &folder))?;
            for (name, meta) in self.list(&fd, &folder)? {
                if meta.kind == Kind::Symlink {
                    continue;
                }
                // AT_SYMLINK_NOFOLLOW: had the name just been swapped for a link, the link is changed.
                chownat(&fd, &name, uid, gid).map_err(|e| self.error(e, "handing over", &folder.join(&name)))?;
                if meta.kind == Kind::Dir {
                    pending.push(folder.join(&name));
                }
            }
        }
        Ok(())
    }

    /// The names in the folder `rel` with their metadata, symlinks as [`Kind::Symlink`]. Names that
    /// vanish while listing are left out.
    pub fn read_dir(&self, rel: impl AsRef<Path>) -> io::Result<Vec<(OsString, Meta)>> {
        let rel = rel.as_ref();
        let clean = plain(rel)?;
        let fd = self
            .resolve(&clean, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| self.error(e, "listing", rel))?;
        self.list(&fd, rel)
    }

    /// What the symlink `rel` points at, read, not followed.
    pub fn read_link(&self, rel: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        let rel = rel.as_ref();
        let (dir, leaf) = self.split(rel, "reading the link")?;
        let name = leaf.ok_or_else(|| refused(rel, "names the folder itself, not a link"))?;
        rustix::fs::readlinkat(&dir, name, Vec::new())
            .map(|target| target.into_bytes())
            .map_err(|e| self.error(e, "reading the link", rel))
    }

    fn list(&self, fd: &OwnedFd, rel: &Path) -> io::Result<Vec<(OsString, Meta)>> {
        let listing = rustix::fs::Dir::read_from(fd).map_err(|e| self.error(e, "listing", rel))?;
        let mut out = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| self.error(e, "listing", rel))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            match rustix::fs::statat(fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => out.push((name.to_os_string(), Meta::of(&st))),
                Err(Errno::NOENT) => {}
                Err(e) => return Err(self.error(e, "listing", &rel.join(name))),
            }
        }
        Ok(out)
    }

    /// Opens `rel` as `O_PATH` (which opens nothing: no FIFO blocks, no device acts), checks its kind,
    /// then opens that same inode for real through `/proc/self/fd`.
    fn open_vetted(&self, rel: &Path, kinds: &[Kind], write: bool) -> io::Result<File> {
        let clean = plain(rel)?;
        // No O_NOFOLLOW: RESOLVE_NO_SYMLINKS then refuses a symlink as the last name too (ELOOP).
        let fd = self
            .resolve(&clean, OFlags::PATH, Mode::empty())
            .map_err(|e| self.error(e, "opening", rel))?;
        let meta = rustix::fs::fstat(&fd)
            .map(|st| Meta::of(&st))
            .map_err(|e| self.error(e, "opening", rel))?;
        if !kinds.contains(&meta.kind) {
            return Err(refused(
                &self.path.join(rel),
                &format!(
                    "is {}, where {} was expected: not opened",
                    meta.kind.noun(),
                    kinds[0].noun()
                ),
            ));
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", self.path.join(rel).display())))
    }

    /// The parent folder of `rel`'s last name, opened, and that name (`None` for the folder itself).
    fn split<'a>(&self, rel: &'a Path, what: &str) -> io::Result<(OwnedFd, Option<&'a OsStr>)> {
        let mut names = names(rel)?;
        let leaf = names.pop();
        let parent: PathBuf = names.iter().collect();
        let fd = self
            .resolve(&parent, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| self.error(e, what, rel))?;
        Ok((fd, leaf))
    }

    /// `openat2` beneath this folder, never through a symlink (`clean` holds plain names only).
    fn resolve(&self, clean: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        let clean = if clean.as_os_str().is_empty() {
            Path::new(".")
        } else {
            clean
        };
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, clean, flags | OFlags::CLOEXEC, mode, RESOLVE) {
                Err(Errno::AGAIN) if tries < RETRIES => tries += 1,
                other => return other,
            }
        }
    }

    /// Hands a new folder or file to the owner; without the right to (not root), leaves it.
    fn hand_over(&self, fd: impl AsFd, rel: &Path) -> io::Result<()> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        match rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))) {
            Ok(()) | Err(Errno::PERM) => Ok(()),
            Err(e) => Err(self.error(e, "handing over", rel)),
        }
    }

    /// An error naming the operation and the path, in words for the two refusals that matter here.
    fn error(&self, e: Errno, what: &str, rel: &Path) -> io::Error {
        described(e, format!("{what} {}", self.path.join(rel).display()))
    }
}

/// The open folder itself, for calls that take a folder by descriptor (an inotify watch added through
/// `/proc/self/fd/N`): that names the inode opened beneath, never a path resolved again.
impl AsFd for Beneath {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn chownat(dir: &OwnedFd, name: &OsStr, uid: u32, gid: u32) -> Result<(), Errno> {
    rustix::fs::chownat(
        dir,
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

fn described(e: Errno, doing: String) -> io::Error {
    let plain = io::Error::from(e);
    let why = match e {
        Errno::LOOP => "a symlink is in the way, and symlinks in a peer's folder are never followed".to_string(),
        Errno::XDEV => "that would leave the folder".to_string(),
        Errno::NOSYS => "openat2 is missing (Linux 5.6 or later is needed)".to_string(),
        _ => plain.to_string(),
    };
    io::Error::new(plain.kind(), format!("{doing}: {why}"))
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {why}", path.display()))
}

/// `rel` as plain names: `.` and empty parts dropped; `..` and absolute paths refused before any
/// system call sees them.
fn names(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err(refused(rel, "`..` would leave the peer's folder")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(
                    rel,
                    "an absolute path, where one inside the peer's folder was expected",
                ));
            }
        }
    }
    Ok(out)
}

fn plain(rel: &Path) -> io::Result<PathBuf> {
    Ok(names(rel)?.into_iter().collect())
}

#[cfg(test)]
mod tests;
