//! A 2-D convolution built from stable dfdx ops (dfdx 0.13's own Conv2D is nightly-only).
//!
//! Activations use the channel-major layout (C, N, H, W): each channel's values are one contiguous
//! run, which is what BatchNorm reduces over, and it makes the convolution a single matmul:
//! im2col by `gather` on the flattened input (with a zero appended for the padding) into a
//! (C_in·K·K, N·H_out·W_out) matrix, then weight (C_out, C_in·K·K) × columns = (C_out, N, H_out, W_out).
//! `gather` and `matmul` carry their own backward passes, so gradients need no extra code.

use std::collections::HashMap;

use dfdx::prelude::*;

/// Shape of one convolution over channel-major activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    pub in_channels: usize,
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel) / self.stride + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// Rows of the im2col matrix: one per weight of a filter.
    pub fn patch_len(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    /// Columns of the im2col matrix: one per output position.
    pub fn positions(&self) -> usize {
        self.batch * self.out_height() * self.out_width()
    }

    pub fn input_len(&self) -> usize {
        self.in_channels * self.batch * self.height * self.width
    }

    /// im2col gather indices, row-major over (patch element (ci, ky, kx), position (n, oy, ox)).
    /// Each is a flat index into the (C, N, H, W) input, or `input_len()` (the appended zero) where
    /// the kernel overlaps the padding.
    pub fn im2col_indices(&self) -> Vec<usize> {
        let (oh, ow) = (self.out_height(), self.out_width());
        let zero = self.input_len();
        let mut idx = Vec::with_capacity(self.patch_len() * self.positions());
        for ci in 0..self.in_channels {
            for ky in 0..self.kernel {
                for kx in 0..self.kernel {
                    for n in 0..self.batch {
                        let image = (ci * self.batch + n) * self.height * self.width;
                        for oy in 0..oh {
                            let y = (oy * self.stride + ky) as isize - self.padding as isize;
                            for ox in 0..ow {
                                let x = (ox * self.stride + kx) as isize - self.padding as isize;
                                let inside = (0..self.height as isize).contains(&y)
                                    && (0..self.width as isize).contains(&x);
                                idx.push(if inside {
                                    image + y as usize * self.width + x as usize
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
}

/// im2col index tensors, built once per geometry (a run sees two or three batch sizes at most).
#[derive(Default)]
pub struct Im2colCache {
    indices: HashMap<ConvGeometry, Tensor<(usize,), usize, Cpu>>,
}

impl Im2colCache {
    fn get(&mut self, dev: &Cpu, geometry: ConvGeometry) -> Tensor<(usize,), usize, Cpu> {
        self.indices
            .entry(geometry)
            .or_insert_with(|| {
                let idx = geometry.im2col_indices();
                let len = idx.len();
                dev.tensor_from_vec(idx, (len,))
            })
            .clone()
    }
}

/// Output of [`conv2d`]: (C_out, N, H_out, W_out).
pub type ConvOutput<const O: usize, T> = Tensor<(Const<O>, usize, usize, usize), f32, Cpu, T>;

/// Convolves channel-major `x` (any 4-D shape matching `geometry`) with `weight` (C_out, C_in, K, K).
pub fn conv2d<S, const O: usize, const I: usize, const K: usize, T>(
    x: Tensor<S, f32, Cpu, T>,
    weight: &Tensor<Rank4<O, I, K, K>, f32, Cpu>,
    geometry: ConvGeometry,
    cache: &mut Im2colCache,
) -> ConvOutput<O, T>
where
    S: Shape,
    T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
{
    debug_assert_eq!(x.shape().num_elements(), geometry.input_len());
    debug_assert_eq!((geometry.in_channels, geometry.kernel), (I, K));
    let dev = x.device().clone();
    let flat = x.reshape_like(&(geometry.input_len(),));
    let padded = (flat, dev.zeros_like(&(1usize,))).concat_along(Axis::<0>);
    let columns = padded
        .gather(cache.get(&dev, geometry))
        .reshape_like(&(geometry.patch_len(), geometry.positions()));
    let filters = weight
        .retaped::<T>()
        .reshape_like(&(Const::<O>, geometry.patch_len()));
    filters.matmul(columns).reshape_like(&(
        Const::<O>,
        geometry.batch,
        geometry.out_height(),
        geometry.out_width(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, on (C, N, H, W) input and (O, I, K, K) weights.
    fn naive_conv(x: &[f32], w: &[f32], g: ConvGeometry, out_channels: usize) -> Vec<f32> {
        let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
        let mut out = vec![0.0f32; out_channels * g.batch * oh * ow];
        for o in 0..out_channels {
            for n in 0..g.batch {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0f64;
                        for ci in 0..g.in_channels {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let y = (oy * g.stride + ky) as isize - g.padding as isize;
                                    let xx = (ox * g.stride + kx) as isize - g.padding as isize;
                                    if y < 0
                                        || xx < 0
                                        || y >= g.height as isize
                                        || xx >= g.width as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((ci * g.batch + n) * g.height + y as usize) * g.width
                                        + xx as usize;
                                    let wi = ((o * g.in_channels + ci) * k + ky) * k + kx;
                                    acc += x[xi] as f64 * w[wi] as f64;
                                }
                            }
                        }
                        out[((o * g.batch + n) * oh + oy) * ow + ox] = acc as f32;
                    }
                }
            }
        }
        out
    }

    const O: usize = 4;
    const I: usize = 3;
    const K: usize = 3;

    fn geometry(stride: usize) -> ConvGeometry {
        ConvGeometry {
            in_channels: I,
            batch: 2,
            height: 7,
            width: 6,
            kernel: K,
            stride,
            padding: 1,
        }
    }

    fn setup(
        stride: usize,
    ) -> (
        Cpu,
        ConvGeometry,
        Vec<f32>,
        Tensor<Rank4<O, I, K, K>, f32, Cpu>,
    ) {
        let dev = Cpu::seed_from_u64(7);
        let g = geometry(stride);
        let x: Tensor<(usize,), f32, Cpu> = dev.sample_normal_like(&(g.input_len(),));
        let w: Tensor<Rank4<O, I, K, K>, f32, Cpu> = dev.sample_normal();
        (dev, g, x.as_vec(), w)
    }

    #[test]
    fn forward_matches_naive_convolution_for_stride_1_and_2() {
        for stride in [1, 2] {
            let (dev, g, x, w) = setup(stride);
            let input = dev.tensor_from_vec(x.clone(), (I, g.batch, g.height, g.width));
            let out = conv2d(input, &w, g, &mut Im2colCache::default());
            assert_eq!(
                *out.shape(),
                (Const::<O>, g.batch, g.out_height(), g.out_width())
            );
            let expected = naive_conv(&x, &w.as_vec(), g, O);
            for (a, b) in out.as_vec().iter().zip(&expected) {
                assert!((a - b).abs() < 1e-5, "stride {stride}: {a} vs {b}");
            }
        }
    }

    /// Loss L = Σ out ⊙ probe, so dL/dθ can be checked by central differences in f64 via the naive conv.
    fn loss_f64(x: &[f32], w: &[f32], g: ConvGeometry, probe: &[f32]) -> f64 {
        naive_conv(x, w, g, O)
            .iter()
            .zip(probe)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    }

    #[test]
    fn weight_and_input_gradients_match_finite_differences() {
        let (dev, g, x, w) = setup(2);
        let probe_len = O * g.batch * g.out_height() * g.out_width();
        let probe: Vec<f32> = (0..probe_len)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0)
            .collect();
        let probe_t = dev.tensor_from_vec(
            probe.clone(),
            (Const::<O>, g.batch, g.out_height(), g.out_width()),
        );

        let input = dev.tensor_from_vec(x.clone(), (I, g.batch, g.height, g.width));
        // A leaky tape keeps the input's gradient as well as the weight's.
        let out = conv2d(input.leaky_trace(), &w, g, &mut Im2colCache::default());
        let grads = (out * probe_t).sum().backward();
        let gw = grads.get(&w).as_vec();
        let gx = grads.get(&input).as_vec();

        let w_host = w.as_vec();
        let h = 1e-2f32;
        for i in (0..w_host.len()).step_by(5) {
            let (mut plus, mut minus) = (w_host.clone(), w_host.clone());
            plus[i] += h;
            minus[i] -= h;
            let fd = (loss_f64(&x, &plus, g, &probe) - loss_f64(&x, &minus, g, &probe))
                / (2.0 * h as f64);
            assert!(
                (fd - gw[i] as f64).abs() < 2e-3 * (1.0 + fd.abs()),
                "dL/dw[{i}]: fd {fd} vs {}",
                gw[i]
            );
        }
        for i in (0..x.len()).step_by(7) {
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus[i] += h;
            minus[i] -= h;
            let fd = (loss_f64(&plus, &w_host, g, &probe) - loss_f64(&minus, &w_host, g, &probe))
                / (2.0 * h as f64);
            assert!(
                (fd - gx[i] as f64).abs() < 2e-3 * (1.0 + fd.abs()),
                "dL/dx[{i}]: fd {fd} vs {}",
                gx[i]
            );
        }
    }
}
