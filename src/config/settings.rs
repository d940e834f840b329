//! Every `serve` setting in one struct. Its `Default` is the only place a default lives (`--help`
//! shows them from there). Layered flag > environment > file: the `--config` file is read over the
//! defaults, then whatever clap found on the command line or in the environment is written over
//! that. Adding a setting is one field and its doc comment; `config.rs` turns the whole into the
//! validated types the parts need.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::authz::headers::HeaderClaim;
use crate::cognito::MfaLookup;
use crate::secret::{Secret, SecretUrl};

/// Where `serve` and `dev` keep local state unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = ".cognito-authz";

/// `cognito-authz serve` settings. Each flag has an environment variable and a `--config` file key
/// of the same name (`user-pool-id = "…"`).
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Settings {
    /// TOML file with the same keys as these flags (e.g. `user-pool-id = "…"`), plus `[[header]]`
    /// tables.
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
    pub client_id: Vec<String>,
    /// Expected `iss`. Defaults to `https://cognito-idp.{region}.amazonaws.com/{user_pool_id}`
    /// (`amazonaws.com.cn` in China regions).
    #[arg(long, env = "COGNITO_AUTHZ_ISSUER")]
    pub issuer: Option<String>,
    /// The pool's issuer format, as `DescribeUserPool` shows it (`IssuerConfiguration`):
    /// `original` (`https://cognito-idp.{region}.amazonaws.com/{user_pool_id}`) or `updated`
    /// (`https://issuer-cognito-idp.{region}.amazonaws.com/{user_pool_id}`), where `{region}` is
    /// the pool's primary region (its id's prefix). Defaults to `original`.
    #[arg(long, env = "COGNITO_AUTHZ_ISSUER_FORMAT", value_enum)]
    pub issuer_format: Option<crate::cognito::IssuerFormat>,
    /// A replicated pool's other regions (multi-Region replication); repeat or separate with
    /// commas. `--region` may then be one of them (the Cognito API this service calls). With the
    /// original format each region's tokens name that region in `iss`, and its issuer and keys
    /// are accepted too; with the updated format every region's tokens name the primary.
    #[arg(long = "replica-region", env = "COGNITO_AUTHZ_REPLICA_REGIONS", value_delimiter = ',')]
    pub replica_region: Vec<String>,
    /// Where the signing keys are fetched. Defaults to `{issuer}/.well-known/jwks.json`.
    /// Must be https, except to a loopback address.
    #[arg(long, env = "COGNITO_AUTHZ_JWKS_URL", hide_env_values = true)]
    pub jwks_url: Option<String>,
    /// Address of the gRPC ext_authz and health server.
    #[arg(long, env = "COGNITO_AUTHZ_GRPC_LISTEN", required = false)]
    pub grpc_listen: SocketAddr,
    /// Address of the HTTP server.
    #[arg(long, env = "COGNITO_AUTHZ_HTTP_LISTEN", required = false)]
    pub http_listen: SocketAddr,
    /// Seconds of clock tolerance on `exp`, `nbf` and `iat`.
    #[arg(long, env = "COGNITO_AUTHZ_LEEWAY_SECONDS", required = false)]
    pub leeway_seconds: u64,
    /// Cookie that may carry the access token when no `authorization` header is sent
    /// (for WebSocket and EventSource clients). Defaults to none.
    #[arg(long, env = "COGNITO_AUTHZ_TOKEN_COOKIE")]
    pub token_cookie: Option<String>,
    /// Remove the `authorization` header before the upstream on allow.
    #[arg(long, env = "COGNITO_AUTHZ_STRIP_AUTHORIZATION", action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", required = false)]
    pub strip_authorization: bool,
    /// Shadow mode everywhere: decisions are made, logged and counted (`mode="shadow"`), and every
    /// request goes on with the identity headers a valid token gives. For rolling a policy out; a
    /// route (`mode` context extension, policy rule `mode`) can say `enforce`.
    #[arg(long, env = "COGNITO_AUTHZ_SHADOW", action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", required = false)]
    pub shadow: bool,
    /// Share of allows (0 to 1) written to the decision log at `info`; denials are all written
    /// (at most 20 a second).
    #[arg(long, env = "COGNITO_AUTHZ_LOG_ALLOW_SAMPLE_RATE", required = false)]
    pub log_allow_sample_rate: f64,
    /// Send the verified claims to Envoy as `dynamic_metadata` on every allow, for Envoy RBAC rules
    /// or access logs that read them.
    #[arg(long, env = "COGNITO_AUTHZ_EMIT_CLAIMS_METADATA", action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", required = false)]
    pub emit_claims_metadata: bool,
    /// Envoy strips identity headers before ext_authz, or shows this service every one a client
    /// sends (ext_authz `allowed_headers` does not hide them): an allow then removes only those the
    /// request carried. Off: every identity header an allow does not set is removed.
    #[arg(long, env = "COGNITO_AUTHZ_ENVOY_STRIPS_IDENTITY_HEADERS", action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", required = false)]
    pub envoy_strips_identity_headers: bool,
    /// Token claims passed upstream as headers: `[[header]]` tables (`name`, `claim`) in the
    /// `--config` file only.
    #[arg(skip)]
    pub header: Vec<HeaderClaim>,
    /// Seconds between background key refreshes.
    #[arg(long, env = "COGNITO_AUTHZ_JWKS_REFRESH_SECONDS", required = false)]
    pub jwks_refresh_seconds: u64,
    /// Seconds during which unknown `kid`s are refused without fetching, after a fetch that lacked one.
    #[arg(long, env = "COGNITO_AUTHZ_JWKS_COOLDOWN_SECONDS", required = false)]
    pub jwks_cooldown_seconds: u64,
    /// Milliseconds a request waits for a key fetch before answering 503. Keep it well inside
    /// Envoy's ext_authz timeout.
    #[arg(long, env = "COGNITO_AUTHZ_JWKS_FETCH_WAIT_MS", required = false)]
    pub jwks_fetch_wait_ms: u64,
    /// Policy file (TOML) of route rules; first match wins, anything unmatched is `mfa`.
    /// Reloaded on SIGHUP. Defaults to none (every route is `mfa` unless Envoy says otherwise).
    #[arg(long, env = "COGNITO_AUTHZ_POLICY")]
    pub policy: Option<PathBuf>,
    /// Require TOTP MFA on `mfa` routes. `false` is for development only.
    #[arg(long, env = "COGNITO_AUTHZ_ENFORCE_MFA", action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", required = false)]
    pub enforce_mfa: bool,
    /// How MFA state is read: `admin-get-user` (AWS credentials) or `get-user` (the caller's
    /// token; needs the aws.cognito.signin.user.admin scope).
    #[arg(long, env = "COGNITO_AUTHZ_MFA_SOURCE", value_enum, required = false)]
    pub mfa_source: MfaLookup,
    /// The second factors an `mfa` route counts as enrolment: `totp`, `sms`, `email`; repeat or
    /// separate with commas. Defaults to `totp` alone.
    #[arg(long = "mfa-factors", env = "COGNITO_AUTHZ_MFA_FACTORS", value_enum, value_delimiter = ',')]
    pub mfa_factors: Vec<crate::cognito::MfaFactor>,
    /// On `mfa` routes, judge a Cognito token that carries `amr` by what its session used: `mfa`
    /// in it passes without a Cognito call, its absence gets the RFC 9470 step-up 401. A token
    /// without `amr` is judged by enrolment, as without this setting.
    #[arg(long, env = "COGNITO_AUTHZ_MFA_FROM_AMR", action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", required = false)]
    pub mfa_from_amr: bool,
    /// Cognito API endpoint override (an emulator, a VPC endpoint). Defaults to the regional endpoint.
    #[arg(long, env = "COGNITO_AUTHZ_COGNITO_ENDPOINT", hide_env_values = true)]
    pub cognito_endpoint: Option<String>,
    /// Milliseconds a Cognito lookup may take in all, retries included. Keep it well inside
    /// Envoy's ext_authz timeout.
    #[arg(long, env = "COGNITO_AUTHZ_COGNITO_TIMEOUT_MS", required = false)]
    pub cognito_timeout_ms: u64,
    /// Seconds "MFA enrolled" is cached per user.
    #[arg(long, env = "COGNITO_AUTHZ_MFA_CACHE_TTL", required = false)]
    pub mfa_cache_ttl: u64,
    /// Seconds "MFA not enrolled" (or "user disabled") is cached per user.
    #[arg(long, env = "COGNITO_AUTHZ_MFA_NEGATIVE_CACHE_TTL", required = false)]
    pub mfa_negative_cache_ttl: u64,
    /// Cognito MFA lookups per second for the whole process; past it a lookup answers 503 (cached
    /// answers are unaffected). Size it to the account's Cognito quota divided by the replicas,
    /// leaving room for your own admin calls.
    #[arg(long, env = "COGNITO_AUTHZ_MFA_LOOKUPS_PER_SECOND", required = false)]
    pub mfa_lookups_per_second: u32,
    /// When a user is seen going from not enrolled to enrolled in TOTP, revoke their sessions that
    /// began before (through the revocation store), so a password-only session cannot ride on the
    /// enrolment.
    #[arg(long, env = "COGNITO_AUTHZ_REVOKE_SESSIONS_ON_MFA_ENROLMENT", action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", required = false)]
    pub revoke_sessions_on_mfa_enrolment: bool,
    /// Accept client-credentials (machine) tokens on routes that ask for scopes.
    #[arg(long, env = "COGNITO_AUTHZ_ALLOW_MACHINE_TOKENS", action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", required = false)]
    pub allow_machine_tokens: bool,
    /// Address of the admin server (`/metrics`); never route Envoy traffic to it.
    #[arg(long, env = "COGNITO_AUTHZ_ADMIN_LISTEN", required = false)]
    pub admin_listen: SocketAddr,
    /// Address of the HTTP authorization listener, for proxies that ask over plain HTTP (Envoy's
    /// `http_service`, nginx `auth_request`, Traefik and Caddy forward auth). Defaults to none: off.
    #[arg(long, env = "COGNITO_AUTHZ_AUTHZ_HTTP_LISTEN")]
    pub authz_http_listen: Option<SocketAddr>,
    /// Addresses (CIDRs) of the proxies allowed to ask the HTTP authorization listener; anyone
    /// else gets 400, since the original method and URI come from headers a client could send.
    /// Comma-separated. Defaults to loopback only.
    #[arg(long = "trusted-proxy", env = "COGNITO_AUTHZ_TRUSTED_PROXIES", value_delimiter = ',', required = false)]
    pub trusted_proxy: Vec<String>,
    /// Where a browser refused for want of credentials is sent to sign in (a 302 instead of the
    /// 401, for a `GET` whose `Accept` prefers HTML; API calls always get 401): a path on the same
    /// site (`/auth/login`), or an https URL. Defaults to none: always 401.
    #[arg(long, env = "COGNITO_AUTHZ_SIGN_IN_URL")]
    pub sign_in_url: Option<String>,
    /// For Envoy's `http_service`: the `path_prefix` Envoy puts before the original path, taken off
    /// again (nginx asks at `/auth-request`, Traefik and Caddy at `/forward-auth`). Defaults to `/envoy`.
    #[arg(long, env = "COGNITO_AUTHZ_AUTHZ_HTTP_PREFIX", required = false)]
    pub authz_http_prefix: String,
    /// How many verified tokens are cached (each until its `exp`); 0 turns the cache off.
    #[arg(long, env = "COGNITO_AUTHZ_TOKEN_CACHE_SIZE", required = false)]
    pub token_cache_size: u64,
    /// Bearer token for the admin routes (`POST /admin/revoke-user`); off without one.
    #[arg(long, env = "COGNITO_AUTHZ_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// File holding the admin token (instead of `--admin-token`).
    #[arg(long, env = "COGNITO_AUTHZ_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Directory for local state (the revocation file).
    #[arg(long, env = "COGNITO_AUTHZ_DATA_DIR", required = false)]
    pub data_dir: PathBuf,
    /// Where revocations are kept: `file:PATH` (one replica) or Redis (shared by replicas):
    /// `redis://HOST:PORT/DB` (`rediss://` for TLS), `redis+sentinel://S1,S2,S3/MASTER/DB` or
    /// `redis+cluster://N1,N2,N3`. Defaults to `file:{data-dir}/revocations.jsonl`. A user and
    /// password in the URL (`redis://USER:PASSWORD@HOST:PORT/DB`) are never shown.
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_STORE", hide_env_values = true)]
    pub revocation_store: Option<SecretUrl>,
    /// With Redis: the namespace of the revocation list's key and channel
    /// (`cognito-authz:{namespace}:revocations`), which replicas of one deployment share and other
    /// deployments on the same Redis must not. Defaults to the user pool id of the pool the HTTP
    /// module serves; required when it serves none (several pools, or only OIDC issuers).
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_NAMESPACE")]
    pub revocation_namespace: Option<String>,
    /// With Redis: the ACL user of the data nodes (instead of one in the URL).
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_REDIS_USERNAME")]
    pub revocation_redis_username: Option<String>,
    /// With Redis: the data nodes' password (instead of one in the URL).
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_REDIS_PASSWORD", hide_env_values = true)]
    pub revocation_redis_password: Option<Secret>,
    /// With Redis: a file holding the data nodes' password (a mounted Secret).
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_REDIS_PASSWORD_FILE")]
    pub revocation_redis_password_file: Option<PathBuf>,
    /// With Sentinel: the sentinels' own ACL user.
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_REDIS_SENTINEL_USERNAME")]
    pub revocation_redis_sentinel_username: Option<String>,
    /// With Sentinel: the sentinels' own password.
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub revocation_redis_sentinel_password: Option<Secret>,
    /// With Sentinel: a file holding the sentinels' password.
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_REDIS_SENTINEL_PASSWORD_FILE")]
    pub revocation_redis_sentinel_password_file: Option<PathBuf>,
    /// With `rediss…`: a PEM CA to trust for Redis instead of the system's.
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_REDIS_CA_FILE")]
    pub revocation_redis_ca_file: Option<PathBuf>,
    /// With `rediss…`: a PEM client certificate for Redis (with its key).
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_REDIS_CLIENT_CERT")]
    pub revocation_redis_client_cert: Option<PathBuf>,
    /// With `rediss…`: the client certificate's PEM key.
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_REDIS_CLIENT_KEY")]
    pub revocation_redis_client_key: Option<PathBuf>,
    /// With Redis: replicas that must hold a revocation (Redis `WAIT`) before a logout or user
    /// revocation is acknowledged; when fewer do in time, the answer is 503. Defaults to 0 for one
    /// server, 1 for Sentinel and Cluster.
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_MIN_REPLICAS")]
    pub revocation_min_replicas: Option<u32>,
    /// With Redis: milliseconds a revocation waits for those replicas.
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_REPLICA_TIMEOUT_MS", required = false)]
    pub revocation_replica_timeout_ms: u64,
    /// With Redis: seconds without confirmation from Redis after which decisions answer 503
    /// rather than trust an old copy.
    #[arg(long, env = "COGNITO_AUTHZ_REVOCATION_MAX_STALENESS_SECONDS", required = false)]
    pub revocation_max_staleness_seconds: u64,
    /// Seconds a refresh token lives (how long an `origin_jti` revocation is kept); Cognito's
    /// default is 30 days.
    #[arg(long, env = "COGNITO_AUTHZ_REFRESH_TOKEN_LIFETIME", required = false)]
    pub refresh_token_lifetime: u64,
    /// Accept tokens without `jti`/`origin_jti` (app clients with token revocation off), which
    /// logout cannot revoke.
    #[arg(long, env = "COGNITO_AUTHZ_ALLOW_UNREVOCABLE_TOKENS", action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", required = false)]
    pub allow_unrevocable_tokens: bool,
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
    #[arg(long, env = "COGNITO_AUTHZ_OAUTH_DOMAIN", hide_env_values = true)]
    pub oauth_domain: Option<String>,
    /// Token endpoint (overrides the one under `--oauth-domain`).
    #[arg(long, env = "COGNITO_AUTHZ_TOKEN_URL", hide_env_values = true)]
    pub token_url: Option<String>,
    /// Userinfo endpoint (overrides the one under `--oauth-domain`).
    #[arg(long, env = "COGNITO_AUTHZ_USERINFO_URL", hide_env_values = true)]
    pub userinfo_url: Option<String>,
    /// Revocation endpoint (overrides the one under `--oauth-domain`).
    #[arg(long, env = "COGNITO_AUTHZ_REVOKE_URL", hide_env_values = true)]
    pub revoke_url: Option<String>,
    /// Hosted-UI logout endpoint (overrides the one under `--oauth-domain`).
    #[arg(long, env = "COGNITO_AUTHZ_LOGOUT_URL")]
    pub logout_url: Option<String>,
    /// The app client that exchanges codes. Defaults to the first `--client-id`.
    #[arg(long, env = "COGNITO_AUTHZ_OAUTH_CLIENT_ID")]
    pub oauth_client_id: Option<String>,
    /// The app client's secret (never logged or echoed).
    #[arg(long, env = "COGNITO_AUTHZ_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<Secret>,
    /// File holding the client secret (instead of `--client-secret`).
    #[arg(long, env = "COGNITO_AUTHZ_CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// Default `redirect_uri` for the code exchange.
    #[arg(long, env = "COGNITO_AUTHZ_REDIRECT_URI")]
    pub redirect_uri: Option<String>,
    /// Where the hosted UI sends the browser after logout (`logout_uri`).
    #[arg(long, env = "COGNITO_AUTHZ_LOGOUT_REDIRECT_URI")]
    pub logout_redirect_uri: Option<String>,
    /// Name of the refresh-token cookie.
    #[arg(long, env = "COGNITO_AUTHZ_REFRESH_COOKIE_NAME", required = false)]
    pub refresh_cookie_name: String,
    /// Path of the refresh-token cookie (the browser sends it to the auth routes only).
    #[arg(long, env = "COGNITO_AUTHZ_REFRESH_COOKIE_PATH", required = false)]
    pub refresh_cookie_path: String,
    /// Domain of the refresh-token cookie. Defaults to none (the host only).
    #[arg(long, env = "COGNITO_AUTHZ_REFRESH_COOKIE_DOMAIN")]
    pub refresh_cookie_domain: Option<String>,
    /// Origins allowed to call the HTTP module with cookies (and by CORS); comma-separated.
    /// Defaults to none: CORS off, cookie-only refresh and logout refused.
    #[arg(long = "allowed-origin", env = "COGNITO_AUTHZ_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origin: Vec<String>,
    /// With `[[issuer]]` tables: the Cognito issuer whose app client the HTTP module serves.
    /// Defaults to the only Cognito issuer.
    #[arg(long, env = "COGNITO_AUTHZ_OAUTH_ISSUER")]
    pub oauth_issuer: Option<String>,
    /// With several issuers: the one whose users' identity headers carry bare values, as with a
    /// single pool (`x-user-id: <sub>`); every other issuer's are qualified by its name
    /// (`x-user-id: partners:<sub>`), so no two principals share an identity. Defaults to none:
    /// every issuer qualified. With one issuer its headers are always bare.
    #[arg(long, env = "COGNITO_AUTHZ_UNQUALIFIED_ISSUER")]
    pub unqualified_issuer: Option<String>,
    /// Where traces go (OTLP): the collector's base URL. Defaults to none: tracing off. The
    /// standard variable is read too, and the other `OTEL_*` ones (README, "Logs and traces").
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", hide_env_values = true)]
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (the default).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL")]
    pub otlp_protocol: Option<String>,
    /// The traces' `service.name`. Defaults to `cognito-authz`.
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
    /// Which requests are traced: `parentbased_always_on` (the default), `parentbased_traceidratio`,
    /// `always_on`, `always_off`, `traceidratio`, `parentbased_always_off`.
    #[arg(long, env = "OTEL_TRACES_SAMPLER")]
    pub otel_traces_sampler: Option<String>,
    /// The ratio for the `traceidratio` samplers (0 to 1).
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG")]
    pub otel_traces_sampler_arg: Option<String>,
    /// `[[issuer]]` tables (the `--config` file only), instead of the single-pool flags.
    #[arg(skip)]
    #[serde(skip)]
    pub issuers: Vec<IssuerTable>,
    /// Log format (`--log-format`, a global flag).
    #[arg(skip)]
    pub log_format: LogFormat,
    /// Log level (`--log-level`, a global flag).
    #[arg(skip)]
    pub log_level: LogLevel,
    /// The keys the operator gave (by flag, environment or file), for rules about settings that
    /// must not be given together; everything else is a default.
    #[arg(skip)]
    #[serde(skip)]
    pub given: std::collections::BTreeSet<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            config: None,
            region: None,
            user_pool_id: None,
            client_id: vec![],
            issuer: None,
            jwks_url: None,
            issuer_format: None,
            replica_region: vec![],
            grpc_listen: ([0, 0, 0, 0], 9001).into(),
            http_listen: ([0, 0, 0, 0], 8080).into(),
            leeway_seconds: 0,
            token_cookie: None,
            strip_authorization: false,
            shadow: false,
            log_allow_sample_rate: 0.0,
            emit_claims_metadata: false,
            envoy_strips_identity_headers: false,
            header: vec![],
            jwks_refresh_seconds: 3600,
            jwks_cooldown_seconds: 10,
            jwks_fetch_wait_ms: 1000,
            policy: None,
            enforce_mfa: true,
            mfa_source: MfaLookup::AdminGetUser,
            mfa_factors: vec![],
            mfa_from_amr: false,
            cognito_endpoint: None,
            cognito_timeout_ms: 1000,
            mfa_cache_ttl: 60,
            mfa_negative_cache_ttl: 2,
            mfa_lookups_per_second: 50,
            revoke_sessions_on_mfa_enrolment: false,
            allow_machine_tokens: false,
            admin_listen: ([127, 0, 0, 1], 9090).into(),
            authz_http_listen: None,
            trusted_proxy: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            authz_http_prefix: "/envoy".to_owned(),
            sign_in_url: None,
            token_cache_size: 100_000,
            admin_token: None,
            admin_token_file: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            revocation_store: None,
            revocation_namespace: None,
            revocation_max_staleness_seconds: 10,
            revocation_redis_username: None,
            revocation_redis_password: None,
            revocation_redis_password_file: None,
            revocation_redis_sentinel_username: None,
            revocation_redis_sentinel_password: None,
            revocation_redis_sentinel_password_file: None,
            revocation_redis_ca_file: None,
            revocation_redis_client_cert: None,
            revocation_redis_client_key: None,
            revocation_min_replicas: None,
            revocation_replica_timeout_ms: 500,
            refresh_token_lifetime: 30 * 86400,
            allow_unrevocable_tokens: false,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            oauth_domain: None,
            token_url: None,
            userinfo_url: None,
            revoke_url: None,
            logout_url: None,
            oauth_client_id: None,
            client_secret: None,
            client_secret_file: None,
            redirect_uri: None,
            logout_redirect_uri: None,
            refresh_cookie_name: "cognito_refresh".into(),
            refresh_cookie_path: "/auth".into(),
            refresh_cookie_domain: None,
            allowed_origin: vec![],
            oauth_issuer: None,
            unqualified_issuer: None,
            issuers: vec![],
            otlp_endpoint: None,
            otlp_protocol: None,
            otel_service_name: None,
            otel_traces_sampler: None,
            otel_traces_sampler_arg: None,
            log_format: LogFormat::Text,
            log_level: LogLevel::Info,
            given: Default::default(),
        }
    }
}

