//! `onair:plugin@0.3.0` (`wit/onair-plugin@0.3.0/`), the newest: profile and recording options
//! on `destination-add`. Its bindings for both worlds, their host interfaces, and the one
//! translation between the core's events and actions and the WIT types: the core's to and from
//! 0.3.0's, which every older version reaches through the next newer one. Lua uses the same core
//! types (through serde), so the runtimes cannot drift apart.

use std::borrow::Cow;

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::newest;
use crate::action::{Action, Layer, LayerSource};
use crate::event::{Event, Source};
use crate::wasm::{Image, PluginState, World};

/// The WIT package version of this file.
pub const VERSION: &str = "0.3.0";

pub mod policy {
    wasmtime::component::bindgen!({
        path: "../wit/onair-plugin@0.3.0",
        world: "policy",
    });
}

pub mod overlay {
    wasmtime::component::bindgen!({
        path: "../wit/onair-plugin@0.3.0",
        world: "overlay",
    });
}

/// 0.3.0's types (the policy world's bindings; the overlay world's hold the same).
pub use policy::onair::plugin::types;
use types as wit;

host_interfaces!(policy);
host_interfaces!(overlay);
image_from!(overlay);

/// A 0.3.0 plugin of either world.
pub enum Instance {
    Policy(policy::Policy),
    Overlay(overlay::Overlay),
}

/// Adds 0.3.0's interfaces to the policy world's linker and the overlay world's.
pub fn add_to_linkers(
    policy_linker: &mut Linker<PluginState>,
    overlay_linker: &mut Linker<PluginState>,
) -> wasmtime::Result<()> {
    policy::Policy::add_to_linker::<_, HasSelf<_>>(policy_linker, |s| s)?;
    overlay::Overlay::add_to_linker::<_, HasSelf<_>>(overlay_linker, |s| s)
}

/// Instantiates `component` as `world` of 0.3.0.
pub fn instantiate(
    world: World,
    store: &mut Store<PluginState>,
    component: &Component,
    linker: &Linker<PluginState>,
) -> wasmtime::Result<Instance> {
    Ok(match world {
        World::Policy => Instance::Policy(policy::Policy::instantiate(store, component, linker)?),
        World::Overlay => {
            Instance::Overlay(overlay::Overlay::instantiate(store, component, linker)?)
        }
    })
}

impl Instance {
    /// `on-event` with the newest version's event; the actions as the core's. `None`: an overlay.
    pub fn on_event(
        &self,
        store: &mut Store<PluginState>,
        event: &newest::types::Event,
    ) -> Option<wasmtime::Result<Vec<Action>>> {
        let Instance::Policy(policy) = self else {
            return None;
        };
        Some(
            policy
                .call_on_event(store, &from_newest(event))
                .map(|l| l.into_iter().map(channel_action_to_core).collect()),
        )
    }

    /// `render`: the image, or the plugin's own error. `None`: a policy plugin.
    pub fn render(
        &self,
        store: &mut Store<PluginState>,
        width: u32,
        height: u32,
        data: &str,
    ) -> Option<wasmtime::Result<Result<Image, String>>> {
        let Instance::Overlay(overlay) = self else {
            return None;
        };
        Some(
            overlay
                .call_render(store, width, height, data)
                .map(|r| r.map(Image::from)),
        )
    }
}

// How the dispatch reaches the core from this version; every version file has these. The
// newest's are the core translation itself; an older one's go through its `next`.

/// The event in 0.3.0's types, from the newest version's: this one, so as it is.
pub(super) fn from_newest(e: &newest::types::Event) -> Cow<'_, wit::Event> {
    Cow::Borrowed(e)
}

/// A 0.3.0 action as the core's.
pub(super) fn action_to_core(a: wit::Action) -> Action {
    action(a)
}

/// A 0.3.0 action and its channel as the core's action.
pub(super) fn channel_action_to_core(a: wit::ChannelAction) -> Action {
    channel_action(a)
}

// The core's events and actions to and from 0.3.0's.

fn source(s: Source) -> wit::Source {
    match s {
        Source::Live => wit::Source::Live,
        Source::Fallback => wit::Source::Fallback,
    }
}

fn source_back(s: wit::Source) -> Source {
    match s {
        wit::Source::Live => Source::Live,
        wit::Source::Fallback => Source::Fallback,
    }
}

