//! Data sets for the engine: the embedded digits and MNIST subset, MNIST-IDX or CIFAR-10 binary
//! files on disk, and random images of any shape (for benchmarks), as f32 NCHW images in [0, 1]
//! with a train / held-out split that never depends on the training seed.

mod cifar;
mod digits;
mod idx;
mod mnist;
mod normalise;
mod read;
mod split;
mod synthetic;

#[cfg(test)]
mod fixtures;

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

pub use digits::embedded_digits;
pub use mnist::embedded_mnist;
pub use synthetic::synthetic;

/// Seed of the shuffle that splits single-file sets; fixed so the held-out split stays the same
/// whatever the training seed.
pub const HELDOUT_SPLIT_SEED: u64 = 0x5EED;

/// Every supported format has ten classes.
const CLASSES: usize = 10;

/// Images in NCHW order, pixel values in [0, 1] (raw, before standardisation).
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Images {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// C*H*W.
    pub fn pixels_per_image(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// One image's C*H*W pixels. Panics if `i >= self.len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.pixels_per_image();
        &self.pixels[i * n..(i + 1) * n]
    }
}

#[derive(Debug, Clone)]
pub struct DataSet {
    /// "digits", "mnist-10k" (embedded), "mnist-idx" (MNIST or Fashion-MNIST: same format),
    /// "cifar10" or "random" (see [`synthetic`]).
    pub name: String,
    /// "embedded" or the path given.
    pub source: String,
    pub train: Images,
    pub heldout: Images,
    pub classes: usize,
    /// Filled by `standardise()`; empty before.
    pub channel_mean: Vec<f32>,
    pub channel_std: Vec<f32>,
}

impl DataSet {
    fn unstandardised(name: &str, source: String, train: Images, heldout: Images) -> Self {
        DataSet {
            name: name.to_owned(),
            source,
            train,
            heldout,
            classes: CLASSES,
            channel_mean: Vec::new(),
            channel_std: Vec::new(),
        }
    }
}

/// What is wrong with which file; displays as one line, "{path}: {problem}".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub path: PathBuf,
    pub problem: String,
}

impl DataError {
    fn new(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        DataError {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for DataError {}

/// Detect the format at `path` and load it: a directory of MNIST IDX files, a directory of
/// CIFAR-10 batches, or a single CIFAR-10 batch file.
pub fn load_path(path: &Path) -> Result<DataSet, DataError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(DataError::new(path, "no such file or directory"))
        }
        Err(e) => return Err(DataError::new(path, format!("cannot read: {e}"))),
    };
    if meta.is_file() {
        return cifar::load_file(path);
    }
    if !meta.is_dir() {
        return Err(DataError::new(path, "not a regular file or directory"));
    }
    if let Some(files) = idx::find(path)? {
        return idx::load(path, &files);
    }
    if let Some(batches) = cifar::find(path) {
        return cifar::load_dir(path, &batches);
    }
    Err(DataError::new(
        path,
        "no MNIST IDX or CIFAR-10 binary files found (expected train-images-idx3-ubyte[.gz], \
         train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and \
         t10k-labels-idx1-ubyte[.gz], or data_batch_1.bin..data_batch_5.bin and test_batch.bin)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_accessors_index_nchw() {
        let images = Images {
            channels: 2,
            height: 1,
            width: 3,
            pixels: (0..12).map(|v| v as f32).collect(),
            labels: vec![4, 7],
        };
        assert_eq!(images.len(), 2);
        assert!(!images.is_empty());
        assert_eq!(images.pixels_per_image(), 6);
        assert_eq!(images.image(1), &[6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
    }

    #[test]
    fn error_displays_path_then_problem() {
        let err = DataError::new("data/x.bin", "truncated");
        assert_eq!(err.to_string(), "data/x.bin: truncated");
    }

    #[test]
    fn missing_path_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = load_path(&missing).unwrap_err();
        assert_eq!(err.path, missing);
        assert!(
            err.to_string().ends_with("nope: no such file or directory"),
            "{err}"
        );
    }

    #[test]
    fn empty_directory_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_path(dir.path()).unwrap_err();
        assert_eq!(err.path, dir.path());
        assert!(
            err.problem
                .starts_with("no MNIST IDX or CIFAR-10 binary files found"),
            "{err}"
        );
        assert!(err.problem.contains("train-images-idx3-ubyte"), "{err}");
        assert!(err.problem.contains("data_batch_1.bin"), "{err}");
    }
}
