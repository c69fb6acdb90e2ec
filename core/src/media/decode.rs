//! One decode pipeline per publish session:
//! `appsrc (FLV) ! flvdemux ! {h264parse ! avdec_h264 | aacparse ! avdec_aac} ! convert/scale ! appsink`.
//! Decoded frames are put on the program's running time and handed to [`Program`].
//!
//! Rebase: when the session's first tag arrives, the program's running time is taken once, and
//! every tag timestamp is counted from that tag. Audio and video share that one offset, so lip
//! sync is the publisher's. The offset is taken again only on a large drift (over
//! [`RESYNC_DRIFT_MS`] either way, as after a SIGSTOPped publisher resumes with a burst).
//!
//! [`SessionFeed`] runs a [`LiveDecoder`] only while the program wants the session.
//!
//! The appsinks are `sync=false async=false`: the session pipeline runs as fast as data arrives,
//! and a publisher without audio still reaches PLAYING. Nothing here ever reaches the program as
//! EOS: when the session ends its pipeline is set to NULL.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gst::prelude::*;

use super::output::copy::CopyPath;
use super::output::splice::Fit;
use super::program::Program;
use super::{MediaError, flv, make};
use crate::event::SessionId;

/// Drift between a tag's rebased timestamp and the program's running time that triggers a new
/// offset, in ms.
pub const RESYNC_DRIFT_MS: i64 = 1000;

/// PTS (ms, session time) of the keyframes sent to the decoder and not yet decoded. Decoders do
/// not flag their output, so the video appsink marks a frame as a keyframe by matching its PTS
/// here; every other frame gets `DELTA_UNIT`. The program cuts to live only on a keyframe.
type Keyframes = Arc<Mutex<VecDeque<i64>>>;

/// Keyframes remembered at most (a few GOPs).
const KEYFRAMES_KEPT: usize = 16;

/// Rebase state: the first tag's timestamp and the running time (ns) it maps to.
struct Rebase {
    first_ts_ms: Option<u32>,
    /// Program running time, in ns, of rebased tag time 0.
    offset_ns: Arc<AtomicU64>,
}

pub struct LiveDecoder {
    session: SessionId,
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    program: Arc<Program>,
    rebase: Rebase,
    keyframes: Keyframes,
}

impl LiveDecoder {
    /// Builds and starts the decode pipeline for `session`.
    pub fn start(session: SessionId, program: Arc<Program>) -> Result<Self, MediaError> {
        let pipeline = gst::Pipeline::with_name(&format!("session-{session}"));
        let src = make("appsrc", "flv")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| MediaError::Build("appsrc is not an AppSrc".into()))?;
        src.set_caps(Some(&gst::Caps::builder("video/x-flv").build()));
        src.set_format(gst::Format::Bytes);
        src.set_property("max-bytes", 32u64 << 20);
        let demux = make("flvdemux", "demux")?;
        pipeline
            .add_many([src.upcast_ref(), &demux])
            .map_err(|e| MediaError::Build(e.to_string()))?;
        src.link(&demux)
            .map_err(|e| MediaError::Build(format!("appsrc → flvdemux: {e}")))?;

