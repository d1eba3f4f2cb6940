//! Boundary grids and the rows of `../shared/docs/bug-reports.md` that concern a loss value or a
//! gradient, each held to its right value on the reference and on the fast CPU path.
mod common;
use asymloss::cpu::Cpu;
use asymloss::reference;
use asymloss::*;
use common::*;
use half::{bf16, f16};

/// Runs the multi-label loss on the reference and on the CPU path (f32 logits); returns
/// (reference loss, reference grad, cpu loss, cpu grad).
fn ml_both(
    cfg: &MultiLabel,
    rows: usize,
    x: &[f32],
    y: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let shape = Shape::new(rows, x.len() / rows);
    let r = reference::multi_label(
        cfg,
        shape,
        Logits::F32(x),
        MultiTargets::F32(y),
        Upstream::Scalar(1.0),
    )
    .unwrap();
    let mut g = vec![f32::NAN; x.len()];
    let inp = MultiInputs {
        shape,
        logits: Logits::F32(x),
        targets: MultiTargets::F32(y),
        upstream: Upstream::Scalar(1.0),
    };
    let l = Cpu::new()
        .multi_label(cfg, Pass::Fused, &inp, Some(GradMut::F32(&mut g)))
        .unwrap()
        .unwrap();
    (
        r.loss,
        r.grad,
        l.as_slice().iter().map(|&v| v as f64).collect(),
        g.iter().map(|&v| v as f64).collect(),
    )
}

