//! Channels: onair's unit. A channel owns its switch, fallback, overlay, encode, fan-out,
//! destinations and counters, and executes the actions addressed to it on its own worker thread,
//! so a slow operation on one channel (probing fallback media, rendering an overlay, building its
//! pipelines) never holds up another channel or the engine loop.
//!
//! Life cycle: `create → start → stop → delete`. A started channel is on air from its first
//! second (the fallback); stopping closes its destination connections (the platforms see the
//! publisher leave), disconnects its publishers and frees its pipelines. Started/stopped is
//! kept in the database, as are channels created at run time.
//!
//! Ownership: a channel from `onair.toml` belongs to the file (it can be started and stopped,
//! but edits and deletes answer [`ChannelError::OwnedByFile`]); one created at run time belongs
//! to the database.
//!
//! Paths: every action a channel executes, from the API, Lua or a plugin, passes
//! [`Confinement::screen`] first (fallback media, overlay PNGs and fonts under the media roots),
//! and a recording it creates must write under the recording roots ([`crate::roots`]).
//!
//! Lock order: [`Channels::map`] before a channel's `running`, before its `spec`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use gst::prelude::*;
use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::config::{ChannelSpec, DestinationConfig, FallbackConfig, OutputConfig};
use crate::db::Db;
use crate::destinations::{DEFAULT_CHANNEL, Destinations};
use crate::event::{Event, SessionId, Source};
use crate::media::output::destination::{Connections, DestinationStatus};
use crate::media::output::encode::Encodes;
use crate::media::fallback::Fallback;
use crate::media::ingest::{Ingest, Route, Router, SessionStatus};
use crate::media::program::{EventSink, Program};
use crate::roots::{Confinement, RootError};

/// Why a channel operation was refused. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// 400: `field` is wrong.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// 404.
    #[error("no channel named {0:?}")]
    NotFound(String),
    /// 409: the id is taken.
    #[error("a channel named {0:?} exists")]
    Exists(String),
    /// 409: defined in the config file.
    #[error(
        "channel {id:?} is defined in {file}: edit or delete it there (it can be started and stopped here)"
    )]
    OwnedByFile { id: String, file: String },
    /// 500.
    #[error("database: {0}")]
    Db(String),
}

/// A channel's counters, for the API.
#[derive(Default)]
pub struct Counters {
    pub switches: AtomicU64,
    pub stalls: AtomicU64,
    pub publishes: AtomicU64,
    pub rejected_by_policy: AtomicU64,
}

/// `onair.toml` or the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    File,
    Database,
}

impl Owner {
    /// As the API spells it: `config` or `runtime`.
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::File => "config",
            Owner::Database => "runtime",
        }
    }
}

