//! The wgpu backend against the float64 reference on random inputs: shapes around the
//! subgroup and workgroup sizes and the row cache (C = 1 ... 9605, 100000), random
//! configurations, every pass and reduction, unknown targets, ignored rows, upstream arrays,
//! extreme logits, f16 and bf16 logits; plus the WGSL port against src/math.rs, invalid
//! targets, empty inputs, bitwise repeatability and agreement with the fast CPU path. Every run
//! uses NaN-poisoned output buffers.
#![cfg(feature = "wgpu")]

mod common;
mod wgpu_common;

use asymloss::math::{ml_element, ml_element_hard, MlConsts, PolyMath};
use asymloss::reference;
use asymloss::*;
use half::{bf16, f16};
use wgpu_common::*;

/// Columns around every size that matters: 1, below/at/above the subgroup widths (8, 32, 64),
/// the workgroup sizes (64, 256), the single-label small-row workgroup switch (512), the row
/// cache (4096), and large vocabularies.
const COLS: &[usize] = &[
    1, 3, 7, 8, 9, 31, 33, 63, 64, 65, 255, 256, 257, 511, 513, 1000, 4095, 4097, 9605,
];

fn logits(rng: &mut Rng, n: usize, scale: f64) -> Vec<f32> {
    (0..n).map(|_| (rng.normal() * scale) as f32).collect()
}

fn random_ml(rng: &mut Rng, cols: usize) -> MultiLabel {
    let gammas = [0.0, 0.5, 1.0, 2.0, 4.0, 1.7];
    let reductions = [
        Reduction::Sum,
        Reduction::Mean,
        Reduction::BatchMean,
        Reduction::None,
    ];
    MultiLabel {
        gamma_neg: gammas[rng.below(6) as usize],
        gamma_pos: gammas[rng.below(6) as usize],
        clip: [0.0, 0.05, 0.2][rng.below(3) as usize],
        eps: [1e-8, 1e-3][rng.below(2) as usize],
        focal_grad: if rng.below(2) == 0 {
            FocalGrad::Differentiated
        } else {
            FocalGrad::Detached
        },
        smoothing: [0.0, 0.1][rng.below(2) as usize],
        reduction: reductions[rng.below(4) as usize],
        class_weight: (rng.below(3) == 0)
            .then(|| (0..cols).map(|_| rng.range(0.2, 2.0) as f32).collect()),
        pos_weight: match rng.below(3) {
            0 => None,
            1 => Some(PosWeight::Scalar(rng.range(0.5, 3.0) as f32)),
            _ => Some(PosWeight::PerClass(
                (0..cols).map(|_| rng.range(0.5, 3.0) as f32).collect(),
            )),
        },
    }
}

fn random_sl(rng: &mut Rng, cols: usize) -> SingleLabel {
    let gammas = [0.0, 0.5, 1.0, 2.0, 4.0];
    SingleLabel {
        gamma_pos: gammas[rng.below(5) as usize],
        gamma_neg: gammas[rng.below(5) as usize],
        smoothing: [0.0, 0.1, 0.3][rng.below(3) as usize],
        reduction: [Reduction::Mean, Reduction::Sum, Reduction::None][rng.below(3) as usize],
        ignore_index: (rng.below(2) == 0).then_some(if cols > 2 { 2 } else { -100 }),
    }
}

