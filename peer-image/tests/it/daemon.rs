use std::process::Command;

use crate::util::*;

fn run_with_config(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let out = Command::new(BIN).arg("--config").arg(&cfg).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_config_exits_2_with_file_line_column() {
    let (code, err) = run_with_config("name: p1\nlisten: 127.0.0.1:1\nanti_entropy_interval_ms: [1\n");
    assert_eq!(code, Some(2));
    let line = err.lines().last().unwrap();
    assert!(line.contains("config.yaml:3:"), "{err}");
    let (code, err) = run_with_config(
        "name: p1\nlisten: 127.0.0.1:1\nhttp: 127.0.0.1:2\nsync_dir: /s\nstate_dir: /t\nkey_file: /k\nflavor: seed\n",
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("flavor `seed` is not supported"), "{err}");
    let (code, err) = run_with_config("name: p1\nlistne: 127.0.0.1:1\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("config.yaml:2:"), "{err}");
}

#[test]
fn keygen_writes_contract_format_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("identity.key");
    let out = Command::new(BIN).args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success());
    let public = String::from_utf8(out.stdout).unwrap();
    assert_eq!(public.trim().len(), 64);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.len() == 65 && text.ends_with('\n') && text[..64].bytes().all(|b| b.is_ascii_hexdigit()));
    let id = syncpeer::identity::Identity::load(&key).unwrap();
    assert_eq!(id.id().hex(), public.trim());
    let again = Command::new(BIN).args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn status_reports_own_wall_clock_and_env_overrides_apply() {
    let mut c = Cluster::new(1, &[]);
    c.start(0);
    let s = c.peers[0].status().unwrap();
    let now = syncpeer::hlc::wall_ms() as i64;
    assert!((s["wall_clock_ms"].as_i64().unwrap() - now).abs() < 10_000);
    assert_eq!(s["name"], "p0");
    assert_eq!(s["flavor"], "default");
    assert_eq!(s["id"], c.peers[0].pubkey());
    // Environment overrides the file.
    assert_eq!(c.peers[0].stop(), Some(0));
    let cfg = c.write_config(0);
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .env("SYNCPEER_NAME", "renamed")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = c.peers[0].http();
    wait_until("renamed", TIMEOUT, || {
        http_get(&http, "/v1/status").is_some_and(|(_, b)| b.contains("\"name\":\"renamed\""))
    });
    let _ = child.kill();
    let _ = child.wait();
}

/// The daemon works from its data folder (`daemon::work_from_data_root`), yet files named
/// relative to where it was started stay those files, and a change made under the (relative)
/// sync folder is still seen by the watcher and indexed.
#[test]
fn relative_paths_in_the_config_survive_the_move_to_the_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let id = syncpeer::identity::Identity::generate();
    id.save(&dir.path().join("key")).unwrap();
    let ip = fresh_ip();
    let http = format!("{ip}:{}", free_port(&ip));
    let yaml = format!(
        "name: rel\nlisten: {ip}:{}\nhttp: {http}\nsync_dir: data/sync\nstate_dir: data/state\nkey_file: key\nrescan_interval_ms: 600000\npeers: []\ntrusted: []\n",
        free_port(&ip)
    );
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", "config.yaml"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = |field: &str| {
        http_get(&http, "/v1/status")
            .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
            .map(|s| s[field].clone())
    };
    // The key file was read from the folder the daemon started in, not from `data/`.
    wait_until("the daemon answers with its key", TIMEOUT, || {
        status("id").is_some_and(|v| v == id.id().hex())
    });
    // Written after the start-up scan, with the periodic rescan 10 min away: only the watcher sees it.
    std::fs::write(dir.path().join("data/sync/a.txt"), b"hello").unwrap();
    wait_until("the new file is indexed", TIMEOUT, || {
        status("entries").is_some_and(|v| v == 1)
    });
    let _ = child.kill();
    let _ = child.wait();
}
