//! Every operation refuses to cross a symlink a peer planted (at the last name, at a folder on the way,
//! relative or absolute), a `..` and an absolute path; the files outside stay as they were: content,
//! mode, owner, mtime, and the listing of their folder.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;

/// A peer folder `root/` and, beside it, `outside/` with a secret file and a folder holding one.
struct Lab {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

const OLD: Duration = Duration::from_secs(1_000_000);

fn lab() -> Lab {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("real")).unwrap();
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    for (rel, mode) in [("secret", 0o600), ("dir/inner", 0o640)] {
        let f = outside.join(rel);
        std::fs::write(&f, format!("outside {rel}")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        let file = std::fs::File::options().write(true).open(&f).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + OLD).unwrap();
    }
    std::fs::set_permissions(outside.join("dir"), std::fs::Permissions::from_mode(0o700)).unwrap();
    // The plants: a link at a leaf, links at a folder on the way (absolute and relative), a link
    // that only escapes relatively.
    symlink(outside.join("secret"), root.join("leaf")).unwrap();
    symlink(outside.join("dir"), root.join("mid")).unwrap();
    symlink("../../outside/dir", root.join("real/up")).unwrap();
    symlink("../outside/secret", root.join("rel")).unwrap();
    Lab {
        _tmp: tmp,
        root,
        outside,
    }
}

/// Everything that could change outside: every path's content, mode, owner and mtime.
fn snapshot(outside: &Path) -> Vec<(String, Vec<u8>, u32, u32, u32, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![outside.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let content = if m.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
            names.sort();
            let listing = names
                .iter()
                .map(|n| n.display().to_string())
                .collect::<Vec<_>>()
                .join("\n");
            stack.extend(names);
            listing.into_bytes()
        } else {
            std::fs::read(&p).unwrap()
        };
        out.push((
            p.display().to_string(),
            content,
            m.mode(),
            m.uid(),
            m.gid(),
            m.modified().unwrap(),
        ));
    }
    out
}

/// Paths that reach outside through a plant, a `..` or an absolute path.
fn escapes(lab: &Lab) -> Vec<String> {
    vec![
        "leaf".into(),
        "rel".into(),
        "mid/inner".into(),
        "real/up/inner".into(),
        "mid/new".into(),
        "../outside/secret".into(),
        "real/../../outside/secret".into(),
        lab.outside.join("secret").display().to_string(),
    ]
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

#[test]
fn every_operation_refuses_every_escape_and_leaves_the_outside_untouched() {
    let lab = lab();
    let before = snapshot(&lab.outside);
    let peer = Beneath::open(&lab.root).unwrap().owned_by(Some((4321, 4321)));
    for rel in escapes(&lab) {
        let leaf_link = rel == "leaf" || rel == "rel";
        assert!(peer.read(&rel).is_err(), "read {rel}");
        assert!(peer.open_file(&rel, true).is_err(), "open for writing {rel}");
        assert!(peer.set_mode(&rel, 0o777).is_err(), "set mode {rel}");
        assert!(peer.dir(&rel).is_err(), "open as a folder {rel}");
        assert!(
            peer.create_dir_all(format!("{rel}/deeper")).is_err(),
            "mkdir below {rel}"
        );
        assert!(peer.remove_file(&rel).is_err(), "remove {rel}");
        assert!(peer.read_dir(&rel).is_err(), "list {rel}");
        match peer.metadata(&rel) {
            Ok(m) => assert!(
                leaf_link && m.kind == Kind::Symlink,
                "metadata {rel} is the link's: {m:?}"
            ),
            Err(_) => assert!(!leaf_link, "a link as the last name is reported, not refused"),
        }
        // Refused, or (a link as the last name) the link itself is chowned to nothing: skipped.
        let _ = peer.chown_tree(&rel);
        // Writing at a link's name replaces the link (a name in the peer's folder), never the target.
        let wrote = peer.write_atomically(&rel, "real/tmp", b"mine");
        assert_eq!(wrote.is_ok(), leaf_link, "write at {rel}: {wrote:?}");
        let created = peer
            .create_new("real/tmp2", 0o644)
            .and_then(|_| peer.rename("real/tmp2", &rel));
        assert_eq!(created.is_ok(), leaf_link, "rename onto {rel}: {created:?}");
        assert_eq!(snapshot(&lab.outside), before, "after the operations on {rel}");
    }
    // The links at leaves were replaced by files in the peer's folder.
    assert_eq!(std::fs::read(lab.root.join("leaf")).unwrap(), b"");
    assert!(std::fs::symlink_metadata(lab.root.join("mid")).unwrap().is_symlink());
}

#[test]
fn a_temporary_name_planted_as_a_link_is_replaced_not_written_through() {
    let lab = lab();
    let before = snapshot(&lab.outside);
    let peer = Beneath::open(&lab.root).unwrap();
    symlink(lab.outside.join("secret"), lab.root.join("real/f.tmp")).unwrap();
    peer.write_atomically("real/f", "real/f.tmp", b"new").unwrap();
    assert_eq!(peer.read("real/f").unwrap(), b"new");
    assert!(peer.metadata("real/f.tmp").is_err(), "the temporary name is gone");
    assert_eq!(snapshot(&lab.outside), before);
}

#[test]
fn the_tree_is_handed_over_but_no_link_in_it_is_followed() {
    let lab = lab();
    let before = snapshot(&lab.outside);
    std::fs::write(lab.root.join("real/own"), b"x").unwrap();
    let peer = Beneath::open(&lab.root).unwrap().owned_by(Some((4321, 4322)));
    peer.chown_tree("").unwrap();
    assert_eq!(snapshot(&lab.outside), before);
    if is_root() {
        for own in ["", "real", "real/own"] {
            let m = std::fs::symlink_metadata(lab.root.join(own)).unwrap();
            assert_eq!((m.uid(), m.gid()), (4321, 4322), "{own} handed over");
        }
        let link = std::fs::symlink_metadata(lab.root.join("mid")).unwrap();
        assert_eq!(link.uid(), 0, "links are left alone");
    }
    // Swapping the start itself for a link: nothing happens.
    std::fs::remove_dir_all(lab.root.join("real")).unwrap();
    symlink(lab.outside.join("dir"), lab.root.join("real")).unwrap();
    peer.chown_tree("real").unwrap();
    assert_eq!(snapshot(&lab.outside), before);
}

#[test]
fn new_folders_and_files_go_to_the_owner_and_ordinary_work_succeeds() {
    let lab = lab();
    let peer = Beneath::open(&lab.root).unwrap().owned_by(Some((4321, 4321)));
    let sub = peer.create_dir_all("a/b/c").unwrap();
    assert_eq!(sub.path(), lab.root.join("a/b/c"));
    peer.write_atomically("a/b/c/f", "a/.f.tmp", b"hello").unwrap();
    assert_eq!(sub.read("f").unwrap(), b"hello");
    let m = peer.metadata("a/b/c/f").unwrap();
    assert_eq!((m.kind, m.len), (Kind::File, 5));
    peer.set_mode("a/b/c/f", 0o600).unwrap();
    assert_eq!(peer.metadata("a/b/c/f").unwrap().mode, 0o600);
    peer.set_mode("a", 0o555).unwrap();
    assert_eq!(peer.metadata("a").unwrap().mode, 0o555);
    peer.set_mode("a", 0o755).unwrap();
    if is_root() {
        for p in ["a", "a/b", "a/b/c", "a/b/c/f"] {
            assert_eq!(std::fs::metadata(lab.root.join(p)).unwrap().uid(), 4321, "{p}");
        }
    }
    let mut names: Vec<_> = peer
        .read_dir("")
        .unwrap()
        .into_iter()
        .map(|(n, m)| (n.to_string_lossy().into_owned(), m.kind))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        names,
        [
            ("a".into(), Kind::Dir),
            ("leaf".into(), Kind::Symlink),
            ("mid".into(), Kind::Symlink),
            ("real".into(), Kind::Dir),
            ("rel".into(), Kind::Symlink),
        ]
    );
    assert_eq!(peer.read_link("rel").unwrap(), b"../outside/secret");
    peer.remove_file("a/b/c/f").unwrap();
    assert_eq!(peer.metadata("a/b/c/f").unwrap_err().kind(), io::ErrorKind::NotFound);
    assert!(
        peer.remove_file("leaf").is_err(),
        "a link is not removed as if it were a file"
    );
    assert!(std::fs::symlink_metadata(lab.root.join("leaf")).is_ok());
}