/// Multi-label run on `b`, as f64 (loss, grad).
#[allow(clippy::too_many_arguments)]
fn ml_run(
    b: &dyn Backend,
    cfg: &MultiLabel,
    pass: Pass,
    shape: Shape,
    x: Logits<'_>,
    t: MultiTargets<'_>,
    up: Upstream<'_>,
) -> Result<(Option<Vec<f64>>, Vec<f64>)> {
    let n = shape.rows * shape.cols;
    let inp = MultiInputs {
        shape,
        logits: x,
        targets: t,
        upstream: up,
    };
    let (mut g32, mut g16, mut gb) = (vec![f32::NAN; n], vec![f16::NAN; n], vec![bf16::NAN; n]);
    let grad = pass.wants_grad().then(|| match x {
        Logits::F32(_) => GradMut::F32(&mut g32),
        Logits::F16(_) => GradMut::F16(&mut g16),
        Logits::Bf16(_) => GradMut::Bf16(&mut gb),
    });
    let l = b.multi_label(cfg, pass, &inp, grad)?;
    let g = match x {
        Logits::F32(_) => g32.iter().map(|&v| v as f64).collect(),
        Logits::F16(_) => g16.iter().map(|v| v.to_f64()).collect(),
        Logits::Bf16(_) => gb.iter().map(|v| v.to_f64()).collect(),
    };
    Ok((l.map(|l| loss_vec(&l)), g))
}

fn sl_run(
    b: &dyn Backend,
    cfg: &SingleLabel,
    pass: Pass,
    shape: Shape,
    x: Logits<'_>,
    t: ClassTargets<'_>,
    up: Upstream<'_>,
) -> Result<(Option<Vec<f64>>, Vec<f64>)> {
    let n = shape.rows * shape.cols;
    let inp = SingleInputs {
        shape,
        logits: x,
        targets: t,
        upstream: up,
    };
    let (mut g32, mut g16, mut gb) = (vec![f32::NAN; n], vec![f16::NAN; n], vec![bf16::NAN; n]);
    let grad = pass.wants_grad().then(|| match x {
        Logits::F32(_) => GradMut::F32(&mut g32),
        Logits::F16(_) => GradMut::F16(&mut g16),
        Logits::Bf16(_) => GradMut::Bf16(&mut gb),
    });
    let l = b.single_label(cfg, pass, &inp, grad)?;
    let g = match x {
        Logits::F32(_) => g32.iter().map(|&v| v as f64).collect(),
        Logits::F16(_) => g16.iter().map(|v| v.to_f64()).collect(),
        Logits::Bf16(_) => gb.iter().map(|v| v.to_f64()).collect(),
    };
    Ok((l.map(|l| loss_vec(&l)), g))
}

/// The reference gradient rounded to the logits' dtype (what a perfect kernel would store).
fn rounded(g: &[f64], d: DType) -> Vec<f64> {
    match d {
        DType::F32 => g.iter().map(|&v| v as f32 as f64).collect(),
        DType::F16 => g.iter().map(|&v| f16::from_f64(v).to_f64()).collect(),
        DType::Bf16 => g.iter().map(|&v| bf16::from_f64(v).to_f64()).collect(),
    }
}

#[test]
fn multi_label_random_shapes_and_configs() {
    let bs = backends();
    let mut rng = Rng::new(7);
    let passes = [Pass::Fused, Pass::Forward, Pass::Backward];
    for (mode, b) in &bs {
        for (k, &cols) in COLS.iter().enumerate() {
            let rows = if cols >= 4097 {
                3
            } else {
                1 + rng.below(9) as usize
            };
            let shape = Shape::new(rows, cols);
            let n = rows * cols;
            let cfg = random_ml(&mut rng, cols);
            let x = logits(&mut rng, n, 4.0);
            // Soft labels with some unknowns (negative) for f32; hard ones for u8.
            let tf: Vec<f32> = (0..n)
                .map(|_| match rng.below(10) {
                    0 => -1.0,
                    1..=3 => 1.0,
                    4 => rng.uniform() as f32,
                    _ => 0.0,
                })
                .collect();
            let tb: Vec<u8> = tf
                .iter()
                .map(|&v| if v < 0.0 { 255 } else { (v >= 0.5) as u8 })
                .collect();
            let tb_f: Vec<f32> = tb
                .iter()
                .map(|&v| if v == 255 { -1.0 } else { v as f32 })
                .collect();
            let up_arr: Vec<f32> = (0..n).map(|_| rng.range(-2.0, 2.0) as f32).collect();
            let up = if cfg.reduction == Reduction::None && k % 2 == 0 {
                Upstream::Array(&up_arr)
            } else {
                Upstream::Scalar(rng.range(0.5, 2.0) as f32)
            };
            let pass = passes[k % 3];
            for (targets, tref) in [
                (MultiTargets::F32(&tf), &tf),
                (MultiTargets::U8(&tb), &tb_f),
            ] {
                let want = reference::multi_label(
                    &cfg,
                    shape,
                    Logits::F32(&x),
                    MultiTargets::F32(tref),
                    up,
                )
                .unwrap();
                let (l, g) = ml_run(*b, &cfg, pass, shape, Logits::F32(&x), targets, up).unwrap();
                let what = format!("ml {rows}x{cols} {mode} {} {cfg:?}", pass.name());
                check(
                    &what,
                    tol(DType::F32),
                    l.as_deref(),
                    &want.loss,
                    pass.wants_grad().then_some(&g[..]),
                    &want.grad,
                );
            }
        }
    }
}

