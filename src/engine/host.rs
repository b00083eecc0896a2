//! Copying tensors to the host fast. dfdx's `as_vec` walks every element through a strided index
//! (about 10 ns each); the metrics read every activation every step, so they copy the buffer.
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

/// A tensor holding `data`, in a buffer from the device's allocation cache. The training thread
/// enables that cache; a buffer that dfdx did not allocate (`tensor_from_vec`) would still be
/// handed to the cache when the tensor drops, and the cache would grow by one batch every step.
pub fn from_host<S: Shape>(dev: &Cpu, data: &[f32], shape: S) -> Tensor<S, f32, Cpu> {
    let mut t = dev.zeros_like(&shape);
    t.copy_from(data);
    t
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
}
