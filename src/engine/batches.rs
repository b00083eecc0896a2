//! Training batches: which images, in which order, and the (C, N, H, W) pixels built from them.
//! The data order (protocol `DataOrder`) can change between any two steps.
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::data::Images;
use crate::protocol::DataOrder;

/// Frames per clip in the `clips` order: consecutive frames are shifts of one image.
pub const CLIP_LEN: usize = 8;
/// Steps per cycle of the `drifting` order's ramp (contrast 0.5 -> 1.5 -> 0.5, brightness
/// -0.5 -> +0.5 -> -0.5 in standardised units): slow next to the EMA's memory of 1/m steps.
pub const DRIFT_PERIOD: u64 = 4000;

/// Shuffled (i.i.d.) order: a fresh permutation of the training set every epoch; batches never
/// straddle two epochs (the tail of a permutation shorter than a batch is skipped, as with
/// PyTorch's `drop_last`).
#[derive(Clone)]
pub struct ShuffledBatches {
    order: Vec<usize>,
    cursor: usize,
    batch_size: usize,
    epoch: u64,
    rng: ChaCha8Rng,
}

impl ShuffledBatches {
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
        let new_epoch = self.begin_epoch_if_due();
        let batch = &self.order[self.cursor..self.cursor + self.batch_size];
        self.cursor += self.batch_size;
        (batch, new_epoch)
    }

    /// Start a new epoch (a fresh permutation) if the current one has no full batch left.
    pub fn begin_epoch_if_due(&mut self) -> bool {
        if self.cursor + self.batch_size > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
            self.epoch += 1;
            return true;
        }
        false
    }

    /// Shuffle what is left of this epoch (undoing `sort_remaining_by_label`).
    pub fn shuffle_remaining(&mut self) {
        self.order[self.cursor..].shuffle(&mut self.rng);
    }

    /// Sort what is left of this epoch by label (stable: the order within a class stays
    /// shuffled), so the coming batches walk through the classes.
    pub fn sort_remaining_by_label(&mut self, labels: &[u8]) {
        self.order[self.cursor..].sort_by_key(|&i| labels.get(i).copied().unwrap_or(0));
    }
}

/// One training batch, channel-major (C, N, H, W), with its labels.
pub struct Batch {
    pub pixels: Vec<f32>,
    pub labels: Vec<u8>,
    pub new_epoch: bool,
}

/// The training batches in the current data order. A clone draws the batches training will see
/// next without moving training on (PreciseBN's comparison, the phantom-gradient probe).
#[derive(Clone)]
pub struct Batches {
    order: DataOrder,
    epochs: ShuffledBatches,
    rng: ChaCha8Rng,
    batch_size: usize,
    step: u64,
    /// The epoch whose permutation was sorted by class.
    sorted_epoch: Option<u64>,
}

