//! Weight norm versus direction under BN's scale invariance (BN-METRICS.md, section 5).
//!
//! Applies per output-channel filter w_c of a conv feeding a BN in train mode. Weights are
//! row-major (out_channels, ...): row c is the c-th of `rows` equal contiguous chunks.
//! The zero vector has no direction: it counts as orthogonal to everything (cosine 0,
//! angle π/2).

use super::lanes::{add_terms, runs, widest_lanes, LaneSums, LaneWork, STEP_LANES};
use super::split_equal;

/// Euclidean norm ||w||, accumulated in f64.
pub fn norm(w: &[f32]) -> f64 {
    pair_sum(w, w, |x, _| x * x).sqrt()
}

/// Σ f(a_i, b_i) in f64 with eight partial sums: no longer a dependency chain than one sum (so
/// no less accurate), and the loop vectorises. The engine runs these over every weight of
/// every layer every step.
fn pair_sum(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0.0f64; LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = (chunks_a.remainder().iter())
        .zip(chunks_b.remainder())
        .map(|(&x, &y)| f(f64::from(x), f64::from(y)))
        .sum();
    for (xs, ys) in chunks_a.zip(chunks_b) {
        for l in 0..LANES {
            lanes[l] += f(f64::from(xs[l]), f64::from(ys[l]));
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Dot product a·b, accumulated in f64.
///
/// # Panics
/// If the lengths differ.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(
        a.len(),
        b.len(),
        "dot product of vectors of different lengths"
    );
    pair_sum(a, b, |x, y| x * y)
}

/// cos(a, b) = a·b/(||a|| ||b||) in [-1, 1]; 0 if either is the zero vector. In train mode
/// cos(w_c, ∇_{w_c} L) is small but not rounding: BN's ε leaves the radial part
/// [`epsilon_radial_gradient`] (median ~4e-5 in the default run, 1e-2 and more once weight
/// decay has shrunk the filters so that σ²_B is no longer large next to ε).
///
/// # Panics
/// If the lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = dot(a, b);
    let norms = norm(a) * norm(b);
    if norms == 0.0 {
        return 0.0;
    }
    // Rounding can leave |cos| a hair above 1; clamp keeps NaN.
    (dot / norms).clamp(-1.0, 1.0)
}

/// Angle between a and b in radians, in [0, π]: 2·atan2(||â - b̂||, ||â + b̂||), accurate
/// down to tiny angles where acos(cos) loses half the digits (θ ≈ 1e-6 is typical of one SGD
/// step). π/2 if either is the zero vector.
///
/// # Panics
/// If the lengths differ.
pub fn angle(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(
        a.len(),
        b.len(),
        "angle between vectors of different lengths"
    );
    let (norm_a, norm_b) = (norm(a), norm(b));
    if norm_a == 0.0 || norm_b == 0.0 {
        return std::f64::consts::FRAC_PI_2;
    }
    // Multiplying by the reciprocals rather than dividing: the loops stay cheap.
    let (inv_a, inv_b) = (norm_a.recip(), norm_b.recip());
    let diff_sq = pair_sum(a, b, |x, y| {
        let d = x * inv_a - y * inv_b;
        d * d
    });
    let sum_sq = pair_sum(a, b, |x, y| {
        let s = x * inv_a + y * inv_b;
        s * s
    });
    2.0 * diff_sq.sqrt().atan2(sum_sq.sqrt())
}

/// ||w_c|| for each of the `rows` rows (output channels) of a row-major weight.
///
/// # Panics
/// If `rows` is 0 or does not divide `w.len()`.
pub fn row_norms(w: &[f32], rows: usize) -> Vec<f64> {
    split_equal(w, rows).map(norm).collect()
}

/// [`row_norms`] as f32, what a snapshot carries (one allocation, no f64 copy).
///
/// # Panics
/// If `rows` is 0 or does not divide `w.len()`.
pub fn row_norms_f32(w: &[f32], rows: usize) -> Vec<f32> {
    split_equal(w, rows).map(|r| norm(r) as f32).collect()
}

/// cos(w_c, g_c) per row; typically g is the gradient ∇_w L (layer value: max |cos|).
///
/// # Panics
/// If `w` and `g` differ in length, or `rows` is 0 or does not divide their length.
pub fn row_cosines(w: &[f32], g: &[f32], rows: usize) -> Vec<f64> {
    assert_eq!(w.len(), g.len(), "weight and gradient of different lengths");
    split_equal(w, rows)
        .zip(split_equal(g, rows))
        .map(|(w, g)| cosine(w, g))
        .collect()
}

/// w_c·∇_{w_c} L for a filter feeding a train-mode BN with ε: γ_c (∂L/∂γ_c) ε/(σ²_B + ε), with
/// σ²_B the biased batch variance the layer normalises with. Scaling w_c by α scales h - μ_B by
/// α but √(σ²_B + ε) by less: ∂y/∂α at α = 1 is γ x̂ ε/(σ²_B + ε), and Σ_i (∂L/∂y_i) x̂_i is
/// ∂L/∂γ. With ε = 0 the layer is scale invariant and this is 0; with ε > 0 the gradient has
/// this radial part, so cos(w_c, g_c) = it / (||w_c|| ||g_c||). A conv bias does not change it
/// (the mean subtraction removes it from h - μ_B).
pub fn epsilon_radial_gradient(gamma: f64, grad_gamma: f64, batch_var: f64, epsilon: f64) -> f64 {
    gamma * grad_gamma * epsilon / (batch_var + epsilon)
}

