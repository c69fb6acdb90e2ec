//! The cut state machine: what is on air, which publish session feeds the live input, which one
//! is armed to go on air, and what each live buffer does. Plain data: no GStreamer element, no
//! lock and no clock of its own. Every call is given the times it needs (the program's running
//! time for a cut point, an [`Instant`] for "on air since"), so the tests below drive it on a
//! fake clock; [`super::program::Program`] holds it under its state lock and carries out each
//! [`Cut`] it returns (the controlled properties step at `at`, `switched` is emitted).
//!
//! The rules:
//! - **To the fallback** at once, right after the last live frame pushed (never before a frame
//!   already shown), or at the current running time when nothing live was pushed. A pending
//!   switch to live is cancelled.
//! - **To live** only on the armed session's next video keyframe (an IDR: the first frame a
//!   decoder can show), at that keyframe's PTS. Until then the session on air keeps feeding the
//!   live input: a newcomer that never delivers cannot black out the session on air.
//! - Frames of sessions that neither feed the live input nor are armed are dropped; so are
//!   video frames that would go back in time (a frame or more before the last end) and audio
//!   more than [`AUDIO_OVERLAP_TOLERANCE`] before the last end.

use std::time::{Duration, Instant};

use gst::ClockTime;

use crate::event::{SessionId, Source};

/// Audio overlapping the last live audio by up to this much is rounding, not a step back.
pub const AUDIO_OVERLAP_TOLERANCE: ClockTime = ClockTime::from_mseconds(5);

/// A cut the program must make: from running time `at` on, `to` is shown and heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub from: Source,
    pub to: Source,
    pub at: ClockTime,
    pub reason: String,
    /// The session on air after a cut to live.
    pub session: Option<SessionId>,
}

/// What to do with one live video buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Video {
    /// Not pushed: its session does not feed the live input, or it goes back in time. A
    /// keyframe that goes back in time still makes the cut it armed (`Some`): the next frames
    /// go on air.
    Drop(Option<Cut>),
    /// Pushed to the live input, after making `cut` if there is one.
    Push(Option<Cut>),
}

/// What is on air and what is pending, for one channel.
#[derive(Debug)]
pub struct CutState {
    on_air: Source,
    /// The session whose frames feed the live input (on air when `on_air` is live).
    program: Option<SessionId>,
    /// A switch to live waiting for this session's next keyframe, with its reason.
    pending_live: Option<(SessionId, String)>,
    /// End (PTS + duration) of the last live video and audio buffers pushed.
    last_video_end: Option<ClockTime>,
    last_audio_end: Option<ClockTime>,
    since: Instant,
    /// Why the last cut happened (`start` before the first).
    reason: String,
}

impl CutState {
    /// The fallback on air since `now`, nothing live.
    pub fn new(now: Instant) -> CutState {
        CutState {
            on_air: Source::Fallback,
            program: None,
            pending_live: None,
            last_video_end: None,
            last_audio_end: None,
            since: now,
            reason: "start".into(),
        }
    }

    /// The source on air, the live session on air (when live), and how long since the last cut.
    pub fn on_air(&self, now: Instant) -> (Source, Option<SessionId>, Duration) {
        let session = (self.on_air == Source::Live)
            .then_some(self.program)
            .flatten();
        (
            self.on_air,
            session,
            now.saturating_duration_since(self.since),
        )
    }

    /// Why the last cut happened, as its `switched` event said (`start` before any).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether `session` feeds the live input (on air, or held for a return after a stall).
    pub fn is_program(&self, session: SessionId) -> bool {
        self.program == Some(session)
    }

    /// Whether `session`'s frames are wanted: it feeds the live input or is armed.
    pub fn wants(&self, session: SessionId) -> bool {
        self.is_program(session)
            || self
                .pending_live
                .as_ref()
                .is_some_and(|(s, _)| *s == session)
    }

    /// Arms `session` to go on air on its next keyframe. A no-op (and any other pending switch
    /// cancelled) when it already is on air.
    pub fn arm_live(&mut self, session: SessionId, reason: String) {
        if self.on_air == Source::Live && self.program == Some(session) {
            self.pending_live = None;
            return;
        }
        self.pending_live = Some((session, reason));
    }

    /// Cuts to the fallback right after the last live frame, or at `running_time` when nothing
    /// live was pushed (or the last frame ends later). `None` when the fallback is already on
    /// air. Cancels a pending switch to live either way.
    pub fn cut_to_fallback(
        &mut self,
        reason: String,
        running_time: ClockTime,
        now: Instant,
    ) -> Option<Cut> {
        self.pending_live = None;
        if self.on_air == Source::Fallback {
            return None;
        }
        let at = self
            .last_video_end
            .map_or(running_time, |end| end.min(running_time));
        Some(self.cut(Source::Fallback, at, reason, now))
    }

