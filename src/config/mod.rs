//! Validation: [`Settings`] (flags over environment over file, defaults in one place) into the
//! `Config` the parts are built from, one section at a time. A bad setting stops start-up with one
//! line naming its flag and environment variable, both read from the CLI definition.

pub mod issuer;
pub mod pool;
pub mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::authz::headers::HeaderClaim;
use crate::authz::policy::Policy;
pub use crate::cognito::IssuerFormat;
use crate::config::issuer::IssuerConfig;
pub use crate::config::pool::{DEV_ISSUER_HOST, Emulator, Pool, PoolSettings, default_issuer};
pub use crate::config::settings::{ConfigError, ServeArgs, Settings};
use crate::http::auth::{AuthSettings, CookieSettings};
pub use crate::http::oauth::{Endpoints, OAuthConfig};
use crate::keys::key_store::KeySettings;
use crate::loopback::https_unless_loopback;
use crate::mfa::MfaSettings;
use crate::revocation::redis::target::{Target, TargetSettings};
pub use crate::secret::{Secret, SecretUrl};

/// After a failed key fetch, requests answer 503 without fetching for this long (not a setting:
/// it only spaces out fetches while the keys are unreachable).
const KEY_FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// How many users' MFA state is cached at most.
const MFA_CACHE_CAPACITY: u64 = 100_000;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The user pool of the single-pool flags, or the one the HTTP module serves with `[[issuer]]`
    /// tables.
    pub pool: Pool,
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
    /// With several issuers, the one whose identity headers stay bare (`--unqualified-issuer`).
    pub unqualified_issuer: Option<String>,
    /// The key store's timings.
    pub keys: KeySettings,
    /// The policy read at start-up, and where to read it again on SIGHUP.
    pub policy: Policy,
    /// The policy file, read again on SIGHUP.
    pub policy_path: Option<PathBuf>,
    /// The MFA gate's settings.
    pub mfa: MfaSettings,
    /// How long a Cognito call may take in all.
    pub cognito_timeout: Duration,
    /// The admin listener (`/metrics`, `/livez`, admin routes).
    pub admin_listen: SocketAddr,
    /// The HTTP authorization listener, when on.
    pub authz_http: Option<AuthzHttp>,
    /// Where browsers refused for want of credentials are sent (`--sign-in-url`).
    pub sign_in_url: Option<String>,
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
    /// The `[[issuer]]` tables, checked; empty with the single-pool flags (see `Config::all_issuers`).
    pub issuers: Vec<IssuerConfig>,
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

/// The HTTP authorization listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzHttp {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The proxies that may ask it.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Envoy `http_service`'s `path_prefix`, taken off the path.
    pub prefix: String,
}

/// Where revocations are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// An append-only file (one replica).
    File(PathBuf),
    /// A Redis deployment (shared by replicas; its passwords never shown), and the namespace of the
    /// list's key and channel.
    Redis {
        /// Which Redis, how to reach it, and what a revocation waits for.
        target: Box<Target>,
        /// `--revocation-namespace`, or the served pool's id.
        namespace: String,
    },
}

fn bad(flag: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(flag, problem)
}

impl Config {
    /// A configuration with every default, for an issuer whose keys are at `jwks_url`
    /// (dev mode and tests).
    pub fn with_defaults(issuer: &str, jwks_url: reqwest::Url, client_ids: Vec<String>) -> Config {
        let defaults = Settings::default();
        let pool = Pool {
            issuer: issuer.to_owned(),
            jwks_url,
            client_ids,
            region: "us-east-1".to_owned(),
            user_pool_id: "us-east-1_dev".to_owned(),
            cognito_endpoint: None,
            mfa_source: defaults.mfa_source,
            mfa_factors: Default::default(),
            mfa_from_amr: defaults.mfa_from_amr,
            allow_machine_tokens: defaults.allow_machine_tokens,
            emulator: None,
            regional: vec![],
        };
        defaults.with_pool(pool).expect("the default settings are valid")
    }

