//! Overlay layers, composited into the program's I420 frames between the switch and the encoder.
//!
//! Each layer is an RGBA image placed at x/y with a z-order. When a layer is set, its pixels are
//! converted once into luma and chroma planes with their alpha, in the frame's colour matrix
//! (BT.709 for HD, BT.601 otherwise, as GStreamer defaults I420). A buffer probe on the switch's
//! output then blends only the pixels the layers cover: no per-frame rendering, no per-frame
//! colour conversion, no work outside the rectangles. We do this ourselves because GStreamer's
//! generic `overlaycomposition` path unpacks and repacks every covered line on each frame, which
//! measured +30 % CPU on an idle 720p channel (bench/overlay-cpu.sh). Layers marked live-only are
//! skipped while the fallback is on air.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gst::prelude::*;
use gst_video::prelude::*;
use serde::Serialize;

use crate::action::{Layer, LayerSource};
use crate::media::image::Image;

/// The font for text layers (Debian package fonts-dejavu-core).
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

/// A layer converted for blending: I420-shaped planes with alpha, in frame coordinates.
struct Prepared {
    z: i32,
    live_only: bool,
    /// Luma rectangle: top-left in frame pixels, size.
    x: i32,
    y: i32,
    w: usize,
    h: usize,
    luma: Vec<u8>,
    luma_alpha: Vec<u8>,
    /// Chroma rectangle in chroma pixels (half resolution).
    cx: i32,
    cy: i32,
    cw: usize,
    ch: usize,
    cb: Vec<u8>,
    cr: Vec<u8>,
    chroma_alpha: Vec<u8>,
}

struct Entry {
    layer: Layer,
    /// The image at its render size.
    image: Image,
}

/// A layer as `/api/status` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    layers: Mutex<BTreeMap<String, Entry>>,
    /// What the probe blends, in z order; swapped whole on every change.
    prepared: Mutex<Arc<Vec<Prepared>>>,
    /// Whether the live source is on air (kept by the program).
    live: Arc<AtomicBool>,
    /// BT.709 (true) or BT.601 colour matrix of the frames.
    bt709: AtomicBool,
}

impl Overlay {
    /// `height` is the output height: HD (≥ 720 lines) frames use BT.709, others BT.601.
    pub fn new(live: Arc<AtomicBool>, height: u32) -> Arc<Overlay> {
        Arc::new(Overlay {
            layers: Mutex::default(),
            prepared: Mutex::new(Arc::new(Vec::new())),
            live,
            bt709: AtomicBool::new(height >= 720),
        })
    }

