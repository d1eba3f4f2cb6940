//! Determinism: the same input gives bitwise the same loss and gradient
//! - on the CPU, on 1, 2, 3 and 8 threads (and rayon's global pool), for both losses, every
//!   pass, every logits dtype, every target type and reduction (tests/cpu_fast.rs holds the
//!   fused default configurations on 1, 2, 3 and 16 threads; this extends it);
//! - on every backend, run after run (wgpu with both reduction flavours, CUDA when present),
//!   with shapes of many workgroups, several CPU tasks, and rows longer than wgpu's
//!   workgroup-memory cache.
//!
//! Results are compared as bit patterns (NaN payloads and the sign of zero included).
mod all_backends;
mod common;
#[cfg(feature = "wgpu")]
mod wgpu_common;

use asymloss::cpu::Cpu;
use asymloss::*;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Owned inputs of one configuration.
struct Inputs {
    shape: Shape,
    x32: Vec<f32>,
    x16: Vec<f16>,
    xb: Vec<bf16>,
    tf: Vec<f32>,
    tu: Vec<u8>,
    /// Class indices with some rows at the ignore index -100, and the same with those rows
    /// at class 0 (for configurations without an ignore index).
    classes: [Vec<i64>; 2],
    classes32: [Vec<i32>; 2],
    classes_u: Vec<u32>,
    up_ml: Vec<f32>,
    up_sl: Vec<f32>,
}

fn inputs(rows: usize, cols: usize, seed: u64) -> Inputs {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = rows * cols;
    let x32: Vec<f32> = (0..n).map(|_| rng.random_range(-9.0f32..5.0)).collect();
    let tf: Vec<f32> = (0..n)
        .map(|_| [0.0, 0.0, 0.0, 1.0, 0.7, -1.0][rng.random_range(0..6)])
        .collect();
    let tu: Vec<u8> = (0..n)
        .map(|_| [0u8, 0, 0, 1, 255][rng.random_range(0..5)])
        .collect();
    let classes: Vec<i64> = (0..rows)
        .map(|r| {
            if r % 11 == 5 {
                -100
            } else {
                rng.random_range(0..cols as i64)
            }
        })
        .collect();
    Inputs {
        shape: Shape::new(rows, cols),
        x16: x32.iter().map(|&v| f16::from_f32(v)).collect(),
        xb: x32.iter().map(|&v| bf16::from_f32(v)).collect(),
        x32,
        tf,
        tu,
        classes32: [
            classes.iter().map(|&c| c as i32).collect(),
            classes.iter().map(|&c| c.max(0) as i32).collect(),
        ],
        classes_u: classes.iter().map(|&c| c.max(0) as u32).collect(),
        classes: [classes.clone(), classes.iter().map(|&c| c.max(0)).collect()],
        up_ml: (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
        up_sl: (0..rows).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
    }
}

/// The bits of the loss and of the gradient (widened to f64, which is exact and one-to-one
/// for every value but NaN) of one call; an error becomes its message.
type Bits = std::result::Result<(Vec<u32>, Vec<u64>), String>;

#[derive(Clone, Copy, Debug)]
enum Dt {
    F32,
    F16,
    Bf16,
}

fn logits<'a>(i: &'a Inputs, dt: Dt) -> Logits<'a> {
    match dt {
        Dt::F32 => Logits::F32(&i.x32),
        Dt::F16 => Logits::F16(&i.x16),
        Dt::Bf16 => Logits::Bf16(&i.xb),
    }
}

