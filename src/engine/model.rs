//! The network's parameters: conv -> BN -> ReLU blocks as [`Widths`] says, global average pool,
//! linear classifier.
//!
//! Channel counts are runtime values, so the parameters are dfdx tensors with `usize` dimensions
//! and BN is this crate's [`BatchNorm`] (dfdx's `BatchNorm2D` and `Linear` fix their sizes at
//! compile time). dfdx still holds every parameter, records the tape and runs the optimizer
//! kernels ([`super::optimizer`]); [`Net::visit_params`] is the walk over the trainable tensors
//! that dfdx's `TensorCollection` would give (it cannot describe runtime shapes).
use dfdx::prelude::*;
use rand_distr::Uniform;

pub use super::architecture::{block_geometries, BlockSpec, Widths, KERNEL, PADDING};

pub const CLASSES: usize = 10;

/// A block's filters: (C_out, C_in, K, K).
pub type ConvWeight = Tensor<(usize, usize, Const<KERNEL>, Const<KERNEL>), f32, Cpu>;
/// One value per channel.
pub type PerChannel = Tensor<(usize,), f32, Cpu>;

/// Cross-entropy targets: one row of [`CLASSES`] per label, 1 at the label. Labels are below
/// `CLASSES` (the data loaders check it).
pub fn one_hot(labels: &[u8]) -> Vec<f32> {
    let mut targets = vec![0.0; labels.len() * CLASSES];
    for (row, &label) in targets.chunks_exact_mut(CLASSES).zip(labels) {
        row[label as usize] = 1.0;
    }
    targets
}

/// BatchNorm's parameters and state, with dfdx's `BatchNorm2D` fields and defaults: γ (`scale`)
/// 1, β (`bias`) 0, running mean 0 and (unbiased) running variance 1, ε 1e-5, momentum 0.1.
/// The running statistics are not trainable.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub scale: PerChannel,
    pub bias: PerChannel,
    pub running_mean: PerChannel,
    pub running_var: PerChannel,
    pub epsilon: f64,
    pub momentum: f64,
}

impl BatchNorm {
    pub fn new(dev: &Cpu, channels: usize) -> BatchNorm {
        BatchNorm {
            scale: dev.ones_like(&(channels,)),
            bias: dev.zeros_like(&(channels,)),
            running_mean: dev.zeros_like(&(channels,)),
            running_var: dev.ones_like(&(channels,)),
            epsilon: 1e-5,
            momentum: 0.1,
        }
    }

    pub fn channels(&self) -> usize {
        self.scale.shape().0
    }
}

/// A 3x3 conv, an optional bias before the BN, and the BN.
#[derive(Clone, Debug)]
pub struct ConvBn {
    pub spec: BlockSpec,
    pub weight: ConvWeight,
    /// Only in the graph with `--conv-bias`; otherwise it stays 0 and its gradient is 0.
    pub bias: PerChannel,
    pub bn: BatchNorm,
}

impl ConvBn {
    /// PyTorch's default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    fn new(dev: &Cpu, spec: BlockSpec, in_channels: usize) -> ConvBn {
        let channels = spec.channels;
        let mut weight: ConvWeight =
            dev.zeros_like(&(channels, in_channels, Const::<KERNEL>, Const::<KERNEL>));
        weight.fill_with_distr(uniform(in_channels * KERNEL * KERNEL));
        ConvBn {
            spec,
            weight,
            bias: dev.zeros_like(&(channels,)),
            bn: BatchNorm::new(dev, channels),
        }
    }

    pub fn in_channels(&self) -> usize {
        self.weight.shape().1
    }
}

/// The classifier on the pooled features: logits = x·Wᵀ + b, W (CLASSES, features).
#[derive(Clone, Debug)]
pub struct Head {
    pub weight: Tensor<(Const<CLASSES>, usize), f32, Cpu>,
    pub bias: Tensor<Rank1<CLASSES>, f32, Cpu>,
}

/// The whole network.
#[derive(Clone, Debug)]
pub struct Net {
    pub blocks: Vec<ConvBn>,
    pub head: Head,
}

