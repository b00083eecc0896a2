//! Colours, sizes and the font: one place for the figure's look. The font is DejaVu Sans, embedded
//! (assets/README.md), so a machine without any font installed draws the same text.
use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle, RGBColor};

use super::figure::Hue;

pub const FONT: &str = "sans-serif";
pub const TITLE_SIZE: f64 = 22.0;
pub const TEXT_SIZE: f64 = 15.0;
pub const SMALL_SIZE: f64 = 13.0;
pub const BACKGROUND: RGBColor = RGBColor(255, 255, 255);
pub const INK: RGBColor = RGBColor(30, 30, 30);
pub const MUTED: RGBColor = RGBColor(110, 110, 110);
pub const GRID: RGBColor = RGBColor(225, 225, 225);
/// Opacity of a trace's min..max band, of the compared run's lines and of its markers.
pub const BAND_ALPHA: f64 = 0.2;
pub const GHOST_ALPHA: f64 = 0.8;
pub const GHOST_MARKER_ALPHA: f64 = 0.3;

/// A trace's colour (Tableau 10's first four: distinct, and readable in grey print).
pub fn hue(hue: Hue) -> RGBColor {
    match hue {
        Hue::Primary => RGBColor(31, 119, 180),
        Hue::Secondary => RGBColor(255, 127, 14),
        Hue::Tertiary => RGBColor(44, 160, 44),
        Hue::Reference => RGBColor(214, 39, 40),
    }
}

/// The compared run's version of a colour: halfway to a dark grey, so it reads as the same
/// quantity but not the same run.
pub fn ghost(colour: RGBColor) -> RGBColor {
    let mix = |c: u8| ((u16::from(c) + 60) / 2) as u8;
    RGBColor(mix(colour.0), mix(colour.1), mix(colour.2))
}

/// The colour of the k-th kind of control: the rest of the palette, away from the traces'.
pub fn marker(k: usize) -> RGBColor {
    const KINDS: [RGBColor; 6] = [
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    KINDS[k % KINDS.len()]
}

/// Registers the embedded font once; every text of the figure uses it.
pub fn ensure_font() -> Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../../assets/DejaVuSans.ttf"),
        )
        .is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| "the embedded font does not load".to_string())
}
