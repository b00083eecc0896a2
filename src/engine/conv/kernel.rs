//! Host kernels of the convolution in [`super`]: im2col and its adjoint col2im (by AVX-512
//! rows in [`im2col512`] where the CPU has it and the stride is 1 or 2, else by direct loops) and the three matrix products of the forward and backward passes (with the `gemm` crate,
//! on every rayon thread). The large buffers come from [`BufferPool`](crate::engine::host::BufferPool).
//!
//! Layouts: input (C, N, H, W); im2col matrix (C·K·K, N·H_out·W_out), rows (c, ky, kx), columns
//! (n, oy, ox); every matrix row-major.

use rayon::prelude::*;

mod im2col512;

use super::ConvGeometry;
use crate::engine::parallel::chunks_per_task;
use im2col512::RowSpan;

/// Output coordinates [lo, hi) along one axis whose input coordinate o·stride + k − padding lies
/// inside 0..size, for kernel offset `k`; the others read the zero padding.
fn inside(k: usize, size: usize, out: usize, stride: usize, padding: usize) -> (usize, usize) {
    let lo = padding.saturating_sub(k).div_ceil(stride).min(out);
    let hi = (size + padding).saturating_sub(k).div_ceil(stride).min(out);
    (lo, hi.max(lo))
}

/// Fills `cols` with the im2col matrix of `x`; every entry is written.
pub fn im2col(x: &[f32], g: &ConvGeometry, cols: &mut [f32]) {
    im2col_with(x, g, cols, im2col512::handles(g));
}

/// [`im2col`], by the AVX-512 rows with `simd` (which [`im2col512::handles`] must allow), else
/// by the scalar loops.
fn im2col_with(x: &[f32], g: &ConvGeometry, cols: &mut [f32], simd: bool) {
    assert_eq!(x.len(), g.input_len());
    assert_eq!(cols.len(), g.patch_len() * g.positions());
    let k = g.kernel;
    let plane = g.height * g.width;
    cols.par_chunks_mut(g.positions())
        .enumerate()
        .with_min_len(chunks_per_task(g.positions()))
        .for_each(|(row, dst)| {
            let c = row / (k * k);
            let span = row_span(g, row % (k * k));
            let channel = &x[c * g.batch * plane..][..g.batch * plane];
            if simd {
                im2col512::im2col_row(channel, g, span, dst);
            } else {
                im2col_row(channel, g, span, dst);
            }
        });
}

/// Where matrix row (·, ky, kx) = `r` of every channel reads inside the image.
fn row_span(g: &ConvGeometry, r: usize) -> RowSpan {
    let (ky, kx) = (r / g.kernel, r % g.kernel);
    RowSpan {
        ky,
        kx,
        x: inside(kx, g.width, g.out_width(), g.stride, g.padding),
        y: inside(ky, g.height, g.out_height(), g.stride, g.padding),
    }
}

/// One row of [`im2col`] by scalar loops: `image` is the channel's N·H·W values.
fn im2col_row(image: &[f32], g: &ConvGeometry, span: RowSpan, dst: &mut [f32]) {
    let (oh, ow, s, p) = (g.out_height(), g.out_width(), g.stride, g.padding);
    let plane = g.height * g.width;
    let RowSpan { ky, kx, .. } = span;
    let ((x_lo, x_hi), (y_lo, y_hi)) = (span.x, span.y);
    for n in 0..g.batch {
        let image = &image[n * plane..][..plane];
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
}

/// The adjoint of [`im2col`]: adds each entry of `cols` to the input element it was read from.
pub fn col2im_add(cols: &[f32], g: &ConvGeometry, dx: &mut [f32]) {
    col2im_add_with(cols, g, dx, im2col512::handles(g));
}

/// [`col2im_add`], by the AVX-512 rows with `simd` (which [`im2col512::handles`] must allow),
/// else by the scalar loops. Either way each element of `dx` gets its entries in the order of
/// the rows (ky, kx), so both give the same bits.
fn col2im_add_with(cols: &[f32], g: &ConvGeometry, dx: &mut [f32], simd: bool) {
    assert_eq!(dx.len(), g.input_len());
    assert_eq!(cols.len(), g.patch_len() * g.positions());
    let rows_per_channel = g.kernel * g.kernel * g.positions();
    // One task per input channel: it owns that channel's slice of dx and its K·K rows.
    dx.par_chunks_mut(g.batch * g.height * g.width)
        .zip(cols.par_chunks(rows_per_channel))
        .with_min_len(chunks_per_task(rows_per_channel))
        .for_each(|(dx, rows)| {
            for (r, row) in rows.chunks_exact(g.positions()).enumerate() {
                let span = row_span(g, r);
                if simd {
                    im2col512::col2im_row(row, g, span, dx);
                } else {
                    col2im_row(row, g, span, dx);
                }
            }
        });
}

/// One row of [`col2im_add`] by scalar loops: `dx` is the channel's N·H·W values.
fn col2im_row(row: &[f32], g: &ConvGeometry, span: RowSpan, dx: &mut [f32]) {
    let (oh, ow, s, p) = (g.out_height(), g.out_width(), g.stride, g.padding);
    let plane = g.height * g.width;
    let RowSpan { ky, kx, .. } = span;
    let ((x_lo, x_hi), (y_lo, y_hi)) = (span.x, span.y);
    if x_lo == x_hi {
        return;
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

    /// Values with many mantissa bits, signed zeros among them (a sum that skips or adds an
    /// extra +0 would turn a -0 into +0), so that any change of order or extra addition shows.
    fn rough(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| match (i * 7 + seed) % 11 {
                0 => -0.0,
                1 => 0.0,
                r => {
                    ((i.wrapping_mul(2_654_435_761) ^ seed) % 100_003) as f32 / 7.0 - r as f32 * 1e3
                }
            })
            .collect()
    }

    /// The AVX-512 rows against the scalar loops, bit for bit: both strides, odd sizes, a single
    /// pixel, outputs wider than one register (two chunks), batch 1 and 3, padding 0 to 2.
    #[test]
    fn simd_rows_give_the_bits_of_the_scalar_loops() {
        let mut shapes = Vec::new();
        for (h, w) in [
            (7, 5),
            (1, 1),
            (28, 28),
            (14, 14),
            (7, 7),
            (8, 8),
            (4, 35),
            (66, 3),
        ] {
            for stride in [1, 2] {
                for batch in [1, 3] {
                    for (kernel, padding) in [(3, 1), (3, 0), (1, 0), (5, 2)] {
                        if h + 2 * padding >= kernel && w + 2 * padding >= kernel {
                            shapes.push(ConvGeometry {
                                in_channels: 2,
                                batch,
                                height: h,
                                width: w,
                                kernel,
                                stride,
                                padding,
                            });
                        }
                    }
                }
            }
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for g in shapes {
            if !im2col512::handles(&g) {
                eprintln!("no AVX-512F here: nothing to check");
                return;
            }
            let x = rough(g.input_len(), 1);
            let len = g.patch_len() * g.positions();
            let (mut simd, mut scalar) = (vec![f32::NAN; len], vec![-1.0; len]);
            im2col_with(&x, &g, &mut simd, true);
            im2col_with(&x, &g, &mut scalar, false);
            assert_eq!(bits(&simd), bits(&scalar), "im2col {g:?}");
            let c = rough(len, 2);
            let mut simd = rough(g.input_len(), 3);
            let mut scalar = simd.clone();
            col2im_add_with(&c, &g, &mut simd, true);
            col2im_add_with(&c, &g, &mut scalar, false);
            assert_eq!(bits(&simd), bits(&scalar), "col2im {g:?}");
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
