//! Admin users and login sessions of the control room.
//!
//! - Users live in the database (`users`): a name and an argon2id password hash (PHC string,
//!   the `argon2` crate's defaults: 19 MiB, 2 passes, OWASP's recommendation). They are made
//!   with `onair user add NAME`, which may run while onair does: nothing here is cached.
//! - A login gives a session: 256 random bits in the `onair_session` cookie, of which only the
//!   SHA-256 is stored (`sessions`), plus a CSRF token the page sends back in `X-CSRF-Token` on
//!   every request that changes something. Sessions end at logout or after
//!   `http.session_ttl_hours`, and survive restarts.
//! - At most [`MAX_FAILED_LOGINS`] failed logins per client network per minute (an IPv4
//!   address, an IPv6 /64: one host picks any address of its /64 freely), and at most
//!   [`MAX_FAILED_LOGINS_PER_ACCOUNT`] per existing account from all networks together (a
//!   botnet cannot try a password per address); the next attempt is refused before the
//!   password is checked. The tables are bounded: when full, the network whose last attempt is
//!   oldest is forgotten, so a flood of addresses never locks out a new one.
//!
//! The windows are our own rather than a generic rate limiter's (e.g. `governor`) because a
//! successful login must not count: an attempt is reserved up front (so parallel attempts
//! cannot all pass before a failure is recorded) and given back on success.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rusqlite::OptionalExtension;
use sha2::Digest;

use crate::db::{Db, DbError};
use crate::net::client_net;

/// The session cookie's name.
pub const COOKIE: &str = "onair_session";
/// Failed logins a client network may make per [`FAILED_LOGIN_WINDOW`].
pub const MAX_FAILED_LOGINS: usize = 5;
/// Failed logins an existing account may take per [`FAILED_LOGIN_WINDOW`], from all networks.
pub const MAX_FAILED_LOGINS_PER_ACCOUNT: usize = 10;
pub const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Shortest password `onair user add` takes.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Client networks (and accounts) the failed-login tables remember at once; past this, entries
/// without a failure in the last minute are forgotten, then the one whose last failure is
/// oldest.
const MAX_TRACKED_ADDRESSES: usize = 10_000;
/// Password checks running at once (each takes ~19 MiB and a core for tens of ms); more are
/// refused, so a login flood cannot starve the stream of memory or CPU.
const MAX_CONCURRENT_CHECKS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("a user named {0:?} exists")]
    Exists(String),
    #[error("no user named {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong name or password")]
    Wrong,
    #[error("too many failed logins from this address: try again in {retry_in_s} s")]
    Throttled { retry_in_s: u64 },
    /// The same words as `Throttled`: the answer does not tell which names exist.
    #[error("too many failed logins from this address: try again in {retry_in_s} s")]
    AccountThrottled { retry_in_s: u64 },
    #[error("too many logins at once: try again in a moment")]
    Busy,
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// A logged-in session, as a request's cookie resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// Must come back in `X-CSRF-Token` on requests that change something.
    pub csrf: String,
}

/// A session made by [`Auth::login`]: `token` goes into the cookie and is not kept.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub session: Session,
    /// Seconds the cookie lives.
    pub max_age_s: u64,
}

/// The tables an [`Auth`] keeps its accounts and sessions in.
#[derive(Debug, Clone, Copy)]
pub struct Tables {
    /// `name`, `password_hash`, `created_at`, …
    pub users: &'static str,
    /// `token_sha256`, `user_name`, `csrf`, `expires_at`.
    pub sessions: &'static str,
}

/// Admin users of the control room.
pub const ADMINS: Tables = Tables {
    users: "users",
    sessions: "sessions",
};
/// Streamer accounts ([`crate::streamers`]).
pub const STREAMERS: Tables = Tables {
    users: "streamers",
    sessions: "streamer_sessions",
};

