//! Held-out evaluation with BN normalising by batch statistics or by running statistics.

use super::host::{from_host, to_host};

use super::batches::gather_channel_major;
use super::data::Images;
use super::forward::{InferenceStats, PassConfig};
use super::model::{Net, CLASSES};
use crate::protocol::EvalScore;

/// The held-out images of each evaluation, pre-arranged in channel-major batches.
pub struct HeldOut {
    batches: Vec<(Vec<f32>, Vec<u8>)>,
    height: usize,
    width: usize,
    samples: usize,
}

impl HeldOut {
    /// Each batch's channel-major pixels and its number of images.
    pub fn inputs(&self) -> impl Iterator<Item = (&[f32], usize)> {
        self.batches
            .iter()
            .map(|(pixels, labels)| (pixels.as_slice(), labels.len()))
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// The first `limit` held-out images, in near-equal batches of at most `batch_size`, so each
    /// batch-statistics batch is about as large as a training batch.
    pub fn new(images: &Images, limit: usize, batch_size: usize) -> Self {
        let samples = images.len().min(limit);
        let count = samples.div_ceil(batch_size.max(1)).max(1);
        let batches = (0..count)
            .map(|b| {
                let indices: Vec<usize> =
                    (b * samples / count..(b + 1) * samples / count).collect();
                gather_channel_major(images, &indices)
            })
            .filter(|(_, labels)| !labels.is_empty())
            .collect();
        HeldOut {
            batches,
            height: images.height,
            width: images.width,
            samples,
        }
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn evaluate(&self, net: &Net, stats: InferenceStats, pass: &mut PassConfig) -> EvalScore {
        let dev = net.device();
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for (pixels, labels) in &self.batches {
            let shape = (net.in_channels(), labels.len(), self.height, self.width);
            let logits = net.forward_infer(from_host(&dev, pixels, shape), stats, pass);
            let (loss, hits) = cross_entropy_and_hits(&to_host(&logits), labels);
            loss_sum += loss * labels.len() as f64;
            correct += hits;
        }
        let n = self.samples.max(1) as f64;
        EvalScore {
            loss: (loss_sum / n) as f32,
            accuracy: (correct as f64 / n) as f32,
        }
    }
}

/// Mean cross-entropy (natural log) and the number of correct argmax predictions, from row-major
/// (N, CLASSES) logits. Non-finite logits give a non-finite loss and count as wrong.
pub fn cross_entropy_and_hits(logits: &[f32], labels: &[u8]) -> (f64, usize) {
    let mut loss = 0.0f64;
    let mut hits = 0;
    for (row, &label) in logits.chunks_exact(CLASSES).zip(labels) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
        let log_sum = row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        loss += log_sum - row[label as usize] as f64;
        let best = row
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 {
                    (i, x)
                } else {
                    best
                }
            });
        hits += usize::from(best.0 == label as usize && best.1.is_finite());
    }
    (loss / labels.len().max(1) as f64, hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_classes() {
        let logits = vec![0.5f32; CLASSES * 2];
        let (loss, _) = cross_entropy_and_hits(&logits, &[3, 7]);
        assert!((loss - (CLASSES as f64).ln()).abs() < 1e-9);
    }

    #[test]
    fn hits_count_argmax_matches() {
        let mut logits = vec![0.0f32; CLASSES * 2];
        logits[4] = 5.0; // row 0 predicts 4
        logits[CLASSES + 1] = 5.0; // row 1 predicts 1
        let (loss, hits) = cross_entropy_and_hits(&logits, &[4, 2]);
        assert_eq!(hits, 1);
        // Row 0: -log softmax = ln(e^5 + 9) - 5; row 1: ln(e^5 + 9) - 0.
        let expected = ((5f64.exp() + 9.0).ln() - 5.0 + (5f64.exp() + 9.0).ln()) / 2.0;
        assert!((loss - expected).abs() < 1e-9);
    }

    #[test]
    fn nan_logits_are_a_nan_loss_and_a_miss() {
        let logits = vec![f32::NAN; CLASSES];
        let (loss, hits) = cross_entropy_and_hits(&logits, &[0]);
        assert!(loss.is_nan());
        assert_eq!(hits, 0);
    }
}
