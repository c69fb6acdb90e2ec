//! The program graph: switch → encodes → mux, one long-lived live pipeline per channel, built from
//! one bin per piece (`switch-video`, `switch-audio`, and one `encode:NAME` bin per profile).
//!
//! ```text
//! appsrc fallback_video ─┐                                     ┌ encode (the channel's [output]):
//! appsrc live_video ─────┼─ video switch ─ I420 (overlay) tee ─┤  x264enc ───────┐
//! (pace pad, no input) ──┘                                     │                 ├ flvmux ─ appsink → FanOut
//! audiotestsrc silence ──┐                                     │  queue (AAC) ───┘
//! appsrc fallback_audio ─┤                                     ├ encode:NAME (a profile): rate,
//! appsrc live_audio ─────┼─ audiomixer ─ F32 48k ─ tee ┐       │  scale, x264enc, queue (AAC), flvmux …
//! (pace pad, no input) ──┘                             │
//!                  queue ─ avenc_aac ─ tee (one per audio bitrate, feeding the encodes at it)
//! ```
//!
//! Each aggregator has one sink pad that never gets data (see [`pace_pad`]): the output leaves
//! at its deadline whether or not a publisher is on air.
//!
//! The switch and the overlay run once, at the channel's `[output]` size and at the highest frame
//! rate among its encodes (raised and lowered as encodes come and go: [`SwitchRate`]); each
//! profile a destination uses adds one encode branch, shared by every destination that uses it,
//! and added or removed while the pipeline plays without touching the others (each drops frames
//! to its own rate). The sound is encoded once per audio bitrate ([`AacEncode`]), whatever the
//! number of profiles at it.
//!
//! The video switch is `onairvideoswitch` ([`super::switch`]): GStreamer's video aggregator (the
//! compositor's base) showing one input by reference instead of blending it.
//!
//! Why an aggregator and a mixer instead of `fallbackswitch`: both are live aggregators that
//! produce one output frame per frame period on the pipeline clock, whatever their inputs do. The
//! output therefore has a constant frame rate and a continuous audio timeline by construction,
//! with no SEGMENT event per switch, no timeline hole to fill with `videorate`, and no EOS that
//! could reach the muxer. The cut is a controlled pad property (alpha, volume) with a control
//! point at an exact running time: going live cuts on the publisher's keyframe PTS, falling back
//! cuts right after the last live frame. A silent source keeps the mixer's timeline full, so a
//! publisher without audio gets silence.
//!
//! Locks: the cut state ([`super::cut::CutState`]: what is on air, what is armed), whose GStreamer calls (control points, `push_buffer`) take no lock of
//! ours; `changes`, held while a branch is added, taken out of the map or its removal finishes
//! (the rate lowered, its AAC encode let go), or the switch's rate changes (which waits up to 2 s
//! for the new rate, typically 50–100 ms), taken after [`super::output::encode::Encodes`]' own, never on
//! a streaming thread; and the maps of encode branches and AAC encodes, only ever held for a
//! look-up, an insert, a removal or a walk over them, so readers (`/metrics`) never wait for a
//! change.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use gst::prelude::*;
use gst_controller::prelude::*;

use super::cut::{Cut, CutState, Video};
use super::output::copy::CopyPath;
use super::output::fanout::FanOut;
use super::{MediaError, OutputFormat, make};
use crate::config::OutputConfig;
use crate::event::{Event, SessionId, Source, Switched};

/// How long the video switch and the mixer wait for a late input before producing a frame
/// without it.
/// Decoded live frames arrive late by the decode time plus network jitter; 200 ms covers both for
/// a healthy publisher and is the constant latency the cut adds.
pub const MIX_LATENCY_MS: u64 = 200;

/// Samples in one AAC-LC frame: the mixer's and the silence's buffer size (21.3 ms at 48 kHz).
const AAC_FRAME_SAMPLES: u32 = 1024;

/// How long flvmux waits for the later of audio and video, in ms.
pub const MUX_LATENCY_MS: u64 = 100;

/// Receives the events the media layer emits.
pub type EventSink = tokio::sync::mpsc::UnboundedSender<Event>;

/// One controlled property: a step control source bound to a pad property.
struct Control {
    cs: gst_controller::InterpolationControlSource,
}

impl Control {
    fn bind(pad: &gst::Pad, property: &str, initial: f64) -> Result<Self, MediaError> {
        let cs = gst_controller::InterpolationControlSource::new();
        cs.set_mode(gst_controller::InterpolationMode::None);
        let binding = gst_controller::DirectControlBinding::new_absolute(pad, property, &cs);
        pad.add_control_binding(&binding)
            .map_err(|e| MediaError::Build(format!("controlling {property}: {e}")))?;
        cs.set(gst::ClockTime::ZERO, initial);
        Ok(Self { cs })
    }

    /// From running time `at` on, the property takes `value`; before it, `before`.
    fn step(&self, before: f64, at: gst::ClockTime, value: f64) {
        self.cs.unset_all();
        self.cs.set(gst::ClockTime::ZERO, before);
        self.cs.set(at, value);
    }
}

/// The four controlled properties that make the cut, set together.
struct CutControls {
    live_alpha: Control,
    fallback_alpha: Control,
    live_volume: Control,
    fallback_volume: Control,
}

impl CutControls {
    fn to(&self, to: Source, at: gst::ClockTime) {
        let live = if to == Source::Live { 1.0 } else { 0.0 };
        let fallback = 1.0 - live;
        self.live_alpha.step(fallback, at, live);
        self.live_volume.step(fallback, at, live);
        self.fallback_alpha.step(live, at, fallback);
        self.fallback_volume.step(live, at, fallback);
    }
}

/// One encode branch: its bin, the tee pads that feed it (the video tee's, and the tee of the
/// AAC encode at its audio bitrate), its frame rate and audio bitrate.
struct Branch {
    bin: gst::Bin,
    fps: u32,
    video_pad: gst::Pad,
    /// The AAC encode's tee and its pad feeding this branch.
    aac: (gst::Element, gst::Pad),
    aac_kbps: u32,
    latency: Arc<EncodeLatency>,
}

/// One AAC encode, shared by every encode branch whose audio bitrate it has:
/// `queue ! audioconvert ! avenc_aac ! tee` in the program's pipeline, fed by the audio tee.
/// Two profiles at 160 kbit/s (most platform presets) encode their sound once.
struct AacEncode {
    /// Its elements, first to last (the tee last).
    elements: Vec<gst::Element>,
    /// The audio tee's pad that feeds it.
    feed: gst::Pad,
    /// Encode branches using it: linked to its tee, or unlinked with their removal not yet
    /// finished.
    users: usize,
}

/// The AAC encodes by audio bitrate (kbit/s).
type AacEncodes = Mutex<std::collections::HashMap<u32, AacEncode>>;