#[test]
fn single_label_random_shapes_and_configs() {
    let bs = backends();
    let mut rng = Rng::new(11);
    let passes = [Pass::Fused, Pass::Forward, Pass::Backward];
    for (mode, b) in &bs {
        for (k, &cols) in COLS.iter().enumerate() {
            let rows = if cols >= 4097 {
                3
            } else {
                1 + rng.below(12) as usize
            };
            let shape = Shape::new(rows, cols);
            let cfg = random_sl(&mut rng, cols);
            let x = logits(&mut rng, rows * cols, 3.0);
            let t: Vec<i64> = (0..rows)
                .map(|r| match (r % 4, cfg.ignore_index) {
                    (3, Some(i)) => i,
                    _ => rng.below(cols as u64) as i64,
                })
                .collect();
            let up_arr: Vec<f32> = (0..rows).map(|_| rng.range(-2.0, 2.0) as f32).collect();
            let up = if cfg.reduction == Reduction::None && k % 2 == 0 {
                Upstream::Array(&up_arr)
            } else {
                Upstream::Scalar(rng.range(0.5, 2.0) as f32)
            };
            let pass = passes[k % 3];
            let want =
                reference::single_label(&cfg, shape, Logits::F32(&x), ClassTargets::I64(&t), up)
                    .unwrap();
            let (l, g) = sl_run(
                *b,
                &cfg,
                pass,
                shape,
                Logits::F32(&x),
                ClassTargets::I64(&t),
                up,
            )
            .unwrap();
            let what = format!("sl {rows}x{cols} {mode} {} {cfg:?}", pass.name());
            check(
                &what,
                tol(DType::F32),
                l.as_deref(),
                &want.loss,
                pass.wants_grad().then_some(&g[..]),
                &want.grad,
            );
        }
    }
}

/// A few rows of 100000 classes: long rows that loop over global memory in every sweep, and
/// multi-label rows of 100000 elements.
#[test]
fn vocabulary_of_100000() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(3);
    let shape = Shape::new(2, 100_000);
    let n = shape.rows * shape.cols;
    let x = logits(&mut rng, n, 3.0);
    let t = [17i64, 99_999];
    let cfg = SingleLabel::default();
    let want = reference::single_label(
        &cfg,
        shape,
        Logits::F32(&x),
        ClassTargets::I64(&t),
        Upstream::Scalar(1.0),
    )
    .unwrap();
    let (l, g) = sl_run(
        b,
        &cfg,
        Pass::Fused,
        shape,
        Logits::F32(&x),
        ClassTargets::I64(&t),
        Upstream::Scalar(1.0),
    )
    .unwrap();
    check(
        "sl 2x100000",
        tol(DType::F32),
        l.as_deref(),
        &want.loss,
        Some(&g),
        &want.grad,
    );

    let tb: Vec<u8> = (0..n).map(|i| (i % 97 == 0) as u8).collect();
    let cfg = MultiLabel::default();
    let want = reference::multi_label(
        &cfg,
        shape,
        Logits::F32(&x),
        MultiTargets::U8(&tb),
        Upstream::Scalar(1.0),
    )
    .unwrap();
    let (l, g) = ml_run(
        b,
        &cfg,
        Pass::Fused,
        shape,
        Logits::F32(&x),
        MultiTargets::U8(&tb),
        Upstream::Scalar(1.0),
    )
    .unwrap();
    check(
        "ml 2x100000",
        tol(DType::F32),
        l.as_deref(),
        &want.loss,
        Some(&g),
        &want.grad,
    );
}

