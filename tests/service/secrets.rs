//! Secrets never printed, checked on the real binary: `--help` and a failing start-up run with
//! every setting that can carry a secret set to a marker, and no marker may come out. Each check
//! first finds a non-secret setting's value in the same output, so an output that printed nothing
//! at all cannot pass.

use std::net::TcpListener;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_cognito-authz");

/// The settings that can carry a secret, each set to a value holding its own marker: the secrets
/// themselves, and the URLs the server connects to, whose userinfo may hold credentials.
const SECRETS: &[(&str, &str)] = &[
    ("COGNITO_AUTHZ_ADMIN_TOKEN", "marker-admin-token-0123456789"),
    ("COGNITO_AUTHZ_CLIENT_SECRET", "marker-client-secret"),
    ("COGNITO_AUTHZ_REVOCATION_STORE", "redis://:marker-redis-password@127.0.0.1:1/0"),
    ("COGNITO_AUTHZ_JWKS_URL", "http://keys:marker-jwks-password@127.0.0.1:1/jwks.json"),
    ("COGNITO_AUTHZ_COGNITO_ENDPOINT", "http://aws:marker-endpoint-password@127.0.0.1:1"),
    ("COGNITO_AUTHZ_OAUTH_DOMAIN", "http://ui:marker-domain-password@127.0.0.1:1"),
    ("COGNITO_AUTHZ_TOKEN_URL", "http://ui:marker-token-url-password@127.0.0.1:1/oauth2/token"),
    ("COGNITO_AUTHZ_USERINFO_URL", "http://ui:marker-userinfo-password@127.0.0.1:1/oauth2/userInfo"),
    ("COGNITO_AUTHZ_REVOKE_URL", "http://ui:marker-revoke-password@127.0.0.1:1/oauth2/revoke"),
];

/// The part of each secret value that must never be printed.
fn markers() -> impl Iterator<Item = &'static str> {
    SECRETS.iter().map(|(_, value)| value.split(['/', ':', '@']).find(|p| p.starts_with("marker-")).unwrap())
}

/// The binary with only `env` from the `COGNITO_AUTHZ_` family (none of the runner's own).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG");
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("COGNITO_AUTHZ_")) {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().copied()).output().expect("run the binary")
}

