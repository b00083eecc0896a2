//! BatchNorm facts checked on the real network and real digits (BN-METRICS.md sections 1, 5, 6),
//! against dfdx's own BatchNorm and the pure metric functions.
use dfdx::nn::modules::BatchNorm2D;
use dfdx::prelude::*;

use super::batches::gather_channel_major;
use super::conv::Im2colCache;
use super::data::{embedded_digits, DataSet};
use super::forward::{BlockObservation, Observer, PassConfig};
use super::host::{from_host, to_host};
use super::model::{one_hot, BatchNorm, Net, Widths, CLASSES};
use super::params::BlockGrads;
use crate::metrics::{drift, ema, moments, weights};
use crate::protocol::BnMode;

/// The digits' default network and one with a fourth block (8x8 -> 8 -> 4 -> 2 -> 1).
const THREE_BLOCKS: &str = "16,32,64";
const FOUR_BLOCKS: &str = "16,32,64,128";

struct Fixture {
    dev: Cpu,
    net: Net,
    data: DataSet,
    cache: Im2colCache,
}

impl Fixture {
    fn new(seed: u64) -> Fixture {
        Fixture::with_widths(seed, THREE_BLOCKS)
    }

    fn with_widths(seed: u64, widths: &str) -> Fixture {
        let dev = Cpu::seed_from_u64(seed);
        let widths: Widths = widths.parse().expect("widths");
        let net = Net::new(&dev, 1, &widths);
        let mut data = embedded_digits().expect("embedded digits");
        data.standardise();
        Fixture {
            dev,
            net,
            data,
            cache: Im2colCache::default(),
        }
    }

    /// Forward and backward on training images `first..first+64`; returns the observations and
    /// each block's gradients. Train-mode blocks update their running statistics, as in training.
    fn step(
        &mut self,
        first: usize,
        mode: BnMode,
        conv_bias: bool,
    ) -> (Vec<BlockObservation>, Vec<BlockGrads>) {
        let modes = vec![mode; self.net.blocks.len()];
        let indices: Vec<usize> = (first..first + 64).collect();
        let (pixels, labels) = gather_channel_major(&self.data.train, &indices);
        let x = self.dev.tensor_from_vec(pixels, (1, indices.len(), 8, 8));
        let targets = one_hot(&labels);
        let targets = self
            .dev
            .tensor_from_vec(targets, (labels.len(), Const::<CLASSES>));
        let mut observer = Observer {
            keep_activations: true,
            ..Observer::default()
        };
        let mut pass = PassConfig {
            conv_bias,
            cache: &mut self.cache,
        };
        let grads = self.net.alloc_grads().expect("gradients");
        let logits =
            self.net
                .forward_train(x.traced(grads), &modes, &mut pass, Some(&mut observer));
        let grads = dfdx::losses::cross_entropy_with_logits_loss(logits, targets).backward();
        let block_grads = self.net.blocks.iter().map(|b| b.grads(&grads)).collect();
        (observer.blocks, block_grads)
    }

    /// A few train-mode steps, so the running statistics are no longer their initial 0 and 1.
    fn warm_up(&mut self) {
        for i in 0..5 {
            self.step(64 * i, BnMode::Train, true);
        }
    }
}

/// The BN input and output (before the ReLU) the fixture's forward kept on the host.
fn bn_input(seen: &BlockObservation) -> &[f32] {
    &seen.activations.as_ref().expect("kept activations").input
}
fn bn_output(seen: &BlockObservation) -> &[f32] {
    &seen.activations.as_ref().expect("kept activations").output
}

const TRAIN: BnMode = BnMode::Train;
const EVAL: BnMode = BnMode::Eval;

/// dfdx's own BN layer with `bn`'s parameters and state, as the reference.
fn dfdx_bn<const C: usize>(bn: &BatchNorm) -> BatchNorm2D<C, f32, Cpu> {
    let dev = bn.scale.device().clone();
    let mut layer: BatchNorm2D<C, f32, Cpu> = BuildModule::build(&dev);
    layer.scale = from_host(&dev, &to_host(&bn.scale), Rank1::<C>::default());
    layer.bias = from_host(&dev, &to_host(&bn.bias), Rank1::<C>::default());
    layer.running_mean = from_host(&dev, &to_host(&bn.running_mean), Rank1::<C>::default());
    layer.running_var = from_host(&dev, &to_host(&bn.running_var), Rank1::<C>::default());
    layer.epsilon = bn.epsilon;
    layer.momentum = bn.momentum;
    layer
}

