//! Several issuers in one server: the `[[issuer]]` tables of the `--config` file, checked into one
//! `IssuerConfig` each. The single-pool flags describe one Cognito issuer named `default`.
//!
//! A Cognito table is checked by the very code that checks the single-pool flags (the same keys
//! mean the same thing), so the two cannot drift apart.

use serde::Deserialize;

use crate::cognito::MfaLookup;
use crate::config::{Config, ConfigError, DEV_ISSUER_HOST, Settings, jwks_url_checked};
use crate::key_set::Algorithm;

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
    /// Cognito: client-credentials tokens accepted on routes that ask for scopes.
    pub allow_machine_tokens: Option<bool>,
    // Both kinds.
    /// The expected `iss`. Cognito: defaults to the pool's. OIDC: required; discovery is
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: Option<String>,
    /// Where the keys are. Cognito: defaults to `{issuer}/.well-known/jwks.json`. OIDC: skips
    /// discovery.
    pub jwks_url: Option<String>,
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

/// One issuer, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// Its name (metrics label, policy value, `x-user-issuer`).
    pub name: String,
    /// The `iss` its tokens carry, compared exactly.
    pub iss: String,
    /// Where its keys are.
    pub keys: KeysAt,
    /// Its kind and the rules of that kind.
    pub kind: Kind,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysAt {
    /// This JWK Set URL.
    Jwks(reqwest::Url),
    /// The `jwks_uri` of this OpenID discovery document, read at start-up.
    Discovery(reqwest::Url),
}

/// An issuer's kind, with what that kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A Cognito user pool.
    Cognito(CognitoIssuer),
    /// An OpenID provider.
    Oidc(OidcIssuer),
}

/// A Cognito user pool, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoIssuer {
    /// Its region.
    pub region: String,
    /// Its id.
    pub user_pool_id: String,
    /// The app clients accepted.
    pub client_ids: Vec<String>,
    /// Its API endpoint, when not the regional one.
    pub cognito_endpoint: Option<String>,
    /// How its users' MFA state is read.
    pub mfa_source: MfaLookup,
    /// Client-credentials tokens accepted on routes that ask for scopes.
    pub allow_machine_tokens: bool,
}

/// An OpenID provider, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIssuer {
    /// The token's `aud` must contain one of these.
    pub audience: Vec<String>,
    /// The signature algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// The claim `x-username` comes from.
    pub username_claim: String,
    /// The claim `x-user-groups` comes from.
    pub groups_claim: String,
    /// `amr` values that show a second factor.
    pub mfa_amr: Vec<String>,
    /// `acr` values that show a second factor.
    pub mfa_acr: Vec<String>,
}

/// The name the single-pool flags give their issuer.
pub const DEFAULT_NAME: &str = "default";

impl IssuerConfig {
    /// The issuer the single-pool settings of `config` describe, named `default`.
    pub fn single_pool(config: &Config) -> IssuerConfig {
        IssuerConfig {
            name: DEFAULT_NAME.to_owned(),
            iss: config.issuer.clone(),
            keys: KeysAt::Jwks(config.jwks_url.clone()),
            kind: Kind::Cognito(CognitoIssuer {
                region: config.region.clone(),
                user_pool_id: config.user_pool_id.clone(),
                client_ids: config.client_ids.clone(),
                cognito_endpoint: config.cognito_endpoint.clone(),
                mfa_source: config.mfa_source,
                allow_machine_tokens: config.allow_machine_tokens,
            }),
        }
    }
}

/// The issuers a configuration verifies: its tables, or the single pool of its flags.
pub fn issuers_of(config: &Config) -> Vec<IssuerConfig> {
    if config.issuers.is_empty() { vec![IssuerConfig::single_pool(config)] } else { config.issuers.clone() }
}

fn problem(n: usize, name: &str, what: impl std::fmt::Display) -> ConfigError {
    ConfigError::new("config", format!("[[issuer]] {n} ({name:?}): {what}"))
}