fn sl_both(
    cfg: &SingleLabel,
    rows: usize,
    z: &[f32],
    t: &[i64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let shape = Shape::new(rows, z.len() / rows);
    let r = reference::single_label(
        cfg,
        shape,
        Logits::F32(z),
        ClassTargets::I64(t),
        Upstream::Scalar(1.0),
    )
    .unwrap();
    let mut g = vec![f32::NAN; z.len()];
    let inp = SingleInputs {
        shape,
        logits: Logits::F32(z),
        targets: ClassTargets::I64(t),
        upstream: Upstream::Scalar(1.0),
    };
    let l = Cpu::new()
        .single_label(cfg, Pass::Fused, &inp, Some(GradMut::F32(&mut g)))
        .unwrap()
        .unwrap();
    (
        r.loss,
        r.grad,
        l.as_slice().iter().map(|&v| v as f64).collect(),
        g.iter().map(|&v| v as f64).collect(),
    )
}

fn sum_cfg(cfg: MultiLabel) -> MultiLabel {
    MultiLabel {
        reduction: Reduction::Sum,
        ..cfg
    }
}

/// Semantics doc section 4: timm's f32 values for single elements (sum reduction), which our
/// f32 path must reproduce wherever timm's f32 is itself accurate.
#[test]
fn single_element_tables() {
    let d = sum_cfg(MultiLabel::default());
    let s = sum_cfg(MultiLabel {
        focal_grad: FocalGrad::Detached,
        ..MultiLabel::default()
    });
    // (x, y, loss, grad differentiated, grad detached)
    let rows: &[(f32, f32, f64, f64, f64)] = &[
        (f32::NEG_INFINITY, 1.0, 18.420681, 0.0, 0.0),
        (-30.0, 1.0, 18.420681, -1.723738e-12, 0.0),
        (-20.0, 1.0, 18.420681, -3.7967855e-08, 0.0),
        (-10.0, 1.0, 9.9995918, -1.0003631, -0.99990916),
        (0.0, 1.0, 0.34657359, -0.4232868, -0.25),
        (1.0, 1.0, 0.084249027, -0.13392046, -0.072329484),
        // timm's f32 gives 1.5223963e-08 here (1 - p cancels); this is the float64 value.
        (
            9.0,
            1.0,
            1.5227160876674044e-08,
            -3.0451503310436103e-08,
            -1.5226221382821915e-08,
        ),
        (-5.0, 0.0, 0.0, 0.0, 0.0),
        (f32::NEG_INFINITY, 0.0, 0.0, 0.0, 0.0),
        (-1.0, 0.0, 0.00056779711, 0.0026179668, 0.00057841267),
        (0.0, 0.0, 0.02451505, 0.073117092, 0.018639201),
        (1.0, 0.0, 0.24586025, 0.41653395, 0.13262849),
        // timm f32: detached grad 0.0020036658 (cancellation); float64:
        (9.0, 0.0, 2.4367688, 0.0032699219, 0.0020038756481488783),
        // timm f32: loss 2.4400394 and grads 3.1667e-6 / 1.9419e-6 (cancellation); float64:
        (16.0, 0.0, 2.440039670756784, 2.9893762e-06, 1.8332067e-06),
        (f32::INFINITY, 0.0, 2.4400427, 0.0, 0.0),
        (f32::INFINITY, 1.0, 0.0, 0.0, 0.0),
    ];
    for &(x, y, loss, gd, gs) in rows {
        for (cfg, g) in [(&d, gd), (&s, gs)] {
            let (rl, rg, cl, cg) = ml_both(cfg, 1, &[x], &[y]);
            let what = format!("x={x} y={y} {:?}", cfg.focal_grad);
            // The table holds timm's f32 results: good to a few f32 ulps, hence 2e-6.
            assert_close(&format!("{what} ref loss"), &rl, &[loss], 1e-12, 2e-6);
            assert_close(&format!("{what} ref grad"), &rg, &[g], 1e-15, 2e-6);
            assert_close(&format!("{what} cpu loss"), &cl, &[loss], 1e-12, 2e-6);
            assert_close(&format!("{what} cpu grad"), &cg, &[g], 1e-15, 1e-5);
        }
    }
}

/// Grids crossing every boundary: the eps floor (x = -+18.4207), logit(clip) (-2.9444), the
/// f32/f16/bf16 sigmoid saturation points (16.636, 8.317, 6.235), +-inf and NaN.
#[test]
fn boundary_grids_agree_with_the_reference() {
    let centres = [
        -18.420681f32,
        18.420681,
        -2.944439,
        16.636,
        8.317,
        6.235,
        0.0,
        -88.7,
        88.7,
    ];
    let mut x = Vec::new();
    for c in centres {
        // Offsets k + 0.37 step across the boundary without landing on it: at a kink itself
        // (p = clip with gamma < 1, an infinite derivative) f32 and f64 may pick different sides.
        for k in -20..20 {
            x.push(c + (k as f32 + 0.37) * 1e-3 * c.abs().max(1.0));
        }
    }
    x.extend([f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30, 103.0, -103.0]);
    let n = x.len();
    for y in [0.0f32, 1.0, 0.3, 0.999] {
        let t = vec![y; n];
        for cfg in [
            MultiLabel::default(),
            MultiLabel::paper(),
            MultiLabel::bce(),
            MultiLabel::focal(2.0),
            MultiLabel {
                gamma_pos: 0.5,
                gamma_neg: 0.5,
                ..MultiLabel::default()
            },
            MultiLabel {
                eps: 0.0,
                clip: 0.0,
                ..MultiLabel::default()
            },
        ] {
            let cfg = sum_cfg(cfg);
            let (rl, rg, cl, cg) = ml_both(&cfg, 1, &x, &t);
            let gmax = rg.iter().fold(
                0.0f64,
                |m, v| if v.is_finite() { m.max(v.abs()) } else { m },
            );
            assert_close(&format!("y={y} {cfg:?} loss"), &cl, &rl, 0.0, 1e-5);
            assert_close(&format!("y={y} {cfg:?} grad"), &cg, &rg, 1e-6 * gmax, 1e-4);
            assert!(
                cg.iter().all(|v| v.is_finite()),
                "non-finite gradient on the grid"
            );
        }
    }
}

#[test]
fn nan_logits_propagate_and_infinities_are_limits() {
    let cfg = sum_cfg(MultiLabel {
        reduction: Reduction::None,
        ..MultiLabel::default()
    });
    let x = [f32::NAN, 0.0, f32::INFINITY, f32::NEG_INFINITY];
    let (rl, rg, cl, cg) = ml_both(&cfg, 1, &x, &[1.0, 1.0, 0.0, 1.0]);
    for (l, g) in [(&rl, &rg), (&cl, &cg)] {
        assert!(l[0].is_nan() && g[0].is_nan());
        assert!(l[1..].iter().chain(&g[1..]).all(|v| v.is_finite()));
    }
    // Single-label: a NaN makes its row NaN; -inf in a non-target column is the limit p = 0;
    // +inf columns share the probability mass.
    let cfg = SingleLabel {
        reduction: Reduction::None,
        ..SingleLabel::default()
    };
    let z = [
        f32::NAN,
        0.0,
        1.0,
        0.0,
        f32::NEG_INFINITY,
        1.0,
        f32::INFINITY,
        0.0,
        f32::INFINITY,
    ];
    let (rl, rg, cl, cg) = sl_both(&cfg, 3, &z, &[1, 0, 2]);
    for (l, g) in [(&rl, &rg), (&cl, &cg)] {
        assert!(l[0].is_nan() && g[..3].iter().all(|v| v.is_nan()));
        assert!(
            l[1..].iter().chain(&g[3..]).all(|v| v.is_finite()),
            "{l:?} {g:?}"
        );
    }
    assert_close("sl inf rows", &cl[1..], &rl[1..], 1e-7, 1e-5);
    assert_close("sl inf grads", &cg[3..], &rg[3..], 1e-7, 1e-4);
}

/// B1 / B13: fp16 logits that underflow sigmoid gave NaN in timm; here the math is f32 with
/// log-sigmoid forms, so the loss is finite.
#[test]
fn b1_fp16_underflow_is_finite() {
    let cpu = Cpu::new();
    let x: Vec<f16> = [-20.0f32, -20.0, 5.0, 12.0, 0.0]
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect();
    let y = [1.0f32, 0.0, 0.0, 0.0, 1.0];
    let cfg = sum_cfg(MultiLabel::default());
    let mut g = vec![f16::NAN; 5];
    let inp = MultiInputs {
        shape: Shape::new(1, 5),
        logits: Logits::F16(&x),
        targets: MultiTargets::F32(&y),
        upstream: Upstream::Scalar(1.0),
    };
    let l = cpu
        .multi_label(&cfg, Pass::Fused, &inp, Some(GradMut::F16(&mut g)))
        .unwrap()
        .unwrap();
    // timm 1.0.31 (fp32 internally): loss 23.479668; grads [-5.96e-08, 0, 0.157, 1.6463e-4,
    // -0.4233]. At x = 12 timm's f32 1 - p cancels (1% off); the float64 value is 1.6315e-4.
    assert_close(
        "B1 loss",
        &[l.scalar().unwrap() as f64],
        &[23.479668],
        0.0,
        1e-6,
    );
    let g: Vec<f64> = g.iter().map(|v| v.to_f64()).collect();
    assert_close(
        "B1 grad",
        &g,
        &[-5.96e-08, 0.0, 0.15686035, 1.6315e-4, -0.42333984],
        1e-8,
        2e-3,
    );
}

/// B2: without the eps floor, large logits must still give a finite loss (0 here).
#[test]
fn b2_no_eps_floor_is_finite() {
    for eps in [0.0, 1e-8] {
        let cfg = sum_cfg(MultiLabel {
            eps,
            ..MultiLabel::default()
        });
        let (rl, rg, cl, cg) = ml_both(&cfg, 1, &[-100.0], &[0.0]);
        assert_eq!((rl[0], rg[0], cl[0], cg[0]), (0.0, 0.0, 0.0, 0.0));
    }
}

/// B6, B7, B8, B18: the reductions' values (timm 1.0.31), and a sum over 64 x 9605 that stays
/// finite.
#[test]
fn b8_reductions() {
    let x = [2.0f32, -1.0, 0.3, -0.5, 1.5, -3.0];
    let y = [1.0f32, 0.0, 0.0, 0.0, 1.0, 1.0];
    for (red, want) in [
        (Reduction::Sum, 3.0172398),
        (Reduction::BatchMean, 1.5086199),
        (Reduction::Mean, 0.5028733),
    ] {
        let cfg = MultiLabel {
            reduction: red,
            ..MultiLabel::default()
        };
        let (rl, _, cl, _) = ml_both(&cfg, 2, &x, &y);
        assert_close(red.name(), &rl, &[want], 0.0, 2e-7);
        assert_close(red.name(), &cl, &[want], 0.0, 2e-6);
    }
    let n = 64 * 9605;
    let x: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 4.0).collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 13 == 0) as u8 as f32).collect();
    let cfg = sum_cfg(MultiLabel::default());
    let (rl, _, cl, cg) = ml_both(&cfg, 64, &x, &y);
    assert!(cl[0].is_finite() && cg.iter().all(|v| v.is_finite()));
    assert_close("B7 sum", &cl, &rl, 0.0, 1e-5);
}

