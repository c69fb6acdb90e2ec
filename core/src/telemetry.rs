//! Telemetry, one place per happening: for each event, its log line (`event = name`, the channel
//! and the payload's fields), its Prometheus series ([`Metrics`]) and the status tallies (the
//! process's and its channel's, [`Tally`]) are written together, in one arm of [`emit`]. A new
//! event gets its arm here (the match is exhaustive, so the compiler asks for it); a happening
//! that is not an event (a publish the policy rejects) has its own function beside it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::event::{Event, SessionId};
use crate::metrics::Metrics;

/// The counts `/api/status` shows, for the process and for each channel.
#[derive(Debug, Default)]
pub struct Tally {
    pub switches: AtomicU64,
    pub stalls: AtomicU64,
    pub publishes: AtomicU64,
    pub rejected_by_policy: AtomicU64,
}

/// Where one happening is recorded.
pub struct Sinks<'a> {
    pub metrics: &'a Metrics,
    pub process: &'a Tally,
    /// The event's channel's tally (`None`: the channel is gone).
    pub channel: Option<&'a Tally>,
}

impl Sinks<'_> {
    fn count(&self, which: fn(&Tally) -> &AtomicU64) {
        which(self.process).fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.channel {
            which(c).fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Logs and counts `ev`. Called once per event, by the engine, which then broadcasts it.
pub fn emit(ev: &Event, to: &Sinks) {
    let event = ev.name();
    match ev {
        Event::Publish(e) => {
            tracing::debug!(channel = %e.channel, session = e.session, key = %e.key, client = %e.addr, event, "publish requested");
            to.metrics.publish(&e.channel);
            to.count(|t| &t.publishes);
        }
        Event::Unpublish(e) => {
            tracing::info!(channel = %e.channel, session = e.session, key = %e.key, reason = %e.reason, on_air = e.on_air, event, "unpublish");
            to.metrics.unpublish(&e.channel);
        }
        Event::Stall(e) => {
            tracing::warn!(channel = %e.channel, session = e.session, key = %e.key, silent_ms = e.silent_ms, on_air = e.on_air, event, "publisher stalled");
            to.metrics.stall(&e.channel);
            to.count(|t| &t.stalls);
        }
        Event::Resume(e) => {
            tracing::info!(channel = %e.channel, session = e.session, key = %e.key, stalled_ms = e.stalled_ms, on_air = e.on_air, event, "publisher resumed");
        }
        Event::IngestStats(e) => {
            tracing::trace!(channel = %e.channel, session = e.session, kbps = e.kbps, silent_ms = e.silent_ms, event, "ingest stats");
        }
        Event::Switched(e) => {
            tracing::info!(channel = %e.channel, from = e.from.as_str(), to = e.to.as_str(), session = e.session, reason = %e.reason, event, "switched");
            to.metrics.switched(&e.channel, e.from, e.to, &e.reason);
            to.count(|t| &t.switches);
        }
        Event::DestinationUp(e) => {
            tracing::info!(channel = %e.channel, destination = %e.name, attempt = e.attempt, url = %e.url, event, "destination up");
        }
        Event::DestinationDown(e) => {
            tracing::warn!(channel = %e.channel, destination = %e.name, error = %e.error, event, "destination down");
            to.metrics.destination_down(&e.channel, &e.name);
        }
        Event::DestinationRetry(e) => {
            tracing::info!(channel = %e.channel, destination = %e.name, attempt = e.attempt, delay_ms = e.delay_ms, event, "retrying");
            to.metrics.destination_retry(&e.channel, &e.name);
        }
    }
}

/// The policy rejected publish `session` for `reason`.
pub fn publish_rejected(session: SessionId, reason: &str, to: &Sinks) {
    tracing::warn!(session, %reason, "publish rejected by policy; its other actions are dropped");
    to.count(|t| &t.rejected_by_policy);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Source, Stall, Switched};

    #[test]
    fn one_emit_writes_the_series_and_both_tallies() {
        let metrics = Metrics::new();
        let (process, channel) = (Tally::default(), Tally::default());
        let to = Sinks {
            metrics: &metrics,
            process: &process,
            channel: Some(&channel),
        };
        emit(
            &Event::Switched(Switched {
                channel: "main".into(),
                from: Source::Live,
                to: Source::Fallback,
                reason: "stall".into(),
                session: None,
            }),
            &to,
        );
        let stall = Event::Stall(Stall {
            channel: "main".into(),
            session: 1,
            key: "live…abcd".into(),
            silent_ms: 3000,
            on_air: true,
        });
        emit(&stall, &to);
        // a channel that is gone: the process still counts
        emit(
            &stall,
            &Sinks {
                channel: None,
                ..to
            },
        );
        publish_rejected(2, "quiet hours", &to);
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(
            [
                n(&process.switches),
                n(&process.stalls),
                n(&process.rejected_by_policy)
            ],
            [1, 2, 1]
        );
        assert_eq!(
            [
                n(&channel.switches),
                n(&channel.stalls),
                n(&channel.rejected_by_policy)
            ],
            [1, 1, 1]
        );
        let text = metrics.render(&Default::default());
        assert!(
            text.contains(r#"onair_switches_total{channel="main",to="fallback",reason="stall"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"onair_stalls_total{channel="main"} 2"#),
            "{text}"
        );
    }
}
