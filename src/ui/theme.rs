//! Colours and glyphs for one colour depth. Views ask for meanings (warning, series 1, marker),
//! never for raw colours, so `--color none` and `--ascii` work everywhere.
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols;

use super::health::Health;
use super::options::{ColorMode, UiOptions};

#[derive(Clone, Debug)]
pub struct Theme {
    pub mode: ColorMode,
    pub ascii: bool,
}

/// Chart series in drawing order: batch statistic, running statistic, a third line, control
/// markers. Run B's lines (`--compare`) take the role of their A line, dimmed (`Theme::ghost`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Secondary,
    Tertiary,
    Marker,
}

impl Theme {
    pub fn new(options: &UiOptions) -> Theme {
        Theme {
            mode: options.color,
            ascii: options.ascii,
        }
    }

    /// The colour for this terminal's colour mode, from one of each kind.
    pub fn pick(&self, truecolor: (u8, u8, u8), indexed: u8, named: Color) -> Color {
        match self.mode {
            ColorMode::TrueColor => Color::Rgb(truecolor.0, truecolor.1, truecolor.2),
            ColorMode::Ansi256 => Color::Indexed(indexed),
            ColorMode::Ansi16 => named,
            ColorMode::None => Color::Reset,
        }
    }

    pub fn base(&self) -> Style {
        Style::default()
    }

    pub fn dim(&self) -> Style {
        match self.mode {
            ColorMode::None => Style::default(),
            _ => Style::default().fg(self.pick((128, 128, 128), 244, Color::DarkGray)),
        }
    }

    pub fn title(&self) -> Style {
        Style::default()
            .fg(self.pick((130, 200, 255), 117, Color::Cyan))
            .add_modifier(Modifier::BOLD)
    }

    pub fn border(&self) -> Style {
        self.dim()
    }

    /// The selected table row.
    pub fn selected(&self) -> Style {
        match self.mode {
            ColorMode::None => Style::default().add_modifier(Modifier::REVERSED),
            _ => Style::default()
                .bg(self.pick((45, 55, 80), 237, Color::Blue))
                .add_modifier(Modifier::BOLD),
        }
    }

    /// A value by its health: warnings and problems stand out even without colour.
    pub fn health(&self, health: Health) -> Style {
        match (health, self.mode) {
            (Health::Ok, _) => Style::default(),
            (Health::Warn, ColorMode::None) => Style::default().add_modifier(Modifier::UNDERLINED),
            (Health::Bad, ColorMode::None) => {
                Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
            }
            (Health::Warn, _) => Style::default().fg(self.pick((240, 200, 80), 221, Color::Yellow)),
            (Health::Bad, _) => Style::default()
                .fg(self.pick((255, 95, 95), 203, Color::LightRed))
                .add_modifier(Modifier::BOLD),
        }
    }

    /// Train/eval mode labels: eval mode is the unusual, interesting state.
    pub fn mode_eval(&self) -> Style {
        match self.mode {
            ColorMode::None => Style::default().add_modifier(Modifier::BOLD),
            _ => Style::default()
                .fg(self.pick((255, 170, 60), 214, Color::Magenta))
                .add_modifier(Modifier::BOLD),
        }
    }

    /// Banners such as PAUSED, FROZEN, FINISHED.
    pub fn banner(&self) -> Style {
        match self.mode {
            ColorMode::None => Style::default().add_modifier(Modifier::REVERSED),
            _ => Style::default()
                .fg(Color::Black)
                .bg(self.pick((240, 200, 80), 221, Color::Yellow))
                .add_modifier(Modifier::BOLD),
        }
    }

    /// A fresh status message (feedback to a key press).
    pub fn status(&self) -> Style {
        Style::default()
            .fg(self.pick((150, 230, 150), 114, Color::Green))
            .add_modifier(Modifier::BOLD)
    }

    pub fn series(&self, role: Role) -> Style {
        let color = match role {
            Role::Primary => self.pick((110, 170, 255), 75, Color::LightBlue),
            Role::Secondary => self.pick((255, 170, 60), 214, Color::Yellow),
            Role::Tertiary => self.pick((150, 230, 150), 114, Color::Green),
            Role::Marker => self.pick((230, 110, 230), 170, Color::Magenta),
        };
        Style::default().fg(color)
    }

    /// The step cursor's line and the step it reads.
    pub fn cursor(&self) -> Style {
        Style::default()
            .fg(self.pick((235, 235, 235), 255, Color::White))
            .add_modifier(Modifier::BOLD)
    }

    /// Run B's line for a series of this role (`--compare`): the same hue, dimmed, so A's lines
    /// stay in front; without colour, the terminal's faint attribute.
    pub fn ghost(&self, role: Role) -> Style {
        let color = match role {
            Role::Primary => self.pick((55, 85, 128), 24, Color::DarkGray),
            Role::Secondary => self.pick((128, 85, 30), 130, Color::DarkGray),
            Role::Tertiary => self.pick((75, 115, 75), 65, Color::DarkGray),
            Role::Marker => self.pick((115, 55, 115), 96, Color::DarkGray),
        };
        match self.mode {
            ColorMode::None => Style::default().add_modifier(Modifier::DIM),
            _ => Style::default().fg(color),
        }
    }

    pub fn borders(&self) -> symbols::border::Set<'static> {
        if self.ascii {
            ASCII_BORDER
        } else {
            symbols::border::ROUNDED
        }
    }

    /// `unicode` unless the terminal only has ASCII.
    pub fn glyph(&self, unicode: &'static str, ascii: &'static str) -> &'static str {
        if self.ascii {
            ascii
        } else {
            unicode
        }
    }
}

const ASCII_BORDER: symbols::border::Set<'static> = symbols::border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};
