//! The dev pool's hosted UI: the OAuth endpoints of a Cognito domain, on the dev HTTP listener,
//! for the dev users, so the whole browser flow runs on a laptop with no AWS. Cognito's paths,
//! parameters, error shapes and token claims: `/oauth2/authorize` (to `/login`), `/oauth2/token`
//! (authorization code with PKCE S256; refresh), `/oauth2/userInfo`, `/oauth2/revoke`, `/logout`;
//! and a TOTP enrolment page (`/mfa/enrol`). Dev only: `serve` never mounts it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::clock::unix_now;
use crate::dev::{DEV_CLIENT_ID, DevPool, DevUser, Session};

/// Authorization codes and enrolment forms live this long, and serve once.
const CODE_LIFETIME: Duration = Duration::from_secs(300);
/// Access and ID tokens live an hour, as Cognito's default.
const TOKEN_LIFETIME: u64 = 3600;
/// A sign-in (its refresh token) lives a day: a dev session, not Cognito's 30 days.
const SIGN_IN_LIFETIME: Duration = Duration::from_secs(86_400);
/// The most codes, sign-ins or enrolments held at once: past it, new ones are refused until
/// others expire, so a client that keeps starting them cannot grow the process without bound.
const MAX_PENDING: usize = 10_000;

/// The hosted UI's state: codes waiting for their exchange, sign-ins with their refresh tokens,
/// enrolments waiting for their first code. In memory: a restart signs everyone out.
pub struct HostedUi {
    pool: Arc<DevPool>,
    codes: Pending<Grant>,
    sign_ins: Pending<SignIn>,
    enrolments: Pending<Enrolment>,
}

/// Things that wait for a client, each until it expires: purged of expired entries whenever one
/// is added, and bounded (`MAX_PENDING`).
struct Pending<T> {
    entries: Mutex<HashMap<String, (Instant, T)>>,
    limit: usize,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending { entries: Mutex::default(), limit: MAX_PENDING }
    }
}

/// Too many pending entries: the new one is refused.
#[derive(Debug)]
struct Full;

impl<T> Pending<T> {
    fn insert(&self, key: String, value: T, lifetime: Duration, now: Instant) -> Result<(), Full> {
        let mut entries = self.entries.lock().expect("pending lock");
        entries.retain(|_, (expires, _)| *expires > now);
        if entries.len() >= self.limit {
            return Err(Full);
        }
        entries.insert(key, (now + lifetime, value));
        Ok(())
    }

    /// Takes an entry out (single use), if it has not expired.
    fn take(&self, key: &str, now: Instant) -> Option<T> {
        let (expires, value) = self.entries.lock().expect("pending lock").remove(key)?;
        (expires > now).then_some(value)
    }

    /// Reads an entry that has not expired.
    fn read<R>(&self, key: &str, now: Instant, read: impl FnOnce(&T) -> R) -> Option<R> {
        let entries = self.entries.lock().expect("pending lock");
        entries.get(key).filter(|(expires, _)| *expires > now).map(|(_, value)| read(value))
    }

    fn remove(&self, key: &str) {
        self.entries.lock().expect("pending lock").remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().expect("pending lock").len()
    }
}

fn busy() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "too many pending sign-ins; try again later" })))
        .into_response()
}

crate::opaque_debug!(HostedUi);

struct Grant {
    username: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
    auth_time: u64,
}

#[derive(Clone)]
struct SignIn {
    username: String,
    origin_jti: Uuid,
    auth_time: u64,
    scope: String,
}

struct Enrolment {
    username: String,
    secret: String,
}

/// The routes, to merge into the dev HTTP listener.
pub fn routes(pool: Arc<DevPool>) -> Router {
    let state = Arc::new(HostedUi {
        pool,
        codes: Pending::default(),
        sign_ins: Pending::default(),
        enrolments: Pending::default(),
    });
    Router::new()
        .route("/oauth2/authorize", get(authorize))
        .route("/login", get(login_form).post(login))
        .route("/oauth2/token", post(token))
        .route("/oauth2/userInfo", get(userinfo))
        .route("/oauth2/revoke", post(revoke))
        .route("/logout", get(logout))
        .route("/mfa/enrol", get(enrol_form).post(enrol))
        .route("/mfa/enrol/verify", post(enrol_verify))
        .with_state(state)
}

