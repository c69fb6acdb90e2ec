//! The copy path (`output.mode = "copy"`): the on-air publisher's own H.264/AAC packets go to
//! the channel's fan-out untouched (its IDRs with their SPS/PPS in front), and while no
//! publisher is on air a still fallback (the slate or an image), encoded once at the channel's
//! `[output]` size and frame rate with its own SPS id, loops in their place. The rules of the
//! splice are [`super::splice`]'s; this module paces the fallback on a clock, follows the
//! program's cuts, and turns tags into the fan-out's FLV buffers.
//!
//! Who decides: the program's cut state (the same policy, events and status as the encode
//! path). A cut to live arms the splicer, which takes the publisher's next video IDR; a cut to
//! the fallback restarts the fallback loop at its IDR and sends it at once. A publisher whose headers do not fit the connection is never
//! put on air ([`CopyPath::fit`]): the channel stays on its fallback, and the status and one
//! log line say why.
//!
//! Not done yet (issue 27): a misfit publisher re-encoded instead of refused, and
//! `mode = "auto"`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::fanout::FanOut;
use super::splice::{Feed, Fit, Splicer};
use super::still_gop::{FallbackLoop, GopFormat};
use crate::event::SessionId;
use crate::media::MediaError;
use crate::media::flv::{self, TAG_AUDIO, TAG_VIDEO, Tag};

/// The pacing thread sends the fallback's tags up to this far ahead of their time, so that it
/// wakes about 25 times a second instead of once per tag (~80/s): a platform buffers seconds,
/// 40 ms early is nothing to it. Measured idle: 0.037 cores with a 5 ms tick.
pub const AHEAD: Duration = Duration::from_millis(40);

/// The longest the pacing thread sleeps (while live is on air nothing is due).
const IDLE_SLEEP: Duration = Duration::from_millis(100);

/// Length of the fallback's GOP, in seconds: one IDR per lap.
const FALLBACK_GOP_S: u32 = 2;

/// The copy path's state, for the status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CopyStatus {
    /// What the platform receives: `fallback`, `live`, or `starting` (nothing sent yet).
    pub sending: &'static str,
    /// Why the last publisher was not put on air (its headers do not fit the connection).
    pub refused: Option<String>,
    /// What the connection carries: `WIDTHxHEIGHT@FPS`, the fallback's AAC rate.
    pub connection: String,
}

/// A session and its AVC and AAC sequence headers.
type Candidate = (SessionId, Option<Vec<u8>>, Option<Vec<u8>>);

struct State {
    splicer: Splicer,
    fallback: FallbackLoop,
    /// The next fallback tag and when it is due.
    next: Tag,
    due: Instant,
    /// The fallback loop's clock: `origin` is when source time `base` is due.
    origin: Instant,
    base: u32,
    /// The session whose tags feed the live side of the splicer.
    live: Option<SessionId>,
    refused: Option<String>,
    /// The headers of the session last checked by [`CopyPath::fit`], for its cut to live.
    candidate: Option<Candidate>,
    caps: Option<gst::Caps>,
    /// Sequence headers the splicer gave before the connection's first frame.
    pending_headers: Vec<gst::Buffer>,
}

impl State {
    /// The fallback loop's next tag is due now, and the ones after it on its own clock.
    fn play_from_now(&mut self) {
        let next = self.fallback.next_tag();
        let now = Instant::now();
        self.origin = now;
        self.base = next.ts;
        self.due = now;
        self.next = next;
    }
}

/// One channel's copy path. Dropping it stops its pacing thread.
pub struct CopyPath {
    channel: String,
    fanout: Arc<FanOut>,
    format: GopFormat,
    state: Mutex<State>,
    stop: Arc<AtomicBool>,
    /// Wakes the pacing thread (a cut to the fallback, a new fallback): set, then notified.
    wake: Arc<(Mutex<bool>, parking_lot::Condvar)>,
}

