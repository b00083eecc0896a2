//! A 2-D convolution as a dfdx custom op with its own backward pass (dfdx 0.13's own Conv2D is
//! nightly-only, and building one from `gather` + `matmul` spent most of a step in index
//! gathering and temporaries).
//!
//! Activations use the channel-major layout (C, N, H, W): each channel's values are one contiguous
//! run, which is what BatchNorm reduces over, and it makes the convolution a single matmul:
//! im2col into a (C_in·K·K, N·H_out·W_out) matrix, then weight (C_out, C_in·K·K) × columns =
//! (C_out, N, H_out, W_out). Backward: dW = dY·colsᵀ, dX = col2im(Wᵀ·dY), db = row sums of dY.
//! The host loops and matrix products are in [`kernel`].

#[cfg(test)]
pub mod gather;
mod gemm512;
mod kernel;

use std::sync::Arc;

use dfdx::prelude::*;
use dfdx::tensor::{PutTape, SplitTape};

use super::host::{from_host, to_host, to_pooled, BufferPool, PooledBuffer};
use kernel::{col2im_add, im2col, matmul, Operand};

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
}

/// Buffers of the convolution reused from step to step (im2col matrices, column gradients).
#[derive(Default)]
pub struct Im2colCache {
    pool: BufferPool,
}

impl Im2colCache {
    /// The pool the buffers come from, for other host passes of the same step.
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }
}

/// Channel-major activations and the output of [`conv2d`]: (C, N, H, W).
pub type ConvOutput<T> = Tensor<(usize, usize, usize, usize), f32, Cpu, T>;

