//! The scanner's queue: paths to look at, each with how soon ([`Urgency`]). Filesystem events,
//! the blob server (a file whose stamp moved under it) and the scrub (an edit no event reported)
//! send into it; the scanner drains it. The node holds the sending end ([`ScanTx`]), so the
//! queue's types sit below the node and the modules that send.

use std::path::PathBuf;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// How soon an event's path should be looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// The content is complete (closed after writing, renamed in, removed): look now.
    Now,
    /// Being written (created, modified): look once it was quiet for [`crate::scanner::SETTLE`], unless a
    /// close-after-write comes first. Hashing every write of a file being copied in would author a
    /// version per partial state.
    Settle,
}

/// The sending end: absolute paths (a folder means: walk everything under it).
pub type ScanTx = UnboundedSender<(PathBuf, Urgency)>;

/// The receiving end, the scanner's.
pub type ScanRx = UnboundedReceiver<(PathBuf, Urgency)>;
