//! Every event the core emits: the one closed list that Lua (`onair.on(name, …)`), the logs, the
//! API and the docs share. The wire form is JSON with `"event": "<name>"` plus the payload fields;
//! Lua receives the same fields as a plain table.
//!
//! To add an event: add a variant and its payload struct here, give it a name in [`Event::name`]
//! and [`Event::NAMES`], its arm in [`crate::telemetry::emit`] (its log line, metric and status
//! counts), and its line in `docs/events.md`. Emitters only send events; the engine's `emit`
//! logs, counts (through `telemetry`) and broadcasts each in one place.

use serde::Serialize;

/// A publisher connection's id, unique for the life of the process (starts at 1).
pub type SessionId = u64;

/// The source the output shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The current publisher's feed.
    Live,
    /// The fallback: the configured image or video, or the slate.
    Fallback,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Live => "live",
            Source::Fallback => "fallback",
        }
    }
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "live" => Ok(Source::Live),
            "fallback" => Ok(Source::Fallback),
            other => Err(format!(
                "unknown source {other:?}: expected \"live\" or \"fallback\""
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Publish(Publish),
    Unpublish(Unpublish),
    Stall(Stall),
    Resume(Resume),
    IngestStats(IngestStats),
    Switched(Switched),
    DestinationUp(DestinationUp),
    DestinationDown(DestinationDown),
    DestinationRetry(DestinationRetry),
}

impl Event {
    /// Every event name, as scripts spell it.
    pub const NAMES: &'static [&'static str] = &[
        "publish",
        "unpublish",
        "stall",
        "resume",
        "ingest-stats",
        "switched",
        "destination-up",
        "destination-down",
        "destination-retry",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Event::Publish(_) => "publish",
            Event::Unpublish(_) => "unpublish",
            Event::Stall(_) => "stall",
            Event::Resume(_) => "resume",
            Event::IngestStats(_) => "ingest-stats",
            Event::Switched(_) => "switched",
            Event::DestinationUp(_) => "destination-up",
            Event::DestinationDown(_) => "destination-down",
            Event::DestinationRetry(_) => "destination-retry",
        }
    }

    /// The channel this event is about.
    pub fn channel(&self) -> &str {
        match self {
            Event::Publish(e) => &e.channel,
            Event::Unpublish(e) => &e.channel,
            Event::Stall(e) => &e.channel,
            Event::Resume(e) => &e.channel,
            Event::IngestStats(e) => &e.channel,
            Event::Switched(e) => &e.channel,
            Event::DestinationUp(e) => &e.channel,
            Event::DestinationDown(e) => &e.channel,
            Event::DestinationRetry(e) => &e.channel,
        }
    }

    /// The publisher session this event is about, if any.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            Event::Publish(e) => Some(e.session),
            Event::Unpublish(e) => Some(e.session),
            Event::Stall(e) => Some(e.session),
            Event::Resume(e) => Some(e.session),
            Event::IngestStats(e) => Some(e.session),
            _ => None,
        }
    }
}

/// A publisher asks to publish and passed the key check; the policy may still reject it.
#[derive(Debug, Clone, Serialize)]
pub struct Publish {
    /// The channel's id (`default` for a config without `[[channel]]` tables).
    pub channel: String,
    pub session: SessionId,
    /// The stream key, redacted (`live…a9f3`).
    pub key: String,
    /// The streamer account whose key this is (None: a key from the config).
    pub account: Option<String>,
    /// The publisher's address, `ip:port`.
    pub addr: String,
}

/// A publish session ended.
#[derive(Debug, Clone, Serialize)]
pub struct Unpublish {
    /// The channel's id (`default` for a config without `[[channel]]` tables).
    pub channel: String,
    pub session: SessionId,
    pub key: String,
    /// Why: `unpublished` (the publisher stopped cleanly), `disconnected` (the connection closed),
    /// `timeout` (silent too long), `kicked`, or `error: …`.
    pub reason: String,
    /// Whether this session was the live source of the output (on air, or about to be).
    pub on_air: bool,
}

/// A publisher's connection is open but has sent no media for `fallback.stall_timeout_ms`.
#[derive(Debug, Clone, Serialize)]
pub struct Stall {
    /// The channel's id (`default` for a config without `[[channel]]` tables).
    pub channel: String,
    pub session: SessionId,
    pub key: String,
    /// Milliseconds since the last audio or video message.
    pub silent_ms: u64,
    pub on_air: bool,
}

