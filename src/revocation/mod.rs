//! The revocation list: tokens that still verify by signature but must no longer pass.
//!
//! Cognito cannot help here: after `RevokeToken` or `GlobalSignOut` an access token still verifies
//! until it expires. So every decision consults this list, kept in memory (no store round trip on
//! the hot path) and fed by a store that never forgets: a local file fsynced before a logout is
//! acknowledged, or Redis shared by every replica.

pub mod file;
pub mod redis;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::authz::error::{Denied, Invalid, Unavailable};
use crate::verify::claims::{Claims, Identity, TokenId};

/// One revocation. Each lives until `until` (Unix seconds), after which it can match nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// One access token, by its `jti`; lives until that token's `exp`.
    Jti {
        /// The token's `jti`.
        id: String,
        /// Its `exp`.
        until: u64,
        /// The issuer's name, as entries were scoped before they named the `iss`; absent for
        /// `default` (the single pool). Read, never written.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
        /// The issuer's `iss`, which a renamed issuer keeps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iss: Option<String>,
    },
    /// Every access token minted from one sign-in, by `origin_jti`; lives until the refresh token
    /// of that sign-in could have expired.
    Origin {
        /// The sign-in's `origin_jti`.
        id: String,
        /// When that sign-in's refresh token could have expired.
        until: u64,
        /// The issuer's name (read, never written); absent for `default`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
        /// The issuer's `iss`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iss: Option<String>,
    },
    /// Every token of a user whose `auth_time` is at or before `before`.
    User {
        /// The user's `sub`.
        sub: Uuid,
        /// Sign-ins at or before this (Unix seconds) are revoked.
        before: u64,
        /// When the last such sign-in's refresh token could have expired.
        until: u64,
    },
    /// Every token of an OIDC provider's user (whose `sub` is any text, unique at that provider
    /// only) issued at or before `before`.
    Subject {
        /// The provider's `iss`.
        iss: String,
        /// The user's `sub` there.
        sub: String,
        /// Tokens issued (or signed in, by `auth_time`) at or before this are revoked.
        before: u64,
        /// When the entry may be forgotten.
        until: u64,
    },
}

impl Entry {
    /// When the entry may be forgotten (Unix seconds).
    pub fn until(&self) -> u64 {
        match self {
            Entry::Jti { until, .. }
            | Entry::Origin { until, .. }
            | Entry::User { until, .. }
            | Entry::Subject { until, .. } => *until,
        }
    }
}

/// Token ids by scope (`Scope`): the same `jti` text from two issuers is two entries.
type ByScope = HashMap<Box<str>, HashMap<TokenId, u64>>;

/// The scope of entries that name no issuer: written by the single pool before entries were
/// scoped. They match the tokens of every Cognito pool, never an OIDC provider's: a pool's `jti`s
/// are random UUIDs that no caller chooses, so they cannot meet another pool's by accident or
/// design, and the entry survives the pool's move into an `[[issuer]]` table under any name.
const ANY_COGNITO_POOL: &str = "";

/// The scope of an entry that names an issuer no longer configured: kept (written back as it came)
/// but matching nothing.
const UNKNOWN_NAME: &str = "name:";

/// One issuer's revoked subjects: `sub` → (before, until).
type SubjectsOf = HashMap<Box<str>, (u64, u64)>;

/// The entries in force, in memory. Pure: time is passed in. Token entries are scoped by their
/// issuer's `iss`, which stays when a configuration renames the issuer. User entries are not
/// scoped: they name a Cognito `sub`, a UUID no two pools share.
#[derive(Debug, Default)]
pub struct RevocationList {
    jti: ByScope,
    origin: ByScope,
    users: HashMap<Uuid, (u64, u64)>,
    /// OIDC users by (`iss`, `sub`): (before, until).
    subjects: HashMap<Box<str>, SubjectsOf>,
    /// Issuer names and their `iss`, to read entries that were scoped by name.
    names: Arc<HashMap<String, String>>,
}

/// Writes a scope back as the entry fields `issuer` and `iss`.
fn unscope(scope: &str) -> (Option<String>, Option<String>) {
    match scope {
        ANY_COGNITO_POOL => (None, None),
        _ => match scope.strip_prefix(UNKNOWN_NAME) {
            Some(name) => (Some(name.to_owned()), None),
            None => (None, Some(scope.to_owned())),
        },
    }
}