/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), computed in f32 as dfdx's initialisers do.
fn uniform(fan_in: usize) -> Uniform<f32> {
    let b = 1.0 / (fan_in as f32).sqrt();
    Uniform::new(-b, b)
}

/// Something done to every trainable parameter (see [`Net::visit_params`]).
pub trait ParamVisitor {
    fn visit<S: Shape>(&mut self, param: &mut Tensor<S, f32, Cpu>) -> Result<(), CpuError>;

    /// A block's filters, `rows` of them: by default, what is done to any parameter.
    fn visit_filters(&mut self, weight: &mut ConvWeight, rows: usize) -> Result<(), CpuError> {
        let _ = rows;
        self.visit(weight)
    }
}

impl Net {
    /// A freshly initialised network over images with `in_channels` channels. Parameters are drawn
    /// from `dev`'s generator in the order dfdx's `BuildModule` drew them for the same layers
    /// (each block's filters, then the classifier's weight and bias), so a seed gives the same
    /// network as before the widths became a runtime value.
    pub fn new(dev: &Cpu, in_channels: usize, widths: &Widths) -> Net {
        let mut blocks = Vec::with_capacity(widths.as_slice().len());
        let mut channels = in_channels;
        for spec in widths.blocks() {
            blocks.push(ConvBn::new(dev, spec, channels));
            channels = spec.channels;
        }
        // dfdx's Linear: weight and bias both U(-1/sqrt(in), 1/sqrt(in)).
        let mut weight = dev.zeros_like(&(Const::<CLASSES>, channels));
        weight.fill_with_distr(uniform(channels));
        let mut bias: Tensor<Rank1<CLASSES>, f32, Cpu> = dev.zeros();
        bias.fill_with_distr(uniform(channels));
        Net {
            blocks,
            head: Head { weight, bias },
        }
    }

    pub fn in_channels(&self) -> usize {
        self.blocks.first().map_or(0, ConvBn::in_channels)
    }

    pub fn device(&self) -> Cpu {
        self.head.weight.device().clone()
    }

    /// Every trainable tensor once, in a fixed order: per block the filters, the pre-BN bias, γ
    /// and β; then the classifier's weight and bias. The running statistics are not visited.
    pub fn visit_params(&mut self, visitor: &mut impl ParamVisitor) -> Result<(), CpuError> {
        for block in &mut self.blocks {
            let rows = block.channels();
            visitor.visit_filters(&mut block.weight, rows)?;
            visitor.visit(&mut block.bias)?;
            visitor.visit(&mut block.bn.scale)?;
            visitor.visit(&mut block.bn.bias)?;
        }
        visitor.visit(&mut self.head.weight)?;
        visitor.visit(&mut self.head.bias)
    }

    /// Gradient buffers for every parameter, kept across backward passes (others are dropped).
    pub fn alloc_grads(&mut self) -> Result<Gradients<f32, Cpu>, CpuError> {
        let mut grads = Gradients::leaky();
        self.zero_grads(&mut grads)?;
        Ok(grads)
    }

    /// Sets every parameter's gradient to 0 (allocating it if missing) and marks the parameters
    /// as the leaves whose gradients survive a backward pass, as dfdx's `ZeroGrads` does.
    pub fn zero_grads(&mut self, grads: &mut Gradients<f32, Cpu>) -> Result<(), CpuError> {
        struct Zero<'a> {
            grads: &'a mut Gradients<f32, Cpu>,
            // dfdx offers a tensor's id only through this list (`UnusedTensors::add`).
            leaves: dfdx::optim::UnusedTensors,
        }
        impl ParamVisitor for Zero<'_> {
            fn visit<S: Shape>(&mut self, param: &mut Tensor<S, f32, Cpu>) -> Result<(), CpuError> {
                self.grads.get_or_alloc_mut(param)?.fill(0.0);
                self.leaves.add(param);
                Ok(())
            }
        }
        let mut zero = Zero {
            grads,
            leaves: Default::default(),
        };
        self.visit_params(&mut zero)?;
        let Zero { grads, leaves } = zero;
        grads.retain_leafs(&leaves.ids);
        Ok(())
    }
}
