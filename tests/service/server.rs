//! The real server on 127.0.0.1:0, driven by a tonic client: health, key rotation, the unknown-`kid`
//! cooldown, failing and slow key fetches, and graceful shutdown. The keys come from a script
//! (`ScriptedKeys`), except where the HTTP fetch is the subject: readiness over a JWKS on loopback,
//! a JWKS down at start or slow to answer, and redirects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use cognito_authz::authz::error::code;
use cognito_authz::config::Config;
use cognito_authz::envoy::pb::auth::authorization_client::AuthorizationClient;
use cognito_authz::envoy::pb::auth::check_response::HttpResponse;
use cognito_authz::envoy::pb::auth::{CheckRequest, CheckResponse, OkHttpResponse};
use cognito_authz::mfa::MfaGate;
use cognito_authz::revocation::Entry;
use cognito_authz::revocation::Revocations;
use cognito_authz::server::{self, AUTHZ_SERVICE};
use cognito_authz::testkit::scripted_keys::{self, Answer, ScriptedKeys};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

struct Running {
    authz: AuthorizationClient<Channel>,
    mfa: MfaGate,
    revocations: Revocations,
    health: HealthClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(config: Config, keys: &Arc<ScriptedKeys>) -> Running {
    start_with(config, keys, FakeMfa::new()).await
}

/// Serves with keys from `keys`, which the server loads at start-up as it would from a JWKS.
async fn start_with(config: Config, keys: &Arc<ScriptedKeys>, mfa: Arc<FakeMfa>) -> Running {
    let parts = scripted_issuers(&config, vec![(keys.clone(), mfa)]).await;
    run(config, parts).await
}

/// Serves with keys fetched from `config`'s JWKS URL.
async fn start_over_http(config: Config) -> Running {
    let parts = crate::common::parts(&config, FakeMfa::new()).await;
    run(config, parts).await
}

/// Serves `parts` on loopback until stopped.
async fn run(config: Config, parts: server::Parts) -> Running {
    let listeners = server::Listeners {
        grpc: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        authz_http: None,
    };
    let url = format!("http://{}", listeners.grpc.local_addr().unwrap());
    let (mfa, revocations) = (parts.mfa.clone(), parts.revocations.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        server::serve(&config, parts, listeners, axum::Router::new(), async {
            let _ = stopped.await;
        })
        .await
    });
    let channel = Channel::from_shared(url).unwrap().connect().await.expect("server accepts connections");
    Running {
        authz: AuthorizationClient::new(channel.clone()),
        mfa,
        revocations,
        health: HealthClient::new(channel),
        stop: Some(stop),
        done,
    }
}

impl Running {
    async fn code(&self, request: CheckRequest) -> i32 {
        self.check(request).await.status.expect("status is set").code
    }

    /// The whole answer, as a gRPC client (Envoy) decodes it.
    async fn check(&self, request: CheckRequest) -> CheckResponse {
        self.authz.clone().check(request).await.expect("a denial is an answer, not an RPC error").into_inner()
    }

    async fn health(&self, service: &str) -> ServingStatus {
        let request = HealthCheckRequest { service: service.to_owned() };
        let status = self.health.clone().check(request).await.expect("health answers").into_inner().status;
        ServingStatus::try_from(status).unwrap()
    }

