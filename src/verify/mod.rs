//! Signature and Cognito's access-token rules: a verified token becomes `Claims`.
//!
//! Follows AWS's documented steps for Cognito, stricter where they are loose: `exp` is required,
//! `nbf` and `iat` are checked, the issuer must match exactly, and only access tokens of the
//! configured app clients pass.

pub mod cache;
pub mod claims;
pub mod oidc;
pub mod token;

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::authz::error::{Denied, Invalid, StepUp};
use crate::clock::IAT_DRIFT_SECONDS;
use crate::keys::key_set::{Algorithm, Key};
use crate::keys::key_store::KeyStore;
use crate::verify::cache::{Expires, TokenCache};
pub use crate::verify::claims::{Claims, Identity, TokenId};
use crate::verify::oidc::OidcRules;
use crate::verify::token::{Jwt, RawClaims};

/// The claim rules for one user pool.
#[derive(Debug, Clone)]
pub struct Rules {
    /// `https://cognito-idp.{region}.amazonaws.com/{user_pool_id}`, compared exactly. Revocations
    /// of the pool are scoped by it, whichever region issued the token.
    pub issuer: String,
    /// A replicated pool's other regions' issuers (original format), also compared exactly.
    pub also: Vec<String>,
    /// The app client ids whose access tokens are accepted (shared with the claims that name them).
    pub client_ids: Vec<Arc<str>>,
    /// Seconds of tolerance on `exp`, `nbf` and `iat`. Defaults to 0.
    pub leeway: u64,
    /// Accept client-credentials tokens (no user). Defaults to false.
    pub allow_machine_tokens: bool,
    /// Judge an `mfa` route by the token's own `amr` when it has one (`--mfa-from-amr`).
    pub mfa_from_amr: bool,
}

/// The `amr` value (RFC 8176) that shows the session used more than one factor.
pub const MFA_AMR: &str = "mfa";

impl Rules {
    /// True when `iss` is the pool's issuer or one of its replica regions', exactly.
    pub fn accepts(&self, iss: &str) -> bool {
        iss == self.issuer || self.also.iter().any(|a| a == iss)
    }

    /// Applies every claim rule, given the current Unix time in seconds.
    pub fn check(&self, raw: RawClaims, now: u64) -> Result<Claims, Invalid> {
        let exp = raw.exp.ok_or(Invalid::MissingExpiry)?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(Invalid::Expired);
        }
        if raw.nbf.is_some_and(|nbf| now.saturating_add(self.leeway) < nbf) {
            return Err(Invalid::NotYetValid);
        }
        if raw.iat.is_some_and(|iat| iat > now.saturating_add(self.leeway + IAT_DRIFT_SECONDS)) {
            return Err(Invalid::IssuedInFuture);
        }
        if !raw.iss.as_deref().is_some_and(|iss| self.accepts(iss)) {
            return Err(Invalid::WrongIssuer);
        }
        if raw.token_use.as_deref() != Some("access") {
            return Err(Invalid::NotAccessToken);
        }
        let client_id = raw.client_id.ok_or(Invalid::WrongClient)?;
        let Some(client_id) = self.client_ids.iter().find(|c| ***c == *client_id).cloned() else {
            return Err(Invalid::WrongClient);
        };
        let identity = match raw.username.filter(|u| !u.is_empty()) {
            Some(username) => {
                let sub = raw.sub.as_deref().and_then(|s| Uuid::try_parse(s).ok()).ok_or(Invalid::BadSubject)?;
                Identity::User { sub, username }
            }
            // Cognito's client-credentials tokens: no username, and the client itself as `sub`.
            None if raw.sub.as_deref() == Some(&*client_id) => {
                if !self.allow_machine_tokens {
                    return Err(Invalid::MachineTokensOff);
                }
                Identity::Machine
            }
            None => return Err(Invalid::MissingUsername),
        };
        Ok(Claims {
            identity,
            client_id,
            groups: raw.groups.unwrap_or_default().into(),
            scope: raw.scope.map(Arc::from),
            jti: raw.jti.map(TokenId::from),
            origin_jti: raw.origin_jti.map(TokenId::from),
            exp,
            iat: raw.iat,
            auth_time: raw.auth_time,
            mapped: Box::default(),
            issuer: 0,
            issuer_name: Arc::from(crate::verify::claims::DEFAULT_ISSUER),
            iss: Arc::from(""),
            // With `mfa-from-amr`, a token that records its methods says whether this session used
            // a second factor; one that does not is judged by enrolment, as before.
            second_factor: raw.amr.filter(|_| self.mfa_from_amr).map(|amr| amr.iter().any(|m| m == MFA_AMR)),
        })
    }
}