    /// `session` ended: it no longer feeds the live input and is no longer armed. What goes on
    /// air instead is the policy's business (its `unpublish` handler).
    pub fn session_ended(&mut self, session: SessionId) {
        if self.program == Some(session) {
            self.program = None;
        }
        if self
            .pending_live
            .as_ref()
            .is_some_and(|(s, _)| *s == session)
        {
            self.pending_live = None;
        }
    }

    /// A live video buffer of `session` at `pts` lasting `duration` (a frame, `frame`, when it
    /// does not say), on the program's running time. The armed session's keyframe makes the
    /// cut to live at its PTS.
    pub fn live_video(
        &mut self,
        session: SessionId,
        pts: ClockTime,
        duration: Option<ClockTime>,
        keyframe: bool,
        frame: ClockTime,
        now: Instant,
    ) -> Video {
        let mut cut = None;
        let armed = self
            .pending_live
            .as_ref()
            .is_some_and(|(s, _)| *s == session);
        if keyframe && armed {
            if self.program != Some(session) {
                self.program = Some(session);
                self.last_video_end = None;
                self.last_audio_end = None;
            }
            if let Some((_, reason)) = self.pending_live.take() {
                cut = Some(self.cut(Source::Live, pts, reason, now));
            }
        } else if self.program != Some(session) {
            return Video::Drop(None);
        }
        if self.last_video_end.is_some_and(|last| pts + frame <= last) {
            return Video::Drop(cut);
        }
        self.last_video_end = Some(pts + duration.unwrap_or(frame));
        Video::Push(cut)
    }

    /// Whether a live audio buffer of `session` at `pts` lasting `duration` is pushed.
    pub fn live_audio(
        &mut self,
        session: SessionId,
        pts: ClockTime,
        duration: Option<ClockTime>,
    ) -> bool {
        if self.program != Some(session) {
            return false;
        }
        if self
            .last_audio_end
            .is_some_and(|last| pts + AUDIO_OVERLAP_TOLERANCE < last)
        {
            return false;
        }
        self.last_audio_end = Some(pts + duration.unwrap_or(ClockTime::ZERO));
        true
    }

    fn cut(&mut self, to: Source, at: ClockTime, reason: String, now: Instant) -> Cut {
        let from = self.on_air;
        self.on_air = to;
        self.since = now;
        self.reason.clone_from(&reason);
        Cut {
            from,
            to,
            at,
            reason,
            session: (to == Source::Live).then_some(self.program).flatten(),
        }
    }
}