    async fn wait_serving(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.health(AUTHZ_SERVICE).await == ServingStatus::Serving {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

fn token_for(kid: &str) -> String {
    key(kid).sign(&access_claims())
}

#[tokio::test]
async fn health_is_serving_once_keys_load_and_a_valid_token_passes() {
    let jwks = JwksServer::start(crate::common::jwks(&[&key("kid-1")])).await;
    let server = start_over_http(crate::common::config(&jwks.url())).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await, "SERVING after the first load");
    assert_eq!(server.health("").await, ServingStatus::Serving);
    assert_eq!(server.code(bearer(&token_for("kid-1"))).await, code::OK);
    assert_eq!(server.code(bearer("garbage")).await, code::UNAUTHENTICATED);
}

#[tokio::test]
async fn a_rotated_key_is_accepted_at_once() {
    let keys = serving(&["kid-1"]);
    let server = start(crate::common::config(NO_JWKS), &keys).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await);
    let before = keys.fetches();
    keys.rotate(&[&key("kid-1"), &key("kid-2")]);
    assert_eq!(server.code(bearer(&token_for("kid-2"))).await, code::OK, "new kid accepted on first sight");
    assert_eq!(keys.fetches(), before + 1, "exactly one fetch for the rotation");
    assert_eq!(server.code(bearer(&token_for("kid-1"))).await, code::OK);
}

#[tokio::test]
async fn random_kids_cost_one_fetch_per_cooldown() {
    let keys = serving(&["kid-1"]);
    let server = start(crate::common::config(NO_JWKS), &keys).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await);
    let before = keys.fetches();
    let signer = key("kid-1");
    let claims = access_claims().to_string();
    let mut codes = Vec::new();
    for batch in 0..20 {
        let mut calls = Vec::new();
        for i in 0..50 {
            let token = signer.sign_raw(&format!(r#"{{"alg":"RS256","kid":"random-{batch}-{i}"}}"#), &claims);
            let mut client = server.authz.clone();
            calls.push(tokio::spawn(async move {
                client.check(bearer(&token)).await.unwrap().into_inner().status.unwrap().code
            }));
        }
        for call in calls {
            codes.push(call.await.unwrap());
        }
    }
    assert_eq!(codes.len(), 1000);
    assert!(codes.iter().all(|c| *c == code::UNAUTHENTICATED), "every unknown kid is a 401");
    assert_eq!(keys.fetches() - before, 1, "1,000 unknown kids cost one fetch");
    assert_eq!(server.code(bearer(&token_for("kid-1"))).await, code::OK, "known keys keep working");
}

#[tokio::test]
async fn a_failing_fetch_gives_503_for_unknown_kids_while_known_keys_work() {
    let keys = serving(&["kid-1"]);
    let server = start(crate::common::config(NO_JWKS), &keys).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await);
    keys.answer(fetch_fails());
    assert_eq!(server.code(bearer(&token_for("kid-2"))).await, code::UNAVAILABLE);
    assert_eq!(server.code(bearer(&token_for("kid-1"))).await, code::OK);
    assert_eq!(server.health(AUTHZ_SERVICE).await, ServingStatus::Serving, "old keys still decide");
}

#[tokio::test]
async fn jwks_down_at_start_means_not_serving_and_503_until_it_returns() {
    let jwks = JwksServer::start(crate::common::jwks(&[&key("kid-1")])).await;
    jwks.set_mode(Mode::Fail);
    let server = start_over_http(crate::common::config(&jwks.url())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.health(AUTHZ_SERVICE).await, ServingStatus::NotServing);
    assert_eq!(server.health("").await, ServingStatus::NotServing);
    assert_eq!(server.code(bearer(&token_for("kid-1"))).await, code::UNAVAILABLE);
    jwks.set_mode(Mode::Serve);
    assert!(server.wait_serving(Duration::from_secs(10)).await, "SERVING once the JWKS is back");
    assert_eq!(server.code(bearer(&token_for("kid-1"))).await, code::OK);
}

#[tokio::test]
async fn a_slow_fetch_times_out_with_503_and_requests_share_it() {
    let jwks = JwksServer::start(crate::common::jwks(&[&key("kid-1")])).await;
    let mut config = crate::common::config(&jwks.url());
    config.keys.fetch_wait = Duration::from_millis(300);
    let server = start_over_http(config).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await);
    jwks.set_mode(Mode::Slow(Duration::from_secs(2)));
    let before = jwks.hits();
    let mut calls = Vec::new();
    for _ in 0..20 {
        let mut client = server.authz.clone();
        let token = token_for("kid-2");
        calls.push(tokio::spawn(async move {
            client.check(bearer(&token)).await.unwrap().into_inner().status.unwrap().code
        }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), code::UNAVAILABLE);
    }
    // When it answers (at the wait deadline, not the fetch's) is asserted on the paused clock:
    // key_store::tests::a_hanging_fetch_answers_503_at_the_wait_deadline_and_waiters_share_it.
    assert_eq!(jwks.hits() - before, 1, "waiting requests share one fetch");
    assert_eq!(server.code(bearer(&token_for("kid-1"))).await, code::OK);
}

