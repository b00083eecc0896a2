//! Host kernels of the convolution in [`super`]: im2col and its adjoint col2im by direct
//! loops and the three matrix products of the forward and backward passes (with the `gemm` crate,
//! on every rayon thread). The large buffers come from [`BufferPool`](crate::engine::host::BufferPool).
//!
//! Layouts: input (C, N, H, W); im2col matrix (C·K·K, N·H_out·W_out), rows (c, ky, kx), columns
//! (n, oy, ox); every matrix row-major.

use rayon::prelude::*;

use super::ConvGeometry;

/// Elements one rayon task handles at least: below this, splitting costs more than it gains
/// (digit batches give matrices of a few thousand elements).
const MIN_TASK_ELEMENTS: usize = 1 << 15;

/// Chunks of `chunk` elements per task so that a task holds at least [`MIN_TASK_ELEMENTS`].
fn chunks_per_task(chunk: usize) -> usize {
    MIN_TASK_ELEMENTS.div_ceil(chunk.max(1))
}

/// Output coordinates [lo, hi) along one axis whose input coordinate o·stride + k − padding lies
/// inside 0..size, for kernel offset `k`; the others read the zero padding.
fn inside(k: usize, size: usize, out: usize, stride: usize, padding: usize) -> (usize, usize) {
    let lo = padding.saturating_sub(k).div_ceil(stride).min(out);
    let hi = (size + padding).saturating_sub(k).div_ceil(stride).min(out);
    (lo, hi.max(lo))
}

