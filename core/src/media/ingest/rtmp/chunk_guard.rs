//! A second, read-only pass over the RTMP chunk stream, ahead of rml_rtmp's parser.
//!
//! rml_rtmp 0.8 trusts some header fields: a chunk header that announces a message shorter than
//! the payload already collected makes `ChunkDeserializer::get_message_data` subtract past zero
//! (a panic in debug builds, a "capacity overflow" panic in release), an extended timestamp below
//! 0xFFFFFF on a continuation subtracts past zero too, and an AMF0 command with fewer than three
//! values (type 20, or type 17, which it parses the same way) panics in
//! `amf0_command::deserialize`; and its AMF0 reader (rml_amf0) recurses once per nesting level,
//! so one ~70 KB command nesting 10 000 levels overflows the thread's stack and aborts the
//! process. The guard follows the chunk stream exactly as
//! that parser does (one payload in progress at a time, headers inherited per chunk stream, the
//! chunk size changing after a complete SetChunkSize message) and refuses those inputs, and any
//! message or chunk size over onair's caps, before the parser sees them. Every command and data
//! message (types 15, 17, 18, 20) is walked by [`super::amf::check`], iteratively and at most
//! [`super::amf::MAX_DEPTH`] levels deep, before rml_amf0 reads it.
//!
//! Sizes: until the stream carries a `publish` command, every message is capped at
//! [`PRE_PUBLISH_MESSAGE_MAX`] (a stranger who never sends a valid key can make onair hold a few
//! KiB, not megabytes); after it, command, data and protocol control messages stay capped at
//! [`CONTROL_MESSAGE_MAX`], and only audio, video and aggregate messages may reach
//! `ingest.max_message_kib`. What the guard cannot foresee is still contained: the ingest
//! catches a panic at the connection boundary.

use std::collections::HashMap;

/// The RTMP default chunk size, until the peer sends SetChunkSize.
const DEFAULT_CHUNK_SIZE: usize = 128;
/// A timestamp field of this value means a 4-byte extended timestamp follows.
const EXTENDED: u32 = 0xFF_FFFF;
/// RTMP message types the guard reads the payload of.
const SET_CHUNK_SIZE: u8 = 1;
const AUDIO: u8 = 8;
const VIDEO: u8 = 9;
/// "AMF3" data: rml_rtmp parses it as AMF0, as is.
const AMF3_DATA: u8 = 15;
/// "AMF3" commands: rml_rtmp parses them as AMF0 after dropping a leading 0 byte.
const AMF3_COMMAND: u8 = 17;
const AMF0_DATA: u8 = 18;
const AMF0_COMMAND: u8 = 20;
const AGGREGATE: u8 = 22;

/// The largest message of any type before the stream carries `publish`, bytes. OBS's and
/// FFmpeg's `connect` (the largest) take well under 1 KiB.
pub const PRE_PUBLISH_MESSAGE_MAX: usize = 16 << 10;
/// The largest command, data or protocol control message after `publish`, bytes
/// (`onMetaData` with an encoder's settings: ~1 KiB).
pub const CONTROL_MESSAGE_MAX: usize = 64 << 10;

/// Limits for one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest audio, video or aggregate message after `publish`, bytes
    /// (`ingest.max_message_kib`; the header's length field allows 16 MiB).
    pub max_message: usize,
    /// Largest chunk size a peer may set, bytes.
    pub max_chunk_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 8 << 20,
            max_chunk_size: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Basic,
    Timestamp,
    Length,
    TypeId,
    StreamId,
    Extended,
    Payload,
}

#[derive(Debug, Clone, Copy, Default)]
struct Header {
    csid: u32,
    timestamp_field: u32,
    length: u32,
    type_id: u8,
}

/// Follows one connection's chunk stream. Feed it every byte after the handshake, in order.
pub struct ChunkGuard {
    limits: Limits,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already consumed.
    pos: usize,
    stage: Stage,
    fmt: u8,
    current: Header,
    previous: HashMap<u32, Header>,
    /// Payload bytes of the message in progress (rml_rtmp keeps one, whatever the chunk stream).
    payload_len: usize,
    /// The payload itself, for the message types the guard reads.
    payload: Vec<u8>,
    chunk_size: usize,
    /// Whether a `publish` command went through: media messages may now be large.
    published: bool,
    /// The type and length of the message in progress (set at its first chunk).
    in_progress: (u8, u32),
    /// Bytes followed before `publish`, and the chunk stream ids seen: both bounded, so a
    /// connection that never sends a key cannot make onair (or rml_rtmp's header table) hold
    /// more than a few KiB.
    pre_publish_bytes: usize,
}

