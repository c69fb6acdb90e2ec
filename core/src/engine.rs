//! The engine: the one loop where events meet the policy and actions are executed.
//!
//! Media events arrive on one channel; each is logged, published to observers, and handed to the
//! policy; the actions that come back are executed here, in [`Engine::execute`]. A publish waits
//! for the policy's verdict before the publisher is answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::action::Action;
use crate::event::{Event, Source};
use crate::media::fallback::Fallback;
use crate::media::ingest::{Ingest, PublishRequest, SessionStatus};
use crate::media::output::{DestinationStatus, Outputs};
use crate::media::program::Program;
use crate::policy::Policy;

/// Counters for `/api/status`.
#[derive(Default)]
pub struct Counters {
    pub switches: AtomicU64,
    pub stalls: AtomicU64,
    pub publishes: AtomicU64,
    pub rejected_by_policy: AtomicU64,
}

/// Everything the HTTP API reads.
pub struct Core {
    pub program: Arc<Program>,
    pub ingest: Arc<Ingest>,
    pub outputs: Outputs,
    /// `fallback.channel_name`.
    pub channel_name: String,
    /// The channel's destinations as operators change them (persisted).
    pub destinations: crate::destinations::Destinations,
    pub fallback: Fallback,
    pub policy: Policy,
    pub counters: Counters,
    pub started: Instant,
    /// Every event, as observers (SSE, tests) see it.
    pub events: broadcast::Sender<Event>,
    pub preview_viewers: AtomicU64,
    /// Clients connected to `GET /api/events`.
    pub sse_clients: AtomicU64,
    /// Actions from the built-in API, executed by the engine.
    pub commands: mpsc::UnboundedSender<Vec<Action>>,
    /// WASM plugins (policy and overlay).
    pub plugins: crate::wasm::SharedHost,
}

/// `GET /api/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `live` or `fallback`.
    pub on_air: Source,
    /// The live session on air, when `on_air` is `live`.
    pub on_air_session: Option<u64>,
    /// Seconds since the last switch.
    pub on_air_for_s: f64,
    /// What the fallback shows: `slate`, `image PATH` or `video PATH`.
    pub fallback: String,
    /// Every script with its generation and last error (see `GET /api/scripts`).
    pub scripts: Vec<crate::policy::host::ScriptInfo>,
    /// Every WASM plugin with its world, generation and last error (see `GET /api/plugins`).
    pub plugins: Vec<crate::wasm::PluginInfo>,
    /// The overlay layers on the output.
    pub overlay: Vec<crate::media::overlay::LayerStatus>,
    pub sessions: Vec<SessionStatus>,
    pub destinations: Vec<DestinationStatus>,
    pub counters: CounterStatus,
    pub uptime_s: f64,
}

/// One channel, as `GET /api/channels` lists it.
#[derive(Debug, Serialize)]
pub struct ChannelView {
    pub id: &'static str,
    /// `fallback.channel_name`.
    pub name: String,
    /// `started` (channels cannot be stopped yet).
    pub state: &'static str,
    /// Seconds since the channel started.
    pub uptime_s: f64,
    /// `live` or `fallback`.
    pub on_air: Source,
    pub on_air_session: Option<u64>,
    /// Seconds since the last switch.
    pub on_air_for_s: f64,
    /// What the fallback shows: `slate`, `image PATH` or `video PATH`.
    pub fallback: String,
    pub sessions: Vec<SessionStatus>,
    pub destinations: Vec<DestinationStatus>,
}

#[derive(Debug, Serialize)]
pub struct CounterStatus {
    pub publishes: u64,
    pub refused_connections: u64,
    pub rejected_by_policy: u64,
    pub stalls: u64,
    pub switches: u64,
    pub preview_viewers: u64,
    /// Clients connected to `GET /api/events`.
    pub sse_clients: u64,
    /// Policy decisions that missed their deadline and got the built-in default.
    pub late_decisions: u64,
    /// Script route requests answered 503 (route lane full, or no answer in time).
    pub script_routes_refused: u64,
}

