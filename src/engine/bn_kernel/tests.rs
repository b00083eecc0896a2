//! The fused op against dfdx's own `forward_mut` (+ `relu`) and against finite differences.
use dfdx::nn::modules::BatchNorm2D;
use dfdx::prelude::*;

use super::{batch_norm_eval, batch_norm_train, Observe};
use crate::engine::batchnorm::{normalize_with_running_stats, BnInput};
use crate::engine::host::{from_host, to_host};
use crate::engine::model::BatchNorm;

type Taped = OwnedTape<f32, Cpu>;

/// dfdx's own BN with random γ, β and running statistics, so every term of the op shows.
fn random_bn<const C: usize>(dev: &Cpu) -> BatchNorm2D<C, f32, Cpu> {
    let mut bn: BatchNorm2D<C, f32, Cpu> = BuildModule::build(dev);
    bn.scale = dev.sample_normal::<Rank1<C>>() * 0.5 + 1.0;
    bn.bias = dev.sample_normal();
    bn.running_mean = dev.sample_normal();
    bn.running_var = dev.sample_uniform::<Rank1<C>>() + 0.5;
    bn.momentum = 0.3;
    bn
}

/// This crate's BN with the same parameters and state as dfdx's `bn` (its own tensors).
fn ours<const C: usize>(bn: &BatchNorm2D<C, f32, Cpu>) -> BatchNorm {
    let dev = bn.scale.device().clone();
    let copy = |t: &Tensor<Rank1<C>, f32, Cpu>| from_host(&dev, &to_host(t), (C,));
    BatchNorm {
        scale: copy(&bn.scale),
        bias: copy(&bn.bias),
        running_mean: copy(&bn.running_mean),
        running_var: copy(&bn.running_var),
        epsilon: bn.epsilon,
        momentum: bn.momentum,
    }
}

/// Everything one forward + backward produced: output, running stats after, dx, dγ, dβ.
struct Run {
    out: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    dx: Vec<f32>,
    d_gamma: Vec<f32>,
    d_beta: Vec<f32>,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    FusedTrain,
    DfdxTrain,
    FusedEval,
    DfdxEval,
}

/// Forward, then the backward of Σ out·weights (weights random, so dy is not constant).
/// `DfdxTrain` runs dfdx's own layer `reference`; the others this crate's `bn`.
fn run<const C: usize>(
    reference: &mut BatchNorm2D<C, f32, Cpu>,
    bn: &mut BatchNorm,
    x: &BnInput<NoneTape>,
    weights: &BnInput<NoneTape>,
    relu: bool,
    op: Op,
) -> Run {
    let shape = *x.shape();
    let traced: BnInput<Taped> = x.clone().leaky_trace();
    let relu_if = |y: BnInput<Taped>| if relu { y.relu() } else { y };
    let out = match op {
        Op::FusedTrain => batch_norm_train(traced, bn, relu, Observe::default()).out,
        Op::DfdxTrain => relu_if(
            reference
                .forward_mut(traced.reshape_like(&(Const::<C>, shape.1 * shape.2, shape.3)))
                .reshape_like(&shape),
        ),
        Op::FusedEval => batch_norm_eval(traced, bn, relu, Observe::default()).out,
        Op::DfdxEval => relu_if(normalize_with_running_stats(traced, bn)),
    };
    let out_host = to_host(&out);
    let grads = (out * weights.clone()).sum().backward();
    let dx = grads.get(x).as_vec();
    match op {
        Op::DfdxTrain => Run {
            out: out_host,
            running_mean: reference.running_mean.as_vec(),
            running_var: reference.running_var.as_vec(),
            dx,
            d_gamma: grads.get(&reference.scale).as_vec(),
            d_beta: grads.get(&reference.bias).as_vec(),
        },
        _ => Run {
            out: out_host,
            running_mean: bn.running_mean.as_vec(),
            running_var: bn.running_var.as_vec(),
            dx,
            d_gamma: grads.get(&bn.scale).as_vec(),
            d_beta: grads.get(&bn.bias).as_vec(),
        },
    }
}