fn flatten(ids: &ByScope) -> impl Iterator<Item = (Option<String>, Option<String>, String, u64)> + '_ {
    ids.iter().flat_map(|(scope, ids)| {
        let (issuer, iss) = unscope(scope);
        ids.iter().map(move |(id, until)| (issuer.clone(), iss.clone(), id.to_string(), *until))
    })
}

impl RevocationList {
    /// An empty list that reads entries scoped by an issuer's name as scoped by its `iss`
    /// (`names`: name to `iss`, the configured issuers).
    pub fn naming(names: Arc<HashMap<String, String>>) -> RevocationList {
        RevocationList { names, ..RevocationList::default() }
    }

    /// Where an entry belongs: the `iss` it names, else the `iss` of the issuer it names, else
    /// (no issuer at all) every Cognito pool.
    fn scope(&self, issuer: Option<String>, iss: Option<String>) -> Box<str> {
        match (iss, issuer) {
            (Some(iss), _) => iss.into(),
            (None, Some(name)) => match self.names.get(&name) {
                Some(iss) => iss.as_str().into(),
                None => format!("{UNKNOWN_NAME}{name}").into(),
            },
            // Before entries named the `iss`, the single pool's left out its name, `default`.
            (None, None) => match self.names.get(crate::verify::claims::DEFAULT_ISSUER) {
                Some(iss) => iss.as_str().into(),
                None => ANY_COGNITO_POOL.into(),
            },
        }
    }

    fn slot(ids: &mut ByScope, scope: Box<str>, id: String) -> &mut u64 {
        ids.entry(scope).or_default().entry(id.into()).or_default()
    }

    /// Adds an entry.
    pub fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Jti { id, until, issuer, iss } => {
                let scope = self.scope(issuer, iss);
                keep_latest(Self::slot(&mut self.jti, scope, id), until);
            }
            Entry::Origin { id, until, issuer, iss } => {
                let scope = self.scope(issuer, iss);
                keep_latest(Self::slot(&mut self.origin, scope, id), until);
            }
            Entry::User { sub, before, until } => {
                let slot = self.users.entry(sub).or_default();
                *slot = (slot.0.max(before), slot.1.max(until));
            }
            Entry::Subject { iss, sub, before, until } => {
                let slot = self.subjects.entry(iss.into()).or_default().entry(sub.into()).or_default();
                *slot = (slot.0.max(before), slot.1.max(until));
            }
        }
    }

    /// The user `entry` revokes, when it revokes sessions this list does not already refuse.
    fn newly_revoked_user(&self, entry: &Entry) -> Option<Uuid> {
        match entry {
            Entry::User { sub, before, .. } if self.users.get(sub).is_none_or(|(known, _)| known < before) => {
                Some(*sub)
            }
            _ => None,
        }
    }

    /// Applies `entries`, returning the users whose revocation is news here.
    fn apply_all(&mut self, entries: impl IntoIterator<Item = Entry>) -> Vec<Uuid> {
        let mut users = Vec::new();
        for entry in entries {
            users.extend(self.newly_revoked_user(&entry));
            self.apply(entry);
        }
        users
    }

    /// True when a token with these claims has been revoked, at Unix time `now`.
    pub fn revokes(&self, claims: &Claims, now: u64) -> bool {
        let live = |until: Option<&u64>| until.is_some_and(|u| *u > now);
        let scopes = [Some(&*claims.iss), claims.from_cognito().then_some(ANY_COGNITO_POOL)];
        for scope in scopes.into_iter().flatten() {
            let (jti, origin) = (self.jti.get(scope), self.origin.get(scope));
            if claims.jti.as_ref().is_some_and(|j| live(jti.and_then(|ids| ids.get(j)))) {
                return true;
            }
            if claims.origin_jti.as_ref().is_some_and(|o| live(origin.and_then(|ids| ids.get(o)))) {
                return true;
            }
        }
        if let Identity::User { sub, .. } = &claims.identity
            && let Some((before, until)) = self.users.get(sub)
            && *until > now
        {
            // `auth_time` survives refreshes; `iat` does not. Without it, `iat` is the best we have.
            // Inclusive: a session that began in the very second of the revocation is refused too
            // (Unix seconds cannot order the two; the user signs in again a second later).
            let signed_in = claims.auth_time.or(claims.iat).unwrap_or(0);
            return signed_in <= *before;
        }
        if let Identity::Subject { sub, .. } = &claims.identity
            && let Some((before, until)) = self.subjects.get(&*claims.iss).and_then(|subs| subs.get(&**sub))
            && *until > now
        {
            return claims.auth_time.or(claims.iat).unwrap_or(0) <= *before;
        }
        false
    }

    /// Drops entries that can no longer match anything.
    pub fn purge(&mut self, now: u64) {
        for ids in [&mut self.jti, &mut self.origin] {
            ids.values_mut().for_each(|ids| ids.retain(|_, until| *until > now));
            ids.retain(|_, ids| !ids.is_empty());
        }
        self.users.retain(|_, (_, until)| *until > now);
        self.subjects.values_mut().for_each(|subs| subs.retain(|_, (_, until)| *until > now));
        self.subjects.retain(|_, subs| !subs.is_empty());
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        let count = |ids: &ByScope| ids.values().map(HashMap::len).sum::<usize>();
        count(&self.jti)
            + count(&self.origin)
            + self.users.len()
            + self.subjects.values().map(HashMap::len).sum::<usize>()
    }

    /// Every entry, as the store would hold it.
    pub fn entries(&self) -> Vec<Entry> {
        let jti = flatten(&self.jti).map(|(issuer, iss, id, until)| Entry::Jti { id, until, issuer, iss });
        let origin = flatten(&self.origin).map(|(issuer, iss, id, until)| Entry::Origin { id, until, issuer, iss });
        let users =
            self.users.iter().map(|(sub, (before, until))| Entry::User { sub: *sub, before: *before, until: *until });
        let subjects = self.subjects.iter().flat_map(|(iss, subs)| {
            subs.iter().map(move |(sub, (before, until))| Entry::Subject {
                iss: iss.to_string(),
                sub: sub.to_string(),
                before: *before,
                until: *until,
            })
        });
        jti.chain(origin).chain(users).chain(subjects).collect()
    }

    /// True without entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn keep_latest(slot: &mut u64, until: u64) {
    *slot = (*slot).max(until);
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be read or written.
    #[error("revocation file: {0}")]
    Io(#[from] std::io::Error),
    /// Redis refused or could not be reached.
    #[error("revocation store (redis): {0}")]
    Redis(String),
    /// Redis holds the entry, but fewer replicas than required acknowledged it in time: it could
    /// be lost with the primary, so it is not acknowledged.
    #[error("revocation store (redis): {acknowledged} of {wanted} replicas acknowledged within {within:?}")]
    NotDurable {
        /// Replicas that hold it.
        acknowledged: u32,
        /// Replicas required.
        wanted: u32,
        /// How long it waited.
        within: Duration,
    },
}

