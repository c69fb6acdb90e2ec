//! Every action a policy can ask of the core: the one closed list that Lua functions and WASM
//! imports translate into. The engine routes each to its channel (`Engine::route`); the channel
//! executes it (`Channel::execute` in `channel/execute.rs`, one function per action).
//!
//! To add an action: add a variant here, execute it in `Channel::execute`, and expose it to Lua
//! in `policy/api.rs` (one function in the register list).

use std::path::PathBuf;

use crate::event::{SessionId, Source};

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Put `to` on air. `live` takes effect on the next keyframe of publish session `session`
    /// (`None`: the session whose event is handled, else the channel's newest healthy one);
    /// `fallback` takes effect on the next output frame. With `media`, the fallback media is
    /// replaced first (an image or video path; a bad path falls back to the slate and is logged).
    Switch {
        to: Source,
        media: Option<PathBuf>,
        reason: String,
        session: Option<SessionId>,
    },
    /// Refuse a publish. Only meaningful while handling that session's `publish` event; the
    /// publisher receives `NetStream.Publish.BadName` with `reason` and the connection is closed.
    RejectPublish { session: SessionId, reason: String },
    /// Disconnect a publisher. Its session ends with an `unpublish` whose reason is `kicked`.
    Kick { session: SessionId, reason: String },
    /// Replace the fallback media without switching (`None`: the slate).
    SetFallback { media: Option<PathBuf> },
    /// Add a destination at run time (not written back to the config file), receiving
    /// `profile`'s encode (`None`: the channel's own). A recording (`file://` URL) takes
    /// `segment_minutes` (default 60) and `max_total_gib` (default: no limit).
    DestinationAdd {
        name: String,
        url: String,
        profile: Option<String>,
        segment_minutes: Option<u32>,
        max_total_gib: Option<f64>,
    },
    /// Disconnect and forget a destination.
    DestinationRemove { name: String },
    /// Show (or update) an overlay layer between the switch and the encoder.
    OverlaySet { layer: Layer },
    /// Remove an overlay layer.
    OverlayHide { name: String },
    /// Connect a disabled destination.
    DestinationEnable { name: String },
    /// Disconnect a destination but keep it listed.
    DestinationDisable { name: String },
    /// Run `action` on channel `channel` rather than on the event's channel (or, with no event,
    /// the primary channel: `default`, else the first by id).
    OnChannel {
        channel: String,
        action: Box<Action>,
    },
    /// Start the channel (a no-op when started); kept across restarts.
    ChannelStart,
    /// Stop the channel: its platforms see the publisher leave, its publishers are
    /// disconnected, its pipelines freed; kept across restarts.
    ChannelStop,
    /// Delete a channel created at run time (one from the config file cannot be).
    ChannelDelete,
}

/// An overlay layer. Positions and sizes in output pixels. Kept in the database as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    pub name: String,
    pub source: LayerSource,
    /// Top-left corner.
    pub x: i32,
    pub y: i32,
    /// Size; 0 means the source's own size.
    pub width: u32,
    pub height: u32,
    /// Higher is on top.
    pub z: i32,
    /// Show only while the live source is on air.
    pub live_only: bool,
}

/// Where a layer's pixels come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerSource {
    /// An overlay plugin's `render`, by plugin name, with JSON data.
    Plugin { plugin: String, data: String },
    /// A line of text; `color` is 0xRRGGBBAA, `size_px` the font size in pixels, `font` a
    /// TrueType/OpenType file (none: DejaVu Sans Bold).
    Text {
        text: String,
        size_px: u32,
        color: u32,
        font: Option<PathBuf>,
    },
    /// A PNG file.
    Png { path: PathBuf },
}
