//! Validation: [`Settings`] (flags over environment over file, defaults in one place) into the
//! `Config` the parts are built from, one section at a time. A bad setting stops start-up with one
//! line naming its flag and environment variable, both read from the CLI definition.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args as _;

use crate::cognito::MfaLookup;
use crate::headers::HeaderClaim;
use crate::http::auth::{AuthSettings, CookieSettings};
use crate::key_store::KeySettings;
use crate::mfa::MfaSettings;
pub use crate::oauth::Endpoints;
use crate::policy::Policy;
pub use crate::secret::Secret;
pub use crate::settings::{ServeArgs, Settings};

/// Issuers under this host belong to `cognito-authz dev` and are never accepted by `serve`.
pub const DEV_ISSUER_HOST: &str = "cognito-authz.invalid";

/// After a failed key fetch, requests answer 503 without fetching for this long (not a setting:
/// it only spaces out fetches while the keys are unreachable).
const KEY_FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// How many users' MFA state is cached at most.
const MFA_CACHE_CAPACITY: u64 = 100_000;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `iss` tokens must carry, compared exactly.
    pub issuer: String,
    /// Where the pool's signing keys are fetched.
    pub jwks_url: reqwest::Url,
    /// The app clients whose access tokens are accepted.
    pub client_ids: Vec<String>,
    /// The gRPC ext_authz and health listener.
    pub grpc_listen: SocketAddr,
    /// The HTTP module's listener.
    pub http_listen: SocketAddr,
    /// Clock tolerance on `exp`, `nbf` and `iat`.
    pub leeway_seconds: u64,
    /// A cookie that may carry the access token.
    pub token_cookie: Option<String>,
    /// Remove `authorization` before the upstream on allow.
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
    /// The key store's timings.
    pub keys: KeySettings,
    /// The user pool's AWS region.
    pub region: String,
    /// The user pool.
    pub user_pool_id: String,
    /// The policy read at start-up, and where to read it again on SIGHUP.
    pub policy: Policy,
    /// The policy file, read again on SIGHUP.
    pub policy_path: Option<PathBuf>,
    /// The MFA gate's settings.
    pub mfa: MfaSettings,
    /// How MFA state is read from Cognito.
    pub mfa_source: MfaLookup,
    /// The Cognito API, when not the regional endpoint.
    pub cognito_endpoint: Option<String>,
    /// How long a Cognito call may take in all.
    pub cognito_timeout: Duration,
    /// Client-credentials tokens are accepted on routes that ask for scopes.
    pub allow_machine_tokens: bool,
    /// The admin listener (`/metrics`, `/livez`, admin routes).
    pub admin_listen: SocketAddr,
    /// The bearer token of the admin routes; off without one.
    pub admin_token: Option<Secret>,
    /// How many verified tokens are cached.
    pub token_cache_size: u64,
    /// Where revocations are kept.
    pub revocation_store: StoreSpec,
    /// With Redis: how old the copy may be before decisions answer 503.
    pub revocation_max_staleness: Duration,
    /// Tokens without `jti`/`origin_jti` are accepted.
    pub allow_unrevocable_tokens: bool,
    /// The OAuth endpoints and the confidential client, when sign-in is configured.
    pub oauth: Option<OAuthConfig>,
    /// The HTTP module's settings.
    pub auth: AuthSettings,
    /// TLS on the gRPC and HTTP listeners, when configured.
    pub tls: Option<TlsFiles>,
    /// Set when a rule was relaxed for a Cognito emulator on loopback (said in a warning at start-up).
    pub emulator: Option<Emulator>,
    /// The `[[issuer]]` tables, checked; empty with the single-pool flags (see `issuer::issuers_of`).
    pub issuers: Vec<crate::issuer::IssuerConfig>,
}

/// The user pool whose tokens are accepted.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Where its keys are.
    pub jwks_url: reqwest::Url,
    /// The app clients accepted.
    pub client_ids: Vec<String>,
    /// Its AWS region.
    pub region: String,
    /// Its id.
    pub user_pool_id: String,
    /// Set when it is an emulator's, on loopback.
    pub emulator: Option<Emulator>,
}

/// Which of AWS's rules were relaxed for an emulator on loopback, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    /// The emulator's Cognito API.
    pub endpoint: String,
    /// The pool id does not look like `{region}_{id}`.
    pub pool_id: bool,
    /// The issuer is plain http (on loopback).
    pub http_issuer: bool,
}

