//! Number formatting for narrow table cells: a fixed number of significant digits, switching to
//! scientific notation outside [1e-3, 1e5), and non-finite values spelled out.

/// `x` with `sig` significant digits in at most about `sig + 5` characters.
pub fn num(x: f64, sig: usize) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return "0".into();
    }
    let sig = sig.max(1);
    let magnitude = x.abs().log10().floor() as i32;
    if (-3..5).contains(&magnitude) {
        let decimals = (sig as i32 - 1 - magnitude).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        let mantissa_decimals = sig - 1;
        // Rust writes 1.5e-5 (no padding, no '+'), which is already compact.
        format!("{x:.mantissa_decimals$e}")
    }
}

/// A fraction in [0, 1] as a percentage with one decimal.
pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", 100.0 * x)
    } else {
        num(x, 3)
    }
}

/// BN momentum: three decimals where that is exact enough, otherwise scientific.
pub fn momentum(m: f32) -> String {
    let m = f64::from(m);
    if m == 0.0 || (m >= 0.001 && (m * 1000.0 - (m * 1000.0).round()).abs() < 1e-6) {
        format!("{m:.3}")
    } else {
        num(m, 3)
    }
}

/// A piece of a table cell: a number, or text between numbers.
#[derive(Clone, Copy, Debug)]
pub enum Part {
    Num(f64),
    Text(&'static str),
}

/// `parts` in at most `width` characters, never cutting a number: with `sig` significant digits,
/// or fewer until it fits (`1.5e15/4.8e1` becomes `2e15/5e1` rather than `1.5e15/4.`); `…` when
/// even one digit does not fit.
pub fn fit(parts: &[Part], sig: usize, width: usize) -> String {
    for s in (1..=sig.max(1)).rev() {
        let text: String = parts
            .iter()
            .map(|p| match *p {
                Part::Num(x) => num(x, s),
                Part::Text(t) => t.to_string(),
            })
            .collect();
        if text.chars().count() <= width {
            return text;
        }
    }
    "…".into()
}

/// Channels named `c3 c7 c12` in at most `max_chars` characters: names are never cut; those
/// that do not fit are counted instead (`c3 c7 … +5`).
pub fn channel_list(channels: &[usize], max_chars: usize) -> String {
    let mut out = String::new();
    for (k, c) in channels.iter().enumerate() {
        let name = format!("c{c}");
        let rest = channels.len() - k - 1;
        let sep = if out.is_empty() { "" } else { " " };
        // Room for this name, and for "… +n" after it unless it is the last.
        let tail = if rest > 0 {
            format!(" … +{rest}").chars().count()
        } else {
            0
        };
        if out.chars().count() + sep.len() + name.len() + tail > max_chars {
            let more = channels.len() - k;
            return format!("{out}{sep}… +{more}");
        }
        out.push_str(sep);
        out.push_str(&name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits_and_scientific_outside_the_readable_range() {
        assert_eq!(num(0.12345, 3), "0.123");
        assert_eq!(num(12.345, 3), "12.3");
        assert_eq!(num(1234.5, 3), "1234");
        assert_eq!(num(-0.0012345, 2), "-0.0012");
        assert_eq!(num(0.000012345, 2), "1.2e-5");
        assert_eq!(num(123456.0, 2), "1.2e5");
        assert_eq!(num(0.0, 3), "0");
        assert_eq!(num(f64::NAN, 3), "NaN");
        assert_eq!(num(f64::NEG_INFINITY, 3), "-inf");
    }

    #[test]
    fn momentum_and_percentages() {
        assert_eq!(momentum(0.1), "0.100");
        assert_eq!(momentum(0.005), "0.005");
        assert_eq!(momentum(0.0), "0.000");
        assert_eq!(momentum(1.0), "1.000");
        assert_eq!(momentum(0.0005), "5.00e-4");
        assert_eq!(momentum(0.1234), "0.123");
        assert_eq!(pct(0.9876), "98.8%");
    }

    #[test]
    fn channel_lists_name_whole_channels_and_count_the_rest() {
        assert_eq!(channel_list(&[3, 7, 12], 40), "c3 c7 c12");
        assert_eq!(channel_list(&[3, 7, 12, 15, 20], 14), "c3 c7 c12 … +2");
        assert_eq!(channel_list(&[3, 7, 12, 15, 20], 13), "c3 c7 … +3");
        assert_eq!(channel_list(&[], 10), "");
        assert_eq!(channel_list(&[1000], 3), "… +1");
    }

    #[test]
    fn cells_drop_digits_rather_than_cut_a_number() {
        use Part::{Num, Text};
        let pair = [Num(1.5e15), Text("/"), Num(48.0)];
        assert_eq!(fit(&pair, 2, 13), "1.5e15/48");
        let pair = [Num(-1.5e-15), Text("/"), Num(-4.8e-15)];
        assert_eq!(fit(&pair, 2, 17), "-1.5e-15/-4.8e-15");
        assert_eq!(fit(&pair, 2, 13), "-1e-15/-5e-15");
        assert_eq!(fit(&pair, 2, 12), "…");
        assert_eq!(fit(&[Num(1.234e-15)], 3, 7), "1.2e-15");
        assert_eq!(fit(&[Num(1.234e-15)], 3, 6), "1e-15");
    }
}
