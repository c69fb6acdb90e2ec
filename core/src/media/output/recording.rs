//! Recordings: a destination whose URL is `file:///…/{channel}-{utc}.mp4` writes the encoded
//! stream of its profile to files (no extra encode) instead of publishing it.
//!
//! ```text
//! appsrc (FLV from the FanOut) ─ flvdemux ┬ h264parse ┬ splitmuxsink (mp4mux, 1 s fragments)
//!                                         └ aacparse ─┘   → file per segment_minutes
//! ```
//!
//! Fragmented MP4 (a `moof` + `mdat` per second): a file plays while it is written and after a
//! crash, losing at most the last second. A new file starts at the first keyframe after
//! `segment_minutes`; when it opens, the recording's oldest files are deleted (on a thread of their
//! own, not the streaming thread) while all of them together take more than `max_total_gib`; the
//! file being written is never deleted. A write error (disk full, folder gone) ends the
//! connection like a platform error: `destination-down`, then retries with the usual backoff.
//!
//! Retention deletes only files this recording wrote: each file is entered in a [`Ledger`]
//! (onair's database) as it opens, beside the stream, and only files the ledger lists for this
//! channel and destination are counted and deleted. Any other file in the folder, whatever its
//! name, stays.

use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gst::prelude::*;

use crate::config::{DestinationConfig, DestinationUrl};
use crate::media::{MediaError, make};

/// Minutes per file when a recording does not say.
pub const DEFAULT_SEGMENT_MINUTES: u32 = 60;

/// MP4 fragment length in ms: what a crash can lose.
pub const FRAGMENT_MS: u32 = 1000;

/// The files recordings wrote, kept outside their folders (in onair's database: see
/// `crate::recordings`), so that retention never deletes a file onair did not write.
pub trait Ledger: Send + Sync {
    /// Enters `path`, opened by channel `channel`'s recording `destination`. Errors: it could
    /// not be kept (the file is then never deleted by retention).
    fn wrote(&self, channel: &str, destination: &str, path: &Path) -> Result<(), String>;
    /// The files that recording wrote and the ledger still lists.
    fn written(&self, channel: &str, destination: &str) -> Result<BTreeSet<PathBuf>, String>;
    /// Forgets `path` (deleted, or never written).
    fn forget(&self, path: &Path);
}

/// The file name pattern of a recording, split around `{utc}`: files of this recording are
/// `dir/prefix<utc>suffix` (with an optional `-N` before the suffix when a name was taken).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub dir: PathBuf,
    prefix: String,
    suffix: String,
}

impl Pattern {
    /// From a `file://` URL (checked where it entered onair), `{channel}` and `{destination}`
    /// filled in. Errors: the URL is a platform's, not a recording's.
    pub fn new(url: &DestinationUrl, channel: &str, destination: &str) -> Result<Pattern, String> {
        let Some(path) = url.as_str().strip_prefix("file://") else {
            return Err(format!("{url} is not a recording (file://) URL"));
        };
        let path = path
            .replace("{channel}", channel)
            .replace("{destination}", destination);
        let path = Path::new(&path);
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (prefix, suffix) = name
            .split_once("{utc}")
            .ok_or_else(|| format!("{url}: the file name must contain {{utc}}"))?;
        Ok(Pattern {
            dir,
            prefix: prefix.into(),
            suffix: suffix.into(),
        })
    }

    /// The next file's path for a start at `utc`: a name not taken yet.
    pub fn next_path(&self, utc: &str) -> PathBuf {
        let stem = format!("{}{utc}", self.prefix);
        let mut path = self.dir.join(format!("{stem}{}", self.suffix));
        let mut n = 1;
        while path.symlink_metadata().is_ok() {
            path = self.dir.join(format!("{stem}-{n}{}", self.suffix));
            n += 1;
        }
        path
    }

