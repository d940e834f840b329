//! Micro-benchmarks of the decision path, in-process (no sockets except where named):
//! token verification, the whole `Check` handler for allow / 401 / 403, the MFA gate warm and cold,
//! policy matching, a decision with five issuers configured against one, and one warm `Check`
//! through the real gRPC serving path beside a trivial server's (loopback sockets).
//!
//! Run: `cargo bench --bench decision` (add `-- --quick` for a short run). Each benchmark first
//! asserts the outcome it claims to time; `tests/run-all.sh` runs every one once (`-- --test`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cognito_authz::authz::policy::{Policy, RouteContext};
use cognito_authz::aws::SdkCognito;
use cognito_authz::cognito::{Answer, MfaLookup, MfaSource, MfaState, User};
use cognito_authz::config::Config;
use cognito_authz::dev::signing_key::SigningKey;
use cognito_authz::envoy::ext_authz::ExtAuthz;
use cognito_authz::envoy::grpc::AuthorizationService;
use cognito_authz::envoy::pb::auth::attribute_context::{HttpRequest, Request as AttrRequest};
use cognito_authz::envoy::pb::auth::authorization_client::AuthorizationClient;
use cognito_authz::envoy::pb::auth::authorization_server::{Authorization, AuthorizationServer};
use cognito_authz::envoy::pb::auth::{AttributeContext, CheckRequest, CheckResponse};
use cognito_authz::keys::key_store::KeyStore;
use cognito_authz::server;
use cognito_authz::testkit::scripted_keys::ScriptedKeys;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Bench";
const CLIENT: &str = "bench-client";

/// Every user is enrolled; answers at once.
struct Enrolled;

impl MfaSource for Enrolled {
    fn mfa_state<'a>(&'a self, _: User<'a>) -> Answer<'a> {
        Box::pin(async { Ok(MfaState::Enrolled) })
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token(key: &SigningKey, sub: &str) -> String {
    key.sign(&json!({
        "sub": sub, "iss": ISSUER, "client_id": CLIENT, "origin_jti": "5c0b4a43-1f0e-4d2c-9b7a-6e5d4c3b2a19",
        "event_id": "0f6e2d1c-7b8a-4c9d-8e0f-1a2b3c4d5e6f", "token_use": "access",
        "scope": "aws.cognito.signin.user.admin", "auth_time": now(), "iat": now(), "exp": now() + 3600,
        "jti": "9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a", "username": "alice", "cognito:groups": ["admin"]
    }))
}

fn check(token: &str, access: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/api/items?page=2".into(),
                    headers: [
                        ("authorization".to_owned(), format!("Bearer {token}")),
                        (":authority".to_owned(), "api.example.com".to_owned()),
                        ("user-agent".to_owned(), "bench/1.0".to_owned()),
                        ("accept".to_owned(), "application/json".to_owned()),
                    ]
                    .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: [("access".to_owned(), access.to_owned())].into(),
            ..Default::default()
        }),
    }
}

fn service(
    rt: &tokio::runtime::Runtime,
    key: &SigningKey,
    mfa: Arc<dyn MfaSource>,
    settings: impl FnOnce(ExtAuthz) -> ExtAuthz,
) -> ExtAuthz {
    settings(service_with_cache(rt, key, mfa, 100_000))
}

fn service_with_cache(rt: &tokio::runtime::Runtime, key: &SigningKey, mfa: Arc<dyn MfaSource>, cache: u64) -> ExtAuthz {
    let mut config = Config::with_defaults(ISSUER, "https://unused.invalid/jwks".parse().unwrap(), vec![CLIENT.into()]);
    config.token_cache_size = cache;
    let keys = KeyStore::new(Arc::new(ScriptedKeys::serving(&[key])), config.keys.clone());
    assert!(rt.block_on(keys.refresh()), "static keys load");
    let dir = std::env::temp_dir().join(format!("cognito-authz-bench-{}", std::process::id()));
    let store = cognito_authz::revocation::file::FileStore::open(&dir.join("revocations.jsonl")).unwrap();
    let revocations = cognito_authz::revocation::Revocations::new(Arc::new(store), false, None);
    let parts = server::assemble(&config, vec![keys], vec![mfa], revocations);
    ExtAuthz::new(parts.authorizer, false, parts.metrics)
}

