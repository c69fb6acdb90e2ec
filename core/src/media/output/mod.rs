//! What leaves a channel: its encodes, fanned out to its destinations and recordings.
//!
//! - [`encode`]: the encode path, one H.264/AAC encode per profile, started and stopped with the
//!   destinations that use it
//! - [`fanout`]: one encoded FLV stream to every consumer, each behind its own leaky queue
//! - [`destination`]: each destination's connection (RTMP/RTMPS or a file), its own pipeline,
//!   reconnecting with backoff and never re-opened for a switch
//! - [`recording`]: a file destination's segments
//!
//! - [`copy`]: the copy path (`output.mode = "copy"`): the publisher's own packets forwarded,
//!   a matched still fallback spliced in on keyframes, into the channel's own fan-out. Its rules
//!   are in [`splice`] (tested against a real decoder), its fallback in [`still_gop`].

pub mod copy;
pub mod destination;
pub mod encode;
pub mod fanout;
pub mod recording;
pub mod splice;
pub mod still_gop;
