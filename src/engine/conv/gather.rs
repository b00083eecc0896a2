//! The previous convolution, kept as the reference the fast op is tested against: im2col by
//! dfdx's `gather` on the flattened input (a zero appended for the padding) and dfdx's `matmul`,
//! whose own backward passes give the gradients.

use dfdx::prelude::*;

use super::{ConvGeometry, ConvOutput};

/// im2col gather indices, row-major over (patch element (ci, ky, kx), position (n, oy, ox)).
/// Each is a flat index into the (C, N, H, W) input, or `input_len()` (the appended zero) where
/// the kernel overlaps the padding.
fn im2col_indices(g: &ConvGeometry) -> Vec<usize> {
    let (oh, ow) = (g.out_height(), g.out_width());
    let zero = g.input_len();
    let mut idx = Vec::with_capacity(g.patch_len() * g.positions());
    for ci in 0..g.in_channels {
        for ky in 0..g.kernel {
            for kx in 0..g.kernel {
                for n in 0..g.batch {
                    let image = (ci * g.batch + n) * g.height * g.width;
                    for oy in 0..oh {
                        let y = (oy * g.stride + ky) as isize - g.padding as isize;
                        for ox in 0..ow {
                            let x = (ox * g.stride + kx) as isize - g.padding as isize;
                            let inside = (0..g.height as isize).contains(&y)
                                && (0..g.width as isize).contains(&x);
                            idx.push(if inside {
                                image + y as usize * g.width + x as usize
                            } else {
                                zero
                            });
                        }
                    }
                }
            }
        }
    }
    idx
}

/// Convolves channel-major `x` with `weight` (C_out, C_in, K, K) from dfdx ops only.
pub fn conv2d_gather<S, W, T>(
    x: Tensor<S, f32, Cpu, T>,
    weight: &Tensor<W, f32, Cpu>,
    geometry: ConvGeometry,
) -> ConvOutput<T>
where
    S: Shape,
    W: Shape<Concrete = [usize; 4]>,
    T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
{
    let out_channels = weight.shape().concrete()[0];
    let dev = x.device().clone();
    let idx = im2col_indices(&geometry);
    let idx_len = idx.len();
    let flat = x.reshape_like(&(geometry.input_len(),));
    let padded = (flat, dev.zeros_like(&(1usize,))).concat_along(Axis::<0>);
    let columns = padded
        .gather(dev.tensor_from_vec(idx, (idx_len,)))
        .reshape_like(&(geometry.patch_len(), geometry.positions()));
    let filters = weight
        .retaped::<T>()
        .reshape_like(&(out_channels, geometry.patch_len()));
    filters.matmul(columns).reshape_like(&(
        out_channels,
        geometry.batch,
        geometry.out_height(),
        geometry.out_width(),
    ))
}