impl AacEncode {
    /// Builds the AAC encode at `kbps`, starts it when the pipeline runs and links it to
    /// `audio_tee`.
    fn start(
        pipeline: &gst::Pipeline,
        audio_tee: &gst::Element,
        kbps: u32,
    ) -> Result<AacEncode, MediaError> {
        // unique: a removed one at the same bitrate may still be on its way out
        let n = unique_suffix();
        // a queue: the encoder runs on its own thread, so a slow one cannot hold back the tee
        let queue = make("queue", &format!("aenc_queue.{n}"))?;
        let convert = make("audioconvert", &format!("aenc_convert.{n}"))?;
        let aac = make("avenc_aac", &format!("aac.{n}"))?;
        aac.set_property("bitrate", (kbps * 1000) as i32);
        stamp_before_priming(&aac)?;
        let tee = make("tee", &format!("aac_tee.{n}"))?;
        // an encode branch being added or removed is briefly unlinked
        tee.set_property("allow-not-linked", true);
        let elements = vec![queue, convert, aac, tee];
        let undo = |elements: &[gst::Element]| {
            for e in elements {
                let _ = e.set_state(gst::State::Null);
            }
            let _ = pipeline.remove_many(elements);
        };
        pipeline.add_many(&elements).map_err(bin_error)?;
        if let Err(e) = gst::Element::link_many(&elements) {
            undo(&elements);
            return Err(MediaError::Build(format!("linking the AAC encode: {e}")));
        }
        // playing before it is linked (see `start_branch`)
        if pipeline.current_state() > gst::State::Null {
            for e in elements.iter().rev() {
                if let Err(err) = e.sync_state_with_parent() {
                    undo(&elements);
                    return Err(MediaError::Start {
                        what: format!("the AAC encode at {kbps} kbit/s"),
                        message: err.to_string(),
                    });
                }
            }
        }
        let linked = static_pad(&elements[0], "sink")
            .and_then(|sink| link_tee(audio_tee, &sink, "the audio tee"));
        match linked {
            Ok(feed) => Ok(AacEncode {
                elements,
                feed,
                users: 0,
            }),
            Err(e) => {
                undo(&elements);
                Err(e)
            }
        }
    }

    /// Its tee, where encode branches draw the encoded sound.
    fn tee(&self) -> &gst::Element {
        &self.elements[self.elements.len() - 1]
    }

    /// Unlinks it from `audio_tee` while the tee is idle, then stops and removes it on a thread
    /// of its own (no encode branch draws from it any more).
    fn remove(self, audio_tee: &gst::Element, pipeline: &gst::Pipeline) {
        let (audio_tee, pipeline) = (audio_tee.clone(), pipeline.clone());
        let elements = self.elements;
        self.feed.add_probe(gst::PadProbeType::IDLE, move |pad, _| {
            if let Some(peer) = pad.peer() {
                let _ = pad.unlink(&peer);
            }
            let (pad, audio_tee, pipeline, elements) = (
                pad.clone(),
                audio_tee.clone(),
                pipeline.clone(),
                elements.clone(),
            );
            // not on the streaming thread, which releasing the pad would wait for
            std::thread::spawn(move || {
                audio_tee.release_request_pad(&pad);
                for e in &elements {
                    let _ = e.set_state(gst::State::Null);
                }
                let _ = pipeline.remove_many(&elements);
            });
            gst::PadProbeReturn::Remove
        });
    }
}

/// A number no other call returns: element and bin names that cannot clash with those of a
/// removed one still on its way out.
fn unique_suffix() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Requests a pad on `tee` and links it to `sink`; the pad is given back when the link fails.
/// `what` names the tee in the error.
fn link_tee(tee: &gst::Element, sink: &gst::Pad, what: &str) -> Result<gst::Pad, MediaError> {
    let pad = tee
        .request_pad_simple("src_%u")
        .ok_or_else(|| MediaError::Build(format!("no pad on {what}")))?;
    if let Err(e) = pad.link(sink) {
        tee.release_request_pad(&pad);
        return Err(MediaError::Build(format!("linking {what}: {e}")));
    }
    Ok(pad)
}

/// Lets go of one encode branch's use of the AAC encode at `kbps`: the last one removes it
/// (from the map at once, so that an encode added meanwhile starts a new one). Called with the
/// program's `changes` lock held.
fn release_aac(aacs: &AacEncodes, kbps: u32, audio_tee: &gst::Element, pipeline: &gst::Pipeline) {
    let gone = {
        let mut aacs = aacs.lock();
        match aacs.get_mut(&kbps) {
            Some(a) if a.users > 1 => {
                a.users -= 1;
                None
            }
            Some(_) => aacs.remove(&kbps),
            None => None,
        }
    };
    if let Some(a) = gone {
        a.remove(audio_tee, pipeline);
        tracing::info!(
            kbps,
            "AAC encode removed: no encode uses its bitrate any more"
        );
    }
}

/// The switch's frame rate: the highest of its encodes' (each encode drops to its own rate).
/// Raised before an encode above it is linked, lowered once the last encode that needed it is
/// unlinked, so that no encode ever gets fewer frames than its rate (it would repeat them).
struct SwitchRate {
    /// The capsfilter after the switch: its caps set the rate the switch negotiates.
    caps: gst::Element,
    /// The video tee's sink pad, where a new rate shows as new caps.
    tee_sink: gst::Pad,
    pipeline: gst::Pipeline,
    /// The channel's id, for the log.
    channel: String,
    /// Frames per second now.
    fps: AtomicU32,
    /// Size; its `fps` is the rate at build (the rate now is `fps` above: [`Program::format`]).
    format: OutputFormat,
}

