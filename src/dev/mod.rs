//! `cognito-authz dev`: an in-process stand-in for a Cognito user pool, for development only.
//!
//! It keeps an RSA key in the data directory (mode 0600, so tokens survive a restart), serves its
//! JWKS on loopback, mints Cognito-shaped access tokens, and keeps a small user directory with
//! each user's MFA state. Its issuer lives under `cognito-authz.invalid`, which `serve` refuses.

pub mod hosted_ui;
pub mod oidc;
pub mod signing_key;
pub mod totp;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::pool::DEV_ISSUER_HOST;
pub use crate::dev::signing_key::SigningKey;

/// The issuer of dev tokens.
pub const DEV_ISSUER: &str = "https://cognito-authz.invalid/dev-pool";
/// The app client id of dev tokens.
pub const DEV_CLIENT_ID: &str = "cognito-authz-dev-client";

const KEY_FILE: &str = "dev-signing-key.pk8";
const USERS_FILE: &str = "dev-users.json";

/// A user of the dev directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevUser {
    /// The name it signs in with.
    pub username: String,
    /// Its `sub`.
    pub sub: Uuid,
    /// Its `cognito:groups`.
    pub groups: Vec<String>,
    /// True when the user has enrolled a TOTP authenticator.
    pub mfa: bool,
    /// The hosted UI's password (dev only: kept in clear in the data directory, printed by
    /// `dev users`).
    #[serde(default)]
    pub password: String,
    /// The enrolled authenticator's secret (base32), for the hosted UI's TOTP step.
    #[serde(default)]
    pub totp_secret: Option<String>,
}

/// The dev pool's state on disk.
#[derive(Debug)]
pub struct DevPool {
    dir: PathBuf,
    key: SigningKey,
}

impl DevPool {
    /// Opens the data directory, creating the key and the user directory on first use.
    pub fn open(dir: &Path) -> anyhow::Result<DevPool> {
        create_private_dir(dir)?;
        let key_path = dir.join(KEY_FILE);
        let read = |path: &Path| fs::read(path).with_context(|| format!("reading {}", path.display()));
        let der = if key_path.exists() {
            read(&key_path)?
        } else {
            let der = SigningKey::generate("pending")?.pkcs8()?;
            match publish_private(&key_path, &der) {
                Ok(()) => der,
                // Another dev process (the server, or `dev token` run beside it) made the key
                // first: use that one, so every process signs with the same key.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&key_path)?,
                Err(e) => return Err(e).with_context(|| format!("creating {}", key_path.display())),
            }
        };
        let key = SigningKey::from_pkcs8(&der, &kid_for(&der))?;
        let pool = DevPool { dir: dir.to_owned(), key };
        if !pool.users_path().exists() {
            pool.save_users(&default_users())?;
        }
        // A directory from before the hosted UI: give its users passwords and secrets once.
        let mut users = pool.users()?;
        if users.iter().any(|u| u.password.is_empty() || (u.mfa && u.totp_secret.is_none())) {
            for user in &mut users {
                complete(user);
            }
            pool.save_users(&users)?;
        }
        Ok(pool)
    }

    /// The pool's signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The `sub` of an access token this pool signed that has not expired at `now` (for the hosted
    /// UI's userInfo; the service itself verifies tokens with its own verifier).
    pub fn verify_access_token(&self, token: &str, now: u64) -> Option<Uuid> {
        let (input, signature) = token.rsplit_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        self.key.verifies(input.as_bytes(), &signature).then_some(())?;
        let payload = URL_SAFE_NO_PAD.decode(input.split_once('.')?.1).ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
        let live = claims["exp"].as_u64().is_some_and(|exp| exp > now) && claims["token_use"] == "access";
        live.then(|| claims["sub"].as_str()?.parse().ok())?
    }