/// max |a - b| over max |b|, so the tolerance is relative to the vector's scale.
fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let err = a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| {
        m.max((f64::from(x) - f64::from(y)).abs())
    });
    err / scale.max(1e-30)
}

fn compare<const C: usize>(
    seed: u64,
    batch: usize,
    side: usize,
    relu: bool,
    [fused, dfdx]: [Op; 2],
) {
    let dev = Cpu::seed_from_u64(seed);
    let mut reference = random_bn::<C>(&dev);
    // The dfdx-op version (eval mode) and the fused op each run on their own copy.
    let (mut reference_ours, mut fused_bn) = (ours(&reference), ours(&reference));
    let mut unused = reference.clone();
    // An offset mean: the centring must not lose precision.
    let x: BnInput<NoneTape> = dev.sample_normal_like(&(C, batch, side, side)) * 2.0 + 3.0;
    let weights: BnInput<NoneTape> = dev.sample_normal_like(x.shape());
    let eval = matches!(fused, Op::FusedEval);
    // Two steps: the second sees the running statistics the first one updated.
    for step in 0..2 {
        let want = run(
            &mut reference,
            &mut reference_ours,
            &x,
            &weights,
            relu,
            dfdx,
        );
        let got = run(&mut unused, &mut fused_bn, &x, &weights, relu, fused);
        let what = format!("{fused:?}: C={C} batch={batch} {side}x{side} relu={relu} step {step}");
        for (name, g, w, tol) in [
            // Eval mode does the same f32 arithmetic as the dfdx-op version.
            (
                "output",
                &got.out,
                &want.out,
                if eval { 1e-7 } else { 1e-5 },
            ),
            ("running mean", &got.running_mean, &want.running_mean, 1e-5),
            ("running var", &got.running_var, &want.running_var, 1e-5),
            ("dx", &got.dx, &want.dx, 1e-4),
            ("dγ", &got.d_gamma, &want.d_gamma, 1e-4),
            ("dβ", &got.d_beta, &want.d_beta, 1e-4),
        ] {
            let err = relative_error(g, w);
            assert!(err <= tol, "{what}: {name} differs by {err:e} (relative)");
        }
    }
}

#[test]
fn train_mode_matches_dfdx_batchnorm_with_and_without_relu() {
    let ops = [Op::FusedTrain, Op::DfdxTrain];
    for relu in [false, true] {
        compare::<16>(1, 2, 8, relu, ops);
        compare::<16>(2, 64, 8, relu, ops);
        compare::<16>(3, 8, 28, relu, ops);
        compare::<64>(4, 5, 8, relu, ops);
        compare::<64>(5, 32, 28, relu, ops);
    }
}

/// Eval mode: the same against the dfdx-op version, running statistics untouched by both.
#[test]
fn eval_mode_matches_the_dfdx_op_version_with_and_without_relu() {
    let ops = [Op::FusedEval, Op::DfdxEval];
    for relu in [false, true] {
        compare::<16>(1, 2, 8, relu, ops);
        compare::<16>(3, 8, 28, relu, ops);
        compare::<64>(5, 32, 28, relu, ops);
    }
    let dev = Cpu::seed_from_u64(9);
    let mut reference = random_bn::<16>(&dev);
    let mut bn = ours(&reference);
    let before = (bn.running_mean.as_vec(), bn.running_var.as_vec());
    let x: BnInput<NoneTape> = dev.sample_normal_like(&(16, 4, 8, 8));
    run(&mut reference, &mut bn, &x, &x, true, Op::FusedEval);
    assert_eq!((bn.running_mean.as_vec(), bn.running_var.as_vec()), before);
}

