//! Prometheus metrics, served at `GET /metrics` (OpenMetrics text, `prometheus-client`). Names
//! follow Prometheus conventions: an `onair_` prefix, base units (seconds, bytes, bits per
//! second), `_total` for counters. `docs/metrics.md` lists every one.
//!
//! Two sources, each in one place: what events say is counted by one method per happening
//! ([`Metrics::publish`], [`Metrics::switched`], …), called from the event's arm in
//! [`crate::telemetry::emit`]; what the core's state says (the source on air, sessions,
//! destinations up, bytes in and out, process CPU and RSS) is read at scrape time in
//! [`Metrics::render`], from a plain [`Snapshot`] the caller takes.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::event::Source;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    channel: String,
    /// `live` or `fallback`.
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SwitchLabels {
    channel: String,
    to: String,
    /// What caused it: `publish`, `resume`, `unpublish`, `stall`, `api` or `policy` (a script or
    /// plugin with its own reason).
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    channel: String,
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProfileLabels {
    channel: String,
    /// `""`: the channel's own encode.
    profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

type FloatCounter = Counter<f64, AtomicU64>;

/// Every metric, and what the scrape-time ones last read.
pub struct Metrics {
    registry: Registry,
    switches: Family<SwitchLabels, Counter>,
    stalls: Family<ChannelLabel, Counter>,
    publishes: Family<ChannelLabel, Counter>,
    unpublishes: Family<ChannelLabel, Counter>,
    destination_down: Family<DestinationLabels, Counter>,
    reconnects: Family<DestinationLabels, Counter>,
    decision: Histogram,
    render: Histogram,
    lua: Histogram,
    wasm: Histogram,
    script_errors: Family<NameLabel, Counter>,
    on_air: Family<SourceLabels, Gauge>,
    on_air_seconds: Family<SourceLabels, FloatCounter>,
    started: Family<ChannelLabel, Gauge>,
    sessions: Family<ChannelLabel, Gauge>,
    ingest_bps: Family<ChannelLabel, Gauge>,
    ingest_bytes: Family<ChannelLabel, Counter>,
    output_bytes: Family<DestinationLabels, Counter>,
    dropped: Family<DestinationLabels, Counter>,
    encode_latency: Family<ProfileLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    destination_up: Family<DestinationLabels, Gauge>,
    late_decisions: Counter,
    routes_refused: Counter,
    script_loaded: Family<NameLabel, Gauge>,
    script_time_limit_trips: Family<NameLabel, Gauge>,
    plugin_loaded: Family<NameLabel, Gauge>,
    cpu: FloatCounter,
    rss: Gauge,
    /// Per channel: the source on air and since when its seconds were last counted.
    clocks: Mutex<HashMap<String, (Source, Instant)>>,
}

/// Sets a counter to `total` (a total the core keeps); it only ever moves up.
fn raise(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

fn raise_f(c: &FloatCounter, total: f64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

fn label(channel: &str) -> ChannelLabel {
    ChannelLabel {
        channel: channel.to_string(),
    }
}

fn destination_label(channel: &str, name: &str) -> DestinationLabels {
    DestinationLabels {
        channel: channel.to_string(),
        destination: name.to_string(),
    }
}

/// The small closed set a switch reason is counted under.
fn reason_class(reason: &str) -> &'static str {
    let first = reason.split_whitespace().next().unwrap_or("");
    match first {
        "publish" => "publish",
        "resume" => "resume",
        "unpublish" => "unpublish",
        "stall" => "stall",
        "POST" | "GET" => "api",
        _ => "policy",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            switches: Family::default(),
            stalls: Family::default(),
            publishes: Family::default(),
            unpublishes: Family::default(),
            destination_down: Family::default(),
            reconnects: Family::default(),
            // 50 µs … ~1.6 s
            decision: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            // 0.5 ms … ~8 s
            render: Histogram::new(exponential_buckets(0.000_5, 2.0, 14)),
            // 5 µs … ~1.3 s
            lua: Histogram::new(exponential_buckets(0.000_005, 2.0, 18)),
            wasm: Histogram::new(exponential_buckets(0.000_005, 2.0, 18)),
            script_errors: Family::default(),
            on_air: Family::default(),
            on_air_seconds: Family::default(),
            started: Family::default(),
            sessions: Family::default(),
            ingest_bps: Family::default(),
            ingest_bytes: Family::default(),
            output_bytes: Family::default(),
            dropped: Family::default(),
            encode_latency: Family::default(),
            destination_up: Family::default(),
            late_decisions: Counter::default(),
            routes_refused: Counter::default(),
            script_loaded: Family::default(),
            script_time_limit_trips: Family::default(),
            plugin_loaded: Family::default(),
            cpu: FloatCounter::default(),
            rss: Gauge::default(),
            clocks: Mutex::default(),
        };
        // registered in this order, which is the order of the scrape's text
        let mut top = Registry::default();
        let r = top.sub_registry_with_prefix("onair");
        m.register_event_counts(r);
        m.register_policy_timings(r);
        m.register_channel_state(r);
        m.register_policy_state(r);
        // the process metrics keep their conventional names (process_cpu_seconds_total, …)
        m.register_process(top.sub_registry_with_prefix("process"));
        m.registry = top;
        m
    }

    /// What events count: switches, stalls, publishes, destinations lost and retried.
    fn register_event_counts(&self, r: &mut Registry) {
        r.register(
            "switches",
            "Cuts of a channel's output to another source, by what caused them",
            self.switches.clone(),
        );
        r.register(
            "stalls",
            "Publisher stalls: an open connection that sent no media for the stall timeout",
            self.stalls.clone(),
        );
        r.register(
            "publishes",
            "Publish sessions started",
            self.publishes.clone(),
        );
        r.register(
            "unpublishes",
            "Publish sessions ended",
            self.unpublishes.clone(),
        );
        r.register(
            "destination_down",
            "Destination connections that failed or closed",
            self.destination_down.clone(),
        );
        r.register(
            "destination_reconnects",
            "Destination reconnect attempts scheduled",
            self.reconnects.clone(),
        );
    }

    /// How long the policy (Lua, WASM) and the overlay take, and the script errors.
    fn register_policy_timings(&self, r: &mut Registry) {
        r.register(
            "policy_decision_seconds",
            "Time from an event to the policy's actions (Lua scripts and WASM plugins)",
            self.decision.clone(),
        );
        r.register(
            "lua_call_seconds",
            "Time the Lua scripts' handlers took for one event (all scripts together)",
            self.lua.clone(),
        );
        r.register(
            "wasm_call_seconds",
            "Time the WASM policy plugins' on-event took for one event (all plugins together)",
            self.wasm.clone(),
        );
        r.register(
            "script_errors",
            "Script handler calls that failed (an error, or the time limit)",
            self.script_errors.clone(),
        );
        r.register(
            "overlay_render_seconds",
            "Time to render an overlay layer (text, PNG or an overlay plugin)",
            self.render.clone(),
        );
    }

    /// The channels' and destinations' state, read at scrape time: on air, sessions, bytes.
    fn register_channel_state(&self, r: &mut Registry) {
        r.register(
            "on_air",
            "1 for the source a channel's output shows now",
            self.on_air.clone(),
        );
        r.register(
            "on_air_seconds",
            "Seconds a channel's output showed each source",
            self.on_air_seconds.clone(),
        );
        r.register(
            "channel_started",
            "1 while a channel runs, 0 while it is stopped",
            self.started.clone(),
        );
        r.register(
            "publish_sessions",
            "Publishers connected to a channel now",
            self.sessions.clone(),
        );
        r.register(
            "ingest_bits_per_second",
            "Incoming bitrate of a channel's publishers over the last second",
            self.ingest_bps.clone(),
        );
        r.register(
            "ingest_bytes",
            "Bytes received from a channel's publishers",
            self.ingest_bytes.clone(),
        );
        r.register(
            "output_bytes",
            "Bytes handed to a destination's connections",
            self.output_bytes.clone(),
        );
        r.register(
            "output_dropped_buffers",
            "FLV tags a destination or the preview lost to a full queue (then it waits for a keyframe)",
            self.dropped.clone(),
        );
        r.register(
            "encode_latency_seconds",
            "Time a frame spends in the video encoder (x264), averaged over the last frames, per encode (profile \"\": the channel's own)",
            self.encode_latency.clone(),
        );
        r.register(
            "destination_up",
            "1 while a destination's connection is up",
            self.destination_up.clone(),
        );
    }

    /// The policy's deadlines and script routes, and which scripts and plugins run.
    fn register_policy_state(&self, r: &mut Registry) {
        r.register(
            "policy_late_decisions",
            "Policy decisions that missed their deadline and got the built-in default",
            self.late_decisions.clone(),
        );
        r.register(
            "script_routes_refused",
            "Script route requests answered 503",
            self.routes_refused.clone(),
        );
        r.register(
            "script_loaded",
            "1 while a generation of the script runs",
            self.script_loaded.clone(),
        );
        r.register(
            "script_time_limit_trips",
            "Calls of a script's running generation aborted at the time limit",
            self.script_time_limit_trips.clone(),
        );
        r.register(
            "plugin_loaded",
            "1 while a generation of the WASM plugin runs",
            self.plugin_loaded.clone(),
        );
    }

    /// The onair process's CPU time and memory.
    fn register_process(&self, p: &mut Registry) {
        p.register(
            "cpu_seconds",
            "User and system CPU time of the onair process",
            self.cpu.clone(),
        );
        p.register(
            "resident_memory_bytes",
            "Resident memory of the onair process",
            self.rss.clone(),
        );
    }

    /// A publish was requested on `channel` (counted before the policy's verdict).
    pub fn publish(&self, channel: &str) {
        self.publishes.get_or_create(&label(channel)).inc();
    }

    /// A publish session on `channel` ended.
    pub fn unpublish(&self, channel: &str) {
        self.unpublishes.get_or_create(&label(channel)).inc();
    }

    /// A publisher on `channel` stalled.
    pub fn stall(&self, channel: &str) {
        self.stalls.get_or_create(&label(channel)).inc();
    }

    /// `channel` cut from `from` to `to` for `reason` (counted under its [`reason_class`]), and
    /// its on-air clock moves to `to`.
    pub fn switched(&self, channel: &str, from: Source, to: Source, reason: &str) {
        self.switches
            .get_or_create(&SwitchLabels {
                channel: channel.to_string(),
                to: to.as_str().into(),
                reason: reason_class(reason).into(),
            })
            .inc();
        self.clock(channel, from, Some(to));
    }

    /// Destination `name` of `channel` went down.
    pub fn destination_down(&self, channel: &str, name: &str) {
        self.destination_down
            .get_or_create(&destination_label(channel, name))
            .inc();
    }

    /// Destination `name` of `channel` is reconnecting.
    pub fn destination_retry(&self, channel: &str, name: &str) {
        self.reconnects
            .get_or_create(&destination_label(channel, name))
            .inc();
    }

    /// One policy decision took `d`.
    pub fn decision(&self, d: Duration) {
        self.decision.observe(d.as_secs_f64());
    }

    /// The Lua scripts' handlers for one event took `d` (all scripts together).
    pub fn lua_call(&self, d: Duration) {
        self.lua.observe(d.as_secs_f64());
    }

    /// The WASM policy plugins' `on-event` for one event took `d` (all plugins together).
    pub fn wasm_call(&self, d: Duration) {
        self.wasm.observe(d.as_secs_f64());
    }

    /// A script's handler failed (an error or the time limit).
    pub fn script_error(&self, script: &str) {
        self.script_errors
            .get_or_create(&NameLabel {
                name: script.to_string(),
            })
            .inc();
    }

    /// One overlay render took `d`.
    pub fn render_time(&self, d: Duration) {
        self.render.observe(d.as_secs_f64());
    }

    /// Adds the seconds since the last count to `channel`'s `showing` source; from now on it
    /// shows `next` (the same when `None`).
    fn clock(&self, channel: &str, showing: Source, next: Option<Source>) {
        let mut clocks = self.clocks.lock();
        let now = Instant::now();
        let (source, since) = clocks.entry(channel.to_string()).or_insert((showing, now));
        let elapsed = now.duration_since(*since).as_secs_f64();
        self.on_air_seconds
            .get_or_create(&SourceLabels {
                channel: channel.to_string(),
                source: source.as_str().into(),
            })
            .inc_by(elapsed);
        *source = next.unwrap_or(showing);
        *since = now;
    }

    /// A channel stopped: no source is on air until it starts again.
    pub fn channel_stopped(&self, channel: &str) {
        self.clocks.lock().remove(channel);
    }

    /// Drops a deleted channel's state-derived series and its clock, so a channel created later
    /// with the same id starts from nothing (its counters keep counting).
    pub fn forget_channel(&self, channel: &str) {
        self.clocks.lock().remove(channel);
        let label = ChannelLabel {
            channel: channel.to_string(),
        };
        for f in [&self.started, &self.sessions, &self.ingest_bps] {
            f.remove(&label);
        }
        for s in [Source::Live, Source::Fallback] {
            self.on_air.remove(&SourceLabels {
                channel: channel.to_string(),
                source: s.as_str().into(),
            });
        }
    }

    /// The metrics in the OpenMetrics text format, with the state-derived ones taken from
    /// `now` (read by the caller, [`crate::engine::Core::metrics_snapshot`]).
    pub fn render(&self, now: &Snapshot) -> String {
        for v in &now.channels {
            let label = ChannelLabel {
                channel: v.id.clone(),
            };
            self.started
                .get_or_create(&label)
                .set(i64::from(v.on_air.is_some()));
            for s in [Source::Live, Source::Fallback] {
                self.on_air
                    .get_or_create(&SourceLabels {
                        channel: v.id.clone(),
                        source: s.as_str().into(),
                    })
                    .set(i64::from(v.on_air == Some(s)));
            }
            if let Some(s) = v.on_air {
                // first sight: the source has been on air since the last switch
                let showing = {
                    let mut clocks = self.clocks.lock();
                    let entry = clocks.entry(v.id.clone()).or_insert_with(|| {
                        let since = Duration::from_secs_f64(v.on_air_for_s.unwrap_or(0.0));
                        (
                            s,
                            Instant::now()
                                .checked_sub(since)
                                .unwrap_or_else(Instant::now),
                        )
                    });
                    // the source the events said: the snapshot may be older than a switch
                    entry.0
                };
                self.clock(&v.id, showing, None);
            } else {
                self.clocks.lock().remove(&v.id); // stopped: no source is on air
            }
            self.sessions.get_or_create(&label).set(v.sessions as i64);
            self.ingest_bps
                .get_or_create(&label)
                .set((v.ingest_kbps * 1000) as i64);
            for d in &v.destinations {
                let dl = DestinationLabels {
                    channel: v.id.clone(),
                    destination: d.name.clone(),
                };
                self.destination_up.get_or_create(&dl).set(i64::from(d.up));
                raise(&self.output_bytes.get_or_create(&dl), d.bytes_sent_total);
            }
            for (profile, seconds) in &v.encode_latency {
                self.encode_latency
                    .get_or_create(&ProfileLabels {
                        channel: v.id.clone(),
                        profile: profile.clone(),
                    })
                    .set(*seconds);
            }
            for (destination, n) in &v.dropped_buffers {
                raise(
                    &self.dropped.get_or_create(&DestinationLabels {
                        channel: v.id.clone(),
                        destination: destination.clone(),
                    }),
                    *n,
                );
            }
        }
        for (channel, bytes) in &now.ingest_bytes {
            raise(
                &self.ingest_bytes.get_or_create(&ChannelLabel {
                    channel: channel.clone(),
                }),
                *bytes,
            );
        }
        raise(&self.late_decisions, now.late_decisions);
        raise(&self.routes_refused, now.routes_refused);
        for s in &now.scripts {
            let l = NameLabel {
                name: s.name.clone(),
            };
            self.script_loaded
                .get_or_create(&l)
                .set(i64::from(s.loaded));
            self.script_time_limit_trips
                .get_or_create(&l)
                .set(s.time_limit_trips as i64);
        }
        for p in &now.plugins {
            self.plugin_loaded
                .get_or_create(&NameLabel {
                    name: p.name.clone(),
                })
                .set(i64::from(p.loaded));
        }
        let (cpu, rss) = process_usage();
        raise_f(&self.cpu, cpu);
        self.rss.set(rss as i64);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics not encoded");
        }
        out
    }
}

/// The state the state-derived metrics are read from, taken by the caller at scrape time: plain
/// values, so the metrics know nothing of the channels, the ingest or the policy host.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub channels: Vec<ChannelSnapshot>,
    /// Bytes received by publishers since start, by channel id.
    pub ingest_bytes: HashMap<String, u64>,
    /// Policy decisions that came after their deadline, since start.
    pub late_decisions: u64,
    /// Script route requests refused (over the limits), since start.
    pub routes_refused: u64,
    pub scripts: Vec<LoadedSnapshot>,
    pub plugins: Vec<LoadedSnapshot>,
}

