//! The training forward of every conv → BN → ReLU block as one dfdx op with its own backward.
//!
//! Chained as separate ops, each conv and BN output went into a dfdx tensor (a zero fill and a
//! copy) and back out to the host (another copy), and each got a zero-filled gradient. Here the
//! activations stay in host buffers from the input to the last block's output, and the backward
//! walks the blocks in reverse. The kernels are the separate ops' own ([`conv_forward`],
//! [`train_host`]/[`eval_host`]), so are the bits. The input is the data: no gradient flows to it.
use std::sync::Arc;

use dfdx::prelude::*;
use dfdx::tensor::{PutTape, SplitTape};
use rayon::prelude::*;

use super::bn_kernel::{add_f64, eval_host, train_host, Backward, Observe};
use super::conv::{add_to, conv_forward, ConvSaved};
use super::forward::{
    geometry, Activations, BlockObservation, BnActivations, Observer, PassConfig,
};
use super::host::{from_host, to_host, to_pooled, PooledBuffer};
use super::model::ConvBn;
use super::parallel::MIN_TASK_ELEMENTS;
use crate::protocol::BnMode;

type Taped = OwnedTape<f32, Cpu>;

/// What one block's backward needs: its conv's and BN's saved state and its parameters' ghosts
/// (`W` the weight's, `P` a per-channel parameter's: dfdx does not export the ghost type).
struct SavedBlock<W, P> {
    conv: ConvSaved,
    bn: Backward,
    weight: W,
    bias: Option<P>,
    gamma: P,
    beta: P,
}

/// Runs `blocks` in their `modes` on `x` (C, N, H, W): train-mode blocks update their running
/// statistics. With an `observer`, one [`BlockObservation`] per block is appended.
pub fn train_blocks(
    x: Activations<Taped>,
    blocks: &mut [ConvBn],
    modes: &[BnMode],
    pass: &mut PassConfig,
    mut observer: Option<&mut Observer>,
) -> Activations<Taped> {
    assert_eq!(modes.len(), blocks.len(), "one mode per block");
    let (x, mut tape) = x.split_tape();
    let pool = pass.cache.pool().clone();
    let data = to_pooled(&x, &pool);
    let mut shape = *x.shape();
    let mut saved: Vec<SavedBlock<_, _>> = Vec::with_capacity(blocks.len());
    for (block, &mode) in blocks.iter_mut().zip(modes) {
        let g = geometry(shape, &block.spec);
        let bias = pass.conv_bias.then(|| to_host(&block.bias));
        let input = saved.last().map_or(&data[..], |s| s.bn.output());
        let filters = Arc::new(to_host(&block.weight));
        let (h, conv) = conv_forward(input, Arc::clone(&filters), bias.as_deref(), g, &pool);
        shape = (block.spec.channels, g.batch, g.out_height(), g.out_width());
        let bn = normalize(block, mode, h, &filters, observer.as_deref_mut());
        saved.push(SavedBlock {
            conv,
            bn,
            weight: block.weight.ghost(),
            bias: pass.conv_bias.then(|| block.bias.ghost()),
            gamma: block.bn.scale.ghost(),
            beta: block.bn.bias.ghost(),
        });
    }
    drop(data);
    let Some(last) = saved.last() else {
        return x.put_tape(tape);
    };
    let out: Activations<NoneTape> = from_host(x.device(), last.bn.output(), shape);
    let out_ghost = out.ghost();
    tape.add_backward_op(move |grads| {
        // The output's gradient is moved out for the pass (the parameters' gradients are
        // borrowed from `grads` meanwhile) and put back unchanged.
        let dy = std::mem::take(&mut **grads.get_or_alloc_mut(&out_ghost)?);
        let mut upstream: Option<PooledBuffer> = None;
        for (i, block) in saved.into_iter().enumerate().rev() {
            let dy_block = upstream.as_deref().unwrap_or(&dy);
            let mut dh = pool.take(dy_block.len());
            let (d_gamma, d_beta) = block.bn.input_grads(dy_block, &mut dh, false);
            // The first block's input is the data.
            let mut dx = (i > 0).then(|| zeroed(pool.take(block.conv.input_len())));
            let (dw, db) = block
                .conv
                .backward(&dh, block.bias.is_some(), dx.as_deref_mut());
            add_to(grads.get_or_alloc_mut(&block.weight)?, &dw);
            if let Some(bias) = &block.bias {
                add_to(grads.get_or_alloc_mut(bias)?, &db);
            }
            add_f64(grads.get_or_alloc_mut(&block.gamma)?, &d_gamma);
            add_f64(grads.get_or_alloc_mut(&block.beta)?, &d_beta);
            upstream = dx;
        }
        **grads.get_or_alloc_mut(&out_ghost)? = dy;
        Ok(())
    });
    out.put_tape(tape)
}

/// One block's BN (+ ReLU) on its conv output `h`, in `mode`, with what the observer wants;
/// `filters` are the ones the conv ran with.
fn normalize(
    block: &mut ConvBn,
    mode: BnMode,
    h: PooledBuffer,
    filters: &Arc<Vec<f32>>,
    observer: Option<&mut Observer>,
) -> Backward {
    let observe = Observe {
        measure: observer.is_some(),
        keep_pre_relu: observer.as_ref().is_some_and(|o| o.keep_activations),
    };
    let n = h.len() / block.bn.channels();
    // Copied before the BN runs: its train-mode forward updates the running statistics.
    let before = observe.measure.then(|| {
        (
            observe.keep_pre_relu.then(|| h.to_vec()),
            to_host(&block.bn.running_mean),
            to_host(&block.bn.running_var),
        )
    });
    let fused = match mode {
        BnMode::Train => train_host(h, &mut block.bn, true, observe),
        BnMode::Eval => eval_host(h, &block.bn, true, observe),
    };
    if let (Some(observer), Some((input, running_mean_pre, running_var_pre)), Some(measured)) =
        (observer, before, fused.measured)
    {
        observer.blocks.push(BlockObservation {
            n,
            measured,
            running_mean_pre,
            running_var_pre,
            running_mean_post: to_host(&block.bn.running_mean),
            running_var_post: to_host(&block.bn.running_var),
            activations: input
                .zip(fused.pre_relu)
                .map(|(input, output)| BnActivations { input, output }),
            filters: Arc::clone(filters),
        });
    }
    fused.backward
}

/// `buffer` set to zeros, in parallel (col2im adds into it).
fn zeroed(mut buffer: PooledBuffer) -> PooledBuffer {
    buffer
        .par_chunks_mut(MIN_TASK_ELEMENTS)
        .for_each(|c| c.fill(0.0));
    buffer
}

#[cfg(test)]
mod tests;