fn max_abs(xs: &[f32]) -> f32 {
    xs.iter().fold(0.0, |m, x| m.max(x.abs()))
}

#[test]
fn dfdx_running_update_is_the_ema_with_unbiased_variance() {
    for widths in [THREE_BLOCKS, FOUR_BLOCKS] {
        running_update_is_the_ema_with_unbiased_variance(widths);
    }
}

fn running_update_is_the_ema_with_unbiased_variance(widths: &str) {
    let mut f = Fixture::with_widths(1, widths);
    for block in &mut f.net.blocks {
        block.set_momentum(0.3);
    }
    f.warm_up();
    let (seen, _) = f.step(320, TRAIN, false);
    assert_eq!(seen.len(), f.net.blocks.len());
    for (layer, obs) in seen.iter().enumerate() {
        let batch = moments::channel_moments(bn_input(obs), obs.running_mean_pre.len());
        for (c, m) in batch.iter().enumerate() {
            let mean = ema::ema_update(obs.running_mean_pre[c] as f64, m.mean, 0.3);
            let var = ema::running_var_update(obs.running_var_pre[c] as f64, m.var, obs.n, 0.3);
            let (got_mean, got_var) = (
                obs.running_mean_post[c] as f64,
                obs.running_var_post[c] as f64,
            );
            assert!(
                (mean - got_mean).abs() < 1e-5 * (1.0 + mean.abs()),
                "{widths} layer {layer} c {c}: mean {mean} vs dfdx {got_mean}"
            );
            assert!(
                (var - got_var).abs() < 1e-5 * (1.0 + var.abs()),
                "{widths} layer {layer} c {c}: var {var} vs dfdx {got_var}"
            );
            // The biased variance would be measurably different at this n (layer 3: n = 256,
            // layer 4: 64).
            let biased = ema::ema_update(obs.running_var_pre[c] as f64, m.var, 0.3);
            assert!(
                (biased - got_var).abs() > 1e-7,
                "running variance must store the unbiased estimate"
            );
        }
    }
}

#[test]
fn eval_mode_leaves_running_stats_and_switching_modes_is_x_eval_equals_r_x_train_plus_d() {
    let mut f = Fixture::new(2);
    f.warm_up();
    let (train, _) = f.step(0, TRAIN, false);
    // Same weights, same input, first layer's running stats now as they were before that update.
    let first = &train[0];
    let bn = &mut f.net.blocks[0].bn;
    bn.running_mean.copy_from(&first.running_mean_pre);
    bn.running_var.copy_from(&first.running_var_pre);
    let (eval, _) = f.step(0, EVAL, false);
    let e = &eval[0];
    assert_eq!(
        e.running_mean_pre, e.running_mean_post,
        "eval mode must not update the running mean"
    );
    assert_eq!(e.running_var_pre, e.running_var_post);
    assert_eq!(
        bn_input(e),
        bn_input(first),
        "same weights and input give the same BN input"
    );

    let gamma = f.net.blocks[0].gamma();
    let beta = f.net.blocks[0].beta();
    let batch = moments::channel_moments(bn_input(first), 16);
    for c in 0..16 {
        let dr = drift::drift(
            batch[c].mean,
            batch[c].var,
            first.running_mean_pre[c] as f64,
            first.running_var_pre[c] as f64,
            1e-5,
        );
        let chunk = c * first.n..(c + 1) * first.n;
        for (yt, ye) in bn_output(first)[chunk.clone()]
            .iter()
            .zip(&bn_output(e)[chunk])
        {
            let x_train = (*yt as f64 - beta[c] as f64) / gamma[c] as f64;
            let x_eval = (*ye as f64 - beta[c] as f64) / gamma[c] as f64;
            assert!(
                (x_eval - (dr.r * x_train + dr.d)).abs() < 1e-3 * (1.0 + x_eval.abs()),
                "channel {c}"
            );
        }
    }
}

/// Block 1 of the three-block network and block 4 (128 channels) of the four-block one.
#[test]
fn running_stats_normalisation_with_no_tape_equals_dfdx_inference() {
    inference_equals_dfdx::<16>(THREE_BLOCKS, 0);
    inference_equals_dfdx::<128>(FOUR_BLOCKS, 3);
}