#[test]
fn half_precision_logits() {
    let bs = backends();
    let mut rng = Rng::new(5);
    for (mode, b) in &bs {
        for &cols in &[1usize, 9, 80, 257, 1001] {
            let rows = 5;
            let shape = Shape::new(rows, cols);
            let n = rows * cols;
            let x = logits(&mut rng, n, 4.0);
            let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
            let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
            let tb: Vec<u8> = (0..n).map(|i| [0u8, 1, 0, 255, 0, 0][i % 6]).collect();
            let tc: Vec<i64> = (0..rows as i64).map(|r| r * 7 % cols as i64).collect();
            let ml = MultiLabel::default();
            let sl = SingleLabel::default();
            for (lg, d) in [
                (Logits::F16(&xh), DType::F16),
                (Logits::Bf16(&xb), DType::Bf16),
            ] {
                if d == DType::F16 && !b.context().supports_f16() {
                    let e = ml_run(
                        *b,
                        &ml,
                        Pass::Fused,
                        shape,
                        lg,
                        MultiTargets::U8(&tb),
                        Upstream::Scalar(1.0),
                    );
                    assert!(matches!(e, Err(Error::Unsupported(_))), "{e:?}");
                    continue;
                }
                for pass in [Pass::Fused, Pass::Backward] {
                    let want = reference::multi_label(
                        &ml,
                        shape,
                        lg,
                        MultiTargets::U8(&tb),
                        Upstream::Scalar(1.0),
                    )
                    .unwrap();
                    let (l, g) = ml_run(
                        *b,
                        &ml,
                        pass,
                        shape,
                        lg,
                        MultiTargets::U8(&tb),
                        Upstream::Scalar(1.0),
                    )
                    .unwrap();
                    let what = format!("ml {rows}x{cols} {mode} {d:?} {}", pass.name());
                    check(
                        &what,
                        tol(d),
                        l.as_deref(),
                        &want.loss,
                        Some(&g),
                        &rounded(&want.grad, d),
                    );
                    let want = reference::single_label(
                        &sl,
                        shape,
                        lg,
                        ClassTargets::I64(&tc),
                        Upstream::Scalar(1.0),
                    )
                    .unwrap();
                    let (l, g) = sl_run(
                        *b,
                        &sl,
                        pass,
                        shape,
                        lg,
                        ClassTargets::I64(&tc),
                        Upstream::Scalar(1.0),
                    )
                    .unwrap();
                    let what = format!("sl {rows}x{cols} {mode} {d:?} {}", pass.name());
                    check(
                        &what,
                        tol(d),
                        l.as_deref(),
                        &want.loss,
                        Some(&g),
                        &rounded(&want.grad, d),
                    );
                }
            }
        }
    }
}

