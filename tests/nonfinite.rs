//! NaN and infinite logits on every backend, against the README's policy: a NaN logit makes
//! its own loss element (multi-label) or row (single-label) and gradient NaN and nothing else;
//! `+-inf` are their limits (finite where the limit is, and equal to the float64 reference's
//! limit); an unknown target or an ignored row stays 0 whatever its logits.
//!
//! Every position of a small array takes each of NaN, +inf and -inf in turn (one call per
//! position and value), so every SIMD lane, chunk tail and workgroup slot sees them; the other
//! elements (rows) must come out bitwise equal to the clean run's. Then the reductions, the
//! half-precision types, and a bounded property test of the CPU path on hostile input (NaN,
//! infinities, the largest and smallest floats, subnormals, saturation points, anywhere).
//!
//! Tolerances against the reference: the common policy (loss and gradient elements
//! `1e-6 * max|ref| + 1e-4 * |ref|`, a reduced loss 1e-5 relative); NaN exactly where the
//! reference has NaN, equal infinities. Half-precision logits: gradient rtol 2^-7 (bf16) with
//! atol 1e-3 * max|grad|, the gradient being stored in 8 significant bits.
mod all_backends;
mod common;
#[cfg(feature = "wgpu")]
mod wgpu_common;

use asymloss::*;
use common::close;
use half::{bf16, f16};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SPECIALS: [f32; 3] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];

/// Loss (as a vector) and gradient, as f64, of one multi-label call.
fn ml_run(
    b: &dyn Backend,
    cfg: &MultiLabel,
    pass: Pass,
    shape: Shape,
    x: Logits<'_>,
    t: MultiTargets<'_>,
) -> (Option<Vec<f64>>, Vec<f64>) {
    let n = shape.rows * shape.cols;
    let inp = MultiInputs {
        shape,
        logits: x,
        targets: t,
        upstream: Upstream::Scalar(1.0),
    };
    let (mut g32, mut g16, mut gb) = (vec![f32::NAN; n], vec![f16::NAN; n], vec![bf16::NAN; n]);
    let grad = pass.wants_grad().then(|| match x {
        Logits::F32(_) => GradMut::F32(&mut g32),
        Logits::F16(_) => GradMut::F16(&mut g16),
        Logits::Bf16(_) => GradMut::Bf16(&mut gb),
    });
    let l = b
        .multi_label(cfg, pass, &inp, grad)
        .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    let g = match x {
        Logits::F32(_) => g32.iter().map(|&v| v as f64).collect(),
        Logits::F16(_) => g16.iter().map(|v| v.to_f64()).collect(),
        Logits::Bf16(_) => gb.iter().map(|v| v.to_f64()).collect(),
    };
    (
        l.map(|l| l.as_slice().iter().map(|&v| v as f64).collect()),
        g,
    )
}

fn sl_run(
    b: &dyn Backend,
    cfg: &SingleLabel,
    shape: Shape,
    x: &[f32],
    t: &[i64],
) -> (Vec<f64>, Vec<f64>) {
    let inp = SingleInputs {
        shape,
        logits: Logits::F32(x),
        targets: ClassTargets::I64(t),
        upstream: Upstream::Scalar(1.0),
    };
    let mut g = vec![f32::NAN; x.len()];
    let l = b
        .single_label(cfg, Pass::Fused, &inp, Some(GradMut::F32(&mut g)))
        .unwrap_or_else(|e| panic!("{}: {e}", b.name()))
        .unwrap();
    (
        l.as_slice().iter().map(|&v| v as f64).collect(),
        g.iter().map(|&v| v as f64).collect(),
    )
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter()
        .filter(|x| x.is_finite())
        .fold(0.0f64, |m, x| m.max(x.abs()))
}

/// Element `i` of `got` against the reference, with the common tolerance.
fn check_elem(what: &str, got: &[f64], want: &[f64], i: usize, rtol: f64, atol_rel: f64) {
    let atol = atol_rel * max_abs(want) + 1e-30;
    assert!(
        close(got[i], want[i], atol, rtol),
        "{what}: [{i}] got {:e}, want {:e}",
        got[i],
        want[i]
    );
}

/// Every element except those in `skip`, bitwise.
fn same_except(what: &str, got: &[f64], clean: &[f64], skip: std::ops::Range<usize>) {
    for (j, (a, b)) in got.iter().zip(clean).enumerate() {
        if !skip.contains(&j) {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{what}: element {j} changed ({a:e} vs clean {b:e})"
            );
        }
    }
}

fn logits(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-6.0f32..6.0)).collect()
}