        let offset_ns = Arc::new(AtomicU64::new(0));
        let keyframes: Keyframes = Arc::default();
        let kf = keyframes.clone();
        let format = program.format();
        let weak_pipeline = pipeline.downgrade();
        let prog = program.clone();
        let offset = offset_ns.clone();
        demux.connect_pad_added(move |_, pad| {
            let Some(pipeline) = weak_pipeline.upgrade() else {
                return;
            };
            let result = match pad.name().as_str() {
                name @ ("video" | "audio") => {
                    let kind = if name == "video" {
                        Kind::Video
                    } else {
                        Kind::Audio
                    };
                    let branch = Branch {
                        kind,
                        format: &format,
                        session,
                        program: &prog,
                        offset: &offset,
                        keyframes: &kf,
                    };
                    link_branch(&pipeline, pad, &branch)
                }
                other => {
                    tracing::debug!(session, pad = other, "ignoring flvdemux pad");
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::error!(session, error = %e, "session decode branch failed");
            }
        });

        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Start {
                what: format!("session {session} decoder"),
                message: e.to_string(),
            })?;
        src.push_buffer(gst::Buffer::from_slice(flv::stream_header()))
            .map_err(|e| MediaError::Start {
                what: format!("session {session} decoder"),
                message: e.to_string(),
            })?;
        Ok(Self {
            session,
            pipeline,
            src,
            program,
            rebase: Rebase {
                first_ts_ms: None,
                offset_ns,
            },
            keyframes,
        })
    }

    /// Feeds one RTMP audio or video message. Never blocks.
    ///
    /// `ts_ms` is the message's RTMP timestamp (DTS) in milliseconds.
    pub fn push(&mut self, tag_type: u8, ts_ms: u32, body: &[u8]) {
        let now = self
            .program
            .running_time()
            .unwrap_or(gst::ClockTime::ZERO)
            .nseconds();
        let first = *self.rebase.first_ts_ms.get_or_insert_with(|| {
            self.rebase.offset_ns.store(now, Ordering::Relaxed);
            ts_ms
        });
        let rel_ms = ts_ms.wrapping_sub(first);
        let expected =
            self.rebase.offset_ns.load(Ordering::Relaxed) + u64::from(rel_ms) * 1_000_000;
        let drift_ms = (now as i64 - expected as i64) / 1_000_000;
        if drift_ms.abs() > RESYNC_DRIFT_MS {
            let new_offset = now.saturating_sub(u64::from(rel_ms) * 1_000_000);
            self.rebase.offset_ns.store(new_offset, Ordering::Relaxed);
            tracing::info!(
                session = self.session,
                drift_ms,
                "publisher timestamps drifted: re-synced to running time"
            );
        }
        if tag_type == flv::TAG_VIDEO
            && let Some(cts) = flv::avc_keyframe_cts(body)
        {
            let mut kf = self.keyframes.lock();
            if kf.len() == KEYFRAMES_KEPT {
                kf.pop_front();
            }
            kf.push_back(i64::from(rel_ms) + i64::from(cts));
        }
        let tag = flv::tag(tag_type, rel_ms, body);
        let _ = self.src.push_buffer(gst::Buffer::from_mut_slice(tag));
    }

    /// The first error the decode pipeline reported, if any.
    pub fn take_error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Some(format!("{} ({})", e.error(), e.debug().unwrap_or_default()));
            }
        }
        None
    }
}

impl Drop for LiveDecoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        // In the Null state the pipeline's buffer pools have freed their frames.
        super::release_free_memory();
    }
}

/// A publish session's media on its way to the program: decoded only while the program wants
/// it (on air, held for a return after a stall, or armed to go on air), so sessions waiting
/// their turn cost only the reading of their socket.
///
/// While waiting, a session keeps its latest AVC and AAC sequence headers (a few dozen bytes)
/// and nothing else. When armed, decoding starts at the session's next video keyframe, with
/// those headers first; the cut to it happens on that keyframe, as for any session. When the
/// program stops wanting it (another session went on air), its decoder is stopped at its next
/// message.
pub struct SessionFeed {
    session: SessionId,
    program: Arc<Program>,
    decoder: Option<LiveDecoder>,
    /// The latest AVC sequence header (AVCDecoderConfigurationRecord) message body.
    video_header: Option<Vec<u8>>,
    /// The latest AAC sequence header (AudioSpecificConfig) message body.
    audio_header: Option<Vec<u8>>,
    /// The last decode pipeline's error, kept after the decoder is stopped.
    error: Option<String>,
}

impl SessionFeed {
    pub fn new(session: SessionId, program: Arc<Program>) -> Self {
        Self {
            session,
            program,
            decoder: None,
            video_header: None,
            audio_header: None,
            error: None,
        }
    }

    /// Whether the session is being decoded now.
    pub fn is_decoding(&self) -> bool {
        self.decoder.is_some()
    }