pub struct Auth {
    db: Arc<Db>,
    t: Tables,
    ttl: Duration,
    /// Recent attempts by client network ([`client_net`]).
    failures: Mutex<Attempts<IpAddr>>,
    /// Recent failed attempts by existing account name.
    account_failures: Mutex<Attempts<String>>,
    /// The networks each account logged in from since onair started (at most 16 each): not
    /// held to the account's failed-login limit.
    known_networks: Mutex<HashMap<String, Vec<IpAddr>>>,
    checks: std::sync::atomic::AtomicUsize,
    /// The one-time setup token while no user exists ([`Auth::setup_token`]).
    setup: Mutex<Option<String>>,
}

/// Why `POST /api/setup` did not create the first admin.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("an admin user exists already: sign in")]
    Done,
    #[error(
        "wrong or used setup token: open the setup link onair printed at start (or run `onair user add NAME` on the server)"
    )]
    WrongToken,
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// One password check in progress; frees its slot when dropped.
struct CheckSlot<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for CheckSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub(crate) fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn random_hex(bytes: usize) -> Result<String, AuthError> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

pub(crate) fn sha256_hex(s: &str) -> String {
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A user name: 1 to 64 letters, digits, '.', '_' or '-'.
pub(crate) fn check_name(name: &str) -> Result<(), AuthError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(AuthError::Invalid {
            field: "name",
            message: "1 to 64 letters, digits, '.', '_' or '-'".into(),
        });
    }
    Ok(())
}

impl Auth {
    /// `session_ttl`: how long a login lasts.
    pub fn new(db: Arc<Db>, session_ttl: Duration) -> Auth {
        Auth::with_tables(db, session_ttl, ADMINS)
    }

    /// An `Auth` over other tables of the same shape (streamer accounts).
    pub fn with_tables(db: Arc<Db>, session_ttl: Duration, tables: Tables) -> Auth {
        Auth {
            db,
            t: tables,
            ttl: session_ttl,
            failures: Mutex::new(Attempts::new(MAX_FAILED_LOGINS)),
            account_failures: Mutex::new(Attempts::new(MAX_FAILED_LOGINS_PER_ACCOUNT)),
            known_networks: Mutex::default(),
            checks: Default::default(),
            setup: Mutex::default(),
        }
    }

    /// The one-time token of the first-start setup link (Jupyter and Grafana style): while no
    /// user exists, whoever holds it may create the first admin in the browser
    /// ([`Auth::setup_first_admin`]). Made on the first call (128 random bits, in memory only:
    /// a restart makes a new one); `None` once a user exists.
    pub fn setup_token(&self) -> Result<Option<String>, AuthError> {
        if self.has_users() {
            return Ok(None);
        }
        let mut setup = self.setup.lock();
        if setup.is_none() {
            *setup = Some(random_hex(16)?);
        }
        Ok(setup.clone())
    }

    /// Creates the first admin user with the setup token; the token is spent on success.
    /// Errors: `Done` (a user exists), `WrongToken`, `Auth(Invalid)` (name or password; the
    /// token stays valid for another try).
    pub fn setup_first_admin(
        &self,
        token: &str,
        name: &str,
        password: &str,
    ) -> Result<(), SetupError> {
        // held across the check and the insert: two requests with the token make one user
        let mut setup = self.setup.lock();
        if self.has_users() {
            return Err(SetupError::Done);
        }
        let valid = setup
            .as_deref()
            .is_some_and(|want| constant_time_eq(token.as_bytes(), want.as_bytes()));
        if !valid {
            return Err(SetupError::WrongToken);
        }
        self.add_user(name, password)?;
        *setup = None;
        Ok(())
    }

