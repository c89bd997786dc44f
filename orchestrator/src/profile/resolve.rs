//! From a profile's raw YAML to a validated [`Profile`]: ports resolved, paths checked, templates compiled
//! and rendered once with sample facts, regexes and globs compiled; every error points at the place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_saphyr::{Location, Spanned};

use super::raw::*;
use super::*;

/// Fault kinds as plans name them.
pub const KNOWN_FAULTS: [&str; 9] = crate::plan::FAULT_KEYS;

pub(super) struct Resolver<'a> {
    pub(super) file: &'a Path,
}

type R<T> = Result<T, PlanError>;

impl Resolver<'_> {
    fn err<T>(&self, at: &Location, message: impl Into<String>) -> R<T> {
        Err(PlanError {
            file: self.file.to_path_buf(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
        })
    }

    fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    pub(super) fn profile(&self, raw: RawProfile) -> R<Profile> {
        let name = raw.name.value.trim().to_string();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return self.err(
                &raw.name.referenced,
                "`name` must be non-empty letters, digits, `-` or `_`",
            );
        }
        if raw.image.tag.value.trim().is_empty() {
            return self.err(
                &raw.image.tag.referenced,
                "`image.tag` is empty; give the image's tag, e.g. `myteam/mysync:latest`",
            );
        }
        let c = &raw.container.value;
        let mut ports = BTreeMap::new();
        for (n, p) in &c.ports {
            if !(1..=65535).contains(&p.value) {
                return self.err(&p.referenced, format!("port `{n}` is {}; allowed: 1 to 65535", p.value));
            }
            ports.insert(n.clone(), p.value as u16);
        }
        let sample = Facts::sample(&ports);
        let data_dir = c.data_dir.value.trim_end_matches('/').to_string();
        if !data_dir.starts_with('/') || data_dir.contains("/../") || data_dir.is_empty() {
            return self.err(
                &c.data_dir.referenced,
                "`data_dir` must be an absolute path inside the container (not `/`), e.g. `/data`",
            );
        }
        let sync = c.sync_dir.value.trim_end_matches('/');
        let sync_rel = if sync == data_dir {
            ".".to_string()
        } else {
            match sync.strip_prefix(&format!("{data_dir}/")) {
                Some(rel) if !rel.split('/').any(|s| s == ".." || s == "." || s.is_empty()) => rel.to_string(),
                _ => {
                    return self.err(
                        &c.sync_dir.referenced,
                        format!(
                            "`sync_dir` must be `data_dir` ({data_dir}) or a folder under it, e.g. `{data_dir}/sync`"
                        ),
                    );
                }
            }
        };
        let user = match &c.user {
            None => None,
            Some(u) => Some(self.user(u)?),
        };
        let command = match &c.command {
            None => None,
            Some(v) => Some(self.templates(v, &sample)?),
        };
        let entrypoint = match &c.entrypoint {
            None => None,
            Some(v) => Some(self.templates(v, &sample)?),
        };
        let mut env = BTreeMap::new();
        for (k, v) in &c.env {
            if k.is_empty() || k.contains('=') {
                return self.err(
                    &v.referenced,
                    format!("environment name `{k}` is not allowed (empty or with `=`)"),
                );
            }
            env.insert(k.clone(), self.template(v, &sample)?);
        }
        let mut files = Vec::new();
        for f in &raw.files {
            files.push(self.file_spec(f, &sample)?);
        }
        let identity = match &raw.identity {
            None => IdentitySource::None,
            Some(i) => self.identity(i, &ports, &sample)?,
        };
        let r = &raw.ready.value;
        let ready = match (&r.http, &r.tcp, &r.exec) {
            (Some(h), None, None) => Probe::Http(self.http(h, &ports, &sample)?),
            (None, Some(t), None) => Probe::Tcp(self.port(&t.value.port, &ports)?),
            (None, None, Some(e)) => Probe::Exec(self.templates(e, &sample)?),
            _ => {
                return self.err(
                    &raw.ready.referenced,
                    "`ready` takes exactly one of `http`, `tcp`, `exec` (and `timeout`)",
                );
            }
        };
        let ready_timeout = r.timeout.map_or(Duration::from_secs(60), |d| d.0);
        if ready_timeout.is_zero() {
            return self.err(&raw.ready.referenced, "`ready.timeout` must be more than 0");
        }
        let mut introduce = Vec::new();
        for a in &raw.introduce {
            introduce.push(match (&a.value.http, &a.value.exec) {
                (Some(h), None) => Action::Http(self.http(h, &ports, &sample)?),
                (None, Some(e)) => Action::Exec(self.templates(e, &sample)?),
                _ => return self.err(&a.referenced, "an `introduce` step takes exactly one of `http`, `exec`"),
            });
        }
        let mut ignore = Vec::new();
        for g in &raw.ignore {
            if let Err(e) = globset::Glob::new(&g.value) {
                return self.err(&g.referenced, format!("`{}` is not a glob: {e}", g.value));
            }
            ignore.push(g.value.clone());
        }
        let conflicts = match &raw.conflicts {
            None => None,
            Some(c) => Some(self.conflicts(c)?),
        };
        let metrics = match &raw.metrics {
            None => None,
            Some(m) => Some(self.metrics(m, &ports)?),
        };
        let status = match &raw.status {
            None => None,
            Some(s) => {
                let http = self.http(&s.value.http, &ports, &sample)?;
                if let Some(p) = &s.value.wall_clock_ms {
                    self.pointer(p)?;
                }
                Some(StatusProbe {
                    http,
                    wall_clock_ms: s.value.wall_clock_ms.as_ref().map(|p| p.value.clone()),
                })
            }
        };
        let evidence = match &raw.evidence {
            None => None,
            Some(e) => {
                let e = &e.value;
                for p in [&e.list, &e.offender, &e.detected_ms, &e.statements] {
                    self.pointer(p)?;
                }
                Some(EvidenceProbe {
                    http: self.http(&e.http, &ports, &sample)?,
                    list: e.list.value.clone(),
                    offender: e.offender.value.clone(),
                    detected_ms: e.detected_ms.value.clone(),
                    statements: e.statements.value.clone(),
                })
            }
        };
        let mut crash = Vec::new();
        for p in &raw.crash {
            match regex::Regex::new(&p.value) {
                Ok(re) => crash.push(re),
                Err(e) => return self.err(&p.referenced, format!("`{}` is not a regular expression: {e}", p.value)),
            }
        }
        if raw.crash.is_empty() {
            crash.push(regex::Regex::new("panicked at").expect("a fixed pattern"));
        }
        let mut faults = BTreeSet::new();
        for f in &raw.faults.value {
            if !KNOWN_FAULTS.contains(&f.value.as_str()) {
                return self.err(
                    &f.referenced,
                    format!("unknown fault kind `{}`; allowed: {}", f.value, KNOWN_FAULTS.join(", ")),
                );
            }
            faults.insert(f.value.clone());
        }
        let clock = match raw.clock.as_ref().map(|c| (c.value.as_str(), &c.referenced)) {
            Some(("libfaketime", _)) => ClockMethod::Libfaketime,
            Some(("vdso", _)) => ClockMethod::Vdso,
            None | Some(("none", _)) => ClockMethod::Unsupported(raw.clock_why.clone().unwrap_or_else(|| {
                "the profile names no way to skew its clock (`clock: libfaketime` or `clock: vdso`)".into()
            })),
            Some((other, at)) => {
                return self.err(
                    at,
                    format!("unknown clock method `{other}`; allowed: libfaketime, vdso, none"),
                );
            }
        };
        if faults.contains("clock") && matches!(clock, ClockMethod::Unsupported(_)) {
            return self.err(
                &raw.faults.referenced,
                "`faults` lists `clock` but `clock` is neither `libfaketime` nor `vdso`: say how its clock is skewed, or drop `clock`",
            );
        }
        let byzantine_file = match &raw.byzantine_file {
            None => None,
            Some(b) => Some(self.relative(b)?),
        };
        if faults.contains("byzantine") && byzantine_file.is_none() {
            return self.err(
                &raw.faults.referenced,
                "`faults` lists `byzantine`, which needs `byzantine_file` (the daemon's control file)",
            );
        }
        let locks = match &raw.locks {
            None => None,
            Some(l) => Some(self.locks(l)?),
        };
        if faults.contains("lock") && locks.is_none() {
            return self.err(
                &raw.faults.referenced,
                "`faults` lists `lock`, which needs `locks` (where the daemon keeps its lock files)",
            );
        }
        let mut flavors = vec!["default".to_string()];
        flavors.extend(raw.flavors.into_iter().filter(|f| f != "default"));
        Ok(Profile {
            name,
            description: raw.description,
            source: self.file.to_path_buf(),
            dir: self.dir().to_path_buf(),
            image: raw.image.tag.value.trim().to_string(),
            build: raw.image.build.map(|b| b.value),
            command,
            entrypoint,
            env,
            user,
            data_dir,
            sync_rel,
            ports,
            sysctls: c.sysctls.clone(),
            files,
            identity,
            ready,
            ready_timeout,
            introduce,
            ignore,
            conventions: Conventions { conflicts, crash },
            metrics,
            status,
            evidence,
            faults,
            clock,
            byzantine_file,
            locks,
            flavors,
        })
    }

    /// Checks a template by rendering it once with sample facts.
    fn template(&self, t: &Spanned<String>, facts: &Facts) -> R<String> {
        if let Err(e) = template::render(&t.value, facts) {
            return self.err(&t.referenced, format!("{e} (templates may use: {})", FACT_NAMES));
        }
        Ok(t.value.clone())
    }

    fn templates(&self, v: &[Spanned<String>], facts: &Facts) -> R<Vec<String>> {
        v.iter().map(|t| self.template(t, facts)).collect()
    }

    fn user(&self, u: &Spanned<String>) -> R<(u32, u32)> {
        let parse = |s: &str| s.trim().parse::<u32>().ok();
        let pair = match u.value.split_once(':') {
            Some((a, b)) => parse(a).zip(parse(b)),
            None => parse(&u.value).map(|a| (a, a)),
        };
        match pair {
            Some(p) => Ok(p),
            None => self.err(
                &u.referenced,
                format!(
                    "`user` is `{}`; allowed: numeric `uid` or `uid:gid`, e.g. `1000:1000`",
                    u.value
                ),
            ),
        }
    }

    /// A path relative to the peer's data folder: no `..`, not absolute.
    fn relative(&self, p: &Spanned<String>) -> R<String> {
        let v = p.value.trim();
        if v.is_empty() || v.starts_with('/') || v.split('/').any(|s| s == "..") {
            return self.err(
                &p.referenced,
                format!("`{v}` must be a path relative to the peer's data folder, without `..`"),
            );
        }
        Ok(v.to_string())
    }

    fn file_spec(&self, f: &Spanned<RawFile>, facts: &Facts) -> R<FileSpec> {
        let path = self.relative(&f.value.path)?;
        let template = match (&f.value.template, &f.value.content) {
            (Some(t), None) => {
                let rel = self.relative(t)?;
                let file = self.dir().join(&rel);
                let text = match std::fs::read_to_string(&file) {
                    Ok(t) => t,
                    Err(e) => {
                        return self.err(
                            &t.referenced,
                            format!("cannot read the template {}: {e}", file.display()),
                        );
                    }
                };
                if let Err(e) = template::render(&text, facts) {
                    return self.err(&t.referenced, format!("in {}: {e}", file.display()));
                }
                text
            }
            (None, Some(c)) => self.template(c, facts)?,
            _ => {
                return self.err(
                    &f.referenced,
                    "a file takes exactly one of `template` (a file in the profile's folder) or `content`",
                );
            }
        };
        let mode = f.value.mode.unwrap_or(0o644);
        if mode > 0o7777 {
            return self.err(
                &f.referenced,
                format!("`mode` {mode:o} is not a file mode; allowed: 0 to 0o7777"),
            );
        }
        Ok(FileSpec { path, template, mode })
    }

    fn port(&self, p: &Spanned<RawPort>, ports: &BTreeMap<String, u16>) -> R<u16> {
        match &p.value {
            RawPort::Number(n) if (1..=65535).contains(n) => Ok(*n as u16),
            RawPort::Number(n) => self.err(&p.referenced, format!("port {n}; allowed: 1 to 65535")),
            RawPort::Name(n) => match ports.get(n) {
                Some(v) => Ok(*v),
                None => self.err(
                    &p.referenced,
                    format!(
                        "no port named `{n}` in `container.ports` (it has: {})",
                        ports.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
            },
        }
    }

    fn pointer(&self, p: &Spanned<String>) -> R<()> {
        if !p.value.is_empty() && !p.value.starts_with('/') {
            return self.err(
                &p.referenced,
                format!("`{}` is not a JSON pointer; it starts with `/`, e.g. `/myID`", p.value),
            );
        }
        Ok(())
    }

    fn http(&self, h: &Spanned<RawHttp>, ports: &BTreeMap<String, u16>, facts: &Facts) -> R<HttpCall> {
        let v = &h.value;
        let method = match &v.method {
            None => "GET".to_string(),
            Some(m) => {
                let up = m.value.to_ascii_uppercase();
                if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&up.as_str()) {
                    return self.err(
                        &m.referenced,
                        format!("method `{}`; allowed: GET, POST, PUT, PATCH, DELETE", m.value),
                    );
                }
                up
            }
        };
        if !v.path.value.starts_with('/') {
            return self.err(
                &v.path.referenced,
                format!("`path` is `{}`; it must start with `/`", v.path.value),
            );
        }
        let mut headers = BTreeMap::new();
        for (k, t) in &v.headers {
            headers.insert(k.clone(), self.template(t, facts)?);
        }
        let body = match &v.body {
            None => None,
            Some(b) => Some(self.template(b, facts)?),
        };
        if let Some(p) = &v.pointer {
            self.pointer(p)?;
        }
        let equals = match &v.equals {
            None => None,
            Some(e) => Some(self.template(e, facts)?),
        };
        if equals.is_some() && v.pointer.is_none() {
            return self.err(
                &h.referenced,
                "`equals` needs `pointer` (which value of the JSON answer to compare)",
            );
        }
        if let Some(s) = v.status
            && !(100..=599).contains(&s)
        {
            return self.err(&h.referenced, format!("`status` {s}; allowed: 100 to 599"));
        }
        Ok(HttpCall {
            method,
            port: self.port(&v.port, ports)?,
            path: self.template(&v.path, facts)?,
            headers,
            body,
            status: v.status,
            pointer: v.pointer.as_ref().map(|p| p.value.clone()),
            equals,
        })
    }

    fn identity(&self, i: &Spanned<RawIdentity>, ports: &BTreeMap<String, u16>, facts: &Facts) -> R<IdentitySource> {
        let v = &i.value;
        match (v.from.value.as_str(), &v.http, &v.exec) {
            ("none", None, None) => Ok(IdentitySource::None),
            ("host-ed25519", None, None) => Ok(IdentitySource::HostEd25519),
            ("http", Some(h), None) => {
                if h.value.pointer.is_none() {
                    return self.err(
                        &h.referenced,
                        "an identity read over HTTP needs `pointer` (where in the JSON answer it is)",
                    );
                }
                Ok(IdentitySource::Http(self.http(h, ports, facts)?))
            }
            ("exec", None, Some(e)) => Ok(IdentitySource::Exec(self.templates(e, facts)?)),
            (from @ ("none" | "host-ed25519" | "http" | "exec"), _, _) => self.err(
                &i.referenced,
                format!(
                    "`identity.from: {from}` takes {}",
                    match from {
                        "http" => "an `http` call (and no `exec`)",
                        "exec" => "an `exec` command (and no `http`)",
                        _ => "neither `http` nor `exec`",
                    }
                ),
            ),
            (other, _, _) => self.err(
                &v.from.referenced,
                format!("unknown identity source `{other}`; allowed: none, host-ed25519, http, exec"),
            ),
        }
    }

    fn conflicts(&self, c: &Spanned<String>) -> R<regex::Regex> {
        let re = match regex::Regex::new(&c.value) {
            Ok(re) => re,
            Err(e) => return self.err(&c.referenced, format!("`conflicts` is not a regular expression: {e}")),
        };
        let groups: Vec<&str> = re.capture_names().flatten().collect();
        if !groups.contains(&"stem") {
            return self.err(
                &c.referenced,
                "`conflicts` needs a group `(?P<stem>...)` (and optionally `ext`, `author`, `hash`): the original path is stem + ext",
            );
        }
        if let Some(g) = groups.iter().find(|g| !["stem", "ext", "author", "hash"].contains(g)) {
            return self.err(
                &c.referenced,
                format!("unknown group `{g}` in `conflicts`; allowed: stem, ext, author, hash"),
            );
        }
        Ok(re)
    }

    fn metrics(&self, m: &Spanned<RawMetrics>, ports: &BTreeMap<String, u16>) -> R<Metrics> {
        let mut counters = BTreeMap::new();
        for (role, s) in &m.value.counters {
            let Some(r) = Role::parse(role).filter(|r| r.from_metrics()) else {
                let allowed: Vec<&str> = Role::ALL
                    .iter()
                    .filter(|r| r.from_metrics())
                    .map(|r| r.as_str())
                    .collect();
                return self.err(
                    &s.referenced,
                    format!("unknown counter role `{role}`; allowed: {}", allowed.join(", ")),
                );
            };
            let series = match &s.value {
                RawSeries::Name(n) => Series {
                    name: n.clone(),
                    only: BTreeMap::new(),
                    except: BTreeMap::new(),
                },
                RawSeries::Select(sel) => Series {
                    name: sel.name.clone(),
                    only: sel.only.clone(),
                    except: sel.except.clone(),
                },
            };
            counters.insert(r, series);
        }
        let path = m.value.path.clone().unwrap_or_else(|| "/metrics".into());
        if !path.starts_with('/') {
            return self.err(
                &m.referenced,
                format!("metrics `path` is `{path}`; it must start with `/`"),
            );
        }
        Ok(Metrics {
            port: self.port(&m.value.port, ports)?,
            path,
            counters,
        })
    }

    fn locks(&self, l: &Spanned<RawLocks>) -> R<LockFormat> {
        let dir = self.relative(&l.value.dir)?;
        let ctx = minijinja::context! { path => "a/b.txt", path_hash => "0".repeat(64), now_ms => 0 };
        for t in [&l.value.name, &l.value.stale] {
            let mut env = minijinja::Environment::new();
            env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
            if let Err(e) = env.render_str(&t.value, &ctx) {
                return self.err(
                    &t.referenced,
                    format!("{e} (lock templates may use: path, path_hash, now_ms)"),
                );
            }
        }
        Ok(LockFormat {
            dir,
            name: l.value.name.value.clone(),
            stale: l.value.stale.value.clone(),
        })
    }
}

/// The facts templates may use, for error messages.
const FACT_NAMES: &str = "peer.{name,index,ip,id}, secret, key_hex, peers, neighbours, ports.<name>, plan.{name,seed,flavor,anti_entropy_ms,quarantine_ms}, run_id";
