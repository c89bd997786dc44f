//! The parameters of a `byzantine` step with behaviour `drop` (a targeted liar): which paths it
//! keeps back (`paths`: globs) and from whom (`to`: peer names). They become one line of the
//! peer's control file, `drop paths=<globs> peers=<names>` (syncpeer's `targeted` module reads it).
//!
//! Globs are checked against what the peer's matcher understands (`*` and `?` within a path
//! component, `**` as a whole component), and must not hold what would break the line (spaces,
//! commas, `=`, `#`).

/// What a glob may be, for error messages.
pub const GLOB_ALLOWED: &str = "a relative path glob with `*` and `?` within a component and `**` as a whole component, e.g. secret/** or **/*.key (no spaces, commas, `=`, `#`, `[`, `{` or `\\`)";

/// Checks one glob of `paths`; the error says what is wrong with it.
pub fn check_glob(g: &str) -> Result<(), String> {
    if g.is_empty() {
        return Err("an empty glob".into());
    }
    if g.starts_with('/') {
        return Err("a glob starting with `/` (paths are relative to the sync folder)".into());
    }
    if let Some(c) = g
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, ',' | '=' | '#' | '[' | ']' | '{' | '}' | '\\'))
    {
        return Err(format!("`{c}` in a glob"));
    }
    if let Some(part) = g.split('/').find(|p| p.is_empty() || (p.contains("**") && *p != "**")) {
        return Err(if part.is_empty() {
            "an empty path component (`//` or a trailing `/`)".into()
        } else {
            format!("`**` inside the component `{part}`")
        });
    }
    Ok(())
}

/// The control-file line for a drop with these globs and peer names (either may be empty).
pub fn control_line(paths: &[String], to: &[String]) -> String {
    let mut line = "drop".to_string();
    if !paths.is_empty() {
        line.push_str(&format!(" paths={}", paths.join(",")));
    }
    if !to.is_empty() {
        line.push_str(&format!(" peers={}", to.join(",")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_the_peer_can_match_and_the_line_can_carry() {
        for ok in ["secret/**", "**/*.key", "a/b?.txt", "*"] {
            assert_eq!(check_glob(ok), Ok(()), "{ok}");
        }
        for bad in ["", "/abs", "a b", "a,b", "x=y", "a/**b", "a//b", "a/", "[ab]", "{a,b}"] {
            assert!(check_glob(bad).is_err(), "{bad}");
        }
        assert_eq!(
            control_line(&["secret/**".into(), "*.key".into()], &["p2".into()]),
            "drop paths=secret/**,*.key peers=p2"
        );
        assert_eq!(control_line(&[], &["p2".into(), "p3".into()]), "drop peers=p2,p3");
    }
}
