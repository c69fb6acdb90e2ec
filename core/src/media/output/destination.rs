//! Destinations: each platform gets its own small pipeline, `appsrc ! rtmp2sink`, fed from the
//! [`FanOut`]. A failing destination cannot stall the program or its siblings: its errors stay on
//! its own bus. rtmp2sink (GStreamer 1.22) does not reconnect, so on an error the pipeline is torn
//! down and rebuilt after a capped exponential backoff: 1 s, 2 s, 4 s … 30 s. A connection that
//! stayed up for [`STABLE_AFTER`] resets the backoff.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gst::prelude::*;
use serde::Serialize;

use super::encode::Encodes;
use super::fanout::FanOut;
use crate::config::{DestinationConfig, DestinationUrl};
use crate::event::{DestinationDown, DestinationRetry, DestinationUp, Event};
use crate::media::program::EventSink;
use crate::media::{MediaError, make};

/// First and largest reconnect delays.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection up this long counts as healthy: the next failure retries after [`BACKOFF_MIN`].
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Delay before attempt `attempt` (2, 3, …): 1 s doubled per failed attempt, capped at 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(2).min(16);
    (BACKOFF_MIN * 2u32.pow(exp)).min(BACKOFF_MAX)
}

/// A destination's state, for `/api/status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DestinationStatus {
    pub name: String,
    /// URL with the stream key redacted.
    pub url: String,
    /// The profile it receives (`None`: the channel's `[output]`).
    pub profile: Option<String>,
    /// `connecting`, `up`, `retrying`, `disabled`, or `stopped` (enabled; its channel is stopped).
    pub state: &'static str,
    /// Seconds the current connection has been up.
    pub uptime_s: Option<f64>,
    /// Connection attempts so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Bytes handed to this destination's current connection.
    pub bytes_sent: u64,
    /// Bytes handed to all its connections since onair started.
    pub bytes_sent_total: u64,
}

struct Tracked {
    cfg: DestinationConfig,
    /// `cfg.url`, checked where it entered onair.
    url: DestinationUrl,
    status: DestinationStatus,
    up_since: Option<Instant>,
    task: Option<tokio::task::AbortHandle>,
}

/// One channel's destinations, with their status. Destinations can be added, removed, enabled
/// and disabled at run time. They connect only while the channel runs ([`Connections::resume`]);
/// [`Connections::suspend`] closes every connection and keeps the list.
#[derive(Clone)]
pub struct Connections {
    tracked: Arc<Mutex<Vec<Tracked>>>,
    encodes: Arc<Encodes>,
    events: EventSink,
    channel: Arc<str>,
    running: Arc<std::sync::atomic::AtomicBool>,
    /// Where recordings enter the files they write (retention deletes only those).
    ledger: Arc<dyn super::recording::Ledger>,
}

impl Connections {
    /// Channel `channel`'s destinations, not connected until [`Connections::resume`]; its
    /// recordings enter their files in `ledger`.
    pub fn new(
        channel: &str,
        dests: &[DestinationConfig],
        encodes: Arc<Encodes>,
        events: EventSink,
        ledger: Arc<dyn super::recording::Ledger>,
    ) -> Connections {
        let outputs = Connections {
            tracked: Arc::default(),
            encodes,
            events,
            channel: channel.into(),
            running: Arc::default(),
            ledger,
        };
        // the config's were checked at load, the database's when they were created
        for d in dests {
            let added = DestinationUrl::parse(&d.url).and_then(|url| outputs.add(d.clone(), url));
            if let Err(e) = added {
                tracing::error!(channel = %channel, destination = %d.name, error = %e, "destination not added");
            }
        }
        outputs
    }

    /// Connects every enabled destination (one task each, on the current tokio runtime).
    pub fn resume(&self) {
        self.running
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut t = self.tracked.lock();
        for d in t.iter_mut().filter(|d| d.cfg.enabled) {
            self.spawn(d);
        }
    }