/// What a store answers, later.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Where revocations are kept so that none is lost.
pub trait RevocationStore: Send + Sync + 'static {
    /// Every entry still in force at `now`.
    fn load(&self, now: u64) -> StoreFuture<'_, Vec<Entry>>;
    /// Records entries; `Ok` only once they will survive a crash (file) or are in Redis.
    fn append<'a>(&'a self, entries: &'a [Entry]) -> StoreFuture<'a, ()>;
    /// Drops expired entries from the store itself.
    fn compact(&self, now: u64) -> StoreFuture<'_, ()>;
}

/// The revocation list in force, shared by every decision, and its store.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

crate::opaque_debug!(Revocations);

struct Inner {
    list: RwLock<RevocationList>,
    store: Arc<dyn RevocationStore>,
    allow_unrevocable: bool,
    /// When set, decisions answer 503 once the local copy has not been confirmed for this long.
    max_staleness: Option<Duration>,
    /// Milliseconds since `epoch` when the store last confirmed our copy.
    confirmed_ms: AtomicU64,
    epoch: tokio::time::Instant,
    loaded: watch::Sender<bool>,
    /// Told of each user revocation this replica learns; set once, at wiring.
    on_user_revoked: OnceLock<UserRevokedListener>,
    /// The configured issuers' names and `iss`, for entries scoped by name (`naming_issuers`).
    names: Arc<HashMap<String, String>>,
}

/// What `Revocations::on_user_revoked` is given.
type UserRevokedListener = Box<dyn Fn(Uuid) -> BoxFuture<'static, ()> + Send + Sync>;

