//! `onairvideoswitch`: the video half of the switch, a live video aggregator that shows one
//! input at a time without copying it.
//!
//! It is GStreamer's `GstVideoAggregator` (the base of `compositor`, so the same timing: one
//! output frame per frame period at its deadline, an input's last frame repeated until a newer
//! one arrives, pad properties synced to each frame's stream time), with the blending replaced by
//! a selection: each output frame is the current frame of the highest-`zorder` pad whose `alpha`
//! is above 0, shared, not copied (its memory is referenced by the output buffer), or black when
//! no such pad has a frame. `alpha` is controllable, so the cut stays a control point at an exact
//! running time, as it was with `compositor`.
//!
//! Why: `compositor` copies the visible 720p frame into a new buffer for every output frame
//! (1.4 MB, 30 times a second), the one piece of work in the program that ffmpeg doing the same
//! job does not do. An element downstream that writes into a frame (the overlay) gets its own copy
//! on map, as GStreamer does for any shared memory.
//!
//! Caps: I420 only (the program's raw format), every input at the output's size.

use parking_lot::Mutex;
use std::sync::OnceLock;

use gst::glib;
use gst::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

/// The factory name [`register`] installs.
pub const FACTORY: &str = "onairvideoswitch";

glib::wrapper! {
    /// The element; see the module documentation.
    pub struct VideoSwitch(ObjectSubclass<imp::VideoSwitch>)
        @extends gst_video::VideoAggregator, gst_video::gst_base::Aggregator, gst::Element, gst::Object;
}

glib::wrapper! {
    /// One input of [`VideoSwitch`]: `zorder` (from `GstVideoAggregatorPad`) and `alpha`
    /// (0.0–1.0, controllable; above 0 means visible).
    pub struct SwitchPad(ObjectSubclass<imp::SwitchPad>)
        @extends gst_video::VideoAggregatorPad, gst_video::gst_base::AggregatorPad, gst::Pad, gst::Object;
}

/// Registers [`FACTORY`] with GStreamer (once per process; later calls return the first result).
///
/// Errors: GStreamer refused the registration (a factory of that name from elsewhere).
pub fn register() -> Result<(), glib::BoolError> {
    static DONE: OnceLock<Result<(), glib::BoolError>> = OnceLock::new();
    DONE.get_or_init(|| {
        gst::Element::register(None, FACTORY, gst::Rank::NONE, VideoSwitch::static_type())
    })
    .clone()
}

mod imp {
    use super::*;

    pub struct SwitchPad {
        alpha: Mutex<f64>,
    }

    impl Default for SwitchPad {
        fn default() -> Self {
            Self {
                alpha: Mutex::new(1.0),
            }
        }
    }

