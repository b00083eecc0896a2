//! Forward passes of [`Net`]: the training step (each BN layer in train or eval mode) and
//! held-out inference (batch or running statistics), with optional observation of activations.
use std::sync::Arc;

use dfdx::prelude::*;

use crate::metrics::moments::Moments;

use super::block_chain::train_blocks;
use super::bn_infer::batch_norm_infer;
use super::bn_kernel::BnMeasurement;
use super::conv::{conv2d, ConvGeometry, Im2colCache};
use super::model::{BlockSpec, ConvBn, Net, CLASSES};
use crate::protocol::BnMode;

/// Channel-major activations entering or leaving a block: (C, N, H, W).
pub type Activations<T> = Tensor<(usize, usize, usize, usize), f32, Cpu, T>;
pub type Logits<T> = Tensor<(usize, Const<CLASSES>), f32, Cpu, T>;
type Taped = OwnedTape<f32, Cpu>;

/// What one block saw during a training step, for the metrics: O(channels), and the filters
/// its conv ran with (shared with the conv, not copied).
#[derive(Clone, Debug)]
pub struct BlockObservation {
    /// Values per channel: N·H·W.
    pub n: usize,
    /// The fused BN op's measurement of its input, output and ReLU output.
    pub measured: BnMeasurement,
    pub running_mean_pre: Vec<f32>,
    pub running_var_pre: Vec<f32>,
    pub running_mean_post: Vec<f32>,
    pub running_var_post: Vec<f32>,
    /// With [`Observer::keep_activations`].
    pub activations: Option<BnActivations>,
    /// The conv's filters in this step's forward, (C_out, fan_in) row-major: the weights before
    /// the step's update, which a measured update reads instead of copying them again.
    pub filters: Arc<Vec<f32>>,
}

/// Host copies of one BN layer's activations, channel-major: channel c is `[c*n, (c+1)*n)`.
#[derive(Clone, Debug)]
pub struct BnActivations {
    /// The conv output.
    pub input: Vec<f32>,
    /// y = γ·x̂ + β, before the ReLU.
    pub output: Vec<f32>,
}

/// Collects a training forward's [`BlockObservation`]s, one per block.
#[derive(Default)]
pub struct Observer {
    pub blocks: Vec<BlockObservation>,
    /// Also copy every BN input and output to the host: a full pass over the activations,
    /// for tests that recompute the metrics from them. Training does not.
    pub keep_activations: bool,
}

/// The per-channel mean and BIASED variance of one BN input over one batch.
#[derive(Clone, Debug)]
pub struct BnInputMoments {
    /// Values per channel: N·H·W.
    pub n: usize,
    pub channels: Vec<Moments>,
}

/// Which statistics BN normalises with in held-out inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InferenceStats {
    Batch,
    Running,
}

/// Settings shared by every block of one pass.
pub struct PassConfig<'a> {
    pub conv_bias: bool,
    pub cache: &'a mut Im2colCache,
}

/// The convolution of a block with `spec` on input of `shape` (C, N, H, W).
pub fn geometry(shape: (usize, usize, usize, usize), spec: &BlockSpec) -> ConvGeometry {
    let (channels, batch, height, width) = shape;
    spec.geometry(channels, batch, height, width)
}

impl ConvBn {
    pub(super) fn conv<T>(&self, x: Activations<T>, pass: &mut PassConfig) -> Activations<T>
    where
        T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
    {
        let geometry = geometry(*x.shape(), &self.spec);
        let bias = pass.conv_bias.then_some(&self.bias);
        conv2d(x, &self.weight, bias, geometry, pass.cache)
    }

    fn infer(
        &self,
        x: Activations<NoneTape>,
        stats: InferenceStats,
        pass: &mut PassConfig,
        moments: Option<&mut Vec<BnInputMoments>>,
    ) -> Activations<NoneTape> {
        let h = self.conv(x, pass);
        let (_, n, height, width) = *h.shape();
        // The BN measures its input when it normalises with batch statistics, the only passes
        // that ask for the moments (PreciseBN's, through `batch_moments`).
        let (out, batch) = batch_norm_infer(h, &self.bn, stats, true);
        if let (Some(moments), Some(channels)) = (moments, batch) {
            moments.push(BnInputMoments {
                n: n * height * width,
                channels,
            });
        }
        out
    }
}

impl Net {
    /// One training forward: each block in its mode (one mode per block); train-mode blocks update
    /// their running stats. With an `observer`, one [`BlockObservation`] per block is appended.
    pub fn forward_train(
        &mut self,
        x: Activations<Taped>,
        modes: &[BnMode],
        pass: &mut PassConfig,
        observer: Option<&mut Observer>,
    ) -> Logits<Taped> {
        let x = train_blocks(x, &mut self.blocks, modes, pass, observer);
        self.classify(x)
    }

    /// Held-out inference with every BN normalising by `stats`; nothing in the model changes.
    pub fn forward_infer(
        &self,
        x: Activations<NoneTape>,
        stats: InferenceStats,
        pass: &mut PassConfig,
    ) -> Logits<NoneTape> {
        self.forward_infer_observed(x, stats, pass, None)
    }

    /// Per block, the per-channel mean and BIASED variance of the BN input over this batch, with
    /// every BN normalising by batch statistics (as in training; PreciseBN's passes).
    pub fn batch_moments(
        &self,
        x: Activations<NoneTape>,
        pass: &mut PassConfig,
    ) -> Vec<BnInputMoments> {
        let mut moments = Vec::with_capacity(self.blocks.len());
        self.forward_infer_observed(x, InferenceStats::Batch, pass, Some(&mut moments));
        moments
    }

    fn forward_infer_observed(
        &self,
        x: Activations<NoneTape>,
        stats: InferenceStats,
        pass: &mut PassConfig,
        mut moments: Option<&mut Vec<BnInputMoments>>,
    ) -> Logits<NoneTape> {
        let mut x = x;
        for block in &self.blocks {
            x = block.infer(x, stats, pass, moments.as_deref_mut());
        }
        self.classify(x)
    }

    /// Global average pool over H and W, then the linear classifier: (N, CLASSES) logits, the
    /// arithmetic of dfdx's `Linear` (x·Wᵀ, then the bias broadcast over the batch).
    pub(super) fn classify<T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>>(
        &self,
        x: Activations<T>,
    ) -> Logits<T> {
        let (c, n, h, w) = *x.shape();
        let pooled: Tensor<(usize, usize), f32, Cpu, T> =
            x.reshape_like(&(c, n, h * w)).mean::<_, Axis<2>>();
        let features = pooled.permute::<_, Axes2<1, 0>>();
        let logits = features.matmul(self.head.weight.retaped::<T>().permute::<_, Axes2<1, 0>>());
        let shape = *logits.shape();
        logits + self.head.bias.retaped::<T>().broadcast_like(&shape)
    }
}
