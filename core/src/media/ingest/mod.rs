//! Ingest: where publishers come in, whatever the protocol. This module holds what every ingest
//! protocol shares: the table of publish sessions (for the status, for choosing the live
//! source, for kicking), the [`Router`] that maps a stream key to its channel, the connection
//! slots per client network, and the rate-limited refusal log. Each protocol is a submodule that
//! accepts connections and drives sessions through this table:
//!
//! - [`rtmp`]: the RTMP server (OBS, ffmpeg, any encoder). It refuses, with one log line each and
//!   without touching anything else: bytes that are not an RTMP handshake, a handshake that
//!   stalls or is cut short, a wrong application name, an unknown stream key, a key that is
//!   already publishing, a codec other than H.264/AAC, and a publish the policy rejects.
//!
//! An accepted publish feeds a [`crate::media::decode::LiveDecoder`]; the session reports
//! `stall` when no media arrives for the stall timeout while the connection stays open, `resume`
//! when media comes back, and `unpublish` when it ends.

pub mod rtmp;
pub mod stall;

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;

use super::decode::SessionFeed;
use super::program::{EventSink, Program};
use crate::event::{Event, IngestStats, Publish, Resume, SessionId, Stall, Unpublish};

/// How long a client may take to complete the RTMP handshake (at most; within
/// `ingest.connect_timeout_ms`, which bounds the time from accept to publish).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a publish waits for the policy's verdict. Past it the publish is accepted (the
/// default verdict: the key already passed the mechanical checks); a rejection that comes later
/// kicks the session.
pub const PUBLISH_VERDICT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a stream key publishes: its channel's running program and event sink.
#[derive(Clone)]
pub struct Route {
    pub channel: String,
    pub program: Arc<Program>,
    pub events: EventSink,
    /// The channel's `fallback.stall_timeout_ms`.
    pub stall_timeout: Duration,
    /// The streamer account the key belongs to (None: a key from the config).
    pub account: Option<String>,
}

/// Maps stream keys to channels: the one place that decides which channel a publish feeds.
pub trait Router: Send + Sync + 'static {
    /// The channel `key` publishes to. `Err` says why not, in words for the log and the
    /// publisher (an unknown key, a stopped channel).
    fn route(&self, key: &str) -> Result<Route, String>;
}

/// A publish that passed the mechanical checks and awaits the policy's verdict.
pub struct PublishRequest {
    pub event: Publish,
    /// `Err(reason)` rejects the publish.
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// A live publish session, for `/api/status` and for choosing the live source.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionStatus {
    pub session: SessionId,
    /// The channel the stream key belongs to.
    pub channel: String,
    pub key: String,
    /// The streamer account of the key (null: a key from the config).
    pub account: Option<String>,
    pub addr: String,
    /// Seconds since the publish was accepted.
    pub publishing_s: f64,
    pub stalled: bool,
    /// Bytes received on the connection.
    pub bytes_in: u64,
    /// Incoming bitrate over the last second, kbit/s.
    pub kbps: u64,
    /// Wall time elapsed minus video timestamp time elapsed since the first video message, in
    /// ms. Stays near 0 for a healthy publisher; grows when tag timestamps run slow or fast.
    pub timestamp_drift_ms: i64,
    pub on_air: bool,
    /// Whether its media is being decoded: only while on air, held for a return after a stall,
    /// or armed to go on air. A session waiting its turn is read and dropped.
    pub decoding: bool,
    #[serde(skip)]
    started: Option<Instant>,
    #[serde(skip)]
    raw_key: String,
    #[serde(skip)]
    kick: Option<Arc<tokio::sync::Notify>>,
    #[serde(skip)]
    program: Option<Arc<Program>>,
}

/// Shared state of the ingest server.
pub struct Ingest {
    app: String,
    router: Arc<dyn Router>,
    publishes: tokio::sync::mpsc::UnboundedSender<PublishRequest>,
    sessions: Mutex<HashMap<SessionId, SessionStatus>>,
    next_session: AtomicU64,
    /// Counters for `/api/status`.
    pub refused: AtomicU64,
    pub accepted: AtomicU64,
    /// `ingest.connect_timeout_ms`: accept → publish.
    connect_timeout: Duration,
    max_connections: u32,
    max_per_ip: u32,
    open: Mutex<OpenConnections>,
    refusal_log: Mutex<RefusalLog>,
    chunk_limits: rtmp::chunk_guard::Limits,
    /// Bytes received by sessions that ended, by channel.
    ended_bytes: Mutex<HashMap<String, u64>>,
}

/// RTMP connections open now, in total and by client network ([`crate::net::client_net`]).
#[derive(Default)]
struct OpenConnections {
    total: u32,
    by_ip: HashMap<std::net::IpAddr, u32>,
}

/// How many refusal lines are logged per [`REFUSAL_LOG_WINDOW`]; the rest are counted and
/// reported in one line when the next window opens (a flood of hostile connections cannot
/// flood the log).
const REFUSAL_LOG_BURST: u32 = 20;
const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(10);

/// The refusal log's window: when it opened, lines logged in it, refusals not logged.
struct RefusalLog {
    since: Instant,
    logged: u32,
    suppressed: u64,
}