    /// Feeds one RTMP audio or video message (`ts_ms`: its RTMP timestamp). Starts or stops
    /// the decoder as the program's want of this session changes. Never blocks on the program;
    /// starting or stopping a decoder takes a few ms.
    pub fn push(&mut self, tag_type: u8, ts_ms: u32, body: &[u8]) -> Result<(), MediaError> {
        let video = tag_type == flv::TAG_VIDEO;
        if video && flv::is_avc_sequence_header(body) {
            self.video_header = Some(body.to_vec());
        } else if !video && flv::is_aac_sequence_header(body) {
            self.audio_header = Some(body.to_vec());
        }
        let wanted = self.program.wants(self.session);
        if let Some(copy) = self.program.copy() {
            if wanted {
                self.copy(&copy, tag_type, ts_ms, body);
            }
            if !self.program.needs_pictures() {
                if let Some(d) = self.decoder.take() {
                    self.error = self.error.take().or_else(|| d.take_error());
                }
                return Ok(());
            }
        }
        if !wanted {
            if let Some(d) = self.decoder.take() {
                self.error = self.error.take().or_else(|| d.take_error());
                tracing::debug!(
                    session = self.session,
                    "session not on air: decoding stopped"
                );
            }
            return Ok(());
        }
        if self.decoder.is_none() {
            if !(video && flv::avc_keyframe_cts(body).is_some()) {
                return Ok(()); // decoding starts on a keyframe
            }
            let mut d = LiveDecoder::start(self.session, self.program.clone())?;
            for (kind, header) in [
                (flv::TAG_VIDEO, &self.video_header),
                (flv::TAG_AUDIO, &self.audio_header),
            ] {
                if let Some(h) = header {
                    d.push(kind, ts_ms, h);
                }
            }
            tracing::debug!(
                session = self.session,
                "session armed: decoding from this keyframe"
            );
            self.decoder = Some(d);
        }
        if let Some(d) = self.decoder.as_mut() {
            d.push(tag_type, ts_ms, body);
        }
        Ok(())
    }

    /// Copy mode: one message of a wanted session. When nothing decodes it, its video
    /// messages make the cut to live (an IDR that fits the connection counts as the keyframe);
    /// once it feeds the live side, the copy path gets every message.
    fn copy(&self, copy: &CopyPath, tag_type: u8, ts_ms: u32, body: &[u8]) {
        let video = tag_type == flv::TAG_VIDEO;
        if video && !flv::is_sequence_header(tag_type, body) {
            let idr = flv::avc_keyframe_cts(body).is_some();
            let fits = idr
                && (self.program.is_program(self.session)
                    || copy.fit(
                        self.session,
                        self.video_header.as_deref(),
                        self.audio_header.as_deref(),
                    ) == Fit::Fits);
            if !self.program.needs_pictures() {
                self.program.live_video_message(self.session, fits);
            }
        }
        copy.live_tag(self.session, tag_type, ts_ms, body);
    }

    /// The first error a decode pipeline of this session reported, if any.
    pub fn take_error(&mut self) -> Option<String> {
        self.error
            .take()
            .or_else(|| self.decoder.as_ref().and_then(|d| d.take_error()))
    }
}

impl Drop for SessionFeed {
    fn drop(&mut self) {
        self.program.session_ended(self.session);
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Video,
    Audio,
}

/// What one decode branch needs to hand its frames to the program.
struct Branch<'a> {
    kind: Kind,
    format: &'a super::OutputFormat,
    session: SessionId,
    program: &'a Arc<Program>,
    offset: &'a Arc<AtomicU64>,
    keyframes: &'a Keyframes,
}

/// Decodes on one thread when the publisher's picture is at most
/// [`crate::config::ONE_THREAD_PIXEL_RATE`] (read from the caps before the decoder opens):
/// ~10 % less CPU than frame threads (2.4 ms per 720p frame here, so no added latency to speak
/// of); larger pictures keep libav's automatic thread count.
fn one_thread_when_small(dec: &gst::Element) {
    let Some(pad) = dec.static_pad("sink") else {
        return;
    };
    let weak = dec.downgrade();
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        let Some(gst::EventView::Caps(c)) = info.event().map(|e| e.view()) else {
            return gst::PadProbeReturn::Ok;
        };
        let s = c.caps().structure(0);
        let field = |name| s.and_then(|s| s.get::<i32>(name).ok()).unwrap_or(0).max(0) as u64;
        let fps = s
            .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
            .filter(|f| f.denom() > 0 && f.numer() > 0)
            .map_or(30, |f| (f.numer() as u64).div_ceil(f.denom() as u64));
        let small = field("width") * field("height") * fps <= crate::config::ONE_THREAD_PIXEL_RATE;
        if let Some(dec) = weak.upgrade() {
            dec.set_property("max-threads", if small { 1 } else { 0 });
        }
        gst::PadProbeReturn::Ok
    });
}

