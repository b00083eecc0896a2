//! One row of im2col and of col2im with AVX-512 for strides 1 and 2 (the network's): each
//! output line is ≤16-lane chunks moved by masked loads and stores, stride 2 picks every second
//! input element with one two-register permute (col2im spreads onto the even lanes). The masks of
//! the padding are worked out once per matrix row, not per line. Same bits as the scalar loops in
//! [`super`]: im2col copies, and col2im adds each column entry once, in the same order.
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::super::ConvGeometry;

/// Whether [`im2col_row`] and [`col2im_row`] run for `g`: AVX-512F and VL, a stride of 1 or 2.
pub fn handles(g: &ConvGeometry) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        matches!(g.stride, 1 | 2)
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = g;
        false
    }
}

/// Where one matrix row (ky, kx) reads: output positions [x_lo, x_hi) of a line and [y_lo, y_hi)
/// of the lines are inside the image, the rest is padding.
#[derive(Clone, Copy)]
pub struct RowSpan {
    pub ky: usize,
    pub kx: usize,
    pub x: (usize, usize),
    pub y: (usize, usize),
}

/// Writes im2col's row (c, ky, kx) into `dst` (N·H_out·W_out) from `image` (channel c: N·H·W).
pub fn im2col_row(image: &[f32], g: &ConvGeometry, span: RowSpan, dst: &mut [f32]) {
    check(image.len(), dst.len(), g, span);
    // SAFETY: `check` asserted the lengths, the stride and the CPU feature.
    unsafe { im2col_row_avx512(image, g, span, dst) }
}

/// Adds im2col's row (c, ky, kx) in `row` (N·H_out·W_out) into `dx` (channel c: N·H·W).
pub fn col2im_row(row: &[f32], g: &ConvGeometry, span: RowSpan, dx: &mut [f32]) {
    check(dx.len(), row.len(), g, span);
    // SAFETY: `check` asserted the lengths, the stride and the CPU feature.
    unsafe { col2im_row_avx512(row, g, span, dx) }
}

fn check(image: usize, row: usize, g: &ConvGeometry, span: RowSpan) {
    assert!(handles(g), "AVX-512 im2col for {g:?}");
    assert_eq!(image, g.batch * g.height * g.width);
    assert_eq!(row, g.positions());
    let (oh, ow) = (g.out_height(), g.out_width());
    assert!(span.ky < g.kernel && span.kx < g.kernel);
    assert!(span.x.0 <= span.x.1 && span.x.1 <= ow && span.y.0 <= span.y.1 && span.y.1 <= oh);
    // The first and last inside positions read inside the image (so every masked lane does).
    if span.x.0 < span.x.1 {
        assert!(span.x.0 * g.stride + span.kx >= g.padding);
        assert!((span.x.1 - 1) * g.stride + span.kx < g.width + g.padding);
    }
    if span.y.0 < span.y.1 {
        assert!(span.y.0 * g.stride + span.ky >= g.padding);
        assert!((span.y.1 - 1) * g.stride + span.ky < g.height + g.padding);
    }
}

/// Bits [from, to) of a 32-lane mask, clipped to 0..32.
fn lanes(from: isize, to: isize) -> u32 {
    let (from, to) = (from.clamp(0, 32) as u32, to.clamp(0, 32) as u32);
    if from >= to {
        0
    } else {
        (u32::MAX >> (32 - (to - from))) << from
    }
}

/// One chunk of ≤16 output positions of a line: `window` is the input column of its lane 0
/// (may lie in the padding), `read` the input lanes of the 32-lane window (two registers) that
/// are inside the image, `inside` its output lanes inside, `out` its output lanes that exist.
#[derive(Clone, Copy)]
struct Chunk {
    start: usize,
    window: isize,
    read: u32,
    inside: u16,
    out: u16,
}

/// The chunks of the lines of a row (ow ≤ 16 in all but the first, stride-1 layers: one chunk).
fn chunks(g: &ConvGeometry, span: RowSpan) -> impl Iterator<Item = Chunk> {
    let (ow, s) = (g.out_width(), g.stride as isize);
    let shift = span.kx as isize - g.padding as isize;
    let (x_lo, x_hi) = (span.x.0 as isize, span.x.1 as isize);
    (0..ow).step_by(16).map(move |start| {
        let o = start as isize;
        let read = if x_lo < x_hi {
            // Lanes s·j for outputs j inside; at stride 2 the odd lanes between come along.
            lanes(s * (x_lo - o), s * (x_hi - 1 - o) + 1)
        } else {
            0
        };
        Chunk {
            start,
            window: s * o + shift,
            read,
            inside: lanes(x_lo - o, x_hi - o) as u16,
            out: lanes(0, ow as isize - o) as u16,
        }
    })
}

