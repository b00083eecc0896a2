//! Drawing: one file per panel. `draw` lays the panels out for the terminal's size; every view is a
//! pure function of the app state, so TestBackend snapshots pin them down.
mod ascii;
pub mod axis;
mod charts;
mod drift_map;
mod footer;
mod header;
mod heatmap;
mod help;
mod layers;
mod line_chart;
mod markers;
mod theory;
mod too_small;

pub use heatmap::unit;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::Frame;

use super::app::App;
use super::theme::Theme;
use super::time_window::Graph;

/// Below this the layout cannot show the header, the table and the footer.
pub const MIN_WIDTH: u16 = 44;
pub const MIN_HEIGHT: u16 = 12;

pub fn draw(frame: &mut Frame, app: &App, theme: &Theme) {
    draw_measured(frame, app, theme);
}

/// Draw, and say where the time charts went (the mouse and the step cursor use it).
pub fn draw_measured(frame: &mut Frame, app: &App, theme: &Theme) -> Vec<Graph> {
    let area = frame.area();
    let mut graphs = Vec::new();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small::draw(frame, area, theme);
    } else {
        let state = app.view();
        let header = header::lines(app, theme, area.width);
        let available = area.height.saturating_sub(header.len() as u16 + 1);
        let [header_area, table_area, charts_area, footer_area] = Layout::vertical([
            Constraint::Length(header.len() as u16),
            Constraint::Length(layers::height(state, available)),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(area);
        header::draw(frame, header_area, header);
        layers::draw(frame, table_area, app, theme);
        let (pages, drawn) = charts::draw(frame, charts_area, app, theme);
        graphs = drawn;
        footer::draw(frame, footer_area, app, theme, pages);
        if app.help {
            help::draw(frame, area, app.help_scroll, app.context, theme);
        }
    }
    if theme.ascii {
        ascii::downgrade(frame.buffer_mut());
    }
    graphs
}

/// The part of `area` inside a one-cell border.
fn inner(area: Rect) -> Rect {
    Rect {
        x: area.x.saturating_add(1),
        y: area.y.saturating_add(1),
        width: area.width.saturating_sub(2),
        height: area.height.saturating_sub(2),
    }
}