/// The same service with five Cognito issuers configured, the token's own last (the issuer is
/// found by comparing `iss` with each in turn), each with its own static key set.
fn five_issuers(rt: &tokio::runtime::Runtime, key: &SigningKey, cache: u64) -> ExtAuthz {
    use cognito_authz::config::issuer::{IssuerTable, validate};
    let mut config = Config::with_defaults(ISSUER, "https://unused.invalid/jwks".parse().unwrap(), vec![CLIENT.into()]);
    config.token_cache_size = cache;
    let pools = ["eu-west-1_One", "eu-west-1_Two", "eu-west-1_Three", "eu-west-1_Four", "eu-west-1_Bench"];
    let tables: Vec<IssuerTable> = pools
        .iter()
        .enumerate()
        .map(|(n, pool)| IssuerTable {
            name: format!("pool-{n}"),
            region: Some("eu-west-1".into()),
            user_pool_id: Some((*pool).into()),
            client_id: vec![CLIENT.into()],
            ..IssuerTable::default()
        })
        .collect();
    config.issuers = validate(&tables).expect("five valid issuers");
    let stores: Vec<KeyStore> = pools
        .iter()
        .map(|_| {
            let keys = KeyStore::new(Arc::new(ScriptedKeys::serving(&[key])), config.keys.clone());
            assert!(rt.block_on(keys.refresh()), "static keys load");
            keys
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("cognito-authz-bench-5-{}", std::process::id()));
    let store = cognito_authz::revocation::file::FileStore::open(&dir.join("revocations.jsonl")).unwrap();
    let revocations = cognito_authz::revocation::Revocations::new(Arc::new(store), false, None);
    let sources: Vec<Arc<dyn MfaSource>> = pools.iter().map(|_| Arc::new(Enrolled) as Arc<dyn MfaSource>).collect();
    let parts = server::assemble(&config, stores, sources, revocations);
    ExtAuthz::new(parts.authorizer, false, parts.metrics)
}

/// Decides `check` once and asserts its gRPC code, so a benchmark times the outcome its name claims
/// (a refusal timed as an "allow" would look fast and mean nothing).
fn expect(rt: &tokio::runtime::Runtime, ext: &ExtAuthz, check: &CheckRequest, now: u64, code: i32, what: &str) {
    let decided = rt.block_on(ext.decide(check, now)).status.expect("a status").code;
    assert_eq!(decided, code, "{what}: expected gRPC code {code}");
}

const OK: i32 = cognito_authz::authz::error::code::OK;
const UNAUTHENTICATED: i32 = cognito_authz::authz::error::code::UNAUTHENTICATED;

fn issuers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key = SigningKey::generate("bench-kid").unwrap();
    let valid = token(&key, "3f1c7a52-7d7c-4f0e-9a3f-2c5e8b1d9e01");
    let t = now();
    let allow = check(&valid, "authenticated");
    let (one, five) = (service(&rt, &key, Arc::new(Enrolled), |e| e), five_issuers(&rt, &key, 100_000));
    expect(&rt, &one, &allow, t, OK, "one issuer: an allow");
    expect(&rt, &five, &allow, t, OK, "five issuers: an allow");
    c.bench_function("issuers/allow, token cache hit: one issuer", |b| b.to_async(&rt).iter(|| one.decide(&allow, t)));
    c.bench_function("issuers/allow, token cache hit: five issuers", |b| {
        b.to_async(&rt).iter(|| five.decide(&allow, t))
    });
    let (one, five) = (service_with_cache(&rt, &key, Arc::new(Enrolled), 0), five_issuers(&rt, &key, 0));
    expect(&rt, &one, &allow, t, OK, "one issuer, cold: an allow");
    expect(&rt, &five, &allow, t, OK, "five issuers, cold: an allow");
    c.bench_function("issuers/allow, cold (RS256 every time): one issuer", |b| {
        b.to_async(&rt).iter(|| one.decide(&allow, t))
    });
    c.bench_function("issuers/allow, cold (RS256 every time): five issuers", |b| {
        b.to_async(&rt).iter(|| five.decide(&allow, t))
    });
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key = SigningKey::generate("bench-kid").unwrap();
    let ext = service(&rt, &key, Arc::new(Enrolled), |e| e);
    let valid = token(&key, "3f1c7a52-7d7c-4f0e-9a3f-2c5e8b1d9e01");
    let t = now();

    let allow = check(&valid, "authenticated");
    expect(&rt, &ext, &allow, t, OK, "allow authenticated");
    c.bench_function("check/allow authenticated (token cache hit)", |b| b.to_async(&rt).iter(|| ext.answer(&allow, t)));
    let mfa = check(&valid, "mfa");
    expect(&rt, &ext, &mfa, t, OK, "allow mfa");
    c.bench_function("check/allow mfa, warm MFA cache", |b| b.to_async(&rt).iter(|| ext.answer(&mfa, t)));
    // Cold: a service whose token cache holds nothing, so every check verifies RS256.
    let cold = service_with_cache(&rt, &key, Arc::new(Enrolled), 0);
    expect(&rt, &cold, &allow, t, OK, "allow, cold");
    c.bench_function("check/allow authenticated, cold (RS256 verify every time)", |b| {
        b.to_async(&rt).iter(|| cold.answer(&allow, t))
    });
    // What the server sends: the decision and its encoding, as the gRPC codec writes it.
    c.bench_function("wire/allow authenticated (token cache hit), encoded", |b| {
        b.to_async(&rt).iter(|| async { wire(&ext, &allow, t).await })
    });
    c.bench_function("wire/allow mfa, warm MFA cache, encoded", |b| {
        b.to_async(&rt).iter(|| async { wire(&ext, &mfa, t).await })
    });
    c.bench_function("wire/allow authenticated, cold (RS256 verify every time), encoded", |b| {
        b.to_async(&rt).iter(|| async { wire(&cold, &allow, t).await })
    });
    // Each answer setting alone, on a cache hit.
    let metadata = service(&rt, &key, Arc::new(Enrolled), |e| e.claims_metadata(true));
    expect(&rt, &metadata, &allow, t, OK, "allow with claims metadata");
    c.bench_function("wire/allow authenticated (token cache hit), encoded, --emit-claims-metadata", |b| {
        b.to_async(&rt).iter(|| async { wire(&metadata, &allow, t).await })
    });
    let strips = service(&rt, &key, Arc::new(Enrolled), |e| e.envoy_strips_identity_headers(true));
    expect(&rt, &strips, &allow, t, OK, "allow, envoy strips identity headers");
    c.bench_function("wire/allow authenticated (token cache hit), encoded, --envoy-strips-identity-headers", |b| {
        b.to_async(&rt).iter(|| async { wire(&strips, &allow, t).await })
    });
    let garbage = check("eyJhbGciOiJub25lIn0.e30.", "authenticated");
    expect(&rt, &ext, &garbage, t, UNAUTHENTICATED, "401 malformed");
    c.bench_function("check/401 malformed token", |b| b.to_async(&rt).iter(|| ext.answer(&garbage, t)));
    // Flip one character in the middle of the signature: well-formed, but wrong.
    let mut forged = valid.clone().into_bytes();
    let i = forged.len() - 40;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let bad_sig = check(std::str::from_utf8(&forged).unwrap(), "authenticated");
    expect(&rt, &ext, &bad_sig, t, UNAUTHENTICATED, "401 bad signature");
    c.bench_function("check/401 bad signature", |b| b.to_async(&rt).iter(|| ext.answer(&bad_sig, t)));

    let policy = Policy::load(std::path::Path::new("envoy/policy.toml")).unwrap();
    let access = policy.requirement("GET", "/api/items/42?x=1", RouteContext::default()).unwrap().access;
    assert_eq!(access, cognito_authz::authz::policy::Access::Mfa, "the example path falls through to mfa");
    c.bench_function("policy/match example policy (falls through to mfa)", |b| {
        b.iter(|| policy.requirement("GET", "/api/items/42?x=1", RouteContext::default()).unwrap().access)
    });

    // Cold MFA: the real AWS SDK client over loopback to a fake Cognito answering AdminGetUser.
    let endpoint = rt.block_on(fake_cognito());
    let sdk = rt.block_on(SdkCognito::new(
        "eu-west-1",
        Some(&endpoint),
        "eu-west-1_Bench",
        MfaLookup::AdminGetUser,
        (Duration::from_millis(400), Duration::from_secs(1)),
        Some(cognito_authz::aws::Credentials::new("bench", "bench", None, None, "bench")),
    ));
    let sub = uuid::Uuid::nil();
    let looked_up = rt.block_on(sdk.mfa_state(User { username: "alice", sub: &sub, access_token: "" }));
    assert_eq!(looked_up, Ok(MfaState::Enrolled), "the fake Cognito answers enrolled");
    c.bench_function("mfa/cold lookup: AdminGetUser via the AWS SDK over loopback", |b| {
        b.to_async(&rt).iter(|| sdk.mfa_state(User { username: "alice", sub: &sub, access_token: "" }))
    });
}