/// The parameters of an authorization request, carried through the sign-in form.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct AuthorizeParams {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    state: String,
    scope: String,
    code_challenge: String,
    code_challenge_method: String,
}

impl AuthorizeParams {
    /// Cognito's checks, in its words: only what can go wrong with a dev client.
    fn check(&self) -> Result<(), &'static str> {
        if self.client_id != DEV_CLIENT_ID {
            return Err("invalid_client");
        }
        if !is_loopback_http(&self.redirect_uri) {
            return Err("redirect_mismatch");
        }
        if self.response_type != "code" {
            return Err("unsupported_response_type");
        }
        if self.code_challenge_method != "S256" || self.code_challenge.len() < 43 {
            return Err("invalid_request");
        }
        Ok(())
    }

    fn hidden_fields(&self) -> String {
        [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("state", &self.state),
            ("scope", &self.scope),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
        ]
        .iter()
        .map(|(name, value)| format!(r#"<input type="hidden" name="{name}" value="{}">"#, escape(value)))
        .collect()
    }
}

/// Dev redirects go back to the developer's own machine only.
fn is_loopback_http(uri: &str) -> bool {
    reqwest::Url::parse(uri).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && crate::loopback::is_loopback(&u) && u.fragment().is_none()
    })
}

async fn authorize(Query(params): Query<AuthorizeParams>, uri: axum::http::Uri) -> Response {
    match params.check() {
        Ok(()) => Redirect::to(&format!("/login?{}", uri.query().unwrap_or(""))).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response(),
    }
}

async fn login_form(Query(params): Query<AuthorizeParams>) -> Response {
    match params.check() {
        Ok(()) => page("Sign in", &sign_in_form(&params, None)).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response(),
    }
}

