//! The copy path's splicer (issue 27, first part: the rules, not yet wired to a channel): it
//! forwards the publisher's own H.264/AAC packets untouched and splices a fallback encoded to
//! match, on keyframes, into one continuous FLV stream for a platform connection. It works on
//! RTMP message bodies (the FLV tag bodies, `video`/`audio` below) and has no clock, no lock and
//! no GStreamer element, so every rule is tested here on byte strings.
//!
//! The rules (the ones MediaMTX's `alwaysAvailable` and InstantClone follow, and the bugs their
//! users reported when one was broken):
//! - **One sequence header per connection.** The first source's AVC and AAC sequence headers
//!   open the connection; every later one is read (it describes its source) and never sent.
//! - **Parameter sets in-band.** Every IDR that goes out carries its source's SPS and PPS in
//!   front of it (AVCC NAL units from that source's sequence header), so a viewer's decoder holds
//!   both sources' parameter sets; they must use **different SPS ids** (the fallback is encoded
//!   with x264's `sps-id`), else [`Fit::Misfit`].
//! - **Matched fallback.** A live source fits only with the connection's size, NAL length size
//!   and AudioSpecificConfig; a misfit is reported ([`Fit`]) for the channel to decide (re-encode
//!   that session) instead of changing the sequence header mid-connection.
//! - **Cuts on video keyframes only.** To live on the armed session's next video IDR (never an
//!   audio "keyframe"), to the fallback on the fallback's next IDR; the source's audio before
//!   that IDR is dropped, so A/V stay in step.
//! - **No end of sequence.** An AVC end-of-sequence packet (a muxer's at EOS, a looped clip's)
//!   is never forwarded: it would make a viewer's decoder flush mid-stream.
//! - **Continuous timestamps.** Each segment is re-stamped to follow the last tag out by one
//!   frame (`out = out_base + (ts - segment_start)`), so they never jump or run backwards, and
//!   do not inflate on every reconnect. Composition offsets (PTS − DTS) are kept as they are.

use crate::media::flv::{
    self, TAG_AUDIO, TAG_VIDEO, Tag, avc_keyframe_cts, is_aac_sequence_header,
    is_avc_end_of_sequence, is_avc_sequence_header,
};

/// An AVC sequence header (AVCDecoderConfigurationRecord, ISO/IEC 14496-15 §5.3.3.1) as the
/// splicer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// Bytes in each NAL unit's length prefix (1, 2 or 4; OBS and x264 use 4).
    pub nal_length_size: usize,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
    /// `seq_parameter_set_id` of the first SPS.
    pub sps_id: u32,
    /// The picture size the first SPS declares (after cropping), pixels.
    pub width: u32,
    pub height: u32,
}

/// Why a sequence header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not an H.264 (AVC) sequence header")]
    NotAvc,
    #[error("not an AAC sequence header")]
    NotAac,
    #[error("truncated or malformed {0}")]
    Malformed(&'static str),
}

impl AvcConfig {
    /// Reads the sequence header in an FLV video tag body (`0x17 0x00 CTS[3] record`).
    pub fn parse(video: &[u8]) -> Result<AvcConfig, HeaderError> {
        if video.len() < 5 || !is_avc_sequence_header(video) {
            return Err(HeaderError::NotAvc);
        }
        let r = &video[5..];
        let bad = || HeaderError::Malformed("AVCDecoderConfigurationRecord");
        if r.len() < 7 || r[0] != 1 {
            return Err(bad());
        }
        let nal_length_size = usize::from(r[4] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(bad());
        }
        let mut at = 5;
        let sets = |count: usize, at: &mut usize| -> Result<Vec<Vec<u8>>, HeaderError> {
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let len = usize::from(u16::from_be_bytes([
                    *r.get(*at).ok_or_else(bad)?,
                    *r.get(*at + 1).ok_or_else(bad)?,
                ]));
                let nal = r.get(*at + 2..*at + 2 + len).ok_or_else(bad)?;
                out.push(nal.to_vec());
                *at += 2 + len;
            }
            Ok(out)
        };
        let sps_count = usize::from(r[at] & 0x1f);
        at += 1;
        let sps = sets(sps_count, &mut at)?;
        let pps_count = usize::from(*r.get(at).ok_or_else(bad)?);
        at += 1;
        let pps = sets(pps_count, &mut at)?;
        let first = sps.first().ok_or(HeaderError::Malformed("SPS (none)"))?;
        if pps.is_empty() {
            return Err(HeaderError::Malformed("PPS (none)"));
        }
        let s = Sps::parse(first).ok_or(HeaderError::Malformed("SPS"))?;
        Ok(AvcConfig {
            nal_length_size,
            sps,
            pps,
            sps_id: s.id,
            width: s.width,
            height: s.height,
        })
    }
}

/// The fields of an H.264 SPS (ITU-T H.264 §7.3.2.1.1) the splicer checks.
struct Sps {
    id: u32,
    width: u32,
    height: u32,
}