/// One `[[issuer]]` table, as written. Key names are a contract: external tests drive them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IssuerTable {
    /// `[a-z0-9-]`, 1 to 32 characters, unique: the metrics label, the policy's and Envoy's
    /// `issuers` value and the `x-user-issuer` header.
    pub name: String,
    /// `cognito` or `oidc`. Defaults to `cognito`.
    #[serde(default)]
    pub kind: IssuerKind,
    // Cognito: the keys of the single-pool flags of the same names.
    /// Cognito: the pool's region.
    pub region: Option<String>,
    /// Cognito: the pool.
    pub user_pool_id: Option<String>,
    /// Cognito: the app clients accepted.
    #[serde(default)]
    pub client_id: Vec<String>,
    /// Its API endpoint, when not the regional one.
    pub cognito_endpoint: Option<String>,
    /// Cognito: how MFA state is read.
    pub mfa_source: Option<MfaLookup>,
    /// Cognito: the second factors counted, as the flag `--mfa-factors`.
    pub mfa_factors: Option<Vec<crate::cognito::MfaFactor>>,
    /// Cognito: as the flag `--mfa-from-amr`.
    pub mfa_from_amr: Option<bool>,
    /// Cognito: client-credentials tokens accepted on routes that ask for scopes.
    pub allow_machine_tokens: Option<bool>,
    // Both kinds.
    /// The expected `iss`. Cognito: defaults to the pool's. OIDC: required; discovery is
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: Option<String>,
    /// Where the keys are. Cognito: defaults to `{issuer}/.well-known/jwks.json`. OIDC: skips
    /// discovery.
    pub jwks_url: Option<String>,
    /// Cognito: `original` or `updated`, as the flag `--issuer-format`.
    pub issuer_format: Option<crate::cognito::IssuerFormat>,
    /// Cognito: a replicated pool's other regions, as the flag `--replica-region`.
    #[serde(default)]
    pub replica_regions: Vec<String>,
    // OIDC.
    /// The token's `aud` must contain one of these. Required for OIDC.
    #[serde(default)]
    pub audience: Vec<String>,
    /// `amr` values that show a second factor. Defaults to `["mfa"]` (RFC 8176).
    pub mfa_amr: Option<Vec<String>>,
    /// `acr` values that show a second factor. Defaults to none.
    #[serde(default)]
    pub mfa_acr: Vec<String>,
    /// Accepted signature algorithms: `RS256`, `PS256`, `ES256`. Defaults to `["RS256"]`.
    pub algorithms: Option<Vec<String>>,
    /// The claim for `x-username`. Defaults to `preferred_username`.
    pub username_claim: Option<String>,
    /// The claim for `x-user-groups` (an array of strings). Defaults to `groups`.
    pub groups_claim: Option<String>,
}

