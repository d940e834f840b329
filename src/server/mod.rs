//! Wiring only: build the parts, spawn background tasks (key refresh, policy reload), serve gRPC,
//! HTTP and admin, and shut down on one signal.

pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::authz::Authorizer;
use crate::authz::error::StepUp;
use crate::authz::headers::{IdentityHeaders, Qualifiers};
use crate::authz::observed::Decider;
use crate::authz::policy::Policy;
use crate::authz::policy::SharedPolicy;
use crate::aws::SdkCognito;
use crate::clock::unix_now;
use crate::cognito::{MfaSource, UserCalls};
use crate::config::issuer::{IssuerConfig, KeysAt, Kind};
use crate::config::{Config, StoreSpec};
use crate::envoy::ext_authz::ExtAuthz;
use crate::envoy::grpc::AuthorizationService;
use crate::http::AuthState;
use crate::http::admin::{self, AdminIssuer, AdminState};
use crate::http::forward_auth::ForwardAuth;
use crate::http::oauth::OAuthClient;
use crate::keys::discovery::DiscoveredKeySource;
use crate::keys::key_store::KeySettings;
use crate::keys::key_store::KeyStore;
use crate::keys::source::KeySource;
use crate::keys::source::{HttpKeySource, RegionalKeySource};
use crate::mfa::MfaGate;
use crate::revocation::Revocations;
use crate::revocation::file::FileStore;
use crate::revocation::redis::RedisStore;
use crate::secret::without_userinfo;
use crate::server::tls::{Tls, TlsListener};
use crate::telemetry::metrics::{IssuerReadings, Metrics, Readings};
use crate::verify::cache::TokenCache;
use crate::verify::oidc::OidcRules;
use crate::verify::{IssuerRules, Rules, TrustedIssuer, Verifier};

/// The service name Envoy and Kubernetes ask the health service about.
pub const AUTHZ_SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// The running parts, for callers that add routes (dev mode) or inspect them (tests).
pub struct Parts {
    /// The first issuer's keys (the only issuer's, with the single-pool flags).
    pub keys: KeyStore,
    /// Every issuer's keys, in configuration order.
    pub issuer_keys: Vec<KeyStore>,
    /// Every issuer's verifier and the token cache (the HTTP module's and the purge's).
    pub verifier: Verifier,
    /// The revocation list (the HTTP module's, the admin routes', the store's follower's).
    pub revocations: Revocations,
    /// The route policy (reloaded on SIGHUP).
    pub policy: SharedPolicy,
    /// The first Cognito issuer's MFA gate (the admin routes drop cached answers there).
    pub mfa: MfaGate,
    /// The decision, built once from the parts above.
    pub authorizer: Authorizer,
    /// The metrics registry.
    pub metrics: Metrics,
    /// The Cognito API, for the HTTP module (absent in dev mode).
    pub cognito: Option<Arc<dyn UserCalls>>,
    /// Each issuer's Cognito API, in configuration order, where this service has one (the admin
    /// route signs a user out at their own pool): `build` gives each pool its own.
    pub user_calls: Vec<Option<Arc<dyn UserCalls>>>,
    /// The shared revocation store, whose subscription `serve` keeps up.
    pub redis: Option<Arc<RedisStore>>,
}

crate::opaque_debug!(Parts);

/// The three listeners.
pub struct Listeners {
    /// ext_authz and health.
    pub grpc: TcpListener,
    /// The HTTP module and `/healthz`.
    pub http: TcpListener,
    /// `/metrics`, `/livez` and the admin routes.
    pub admin: TcpListener,
    /// The HTTP authorization listener for proxies that ask over HTTP, when on.
    pub authz_http: Option<TcpListener>,
}

crate::opaque_debug!(Listeners);

