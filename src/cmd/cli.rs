//! Command-line surface: `serve`, `dev`, and `check` (a one-shot ext_authz client for trying a token).

use std::net::SocketAddr;
use std::path::PathBuf;

pub use crate::config::settings::{LogFormat, LogLevel, ServeArgs};

/// Envoy ext_authz server for AWS Cognito access tokens
#[derive(clap::Parser, Debug)]
#[command(name = "cognito-authz", version)]
pub struct Cli {
    /// Log format: `text` (the default) or `json`; `serve` also reads `log-format` from its file.
    #[arg(long, global = true, env = "COGNITO_AUTHZ_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log level: `error`, `warn`, `info` (the default), `debug` or `trace`; `serve` also reads
    /// `log-level` from its file. `RUST_LOG`, when set, wins (it takes per-module directives, e.g.
    /// `info,cognito_authz=debug`).
    #[arg(long, global = true, env = "COGNITO_AUTHZ_LOG_LEVEL")]
    pub log_level: Option<LogLevel>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run the ext_authz server against a Cognito user pool.
    Serve(ServeArgs),
    /// Run the server against a built-in development issuer (no AWS needed), or manage it.
    Dev(DevArgs),
    /// Send one Check to a running server and print the decision (exit 0 allow, 1 deny).
    Check(CheckArgs),
    /// Revoke every token of a user signed in before now (through a running server's admin route),
    /// sign them out at Cognito and drop their cached MFA state.
    Revoke(RevokeArgs),
}

/// `revoke`'s arguments.
#[derive(clap::Args, Debug)]
pub struct RevokeArgs {
    /// The user's `sub` (a UUID for a Cognito pool's user).
    #[arg(long)]
    pub user: String,
    /// The issuer the user belongs to (its `[[issuer]]` name); needed with several issuers.
    #[arg(long)]
    pub issuer: Option<String>,
    /// The user's Cognito username, for the sign-out (defaults to the `sub`).
    #[arg(long)]
    pub username: Option<String>,
    /// The server's admin listener.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub admin_url: String,
    /// The admin token (`--admin-token` of the server).
    #[arg(long, env = "COGNITO_AUTHZ_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
}

/// `dev`'s arguments.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Without one, run the dev server.
    #[command(subcommand)]
    pub action: Option<DevAction>,
    /// Where the dev signing key and user directory are kept.
    #[arg(long, env = "COGNITO_AUTHZ_DATA_DIR", default_value = crate::config::settings::DEFAULT_DATA_DIR, global = true)]
    pub data_dir: PathBuf,
    /// Address of the gRPC ext_authz and health server.
    #[arg(long, env = "COGNITO_AUTHZ_GRPC_LISTEN", default_value = "127.0.0.1:9001")]
    pub grpc_listen: SocketAddr,
    /// Address of the HTTP server, which also serves the dev JWKS.
    #[arg(long, env = "COGNITO_AUTHZ_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// Address of the admin server (`/metrics`).
    #[arg(long, env = "COGNITO_AUTHZ_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// The HTTP authorization listener (nginx, Caddy, Traefik, Envoy `http_service`); off unless
    /// given. Loopback proxies only.
    #[arg(long)]
    pub authz_http_listen: Option<SocketAddr>,
    /// Policy file (see `serve --help`); without one every route is `mfa` unless `check --access`
    /// says otherwise.
    #[arg(long, env = "COGNITO_AUTHZ_POLICY")]
    pub policy: Option<PathBuf>,
    /// Origins of browser apps that may use the companion module's cookie routes (refresh,
    /// cookie-only logout) and CORS, e.g. the origin a demo page is served from.
    #[arg(long = "allowed-origin", env = "COGNITO_AUTHZ_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origin: Vec<String>,
    /// As `serve --emit-claims-metadata`. Defaults to `false`.
    #[arg(long, env = "COGNITO_AUTHZ_EMIT_CLAIMS_METADATA", num_args = 0..=1, default_missing_value = "true")]
    pub emit_claims_metadata: Option<bool>,
    /// As `serve --envoy-strips-identity-headers`. Defaults to `false`.
    #[arg(long, env = "COGNITO_AUTHZ_ENVOY_STRIPS_IDENTITY_HEADERS", num_args = 0..=1, default_missing_value = "true")]
    pub envoy_strips_identity_headers: Option<bool>,
}

/// What `dev` can do besides running the server.
#[derive(clap::Subcommand, Debug)]
pub enum DevAction {
    /// Print an access token for a dev user (reads the stored key; the server need not run).
    Token {
        /// A user of the dev directory (`alice`, `bob`, …).
        username: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
        /// How many tokens to print, one a line, each from its own sign-in (for load tests).
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// The issuer: the dev pool (default) or `dev-oidc`, the OIDC-style dev issuer.
        #[arg(long)]
        issuer: Option<String>,
        /// With `--issuer dev-oidc`: the session's authentication methods (`amr`), e.g. `pwd,otp`.
        /// Defaults to `pwd`.
        #[arg(long, value_delimiter = ',')]
        amr: Vec<String>,
    },
    /// Set whether a dev user has enrolled TOTP MFA.
    Mfa {
        /// A user of the dev directory.
        username: String,
        /// Enrolled (`on`) or not (`off`).
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// List the dev users, with their hosted-UI passwords and authenticator secrets.
    Users {
        /// One JSON array instead of a line per user.
        #[arg(long)]
        json: bool,
    },
}

/// `check`'s arguments.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The ext_authz server.
    #[arg(long, default_value = "http://127.0.0.1:9001")]
    pub addr: String,
    /// Bearer token to send (omit to send none).
    #[arg(long, env = "COGNITO_AUTHZ_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The request's method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request's path (query string included, as Envoy sends it).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// The route's access level, sent as Envoy's `access` context extension
    /// (`public`, `authenticated`, `mfa`).
    #[arg(long)]
    pub access: Option<String>,
    /// Extra request header, `name: value`; repeatable.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
}