/// A channel as `GET /api/channels` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub id: String,
    pub name: String,
    /// `config` (onair.toml) or `runtime` (created over the API or from Lua).
    pub owner: &'static str,
    /// `started` or `stopped`.
    pub state: &'static str,
    /// Seconds since the channel last started (absent while stopped).
    pub uptime_s: Option<f64>,
    /// `live` or `fallback` (absent while stopped).
    pub on_air: Option<Source>,
    pub on_air_session: Option<SessionId>,
    /// Seconds since the last switch.
    pub on_air_for_s: Option<f64>,
    /// Why the last switch happened (the `switched` event's reason; `start` before any).
    pub on_air_reason: Option<String>,
    /// What the fallback shows: `slate`, `image PATH` or `video PATH`.
    pub fallback: String,
    /// The stream keys, redacted (`live…a9f3`).
    pub keys: Vec<String>,
    /// The encode: `WIDTHxHEIGHT@FPS`, video and audio kbit/s.
    pub output: OutputView,
    pub sessions: Vec<SessionStatus>,
    pub destinations: Vec<DestinationStatus>,
    pub overlay: Vec<crate::media::overlay::LayerStatus>,
    pub counters: ChannelCounters,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OutputView {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Frames per second the channel's switch runs at now: the highest of `fps` and the frame
    /// rates of the profiles its destinations use (each encode drops to its own). `null` while
    /// the channel is stopped.
    pub switch_fps: Option<u32>,
    pub video_bitrate_kbps: u32,
    pub audio_bitrate_kbps: u32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelCounters {
    pub publishes: u64,
    pub rejected_by_policy: u64,
    pub stalls: u64,
    pub switches: u64,
}

/// What the channels share: the database, the engine's event queue, the ingest (for switching
/// and kicking), the plugins (for overlay rendering) and the runtime their tasks run on.
pub struct Shared {
    pub db: Arc<Db>,
    pub events: EventSink,
    pub ingest: OnceLock<Arc<Ingest>>,
    pub plugins: crate::wasm::SharedHost,
    pub runtime: tokio::runtime::Handle,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The config file's name, for messages.
    pub file: String,
    /// Changes for the control room (`GET /api/events`, `changed`).
    pub changes: tokio::sync::broadcast::Sender<crate::engine::Changed>,
    /// The encoding profiles destinations may name (built-in and `[profile.NAME]`).
    pub profiles: Arc<crate::config::Profiles>,
    /// Streamer accounts, whose keys publish after the config's.
    pub streamers: Arc<crate::streamers::Streamers>,
}

impl Shared {
    /// Tells the control rooms that `what` changed (nobody listening is fine).
    pub fn changed(&self, what: &'static str, channel: Option<&str>) {
        let _ = self.changes.send(crate::engine::Changed {
            what,
            channel: channel.map(str::to_string),
        });
    }
}

/// One channel's pipelines while it runs.
struct Running {
    program: Arc<Program>,
    /// Feeds the program; dropping the last clone stops its threads.
    fallback: Arc<Fallback>,
    since: Instant,
}

/// Work for a channel's worker thread, in order.
enum Job {
    Action(Action, Option<SessionId>),
    Start,
    Stop,
}

pub struct Channel {
    pub id: String,
    pub owner: Owner,
    spec: Mutex<ChannelSpec>,
    encodes: Arc<Encodes>,
    pub destinations: Destinations,
    events: EventSink,
    running: Mutex<Option<Running>>,
    pub counters: Counters,
    jobs: crossbeam_channel::Sender<Job>,
    shared: Arc<Shared>,
    /// Set by [`Channels::delete`]: queued jobs are dropped.
    deleted: std::sync::atomic::AtomicBool,
    /// The layer JSON last written to the database, by name (`None`: removed).
    kept_layers: Mutex<std::collections::HashMap<String, Option<String>>>,
    /// The folders paths in actions must lie under.
    confine: Arc<Confinement>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Channel {
    /// Makes a stopped channel and its worker thread. `dests` are its destinations as loaded.
    fn new(
        spec: ChannelSpec,
        owner: Owner,
        dests: Vec<DestinationConfig>,
        shared: Arc<Shared>,
        confine: Arc<Confinement>,
    ) -> Arc<Channel> {
        let encodes = Encodes::new(&spec.id, shared.profiles.clone());
        let _rt = shared.runtime.enter();
        let ledger = Arc::new(crate::recordings::DbLedger(shared.db.clone()));
        let connections = Connections::new(
            &spec.id,
            &dests,
            encodes.clone(),
            shared.events.clone(),
            ledger,
        );
        let destinations = Destinations::new(
            shared.db.clone(),
            connections,
            &spec.id,
            &spec.destinations,
            &shared.file,
            confine.clone(),
        );
        let (jobs, rx) = crossbeam_channel::unbounded();
        let channel = Arc::new(Channel {
            id: spec.id.clone(),
            owner,
            spec: Mutex::new(spec),
            encodes,
            destinations,
            events: shared.events.clone(),
            running: Mutex::new(None),
            counters: Counters::default(),
            jobs,
            shared,
            deleted: Default::default(),
            kept_layers: Mutex::default(),
            confine,
        });
        let weak = Arc::downgrade(&channel);
        let runtime = channel.shared.runtime.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("channel-{}", channel.id))
            .spawn(move || worker(weak, rx, runtime));
        if let Err(e) = spawned {
            tracing::error!(channel = %channel.id, error = %e, "channel worker not started: its actions are ignored");
        }
        channel
    }

    pub fn spec(&self) -> ChannelSpec {
        lock(&self.spec).clone()
    }

    /// The running program, or `None` while stopped.
    pub fn program(&self) -> Option<Arc<Program>> {
        lock(&self.running).as_ref().map(|r| r.program.clone())
    }

    pub fn is_started(&self) -> bool {
        lock(&self.running).is_some()
    }

    /// The channel's encoded stream (for the preview), or `None` while stopped.
    pub fn fanout(&self) -> Option<Arc<crate::media::output::fanout::FanOut>> {
        self.is_started().then(|| self.encodes.main())
    }

    /// Mean time a frame spends in each running encode's video encoder, in seconds, by profile
    /// key (`""`: the channel's own). Empty while stopped.
    pub fn encode_latency(&self) -> Vec<(String, f64)> {
        self.program()
            .map(|p| p.encode_latency())
            .unwrap_or_default()
    }

    /// Buffers its destinations and preview viewers lost to a full queue, by name.
    pub fn dropped_buffers(&self) -> std::collections::HashMap<String, u64> {
        self.encodes.dropped()
    }

    /// Queues `action` for this channel's worker. `cause` is the session whose event asked for
    /// it, if any.
    pub fn submit(&self, action: Action, cause: Option<SessionId>) {
        let _ = self.jobs.send(Job::Action(action, cause));
    }

    /// Whether `path` may be this channel's fallback media: under the media roots
    /// (`media.roots`). Check before reading the file.
    pub fn check_media(&self, path: &std::path::Path) -> Result<(), RootError> {
        self.confine.fallback_media(path)
    }

    /// Chooses what the fallback shows (`None`: the slate), at once: kept, and loaded into the
    /// running fallback, before this returns (so the answer and the gallery's "in use" are
    /// already true). Blocks while the media is probed and decoded. Media outside the media
    /// roots is refused and logged ([`Channel::check_media`] says so beforehand): the fallback
    /// is unchanged.
    pub fn choose_fallback(&self, media: Option<PathBuf>) {
        if let Some(Err(e)) = media.as_deref().map(|p| self.check_media(p)) {
            tracing::error!(channel = %self.id, error = %e, "fallback media refused, the fallback is unchanged");
            return;
        }
        let running = lock(&self.running).as_ref().map(|r| r.fallback.clone());
        match running {
            Some(f) => self.set_fallback(&f, media),
            None => self.keep_fallback(media),
        }
        self.changed("channels");
    }

    /// Tells the control rooms that this channel's `what` changed.
    pub fn changed(&self, what: &'static str) {
        self.shared.changed(what, Some(&self.id));
    }

    /// Queues a start (true) or a stop (false); the worker keeps the state in the database.
    pub fn submit_start(&self, start: bool) {
        let _ = self.jobs.send(if start { Job::Start } else { Job::Stop });
    }

    pub fn view(&self) -> ChannelView {
        let spec = self.spec();
        let running = lock(&self.running);
        let (on_air, on_air_session, on_air_for_s, on_air_reason) = match running.as_ref() {
            Some(r) => {
                let (s, session, for_s) = r.program.on_air();
                (
                    Some(s),
                    session,
                    Some(for_s),
                    Some(r.program.on_air_reason()),
                )
            }
            None => (None, None, None, None),
        };
        let fallback = running
            .as_ref()
            .map(|r| r.fallback.describe())
            .unwrap_or_else(|| match &spec.fallback.media {
                Some(p) => p.display().to_string(),
                None => "slate".into(),
            });
        let overlay = running
            .as_ref()
            .map(|r| r.program.overlay().status())
            .unwrap_or_default();
        let uptime_s = running.as_ref().map(|r| r.since.elapsed().as_secs_f64());
        let switch_fps = running.as_ref().map(|r| r.program.format().fps);
        drop(running);
        let c = &self.counters;
        ChannelView {
            id: self.id.clone(),
            name: spec.name.clone(),
            owner: self.owner.as_str(),
            state: if uptime_s.is_some() {
                "started"
            } else {
                "stopped"
            },
            uptime_s,
            on_air,
            on_air_session,
            on_air_for_s,
            on_air_reason,
            fallback,
            keys: spec.keys.iter().map(|k| crate::redact::key(k)).collect(),
            output: OutputView {
                width: spec.output.width,
                height: spec.output.height,
                fps: spec.output.fps,
                switch_fps,
                video_bitrate_kbps: spec.output.video_bitrate_kbps,
                audio_bitrate_kbps: spec.output.audio_bitrate_kbps,
            },
            sessions: self
                .shared
                .ingest
                .get()
                .map(|i| i.sessions(Some(&self.id)))
                .unwrap_or_default(),
            destinations: self.destinations.connections().status(),
            overlay,
            counters: ChannelCounters {
                publishes: c.publishes.load(Ordering::Relaxed),
                rejected_by_policy: c.rejected_by_policy.load(Ordering::Relaxed),
                stalls: c.stalls.load(Ordering::Relaxed),
                switches: c.switches.load(Ordering::Relaxed),
            },
        }
    }

    /// Builds and starts the program, the fallback and the destination connections. A no-op
    /// when running.
    fn start(&self) -> Result<(), crate::media::MediaError> {
        let mut running = lock(&self.running);
        // `delete` sets `deleted` before its stop: a start queued before it must not run after
        if running.is_some() || self.deleted.load(Ordering::SeqCst) {
            return Ok(());
        }
        let spec = self.spec();
        let program = Program::build(
            &self.id,
            &spec.output,
            self.mix_fps(&spec.output),
            self.encodes.main(),
            self.events.clone(),
        )?;
        let fallback = Fallback::start(program.clone(), &spec.fallback)?;
        program
            .pipeline()
            .set_state(gst::State::Playing)
            .map_err(|e| crate::media::MediaError::Start {
                what: format!("channel {}'s program", self.id),
                message: e.to_string(),
            })?;
        watch_bus(&self.id, program.pipeline());
        self.encodes.started(program.clone());
        let fallback = Arc::new(fallback);
        *running = Some(Running {
            program,
            fallback,
            since: Instant::now(),
        });
        drop(running);
        {
            let _rt = self.shared.runtime.enter();
            self.destinations.connections().resume();
        }
        tracing::info!(channel = %self.id, "channel started");
        // the layers it showed before, in order, after anything already queued
        for layer in self.layers_to_restore() {
            self.submit(Action::OverlaySet { layer }, None);
        }
        Ok(())
    }

    /// The frame rate the switch starts at: the highest of the channel's `[output]` and the
    /// profiles of its enabled destinations (a destination added later at a higher rate raises
    /// it then: [`Program::add_encode`]).
    fn mix_fps(&self, output: &crate::config::OutputConfig) -> u32 {
        let connections = self.destinations.connections();
        let profiles = connections.encodes().profiles();
        let fps = connections
            .configs()
            .iter()
            .filter(|d| d.enabled)
            .filter_map(|d| profiles.get(d.profile.as_deref()?))
            .map(|p| p.fps)
            .fold(output.fps, u32::max);
        if fps > output.fps {
            tracing::info!(channel = %self.id, fps, output_fps = output.fps,
                "the switch runs at a destination profile's frame rate, above the channel's [output]");
        }
        fps
    }

    /// Closes the destination connections, disconnects the publishers and frees the pipelines.
    fn stop(&self) {
        let Some(r) = lock(&self.running).take() else {
            return;
        };
        self.destinations.connections().suspend();
        if let Some(ingest) = self.shared.ingest.get() {
            let n = ingest.kick_channel(&self.id);
            if n > 0 {
                tracing::info!(channel = %self.id, publishers = n, "channel stopping: disconnecting its publishers");
            }
        }
        drop(r.fallback);
        // before NULL: going to NULL flushes the bus, which would drop the message
        stop_bus_watch(r.program.pipeline());
        let _ = r.program.pipeline().set_state(gst::State::Null);
        self.encodes.stopped();
        self.shared.metrics.channel_stopped(&self.id);
        tracing::info!(channel = %self.id, "channel stopped");
    }

    /// Keeps started/stopped in the database.
    fn persist_started(&self, started: bool) {
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

    /// Executes one action on this channel (on its worker thread), once its paths have passed
    /// the roots: a refused path is logged, and what is left of the action runs.
    fn execute(&self, action: Action, cause: Option<SessionId>) {
        let id = &self.id;
        let crate::roots::Screened { action, refused } = self.confine.screen(action);
        if let Some(r) = refused {
            tracing::error!(channel = %id, error = %r.error, "{}", r.consequence);
        }
        let Some(action) = action else { return };
        let program = self.program();
        let fallback = lock(&self.running).as_ref().map(|r| r.fallback.clone());
        let stopped = |what: &str| {
            tracing::warn!(channel = %id, "{what} ignored: the channel is stopped");
        };
        match action {
            Action::Switch {
                to,
                media,
                reason,
                session,
            } => {
                let (Some(program), Some(fallback)) = (program, fallback) else {
                    return stopped("switch");
                };
                if let Some(path) = media {
                    self.set_fallback(&fallback, Some(path));
                }
                match to {
                    Source::Fallback => program.cut_to_fallback(reason),
                    Source::Live => {
                        let ingest = self.shared.ingest.get();
                        let here = |s: &SessionId| {
                            ingest.is_some_and(|i| i.channel_of(*s).as_ref() == Some(id))
                        };
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
            Action::Kick { session, reason } => {
                let ingest = self.shared.ingest.get();
                match ingest {
                    Some(i) if i.channel_of(session).as_ref() == Some(id) && i.kick(session) => {
                        tracing::info!(channel = %id, session, %reason, "kicking publisher");
                    }
                    _ => {
                        tracing::warn!(channel = %id, session, "kick ignored: no such session on this channel")
                    }
                }
            }
            Action::SetFallback { media } => match fallback {
                Some(f) => self.set_fallback(&f, media),
                None => self.keep_fallback(media), // for the next start
            },
            Action::DestinationAdd {
                name,
                url,
                profile,
                segment_minutes,
                max_total_gib,
            } => log_err(id, &name, {
                let _rt = self.shared.runtime.enter();
                self.destinations.create(DestinationConfig {
                    profile,
                    segment_minutes,
                    max_total_gib,
                    ..DestinationConfig::new(&name, &url)
                })
            }),
            Action::DestinationRemove { name } => {
                log_err(id, &name, self.destinations.delete(&name))
            }
            Action::DestinationEnable { name } => log_err(id, &name, {
                let _rt = self.shared.runtime.enter();
                self.destinations
                    .update(&name, crate::destinations::Change::enabled(true))
            }),
            Action::DestinationDisable { name } => log_err(
                id,
                &name,
                self.destinations
                    .update(&name, crate::destinations::Change::enabled(false)),
            ),
            Action::OverlaySet { layer } => {
                let Some(program) = program else {
                    return stopped("overlay");
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
                        crate::action::LayerSource::Plugin { plugin, data } => self
                            .shared
                            .plugins
                            .render(plugin, layer.width, layer.height, data),
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
            Action::OverlayHide { name } => {
                self.keep_layer(&name, None);
                match program {
                    Some(p) if p.overlay().hide(&name) => {}
                    _ => {
                        tracing::debug!(channel = %id, layer = %name, "overlay hide: no such layer")
                    }
                }
            }
            Action::ChannelStart => self.run_start(),
            Action::ChannelStop => self.run_stop(),
            Action::RejectPublish { .. } | Action::OnChannel { .. } | Action::ChannelDelete => {
                tracing::warn!(channel = %id, action = ?action, "action not for a channel's worker: ignored");
            }
        }
    }

    fn run_start(&self) {
        self.persist_started(true);
        if let Err(e) = self.start() {
            tracing::error!(channel = %self.id, error = %e, "channel not started");
        }
    }

    fn run_stop(&self) {
        self.persist_started(false);
        self.stop();
    }

    fn set_fallback(&self, fallback: &Fallback, media: Option<PathBuf>) {
        match fallback.set_media(media.as_deref()) {
            Ok(what) => tracing::info!(channel = %self.id, fallback = %what, "fallback media set"),
            Err(e) => {
                tracing::error!(channel = %self.id, error = %e, "fallback media unusable: showing the slate instead")
            }
        }
        self.keep_fallback(media);
    }

    /// Keeps the chosen fallback media (`None`: the slate) for the next start and in the
    /// database, for every channel.
    fn keep_fallback(&self, media: Option<PathBuf>) {
        let column = media
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(); // '' is the slate; NULL is "as configured"
        lock(&self.spec).fallback.media = media;
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
    fn keep_layer(&self, name: &str, layer: Option<&crate::action::Layer>) {
        if self.deleted.load(Ordering::SeqCst) {
            return;
        }
        let json = layer.map(serde_json::to_string);
        {
            // a scoreboard re-sends the same layer every poll: write only changes
            let mut kept = lock(&self.kept_layers);
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
    fn layers_to_restore(&self) -> Vec<crate::action::Layer> {
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
    fn persist_spec(&self) {
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

fn log_err(channel: &str, name: &str, r: Result<(), crate::destinations::DestinationError>) {
    if let Err(e) = r {
        tracing::warn!(channel, destination = %name, error = %e, "destination action ignored");
    }
}

/// A channel's worker: runs its jobs one at a time until the channel is gone.
fn worker(
    channel: Weak<Channel>,
    jobs: crossbeam_channel::Receiver<Job>,
    runtime: tokio::runtime::Handle,
) {
    let _rt = runtime.enter();
    for job in jobs {
        let Some(c) = channel.upgrade() else { return };
        if c.deleted.load(Ordering::SeqCst) {
            return;
        }
        let what = match &job {
            Job::Action(a, _) => match a {
                Action::SetFallback { .. } => Some("channels"),
                Action::DestinationAdd { .. }
                | Action::DestinationRemove { .. }
                | Action::DestinationEnable { .. }
                | Action::DestinationDisable { .. } => Some("destinations"),
                _ => None,
            },
            Job::Start | Job::Stop => Some("channels"),
        };
        match job {
            Job::Action(a, cause) => c.execute(a, cause),
            Job::Start => c.run_start(),
            Job::Stop => c.run_stop(),
        }
        if let Some(what) = what {
            c.shared.changed(what, Some(&c.id));
        }
    }
}

/// Logs a program pipeline's errors and warnings until [`stop_bus_watch`]. An error there is
/// logged, never fatal: destinations stay connected.
fn watch_bus(channel: &str, pipeline: &gst::Pipeline) {
    let Some(bus) = pipeline.bus() else { return };
    let channel = channel.to_string();
    std::thread::Builder::new()
        .name(format!("bus-{channel}"))
        .spawn(move || {
            for msg in bus.iter_timed(gst::ClockTime::NONE) {
                match msg.view() {
                    gst::MessageView::Error(e) => tracing::error!(
                        channel = %channel,
                        source = ?e.src().map(|s| s.path_string()),
                        error = %e.error(),
                        debug = ?e.debug(),
                        "program pipeline error"
                    ),
                    gst::MessageView::Warning(w) => tracing::warn!(
                        channel = %channel,
                        source = ?w.src().map(|s| s.path_string()),
                        warning = %w.error(),
                        debug = ?w.debug(),
                        "program pipeline warning"
                    ),
                    gst::MessageView::Application(a)
                        if a.structure().is_some_and(|s| s.name() == BUS_STOP) =>
                    {
                        return;
                    }
                    _ => {}
                }
            }
        })
        .ok();
}

const BUS_STOP: &str = "onair-bus-stop";

fn stop_bus_watch(pipeline: &gst::Pipeline) {
    if let Some(bus) = pipeline.bus() {
        let _ = bus.post(gst::message::Application::new(gst::Structure::new_empty(
            BUS_STOP,
        )));
    }
}

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
    shared: Arc<Shared>,
    map: RwLock<BTreeMap<String, Arc<Channel>>>,
    /// `ingest.allow_any_key`: any key publishes to the primary channel.
    allow_any_key: bool,
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Channel>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
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
            if let Err(e) = crate::destinations::validate(&d.name, &d.url) {
                return Err(ChannelError::Invalid {
                    field: "destinations",
                    message: e.to_string(),
                });
            }
            if let Some((field, e)) = d.options_error(&self.shared.profiles) {
                return Err(ChannelError::Invalid {
                    field: "destinations",
                    message: format!("{:?}: {field}: {e}", d.name),
                });
            }
            if let Err(e) = self.confine.recording(&d.url, &req.id, &d.name) {
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
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
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
        let map = self.map.write().unwrap_or_else(|p| p.into_inner());
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
            let mut spec = lock(&c.spec);
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
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
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
                .find(|c| c.id != id && lock(&c.spec).keys.iter().any(|x| x == k))
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

impl Router for Channels {
    /// The config's keys first, then the streamer accounts' (an enabled account's key
    /// publishes to the account's channel), then `ingest.allow_any_key`.
    fn route(&self, key: &str) -> Result<Route, String> {
        let redacted = crate::redact::key(key);
        let mut account = None;
        // one read guard at a time: a second read while a writer waits would deadlock; and no
        // database lookup under it (a writer may hold the database while it waits for the map)
        let by_config = self
            .read()
            .values()
            .find(|c| lock(&c.spec).keys.iter().any(|k| k == key))
            .cloned();
        let channel = match by_config {
            Some(c) => Some(c),
            None => match self.shared.streamers.by_key(key) {
                Some(a) if !a.enabled => {
                    return Err(format!(
                        "stream key {redacted} belongs to streamer account {:?}, which is disabled: ask the operator to enable it",
                        a.name
                    ));
                }
                Some(a) => {
                    let c = self.read().get(&a.channel).cloned().ok_or_else(|| {
                        format!(
                            "streamer account {:?} publishes to channel {:?}, which does not exist",
                            a.name, a.channel
                        )
                    })?;
                    account = Some(a.name);
                    Some(c)
                }
                None => {
                    let map = self.read();
                    self.allow_any_key
                        .then(|| map.get(DEFAULT_CHANNEL).or_else(|| map.values().next()))
                        .flatten()
                        .cloned()
                }
            },
        };
        let channel = channel.ok_or_else(|| {
            format!("unknown stream key {redacted}: check OBS Settings → Stream → Stream Key")
        })?;
        let program = channel
            .program()
            .ok_or_else(|| format!("channel {:?} is stopped: start it to publish", channel.id))?;
        Ok(Route {
            channel: channel.id.clone(),
            program,
            events: channel.events.clone(),
            stall_timeout: Duration::from_millis(lock(&channel.spec).fallback.stall_timeout_ms),
            account,
        })
    }
}

/// Counts `ev` on its channel.
pub fn observe(channels: &Channels, ev: &Event) {
    let Some(c) = channels.get(ev.channel()) else {
        return;
    };
    let n = &c.counters;
    match ev {
        Event::Switched(_) => n.switches.fetch_add(1, Ordering::Relaxed),
        Event::Stall(_) => n.stalls.fetch_add(1, Ordering::Relaxed),
        Event::Publish(_) => n.publishes.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
}
