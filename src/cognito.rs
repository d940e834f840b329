//! The Cognito API at the network edge: what the MFA gate asks of it ([`MfaSource`]) and what the
//! HTTP module and the admin route ask of it ([`UserCalls`]), behind traits so tests and dev mode
//! need no network and no AWS environment. The real client, through the official AWS SDK for Rust,
//! is `crate::aws::SdkCognito`: only the wiring names it.

use futures_util::future::BoxFuture;

/// What Cognito says about a user's MFA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaState {
    /// A factor the gate counts (`MfaFactors`; TOTP, `SOFTWARE_TOKEN_MFA`, by default) is in the
    /// user's `UserMFASettingList`.
    Enrolled,
    /// None of the counted factors is enrolled.
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

/// How a pool's issuer is written (`IssuerConfigurationType`).
#[derive(clap::ValueEnum, serde::Deserialize, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IssuerFormat {
    /// `https://cognito-idp.{region}.amazonaws.com/{user_pool_id}`: each region its own.
    #[default]
    Original,
    /// `https://issuer-cognito-idp.{primary region}.amazonaws.com/{user_pool_id}`: one for every
    /// region of a replicated pool.
    Updated,
}

/// A second factor Cognito records in `UserMFASettingList`.
#[derive(clap::ValueEnum, serde::Deserialize, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MfaFactor {
    /// An authenticator app (`SOFTWARE_TOKEN_MFA`).
    Totp,
    /// A code by text message (`SMS_MFA`).
    Sms,
    /// A code by email (`EMAIL_OTP`).
    Email,
}

impl MfaFactor {
    fn bit(self) -> u8 {
        match self {
            MfaFactor::Totp => 1,
            MfaFactor::Sms => 2,
            MfaFactor::Email => 4,
        }
    }

    /// Its name in `UserMFASettingList`.
    fn setting(self) -> &'static str {
        match self {
            MfaFactor::Totp => "SOFTWARE_TOKEN_MFA",
            MfaFactor::Sms => "SMS_MFA",
            MfaFactor::Email => "EMAIL_OTP",
        }
    }
}

/// The second factors the `mfa` gate counts: TOTP unless configured otherwise. A passkey never
/// appears in `UserMFASettingList` (Cognito requires another factor beside it), so it is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MfaFactors(u8);

impl Default for MfaFactors {
    fn default() -> MfaFactors {
        MfaFactors(MfaFactor::Totp.bit())
    }
}

/// The labels of each non-empty set, by its bits (TOTP 1, SMS 2, email 4).
const LABELS: [&str; 8] = ["", "totp", "sms", "totp,sms", "email", "totp,email", "sms,email", "totp,sms,email"];

impl MfaFactors {
    /// The factors listed; none listed is the default (TOTP).
    pub fn of(listed: &[MfaFactor]) -> MfaFactors {
        match listed.iter().fold(0, |bits, f| bits | f.bit()) {
            0 => MfaFactors::default(),
            bits => MfaFactors(bits),
        }
    }

    /// True when `UserMFASettingList` (as Cognito sends it) holds one of these factors.
    pub fn any_in(self, setting_list: &[String]) -> bool {
        [MfaFactor::Totp, MfaFactor::Sms, MfaFactor::Email]
            .into_iter()
            .any(|f| self.0 & f.bit() != 0 && setting_list.iter().any(|s| s == f.setting()))
    }

    /// `totp`, `totp,sms`, …: a fixed set of labels (metrics, the 403's body).
    pub fn label(self) -> &'static str {
        LABELS[usize::from(self.0 & 7)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_factor_counts_only_when_configured_as_the_api_reference_names_it() {
        // `UserMFASettingList` values from the API reference (AdminGetUser, GetUser).
        let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let totp = MfaFactors::default();
        assert!(totp.any_in(&list(&["SOFTWARE_TOKEN_MFA"])));
        assert!(!totp.any_in(&list(&["SMS_MFA", "EMAIL_OTP"])), "the seeds' rule: TOTP only");
        let any = MfaFactors::of(&[MfaFactor::Totp, MfaFactor::Sms, MfaFactor::Email]);
        assert!(any.any_in(&list(&["EMAIL_OTP"])) && any.any_in(&list(&["SMS_MFA"])));
        assert!(!any.any_in(&list(&[])) && !any.any_in(&list(&["WEB_AUTHN", "sms_mfa"])), "no passkey, exact names");
        assert_eq!((totp.label(), any.label()), ("totp", "totp,sms,email"));
        assert_eq!(MfaFactors::of(&[MfaFactor::Email, MfaFactor::Sms]).label(), "sms,email");
        assert_eq!(MfaFactors::of(&[]), totp);
    }
}
