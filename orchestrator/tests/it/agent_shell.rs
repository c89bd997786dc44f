//! Issue 16: the nemesis's commands go through one shell kept open per fault agent. Output, errors
//! and exit codes come back as a plain exec's would, a command cannot read the shell's stdin, and an
//! agent replaced under the shell is not a failure: the command runs by a plain exec, and the next
//! one opens a shell in the new agent.

use syftchaos::cluster::agent_shell::AgentShells;
use syftchaos::cluster::sidecar;

use crate::bed::with_bed;
use crate::util::{docker_lock, docker_ready};

#[test]
fn an_agent_shell_answers_like_exec_and_survives_its_agent_being_replaced() {
    if !docker_ready("an_agent_shell_answers_like_exec_and_survives_its_agent_being_replaced") {
        return;
    }
    let _lock = docker_lock();
    with_bed(1, |bed| {
        Box::pin(async move {
            let engine = bed.cluster.engine.clone();
            let peer = &bed.cluster.peers[0];
            let shells = AgentShells::new(engine.clone());
            let script = "printf 'out %s\\n' \"$1\"; echo err >&2; read line || echo no-stdin; exit 7";
            let cmd = ["sh", "-c", script, "sh", "it's"];
            let via_shell = shells.exec(&peer.agent, &cmd).await.unwrap();
            let via_exec = engine.exec(&peer.agent, "root", &cmd).await.unwrap();
            assert_eq!(
                (
                    via_shell.exit_code,
                    via_shell.stdout.as_str(),
                    via_shell.stderr.as_str()
                ),
                (7, "out it's\nno-stdin\n", "err\n"),
                "{via_shell:?}"
            );
            assert_eq!(
                (via_exec.exit_code, via_exec.stdout, via_exec.stderr),
                (via_shell.exit_code, via_shell.stdout.clone(), via_shell.stderr.clone())
            );
            // The same shell: its process is still there between commands.
            let pid = |o: &syftchaos::docker::ExecOutput| o.stdout.trim().to_string();
            let first = shells.exec(&peer.agent, &["sh", "-c", "echo $PPID"]).await.unwrap();
            let second = shells.exec(&peer.agent, &["sh", "-c", "echo $PPID"]).await.unwrap();
            assert_eq!(pid(&first), pid(&second), "one shell runs both commands");

            // The agent replaced behind the shell's back (not forgotten): still answered.
            sidecar::reattach(&engine, &bed.cluster.run_id, peer, false)
                .await
                .unwrap();
            let after = shells.exec(&peer.agent, &["netfault", "--version"]).await.unwrap();
            assert_eq!(after.exit_code, 0, "{after:?}");
            let third = shells.exec(&peer.agent, &["sh", "-c", "echo $PPID"]).await.unwrap();
            let fourth = shells.exec(&peer.agent, &["sh", "-c", "echo $PPID"]).await.unwrap();
            assert_eq!(pid(&third), pid(&fourth), "a new shell in the new agent");
        })
    });
}
