//! The workload client: performs file operations in a peer's sync folder from the host side, as a
//! user would, and records each one (with the hash of what it wrote) in the history.
//!
//! Writes go to a temporary `.syncpeer-workload-*` name and are renamed into place, the way editors
//! save safely: the daemon never sees a half-written file, so every version it syncs is one the
//! history knows. Content is derived from the run seed and the op id, so every write is distinct and a
//! run is reproducible.
//!
//! Every operation goes through a [`Beneath`] handle on the peer's data folder: a symlink the peer
//! planted (at the path, or at a folder on the way) is never followed, and the op is recorded as
//! failed.

use std::path::{Path, PathBuf};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::generator::FileOp;
use crate::plan::FileOpKind;
use crate::record::beneath::{Beneath, Kind, RenameFlags};
use crate::record::history::{Event, History, Outcome};
use crate::record::run_folder::PeerDir;

/// The bytes op `op` writes: a readable header naming the op, then seeded random bytes.
pub fn content(seed: u64, op: &FileOp) -> Vec<u8> {
    let header = format!("syftchaos op {} on p{} ({:?})\n", op.id, op.peer + 1, op.kind);
    let mut bytes = header.into_bytes();
    bytes.truncate(op.size as usize);
    let mut rest = vec![0u8; op.size as usize - bytes.len()];
    ChaCha8Rng::seed_from_u64(seed ^ op.id.wrapping_mul(0xA24B_AED4_963E_E407)).fill_bytes(&mut rest);
    bytes.extend_from_slice(&rest);
    bytes
}

/// Applies `op` to `dir` and records it. Errors become `Outcome::Fail` in the history, not a crash:
/// a failing client is something to report, not a harness failure.
pub fn apply(seed: u64, op: &FileOp, peer_name: &str, dir: &PeerDir, history: &History) -> Outcome {
    // Relative to the data folder, so that the sync folder itself is resolved beneath it too.
    let target = Path::new(&dir.sync_rel).join(&op.path);
    let data = dir.data();
    if op.kind.is_metadata() {
        let outcome = match data.and_then(|data| change_metadata(&data, &target, op.kind)) {
            Ok(()) => Outcome::Ok,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Noop,
            Err(e) => {
                tracing::warn!("{:?} {} on {peer_name} failed: {e}", op.kind, op.path);
                Outcome::Fail
            }
        };
        history.record(Event::Meta {
            op: op.id,
            peer: peer_name.to_string(),
            kind: op.kind,
            path: op.path.clone(),
            outcome,
        });
        return outcome;
    }
    // The base (what this client replaces) is what the change itself took away: the file the rename
    // swapped out, or the file a delete moved out of the folder. Reading it first and changing it
    // after left a window in which the daemon could put another version in place (seen under load:
    // a version that arrived 10 ms after a neighbour's write was overwritten, but the history named
    // the older base, and the checker called it a lost update).
    let (outcome, hash, base) = match op.kind {
        FileOpKind::Create | FileOpKind::Modify => {
            let bytes = content(seed, op);
            match data.and_then(|data| write_atomically(&data, dir, &target, &bytes, op.id)) {
                Ok(base) => (Outcome::Ok, Some(crate::tree::hash_bytes(&bytes)), base),
                Err(e) => {
                    tracing::warn!("write {} on {peer_name} failed: {e}", op.path);
                    (Outcome::Fail, None, None)
                }
            }
        }
        FileOpKind::Touch | FileOpKind::Chmod => unreachable!("handled above"),
        FileOpKind::Delete => match data.and_then(|data| delete_taking_base(&data, dir, &target, op.id)) {
            Ok(base) => (Outcome::Ok, None, base),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Outcome::Noop, None, None),
            Err(e) => {
                tracing::warn!("delete {} on {peer_name} failed: {e}", op.path);
                (Outcome::Fail, None, None)
            }
        },
    };
    history.record(Event::Write {
        op: op.id,
        peer: peer_name.to_string(),
        kind: op.kind,
        path: op.path.clone(),
        size: if op.kind == FileOpKind::Delete { 0 } else { op.size },
        hash,
        base,
        outcome,
    });
    outcome
}