/// One Check as the server answers it: decided, then encoded (as `grpc::AnswerCodec` does).
async fn wire(ext: &ExtAuthz, check: &CheckRequest, now: u64) -> Vec<u8> {
    let answer = ext.answer(check, now).await;
    let mut buf = Vec::with_capacity(answer.encoded_len());
    answer.encode(&mut buf);
    buf
}

async fn fake_cognito() -> String {
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(|| async {
            (
                [("content-type", "application/x-amz-json-1.1")],
                r#"{"Username":"alice","Enabled":true,"UserStatus":"CONFIRMED","UserAttributes":[{"Name":"sub","Value":"00000000-0000-0000-0000-000000000000"}],"UserMFASettingList":["SOFTWARE_TOKEN_MFA"]}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// The floor of any ext_authz server: answers OK without looking at the request.
struct AlwaysOk;

#[tonic::async_trait]
impl Authorization for AlwaysOk {
    async fn check(&self, _: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(CheckResponse { status: Some(Default::default()), ..Default::default() }))
    }
}

/// Serves `service` on a loopback port of `rt`; a client connected to it.
fn serve<S>(rt: &tokio::runtime::Runtime, service: S) -> AuthorizationClient<tonic::transport::Channel>
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
        AuthorizationClient::connect(format!("http://{addr}")).await.unwrap()
    })
}