impl CopyPath {
    /// Starts sending the fallback `tags` ([`fallback_tags`]) to `fanout`, looped and paced on
    /// the monotonic clock. Errors: the tags hold no coded video, or the thread did not start.
    pub fn start(
        channel: &str,
        tags: Vec<Tag>,
        format: GopFormat,
        fanout: Arc<FanOut>,
    ) -> Result<Arc<CopyPath>, MediaError> {
        let mut fallback = FallbackLoop::new(tags, format.video.fps, format.audio_rate)
            .ok_or_else(|| MediaError::Build("the fallback GOP has no coded video".into()))?;
        let next = fallback.next_tag();
        let now = Instant::now();
        let path = Arc::new(CopyPath {
            channel: channel.into(),
            fanout,
            format,
            state: Mutex::new(State {
                splicer: Splicer::new(format.video.fps),
                fallback,
                due: now,
                base: next.ts,
                next,
                origin: now,
                live: None,
                refused: None,
                candidate: None,
                caps: None,
                pending_headers: Vec::new(),
            }),
            stop: Arc::new(AtomicBool::new(false)),
            wake: Arc::default(),
        });
        let weak = Arc::downgrade(&path);
        let stop = path.stop.clone();
        let wake = path.wake.clone();
        std::thread::Builder::new()
            .name(format!("copy-{channel}"))
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(path) = weak.upgrade() else { return };
                    let next = path.send_due_fallback(Instant::now() + AHEAD);
                    drop(path);
                    // until the next tag is due (less the look-ahead), or a cut wakes it
                    let wait = next
                        .map(|due| due.saturating_duration_since(Instant::now() + AHEAD))
                        .unwrap_or(IDLE_SLEEP)
                        .clamp(Duration::from_millis(1), IDLE_SLEEP);
                    let mut woken = wake.0.lock();
                    if !*woken {
                        wake.1.wait_for(&mut woken, wait);
                    }
                    *woken = false;
                }
            })
            .map_err(|e| MediaError::Build(format!("copy path thread: {e}")))?;
        tracing::info!(channel, connection = %path.connection(),
            "copy mode: the publisher's packets go out untouched; the fallback is encoded once");
        Ok(path)
    }

    /// The connection's format (the fallback is encoded at it).
    pub fn format(&self) -> GopFormat {
        self.format
    }

    /// Replaces the fallback with `tags` ([`fallback_tags`] at [`Self::format`]). While the
    /// fallback is being sent, the new one takes over at once from its IDR (its SPS/PPS, same
    /// id, go in-band in front of it). Errors: no coded video in `tags`; the old one stays.
    pub fn replace_fallback(&self, tags: Vec<Tag>) -> Result<(), MediaError> {
        let fallback = FallbackLoop::new(tags, self.format.video.fps, self.format.audio_rate)
            .ok_or_else(|| MediaError::Build("the fallback GOP has no coded video".into()))?;
        let mut st = self.state.lock();
        st.fallback = fallback;
        st.splicer.fallback_restarted();
        st.play_from_now();
        drop(st);
        self.send_due_fallback(Instant::now() + AHEAD);
        self.wake();
        Ok(())
    }

    fn connection(&self) -> String {
        let v = &self.format.video;
        format!(
            "{}x{}@{}, AAC {} Hz",
            v.width, v.height, v.fps, self.format.audio_rate
        )
    }

    /// What the copy path sends and why a publisher was refused, for the status.
    pub fn status(&self) -> CopyStatus {
        let st = self.state.lock();
        CopyStatus {
            sending: match st.splicer.on_air() {
                None => "starting",
                Some(Feed::Fallback) => "fallback",
                Some(Feed::Live) => "live",
            },
            refused: st.refused.clone(),
            connection: self.connection(),
        }
    }

    /// Whether `session`, with these sequence headers (FLV tag bodies), can go on air on this
    /// connection; the headers are kept for its cut to live. A misfit is logged once per reason
    /// and kept for the status.
    pub fn fit(&self, session: SessionId, video: Option<&[u8]>, audio: Option<&[u8]>) -> Fit {
        let mut st = self.state.lock();
        st.candidate = Some((
            session,
            video.map(<[u8]>::to_vec),
            audio.map(<[u8]>::to_vec),
        ));
        let fit = st.splicer.fit_headers(video, audio);
        match &fit {
            Fit::Fits => st.refused = None,
            Fit::Misfit(why) => {
                if st.refused.as_deref() != Some(why) {
                    tracing::warn!(channel = %self.channel, session, reason = %why,
                        connection = %self.connection(),
                        "copy mode: publisher not put on air, its stream does not fit the platform connection (the fallback stays)");
                }
                st.refused = Some(why.clone());
            }
        }
        fit
    }

    /// The program cut to `session`: it goes out from its next video IDR.
    pub fn arm_live(&self, session: SessionId) {
        let mut st = self.state.lock();
        if st.live != Some(session) {
            st.live = Some(session);
            st.splicer.live_restarted();
            if let Some((_, video, audio)) = st.candidate.take().filter(|c| c.0 == session) {
                for (kind, header) in [(TAG_VIDEO, video), (TAG_AUDIO, audio)] {
                    if let Some(h) = header {
                        let _ = st.splicer.push(Feed::Live, kind, 0, &h);
                    }
                }
            }
        }
        st.splicer.arm_live();
    }

    /// The program cut to the fallback: the fallback loop restarts at its IDR at once.
    pub fn cut_to_fallback(&self) {
        let mut st = self.state.lock();
        st.splicer.cut_to_fallback();
        st.fallback.restart();
        st.play_from_now();
        drop(st);
        self.send_due_fallback(Instant::now() + AHEAD);
        self.wake();
    }

    /// One audio or video message of `session` (its RTMP timestamp and body). Tags of a session
    /// that is not the one armed or on air are ignored.
    pub fn live_tag(&self, session: SessionId, tag_type: u8, ts: u32, body: &[u8]) {
        let mut st = self.state.lock();
        if st.live != Some(session) {
            return;
        }
        let out = st.splicer.push(Feed::Live, tag_type, ts, body);
        self.send(&mut st, out);
    }

    /// Sends the fallback tags due by `now` (none while live is on air and wanted). Returns
    /// when the next one is due (`None`: paused).
    fn send_due_fallback(&self, now: Instant) -> Option<Instant> {
        let mut st = self.state.lock();
        if st.splicer.on_air() == Some(Feed::Live) && st.splicer.wanted() == Feed::Live {
            // paused: a cut to the fallback restarts it at its IDR
            return None;
        }
        let mut out = Vec::new();
        while st.due <= now {
            let tag = std::mem::replace(
                &mut st.next,
                Tag {
                    tag_type: 0,
                    ts: 0,
                    body: Vec::new(),
                },
            );
            out.extend(
                st.splicer
                    .push(Feed::Fallback, tag.tag_type, tag.ts, &tag.body),
            );
            let next = st.fallback.next_tag();
            st.due = st.origin + Duration::from_millis(u64::from(next.ts.wrapping_sub(st.base)));
            st.next = next;
        }
        self.send(&mut st, out);
        Some(st.due)
    }

    /// Wakes the pacing thread: the fallback's schedule changed.
    fn wake(&self) {
        *self.wake.0.lock() = true;
        self.wake.1.notify_one();
    }

    /// Hands the splicer's tags to the fan-out: sequence headers become the stream headers
    /// every consumer (each platform connection, the preview) starts with.
    fn send(&self, st: &mut State, tags: Vec<Tag>) {
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        for t in tags {
            let bytes = flv::tag(t.tag_type, t.ts, &t.body);
            let mut buffer = gst::Buffer::from_slice(bytes);
            if let Some(b) = buffer.get_mut() {
                let ts = gst::ClockTime::from_mseconds(u64::from(t.ts));
                b.set_pts(ts);
                b.set_dts(ts);
            }
            if flv::is_sequence_header(t.tag_type, &t.body) {
                st.pending_headers.push(buffer);
                continue;
            }
            if st.caps.is_none() {
                let mut headers = vec![gst::Buffer::from_slice(flv::stream_header())];
                headers.append(&mut st.pending_headers);
                st.caps = Some(stream_caps(&headers));
            }
            if let Some(caps) = &st.caps {
                self.fanout
                    .push_sample(&gst::Sample::builder().buffer(&buffer).caps(caps).build());
            }
        }
    }
}

