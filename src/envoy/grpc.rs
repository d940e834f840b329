//! The `envoy.service.auth.v3.Authorization` gRPC service, written by hand around `ExtAuthz` so
//! that an allow goes to the wire through `answer::Allow` (pre-encoded parts, no message built),
//! where the generated server would take a `CheckResponse` and encode it field by field. The
//! request side is the generated `CheckRequest`, decoded by prost as before.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Status, body::Body};

use crate::clock::unix_now;
use crate::envoy::ext_authz::{Answer, ExtAuthz};
use crate::envoy::pb::auth::CheckRequest;

const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The Authorization service, for `tonic::transport::Server::add_service`.
#[derive(Clone)]
pub struct AuthorizationService {
    ext_authz: Arc<ExtAuthz>,
}

crate::opaque_debug!(AuthorizationService);

impl AuthorizationService {
    /// Serves `ext_authz`.
    pub fn new(ext_authz: ExtAuthz) -> AuthorizationService {
        AuthorizationService { ext_authz: Arc::new(ext_authz) }
    }
}

impl NamedService for AuthorizationService {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
}

impl<B> Service<http::Request<B>> for AuthorizationService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != CHECK_PATH {
            return Box::pin(async {
                let mut response = http::Response::new(Body::default());
                response.headers_mut().insert(Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
                response.headers_mut().insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                Ok(response)
            });
        }
        let check = Check(self.ext_authz.clone());
        Box::pin(async move { Ok(Grpc::new(AnswerCodec).unary(check, req).await) })
    }
}

struct Check(Arc<ExtAuthz>);

impl UnaryService<CheckRequest> for Check {
    type Response = Answer;
    type Future = BoxFuture<'static, Result<tonic::Response<Answer>, Status>>;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let ext_authz = self.0.clone();
        Box::pin(async move {
            let answer = ext_authz.check_traced(request.get_ref(), Some(request.metadata()), unix_now()).await;
            Ok(tonic::Response::new(answer))
        })
    }
}

/// Writes `Answer`s, reads `CheckRequest`s.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerCodec;

impl Codec for AnswerCodec {
    type Encode = Answer;
    type Decode = CheckRequest;
    type Encoder = AnswerCodec;
    type Decoder = AnswerCodec;

    fn encoder(&mut self) -> AnswerCodec {
        AnswerCodec
    }

    fn decoder(&mut self) -> AnswerCodec {
        AnswerCodec
    }
}

impl Encoder for AnswerCodec {
    type Item = Answer;
    type Error = Status;

    fn encode(&mut self, answer: Answer, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(answer.encoded_len());
        answer.encode(buf);
        Ok(())
    }
}

impl Decoder for AnswerCodec {
    type Item = CheckRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<CheckRequest>, Status> {
        CheckRequest::decode(buf).map(Some).map_err(|error| Status::internal(error.to_string()))
    }
}