/// The cos(w_c, g_c) that BN's ε residual predicts for a filter feeding a train-mode BN:
/// [`epsilon_radial_gradient`]/(‖w_c‖‖g_c‖), with g_c the loss gradient (no weight decay).
/// Its sign is sign(γ ∂L/∂γ). None when either norm is 0 or not finite (no direction).
pub fn epsilon_cosine(
    gamma: f64,
    grad_gamma: f64,
    batch_var: f64,
    epsilon: f64,
    weight_norm: f64,
    grad_norm: f64,
) -> Option<f64> {
    let norms = weight_norm * grad_norm;
    (norms > 0.0 && norms.is_finite()).then(|| {
        (epsilon_radial_gradient(gamma, grad_gamma, batch_var, epsilon) / norms).clamp(-1.0, 1.0)
    })
}

/// Angular update θ_c = angle(w_c before, w_c after) per row (layer value: RMS over rows).
///
/// # Panics
/// If `before` and `after` differ in length, or `rows` is 0 or does not divide their length.
pub fn row_angles(before: &[f32], after: &[f32], rows: usize) -> Vec<f64> {
    assert_eq!(before.len(), after.len(), "weights of different lengths");
    split_equal(before, rows)
        .zip(split_equal(after, rows))
        .map(|(b, a)| angle(b, a))
        .collect()
}

/// The sums over one filter row that its per-step readings need, from the row before (b) and
/// after (a) the optimizer step and its gradient (g), with d = a - b the step ([`move_sums`]).
/// See [`step_sums`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepSums {
    /// Σb²
    pub before_sq: f64,
    /// Σa²
    pub after_sq: f64,
    /// Σg²
    pub grad_sq: f64,
    /// Σd²
    pub step_sq: f64,
    /// Σb·g
    pub before_grad: f64,
    /// Σb·d
    pub before_step: f64,
}

impl StepSums {
    /// ‖a‖: [`norm`] of the row after the step, to f32 accuracy ([`triple_sum`]).
    pub fn after_norm(&self) -> f64 {
        self.after_sq.sqrt()
    }

    /// ‖g‖: [`norm`] of the gradient, to f32 accuracy.
    pub fn grad_norm(&self) -> f64 {
        self.grad_sq.sqrt()
    }

    /// cos(b, g): [`cosine`] of the row before the step and its gradient, to about 1e-6.
    pub fn grad_cosine(&self) -> f64 {
        cosine_of(
            self.before_grad,
            self.before_sq.sqrt() * self.grad_sq.sqrt(),
        )
    }

    /// cos(b, d): the radial fraction of the step ([`radial_fraction`]).
    pub fn step_cosine(&self) -> f64 {
        cosine_of(
            self.before_step,
            self.before_sq.sqrt() * self.step_sq.sqrt(),
        )
    }

    /// The angle the row turned by, [`angle`]`(b, a)`: a = b + d has ‖b‖ + d·b̂ along b̂ and
    /// ‖d⊥‖ across it, ‖d⊥‖² = ‖d‖² - (d·b̂)², so θ = atan2(‖d⊥‖, ‖b‖ + d·b̂), accurate at tiny
    /// angles (no acos): the sums' errors scale with ‖d‖, not ‖b‖, so ‖d⊥‖² is within about
    /// 3·5e-7·‖d‖² ([`triple_sum`]). The subtraction loses digits when the step is almost all
    /// radial (weight decay on a filter with no gradient): None when ‖d⊥‖² < 1e-2·‖d‖², which
    /// keeps θ's relative error below about 1e-4 (1e-6 for a step that mostly turns, as
    /// gradient steps do); [`angle`] of the rows is then accurate. π/2 if either row is zero;
    /// NaN in, NaN out.
    pub fn angle(&self) -> Option<f64> {
        self.angle_sides()
            .map(|(across, along)| across.atan2(along))
    }

    /// Whether [`Self::angle`] reads the angle from the sums (it is `Some`). The training thread
    /// asks this of every row, so it takes no root or division: ‖d⊥‖² < s·‖d‖² with
    /// ‖d⊥‖² = ‖d‖² - (b·d)²/‖b‖² is (1 - s)·‖d‖²·‖b‖² < (b·d)². NaN reads (as NaN).
    pub fn reads_angle(&self) -> bool {
        self.has_zero_row() || !self.too_radial()
    }

    fn has_zero_row(&self) -> bool {
        self.before_sq == 0.0 || self.after_sq == 0.0
    }

    /// (1 - s)·‖d‖²·‖b‖² < (b·d)²: see [`Self::reads_angle`].
    fn too_radial(&self) -> bool {
        (1.0 - MIN_ACROSS_SHARE) * self.step_sq * self.before_sq
            < self.before_step * self.before_step
    }

    /// ‖d⊥‖ and ‖b‖ + d·b̂, the sides whose atan2 is [`Self::angle`]; (1, 0) for π/2.
    fn angle_sides(&self) -> Option<(f64, f64)> {
        if self.has_zero_row() {
            return Some((1.0, 0.0));
        }
        if self.too_radial() {
            return None;
        }
        let before_norm = self.before_sq.sqrt();
        let along = self.before_step / before_norm;
        // At least about s·‖d‖² (`reads_angle`), so positive.
        let across_sq = self.step_sq - along * along;
        Some((across_sq.sqrt(), before_norm + along))
    }
}