/// Builds the parts with the AWS SDK as the MFA source and Cognito client.
pub async fn build(config: &Config) -> anyhow::Result<Parts> {
    // Two attempts fit in the deadline; each gets 40 % of it.
    let attempt = config.cognito_timeout.mul_f64(0.4);
    let cognito = Arc::new(
        SdkCognito::new(
            &config.pool.region,
            config.pool.cognito_endpoint.as_deref(),
            &config.pool.user_pool_id,
            config.pool.mfa_source,
            (attempt, config.cognito_timeout),
            None,
        )
        .await
        .counting(config.pool.mfa_factors),
    );
    // Each Cognito issuer of the tables asks its own pool, at its own endpoint, and signs its own
    // users out.
    let mut sources: Vec<Arc<dyn MfaSource>> = Vec::new();
    let mut calls: Vec<Option<Arc<dyn UserCalls>>> = Vec::new();
    for issuer in config.all_issuers() {
        match &issuer.kind {
            Kind::Cognito(pool) if !config.issuers.is_empty() => {
                let own = SdkCognito::new(
                    &pool.region,
                    pool.cognito_endpoint.as_deref(),
                    &pool.user_pool_id,
                    pool.mfa_source,
                    (attempt, config.cognito_timeout),
                    None,
                )
                .await
                .counting(pool.mfa_factors);
                let own = Arc::new(own);
                sources.push(own.clone());
                calls.push(Some(own));
            }
            Kind::Cognito(_) => {
                sources.push(cognito.clone());
                calls.push(Some(cognito.clone()));
            }
            // Never asked: an OIDC provider's tokens show their factors.
            Kind::Oidc(_) => {
                sources.push(cognito.clone());
                calls.push(None);
            }
        }
    }
    let mut parts = build_with(config, sources, Some(cognito)).await?;
    parts.user_calls = calls;
    Ok(parts)
}

/// Builds the parts with one MFA source per issuer (in configuration order; a single pool is the
/// one-issuer case), fetching keys over HTTP(S).
pub async fn build_with(
    config: &Config,
    mfa_sources: Vec<Arc<dyn MfaSource>>,
    cognito: Option<Arc<dyn UserCalls>>,
) -> anyhow::Result<Parts> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .user_agent(concat!("cognito-authz/", env!("CARGO_PKG_VERSION")))
        .redirect(crate::keys::source::same_origin_redirects())
        .build()?;
    // The policy's group and scope names must be tied to the issuers configured here.
    let names: Vec<String> = config.all_issuers().iter().map(|i| i.name.clone()).collect();
    config.policy.check_issuers(&names).context("--policy")?;
    let stores = config.all_issuers().iter().map(|i| key_store(i, &client, &config.keys)).collect();
    let (revocations, redis) = open_revocations(config).await?;
    let mut parts = assemble(config, stores, mfa_sources, revocations);
    if let Some(served) = parts.verifier.served() {
        parts.user_calls[served] = cognito.clone();
    }
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
            let revocations =
                Revocations::new(Arc::new(store), config.allow_unrevocable_tokens, None).naming_issuers(named(config));
            let n = revocations.reload(unix_now()).await?;
            tracing::info!(entries = n, path = %path.display(), "revocation list loaded");
            Ok((revocations, None))
        }
        StoreSpec::Redis { target, namespace } => {
            let store = Arc::new(RedisStore::new(target, namespace, Duration::from_secs(1))?);
            let staleness = Some(config.revocation_max_staleness);
            let revocations = Revocations::new(store.clone(), config.allow_unrevocable_tokens, staleness);
            Ok((revocations.naming_issuers(named(config)), Some(store)))
        }
    }
}

/// The issuers as the admin route sees them, each with its Cognito API (`calls`, by position).
pub fn admin_issuers(config: &Config, calls: &[Option<Arc<dyn UserCalls>>]) -> Arc<[AdminIssuer]> {
    let calls = calls.iter().cloned().chain(std::iter::repeat(None));
    config
        .all_issuers()
        .into_iter()
        .zip(calls)
        .map(|(issuer, calls)| AdminIssuer {
            cognito: matches!(issuer.kind, Kind::Cognito(_)),
            calls,
            name: issuer.name,
            iss: issuer.iss,
        })
        .collect()
}

/// Each configured issuer's name and `iss`: revocation entries scoped by an issuer's name (as
/// they were written before they named the `iss`) are read as that issuer's.
fn named(config: &Config) -> Vec<(String, String)> {
    config.all_issuers().into_iter().map(|i| (i.name, i.iss)).collect()
}