/// Where the listeners' TLS material is (PEM files, read at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// With it, gRPC clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

/// Where revocations are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// An append-only file (one replica).
    File(PathBuf),
    /// A Redis URL (shared by replicas).
    Redis(String),
}

/// The confidential client of the HTTP module.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// Cognito's OAuth endpoints.
    pub endpoints: Endpoints,
    /// The app client that exchanges codes.
    pub client_id: String,
    /// Its secret, for a confidential client.
    pub secret: Option<Secret>,
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

fn bad(flag: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(flag, problem)
}

impl Config {
    /// A configuration with every default, for an issuer whose keys are at `jwks_url`
    /// (dev mode and tests).
    pub fn with_defaults(issuer: &str, jwks_url: reqwest::Url, client_ids: Vec<String>) -> Config {
        let pool = Pool {
            issuer: issuer.to_owned(),
            jwks_url,
            client_ids,
            region: "us-east-1".to_owned(),
            user_pool_id: "us-east-1_dev".to_owned(),
            emulator: None,
        };
        Settings::default().with_pool(pool).expect("the default settings are valid")
    }
}

impl Settings {
    /// Validates the settings into the configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        if !self.issuers.is_empty() {
            return crate::issuer::config_from_tables(self);
        }
        let pool = self.pool()?;
        self.with_pool(pool)
    }

    /// The user pool: region, pool id, app clients, issuer and where its keys are.
    fn pool(&self) -> Result<Pool, ConfigError> {
        let region = self.region.clone().ok_or_else(|| bad("region", "is required"))?;
        if !valid_region(&region) {
            return Err(bad("region", "is not an AWS region name like eu-west-1"));
        }
        let pool = self.user_pool_id.clone().ok_or_else(|| bad("user-pool-id", "is required"))?;
        // An emulator on loopback (cognito-local) has its own pool ids and an http issuer on its own
        // address. Its rules apply only while the Cognito API is on loopback: against anything else
        // every rule stays as strict as for AWS.
        let emulator = self.cognito_endpoint.as_deref().and_then(|e| reqwest::Url::parse(e).ok()).filter(is_loopback);
        let valid_pool = pool
            .strip_prefix(&format!("{region}_"))
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
        let emulator_pool = !valid_pool && emulator.is_some() && is_emulator_pool_id(&pool);
        if !valid_pool && !emulator_pool {
            return Err(bad(
                "user-pool-id",
                if is_emulator_pool_id(&pool) {
                    "must look like {region}_{id} (an emulator's pool id is accepted only with --cognito-endpoint on loopback)"
                } else {
                    "must look like {region}_{id}"
                },
            ));
        }
        let client_ids: Vec<String> =
            self.client_id.iter().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect();
        if client_ids.is_empty() {
            return Err(bad("client-id", "at least one app client id is required"));
        }
        let issuer = match (&self.issuer, &emulator) {
            (Some(issuer), _) => issuer.clone(),
            // cognito-local's issuer: its own address and the pool id.
            (None, Some(endpoint)) if emulator_pool => format!("{}/{pool}", endpoint.as_str().trim_end_matches('/')),
            (None, _) => default_issuer(&region, &pool),
        };
        let issuer_url = reqwest::Url::parse(&issuer).map_err(|_| bad("issuer", "is not a URL"))?;
        let emulator_issuer = issuer_url.scheme() == "http" && emulator.is_some() && is_loopback(&issuer_url);
        if issuer_url.scheme() != "https" && !emulator_issuer {
            return Err(bad(
                "issuer",
                if issuer_url.scheme() == "http" && is_loopback(&issuer_url) {
                    "must be an https URL (plain http on loopback only with --cognito-endpoint on loopback: an emulator)"
                } else {
                    "must be an https URL"
                },
            ));
        }
        if issuer_url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(DEV_ISSUER_HOST)) {
            return Err(bad("issuer", "is the development issuer, which serve never accepts"));
        }
        let jwks_url =
            self.jwks_url.clone().unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
        let jwks_url = jwks_url_checked(&jwks_url).map_err(|p| bad("jwks-url", p))?;
        if (emulator_pool || emulator_issuer) && !is_loopback(&jwks_url) {
            return Err(bad(
                "jwks-url",
                "must be on loopback with an emulator's pool id or http issuer (the keys come from the emulator)",
            ));
        }
        let emulator = (emulator_pool || emulator_issuer).then(|| Emulator {
            endpoint: emulator.map(|e| e.to_string()).unwrap_or_default(),
            pool_id: emulator_pool,
            http_issuer: emulator_issuer,
        });
        Ok(Pool { issuer, jwks_url, client_ids, region, user_pool_id: pool, emulator })
    }

    /// Everything else, for `pool`.
    fn with_pool(self, pool: Pool) -> Result<Config, ConfigError> {
        if let Some(name) = &self.token_cookie
            && (name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return Err(bad("token-cookie", "is not a cookie name"));
        }
        let policy = match &self.policy {
            Some(path) => Policy::load(path).map_err(|e| bad("policy", e.to_string()))?,
            None => Policy::default(),
        };
        if let Some(endpoint) = &self.cognito_endpoint {
            let url = reqwest::Url::parse(endpoint).map_err(|_| bad("cognito-endpoint", "is not a URL"))?;
            if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
                return Err(bad("cognito-endpoint", "must be https unless it points at a loopback address"));
            }
        }
        let cognito_timeout = Duration::from_millis(self.cognito_timeout_ms);
        if cognito_timeout < Duration::from_millis(50) || cognito_timeout > Duration::from_secs(30) {
            return Err(bad("cognito-timeout-ms", "must be between 50 and 30000"));
        }
        if !(0.0..=1.0).contains(&self.log_allow_sample_rate) {
            return Err(bad("log-allow-sample-rate", "must be between 0 and 1"));
        }
        for (i, mapping) in self.header.iter().enumerate() {
            let problem = |what: String| bad("config", format!("[[header]] {}: {what}", i + 1));
            crate::headers::check_name(&mapping.name).map_err(|p| problem(format!("name {:?} {p}", mapping.name)))?;
            if mapping.claim.is_empty() {
                return Err(problem("claim must name a claim".into()));
            }
            if self.header[..i].iter().any(|m| m.name == mapping.name) {
                return Err(problem(format!("name {:?} is mapped twice", mapping.name)));
            }
        }
        let (keys, mfa, oauth) = (self.key_settings()?, self.mfa_settings()?, oauth(&self, &pool.client_ids)?);
        let admin_token = secret(self.admin_token, self.admin_token_file, "admin-token")?;
        if admin_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            return Err(bad("admin-token", "must be at least 16 characters"));
        }
        let revocation_store = match self.revocation_store.as_deref() {
            None => StoreSpec::File(self.data_dir.join("revocations.jsonl")),
            Some(spec) if spec.starts_with("redis://") || spec.starts_with("rediss://") => {
                StoreSpec::Redis(spec.to_owned())
            }
            Some(spec) => match spec.strip_prefix("file:") {
                Some(path) if !path.is_empty() => StoreSpec::File(PathBuf::from(path)),
                _ => return Err(bad("revocation-store", "must be file:PATH or redis://…")),
            },
        };
        for origin in &self.allowed_origin {
            let parsed = reqwest::Url::parse(origin).ok();
            if parsed.is_none_or(|u| u.path() != "/" || origin.ends_with('/')) {
                return Err(bad("allowed-origin", "each must be an origin like https://app.example.com"));
            }
        }
        let tls = match (self.tls_cert, self.tls_key, self.tls_client_ca) {
            (Some(cert), Some(key), client_ca) => Some(TlsFiles { cert, key, client_ca }),
            (None, None, None) => None,
            (None, None, Some(_)) => return Err(bad("tls-client-ca", "needs --tls-cert and --tls-key")),
            (Some(_), None, _) => return Err(bad("tls-key", "is needed with --tls-cert")),
            (None, Some(_), _) => return Err(bad("tls-cert", "is needed with --tls-key")),
        };
        Ok(Config {
            issuers: vec![],
            keys,
            mfa,
            auth: AuthSettings {
                redirect_uri: self.redirect_uri,
                logout_redirect_uri: self.logout_redirect_uri,
                cookie: CookieSettings {
                    name: self.refresh_cookie_name,
                    path: self.refresh_cookie_path,
                    domain: self.refresh_cookie_domain,
                },
                allowed_origins: self.allowed_origin,
                refresh_token_lifetime: Duration::from_secs(self.refresh_token_lifetime),
            },
            tls,
            emulator: pool.emulator,
            admin_token,
            token_cache_size: self.token_cache_size,
            revocation_store,
            revocation_max_staleness: Duration::from_secs(self.revocation_max_staleness_seconds),
            allow_unrevocable_tokens: self.allow_unrevocable_tokens,
            oauth,
            region: pool.region,
            user_pool_id: pool.user_pool_id,
            policy,
            policy_path: self.policy,
            mfa_source: self.mfa_source,
            cognito_endpoint: self.cognito_endpoint,
            cognito_timeout,
            allow_machine_tokens: self.allow_machine_tokens,
            admin_listen: self.admin_listen,
            issuer: pool.issuer,
            jwks_url: pool.jwks_url,
            client_ids: pool.client_ids,
            grpc_listen: self.grpc_listen,
            http_listen: self.http_listen,
            leeway_seconds: self.leeway_seconds,
            token_cookie: self.token_cookie,
            strip_authorization: self.strip_authorization,
            shadow: self.shadow,
            log_allow_sample_rate: self.log_allow_sample_rate,
            emit_claims_metadata: self.emit_claims_metadata,
            envoy_strips_identity_headers: self.envoy_strips_identity_headers,
            header_claims: self.header,
        })
    }
}