/// Everything the process wrote.
fn printed(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn assert_no_marker(output: &str) {
    for marker in markers() {
        assert!(!output.contains(marker), "{marker} was printed:\n{output}");
    }
}

#[test]
fn serve_help_shows_no_secret_setting_value_but_shows_the_others() {
    let mut env = SECRETS.to_vec();
    env.push(("COGNITO_AUTHZ_REGION", "marker-region-shown"));
    let out = run(&["serve", "--help"], &env);
    assert!(out.status.success(), "{out:?}");
    let help = printed(&out);
    // Positive control: clap prints an environment value that is not secret.
    assert!(help.contains("[env: COGNITO_AUTHZ_REGION=marker-region-shown]"), "{help}");
    for (name, _) in SECRETS {
        // Each secret's variable is still named, so an operator learns which one to set.
        assert!(help.contains(&format!("[env: {name}]")), "{name} is named without its value:\n{help}");
    }
    assert_no_marker(&help);
}

#[test]
fn the_other_subcommands_help_shows_no_token() {
    let env = [("COGNITO_AUTHZ_ADMIN_TOKEN", SECRETS[0].1), ("COGNITO_AUTHZ_TOKEN", "marker-bearer-token")];
    for subcommand in ["check", "revoke"] {
        let help = printed(&run(&[subcommand, "--help"], &[&env[..], &[("COGNITO_AUTHZ_LOG_LEVEL", "warn")]].concat()));
        // Positive control: the global log level's value is shown.
        assert!(help.contains("[env: COGNITO_AUTHZ_LOG_LEVEL=warn]"), "{help}");
        assert!(!help.contains("marker-bearer-token"), "{help}");
        assert_no_marker(&help);
    }
}

#[test]
fn a_failing_start_up_prints_no_secret_setting_value() {
    // The gRPC port is taken, so start-up gets past every setting, builds every part (the
    // revocation store, the OAuth client, Cognito's) and then fails.
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port to occupy");
    let grpc = taken.local_addr().unwrap().to_string();
    let mut env = SECRETS.to_vec();
    env.extend([
        ("COGNITO_AUTHZ_REGION", "us-east-1"),
        // An emulator's pool id: start-up warns naming the emulator's endpoint.
        ("COGNITO_AUTHZ_USER_POOL_ID", "local_2GZIdE59"),
        ("COGNITO_AUTHZ_CLIENT_IDS", "app"),
        ("COGNITO_AUTHZ_MFA_SOURCE", "get-user"),
        ("COGNITO_AUTHZ_GRPC_LISTEN", &grpc),
        ("COGNITO_AUTHZ_HTTP_LISTEN", "127.0.0.1:0"),
        ("COGNITO_AUTHZ_ADMIN_LISTEN", "127.0.0.1:0"),
        ("COGNITO_AUTHZ_LOG_LEVEL", "trace"),
    ]);
    let out = run(&["serve"], &env);
    let output = printed(&out);
    assert_eq!(out.status.code(), Some(1), "a start-up failure: {output}");
    // Positive controls: the failure names the port (a non-secret value), and the emulator
    // warning names where the emulator is, without its credentials.
    assert!(output.contains(&format!("cannot listen on {grpc} (--grpc-listen)")), "{output}");
    assert!(output.contains("a Cognito emulator on loopback") && output.contains("127.0.0.1:1"), "{output}");
    assert_no_marker(&output);
}

#[test]
fn a_refused_setting_prints_no_secret_setting_value() {
    // The revocation store's scheme is wrong: the one line names the setting, not its value.
    let mut env: Vec<(&str, &str)> =
        SECRETS.iter().filter(|(k, _)| *k != "COGNITO_AUTHZ_REVOCATION_STORE").copied().collect();
    env.extend([
        ("COGNITO_AUTHZ_REVOCATION_STORE", "redis-cluster://:marker-redis-password@127.0.0.1:1/0"),
        ("COGNITO_AUTHZ_REGION", "eu-west-1"),
        ("COGNITO_AUTHZ_USER_POOL_ID", "eu-west-1_AbC123"),
        ("COGNITO_AUTHZ_CLIENT_IDS", "app"),
    ]);
    let out = run(&["serve"], &env);
    let output = printed(&out);
    assert_eq!(out.status.code(), Some(78), "a bad setting: {output}");
    // Positive control: the refusal names the setting and its variable.
    assert!(output.contains("--revocation-store (COGNITO_AUTHZ_REVOCATION_STORE)"), "{output}");
    assert_no_marker(&output);
}

#[test]
fn a_start_up_that_fails_after_listening_prints_no_secret_setting_value() {
    // A good certificate and a key file that is not one: start-up logs where it listens and what it
    // trusts, then stops on the key, naming the file but never printing what is in it.
    let dir = crate::common::temp_dir("secrets-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, "-----BEGIN PRIVATE KEY-----\nmarker-tls-key-content\n-----END PRIVATE KEY-----\n")
        .unwrap();
    let mut env = SECRETS.to_vec();
    env.extend([
        ("COGNITO_AUTHZ_REGION", "eu-west-1"),
        ("COGNITO_AUTHZ_USER_POOL_ID", "eu-west-1_AbC123"),
        ("COGNITO_AUTHZ_CLIENT_IDS", "app"),
        ("COGNITO_AUTHZ_GRPC_LISTEN", "127.0.0.1:0"),
        ("COGNITO_AUTHZ_HTTP_LISTEN", "127.0.0.1:0"),
        ("COGNITO_AUTHZ_ADMIN_LISTEN", "127.0.0.1:0"),
        ("COGNITO_AUTHZ_DATA_DIR", dir.to_str().unwrap()),
        ("COGNITO_AUTHZ_TLS_CERT", cert_path.to_str().unwrap()),
        ("COGNITO_AUTHZ_TLS_KEY", key_path.to_str().unwrap()),
        ("COGNITO_AUTHZ_LOG_LEVEL", "debug"),
    ]);
    let out = run(&["serve"], &env);
    let output = printed(&out);
    assert_eq!(out.status.code(), Some(78), "a bad key file: {output}");
    // Positive controls: the listening line names where the keys are fetched (without its
    // credentials), and the refusal names the key file.
    let listening = output.lines().find(|l| l.contains("listening")).expect("start-up got as far as listening");
    assert!(listening.contains("127.0.0.1:1/jwks.json"), "{listening}");
    assert!(output.contains(key_path.to_str().unwrap()), "{output}");
    assert!(!output.contains("marker-tls-key-content"), "the key file's contents were printed:\n{output}");
    assert_no_marker(&output);
}

#[test]
fn the_configurations_debug_shows_no_password_of_any_url() {
    use cognito_authz::config::Settings;
    use cognito_authz::config::issuer::{IssuerKind, IssuerTable};
    let with_password = |host: &str| format!("https://user:pw-in-{host}@{host}.example");
    let settings = Settings {
        issuers: vec![
            IssuerTable {
                name: "staff".into(),
                region: Some("eu-west-1".into()),
                user_pool_id: Some("eu-west-1_AbC123".into()),
                client_id: vec!["c1".into()],
                jwks_url: Some(format!("{}/jwks.json", with_password("keys"))),
                cognito_endpoint: Some(with_password("cognito")),
                ..IssuerTable::default()
            },
            IssuerTable {
                name: "partners".into(),
                kind: IssuerKind::Oidc,
                issuer: Some("https://idp.example/realms/acme".into()),
                jwks_url: Some(format!("{}/jwks", with_password("idp-keys"))),
                audience: vec!["https://api.example".into()],
                ..IssuerTable::default()
            },
        ],
        oauth_domain: Some(with_password("auth")),
        redirect_uri: Some("https://app.example/callback".into()),
        revocation_store: Some("redis://:pw-in-redis@redis.example:6379/0".parse().unwrap()),
        revocation_namespace: Some("shop".into()),
        ..Settings::default()
    };
    let config = settings.into_config().expect("valid settings");
    let shown = format!("{config:?}");
    // Positive control: the URLs are there, with their hosts.
    for host in ["keys.example", "cognito.example", "idp-keys.example", "auth.example", "redis.example"] {
        assert!(shown.contains(host), "{host} is shown: {shown}");
    }
    for password in ["pw-in-keys", "pw-in-cognito", "pw-in-idp-keys", "pw-in-auth", "pw-in-redis"] {
        assert!(!shown.contains(password), "{password} leaked: {shown}");
    }
}

#[test]
fn the_redis_passwords_given_as_settings_are_never_printed() {
    let env = [
        ("COGNITO_AUTHZ_REVOCATION_STORE", "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/0"),
        ("COGNITO_AUTHZ_REVOCATION_REDIS_PASSWORD", "marker-redis-acl-password"),
        ("COGNITO_AUTHZ_REVOCATION_REDIS_SENTINEL_PASSWORD", "marker-sentinel-password"),
        ("COGNITO_AUTHZ_REGION", "eu-west-1"),
        ("COGNITO_AUTHZ_USER_POOL_ID", "eu-west-1_AbC123"),
        ("COGNITO_AUTHZ_CLIENT_IDS", "app"),
    ];
    let help = printed(&run(&["serve", "--help"], &env));
    assert!(help.contains("[env: COGNITO_AUTHZ_REGION=eu-west-1]"), "positive control: {help}");
    // A CA file without TLS: start-up stops naming the setting, never a password.
    let mut refused = env.to_vec();
    refused.push(("COGNITO_AUTHZ_REVOCATION_REDIS_CA_FILE", "/ca.pem"));
    let out = run(&["serve"], &refused);
    let output = printed(&out);
    assert_eq!(out.status.code(), Some(78), "{output}");
    assert!(output.contains("--revocation-redis-ca-file"), "positive control: {output}");
    for text in [help, output] {
        assert!(!text.contains("marker-redis-acl-password") && !text.contains("marker-sentinel-password"), "{text}");
    }
}
