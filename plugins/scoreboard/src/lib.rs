//! A broadcast scoreboard overlay: a rounded dark panel with both teams' names and scores, an
//! optional title and an optional clock / over-count box on the right.
//!
//! `data` (JSON):
//!
//! ```json
//! {"home": {"name": "IND", "score": "187/4"},
//!  "away": {"name": "AUS", "score": "154"},
//!  "clock": "18.3 ov", "title": "2nd T20I"}
//! ```
//!
//! `clock` and `title` are optional; every value may be a string or a number. A size of 0 x 0
//! draws the default 560 x 88; one side 0 keeps the default aspect ratio. Everything scales with
//! the height; text shrinks if the width is too small for it.

use std::sync::OnceLock;

use onair_plugin_sdk::fontdue::{Font, FontSettings};
use onair_plugin_sdk::overlay::{Guest, Image};
use onair_plugin_sdk::{Canvas, Rgba};
use serde_json::Value;

/// DejaVu Sans Bold (Bitstream Vera licence, see `assets/DejaVuSans-Bold.LICENSE`).
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans-Bold.ttf");

pub const DEFAULT_WIDTH: u32 = 560;
pub const DEFAULT_HEIGHT: u32 = 88;
const MAX_SIDE: u32 = 4096;
const MAX_PIXELS: u64 = 4096 * 1024;

const PANEL: Rgba = Rgba::new(16, 20, 28, 224);
const NAME: Rgba = Rgba::WHITE;
const SCORE: Rgba = Rgba::new(255, 200, 61, 255);
const TITLE: Rgba = Rgba::new(156, 168, 186, 255);
const DIVIDER: Rgba = Rgba::new(255, 255, 255, 56);
const CLOCK_BOX: Rgba = Rgba::new(255, 255, 255, 30);
const CLOCK: Rgba = Rgba::WHITE;

struct Scoreboard;

impl Guest for Scoreboard {
    fn render(width: u32, height: u32, data: String) -> Result<Image, String> {
        let board = Board::parse(&data)?;
        let (width, height) = size(width, height)?;
        Ok(draw(font()?, &board, width, height).into_image())
    }
}

onair_plugin_sdk::export_overlay!(Scoreboard);