/// How long a rate change may take to reach the encodes. Normally one frame period plus the
/// switch's latency (~50–100 ms); under CPU load GStreamer 1.22's videoaggregator has been seen
/// to put its next frame up to 2.6 s ahead of the running time on a rate change (its timeline
/// at 4.1 s with the running time at 1.5–2.0 s; 1 full lib test run in 4 on 2 cores) and to
/// wait for the clock to get there, so 2 s was not enough.
const RATE_CHANGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl SwitchRate {
    fn fps(&self) -> u32 {
        self.fps.load(Ordering::SeqCst)
    }

    /// The frame rate of the caps on the video tee now: the rate the encodes get.
    fn tee_rate(&self) -> Option<gst::Fraction> {
        let caps = self.tee_sink.current_caps()?;
        caps.structure(0)?.get::<gst::Fraction>("framerate").ok()
    }

    /// Sets the switch to `fps`; when `wait` and the pipeline plays, returns once frames at
    /// that rate leave the switch (one frame period plus the switch's latency, ~50–100 ms), so
    /// that an encode linked after it never sees the old rate. Errors: the new rate did not
    /// show within [`RATE_CHANGE_TIMEOUT`].
    fn set(&self, fps: u32, wait: bool) -> Result<(), MediaError> {
        let format = OutputFormat { fps, ..self.format };
        self.caps.set_property("caps", format.video_caps());
        self.fps.store(fps, Ordering::SeqCst);
        if !wait || self.pipeline.current_state() != gst::State::Playing {
            return Ok(());
        }
        let want = gst::Fraction::new(fps as i32, 1);
        let deadline = Instant::now() + RATE_CHANGE_TIMEOUT;
        while Instant::now() < deadline {
            if self.pipeline.current_state() != gst::State::Playing {
                return Ok(()); // stopping: nothing will flow at either rate
            }
            if self.tee_rate() == Some(want) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // the switch's own timeline against the pipeline's: GStreamer 1.22's videoaggregator has
        // been seen here to jump ahead on a rate change made under CPU load (position 4.1 s at
        // running time 2.0 s), and to wait for the clock to catch up before its next frame
        let mix = self
            .caps
            .static_pad("sink")
            .and_then(|p| p.peer())
            .and_then(|p| p.query_position::<gst::ClockTime>());
        let now = self.pipeline.current_running_time();
        Err(MediaError::Start {
            what: format!("the switch at {fps} fps"),
            message: format!(
                "the new frame rate did not reach the encodes within {} s (the switch's timeline \
                 is at {}, the pipeline's running time at {})",
                RATE_CHANGE_TIMEOUT.as_secs(),
                mix.map_or("?".into(), |t| t.to_string()),
                now.map_or("?".into(), |t| t.to_string())
            ),
        })
    }

    /// Lowers the switch to the highest rate among `branches` when that is below it now, and
    /// waits until the lower rate reaches the tee: called with the program's `changes` lock
    /// held, so a raise that follows cannot mistake the old rate, still on the tee, for its own.
    fn lower_to(&self, branches: &Branches) {
        let highest = branches.lock().values().map(|b| b.fps).max();
        let Some(want) = highest else {
            return;
        };
        let from = self.fps();
        if want >= from {
            return;
        }
        match self.set(want, true) {
            Ok(()) => tracing::info!(channel = %self.channel, from, fps = want,
                "the switch's frame rate lowered: no encode needs more"),
            Err(e) => tracing::warn!(channel = %self.channel, from, fps = want, error = %e,
                "the switch's frame rate lowered, not yet seen at the encodes"),
        }
    }
}

/// The time frames spend in a video encoder: each frame's arrival is stamped by running time at
/// the encoder's sink and looked up at its source. An exponential mean over about 30 frames.
#[derive(Default)]
pub struct EncodeLatency {
    pending: Mutex<std::collections::VecDeque<(gst::ClockTime, Instant)>>,
    /// f64 seconds, as bits; 0 before the first frame.
    mean: std::sync::atomic::AtomicU64,
}

impl EncodeLatency {
    /// Stamps `encoder`'s input and output.
    fn watch(self: &Arc<Self>, encoder: &gst::Element) {
        // by running time: the encoder shifts its output PTS (and segment) by 1000 hours
        fn running_time(pad: &gst::Pad, info: &gst::PadProbeInfo) -> Option<gst::ClockTime> {
            let pts = info.buffer()?.pts()?;
            let ev = pad.sticky_event::<gst::event::Segment>(0)?;
            let seg = ev.segment().downcast_ref::<gst::ClockTime>()?.clone();
            seg.to_running_time(pts)
        }
        let (inp, out) = (self.clone(), self.clone());
        if let Some(pad) = encoder.static_pad("sink") {
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let Some(pts) = running_time(pad, info) {
                    let mut q = inp.pending.lock();
                    if q.len() >= 256 {
                        q.pop_front(); // an encoder that drops frames must not grow this
                    }
                    q.push_back((pts, Instant::now()));
                }
                gst::PadProbeReturn::Ok
            });
        }
        if let Some(pad) = encoder.static_pad("src") {
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let Some(pts) = running_time(pad, info) {
                    out.done(pts);
                }
                gst::PadProbeReturn::Ok
            });
        }
    }

    fn done(&self, pts: gst::ClockTime) {
        let mut q = self.pending.lock();
        while let Some(&(p, at)) = q.front() {
            if p > pts {
                break;
            }
            q.pop_front();
            if p == pts {
                let s = at.elapsed().as_secs_f64();
                let old = f64::from_bits(self.mean.load(Ordering::Relaxed));
                let mean = if old == 0.0 {
                    s
                } else {
                    old + (s - old) / 30.0
                };
                self.mean.store(mean.to_bits(), Ordering::Relaxed);
            }
        }
    }

    /// The mean, in seconds (0 before the first frame).
    pub fn seconds(&self) -> f64 {
        f64::from_bits(self.mean.load(Ordering::Relaxed))
    }
}

/// An encode branch on its way out: once both its tee pads are unlinked (`left` counts them
/// down), [`Removal::finish`] releases them, stops the bin, lowers the switch's rate if no
/// encode needs it any more and lets go of the branch's AAC encode.
struct Removal {
    name: String,
    left: std::sync::atomic::AtomicUsize,
    /// (tee, its pad) for the video and the encoded sound.
    pads: [(gst::Element, gst::Pad); 2],
    bin: gst::Bin,
    aac_kbps: u32,
    pipeline: gst::Pipeline,
    audio_tee: gst::Element,
    branches: Arc<Branches>,
    aacs: Arc<AacEncodes>,
    rate: Arc<SwitchRate>,
    changes: Arc<Mutex<()>>,
}

impl Removal {
    fn finish(&self) {
        for (tee, pad) in &self.pads {
            tee.release_request_pad(pad);
        }
        let _ = self.bin.set_state(gst::State::Null);
        let _ = self.pipeline.remove(&self.bin);
        tracing::info!(encode = %self.name, "encode removed");
        let _changes = self.changes.lock();
        // unlinked now: nothing at the old rate is left to starve
        self.rate.lower_to(&self.branches);
        release_aac(&self.aacs, self.aac_kbps, &self.audio_tee, &self.pipeline);
    }
}

/// Encode branches by profile key.
type Branches = Mutex<std::collections::HashMap<String, Branch>>;

pub struct Program {
    pipeline: gst::Pipeline,
    video_tee: gst::Element,
    audio_tee: gst::Element,
    /// Encode branches by profile key (`""`: the channel's own encode).
    branches: Arc<Branches>,
    /// Held while an encode is added or removed or the switch's rate changes (see the module's
    /// notes on locks).
    changes: Arc<Mutex<()>>,
    /// The AAC encodes the branches draw from, by bitrate; changed under `changes` only.
    aacs: Arc<AacEncodes>,
    rate: Arc<SwitchRate>,
    live_video: gst_app::AppSrc,
    live_audio: gst_app::AppSrc,
    fallback_video: gst_app::AppSrc,
    fallback_audio: gst_app::AppSrc,
    cut: CutControls,
    state: Mutex<CutState>,
    events: EventSink,
    /// The channel's id, stamped on its events.
    channel: String,
    overlay: Arc<super::overlay::Overlay>,
    /// Whether the live source is on air, for live-only overlay layers.
    live: Arc<AtomicBool>,
    /// The copy path (`output.mode = "copy"`), following every cut.
    copy: Mutex<Option<Arc<CopyPath>>>,
}

