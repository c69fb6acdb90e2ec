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
use crate::channel::{ChannelView, Channels};
use crate::event::{Event, Source};
use crate::media::ingest::{Ingest, PublishRequest, SessionStatus};
use crate::media::output::destination::DestinationStatus;
use crate::policy::Policy;

/// Process-wide counters for `/api/status` (each channel also counts its own).
pub type Counters = crate::telemetry::Tally;

/// Everything the HTTP API reads.
pub struct Core {
    pub channels: Arc<Channels>,
    pub ingest: Arc<Ingest>,
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
    /// `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Control-room users and sessions.
    pub auth: Arc<crate::auth::Auth>,
    /// Streamer accounts (the same as the channels' router uses).
    pub streamers: Arc<crate::streamers::Streamers>,
    /// Uploaded fallback media.
    pub gallery: Arc<crate::gallery::Gallery>,
    /// Where OBS publishes: `rtmp://HOST:PORT/APP` comes from these.
    pub ingest_listen: std::net::SocketAddr,
    pub ingest_app: String,
    /// `http.trusted_proxies`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

pub use crate::event::Changed;

/// `GET /api/status`: the process, every channel, and (at the top level, as before channels
/// existed) one channel's state: the primary channel's, or the one asked for.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// The channel the top-level fields describe.
    pub channel: Option<String>,
    /// `live` or `fallback` (`fallback` while that channel is stopped).
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
    /// The overlay layers on the channel's output.
    pub overlay: Vec<crate::media::overlay::LayerStatus>,
    pub sessions: Vec<SessionStatus>,
    pub destinations: Vec<DestinationStatus>,
    pub counters: CounterStatus,
    pub uptime_s: f64,
    /// Every channel.
    pub channels: Vec<ChannelView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
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
    /// Tells the control rooms that `what` changed.
    pub fn changed(&self, what: &'static str, channel: Option<&str>) {
        self.channels.shared().changed(what, channel);
    }

    pub fn plugin_info(&self) -> Vec<crate::wasm::PluginInfo> {
        self.plugins.info()
    }

    /// The status with `channel`'s state at the top level. `None` when no such channel exists.
    pub fn status_of(&self, channel: &str) -> Option<Status> {
        Some(self.status_focused(Some(self.channels.get(channel)?)))
    }

    /// What `GET /metrics` reads at scrape time ([`crate::metrics::Metrics::render`]).
    pub fn metrics_snapshot(&self) -> crate::metrics::Snapshot {
        use crate::metrics::{ChannelSnapshot, DestinationSnapshot, LoadedSnapshot, Snapshot};
        let channels = self
            .channels
            .all()
            .iter()
            .map(|c| {
                let v = c.view();
                ChannelSnapshot {
                    on_air: v.on_air,
                    on_air_for_s: v.on_air_for_s,
                    sessions: v.sessions.len(),
                    ingest_kbps: v.sessions.iter().map(|s| s.kbps).sum(),
                    destinations: v
                        .destinations
                        .iter()
                        .map(|d| DestinationSnapshot {
                            name: d.name.clone(),
                            up: d.state == "up",
                            bytes_sent_total: d.bytes_sent_total,
                        })
                        .collect(),
                    encode_latency: c.encode_latency(),
                    dropped_buffers: c.dropped_buffers(),
                    id: v.id,
                }
            })
            .collect();
        Snapshot {
            channels,
            ingest_bytes: self.ingest.bytes_by_channel(),
            late_decisions: self.policy.late_decisions(),
            routes_refused: self.policy.routes_refused(),
            scripts: self
                .policy
                .scripts()
                .into_iter()
                .map(|s| LoadedSnapshot {
                    name: s.name,
                    loaded: s.loaded,
                    time_limit_trips: s.time_limit_trips,
                })
                .collect(),
            plugins: self
                .plugins
                .info()
                .into_iter()
                .map(|p| LoadedSnapshot {
                    name: p.name,
                    loaded: p.loaded,
                    time_limit_trips: 0,
                })
                .collect(),
        }
    }

    /// The status with the primary channel's state at the top level.
    pub fn status(&self) -> Status {
        self.status_focused(self.channels.primary())
    }