/// One channel at scrape time.
#[derive(Debug, Default)]
pub struct ChannelSnapshot {
    pub id: String,
    /// `None` while the channel is stopped.
    pub on_air: Option<Source>,
    /// Seconds since the last switch.
    pub on_air_for_s: Option<f64>,
    /// Publish sessions now.
    pub sessions: usize,
    /// Their summed incoming bitrate, kbit/s.
    pub ingest_kbps: u64,
    pub destinations: Vec<DestinationSnapshot>,
    /// Mean seconds a frame spends in each running encode's video encoder, by profile key.
    pub encode_latency: Vec<(String, f64)>,
    /// Buffers lost to a full queue since start, by destination or viewer name.
    pub dropped_buffers: HashMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct DestinationSnapshot {
    pub name: String,
    pub up: bool,
    pub bytes_sent_total: u64,
}

/// A script or plugin at scrape time.
#[derive(Debug, Default)]
pub struct LoadedSnapshot {
    pub name: String,
    pub loaded: bool,
    /// Scripts only: handler calls ended by the time limit since start.
    pub time_limit_trips: u64,
}

/// CPU seconds (user + system) and resident bytes of this process, from `/proc/self`.
fn process_usage() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // after the command: state is field 3, utime 14, stime 15 (clock ticks, 100 per second)
    let tick = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let cpu = (tick(14) + tick(15)) as f64 / 100.0;
    let rss = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    (cpu, rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_reasons_fall_in_a_small_closed_set() {
        for (reason, class) in [
            ("publish of session 3", "publish"),
            ("stall of session 3: no media for 1000 ms", "stall"),
            ("unpublish of session 2 (kicked)", "unpublish"),
            ("resume of session 9", "resume"),
            ("POST /api/channels/a/switch", "api"),
            ("stall (failover.lua)", "stall"),
            ("bitrate recovered: 2500 kbit/s", "policy"),
        ] {
            assert_eq!(reason_class(reason), class, "{reason}");
        }
    }
}