fn inference_equals_dfdx<const C: usize>(widths: &str, block: usize) {
    let mut f = Fixture::with_widths(3, widths);
    f.warm_up();
    let bn = &f.net.blocks[block].bn;
    assert_eq!(bn.channels(), C);
    let x: Tensor<(usize, usize, usize, usize), f32, Cpu> = f.dev.sample_normal_like(&(C, 4, 5, 6));
    let ours = super::batchnorm::normalize_with_running_stats(x.clone(), bn);
    // dfdx's inference forward takes (N, C, H, W).
    let x = x.realize::<(Const<C>, usize, usize, usize)>();
    let dfdx_out = dfdx_bn::<C>(bn).forward(x.permute::<_, Axes4<1, 0, 2, 3>>());
    let dfdx_out = dfdx_out.permute::<_, Axes4<1, 0, 2, 3>>();
    for (a, b) in ours.as_vec().iter().zip(dfdx_out.as_vec()) {
        assert!((a - b).abs() < 1e-5, "{widths}: {a} vs {b}");
    }
}

#[test]
fn pre_bn_bias_gradient_vanishes_in_train_mode_but_not_in_eval_mode() {
    let mut f = Fixture::new(4);
    f.warm_up();
    let (_, train) = f.step(64, TRAIN, true);
    let (_, eval) = f.step(64, EVAL, true);
    for layer in 0..f.net.blocks.len() {
        let scale = max_abs(&train[layer].beta);
        assert!(
            scale > 1e-4,
            "layer {layer}: β gradient should be clearly non-zero ({scale})"
        );
        assert!(
            max_abs(&train[layer].bias) < 1e-4 * scale,
            "layer {layer}: train-mode bias gradient {:?}",
            train[layer].bias
        );
        // Eval mode: ∂L/∂b = (γ/σ_R)·∂L/∂β exactly (BN-METRICS.md section 6).
        let block = &f.net.blocks[layer];
        let (gamma, var) = (block.gamma(), block.running_var());
        assert!(
            max_abs(&eval[layer].bias) > 0.1 * max_abs(&eval[layer].beta),
            "layer {layer}: eval-mode bias gradient too small"
        );
        for c in 0..gamma.len() {
            let predicted =
                gamma[c] as f64 / (var[c] as f64 + 1e-5).sqrt() * eval[layer].beta[c] as f64;
            let got = eval[layer].bias[c] as f64;
            assert!(
                (got - predicted).abs() < 1e-3 * (1e-3 + predicted.abs()),
                "layer {layer} c {c}: {got} vs {predicted}"
            );
        }
    }
}

#[test]
fn train_mode_is_scale_invariant_and_the_weight_gradient_is_orthogonal_to_the_weight() {
    let mut f = Fixture::new(5);
    f.warm_up();
    let mut scaled = Fixture::new(5);
    scaled.warm_up();
    let c = 3.0f32;
    scaled.net.blocks[1].weight = scaled.net.blocks[1].weight.clone() * c;

    let (seen, grads) = f.step(128, TRAIN, false);
    let (seen_scaled, grads_scaled) = scaled.step(128, TRAIN, false);
    // Everything after block 2's BN is unchanged (ε makes it approximate: relative ~ ε/σ²).
    for (a, b) in bn_input(&seen[2]).iter().zip(bn_input(&seen_scaled[2])) {
        assert!(
            (a - b).abs() < 1e-3 * (1.0 + a.abs()),
            "block3 input changed: {a} vs {b}"
        );
    }
    let w = f.net.blocks[1].weight();
    let cosines = weights::row_cosines(&w, &grads[1].weight, 32);
    let worst = cosines.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(worst < 1e-4, "max |cos(w_c, g_c)| = {worst}");
    // ∇L(cw) = ∇L(w)/c.
    let ratio = weights::norm(&grads_scaled[1].weight) / weights::norm(&grads[1].weight);
    assert!(
        (ratio - 1.0 / c as f64).abs() < 1e-3,
        "gradient norm ratio {ratio}"
    );

    // In eval mode the layer is not normalised by its own batch: the gradient has a radial part.
    let (_, eval) = f.step(128, EVAL, false);
    let eval_cos = weights::row_cosines(&f.net.blocks[1].weight(), &eval[1].weight, 32);
    let eval_worst = eval_cos.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(
        eval_worst > 100.0 * worst.max(1e-6),
        "eval-mode max |cos| {eval_worst} should be far from 0"
    );
}

