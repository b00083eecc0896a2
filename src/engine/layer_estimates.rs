//! What a viewer cannot rebuild from a thinned stream, estimated where every step passes: each
//! layer's drift noise floor D0 and the fit of its running mean as an EMA (format 1.5). A
//! recording keeps per-channel arrays every few seconds and a remote viewer every second, but
//! both estimates need successive steps, so the publisher computes them and writes them into
//! the snapshot it publishes; the dashboard prefers them to its own.
use crate::metrics::ema_window::{spread, EmaWindow};
use crate::metrics::noise_floor::FloorEstimate;
use crate::protocol::{BnMode, EmaFit, LayerSnapshot};

/// Channels per layer whose means the EMA fit follows (evenly spaced), as the dashboard charts.
const EMA_CHANNELS: usize = 64;
/// Steps between two EMA fits: a fit costs O(window x channels), and over a window of hundreds
/// of steps a few more steps change nothing one can see. Snapshots in between carry the last fit.
pub const EMA_FIT_EVERY: u64 = 8;

/// One layer's estimates, fed every step in order.
#[derive(Default)]
pub struct LayerEstimates {
    floor: FloorEstimate,
    window: EmaWindow,
    /// Momentum and mode of the window's steps: a change starts the window over.
    regime: Option<(f32, BnMode)>,
    fit: Option<EmaFit>,
    fitted_at: u64,
}

impl LayerEstimates {
    /// Observe `layer` at `step` and write D0 and the EMA fit into it.
    pub fn annotate(&mut self, step: u64, layer: &mut LayerSnapshot, eps: f64) {
        if layer.batch_mean.is_empty() {
            return;
        }
        self.floor
            .observe(step, &layer.batch_mean, &layer.running_var_pre, eps);
        layer.summary.noise_floor = self
            .floor
            .floor(layer.momentum)
            .map_or(f32::NAN, |f| f as f32);
        let regime = (layer.momentum, layer.mode);
        if self.regime != Some(regime) {
            self.window.clear();
            self.fit = None;
            self.regime = Some(regime);
        }
        self.window.push_followed(
            step,
            spread(layer.batch_mean.len(), EMA_CHANNELS),
            &layer.batch_mean,
            &layer.running_mean_post,
        );
        if self.window.len() == 1 {
            self.fit = None;
        }
        let due = self.fit.is_none() || step >= self.fitted_at + EMA_FIT_EVERY;
        if layer.mode == BnMode::Train && due {
            self.fit = self.window.read(f64::from(layer.momentum)).map(|r| EmaFit {
                steps: r.steps as u32,
                lag: r.lag.map_or(f32::NAN, |x| x as f32),
                noise: r.noise as f32,
                noise_predicted: r.noise_predicted as f32,
                batch_correlation: r.batch_correlation as f32,
                best_momentum: r.best_momentum.map_or(f32::NAN, |x| x as f32),
            });
            if self.fit.is_some() {
                self.fitted_at = step;
            }
        }
        layer.ema = self.fit;
    }
}
