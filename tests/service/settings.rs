//! The answer settings as an operator gives them: flags, and keys of the `--config` file.

use clap::Parser;
use cognito_authz::cli::{Cli, Command};
use cognito_authz::config::Config;

use crate::common::temp_dir;

fn serve(extra: &[&str]) -> Config {
    let base = ["cognito-authz", "serve", "--region", "eu-west-1", "--user-pool-id", "eu-west-1_AbC123"];
    let args = base.iter().chain(["--client-id", "client-one"].iter()).chain(extra.iter());
    match Cli::try_parse_from(args).expect("the command line parses").command {
        Command::Serve(args) => args.with_file().expect("the file reads").into_config().expect("a valid config"),
        _ => unreachable!("serve"),
    }
}

#[test]
fn answer_settings_are_off_by_default_and_set_by_flag_or_config_file() {
    let defaults = serve(&[]);
    assert!(!defaults.emit_claims_metadata, "no claims metadata by default");
    assert!(!defaults.envoy_strips_identity_headers, "every identity header removed by default");
    let flags = serve(&["--emit-claims-metadata", "--envoy-strips-identity-headers"]);
    assert!(flags.emit_claims_metadata && flags.envoy_strips_identity_headers, "flags");
    let explicit = serve(&["--emit-claims-metadata=false", "--envoy-strips-identity-headers=true"]);
    assert!(!explicit.emit_claims_metadata && explicit.envoy_strips_identity_headers, "explicit values");
    let dir = temp_dir("settings");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cognito-authz.toml");
    std::fs::write(&file, "emit-claims-metadata = true\nenvoy-strips-identity-headers = true\n").unwrap();
    let from_file = serve(&["--config", file.to_str().unwrap()]);
    assert!(from_file.emit_claims_metadata && from_file.envoy_strips_identity_headers, "file keys");
}
