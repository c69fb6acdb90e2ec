//! An iterative, depth-limited walk over an AMF0 payload (RTMP command and data messages,
//! types 15, 17, 18 and 20), run before rml_amf0's recursive deserializer sees the bytes.
//!
//! rml_amf0 0.3 recurses once per nesting level (object, ECMA array, strict array) and never
//! stops: a ~70 KB command nesting 10 000 levels deep overflows a 2 MiB tokio worker stack and
//! aborts the whole process (not a panic: `catch_unwind` cannot stop it; see
//! docs/upstream/rml_amf0-recursion.md). This walk follows exactly the grammar rml_amf0 reads
//! (AMF0 spec §2, with rml_amf0's own readings noted below) with an explicit stack, so no byte
//! sequence reaches recursion: input nested deeper than [`MAX_DEPTH`] is refused here, and
//! anything rml_amf0 would fail on is refused too, with the reason.
//!
//! rml_amf0's readings that the walk mirrors:
//! - an object-end marker (0x09) where a value is expected ends the top-level value list, and
//!   ends a strict array early (the enclosing value then continues);
//! - a strict array's count is an upper bound: the array also ends at the end of the bytes;
//! - an ECMA array is read as an object (its count ignored, ended by the empty key + 0x09);
//! - only the markers number, boolean, string, object, null, undefined, ECMA array and strict
//!   array are known; any other (long string, date, XML, the AMF3 switch 0x11) is an error.
//!
//! The walk allocates nothing per value: its stack holds at most [`MAX_DEPTH`] frames, and every
//! element it counts consumed at least one byte, so the work is linear in the payload's size.

use std::fmt;

/// The deepest nesting accepted (objects and arrays inside each other). Real clients send 2:
/// OBS's `connect` command object, FFmpeg's `onMetaData` ECMA array.
pub const MAX_DEPTH: usize = 32;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;
const AVMPLUS: u8 = 0x11;

/// Why a payload is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmfError {
    /// Containers nested deeper than [`MAX_DEPTH`]; `at` is the byte offset.
    TooDeep { at: usize },
    /// The bytes end inside a value.
    Truncated { at: usize },
    /// A type marker rml_amf0 does not read.
    UnknownMarker { marker: u8, at: usize },
    /// An object key or string that is not UTF-8.
    NotUtf8 { at: usize },
    /// An empty object key not followed by the object-end marker, or an object-end marker
    /// where a property's value should be.
    BadObject { at: usize },
}

impl fmt::Display for AmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmfError::TooDeep { at } => write!(
                f,
                "AMF0 values nested deeper than {MAX_DEPTH} levels (byte {at})"
            ),
            AmfError::Truncated { at } => write!(f, "AMF0 value cut short at byte {at}"),
            AmfError::UnknownMarker {
                marker: AVMPLUS,
                at,
            } => {
                write!(f, "AMF3 values are not accepted (marker 0x11 at byte {at})")
            }
            AmfError::UnknownMarker { marker, at } => {
                write!(f, "unknown AMF0 type marker 0x{marker:02x} at byte {at}")
            }
            AmfError::NotUtf8 { at } => write!(f, "AMF0 string at byte {at} is not UTF-8"),
            AmfError::BadObject { at } => write!(f, "malformed AMF0 object at byte {at}"),
        }
    }
}

impl std::error::Error for AmfError {}

/// What the walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Top-level values, as many as rml_amf0 returns (a command needs 3: name, transaction id,
    /// command object).
    pub values: usize,
    /// The deepest nesting seen (0: scalars only).
    pub depth: usize,
    /// The first top-level value when it is a string: a command's name (`connect`, `publish`),
    /// a data message's handler (`@setDataFrame`).
    pub name: Option<String>,
}

enum Frame {
    /// An object or ECMA array: properties until the empty key and 0x09.
    Object,
    /// A strict array with at most this many elements left.
    Array(u32),
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(AmfError::Truncated { at: self.pos })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next byte, `None` at the end.
    fn marker(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn u16(&mut self) -> Result<usize, AmfError> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<u32, AmfError> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn utf8(&mut self, n: usize) -> Result<&'a str, AmfError> {
        let at = self.pos;
        let s = self.take(n)?;
        std::str::from_utf8(s).map_err(|_| AmfError::NotUtf8 { at })
    }
}

