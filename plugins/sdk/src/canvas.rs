//! An RGBA8 drawing surface, NOT premultiplied, rows top to bottom, stride = width * 4: the
//! layout of the WIT `image` record. Everything is drawn with source-over compositing, and every
//! operation is deterministic (same calls, same bytes).

use fontdue::Font;

use crate::overlay::Image;

/// A colour, not premultiplied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rgba {
    pub r: u8,
    pub g: u8,
    pub b: u8,
    pub a: u8,
}

impl Rgba {
    pub const TRANSPARENT: Rgba = Rgba::new(0, 0, 0, 0);
    pub const WHITE: Rgba = Rgba::new(255, 255, 255, 255);
    pub const BLACK: Rgba = Rgba::new(0, 0, 0, 255);

    pub const fn new(r: u8, g: u8, b: u8, a: u8) -> Rgba {
        Rgba { r, g, b, a }
    }

    /// From 0xRRGGBBAA, onair's colour notation.
    pub const fn from_u32(rgba: u32) -> Rgba {
        let [r, g, b, a] = rgba.to_be_bytes();
        Rgba { r, g, b, a }
    }

    /// 0xRRGGBBAA.
    pub const fn to_u32(self) -> u32 {
        u32::from_be_bytes([self.r, self.g, self.b, self.a])
    }

    /// The same colour with alpha `a`.
    pub const fn with_alpha(self, a: u8) -> Rgba {
        Rgba { a, ..self }
    }
}

/// An RGBA8 image being drawn, transparent when new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A transparent `width` x `height` canvas.
    pub fn new(width: u32, height: u32) -> Canvas {
        let len = width as usize * height as usize * 4;
        Canvas {
            width,
            height,
            pixels: vec![0; len],
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes per row: always `width * 4`.
    pub fn stride(&self) -> u32 {
        self.width * 4
    }

    /// The pixels, `stride * height` bytes.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The pixel at (`x`, `y`), or `None` outside the canvas.
    pub fn pixel(&self, x: u32, y: u32) -> Option<Rgba> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        let p = &self.pixels[i..i + 4];
        Some(Rgba::new(p[0], p[1], p[2], p[3]))
    }

    /// Composites `color` over the pixel at (`x`, `y`) with `coverage` (0..=1) scaling its alpha.
    /// Pixels outside the canvas are ignored.
    pub fn blend_pixel(&mut self, x: i32, y: i32, color: Rgba, coverage: f32) {
        if x < 0 || y < 0 || x as u32 >= self.width || y as u32 >= self.height {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        blend(&mut self.pixels[i..i + 4], color, coverage);
    }

    /// Fills the `w` x `h` rectangle at (`x`, `y`), clipped to the canvas.
    pub fn fill_rect(&mut self, x: i32, y: i32, w: u32, h: u32, color: Rgba) {
        let x0 = x.max(0) as i64;
        let y0 = y.max(0) as i64;
        let x1 = (x as i64 + w as i64).min(self.width as i64);
        let y1 = (y as i64 + h as i64).min(self.height as i64);
        if x0 >= x1 || y0 >= y1 || color.a == 0 {
            return;
        }
        let stride = self.width as usize * 4;
        for row in y0 as usize..y1 as usize {
            let line = &mut self.pixels[row * stride..(row + 1) * stride];
            for px in line[x0 as usize * 4..x1 as usize * 4].chunks_exact_mut(4) {
                blend(px, color, 1.0);
            }
        }
    }

    /// Fills a rectangle with rounded corners of `radius` (clamped to half the shorter side),
    /// anti-aliased: corners and fractional edges get partial coverage.
    pub fn fill_rounded_rect(&mut self, x: f32, y: f32, w: f32, h: f32, radius: f32, color: Rgba) {
        if !(w > 0.0 && h > 0.0) || color.a == 0 {
            return;
        }
        let r = radius.max(0.0).min(w / 2.0).min(h / 2.0);
        let (cx, cy) = (x + w / 2.0, y + h / 2.0);
        let (hx, hy) = (w / 2.0 - r, h / 2.0 - r);
        let x0 = (x.floor().max(0.0)) as i64;
        let y0 = (y.floor().max(0.0)) as i64;
        let x1 = ((x + w).ceil() as i64).min(self.width as i64);
        let y1 = ((y + h).ceil() as i64).min(self.height as i64);
        for py in y0..y1 {
            let qy = ((py as f32 + 0.5) - cy).abs() - hy;
            for px in x0..x1 {
                let qx = ((px as f32 + 0.5) - cx).abs() - hx;
                // Signed distance from the pixel centre to the rounded rectangle's edge.
                let ox = qx.max(0.0);
                let oy = qy.max(0.0);
                let outside = if ox == 0.0 {
                    oy
                } else if oy == 0.0 {
                    ox
                } else {
                    (ox * ox + oy * oy).sqrt()
                };
                let d = outside + qx.max(qy).min(0.0) - r;
                let coverage = (0.5 - d).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    self.blend_pixel(px as i32, py as i32, color, coverage);
                }
            }
        }
    }

    /// The advance width of `text` set in `font` at `px` pixels, kerning included: how far
    /// [`Canvas::draw_text`] moves the pen.
    pub fn text_width(font: &Font, px: f32, text: &str) -> f32 {
        let mut width = 0.0;
        let mut prev: Option<char> = None;
        for c in text.chars() {
            if let Some(p) = prev {
                width += font.horizontal_kern(p, c, px).unwrap_or(0.0);
            }
            width += font.metrics(c, px).advance_width;
            prev = Some(c);
        }
        width
    }

    /// Draws one line of `text` in `font` at `px` pixels, its pen starting at `x` on the baseline
    /// `y_baseline`, in `color` (anti-aliased). Returns the pen position after the text
    /// (`x + text_width`).
    pub fn draw_text(
        &mut self,
        font: &Font,
        px: f32,
        x: f32,
        y_baseline: f32,
        text: &str,
        color: Rgba,
    ) -> f32 {
        let mut pen = x;
        let baseline = y_baseline.round() as i32;
        let mut prev: Option<char> = None;
        for c in text.chars() {
            if let Some(p) = prev {
                pen += font.horizontal_kern(p, c, px).unwrap_or(0.0);
            }
            let (m, coverage) = font.rasterize(c, px);
            let left = pen.round() as i32 + m.xmin;
            let top = baseline - m.ymin - m.height as i32;
            if m.width > 0 {
                for (row, line) in coverage.chunks_exact(m.width).enumerate() {
                    for (col, &cov) in line.iter().enumerate() {
                        if cov > 0 {
                            self.blend_pixel(
                                left + col as i32,
                                top + row as i32,
                                color,
                                cov as f32 / 255.0,
                            );
                        }
                    }
                }
            }
            pen += m.advance_width;
            prev = Some(c);
        }
        pen
    }

    /// The canvas as the overlay world's `image` record (`onair:plugin@0.3.0`).
    pub fn into_image(self) -> Image {
        Image {
            width: self.width,
            height: self.height,
            stride: self.width * 4,
            pixels: self.pixels,
        }
    }
}

