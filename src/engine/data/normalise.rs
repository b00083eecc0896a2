//! Per-channel standardisation with the training split's statistics.

use super::{DataSet, Images};

impl DataSet {
    /// Per-channel standardisation with the TRAIN split's mean and population std, applied to
    /// both splits; records them in `channel_mean` / `channel_std`. Not idempotent: a second call
    /// standardises again (with mean 0, std 1, so the pixels stay put up to rounding).
    ///
    /// A constant channel has std 0; it is recorded and divided by as 1 so it becomes 0, not NaN.
    pub fn standardise(&mut self) {
        let (mean, std) = channel_stats(&self.train);
        apply(&mut self.train, &mean, &std);
        apply(&mut self.heldout, &mean, &std);
        self.channel_mean = mean;
        self.channel_std = std;
    }
}

/// Mean and population std of each channel over every pixel of every image, summed in f64 in
/// two passes: one pass of sum-of-squares loses too much precision over millions of pixels.
fn channel_stats(images: &Images) -> (Vec<f32>, Vec<f32>) {
    let channels = images.channels;
    let plane = images.height * images.width;
    let count = (images.len() * plane) as f64;
    if channels == 0 || plane == 0 || count == 0.0 {
        return (vec![0.0; channels], vec![1.0; channels]);
    }

    let mut sums = vec![0.0f64; channels];
    for (k, chunk) in images.pixels.chunks_exact(plane).enumerate() {
        sums[k % channels] += chunk.iter().map(|&x| f64::from(x)).sum::<f64>();
    }
    let mean: Vec<f64> = sums.iter().map(|s| s / count).collect();

    let mut squares = vec![0.0f64; channels];
    for (k, chunk) in images.pixels.chunks_exact(plane).enumerate() {
        let m = mean[k % channels];
        squares[k % channels] += chunk
            .iter()
            .map(|&x| (f64::from(x) - m).powi(2))
            .sum::<f64>();
    }
    let std = squares
        .iter()
        .map(|sq| match (sq / count).sqrt() as f32 {
            s if s > 0.0 => s,
            _ => 1.0,
        })
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), std)
}

fn apply(images: &mut Images, mean: &[f32], std: &[f32]) {
    let channels = images.channels;
    let plane = images.height * images.width;
    if channels == 0 || plane == 0 {
        return;
    }
    for (k, chunk) in images.pixels.chunks_exact_mut(plane).enumerate() {
        let (m, s) = (mean[k % channels], std[k % channels]);
        for x in chunk {
            *x = (*x - m) / s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::embedded_digits;
    use super::*;

    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() < 1e-4,
            "{what}: {actual} != {expected}"
        );
    }

    /// Per-channel (mean, population std) of already-standardised images, computed afresh.
    fn measured(images: &Images) -> Vec<(f64, f64)> {
        let plane = images.height * images.width;
        (0..images.channels)
            .map(|c| {
                let values: Vec<f64> = (0..images.len())
                    .flat_map(|i| &images.image(i)[c * plane..(c + 1) * plane])
                    .map(|&x| f64::from(x))
                    .collect();
                let n = values.len() as f64;
                let mean = values.iter().sum::<f64>() / n;
                let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                (mean, var.sqrt())
            })
            .collect()
    }

    #[test]
    fn digits_train_split_becomes_mean_0_std_1() {
        let raw = embedded_digits().unwrap();
        let mut data = raw.clone();
        data.standardise();

        assert_eq!(data.channel_mean.len(), 1);
        assert_eq!(data.channel_std.len(), 1);
        let (mean, std) = measured(&data.train)[0];
        assert_close(mean, 0.0, "train mean");
        assert_close(std, 1.0, "train std");

        // Held-out images use the train statistics, not their own.
        let (m, s) = (data.channel_mean[0], data.channel_std[0]);
        for (got, was) in data.heldout.pixels.iter().zip(&raw.heldout.pixels) {
            assert_eq!(*got, (was - m) / s);
        }
    }

    #[test]
    fn channels_are_standardised_separately_and_constant_ones_become_zero() {
        // Two 1x2 images, three channels: c0 spans 0..1, c1 is shifted and scaled, c2 is constant.
        let mut data = DataSet::unstandardised(
            "test",
            "test".into(),
            Images {
                channels: 3,
                height: 1,
                width: 2,
                pixels: vec![0.0, 0.25, 2.0, 2.5, 0.5, 0.5, 0.75, 1.0, 3.5, 4.0, 0.5, 0.5],
                labels: vec![0, 1],
            },
            Images {
                channels: 3,
                height: 1,
                width: 2,
                pixels: vec![0.5; 6],
                labels: vec![2],
            },
        );
        data.standardise();

        assert_close(f64::from(data.channel_mean[0]), 0.5, "c0 mean");
        assert_close(f64::from(data.channel_mean[1]), 3.0, "c1 mean");
        assert_close(f64::from(data.channel_mean[2]), 0.5, "c2 mean");
        assert_eq!(data.channel_std[2], 1.0, "constant channel divides by 1");
        for (c, (mean, std)) in measured(&data.train).into_iter().enumerate() {
            assert_close(mean, 0.0, &format!("c{c} mean"));
            assert_close(std, if c == 2 { 0.0 } else { 1.0 }, &format!("c{c} std"));
        }
        assert!(data.heldout.pixels.iter().all(|x| x.is_finite()));
    }
}
