//! The built-in default policy. It is what `scripts/failover.lua` does, in Rust, and it applies
//! whenever the script is missing or fails: publish or resume of a session → live; unpublish or
//! stall of the session on air → fallback.

use crate::action::Action;
use crate::event::{Event, Source};

pub fn decide(event: &Event) -> Vec<Action> {
    let switch = |to, reason: String| {
        vec![Action::Switch {
            to,
            media: None,
            reason: format!("{reason} (built-in policy)"),
            session: None,
        }]
    };
    match event {
        Event::Publish(e) => switch(Source::Live, format!("publish of session {}", e.session)),
        Event::Resume(e) => switch(Source::Live, format!("resume of session {}", e.session)),
        Event::Unpublish(e) if e.on_air => switch(
            Source::Fallback,
            format!("unpublish of session {} ({})", e.session, e.reason),
        ),
        Event::Stall(e) if e.on_air => switch(
            Source::Fallback,
            format!(
                "stall of session {}: no media for {} ms",
                e.session, e.silent_ms
            ),
        ),
        _ => Vec::new(),
    }
}
