//! Wiring only: build the parts, spawn the key refresh, serve gRPC and HTTP, shut down on a signal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::authz::Authorizer;
use crate::config::Config;
use crate::ext_authz::ExtAuthz;
use crate::keys::{HttpKeySource, KeyStore};
use crate::pb::auth::authorization_server::AuthorizationServer;
use crate::verify::{Rules, Verifier};

/// The service name Envoy and Kubernetes ask the health service about.
pub const AUTHZ_SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// The running parts, for callers that add routes (dev mode) or inspect them (tests).
pub struct Parts {
    pub keys: KeyStore,
    pub authorizer: Authorizer,
}

/// Builds the key store and authorizer for a configuration.
pub fn build(config: &Config) -> anyhow::Result<Parts> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .user_agent(concat!("cognito-authz/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let source = Arc::new(HttpKeySource::new(client, config.jwks_url.clone()));
    let keys = KeyStore::new(source, config.keys.clone());
    let rules = Rules {
        issuer: config.issuer.clone(),
        client_ids: config.client_ids.clone(),
        leeway: config.leeway_seconds,
    };
    let authorizer = Authorizer::new(
        Verifier::new(keys.clone(), rules),
        config.token_cookie.clone(),
    );
    Ok(Parts { keys, authorizer })
}

/// Serves until `shutdown` resolves: gRPC (ext_authz + health) on `grpc`, HTTP on `http`.
/// Health answers NOT_SERVING until the first key set loads. On shutdown health turns
/// NOT_SERVING first, then in-flight checks drain, then this returns.
pub async fn serve(
    config: &Config,
    parts: Parts,
    grpc: TcpListener,
    http: TcpListener,
    http_routes: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status(AUTHZ_SERVICE, ServingStatus::NotServing)
        .await;

    let refresh = tokio::spawn(parts.keys.clone().run_refresh());
    let mut loaded = parts.keys.loaded();
    let ready = reporter.clone();
    let health_task = tokio::spawn(async move {
        if loaded.wait_for(|l| *l).await.is_ok() {
            tracing::info!("signing keys loaded; serving");
            ready.set_service_status("", ServingStatus::Serving).await;
            ready
                .set_service_status(AUTHZ_SERVICE, ServingStatus::Serving)
                .await;
        }
    });

    // One shutdown signal, seen by both servers after health has turned NOT_SERVING.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = reporter.clone();
    tokio::spawn(async move {
        shutdown.await;
        health_task.abort();
        stopping
            .set_service_status("", ServingStatus::NotServing)
            .await;
        stopping
            .set_service_status(AUTHZ_SERVICE, ServingStatus::NotServing)
            .await;
        tracing::info!("shutting down: health is NOT_SERVING, draining in-flight requests");
        let _ = stop_tx.send(true);
    });

    tracing::info!(grpc = %grpc.local_addr()?, http = %http.local_addr()?, issuer = %config.issuer,
        jwks = %config.jwks_url, clients = config.client_ids.len(), "listening");
    let ext_authz = ExtAuthz::new(parts.authorizer, config.strip_authorization);
    let grpc_server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(AuthorizationServer::new(ext_authz))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(grpc).with_nodelay(Some(true)),
            stopped(stop_rx.clone()),
        );
    let http_server = axum::serve(
        http,
        http_routes.merge(crate::http::health_routes(parts.keys)),
    )
    .with_graceful_shutdown(stopped(stop_rx));
    let (grpc_result, http_result) = tokio::join!(grpc_server, http_server);
    refresh.abort();
    grpc_result?;
    http_result?;
    tracing::info!("stopped");
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
