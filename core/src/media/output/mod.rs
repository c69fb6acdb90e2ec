//! What leaves a channel: its encodes, fanned out to its destinations and recordings.
//!
//! - [`encode`]: the encode path, one H.264/AAC encode per profile, started and stopped with the
//!   destinations that use it
//! - [`fanout`]: one encoded FLV stream to every consumer, each behind its own leaky queue
//! - [`destination`]: each destination's connection (RTMP/RTMPS or a file), its own pipeline,
//!   reconnecting with backoff and never re-opened for a switch
//! - [`recording`]: a file destination's segments
//!
//! A second path, copy (the publisher's own packets forwarded, a matched fallback spliced in on
//! keyframes), will sit beside `encode` and feed the same fan-out. Its rules are in [`splice`]
//! (tested against a real decoder) and its fallback for a still in [`still_gop`]; the path
//! itself is not built yet.

pub mod destination;
pub mod encode;
pub mod fanout;
pub mod recording;
pub mod splice;
pub mod still_gop;