    /// Closes every connection (the platform sees the publisher leave); the list is kept.
    pub fn suspend(&self) {
        self.running
            .store(false, std::sync::atomic::Ordering::SeqCst);
        for d in self.tracked.lock().iter_mut() {
            if let Some(task) = d.task.take() {
                task.abort();
            }
            d.status.state = if d.cfg.enabled { "stopped" } else { "disabled" };
            d.up_since = None;
        }
    }

    /// Connects an enabled destination: at once while the channel runs, else it waits
    /// (`stopped`) for [`Connections::resume`].
    fn spawn(&self, d: &mut Tracked) {
        if d.task.is_some() {
            return;
        }
        if !self.running.load(std::sync::atomic::Ordering::SeqCst) {
            d.status.state = "stopped";
            return;
        }
        d.status.state = "connecting";
        let o = self.clone();
        let (cfg, url) = (d.cfg.clone(), d.url.clone());
        d.task = Some(tokio::spawn(async move { o.run(cfg, url).await }).abort_handle());
    }

    /// Adds a destination, its URL checked where it entered onair (`url`, from `d.url`), and
    /// connects it if enabled. Errors: the name is taken or empty, or the options are wrong.
    pub fn add(&self, d: DestinationConfig, url: DestinationUrl) -> Result<(), String> {
        if d.name.is_empty() || d.name == "preview" {
            return Err(format!(
                "destination name {:?} is empty or reserved",
                d.name
            ));
        }
        if let Some((field, e)) = d.options_error(self.encodes.profiles()) {
            return Err(format!("{field}: {e}"));
        }
        {
            let mut t = self.tracked.lock();
            if t.iter().any(|x| x.cfg.name == d.name) {
                return Err(format!("a destination named {:?} exists", d.name));
            }
            t.push(Tracked {
                status: DestinationStatus {
                    name: d.name.clone(),
                    url: url.to_string(),
                    profile: d.profile.clone(),
                    state: "disabled",
                    uptime_s: None,
                    attempts: 0,
                    last_error: None,
                    bytes_sent: 0,
                    bytes_sent_total: 0,
                },
                cfg: d.clone(),
                url,
                up_since: None,
                task: None,
            });
        }
        if d.enabled {
            self.set_enabled(&d.name, true)?;
        }
        Ok(())
    }

    /// Disconnects and forgets a destination.
    pub fn remove(&self, name: &str) -> Result<(), String> {
        self.set_enabled(name, false)?;
        self.tracked.lock().retain(|t| t.cfg.name != name);
        tracing::info!(destination = %name, "destination removed");
        Ok(())
    }