/// The loss Σ w·ReLU(BN(x)) in f64, written out from the definition.
fn reference_loss(x: &[f64], gamma: &[f64], beta: &[f64], w: &[f64], eps: f64) -> f64 {
    let channels = gamma.len();
    let n = x.len() / channels;
    let mut loss = 0.0;
    for c in 0..channels {
        let xs = &x[c * n..(c + 1) * n];
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        for (i, v) in xs.iter().enumerate() {
            let y = gamma[c] * (v - mean) / (var + eps).sqrt() + beta[c];
            loss += w[c * n + i] * y.max(0.0);
        }
    }
    loss
}

#[test]
fn gradients_match_finite_differences() {
    const C: usize = 2;
    let dev = Cpu::seed_from_u64(7);
    let mut reference = random_bn::<C>(&dev);
    let mut bn = ours(&reference);
    let x: BnInput<NoneTape> = dev.sample_normal_like(&(C, 3, 2, 2));
    let weights: BnInput<NoneTape> = dev.sample_normal_like(x.shape());
    let got = run(&mut reference, &mut bn, &x, &weights, true, Op::FusedTrain);

    let f64s = |v: Vec<f32>| -> Vec<f64> { v.into_iter().map(f64::from).collect() };
    let (xs, w) = (f64s(x.as_vec()), f64s(weights.as_vec()));
    let (gamma, beta) = (f64s(bn.scale.as_vec()), f64s(bn.bias.as_vec()));
    let eps = bn.epsilon;
    let h = 1e-6;
    let derivative = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
    let close = |got: f32, want: f64, what: String| {
        assert!(
            (f64::from(got) - want).abs() <= 1e-4 * (1.0 + want.abs()),
            "{what}: op {got} vs finite difference {want}"
        );
    };
    assert!(
        got.out.contains(&0.0) && got.out.iter().any(|&y| y > 0.0),
        "the case exercises both sides of the ReLU"
    );
    for i in 0..xs.len() {
        let want = derivative(&|d| {
            let mut moved = xs.clone();
            moved[i] += d;
            reference_loss(&moved, &gamma, &beta, &w, eps)
        });
        close(got.dx[i], want, format!("dx[{i}]"));
    }
    for c in 0..C {
        let want = derivative(&|d| {
            let mut moved = gamma.clone();
            moved[c] += d;
            reference_loss(&xs, &moved, &beta, &w, eps)
        });
        close(got.d_gamma[c], want, format!("dγ[{c}]"));
        let want = derivative(&|d| {
            let mut moved = beta.clone();
            moved[c] += d;
            reference_loss(&xs, &gamma, &moved, &w, eps)
        });
        close(got.d_beta[c], want, format!("dβ[{c}]"));
    }
}

/// Train-mode forward of `x` through a fresh copy of `bn`, asking for `observe`.
fn observed(
    bn: &BatchNorm,
    x: &BnInput<NoneTape>,
    relu: bool,
    observe: Observe,
) -> super::Forward<Taped> {
    // A clone: dfdx copies a shared buffer before writing it, so `bn` itself stays untouched.
    let mut bn = bn.clone();
    batch_norm_train(x.clone().leaky_trace(), &mut bn, relu, observe)
}

/// Measuring changes nothing the op computes: the output and every gradient are the same bits.
#[test]
fn measuring_leaves_the_output_and_gradients_bit_for_bit() {
    let dev = Cpu::seed_from_u64(11);
    let bn = ours(&random_bn::<16>(&dev));
    let x: BnInput<NoneTape> = dev.sample_normal_like(&(16, 8, 7, 7));
    let weights: BnInput<NoneTape> = dev.sample_normal_like(x.shape());
    let running_before = (to_host(&bn.running_mean), to_host(&bn.running_var));
    for relu in [false, true] {
        let results: Vec<_> = [false, true]
            .into_iter()
            .map(|measure| {
                let forward = observed(
                    &bn,
                    &x,
                    relu,
                    Observe {
                        measure,
                        keep_pre_relu: false,
                    },
                );
                assert_eq!(forward.measured.is_some(), measure);
                let out = to_host(&forward.out);
                let grads = (forward.out * weights.clone()).sum().backward();
                (out, grads.get(&x).as_vec())
            })
            .collect();
        assert_eq!(results[0], results[1], "relu {relu}");
    }
    // Each run updated its own copy's running statistics, never `bn`'s.
    assert_eq!(
        (to_host(&bn.running_mean), to_host(&bn.running_var)),
        running_before
    );
}