/// # Safety
/// The CPU has AVX-512F; `image` and `dst` have the lengths and `span` the bounds [`check`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn im2col_row_avx512(image: &[f32], g: &ConvGeometry, span: RowSpan, dst: &mut [f32]) {
    let (oh, ow, s) = (g.out_height(), g.out_width(), g.stride);
    let plane = g.height * g.width;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let (y_lo, y_hi) = span.y;
    let x = image.as_ptr();
    let d = dst.as_mut_ptr();
    for chunk in chunks(g, span) {
        let (lo, hi) = (chunk.read as u16, (chunk.read >> 16) as u16);
        let out = chunk.out;
        for n in 0..g.batch {
            for oy in 0..oh {
                let at = d.add((n * oh + oy) * ow + chunk.start);
                if oy < y_lo || oy >= y_hi {
                    _mm512_mask_storeu_ps(at, out, _mm512_setzero_ps());
                    continue;
                }
                // Lanes outside `read` are not accessed: the window may start in the padding.
                let line = (n * plane + (oy * s + span.ky - g.padding) * g.width) as isize;
                let w = x.wrapping_offset(line + chunk.window);
                let v = if s == 1 {
                    _mm512_maskz_loadu_ps(lo, w)
                } else {
                    let a = _mm512_maskz_loadu_ps(lo, w);
                    let b = _mm512_maskz_loadu_ps(hi, w.wrapping_add(16));
                    _mm512_permutex2var_ps(a, even, b)
                };
                _mm512_mask_storeu_ps(at, out, v);
            }
        }
    }
}

/// # Safety
/// The CPU has AVX-512F and VL; `row` and `dx` have the lengths and `span` the bounds [`check`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn col2im_row_avx512(row: &[f32], g: &ConvGeometry, span: RowSpan, dx: &mut [f32]) {
    let (oh, ow, s) = (g.out_height(), g.out_width(), g.stride);
    let plane = g.height * g.width;
    // Output j goes to window lane 2j: j = 0..8 into the first register, 8..16 the second.
    let spread_lo = _mm512_setr_epi32(0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0);
    let spread_hi = _mm512_setr_epi32(8, 0, 9, 0, 10, 0, 11, 0, 12, 0, 13, 0, 14, 0, 15, 0);
    let (y_lo, y_hi) = span.y;
    if y_lo == y_hi {
        return;
    }
    let src = row.as_ptr();
    let d = dx.as_mut_ptr();
    for chunk in chunks(g, span) {
        if chunk.inside == 0 {
            continue;
        }
        // At stride 2 only the even lanes of the window are written.
        let touched = if s == 1 {
            chunk.read
        } else {
            chunk.read & 0x5555_5555
        };
        let (lo, hi) = (touched as u16, (touched >> 16) as u16);
        // A window of 16 lanes reaches into the next line written when lines are short (7 wide
        // at stride 2: 14 floats on): its load would wait for that store to retire. Windows of
        // at most 8 lanes are read and written with 8-lane registers.
        let narrow = hi == 0 && lo >> 8 == 0;
        // Steps of the column entries and of the input lines from image to image and from
        // output line to output line. Images a plane apart in turn never overlap each other's
        // windows, unless planes are whole 4 KB pages (then the addresses alias in the CPU's
        // load-store check): then line after line of one image.
        let (image, line) = ((oh * ow, plane), (ow, s * g.width));
        let lines = y_hi - y_lo;
        let ((outer_len, outer), (inner_len, inner)) = if !(plane * 4).is_multiple_of(4096) {
            ((lines, line), (g.batch, image))
        } else {
            ((g.batch, image), (lines, line))
        };
        let first_line = (y_lo * s + span.ky - g.padding) * g.width;
        for i in 0..outer_len {
            let mut from = src.add(y_lo * ow + chunk.start + i * outer.0);
            let mut w = d.wrapping_offset((first_line + i * outer.1) as isize + chunk.window);
            for _ in 0..inner_len {
                let v = _mm512_maskz_loadu_ps(chunk.inside, from);
                let a = if s == 1 {
                    v
                } else {
                    _mm512_maskz_permutexvar_ps(0x5555, spread_lo, v)
                };
                if narrow {
                    let a = _mm512_castps512_ps256(a);
                    let sum = _mm256_add_ps(_mm256_maskz_loadu_ps(lo as u8, w), a);
                    _mm256_mask_storeu_ps(w, lo as u8, sum);
                } else {
                    let sum = _mm512_add_ps(_mm512_maskz_loadu_ps(lo, w), a);
                    _mm512_mask_storeu_ps(w, lo, sum);
                    if s == 2 && hi != 0 {
                        let w = w.wrapping_add(16);
                        let b = _mm512_maskz_permutexvar_ps(0x5555, spread_hi, v);
                        let sum = _mm512_add_ps(_mm512_maskz_loadu_ps(hi, w), b);
                        _mm512_mask_storeu_ps(w, hi, sum);
                    }
                }
                from = from.wrapping_add(inner.0);
                w = w.wrapping_add(inner.1);
            }
        }
    }
}

/// Never called: [`handles`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn im2col_row_avx512(_: &[f32], _: &ConvGeometry, _: RowSpan, _: &mut [f32]) {
    unreachable!("AVX-512 im2col off x86-64")
}

/// Never called: [`handles`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn col2im_row_avx512(_: &[f32], _: &ConvGeometry, _: RowSpan, _: &mut [f32]) {
    unreachable!("AVX-512 col2im off x86-64")
}
