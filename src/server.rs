//! Wiring only: build the parts, spawn background tasks (key refresh, policy reload), serve gRPC,
//! HTTP and admin, and shut down on one signal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::authz::Authorizer;
use crate::cache::TokenCache;
use crate::clock::unix_now;
use crate::cognito::{MfaSource, SdkCognito};
use crate::config::{Config, StoreSpec};
use crate::ext_authz::ExtAuthz;
use crate::grpc::AuthorizationService;
use crate::headers::IdentityHeaders;
use crate::http::AuthState;
use crate::http::admin::{self, AdminState};
use crate::key_store::{HttpKeySource, KeyStore};
use crate::metrics::{Metrics, Readings};
use crate::mfa::MfaGate;
use crate::oauth::OAuthClient;
use crate::policy::Policy;
use crate::policy::SharedPolicy;
use crate::revocation::Revocations;
use crate::revocation::file::FileStore;
use crate::revocation::redis::RedisStore;
use crate::tls::{Tls, TlsListener};
use crate::verify::{Rules, Verifier};

/// The service name Envoy and Kubernetes ask the health service about.
pub const AUTHZ_SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// The running parts, for callers that add routes (dev mode) or inspect them (tests).
pub struct Parts {
    pub keys: KeyStore,
    pub authorizer: Authorizer,
    pub metrics: Metrics,
    /// The Cognito API, for the HTTP module (absent in dev mode).
    pub cognito: Option<Arc<SdkCognito>>,
    /// The shared revocation store, whose subscription `serve` keeps up.
    pub redis: Option<Arc<RedisStore>>,
}

/// The three listeners.
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
    pub admin: TcpListener,
}

/// Builds the parts with the AWS SDK as the MFA source and Cognito client.
pub async fn build(config: &Config) -> anyhow::Result<Parts> {
    // Two attempts fit in the deadline; each gets 40 % of it.
    let attempt = config.cognito_timeout.mul_f64(0.4);
    let cognito = Arc::new(
        SdkCognito::new(
            &config.region,
            config.cognito_endpoint.as_deref(),
            &config.user_pool_id,
            config.mfa_source,
            (attempt, config.cognito_timeout),
            None,
        )
        .await,
    );
    build_with(config, cognito.clone(), Some(cognito)).await
}

/// Builds the parts around a given MFA source, fetching keys over HTTP(S).
pub async fn build_with(
    config: &Config,
    mfa_source: Arc<dyn MfaSource>,
    cognito: Option<Arc<SdkCognito>>,
) -> anyhow::Result<Parts> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .user_agent(concat!("cognito-authz/", env!("CARGO_PKG_VERSION")))
        .redirect(crate::key_store::same_origin_redirects())
        .build()?;
    let keys = KeyStore::new(Arc::new(HttpKeySource::new(client, config.jwks_url.clone())), config.keys.clone());
    let (revocations, redis) = open_revocations(config).await?;
    let mut parts = assemble(config, keys, mfa_source, revocations);
    parts.cognito = cognito;
    parts.redis = redis;
    Ok(parts)
}

/// Opens the revocation store. A file is loaded now (a bad file stops start-up); Redis is loaded
/// by its subscription once serving starts.
pub async fn open_revocations(config: &Config) -> anyhow::Result<(Revocations, Option<Arc<RedisStore>>)> {
    match &config.revocation_store {
        StoreSpec::File(path) => {
            let store = FileStore::open(path)
                .map_err(|e| anyhow::anyhow!("cannot open the revocation file {}: {e}", path.display()))?;
            let revocations = Revocations::new(Arc::new(store), config.allow_unrevocable_tokens, None);
            let n = revocations.reload(unix_now()).await?;
            tracing::info!(entries = n, path = %path.display(), "revocation list loaded");
            Ok((revocations, None))
        }
        StoreSpec::Redis(url) => {
            let store = Arc::new(RedisStore::new(url, &config.user_pool_id, Duration::from_secs(1))?);
            let staleness = Some(config.revocation_max_staleness);
            Ok((Revocations::new(store.clone(), config.allow_unrevocable_tokens, staleness), Some(store)))
        }
    }
}

