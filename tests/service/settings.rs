//! The settings' layers as an operator meets them: the real binary, a file, the environment (of
//! the child process only) and flags. Flag > environment > file > default.

use std::process::Command;

use clap::Parser;
use cognito_authz::cmd::cli::{Cli, Command as Subcommand};
use cognito_authz::config::*;
use cognito_authz::loopback::https_unless_loopback;

use crate::common::temp_dir;

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

// Validation, through the library.
fn args() -> Settings {
    Settings {
        region: Some("eu-west-1".into()),
        user_pool_id: Some("eu-west-1_AbC123".into()),
        client_id: vec!["abc".into(), " def ".into()],
        ..Settings::default()
    }
}

#[test]
fn issuer_and_jwks_url_are_derived_from_region_and_pool() {
    let config = args().into_config().expect("valid configuration");
    assert_eq!(config.pool.issuer, "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123");
    assert_eq!(
        config.pool.jwks_url.as_str(),
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
    );
    assert_eq!(config.pool.client_ids, ["abc", "def"]);
    assert_eq!(config.leeway_seconds, 0);
    assert_eq!(config.grpc_listen.to_string(), "0.0.0.0:9001");
}

#[test]
fn china_regions_use_the_cn_domain() {
    assert_eq!(
        default_issuer("cn-north-1", "cn-north-1_X"),
        "https://cognito-idp.cn-north-1.amazonaws.com.cn/cn-north-1_X"
    );
}

#[test]
fn the_issuer_format_and_replica_regions_derive_each_accepted_issuer_and_refuse_what_disagrees() {
    use cognito_authz::config::IssuerFormat;
    let updated = Settings { issuer_format: Some(IssuerFormat::Updated), ..args() }.into_config().unwrap();
    assert_eq!(updated.pool.issuer, "https://issuer-cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123");
    assert!(updated.pool.regional.is_empty());
    // Deployed beside the replica: the API region is the replica's, the issuers are still derived.
    let replica = Settings {
        region: Some("us-east-1".into()),
        replica_region: vec!["us-east-1".into(), "ap-southeast-2".into()],
        ..args()
    };
    let config = replica.clone().into_config().unwrap();
    assert_eq!(config.pool.issuer, "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123");
    let regional: Vec<&str> = config.pool.regional.iter().map(|(iss, _)| iss.as_str()).collect();
    assert_eq!(
        regional,
        [
            "https://cognito-idp.us-east-1.amazonaws.com/eu-west-1_AbC123",
            "https://cognito-idp.ap-southeast-2.amazonaws.com/eu-west-1_AbC123"
        ]
    );
    assert_eq!(
        config.pool.regional[0].1.as_str(),
        "https://cognito-idp.us-east-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
    );
    let err = |a: Settings| a.into_config().expect_err("refused").flag;
    // Without the replica named, a region other than the pool's primary is refused as before.
    assert_eq!(err(Settings { replica_region: vec![], ..replica.clone() }), "user-pool-id");
    assert_eq!(err(Settings { replica_region: vec!["eu-west-1".into()], ..args() }), "replica-region", "the primary");
    assert_eq!(err(Settings { replica_region: vec!["mars".into()], ..args() }), "replica-region");
    assert_eq!(
        err(Settings { replica_region: vec!["us-east-1".into(), "us-east-1".into()], ..args() }),
        "replica-region"
    );
    let hand_written = Some("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123".to_owned());
    assert_eq!(err(Settings { issuer: hand_written.clone(), ..replica }), "replica-region");
    // A hand-written issuer and a format that names another: start-up stops naming the format.
    let both = Settings { issuer: hand_written.clone(), issuer_format: Some(IssuerFormat::Updated), ..args() };
    assert_eq!(err(both), "issuer-format");
    let agreeing = Settings { issuer: hand_written, issuer_format: Some(IssuerFormat::Original), ..args() };
    assert!(agreeing.into_config().is_ok(), "the positive control: a format that agrees");
}

#[test]
fn bad_settings_name_the_flag() {
    let err = |a: Settings| a.into_config().expect_err("refused").flag;
    assert_eq!(err(Settings { region: None, ..args() }), "region");
    assert_eq!(err(Settings { region: Some("Europe".into()), ..args() }), "region");
    assert_eq!(err(Settings { user_pool_id: Some("us-east-1_AbC".into()), ..args() }), "user-pool-id");
    assert_eq!(err(Settings { client_id: vec![" ".into()], ..args() }), "client-id");
    assert_eq!(err(Settings { issuer: Some("http://x/y".into()), ..args() }), "issuer");
    assert_eq!(err(Settings { issuer: Some(format!("https://{DEV_ISSUER_HOST}/dev")), ..args() }), "issuer");
    assert_eq!(err(Settings { jwks_url: Some("http://example.com/jwks".into()), ..args() }), "jwks-url");
    assert_eq!(err(Settings { token_cookie: Some("a b".into()), ..args() }), "token-cookie");
    assert_eq!(err(Settings { mfa_lookups_per_second: 0, ..args() }), "mfa-lookups-per-second");
}