impl Batches {
    pub fn new(len: usize, batch_size: usize, seed: u64, order: DataOrder) -> Batches {
        Batches {
            order,
            epochs: ShuffledBatches::new(len, batch_size, seed),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0bde),
            batch_size,
            step: 0,
            sorted_epoch: None,
        }
    }

    /// The new order holds from the next batch: leaving `class_sorted` mid-epoch shuffles the
    /// rest of the epoch, which would otherwise still walk through the classes.
    pub fn set_order(&mut self, order: DataOrder) {
        if self.order == DataOrder::ClassSorted && order != DataOrder::ClassSorted {
            self.epochs.shuffle_remaining();
        }
        self.order = order;
        self.sorted_epoch = None;
    }

    pub fn epoch(&self) -> u64 {
        self.epochs.epoch()
    }

    pub fn order(&self) -> DataOrder {
        self.order
    }

    /// Contrast and brightness of the `drifting` order at `step`: a triangle wave.
    pub fn drift_at(step: u64) -> (f32, f32) {
        let phase = (step % DRIFT_PERIOD) as f32 / DRIFT_PERIOD as f32;
        let ramp = if phase < 0.5 {
            2.0 * phase
        } else {
            2.0 - 2.0 * phase
        };
        (0.5 + ramp, ramp - 0.5)
    }

    pub fn next(&mut self, images: &Images) -> Batch {
        self.step += 1;
        match self.order {
            DataOrder::Shuffled => {
                let (indices, new_epoch) = self.epochs.next_batch();
                let (pixels, labels) = gather_channel_major(images, indices);
                Batch {
                    pixels,
                    labels,
                    new_epoch,
                }
            }
            DataOrder::ClassSorted => {
                let new_epoch = self.epochs.begin_epoch_if_due();
                // Sorted once per epoch, or at once when the order was switched mid-epoch.
                if new_epoch || self.sorted_epoch != Some(self.epochs.epoch()) {
                    self.epochs.sort_remaining_by_label(&images.labels);
                    self.sorted_epoch = Some(self.epochs.epoch());
                }
                let (indices, _) = self.epochs.next_batch();
                let (pixels, labels) = gather_channel_major(images, indices);
                Batch {
                    pixels,
                    labels,
                    new_epoch,
                }
            }
            DataOrder::Clips => self.clips(images),
            DataOrder::Drifting => {
                let (indices, new_epoch) = self.epochs.next_batch();
                let (mut pixels, labels) = gather_channel_major(images, indices);
                let (contrast, brightness) = Self::drift_at(self.step);
                for p in &mut pixels {
                    *p = contrast * *p + brightness;
                }
                Batch {
                    pixels,
                    labels,
                    new_epoch,
                }
            }
        }
    }

    /// `batch_size / CLIP_LEN` images from the shuffled order, each followed by frames that
    /// move by at most one pixel from the frame before and from the original (zero filled).
    fn clips(&mut self, images: &Images) -> Batch {
        let clips = self.batch_size.div_ceil(CLIP_LEN).max(1);
        let mut frames = Vec::with_capacity(self.batch_size);
        let mut new_epoch = false;
        let (bases, epoch_began) = self.epochs.next_batch();
        new_epoch |= epoch_began;
        let bases: Vec<usize> = bases.iter().copied().take(clips).collect();
        for &base in &bases {
            let (mut dx, mut dy) = (0i32, 0i32);
            for _ in 0..CLIP_LEN {
                if frames.len() == self.batch_size {
                    break;
                }
                frames.push((base, dx, dy));
                // One pixel along one axis at a time, staying within a pixel of the original:
                // on 8x8 digits a bigger jump is no longer "a small shift".
                match self.rng.gen_range(0..4) {
                    0 => dx = (dx + if self.rng.gen() { 1 } else { -1 }).clamp(-1, 1),
                    1 => dy = (dy + if self.rng.gen() { 1 } else { -1 }).clamp(-1, 1),
                    _ => {}
                }
            }
        }
        let (c, h, w) = (images.channels, images.height, images.width);
        let mut pixels = vec![0.0; c * frames.len() * h * w];
        for (n, &(i, dx, dy)) in frames.iter().enumerate() {
            let image = images.image(i);
            for ch in 0..c {
                let out = &mut pixels[(ch * frames.len() + n) * h * w..][..h * w];
                for y in 0..h {
                    for x in 0..w {
                        let (sx, sy) = (x as i32 - dx, y as i32 - dy);
                        if (0..w as i32).contains(&sx) && (0..h as i32).contains(&sy) {
                            out[y * w + x] = image[(ch * h + sy as usize) * w + sx as usize];
                        }
                    }
                }
            }
        }
        let labels = frames.iter().map(|&(i, _, _)| images.labels[i]).collect();
        Batch {
            pixels,
            labels,
            new_epoch,
        }
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

    fn digits() -> Images {
        crate::engine::data::embedded_digits()
            .expect("embedded digits")
            .train
    }

    #[test]
    fn class_sorted_batches_hold_one_or_two_classes() {
        let images = digits();
        let mut batches = Batches::new(images.len(), 64, 1, DataOrder::ClassSorted);
        for _ in 0..60 {
            let batch = batches.next(&images);
            let mut classes = batch.labels.clone();
            classes.sort_unstable();
            classes.dedup();
            assert!(classes.len() <= 2, "{classes:?}");
        }
        let mut shuffled = Batches::new(images.len(), 64, 1, DataOrder::Shuffled);
        let mut classes = shuffled.next(&images).labels;
        classes.sort_unstable();
        classes.dedup();
        assert!(classes.len() >= 8, "a shuffled batch mixes the classes");
    }

    fn classes(labels: &[u8]) -> usize {
        let mut classes = labels.to_vec();
        classes.sort_unstable();
        classes.dedup();
        classes.len()
    }

    /// Every order change holds from the next batch, mid-epoch too: into `class_sorted` the next
    /// batch holds one or two classes; out of it (after some sorted batches) it mixes them again.
    #[test]
    fn the_first_batch_after_an_order_switch_is_drawn_in_the_new_order() {
        let images = digits();
        let mixed = |order, labels: &[u8]| match order {
            // Clips repeat each of 64 / CLIP_LEN = 8 images CLIP_LEN times.
            DataOrder::Clips => classes(labels) >= 5,
            _ => classes(labels) >= 8,
        };
        for from in [DataOrder::Shuffled, DataOrder::Clips, DataOrder::Drifting] {
            let mut batches = Batches::new(images.len(), 64, 4, from);
            batches.next(&images);
            batches.set_order(DataOrder::ClassSorted);
            let first = batches.next(&images);
            assert!(classes(&first.labels) <= 2, "{from:?} -> class_sorted");
        }
        for to in [DataOrder::Shuffled, DataOrder::Clips, DataOrder::Drifting] {
            let mut batches = Batches::new(images.len(), 64, 5, DataOrder::Shuffled);
            batches.next(&images);
            batches.set_order(DataOrder::ClassSorted);
            for _ in 0..3 {
                batches.next(&images);
            }
            batches.set_order(to);
            let first = batches.next(&images);
            assert!(!first.new_epoch, "the switch came mid-epoch");
            assert!(
                mixed(to, &first.labels),
                "class_sorted -> {to:?}: {:?}",
                first.labels
            );
        }
    }

    fn correlation(a: &[f32], b: &[f32]) -> f64 {
        let m = |x: &[f32]| x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64;
        let (ma, mb) = (m(a), m(b));
        let cov: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - ma) * (f64::from(y) - mb))
            .sum();
        let var = |x: &[f32], mx: f64| x.iter().map(|&v| (f64::from(v) - mx).powi(2)).sum::<f64>();
        cov / (var(a, ma) * var(b, mb)).sqrt()
    }

    /// Mean correlation of consecutive images in a batch, after removing the batch's mean image
    /// (all digits share a dark border, which would correlate any two of them).
    fn lag1(batch: &Batch, n: usize, plane: usize) -> f64 {
        let mut mean = vec![0.0f32; plane];
        for image in batch.pixels.chunks(plane) {
            for (m, &p) in mean.iter_mut().zip(image) {
                *m += p / n as f32;
            }
        }
        let centred: Vec<Vec<f32>> = batch
            .pixels
            .chunks(plane)
            .map(|image| image.iter().zip(&mean).map(|(&p, &m)| p - m).collect())
            .collect();
        (1..n)
            .map(|i| correlation(&centred[i - 1], &centred[i]))
            .sum::<f64>()
            / (n - 1) as f64
    }

    #[test]
    fn clip_frames_are_correlated_shuffled_ones_are_not() {
        let images = digits();
        let plane = images.height * images.width;
        let mut clips = Batches::new(images.len(), 64, 2, DataOrder::Clips);
        let mut shuffled = Batches::new(images.len(), 64, 2, DataOrder::Shuffled);
        let batch = clips.next(&images);
        assert_eq!(batch.labels.len(), 64);
        // Eight clips of one image each.
        assert!(batch
            .labels
            .chunks(CLIP_LEN)
            .all(|c| c.iter().all(|&l| l == c[0])));
        let clip_r = lag1(&batch, 64, plane);
        let shuffled_r = lag1(&shuffled.next(&images), 64, plane);
        assert!(
            clip_r > 0.5 && shuffled_r < 0.3,
            "clips {clip_r:.2}, shuffled {shuffled_r:.2}"
        );
    }

    #[test]
    fn drifting_ramps_contrast_and_brightness() {
        assert_eq!(Batches::drift_at(0), (0.5, -0.5));
        assert_eq!(Batches::drift_at(DRIFT_PERIOD / 2), (1.5, 0.5));
        let images = digits();
        let mut batches = Batches::new(images.len(), 64, 3, DataOrder::Drifting);
        let mean =
            |b: &Batch| b.pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / b.pixels.len() as f64;
        let early = mean(&batches.next(&images));
        for _ in 0..(DRIFT_PERIOD / 2 - 2) {
            batches.next(&images);
        }
        let middle = mean(&batches.next(&images));
        // Standardised pixels average about 0, so the batch mean follows the brightness.
        assert!(early < -0.3 && middle > 0.3, "{early:.2} -> {middle:.2}");
    }

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
