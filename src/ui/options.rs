//! Dashboard options and the colour depth, chosen once at start-up.
use std::time::Duration;

/// What the user asked for with `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    TrueColor,
    Ansi256,
    Ansi16,
    None,
}

/// The colour depth the dashboard draws with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMode {
    TrueColor,
    Ansi256,
    Ansi16,
    None,
}

impl ColorChoice {
    /// Resolve `auto` from the environment. An explicit `--color` wins over NO_COLOR (no-color.org:
    /// command-line arguments override it); COLORTERM is often not forwarded by ssh, so without it
    /// TERM decides between 256 and 16 colours.
    pub fn resolve(self, env: impl Fn(&str) -> Option<String>) -> ColorMode {
        match self {
            ColorChoice::TrueColor => ColorMode::TrueColor,
            ColorChoice::Ansi256 => ColorMode::Ansi256,
            ColorChoice::Ansi16 => ColorMode::Ansi16,
            ColorChoice::None => ColorMode::None,
            ColorChoice::Auto => {
                if env("NO_COLOR").is_some_and(|v| !v.is_empty()) {
                    return ColorMode::None;
                }
                let colorterm = env("COLORTERM").unwrap_or_default().to_ascii_lowercase();
                if colorterm == "truecolor" || colorterm == "24bit" {
                    return ColorMode::TrueColor;
                }
                let term = env("TERM").unwrap_or_default();
                if term.is_empty() || term == "dumb" {
                    ColorMode::None
                } else if term.contains("256color") {
                    ColorMode::Ansi256
                } else {
                    ColorMode::Ansi16
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct UiOptions {
    /// At most this many frames per second.
    pub fps: u32,
    pub color: ColorMode,
    /// Only ASCII glyphs: no Braille, box drawing or Greek letters.
    pub ascii: bool,
    pub mouse: bool,
    /// A viewer that only watches: run controls are refused with a message, not sent.
    pub readonly: bool,
}

impl UiOptions {
    pub fn frame_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.fps.max(1)))
    }
}

impl Default for UiOptions {
    fn default() -> Self {
        UiOptions {
            fps: 10,
            color: ColorMode::Ansi256,
            ascii: false,
            mouse: false,
            readonly: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn auto_follows_no_color_colorterm_and_term() {
        let auto = ColorChoice::Auto;
        let no_color = [("NO_COLOR", "1"), ("COLORTERM", "truecolor")];
        assert_eq!(auto.resolve(env_of(&no_color)), ColorMode::None);
        let empty_no_color = [("NO_COLOR", ""), ("TERM", "xterm")];
        assert_eq!(auto.resolve(env_of(&empty_no_color)), ColorMode::Ansi16);
        let truecolor = [("COLORTERM", "24bit"), ("TERM", "xterm")];
        assert_eq!(auto.resolve(env_of(&truecolor)), ColorMode::TrueColor);
        let t256 = [("TERM", "tmux-256color")];
        assert_eq!(auto.resolve(env_of(&t256)), ColorMode::Ansi256);
        let dumb = [("TERM", "dumb")];
        assert_eq!(auto.resolve(env_of(&dumb)), ColorMode::None);
    }

    #[test]
    fn explicit_choice_overrides_no_color() {
        let no_color = [("NO_COLOR", "1")];
        assert_eq!(
            ColorChoice::Ansi16.resolve(env_of(&no_color)),
            ColorMode::Ansi16
        );
    }
}
