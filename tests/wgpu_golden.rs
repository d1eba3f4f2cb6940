//! Every timm golden case (`../shared/golden/timm_asl_cases.json`) through the wgpu backend:
//! forward, backward and fused passes, f32 and (where the targets allow) u8 multi-label
//! targets, i64 / i32 / u32 class indices, with subgroup and workgroup-memory reductions, on
//! NaN-poisoned output buffers. The oracle is the float64 reference on the same inputs, which
//! `golden_reference.rs` holds to timm's values (timm's own float64 numbers lose digits where
//! 1 - sigmoid(x) cancels, below that file's 1e-12 absolute tolerance).
#![cfg(feature = "wgpu")]

mod common;
mod wgpu_common;

use asymloss::reference;
use asymloss::*;
use common::*;
use wgpu_common::*;

fn upstream(c: &Case) -> Upstream<'_> {
    if c.upstream.len() == 1 && c.expected_loss.len() == 1 {
        Upstream::Scalar(c.upstream[0])
    } else {
        Upstream::Array(&c.upstream)
    }
}

/// Runs one case with `pass`, returning (loss, grad) as f64.
fn run(
    b: &dyn Backend,
    c: &Case,
    pass: Pass,
    u8_targets: bool,
    class: usize,
) -> Result<(Option<Vec<f64>>, Vec<f64>)> {
    let shape = Shape::new(c.rows, c.cols);
    let mut g = vec![f32::NAN; c.rows * c.cols];
    let grad = pass.wants_grad().then_some(GradMut::F32(&mut g));
    let loss = if c.multi {
        let tf: Vec<f32> = c.targets.iter().map(|&v| v as f32).collect();
        let tb: Vec<u8> = c
            .targets
            .iter()
            .map(|&v| if v < 0.0 { 255 } else { v as u8 })
            .collect();
        let targets = if u8_targets {
            MultiTargets::U8(&tb)
        } else {
            MultiTargets::F32(&tf)
        };
        let inp = MultiInputs {
            shape,
            logits: Logits::F32(&c.logits),
            targets,
            upstream: upstream(c),
        };
        b.multi_label(&c.ml, pass, &inp, grad)?
    } else {
        let t64: Vec<i64> = c.targets.iter().map(|&v| v as i64).collect();
        let t32: Vec<i32> = t64.iter().map(|&v| v as i32).collect();
        let tu: Vec<u32> = t64.iter().map(|&v| v as u32).collect();
        let targets = match class {
            0 => ClassTargets::I64(&t64),
            1 => ClassTargets::I32(&t32),
            _ => ClassTargets::U32(&tu),
        };
        let inp = SingleInputs {
            shape,
            logits: Logits::F32(&c.logits),
            targets,
            upstream: upstream(c),
        };
        b.single_label(&c.sl, pass, &inp, grad)?
    };
    Ok((
        loss.map(|l| loss_vec(&l)),
        g.iter().map(|&v| v as f64).collect(),
    ))
}

fn reference_of(c: &Case) -> reference::Output {
    let shape = Shape::new(c.rows, c.cols);
    if c.multi {
        let t: Vec<f32> = c.targets.iter().map(|&v| v as f32).collect();
        reference::multi_label(
            &c.ml,
            shape,
            Logits::F32(&c.logits),
            MultiTargets::F32(&t),
            upstream(c),
        )
    } else {
        let t: Vec<i64> = c.targets.iter().map(|&v| v as i64).collect();
        reference::single_label(
            &c.sl,
            shape,
            Logits::F32(&c.logits),
            ClassTargets::I64(&t),
            upstream(c),
        )
    }
    .unwrap()
}

#[test]
fn every_golden_case_through_wgpu() {
    let bs = backends();
    if bs.is_empty() {
        return;
    }
    let cases = load_cases();
    assert!(cases.len() >= 300);
    let mut failures = Vec::new();
    let mut runs = 0;
    let want: Vec<reference::Output> = cases.iter().map(reference_of).collect();
    for (mode, b) in &bs {
        for (c, want) in cases.iter().zip(&want) {
            let binary = c.targets.iter().all(|&v| v <= 0.0 || v == 1.0);
            let variants: Vec<(bool, usize)> = if c.multi {
                if binary {
                    vec![(false, 0), (true, 0)]
                } else {
                    vec![(false, 0)]
                }
            } else {
                vec![(false, 0), (false, 1), (false, 2)]
            };
            for (u8t, class) in variants {
                for pass in [Pass::Fused, Pass::Forward, Pass::Backward] {
                    runs += 1;
                    let what = format!(
                        "{} [{mode}, {}, u8 {u8t}, class {class}]",
                        c.name,
                        pass.name()
                    );
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let (loss, grad) =
                            run(*b, c, pass, u8t, class).unwrap_or_else(|e| panic!("error {e}"));
                        assert_eq!(loss.is_some(), pass.wants_loss(), "loss presence");
                        check(
                            &what,
                            tol(DType::F32),
                            loss.as_deref(),
                            &want.loss,
                            pass.wants_grad().then_some(&grad[..]),
                            &want.grad,
                        );
                    }));
                    if let Err(e) = r {
                        let msg = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures.push(format!("{what}: {msg}"));
                    }
                }
            }
        }
    }
    eprintln!("{runs} golden runs through wgpu ({} modes)", bs.len());
    assert!(
        failures.is_empty(),
        "{} of {runs} runs fail:\n{}",
        failures.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The debtags case (a real model's 4096 x 256 logits with u8 targets) against timm's float64
/// gradient, when the data files are present.
#[test]
fn debtags_real_logits() {
    let Some(b) = backend() else { return };
    let dir = shared_dir();
    let logits_path = dir.join("data").join("debtags").join("test_logits.npy");
    let targets_path = dir.join("data").join("debtags").join("test_targets.npy");
    let grad_path = dir.join("golden").join("debtags_test_grad_default.npy");
    let meta_path = dir.join("golden").join("debtags_test.json");
    if !logits_path.exists() || !grad_path.exists() {
        eprintln!(
            "skipping: debtags data not found at {}",
            logits_path.display()
        );
        return;
    }
    let x: Vec<f32> = npyz::NpyFile::new(std::fs::File::open(&logits_path).unwrap())
        .unwrap()
        .into_vec()
        .unwrap();
    let t: Vec<u8> = npyz::NpyFile::new(std::fs::File::open(&targets_path).unwrap())
        .unwrap()
        .into_vec()
        .unwrap();
    let want: Vec<f64> = npyz::NpyFile::new(std::fs::File::open(&grad_path).unwrap())
        .unwrap()
        .into_vec()
        .unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    let want_loss = num(&meta["configs"]["timm_default"]["loss"]);
    let cols = 256;
    let shape = Shape::new(x.len() / cols, cols);
    let mut g = vec![f32::NAN; x.len()];
    let inp = MultiInputs {
        shape,
        logits: Logits::F32(&x),
        targets: MultiTargets::U8(&t),
        upstream: Upstream::Scalar(1.0),
    };
    let loss = b
        .multi_label(
            &MultiLabel::default(),
            Pass::Fused,
            &inp,
            Some(GradMut::F32(&mut g)),
        )
        .unwrap()
        .unwrap();
    let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
    check(
        "debtags",
        tol(DType::F32),
        Some(&loss_vec(&loss)),
        &[want_loss],
        Some(&g64),
        &want,
    );
}