impl StepSums {
    /// The angle the row turned by, given the row before and after the step: [`Self::angle`],
    /// or for a step too nearly radial for the sums, [`angle`] of the rows (two more passes).
    pub fn row_angle(&self, before: &[f32], after: &[f32]) -> f64 {
        self.angle().unwrap_or_else(|| angle(before, after))
    }
}

/// Least share ‖d⊥‖²/‖d‖² of a step for which [`StepSums::angle`] reads the angle from the sums.
const MIN_ACROSS_SHARE: f64 = 1e-2;

/// dot/norms in [-1, 1] as [`cosine`] computes it; 0 without a direction, NaN kept.
fn cosine_of(dot: f64, norms: f64) -> f64 {
    if norms == 0.0 {
        return 0.0;
    }
    (dot / norms).clamp(-1.0, 1.0)
}

/// Every sum of [`StepSums`] over a row before (b) and after (a) a step and its gradient (g):
/// [`grad_sums`] and [`move_sums`].
///
/// # Panics
/// If the lengths differ.
pub fn step_sums(before: &[f32], after: &[f32], grad: &[f32]) -> StepSums {
    StepSums::new(grad_sums(before, grad), move_sums(before, after))
}

impl StepSums {
    /// From a row's [`grad_sums`] and [`move_sums`].
    pub fn new(grad: GradSums, moved: MoveSums) -> StepSums {
        StepSums {
            before_sq: grad.before_sq,
            after_sq: moved.after_sq,
            grad_sq: grad.grad_sq,
            step_sq: moved.step_sq,
            before_grad: grad.before_grad,
            before_step: moved.before_step,
        }
    }
}

/// The sums a row and its gradient give before the step: the engine takes them while the
/// gradient is still there to be read in place.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GradSums {
    /// Σb²
    pub before_sq: f64,
    /// Σg²
    pub grad_sq: f64,
    /// Σb·g
    pub before_grad: f64,
}

/// The sums of a row before and after the step, with d = a - b ([`move_sums`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MoveSums {
    /// Σa²
    pub after_sq: f64,
    /// Σd²
    pub step_sq: f64,
    /// Σb·d
    pub before_step: f64,
}

/// Σb², Σg² and Σb·g in one pass ([`triple_sum`]: to about 1e-6 of Σ|terms|).
///
/// # Panics
/// If the lengths differ.
pub fn grad_sums(before: &[f32], grad: &[f32]) -> GradSums {
    assert_eq!(
        before.len(),
        grad.len(),
        "a row and a gradient of different lengths"
    );
    GradSums::from(triple_sum(before, grad, grad_terms))
}

/// One element's terms of [`GradSums`]: b², g², b·g.
#[inline(always)]
pub fn grad_terms(b: f32, g: f32) -> [f32; 3] {
    [b * b, g * g, b * g]
}

impl From<[f64; 3]> for GradSums {
    /// From the sums of [`grad_terms`].
    fn from([before_sq, grad_sq, before_grad]: [f64; 3]) -> GradSums {
        GradSums {
            before_sq,
            grad_sq,
            before_grad,
        }
    }
}

/// Σa², Σd² and Σb·d (d = a - b) in one pass ([`triple_sum`]). d is taken in f32, which is
/// exact wherever a is within a factor of two of b (Sterbenz), as it is for every weight a
/// step moves by less than its size.
///
/// # Panics
/// If the lengths differ.
pub fn move_sums(before: &[f32], after: &[f32]) -> MoveSums {
    assert_eq!(before.len(), after.len(), "rows of different lengths");
    MoveSums::from(triple_sum(before, after, move_terms))
}

/// One element's terms of [`MoveSums`], with d = a - b: a², d², b·d.
#[inline(always)]
pub fn move_terms(b: f32, a: f32) -> [f32; 3] {
    let d = a - b;
    [a * a, d * d, b * d]
}

impl From<[f64; 3]> for MoveSums {
    /// From the sums of [`move_terms`].
    fn from([after_sq, step_sq, before_step]: [f64; 3]) -> MoveSums {
        MoveSums {
            after_sq,
            step_sq,
            before_step,
        }
    }
}

/// Three sums of f(x_i, y_i) in one pass, f in f32, in [`LaneSums`]: within about 5e-7 of the
/// sum of |terms| of the exact sums, f32-level accuracy, which is what the snapshot publishes.
#[inline(always)]
fn triple_sum<F: Fn(f32, f32) -> [f32; 3]>(x: &[f32], y: &[f32], f: F) -> [f64; 3] {
    assert_eq!(x.len(), y.len(), "sums over slices of different lengths");
    widest_lanes(TripleSum { x, y, f })
}

struct TripleSum<'a, F> {
    x: &'a [f32],
    y: &'a [f32],
    f: F,
}

impl<F: Fn(f32, f32) -> [f32; 3]> LaneWork<3> for TripleSum<'_, F> {
    type Output = [f64; 3];

    #[inline(always)]
    fn run(self, sums: &mut LaneSums<3>) -> [f64; 3] {
        let (xs, x_tail) = self.x.as_chunks::<STEP_LANES>();
        let (ys, y_tail) = self.y.as_chunks::<STEP_LANES>();
        for run in runs(xs.len()) {
            let mut acc = [[0.0; STEP_LANES]; 3];
            for (x, y) in xs[run.clone()].iter().zip(&ys[run]) {
                for l in 0..STEP_LANES {
                    add_terms(&mut acc, l, (self.f)(x[l], y[l]));
                }
            }
            sums.add_run(&acc);
        }
        for (&x, &y) in x_tail.iter().zip(y_tail) {
            sums.add_element((self.f)(x, y));
        }
        sums.take_totals()
    }
}