impl CopyPath {
    /// Stops sending: the pacing thread ends and live messages are ignored (the channel
    /// stopped; its fan-out is reset next).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for CopyPath {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The fallback at `format`, encoded once, as FLV tags: the slate (`slate`: headline and
/// channel name) for `None`, an image as a 2 s GOP of its one frame, a video as its first
/// [`super::still_gop::MAX_CLIP_S`] seconds with its sound. Blocks while it encodes. Returns the
/// tags and what they show (`slate`, `image PATH`, `video PATH`). Errors: the file cannot be
/// read or decoded, or the encode failed.
pub fn fallback_tags(
    media: Option<&std::path::Path>,
    slate: &(String, String),
    format: &GopFormat,
) -> Result<(Vec<Tag>, String), MediaError> {
    use crate::media::fallback::{MediaKind, probe, still_frame};
    let Some(path) = media else {
        let still = still_frame(None, &format.video, slate)?;
        let tags = super::still_gop::encode_still(&still, format, FALLBACK_GOP_S)?;
        return Ok((tags, "slate".into()));
    };
    match probe(path)? {
        MediaKind::Image => {
            let still = still_frame(Some(path), &format.video, slate)?;
            let tags = super::still_gop::encode_still(&still, format, FALLBACK_GOP_S)?;
            Ok((tags, format!("image {}", path.display())))
        }
        MediaKind::Video {
            has_audio,
            duration_ms,
        } => {
            let tags = super::still_gop::encode_clip(
                path,
                has_audio,
                duration_ms,
                format,
                FALLBACK_GOP_S,
            )?;
            Ok((tags, format!("video {}", path.display())))
        }
    }
}

/// A field of the copy path's caps: its stream carries several sets of SPS/PPS in-band (a
/// recording refuses it, see `recording.rs`).
pub const IN_BAND_PARAMETER_SETS: &str = "onair-in-band-parameter-sets";

/// `video/x-flv` caps with `headers` as their `streamheader`, as `flvmux streamable=true`
/// gives them, marked [`IN_BAND_PARAMETER_SETS`].
fn stream_caps(headers: &[gst::Buffer]) -> gst::Caps {
    use gst::prelude::*;
    let arr = gst::Array::new(headers.iter().map(|h| {
        let mut h = h.clone();
        if let Some(b) = h.get_mut() {
            b.set_flags(gst::BufferFlags::HEADER);
        }
        h.to_send_value()
    }));
    gst::Caps::builder("video/x-flv")
        .field("streamheader", arr)
        .field(IN_BAND_PARAMETER_SETS, true)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::OutputFormat;

    fn format() -> GopFormat {
        GopFormat {
            video: OutputFormat {
                width: 320,
                height: 180,
                fps: 30,
            },
            audio_rate: 48_000,
            audio_channels: 2,
            video_kbps: 200,
        }
    }

    /// Before any publisher the fan-out gets the fallback: its headers once, then tags paced
    /// at real time (about a second's worth in a second), starting with an IDR.
    #[test]
    fn the_fallback_goes_out_paced_with_headers_once() {
        crate::media::init().expect("gst");
        let f = format();
        let still = crate::media::fallback::still_frame(
            None,
            &f.video,
            &("Back soon".into(), "test".into()),
        )
        .expect("slate");
        let fanout = Arc::new(FanOut::new());
        let mut sub = fanout.subscribe("t");
        let tags =
            super::super::still_gop::encode_still(&still, &f, FALLBACK_GOP_S).expect("encode");
        let path = CopyPath::start("t", tags, f, fanout.clone()).expect("start");
        std::thread::sleep(Duration::from_millis(1000));
        let got: Vec<gst::Buffer> = std::iter::from_fn(|| sub.rx.try_recv().ok()).collect();
        let tags: Vec<Tag> = got
            .iter()
            .flat_map(|b| flv::tags(&b.map_readable().expect("map")))
            .collect();
        let header_tags: Vec<&Tag> = tags
            .iter()
            .filter(|t| flv::is_sequence_header(t.tag_type, &t.body))
            .collect();
        assert_eq!(header_tags.len(), 2, "AVC and AAC sequence headers, once");
        let video: Vec<&Tag> = tags
            .iter()
            .filter(|t| t.tag_type == TAG_VIDEO && !flv::is_sequence_header(t.tag_type, &t.body))
            .collect();
        assert!(
            video.first().is_some_and(|t| t.body[0] >> 4 == 1),
            "starts on an IDR"
        );
        // paced: about 30 frames in the second, not the whole 2 s GOP at once
        assert!(
            (25..=40).contains(&video.len()),
            "{} video frames in 1 s",
            video.len()
        );
        assert_eq!(path.status().sending, "fallback");
    }
}
