//! Configuration: clap flags, each with an environment variable, over an optional TOML file with
//! the same keys, into one `Config` value passed down. A bad setting stops start-up with one line
//! naming it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cognito::MfaLookup;
use crate::headers::HeaderClaim;
use crate::http::auth::{AuthSettings, CookieSettings};
use crate::key_store::KeySettings;
use crate::mfa::MfaSettings;
pub use crate::oauth::Endpoints;
use crate::policy::Policy;
pub use crate::secret::Secret;

/// Issuers under this host belong to `cognito-authz dev` and are never accepted by `serve`.
pub const DEV_ISSUER_HOST: &str = "cognito-authz.invalid";

/// `cognito-authz serve` settings. Flags win over environment variables, which win over the file.
#[derive(clap::Args, Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with the same keys as these flags (e.g. `user-pool-id = "…"`).
    #[arg(long, env = "COGNITO_AUTHZ_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// AWS region of the user pool, e.g. `eu-west-1`. Required.
    #[arg(long, env = "COGNITO_AUTHZ_REGION")]
    pub region: Option<String>,
    /// User pool id, e.g. `eu-west-1_AbC123`. Required.
    #[arg(long, env = "COGNITO_AUTHZ_USER_POOL_ID")]
    pub user_pool_id: Option<String>,
    /// App client id whose access tokens are accepted; repeat the flag or separate with commas. Required.
    #[arg(long = "client-id", env = "COGNITO_AUTHZ_CLIENT_IDS", value_delimiter = ',')]
    #[serde(default)]
    pub client_id: Vec<String>,
    /// Expected `iss`. Defaults to `https://cognito-idp.{region}.amazonaws.com/{user_pool_id}`
    /// (`amazonaws.com.cn` in China regions).
    #[arg(long, env = "COGNITO_AUTHZ_ISSUER")]
    pub issuer: Option<String>,
    /// Where the signing keys are fetched. Defaults to `{issuer}/.well-known/jwks.json`.
    /// Must be https, except to a loopback address.
    #[arg(long, env = "COGNITO_AUTHZ_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Address of the gRPC ext_authz and health server. Defaults to `0.0.0.0:9001`.
    #[arg(long, env = "COGNITO_AUTHZ_GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,
    /// Address of the HTTP server. Defaults to `0.0.0.0:8080`.
    #[arg(long, env = "COGNITO_AUTHZ_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Seconds of clock tolerance on `exp`, `nbf` and `iat`. Defaults to `0`.
    #[arg(long, env = "COGNITO_AUTHZ_LEEWAY_SECONDS")]
    pub leeway_seconds: Option<u64>,
    /// Cookie that may carry the access token when no `authorization` header is sent
    /// (for WebSocket and EventSource clients). Defaults to none.
    #[arg(long, env = "COGNITO_AUTHZ_TOKEN_COOKIE")]
    pub token_cookie: Option<String>,
    /// Remove the `authorization` header before the upstream on allow. Defaults to `false`.
    #[arg(long, env = "COGNITO_AUTHZ_STRIP_AUTHORIZATION", num_args = 0..=1, default_missing_value = "true")]
    pub strip_authorization: Option<bool>,
    /// Shadow mode everywhere: decisions are made, logged and counted (`mode="shadow"`), and every
    /// request goes on with the identity headers a valid token gives. For rolling a policy out; a
    /// route (`mode` context extension, policy rule `mode`) can say `enforce`. Defaults to `false`.
    #[arg(long, env = "COGNITO_AUTHZ_SHADOW", num_args = 0..=1, default_missing_value = "true")]
    pub shadow: Option<bool>,
    /// Share of allows (0 to 1) written to the decision log at `info`; denials are all written
    /// (at most 20 a second). Defaults to `0`.
    #[arg(long, env = "COGNITO_AUTHZ_LOG_ALLOW_SAMPLE_RATE")]
    pub log_allow_sample_rate: Option<f64>,
    /// Send the verified claims to Envoy as `dynamic_metadata` on every allow, for Envoy RBAC
    /// rules or access logs that read them. Defaults to `false`.
    #[arg(long, env = "COGNITO_AUTHZ_EMIT_CLAIMS_METADATA", num_args = 0..=1, default_missing_value = "true")]
    pub emit_claims_metadata: Option<bool>,
    /// Envoy shows this service every identity header a client sends (ext_authz `allowed_headers`
    /// does not hide them), or strips them before ext_authz: an allow then removes only those the
    /// request carried. Defaults to `false`: every identity header an allow does not set is removed.
    #[arg(long, env = "COGNITO_AUTHZ_ENVOY_STRIPS_IDENTITY_HEADERS", num_args = 0..=1, default_missing_value = "true")]
    pub envoy_strips_identity_headers: Option<bool>,
    /// Token claims passed upstream as headers: `[[header]]` tables (`name`, `claim`) in the
    /// `--config` file only.
    #[arg(skip)]
    #[serde(default)]
    pub header: Vec<HeaderClaim>,
    /// Seconds between background key refreshes. Defaults to `3600`.
    #[arg(long, env = "COGNITO_AUTHZ_JWKS_REFRESH_SECONDS")]
    pub jwks_refresh_seconds: Option<u64>,
    /// Seconds during which unknown `kid`s are refused without fetching, after a fetch that lacked
    /// one. Defaults to `10`.
    #[arg(long, env = "COGNITO_AUTHZ_JWKS_COOLDOWN_SECONDS")]
    pub jwks_cooldown_seconds: Option<u64>,
    /// Milliseconds a request waits for a key fetch before answering 503. Keep it well inside
    /// Envoy's ext_authz timeout. Defaults to `1000`.
    #[arg(long, env = "COGNITO_AUTHZ_JWKS_FETCH_WAIT_MS")]
    pub jwks_fetch_wait_ms: Option<u64>,
    /// Policy file (TOML) of route rules; first match wins, anything unmatched is `mfa`.
    /// Reloaded on SIGHUP. Defaults to none (every route is `mfa` unless Envoy says otherwise).
    #[arg(long, env = "COGNITO_AUTHZ_POLICY")]
    pub policy: Option<PathBuf>,
    /// Require TOTP MFA on `mfa` routes. `false` is for development only. Defaults to `true`.
    #[arg(long, env = "COGNITO_AUTHZ_ENFORCE_MFA", num_args = 0..=1, default_missing_value = "true")]
    pub enforce_mfa: Option<bool>,
    /// How MFA state is read: `admin-get-user` (AWS credentials) or `get-user` (the caller's
    /// token; needs the aws.cognito.signin.user.admin scope). Defaults to `admin-get-user`.
    #[arg(long, env = "COGNITO_AUTHZ_MFA_SOURCE", value_enum)]
    pub mfa_source: Option<MfaLookup>,
    /// Cognito API endpoint override (an emulator, a VPC endpoint). Defaults to the regional endpoint.
    #[arg(long, env = "COGNITO_AUTHZ_COGNITO_ENDPOINT")]
    pub cognito_endpoint: Option<String>,
    /// Milliseconds a Cognito lookup may take in all, retries included. Keep it well inside
    /// Envoy's ext_authz timeout. Defaults to `1000`.
    #[arg(long, env = "COGNITO_AUTHZ_COGNITO_TIMEOUT_MS")]
    pub cognito_timeout_ms: Option<u64>,
    /// Seconds "MFA enrolled" is cached per user. Defaults to `60`.
    #[arg(long, env = "COGNITO_AUTHZ_MFA_CACHE_TTL")]
    pub mfa_cache_ttl: Option<u64>,
    /// Seconds "MFA not enrolled" (or "user disabled") is cached per user. Defaults to `2`.
    #[arg(long, env = "COGNITO_AUTHZ_MFA_NEGATIVE_CACHE_TTL")]
    pub mfa_negative_cache_ttl: Option<u64>,
    /// Cognito MFA lookups per second for the whole process; past it a lookup answers 503 (cached
    /// answers are unaffected). Size it to the account's Cognito quota divided by the replicas,
    /// leaving room for your own admin calls. Defaults to `50`.
    #[arg(long, env = "COGNITO_AUTHZ_MFA_LOOKUPS_PER_SECOND")]
    pub mfa_lookups_per_second: Option<u32>,
    /// When a user is seen going from not enrolled to enrolled in TOTP, revoke their sessions that
    /// began before (through the revocation store), so a password-only session cannot ride on the
    /// enrolment. Defaults to `false`.
    #[arg(long, env = "COGNITO_AUTHZ_REVOKE_SESSIONS_ON_MFA_ENROLMENT", num_args = 0..=1, default_missing_value = "true")]
    pub revoke_sessions_on_mfa_enrolment: Option<bool>,
    /// Accept client-credentials (machine) tokens on routes that ask for scopes. Defaults to `false`.
    #[arg(long, env = "COGNITO_AUTHZ_ALLOW_MACHINE_TOKENS", num_args = 0..=1, default_missing_value = "true")]
    pub allow_machine_tokens: Option<bool>,
    /// Address of the admin server (`/metrics`); never route Envoy traffic to it.
    /// Defaults to `127.0.0.1:9090`.
    #[arg(long, env = "COGNITO_AUTHZ_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// How many verified tokens are cached (each until its `exp`); 0 turns the cache off.
    /// Defaults to `100000`.
    #[arg(long, env = "COGNITO_AUTHZ_TOKEN_CACHE_SIZE")]
    pub token_cache_size: Option<u64>,
    /// Bearer token for the admin routes (`POST /admin/revoke-user`); off without one.
    #[arg(long, env = "COGNITO_AUTHZ_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File holding the admin token (instead of `--admin-token`).
    #[arg(long, env = "COGNITO_AUTHZ_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Directory for local state (the revocation file). Defaults to `.cognito-authz`.
    #[arg(long, env = "COGNITO_AUTHZ_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where revocations are kept: `file:PATH` (one replica) or `redis://HOST:PORT/DB` (shared by
    /// replicas). Defaults to `file:{data-dir}/revocations.jsonl`.
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_STORE")]
    pub revocation_store: Option<String>,
    /// With Redis: seconds without confirmation from Redis after which decisions answer 503
    /// rather than trust an old copy. Defaults to `10`.
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_MAX_STALENESS_SECONDS")]
    pub revocation_max_staleness_seconds: Option<u64>,
    /// Seconds a refresh token lives (how long an `origin_jti` revocation is kept). Defaults to
    /// `2592000` (30 days, Cognito's default).
    #[arg(long, env = "COGNITO_AUTHZ_REFRESH_TOKEN_LIFETIME")]
    pub refresh_token_lifetime: Option<u64>,
    /// Accept tokens without `jti`/`origin_jti` (app clients with token revocation off), which
    /// logout cannot revoke. Defaults to `false`.
    #[arg(long, env = "COGNITO_AUTHZ_ALLOW_UNREVOCABLE_TOKENS", num_args = 0..=1, default_missing_value = "true")]
    pub allow_unrevocable_tokens: Option<bool>,
    /// PEM certificate chain for TLS on the gRPC and HTTP listeners (with `--tls-key`).
    /// Defaults to none: plaintext, for a sidecar on loopback or a mesh that encrypts.
    #[arg(long, env = "COGNITO_AUTHZ_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "COGNITO_AUTHZ_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: the gRPC listener then asks for a client certificate signed by one of
    /// them (mTLS), so only the proxy can ask for decisions. Needs `--tls-cert`. Defaults to none.
    #[arg(long, env = "COGNITO_AUTHZ_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// The Cognito hosted-UI domain, e.g. `https://auth.example.com`: gives `/oauth2/token`,
    /// `/oauth2/userInfo`, `/oauth2/revoke` and `/logout`.
    #[arg(long, env = "COGNITO_AUTHZ_OAUTH_DOMAIN")]
    pub oauth_domain: Option<String>,
    /// Token endpoint (overrides the one under `--oauth-domain`).
    #[arg(long, env = "COGNITO_AUTHZ_TOKEN_URL")]
    pub token_url: Option<String>,
    /// Userinfo endpoint (overrides the one under `--oauth-domain`).
    #[arg(long, env = "COGNITO_AUTHZ_USERINFO_URL")]
    pub userinfo_url: Option<String>,
    /// Revocation endpoint (overrides the one under `--oauth-domain`).
    #[arg(long, env = "COGNITO_AUTHZ_REVOKE_URL")]
    pub revoke_url: Option<String>,
    /// Hosted-UI logout endpoint (overrides the one under `--oauth-domain`).
    #[arg(long, env = "COGNITO_AUTHZ_LOGOUT_URL")]
    pub logout_url: Option<String>,
    /// The app client that exchanges codes. Defaults to the first `--client-id`.
    #[arg(long, env = "COGNITO_AUTHZ_OAUTH_CLIENT_ID")]
    pub oauth_client_id: Option<String>,
    /// The app client's secret (never logged or echoed).
    #[arg(long, env = "COGNITO_AUTHZ_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// File holding the client secret (instead of `--client-secret`).
    #[arg(long, env = "COGNITO_AUTHZ_CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// Default `redirect_uri` for the code exchange.
    #[arg(long, env = "COGNITO_AUTHZ_REDIRECT_URI")]
    pub redirect_uri: Option<String>,
    /// Where the hosted UI sends the browser after logout (`logout_uri`).
    #[arg(long, env = "COGNITO_AUTHZ_LOGOUT_REDIRECT_URI")]
    pub logout_redirect_uri: Option<String>,
    /// Name of the refresh-token cookie. Defaults to `cognito_refresh`.
    #[arg(long, env = "COGNITO_AUTHZ_REFRESH_COOKIE_NAME")]
    pub refresh_cookie_name: Option<String>,
    /// Path of the refresh-token cookie. Defaults to `/auth`.
    #[arg(long, env = "COGNITO_AUTHZ_REFRESH_COOKIE_PATH")]
    pub refresh_cookie_path: Option<String>,
    /// Domain of the refresh-token cookie. Defaults to none (the host only).
    #[arg(long, env = "COGNITO_AUTHZ_REFRESH_COOKIE_DOMAIN")]
    pub refresh_cookie_domain: Option<String>,
    /// Origins allowed to call the HTTP module with cookies (and by CORS); comma-separated.
    /// Defaults to none: CORS off, cookie-only refresh and logout refused.
    #[arg(long = "allowed-origin", env = "COGNITO_AUTHZ_ALLOWED_ORIGINS", value_delimiter = ',')]
    #[serde(default)]
    pub allowed_origin: Vec<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub issuer: String,
    pub jwks_url: reqwest::Url,
    pub client_ids: Vec<String>,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub leeway_seconds: u64,
    pub token_cookie: Option<String>,
    pub strip_authorization: bool,
    /// `--shadow`: routes that say nothing of the mode are only observed.
    pub shadow: bool,
    /// The share of allows the decision log keeps.
    pub log_allow_sample_rate: f64,
    /// `--emit-claims-metadata`: allows carry the claims as `dynamic_metadata`.
    pub emit_claims_metadata: bool,
    /// `--envoy-strips-identity-headers`: allows remove only the identity headers a request carried.
    pub envoy_strips_identity_headers: bool,
    /// Claims mapped to upstream headers.
    pub header_claims: Vec<HeaderClaim>,
    pub keys: KeySettings,
    pub region: String,
    pub user_pool_id: String,
    /// The policy read at start-up, and where to read it again on SIGHUP.
    pub policy: Policy,
    pub policy_path: Option<PathBuf>,
    pub mfa: MfaSettings,
    pub mfa_source: MfaLookup,
    pub cognito_endpoint: Option<String>,
    pub cognito_timeout: Duration,
    pub allow_machine_tokens: bool,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub token_cache_size: u64,
    pub revocation_store: StoreSpec,
    pub revocation_max_staleness: Duration,
    pub allow_unrevocable_tokens: bool,
    /// The OAuth endpoints and the confidential client, when sign-in is configured.
    pub oauth: Option<OAuthConfig>,
    pub auth: AuthSettings,
    /// TLS on the gRPC and HTTP listeners, when configured.
    pub tls: Option<TlsFiles>,
    /// Set when a rule was relaxed for a Cognito emulator on loopback (said in a warning at start-up).
    pub emulator: Option<Emulator>,
}