/// The header value of each mapped claim: a string (control and non-ASCII characters
/// percent-escaped), a number, a boolean, or an array of strings (each escaped as group names are,
/// comma-joined). Anything else (an object, null, a mixed array) is no value.
fn header_values(claims: &serde_json::Map<String, serde_json::Value>, names: &[String]) -> Box<[Option<String>]> {
    use serde_json::Value;
    names
        .iter()
        .map(|name| match claims.get(name)? {
            Value::String(s) => Some(crate::authz::headers::escape_text(s)),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(crate::authz::headers::escape_list_item))
                .collect::<Option<Vec<_>>>()
                .map(|items| items.join(",")),
            Value::Null | Value::Object(_) => None,
        })
        .collect()
}

/// A verified token, as the cache keeps it: its claims and the key that verified it (which knows
/// its own `kid`).
pub struct Verified {
    /// What the token said.
    pub claims: Arc<Claims>,
    /// The key that verified it (a hit counts only while it is in force).
    pub key: Arc<Key>,
}

crate::opaque_debug!(Verified);

impl Verified {
    /// A cache entry.
    pub fn new(claims: Arc<Claims>, key: Arc<Key>) -> Verified {
        Verified { claims, key }
    }
}

impl Expires for Verified {
    fn exp(&self) -> u64 {
        self.claims.exp
    }
}

/// Hands out one shared instance of equal values. Bounded: past `MAX_SHARED` distinct values it
/// stops remembering new ones (they are then simply not shared), so odd tokens cannot grow it.
struct Interner<T: ?Sized>(Mutex<HashSet<Arc<T>>>);

const MAX_SHARED: usize = 1024;

impl<T: ?Sized + Hash + Eq> Interner<T> {
    fn new() -> Interner<T> {
        Interner(Mutex::new(HashSet::new()))
    }

    fn share(&self, value: &Arc<T>) -> Arc<T> {
        let mut known = self.0.lock().expect("interner lock");
        if let Some(shared) = known.get(&**value) {
            return shared.clone();
        }
        if known.len() < MAX_SHARED {
            known.insert(value.clone());
        }
        value.clone()
    }
}

/// How one issuer's tokens are judged.
#[derive(Debug, Clone)]
pub enum IssuerRules {
    /// A Cognito user pool: RS256 and Cognito's claim rules.
    Cognito(Rules),
    /// An OIDC provider: RFC 9068 rules, the algorithms it signs with, and the step-up challenge
    /// its tokens get on an `mfa` route without a second factor.
    Oidc {
        /// The claim rules.
        rules: OidcRules,
        /// The signature algorithms accepted.
        algorithms: Vec<Algorithm>,
        /// The challenge for a token without a second factor on an `mfa` route.
        step_up: StepUp,
    },
}

impl IssuerRules {
    /// The `iss` its tokens carry (a replicated pool's primary region's), which scopes its
    /// revocations.
    pub fn iss(&self) -> &str {
        match self {
            IssuerRules::Cognito(rules) => &rules.issuer,
            IssuerRules::Oidc { rules, .. } => &rules.issuer,
        }
    }

    /// True when a token naming `iss` is this issuer's, compared exactly.
    pub fn accepts(&self, iss: &str) -> bool {
        match self {
            IssuerRules::Cognito(rules) => rules.accepts(iss),
            IssuerRules::Oidc { rules, .. } => rules.issuer == iss,
        }
    }
}

/// One configured issuer: its name, its own keys (a `kid` of one issuer never finds another's
/// key) and its rules.
#[derive(Clone)]
pub struct TrustedIssuer {
    /// Its configured name.
    pub name: Arc<str>,
    /// Its own keys.
    pub keys: KeyStore,
    /// How its tokens are judged.
    pub rules: IssuerRules,
}

crate::opaque_debug!(TrustedIssuer);