    /// Blends the layers into every I420 buffer that passes `pad` (the switch's output).
    pub fn attach(self: &Arc<Self>, pad: &gst::Pad) {
        let me = self.clone();
        let info: Mutex<Option<gst_video::VideoInfo>> = Mutex::default();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, probe| {
            let layers = me.prepared.lock().clone();
            if layers.is_empty() {
                return gst::PadProbeReturn::Ok;
            }
            let mut vi = info.lock();
            if vi.is_none() {
                *vi = pad
                    .current_caps()
                    .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok());
                if let Some(v) = vi.as_ref() {
                    me.bt709.store(
                        v.colorimetry().matrix() == gst_video::VideoColorMatrix::Bt709,
                        Ordering::Relaxed,
                    );
                }
            }
            let (Some(vinfo), Some(buffer)) = (vi.as_ref(), probe.buffer_mut()) else {
                return gst::PadProbeReturn::Ok;
            };
            let live = me.live.load(Ordering::Relaxed);
            if let Ok(mut frame) =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer.make_mut(), vinfo)
            {
                for l in layers.iter().filter(|l| live || !l.live_only) {
                    blend(&mut frame, l);
                }
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// Whether layer `name` already shows this source at this size (nothing to render).
    pub fn unchanged_source(&self, layer: &Layer) -> bool {
        self.layers.lock().get(&layer.name).is_some_and(|e| {
            e.layer.source == layer.source
                && e.layer.width == layer.width
                && e.layer.height == layer.height
        })
    }

    /// Moves or re-orders an existing layer without re-rendering. False if there is none.
    pub fn reposition(&self, layer: &Layer) -> bool {
        let mut layers = self.layers.lock();
        let Some(e) = layers.get_mut(&layer.name) else {
            return false;
        };
        e.layer = layer.clone();
        self.rebuild(&layers);
        true
    }

    /// Sets layer `layer.name` to `image` (scaled to the layer's width/height when given).
    pub fn set(&self, layer: &Layer, image: &Image) -> Result<(), String> {
        let image = scaled(image, layer.width, layer.height)?;
        let mut layers = self.layers.lock();
        layers.insert(
            layer.name.clone(),
            Entry {
                layer: layer.clone(),
                image,
            },
        );
        self.rebuild(&layers);
        Ok(())
    }

    /// Removes a layer. False if there was none.
    pub fn hide(&self, name: &str) -> bool {
        let mut layers = self.layers.lock();
        let had = layers.remove(name).is_some();
        self.rebuild(&layers);
        had
    }

    pub fn status(&self) -> Vec<LayerStatus> {
        self.layers
            .lock()
            .values()
            .map(|e| LayerStatus {
                name: e.layer.name.clone(),
                x: e.layer.x,
                y: e.layer.y,
                width: e.image.width,
                height: e.image.height,
                z: e.layer.z,
                live_only: e.layer.live_only,
            })
            .collect()
    }

    fn rebuild(&self, layers: &BTreeMap<String, Entry>) {
        let bt709 = self.bt709.load(Ordering::Relaxed);
        let mut v: Vec<Prepared> = layers
            .values()
            .map(|e| prepare(&e.layer, &e.image, bt709))
            .collect();
        v.sort_by_key(|p| p.z);
        *self.prepared.lock() = Arc::new(v);
    }
}

/// Nearest-neighbour scaling to `w`x`h` (0 keeps that side).
fn scaled(img: &Image, w: u32, h: u32) -> Result<Image, String> {
    let (w, h) = (
        if w == 0 { img.width } else { w },
        if h == 0 { img.height } else { h },
    );
    if (w, h) == (img.width, img.height) {
        return Ok(img.clone());
    }
    if u64::from(w) * u64::from(h) > 4096 * 4096 {
        return Err(format!("layer size {w}x{h} is too large"));
    }
    let mut pixels = vec![0u8; (w * h * 4) as usize];
    for y in 0..h {
        let sy = (u64::from(y) * u64::from(img.height) / u64::from(h)) as u32;
        for x in 0..w {
            let sx = (u64::from(x) * u64::from(img.width) / u64::from(w)) as u32;
            let s = sy as usize * img.stride as usize + sx as usize * 4;
            let d = (y as usize * w as usize + x as usize) * 4;
            pixels[d..d + 4].copy_from_slice(&img.pixels[s..s + 4]);
        }
    }
    Ok(Image {
        width: w,
        height: h,
        stride: w * 4,
        pixels,
    })
}

/// Limited-range Y'CbCr of an sRGB pixel.
fn ycbcr(r: u8, g: u8, b: u8, bt709: bool) -> (f32, f32, f32) {
    let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
    if bt709 {
        (
            16.0 + 0.1826 * r + 0.6142 * g + 0.0620 * b,
            128.0 - 0.1006 * r - 0.3386 * g + 0.4392 * b,
            128.0 + 0.4392 * r - 0.3989 * g - 0.0403 * b,
        )
    } else {
        (
            16.0 + 0.2568 * r + 0.5041 * g + 0.0979 * b,
            128.0 - 0.1482 * r - 0.2910 * g + 0.4392 * b,
            128.0 + 0.4392 * r - 0.3678 * g - 0.0714 * b,
        )
    }
}

fn prepare(layer: &Layer, img: &Image, bt709: bool) -> Prepared {
    let (w, h) = (img.width as usize, img.height as usize);
    let px = |x: usize, y: usize| &img.pixels[y * img.stride as usize + x * 4..][..4];
    let mut luma = vec![0u8; w * h];
    let mut luma_alpha = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let p = px(x, y);
            luma[y * w + x] = ycbcr(p[0], p[1], p[2], bt709).0.round().clamp(0.0, 255.0) as u8;
            luma_alpha[y * w + x] = p[3];
        }
    }
    // chroma pixels covering the layer; each averages the 2x2 luma pixels it stands for
    let (x0, y0) = (layer.x, layer.y);
    let cx = x0.div_euclid(2);
    let cy = y0.div_euclid(2);
    let cw = ((x0 + w as i32 + 1).div_euclid(2) - cx).max(0) as usize;
    let ch = ((y0 + h as i32 + 1).div_euclid(2) - cy).max(0) as usize;
    let mut cb = vec![128u8; cw * ch];
    let mut cr = vec![128u8; cw * ch];
    let mut chroma_alpha = vec![0u8; cw * ch];
    for j in 0..ch {
        for i in 0..cw {
            let (mut sa, mut su, mut sv) = (0f32, 0f32, 0f32);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let lx = (cx + i as i32) * 2 + dx - x0;
                let ly = (cy + j as i32) * 2 + dy - y0;
                if lx < 0 || ly < 0 || lx >= w as i32 || ly >= h as i32 {
                    continue;
                }
                let p = px(lx as usize, ly as usize);
                let a = f32::from(p[3]);
                let (_, u, v) = ycbcr(p[0], p[1], p[2], bt709);
                sa += a;
                su += a * u;
                sv += a * v;
            }
            if sa > 0.0 {
                cb[j * cw + i] = (su / sa).round().clamp(0.0, 255.0) as u8;
                cr[j * cw + i] = (sv / sa).round().clamp(0.0, 255.0) as u8;
                chroma_alpha[j * cw + i] = (sa / 4.0).round() as u8;
            }
        }
    }
    Prepared {
        z: layer.z,
        live_only: layer.live_only,
        x: x0,
        y: y0,
        w,
        h,
        luma,
        luma_alpha,
        cx,
        cy,
        cw,
        ch,
        cb,
        cr,
        chroma_alpha,
    }
}

