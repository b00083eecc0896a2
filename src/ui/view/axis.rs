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
}
