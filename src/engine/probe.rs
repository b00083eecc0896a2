//! The phantom-gradient probe (BN-METRICS §6-7): on one training batch, the gradient of a bias
//! added before each BN while every layer normalises (a) by batch statistics, (b) by batch
//! statistics held constant in backward, (c) by running statistics. Theory: (a) 0, because BN
//! subtracts the batch mean; (b) (γ/σ̃_B)∇β; (c) (γ/σ_R)∇β. Nothing in the model changes: the
//! running statistics are not updated and no optimizer step is taken.
use dfdx::losses::cross_entropy_with_logits_loss;
use dfdx::prelude::*;

use super::batchnorm::{
    normalize_with_batch_stats, normalize_with_detached_batch_stats, normalize_with_running_stats,
};
use super::conv::Im2colCache;
use super::forward::{Activations, PassConfig};
use super::host::{from_host, to_host};
use super::model::{one_hot, ConvBn, Net, CLASSES};
use crate::metrics::bias::cancellation_ratio;
use crate::metrics::drift::rms;
use crate::metrics::moments::channel_moments;
use crate::protocol::ProbeLayer;

type Taped = OwnedTape<f32, Cpu>;

/// How every BN layer normalises in one probe pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMode {
    Train,
    StopGradient,
    Eval,
}

/// What one block's pre-BN bias saw in one pass, read after the backward pass.
#[derive(Clone, Debug)]
pub struct BiasReading {
    /// ∂L/∂b_c = Σ_i ∂L/∂h_ic.
    pub bias: Vec<f32>,
    /// max_c |Σ_i ∂L/∂h_ic| / Σ_i |∂L/∂h_ic| (`metrics::bias::cancellation_ratio`).
    pub cancellation: f64,
    /// ∂L/∂β_c in the same pass.
    pub beta: Vec<f32>,
    pub gamma: Vec<f32>,
    /// The σ the layer divided by: σ̃_B = sqrt(σ²_B + ε) or σ_R = sqrt(v_R + ε).
    pub sigma: Vec<f64>,
}

impl BiasReading {
    /// (γ_c/σ_c)∇β_c: the theory's bias gradient for stop-gradient and eval mode.
    pub fn predicted(&self) -> Vec<f64> {
        (0..self.bias.len())
            .map(|c| f64::from(self.gamma[c]) / self.sigma[c] * f64::from(self.beta[c]))
            .collect()
    }
}

type Reader = Box<dyn FnOnce(&Gradients<f32, Cpu>) -> BiasReading>;

impl ConvBn {
    fn probe_forward(
        &self,
        x: Activations<Taped>,
        mode: ProbeMode,
        pass: &mut PassConfig,
        readers: &mut Vec<Reader>,
    ) -> Activations<Taped> {
        let h = self.conv(x, pass);
        let channels = h.shape().0;
        // Same id as `h`: its gradient is ∂L/∂h, kept because the probe's gradients are leaky.
        let h_handle = h.retaped::<NoneTape>();
        let eps = self.bn.epsilon;
        let sigma: Vec<f64> = match mode {
            ProbeMode::Train | ProbeMode::StopGradient => channel_moments(&to_host(&h), channels)
                .iter()
                .map(|m| (m.var + eps).sqrt())
                .collect(),
            ProbeMode::Eval => to_host(&self.bn.running_var)
                .iter()
                .map(|&v| (f64::from(v) + eps).sqrt())
                .collect(),
        };
        let y = match mode {
            ProbeMode::Train => normalize_with_batch_stats(h, &self.bn),
            ProbeMode::StopGradient => normalize_with_detached_batch_stats(h, &self.bn),
            ProbeMode::Eval => normalize_with_running_stats(h, &self.bn),
        };
        let (bias, beta, gamma) = (
            self.bias.clone(),
            self.bn.bias.clone(),
            to_host(&self.bn.scale),
        );
        readers.push(Box::new(move |grads| {
            let dh = to_host(&grads.get(&h_handle));
            BiasReading {
                bias: to_host(&grads.get(&bias)),
                cancellation: dh
                    .chunks_exact(dh.len() / channels)
                    .map(cancellation_ratio)
                    .fold(0.0, f64::max),
                beta: to_host(&grads.get(&beta)),
                gamma,
                sigma,
            }
        }));
        y.relu()
    }
}

impl Net {
    /// One probe pass on channel-major `pixels` with `labels`: each block's bias reading.
    pub fn probe_pass(
        &self,
        pixels: &[f32],
        labels: &[u8],
        (height, width): (usize, usize),
        mode: ProbeMode,
        cache: &mut Im2colCache,
    ) -> Vec<BiasReading> {
        let dev = self.device();
        let n = labels.len();
        let x = from_host(&dev, pixels, (self.in_channels(), n, height, width));
        let targets = from_host(&dev, &one_hot(labels), (n, Const::<CLASSES>));
        // The bias always takes part: a zero bias (no --conv-bias) changes no output but has a
        // gradient.
        let mut pass = PassConfig {
            conv_bias: true,
            cache,
        };
        let mut readers: Vec<Reader> = Vec::with_capacity(self.blocks.len());
        let mut x = x.traced(Gradients::leaky());
        for block in &self.blocks {
            x = block.probe_forward(x, mode, &mut pass, &mut readers);
        }
        let grads = cross_entropy_with_logits_loss(self.classify(x), targets).backward();
        readers.into_iter().map(|read| read(&grads)).collect()
    }

    /// The three bars of every layer on one batch.
    pub fn probe(
        &self,
        pixels: &[f32],
        labels: &[u8],
        size: (usize, usize),
        cache: &mut Im2colCache,
    ) -> Vec<ProbeLayer> {
        let mut pass = |mode| self.probe_pass(pixels, labels, size, mode, cache);
        let (train, stop, eval) = (
            pass(ProbeMode::Train),
            pass(ProbeMode::StopGradient),
            pass(ProbeMode::Eval),
        );
        train
            .iter()
            .zip(stop.iter().zip(&eval))
            .map(|(train, (stop, eval))| ProbeLayer {
                train: rms(widen(&train.bias)),
                train_cancellation: train.cancellation,
                stop_gradient: rms(widen(&stop.bias)),
                stop_gradient_predicted: rms(stop.predicted()),
                eval: rms(widen(&eval.bias)),
                eval_predicted: rms(eval.predicted()),
            })
            .collect()
    }
}

fn widen(xs: &[f32]) -> Vec<f64> {
    xs.iter().map(|&x| f64::from(x)).collect()
}
