//! The copy path's fallback for a still (the slate or an image): one GOP encoded once, at the
//! live track's size and frame rate, with its own SPS id (x264's `sps-id`, so the viewer's
//! decoder keeps the publisher's parameter sets beside it, see [`super::splice`]), and silent AAC
//! at the live track's rate and channels. The result is a list of FLV tags the copy path loops,
//! re-stamped, for as long as the fallback is on air: an idle channel encodes nothing.
//! (Issue 27, second part: not yet wired to a channel.)

use gst::prelude::*;

use crate::media::flv::{self, TAG_AUDIO, TAG_VIDEO, Tag};
use crate::media::{MediaError, OutputFormat, make};

/// The SPS and PPS id the copy path's fallback uses: publishers (x264, NVENC, OBS) use 0.
pub const FALLBACK_SPS_ID: u32 = 1;

/// What the fallback GOP must match: the live track's picture and sound.
#[derive(Debug, Clone, Copy)]
pub struct GopFormat {
    pub video: OutputFormat,
    /// Hz, e.g. 44 100 or 48 000.
    pub audio_rate: u32,
    pub audio_channels: u32,
    /// kbit/s of the still's video (a still needs little: 500 is plenty at 1080p).
    pub video_kbps: u32,
}

/// Encodes `frame` (raw I420 at `format.video`'s size) as one GOP of `seconds` (at least 1 s,
/// whole frames) with silence of the same length. Blocks while it encodes (about a quarter of
/// a second for 1 s of 360p): call it off the async runtime and off streaming threads. Returns its FLV tags in file order: the AVC and
/// AAC sequence headers first, timestamps from 0 ms. Errors: an element is missing, the
/// pipeline fails, or it does not finish within 20 s.
pub fn encode_still(
    frame: &gst::Buffer,
    format: &GopFormat,
    seconds: u32,
) -> Result<Vec<Tag>, MediaError> {
    let fps = format.video.fps.max(1);
    let frames = fps * seconds.max(1);
    let pipeline = gst::Pipeline::with_name("still-gop");
    let build = |e: gst::glib::BoolError| MediaError::Build(e.to_string());
    let src = gst::prelude::Cast::downcast::<gst_app::AppSrc>(make("appsrc", "still")?)
        .map_err(|_| MediaError::Build("appsrc is not an AppSrc".into()))?;
    src.set_caps(Some(&format.video.video_caps()));
    src.set_format(gst::Format::Time);
    let x264 = make("x264enc", "x264")?;
    x264.set_property("bitrate", format.video_kbps);
    x264.set_property_from_str("speed-preset", "veryfast");
    x264.set_property("key-int-max", frames);
    x264.set_property("bframes", 0u32);
    x264.set_property(
        "option-string",
        format!("sps-id={FALLBACK_SPS_ID}:scenecut=0:min-keyint={frames}:force-cfr=1"),
    );
    let h264 = make("capsfilter", "h264")?;
    h264.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .build(),
    );
    let silence = make("audiotestsrc", "silence")?;
    silence.set_property_from_str("wave", "silence");
    silence.set_property("samplesperbuffer", 1024i32);
    let samples = u64::from(format.audio_rate) * u64::from(frames) / u64::from(fps);
    silence.set_property("num-buffers", samples.div_ceil(1024) as i32);
    let raw_audio = make("capsfilter", "raw_audio")?;
    raw_audio.set_property(
        "caps",
        gst::Caps::builder("audio/x-raw")
            .field("rate", format.audio_rate as i32)
            .field("channels", format.audio_channels as i32)
            .build(),
    );
    let convert = make("audioconvert", "convert")?;
    let aac = make("avenc_aac", "aac")?;
    let mux = make("flvmux", "mux")?;
    mux.set_property("streamable", true);
    let sink = gst::prelude::Cast::downcast::<gst_app::AppSink>(make("appsink", "out")?)
        .map_err(|_| MediaError::Build("appsink is not an AppSink".into()))?;
    sink.set_property("sync", false);
    let src_el = src.upcast_ref::<gst::Element>();
    let sink_el = sink.upcast_ref::<gst::Element>();
    pipeline
        .add_many([
            src_el, &x264, &h264, &silence, &convert, &raw_audio, &aac, &mux, sink_el,
        ])
        .map_err(build)?;
    gst::Element::link_many([src_el, &x264, &h264, &mux, sink_el]).map_err(build)?;
    gst::Element::link_many([&silence, &convert, &raw_audio, &aac, &mux]).map_err(build)?;

    let collected = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<u8>::new()));
    let into = collected.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                    into.lock().extend_from_slice(map.as_slice());
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let start = |what: &str, e: &dyn std::fmt::Display| MediaError::Start {
        what: format!("the fallback GOP's {what}"),
        message: e.to_string(),
    };
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| start("pipeline", &e))?;
    let step = format.video.frame_duration();
    for i in 0..u64::from(frames) {
        let mut b = frame.copy();
        if let Some(b) = b.get_mut() {
            b.set_pts(step * i);
            b.set_duration(step);
        }
        src.push_buffer(b).map_err(|e| start("input", &e))?;
    }
    let _ = src.end_of_stream();
    let bus = pipeline.bus().ok_or_else(|| start("bus", &"none"))?;
    let ended = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(20),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = pipeline.set_state(gst::State::Null);
    match ended.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => return Err(start("encode", &e.error())),
        _ => return Err(start("encode", &"not finished within 20 s")),
    }
    let bytes = collected.lock();
    Ok(flv::tags(&bytes))
}