impl Settings {
    /// The key store's timings.
    pub fn key_settings(&self) -> Result<KeySettings, ConfigError> {
        let s = self;
        let refresh_every = Duration::from_secs(s.jwks_refresh_seconds);
        if refresh_every < Duration::from_secs(60) {
            return Err(bad("jwks-refresh-seconds", "must be at least 60"));
        }
        let fetch_wait = Duration::from_millis(s.jwks_fetch_wait_ms);
        if fetch_wait.is_zero() || fetch_wait > Duration::from_secs(30) {
            return Err(bad("jwks-fetch-wait-ms", "must be between 1 and 30000"));
        }
        let cooldown = Duration::from_secs(s.jwks_cooldown_seconds);
        Ok(KeySettings { cooldown, fetch_wait, refresh_every, failure_backoff: KEY_FAILURE_BACKOFF })
    }

    /// The MFA gate's settings.
    pub fn mfa_settings(&self) -> Result<MfaSettings, ConfigError> {
        let s = self;
        if s.mfa_lookups_per_second == 0 {
            return Err(bad("mfa-lookups-per-second", "must be at least 1"));
        }
        Ok(MfaSettings {
            enforce: s.enforce_mfa,
            ttl: Duration::from_secs(s.mfa_cache_ttl),
            negative_ttl: Duration::from_secs(s.mfa_negative_cache_ttl),
            capacity: MFA_CACHE_CAPACITY,
            lookups_per_second: s.mfa_lookups_per_second,
            revoke_sessions_on_enrolment: s.revoke_sessions_on_mfa_enrolment,
        })
    }
}