/// Touch: mtime set to now. Chmod: permission bits flipped between 0644 and 0600 (the daemon
/// must still read the file, so the owner's bits stay). A symlink at the path is refused.
fn change_metadata(data: &Beneath, target: &Path, kind: FileOpKind) -> std::io::Result<()> {
    let meta = data.metadata(target)?;
    match meta.kind {
        Kind::File => {}
        Kind::Symlink => return Err(symlink_in_the_way(data, target)),
        _ => return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "not a file")),
    }
    match kind {
        FileOpKind::Touch => data.open_file(target, true)?.set_modified(std::time::SystemTime::now()),
        _ => data.set_mode(target, if meta.mode & 0o044 != 0 { 0o600 } else { 0o644 }),
    }
}

fn symlink_in_the_way(data: &Beneath, target: &Path) -> std::io::Error {
    std::io::Error::other(format!(
        "{} is a symlink: not followed, not replaced",
        data.path().join(target).display()
    ))
}

fn hash_of(data: &Beneath, target: &Path) -> Option<String> {
    data.read(target).ok().map(|b| crate::tree::hash_bytes(&b))
}

/// Where the workload keeps a file for a moment: outside the sync folder when the data folder holds
/// it (same file system), so no daemon ever sees a half-written file or a name that is not the
/// user's; beside the target otherwise.
fn staging(data: &Beneath, peer: &PeerDir, parent: &Path, name: &str) -> std::io::Result<PathBuf> {
    if peer.sync_rel == "." {
        Ok(parent.join(format!(".syftchaos-workload-{name}")))
    } else {
        data.create_dir_all(".syftchaos-workload")?;
        Ok(PathBuf::from(".syftchaos-workload").join(name))
    }
}

/// Writes `bytes` at `target` through a temporary file put in its place in one step, and returns
/// the hash of what that step replaced: `RENAME_NOREPLACE` when nothing is there, else
/// `RENAME_EXCHANGE`, after which the temporary name holds exactly the file that was swapped out.
/// (Where the file system lacks these flags, the old way: hash, then rename.) New folders and the
/// file are handed to the daemon's uid (it runs unprivileged). A symlink at `target` is refused
/// rather than replaced: no workload op made it, so it is not the user's to overwrite.
fn write_atomically(
    data: &Beneath,
    peer: &PeerDir,
    target: &Path,
    bytes: &[u8],
    id: u64,
) -> std::io::Result<Option<String>> {
    let parent = target.parent().expect("paths are relative to the sync folder");
    data.create_dir_all(parent)?;
    let tmp = staging(data, peer, parent, &id.to_string())?;
    data.write_new(&tmp, bytes)?;
    if data.metadata(target).is_ok_and(|m| m.kind == Kind::Symlink) {
        let _ = data.remove_file(&tmp);
        return Err(symlink_in_the_way(data, target));
    }
    let result = replace_taking_base(data, &tmp, target);
    if result.is_err() {
        let _ = data.unlink(&tmp);
    }
    result
}

fn replace_taking_base(data: &Beneath, tmp: &Path, target: &Path) -> std::io::Result<Option<String>> {
    let unsupported = |e: &std::io::Error| matches!(e.raw_os_error(), Some(c) if c == rustix::io::Errno::INVAL.raw_os_error() || c == rustix::io::Errno::NOSYS.raw_os_error());
    // A file may come and go under the daemon's hands between tries; a few rounds settle it.
    for _ in 0..8 {
        match data.rename_with(tmp, target, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) if unsupported(&e) => {
                let base = hash_of(data, target);
                data.rename(tmp, target)?;
                return Ok(base);
            }
            Err(e) => return Err(e),
        }
        match data.rename_with(tmp, target, RenameFlags::EXCHANGE) {
            Ok(()) => {
                // `tmp` now names what was at `target` (a symlink planted meanwhile is unlinked, not
                // read through: `read` refuses links).
                let base = hash_of(data, tmp);
                data.unlink(tmp)?;
                return Ok(base);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{} kept appearing and vanishing while it was written",
        target.display()
    )))
}