/// A stalled publisher sends media again.
#[derive(Debug, Clone, Serialize)]
pub struct Resume {
    /// The channel's id (`default` for a config without `[[channel]]` tables).
    pub channel: String,
    pub session: SessionId,
    pub key: String,
    /// How long the stall lasted, in milliseconds.
    pub stalled_ms: u64,
    pub on_air: bool,
}

/// Once a second per publishing session: what the core measured on its connection.
#[derive(Debug, Clone, Serialize)]
pub struct IngestStats {
    /// The channel's id (`default` for a config without `[[channel]]` tables).
    pub channel: String,
    pub session: SessionId,
    pub key: String,
    /// Incoming bitrate over the last second, kbit/s (all RTMP bytes: video, audio, overhead).
    pub kbps: u64,
    /// Milliseconds since the last audio or video message.
    pub silent_ms: u64,
    pub stalled: bool,
    pub on_air: bool,
}

/// The output changed source. Emitted when the cut happens on the output, not when it was asked.
#[derive(Debug, Clone, Serialize)]
pub struct Switched {
    /// The channel's id (`default` for a config without `[[channel]]` tables).
    pub channel: String,
    pub from: Source,
    pub to: Source,
    /// Why, in words: the event and the policy that decided it.
    pub reason: String,
    /// The live session now on air, when `to` is `live`.
    pub session: Option<SessionId>,
}

/// A destination's connection is up and media flows to it.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationUp {
    /// The channel's id (`default` for a config without `[[channel]]` tables).
    pub channel: String,
    pub name: String,
    /// The URL, with its stream key redacted.
    pub url: String,
    /// Which connection attempt this is, from 1.
    pub attempt: u32,
}

/// A destination's connection failed or closed.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationDown {
    /// The channel's id (`default` for a config without `[[channel]]` tables).
    pub channel: String,
    pub name: String,
    pub error: String,
}

/// onair will try a destination again after `delay_ms` milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationRetry {
    /// The channel's id (`default` for a config without `[[channel]]` tables).
    pub channel: String,
    pub name: String,
    /// The attempt that will be made, from 2.
    pub attempt: u32,
    pub delay_ms: u64,
}

/// A change the control room shows that no policy event reports (a channel started, a
/// destination added, a script reloaded, media uploaded): sent on `GET /api/events` as
/// `changed`, so pages refetch what changed instead of polling.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Changed {
    /// `channels`, `destinations`, `media`, `scripts` or `plugins`.
    pub what: &'static str,
    pub channel: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_the_name_list() {
        let samples = [
            Event::Publish(Publish {
                channel: "c".into(),
                session: 1,
                key: "k".into(),
                account: None,
                addr: "a".into(),
            }),
            Event::Unpublish(Unpublish {
                channel: "c".into(),
                session: 1,
                key: "k".into(),
                reason: "r".into(),
                on_air: true,
            }),
            Event::Stall(Stall {
                channel: "c".into(),
                session: 1,
                key: "k".into(),
                silent_ms: 1,
                on_air: true,
            }),
            Event::Resume(Resume {
                channel: "c".into(),
                session: 1,
                key: "k".into(),
                stalled_ms: 1,
                on_air: true,
            }),
            Event::IngestStats(IngestStats {
                channel: "c".into(),
                session: 1,
                key: "k".into(),
                kbps: 2500,
                silent_ms: 0,
                stalled: false,
                on_air: true,
            }),
            Event::Switched(Switched {
                channel: "c".into(),
                from: Source::Live,
                to: Source::Fallback,
                reason: "r".into(),
                session: None,
            }),
            Event::DestinationUp(DestinationUp {
                channel: "c".into(),
                name: "n".into(),
                url: "u".into(),
                attempt: 1,
            }),
            Event::DestinationDown(DestinationDown {
                channel: "c".into(),
                name: "n".into(),
                error: "e".into(),
            }),
            Event::DestinationRetry(DestinationRetry {
                channel: "c".into(),
                name: "n".into(),
                attempt: 2,
                delay_ms: 1000,
            }),
        ];
        assert_eq!(samples.len(), Event::NAMES.len());
        for (ev, name) in samples.iter().zip(Event::NAMES) {
            assert_eq!(ev.name(), *name);
            let v = serde_json::to_value(ev).expect("json");
            assert_eq!(v["event"], *name);
        }
    }
}
