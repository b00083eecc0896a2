//! The fixed 80/20 train / held-out split for sets that ship as a single file.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{DataError, Images, HELDOUT_SPLIT_SEED};

/// Splits `all` into (train, held-out): a fifth of the images, rounded up, picked by a shuffle
/// seeded with `HELDOUT_SPLIT_SEED`, are held out. Both halves keep the original order.
/// `origin` names the source in the error for fewer than two images.
pub(super) fn split(all: &Images, origin: &Path) -> Result<(Images, Images), DataError> {
    if all.len() < 2 {
        return Err(DataError::new(
            origin,
            format!(
                "only {} image(s): need at least 2 to split into train and held-out",
                all.len()
            ),
        ));
    }
    let heldout = heldout_mask(all.len());
    Ok((select(all, &heldout, false), select(all, &heldout, true)))
}

/// `mask[i]` is true if image `i` of `n` is held out.
fn heldout_mask(n: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(HELDOUT_SPLIT_SEED));
    let mut mask = vec![false; n];
    for &i in &order[..n.div_ceil(5)] {
        mask[i] = true;
    }
    mask
}

/// The images whose mask entry equals `wanted`, in their original order.
fn select(all: &Images, mask: &[bool], wanted: bool) -> Images {
    let count = mask.iter().filter(|&&m| m == wanted).count();
    let mut pixels = Vec::with_capacity(count * all.pixels_per_image());
    let mut labels = Vec::with_capacity(count);
    for (i, _) in mask.iter().enumerate().filter(|&(_, &m)| m == wanted) {
        pixels.extend_from_slice(all.image(i));
        labels.push(all.labels[i]);
    }
    Images {
        channels: all.channels,
        height: all.height,
        width: all.width,
        pixels,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` 1x1x2 images whose pixels are (i, -i) and whose label is i % 10.
    fn numbered(n: usize) -> Images {
        Images {
            channels: 1,
            height: 1,
            width: 2,
            pixels: (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
        }
    }

    #[test]
    fn sizes_are_80_20_with_heldout_rounded_up() {
        for (n, train, heldout) in [(1797, 1437, 360), (10, 8, 2), (11, 8, 3), (2, 1, 1)] {
            let (t, h) = split(&numbered(n), Path::new("x")).unwrap();
            assert_eq!((t.len(), h.len()), (train, heldout), "n = {n}");
        }
    }

    #[test]
    fn split_is_a_deterministic_partition_keeping_images_whole() {
        let all = numbered(500);
        let (train, heldout) = split(&all, Path::new("x")).unwrap();
        assert_eq!(
            split(&all, Path::new("x")).unwrap(),
            (train.clone(), heldout.clone())
        );

        let mut seen = vec![0; all.len()];
        for part in [&train, &heldout] {
            let mut previous = None;
            for i in 0..part.len() {
                let original = part.image(i)[0] as usize;
                assert_eq!(part.image(i), all.image(original));
                assert_eq!(part.labels[i], all.labels[original]);
                assert!(previous < Some(original), "original order is kept");
                previous = Some(original);
                seen[original] += 1;
            }
        }
        assert!(
            seen.iter().all(|&s| s == 1),
            "every image lands in exactly one split"
        );
    }

    #[test]
    fn fewer_than_two_images_cannot_be_split() {
        let err = split(&numbered(1), Path::new("one.bin")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "one.bin: only 1 image(s): need at least 2 to split into train and held-out"
        );
    }

    #[test]
    fn heldout_is_not_just_the_tail() {
        let (_, heldout) = split(&numbered(100), Path::new("x")).unwrap();
        let first = heldout.image(0)[0];
        assert!(
            first < 80.0,
            "shuffled, not a plain cut: first held-out image is {first}"
        );
    }
}