/// The OAuth endpoints and client of the HTTP module, when any endpoint is configured.
fn oauth(s: &Settings, client_ids: &[String]) -> Result<Option<OAuthConfig>, ConfigError> {
    // Codes, refresh tokens and the client secret travel to these: TLS unless on loopback.
    let url = |value: &Option<String>, flag: &str| {
        value.as_deref().map(|v| jwks_url_checked(v).map_err(|problem| bad(flag, problem))).transpose()
    };
    let mut endpoints = match url(&s.oauth_domain, "oauth-domain")? {
        Some(domain) => Endpoints::under(&domain),
        None => Endpoints::default(),
    };
    for (value, flag, slot) in [
        (&s.token_url, "token-url", &mut endpoints.token),
        (&s.userinfo_url, "userinfo-url", &mut endpoints.userinfo),
        (&s.revoke_url, "revoke-url", &mut endpoints.revoke),
        (&s.logout_url, "logout-url", &mut endpoints.logout),
    ] {
        if let Some(u) = url(value, flag)? {
            *slot = Some(u);
        }
    }
    let secret = secret(s.client_secret.clone(), s.client_secret_file.clone(), "client-secret")?;
    let configured = endpoints.token.is_some() || endpoints.userinfo.is_some() || endpoints.revoke.is_some();
    Ok(configured.then(|| OAuthConfig {
        endpoints,
        client_id: s.oauth_client_id.clone().unwrap_or_else(|| client_ids[0].clone()),
        secret,
    }))
}

/// A secret from its flag or from a file (trailing newline dropped).
fn secret(value: Option<Secret>, file: Option<PathBuf>, flag: &str) -> Result<Option<Secret>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(bad(flag, "give the value or the file, not both")),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| bad(flag, format!("cannot read {}: {e}", path.display())))?;
            Ok(Some(Secret::new(text.trim_end_matches(['\n', '\r']).to_owned())))
        }
        (None, None) => Ok(None),
    }
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