/// A fallback clip (a still GOP, or a looping video's tags) played round and round on a clock
/// that never goes back: each lap starts where the last one ended, its longer track's last
/// frame included (an AAC frame is 1024 samples, a video frame one frame), so neither track
/// overlaps itself at the seam. Sequence headers are given once, at the first lap.
#[derive(Debug, Clone)]
pub struct FallbackLoop {
    tags: Vec<Tag>,
    /// One lap, ms.
    period: u32,
    lap: u32,
    at: usize,
}

impl FallbackLoop {
    /// `tags` as [`encode_still`] gives them (timestamps from 0), at `fps` frames per second
    /// and `audio_rate` Hz. `None` when there is no coded video (nothing to loop on).
    pub fn new(tags: Vec<Tag>, fps: u32, audio_rate: u32) -> Option<FallbackLoop> {
        let coded = |t: &Tag| t.body.len() > 1 && t.body[1] == 1;
        let end = |track: u8, dur: u32| {
            tags.iter()
                .filter(|t| t.tag_type == track && coded(t))
                .map(|t| t.ts + dur)
                .max()
        };
        let frame_ms = 1000u32.div_ceil(fps.max(1));
        let aac_ms = (1024 * 1000u32).div_ceil(audio_rate.max(1));
        let video = end(TAG_VIDEO, frame_ms)?;
        let period = video.max(end(TAG_AUDIO, aac_ms).unwrap_or(0));
        Some(FallbackLoop {
            tags,
            period,
            lap: 0,
            at: 0,
        })
    }

    /// One lap, ms.
    pub fn period_ms(&self) -> u32 {
        self.period
    }

    /// Starts the next lap now, from the clip's first tag (its IDR): for a cut to the fallback
    /// that must not wait for the rest of the lap. The clock still never goes back: the new
    /// lap's times follow the whole of the current one.
    pub fn restart(&mut self) {
        if self.at > 0 {
            self.at = 0;
            self.lap += 1;
        }
    }

