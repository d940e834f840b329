//! The Cognito user pool whose tokens are accepted: region, pool id, app clients, issuer, keys and
//! API, checked as AWS names them. An emulator on loopback (cognito-local) has its own pool ids and
//! an http issuer on its own address; those rules relax only while its API is on loopback, and
//! against anything else every rule stays as strict as for AWS. The single-pool flags and each
//! `kind = "cognito"` table are checked here, so the two cannot drift apart.

use crate::cognito::{IssuerFormat, MfaFactor, MfaFactors, MfaLookup};
use crate::config::settings::ConfigError;
use crate::loopback::{https_unless_loopback, is_loopback};
use crate::secret::ShownUrl;

/// Issuers under this host belong to `cognito-authz dev` and are never accepted by `serve`.
pub const DEV_ISSUER_HOST: &str = "cognito-authz.invalid";

/// A user pool, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Pool {
    /// The `iss` its tokens carry, compared exactly.
    pub issuer: String,
    /// Where its keys are.
    pub jwks_url: reqwest::Url,
    /// The app clients whose access tokens are accepted.
    pub client_ids: Vec<String>,
    /// Its AWS region.
    pub region: String,
    /// Its id.
    pub user_pool_id: String,
    /// Its Cognito API, when not the regional endpoint.
    pub cognito_endpoint: Option<String>,
    /// How its users' MFA state is read.
    pub mfa_source: MfaLookup,
    /// The second factors its `mfa` routes count.
    pub mfa_factors: MfaFactors,
    /// Its tokens' `amr`, when present, decides `mfa` routes.
    pub mfa_from_amr: bool,
    /// Client-credentials tokens are accepted on routes that ask for scopes.
    pub allow_machine_tokens: bool,
    /// Set when it is an emulator's, on loopback (said in a warning at start-up).
    pub emulator: Option<Emulator>,
    /// A replicated pool's other regions' `iss` and keys (original format), also accepted.
    pub regional: Vec<(String, reqwest::Url)>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("endpoint", &ShownUrl(&self.endpoint))
            .field("pool_id", &self.pool_id)
            .field("http_issuer", &self.http_issuer)
            .finish()
    }
}

/// URLs are shown without their userinfo: a password in `--jwks-url` or `--cognito-endpoint` never
/// reaches a log line or an error through `Debug`.
impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("issuer", &ShownUrl(&self.issuer))
            .field("jwks_url", &ShownUrl(self.jwks_url.as_str()))
            .field("client_ids", &self.client_ids)
            .field("region", &self.region)
            .field("user_pool_id", &self.user_pool_id)
            .field("cognito_endpoint", &self.cognito_endpoint.as_deref().map(ShownUrl))
            .field("mfa_source", &self.mfa_source)
            .field("mfa_factors", &self.mfa_factors.label())
            .field("mfa_from_amr", &self.mfa_from_amr)
            .field("allow_machine_tokens", &self.allow_machine_tokens)
            .field("emulator", &self.emulator)
            .field("regional", &self.regional.iter().map(|(iss, _)| iss).collect::<Vec<_>>())
            .finish()
    }
}

/// Which of AWS's rules were relaxed for an emulator on loopback, and where it is.
#[derive(Clone, PartialEq, Eq)]
pub struct Emulator {
    /// The emulator's Cognito API, for the start-up warning: credentials in it shown as `***`.
    pub endpoint: String,
    /// The pool id does not look like `{region}_{id}`.
    pub pool_id: bool,
    /// The issuer is plain http (on loopback).
    pub http_issuer: bool,
}

/// A pool's settings as written (the single-pool flags, or a `kind = "cognito"` table); each
/// field is the setting of the same name.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings<'a> {
    /// `region`: required.
    pub region: Option<&'a str>,
    /// `user-pool-id`: required.
    pub user_pool_id: Option<&'a str>,
    /// `client-id`: at least one.
    pub client_id: &'a [String],
    /// `issuer`: defaults to Cognito's for the pool (or the emulator's).
    pub issuer: Option<&'a str>,
    /// `jwks-url`: defaults to `{issuer}/.well-known/jwks.json`.
    pub jwks_url: Option<&'a str>,
    /// `cognito-endpoint`: defaults to the regional endpoint.
    pub cognito_endpoint: Option<&'a str>,
    /// `mfa-source`.
    pub mfa_source: MfaLookup,
    /// `mfa-factors`: none listed is TOTP alone.
    pub mfa_factors: &'a [MfaFactor],
    /// `mfa-from-amr`.
    pub mfa_from_amr: bool,
    /// `allow-machine-tokens`.
    pub allow_machine_tokens: bool,
    /// `issuer-format`: `original` unless given.
    pub issuer_format: Option<IssuerFormat>,
    /// `replica-region`: a replicated pool's other regions.
    pub replica_regions: &'a [String],
}

fn bad(flag: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(flag, problem)
}