/// The backward borrows the output's gradient and gives it back as the loss sent it (not
/// emptied, not masked by the ReLU), and a second step through the reused host buffers
/// computes the same bits as the first.
#[test]
fn the_output_gradient_is_given_back_and_a_repeated_step_is_the_same_bits() {
    let dev = Cpu::seed_from_u64(12);
    let bn = ours(&random_bn::<8>(&dev));
    let x: BnInput<NoneTape> = dev.sample_normal_like(&(8, 4, 5, 5));
    let weights: BnInput<NoneTape> = dev.sample_normal_like(x.shape());
    let step = || {
        let forward = observed(&bn, &x, true, Observe::default());
        let out = forward.out.retaped::<NoneTape>();
        let grads = (forward.out * weights.clone()).sum().backward();
        assert_eq!(grads.get(&out).as_vec(), weights.as_vec(), "dL/d out");
        (to_host(&out), grads.get(&x).as_vec())
    };
    let first = step();
    assert_eq!(step(), first);
}

/// The ReLU moments are sums around a shift: a channel far above zero (mean² / variance = 1e10,
/// where E[y²] - E[y]² would be all cancellation) still matches the two-pass measurement of the
/// output to f32 rounding of its spread, a dead channel gives exact zeros, and a NaN in one channel's
/// input shows in that channel's numbers only (as the metrics' conventions have it).
#[test]
fn relu_moments_survive_a_large_offset_a_dead_channel_and_nan() {
    use crate::metrics::moments::{channel_moments, channel_relu_moments};
    let dev = Cpu::seed_from_u64(12);
    let mut bn = ours(&random_bn::<4>(&dev));
    // Channel 0: y ≈ 1000 ± 0.01; 1: dead (y ≈ -5 ± 0.1); 2 and 3: as drawn.
    let (mut gamma, mut beta) = (to_host(&bn.scale), to_host(&bn.bias));
    (gamma[0], beta[0], gamma[1], beta[1]) = (0.01, 1000.0, 0.1, -5.0);
    bn.scale.copy_from(&gamma);
    bn.bias.copy_from(&beta);
    let mut xs = to_host(&dev.sample_normal_like::<(usize, usize, usize, usize)>(&(4, 16, 6, 6)));
    let n = xs.len() / 4;
    let observe = Observe {
        measure: true,
        keep_pre_relu: true,
    };
    let forward = observed(&bn, &from_host(&dev, &xs, (4, 16, 6, 6)), true, observe);
    let measured = forward.measured.expect("measured");
    let y = forward.pre_relu.expect("pre-ReLU output");
    let want = channel_relu_moments(&y, 4);
    for c in [0, 2, 3] {
        let (got, want) = (measured.relu[c], want[c]);
        // f32 sums around the shift: f32 rounding of the spread, not of the mean² (1e10 times it).
        let eps = f64::from(f32::EPSILON);
        let shift = f64::from(measured.output[c].mean.max(0.0) as f32);
        let spread = want.var + (want.mean - shift).powi(2);
        assert!(
            (got.mean - want.mean).abs() <= 8.0 * eps * spread.sqrt(),
            "c {c}: {got:?} vs {want:?}"
        );
        assert!(
            (got.var - want.var).abs() <= 16.0 * eps * spread,
            "c {c}: {got:?} vs {want:?}"
        );
        assert_eq!(got.active_fraction, want.active_fraction);
    }
    assert!(measured.relu[0].var > 0.0 && measured.relu[0].var < 1e-3);
    assert_eq!(
        (measured.relu[1].mean, measured.relu[1].var),
        (0.0, 0.0),
        "dead"
    );
    assert_eq!(measured.relu[1].active_fraction, 0.0);
    assert_eq!(measured.input, channel_moments(&xs, 4));

    xs[2 * n + 5] = f32::NAN;
    let forward = observed(&bn, &from_host(&dev, &xs, (4, 16, 6, 6)), true, observe);
    let measured = forward.measured.expect("measured");
    for c in 0..4 {
        let m = (measured.input[c], measured.output[c], measured.relu[c]);
        let all = [m.0.mean, m.0.var, m.1.mean, m.1.var, m.2.mean, m.2.var];
        assert_eq!(all.iter().all(|v| v.is_nan()), c == 2, "c {c}: {m:?}");
        assert!(all.iter().all(|v| v.is_nan()) || all.iter().all(|v| v.is_finite()));
    }
}