/// B9: targets outside [0, 1] are refused (timm silently returns negative or NaN losses), and
/// the loss is >= 0 on a grid of valid soft targets.
#[test]
fn b9_out_of_range_targets_are_refused_and_valid_ones_give_non_negative_loss() {
    let cfg = MultiLabel::default();
    for bad in [2.0f32, 1.5, f32::NAN, f32::INFINITY] {
        let x = [3.0f32, 0.0];
        let y = [0.0f32, bad];
        let inp = MultiInputs {
            shape: Shape::new(1, 2),
            logits: Logits::F32(&x),
            targets: MultiTargets::F32(&y),
            upstream: Upstream::Scalar(1.0),
        };
        let mut g = [0.0f32; 2];
        let e = Cpu::new()
            .multi_label(&cfg, Pass::Fused, &inp, Some(GradMut::F32(&mut g)))
            .unwrap_err();
        assert!(matches!(e, Error::InvalidTarget { index: 1, .. }), "{e}");
        let e = reference::multi_label(
            &cfg,
            Shape::new(1, 2),
            Logits::F32(&x),
            MultiTargets::F32(&y),
            Upstream::Scalar(1.0),
        )
        .unwrap_err();
        assert!(e.to_string().contains("element 1"), "{e}");
    }
    let x: Vec<f32> = (0..2001).map(|i| (i as f32 - 1000.0) / 100.0).collect();
    for yv in 0..=20 {
        let y = vec![yv as f32 / 20.0; x.len()];
        let c = MultiLabel {
            reduction: Reduction::None,
            ..cfg.clone()
        };
        let (rl, _, cl, _) = ml_both(&c, 1, &x, &y);
        assert!(
            rl.iter().chain(&cl).all(|&v| v >= 0.0 && v.is_finite()),
            "negative loss at y={yv}/20"
        );
    }
}

