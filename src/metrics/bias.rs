//! The bias before BN: cancellation and folding (BN-METRICS.md, section 6).

/// Cancellation ratio |Σ g| / Σ |g| of the gradients g = ∂L/∂h of one channel's pre-BN
/// activations h. ∂L/∂b = Σ g for a bias added before BN, and in train mode BN's mean
/// subtraction makes it exactly 0 (in f32 rounding leaves 1e-7 to 1.6e-6 for the 256-4,096
/// terms of a channel, below √n·2⁻²⁴); in eval mode it is not. In [0, 1];
/// 0 when all gradients are 0 (0/0).
pub fn cancellation_ratio(grads_of_preactivation: &[f32]) -> f64 {
    let (sum, sum_abs) = grads_of_preactivation
        .iter()
        .fold((0.0, 0.0), |(sum, sum_abs), &g| {
            let g = f64::from(g);
            (sum + g, sum_abs + g.abs())
        });
    if sum_abs == 0.0 {
        return 0.0;
    }
    sum.abs() / sum_abs
}

/// Conv (or dense) weight and bias with an eval-mode BN folded in.
#[derive(Clone, Debug, PartialEq)]
pub struct Folded {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Folds eval-mode BN into the preceding conv/dense layer (eval only: uses the running stats).
///
/// With s_c = γ_c/sqrt(v_R,c + ε): W'_c = W_c·s_c for output-channel row c of the row-major
/// weight (out_channels, ...), and b'_c = (b_c - μ_R,c)·s_c + β_c (b = 0 when `bias` is None).
/// Computed in f64, stored as f32.
///
/// # Panics
/// If `out_channels` is 0 or does not divide `weight.len()`, or a per-channel slice (`bias`,
/// `gamma`, `beta`, `running_mean`, `running_var`) does not have `out_channels` values.
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per conv and BN parameter, as the engine holds them"
)]
pub fn fold_conv_bn(
    weight: &[f32],
    bias: Option<&[f32]>,
    out_channels: usize,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f64,
) -> Folded {
    let per_channel = [gamma, beta, running_mean, running_var];
    assert!(
        per_channel
            .iter()
            .chain(bias.as_ref())
            .all(|s| s.len() == out_channels),
        "BN parameters and bias need one value per output channel ({out_channels})"
    );
    let scale: Vec<f64> = gamma
        .iter()
        .zip(running_var)
        .map(|(&g, &v)| f64::from(g) / (f64::from(v) + eps).sqrt())
        .collect();
    let weight = super::split_equal(weight, out_channels)
        .zip(&scale)
        .flat_map(|(row, &s)| row.iter().map(move |&w| (f64::from(w) * s) as f32))
        .collect();
    let bias = (0..out_channels)
        .map(|c| {
            let b = bias.map_or(0.0, |b| f64::from(b[c]));
            ((b - f64::from(running_mean[c])) * scale[c] + f64::from(beta[c])) as f32
        })
        .collect();
    Folded { weight, bias }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::moments::moments;
    use crate::metrics::test_util::{assert_close, Gaussian};
    use crate::metrics::BN_EPSILON;

    #[test]
    fn cancellation_of_known_vectors() {
        assert_eq!(cancellation_ratio(&[1.0, -1.0, 2.0, -2.0]), 0.0);
        assert_eq!(cancellation_ratio(&[1.0, 2.0]), 1.0);
        assert_close(cancellation_ratio(&[1.0, -3.0]), 0.5, 1e-15);
        assert_eq!(cancellation_ratio(&[0.0, 0.0]), 0.0);
        assert_eq!(cancellation_ratio(&[]), 0.0);
        assert!(cancellation_ratio(&[f32::NAN, 1.0]).is_nan());
    }

    #[test]
    fn train_mode_bn_backward_cancels_the_bias_gradient() {
        // BN backward for one channel: ∂L/∂h = (γ/σ̃)(g - mean g - x̂·mean(g x̂)), g = ∂L/∂y.
        let mut gauss = Gaussian::new(5);
        let h: Vec<f32> = (0..256)
            .map(|_| (0.7 + 2.0 * gauss.sample()) as f32)
            .collect();
        let upstream: Vec<f64> = (0..256).map(|_| 0.3 + gauss.sample()).collect();
        let m = moments(&h);
        let sigma = (m.var + BN_EPSILON).sqrt();
        let x_hat: Vec<f64> = h.iter().map(|&x| (f64::from(x) - m.mean) / sigma).collect();
        let n = h.len() as f64;
        let mean_g = upstream.iter().sum::<f64>() / n;
        let mean_gx = upstream.iter().zip(&x_hat).map(|(g, x)| g * x).sum::<f64>() / n;
        let gamma = 1.3;
        let grad_h: Vec<f32> = upstream
            .iter()
            .zip(&x_hat)
            .map(|(g, x)| (gamma / sigma * (g - mean_g - x * mean_gx)) as f32)
            .collect();
        assert!(cancellation_ratio(&grad_h) < 1e-6);
        // Without BN the same upstream gradient (mean 0.3) does not cancel.
        let raw: Vec<f32> = upstream.iter().map(|&g| g as f32).collect();
        assert!(cancellation_ratio(&raw) > 0.1);
    }

    #[test]
    fn folded_layer_equals_layer_then_eval_bn() {
        // Dense layer (= 1x1 conv at one pixel): 3 outputs, 4 inputs.
        let (outputs, inputs) = (3, 4);
        let weight = [
            0.5, -1.0, 0.25, 2.0, //
            -0.3, 0.8, 1.5, -0.7, //
            1.1, 0.0, -0.4, 0.9,
        ];
        let bias = [0.1, -0.2, 0.3];
        let gamma = [1.5, -0.7, 0.9];
        let beta = [0.2, 0.0, -1.0];
        let running_mean = [0.4, -1.2, 2.5];
        let running_var = [2.0, 0.5, 4.0];
        let mut gauss = Gaussian::new(9);
        for with_bias in [true, false] {
            let b = if with_bias { Some(&bias[..]) } else { None };
            let folded = fold_conv_bn(
                &weight,
                b,
                outputs,
                &gamma,
                &beta,
                &running_mean,
                &running_var,
                BN_EPSILON,
            );
            for _ in 0..10 {
                let x: Vec<f64> = (0..inputs).map(|_| gauss.sample()).collect();
                for c in 0..outputs {
                    let row = &weight[c * inputs..(c + 1) * inputs];
                    let pre = row
                        .iter()
                        .zip(&x)
                        .map(|(&w, x)| f64::from(w) * x)
                        .sum::<f64>()
                        + b.map_or(0.0, |b| f64::from(b[c]));
                    let eval_bn = f64::from(gamma[c]) * (pre - f64::from(running_mean[c]))
                        / (f64::from(running_var[c]) + BN_EPSILON).sqrt()
                        + f64::from(beta[c]);
                    let folded_row = &folded.weight[c * inputs..(c + 1) * inputs];
                    let y = folded_row
                        .iter()
                        .zip(&x)
                        .map(|(&w, x)| f64::from(w) * x)
                        .sum::<f64>()
                        + f64::from(folded.bias[c]);
                    assert_close(y, eval_bn, 1e-5);
                }
            }
        }
    }
}