fn sign_in_form(params: &AuthorizeParams, error: Option<&str>) -> String {
    let error = error.map(|e| format!(r#"<p id="error">{}</p>"#, escape(e))).unwrap_or_default();
    format!(
        r#"<h1>Sign in</h1>{error}<form method="post" action="/login">{hidden}
<label>Username <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<label>Authenticator code (if you enrolled one) <input name="totp" inputmode="numeric" autocomplete="one-time-code"></label>
<button type="submit" id="signin">Sign in</button></form>
<p><a href="/mfa/enrol">Set up an authenticator</a></p>"#,
        hidden = params.hidden_fields()
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(flatten)]
    params: AuthorizeParams,
    #[serde(flatten)]
    user: Credentials,
}

async fn login(State(ui): State<Arc<HostedUi>>, Form(form): Form<LoginForm>) -> Response {
    if let Err(error) = form.params.check() {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    }
    let user = match ui.authenticate(&form.user.username, &form.user.password) {
        Some(user) => user,
        None => return page("Sign in", &sign_in_form(&form.params, Some("Incorrect username or password."))),
    };
    if user.mfa {
        let secret = user.totp_secret.as_deref().unwrap_or("");
        if !crate::dev::totp::verify(secret, &form.user.totp, unix_now()) {
            return page("Sign in", &sign_in_form(&form.params, Some("Invalid code received for user")));
        }
    }
    let code = random_token();
    let grant = Grant {
        username: user.username,
        redirect_uri: form.params.redirect_uri.clone(),
        challenge: form.params.code_challenge.clone(),
        scope: if form.params.scope.is_empty() { "openid".into() } else { form.params.scope.clone() },
        auth_time: unix_now(),
    };
    if ui.codes.insert(code.clone(), grant, CODE_LIFETIME, Instant::now()).is_err() {
        return busy();
    }
    let mut target = reqwest::Url::parse(&form.params.redirect_uri).expect("checked above");
    target.query_pairs_mut().append_pair("code", &code);
    if !form.params.state.is_empty() {
        target.query_pairs_mut().append_pair("state", &form.params.state);
    }
    Redirect::to(target.as_str()).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
}

async fn token(State(ui): State<Arc<HostedUi>>, Form(form): Form<TokenForm>) -> Response {
    if form.client_id.as_deref() != Some(DEV_CLIENT_ID) {
        return oauth_error("invalid_client");
    }
    match form.grant_type.as_deref() {
        Some("authorization_code") => ui.exchange(&form),
        Some("refresh_token") => ui.refresh(form.refresh_token.as_deref().unwrap_or("")),
        _ => oauth_error("unsupported_grant_type"),
    }
}

impl HostedUi {
    fn authenticate(&self, username: &str, password: &str) -> Option<DevUser> {
        let user = self.pool.users().ok()?.into_iter().find(|u| u.username == username)?;
        use subtle::ConstantTimeEq;
        let same =
            user.password.len() == password.len() && bool::from(user.password.as_bytes().ct_eq(password.as_bytes()));
        same.then_some(user)
    }

    fn exchange(&self, form: &TokenForm) -> Response {
        // Single use: the code is gone whatever the outcome.
        let Some(grant) = form.code.as_deref().and_then(|c| self.codes.take(c, Instant::now())) else {
            return oauth_error("invalid_grant");
        };
        let verifier = form.code_verifier.as_deref().unwrap_or("");
        let challenge =
            URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));
        if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) || challenge != grant.challenge {
            return oauth_error("invalid_grant");
        }
        let Some(user) = self.user(&grant.username) else { return oauth_error("invalid_grant") };
        let sign_in = SignIn {
            username: user.username.clone(),
            origin_jti: Uuid::new_v4(),
            auth_time: grant.auth_time,
            scope: grant.scope,
        };
        let refresh_token = random_token();
        let body = self.tokens(&user, &sign_in, Some(&refresh_token));
        if self.sign_ins.insert(refresh_token, sign_in, SIGN_IN_LIFETIME, Instant::now()).is_err() {
            return busy();
        }
        body
    }

    fn refresh(&self, refresh_token: &str) -> Response {
        let Some(sign_in) = self.sign_ins.read(refresh_token, Instant::now(), SignIn::clone) else {
            return oauth_error("invalid_grant");
        };
        let Some(user) = self.user(&sign_in.username) else { return oauth_error("invalid_grant") };
        // Cognito's refresh: new access and ID tokens of the same sign-in, no new refresh token.
        self.tokens(&user, &sign_in, None)
    }

    fn tokens(&self, user: &DevUser, sign_in: &SignIn, refresh_token: Option<&str>) -> Response {
        let now = unix_now();
        let session = Session { origin_jti: sign_in.origin_jti, auth_time: sign_in.auth_time, scope: &sign_in.scope };
        let mut body = json!({
            "access_token": self.pool.session_access_token(user, &session, now, TOKEN_LIFETIME),
            "id_token": self.pool.session_id_token(user, &session, now, TOKEN_LIFETIME),
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
        });
        if let Some(refresh_token) = refresh_token {
            body["refresh_token"] = json!(refresh_token);
        }
        ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
    }

    fn user(&self, username: &str) -> Option<DevUser> {
        self.pool.users().ok()?.into_iter().find(|u| u.username == username)
    }
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

