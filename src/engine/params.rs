//! Host-side access to one block's parameters, uniform across the blocks' different const shapes,
//! for the metrics and the live controls.
use dfdx::prelude::*;

use super::host::to_host;

use super::model::{ConvBn, Net};

/// One conv -> BN block seen from the host. Weights come as (channels, fan_in) row-major.
pub trait BlockParams {
    fn channels(&self) -> usize;
    fn weight(&self) -> Vec<f32>;
    fn gamma(&self) -> Vec<f32>;
    fn beta(&self) -> Vec<f32>;
    fn running_var(&self) -> Vec<f32>;
    /// Overwrites the running statistics (PreciseBN); `var` as stored: unbiased.
    fn set_running_stats(&mut self, mean: &[f32], var: &[f32]);
    fn epsilon(&self) -> f64;
    fn momentum(&self) -> f64;
    fn set_momentum(&mut self, momentum: f64);
    /// Back to the initial running statistics: mean 0, variance 1.
    fn reset_running_stats(&mut self);
    fn grads(&self, grads: &Gradients<f32, Cpu>) -> BlockGrads;
}

/// Gradients of one block's parameters, taken between `backward` and the optimizer update.
#[derive(Clone, Debug, Default)]
pub struct BlockGrads {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

impl<const I: usize, const O: usize> BlockParams for ConvBn<I, O, f32, Cpu> {
    fn channels(&self) -> usize {
        O
    }
    fn weight(&self) -> Vec<f32> {
        to_host(&self.weight)
    }
    fn gamma(&self) -> Vec<f32> {
        to_host(&self.bn.scale)
    }
    fn beta(&self) -> Vec<f32> {
        to_host(&self.bn.bias)
    }
    fn running_var(&self) -> Vec<f32> {
        to_host(&self.bn.running_var)
    }
    fn set_running_stats(&mut self, mean: &[f32], var: &[f32]) {
        self.bn.running_mean.copy_from(mean);
        self.bn.running_var.copy_from(var);
    }
    fn epsilon(&self) -> f64 {
        self.bn.epsilon
    }
    fn momentum(&self) -> f64 {
        self.bn.momentum
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.bn.momentum = momentum;
    }
    fn reset_running_stats(&mut self) {
        self.bn.running_mean.fill_with_zeros();
        self.bn.running_var.fill_with_ones();
    }
    fn grads(&self, grads: &Gradients<f32, Cpu>) -> BlockGrads {
        // `get` returns zeros for a parameter that took no part (the bias without --conv-bias).
        BlockGrads {
            weight: to_host(&grads.get(&self.weight)),
            bias: to_host(&grads.get(&self.bias)),
            gamma: to_host(&grads.get(&self.bn.scale)),
            beta: to_host(&grads.get(&self.bn.bias)),
        }
    }
}

impl<const IN: usize> Net<IN, f32, Cpu> {
    pub fn blocks(&self) -> [&dyn BlockParams; 3] {
        [&self.block1, &self.block2, &self.block3]
    }

    pub fn blocks_mut(&mut self) -> [&mut dyn BlockParams; 3] {
        [&mut self.block1, &mut self.block2, &mut self.block3]
    }
}