/// Logits at every boundary: +-inf, NaN, the eps floor (+-18.4207), logit(clip), the f32
/// saturation points, and huge values, in both losses.
#[test]
fn extreme_logits() {
    let bs = backends();
    let specials = [
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        18.420681,
        -18.420681,
        -2.944439,
        16.636,
        16.7,
        88.8,
        -88.8,
        100.0,
        -100.0,
        1e30,
        -1e30,
        0.0,
        -0.0,
        8.317,
        6.235,
    ];
    for (mode, b) in &bs {
        let cols = specials.len();
        let rows = 4;
        let shape = Shape::new(rows, cols);
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| specials[(i * 5 + i / cols) % cols])
            .collect();
        let tf: Vec<f32> = (0..rows * cols)
            .map(|i| [0.0, 1.0, 0.3, -1.0][i % 4])
            .collect();
        for cfg in [
            MultiLabel::default(),
            MultiLabel::paper(),
            MultiLabel::bce(),
            MultiLabel {
                gamma_pos: 0.5,
                gamma_neg: 0.5,
                reduction: Reduction::None,
                ..Default::default()
            },
        ] {
            let want = reference::multi_label(
                &cfg,
                shape,
                Logits::F32(&x),
                MultiTargets::F32(&tf),
                Upstream::Scalar(1.0),
            )
            .unwrap();
            let (l, g) = ml_run(
                *b,
                &cfg,
                Pass::Fused,
                shape,
                Logits::F32(&x),
                MultiTargets::F32(&tf),
                Upstream::Scalar(1.0),
            )
            .unwrap();
            let what = format!("ml extremes {mode} {cfg:?}");
            check(
                &what,
                tol(DType::F32),
                l.as_deref(),
                &want.loss,
                Some(&g),
                &want.grad,
            );
        }
        // Single-label: one special per row on top of ordinary logits, NaN rows, all -inf rows.
        let cols = 7;
        let rows = specials.len() + 2;
        let shape = Shape::new(rows, cols);
        let mut x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.7)
            .collect();
        for (r, &s) in specials.iter().enumerate() {
            x[r * cols + r % cols] = s;
        }
        for c in 0..cols {
            x[specials.len() * cols + c] = f32::NEG_INFINITY;
            x[(specials.len() + 1) * cols + c] = f32::INFINITY;
        }
        let t: Vec<i64> = (0..rows as i64).map(|r| (r * 3) % cols as i64).collect();
        for cfg in [
            SingleLabel::default(),
            SingleLabel::cross_entropy(),
            SingleLabel {
                gamma_pos: 0.5,
                gamma_neg: 0.5,
                reduction: Reduction::None,
                ..Default::default()
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
            let (l, g) = sl_run(
                *b,
                &cfg,
                Pass::Fused,
                shape,
                Logits::F32(&x),
                ClassTargets::I64(&t),
                Upstream::Scalar(1.0),
            )
            .unwrap();
            let what = format!("sl extremes {mode} {cfg:?}");
            check(
                &what,
                tol(DType::F32),
                l.as_deref(),
                &want.loss,
                Some(&g),
                &want.grad,
            );
        }
    }
}

