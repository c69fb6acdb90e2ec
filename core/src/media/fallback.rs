//! The fallback: what the switch shows while no live feed is on air.
//!
//! - an image (PNG, JPEG): decoded once, scaled to the output with its aspect ratio kept
//!   (letterboxed), and repeated every frame period;
//! - a video file: decoded in its own pipeline, scaled and rate-converted to the output, and
//!   looped gaplessly with segment seeks, audio included;
//! - the slate: a card with `fallback.slate_text` and the channel name, rendered once.
//!
//! Two feeder threads (video, audio) put the current source's frames on the program's running
//! time and push them into the program's fallback appsrcs, which block when 4 frames (video) or
//! ~200 ms (audio) are queued: the video switch's clock paces them. A clip's buffers keep their
//! running time inside the clip pipeline (segment seeks make it continuous across loops), so
//! `program PTS = base + clip running time`, one base for audio and video: A/V sync holds across
//! loops. Frames that are already late are skipped, so a busy machine catches up instead of
//! drifting.

use parking_lot::{Condvar, Mutex};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use gst::prelude::*;

use super::program::{MIX_LATENCY_MS, Program};
use super::{MediaError, OutputFormat, make};
use crate::config::FallbackConfig;

/// What a configured fallback media path turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaKind {
    Image,
    Video { has_audio: bool, duration_ms: u64 },
}

/// Probes a media file with GStreamer's discoverer. Errors say what is wrong with the file.
pub fn probe(path: &Path) -> Result<MediaKind, MediaError> {
    probe_details(path).map(|(kind, _, _)| kind)
}

/// [`probe`], plus the picture's width and height in pixels.
pub fn probe_details(path: &Path) -> Result<(MediaKind, u32, u32), MediaError> {
    let err = |message: String| MediaError::FallbackMedia {
        path: path.display().to_string(),
        message,
    };
    let abs = std::fs::canonicalize(path).map_err(|e| err(e.to_string()))?;
    let meta = std::fs::metadata(&abs).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let uri = gst::glib::filename_to_uri(&abs, None).map_err(|e| err(e.to_string()))?;
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(10))
        .map_err(|e| err(e.to_string()))?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|e| err(format!("cannot be decoded: {e}")))?;
    let video = info.video_streams();
    let Some(v) = video.first() else {
        return Err(err("has no video or image stream".into()));
    };
    let (width, height) = (v.width(), v.height());
    if v.is_image() {
        return Ok((MediaKind::Image, width, height));
    }
    let duration_ms = info.duration().map(|d| d.mseconds()).unwrap_or(0);
    if duration_ms < 100 {
        return Err(err(
            "video is shorter than 100 ms or of unknown length; cannot loop it".into(),
        ));
    }
    Ok((
        MediaKind::Video {
            has_audio: !info.audio_streams().is_empty(),
            duration_ms,
        },
        width,
        height,
    ))
}