impl Sps {
    /// Parses a SPS NAL unit (with its 1-byte NAL header). `None` when malformed.
    fn parse(nal: &[u8]) -> Option<Sps> {
        if nal.first()? & 0x1f != 7 {
            return None;
        }
        let mut b = Bits::new(&nal[1..]);
        let profile = b.bits(8)?;
        b.bits(16)?; // constraint flags, level
        let id = b.ue()?;
        let mut chroma = 1;
        if matches!(
            profile,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            chroma = b.ue()?;
            if chroma == 3 {
                b.bits(1)?; // separate_colour_plane_flag
            }
            b.ue()?; // bit_depth_luma_minus8
            b.ue()?; // bit_depth_chroma_minus8
            b.bits(1)?; // qpprime_y_zero_transform_bypass_flag
            if b.bits(1)? == 1 {
                // seq_scaling_matrix_present_flag: skip the lists (§7.3.2.1.1.1)
                for i in 0..if chroma == 3 { 12 } else { 8 } {
                    if b.bits(1)? == 1 {
                        let size = if i < 6 { 16 } else { 64 };
                        let (mut last, mut next) = (8i64, 8i64);
                        for _ in 0..size {
                            if next != 0 {
                                next = (last + b.se()? + 256) % 256;
                            }
                            last = if next == 0 { last } else { next };
                        }
                    }
                }
            }
        }
        b.ue()?; // log2_max_frame_num_minus4
        match b.ue()? {
            0 => {
                b.ue()?; // log2_max_pic_order_cnt_lsb_minus4
            }
            1 => {
                b.bits(1)?;
                b.se()?;
                b.se()?;
                for _ in 0..b.ue()?.min(255) {
                    b.se()?;
                }
            }
            _ => {}
        }
        b.ue()?; // max_num_ref_frames
        b.bits(1)?; // gaps_in_frame_num_value_allowed_flag
        let width_mbs = b.ue()? + 1;
        let height_units = b.ue()? + 1;
        let frame_mbs_only = b.bits(1)?;
        if frame_mbs_only == 0 {
            b.bits(1)?; // mb_adaptive_frame_field_flag
        }
        b.bits(1)?; // direct_8x8_inference_flag
        let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
        if b.bits(1)? == 1 {
            (cl, cr, ct, cb) = (b.ue()?, b.ue()?, b.ue()?, b.ue()?);
        }
        let field = 2 - frame_mbs_only;
        let (unit_x, unit_y) = match chroma {
            0 | 3 => (1, field),
            2 => (2, field),
            _ => (2, 2 * field),
        };
        let width = (width_mbs * 16).checked_sub(unit_x * (cl + cr))?;
        let height = (field * height_units * 16).checked_sub(unit_y * (ct + cb))?;
        Some(Sps { id, width, height })
    }
}

/// An RBSP bit reader that drops emulation-prevention bytes (`00 00 03`).
struct Bits<'a> {
    data: &'a [u8],
    byte: usize,
    bit: u32,
    zeros: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits {
            data,
            byte: 0,
            bit: 0,
            zeros: 0,
        }
    }

    fn bit(&mut self) -> Option<u32> {
        if self.bit == 0 {
            // entering a byte: an 0x03 after two zero bytes is emulation prevention
            if self.zeros >= 2 && *self.data.get(self.byte)? == 3 {
                self.byte += 1;
                self.zeros = 0;
            }
            let b = *self.data.get(self.byte)?;
            self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
        }
        let v = (u32::from(self.data[self.byte]) >> (7 - self.bit)) & 1;
        self.bit += 1;
        if self.bit == 8 {
            self.bit = 0;
            self.byte += 1;
        }
        Some(v)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some((acc << 1) | self.bit()?))
    }

    /// Exp-Golomb unsigned (§9.1); at most 31 leading zeros.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// The AudioSpecificConfig in an FLV audio tag body (`0xAF 0x00 ASC…`).
pub fn aac_config(audio: &[u8]) -> Result<&[u8], HeaderError> {
    if audio.len() < 4 || !is_aac_sequence_header(audio) {
        return Err(HeaderError::NotAac);
    }
    Ok(&audio[2..])
}

/// What two AudioSpecificConfigs must share to carry each other's frames: the audio object
/// type, the sampling frequency index and the channel configuration (ISO/IEC 14496-3
/// §1.6.2.1; the first 13 bits). Extensions after them (an explicit "no SBR" signal, as
/// ffmpeg writes) do not change how AAC-LC frames decode.
fn aac_essentials(asc: &[u8]) -> Option<(u8, u8, u8)> {
    let (b0, b1) = (*asc.first()?, *asc.get(1)?);
    Some((b0 >> 3, ((b0 & 7) << 1) | (b1 >> 7), (b1 >> 3) & 0x0f))
}

/// Whether an FLV video tag body is an H.264 keyframe with coded data (an IDR packet).
fn is_idr(video: &[u8]) -> bool {
    video.len() > 5 && avc_keyframe_cts(video).is_some()
}

