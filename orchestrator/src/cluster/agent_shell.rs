//! One shell per fault agent, kept open for the whole run (`docker exec -i <agent> sh`), through
//! which the nemesis runs its commands (`netfault ...`, rule scripts).
//!
//! Why: a `docker exec` costs the engine a create, a start (runc joining the container's
//! namespaces) and an inspect. A `halves` partition of 100 peers is 100 of them at once, and took
//! 8 s to apply and 8 s to heal on 2 cores (docs/BENCHMARKS.md, `scale-100`). Through an open shell a
//! command costs a fork in the container and one write on a stream that is already there.
//!
//! How: each command is one line for `sh`, its arguments single-quoted, its stdin `/dev/null` (so it
//! cannot eat the next command), followed by a marker line on stdout carrying its exit code and one
//! on stderr; what came before the markers is the command's output. Markers carry a per-shell nonce
//! and a sequence number, so output cannot fake one by accident. One command at a time per agent.
//!
//! When the shell cannot be opened, or breaks before a command was written, the command runs by a
//! plain exec instead, and the next command opens a new shell. A shell that breaks after the command
//! was written is an error: whether the command ran is unknown. An agent that is replaced (a peer
//! restarted) must be [`AgentShells::forget`]ten: its shell belongs to the old container.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::docker::{Attached, Engine, ExecOutput};

/// Open shells by agent container name.
pub struct AgentShells {
    engine: Engine,
    shells: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Shell>>>>>,
}

struct Shell {
    attached: Attached,
    nonce: String,
    seq: u64,
}

/// Why a command did not run through the shell.
enum Broke {
    /// Nothing was written: the command did not run, and may run elsewhere.
    Before(String),
    /// Written, then the stream ended or failed: the command may or may not have run.
    After(String),
}