/// True for a name of `[a-z0-9-]`, 1 to 32 characters.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The configuration of `args`, whose `[[issuer]]` tables replace the single-pool flags. The
/// issuer the HTTP module serves (`oauth-issuer`, else the only Cognito issuer) fills the
/// single-pool fields of `Config`, which the HTTP module reads.
pub fn config_from_tables(mut args: Settings) -> Result<Config, ConfigError> {
    let tables = std::mem::take(&mut args.issuers);
    let defaults = Settings::default();
    let flags = [
        ("region", args.region.is_some()),
        ("user-pool-id", args.user_pool_id.is_some()),
        ("client-id", !args.client_id.is_empty()),
        ("issuer", args.issuer.is_some()),
        ("jwks-url", args.jwks_url.is_some()),
        ("cognito-endpoint", args.cognito_endpoint.is_some()),
        ("mfa-source", args.is_given("mfa-source") || args.mfa_source != defaults.mfa_source),
        (
            "allow-machine-tokens",
            args.is_given("allow-machine-tokens") || args.allow_machine_tokens != defaults.allow_machine_tokens,
        ),
    ];
    if let Some((flag, _)) = flags.iter().find(|(_, set)| *set) {
        return Err(ConfigError::new(
            "config",
            format!("--{flag} and [[issuer]] tables cannot be used together: move it into an [[issuer]] table"),
        ));
    }
    let issuers = validate(&tables)?;
    let cognito: Vec<usize> =
        issuers.iter().enumerate().filter(|(_, i)| matches!(i.kind, Kind::Cognito(_))).map(|(n, _)| n).collect();
    let primary = match args.oauth_issuer.as_deref() {
        Some(name) => match issuers.iter().position(|i| i.name == name) {
            Some(n) if cognito.contains(&n) => Some(n),
            _ => {
                return Err(ConfigError::new(
                    "oauth-issuer",
                    format!("{name:?} is not the name of a cognito [[issuer]]"),
                ));
            }
        },
        None if cognito.len() == 1 => Some(cognito[0]),
        None => None,
    };
    // The single-pool fields of `Config` (read by the HTTP module): the served issuer's, or, with
    // none, an inert pool nothing is verified against (only `issuers` verifies).
    match primary.map(|n| &tables[n]) {
        Some(t) => {
            args.region = t.region.clone();
            args.user_pool_id = t.user_pool_id.clone();
            args.client_id = t.client_id.clone();
            args.issuer = t.issuer.clone();
            args.jwks_url = t.jwks_url.clone();
            args.cognito_endpoint = t.cognito_endpoint.clone();
            args.mfa_source = t.mfa_source.unwrap_or(defaults.mfa_source);
            args.allow_machine_tokens = t.allow_machine_tokens.unwrap_or(defaults.allow_machine_tokens);
        }
        None => {
            args.region = Some("us-east-1".into());
            args.user_pool_id = Some("us-east-1_none".into());
            args.client_id = vec!["none".into()];
        }
    }
    let mut config = args.into_config()?;
    if primary.is_none() {
        config.oauth = None;
    }
    config.issuers = issuers;
    Ok(config)
}

/// Checks every table: names, then each kind's own keys.
pub fn validate(tables: &[IssuerTable]) -> Result<Vec<IssuerConfig>, ConfigError> {
    let mut issuers: Vec<IssuerConfig> = Vec::with_capacity(tables.len());
    for (i, table) in tables.iter().enumerate() {
        let n = i + 1;
        let name = table.name.as_str();
        if !valid_name(name) {
            return Err(problem(n, name, "name must be 1 to 32 characters of a-z, 0-9 and -"));
        }
        if tables[..i].iter().any(|t| t.name == table.name) {
            return Err(problem(n, name, "name is used twice"));
        }
        let issuer = match table.kind {
            IssuerKind::Cognito => cognito(n, table)?,
            IssuerKind::Oidc => oidc(n, table)?,
        };
        if issuers.iter().any(|other| other.iss == issuer.iss) {
            return Err(problem(n, name, "issuer is the same as another table's: a token could not tell them apart"));
        }
        issuers.push(issuer);
    }
    Ok(issuers)
}

/// A Cognito table, checked as the single-pool flags are.
fn cognito(n: usize, t: &IssuerTable) -> Result<IssuerConfig, ConfigError> {
    let oidc_only = [
        ("audience", !t.audience.is_empty()),
        ("mfa-amr", t.mfa_amr.is_some()),
        ("mfa-acr", !t.mfa_acr.is_empty()),
        ("algorithms", t.algorithms.is_some()),
        ("username-claim", t.username_claim.is_some()),
        ("groups-claim", t.groups_claim.is_some()),
    ];
    if let Some((key, _)) = oidc_only.iter().find(|(_, set)| *set) {
        return Err(problem(n, &t.name, format!("{key} is for kind = \"oidc\" only")));
    }
    let defaults = Settings::default();
    let args = Settings {
        region: t.region.clone(),
        user_pool_id: t.user_pool_id.clone(),
        client_id: t.client_id.clone(),
        issuer: t.issuer.clone(),
        jwks_url: t.jwks_url.clone(),
        cognito_endpoint: t.cognito_endpoint.clone(),
        mfa_source: t.mfa_source.unwrap_or(defaults.mfa_source),
        allow_machine_tokens: t.allow_machine_tokens.unwrap_or(defaults.allow_machine_tokens),
        ..defaults
    };
    let config = args.into_config().map_err(|e| problem(n, &t.name, format!("{}: {}", e.flag, e.problem)))?;
    Ok(IssuerConfig { name: t.name.clone(), ..IssuerConfig::single_pool(&config) })
}

