//! The media gallery: the images and videos operators upload to use as fallbacks, in
//! `data_dir/media`.
//!
//! - An upload is streamed to a hidden part file (never held whole in memory), refused as soon
//!   as it passes `media.max_upload_mib`, then probed with GStreamer's discoverer: what it is
//!   comes from the content, not the name. Only what the fallback can play (an image, or a
//!   video of at least 100 ms) is kept; anything else is deleted and refused.
//! - Names are one path component of letters, digits, '.', '_', '-' (spaces become '-');
//!   anything with a directory part or starting with '.' is refused, so no name leaves the folder.
//! - Per item, `.meta/NAME.json` holds what the probe found and `.meta/NAME.png` a 320x180
//!   thumbnail (first frame); files copied in by hand get both on first listing.
//! - A kept upload is fsynced before it is answered: an acknowledged upload survives a crash.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::media::fallback::{MediaKind, first_frame_rgb, probe_details};

/// Thumbnail size in pixels (16:9).
pub const THUMB_WIDTH: u32 = 320;
pub const THUMB_HEIGHT: u32 = 180;
const META_DIR: &str = ".meta";

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("name {0:?}: use letters, digits, '.', '_' and '-' (1 to 100), not starting with '.'")]
    BadName(String),
    #[error("a file named {0:?} exists: delete it first or choose another name")]
    Exists(String),
    #[error("no media named {0:?}")]
    NotFound(String),
    #[error("the upload is larger than media.max_upload_mib ({limit_mib} MiB)")]
    TooLarge { limit_mib: u64 },
    #[error("{name} is not an image or a video onair can play: {reason}")]
    NotMedia { name: String, reason: String },
    #[error(
        "{name} is in use as the fallback of channel {channel:?}: choose another fallback first"
    )]
    InUse { name: String, channel: String },
    #[error("the upload ended early: {0}")]
    Interrupted(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A gallery item, as `GET /api/media` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaItem {
    pub name: String,
    /// `image` or `video`.
    pub kind: String,
    pub size_bytes: u64,
    /// Length of a video in seconds; absent for images.
    pub duration_s: Option<f64>,
    /// Picture size in pixels.
    pub width: u32,
    pub height: u32,
    /// Channels whose fallback is this file.
    #[serde(default)]
    pub used_by: Vec<String>,
    /// Where to fetch the file.
    #[serde(default)]
    pub url: String,
    /// Where to fetch its 320x180 PNG thumbnail.
    #[serde(default)]
    pub thumbnail: String,
}

pub struct Gallery {
    dir: PathBuf,
    max_upload_bytes: u64,
    /// Names being uploaded now: a second upload of the same name is refused.
    uploading: Mutex<HashSet<String>>,
    /// Held across "is it in use?" and the change that depends on the answer (a delete; a
    /// channel choosing a file), so neither slips between the other's check and act.
    in_use: Mutex<()>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GalleryError + '_ {
    move |source| GalleryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A file name made safe: spaces become '-'; anything else outside letters, digits, '.', '_',
/// '-' (including '/', '\\' and "..") is refused.
pub fn sanitize(name: &str) -> Result<String, GalleryError> {
    let n = name.trim().replace(' ', "-");
    let ok = !n.is_empty()
        && n.len() <= 100
        && !n.starts_with('.')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(n)
    } else {
        Err(GalleryError::BadName(name.to_string()))
    }
}

impl Gallery {
    /// `dir`: the gallery folder (made on first upload); `max_upload_mib`: largest upload.
    pub fn new(dir: PathBuf, max_upload_mib: u64) -> Gallery {
        Gallery {
            dir,
            max_upload_bytes: max_upload_mib * 1024 * 1024,
            uploading: Mutex::default(),
            in_use: Mutex::default(),
        }
    }

    /// Deletes part files an interrupted run left behind (a crash or kill mid-upload).
    pub fn sweep(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".upload-") && name.ends_with(".part") {
                match std::fs::remove_file(e.path()) {
                    Ok(()) => {
                        tracing::info!(file = %name, "media gallery: interrupted upload removed")
                    }
                    Err(err) => {
                        tracing::warn!(file = %name, error = %err, "media gallery: interrupted upload not removed")
                    }
                }
            }
        }
    }

    /// Hold while checking whether a file is in use and acting on it.
    pub fn hold(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.in_use.lock()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Largest upload in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
    }

    /// The path of an existing item.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, GalleryError> {
        let n = sanitize(name)?;
        let p = self.dir.join(&n);
        // a regular file, not a link to somewhere else
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_file()) {
            Ok(p)
        } else {
            Err(GalleryError::NotFound(n))
        }
    }

    fn meta_path(&self, name: &str, ext: &str) -> PathBuf {
        self.dir.join(META_DIR).join(format!("{name}.{ext}"))
    }

    /// Claims `name` for an upload; the claim ends when the guard drops.
    pub fn begin_upload(&self, name: &str) -> Result<UploadClaim<'_>, GalleryError> {
        let n = sanitize(name)?;
        if self.dir.join(&n).exists() {
            return Err(GalleryError::Exists(n));
        }
        let mut up = self.uploading.lock();
        if !up.insert(n.clone()) {
            return Err(GalleryError::Exists(n));
        }
        drop(up);
        let mut rnd = [0u8; 8];
        let _ = getrandom::fill(&mut rnd);
        // the claim exists from here: any error below releases the name
        let mut claim = UploadClaim {
            gallery: self,
            part: self.dir.join(format!(
                ".upload-{}-{}.part",
                std::process::id(),
                rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )),
            name: n,
            file: None,
            written: 0,
        };
        std::fs::create_dir_all(self.dir.join(META_DIR)).map_err(io(&self.dir))?;
        claim.file = Some(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&claim.part)
                .map_err(io(&claim.part))?,
        );
        Ok(claim)
    }

    /// The item's description, probing (and thumbnailing) a file that has none yet.
    fn describe(&self, name: &str) -> Result<MediaItem, GalleryError> {
        let path = self.dir.join(name);
        let size_bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
        let meta = self.meta_path(name, "json");
        let cached = std::fs::read(&meta)
            .ok()
            .and_then(|b| serde_json::from_slice::<MediaItem>(&b).ok())
            .filter(|m| m.size_bytes == size_bytes);
        let mut item = match cached {
            Some(m) => m,
            None => {
                let item = probe_item(&path, name, size_bytes)?;
                let _ = std::fs::create_dir_all(self.dir.join(META_DIR));
                if let Ok(json) = serde_json::to_vec(&item) {
                    let _ = std::fs::write(&meta, json);
                }
                let _ = self.write_thumbnail(name);
                item
            }
        };
        item.url = format!("/api/media/{name}");
        item.thumbnail = format!("/api/media/{name}/thumbnail.png");
        Ok(item)
    }

    /// Every item, by name; `used_by(path)` names the channels whose fallback is `path`.
    /// Files that cannot be played are left out (and logged).
    pub fn list(&self, used_by: &dyn Fn(&Path) -> Vec<String>) -> Vec<MediaItem> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| sanitize(n).is_ok_and(|s| s == *n))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| match self.describe(&n) {
                Ok(mut item) => {
                    item.used_by = used_by(&self.dir.join(&n));
                    Some(item)
                }
                Err(e) => {
                    tracing::warn!(media = %n, error = %e, "media gallery: file left out");
                    None
                }
            })
            .collect()
    }

    /// One item.
    pub fn get(
        &self,
        name: &str,
        used_by: &dyn Fn(&Path) -> Vec<String>,
    ) -> Result<MediaItem, GalleryError> {
        let path = self.path_of(name)?;
        let mut item = self.describe(&sanitize(name)?)?;
        item.used_by = used_by(&path);
        Ok(item)
    }

    /// The thumbnail's path, made if missing.
    pub fn thumbnail(&self, name: &str) -> Result<PathBuf, GalleryError> {
        let n = sanitize(name)?;
        self.path_of(&n)?;
        let p = self.meta_path(&n, "png");
        if !p.is_file() {
            self.write_thumbnail(&n)?;
        }
        Ok(p)
    }

    fn write_thumbnail(&self, name: &str) -> Result<(), GalleryError> {
        let src = self.dir.join(name);
        let rgb = first_frame_rgb(&src, THUMB_WIDTH, THUMB_HEIGHT).map_err(|e| {
            GalleryError::NotMedia {
                name: name.into(),
                reason: e.to_string(),
            }
        })?;
        let out = self.meta_path(name, "png");
        let file = std::fs::File::create(&out).map_err(io(&out))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), THUMB_WIDTH, THUMB_HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()
            .and_then(|mut w| w.write_image_data(&rgb))
            .map_err(|e| GalleryError::Io {
                path: out.clone(),
                source: std::io::Error::other(e),
            })
    }

    /// Deletes an item unless a channel uses it (`used_by` as in [`Gallery::list`]).
    pub fn delete(
        &self,
        name: &str,
        used_by: &dyn Fn(&Path) -> Vec<String>,
    ) -> Result<(), GalleryError> {
        let _held = self.hold();
        let path = self.path_of(name)?;
        let n = sanitize(name)?;
        if let Some(channel) = used_by(&path).into_iter().next() {
            return Err(GalleryError::InUse { name: n, channel });
        }
        std::fs::remove_file(&path).map_err(io(&path))?;
        let _ = std::fs::remove_file(self.meta_path(&n, "json"));
        let _ = std::fs::remove_file(self.meta_path(&n, "png"));
        tracing::info!(media = %n, "media deleted");
        Ok(())
    }
}

