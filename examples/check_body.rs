//! Writes a gRPC-framed `CheckRequest` for one token, for `h2load -d` (benchmarks only).
//!
//! `cargo run --release --example check_body -- TOKEN ACCESS OUT_FILE`

use cognito_authz::envoy::pb::auth::attribute_context::{HttpRequest, Request};
use cognito_authz::envoy::pb::auth::{AttributeContext, CheckRequest};
use prost::Message;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (token, access, out) = (&args[1], &args[2], &args[3]);
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/api/items?page=2".into(),
                    host: "api.example.com".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers: [
                        (":authority".to_owned(), "api.example.com".to_owned()),
                        (":method".to_owned(), "GET".to_owned()),
                        (":path".to_owned(), "/api/items?page=2".to_owned()),
                        (":scheme".to_owned(), "http".to_owned()),
                        ("authorization".to_owned(), format!("Bearer {token}")),
                        ("user-agent".to_owned(), "wrk".to_owned()),
                        ("x-request-id".to_owned(), "4b7d2a4e-6f1c-4e3a-9b8d-1c2e3f4a5b6c".to_owned()),
                        ("x-forwarded-proto".to_owned(), "http".to_owned()),
                    ]
                    .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: [("access".to_owned(), access.clone())].into(),
            ..Default::default()
        }),
    };
    let body = request.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    std::fs::write(out, framed).expect("writing the body file");
}
