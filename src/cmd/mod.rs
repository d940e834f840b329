//! What each subcommand does, from parsed arguments to a running server or a printed answer.

pub mod cli;

use crate::clock::unix_now;
use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::authz::policy::Policy;
use crate::cmd::cli::{CheckArgs, DevAction, DevArgs, RevokeArgs};
use crate::config::{Config, Settings};
use crate::dev::{DEV_CLIENT_ID, DEV_ISSUER, DevPool};
use crate::envoy::pb::auth::attribute_context::{HttpRequest, Request as AttrRequest};
use crate::envoy::pb::auth::authorization_client::AuthorizationClient;
use crate::envoy::pb::auth::check_response::HttpResponse;
use crate::envoy::pb::auth::{AttributeContext, CheckRequest};
use crate::server;

/// `cognito-authz serve`.
pub async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let config = settings.into_config()?;
    if let Some(emulator) = &config.pool.emulator {
        tracing::warn!(endpoint = %emulator.endpoint, pool_id = emulator.pool_id, http_issuer = emulator.http_issuer,
            "a Cognito emulator on loopback: its pool id shape and plain-http issuer are accepted (never against AWS)");
    }
    let parts = server::build(&config).await?;
    let listeners = server::Listeners {
        grpc: bind(config.grpc_listen, "--grpc-listen").await?,
        http: bind(config.http_listen, "--http-listen").await?,
        admin: bind(config.admin_listen, "--admin-listen").await?,
        authz_http: match &config.authz_http {
            Some(settings) => Some(bind(settings.listen, "--authz-http-listen").await?),
            None => None,
        },
    };
    server::serve(&config, parts, listeners, axum::Router::new(), server::termination()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `cognito-authz dev` and its actions.
pub async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    let pool = DevPool::open(&args.data_dir)?;
    match args.action {
        Some(DevAction::Token { username, expires_in, count, issuer, amr }) => {
            let user = pool.user(&username)?;
            let now = unix_now();
            let oidc = match issuer.as_deref() {
                None | Some("default") if amr.is_empty() => None,
                None | Some("default") => anyhow::bail!("--amr is for --issuer {}", crate::dev::oidc::DEV_OIDC_NAME),
                Some(crate::dev::oidc::DEV_OIDC_NAME) => Some(crate::dev::oidc::key(&pool)?),
                Some(other) => {
                    anyhow::bail!("unknown dev issuer {other:?}: default or {}", crate::dev::oidc::DEV_OIDC_NAME)
                }
            };
            let amr = if amr.is_empty() { vec!["pwd".to_owned()] } else { amr };
            let token = |now| match &oidc {
                Some(key) => crate::dev::oidc::access_token(key, &user, &amr, now, expires_in),
                None => pool.access_token(&user, now, expires_in),
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = (0..count).try_for_each(|_| writeln!(out, "{}", token(now)));
            reader_may_stop(written.and_then(|()| out.flush()))?;
        }
        Some(DevAction::Mfa { username, state }) => {
            pool.set_mfa(&username, state == "on")?;
            print(&format!("{username}: mfa {state}\n"))?;
        }
        Some(DevAction::Users { json }) => {
            let mut out = String::new();
            if json {
                out = serde_json::to_string_pretty(&pool.users()?)? + "\n";
            }
            for user in pool.users()?.iter().filter(|_| !json) {
                writeln!(
                    out,
                    "{}\tsub={}\tgroups={}\tmfa={}\tpassword={}\ttotp-secret={}",
                    user.username,
                    user.sub,
                    user.groups.join(","),
                    user.mfa,
                    user.password,
                    user.totp_secret.as_deref().unwrap_or("-"),
                )?;
            }
            print(&out)?;
        }
        None => run_dev_server(pool, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_dev_server(pool: DevPool, args: DevArgs) -> anyhow::Result<()> {
    tracing::warn!("{}", crate::dev::warning());
    let listeners = server::Listeners {
        grpc: bind(args.grpc_listen, "--grpc-listen").await?,
        http: bind(args.http_listen, "--http-listen").await?,
        admin: bind(args.admin_listen, "--admin-listen").await?,
        authz_http: match args.authz_http_listen {
            Some(listen) => Some(bind(listen, "--authz-http-listen").await?),
            None => None,
        },
    };
    let jwks_url = format!("http://{}/.well-known/jwks.json", listeners.http.local_addr()?);
    let jwks_url =
        crate::loopback::https_unless_loopback(&jwks_url).map_err(|e| anyhow::anyhow!("dev jwks url {e}"))?;
    let mut config = Config::with_defaults(DEV_ISSUER, jwks_url.clone(), vec![DEV_CLIENT_ID.to_owned()]);
    config.grpc_listen = listeners.grpc.local_addr()?;
    if let Some(listener) = &listeners.authz_http {
        // The serve defaults: loopback proxies, Envoy's prefix.
        let defaults = crate::config::Settings::default();
        config.authz_http = Some(crate::config::AuthzHttp {
            listen: listener.local_addr()?,
            trusted_proxies: defaults.trusted_proxy.iter().map(|c| c.parse()).collect::<Result<_, _>>()?,
            prefix: defaults.authz_http_prefix,
        });
    }
    if let Some(path) = args.policy {
        config.policy = Policy::load(&path)?;
        config.policy_path = Some(path);
    }
    // The companion module signs in through the dev hosted UI on this same listener.
    let domain: reqwest::Url = format!("http://{}", listeners.http.local_addr()?).parse()?;
    config.oauth = Some(crate::config::OAuthConfig {
        endpoints: crate::http::oauth::Endpoints::under(&domain),
        client_id: DEV_CLIENT_ID.to_owned(),
        secret: None,
    });
    config.auth.allowed_origins = args.allowed_origin.clone();
    // The second, OIDC-style issuer beside the dev pool (named `default`, as the flags' pool is).
    let oidc_key = crate::dev::oidc::key(&pool)?;
    let oidc_jwks_url = format!("http://{}{}", listeners.http.local_addr()?, crate::dev::oidc::DEV_OIDC_JWKS_PATH);
    let oidc_jwks_url =
        crate::loopback::https_unless_loopback(&oidc_jwks_url).map_err(|e| anyhow::anyhow!("dev jwks url {e}"))?;
    config.issuers = vec![
        crate::config::issuer::IssuerConfig::for_pool(crate::verify::claims::DEFAULT_ISSUER, &config.pool),
        crate::dev::oidc::issuer(oidc_jwks_url.clone()),
    ];
    // The dev pool's users keep bare identity headers (the README's examples); dev-oidc's are
    // qualified (`dev-oidc:<sub>`).
    config.unqualified_issuer = Some(crate::verify::claims::DEFAULT_ISSUER.to_owned());
    let oidc_jwks = serde_json::json!({ "keys": [oidc_key.jwk()] });
    config.emit_claims_metadata = args.emit_claims_metadata.unwrap_or(config.emit_claims_metadata);
    config.envoy_strips_identity_headers =
        args.envoy_strips_identity_headers.unwrap_or(config.envoy_strips_identity_headers);
    let pool = Arc::new(pool);
    let jwks = pool.jwks();
    let routes = axum::Router::new()
        .route("/.well-known/jwks.json", get(move || async move { Json(jwks) }))
        .route(crate::dev::oidc::DEV_OIDC_JWKS_PATH, get(move || async move { Json(oidc_jwks) }))
        .merge(crate::dev::hosted_ui::routes(pool.clone()));
    let data_dir = args.data_dir.display();
    eprintln!(
        "\n  dev server: gRPC ext_authz on {grpc}, JWKS on {jwks_url}\n  hosted UI (sign-in, TOTP enrolment): {domain}login, {domain}mfa/enrol; users and passwords: cognito-authz dev --data-dir {data_dir} users\n  try:  cognito-authz check --addr http://{grpc} --token \"$(cognito-authz dev --data-dir {data_dir} token alice)\"\n  the OIDC-style issuer dev-oidc (keys on {oidc_jwks_url}):  cognito-authz dev --data-dir {data_dir} token --issuer dev-oidc alice --amr pwd,otp\n",
        grpc = config.grpc_listen
    );
    config.revocation_store = crate::config::StoreSpec::File(args.data_dir.join("revocations.jsonl"));
    // The dev pool answers for both issuers (dev-oidc's tokens show their factors: never asked).
    let sources: Vec<Arc<dyn crate::cognito::MfaSource>> =
        config.all_issuers().iter().map(|_| pool.clone() as _).collect();
    let parts = server::build_with(&config, sources, None).await?;
    server::serve(&config, parts, listeners, routes, server::termination()).await
}

/// `cognito-authz check`: one Check, the decision printed.
pub async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut headers = std::collections::HashMap::new();
    for header in &args.headers {
        let (name, value) =
            header.split_once(':').with_context(|| format!("header {header:?} is not `name: value`"))?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    if let Some(token) = &args.token {
        headers.insert("authorization".to_owned(), format!("Bearer {token}"));
    }
    let context_extensions = args.access.iter().map(|a| ("access".to_owned(), a.clone())).collect();
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            context_extensions,
            request: Some(AttrRequest {
                http: Some(HttpRequest { method: args.method, path: args.path, headers, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let mut client = AuthorizationClient::connect(args.addr.clone())
        .await
        .with_context(|| format!("connecting to {}", args.addr))?;
    let response = client.check(request).await.context("the Check call failed")?.into_inner();
    let code = response.status.as_ref().map_or(0, |s| s.code);
    let mut out = String::new();
    let exit = match response.http_response {
        Some(HttpResponse::OkResponse(ok)) if code == 0 => {
            writeln!(out, "allow")?;
            for h in ok.headers.iter().filter_map(|h| h.header.as_ref()) {
                writeln!(out, "  set    {}: {}", h.key, h.value)?;
            }
            for name in &ok.headers_to_remove {
                writeln!(out, "  remove {name}")?;
            }
            ExitCode::SUCCESS
        }
        Some(HttpResponse::DeniedResponse(denied)) => {
            writeln!(out, "deny {}", denied.status.map_or(403, |s| s.code))?;
            for h in denied.headers.iter().filter_map(|h| h.header.as_ref()) {
                writeln!(out, "  {}: {}", h.key, h.value)?;
            }
            writeln!(out, "  body: {}", denied.body)?;
            ExitCode::from(1)
        }
        _ => {
            writeln!(out, "deny (grpc status {code})")?;
            ExitCode::from(1)
        }
    };
    print(&out)?;
    Ok(exit)
}

/// Prints a command's answer. A reader that stopped reading (`check … | head -1`) is not an error:
/// the default `println!` would panic there.
fn print(text: &str) -> anyhow::Result<()> {
    reader_may_stop(std::io::stdout().lock().write_all(text.as_bytes()))
}

/// A write to stdout whose reader may have stopped reading: that (a broken pipe) is not an error.
fn reader_may_stop(written: std::io::Result<()>) -> anyhow::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// `cognito-authz revoke --user SUB`: asks the running server's admin route.
pub async fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/admin/revoke-user", args.admin_url.trim_end_matches('/'));
    let mut body = serde_json::json!({ "sub": args.user, "username": args.username });
    if let Some(issuer) = &args.issuer {
        body["issuer"] = serde_json::json!(issuer);
    }
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&args.admin_token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = response.status();
    print(&format!("{} {}\n", status.as_u16(), response.text().await.unwrap_or_default()))?;
    Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn bind(addr: std::net::SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({flag})"))
}
