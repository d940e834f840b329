//! An OIDC issuer's access-token rules (RFC 9068, JWT access tokens): `typ`, `iss`, `aud`, the
//! times, `sub`; and what the token says of a second factor (`amr`, RFC 8176; `acr`). Pure: the
//! claims come in as JSON, the time as a number.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::authz::error::Invalid;
use crate::clock::IAT_DRIFT_SECONDS;
use crate::verify::claims::{Claims, Identity, TokenId};

/// The claim rules for one OIDC issuer.
#[derive(Debug, Clone)]
pub struct OidcRules {
    /// The `iss`, compared exactly.
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audience: Vec<String>,
    /// Seconds of tolerance on `exp`, `nbf` and `iat`.
    pub leeway: u64,
    /// The claim read for the username (`x-username`); the `sub` when the token has none.
    pub username_claim: String,
    /// The claim read for the groups (`x-user-groups`, policy `groups`): an array of strings.
    pub groups_claim: String,
    /// `amr` values that show a second factor.
    pub mfa_amr: Vec<String>,
    /// `acr` values that show a second factor.
    pub mfa_acr: Vec<String>,
}

/// `typ` values of an access token: RFC 9068's, and plain `JWT`, which several providers still use.
fn access_token_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| ["at+jwt", "application/at+jwt", "jwt"].iter().any(|ok| t.eq_ignore_ascii_case(ok)))
}

/// True when the claims carry what only an ID token carries: `nonce`, `at_hash` or `c_hash`
/// (OpenID Connect Core 2, 3.1.3.6, 3.3.2.11), Keycloak's `typ: "ID"` claim or Cognito's
/// `token_use: "id"`. Many providers stamp access tokens `typ: JWT` in the header too (Auth0,
/// Entra ID, Keycloak), so the header alone cannot tell an ID token from an access token.
fn id_token_markers(claims: &Map<String, Value>) -> bool {
    ["nonce", "at_hash", "c_hash"].iter().any(|k| claims.contains_key(*k))
        || claims.get("typ").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("ID"))
        || claims.get("token_use").and_then(Value::as_str) == Some("id")
}