/// [`step_sums`] of each of the `rows` rows (output channels) of row-major weights, and the
/// angle each row turned by ([`StepSums::row_angle`]).
///
/// # Panics
/// If the lengths differ, or `rows` is 0 or does not divide them.
pub fn row_step_sums<'a>(
    before: &'a [f32],
    after: &'a [f32],
    grad: &'a [f32],
    rows: usize,
) -> impl Iterator<Item = (StepSums, f64)> + 'a {
    split_equal(before, rows)
        .zip(split_equal(after, rows))
        .zip(split_equal(grad, rows))
        .map(|((b, a), g)| {
            let sums = step_sums(b, a, g);
            (sums, sums.row_angle(b, a))
        })
}

/// Effective learning rate of the direction, η/||w||² (ŵ <- ŵ - η_eff (I - ŵŵᵀ)∇L(ŵ)).
pub fn effective_lr(lr: f64, norm_sq: f64) -> f64 {
    lr / norm_sq
}

/// Equilibrium angular update per step with coupled L2 weight decay (SGD with momentum μ:
/// v <- μv + g + λw, w <- w - ηv): θ* = sqrt(2ηλ/(1 + μ)).
/// Check: (0.1, 5e-4, 0.9) -> 0.00725 rad (0.0073 measured).
pub fn theta_star_coupled(lr: f64, wd: f64, momentum: f64) -> f64 {
    (2.0 * lr * wd / (1.0 + momentum)).sqrt()
}

/// Equilibrium angular update per step with decoupled weight decay:
/// θ* = sqrt(2ηλ(1 - μ)/(1 + μ)). Check: (0.1, 5e-3, 0) -> 0.0316 (0.0324 measured).
pub fn theta_star_decoupled(lr: f64, wd: f64, momentum: f64) -> f64 {
    (2.0 * lr * wd * (1.0 - momentum) / (1.0 + momentum)).sqrt()
}

/// Steps to reach the coupled equilibrium, τ ≈ (1 - μ)/(4ηλ).
pub fn equilibrium_steps_coupled(lr: f64, wd: f64, momentum: f64) -> f64 {
    (1.0 - momentum) / (4.0 * lr * wd)
}

/// Steps to reach the decoupled equilibrium, τ ≈ 1/(4ηλ) (independent of momentum).
pub fn equilibrium_steps_decoupled(lr: f64, wd: f64) -> f64 {
    1.0 / (4.0 * lr * wd)
}

/// Radial fraction of a step, ŵ·Δw/||Δw|| = cos(w, Δw): ≈ 0 for plain SGD without weight decay
/// or momentum (the gradient is orthogonal to w), negative under weight decay. 0 if either is
/// the zero vector.
///
/// # Panics
/// If the lengths differ.
pub fn radial_fraction(w: &[f32], dw: &[f32]) -> f64 {
    cosine(w, dw)
}

/// Without weight decay a scale-invariant filter's angular update falls as t^(-1/2) and its norm
/// grows as t^(1/4) (BN-METRICS §5), while the gradients keep their size.
pub const NO_DECAY_ANGLE_EXPONENT: f64 = -0.5;
pub const NO_DECAY_NORM_EXPONENT: f64 = 0.25;

/// y = scale·t^exponent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerLaw {
    pub exponent: f64,
    pub scale: f64,
}

/// Least-squares fit of ln y = ln scale + exponent·ln t (the log-log slope) over the points with
/// t > 0 and y > 0. None with fewer than two such points or a single t.
pub fn fit_power_law(points: &[(f64, f64)]) -> Option<PowerLaw> {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|(t, y)| *t > 0.0 && *y > 0.0)
        .map(|(t, y)| (t.ln(), y.ln()))
        .collect();
    let n = logs.len() as f64;
    let (mx, my) = logs
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (sxy, sxx) = logs.iter().fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
        (sxy + (x - mx) * (y - my), sxx + (x - mx) * (x - mx))
    });
    (logs.len() >= 2 && sxx > 0.0).then(|| {
        let exponent = sxy / sxx;
        PowerLaw {
            exponent,
            scale: (my - exponent * mx).exp(),
        }
    })
}