/// The first frame of an image or a video, scaled into `width`x`height` (letterboxed, square
/// pixels), as packed RGB rows of `width * 3` bytes. `width` must be a multiple of 4.
pub fn first_frame_rgb(path: &Path, width: u32, height: u32) -> Result<Vec<u8>, MediaError> {
    let pipeline = gst::Pipeline::with_name("first-frame");
    let dec = make("uridecodebin", "dec")?;
    dec.set_property("uri", uri_of(path)?);
    pipeline
        .add(&dec)
        .map_err(|e| MediaError::Build(e.to_string()))?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", width as i32)
        .field("height", height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let (head, sink) = scale_chain(&pipeline, caps, "v")?;
    link_decoded(&pipeline, &dec, Some(head), None);
    let frame = render_still(&pipeline, &sink, &path.display().to_string())?;
    let map = frame
        .map_readable()
        .map_err(|e| MediaError::Build(e.to_string()))?;
    Ok(map.as_slice().to_vec())
}

/// A playing fallback source.
enum Source {
    /// One frame, repeated.
    Still { frame: gst::Buffer },
    /// A looping clip.
    Clip(Clip),
}

struct Clip {
    pipeline: gst::Pipeline,
    video: gst_app::AppSink,
    audio: Option<gst_app::AppSink>,
    /// Program running time of clip running time 0, fixed when the clip first plays.
    base: OnceLock<gst::ClockTime>,
    stop: Arc<AtomicBool>,
}

impl Drop for Clip {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

struct Shared {
    program: Arc<Program>,
    video_src: gst_app::AppSrc,
    audio_src: gst_app::AppSrc,
    current: Mutex<(Arc<Source>, String)>,
    /// Notified when `current` changes and when the feeders stop.
    changed: Condvar,
    generation: AtomicU64,
    /// End of the last video frame pushed, in ns of program running time.
    video_end_ns: AtomicU64,
    stop: AtomicBool,
}

/// The fallback feeder. Dropping it stops the feeder threads.
pub struct Fallback {
    shared: Arc<Shared>,
    slate: (String, String),
}

impl Fallback {
    /// Loads the configured media (or the slate) and starts feeding the program. A media file
    /// that is missing or unreadable is logged once and replaced by the slate.
    pub fn start(program: Arc<Program>, cfg: &FallbackConfig) -> Result<Fallback, MediaError> {
        let slate = (cfg.slate_text.clone(), cfg.channel_name.clone());
        let format = program.format();
        let (source, what) = load_or_slate(cfg.media.as_deref(), &format, &slate)?;
        let (video_src, audio_src) = program.fallback_inputs();
        for src in [&video_src, &audio_src] {
            src.set_property_from_str("leaky-type", "none");
            src.set_block(true);
        }
        audio_src.set_property("max-buffers", 10u64);
        let shared = Arc::new(Shared {
            program,
            video_src,
            audio_src,
            current: Mutex::new((Arc::new(source), what)),
            changed: Condvar::new(),
            generation: AtomicU64::new(1),
            video_end_ns: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        thread::Builder::new()
            .name("fallback-video".into())
            .spawn(move || feed_video(&s))
            .map_err(|e| MediaError::Build(e.to_string()))?;
        let s = shared.clone();
        thread::Builder::new()
            .name("fallback-audio".into())
            .spawn(move || feed_audio(&s))
            .map_err(|e| MediaError::Build(e.to_string()))?;
        Ok(Fallback { shared, slate })
    }

    /// Replaces the fallback media (`None`: the slate). Blocks while the new media loads
    /// (typically well under a second); the old one keeps playing meanwhile. A bad file gives
    /// the slate and the error. Returns what now plays.
    pub fn set_media(&self, path: Option<&Path>) -> Result<String, MediaError> {
        let format = self.shared.program.format();
        let loaded = match path {
            Some(p) => load(p, &format).map(|(s, w)| (s, w, None)),
            None => load_slate(&format, &self.slate).map(|s| (s, "slate".into(), None)),
        };
        let (source, what, error) = match loaded {
            Ok(x) => x,
            Err(e) => {
                let (s, w) = (load_slate(&format, &self.slate)?, "slate".to_string());
                (s, w, Some(e))
            }
        };
        *self.shared.current.lock() = (Arc::new(source), what.clone());
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.changed.notify_all();
        match error {
            Some(e) => Err(e),
            None => Ok(what),
        }
    }

    /// What plays now, for status: `slate`, `image PATH` or `video PATH`.
    pub fn describe(&self) -> String {
        self.shared.current.lock().1.clone()
    }
}

impl Drop for Fallback {
    fn drop(&mut self) {
        {
            // under the lock the audio feeder checks `stop` with: its wait cannot miss this
            let _current = self.shared.current.lock();
            self.shared.stop.store(true, Ordering::Relaxed);
        }
        self.shared.changed.notify_all();
    }
}

fn load_or_slate(
    media: Option<&Path>,
    format: &OutputFormat,
    slate: &(String, String),
) -> Result<(Source, String), MediaError> {
    if let Some(p) = media {
        match load(p, format) {
            Ok(x) => return Ok(x),
            Err(e) => {
                tracing::error!(error = %e, "fallback media unusable: showing the slate instead")
            }
        }
    }
    Ok((load_slate(format, slate)?, "slate".into()))
}

fn load(path: &Path, format: &OutputFormat) -> Result<(Source, String), MediaError> {
    match probe(path)? {
        MediaKind::Image => Ok((
            load_image(path, format)?,
            format!("image {}", path.display()),
        )),
        MediaKind::Video { has_audio, .. } => Ok((
            load_clip(path, format, has_audio)?,
            format!("video {}", path.display()),
        )),
    }
}

/// The one frame a still fallback shows, I420 at `format`'s size: the image at `image`, or the
/// slate (`slate`: headline and channel name) when `None`. For the copy path, which encodes it
/// once ([`crate::media::output::still_gop`]). Errors: the image cannot be read or decoded.
pub fn still_frame(
    image: Option<&Path>,
    format: &OutputFormat,
    slate: &(String, String),
) -> Result<gst::Buffer, MediaError> {
    let source = match image {
        Some(p) => load_image(p, format)?,
        None => load_slate(format, slate)?,
    };
    match source {
        Source::Still { frame } => Ok(frame),
        Source::Clip(_) => Err(MediaError::Build("a still gave a clip".into())),
    }
}

/// Runs a one-frame pipeline to PAUSED and takes its preroll buffer.
fn render_still(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
    what: &str,
) -> Result<gst::Buffer, MediaError> {
    let err = |message: String| MediaError::FallbackMedia {
        path: what.into(),
        message,
    };
    pipeline
        .set_state(gst::State::Paused)
        .map_err(|e| err(e.to_string()))?;
    let sample = sink.try_pull_preroll(gst::ClockTime::from_seconds(10));
    let _ = pipeline.set_state(gst::State::Null);
    let sample = sample.ok_or_else(|| err("no frame could be decoded".into()))?;
    let buffer = sample
        .buffer_owned()
        .ok_or_else(|| err("empty frame".into()))?;
    // keep only the pixels: timestamps are set per repetition
    let mut frame = buffer.copy();
    {
        let f = frame.make_mut();
        f.set_pts(gst::ClockTime::NONE);
        f.set_dts(gst::ClockTime::NONE);
        f.set_flags(gst::BufferFlags::empty());
    }
    Ok(frame)
}

fn scale_chain(
    pipeline: &gst::Pipeline,
    caps: gst::Caps,
    tag: &str,
) -> Result<(gst::Element, gst_app::AppSink), MediaError> {
    let convert = make("videoconvert", &format!("{tag}_convert"))?;
    let scale = make("videoscale", &format!("{tag}_scale"))?;
    scale.set_property("add-borders", true);
    let filter = make("capsfilter", &format!("{tag}_caps"))?;
    filter.set_property("caps", caps);
    let sink = make("appsink", &format!("{tag}_sink"))?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| MediaError::Build("appsink".into()))?;
    sink.set_sync(false);
    sink.set_max_buffers(2);
    pipeline
        .add_many([&convert, &scale, &filter, sink.upcast_ref()])
        .map_err(|e| MediaError::Build(e.to_string()))?;
    gst::Element::link_many([&convert, &scale, &filter, sink.upcast_ref()])
        .map_err(|e| MediaError::Build(e.to_string()))?;
    Ok((convert, sink))
}

fn uri_of(path: &Path) -> Result<String, MediaError> {
    let err = |message: String| MediaError::FallbackMedia {
        path: path.display().to_string(),
        message,
    };
    let abs = std::fs::canonicalize(path).map_err(|e| err(e.to_string()))?;
    gst::glib::filename_to_uri(&abs, None)
        .map(|u| u.to_string())
        .map_err(|e| err(e.to_string()))
}

fn load_image(path: &Path, format: &OutputFormat) -> Result<Source, MediaError> {
    let pipeline = gst::Pipeline::with_name("fallback-image");
    let dec = make("uridecodebin", "dec")?;
    dec.set_property("uri", uri_of(path)?);
    pipeline
        .add(&dec)
        .map_err(|e| MediaError::Build(e.to_string()))?;
    let (head, sink) = scale_chain(&pipeline, format.video_caps_any_rate(), "v")?;
    link_decoded(&pipeline, &dec, Some(head), None);
    let frame = render_still(&pipeline, &sink, &path.display().to_string())?;
    Ok(Source::Still { frame })
}

fn load_slate(
    format: &OutputFormat,
    (headline, channel): &(String, String),
) -> Result<Source, MediaError> {
    let pipeline = gst::Pipeline::with_name("slate");
    let bg = make("videotestsrc", "bg")?;
    bg.set_property_from_str("pattern", "solid-color");
    bg.set_property("foreground-color", 0xff16_1a24u32);
    bg.set_property("num-buffers", 1i32);
    let bg_caps = make("capsfilter", "bg_caps")?;
    bg_caps.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", format.width as i32)
            .field("height", format.height as i32)
            .build(),
    );
    let text = |name: &str,
                s: &str,
                points: u32,
                color: u32,
                ypos: f64|
     -> Result<gst::Element, MediaError> {
        let t = make("textoverlay", name)?;
        t.set_property("text", s);
        t.set_property("font-desc", format!("Sans Bold {points}"));
        t.set_property("color", color);
        t.set_property("shaded-background", false);
        t.set_property("draw-shadow", false);
        t.set_property("draw-outline", false);
        t.set_property_from_str("halignment", "center");
        t.set_property_from_str("valignment", "position");
        t.set_property("ypos", ypos);
        Ok(t)
    };
    let h = format.height;
    let title = text("title", headline, (h / 24).max(8), 0xffff_ffff, 0.43)?;
    let name = text("channel", channel, (h / 44).max(6), 0xff9a_a4b8, 0.56)?;
    pipeline
        .add_many([&bg, &bg_caps, &title, &name])
        .map_err(|e| MediaError::Build(e.to_string()))?;
    gst::Element::link_many([&bg, &bg_caps, &title, &name])
        .map_err(|e| MediaError::Build(e.to_string()))?;
    let (head, sink) = scale_chain(&pipeline, format.video_caps_any_rate(), "v")?;
    name.link(&head)
        .map_err(|e| MediaError::Build(e.to_string()))?;
    let frame = render_still(&pipeline, &sink, "slate")?;
    Ok(Source::Still { frame })
}

/// Links `uridecodebin`'s video and audio pads to the given chains, anything else to a fakesink.
fn link_decoded(
    pipeline: &gst::Pipeline,
    dec: &gst::Element,
    video: Option<gst::Element>,
    audio: Option<gst::Element>,
) {
    let weak = pipeline.downgrade();
    dec.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let media = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
            .unwrap_or_default();
        let target = if media.starts_with("video/") {
            video.as_ref()
        } else if media.starts_with("audio/") {
            audio.as_ref()
        } else {
            None
        };
        let target = match target
            .and_then(|t| t.static_pad("sink"))
            .filter(|p| !p.is_linked())
        {
            Some(p) => p,
            None => {
                let Ok(fake) = make("fakesink", &format!("discard_{}", pad.name())) else {
                    return;
                };
                fake.set_property("async", false);
                if pipeline.add(&fake).is_err() || fake.sync_state_with_parent().is_err() {
                    return;
                }
                let Some(p) = fake.static_pad("sink") else {
                    return;
                };
                p
            }
        };
        if let Err(e) = pad.link(&target) {
            tracing::warn!(pad = %pad.name(), error = %e, "fallback decode: cannot link stream");
        }
    });
}

