//! The real server on 127.0.0.1:0, driven by a tonic client: health, key rotation, the unknown-`kid`
//! cooldown, failing and slow key fetches, and graceful shutdown.

use std::time::{Duration, Instant};

use crate::common::*;
use cognito_authz::error::code;
use cognito_authz::pb::auth::CheckRequest;
use cognito_authz::pb::auth::authorization_client::AuthorizationClient;
use cognito_authz::server::{self, AUTHZ_SERVICE};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

struct Running {
    authz: AuthorizationClient<Channel>,
    health: HealthClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(config: cognito_authz::config::Config) -> Running {
    let listeners = server::Listeners {
        grpc: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let url = format!("http://{}", listeners.grpc.local_addr().unwrap());
    let parts = crate::common::parts(&config, FakeMfa::new()).await;
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
        health: HealthClient::new(channel),
        stop: Some(stop),
        done,
    }
}

impl Running {
    async fn code(&self, request: CheckRequest) -> i32 {
        let response = self.authz.clone().check(request).await.expect("a denial is an answer, not an RPC error");
        response.into_inner().status.expect("status is set").code
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
    let server = start(crate::common::config(&jwks.url())).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await, "SERVING after the first load");
    assert_eq!(server.health("").await, ServingStatus::Serving);
    assert_eq!(server.code(bearer(&token_for("kid-1"))).await, code::OK);
    assert_eq!(server.code(bearer("garbage")).await, code::UNAUTHENTICATED);
}

#[tokio::test]
async fn a_rotated_key_is_accepted_at_once() {
    let jwks = JwksServer::start(crate::common::jwks(&[&key("kid-1")])).await;
    let server = start(crate::common::config(&jwks.url())).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await);
    let before = jwks.hits();
    jwks.set_document(crate::common::jwks(&[&key("kid-1"), &key("kid-2")]));
    assert_eq!(server.code(bearer(&token_for("kid-2"))).await, code::OK, "new kid accepted on first sight");
    assert_eq!(jwks.hits(), before + 1, "exactly one fetch for the rotation");
    assert_eq!(server.code(bearer(&token_for("kid-1"))).await, code::OK);
}

#[tokio::test]
async fn random_kids_cost_one_fetch_per_cooldown() {
    let jwks = JwksServer::start(crate::common::jwks(&[&key("kid-1")])).await;
    let server = start(crate::common::config(&jwks.url())).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await);
    let before = jwks.hits();
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
    assert_eq!(jwks.hits() - before, 1, "1,000 unknown kids cost one fetch");
    assert_eq!(server.code(bearer(&token_for("kid-1"))).await, code::OK, "known keys keep working");
}

#[tokio::test]
async fn a_failing_fetch_gives_503_for_unknown_kids_while_known_keys_work() {
    let jwks = JwksServer::start(crate::common::jwks(&[&key("kid-1")])).await;
    let server = start(crate::common::config(&jwks.url())).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await);
    jwks.set_mode(Mode::Fail);
    assert_eq!(server.code(bearer(&token_for("kid-2"))).await, code::UNAVAILABLE);
    assert_eq!(server.code(bearer(&token_for("kid-1"))).await, code::OK);
    assert_eq!(server.health(AUTHZ_SERVICE).await, ServingStatus::Serving, "old keys still decide");
}

#[tokio::test]
async fn jwks_down_at_start_means_not_serving_and_503_until_it_returns() {
    let jwks = JwksServer::start(crate::common::jwks(&[&key("kid-1")])).await;
    jwks.set_mode(Mode::Fail);
    let server = start(crate::common::config(&jwks.url())).await;
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
    let server = start(config).await;
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
    let jwks = JwksServer::start(crate::common::jwks(&[&key("kid-1")])).await;
    let mut server = start(crate::common::config(&jwks.url())).await;
    assert!(server.wait_serving(Duration::from_secs(5)).await);
    // A check held up by a slow key fetch is in flight when the shutdown begins.
    jwks.set_document(crate::common::jwks(&[&key("kid-1"), &key("kid-2")]));
    jwks.set_mode(Mode::Slow(Duration::from_millis(600)));
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
