//! CIFAR-10 binary batches: records of one label byte and 3072 pixel bytes (1024 R, 1024 G,
//! 1024 B, each 32x32 row-major), which is already CHW.

use std::path::{Path, PathBuf};

use super::read::read_maybe_gzip;
use super::split::split;
use super::{DataError, DataSet, Images, CLASSES};

const CHANNELS: usize = 3;
const SIDE: usize = 32;
const PIXELS: usize = CHANNELS * SIDE * SIDE;
const RECORD: usize = 1 + PIXELS;

const TRAIN_BATCHES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST_BATCH: &str = "test_batch.bin";
/// The directory the official archive unpacks to, so its parent can be given too.
const ARCHIVE_DIR: &str = "cifar-10-batches-bin";

/// The batch files found in a directory.
pub(super) struct Batches {
    dir: PathBuf,
    train: Vec<PathBuf>,
    heldout: Option<PathBuf>,
}

/// The batches in `dir`, or else in `dir/cifar-10-batches-bin`; `None` if neither holds any.
pub(super) fn find(dir: &Path) -> Option<Batches> {
    [dir.to_path_buf(), dir.join(ARCHIVE_DIR)]
        .into_iter()
        .find_map(|dir| {
            let train: Vec<PathBuf> = TRAIN_BATCHES
                .iter()
                .map(|name| dir.join(name))
                .filter(|path| path.exists())
                .collect();
            let heldout = Some(dir.join(TEST_BATCH)).filter(|path| path.exists());
            (!train.is_empty() || heldout.is_some()).then_some(Batches {
                dir,
                train,
                heldout,
            })
        })
}

/// Train from the data batches present, held-out from the test batch; `source` is the path given.
pub(super) fn load_dir(source: &Path, batches: &Batches) -> Result<DataSet, DataError> {
    if batches.train.is_empty() {
        return Err(DataError::new(
            batches.dir.join(TRAIN_BATCHES[0]),
            "missing: a CIFAR-10 directory needs at least one of \
             data_batch_1.bin..data_batch_5.bin to train on",
        ));
    }
    let Some(heldout) = &batches.heldout else {
        return Err(DataError::new(
            batches.dir.join(TEST_BATCH),
            "missing: a CIFAR-10 directory needs it as the held-out split",
        ));
    };
    let train = decode(&read_batches(&batches.train)?);
    let heldout = decode(&[read_batch(heldout)?]);
    Ok(DataSet::unstandardised(
        "cifar10",
        source.display().to_string(),
        train,
        heldout,
    ))
}

/// A single batch file, split 80/20 like the embedded digits.
pub(super) fn load_file(path: &Path) -> Result<DataSet, DataError> {
    let all = decode(&[read_batch(path)?]);
    let (train, heldout) = split(&all, path)?;
    Ok(DataSet::unstandardised(
        "cifar10",
        path.display().to_string(),
        train,
        heldout,
    ))
}

fn read_batches(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, DataError> {
    paths.iter().map(|path| read_batch(path)).collect()
}

/// A whole batch file, checked: a non-zero number of whole records, every label in range.
fn read_batch(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gzip(path)?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        // The likeliest wrong file here is one MNIST file given instead of its directory.
        let hint = if bytes.starts_with(&[0, 0, 8, 3]) || bytes.starts_with(&[0, 0, 8, 1]) {
            "; it looks like an MNIST IDX file: give the directory holding the train-* and t10k-* \
             files instead"
        } else {
            ""
        };
        return Err(DataError::new(
            path,
            format!(
                "size {} bytes is not a non-zero multiple of the CIFAR-10 record size {RECORD} \
                 (1 label byte + {PIXELS} pixel bytes){hint}",
                bytes.len()
            ),
        ));
    }
    let bad_label = bytes
        .chunks_exact(RECORD)
        .map(|record| record[0])
        .enumerate()
        .find(|&(_, label)| usize::from(label) >= CLASSES);
    if let Some((i, label)) = bad_label {
        return Err(DataError::new(
            path,
            format!(
                "record {i}: label {label} is out of range 0..={}",
                CLASSES - 1
            ),
        ));
    }
    Ok(bytes)
}

