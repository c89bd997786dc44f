//! A peer's file tree as the checkers see it: every regular file under the sync folder with its size
//! and BLAKE3 hash, and one hash over the whole tree. The daemon's own files (its profile's `ignore`
//! globs, e.g. Syncthing's `.stfolder`) are skipped (see `docs/PEER-CONTRACT.md`).
//!
//! The convergence monitor reads every tree several times a second, so a [`TreeReader`] caches hashes by
//! (size, mtime) and rehashes only files that changed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    pub hash: String,
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

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(h.finalize().to_hex().to_string())
}

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

    /// Reads the tree under `root`. Files that vanish while reading (the peer renamed or deleted them)
    /// are skipped: the next read will see the settled state.
    pub fn read(&mut self, root: &Path) -> std::io::Result<Tree> {
        let mut tree = Tree::default();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let Ok(entry) = entry else { continue };
                let path = entry.path();
                if let Some(ignore) = &self.ignore
                    && ignore.is_match(relative(root, &path))
                {
                    continue;
                }
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push(path);
                } else if meta.is_file()
                    && let Some(e) = self.entry(&path, &meta)
                {
                    tree.files.insert(relative(root, &path), e);
                }
            }
        }
        self.recheck_unlisted(root, &mut tree);
        Ok(tree)
    }

    /// Size and hash of a regular file, from the cache when size and mtime are unchanged.
    fn entry(&mut self, path: &Path, meta: &std::fs::Metadata) -> Option<FileEntry> {
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let hash = match self.cache.get(path) {
            Some((size, t, hash)) if *size == meta.len() && *t == mtime => hash.clone(),
            _ => {
                let hash = hash_file(path).ok()?;
                self.cache.insert(path.to_path_buf(), (meta.len(), mtime, hash.clone()));
                hash
            }
        };
        Some(FileEntry { size: meta.len(), hash })
    }

    /// A directory listing taken while the peer renames files in that directory can miss a name
    /// that exists all along (seen with 100 peers: a conflict copy's rename made the original look
    /// deleted for one round, and `no-loop` counted the flap). So every file seen before but not
    /// listed now is looked up by name; only a failed lookup means it is gone. Gone files leave
    /// the cache.
    fn recheck_unlisted(&mut self, root: &Path, tree: &mut Tree) {
        let unlisted: Vec<PathBuf> = self
            .cache
            .keys()
            .filter(|p| p.starts_with(root) && !tree.files.contains_key(&relative(root, p)))
            .cloned()
            .collect();
        for path in unlisted {
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    if let Some(e) = self.entry(&path, &meta) {
                        tree.files.insert(relative(root, &path), e);
                    }
                }
                _ => {
                    self.cache.remove(&path);
                }
            }
        }
    }
}

/// `path` relative to `root`, with `/` separators.
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .expect("under root")
        .to_string_lossy()
        .replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let tree = TreeReader::new(ignore).read(dir.path()).unwrap();
        assert_eq!(tree.files.keys().collect::<Vec<_>>(), vec!["a/b/x.txt", "top"]);
        let all = TreeReader::default().read(dir.path()).unwrap();
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
        let mut tree = reader.read(dir.path()).unwrap();
        assert_eq!(tree.files.len(), 2);
        // As if a listing raced with a rename and skipped both names; one is really gone.
        std::fs::remove_file(dir.path().join("gone")).unwrap();
        tree.files.clear();
        reader.recheck_unlisted(dir.path(), &mut tree);
        assert_eq!(tree.files.keys().collect::<Vec<_>>(), vec!["kept"]);
        assert!(!reader.cache.contains_key(&dir.path().join("gone")));
    }

    #[test]
    fn the_digest_changes_with_any_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"1").unwrap();
        let mut reader = TreeReader::default();
        let before = reader.read(dir.path()).unwrap().digest();
        std::fs::write(dir.path().join("f"), b"2").unwrap();
        let after = reader.read(dir.path()).unwrap().digest();
        assert_ne!(
            before, after,
            "a same-size rewrite must be seen (mtime or size changes)"
        );
    }
}