/// `video` (an H.264 NALU packet) with `cfg`'s SPS and PPS in front of its first NAL unit, unless
/// it already carries an SPS (NAL type 7). `None` when its NAL units do not parse.
pub fn with_parameter_sets(video: &[u8], cfg: &AvcConfig) -> Option<Vec<u8>> {
    let n = cfg.nal_length_size;
    let nals = &video.get(5..)?;
    let mut at = 0;
    while at < nals.len() {
        let len = nals
            .get(at..at + n)?
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        let nal = nals.get(at + n..at + n + len)?;
        if nal.first().is_some_and(|h| h & 0x1f == 7) {
            return Some(video.to_vec());
        }
        at += n + len;
    }
    let extra: usize = cfg.sps.iter().chain(&cfg.pps).map(|s| n + s.len()).sum();
    let mut out = Vec::with_capacity(video.len() + extra);
    out.extend_from_slice(&video[..5]);
    for set in cfg.sps.iter().chain(&cfg.pps) {
        out.extend_from_slice(&(set.len() as u32).to_be_bytes()[4 - n..]);
        out.extend_from_slice(set);
    }
    out.extend_from_slice(nals);
    Some(out)
}

/// Whether a live source can be spliced into the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    Fits,
    /// It cannot, and why (for the log and the status): the channel re-encodes it instead.
    Misfit(String),
}

/// A source's headers, as its sequence headers said.
#[derive(Debug, Clone, Default)]
struct Headers {
    video: Option<(Vec<u8>, AvcConfig)>,
    audio: Option<Vec<u8>>,
}

/// Which source feeds the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Fallback,
    Live,
}

/// The splicer of one platform connection.
#[derive(Debug)]
pub struct Splicer {
    /// One frame at the connection's rate, ms: the step from the last tag to a new segment.
    frame_ms: u32,
    /// The connection's own headers, sent once (the first source's).
    sent: Option<Headers>,
    live: Headers,
    fallback: Headers,
    /// What feeds the connection now, and what waits for its next IDR to take over.
    on_air: Option<Feed>,
    wanted: Feed,
    /// The current segment: its first source timestamp and its first output timestamp.
    segment: (u32, u32),
    /// The last output timestamp of each track (video, audio), ms.
    last_out: [Option<u32>; 2],
    /// The latest video presentation time out (DTS + composition offset), ms: with B-frames
    /// it runs ahead of the last DTS, and the next segment must not show a frame before it.
    last_pts: Option<u32>,
}

impl Splicer {
    /// A connection at `fps` frames per second, starting on the fallback.
    pub fn new(fps: u32) -> Splicer {
        Splicer {
            frame_ms: 1000 / fps.max(1),
            sent: None,
            live: Headers::default(),
            fallback: Headers::default(),
            on_air: None,
            wanted: Feed::Fallback,
            segment: (0, 0),
            last_out: [None, None],
            last_pts: None,
        }
    }

    /// The source on air (`None` before the first IDR).
    pub fn on_air(&self) -> Option<Feed> {
        self.on_air
    }

    /// The source wanted on air (it takes over on its next IDR when it is not on air yet).
    pub fn wanted(&self) -> Feed {
        self.wanted
    }

    /// Cuts to live on the live source's next video IDR.
    pub fn arm_live(&mut self) {
        self.wanted = Feed::Live;
    }

    /// Cuts to the fallback on the fallback's next video IDR (the live source stays on air until
    /// then: the fallback loop's GOP should be short).
    pub fn cut_to_fallback(&mut self) {
        self.wanted = Feed::Fallback;
    }

    /// A new live session: its headers are forgotten until it sends its own, and when live was
    /// on air, the new session's next IDR starts a new segment (nothing goes out until then).
    pub fn live_restarted(&mut self) {
        self.live = Headers::default();
        if self.on_air == Some(Feed::Live) {
            self.on_air = None;
        }
    }

    /// The fallback was replaced (another clip, its times from 0): its headers are learned
    /// afresh, and when it was on air its next IDR starts a new segment.
    pub fn fallback_restarted(&mut self) {
        self.fallback = Headers::default();
        if self.on_air == Some(Feed::Fallback) {
            self.on_air = None;
        }
    }

    /// A tag of the fallback (`Feed::Fallback`) or the live source: the tags to send for it.
    pub fn push(&mut self, from: Feed, tag_type: u8, ts: u32, body: &[u8]) -> Vec<Tag> {
        if self.header(from, tag_type, body) {
            return Vec::new();
        }
        // an AVC end of sequence (packet type 2, a muxer's EOS, a looped clip's end) would make
        // a viewer's decoder flush mid-stream: never forwarded
        if tag_type == TAG_VIDEO && is_avc_end_of_sequence(body) {
            return Vec::new();
        }
        let video = tag_type == TAG_VIDEO;
        if video && is_idr(body) && self.wanted == from && self.on_air != Some(from) {
            if from == Feed::Live && !matches!(self.live_fit(), Fit::Fits) {
                return Vec::new();
            }
            self.start_segment(from, ts);
        }
        if self.on_air != Some(from) || ts.wrapping_sub(self.segment.0) > u32::MAX / 2 {
            return Vec::new(); // not on air, or before its segment began
        }
        let mut out = Vec::new();
        if self.sent.is_none() {
            let first = self.source(from).clone();
            if let Some((v, _)) = &first.video {
                out.push(self.stamp(TAG_VIDEO, self.segment.1, v.clone()));
            }
            if let Some(a) = &first.audio {
                out.push(self.stamp(TAG_AUDIO, self.segment.1, a.clone()));
            }
            self.sent = Some(first);
        }
        let ts_out = self.segment.1.wrapping_add(ts.wrapping_sub(self.segment.0));
        let body = match (video && is_idr(body), &self.source(from).video) {
            (true, Some((_, cfg))) => {
                with_parameter_sets(body, cfg).unwrap_or_else(|| body.to_vec())
            }
            _ => body.to_vec(),
        };
        out.push(self.stamp(tag_type, ts_out, body));
        out
    }