    /// The next tag, stamped on the loop's own clock (lap × period + its time in the clip).
    /// Sequence headers come only in the first lap.
    pub fn next_tag(&mut self) -> Tag {
        loop {
            if self.at == self.tags.len() {
                self.at = 0;
                self.lap += 1;
            }
            let t = &self.tags[self.at];
            self.at += 1;
            if self.lap > 0 && flv::is_sequence_header(t.tag_type, &t.body) {
                continue;
            }
            return Tag {
                tag_type: t.tag_type,
                ts: t.ts.wrapping_add(self.lap.wrapping_mul(self.period)),
                body: t.body.clone(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(tag_type: u8, ts: u32, kind: u8) -> Tag {
        Tag {
            tag_type,
            ts,
            body: vec![if tag_type == TAG_VIDEO { 0x17 } else { 0xaf }, kind, 0],
        }
    }

    #[test]
    fn the_slate_encodes_as_one_gop_at_the_live_tracks_parameters_and_decodes_clean() {
        crate::media::init().expect("gstreamer");
        let video = OutputFormat {
            width: 1280,
            height: 720,
            fps: 30,
        };
        let slate = ("Be right back".to_string(), "main".to_string());
        let frame = crate::media::fallback::still_frame(None, &video, &slate).expect("slate");
        let format = GopFormat {
            video,
            audio_rate: 48_000,
            audio_channels: 2,
            video_kbps: 500,
        };
        let gop = encode_still(&frame, &format, 2).expect("encoded");
        let header = gop
            .iter()
            .find(|t| t.tag_type == TAG_VIDEO && t.body.get(1) == Some(&0))
            .expect("a video sequence header");
        let cfg = super::super::splice::AvcConfig::parse(&header.body).expect("AVC");
        assert_eq!(
            (cfg.width, cfg.height, cfg.sps_id),
            (1280, 720, FALLBACK_SPS_ID)
        );
        let asc = gop
            .iter()
            .find(|t| t.tag_type == TAG_AUDIO && t.body.get(1) == Some(&0))
            .map(|t| {
                super::super::splice::aac_config(&t.body)
                    .expect("AAC")
                    .to_vec()
            })
            .expect("an audio sequence header");
        // AAC-LC (2), 48 kHz (index 3), stereo (2): 00010 0011 0010 …
        assert_eq!(asc[..2], [0x11, 0x90]);
        let coded: Vec<&Tag> = gop
            .iter()
            .filter(|t| t.tag_type == TAG_VIDEO && t.body.get(1) == Some(&1))
            .collect();
        assert_eq!(coded.len(), 60, "2 s at 30 fps");
        assert_eq!(
            coded.iter().filter(|t| t.body[0] == 0x17).count(),
            1,
            "one GOP"
        );
        // the GOP on its own decodes clean
        super::super::splice::decode_tests::assert_decodes_clean(&gop);
    }

    #[test]
    fn laps_follow_each_other_without_overlap_and_headers_come_once() {
        // 1 s at 30 fps: frames at 0..=966 ms; AAC at 48 kHz: 47 frames of 21.3 ms, the last
        // at 981 ms ending (rounded up) at 1003 ms, after the last video frame's end (1000 ms)
        let mut clip = vec![tag(TAG_VIDEO, 0, 0), tag(TAG_AUDIO, 0, 0)];
        for i in 0..30 {
            clip.push(tag(TAG_VIDEO, i * 1000 / 30, 1));
        }
        for i in 0..47 {
            clip.push(tag(TAG_AUDIO, i * 1024 * 1000 / 48_000, 1));
        }
        let n = clip.len();
        let mut l = FallbackLoop::new(clip, 30, 48_000).expect("video");
        assert_eq!(l.period_ms(), 981 + 22);
        let first: Vec<Tag> = (0..n).map(|_| l.next_tag()).collect();
        let second: Vec<Tag> = (0..n - 2).map(|_| l.next_tag()).collect();
        assert!(second.iter().all(|t| t.body[1] == 1), "a header came again");
        for track in [TAG_VIDEO, TAG_AUDIO] {
            let last = first
                .iter()
                .filter(|t| t.tag_type == track)
                .map(|t| t.ts)
                .max();
            let next = second.iter().find(|t| t.tag_type == track).map(|t| t.ts);
            assert!(next > last, "track {track} went back at the seam");
        }
        assert_eq!(second[0].ts, 1003);
        assert!(FallbackLoop::new(vec![tag(TAG_AUDIO, 0, 1)], 30, 48_000).is_none());
    }
}
