//! onair's FLV tag and codec checks on arbitrary tag bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_fuzz::flv;

fuzz_target!(|data: &[u8]| {
    let _ = flv::is_video_keyframe_tag(data);
    let _ = flv::avc_keyframe_cts(data);
    let _ = flv::check_video_codec(data);
    let _ = flv::check_audio_codec(data);
    let _ = flv::tags(data);
    let ts = data
        .get(..4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let tag = flv::tag(9, ts, data);
    assert_eq!(tag.len(), data.len() + 15);
});
