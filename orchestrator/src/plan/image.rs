//! `image:` values: a Docker image reference (`[registry[:port]/]path[:tag][@digest]`), checked
//! with the grammar of the distribution project's `reference` package, so a typo is a plan error
//! and not a failed pull minutes into a run.

use std::sync::LazyLock;

use regex::Regex;

use super::limits::MAX_IMAGE_LEN;

const ALLOWED: &str = "an image reference such as syftchaos/peer:latest, \
     registry.example:5000/team/peer:1.2 or name@sha256:<64 hex digits>";

static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    let domain_part = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let host = format!(r"(?:{domain_part}(?:\.{domain_part})*|\[[0-9a-fA-F:]+\])");
    let domain = format!(r"{host}(?::[0-9]+)?");
    let tag = r"[\w][\w.-]{0,127}";
    let digest = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}";
    Regex::new(&format!(
        r"^(?:(?P<domain>{domain})/)?{component}(?:/{component})*(?::{tag})?(?:@{digest})?$"
    ))
    .expect("the reference grammar compiles")
});

/// `Ok` for a valid image reference; else the message says what is allowed.
pub fn check_image(image: &str) -> Result<(), String> {
    let shown: String = image.chars().take(60).collect();
    if image.is_empty() || image.len() > MAX_IMAGE_LEN {
        return Err(format!(
            "`image` is {} characters long; allowed: 1 to {MAX_IMAGE_LEN} characters, {ALLOWED}",
            image.len()
        ));
    }
    let Some(m) = REFERENCE.captures(image) else {
        return Err(format!(
            "`image` `{shown}` is not an image reference; allowed: {ALLOWED}"
        ));
    };
    // Docker reads a first component as a registry only if it looks like a host: a dot, a port or
    // `localhost`; otherwise it is part of the lowercase path, where capitals are refused.
    if let Some(d) = m.name("domain")
        && !(d.as_str().contains(['.', ':', '[']) || d.as_str() == "localhost")
        && d.as_str().chars().any(|c| c.is_ascii_uppercase())
    {
        return Err(format!(
            "`image` `{shown}` has capitals in its repository name; allowed: {ALLOWED}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_docker_accepts_pass() {
        for ok in [
            "syftchaos/peer:latest",
            "busybox",
            "localhost:5000/a/b:tag",
            "registry.example/team/peer@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "a__b/c-d.e:1.2.3-rc_1",
        ] {
            assert!(check_image(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            "UPPER/Case:tag",
            "a b",
            "repo:tag:tag",
            "-bad",
            "x@sha256:zz",
            "repo:",
            "repo/",
            "re..po",
        ] {
            let e = check_image(bad).unwrap_err();
            assert!(e.contains("allowed:"), "{bad}: {e}");
        }
        assert!(check_image(&"a".repeat(300)).is_err());
    }
}
