//! Training batches: which images, in which order, and the (C, N, H, W) tensors built from them.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::data::Images;

/// Shuffled (i.i.d.) order: a fresh permutation of the training set every epoch; batches never
/// straddle two epochs (the tail of a permutation shorter than a batch is skipped, as with
/// PyTorch's `drop_last`).
pub struct ShuffledBatches {
    order: Vec<usize>,
    cursor: usize,
    batch_size: usize,
    epoch: u64,
    rng: ChaCha8Rng,
}

impl ShuffledBatches {
    pub const NAME: &'static str = "shuffled";

    pub fn new(len: usize, batch_size: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut rng);
        ShuffledBatches {
            order,
            cursor: 0,
            batch_size,
            epoch: 0,
            rng,
        }
    }

    /// Epochs started so far, counting from 0.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The next batch's image indices, and whether a new epoch began with it.
    pub fn next_batch(&mut self) -> (&[usize], bool) {
        let mut new_epoch = false;
        if self.cursor + self.batch_size > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
            self.epoch += 1;
            new_epoch = true;
        }
        let batch = &self.order[self.cursor..self.cursor + self.batch_size];
        self.cursor += self.batch_size;
        (batch, new_epoch)
    }
}

/// Pixels of the chosen images in channel-major (C, N, H, W) order, and their labels.
pub fn gather_channel_major(images: &Images, indices: &[usize]) -> (Vec<f32>, Vec<u8>) {
    let plane = images.height * images.width;
    let mut pixels = Vec::with_capacity(indices.len() * images.pixels_per_image());
    for c in 0..images.channels {
        for &i in indices {
            pixels.extend_from_slice(&images.image(i)[c * plane..(c + 1) * plane]);
        }
    }
    (pixels, indices.iter().map(|&i| images.labels[i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_image_appears_once_per_epoch() {
        let mut batches = ShuffledBatches::new(10, 3, 1);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (b, new_epoch) = batches.next_batch();
            assert!(!new_epoch);
            seen.extend_from_slice(b);
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9, "three batches of 3 from one permutation");
        let (_, new_epoch) = batches.next_batch();
        assert!(new_epoch);
        assert_eq!(batches.epoch(), 1);
    }

    #[test]
    fn channel_major_layout_groups_each_channel() {
        // Two 1x2 images with 2 channels: image i, channel c, pixel p = 10i + c + p/10.
        let images = Images {
            channels: 2,
            height: 1,
            width: 2,
            pixels: vec![0.0, 0.1, 1.0, 1.1, 10.0, 10.1, 11.0, 11.1],
            labels: vec![3, 4],
        };
        let (pixels, labels) = gather_channel_major(&images, &[1, 0]);
        assert_eq!(pixels, vec![10.0, 10.1, 0.0, 0.1, 11.0, 11.1, 1.0, 1.1]);
        assert_eq!(labels, vec![4, 3]);
    }
}