/// Source-over compositing of `src` (alpha scaled by `coverage`) onto one non-premultiplied
/// RGBA8 pixel.
fn blend(dst: &mut [u8], src: Rgba, coverage: f32) {
    let sa = src.a as f32 / 255.0 * coverage.clamp(0.0, 1.0);
    if sa <= 0.0 {
        return;
    }
    if sa >= 1.0 {
        dst.copy_from_slice(&[src.r, src.g, src.b, 255]);
        return;
    }
    if dst[3] == 0 {
        dst.copy_from_slice(&[src.r, src.g, src.b, (sa * 255.0 + 0.5) as u8]);
        return;
    }
    let da = dst[3] as f32 / 255.0;
    let keep = da * (1.0 - sa);
    let oa = sa + keep;
    let mix = |s: u8, d: u8| -> u8 { ((s as f32 * sa + d as f32 * keep) / oa + 0.5) as u8 };
    let out = [
        mix(src.r, dst[0]),
        mix(src.g, dst[1]),
        mix(src.b, dst[2]),
        (oa * 255.0 + 0.5) as u8,
    ];
    dst.copy_from_slice(&out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_is_transparent_and_sized() {
        let c = Canvas::new(3, 2);
        assert_eq!(c.pixels().len(), 24);
        assert!(c.pixels().iter().all(|&b| b == 0));
        assert_eq!(c.stride(), 12);
    }

    #[test]
    fn source_over_not_premultiplied() {
        let mut c = Canvas::new(1, 1);
        c.fill_rect(0, 0, 1, 1, Rgba::new(200, 100, 50, 128));
        assert_eq!(c.pixel(0, 0), Some(Rgba::new(200, 100, 50, 128)));
        c.fill_rect(0, 0, 1, 1, Rgba::new(0, 0, 255, 255));
        assert_eq!(c.pixel(0, 0), Some(Rgba::new(0, 0, 255, 255)));
        let mut c = Canvas::new(1, 1);
        c.fill_rect(0, 0, 1, 1, Rgba::new(255, 255, 255, 255));
        c.fill_rect(0, 0, 1, 1, Rgba::new(0, 0, 0, 128));
        assert_eq!(c.pixel(0, 0), Some(Rgba::new(127, 127, 127, 255)));
    }

    #[test]
    fn fill_rect_clips() {
        let mut c = Canvas::new(4, 4);
        c.fill_rect(-2, -2, 4, 4, Rgba::WHITE);
        assert_eq!(c.pixel(1, 1), Some(Rgba::WHITE));
        assert_eq!(c.pixel(2, 2), Some(Rgba::TRANSPARENT));
        c.fill_rect(3, 3, 100, 100, Rgba::WHITE);
        assert_eq!(c.pixel(3, 3), Some(Rgba::WHITE));
    }

    #[test]
    fn rounded_rect_antialiases_corners() {
        let mut c = Canvas::new(20, 20);
        c.fill_rounded_rect(0.0, 0.0, 20.0, 20.0, 8.0, Rgba::WHITE);
        assert_eq!(c.pixel(10, 10), Some(Rgba::WHITE));
        assert_eq!(c.pixel(0, 10), Some(Rgba::WHITE));
        assert_eq!(c.pixel(0, 0).map(|p| p.a), Some(0));
        let edge = c.pixel(1, 3).map(|p| p.a).unwrap_or(0);
        assert!(edge > 0 && edge < 255, "corner edge alpha {edge}");
        assert_eq!(
            c.pixel(1, 3).map(|p| (p.r, p.g, p.b)),
            Some((255, 255, 255))
        );
    }

    #[test]
    fn colour_notation() {
        let c = Rgba::from_u32(0x10141ce0);
        assert_eq!(c, Rgba::new(16, 20, 28, 224));
        assert_eq!(c.to_u32(), 0x10141ce0);
    }
}