/// The WGSL port against src/math.rs's f32 element math (PolyMath): with reduction sum and
/// upstream 1 every gradient element is exactly `ml_element`'s. They agree to a few ulp except
/// where the gradient is ill-conditioned (p within a few ulp of clip, where p - clip cancels:
/// both are then about 1e-5 from float64, one rounding of p apart), so the bound is 5e-5
/// relative: far below any porting mistake. (The GPU compiler may contract multiply-adds, and
/// asl_ln_1p uses a series instead of Goldberg's form.)
#[test]
fn kernel_mirrors_the_f32_element_math() {
    let bs = backends();
    let mut rng = Rng::new(13);
    for (mode, b) in &bs {
        for cfg in [
            MultiLabel::default(),
            MultiLabel::paper(),
            MultiLabel::bce(),
            MultiLabel {
                gamma_pos: 0.5,
                gamma_neg: 1.7,
                clip: 0.2,
                ..Default::default()
            },
        ] {
            let cfg = MultiLabel {
                reduction: Reduction::Sum,
                ..cfg
            };
            let shape = Shape::new(16, 257);
            let n = shape.rows * shape.cols;
            let x: Vec<f32> = (0..n).map(|_| (rng.normal() * 12.0) as f32).collect();
            let y: Vec<f32> = (0..n)
                .map(|_| [0.0f32, 1.0, 0.25][rng.below(3) as usize])
                .collect();
            let (_, g) = ml_run(
                *b,
                &cfg,
                Pass::Backward,
                shape,
                Logits::F32(&x),
                MultiTargets::F32(&y),
                Upstream::Scalar(1.0),
            )
            .unwrap();
            let k =
                MlConsts::from_params(&config::MlParams::new(&cfg, shape.rows, shape.cols, 1.0));
            // The kernel's choice: hard targets with integer gammas take the fast case.
            let int = |g: f64| g.fract() == 0.0 && g < 16.0;
            let fast = int(cfg.gamma_pos) && int(cfg.gamma_neg);
            let (gp, gn) = (cfg.gamma_pos as u32, cfg.gamma_neg as u32);
            let want: Vec<f64> = (0..n)
                .map(|i| {
                    let hard = fast && (y[i] == 0.0 || y[i] == 1.0);
                    let r = match (cfg.clip > 0.0, hard) {
                        (true, true) => {
                            ml_element_hard::<PolyMath, true>(x[i], y[i] == 1.0, 1.0, &k, gp, gn)
                        }
                        (false, true) => {
                            ml_element_hard::<PolyMath, false>(x[i], y[i] == 1.0, 1.0, &k, gp, gn)
                        }
                        (true, false) => ml_element::<PolyMath, true>(x[i], y[i], 1.0, &k),
                        (false, false) => ml_element::<PolyMath, false>(x[i], y[i], 1.0, &k),
                    };
                    r.1 as f64
                })
                .collect();
            let gmax = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            common::assert_close(
                &format!("mirror {mode} {cfg:?}"),
                &g,
                &want,
                1e-9 * gmax,
                5e-5,
            );
        }
    }
}

#[test]
fn invalid_targets_are_errors_naming_the_first() {
    let bs = backends();
    for (mode, b) in &bs {
        let shape = Shape::new(40, 300); // 12000 elements: three multi-label workgroups
        let n = shape.rows * shape.cols;
        let x = vec![0.5f32; n];
        let cfg = MultiLabel::default();
        for bad in [11_999usize, 5000, 4095, 0] {
            let mut tf = vec![0.0f32; n];
            let mut tb = vec![0u8; n];
            // A later bad value as well: the first one must be reported.
            tf[11_999] = f32::NAN;
            tb[11_999] = 7;
            tf[bad] = 1.5;
            tb[bad] = 2;
            for pass in [Pass::Fused, Pass::Forward, Pass::Backward] {
                let e = ml_run(
                    *b,
                    &cfg,
                    pass,
                    shape,
                    Logits::F32(&x),
                    MultiTargets::F32(&tf),
                    Upstream::Scalar(1.0),
                )
                .unwrap_err();
                match e {
                    Error::InvalidTarget { index, .. } => assert_eq!(index, bad, "{mode}"),
                    e => panic!("{mode}: unexpected {e}"),
                }
                let e = ml_run(
                    *b,
                    &cfg,
                    pass,
                    shape,
                    Logits::F32(&x),
                    MultiTargets::U8(&tb),
                    Upstream::Scalar(1.0),
                )
                .unwrap_err();
                assert!(
                    matches!(e, Error::InvalidTarget { index, .. } if index == bad),
                    "{mode} {e}"
                );
            }
        }
        // Mean counts known elements; an all-unknown batch gives 0, not NaN.
        let tb = vec![255u8; n];
        let cfg = MultiLabel {
            reduction: Reduction::Mean,
            ..Default::default()
        };
        let (l, g) = ml_run(
            *b,
            &cfg,
            Pass::Fused,
            shape,
            Logits::F32(&x),
            MultiTargets::U8(&tb),
            Upstream::Scalar(1.0),
        )
        .unwrap();
        assert_eq!(l.unwrap(), vec![0.0]);
        assert!(g.iter().all(|&v| v == 0.0));
        // Single-label: an ignore-only batch gives 0 as well.
        let cfg = SingleLabel {
            ignore_index: Some(-100),
            ..Default::default()
        };
        let t = vec![-100i64; shape.rows];
        let (l, g) = sl_run(
            *b,
            &cfg,
            Pass::Fused,
            shape,
            Logits::F32(&x),
            ClassTargets::I64(&t),
            Upstream::Scalar(1.0),
        )
        .unwrap();
        assert_eq!(l.unwrap(), vec![0.0]);
        assert!(g.iter().all(|&v| v == 0.0));
        // Out-of-range classes are rejected (on the host for slices).
        let t = vec![300i64; shape.rows];
        let e = sl_run(
            *b,
            &cfg,
            Pass::Fused,
            shape,
            Logits::F32(&x),
            ClassTargets::I64(&t),
            Upstream::Scalar(1.0),
        )
        .unwrap_err();
        assert!(matches!(e, Error::ClassOutOfRange { row: 0, .. }), "{e}");
    }
}

