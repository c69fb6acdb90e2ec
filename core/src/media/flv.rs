//! The few FLV facts the core needs: building tags from RTMP messages for the per-session
//! demuxer, recognising video keyframes in the muxed output, and naming codecs for errors.
//! Layout per the FLV specification v10.1, annex E.

/// FLV tag types.
pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;

/// The 13 bytes that open an FLV stream: signature, version 1, audio+video flags, header size 9,
/// then PreviousTagSize0 = 0.
pub fn stream_header() -> [u8; 13] {
    [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// One FLV tag (11-byte header, body, 4-byte PreviousTagSize) for an RTMP audio or video message
/// body. `ts_ms` is the tag timestamp in milliseconds (32 bits: 24 low + 8 extended).
pub fn tag(tag_type: u8, ts_ms: u32, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut out = Vec::with_capacity(11 + body.len() + 4);
    out.push(tag_type);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&(ts_ms & 0x00ff_ffff).to_be_bytes()[1..]);
    out.push((ts_ms >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(&(11 + len).to_be_bytes());
    out
}

/// One audio or video tag: its type, timestamp (ms) and body (the RTMP message body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub tag_type: u8,
    pub ts: u32,
    pub body: Vec<u8>,
}

/// The audio and video tags of an FLV byte stream (the header skipped when present, other tag
/// types and empty bodies dropped, a truncated last tag left out). The reader of [`tag`].
pub fn tags(d: &[u8]) -> Vec<Tag> {
    let mut at = if d.starts_with(b"FLV") { 13 } else { 0 };
    let mut out = Vec::new();
    while at + 11 <= d.len() {
        let len =
            usize::from(d[at + 1]) << 16 | usize::from(d[at + 2]) << 8 | usize::from(d[at + 3]);
        let ts = u32::from_be_bytes([d[at + 7], d[at + 4], d[at + 5], d[at + 6]]);
        let Some(body) = d.get(at + 11..at + 11 + len) else {
            break;
        };
        if matches!(d[at], TAG_AUDIO | TAG_VIDEO) && !body.is_empty() {
            out.push(Tag {
                tag_type: d[at],
                ts,
                body: body.to_vec(),
            });
        }
        at += 11 + len + 4;
    }
    out
}

/// True when `data` is a whole FLV video tag holding a keyframe (frame type 1).
pub fn is_video_keyframe_tag(data: &[u8]) -> bool {
    data.len() > 11 && data[0] == TAG_VIDEO && data[11] >> 4 == 1
}

/// Whether a video message body is an AVC sequence header (AVCDecoderConfigurationRecord).
pub fn is_avc_sequence_header(body: &[u8]) -> bool {
    body.len() >= 2 && body[0] & 0x0f == 7 && body[1] == 0
}

/// Whether an audio message body is an AAC sequence header (AudioSpecificConfig).
pub fn is_aac_sequence_header(body: &[u8]) -> bool {
    body.len() >= 2 && body[0] >> 4 == 10 && body[1] == 0
}

/// Whether a body of tag type `tag_type` is its track's AVC or AAC sequence header.
pub fn is_sequence_header(tag_type: u8, body: &[u8]) -> bool {
    match tag_type {
        TAG_VIDEO => is_avc_sequence_header(body),
        TAG_AUDIO => is_aac_sequence_header(body),
        _ => false,
    }
}

/// Whether a video message body is an AVC end of sequence (AVCPacketType 2).
pub fn is_avc_end_of_sequence(body: &[u8]) -> bool {
    body.len() >= 2 && body[0] & 0x0f == 7 && body[1] == 2
}

/// For an RTMP video message body holding an H.264 keyframe (frame type 1, AVC NALU packet), the
/// frame's composition time offset in ms (PTS = DTS + offset). `None` for anything else,
/// including sequence headers.
pub fn avc_keyframe_cts(body: &[u8]) -> Option<i32> {
    if body.len() < 5 || body[0] != 0x17 || body[1] != 1 {
        return None;
    }
    let raw = (u32::from(body[2]) << 16) | (u32::from(body[3]) << 8) | u32::from(body[4]);
    // 24-bit signed
    Some(((raw << 8) as i32) >> 8)
}

/// A codec in an RTMP message that onair cannot ingest, named for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unsupported video codec {0}: onair ingests H.264 (OBS: Encoder x264 or NVENC H.264)")]
    Video(String),
    #[error("unsupported audio codec {0}: onair ingests AAC (OBS: Audio Encoder AAC)")]
    Audio(String),
}

/// Checks the first byte(s) of an RTMP video message body: H.264 (AVC, codec id 7) only.
/// Enhanced RTMP (the 0x80 flag, a FourCC follows) is refused unless it is `avc1`.
pub fn check_video_codec(body: &[u8]) -> Result<(), CodecError> {
    let Some(&b0) = body.first() else {
        return Ok(()); // empty messages carry nothing to check
    };
    if b0 & 0x80 != 0 {
        let fourcc = body
            .get(1..5)
            .map(|f| String::from_utf8_lossy(f).into_owned());
        return match fourcc.as_deref() {
            Some("avc1") => Ok(()),
            Some(f) => Err(CodecError::Video(format!("'{f}' (enhanced RTMP)"))),
            None => Err(CodecError::Video("(truncated enhanced RTMP header)".into())),
        };
    }
    match b0 & 0x0f {
        7 => Ok(()),
        2 => Err(CodecError::Video("Sorenson H.263".into())),
        4 | 5 => Err(CodecError::Video("VP6".into())),
        12 => Err(CodecError::Video("HEVC".into())),
        id => Err(CodecError::Video(format!("id {id}"))),
    }
}

/// Checks the first byte of an RTMP audio message body: AAC (sound format 10) only.
pub fn check_audio_codec(body: &[u8]) -> Result<(), CodecError> {
    let Some(&b0) = body.first() else {
        return Ok(());
    };
    match b0 >> 4 {
        10 => Ok(()),
        2 => Err(CodecError::Audio("MP3".into())),
        11 => Err(CodecError::Audio("Speex".into())),
        id => Err(CodecError::Audio(format!("id {id}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_layout_matches_the_spec() {
        let t = tag(TAG_VIDEO, 0x0102_0304, &[0x17, 0, 0, 0, 0]);
        assert_eq!(t[0], 9);
        assert_eq!(&t[1..4], &[0, 0, 5]); // data size
        assert_eq!(&t[4..7], &[0x02, 0x03, 0x04]); // low 24 bits
        assert_eq!(t[7], 0x01); // extended
        assert_eq!(&t[t.len() - 4..], &16u32.to_be_bytes());
        assert!(is_video_keyframe_tag(&t));
        assert!(!is_video_keyframe_tag(&tag(TAG_VIDEO, 0, &[0x27, 1])));
        assert!(!is_video_keyframe_tag(&tag(TAG_AUDIO, 0, &[0xaf, 1])));
    }

    #[test]
    fn tags_read_back_what_tag_wrote() {
        let mut file = stream_header().to_vec();
        file.extend(tag(TAG_VIDEO, 0x0102_0304, &[0x17, 1, 0, 0, 0, 9]));
        file.extend(tag(18, 5, b"script data"));
        file.extend(tag(TAG_AUDIO, 7, &[0xaf, 1, 2]));
        file.extend(tag(TAG_AUDIO, 8, &[0xaf, 1, 3]));
        // into the last tag's body (3 bytes, then the 4-byte PreviousTagSize)
        let cut = file.len() - 6;
        let read = tags(&file);
        assert_eq!(read.len(), 3, "script data dropped");
        assert_eq!(read[2].ts, 8);
        assert_eq!(
            (read[0].ts, read[0].body.as_slice()),
            (0x0102_0304, &[0x17, 1, 0, 0, 0, 9][..])
        );
        assert_eq!(read[1].tag_type, TAG_AUDIO);
        assert_eq!(
            tags(&file[..cut]).len(),
            2,
            "the truncated last tag is left out"
        );
        assert!(is_sequence_header(TAG_AUDIO, &[0xaf, 0, 0x11, 0x90]));
        assert!(!is_sequence_header(TAG_VIDEO, &[0xaf, 0]));
        assert!(is_avc_end_of_sequence(&[0x17, 2, 0, 0, 0]));
    }

    #[test]
    fn keyframes_and_their_composition_offset() {
        assert_eq!(avc_keyframe_cts(&[0x17, 1, 0, 0, 66, 0xaa]), Some(66));
        assert_eq!(avc_keyframe_cts(&[0x17, 1, 0xff, 0xff, 0xfe]), Some(-2));
        assert_eq!(
            avc_keyframe_cts(&[0x17, 0, 0, 0, 0]),
            None,
            "sequence header"
        );
        assert_eq!(avc_keyframe_cts(&[0x27, 1, 0, 0, 0]), None, "inter frame");
    }

    #[test]
    fn codecs_are_named() {
        assert!(check_video_codec(&[0x17, 0]).is_ok());
        assert!(check_audio_codec(&[0xaf, 0]).is_ok());
        let e = check_video_codec(&[0x1c, 0]).expect_err("hevc");
        assert!(e.to_string().contains("HEVC"));
        let e = check_video_codec(&[0x90, b'h', b'v', b'c', b'1']).expect_err("ex hevc");
        assert!(e.to_string().contains("hvc1"));
        let e = check_audio_codec(&[0x2f]).expect_err("mp3");
        assert!(e.to_string().contains("MP3"));
    }
}
