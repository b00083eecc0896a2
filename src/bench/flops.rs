//! Floating-point operations per training step of the network, from its geometry, so
//! `bntop bench` can print GFLOP/s beside steps/s for whatever image shape it runs on.
//!
//! Convention (the usual one for CNN throughput): a multiply-add is 2 FLOPs; a 3x3 conv producing
//! O x Ho x Wo from I channels costs 2·B·O·I·K²·Ho·Wo forward, and the backward pass twice that
//! (input gradient and weight gradient), so a training step costs 3x the forward. The linear head
//! is counted the same way (2·B·in·out, x3). BN, ReLU, pooling, the loss and the optimizer update
//! are not counted: they are elementwise, a few FLOPs per activation, and memory-bound.
use crate::engine::model::{block_geometries, Widths, CLASSES};

/// Forward FLOPs of one step; [`Self::training`] is what a step costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepFlops {
    pub convs: u64,
    pub linear: u64,
}

impl StepFlops {
    /// Forward + backward: 3x the forward multiply-adds.
    pub fn training(&self) -> u64 {
        3 * (self.convs + self.linear)
    }
}

/// Forward FLOPs of the network with `widths` for a batch of `batch` images of `channels` x
/// `height` x `width`.
pub fn per_step(shape: [usize; 3], widths: &Widths, batch: usize) -> StepFlops {
    let convs = block_geometries(widths, shape, batch)
        // positions = B·Ho·Wo, patch_len = I·K².
        .map(|(spec, g)| 2 * (spec.channels * g.patch_len() * g.positions()) as u64)
        .sum();
    StepFlops {
        convs,
        linear: 2 * (batch * widths.features() * CLASSES) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widths(text: &str) -> Widths {
        text.parse().expect("valid widths")
    }

    #[test]
    fn digits_at_batch_64_by_hand() {
        // 8x8 -> 8x8 (stride 1) -> 4x4 -> 2x2.
        let b = 64;
        let convs = 2 * b * (16 * 9 * 8 * 8 + 32 * 16 * 9 * 4 * 4 + 64 * 32 * 9 * 2 * 2);
        let flops = per_step([1, 8, 8], &widths("16,32,64"), b as usize);
        assert_eq!(flops.convs, convs);
        assert_eq!(flops.linear, 2 * b * 64 * 10);
        assert_eq!(flops.training(), 3 * (convs + 2 * b * 640));
        assert_eq!(flops.training(), 60_407_808);
    }

    #[test]
    fn follows_the_image_shape() {
        let three = widths("16,32,64");
        // 3x32x32 -> 32x32 -> 16x16 -> 8x8; 28x28 -> 28 -> 14 -> 7; odd sizes round up.
        let cifar = 2 * (16 * 27 * 32 * 32 + 32 * 144 * 16 * 16 + 64 * 288 * 8 * 8);
        assert_eq!(per_step([3, 32, 32], &three, 1).convs, cifar);
        let mnist = 2 * (16 * 9 * 28 * 28 + 32 * 144 * 14 * 14 + 64 * 288 * 7 * 7);
        assert_eq!(per_step([1, 28, 28], &three, 1).convs, mnist);
        assert_eq!(per_step([1, 28, 28], &three, 10).convs, 10 * mnist);
        let odd = 2 * (16 * 9 * 5 * 5 + 32 * 144 * 3 * 3 + 64 * 288 * 2 * 2);
        assert_eq!(per_step([1, 5, 5], &three, 1).convs, odd);
        // The README's per-step figures at batch 64.
        assert_eq!(per_step([1, 28, 28], &three, 64).training(), 737_230_848);
        assert_eq!(per_step([3, 32, 32], &three, 64).training(), 1_076_084_736);
    }

    #[test]
    fn follows_the_widths() {
        // 28x28 -> 28 -> 14 -> 7 -> 4 with a fourth block of 128; the head reads 128 features.
        let four = per_step([1, 28, 28], &widths("16,32,64,128"), 1);
        let mnist = 2 * (16 * 9 * 28 * 28 + 32 * 144 * 14 * 14 + 64 * 288 * 7 * 7);
        assert_eq!(four.convs, mnist + 2 * 128 * 576 * 4 * 4);
        assert_eq!(four.linear, 2 * 128 * 10);
        // One block of 8: 8x8 -> 8x8.
        let one = per_step([1, 8, 8], &widths("8"), 2);
        assert_eq!(one.convs, 2 * 2 * 8 * 9 * 8 * 8);
        assert_eq!(one.linear, 2 * 2 * 8 * 10);
    }
}