#[test]
fn an_emulator_on_loopback_may_have_its_own_pool_ids_and_an_http_issuer() {
    let local = || Settings {
        region: Some("us-east-1".into()),
        user_pool_id: Some("local_2GZIdE59".into()),
        cognito_endpoint: Some("http://127.0.0.1:19229".into()),
        ..args()
    };
    let config = local().into_config().expect("cognito-local's settings");
    assert_eq!(config.pool.issuer, "http://127.0.0.1:19229/local_2GZIdE59", "its issuer: its address and the pool");
    assert_eq!(config.pool.jwks_url.as_str(), "http://127.0.0.1:19229/local_2GZIdE59/.well-known/jwks.json");
    let emulator = config.pool.emulator.expect("said at start-up");
    assert!(emulator.pool_id && emulator.http_issuer);
    let explicit = Settings { issuer: Some("http://localhost:19229/local_2GZIdE59".into()), ..local() };
    assert!(explicit.into_config().is_ok());
    // The same settings against anything that is not loopback: as strict as for AWS.
    let err = |a: Settings| a.into_config().expect_err("refused").flag;
    let remote = |endpoint: &str| Settings { cognito_endpoint: Some(endpoint.into()), ..local() };
    assert_eq!(err(remote("https://cognito-idp.us-east-1.amazonaws.com")), "user-pool-id");
    assert_eq!(err(remote("http://10.0.0.5:19229")), "user-pool-id");
    assert_eq!(err(Settings { cognito_endpoint: None, ..local() }), "user-pool-id");
    let http_issuer = Settings { issuer: Some("http://127.0.0.1:19229/us-east-1_Abc".into()), ..args() };
    assert_eq!(
        err(Settings { user_pool_id: Some("us-east-1_Abc".into()), region: Some("us-east-1".into()), ..http_issuer }),
        "issuer"
    );
    let remote_issuer = Settings { issuer: Some("http://idp.example.com/local_2GZIdE59".into()), ..local() };
    assert_eq!(err(remote_issuer), "issuer");
    let remote_keys = Settings { jwks_url: Some("https://keys.example.com/jwks.json".into()), ..local() };
    assert_eq!(err(remote_keys), "jwks-url");
    // moto: loopback endpoint, but AWS-shaped ids and issuer: nothing relaxed, nothing said.
    let moto = Settings {
        region: Some("us-east-1".into()),
        user_pool_id: Some("us-east-1_0123abcd".into()),
        cognito_endpoint: Some("http://127.0.0.1:5000".into()),
        jwks_url: Some("http://127.0.0.1:5000/us-east-1_0123abcd/.well-known/jwks.json".into()),
        ..args()
    };
    let moto = moto.into_config().unwrap();
    assert_eq!(
        (moto.pool.emulator, moto.pool.issuer.as_str()),
        (None, "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_0123abcd")
    );
}

#[test]
fn oauth_urls_carry_secrets_only_over_tls_or_loopback() {
    let err = |a: Settings| a.into_config().expect_err("refused").flag;
    let http = || Some("http://auth.example.com/oauth2/token".to_owned());
    assert_eq!(err(Settings { oauth_domain: Some("http://auth.example.com".into()), ..args() }), "oauth-domain");
    assert_eq!(err(Settings { token_url: http(), ..args() }), "token-url");
    assert_eq!(err(Settings { userinfo_url: http(), ..args() }), "userinfo-url");
    assert_eq!(err(Settings { revoke_url: http(), ..args() }), "revoke-url");
    assert_eq!(err(Settings { logout_url: http(), ..args() }), "logout-url");
    assert_eq!(err(Settings { token_url: Some("ftp://127.0.0.1/t".into()), ..args() }), "token-url");
    // Positive controls: https anywhere, plain http on loopback (an emulator, oidc-provider).
    let ok = Settings {
        oauth_domain: Some("https://auth.example.com".into()),
        token_url: Some("http://127.0.0.1:4000/token".into()),
        logout_url: Some("http://localhost:4000/logout".into()),
        ..args()
    };
    assert!(ok.into_config().is_ok());
}

#[test]
fn plain_http_jwks_is_allowed_only_on_loopback() {
    assert!(https_unless_loopback("http://127.0.0.1:5000/p/.well-known/jwks.json").is_ok());
    assert!(https_unless_loopback("http://localhost/jwks").is_ok());
    assert!(https_unless_loopback("http://[::1]/jwks").is_ok());
    assert!(https_unless_loopback("http://10.0.0.1/jwks").is_err());
}