    /// Connects (true) or disconnects (false) a destination. Idempotent.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), String> {
        let mut t = self.tracked.lock();
        let d = t
            .iter_mut()
            .find(|t| t.cfg.name == name)
            .ok_or_else(|| format!("no destination named {name:?}"))?;
        d.cfg.enabled = enabled;
        if enabled {
            self.spawn(d);
        } else {
            if let Some(task) = d.task.take() {
                task.abort();
                tracing::info!(channel = %self.channel, destination = %name, "destination disabled");
            }
            d.status.state = "disabled";
            d.up_since = None;
        }
        Ok(())
    }

    /// Every destination's configuration (name, URL with the key, enabled), in order.
    pub fn configs(&self) -> Vec<DestinationConfig> {
        self.tracked.lock().iter().map(|t| t.cfg.clone()).collect()
    }

    pub fn status(&self) -> Vec<DestinationStatus> {
        self.tracked
            .lock()
            .iter()
            .map(|t| {
                let mut s = t.status.clone();
                s.uptime_s = t.up_since.map(|u| u.elapsed().as_secs_f64());
                s
            })
            .collect()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Tracked)) {
        if let Some(t) = self.tracked.lock().iter_mut().find(|t| t.cfg.name == name) {
            f(t);
        }
    }

    /// The encodes its destinations draw from.
    pub fn encodes(&self) -> &Arc<Encodes> {
        &self.encodes
    }

    async fn run(&self, d: DestinationConfig, url: DestinationUrl) {
        let events = self.events.clone();
        let i = d.name.as_str();
        // held for the task's life: an abort (disable, remove, channel stop) lets go
        let encode = loop {
            // off the runtime's threads: starting an encode above the switch's frame rate
            // waits (~50–100 ms) for the switch to take the new rate
            let (encodes, profile) = (self.encodes.clone(), d.profile.clone());
            // an abort while the blocking call waits its turn (another encode being added)
            // leaves it nothing to build: `wanted` goes with this task's future
            let wanted = Arc::new(());
            let still = Arc::downgrade(&wanted);
            let acquired = tokio::task::spawn_blocking(move || {
                encodes.acquire(profile.as_deref(), &|| still.strong_count() > 0)
            })
            .await
            .unwrap_or_else(|e| Err(format!("starting the encode: {e}")));
            drop(wanted);
            match acquired {
                Ok(u) => break u,
                Err(e) => {
                    tracing::error!(channel = %self.channel, destination = %d.name, error = %e, "encode not available: retrying in 30 s");
                    self.update(i, |t| {
                        t.status.state = "retrying";
                        t.status.last_error = Some(e);
                    });
                    tokio::time::sleep(BACKOFF_MAX).await;
                }
            }
        };
        let fanout = encode.fanout.clone();
        let shown = url.to_string();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.update(i, |t| {
                t.status.attempts = attempt;
                t.status.state = "connecting";
                t.status.bytes_sent = 0;
            });
            tracing::info!(channel = %self.channel, destination = %d.name, url = %shown, attempt, "connecting");
            let started = Instant::now();
            let error = match self
                .connection(i, &d, &url, &fanout, &events, attempt)
                .await
            {
                Ok(()) => "connection closed".to_string(),
                Err(e) => e,
            };
            let was_up = self
                .tracked
                .lock()
                .iter()
                .any(|t| t.cfg.name == d.name && t.up_since.is_some());
            self.update(i, |t| {
                t.up_since = None;
                t.status.state = "retrying";
                t.status.last_error = Some(error.clone());
            });
            let _ = events.send(Event::DestinationDown(DestinationDown {
                channel: self.channel.to_string(),
                name: d.name.clone(),
                error,
            }));
            if was_up && started.elapsed() >= STABLE_AFTER {
                attempt = 1;
            }
            let delay = backoff(attempt + 1);
            let _ = events.send(Event::DestinationRetry(DestinationRetry {
                channel: self.channel.to_string(),
                name: d.name.clone(),
                attempt: attempt + 1,
                delay_ms: delay.as_millis() as u64,
            }));
            tokio::time::sleep(delay).await;
        }
    }

    /// One connection, from build to failure. Returns the error that ended it.
    async fn connection(
        &self,
        i: &str,
        d: &DestinationConfig,
        url: &DestinationUrl,
        fanout: &FanOut,
        events: &EventSink,
        attempt: u32,
    ) -> Result<(), String> {
        // Wait for the program's stream headers: a connection must start with them.
        let waiting = Instant::now();
        let mut warned = false;
        while !fanout.has_headers() {
            if !warned && waiting.elapsed() > Duration::from_secs(10) {
                warned = true;
                tracing::warn!(channel = %self.channel, destination = %d.name, profile = ?d.profile,
                    "no encoded stream yet after 10 s: still waiting for the encoder's first output");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let sub = fanout.subscribe(&d.name);
        let sub_id = sub.id;
        let result = self.stream(i, d, url, sub, events, attempt).await;
        fanout.unsubscribe(sub_id);
        result
    }

    async fn stream(
        &self,
        i: &str,
        d: &DestinationConfig,
        url: &DestinationUrl,
        mut sub: super::fanout::Subscription,
        events: &EventSink,
        attempt: u32,
    ) -> Result<(), String> {
        let conn = if url.is_recording() {
            Output::File(
                super::recording::Recording::build(
                    &self.channel,
                    d,
                    url,
                    sub.caps.as_ref(),
                    self.ledger.clone(),
                )
                .map_err(|e| e.to_string())?,
            )
        } else {
            Output::Rtmp(
                Connection::build(&d.name, url.as_str(), sub.caps.as_ref())
                    .map_err(|e| e.to_string())?,
            )
        };
        let mut bus = conn
            .pipeline()
            .bus()
            .ok_or("pipeline without bus")?
            .stream_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]);
        conn.pipeline()
            .set_state(gst::State::Playing)
            .map_err(|e| format!("starting the {} pipeline: {e}", d.name))?;
        for h in sub.headers.drain(..) {
            conn.src().push_buffer(h).map_err(|e| e.to_string())?;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut up = false;
        loop {
            tokio::select! {
                msg = bus.next() => {
                    let Some(msg) = msg else { return Err("bus closed".into()) };
                    let error = match msg.view() {
                        gst::MessageView::Error(e) => e.error().to_string(),
                        _ => "end of stream".into(),
                    };
                    return Err(match &conn {
                        Output::File(r) => format!(
                            "recording {}: {error}",
                            r.file().map(|f| f.display().to_string()).unwrap_or_default()
                        ),
                        Output::Rtmp(_) => error,
                    });
                }
                buf = sub.rx.recv() => {
                    let Some(buf) = buf else { return Ok(()) };
                    let size = buf.size() as u64;
                    if conn.src().current_level_bytes() > MAX_QUEUED_BYTES {
                        return Err("platform not accepting data (send queue full)".into());
                    }
                    conn.src().push_buffer(buf).map_err(|e| format!("push: {e}"))?;
                    self.update(i, |t| {
                        t.status.bytes_sent += size;
                        t.status.bytes_sent_total += size;
                    });
                }
                _ = tick.tick() => {
                    if !up && conn.connected() {
                        up = true;
                        self.update(i, |t| {
                            t.status.state = "up";
                            t.up_since = Some(Instant::now());
                            t.status.last_error = None;
                        });
                        let _ = events.send(Event::DestinationUp(DestinationUp {
                            channel: self.channel.to_string(),
                            name: d.name.clone(),
                            url: crate::redact::url(&d.url),
                            attempt,
                        }));
                    }
                }
            }
        }
    }
}