/// Verifies tokens against the key store and the rules, remembering those that passed.
#[derive(Clone)]
pub struct Verifier {
    /// Never empty; with one issuer (the single-pool flags) no claim is read before the signature.
    issuers: Arc<[TrustedIssuer]>,
    keys: KeyStore,
    leeway: u64,
    cache: TokenCache<Verified>,
    scopes: Arc<Interner<str>>,
    groups: Arc<Interner<[String]>>,
    /// Claims to read for upstream headers; their values are cached with the token.
    mapped_claims: Arc<[String]>,
    /// The issuer whose app client the HTTP module serves (its position), if any.
    served: Option<usize>,
    /// Each issuer's `iss`, shared by every token's claims.
    isses: Arc<[Arc<str>]>,
}

crate::opaque_debug!(Verifier);

impl Verifier {
    /// A verifier for one Cognito issuer (the single-pool flags).
    pub fn new(keys: KeyStore, rules: Rules, cache: TokenCache<Verified>) -> Verifier {
        let default = TrustedIssuer {
            name: Arc::from(crate::verify::claims::DEFAULT_ISSUER),
            keys,
            rules: IssuerRules::Cognito(rules),
        };
        Verifier::for_issuers(vec![default], cache)
    }

    /// A verifier for several issuers (at least one); all share one leeway, the first's.
    pub fn for_issuers(issuers: Vec<TrustedIssuer>, cache: TokenCache<Verified>) -> Verifier {
        let first = issuers.first().expect("at least one issuer");
        let leeway = match &first.rules {
            IssuerRules::Cognito(rules) => rules.leeway,
            IssuerRules::Oidc { rules, .. } => rules.leeway,
        };
        let isses = issuers.iter().map(|i| Arc::from(i.rules.iss())).collect();
        Verifier {
            isses,
            keys: first.keys.clone(),
            leeway,
            issuers: issuers.into(),
            served: Some(0),
            cache,
            scopes: Arc::new(Interner::new()),
            groups: Arc::new(Interner::new()),
            mapped_claims: Arc::from([]),
        }
    }

    /// Reads these claims of each verified token for upstream headers (none by default).
    pub fn mapping_claims(mut self, claims: Vec<String>) -> Verifier {
        self.mapped_claims = claims.into();
        self
    }

    /// Verifies a bearer token at Unix time `now`.
    pub async fn verify(&self, token: &str, now: u64) -> Result<Arc<Claims>, Denied> {
        let digest = cache::digest(token);
        // Only `exp` can change its verdict with time (`nbf` and `iat` only ever start to pass),
        // and only a change of key can change the signature's.
        if let Some(hit) = self.cache.get(&digest, now.saturating_sub(self.leeway))
            && self.issuers.get(hit.claims.issuer).is_some_and(|i| i.keys.is_current(&hit.key))
        {
            self.cache.record(true);
            crate::telemetry::traces::record_cache_hit(true);
            return Ok(hit.claims.clone());
        }
        self.cache.record(false);
        crate::telemetry::traces::record_cache_hit(false);
        let jwt = Jwt::split(token)?;
        let index = self.issuer_of(&jwt)?;
        let issuer = &self.issuers[index];
        let (mut claims, key) = match &issuer.rules {
            IssuerRules::Cognito(rules) => {
                let header = jwt.header()?;
                let key = issuer.keys.key(&header.kid).await?;
                key.verify(jwt.signing_input, jwt.signature)?;
                // Claims are parsed only once the signature holds: no JSON from strangers beyond
                // the header (and, with several issuers, `iss`).
                let mut claims = rules.check(jwt.claims()?, now)?;
                if !self.mapped_claims.is_empty() {
                    // A second read of the payload, only when headers are mapped: the typed parse
                    // keeps only the claims decisions need.
                    claims.mapped = header_values(&jwt.claims_json()?, &self.mapped_claims);
                }
                (claims, key)
            }
            IssuerRules::Oidc { rules, algorithms, .. } => {
                let header = jwt.header_for(algorithms)?;
                let key = issuer.keys.key(&header.kid).await?;
                key.verify_with(header.alg, jwt.signing_input, jwt.signature)?;
                let json = jwt.unique_claims_json()?;
                let mut claims = rules.check(header.typ.as_deref(), &json, now)?;
                if !self.mapped_claims.is_empty() {
                    claims.mapped = header_values(&json, &self.mapped_claims);
                }
                (claims, key)
            }
        };
        claims.issuer = index;
        claims.issuer_name = issuer.name.clone();
        claims.iss = self.isses[index].clone();
        claims.scope = claims.scope.map(|scope| self.scopes.share(&scope));
        claims.groups = self.groups.share(&claims.groups);
        let claims = Arc::new(claims);
        self.cache.insert(digest, Verified::new(claims.clone(), key));
        Ok(claims)
    }