/// All records of checked batches, in order, converted to f32 in one pass.
fn decode(batches: &[Vec<u8>]) -> Images {
    let count: usize = batches.iter().map(|batch| batch.len() / RECORD).sum();
    let mut pixels = Vec::with_capacity(count * PIXELS);
    let mut labels = Vec::with_capacity(count);
    for record in batches.iter().flat_map(|batch| batch.chunks_exact(RECORD)) {
        labels.push(record[0]);
        pixels.extend(record[1..].iter().map(|&b| f32::from(b) / 255.0));
    }
    Images {
        channels: CHANNELS,
        height: SIDE,
        width: SIDE,
        pixels,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{cifar_records, gzip, idx_images, scaled, write};
    use super::super::load_path;
    use super::*;
    use std::fs;

    /// Pixel (channel c, row 2, col 3) of image `i`, and the same in the fixture.
    fn assert_pixel_2_3(images: &Images, i: usize, original: usize) {
        for c in 0..CHANNELS {
            let at = c * SIDE * SIDE + 2 * SIDE + 3;
            assert_eq!(
                images.image(i)[at],
                scaled(original, c, 2, 3),
                "channel {c}"
            );
        }
        assert_eq!(images.image(i).last(), Some(&scaled(original, 2, 31, 31)));
    }

    fn error(path: &Path) -> String {
        load_path(path).unwrap_err().to_string()
    }

    fn expect_error(path: &Path, suffix: &str) {
        let err = error(path);
        assert!(err.ends_with(suffix), "{err}\n does not end with\n{suffix}");
    }

    /// data_batch_1 (images 0, 1), data_batch_3 (image 2) and test_batch (images 0, 1) in `dir`.
    fn write_batches(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        write(dir, "data_batch_1.bin", &cifar_records(0, &[6, 9]));
        write(dir, "data_batch_3.bin", &cifar_records(2, &[2]));
        write(dir, "test_batch.bin", &cifar_records(0, &[3, 8]));
    }

    fn assert_batches_decode(data: &DataSet, source: &Path) {
        assert_eq!(data.name, "cifar10");
        assert_eq!(data.source, source.display().to_string());
        assert_eq!(data.classes, 10);
        for part in [&data.train, &data.heldout] {
            assert_eq!((part.channels, part.height, part.width), (3, 32, 32));
            assert_eq!(part.pixels.len(), part.len() * 3072);
        }
        assert_eq!(data.train.labels, [6, 9, 2]);
        assert_eq!(data.heldout.labels, [3, 8]);
        assert_pixel_2_3(&data.train, 1, 1);
        assert_pixel_2_3(&data.train, 2, 2);
        assert_pixel_2_3(&data.heldout, 1, 1);
    }

    #[test]
    fn directory_of_batches_decodes_exactly() {
        let dir = tempfile::tempdir().unwrap();
        write_batches(dir.path());
        assert_batches_decode(&load_path(dir.path()).unwrap(), dir.path());
    }

    #[test]
    fn archive_subdirectory_is_found_and_gzip_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join(ARCHIVE_DIR);
        write_batches(&inner);
        write(&inner, TEST_BATCH, &gzip(&cifar_records(0, &[3, 8])));
        assert_batches_decode(&load_path(dir.path()).unwrap(), dir.path());
    }

    #[test]
    fn single_batch_file_is_split_80_20() {
        let dir = tempfile::tempdir().unwrap();
        let labels: Vec<u8> = (0..10).map(|i| (i * 7 % 10) as u8).collect();
        let path = write(dir.path(), "data_batch_1.bin", &cifar_records(0, &labels));
        let data = load_path(&path).unwrap();
        assert_eq!(
            (data.name.as_str(), data.source.clone()),
            ("cifar10", path.display().to_string())
        );
        assert_eq!((data.train.len(), data.heldout.len()), (8, 2));

        let mut seen = Vec::new();
        for part in [&data.train, &data.heldout] {
            for i in 0..part.len() {
                // pixel(k, 0, 0, 0) differs for every k < 10, so it identifies the record.
                let original = (0..10)
                    .find(|&k| part.image(i)[0] == scaled(k, 0, 0, 0))
                    .unwrap();
                assert_pixel_2_3(part, i, original);
                assert_eq!(part.labels[i], labels[original]);
                seen.push(original);
            }
        }
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn size_not_a_multiple_of_the_record_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let odd = write(dir.path(), "odd.bin", &cifar_records(0, &[1])[..3000]);
        expect_error(
            &odd,
            "odd.bin: size 3000 bytes is not a non-zero multiple of the CIFAR-10 record size \
             3073 (1 label byte + 3072 pixel bytes)",
        );
        let empty = write(dir.path(), "empty.bin", &[]);
        expect_error(
            &empty,
            "empty.bin: size 0 bytes is not a non-zero multiple of the CIFAR-10 record size \
             3073 (1 label byte + 3072 pixel bytes)",
        );
    }

    #[test]
    fn idx_file_given_alone_gets_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let gz = gzip(&idx_images(2, 3, 3));
        let path = write(dir.path(), "train-images-idx3-ubyte.gz", &gz);
        expect_error(
            &path,
            "train-images-idx3-ubyte.gz: size 34 bytes is not a non-zero multiple of the \
             CIFAR-10 record size 3073 (1 label byte + 3072 pixel bytes); it looks like an MNIST \
             IDX file: give the directory holding the train-* and t10k-* files instead",
        );
    }

    #[test]
    fn label_out_of_range_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        write_batches(dir.path());
        write(dir.path(), "data_batch_3.bin", &cifar_records(0, &[2, 10]));
        expect_error(
            dir.path(),
            "data_batch_3.bin: record 1: label 10 is out of range 0..=9",
        );
    }

    #[test]
    fn missing_test_or_train_batches_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_batches(dir.path());
        fs::remove_file(dir.path().join(TEST_BATCH)).unwrap();
        let err = error(dir.path());
        assert!(err.contains("test_batch.bin: missing"), "{err}");

        write_batches(dir.path());
        fs::remove_file(dir.path().join("data_batch_1.bin")).unwrap();
        fs::remove_file(dir.path().join("data_batch_3.bin")).unwrap();
        let err = error(dir.path());
        assert!(err.contains("data_batch_1.bin: missing"), "{err}");
    }

    #[test]
    fn single_record_file_cannot_be_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "one.bin", &cifar_records(0, &[4]));
        expect_error(
            &path,
            "one.bin: only 1 image(s): need at least 2 to split into train and held-out",
        );
    }
}