fn appsrc(name: &str, caps: &gst::Caps, max_buffers: u64) -> Result<gst_app::AppSrc, MediaError> {
    let src = make("appsrc", name)?
        .downcast::<gst_app::AppSrc>()
        .map_err(|_| MediaError::Build("appsrc is not an AppSrc".into()))?;
    src.set_caps(Some(caps));
    src.set_format(gst::Format::Time);
    src.set_is_live(true);
    src.set_property("max-buffers", max_buffers);
    src.set_property("max-bytes", 0u64);
    src.set_property("max-time", 0u64);
    src.set_property_from_str("leaky-type", "downstream");
    // A live source must report a latency window; appsrc's default maximum of 0 makes the
    // aggregators refuse to configure latency. These sources can hold buffers for seconds.
    src.set_property("min-latency", 0i64);
    src.set_property("max-latency", 5_000_000_000i64);
    Ok(src)
}

/// One half of the switch: a live and a fallback appsrc into an aggregator (video switch or
/// audiomixer) whose pads carry the cut's controlled properties.
struct Switch {
    bin: gst::Bin,
    live: gst_app::AppSrc,
    fallback: gst_app::AppSrc,
    live_pad: gst::Pad,
    fallback_pad: gst::Pad,
    /// The switch's output pad inside the bin (the overlay's probe goes there).
    out: gst::Pad,
    /// The capsfilter that fixes the switch's output (video: its frame rate can change).
    caps: gst::Element,
}

fn bin_error(e: impl std::fmt::Display) -> MediaError {
    MediaError::Build(e.to_string())
}

/// Links `src`'s src pad to a new request pad of aggregator `agg`.
fn request(agg: &gst::Element, src: &gst::Element) -> Result<gst::Pad, MediaError> {
    let pad = agg
        .request_pad_simple("sink_%u")
        .ok_or_else(|| MediaError::Build(format!("no sink pad on {}", agg.name())))?;
    let srcpad = src
        .static_pad("src")
        .ok_or_else(|| MediaError::Build(format!("no src pad on {}", src.name())))?;
    srcpad
        .link(&pad)
        .map_err(|e| MediaError::Build(format!("linking {} → {}: {e}", src.name(), agg.name())))?;
    Ok(pad)
}

/// Adds `pad` (of an element inside `bin`) to the bin as a ghost pad named `name`.
fn ghost(bin: &gst::Bin, name: &str, pad: &gst::Pad) -> Result<(), MediaError> {
    let g = gst::GhostPad::builder_with_target(pad)
        .map_err(bin_error)?
        .name(name)
        .build();
    bin.add_pad(&g).map_err(bin_error)
}

fn static_pad(e: &gst::Element, name: &str) -> Result<gst::Pad, MediaError> {
    e.static_pad(name)
        .ok_or_else(|| MediaError::Build(format!("no {name} pad on {}", e.name())))
}

/// The video switch: fallback (zorder 0) and live (zorder 1) into an `onairvideoswitch` (a
/// compositor that shows one input by reference instead of blending; black when the visible
/// input has no frame), fixed to the output caps.
fn video_switch(format: &OutputFormat, latency: gst::ClockTime) -> Result<Switch, MediaError> {
    let vcaps = format.video_caps();
    let bin = gst::Bin::with_name("switch-video");
    let fallback = appsrc("fallback_video", &vcaps, 4)?;
    let live = appsrc("live_video", &vcaps, 60)?;
    super::switch::register().map_err(bin_error)?;
    let mix = make(super::switch::FACTORY, "mix")?;
    mix.set_property("latency", latency.nseconds());
    let caps = make("capsfilter", "mix_caps")?;
    caps.set_property("caps", &vcaps);
    bin.add_many([fallback.upcast_ref(), live.upcast_ref(), &mix, &caps])
        .map_err(bin_error)?;
    let fallback_pad = request(&mix, fallback.upcast_ref())?;
    fallback_pad.set_property("zorder", 0u32);
    let live_pad = request(&mix, live.upcast_ref())?;
    live_pad.set_property("zorder", 1u32);
    pace_pad(&mix)?;
    mix.link(&caps).map_err(bin_error)?;
    let out = static_pad(&caps, "src")?;
    ghost(&bin, "src", &out)?;
    Ok(Switch {
        bin,
        live,
        fallback,
        live_pad,
        fallback_pad,
        out,
        caps,
    })
}

/// Requests a sink pad on live aggregator `agg` that is never linked, so that it always waits
/// for its deadline (running time + its latency) before producing a frame.
///
/// Without it an aggregator produces a frame as soon as every input has one: while a publisher
/// is on air it runs early (at the live frames' arrival), and when the publisher vanishes it
/// falls back to its deadline, so the output stops for the difference at every fall back
/// (measured: 260 ms with a looping video fallback that has audio, 80 ms with the slate). Paced
/// by the deadline always, frames leave at the same offset either way; the cost is that offset
/// (the configured latency) as constant latency.
fn pace_pad(agg: &gst::Element) -> Result<gst::Pad, MediaError> {
    agg.request_pad_simple("sink_%u")
        .ok_or_else(|| MediaError::Build(format!("no pace pad on {}", agg.name())))
}

/// The audio switch: silence (so the timeline never has a hole), fallback and live into an
/// audiomixer, fixed to F32 48 kHz stereo.
fn audio_switch(format: &OutputFormat, latency: gst::ClockTime) -> Result<Switch, MediaError> {
    let acaps = format.audio_caps();
    let bin = gst::Bin::with_name("switch-audio");
    let silence = make("audiotestsrc", "silence")?;
    silence.set_property_from_str("wave", "silence");
    silence.set_property("is-live", true);
    silence.set_property("samplesperbuffer", AAC_FRAME_SAMPLES as i32);
    let silence_caps = make("capsfilter", "silence_caps")?;
    silence_caps.set_property("caps", &acaps);
    let fallback = appsrc("fallback_audio", &acaps, 50)?;
    let live = appsrc("live_audio", &acaps, 200)?;
    let amix = make("audiomixer", "amix")?;
    amix.set_property("latency", latency.nseconds());
    // One AAC frame per mixed buffer (21.3 ms, not the default 10 ms): half the buffers, wake-ups
    // and copies through the tee and the encoders, and the cut still lands within one video frame.
    amix.set_property(
        "output-buffer-duration-fraction",
        gst::Fraction::new(AAC_FRAME_SAMPLES as i32, super::AUDIO_RATE as i32),
    );
    let caps = make("capsfilter", "amix_caps")?;
    caps.set_property("caps", &acaps);
    bin.add_many([
        &silence,
        &silence_caps,
        fallback.upcast_ref(),
        live.upcast_ref(),
        &amix,
        &caps,
    ])
    .map_err(bin_error)?;
    silence.link(&silence_caps).map_err(bin_error)?;
    request(&amix, &silence_caps)?;
    let fallback_pad = request(&amix, fallback.upcast_ref())?;
    let live_pad = request(&amix, live.upcast_ref())?;
    pace_pad(&amix)?;
    amix.link(&caps).map_err(bin_error)?;
    let out = static_pad(&caps, "src")?;
    ghost(&bin, "src", &out)?;
    Ok(Switch {
        bin,
        live,
        fallback,
        live_pad,
        fallback_pad,
        out,
        caps,
    })
}