    /// The JWK Set document served to the verifier.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.key.jwk()] })
    }

    /// Every user of the directory.
    pub fn users(&self) -> anyhow::Result<Vec<DevUser>> {
        let text = fs::read_to_string(self.users_path()).context("reading the dev user directory")?;
        serde_json::from_str(&text).context("the dev user directory is not valid json")
    }

    /// One user, by name.
    pub fn user(&self, username: &str) -> anyhow::Result<DevUser> {
        let users = self.users()?;
        let known: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
        let known = known.join(", ");
        users
            .into_iter()
            .find(|u| u.username == username)
            .with_context(|| format!("no dev user {username:?} (known: {known})"))
    }

    /// Sets a user's MFA enrolment (`dev mfa bob on` keeps or makes a secret; the hosted UI's
    /// enrolment page passes the one the user's authenticator holds).
    pub fn set_mfa(&self, username: &str, enrolled: bool) -> anyhow::Result<()> {
        self.enrol(username, enrolled, None)
    }

    /// Enrols (or un-enrols) a user, with the authenticator's secret when one was verified.
    pub fn enrol(&self, username: &str, enrolled: bool, secret: Option<String>) -> anyhow::Result<()> {
        let mut users = self.users()?;
        let user =
            users.iter_mut().find(|u| u.username == username).with_context(|| format!("no dev user {username:?}"))?;
        user.mfa = enrolled;
        if secret.is_some() {
            user.totp_secret = secret;
        }
        complete(user);
        self.save_users(&users)
    }

    /// A Cognito-shaped access token for `user`, valid from `now` for `lifetime` seconds, from a
    /// sign-in of its own.
    pub fn access_token(&self, user: &DevUser, now: u64, lifetime: u64) -> String {
        let session = Session { origin_jti: Uuid::new_v4(), auth_time: now, scope: "aws.cognito.signin.user.admin" };
        self.session_access_token(user, &session, now, lifetime)
    }

    /// An access token of a sign-in (`origin_jti`, `auth_time` and scope survive refreshes).
    pub fn session_access_token(&self, user: &DevUser, session: &Session<'_>, now: u64, lifetime: u64) -> String {
        let mut claims = serde_json::json!({
            "sub": user.sub, "iss": DEV_ISSUER, "client_id": DEV_CLIENT_ID, "origin_jti": session.origin_jti,
            "event_id": Uuid::new_v4(), "token_use": "access", "scope": session.scope,
            "auth_time": session.auth_time, "exp": now + lifetime, "iat": now, "jti": Uuid::new_v4(),
            "username": user.username,
        });
        if !user.groups.is_empty() {
            claims["cognito:groups"] = serde_json::json!(user.groups);
        }
        self.key.sign(&claims)
    }

    /// The ID token of a sign-in, as Cognito shapes it (`aud` is the client, `token_use` `id`).
    pub fn session_id_token(&self, user: &DevUser, session: &Session<'_>, now: u64, lifetime: u64) -> String {
        let claims = serde_json::json!({
            "sub": user.sub, "iss": DEV_ISSUER, "aud": DEV_CLIENT_ID, "origin_jti": session.origin_jti,
            "event_id": Uuid::new_v4(), "token_use": "id", "auth_time": session.auth_time, "exp": now + lifetime,
            "iat": now, "jti": Uuid::new_v4(), "cognito:username": user.username,
            "email": format!("{}@dev.invalid", user.username), "email_verified": true,
        });
        self.key.sign(&claims)
    }

    fn users_path(&self) -> PathBuf {
        self.dir.join(USERS_FILE)
    }

    fn save_users(&self, users: &[DevUser]) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(users)?;
        // A name of this process's own, so two dev processes saving at once do not share one.
        let tmp = self.dir.join(format!("{USERS_FILE}.{}.tmp", std::process::id()));
        fs::write(&tmp, text)?;
        fs::rename(&tmp, self.users_path()).context("saving the dev user directory")
    }
}

