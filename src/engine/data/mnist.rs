//! The embedded MNIST subset: 10,000 real MNIST digits (28x28, 256 grey levels) as the four gzip'd
//! IDX files in assets/mnist-10k/ (provenance and licence: assets/README.md).

use std::path::{Path, PathBuf};

use super::idx::{decode_set, IdxPair};
use super::read::maybe_gunzip;
use super::{DataError, DataSet};

const DIR: &str = "assets/mnist-10k";

macro_rules! asset {
    ($file:literal) => {
        (
            $file,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/mnist-10k/",
                $file
            ))
            .as_slice(),
        )
    };
}

/// (file name, gzip'd bytes) for train images, train labels, held-out images, held-out labels.
const FILES: [(&str, &[u8]); 4] = [
    asset!("train-images-idx3-ubyte.gz"),
    asset!("train-labels-idx1-ubyte.gz"),
    asset!("t10k-images-idx3-ubyte.gz"),
    asset!("t10k-labels-idx1-ubyte.gz"),
];

/// The embedded MNIST subset with the split it ships with: 8,000 train images (the train-* files)
/// and 2,000 held-out (the t10k-* files), fixed when the subset was made by a seeded shuffle, so
/// it never depends on the training seed. PyTorch's peer (torch_ref.py) uses the same split.
pub fn embedded_mnist() -> Result<DataSet, DataError> {
    let [train_images, train_labels, heldout_images, heldout_labels] = FILES.map(inflate);
    let train = pair(train_images?, train_labels?);
    let heldout = pair(heldout_images?, heldout_labels?);
    decode_set("mnist-10k", "embedded".into(), &train, &heldout)
}

/// The file's origin for errors and its inflated bytes.
fn inflate((name, gz): (&str, &[u8])) -> Result<(PathBuf, Vec<u8>), DataError> {
    let origin = Path::new(DIR).join(format!("{name} (embedded)"));
    let bytes = maybe_gunzip(gz.to_vec(), &origin)?;
    Ok((origin, bytes))
}

fn pair(images: (PathBuf, Vec<u8>), labels: (PathBuf, Vec<u8>)) -> IdxPair {
    IdxPair {
        images_origin: images.0,
        images: images.1,
        labels_origin: labels.0,
        labels: labels.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_mnist_loads_with_its_fixed_split() {
        let data = embedded_mnist().unwrap();
        assert_eq!(
            (data.name.as_str(), data.source.as_str()),
            ("mnist-10k", "embedded")
        );
        assert_eq!((data.train.len(), data.heldout.len()), (8000, 2000));
        for part in [&data.train, &data.heldout] {
            assert_eq!((part.channels, part.height, part.width), (1, 28, 28));
            assert_eq!(part.pixels.len(), part.len() * 28 * 28);
            assert!(part.pixels.iter().all(|x| (0.0..=1.0).contains(x)));
        }
        let per_class = |labels: &[u8]| {
            (0..10u8)
                .map(|class| labels.iter().filter(|&&l| l == class).count())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            per_class(&data.train.labels),
            [795, 901, 803, 818, 777, 719, 804, 869, 728, 786]
        );
        assert_eq!(
            per_class(&data.heldout.labels),
            [206, 226, 188, 214, 203, 144, 210, 201, 216, 192]
        );
        // Real 8-bit scans: both ends of the grey scale occur.
        assert!(data.train.pixels.contains(&0.0) && data.train.pixels.contains(&1.0));
        // The split is fixed by the files: loading again gives the same images in the same order.
        let again = embedded_mnist().unwrap();
        assert_eq!((&data.train, &data.heldout), (&again.train, &again.heldout));
    }

    #[test]
    fn embedded_files_are_the_shipped_ones() {
        // IDX headers: magic, count, then rows and cols for images.
        let header = |i: usize, words: usize| {
            let (_, bytes) = inflate(FILES[i]).unwrap();
            (0..words)
                .map(|w| u32::from_be_bytes(bytes[4 * w..4 * w + 4].try_into().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(header(0, 4), [0x803, 8000, 28, 28]);
        assert_eq!(header(1, 2), [0x801, 8000]);
        assert_eq!(header(2, 4), [0x803, 2000, 28, 28]);
        assert_eq!(header(3, 2), [0x801, 2000]);
    }
}