/// B10: single-label ASL is cross-entropy only without smoothing; gamma_neg acts on the
/// smoothing mass alone.
#[test]
fn b10_single_label_versus_cross_entropy() {
    let z = [2.0f32, -1.0, 0.5, 0.0, -0.3, 0.8, 3.0, -2.0];
    let t = [0i64, 2];
    for (gn, s, want) in [
        (0.0, 0.0, 0.24297571),
        (2.0, 0.0, 0.24297571),
        (4.0, 0.0, 0.24297571),
        (8.0, 0.0, 0.24297571),
        (0.0, 0.1, 0.45547569),
        (2.0, 0.1, 0.22596931),
        (4.0, 0.1, 0.22477213),
    ] {
        let cfg = SingleLabel {
            gamma_pos: 0.0,
            gamma_neg: gn,
            smoothing: s,
            ..SingleLabel::default()
        };
        let (rl, _, cl, _) = sl_both(&cfg, 2, &z, &t);
        assert_close(&format!("gn={gn} s={s}"), &rl, &[want], 0.0, 2e-7);
        assert_close(&format!("gn={gn} s={s}"), &cl, &[want], 0.0, 2e-6);
    }
    // Semantics doc section 4, three rows.
    let z = [
        2.0f32, -1.0, 0.5, 0.0, -0.3, 0.8, 3.0, -2.0, 0.1, 0.2, 0.3, 0.4,
    ];
    let t = [0i64, 2, 1];
    for (gp, gn, s, want) in [
        (0.0, 4.0, 0.1, 0.59478068),
        (1.0, 4.0, 0.1, 0.37635541),
        (0.0, 0.0, 0.0, 0.64282900),
        (0.0, 0.0, 0.1, 0.78282899),
    ] {
        let cfg = SingleLabel {
            gamma_pos: gp,
            gamma_neg: gn,
            smoothing: s,
            ..SingleLabel::default()
        };
        let (rl, _, cl, _) = sl_both(&cfg, 3, &z, &t);
        assert_close("sl table", &rl, &[want], 0.0, 2e-7);
        assert_close("sl table", &cl, &[want], 0.0, 2e-6);
    }
}