/// One issuer's key store: its JWKS, or the one its discovery document names.
fn key_store(issuer: &IssuerConfig, client: &reqwest::Client, settings: &KeySettings) -> KeyStore {
    let source: Arc<dyn KeySource> = match &issuer.keys {
        KeysAt::Jwks(url) => Arc::new(HttpKeySource::new(client.clone(), url.clone())),
        KeysAt::Regions(urls) => Arc::new(RegionalKeySource::new(
            urls.iter()
                .map(|url| Arc::new(HttpKeySource::new(client.clone(), url.clone())) as Arc<dyn KeySource>)
                .collect(),
        )),
        KeysAt::Discovery(url) => Arc::new(DiscoveredKeySource::new(client.clone(), issuer.iss.clone(), url.clone())),
    };
    key_store_over(issuer, source, settings)
}

/// One issuer's key store over `source`, accepting the algorithms of its kind.
pub fn key_store_over(issuer: &IssuerConfig, source: Arc<dyn KeySource>, settings: &KeySettings) -> KeyStore {
    match &issuer.kind {
        Kind::Cognito(_) => KeyStore::new(source, settings.clone()),
        Kind::Oidc(oidc) => KeyStore::for_algorithms(source, settings.clone(), oidc.algorithms.clone()),
    }
}

/// One issuer's rules.
fn rules(issuer: &IssuerConfig, leeway: u64) -> IssuerRules {
    match &issuer.kind {
        Kind::Cognito(pool) => IssuerRules::Cognito(Rules {
            issuer: issuer.iss.clone(),
            also: pool.regional.iter().map(|(iss, _)| iss.clone()).collect(),
            client_ids: pool.client_ids.iter().map(|c| Arc::from(c.as_str())).collect(),
            leeway,
            allow_machine_tokens: pool.allow_machine_tokens,
            mfa_from_amr: pool.mfa_from_amr,
        }),
        Kind::Oidc(oidc) => IssuerRules::Oidc {
            rules: OidcRules {
                issuer: issuer.iss.clone(),
                audience: oidc.audience.clone(),
                leeway,
                username_claim: oidc.username_claim.clone(),
                groups_claim: oidc.groups_claim.clone(),
                mfa_amr: oidc.mfa_amr.clone(),
                mfa_acr: oidc.mfa_acr.clone(),
            },
            algorithms: oidc.algorithms.clone(),
            // Leaked once per issuer at start-up, so a denial stays a small `Copy` value that
            // carries nothing from a token.
            step_up: StepUp {
                acr_values: (!oidc.mfa_acr.is_empty()).then(|| &*Box::leak(oidc.mfa_acr.join(" ").into_boxed_str())),
            },
        },
    }
}