/// Timelines on a fake clock: `ms(n)` is running time n ms, `t(n)` the wall clock n ms after
/// the start. A channel at 30 fps; a GOP is 2 s (Twitch's keyframe interval).
#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: ClockTime = ClockTime::from_nseconds(33_333_333);

    fn ms(n: u64) -> ClockTime {
        ClockTime::from_mseconds(n)
    }

    struct Clock(Instant);
    impl Clock {
        fn t(&self, n: u64) -> Instant {
            self.0 + Duration::from_millis(n)
        }
    }

    fn start() -> (CutState, Clock) {
        let c = Clock(Instant::now());
        (CutState::new(c.t(0)), c)
    }

    fn video(st: &mut CutState, s: SessionId, pts: u64, key: bool, now: Instant) -> Video {
        st.live_video(s, ms(pts), Some(FRAME), key, FRAME, now)
    }

    fn live_cut(session: SessionId, at: u64, reason: &str) -> Video {
        Video::Push(Some(Cut {
            from: Source::Fallback,
            to: Source::Live,
            at: ms(at),
            reason: reason.into(),
            session: Some(session),
        }))
    }

    #[test]
    fn arming_waits_for_the_sessions_next_keyframe() {
        let (mut st, c) = start();
        assert_eq!(st.on_air(c.t(0)).0, Source::Fallback);
        assert_eq!(st.reason(), "start");
        // a publisher's frames before any arm are not wanted
        assert!(!st.wants(1));
        assert_eq!(video(&mut st, 1, 0, true, c.t(0)), Video::Drop(None));
        st.arm_live(1, "publish".into());
        assert!(st.wants(1) && !st.is_program(1));
        // mid-GOP: delta frames are dropped, nothing cuts
        assert_eq!(
            video(&mut st, 1, 1_000, false, c.t(1_000)),
            Video::Drop(None)
        );
        assert_eq!(st.on_air(c.t(1_000)).0, Source::Fallback);
        // the next IDR, 2 s later, cuts at its own PTS
        assert_eq!(
            video(&mut st, 1, 2_000, true, c.t(2_000)),
            live_cut(1, 2_000, "publish")
        );
        assert_eq!(
            st.on_air(c.t(2_500)),
            (Source::Live, Some(1), Duration::from_millis(500))
        );
        assert_eq!(st.reason(), "publish");
        // then every frame is pushed, deltas too
        assert_eq!(
            video(&mut st, 1, 2_033, false, c.t(2_033)),
            Video::Push(None)
        );
    }

    #[test]
    fn an_audio_buffer_never_makes_the_cut() {
        let (mut st, c) = start();
        st.arm_live(1, "publish".into());
        // audio of an armed session is not pushed: it is not the program yet
        assert!(!st.live_audio(1, ms(0), Some(ms(21))));
        assert_eq!(st.on_air(c.t(100)).0, Source::Fallback);
        assert_eq!(
            video(&mut st, 1, 100, true, c.t(100)),
            live_cut(1, 100, "publish")
        );
        assert!(st.live_audio(1, ms(100), Some(ms(21))));
    }

    #[test]
    fn the_fallback_cut_comes_right_after_the_last_live_frame() {
        let (mut st, c) = start();
        st.arm_live(1, "publish".into());
        video(&mut st, 1, 0, true, c.t(0));
        video(&mut st, 1, 33, false, c.t(33));
        // the stall is noticed 3 s later: the cut goes back to the end of the last frame
        let cut = st.cut_to_fallback("stall".into(), ms(3_033), c.t(3_033));
        assert_eq!(
            cut,
            Some(Cut {
                from: Source::Live,
                to: Source::Fallback,
                at: ms(33) + FRAME,
                reason: "stall".into(),
                session: None,
            })
        );
        assert_eq!(
            st.on_air(c.t(3_033)),
            (Source::Fallback, None, Duration::ZERO)
        );
        // already on the fallback: no second cut
        assert_eq!(
            st.cut_to_fallback("again".into(), ms(4_000), c.t(4_000)),
            None
        );
        assert_eq!(st.reason(), "stall");
    }

    #[test]
    fn a_fallback_cut_never_lands_after_the_current_running_time() {
        let (mut st, c) = start();
        st.arm_live(1, "publish".into());
        video(&mut st, 1, 5_000, true, c.t(0));
        // a frame stamped in the future ends after now: the cut is now, not later
        let cut = st
            .cut_to_fallback("operator".into(), ms(4_000), c.t(10))
            .unwrap();
        assert_eq!(cut.at, ms(4_000));
    }

    #[test]
    fn a_fallback_cancels_a_pending_switch_to_live() {
        let (mut st, c) = start();
        st.arm_live(1, "publish".into());
        assert_eq!(st.cut_to_fallback("operator".into(), ms(50), c.t(50)), None);
        assert!(!st.wants(1));
        assert_eq!(video(&mut st, 1, 100, true, c.t(100)), Video::Drop(None));
        assert_eq!(st.on_air(c.t(100)).0, Source::Fallback);
    }

    #[test]
    fn the_session_on_air_keeps_feeding_until_the_newcomers_keyframe() {
        let (mut st, c) = start();
        st.arm_live(1, "publish".into());
        video(&mut st, 1, 0, true, c.t(0));
        st.arm_live(2, "operator".into());
        // session 1 stays on air through session 2's GOP
        assert_eq!(video(&mut st, 1, 33, false, c.t(33)), Video::Push(None));
        assert_eq!(video(&mut st, 2, 40, false, c.t(40)), Video::Drop(None));
        assert!(st.live_audio(1, ms(33), Some(ms(21))));
        assert!(!st.live_audio(2, ms(40), Some(ms(21))));
        assert_eq!(
            video(&mut st, 2, 2_000, true, c.t(2_000)),
            Video::Push(Some(Cut {
                from: Source::Live,
                to: Source::Live,
                at: ms(2_000),
                reason: "operator".into(),
                session: Some(2),
            }))
        );
        // now session 1 is dropped
        assert_eq!(
            video(&mut st, 1, 2_033, false, c.t(2_033)),
            Video::Drop(None)
        );
        assert!(!st.live_audio(1, ms(2_033), Some(ms(21))));
    }

    #[test]
    fn a_newcomer_that_never_sends_a_keyframe_never_blacks_out_the_session_on_air() {
        let (mut st, c) = start();
        st.arm_live(1, "publish".into());
        video(&mut st, 1, 0, true, c.t(0));
        st.arm_live(2, "operator".into());
        for i in 1..300 {
            assert_eq!(
                video(&mut st, 2, i * 33, false, c.t(i * 33)),
                Video::Drop(None)
            );
            assert_eq!(
                video(&mut st, 1, i * 33, false, c.t(i * 33)),
                Video::Push(None)
            );
        }
        assert_eq!(st.on_air(c.t(10_000)).1, Some(1));
        // it leaves: nothing pending any more
        st.session_ended(2);
        assert!(!st.wants(2));
    }

    #[test]
    fn rearming_the_session_on_air_is_a_no_op() {
        let (mut st, c) = start();
        st.arm_live(1, "publish".into());
        video(&mut st, 1, 0, true, c.t(0));
        st.arm_live(2, "operator".into());
        st.arm_live(1, "resume".into()); // cancels the pending switch to 2
        assert!(!st.wants(2));
        assert_eq!(
            video(&mut st, 1, 2_000, true, c.t(2_000)),
            Video::Push(None)
        );
        assert_eq!(st.reason(), "publish");
    }

    #[test]
    fn a_stalled_session_held_on_the_program_returns_on_its_keyframe() {
        // the stall cut the fallback in; the session still feeds the live input (held), and the
        // policy's resume arms it again
        let (mut st, c) = start();
        st.arm_live(1, "publish".into());
        video(&mut st, 1, 0, true, c.t(0));
        st.cut_to_fallback("stall".into(), ms(3_000), c.t(3_000));
        assert!(st.is_program(1));
        st.arm_live(1, "resume".into());
        assert_eq!(
            video(&mut st, 1, 6_000, false, c.t(6_000)),
            Video::Push(None)
        );
        assert_eq!(st.on_air(c.t(6_000)).0, Source::Fallback);
        assert_eq!(
            video(&mut st, 1, 6_033, true, c.t(6_033)),
            live_cut(1, 6_033, "resume")
        );
    }

    #[test]
    fn a_resume_keyframe_stamped_back_in_time_still_makes_the_cut() {
        // (found by review: the cut was decided, the frame dropped, and the cut never made)
        let (mut st, c) = start();
        st.arm_live(1, "publish".into());
        video(&mut st, 1, 0, true, c.t(0));
        video(&mut st, 1, 33, false, c.t(33));
        st.cut_to_fallback("stall".into(), ms(3_000), c.t(3_000));
        st.arm_live(1, "resume".into());
        // the publisher's first keyframe after the stall repeats an old timestamp
        let Video::Drop(Some(cut)) = video(&mut st, 1, 0, true, c.t(6_000)) else {
            panic!("the cut to live was lost")
        };
        assert_eq!((cut.to, cut.reason.as_str()), (Source::Live, "resume"));
        assert_eq!(st.on_air(c.t(6_000)).0, Source::Live);
        assert_eq!(video(&mut st, 1, 66, false, c.t(6_033)), Video::Push(None));
    }

    #[test]
    fn frames_going_back_in_time_are_dropped() {
        let (mut st, c) = start();
        st.arm_live(1, "publish".into());
        video(&mut st, 1, 1_000, true, c.t(0));
        video(&mut st, 1, 1_033, false, c.t(33));
        // a whole frame back: dropped; a re-stamped duplicate a few ms off: kept
        assert_eq!(video(&mut st, 1, 1_000, false, c.t(66)), Video::Drop(None));
        assert_eq!(video(&mut st, 1, 1_040, false, c.t(66)), Video::Push(None));
        assert!(st.live_audio(1, ms(1_000), Some(ms(21))));
        // 3 ms of overlap is rounding; 10 ms is a step back
        assert!(st.live_audio(1, ms(1_018), Some(ms(21))));
        assert!(!st.live_audio(1, ms(1_029), Some(ms(21))));
    }

    #[test]
    fn a_session_that_ends_stops_feeding_and_its_successor_resets_the_timeline() {
        let (mut st, c) = start();
        st.arm_live(1, "publish".into());
        video(&mut st, 1, 60_000, true, c.t(0));
        st.session_ended(1);
        assert!(!st.is_program(1));
        assert_eq!(video(&mut st, 1, 60_033, false, c.t(33)), Video::Drop(None));
        // a new session whose clock starts lower is not "back in time": its first IDR resets
        st.arm_live(2, "publish".into());
        assert_eq!(
            video(&mut st, 2, 1_000, true, c.t(100)),
            Video::Push(Some(Cut {
                from: Source::Live,
                to: Source::Live,
                at: ms(1_000),
                reason: "publish".into(),
                session: Some(2),
            }))
        );
        assert!(st.live_audio(2, ms(1_000), Some(ms(21))));
    }
}
