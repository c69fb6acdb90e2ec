//! Every channel by id: loaded from the config file and the database at start, created,
//! updated and deleted at run time, each change kept in the database in one transaction.
//!
//! Lock order: [`Channels`]' map before a channel's `running`, before its `spec`.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Deserialize;

use super::destinations::{DEFAULT_CHANNEL, Destinations};
use super::{Channel, ChannelError, Owner, Shared};
use crate::config::{ChannelSpec, DestinationConfig, FallbackConfig, OutputConfig};
use crate::roots::Confinement;

/// `POST /api/channels` and `onair.channel_create`: a channel to create at run time. Absent
/// fields take the top-level `[fallback]` and `[output]` of the config.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    pub id: String,
    /// Default: the id.
    pub name: Option<String>,
    /// Default: one generated key (`live_…`), returned once in the answer.
    #[serde(default)]
    pub keys: Vec<String>,
    /// An image or video file for the fallback; default: the slate.
    #[schema(value_type = Option<String>)]
    pub fallback_media: Option<PathBuf>,
    pub output: Option<OutputConfig>,
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    /// Start it at once. Default true.
    pub start: Option<bool>,
}

/// `PATCH /api/channels/:id`. Output changes apply at the channel's next start.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelPatch {
    pub name: Option<String>,
    pub keys: Option<Vec<String>>,
    pub output: Option<OutputConfig>,
}

/// Every channel, by id.
pub struct Channels {
    pub(super) shared: Arc<Shared>,
    map: RwLock<BTreeMap<String, Arc<Channel>>>,
    /// `ingest.allow_any_key`: any key publishes to the primary channel.
    pub(super) allow_any_key: bool,
    /// What a run-time channel takes when it does not say: the top-level tables.
    template: (FallbackConfig, OutputConfig),
    /// The folders paths in actions must lie under, from the config.
    confine: Arc<Confinement>,
}