    /// Adds an admin user. Errors: `Invalid` (name, or a password shorter than
    /// [`MIN_PASSWORD_LEN`]), `Exists`.
    pub fn add_user(&self, name: &str, password: &str) -> Result<(), AuthError> {
        check_name(name)?;
        let hash = hash_password(password)?;
        let r = self.db.conn().execute(
            &format!(
                "INSERT INTO {} (name, password_hash, created_at) VALUES (?1, ?2, ?3)",
                self.t.users
            ),
            rusqlite::params![name, hash, now_s()],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(AuthError::Exists(name.into()))
            }
            Err(e) => Err(self.db.err(e).into()),
        }
    }

    /// Deletes a user and its sessions.
    pub fn delete_user(&self, name: &str) -> Result<(), AuthError> {
        let conn = self.db.conn();
        conn.execute(
            &format!("DELETE FROM {} WHERE user_name = ?1", self.t.sessions),
            rusqlite::params![name],
        )
        .map_err(|e| self.db.err(e))?;
        let n = conn
            .execute(
                &format!("DELETE FROM {} WHERE name = ?1", self.t.users),
                rusqlite::params![name],
            )
            .map_err(|e| self.db.err(e))?;
        if n == 0 {
            return Err(AuthError::NotFound(name.into()));
        }
        Ok(())
    }

    /// Every user: name and creation time (unix seconds).
    pub fn users(&self) -> Result<Vec<(String, i64)>, AuthError> {
        let conn = self.db.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT name, created_at FROM {} ORDER BY name",
                self.t.users
            ))
            .map_err(|e| self.db.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.db.err(e))?;
        Ok(rows)
    }

    /// How many users exist (0 on a database error: the caller then refuses as if users
    /// existed, see [`Auth::has_users`]).
    pub fn user_count(&self) -> u64 {
        self.db
            .conn()
            .query_row(&format!("SELECT COUNT(*) FROM {}", self.t.users), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .unwrap_or(0)
    }

    /// Whether any user exists; true on a database error (closed rather than open).
    pub fn has_users(&self) -> bool {
        self.db
            .conn()
            .query_row(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", self.t.users),
                [],
                |r| r.get::<_, bool>(0),
            )
            .unwrap_or(true)
    }

    /// Checks a password and opens a session. Slow on purpose (argon2id, tens of ms): call it
    /// off the async threads. A wrong name costs the same as a wrong password.
    pub fn login(
        &self,
        from: IpAddr,
        name: &str,
        password: &str,
    ) -> Result<NewSession, LoginError> {
        let _slot = self.check_slot()?;
        // the attempt counts as a failure from the start (taken back on success), so that
        // parallel attempts cannot all pass the check before any failure is recorded
        let attempt = self.reserve_attempt(from)?;
        let stored: Option<String> = self
            .db
            .conn()
            .query_row(
                &format!("SELECT password_hash FROM {} WHERE name = ?1", self.t.users),
                rusqlite::params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| AuthError::from(self.db.err(e)))?;
        // only existing accounts are counted (no table growth from random names)
        let account = match stored {
            Some(_) => self.reserve_account_attempt(name, from),
            None => Ok(None),
        }
        .inspect_err(|_| self.forget_attempt(from, attempt))?;
        // unknown names are checked against a hash of nothing, so they take as long as known ones
        static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let salt = SaltString::encode_b64(&[0u8; 16]).expect("16 bytes encode");
            argon2::Argon2::default()
                .hash_password(b"", &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        });
        let phc = stored.as_deref().unwrap_or(DUMMY.as_str());
        let ok = PasswordHash::new(phc).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        }) && stored.is_some();
        if !ok {
            tracing::warn!(user = name, client = %from, "login refused: wrong name or password");
            return Err(LoginError::Wrong);
        }
        self.forget_attempt(from, attempt);
        {
            let mut known = self.known_networks.lock();
            let nets = known.entry(name.to_string()).or_default();
            // a handful per account, the newest kept
            if !nets.contains(&client_net(from)) {
                if nets.len() >= 16 {
                    nets.remove(0);
                }
                nets.push(client_net(from));
            }
        }
        if let Some(at) = account {
            self.account_failures
                .lock()
                .give_back(&name.to_string(), at);
        }
        let s = self.open_session(name)?;
        tracing::info!(user = name, client = %from, "logged in");
        Ok(s)
    }

    /// Opens a session for `name` without a password check: for [`Auth::login`], and for a
    /// streamer right after sign-up.
    pub fn open_session(&self, name: &str) -> Result<NewSession, AuthError> {
        let token = random_hex(32)?;
        let csrf = random_hex(16)?;
        let expires = now_s() + self.ttl.as_secs() as i64;
        {
            let conn = self.db.conn();
            // expired sessions go at each login
            conn.execute(
                &format!("DELETE FROM {} WHERE expires_at <= ?1", self.t.sessions),
                rusqlite::params![now_s()],
            )
            .map_err(|e| self.db.err(e))?;
            conn.execute(
                &format!("INSERT INTO {} (token_sha256, user_name, csrf, expires_at) VALUES (?1, ?2, ?3, ?4)", self.t.sessions),
                rusqlite::params![sha256_hex(&token), name, csrf, expires],
            )
            .map_err(|e| self.db.err(e))?;
        }
        Ok(NewSession {
            token,
            session: Session {
                user: name.into(),
                csrf,
            },
            max_age_s: self.ttl.as_secs(),
        })
    }

    /// The live session a cookie token belongs to.
    pub fn session(&self, token: &str) -> Option<Session> {
        self.db
            .conn()
            .query_row(
                &format!(
                    "SELECT user_name, csrf FROM {} WHERE token_sha256 = ?1 AND expires_at > ?2",
                    self.t.sessions
                ),
                rusqlite::params![sha256_hex(token), now_s()],
                |r| {
                    Ok(Session {
                        user: r.get(0)?,
                        csrf: r.get(1)?,
                    })
                },
            )
            .ok()
    }

    /// Ends the session of a cookie token (nothing if there is none).
    pub fn logout(&self, token: &str) -> Result<(), AuthError> {
        self.db
            .conn()
            .execute(
                &format!("DELETE FROM {} WHERE token_sha256 = ?1", self.t.sessions),
                rusqlite::params![sha256_hex(token)],
            )
            .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    /// Counts one sign-up from `from` against the same per-address limit as failed logins
    /// ([`MAX_FAILED_LOGINS`] per [`FAILED_LOGIN_WINDOW`]), and takes one of the password
    /// hashing slots; `hash` runs in it. Errors: `Throttled`, `Busy`, or `hash`'s.
    pub fn throttled<T>(
        &self,
        from: IpAddr,
        hash: impl FnOnce() -> Result<T, AuthError>,
    ) -> Result<T, LoginError> {
        let _slot = self.check_slot()?;
        self.reserve_attempt(from)?;
        Ok(hash()?)
    }

    /// One of the [`MAX_CONCURRENT_CHECKS`] password-hashing slots, or `Busy`.
    fn check_slot(&self) -> Result<CheckSlot<'_>, LoginError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.checks.fetch_add(1, SeqCst) >= MAX_CONCURRENT_CHECKS {
            self.checks.fetch_sub(1, SeqCst);
            return Err(LoginError::Busy);
        }
        Ok(CheckSlot(&self.checks))
    }

    /// Records an attempt from `from`'s network, or says when it may try again if it already
    /// made [`MAX_FAILED_LOGINS`] in the last [`FAILED_LOGIN_WINDOW`].
    fn reserve_attempt(&self, from: IpAddr) -> Result<Instant, LoginError> {
        self.failures
            .lock()
            .reserve(client_net(from))
            .map_err(|retry_in_s| LoginError::Throttled { retry_in_s })
    }

    /// Records an attempt on the existing account `name` (`None`: a network that logged in to
    /// it before: nothing recorded), or says when it may be tried again. A network the account
    /// logged in from before is not held to the account's limit, so a stranger failing on
    /// purpose cannot lock the admin out of their usual place.
    fn reserve_account_attempt(
        &self,
        name: &str,
        from: IpAddr,
    ) -> Result<Option<Instant>, LoginError> {
        if self
            .known_networks
            .lock()
            .get(name)
            .is_some_and(|nets| nets.contains(&client_net(from)))
        {
            return Ok(None);
        }
        self.account_failures
            .lock()
            .reserve(name.to_string())
            .map(Some)
            .map_err(|retry_in_s| LoginError::AccountThrottled { retry_in_s })
    }

    /// Takes back a successful attempt.
    fn forget_attempt(&self, from: IpAddr, at: Instant) {
        self.failures.lock().give_back(&client_net(from), at);
    }
}