    fn status_focused(&self, focus: Option<Arc<crate::channel::Channel>>) -> Status {
        let view = focus.map(|c| c.view());
        let c = &self.counters;
        Status {
            channel: view.as_ref().map(|v| v.id.clone()),
            on_air: view
                .as_ref()
                .and_then(|v| v.on_air)
                .unwrap_or(Source::Fallback),
            on_air_session: view.as_ref().and_then(|v| v.on_air_session),
            on_air_for_s: view.as_ref().and_then(|v| v.on_air_for_s).unwrap_or(0.0),
            fallback: view
                .as_ref()
                .map(|v| v.fallback.clone())
                .unwrap_or_default(),
            scripts: self.policy.scripts(),
            plugins: self.plugin_info(),
            overlay: view.as_ref().map(|v| v.overlay.clone()).unwrap_or_default(),
            sessions: view
                .as_ref()
                .map(|v| v.sessions.clone())
                .unwrap_or_default(),
            destinations: view
                .as_ref()
                .map(|v| v.destinations.clone())
                .unwrap_or_default(),
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
            channels: self.channels.all().iter().map(|c| c.view()).collect(),
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
                        self.route(a, None);
                    }
                }
                else => break,
            }
        }
    }

    /// The one place an event is logged and counted ([`crate::telemetry::emit`]) and broadcast
    /// to observers (SSE, tests).
    fn emit(&self, ev: &Event) {
        let channel = self.core.channels.get(ev.channel());
        crate::telemetry::emit(ev, &self.sinks(channel.as_deref()));
        let _ = self.core.events.send(ev.clone());
    }

    fn sinks<'a>(
        &'a self,
        channel: Option<&'a crate::channel::Channel>,
    ) -> crate::telemetry::Sinks<'a> {
        crate::telemetry::Sinks {
            metrics: &self.core.metrics,
            process: &self.core.counters,
            channel: channel.map(|c| &c.counters),
        }
    }

    async fn on_event(&self, ev: Event) {
        self.emit(&ev);
        let asked = Instant::now();
        let actions = self.core.policy.decide(ev.clone()).await;
        self.core.metrics.decision(asked.elapsed());
        for a in actions {
            self.route(a, Some(&ev));
        }
    }

    async fn on_publish(&self, req: PublishRequest) {
        let ev = Event::Publish(req.event.clone());
        let session = req.event.session;
        self.emit(&ev);
        let asked = Instant::now();
        let actions = self.core.policy.decide(ev.clone()).await;
        self.core.metrics.decision(asked.elapsed());
        let rejection = actions.iter().find_map(|a| match a {
            Action::RejectPublish { session: s, reason } if *s == session => Some(reason.clone()),
            _ => None,
        });
        if let Some(reason) = rejection {
            let channel = self.core.channels.get(&req.event.channel);
            crate::telemetry::publish_rejected(session, &reason, &self.sinks(channel.as_deref()));
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
            self.route(a, Some(&ev));
        }
    }

    /// Hands one action to its channel's worker: the channel it names (`OnChannel`), else the
    /// channel of `cause`, the event whose handler asked for it, else the primary channel.
    /// Nothing slow runs here: the engine only routes.
    pub fn route(&self, action: Action, cause: Option<&Event>) {
        let (channel, action) = match action {
            Action::OnChannel { channel, action } => (Some(channel), *action),
            a => (cause.map(|e| e.channel().to_string()), a),
        };
        let target = match &channel {
            Some(id) => self.core.channels.get(id),
            None => self.core.channels.primary(),
        };
        let Some(target) = target else {
            tracing::warn!(channel = ?channel, action = ?action, "action ignored: no such channel");
            return;
        };
        match action {
            Action::RejectPublish { session, .. } => {
                tracing::warn!(
                    session,
                    event = cause.map(Event::name),
                    "reject ignored: it only applies while handling that session's publish"
                );
            }
            Action::OnChannel { .. } => {
                tracing::warn!(channel = %target.id, "nested channel action ignored");
            }
            Action::ChannelDelete => {
                let channels = self.core.channels.clone();
                let id = target.id.clone();
                // a database write and a pipeline teardown: off the engine loop
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = channels.delete(&id) {
                        tracing::warn!(channel = %id, error = %e, "channel not deleted");
                    }
                });
            }
            a => {
                // the event's session, when the action acts on the event's own channel
                let session = cause
                    .filter(|e| e.channel() == target.id)
                    .and_then(Event::session);
                target.submit(a, session);
            }
        }
    }
}

/// The core as scripts see it ([`crate::policy::CoreApi`]); weak, so the policy does not keep
/// the core alive.
pub struct CoreView(pub std::sync::Weak<Core>);

impl crate::policy::CoreApi for CoreView {
    fn status(&self, channel: Option<&str>) -> Option<serde_json::Value> {
        let core = self.0.upgrade()?;
        let status = match channel {
            Some(id) => core.status_of(id)?,
            None => core.status(),
        };
        serde_json::to_value(status).ok()
    }

    fn has_channel(&self, id: &str) -> bool {
        self.0
            .upgrade()
            .is_some_and(|c| c.channels.get(id).is_some())
    }

    fn create_channel(&self, body: serde_json::Value) -> Result<serde_json::Value, String> {
        let core = self.0.upgrade().ok_or("onair is stopping")?;
        let req: crate::channel::NewChannel =
            serde_json::from_value(body).map_err(|e| e.to_string())?;
        let (channel, keys) = core.channels.create(req).map_err(|e| e.to_string())?;
        let mut v = serde_json::to_value(channel.view()).map_err(|e| e.to_string())?;
        v["stream_keys"] = serde_json::json!(keys);
        Ok(v)
    }
}