/// B11: 0 < gamma < 1 at a focusing base of exactly 0 gave NaN gradients in PyTorch; the limit
/// is 0. Single-label likewise.
#[test]
fn b11_fractional_gamma_has_finite_gradients() {
    let cfg = sum_cfg(MultiLabel {
        gamma_pos: 0.5,
        ..MultiLabel::default()
    });
    let (_, rg, _, cg) = ml_both(&cfg, 1, &[20.0, 40.0, 200.0], &[1.0; 3]);
    assert!(
        rg.iter()
            .chain(&cg)
            .all(|v| v.is_finite() && v.abs() < 1e-8),
        "{rg:?} {cg:?}"
    );
    let cfg = sum_cfg(MultiLabel {
        gamma_neg: 0.5,
        ..MultiLabel::default()
    });
    let (rl, rg, cl, cg) = ml_both(&cfg, 1, &[-5.0], &[0.0]);
    assert_eq!((rl[0], rg[0], cl[0], cg[0]), (0.0, 0.0, 0.0, 0.0));
    for cfg in [
        SingleLabel {
            gamma_pos: 0.5,
            ..SingleLabel::default()
        },
        SingleLabel {
            gamma_neg: 0.5,
            ..SingleLabel::default()
        },
    ] {
        let (rl, rg, cl, cg) = sl_both(&cfg, 2, &[200.0, 0.0, 0.5, 0.0, 200.0, 0.5], &[0, 0]);
        assert!(rl
            .iter()
            .chain(&rg)
            .chain(&cl)
            .chain(&cg)
            .all(|v| v.is_finite()));
        assert_close("B11 sl grad", &cg, &rg, 1e-7, 1e-4);
    }
}

/// B12: unknown labels (negative f32, 255 in u8) are absent: the same loss as the known
/// elements alone, gradient 0 there, and `mean` divides by the known count.
#[test]
fn b12_unknown_labels_are_absent() {
    let x = [2.0f32, -1.0, 0.3, -0.5, 1.5, -3.0];
    let y = [1.0f32, -1.0, 0.0, 0.0, 1.0, -0.5];
    let y8 = [1u8, 255, 0, 0, 1, 255];
    let known_x = [2.0f32, 0.3, -0.5, 1.5];
    let known_y = [1.0f32, 0.0, 0.0, 1.0];
    for red in [Reduction::Sum, Reduction::Mean] {
        let cfg = MultiLabel {
            reduction: red,
            ..MultiLabel::default()
        };
        let (rl, rg, cl, cg) = ml_both(&cfg, 1, &x, &y);
        let (kl, _, _, _) = ml_both(&cfg, 1, &known_x, &known_y);
        assert_close("B12 ref", &rl, &kl, 0.0, 1e-12);
        assert_close("B12 cpu", &cl, &kl, 0.0, 1e-6);
        assert_eq!((rg[1], rg[5], cg[1], cg[5]), (0.0, 0.0, 0.0, 0.0));
        let mut g = [f32::NAN; 6];
        let inp = MultiInputs {
            shape: Shape::new(1, 6),
            logits: Logits::F32(&x),
            targets: MultiTargets::U8(&y8),
            upstream: Upstream::Scalar(1.0),
        };
        let l = Cpu::new()
            .multi_label(&cfg, Pass::Fused, &inp, Some(GradMut::F32(&mut g)))
            .unwrap()
            .unwrap();
        assert_close("B12 u8", &[l.scalar().unwrap() as f64], &kl, 0.0, 1e-6);
        assert_close("B12 u8 grad", &g.map(|v| v as f64), &cg, 0.0, 0.0);
    }
}

/// B14: clip is the paper's shifted probability p_m = max(p - m, 0); for p <= m loss and
/// gradient are exactly 0.
#[test]
fn b14_probability_shifting() {
    let cfg = sum_cfg(MultiLabel::default());
    let (rl, _, cl, _) = ml_both(&cfg, 1, &[0.0], &[0.0]);
    let pm: f64 = 0.5 - 0.05;
    let want = -(pm.powi(4)) * (1.0 - pm).ln();
    assert_close("B14", &rl, &[want], 0.0, 1e-12);
    assert_close("B14", &cl, &[want], 0.0, 1e-6);
    let x: Vec<f32> = (0..100).map(|i| -2.9445 - i as f32 * 0.1).collect();
    let (rl, rg, cl, cg) = ml_both(&cfg, 1, &x, &vec![0.0; 100]);
    assert!(rl
        .iter()
        .chain(&rg)
        .chain(&cl)
        .chain(&cg)
        .all(|&v| v == 0.0));
}

