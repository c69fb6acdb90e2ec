//! A channel's own rows in the database: started/stopped, the chosen fallback media, the
//! overlay layers to show again at start, and a run-time channel's spec. Each write is skipped
//! once the channel is deleted (its rows are gone, or belong to a new channel with its id).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::{Channel, Owner};

impl Channel {
    /// Keeps started/stopped in the database.
    pub(super) fn persist_started(&self, started: bool) {
        if self.deleted.load(Ordering::SeqCst) {
            return;
        }
        let r = self.shared.db.conn().execute(
            "INSERT INTO channels (id, owner, spec, started) VALUES (?1, 'config', NULL, ?2)
             ON CONFLICT (id) DO UPDATE SET started = excluded.started",
            (&self.id, started),
        );
        if let Err(e) = r {
            tracing::error!(channel = %self.id, error = %e, "channel state not kept in the database");
        }
    }

    /// Keeps the chosen fallback media (`None`: the slate) for the next start and in the
    /// database, for every channel.
    pub(super) fn keep_fallback(&self, media: Option<PathBuf>) {
        let column = media
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(); // '' is the slate; NULL is "as configured"
        self.spec.lock().fallback.media = media;
        if self.deleted.load(Ordering::SeqCst) {
            return; // its rows are gone, or belong to a new channel with this id
        }
        let started = self.is_started();
        let r = self.shared.db.conn().execute(
            "INSERT INTO channels (id, owner, spec, started, fallback_media) VALUES (?1, 'config', NULL, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET fallback_media = excluded.fallback_media",
            (&self.id, started, &column),
        );
        if let Err(e) = r {
            tracing::error!(channel = %self.id, error = %e, "fallback choice not kept in the database");
        }
        self.persist_spec();
    }

    /// Keeps an overlay layer (`None`: removes it) in the database; the layers are shown again
    /// when the channel starts.
    pub(super) fn keep_layer(&self, name: &str, layer: Option<&crate::action::Layer>) {
        if self.deleted.load(Ordering::SeqCst) {
            return;
        }
        let json = layer.map(serde_json::to_string);
        {
            // a scoreboard re-sends the same layer every poll: write only changes
            let mut kept = self.kept_layers.lock();
            let now = json.as_ref().and_then(|j| j.as_ref().ok()).cloned();
            if kept.get(name) == Some(&now) {
                return;
            }
            kept.insert(name.to_string(), now);
        }
        let conn = self.shared.db.conn();
        let r = match json {
            Some(Ok(json)) => conn.execute(
                "INSERT INTO overlay_layers (channel, name, layer) VALUES (?1, ?2, ?3)
                 ON CONFLICT (channel, name) DO UPDATE SET layer = excluded.layer",
                (&self.id, name, json),
            ),
            Some(Err(e)) => {
                return tracing::error!(channel = %self.id, layer = %name, error = %e, "layer not kept");
            }
            None => conn.execute(
                "DELETE FROM overlay_layers WHERE channel = ?1 AND name = ?2",
                (&self.id, name),
            ),
        };
        if let Err(e) = r {
            tracing::error!(channel = %self.id, layer = %name, error = %e, "overlay layer not kept in the database");
        }
    }

    /// The overlay layers kept for this channel, to show again at start.
    pub(super) fn layers_to_restore(&self) -> Vec<crate::action::Layer> {
        let conn = self.shared.db.conn();
        let rows: Result<Vec<String>, _> = conn
            .prepare("SELECT layer FROM overlay_layers WHERE channel = ?1 ORDER BY rowid")
            .and_then(|mut st| {
                st.query_map([&self.id], |r| r.get(0))
                    .and_then(|rows| rows.collect())
            });
        match rows {
            Ok(rows) => rows
                .iter()
                .filter_map(|j| serde_json::from_str(j).ok())
                .collect(),
            Err(e) => {
                tracing::error!(channel = %self.id, error = %e, "overlay layers kept in the database unreadable");
                Vec::new()
            }
        }
    }

    /// Writes a run-time channel's spec back (its fallback media changed).
    pub(super) fn persist_spec(&self) {
        if self.owner != Owner::Database || self.deleted.load(Ordering::SeqCst) {
            return;
        }
        let json = match serde_json::to_string(&self.spec()) {
            Ok(j) => j,
            Err(e) => return tracing::error!(channel = %self.id, error = %e, "channel not kept"),
        };
        if let Err(e) = self.shared.db.conn().execute(
            "UPDATE channels SET spec = ?2 WHERE id = ?1",
            (&self.id, json),
        ) {
            tracing::error!(channel = %self.id, error = %e, "channel change not kept in the database");
        }
    }
}