fn link_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    branch: &Branch<'_>,
) -> Result<(), MediaError> {
    let Branch {
        kind,
        format,
        session,
        program,
        offset,
        keyframes,
    } = *branch;
    let p = match kind {
        Kind::Video => "v",
        Kind::Audio => "a",
    };
    // No queue after the demuxer: the appsinks never block (they hand frames to the program's
    // leaky appsrcs), so both branches decode on the demuxer's thread, one thread hop and one
    // wake-up per frame fewer.
    let elements: Vec<gst::Element> = match kind {
        Kind::Video => {
            let dec = make("avdec_h264", "vdec")?;
            dec.set_property("output-corrupt", false);
            one_thread_when_small(&dec);
            let caps = make("capsfilter", "vcaps")?;
            caps.set_property("caps", format.video_caps_any_rate());
            vec![
                make("h264parse", "vparse")?,
                dec,
                make("videoconvert", "vconvert")?,
                make("videoscale", "vscale")?,
                caps,
            ]
        }
        Kind::Audio => {
            let caps = make("capsfilter", "acaps")?;
            caps.set_property("caps", format.audio_caps());
            vec![
                make("aacparse", "aparse")?,
                make("avdec_aac", "adec")?,
                make("audioconvert", "aconvert")?,
                make("audioresample", "aresample")?,
                caps,
            ]
        }
    };
    let sink = make("appsink", &format!("{p}_sink"))?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| MediaError::Build("appsink is not an AppSink".into()))?;
    sink.set_sync(false);
    sink.set_async(false);
    let program = program.clone();
    let offset = offset.clone();
    let keyframes = keyframes.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                let (Some(buffer), Some(segment)) = (sample.buffer_owned(), sample.segment())
                else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Some(segment) = segment.downcast_ref::<gst::ClockTime>() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Some(rt) = buffer.pts().and_then(|pts| segment.to_running_time(pts)) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let mut buffer = buffer;
                {
                    let b = buffer.make_mut();
                    if let Kind::Video = kind {
                        let ms = rt.mseconds() as i64;
                        let mut kf = keyframes.lock();
                        while kf.front().is_some_and(|k| *k < ms) {
                            kf.pop_front(); // not decoded (dropped) or already passed
                        }
                        if kf.front() == Some(&ms) {
                            kf.pop_front();
                            b.unset_flags(gst::BufferFlags::DELTA_UNIT);
                        } else {
                            b.set_flags(gst::BufferFlags::DELTA_UNIT);
                        }
                    }
                    b.set_pts(rt + gst::ClockTime::from_nseconds(offset.load(Ordering::Relaxed)));
                    b.set_dts(gst::ClockTime::NONE);
                }
                match kind {
                    Kind::Video => program.push_live_video(session, buffer),
                    Kind::Audio => program.push_live_audio(session, buffer),
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let mut all: Vec<&gst::Element> = elements.iter().collect();
    all.push(sink.upcast_ref());
    pipeline
        .add_many(all.iter().copied())
        .map_err(|e| MediaError::Build(e.to_string()))?;
    gst::Element::link_many(all.iter().copied())
        .map_err(|e| MediaError::Build(format!("{kind:?} decode branch: {e}")))?;
    for e in &all {
        e.sync_state_with_parent()
            .map_err(|e| MediaError::Build(format!("{kind:?} decode branch: {e}")))?;
    }
    let sinkpad = elements[0]
        .static_pad("sink")
        .ok_or_else(|| MediaError::Build("parser without sink pad".into()))?;
    pad.link(&sinkpad)
        .map_err(|e| MediaError::Build(format!("flvdemux {kind:?} pad: {e}")))?;
    Ok(())
}
