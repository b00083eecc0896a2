//! Folding each conv + BN into one conv in eval form (BN-METRICS §6): the folded network must give
//! the eval-mode network's outputs (to float rounding) and runs faster, since it skips the
//! normalisation. `check` verifies both on the held-out set.
use std::time::Instant;

use dfdx::prelude::*;

use super::conv::{conv2d, Im2colCache};
use super::evaluate::HeldOut;
use super::forward::{geometry, Activations, InferenceStats, Logits, PassConfig};
use super::host::{from_host, to_host};
use super::model::{BlockSpec, ConvBn, Net, BLOCKS, KERNEL};
use crate::metrics::bias::fold_conv_bn;

/// Passes over the held-out set per timing; the fastest is kept (the machine is shared).
const TIMING_ROUNDS: usize = 5;

/// One block in eval form: conv weights scaled by γ/σ_R, bias β + (b - μ_R)γ/σ_R.
pub struct FoldedBlock<const I: usize, const O: usize> {
    weight: Tensor<Rank4<O, I, KERNEL, KERNEL>, f32, Cpu>,
    bias: Tensor<Rank1<O>, f32, Cpu>,
}

impl<const I: usize, const O: usize> ConvBn<I, O, f32, Cpu> {
    fn folded(&self, conv_bias: bool) -> FoldedBlock<I, O> {
        let dev = self.weight.device().clone();
        let bias = conv_bias.then(|| to_host(&self.bias));
        let f = fold_conv_bn(
            &to_host(&self.weight),
            bias.as_deref(),
            O,
            &to_host(&self.bn.scale),
            &to_host(&self.bn.bias),
            &to_host(&self.bn.running_mean),
            &to_host(&self.bn.running_var),
            self.bn.epsilon,
        );
        FoldedBlock {
            weight: from_host(&dev, &f.weight, Rank4::<O, I, KERNEL, KERNEL>::default()),
            bias: from_host(&dev, &f.bias, Rank1::<O>::default()),
        }
    }
}

fn infer_folded<const I: usize, const O: usize>(
    x: Activations<I, NoneTape>,
    block: &FoldedBlock<I, O>,
    spec: &BlockSpec,
    cache: &mut Im2colCache,
) -> Activations<O, NoneTape> {
    let g = geometry::<I>(*x.shape(), spec);
    conv2d(x, &block.weight, Some(&block.bias), g, cache).relu()
}

pub struct FoldedNet<const IN: usize> {
    block1: FoldedBlock<IN, 16>,
    block2: FoldedBlock<16, 32>,
    block3: FoldedBlock<32, 64>,
}

impl<const IN: usize> Net<IN, f32, Cpu> {
    pub fn folded(&self, conv_bias: bool) -> FoldedNet<IN> {
        FoldedNet {
            block1: self.block1.folded(conv_bias),
            block2: self.block2.folded(conv_bias),
            block3: self.block3.folded(conv_bias),
        }
    }

    pub fn forward_folded(
        &self,
        x: Activations<IN, NoneTape>,
        folded: &FoldedNet<IN>,
        cache: &mut Im2colCache,
    ) -> Logits<NoneTape> {
        let x = infer_folded(x, &folded.block1, &BLOCKS[0], cache);
        let x = infer_folded(x, &folded.block2, &BLOCKS[1], cache);
        let x = infer_folded(x, &folded.block3, &BLOCKS[2], cache);
        self.classify(x)
    }
}

/// What folding the network gave on the held-out set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FoldCheck {
    pub samples: usize,
    /// Largest |logit(folded) - logit(eval mode)| over every image and class.
    pub max_abs_diff: f32,
    /// Fastest pass over the held-out set, seconds: eval-mode network, folded network.
    pub unfolded_s: f64,
    pub folded_s: f64,
}