/// The most bytes a connection may send before its `publish` (OBS sends under 2 KiB).
pub const PRE_PUBLISH_BYTES_MAX: usize = 64 << 10;
/// The most distinct chunk stream ids a connection may use (OBS and FFmpeg use 2 to 6).
pub const CHUNK_STREAMS_MAX: usize = 64;

impl ChunkGuard {
    pub fn new(limits: Limits) -> ChunkGuard {
        ChunkGuard {
            limits,
            buffer: Vec::new(),
            pos: 0,
            stage: Stage::Basic,
            fmt: 0,
            current: Header::default(),
            previous: HashMap::new(),
            payload_len: 0,
            payload: Vec::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            published: false,
            in_progress: (0, 0),
            pre_publish_bytes: 0,
        }
    }

    /// Follows `bytes`. `Err` says why the stream must not reach the parser; the connection
    /// should end (the guard's state is then meaningless).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.pos > 0 {
            self.buffer.drain(..self.pos);
            self.pos = 0;
        }
        if !self.published {
            self.pre_publish_bytes += bytes.len();
        }
        self.buffer.extend_from_slice(bytes);
        while self.step()? {}
        if !self.published && self.pre_publish_bytes > PRE_PUBLISH_BYTES_MAX {
            return Err(format!(
                "{} bytes before publish (at most {PRE_PUBLISH_BYTES_MAX})",
                self.pre_publish_bytes
            ));
        }
        Ok(())
    }

    /// Whether the stream carried a `publish` command (large media messages are let through
    /// from then on). The ingest ends a connection where this holds but no publish was admitted.
    pub fn saw_publish(&self) -> bool {
        self.published
    }

    /// `n` bytes if that many are buffered.
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.buffer.len() - self.pos < n {
            return None;
        }
        let s = &self.buffer[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }

    fn be(bytes: &[u8]) -> u32 {
        bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
    }

    /// One parse stage. `Ok(false)`: more bytes needed.
    fn step(&mut self) -> Result<bool, String> {
        match self.stage {
            Stage::Basic => {
                let avail = &self.buffer[self.pos..];
                let Some(&b0) = avail.first() else {
                    return Ok(false);
                };
                let (csid, used) = match b0 & 0x3f {
                    0 if avail.len() >= 2 => (64 + u32::from(avail[1]), 2),
                    1 if avail.len() >= 3 => {
                        (64 + u32::from(avail[1]) + u32::from(avail[2]) * 256, 3)
                    }
                    0 | 1 => return Ok(false),
                    id => (u32::from(id), 1),
                };
                self.pos += used;
                self.fmt = b0 >> 6;
                self.current = if self.fmt == 0 {
                    Header {
                        csid,
                        ..Header::default()
                    }
                } else {
                    self.previous.remove(&csid).ok_or_else(|| {
                        format!("chunk stream {csid} continues a message it never started")
                    })?
                };
                self.stage = Stage::Timestamp;
            }
            Stage::Timestamp => {
                if self.fmt != 3 {
                    let Some(b) = self.take(3) else {
                        return Ok(false);
                    };
                    self.current.timestamp_field = Self::be(b);
                }
                self.stage = Stage::Length;
            }
            Stage::Length => {
                if self.fmt <= 1 {
                    let Some(b) = self.take(3) else {
                        return Ok(false);
                    };
                    self.current.length = Self::be(b);
                }
                self.stage = Stage::TypeId;
            }
            Stage::TypeId => {
                if self.fmt <= 1 {
                    let Some(b) = self.take(1) else {
                        return Ok(false);
                    };
                    self.current.type_id = b[0];
                    self.check_length()?;
                }
                self.stage = Stage::StreamId;
            }
            Stage::StreamId => {
                if self.fmt == 0 && self.take(4).is_none() {
                    return Ok(false);
                }
                self.stage = Stage::Extended;
            }
            Stage::Extended => {
                if self.current.timestamp_field >= EXTENDED {
                    let Some(b) = self.take(4) else {
                        return Ok(false);
                    };
                    let extended = Self::be(b);
                    if self.fmt != 0 && self.payload_len == 0 && extended < EXTENDED {
                        return Err(format!(
                            "extended timestamp delta {extended} below 0xFFFFFF on chunk stream {}",
                            self.current.csid
                        ));
                    }
                }
                self.stage = Stage::Payload;
            }
            Stage::Payload => return self.payload_step(),
        }
        Ok(true)
    }

    /// Refuses a message header announcing more bytes than its type may have now.
    fn check_length(&self) -> Result<(), String> {
        let Header {
            length, type_id, ..
        } = self.current;
        let (max, limit) = if !self.published {
            (PRE_PUBLISH_MESSAGE_MAX, "before publish")
        } else if matches!(type_id, AUDIO | VIDEO | AGGREGATE) {
            (self.limits.max_message, "ingest.max_message_kib")
        } else {
            (CONTROL_MESSAGE_MAX, "for a command or data message")
        };
        if length as usize > max {
            return Err(format!(
                "a message of {length} bytes (type {type_id}) is over the {max} byte limit ({limit})"
            ));
        }
        Ok(())
    }

    fn payload_step(&mut self) -> Result<bool, String> {
        let length = self.current.length as usize;
        if self.payload_len > length {
            return Err(format!(
                "chunk stream {} announces a {length}-byte message while {} bytes of one are in progress",
                self.current.csid, self.payload_len
            ));
        }
        // rml_rtmp keeps adding chunks to the one message in progress and takes the type (and
        // length) of the last header: a type-0/1 header that changes them mid-message would
        // let the guard read only the tail while the parser reads the whole as, say, AMF0
        if self.payload_len > 0 {
            let (t, l) = self.in_progress;
            if (t, l) != (self.current.type_id, self.current.length) {
                return Err(format!(
                    "chunk stream {} changes the message in progress (type {t}, {l} bytes) to type {}, {length} bytes",
                    self.current.csid, self.current.type_id
                ));
            }
        } else {
            self.in_progress = (self.current.type_id, self.current.length);
        }
        let remaining = length - self.payload_len;
        let this_chunk = if length > self.chunk_size {
            remaining.min(self.chunk_size)
        } else {
            length
        };
        let type_id = self.current.type_id;
        let start = self.pos;
        if self.take(this_chunk).is_none() {
            return Ok(false);
        }
        // only the payloads the guard reads are copied (media chunks are not)
        if matches!(
            type_id,
            SET_CHUNK_SIZE | AMF3_DATA | AMF3_COMMAND | AMF0_DATA | AMF0_COMMAND
        ) {
            self.payload
                .extend_from_slice(&self.buffer[start..start + this_chunk]);
        }
        self.payload_len += this_chunk;
        if self.payload_len == length {
            let payload = std::mem::take(&mut self.payload);
            self.payload_len = 0;
            self.complete(type_id, &payload)?;
        }
        if self.previous.len() >= CHUNK_STREAMS_MAX
            && !self.previous.contains_key(&self.current.csid)
        {
            return Err(format!(
                "more than {CHUNK_STREAMS_MAX} chunk streams on one connection"
            ));
        }
        self.previous.insert(self.current.csid, self.current);
        self.stage = Stage::Basic;
        Ok(true)
    }

    /// A whole message arrived: check the ones the parser would trip on.
    fn complete(&mut self, type_id: u8, payload: &[u8]) -> Result<(), String> {
        match type_id {
            SET_CHUNK_SIZE => {
                let size = payload
                    .get(..4)
                    .map(Self::be)
                    .ok_or("a short SetChunkSize")?;
                let size = size as usize;
                if size == 0 || size > self.limits.max_chunk_size {
                    return Err(format!(
                        "SetChunkSize {size} is outside 1..={}",
                        self.limits.max_chunk_size
                    ));
                }
                self.chunk_size = size;
            }
            AMF0_COMMAND | AMF3_COMMAND => {
                let payload = match payload {
                    [0, rest @ ..] if type_id == AMF3_COMMAND => rest,
                    all => all,
                };
                let shape = super::amf::check(payload)
                    .map_err(|e| format!("an AMF0 command that does not parse: {e}"))?;
                if shape.values < 3 {
                    return Err(format!(
                        "an AMF0 command with {} values (name, transaction id and command object are required)",
                        shape.values
                    ));
                }
                if shape.name.as_deref() == Some("publish") {
                    self.published = true;
                }
            }
            AMF0_DATA | AMF3_DATA => {
                super::amf::check(payload)
                    .map_err(|e| format!("an AMF0 data message that does not parse: {e}"))?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
    use rml_rtmp::messages::{MessagePayload, RtmpMessage};
    use rml_rtmp::time::RtmpTimestamp;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A realistic publisher's chunk stream: SetChunkSize, a command, then audio and video of
    /// random sizes and timestamps (some past 0xFFFFFF), serialized by rml_rtmp itself.
    fn valid_stream(rng: &mut Rng) -> Vec<u8> {
        let mut ser = ChunkSerializer::new();
        let mut out = Vec::new();
        let size = [128u32, 4096, 60000][rng.below(3) as usize];
        let p = ser
            .set_max_chunk_size(size, RtmpTimestamp::new(0))
            .expect("size");
        out.extend_from_slice(&p.bytes);
        let cmd = RtmpMessage::Amf0Command {
            command_name: "publish".into(),
            transaction_id: 5.0,
            command_object: rml_amf0::Amf0Value::Null,
            additional_arguments: vec![rml_amf0::Amf0Value::Utf8String("key".into())],
        };
        let payload = cmd
            .into_message_payload(RtmpTimestamp::new(0), 1)
            .expect("payload");
        out.extend_from_slice(&ser.serialize(&payload, false, false).expect("ser").bytes);
        let mut ts: u32 = if rng.below(4) == 0 { 0xFFFF_F000 } else { 0 };
        for _ in 0..40 {
            ts = ts.wrapping_add(rng.below(100) as u32);
            let len = rng.below(20_000) as usize + 1;
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let msg = if rng.below(2) == 0 {
                RtmpMessage::VideoData { data: data.into() }
            } else {
                RtmpMessage::AudioData { data: data.into() }
            };
            let payload = msg
                .into_message_payload(RtmpTimestamp::new(ts), 1)
                .expect("payload");
            out.extend_from_slice(&ser.serialize(&payload, false, false).expect("ser").bytes);
        }
        out
    }

    /// What rml_rtmp's deserializer does with `bytes` fed in `cuts` pieces: `Err` for a panic.
    fn parse(bytes: &[u8], cuts: &[usize]) -> Result<usize, String> {
        let bytes = bytes.to_vec();
        let cuts = cuts.to_vec();
        std::panic::catch_unwind(move || {
            let mut de = ChunkDeserializer::new();
            let mut messages = 0;
            let mut start = 0;
            for &end in cuts.iter().chain(std::iter::once(&bytes.len())) {
                let mut input = &bytes[start..end];
                start = end;
                loop {
                    match de.get_next_message(input) {
                        Ok(Some(MessagePayload { type_id, data, .. })) => {
                            messages += 1;
                            if type_id == 1 && data.len() >= 4 {
                                let size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                                let _ = de.set_max_chunk_size(size as usize);
                            }
                            input = &[];
                        }
                        Ok(None) => break,
                        Err(_) => return messages, // a clean error is fine
                    }
                }
            }
            messages
        })
        .map_err(|_| "panicked".to_string())
    }

    /// Whether rml_rtmp's server session, fed as the ingest feeds it, panics on `bytes`.
    fn session_panics(bytes: &[u8], cuts: &[usize]) -> bool {
        use rml_rtmp::sessions::{ServerSession, ServerSessionConfig};
        let bytes = bytes.to_vec();
        let cuts = cuts.to_vec();
        std::panic::catch_unwind(move || {
            let Ok((mut session, _)) = ServerSession::new(ServerSessionConfig::new()) else {
                return;
            };
            let mut start = 0;
            for &end in cuts.iter().chain(std::iter::once(&bytes.len())) {
                if session.handle_input(&bytes[start..end]).is_err() {
                    return;
                }
                start = end;
            }
        })
        .is_err()
    }

    fn guard(bytes: &[u8], cuts: &[usize]) -> Result<(), String> {
        let mut g = ChunkGuard::new(Limits::default());
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&bytes.len())) {
            g.feed(&bytes[start..end])?;
            start = end;
        }
        Ok(())
    }

    fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..rng.below(8))
            .map(|_| rng.below(len as u64) as usize)
            .collect();
        cuts.sort();
        cuts
    }

    #[test]
    fn valid_streams_pass_in_any_split() {
        let mut rng = Rng(0x5eed);
        for _ in 0..200 {
            let s = valid_stream(&mut rng);
            let cuts = random_cuts(&mut rng, s.len());
            assert!(
                parse(&s, &cuts).is_ok_and(|n| n == 42),
                "the sample itself must parse"
            );
            guard(&s, &cuts).expect("a valid stream was refused");
        }
    }

    #[test]
    fn what_the_guard_lets_through_never_panics_the_parser() {
        // quiet for the panics this test provokes in rml_rtmp, on this thread only: the hook is
        // the process's, and silencing it whole hid the messages of other tests failing meanwhile
        let previous = std::panic::take_hook();
        let me = std::thread::current().id();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() != me {
                previous(info);
            }
        }));
        let mut rng = Rng(0xdecaf);
        let (mut refused, mut panics_caught) = (0, 0);
        for _ in 0..1500 {
            let mut s = valid_stream(&mut rng);
            // mutate: flip bytes, splice random bytes, truncate
            for _ in 0..=rng.below(4) {
                let i = rng.below(s.len() as u64) as usize;
                match rng.below(3) {
                    0 => s[i] ^= 1 << rng.below(8),
                    1 => s[i] = rng.below(256) as u8,
                    _ => {
                        let junk: Vec<u8> =
                            (0..rng.below(16)).map(|_| rng.below(256) as u8).collect();
                        s.splice(i..i, junk);
                    }
                }
            }
            let cuts = random_cuts(&mut rng, s.len());
            match guard(&s, &cuts) {
                Err(_) => {
                    refused += 1;
                    if parse(&s, &cuts).is_err() || session_panics(&s, &cuts) {
                        panics_caught += 1;
                    }
                }
                Ok(()) => assert!(
                    parse(&s, &cuts).is_ok() && !session_panics(&s, &cuts),
                    "the guard passed a stream that panics rml_rtmp: {:02x?}",
                    &s[..s.len().min(64)]
                ),
            }
        }
        let _ = std::panic::take_hook();
        eprintln!(
            "1500 mutated streams: {refused} refused, {panics_caught} of them panic rml_rtmp"
        );
        assert!(
            refused > 0 && panics_caught > 0,
            "{refused} refused, {panics_caught} panics"
        );
    }

    /// One message on chunk stream 3 after a SetChunkSize large enough to send it whole.
    fn message(type_id: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut s = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0x10, 0, 0];
        s.extend_from_slice(&[3, 0, 0, 0, (len >> 16) as u8, (len >> 8) as u8, len as u8]);
        s.extend_from_slice(&[type_id, 1, 0, 0, 0]);
        s.extend_from_slice(payload);
        s
    }

    fn deep(name: &str, levels: usize) -> Vec<u8> {
        let mut b = vec![2, 0, name.len() as u8];
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&[0, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
        for _ in 0..levels {
            b.extend_from_slice(&[3, 0, 1, b'a']);
        }
        b
    }

    fn publish() -> Vec<u8> {
        let body = rml_amf0::serialize(&vec![
            rml_amf0::Amf0Value::Utf8String("publish".into()),
            rml_amf0::Amf0Value::Number(5.0),
            rml_amf0::Amf0Value::Null,
            rml_amf0::Amf0Value::Utf8String("key".into()),
        ])
        .expect("amf0");
        message(AMF0_COMMAND, &body)
    }

    /// Issue 26: every command and data type is walked before rml_amf0 recurses into it; the
    /// sizes follow the publish.
    #[test]
    fn deep_amf_and_large_messages_before_publish_are_refused() {
        for type_id in [AMF3_DATA, AMF3_COMMAND, AMF0_DATA, AMF0_COMMAND] {
            let e = guard(&message(type_id, &deep("connect", 3000)), &[]).expect_err("refused");
            assert!(e.contains("nested deeper than 32"), "type {type_id}: {e}");
            // after publish too, with the payload over the pre-publish cap
            let mut s = publish();
            s.extend(message(type_id, &deep("@setDataFrame", 15_000)));
            let e = guard(&s, &[]).expect_err("refused");
            assert!(e.contains("nested deeper than 32"), "type {type_id}: {e}");
            // what a real client sends passes
            let shallow = [&deep("connect", 2)[..], &[5, 0, 0, 9, 0, 0, 9]].concat();
            guard(&message(type_id, &shallow), &[]).expect("two levels");
        }
        // before publish: 16 KiB for any message; after it 64 KiB for commands, the limit for media
        let video = vec![0x17u8; 100_000];
        let e = guard(&message(VIDEO, &video), &[]).expect_err("refused");
        assert!(e.contains("before publish"), "{e}");
        let mut s = publish();
        s.extend(message(VIDEO, &video));
        guard(&s, &[]).expect("a 100 kB keyframe after publish");
        let mut s = publish();
        s.extend(message(AMF0_DATA, &[5u8; 70_000]));
        let e = guard(&s, &[]).expect_err("refused");
        assert!(e.contains("command or data"), "{e}");
    }

    /// Review of issue 26: a type-1 header mid-message turned a video message's body (deep
    /// AMF0 the guard never read) into a data message rml_rtmp parses whole.
    #[test]
    fn a_header_that_changes_the_message_in_progress_is_refused() {
        let mut s = publish();
        // SetChunkSize 60000, then 60 000 of 64 000 bytes as video on csid 6
        s.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0xea, 0x60]);
        s.extend_from_slice(&[0x06, 0, 0, 0, 0, 0xfa, 0x00, VIDEO, 1, 0, 0, 0]);
        for _ in 0..15_000 {
            s.extend_from_slice(&[3, 0, 1, b'a']);
        }
        // a type-1 header: same length, type 18
        s.extend_from_slice(&[0x46, 0, 0, 0, 0, 0xfa, 0x00, AMF0_DATA]);
        s.extend(std::iter::repeat_n(5u8, 4000));
        let e = guard(&s, &[]).expect_err("refused");
        assert!(e.contains("changes the message in progress"), "{e}");
    }

    #[test]
    fn before_publish_bytes_and_chunk_streams_are_bounded() {
        // zero-length messages of an unknown type on ever new chunk streams
        let mut s = Vec::new();
        for csid in 0..200u16 {
            s.extend_from_slice(&[0x01, (csid & 0xff) as u8, (csid >> 8) as u8]);
            s.extend_from_slice(&[0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0]);
        }
        let e = guard(&s, &[]).expect_err("refused");
        assert!(e.contains("chunk streams"), "{e}");
        // 80 KiB of small messages before any publish
        let one = message(AMF0_DATA, &[5u8; 1000]);
        let many: Vec<u8> = (0..80).flat_map(|_| one.clone()).collect();
        let e = guard(&many, &[]).expect_err("refused");
        assert!(e.contains("before publish"), "{e}");
    }

    #[test]
    fn the_known_crashes_are_refused() {
        // chunk size 4096, 4096 bytes of a 5000-byte message, then a 10-byte message on the
        // same chunk stream
        let mut s = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0];
        s.extend_from_slice(&[20, 0, 0, 0, 0x00, 0x13, 0x88, 9, 1, 0, 0, 0]);
        s.extend(std::iter::repeat_n(0x27u8, 4096));
        s.extend_from_slice(&[0x40 | 20, 0, 0, 0, 0, 0, 10, 9]);
        s.extend(std::iter::repeat_n(0u8, 8192));
        assert!(parse(&s, &[]).is_err(), "the sample must crash rml_rtmp");
        let e = guard(&s, &[]).expect_err("refused");
        assert!(e.contains("in progress"), "{e}");
        // an AMF0 command with one value
        let mut body = Vec::new();
        rml_amf0::serialize(&vec![rml_amf0::Amf0Value::Utf8String("connect".into())])
            .map(|b| body = b)
            .expect("amf0");
        let mut s = vec![0x03, 0, 0, 0, 0, 0, body.len() as u8, 20, 0, 0, 0, 0];
        s.extend_from_slice(&body);
        let e = guard(&s, &[]).expect_err("refused");
        assert!(e.contains("1 values"), "{e}");
        // the same as an "AMF3" command (type 17, a leading 0 byte)
        let mut s = vec![0x03, 0, 0, 0, 0, 0, body.len() as u8 + 1, 17, 0, 0, 0, 0, 0];
        s.extend_from_slice(&body);
        assert!(session_panics(&s, &[]), "the sample must crash rml_rtmp");
        let e = guard(&s, &[]).expect_err("refused");
        assert!(e.contains("1 values"), "{e}");
        // a 16 MiB message header
        let s = [0x04, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
        let e = guard(&s, &[]).expect_err("refused");
        assert!(e.contains("16777215 bytes"), "{e}");
    }
}