fn load_clip(path: &Path, format: &OutputFormat, has_audio: bool) -> Result<Source, MediaError> {
    let what = path.display().to_string();
    let err = |message: String| MediaError::FallbackMedia {
        path: what.clone(),
        message,
    };
    let pipeline = gst::Pipeline::with_name("fallback-clip");
    let dec = make("uridecodebin", "dec")?;
    dec.set_property("uri", uri_of(path)?);
    pipeline
        .add(&dec)
        .map_err(|e| MediaError::Build(e.to_string()))?;

    // video: convert ! scale ! rate ! caps ! appsink
    let rate = make("videorate", "v_rate")?;
    pipeline
        .add(&rate)
        .map_err(|e| MediaError::Build(e.to_string()))?;
    let (vhead, video) = scale_chain(&pipeline, format.video_caps(), "v")?;
    // reorder: convert ! scale are inside scale_chain; put videorate in front of it
    rate.link(&vhead)
        .map_err(|e| MediaError::Build(e.to_string()))?;

    let (ahead, audio) = if has_audio {
        let conv = make("audioconvert", "a_convert")?;
        let res = make("audioresample", "a_resample")?;
        let caps = make("capsfilter", "a_caps")?;
        caps.set_property("caps", format.audio_caps());
        let sink = make("appsink", "a_sink")?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| MediaError::Build("appsink".into()))?;
        sink.set_sync(false);
        sink.set_max_buffers(4);
        pipeline
            .add_many([&conv, &res, &caps, sink.upcast_ref()])
            .map_err(|e| MediaError::Build(e.to_string()))?;
        gst::Element::link_many([&conv, &res, &caps, sink.upcast_ref()])
            .map_err(|e| MediaError::Build(e.to_string()))?;
        (Some(conv), Some(sink))
    } else {
        (None, None)
    };
    link_decoded(&pipeline, &dec, Some(rate), ahead);

    let wait = |what: &str| -> Result<(), MediaError> {
        let (res, _, _) = pipeline.state(gst::ClockTime::from_seconds(10));
        res.map(|_| ()).map_err(|e| err(format!("{what}: {e}")))
    };
    pipeline
        .set_state(gst::State::Paused)
        .map_err(|e| err(e.to_string()))?;
    wait("preroll")?;
    // A flushing segment seek: the clip then ends in SEGMENT_DONE instead of EOS, and each
    // following non-flushing segment seek continues the running time seamlessly.
    pipeline
        .seek_simple(
            gst::SeekFlags::FLUSH | gst::SeekFlags::SEGMENT,
            gst::ClockTime::ZERO,
        )
        .map_err(|e| err(format!("seek: {e}")))?;
    wait("seek")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| err(e.to_string()))?;

    let stop = Arc::new(AtomicBool::new(false));
    let bus = pipeline
        .bus()
        .ok_or_else(|| MediaError::Build("pipeline without bus".into()))?;
    let weak = pipeline.downgrade();
    let stop2 = stop.clone();
    let name = what.clone();
    thread::Builder::new()
        .name("fallback-loop".into())
        .spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Some(msg) = bus.timed_pop_filtered(
                    gst::ClockTime::from_mseconds(100),
                    &[gst::MessageType::SegmentDone, gst::MessageType::Error],
                ) else {
                    continue;
                };
                let Some(p) = weak.upgrade() else { break };
                match msg.view() {
                    gst::MessageView::SegmentDone(_) => {
                        if let Err(e) = p.seek_simple(gst::SeekFlags::SEGMENT, gst::ClockTime::ZERO) {
                            tracing::error!(media = %name, error = %e, "fallback video: loop seek failed");
                        }
                    }
                    gst::MessageView::Error(e) => {
                        tracing::error!(media = %name, error = %e.error(), "fallback video failed");
                        break;
                    }
                    _ => {}
                }
            }
        })
        .map_err(|e| MediaError::Build(e.to_string()))?;
    Ok(Source::Clip(Clip {
        pipeline,
        video,
        audio,
        base: OnceLock::new(),
        stop,
    }))
}