    /// Whether the live source's headers fit the connection's (before the connection opened:
    /// whether they fit the fallback's).
    pub fn live_fit(&self) -> Fit {
        self.fit(&self.live)
    }

    /// Whether a source with these sequence headers (FLV tag bodies) would fit, without
    /// making it the live source.
    pub fn fit_headers(&self, video: Option<&[u8]>, audio: Option<&[u8]>) -> Fit {
        let headers = Headers {
            video: video.and_then(|v| Some((v.to_vec(), AvcConfig::parse(v).ok()?))),
            audio: audio.map(<[u8]>::to_vec),
        };
        self.fit(&headers)
    }

    fn fit(&self, candidate: &Headers) -> Fit {
        let conn = self.sent.as_ref().unwrap_or(&self.fallback);
        let (Some((_, live)), Some((_, ours))) = (&candidate.video, &conn.video) else {
            return Fit::Misfit("no H.264 sequence header yet".into());
        };
        if (live.width, live.height) != (ours.width, ours.height) {
            return Fit::Misfit(format!(
                "the publisher sends {}x{}, the connection carries {}x{}",
                live.width, live.height, ours.width, ours.height
            ));
        }
        if live.nal_length_size != ours.nal_length_size {
            return Fit::Misfit(format!(
                "NAL length size {} against the connection's {}",
                live.nal_length_size, ours.nal_length_size
            ));
        }
        let fallback_id = self.fallback.video.as_ref().map(|(_, c)| c.sps_id);
        if Some(live.sps_id) == fallback_id {
            return Fit::Misfit(format!(
                "the publisher's SPS id {} is the fallback's: the fallback must be encoded with another",
                live.sps_id
            ));
        }
        match (&candidate.audio, &conn.audio) {
            (Some(a), Some(b))
                if aac_config(a).ok().and_then(aac_essentials)
                    != aac_config(b).ok().and_then(aac_essentials) =>
            {
                Fit::Misfit(
                    "the publisher's AudioSpecificConfig (AAC profile, rate or channels) differs"
                        .into(),
                )
            }
            _ => Fit::Fits,
        }
    }

    /// Reads a sequence header into its source's headers; `true` when `body` was one.
    fn header(&mut self, from: Feed, tag_type: u8, body: &[u8]) -> bool {
        let slot = match from {
            Feed::Live => &mut self.live,
            Feed::Fallback => &mut self.fallback,
        };
        if !flv::is_sequence_header(tag_type, body) {
            return false;
        }
        if tag_type == TAG_AUDIO {
            slot.audio = Some(body.to_vec());
        } else if let Ok(cfg) = AvcConfig::parse(body) {
            slot.video = Some((body.to_vec(), cfg));
        }
        true
    }

    fn source(&self, from: Feed) -> &Headers {
        match from {
            Feed::Live => &self.live,
            Feed::Fallback => &self.fallback,
        }
    }

    /// A segment of `from` starts with its IDR at source time `ts`, where the last frame out
    /// ends: the later of the last video frame's end (its presentation time, with B-frames
    /// after its DTS, plus one frame) and the last AAC frame's end (1024 samples), so that
    /// neither track steps back or leaves more of a hole than the other needs.
    fn start_segment(&mut self, from: Feed, ts: u32) {
        // on the wrapping 32-bit millisecond clock
        let later = |a: Option<u32>, b: Option<u32>| match (a, b) {
            (Some(x), Some(y)) => Some(if (y.wrapping_sub(x) as i32) > 0 { y } else { x }),
            (one, other) => one.or(other),
        };
        let video_end =
            later(self.last_out[0], self.last_pts).map(|t| t.wrapping_add(self.frame_ms));
        let audio_end = self.last_out[1].map(|t| t.wrapping_add(self.aac_frame_ms()));
        let out = later(video_end, audio_end).unwrap_or(0);
        self.segment = (ts, out);
        self.on_air = Some(from);
    }

    /// One AAC frame (1024 samples) at the connection's sampling rate, in whole ms (rounded
    /// down; 21 at 48 kHz, 23 at 44.1 kHz; 21 when unknown).
    fn aac_frame_ms(&self) -> u32 {
        const RATES: [u32; 13] = [
            96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
            8_000, 7_350,
        ];
        let rate = self
            .sent
            .as_ref()
            .and_then(|h| h.audio.as_deref())
            .and_then(|a| aac_config(a).ok())
            .and_then(aac_essentials)
            .and_then(|(_, index, _)| RATES.get(usize::from(index)).copied())
            .unwrap_or(48_000);
        1024 * 1000 / rate
    }

