//! The convolution's matrix product with AVX-512, on every rayon thread. The `gemm` crate
//! (0.15) keeps its AVX-512 kernels behind a nightly feature, so on stable Rust it multiplies 8
//! lanes at a time; this is the classic packed design (Goto/BLIS) with a 16-lane 8×32 register
//! tile, used when the CPU has AVX-512F (see [`available`]), else [`super::kernel::matmul`]
//! falls back to `gemm`.
//!
//! Blocking: B is packed KC rows × NC columns at a time into NR-wide strips, A MC × KC into
//! MR-tall strips (zero-padded, so the register tile is always whole); each tile of C is then
//! KC rank-1 updates of 16 FMAs. Threads take disjoint column ranges of C, or, when C has few
//! columns but the sum is long (the weight gradient: k = batch positions), disjoint ranges of k
//! whose partial products are added at the end.
use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

use super::kernel::Operand;

/// Rows of the register tile.
const MR: usize = 8;
/// Columns of the register tile: two 16-lane vectors.
const NR: usize = 32;
/// Depth of one packed block (a KC × NR strip of B stays in L1).
const KC: usize = 256;
/// Columns of B packed at once (KC × NC floats: 1 MB, the L2 of one core).
const NC: usize = 1024;
/// Rows of A packed at once.
const MC: usize = 128;
/// Below this many multiply-adds a product runs on the calling thread alone.
const PARALLEL_WORK: usize = 1 << 18;

/// Whether this CPU runs the AVX-512 product.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

thread_local! {
    /// Per thread: packed A, packed B (kept across calls: no allocation per product).
    static PACKS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// On the calling thread: the partial products of a product split along k.
    static PARTIALS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// dst (row-major, a.rows × b.cols) = a·b, or dst + a·b with `accumulate`. The shapes are
/// checked by the caller; the CPU must have AVX-512F ([`available`]).
pub fn matmul(a: Operand, b: Operand, dst: &mut [f32], accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(available(), "AVX-512F product on a CPU without it");
    assert_eq!((a.cols, dst.len()), (b.rows, m * n));
    let threads = rayon::current_num_threads().max(1);
    let work = m * n * k;
    if threads == 1 || work < PARALLEL_WORK {
        serial(a, b, Tile::whole(dst, n), 0..n, 0..k, accumulate);
        return;
    }
    let column_blocks = n.div_ceil(NR);
    if column_blocks >= 4 * threads || k < 2 * KC {
        // Disjoint column ranges of dst, in whole NR strips.
        let per = column_blocks.div_ceil(threads);
        let tile = Tile::whole(dst, n);
        (0..threads).into_par_iter().for_each(|t| {
            let (lo, hi) = ((t * per * NR).min(n), ((t + 1) * per * NR).min(n));
            if lo < hi {
                serial(a, b, tile, lo..hi, 0..k, accumulate);
            }
        });
        return;
    }
    // Long sums into few columns: thread 0 adds its share of k into dst, the others write
    // theirs into partials that are added afterwards.
    PARTIALS.with(|partials| {
        let mut partials = partials.borrow_mut();
        partials.resize((threads - 1) * m * n, 0.0);
        let per = k.div_ceil(threads);
        let mut outputs: Vec<&mut [f32]> = vec![&mut *dst];
        outputs.extend(partials.chunks_exact_mut(m * n));
        outputs.into_par_iter().enumerate().for_each(|(t, out)| {
            let range = (t * per).min(k)..((t + 1) * per).min(k);
            let add = accumulate && t == 0;
            if range.is_empty() {
                if !add {
                    out.fill(0.0);
                }
            } else {
                serial(a, b, Tile::whole(out, n), 0..n, range, add);
            }
        });
        for partial in partials.chunks_exact(m * n) {
            for (d, p) in dst.iter_mut().zip(partial) {
                *d += p;
            }
        }
    });
}

/// A row-major output matrix shared by threads that write disjoint columns of it.
#[derive(Clone, Copy)]
struct Tile {
    ptr: *mut f32,
    rows: usize,
    stride: usize,
}

// SAFETY: every thread given a Tile writes only its own column range (see `matmul`), and the
// buffer outlives the parallel section that uses it.
unsafe impl Send for Tile {}
unsafe impl Sync for Tile {}

impl Tile {
    fn whole(dst: &mut [f32], cols: usize) -> Tile {
        Tile {
            ptr: dst.as_mut_ptr(),
            rows: dst.len().checked_div(cols).unwrap_or(0),
            stride: cols,
        }
    }
}

/// C[:, cols] (+)= A[:, ks]·B[ks, cols] on this thread.
fn serial(
    a: Operand,
    b: Operand,
    c: Tile,
    cols: std::ops::Range<usize>,
    ks: std::ops::Range<usize>,
    accumulate: bool,
) {
    let m = a.rows;
    assert_eq!(c.rows, m);
    assert!(cols.end <= c.stride);
    if ks.is_empty() {
        if !accumulate {
            for i in 0..m {
                for j in cols.clone() {
                    // SAFETY: i < rows and j < stride, inside the buffer the Tile was made from.
                    unsafe { *c.ptr.add(i * c.stride + j) = 0.0 };
                }
            }
        }
        return;
    }
    PACKS.with(|packs| {
        let mut packs = packs.borrow_mut();
        let (apack, bpack) = &mut *packs;
        apack.resize(MC * KC, 0.0);
        bpack.resize(KC * NC, 0.0);
        for jc in cols.clone().step_by(NC) {
            let nc = NC.min(cols.end - jc);
            for pc in ks.clone().step_by(KC) {
                let kc = KC.min(ks.end - pc);
                pack_strips::<NR>(b, pc, kc, jc, nc, bpack);
                let add = accumulate || pc > ks.start;
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    pack_strips::<MR>(a.t(), pc, kc, ic, mc, apack);
                    for s in 0..nc.div_ceil(NR) {
                        let width = NR.min(nc - s * NR);
                        let bstrip = &bpack[s * NR * kc..][..NR * kc];
                        for t in 0..mc.div_ceil(MR) {
                            let height = MR.min(mc - t * MR);
                            let astrip = &apack[t * MR * kc..][..MR * kc];
                            let (row, col) = (ic + t * MR, jc + s * NR);
                            // SAFETY: the strips hold kc·MR and kc·NR floats; the tile's
                            // rows row..row+height and columns col..col+width lie inside C.
                            unsafe {
                                tile_kernel(
                                    kc,
                                    astrip.as_ptr(),
                                    bstrip.as_ptr(),
                                    c.ptr.add(row * c.stride + col),
                                    c.stride,
                                    height,
                                    width,
                                    add,
                                )
                            };
                        }
                    }
                }
            }
        }
    });
}

