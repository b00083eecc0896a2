//! PreciseBN (BN-METRICS §3-4): population statistics of every BN input over shuffled training
//! images, the current data order's batches compared against them, and the network normalising
//! with them.
//!
//! The population is measured the way training sees it: each pass normalises by batch statistics
//! upstream (fvcore's `update_bn_stats`), and the per-batch moments are pooled momentum-free.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::batches::{gather_channel_major, Batches};
use super::data::Images;
use super::forward::{BnInputMoments, PassConfig};
use super::host::from_host;
use super::model::Net;
use crate::metrics::correlated::{n_eff, population_stats};
use crate::metrics::moments::moments_f64;
use crate::metrics::moments::unbiased_from_biased;
use crate::protocol::PopulationLayer;

/// One BN input's population statistics.
#[derive(Clone, Debug)]
pub struct LayerPopulation {
    pub mean: Vec<f64>,
    /// Pooled (biased) variance: mean_B[σ²_B + μ_B²] - (mean_B μ_B)².
    pub var: Vec<f64>,
    /// Values per channel behind the estimate: samples·H·W.
    pub values: usize,
}

/// Every BN input's population statistics over `samples` shuffled training images.
#[derive(Clone, Debug)]
pub struct Population {
    pub samples: usize,
    pub layers: Vec<LayerPopulation>,
}

/// `samples` training images (at most the training set, whole batches only) in an order drawn
/// from `seed`, cut into batches of `batch_size`.
pub fn shuffled_batches(
    len: usize,
    samples: usize,
    batch_size: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let whole = samples.min(len) / batch_size.max(1) * batch_size;
    order[..whole]
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Per batch, every block's BN-input moments with batch statistics throughout.
pub fn moments_of_batches(
    net: &Net,
    images: &Images,
    batches: impl Iterator<Item = (Vec<f32>, usize)>,
    pass: &mut PassConfig,
) -> Vec<Vec<BnInputMoments>> {
    let dev = net.device();
    batches
        .map(|(pixels, n)| {
            let shape = (net.in_channels(), n, images.height, images.width);
            net.batch_moments(from_host(&dev, &pixels, shape), pass)
        })
        .collect()
}

/// The pixels of `count` batches training will see next, in the current order (from a clone, so
/// training itself is not moved on).
pub fn upcoming_batches<'a>(
    batches: &Batches,
    images: &'a Images,
    count: usize,
) -> impl Iterator<Item = (Vec<f32>, usize)> + 'a {
    let mut ahead = batches.clone();
    (0..count).map(move |_| {
        let batch = ahead.next(images);
        let n = batch.labels.len();
        (batch.pixels, n)
    })
}

/// The shuffled batches' pixels.
pub fn gathered<'a>(
    images: &'a Images,
    batches: &'a [Vec<usize>],
) -> impl Iterator<Item = (Vec<f32>, usize)> + 'a {
    batches.iter().map(|indices| {
        let (pixels, labels) = gather_channel_major(images, indices);
        (pixels, labels.len())
    })
}

/// Pools per-batch moments into population statistics (fvcore's estimator), per block.
pub fn pool(per_batch: &[Vec<BnInputMoments>], samples: usize) -> Population {
    let blocks = per_batch.first().map_or(0, Vec::len);
    let layers = (0..blocks)
        .map(|b| {
            let channels = per_batch[0][b].channels.len();
            let (mut mean, mut var) = (Vec::with_capacity(channels), Vec::with_capacity(channels));
            for c in 0..channels {
                let means: Vec<f64> = per_batch.iter().map(|m| m[b].channels[c].mean).collect();
                let vars: Vec<f64> = per_batch.iter().map(|m| m[b].channels[c].var).collect();
                let pop = population_stats(&means, &vars);
                mean.push(pop.mean);
                var.push(pop.var);
            }
            LayerPopulation {
                mean,
                var,
                values: per_batch.iter().map(|m| m[b].n).sum(),
            }
        })
        .collect();
    Population { samples, layers }
}

/// Per block: the current order's batches against the population. Channel c's measured ratio is
/// mean_t σ²_B / σ²_pop and its n_eff = σ²_pop / Var_t(μ_B), so its predicted ratio is
/// 1 - 1/n_eff; the layer reports channel means, and n_eff as the harmonic mean that makes
/// "predicted = 1 - 1/n_eff" hold for the layer too. Channels without variance are left out.
pub fn compare(
    population: &Population,
    order: &[Vec<BnInputMoments>],
    running_var: &[Vec<f32>],
) -> Vec<PopulationLayer> {
    population
        .layers
        .iter()
        .enumerate()
        .map(|(b, pop)| {
            let (mut ratio, mut inv_n_eff, mut running, mut counted) = (0.0, 0.0, 0.0, 0usize);
            // A channel without variance (or a NaN one) has no ratio to show.
            for (c, &pop_var) in pop.var.iter().enumerate().filter(|(_, v)| **v > 0.0) {
                let means: Vec<f64> = order.iter().map(|m| m[b].channels[c].mean).collect();
                let vars: Vec<f64> = order.iter().map(|m| m[b].channels[c].var).collect();
                ratio += moments_f64(&vars).mean / pop_var;
                inv_n_eff += 1.0 / n_eff(pop_var, moments_f64(&means).var);
                running += running_var
                    .get(b)
                    .and_then(|v| v.get(c))
                    .map_or(f64::NAN, |&v| f64::from(v) / pop_var);
                counted += 1;
            }
            let k = counted as f64;
            PopulationLayer {
                mean: pop.mean.iter().map(|&m| m as f32).collect(),
                var: pop.var.iter().map(|&v| v as f32).collect(),
                var_ratio: ratio / k,
                n_eff: k / inv_n_eff,
                predicted_ratio: 1.0 - inv_n_eff / k,
                running_var_ratio: running / k,
            }
        })
        .collect()
}

/// Writes the population statistics into the running statistics of `layers` (the variance
/// Bessel-corrected, as running variances are stored).
pub fn apply(net: &mut Net, population: &Population, layers: std::ops::Range<usize>) {
    let blocks = &mut net.blocks;
    for i in layers {
        let (Some(block), Some(pop)) = (blocks.get_mut(i), population.layers.get(i)) else {
            continue;
        };
        let mean: Vec<f32> = pop.mean.iter().map(|&m| m as f32).collect();
        let var: Vec<f32> = pop
            .var
            .iter()
            .map(|&v| unbiased_from_biased(v, pop.values) as f32)
            .collect();
        block.set_running_stats(&mean, &var);
    }
}

/// A copy of `net` whose BN layers normalise by the population statistics in eval mode.
pub fn precise_net(net: &Net, population: &Population) -> Net {
    let mut precise = net.clone();
    apply(&mut precise, population, 0..population.layers.len());
    precise
}
