//! The settings' layers as an operator meets them: the real binary, a file, the environment (of
//! the child process only) and flags. Flag > environment > file > default.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cognito-authz");

/// Runs `serve` with `file` as its `--config`, `env` in its environment and `flags`; it must stop
/// at start-up (exit 78) on a bad setting, and its one line is returned.
fn refused_setting(file: &str, env: &[(&str, &str)], flags: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("cognito-authz-settings-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.toml");
    std::fs::write(&path, file).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").arg("--config").arg(&path).args(flags);
    // Nothing of the test runner's own environment may choose a setting.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("COGNITO_AUTHZ_")) {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run the binary");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(78), "a bad setting is exit 78: {out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos().into()
}

const POOL: &str = "region = \"eu-west-1\"\nuser-pool-id = \"eu-west-1_AbC123\"\nclient-id = [\"app\"]\n";

#[test]
fn a_flag_wins_over_the_environment_which_wins_over_the_file() {
    // The file alone: its bad value is the one refused (positive control that the file is read).
    let file = format!("{POOL}jwks-fetch-wait-ms = 0\nadmin-token = \"short\"\n");
    let line = refused_setting(&file, &[], &[]);
    assert!(line.contains("--jwks-fetch-wait-ms (COGNITO_AUTHZ_JWKS_FETCH_WAIT_MS)"), "{line}");
    // The environment over the file: the file's bad value is replaced, so the next check speaks.
    let line = refused_setting(&file, &[("COGNITO_AUTHZ_JWKS_FETCH_WAIT_MS", "500")], &[]);
    assert!(line.contains("--admin-token (COGNITO_AUTHZ_ADMIN_TOKEN): must be at least 16"), "{line}");
    // A bad environment value over a good file value is refused...
    let good = format!("{POOL}jwks-fetch-wait-ms = 500\nadmin-token = \"short\"\n");
    let line = refused_setting(&good, &[("COGNITO_AUTHZ_JWKS_FETCH_WAIT_MS", "0")], &[]);
    assert!(line.contains("--jwks-fetch-wait-ms"), "{line}");
    // ...and a flag over that environment wins again.
    let line = refused_setting(&good, &[("COGNITO_AUTHZ_JWKS_FETCH_WAIT_MS", "0")], &["--jwks-fetch-wait-ms", "500"]);
    assert!(line.contains("--admin-token"), "{line}");
}

#[test]
fn the_file_takes_every_key_a_flag_takes_and_names_an_unknown_one() {
    // `log-format` was refused in the file before the settings model; any flag's key is taken now.
    let line = refused_setting(
        &format!("{POOL}log-format = \"json\"\nlog-level = \"warn\"\nadmin-token = \"short\"\n"),
        &[],
        &[],
    );
    assert!(line.contains("--admin-token"), "the file was read to its end: {line}");
    let line = refused_setting(&format!("{POOL}log-formt = \"json\"\n"), &[], &[]);
    assert!(line.contains("--config (COGNITO_AUTHZ_CONFIG)") && line.contains("log-formt"), "{line}");
}
