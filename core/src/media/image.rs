//! An RGBA image drawn off the media thread (an overlay layer: a plugin's, or the built-in text
//! and PNG renderers'), and the checks it passes before the overlay reads it.

/// An image an overlay renderer drew: RGBA8, not premultiplied, `stride` bytes per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub pixels: Vec<u8>,
}

/// The widest or tallest image an overlay plugin may return, pixels (the output is at most
/// 4K; 8192 leaves room for scaling down).
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Whether an overlay plugin's image can be read as it says: sides 1..=[`MAX_IMAGE_SIDE`], a
/// stride of at least 4 bytes a pixel and `stride * height` bytes. In u64: `width * 4` in u32
/// wrapped for a width over 2^30 and let a malformed image through.
pub fn image_is_sound(img: &Image) -> bool {
    (1..=MAX_IMAGE_SIDE).contains(&img.width)
        && (1..=MAX_IMAGE_SIDE).contains(&img.height)
        && u64::from(img.stride) >= u64::from(img.width) * 4
        && img.pixels.len() as u64 >= u64::from(img.stride) * u64::from(img.height)
}