/// Deletes `target` by moving it out of the sync folder, then reading what was moved: the base is
/// exactly the file the delete removed. A symlink is refused and left alone. NotFound: nothing there.
fn delete_taking_base(data: &Beneath, peer: &PeerDir, target: &Path, id: u64) -> std::io::Result<Option<String>> {
    match data.metadata(target)?.kind {
        Kind::File => {}
        Kind::Symlink => return Err(symlink_in_the_way(data, target)),
        // A folder or a FIFO at the path is not a file to delete (a failed op, as when it was
        // unlinked in place), and is never moved out of the sync folder.
        _ => {
            return Err(std::io::Error::other(format!(
                "{} is not a file",
                data.path().join(target).display()
            )));
        }
    }
    if peer.sync_rel == "." {
        // No folder outside the sync folder to move it to: hash, then unlink.
        let base = hash_of(data, target);
        data.remove_file(target)?;
        return Ok(base);
    }
    let parent = target.parent().expect("paths are relative to the sync folder");
    let moved = staging(data, peer, parent, &format!("delete-{id}"))?;
    data.rename_with(target, &moved, RenameFlags::NOREPLACE)?;
    let base = hash_of(data, &moved);
    data.unlink(&moved)?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: u64, kind: FileOpKind, size: u64) -> FileOp {
        FileOp {
            id,
            peer: 0,
            kind,
            path: "d/e/f.txt".into(),
            size,
        }
    }

    #[test]
    fn content_is_seeded_and_distinct_per_op() {
        assert_eq!(
            content(1, &op(1, FileOpKind::Create, 100)),
            content(1, &op(1, FileOpKind::Create, 100))
        );
        assert_ne!(
            content(1, &op(1, FileOpKind::Create, 100)),
            content(1, &op(2, FileOpKind::Create, 100))
        );
        assert_eq!(content(1, &op(1, FileOpKind::Create, 5)).len(), 5);
        assert_eq!(content(1, &op(1, FileOpKind::Create, 0)).len(), 0);
    }

    #[test]
    fn ops_land_in_the_sync_folder_and_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let pd = PeerDir::new(dir.path(), "p1");
        std::fs::create_dir_all(pd.root.join("sync")).unwrap();
        let history = History::create(&dir.path().join("h.jsonl")).unwrap();
        assert_eq!(
            apply(3, &op(1, FileOpKind::Create, 64), "p1", &pd, &history),
            Outcome::Ok
        );
        assert_eq!(
            std::fs::read(pd.root.join("sync/d/e/f.txt")).unwrap(),
            content(3, &op(1, FileOpKind::Create, 64))
        );
        assert_eq!(
            apply(3, &op(2, FileOpKind::Delete, 0), "p1", &pd, &history),
            Outcome::Ok
        );
        assert_eq!(
            apply(3, &op(3, FileOpKind::Delete, 0), "p1", &pd, &history),
            Outcome::Noop
        );
        let names: Vec<_> = std::fs::read_dir(pd.root.join("sync/d/e")).unwrap().collect();
        assert!(names.is_empty(), "no temp file left behind");
        let recs: Vec<_> = crate::record::history::read(&dir.path().join("h.jsonl"))
            .unwrap()
            .collect();
        assert_eq!(recs.len(), 3);
    }

    /// Issue 13 item 7: the base is the file the write swapped out and the file the delete moved
    /// out, whatever was at the path when the op began.
    #[test]
    fn bases_are_what_the_write_and_the_delete_took_away() {
        let dir = tempfile::tempdir().unwrap();
        let pd = PeerDir::new(dir.path(), "p1");
        std::fs::create_dir_all(pd.root.join("sync/d/e")).unwrap();
        let data = pd.data().unwrap();
        let target = Path::new("sync/d/e/f.txt");
        assert_eq!(write_atomically(&data, &pd, target, b"one", 1).unwrap(), None);
        // A daemon put another version in place after the client looked.
        std::fs::write(pd.root.join("sync/d/e/f.txt"), b"theirs").unwrap();
        assert_eq!(
            write_atomically(&data, &pd, target, b"two", 2).unwrap(),
            Some(crate::tree::hash_bytes(b"theirs"))
        );
        assert_eq!(std::fs::read(pd.root.join("sync/d/e/f.txt")).unwrap(), b"two");
        assert_eq!(
            delete_taking_base(&data, &pd, target, 3).unwrap(),
            Some(crate::tree::hash_bytes(b"two"))
        );
        assert!(!pd.root.join("sync/d/e/f.txt").exists());
        assert_eq!(
            delete_taking_base(&data, &pd, target, 4).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        let staged: Vec<_> = std::fs::read_dir(pd.root.join(".syftchaos-workload"))
            .unwrap()
            .collect();
        assert!(staged.is_empty(), "nothing left in the staging folder: {staged:?}");
    }

    #[test]
    fn touch_and_chmod_change_metadata_only_and_are_recorded_as_meta() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pd = PeerDir::new(dir.path(), "p1");
        std::fs::create_dir_all(pd.root.join("sync")).unwrap();
        let history = History::create(&dir.path().join("h.jsonl")).unwrap();
        let f = pd.root.join("sync/d/e/f.txt");
        assert_eq!(
            apply(3, &op(1, FileOpKind::Touch, 0), "p1", &pd, &history),
            Outcome::Noop
        );
        apply(3, &op(2, FileOpKind::Create, 64), "p1", &pd, &history);
        let before = std::fs::read(&f).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(apply(3, &op(3, FileOpKind::Touch, 0), "p1", &pd, &history), Outcome::Ok);
        assert!(std::fs::metadata(&f).unwrap().modified().unwrap() > old, "mtime moved");
        let mode = |f: &Path| std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        let m0 = mode(&f);
        assert_eq!(apply(3, &op(4, FileOpKind::Chmod, 0), "p1", &pd, &history), Outcome::Ok);
        assert_ne!(mode(&f), m0);
        apply(3, &op(5, FileOpKind::Chmod, 0), "p1", &pd, &history);
        assert_eq!(mode(&f), if m0 & 0o044 != 0 { 0o644 } else { 0o600 });
        assert_eq!(std::fs::read(&f).unwrap(), before, "content untouched");
        let recs: Vec<_> = crate::record::history::read(&dir.path().join("h.jsonl"))
            .unwrap()
            .map(|r| r.unwrap().event)
            .collect();
        let metas = recs.iter().filter(|e| matches!(e, Event::Meta { .. })).count();
        let writes = recs.iter().filter(|e| matches!(e, Event::Write { .. })).count();
        assert_eq!((metas, writes), (4, 1));
    }

    #[test]
    fn planted_symlinks_fail_the_op_and_the_outside_stays_as_it_was() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let pd = PeerDir::new(dir.path(), "p1");
        let sync = pd.root.join("sync");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&sync).unwrap();
        std::fs::create_dir_all(outside.join("e")).unwrap();
        std::fs::write(outside.join("secret"), b"host file").unwrap();
        std::os::unix::fs::symlink(&outside, sync.join("d")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), sync.join("x.txt")).unwrap();
        let state = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.mode(), m.mtime(), m.mtime_nsec(), std::fs::read(p).ok())
        };
        let before = (
            state(&outside.join("secret")),
            state(&outside.join("e")),
            state(&outside),
        );
        let history = History::create(&dir.path().join("h.jsonl")).unwrap();
        let on = |id, kind, path: &str| FileOp {
            id,
            peer: 0,
            kind,
            path: path.into(),
            size: 16,
        };
        for (id, kind, path) in [
            (1, FileOpKind::Create, "d/e/f.txt"),
            (2, FileOpKind::Create, "d/new.txt"),
            (3, FileOpKind::Touch, "x.txt"),
            (4, FileOpKind::Chmod, "x.txt"),
            (5, FileOpKind::Modify, "x.txt"),
            (6, FileOpKind::Delete, "x.txt"),
            (7, FileOpKind::Touch, "d/e"),
        ] {
            let outcome = apply(3, &on(id, kind, path), "p1", &pd, &history);
            assert_eq!(outcome, Outcome::Fail, "{kind:?} {path}");
        }
        let after = (
            state(&outside.join("secret")),
            state(&outside.join("e")),
            state(&outside),
        );
        assert_eq!(before, after);
        assert_eq!(std::fs::read_dir(outside.join("e")).unwrap().count(), 0);
        assert!(
            std::fs::symlink_metadata(sync.join("x.txt")).unwrap().is_symlink(),
            "left alone"
        );
        let bases: Vec<_> = crate::record::history::read(&dir.path().join("h.jsonl"))
            .unwrap()
            .filter_map(|r| match r.unwrap().event {
                Event::Write { base, .. } => base,
                _ => None,
            })
            .collect();
        assert!(bases.is_empty(), "nothing was read through a link: {bases:?}");
    }
}
