//! The one translation layer between the core's events and actions and the WIT types of the
//! newest version (`onair:plugin@0.3.0`); [`v0_2`] and [`v0_1`] map the older versions onto it.
//! Lua uses the same core types (through serde), so the runtimes cannot drift apart.

use super::bindings::policy::onair::plugin::types as wit;
use crate::action::{Action, Layer, LayerSource};
use crate::event::{Event, Source};

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

pub fn action(a: wit::Action) -> Action {
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
pub fn channel_action(a: wit::ChannelAction) -> Action {
    let action = action(a.action);
    match a.channel {
        Some(channel) => Action::OnChannel {
            channel,
            action: Box::new(action),
        },
        None => action,
    }
}

/// `onair:plugin@0.2.0` in terms of the newest version: the same events, and actions whose
/// `destination-add` has no options.
pub mod v0_2 {
    use super::wit;
    use crate::wasm::bindings::v0_2::policy::onair::plugin::types as old;

    fn source(s: wit::Source) -> old::Source {
        match s {
            wit::Source::Live => old::Source::Live,
            wit::Source::Fallback => old::Source::Fallback,
        }
    }

    fn source_up(s: old::Source) -> wit::Source {
        match s {
            old::Source::Live => wit::Source::Live,
            old::Source::Fallback => wit::Source::Fallback,
        }
    }

    /// The same event in 0.2.0's types.
    pub fn event(e: wit::Event) -> old::Event {
        match e {
            wit::Event::Publish(p) => old::Event::Publish(old::Publish {
                channel: p.channel,
                session: p.session,
                key: p.key,
                addr: p.addr,
            }),
            wit::Event::Unpublish(u) => old::Event::Unpublish(old::Unpublish {
                channel: u.channel,
                session: u.session,
                key: u.key,
                reason: u.reason,
                on_air: u.on_air,
            }),
            wit::Event::Stall(s) => old::Event::Stall(old::Stall {
                channel: s.channel,
                session: s.session,
                key: s.key,
                silent_ms: s.silent_ms,
                on_air: s.on_air,
            }),
            wit::Event::Resume(r) => old::Event::Resume(old::Resume {
                channel: r.channel,
                session: r.session,
                key: r.key,
                stalled_ms: r.stalled_ms,
                on_air: r.on_air,
            }),
            wit::Event::IngestStats(s) => old::Event::IngestStats(old::IngestStats {
                channel: s.channel,
                session: s.session,
                key: s.key,
                kbps: s.kbps,
                silent_ms: s.silent_ms,
                stalled: s.stalled,
                on_air: s.on_air,
            }),
            wit::Event::Switched(s) => old::Event::Switched(old::Switched {
                channel: s.channel,
                from: source(s.from),
                to: source(s.to),
                reason: s.reason,
                session: s.session,
            }),
            wit::Event::DestinationUp(d) => old::Event::DestinationUp(old::DestinationUp {
                channel: d.channel,
                name: d.name,
                url: d.url,
                attempt: d.attempt,
            }),
            wit::Event::DestinationDown(d) => old::Event::DestinationDown(old::DestinationDown {
                channel: d.channel,
                name: d.name,
                error: d.error,
            }),
            wit::Event::DestinationRetry(d) => {
                old::Event::DestinationRetry(old::DestinationRetry {
                    channel: d.channel,
                    name: d.name,
                    attempt: d.attempt,
                    delay_ms: d.delay_ms,
                })
            }
        }
    }

    /// The same action and channel in the newest version.
    pub fn channel_action(a: old::ChannelAction) -> wit::ChannelAction {
        wit::ChannelAction {
            channel: a.channel,
            action: action(a.action),
        }
    }

    /// The same action in the newest version.
    pub fn action(a: old::Action) -> wit::Action {
        match a {
            old::Action::Switch(s) => wit::Action::Switch(wit::SwitchTo {
                to: source_up(s.to),
                media: s.media,
                reason: s.reason,
            }),
            old::Action::RejectPublish(r) => wit::Action::RejectPublish(wit::SessionReason {
                session: r.session,
                reason: r.reason,
            }),
            old::Action::Kick(k) => wit::Action::Kick(wit::SessionReason {
                session: k.session,
                reason: k.reason,
            }),
            old::Action::SetFallback(m) => wit::Action::SetFallback(m),
            // the channel's encode, no recording options
            old::Action::DestinationAdd(d) => wit::Action::DestinationAdd(wit::Destination {
                name: d.name,
                url: d.url,
                profile: None,
                segment_minutes: None,
                max_total_gib: None,
            }),
            old::Action::DestinationRemove(n) => wit::Action::DestinationRemove(n),
            old::Action::DestinationEnable(n) => wit::Action::DestinationEnable(n),
            old::Action::DestinationDisable(n) => wit::Action::DestinationDisable(n),
            old::Action::OverlaySet(l) => wit::Action::OverlaySet(wit::Layer {
                name: l.name,
                source: match l.source {
                    old::LayerSource::Plugin(p) => wit::LayerSource::Plugin(wit::PluginSource {
                        plugin: p.plugin,
                        data: p.data,
                    }),
                    old::LayerSource::Text(t) => wit::LayerSource::Text(wit::TextSource {
                        text: t.text,
                        size_px: t.size_px,
                        color: t.color,
                        font: t.font,
                    }),
                    old::LayerSource::Png(p) => wit::LayerSource::Png(p),
                },
                x: l.x,
                y: l.y,
                width: l.width,
                height: l.height,
                z: l.z,
                live_only: l.live_only,
            }),
            old::Action::OverlayHide(n) => wit::Action::OverlayHide(n),
            old::Action::ChannelStart => wit::Action::ChannelStart,
            old::Action::ChannelStop => wit::Action::ChannelStop,
            old::Action::ChannelDelete => wit::Action::ChannelDelete,
        }
    }
}

/// `onair:plugin@0.1.0` in terms of the next version, 0.2.0 (which [`v0_2`] maps onto the
/// newest).
pub mod v0_1 {
    use crate::wasm::bindings::v0_1::policy::onair::plugin::types as old;
    use crate::wasm::bindings::v0_2::policy::onair::plugin::types as next;

    fn source(s: next::Source) -> old::Source {
        match s {
            next::Source::Live => old::Source::Live,
            next::Source::Fallback => old::Source::Fallback,
        }
    }

    fn source_up(s: old::Source) -> next::Source {
        match s {
            old::Source::Live => next::Source::Live,
            old::Source::Fallback => next::Source::Fallback,
        }
    }

    /// The event without its channel.
    pub fn event(e: next::Event) -> old::Event {
        match e {
            next::Event::Publish(p) => old::Event::Publish(old::Publish {
                session: p.session,
                key: p.key,
                addr: p.addr,
            }),
            next::Event::Unpublish(u) => old::Event::Unpublish(old::Unpublish {
                session: u.session,
                key: u.key,
                reason: u.reason,
                on_air: u.on_air,
            }),
            next::Event::Stall(s) => old::Event::Stall(old::Stall {
                session: s.session,
                key: s.key,
                silent_ms: s.silent_ms,
                on_air: s.on_air,
            }),
            next::Event::Resume(r) => old::Event::Resume(old::Resume {
                session: r.session,
                key: r.key,
                stalled_ms: r.stalled_ms,
                on_air: r.on_air,
            }),
            next::Event::IngestStats(s) => old::Event::IngestStats(old::IngestStats {
                session: s.session,
                key: s.key,
                kbps: s.kbps,
                silent_ms: s.silent_ms,
                stalled: s.stalled,
                on_air: s.on_air,
            }),
            next::Event::Switched(s) => old::Event::Switched(old::Switched {
                from: source(s.from),
                to: source(s.to),
                reason: s.reason,
                session: s.session,
            }),
            next::Event::DestinationUp(d) => old::Event::DestinationUp(old::DestinationUp {
                name: d.name,
                url: d.url,
                attempt: d.attempt,
            }),
            next::Event::DestinationDown(d) => old::Event::DestinationDown(old::DestinationDown {
                name: d.name,
                error: d.error,
            }),
            next::Event::DestinationRetry(d) => {
                old::Event::DestinationRetry(old::DestinationRetry {
                    name: d.name,
                    attempt: d.attempt,
                    delay_ms: d.delay_ms,
                })
            }
        }
    }

    /// The same action in 0.2.0 (0.1.0 has no channel actions).
    pub fn action(a: old::Action) -> next::Action {
        match a {
            old::Action::Switch(s) => next::Action::Switch(next::SwitchTo {
                to: source_up(s.to),
                media: s.media,
                reason: s.reason,
            }),
            old::Action::RejectPublish(r) => next::Action::RejectPublish(next::SessionReason {
                session: r.session,
                reason: r.reason,
            }),
            old::Action::Kick(k) => next::Action::Kick(next::SessionReason {
                session: k.session,
                reason: k.reason,
            }),
            old::Action::SetFallback(m) => next::Action::SetFallback(m),
            old::Action::DestinationAdd(d) => next::Action::DestinationAdd(next::Destination {
                name: d.name,
                url: d.url,
            }),
            old::Action::DestinationRemove(n) => next::Action::DestinationRemove(n),
            old::Action::DestinationEnable(n) => next::Action::DestinationEnable(n),
            old::Action::DestinationDisable(n) => next::Action::DestinationDisable(n),
            old::Action::OverlaySet(l) => next::Action::OverlaySet(next::Layer {
                name: l.name,
                source: match l.source {
                    old::LayerSource::Plugin(p) => next::LayerSource::Plugin(next::PluginSource {
                        plugin: p.plugin,
                        data: p.data,
                    }),
                    old::LayerSource::Text(t) => next::LayerSource::Text(next::TextSource {
                        text: t.text,
                        size_px: t.size_px,
                        color: t.color,
                        font: t.font,
                    }),
                    old::LayerSource::Png(p) => next::LayerSource::Png(p),
                },
                x: l.x,
                y: l.y,
                width: l.width,
                height: l.height,
                z: l.z,
                live_only: l.live_only,
            }),
            old::Action::OverlayHide(n) => next::Action::OverlayHide(n),
        }
    }
}
