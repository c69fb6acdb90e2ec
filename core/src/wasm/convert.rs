//! The one translation layer between the core's events and actions and the WIT types. Lua uses
//! the same core types (through serde), so the two runtimes cannot drift apart.

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
            session: p.session,
            key: p.key.clone(),
            addr: p.addr.clone(),
        }),
        Event::Unpublish(u) => wit::Event::Unpublish(wit::Unpublish {
            session: u.session,
            key: u.key.clone(),
            reason: u.reason.clone(),
            on_air: u.on_air,
        }),
        Event::Stall(s) => wit::Event::Stall(wit::Stall {
            session: s.session,
            key: s.key.clone(),
            silent_ms: s.silent_ms,
            on_air: s.on_air,
        }),
        Event::Resume(r) => wit::Event::Resume(wit::Resume {
            session: r.session,
            key: r.key.clone(),
            stalled_ms: r.stalled_ms,
            on_air: r.on_air,
        }),
        Event::IngestStats(s) => wit::Event::IngestStats(wit::IngestStats {
            session: s.session,
            key: s.key.clone(),
            kbps: s.kbps,
            silent_ms: s.silent_ms,
            stalled: s.stalled,
            on_air: s.on_air,
        }),
        Event::Switched(s) => wit::Event::Switched(wit::Switched {
            from: source(s.from),
            to: source(s.to),
            reason: s.reason.clone(),
            session: s.session,
        }),
        Event::DestinationUp(d) => wit::Event::DestinationUp(wit::DestinationUp {
            name: d.name.clone(),
            url: d.url.clone(),
            attempt: d.attempt,
        }),
        Event::DestinationDown(d) => wit::Event::DestinationDown(wit::DestinationDown {
            name: d.name.clone(),
            error: d.error.clone(),
        }),
        Event::DestinationRetry(d) => wit::Event::DestinationRetry(wit::DestinationRetry {
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
    }
}
