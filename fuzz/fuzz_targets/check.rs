//! The whole `Check` decision on any input: the bytes as an encoded `CheckRequest` (odd byte first)
//! or as the `authorization` header of a well-formed one (even byte first). Every input gets a
//! response with a status. The fuzzer does not hold the trusted key, so an allow is a finding
//! unless the request's own context permits one (`access: public`, `mode: shadow`: no policy file
//! here says otherwise), and even then no identity header may be set: no token it made is valid.

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::{Arc, LazyLock};

use cognito_authz::cognito::{Answer, MfaSource, MfaState, User};
use cognito_authz::config::{Config, StoreSpec};
use cognito_authz::envoy::ext_authz::ExtAuthz;
use cognito_authz::authz::headers::FIXED;
use cognito_authz::envoy::pb::auth::attribute_context::{HttpRequest, Request};
use cognito_authz::envoy::pb::auth::check_response::HttpResponse;
use cognito_authz::envoy::pb::auth::{AttributeContext, CheckRequest};
use cognito_authz::server;
use libfuzzer_sys::fuzz_target;
use prost::Message;

struct Enrolled;

impl MfaSource for Enrolled {
    fn mfa_state<'a>(&'a self, _: User<'a>) -> Answer<'a> {
        Box::pin(async { Ok(MfaState::Enrolled) })
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    ext: ExtAuthz,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rt = common::runtime();
    let key = common::key();
    let mut config = Config::with_defaults(
        common::ISSUER,
        "http://127.0.0.1:9/jwks".parse().unwrap(),
        vec![common::CLIENT.to_owned()],
    );
    let dir = std::env::temp_dir().join(format!("cognito-authz-fuzz-{}", std::process::id()));
    config.revocation_store = StoreSpec::File(dir.join("revocations.jsonl"));
    let (revocations, _) = rt.block_on(server::open_revocations(&config)).expect("revocations");
    let parts = server::assemble(&config, vec![common::keys(&rt, &key)], vec![Arc::new(Enrolled)], revocations);
    Fixture { ext: ExtAuthz::new(parts.authorizer, false, parts.metrics), rt }
});

fn with_authorization(value: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/api/items".into(),
                    headers: [("authorization".to_owned(), value.to_owned())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The route's context extensions let a request through without a valid token: a public route, or
/// a shadow one (decided and logged, never enforced). The empty policy adds nothing to either.
fn context_permits_an_allow(request: &CheckRequest) -> bool {
    let Some(context) = request.attributes.as_ref().map(|a| &a.context_extensions) else { return false };
    context.get("access").is_some_and(|a| a == "public") || context.get("mode").is_some_and(|m| m == "shadow")
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else { return };
    let request = if mode % 2 == 1 {
        match CheckRequest::decode(rest) {
            Ok(request) => request,
            Err(_) => return,
        }
    } else {
        with_authorization(&String::from_utf8_lossy(rest))
    };
    let response = f.rt.block_on(f.ext.decide(&request, common::NOW));
    let code = response.status.as_ref().expect("every response has a status").code;
    match response.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            assert_eq!(code, 0, "an allow answers OK");
            assert!(context_permits_an_allow(&request), "allowed a request whose route needs a token");
            for set in ok.headers.iter().filter_map(|h| h.header.as_ref()) {
                let name = set.key.to_ascii_lowercase();
                assert!(!FIXED.contains(&name.as_str()), "an allow without a valid token set {name}");
            }
        }
        Some(HttpResponse::DeniedResponse(denied)) => {
            assert_ne!(code, 0, "a denial with status OK would be an allow");
            let status = denied.status.expect("denials carry an HTTP status").code;
            assert!(matches!(status, 400 | 401 | 403 | 503), "status {status}");
        }
        Some(HttpResponse::ErrorResponse(_)) => panic!("an error response: the service answers with denials"),
        None => panic!("no http response"),
    }
});
