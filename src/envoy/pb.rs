//! The generated Envoy and Google protos, fenced off from hand-written code.

#[allow(clippy::all, dead_code, missing_docs, unreachable_pub, missing_debug_implementations, rustdoc::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/envoy_protos.rs"));
}

pub use generated::envoy::config::core::v3 as core;
pub use generated::envoy::service::auth::v3 as auth;
pub use generated::envoy::r#type::v3 as types;
pub use generated::google::rpc;
