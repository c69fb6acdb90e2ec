//! Streamer accounts: people who publish to a channel with a stream key of their own.
//!
//! - An account is a name, an argon2id password (for the streamer's page, `/streamer.html`),
//!   the channel its key publishes to and whether it is enabled. It is made at `/signup.html`
//!   when `accounts.signup` is on, or by an admin (`POST /api/streamers`).
//! - Its stream key is `live_` and 40 random hex digits (160 bits). Only its SHA-256 is kept:
//!   the key is shown once, at sign-up or when regenerated, and a lost key is replaced, not
//!   recovered. The ingest looks a key up here after the config's keys ([`Streamers::by_key`]).
//! - Logins use the admins' machinery ([`Auth`]) on the tables `streamers` and
//!   `streamer_sessions`, with their own cookie ([`COOKIE`]): an admin login does not open a
//!   streamer page and the reverse.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::auth::{self, Auth, AuthError, LoginError};
use crate::db::Db;

/// The streamer session cookie's name.
pub const COOKIE: &str = "onair_streamer";

/// An account as lists and the streamer's page show it: never the key, only its hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Account {
    pub name: String,
    /// The channel the account's key publishes to.
    pub channel: String,
    /// A disabled account's key is refused and it cannot log in.
    pub enabled: bool,
    /// The key redacted (`live_…a9f3`).
    pub key_hint: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A new account or a new key: `key` is shown once and not kept.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WithKey {
    #[serde(flatten)]
    pub account: Account,
    pub key: String,
}

pub struct Streamers {
    db: Arc<Db>,
    auth: Auth,
    /// `accounts.signup`.
    pub signup_open: bool,
    /// `accounts.channel`: where new accounts publish.
    pub default_channel: String,
}

fn new_key() -> Result<(String, String, String), AuthError> {
    let key = format!("live_{}", auth::random_hex(20)?);
    let sha = auth::sha256_hex(&key);
    let hint = crate::redact::key(&key);
    Ok((key, sha, hint))
}

fn account(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        name: r.get(0)?,
        channel: r.get(1)?,
        enabled: r.get(2)?,
        key_hint: r.get(3)?,
        created_at: r.get(4)?,
    })
}

const COLUMNS: &str = "name, channel, enabled, key_hint, created_at";

impl Streamers {
    /// `session_ttl`: how long a streamer's login lasts.
    pub fn new(db: Arc<Db>, session_ttl: Duration, cfg: &crate::config::AccountsConfig) -> Self {
        Streamers {
            auth: Auth::with_tables(db.clone(), session_ttl, auth::STREAMERS),
            db,
            signup_open: cfg.signup,
            default_channel: cfg.channel.clone(),
        }
    }

