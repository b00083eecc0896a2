//! Small on-disk fixtures for the loader tests.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

/// A distinct byte for every (image, channel, row, col), so a mis-indexed decode shows.
pub fn pixel(image: usize, channel: usize, row: usize, col: usize) -> u8 {
    ((image * 97 + channel * 41 + row * 13 + col * 3 + 1) % 256) as u8
}

/// An IDX images file of `count` images of `rows` x `cols`, pixels from `pixel` (channel 0).
pub fn idx_images(count: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut bytes = idx_header(0x0803, &[count, rows, cols]);
    for i in 0..count {
        for r in 0..rows {
            bytes.extend((0..cols).map(|c| pixel(i, 0, r, c)));
        }
    }
    bytes
}

pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes = idx_header(0x0801, &[labels.len()]);
    bytes.extend_from_slice(labels);
    bytes
}

fn idx_header(magic: u32, dims: &[usize]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for &d in dims {
        bytes.extend((d as u32).to_be_bytes());
    }
    bytes
}

/// CIFAR-10 records, one per label; image `first + k` gets pixels `pixel(first + k, ..)`.
pub fn cifar_records(first: usize, labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (k, &label) in labels.iter().enumerate() {
        bytes.push(label);
        for channel in 0..3 {
            for row in 0..32 {
                bytes.extend((0..32).map(|col| pixel(first + k, channel, row, col)));
            }
        }
    }
    bytes
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// `pixel()` as the loaders present it: scaled to [0, 1].
pub fn scaled(image: usize, channel: usize, row: usize, col: usize) -> f32 {
    f32::from(pixel(image, channel, row, col)) / 255.0
}