fn font() -> Result<&'static Font, String> {
    static FONT: OnceLock<Result<Font, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        Font::from_bytes(
            FONT_BYTES,
            FontSettings {
                load_substitutions: false,
                ..FontSettings::default()
            },
        )
        .map_err(|e| format!("font: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

struct Team {
    name: String,
    score: String,
}

struct Board {
    home: Team,
    away: Team,
    clock: Option<String>,
    title: Option<String>,
}

impl Board {
    fn parse(data: &str) -> Result<Board, String> {
        let v: Value = serde_json::from_str(data).map_err(|e| format!("data is not JSON: {e}"))?;
        if !v.is_object() {
            return Err("data must be a JSON object".into());
        }
        Ok(Board {
            home: team(&v, "home")?,
            away: team(&v, "away")?,
            clock: text(&v, "clock", "data.clock")?.filter(|s| !s.is_empty()),
            title: text(&v, "title", "data.title")?.filter(|s| !s.is_empty()),
        })
    }
}

fn team(data: &Value, key: &str) -> Result<Team, String> {
    let path = format!("data.{key}");
    let t = match data.get(key) {
        None | Some(Value::Null) => return Err(format!("{path} is missing")),
        Some(t @ Value::Object(_)) => t,
        Some(_) => return Err(format!("{path} must be an object")),
    };
    let name = format!("{path}.name");
    let score = format!("{path}.score");
    Ok(Team {
        name: text(t, "name", &name)?.ok_or(format!("{name} is missing"))?,
        score: text(t, "score", &score)?.ok_or(format!("{score} is missing"))?,
    })
}

/// A string or number field; `None` when absent or null.
fn text(obj: &Value, key: &str, path: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{path} must be a string or a number")),
    }
}

/// The size to draw: 0 x 0 is the default, one side 0 follows the default aspect ratio.
fn size(width: u32, height: u32) -> Result<(u32, u32), String> {
    let scaled =
        |v: u32, num: u32, den: u32| ((v as u64 * num as u64 + den as u64 / 2) / den as u64).max(1);
    let (w, h) = match (width, height) {
        (0, 0) => (DEFAULT_WIDTH as u64, DEFAULT_HEIGHT as u64),
        (0, h) => (scaled(h, DEFAULT_WIDTH, DEFAULT_HEIGHT), h as u64),
        (w, 0) => (w as u64, scaled(w, DEFAULT_HEIGHT, DEFAULT_WIDTH)),
        (w, h) => (w as u64, h as u64),
    };
    if w > MAX_SIDE as u64 || h > MAX_SIDE as u64 || w * h > MAX_PIXELS {
        return Err(format!(
            "size {w}x{h} is too large (at most {MAX_SIDE} px a side and {MAX_PIXELS} px in all)"
        ));
    }
    Ok((w as u32, h as u32))
}

/// Height of a capital letter above the baseline at `px`.
fn cap_height(font: &Font, px: f32) -> f32 {
    let m = font.metrics('H', px);
    m.bounds.height + m.bounds.ymin
}

/// Font sizes and horizontal measures, at one text scale.
struct Layout {
    name_px: f32,
    score_px: f32,
    title_px: f32,
    clock_px: f32,
    gap: f32,
    divider_margin: f32,
    home_name_w: f32,
    home_score_w: f32,
    away_name_w: f32,
    clock_box_w: f32,
    /// Width the whole board needs.
    needed: f32,
}

impl Layout {
    fn new(font: &Font, board: &Board, s: f32, k: f32) -> Layout {
        let name_px = 28.0 * s * k;
        let score_px = 34.0 * s * k;
        let title_px = 14.0 * s * k;
        let clock_px = 22.0 * s * k;
        let gap = 12.0 * s * k;
        let divider_margin = 20.0 * s * k;
        let w = |px: f32, t: &str| Canvas::text_width(font, px, t);
        let home_name_w = w(name_px, &board.home.name);
        let home_score_w = w(score_px, &board.home.score);
        let away_name_w = w(name_px, &board.away.name);
        let away_score_w = w(score_px, &board.away.score);
        let clock_box_w = match &board.clock {
            Some(c) => (w(clock_px, c) + 2.0 * 18.0 * s * k).max(84.0 * s * k),
            None => 0.0,
        };
        let teams = home_name_w
            + gap
            + home_score_w
            + 2.0 * divider_margin
            + 2.0 * s
            + away_name_w
            + gap
            + away_score_w;
        let title_w = board.title.as_deref().map_or(0.0, |t| w(title_px, t));
        let mut needed = 2.0 * PAD * s + teams.max(title_w);
        if board.clock.is_some() {
            needed += CLOCK_GAP * s + clock_box_w + CLOCK_INSET * s - PAD * s;
        }
        Layout {
            name_px,
            score_px,
            title_px,
            clock_px,
            gap,
            divider_margin,
            home_name_w,
            home_score_w,
            away_name_w,
            clock_box_w,
            needed,
        }
    }
}

/// Horizontal padding inside the panel, in units of the default height.
const PAD: f32 = 20.0;
/// Space between the teams and the clock box.
const CLOCK_GAP: f32 = 20.0;
/// Inset of the clock box from the panel's edge.
const CLOCK_INSET: f32 = 10.0;
const RADIUS: f32 = 14.0;

fn draw(font: &Font, board: &Board, width: u32, height: u32) -> Canvas {
    let (wf, hf) = (width as f32, height as f32);
    let s = hf / DEFAULT_HEIGHT as f32;
    let mut canvas = Canvas::new(width, height);
    canvas.fill_rounded_rect(0.0, 0.0, wf, hf, RADIUS * s, PANEL);

    // Shrink the text until it fits the width.
    let mut k = 1.0f32;
    let mut l = Layout::new(font, board, s, k);
    for _ in 0..8 {
        if l.needed <= wf || k < 0.2 {
            break;
        }
        k *= (wf / l.needed).max(0.5) * 0.995;
        l = Layout::new(font, board, s, k);
    }

    // Clock box: the right-hand end of the panel, full height less an inset.
    if let Some(clock) = &board.clock {
        let inset = CLOCK_INSET * s;
        let bx = wf - inset - l.clock_box_w;
        let bh = hf - 2.0 * inset;
        canvas.fill_rounded_rect(bx, inset, l.clock_box_w, bh, (RADIUS - 4.0) * s, CLOCK_BOX);
        let tw = Canvas::text_width(font, l.clock_px, clock);
        let baseline = hf / 2.0 + cap_height(font, l.clock_px) / 2.0;
        canvas.draw_text(
            font,
            l.clock_px,
            bx + (l.clock_box_w - tw) / 2.0,
            baseline,
            clock,
            CLOCK,
        );
    }

    // Title above the teams, or the teams centred alone.
    let centre = match &board.title {
        Some(title) => {
            let baseline = 12.0 * s + cap_height(font, l.title_px);
            canvas.draw_text(font, l.title_px, PAD * s, baseline, title, TITLE);
            (hf + 20.0 * s) / 2.0
        }
        None => hf / 2.0,
    };

    let baseline = centre + cap_height(font, l.score_px) / 2.0;
    let mut x = PAD * s;
    canvas.draw_text(font, l.name_px, x, baseline, &board.home.name, NAME);
    x += l.home_name_w + l.gap;
    canvas.draw_text(font, l.score_px, x, baseline, &board.home.score, SCORE);
    x += l.home_score_w + l.divider_margin;
    let divider_h = l.score_px * 1.05;
    canvas.fill_rounded_rect(x, centre - divider_h / 2.0, 2.0 * s, divider_h, s, DIVIDER);
    x += 2.0 * s + l.divider_margin;
    canvas.draw_text(font, l.name_px, x, baseline, &board.away.name, NAME);
    x += l.away_name_w + l.gap;
    canvas.draw_text(font, l.score_px, x, baseline, &board.away.score, SCORE);
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"home": {"name": "IND", "score": "187/4"}, "away": {"name": "AUS", "score": 154}, "clock": "18.3 ov", "title": "2nd T20I"}"#;

    fn render(w: u32, h: u32, data: &str) -> Result<Image, String> {
        Scoreboard::render(w, h, data.to_string())
    }

    #[test]
    fn default_size_and_layout() {
        let img = render(0, 0, SAMPLE).expect("renders");
        assert_eq!((img.width, img.height, img.stride), (560, 88, 560 * 4));
        assert_eq!(img.pixels.len(), 560 * 88 * 4);
        // Corner transparent (rounded), centre of the panel opaque-ish.
        assert_eq!(img.pixels[3], 0);
        let mid = (44 * 560 + 280) * 4;
        assert!(img.pixels[mid + 3] >= 224);
    }

    #[test]
    fn exact_size_and_deterministic() {
        let a = render(1280, 120, SAMPLE).expect("renders");
        let b = render(1280, 120, SAMPLE).expect("renders");
        assert_eq!((a.width, a.height), (1280, 120));
        assert_eq!(a.pixels, b.pixels);
        let c = render(200, 40, SAMPLE).expect("renders small");
        assert_eq!(c.pixels.len(), 200 * 40 * 4);
        let d = render(0, 176, SAMPLE).expect("renders");
        assert_eq!((d.width, d.height), (1120, 176));
    }

    #[test]
    fn optional_fields() {
        let img = render(
            0,
            0,
            r#"{"home": {"name": "A", "score": 1}, "away": {"name": "B", "score": "2"}}"#,
        )
        .expect("renders");
        assert_eq!(img.width, 560);
    }

    #[test]
    fn errors_name_the_field() {
        assert!(
            render(0, 0, "nope")
                .unwrap_err()
                .starts_with("data is not JSON: ")
        );
        assert_eq!(
            render(0, 0, "[]").unwrap_err(),
            "data must be a JSON object"
        );
        assert_eq!(
            render(0, 0, r#"{"away": {}}"#).unwrap_err(),
            "data.home is missing"
        );
        assert_eq!(
            render(0, 0, r#"{"home": {"score": 1}, "away": {}}"#).unwrap_err(),
            "data.home.name is missing"
        );
        assert_eq!(
            render(
                0,
                0,
                r#"{"home": {"name": "A", "score": 1}, "away": {"name": "B"}}"#
            )
            .unwrap_err(),
            "data.away.score is missing"
        );
        assert_eq!(
            render(
                0,
                0,
                r#"{"home": {"name": "A", "score": [1]}, "away": {"name": "B", "score": 2}}"#
            )
            .unwrap_err(),
            "data.home.score must be a string or a number"
        );
        assert!(
            render(9000, 88, SAMPLE)
                .unwrap_err()
                .starts_with("size 9000x88 is too large")
        );
    }
}
