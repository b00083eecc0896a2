//! Axis ranges that stay put: the time axis grows in 1-2-5 steps and value axes snap to round
//! numbers, so a new point changes a few cells rather than redrawing the whole chart (which is
//! what keeps the dashboard's bandwidth low over SSH).

/// The smallest 1-2-5 number at least `x` (for x > 0), with a tolerance for values that went
/// through f32 (0.1f32 is 0.10000000149).
pub fn nice_ceiling(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let decade = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * decade)
        .find(|&v| v >= x * (1.0 - 1e-6))
        .unwrap_or(10.0 * decade)
}

/// End of the time axis for a run at `step`: a 1-2-5 number, at least 100 steps.
pub fn time_axis_end(step: u64) -> u64 {
    nice_ceiling(step.max(100) as f64) as u64
}

/// Tick spacings in steps, ascending: 1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, ...
fn tick_spacings() -> impl Iterator<Item = u64> {
    (0..19u32).flat_map(|e| {
        let d = 10u64.pow(e);
        let quarter = (e >= 1).then(|| d / 10 * 25);
        [Some(d), Some(2 * d), quarter, Some(5 * d)]
            .into_iter()
            .flatten()
    })
}

/// Round steps to label a time axis over `[from, to]` drawn `width` cells wide: the multiples of
/// the finest 1-2-2.5-5 spacing whose labels fit with two cells between them.
pub fn step_ticks(from: u64, to: u64, width: u16) -> Vec<u64> {
    let (from, to) = (from.min(to), from.max(to));
    for spacing in tick_spacings() {
        let first = from.div_ceil(spacing).saturating_mul(spacing);
        if first > to {
            continue;
        }
        let count = ((to - first) / spacing).saturating_add(1);
        let last = first.saturating_add((count - 1).saturating_mul(spacing));
        let label = step_label(last).len().max(step_label(first).len()) as u64;
        // One label's room more than there are labels: they never touch, wherever they fall.
        if count.saturating_add(1).saturating_mul(label + 2) <= u64::from(width) {
            return (0..count).map(|k| first + k * spacing).collect();
        }
    }
    Vec::new()
}

/// A round step in few characters: 500, 2.5k, 12.5k, 1.25M.
pub fn step_label(step: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1_000_000_000_000, "T"),
        (1_000_000_000, "G"),
        (1_000_000, "M"),
        (1_000, "k"),
    ];
    let Some(&(size, unit)) = UNITS.iter().find(|(size, _)| step >= *size) else {
        return step.to_string();
    };
    let text = format!("{:.3}", step as f64 / size as f64);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

/// A step in full, with thousands separators: 10,536.
pub fn step_full(step: u64) -> String {
    let digits = step.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// [lo, hi] widened to multiples of a round unit (about a quarter of the span).
pub fn value_bounds(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let span = if hi > lo { hi - lo } else { lo.abs().max(1e-3) };
    let unit = nice_ceiling(span / 4.0);
    let mut a = (lo / unit).floor() * unit;
    let mut b = (hi / unit).ceil() * unit;
    if b <= a {
        a -= unit;
        b += unit;
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_two_five() {
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(5.0), 5.0);
        assert_eq!(nice_ceiling(0.013), 0.02);
        assert_eq!(nice_ceiling(1001.0), 2000.0);
        assert_eq!(time_axis_end(7), 100);
        assert_eq!(time_axis_end(101), 200);
        assert_eq!(time_axis_end(12_345), 20_000);
    }

    #[test]
    fn value_bounds_contain_the_data_and_are_round() {
        for &(lo, hi) in &[
            (0.12, 0.93),
            (-3.3, 2.1),
            (5.0, 5.0),
            (0.0, 0.0),
            (1e-6, 3e-6),
        ] {
            let (a, b) = value_bounds(lo, hi);
            assert!(a <= lo && b >= hi && b > a, "{lo} {hi} -> {a} {b}");
        }
        assert_eq!(value_bounds(0.12, 0.93), (0.0, 1.0));
        // A small change of the data leaves the bounds alone.
        assert_eq!(value_bounds(0.13, 0.91), value_bounds(0.12, 0.93));
    }

    #[test]
    fn step_ticks_are_round_and_fit() {
        // A 10,536-step run on a 40-cell axis: every 2k steps.
        assert_eq!(
            step_ticks(0, 10_536, 40),
            [0, 2_000, 4_000, 6_000, 8_000, 10_000]
        );
        // Wider: finer spacing; narrower: coarser.
        assert_eq!(step_ticks(0, 10_536, 80).len(), 11);
        assert_eq!(step_ticks(0, 10_536, 20), [0, 5_000, 10_000]);
        // A window that starts anywhere gets the multiples inside it.
        assert_eq!(
            step_ticks(9_536, 10_536, 40),
            [9_750, 10_000, 10_250, 10_500]
        );
        for (from, to, width) in [
            (0, 1, 10),
            (7, 7, 30),
            (0, u64::MAX, 200),
            (3, 1_000_003, 64),
        ] {
            let ticks = step_ticks(from, to, width);
            let labels: usize = ticks.iter().map(|t| step_label(*t).len() + 2).sum();
            let labels = labels + ticks.first().map_or(0, |t| step_label(*t).len() + 2);
            assert!(
                labels <= usize::from(width),
                "{from} {to} {width}: {ticks:?}"
            );
            assert!(ticks.iter().all(|t| (from..=to).contains(t)));
            assert!(ticks.windows(2).all(|w| w[0] < w[1]));
        }
        assert!(step_ticks(0, 100, 3).is_empty());
    }

    #[test]
    fn step_labels() {
        assert_eq!(step_label(0), "0");
        assert_eq!(step_label(500), "500");
        assert_eq!(step_label(2_500), "2.5k");
        assert_eq!(step_label(12_500), "12.5k");
        assert_eq!(step_label(1_250_000), "1.25M");
        assert_eq!(step_full(10_536), "10,536");
        assert_eq!(step_full(999), "999");
        assert_eq!(step_full(1_000_000), "1,000,000");
    }
}