pub fn check<const IN: usize>(
    net: &Net<IN, f32, Cpu>,
    heldout: &HeldOut,
    conv_bias: bool,
    cache: &mut Im2colCache,
) -> FoldCheck {
    let folded = net.folded(conv_bias);
    let dev = net.head.weight.device().clone();
    let inputs: Vec<_> = heldout
        .inputs()
        .map(|(pixels, n)| {
            from_host(
                &dev,
                pixels,
                (Const::<IN>, n, heldout.height(), heldout.width()),
            )
        })
        .collect();
    let mut max_abs_diff = 0.0f32;
    for x in &inputs {
        let mut pass = PassConfig { conv_bias, cache };
        let eval = to_host(&net.forward_infer(x.clone(), InferenceStats::Running, &mut pass));
        let fold = to_host(&net.forward_folded(x.clone(), &folded, cache));
        for (a, b) in eval.iter().zip(&fold) {
            max_abs_diff = max_abs_diff.max((a - b).abs());
        }
    }
    let mut time = |run: &mut dyn FnMut(&mut Im2colCache)| -> f64 {
        (0..TIMING_ROUNDS)
            .map(|_| {
                let start = Instant::now();
                run(cache);
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let unfolded_s = time(&mut |cache| {
        for x in &inputs {
            let mut pass = PassConfig { conv_bias, cache };
            let _ = net.forward_infer(x.clone(), InferenceStats::Running, &mut pass);
        }
    });
    let folded_s = time(&mut |cache| {
        for x in &inputs {
            let _ = net.forward_folded(x.clone(), &folded, cache);
        }
    });
    FoldCheck {
        samples: heldout.samples(),
        max_abs_diff,
        unfolded_s,
        folded_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::data::embedded_digits;

    /// With non-trivial BN parameters and running statistics, the folded network reproduces the
    /// eval-mode network's logits to float rounding (the issue asks below 1e-4; about 1e-6).
    #[test]
    fn folded_network_matches_eval_mode() {
        let dev = Cpu::seed_from_u64(5);
        let mut net: Net<1, f32, Cpu> = BuildModule::build(&dev);
        fn perturb<const O: usize>(
            bn: &mut dfdx::nn::modules::BatchNorm2D<O, f32, Cpu>,
            dev: &Cpu,
        ) {
            bn.scale = dev.sample_uniform::<Rank1<O>>() + 0.5;
            bn.bias = dev.sample_normal::<Rank1<O>>() * 0.3;
            bn.running_mean = dev.sample_normal::<Rank1<O>>() * 0.5;
            bn.running_var = dev.sample_uniform::<Rank1<O>>() * 2.0 + 0.1;
        }
        perturb(&mut net.block1.bn, &dev);
        perturb(&mut net.block2.bn, &dev);
        perturb(&mut net.block3.bn, &dev);
        let data = embedded_digits().expect("digits");
        let heldout = HeldOut::new(&data.heldout, 360, 64);
        let mut cache = Im2colCache::default();
        let result = check(&net, &heldout, false, &mut cache);
        assert_eq!(result.samples, 360);
        assert!(
            result.max_abs_diff < 1e-4,
            "max |diff| {}",
            result.max_abs_diff
        );
        assert!(result.unfolded_s > 0.0 && result.folded_s > 0.0);
        // The check can fail: folding with the wrong running variance is visibly off.
        net.block2.bn.running_var = net.block2.bn.running_var.clone() * 4.0;
        let folded_before = net.folded(false);
        net.block2.bn.running_var = net.block2.bn.running_var.clone() * 0.25;
        let (pixels, n) = heldout.inputs().next().expect("a batch");
        let x = from_host(&dev, pixels, (Const::<1>, n, 8, 8));
        let mut pass = PassConfig {
            conv_bias: false,
            cache: &mut cache,
        };
        let eval = to_host(&net.forward_infer(x.clone(), InferenceStats::Running, &mut pass));
        let wrong = to_host(&net.forward_folded(x, &folded_before, &mut cache));
        let off = eval
            .iter()
            .zip(&wrong)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(off > 1e-2, "a wrong fold differs by only {off}");
    }
}
