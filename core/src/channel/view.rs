//! What the API shows of a channel (`GET /api/channels`, `/api/status`, the control room):
//! read from the channel, its running program, the ingest and its destinations, in one pass.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::Channel;
use crate::event::{SessionId, Source};
use crate::media::ingest::SessionStatus;
use crate::media::output::destination::DestinationStatus;

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
    /// `encode` or `copy` ([`crate::config::OutputConfig::mode`]).
    pub mode: crate::config::OutputMode,
    /// In copy mode while the channel runs: what the platform receives, and why the last
    /// publisher was not put on air (its stream did not fit the connection).
    pub copy: Option<crate::media::output::copy::CopyStatus>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelCounters {
    pub publishes: u64,
    pub rejected_by_policy: u64,
    pub stalls: u64,
    pub switches: u64,
}

impl Channel {
    pub fn view(&self) -> ChannelView {
        let spec = self.spec();
        let running = self.running.lock();
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
        let copy = running
            .as_ref()
            .and_then(|r| r.program.copy())
            .map(|c| c.status());
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
                mode: spec.output.mode,
                copy,
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
}
