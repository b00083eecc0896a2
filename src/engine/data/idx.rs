//! MNIST / Fashion-MNIST in IDX format: a directory holding train and t10k image and label
//! files, each raw or gzip'd.

use std::path::{Path, PathBuf};

use super::read::read_maybe_gzip;
use super::{DataError, DataSet, Images, CLASSES};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
/// Magic, count, rows, cols: four big-endian u32s.
const IMAGES_HEADER: usize = 16;
/// Magic, count.
const LABELS_HEADER: usize = 8;

/// The four files of an IDX set, as found on disk.
pub(super) struct IdxFiles {
    train_images: PathBuf,
    train_labels: PathBuf,
    heldout_images: PathBuf,
    heldout_labels: PathBuf,
}

/// The IDX files in `dir`; `None` if it holds no training-images file, i.e. is not an IDX
/// directory. Once that file is there, a missing companion is an error rather than a reason to
/// try another format.
pub(super) fn find(dir: &Path) -> Result<Option<IdxFiles>, DataError> {
    let Some(train_images) = locate(dir, "train-images", "idx3-ubyte") else {
        return Ok(None);
    };
    Ok(Some(IdxFiles {
        train_images,
        train_labels: require(dir, "train-labels", "idx1-ubyte")?,
        heldout_images: require(dir, "t10k-images", "idx3-ubyte")?,
        heldout_labels: require(dir, "t10k-labels", "idx1-ubyte")?,
    }))
}

/// The first of `{stem}-{kind}`, `{stem}.{kind}` and each with `.gz` that exists in `dir`.
/// Both spellings circulate: the original archive uses '-', several mirrors '.'.
fn locate(dir: &Path, stem: &str, kind: &str) -> Option<PathBuf> {
    ["-", "."]
        .into_iter()
        .flat_map(|sep| ["", ".gz"].map(|gz| dir.join(format!("{stem}{sep}{kind}{gz}"))))
        .find(|path| path.exists())
}

fn require(dir: &Path, stem: &str, kind: &str) -> Result<PathBuf, DataError> {
    locate(dir, stem, kind).ok_or_else(|| {
        DataError::new(
            dir.join(format!("{stem}-{kind}")),
            format!(
                "missing (also looked for {stem}.{kind} and both with .gz): an IDX directory \
                 needs train and t10k images and labels"
            ),
        )
    })
}

/// Train from the train-* files, held-out from the t10k-* files; `dir` becomes the source.
pub(super) fn load(dir: &Path, files: &IdxFiles) -> Result<DataSet, DataError> {
    let read = |images: &PathBuf, labels: &PathBuf| {
        Ok::<_, DataError>(IdxPair {
            images: read_maybe_gzip(images)?,
            images_origin: images.clone(),
            labels: read_maybe_gzip(labels)?,
            labels_origin: labels.clone(),
        })
    };
    let train = read(&files.train_images, &files.train_labels)?;
    let heldout = read(&files.heldout_images, &files.heldout_labels)?;
    decode_set("mnist-idx", dir.display().to_string(), &train, &heldout)
}

/// One IDX images file and its labels, already inflated; the origins name them in errors.
pub(super) struct IdxPair {
    pub images: Vec<u8>,
    pub images_origin: PathBuf,
    pub labels: Vec<u8>,
    pub labels_origin: PathBuf,
}

/// A train and a held-out pair decoded into a data set, checked to share one image size.
pub(super) fn decode_set(
    name: &str,
    source: String,
    train: &IdxPair,
    heldout: &IdxPair,
) -> Result<DataSet, DataError> {
    let train_images = decode_pair(train)?;
    let heldout_images = decode_pair(heldout)?;
    if (heldout_images.height, heldout_images.width) != (train_images.height, train_images.width) {
        return Err(DataError::new(
            &heldout.images_origin,
            format!(
                "images are {}x{} but the training images ({}) are {}x{}",
                heldout_images.height,
                heldout_images.width,
                train.images_origin.display(),
                train_images.height,
                train_images.width
            ),
        ));
    }
    Ok(DataSet::unstandardised(
        name,
        source,
        train_images,
        heldout_images,
    ))
}