#[test]
fn a_fifo_is_never_opened_and_a_linked_root_is_refused() {
    let lab = lab();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        lab.root.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let peer = Beneath::open(&lab.root).unwrap();
    // Opening a FIFO for reading would block until a writer came: it must fail at once.
    assert!(peer.read("fifo").is_err());
    assert!(peer.open_file("fifo", true).is_err());
    assert_eq!(peer.metadata("fifo").unwrap().kind, Kind::Other);
    assert!(Beneath::open(&lab.root.join("mid")).is_err(), "a root that is a link");
}

#[test]
fn a_folder_swapped_for_a_link_while_the_orchestrator_works_in_it_is_never_followed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let lab = lab();
    let before = snapshot(&lab.outside);
    std::fs::create_dir_all(lab.root.join("real/sub")).unwrap();
    std::fs::write(lab.root.join("real/sub/inner"), b"the peer's").unwrap();
    let peer = Beneath::open(&lab.root).unwrap().owned_by(Some((4321, 4321)));
    let stop = Arc::new(AtomicBool::new(false));
    // The peer's side: `real/sub` becomes a link to the outside folder (which holds an `inner` too),
    // then a folder again, as fast as it can.
    let swapper = {
        let (stop, root, outside) = (stop.clone(), lab.root.clone(), lab.outside.clone());
        std::thread::spawn(move || {
            let (sub, aside) = (root.join("real/sub"), root.join("real/aside"));
            let mut swaps = 0u32;
            while !stop.load(Ordering::Relaxed) {
                std::fs::rename(&sub, &aside).unwrap();
                symlink(outside.join("dir"), &sub).unwrap();
                std::thread::yield_now();
                std::fs::remove_file(&sub).unwrap();
                std::fs::rename(&aside, &sub).unwrap();
                swaps += 1;
                // A folder for a moment, so that some of the work lands.
                std::thread::sleep(Duration::from_micros(100));
            }
            swaps
        })
    };
    let mut done = 0;
    for i in 0..3000 {
        done += peer
            .write_atomically(format!("real/sub/f{}", i % 4), format!("real/sub/.t{i}"), b"x")
            .is_ok() as u32;
        let _ = peer.chown_tree("real");
        let _ = peer.set_mode("real/sub/inner", 0o777);
        let _ = peer.open_file("real/sub/inner", true).map(|f| f.set_len(0));
        let _ = peer.read_dir("real/sub");
        let _ = peer.remove_file(format!("real/sub/f{}", (i + 2) % 4));
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("{swaps} swaps, {done} of 3000 writes landed");
    assert!(swaps > 10 && done > 0, "both sides ran: {swaps} swaps, {done} writes");
    assert_eq!(snapshot(&lab.outside), before);
}
