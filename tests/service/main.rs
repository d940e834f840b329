//! The service's integration tests, in one binary: one link after a change instead of eight, and
//! one copy of the shared helpers (`common`).

mod common;

mod cognito_today;
mod decisions;
mod forward_auth;
mod hostile;
mod http_module;
mod issuers;
mod layout;
mod observability;
mod policy_mfa;
mod promises;
mod properties;
mod secrets;
mod server;
mod settings;
mod tls;