/// `GET /oauth2/userInfo`: the user of a valid dev access token.
async fn userinfo(State(ui): State<Arc<HostedUi>>, headers: HeaderMap) -> Response {
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let user = token
        .and_then(|t| ui.pool.verify_access_token(t, unix_now()))
        .and_then(|sub| ui.pool.users().ok()?.into_iter().find(|u| u.sub == sub));
    match user {
        Some(user) => Json(json!({
            "sub": user.sub, "username": user.username,
            "email": format!("{}@dev.invalid", user.username), "email_verified": "true",
        }))
        .into_response(),
        None => (StatusCode::UNAUTHORIZED, Json(json!({ "error": "invalid_token" }))).into_response(),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    token: Option<String>,
    client_id: Option<String>,
}

/// `POST /oauth2/revoke`: ends a sign-in's refresh token (Cognito takes refresh tokens only).
async fn revoke(State(ui): State<Arc<HostedUi>>, Form(form): Form<RevokeForm>) -> Response {
    if form.client_id.as_deref() != Some(DEV_CLIENT_ID) {
        return oauth_error("invalid_client");
    }
    let token = form.token.unwrap_or_default();
    if token.starts_with("ey") {
        return oauth_error("unsupported_token_type");
    }
    ui.sign_ins.remove(&token);
    StatusCode::OK.into_response()
}

#[derive(Deserialize)]
struct LogoutParams {
    logout_uri: Option<String>,
}

/// `GET /logout`: ends the hosted-UI session (there is none to keep here) and goes back.
async fn logout(Query(params): Query<LogoutParams>) -> Response {
    match params.logout_uri.filter(|u| is_loopback_http(u)) {
        Some(uri) => Redirect::to(&uri).into_response(),
        None => page("Signed out", "<p id=\"signed-out\">You are signed out.</p>"),
    }
}

fn enrol_page(error: Option<&str>) -> String {
    let error = error.map(|e| format!(r#"<p id="error">{}</p>"#, escape(e))).unwrap_or_default();
    format!(
        r#"<h1>Set up an authenticator</h1>{error}<form method="post" action="/mfa/enrol">
<label>Username <input name="username" required></label>
<label>Password <input name="password" type="password" required></label>
<label>Current authenticator code (to replace one you enrolled) <input name="totp" inputmode="numeric" autocomplete="one-time-code"></label>
<button type="submit" id="enrol">Continue</button></form>"#
    )
}

async fn enrol_form() -> Response {
    page("Set up an authenticator", &enrol_page(None))
}

/// What the sign-in and enrolment forms ask of a user.
#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// The authenticator's current code, for a user who enrolled one.
    #[serde(default)]
    totp: String,
}

/// Shows a new secret to a signed-in user, and a form for their authenticator's first code.
async fn enrol(State(ui): State<Arc<HostedUi>>, Form(form): Form<Credentials>) -> Response {
    let Some(user) = ui.authenticate(&form.username, &form.password) else {
        return page("Set up an authenticator", &enrol_page(Some("Incorrect username or password.")));
    };
    // A password alone never replaces an enrolled authenticator (as Cognito asks an MFA-signed-in
    // session for it): whoever learnt the password would then hold the second factor too.
    if user.mfa && !crate::dev::totp::verify(user.totp_secret.as_deref().unwrap_or(""), &form.totp, unix_now()) {
        return page(
            "Set up an authenticator",
            &enrol_page(Some("You already enrolled an authenticator: enter its current code to replace it.")),
        );
    }
    let secret = crate::dev::totp::new_secret(crate::dev::random_bytes());
    let uri = crate::dev::totp::otpauth_uri("cognito-authz dev", &user.username, &secret);
    let token = random_token();
    let enrolment = Enrolment { username: user.username, secret: secret.clone() };
    if ui.enrolments.insert(token.clone(), enrolment, CODE_LIFETIME, Instant::now()).is_err() {
        return busy();
    }
    page(
        "Set up an authenticator",
        &format!(
            r#"<h1>Set up an authenticator</h1>
<p>Add this secret to your authenticator app: <code id="secret">{secret}</code></p>
<p>or open <a href="{uri}"><code id="otpauth">{uri}</code></a></p>
<form method="post" action="/mfa/enrol/verify"><input type="hidden" name="enrolment" value="{token}">
<label>The code it shows <input name="code" inputmode="numeric" autocomplete="one-time-code" required></label>
<button type="submit" id="verify">Verify</button></form>"#,
            secret = escape(&secret),
            uri = escape(&uri),
            token = escape(&token),
        ),
    )
}

#[derive(Deserialize)]
struct VerifyForm {
    #[serde(default)]
    enrolment: String,
    #[serde(default)]
    code: String,
}

/// Enrols the user once their authenticator's code matches the secret they were shown.
async fn enrol_verify(State(ui): State<Arc<HostedUi>>, Form(form): Form<VerifyForm>) -> Response {
    let Some(enrolment) = ui.enrolments.take(&form.enrolment, Instant::now()) else {
        return page("Set up an authenticator", &enrol_page(Some("This enrolment has expired; start again.")));
    };
    if !crate::dev::totp::verify(&enrolment.secret, &form.code, unix_now()) {
        return page("Set up an authenticator", &enrol_page(Some("Code mismatch; start again.")));
    }
    if let Err(error) = ui.pool.enrol(&enrolment.username, true, Some(enrolment.secret)) {
        tracing::warn!(%error, "saving a dev enrolment failed");
        return (StatusCode::INTERNAL_SERVER_ERROR, "saving the enrolment failed").into_response();
    }
    page("Authenticator set up", "<p id=\"enrolled\">Your authenticator is set up.</p>")
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body>{body}</body></html>",
        escape(title)
    );
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// Text for HTML, in an element or a quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(crate::dev::random_bytes::<32>())
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn pending_entries_expire_are_purged_and_are_bounded() {
        let pending = Pending { entries: Mutex::default(), limit: 2 };
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        pending.insert("a".into(), 1, minute, start).expect("room");
        pending.insert("b".into(), 2, Duration::from_secs(600), start).expect("room");
        assert!(pending.insert("c".into(), 3, minute, start).is_err(), "full: the new one is refused");
        assert_eq!(pending.read("a", start, |v| *v), Some(1), "positive control: still there");
        assert_eq!(pending.read("a", start + minute, |v| *v), None, "expired: never served");
        pending.insert("c".into(), 3, minute, start + minute).expect("the expired one was purged to make room");
        assert_eq!(pending.len(), 2);
        assert_eq!(pending.take("b", start + minute), Some(2));
        assert_eq!(pending.take("b", start + minute), None, "single use");
    }

    async fn post(app: &Router, path: &str, form: &[(&str, &str)]) -> String {
        let body = form.iter().map(|(k, v)| format!("{k}={}", urlencoding(v))).collect::<Vec<_>>().join("&");
        let request = axum::http::Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        String::from_utf8(axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    fn urlencoding(value: &str) -> String {
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    #[tokio::test]
    async fn a_password_alone_never_replaces_an_enrolled_authenticator() {
        let dir = std::env::temp_dir().join(format!("cognito-authz-hosted-ui-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pool = Arc::new(DevPool::open(&dir).expect("dev pool"));
        let alice = pool.user("alice").expect("alice");
        assert!(alice.mfa, "alice is enrolled in the dev pool");
        let app = routes(pool.clone());
        let password = alice.password.clone();
        let ask = |totp: String| {
            let (app, password) = (app.clone(), password.clone());
            async move { post(&app, "/mfa/enrol", &[("username", "alice"), ("password", &password), ("totp", &totp)]).await }
        };
        for code in [String::new(), "000000".to_owned()] {
            let page = ask(code.clone()).await;
            assert!(!page.contains(r#"id="secret""#), "{code:?}: no new secret for a password alone");
            assert!(page.contains("enter its current code"), "{page}");
        }
        let secret = alice.totp_secret.clone().expect("alice's secret");
        let current = crate::dev::totp::code(&secret, unix_now()).expect("a code");
        let page = ask(current).await;
        assert!(page.contains(r#"id="secret""#), "with the current code, a new secret is shown: {page}");
        assert_eq!(pool.user("alice").unwrap().totp_secret, Some(secret), "nothing replaced until verified");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
