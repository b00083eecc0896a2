//! Copying tensors to the host fast. dfdx's `as_vec` walks every element through a strided index
//! (about 10 ns each); the metrics read every activation every step, so they copy the buffer.
use std::sync::{Arc, Mutex};

use dfdx::prelude::*;

/// The tensor's elements in logical (row-major) order.
pub fn to_host<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Vec<f32> {
    // `contiguous` is free for fresh op outputs and parameters and copies anything strided
    // (broadcast or permuted) into row-major order, so the buffer copy below is then exact.
    let t = t.retaped::<NoneTape>().contiguous();
    let mut out = vec![0.0; t.shape().num_elements()];
    t.copy_into(&mut out);
    out
}

thread_local! {
    static SHARED: BufferPool = BufferPool::default();
}

/// This thread's pool for host copies of activations: BatchNorm's, kept from step to step.
pub fn shared_pool() -> BufferPool {
    SHARED.with(BufferPool::clone)
}

/// [`to_host`] into a buffer lent by `pool`.
pub fn to_pooled<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>, pool: &BufferPool) -> PooledBuffer {
    let t = t.retaped::<NoneTape>().contiguous();
    let mut out = pool.take(t.shape().num_elements());
    t.copy_into(&mut out);
    out
}

/// A tensor holding `data`, in a buffer from the device's allocation cache. The training thread
/// enables that cache; a buffer that dfdx did not allocate (`tensor_from_vec`) would still be
/// handed to the cache when the tensor drops, and the cache would grow by one batch every step.
pub fn from_host<S: Shape>(dev: &Cpu, data: &[f32], shape: S) -> Tensor<S, f32, Cpu> {
    let mut t = dev.zeros_like(&shape);
    t.copy_from(data);
    t
}

/// Large f32 buffers kept across steps: an op's host copies (the convolution's im2col matrix,
/// BatchNorm's input) live from a forward pass until its backward pass (or until the tape is
/// dropped), then return here for the next step, with their pages already faulted in.
#[derive(Clone, Default)]
pub struct BufferPool {
    free: Arc<Mutex<Vec<Vec<f32>>>>,
}

impl BufferPool {
    /// A buffer of exactly `len` elements with unspecified contents: the smallest free one that
    /// is large enough, else the largest grown (so each layer's size settles on its own buffer).
    pub fn take(&self, len: usize) -> PooledBuffer {
        let reused = self.free.lock().ok().and_then(|mut free| {
            let pick = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= len)
                .min_by_key(|(_, b)| b.len())
                .or_else(|| free.iter().enumerate().max_by_key(|(_, b)| b.len()))
                .map(|(i, _)| i);
            pick.map(|i| free.swap_remove(i))
        });
        let mut data = reused.unwrap_or_default();
        // Only growth writes: a buffer keeps every element it ever held, so one lent out
        // shorter than before and then longer again is not zeroed again.
        if data.len() < len {
            data.resize(len, 0.0);
        }
        PooledBuffer {
            data,
            len,
            pool: self.clone(),
        }
    }

    #[cfg(test)]
    pub fn free_buffers(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// A buffer lent by a [`BufferPool`]; it goes back when dropped. It is the first `len`
/// elements of `data`.
pub struct PooledBuffer {
    data: Vec<f32>,
    len: usize,
    pool: BufferPool,
}

impl std::ops::Deref for PooledBuffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.data[..self.len]
    }
}

impl std::ops::DerefMut for PooledBuffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data[..self.len]
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.free.lock() {
            free.push(std::mem::take(&mut self.data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_as_vec_for_contiguous_permuted_and_broadcast_tensors() {
        let dev = Cpu::seed_from_u64(0);
        let t: Tensor<Rank3<2, 3, 4>, f32, Cpu> = dev.sample_normal();
        assert_eq!(to_host(&t), t.as_vec());
        let p = t.clone().permute::<Rank3<4, 2, 3>, _>();
        assert_eq!(to_host(&p), p.as_vec());
        let b: Tensor<Rank2<3, 5>, f32, Cpu> = dev.sample_normal::<Rank1<3>>().broadcast();
        assert_eq!(to_host(&b), b.as_vec());
        let taped: Tensor<Rank3<2, 3, 4>, f32, Cpu, OwnedTape<f32, Cpu>> = t.leaky_trace();
        assert_eq!(
            to_host(&taped),
            t.as_vec(),
            "a taped tensor copies the same"
        );
    }

    #[test]
    fn pooled_buffers_return_and_are_reused() {
        let pool = BufferPool::default();
        let first = pool.take(100);
        let ptr = first.as_ptr();
        drop(first);
        assert_eq!(pool.free_buffers(), 1);
        let again = pool.take(60);
        assert_eq!((again.len(), again.as_ptr()), (60, ptr));
        assert_eq!(pool.free_buffers(), 0);
    }

    /// Lent shorter and then longer again, a buffer is not written over: the reuse costs no pass.
    #[test]
    fn a_buffer_lent_shorter_then_longer_is_not_refilled() {
        let pool = BufferPool::default();
        pool.take(100).fill(1.0);
        drop(pool.take(60));
        let again = pool.take(100);
        assert!(again.iter().all(|&v| v == 1.0), "{:?}", &again[55..65]);
    }
}