/// Runs `f` with a gradient buffer of the logits' dtype, poisoned; returns the bits.
fn with_grad(
    n: usize,
    dt: Dt,
    pass: Pass,
    f: impl FnOnce(Option<GradMut<'_>>) -> Result<Option<LossValue>>,
) -> Bits {
    let (mut g32, mut g16, mut gb) = (vec![f32::NAN; n], vec![f16::NAN; n], vec![bf16::NAN; n]);
    let grad = pass.wants_grad().then(|| match dt {
        Dt::F32 => GradMut::F32(&mut g32),
        Dt::F16 => GradMut::F16(&mut g16),
        Dt::Bf16 => GradMut::Bf16(&mut gb),
    });
    let loss = f(grad).map_err(|e| e.to_string())?;
    let grad: Vec<f64> = match (pass.wants_grad(), dt) {
        (false, _) => Vec::new(),
        (true, Dt::F32) => g32.iter().map(|&v| v as f64).collect(),
        (true, Dt::F16) => g16.iter().map(|v| v.to_f64()).collect(),
        (true, Dt::Bf16) => gb.iter().map(|v| v.to_f64()).collect(),
    };
    let l = loss.map_or(Vec::new(), |l| {
        l.as_slice().iter().map(|v| v.to_bits()).collect()
    });
    Ok((l, grad.iter().map(|v| v.to_bits()).collect()))
}

/// The multi-label configurations: every reduction, class and positive weights, detached
/// focusing, smoothing, a fractional gamma (the general exp/ln path).
fn ml_cfgs(cols: usize) -> Vec<MultiLabel> {
    let w: Vec<f32> = (0..cols).map(|c| 0.5 + (c % 7) as f32 * 0.25).collect();
    vec![
        MultiLabel::default(),
        MultiLabel {
            reduction: Reduction::Mean,
            class_weight: Some(w.clone()),
            ..MultiLabel::paper()
        },
        MultiLabel {
            reduction: Reduction::None,
            gamma_neg: 2.5,
            smoothing: 0.1,
            pos_weight: Some(PosWeight::PerClass(w)),
            ..MultiLabel::default()
        },
        MultiLabel {
            reduction: Reduction::Sum,
            ..MultiLabel::bce()
        },
    ]
}

fn sl_cfgs() -> Vec<SingleLabel> {
    vec![
        SingleLabel::default(),
        SingleLabel {
            reduction: Reduction::Mean,
            ignore_index: Some(-100),
            gamma_pos: 0.5,
            ..SingleLabel::default()
        },
        SingleLabel {
            reduction: Reduction::None,
            ignore_index: Some(-100),
            ..SingleLabel::cross_entropy()
        },
        SingleLabel {
            reduction: Reduction::Sum,
            smoothing: 0.3,
            gamma_neg: 1.5,
            ..SingleLabel::default()
        },
    ]
}

/// Which calls of the matrix to make.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// Config x pass x dtype x target (or class) type.
    Full,
    /// Two configurations; every pass in f32, fused only in the 16-bit types; one target
    /// type per configuration (for the slower GPU backends on lavapipe).
    Some,
}

/// The `Full` matrix: every call, or for `Some` the subset above.
fn wanted(scope: Scope, k: usize, pass: Pass, dt: Dt, tk: usize) -> bool {
    scope == Scope::Full || (k < 2 && tk == k % 2 && (matches!(dt, Dt::F32) || pass == Pass::Fused))
}

/// Multi-label calls of the matrix, as bits.
fn ml_matrix(b: &dyn Backend, i: &Inputs, dts: &[Dt], scope: Scope) -> Vec<(String, Bits)> {
    let n = i.shape.rows * i.shape.cols;
    let mut out = Vec::new();
    for (k, cfg) in ml_cfgs(i.shape.cols).iter().enumerate() {
        for pass in [Pass::Forward, Pass::Backward, Pass::Fused] {
            for &dt in dts {
                for (tk, (tn, targets)) in [
                    ("f32", MultiTargets::F32(&i.tf)),
                    ("u8", MultiTargets::U8(&i.tu)),
                ]
                .into_iter()
                .enumerate()
                {
                    if !wanted(scope, k, pass, dt, tk) {
                        continue;
                    }
                    let upstream = if cfg.reduction == Reduction::None {
                        Upstream::Array(&i.up_ml)
                    } else {
                        Upstream::Scalar(0.75)
                    };
                    let inp = MultiInputs {
                        shape: i.shape,
                        logits: logits(i, dt),
                        targets,
                        upstream,
                    };
                    let bits = with_grad(n, dt, pass, |g| b.multi_label(cfg, pass, &inp, g));
                    out.push((format!("ml cfg {k} {pass:?} {dt:?} {tn}"), bits));
                }
            }
        }
    }
    out
}

