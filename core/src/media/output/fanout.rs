//! One encode, many consumers. Every destination and every preview viewer gets its own bounded
//! queue. Pushing never blocks the program's streaming thread: a consumer whose queue is full
//! loses buffers and then waits for the next video keyframe, so a dead or slow platform costs
//! only itself. A new consumer starts with the FLV stream headers (FLV header, onMetaData, AVC
//! and AAC sequence headers) and then data from a video keyframe.

use parking_lot::Mutex;

use tokio::sync::mpsc;

use crate::media::flv;

/// Per-consumer queue length, in FLV tags. At 30 fps plus AAC (about 77 tags/s) this is ~6 s.
pub const QUEUE_TAGS: usize = 512;

struct Consumer {
    id: u64,
    name: String,
    tx: mpsc::Sender<gst::Buffer>,
    waiting_keyframe: bool,
    /// Subscribed before the program had stream headers: they go first, before its first
    /// keyframe.
    needs_headers: bool,
    dropped: u64,
    /// Waiting for a keyframe after its queue overflowed: what it skips is lost, and counted.
    recovering: bool,
}

#[derive(Default)]
struct Inner {
    /// Tags lost by consumers (a full queue, then the wait for a keyframe), by name,
    /// including consumers that left.
    dropped: std::collections::HashMap<String, u64>,
    caps: Option<gst::Caps>,
    headers: Vec<gst::Buffer>,
    consumers: Vec<Consumer>,
    next_id: u64,
}

/// A subscription: the caps (with `streamheader`), the header buffers to send first, then the
/// stream from a keyframe on `rx`. When it was made before the program produced its headers,
/// `headers` is empty and they arrive on `rx` first, right before the first keyframe.
pub struct Subscription {
    pub id: u64,
    pub caps: Option<gst::Caps>,
    pub headers: Vec<gst::Buffer>,
    pub rx: mpsc::Receiver<gst::Buffer>,
}

#[derive(Default)]
pub struct FanOut {
    inner: Mutex<Inner>,
}

