//! A channel's destinations as operators change them: over the API, from Lua or from a plugin.
//! Every change is written to the database first and then applied to the running connections, so
//! what was created or changed at run time is back after a restart.
//!
//! Ownership: a destination from `onair.toml` belongs to the file: it can be enabled and
//! disabled (that is kept), but editing or deleting it answers [`DestinationError::OwnedByFile`].
//! One created at run time belongs to the database.
//!
//! A recording created, changed or enabled here must write under the recording roots
//! (`recording.roots`, [`crate::roots`]); one kept in the database from before that is outside
//! them loads disabled.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{DestinationConfig, DestinationUrl};
use crate::db::Db;
use crate::media::output::destination::Connections;
use crate::roots::Confinement;

pub use crate::config::DEFAULT_CHANNEL;

/// Why a change was refused. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// 400: `field` is wrong.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// 404.
    #[error("no destination named {0:?}")]
    NotFound(String),
    /// 409: the name is taken.
    #[error("a destination named {0:?} exists")]
    Exists(String),
    /// 409: defined in the config file.
    #[error(
        "destination {name:?} is defined in {file}: edit or delete it there (it can be enabled and disabled here)"
    )]
    OwnedByFile { name: String, file: String },
    /// 500.
    #[error("database: {0}")]
    Db(String),
}

/// One destination, as the API shows it (the URL's stream key redacted).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DestinationView {
    pub name: String,
    pub url: String,
    pub enabled: bool,
    /// `rtmp` (a platform) or `recording` (a `file://` URL).
    pub kind: &'static str,
    /// The encoding profile it receives (`None`: the channel's `[output]`).
    pub profile: Option<String>,
    /// Recordings: minutes per file (default 60).
    pub segment_minutes: Option<u32>,
    /// Recordings: GiB its files may take before the oldest are deleted (default: no limit).
    pub max_total_gib: Option<f64>,
    /// `config` (onair.toml) or `runtime` (created over the API, from Lua or a plugin).
    pub owner: &'static str,
}

pub struct Destinations {
    db: Arc<Db>,
    connections: Connections,
    channel: String,
    /// Names defined in the config file, and the file's name for messages.
    from_file: BTreeSet<String>,
    file: String,
    /// Where recordings may write.
    confine: Arc<Confinement>,
}

/// Checks a destination's name and URL; the error names the field. The URL comes back checked,
/// for the outputs (which take nothing else).
pub fn validate(name: &str, url: &str) -> Result<DestinationUrl, DestinationError> {
    if name.is_empty()
        || name == "preview"
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(DestinationError::Invalid {
            field: "name",
            message: format!(
                "{name:?} must be 1 to 64 letters, digits, '-' or '_' (and not \"preview\")"
            ),
        });
    }
    let checked = DestinationUrl::parse(url).map_err(|message| DestinationError::Invalid {
        field: "url",
        message,
    })?;
    if url.len() > MAX_URL_BYTES {
        return Err(DestinationError::Invalid {
            field: "url",
            message: format!("{} bytes is over the {MAX_URL_BYTES}-byte limit", url.len()),
        });
    }
    Ok(checked)
}

/// The longest URL a destination created at run time may have, bytes (the API, Lua, plugins).
pub const MAX_URL_BYTES: usize = 2048;