/// The probe's train-mode and stop-gradient forwards equal dfdx's training forward (same batch
/// statistics) and leave the running statistics alone: block 1 of the three-block network and
/// block 4 of the four-block one.
#[test]
fn batch_stat_forwards_without_running_update_equal_dfdx_train_mode() {
    batch_stat_forwards_equal_dfdx::<16>(THREE_BLOCKS, 0);
    batch_stat_forwards_equal_dfdx::<128>(FOUR_BLOCKS, 3);
}

fn batch_stat_forwards_equal_dfdx<const C: usize>(widths: &str, block: usize) {
    use super::batchnorm::{normalize_with_batch_stats, normalize_with_detached_batch_stats};
    let mut f = Fixture::with_widths(4, widths);
    f.warm_up();
    let bn = &f.net.blocks[block].bn;
    assert_eq!(bn.channels(), C);
    let x: Tensor<(usize, usize, usize, usize), f32, Cpu> = f.dev.sample_normal_like(&(C, 8, 5, 5));
    let before = (bn.running_mean.as_vec(), bn.running_var.as_vec());
    let taped = normalize_with_batch_stats(x.leaky_trace(), bn);
    let detached = normalize_with_detached_batch_stats(x.leaky_trace(), bn);
    assert_eq!(bn.running_mean.as_vec(), before.0);
    assert_eq!(bn.running_var.as_vec(), before.1);
    let dfdx = dfdx_bn::<C>(bn)
        .forward_mut(x.leaky_trace().reshape_like(&(Const::<C>, 40, 5)))
        .reshape_like(&(C, 8, 5, 5));
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(diff(&taped.as_vec(), &dfdx.as_vec()) < 1e-5, "{widths}");
    assert!(diff(&detached.as_vec(), &dfdx.as_vec()) < 1e-5, "{widths}");
}

/// PreciseBN (BN-METRICS §3): block 1 sees the images themselves, so its population is the whole
/// training set. Equal batches covering every image pool to its variance exactly (law of total
/// variance); 1024 shuffled images estimate it to sampling error.
#[test]
fn precise_bn_pools_batch_moments_into_the_training_set_variance() {
    use super::population::{gathered, moments_of_batches, pool, shuffled_batches};
    let mut f = Fixture::new(5);
    let train = &f.data.train;
    let len = train.len();
    let mut pass = PassConfig {
        conv_bias: false,
        cache: &mut f.cache,
    };
    let everything = vec![(0..len).collect::<Vec<_>>()];
    let exact = &moments_of_batches(&f.net, train, gathered(train, &everything), &mut pass)[0][0];
    // 1437 = 3 x 479: equal batches covering the training set once.
    assert_eq!(len % 479, 0, "the embedded split has {len} training images");
    let whole = shuffled_batches(len, len, 479, 7);
    let whole = pool(
        &moments_of_batches(&f.net, train, gathered(train, &whole), &mut pass),
        len,
    );
    let sample = shuffled_batches(len, 1024, 64, 8);
    assert_eq!(sample.len(), 16);
    let sample = pool(
        &moments_of_batches(&f.net, train, gathered(train, &sample), &mut pass),
        1024,
    );
    for (c, m) in exact.channels.iter().enumerate() {
        let (w, s) = (&whole.layers[0], &sample.layers[0]);
        assert!((w.var[c] - m.var).abs() < 1e-6 * m.var, "c {c}");
        assert!((w.mean[c] - m.mean).abs() < 1e-6 * (m.var.sqrt() + m.mean.abs()));
        assert!(
            (s.var[c] / m.var - 1.0).abs() < 0.05,
            "c {c}: {} vs {}",
            s.var[c],
            m.var
        );
        assert!((s.mean[c] - m.mean).abs() < 0.05 * m.var.sqrt(), "c {c}");
    }
    assert_eq!(whole.layers[0].values, len * 64, "8x8 outputs per image");
}

