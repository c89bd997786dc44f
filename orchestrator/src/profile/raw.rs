//! A profile's YAML as written: every `Raw*` type mirrors the file (unknown keys are rejected) and keeps
//! the spans that `resolve` needs for its messages. Nothing here checks meaning.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::plan::Dur;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) description: String,
    pub(super) image: RawImage,
    pub(super) container: Spanned<RawContainer>,
    #[serde(default)]
    pub(super) files: Vec<Spanned<RawFile>>,
    #[serde(default)]
    pub(super) identity: Option<Spanned<RawIdentity>>,
    pub(super) ready: Spanned<RawReady>,
    #[serde(default)]
    pub(super) introduce: Vec<Spanned<RawAction>>,
    #[serde(default)]
    pub(super) ignore: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) conflicts: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) metrics: Option<Spanned<RawMetrics>>,
    #[serde(default)]
    pub(super) status: Option<Spanned<RawStatus>>,
    #[serde(default)]
    pub(super) evidence: Option<Spanned<RawEvidence>>,
    #[serde(default)]
    pub(super) crash: Vec<Spanned<String>>,
    pub(super) faults: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) clock: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) clock_why: Option<String>,
    #[serde(default)]
    pub(super) byzantine_file: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) locks: Option<Spanned<RawLocks>>,
    #[serde(default)]
    pub(super) flavors: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImage {
    pub(super) tag: Spanned<String>,
    #[serde(default)]
    pub(super) build: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContainer {
    #[serde(default)]
    pub(super) command: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) entrypoint: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(super) user: Option<Spanned<String>>,
    pub(super) data_dir: Spanned<String>,
    pub(super) sync_dir: Spanned<String>,
    #[serde(default)]
    pub(super) ports: BTreeMap<String, Spanned<i64>>,
    #[serde(default)]
    pub(super) sysctls: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) path: Spanned<String>,
    #[serde(default)]
    pub(super) template: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) content: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) mode: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    #[serde(default)]
    pub(super) method: Option<Spanned<String>>,
    pub(super) port: Spanned<RawPort>,
    pub(super) path: Spanned<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(super) body: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) status: Option<u16>,
    #[serde(default)]
    pub(super) pointer: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) equals: Option<Spanned<String>>,
}

/// A port by its name in `container.ports`, or a number.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawPort {
    Number(i64),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    pub(super) from: Spanned<String>,
    #[serde(default)]
    pub(super) http: Option<Spanned<RawHttp>>,
    #[serde(default)]
    pub(super) exec: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReady {
    #[serde(default)]
    pub(super) http: Option<Spanned<RawHttp>>,
    #[serde(default)]
    pub(super) tcp: Option<Spanned<RawTcp>>,
    #[serde(default)]
    pub(super) exec: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTcp {
    pub(super) port: Spanned<RawPort>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAction {
    #[serde(default)]
    pub(super) http: Option<Spanned<RawHttp>>,
    #[serde(default)]
    pub(super) exec: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) port: Spanned<RawPort>,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) counters: BTreeMap<String, Spanned<RawSeries>>,
}

/// `role: metric_name` or `role: {name: metric, only: {label: value}, except: {label: value}}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawSeries {
    Name(String),
    Select(RawSelect),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSelect {
    pub(super) name: String,
    #[serde(default)]
    pub(super) only: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) except: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatus {
    pub(super) http: Spanned<RawHttp>,
    #[serde(default)]
    pub(super) wall_clock_ms: Option<Spanned<String>>,
}

/// `evidence`: where the daemon lists the proofs of misbehaviour it holds (JSON pointers into the
/// answer, then into each proof).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvidence {
    pub(super) http: Spanned<RawHttp>,
    pub(super) list: Spanned<String>,
    pub(super) offender: Spanned<String>,
    pub(super) detected_ms: Spanned<String>,
    pub(super) statements: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocks {
    pub(super) dir: Spanned<String>,
    pub(super) name: Spanned<String>,
    pub(super) stale: Spanned<String>,
}