    impl SwitchPad {
        pub fn visible(&self) -> bool {
            *self.alpha.lock() > 0.0
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SwitchPad {
        const NAME: &'static str = "OnairSwitchPad";
        type Type = super::SwitchPad;
        type ParentType = gst_video::VideoAggregatorPad;
    }

    impl ObjectImpl for SwitchPad {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPERTIES: OnceLock<Vec<glib::ParamSpec>> = OnceLock::new();
            PROPERTIES.get_or_init(|| {
                vec![
                    glib::ParamSpecDouble::builder("alpha")
                        .nick("Alpha")
                        .blurb("Visible when above 0 (the highest zorder visible pad is shown)")
                        .minimum(0.0)
                        .maximum(1.0)
                        .default_value(1.0)
                        .mutable_playing()
                        .controllable()
                        .build(),
                ]
            })
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            if pspec.name() == "alpha" {
                let v = value.get::<f64>().unwrap_or(1.0);
                *self.alpha.lock() = v;
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            match pspec.name() {
                "alpha" => (*self.alpha.lock()).to_value(),
                _ => glib::Value::from_type(pspec.value_type()),
            }
        }
    }

    impl GstObjectImpl for SwitchPad {}
    impl PadImpl for SwitchPad {}
    impl AggregatorPadImpl for SwitchPad {}
    impl VideoAggregatorPadImpl for SwitchPad {}

    #[derive(Default)]
    pub struct VideoSwitch {
        /// A black frame at the current output format, made on first need.
        black: Mutex<Option<(gst_video::VideoInfo, gst::Buffer)>>,
    }

    impl VideoSwitch {
        fn black(&self) -> Result<gst::Buffer, gst::FlowError> {
            let info = self
                .obj()
                .video_info()
                .ok_or(gst::FlowError::NotNegotiated)?;
            let mut black = self.black.lock();
            if let Some((i, b)) = black.as_ref()
                && *i == info
            {
                return Ok(b.clone());
            }
            let buffer = black_i420(&info)?;
            *black = Some((info, buffer.clone()));
            Ok(buffer)
        }
    }

    /// A black I420 frame (Y 16, U and V 128: video-range black) of `info`'s size.
    fn black_i420(info: &gst_video::VideoInfo) -> Result<gst::Buffer, gst::FlowError> {
        let buffer = gst::Buffer::with_size(info.size()).map_err(|_| gst::FlowError::Error)?;
        let mut frame = gst_video::VideoFrame::from_buffer_writable(buffer, info)
            .map_err(|_| gst::FlowError::Error)?;
        for plane in 0..frame.n_planes() {
            let value = if plane == 0 { 16 } else { 128 };
            frame
                .plane_data_mut(plane)
                .map_err(|_| gst::FlowError::Error)?
                .fill(value);
        }
        Ok(frame.into_buffer())
    }

    #[glib::object_subclass]
    impl ObjectSubclass for VideoSwitch {
        const NAME: &'static str = "OnairVideoSwitch";
        type Type = super::VideoSwitch;
        type ParentType = gst_video::VideoAggregator;
    }

    impl ObjectImpl for VideoSwitch {}
    impl GstObjectImpl for VideoSwitch {}

    impl ElementImpl for VideoSwitch {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: OnceLock<gst::subclass::ElementMetadata> = OnceLock::new();
            Some(META.get_or_init(|| {
                gst::subclass::ElementMetadata::new(
                    "onair video switch",
                    "Filter/Editor/Video/Compositor",
                    "Shows the highest visible input, shared without a copy",
                    "onair",
                )
            }))
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: OnceLock<Vec<gst::PadTemplate>> = OnceLock::new();
            TEMPLATES.get_or_init(|| {
                let caps = gst_video::VideoCapsBuilder::new()
                    .format(gst_video::VideoFormat::I420)
                    .build();
                let src = gst::PadTemplate::with_gtype(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                    gst_video::gst_base::AggregatorPad::static_type(),
                );
                let sink = gst::PadTemplate::with_gtype(
                    "sink_%u",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &caps,
                    super::SwitchPad::static_type(),
                );
                // both templates are static and valid: a failure here is a programming error
                vec![
                    src.expect("the src pad template"),
                    sink.expect("the sink pad template"),
                ]
            })
        }
    }

    impl AggregatorImpl for VideoSwitch {}

    impl VideoAggregatorImpl for VideoSwitch {
        /// An empty buffer: `aggregate_frames` gives it the chosen frame's memory.
        fn create_output_buffer(&self) -> Result<Option<gst::Buffer>, gst::FlowError> {
            Ok(Some(gst::Buffer::new()))
        }