/// The ε residual on the real network: BN normalises by √(σ²_B + ε), so a filter is scale
/// invariant only up to ε and its gradient keeps the radial part w_c·g_c = γ_c(∂L/∂γ_c)ε/(σ²_B+ε)
/// (metrics::weights::epsilon_radial_gradient). Shrinking block2's filters 100-fold (what weight
/// decay does slowly in a long run) brings σ²_B near ε, and max |cos(w, g)| up with it.
#[test]
fn train_mode_weight_gradient_keeps_the_epsilon_radial_part() {
    for shrink in [1.0f32, 0.01] {
        let mut f = Fixture::new(6);
        f.warm_up();
        f.net.blocks[1].weight = f.net.blocks[1].weight.clone() * shrink;
        let (seen, grads) = f.step(192, TRAIN, false);
        let block = &f.net.blocks[1];
        let channels = block.channels();
        let (w, gamma) = (block.weight(), block.gamma());
        let batch = moments::channel_moments(bn_input(&seen[1]), channels);
        let fan_in = w.len() / channels;
        let mut worst_cos = 0.0f64;
        for c in 0..channels {
            let rows = c * fan_in..(c + 1) * fan_in;
            let (w_c, g_c) = (&w[rows.clone()], &grads[1].weight[rows]);
            let radial = weights::dot(w_c, g_c);
            let predicted = weights::epsilon_radial_gradient(
                f64::from(gamma[c]),
                f64::from(grads[1].gamma[c]),
                batch[c].var,
                block.epsilon(),
            );
            // f32 gradients: w·g carries rounding of a few 1e-7 ||w|| ||g|| (2.4e-7 measured),
            // while the residual itself is 1e-7-1e-5 of it unshrunk and 1e-3-0.06 shrunk.
            let scale = weights::norm(w_c) * weights::norm(g_c);
            assert!(
                (radial - predicted).abs() <= 1e-3 * predicted.abs() + 1e-6 * scale,
                "shrink {shrink}, channel {c}: w·g {radial:e} vs {predicted:e} (||w|| ||g|| {scale:e})"
            );
            worst_cos = worst_cos.max((radial / scale).abs());
        }
        if shrink < 1.0 {
            assert!(worst_cos > 1e-2, "shrunk filters: max |cos| {worst_cos:e}");
        }
    }
}

/// Every trainable tensor's gradient in `grads`, in [`Net::visit_params`] order.
fn all_gradients(net: &mut Net, grads: &Gradients<f32, Cpu>) -> Vec<Vec<f32>> {
    struct Read<'a>(&'a Gradients<f32, Cpu>, Vec<Vec<f32>>);
    impl super::model::ParamVisitor for Read<'_> {
        fn visit<S: Shape>(&mut self, p: &mut Tensor<S, f32, Cpu>) -> Result<(), CpuError> {
            self.1.push(to_host(&self.0.get(p)));
            Ok(())
        }
    }
    let mut read = Read(grads, Vec::new());
    net.visit_params(&mut read).expect("read gradients");
    read.1
}

/// The training forward as the engine runs it (custom conv op, fused BN + ReLU) against the same
/// network written with dfdx ops only (gather + matmul convolution, broadcast BN arithmetic,
/// dfdx's ReLU), on the four-block network: every block in train mode (without the pre-BN bias),
/// then every block in eval mode (with it). Logits and every parameter's gradient agree to f32
/// rounding.
#[test]
fn training_forward_matches_dfdx_ops_on_a_four_block_net() {
    use super::batchnorm::{normalize_with_batch_stats, normalize_with_running_stats};
    use super::conv::gather::conv2d_gather;
    use super::forward::geometry;

    for (mode, conv_bias) in [(TRAIN, false), (EVAL, true)] {
        let mut f = Fixture::with_widths(8, FOUR_BLOCKS);
        f.warm_up();
        let mut reference = f.net.clone();
        let indices: Vec<usize> = (64..128).collect();
        let (pixels, labels) = gather_channel_major(&f.data.train, &indices);
        let x = f.dev.tensor_from_vec(pixels, (1, indices.len(), 8, 8));
        let targets = f
            .dev
            .tensor_from_vec(one_hot(&labels), (labels.len(), Const::<CLASSES>));

        let modes = vec![mode; f.net.blocks.len()];
        let mut pass = PassConfig {
            conv_bias,
            cache: &mut f.cache,
        };
        let grads = f.net.alloc_grads().expect("gradients");
        let logits = f
            .net
            .forward_train(x.clone().traced(grads), &modes, &mut pass, None);
        let fast_logits = to_host(&logits);
        let grads =
            dfdx::losses::cross_entropy_with_logits_loss(logits, targets.clone()).backward();
        let fast = all_gradients(&mut f.net, &grads);

        let mut h = x.traced(reference.alloc_grads().expect("gradients"));
        for block in &reference.blocks {
            let g = geometry(*h.shape(), &block.spec);
            let mut conv = conv2d_gather(h, &block.weight, g);
            if conv_bias {
                let shape = *conv.shape();
                let bias = block.bias.retaped::<OwnedTape<f32, Cpu>>();
                conv = conv + bias.broadcast_like::<_, Axes3<1, 2, 3>>(&shape);
            }
            h = match mode {
                BnMode::Train => normalize_with_batch_stats(conv, &block.bn),
                BnMode::Eval => normalize_with_running_stats(conv, &block.bn),
            }
            .relu();
        }
        let logits = reference.classify(h);
        let reference_logits = to_host(&logits);
        let grads = dfdx::losses::cross_entropy_with_logits_loss(logits, targets).backward();
        let slow = all_gradients(&mut reference, &grads);

        let relative = |a: &[f32], b: &[f32]| {
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
            a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale
        };
        let err = relative(&fast_logits, &reference_logits);
        assert!(err < 1e-5, "{mode:?}: logits differ by {err:e}");
        // Per block: weight, bias, γ, β; then the classifier's weight and bias.
        assert_eq!(fast.len(), 4 * 4 + 2);
        for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
            let what = format!("{mode:?}: block {} tensor {}", i / 4 + 1, i % 4);
            if i % 4 == 1 && !conv_bias && i < 16 {
                // Outside the graph: both 0.
                assert!(a.iter().chain(b).all(|&v| v == 0.0), "{what}");
                continue;
            }
            let err = relative(a, b);
            assert!(err < 1e-4, "{what}: gradients differ by {err:e}");
        }
    }
}

