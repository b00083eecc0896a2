//! `--ascii`: the last step of every frame replaces whatever non-ASCII glyph a widget drew
//! (Braille dots, box drawing, blocks, Greek letters) with an ASCII stand-in, so no view can leak one.
use ratatui::buffer::Buffer;

pub fn downgrade(buffer: &mut Buffer) {
    for cell in buffer.content.iter_mut() {
        let symbol = cell.symbol();
        if symbol.is_ascii() {
            continue;
        }
        let replacement = symbol.chars().next().map_or(" ", stand_in);
        cell.set_symbol(replacement);
    }
}

fn stand_in(c: char) -> &'static str {
    match c {
        '\u{2800}' => " ",              // empty Braille cell
        '\u{2801}'..='\u{28FF}' => "*", // Braille dots: a plotted point
        '─' | '━' | '┄' | '╌' => "-",
        '│' | '┃' | '┆' | '╎' => "|",
        '┌' | '┐' | '└' | '┘' | '╭' | '╮' | '╯' | '╰' | '├' | '┤' | '┬' | '┴' | '┼' => {
            "+"
        }
        '•' | '·' => ".",
        '▀' | '▄' | '█' | '▌' | '▐' | '■' | '▋' | '▊' | '▉' => "#",
        '▏' | '▎' | '▍' => "|",
        '░' => ".",
        '▒' => ":",
        '▓' => "%",
        'μ' => "u",
        'σ' => "s",
        'Σ' => "S",
        '≤' => "<",
        'γ' => "g",
        'β' => "b",
        'η' => "n",
        'θ' => "0",
        'Ξ' => "X",
        'Φ' => "F",
        '∇' => "d",
        'Δ' => "D",
        'µ' => "u",
        'λ' => "l",
        '√' => "V",
        '³' => "3",
        '²' => "2",
        '±' => "+",
        '≈' => "~",
        '→' => ">",
        '←' => "<",
        '↑' => "^",
        '↓' => "v",
        '‖' => "|",
        '…' => ".",
        '−' | '–' | '—' => "-",
        '×' => "x",
        '▶' => ">",
        '⏸' | '❚' => "=",
        '●' => "*",
        '○' => "o",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;

    #[test]
    fn leaves_only_ascii() {
        let mut buffer = Buffer::empty(Rect::new(0, 0, 8, 1));
        buffer.set_string(0, 0, "╭─μ⣿⠀é▀x", ratatui::style::Style::default());
        downgrade(&mut buffer);
        let text: String = buffer.content.iter().map(|c| c.symbol()).collect();
        assert_eq!(text, "+-u* ?#x");
    }
}