#[test]
fn the_file_fills_what_flags_and_environment_leave_unset() {
    let dir = std::env::temp_dir().join(format!("cognito-authz-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        "region = \"us-east-1\"\nuser-pool-id = \"us-east-1_Q\"\nclient-id = [\"x\"]\nleeway-seconds = 3\n\
         jwks-cooldown-seconds = 7\nlog-format = \"json\"\nshadow = true\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let settings = ServeArgs::parse(["--config", file, "--leeway-seconds", "1", "--shadow=false"]).unwrap();
    for given in ["region", "client-id", "jwks-cooldown-seconds", "leeway-seconds", "shadow"] {
        assert!(settings.is_given(given), "{given}: given in the file or by a flag");
    }
    assert!(!settings.is_given("token-cache-size") && !settings.is_given("mfa-source"), "defaults are not given");
    assert_eq!(settings.log_format, cognito_authz::config::settings::LogFormat::Json, "every key, log-format too");
    let config = settings.into_config().expect("file completes the flags");
    assert_eq!(config.leeway_seconds, 1, "a flag wins over the file");
    assert!(!config.shadow, "a flag wins over the file, also to say false");
    assert_eq!(config.keys.cooldown, std::time::Duration::from_secs(7), "the file wins over the default");
    assert_eq!(config.pool.client_ids, ["x"]);
    assert_eq!(config.token_cache_size, Settings::default().token_cache_size, "the default, where nobody says");
    std::fs::write(&path, "regoin = \"us-east-1\"\n").unwrap();
    let err = ServeArgs::parse(["--config", file]).expect_err("unknown key");
    assert_eq!(err.flag, "config");
    assert!(err.problem.contains("regoin"), "{}", err.problem);
}

#[test]
fn errors_name_the_flag_and_its_environment_variable_from_the_cli_definition() {
    let err = ConfigError::new("jwks-fetch-wait-ms", "must be between 1 and 30000");
    assert_eq!(
        err.to_string(),
        "invalid configuration: --jwks-fetch-wait-ms (COGNITO_AUTHZ_JWKS_FETCH_WAIT_MS): must be between 1 and 30000"
    );
    let err = Settings { jwks_fetch_wait_ms: 0, ..args() }.into_config().expect_err("refused");
    assert_eq!((err.flag.as_str(), err.env.as_str()), ("jwks-fetch-wait-ms", "COGNITO_AUTHZ_JWKS_FETCH_WAIT_MS"));
}

#[test]
fn the_defaults_are_valid_and_shown_in_help() {
    let _ = Config::with_defaults(
        "https://issuer.example.com/p",
        "https://issuer.example.com/jwks".parse().unwrap(),
        vec!["c".into()],
    );
    let mut cli = <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
    let help = cli.render_long_help().to_string();
    assert!(help.contains("[default: 100000]"), "{help}");
    assert!(help.contains("[default: 0.0.0.0:9001]"), "{help}");
    assert!(!help.contains("[default: <redacted>]"), "no secret has a default");
}

#[test]
fn claims_mapped_to_headers_come_from_the_file_and_dangerous_names_are_refused() {
    let dir = std::env::temp_dir().join(format!("cognito-authz-headers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    let file = |name: &str| {
        format!(
            "[[header]]\nname = \"x-user-email\"\nclaim = \"email\"\n[[header]]\nname = \"{name}\"\nclaim = \"x\"\n"
        )
    };
    let with = |name: &str| {
        std::fs::write(&path, file(name)).unwrap();
        Settings { header: Settings::from_file(&path).unwrap().header, ..args() }.into_config()
    };
    let config = with("x-tenant").expect("two mappings");
    assert_eq!(config.header_claims.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["x-user-email", "x-tenant"]);
    for bad in ["authorization", "cookie", "host", "transfer-encoding", ":path", "x-user-id", "x-user-email", "X-Up"] {
        let err = with(bad).expect_err(bad);
        assert_eq!((err.flag.as_str(), err.env.as_str()), ("config", "COGNITO_AUTHZ_CONFIG"), "{bad}");
        assert!(err.problem.contains("[[header]] 2"), "{}", err.problem);
    }
}

// The answer settings (issue 16) as an operator gives them: flags, and keys of the `--config` file.

fn serve_config(extra: &[&str]) -> Config {
    let base = ["cognito-authz", "serve", "--region", "eu-west-1", "--user-pool-id", "eu-west-1_AbC123"];
    let args = base.iter().chain(["--client-id", "client-one"].iter()).chain(extra.iter());
    match Cli::try_parse_from(args).expect("the command line parses").command {
        Subcommand::Serve(args) => args.settings().expect("the file reads").into_config().expect("a valid config"),
        _ => unreachable!("serve"),
    }
}

#[test]
fn answer_settings_are_off_by_default_and_set_by_flag_or_config_file() {
    let defaults = serve_config(&[]);
    assert!(!defaults.emit_claims_metadata, "no claims metadata by default");
    assert!(!defaults.envoy_strips_identity_headers, "every identity header removed by default");
    let flags = serve_config(&["--emit-claims-metadata", "--envoy-strips-identity-headers"]);
    assert!(flags.emit_claims_metadata && flags.envoy_strips_identity_headers, "flags");
    let explicit = serve_config(&["--emit-claims-metadata=false", "--envoy-strips-identity-headers=true"]);
    assert!(!explicit.emit_claims_metadata && explicit.envoy_strips_identity_headers, "explicit values");
    let dir = temp_dir("settings");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cognito-authz.toml");
    std::fs::write(&file, "emit-claims-metadata = true\nenvoy-strips-identity-headers = true\n").unwrap();
    let from_file = serve_config(&["--config", file.to_str().unwrap()]);
    assert!(from_file.emit_claims_metadata && from_file.envoy_strips_identity_headers, "file keys");
}
