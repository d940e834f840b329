//! The ceiling for direct `Check` benchmarks: a tonic ext_authz server that answers OK without
//! looking at the request (benchmarks only).
//!
//! `cargo run --release --example ok_server -- 127.0.0.1:PORT`

use cognito_authz::envoy::pb::auth::authorization_server::{Authorization, AuthorizationServer};
use cognito_authz::envoy::pb::auth::{CheckRequest, CheckResponse};
use cognito_authz::envoy::pb::rpc;
use tonic::{Request, Response, Status};

/// The same allocator as the service, so the ratio measures the service's work, not malloc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct AlwaysOk;

#[tonic::async_trait]
impl Authorization for AlwaysOk {
    async fn check(&self, _: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(CheckResponse { status: Some(rpc::Status::default()), ..Default::default() }))
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).expect("an address").parse().expect("host:port");
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(AlwaysOk))
        .serve(addr)
        .await
        .expect("serving");
}