/// Builds the MFA gates and the authorizer around each issuer's key store and MFA source (in
/// configuration order; a single pool is the one-issuer case) and revocations.
pub fn assemble(
    config: &Config,
    stores: Vec<KeyStore>,
    mfa_sources: Vec<Arc<dyn MfaSource>>,
    revocations: Revocations,
) -> Parts {
    let issuers = config.all_issuers();
    assert!(
        stores.len() == issuers.len() && mfa_sources.len() == issuers.len(),
        "one key store and mfa source per issuer"
    );
    let metrics = Metrics::new();
    if !config.mfa.enforce {
        tracing::warn!("MFA is NOT enforced (--enforce-mfa=false): mfa routes admit any valid token; development only");
    }
    let gates: Vec<MfaGate> = mfa_sources
        .into_iter()
        .zip(&issuers)
        .map(|(source, issuer)| {
            let factors = match &issuer.kind {
                Kind::Cognito(pool) => pool.mfa_factors,
                Kind::Oidc(_) => Default::default(),
            };
            MfaGate::new(source, config.mfa.clone(), metrics.clone())
                .expecting(factors)
                .revoking_through(revocations.clone(), config.auth.refresh_token_lifetime)
        })
        .collect();
    // A user revoked on any replica has their cached MFA answer dropped here too.
    let forget = gates.clone();
    revocations.on_user_revoked(move |sub| {
        let gates = forget.clone();
        async move {
            for gate in &gates {
                gate.forget(&sub).await;
            }
        }
    });
    let names: Vec<String> = issuers.iter().map(|i| i.name.clone()).collect();
    let policy = SharedPolicy::new(config.policy.clone().for_issuers(&names));
    let trusted: Vec<TrustedIssuer> = issuers
        .iter()
        .zip(&stores)
        .map(|(issuer, keys)| TrustedIssuer {
            name: Arc::from(issuer.name.as_str()),
            keys: keys.clone(),
            rules: rules(issuer, config.leeway_seconds),
        })
        .collect();
    let keys = stores[0].clone();
    // The HTTP module's issuer: the single pool, or the table whose pool fills the single-pool
    // fields (`oauth-issuer`, or the only Cognito one); none with only OIDC issuers.
    let served = if config.issuers.is_empty() {
        Some(0)
    } else {
        issuers.iter().position(|i| matches!(i.kind, Kind::Cognito(_)) && i.iss == config.pool.issuer)
    };
    let verifier = Verifier::for_issuers(trusted, TokenCache::new(config.token_cache_size))
        .mapping_claims(config.header_claims.iter().map(|h| h.claim.clone()).collect())
        .serving(served);
    let mfa = gates[0].clone();
    let authorizer = Authorizer::new(
        verifier.clone(),
        revocations.clone(),
        policy.clone(),
        gates.clone(),
        config.token_cookie.clone(),
        config.auth.allowed_origins.clone(),
    )
    .shadow_by_default(config.shadow)
    .qualifying(Qualifiers::new(
        &issuers.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
        config.unqualified_issuer.as_deref(),
    ));
    let parts_of = (verifier.clone(), revocations.clone());
    // The closure holds the verifier and revocations, not the authorizer (which holds the metrics).
    metrics.read_parts(move || {
        // Summed over the issuers; the last refresh is the stalest issuer's.
        let stores = verifier.issuers().iter().map(|i| &i.keys);
        let cache = verifier.cache();
        let (hits, misses) = cache.hits_and_misses();
        Readings {
            jwks_fetches: stores.clone().map(KeyStore::fetch_count).sum(),
            jwks_fetch_failures: stores.clone().map(KeyStore::fetch_failure_count).sum(),
            jwks_keys: stores.clone().map(|k| k.key_count() as u64).sum(),
            jwks_last_refresh: stores.map(KeyStore::last_loaded).min().unwrap_or(0),
            token_cache_hits: hits,
            token_cache_misses: misses,
            token_cache_entries: cache.len(),
            revocation_entries: revocations.len() as u64,
            revocation_sync_age: revocations.sync_age().as_secs_f64(),
        }
    });
    // Issuer names become label values: leaked once each at start-up, from configuration only.
    let names = issuers.iter().map(|i| &*Box::leak(i.name.clone().into_boxed_str())).collect();
    let readable = stores.clone();
    metrics.name_issuers(names, move || {
        readable
            .iter()
            .map(|k| IssuerReadings {
                jwks_fetch_failures: k.fetch_failure_count(),
                jwks_keys: k.key_count() as u64,
                jwks_last_refresh: k.last_loaded(),
            })
            .collect()
    });
    let (verifier, revocations) = parts_of;
    Parts {
        keys,
        issuer_keys: stores,
        verifier,
        revocations,
        policy,
        mfa,
        authorizer,
        metrics,
        cognito: None,
        user_calls: vec![None; issuers.len()],
        redis: None,
    }
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

    let refresh: Vec<_> = parts.issuer_keys.iter().map(|keys| tokio::spawn(keys.clone().run_refresh())).collect();
    let revocations = parts.revocations.clone();
    let follow = parts.redis.clone().map(|redis| tokio::spawn(redis.sync(revocations.clone())));
    let purge = tokio::spawn(purge_expired(revocations.clone(), parts.verifier.clone()));
    let reload = config.policy_path.clone().map(|path| tokio::spawn(reload_on_hangup(path, parts.policy.clone())));
    // Serving once every issuer has loaded its keys once: later, an issuer whose keys are
    // unavailable answers 503 for its own tokens only.
    let keys_loaded: Vec<_> = parts.issuer_keys.iter().map(KeyStore::loaded).collect();
    let mut revocations_loaded = revocations.loaded();
    let ready = reporter.clone();
    let health_task = tokio::spawn(async move {
        let mut all_loaded = true;
        for mut loaded in keys_loaded {
            all_loaded &= loaded.wait_for(|l| *l).await.is_ok();
        }
        if all_loaded && revocations_loaded.wait_for(|l| *l).await.is_ok() {
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

    let Listeners { grpc, http, admin, authz_http } = listeners;
    // Credentials in a URL's userinfo stay out of the log; where it points is what an operator needs.
    let (issuer, jwks) = (without_userinfo(&config.pool.issuer), without_userinfo(config.pool.jwks_url.as_str()));
    tracing::info!(grpc = %grpc.local_addr()?, http = %http.local_addr()?, admin = %admin.local_addr()?,
        tls = config.tls.is_some(), mtls = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()), issuers = parts.issuer_keys.len(), %issuer, %jwks, clients = config.pool.client_ids.len(), "listening");
    let auth_state = AuthState {
        authorizer: parts.authorizer.clone(),
        verifier: parts.verifier.clone(),
        revocations: revocations.clone(),
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
        mfa: parts.mfa.clone(),
        issuers: admin_issuers(config, &parts.user_calls),
        token: config.admin_token.clone(),
        refresh_token_lifetime: config.auth.refresh_token_lifetime,
    };
    // The same decision for the proxies that ask over HTTP, with its own decision-log budget.
    let forward_auth = config.authz_http.as_ref().map(|settings| ForwardAuth {
        decider: Arc::new(
            Decider::new(parts.authorizer.clone(), parts.metrics.clone(), "http")
                .sampling_allows(config.log_allow_sample_rate)
                .sending_browsers_to(config.sign_in_url.clone()),
        ),
        identity: IdentityHeaders::with_mapped(&config.header_claims).qualified(parts.authorizer.qualifiers().clone()),
        trusted: settings.trusted_proxies.clone().into(),
        prefix: Arc::from(settings.prefix.as_str()),
    });
    let ext_authz = ExtAuthz::new(parts.authorizer, config.strip_authorization, parts.metrics.clone())
        .identity_headers(IdentityHeaders::with_mapped(&config.header_claims))
        .sampling_allows(config.log_allow_sample_rate)
        .sending_browsers_to(config.sign_in_url.clone())
        .claims_metadata(config.emit_claims_metadata)
        .envoy_strips_identity_headers(config.envoy_strips_identity_headers);
    // Unreadable or mismatched files are a bad setting (exit 78), not a runtime failure.
    let tls = config
        .tls
        .as_ref()
        .map(Tls::load)
        .transpose()
        .map_err(|error| crate::config::ConfigError::new("tls-cert", format!("{error:#}")))?;
    let mut grpc_builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        grpc_builder = grpc_builder.tls_config(tls.grpc())?;
    }
    let grpc_server = grpc_builder
        .add_service(health_service)
        .add_service(AuthorizationService::new(ext_authz))
        .serve_with_incoming_shutdown(TcpIncoming::from(grpc).with_nodelay(Some(true)), stopped(stop_rx.clone()));
    let http_app = http_routes.merge(crate::http::routes(auth_state, parts.issuer_keys));
    let http_stopped = stopped(stop_rx.clone());
    let http_server = async move {
        match tls.map(|tls| tls.http()) {
            Some(acceptor) => {
                axum::serve(TlsListener::new(http, acceptor)?, http_app).with_graceful_shutdown(http_stopped).await
            }
            None => axum::serve(http, http_app).with_graceful_shutdown(http_stopped).await,
        }
    };
    let authz_http_stopped = stopped(stop_rx.clone());
    let authz_http_server = async move {
        match (authz_http, forward_auth) {
            (Some(listener), Some(state)) => {
                let app = crate::http::forward_auth::routes(state)
                    .into_make_service_with_connect_info::<std::net::SocketAddr>();
                axum::serve(listener, app).with_graceful_shutdown(authz_http_stopped).await
            }
            _ => Ok(()),
        }
    };
    let admin_server = axum::serve(admin, admin::routes(admin_state)).with_graceful_shutdown(stopped(stop_rx));
    let (grpc_result, http_result, admin_result, authz_http_result) =
        tokio::join!(grpc_server, http_server, admin_server, authz_http_server);
    refresh.iter().for_each(|task| task.abort());
    purge.abort();
    for task in [reload, follow].into_iter().flatten() {
        task.abort();
    }
    grpc_result?;
    http_result?;
    admin_result?;
    authz_http_result?;
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
            let names = policy.current().issuer_names().to_vec();
            match Policy::load(&path).and_then(|new| new.check_issuers(&names).map(|()| new.for_issuers(&names))) {
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
