//! `syncpeer`: the reference peer-to-peer file-sync daemon of syftchaos.
//!
//! Brief overview (see `docs/PEER.md` for the protocol and why it survives the seed's scenarios):
//! * [`entry::Entry`]: one signed version of a path (version vector, BLAKE3, size, tombstone flag,
//!   author, [`hlc::Hlc`] timestamp); [`entry::resolve`] is the pure rule deciding between two.
//! * [`index::Index`]: every path's current entry, crash-safe on disk.
//! * [`node::Node`]: the state every task shares; the flavor (default, [`legacy`], [`leak`], a
//!   [`mutant`]) is a value of its settings that it hands to the code whose rules it changes.
//! * [`scanner`] + [`edits`]: local edits become versions only when their hash changes; the
//!   scanner's queue is [`scan_queue`].
//! * [`apply`]: received versions are written through temp file + rename under a [`locks`] lock.
//! * [`sync`], [`fetch`], [`server`], [`wire`]: pull-based anti-entropy over HTTP with push hints.
//! * [`tls`], [`listener`], [`client`]: the sync port's mutual TLS; each end pins the other's
//!   ed25519 key from the config, and a request's sender is its connection's verified key.
//! * [`scrub`]: damaged files (content changed, mtime kept, see [`damage`]) are repaired, never
//!   authored.
//! * [`beneath`]: every file operation in the sync folder, never through a symlink.
//! * [`rate_limit`]: bounded per-sender token buckets for incoming requests.
//! * [`byzantine`]: a control file turns the daemon into a liar (tamper, forge, withhold, flood,
//!   slowloris, equivocate, replay, drop, sybil) for chaos plans; absent, the peer is honest.
//!   [`flood`] is its flood task, [`lies`] what it changes in the versions it serves, [`replay`]
//!   what it replays, [`targeted`] what it drops, [`sybil`] the identities it makes up.
//! * [`evidence`] + [`equivocation`]: proofs that an author signed two statements under one
//!   counter: found, checked, kept on disk, told to the neighbours; the offender is quarantined.
//! * [`audit`]: who sent what: each version taken or refused and each conviction, by the sender's
//!   TLS identity, in a bounded, rotated `audit.jsonl` (`GET /v1/audit`).
//! * [`status`], [`metrics`]: `GET /v1/status`, `GET /metrics`, `GET /v1/evidence`, `GET /v1/audit`.
//! * [`legacy`]: `--flavor legacy`, the seed's original (broken on purpose) design, for checker tests.
//! * [`mutant`]: `--flavor mutant-*`, one small deliberate bug per check of the chaos lab.
//! * [`config`]: YAML + flags + `SYNCPEER_*` environment; [`daemon`] wires it all.
//!
//! Layers: the modules that hold state ([`index`], [`damage`], [`byzantine`], [`evidence`], [`audit`],
//! [`scan_queue`], [`locks`], [`metrics`], ...) and the pure rules ([`entry`], [`legacy`], [`knowledge`], [`codec`])
//! sit below [`node`]; the tasks and servers that use a node sit above it. No module imports one
//! that imports it back.

pub mod apply;
pub mod audit;
pub mod beneath;
pub mod byzantine;
pub mod client;
pub mod codec;
pub mod config;
pub mod daemon;
pub mod damage;
pub mod edits;
pub mod entry;
pub mod equivocation;
pub mod evidence;
pub mod fetch;
pub mod flood;
pub mod hlc;
pub mod identity;
pub mod index;
pub mod knowledge;
pub mod leak;
pub mod legacy;
pub mod lies;
pub mod listener;
pub mod locks;
pub mod metrics;
pub mod mutant;
pub mod mutex;
pub mod node;
pub mod protocol;
pub mod rate_limit;
pub mod replay;
pub mod scan_queue;
pub mod scanner;
pub mod scrub;
pub mod server;
pub mod status;
pub mod sybil;
pub mod sync;
pub mod targeted;
pub mod tls;
pub mod version_vector;
pub mod wire;