impl Revocations {
    /// `max_staleness` is for shared stores (Redis); a local file is always current.
    pub fn new(
        store: Arc<dyn RevocationStore>,
        allow_unrevocable: bool,
        max_staleness: Option<Duration>,
    ) -> Revocations {
        Revocations {
            inner: Arc::new(Inner {
                list: RwLock::new(RevocationList::default()),
                store,
                allow_unrevocable,
                max_staleness,
                confirmed_ms: AtomicU64::new(0),
                epoch: tokio::time::Instant::now(),
                loaded: watch::channel(false).0,
                on_user_revoked: OnceLock::new(),
                names: Arc::default(),
            }),
        }
    }

    /// Reads entries scoped by an issuer's name (as this service wrote them before it scoped them
    /// by `iss`) as those of the issuer of that name here (`names`: name and `iss` of each
    /// configured issuer). Call before the list is shared or loaded.
    pub fn naming_issuers(mut self, names: impl IntoIterator<Item = (String, String)>) -> Revocations {
        let names: Arc<HashMap<String, String>> = Arc::new(names.into_iter().collect());
        let inner = Arc::get_mut(&mut self.inner).expect("issuers are named before the list is shared");
        inner.list = RwLock::new(RevocationList::naming(names.clone()));
        inner.names = names;
        self
    }

    /// Sets what to do about each user whose revocation this replica learns, however it learns it
    /// (its own admin route, another replica's publish, a reload or resync): per-user state cached
    /// elsewhere (the MFA answer) must not outlive the sessions it was cached for. It is awaited
    /// before the call that learnt the revocation returns. Only the first call has an effect.
    pub fn on_user_revoked<F>(&self, listener: impl Fn(Uuid) -> F + Send + Sync + 'static)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let boxed: UserRevokedListener = Box::new(move |sub| Box::pin(listener(sub)));
        if self.inner.on_user_revoked.set(boxed).is_err() {
            tracing::warn!("a second user-revocation listener was ignored");
        }
    }

    async fn tell_revoked_users(&self, users: Vec<Uuid>) {
        if let Some(listener) = self.inner.on_user_revoked.get() {
            for sub in users {
                listener(sub).await;
            }
        }
    }

    /// Refuses revoked tokens, and tokens that could never be revoked unless allowed.
    pub fn check(&self, claims: &Claims, now: u64) -> Result<(), Denied> {
        if claims.jti.is_none() && claims.origin_jti.is_none() && !self.inner.allow_unrevocable {
            return Err(Invalid::Unrevocable.into());
        }
        if self.is_stale() {
            return Err(Unavailable::RevocationsStale.into());
        }
        if self.inner.list.read().expect("revocation lock").revokes(claims, now) {
            return Err(Invalid::Revoked.into());
        }
        Ok(())
    }

    /// Records entries in the store, then in force here. `Err` means nothing may be acknowledged.
    pub async fn revoke(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        self.inner.store.append(&entries).await?;
        self.apply(entries).await;
        Ok(())
    }

    /// Loads the whole list from the store, replacing the local copy.
    pub async fn reload(&self, now: u64) -> Result<usize, StoreError> {
        let entries = self.inner.store.load(now).await?;
        let mut list = RevocationList::naming(self.inner.names.clone());
        let users = {
            let mut known = self.inner.list.write().expect("revocation lock");
            let users = entries.iter().filter_map(|e| known.newly_revoked_user(e)).collect();
            list.apply_all(entries);
            std::mem::swap(&mut *known, &mut list);
            users
        };
        self.tell_revoked_users(users).await;
        self.confirm();
        self.inner.loaded.send_replace(true);
        Ok(self.len())
    }

    /// Merges the store's list into ours, and writes back what the store lacks (a Redis that lost
    /// its data, say): a replica never forgets a revocation that has not expired.
    pub async fn resync(&self, now: u64) -> Result<usize, StoreError> {
        let stored = self.inner.store.load(now).await?;
        let (missing, users): (Vec<Entry>, _) = {
            let mut list = self.inner.list.write().expect("revocation lock");
            let known: std::collections::HashSet<String> =
                stored.iter().map(|e| serde_json::to_string(e).expect("entries serialise")).collect();
            let users = list.apply_all(stored);
            let missing = list
                .entries()
                .into_iter()
                .filter(|e| e.until() > now && !known.contains(&serde_json::to_string(e).expect("entries serialise")))
                .collect();
            (missing, users)
        };
        self.tell_revoked_users(users).await;
        if !missing.is_empty() {
            tracing::warn!(
                entries = missing.len(),
                "the revocation store lacked entries this replica knows; writing them back"
            );
            match self.inner.store.append(&missing).await {
                Ok(()) => {}
                // Written on the primary, not yet on enough replicas: this copy is whole all the
                // same, and the next resync writes back again whatever a failover loses. Refusing
                // to confirm would turn a Redis shard without a replica into 503 for every decision.
                Err(error @ StoreError::NotDurable { .. }) => {
                    tracing::warn!(%error, "entries written back, but not yet on enough replicas")
                }
                Err(error) => return Err(error),
            }
        }
        self.confirm();
        self.inner.loaded.send_replace(true);
        Ok(self.len())
    }

