//! The media core. It knows nothing of Lua, WASM or HTTP: it emits [`crate::event::Event`]s and
//! is driven by the channel's actions. Read top to bottom, the data path is:
//!
//! - [`ingest`]: publish sessions and stream-key routing, shared by every protocol; one
//!   submodule per protocol ([`ingest::rtmp`]: the RTMP server, its chunk guard and AMF0 walk;
//!   an SRT listener goes beside it as `ingest/srt`)
//! - [`flv`]: the FLV tag facts the ingest, the decoder and the outputs share
//! - [`decode`]: one decode pipeline per publish session, rebased onto the program's running time
//! - [`fallback`]: the fallback media (image, looping video, slate) fed into the switch
//! - [`switch`]: the video switch element (`onairvideoswitch`); [`cut`]: when it cuts (the
//!   state machine: to the fallback after the last live frame, to live on a keyframe)
//! - [`overlay`] (with [`image`]): layers composited over the program
//! - [`program`]: switch → overlay → encode → mux, the channel's long-lived pipeline
//! - [`output`]: what leaves the channel. Today one path, the encode path
//!   ([`output::encode`]: one encode per profile, [`output::fanout`]: one encode to every
//!   consumer); a copy path that forwards the publisher's own packets goes beside it as
//!   `output/copy`. Both feed [`output::destination`] (each platform connection, reconnecting
//!   with backoff) and [`output::recording`] (segmented files).

pub mod cut;
pub mod decode;
pub mod fallback;
pub mod flv;
pub mod image;
pub mod ingest;
pub mod output;
pub mod overlay;
pub mod program;
pub mod switch;

use crate::config::OutputConfig;

/// A media graph that could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer element {factory} is missing: {hint}")]
    MissingElement { factory: String, hint: &'static str },
    #[error("building the media graph: {0}")]
    Build(String),
    #[error("starting {what}: {message}")]
    Start { what: String, message: String },
    #[error("fallback media {path}: {message}")]
    FallbackMedia { path: String, message: String },
}

/// Initialises GStreamer once.
pub fn init() -> Result<(), MediaError> {
    gst::init().map_err(|e| MediaError::Start {
        what: "GStreamer".into(),
        message: e.to_string(),
    })
}

/// Which Debian package holds an element, for the error message.
fn package_hint(factory: &str) -> &'static str {
    match factory {
        "x264enc" | "rtmp2sink" => {
            "install gstreamer1.0-plugins-ugly / -bad (tools/setup-debian.sh)"
        }
        "avenc_aac" | "avdec_h264" | "avdec_aac" => {
            "install gstreamer1.0-libav (tools/setup-debian.sh)"
        }
        "textoverlay" => "install gstreamer1.0-x (tools/setup-debian.sh)",
        "flvmux" | "flvdemux" | "imagefreeze" | "pngdec" | "jpegdec" => {
            "install gstreamer1.0-plugins-good (tools/setup-debian.sh)"
        }
        _ => "install the packages in tools/setup-debian.sh",
    }
}

/// Makes one element, with an error that says which package provides it.
pub fn make(factory: &str, name: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| MediaError::MissingElement {
            factory: factory.into(),
            hint: package_hint(factory),
        })
}

/// The appsrc every output pipeline starts with: live, in time format, fed the FanOut's FLV
/// buffers with `caps` (with their `streamheader`).
pub fn flv_appsrc(caps: Option<&gst::Caps>) -> Result<gst_app::AppSrc, MediaError> {
    let src = gst::prelude::Cast::downcast::<gst_app::AppSrc>(make("appsrc", "flv")?)
        .map_err(|_| MediaError::Build("appsrc is not an AppSrc".into()))?;
    src.set_caps(caps);
    src.set_format(gst::Format::Time);
    src.set_is_live(true);
    Ok(src)
}

/// Every element the program needs, checked by `onair check` and at start-up.
pub const REQUIRED_ELEMENTS: &[&str] = &[
    "appsrc",
    "appsink",
    "audiomixer",
    "audiotestsrc",
    "videotestsrc",
    "textoverlay",
    "x264enc",
    "avenc_aac",
    "flvmux",
    "flvdemux",
    "h264parse",
    "aacparse",
    "avdec_h264",
    "avdec_aac",
    "rtmp2sink",
    "uridecodebin",
    "videoconvert",
    "videoscale",
    "videorate",
    "audioconvert",
    "audioresample",
];

/// Returns the factories in [`REQUIRED_ELEMENTS`] that are not installed.
pub fn missing_elements() -> Vec<(&'static str, &'static str)> {
    REQUIRED_ELEMENTS
        .iter()
        .filter(|f| gst::ElementFactory::find(f).is_none())
        .map(|f| (*f, package_hint(f)))
        .collect()
}

/// The raw formats inside the program: what the switch mixes and the encoders take.
#[derive(Debug, Clone, Copy)]
pub struct OutputFormat {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// Audio inside the program: 48 kHz stereo, 32-bit float. AAC-LC at 48 kHz is what every
/// platform's ingest accepts.
pub const AUDIO_RATE: u32 = 48_000;
pub const AUDIO_CHANNELS: u32 = 2;

impl From<&OutputConfig> for OutputFormat {
    fn from(o: &OutputConfig) -> Self {
        Self {
            width: o.width,
            height: o.height,
            fps: o.fps,
        }
    }
}

impl OutputFormat {
    /// 8-bit 4:2:0 (I420), square pixels, constant frame rate.
    pub fn video_caps(&self) -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", self.width as i32)
            .field("height", self.height as i32)
            .field("framerate", gst::Fraction::new(self.fps as i32, 1))
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build()
    }

    /// Like [`Self::video_caps`], without a frame rate (for stills and live decode).
    pub fn video_caps_any_rate(&self) -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", self.width as i32)
            .field("height", self.height as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build()
    }

    pub fn audio_caps(&self) -> gst::Caps {
        gst::Caps::builder("audio/x-raw")
            .field("format", "F32LE")
            .field("rate", AUDIO_RATE as i32)
            .field("channels", AUDIO_CHANNELS as i32)
            .field("layout", "interleaved")
            .build()
    }

    /// One frame period.
    pub fn frame_duration(&self) -> gst::ClockTime {
        gst::ClockTime::from_nseconds(1_000_000_000 / u64::from(self.fps.max(1)))
    }
}

/// Hands the memory the C allocator holds free back to the operating system (glibc's
/// `malloc_trim(0)`; a no-op on other C libraries). Called when a decode pipeline stops: its
/// frame pools (a few MB) go back to glibc's per-thread arenas, which keep them. Without this,
/// publish sessions with a minute of fallback between them grew the resident set ~3.5 MB per
/// session (94 → 107 MB over five) while the heap in use stayed at 11 MB between sessions
/// (heaptrack); with it, 89–93 MB over five. Takes 0.3–0.8 ms (release, onair's heap sizes).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)] // the one foreign call in onair's own code: it has no preconditions
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