impl PoolSettings<'_> {
    /// The pool, or the first setting that is wrong.
    pub fn check(&self) -> Result<Pool, ConfigError> {
        let region = self.region.ok_or_else(|| bad("region", "is required"))?;
        if !valid_region(region) {
            return Err(bad("region", "is not an AWS region name like eu-west-1"));
        }
        let pool = self.user_pool_id.ok_or_else(|| bad("user-pool-id", "is required"))?;
        let emulator = self.cognito_endpoint.and_then(|e| reqwest::Url::parse(e).ok()).filter(is_loopback);
        // A pool's id names its primary region; `region` (the API this service calls) may be one
        // of its replicas'.
        let primary = pool
            .split_once('_')
            .filter(|(prefix, rest)| {
                valid_region(prefix) && !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            .map(|(prefix, _)| prefix);
        let replicas = self.replica_regions;
        let valid_pool = primary.is_some_and(|p| p == region || replicas.iter().any(|r| r == region));
        let emulator_pool = !valid_pool && emulator.is_some() && is_emulator_pool_id(pool);
        if !valid_pool && !emulator_pool {
            return Err(bad(
                "user-pool-id",
                if is_emulator_pool_id(pool) && primary.is_none() {
                    "must look like {region}_{id} (an emulator's pool id is accepted only with --cognito-endpoint on loopback)"
                } else {
                    "must look like {region}_{id} (or name the primary region of a pool whose replica-region is --region)"
                },
            ));
        }
        let primary = primary.unwrap_or(region);
        for (i, replica) in replicas.iter().enumerate() {
            if !valid_region(replica) || replica == primary || replicas[..i].contains(replica) {
                return Err(bad("replica-region", "each must be an AWS region other than the pool's primary, once"));
            }
        }
        if !replicas.is_empty() && (emulator_pool || self.issuer.is_some() || self.jwks_url.is_some()) {
            return Err(bad(
                "replica-region",
                "derives each region's issuer and keys: give it without issuer, jwks-url or an emulator",
            ));
        }
        let client_ids: Vec<String> =
            self.client_id.iter().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect();
        if client_ids.is_empty() {
            return Err(bad("client-id", "at least one app client id is required"));
        }
        let format = self.issuer_format.unwrap_or_default();
        let derived = match format {
            IssuerFormat::Original => default_issuer(primary, pool),
            IssuerFormat::Updated => updated_issuer(primary, pool),
        };
        let issuer = match (self.issuer, &emulator) {
            (Some(issuer), _) if self.issuer_format.is_some() && issuer != derived => {
                return Err(bad(
                    "issuer-format",
                    format!("and issuer disagree: the {format:?} format names {derived}"),
                ));
            }
            (Some(issuer), _) => issuer.to_owned(),
            // cognito-local's issuer: its own address and the pool id.
            (None, Some(endpoint)) if emulator_pool => format!("{}/{pool}", endpoint.as_str().trim_end_matches('/')),
            (None, _) => derived,
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
        let jwks_url = match self.jwks_url {
            Some(url) => url.to_owned(),
            None => format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
        };
        let jwks_url = https_unless_loopback(&jwks_url).map_err(|p| bad("jwks-url", p))?;
        if (emulator_pool || emulator_issuer) && !is_loopback(&jwks_url) {
            return Err(bad(
                "jwks-url",
                "must be on loopback with an emulator's pool id or http issuer (the keys come from the emulator)",
            ));
        }
        if let Some(endpoint) = self.cognito_endpoint {
            let url = reqwest::Url::parse(endpoint).map_err(|_| bad("cognito-endpoint", "is not a URL"))?;
            if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
                return Err(bad("cognito-endpoint", "must be https unless it points at a loopback address"));
            }
        }
        let emulator = (emulator_pool || emulator_issuer).then(|| Emulator {
            endpoint: emulator.map(|e| crate::secret::without_userinfo(e.as_str())).unwrap_or_default(),
            pool_id: emulator_pool,
            http_issuer: emulator_issuer,
        });
        // With the original format each replica region issues under its own name, with its own
        // keys; with the updated one every region names the primary.
        let regional = match format {
            IssuerFormat::Original => replicas
                .iter()
                .map(|r| {
                    let iss = default_issuer(r, pool);
                    let jwks = https_unless_loopback(&format!("{iss}/.well-known/jwks.json"))
                        .map_err(|p| bad("replica-region", p))?;
                    Ok((iss, jwks))
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
            IssuerFormat::Updated => vec![],
        };
        Ok(Pool {
            regional,
            issuer,
            jwks_url,
            client_ids,
            region: region.to_owned(),
            user_pool_id: pool.to_owned(),
            cognito_endpoint: self.cognito_endpoint.map(str::to_owned),
            mfa_source: self.mfa_source,
            mfa_factors: MfaFactors::of(self.mfa_factors),
            mfa_from_amr: self.mfa_from_amr,
            allow_machine_tokens: self.allow_machine_tokens,
            emulator,
        })
    }
}

/// Cognito's original issuer for a pool in `region`.
pub fn default_issuer(region: &str, pool: &str) -> String {
    format!("https://cognito-idp.{region}.{}/{pool}", domain(region))
}

/// Cognito's updated issuer for a pool whose primary region is `region`.
pub fn updated_issuer(region: &str, pool: &str) -> String {
    format!("https://issuer-cognito-idp.{region}.{}/{pool}", domain(region))
}

fn domain(region: &str) -> &'static str {
    if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" }
}

fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// An emulator's pool id (cognito-local: `local_2GZIdE59`): letters, digits and `_`, no region.
fn is_emulator_pool_id(pool: &str) -> bool {
    !pool.is_empty() && pool.len() <= 64 && pool.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