    /// Drops cached tokens that have expired at Unix time `now` (hits past `exp` are never served
    /// anyway; this frees their memory).
    pub fn purge_expired(&self, now: u64) {
        self.cache.purge_expired(now.saturating_sub(self.leeway));
    }

    /// The issuer whose keys and rules judge this token: the only one, or the one whose `iss` the
    /// (not yet verified) payload names, compared exactly. An `iss` no issuer has is refused
    /// before any key is looked up, so it cannot make us fetch.
    fn issuer_of(&self, jwt: &Jwt<'_>) -> Result<usize, Invalid> {
        if self.issuers.len() == 1 {
            return Ok(0);
        }
        let iss = jwt.unverified_issuer()?;
        self.issuers.iter().position(|i| i.rules.accepts(&iss)).ok_or(Invalid::WrongIssuer)
    }

    /// Names the issuer whose app client the HTTP module serves (`None`: none). Defaults to the
    /// first.
    pub fn serving(mut self, issuer: Option<usize>) -> Verifier {
        self.served = issuer;
        self
    }

    /// True when these claims are of the served issuer: only its tokens may be sent to its
    /// Cognito pool or OAuth endpoints.
    pub fn serves(&self, claims: &Claims) -> bool {
        self.served == Some(claims.issuer)
    }

    /// The position of the issuer whose app client the HTTP module serves, if any.
    pub fn served(&self) -> Option<usize> {
        self.served
    }

    /// The configured issuers, in configuration order (a claim's `issuer` indexes it).
    pub fn issuers(&self) -> &[TrustedIssuer] {
        &self.issuers
    }

    /// The token cache.
    pub fn cache(&self) -> &TokenCache<Verified> {
        &self.cache
    }

    /// The first issuer's keys.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// Seconds past `exp` (and before `nbf`) a token is still accepted.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool";
    const NOW: u64 = 1_800_000_000;

    fn rules(leeway: u64) -> Rules {
        Rules {
            issuer: ISS.into(),
            also: vec![],
            mfa_from_amr: false,
            client_ids: vec!["client-a".into(), "client-b".into()],
            leeway,
            allow_machine_tokens: false,
        }
    }

    fn access() -> RawClaims {
        RawClaims {
            iss: Some(ISS.into()),
            sub: Some("3f1c7a52-7d7c-4f0e-9a3f-2c5e8b1d9e01".into()),
            token_use: Some("access".into()),
            client_id: Some("client-b".into()),
            username: Some("alice".into()),
            exp: Some(NOW + 60),
            iat: Some(NOW - 10),
            ..RawClaims::default()
        }
    }

    #[test]
    fn valid_access_token_passes() {
        let claims = rules(0).check(access(), NOW).expect("valid access token");
        assert!(matches!(claims.identity, Identity::User { ref username, .. } if username == "alice"));
        assert_eq!(&*claims.client_id, "client-b");
    }

    #[test]
    fn expiry_is_exact_with_zero_leeway_and_widened_by_leeway() {
        let at = |exp| RawClaims { exp: Some(exp), ..access() };
        assert_eq!(rules(0).check(at(NOW), NOW).err(), Some(Invalid::Expired));
        assert!(rules(0).check(at(NOW + 1), NOW).is_ok());
        assert!(rules(5).check(at(NOW - 4), NOW).is_ok());
        assert_eq!(rules(5).check(at(NOW - 5), NOW).err(), Some(Invalid::Expired));
        assert_eq!(rules(0).check(RawClaims { exp: None, ..access() }, NOW).err(), Some(Invalid::MissingExpiry));
    }

    #[test]
    fn not_yet_valid_and_future_iat_are_refused() {
        let nbf = RawClaims { nbf: Some(NOW + 1), ..access() };
        assert_eq!(rules(0).check(nbf.clone(), NOW).err(), Some(Invalid::NotYetValid));
        assert!(rules(1).check(nbf, NOW).is_ok());
        let iat = |iat| RawClaims { iat: Some(iat), ..access() };
        assert!(rules(0).check(iat(NOW + IAT_DRIFT_SECONDS), NOW).is_ok());
        assert_eq!(rules(0).check(iat(NOW + IAT_DRIFT_SECONDS + 1), NOW).err(), Some(Invalid::IssuedInFuture));
    }

