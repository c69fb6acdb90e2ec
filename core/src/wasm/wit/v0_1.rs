//! `onair:plugin@0.1.0` (`wit/onair-plugin@0.1.0/`, frozen): no channels. Its bindings for both
//! worlds, their host interfaces, and its translation to and from the next version, 0.2.0
//! (`next`, which reaches the core in turn): 0.2.0's events without the channel, and actions
//! addressed to the event's channel.

use std::borrow::Cow;

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::newest;
// The next newer version, which this one translates to and from.
use super::v0_2 as next;
use crate::action::Action;
use crate::wasm::{Image, PluginState, World};

/// The WIT package version of this file.
pub const VERSION: &str = "0.1.0";

pub mod policy {
    wasmtime::component::bindgen!({
        path: "../wit/onair-plugin@0.1.0",
        world: "policy",
    });
}

pub mod overlay {
    wasmtime::component::bindgen!({
        path: "../wit/onair-plugin@0.1.0",
        world: "overlay",
    });
}

/// 0.1.0's types (the policy world's bindings; the overlay world's hold the same).
pub use policy::onair::plugin::types;

use next::types as new;
use types as old;

host_interfaces!(policy);
host_interfaces!(overlay);
image_from!(overlay);

/// A 0.1.0 plugin of either world.
pub enum Instance {
    Policy(policy::Policy),
    Overlay(overlay::Overlay),
}

/// Adds 0.1.0's interfaces to the policy world's linker and the overlay world's.
pub fn add_to_linkers(
    policy_linker: &mut Linker<PluginState>,
    overlay_linker: &mut Linker<PluginState>,
) -> wasmtime::Result<()> {
    policy::Policy::add_to_linker::<_, HasSelf<_>>(policy_linker, |s| s)?;
    overlay::Overlay::add_to_linker::<_, HasSelf<_>>(overlay_linker, |s| s)
}

/// Instantiates `component` as `world` of 0.1.0.
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
                // addressed to the event's channel: the engine's default
                .map(|l| l.into_iter().map(action_to_core).collect()),
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

// How the dispatch reaches the core from this version; every version file has these. An older
// version's go through its `next`.

/// The event in 0.1.0's types, from the newest version's.
pub(super) fn from_newest(e: &newest::types::Event) -> Cow<'_, old::Event> {
    Cow::Owned(event(next::from_newest(e).into_owned()))
}

/// A 0.1.0 action as the core's.
pub(super) fn action_to_core(a: old::Action) -> Action {
    next::action_to_core(action(a))
}

// 0.1.0's events and actions to and from 0.2.0's.

fn source(s: new::Source) -> old::Source {
    match s {
        new::Source::Live => old::Source::Live,
        new::Source::Fallback => old::Source::Fallback,
    }
}

fn source_up(s: old::Source) -> new::Source {
    match s {
        old::Source::Live => new::Source::Live,
        old::Source::Fallback => new::Source::Fallback,
    }
}

/// The event without its channel.
fn event(e: new::Event) -> old::Event {
    match e {
        new::Event::Publish(p) => old::Event::Publish(old::Publish {
            session: p.session,
            key: p.key,
            addr: p.addr,
        }),
        new::Event::Unpublish(u) => old::Event::Unpublish(old::Unpublish {
            session: u.session,
            key: u.key,
            reason: u.reason,
            on_air: u.on_air,
        }),
        new::Event::Stall(s) => old::Event::Stall(old::Stall {
            session: s.session,
            key: s.key,
            silent_ms: s.silent_ms,
            on_air: s.on_air,
        }),
        new::Event::Resume(r) => old::Event::Resume(old::Resume {
            session: r.session,
            key: r.key,
            stalled_ms: r.stalled_ms,
            on_air: r.on_air,
        }),
        new::Event::IngestStats(s) => old::Event::IngestStats(old::IngestStats {
            session: s.session,
            key: s.key,
            kbps: s.kbps,
            silent_ms: s.silent_ms,
            stalled: s.stalled,
            on_air: s.on_air,
        }),
        new::Event::Switched(s) => old::Event::Switched(old::Switched {
            from: source(s.from),
            to: source(s.to),
            reason: s.reason,
            session: s.session,
        }),
        new::Event::DestinationUp(d) => old::Event::DestinationUp(old::DestinationUp {
            name: d.name,
            url: d.url,
            attempt: d.attempt,
        }),
        new::Event::DestinationDown(d) => old::Event::DestinationDown(old::DestinationDown {
            name: d.name,
            error: d.error,
        }),
        new::Event::DestinationRetry(d) => old::Event::DestinationRetry(old::DestinationRetry {
            name: d.name,
            attempt: d.attempt,
            delay_ms: d.delay_ms,
        }),
    }
}

/// The same action in 0.2.0 (0.1.0 has no channel actions).
fn action(a: old::Action) -> new::Action {
    match a {
        old::Action::Switch(s) => new::Action::Switch(new::SwitchTo {
            to: source_up(s.to),
            media: s.media,
            reason: s.reason,
        }),
        old::Action::RejectPublish(r) => new::Action::RejectPublish(new::SessionReason {
            session: r.session,
            reason: r.reason,
        }),
        old::Action::Kick(k) => new::Action::Kick(new::SessionReason {
            session: k.session,
            reason: k.reason,
        }),
        old::Action::SetFallback(m) => new::Action::SetFallback(m),
        old::Action::DestinationAdd(d) => new::Action::DestinationAdd(new::Destination {
            name: d.name,
            url: d.url,
        }),
        old::Action::DestinationRemove(n) => new::Action::DestinationRemove(n),
        old::Action::DestinationEnable(n) => new::Action::DestinationEnable(n),
        old::Action::DestinationDisable(n) => new::Action::DestinationDisable(n),
        old::Action::OverlaySet(l) => new::Action::OverlaySet(new::Layer {
            name: l.name,
            source: match l.source {
                old::LayerSource::Plugin(p) => new::LayerSource::Plugin(new::PluginSource {
                    plugin: p.plugin,
                    data: p.data,
                }),
                old::LayerSource::Text(t) => new::LayerSource::Text(new::TextSource {
                    text: t.text,
                    size_px: t.size_px,
                    color: t.color,
                    font: t.font,
                }),
                old::LayerSource::Png(p) => new::LayerSource::Png(p),
            },
            x: l.x,
            y: l.y,
            width: l.width,
            height: l.height,
            z: l.z,
            live_only: l.live_only,
        }),
        old::Action::OverlayHide(n) => new::Action::OverlayHide(n),
    }
}