#[tokio::test]
async fn shutdown_turns_health_off_and_lets_in_flight_checks_finish() {
    let keys = serving(&["kid-1"]);
    let mut server = start(crate::common::config(NO_JWKS), &keys).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await);
    // A check held up by a slow key fetch is in flight when the shutdown begins.
    keys.answer(Answer::Slow(Duration::from_millis(600), scripted_keys::jwks(&[&key("kid-1"), &key("kid-2")])));
    let mut client = server.authz.clone();
    let in_flight = tokio::spawn(async move { client.check(bearer(&token_for("kid-2"))).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    // A watch opened before the shutdown sees health turn NOT_SERVING (a new call might instead
    // meet a server that has stopped taking streams, which would prove nothing).
    let mut health = server.health.clone();
    let mut watch = health.watch(HealthCheckRequest { service: AUTHZ_SERVICE.into() }).await.unwrap().into_inner();
    let serving = watch.message().await.unwrap().expect("the current status");
    assert_eq!(ServingStatus::try_from(serving.status).unwrap(), ServingStatus::Serving);
    server.stop.take().unwrap().send(()).unwrap();
    let update = tokio::time::timeout(Duration::from_secs(2), watch.message()).await.expect("an update in time");
    let update = update.unwrap().expect("the status after the shutdown signal");
    assert_eq!(ServingStatus::try_from(update.status).unwrap(), ServingStatus::NotServing);
    drop(watch);
    let answered = in_flight.await.unwrap().expect("the in-flight check completes");
    assert_eq!(answered.into_inner().status.unwrap().code, code::OK);
    tokio::time::timeout(Duration::from_secs(5), server.done).await.expect("server stops").unwrap().unwrap();
}

#[tokio::test]
async fn a_key_fetch_follows_redirects_only_within_its_origin() {
    let jwks = JwksServer::start(crate::common::jwks(&[&key("kid-1")])).await;
    let within =
        crate::common::parts(&crate::common::config(&format!("http://{}/moved-here", jwks.addr)), FakeMfa::new()).await;
    assert!(within.keys.refresh().await, "a redirect on the same origin is followed");
    let before = jwks.hits();
    let away =
        crate::common::parts(&crate::common::config(&format!("http://{}/moved-away", jwks.addr)), FakeMfa::new()).await;
    assert!(!away.keys.refresh().await, "a redirect to another host is not followed");
    assert_eq!(jwks.hits(), before, "the document was never fetched from the other host");
}

fn ok(response: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(response.status.as_ref().map(|s| s.code), Some(code::OK), "an allow");
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("not an ok_response: {other:?}"),
    }
}

fn set_header<'a>(ok: &'a OkHttpResponse, name: &str) -> Option<&'a str> {
    ok.headers.iter().filter_map(|h| h.header.as_ref()).find(|h| h.key == name).map(|h| h.value.as_str())
}

fn with_access(request: CheckRequest, access: &str) -> CheckRequest {
    in_route(request, &[("access", access)])
}

