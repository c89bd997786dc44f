//! A peer's file tree as the checkers see it: every regular file under the sync folder with its size
//! and BLAKE3 hash, every symlink as a symlink, and one hash over the whole tree. The daemon's own
//! files (its profile's `ignore` globs, e.g. Syncthing's `.stfolder`) are skipped (see
//! `docs/PEER-CONTRACT.md`); so are FIFOs, sockets and device nodes.
//!
//! Trees are read through a [`Beneath`] handle on the sync folder, so no symlink is ever followed,
//! in the folder or on the way to it. A symlink is an entry of its own: its size is the length of
//! what it points at, its hash is [`SYMLINK`] followed by the BLAKE3 of that target text (read, not
//! followed). No write produces such a hash, so the checkers judge a link honestly with no special
//! case: peers holding the same link agree (`converged`), and a link where a write's content should
//! be is content no write produced (`no-corruption`, `right-state`).
//!
//! The convergence monitor reads every tree several times a second, so a [`TreeReader`] caches hashes by
//! (size, mtime) and rehashes only files that changed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::record::beneath::{Beneath, Kind, Meta};

/// How a symlink's hash begins (see the module's overview).
pub const SYMLINK: &str = "symlink:";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    pub hash: String,
}

impl FileEntry {
    /// A symlink pointing at `target` (its text, never followed).
    pub fn symlink(target: &[u8]) -> FileEntry {
        FileEntry {
            size: target.len() as u64,
            hash: format!("{SYMLINK}{}", blake3::hash(target).to_hex()),
        }
    }

    pub fn is_symlink(&self) -> bool {
        self.hash.starts_with(SYMLINK)
    }
}

/// Relative path (with `/`) -> entry, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub files: BTreeMap<String, FileEntry>,
}

impl Tree {
    /// One hash over (path, size, hash) of every file: equal exactly when the trees are equal.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        for (path, e) in &self.files {
            h.update(path.as_bytes());
            h.update(&[0]);
            h.update(&e.size.to_le_bytes());
            h.update(e.hash.as_bytes());
            h.update(&[0]);
        }
        h.finalize().to_hex()[..16].to_string()
    }
}

/// Hashes a file's content the way trees and the history do.
pub fn hash_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Hashes the regular file `rel` beneath `dir` (never through a symlink).
pub fn hash_file(dir: &Beneath, rel: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(dir.open_file(rel, false)?)?;
    Ok(h.finalize().to_hex().to_string())
}

/// Reads one folder's tree, again and again: its cache is keyed by paths relative to that folder.
#[derive(Default)]
pub struct TreeReader {
    cache: HashMap<PathBuf, (u64, SystemTime, String)>,
    ignore: Option<std::sync::Arc<globset::GlobSet>>,
}

/// The daemon's own files as one matcher over paths relative to the sync folder.
pub fn ignore_set(globs: &[String]) -> std::sync::Arc<globset::GlobSet> {
    let mut b = globset::GlobSetBuilder::new();
    for g in globs {
        if let Ok(g) = globset::Glob::new(g) {
            b.add(g);
        }
    }
    std::sync::Arc::new(b.build().unwrap_or_else(|_| globset::GlobSet::empty()))
}

impl TreeReader {
    /// A reader that skips paths matching `ignore` (files, and folders with all they hold).
    pub fn new(ignore: std::sync::Arc<globset::GlobSet>) -> TreeReader {
        TreeReader {
            cache: HashMap::new(),
            ignore: Some(ignore),
        }
    }

