//! Random images of any shape, for timing the engine on shapes no embedded set has (e.g. CIFAR-10's
//! 3x32x32), like PyTorch's peer torch_shape.py. Speed only: there is nothing to learn.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DataSet, Images, CLASSES};

/// Fixed, so two benchmark runs see the same pixels.
const SEED: u64 = 0xB5EED;

/// `train` and `heldout` images of `channels` x `height` x `width` with uniform pixels in [0, 1]
/// and uniform labels; named "random", from source "generated".
pub fn synthetic([channels, height, width]: [usize; 3], train: usize, heldout: usize) -> DataSet {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut images = |count: usize| Images {
        channels,
        height,
        width,
        pixels: (0..count * channels * height * width)
            .map(|_| rng.gen_range(0.0..=1.0))
            .collect(),
        labels: (0..count)
            .map(|_| rng.gen_range(0..CLASSES as u8))
            .collect(),
    };
    let train = images(train);
    let heldout = images(heldout);
    DataSet::unstandardised("random", "generated".into(), train, heldout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_have_the_shape_asked_for_and_are_repeatable() {
        let data = synthetic([3, 5, 7], 20, 4);
        assert_eq!(
            (data.name.as_str(), data.source.as_str()),
            ("random", "generated")
        );
        assert_eq!((data.train.len(), data.heldout.len()), (20, 4));
        for part in [&data.train, &data.heldout] {
            assert_eq!((part.channels, part.height, part.width), (3, 5, 7));
            assert_eq!(part.pixels.len(), part.len() * 105);
            assert!(part.pixels.iter().all(|x| (0.0..=1.0).contains(x)));
            assert!(part.labels.iter().all(|&l| usize::from(l) < CLASSES));
        }
        // Not constant (a constant image would standardise to zeros).
        assert!(data.train.pixels.iter().any(|&x| x != data.train.pixels[0]));
        let again = synthetic([3, 5, 7], 20, 4);
        assert_eq!((&data.train, &data.heldout), (&again.train, &again.heldout));
    }
}