fn sl_matrix(b: &dyn Backend, i: &Inputs, dts: &[Dt], scope: Scope) -> Vec<(String, Bits)> {
    let n = i.shape.rows * i.shape.cols;
    let mut out = Vec::new();
    for (k, cfg) in sl_cfgs().iter().enumerate() {
        for pass in [Pass::Forward, Pass::Backward, Pass::Fused] {
            for &dt in dts {
                let which = usize::from(cfg.ignore_index.is_none());
                let class_types = [
                    ("i64", ClassTargets::I64(&i.classes[which])),
                    ("i32", ClassTargets::I32(&i.classes32[which])),
                ];
                for (tk, (cn, targets)) in class_types.into_iter().enumerate() {
                    if !wanted(scope, k, pass, dt, tk) {
                        continue;
                    }
                    let upstream = if cfg.reduction == Reduction::None {
                        Upstream::Array(&i.up_sl)
                    } else {
                        Upstream::Scalar(1.25)
                    };
                    let inp = SingleInputs {
                        shape: i.shape,
                        logits: logits(i, dt),
                        targets,
                        upstream,
                    };
                    let bits = with_grad(n, dt, pass, |g| b.single_label(cfg, pass, &inp, g));
                    out.push((format!("sl cfg {k} {pass:?} {dt:?} {cn}"), bits));
                }
            }
        }
        // u32 classes (no ignore index: u32 cannot hold -100).
        if cfg.ignore_index.is_none() && scope == Scope::Full {
            let inp = SingleInputs {
                shape: i.shape,
                logits: Logits::F32(&i.x32),
                targets: ClassTargets::U32(&i.classes_u),
                upstream: Upstream::Scalar(1.0),
            };
            let bits = with_grad(n, Dt::F32, Pass::Fused, |g| {
                b.single_label(cfg, Pass::Fused, &inp, g)
            });
            out.push((format!("sl cfg {k} u32"), bits));
        }
    }
    out
}

fn assert_same(what: &str, a: &[(String, Bits)], b: &[(String, Bits)]) {
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let x = x.as_ref().unwrap_or_else(|e| panic!("{what}: {name}: {e}"));
        let y = y.as_ref().unwrap_or_else(|e| panic!("{what}: {name}: {e}"));
        assert!(x == y, "{what}: {name}: results differ bitwise");
        // Every element was written (the buffers were poisoned with NaN; these inputs give
        // no NaN).
        assert!(
            !x.1.iter().any(|&w| f64::from_bits(w).is_nan()),
            "{what}: {name}: an unwritten gradient element"
        );
    }
}

/// CPU: 1, 2, 3 and 8 threads and the global pool agree bitwise on everything, for shapes of
/// many tasks (300 x 517: five tasks of 63 rows), one task of long rows, and a long thin batch.
#[test]
fn cpu_thread_counts_every_pass_dtype_and_reduction() {
    let all = [Dt::F32, Dt::F16, Dt::Bf16];
    for (rows, cols, seed) in [(300, 517, 1), (3, 40_000, 2), (5_000, 7, 3)] {
        let i = inputs(rows, cols, seed);
        let base_ml = ml_matrix(all_backends::cpu(), &i, &all, Scope::Full);
        let base_sl = sl_matrix(all_backends::cpu(), &i, &all, Scope::Full);
        for threads in [1, 2, 3, 8] {
            let cpu = Cpu::with_threads(threads).unwrap();
            let what = format!("{rows}x{cols} on {threads} threads");
            assert_same(&what, &ml_matrix(&cpu, &i, &all, Scope::Full), &base_ml);
            assert_same(&what, &sl_matrix(&cpu, &i, &all, Scope::Full), &base_sl);
        }
    }
}

/// Every backend, three runs: bitwise the same each time. wgpu runs both reduction flavours
/// (each must repeat itself; they may differ from each other in the last bits), f16 where the
/// adapter has it; 37 x 3000 is 28 workgroups of multi-label partial sums, 3 x 5000 rows are
/// longer than the 4096-column workgroup-memory cache.
#[test]
fn every_backend_repeats_itself() {
    for (name, b) in all_backends::all_flavours() {
        for (rows, cols, seed) in [(37, 3000, 4), (3, 5000, 5)] {
            let i = inputs(rows, cols, seed);
            let mut dts = vec![Dt::F32, Dt::Bf16];
            let probe = MultiInputs {
                shape: Shape::new(1, 1),
                logits: Logits::F16(&[f16::ZERO]),
                targets: MultiTargets::U8(&[0]),
                upstream: Upstream::Scalar(1.0),
            };
            if !matches!(
                b.multi_label(&MultiLabel::default(), Pass::Forward, &probe, None),
                Err(Error::Unsupported(_))
            ) {
                dts.push(Dt::F16);
            }
            // The subset: the CPU's whole matrix already ran five times above.
            let scope = Scope::Some;
            let first_ml = ml_matrix(b, &i, &dts, scope);
            let first_sl = sl_matrix(b, &i, &dts, scope);
            for run in 1..3 {
                let what = format!("{name}: {rows}x{cols}, run {run}");
                assert_same(&what, &ml_matrix(b, &i, &dts, scope), &first_ml);
                assert_same(&what, &sl_matrix(b, &i, &dts, scope), &first_sl);
            }
        }
    }
}
