//! Envoy's side: the generated protos, the ext_authz adapter (a `CheckRequest` into the neutral
//! request, the decision into a `CheckResponse`), the allow written straight to the wire, and the
//! gRPC service with its codec.

pub mod answer;
pub mod ext_authz;
pub mod grpc;
pub mod pb;