impl Core {
    pub fn plugin_info(&self) -> Vec<crate::wasm::PluginInfo> {
        self.plugins.info()
    }

    /// The one channel onair runs today, `default`.
    pub fn channel(&self) -> ChannelView {
        let (on_air, on_air_session, on_air_for_s) = self.program.on_air();
        ChannelView {
            id: crate::destinations::DEFAULT_CHANNEL,
            name: self.channel_name.clone(),
            state: "started",
            uptime_s: self.started.elapsed().as_secs_f64(),
            on_air,
            on_air_session,
            on_air_for_s,
            fallback: self.fallback.describe(),
            sessions: self.ingest.sessions(),
            destinations: self.outputs.status(),
        }
    }

    pub fn status(&self) -> Status {
        let (on_air, on_air_session, on_air_for_s) = self.program.on_air();
        let c = &self.counters;
        Status {
            on_air,
            on_air_session,
            on_air_for_s,
            fallback: self.fallback.describe(),
            scripts: self.policy.scripts(),
            plugins: self.plugin_info(),
            overlay: self.program.overlay().status(),
            sessions: self.ingest.sessions(),
            destinations: self.outputs.status(),
            counters: CounterStatus {
                publishes: c.publishes.load(Ordering::Relaxed),
                refused_connections: self.ingest.refused.load(Ordering::Relaxed),
                rejected_by_policy: c.rejected_by_policy.load(Ordering::Relaxed),
                stalls: c.stalls.load(Ordering::Relaxed),
                switches: c.switches.load(Ordering::Relaxed),
                preview_viewers: self.preview_viewers.load(Ordering::Relaxed),
                sse_clients: self.sse_clients.load(Ordering::Relaxed),
                late_decisions: self.policy.late_decisions(),
                script_routes_refused: self.policy.routes_refused(),
            },
            uptime_s: self.started.elapsed().as_secs_f64(),
        }
    }
}

pub struct Engine {
    core: Arc<Core>,
}

impl Engine {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Runs until every channel closes. `commands` carries actions that no event caused:
    /// script timers, HTTP callbacks and routes, and the built-in API.
    pub async fn run(
        self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut publishes: mpsc::UnboundedReceiver<PublishRequest>,
        mut commands: mpsc::UnboundedReceiver<Vec<Action>>,
    ) {
        loop {
            tokio::select! {
                Some(ev) = events.recv() => self.on_event(ev).await,
                Some(req) = publishes.recv() => self.on_publish(req).await,
                Some(actions) = commands.recv() => {
                    for a in actions {
                        self.execute(a, None);
                    }
                }
                else => break,
            }
        }
    }