/// Multi-label, reduction none: NaN, +inf and -inf at every position of 3 x 37 (f32 targets
/// with positives, negatives, a soft label and unknowns).
#[test]
fn multi_label_every_position() {
    let shape = Shape::new(3, 37);
    let n = 3 * 37;
    let mut rng = StdRng::seed_from_u64(61);
    let x = logits(&mut rng, n);
    let t: Vec<f32> = (0..n)
        .map(|i| [0.0, 1.0, 0.0, 0.3, -1.0, 0.0, 1.0][i % 7])
        .collect();
    let cfg = MultiLabel {
        reduction: Reduction::None,
        pos_weight: Some(PosWeight::Scalar(1.5)),
        ..MultiLabel::default()
    };
    let reference = |x: &[f32]| {
        reference::multi_label(
            &cfg,
            shape,
            Logits::F32(x),
            MultiTargets::F32(&t),
            Upstream::Scalar(1.0),
        )
        .unwrap()
    };
    for (name, b) in all_backends::all() {
        let (cl, cg) = ml_run(
            b,
            &cfg,
            Pass::Fused,
            shape,
            Logits::F32(&x),
            MultiTargets::F32(&t),
        );
        let cl = cl.unwrap();
        for i in 0..n {
            for v in SPECIALS {
                let mut xs = x.clone();
                xs[i] = v;
                let (l, g) = ml_run(
                    b,
                    &cfg,
                    Pass::Fused,
                    shape,
                    Logits::F32(&xs),
                    MultiTargets::F32(&t),
                );
                let l = l.unwrap();
                let want = reference(&xs);
                let what = format!("{name}: x[{i}] = {v}, y = {}", t[i]);
                check_elem(&what, &l, &want.loss, i, 1e-4, 1e-6);
                check_elem(&what, &g, &want.grad, i, 1e-4, 1e-6);
                if v.is_nan() {
                    // NaN propagates, unless the target is unknown (then nothing is computed).
                    assert_eq!(l[i].is_nan() && g[i].is_nan(), t[i] >= 0.0, "{what}");
                } else {
                    assert!(l[i].is_finite() && g[i].is_finite(), "{what}: a limit");
                }
                same_except(&format!("{what}: loss"), &l, &cl, i..i + 1);
                same_except(&format!("{what}: grad"), &g, &cg, i..i + 1);
            }
        }
    }
}

/// Reduced losses and every pass: a NaN at a known target makes the reduced loss NaN and only
/// its own gradient element NaN (the scale does not depend on the logits); infinities keep
/// the loss finite and equal to the reference's.
#[test]
fn multi_label_reductions_and_passes() {
    let shape = Shape::new(5, 29);
    let n = 5 * 29;
    let mut rng = StdRng::seed_from_u64(62);
    let x = logits(&mut rng, n);
    let t: Vec<u8> = (0..n).map(|i| [0u8, 1, 0, 255, 0][i % 5]).collect();
    for (name, b) in all_backends::all() {
        for red in [Reduction::Sum, Reduction::Mean, Reduction::BatchMean] {
            let cfg = MultiLabel {
                reduction: red,
                ..MultiLabel::default()
            };
            let (_, cg) = ml_run(
                b,
                &cfg,
                Pass::Backward,
                shape,
                Logits::F32(&x),
                MultiTargets::U8(&t),
            );
            for i in [0, 13, 16, 64, n - 1] {
                for v in SPECIALS {
                    let mut xs = x.clone();
                    xs[i] = v;
                    let want = reference::multi_label(
                        &cfg,
                        shape,
                        Logits::F32(&xs),
                        MultiTargets::U8(&t),
                        Upstream::Scalar(1.0),
                    )
                    .unwrap();
                    let what = format!("{name}: {red:?} x[{i}] = {v}, y = {}", t[i]);
                    for pass in [Pass::Forward, Pass::Backward, Pass::Fused] {
                        let (l, g) =
                            ml_run(b, &cfg, pass, shape, Logits::F32(&xs), MultiTargets::U8(&t));
                        if let Some(l) = l {
                            assert!(close(l[0], want.loss[0], 1e-30, 1e-5), "{what}: {l:?}");
                            assert_eq!(l[0].is_nan(), v.is_nan() && t[i] != 255, "{what}");
                        }
                        if pass.wants_grad() {
                            check_elem(&what, &g, &want.grad, i, 1e-4, 1e-6);
                            same_except(&format!("{what}: {pass:?}"), &g, &cg, i..i + 1);
                        }
                    }
                }
            }
        }
    }
}

