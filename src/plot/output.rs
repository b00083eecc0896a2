//! The output file: its format from the extension (`.svg` or `.png`), the backend that draws it.
use std::path::Path;

use plotters::prelude::*;

use super::draw::{self, size};
use super::figure::Figure;
use super::style::ensure_font;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// The format `path`'s extension names (case-insensitive), or why there is none.
    pub fn of(path: &Path) -> Result<Format, String> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            Some(other) => Err(format!(
                "{}: unknown image format .{other} (use .svg or .png)",
                path.display()
            )),
            None => Err(format!(
                "{}: no extension to choose the format by (use .svg or .png)",
                path.display()
            )),
        }
    }
}

/// Draws `figure` into `path` in `format`.
pub fn write(figure: &Figure, path: &Path, format: Format) -> Result<(), String> {
    ensure_font()?;
    let dims = size(figure.panels.len());
    match format {
        Format::Svg => {
            let root = SVGBackend::new(path, dims).into_drawing_area();
            draw::draw(&root, figure)
        }
        Format::Png => {
            let root = BitMapBackend::new(path, dims).into_drawing_area();
            draw::draw(&root, figure)
        }
    }
    .map_err(|e| format!("{}: {e}", path.display()))
}
