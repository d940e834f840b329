//! The companion HTTP module: `POST /auth/sign-in`, `POST /auth/refresh`, `GET /auth/me`,
//! `GET|POST /auth/logout`. These routes are `public` at the gateway and verify their tokens here,
//! with the same verifier and revocation list as every ext_authz decision.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::HttpError;
use crate::authz::Authorizer;
use crate::authz::credential;
use crate::authz::error::{Denied, Invalid};
use crate::clock::unix_now;
use crate::cognito::UserCalls;
use crate::http::oauth::{OAuthClient, OAuthError, Tokens};
use crate::mfa::ADMIN_SCOPE;
use crate::revocation::logout_entries;
use crate::verify::claims::{Claims, Identity};

/// The refresh-token cookie.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// Defaults to `cognito_refresh`.
    pub name: String,
    /// Defaults to `/auth`: the browser sends it to the auth routes only.
    pub path: String,
    /// Its `Domain`; none: the host only.
    pub domain: Option<String>,
}

/// Settings of the HTTP module.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The default `redirect_uri` of the code exchange.
    pub redirect_uri: Option<String>,
    /// Where the browser goes after the hosted UI's `/logout`.
    pub logout_redirect_uri: Option<String>,
    /// The refresh-token cookie.
    pub cookie: CookieSettings,
    /// Origins allowed to use cookie-only routes (and CORS). Empty: none.
    pub allowed_origins: Vec<String>,
    /// How long a refresh token lives (Cognito's default: 30 days).
    pub refresh_token_lifetime: Duration,
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AuthState {
    /// Decides whether the caller's token is good (`me`, `logout`).
    pub authorizer: Authorizer,
    /// Says which issuer the HTTP module serves, and the leeway.
    pub verifier: crate::verify::Verifier,
    /// Where logout revokes.
    pub revocations: crate::revocation::Revocations,
    /// The OAuth client, when sign-in is configured.
    pub oauth: Option<OAuthClient>,
    /// The Cognito API, for `me` and global sign-out.
    pub cognito: Option<Arc<dyn UserCalls>>,
    /// The module's settings.
    pub settings: Arc<AuthSettings>,
    /// Requests are counted by route and status.
    pub metrics: crate::telemetry::metrics::Metrics,
}

crate::opaque_debug!(AuthState);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    code: String,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
}

/// `POST /auth/sign-in`: exchanges an authorization code; the refresh token goes in a cookie.
///
/// Login CSRF: another site must not be able to sign a visitor in as someone else (its own code, its
/// own account). A browser names the site in `Origin`, which must then be allowed; and a form can
/// post only `text/plain`, urlencoded or multipart bodies, so only JSON is taken. A client that is
/// not a browser sends no `Origin` and is served.
pub async fn sign_in(State(state): State<AuthState>, headers: HeaderMap, body: Bytes) -> Result<Response, HttpError> {
    if headers.contains_key(header::ORIGIN) {
        require_origin(&state.settings, &headers)?;
    }
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let essence = content_type.to_str().unwrap_or("").split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(HttpError::NotJson);
        }
    }
    let request: SignIn = serde_json::from_slice(&body).map_err(|_| HttpError::BadBody)?;
    if request.code.is_empty() || request.code.len() > 2048 {
        return Err(HttpError::BadBody);
    }
    let redirect_uri =
        request.redirect_uri.as_deref().or(state.settings.redirect_uri.as_deref()).ok_or(HttpError::BadBody)?;
    let oauth = state.oauth.as_ref().ok_or(HttpError::NotConfigured)?;
    let tokens = oauth
        .exchange_code(&request.code, redirect_uri, request.code_verifier.as_deref())
        .await
        .map_err(|e| HttpError::from_oauth(e, "Authorization code exchange failed"))?;
    Ok(token_response(&state.settings, tokens))
}

/// `POST /auth/refresh`: a new access token from the refresh-token cookie.
pub async fn refresh(State(state): State<AuthState>, headers: HeaderMap) -> Result<Response, HttpError> {
    require_origin(&state.settings, &headers)?;
    let refresh_token = cookie(&headers, &state.settings.cookie.name)?.ok_or(HttpError::NoRefreshToken)?;
    let oauth = state.oauth.as_ref().ok_or(HttpError::NotConfigured)?;
    match oauth.refresh(refresh_token).await {
        Ok(tokens) => Ok(token_response(&state.settings, tokens)),
        Err(OAuthError::Refused) => Err(HttpError::RefreshRefused(clear_cookie(&state.settings.cookie))),
        Err(e) => Err(HttpError::from_oauth(e, "Refresh failed")),
    }
}