    /// This recording's files in its folder, oldest first (by modification time, then name),
    /// with their sizes in bytes.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf, u64)> = rd
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.len() > self.prefix.len() + self.suffix.len()
                    && name.starts_with(&self.prefix)
                    && name.ends_with(&self.suffix)
            })
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                if !m.is_file() {
                    return None;
                }
                Some((m.modified().ok()?, e.path(), m.len()))
            })
            .collect();
        files.sort();
        files.into_iter().map(|(_, p, n)| (p, n)).collect()
    }

    /// Deletes the oldest of the files in `owned` (the ones this recording wrote) while all of
    /// them take more than `max_bytes`, never `keep` (the file being written, counted all the
    /// same). A file not in `owned` is neither counted nor deleted. Returns the deleted paths.
    pub fn enforce(&self, max_bytes: u64, keep: &Path, owned: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
        let files: Vec<(PathBuf, u64)> = self
            .files()
            .into_iter()
            .filter(|(p, _)| owned.contains(p))
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        let mut deleted = Vec::new();
        for (path, size) in files {
            if total <= max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    total -= size;
                    deleted.push(path);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "old recording not deleted")
                }
            }
        }
        deleted
    }
}

/// Retention for channel `channel`'s recording `destination` once `keep` has opened: deletes
/// its oldest files beyond `max_bytes` among those `ledger` lists, and forgets the deleted ones
/// and the ones no longer there. Returns the deleted paths. A ledger that cannot be read deletes
/// nothing.
pub fn retain(
    pattern: &Pattern,
    max_bytes: u64,
    keep: &Path,
    ledger: &dyn Ledger,
    channel: &str,
    destination: &str,
) -> Result<Vec<PathBuf>, String> {
    let owned = ledger.written(channel, destination)?;
    let deleted = pattern.enforce(max_bytes, keep, &owned);
    for p in owned.iter().filter(|p| {
        // removed by hand, or deleted now; `keep` may not be opened yet
        p.as_path() != keep && p.symlink_metadata().is_err()
    }) {
        ledger.forget(p);
    }
    Ok(deleted)
}

/// The UTC time now as recordings name it: `2026-11-23T19-30-00Z` (no ':' so that every file
/// system takes it).
fn utc_now() -> String {
    gst::glib::DateTime::now_utc()
        .and_then(|t| t.format("%Y-%m-%dT%H-%M-%SZ"))
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "unknown-time".into())
}

/// One recording's pipeline while it runs.
pub struct Recording {
    pub pipeline: gst::Pipeline,
    pub src: gst_app::AppSrc,
    /// The file being written.
    current: Arc<Mutex<Option<PathBuf>>>,
    /// The destination's name, for logs.
    name: String,
    /// The channel, and the ledger its files are entered in.
    channel: String,
    ledger: Arc<dyn Ledger>,
}