impl FanOut {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Called on the program's streaming thread for every muxed buffer. Never blocks.
    pub fn push_sample(&self, sample: &gst::Sample) {
        let Some(buffer) = sample.buffer_owned() else {
            return;
        };
        let mut guard = self.lock();
        let inner = &mut *guard;
        if let Some(caps) = sample.caps()
            && inner.caps.as_ref().is_none_or(|c| c.as_ref() != caps)
        {
            inner.headers = stream_headers(caps);
            inner.caps = Some(caps.to_owned());
        }
        if buffer.flags().contains(gst::BufferFlags::HEADER) {
            return; // already in the caps' streamheader
        }
        let keyframe = buffer
            .map_readable()
            .map(|m| flv::is_video_keyframe_tag(m.as_slice()))
            .unwrap_or(false);
        inner.consumers.retain_mut(|c| {
            if c.waiting_keyframe {
                if !keyframe {
                    if c.recovering {
                        *inner.dropped.entry(c.name.clone()).or_default() += 1;
                    }
                    return true;
                }
                c.waiting_keyframe = false;
                c.recovering = false;
                if c.needs_headers && !inner.headers.is_empty() {
                    c.needs_headers = false;
                    for h in &inner.headers {
                        // a new queue has room for the few header tags
                        let _ = c.tx.try_send(h.clone());
                    }
                }
            }
            match c.tx.try_send(buffer.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    c.dropped += 1;
                    *inner.dropped.entry(c.name.clone()).or_default() += 1;
                    c.waiting_keyframe = true;
                    c.recovering = true;
                    tracing::warn!(consumer = %c.name, dropped = c.dropped,
                        "output queue full: dropping until the next keyframe");
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Adds a consumer. `name` is for logs.
    pub fn subscribe(&self, name: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(QUEUE_TAGS);
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let needs_headers = inner.headers.is_empty();
        inner.consumers.push(Consumer {
            id,
            name: name.into(),
            tx,
            waiting_keyframe: true,
            needs_headers,
            dropped: 0,
            recovering: false,
        });
        Subscription {
            id,
            caps: inner.caps.clone(),
            headers: inner.headers.clone(),
            rx,
        }
    }

    /// Buffers dropped because a consumer's queue was full, by consumer name (a destination's
    /// name, or `preview`), since the fan-out was made.
    pub fn dropped(&self) -> std::collections::HashMap<String, u64> {
        self.lock().dropped.clone()
    }

    pub fn unsubscribe(&self, id: u64) {
        self.lock().consumers.retain(|c| c.id != id);
    }

    /// Forgets the stream headers and ends every consumer's stream (its receiver sees the end).
    /// For a channel that stops: the next program run brings new headers.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.caps = None;
        inner.headers.clear();
        inner.consumers.clear();
    }

    /// Whether the program has produced its stream headers yet.
    pub fn has_headers(&self) -> bool {
        !self.lock().headers.is_empty()
    }

    pub fn consumer_count(&self) -> usize {
        self.lock().consumers.len()
    }
}

/// The `streamheader` buffers that `flvmux streamable=true` puts in its caps.
fn stream_headers(caps: &gst::CapsRef) -> Vec<gst::Buffer> {
    let Some(s) = caps.structure(0) else {
        return Vec::new();
    };
    let Ok(arr) = s.get::<gst::ArrayRef>("streamheader") else {
        return Vec::new();
    };
    arr.iter()
        .filter_map(|v| v.get::<gst::Buffer>().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::prelude::*;

    fn tag(bytes: &[u8]) -> gst::Buffer {
        gst::Buffer::from_slice(bytes.to_vec())
    }

    fn caps_with_header(header: &[u8]) -> gst::Caps {
        let arr = gst::Array::new([tag(header).to_send_value()]);
        gst::Caps::builder("video/x-flv")
            .field("streamheader", arr)
            .build()
    }

    fn bytes(b: &gst::Buffer) -> Vec<u8> {
        b.map_readable().map(|m| m.to_vec()).unwrap_or_default()
    }

    /// A video keyframe tag (type 9, frame type 1) and an inter frame.
    const KEY: [u8; 13] = [9, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x17, 1];
    const INTER: [u8; 13] = [9, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x27, 1];

    #[test]
    fn an_early_subscriber_gets_the_headers_before_its_first_keyframe() {
        gst::init().expect("gst");
        let fanout = FanOut::new();
        let mut early = fanout.subscribe("early");
        assert!(early.headers.is_empty());
        let caps = caps_with_header(b"FLV-HEADER");
        fanout.push_sample(
            &gst::Sample::builder()
                .buffer(&tag(&INTER))
                .caps(&caps)
                .build(),
        );
        fanout.push_sample(
            &gst::Sample::builder()
                .buffer(&tag(&KEY))
                .caps(&caps)
                .build(),
        );
        let mut late = fanout.subscribe("late");
        assert_eq!(
            late.headers.len(),
            1,
            "a later subscriber gets them with its subscription"
        );
        fanout.push_sample(
            &gst::Sample::builder()
                .buffer(&tag(&KEY))
                .caps(&caps)
                .build(),
        );

        let got: Vec<Vec<u8>> = std::iter::from_fn(|| early.rx.try_recv().ok())
            .map(|b| bytes(&b))
            .collect();
        assert_eq!(
            got,
            vec![b"FLV-HEADER".to_vec(), KEY.to_vec(), KEY.to_vec()]
        );
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| late.rx.try_recv().ok())
            .map(|b| bytes(&b))
            .collect();
        assert_eq!(got, vec![KEY.to_vec()], "headers are not sent twice");
    }

    #[test]
    fn a_full_queue_drops_counts_by_name_and_waits_for_a_keyframe() {
        gst::init().expect("gst");
        let fanout = FanOut::new();
        let caps = caps_with_header(b"FLV-HEADER");
        let push = |t: &[u8]| {
            fanout.push_sample(&gst::Sample::builder().buffer(&tag(t)).caps(&caps).build());
        };
        push(&KEY);
        let stuck = fanout.subscribe("stuck");
        let mut reader = fanout.subscribe("reader");
        push(&KEY);
        for _ in 0..QUEUE_TAGS + 9 {
            push(&INTER);
            while reader.rx.try_recv().is_ok() {}
        }
        let dropped = fanout.dropped();
        // one tag found its queue full, then 9 more were skipped until a keyframe
        assert_eq!(dropped.get("stuck"), Some(&10), "{dropped:?}");
        assert_eq!(
            dropped.get("reader"),
            None,
            "a consumer that reads loses nothing"
        );
        // once it reads again, a keyframe ends the loss; the count outlives the consumer
        let mut stuck = stuck;
        while stuck.rx.try_recv().is_ok() {}
        push(&KEY);
        push(&INTER);
        assert_eq!(
            fanout.dropped().get("stuck"),
            Some(&10),
            "delivered again after a keyframe"
        );
        fanout.unsubscribe(stuck.id);
        assert_eq!(fanout.dropped().get("stuck"), Some(&10));
    }
}
