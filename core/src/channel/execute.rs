//! One action on one channel, on the channel's worker thread: a short match and one function per
//! action. Every action passes the roots first ([`crate::roots::Confinement::screen`]): a
//! refused path is logged and what is left of the action runs. An action that needs the
//! running program while the channel is stopped is logged and ignored, except a fallback
//! choice, which is kept for the next start.

use std::path::PathBuf;
use std::time::Instant;

use super::Channel;
use super::destinations::{Change, DestinationError};
use crate::action::{Action, Layer, LayerSource};
use crate::config::DestinationConfig;
use crate::event::{SessionId, Source};
use crate::media::fallback::Fallback;

impl Channel {
    /// Executes `action`; `cause` is the session whose event asked for it, if any.
    pub(super) fn execute(&self, action: Action, cause: Option<SessionId>) {
        let crate::roots::Screened { action, refused } = self.confine.screen(action);
        if let Some(r) = refused {
            tracing::error!(channel = %self.id, error = %r.error, "{}", r.consequence);
        }
        let Some(action) = action else { return };
        match action {
            Action::Switch {
                to,
                media,
                reason,
                session,
            } => self.switch(to, media, reason, session, cause),
            Action::Kick { session, reason } => self.kick(session, &reason),
            Action::SetFallback { media } => match self.running_fallback() {
                Some(f) => self.set_fallback(&f, media),
                None => self.keep_fallback(media), // for the next start
            },
            Action::DestinationAdd {
                name,
                url,
                profile,
                segment_minutes,
                max_total_gib,
            } => self.destination_add(DestinationConfig {
                profile,
                segment_minutes,
                max_total_gib,
                ..DestinationConfig::new(&name, &url)
            }),
            Action::DestinationRemove { name } => {
                self.log_err(&name, self.destinations.delete(&name))
            }
            Action::DestinationEnable { name } => self.destination_enable(&name, true),
            Action::DestinationDisable { name } => self.destination_enable(&name, false),
            Action::OverlaySet { layer } => self.overlay_set(layer),
            Action::OverlayHide { name } => self.overlay_hide(&name),
            Action::ChannelStart => self.run_start(),
            Action::ChannelStop => self.run_stop(),
            Action::RejectPublish { .. } | Action::OnChannel { .. } | Action::ChannelDelete => {
                tracing::warn!(channel = %self.id, action = ?action, "action not for a channel's worker: ignored");
            }
        }
    }

    /// The running fallback, or `None` while stopped.
    fn running_fallback(&self) -> Option<std::sync::Arc<Fallback>> {
        self.running.lock().as_ref().map(|r| r.fallback.clone())
    }

    fn stopped(&self, what: &str) {
        tracing::warn!(channel = %self.id, "{what} ignored: the channel is stopped");
    }

    /// To the fallback (with `media`, if given, loaded first), or to live: `session` if it
    /// publishes here, else the session whose event caused this, else the newest healthy one.
    fn switch(
        &self,
        to: Source,
        media: Option<PathBuf>,
        reason: String,
        session: Option<SessionId>,
        cause: Option<SessionId>,
    ) {
        let id = &self.id;
        let (Some(program), Some(fallback)) = (self.program(), self.running_fallback()) else {
            return self.stopped("switch");
        };
        if let Some(path) = media {
            self.set_fallback(&fallback, Some(path));
        }
        match to {
            Source::Fallback => program.cut_to_fallback(reason),
            Source::Live => {
                let ingest = self.shared.ingest.get();
                let here =
                    |s: &SessionId| ingest.is_some_and(|i| i.channel_of(*s).as_ref() == Some(id));
                if let Some(s) = session.filter(|s| !here(s)) {
                    return tracing::warn!(channel = %id, session = s, %reason, "switch to live ignored: no such session publishes to this channel");
                }
                let target = session
                    .or(cause.filter(here))
                    .or_else(|| ingest.and_then(|i| i.newest_healthy(id)));
                match target {
                    Some(session) => program.arm_live(session, reason),
                    None => {
                        tracing::warn!(channel = %id, %reason, "switch to live ignored: nobody is publishing")
                    }
                }
            }
        }
    }

    /// Disconnects `session` if it publishes to this channel.
    fn kick(&self, session: SessionId, reason: &str) {
        let id = &self.id;
        match self.shared.ingest.get() {
            Some(i) if i.channel_of(session).as_ref() == Some(id) && i.kick(session) => {
                tracing::info!(channel = %id, session, %reason, "kicking publisher");
            }
            _ => {
                tracing::warn!(channel = %id, session, "kick ignored: no such session on this channel")
            }
        }
    }

