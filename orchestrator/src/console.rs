//! The orchestrator's own log: every line `chaos run` prints to stderr (its progress, tracing's
//! warnings, the final error) also goes to `<run>/chaos.log`, so a nightly job's run folder says what
//! the orchestrator saw, not only what the peers logged.
//!
//! * [`say!`](crate::say) prints a line to stderr and keeps it;
//! * [`progress`] prints a progress line (redrawn in place on a terminal) and keeps one line per change;
//! * [`Writer`] is tracing's writer: stderr, and kept.
//!
//! What is printed before the run folder exists (image builds, leftovers of dead runs) is held after
//! [`begin`] and written once [`attach`] names the file; [`end`] closes it when the run is over (a
//! run that failed keeps its error line first, so that the runs index can show it). The sink is one per process, like stderr
//! itself and tracing's subscriber: one `chaos` process runs one run. The log holds plain text: the
//! colour codes tracing puts on a terminal are taken out.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// The orchestrator's log in the run folder.
pub const LOG_FILE: &str = "chaos.log";

/// At most this much is held before the run folder exists (a run writes a few lines there).
const PENDING_LIMIT: usize = 1 << 20;

/// Where kept output goes.
#[derive(Debug, Default)]
pub enum Sink {
    /// Nothing is kept (`chaos validate`, `chaos plan`, ...).
    #[default]
    Off,
    /// Held until the log file is known.
    Pending(Vec<u8>),
    File(std::fs::File),
}

impl Sink {
    /// Keeps `bytes` (without colour codes). A log that cannot be written is not worth failing a run.
    pub fn keep(&mut self, bytes: &[u8]) {
        match self {
            Sink::Off => {}
            Sink::Pending(held) => {
                if held.len() + bytes.len() <= PENDING_LIMIT {
                    held.extend_from_slice(&strip_ansi(bytes));
                }
            }
            Sink::File(f) => {
                let _ = f.write_all(&strip_ansi(bytes));
            }
        }
    }

    /// Opens (appends to) `path` and writes what was held there.
    pub fn attach(&mut self, path: &Path) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        if let Sink::Pending(held) = self {
            f.write_all(held)?;
        }
        *self = Sink::File(f);
        Ok(())
    }
}

static SINK: Mutex<Sink> = Mutex::new(Sink::Off);

fn sink() -> MutexGuard<'static, Sink> {
    SINK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts keeping what is printed (a run begins; its folder comes later).
pub fn begin() {
    *sink() = Sink::Pending(Vec::new());
}

/// From now on, what is printed is kept in `path` too, after what was held since [`begin`].
pub fn attach(path: &Path) -> std::io::Result<()> {
    sink().attach(path)
}

/// Stops keeping: the run is over, and what `chaos` prints after it is not the run's.
pub fn end() {
    *sink() = Sink::Off;
}

/// Keeps `bytes` without printing them.
pub fn keep(bytes: &[u8]) {
    sink().keep(bytes);
}

/// Prints one line to stderr and keeps it. Use through [`say!`](crate::say).
pub fn line(args: std::fmt::Arguments) {
    let text = format!("{args}\n");
    let _ = std::io::stderr().write_all(text.as_bytes());
    keep(text.as_bytes());
}

/// A progress line that redraws in place on a terminal and prints one line per change elsewhere (CI
/// logs); the log gets one line per change either way.
pub fn progress(text: &str) {
    if std::io::stderr().is_terminal() {
        eprint!("\r{text}   ");
    } else {
        eprintln!("{text}");
    }
    keep(format!("{text}\n").as_bytes());
}

/// `eprintln!`, kept in the run's `chaos.log` too.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::line(format_args!($($arg)*))
    };
}

/// tracing's writer: stderr, and kept.
pub struct Writer;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Writer {
    type Writer = Writer;

    fn make_writer(&'a self) -> Writer {
        Writer
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(buf)?;
        keep(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `bytes` without ANSI escape sequences (`ESC [ ... final byte`).
pub fn strip_ansi(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0x1b && bytes.get(i + 1) == Some(&b'[') {
            i += 2;
            while i < bytes.len() && !(0x40..=0x7e).contains(&bytes[i]) {
                i += 1;
            }
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_are_taken_out() {
        assert_eq!(
            strip_ansi(b"\x1b[2m2026\x1b[0m \x1b[33m WARN\x1b[0m chaos: x\n"),
            b"2026  WARN chaos: x\n"
        );
        assert_eq!(strip_ansi(b"plain"), b"plain");
        assert_eq!(strip_ansi(b"cut \x1b["), b"cut ");
    }

    #[test]
    fn what_is_printed_before_the_folder_exists_lands_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut s = Sink::Off;
        s.keep(b"not kept\n");
        s = Sink::Pending(Vec::new());
        s.keep(b"chaos: removed leftovers\n");
        s.attach(&path).unwrap();
        s.keep(b"\x1b[33m WARN\x1b[0m later\n");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "chaos: removed leftovers\n WARN later\n"
        );
        let mut big = Sink::Pending(Vec::new());
        big.keep(&vec![b'x'; PENDING_LIMIT + 1]);
        assert!(
            matches!(big, Sink::Pending(h) if h.is_empty()),
            "held output is bounded"
        );
    }
}
