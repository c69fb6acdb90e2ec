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
//! The seams, one file each:
//! - this file: [`Channel`], its worker thread and its life cycle (start, stop);
//! - [`registry`]: every channel by id ([`Channels`]), loaded, created, updated and deleted;
//! - [`execute`]: one action on one channel;
//! - [`persist`]: a channel's own rows in the database;
//! - [`view`]: what the API shows of a channel;
//! - [`route`]: stream key → channel, the ingest's [`crate::media::ingest::Router`];
//! - [`destinations`]: a channel's destinations, kept in the database and connected.
//!
//! Lock order: [`Channels`]' map before a channel's `running`, before its `spec`.

pub mod destinations;
mod execute;
mod persist;
pub mod registry;
mod route;
#[cfg(test)]
mod testing;
pub mod view;

use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use gst::prelude::*;

use crate::action::Action;
use crate::config::{ChannelSpec, DestinationConfig};
use crate::db::Db;
use crate::event::SessionId;
use crate::media::fallback::Fallback;
use crate::media::ingest::Ingest;
use crate::media::output::destination::Connections;
use crate::media::output::encode::Encodes;
use crate::media::program::{EventSink, Program};
use crate::roots::{Confinement, RootError};
pub use destinations::Destinations;
pub use registry::{ChannelPatch, Channels, NewChannel};
pub use view::{ChannelCounters, ChannelView, OutputView};

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
pub type Counters = crate::telemetry::Tally;

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
    pub changes: tokio::sync::broadcast::Sender<crate::event::Changed>,
    /// The encoding profiles destinations may name (built-in and `[profile.NAME]`).
    pub profiles: Arc<crate::config::Profiles>,
    /// Streamer accounts, whose keys publish after the config's.
    pub streamers: Arc<crate::streamers::Streamers>,
}

impl Shared {
    /// Tells the control rooms that `what` changed (nobody listening is fine).
    pub fn changed(&self, what: &'static str, channel: Option<&str>) {
        let _ = self.changes.send(crate::event::Changed {
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
        self.spec.lock().clone()
    }

    /// The running program, or `None` while stopped.
    pub fn program(&self) -> Option<Arc<Program>> {
        self.running.lock().as_ref().map(|r| r.program.clone())
    }

    pub fn is_started(&self) -> bool {
        self.running.lock().is_some()
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
        let running = self.running.lock().as_ref().map(|r| r.fallback.clone());
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

    /// Builds and starts the program, the fallback and the destination connections. A no-op
    /// when running.
    fn start(&self) -> Result<(), crate::media::MediaError> {
        let mut running = self.running.lock();
        // `delete` sets `deleted` before its stop: a start queued before it must not run after
        if running.is_some() || self.deleted.load(Ordering::SeqCst) {
            return Ok(());
        }
        let spec = self.spec();
        let copy_mode = spec.output.mode == crate::config::OutputMode::Copy;
        let program = Program::build(
            &self.id,
            &spec.output,
            self.mix_fps(&spec.output),
            (!copy_mode).then(|| self.encodes.main()),
            self.events.clone(),
        )?;
        if copy_mode {
            program.set_copy(self.start_copy(&spec)?);
        }
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

    /// Copy mode's output: the fallback (the slate, an image, or a video looped) encoded once
    /// at `[output]`'s size and frame rate, 48 kHz stereo, into the channel's own fan-out. A
    /// fallback file that cannot be used gives the slate (logged).
    fn start_copy(
        &self,
        spec: &ChannelSpec,
    ) -> Result<Arc<crate::media::output::copy::CopyPath>, crate::media::MediaError> {
        use crate::media::output::still_gop::GopFormat;
        let format = GopFormat {
            video: crate::media::OutputFormat::from(&spec.output),
            audio_rate: crate::media::AUDIO_RATE,
            audio_channels: crate::media::AUDIO_CHANNELS,
            video_kbps: spec.output.video_bitrate_kbps.min(1000),
        };
        let slate = (
            spec.fallback.slate_text.clone(),
            spec.fallback.channel_name.clone(),
        );
        let media = spec.fallback.media.as_deref();
        let (tags, what) = crate::media::output::copy::fallback_tags(media, &slate, &format)
            .or_else(|e| {
                tracing::error!(channel = %self.id, error = %e, "copy mode: the fallback media cannot be used, the slate is used");
                crate::media::output::copy::fallback_tags(None, &slate, &format)
            })?;
        tracing::info!(channel = %self.id, fallback = %what, "copy mode: fallback encoded");
        crate::media::output::copy::CopyPath::start(&self.id, tags, format, self.encodes.main())
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
        let Some(r) = self.running.lock().take() else {
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
        if let Some(copy) = r.program.copy() {
            copy.stop();
        }
        // before NULL: going to NULL flushes the bus, which would drop the message
        stop_bus_watch(r.program.pipeline());
        let _ = r.program.pipeline().set_state(gst::State::Null);
        self.encodes.stopped();
        self.shared.metrics.channel_stopped(&self.id);
        tracing::info!(channel = %self.id, "channel stopped");
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
