//! Several issuers in one server: the `[[issuer]]` tables of the `--config` file, checked into one
//! `IssuerConfig` each. The single-pool flags describe one Cognito issuer named `default`.
//!
//! A Cognito table is checked by the very code that checks the single-pool flags (the same keys
//! mean the same thing), so the two cannot drift apart.

use crate::config::pool::{DEV_ISSUER_HOST, Pool, PoolSettings};
use crate::config::settings::{ConfigError, Settings};
pub use crate::config::settings::{IssuerKind, IssuerTable};
use crate::keys::key_set::Algorithm;
use crate::loopback::https_unless_loopback;
use crate::secret::ShownUrl;

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
#[derive(Clone, PartialEq, Eq)]
pub enum KeysAt {
    /// This JWK Set URL.
    Jwks(reqwest::Url),
    /// The `jwks_uri` of this OpenID discovery document, read at start-up.
    Discovery(reqwest::Url),
    /// A replicated pool's JWK Sets, one per region (the primary's first), merged.
    Regions(Vec<reqwest::Url>),
}

impl std::fmt::Debug for KeysAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeysAt::Jwks(url) => f.debug_tuple("Jwks").field(&ShownUrl(url.as_str())).finish(),
            KeysAt::Discovery(url) => f.debug_tuple("Discovery").field(&ShownUrl(url.as_str())).finish(),
            KeysAt::Regions(urls) => {
                f.debug_tuple("Regions").field(&urls.iter().map(|u| ShownUrl(u.as_str())).collect::<Vec<_>>()).finish()
            }
        }
    }
}

/// An issuer's kind, with what that kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A Cognito user pool.
    Cognito(Pool),
    /// An OpenID provider.
    Oidc(OidcIssuer),
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

impl IssuerConfig {
    /// Every `iss` its tokens may carry: its own, and a replicated pool's other regions'.
    pub fn accepted(&self) -> impl Iterator<Item = &str> {
        let regional = match &self.kind {
            Kind::Cognito(pool) => &pool.regional[..],
            Kind::Oidc(_) => &[],
        };
        std::iter::once(self.iss.as_str()).chain(regional.iter().map(|(iss, _)| iss.as_str()))
    }

    /// The issuer `name` of a user pool.
    pub fn for_pool(name: &str, pool: &Pool) -> IssuerConfig {
        IssuerConfig {
            name: name.to_owned(),
            iss: pool.issuer.clone(),
            keys: match pool.regional.is_empty() {
                true => KeysAt::Jwks(pool.jwks_url.clone()),
                false => KeysAt::Regions(
                    std::iter::once(&pool.jwks_url)
                        .chain(pool.regional.iter().map(|(_, jwks)| jwks))
                        .cloned()
                        .collect(),
                ),
            },
            kind: Kind::Cognito(pool.clone()),
        }
    }
}

impl IssuerTable {
    /// A `kind = "cognito"` table's pool keys, which mean what the single-pool flags mean.
    pub fn pool_settings(&self) -> PoolSettings<'_> {
        let defaults = Settings::default();
        PoolSettings {
            region: self.region.as_deref(),
            user_pool_id: self.user_pool_id.as_deref(),
            client_id: &self.client_id,
            issuer: self.issuer.as_deref(),
            jwks_url: self.jwks_url.as_deref(),
            cognito_endpoint: self.cognito_endpoint.as_deref(),
            mfa_source: self.mfa_source.unwrap_or(defaults.mfa_source),
            mfa_factors: self.mfa_factors.as_deref().unwrap_or(&[]),
            mfa_from_amr: self.mfa_from_amr.unwrap_or(defaults.mfa_from_amr),
            allow_machine_tokens: self.allow_machine_tokens.unwrap_or(defaults.allow_machine_tokens),
            issuer_format: self.issuer_format,
            replica_regions: &self.replica_regions,
        }
    }
}

fn problem(n: usize, name: &str, what: impl std::fmt::Display) -> ConfigError {
    ConfigError::new("config", format!("[[issuer]] {n} ({name:?}): {what}"))
}

