//! The stall timer of one publish session, for every ingest protocol: a publisher whose
//! connection stays open but sends no media for the channel's `fallback.stall_timeout_ms` has
//! stalled (reported once, as `stall`); its next media message resumes it (`resume`, with how
//! long it was silent); one silent for [`STALLED_DISCONNECT`] is disconnected (OBS reconnects by
//! itself). Plain data and no clock of its own: each call is given the time, so the tests below
//! run on a fake clock.

use std::time::{Duration, Instant};

/// A stalled publisher silent this long is disconnected (OBS reconnects by itself).
pub const STALLED_DISCONNECT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct StallTimer {
    /// The channel's `fallback.stall_timeout_ms`.
    timeout: Duration,
    last_media: Instant,
    stalled_since: Option<Instant>,
}

/// What a check of the timer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Media arrived within the timeout, or the stall was already reported.
    Quiet,
    /// The session has just stalled: no media for this long (at least the timeout).
    Stalled(Duration),
    /// Silent past [`STALLED_DISCONNECT`]: end the connection.
    Disconnect,
}

impl StallTimer {
    /// A session that has just published at `now`.
    pub fn new(timeout: Duration, now: Instant) -> StallTimer {
        StallTimer {
            timeout,
            last_media: now,
            stalled_since: None,
        }
    }

    /// A media message arrived at `now`. Returns, when it ends a stall, how long the publisher
    /// was silent (what `resume`'s `stalled_ms` says).
    pub fn media(&mut self, now: Instant) -> Option<Duration> {
        let silent = now.saturating_duration_since(self.last_media);
        self.last_media = now;
        self.stalled_since.take().map(|_| silent)
    }

    /// How long since the last media message.
    pub fn silent(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_media)
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled_since.is_some()
    }

    /// Checks the timer at `now` (the RTMP session does every 50 ms). A stall is reported once.
    pub fn check(&mut self, now: Instant) -> Check {
        let silent = self.silent(now);
        if self.stalled_since.is_none() && silent >= self.timeout {
            self.stalled_since = Some(now);
            return Check::Stalled(silent);
        }
        if silent > STALLED_DISCONNECT {
            return Check::Disconnect;
        }
        Check::Quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publisher on a channel with a 3 s stall timeout, checked every 250 ms (the
    /// ingest checks more often; the outcomes are the same to within a check).
    fn timeline(events: &[(u64, &str)]) -> Vec<(u64, Check, Option<Duration>)> {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut timer = StallTimer::new(Duration::from_secs(3), at(0));
        let mut seen = Vec::new();
        let end = events.last().map_or(0, |e| e.0);
        let mut next = events.iter().peekable();
        let mut ms = 0;
        while ms <= end {
            while let Some((_, what)) = next.next_if(|e| e.0 <= ms) {
                assert_eq!(*what, "media");
                let resumed = timer.media(at(ms));
                if resumed.is_some() {
                    seen.push((ms, Check::Quiet, resumed));
                }
            }
            match timer.check(at(ms)) {
                Check::Quiet => {}
                c => seen.push((ms, c, None)),
            }
            ms += 250;
        }
        seen
    }

    #[test]
    fn media_within_the_timeout_never_stalls() {
        let media: Vec<(u64, &str)> = (0..40).map(|i| (i * 2_900, "media")).collect();
        assert_eq!(timeline(&media), []);
    }

    #[test]
    fn a_stall_is_reported_once_at_the_timeout_and_the_resume_says_how_long() {
        let seen = timeline(&[
            (0, "media"),
            (1_000, "media"),
            (9_000, "media"),
            (9_500, "media"),
        ]);
        assert_eq!(
            seen,
            [
                (4_000, Check::Stalled(Duration::from_secs(3)), None),
                (9_000, Check::Quiet, Some(Duration::from_secs(8))),
            ]
        );
    }

    #[test]
    fn a_publisher_silent_past_30_s_is_disconnected_even_while_stalled() {
        let seen = timeline(&[(0, "media"), (31_000, "media")]);
        assert_eq!(
            seen[0],
            (3_000, Check::Stalled(Duration::from_secs(3)), None)
        );
        assert_eq!(seen[1], (30_250, Check::Disconnect, None));
    }

    #[test]
    fn a_stall_timeout_above_30_s_disconnects_at_30_s_without_a_stall() {
        // (as before the timer was its own type; `fallback.stall_timeout_ms` has no maximum)
        let t0 = Instant::now();
        let mut timer = StallTimer::new(Duration::from_secs(40), t0);
        assert_eq!(timer.check(t0 + Duration::from_secs(30)), Check::Quiet);
        assert_eq!(
            timer.check(t0 + Duration::from_millis(30_250)),
            Check::Disconnect
        );
    }

    #[test]
    fn after_a_resume_the_next_silence_stalls_again() {
        let seen = timeline(&[(0, "media"), (5_000, "media"), (9_000, "media")]);
        let stalls: Vec<u64> = seen
            .iter()
            .filter(|s| matches!(s.1, Check::Stalled(_)))
            .map(|s| s.0)
            .collect();
        assert_eq!(stalls, [3_000, 8_000]);
    }
}