fn probe_item(path: &Path, name: &str, size_bytes: u64) -> Result<MediaItem, GalleryError> {
    let (kind, width, height) = probe_details(path).map_err(|e| GalleryError::NotMedia {
        name: name.into(),
        reason: match e {
            crate::media::MediaError::FallbackMedia { message, .. } => message,
            other => other.to_string(),
        },
    })?;
    let (kind, duration_s) = match kind {
        MediaKind::Image => ("image", None),
        MediaKind::Video { duration_ms, .. } => ("video", Some(duration_ms as f64 / 1000.0)),
    };
    Ok(MediaItem {
        name: name.into(),
        kind: kind.into(),
        size_bytes,
        duration_s,
        width,
        height,
        used_by: Vec::new(),
        url: String::new(),
        thumbnail: String::new(),
    })
}

/// An upload in progress: write chunks, then [`UploadClaim::finish`]. Dropped unfinished, it
/// deletes its part file.
pub struct UploadClaim<'a> {
    gallery: &'a Gallery,
    name: String,
    part: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
}

impl UploadClaim<'_> {
    /// Appends a chunk. `TooLarge` once past the limit (the part file is then deleted on drop).
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), GalleryError> {
        self.written += chunk.len() as u64;
        if self.written > self.gallery.max_upload_bytes {
            return Err(GalleryError::TooLarge {
                limit_mib: self.gallery.max_upload_bytes / (1024 * 1024),
            });
        }
        match self.file.as_mut() {
            Some(f) => f.write_all(chunk).map_err(io(&self.part)),
            None => Ok(()),
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Probes the upload; keeps it under its name (fsynced, with its thumbnail) if onair can
    /// play it, deletes it otherwise.
    pub fn finish(mut self) -> Result<MediaItem, GalleryError> {
        let file = self.file.take();
        if let Some(f) = file {
            f.sync_all().map_err(io(&self.part))?;
        }
        let item = probe_item(&self.part, &self.name, self.written)?;
        let dest = self.gallery.dir.join(&self.name);
        // a link, unlike a rename, never replaces a file that appeared meanwhile
        std::fs::hard_link(&self.part, &dest).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => GalleryError::Exists(self.name.clone()),
            _ => GalleryError::Io {
                path: dest.clone(),
                source: e,
            },
        })?;
        let _ = std::fs::remove_file(&self.part);
        if let Ok(d) = std::fs::File::open(&self.gallery.dir) {
            let _ = d.sync_all();
        }
        if let Ok(json) = serde_json::to_vec(&item) {
            let _ = std::fs::write(self.gallery.meta_path(&self.name, "json"), json);
        }
        if let Err(e) = self.gallery.write_thumbnail(&self.name) {
            tracing::warn!(media = %self.name, error = %e, "media thumbnail not made");
        }
        tracing::info!(media = %self.name, kind = %item.kind, bytes = self.written, "media uploaded");
        Ok(MediaItem {
            url: format!("/api/media/{}", self.name),
            thumbnail: format!("/api/media/{}/thumbnail.png", self.name),
            ..item
        })
    }
}