/// Attempts per key within [`FAILED_LOGIN_WINDOW`], at most `max` each, for at most
/// [`MAX_TRACKED_ADDRESSES`] keys.
struct Attempts<K> {
    max: usize,
    by_key: HashMap<K, VecDeque<Instant>>,
}

impl<K: std::hash::Hash + Eq + Clone> Attempts<K> {
    fn new(max: usize) -> Self {
        Attempts {
            max,
            by_key: HashMap::new(),
        }
    }

    /// Records an attempt for `key`, or `Err(seconds until it may try again)`.
    fn reserve(&mut self, key: K) -> Result<Instant, u64> {
        let now = Instant::now();
        if !self.by_key.contains_key(&key) && self.by_key.len() >= MAX_TRACKED_ADDRESSES {
            self.by_key.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < FAILED_LOGIN_WINDOW)
            });
            if self.by_key.len() >= MAX_TRACKED_ADDRESSES {
                // never refuse a newcomer because the table is full: forget the stalest key
                let stalest = self
                    .by_key
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    self.by_key.remove(&k);
                }
            }
        }
        let q = self.by_key.entry(key).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILED_LOGIN_WINDOW)
        {
            q.pop_front();
        }
        if q.len() >= self.max {
            let oldest = q.front().copied().unwrap_or(now);
            let left = FAILED_LOGIN_WINDOW.saturating_sub(now.duration_since(oldest));
            return Err(left.as_secs().max(1));
        }
        q.push_back(now);
        Ok(now)
    }

    /// Takes back the attempt made at `at`.
    fn give_back(&mut self, key: &K, at: Instant) {
        if let Some(q) = self.by_key.get_mut(key) {
            if let Some(i) = q.iter().rposition(|t| *t == at) {
                q.remove(i);
            }
            if q.is_empty() {
                self.by_key.remove(key);
            }
        }
    }
}