/// Video encode of one profile, from the mix's `mix` format (its size; the rate may change while
/// it runs, never below `out.fps`): frames dropped to `out.fps`, scaled when the size differs,
/// then x264, 8-bit 4:2:0 High, CBR with a one-second VBV, a keyframe exactly every
/// `keyframe_interval_s`. Adds its elements to `bin`; returns (first, last).
fn video_encode(
    bin: &gst::Bin,
    mix: &OutputFormat,
    out: &OutputConfig,
) -> Result<(gst::Element, gst::Element), MediaError> {
    let queue = make("queue", "venc_queue")?;
    // Every encode drops to its own rate (the switch runs at the highest of them, and may be
    // raised while this encode runs): drop-only keeps its latency at 0 frames (a duplicating
    // videorate holds one), skip-to-first starts its timeline at the first frame it gets, not
    // at the segment's start (which, for an encode added at run time, would be a flood of
    // copies of that frame). Before the scaler, so dropped frames are not scaled.
    let rate = make("videorate", "venc_rate")?;
    rate.set_property("drop-only", true);
    rate.set_property("skip-to-first", true);
    let mut elements = vec![queue.clone(), rate];
    if (out.width, out.height) != (mix.width, mix.height) {
        let scale = make("videoscale", "venc_scale")?;
        elements.push(scale);
    }
    let raw = make("capsfilter", "venc_raw")?;
    raw.set_property("caps", OutputFormat::from(out).video_caps());
    elements.push(raw);
    let x264 = make("x264enc", "x264")?;
    x264.set_property("bitrate", out.video_bitrate_kbps);
    x264.set_property_from_str("speed-preset", &out.x264_preset);
    x264.set_property_from_str("tune", &out.x264_tune);
    x264.set_property("threads", out.encoder_threads());
    x264.set_property("key-int-max", out.fps * out.keyframe_interval_s);
    // VBV of one second at the target rate: the CBR buffer platforms expect.
    x264.set_property("vbv-buf-capacity", 1000u32);
    // A keyframe exactly every keyframe_interval_s: no extra keyframes on scene cuts (every
    // switch is one), which platforms flag as an irregular GOP.
    let keyint = out.fps * out.keyframe_interval_s;
    x264.set_property(
        "option-string",
        format!("scenecut=0:min-keyint={keyint}:nal-hrd=cbr:force-cfr=1"),
    );
    let caps = make("capsfilter", "h264_caps")?;
    caps.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("profile", "high")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .build(),
    );
    // no queue before the muxer: its pads hold MUX_LATENCY_MS of data each, and a thread hop
    // there cost a wake-up per buffer
    elements.extend([x264, caps]);
    link_row(bin, &elements)
}

/// Adds `elements` to `bin` and links them in a row; returns (first, last).
fn link_row(
    bin: &gst::Bin,
    elements: &[gst::Element],
) -> Result<(gst::Element, gst::Element), MediaError> {
    bin.add_many(elements).map_err(bin_error)?;
    gst::Element::link_many(elements)
        .map_err(|e| MediaError::Build(format!("linking the elements of {}: {e}", bin.name())))?;
    match (elements.first(), elements.last()) {
        (Some(a), Some(b)) => Ok((a.clone(), b.clone())),
        _ => Err(MediaError::Build("an empty row".into())),
    }
}

/// Samples of priming FFmpeg's AAC encoder (`avenc_aac`) puts before the first input sample (its
/// `initial_padding`: one AAC-LC frame).
pub const AAC_PRIMING_SAMPLES: u64 = 1024;