impl Destinations {
    /// The config's destinations (with the enabled flags kept in the database) and the ones
    /// created at run time, in that order. Returns them to start [`Connections`] with. A
    /// run-time recording outside the recording roots (kept by an older onair) loads disabled,
    /// logged; enabling it is refused until its folder is a root.
    pub fn load(
        db: &Db,
        channel: &str,
        config: &[DestinationConfig],
        confine: &Confinement,
    ) -> Result<Vec<DestinationConfig>, DestinationError> {
        let conn = db.conn();
        let mut stmt = conn
            .prepare(
                "SELECT name, url, enabled, owner, profile, segment_minutes, max_total_gib
                 FROM destinations WHERE channel = ?1 ORDER BY rowid",
            )
            .map_err(|e| DestinationError::Db(e.to_string()))?;
        let rows: Vec<(DestinationConfig, String)> = stmt
            .query_map([channel], |r| {
                Ok((
                    DestinationConfig {
                        name: r.get(0)?,
                        url: r.get(1)?,
                        enabled: r.get(2)?,
                        profile: r.get(4)?,
                        segment_minutes: r.get(5)?,
                        max_total_gib: r.get(6)?,
                    },
                    r.get(3)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| DestinationError::Db(e.to_string()))?;
        let mut out: Vec<DestinationConfig> = config.to_vec();
        for (row, owner) in rows {
            match (owner.as_str(), out.iter_mut().find(|d| d.name == row.name)) {
                ("config", Some(d)) => d.enabled = row.enabled,
                ("config", None) => {} // gone from the file: the file wins
                (_, Some(_)) => {
                    tracing::warn!(destination = %row.name, "a destination created at run time now has the name of one in the config file: the file's is used")
                }
                (_, None) => {
                    let mut row = row;
                    // a URL that does not parse is refused by the outputs ("destination not added")
                    if row.enabled
                        && let Ok(url) = DestinationUrl::parse(&row.url)
                        && let Err(e) = confine.recording(&url, channel, &row.name)
                    {
                        tracing::error!(channel, destination = %row.name, error = %e,
                            "recording kept in the database refused: loaded disabled");
                        row.enabled = false;
                    }
                    out.push(row)
                }
            }
        }
        Ok(out)
    }

    pub fn new(
        db: Arc<Db>,
        connections: Connections,
        channel: &str,
        config: &[DestinationConfig],
        file: &str,
        confine: Arc<Confinement>,
    ) -> Destinations {
        Destinations {
            db,
            connections,
            channel: channel.to_string(),
            from_file: config.iter().map(|d| d.name.clone()).collect(),
            file: file.to_string(),
            confine,
        }
    }

    /// The destinations' connections.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// The running destination named `name`, with its URL and enabled flag.
    fn current(&self, name: &str) -> Option<DestinationConfig> {
        self.connections
            .configs()
            .into_iter()
            .find(|d| d.name == name)
    }

    /// Adds it to the running connections (connecting it when enabled).
    fn start(&self, d: DestinationConfig, url: DestinationUrl) -> Result<(), DestinationError> {
        self.connections
            .add(d, url)
            .map_err(|message| DestinationError::Invalid {
                field: "url",
                message,
            })
    }

    /// Checks the options (profile, recording fields); the error names the field.
    fn check_options(&self, d: &DestinationConfig) -> Result<(), DestinationError> {
        match d.options_error(self.connections.encodes().profiles()) {
            Some((field, message)) => Err(DestinationError::Invalid { field, message }),
            None => Ok(()),
        }
    }

    /// Refuses a run-time recording whose folder is outside the recording roots (`url`, naming
    /// `recording.roots`); the config file's are the operator's own.
    fn check_roots(
        &self,
        d: &DestinationConfig,
        url: &DestinationUrl,
    ) -> Result<(), DestinationError> {
        if self.from_file.contains(&d.name) {
            return Ok(());
        }
        self.confine
            .recording(url, &self.channel, &d.name)
            .map_err(|e| DestinationError::Invalid {
                field: "url",
                message: e.to_string(),
            })
    }

    fn db_err(e: rusqlite::Error) -> DestinationError {
        DestinationError::Db(e.to_string())
    }

    /// Every destination of the channel.
    pub fn list(&self) -> Vec<DestinationView> {
        self.connections
            .configs()
            .into_iter()
            .map(|d| DestinationView {
                owner: if self.from_file.contains(&d.name) {
                    "config"
                } else {
                    "runtime"
                },
                kind: if d.is_recording() {
                    "recording"
                } else {
                    "rtmp"
                },
                url: crate::redact::url(&d.url),
                enabled: d.enabled,
                profile: d.profile,
                segment_minutes: d.segment_minutes,
                max_total_gib: d.max_total_gib,
                name: d.name,
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<DestinationView, DestinationError> {
        self.list()
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| DestinationError::NotFound(name.into()))
    }

    /// Creates a destination owned by the database and starts it (when enabled).
    pub fn create(&self, d: DestinationConfig) -> Result<(), DestinationError> {
        let (name, url, enabled) = (d.name.as_str(), d.url.as_str(), d.enabled);
        let checked = validate(name, url)?;
        self.check_options(&d)?;
        self.check_roots(&d, &checked)?;
        if self.current(name).is_some() {
            return Err(DestinationError::Exists(name.into()));
        }
        self.db
            .conn()
            .execute(
                "INSERT INTO destinations (channel, name, url, enabled, owner, profile, segment_minutes, max_total_gib)
                 VALUES (?1, ?2, ?3, ?4, 'db', ?5, ?6, ?7)",
                (&self.channel, name, url, enabled, &d.profile, d.segment_minutes, d.max_total_gib),
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    DestinationError::Exists(name.into())
                }
                e => Self::db_err(e),
            })?;
        tracing::info!(destination = %name, url = %checked, enabled, profile = ?d.profile, "destination created");
        self.start(d, checked)?;
        Ok(())
    }

    /// Changes a database-owned destination's URL, profile, recording options and/or enabled
    /// flag; a config-owned one only its enabled flag ([`DestinationError::OwnedByFile`]
    /// otherwise). A new URL, profile or recording option reconnects it (a recording closes its
    /// file and opens a new one); the other destinations are not touched.
    pub fn update(&self, name: &str, change: Change<'_>) -> Result<(), DestinationError> {
        let Change {
            url,
            profile,
            enabled,
            segment_minutes,
            max_total_gib,
        } = change;
        let current = self
            .current(name)
            .ok_or_else(|| DestinationError::NotFound(name.into()))?;
        let reshapes = url.is_some()
            || profile.is_some()
            || segment_minutes.is_some()
            || max_total_gib.is_some();
        if reshapes && self.from_file.contains(name) {
            return Err(DestinationError::OwnedByFile {
                name: name.into(),
                file: self.file.clone(),
            });
        }
        let url = url.unwrap_or(&current.url);
        let checked = validate(name, url)?;
        let next = DestinationConfig {
            url: url.to_string(),
            enabled: enabled.unwrap_or(current.enabled),
            profile: match profile {
                None => current.profile.clone(),
                Some("") => None,
                Some(p) => Some(p.to_string()),
            },
            segment_minutes: segment_minutes.or(current.segment_minutes),
            max_total_gib: max_total_gib.unwrap_or(current.max_total_gib),
            ..current.clone()
        };
        self.check_options(&next)?;
        if next.enabled {
            self.check_roots(&next, &checked)?;
        }
        let enabled = next.enabled;
        let owner = if self.from_file.contains(name) {
            "config"
        } else {
            "db"
        };
        self.db
            .conn()
            .execute(
                "INSERT INTO destinations (channel, name, url, enabled, owner, profile, segment_minutes, max_total_gib)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (channel, name) DO UPDATE
                 SET url = excluded.url, enabled = excluded.enabled, profile = excluded.profile,
                     segment_minutes = excluded.segment_minutes, max_total_gib = excluded.max_total_gib",
                (
                    &self.channel,
                    name,
                    url,
                    enabled,
                    owner,
                    if owner == "db" { next.profile.clone() } else { None },
                    if owner == "db" { next.segment_minutes } else { None },
                    if owner == "db" { next.max_total_gib } else { None },
                ),
            )
            .map_err(Self::db_err)?;
        if url != current.url
            || next.profile != current.profile
            || next.segment_minutes != current.segment_minutes
            || next.max_total_gib != current.max_total_gib
        {
            let _ = self.connections.remove(name);
            self.start(next, checked)?;
        } else if enabled != current.enabled {
            self.connections
                .set_enabled(name, enabled)
                .map_err(|_| DestinationError::NotFound(name.into()))?;
        }
        tracing::info!(destination = %name, enabled, url_changed = url != current.url, "destination updated");
        Ok(())
    }

    /// Deletes a database-owned destination (disconnecting it first).
    pub fn delete(&self, name: &str) -> Result<(), DestinationError> {
        if self.from_file.contains(name) {
            return Err(DestinationError::OwnedByFile {
                name: name.into(),
                file: self.file.clone(),
            });
        }
        if self.current(name).is_none() {
            return Err(DestinationError::NotFound(name.into()));
        }
        self.db
            .conn()
            .execute(
                "DELETE FROM destinations WHERE channel = ?1 AND name = ?2",
                (&self.channel, name),
            )
            .map_err(Self::db_err)?;
        let _ = self.connections.remove(name);
        Ok(())
    }
}

/// What [`Destinations::update`] changes; `None` leaves a field as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct Change<'a> {
    /// A new `rtmp://`, `rtmps://` or `file://` URL.
    pub url: Option<&'a str>,
    /// A profile name, or `Some("")` for the channel's `[output]`.
    pub profile: Option<&'a str>,
    pub enabled: Option<bool>,
    /// Recordings: minutes per file (1..=1440).
    pub segment_minutes: Option<u32>,
    /// Recordings: `Some(None)` removes the limit, `Some(Some(gib))` sets it.
    pub max_total_gib: Option<Option<f64>>,
}

impl Change<'_> {
    /// Only the enabled flag.
    pub fn enabled(enabled: bool) -> Self {
        Self {
            enabled: Some(enabled),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls_are_checked_with_the_field_named() {
        assert!(validate("youtube-2", "rtmps://a.rtmp.youtube.com/live2/k").is_ok());
        for (name, url, field) in [
            ("", "rtmp://x/app/k", "name"),
            ("preview", "rtmp://x/app/k", "name"),
            ("a b", "rtmp://x/app/k", "name"),
            ("ok", "http://x/app/k", "url"),
        ] {
            match validate(name, url) {
                Err(DestinationError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{name:?} {url:?}: {other:?}"),
            }
        }
    }

    /// The roots of a config with `recording.roots = roots` (and data_dir in a temp folder).
    fn confinement(roots: &[&str]) -> Confinement {
        let cfg = crate::config::Config {
            data_dir: std::env::temp_dir().join("onair-destinations-test"),
            recording: crate::config::RecordingConfig {
                roots: roots.iter().map(std::path::PathBuf::from).collect(),
            },
            ..Default::default()
        };
        Confinement::new(&cfg)
    }

    /// A stopped channel's destinations over an in-memory database.
    fn destinations(roots: &[&str]) -> Destinations {
        let db = Arc::new(Db::memory().expect("db"));
        let profiles = Arc::new(crate::config::Config::default().profiles());
        let encodes = crate::media::output::encode::Encodes::new(DEFAULT_CHANNEL, profiles);
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        let ledger = Arc::new(crate::recordings::DbLedger(db.clone()));
        let connections = Connections::new(DEFAULT_CHANNEL, &[], encodes, events, ledger);
        Destinations::new(
            db,
            connections,
            DEFAULT_CHANNEL,
            &[],
            "onair.toml",
            Arc::new(confinement(roots)),
        )
    }

    #[test]
    fn a_recording_added_at_run_time_must_write_under_a_root() {
        let d = destinations(&["/srv/rec"]);
        let rec = |name: &str, url: &str| DestinationConfig::new(name, url);
        d.create(rec("ok", "file:///srv/rec/{channel}/{utc}.mp4"))
            .expect("under recording.roots");
        for (name, url) in [
            ("etc", "file:///etc/cron.d/{utc}.mp4"),
            ("home", "file:///root/{utc}.mp4"),
            ("sibling", "file:///srv/recordings/{utc}.mp4"),
        ] {
            match d.create(rec(name, url)) {
                Err(e @ DestinationError::Invalid { field: "url", .. }) => {
                    assert!(e.to_string().contains("recording.roots"), "{e}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(d.list().len(), 1, "a refused recording is not kept");
        // moving one out, or enabling one kept outside, is refused too; platforms are not
        // recordings
        let out = Change {
            url: Some("file:///tmp/{utc}.mp4"),
            ..Change::default()
        };
        assert!(matches!(
            d.update("ok", out),
            Err(DestinationError::Invalid { field: "url", .. })
        ));
        d.create(rec("yt", "rtmps://a.rtmp.youtube.com/live2/k"))
            .expect("a platform");
    }

    #[test]
    fn a_recording_kept_outside_the_roots_loads_disabled() {
        let db = Db::memory().expect("db");
        db.conn()
            .execute_batch(
                "INSERT INTO destinations VALUES ('default', 'in', 'file:///srv/rec/{utc}.mp4', 1, 'db', NULL, NULL, NULL);
                 INSERT INTO destinations VALUES ('default', 'out', 'file:///etc/{utc}.mp4', 1, 'db', NULL, NULL, 0.001);",
            )
            .expect("rows");
        let all = Destinations::load(&db, DEFAULT_CHANNEL, &[], &confinement(&["/srv/rec"]))
            .expect("load");
        let enabled: Vec<(&str, bool)> = all.iter().map(|d| (d.name.as_str(), d.enabled)).collect();
        assert_eq!(enabled, vec![("in", true), ("out", false)]);
    }

    #[test]
    fn config_flags_and_runtime_destinations_load_back() {
        let db = Db::memory().expect("db");
        db.conn()
            .execute_batch(
                "INSERT INTO destinations VALUES ('default', 'twitch', 'rtmp://x/app/k', 0, 'config', NULL, NULL, NULL);
                 INSERT INTO destinations VALUES ('default', 'yt', 'rtmp://y/live2/k', 1, 'db', 'youtube-1080p30', NULL, NULL);
                 INSERT INTO destinations VALUES ('default', 'gone', 'rtmp://z/a/k', 1, 'config', NULL, NULL, NULL);
                 INSERT INTO destinations VALUES ('default', 'rec', 'file:///r/{utc}.mp4', 1, 'db', NULL, 5, 0.5);
                 INSERT INTO destinations VALUES ('other', 'o', 'rtmp://o/a/k', 1, 'db', NULL, NULL, NULL);",
            )
            .expect("rows");
        let config = vec![DestinationConfig::new(
            "twitch",
            "rtmp://live.twitch.tv/app/k",
        )];
        let all =
            Destinations::load(&db, DEFAULT_CHANNEL, &config, &confinement(&["/r"])).expect("load");
        let names: Vec<(&str, bool)> = all.iter().map(|d| (d.name.as_str(), d.enabled)).collect();
        assert_eq!(names, vec![("twitch", false), ("yt", true), ("rec", true)]);
        assert_eq!(all[1].profile.as_deref(), Some("youtube-1080p30"));
        assert_eq!(
            (all[2].segment_minutes, all[2].max_total_gib),
            (Some(5), Some(0.5))
        );
        assert_eq!(
            all[0].url, "rtmp://live.twitch.tv/app/k",
            "the file keeps the URL"
        );
    }
}