impl Drop for UploadClaim<'_> {
    fn drop(&mut self) {
        self.file.take();
        let _ = std::fs::remove_file(&self.part);
        self.gallery.uploading.lock().remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_folder() {
        assert_eq!(
            sanitize("be right back.png").expect("ok"),
            "be-right-back.png"
        );
        for bad in [
            "../x.png", "a/b.png", ".hidden", "..", "", "x\\y.png", "ü.png",
        ] {
            assert!(sanitize(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_upload_over_the_limit_or_not_media_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = Gallery::new(dir.path().join("media"), 1);
        let mut up = g.begin_upload("big.mp4").expect("claim");
        assert!(matches!(
            g.begin_upload("big.mp4"),
            Err(GalleryError::Exists(_))
        ));
        up.write(&vec![0u8; 1024 * 1024]).expect("first MiB");
        assert!(matches!(
            up.write(&[0u8; 1]),
            Err(GalleryError::TooLarge { limit_mib: 1 })
        ));
        drop(up);
        let mut up = g.begin_upload("x.png").expect("claim");
        up.write(b"this is text, not a picture").expect("write");
        crate::media::init().expect("gst");
        assert!(matches!(up.finish(), Err(GalleryError::NotMedia { .. })));
        let left: Vec<_> = std::fs::read_dir(g.dir())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        // the name is free again
        assert!(g.begin_upload("big.mp4").is_ok());
    }
}