/// `GET /auth/me`: the user's information, from the richest source the token allows.
pub async fn me(State(state): State<AuthState>, headers: HeaderMap) -> Result<Response, HttpError> {
    let Some(token) = bearer_token(&headers)? else { return Err(HttpError::NoCredentials) };
    let claims = state.authorizer.authenticate(token, unix_now()).await?;
    let mut user = claims_view(&claims);
    // Another issuer's token is never sent to the served issuer's userinfo or Cognito.
    let served = state.verifier.serves(&claims);
    if served
        && claims.has_scope("openid")
        && let Some(oauth) = state.oauth.as_ref().filter(|o| o.endpoints().userinfo.is_some())
    {
        let info =
            oauth.userinfo(token).await.map_err(|e| HttpError::from_oauth(e, "Could not validate credentials"))?;
        merge(&mut user, info);
        user.insert("source".into(), json!("userinfo"));
    } else if served
        && claims.has_scope(ADMIN_SCOPE)
        && let Some(cognito) = &state.cognito
    {
        let attributes = cognito.user_attributes(token).await.map_err(HttpError::from_cognito)?;
        merge(&mut user, attributes.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
        user.insert("source".into(), json!("get_user"));
    }
    normalise_email_verified(&mut user);
    Ok(Json(Value::Object(user)).into_response())
}

/// `GET /auth/logout` (bearer token) and `POST /auth/logout` (bearer token, or the refresh cookie
/// alone with an allowed `Origin`): revokes, then answers where the browser should go.
///
/// A refresh cookie sent along is revoked at Cognito whatever became of the bearer (missing,
/// expired, already revoked, or the store or Cognito failing for it): a live refresh token would
/// otherwise outlast the logout. The cookie is cleared only once that revoke succeeded, so a client
/// whose logout failed still holds the token to try again with.
pub async fn logout(State(state): State<AuthState>, headers: HeaderMap) -> Result<Response, HttpError> {
    let settings = &state.settings;
    let refresh_token = cookie(&headers, &settings.cookie.name)?;
    let bearer = bearer_token(&headers);
    if refresh_token.is_some() && matches!(bearer, Ok(None)) {
        // Cookie alone: a cross-site form could send it. A request with an `authorization` header
        // cannot be sent cross-site without CORS allowing it.
        require_origin(settings, &headers)?;
    }
    let access = match bearer {
        Ok(Some(token)) => revoke_access(&state, token, refresh_token.is_none()).await,
        Ok(None) if refresh_token.is_some() => Ok(()),
        Ok(None) => Err(HttpError::Denied(Invalid::MissingToken.into())),
        Err(e) => Err(e),
    };
    let Some(refresh_token) = refresh_token else {
        // No refresh token to lose: the cookie is cleared whatever the outcome.
        access.map_err(|e| e.with_cookie(clear_cookie(&settings.cookie)))?;
        return Ok(logged_out(&state));
    };
    let refresh = match state.oauth.as_ref() {
        Some(oauth) => oauth.revoke(refresh_token).await.map_err(|e| HttpError::from_oauth(e, "Logout failed")),
        None => Err(HttpError::NotConfigured),
    };
    match (access, refresh) {
        (_, Err(refresh)) => Err(refresh),
        (Err(access), Ok(())) if !matches!(access, HttpError::Denied(Denied::Unauthenticated(_))) => {
            Err(access.with_cookie(clear_cookie(&settings.cookie)))
        }
        // The bearer was already dead (expired, revoked) and the refresh token now is too.
        (_, Ok(())) => Ok(logged_out(&state)),
    }
}

/// Revokes a logging-out access token and its sign-in, durably first: the logout is acknowledged
/// only once no replica can forget it. Without a refresh token to revoke, every session of the user
/// is ended at Cognito so none refreshes.
async fn revoke_access(state: &AuthState, token: &str, sign_out_everywhere: bool) -> Result<(), HttpError> {
    let now = unix_now();
    let authorizer = &state.authorizer;
    let claims = authorizer.authenticate(token, now).await?;
    let entries = logout_entries(&claims, state.settings.refresh_token_lifetime, state.verifier.leeway(), now);
    state.revocations.revoke(entries).await.map_err(|error| {
        tracing::warn!(%error, "revocation store unavailable; logout not acknowledged");
        HttpError::StoreUnavailable
    })?;
    let served = state.verifier.serves(&claims);
    if sign_out_everywhere
        && served
        && let Some(cognito) = &state.cognito
    {
        match cognito.global_sign_out(token).await {
            Ok(()) | Err(crate::cognito::CognitoError::Refused) => {}
            Err(e) => return Err(HttpError::from_cognito(e)),
        }
    }
    Ok(())
}

fn logged_out(state: &AuthState) -> Response {
    let body = json!({ "message": "Logout successful", "logout_url": logout_url(state) });
    ([(header::SET_COOKIE, clear_cookie(&state.settings.cookie))], Json(body)).into_response()
}

/// The hosted UI's `/logout?client_id=…&logout_uri=…`.
fn logout_url(state: &AuthState) -> Option<String> {
    let oauth = state.oauth.as_ref()?;
    let mut url = oauth.endpoints().logout.clone()?;
    url.query_pairs_mut().append_pair("client_id", oauth.client_id());
    if let Some(uri) = &state.settings.logout_redirect_uri {
        url.query_pairs_mut().append_pair("logout_uri", uri);
    }
    Some(url.to_string())
}

fn token_response(settings: &AuthSettings, tokens: Tokens) -> Response {
    let body = json!({
        "access_token": tokens.access_token,
        "expires_in": tokens.expires_in.unwrap_or(3600),
        "token_type": "Bearer",
    });
    match tokens.refresh_token {
        Some(refresh) => ([(header::SET_COOKIE, set_cookie(settings, &refresh))], Json(body)).into_response(),
        None => Json(body).into_response(),
    }
}

fn set_cookie(settings: &AuthSettings, value: &str) -> HeaderValue {
    let c = &settings.cookie;
    let mut cookie = format!(
        "{}={}; HttpOnly; Secure; SameSite=Strict; Path={}; Max-Age={}",
        c.name,
        value,
        c.path,
        settings.refresh_token_lifetime.as_secs()
    );
    if let Some(domain) = &c.domain {
        cookie.push_str(&format!("; Domain={domain}"));
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(super) fn clear_cookie(c: &CookieSettings) -> HeaderValue {
    let mut cookie = format!("{}=; HttpOnly; Secure; SameSite=Strict; Path={}; Max-Age=0", c.name, c.path);
    if let Some(domain) = &c.domain {
        cookie.push_str(&format!("; Domain={domain}"));
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The bearer token, if an `authorization` header was sent; a malformed one is an error.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, HttpError> {
    let values = headers.get_all(header::AUTHORIZATION).iter().map(|v| v.to_str().ok());
    credential::bearer(values).map_err(HttpError::Denied)
}

/// The refresh cookie; named twice, it is refused as the ext_authz path refuses it.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, HttpError> {
    let values = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    credential::cookie(values, name).map_err(|e| HttpError::Denied(e.into()))
}

/// Cookie-only requests need an `Origin` from the configured list (CSRF defence beside SameSite).
fn require_origin(settings: &AuthSettings, headers: &HeaderMap) -> Result<(), HttpError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin {
        Some(o) if settings.allowed_origins.iter().any(|allowed| allowed == o) => Ok(()),
        _ => Err(HttpError::OriginNotAllowed),
    }
}

fn claims_view(claims: &Claims) -> Map<String, Value> {
    let mut user = Map::new();
    match &claims.identity {
        Identity::User { sub, username } => {
            user.insert("sub".into(), json!(sub));
            user.insert("username".into(), json!(username));
        }
        Identity::Subject { sub, username } => {
            user.insert("sub".into(), json!(&**sub));
            user.insert("username".into(), json!(username));
        }
        Identity::Machine => {
            user.insert("client_id".into(), json!(&*claims.client_id));
        }
    }
    user.insert("groups".into(), json!(&*claims.groups));
    user.insert("scope".into(), json!(claims.scope.as_deref()));
    user.insert("source".into(), json!("token"));
    user
}

/// Adds what the richer source says, except `sub`, which stays the verified one.
fn merge(user: &mut Map<String, Value>, extra: Map<String, Value>) {
    for (k, v) in extra {
        if k != "sub" {
            user.insert(k, v);
        }
    }
}

/// Cognito sends `email_verified` as the string "true"/"false"; answer a boolean.
fn normalise_email_verified(user: &mut Map<String, Value>) {
    if let Some(Value::String(s)) = user.get("email_verified") {
        let verified = s == "true";
        user.insert("email_verified".into(), json!(verified));
    }
}

impl From<Denied> for HttpError {
    fn from(denied: Denied) -> HttpError {
        HttpError::Denied(denied)
    }
}