/// Program running time now, in ns.
fn now_ns(shared: &Shared) -> u64 {
    shared.program.running_time().map_or(0, |t| t.nseconds())
}

const LATE_NS: u64 = MIX_LATENCY_MS * 1_000_000 / 2;
const PULL_TIMEOUT: gst::ClockTime = gst::ClockTime::from_mseconds(100);

fn clip_base(shared: &Shared, clip: &Clip, frame_ns: u64) -> u64 {
    clip.base
        .get_or_init(|| {
            let t = (now_ns(shared) + frame_ns).max(shared.video_end_ns.load(Ordering::Relaxed));
            gst::ClockTime::from_nseconds(t)
        })
        .nseconds()
}

/// Running time of a sample's buffer inside its own (clip) pipeline, in ns.
fn sample_running_time(sample: &gst::Sample) -> Option<(gst::Buffer, u64)> {
    let buffer = sample.buffer_owned()?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?.clone();
    let rt = segment.to_running_time(buffer.pts()?)?;
    Some((buffer, rt.nseconds()))
}

fn push(src: &gst_app::AppSrc, mut buffer: gst::Buffer, pts_ns: u64, dur_ns: Option<u64>) -> bool {
    {
        let b = buffer.make_mut();
        b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
        b.set_dts(gst::ClockTime::NONE);
        if let Some(d) = dur_ns {
            b.set_duration(gst::ClockTime::from_nseconds(d));
        }
    }
    src.push_buffer(buffer).is_ok()
}