/// The fused output-and-sums pass gives the same bits on every path the CPU can take (AVX-512,
/// AVX2) as on the portable one (the same arithmetic lane by lane), NaN, negatives and zeros
/// included, with and without the ReLU: both the sums and the values written. The length
/// leaves a partial last block and a tail shorter than a lane.
#[test]
fn relu_sums_are_the_same_bits_on_every_path() {
    use super::output_pass::ReluSums;
    use super::Affine;
    let dev = Cpu::seed_from_u64(13);
    let len = ReluSums::BLOCK * 37 + 3 * ReluSums::LANES + 5;
    let t: Tensor<(usize,), f32, Cpu> = dev.sample_normal_like(&(len,));
    let mut xs = to_host(&t);
    xs[5] = f32::NAN;
    xs[70] = 0.3;
    xs[71] = -0.0;
    xs[len - 2] = f32::NAN;
    let a = Affine {
        centre: 0.3,
        scale: 1.7,
        bias: -0.1,
    };
    type Path = fn(&mut ReluSums, &[f32], &Affine, f32, &mut [f32]);
    let mut paths: Vec<(&str, Path, Path)> = vec![(
        "portable",
        |s, x, a, k, o| s.apply_portable::<true>(x, a, k, o),
        |s, x, a, k, o| s.apply_portable::<false>(x, a, k, o),
    )];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            paths.push((
                "avx2",
                // SAFETY: the CPU has AVX2, checked just above.
                |s, x, a, k, o| unsafe { s.apply_avx2::<true>(x, a, k, o) },
                |s, x, a, k, o| unsafe { s.apply_avx2::<false>(x, a, k, o) },
            ));
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            paths.push((
                "avx512",
                // SAFETY: the CPU has AVX-512F, checked just above.
                |s, x, a, k, o| unsafe { s.apply_avx512::<true>(x, a, k, o) },
                |s, x, a, k, o| unsafe { s.apply_avx512::<false>(x, a, k, o) },
            ));
        }
    }
    let bits = |s: &ReluSums| [s.sum, s.sum_sq, s.active].map(|lanes| lanes.map(f64::to_bits));
    let to_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for relu in [false, true] {
        let results: Vec<_> = (paths.iter())
            .map(|&(name, with_relu, without)| {
                let (mut sums, mut out) = (ReluSums::default(), vec![0.0; xs.len()]);
                (if relu { with_relu } else { without })(&mut sums, &xs, &a, 0.25, &mut out);
                assert_eq!(out[70], if relu { 0.0 } else { -0.1 }, "{name} relu {relu}");
                (name, bits(&sums), to_bits(&out))
            })
            .collect();
        for (name, sums, out) in &results[1..] {
            assert_eq!(sums, &results[0].1, "{name} relu {relu}");
            assert_eq!(out, &results[0].2, "{name} relu {relu}");
        }
        // The plain pass writes the same values.
        let mut plain = vec![0.0; xs.len()];
        if relu {
            super::output_pass::apply::<true>(&xs, &a, &mut plain);
        } else {
            super::output_pass::apply::<false>(&xs, &a, &mut plain);
        }
        assert_eq!(to_bits(&plain), results[0].2, "plain relu {relu}");
    }
}