    fn observe(&self, ev: &Event) {
        let c = &self.core.counters;
        match ev {
            Event::Switched(_) => c.switches.fetch_add(1, Ordering::Relaxed),
            Event::Stall(_) => c.stalls.fetch_add(1, Ordering::Relaxed),
            Event::Publish(_) => c.publishes.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        let _ = self.core.events.send(ev.clone());
    }

    async fn on_event(&self, ev: Event) {
        self.observe(&ev);
        let actions = self.core.policy.decide(ev.clone()).await;
        for a in actions {
            self.execute(a, Some(&ev));
        }
    }

    async fn on_publish(&self, req: PublishRequest) {
        let ev = Event::Publish(req.event.clone());
        let session = req.event.session;
        self.observe(&ev);
        let actions = self.core.policy.decide(ev.clone()).await;
        let rejection = actions.iter().find_map(|a| match a {
            Action::RejectPublish { session: s, reason } if *s == session => Some(reason.clone()),
            _ => None,
        });
        if let Some(reason) = rejection {
            self.core
                .counters
                .rejected_by_policy
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(session, %reason, "publish rejected by policy; its other actions are dropped");
            if req.reply.send(Err(reason.clone())).is_err() && self.core.ingest.kick(session) {
                // the verdict came after the ingest's timeout had accepted it by default
                tracing::info!(session, %reason, "kicking publisher: late rejection");
            }
            return;
        }
        if req.reply.send(Ok(())).is_err() && !self.core.ingest.is_publishing(session) {
            return; // the publisher went away meanwhile
        }
        for a in actions {
            self.execute(a, Some(&ev));
        }
    }

    /// Executes one action. `cause` is the event whose handler asked for it, if any.
    pub fn execute(&self, action: Action, cause: Option<&Event>) {
        let core = &self.core;
        match action {
            Action::Switch { to, media, reason } => {
                if let Some(path) = media {
                    // loading media blocks: keep the runtime's other tasks running meanwhile
                    match tokio::task::block_in_place(|| core.fallback.set_media(Some(&path))) {
                        Ok(what) => tracing::info!(fallback = %what, "fallback media set"),
                        Err(e) => {
                            tracing::error!(error = %e, "fallback media unusable: showing the slate instead")
                        }
                    }
                }
                match to {
                    Source::Fallback => core.program.cut_to_fallback(reason),
                    Source::Live => {
                        let target = cause
                            .and_then(Event::session)
                            .filter(|s| core.ingest.is_publishing(*s))
                            .or_else(|| core.ingest.newest_healthy());
                        match target {
                            Some(session) => core.program.arm_live(session, reason),
                            None => {
                                tracing::warn!(%reason, "switch to live ignored: nobody is publishing")
                            }
                        }
                    }
                }
            }
            Action::RejectPublish { session, .. } => {
                tracing::warn!(
                    session,
                    event = cause.map(Event::name),
                    "reject ignored: it only applies while handling that session's publish"
                );
            }
            Action::Kick { session, reason } => {
                if core.ingest.kick(session) {
                    tracing::info!(session, %reason, "kicking publisher");
                } else {
                    tracing::warn!(session, "kick ignored: no such session");
                }
            }
            Action::SetFallback { media } => {
                match tokio::task::block_in_place(|| core.fallback.set_media(media.as_deref())) {
                    Ok(what) => tracing::info!(fallback = %what, "fallback media set"),
                    Err(e) => {
                        tracing::error!(error = %e, "fallback media unusable: showing the slate instead")
                    }
                }
            }
            Action::DestinationAdd { name, url } => {
                // a database write: not on the runtime's worker
                let r = tokio::task::block_in_place(|| core.destinations.create(&name, &url, true));
                if let Err(e) = r {
                    tracing::warn!(destination = %name, error = %e, "destination not added");
                }
            }
            Action::OverlaySet { layer } => {
                let overlay = core.program.overlay();
                if overlay.unchanged_source(&layer) {
                    overlay.reposition(&layer);
                    return;
                }
                // rendering runs plugin code or decodes files: not on the runtime's worker
                let image = tokio::task::block_in_place(|| {
                    match crate::media::overlay::render_builtin(&layer.source) {
                        Some(r) => r,
                        None => match &layer.source {
                            crate::action::LayerSource::Plugin { plugin, data } => {
                                core.plugins.render(plugin, layer.width, layer.height, data)
                            }
                            _ => Err("unsupported layer source".into()),
                        },
                    }
                });
                match image.and_then(|img| overlay.set(&layer, &img)) {
                    Ok(()) => tracing::debug!(layer = %layer.name, "overlay layer set"),
                    Err(e) => {
                        tracing::warn!(layer = %layer.name, error = %e, "overlay layer not shown")
                    }
                }
            }
            Action::OverlayHide { name } => {
                if !core.program.overlay().hide(&name) {
                    tracing::debug!(layer = %name, "overlay hide: no such layer");
                }
            }
            Action::DestinationRemove { name } => log_err(
                &name,
                tokio::task::block_in_place(|| core.destinations.delete(&name)),
            ),
            Action::DestinationEnable { name } => log_err(
                &name,
                tokio::task::block_in_place(|| core.destinations.update(&name, None, Some(true))),
            ),
            Action::DestinationDisable { name } => log_err(
                &name,
                tokio::task::block_in_place(|| core.destinations.update(&name, None, Some(false))),
            ),
        }
    }
}

fn log_err(name: &str, r: Result<(), crate::destinations::DestinationError>) {
    if let Err(e) = r {
        tracing::warn!(destination = %name, error = %e, "destination action ignored");
    }
}