#[test]
fn empty_inputs_give_zero() {
    let Some(b) = backend() else { return };
    for shape in [Shape::new(0, 5), Shape::new(3, 0)] {
        let (l, g) = ml_run(
            b,
            &MultiLabel::default(),
            Pass::Fused,
            shape,
            Logits::F32(&[]),
            MultiTargets::U8(&[]),
            Upstream::Scalar(1.0),
        )
        .unwrap();
        assert_eq!(l.unwrap(), vec![0.0]);
        assert!(g.is_empty());
    }
    let (l, _) = sl_run(
        b,
        &SingleLabel::default(),
        Pass::Fused,
        Shape::new(0, 5),
        Logits::F32(&[]),
        ClassTargets::I64(&[]),
        Upstream::Scalar(1.0),
    )
    .unwrap();
    assert_eq!(l.unwrap(), vec![0.0]);
}

/// Bitwise repeatability: the same input gives the same bits, run after run, for both
/// reduction flavours (the shapes span many workgroups and several rows per workgroup grid).
#[test]
fn bitwise_repeatable() {
    let bs = backends();
    let mut rng = Rng::new(17);
    let shape = Shape::new(64, 1000);
    let n = shape.rows * shape.cols;
    let x = logits(&mut rng, n, 4.0);
    let tb: Vec<u8> = (0..n).map(|i| (i % 13 == 0) as u8).collect();
    let tc: Vec<i64> = (0..64).map(|r| r * 11 % 1000).collect();
    for (mode, b) in &bs {
        let bits = |v: &(Option<Vec<f64>>, Vec<f64>)| -> Vec<u64> {
            v.0.iter()
                .flatten()
                .chain(v.1.iter())
                .map(|x| x.to_bits())
                .collect()
        };
        let ml = |cfg: &MultiLabel| {
            ml_run(
                *b,
                cfg,
                Pass::Fused,
                shape,
                Logits::F32(&x),
                MultiTargets::U8(&tb),
                Upstream::Scalar(1.0),
            )
            .unwrap()
        };
        let sl = |cfg: &SingleLabel| {
            sl_run(
                *b,
                cfg,
                Pass::Fused,
                shape,
                Logits::F32(&x),
                ClassTargets::I64(&tc),
                Upstream::Scalar(1.0),
            )
            .unwrap()
        };
        let mcfg = MultiLabel {
            reduction: Reduction::Mean,
            ..Default::default()
        };
        let first_ml = bits(&ml(&mcfg));
        let first_sl = bits(&sl(&SingleLabel::default()));
        for _ in 0..4 {
            assert_eq!(
                bits(&ml(&mcfg)),
                first_ml,
                "{mode}: multi-label differs between runs"
            );
            assert_eq!(
                bits(&sl(&SingleLabel::default())),
                first_sl,
                "{mode}: single-label differs between runs"
            );
        }
    }
}