impl Channels {
    /// Makes the config's channels and those kept in the database, and starts the ones that
    /// were started (every config channel the first time). A database channel whose id is now
    /// in the config is skipped with a warning: the file wins.
    pub fn load(
        specs: Vec<ChannelSpec>,
        cfg: &crate::config::Config,
        shared: Arc<Shared>,
    ) -> Result<Arc<Channels>, ChannelError> {
        let db_err = |e: rusqlite::Error| ChannelError::Db(e.to_string());
        let confine = Arc::new(Confinement::new(cfg));
        tracing::info!(
            recording_roots = ?confine.recordings.dirs(),
            media_roots = ?confine.media.dirs(),
            "run-time recordings and media are confined to these folders (recording.roots, media.roots)"
        );
        type Row = (String, String, Option<String>, bool, Option<String>);
        let rows: Vec<Row> = {
            let conn = shared.db.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT id, owner, spec, started, fallback_media FROM channels ORDER BY rowid",
                )
                .map_err(db_err)?;
            stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(db_err)?
        };
        // the fallback chosen at run time ('' = the slate) over the configured one; media
        // outside the media roots (kept by an older onair) is not used
        let chosen = |id: &str, spec: &mut ChannelSpec| {
            let configured = spec.fallback.media.clone();
            if let Some(Some(media)) = rows.iter().find(|r| r.0 == id).map(|r| r.4.clone()) {
                spec.fallback.media = (!media.is_empty()).then(|| PathBuf::from(media));
            }
            if let Some(media) = &spec.fallback.media
                && let Err(e) = confine.fallback_media(media)
            {
                tracing::error!(channel = %id, error = %e, "fallback media kept in the database refused: not used");
                spec.fallback.media = configured.filter(|m| confine.fallback_media(m).is_ok());
            }
        };
        let mut map = BTreeMap::new();
        let mut starts = Vec::new();
        for mut spec in specs {
            chosen(&spec.id.clone(), &mut spec);
            let started = rows
                .iter()
                .find(|r| r.0 == spec.id && r.1 == "config")
                .is_none_or(|r| r.3);
            let dests = Destinations::load(&shared.db, &spec.id, &spec.destinations, &confine)
                .map_err(|e| ChannelError::Db(e.to_string()))?;
            let c = Channel::new(spec, Owner::File, dests, shared.clone(), confine.clone());
            starts.push((c.clone(), started));
            map.insert(c.id.clone(), c);
        }
        for (id, owner, spec, started, _) in rows.clone() {
            if owner != "db" {
                continue;
            }
            if map.contains_key(&id) {
                tracing::warn!(channel = %id, file = %shared.file, "a channel created at run time now has the id of one in the config file: the file's is used");
                continue;
            }
            let mut spec: ChannelSpec = match spec.as_deref().map(serde_json::from_str) {
                Some(Ok(s)) => s,
                _ => {
                    tracing::error!(channel = %id, "channel kept in the database is unreadable: skipped");
                    continue;
                }
            };
            chosen(&id, &mut spec);
            let dests = Destinations::load(&shared.db, &id, &[], &confine)
                .map_err(|e| ChannelError::Db(e.to_string()))?;
            let c = Channel::new(
                spec,
                Owner::Database,
                dests,
                shared.clone(),
                confine.clone(),
            );
            starts.push((c.clone(), started));
            map.insert(id, c);
        }
        for (c, started) in starts {
            if started && let Err(e) = c.start() {
                tracing::error!(channel = %c.id, error = %e, "channel not started");
            } else if !started {
                tracing::info!(channel = %c.id, "channel stays stopped (stopped before the restart)");
            }
        }
        Ok(Arc::new(Channels {
            shared,
            map: RwLock::new(map),
            allow_any_key: cfg.ingest.allow_any_key,
            template: (cfg.fallback.clone(), cfg.output.clone()),
            confine,
        }))
    }

    pub(super) fn read(&self) -> parking_lot::RwLockReadGuard<'_, BTreeMap<String, Arc<Channel>>> {
        self.map.read()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Channel>> {
        self.read().get(id).cloned()
    }

    /// Every channel, by id.
    pub fn all(&self) -> Vec<Arc<Channel>> {
        self.read().values().cloned().collect()
    }

    /// The channel unqualified calls act on when no event names one (timers, routes,
    /// `/api/switch`, `/preview.flv`): `default` if it exists, else the first by id.
    pub fn primary(&self) -> Option<Arc<Channel>> {
        let map = self.read();
        map.get(DEFAULT_CHANNEL)
            .or_else(|| map.values().next())
            .cloned()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The folders run-time recordings and media must lie under.
    pub fn confinement(&self) -> &Arc<Confinement> {
        &self.confine
    }

    /// Creates a run-time channel, keeps it in the database (with its destinations, in one
    /// transaction) and queues its start. Returns it and its stream keys in full (the only time
    /// the API shows them).
    pub fn create(&self, req: NewChannel) -> Result<(Arc<Channel>, Vec<String>), ChannelError> {
        if let Some(message) = crate::config::channel_id_error(&req.id) {
            return Err(ChannelError::Invalid {
                field: "id",
                message,
            });
        }
        let name = req.name.clone().unwrap_or_else(|| req.id.clone());
        check_name(&name)?;
        if let Some(Err(e)) = req
            .fallback_media
            .as_deref()
            .map(|m| self.confine.fallback_media(m))
        {
            return Err(ChannelError::Invalid {
                field: "fallback_media",
                message: e.to_string(),
            });
        }
        let keys = if req.keys.is_empty() {
            vec![crate::secrets::generate("live_").map_err(|e| ChannelError::Db(e.to_string()))?]
        } else {
            req.keys.clone()
        };
        let output = req
            .output
            .clone()
            .unwrap_or_else(|| self.template.1.clone());
        if let Some((key, message)) = crate::config::output_error("output", &output) {
            return Err(ChannelError::Invalid {
                field: "output",
                message: format!("{key}: {message}"),
            });
        }
        let mut names = std::collections::HashSet::new();
        for d in &req.destinations {
            let url = super::destinations::validate(&d.name, &d.url).map_err(|e| {
                ChannelError::Invalid {
                    field: "destinations",
                    message: e.to_string(),
                }
            })?;
            if let Some((field, e)) = d.options_error(&self.shared.profiles) {
                return Err(ChannelError::Invalid {
                    field: "destinations",
                    message: format!("{:?}: {field}: {e}", d.name),
                });
            }
            if let Err(e) = self.confine.recording(&url, &req.id, &d.name) {
                return Err(ChannelError::Invalid {
                    field: "destinations",
                    message: format!("{:?}: url: {e}", d.name),
                });
            }
            if !names.insert(d.name.as_str()) {
                return Err(ChannelError::Invalid {
                    field: "destinations",
                    message: format!("{:?} is used by two destinations", d.name),
                });
            }
        }
        let spec = ChannelSpec {
            id: req.id.clone(),
            name: name.clone(),
            keys: keys.clone(),
            fallback: FallbackConfig {
                media: req.fallback_media.clone(),
                channel_name: name,
                ..self.template.0.clone()
            },
            output,
            destinations: Vec::new(),
        };
        let start = req.start.unwrap_or(true);
        let mut map = self.map.write();
        if map.contains_key(&req.id) {
            return Err(ChannelError::Exists(req.id));
        }
        self.check_keys(&map, &req.id, &keys)?;
        {
            let json = serde_json::to_string(&spec).map_err(|e| ChannelError::Db(e.to_string()))?;
            let mut conn = self.shared.db.conn();
            let tx = conn
                .transaction()
                .map_err(|e| ChannelError::Db(e.to_string()))?;
            // a 'config' row of a channel no longer in the file belongs to nothing
            tx.execute(
                "DELETE FROM channels WHERE id = ?1 AND owner = 'config'",
                [&req.id],
            )
            .map_err(|e| ChannelError::Db(e.to_string()))?;
            tx.execute(
                "INSERT INTO channels (id, owner, spec, started) VALUES (?1, 'db', ?2, ?3)",
                (&req.id, &json, start),
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    ChannelError::Exists(req.id.clone())
                }
                e => ChannelError::Db(e.to_string()),
            })?;
            // a channel deleted earlier under this id may have left rows
            for sql in [
                "DELETE FROM destinations WHERE channel = ?1",
                "DELETE FROM overlay_layers WHERE channel = ?1",
            ] {
                tx.execute(sql, [&req.id])
                    .map_err(|e| ChannelError::Db(e.to_string()))?;
            }
            for d in &req.destinations {
                tx.execute(
                    "INSERT INTO destinations (channel, name, url, enabled, owner) VALUES (?1, ?2, ?3, ?4, 'db')",
                    (&req.id, &d.name, &d.url, d.enabled),
                )
                .map_err(|e| ChannelError::Db(e.to_string()))?;
            }
            tx.commit().map_err(|e| ChannelError::Db(e.to_string()))?;
        }
        let c = Channel::new(
            spec,
            Owner::Database,
            req.destinations.clone(),
            self.shared.clone(),
            self.confine.clone(),
        );
        map.insert(req.id.clone(), c.clone());
        drop(map);
        tracing::info!(channel = %c.id, destinations = req.destinations.len(), start, "channel created");
        if start {
            c.submit_start(true);
        }
        Ok((c, keys))
    }

    /// Changes a run-time channel's name, keys or encode (the encode at its next start).
    pub fn update(&self, id: &str, patch: ChannelPatch) -> Result<Arc<Channel>, ChannelError> {
        let map = self.map.write();
        let c = self.runtime_channel(&map, id)?;
        // validate everything first
        if let Some(name) = &patch.name {
            check_name(name)?;
        }
        if let Some(keys) = &patch.keys {
            if keys.is_empty() {
                return Err(ChannelError::Invalid {
                    field: "keys",
                    message: "a channel needs at least one stream key".into(),
                });
            }
            self.check_keys(&map, id, keys)?;
        }
        if let Some(output) = &patch.output
            && let Some((key, message)) = crate::config::output_error("output", output)
        {
            return Err(ChannelError::Invalid {
                field: "output",
                message: format!("{key}: {message}"),
            });
        }
        // then apply under the spec's lock: a fallback chosen meanwhile on the worker is kept
        {
            let mut spec = c.spec.lock();
            let mut next = spec.clone();
            if let Some(name) = patch.name {
                next.fallback.channel_name = name.clone();
                next.name = name;
            }
            if let Some(keys) = &patch.keys {
                next.keys = keys.clone();
            }
            if let Some(output) = patch.output {
                next.output = output;
            }
            let json = serde_json::to_string(&next).map_err(|e| ChannelError::Db(e.to_string()))?;
            self.shared
                .db
                .conn()
                .execute("UPDATE channels SET spec = ?2 WHERE id = ?1", (id, json))
                .map_err(|e| ChannelError::Db(e.to_string()))?;
            *spec = next;
        }
        drop(map);
        if let (Some(keys), Some(ingest)) = (&patch.keys, self.shared.ingest.get()) {
            // a key taken away stops publishing at once (a leaked key is revoked)
            let n = ingest.kick_unless_key(id, keys);
            if n > 0 {
                tracing::info!(channel = %id, publishers = n, "stream keys changed: disconnecting publishers with a removed key");
            }
        }
        tracing::info!(channel = %id, "channel updated");
        Ok(c)
    }

    /// Stops and deletes a run-time channel with its destinations.
    pub fn delete(&self, id: &str) -> Result<(), ChannelError> {
        let mut map = self.map.write();
        let c = self.runtime_channel(&map, id)?;
        {
            let mut conn = self.shared.db.conn();
            let tx = conn
                .transaction()
                .map_err(|e| ChannelError::Db(e.to_string()))?;
            tx.execute("DELETE FROM channels WHERE id = ?1", [id])
                .map_err(|e| ChannelError::Db(e.to_string()))?;
            tx.execute("DELETE FROM destinations WHERE channel = ?1", [id])
                .map_err(|e| ChannelError::Db(e.to_string()))?;
            tx.execute("DELETE FROM overlay_layers WHERE channel = ?1", [id])
                .map_err(|e| ChannelError::Db(e.to_string()))?;
            tx.commit().map_err(|e| ChannelError::Db(e.to_string()))?;
        }
        map.remove(id);
        drop(map);
        c.deleted.store(true, Ordering::SeqCst);
        c.stop();
        self.shared.metrics.forget_channel(id);
        tracing::info!(channel = %id, "channel deleted");
        Ok(())
    }

    /// The channel `id` if it belongs to the database: 404 when there is none, 409 naming the
    /// file when it is the config's.
    fn runtime_channel(
        &self,
        map: &BTreeMap<String, Arc<Channel>>,
        id: &str,
    ) -> Result<Arc<Channel>, ChannelError> {
        let c = map
            .get(id)
            .cloned()
            .ok_or_else(|| ChannelError::NotFound(id.into()))?;
        if c.owner == Owner::File {
            return Err(ChannelError::OwnedByFile {
                id: id.into(),
                file: self.shared.file.clone(),
            });
        }
        Ok(c)
    }

    /// Refuses keys that another channel uses (a key publishes to one channel).
    fn check_keys(
        &self,
        map: &BTreeMap<String, Arc<Channel>>,
        id: &str,
        keys: &[String],
    ) -> Result<(), ChannelError> {
        for k in keys {
            if let Some(message) = crate::config::stream_key_error(k) {
                return Err(ChannelError::Invalid {
                    field: "keys",
                    message,
                });
            }
            if let Some(w) = crate::config::short_stream_key_warning(&format!("channel {id}"), k) {
                tracing::warn!("{w}");
            }
            if let Some(other) = map
                .values()
                .find(|c| c.id != id && c.spec.lock().keys.iter().any(|x| x == k))
            {
                return Err(ChannelError::Invalid {
                    field: "keys",
                    message: format!(
                        "stream key {} is channel {:?}'s: a key publishes to one channel",
                        crate::redact::key(k),
                        other.id
                    ),
                });
            }
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), ChannelError> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(ChannelError::Invalid {
            field: "name",
            message: format!("{name:?} must be 1 to 100 characters"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    fn new_channel(id: &str, key: &str) -> NewChannel {
        NewChannel {
            id: id.into(),
            keys: vec![key.into()],
            destinations: vec![DestinationConfig::new("twitch", "rtmp://127.0.0.1:1/app/k")],
            start: Some(false),
            ..Default::default()
        }
    }

    #[test]
    fn a_runtime_channel_is_kept_and_comes_back_after_a_restart() {
        let f = Fixture::new();
        let (c, keys) = f
            .channels
            .create(new_channel("second", "live_second_key"))
            .expect("created");
        assert_eq!(
            keys,
            ["live_second_key"],
            "the keys are answered in full once"
        );
        assert_eq!(c.owner, Owner::Database);
        assert!(!c.is_started(), "start: false");
        let again = f.reload();
        let c = again.get("second").expect("loaded again");
        assert_eq!(c.owner, Owner::Database);
        assert_eq!(c.spec().keys, ["live_second_key"]);
        let dests: Vec<String> = c.destinations.list().into_iter().map(|d| d.name).collect();
        assert_eq!(dests, ["twitch"]);
        assert_eq!(again.get("default").map(|c| c.owner), Some(Owner::File));
    }

    #[test]
    fn a_generated_key_is_answered_once_and_a_key_publishes_to_one_channel() {
        let f = Fixture::new();
        let (_, keys) = f
            .channels
            .create(NewChannel {
                id: "gen".into(),
                start: Some(false),
                ..Default::default()
            })
            .expect("created");
        assert!(keys.len() == 1 && keys[0].starts_with("live_"), "{keys:?}");
        // the config channel's key, and the new channel's, are taken
        for key in ["live_default_key", keys[0].as_str()] {
            match f.channels.create(new_channel("other", key)) {
                Err(ChannelError::Invalid { field: "keys", .. }) => {}
                r => panic!("a taken key was accepted: {:?}", r.map(|_| ())),
            }
        }
        assert_eq!(
            f.rows("channels", "other"),
            0,
            "nothing kept of a refused create"
        );
        assert!(matches!(
            f.channels.create(new_channel("gen", "live_fresh_key")),
            Err(ChannelError::Exists(_))
        ));
        assert!(matches!(
            f.channels
                .create(new_channel("Not An Id", "live_fresh_key")),
            Err(ChannelError::Invalid { field: "id", .. })
        ));
    }

    #[test]
    fn a_bad_destination_refuses_the_whole_create() {
        let f = Fixture::new();
        let mut req = new_channel("third", "live_third_key");
        req.destinations.push(DestinationConfig::new(
            "twitch",
            "rtmp://127.0.0.1:1/app/k2",
        ));
        assert!(matches!(
            f.channels.create(req),
            Err(ChannelError::Invalid {
                field: "destinations",
                ..
            })
        ));
        let mut req = new_channel("third", "live_third_key");
        req.destinations[0].url = "http://example.com/not-rtmp".into();
        assert!(matches!(
            f.channels.create(req),
            Err(ChannelError::Invalid {
                field: "destinations",
                ..
            })
        ));
        assert!(f.channels.get("third").is_none());
        assert_eq!(
            f.rows("channels", "third") + f.rows("destinations", "third"),
            0
        );
    }

    #[test]
    fn the_files_channel_can_be_neither_edited_nor_deleted_here() {
        let f = Fixture::new();
        let patch = ChannelPatch {
            name: Some("renamed".into()),
            ..Default::default()
        };
        assert!(matches!(
            f.channels.update("default", patch),
            Err(ChannelError::OwnedByFile { .. })
        ));
        assert!(matches!(
            f.channels.delete("default"),
            Err(ChannelError::OwnedByFile { .. })
        ));
        assert!(matches!(
            f.channels.delete("nope"),
            Err(ChannelError::NotFound(_))
        ));
        assert!(f.channels.get("default").is_some());
    }

    #[test]
    fn an_update_is_checked_whole_before_any_of_it_applies() {
        let f = Fixture::new();
        f.channels
            .create(new_channel("edit", "live_edit_key"))
            .expect("created");
        let patch = ChannelPatch {
            name: Some("New name".into()),
            keys: Some(vec![]),
            ..Default::default()
        };
        assert!(matches!(
            f.channels.update("edit", patch),
            Err(ChannelError::Invalid { field: "keys", .. })
        ));
        let c = f.channels.get("edit").expect("there");
        assert_eq!(
            c.spec().name,
            "edit",
            "the name changed with a refused patch"
        );
        let patch = ChannelPatch {
            name: Some("New name".into()),
            keys: Some(vec!["live_edit_key2".into()]),
            ..Default::default()
        };
        f.channels.update("edit", patch).expect("updated");
        let spec = f.reload().get("edit").expect("reloaded").spec();
        assert_eq!(
            (spec.name.as_str(), spec.keys.as_slice()),
            ("New name", &["live_edit_key2".to_string()][..])
        );
        assert_eq!(
            spec.fallback.channel_name, "New name",
            "the slate shows the new name"
        );
    }

    #[test]
    fn a_delete_leaves_no_row_behind_for_a_channel_with_its_id() {
        let f = Fixture::new();
        let (c, _) = f
            .channels
            .create(new_channel("gone", "live_gone_key"))
            .expect("created");
        f.shared
            .db
            .conn()
            .execute(
                "INSERT INTO overlay_layers (channel, name, layer) VALUES ('gone', 'score', '{}')",
                [],
            )
            .expect("layer row");
        f.channels.delete("gone").expect("deleted");
        assert!(f.channels.get("gone").is_none());
        for table in ["channels", "destinations", "overlay_layers"] {
            assert_eq!(f.rows(table, "gone"), 0, "{table} kept a row");
        }
        // the deleted channel's handle writes nothing any more
        c.choose_fallback(None);
        assert_eq!(
            f.rows("channels", "gone"),
            0,
            "a deleted channel wrote its row back"
        );
        // its key is free again, and the new channel starts with no destinations
        let mut req = new_channel("gone", "live_gone_key");
        req.destinations.clear();
        let (c, _) = f.channels.create(req).expect("created again");
        assert!(c.destinations.list().is_empty());
    }
}