/// What kind of issuer a table describes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerKind {
    /// A Cognito user pool.
    #[default]
    Cognito,
    /// A standard OpenID provider issuing JWT access tokens (RFC 9068).
    Oidc,
}

/// Log format.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One human-readable line an event.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Log level (`RUST_LOG`, when set, wins: it takes per-module directives).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The level as an `EnvFilter` directive.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// `serve`'s command line as clap matched it: turned into [`Settings`] once the file is read, so
/// a bad file is a bad setting (exit 78), not bad usage.
#[derive(Debug, Clone)]
pub struct ServeArgs(clap::ArgMatches);

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(ServeArgs(matches.clone()))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0 = matches.clone();
        Ok(())
    }
}

impl Args for ServeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        with_defaults_in_help(Settings::augment_args(cmd))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// Appends each flag's default, read from `Settings::default()`, to its help.
fn with_defaults_in_help(mut cmd: clap::Command) -> clap::Command {
    let Ok(defaults) = toml::Table::try_from(Settings::default()) else { return cmd };
    let flags: Vec<(clap::Id, String)> =
        cmd.get_arguments().filter_map(|a| Some((a.get_id().clone(), a.get_long()?.to_owned()))).collect();
    for (id, long) in flags {
        let shown = match defaults.get(&long) {
            Some(toml::Value::String(s)) => s.clone(),
            Some(toml::Value::Array(a)) if a.is_empty() => continue,
            Some(other) => other.to_string(),
            None => continue,
        };
        cmd = cmd.mut_arg(id, |a| {
            let help = a.get_help().map(ToString::to_string).unwrap_or_default();
            a.help(format!("{help} [default: {shown}]"))
        });
    }
    cmd
}