fn feed_video(shared: &Shared) {
    let mut next_ns = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        // the switch's rate now: it follows the encodes (raised for a 60 fps destination)
        let frame_ns = shared.program.format().frame_duration().nseconds();
        let source = shared.current.lock().0.clone();
        let now = now_ns(shared);
        match &*source {
            Source::Still { frame } => {
                if next_ns + LATE_NS < now {
                    next_ns = now + frame_ns; // skip the slots we missed
                }
                if !push(&shared.video_src, frame.clone(), next_ns, Some(frame_ns)) {
                    thread::sleep(Duration::from_millis(20));
                }
                next_ns += frame_ns;
            }
            Source::Clip(clip) => {
                let base = clip_base(shared, clip, frame_ns);
                let Some(sample) = clip.video.try_pull_sample(PULL_TIMEOUT) else {
                    continue;
                };
                let Some((buffer, rt)) = sample_running_time(&sample) else {
                    continue;
                };
                let pts = base + rt;
                if pts + LATE_NS < now || pts < next_ns {
                    continue; // late or overlapping: skip, the clip decodes faster than real time
                }
                if !push(&shared.video_src, buffer, pts, Some(frame_ns)) {
                    thread::sleep(Duration::from_millis(20));
                }
                next_ns = pts + frame_ns;
            }
        }
        shared.video_end_ns.store(next_ns, Ordering::Relaxed);
    }
}