/// Fills `cols` with the im2col matrix of `x`; every entry is written.
pub fn im2col(x: &[f32], g: &ConvGeometry, cols: &mut [f32]) {
    assert_eq!(x.len(), g.input_len());
    assert_eq!(cols.len(), g.patch_len() * g.positions());
    let (oh, ow, k, s, p) = (g.out_height(), g.out_width(), g.kernel, g.stride, g.padding);
    let plane = g.height * g.width;
    cols.par_chunks_mut(g.positions())
        .enumerate()
        .with_min_len(chunks_per_task(g.positions()))
        .for_each(|(row, dst)| {
            let (c, ky, kx) = (row / (k * k), row / k % k, row % k);
            let (y_lo, y_hi) = inside(ky, g.height, oh, s, p);
            let (x_lo, x_hi) = inside(kx, g.width, ow, s, p);
            for n in 0..g.batch {
                let image = &x[(c * g.batch + n) * plane..][..plane];
                for (oy, out) in dst[n * oh * ow..][..oh * ow]
                    .chunks_exact_mut(ow)
                    .enumerate()
                {
                    if oy < y_lo || oy >= y_hi {
                        out.fill(0.0);
                        continue;
                    }
                    out[..x_lo].fill(0.0);
                    out[x_hi..].fill(0.0);
                    if x_lo == x_hi {
                        continue;
                    }
                    let line = &image[(oy * s + ky - p) * g.width..][..g.width];
                    let first = x_lo * s + kx - p;
                    let out = &mut out[x_lo..x_hi];
                    if s == 1 {
                        out.copy_from_slice(&line[first..first + out.len()]);
                    } else {
                        for (o, v) in out.iter_mut().zip(line[first..].iter().step_by(s)) {
                            *o = *v;
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`im2col`]: adds each entry of `cols` to the input element it was read from.
pub fn col2im_add(cols: &[f32], g: &ConvGeometry, dx: &mut [f32]) {
    assert_eq!(dx.len(), g.input_len());
    assert_eq!(cols.len(), g.patch_len() * g.positions());
    let (oh, ow, k, s, p) = (g.out_height(), g.out_width(), g.kernel, g.stride, g.padding);
    let plane = g.height * g.width;
    let rows_per_channel = k * k * g.positions();
    // One task per input channel: it owns that channel's slice of dx and its K·K rows.
    dx.par_chunks_mut(g.batch * plane)
        .zip(cols.par_chunks(rows_per_channel))
        .with_min_len(chunks_per_task(rows_per_channel))
        .for_each(|(dx, rows)| {
            for (r, row) in rows.chunks_exact(g.positions()).enumerate() {
                let (ky, kx) = (r / k, r % k);
                let (y_lo, y_hi) = inside(ky, g.height, oh, s, p);
                let (x_lo, x_hi) = inside(kx, g.width, ow, s, p);
                if x_lo == x_hi {
                    continue;
                }
                let first = x_lo * s + kx - p;
                for n in 0..g.batch {
                    for oy in y_lo..y_hi {
                        let src = &row[(n * oh + oy) * ow..][x_lo..x_hi];
                        let line = &mut dx[n * plane + (oy * s + ky - p) * g.width..][..g.width];
                        if s == 1 {
                            for (d, v) in line[first..first + src.len()].iter_mut().zip(src) {
                                *d += *v;
                            }
                        } else {
                            for (d, v) in line[first..].iter_mut().step_by(s).zip(src) {
                                *d += *v;
                            }
                        }
                    }
                }
            }
        });
}

/// A matrix operand: its elements, its shape and the strides of a row and of a column step.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub(super) data: &'a [f32],
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) row_stride: usize,
    pub(super) col_stride: usize,
}

impl<'a> Operand<'a> {
    /// A row-major `rows`×`cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols);
        Operand {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, without moving any element.
    pub fn t(self) -> Self {
        Operand {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// dst (row-major, a.rows × b.cols) = a·b, or dst + a·b with `accumulate`.
pub fn matmul(a: Operand, b: Operand, dst: &mut [f32], accumulate: bool) {
    assert_eq!(a.cols, b.rows);
    assert_eq!(dst.len(), a.rows * b.cols);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    if super::gemm512::available() {
        super::gemm512::matmul(a, b, dst, accumulate);
        return;
    }
    // SAFETY: the shapes were checked above and each operand's data holds exactly rows·cols
    // elements at the strides given (`Operand::new`), so every index gemm forms is in bounds;
    // dst is a distinct exclusive borrow.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(batch: usize, height: usize, width: usize, stride: usize) -> ConvGeometry {
        ConvGeometry {
            in_channels: 2,
            batch,
            height,
            width,
            kernel: 3,
            stride,
            padding: 1,
        }
    }

    fn ramp(len: usize, scale: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 29 % 17) as f32 - 8.0) * scale)
            .collect()
    }

    /// im2col by the definition: each entry is the input pixel it reads, or 0 in the padding.
    fn naive_im2col(x: &[f32], g: &ConvGeometry) -> Vec<f32> {
        let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
        let mut cols = Vec::new();
        for c in 0..g.in_channels {
            for ky in 0..k {
                for kx in 0..k {
                    for n in 0..g.batch {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let y = (oy * g.stride + ky) as isize - g.padding as isize;
                                let xx = (ox * g.stride + kx) as isize - g.padding as isize;
                                let inside = (0..g.height as isize).contains(&y)
                                    && (0..g.width as isize).contains(&xx);
                                cols.push(if inside {
                                    x[((c * g.batch + n) * g.height + y as usize) * g.width
                                        + xx as usize]
                                } else {
                                    0.0
                                });
                            }
                        }
                    }
                }
            }
        }
        cols
    }

    /// (batch, height, width, stride): single pixels, odd sizes, both strides.
    const SHAPES: [(usize, usize, usize, usize); 5] = [
        (1, 1, 1, 1),
        (2, 5, 4, 1),
        (3, 7, 6, 2),
        (1, 8, 8, 2),
        (2, 3, 9, 2),
    ];

    #[test]
    fn im2col_matches_the_definition_and_overwrites_stale_contents() {
        for (batch, h, w, s) in SHAPES {
            let g = geometry(batch, h, w, s);
            let x = ramp(g.input_len(), 0.5);
            let mut cols = vec![f32::NAN; g.patch_len() * g.positions()];
            im2col(&x, &g, &mut cols);
            assert_eq!(cols, naive_im2col(&x, &g), "{g:?}");
        }
    }

    /// col2im is im2col's adjoint: <im2col(x), c> = <x, col2im(c)> for any x and c; and it adds.
    #[test]
    fn col2im_is_the_adjoint_of_im2col_and_accumulates() {
        for (batch, h, w, s) in SHAPES {
            let g = geometry(batch, h, w, s);
            let x = ramp(g.input_len(), 0.25);
            let c: Vec<f32> = ramp(g.patch_len() * g.positions(), 0.125)
                .iter()
                .rev()
                .copied()
                .collect();
            let lhs: f64 = naive_im2col(&x, &g)
                .iter()
                .zip(&c)
                .map(|(a, b)| (a * b) as f64)
                .sum();
            let mut dx = vec![1.0f32; g.input_len()];
            col2im_add(&c, &g, &mut dx);
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| (a * (b - 1.0)) as f64).sum();
            assert!((lhs - rhs).abs() < 1e-3, "{g:?}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn matmul_handles_transposed_operands_and_accumulation() {
        let (m, k, n) = (5, 7, 3);
        let a = ramp(m * k, 0.5);
        let b = ramp(k * n, 0.25);
        let naive = |i: usize, j: usize| (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum::<f32>();
        let mut ab = vec![f32::NAN; m * n];
        matmul(
            Operand::new(&a, m, k),
            Operand::new(&b, k, n),
            &mut ab,
            false,
        );
        // (bᵀ aᵀ) = (ab)ᵀ, from the transposed views, added onto ones.
        let mut ba = vec![1.0; n * m];
        matmul(
            Operand::new(&b, k, n).t(),
            Operand::new(&a, m, k).t(),
            &mut ba,
            true,
        );
        for i in 0..m {
            for j in 0..n {
                assert!((ab[i * n + j] - naive(i, j)).abs() < 1e-4);
                assert!((ba[j * m + i] - 1.0 - naive(i, j)).abs() < 1e-4);
            }
        }
    }
}
