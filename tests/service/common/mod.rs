//! Shared test fixtures: signing keys, Cognito-shaped tokens, the service's parts with keys from a
//! script, a JWKS server on loopback (for the tests of the HTTP key fetch itself), and a running
//! cognito-authz. Keys are generated per run; nothing secret is stored.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cognito_authz::cognito::{Answer, CognitoError, MfaSource, MfaState, User};
use cognito_authz::config::{Config, StoreSpec};
use cognito_authz::dev::signing_key::SigningKey;
use cognito_authz::envoy::pb::auth::attribute_context::{HttpRequest, Request as AttrRequest};
use cognito_authz::envoy::pb::auth::check_response::HttpResponse;
use cognito_authz::envoy::pb::auth::{AttributeContext, CheckRequest, CheckResponse};
use cognito_authz::envoy::pb::core::HeaderValueOption;
use cognito_authz::keys::key_store::KeyStore;
use cognito_authz::keys::source::FetchError;
use cognito_authz::server;
use cognito_authz::testkit::scripted_keys::{self, ScriptedKeys};
use prost::Message;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub(crate) const REGION: &str = "eu-west-1";
pub(crate) const POOL: &str = "eu-west-1_TestPool";
pub(crate) const CLIENT: &str = "client-one";
pub(crate) const SUB: &str = "6b8f7a10-3c2d-4e5f-8a9b-0c1d2e3f4a5b";