/// Which of AWS's rules were relaxed for an emulator on loopback, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    pub endpoint: String,
    /// The pool id does not look like `{region}_{id}`.
    pub pool_id: bool,
    /// The issuer is plain http (on loopback).
    pub http_issuer: bool,
}

/// Where the listeners' TLS material is (PEM files, read at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With it, gRPC clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

/// Where revocations are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    File(PathBuf),
    Redis(String),
}

/// The confidential client of the HTTP module.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub endpoints: Endpoints,
    pub client_id: String,
    pub secret: Option<Secret>,
}

/// A bad setting, named by its flag and environment variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: --{flag} ({env}): {problem}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub env: &'static str,
    pub problem: String,
}

fn bad(flag: &'static str, env: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { flag, env, problem: problem.into() }
}

impl Config {
    /// A configuration with every default, for an issuer whose keys are at `jwks_url`
    /// (dev mode and tests).
    pub fn with_defaults(issuer: &str, jwks_url: reqwest::Url, client_ids: Vec<String>) -> Config {
        Config {
            issuer: issuer.to_owned(),
            jwks_url,
            client_ids,
            grpc_listen: ([127, 0, 0, 1], 9001).into(),
            http_listen: ([127, 0, 0, 1], 8080).into(),
            leeway_seconds: 0,
            token_cookie: None,
            strip_authorization: false,
            shadow: false,
            log_allow_sample_rate: 0.0,
            emit_claims_metadata: false,
            envoy_strips_identity_headers: false,
            header_claims: vec![],
            keys: KeySettings::default(),
            region: "us-east-1".to_owned(),
            user_pool_id: "us-east-1_dev".to_owned(),
            policy: Policy::default(),
            policy_path: None,
            mfa: MfaSettings::default(),
            mfa_source: MfaLookup::AdminGetUser,
            cognito_endpoint: None,
            cognito_timeout: Duration::from_secs(1),
            allow_machine_tokens: false,
            admin_listen: ([127, 0, 0, 1], 9090).into(),
            admin_token: None,
            token_cache_size: 100_000,
            revocation_store: StoreSpec::File(PathBuf::from(".cognito-authz/revocations.jsonl")),
            revocation_max_staleness: Duration::from_secs(10),
            allow_unrevocable_tokens: false,
            oauth: None,
            auth: AuthSettings {
                redirect_uri: None,
                logout_redirect_uri: None,
                cookie: CookieSettings { name: "cognito_refresh".into(), path: "/auth".into(), domain: None },
                allowed_origins: vec![],
                refresh_token_lifetime: Duration::from_secs(30 * 86400),
            },
            tls: None,
            emulator: None,
        }
    }
}