/// What the fused BN op measures (the metrics' only source since it stopped reading activations)
/// against the pass over host copies of the activations that computed them before, on the real
/// digits, in train and eval mode, on the three- and four-block networks: the input moments are
/// the same computation, the active fraction the same count, the ReLU moments the same sums to
/// f32 rounding, and the output moments, derived from the input's (y is affine in x), agree to
/// the f32 rounding of the y values they used to be measured on.
#[test]
fn the_fused_measurement_equals_the_old_pass_over_the_activations() {
    for widths in [THREE_BLOCKS, FOUR_BLOCKS] {
        let mut f = Fixture::with_widths(9, widths);
        f.warm_up();
        for mode in [TRAIN, EVAL] {
            let (seen, _) = f.step(256, mode, true);
            assert_eq!(seen.len(), f.net.blocks.len());
            for (layer, obs) in seen.iter().enumerate() {
                let what = format!("{widths} {mode:?} layer {layer}");
                let channels = obs.running_mean_pre.len();
                let m = &obs.measured;
                assert_eq!(m.input, moments::channel_moments(bn_input(obs), channels));
                let out = moments::channel_moments(bn_output(obs), channels);
                let relu = moments::channel_relu_moments(bn_output(obs), channels);
                assert_eq!((m.output.len(), m.relu.len()), (channels, channels));
                for c in 0..channels {
                    let (got, old) = (m.output[c], out[c]);
                    let std = old.var.sqrt();
                    let scale = old.mean.abs() + std;
                    let eps = f64::from(f32::EPSILON);
                    assert!(
                        (got.mean - old.mean).abs() <= 4.0 * eps * scale,
                        "{what} c {c}: output mean {} vs {}",
                        got.mean,
                        old.mean
                    );
                    assert!(
                        (got.var - old.var).abs() <= 8.0 * eps * std * scale,
                        "{what} c {c}: output var {} vs {}",
                        got.var,
                        old.var
                    );
                    // The ReLU sums are f32 over eight values a lane, around the shift k.
                    let (got, old) = (m.relu[c], relu[c]);
                    let k = f64::from(m.output[c].mean.max(0.0) as f32);
                    let spread = old.var + (old.mean - k).powi(2);
                    assert_eq!(got.active_fraction, old.active_fraction, "{what} c {c}");
                    assert!(
                        (got.mean - old.mean).abs() <= 8.0 * eps * spread.sqrt(),
                        "{what} c {c}: ReLU mean {} vs {}",
                        got.mean,
                        old.mean
                    );
                    assert!(
                        (got.var - old.var).abs() <= 16.0 * eps * spread,
                        "{what} c {c}: ReLU var {} vs {}",
                        got.var,
                        old.var
                    );
                }
            }
        }
    }
}