/// Blends a `w`x`h` plane with alpha at (x, y) into a plane of `fw`x`fh`, clipped.
#[allow(clippy::too_many_arguments)]
fn blend_plane(
    dst: &mut [u8],
    stride: usize,
    fw: i32,
    fh: i32,
    x: i32,
    y: i32,
    w: usize,
    h: usize,
    src: &[u8],
    alpha: &[u8],
) {
    let x_from = (-x).max(0) as usize;
    let x_to = ((fw - x).max(0) as usize).min(w);
    if x_from >= x_to {
        return;
    }
    for row in 0..h {
        let fy = y + row as i32;
        if fy < 0 || fy >= fh {
            continue;
        }
        let d = &mut dst[fy as usize * stride + (x + x_from as i32) as usize..][..x_to - x_from];
        let s = &src[row * w + x_from..row * w + x_to];
        let a = &alpha[row * w + x_from..row * w + x_to];
        for ((d, &s), &a) in d.iter_mut().zip(s).zip(a) {
            if a == 0 {
                continue;
            }
            let a = u32::from(a);
            *d = ((u32::from(*d) * (255 - a) + u32::from(s) * a + 127) / 255) as u8;
        }
    }
}

fn blend(frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>, l: &Prepared) {
    let (fw, fh) = (frame.width() as i32, frame.height() as i32);
    let strides: Vec<usize> = frame.plane_stride().iter().map(|s| *s as usize).collect();
    if strides.len() < 3 {
        return;
    }
    if let Ok(y) = frame.plane_data_mut(0) {
        blend_plane(
            y,
            strides[0],
            fw,
            fh,
            l.x,
            l.y,
            l.w,
            l.h,
            &l.luma,
            &l.luma_alpha,
        );
    }
    let (cwf, chf) = ((fw + 1) / 2, (fh + 1) / 2);
    if let Ok(u) = frame.plane_data_mut(1) {
        blend_plane(
            u,
            strides[1],
            cwf,
            chf,
            l.cx,
            l.cy,
            l.cw,
            l.ch,
            &l.cb,
            &l.chroma_alpha,
        );
    }
    if let Ok(v) = frame.plane_data_mut(2) {
        blend_plane(
            v,
            strides[2],
            cwf,
            chf,
            l.cx,
            l.cy,
            l.cw,
            l.ch,
            &l.cr,
            &l.chroma_alpha,
        );
    }
}

