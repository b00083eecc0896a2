//! Drawing the dashboard into ratatui's TestBackend and reading the screen back as text, for the
//! UI tests.
use bntop::ui::app::App;
use bntop::ui::options::{ColorMode, UiOptions};
use bntop::ui::theme::Theme;
use bntop::ui::view;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

pub fn render(app: &App, width: u16, height: u16, options: UiOptions) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    let theme = Theme::new(&options);
    terminal.draw(|f| view::draw(f, app, &theme)).expect("draw");
    terminal
}

/// The screen's text, one line per row, trailing spaces trimmed.
pub fn screen(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let width = buffer.area.width as usize;
    let symbols: Vec<&str> = buffer.content.iter().map(|c| c.symbol()).collect();
    symbols
        .chunks(width)
        .map(|row| row.concat().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Unicode glyphs and 256 colours: what most terminals show.
pub fn unicode() -> UiOptions {
    UiOptions {
        color: ColorMode::Ansi256,
        ..UiOptions::default()
    }
}