/// The issuers of `args`' `[[issuer]]` tables (which replace the single-pool flags), and the pool
/// of the one the HTTP module serves: `oauth-issuer`, else the only Cognito issuer, else none.
pub fn from_tables(args: &Settings) -> Result<(Vec<IssuerConfig>, Option<Pool>), ConfigError> {
    let defaults = Settings::default();
    let flags = [
        ("region", args.region.is_some()),
        ("user-pool-id", args.user_pool_id.is_some()),
        ("client-id", !args.client_id.is_empty()),
        ("issuer", args.issuer.is_some()),
        ("jwks-url", args.jwks_url.is_some()),
        ("issuer-format", args.issuer_format.is_some()),
        ("replica-region", !args.replica_region.is_empty()),
        ("cognito-endpoint", args.cognito_endpoint.is_some()),
        ("mfa-source", args.is_given("mfa-source") || args.mfa_source != defaults.mfa_source),
        ("mfa-factors", !args.mfa_factors.is_empty()),
        ("mfa-from-amr", args.is_given("mfa-from-amr") || args.mfa_from_amr != defaults.mfa_from_amr),
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
    let issuers = validate(&args.issuers)?;
    let cognito: Vec<(&str, &Pool)> = issuers
        .iter()
        .filter_map(|i| match &i.kind {
            Kind::Cognito(pool) => Some((i.name.as_str(), pool)),
            Kind::Oidc(_) => None,
        })
        .collect();
    let served = match args.oauth_issuer.as_deref() {
        Some(name) => match cognito.iter().find(|(n, _)| *n == name) {
            Some((_, pool)) => Some((*pool).clone()),
            None => {
                return Err(ConfigError::new(
                    "oauth-issuer",
                    format!("{name:?} is not the name of a cognito [[issuer]]"),
                ));
            }
        },
        None if cognito.len() == 1 => Some(cognito[0].1.clone()),
        None => None,
    };
    Ok((issuers, served))
}

/// Checks every table: names, then each kind's own keys.
pub fn validate(tables: &[IssuerTable]) -> Result<Vec<IssuerConfig>, ConfigError> {
    let mut issuers: Vec<IssuerConfig> = Vec::with_capacity(tables.len());
    for (i, table) in tables.iter().enumerate() {
        let n = i + 1;
        let name = table.name.as_str();
        if !crate::verify::claims::valid_issuer_name(name) {
            return Err(problem(n, name, "name must be 1 to 32 characters of a-z, 0-9 and -"));
        }
        if tables[..i].iter().any(|t| t.name == table.name) {
            return Err(problem(n, name, "name is used twice"));
        }
        let issuer = match table.kind {
            IssuerKind::Cognito => cognito(n, table)?,
            IssuerKind::Oidc => oidc(n, table)?,
        };
        if issuers.iter().any(|other| other.accepted().any(|iss| issuer.accepted().any(|mine| mine == iss))) {
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
    let pool = t.pool_settings().check().map_err(|e| problem(n, &t.name, format!("{}: {}", e.flag, e.problem)))?;
    Ok(IssuerConfig::for_pool(&t.name, &pool))
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
        ("mfa-factors", t.mfa_factors.is_some()),
        ("mfa-from-amr", t.mfa_from_amr.is_some()),
        ("issuer-format", t.issuer_format.is_some()),
        ("replica-regions", !t.replica_regions.is_empty()),
        ("allow-machine-tokens", t.allow_machine_tokens.is_some()),
    ];
    if let Some((key, _)) = cognito_only.iter().find(|(_, set)| *set) {
        return Err(problem(n, &t.name, format!("{key} is for kind = \"cognito\" only")));
    }
    let iss = t.issuer.clone().ok_or_else(|| bad("issuer is required for kind = \"oidc\""))?;
    let iss_url = https_unless_loopback(&iss).map_err(|p| problem(n, &t.name, format!("issuer {p}")))?;
    if iss_url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(DEV_ISSUER_HOST)) {
        return Err(bad("issuer is the development issuer, which serve never accepts"));
    }
    let keys = match &t.jwks_url {
        Some(url) => {
            KeysAt::Jwks(https_unless_loopback(url).map_err(|p| problem(n, &t.name, format!("jwks-url {p}")))?)
        }
        None => {
            let discovery = format!("{}/.well-known/openid-configuration", iss.trim_end_matches('/'));
            KeysAt::Discovery(
                https_unless_loopback(&discovery).map_err(|p| problem(n, &t.name, format!("discovery URL {p}")))?,
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
        assert_eq!(config.pool.user_pool_id, "eu-west-2_AbC123", "the only cognito issuer is the served one");
        assert_eq!(config.issuers.len(), 2);
        let named = Settings { oauth_issuer: Some("partners".into()), ..args(vec![staff(), partners()]) };
        assert_eq!(named.into_config().expect_err("an oidc issuer").flag, "oauth-issuer");
    }

    #[test]
    fn the_redis_namespace_never_moves_when_an_issuer_is_added() {
        use crate::config::StoreSpec;
        let redis = |tables: Vec<IssuerTable>, namespace: Option<&str>| Settings {
            issuers: tables,
            revocation_store: Some(crate::secret::SecretUrl::new("redis://:pw@127.0.0.1:6379/0".into())),
            revocation_namespace: namespace.map(str::to_owned),
            ..Settings::default()
        };
        let namespace = |settings: Settings| match settings.into_config().map(|c| c.revocation_store) {
            Ok(StoreSpec::Redis { namespace, .. }) => Ok(namespace),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.flag),
        };
        // One pool (with a provider beside it): its id, as with the single-pool flags.
        assert_eq!(namespace(redis(vec![staff(), partners()], None)), Ok("eu-west-2_AbC123".into()));
        let flags = Settings {
            region: Some("eu-west-2".into()),
            user_pool_id: Some("eu-west-2_AbC123".into()),
            client_id: vec!["c1".into()],
            ..redis(vec![], None)
        };
        assert_eq!(namespace(flags), Ok("eu-west-2_AbC123".into()), "the same key before and after the move");
        // A second pool would leave no pool to name it after: start-up stops instead of moving it.
        let second =
            IssuerTable { name: "contractors".into(), user_pool_id: Some("eu-west-2_Other".into()), ..staff() };
        assert_eq!(namespace(redis(vec![staff(), second.clone()], None)), Err("revocation-namespace".into()));
        assert_eq!(namespace(redis(vec![partners()], None)), Err("revocation-namespace".into()), "OIDC only");
        assert_eq!(namespace(redis(vec![staff(), second], Some("shop-prod"))), Ok("shop-prod".into()));
        assert_eq!(namespace(redis(vec![staff()], Some("a b"))), Err("revocation-namespace".into()));
        // The URL's password never shows in Debug.
        let settings = crate::revocation::redis::target::TargetSettings::default();
        let target = crate::revocation::redis::target::Target::parse("redis://:hunter2@h:6379", settings).unwrap();
        assert_eq!(target.nodes.password.as_ref().map(crate::secret::Secret::expose), Some("hunter2"));
        let spec = StoreSpec::Redis { target: Box::new(target), namespace: "n".into() };
        assert!(!format!("{spec:?}").contains("hunter2") && format!("{spec:?}").contains("\"n\""));
    }

    #[test]
    fn a_sign_in_url_is_a_path_of_this_site_or_an_https_url() {
        let with = |url: &str| {
            let flags = Settings {
                region: Some("eu-west-1".into()),
                user_pool_id: Some("eu-west-1_AbC123".into()),
                client_id: vec!["c1".into()],
                sign_in_url: Some(url.into()),
                ..Settings::default()
            };
            flags.into_config().map(|c| c.sign_in_url.unwrap()).map_err(|e| e.flag)
        };
        assert_eq!(with("/auth/login"), Ok("/auth/login".into()));
        assert_eq!(with("https://auth.example.com/login"), Ok("https://auth.example.com/login".into()));
        for bad in ["//evil.example/login", "http://auth.example.com/login", "javascript:alert(1)", "login"] {
            assert_eq!(with(bad), Err("sign-in-url".into()), "{bad}");
        }
    }
}