/// Packs M[r0..r0+kc, c0..c0+n] into W-wide strips: strip s holds, for each l, the W values of
/// row r0+l from column c0 + s·W on, zero past column c0+n. B is packed as it is (W = NR), A as
/// its transpose (W = MR: each strip then holds MR rows of A, column by column).
fn pack_strips<const W: usize>(
    m: Operand,
    r0: usize,
    kc: usize,
    c0: usize,
    n: usize,
    pack: &mut [f32],
) {
    for s in 0..n.div_ceil(W) {
        let col0 = c0 + s * W;
        let width = W.min(c0 + n - col0);
        let strip = &mut pack[s * W * kc..][..W * kc];
        if m.col_stride == 1 {
            for (l, dst) in strip.chunks_exact_mut(W).enumerate() {
                let start = (r0 + l) * m.row_stride + col0;
                dst[..width].copy_from_slice(&m.data[start..start + width]);
                dst[width..].fill(0.0);
            }
        } else if m.row_stride == 1 {
            // Whole 16×16 blocks by register transposes, the rest element by element.
            let (blocks_j, blocks_l) = if W.is_multiple_of(16) {
                (width / 16 * 16, kc / 16 * 16)
            } else {
                (0, 0)
            };
            for j0 in (0..blocks_j).step_by(16) {
                let start = (col0 + j0) * m.col_stride + r0;
                // The block's last source row ends at start + 15·col_stride + kc.
                assert!(start + 15 * m.col_stride + kc <= m.data.len());
                for l0 in (0..blocks_l).step_by(16) {
                    // SAFETY: rows j0..j0+16 of the source, from l0, hold 16 floats each
                    // (checked above; l0 + 16 ≤ kc); the strip's rows l0..l0+16 have W ≥ j0 + 16
                    // floats; the CPU has AVX-512F (this module runs only then).
                    unsafe {
                        transpose16(
                            m.data.as_ptr().add(start + l0),
                            m.col_stride,
                            strip.as_mut_ptr().add(l0 * W + j0),
                            W,
                        )
                    };
                }
            }
            for j in 0..width {
                let start = (col0 + j) * m.col_stride + r0;
                let from = if j < blocks_j { blocks_l } else { 0 };
                for (l, &v) in m.data[start..start + kc].iter().enumerate().skip(from) {
                    strip[l * W + j] = v;
                }
            }
            if width < W {
                for dst in strip.chunks_exact_mut(W) {
                    dst[width..].fill(0.0);
                }
            }
        } else {
            for (l, dst) in strip.chunks_exact_mut(W).enumerate() {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = if j < width {
                        m.data[(r0 + l) * m.row_stride + (col0 + j) * m.col_stride]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// dst[l·dst_stride + j] = src[j·src_stride + l] for j, l in 0..16.
///
/// # Safety
/// `src` has 16 rows of 16 readable floats `src_stride` apart, `dst` 16 rows of 16 writable
/// floats `dst_stride` apart; the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    let mut r = [_mm512_setzero_ps(); 16];
    for (j, row) in r.iter_mut().enumerate() {
        *row = _mm512_loadu_ps(src.add(j * src_stride));
    }
    // Within each 128-bit lane q: pairs of rows interleaved, then quadruples, so that
    // r[4i + c] lane q holds rows 4i..4i+4 at column 4q + c.
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for i in 0..4 {
        let pd = |v: __m512| _mm512_castps_pd(v);
        let (a, b, c, d) = (
            pd(t[4 * i]),
            pd(t[4 * i + 1]),
            pd(t[4 * i + 2]),
            pd(t[4 * i + 3]),
        );
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    // Then 128-bit lanes: even and odd lanes of row groups 0-3 | 4-7 and 8-11 | 12-15 ...
    for c in 0..4 {
        t[c] = _mm512_shuffle_f32x4::<0x88>(r[c], r[4 + c]);
        t[4 + c] = _mm512_shuffle_f32x4::<0xdd>(r[c], r[4 + c]);
        t[8 + c] = _mm512_shuffle_f32x4::<0x88>(r[8 + c], r[12 + c]);
        t[12 + c] = _mm512_shuffle_f32x4::<0xdd>(r[8 + c], r[12 + c]);
    }
    // ... and of those, so that column c gathers all 16 rows.
    for c in 0..4 {
        let cols = [
            (c, _mm512_shuffle_f32x4::<0x88>(t[c], t[8 + c])),
            (8 + c, _mm512_shuffle_f32x4::<0xdd>(t[c], t[8 + c])),
            (4 + c, _mm512_shuffle_f32x4::<0x88>(t[4 + c], t[12 + c])),
            (12 + c, _mm512_shuffle_f32x4::<0xdd>(t[4 + c], t[12 + c])),
        ];
        for (l, v) in cols {
            _mm512_storeu_ps(dst.add(l * dst_stride), v);
        }
    }
}

/// Never called: [`available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn transpose16(_: *const f32, _: usize, _: *mut f32, _: usize) {
    unreachable!("AVX-512 product off x86-64")
}

/// One MR × NR tile: C[0..height, 0..width] (+)= Σ_l a[l]ᵀ·b[l] over the packed strips.
///
/// # Safety
/// `a` holds kc·MR floats, `b` kc·NR, and C has `height` ≤ MR rows of `stride` floats from `c`,
/// each with at least `width` ≤ NR writable floats; the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_kernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    stride: usize,
    height: usize,
    width: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for l in 0..kc {
        let b0 = _mm512_loadu_ps(b.add(l * NR));
        let b1 = _mm512_loadu_ps(b.add(l * NR + 16));
        let al = a.add(l * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*al.add(i));
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
    }
    // Lanes of each half that belong to C.
    let lanes = |half: usize| -> __mmask16 {
        let w = width.saturating_sub(16 * half).min(16);
        ((1u32 << w) - 1) as __mmask16
    };
    let (m0, m1) = (lanes(0), lanes(1));
    for (i, row) in acc.iter().enumerate().take(height) {
        let out = c.add(i * stride);
        let (mut v0, mut v1) = (row[0], row[1]);
        if width == NR {
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_loadu_ps(out));
                v1 = _mm512_add_ps(v1, _mm512_loadu_ps(out.add(16)));
            }
            _mm512_storeu_ps(out, v0);
            _mm512_storeu_ps(out.add(16), v1);
        } else {
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, out));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, out.add(16)));
            }
            _mm512_mask_storeu_ps(out, m0, v0);
            _mm512_mask_storeu_ps(out.add(16), m1, v1);
        }
    }
}

