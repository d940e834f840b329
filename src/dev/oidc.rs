//! Development mode's second issuer, `dev-oidc`: an OIDC-style issuer beside the dev pool, so both
//! kinds can be tried with no cloud. Its JWT access tokens (RFC 9068, `typ: at+jwt`) carry `aud`,
//! `preferred_username`, `groups` and the `amr` asked for (`dev token --issuer dev-oidc alice
//! --amr pwd,otp`). It signs with the dev pool's key under a `kid` of its own, served at its own
//! JWKS path, so each issuer's key store knows only its own `kid`.

use uuid::Uuid;

use crate::config::issuer::{IssuerConfig, KeysAt, Kind, OidcIssuer};
use crate::dev::{DEV_CLIENT_ID, DevPool, DevUser, SigningKey};
use crate::keys::key_set::Algorithm;

/// The issuer's name (`x-user-issuer`, `issuers` route settings).
pub const DEV_OIDC_NAME: &str = "dev-oidc";
/// Its `iss`; under the host `serve` never accepts.
pub const DEV_OIDC_ISSUER: &str = "https://cognito-authz.invalid/dev-oidc";
/// The audience its tokens are for.
pub const DEV_OIDC_AUDIENCE: &str = "https://api.cognito-authz.invalid";
/// Where the dev server serves its key set.
pub const DEV_OIDC_JWKS_PATH: &str = "/dev-oidc/.well-known/jwks.json";
/// `amr` values its `mfa` routes accept.
pub const DEV_OIDC_MFA_AMR: [&str; 4] = ["mfa", "otp", "hwk", "swk"];

/// The dev pool's key under this issuer's `kid`.
pub fn key(pool: &DevPool) -> anyhow::Result<SigningKey> {
    SigningKey::from_pkcs8(&pool.key().pkcs8()?, &format!("{DEV_OIDC_NAME}-{}", pool.key().kid()))
}

/// The issuer as the dev server configures it, its keys at `jwks_url`.
pub fn issuer(jwks_url: reqwest::Url) -> IssuerConfig {
    IssuerConfig {
        name: DEV_OIDC_NAME.to_owned(),
        iss: DEV_OIDC_ISSUER.to_owned(),
        keys: KeysAt::Jwks(jwks_url),
        kind: Kind::Oidc(OidcIssuer {
            audience: vec![DEV_OIDC_AUDIENCE.to_owned()],
            algorithms: vec![Algorithm::RS256],
            username_claim: "preferred_username".to_owned(),
            groups_claim: "groups".to_owned(),
            mfa_amr: DEV_OIDC_MFA_AMR.iter().map(|m| m.to_string()).collect(),
            mfa_acr: vec![],
        }),
    }
}

/// A JWT access token for `user`, saying the session used the methods in `amr`.
pub fn access_token(key: &SigningKey, user: &DevUser, amr: &[String], now: u64, lifetime: u64) -> String {
    let claims = serde_json::json!({
        "iss": DEV_OIDC_ISSUER, "sub": user.sub, "aud": DEV_OIDC_AUDIENCE, "client_id": DEV_CLIENT_ID,
        "exp": now + lifetime, "iat": now, "auth_time": now, "jti": Uuid::new_v4(), "scope": "openid",
        "preferred_username": user.username, "groups": user.groups, "amr": amr,
    });
    let header = serde_json::json!({"alg": "RS256", "kid": key.kid(), "typ": "at+jwt"});
    key.sign_raw(&header.to_string(), &claims.to_string())
}