/// Builds the MFA gate and the authorizer around a key store, an MFA source and revocations.
pub fn assemble(config: &Config, keys: KeyStore, mfa_source: Arc<dyn MfaSource>, revocations: Revocations) -> Parts {
    let rules = Rules {
        issuer: config.issuer.clone(),
        client_ids: config.client_ids.iter().map(|c| Arc::from(c.as_str())).collect(),
        leeway: config.leeway_seconds,
        allow_machine_tokens: config.allow_machine_tokens,
    };
    let metrics = Metrics::new();
    if !config.mfa.enforce {
        tracing::warn!("MFA is NOT enforced (--enforce-mfa=false): mfa routes admit any valid token; development only");
    }
    let mfa = MfaGate::new(mfa_source, config.mfa.clone(), metrics.clone())
        .revoking_through(revocations.clone(), config.auth.refresh_token_lifetime);
    // A user revoked on any replica has their cached MFA answer dropped here too.
    let gate = mfa.clone();
    revocations.on_user_revoked(move |sub| {
        let gate = gate.clone();
        async move { gate.forget(&sub).await }
    });
    let policy = SharedPolicy::new(config.policy.clone());
    let verifier = Verifier::new(keys.clone(), rules, TokenCache::new(config.token_cache_size))
        .mapping_claims(config.header_claims.iter().map(|h| h.claim.clone()).collect());
    let authorizer = Authorizer::new(
        verifier,
        revocations,
        policy,
        mfa,
        config.token_cookie.clone(),
        config.auth.allowed_origins.clone(),
    )
    .shadow_by_default(config.shadow);
    // The closure holds the verifier and revocations, not the authorizer (which holds the metrics).
    let (verifier, revocations) = (authorizer.verifier().clone(), authorizer.revocations().clone());
    metrics.read_parts(move || {
        let keys = verifier.keys();
        let cache = verifier.cache();
        let (hits, misses) = cache.hits_and_misses();
        Readings {
            jwks_fetches: keys.fetch_count(),
            jwks_fetch_failures: keys.fetch_failure_count(),
            jwks_keys: keys.key_count() as u64,
            jwks_last_refresh: keys.last_loaded(),
            token_cache_hits: hits,
            token_cache_misses: misses,
            token_cache_entries: cache.len(),
            revocation_entries: revocations.len() as u64,
            revocation_sync_age: revocations.sync_age().as_secs_f64(),
        }
    });
    Parts { keys, authorizer, metrics, cognito: None, redis: None }
}