    /// Loads `media` (`None`: the slate) into the running fallback and keeps the choice.
    pub(super) fn set_fallback(&self, fallback: &Fallback, media: Option<PathBuf>) {
        match fallback.set_media(media.as_deref()) {
            Ok(what) => tracing::info!(channel = %self.id, fallback = %what, "fallback media set"),
            Err(e) => {
                tracing::error!(channel = %self.id, error = %e, "fallback media unusable: showing the slate instead")
            }
        }
        if let Some(copy) = self.program().and_then(|p| p.copy()) {
            let spec = self.spec();
            let slate = (spec.fallback.slate_text, spec.fallback.channel_name);
            let format = copy.format();
            let tags = crate::media::output::copy::fallback_tags(media.as_deref(), &slate, &format)
                .or_else(|_| crate::media::output::copy::fallback_tags(None, &slate, &format));
            match tags.and_then(|(tags, what)| copy.replace_fallback(tags).map(|()| what)) {
                Ok(what) => {
                    tracing::info!(channel = %self.id, fallback = %what, "copy mode: the new fallback is encoded and sent from its next keyframe")
                }
                Err(e) => {
                    tracing::error!(channel = %self.id, error = %e, "copy mode: the new fallback could not be encoded, the old one stays")
                }
            }
        }
        self.keep_fallback(media);
    }

    fn destination_add(&self, config: DestinationConfig) {
        let name = config.name.clone();
        let _rt = self.shared.runtime.enter();
        self.log_err(&name, self.destinations.create(config));
    }

    fn destination_enable(&self, name: &str, enabled: bool) {
        let _rt = self.shared.runtime.enter();
        self.log_err(
            name,
            self.destinations.update(name, Change::enabled(enabled)),
        );
    }

    fn log_err(&self, name: &str, r: Result<(), DestinationError>) {
        if let Err(e) = r {
            tracing::warn!(channel = %self.id, destination = %name, error = %e, "destination action ignored");
        }
    }

    /// Renders `layer` (built-in text or PNG, or a plugin's image) and shows it; a layer whose
    /// source is unchanged only moves. A layer shown is kept for the next start.
    fn overlay_set(&self, layer: Layer) {
        let id = &self.id;
        let Some(program) = self.program() else {
            return self.stopped("overlay");
        };
        let overlay = program.overlay();
        if overlay.unchanged_source(&layer) {
            overlay.reposition(&layer);
            self.keep_layer(&layer.name, Some(&layer));
            return;
        }
        let rendering = Instant::now();
        let image = match crate::media::overlay::render_builtin(&layer.source) {
            Some(r) => r,
            None => match &layer.source {
                LayerSource::Plugin { plugin, data } => {
                    self.shared
                        .plugins
                        .render(plugin, layer.width, layer.height, data)
                }
                _ => Err("unsupported layer source".into()),
            },
        };
        self.shared.metrics.render_time(rendering.elapsed());
        match image.and_then(|img| overlay.set(&layer, &img)) {
            Ok(()) => {
                tracing::debug!(channel = %id, layer = %layer.name, "overlay layer set");
                self.keep_layer(&layer.name, Some(&layer));
            }
            Err(e) => {
                tracing::warn!(channel = %id, layer = %layer.name, error = %e, "overlay layer not shown")
            }
        }
    }

