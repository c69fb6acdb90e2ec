//! Guest-side SDK for onair plugins (WebAssembly components, `wasm32-wasip2`).
//!
//! The WIT package `onair:plugin` (`wit/onair-plugin@VERSION/` at the repository root) has two
//! worlds; this crate generates bindings for both, one module each, for the newest version,
//! 0.3.0:
//!
//! * [`policy`]: export `on-event(event) -> list<channel-action>`, the same job as a Lua policy
//!   script, for every channel (each event names its channel; an action may name the channel it
//!   acts on, none: the event's own). `destination-add` takes a profile and recording options.
//! * [`overlay`]: export `render(width, height, data) -> result<image, string>`, drawing a layer.
//!
//! onair also runs plugins built against 0.2.0 and 0.1.0 (one channel, no profiles); such a
//! plugin uses wit-bindgen on that version's WIT folder directly, as `plugins/priority-failover`
//! does for 0.1.0.
//!
//! A plugin is one `impl` and one macro call:
//!
//! ```ignore
//! use onair_plugin_sdk::policy::{ChannelAction, Event, Guest};
//!
//! struct Plugin;
//!
//! impl Guest for Plugin {
//!     fn on_event(event: Event) -> Vec<ChannelAction> {
//!         Vec::new()
//!     }
//! }
//!
//! onair_plugin_sdk::export_policy!(Plugin);
//! ```
//!
//! and for an overlay `impl onair_plugin_sdk::overlay::Guest` plus
//! `onair_plugin_sdk::export_overlay!(Plugin);`. The plugin crate needs only this crate as a
//! dependency (`crate-type = ["cdylib"]`), built with `--target wasm32-wasip2`, which makes a
//! component.
//!
//! For drawing, [`Canvas`] is an RGBA8 (not premultiplied) surface with rectangles, anti-aliased
//! rounded rectangles and text through [`fontdue`] (re-exported).

mod canvas;

pub use canvas::{Canvas, Rgba};
pub use fontdue;

/// Bindings for the `policy` world of `onair:plugin@0.3.0`, plus short names for its types.
#[allow(clippy::too_many_arguments)] // in generated code
pub mod policy {
    wit_bindgen::generate!({
        world: "policy",
        path: "../../wit/onair-plugin@0.3.0",
        pub_export_macro: true,
        export_macro_name: "export_policy",
        default_bindings_module: "onair_plugin_sdk::policy",
    });

    pub use self::onair::plugin::log::Level;
    pub use self::onair::plugin::types::*;

    /// Writes `message` into onair's log at `level`, tagged with the plugin's name.
    pub fn log(level: Level, message: &str) {
        self::onair::plugin::log::log(level, message);
    }

    /// `Action::Switch` to `to` with `reason`, keeping the fallback media, on the event's
    /// channel.
    pub fn switch(to: Source, reason: impl Into<String>) -> ChannelAction {
        on_event_channel(Action::Switch(SwitchTo {
            to,
            media: None,
            reason: reason.into(),
        }))
    }

    /// `action` on the channel of the event being handled.
    pub fn on_event_channel(action: Action) -> ChannelAction {
        ChannelAction {
            channel: None,
            action,
        }
    }

    /// `action` on channel `channel` (its id).
    pub fn on_channel(channel: impl Into<String>, action: Action) -> ChannelAction {
        ChannelAction {
            channel: Some(channel.into()),
            action,
        }
    }
}

/// Bindings for the `overlay` world of `onair:plugin@0.3.0`, plus short names for its types.
#[allow(clippy::too_many_arguments)] // in generated code
pub mod overlay {
    wit_bindgen::generate!({
        world: "overlay",
        path: "../../wit/onair-plugin@0.3.0",
        pub_export_macro: true,
        export_macro_name: "export_overlay",
        default_bindings_module: "onair_plugin_sdk::overlay",
    });

    pub use self::onair::plugin::log::Level;
    pub use self::onair::plugin::types::*;

    /// Writes `message` into onair's log at `level`, tagged with the plugin's name.
    pub fn log(level: Level, message: &str) {
        self::onair::plugin::log::log(level, message);
    }
}

/// Exports a type implementing [`policy::Guest`] as the plugin's `on-event` (0.3.0).
pub use policy::export_policy;

/// Exports a type implementing [`overlay::Guest`] as the plugin's `render` (0.3.0).
pub use overlay::export_overlay;