impl ServeArgs {
    /// Fills what flags and environment left unset from the `--config` file.
    pub fn with_file(self) -> Result<ServeArgs, ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let file = read_file(&path)?;
        Ok(ServeArgs {
            config: self.config,
            region: self.region.or(file.region),
            user_pool_id: self.user_pool_id.or(file.user_pool_id),
            client_id: if self.client_id.is_empty() { file.client_id } else { self.client_id },
            issuer: self.issuer.or(file.issuer),
            jwks_url: self.jwks_url.or(file.jwks_url),
            grpc_listen: self.grpc_listen.or(file.grpc_listen),
            http_listen: self.http_listen.or(file.http_listen),
            leeway_seconds: self.leeway_seconds.or(file.leeway_seconds),
            token_cookie: self.token_cookie.or(file.token_cookie),
            strip_authorization: self.strip_authorization.or(file.strip_authorization),
            shadow: self.shadow.or(file.shadow),
            log_allow_sample_rate: self.log_allow_sample_rate.or(file.log_allow_sample_rate),
            emit_claims_metadata: self.emit_claims_metadata.or(file.emit_claims_metadata),
            envoy_strips_identity_headers: self.envoy_strips_identity_headers.or(file.envoy_strips_identity_headers),
            header: file.header,
            jwks_refresh_seconds: self.jwks_refresh_seconds.or(file.jwks_refresh_seconds),
            jwks_cooldown_seconds: self.jwks_cooldown_seconds.or(file.jwks_cooldown_seconds),
            jwks_fetch_wait_ms: self.jwks_fetch_wait_ms.or(file.jwks_fetch_wait_ms),
            policy: self.policy.or(file.policy),
            enforce_mfa: self.enforce_mfa.or(file.enforce_mfa),
            mfa_source: self.mfa_source.or(file.mfa_source),
            cognito_endpoint: self.cognito_endpoint.or(file.cognito_endpoint),
            cognito_timeout_ms: self.cognito_timeout_ms.or(file.cognito_timeout_ms),
            mfa_cache_ttl: self.mfa_cache_ttl.or(file.mfa_cache_ttl),
            mfa_negative_cache_ttl: self.mfa_negative_cache_ttl.or(file.mfa_negative_cache_ttl),
            mfa_lookups_per_second: self.mfa_lookups_per_second.or(file.mfa_lookups_per_second),
            revoke_sessions_on_mfa_enrolment: self
                .revoke_sessions_on_mfa_enrolment
                .or(file.revoke_sessions_on_mfa_enrolment),
            allow_machine_tokens: self.allow_machine_tokens.or(file.allow_machine_tokens),
            admin_listen: self.admin_listen.or(file.admin_listen),
            admin_token: self.admin_token.or(file.admin_token),
            token_cache_size: self.token_cache_size.or(file.token_cache_size),
            admin_token_file: self.admin_token_file.or(file.admin_token_file),
            data_dir: self.data_dir.or(file.data_dir),
            revocation_store: self.revocation_store.or(file.revocation_store),
            revocation_max_staleness_seconds: self
                .revocation_max_staleness_seconds
                .or(file.revocation_max_staleness_seconds),
            refresh_token_lifetime: self.refresh_token_lifetime.or(file.refresh_token_lifetime),
            allow_unrevocable_tokens: self.allow_unrevocable_tokens.or(file.allow_unrevocable_tokens),
            oauth_domain: self.oauth_domain.or(file.oauth_domain),
            token_url: self.token_url.or(file.token_url),
            userinfo_url: self.userinfo_url.or(file.userinfo_url),
            revoke_url: self.revoke_url.or(file.revoke_url),
            logout_url: self.logout_url.or(file.logout_url),
            oauth_client_id: self.oauth_client_id.or(file.oauth_client_id),
            client_secret: self.client_secret.or(file.client_secret),
            client_secret_file: self.client_secret_file.or(file.client_secret_file),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_client_ca: self.tls_client_ca.or(file.tls_client_ca),
            redirect_uri: self.redirect_uri.or(file.redirect_uri),
            logout_redirect_uri: self.logout_redirect_uri.or(file.logout_redirect_uri),
            refresh_cookie_name: self.refresh_cookie_name.or(file.refresh_cookie_name),
            refresh_cookie_path: self.refresh_cookie_path.or(file.refresh_cookie_path),
            refresh_cookie_domain: self.refresh_cookie_domain.or(file.refresh_cookie_domain),
            allowed_origin: if self.allowed_origin.is_empty() { file.allowed_origin } else { self.allowed_origin },
        })
    }

    /// Validates and derives the configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let region = self.region.ok_or_else(|| bad("region", "COGNITO_AUTHZ_REGION", "is required"))?;
        if !valid_region(&region) {
            return Err(bad("region", "COGNITO_AUTHZ_REGION", "is not an AWS region name like eu-west-1"));
        }
        let pool = self.user_pool_id.ok_or_else(|| bad("user-pool-id", "COGNITO_AUTHZ_USER_POOL_ID", "is required"))?;
        // An emulator on loopback (cognito-local) has its own pool ids and an http issuer on its own
        // address. Its rules apply only while the Cognito API is on loopback: against anything else
        // every rule stays as strict as for AWS.
        let emulator = self.cognito_endpoint.as_deref().and_then(|e| reqwest::Url::parse(e).ok()).filter(is_loopback);
        let valid_pool = pool
            .strip_prefix(&format!("{region}_"))
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
        let emulator_pool = !valid_pool && emulator.is_some() && is_emulator_pool_id(&pool);
        if !valid_pool && !emulator_pool {
            let problem = if is_emulator_pool_id(&pool) {
                "must look like {region}_{id} (an emulator's pool id is accepted only with --cognito-endpoint on loopback)"
            } else {
                "must look like {region}_{id}"
            };
            return Err(bad("user-pool-id", "COGNITO_AUTHZ_USER_POOL_ID", problem));
        }
        let client_ids: Vec<String> =
            self.client_id.iter().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect();
        if client_ids.is_empty() {
            return Err(bad("client-id", "COGNITO_AUTHZ_CLIENT_IDS", "at least one app client id is required"));
        }
        let issuer = match (self.issuer, &emulator) {
            (Some(issuer), _) => issuer,
            // cognito-local's issuer: its own address and the pool id.
            (None, Some(endpoint)) if emulator_pool => format!("{}/{pool}", endpoint.as_str().trim_end_matches('/')),
            (None, _) => default_issuer(&region, &pool),
        };
        let issuer_url =
            reqwest::Url::parse(&issuer).map_err(|_| bad("issuer", "COGNITO_AUTHZ_ISSUER", "is not a URL"))?;
        let emulator_issuer = issuer_url.scheme() == "http" && emulator.is_some() && is_loopback(&issuer_url);
        if issuer_url.scheme() != "https" && !emulator_issuer {
            let problem = if issuer_url.scheme() == "http" && is_loopback(&issuer_url) {
                "must be an https URL (plain http on loopback only with --cognito-endpoint on loopback: an emulator)"
            } else {
                "must be an https URL"
            };
            return Err(bad("issuer", "COGNITO_AUTHZ_ISSUER", problem));
        }
        if issuer_url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(DEV_ISSUER_HOST)) {
            return Err(bad("issuer", "COGNITO_AUTHZ_ISSUER", "is the development issuer, which serve never accepts"));
        }
        let jwks_url =
            self.jwks_url.unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
        let jwks_url = jwks_url_checked(&jwks_url).map_err(|p| bad("jwks-url", "COGNITO_AUTHZ_JWKS_URL", p))?;
        if (emulator_pool || emulator_issuer) && !is_loopback(&jwks_url) {
            return Err(bad(
                "jwks-url",
                "COGNITO_AUTHZ_JWKS_URL",
                "must be on loopback with an emulator's pool id or http issuer (the keys come from the emulator)",
            ));
        }
        let emulator = (emulator_pool || emulator_issuer).then(|| Emulator {
            endpoint: emulator.map(|e| e.to_string()).unwrap_or_default(),
            pool_id: emulator_pool,
            http_issuer: emulator_issuer,
        });
        if let Some(name) = &self.token_cookie
            && (name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return Err(bad("token-cookie", "COGNITO_AUTHZ_TOKEN_COOKIE", "is not a cookie name"));
        }
        let defaults = KeySettings::default();
        let refresh = self.jwks_refresh_seconds.map_or(defaults.refresh_every, Duration::from_secs);
        if refresh < Duration::from_secs(60) {
            return Err(bad("jwks-refresh-seconds", "COGNITO_AUTHZ_JWKS_REFRESH_SECONDS", "must be at least 60"));
        }
        let fetch_wait = self.jwks_fetch_wait_ms.map_or(defaults.fetch_wait, Duration::from_millis);
        if fetch_wait.is_zero() || fetch_wait > Duration::from_secs(30) {
            return Err(bad("jwks-fetch-wait-ms", "COGNITO_AUTHZ_JWKS_FETCH_WAIT_MS", "must be between 1 and 30000"));
        }
        let policy = match &self.policy {
            Some(path) => Policy::load(path).map_err(|e| bad("policy", "COGNITO_AUTHZ_POLICY", e.to_string()))?,
            None => Policy::default(),
        };
        if let Some(endpoint) = &self.cognito_endpoint {
            let url = reqwest::Url::parse(endpoint)
                .map_err(|_| bad("cognito-endpoint", "COGNITO_AUTHZ_COGNITO_ENDPOINT", "is not a URL"))?;
            if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
                return Err(bad(
                    "cognito-endpoint",
                    "COGNITO_AUTHZ_COGNITO_ENDPOINT",
                    "must be https unless it points at a loopback address",
                ));
            }
        }
        let cognito_timeout = Duration::from_millis(self.cognito_timeout_ms.unwrap_or(1000));
        if cognito_timeout < Duration::from_millis(50) || cognito_timeout > Duration::from_secs(30) {
            return Err(bad("cognito-timeout-ms", "COGNITO_AUTHZ_COGNITO_TIMEOUT_MS", "must be between 50 and 30000"));
        }
        let log_allow_sample_rate = self.log_allow_sample_rate.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&log_allow_sample_rate) {
            return Err(bad("log-allow-sample-rate", "COGNITO_AUTHZ_LOG_ALLOW_SAMPLE_RATE", "must be between 0 and 1"));
        }
        for (i, mapping) in self.header.iter().enumerate() {
            let problem = |what: String| bad("config", "COGNITO_AUTHZ_CONFIG", format!("[[header]] {}: {what}", i + 1));
            crate::headers::check_name(&mapping.name).map_err(|p| problem(format!("name {:?} {p}", mapping.name)))?;
            if mapping.claim.is_empty() {
                return Err(problem("claim must name a claim".into()));
            }
            if self.header[..i].iter().any(|m| m.name == mapping.name) {
                return Err(problem(format!("name {:?} is mapped twice", mapping.name)));
            }
        }
        let mfa_defaults = MfaSettings::default();
        let mfa = MfaSettings {
            enforce: self.enforce_mfa.unwrap_or(true),
            ttl: self.mfa_cache_ttl.map_or(mfa_defaults.ttl, Duration::from_secs),
            negative_ttl: self.mfa_negative_cache_ttl.map_or(mfa_defaults.negative_ttl, Duration::from_secs),
            capacity: mfa_defaults.capacity,
            lookups_per_second: self.mfa_lookups_per_second.unwrap_or(mfa_defaults.lookups_per_second),
            revoke_sessions_on_enrolment: self
                .revoke_sessions_on_mfa_enrolment
                .unwrap_or(mfa_defaults.revoke_sessions_on_enrolment),
        };
        if mfa.lookups_per_second == 0 {
            return Err(bad("mfa-lookups-per-second", "COGNITO_AUTHZ_MFA_LOOKUPS_PER_SECOND", "must be at least 1"));
        }
        let admin_token = secret(self.admin_token, self.admin_token_file, "admin-token", "COGNITO_AUTHZ_ADMIN_TOKEN")?;
        if admin_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            return Err(bad("admin-token", "COGNITO_AUTHZ_ADMIN_TOKEN", "must be at least 16 characters"));
        }
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from(".cognito-authz"));
        let revocation_store = match self.revocation_store.as_deref() {
            None => StoreSpec::File(data_dir.join("revocations.jsonl")),
            Some(spec) if spec.starts_with("redis://") || spec.starts_with("rediss://") => {
                StoreSpec::Redis(spec.to_owned())
            }
            Some(spec) => match spec.strip_prefix("file:") {
                Some(path) if !path.is_empty() => StoreSpec::File(PathBuf::from(path)),
                _ => {
                    return Err(bad(
                        "revocation-store",
                        "COGNITO_AUTHZ_REVOCATION_STORE",
                        "must be file:PATH or redis://…",
                    ));
                }
            },
        };
        let url = |value: Option<String>,
                   flag: &'static str,
                   env: &'static str|
         -> Result<Option<reqwest::Url>, ConfigError> {
            // Codes, refresh tokens and the client secret travel to these: TLS unless on loopback.
            value.map(|v| jwks_url_checked(&v).map_err(|problem| bad(flag, env, problem))).transpose()
        };
        let mut endpoints = match url(self.oauth_domain, "oauth-domain", "COGNITO_AUTHZ_OAUTH_DOMAIN")? {
            Some(domain) => Endpoints::under(&domain),
            None => Endpoints::default(),
        };
        if let Some(u) = url(self.token_url, "token-url", "COGNITO_AUTHZ_TOKEN_URL")? {
            endpoints.token = Some(u);
        }
        if let Some(u) = url(self.userinfo_url, "userinfo-url", "COGNITO_AUTHZ_USERINFO_URL")? {
            endpoints.userinfo = Some(u);
        }
        if let Some(u) = url(self.revoke_url, "revoke-url", "COGNITO_AUTHZ_REVOKE_URL")? {
            endpoints.revoke = Some(u);
        }
        if let Some(u) = url(self.logout_url, "logout-url", "COGNITO_AUTHZ_LOGOUT_URL")? {
            endpoints.logout = Some(u);
        }
        let client_secret =
            secret(self.client_secret, self.client_secret_file, "client-secret", "COGNITO_AUTHZ_CLIENT_SECRET")?;
        let configured = endpoints.token.is_some() || endpoints.userinfo.is_some() || endpoints.revoke.is_some();
        let oauth = configured.then(|| OAuthConfig {
            endpoints,
            client_id: self.oauth_client_id.unwrap_or_else(|| client_ids[0].clone()),
            secret: client_secret,
        });
        for origin in &self.allowed_origin {
            let parsed = reqwest::Url::parse(origin).ok();
            if parsed.is_none_or(|u| u.path() != "/" || origin.ends_with('/')) {
                return Err(bad(
                    "allowed-origin",
                    "COGNITO_AUTHZ_ALLOWED_ORIGINS",
                    "each must be an origin like https://app.example.com",
                ));
            }
        }
        let tls = match (self.tls_cert, self.tls_key, self.tls_client_ca) {
            (Some(cert), Some(key), client_ca) => Some(TlsFiles { cert, key, client_ca }),
            (None, None, None) => None,
            (None, None, Some(_)) => {
                return Err(bad("tls-client-ca", "COGNITO_AUTHZ_TLS_CLIENT_CA", "needs --tls-cert and --tls-key"));
            }
            (Some(_), None, _) => return Err(bad("tls-key", "COGNITO_AUTHZ_TLS_KEY", "is needed with --tls-cert")),
            (None, Some(_), _) => return Err(bad("tls-cert", "COGNITO_AUTHZ_TLS_CERT", "is needed with --tls-key")),
        };
        let auth = AuthSettings {
            redirect_uri: self.redirect_uri,
            logout_redirect_uri: self.logout_redirect_uri,
            cookie: CookieSettings {
                name: self.refresh_cookie_name.unwrap_or_else(|| "cognito_refresh".into()),
                path: self.refresh_cookie_path.unwrap_or_else(|| "/auth".into()),
                domain: self.refresh_cookie_domain,
            },
            allowed_origins: self.allowed_origin,
            refresh_token_lifetime: Duration::from_secs(self.refresh_token_lifetime.unwrap_or(30 * 86400)),
        };
        Ok(Config {
            tls,
            emulator,
            admin_token,
            token_cache_size: self.token_cache_size.unwrap_or(100_000),
            revocation_store,
            revocation_max_staleness: Duration::from_secs(self.revocation_max_staleness_seconds.unwrap_or(10)),
            allow_unrevocable_tokens: self.allow_unrevocable_tokens.unwrap_or(false),
            oauth,
            auth,
            region,
            user_pool_id: pool,
            policy,
            policy_path: self.policy,
            mfa,
            mfa_source: self.mfa_source.unwrap_or(MfaLookup::AdminGetUser),
            cognito_endpoint: self.cognito_endpoint,
            cognito_timeout,
            allow_machine_tokens: self.allow_machine_tokens.unwrap_or(false),
            admin_listen: self.admin_listen.unwrap_or(([127, 0, 0, 1], 9090).into()),
            issuer,
            jwks_url,
            client_ids,
            grpc_listen: self.grpc_listen.unwrap_or(([0, 0, 0, 0], 9001).into()),
            http_listen: self.http_listen.unwrap_or(([0, 0, 0, 0], 8080).into()),
            leeway_seconds: self.leeway_seconds.unwrap_or(0),
            token_cookie: self.token_cookie,
            strip_authorization: self.strip_authorization.unwrap_or(false),
            shadow: self.shadow.unwrap_or(false),
            log_allow_sample_rate,
            emit_claims_metadata: self.emit_claims_metadata.unwrap_or(false),
            envoy_strips_identity_headers: self.envoy_strips_identity_headers.unwrap_or(false),
            header_claims: self.header,
            keys: KeySettings {
                cooldown: self.jwks_cooldown_seconds.map_or(defaults.cooldown, Duration::from_secs),
                fetch_wait,
                refresh_every: refresh,
                failure_backoff: defaults.failure_backoff,
            },
        })
    }
}