    /// Hides layer `name` and forgets it for the next start.
    fn overlay_hide(&self, name: &str) {
        self.keep_layer(name, None);
        match self.program() {
            Some(p) if p.overlay().hide(name) => {}
            _ => {
                tracing::debug!(channel = %self.id, layer = %name, "overlay hide: no such layer")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    fn fallback_row(f: &Fixture) -> Option<String> {
        f.shared
            .db
            .conn()
            .query_row(
                "SELECT fallback_media FROM channels WHERE id = 'default'",
                [],
                |r| r.get(0),
            )
            .expect("row")
    }

    #[test]
    fn a_fallback_chosen_while_stopped_is_kept_for_the_next_start() {
        let f = Fixture::new();
        let c = f.channels.get("default").expect("default");
        let media = f.cfg.data_dir.join("media/card.png");
        std::fs::write(&media, b"png").expect("file");
        c.execute(
            Action::SetFallback {
                media: Some(media.clone()),
            },
            None,
        );
        assert_eq!(c.spec().fallback.media.as_deref(), Some(media.as_path()));
        assert_eq!(fallback_row(&f), Some(media.display().to_string()));
        assert_eq!(
            f.reload()
                .get("default")
                .expect("default")
                .spec()
                .fallback
                .media,
            Some(media.clone()),
            "a restart forgot the choice"
        );
        // back to the slate: '' in the database
        c.execute(Action::SetFallback { media: None }, None);
        assert_eq!(fallback_row(&f).as_deref(), Some(""));
        assert_eq!(c.spec().fallback.media, None);
    }

    #[test]
    fn a_fallback_outside_the_media_roots_changes_nothing() {
        let f = Fixture::new();
        let c = f.channels.get("default").expect("default");
        let outside = f.dir.path().join("elsewhere.png");
        std::fs::write(&outside, b"png").expect("file");
        for path in [outside, PathBuf::from("/etc/passwd")] {
            c.execute(Action::SetFallback { media: Some(path) }, None);
            assert_eq!(c.spec().fallback.media, None);
            assert_eq!(
                fallback_row(&f),
                None,
                "a refused path reached the database"
            );
        }
    }

    #[test]
    fn actions_that_need_the_program_are_ignored_while_stopped() {
        let f = Fixture::new();
        let c = f.channels.get("default").expect("default");
        let mut changes = f.shared.changes.subscribe();
        let media = f.cfg.data_dir.join("media/card.png");
        std::fs::write(&media, b"png").expect("file");
        c.execute(
            Action::Switch {
                to: Source::Fallback,
                media: Some(media),
                reason: "operator".into(),
                session: None,
            },
            None,
        );
        c.execute(
            Action::Switch {
                to: Source::Live,
                media: None,
                reason: "operator".into(),
                session: Some(7),
            },
            None,
        );
        c.execute(
            Action::Kick {
                session: 7,
                reason: "test".into(),
            },
            None,
        );
        assert!(!c.is_started());
        assert_eq!(
            c.spec().fallback.media,
            None,
            "a switch's media was kept while stopped"
        );
        let v = c.view();
        assert_eq!((v.state, v.on_air), ("stopped", None));
        // nothing was kept or announced: the switches and the kick did nothing at all
        assert_eq!(fallback_row(&f), None);
        assert!(
            changes.try_recv().is_err(),
            "a stopped channel announced a change"
        );
    }

    #[test]
    fn destinations_are_added_then_disabled_then_removed_and_a_bad_one_is_not_added() {
        let f = Fixture::new();
        let c = f.channels.get("default").expect("default");
        let add = |name: &str, url: &str| Action::DestinationAdd {
            name: name.into(),
            url: url.into(),
            profile: None,
            segment_minutes: None,
            max_total_gib: None,
        };
        c.execute(add("yt", "rtmp://127.0.0.1:1/live2/key"), None);
        c.execute(add("bad", "ftp://127.0.0.1/x"), None);
        c.execute(add("yt", "rtmp://127.0.0.1:1/live2/other"), None); // taken name
        let list = c.destinations.list();
        assert_eq!(list.len(), 1, "{list:?}");
        assert!(list[0].enabled);
        c.execute(Action::DestinationDisable { name: "yt".into() }, None);
        assert!(!c.destinations.get("yt").expect("yt").enabled);
        assert!(
            !f.reload()
                .get("default")
                .expect("default")
                .destinations
                .get("yt")
                .expect("kept")
                .enabled,
            "disabled, but not in the database"
        );
        c.execute(Action::DestinationRemove { name: "yt".into() }, None);
        assert!(c.destinations.list().is_empty());
        assert_eq!(f.rows("destinations", "default"), 0);
    }

    #[test]
    fn hiding_a_layer_while_stopped_forgets_it_for_the_next_start() {
        let f = Fixture::new();
        let c = f.channels.get("default").expect("default");
        let layer = Layer {
            name: "score".into(),
            source: LayerSource::Text {
                text: "1-0".into(),
                size_px: 32,
                color: 0xffff_ffff,
                font: None,
            },
            x: 0,
            y: 0,
            width: 0,
            height: 0,
            z: 0,
            live_only: false,
        };
        c.keep_layer("score", Some(&layer));
        assert_eq!(c.layers_to_restore().len(), 1);
        c.execute(
            Action::OverlayHide {
                name: "score".into(),
            },
            None,
        );
        assert!(c.layers_to_restore().is_empty());
        assert_eq!(f.rows("overlay_layers", "default"), 0);
    }
}