fn decode_pair(pair: &IdxPair) -> Result<Images, DataError> {
    let images = parse_images(&pair.images, &pair.images_origin)?;
    let labels = parse_labels(&pair.labels, &pair.labels_origin)?;
    if labels.len() != images.count {
        return Err(DataError::new(
            &pair.images_origin,
            format!(
                "holds {} images but {} holds {} labels",
                images.count,
                pair.labels_origin.display(),
                labels.len()
            ),
        ));
    }
    Ok(Images {
        channels: 1,
        height: images.rows,
        width: images.cols,
        pixels: images
            .pixels
            .iter()
            .map(|&b| f32::from(b) / 255.0)
            .collect(),
        labels: labels.to_vec(),
    })
}

/// A checked IDX images file, pixels still borrowed from the file's bytes.
struct RawImages<'a> {
    count: usize,
    rows: usize,
    cols: usize,
    pixels: &'a [u8],
}

fn parse_images<'a>(bytes: &'a [u8], path: &Path) -> Result<RawImages<'a>, DataError> {
    check_header(bytes, IMAGES_MAGIC, IMAGES_HEADER, path)?;
    let [count, rows, cols] = [4, 8, 12].map(|at| be_u32(bytes, at));
    let shape = format!("{count} images of {rows}x{cols}");
    if rows == 0 || cols == 0 {
        return Err(DataError::new(
            path,
            format!("images of zero size: header says {shape}"),
        ));
    }
    if count == 0 {
        return Err(DataError::new(path, "holds no images: header count is 0"));
    }
    let pixels = &bytes[IMAGES_HEADER..];
    let expected = u128::from(count) * u128::from(rows) * u128::from(cols);
    check_body_len(pixels.len(), expected, &shape, "pixels", path)?;
    Ok(RawImages {
        count: count as usize,
        rows: rows as usize,
        cols: cols as usize,
        pixels,
    })
}