    fn stamp(&mut self, tag_type: u8, ts: u32, body: Vec<u8>) -> Tag {
        // never backwards within a track (a platform drops or rejects DTS going back)
        let track = &mut self.last_out[usize::from(tag_type == TAG_AUDIO)];
        let ts = match *track {
            Some(last) if ts.wrapping_sub(last) > u32::MAX / 2 => last,
            _ => ts,
        };
        *track = Some(ts);
        if tag_type == TAG_VIDEO && body.len() >= 5 && body[1] == 1 {
            let raw = u32::from_be_bytes([0, body[2], body[3], body[4]]);
            let cts = ((raw << 8) as i32) >> 8; // 24-bit signed
            let pts = ts.wrapping_add_signed(cts);
            self.last_pts = match self.last_pts {
                Some(p) if (pts.wrapping_sub(p) as i32) <= 0 => Some(p),
                _ => Some(pts),
            };
        }
        Tag { tag_type, ts, body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Sequence headers from ffmpeg's libx264 (veryfast, 30 fps) and aac, as FLV tag bodies.
    const V360: &str = "17000000000164001effe1001a6764001eacd940a02ff970110000030001000003003c0f162d9601000468ef8fcbfdf8f800";
    const V720: &str = "17000000000164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000468ef8fcbfdf8f800";
    /// 640x360 with x264's `sps-id=1`: the fallback's.
    const V360_SPS1: &str = "17000000000164001effe1001a6764001e4b3650280bfe5c0440000003004000000f03c58b6580010005684af8fcb0fdf8f800";
    /// AAC-LC 44.1 kHz stereo (with explicit SBR signalling) and 48 kHz stereo.
    const A441: &str = "af00121056e500";
    const A48: &str = "af001190";

    /// An IDR packet: SEI and IDR NAL units, 4-byte lengths, composition offset 0.
    fn idr(mark: u8) -> Vec<u8> {
        let mut b = vec![0x17, 1, 0, 0, 0];
        for nal in [vec![6, 5, 1, mark], vec![0x65, 0x88, mark]] {
            b.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            b.extend_from_slice(&nal);
        }
        b
    }

    fn delta(mark: u8) -> Vec<u8> {
        vec![0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, mark]
    }

    fn aac(mark: u8) -> Vec<u8> {
        vec![0xaf, 1, 0x21, mark]
    }

    /// NAL unit types of an H.264 packet with 4-byte lengths.
    fn nal_types(body: &[u8]) -> Vec<u8> {
        let (mut at, mut out) = (5, Vec::new());
        while at + 4 <= body.len() {
            let len = u32::from_be_bytes(body[at..at + 4].try_into().expect("4")) as usize;
            out.push(body[at + 4] & 0x1f);
            at += 4 + len;
        }
        out
    }

    #[test]
    fn sequence_headers_are_read_as_x264_wrote_them() {
        let c = AvcConfig::parse(&hex(V360)).expect("360p");
        assert_eq!(
            (c.width, c.height, c.sps_id, c.nal_length_size),
            (640, 360, 0, 4)
        );
        assert_eq!((c.sps.len(), c.pps.len()), (1, 1));
        let c = AvcConfig::parse(&hex(V720)).expect("720p");
        assert_eq!((c.width, c.height), (1280, 720));
        let c = AvcConfig::parse(&hex(V360_SPS1)).expect("sps-id 1");
        assert_eq!((c.width, c.height, c.sps_id), (640, 360, 1));
        assert_eq!(aac_config(&hex(A48)).expect("aac"), [0x11, 0x90]);
        assert_eq!(
            AvcConfig::parse(&[0x1c, 0, 0, 0, 0, 1]),
            Err(HeaderError::NotAvc)
        );
        assert_eq!(aac_config(&[0x2f, 0, 1, 2]), Err(HeaderError::NotAac));
    }

    #[test]
    fn no_input_makes_the_parsers_panic() {
        let v = hex(V360);
        // every truncation and every single-byte change of a real header
        for n in 0..v.len() {
            let _ = AvcConfig::parse(&v[..n]);
            for x in [0x00, 0xff, 0x80] {
                let mut m = v.clone();
                m[n] = x;
                let _ = AvcConfig::parse(&m);
                if let Ok(c) = AvcConfig::parse(&v) {
                    let _ = with_parameter_sets(&m, &c);
                }
            }
        }
    }

    #[test]
    fn an_idr_gets_its_parameter_sets_in_band_once() {
        let c = AvcConfig::parse(&hex(V360)).expect("360p");
        let with = with_parameter_sets(&idr(1), &c).expect("parses");
        assert_eq!(nal_types(&with), [7, 8, 6, 5]);
        // the coded data itself is untouched: the old packet is the new one's tail
        assert!(with.ends_with(&idr(1)[5..]));
        assert_eq!(
            with_parameter_sets(&with, &c).expect("parses"),
            with,
            "twice"
        );
        assert_eq!(
            with_parameter_sets(&[0x17, 1, 0, 0, 0, 0, 0, 0, 9, 0x65], &c),
            None
        );
    }

    /// The fallback (sps-id 1, 44.1 kHz) opens the connection; a matching publisher goes on air.
    fn on_fallback_then_live() -> Splicer {
        let mut s = Splicer::new(30);
        assert!(
            s.push(Feed::Fallback, TAG_VIDEO, 0, &hex(V360_SPS1))
                .is_empty()
        );
        assert!(s.push(Feed::Fallback, TAG_AUDIO, 0, &hex(A441)).is_empty());
        let out = s.push(Feed::Fallback, TAG_VIDEO, 0, &idr(1));
        // the connection opens with the fallback's headers, once
        assert_eq!(out.len(), 3);
        assert_eq!(
            (out[0].body.clone(), out[1].body.clone()),
            (hex(V360_SPS1), hex(A441))
        );
        assert_eq!(nal_types(&out[2].body), [7, 8, 6, 5]);
        for i in 1..30u32 {
            s.push(Feed::Fallback, TAG_VIDEO, i * 33, &delta(1));
        }
        s.push(Feed::Live, TAG_VIDEO, 50_000, &hex(V360));
        s.push(Feed::Live, TAG_AUDIO, 50_000, &hex(A441));
        assert_eq!(s.live_fit(), Fit::Fits);
        s
    }

    #[test]
    fn live_goes_on_air_on_its_video_idr_never_on_audio_and_never_resends_a_header() {
        let mut s = on_fallback_then_live();
        s.arm_live();
        // live audio and delta frames before its IDR: nothing of live goes out
        assert!(s.push(Feed::Live, TAG_AUDIO, 50_010, &aac(7)).is_empty());
        assert!(s.push(Feed::Live, TAG_VIDEO, 50_033, &delta(7)).is_empty());
        assert_eq!(s.on_air(), Some(Feed::Fallback));
        let out = s.push(Feed::Live, TAG_VIDEO, 50_066, &idr(7));
        assert_eq!(s.on_air(), Some(Feed::Live));
        assert_eq!(out.len(), 1, "no sequence header mid-connection: {out:?}");
        // one frame after the fallback's last (29 * 33 = 957 ms)
        assert_eq!(out[0].ts, 957 + 33);
        assert_eq!(nal_types(&out[0].body), [7, 8, 6, 5]);
        // then the publisher's packets byte for byte, re-stamped on the same step
        let a = s.push(Feed::Live, TAG_AUDIO, 50_080, &aac(8));
        assert_eq!((a[0].ts, a[0].body.clone()), (990 + 14, aac(8)));
        let v = s.push(Feed::Live, TAG_VIDEO, 50_099, &delta(8));
        assert_eq!((v[0].ts, v[0].body.clone()), (990 + 33, delta(8)));
        // the fallback's tags no longer go out
        assert!(
            s.push(Feed::Fallback, TAG_VIDEO, 1_000, &delta(1))
                .is_empty()
        );
    }

    #[test]
    fn back_to_the_fallback_on_its_idr_with_timestamps_still_climbing() {
        let mut s = on_fallback_then_live();
        s.arm_live();
        s.push(Feed::Live, TAG_VIDEO, 50_000, &idr(7));
        let mut last = 0;
        for i in 1..60u32 {
            last = s.push(Feed::Live, TAG_VIDEO, 50_000 + i * 33, &delta(7))[0].ts;
        }
        s.cut_to_fallback();
        // live stays on air until the fallback's loop reaches an IDR (its stamps restart at 0)
        assert!(s.push(Feed::Fallback, TAG_VIDEO, 33, &delta(1)).is_empty());
        assert_eq!(s.on_air(), Some(Feed::Live));
        let out = s.push(Feed::Fallback, TAG_VIDEO, 0, &idr(1));
        assert_eq!(s.on_air(), Some(Feed::Fallback));
        assert_eq!(out[0].ts, last + 33);
        assert_eq!(
            nal_types(&out[0].body),
            [7, 8, 6, 5],
            "the fallback's SPS in-band again"
        );
        // and live again: once more one frame on, never a second header
        let before = s.push(Feed::Fallback, TAG_VIDEO, 33, &delta(1))[0].ts;
        s.arm_live();
        let out = s.push(Feed::Live, TAG_VIDEO, 90_000, &idr(9));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].ts, before + 33);
    }