impl ServeArgs {
    /// The settings: defaults, then the file, then the environment and flags.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut settings = match self.0.get_one::<PathBuf>("config") {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        settings.update_from_arg_matches(&self.0).map_err(|e| ConfigError::new("config", e.to_string()))?;
        let cli = ServeArgs::augment_args(clap::Command::new("serve"));
        for arg in cli.get_arguments() {
            let by_operator = matches!(
                self.0.value_source(arg.get_id().as_str()),
                Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
            );
            if let (true, Some(long)) = (by_operator, arg.get_long()) {
                settings.given.insert(long.to_owned());
            }
        }
        Ok(settings)
    }

    /// The settings of a command line (tests).
    pub fn parse<I, T>(args: I) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cmd = ServeArgs::augment_args(clap::Command::new("serve").no_binary_name(true));
        let matches = cmd.try_get_matches_from(args).map_err(|e| ConfigError::new("config", e.to_string()))?;
        ServeArgs(matches).settings()
    }
}

impl Settings {
    /// True when the operator gave `key` (a flag's name without `--`), by any layer.
    pub fn is_given(&self, key: &str) -> bool {
        self.given.contains(key)
    }

    /// The file's keys over the defaults.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let problem = |what: String| ConfigError::new("config", format!("{}: {what}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| problem(format!("cannot be read: {e}")))?;
        let invalid = |e: toml::de::Error| problem(e.message().to_owned());
        let mut table: toml::Table = toml::from_str(&text).map_err(invalid)?;
        // `issuer` is a string (the single-pool flag) or the array of `[[issuer]]` tables.
        let tables = match table.remove("issuer") {
            Some(toml::Value::Array(tables)) => Some(tables),
            Some(single) => {
                table.insert("issuer".to_owned(), single);
                None
            }
            None => None,
        };
        let given = table.keys().cloned().collect();
        let mut settings: Settings = table.try_into().map_err(invalid)?;
        if let Some(tables) = tables {
            settings.issuers = toml::Value::Array(tables).try_into().map_err(invalid)?;
        }
        settings.config = Some(path.to_owned());
        settings.given = given;
        Ok(settings)
    }
}

/// A bad setting, named by its flag and environment variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: --{flag} ({env}): {problem}")]
pub struct ConfigError {
    /// The flag, without `--`.
    pub flag: String,
    /// Its environment variable.
    pub env: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    /// A problem with the setting whose flag is `--{flag}`; its environment variable is looked up
    /// in the CLI definition.
    pub fn new(flag: &str, problem: impl Into<String>) -> ConfigError {
        let cli = Settings::augment_args(clap::Command::new("serve"));
        let arg = cli.get_arguments().find(|a| a.get_long() == Some(flag));
        debug_assert!(arg.is_some(), "no flag --{flag}");
        let env = arg.and_then(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
        ConfigError { flag: flag.to_owned(), env, problem: problem.into() }
    }
}
