//! Reading a whole file, inflating it when it is gzip'd (recognised by content, not by name).

use std::fs;
use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::DataError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Cap on the up-front reservation, so a damaged gzip trailer cannot ask for gigabytes.
const MAX_PREALLOC: usize = 256 << 20;

/// The file's bytes, decompressed if they are a gzip stream.
pub(super) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = fs::read(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
    maybe_gunzip(raw, path)
}

/// `raw` itself, or its decompression if it starts with the gzip magic bytes; `origin` names the
/// source in errors.
pub(super) fn maybe_gunzip(raw: Vec<u8>, origin: &Path) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(gzip_size_hint(&raw).min(MAX_PREALLOC));
    // MultiGz: `cat a.gz b.gz` is a valid gzip file and must decode in full.
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| DataError::new(origin, format!("corrupt gzip stream: {e}")))?;
    Ok(out)
}

/// The gzip trailer's ISIZE: the uncompressed size mod 2^32, exact for the files we read.
fn gzip_size_hint(raw: &[u8]) -> usize {
    raw.len()
        .checked_sub(4)
        .and_then(|start| <[u8; 4]>::try_from(&raw[start..]).ok())
        .map_or(0, |isize| u32::from_le_bytes(isize) as usize)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::gzip;
    use super::*;

    #[test]
    fn plain_bytes_pass_through() {
        let bytes = vec![1, 2, 3];
        assert_eq!(maybe_gunzip(bytes.clone(), Path::new("x")).unwrap(), bytes);
    }

    #[test]
    fn gzip_is_detected_by_content() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(maybe_gunzip(gzip(&bytes), Path::new("x")).unwrap(), bytes);
    }

    #[test]
    fn concatenated_gzip_members_decode_in_full() {
        let mut both = gzip(b"abc");
        both.extend(gzip(b"def"));
        assert_eq!(maybe_gunzip(both, Path::new("x")).unwrap(), b"abcdef");
    }

    #[test]
    fn corrupt_gzip_names_origin() {
        let mut bytes = gzip(&[7; 1000]);
        bytes.truncate(bytes.len() / 2);
        let err = maybe_gunzip(bytes, Path::new("dir/f.gz")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("dir/f.gz: corrupt gzip stream: "),
            "{err}"
        );
    }
}