    /// Reads the tree under `dir`. Files that vanish while reading (the peer renamed or deleted them)
    /// are skipped, and so is a folder that stops being one between its listing and its reading (it
    /// became a symlink or a file): the next read will see the settled state.
    pub fn read(&mut self, dir: &Beneath) -> std::io::Result<Tree> {
        let mut tree = Tree::default();
        let mut stack = vec![PathBuf::new()];
        while let Some(folder) = stack.pop() {
            let entries = match dir.read_dir(&folder) {
                Ok(e) => e,
                Err(_)
                    if !folder.as_os_str().is_empty() && !dir.metadata(&folder).is_ok_and(|m| m.kind == Kind::Dir) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (name, meta) in entries {
                let rel = folder.join(name);
                let key = slashed(&rel);
                if let Some(ignore) = &self.ignore
                    && ignore.is_match(&key)
                {
                    continue;
                }
                match meta.kind {
                    Kind::Dir => stack.push(rel),
                    Kind::File => {
                        if let Some(e) = self.entry(dir, &rel, &meta) {
                            tree.files.insert(key, e);
                        }
                    }
                    Kind::Symlink => {
                        if let Ok(target) = dir.read_link(&rel) {
                            tree.files.insert(key, FileEntry::symlink(&target));
                        }
                    }
                    Kind::Other => {}
                }
            }
        }
        self.recheck_unlisted(dir, &mut tree);
        Ok(tree)
    }

    /// Size and hash of a regular file, from the cache when size and mtime are unchanged.
    fn entry(&mut self, dir: &Beneath, rel: &Path, meta: &Meta) -> Option<FileEntry> {
        let hash = match self.cache.get(rel) {
            Some((size, t, hash)) if *size == meta.len && *t == meta.modified => hash.clone(),
            _ => {
                let hash = hash_file(dir, rel).ok()?;
                self.cache
                    .insert(rel.to_path_buf(), (meta.len, meta.modified, hash.clone()));
                hash
            }
        };
        Some(FileEntry { size: meta.len, hash })
    }

    /// A directory listing taken while the peer renames files in that directory can miss a name
    /// that exists all along (seen with 100 peers: a conflict copy's rename made the original look
    /// deleted for one round, and `no-loop` counted the flap). So every file seen before but not
    /// listed now is looked up by name; only a failed lookup means it is gone. Gone files leave
    /// the cache.
    fn recheck_unlisted(&mut self, dir: &Beneath, tree: &mut Tree) {
        let unlisted: Vec<PathBuf> = self
            .cache
            .keys()
            .filter(|p| !tree.files.contains_key(&slashed(p)))
            .cloned()
            .collect();
        for rel in unlisted {
            match dir.metadata(&rel) {
                Ok(meta) if meta.kind == Kind::File => {
                    if let Some(e) = self.entry(dir, &rel, &meta) {
                        tree.files.insert(slashed(&rel), e);
                    }
                }
                _ => {
                    self.cache.remove(&rel);
                }
            }
        }
    }
}

/// A path relative to the sync folder as trees name it, with `/` separators.
fn slashed(rel: &Path) -> String {
    rel.to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Beneath {
        Beneath::open(dir).unwrap()
    }

    #[test]
    fn trees_list_user_files_and_skip_the_daemons_own() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.txt"), b"hello").unwrap();
        std::fs::write(dir.path().join("top"), b"").unwrap();
        std::fs::create_dir_all(dir.path().join(".syncpeer-tmp")).unwrap();
        std::fs::write(dir.path().join(".syncpeer-tmp/partial"), b"zz").unwrap();
        std::fs::create_dir_all(dir.path().join("a/.stversions")).unwrap();
        std::fs::write(dir.path().join("a/.stversions/old"), b"o").unwrap();
        let ignore = ignore_set(&[".syncpeer*".into(), "**/.stversions".into()]);
        let tree = TreeReader::new(ignore).read(&open(dir.path())).unwrap();
        assert_eq!(tree.files.keys().collect::<Vec<_>>(), vec!["a/b/x.txt", "top"]);
        let all = TreeReader::default().read(&open(dir.path())).unwrap();
        assert_eq!(all.files.len(), 4, "no profile, nothing skipped");
        assert_eq!(
            tree.files["a/b/x.txt"],
            FileEntry {
                size: 5,
                hash: hash_bytes(b"hello")
            }
        );
    }

    #[test]
    fn a_file_the_listing_missed_is_looked_up_by_name_and_a_gone_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kept"), b"k").unwrap();
        std::fs::write(dir.path().join("gone"), b"g").unwrap();
        let mut reader = TreeReader::default();
        let mut tree = reader.read(&open(dir.path())).unwrap();
        assert_eq!(tree.files.len(), 2);
        // As if a listing raced with a rename and skipped both names; one is really gone.
        std::fs::remove_file(dir.path().join("gone")).unwrap();
        tree.files.clear();
        reader.recheck_unlisted(&open(dir.path()), &mut tree);
        assert_eq!(tree.files.keys().collect::<Vec<_>>(), vec!["kept"]);
        assert!(!reader.cache.contains_key(Path::new("gone")));
    }

    #[test]
    fn the_digest_changes_with_any_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"1").unwrap();
        let mut reader = TreeReader::default();
        let before = reader.read(&open(dir.path())).unwrap().digest();
        std::fs::write(dir.path().join("f"), b"2").unwrap();
        let after = reader.read(&open(dir.path())).unwrap().digest();
        assert_ne!(
            before, after,
            "a same-size rewrite must be seen (mtime or size changes)"
        );
    }

    #[test]
    fn symlinks_are_entries_of_their_own_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (sync, outside) = (dir.path().join("sync"), dir.path().join("outside"));
        std::fs::create_dir_all(&sync).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"not the peer's").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), sync.join("to-file")).unwrap();
        std::os::unix::fs::symlink(&outside, sync.join("to-dir")).unwrap();
        std::fs::write(sync.join("real"), b"mine").unwrap();
        let tree = TreeReader::default().read(&open(&sync)).unwrap();
        assert_eq!(tree.files.keys().collect::<Vec<_>>(), vec!["real", "to-dir", "to-file"]);
        let link = &tree.files["to-file"];
        assert!(link.is_symlink() && !tree.files["real"].is_symlink());
        assert_eq!(
            *link,
            FileEntry::symlink(outside.join("secret").as_os_str().as_encoded_bytes())
        );
        assert_ne!(
            link.hash,
            hash_bytes(b"not the peer's"),
            "the target's content is never read"
        );
        assert!(
            !tree.files.keys().any(|k| k.contains("secret")),
            "nothing below a folder link"
        );
        // A sync folder that is itself a link is not read at all.
        let swapped = dir.path().join("swapped");
        std::os::unix::fs::symlink(&outside, &swapped).unwrap();
        assert!(Beneath::open(dir.path()).unwrap().dir("swapped").is_err());
    }
}