/// Agreement with the fast CPU path (`asymloss::cpu::Cpu`), both held to the reference with
/// f32 tolerances, so they agree within twice those.
#[test]
fn agrees_with_the_cpu_path() {
    let bs = backends();
    let cpu = asymloss::cpu::Cpu::new();
    let mut rng = Rng::new(19);
    let t2 = Tol {
        loss_rtol: 2e-5,
        grad_rtol: 2e-4,
        grad_atol_rel: 2e-6,
    };
    for (mode, b) in &bs {
        for &cols in &[1usize, 80, 1000, 9605] {
            let rows = if cols > 4096 { 4 } else { 16 };
            let shape = Shape::new(rows, cols);
            let n = rows * cols;
            let x = logits(&mut rng, n, 4.0);
            let tb: Vec<u8> = (0..n).map(|_| (rng.below(20) == 0) as u8).collect();
            let cfg = random_ml(&mut rng, cols);
            let cfg = MultiLabel {
                reduction: Reduction::Sum,
                ..cfg
            };
            let a = ml_run(
                *b,
                &cfg,
                Pass::Fused,
                shape,
                Logits::F32(&x),
                MultiTargets::U8(&tb),
                Upstream::Scalar(1.0),
            )
            .unwrap();
            let c = ml_run(
                &cpu,
                &cfg,
                Pass::Fused,
                shape,
                Logits::F32(&x),
                MultiTargets::U8(&tb),
                Upstream::Scalar(1.0),
            )
            .unwrap();
            check(
                &format!("ml vs cpu {rows}x{cols} {mode}"),
                t2,
                a.0.as_deref(),
                c.0.as_ref().unwrap(),
                Some(&a.1),
                &c.1,
            );
            let tc: Vec<i64> = (0..rows as i64).map(|r| r * 7 % cols as i64).collect();
            let cfg = SingleLabel {
                ignore_index: None,
                ..random_sl(&mut rng, cols)
            };
            let a = sl_run(
                *b,
                &cfg,
                Pass::Fused,
                shape,
                Logits::F32(&x),
                ClassTargets::I64(&tc),
                Upstream::Scalar(1.0),
            )
            .unwrap();
            let c = sl_run(
                &cpu,
                &cfg,
                Pass::Fused,
                shape,
                Logits::F32(&x),
                ClassTargets::I64(&tc),
                Upstream::Scalar(1.0),
            )
            .unwrap();
            check(
                &format!("sl vs cpu {rows}x{cols} {mode}"),
                t2,
                a.0.as_deref(),
                c.0.as_ref().unwrap(),
                Some(&a.1),
                &c.1,
            );
        }
    }
}

/// A target logit about 87 below the row maximum: e^(z_t - max) sits at the bottom of the f32
/// range and sum_rest / e_t overflows; ln p_t must stay z_t - lse (not -inf).
#[test]
fn single_label_target_far_below_the_maximum() {
    for (label, b) in backends() {
        for gap in [87.0f32, 87.33, 95.0, 120.0] {
            let mut z = vec![0.0f32; 5000];
            z[17] = -gap;
            let shape = Shape::new(1, z.len());
            let t = [17i64];
            let cfg = SingleLabel::default();
            let up = Upstream::Scalar(1.0);
            let want =
                reference::single_label(&cfg, shape, Logits::F32(&z), ClassTargets::I64(&t), up)
                    .unwrap();
            let (l, g) = sl_run(
                b,
                &cfg,
                Pass::Fused,
                shape,
                Logits::F32(&z),
                ClassTargets::I64(&t),
                up,
            )
            .unwrap();
            let what = format!("{label} gap {gap}");
            check(
                &what,
                tol(DType::F32),
                l.as_deref(),
                &want.loss,
                Some(&g),
                &want.grad,
            );
        }
    }
}