pub(crate) fn issuer() -> String {
    format!("https://cognito-idp.{REGION}.amazonaws.com/{POOL}")
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims of a valid Cognito access token, as Cognito issues them.
pub(crate) fn access_claims() -> Value {
    let now = now();
    json!({
        "sub": SUB, "iss": issuer(), "client_id": CLIENT, "origin_jti": "5c0b4a43-1f0e-4d2c-9b7a-6e5d4c3b2a19",
        "event_id": "0f6e2d1c-7b8a-4c9d-8e0f-1a2b3c4d5e6f", "token_use": "access",
        "scope": "aws.cognito.signin.user.admin", "auth_time": now - 5, "iat": now - 5, "exp": now + 3600,
        "jti": "9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a", "username": "alice", "cognito:groups": ["admin", "team a,b"]
    })
}

/// A key with its `kid`, generated once per process per name (RSA generation is slow in debug).
pub(crate) fn key(kid: &str) -> Arc<SigningKey> {
    static KEYS: Mutex<Vec<(String, Arc<SigningKey>)>> = Mutex::new(Vec::new());
    let mut keys = KEYS.lock().unwrap();
    if let Some((_, k)) = keys.iter().find(|(name, _)| name == kid) {
        return k.clone();
    }
    let k = Arc::new(SigningKey::generate(kid).expect("rsa key generation"));
    keys.push((kid.to_owned(), k.clone()));
    k
}

pub(crate) fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// A Check for `GET path` with the given headers.
pub(crate) fn check_request(path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: path.into(),
                    headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

pub(crate) fn bearer(token: &str) -> CheckRequest {
    check_request("/api/items", &[("authorization", &format!("Bearer {token}"))])
}

/// A decision as Envoy reads it: the response is encoded and decoded first, so a test reads the
/// very bytes Envoy would. The one reader of `CheckResponse`s for every service test.
#[derive(Debug)]
pub(crate) struct Decided {
    pub(crate) code: i32,
    pub(crate) http_status: Option<i32>,
    pub(crate) set: Vec<(String, String)>,
    pub(crate) removed: Vec<String>,
    pub(crate) body: String,
    pub(crate) metadata: Option<prost_types::Struct>,
}

impl Decided {
    /// The value of a header the answer sets.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.set.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A denial's JSON body.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Reads `response` as Envoy would (through its encoding).
pub(crate) fn decode(response: &CheckResponse) -> Decided {
    let wire = response.encode_to_vec();
    let response = CheckResponse::decode(wire.as_slice()).expect("a decodable CheckResponse");
    let code = response.status.as_ref().map(|s| s.code).expect("status is always set");
    let pairs = |h: &[HeaderValueOption]| -> Vec<(String, String)> {
        h.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect()
    };
    match response.http_response.expect("an http response is always set") {
        HttpResponse::OkResponse(ok) => Decided {
            code,
            http_status: None,
            set: pairs(&ok.headers),
            removed: ok.headers_to_remove,
            body: String::new(),
            metadata: response.dynamic_metadata,
        },
        HttpResponse::DeniedResponse(denied) => Decided {
            code,
            http_status: denied.status.map(|s| s.code),
            set: pairs(&denied.headers),
            removed: vec![],
            body: denied.body,
            metadata: response.dynamic_metadata,
        },
        HttpResponse::ErrorResponse(_) => panic!("this service never answers an error_response"),
    }
}

/// `request` with its method replaced.
pub(crate) fn with_method(mut request: CheckRequest, method: &str) -> CheckRequest {
    request.attributes.as_mut().unwrap().request.as_mut().unwrap().http.as_mut().unwrap().method = method.into();
    request
}

/// `request` on a route with these context extensions (Envoy's per-route settings).
pub(crate) fn in_route(mut request: CheckRequest, route: &[(&str, &str)]) -> CheckRequest {
    let attributes = request.attributes.as_mut().unwrap();
    attributes.context_extensions = route.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    request
}

/// How the fake JWKS endpoint answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Serve,
    Fail,
    Slow(Duration),
}

/// A JWKS endpoint on loopback, for the tests of the HTTP key fetch itself (status, redirects,
/// slowness, readiness over a real fetch); how it answers can change while it runs.
#[derive(Clone)]
pub(crate) struct JwksServer {
    pub addr: SocketAddr,
    inner: Arc<JwksState>,
}

struct JwksState {
    document: Value,
    mode: Mutex<Mode>,
    hits: AtomicU64,
}

impl JwksServer {
    pub(crate) async fn start(document: Value) -> JwksServer {
        let inner = Arc::new(JwksState { document, mode: Mutex::new(Mode::Serve), hits: AtomicU64::new(0) });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let port = addr.port();
        let app = axum::Router::new()
            .route("/pool/.well-known/jwks.json", get(serve_jwks))
            // Redirects to the same document: on this origin, and to another host name for it.
            .route("/moved-here", get(|| async { axum::response::Redirect::temporary("/pool/.well-known/jwks.json") }))
            .route(
                "/moved-away",
                get(move || async move {
                    axum::response::Redirect::temporary(&format!("http://localhost:{port}/pool/.well-known/jwks.json"))
                }),
            )
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        JwksServer { addr, inner }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/pool/.well-known/jwks.json", self.addr)
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    pub(crate) fn hits(&self) -> u64 {
        self.inner.hits.load(Ordering::SeqCst)
    }
}

async fn serve_jwks(State(state): State<Arc<JwksState>>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let mode = *state.mode.lock().unwrap();
    match mode {
        Mode::Fail => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            axum::Json(state.document.clone()).into_response()
        }
        Mode::Serve => axum::Json(state.document.clone()).into_response(),
    }
}

/// A configuration for the test pool reading keys from `jwks_url`.
pub(crate) fn config(jwks_url: &str) -> Config {
    let mut config =
        Config::with_defaults(&issuer(), jwks_url.parse().unwrap(), vec![CLIENT.to_owned(), "client-two".to_owned()]);
    config.grpc_listen = "127.0.0.1:0".parse().unwrap();
    config.http_listen = "127.0.0.1:0".parse().unwrap();
    config.admin_listen = "127.0.0.1:0".parse().unwrap();
    config.revocation_store = StoreSpec::File(temp_dir("revocations").join("revocations.jsonl"));
    config
}

/// An in-process MFA source: answers per username (alice is enrolled unless told otherwise),
/// counts lookups, and can be slowed down.
#[derive(Default)]
pub(crate) struct FakeMfa {
    answers: Mutex<HashMap<String, Result<MfaState, CognitoError>>>,
    lookups: AtomicU64,
    delay: Mutex<Duration>,
    admin_scope: bool,
}

impl FakeMfa {
    pub(crate) fn new() -> Arc<FakeMfa> {
        let fake = FakeMfa::default();
        fake.set("alice", Ok(MfaState::Enrolled));
        Arc::new(fake)
    }

    /// Like the `get-user` source: the caller's token needs the admin scope.
    pub(crate) fn needing_admin_scope() -> Arc<FakeMfa> {
        let fake = FakeMfa { admin_scope: true, ..FakeMfa::default() };
        fake.set("alice", Ok(MfaState::Enrolled));
        Arc::new(fake)
    }

    pub(crate) fn set(&self, user: &str, answer: Result<MfaState, CognitoError>) {
        self.answers.lock().unwrap().insert(user.to_owned(), answer);
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    pub(crate) fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl MfaSource for FakeMfa {
    fn mfa_state<'a>(&'a self, user: User<'a>) -> Answer<'a> {
        Box::pin(async move {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let delay = *self.delay.lock().unwrap();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            self.answers.lock().unwrap().get(user.username).copied().unwrap_or(Ok(MfaState::NotEnrolled))
        })
    }

    fn needs_admin_scope(&self) -> bool {
        self.admin_scope
    }
}

/// Dummy AWS credentials for the SDK client against a fake Cognito, given to the client itself so no
/// test writes the process environment (which other threads read).
pub(crate) fn test_credentials() -> cognito_authz::aws::Credentials {
    cognito_authz::aws::Credentials::new("testing", "testing", None, None, "tests")
}

/// Builds the service parts for `config` with a fake MFA source, fetching keys over HTTP from its
/// JWKS URL (nothing is fetched until asked).
pub(crate) async fn parts(config: &Config, mfa: Arc<FakeMfa>) -> server::Parts {
    let sources = config.all_issuers().iter().map(|_| mfa.clone() as Arc<dyn MfaSource>).collect();
    server::build_with(config, sources, None).await.expect("parts build")
}

/// The JWKS URL of a configuration whose keys come from a script: never fetched (`.invalid` names
/// no host).
pub(crate) const NO_JWKS: &str = "https://keys.invalid/jwks.json";

/// A key script serving the keys named `kids` (see [`key`]).
pub(crate) fn serving(kids: &[&str]) -> Arc<ScriptedKeys> {
    let keys: Vec<Arc<SigningKey>> = kids.iter().map(|kid| key(kid)).collect();
    Arc::new(ScriptedKeys::serving(&keys.iter().map(AsRef::as_ref).collect::<Vec<_>>()))
}

/// What a key fetch gets from a JWKS that answers 503.
pub(crate) fn fetch_fails() -> scripted_keys::Answer {
    scripted_keys::Answer::Fail(FetchError::Status(503))
}

/// The service parts for `config` with keys from scripts instead of the network (so a test may
/// pause the clock: nothing waits on a socket): one script and MFA source per issuer, in order,
/// each store made as `serve` makes it. Nothing is fetched until asked.
pub(crate) async fn scripted_issuers(
    config: &Config,
    issuers: Vec<(Arc<ScriptedKeys>, Arc<FakeMfa>)>,
) -> server::Parts {
    let (stores, mfa_sources): (Vec<KeyStore>, Vec<Arc<dyn MfaSource>>) = config
        .all_issuers()
        .iter()
        .zip(issuers)
        .map(|(issuer, (keys, mfa))| (server::key_store_over(issuer, keys, &config.keys), mfa as Arc<dyn MfaSource>))
        .unzip();
    let (revocations, _) = server::open_revocations(config).await.expect("revocations open");
    server::assemble(config, stores, mfa_sources, revocations)
}

/// The service parts for `config`'s one issuer with keys from `keys`, loaded.
pub(crate) async fn scripted_parts(config: &Config, mfa: Arc<FakeMfa>, keys: &Arc<ScriptedKeys>) -> server::Parts {
    let parts = scripted_issuers(config, vec![(keys.clone(), mfa)]).await;
    assert!(parts.keys.refresh().await, "scripted keys load");
    parts
}

/// A fresh directory for one test's state.
pub(crate) fn temp_dir(name: &str) -> std::path::PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("cognito-authz-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