    /// Logins, sessions and logouts of streamers.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Creates an account on `channel` (None: `accounts.channel`) with a new key. Slow on
    /// purpose (argon2id): call it off the async threads. A sign-up from address `from` counts
    /// against the per-address login limit, so sign-ups cannot be scripted fast; an admin's
    /// (`from` None) does not. Errors: `Invalid` (name: 1 to 64 letters, digits, '.', '_' or
    /// '-'; password: at least 8 characters), `Exists`, `Throttled`, `Busy`.
    pub fn create(
        &self,
        from: Option<IpAddr>,
        name: &str,
        password: &str,
        channel: Option<&str>,
    ) -> Result<WithKey, LoginError> {
        auth::check_name(name)?;
        let channel = channel.unwrap_or(&self.default_channel).to_string();
        let hash = match from {
            Some(ip) => self.auth.throttled(ip, || auth::hash_password(password))?,
            None => auth::hash_password(password)?,
        };
        let (key, sha, hint) = new_key()?;
        let created_at = auth::now_s();
        let r = self.db.conn().execute(
            "INSERT INTO streamers (name, password_hash, channel, key_sha256, key_hint, enabled, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
            rusqlite::params![name, hash, channel, sha, hint, created_at],
        );
        match r {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(AuthError::Exists(name.into()).into());
            }
            Err(e) => return Err(AuthError::from(self.db.err(e)).into()),
        }
        let by = from.map_or("an admin".to_string(), |ip| ip.to_string());
        tracing::info!(streamer = name, %channel, by = %by, "streamer account created");
        Ok(WithKey {
            account: Account {
                name: name.into(),
                channel,
                enabled: true,
                key_hint: hint,
                created_at,
            },
            key,
        })
    }

    /// The account whose stream key is `key`, enabled or not (None: no account has it, or
    /// the database failed, which is logged).
    pub fn by_key(&self, key: &str) -> Option<Account> {
        let r = self
            .db
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM streamers WHERE key_sha256 = ?1"),
                rusqlite::params![auth::sha256_hex(key)],
                account,
            )
            .optional();
        r.unwrap_or_else(|e| {
            tracing::error!(error = %e, "stream key lookup in the streamer accounts failed");
            None
        })
    }

    pub fn get(&self, name: &str) -> Result<Option<Account>, AuthError> {
        self.db
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM streamers WHERE name = ?1"),
                rusqlite::params![name],
                account,
            )
            .optional()
            .map_err(|e| self.db.err(e).into())
    }

    /// Every account, by name.
    pub fn list(&self) -> Result<Vec<Account>, AuthError> {
        let conn = self.db.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM streamers ORDER BY name"))
            .map_err(|e| self.db.err(e))?;
        stmt.query_map([], account)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.db.err(e).into())
    }

    /// Changes what is given. A disabled account's sessions end. Errors: `NotFound`.
    pub fn update(
        &self,
        name: &str,
        enabled: Option<bool>,
        channel: Option<&str>,
    ) -> Result<Account, AuthError> {
        let conn = self.db.conn();
        let n = conn
            .execute(
                "UPDATE streamers SET enabled = COALESCE(?2, enabled), channel = COALESCE(?3, channel) WHERE name = ?1",
                rusqlite::params![name, enabled, channel],
            )
            .map_err(|e| self.db.err(e))?;
        if n == 0 {
            return Err(AuthError::NotFound(name.into()));
        }
        if enabled == Some(false) {
            conn.execute(
                "DELETE FROM streamer_sessions WHERE user_name = ?1",
                rusqlite::params![name],
            )
            .map_err(|e| self.db.err(e))?;
        }
        drop(conn);
        self.get(name)?
            .ok_or_else(|| AuthError::NotFound(name.into()))
    }

    /// Replaces the account's key: the old one is refused from now on. Errors: `NotFound`.
    pub fn regenerate_key(&self, name: &str) -> Result<WithKey, AuthError> {
        let (key, sha, hint) = new_key()?;
        let n = self
            .db
            .conn()
            .execute(
                "UPDATE streamers SET key_sha256 = ?2, key_hint = ?3 WHERE name = ?1",
                rusqlite::params![name, sha, hint],
            )
            .map_err(|e| self.db.err(e))?;
        if n == 0 {
            return Err(AuthError::NotFound(name.into()));
        }
        let account = self
            .get(name)?
            .ok_or_else(|| AuthError::NotFound(name.into()))?;
        tracing::info!(streamer = name, key = %account.key_hint, "stream key regenerated");
        Ok(WithKey { account, key })
    }

    /// Deletes the account and its sessions. Errors: `NotFound`.
    pub fn delete(&self, name: &str) -> Result<(), AuthError> {
        self.auth.delete_user(name)
    }

    /// Logs a streamer in (see [`Auth::login`]); a disabled account is refused like a wrong
    /// password, with its own log line.
    pub fn login(
        &self,
        from: IpAddr,
        name: &str,
        password: &str,
    ) -> Result<auth::NewSession, LoginError> {
        let s = self.auth.login(from, name, password)?;
        if !self.get(name)?.is_some_and(|a| a.enabled) {
            let _ = self.auth.logout(&s.token);
            tracing::warn!(streamer = name, client = %from, "login refused: the account is disabled");
            return Err(LoginError::Wrong);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccountsConfig;

    fn streamers() -> Streamers {
        Streamers::new(
            Arc::new(Db::memory().expect("db")),
            Duration::from_secs(3600),
            &AccountsConfig::default(),
        )
    }

    #[test]
    fn a_key_is_shown_once_stored_as_a_digest_and_replaced_by_regeneration() {
        let s = streamers();
        let ip: IpAddr = "10.1.0.1".parse().expect("ip");
        let a = s
            .create(Some(ip), "alice", "correct horse", None)
            .expect("create");
        assert!(a.key.starts_with("live_") && a.key.len() == 45, "{}", a.key);
        assert_eq!(a.account.channel, "default");
        assert!(matches!(
            s.create(Some(ip), "alice", "another one", None),
            Err(LoginError::Auth(AuthError::Exists(_)))
        ));
        assert!(matches!(
            s.create(Some(ip), "bob", "short", None),
            Err(LoginError::Auth(AuthError::Invalid {
                field: "password",
                ..
            }))
        ));
        // the key itself is nowhere in the database
        let stored: String =
            s.db.conn()
                .query_row("SELECT key_sha256 FROM streamers", [], |r| r.get(0))
                .expect("row");
        assert_eq!(stored, auth::sha256_hex(&a.key));
        assert_eq!(s.by_key(&a.key).map(|x| x.name).as_deref(), Some("alice"));
        assert_eq!(s.by_key("live_nope"), None);
        let b = s.regenerate_key("alice").expect("regenerate");
        assert_ne!(b.key, a.key);
        assert_eq!(s.by_key(&a.key), None);
        assert_eq!(s.by_key(&b.key).map(|x| x.name).as_deref(), Some("alice"));
        assert!(matches!(
            s.regenerate_key("nobody"),
            Err(AuthError::NotFound(_))
        ));
    }

    #[test]
    fn a_disabled_account_cannot_log_in_and_its_sessions_end() {
        let s = streamers();
        let ip: IpAddr = "10.1.0.2".parse().expect("ip");
        s.create(Some(ip), "carol", "correct horse", Some("arena"))
            .expect("create");
        let login = s.login(ip, "carol", "correct horse").expect("login");
        assert!(s.auth().session(&login.token).is_some());
        let a = s.update("carol", Some(false), None).expect("disable");
        assert!(!a.enabled);
        assert_eq!(a.channel, "arena");
        assert_eq!(s.auth().session(&login.token), None);
        assert!(matches!(
            s.login(ip, "carol", "correct horse"),
            Err(LoginError::Wrong)
        ));
        s.update("carol", Some(true), None).expect("enable");
        assert!(s.login(ip, "carol", "correct horse").is_ok());
        s.delete("carol").expect("delete");
        assert_eq!(s.list().expect("list"), vec![]);
    }

    #[test]
    fn sign_ups_from_one_address_are_limited_like_failed_logins() {
        let s = streamers();
        let ip: IpAddr = "10.1.0.3".parse().expect("ip");
        for i in 0..auth::MAX_FAILED_LOGINS {
            s.create(Some(ip), &format!("s{i}"), "correct horse", None)
                .expect("create");
        }
        assert!(matches!(
            s.create(Some(ip), "one-more", "correct horse", None),
            Err(LoginError::Throttled { .. })
        ));
        let other: IpAddr = "10.1.0.4".parse().expect("ip");
        assert!(
            s.create(Some(other), "one-more", "correct horse", None)
                .is_ok()
        );
    }
}