/// A secret from its flag or from a file (trailing newline dropped).
fn secret(
    value: Option<String>,
    file: Option<PathBuf>,
    flag: &'static str,
    env: &'static str,
) -> Result<Option<Secret>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(bad(flag, env, "give the value or the file, not both")),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| bad(flag, env, format!("cannot read {}: {e}", path.display())))?;
            Ok(Some(Secret::new(text.trim_end_matches(['\n', '\r']).to_owned())))
        }
        (None, None) => Ok(None),
    }
}

fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("config", "COGNITO_AUTHZ_CONFIG", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let problem = format!("{}: {}", path.display(), e.message());
        bad("config", "COGNITO_AUTHZ_CONFIG", problem)
    })
}

/// Cognito's issuer for a pool.
pub fn default_issuer(region: &str, pool: &str) -> String {
    let domain = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("https://cognito-idp.{region}.{domain}/{pool}")
}

fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// https anywhere; plain http only to a loopback address (a local emulator or proxy).
pub fn jwks_url_checked(url: &str) -> Result<reqwest::Url, &'static str> {
    let url = reqwest::Url::parse(url).map_err(|_| "is not a URL")?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err("must be https unless it points at a loopback address"),
        _ => Err("must be an http(s) URL"),
    }
}

/// An emulator's pool id (cognito-local: `local_2GZIdE59`): letters, digits and `_`, no region.
fn is_emulator_pool_id(pool: &str) -> bool {
    !pool.is_empty() && pool.len() <= 64 && pool.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            region: Some("eu-west-1".into()),
            user_pool_id: Some("eu-west-1_AbC123".into()),
            client_id: vec!["abc".into(), " def ".into()],
            ..ServeArgs::default()
        }
    }

    #[test]
    fn issuer_and_jwks_url_are_derived_from_region_and_pool() {
        let config = args().into_config().expect("valid configuration");
        assert_eq!(config.issuer, "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123");
        assert_eq!(
            config.jwks_url.as_str(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
        );
        assert_eq!(config.client_ids, ["abc", "def"]);
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
    fn bad_settings_name_the_flag() {
        let err = |a: ServeArgs| a.into_config().expect_err("refused").flag;
        assert_eq!(err(ServeArgs { region: None, ..args() }), "region");
        assert_eq!(err(ServeArgs { region: Some("Europe".into()), ..args() }), "region");
        assert_eq!(err(ServeArgs { user_pool_id: Some("us-east-1_AbC".into()), ..args() }), "user-pool-id");
        assert_eq!(err(ServeArgs { client_id: vec![" ".into()], ..args() }), "client-id");
        assert_eq!(err(ServeArgs { issuer: Some("http://x/y".into()), ..args() }), "issuer");
        assert_eq!(err(ServeArgs { issuer: Some(format!("https://{DEV_ISSUER_HOST}/dev")), ..args() }), "issuer");
        assert_eq!(err(ServeArgs { jwks_url: Some("http://example.com/jwks".into()), ..args() }), "jwks-url");
        assert_eq!(err(ServeArgs { token_cookie: Some("a b".into()), ..args() }), "token-cookie");
        assert_eq!(err(ServeArgs { mfa_lookups_per_second: Some(0), ..args() }), "mfa-lookups-per-second");
    }

    #[test]
    fn an_emulator_on_loopback_may_have_its_own_pool_ids_and_an_http_issuer() {
        let local = || ServeArgs {
            region: Some("us-east-1".into()),
            user_pool_id: Some("local_2GZIdE59".into()),
            cognito_endpoint: Some("http://127.0.0.1:19229".into()),
            ..args()
        };
        let config = local().into_config().expect("cognito-local's settings");
        assert_eq!(config.issuer, "http://127.0.0.1:19229/local_2GZIdE59", "its issuer: its address and the pool");
        assert_eq!(config.jwks_url.as_str(), "http://127.0.0.1:19229/local_2GZIdE59/.well-known/jwks.json");
        let emulator = config.emulator.expect("said at start-up");
        assert!(emulator.pool_id && emulator.http_issuer);
        let explicit = ServeArgs { issuer: Some("http://localhost:19229/local_2GZIdE59".into()), ..local() };
        assert!(explicit.into_config().is_ok());
        // The same settings against anything that is not loopback: as strict as for AWS.
        let err = |a: ServeArgs| a.into_config().expect_err("refused").flag;
        let remote = |endpoint: &str| ServeArgs { cognito_endpoint: Some(endpoint.into()), ..local() };
        assert_eq!(err(remote("https://cognito-idp.us-east-1.amazonaws.com")), "user-pool-id");
        assert_eq!(err(remote("http://10.0.0.5:19229")), "user-pool-id");
        assert_eq!(err(ServeArgs { cognito_endpoint: None, ..local() }), "user-pool-id");
        let http_issuer = ServeArgs { issuer: Some("http://127.0.0.1:19229/us-east-1_Abc".into()), ..args() };
        assert_eq!(
            err(ServeArgs {
                user_pool_id: Some("us-east-1_Abc".into()),
                region: Some("us-east-1".into()),
                ..http_issuer
            }),
            "issuer"
        );
        let remote_issuer = ServeArgs { issuer: Some("http://idp.example.com/local_2GZIdE59".into()), ..local() };
        assert_eq!(err(remote_issuer), "issuer");
        let remote_keys = ServeArgs { jwks_url: Some("https://keys.example.com/jwks.json".into()), ..local() };
        assert_eq!(err(remote_keys), "jwks-url");
        // moto: loopback endpoint, but AWS-shaped ids and issuer: nothing relaxed, nothing said.
        let moto = ServeArgs {
            region: Some("us-east-1".into()),
            user_pool_id: Some("us-east-1_0123abcd".into()),
            cognito_endpoint: Some("http://127.0.0.1:5000".into()),
            jwks_url: Some("http://127.0.0.1:5000/us-east-1_0123abcd/.well-known/jwks.json".into()),
            ..args()
        };
        let moto = moto.into_config().unwrap();
        assert_eq!(
            (moto.emulator, moto.issuer.as_str()),
            (None, "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_0123abcd")
        );
    }

    #[test]
    fn oauth_urls_carry_secrets_only_over_tls_or_loopback() {
        let err = |a: ServeArgs| a.into_config().expect_err("refused").flag;
        let http = || Some("http://auth.example.com/oauth2/token".to_owned());
        assert_eq!(err(ServeArgs { oauth_domain: Some("http://auth.example.com".into()), ..args() }), "oauth-domain");
        assert_eq!(err(ServeArgs { token_url: http(), ..args() }), "token-url");
        assert_eq!(err(ServeArgs { userinfo_url: http(), ..args() }), "userinfo-url");
        assert_eq!(err(ServeArgs { revoke_url: http(), ..args() }), "revoke-url");
        assert_eq!(err(ServeArgs { logout_url: http(), ..args() }), "logout-url");
        assert_eq!(err(ServeArgs { token_url: Some("ftp://127.0.0.1/t".into()), ..args() }), "token-url");
        // Positive controls: https anywhere, plain http on loopback (an emulator, oidc-provider).
        let ok = ServeArgs {
            oauth_domain: Some("https://auth.example.com".into()),
            token_url: Some("http://127.0.0.1:4000/token".into()),
            logout_url: Some("http://localhost:4000/logout".into()),
            ..args()
        };
        assert!(ok.into_config().is_ok());
    }

    #[test]
    fn plain_http_jwks_is_allowed_only_on_loopback() {
        assert!(jwks_url_checked("http://127.0.0.1:5000/p/.well-known/jwks.json").is_ok());
        assert!(jwks_url_checked("http://localhost/jwks").is_ok());
        assert!(jwks_url_checked("http://[::1]/jwks").is_ok());
        assert!(jwks_url_checked("http://10.0.0.1/jwks").is_err());
    }

    #[test]
    fn the_file_fills_what_flags_leave_unset() {
        let dir = std::env::temp_dir().join(format!("cognito-authz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "region = \"us-east-1\"\nuser-pool-id = \"us-east-1_Q\"\nclient-id = [\"x\"]\nleeway-seconds = 3\n",
        )
        .unwrap();
        let cli = ServeArgs { config: Some(path.clone()), leeway_seconds: Some(1), ..ServeArgs::default() };
        let config = cli.with_file().unwrap().into_config().expect("file completes the flags");
        assert_eq!(config.leeway_seconds, 1);
        assert_eq!(config.client_ids, ["x"]);
        std::fs::write(&path, "regoin = \"us-east-1\"\n").unwrap();
        let err = ServeArgs { config: Some(path), ..ServeArgs::default() }.with_file().expect_err("unknown key");
        assert_eq!(err.flag, "config");
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
            ServeArgs { config: Some(path.clone()), ..args() }.with_file().unwrap().into_config()
        };
        let config = with("x-tenant").expect("two mappings");
        assert_eq!(
            config.header_claims.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            ["x-user-email", "x-tenant"]
        );
        for bad in
            ["authorization", "cookie", "host", "transfer-encoding", ":path", "x-user-id", "x-user-email", "X-Up"]
        {
            let err = with(bad).expect_err(bad);
            assert_eq!((err.flag, err.env), ("config", "COGNITO_AUTHZ_CONFIG"), "{bad}");
            assert!(err.problem.contains("[[header]] 2"), "{}", err.problem);
        }
    }
}