/// bf16 (every backend) and f16 (where supported) logits: the special values at several
/// positions, against the reference of the same (exactly representable) logits.
#[test]
fn half_precision_logits() {
    let shape = Shape::new(2, 40);
    let n = 80;
    let mut rng = StdRng::seed_from_u64(63);
    let x = logits(&mut rng, n);
    let t: Vec<u8> = (0..n).map(|i| [0u8, 1, 255, 0][i % 4]).collect();
    let cfg = MultiLabel {
        reduction: Reduction::None,
        ..MultiLabel::default()
    };
    for (name, b) in all_backends::all() {
        for i in [0, 7, 15, 16, 39, 40, 63, 79] {
            for v in SPECIALS {
                let mut xs = x.clone();
                xs[i] = v;
                let xb: Vec<bf16> = xs.iter().map(|&v| bf16::from_f32(v)).collect();
                let xh: Vec<f16> = xs.iter().map(|&v| f16::from_f32(v)).collect();
                for (dt, lg) in [("bf16", Logits::Bf16(&xb)), ("f16", Logits::F16(&xh))] {
                    let inp = MultiInputs {
                        shape,
                        logits: lg,
                        targets: MultiTargets::U8(&t),
                        upstream: Upstream::Scalar(1.0),
                    };
                    if dt == "f16"
                        && matches!(
                            b.multi_label(&cfg, Pass::Forward, &inp, None),
                            Err(Error::Unsupported(_))
                        )
                    {
                        continue; // wgpu without SHADER_F16: a clear error, tested elsewhere
                    }
                    let (l, g) = ml_run(b, &cfg, Pass::Fused, shape, lg, MultiTargets::U8(&t));
                    let l = l.unwrap();
                    let want = reference::multi_label(
                        &cfg,
                        shape,
                        lg,
                        MultiTargets::U8(&t),
                        Upstream::Scalar(1.0),
                    )
                    .unwrap();
                    let what = format!("{name}: {dt} x[{i}] = {v}, y = {}", t[i]);
                    for j in 0..n {
                        check_elem(&what, &l, &want.loss, j, 1e-4, 1e-6);
                        check_elem(&what, &g, &want.grad, j, 1.0 / 128.0, 1e-3);
                    }
                    assert_eq!(l[i].is_nan(), v.is_nan() && t[i] != 255, "{what}");
                }
            }
        }
    }
}

/// Single-label, reduction none: NaN, +inf and -inf at every position of 4 x 37 (the target
/// in the first, a middle and the last column, and an ignored row). A NaN makes its row NaN
/// (unless ignored); an infinity is the softmax's limit, as in the reference (a +inf column
/// takes the whole mass, so a row whose target is elsewhere has an infinite loss); the other
/// rows are bitwise the clean run's.
#[test]
fn single_label_every_position() {
    let (rows, cols) = (4, 37);
    let shape = Shape::new(rows, cols);
    let mut rng = StdRng::seed_from_u64(64);
    let x = logits(&mut rng, rows * cols);
    let t = [0i64, 17, 36, -100];
    let cfg = SingleLabel {
        reduction: Reduction::None,
        ignore_index: Some(-100),
        ..SingleLabel::default()
    };
    for (name, b) in all_backends::all() {
        let (cl, cg) = sl_run(b, &cfg, shape, &x, &t);
        for i in 0..rows * cols {
            let r = i / cols;
            for v in SPECIALS {
                let mut xs = x.clone();
                xs[i] = v;
                let (l, g) = sl_run(b, &cfg, shape, &xs, &t);
                let want = reference::single_label(
                    &cfg,
                    shape,
                    Logits::F32(&xs),
                    ClassTargets::I64(&t),
                    Upstream::Scalar(1.0),
                )
                .unwrap();
                let what = format!("{name}: z[{r}, {}] = {v}, target {}", i % cols, t[r]);
                check_elem(&what, &l, &want.loss, r, 1e-4, 1e-6);
                for j in r * cols..(r + 1) * cols {
                    check_elem(&what, &g, &want.grad, j, 1e-4, 1e-6);
                }
                if v.is_nan() {
                    let nan_row = g[r * cols..(r + 1) * cols].iter().all(|v| v.is_nan());
                    assert_eq!(l[r].is_nan() && nan_row, t[r] != -100, "{what}");
                }
                same_except(&format!("{what}: loss"), &l, &cl, r..r + 1);
                same_except(&format!("{what}: grad"), &g, &cg, r * cols..(r + 1) * cols);
            }
        }
    }
}