impl OidcRules {
    /// Applies every rule to a verified token's header `typ` and claims, at Unix time `now`.
    pub fn check(&self, typ: Option<&str>, claims: &Map<String, Value>, now: u64) -> Result<Claims, Invalid> {
        if !access_token_typ(typ) || id_token_markers(claims) {
            return Err(Invalid::NotAccessToken);
        }
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(Invalid::BadClaims),
        };
        let text = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Invalid::BadClaims),
        };
        let exp = time("exp")?.ok_or(Invalid::MissingExpiry)?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(Invalid::Expired);
        }
        if time("nbf")?.is_some_and(|nbf| now.saturating_add(self.leeway) < nbf) {
            return Err(Invalid::NotYetValid);
        }
        let iat = time("iat")?;
        if iat.is_some_and(|iat| iat > now.saturating_add(self.leeway + IAT_DRIFT_SECONDS)) {
            return Err(Invalid::IssuedInFuture);
        }
        if text("iss")? != Some(self.issuer.as_str()) {
            return Err(Invalid::WrongIssuer);
        }
        let for_us = |aud: &str| self.audience.iter().any(|a| a == aud);
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => for_us(aud),
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str().is_some_and(for_us)),
            _ => false,
        };
        if !audience_ok {
            return Err(Invalid::WrongAudience);
        }
        let sub = text("sub")?.filter(|s| !s.is_empty()).ok_or(Invalid::MissingSubject)?;
        let username = match claims.get(&self.username_claim) {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => sub.to_owned(),
        };
        let strings = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
                _ => vec![],
            }
        };
        let groups = strings(claims.get(&self.groups_claim));
        // `scope` (RFC 9068), else `scp` as an array (Okta, Entra ID).
        let scope = match text("scope")? {
            Some(scope) => Some(scope.to_owned()),
            None => Some(strings(claims.get("scp")).join(" ")).filter(|s| !s.is_empty()),
        };
        let amr = strings(claims.get("amr"));
        let acr = claims.get("acr").and_then(Value::as_str);
        let second_factor =
            amr.iter().any(|m| self.mfa_amr.contains(m)) || acr.is_some_and(|a| self.mfa_acr.iter().any(|ok| ok == a));
        let client_id = text("client_id")?.or(text("azp")?).unwrap_or("");
        Ok(Claims {
            identity: Identity::Subject { sub: sub.into(), username },
            client_id: Arc::from(client_id),
            groups: groups.into(),
            scope: scope.map(Arc::from),
            jti: text("jti")?.map(TokenId::from),
            origin_jti: None,
            exp,
            iat,
            auth_time: time("auth_time")?,
            mapped: Box::default(),
            issuer: 0,
            issuer_name: Arc::from(""),
            iss: Arc::from(""),
            second_factor: Some(second_factor),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://idp.example.com/realms/acme";
    const NOW: u64 = 1_800_000_000;

    fn rules() -> OidcRules {
        OidcRules {
            issuer: ISS.into(),
            audience: vec!["https://api.example.com".into()],
            leeway: 0,
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            mfa_amr: vec!["mfa".into(), "otp".into()],
            mfa_acr: vec!["urn:acme:loa:2".into()],
        }
    }

    fn token() -> Map<String, Value> {
        json!({
            "iss": ISS, "sub": "00u1abcd", "aud": ["other", "https://api.example.com"], "exp": NOW + 60,
            "iat": NOW - 5, "jti": "j-1", "client_id": "web", "scope": "openid read", "amr": ["pwd"],
            "preferred_username": "alice@example.com", "groups": ["staff", 7]
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn with(key: &str, value: Value) -> Map<String, Value> {
        let mut t = token();
        t.insert(key.into(), value);
        t
    }

    #[test]
    fn a_jwt_access_token_for_this_api_passes() {
        let claims = rules().check(Some("at+jwt"), &token(), NOW).expect("valid");
        assert_eq!(claims.identity, Identity::Subject { sub: "00u1abcd".into(), username: "alice@example.com".into() });
        assert_eq!(&*claims.groups, ["staff".to_owned()], "non-string items are skipped");
        assert_eq!(claims.second_factor, Some(false), "pwd alone is one factor");
        for typ in ["application/at+jwt", "JWT", "AT+JWT"] {
            assert!(rules().check(Some(typ), &token(), NOW).is_ok(), "{typ}");
        }
    }

    #[test]
    fn typ_aud_sub_and_times_are_required() {
        assert_eq!(rules().check(None, &token(), NOW).err(), Some(Invalid::NotAccessToken));
        assert_eq!(rules().check(Some("id+jwt"), &token(), NOW).err(), Some(Invalid::NotAccessToken));
        let r = |t: Map<String, Value>| rules().check(Some("at+jwt"), &t, NOW).err();
        assert_eq!(r(with("aud", json!("https://other.example.com"))), Some(Invalid::WrongAudience));
        assert_eq!(r(with("aud", json!(["x", 1]))), Some(Invalid::WrongAudience));
        let mut no_aud = token();
        no_aud.remove("aud");
        assert_eq!(r(no_aud), Some(Invalid::WrongAudience));
        assert_eq!(r(with("sub", json!(""))), Some(Invalid::MissingSubject));
        assert_eq!(r(with("sub", json!(5))), Some(Invalid::BadClaims));
        assert_eq!(r(with("exp", json!(NOW))), Some(Invalid::Expired));
        assert_eq!(r(with("exp", json!("soon"))), Some(Invalid::BadClaims));
        let mut no_exp = token();
        no_exp.remove("exp");
        assert_eq!(r(no_exp), Some(Invalid::MissingExpiry));
        assert_eq!(r(with("nbf", json!(NOW + 1))), Some(Invalid::NotYetValid));
        assert_eq!(r(with("iss", json!(format!("{ISS}/")))), Some(Invalid::WrongIssuer));
    }

    #[test]
    fn an_id_token_is_refused_whatever_its_typ_says() {
        // Each provider's ID-token shape, beside its access token (which passes).
        let r = |typ: &str, t: Map<String, Value>| rules().check(Some(typ), &t, NOW).err();
        assert_eq!(r("JWT", token()), None, "an access token stamped typ JWT (Auth0, Entra ID) passes");
        assert_eq!(r("at+jwt", token()), None, "an RFC 9068 access token passes");
        let mut keycloak_access = token();
        keycloak_access.insert("typ".into(), json!("Bearer"));
        assert_eq!(r("JWT", keycloak_access), None, "Keycloak's access token (typ claim Bearer) passes");
        // OpenID Connect ID tokens (oidc-provider, Auth0, Okta, Entra ID): nonce, at_hash, c_hash.
        assert_eq!(r("JWT", with("nonce", json!("n-1"))), Some(Invalid::NotAccessToken));
        assert_eq!(r("JWT", with("at_hash", json!("x"))), Some(Invalid::NotAccessToken));
        assert_eq!(r("JWT", with("c_hash", json!("x"))), Some(Invalid::NotAccessToken));
        // Keycloak marks its ID tokens with a typ claim of ID; Cognito with token_use id.
        assert_eq!(r("JWT", with("typ", json!("ID"))), Some(Invalid::NotAccessToken));
        assert_eq!(r("JWT", with("token_use", json!("id"))), Some(Invalid::NotAccessToken));
        assert_eq!(r("JWT", with("token_use", json!("access"))), None, "token_use access is fine");
    }

    #[test]
    fn a_second_factor_shows_in_amr_or_acr() {
        let r = |t: Map<String, Value>| rules().check(Some("at+jwt"), &t, NOW).unwrap().second_factor;
        assert_eq!(r(with("amr", json!(["pwd", "otp"]))), Some(true));
        assert_eq!(r(with("acr", json!("urn:acme:loa:2"))), Some(true));
        assert_eq!(r(with("acr", json!("urn:acme:loa:1"))), Some(false));
        assert_eq!(r(with("amr", json!("mfa"))), Some(false), "amr is an array");
    }
}
