//! Overlay layers, composited between the switch and the encoder by GStreamer's
//! `overlaycomposition` element. Each layer is an RGBA image placed at x/y with a z-order; the
//! element asks for the composition on every frame (`draw`), and gets the cached one: a layer is
//! rendered only when its source or size changes, never per frame. Blending touches only the
//! layers' rectangles. Layers marked live-only are left out while the fallback is on air.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use serde::Serialize;

use crate::action::{Layer, LayerSource};
use crate::wasm::Image;

/// The font for text layers (Debian package fonts-dejavu-core).
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

struct Entry {
    layer: Layer,
    rect: gst_video::VideoOverlayRectangle,
}

#[derive(Default)]
struct State {
    layers: BTreeMap<String, Entry>,
    /// Every layer, and every layer but the live-only ones; rebuilt on change.
    all: Option<gst_video::VideoOverlayComposition>,
    not_live_only: Option<gst_video::VideoOverlayComposition>,
}

/// A layer as `/api/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LayerStatus {
    pub name: String,
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    pub z: i32,
    pub live_only: bool,
}

pub struct Overlay {
    state: Mutex<State>,
    /// Whether the live source is on air (kept by the program).
    live: Arc<AtomicBool>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Overlay {
    pub fn new(live: Arc<AtomicBool>) -> Arc<Overlay> {
        Arc::new(Overlay {
            state: Mutex::default(),
            live,
        })
    }

    /// Hooks the overlay up to an `overlaycomposition` element. Runs on the streaming thread:
    /// it only clones the cached composition.
    pub fn attach(self: &Arc<Self>, element: &gst::Element) {
        let me = self.clone();
        element.connect("draw", false, move |_args| {
            let st = lock(&me.state);
            let comp = if me.live.load(Ordering::Relaxed) {
                &st.all
            } else {
                &st.not_live_only
            };
            Some(comp.clone().to_value())
        });
    }

    /// Whether layer `name` already shows this source at this size (nothing to render).
    pub fn unchanged_source(&self, layer: &Layer) -> bool {
        lock(&self.state).layers.get(&layer.name).is_some_and(|e| {
            e.layer.source == layer.source
                && e.layer.width == layer.width
                && e.layer.height == layer.height
        })
    }

    /// Moves or re-orders an existing layer without re-rendering. False if there is none.
    pub fn reposition(&self, layer: &Layer) -> bool {
        let mut st = lock(&self.state);
        let Some(e) = st.layers.get_mut(&layer.name) else {
            return false;
        };
        let (_, _, w, h) = e.rect.render_rectangle();
        e.rect
            .make_mut()
            .set_render_rectangle(layer.x, layer.y, w, h);
        e.layer = layer.clone();
        Self::recompose(&mut st);
        true
    }

    /// Sets layer `layer.name` to `image`.
    pub fn set(&self, layer: &Layer, image: &Image) -> Result<(), String> {
        let rect = rectangle(layer, image)?;
        let mut st = lock(&self.state);
        st.layers.insert(
            layer.name.clone(),
            Entry {
                layer: layer.clone(),
                rect,
            },
        );
        Self::recompose(&mut st);
        Ok(())
    }

    /// Removes a layer. False if there was none.
    pub fn hide(&self, name: &str) -> bool {
        let mut st = lock(&self.state);
        let had = st.layers.remove(name).is_some();
        Self::recompose(&mut st);
        had
    }

    pub fn status(&self) -> Vec<LayerStatus> {
        lock(&self.state)
            .layers
            .values()
            .map(|e| {
                let (x, y, w, h) = e.rect.render_rectangle();
                LayerStatus {
                    name: e.layer.name.clone(),
                    x,
                    y,
                    width: w,
                    height: h,
                    z: e.layer.z,
                    live_only: e.layer.live_only,
                }
            })
            .collect()
    }

    fn recompose(st: &mut State) {
        let mut entries: Vec<&Entry> = st.layers.values().collect();
        entries.sort_by_key(|e| e.layer.z);
        let build = |it: Vec<&Entry>| -> Option<gst_video::VideoOverlayComposition> {
            if it.is_empty() {
                return None;
            }
            gst_video::VideoOverlayComposition::new(it.iter().map(|e| &e.rect)).ok()
        };
        st.all = build(entries.clone());
        st.not_live_only = build(entries.into_iter().filter(|e| !e.layer.live_only).collect());
    }
}

/// A BGRA (GStreamer's overlay "RGB" format on little-endian) rectangle from an RGBA image.
fn rectangle(layer: &Layer, img: &Image) -> Result<gst_video::VideoOverlayRectangle, String> {
    let (w, h) = (img.width as usize, img.height as usize);
    let mut bgra = vec![0u8; w * h * 4];
    for y in 0..h {
        let row = &img.pixels[y * img.stride as usize..][..w * 4];
        for (dst, src) in bgra[y * w * 4..][..w * 4]
            .chunks_exact_mut(4)
            .zip(row.chunks_exact(4))
        {
            dst.copy_from_slice(&[src[2], src[1], src[0], src[3]]);
        }
    }
    let mut buffer = gst::Buffer::from_mut_slice(bgra);
    {
        let b = buffer.get_mut().ok_or("overlay buffer is shared")?;
        gst_video::VideoMeta::add(
            b,
            gst_video::VideoFrameFlags::empty(),
            gst_video::VideoFormat::Bgra,
            img.width,
            img.height,
        )
        .map_err(|e| format!("overlay buffer: {e}"))?;
    }
    let rw = if layer.width > 0 {
        layer.width
    } else {
        img.width
    };
    let rh = if layer.height > 0 {
        layer.height
    } else {
        img.height
    };
    Ok(gst_video::VideoOverlayRectangle::new_raw(
        &buffer,
        layer.x,
        layer.y,
        rw,
        rh,
        gst_video::VideoOverlayFormatFlags::empty(),
    ))
}

/// Renders a text layer: one line in the bundled bold sans font, `size_px` pixels, colour
/// 0xRRGGBBAA, on a transparent background.
pub fn render_text(text: &str, size_px: u32, color: u32) -> Result<Image, String> {
    let font_bytes = std::fs::read(FONT_PATH)
        .map_err(|e| format!("font {FONT_PATH}: {e} (install fonts-dejavu-core)"))?;
    let font = fontdue::Font::from_bytes(font_bytes, fontdue::FontSettings::default())
        .map_err(|e| format!("font {FONT_PATH}: {e}"))?;
    let px = size_px.clamp(6, 512) as f32;
    let line = font
        .horizontal_line_metrics(px)
        .ok_or("font without horizontal metrics")?;
    let glyphs: Vec<(fontdue::Metrics, Vec<u8>)> =
        text.chars().map(|c| font.rasterize(c, px)).collect();
    let width = glyphs
        .iter()
        .map(|(m, _)| m.advance_width)
        .sum::<f32>()
        .ceil()
        .max(1.0) as u32;
    let height = (line.ascent - line.descent).ceil().max(1.0) as u32;
    let [r, g, b, a] = color.to_be_bytes();
    let mut pixels = vec![0u8; (width * height * 4) as usize];
    let mut pen = 0.0f32;
    for (m, cov) in &glyphs {
        let gx = (pen + m.xmin as f32).round() as i32;
        let gy = (line.ascent - m.height as f32 - m.ymin as f32).round() as i32;
        for row in 0..m.height {
            for col in 0..m.width {
                let (x, y) = (gx + col as i32, gy + row as i32);
                if x < 0 || y < 0 || x >= width as i32 || y >= height as i32 {
                    continue;
                }
                let c = u16::from(cov[row * m.width + col]);
                let i = ((y as u32 * width + x as u32) * 4) as usize;
                let alpha = (c * u16::from(a) / 255) as u8;
                if alpha > pixels[i + 3] {
                    pixels[i..i + 4].copy_from_slice(&[r, g, b, alpha]);
                }
            }
        }
        pen += m.advance_width;
    }
    Ok(Image {
        width,
        height,
        stride: width * 4,
        pixels,
    })
}

/// Decodes a PNG file into RGBA8.
pub fn load_png(path: &Path) -> Result<Image, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| err(&e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| err(&e))?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| err(&e))?;
    let (w, h) = (info.width, info.height);
    let src = &buf[..info.buffer_size()];
    let mut pixels = Vec::with_capacity((w * h * 4) as usize);
    match info.color_type {
        png::ColorType::Rgba => pixels.extend_from_slice(src),
        png::ColorType::Rgb => src
            .chunks_exact(3)
            .for_each(|p| pixels.extend_from_slice(&[p[0], p[1], p[2], 255])),
        png::ColorType::GrayscaleAlpha => src
            .chunks_exact(2)
            .for_each(|p| pixels.extend_from_slice(&[p[0], p[0], p[0], p[1]])),
        png::ColorType::Grayscale => src
            .iter()
            .for_each(|&v| pixels.extend_from_slice(&[v, v, v, 255])),
        png::ColorType::Indexed => return Err(err(&"indexed colour was not expanded")),
    }
    Ok(Image {
        width: w,
        height: h,
        stride: w * 4,
        pixels,
    })
}

/// Renders a layer's source (text or PNG; plugin sources are rendered by the plugin host).
pub fn render_builtin(source: &LayerSource) -> Option<Result<Image, String>> {
    match source {
        LayerSource::Text {
            text,
            size_px,
            color,
        } => Some(render_text(text, *size_px, *color)),
        LayerSource::Png { path } => Some(load_png(path)),
        LayerSource::Plugin { .. } => None,
    }
}
