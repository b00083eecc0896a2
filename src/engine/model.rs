//! The network's parameters: three conv -> BN -> ReLU blocks, global average pool, linear classifier.
//!
//! Channel counts are const generics because dfdx's BatchNorm2D and Linear are; the input channel
//! count follows the data set (1 for digits/MNIST, 3 for CIFAR-10), so the network is generic over
//! it. Geometry that is not a tensor shape (stride, padding) lives in [`BLOCKS`].
use dfdx::nn::modules::{BatchNorm2D, Linear};
use dfdx::prelude::*;
use rand_distr::Uniform;

use super::conv::ConvGeometry;

pub const KERNEL: usize = 3;
pub const PADDING: usize = 1;
pub const CLASSES: usize = 10;

/// Cross-entropy targets: one row of [`CLASSES`] per label, 1 at the label. Labels are below
/// `CLASSES` (the data loaders check it).
pub fn one_hot(labels: &[u8]) -> Vec<f32> {
    let mut targets = vec![0.0; labels.len() * CLASSES];
    for (row, &label) in targets.chunks_exact_mut(CLASSES).zip(labels) {
        row[label as usize] = 1.0;
    }
    targets
}

/// One conv -> BN -> ReLU block as the rest of bntop sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpec {
    pub name: &'static str,
    pub channels: usize,
    pub stride: usize,
}

impl BlockSpec {
    /// This block's convolution on `batch` images of `in_channels` x `height` x `width`.
    pub fn geometry(
        &self,
        in_channels: usize,
        batch: usize,
        height: usize,
        width: usize,
    ) -> ConvGeometry {
        ConvGeometry {
            in_channels,
            batch,
            height,
            width,
            kernel: KERNEL,
            stride: self.stride,
            padding: PADDING,
        }
    }
}

/// Each block with its convolution, for a batch of `batch` images of `[channels, height, width]`:
/// every block's input is the previous block's output.
pub fn block_geometries(
    [channels, height, width]: [usize; 3],
    batch: usize,
) -> impl Iterator<Item = (&'static BlockSpec, ConvGeometry)> {
    BLOCKS
        .iter()
        .scan((channels, height, width), move |(c, h, w), spec| {
            let geometry = spec.geometry(*c, batch, *h, *w);
            (*c, *h, *w) = (spec.channels, geometry.out_height(), geometry.out_width());
            Some((spec, geometry))
        })
}

/// Must agree with the const generics of [`Net`] (a unit test checks it).
pub const BLOCKS: [BlockSpec; 3] = [
    BlockSpec {
        name: "block1",
        channels: 16,
        stride: 1,
    },
    BlockSpec {
        name: "block2",
        channels: 32,
        stride: 2,
    },
    BlockSpec {
        name: "block3",
        channels: 64,
        stride: 2,
    },
];

/// A 3x3 conv (O filters over I input channels), an optional bias before the BN, and the BN.
#[derive(Clone, Debug)]
pub struct ConvBn<const I: usize, const O: usize, E: Dtype, D: Storage<E>> {
    pub weight: Tensor<Rank4<O, I, KERNEL, KERNEL>, E, D>,
    /// Only in the graph with `--conv-bias`; otherwise it stays 0 and gets no gradient.
    pub bias: Tensor<Rank1<O>, E, D>,
    pub bn: BatchNorm2D<O, E, D>,
}

impl<const I: usize, const O: usize, E, D> TensorCollection<E, D> for ConvBn<I, O, E, D>
where
    E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = ConvBn<I, O, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                // PyTorch's default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| {
                        let b = E::ONE / E::from_usize(I * KERNEL * KERNEL).unwrap().sqrt();
                        t.try_fill_with_distr(Uniform::new(-b, b))
                    }),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::module("bn", |s| &s.bn, |s| &mut s.bn),
            ),
            |(weight, bias, bn)| ConvBn { weight, bias, bn },
        )
    }
}

/// The whole network over images with `IN` channels.
#[derive(Clone, Debug)]
pub struct Net<const IN: usize, E: Dtype, D: Storage<E>> {
    pub block1: ConvBn<IN, 16, E, D>,
    pub block2: ConvBn<16, 32, E, D>,
    pub block3: ConvBn<32, 64, E, D>,
    pub head: Linear<64, CLASSES, E, D>,
}

impl<const IN: usize, E, D> TensorCollection<E, D> for Net<IN, E, D>
where
    E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = Net<IN, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("block1", |s| &s.block1, |s| &mut s.block1),
                Self::module("block2", |s| &s.block2, |s| &mut s.block2),
                Self::module("block3", |s| &s.block3, |s| &mut s.block3),
                Self::module("head", |s| &s.head, |s| &mut s.head),
            ),
            |(block1, block2, block3, head)| Net {
                block1,
                block2,
                block3,
                head,
            },
        )
    }
}