/// A row of several infinities: +inf columns share the mass; all -inf is no limit at all
/// (every `ln p` undefined): NaN, as the reference has it.
#[test]
fn single_label_rows_of_infinities() {
    let cols = 9;
    let inf = f32::INFINITY;
    let rows: Vec<[f32; 9]> = vec![
        [inf, 0.0, inf, 1.0, -inf, 0.0, 0.0, 0.0, 0.0],
        [inf; 9],
        [-inf; 9],
        [-inf, -inf, 3.0, -inf, -inf, -inf, -inf, -inf, -inf],
        [f32::MAX, f32::MAX, -f32::MAX, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    ];
    let x: Vec<f32> = rows.iter().flatten().copied().collect();
    let t = [2i64, 4, 0, 2, 1];
    let shape = Shape::new(rows.len(), cols);
    for cfg in [
        SingleLabel {
            reduction: Reduction::None,
            ..SingleLabel::default()
        },
        SingleLabel {
            reduction: Reduction::None,
            ..SingleLabel::cross_entropy()
        },
    ] {
        let want = reference::single_label(
            &cfg,
            shape,
            Logits::F32(&x),
            ClassTargets::I64(&t),
            Upstream::Scalar(1.0),
        )
        .unwrap();
        for (name, b) in all_backends::all() {
            let (l, g) = sl_run(b, &cfg, shape, &x, &t);
            for r in 0..rows.len() {
                check_elem(
                    &format!("{name}: row {r} {cfg:?}"),
                    &l,
                    &want.loss,
                    r,
                    1e-4,
                    1e-6,
                );
            }
            for j in 0..x.len() {
                check_elem(&format!("{name}: {cfg:?}"), &g, &want.grad, j, 1e-4, 1e-6);
            }
        }
    }
}

/// Logits drawn from a hostile mixture: NaN, infinities, the largest and smallest floats,
/// subnormals, signed zeros, the f32/f16/bf16 saturation points, and ordinary values. (Not the
/// kinks `logit(clip)` and `logit(eps)`, where the derivative jumps and the f32 and f64 sides
/// may legitimately differ; tests/edges.rs holds those.)
fn hostile() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => -30.0f32..30.0,
        1 => prop::sample::select(vec![
            f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX,
            f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1e-45, -1e-45, 0.0, -0.0,
            88.73, -88.73, 103.9, -103.9, 16.636, -16.636, 8.317, 6.235, 1e30, -1e30,
        ]),
        1 => any::<f32>(),
    ]
}

/// [`close`], or an f32 overflow: where the float64 value is within a decade of `f32::MAX`
/// (logits near `+-f32::MAX`, whose differences exceed the f32 range), the f32 path may give
/// the infinity of the same sign.
fn close_or_overflow(a: f64, b: f64, atol: f64, rtol: f64) -> bool {
    close(a, b, atol, rtol) || (b.abs() >= 3.4e37 && a.is_infinite() && a.signum() == b.signum())
}