impl AgentShells {
    pub fn new(engine: Engine) -> AgentShells {
        AgentShells {
            engine,
            shells: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `cmd` as root in `agent` and waits for it, through the agent's shell.
    pub async fn exec(&self, agent: &str, cmd: &[&str]) -> anyhow::Result<ExecOutput> {
        let slot = self
            .shells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(agent.to_string())
            .or_default()
            .clone();
        let mut shell = slot.lock().await;
        if shell.is_none() {
            match self.engine.exec_attached(agent, "root", &["sh"]).await {
                Ok(attached) => {
                    *shell = Some(Shell {
                        attached,
                        nonce: nonce(),
                        seq: 0,
                    })
                }
                Err(e) => {
                    tracing::debug!("no shell in {agent} ({e}); a plain exec instead");
                    return Ok(self.engine.exec(agent, "root", cmd).await?);
                }
            }
        }
        let open = shell.as_mut().expect("opened above");
        match open.run(cmd).await {
            Ok(out) => Ok(out),
            Err(Broke::Before(why)) => {
                *shell = None;
                tracing::debug!("the shell in {agent} broke ({why}); a plain exec instead");
                Ok(self.engine.exec(agent, "root", cmd).await?)
            }
            Err(Broke::After(why)) => {
                *shell = None;
                anyhow::bail!(
                    "the shell in {agent} broke while `{}` ran ({why}); whether it took effect is unknown",
                    cmd.join(" ")
                )
            }
        }
    }

    /// Drops `agent`'s shell: the agent was replaced, the shell belongs to the old container.
    pub fn forget(&self, agent: &str) {
        self.shells.lock().unwrap_or_else(|p| p.into_inner()).remove(agent);
    }
}

impl Shell {
    async fn run(&mut self, cmd: &[&str]) -> Result<ExecOutput, Broke> {
        // A shell whose stream already ended (its container went away) is found here, before
        // anything is written, so the command can still run by a plain exec.
        match self.attached.output.next().now_or_never() {
            Some(None) => return Err(Broke::Before("the shell had exited".into())),
            Some(Some(Err(e))) => return Err(Broke::Before(e.to_string())),
            // Nothing waiting (the usual case), or output between commands, which has no owner.
            Some(Some(Ok(_))) | None => {}
        }
        self.seq += 1;
        let mark = format!("__syftchaos_{}_{}__", self.nonce, self.seq);
        let line = command_line(cmd, &mark);
        self.attached
            .input
            .write_all(line.as_bytes())
            .await
            .map_err(|e| Broke::Before(e.to_string()))?;
        self.attached
            .input
            .flush()
            .await
            .map_err(|e| Broke::Before(e.to_string()))?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (mut code, mut err_done) = (None, None);
        while code.is_none() || err_done.is_none() {
            let chunk = match self.attached.output.next().await {
                Some(Ok(c)) => c,
                Some(Err(e)) => return Err(Broke::After(e.to_string())),
                None => return Err(Broke::After("the shell exited".into())),
            };
            match chunk {
                bollard::container::LogOutput::StdErr { message } => {
                    stderr.extend_from_slice(&message);
                    err_done = err_done.or_else(|| stderr_end(&stderr, &mark));
                }
                other => {
                    stdout.extend_from_slice(&other.into_bytes());
                    code = code.or_else(|| stdout_end(&stdout, &mark));
                }
            }
        }
        let ((end, exit_code), err_end) = (code.expect("loop ended"), err_done.expect("loop ended"));
        Ok(ExecOutput {
            exit_code,
            stdout: String::from_utf8_lossy(&stdout[..end]).into_owned(),
            stderr: String::from_utf8_lossy(&stderr[..err_end]).into_owned(),
        })
    }
}

/// A per-shell nonce for the markers.
fn nonce() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `cmd` as one line for `sh`: every argument single-quoted, stdin from /dev/null, then the two
/// markers. The leading newline of each marker puts it on its own line; it is not the command's.
fn command_line(cmd: &[&str], mark: &str) -> String {
    let quoted: Vec<String> = cmd.iter().map(|a| format!("'{}'", a.replace('\'', r"'\''"))).collect();
    format!(
        "{} </dev/null; printf '\\n%s %d\\n' '{mark}' \"$?\"; printf '\\n%s\\n' '{mark}' >&2\n",
        quoted.join(" ")
    )
}

/// Where the command's stdout ends, and its exit code, once the marker line `\n<mark> <code>\n` is in.
fn stdout_end(buf: &[u8], mark: &str) -> Option<(usize, i64)> {
    let needle = format!("\n{mark} ");
    let at = find(buf, needle.as_bytes())?;
    let rest = &buf[at + needle.len()..];
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let code = std::str::from_utf8(&rest[..nl]).ok()?.trim().parse().ok()?;
    Some((at, code))
}

/// Where the command's stderr ends, once the marker line `\n<mark>\n` is in.
fn stderr_end(buf: &[u8], mark: &str) -> Option<usize> {
    find(buf, format!("\n{mark}\n").as_bytes())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_quotes_every_argument_and_ends_with_both_markers() {
        let line = command_line(&["sh", "-c", "echo 'it''s' \"$1\"\nexit 3", "sh", "a b"], "M");
        assert_eq!(
            line,
            "'sh' '-c' 'echo '\\''it'\\'''\\''s'\\'' \"$1\"\nexit 3' 'sh' 'a b' </dev/null; printf '\\n%s %d\\n' 'M' \"$?\"; printf '\\n%s\\n' 'M' >&2\n"
        );
    }

    #[test]
    fn the_markers_split_output_from_exit_code_exactly() {
        assert_eq!(stdout_end(b"{\"a\":1}\n\nM 0\n", "M"), Some((8, 0)));
        assert_eq!(stdout_end(b"no newline\nM 17\n", "M"), Some((10, 17)));
        assert_eq!(stdout_end(b"\nM 1", "M"), None, "the code is not complete yet");
        assert_eq!(stdout_end(b"\nM2 0\n", "M"), None, "another marker");
        assert_eq!(stderr_end(b"oops\n\nM\n", "M"), Some(5));
        assert_eq!(stderr_end(b"\nM", "M"), None);
    }

    #[test]
    fn a_real_sh_runs_the_lines_one_after_another_and_the_markers_split_them() {
        use std::io::Write;
        let cmds: [&[&str]; 3] = [
            &["printf", "%s\n", "it's {\"json\"}"],
            &["sh", "-c", "echo to-err >&2; read x; echo \"read:$x\"; exit 3"],
            &["echo", "last"],
        ];
        let mut child = std::process::Command::new("sh")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let mut input = child.stdin.take().unwrap();
        for (i, c) in cmds.iter().enumerate() {
            input.write_all(command_line(c, &format!("M{i}")).as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        let (mut so, mut se) = (&out.stdout[..], &out.stderr[..]);
        let mut got = Vec::new();
        for i in 0..cmds.len() {
            let mark = format!("M{i}");
            let (end, code) = stdout_end(so, &mark).expect("stdout marker");
            let err_end = stderr_end(se, &mark).expect("stderr marker");
            got.push((
                String::from_utf8_lossy(&so[..end]).into_owned(),
                String::from_utf8_lossy(&se[..err_end]).into_owned(),
                code,
            ));
            // Past the marker line: `from` is its leading newline.
            let after_mark =
                |b: &[u8], from: usize| from + 1 + b[from + 1..].iter().position(|&c| c == b'\n').unwrap() + 1;
            so = &so[after_mark(so, end)..];
            se = &se[after_mark(se, err_end)..];
        }
        assert_eq!(
            got,
            [
                ("it's {\"json\"}\n".to_string(), String::new(), 0),
                // The command's stdin is /dev/null, not the shell's: `read` gets nothing.
                ("read:\n".to_string(), "to-err\n".to_string(), 3),
                ("last\n".to_string(), String::new(), 0),
            ]
        );
    }
}