/// Never called: [`available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_kernel(
    _: usize,
    _: *const f32,
    _: *const f32,
    _: *mut f32,
    _: usize,
    _: usize,
    _: usize,
    _: bool,
) {
    unreachable!("AVX-512 product off x86-64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 29 + seed * 7) % 23) as f32 - 11.0) / 8.0)
            .collect()
    }

    /// Row-major data of `rows`×`cols`, viewed directly or as the transpose of its transpose.
    fn view(data: &[f32], rows: usize, cols: usize, transposed_storage: bool) -> Operand<'_> {
        if transposed_storage {
            Operand::new(data, cols, rows).t()
        } else {
            Operand::new(data, rows, cols)
        }
    }

    fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols * rows)
            .map(|i| data[(i % rows) * cols + i / rows])
            .collect()
    }

    /// Every element lands at its transposed place, between rows of other strides, and nothing
    /// beyond the 16×16 block is written.
    #[test]
    fn transpose16_transposes_one_block_in_place_of_its_rows() {
        if !available() {
            eprintln!("no AVX-512F here: nothing to check");
            return;
        }
        let (src_stride, dst_stride) = (19, 24);
        let src: Vec<f32> = (0..16 * src_stride).map(|i| i as f32).collect();
        let mut dst = vec![-1.0f32; 16 * dst_stride];
        // SAFETY: 16 rows of 16 floats at both strides lie inside both buffers; AVX-512F checked.
        unsafe { transpose16(src.as_ptr(), src_stride, dst.as_mut_ptr(), dst_stride) };
        for l in 0..16 {
            for j in 0..dst_stride {
                let expected = if j < 16 {
                    src[j * src_stride + l]
                } else {
                    -1.0
                };
                assert_eq!(dst[l * dst_stride + j], expected, "dst[{l}][{j}]");
            }
        }
    }

    /// Against the f64 definition, for every layout of A and B, with and without accumulation,
    /// on shapes with partial tiles, several k blocks, several column blocks, and both ways of
    /// splitting over threads; a transposed B is packed by 16×16 blocks where its strips hold
    /// them, element by element around them.
    #[test]
    fn matches_the_definition_for_every_layout_and_split() {
        if !available() {
            eprintln!("no AVX-512F here: nothing to check");
            return;
        }
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (8, 9, 32),
            (16, 9, 3000),
            (13, 300, 70),
            (16, 3000, 9),
            (32, 2000, 144),
            (9, 16, 1500),
            (130, 40, 1100),
        ];
        for (m, k, n) in shapes {
            let a = ramp(m * k, m);
            let b = ramp(k * n, n);
            let (at, bt) = (transpose(&a, m, k), transpose(&b, k, n));
            let expected: Vec<f64> = (0..m * n)
                .map(|ij| {
                    let (i, j) = (ij / n, ij % n);
                    (0..k)
                        .map(|l| a[i * k + l] as f64 * b[l * n + j] as f64)
                        .sum()
                })
                .collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let av = view(if ta { &at } else { &a }, m, k, ta);
                let bv = view(if tb { &bt } else { &b }, k, n, tb);
                let mut plain = vec![f32::NAN; m * n];
                matmul(av, bv, &mut plain, false);
                let mut added = vec![0.5f32; m * n];
                matmul(av, bv, &mut added, true);
                for (ij, e) in expected.iter().enumerate() {
                    let tol = 1e-5 * (1.0 + k as f64);
                    let what = format!("{m}x{k}x{n} {ta} {tb} [{ij}]");
                    assert!((plain[ij] as f64 - e).abs() < tol, "{what}: {}", plain[ij]);
                    assert!((added[ij] as f64 - 0.5 - e).abs() < tol, "{what} acc");
                }
            }
        }
    }
}