fn ml_cfg() -> impl Strategy<Value = MultiLabel> {
    (
        prop::sample::select(vec![0.0, 0.5, 1.0, 2.0, 4.0]),
        prop::sample::select(vec![0.0, 0.5, 1.0, 3.0]),
        prop::sample::select(vec![0.0, 0.05, 0.2]),
        prop::sample::select(vec![0.0, 1e-8]),
        any::<bool>(),
        prop::sample::select(vec![0.0, 0.1]),
        prop::sample::select(vec![
            Reduction::None,
            Reduction::Sum,
            Reduction::Mean,
            Reduction::BatchMean,
        ]),
    )
        .prop_map(|(gn, gp, clip, eps, det, s, red)| MultiLabel {
            gamma_neg: gn,
            gamma_pos: gp,
            clip,
            eps,
            focal_grad: if det {
                FocalGrad::Detached
            } else {
                FocalGrad::Differentiated
            },
            smoothing: s,
            reduction: red,
            ..MultiLabel::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The CPU path on hostile multi-label input equals the reference (NaN exactly where it
    /// has NaN), and never panics.
    #[test]
    fn cpu_multi_label_hostile(
        cfg in ml_cfg(),
        rows in 1usize..4,
        cols in 1usize..40,
        x in prop::collection::vec(hostile(), 160),
        y in prop::collection::vec(prop::sample::select(vec![0.0f32, 1.0, 0.25, -1.0]), 160),
    ) {
        let n = rows * cols;
        let shape = Shape::new(rows, cols);
        let (x, y) = (&x[..n], &y[..n]);
        let want = reference::multi_label(&cfg, shape, Logits::F32(x), MultiTargets::F32(y),
            Upstream::Scalar(1.0)).unwrap();
        let (l, g) = ml_run(all_backends::cpu(), &cfg, Pass::Fused, shape, Logits::F32(x),
            MultiTargets::F32(y));
        let l = l.unwrap();
        let (la, ga) = (1e-6 * max_abs(&want.loss) + 1e-30, 1e-6 * max_abs(&want.grad) + 1e-30);
        let lr = if l.len() == 1 { 1e-5 } else { 1e-4 };
        // A reduced loss is summed in f32 within a row: when the element losses add up past
        // f32::MAX (logits near -f32::MAX with positive targets), it may overflow to +inf even
        // though the mean is representable.
        let unreduced = reference::multi_label(&MultiLabel { reduction: Reduction::None,
            ..cfg.clone() }, shape, Logits::F32(x), MultiTargets::F32(y), Upstream::Scalar(1.0))
            .unwrap();
        let total: f64 = unreduced.loss.iter().filter(|v| !v.is_nan()).map(|v| v.abs()).sum();
        let may_overflow = l.len() == 1 && total > f32::MAX as f64;
        for (i, (a, b)) in l.iter().zip(&want.loss).enumerate() {
            prop_assert!(close_or_overflow(*a, *b, la, lr) || (may_overflow && a.is_infinite()),
                "loss[{}]: {:e} vs {:e} (x {:?})", i, a, b, x);
        }
        for (i, (a, b)) in g.iter().zip(&want.grad).enumerate() {
            prop_assert!(close(*a, *b, ga, 1e-4), "grad[{}]: {:e} vs {:e} at x {}", i, a, b, x[i]);
        }
    }

    /// The same for single-label rows (any class, sometimes ignored).
    #[test]
    fn cpu_single_label_hostile(
        gp in prop::sample::select(vec![0.0, 0.5, 1.0, 2.0]),
        gn in prop::sample::select(vec![0.0, 1.0, 4.0]),
        s in prop::sample::select(vec![0.0, 0.1]),
        rows in 1usize..4,
        cols in 1usize..40,
        x in prop::collection::vec(hostile(), 160),
        t in prop::collection::vec(0i64..40, 4),
    ) {
        let n = rows * cols;
        let shape = Shape::new(rows, cols);
        let t: Vec<i64> = t[..rows].iter().map(|&c| if c == 39 { -1 } else { c % cols as i64 })
            .collect();
        let cfg = SingleLabel { gamma_pos: gp, gamma_neg: gn, smoothing: s,
            reduction: Reduction::None, ignore_index: Some(-1) };
        let want = reference::single_label(&cfg, shape, Logits::F32(&x[..n]),
            ClassTargets::I64(&t), Upstream::Scalar(1.0)).unwrap();
        let (l, g) = sl_run(all_backends::cpu(), &cfg, shape, &x[..n], &t);
        // Absolute floors far below f32's resolution of terms near 1: a confident row's loss
        // and gradients can be ~1e-13, which the f32 path gets to a few 1e-4 relative.
        let (la, ga) = (1e-6 * max_abs(&want.loss) + 1e-9, 1e-6 * max_abs(&want.grad) + 1e-12);
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            let finite = row.iter().filter(|v| v.is_finite()).map(|&v| v as f64);
            let span = finite.clone().fold(f64::NEG_INFINITY, f64::max)
                - finite.fold(f64::INFINITY, f64::min);
            // Logits further apart than f32::MAX: `z - max` leaves the f32 range, so the f32
            // path may give +inf (and NaN gradients) where float64 is still finite.
            let beyond_f32 = span > f32::MAX as f64;
            prop_assert!(
                close_or_overflow(l[r], want.loss[r], la, 1e-4)
                    || (beyond_f32 && l[r] == f64::INFINITY),
                "loss[{}]: {:e} vs {:e} (row {:?})", r, l[r], want.loss[r], row
            );
            // With gamma_neg = 0 and smoothing > 0 a non-target column with p = 0 (a -inf logit)
            // makes the row's loss +inf (its limit) while its gradient keeps its finite limit
            // (g_j = -a_j): checked like any other row.
            if beyond_f32 {
                continue;
            }
            let cells = r * cols..(r + 1) * cols;
            for (i, (a, b)) in g[cells.clone()].iter().zip(&want.grad[cells]).enumerate() {
                prop_assert!(close(*a, *b, ga, 1e-4), "grad[{}, {}]: {:e} vs {:e} (row {:?})",
                    r, i, a, b, row);
            }
        }
    }
}