/// B15: the detach flag's effect at x = 0 (defaults).
#[test]
fn b15_detached_versus_differentiated() {
    for (fg, g1, g0) in [
        (FocalGrad::Differentiated, -0.4232868, 0.073117092),
        (FocalGrad::Detached, -0.25, 0.018639201),
    ] {
        let cfg = sum_cfg(MultiLabel {
            focal_grad: fg,
            ..MultiLabel::default()
        });
        let (_, rg, _, cg) = ml_both(&cfg, 1, &[0.0, 0.0], &[1.0, 0.0]);
        assert_close("B15 ref", &rg, &[g1, g0], 0.0, 2e-7);
        assert_close("B15 cpu", &cg, &[g1, g0], 0.0, 2e-6);
    }
}

/// B16 and B19: wrong target shapes and class indices get clear errors; ignore_index works.
#[test]
fn b16_b19_shapes_and_class_indices() {
    let x = [0.0f32; 6];
    let y = [0.0f32; 5];
    let inp = MultiInputs {
        shape: Shape::new(2, 3),
        logits: Logits::F32(&x),
        targets: MultiTargets::F32(&y),
        upstream: Upstream::Scalar(1.0),
    };
    let e = Cpu::new()
        .multi_label(&MultiLabel::default(), Pass::Forward, &inp, None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                what: "targets",
                ..
            }
        ),
        "{e}"
    );
    for bad in [-100i64, -1, 3] {
        let t = [0i64, bad];
        let inp = SingleInputs {
            shape: Shape::new(2, 3),
            logits: Logits::F32(&x),
            targets: ClassTargets::I64(&t),
            upstream: Upstream::Scalar(1.0),
        };
        let e = Cpu::new()
            .single_label(&SingleLabel::default(), Pass::Forward, &inp, None)
            .unwrap_err();
        assert!(matches!(e, Error::ClassOutOfRange { row: 1, .. }), "{e}");
    }
    // With ignore_index the ignored row adds 0 and `mean` divides by the rows that count.
    let z = [2.0f32, -1.0, 0.5, 0.1, 0.2, 0.3];
    let cfg = SingleLabel {
        ignore_index: Some(-100),
        ..SingleLabel::default()
    };
    let (rl, rg, cl, cg) = sl_both(&cfg, 2, &z, &[0, -100]);
    let (one, _, _, _) = sl_both(&SingleLabel::default(), 1, &z[..3], &[0]);
    assert_close("B19 ignore", &rl, &one, 0.0, 1e-12);
    assert_close("B19 ignore cpu", &cl, &one, 0.0, 1e-6);
    assert!(rg[3..].iter().chain(&cg[3..]).all(|&v| v == 0.0));
}

/// B5: the single-label backward that raised in old versions works and matches the reference.
#[test]
fn b5_single_label_backward() {
    let (rl, rg, cl, cg) = sl_both(
        &SingleLabel::default(),
        2,
        &[2.0, -1.0, 0.5, 0.1, 0.2, 0.3],
        &[0, 2],
    );
    assert_close("B5 loss", &cl, &rl, 0.0, 1e-6);
    assert_close("B5 grad", &cg, &rg, 1e-8, 1e-5);
}

/// B20: fp16/bf16 logits keep their gradient past the half-precision sigmoid saturation
/// points because the math is f32 with sigma(-x) for 1 - p.
#[test]
fn b20_half_precision_saturation() {
    let cfg = sum_cfg(MultiLabel::default());
    let x = [9.0f32, 8.317, 6.235];
    let y = [0.0f32; 3];
    let r = reference::multi_label(
        &cfg,
        Shape::new(1, 3),
        Logits::F32(&x),
        MultiTargets::F32(&y),
        Upstream::Scalar(1.0),
    )
    .unwrap();
    assert_close("B20 f64", &r.grad[..1], &[0.0032699219], 0.0, 1e-6);
    let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    let mut gh = [f16::ZERO; 3];
    let mut gb = [bf16::ZERO; 3];
    let cpu = Cpu::new();
    let inp = MultiInputs {
        shape: Shape::new(1, 3),
        logits: Logits::F16(&xh),
        targets: MultiTargets::F32(&y),
        upstream: Upstream::Scalar(1.0),
    };
    cpu.multi_label(&cfg, Pass::Backward, &inp, Some(GradMut::F16(&mut gh)))
        .unwrap();
    let inp = MultiInputs {
        logits: Logits::Bf16(&xb),
        ..inp
    };
    cpu.multi_label(&cfg, Pass::Backward, &inp, Some(GradMut::Bf16(&mut gb)))
        .unwrap();
    assert!(
        (gh[0].to_f64() - 0.0032699).abs() < 2e-6,
        "f16 grad {}",
        gh[0]
    );
    assert!(
        (gb[0].to_f64() - 0.0032699).abs() < 2e-5,
        "bf16 grad {}",
        gb[0]
    );
    // Every one of the three (past the f16 and bf16 saturation points) keeps a gradient.
    assert!(gh.iter().all(|v| v.to_f32() > 0.0), "{gh:?}");
    assert!(gb.iter().all(|v| v.to_f32() > 0.0), "{gb:?}");
}