/// Serves until `shutdown` resolves: gRPC (ext_authz + health), HTTP, and admin (`/metrics`).
/// Health answers NOT_SERVING until the first key set loads. On shutdown health turns
/// NOT_SERVING first, then in-flight requests drain, then this returns.
pub async fn serve(
    config: &Config,
    parts: Parts,
    listeners: Listeners,
    http_routes: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::NotServing).await;
    reporter.set_service_status(AUTHZ_SERVICE, ServingStatus::NotServing).await;

    let refresh = tokio::spawn(parts.keys.clone().run_refresh());
    let revocations = parts.authorizer.revocations().clone();
    let follow = parts.redis.clone().map(|redis| tokio::spawn(redis.sync(revocations.clone())));
    let purge = tokio::spawn(purge_expired(revocations.clone(), parts.authorizer.verifier().clone()));
    let reload =
        config.policy_path.clone().map(|path| tokio::spawn(reload_on_hangup(path, parts.authorizer.policy().clone())));
    let mut keys_loaded = parts.keys.loaded();
    let mut revocations_loaded = revocations.loaded();
    let ready = reporter.clone();
    let health_task = tokio::spawn(async move {
        if keys_loaded.wait_for(|l| *l).await.is_ok() && revocations_loaded.wait_for(|l| *l).await.is_ok() {
            tracing::info!("signing keys and revocations loaded; serving");
            ready.set_service_status("", ServingStatus::Serving).await;
            ready.set_service_status(AUTHZ_SERVICE, ServingStatus::Serving).await;
        }
    });

    // One shutdown signal, seen by every server after health has turned NOT_SERVING.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = reporter.clone();
    tokio::spawn(async move {
        shutdown.await;
        health_task.abort();
        stopping.set_service_status("", ServingStatus::NotServing).await;
        stopping.set_service_status(AUTHZ_SERVICE, ServingStatus::NotServing).await;
        tracing::info!("shutting down: health is NOT_SERVING, draining in-flight requests");
        let _ = stop_tx.send(true);
    });

    let Listeners { grpc, http, admin } = listeners;
    tracing::info!(grpc = %grpc.local_addr()?, http = %http.local_addr()?, admin = %admin.local_addr()?,
        tls = config.tls.is_some(), mtls = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()), issuer = %config.issuer, jwks = %config.jwks_url, clients = config.client_ids.len(), "listening");
    let auth_state = AuthState {
        authorizer: parts.authorizer.clone(),
        oauth: config.oauth.as_ref().map(|o| {
            OAuthClient::new(o.endpoints.clone(), o.client_id.clone(), o.secret.clone(), config.cognito_timeout * 2)
        }),
        cognito: parts.cognito.clone(),
        settings: Arc::new(config.auth.clone()),
        metrics: parts.metrics.clone(),
    };
    let admin_state = AdminState {
        metrics: parts.metrics.clone(),
        revocations: revocations.clone(),
        mfa: parts.authorizer.mfa().clone(),
        cognito: parts.cognito.clone(),
        token: config.admin_token.clone(),
        refresh_token_lifetime: config.auth.refresh_token_lifetime,
    };
    let ext_authz = ExtAuthz::new(parts.authorizer, config.strip_authorization, parts.metrics.clone())
        .identity_headers(IdentityHeaders::with_mapped(&config.header_claims))
        .sampling_allows(config.log_allow_sample_rate)
        .claims_metadata(config.emit_claims_metadata)
        .envoy_strips_identity_headers(config.envoy_strips_identity_headers);
    // Unreadable or mismatched files are a bad setting (exit 78), not a runtime failure.
    let tls = config.tls.as_ref().map(Tls::load).transpose().map_err(|error| crate::config::ConfigError {
        flag: "tls-cert",
        env: "COGNITO_AUTHZ_TLS_CERT",
        problem: format!("{error:#}"),
    })?;
    let mut grpc_builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        grpc_builder = grpc_builder.tls_config(tls.grpc())?;
    }
    let grpc_server = grpc_builder
        .add_service(health_service)
        .add_service(AuthorizationService::new(ext_authz))
        .serve_with_incoming_shutdown(TcpIncoming::from(grpc).with_nodelay(Some(true)), stopped(stop_rx.clone()));
    let http_app = http_routes.merge(crate::http::routes(auth_state, parts.keys));
    let http_stopped = stopped(stop_rx.clone());
    let http_server = async move {
        match tls.map(|tls| tls.http()) {
            Some(acceptor) => {
                axum::serve(TlsListener::new(http, acceptor)?, http_app).with_graceful_shutdown(http_stopped).await
            }
            None => axum::serve(http, http_app).with_graceful_shutdown(http_stopped).await,
        }
    };
    let admin_server = axum::serve(admin, admin::routes(admin_state)).with_graceful_shutdown(stopped(stop_rx));
    let (grpc_result, http_result, admin_result) = tokio::join!(grpc_server, http_server, admin_server);
    refresh.abort();
    purge.abort();
    for task in [reload, follow].into_iter().flatten() {
        task.abort();
    }
    grpc_result?;
    http_result?;
    admin_result?;
    tracing::info!("stopped");
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Drops expired revocations (here and in the store) and expired cached tokens every minute.
async fn purge_expired(revocations: Revocations, verifier: Verifier) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let now = unix_now();
        verifier.purge_expired(now);
        if let Err(error) = revocations.purge(now).await {
            tracing::warn!(%error, "purging expired revocations failed");
        }
    }
}

/// Reads the policy file again on each SIGHUP; a bad file keeps the policy in force.
async fn reload_on_hangup(path: std::path::PathBuf, policy: SharedPolicy) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; the policy file will not be reloaded");
            return;
        };
        while hangups.recv().await.is_some() {
            match Policy::load(&path) {
                Ok(new) => {
                    policy.replace(new);
                    tracing::info!(path = %path.display(), "policy reloaded");
                }
                Err(error) => tracing::warn!(%error, "policy reload failed; keeping the policy in force"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, policy);
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