/// The core's event in 0.3.0's types (once per event, for every plugin).
pub fn event(e: &Event) -> wit::Event {
    match e {
        Event::Publish(p) => wit::Event::Publish(wit::Publish {
            channel: p.channel.clone(),
            session: p.session,
            key: p.key.clone(),
            addr: p.addr.clone(),
        }),
        Event::Unpublish(u) => wit::Event::Unpublish(wit::Unpublish {
            channel: u.channel.clone(),
            session: u.session,
            key: u.key.clone(),
            reason: u.reason.clone(),
            on_air: u.on_air,
        }),
        Event::Stall(s) => wit::Event::Stall(wit::Stall {
            channel: s.channel.clone(),
            session: s.session,
            key: s.key.clone(),
            silent_ms: s.silent_ms,
            on_air: s.on_air,
        }),
        Event::Resume(r) => wit::Event::Resume(wit::Resume {
            channel: r.channel.clone(),
            session: r.session,
            key: r.key.clone(),
            stalled_ms: r.stalled_ms,
            on_air: r.on_air,
        }),
        Event::IngestStats(s) => wit::Event::IngestStats(wit::IngestStats {
            channel: s.channel.clone(),
            session: s.session,
            key: s.key.clone(),
            kbps: s.kbps,
            silent_ms: s.silent_ms,
            stalled: s.stalled,
            on_air: s.on_air,
        }),
        Event::Switched(s) => wit::Event::Switched(wit::Switched {
            channel: s.channel.clone(),
            from: source(s.from),
            to: source(s.to),
            reason: s.reason.clone(),
            session: s.session,
        }),
        Event::DestinationUp(d) => wit::Event::DestinationUp(wit::DestinationUp {
            channel: d.channel.clone(),
            name: d.name.clone(),
            url: d.url.clone(),
            attempt: d.attempt,
        }),
        Event::DestinationDown(d) => wit::Event::DestinationDown(wit::DestinationDown {
            channel: d.channel.clone(),
            name: d.name.clone(),
            error: d.error.clone(),
        }),
        Event::DestinationRetry(d) => wit::Event::DestinationRetry(wit::DestinationRetry {
            channel: d.channel.clone(),
            name: d.name.clone(),
            attempt: d.attempt,
            delay_ms: d.delay_ms,
        }),
    }
}

fn action(a: wit::Action) -> Action {
    match a {
        wit::Action::Switch(s) => Action::Switch {
            to: source_back(s.to),
            media: s.media.map(Into::into),
            reason: s.reason,
            session: None,
        },
        wit::Action::RejectPublish(r) => Action::RejectPublish {
            session: r.session,
            reason: r.reason,
        },
        wit::Action::Kick(k) => Action::Kick {
            session: k.session,
            reason: k.reason,
        },
        wit::Action::SetFallback(m) => Action::SetFallback {
            media: m.map(Into::into),
        },
        wit::Action::DestinationAdd(d) => Action::DestinationAdd {
            name: d.name,
            url: d.url,
            profile: d.profile,
            segment_minutes: d.segment_minutes,
            max_total_gib: d.max_total_gib,
        },
        wit::Action::DestinationRemove(name) => Action::DestinationRemove { name },
        wit::Action::DestinationEnable(name) => Action::DestinationEnable { name },
        wit::Action::DestinationDisable(name) => Action::DestinationDisable { name },
        wit::Action::OverlaySet(l) => Action::OverlaySet {
            layer: Layer {
                name: l.name,
                source: match l.source {
                    wit::LayerSource::Plugin(p) => LayerSource::Plugin {
                        plugin: p.plugin,
                        data: p.data,
                    },
                    wit::LayerSource::Text(t) => LayerSource::Text {
                        text: t.text,
                        size_px: t.size_px,
                        color: t.color,
                        font: t.font.map(Into::into),
                    },
                    wit::LayerSource::Png(path) => LayerSource::Png { path: path.into() },
                },
                x: l.x,
                y: l.y,
                width: l.width,
                height: l.height,
                z: l.z,
                live_only: l.live_only,
            },
        },
        wit::Action::OverlayHide(name) => Action::OverlayHide { name },
        wit::Action::ChannelStart => Action::ChannelStart,
        wit::Action::ChannelStop => Action::ChannelStop,
        wit::Action::ChannelDelete => Action::ChannelDelete,
    }
}

/// An action and its channel: none acts on the event's channel.
fn channel_action(a: wit::ChannelAction) -> Action {
    let action = action(a.action);
    match a.channel {
        Some(channel) => Action::OnChannel {
            channel,
            action: Box::new(action),
        },
        None => action,
    }
}
