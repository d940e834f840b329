//! The Cognito API at the network edge: what the MFA gate asks of it ([`MfaSource`]) and what the
//! HTTP module and the admin route ask of it ([`UserCalls`]), behind traits so tests and dev mode
//! need no network and no AWS environment. The real client, through the official AWS SDK for Rust,
//! is `crate::aws::SdkCognito`: only the wiring names it.

use futures_util::future::BoxFuture;

/// What Cognito says about a user's MFA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaState {
    /// `SOFTWARE_TOKEN_MFA` is in the user's `UserMFASettingList`.
    Enrolled,
    /// No TOTP authenticator is enrolled.
    NotEnrolled,
    /// Disabled or deleted (or, for `GetUser`, the token was refused).
    Gone,
    /// The username now names another user: Cognito's `sub` for it is not the token's (the user was
    /// deleted and the name taken again). Their MFA state is not the token holder's.
    Replaced,
}

/// Why Cognito gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CognitoError {
    /// The user or token is not valid there.
    #[error("cognito refused: the user or token is not valid there")]
    Refused,
    /// Over the account's quota.
    #[error("cognito throttled the request")]
    Throttled,
    /// No answer within the deadline.
    #[error("cognito could not be reached in time")]
    Unreachable,
    /// An error we have no meaning for.
    #[error("cognito answered with an unexpected error")]
    Unexpected,
}

/// Who to ask about.
#[derive(Debug, Clone, Copy)]
pub struct User<'a> {
    /// The token's `username`.
    pub username: &'a str,
    /// The token's `sub`: the user Cognito finds by `username` must be this one.
    pub sub: &'a uuid::Uuid,
    /// The caller's own access token, for `GetUser`.
    pub access_token: &'a str,
}

/// What a source answers, later.
pub type Answer<'a> = BoxFuture<'a, Result<MfaState, CognitoError>>;

/// A source of MFA state.
pub trait MfaSource: Send + Sync + 'static {
    /// Whether `user` has enrolled TOTP MFA, as Cognito says now.
    fn mfa_state<'a>(&'a self, user: User<'a>) -> Answer<'a>;
    /// True when the lookup uses the caller's token, which then needs the
    /// `aws.cognito.signin.user.admin` scope.
    fn needs_admin_scope(&self) -> bool {
        false
    }
}

/// The user calls of the HTTP module (`/auth/me`, `/auth/logout`) and the admin route
/// (`/admin/revoke-user`).
pub trait UserCalls: Send + Sync + 'static {
    /// `GetUser`: the attributes of the token's user (`username` first).
    fn user_attributes<'a>(
        &'a self,
        access_token: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, CognitoError>>;
    /// `GlobalSignOut` with the user's own access token: no refreshed token comes back.
    fn global_sign_out<'a>(&'a self, access_token: &'a str) -> BoxFuture<'a, Result<(), CognitoError>>;
    /// `AdminUserGlobalSignOut`: signs a user out everywhere (AWS credentials needed).
    fn admin_global_sign_out<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<(), CognitoError>>;
}

/// How MFA state is read from Cognito.
#[derive(clap::ValueEnum, serde::Deserialize, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MfaLookup {
    /// `AdminGetUser`, signed with the service's AWS credentials (the standard chain).
    AdminGetUser,
    /// `GetUser` with the caller's own access token: no IAM permission needed.
    GetUser,
}