    /// Entries learnt from elsewhere (another replica, through the store).
    pub async fn apply(&self, entries: Vec<Entry>) {
        let users = self.inner.list.write().expect("revocation lock").apply_all(entries);
        self.tell_revoked_users(users).await;
    }

    /// The store has just confirmed that our copy is current.
    pub fn confirm(&self) {
        let ms = self.inner.epoch.elapsed().as_millis() as u64;
        self.inner.confirmed_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// How long since the shared store last confirmed our copy; zero for a store that is always
    /// current (a local file).
    pub fn sync_age(&self) -> Duration {
        if self.inner.max_staleness.is_none() {
            return Duration::ZERO;
        }
        let confirmed = self.inner.confirmed_ms.load(Ordering::Relaxed);
        Duration::from_millis((self.inner.epoch.elapsed().as_millis() as u64).saturating_sub(confirmed))
    }

    fn is_stale(&self) -> bool {
        let Some(bound) = self.inner.max_staleness else { return false };
        let confirmed = self.inner.confirmed_ms.load(Ordering::Relaxed);
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        confirmed == 0 || now.saturating_sub(confirmed) > bound.as_millis() as u64
    }

    /// Drops expired entries here and in the store.
    pub async fn purge(&self, now: u64) -> Result<(), StoreError> {
        self.inner.list.write().expect("revocation lock").purge(now);
        self.inner.store.compact(now).await
    }

    /// Becomes true once the list has been loaded.
    pub fn loaded(&self) -> watch::Receiver<bool> {
        self.inner.loaded.subscribe()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.inner.list.read().expect("revocation lock").len()
    }

    /// True without entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The entries a logout writes: the token itself, and every token of its sign-in. The token's
/// entry lives as long as the token is accepted: `exp` plus the verifier's `leeway`.
pub fn logout_entries(claims: &Claims, refresh_token_lifetime: Duration, leeway: u64, now: u64) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(2);
    // Scoped by `iss`, which a renamed issuer keeps (a replica of the version before reads the
    // entry as the single pool's, which is what it is with the single-pool flags).
    let iss = || Some(claims.iss.to_string());
    if let Some(jti) = &claims.jti {
        let until = claims.exp.saturating_add(leeway);
        entries.push(Entry::Jti { id: jti.to_string(), until, issuer: None, iss: iss() });
    }
    if let Some(origin) = &claims.origin_jti {
        let signed_in = claims.auth_time.or(claims.iat).unwrap_or(now);
        let until = signed_in.max(now).saturating_add(refresh_token_lifetime.as_secs());
        entries.push(Entry::Origin { id: origin.to_string(), until, issuer: None, iss: iss() });
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const ISS: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Staff";
    const OTHER_POOL: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other";
    const PARTNERS: &str = "https://idp.partner.example";

    /// A Redis that lacks every entry and takes writes only on its primary (`WAIT` unmet), or
    /// (`down`) takes none.
    struct ShortOfReplicas {
        down: bool,
    }

    impl RevocationStore for ShortOfReplicas {
        fn load(&self, _now: u64) -> StoreFuture<'_, Vec<Entry>> {
            Box::pin(async { Ok(vec![]) })
        }

        fn append<'a>(&'a self, _entries: &'a [Entry]) -> StoreFuture<'a, ()> {
            let down = self.down;
            Box::pin(async move {
                match down {
                    true => Err(StoreError::Redis("connection refused".into())),
                    false => {
                        Err(StoreError::NotDurable { acknowledged: 0, wanted: 1, within: Duration::from_millis(500) })
                    }
                }
            })
        }

        fn compact(&self, _now: u64) -> StoreFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn a_write_back_no_replica_acknowledged_still_leaves_the_copy_whole_and_confirmed() {
        let revoked = claims("j-revoked", "o-1", NOW - 60);
        let entry = Entry::Jti { id: "j-revoked".into(), until: NOW + 600, issuer: None, iss: Some(ISS.into()) };
        for down in [false, true] {
            let store = Arc::new(ShortOfReplicas { down });
            let revocations = Revocations::new(store, false, Some(Duration::from_secs(10)));
            revocations.apply(vec![entry.clone()]).await;
            let resynced = revocations.resync(NOW).await;
            if down {
                assert!(resynced.is_err(), "a write-back that reached no Redis is retried");
                continue;
            }
            assert_eq!(resynced.ok(), Some(1));
            assert!(matches!(revocations.check(&revoked, NOW), Err(Denied::Unauthenticated(Invalid::Revoked))));
            assert!(revocations.check(&claims("j-live", "o-2", NOW - 60), NOW).is_ok(), "confirmed, not stale");
        }
    }

    /// Claims of alice's token `jti`, from sign-in `origin` at `auth_time`.
    pub(super) fn claims(jti: &str, origin: &str, auth_time: u64) -> Claims {
        Claims {
            identity: Identity::User { sub: Uuid::from_u128(7), username: "alice".into() },
            client_id: "c".into(),
            groups: vec![].into(),
            scope: None,
            jti: Some(jti.into()),
            origin_jti: Some(origin.into()),
            exp: NOW + 600,
            iat: Some(auth_time),
            auth_time: Some(auth_time),
            mapped: Box::default(),
            issuer: 0,
            issuer_name: "default".into(),
            iss: Arc::from(ISS),
            second_factor: None,
        }
    }

    #[test]
    fn a_revoked_jti_or_origin_jti_matches_until_it_expires() {
        let mut list = RevocationList::default();
        list.apply(Entry::Jti { id: "j1".into(), until: NOW + 10, issuer: None, iss: None });
        list.apply(Entry::Origin { id: "o1".into(), until: NOW + 100, issuer: None, iss: None });
        assert!(list.revokes(&claims("j1", "o9", NOW), NOW));
        assert!(list.revokes(&claims("j2", "o1", NOW), NOW), "a sibling from the same sign-in");
        assert!(!list.revokes(&claims("j2", "o2", NOW), NOW));
        assert!(!list.revokes(&claims("j1", "o9", NOW), NOW + 10), "expired entries match nothing");
        list.purge(NOW + 50);
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn a_user_revocation_refuses_sessions_that_began_before_it() {
        let mut list = RevocationList::default();
        list.apply(Entry::User { sub: Uuid::from_u128(7), before: NOW, until: NOW + 1000 });
        assert!(list.revokes(&claims("j", "o", NOW - 1), NOW + 5));
        assert!(list.revokes(&claims("j", "o", NOW), NOW + 5), "the same second is refused");
        assert!(!list.revokes(&claims("j", "o", NOW + 1), NOW + 5), "a new sign-in passes");
    }

    #[test]
    fn logout_revokes_the_token_and_its_sign_in() {
        let c = claims("j1", "o1", NOW - 60);
        let entries = logout_entries(&c, Duration::from_secs(30 * 86400), 0, NOW);
        assert_eq!(
            entries,
            vec![
                Entry::Jti { id: "j1".into(), until: NOW + 600, issuer: None, iss: Some(ISS.into()) },
                Entry::Origin { id: "o1".into(), until: NOW + 30 * 86400, issuer: None, iss: Some(ISS.into()) }
            ]
        );
    }

    #[test]
    fn a_logged_out_token_stays_refused_for_as_long_as_the_leeway_accepts_it() {
        let mut c = claims("j1", "o1", NOW - 60);
        c.origin_jti = None;
        let mut list = RevocationList::default();
        for entry in logout_entries(&c, Duration::from_secs(30 * 86400), 30, NOW) {
            list.apply(entry);
        }
        assert!(list.revokes(&c, c.exp - 1), "before exp");
        assert!(list.revokes(&c, c.exp + 29), "past exp, still inside the 30 s leeway the verifier grants");
        assert!(!list.revokes(&c, c.exp + 30), "gone once the verifier itself refuses the token");
    }

    /// Alice's token from another issuer: another Cognito pool, or an OIDC provider.
    fn of(iss: &str, jti: &str) -> Claims {
        let oidc = iss == PARTNERS;
        let cognito = claims(jti, "o9", NOW);
        Claims {
            issuer: 1,
            issuer_name: if oidc { "partners" } else { "other" }.into(),
            iss: Arc::from(iss),
            second_factor: oidc.then_some(false),
            identity: match oidc {
                true => Identity::Subject { sub: "7".into(), username: "alice".into() },
                false => cognito.identity.clone(),
            },
            ..cognito
        }
    }

    fn names(pairs: &[(&str, &str)]) -> Arc<HashMap<String, String>> {
        Arc::new(pairs.iter().map(|(n, i)| (n.to_string(), i.to_string())).collect())
    }

    #[test]
    fn entries_are_scoped_by_iss_so_the_same_jti_from_two_issuers_never_collides() {
        let mut list = RevocationList::default();
        let logout = logout_entries(&claims("j1", "o1", NOW), Duration::from_secs(60), 0, NOW);
        let line = serde_json::to_string(&logout[0]).unwrap();
        assert_eq!(line, format!(r#"{{"kind":"jti","id":"j1","until":{},"iss":"{ISS}"}}"#, NOW + 600));
        logout.into_iter().for_each(|e| list.apply(e));
        assert!(list.revokes(&claims("j1", "o9", NOW), NOW), "the logged-out token");
        assert!(!list.revokes(&of(PARTNERS, "j1"), NOW), "a provider's j1 is another token");
        assert!(!list.revokes(&of(OTHER_POOL, "j1"), NOW), "so is another pool's");
        // A provider's logout never reaches the staff pool's token of the same jti.
        logout_entries(&of(PARTNERS, "j7"), Duration::from_secs(60), 0, NOW).into_iter().for_each(|e| list.apply(e));
        assert!(list.revokes(&of(PARTNERS, "j7"), NOW));
        assert!(!list.revokes(&claims("j7", "o7", NOW), NOW));
    }

    #[test]
    fn entries_survive_the_issuer_being_renamed_or_moved_into_a_table() {
        // Logged out under the single-pool flags, by the version that scoped entries by name
        // (the single pool's entries named none).
        let old: Entry = serde_json::from_str(&format!(r#"{{"kind":"jti","id":"j1","until":{}}}"#, NOW + 10)).unwrap();
        assert_eq!(old, Entry::Jti { id: "j1".into(), until: NOW + 10, issuer: None, iss: None });
        // Read again with the pool in an [[issuer]] table named staff, beside an OIDC provider.
        let mut tables = RevocationList::naming(names(&[("staff", ISS), ("partners", PARTNERS)]));
        tables.apply(old.clone());
        let staff = Claims { issuer_name: "staff".into(), ..claims("j1", "o9", NOW) };
        assert!(tables.revokes(&staff, NOW), "still refused after the move");
        assert!(!tables.revokes(&of(PARTNERS, "j1"), NOW), "never a provider's token: its jti is its choice");
        assert!(!tables.revokes(&claims("j2", "o9", NOW), NOW), "positive control: another jti passes");
        // Still the single pool: scoped to its iss.
        let mut single = RevocationList::naming(names(&[("default", ISS)]));
        single.apply(old);
        assert!(single.revokes(&claims("j1", "o9", NOW), NOW));
        assert_eq!(
            single.entries()[0],
            Entry::Jti { id: "j1".into(), until: NOW + 10, issuer: None, iss: Some(ISS.into()) }
        );
        // An entry scoped by a table's name, read after the table was renamed (same pool).
        let named: Entry =
            serde_json::from_str(&format!(r#"{{"kind":"origin","id":"o5","until":{},"issuer":"staff"}}"#, NOW + 10))
                .unwrap();
        let mut before = RevocationList::naming(names(&[("staff", ISS)]));
        before.apply(named.clone());
        assert!(before.revokes(&claims("j9", "o5", NOW), NOW), "the name is read as its iss");
        // Written back with the iss, it survives the rename.
        let mut renamed = RevocationList::naming(names(&[("employees", ISS)]));
        before.entries().into_iter().for_each(|e| renamed.apply(e));
        assert!(renamed.revokes(&claims("j9", "o5", NOW), NOW));
        // A name no longer configured is kept, as it came, and matches nothing.
        let mut gone = RevocationList::naming(names(&[("employees", ISS)]));
        gone.apply(named.clone());
        assert!(!gone.revokes(&claims("j9", "o5", NOW), NOW));
        assert_eq!(gone.entries(), vec![named]);
    }

    #[test]
    fn entries_round_trip_as_json_lines() {
        let e = Entry::User { sub: Uuid::from_u128(7), before: 1, until: 2 };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), e);
    }
}