/// The scale of y = scale·t^exponent with the exponent given: the least-squares fit in log
/// space, exp(mean(ln y - exponent·ln t)), over the points with t > 0 and y > 0.
pub fn power_law_scale(points: &[(f64, f64)], exponent: f64) -> Option<f64> {
    let logs: Vec<f64> = points
        .iter()
        .filter(|(t, y)| *t > 0.0 && *y > 0.0)
        .map(|(t, y)| y.ln() - exponent * t.ln())
        .collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

/// Radial fraction of a plain SGD step (no momentum) with weight decay λ on a scale-invariant
/// filter, given the step's angle θ: the step -η(g + λw) has radial part ηλ||w|| and, since
/// g ⊥ w, tangential part η||g|| = (1 - ηλ)||w|| tan θ; so -ηλ/sqrt((ηλ)² + ((1-ηλ) tan θ)²).
/// Coupled and decoupled decay agree without momentum. 0 when λ = 0; -1 when θ = 0 and λ > 0.
pub fn radial_fraction_sgd(lr: f64, wd: f64, theta: f64) -> f64 {
    let shrink = lr * wd;
    let tangential = (1.0 - shrink) * theta.tan();
    let norm = shrink.hypot(tangential);
    if norm == 0.0 {
        0.0
    } else {
        -shrink / norm
    }
}

/// ||w_{t+1}||² after a plain SGD step with no weight decay: ||w||² + η²||g||² (exact, since
/// w·g = 0): the norm only grows.
pub fn sgd_norm_growth(norm_sq: f64, lr: f64, grad_norm_sq: f64) -> f64 {
    norm_sq + lr * lr * grad_norm_sq
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::lanes::F32_RUN;
    use crate::metrics::test_util::assert_close;
    use std::f64::consts::FRAC_PI_2;

    /// A step -η(g + λw) with g ⊥ w, built explicitly: its measured cos(w, Δw) and angle give
    /// the closed form back.
    #[test]
    fn radial_fraction_of_an_sgd_step_from_its_angle() {
        let (lr, wd) = (0.1, 5e-3);
        let w = [3.0f32, -1.0, 2.0, 0.5];
        let g = [1.0f32, 2.0, -0.5, -0.0]; // w·g = 3 - 2 - 1 + 0 = 0
        assert_close(dot(&w, &g), 0.0, 1e-12);
        let dw: Vec<f32> = w
            .iter()
            .zip(&g)
            .map(|(&w, &g)| -(lr as f32) * (g + wd as f32 * w))
            .collect();
        let after: Vec<f32> = w.iter().zip(&dw).map(|(a, b)| a + b).collect();
        let theta = angle(&w, &after);
        assert_close(
            radial_fraction_sgd(lr, wd, theta),
            radial_fraction(&w, &dw),
            1e-6,
        );
        assert_eq!(radial_fraction_sgd(lr, 0.0, theta), 0.0);
        assert_eq!(radial_fraction_sgd(lr, wd, 0.0), -1.0);
    }

    /// One channel of conv + train-mode BN, in f64: h_i = w·x_i + b, y = γ(h - μ_B)/√(σ²_B + ε) + β,
    /// and a loss that is not linear in y.
    struct TinyBn {
        x: Vec<[f64; 3]>,
        bias: f64,
        beta: f64,
        epsilon: f64,
    }

    impl TinyBn {
        fn new(epsilon: f64) -> TinyBn {
            let mut noise = crate::metrics::test_util::Gaussian::new(11);
            TinyBn {
                x: (0..6)
                    .map(|_| [noise.sample(), noise.sample(), noise.sample()])
                    .collect(),
                bias: 0.7,
                beta: 0.1,
                epsilon,
            }
        }

        /// (h_i) and their biased batch variance.
        fn pre_bn(&self, w: [f64; 3]) -> (Vec<f64>, f64) {
            let h: Vec<f64> = self
                .x
                .iter()
                .map(|x| w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + self.bias)
                .collect();
            let n = h.len() as f64;
            let mean = h.iter().sum::<f64>() / n;
            let var = h.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            (h.iter().map(|v| v - mean).collect(), var)
        }

        fn loss(&self, w: [f64; 3], gamma: f64) -> f64 {
            let (centred, var) = self.pre_bn(w);
            let inv_std = (var + self.epsilon).sqrt().recip();
            centred
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let y = gamma * c * inv_std + self.beta;
                    (i as f64 - 2.5) * y.tanh() + 0.3 * y * y
                })
                .sum()
        }
    }

    /// w·∇_w L of a train-mode BN layer equals γ(∂L/∂γ)ε/(σ²_B + ε), both gradients by central
    /// finite differences in f64; with ε = 0 the gradient is orthogonal to w.
    #[test]
    fn epsilon_leaves_a_radial_gradient_of_gamma_grad_gamma_eps_over_var_plus_eps() {
        let (w, gamma, step) = ([0.3, -0.2, 0.5], 1.3, 1e-5);
        for epsilon in [0.0, 1e-3, 0.05, 0.4] {
            let layer = TinyBn::new(epsilon);
            let grad_w: Vec<f64> = (0..3)
                .map(|k| {
                    let (mut up, mut down) = (w, w);
                    up[k] += step;
                    down[k] -= step;
                    (layer.loss(up, gamma) - layer.loss(down, gamma)) / (2.0 * step)
                })
                .collect();
            let grad_gamma =
                (layer.loss(w, gamma + step) - layer.loss(w, gamma - step)) / (2.0 * step);
            let (_, var) = layer.pre_bn(w);
            let radial: f64 = w.iter().zip(&grad_w).map(|(a, b)| a * b).sum();
            let predicted = epsilon_radial_gradient(gamma, grad_gamma, var, epsilon);
            let grad_norm = grad_w.iter().map(|g| g * g).sum::<f64>().sqrt();
            assert!(grad_norm > 0.1, "a gradient worth measuring: {grad_norm}");
            assert_close(radial, predicted, 1e-8);
            // The cosine the lab predicts, against the one measured from the two gradients.
            let w_norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            let cos = epsilon_cosine(gamma, grad_gamma, var, epsilon, w_norm, grad_norm);
            assert_close(cos.expect("norms > 0"), radial / (w_norm * grad_norm), 1e-8);
            if epsilon > 0.0 {
                assert_eq!(cos.map(f64::signum), Some((gamma * grad_gamma).signum()));
            }
            if epsilon > 0.01 {
                assert!(predicted.abs() > 1e-3, "ε = {epsilon}: {predicted:e}");
            }
        }
    }

    #[test]
    fn no_epsilon_cosine_without_a_direction() {
        assert_eq!(epsilon_cosine(1.0, 0.1, 1e-5, 1e-5, 0.0, 1.0), None);
        assert_eq!(epsilon_cosine(1.0, 0.1, 1e-5, 1e-5, 1.0, f64::NAN), None);
        // σ²_B = ε: half of γ∂L/∂γ is radial.
        assert_close(
            epsilon_cosine(2.0, 0.1, 1e-5, 1e-5, 0.5, 0.4).expect("a cosine"),
            0.5,
            1e-12,
        );
    }

    #[test]
    fn power_law_fits_recover_exponent_and_scale() {
        let points: Vec<(f64, f64)> = (1..200)
            .map(|t| (f64::from(t), 0.3 * f64::from(t).powf(-0.5)))
            .chain([(0.0, 1.0), (5.0, 0.0)]) // not on a log scale: left out
            .collect();
        let law = fit_power_law(&points).expect("a fit");
        assert_close(law.exponent, -0.5, 1e-12);
        assert_close(law.scale, 0.3, 1e-12);
        assert_close(power_law_scale(&points, -0.5).expect("scale"), 0.3, 1e-12);
        assert_eq!(fit_power_law(&[(2.0, 1.0), (2.0, 3.0)]), None, "one t");
        assert_eq!(power_law_scale(&[(0.0, 1.0)], -0.5), None);
    }

    #[test]
    fn norms_dots_and_cosines() {
        assert_close(norm(&[3.0, 4.0]), 5.0, 1e-15);
        assert_close(dot(&[1.0, 2.0], &[3.0, -4.0]), -5.0, 1e-15);
        assert_close(cosine(&[1.0, 0.0], &[1.0, 1.0]), 0.5_f64.sqrt(), 1e-15);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        assert_close(cosine(&[2.0, 2.0], &[3.0, 3.0]), 1.0, 1e-15);
        assert!(cosine(&[f32::NAN, 1.0], &[1.0, 1.0]).is_nan());
        assert_eq!(row_norms(&[3.0, 4.0, 0.0, 2.0], 2), [5.0, 2.0]);
        let cos = row_cosines(&[1.0, 0.0, 1.0, 1.0], &[0.0, 5.0, -2.0, -2.0], 2);
        assert_close(cos[0], 0.0, 1e-15);
        assert_close(cos[1], -1.0, 1e-15);
    }

    #[test]
    fn angles_of_simple_pairs() {
        assert_close(angle(&[1.0, 0.0, 0.0], &[0.0, 2.0, 0.0]), FRAC_PI_2, 1e-15);
        let v = [0.3, -1.7, 2.9, 1e-3];
        assert_eq!(angle(&v, &v), 0.0);
        assert_close(
            angle(&[1.0, 0.0], &[-1.0, 0.0]),
            std::f64::consts::PI,
            1e-15,
        );
        assert_eq!(angle(&[0.0, 0.0], &[1.0, 0.0]), FRAC_PI_2);
        let angles = row_angles(&[1.0, 0.0, 1.0, 0.0], &[1.0, 0.0, 1.0, 1.0], 2);
        assert_eq!(angles[0], 0.0);
        assert_close(angles[1], std::f64::consts::FRAC_PI_4, 1e-15);
    }

    #[test]
    fn tiny_angles_are_accurate() {
        // The angle between (3, 4, 0) and (3, 4, c) is atan(c/5) exactly, for the f32 value c.
        // acos of the cosine would be off by ~1e-8 absolute, i.e. entirely wrong at 1e-7.
        for c in [1e-3_f32, 1e-5, 1e-7] {
            let expected = (f64::from(c) / 5.0).atan();
            let theta = angle(&[3.0, 4.0, 0.0], &[3.0, 4.0, c]);
            assert_close(theta, expected, 1e-12 * expected);
            // Scale does not matter (powers of two keep the f32 values exact).
            let (small, large) = (2.0_f32.powi(-60), 2.0_f32.powi(60));
            let theta = angle(
                &[3.0 * small, 4.0 * small, 0.0],
                &[3.0 * large, 4.0 * large, c * large],
            );
            assert_close(theta, expected, 1e-12 * expected);
        }
    }

    fn gaussian_row(noise: &mut crate::metrics::test_util::Gaussian, len: usize) -> Vec<f64> {
        (0..len).map(|_| noise.sample()).collect()
    }

    fn to_f32(xs: &[f64]) -> Vec<f32> {
        xs.iter().map(|&x| x as f32).collect()
    }

    /// Σ f(x_i, y_i) exactly for f32 inputs: each product of two f32 is exact in f64, and an
    /// f64 sum of a few hundred of them is exact to about 1e-14 of Σ|terms|.
    fn exact_sum(x: &[f32], y: &[f32], f: impl Fn(f64, f64) -> f64) -> (f64, f64) {
        let terms = x
            .iter()
            .zip(y)
            .map(|(&a, &b)| f(f64::from(a), f64::from(b)));
        (terms.clone().sum(), terms.map(f64::abs).sum())
    }

    /// The f32 runs of [`triple_sum`] keep every sum within its bound, (F32_RUN + 1)·2⁻²⁴ of
    /// Σ|terms|, of the exact one: random rows and steps of every size (an unrelated row, a
    /// large and a small SGD step), of lengths with and without whole runs and a tail past the
    /// lanes. The step's sums read d = a - b as the f32 difference, which is exact here.
    #[test]
    fn fused_sums_are_within_their_f32_bound() {
        let bound = (F32_RUN + 1) as f64 * f64::from(f32::EPSILON) / 2.0;
        let mut noise = crate::metrics::test_util::Gaussian::new(5);
        for len in [2, 5, 9, 16, 27, 144, 289, 16 * F32_RUN * 3 + 7] {
            for step_scale in [3.0, 0.1, 1e-3] {
                let before = gaussian_row(&mut noise, len);
                let step = gaussian_row(&mut noise, len);
                let after: Vec<f64> = (before.iter().zip(&step))
                    .map(|(b, d)| b + step_scale * d)
                    .collect();
                let grad = gaussian_row(&mut noise, len);
                let (b, a, g) = (to_f32(&before), to_f32(&after), to_f32(&grad));
                let d: Vec<f32> = a.iter().zip(&b).map(|(a, b)| a - b).collect();
                let sums = step_sums(&b, &a, &g);
                let checks = [
                    (sums.before_sq, exact_sum(&b, &b, |x, y| x * y)),
                    (sums.after_sq, exact_sum(&a, &a, |x, y| x * y)),
                    (sums.grad_sq, exact_sum(&g, &g, |x, y| x * y)),
                    (sums.before_grad, exact_sum(&b, &g, |x, y| x * y)),
                    (sums.step_sq, exact_sum(&d, &d, |x, y| x * y)),
                    (sums.before_step, exact_sum(&b, &d, |x, y| x * y)),
                ];
                for (k, (got, (exact, magnitude))) in checks.into_iter().enumerate() {
                    assert!(
                        (got - exact).abs() <= bound * magnitude,
                        "len {len}, step {step_scale}, sum {k}: {got} against {exact}"
                    );
                }
                assert_close(sums.after_norm(), norm(&a), 1e-6 * norm(&a));
                assert_close(sums.grad_cosine(), cosine(&b, &g), 1e-6);
                assert_close(sums.step_cosine(), cosine(&b, &d), 1e-6);
                let theta = angle(&b, &a);
                let fused = sums.angle().expect("a random step is not radial");
                assert_close(fused, theta, 1e-5 * theta);
            }
        }
    }

    /// Several rows at once: each row's readings and angle are those of its own slices.
    #[test]
    fn row_step_sums_split_rows_like_the_row_functions() {
        let mut noise = crate::metrics::test_util::Gaussian::new(6);
        let (rows, fan_in) = (4, 18);
        let before = to_f32(&gaussian_row(&mut noise, rows * fan_in));
        let after: Vec<f32> = (before.iter().zip(gaussian_row(&mut noise, rows * fan_in)))
            .map(|(&b, d)| b + (0.05 * d) as f32)
            .collect();
        let grad = to_f32(&gaussian_row(&mut noise, rows * fan_in));
        let (sums, angles): (Vec<StepSums>, Vec<f64>) =
            row_step_sums(&before, &after, &grad, rows).unzip();
        for (row, sums) in sums.iter().enumerate() {
            let slice = |w: &[f32]| w[row * fan_in..(row + 1) * fan_in].to_vec();
            assert_eq!(
                *sums,
                step_sums(&slice(&before), &slice(&after), &slice(&grad))
            );
        }
        let norms = row_norms(&after, rows);
        for (sums, norm) in sums.iter().zip(norms) {
            assert_close(sums.after_norm(), norm, 1e-6 * norm);
        }
        let cosines = row_cosines(&before, &grad, rows);
        for (sums, cosine) in sums.iter().zip(cosines) {
            assert_close(sums.grad_cosine(), cosine, 1e-6);
        }
        for (fused, theta) in angles.iter().zip(row_angles(&before, &after, rows)) {
            assert_close(*fused, theta, 1e-5 * theta);
        }
    }

    /// θ ≈ 1e-6 and 1e-7, one late SGD step: the angle from the sums is [`angle`]'s (accurate
    /// there, `tiny_angles_are_accurate`) to 1e-5 relative for a step that mostly turns, and to
    /// the documented 1e-4 when weight decay shrinks the filter five times more than it turns
    /// (‖d⊥‖²/‖d‖² ≈ 0.04). acos of the cosine would be off by 1e-4 relative at θ = 1e-6 however
    /// the step splits. A step almost all radial (‖d⊥‖²/‖d‖² = 4e-4, 1e-6) is left to [`angle`].
    #[test]
    fn step_sums_keep_tiny_angles() {
        let mut noise = crate::metrics::test_util::Gaussian::new(8);
        let before = gaussian_row(&mut noise, 288);
        let b = to_f32(&before);
        let norm_b = norm(&b);
        let cases = [
            (0.0, 1e-6, Some(1e-5)),
            (0.0, 1e-7, Some(1e-5)),
            (5e-7, 1e-6, Some(1e-5)),
            (5e-6, 1e-6, Some(1e-4)),
            (5e-5, 1e-6, None),
            (1e-3, 1e-6, None),
        ];
        for (shrink, turn, tolerance) in cases {
            // A direction across b, of length turn·‖b‖.
            let r = gaussian_row(&mut noise, 288);
            let along = r.iter().zip(&before).map(|(r, b)| r * b).sum::<f64>() / norm_b.powi(2);
            let across: Vec<f64> = r.iter().zip(&before).map(|(r, b)| r - along * b).collect();
            let scale = turn * norm_b / across.iter().map(|x| x * x).sum::<f64>().sqrt();
            let after: Vec<f64> = (before.iter().zip(&across))
                .map(|(b, t)| b * (1.0 - shrink) + scale * t)
                .collect();
            let a = to_f32(&after);
            let theta = angle(&b, &a);
            assert!(
                theta > turn / 2.0 && theta < turn * 2.0,
                "{turn}: {theta:e}"
            );
            let sums = step_sums(&b, &a, &b);
            let (_, row_angle) = row_step_sums(&b, &a, &b, 1).next().expect("one row");
            match tolerance {
                Some(tolerance) => {
                    let fused = sums.angle().expect("enough of the step turns");
                    assert_close(fused, theta, tolerance * theta);
                    assert_eq!(row_angle, fused);
                }
                None => {
                    assert_eq!(sums.angle(), None, "shrink {shrink}: all but radial");
                    assert_eq!(row_angle, theta);
                }
            }
        }
    }

    /// Zero rows have no direction, as for the per-quantity functions; NaN anywhere reaches
    /// exactly the readings that read it.
    #[test]
    fn step_sums_of_zero_rows_and_nan() {
        let w = [0.3f32, -1.2, 0.8, 2.0, -0.1, 0.4, 1.1, -0.7, 0.9];
        let zero = [0.0f32; 9];
        let from_zero = step_sums(&zero, &w, &w);
        assert_eq!(from_zero.angle(), Some(FRAC_PI_2));
        assert_eq!(angle(&zero, &w), FRAC_PI_2);
        assert_eq!(from_zero.grad_cosine(), 0.0);
        assert_eq!(from_zero.step_cosine(), 0.0);
        let to_zero = step_sums(&w, &zero, &zero);
        assert_eq!(to_zero.angle(), Some(FRAC_PI_2));
        assert_eq!((to_zero.after_norm(), to_zero.grad_norm()), (0.0, 0.0));
        assert_eq!(to_zero.grad_cosine(), 0.0);
        assert_close(to_zero.step_cosine(), -1.0, 1e-15);
        // A row turned around: all radial, left to `angle`.
        let turned: Vec<f32> = w.iter().map(|x| -x).collect();
        let (sums, theta) = row_step_sums(&w, &turned, &w, 1).next().expect("one row");
        assert_eq!(sums.angle(), None);
        assert_close(theta, std::f64::consts::PI, 1e-15);

        let mut nan = w;
        nan[4] = f32::NAN;
        let readings = |b: &[f32], a: &[f32], g: &[f32]| {
            let (sums, theta) = row_step_sums(b, a, g, 1).next().expect("one row");
            [
                theta,
                sums.after_norm(),
                sums.grad_norm(),
                sums.grad_cosine(),
                sums.step_cosine(),
            ]
            .map(f64::is_nan)
        };
        let step =
            |b: &[f32], a: &[f32]| -> Vec<f32> { a.iter().zip(b).map(|(a, b)| a - b).collect() };
        let shifted: Vec<f32> = w.iter().map(|x| x * 1.01 + 0.01).collect();
        let (nan, shifted, w): (&[f32], &[f32], &[f32]) = (&nan, &shifted, &w);
        for (b, a, g) in [(nan, shifted, w), (w, nan, w), (w, shifted, nan)] {
            let expected = [
                angle(b, a),
                norm(a),
                norm(g),
                cosine(b, g),
                cosine(b, &step(b, a)),
            ]
            .map(f64::is_nan);
            assert_eq!(readings(b, a, g), expected);
            assert!(expected.iter().any(|&x| x), "NaN goes somewhere");
        }
    }

    #[test]
    fn equilibrium_angles_match_the_documented_checks() {
        assert_close(theta_star_coupled(0.1, 5e-4, 0.9), 0.00725, 5e-6);
        assert_close(theta_star_decoupled(0.1, 5e-3, 0.0), 0.0316, 5e-5);
        assert_close(theta_star_coupled(0.1, 5e-3, 0.0), 0.0316, 5e-5);
        assert_close(
            theta_star_decoupled(0.1, 5e-4, 0.9),
            0.00725 * 0.1_f64.sqrt(),
            5e-6,
        );
        assert_close(equilibrium_steps_coupled(0.1, 5e-4, 0.9), 500.0, 1e-9);
        assert_close(equilibrium_steps_decoupled(0.1, 5e-4), 5000.0, 1e-9);
    }

    #[test]
    fn sgd_step_orthogonal_to_w_grows_the_norm_exactly() {
        // g ⟂ w: ||w - ηg||² = ||w||² + η²||g||², the step is purely tangential.
        let (w, g, lr) = ([3.0_f32, 4.0], [-4.0_f32, 3.0], 0.5);
        let next: Vec<f32> = w.iter().zip(&g).map(|(w, g)| w - lr * g).collect();
        let predicted = sgd_norm_growth(norm(&w).powi(2), f64::from(lr), norm(&g).powi(2));
        assert_close(norm(&next).powi(2), predicted, 1e-12);
        let step: Vec<f32> = next.iter().zip(&w).map(|(a, b)| a - b).collect();
        assert_close(radial_fraction(&w, &step), 0.0, 1e-15);
        // Pure weight decay shrinks w along itself: radial fraction -1.
        assert_close(radial_fraction(&w, &[-0.3, -0.4]), -1.0, 1e-7);
        assert_close(effective_lr(0.1, 4.0), 0.025, 1e-15);
    }
}