    /// With B-frames the last live frame shown is not the last one sent: a frame sent at DTS
    /// 100 with a composition offset of 66 ms shows at 166. The fallback's first frame must
    /// show after it (found by the copy e2e test: the platform's decoder got PTS going back).
    #[test]
    fn the_fallback_starts_after_the_last_live_frame_shown_not_sent() {
        let mut s = on_fallback_then_live();
        s.arm_live();
        s.push(Feed::Live, TAG_VIDEO, 50_000, &idr(7));
        // a P frame shown two frames later (composition offset 66 ms), then the B frame before it
        let mut p = delta(7);
        p[4] = 66;
        let sent = s.push(Feed::Live, TAG_VIDEO, 50_033, &p)[0].ts;
        s.push(Feed::Live, TAG_VIDEO, 50_066, &delta(8));
        s.cut_to_fallback();
        let out = s.push(Feed::Fallback, TAG_VIDEO, 0, &idr(1));
        assert_eq!(
            out[0].ts,
            sent + 66 + 33,
            "one frame after the P frame's presentation time"
        );
    }

    #[test]
    fn a_publisher_that_does_not_fit_stays_off_air_with_the_reason() {
        let mut s = on_fallback_then_live();
        s.push(Feed::Live, TAG_VIDEO, 50_000, &hex(V720));
        let Fit::Misfit(why) = s.live_fit() else {
            panic!("720p fitted a 360p connection")
        };
        assert!(why.contains("1280x720") && why.contains("640x360"), "{why}");
        s.arm_live();
        assert!(s.push(Feed::Live, TAG_VIDEO, 50_033, &idr(2)).is_empty());
        assert_eq!(s.on_air(), Some(Feed::Fallback));
        // the same size but the fallback's SPS id: both would define SPS 1
        s.push(Feed::Live, TAG_VIDEO, 50_066, &hex(V360_SPS1));
        assert!(matches!(s.live_fit(), Fit::Misfit(w) if w.contains("SPS id 1")));
        // the right picture, another audio config
        s.push(Feed::Live, TAG_VIDEO, 50_066, &hex(V360));
        s.push(Feed::Live, TAG_AUDIO, 50_066, &hex(A48));
        assert!(matches!(s.live_fit(), Fit::Misfit(w) if w.contains("AudioSpecificConfig")));
        // the same AAC-LC 44.1 kHz stereo without ffmpeg's explicit no-SBR extension fits
        s.push(Feed::Live, TAG_AUDIO, 50_066, &hex("af001210"));
        assert_eq!(s.live_fit(), Fit::Fits);
        assert_eq!(s.push(Feed::Live, TAG_VIDEO, 50_100, &idr(3)).len(), 1);
    }