        fn aggregate_frames(
            &self,
            token: &gst_video::subclass::AggregateFramesToken,
            outbuf: &mut gst::BufferRef,
        ) -> Result<gst::FlowSuccess, gst::FlowError> {
            // the base class keeps its sink pads sorted by zorder, lowest first
            let shown = self
                .obj()
                .sink_pads()
                .into_iter()
                .rev()
                .filter_map(|p| p.downcast::<super::SwitchPad>().ok())
                .filter(|p| p.imp().visible())
                .find_map(|p| p.current_buffer(token));
            let frame = match shown {
                Some(b) => b,
                None => self.black()?,
            };
            // memory and metas (the frame's VideoMeta) by reference; timestamps stay the output's
            frame
                .copy_into(
                    outbuf,
                    gst::BufferCopyFlags::MEMORY | gst::BufferCopyFlags::META,
                    ..,
                )
                .map_err(|_| gst::FlowError::Error)?;
            Ok(gst::FlowSuccess::Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 64;
    const H: u32 = 36;

    fn caps() -> gst::Caps {
        gst::init().expect("gst");
        gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::I420)
            .width(W as i32)
            .height(H as i32)
            .framerate(gst::Fraction::new(30, 1))
            .build()
    }

    /// A frame whose every byte is `luma` (a flat grey picture), at frame index `i`.
    fn frame(luma: u8, i: u64) -> gst::Buffer {
        let info = gst_video::VideoInfo::from_caps(&caps()).expect("info");
        let mut b = gst::Buffer::from_mut_slice(vec![luma; info.size()]);
        let r = b.get_mut().expect("new buffer");
        let period = gst::ClockTime::SECOND.mul_div_floor(1, 30).expect("period");
        r.set_pts(period * i);
        r.set_duration(period);
        b
    }

    /// Pushes `live` and `fallback` frames (`None`: that input ends at once, without a frame)
    /// through a switch with the given pad alphas; returns what came out.
    fn run(
        live: Option<&[gst::Buffer]>,
        fallback: &[gst::Buffer],
        live_alpha: f64,
    ) -> Vec<gst::Buffer> {
        register().expect("register");
        let pipeline = gst::Pipeline::new();
        let switch = gst::ElementFactory::make(FACTORY).build().expect("switch");
        let sink = gst_app::AppSink::builder().sync(false).build();
        pipeline
            .add_many([&switch, sink.upcast_ref()])
            .expect("add");
        switch.link(&sink).expect("link");
        let mut srcs = Vec::new();
        for (zorder, alpha) in [(0u32, 1.0 - live_alpha), (1, live_alpha)] {
            let src = gst_app::AppSrc::builder()
                .caps(&caps())
                .format(gst::Format::Time)
                .build();
            pipeline.add(&src).expect("add src");
            let pad = switch.request_pad_simple("sink_%u").expect("pad");
            pad.set_property("zorder", zorder);
            pad.set_property("alpha", alpha);
            src.static_pad("src")
                .expect("src")
                .link(&pad)
                .expect("link src");
            srcs.push(src);
        }
        pipeline.set_state(gst::State::Playing).expect("play");
        for b in fallback {
            srcs[0].push_buffer(b.clone()).expect("push");
        }
        for b in live.unwrap_or(&[]) {
            srcs[1].push_buffer(b.clone()).expect("push");
        }
        for s in &srcs {
            s.end_of_stream().expect("eos");
        }
        let mut out = Vec::new();
        while let Ok(sample) = sink.pull_sample() {
            out.extend(sample.buffer_owned());
        }
        pipeline.set_state(gst::State::Null).expect("stop");
        out
    }

    fn luma(b: &gst::Buffer) -> u8 {
        b.map_readable().expect("map")[0]
    }

    #[test]
    fn shows_the_visible_input_without_copying_it() {
        let live: Vec<_> = (0..3).map(|i| frame(200, i)).collect();
        let fallback: Vec<_> = (0..3).map(|i| frame(50, i)).collect();
        let out = run(Some(&live), &fallback, 0.0);
        assert_eq!(out.len(), 3, "one output frame per input frame period");
        for (o, f) in out.iter().zip(&fallback) {
            assert_eq!(
                luma(o),
                50,
                "the fallback is visible, the live input is not"
            );
            assert_eq!(
                o.peek_memory(0).as_ptr(),
                f.peek_memory(0).as_ptr(),
                "the output shares the input's memory"
            );
        }
        // a writer downstream (the overlay maps frames this way) gets its own copy: the
        // fallback's frame, which may be shown again, is never drawn on
        let mut drawn = out[0].clone();
        let info = gst_video::VideoInfo::from_caps(&caps()).expect("info");
        {
            let mut f = gst_video::VideoFrameRef::from_buffer_ref_writable(drawn.make_mut(), &info)
                .expect("writable map");
            f.plane_data_mut(0).expect("luma")[0] = 235;
        }
        assert_eq!(luma(&drawn), 235);
        assert_eq!(luma(&fallback[0]), 50, "the input frame is untouched");
        assert_eq!(luma(&out[0]), 50, "so is the output frame that shares it");

        let out = run(Some(&live), &fallback, 1.0);
        assert!(
            out.iter().all(|o| luma(o) == 200),
            "live on top once visible"
        );
        let pts: Vec<_> = out.iter().map(|o| o.pts()).collect();
        let want: Vec<_> = live.iter().map(|f| f.pts()).collect();
        assert_eq!(pts, want, "output timestamps are the output frame grid");
    }

    #[test]
    fn black_when_the_visible_input_has_no_frame() {
        let fallback: Vec<_> = (0..2).map(|i| frame(50, i)).collect();
        let out = run(None, &fallback, 1.0);
        assert_eq!(out.len(), 2);
        for o in &out {
            let map = o.map_readable().expect("map");
            let y = (W * H) as usize;
            assert!(map[..y].iter().all(|&v| v == 16), "video-range black luma");
            assert!(map[y..].iter().all(|&v| v == 128), "neutral chroma");
        }
    }
}