    /// The issuers this configuration verifies: its `[[issuer]]` tables, or the single pool of its
    /// flags (named `default`).
    pub fn all_issuers(&self) -> Vec<IssuerConfig> {
        if self.issuers.is_empty() {
            vec![IssuerConfig::for_pool(crate::verify::claims::DEFAULT_ISSUER, &self.pool)]
        } else {
            self.issuers.clone()
        }
    }
}

impl Settings {
    /// Validates the settings into the configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        if self.issuers.is_empty() {
            if self.unqualified_issuer.as_deref().is_some_and(|name| name != crate::verify::claims::DEFAULT_ISSUER) {
                return Err(bad("unqualified-issuer", "names an [[issuer]], but there are no [[issuer]] tables"));
            }
            let pool = self.pool_settings().check()?;
            return self.with_pool(pool);
        }
        let (issuers, served) = crate::config::issuer::from_tables(&self)?;
        let signs_in = served.is_some();
        // With no Cognito issuer to serve, the HTTP module gets an inert pool nothing is verified
        // against (only `issuers` verifies) and no sign-in.
        let inert = || {
            let none = ["none".to_owned()];
            let settings = Settings {
                region: Some("us-east-1".into()),
                user_pool_id: Some("us-east-1_none".into()),
                ..Settings::default()
            };
            PoolSettings { client_id: &none, ..settings.pool_settings() }.check()
        };
        if let Some(name) = self.unqualified_issuer.as_deref()
            && !issuers.iter().any(|i| i.name == name)
        {
            return Err(bad("unqualified-issuer", format!("{name:?} is not the name of an [[issuer]]")));
        }
        let redis = self.revocation_store.as_ref().is_some_and(|s| s.expose().starts_with("redis"));
        if !signs_in && redis && self.revocation_namespace.is_none() {
            // A default derived from the issuers would move the list (to an empty key) whenever
            // one is added: every revocation would be dropped without a word.
            return Err(bad(
                "revocation-namespace",
                "is required with a Redis store when no single Cognito pool is served (several pools without \
                 --oauth-issuer, or only OIDC issuers); before this setting existed such deployments used us-east-1_none",
            ));
        }
        let mut config = self.with_pool(served.map_or_else(inert, Ok)?)?;
        if !signs_in {
            config.oauth = None;
        }
        config.issuers = issuers;
        Ok(config)
    }

    /// The single-pool flags.
    pub fn pool_settings(&self) -> PoolSettings<'_> {
        PoolSettings {
            region: self.region.as_deref(),
            user_pool_id: self.user_pool_id.as_deref(),
            client_id: &self.client_id,
            issuer: self.issuer.as_deref(),
            jwks_url: self.jwks_url.as_deref(),
            cognito_endpoint: self.cognito_endpoint.as_deref(),
            mfa_source: self.mfa_source,
            mfa_factors: &self.mfa_factors,
            mfa_from_amr: self.mfa_from_amr,
            allow_machine_tokens: self.allow_machine_tokens,
            issuer_format: self.issuer_format,
            replica_regions: &self.replica_region,
        }
    }

    /// Everything else, for `pool`.
    pub(crate) fn with_pool(self, pool: Pool) -> Result<Config, ConfigError> {
        if let Some(name) = &self.token_cookie
            && (name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return Err(bad("token-cookie", "is not a cookie name"));
        }
        let policy = match &self.policy {
            Some(path) => Policy::load(path).map_err(|e| bad("policy", e.to_string()))?,
            None => Policy::default(),
        };
        let cognito_timeout = Duration::from_millis(self.cognito_timeout_ms);
        if cognito_timeout < Duration::from_millis(50) || cognito_timeout > Duration::from_secs(30) {
            return Err(bad("cognito-timeout-ms", "must be between 50 and 30000"));
        }
        if !(0.0..=1.0).contains(&self.log_allow_sample_rate) {
            return Err(bad("log-allow-sample-rate", "must be between 0 and 1"));
        }
        for (i, mapping) in self.header.iter().enumerate() {
            let problem = |what: String| bad("config", format!("[[header]] {}: {what}", i + 1));
            crate::authz::headers::check_name(&mapping.name)
                .map_err(|p| problem(format!("name {:?} {p}", mapping.name)))?;
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
        let revocation_store = match self.revocation_store.as_ref().map(|s| (s, s.expose())) {
            None => StoreSpec::File(self.data_dir.join("revocations.jsonl")),
            Some((_, spec)) if spec.starts_with("redis") => {
                let namespace = self.revocation_namespace.clone().unwrap_or_else(|| pool.user_pool_id.clone());
                if namespace.is_empty()
                    || namespace.len() > 128
                    || !namespace.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    return Err(bad(
                        "revocation-namespace",
                        "must be 1 to 128 characters of A-Z, a-z, 0-9, -, _ and .",
                    ));
                }
                let settings = TargetSettings {
                    username: self.revocation_redis_username.clone(),
                    password: secret(
                        self.revocation_redis_password.clone(),
                        self.revocation_redis_password_file.clone(),
                        "revocation-redis-password",
                    )?,
                    sentinel_username: self.revocation_redis_sentinel_username.clone(),
                    sentinel_password: secret(
                        self.revocation_redis_sentinel_password.clone(),
                        self.revocation_redis_sentinel_password_file.clone(),
                        "revocation-redis-sentinel-password",
                    )?,
                    ca_file: self.revocation_redis_ca_file.clone(),
                    client_cert: self.revocation_redis_client_cert.clone(),
                    client_key: self.revocation_redis_client_key.clone(),
                    min_replicas: self.revocation_min_replicas,
                    replica_timeout: Duration::from_millis(self.revocation_replica_timeout_ms),
                };
                let target = Target::parse(spec, settings).map_err(|(flag, problem)| bad(flag, problem))?;
                StoreSpec::Redis { target: Box::new(target), namespace }
            }
            Some((_, spec)) => match spec.strip_prefix("file:") {
                Some(path) if !path.is_empty() => StoreSpec::File(PathBuf::from(path)),
                _ => return Err(bad("revocation-store", "must be file:PATH or a redis URL")),
            },
        };
        for origin in &self.allowed_origin {
            let parsed = reqwest::Url::parse(origin).ok();
            if parsed.is_none_or(|u| u.path() != "/" || origin.ends_with('/')) {
                return Err(bad("allowed-origin", "each must be an origin like https://app.example.com"));
            }
        }
        let trusted_proxies = self
            .trusted_proxy
            .iter()
            .map(|cidr| {
                cidr.trim().parse::<ipnet::IpNet>().map_err(|_| bad("trusted-proxy", format!("{cidr:?} is not a CIDR")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prefix = &self.authz_http_prefix;
        if prefix.len() < 2 || !prefix.starts_with('/') || prefix.ends_with('/') {
            return Err(bad("authz-http-prefix", "must be a path like /envoy"));
        }
        let sign_in_url = match self.sign_in_url.as_deref() {
            None => None,
            // A path on the same site; `//` would be another host.
            Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains(['\r', '\n']) => {
                Some(path.to_owned())
            }
            Some(url) => Some(
                https_unless_loopback(url)
                    .map_err(|p| bad("sign-in-url", format!("{p} (or give a path such as /auth/login)")))?
                    .to_string(),
            ),
        };
        let authz_http = self.authz_http_listen.map(|listen| AuthzHttp {
            listen,
            trusted_proxies,
            prefix: self.authz_http_prefix.clone(),
        });
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
            admin_token,
            token_cache_size: self.token_cache_size,
            revocation_store,
            revocation_max_staleness: Duration::from_secs(self.revocation_max_staleness_seconds),
            allow_unrevocable_tokens: self.allow_unrevocable_tokens,
            oauth,
            policy,
            policy_path: self.policy,
            cognito_timeout,
            admin_listen: self.admin_listen,
            authz_http,
            sign_in_url,
            pool,
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
            unqualified_issuer: self.unqualified_issuer,
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
        value.as_deref().map(|v| https_unless_loopback(v).map_err(|problem| bad(flag, problem))).transpose()
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