/// One open connection's place in [`OpenConnections`], given back on drop.
struct Slot {
    ingest: Arc<Ingest>,
    /// The client's network ([`crate::net::client_net`]).
    ip: std::net::IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.ingest.open.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

impl Ingest {
    /// The ingest for `[ingest]`; `router` maps stream keys to channels.
    pub fn new(
        cfg: &crate::config::IngestConfig,
        router: Arc<dyn Router>,
        publishes: tokio::sync::mpsc::UnboundedSender<PublishRequest>,
    ) -> Arc<Ingest> {
        Arc::new(Ingest {
            app: cfg.app.clone(),
            router,
            publishes,
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            refused: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            max_connections: cfg.max_connections,
            max_per_ip: cfg.max_connections_per_ip,
            open: Mutex::default(),
            refusal_log: Mutex::new(RefusalLog {
                since: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
            ended_bytes: Mutex::default(),
            chunk_limits: rtmp::chunk_guard::Limits {
                max_message: cfg.max_message_kib as usize * 1024,
                ..Default::default()
            },
        })
    }

    /// Takes a connection slot for `addr`, or says which limit refuses it.
    fn take_slot(self: &Arc<Self>, addr: SocketAddr) -> Result<Slot, String> {
        let ip = crate::net::client_net(addr.ip());
        let mut open = self.open.lock();
        let from_ip = open.by_ip.get(&ip).copied().unwrap_or(0);
        if open.total >= self.max_connections {
            return Err(format!(
                "{} connections open (ingest.max_connections)",
                open.total
            ));
        }
        if from_ip >= self.max_per_ip {
            return Err(format!(
                "{from_ip} connections open from {ip}{} (ingest.max_connections_per_ip)",
                if ip.is_ipv6() { "/64" } else { "" }
            ));
        }
        open.total += 1;
        *open.by_ip.entry(ip).or_default() += 1;
        Ok(Slot {
            ingest: self.clone(),
            ip,
        })
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<SessionId, SessionStatus>> {
        self.sessions.lock()
    }

    /// Channel `channel`'s publishing sessions (every channel's with `None`), oldest first.
    pub fn sessions(&self, channel: Option<&str>) -> Vec<SessionStatus> {
        let mut v: Vec<SessionStatus> = self
            .lock()
            .values()
            .filter(|s| channel.is_none_or(|c| s.channel == c))
            .cloned()
            .map(|mut s| {
                s.publishing_s = s.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
                s.on_air = s.program.as_ref().is_some_and(|p| p.is_program(s.session));
                s
            })
            .collect();
        v.sort_by_key(|s| s.session);
        v
    }

    /// Channel `channel`'s newest publishing session that is not stalled: its default live
    /// source.
    pub fn newest_healthy(&self, channel: &str) -> Option<SessionId> {
        self.lock()
            .values()
            .filter(|s| !s.stalled && s.channel == channel)
            .map(|s| s.session)
            .max()
    }

    /// Bytes received from publishers since onair started, by channel.
    pub fn bytes_by_channel(&self) -> HashMap<String, u64> {
        let mut totals = self.ended_bytes.lock().clone();
        for s in self.lock().values() {
            *totals.entry(s.channel.clone()).or_default() += s.bytes_in;
        }
        totals
    }

    /// The channel `session` publishes to.
    pub fn channel_of(&self, session: SessionId) -> Option<String> {
        self.lock().get(&session).map(|s| s.channel.clone())
    }

    /// Disconnects `channel`'s publishers whose stream key is not in `keys` (the channel's keys
    /// changed). Returns how many.
    pub fn kick_unless_key(&self, channel: &str, keys: &[String]) -> usize {
        self.kick_where(|s| {
            s.channel == channel && s.account.is_none() && !keys.contains(&s.raw_key)
        })
    }

    /// Disconnects the publishers of streamer account `name` (disabled, deleted or given a
    /// new key). Returns how many.
    pub fn kick_account(&self, name: &str) -> usize {
        self.kick_where(|s| s.account.as_deref() == Some(name))
    }

    /// Disconnects every publisher of `channel` (it stopped). Returns how many.
    pub fn kick_channel(&self, channel: &str) -> usize {
        self.kick_where(|s| s.channel == channel)
    }

    /// Disconnects every publisher `which` picks. Returns how many.
    fn kick_where(&self, which: impl Fn(&SessionStatus) -> bool) -> usize {
        let kicks: Vec<_> = self
            .lock()
            .values()
            .filter(|s| which(s))
            .filter_map(|s| s.kick.clone())
            .collect();
        for k in &kicks {
            k.notify_one();
        }
        kicks.len()
    }

    /// Disconnects a publisher. Returns false when no such session publishes.
    pub fn kick(&self, session: SessionId) -> bool {
        match self.lock().get(&session).and_then(|s| s.kick.clone()) {
            Some(k) => {
                k.notify_one();
                true
            }
            None => false,
        }
    }

    /// Whether `session` is publishing.
    pub fn is_publishing(&self, session: SessionId) -> bool {
        self.lock().contains_key(&session)
    }

    /// Counts a refused connection and logs why, at most [`REFUSAL_LOG_BURST`] lines per
    /// [`REFUSAL_LOG_WINDOW`].
    fn refuse(&self, addr: SocketAddr, why: std::fmt::Arguments<'_>) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut log = self.refusal_log.lock();
        if log.since.elapsed() >= REFUSAL_LOG_WINDOW {
            if log.suppressed > 0 {
                tracing::warn!(
                    suppressed = log.suppressed,
                    "{} more rtmp connections were refused in {} s without a log line each",
                    log.suppressed,
                    log.since.elapsed().as_secs()
                );
            }
            *log = RefusalLog {
                since: Instant::now(),
                logged: 0,
                suppressed: 0,
            };
        }
        if log.logged < REFUSAL_LOG_BURST {
            log.logged += 1;
            tracing::warn!(client = %addr, "rtmp connection refused: {why}");
        } else {
            log.suppressed += 1;
        }
    }
}