/// Stamps each encoded AAC frame [`AAC_PRIMING_SAMPLES`] earlier (21.3 ms at 48 kHz), never
/// below 0.
///
/// The encoder's first frame starts with its priming, and GStreamer stamps it with the first
/// input sample's PTS, so every sample a player decodes would play one AAC frame after the
/// picture it belongs to. FLV cannot signal priming (MP4 would need an edit list), so players
/// do not trim it; ffmpeg's own FLV output moves the audio the same way. Measured before this
/// (`bench/avsync.sh`, 100 kill cycles): audio 21–54 ms behind the picture, 21 ms of it this.
fn stamp_before_priming(aac: &gst::Element) -> Result<(), MediaError> {
    let priming = gst::ClockTime::SECOND
        .mul_div_floor(AAC_PRIMING_SAMPLES, u64::from(super::AUDIO_RATE))
        .unwrap_or(gst::ClockTime::ZERO);
    static_pad(aac, "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer_mut() {
            let b = buffer.make_mut();
            if let Some(pts) = b.pts() {
                b.set_pts(pts.saturating_sub(priming));
            }
            if let Some(dts) = b.dts() {
                b.set_dts(dts.saturating_sub(priming));
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// One profile's encode: its video encoder and the encoded sound (AAC-LC 48 kHz stereo, from the
/// [`AacEncode`] at its audio bitrate) into flvmux (streamable) into an appsink that hands every
/// buffer to `fanout`. Sink ghost pads `video` (raw) and `audio` (AAC).
fn encode(
    name: &str,
    mix: &OutputFormat,
    out: &OutputConfig,
    fanout: Arc<FanOut>,
) -> Result<gst::Bin, MediaError> {
    let bin = gst::Bin::with_name(name);
    let (vfirst, vlast) = video_encode(&bin, mix, out)?;
    // a queue per branch: a profile whose muxer falls behind holds back the shared AAC encode
    // (and every other profile's sound) only once its queue is full (1 s), not at once
    let aqueue = make("queue", "aac_queue")?;
    bin.add(&aqueue).map_err(bin_error)?;
    let (afirst, alast) = (aqueue.clone(), aqueue);
    let mux = make("flvmux", "mux")?;
    mux.set_property("streamable", true);
    // The AAC encoder holds ~2 frames (43 ms) before its first output; without a wait the live
    // muxer writes video first and clamps the late audio to the video's timestamps.
    mux.set_property(
        "latency",
        gst::ClockTime::from_mseconds(MUX_LATENCY_MS).nseconds(),
    );
    let sink = make("appsink", "out")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| MediaError::Build("appsink is not an AppSink".into()))?;
    sink.set_sync(false);
    sink.set_async(false);
    sink.set_max_buffers(200);
    sink.set_drop(true);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                fanout.push_sample(&sample);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    bin.add_many([&mux, sink.upcast_ref()]).map_err(bin_error)?;
    mux.link(&sink).map_err(bin_error)?;
    for (kind, first, last) in [("video", &vfirst, &vlast), ("audio", &afirst, &alast)] {
        let pad = mux
            .request_pad_simple(kind)
            .ok_or_else(|| MediaError::Build(format!("flvmux has no {kind} pad")))?;
        static_pad(last, "src")?
            .link(&pad)
            .map_err(|e| MediaError::Build(format!("linking {kind} into flvmux: {e}")))?;
        ghost(&bin, kind, &static_pad(first, "sink")?)?;
    }
    Ok(bin)
}

/// The bin name of profile key `key`'s encode (`""`: the channel's own).
fn branch_name(key: &str) -> String {
    if key.is_empty() {
        "encode".into()
    } else {
        format!("encode:{key}")
    }
}

impl Program {
    /// Builds channel `channel`'s graph (not started): the switch, encode and mux pieces, each
    /// a bin, linked in one pipeline. The appsink hands every muxed FLV buffer to `fanout`;
    /// without one (copy mode) the channel's own encode is not built, only the profiles' are.
    /// The switch runs at `out`'s size and at `mix_fps` frames per second (at least `out.fps`:
    /// the highest frame rate of the encodes the channel is known to need, so that a 60 fps
    /// profile gets 60 real frames a second, not 30 repeated); an encode at a lower rate drops
    /// frames evenly (videorate).
    pub fn build(
        channel: &str,
        out: &OutputConfig,
        mix_fps: u32,
        fanout: Option<Arc<FanOut>>,
        events: EventSink,
    ) -> Result<Arc<Program>, MediaError> {
        let format = OutputFormat {
            fps: mix_fps.max(out.fps),
            ..OutputFormat::from(out)
        };
        let pipeline = gst::Pipeline::with_name(&format!("program-{channel}"));
        let latency = gst::ClockTime::from_mseconds(MIX_LATENCY_MS);

        let video = video_switch(&format, latency)?;
        let audio = audio_switch(&format, latency)?;
        let video_tee = make("tee", "video_tee")?;
        let audio_tee = make("tee", "audio_tee")?;
        for tee in [&video_tee, &audio_tee] {
            // a branch being added or removed is briefly unlinked
            tee.set_property("allow-not-linked", true);
        }
        pipeline
            .add_many([
                video.bin.upcast_ref(),
                audio.bin.upcast_ref(),
                &video_tee,
                &audio_tee,
            ])
            .map_err(|e| MediaError::Build(e.to_string()))?;
        video.bin.link(&video_tee).map_err(bin_error)?;
        audio.bin.link(&audio_tee).map_err(bin_error)?;

        // overlay layers (scoreboard, text, images), blended into their rectangles only, between
        // the switch and the encoder
        let live = Arc::new(AtomicBool::new(false));
        let overlay = super::overlay::Overlay::new(live.clone(), out.height);
        overlay.attach(&video.out);

        // Off air at start: the fallback shows.
        let cut = CutControls {
            live_alpha: Control::bind(&video.live_pad, "alpha", 0.0)?,
            fallback_alpha: Control::bind(&video.fallback_pad, "alpha", 1.0)?,
            live_volume: Control::bind(&audio.live_pad, "volume", 0.0)?,
            fallback_volume: Control::bind(&audio.fallback_pad, "volume", 1.0)?,
        };
        let (live_video, fallback_video) = (video.live, video.fallback);
        let (live_audio, fallback_audio) = (audio.live, audio.fallback);
        let rate = Arc::new(SwitchRate {
            caps: video.caps,
            tee_sink: static_pad(&video_tee, "sink")?,
            pipeline: pipeline.clone(),
            channel: channel.to_string(),
            fps: AtomicU32::new(format.fps),
            format,
        });

        let program = Arc::new(Program {
            pipeline,
            video_tee,
            audio_tee,
            branches: Arc::default(),
            changes: Arc::default(),
            aacs: Arc::default(),
            rate,
            live_video,
            live_audio,
            fallback_video,
            fallback_audio,
            cut,
            state: Mutex::new(CutState::new(Instant::now())),
            events,
            channel: channel.to_string(),
            overlay,
            live,
            copy: Mutex::new(None),
        });
        if let Some(fanout) = fanout {
            program.add_encode("", out, fanout)?;
        }
        Ok(program)
    }

    /// Adds profile key `key`'s encode (`out`), feeding `fanout`; while the pipeline plays it
    /// starts at once, the other encodes untouched. A no-op when it exists. An encode above the
    /// switch's frame rate raises it first (waiting, ~50–100 ms, until frames at the new rate
    /// reach the tee); the other encodes keep their rate (they drop frames).
    /// Errors: the encode could not be built, started or linked, or the switch did not take the
    /// new rate; the switch's rate is as before then.
    pub fn add_encode(
        &self,
        key: &str,
        out: &OutputConfig,
        fanout: Arc<FanOut>,
    ) -> Result<(), MediaError> {
        let _changes = self.changes.lock();
        if self.branches.lock().contains_key(key) {
            return Ok(());
        }
        let from = self.rate.fps();
        let branch = (|| {
            if out.fps > from {
                self.rate.set(out.fps, true)?;
                tracing::info!(channel = %self.channel, profile = %key, from, fps = out.fps,
                    "the switch's frame rate raised for an encode above it");
            }
            self.start_branch(key, out, fanout)
        })();
        match branch {
            Ok(b) => {
                self.branches.lock().insert(key.to_string(), b);
                Ok(())
            }
            Err(e) => {
                self.rate.lower_to(&self.branches);
                Err(e)
            }
        }
    }

    /// Builds `key`'s encode bin, starts it when the pipeline runs and links it to the tees.
    fn start_branch(
        &self,
        key: &str,
        out: &OutputConfig,
        fanout: Arc<FanOut>,
    ) -> Result<Branch, MediaError> {
        // unique: the bin of a removed encode of the same profile may still be on its way out
        let unique = format!("{}.{}", branch_name(key), unique_suffix());
        let bin = encode(&unique, &self.format(), out, fanout)?;
        let latency = Arc::new(EncodeLatency::default());
        if let Some(x264) = bin.by_name("x264") {
            latency.watch(&x264);
        }
        self.pipeline.add(&bin).map_err(bin_error)?;
        // playing before it is linked: a tee pushing into a pad that is not active yet gets
        // FLUSHING back and passes it upstream, which would stop the program's streaming thread
        if self.pipeline.current_state() > gst::State::Null
            && let Err(e) = bin.sync_state_with_parent()
        {
            let _ = bin.set_state(gst::State::Null);
            let _ = self.pipeline.remove(&bin);
            return Err(MediaError::Start {
                what: format!("the {} encode", branch_name(key)),
                message: e.to_string(),
            });
        }
        let link = |tee: &gst::Element, kind: &str| -> Result<gst::Pad, MediaError> {
            link_tee(
                tee,
                &static_pad(bin.upcast_ref(), kind)?,
                &format!("the {kind} tee"),
            )
        };
        let kbps = out.audio_bitrate_kbps;
        let linked = self.use_aac(kbps).and_then(|aac_tee| {
            let a = link(&aac_tee, "audio").inspect_err(|_| {
                release_aac(&self.aacs, kbps, &self.audio_tee, &self.pipeline);
            })?;
            match link(&self.video_tee, "video") {
                Ok(v) => Ok((v, (aac_tee, a))),
                Err(e) => {
                    // the audio pad is linked already: give it back, or the tee keeps feeding it
                    if let Some(peer) = a.peer() {
                        let _ = a.unlink(&peer);
                    }
                    aac_tee.release_request_pad(&a);
                    release_aac(&self.aacs, kbps, &self.audio_tee, &self.pipeline);
                    Err(e)
                }
            }
        });
        let (video_pad, aac) = match linked {
            Ok(pads) => pads,
            Err(e) => {
                let _ = bin.set_state(gst::State::Null);
                let _ = self.pipeline.remove(&bin);
                return Err(e);
            }
        };
        tracing::info!(channel = %self.channel, profile = %key, width = out.width, height = out.height,
            fps = out.fps, video_kbps = out.video_bitrate_kbps, audio_kbps = kbps, "encode added");
        Ok(Branch {
            bin,
            fps: out.fps,
            video_pad,
            aac,
            aac_kbps: kbps,
            latency,
        })
    }

    /// One more use of the AAC encode at `kbps` (started now if there is none); returns its
    /// tee. Called with the `changes` lock held.
    fn use_aac(&self, kbps: u32) -> Result<gst::Element, MediaError> {
        let mut aacs = self.aacs.lock();
        let aac = match aacs.entry(kbps) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let started = AacEncode::start(&self.pipeline, &self.audio_tee, kbps)?;
                tracing::info!(channel = %self.channel, kbps, "AAC encode added");
                e.insert(started)
            }
        };
        aac.users += 1;
        Ok(aac.tee().clone())
    }

    /// Removes profile key `key`'s encode: unlinked from the tees while they are idle, then
    /// stopped on a thread of its own. The other encodes are untouched. When it was the last
    /// encode at the switch's frame rate, the switch then drops to the highest rate left.
    pub fn remove_encode(&self, key: &str) {
        // after an add of the same key that is under way, not before it (it would be left behind)
        let _changes = self.changes.lock();
        let Some(b) = self.branches.lock().remove(key) else {
            return;
        };
        let removal = Arc::new(Removal {
            name: branch_name(key),
            left: std::sync::atomic::AtomicUsize::new(2),
            pads: [(self.video_tee.clone(), b.video_pad.clone()), b.aac.clone()],
            bin: b.bin,
            aac_kbps: b.aac_kbps,
            pipeline: self.pipeline.clone(),
            audio_tee: self.audio_tee.clone(),
            branches: self.branches.clone(),
            aacs: self.aacs.clone(),
            rate: self.rate.clone(),
            changes: self.changes.clone(),
        });
        for pad in [&b.video_pad, &b.aac.1] {
            let removal = removal.clone();
            pad.add_probe(gst::PadProbeType::IDLE, move |pad, _| {
                if let Some(peer) = pad.peer() {
                    let _ = pad.unlink(&peer);
                }
                if removal.left.fetch_sub(1, Ordering::SeqCst) == 1 {
                    let removal = removal.clone();
                    // not on the streaming thread: releasing a tee pad and stopping a bin there
                    // would wait for that very thread
                    std::thread::spawn(move || removal.finish());
                }
                gst::PadProbeReturn::Remove
            });
        }
    }

    /// Each encode's mean video encoder latency in seconds, by profile key.
    pub fn encode_latency(&self) -> Vec<(String, f64)> {
        self.branches
            .lock()
            .iter()
            .map(|(k, b)| (k.clone(), b.latency.seconds()))
            .collect()
    }

    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// The switch's format now (its frame rate follows the encodes: see [`Program::add_encode`]).
    pub fn format(&self) -> OutputFormat {
        OutputFormat {
            fps: self.rate.fps(),
            ..self.rate.format
        }
    }

    /// The overlay layers composited over the output.
    pub fn overlay(&self) -> &Arc<super::overlay::Overlay> {
        &self.overlay
    }

    /// The appsrcs the fallback feeder pushes into: (video, audio).
    pub fn fallback_inputs(&self) -> (gst_app::AppSrc, gst_app::AppSrc) {
        (self.fallback_video.clone(), self.fallback_audio.clone())
    }

    /// The program pipeline's running time now, or `None` before it runs.
    pub fn running_time(&self) -> Option<gst::ClockTime> {
        self.pipeline.current_running_time()
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, CutState> {
        self.state.lock()
    }

    /// (source on air, live session on air, seconds since the last cut)
    pub fn on_air(&self) -> (Source, Option<SessionId>, f64) {
        let (source, session, since) = self.lock().on_air(Instant::now());
        (source, session, since.as_secs_f64())
    }

    /// Why the last switch happened, as its `switched` event said (`start` before any).
    pub fn on_air_reason(&self) -> String {
        self.lock().reason().to_string()
    }

    /// Whether `session` feeds the live input (on air, or held for a return after a stall).
    /// A session waiting for its first cut is not.
    pub fn is_program(&self, session: SessionId) -> bool {
        self.lock().is_program(session)
    }

    /// Makes `cut` ([`super::cut`] decided it): the controlled properties step at its running
    /// time, and `switched` is emitted. Called under the state lock, so cuts are made in order.
    fn make(&self, cut: Cut) {
        self.cut.to(cut.to, cut.at);
        self.live.store(cut.to == Source::Live, Ordering::Relaxed);
        if let Some(copy) = self.copy() {
            match (cut.to, cut.session) {
                (Source::Live, Some(session)) => copy.arm_live(session),
                _ => copy.cut_to_fallback(),
            }
        }
        let _ = self.events.send(Event::Switched(Switched {
            channel: self.channel.clone(),
            from: cut.from,
            to: cut.to,
            reason: cut.reason,
            session: cut.session,
        }));
    }

    /// Hands the channel's output to the copy path (copy mode): it follows every cut from now.
    pub fn set_copy(&self, copy: Arc<CopyPath>) {
        *self.copy.lock() = Some(copy);
    }

    /// The copy path, in copy mode.
    pub fn copy(&self) -> Option<Arc<CopyPath>> {
        self.copy.lock().clone()
    }

    /// Whether anything needs decoded pictures of the live session: an encode runs (the
    /// channel's own in encode mode, a profile's in either mode). In copy mode without profile
    /// destinations nothing does, and live sessions are not decoded.
    pub fn needs_pictures(&self) -> bool {
        !self.branches.lock().is_empty()
    }

    /// Copy mode without decoding: a video message of `session` (`keyframe`: an IDR the copy
    /// path can put on air) stands for its frame at the current running time, so the cut to
    /// live is made on it as on a decoded keyframe.
    pub fn live_video_message(&self, session: SessionId, keyframe: bool) {
        let now = self.running_time().unwrap_or(gst::ClockTime::ZERO);
        let frame = self.format().frame_duration();
        let mut st = self.lock();
        let cut = match st.live_video(session, now, None, keyframe, frame, Instant::now()) {
            Video::Drop(cut) | Video::Push(cut) => cut,
        };
        if let Some(cut) = cut {
            self.make(cut);
        }
    }

    /// Whether `session`'s frames are wanted: it feeds the live input or is armed to go on air.
    /// Other sessions are not decoded (see [`super::decode::SessionFeed`]).
    pub fn wants(&self, session: SessionId) -> bool {
        self.lock().wants(session)
    }

    /// Puts `session` on air from its next keyframe. A no-op when it already is.
    pub fn arm_live(&self, session: SessionId, reason: String) {
        self.lock().arm_live(session, reason);
    }

    /// Cuts to the fallback right after the last live frame (or now, when nothing live was
    /// pushed). A no-op when the fallback is already on air; cancels a pending switch to live.
    pub fn cut_to_fallback(&self, reason: String) {
        let mut st = self.lock();
        // read under the lock: a cut to live made meanwhile cannot land after this one
        let now = self.running_time().unwrap_or(gst::ClockTime::ZERO);
        if let Some(cut) = st.cut_to_fallback(reason, now, Instant::now()) {
            self.make(cut);
        }
    }

    /// A session ended: it no longer feeds the live input. Switching is the policy's business.
    pub fn session_ended(&self, session: SessionId) {
        self.lock().session_ended(session);
    }

    /// A decoded live video frame of `session`, PTS already on the program's running time.
    /// The frame of a pending session that is a keyframe makes the cut; frames of sessions that
    /// do not feed the live input, and frames that would go backwards, are dropped.
    pub fn push_live_video(&self, session: SessionId, buffer: gst::Buffer) {
        let Some(pts) = buffer.pts() else { return };
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let frame = self.format().frame_duration();
        {
            let mut st = self.lock();
            match st.live_video(
                session,
                pts,
                buffer.duration(),
                keyframe,
                frame,
                Instant::now(),
            ) {
                Video::Drop(cut) => {
                    // a keyframe that came back in time still makes the cut it armed
                    if let Some(cut) = cut {
                        self.make(cut);
                    }
                    return;
                }
                Video::Push(Some(cut)) => self.make(cut),
                Video::Push(None) => {}
            }
        }
        let _ = self.live_video.push_buffer(buffer);
    }

    /// A decoded live audio buffer of `session`, on the program's running time.
    pub fn push_live_audio(&self, session: SessionId, buffer: gst::Buffer) {
        let Some(pts) = buffer.pts() else { return };
        if !self.lock().live_audio(session, pts, buffer.duration()) {
            return;
        }
        let _ = self.live_audio.push_buffer(buffer);
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::output::encode::Encodes;

    /// The program's tee sees `fps` frames per second (polls up to 5 s).
    fn tee_at(program: &Program, fps: i32) -> bool {
        for _ in 0..500 {
            if program.rate.tee_rate() == Some(gst::Fraction::new(fps, 1)) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    /// A 320x180@30 encode at 300 kbit/s (small, to spare the CPU).
    fn small_output() -> OutputConfig {
        OutputConfig {
            width: 320,
            height: 180,
            video_bitrate_kbps: 300,
            ..OutputConfig::default()
        }
    }

    /// AAC encoders in `program`'s pipeline.
    fn aac_encoders(program: &Program) -> usize {
        program
            .pipeline()
            .iterate_recurse()
            .into_iter()
            .flatten()
            .filter(|e| e.factory().is_some_and(|f| f.name() == "avenc_aac"))
            .count()
    }

    /// Encodes at one audio bitrate share one AAC encoder; one at another bitrate gets its own,
    /// which goes when that encode does (and only then).
    #[test]
    fn encodes_at_one_audio_bitrate_share_one_aac_encoder() {
        super::super::init().expect("gstreamer");
        let out = small_output();
        let (events, _rx) = tokio::sync::mpsc::unbounded_channel();
        let program =
            Program::build("t", &out, 30, Some(Arc::new(FanOut::new())), events).expect("build");
        program
            .pipeline()
            .set_state(gst::State::Playing)
            .expect("play");
        let same = OutputConfig {
            width: 160,
            height: 90,
            ..out.clone()
        };
        let other = OutputConfig {
            audio_bitrate_kbps: 64,
            ..same.clone()
        };
        program
            .add_encode("same", &same, Arc::new(FanOut::new()))
            .expect("same");
        assert_eq!(aac_encoders(&program), 1, "160 kbit/s twice: one encoder");
        program
            .add_encode("other", &other, Arc::new(FanOut::new()))
            .expect("other");
        assert_eq!(
            aac_encoders(&program),
            2,
            "64 kbit/s: an encoder of its own"
        );
        program.remove_encode("same");
        program.remove_encode("other");
        let gone = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            aac_encoders(&program) == 1 && program.aacs.lock().len() == 1
        });
        assert!(
            gone,
            "64 kbit/s encoder still there: {}",
            aac_encoders(&program)
        );
        assert_eq!(
            program.aacs.lock()[&160].users,
            1,
            "the channel's own encode still uses it"
        );
        program
            .pipeline()
            .set_state(gst::State::Null)
            .expect("stop");
    }

    /// An encode above the switch's rate is added while the new rate is held back from the tee
    /// (so the add waits for it): the preview's fan-out, the dropped counts and the encoder
    /// latencies (`/metrics`, the status) answer meanwhile, and the add completes once the
    /// rate gets through. Another encode's acquire waiting its turn meanwhile, whose
    /// destination then goes away, builds nothing.
    #[test]
    fn readers_do_not_wait_for_an_encode_being_added() {
        super::super::init().expect("gstreamer");
        let out = small_output();
        let p60 = OutputConfig {
            fps: 60,
            ..out.clone()
        };
        let small = OutputConfig {
            width: 160,
            height: 90,
            ..out.clone()
        };
        let profiles = Arc::new(crate::config::Profiles::from([
            ("p60".to_string(), p60),
            ("small".to_string(), small),
        ]));
        let encodes = Encodes::new("t", profiles);
        let (events, _rx) = tokio::sync::mpsc::unbounded_channel();
        let program = Program::build("t", &out, 30, Some(encodes.main()), events).expect("build");
        program
            .pipeline()
            .set_state(gst::State::Playing)
            .expect("play");
        encodes.started(program.clone());
        assert!(tee_at(&program, 30), "the program never ran at 30 fps");

        let tee = program.rate.tee_sink.clone();
        let held = tee
            .add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, |_, _| {
                gst::PadProbeReturn::Ok
            })
            .expect("probe");
        let acquiring = encodes.clone();
        let adder = std::thread::spawn(move || acquiring.acquire(Some("p60"), &|| true));
        while program.rate.fps() != 60 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // the add is under way, waiting for 60 fps at the tee
        let _ = encodes.main();
        let _ = encodes.dropped();
        let _ = program.encode_latency();
        assert_eq!(
            program.rate.fps(),
            60,
            "a reader waited for the add (which gave up and went back to 30 fps)"
        );
        let gone = Arc::new(AtomicBool::new(true));
        let (waiting, still) = (encodes.clone(), gone.clone());
        let second = std::thread::spawn(move || {
            waiting
                .acquire(Some("small"), &|| still.load(Ordering::SeqCst))
                .map(|_| ())
        });
        std::thread::sleep(std::time::Duration::from_millis(100)); // at the changes lock
        gone.store(false, Ordering::SeqCst);
        tee.remove_probe(held);
        let held = adder.join().expect("adder").expect("the encode was added");
        assert!(
            second.join().expect("second").is_err(),
            "an acquire no longer wanted went on"
        );
        let keys: Vec<String> = program
            .encode_latency()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(
            !keys.contains(&"small".to_string()),
            "an encode was built for a destination that went away: {keys:?}"
        );
        assert!(
            tee_at(&program, 60),
            "the switch's new rate never reached the tee"
        );
        program
            .pipeline()
            .set_state(gst::State::Null)
            .expect("stop");
        drop(held);
    }
}
