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
/// a second for 1 s of 360p): call it off the async runtime and off streaming threads. Returns
/// its FLV tags in file order: the AVC and AAC sequence headers first, timestamps from 0 ms.
/// Errors: an element is missing, the pipeline fails, or it does not finish within 20 s.
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
    let tail = Tail::build(&pipeline, format, frames)?;
    let silence = silence(format, u64::from(frames) * 1000 / u64::from(fps))?;
    pipeline
        .add_many([src.upcast_ref::<gst::Element>(), &silence])
        .map_err(build)?;
    src.link(&tail.video_in).map_err(build)?;
    silence.link(&tail.audio_in).map_err(build)?;
    let step = format.video.frame_duration();
    tail.run(&pipeline, "still", || {
        for i in 0..u64::from(frames) {
            let mut b = frame.copy();
            if let Some(b) = b.get_mut() {
                b.set_pts(step * i);
                b.set_duration(step);
            }
            src.push_buffer(b).map_err(|e| e.to_string())?;
        }
        let _ = src.end_of_stream();
        Ok(())
    })
}

/// The longest part of a video that [`encode_clip`] encodes (the fallback loops that part).
pub const MAX_CLIP_S: u64 = 60;

/// Encodes the video file at `path` (its first [`MAX_CLIP_S`] seconds at most; `duration_ms`
/// as [`crate::media::fallback::probe`] gave it) at `format`: scaled into its size
/// (letterboxed), at its frame rate, an IDR every `gop_s` seconds and at the start, with the
/// file's sound (or silence when it has none) as AAC at its rate and channels. Blocks while it
/// encodes (faster than real time: about 0.1 s per second of 360p here). Returns its FLV tags,
/// sequence headers first. Errors: the file cannot be decoded, an element is missing, or it
/// does not finish within 120 s.
pub fn encode_clip(
    path: &std::path::Path,
    has_audio: bool,
    duration_ms: u64,
    format: &GopFormat,
    gop_s: u32,
) -> Result<Vec<Tag>, MediaError> {
    let fps = format.video.fps.max(1);
    let pipeline = gst::Pipeline::with_name("clip-gop");
    let build = |e: gst::glib::BoolError| MediaError::Build(e.to_string());
    let tail = Tail::build(&pipeline, format, fps * gop_s.max(1))?;
    let dec = make("uridecodebin", "dec")?;
    let abs = std::fs::canonicalize(path).map_err(|e| MediaError::FallbackMedia {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let uri = gst::glib::filename_to_uri(&abs, None).map_err(|e| MediaError::FallbackMedia {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    dec.set_property("uri", uri.as_str());
    let convert = make("videoconvert", "v_convert")?;
    let scale = make("videoscale", "v_scale")?;
    scale.set_property("add-borders", true);
    let rate = make("videorate", "v_rate")?;
    let raw = make("capsfilter", "v_raw")?;
    raw.set_property("caps", format.video.video_caps());
    pipeline
        .add_many([&dec, &convert, &scale, &rate, &raw])
        .map_err(build)?;
    gst::Element::link_many([&convert, &scale, &rate, &raw]).map_err(build)?;
    raw.link(&tail.video_in).map_err(build)?;
    let audio_head = if has_audio {
        let resample = make("audioresample", "a_resample")?;
        pipeline.add(&resample).map_err(build)?;
        resample.link(&tail.audio_in).map_err(build)?;
        Some(resample)
    } else {
        let silence = silence(format, duration_ms.min(MAX_CLIP_S * 1000))?;
        pipeline.add(&silence).map_err(build)?;
        silence.link(&tail.audio_in).map_err(build)?;
        None
    };
    let (video_head, weak) = (convert.clone(), pipeline.downgrade());
    dec.connect_pad_added(move |_, pad| {
        let Some(_pipeline) = weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let name = caps
            .structure(0)
            .map(|s| s.name().to_string())
            .unwrap_or_default();
        let head = if name.starts_with("video/") {
            Some(&video_head)
        } else if name.starts_with("audio/") {
            audio_head.as_ref()
        } else {
            None
        };
        if let Some(sink) = head.and_then(|h| h.static_pad("sink"))
            && !sink.is_linked()
        {
            let _ = pad.link(&sink);
        }
    });
    // the first MAX_CLIP_S seconds: a seek with a stop position once prerolled
    pipeline
        .set_state(gst::State::Paused)
        .map_err(|e| MediaError::FallbackMedia {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    let (res, _, _) = pipeline.state(gst::ClockTime::from_seconds(20));
    res.map_err(|e| MediaError::FallbackMedia {
        path: path.display().to_string(),
        message: format!("preroll: {e}"),
    })?;
    if duration_ms > MAX_CLIP_S * 1000 {
        let _ = pipeline.seek(
            1.0,
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::SeekType::Set,
            gst::ClockTime::ZERO,
            gst::SeekType::Set,
            gst::ClockTime::from_seconds(MAX_CLIP_S),
        );
    }
    tail.run(&pipeline, "clip", || Ok(()))
}

/// `tags` without the coded frames whose timestamp does not move past their track's last one:
/// the AAC encoder's last (flushed) frame of a resampled clip came out on the same millisecond
/// as the one before it, which a viewer's decoder takes as time going back once looped.
fn increasing(tags: Vec<Tag>) -> Vec<Tag> {
    let mut last: [Option<u32>; 2] = [None, None];
    tags.into_iter()
        .filter(|t| {
            if flv::is_sequence_header(t.tag_type, &t.body) {
                return true;
            }
            let track = &mut last[usize::from(t.tag_type == TAG_AUDIO)];
            if track.is_some_and(|l| t.ts <= l) {
                return false;
            }
            *track = Some(t.ts);
            true
        })
        .collect()
}

/// `audiotestsrc` silence lasting `ms`, in 1024-sample buffers at `format`'s rate.
fn silence(format: &GopFormat, ms: u64) -> Result<gst::Element, MediaError> {
    let silence = make("audiotestsrc", "silence")?;
    silence.set_property_from_str("wave", "silence");
    silence.set_property("samplesperbuffer", 1024i32);
    let samples = u64::from(format.audio_rate) * ms / 1000;
    silence.set_property("num-buffers", samples.div_ceil(1024).max(1) as i32);
    Ok(silence)
}

/// The encoders and the muxer every fallback GOP goes through: raw video into `video_in`
/// (x264 with the fallback's SPS id, no B-frames, an IDR every `gop_frames`), raw audio into
/// `audio_in` (converted to `format`'s rate and channels, AAC-LC), FLV collected in memory.
struct Tail {
    video_in: gst::Element,
    audio_in: gst::Element,
    collected: std::sync::Arc<parking_lot::Mutex<Vec<u8>>>,
}

impl Tail {
    fn build(
        pipeline: &gst::Pipeline,
        format: &GopFormat,
        gop_frames: u32,
    ) -> Result<Tail, MediaError> {
        let build = |e: gst::glib::BoolError| MediaError::Build(e.to_string());
        let x264 = make("x264enc", "x264")?;
        x264.set_property("bitrate", format.video_kbps);
        x264.set_property_from_str("speed-preset", "veryfast");
        x264.set_property("key-int-max", gop_frames);
        x264.set_property("bframes", 0u32);
        x264.set_property(
            "option-string",
            format!("sps-id={FALLBACK_SPS_ID}:scenecut=0:min-keyint={gop_frames}:force-cfr=1"),
        );
        let h264 = make("capsfilter", "h264")?;
        h264.set_property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .build(),
        );
        let convert = make("audioconvert", "convert")?;
        let raw_audio = make("capsfilter", "raw_audio")?;
        raw_audio.set_property(
            "caps",
            gst::Caps::builder("audio/x-raw")
                .field("rate", format.audio_rate as i32)
                .field("channels", format.audio_channels as i32)
                .build(),
        );
        let aac = make("avenc_aac", "aac")?;
        let mux = make("flvmux", "mux")?;
        mux.set_property("streamable", true);
        let sink = gst::prelude::Cast::downcast::<gst_app::AppSink>(make("appsink", "out")?)
            .map_err(|_| MediaError::Build("appsink is not an AppSink".into()))?;
        sink.set_property("sync", false);
        let sink_el = sink.upcast_ref::<gst::Element>();
        pipeline
            .add_many([&x264, &h264, &convert, &raw_audio, &aac, &mux, sink_el])
            .map_err(build)?;
        gst::Element::link_many([&x264, &h264, &mux, sink_el]).map_err(build)?;
        gst::Element::link_many([&convert, &raw_audio, &aac, &mux]).map_err(build)?;
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
        Ok(Tail {
            video_in: x264,
            audio_in: convert,
            collected,
        })
    }

    /// Plays `pipeline`, runs `feed`, waits for the end of stream (at most 120 s) and returns
    /// the FLV tags. `what` names the source in errors.
    fn run(
        self,
        pipeline: &gst::Pipeline,
        what: &str,
        feed: impl FnOnce() -> Result<(), String>,
    ) -> Result<Vec<Tag>, MediaError> {
        let start = |step: &str, e: &dyn std::fmt::Display| MediaError::Start {
            what: format!("the fallback GOP's {step} ({what})"),
            message: e.to_string(),
        };
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| start("pipeline", &e))?;
        let fed = feed();
        let bus = pipeline.bus().ok_or_else(|| start("bus", &"none"))?;
        let ended = match fed {
            Ok(()) => bus.timed_pop_filtered(
                gst::ClockTime::from_seconds(120),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            ),
            Err(e) => {
                let _ = pipeline.set_state(gst::State::Null);
                return Err(start("input", &e));
            }
        };
        let _ = pipeline.set_state(gst::State::Null);
        match ended.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => {}
            Some(gst::MessageView::Error(e)) => return Err(start("encode", &e.error())),
            _ => return Err(start("encode", &"not finished within 120 s")),
        }
        let bytes = self.collected.lock();
        Ok(increasing(flv::tags(&bytes)))
    }
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

    /// The AVC record and the AudioSpecificConfig of a GOP's sequence headers.
    fn sequence_headers(tags: &[Tag]) -> (super::super::splice::AvcConfig, Vec<u8>) {
        let header = |kind: u8| {
            tags.iter()
                .find(|t| t.tag_type == kind && t.body.get(1) == Some(&0))
                .expect("a sequence header")
        };
        let cfg = super::super::splice::AvcConfig::parse(&header(TAG_VIDEO).body).expect("AVC");
        let asc = super::super::splice::aac_config(&header(TAG_AUDIO).body)
            .expect("AAC")
            .to_vec();
        (cfg, asc)
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
        let (cfg, asc) = sequence_headers(&gop);
        assert_eq!(
            (cfg.width, cfg.height, cfg.sps_id),
            (1280, 720, FALLBACK_SPS_ID)
        );
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

    /// A looping-video fallback: a 3 s 320x240 clip with 44.1 kHz mono sound becomes 320x180
    /// (letterboxed) at 30 fps with the fallback's SPS id, an IDR every second, AAC at 48 kHz
    /// stereo; two laps of it, one after the other, decode with zero errors.
    #[test]
    fn a_video_encodes_at_the_connections_parameters_and_loops_clean() {
        crate::media::init().expect("gstreamer");
        let dir = tempfile::tempdir().expect("tempdir");
        let clip = dir.path().join("clip.mp4");
        let made = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=3"])
            .args(["-f", "lavfi", "-i", "sine=f=300:r=44100:d=3"])
            .args([
                "-ac", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
            ])
            .arg(&clip)
            .status()
            .expect("ffmpeg");
        assert!(made.success());
        let format = GopFormat {
            video: OutputFormat {
                width: 320,
                height: 180,
                fps: 30,
            },
            audio_rate: 48_000,
            audio_channels: 2,
            video_kbps: 300,
        };
        let tags = encode_clip(&clip, true, 3000, &format, 1).expect("encoded");
        let (cfg, asc) = sequence_headers(&tags);
        assert_eq!(
            (cfg.width, cfg.height, cfg.sps_id),
            (320, 180, FALLBACK_SPS_ID)
        );
        assert_eq!(asc[..2], [0x11, 0x90], "AAC-LC 48 kHz stereo");
        let coded: Vec<&Tag> = tags
            .iter()
            .filter(|t| t.tag_type == TAG_VIDEO && t.body.get(1) == Some(&1))
            .collect();
        assert!(
            (88..=92).contains(&coded.len()),
            "3 s at 30 fps: {}",
            coded.len()
        );
        assert_eq!(
            coded.iter().filter(|t| t.body[0] == 0x17).count(),
            3,
            "an IDR a second"
        );
        let n = tags.len();
        let mut looped = FallbackLoop::new(tags, 30, 48_000).expect("video");
        let two_laps: Vec<Tag> = (0..2 * n - 2).map(|_| looped.next_tag()).collect();
        super::super::splice::decode_tests::assert_decodes_clean(&two_laps);
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