/// Convolves channel-major `x` (any 4-D shape matching `geometry`) with `weight` (C_out, C_in, K,
/// K; const or runtime dimensions) and adds `bias` per output channel if given. With an owned tape
/// it records its backward pass, which adds into the gradients of `x`, `weight` and `bias`.
pub fn conv2d<S, W, T>(
    x: Tensor<S, f32, Cpu, T>,
    weight: &Tensor<W, f32, Cpu>,
    bias: Option<&Tensor<(usize,), f32, Cpu>>,
    geometry: ConvGeometry,
    cache: &mut Im2colCache,
) -> ConvOutput<T>
where
    S: Shape,
    W: Shape<Concrete = [usize; 4]>,
    T: Tape<f32, Cpu>,
{
    let g = geometry;
    let [o, in_channels, kernel, kernel_width] = weight.shape().concrete();
    assert_eq!(x.shape().num_elements(), g.input_len());
    assert_eq!(
        (in_channels, kernel, kernel_width),
        (g.in_channels, g.kernel, g.kernel)
    );
    let (x, mut tape) = x.split_tape();
    let (out, saved) = {
        let input = to_pooled(&x, &cache.pool);
        let bias = bias.map(to_host);
        conv_forward(
            &input,
            Arc::new(to_host(weight)),
            bias.as_deref(),
            g,
            &cache.pool,
        )
    };
    let out = from_host(
        x.device(),
        &out,
        (o, g.batch, g.out_height(), g.out_width()),
    );

    if T::OWNS_TAPE {
        let (xg, wg, bg, og) = (
            x.ghost(),
            weight.ghost(),
            bias.map(|b| b.ghost()),
            out.ghost(),
        );
        tape.add_backward_op(move |grads| {
            // The output's gradient is moved out for the pass (dx is borrowed from `grads` at
            // the same time) and put back unchanged, rather than copied.
            let dy = std::mem::take(&mut **grads.get_or_alloc_mut(&og)?);
            let (dw, db) = saved.backward(&dy, bg.is_some(), Some(grads.get_or_alloc_mut(&xg)?));
            **grads.get_or_alloc_mut(&og)? = dy;
            add_to(grads.get_or_alloc_mut(&wg)?, &dw);
            if let Some(bg) = &bg {
                add_to(grads.get_or_alloc_mut(bg)?, &db);
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// grad += d.
pub fn add_to(grad: &mut [f32], d: &[f32]) {
    for (g, d) in grad.iter_mut().zip(d) {
        *g += d;
    }
}

/// What the convolution's backward keeps of its forward: the im2col matrix and the weights
/// (shared: a measured training step reads them again as the weights before its update).
pub struct ConvSaved {
    columns: PooledBuffer,
    weight: Arc<Vec<f32>>,
    out_channels: usize,
    geometry: ConvGeometry,
    pool: BufferPool,
}

/// The forward on host data: `input` channel-major as `g` says, `weight` (C_out, C_in·K·K)
/// row-major, `bias` per output channel if given. Returns the output (C_out, N, H_out, W_out),
/// in a buffer from `pool`, and what the backward needs.
pub fn conv_forward(
    input: &[f32],
    weight: Arc<Vec<f32>>,
    bias: Option<&[f32]>,
    g: ConvGeometry,
    pool: &BufferPool,
) -> (PooledBuffer, ConvSaved) {
    assert_eq!(input.len(), g.input_len());
    let (patch, positions) = (g.patch_len(), g.positions());
    assert_eq!(weight.len() % patch, 0, "weights of whole filters");
    let o = weight.len() / patch;
    let mut columns = pool.take(patch * positions);
    im2col(input, &g, &mut columns);
    let mut out = pool.take(o * positions);
    if let Some(bias) = bias {
        assert_eq!(bias.len(), o);
        for (row, &b) in out.chunks_exact_mut(positions).zip(bias) {
            row.fill(b);
        }
    }
    matmul(
        Operand::new(&weight, o, patch),
        Operand::new(&columns, patch, positions),
        &mut out,
        bias.is_some(),
    );
    let saved = ConvSaved {
        columns,
        weight,
        out_channels: o,
        geometry: g,
        pool: pool.clone(),
    };
    (out, saved)
}

impl ConvSaved {
    /// Values of the input.
    pub fn input_len(&self) -> usize {
        self.geometry.input_len()
    }

    /// From the output's gradient `dy`: returns ∂L/∂W (C_out·C_in·K·K) and, with `bias`, ∂L/∂b
    /// (else empty), and adds ∂L/∂x into `dx` if given (the input's gradient is skipped when the
    /// input is data).
    pub fn backward(self, dy: &[f32], bias: bool, dx: Option<&mut [f32]>) -> (Vec<f32>, Vec<f32>) {
        let (o, g) = (self.out_channels, self.geometry);
        let (patch, positions) = (g.patch_len(), g.positions());
        let dy_mat = Operand::new(dy, o, positions);
        let mut dw = vec![0.0f32; o * patch];
        matmul(
            dy_mat,
            Operand::new(&self.columns, patch, positions).t(),
            &mut dw,
            false,
        );
        let db = if bias {
            let rows = dy.chunks_exact(positions);
            rows.map(|row| row.iter().map(|v| *v as f64).sum::<f64>() as f32)
                .collect()
        } else {
            Vec::new()
        };
        drop(self.columns);
        if let Some(dx) = dx {
            let mut dcols = self.pool.take(patch * positions);
            matmul(
                Operand::new(&self.weight, o, patch).t(),
                dy_mat,
                &mut dcols,
                false,
            );
            col2im_add(&dcols, &g, dx);
        }
        (dw, db)
    }
}

#[cfg(test)]
mod tests {
    use super::gather::conv2d_gather;
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
            let out = conv2d(input, &w, None, g, &mut Im2colCache::default());
            assert_eq!(*out.shape(), (O, g.batch, g.out_height(), g.out_width()));
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
        let probe_t =
            dev.tensor_from_vec(probe.clone(), (O, g.batch, g.out_height(), g.out_width()));

        let input = dev.tensor_from_vec(x.clone(), (I, g.batch, g.height, g.width));
        // A leaky tape keeps the input's gradient as well as the weight's.
        let out = conv2d(
            input.leaky_trace(),
            &w,
            None,
            g,
            &mut Im2colCache::default(),
        );
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

    /// Relative closeness at f32 rounding: |a - b| ≤ tol·(1 + max |b|) over the whole vector.
    fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = 1.0 + b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Output and the gradients of input, weight and bias, for loss Σ out ⊙ probe, from the fast op
    /// (with the bias inside) and from the gather reference (bias added by a broadcast).
    fn both_ops<const C: usize, const OC: usize>(
        g: ConvGeometry,
        seed: u64,
    ) -> [(Vec<f32>, Vec<f32>); 4] {
        let dev = Cpu::seed_from_u64(seed);
        let x: Tensor<(Const<C>, usize, usize, usize), f32, Cpu> =
            dev.sample_normal_like(&(Const::<C>, g.batch, g.height, g.width));
        let w: Tensor<Rank4<OC, C, K, K>, f32, Cpu> = dev.sample_normal();
        let b: Tensor<(usize,), f32, Cpu> = dev.sample_normal_like(&(OC,));
        let out_shape = (OC, g.batch, g.out_height(), g.out_width());
        let probe: ConvOutput<NoneTape> = dev.sample_normal_like(&out_shape);

        let mut cache = Im2colCache::default();
        // Twice through the same cache: the second run reuses the first run's buffers.
        let mut fast = None;
        for _ in 0..2 {
            let out = conv2d(x.leaky_trace(), &w, Some(&b), g, &mut cache);
            let y = out.as_vec();
            let grads = (out * probe.clone()).sum().backward();
            fast = Some((y, grads));
        }
        let (y_fast, g_fast) = fast.expect("ran");

        let h = conv2d_gather(x.leaky_trace(), &w, g);
        let h = h + b
            .retaped::<OwnedTape<f32, Cpu>>()
            .broadcast_like::<_, Axes3<1, 2, 3>>(&out_shape);
        let y_ref = h.as_vec();
        let g_ref = (h * probe).sum().backward();
        [
            (y_fast, y_ref),
            (g_fast.get(&x).as_vec(), g_ref.get(&x).as_vec()),
            (g_fast.get(&w).as_vec(), g_ref.get(&w).as_vec()),
            (g_fast.get(&b).as_vec(), g_ref.get(&b).as_vec()),
        ]
    }

    #[test]
    fn output_and_gradients_match_the_gather_reference() {
        let shapes = [
            // (in channels via the const below, batch, height, width, stride)
            (1, 8, 8, 1),
            (3, 8, 8, 2),
            (1, 1, 1, 1),
            (2, 7, 5, 2),
            (1, 28, 28, 2),
            (4, 9, 13, 1),
            (2, 3, 32, 2),
        ];
        for (i, &(batch, height, width, stride)) in shapes.iter().enumerate() {
            let g = |in_channels| ConvGeometry {
                in_channels,
                batch,
                height,
                width,
                kernel: K,
                stride,
                padding: 1,
            };
            let results = [
                both_ops::<1, 16>(g(1), i as u64),
                both_ops::<3, 8>(g(3), i as u64),
                both_ops::<16, 32>(g(16), i as u64),
            ];
            for (c, result) in [1, 3, 16].into_iter().zip(&results) {
                for (what, (fast, reference)) in ["out", "dx", "dw", "db"].iter().zip(result) {
                    assert_close(&format!("{:?} {what}", g(c)), fast, reference, 1e-5);
                }
            }
        }
    }

    /// Gradients add onto what is already there: x used by two convolutions gets the sum.
    #[test]
    fn gradients_accumulate_when_a_tensor_is_used_twice() {
        let dev = Cpu::seed_from_u64(3);
        let g = geometry(1);
        let x: Tensor<Rank4<I, 2, 7, 6>, f32, Cpu> = dev.sample_normal();
        let w: Tensor<Rank4<O, I, K, K>, f32, Cpu> = dev.sample_normal();
        let mut cache = Im2colCache::default();
        let once = |x: Tensor<Rank4<I, 2, 7, 6>, f32, Cpu, OwnedTape<f32, Cpu>>| {
            conv2d(x, &w, None, g, &mut Im2colCache::default()).sum()
        };
        let single = once(x.leaky_trace()).backward();
        let traced = x.leaky_trace();
        let a = conv2d(traced.with_empty_tape(), &w, None, g, &mut cache).sum();
        let b = conv2d(traced, &w, None, g, &mut cache).sum();
        let double = (a + b).backward();
        let twice: Vec<f32> = single.get(&x).as_vec().iter().map(|v| 2.0 * v).collect();
        assert_close("dx", &double.get(&x).as_vec(), &twice, 1e-6);
        let twice: Vec<f32> = single.get(&w).as_vec().iter().map(|v| 2.0 * v).collect();
        assert_close("dw", &double.get(&w).as_vec(), &twice, 1e-6);
    }

    /// Resident memory of this process, bytes (Linux).
    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("resident pages");
        pages * 4096
    }

    /// With dfdx's allocation cache on (as in training), repeated steps keep memory flat: the
    /// output must not bring storage into the cache that nothing takes out again.
    #[test]
    fn repeated_steps_with_the_allocation_cache_keep_memory_flat() {
        let dev = Cpu::seed_from_u64(9);
        dev.enable_cache();
        let g = ConvGeometry {
            in_channels: 1,
            batch: 64,
            height: 32,
            width: 32,
            kernel: K,
            stride: 1,
            padding: 1,
        };
        let x: Tensor<(Const<1>, usize, usize, usize), f32, Cpu> =
            dev.sample_normal_like(&(Const::<1>, g.batch, g.height, g.width));
        let w: Tensor<Rank4<16, 1, K, K>, f32, Cpu> = dev.sample_normal();
        let mut cache = Im2colCache::default();
        let mut step = || {
            let out = conv2d(x.leaky_trace(), &w, None, g, &mut cache);
            let _ = out.relu().sum().backward();
        };
        step();
        let before = resident_bytes();
        // Each output is 4 MiB: a leak of one per step would add 400 MiB.
        for _ in 0..100 {
            step();
        }
        let grown = resident_bytes().saturating_sub(before);
        assert!(grown < 100 << 20, "memory grew by {} MiB", grown >> 20);
    }
}
