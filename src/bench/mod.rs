//! Benchmarks behind `bntop bench` (training speed, metrics on vs off) and `bntop bench-dashboard`
//! (render time, terminal bandwidth, memory of the dashboard). Release builds only give numbers
//! worth reporting.
pub mod dashboard;
pub mod flops;
pub mod interleaved;
pub mod session;
pub mod training;

/// The value at fraction `p` (0 = min, 0.5 = median, 1 = max) of an ascending slice; NaN if empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
