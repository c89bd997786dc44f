//! File operations on relative paths inside the sync folder that never follow a symlink.
//!
//! The rule (`docs/PEER.md`, "Symlinks"): symlinks in the sync folder are not synced, and nothing
//! is ever read, written or removed through one. A symlink in place of a file is "in the way" of a
//! received version (not applied); one in place of a folder hides everything under it, as if the
//! folder were missing. Otherwise a local program (or a peer's chaos fault) that plants
//! `d -> /elsewhere` would let any neighbour write or delete `/elsewhere/*` by syncing `d/*`.
//!
//! How: the folders of a path are opened one by one from the sync folder's handle, each with
//! `O_NOFOLLOW`, and the last component is acted on relative to its parent's handle (`*at` calls,
//! which do not follow a last component either). A folder swapped for a symlink at any moment
//! makes the walk fail (`ENOTDIR`) instead of escaping, and once a folder is open its handle stays
//! on that folder whatever happens to its name. (`openat2` with `RESOLVE_NO_SYMLINKS` would do the
//! walk in one call, but container seccomp profiles may refuse it; a walk works everywhere.)

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Mode, OFlags, RenameFlags};

/// The parent folder of a path, open, and the path's last component.
pub struct Parent {
    dir: OwnedFd,
    name: String,
}

/// Whether an error means "a symlink (or a file) stands where a folder should be".
pub fn is_symlink_in_the_way(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP))
}

fn components(rel: &str) -> io::Result<Vec<&str>> {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a plain relative path"));
    }
    Ok(parts)
}

fn open_dir_at(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// Opens the parent of `rel` beneath `root` (creating missing folders when `create`).
pub fn parent(root: &Path, rel: &str, create: bool) -> io::Result<Parent> {
    let parts = components(rel)?;
    let (name, folders) = parts.split_last().expect("split yields one part at least");
    // The sync folder itself may be reached through symlinks (it is configured, and canonical).
    let mut dir: OwnedFd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    for f in folders {
        dir = match open_dir_at(&dir, f) {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                match rustix::fs::mkdirat(&dir, *f, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open_dir_at(&dir, f)?
            }
            r => r?,
        };
    }
    Ok(Parent {
        dir,
        name: name.to_string(),
    })
}

impl Parent {
    /// The metadata of the last component itself (a symlink is reported as one).
    pub fn symlink_metadata(&self) -> io::Result<Metadata> {
        let fd = rustix::fs::openat(
            &self.dir,
            self.name.as_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        File::from(fd).metadata()
    }

    /// Opens the last component for reading if it is a regular file. It is looked at first
    /// without being opened (opening a device or a FIFO can have effects), then opened (no
    /// symlink, no blocking) and checked to be that same file.
    pub fn open_regular(&self) -> io::Result<File> {
        use std::os::unix::fs::MetadataExt;
        let not_regular = || io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
        let before = self.symlink_metadata()?;
        if !before.is_file() {
            return Err(not_regular());
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let f = File::from(rustix::fs::openat(&self.dir, self.name.as_str(), flags, Mode::empty())?);
        let after = f.metadata()?;
        if !after.is_file() || (after.dev(), after.ino()) != (before.dev(), before.ino()) {
            return Err(not_regular());
        }
        Ok(f)
    }

    /// Renames the file at `from` (an absolute path of ours, e.g. in the temp folder) onto the
    /// last component, with `renameat2` flags (`RENAME_EXCHANGE`, `RENAME_NOREPLACE` or none).
    pub fn rename_from(&self, from: &Path, flags: RenameFlags) -> io::Result<()> {
        Ok(rustix::fs::renameat_with(
            CWD,
            from,
            &self.dir,
            self.name.as_str(),
            flags,
        )?)
    }

    /// Removes the last component (a file, or a symlink itself).
    pub fn remove_file(&self) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.dir, self.name.as_str(), AtFlags::empty())?)
    }

    /// Removes the last component if it is an empty folder (a symlink is not one).
    pub fn remove_dir(&self) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.dir, self.name.as_str(), AtFlags::REMOVEDIR)?)
    }

    /// Hard-links the last component (a symlink itself, never its target) to `to` (absolute).
    pub fn link_to(&self, to: &Path) -> io::Result<()> {
        Ok(rustix::fs::linkat(
            &self.dir,
            self.name.as_str(),
            CWD,
            to,
            AtFlags::empty(),
        )?)
    }

    /// The open parent folder, for an fsync (a path handle cannot be synced: reopened for reading).
    pub fn sync_dir(&self) -> io::Result<()> {
        let fd = rustix::fs::openat(
            &self.dir,
            OsStr::new("."),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        File::from(fd).sync_all()
    }
}