    #[test]
    fn a_reconnecting_publisher_does_not_inflate_the_timestamps() {
        let mut s = on_fallback_then_live();
        for (session, start) in [(1u8, 50_000u32), (2, 7), (3, 4_000_000)] {
            s.live_restarted();
            s.push(Feed::Live, TAG_VIDEO, start, &hex(V360));
            s.push(Feed::Live, TAG_AUDIO, start, &hex(A441));
            s.arm_live();
            let first = s.push(Feed::Live, TAG_VIDEO, start, &idr(session))[0].ts;
            let mut last = first;
            for i in 1..30 {
                last = s.push(Feed::Live, TAG_VIDEO, start + i * 33, &delta(session))[0].ts;
            }
            assert_eq!(last - first, 29 * 33, "session {session}");
            s.cut_to_fallback();
            let back = s.push(Feed::Fallback, TAG_VIDEO, 0, &idr(1))[0].ts;
            assert_eq!(
                back,
                last + 33,
                "session {session}: each splice steps one frame"
            );
        }
    }
}

/// The splice rules against a real decoder: a test-pattern publisher from ffmpeg (x264 with SPS
/// id 0, B-frames, AAC) spliced back and forth with a fallback (another x264 stream with
/// `sps-id=1`, or onair's own still GOP), written as one FLV, must decode whole with zero errors
/// (`ffmpeg -xerror`).
#[cfg(test)]
pub(crate) mod decode_tests {
    use std::process::Command;

    use super::*;
    use crate::media::output::still_gop::{FallbackLoop, GopFormat, encode_still};