/// An OIDC table: an https issuer (http only on loopback), an audience, known algorithms.
fn oidc(n: usize, t: &IssuerTable) -> Result<IssuerConfig, ConfigError> {
    let bad = |what: &str| problem(n, &t.name, what);
    let cognito_only = [
        ("region", t.region.is_some()),
        ("user-pool-id", t.user_pool_id.is_some()),
        ("client-id", !t.client_id.is_empty()),
        ("cognito-endpoint", t.cognito_endpoint.is_some()),
        ("mfa-source", t.mfa_source.is_some()),
        ("allow-machine-tokens", t.allow_machine_tokens.is_some()),
    ];
    if let Some((key, _)) = cognito_only.iter().find(|(_, set)| *set) {
        return Err(problem(n, &t.name, format!("{key} is for kind = \"cognito\" only")));
    }
    let iss = t.issuer.clone().ok_or_else(|| bad("issuer is required for kind = \"oidc\""))?;
    let iss_url = jwks_url_checked(&iss).map_err(|p| problem(n, &t.name, format!("issuer {p}")))?;
    if iss_url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(DEV_ISSUER_HOST)) {
        return Err(bad("issuer is the development issuer, which serve never accepts"));
    }
    let keys = match &t.jwks_url {
        Some(url) => KeysAt::Jwks(jwks_url_checked(url).map_err(|p| problem(n, &t.name, format!("jwks-url {p}")))?),
        None => {
            let discovery = format!("{}/.well-known/openid-configuration", iss.trim_end_matches('/'));
            KeysAt::Discovery(
                jwks_url_checked(&discovery).map_err(|p| problem(n, &t.name, format!("discovery URL {p}")))?,
            )
        }
    };
    let audience: Vec<String> = t.audience.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
    if audience.is_empty() {
        return Err(bad("audience is required for kind = \"oidc\" (the token's aud must name this API)"));
    }
    let algorithms = match &t.algorithms {
        None => vec![Algorithm::RS256],
        Some(names) if names.is_empty() => return Err(bad("algorithms must not be empty")),
        Some(names) => names
            .iter()
            .map(|a| Algorithm::from_name(a).ok_or_else(|| bad("algorithms may be RS256, PS256 and ES256 only")))
            .collect::<Result<_, _>>()?,
    };
    let claim = |value: &Option<String>, default: &str, key: &str| match value {
        Some(c) if c.is_empty() => Err(problem(n, &t.name, format!("{key} must name a claim"))),
        Some(c) => Ok(c.clone()),
        None => Ok(default.to_owned()),
    };
    let values = |list: &[String], key: &str| {
        if list.iter().any(|v| v.is_empty() || v.contains(['"', '\\']) || v.chars().any(char::is_control)) {
            Err(problem(n, &t.name, format!("{key} values must be plain text")))
        } else {
            Ok(list.to_vec())
        }
    };
    Ok(IssuerConfig {
        name: t.name.clone(),
        iss,
        keys,
        kind: Kind::Oidc(OidcIssuer {
            audience,
            algorithms,
            username_claim: claim(&t.username_claim, "preferred_username", "username-claim")?,
            groups_claim: claim(&t.groups_claim, "groups", "groups-claim")?,
            mfa_amr: values(t.mfa_amr.as_deref().unwrap_or(&["mfa".to_owned()]), "mfa-amr")?,
            mfa_acr: values(&t.mfa_acr, "mfa-acr")?,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff() -> IssuerTable {
        IssuerTable {
            name: "staff".into(),
            region: Some("eu-west-2".into()),
            user_pool_id: Some("eu-west-2_AbC123".into()),
            client_id: vec!["c1".into(), "c2".into()],
            ..IssuerTable::default()
        }
    }

    fn partners() -> IssuerTable {
        IssuerTable {
            name: "partners".into(),
            kind: IssuerKind::Oidc,
            issuer: Some("https://idp.example.com/realms/acme".into()),
            audience: vec!["https://api.example.com".into()],
            ..IssuerTable::default()
        }
    }

    fn refused(tables: &[IssuerTable]) -> String {
        validate(tables).expect_err("refused").problem
    }

    #[test]
    fn the_issue_example_validates_with_its_defaults() {
        let issuers = validate(&[staff(), partners()]).expect("valid tables");
        assert_eq!(issuers[0].iss, "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_AbC123");
        assert_eq!(
            issuers[0].keys,
            KeysAt::Jwks(
                "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_AbC123/.well-known/jwks.json".parse().unwrap()
            )
        );
        let Kind::Oidc(oidc) = &issuers[1].kind else { panic!("oidc") };
        assert_eq!(
            issuers[1].keys,
            KeysAt::Discovery("https://idp.example.com/realms/acme/.well-known/openid-configuration".parse().unwrap())
        );
        assert_eq!(oidc.algorithms, [Algorithm::RS256]);
        assert_eq!((oidc.username_claim.as_str(), oidc.groups_claim.as_str()), ("preferred_username", "groups"));
        assert_eq!(oidc.mfa_amr, ["mfa"]);
    }

    #[test]
    fn names_must_be_short_lower_case_and_unique() {
        for bad in ["", "Staff", "staff_1", "a b", &"x".repeat(33)] {
            assert!(refused(&[IssuerTable { name: bad.into(), ..staff() }]).contains("name must be"), "{bad:?}");
        }
        assert!(validate(&[IssuerTable { name: "x".repeat(32), ..staff() }]).is_ok(), "32 is allowed");
        let twice =
            IssuerTable { region: Some("us-east-1".into()), user_pool_id: Some("us-east-1_Q".into()), ..staff() };
        assert!(refused(&[staff(), twice]).contains("used twice"));
    }

    #[test]
    fn oidc_needs_an_https_issuer_and_an_audience_and_known_algorithms() {
        assert!(refused(&[IssuerTable { issuer: None, ..partners() }]).contains("issuer is required"));
        assert!(refused(&[IssuerTable { audience: vec![], ..partners() }]).contains("audience is required"));
        let http = IssuerTable { issuer: Some("http://idp.example.com".into()), ..partners() };
        assert!(refused(&[http]).contains("https"));
        let jwks = IssuerTable { jwks_url: Some("http://10.0.0.1/jwks".into()), ..partners() };
        assert!(refused(&[jwks]).contains("jwks-url"));
        for algs in [vec!["HS256".to_owned()], vec!["none".to_owned()], vec![]] {
            assert!(refused(&[IssuerTable { algorithms: Some(algs.clone()), ..partners() }]).contains("algorithms"));
        }
        // Positive controls: loopback http (a local provider) and the three algorithms.
        let local = IssuerTable {
            issuer: Some("http://127.0.0.1:3000".into()),
            algorithms: Some(vec!["RS256".into(), "PS256".into(), "ES256".into()]),
            ..partners()
        };
        assert!(validate(&[local]).is_ok());
    }

    #[test]
    fn cognito_tables_are_checked_as_the_flags_are_and_keys_stay_with_their_kind() {
        assert!(refused(&[IssuerTable { region: Some("Europe".into()), ..staff() }]).contains("region"));
        assert!(refused(&[IssuerTable { client_id: vec![], ..staff() }]).contains("client-id"));
        assert!(refused(&[IssuerTable { audience: vec!["a".into()], ..staff() }]).contains("oidc"));
        assert!(refused(&[IssuerTable { region: Some("eu-west-2".into()), ..partners() }]).contains("cognito"));
        let same_iss = IssuerTable { name: "copy".into(), ..staff() };
        assert!(refused(&[staff(), same_iss]).contains("same as another"));
    }

    #[test]
    fn flags_and_tables_together_are_refused_and_tables_alone_fill_the_served_pool() {
        let args = |tables: Vec<IssuerTable>| Settings { issuers: tables, ..Settings::default() };
        let both = Settings { region: Some("eu-west-1".into()), ..args(vec![staff()]) };
        let err = both.into_config().expect_err("refused");
        assert!(err.to_string().contains("--region and [[issuer]] tables cannot be used together"), "{err}");
        let config = args(vec![staff(), partners()]).into_config().expect("tables alone");
        assert_eq!(config.user_pool_id, "eu-west-2_AbC123", "the only cognito issuer is the served one");
        assert_eq!(config.issuers.len(), 2);
        let named = Settings { oauth_issuer: Some("partners".into()), ..args(vec![staff(), partners()]) };
        assert_eq!(named.into_config().expect_err("an oidc issuer").flag, "oauth-issuer");
    }
}