/// [`Parent::symlink_metadata`] of `rel` beneath `root`.
pub fn symlink_metadata(root: &Path, rel: &str) -> io::Result<Metadata> {
    parent(root, rel, false)?.symlink_metadata()
}

/// [`Parent::open_regular`] of `rel` beneath `root`.
pub fn open_file(root: &Path, rel: &str) -> io::Result<File> {
    parent(root, rel, false)?.open_regular()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sync folder with `d -> outside/` and `f -> outside/victim`, and a real `real/x`.
    fn planted() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let (root, out) = (t.path().join("sync"), t.path().join("outside"));
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("victim"), b"precious").unwrap();
        std::fs::write(root.join("real/x"), b"x").unwrap();
        symlink(&out, root.join("d")).unwrap();
        symlink(out.join("victim"), root.join("f")).unwrap();
        (t, root, out)
    }

    #[test]
    fn nothing_is_reached_through_a_symlinked_folder() {
        let (_t, root, out) = planted();
        for create in [false, true] {
            let e = parent(&root, "d/victim", create).err().unwrap();
            assert!(is_symlink_in_the_way(&e), "{e}");
            assert!(parent(&root, "d/new/deeper", create).is_err());
        }
        assert!(open_file(&root, "d/victim").is_err());
        assert!(symlink_metadata(&root, "d/victim").is_err());
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            1,
            "a folder was created outside"
        );
    }

    #[test]
    fn a_symlink_itself_is_seen_and_removed_never_its_target() {
        let (_t, root, out) = planted();
        assert!(symlink_metadata(&root, "f").unwrap().file_type().is_symlink());
        assert!(open_file(&root, "f").is_err());
        let p = parent(&root, "f", false).unwrap();
        p.remove_file().unwrap();
        assert_eq!(std::fs::read(out.join("victim")).unwrap(), b"precious");
        assert!(parent(&root, "d", false).unwrap().remove_dir().is_err());
        assert!(out.is_dir());
    }

    #[test]
    fn plain_paths_work_and_missing_folders_are_created() {
        let (_t, root, _) = planted();
        assert!(symlink_metadata(&root, "real/x").unwrap().is_file());
        let p = parent(&root, "a/b/c.txt", true).unwrap();
        let tmp = root.join("staged");
        std::fs::write(&tmp, b"new").unwrap();
        p.rename_from(&tmp, RenameFlags::NOREPLACE).unwrap();
        assert_eq!(std::fs::read(root.join("a/b/c.txt")).unwrap(), b"new");
        for bad in ["", "../x", "a/./b", "/etc/passwd", "a//b"] {
            assert!(parent(&root, bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn racing_a_folder_swap_with_a_symlink_never_escapes() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let (_t, root, out) = planted();
        // `d` (the symlink to outside) and `swap` (a real folder) trade places atomically, again and
        // again, while files are put at `d/...`.
        std::fs::create_dir(root.join("swap")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, root) = (stop.clone(), root.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    rustix::fs::renameat_with(CWD, root.join("d"), CWD, root.join("swap"), RenameFlags::EXCHANGE)
                        .unwrap();
                }
            })
        };
        let mut placed = 0;
        for i in 0..2000 {
            let tmp = root.join(format!("tmp-{i}"));
            std::fs::write(&tmp, b"x").unwrap();
            if let Ok(p) = parent(&root, &format!("d/f-{i}"), true)
                && p.rename_from(&tmp, RenameFlags::NOREPLACE).is_ok()
            {
                placed += 1;
            }
            let _ = std::fs::remove_file(&tmp);
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        let escaped: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(escaped, ["victim"]);
        assert!(placed > 0, "nothing placed in the real folder either");
    }
}