    /// 640x360 at 30 fps with a 440 Hz tone at 44.1 kHz stereo, `secs` long, from ffmpeg.
    fn ffmpeg_stream(src: &str, x264: &str, secs: &str) -> Vec<Tag> {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s.flv");
        let st = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("{src}size=640x360:rate=30"))
            .args(["-f", "lavfi", "-i", "sine=r=44100:f=440", "-t", secs])
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-bf", "2",
            ])
            .args(["-x264-params", x264, "-pix_fmt", "yuv420p"])
            .args(["-c:a", "aac", "-ac", "2", "-f", "flv"])
            .arg(&path)
            .status()
            .expect("ffmpeg (tools/setup-debian.sh installs it)");
        assert!(st.success(), "ffmpeg {src} {x264}");
        flv::tags(&std::fs::read(&path).expect("flv"))
    }

    /// Writes `tags` as one FLV file in a temporary folder and decodes all of it with ffmpeg;
    /// panics with ffmpeg's messages unless it decodes with zero errors. Decoded as stamped
    /// (`passthrough`, on a 1 ms time base): the null output's default 1/30 s time base puts two
    /// frames 33 ms apart into one slot when a splice has shifted their millisecond phase, and
    /// complains; that says nothing of the stream. Returns the folder and the file.
    pub(crate) fn assert_decodes_clean(tags: &[Tag]) -> (tempfile::TempDir, std::path::PathBuf) {
        let mut file = flv::stream_header().to_vec();
        for t in tags {
            file.extend(flv::tag(t.tag_type, t.ts, &t.body));
        }
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("out.flv");
        std::fs::write(&path, file).expect("write");
        let r = Command::new("ffmpeg")
            .args(["-v", "error", "-xerror", "-i"])
            .arg(&path)
            .args(["-fps_mode", "passthrough", "-enc_time_base:v", "1:1000"])
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg (tools/setup-debian.sh installs it)");
        let errors = String::from_utf8_lossy(&r.stderr);
        assert!(
            r.status.success() && errors.trim().is_empty(),
            "decode errors: {errors}"
        );
        (dir, path)
    }

    /// Three rounds of (fallback 2 loops, live) then the fallback once more, through one
    /// splicer; decoded by ffmpeg. Returns the frames ffprobe counted.
    fn splice_and_decode(fb: &[Tag], live: &[Tag]) -> u32 {
        let mut s = Splicer::new(30);
        let mut sent = Vec::new();
        // the fallback looped on its own clock, as the copy path will feed it
        let lap = fb.len();
        let mut looped = FallbackLoop::new(fb.to_vec(), 30, 44_100).expect("video");
        let mut first = true;
        let mut fallback = |s: &mut Splicer, sent: &mut Vec<Tag>, n: usize| {
            // the two sequence headers come in the first lap only
            let count = n * (lap - 2) + if first { 2 } else { 0 };
            first = false;
            for _ in 0..count {
                let t = looped.next_tag();
                sent.extend(s.push(Feed::Fallback, t.tag_type, t.ts, &t.body));
            }
        };
        for round in 0..3u32 {
            fallback(&mut s, &mut sent, 2);
            s.live_restarted();
            s.arm_live();
            // each publisher session's clock starts elsewhere
            for t in live {
                sent.extend(s.push(Feed::Live, t.tag_type, t.ts + round * 100_000, &t.body));
            }
            assert_eq!(s.live_fit(), Fit::Fits);
            assert_eq!(s.on_air(), Some(Feed::Live), "round {round}");
            s.cut_to_fallback();
        }
        fallback(&mut s, &mut sent, 1);
        let headers = sent
            .iter()
            .filter(|t| flv::is_sequence_header(t.tag_type, &t.body))
            .count();
        assert_eq!(headers, 2, "one video and one audio sequence header in all");
        let (_dir, out) = assert_decodes_clean(&sent);
        let frames = Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(&out)
            .output()
            .expect("ffprobe");
        let n: u32 = String::from_utf8_lossy(&frames.stdout)
            .trim()
            .parse()
            .expect("count");
        let sent_video = sent
            .iter()
            .filter(|t| t.tag_type == TAG_VIDEO && t.body[1] == 1)
            .count() as u32;
        assert_eq!(n, sent_video, "every video frame sent decodes");
        n
    }

    #[test]
    fn a_stream_spliced_back_and_forth_decodes_with_zero_errors() {
        let fb = ffmpeg_stream("color=c=blue:", "sps-id=1", "1");
        let live = ffmpeg_stream("testsrc2=", "sps-id=0", "3");
        // 7 loops of the 1 s fallback and 3 × 3 s of live at 30 fps
        let n = splice_and_decode(&fb, &live);
        assert!(n >= 16 * 30 - 10, "{n} frames");
    }

    #[test]
    fn onairs_still_gop_is_a_fallback_a_decoder_takes_between_publisher_segments() {
        crate::media::init().expect("gstreamer");
        let format = GopFormat {
            video: crate::media::OutputFormat {
                width: 640,
                height: 360,
                fps: 30,
            },
            audio_rate: 44_100,
            audio_channels: 2,
            video_kbps: 300,
        };
        // a mid-grey I420 frame
        let size = 640 * 360 * 3 / 2;
        let frame = gst::Buffer::from_mut_slice(vec![128u8; size]);
        let encoding = std::time::Instant::now();
        let gop = encode_still(&frame, &format, 1).expect("encoded");
        eprintln!(
            "still GOP, 640x360 at 30 fps, 1 s: {} tags in {:?}",
            gop.len(),
            encoding.elapsed()
        );
        let video: Vec<_> = gop.iter().filter(|t| t.tag_type == TAG_VIDEO).collect();
        let cfg = AvcConfig::parse(&video[0].body).expect("sequence header first");
        assert_eq!((cfg.width, cfg.height, cfg.sps_id), (640, 360, 1));
        assert_eq!(
            video.iter().filter(|t| is_idr(&t.body)).count(),
            1,
            "one GOP"
        );
        let frames = video.iter().filter(|t| t.body[1] == 1).count();
        assert_eq!(frames, 30, "one second of frames");
        let live = ffmpeg_stream("testsrc2=", "sps-id=0", "3");
        let n = splice_and_decode(&gop, &live);
        assert!(n >= 16 * 30 - 10, "{n} frames");
    }
}