/// An empty batch gives loss 0 (not PyTorch's 0/0) for every reduction.
#[test]
fn empty_batches_give_zero() {
    for red in [Reduction::Sum, Reduction::Mean, Reduction::BatchMean] {
        let cfg = MultiLabel {
            reduction: red,
            ..MultiLabel::default()
        };
        let inp = MultiInputs {
            shape: Shape::new(0, 5),
            logits: Logits::F32(&[]),
            targets: MultiTargets::F32(&[]),
            upstream: Upstream::Scalar(1.0),
        };
        let l = Cpu::new()
            .multi_label(&cfg, Pass::Fused, &inp, Some(GradMut::F32(&mut [])))
            .unwrap()
            .unwrap();
        assert_eq!(
            l.scalar().unwrap().to_bits(),
            0.0f32.to_bits(),
            "+0, not -0"
        );
        // All unknown: nothing known to average.
        let x = [1.0f32; 4];
        let y = [-1.0f32; 4];
        let (rl, _, cl, _) = ml_both(&cfg, 2, &x, &y);
        assert_eq!((rl[0], cl[0]), (0.0, 0.0));
        let scfg = SingleLabel {
            reduction: red,
            ignore_index: Some(-1),
            ..SingleLabel::default()
        };
        let (rl, _, cl, _) = sl_both(&scfg, 2, &[0.0; 4], &[-1, -1]);
        assert_eq!((rl[0], cl[0]), (0.0, 0.0));
    }
}

/// A target logit about 87 below the row maximum: e^(z_t - max) is at the bottom of the f32
/// range, so sum_rest / e_t overflows; the target's log-probability must stay z_t - lse.
#[test]
fn single_label_target_far_below_the_maximum() {
    for gap in [87.0f32, 87.33, 87.5, 95.0, 103.9, 120.0] {
        let mut z = vec![0.0f32; 10_000];
        z[17] = -gap;
        for cfg in [SingleLabel::default(), SingleLabel::cross_entropy()] {
            let (rl, rg, cl, cg) = sl_both(&cfg, 1, &z, &[17]);
            assert!(cl[0].is_finite(), "gap {gap}: loss {}", cl[0]);
            assert_close(&format!("gap {gap} loss"), &cl, &rl, 0.0, 1e-5);
            assert_close(&format!("gap {gap} grad"), &cg, &rg, 1e-9, 1e-4);
        }
    }
}

/// gamma_neg = 0 with smoothing: a -inf non-target logit makes the loss +inf (its limit) while
/// every gradient element keeps its finite limit (the non-target's g_j = -a_j).
#[test]
fn single_label_minus_infinity_without_focusing_has_a_finite_gradient() {
    let cfg = SingleLabel {
        gamma_pos: 0.0,
        gamma_neg: 0.0,
        smoothing: 0.1,
        reduction: Reduction::None,
        ..SingleLabel::default()
    };
    let z = [0.0f32, f32::NEG_INFINITY, 0.0, 0.0, 0.0, 0.0, 0.0, 88.73];
    let (rl, rg, cl, cg) = sl_both(&cfg, 1, &z, &[5]);
    assert_eq!((rl[0], cl[0]), (f64::INFINITY, f64::INFINITY));
    assert!(rg.iter().chain(&cg).all(|v| v.is_finite()), "{rg:?} {cg:?}");
    assert_close("grad", &cg, &rg, 1e-7, 1e-4);
}
