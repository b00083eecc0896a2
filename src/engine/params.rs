//! Host-side access to one block's parameters, for the metrics and the live controls.
use dfdx::prelude::*;

use super::host::to_host;
use super::model::ConvBn;

/// Gradients of one block's parameters, taken between `backward` and the optimizer update.
#[derive(Clone, Debug, Default)]
pub struct BlockGrads {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

impl ConvBn {
    pub fn channels(&self) -> usize {
        self.bn.channels()
    }
    /// The filters as (channels, fan_in) row-major.
    pub fn weight(&self) -> Vec<f32> {
        to_host(&self.weight)
    }
    pub fn gamma(&self) -> Vec<f32> {
        to_host(&self.bn.scale)
    }
    pub fn beta(&self) -> Vec<f32> {
        to_host(&self.bn.bias)
    }
    pub fn running_var(&self) -> Vec<f32> {
        to_host(&self.bn.running_var)
    }
    /// Overwrites the running statistics (PreciseBN); `var` as stored: unbiased.
    pub fn set_running_stats(&mut self, mean: &[f32], var: &[f32]) {
        self.bn.running_mean.copy_from(mean);
        self.bn.running_var.copy_from(var);
    }
    pub fn epsilon(&self) -> f64 {
        self.bn.epsilon
    }
    pub fn momentum(&self) -> f64 {
        self.bn.momentum
    }
    pub fn set_momentum(&mut self, momentum: f64) {
        self.bn.momentum = momentum;
    }
    /// Back to the initial running statistics: mean 0, variance 1.
    pub fn reset_running_stats(&mut self) {
        self.bn.running_mean.fill_with_zeros();
        self.bn.running_var.fill_with_ones();
    }
    /// This block's gradients in `grads`, which must hold every parameter's (as
    /// [`Net::zero_grads`](super::model::Net::zero_grads) leaves them): a parameter that took no
    /// part (the bias without --conv-bias) reads 0.
    pub fn grads(&self, grads: &Gradients<f32, Cpu>) -> BlockGrads {
        BlockGrads {
            weight: to_host(&grads.get(&self.weight)),
            bias: to_host(&grads.get(&self.bias)),
            gamma: to_host(&grads.get(&self.bn.scale)),
            beta: to_host(&grads.get(&self.bn.bias)),
        }
    }
}