/// Bytes queued in a destination's appsrc beyond which it counts as stuck (~10 s at 6 Mbit/s).
const MAX_QUEUED_BYTES: u64 = 8 << 20;

/// What a destination writes to: a platform over RTMP, or files.
enum Output {
    Rtmp(Connection),
    File(super::recording::Recording),
}

impl Output {
    fn pipeline(&self) -> &gst::Pipeline {
        match self {
            Output::Rtmp(c) => &c.pipeline,
            Output::File(r) => &r.pipeline,
        }
    }

    fn src(&self) -> &gst_app::AppSrc {
        match self {
            Output::Rtmp(c) => &c.src,
            Output::File(r) => &r.src,
        }
    }

    fn connected(&self) -> bool {
        match self {
            Output::Rtmp(c) => c.connected(),
            Output::File(r) => r.connected(),
        }
    }
}

/// One destination connection's pipeline.
struct Connection {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst::Element,
}

impl Connection {
    fn build(name: &str, url: &str, caps: Option<&gst::Caps>) -> Result<Self, MediaError> {
        let pipeline = gst::Pipeline::with_name(&format!("destination-{name}"));
        let src = crate::media::flv_appsrc(caps)?;
        let sink = make("rtmp2sink", "rtmp")?;
        sink.set_property("location", url);
        // 4 KiB chunks, as OBS and ffmpeg send: fewer chunk headers than RTMP's default 128 B.
        sink.set_property("chunk-size", 4096u32);
        sink.set_property("sync", false);
        sink.set_property("async", false);
        pipeline
            .add_many([src.upcast_ref(), &sink])
            .map_err(|e| MediaError::Build(e.to_string()))?;
        src.link(&sink)
            .map_err(|e| MediaError::Build(format!("appsrc → rtmp2sink: {e}")))?;
        Ok(Self {
            pipeline,
            src,
            sink,
        })
    }

    /// Whether the RTMP connection is established and has sent data.
    fn connected(&self) -> bool {
        // The server has answered (connect and publish) and media has gone out.
        let stats = self.sink.property::<gst::Structure>("stats");
        let total = |f: &str| stats.get::<u64>(f).unwrap_or(0);
        total("in-bytes-total") > 0 && total("out-bytes-total") > 0
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_thirty() {
        let secs: Vec<u64> = (2..=9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }
}