/// One warm Check through the real gRPC serving path, in-process: tonic's server with the
/// service's own `AuthorizationService` on a loopback socket, asked by a tonic client, beside the
/// same round trip to a server that answers OK without looking. Per-request work added anywhere on
/// the serving path (not only in the decision) shows up as the distance between the two.
fn served(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key = SigningKey::generate("bench-kid").unwrap();
    let allow = check(&token(&key, "3f1c7a52-7d7c-4f0e-9a3f-2c5e8b1d9e01"), "mfa");
    let ext = service(&rt, &key, Arc::new(Enrolled), |e| e);
    let authz = serve(&rt, AuthorizationService::new(ext));
    let trivial = serve(&rt, AuthorizationServer::new(AlwaysOk));
    for (name, client) in [("cognito-authz", &authz), ("trivial OK server", &trivial)] {
        let answer = rt.block_on(client.clone().check(allow.clone())).unwrap().into_inner();
        assert_eq!(answer.status.expect("a status").code, OK, "{name}: an allow over gRPC");
        c.bench_function(&format!("grpc/one warm Check over loopback: {name}"), |b| {
            b.to_async(&rt).iter(|| {
                let (mut client, request) = (client.clone(), allow.clone());
                async move { client.check(request).await.unwrap() }
            })
        });
    }
}

criterion_group!(decision, benches, issuers, served);
criterion_main!(decision);