/// Renders a text layer: one line, `size_px` pixels, colour 0xRRGGBBAA, on a transparent
/// background, in `font` (a TrueType/OpenType file) or DejaVu Sans Bold. Errors: the font file
/// cannot be read or parsed.
pub fn render_text(
    text: &str,
    size_px: u32,
    color: u32,
    font: Option<&Path>,
) -> Result<Image, String> {
    let font_path = font.unwrap_or(Path::new(FONT_PATH));
    let hint = if font.is_none() {
        " (install fonts-dejavu-core)"
    } else {
        ""
    };
    let font_bytes =
        std::fs::read(font_path).map_err(|e| format!("font {}: {e}{hint}", font_path.display()))?;
    let font = fontdue::Font::from_bytes(font_bytes, fontdue::FontSettings::default())
        .map_err(|e| format!("font {}: {e}", font_path.display()))?;
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
            font,
        } => Some(render_text(text, *size_px, *color, font.as_deref())),
        LayerSource::Png { path } => Some(load_png(path)),
        LayerSource::Plugin { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_layers_have_the_asked_colour_and_size() {
        let img = render_text("Hi!", 40, 0xff8000ff, None).expect("render");
        assert!(
            img.height >= 40 && img.height <= 60,
            "{}x{}",
            img.width,
            img.height
        );
        assert!(
            img.width > 40 && img.width < 120,
            "{}x{}",
            img.width,
            img.height
        );
        let ink: Vec<&[u8]> = img.pixels.chunks_exact(4).filter(|p| p[3] == 255).collect();
        assert!(ink.len() > 100, "{} fully covered pixels", ink.len());
        assert!(
            ink.iter().all(|p| p[..3] == [0xff, 0x80, 0x00]),
            "ink is the asked colour"
        );
        assert!(
            img.pixels.chunks_exact(4).any(|p| p[3] == 0),
            "the background is transparent"
        );
        let bigger = render_text("Hi!", 80, 0xffffffff, None).expect("render");
        assert!(bigger.width > img.width * 3 / 2);
        let e = render_text("x", 20, 0xffffffff, Some(Path::new("/nonexistent.ttf")))
            .expect_err("no font");
        assert!(e.contains("/nonexistent.ttf"), "{e}");
        let other = Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");
        if other.exists() {
            let regular = render_text("Hi!", 40, 0xffffffff, Some(other)).expect("regular font");
            assert_ne!(regular.pixels, bigger.pixels);
        }
    }

    #[test]
    fn png_layers_decode_to_rgba() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("logo.png");
        {
            let f = std::fs::File::create(&p).expect("create");
            let mut enc = png::Encoder::new(f, 3, 2);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().expect("header");
            w.write_image_data(&[255, 0, 0, 0, 255, 0, 0, 0, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9])
                .expect("data");
        }
        let img = load_png(&p).expect("decode");
        assert_eq!((img.width, img.height, img.stride), (3, 2, 12));
        assert_eq!(&img.pixels[..8], &[255, 0, 0, 255, 0, 255, 0, 255]);
        assert_eq!(&img.pixels[20..24], &[7, 8, 9, 255]);
        assert!(
            load_png(&dir.path().join("missing.png"))
                .expect_err("missing")
                .contains("missing.png")
        );
    }

    #[test]
    fn blending_is_exact_at_full_and_zero_alpha_and_clips_at_the_edges() {
        let layer = Layer {
            name: "t".into(),
            source: LayerSource::Png { path: "x".into() },
            x: -1,
            y: 1,
            width: 0,
            height: 0,
            z: 0,
            live_only: false,
        };
        // 2x2: white opaque, transparent / opaque, transparent
        let img = Image {
            width: 2,
            height: 2,
            stride: 8,
            pixels: vec![
                255, 255, 255, 255, 9, 9, 9, 0, 255, 255, 255, 255, 9, 9, 9, 0,
            ],
        };
        let p = prepare(&layer, &img, false);
        let (fw, fh) = (4usize, 4usize);
        let mut luma = vec![50u8; fw * fh];
        blend_plane(
            &mut luma,
            fw,
            fw as i32,
            fh as i32,
            p.x,
            p.y,
            p.w,
            p.h,
            &p.luma,
            &p.luma_alpha,
        );
        // column -1 is off-frame; column 0 got the transparent pixels: unchanged everywhere
        assert!(luma.iter().all(|&v| v == 50), "{luma:?}");
        let layer = Layer { x: 2, ..layer };
        let p = prepare(&layer, &img, false);
        blend_plane(
            &mut luma,
            fw,
            fw as i32,
            fh as i32,
            p.x,
            p.y,
            p.w,
            p.h,
            &p.luma,
            &p.luma_alpha,
        );
        assert_eq!(luma[fw + 2], 235, "opaque white is limited-range white");
        assert_eq!(luma[2 * fw + 2], 235);
        assert_eq!(luma[fw + 3], 50, "transparent leaves the frame alone");
        assert_eq!(luma[3 * fw + 2], 50, "rows below the layer are untouched");
    }
}
