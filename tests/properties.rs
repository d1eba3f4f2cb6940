//! Property tests: random configurations and inputs, the reference's closed-form gradient
//! against central differences of its own forward, and the fast CPU path against the reference.
mod common;
use asymloss::cpu::Cpu;
use asymloss::reference;
use asymloss::*;
use common::*;
use proptest::prelude::*;

fn ml_cfg() -> impl Strategy<Value = MultiLabel> {
    (
        prop::sample::select(vec![0.0, 0.5, 1.0, 2.0, 3.5, 4.0]),
        prop::sample::select(vec![0.0, 0.25, 1.0, 2.0]),
        prop::sample::select(vec![0.0, 0.05, 0.3]),
        prop::sample::select(vec![1e-8, 1e-3]),
        any::<bool>(),
        prop::sample::select(vec![0.0, 0.1]),
        prop::sample::select(vec![Reduction::Sum, Reduction::Mean, Reduction::BatchMean]),
        prop::option::of(0.5f32..3.0),
    )
        .prop_map(|(gn, gp, clip, eps, det, s, red, pw)| MultiLabel {
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
            class_weight: None,
            pos_weight: pw.map(PosWeight::Scalar),
        })
}

/// The loss is piecewise smooth; its kinks are where p = clip, p = eps or 1 - p = eps (and
/// 1 - p + clip = 1). Central differences are only meaningful away from them.
fn near_kink(x: f64, cfg: &MultiLabel) -> bool {
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let mut kinks = vec![logit(cfg.eps), -logit(cfg.eps)];
    if cfg.clip > 0.0 {
        kinks.push(logit(cfg.clip));
    }
    kinks.iter().any(|k| (x - k).abs() < 1e-3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn multi_label_gradient_matches_central_differences(
        cfg in ml_cfg(),
        xs in prop::collection::vec(-12.0f64..12.0, 6),
        ys in prop::collection::vec(prop::sample::select(vec![0.0f32, 1.0, 0.3, 0.8, -1.0]), 6),
    ) {
        // A detached gradient is by design not the derivative of the forward: test the
        // differentiated one here (detached values are pinned by the golden cases).
        let cfg = MultiLabel { focal_grad: FocalGrad::Differentiated, ..cfg };
        let xs: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
        let shape = Shape::new(2, 3);
        let t = MultiTargets::F32(&ys);
        let out = reference::multi_label(&cfg, shape, Logits::F32(&xs), t, Upstream::Scalar(1.0))
            .unwrap();
        // Differences in f64 around each (f32) logit, through a rescaled copy of the forward.
        for i in 0..6 {
            if near_kink(xs[i] as f64, &cfg) {
                continue;
            }
            let f = |x: f64| {
                let mut cfg1 = cfg.clone();
                cfg1.reduction = Reduction::None;
                let y = ys[i] as f64;
                if y < 0.0 {
                    return 0.0;
                }
                let y = y * (1.0 - cfg.smoothing) + 0.5 * cfg.smoothing;
                reference::ml_element(x, y, &reference::MlElem::new(&cfg1, i % 3)).0
            };
            let h = 1e-6;
            let x = xs[i] as f64;
            let fd = (f(x + h) - f(x - h)) / (2.0 * h);
            let scale = match cfg.reduction {
                Reduction::Sum => 1.0,
                Reduction::BatchMean => 0.5,
                _ => 1.0 / ys.iter().filter(|&&v| v >= 0.0).count().max(1) as f64,
            };
            let g = out.grad[i] / scale;
            prop_assert!(close(g, fd, 1e-7, 1e-5), "element {i}: closed form {g} vs fd {fd}");
        }
    }

    #[test]
    fn single_label_gradient_matches_central_differences(
        gp in prop::sample::select(vec![0.0, 0.5, 1.0, 3.0]),
        gn in prop::sample::select(vec![0.0, 0.5, 1.0, 4.0]),
        s in prop::sample::select(vec![0.0, 0.1, 0.4]),
        z in prop::collection::vec(-8.0f64..8.0, 5),
        t in 0usize..5,
    ) {
        let cfg = SingleLabel {
            gamma_pos: gp,
            gamma_neg: gn,
            smoothing: s,
            ..SingleLabel::default()
        };
        let (_, g) = reference::sl_row(&z, t, &cfg);
        for k in 0..5 {
            let h = 1e-6;
            let mut zp = z.clone();
            zp[k] += h;
            let mut zm = z.clone();
            zm[k] -= h;
            let (lp, lm) = (reference::sl_row(&zp, t, &cfg).0, reference::sl_row(&zm, t, &cfg).0);
            let fd = (lp - lm) / (2.0 * h);
            prop_assert!(
                close(g[k], fd, 1e-7, 1e-5),
                "column {k}: closed form {} vs fd {fd}",
                g[k]
            );
        }
    }

    #[test]
    fn fast_cpu_path_matches_reference(
        cfg in ml_cfg(),
        rows in 1usize..6,
        cols in 1usize..40,
        seed in any::<u64>(),
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = rows * cols;
        let x: Vec<f32> = (0..n).map(|_| rng.random_range(-25.0f32..25.0)).collect();
        let y: Vec<f32> =
            (0..n).map(|_| [0.0f32, 1.0, 0.5, -1.0][rng.random_range(0..4)]).collect();
        let shape = Shape::new(rows, cols);
        let (lg, tg, up) = (Logits::F32(&x), MultiTargets::F32(&y), Upstream::Scalar(1.0));
        let want = reference::multi_label(&cfg, shape, lg, tg, up).unwrap();
        let mut g = vec![f32::NAN; n];
        let inp = MultiInputs { shape, logits: lg, targets: tg, upstream: up };
        let l = Cpu::new().multi_label(&cfg, Pass::Fused, &inp, Some(GradMut::F32(&mut g)));
        let l = l.unwrap().unwrap();
        let gmax = want.grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        prop_assert!(close(l.scalar().unwrap() as f64, want.loss[0], 1e-30, 1e-5));
        for (i, (&gi, &wi)) in g.iter().zip(&want.grad).enumerate() {
            prop_assert!(
                close(gi as f64, wi, 1e-6 * gmax + 1e-30, 1e-4),
                "grad {i}: {gi} vs {wi}"
            );
        }
    }
}
