//! Checkpoints of a training run, kept in memory for the session: everything the next step
//! depends on, so training after a restore repeats training after the save bit for bit.
//!
//! A clone of the network shares its buffers until either side writes (dfdx copies a shared
//! buffer before writing to it), so taking one costs little until training moves on. The
//! optimizer state is keyed by the parameters' tensor ids, which a clone keeps: restoring the
//! network and the optimizer together keeps them matched.
use super::batches::Batches;
use super::model::Net;
use super::optimizer::NetOptimizer;
use crate::protocol::BnMode;

/// The training state after step `step`.
#[derive(Clone)]
pub struct Checkpoint {
    pub step: u64,
    /// Weights, γ and β, running statistics, and each layer's BN momentum.
    pub net: Net,
    /// SGD's momentum buffers or Adam's moments and step counter, and the learning rate.
    pub opt: NetOptimizer,
    /// The data order, the epoch's permutation, the position in it and the shuffling RNG.
    pub batches: Batches,
    /// Each layer's TRAIN/EVAL mode.
    pub modes: Vec<BnMode>,
    pub lr: f32,
}