#[tokio::test]
async fn claims_go_to_dynamic_metadata_only_with_emit_claims_metadata() {
    let keys = serving(&["kid-1"]);
    let token = token_for("kid-1");
    let quiet = start(crate::common::config(NO_JWKS), &keys).await;
    assert!(quiet.wait_serving(Duration::from_secs(5)).await);
    for round in ["verified", "from the token cache"] {
        let answer = quiet.check(bearer(&token)).await;
        assert_eq!(set_header(ok(&answer), "x-user-id"), Some(SUB), "{round}");
        assert_eq!(answer.dynamic_metadata, None, "no metadata by default ({round})");
    }
    let mut config = crate::common::config(NO_JWKS);
    config.emit_claims_metadata = true;
    let emitting = start(config, &keys).await;
    assert!(emitting.wait_serving(Duration::from_secs(5)).await);
    for round in ["verified", "from the token cache"] {
        let answer = emitting.check(bearer(&token)).await;
        assert_eq!(set_header(ok(&answer), "x-user-id"), Some(SUB), "{round}");
        let metadata = answer.dynamic_metadata.expect("claims as dynamic metadata with the setting");
        let text = |name: &str| match metadata.fields.get(name).and_then(|v| v.kind.as_ref()) {
            Some(prost_types::value::Kind::StringValue(s)) => s.clone(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!((text("sub"), text("username"), text("client_id")), (SUB.into(), "alice".into(), CLIENT.into()));
    }
}

#[tokio::test]
async fn with_envoy_stripping_identity_headers_an_allow_removes_only_those_the_request_carried() {
    let keys = serving(&["kid-1"]);
    let token = token_for("kid-1");
    let bearer_with = |extra: &[(&str, &str)]| {
        let authorization = format!("Bearer {token}");
        let mut headers = vec![("authorization", authorization.as_str())];
        headers.extend_from_slice(extra);
        check_request("/api/items", &headers)
    };
    let forged = [("x-client-id", "forged"), ("x-user-id", "forged")];

    // The safe default: every identity header not set is removed, carried or not.
    let default = start(crate::common::config(NO_JWKS), &keys).await;
    assert!(default.wait_serving(Duration::from_secs(5)).await);
    assert_eq!(ok(&default.check(bearer_with(&[])).await).headers_to_remove, ["x-client-id"]);
    assert_eq!(ok(&default.check(bearer_with(&forged)).await).headers_to_remove, ["x-client-id"]);

    let mut config = crate::common::config(NO_JWKS);
    config.envoy_strips_identity_headers = true;
    let stripping = start(config, &keys).await;
    assert!(stripping.wait_serving(Duration::from_secs(5)).await);
    let clean = stripping.check(bearer_with(&[])).await;
    assert!(ok(&clean).headers_to_remove.is_empty(), "nothing carried, nothing to remove");
    assert_eq!(set_header(ok(&clean), "x-user-id"), Some(SUB));
    for round in ["first", "from the token cache"] {
        let answer = stripping.check(bearer_with(&forged)).await;
        assert_eq!(ok(&answer).headers_to_remove, ["x-client-id"], "the carried one not set ({round})");
        assert_eq!(set_header(ok(&answer), "x-user-id"), Some(SUB), "the carried one set is overwritten");
    }
}

#[tokio::test]
async fn a_cached_allow_is_never_served_after_a_revocation_or_a_lost_mfa() {
    let mfa = FakeMfa::new();
    let server = start_with(crate::common::config(NO_JWKS), &serving(&["kid-1"]), mfa.clone()).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await);
    let token = token_for("kid-1");
    let on_mfa = || with_access(bearer(&token), "mfa");
    for _ in 0..3 {
        assert_eq!(set_header(ok(&server.check(on_mfa()).await), "x-username"), Some("alice"), "allowed and cached");
    }
    // An administrator resets alice's MFA; the gate forgets its cached answer (as the admin API does).
    mfa.set("alice", Ok(cognito_authz::cognito::MfaState::NotEnrolled));
    let sub = uuid::Uuid::parse_str(SUB).unwrap();
    server.mfa.forget(&sub).await;
    assert_eq!(server.code(on_mfa()).await, code::PERMISSION_DENIED, "mfa lost: refused though the token is cached");
    let on_authenticated = || with_access(bearer(&token), "authenticated");
    assert_eq!(server.code(on_authenticated()).await, code::OK, "an authenticated route still passes");
    // Then every session of alice's is revoked.
    let entry = Entry::User { sub, before: now(), until: now() + 3600 };
    server.revocations.revoke(vec![entry]).await.expect("revoked");
    assert_eq!(server.code(on_authenticated()).await, code::UNAUTHENTICATED, "revoked: refused though cached");
}
