//! onair's default switching policy (`scripts/failover.lua`) as a policy plugin: a publisher
//! going live or recovering from a stall is put on air; the publisher on air stopping or stalling
//! cuts to the fallback. Every other event takes no action.
//!
//! Written against `onair:plugin@0.1.0` (one channel's events and actions) with wit-bindgen
//! directly; it stays there as the proof that 0.1.0 plugins keep running. A new plugin uses the
//! SDK (`onair-plugin-sdk`, the newest version), as `scoreboard` and `fixtures/recording-policy`
//! do.

#![allow(clippy::too_many_arguments)] // in generated code

wit_bindgen::generate!({
    world: "policy",
    path: "../../wit/onair-plugin@0.1.0",
});

use onair::plugin::types::{Source, SwitchTo};

/// `Action::Switch` to `to` with `reason`, keeping the fallback media.
fn switch(to: Source, reason: impl Into<String>) -> Action {
    Action::Switch(SwitchTo {
        to,
        media: None,
        reason: reason.into(),
    })
}

struct PriorityFailover;

impl Guest for PriorityFailover {
    fn on_event(event: Event) -> Vec<Action> {
        decide(&event).into_iter().collect()
    }
}

export!(PriorityFailover);

fn decide(event: &Event) -> Option<Action> {
    match event {
        // A publisher starts: put it on air (the cut happens on its first keyframe).
        Event::Publish(ev) => Some(switch(
            Source::Live,
            format!("publish of session {}", ev.session),
        )),
        // A stalled publisher sends media again.
        Event::Resume(ev) => Some(switch(
            Source::Live,
            format!("resume of session {}", ev.session),
        )),
        // The publisher on air disconnected or stopped.
        Event::Unpublish(ev) if ev.on_air => Some(switch(
            Source::Fallback,
            format!("unpublish of session {} ({})", ev.session, ev.reason),
        )),
        // The publisher on air sends nothing while its connection stays open.
        Event::Stall(ev) if ev.on_air => Some(switch(
            Source::Fallback,
            format!(
                "stall of session {}: no media for {} ms",
                ev.session, ev.silent_ms
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::onair::plugin::types::{IngestStats, Publish, Resume, Stall, Unpublish};

    use super::*;

    fn one(event: Event) -> Option<(Source, String)> {
        let actions = PriorityFailover::on_event(event);
        assert!(actions.len() <= 1);
        actions.into_iter().next().map(|a| match a {
            Action::Switch(SwitchTo {
                to,
                media: None,
                reason,
            }) => (to, reason),
            other => panic!("unexpected action {other:?}"),
        })
    }

    #[test]
    fn publish_and_resume_go_live() {
        let publish = Publish {
            session: 7,
            key: "live…a9f3".into(),
            addr: "1.2.3.4:5".into(),
        };
        assert_eq!(
            one(Event::Publish(publish)),
            Some((Source::Live, "publish of session 7".into()))
        );
        for on_air in [false, true] {
            let resume = Resume {
                session: 3,
                key: String::new(),
                stalled_ms: 900,
                on_air,
            };
            assert_eq!(
                one(Event::Resume(resume)),
                Some((Source::Live, "resume of session 3".into()))
            );
        }
    }

    #[test]
    fn unpublish_and_stall_fall_back_only_on_air() {
        let unpublish = |on_air| Unpublish {
            session: 4,
            key: String::new(),
            reason: "timeout".into(),
            on_air,
        };
        assert_eq!(
            one(Event::Unpublish(unpublish(true))),
            Some((Source::Fallback, "unpublish of session 4 (timeout)".into()))
        );
        assert_eq!(one(Event::Unpublish(unpublish(false))), None);
        let stall = |on_air| Stall {
            session: 5,
            key: String::new(),
            silent_ms: 2500,
            on_air,
        };
        assert_eq!(
            one(Event::Stall(stall(true))),
            Some((
                Source::Fallback,
                "stall of session 5: no media for 2500 ms".into()
            ))
        );
        assert_eq!(one(Event::Stall(stall(false))), None);
    }

    #[test]
    fn other_events_take_no_action() {
        let stats = IngestStats {
            session: 1,
            key: String::new(),
            kbps: 4000,
            silent_ms: 0,
            stalled: false,
            on_air: true,
        };
        assert_eq!(one(Event::IngestStats(stats)), None);
    }
}