fn parse_labels<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a [u8], DataError> {
    check_header(bytes, LABELS_MAGIC, LABELS_HEADER, path)?;
    let count = be_u32(bytes, 4);
    let labels = &bytes[LABELS_HEADER..];
    let shape = format!("{count} labels");
    check_body_len(labels.len(), u128::from(count), &shape, "labels", path)?;
    if let Some((i, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= CLASSES)
    {
        return Err(DataError::new(
            path,
            format!(
                "label {label} at index {i} is out of range 0..={}",
                CLASSES - 1
            ),
        ));
    }
    Ok(labels)
}

/// Checks the magic number first, when there are bytes enough for one: a wrong file is a more
/// useful diagnosis than a short one.
fn check_header(bytes: &[u8], magic: u32, header_len: usize, path: &Path) -> Result<(), DataError> {
    if bytes.len() >= 4 {
        let found = be_u32(bytes, 0);
        if found != magic {
            let known = |m| match m {
                IMAGES_MAGIC => " (IDX images)",
                LABELS_MAGIC => " (IDX labels)",
                _ => "",
            };
            return Err(DataError::new(
                path,
                format!(
                    "wrong magic number: found 0x{found:08x}{}, expected 0x{magic:08x}{}",
                    known(found),
                    known(magic)
                ),
            ));
        }
    }
    if bytes.len() < header_len {
        return Err(DataError::new(
            path,
            format!(
                "truncated: {} bytes is shorter than the {header_len}-byte IDX header",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

/// The header's promise (`expected` bytes, described as `shape`) against the bytes present.
/// In u128, as three u32 header fields multiplied can exceed u64.
fn check_body_len(
    present: usize,
    expected: u128,
    shape: &str,
    what: &str,
    path: &Path,
) -> Result<(), DataError> {
    let problem = match (present as u128).cmp(&expected) {
        std::cmp::Ordering::Equal => return Ok(()),
        std::cmp::Ordering::Less => "truncated",
        std::cmp::Ordering::Greater => "trailing data",
    };
    Err(DataError::new(
        path,
        format!(
            "{problem}: header says {shape} but the file holds {present} bytes of {what} \
             (expected {expected})"
        ),
    ))
}

/// The big-endian u32 at `at`; callers have checked the header length.
fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{gzip, idx_images, idx_labels, scaled, write};
    use super::super::load_path;
    use std::fs;
    use tempfile::TempDir;

    const ROWS: usize = 4;
    const COLS: usize = 5;
    const TRAIN_LABELS: [u8; 3] = [3, 1, 4];
    const HELDOUT_LABELS: [u8; 2] = [9, 0];

    /// A full IDX set of 4x5 images: names as `name(stem, kind)`, gzip'd content if `gz`.
    fn idx_dir(name: impl Fn(&str, &str) -> String, gz: bool) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        let pack = |bytes: Vec<u8>| if gz { gzip(&bytes) } else { bytes };
        let files = [
            ("train-images", "idx3-ubyte", idx_images(3, ROWS, COLS)),
            ("train-labels", "idx1-ubyte", idx_labels(&TRAIN_LABELS)),
            ("t10k-images", "idx3-ubyte", idx_images(2, ROWS, COLS)),
            ("t10k-labels", "idx1-ubyte", idx_labels(&HELDOUT_LABELS)),
        ];
        for (stem, kind, bytes) in files {
            write(dir.path(), &name(stem, kind), &pack(bytes));
        }
        dir
    }

    fn hyphen(stem: &str, kind: &str) -> String {
        format!("{stem}-{kind}")
    }

    fn error(dir: &TempDir) -> String {
        load_path(dir.path()).unwrap_err().to_string()
    }

    fn expect_error(dir: &TempDir, suffix: &str) {
        let err = error(dir);
        assert!(err.ends_with(suffix), "{err}\n does not end with\n{suffix}");
    }

    fn assert_decodes(dir: &TempDir) {
        let data = load_path(dir.path()).unwrap();
        assert_eq!(data.name, "mnist-idx");
        assert_eq!(data.source, dir.path().display().to_string());
        assert_eq!(data.classes, 10);
        for part in [&data.train, &data.heldout] {
            assert_eq!((part.channels, part.height, part.width), (1, ROWS, COLS));
            assert_eq!(part.pixels.len(), part.len() * ROWS * COLS);
        }
        assert_eq!(data.train.labels, TRAIN_LABELS);
        assert_eq!(data.heldout.labels, HELDOUT_LABELS);
        // Pixel (row 2, col 3) of image 1.
        assert_eq!(data.train.image(1)[2 * COLS + 3], scaled(1, 0, 2, 3));
        assert_eq!(data.heldout.image(1)[2 * COLS + 3], scaled(1, 0, 2, 3));
        assert_eq!(
            data.train.image(2)[ROWS * COLS - 1],
            scaled(2, 0, ROWS - 1, COLS - 1)
        );
    }

    #[test]
    fn raw_files_with_hyphen_names_decode_exactly() {
        assert_decodes(&idx_dir(hyphen, false));
    }

    #[test]
    fn gzip_files_with_dot_names_decode_exactly() {
        assert_decodes(&idx_dir(|s, k| format!("{s}.{k}.gz"), true));
    }

    #[test]
    fn gzip_is_recognised_without_the_extension_and_raw_with_it() {
        assert_decodes(&idx_dir(hyphen, true));
        assert_decodes(&idx_dir(|s, k| format!("{s}-{k}.gz"), false));
    }

    #[test]
    fn wrong_magic_names_file_found_and_expected() {
        let dir = idx_dir(hyphen, false);
        write(
            dir.path(),
            "train-images-idx3-ubyte",
            &idx_labels(&[1, 2, 3]),
        );
        expect_error(
            &dir,
            "train-images-idx3-ubyte: wrong magic number: found 0x00000801 (IDX labels), \
             expected 0x00000803 (IDX images)",
        );
        write(
            dir.path(),
            "train-images-idx3-ubyte",
            b"<html>not found</html>",
        );
        expect_error(
            &dir,
            "train-images-idx3-ubyte: wrong magic number: found 0x3c68746d, expected 0x00000803 \
             (IDX images)",
        );
    }

    #[test]
    fn truncated_images_say_how_much_is_missing() {
        let dir = idx_dir(hyphen, false);
        let images = idx_images(2, ROWS, COLS);
        write(
            dir.path(),
            "t10k-images-idx3-ubyte",
            &images[..images.len() - 7],
        );
        expect_error(
            &dir,
            "t10k-images-idx3-ubyte: truncated: header says 2 images of 4x5 but the file holds \
             33 bytes of pixels (expected 40)",
        );
        write(dir.path(), "train-images-idx3-ubyte", &images[..10]);
        expect_error(
            &dir,
            "train-images-idx3-ubyte: truncated: 10 bytes is shorter than the 16-byte IDX header",
        );
    }

    #[test]
    fn truncated_labels_and_trailing_data_are_reported() {
        let dir = idx_dir(hyphen, false);
        write(
            dir.path(),
            "train-labels-idx1-ubyte",
            &idx_labels(&TRAIN_LABELS)[..9],
        );
        expect_error(
            &dir,
            "train-labels-idx1-ubyte: truncated: header says 3 labels but the file holds 1 bytes \
             of labels (expected 3)",
        );
        let mut long = idx_images(3, ROWS, COLS);
        long.push(0);
        write(dir.path(), "train-images-idx3-ubyte", &long);
        expect_error(
            &dir,
            "train-images-idx3-ubyte: trailing data: header says 3 images of 4x5 but the file \
             holds 61 bytes of pixels (expected 60)",
        );
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = idx_dir(hyphen, false);
        let labels = write(dir.path(), "train-labels-idx1-ubyte", &idx_labels(&[3, 1]));
        let err = error(&dir);
        assert!(
            err.ends_with(&format!(
                "train-images-idx3-ubyte: holds 3 images but {} holds 2 labels",
                labels.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn label_out_of_range_is_reported() {
        let dir = idx_dir(hyphen, false);
        write(dir.path(), "t10k-labels-idx1-ubyte", &idx_labels(&[9, 10]));
        expect_error(
            &dir,
            "t10k-labels-idx1-ubyte: label 10 at index 1 is out of range 0..=9",
        );
    }

    #[test]
    fn zero_size_and_zero_count_are_reported() {
        let dir = idx_dir(hyphen, false);
        write(
            dir.path(),
            "train-images-idx3-ubyte",
            &idx_images(3, 0, COLS),
        );
        expect_error(
            &dir,
            "train-images-idx3-ubyte: images of zero size: header says 3 images of 0x5",
        );
        write(
            dir.path(),
            "train-images-idx3-ubyte",
            &idx_images(0, ROWS, COLS),
        );
        expect_error(
            &dir,
            "train-images-idx3-ubyte: holds no images: header count is 0",
        );
    }

    #[test]
    fn corrupt_gzip_is_reported() {
        let dir = idx_dir(|s, k| format!("{s}-{k}.gz"), true);
        let mut bytes = gzip(&idx_images(3, ROWS, COLS));
        let middle = bytes.len() / 2;
        bytes[middle..].iter_mut().for_each(|b| *b ^= 0x5a);
        write(dir.path(), "train-images-idx3-ubyte.gz", &bytes);
        let err = error(&dir);
        assert!(
            err.contains("train-images-idx3-ubyte.gz: corrupt gzip stream: "),
            "{err}"
        );
    }

    #[test]
    fn unreadable_file_includes_the_io_error() {
        let dir = idx_dir(hyphen, false);
        let labels = dir.path().join("train-labels-idx1-ubyte");
        fs::remove_file(&labels).unwrap();
        fs::create_dir(&labels).unwrap();
        let err = error(&dir);
        assert!(
            err.contains("train-labels-idx1-ubyte: cannot read: "),
            "{err}"
        );
        assert!(err.to_lowercase().contains("is a directory"), "{err}");
    }

    #[test]
    fn missing_companion_file_is_named() {
        let dir = idx_dir(hyphen, false);
        fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
        let err = error(&dir);
        assert!(
            err.contains("t10k-labels-idx1-ubyte: missing (also looked for t10k-labels.idx1-ubyte"),
            "{err}"
        );
    }

    #[test]
    fn heldout_shape_must_match_train() {
        let dir = idx_dir(hyphen, false);
        write(
            dir.path(),
            "t10k-images-idx3-ubyte",
            &idx_images(2, COLS, ROWS),
        );
        let err = error(&dir);
        assert!(err.contains("t10k-images-idx3-ubyte: images are 5x4 but the training images ("));
        assert!(err.ends_with("train-images-idx3-ubyte) are 4x5"), "{err}");
    }
}
