//! BatchNorm (+ ReLU) for held-out inference and PreciseBN's passes: no tape, so no backward to
//! record, and one host pass per channel instead of the dozen broadcast and elementwise dfdx
//! kernels of [`batchnorm`](super::batchnorm) (which the probe and the eval-mode-with-tape path
//! keep). The fused training kernel's arithmetic, from its own [`Constants`] and affine maps:
//! (x - centre)·(γ·inv_std) + β, with the batch's mean and BIASED variance or the running
//! statistics, which stay untouched.
use dfdx::prelude::*;
use rayon::prelude::*;

use super::batchnorm::BnInput;
use super::bn_kernel::{batch_moments, Constants};
use super::forward::InferenceStats;
use super::host::{from_host, shared_pool, to_host, to_pooled};
use super::model::BatchNorm;
use super::parallel::chunks_per_task;
use crate::metrics::moments::Moments;

/// Normalises channel-major `x` (C, N, H, W) by `stats`, then applies γ, β and (with `relu`)
/// max(0, ·). With batch statistics it also returns them: per channel, the mean and BIASED
/// variance of `x`.
pub fn batch_norm_infer(
    x: BnInput<NoneTape>,
    bn: &BatchNorm,
    stats: InferenceStats,
    relu: bool,
) -> (BnInput<NoneTape>, Option<Vec<Moments>>) {
    let shape = *x.shape();
    let channels = shape.0;
    assert_eq!(channels, bn.channels());
    let mut xs = to_pooled(&x, &shared_pool());
    let (constants, batch) = match stats {
        InferenceStats::Batch => {
            let batch = batch_moments(&xs, channels);
            (Constants::of_batch(&batch, bn.epsilon), Some(batch))
        }
        InferenceStats::Running => (Constants::of_running(bn), None),
    };
    let affine = constants.affine(&to_host(&bn.scale), &to_host(&bn.bias));
    let n = shape.1 * shape.2 * shape.3;
    if n > 0 {
        (affine.par_iter().zip(xs.par_chunks_exact_mut(n)))
            .with_min_len(chunks_per_task(n))
            .for_each(|(a, values)| {
                for v in values.iter_mut() {
                    let y = a.apply(*v);
                    // f32::max turns NaN into 0, as dfdx's ReLU does.
                    *v = if relu { y.max(0.0) } else { y };
                }
            });
    }
    (from_host(x.device(), &xs, shape), batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::batchnorm::{normalize_with_batch_stats, normalize_with_running_stats};
    use crate::metrics::moments::channel_moments;

    fn assert_close(what: &str, a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = 1.0 + b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// A BN with γ, β and running statistics far from their defaults, and an input whose
    /// channels sit off zero, so every term of the arithmetic shows.
    fn setup(seed: u64) -> (BnInput<NoneTape>, BatchNorm) {
        let dev = Cpu::seed_from_u64(seed);
        let shape = (5, 3, 4, 6);
        let x: BnInput<NoneTape> = dev.sample_normal_like(&shape);
        let offsets: Tensor<(usize,), f32, Cpu> = dev.sample_normal_like(&(5,));
        let x = x + (offsets * 3.0).broadcast_like::<_, Axes3<1, 2, 3>>(&shape);
        let mut bn = BatchNorm::new(&dev, 5);
        bn.scale = dev.sample_normal_like(&(5,));
        bn.bias = dev.sample_normal_like(&(5,));
        bn.running_mean = dev.sample_normal_like(&(5,));
        let var: Tensor<(usize,), f32, Cpu> = dev.sample_uniform_like(&(5,));
        bn.running_var = var + 0.2;
        (x, bn)
    }

    /// Outputs equal the dfdx-op forwards (with and without the ReLU) to f32 rounding, the
    /// returned batch moments are the input's, and the running statistics are untouched.
    #[test]
    fn matches_the_dfdx_op_forwards_for_both_statistics() {
        for seed in 0..3 {
            let (x, bn) = setup(seed);
            let running = (to_host(&bn.running_mean), to_host(&bn.running_var));
            for relu in [false, true] {
                let (out, batch) = batch_norm_infer(x.clone(), &bn, InferenceStats::Batch, relu);
                let mut reference = normalize_with_batch_stats(x.clone(), &bn);
                if relu {
                    reference = reference.relu();
                }
                assert_close("batch", &to_host(&out), &to_host(&reference));
                assert_eq!(batch, Some(channel_moments(&to_host(&x), 5)));

                let (out, none) = batch_norm_infer(x.clone(), &bn, InferenceStats::Running, relu);
                let mut reference = normalize_with_running_stats(x.clone(), &bn);
                if relu {
                    reference = reference.relu();
                }
                assert_close("running", &to_host(&out), &to_host(&reference));
                assert!(none.is_none());
            }
            let after = (to_host(&bn.running_mean), to_host(&bn.running_var));
            assert_eq!(after, running, "the running statistics stay as they were");
        }
    }

    /// Whole-network inference (what evaluation and PreciseBN run) against the same network
    /// through the dfdx-op BN: logits and every block's BN-input moments agree.
    #[test]
    fn network_inference_matches_the_dfdx_op_network() {
        use crate::engine::conv::Im2colCache;
        use crate::engine::forward::PassConfig;
        use crate::engine::model::{Net, Widths};

        let dev = Cpu::seed_from_u64(11);
        let widths: Widths = "4,8,6".parse().expect("widths");
        let mut net = Net::new(&dev, 1, &widths);
        for (i, block) in net.blocks.iter_mut().enumerate() {
            let c = block.bn.channels();
            block.bn.scale = dev.sample_normal_like(&(c,));
            block.bn.bias = dev.sample_normal_like(&(c,));
            let mean: Vec<f32> = (0..c).map(|j| (j as f32 - 1.5) * 0.3).collect();
            let var: Vec<f32> = (0..c).map(|j| 0.5 + (i + j) as f32 * 0.1).collect();
            block.set_running_stats(&mean, &var);
        }
        let x: BnInput<NoneTape> = dev.sample_normal_like(&(1, 7, 9, 9));
        let mut cache = Im2colCache::default();
        for (stats, conv_bias) in [
            (InferenceStats::Batch, false),
            (InferenceStats::Running, true),
        ] {
            let mut pass = PassConfig {
                conv_bias,
                cache: &mut cache,
            };
            let fast = to_host(&net.forward_infer(x.clone(), stats, &mut pass));
            let moments = net.batch_moments(x.clone(), &mut pass);

            let mut h = x.clone();
            let mut expected_moments = Vec::new();
            for block in &net.blocks {
                let mut conv = block.conv(h, &mut pass);
                expected_moments.push(channel_moments(&to_host(&conv), block.bn.channels()));
                conv = match stats {
                    InferenceStats::Batch => normalize_with_batch_stats(conv, &block.bn),
                    InferenceStats::Running => normalize_with_running_stats(conv, &block.bn),
                };
                h = conv.relu();
            }
            let reference = to_host(&net.classify(h));
            assert_close(&format!("{stats:?} logits"), &fast, &reference);
            if stats == InferenceStats::Batch {
                for (got, want) in moments.iter().zip(&expected_moments) {
                    for (g, w) in got.channels.iter().zip(want) {
                        assert!((g.mean - w.mean).abs() <= 1e-5 * (1.0 + w.mean.abs()));
                        assert!((g.var - w.var).abs() <= 1e-5 * (1.0 + w.var));
                    }
                }
            }
        }
    }
}