/// Walks `payload` as rml_amf0's `deserialize` would read it, without recursion. `Ok` means
/// rml_amf0 reads it without error and with at most [`MAX_DEPTH`] levels of recursion.
pub fn check(payload: &[u8]) -> Result<Shape, AmfError> {
    let mut r = Reader {
        bytes: payload,
        pos: 0,
    };
    let mut stack: Vec<Frame> = Vec::with_capacity(MAX_DEPTH);
    let mut shape = Shape {
        values: 0,
        depth: 0,
        name: None,
    };
    loop {
        let marker = match stack.last_mut() {
            None => match r.marker() {
                None | Some(OBJECT_END) => return Ok(shape),
                Some(m) => {
                    shape.values += 1;
                    if shape.values == 1 && m == STRING {
                        let n = r.u16()?;
                        shape.name = Some(r.utf8(n)?.to_owned());
                        continue;
                    }
                    m
                }
            },
            Some(Frame::Object) => {
                let at = r.pos;
                let key_len = r.u16()?;
                if key_len == 0 {
                    if r.take(1)? != [OBJECT_END] {
                        return Err(AmfError::BadObject { at });
                    }
                    stack.pop();
                    continue;
                }
                r.utf8(key_len)?;
                match r.marker() {
                    None => return Err(AmfError::Truncated { at: r.pos }),
                    Some(OBJECT_END) => return Err(AmfError::BadObject { at: r.pos - 1 }),
                    Some(m) => m,
                }
            }
            Some(Frame::Array(left)) => {
                if *left == 0 {
                    stack.pop();
                    continue;
                }
                *left -= 1;
                match r.marker() {
                    None | Some(OBJECT_END) => {
                        stack.pop();
                        continue;
                    }
                    Some(m) => m,
                }
            }
        };
        let at = r.pos - 1;
        let push = match marker {
            NUMBER => {
                r.take(8)?;
                None
            }
            BOOLEAN => {
                r.take(1)?;
                None
            }
            STRING => {
                let n = r.u16()?;
                r.utf8(n)?;
                None
            }
            NULL | UNDEFINED => None,
            OBJECT => Some(Frame::Object),
            ECMA_ARRAY => {
                r.u32()?;
                Some(Frame::Object)
            }
            STRICT_ARRAY => Some(Frame::Array(r.u32()?)),
            marker => return Err(AmfError::UnknownMarker { marker, at }),
        };
        if let Some(frame) = push {
            if stack.len() == MAX_DEPTH {
                return Err(AmfError::TooDeep { at });
            }
            stack.push(frame);
            shape.depth = shape.depth.max(stack.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_amf0::Amf0Value;
    use std::collections::HashMap;

    fn ser(values: Vec<Amf0Value>) -> Vec<u8> {
        rml_amf0::serialize(&values).expect("serialize")
    }

    /// An object nested `n` levels deep, as raw bytes (rml_amf0 would recurse to serialize it).
    fn nested_objects(n: usize) -> Vec<u8> {
        let mut b = vec![STRING, 0, 7];
        b.extend_from_slice(b"connect");
        b.extend_from_slice(&[NUMBER, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
        for _ in 0..n {
            b.extend_from_slice(&[OBJECT, 0, 1, b'a']);
        }
        b.push(NULL);
        for _ in 0..n {
            b.extend_from_slice(&[0, 0, OBJECT_END]);
        }
        b
    }

    #[test]
    fn what_obs_and_ffmpeg_send_passes_with_rml_amf0s_reading() {
        let mut obj = HashMap::new();
        obj.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        obj.insert(
            "tcUrl".to_string(),
            Amf0Value::Utf8String("rtmp://h/live".into()),
        );
        obj.insert(
            "fourCcList".to_string(),
            Amf0Value::StrictArray(vec![Amf0Value::Utf8String("hvc1".into())]),
        );
        let connect = ser(vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(obj),
        ]);
        let shape = check(&connect).expect("connect");
        assert_eq!(shape.values, 3);
        assert_eq!(shape.depth, 2);
        assert_eq!(shape.name.as_deref(), Some("connect"));
        let mut rml = std::io::Cursor::new(&connect);
        assert_eq!(rml_amf0::deserialize(&mut rml).expect("rml").len(), 3);
        // FFmpeg's @setDataFrame onMetaData: an ECMA array
        let mut meta = vec![STRING, 0, 13];
        meta.extend_from_slice(b"@setDataFrame");
        meta.extend_from_slice(&[STRING, 0, 10]);
        meta.extend_from_slice(b"onMetaData");
        meta.extend_from_slice(&[ECMA_ARRAY, 0, 0, 0, 1, 0, 5]);
        meta.extend_from_slice(b"width");
        meta.extend_from_slice(&[NUMBER, 0x40, 0x94, 0, 0, 0, 0, 0, 0]);
        meta.extend_from_slice(&[0, 0, OBJECT_END]);
        let shape = check(&meta).expect("metadata");
        assert_eq!((shape.values, shape.depth), (3, 1));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        assert_eq!(
            check(&nested_objects(MAX_DEPTH)).map(|s| s.depth),
            Ok(MAX_DEPTH)
        );
        // the attack: ~10 000 levels (~70 KB), and the most a 16 MiB message could hold
        for n in [MAX_DEPTH + 1, 10_000, 4 << 20] {
            let e = check(&nested_objects(n)).expect_err("refused");
            assert!(matches!(e, AmfError::TooDeep { .. }), "{e}");
        }
        // strict arrays and ECMA arrays count as levels too
        let mut arrays = Vec::new();
        for _ in 0..=MAX_DEPTH {
            arrays.extend_from_slice(&[STRICT_ARRAY, 0, 0, 0, 1]);
        }
        assert!(matches!(check(&arrays), Err(AmfError::TooDeep { .. })));
        let mut ecma = Vec::new();
        for _ in 0..=MAX_DEPTH {
            ecma.extend_from_slice(&[ECMA_ARRAY, 0, 0, 0, 1, 0, 1, b'k']);
        }
        assert!(matches!(check(&ecma), Err(AmfError::TooDeep { .. })));
    }

    #[test]
    fn a_strict_array_ends_at_0x09_or_the_end_like_rml_amf0_reads_it() {
        // [ [ ] ] with the inner array closed by 0x09, then a number at the top level
        let b = [
            STRICT_ARRAY,
            0,
            0,
            0,
            5,
            STRICT_ARRAY,
            0,
            0,
            0,
            9,
            OBJECT_END,
            NUMBER,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        let mut rml = std::io::Cursor::new(&b[..]);
        let values = rml_amf0::deserialize(&mut rml).expect("rml");
        assert_eq!(check(&b).map(|s| s.values), Ok(values.len()));
        // a huge count over a few bytes costs nothing
        assert_eq!(
            check(&[STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff, NULL]).map(|s| s.values),
            Ok(1)
        );
    }

    #[test]
    fn what_rml_amf0_refuses_is_refused() {
        for bad in [
            &[NUMBER, 0, 0][..],
            &[STRING, 0, 5, b'a'],
            &[OBJECT, 0, 1, b'a'],
            &[OBJECT, 0, 1, b'a', OBJECT_END],
            &[OBJECT, 0, 0, NULL],
            &[0x0b, 0, 0],
            &[AVMPLUS, 0x06],
            &[STRING, 0, 1, 0xff],
        ] {
            assert!(check(bad).is_err(), "{bad:02x?}");
            let mut rml = std::io::Cursor::new(bad);
            // rml_amf0 reads a short string with zero padding; everything else it refuses too
            if bad != [STRING, 0, 5, b'a'] {
                assert!(rml_amf0::deserialize(&mut rml).is_err(), "{bad:02x?}");
            }
        }
        assert!(check(&[AVMPLUS]).unwrap_err().to_string().contains("AMF3"));
    }

    /// Whatever the walk accepts, rml_amf0 reads with the same number of top-level values (run
    /// on random mutations of real messages).
    #[test]
    fn accepted_payloads_read_the_same_in_rml_amf0() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let base = nested_objects(3);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut b = base.clone();
            for _ in 0..=next() % 3 {
                let i = (next() % b.len() as u64) as usize;
                match next() % 3 {
                    0 => b[i] = (next() % 12) as u8,
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, (next() % 12) as u8),
                }
            }
            match check(&b) {
                Ok(shape) => {
                    accepted += 1;
                    let mut rml = std::io::Cursor::new(&b);
                    let values = rml_amf0::deserialize(&mut rml)
                        .unwrap_or_else(|e| panic!("rml_amf0 refused {b:02x?}: {e}"));
                    assert_eq!(values.len(), shape.values, "{b:02x?}");
                }
                Err(_) => refused += 1,
            }
        }
        assert!(
            accepted > 1000 && refused > 1000,
            "{accepted} accepted, {refused} refused"
        );
    }
}