    #[test]
    fn issuer_must_match_exactly() {
        for iss in [format!("{ISS}/"), ISS.to_uppercase(), ISS.replace("https", "http"), String::new()] {
            let raw = RawClaims { iss: Some(iss), ..access() };
            assert_eq!(rules(0).check(raw, NOW).err(), Some(Invalid::WrongIssuer));
        }
        assert_eq!(rules(0).check(RawClaims { iss: None, ..access() }, NOW).err(), Some(Invalid::WrongIssuer));
    }

    #[test]
    fn id_tokens_and_missing_token_use_are_refused() {
        let id = RawClaims { token_use: Some("id".into()), ..access() };
        assert_eq!(rules(0).check(id, NOW).err(), Some(Invalid::NotAccessToken));
        let none = RawClaims { token_use: None, ..access() };
        assert_eq!(rules(0).check(none, NOW).err(), Some(Invalid::NotAccessToken));
    }

    #[test]
    fn other_clients_are_refused() {
        let other = RawClaims { client_id: Some("client-c".into()), ..access() };
        assert_eq!(rules(0).check(other, NOW).err(), Some(Invalid::WrongClient));
        let none = RawClaims { client_id: None, ..access() };
        assert_eq!(rules(0).check(none, NOW).err(), Some(Invalid::WrongClient));
    }

    #[test]
    fn subject_must_be_a_uuid_and_username_present() {
        let sub = RawClaims { sub: Some("alice".into()), ..access() };
        assert_eq!(rules(0).check(sub, NOW).err(), Some(Invalid::BadSubject));
        let user = RawClaims { username: Some(String::new()), ..access() };
        assert_eq!(rules(0).check(user, NOW).err(), Some(Invalid::MissingUsername));
    }

    #[test]
    fn equal_scopes_and_groups_share_one_instance_up_to_a_bound() {
        let scopes = Interner::<str>::new();
        let first = scopes.share(&Arc::from("openid profile"));
        let second = scopes.share(&Arc::from("openid profile"));
        assert!(Arc::ptr_eq(&first, &second));
        for n in 0..2 * MAX_SHARED {
            scopes.share(&Arc::from(n.to_string().as_str()));
        }
        assert_eq!(scopes.0.lock().unwrap().len(), MAX_SHARED, "bounded");
        let late = Arc::<str>::from("late");
        assert!(Arc::ptr_eq(&scopes.share(&late), &late), "past the bound values are passed through");
        let groups = Interner::<[String]>::new();
        let a: Arc<[String]> = vec!["admin".to_owned()].into();
        let b: Arc<[String]> = vec!["admin".to_owned()].into();
        assert!(Arc::ptr_eq(&groups.share(&a), &groups.share(&b)));
    }

    #[test]
    fn token_ids_are_compact_only_in_the_canonical_uuid_spelling() {
        let canonical = "9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a";
        assert!(matches!(TokenId::from(canonical), TokenId::Uuid(_)));
        assert_eq!(TokenId::from(canonical).to_string(), canonical);
        for other in [canonical.to_uppercase(), canonical.replace('-', ""), format!("{{{canonical}}}"), "abc".into()] {
            let id = TokenId::from(other.as_str());
            assert!(matches!(id, TokenId::Text(_)), "{other}");
            assert_eq!(id.to_string(), other);
            assert_ne!(id, TokenId::from(canonical), "equal only when the texts are");
        }
    }

    #[test]
    fn machine_tokens_pass_only_when_allowed() {
        let machine =
            RawClaims { username: None, sub: Some("client-b".into()), scope: Some("api/read".into()), ..access() };
        assert_eq!(rules(0).check(machine.clone(), NOW).err(), Some(Invalid::MachineTokensOff));
        let allowed = Rules { allow_machine_tokens: true, ..rules(0) };
        assert_eq!(allowed.check(machine, NOW).expect("machine token").identity, Identity::Machine);
        let other_sub = RawClaims { username: None, sub: Some("client-a".into()), ..access() };
        assert_eq!(allowed.check(other_sub, NOW).err(), Some(Invalid::MissingUsername));
    }
}