/// The argon2id PHC string of `password` (the crate's defaults, OWASP's recommendation).
/// Errors: `Invalid` for a password shorter than [`MIN_PASSWORD_LEN`].
pub(crate) fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::Invalid {
            field: "password",
            message: format!("at least {MIN_PASSWORD_LEN} characters"),
        });
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AuthError::Hash(e.to_string()))?
        .to_string())
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths (tokens, CSRF).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            Arc::new(Db::memory().expect("db")),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn users_log_in_with_their_password_only_and_sessions_end_at_logout() {
        let a = auth();
        assert!(!a.has_users());
        a.add_user("ops", "correct horse").expect("add");
        assert!(matches!(
            a.add_user("ops", "another one"),
            Err(AuthError::Exists(_))
        ));
        assert!(matches!(
            a.add_user("ops2", "short"),
            Err(AuthError::Invalid {
                field: "password",
                ..
            })
        ));
        assert!(matches!(
            a.add_user("a b", "long enough"),
            Err(AuthError::Invalid { field: "name", .. })
        ));
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        assert!(matches!(
            a.login(ip, "ops", "wrong horse"),
            Err(LoginError::Wrong)
        ));
        assert!(matches!(
            a.login(ip, "nobody", "correct horse"),
            Err(LoginError::Wrong)
        ));
        let s = a.login(ip, "ops", "correct horse").expect("login");
        assert_eq!(a.session(&s.token), Some(s.session.clone()));
        assert_eq!(a.session("not-a-token"), None);
        // the stored row is the token's digest, not the token
        let stored: String =
            a.db.conn()
                .query_row("SELECT token_sha256 FROM sessions", [], |r| r.get(0))
                .expect("row");
        assert_eq!(stored, sha256_hex(&s.token));
        assert_ne!(stored, s.token);
        a.logout(&s.token).expect("logout");
        assert_eq!(a.session(&s.token), None);
        // deleting the user ends its sessions
        let s = a.login(ip, "ops", "correct horse").expect("login");
        a.delete_user("ops").expect("delete");
        assert_eq!(a.session(&s.token), None);
    }

    #[test]
    fn the_sixth_failed_login_in_a_minute_is_refused_even_with_the_right_password() {
        let a = auth();
        a.add_user("ops", "correct horse").expect("add");
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..MAX_FAILED_LOGINS {
            assert!(matches!(
                a.login(ip, "ops", "nope nope"),
                Err(LoginError::Wrong)
            ));
        }
        match a.login(ip, "ops", "correct horse") {
            Err(LoginError::Throttled { retry_in_s }) => assert!((1..=60).contains(&retry_in_s)),
            other => panic!("expected throttled, got {other:?}"),
        }
        // another address is not affected, and its successes do not count
        let other: IpAddr = "10.0.0.3".parse().expect("ip");
        for _ in 0..MAX_FAILED_LOGINS + 2 {
            assert!(a.login(other, "ops", "correct horse").is_ok());
        }
    }

    /// Issue 26: the limit counted exact addresses (an IPv6 host rotates through its /64 at
    /// will), a full table refused every new address (the admin locked out), and a botnet
    /// could try one password per address against one account.
    #[test]
    fn limits_count_a_v6_host_by_its_64_never_lock_out_a_newcomer_and_guard_each_account() {
        let a = auth();
        a.add_user("ops", "correct horse").expect("add");
        // 5 failures from 5 addresses of one /64: the 6th address of it is refused
        for i in 1..=MAX_FAILED_LOGINS {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().expect("ip");
            assert!(matches!(
                a.login(ip, "nobody", "nope nope"),
                Err(LoginError::Wrong)
            ));
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        assert!(matches!(
            a.login(same_64, "ops", "correct horse"),
            Err(LoginError::Throttled { .. })
        ));
        // the table full of other addresses' recent failures: a new address still gets in
        {
            let mut t = a.failures.lock();
            let now = Instant::now();
            for i in 0..MAX_TRACKED_ADDRESSES as u32 {
                let ip = IpAddr::V4(std::net::Ipv4Addr::from_bits(0x0a00_0000 + i));
                t.by_key.insert(ip, VecDeque::from([now]));
            }
        }
        let newcomer: IpAddr = "192.0.2.77".parse().expect("ip");
        assert!(
            a.login(newcomer, "ops", "correct horse").is_ok(),
            "locked out"
        );
        assert!(a.failures.lock().by_key.len() <= MAX_TRACKED_ADDRESSES);
        // one account, many networks: past its limit even the right password waits
        for i in 0..MAX_FAILED_LOGINS_PER_ACCOUNT {
            let ip: IpAddr = format!("198.51.100.{i}").parse().expect("ip");
            assert!(matches!(
                a.login(ip, "ops", "wrong wrong"),
                Err(LoginError::Wrong)
            ));
        }
        let fresh: IpAddr = "203.0.113.5".parse().expect("ip");
        match a.login(fresh, "ops", "correct horse") {
            Err(LoginError::AccountThrottled { retry_in_s }) => {
                assert!((1..=60).contains(&retry_in_s))
            }
            other => panic!("expected the account throttled, got {other:?}"),
        }
        // names that do not exist are not tracked (no table growth from random names)
        assert!(a.account_failures.lock().by_key.len() == 1);
        // the admin's usual network (it logged in before: the newcomer above) still gets in
        assert!(
            a.login(newcomer, "ops", "correct horse").is_ok(),
            "the admin locked out"
        );
    }

    #[test]
    fn parallel_attempts_cannot_get_past_the_limit() {
        let a = Arc::new(auth());
        a.add_user("ops", "correct horse").expect("add");
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        let checked = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    for _ in 0..4 {
                        match a.login(ip, "ops", "wrong wrong") {
                            Err(LoginError::Wrong) => {
                                checked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            Err(LoginError::Throttled { .. } | LoginError::Busy) => {}
                            other => panic!("{other:?}"),
                        }
                    }
                });
            }
        });
        // 64 attempts in parallel: at most 5 passwords were checked
        let n = checked.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            (1..=MAX_FAILED_LOGINS).contains(&n),
            "{n} passwords checked"
        );
    }

    #[test]
    fn an_expired_session_is_refused() {
        let a = Auth::new(Arc::new(Db::memory().expect("db")), Duration::from_secs(0));
        a.add_user("ops", "correct horse").expect("add");
        let s = a
            .login("10.0.0.4".parse().expect("ip"), "ops", "correct horse")
            .expect("login");
        assert_eq!(a.session(&s.token), None);
    }
}