/// Waits (without waking) while the current source has no audio, until it changes or the
/// feeders stop; returns the source then.
fn audio_source(shared: &Shared) -> Arc<Source> {
    let mut current = shared.current.lock();
    loop {
        let has_audio = matches!(&*current.0, Source::Clip(Clip { audio: Some(_), .. }));
        if has_audio || shared.stop.load(Ordering::Relaxed) {
            return current.0.clone();
        }
        // stills have no audio: the program's silence fills in
        shared.changed.wait(&mut current);
    }
}

fn feed_audio(shared: &Shared) {
    let frame_ns = shared.program.format().frame_duration().nseconds();
    let mut next_ns = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let source = audio_source(shared);
        let Source::Clip(
            clip @ Clip {
                audio: Some(sink), ..
            },
        ) = &*source
        else {
            continue; // stopping
        };
        let base = clip_base(shared, clip, frame_ns);
        let Some(sample) = sink.try_pull_sample(PULL_TIMEOUT) else {
            continue;
        };
        let Some((buffer, rt)) = sample_running_time(&sample) else {
            continue;
        };
        let pts = base + rt;
        let now = now_ns(shared);
        if pts + LATE_NS < now || pts + 5_000_000 < next_ns {
            continue;
        }
        let dur = buffer.duration().map(|d| d.nseconds());
        next_ns = pts + dur.unwrap_or(0);
        if !push(&shared.audio_src, buffer, pts, None) {
            thread::sleep(Duration::from_millis(20));
        }
    }
}