impl Recording {
    /// Builds (not started) the pipeline for `d` of channel `channel`, fed FLV with `caps`;
    /// every file it opens is entered in `ledger`. Creates the folder. Errors: the folder
    /// cannot be made, an element is missing.
    pub fn build(
        channel: &str,
        d: &DestinationConfig,
        url: &DestinationUrl,
        caps: Option<&gst::Caps>,
        ledger: Arc<dyn Ledger>,
    ) -> Result<Recording, MediaError> {
        if caps
            .and_then(|c| c.structure(0))
            .is_some_and(|s| s.has_field(super::copy::IN_BAND_PARAMETER_SETS))
        {
            // the copy path's stream changes its SPS/PPS mid-stream (the fallback's and the
            // publisher's); h264parse + mp4mux (1.22) then write a file whose video does not
            // decode after the first change (tried with avc1, avc3 and config-interval=-1)
            return Err(MediaError::Build(format!(
                "a recording in copy mode needs a profile (e.g. profile = \"youtube-720p30\" on destination {:?}): \
                 the publisher's stream and the fallback have different parameter sets, which an MP4 file cannot switch between yet",
                d.name
            )));
        }
        let pattern = Pattern::new(url, channel, &d.name).map_err(MediaError::Build)?;
        std::fs::create_dir_all(&pattern.dir).map_err(|e| {
            MediaError::Build(format!("recording folder {}: {e}", pattern.dir.display()))
        })?;
        let pipeline = gst::Pipeline::with_name(&format!("recording-{}", d.name));
        let src = crate::media::flv_appsrc(caps)?;
        let demux = make("flvdemux", "demux")?;
        let vparse = make("h264parse", "vparse")?;
        let aparse = make("aacparse", "aparse")?;
        let vqueue = make("queue", "vqueue")?;
        let aqueue = make("queue", "aqueue")?;
        let mux = make("mp4mux", "mp4")?;
        mux.set_property("fragment-duration", FRAGMENT_MS);
        let split = make("splitmuxsink", "split")?;
        let minutes = d.segment_minutes.unwrap_or(DEFAULT_SEGMENT_MINUTES);
        split.set_property("max-size-time", u64::from(minutes) * 60_000_000_000);
        split.set_property("muxer", &mux);
        pipeline
            .add_many([
                src.upcast_ref(),
                &demux,
                &vqueue,
                &vparse,
                &aqueue,
                &aparse,
                &split,
            ])
            .map_err(|e| MediaError::Build(e.to_string()))?;
        src.link(&demux)
            .map_err(|e| MediaError::Build(format!("appsrc → flvdemux: {e}")))?;
        let link = |a: &gst::Element, b: &gst::Element, pad: &str| -> Result<(), MediaError> {
            let sink = split
                .request_pad_simple(pad)
                .ok_or_else(|| MediaError::Build(format!("splitmuxsink has no {pad} pad")))?;
            a.link(b).map_err(|e| MediaError::Build(e.to_string()))?;
            b.static_pad("src")
                .ok_or_else(|| MediaError::Build("parser without src".into()))?
                .link(&sink)
                .map_err(|e| MediaError::Build(format!("linking into splitmuxsink: {e}")))?;
            Ok(())
        };
        link(&vqueue, &vparse, "video")?;
        link(&aqueue, &aparse, "audio_%u")?;
        let (vq, aq) = (vqueue.clone(), aqueue.clone());
        demux.connect_pad_added(move |_, pad| {
            let target = if pad.name().starts_with("video") {
                &vq
            } else {
                &aq
            };
            if let Some(sink) = target.static_pad("sink")
                && !sink.is_linked()
                && let Err(e) = pad.link(&sink)
            {
                tracing::error!(pad = %pad.name(), error = ?e, "recording: demuxed stream not linked");
            }
        });

        let max_bytes = d.max_total_gib.map(|g| (g * (1u64 << 30) as f64) as u64);
        let (name, chan) = (d.name.clone(), channel.to_string());
        let current: Arc<Mutex<Option<PathBuf>>> = Arc::default();
        let last = current.clone();
        let book = ledger.clone();
        split.connect("format-location", false, move |_| {
            let path = pattern.next_path(&utc_now());
            let mut last = last.lock();
            if let Some(prev) = last.replace(path.clone()) {
                tracing::info!(channel = %chan, destination = %name, file = %prev.display(), "recording: file complete");
            }
            tracing::info!(channel = %chan, destination = %name, file = %path.display(), "recording: new file");
            // not on the streaming thread: the ledger's commit waits for the disk, deleting a
            // large file can take a while on some file systems, and the new file's first frames
            // are waiting
            let (pattern, keep) = (pattern.clone(), path.clone());
            let (c, n, book) = (chan.clone(), name.clone(), book.clone());
            let spawned = std::thread::Builder::new()
                .name("recording-files".into())
                .spawn(move || {
                    if let Err(e) = book.wrote(&c, &n, &keep) {
                        tracing::warn!(channel = %c, destination = %n, file = %keep.display(), error = %e,
                            "recording: file not entered in the ledger: max_total_gib will never delete it");
                    }
                    let Some(max) = max_bytes else { return };
                    match retain(&pattern, max, &keep, &*book, &c, &n) {
                        Ok(deleted) => {
                            for p in deleted {
                                tracing::info!(channel = %c, destination = %n, file = %p.display(),
                                    "recording: oldest file deleted (max_total_gib)");
                            }
                        }
                        Err(e) => tracing::warn!(channel = %c, destination = %n, error = %e,
                            "recording: ledger unreadable: no old file deleted (max_total_gib)"),
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(channel = %chan, destination = %name, file = %path.display(), error = %e,
                    "recording: file not entered in the ledger nor old files checked against max_total_gib");
            }
            Some(path.to_string_lossy().into_owned().to_value())
        });
        Ok(Recording {
            pipeline,
            src,
            current,
            name: d.name.clone(),
            channel: channel.to_string(),
            ledger,
        })
    }

    /// Whether data has reached the disk (the recording's "up"): a file was opened and is not
    /// empty. On a full disk it stays empty, and the recording never counts as up.
    pub fn connected(&self) -> bool {
        self.file()
            .and_then(|f| std::fs::metadata(f).ok())
            .is_some_and(|m| m.len() > 0)
    }

    /// The file being written, if any.
    pub fn file(&self) -> Option<PathBuf> {
        self.current.lock().clone()
    }
}

impl Drop for Recording {
    /// Ends the file cleanly (EOS: the last fragment is written) on a thread of its own, then
    /// frees the pipeline.
    fn drop(&mut self) {
        let (pipeline, src) = (self.pipeline.clone(), self.src.clone());
        let current = self.current.clone();
        let name = self.name.clone();
        let ledger = self.ledger.clone();
        let channel = self.channel.clone();
        std::thread::spawn(move || {
            let _ = src.end_of_stream();
            let ended = pipeline.bus().and_then(|bus| {
                bus.timed_pop_filtered(
                    gst::ClockTime::from_seconds(3),
                    &[gst::MessageType::Eos, gst::MessageType::Error],
                )
            });
            let _ = pipeline.set_state(gst::State::Null);
            let file = current.lock().clone();
            if let (Some(f), Some(msg)) = (&file, ended)
                && msg.type_() == gst::MessageType::Eos
            {
                tracing::info!(channel = %channel, destination = %name, file = %f.display(), "recording: file complete");
            }
            // a file opened on a full disk holds nothing: not left behind (retries would pile
            // them up)
            if let Some(f) = current.lock().take()
                && std::fs::metadata(&f).is_ok_and(|m| m.len() == 0)
                && std::fs::remove_file(&f).is_ok()
            {
                ledger.forget(&f);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger in memory: (channel, destination, path).
    #[derive(Default)]
    struct Book(Mutex<Vec<(String, String, PathBuf)>>);

    impl Ledger for Book {
        fn wrote(&self, channel: &str, destination: &str, path: &Path) -> Result<(), String> {
            let mut rows = self.0.lock();
            rows.push((channel.into(), destination.into(), path.into()));
            Ok(())
        }
        fn written(&self, channel: &str, destination: &str) -> Result<BTreeSet<PathBuf>, String> {
            let rows = self.0.lock();
            Ok(rows
                .iter()
                .filter(|r| r.0 == channel && r.1 == destination)
                .map(|r| r.2.clone())
                .collect())
        }
        fn forget(&self, path: &Path) {
            self.0.lock().retain(|r| r.2 != path);
        }
    }

    #[test]
    fn names_fill_in_and_never_replace_a_file_and_the_oldest_go_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "file://{}/{{channel}}-{{destination}}-{{utc}}.mp4",
            dir.path().display()
        );
        let p = Pattern::new(
            &crate::config::DestinationUrl::parse(&url).expect("url"),
            "main",
            "rec",
        )
        .expect("pattern");
        let first = p.next_path("2026-11-23T19-30-00Z");
        assert_eq!(first, dir.path().join("main-rec-2026-11-23T19-30-00Z.mp4"));
        std::fs::write(&first, vec![0u8; 600]).expect("write");
        let second = p.next_path("2026-11-23T19-30-00Z");
        assert_eq!(
            second,
            dir.path().join("main-rec-2026-11-23T19-30-00Z-1.mp4")
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&second, vec![0u8; 600]).expect("write");
        // someone else's file in the folder is never counted or deleted
        std::fs::write(dir.path().join("notes.txt"), vec![0u8; 5000]).expect("write");
        assert_eq!(p.files().len(), 2);
        let written = dir.path().join("main-rec-2026-11-23T19-31-00Z.mp4");
        let owned: BTreeSet<PathBuf> = [&first, &second, &written].into_iter().cloned().collect();
        assert_eq!(p.enforce(1000, &written, &owned), vec![first.clone()]);
        assert!(!first.exists() && second.exists());
        assert!(dir.path().join("notes.txt").exists());
        assert!(
            p.enforce(1000, &written, &owned).is_empty(),
            "under the limit nothing goes"
        );
        // the file being written stays even when it alone is over the limit
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&written, vec![0u8; 2000]).expect("write");
        assert_eq!(p.enforce(1000, &written, &owned), vec![second.clone()]);
        assert!(written.exists());
        assert!(p.enforce(1000, &written, &owned).is_empty());
        assert!(
            crate::config::DestinationUrl::parse("file:///x/a.mp4").is_err(),
            "no {{utc}}"
        );
        let platform = crate::config::DestinationUrl::parse("rtmp://h/app/k").expect("url");
        assert!(
            Pattern::new(&platform, "c", "d").is_err(),
            "not a recording"
        );
    }

    #[test]
    fn retention_deletes_only_files_the_recording_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}/{{channel}}-{{utc}}.mp4", dir.path().display());
        let p = Pattern::new(
            &crate::config::DestinationUrl::parse(&url).expect("url"),
            "main",
            "rec",
        )
        .expect("pattern");
        let book = Book::default();
        let file = |name: &str, bytes: usize| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![0u8; bytes]).expect("write");
            std::thread::sleep(std::time::Duration::from_millis(20));
            path
        };
        // the oldest and largest files match the pattern, but onair did not write them: an
        // operator's export, and another recording's file
        let foreign = file("main-2020-01-01T00-00-00Z.mp4", 5000);
        let other = file("main-2020-01-02T00-00-00Z.mp4", 5000);
        book.wrote("main", "other-rec", &other).expect("ledger");
        let mut own = Vec::new();
        for utc in ["2026-11-23T19-30-00Z", "2026-11-23T20-30-00Z"] {
            let path = p.next_path(utc);
            book.wrote("main", "rec", &path).expect("ledger");
            std::fs::write(&path, vec![0u8; 600]).expect("write");
            std::thread::sleep(std::time::Duration::from_millis(20));
            own.push(path);
        }
        let keep = p.next_path("2026-11-23T21-30-00Z");
        book.wrote("main", "rec", &keep).expect("ledger");
        // one the operator deleted by hand: forgotten
        let gone = dir.path().join("main-2026-11-23T18-30-00Z.mp4");
        book.wrote("main", "rec", &gone).expect("ledger");

        let deleted = retain(&p, 700, &keep, &book, "main", "rec").expect("retain");
        assert_eq!(deleted, vec![own[0].clone()], "only its own oldest file");
        assert!(foreign.exists(), "a file onair did not write was deleted");
        assert!(other.exists(), "another recording's file was deleted");
        assert!(own[1].exists());
        let left = book.written("main", "rec").expect("ledger");
        assert_eq!(
            left,
            [own[1].clone(), keep.clone()].into_iter().collect(),
            "deleted and vanished files are forgotten, the one being opened is kept"
        );
        assert!(
            retain(&p, 700, &keep, &book, "main", "rec")
                .expect("retain")
                .is_empty(),
            "600 bytes of its own are under the limit, whatever the others take"
        );
    }
}