/// One sign-in: what every token minted from it carries.
#[derive(Debug, Clone)]
pub struct Session<'a> {
    /// The sign-in the token belongs to.
    pub origin_jti: Uuid,
    /// When the user signed in.
    pub auth_time: u64,
    /// The token's `scope`.
    pub scope: &'a str,
}

fn default_users() -> Vec<DevUser> {
    let user = |name: &str, groups: Vec<String>, mfa| {
        let mut user = DevUser {
            username: name.into(),
            sub: Uuid::new_v4(),
            groups,
            mfa,
            password: String::new(),
            totp_secret: None,
        };
        complete(&mut user);
        user
    };
    vec![user("alice", vec!["admin".into()], true), user("bob", vec![], false)]
}

/// Gives a user what the hosted UI needs: a password, and a secret when they have enrolled.
fn complete(user: &mut DevUser) {
    if user.password.is_empty() {
        user.password = format!("dev-{}", &URL_SAFE_NO_PAD.encode(random_bytes::<12>()));
    }
    if user.mfa && user.totp_secret.is_none() {
        user.totp_secret = Some(crate::dev::totp::new_secret(random_bytes()));
    }
}

/// Bytes from the system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source");
    bytes
}

/// The `kid` of a stored key: derived from it, so it is stable across restarts.
fn kid_for(pkcs8: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pkcs8);
    format!("dev-{}", &URL_SAFE_NO_PAD.encode(digest.as_ref())[..16])
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    crate::private_fs::create_dir(dir).with_context(|| format!("creating data directory {}", dir.display()))
}

/// Writes `bytes` to a private (0600) file at `path`, which must not exist yet. The bytes go to a
/// file of this caller's own first and are then linked into place, so a reader never sees a
/// half-written key, and two processes racing get one winner (the loser sees `AlreadyExists`).
fn publish_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
    let written =
        crate::private_fs::options().write(true).create(true).truncate(true).open(&staging).and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
    let linked = written.and_then(|()| fs::hard_link(&staging, path));
    let _ = fs::remove_file(&staging);
    linked
}

/// The warning printed whenever dev mode starts.
pub fn warning() -> String {
    format!(
        "DEVELOPMENT MODE: tokens are signed by a local key and issued by {DEV_ISSUER}. \
         Never use this in production; `serve` refuses any issuer on {DEV_ISSUER_HOST}."
    )
}

/// Dev mode answers MFA state from its user directory, read afresh each time so that
/// `cognito-authz dev mfa bob on` takes effect without a restart (after the gate's cache).
impl crate::cognito::MfaSource for DevPool {
    fn mfa_state<'a>(&'a self, user: crate::cognito::User<'a>) -> crate::cognito::Answer<'a> {
        use crate::cognito::{CognitoError, MfaState};
        let state = match self.users() {
            Ok(users) => match users.iter().find(|u| u.username == user.username) {
                Some(u) if u.sub != *user.sub => Ok(MfaState::Replaced),
                Some(u) if u.mfa => Ok(MfaState::Enrolled),
                Some(_) => Ok(MfaState::NotEnrolled),
                None => Ok(MfaState::Gone),
            },
            Err(_) => Err(CognitoError::Unexpected),
        };
        Box::pin(async move { state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_racing_to_create_the_key_end_up_with_one_key() {
        let dir = std::env::temp_dir().join(format!("cognito-authz-dev-race-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let kids: Vec<String> = std::thread::scope(|scope| {
            let opens: Vec<_> =
                (0..3).map(|_| scope.spawn(|| DevPool::open(&dir).map(|pool| pool.key().kid().to_owned()))).collect();
            opens.into_iter().map(|open| open.join().unwrap().expect("every opener succeeds")).collect()
        });
        assert!(kids.windows(2).all(|pair| pair[0] == pair[1]), "{kids:?}");
        let left: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!left.iter().any(|name| name.to_string_lossy().ends_with(".tmp")), "{left:?}");
        let _ = fs::remove_dir_all(&dir);
    }
}
