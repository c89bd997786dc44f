//! Where a run's streamed files go, and how they are read back whether or not they were compressed.
//!
//! A run streams its observations and metrics into one folder for its whole length. A soak cuts its
//! recording into windows: at each window's end it [`Segments::rotate`]s to the next window's folder,
//! and each stream ([`Appender`]) notices at its next write and continues in the new folder, so
//! nothing is ever held in memory and each finished window's files can be judged alone and then
//! compressed ([`compress`]). Readers ([`lines`]) take `name` or, when only that exists, `name.gz`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The folder the streams write into now, shared by the run and its collectors.
#[derive(Clone, Debug)]
pub struct Segments(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    generation: AtomicU64,
    dir: Mutex<PathBuf>,
}

impl Segments {
    pub fn new(dir: &Path) -> Segments {
        Segments(Arc::new(Inner {
            generation: AtomicU64::new(0),
            dir: Mutex::new(dir.to_path_buf()),
        }))
    }

    /// The folder written now.
    pub fn dir(&self) -> PathBuf {
        self.0.dir.lock().expect("segments lock").clone()
    }

    /// From now on, streams write into `dir` (made if missing).
    pub fn rotate(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        *self.0.dir.lock().expect("segments lock") = dir.to_path_buf();
        self.0.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn current(&self) -> (u64, PathBuf) {
        let dir = self.0.dir.lock().expect("segments lock");
        (self.0.generation.load(Ordering::SeqCst), dir.clone())
    }
}

/// One stream of lines (`observations.jsonl`, `metrics.jsonl`) that follows its [`Segments`].
pub struct Appender {
    segments: Segments,
    name: &'static str,
    generation: u64,
    out: BufWriter<File>,
}

impl Appender {
    /// Creates `name` in the current folder.
    pub fn create(segments: &Segments, name: &'static str) -> std::io::Result<Appender> {
        let (generation, dir) = segments.current();
        Ok(Appender {
            segments: segments.clone(),
            name,
            generation,
            out: BufWriter::new(File::create(dir.join(name))?),
        })
    }

    /// Writes through `f` into the current folder's file (switching files first if the folder
    /// changed), then flushes: a crashed run still leaves what it saw.
    pub fn write(&mut self, f: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> std::io::Result<()> {
        let (generation, dir) = self.segments.current();
        if generation != self.generation {
            self.out.flush()?;
            self.out = BufWriter::new(File::create(dir.join(self.name))?);
            self.generation = generation;
        }
        f(&mut self.out)?;
        self.out.flush()
    }
}

/// The lines of `path`, or of `path.gz` when only the compressed file exists; `None` when neither does.
pub fn lines(path: &Path) -> Option<Box<dyn Iterator<Item = std::io::Result<String>>>> {
    if let Ok(f) = File::open(path) {
        return Some(Box::new(BufReader::new(f).lines()));
    }
    let f = File::open(gz_path(path)).ok()?;
    Some(Box::new(BufReader::new(flate2::read::GzDecoder::new(f)).lines()))
}

fn gz_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// Replaces `path` by `path.gz` (written aside and renamed, so an interrupted compression leaves the
/// plain file); returns the bytes saved. A missing file is not an error.
pub fn compress(path: &Path) -> std::io::Result<u64> {
    let mut input = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let before = input.metadata()?.len();
    let gz = gz_path(path);
    let mut tmp = gz.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut enc = flate2::write::GzEncoder::new(BufWriter::new(File::create(&tmp)?), flate2::Compression::default());
    std::io::copy(&mut input, &mut enc)?;
    enc.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(path)?;
    Ok(before.saturating_sub(std::fs::metadata(&gz)?.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_follows_its_segments_and_reads_back_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("w0"), dir.path().join("w1"));
        std::fs::create_dir_all(&a).unwrap();
        let seg = Segments::new(&a);
        let mut s = Appender::create(&seg, "x.jsonl").unwrap();
        s.write(|w| writeln!(w, "one")).unwrap();
        seg.rotate(&b).unwrap();
        s.write(|w| writeln!(w, "two")).unwrap();
        assert_eq!(std::fs::read_to_string(a.join("x.jsonl")).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(b.join("x.jsonl")).unwrap(), "two\n");
        assert!(compress(&a.join("x.jsonl")).is_ok());
        assert!(!a.join("x.jsonl").exists() && a.join("x.jsonl.gz").exists());
        let back: Vec<String> = lines(&a.join("x.jsonl")).unwrap().map(Result::unwrap).collect();
        assert_eq!(back, ["one"]);
        assert!(lines(&dir.path().join("none")).is_none());
        assert_eq!(compress(&dir.path().join("none")).unwrap(), 0);
    }
}
