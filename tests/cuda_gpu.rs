//! The CUDA backend on a GPU: timm's golden cases, random shapes and dtypes against the f64
//! reference, bitwise repeatability, agreement with the CPU backend, error reporting, the raw
//! API on a borrowed stream and on unaligned pointers.
//!
//! Without a CUDA GPU (no driver, no NVRTC, no device) every test prints `SKIPPED` with the
//! reason and passes; with `ASL_REQUIRE_CUDA=1` (scripts/gpu_check.sh sets it) that is a
//! failure instead. `ASL_GOLDEN=<path>` reads the golden file from elsewhere (for a test
//! binary copied to another machine); `ASL_CUDA_BIG=1` adds the > 2^31-element test (about
//! 11 GB of device memory).
//!
//! Tolerances against the f64 reference on the same (rounded) inputs: loss `1e-5 |ref|` (plus
//! `1e-6 max|loss|` per element for reduction none); gradient `rtol |ref| + 1e-6 max|grad|`
//! with rtol 1e-4 (f32), 1e-3 (f16, whose rounding is 4.9e-4) and 4e-3 (bf16, 2.0e-3), plus
//! 6e-8 for f16 subnormals. Output buffers are filled with NaN before every launch.
#![cfg(feature = "cuda")]

mod common;

use std::sync::OnceLock;

use asymloss::cuda::{self, CudaBackend};
use asymloss::reference;
use asymloss::{
    Backend, ClassTargets, DType, Error, FocalGrad, GradMut, Logits, LossValue, MultiInputs,
    MultiLabel, MultiTargets, Pass, PosWeight, Reduction, Shape, SingleInputs, SingleLabel,
    Upstream,
};
use common::{assert_close, Case};
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn backend() -> Option<&'static CudaBackend> {
    static B: OnceLock<Result<CudaBackend, String>> = OnceLock::new();
    let b = B.get_or_init(|| {
        let b = CudaBackend::new(0).map_err(|e| e.to_string());
        if let Ok(b) = &b {
            println!("running on {}", b.name());
        }
        b
    });
    match b {
        Ok(b) => Some(b),
        Err(e) if std::env::var("ASL_REQUIRE_CUDA").as_deref() == Ok("1") => {
            panic!("ASL_REQUIRE_CUDA=1 but the CUDA backend is unavailable: {e}")
        }
        Err(e) => {
            println!("SKIPPED: no CUDA GPU here ({e})");
            None
        }
    }
}

fn cases() -> Vec<Case> {
    match std::env::var_os("ASL_GOLDEN") {
        Some(p) => {
            let text = std::fs::read_to_string(&p).expect("reading $ASL_GOLDEN");
            let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
            doc["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(common::parse_case)
                .collect()
        }
        None => common::load_cases(),
    }
}

// ---------------------------------------------------------------------------------------------
// Host buffers in each dtype.
// ---------------------------------------------------------------------------------------------

enum Stored {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

impl Stored {
    fn new(v: &[f32], dt: DType) -> Stored {
        match dt {
            DType::F32 => Stored::F32(v.to_vec()),
            DType::F16 => Stored::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::Bf16 => Stored::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }
    fn nan(n: usize, dt: DType) -> Stored {
        Stored::new(&vec![f32::NAN; n], dt)
    }
    fn logits(&self) -> Logits<'_> {
        match self {
            Stored::F32(v) => Logits::F32(v),
            Stored::F16(v) => Logits::F16(v),
            Stored::Bf16(v) => Logits::Bf16(v),
        }
    }
    fn grad(&mut self) -> GradMut<'_> {
        match self {
            Stored::F32(v) => GradMut::F32(v),
            Stored::F16(v) => GradMut::F16(v),
            Stored::Bf16(v) => GradMut::Bf16(v),
        }
    }
    fn to_f64(&self) -> Vec<f64> {
        match self {
            Stored::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Stored::F16(v) => v.iter().map(|&x| x.to_f64()).collect(),
            Stored::Bf16(v) => v.iter().map(|&x| x.to_f64()).collect(),
        }
    }
    fn bits(&self) -> Vec<u32> {
        match self {
            Stored::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
            Stored::F16(v) => v.iter().map(|x| x.to_bits() as u32).collect(),
            Stored::Bf16(v) => v.iter().map(|x| x.to_bits() as u32).collect(),
        }
    }
}

fn grad_rtol(dt: DType) -> f64 {
    match dt {
        DType::F32 => 1e-4,
        DType::F16 => 1e-3,
        DType::Bf16 => 4e-3,
    }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter()
        .filter(|x| x.is_finite())
        .fold(0.0, |m, x| m.max(x.abs()))
}

fn check_loss(what: &str, got: &LossValue, want: &[f64]) {
    let g: Vec<f64> = got.as_slice().iter().map(|&x| x as f64).collect();
    let atol = if want.len() > 1 {
        1e-6 * max_abs(want)
    } else {
        1e-30
    };
    assert_close(&format!("{what}: loss"), &g, want, atol, 1e-5);
}

fn check_grad(what: &str, got: &Stored, want: &[f64], dt: DType) {
    let atol = (1e-6 * max_abs(want)).max(if dt == DType::F16 { 6e-8 } else { 0.0 });
    assert_close(
        &format!("{what}: grad"),
        &got.to_f64(),
        want,
        atol,
        grad_rtol(dt),
    );
}

/// Runs one multi-label call on the GPU with a NaN-poisoned gradient buffer.
fn run_ml(
    b: &CudaBackend,
    cfg: &MultiLabel,
    pass: Pass,
    inp: &MultiInputs<'_>,
) -> asymloss::Result<(Option<LossValue>, Stored)> {
    let mut g = Stored::nan(inp.logits.len(), inp.logits.dtype());
    let loss = b.multi_label(cfg, pass, inp, pass.wants_grad().then(|| g.grad()))?;
    Ok((loss, g))
}

fn run_sl(
    b: &CudaBackend,
    cfg: &SingleLabel,
    pass: Pass,
    inp: &SingleInputs<'_>,
) -> asymloss::Result<(Option<LossValue>, Stored)> {
    let mut g = Stored::nan(inp.logits.len(), inp.logits.dtype());
    let loss = b.single_label(cfg, pass, inp, pass.wants_grad().then(|| g.grad()))?;
    Ok((loss, g))
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn no_cuda_is_an_error_not_a_panic() {
    // Runs everywhere: either the backend opens, or it says why with CudaUnavailable.
    match CudaBackend::new(0) {
        Ok(b) => println!("CUDA available: {}", b.name()),
        Err(Error::CudaUnavailable(why)) => println!("CUDA unavailable (as expected here): {why}"),
        Err(e) => panic!("expected CudaUnavailable, got {e}"),
    }
    match asymloss::BackendKind::Cuda.create() {
        Ok(_) | Err(Error::CudaUnavailable(_)) => {}
        Err(e) => panic!("BackendKind::Cuda.create(): {e}"),
    }
    assert_eq!(cuda::probe().is_ok(), CudaBackend::new(0).is_ok());
    assert!(CudaBackend::new(usize::MAX).is_err());
}

#[test]
fn golden_cases_match_timm() {
    let Some(b) = backend() else { return };
    let cases = cases();
    let mut failures = Vec::new();
    for c in &cases {
        let shape = Shape::new(c.rows, c.cols);
        let up = if c.upstream.len() == 1 && c.expected_loss.len() == 1 {
            Upstream::Scalar(c.upstream[0])
        } else {
            Upstream::Array(&c.upstream)
        };
        let r = std::panic::catch_unwind(|| {
            for pass in [Pass::Fused, Pass::Forward, Pass::Backward] {
                let (loss, grad) = if c.multi {
                    let t: Vec<f32> = c.targets.iter().map(|&v| v as f32).collect();
                    let targets = MultiTargets::F32(&t);
                    let inp = MultiInputs {
                        shape,
                        logits: Logits::F32(&c.logits),
                        targets,
                        upstream: up,
                    };
                    run_ml(b, &c.ml, pass, &inp).unwrap()
                } else {
                    let t: Vec<i64> = c.targets.iter().map(|&v| v as i64).collect();
                    let targets = ClassTargets::I64(&t);
                    let inp = SingleInputs {
                        shape,
                        logits: Logits::F32(&c.logits),
                        targets,
                        upstream: up,
                    };
                    run_sl(b, &c.sl, pass, &inp).unwrap()
                };
                if pass.wants_loss() {
                    check_loss(pass.name(), loss.as_ref().unwrap(), &c.expected_loss);
                }
                if pass.wants_grad() {
                    check_grad(pass.name(), &grad, &c.expected_grad, DType::F32);
                }
            }
        });
        if let Err(e) = r {
            let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
            failures.push(format!("{}: {msg}", c.name));
        }
    }
    println!("{} golden cases, {} failures", cases.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn random_logits(rng: &mut StdRng, n: usize, extremes: bool) -> Vec<f32> {
    (0..n)
        .map(|_| {
            if extremes && rng.random_bool(0.02) {
                [30.0, -30.0, 90.0, -90.0, 16.7, -18.5, 0.0][rng.random_range(0..7)]
            } else {
                rng.random_range(-8.0f32..8.0)
            }
        })
        .collect()
}

fn ml_configs() -> Vec<MultiLabel> {
    let mut v = vec![
        MultiLabel::default(),
        MultiLabel::paper(),
        MultiLabel::bce(),
    ];
    v.push(MultiLabel {
        gamma_pos: 0.5,
        gamma_neg: 2.0,
        clip: 0.1,
        smoothing: 0.1,
        reduction: Reduction::Mean,
        ..Default::default()
    });
    v.push(MultiLabel {
        focal_grad: FocalGrad::Detached,
        reduction: Reduction::None,
        pos_weight: Some(PosWeight::Scalar(2.0)),
        ..Default::default()
    });
    v
}

#[test]
fn multi_label_random_shapes_match_the_reference() {
    let Some(b) = backend() else { return };
    let mut rng = StdRng::seed_from_u64(41);
    let shapes = [
        (1, 1),
        (3, 7),
        (17, 80),
        (1000, 3),
        (5, 9605),
        (2, 100_000),
        (129, 33),
    ];
    let mut done = 0;
    for (si, &(rows, cols)) in shapes.iter().enumerate() {
        let n = rows * cols;
        let x = random_logits(&mut rng, n, true);
        let yf: Vec<f32> = (0..n)
            .map(|_| match rng.random_range(0..10) {
                0 => -1.0,
                1 => rng.random_range(0.0f32..1.0),
                2..=4 => 1.0,
                _ => 0.0,
            })
            .collect();
        let yu: Vec<u8> = yf
            .iter()
            .map(|&y| if y < 0.0 { 255 } else { (y >= 0.5) as u8 })
            .collect();
        for (ci, mut cfg) in ml_configs().into_iter().enumerate() {
            if (si + ci) % 2 == 0 {
                cfg.class_weight = Some((0..cols).map(|c| 0.5 + (c % 5) as f32 * 0.25).collect());
            }
            if ci == 2 {
                cfg.pos_weight = Some(PosWeight::PerClass(
                    (0..cols).map(|c| 1.0 + (c % 3) as f32).collect(),
                ));
            }
            for dt in [DType::F32, DType::F16, DType::Bf16] {
                let logits = Stored::new(&x, dt);
                let up_arr: Vec<f32> = (0..n).map(|i| 0.5 + (i % 4) as f32 * 0.5).collect();
                let upstream = if cfg.reduction == Reduction::None {
                    Upstream::Array(&up_arr)
                } else {
                    Upstream::Scalar(0.75)
                };
                for u8_targets in [false, true] {
                    let targets = if u8_targets {
                        MultiTargets::U8(&yu)
                    } else {
                        MultiTargets::F32(&yf)
                    };
                    let shape = Shape::new(rows, cols);
                    let inp = MultiInputs {
                        shape,
                        logits: logits.logits(),
                        targets,
                        upstream,
                    };
                    let want =
                        reference::multi_label(&cfg, shape, inp.logits, targets, upstream).unwrap();
                    let what = format!("{rows}x{cols} {} cfg {ci} u8 {u8_targets}", dt.name());
                    let (loss, grad) = run_ml(b, &cfg, Pass::Fused, &inp).unwrap();
                    check_loss(&what, loss.as_ref().unwrap(), &want.loss);
                    check_grad(&what, &grad, &want.grad, dt);
                    done += 1;
                }
            }
        }
    }
    println!("{done} multi-label configurations checked");
}

#[test]
fn single_label_random_shapes_match_the_reference() {
    let Some(b) = backend() else { return };
    let mut rng = StdRng::seed_from_u64(42);
    // Warp rows (<= 1024), cached block rows (<= 12000), streamed rows (> 12000).
    let shapes = [
        (1, 1),
        (4, 2),
        (33, 7),
        (64, 80),
        (16, 1000),
        (8, 1025),
        (5, 9605),
        (3, 12_001),
        (2, 100_000),
    ];
    let cfgs = [
        SingleLabel::default(),
        SingleLabel::cross_entropy(),
        SingleLabel {
            reduction: Reduction::Sum,
            gamma_pos: 0.5,
            ..Default::default()
        },
        SingleLabel {
            reduction: Reduction::None,
            ignore_index: Some(1),
            ..Default::default()
        },
        SingleLabel {
            ignore_index: Some(-100),
            smoothing: 0.3,
            ..Default::default()
        },
    ];
    let mut done = 0;
    for &(rows, cols) in &shapes {
        let x = random_logits(&mut rng, rows * cols, true);
        let mut t: Vec<i64> = (0..rows)
            .map(|_| rng.random_range(0..cols as i64))
            .collect();
        if rows > 2 {
            t[1] = -100;
        }
        for (ci, cfg) in cfgs.iter().enumerate() {
            let t: Vec<i64> = t
                .iter()
                .map(|&v| {
                    if v == -100 && cfg.ignore_index != Some(-100) {
                        0
                    } else {
                        v
                    }
                })
                .collect();
            for dt in [DType::F32, DType::F16, DType::Bf16] {
                let logits = Stored::new(&x, dt);
                let up_arr: Vec<f32> = (0..rows).map(|r| 1.0 + r as f32 * 0.125).collect();
                let upstream = if cfg.reduction == Reduction::None {
                    Upstream::Array(&up_arr)
                } else {
                    Upstream::Scalar(1.5)
                };
                let shape = Shape::new(rows, cols);
                let targets = ClassTargets::I64(&t);
                let inp = SingleInputs {
                    shape,
                    logits: logits.logits(),
                    targets,
                    upstream,
                };
                let want =
                    reference::single_label(cfg, shape, inp.logits, targets, upstream).unwrap();
                let what = format!("{rows}x{cols} {} cfg {ci}", dt.name());
                for pass in [Pass::Fused, Pass::Forward, Pass::Backward] {
                    let (loss, grad) = run_sl(b, cfg, pass, &inp).unwrap();
                    if pass.wants_loss() {
                        check_loss(&what, loss.as_ref().unwrap(), &want.loss);
                    }
                    if pass.wants_grad() {
                        check_grad(&what, &grad, &want.grad, dt);
                    }
                }
                done += 1;
            }
        }
    }
    println!("{done} single-label configurations checked");
}

#[test]
fn results_are_bitwise_repeatable() {
    let Some(b) = backend() else { return };
    let mut rng = StdRng::seed_from_u64(43);
    let (rows, cols) = (1000, 9605);
    let x = random_logits(&mut rng, rows * cols, false);
    let y: Vec<u8> = (0..rows * cols)
        .map(|_| rng.random_bool(0.1) as u8)
        .collect();
    let shape = Shape::new(rows, cols);
    let inp = MultiInputs {
        shape,
        logits: Logits::F32(&x),
        targets: MultiTargets::U8(&y),
        upstream: Upstream::Scalar(1.0),
    };
    let cfg = MultiLabel::default();
    let (l0, g0) = run_ml(b, &cfg, Pass::Fused, &inp).unwrap();
    for _ in 0..3 {
        let (l, g) = run_ml(b, &cfg, Pass::Fused, &inp).unwrap();
        assert_eq!(
            l0.as_ref().unwrap().scalar().unwrap().to_bits(),
            l.unwrap().scalar().unwrap().to_bits()
        );
        assert!(
            g0.bits() == g.bits(),
            "multi-label gradient differs between runs"
        );
    }
    let t: Vec<i64> = (0..rows).map(|r| (r * 7 % cols) as i64).collect();
    let sinp = SingleInputs {
        shape,
        logits: Logits::F32(&x),
        targets: ClassTargets::I64(&t),
        upstream: Upstream::Scalar(1.0),
    };
    let scfg = SingleLabel::default();
    let (l0, g0) = run_sl(b, &scfg, Pass::Fused, &sinp).unwrap();
    for _ in 0..3 {
        let (l, g) = run_sl(b, &scfg, Pass::Fused, &sinp).unwrap();
        assert_eq!(
            l0.as_ref().unwrap().scalar().unwrap().to_bits(),
            l.unwrap().scalar().unwrap().to_bits()
        );
        assert!(
            g0.bits() == g.bits(),
            "single-label gradient differs between runs"
        );
    }
}

#[test]
fn agrees_with_the_cpu_backend() {
    let Some(b) = backend() else { return };
    let cpu = asymloss::cpu::Cpu::new();
    let mut rng = StdRng::seed_from_u64(44);
    for &(rows, cols) in &[(64, 80), (16, 9605), (3, 100_000)] {
        let x = random_logits(&mut rng, rows * cols, true);
        let y: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_bool(0.2) as u8 as f32)
            .collect();
        let shape = Shape::new(rows, cols);
        let inp = MultiInputs {
            shape,
            logits: Logits::F32(&x),
            targets: MultiTargets::F32(&y),
            upstream: Upstream::Scalar(1.0),
        };
        let cfg = MultiLabel::default();
        let (gl, gg) = run_ml(b, &cfg, Pass::Fused, &inp).unwrap();
        let mut cg = vec![f32::NAN; rows * cols];
        let cl = cpu
            .multi_label(&cfg, Pass::Fused, &inp, Some(GradMut::F32(&mut cg)))
            .unwrap();
        let cl: Vec<f64> = cl.unwrap().as_slice().iter().map(|&v| v as f64).collect();
        check_loss("cpu vs cuda multi-label", gl.as_ref().unwrap(), &cl);
        let cg: Vec<f64> = cg.iter().map(|&v| v as f64).collect();
        check_grad("cpu vs cuda multi-label", &gg, &cg, DType::F32);

        let t: Vec<i64> = (0..rows)
            .map(|_| rng.random_range(0..cols as i64))
            .collect();
        let sinp = SingleInputs {
            shape,
            logits: Logits::F32(&x),
            targets: ClassTargets::I64(&t),
            upstream: Upstream::Scalar(1.0),
        };
        let scfg = SingleLabel::default();
        let (gl, gg) = run_sl(b, &scfg, Pass::Fused, &sinp).unwrap();
        let mut cg = vec![f32::NAN; rows * cols];
        let cl = cpu
            .single_label(&scfg, Pass::Fused, &sinp, Some(GradMut::F32(&mut cg)))
            .unwrap();
        let cl: Vec<f64> = cl.unwrap().as_slice().iter().map(|&v| v as f64).collect();
        check_loss("cpu vs cuda single-label", gl.as_ref().unwrap(), &cl);
        let cg: Vec<f64> = cg.iter().map(|&v| v as f64).collect();
        check_grad("cpu vs cuda single-label", &gg, &cg, DType::F32);
    }
}

#[test]
fn invalid_targets_are_errors_and_do_not_stick() {
    let Some(b) = backend() else { return };
    let (rows, cols) = (37, 300);
    let x = vec![0.5f32; rows * cols];
    let shape = Shape::new(rows, cols);
    let cfg = MultiLabel::default();
    for (bad_at, bad) in [
        (5 * cols + 17, 1.5f32),
        (rows * cols - 1, f32::NAN),
        (3, f32::INFINITY),
    ] {
        let mut y = vec![0.0f32; rows * cols];
        y[bad_at] = bad;
        y[rows * cols - 2] = 2.0; // a later bad element: the first one must be reported
        let inp = MultiInputs {
            shape,
            logits: Logits::F32(&x),
            targets: MultiTargets::F32(&y),
            upstream: Upstream::Scalar(1.0),
        };
        match run_ml(b, &cfg, Pass::Fused, &inp) {
            Err(Error::InvalidTarget { index, .. }) => {
                assert_eq!(index, bad_at.min(rows * cols - 2))
            }
            other => panic!("expected InvalidTarget, got {:?}", other.map(|r| r.0)),
        }
    }
    let mut yu = vec![0u8; rows * cols];
    yu[100] = 7;
    let inp = MultiInputs {
        shape,
        logits: Logits::F32(&x),
        targets: MultiTargets::U8(&yu),
        upstream: Upstream::Scalar(1.0),
    };
    assert!(matches!(
        run_ml(b, &cfg, Pass::Forward, &inp),
        Err(Error::InvalidTarget { index: 100, .. })
    ));
    // The flag is cleared: a valid call afterwards succeeds.
    yu[100] = 1;
    let inp = MultiInputs {
        shape,
        logits: Logits::F32(&x),
        targets: MultiTargets::U8(&yu),
        upstream: Upstream::Scalar(1.0),
    };
    run_ml(b, &cfg, Pass::Fused, &inp).unwrap();

    // Single-label through the device API (the host path validates before launching).
    let stream = b.stream();
    let xd = stream.clone_htod(&x).unwrap();
    let mut t = vec![1i32; rows];
    t[9] = cols as i32;
    t[20] = -5;
    let td = stream.clone_htod(&t).unwrap();
    let mut ws = cuda::Workspace::new(stream).unwrap();
    let dev = cuda::DeviceSingleInputs {
        shape,
        logits: cuda::DeviceLogits::F32(&xd),
        targets: &td,
        upstream: cuda::DeviceUpstream::Scalar(1.0),
    };
    let r = cuda::single_label(
        stream,
        &SingleLabel::default(),
        Pass::Forward,
        &dev,
        None,
        &mut ws,
    );
    match r {
        Err(Error::ClassOutOfRange {
            row: 9,
            value,
            classes,
            ..
        }) => {
            assert_eq!((value, classes), (cols as i64, cols))
        }
        other => panic!("expected ClassOutOfRange at row 9, got {other:?}"),
    }
}

#[test]
fn raw_api_on_a_borrowed_stream_and_unaligned_pointers() {
    let Some(b) = backend() else { return };
    use cudarc::driver::DevicePtr;
    let ctx = b.context();
    // A stream owned by "another framework", borrowed through its raw handle.
    let owner = ctx.new_stream().unwrap();
    // SAFETY: `owner` outlives `stream` (both live to the end of this test) and belongs to ctx.
    let stream = unsafe { ctx.wrap_borrowed_stream(owner.cu_stream()) };
    let mut rng = StdRng::seed_from_u64(45);
    let (rows, cols) = (9, 1001);
    let n = rows * cols;
    let x = random_logits(&mut rng, n + 1, false);
    let y: Vec<f32> = (0..n + 1)
        .map(|_| rng.random_bool(0.3) as u8 as f32)
        .collect();
    let xd = stream.clone_htod(&x).unwrap();
    let yd = stream.clone_htod(&y).unwrap();
    let gd = stream.clone_htod(&vec![f32::NAN; n + 1]).unwrap();
    let ld = stream.clone_htod(&[f32::NAN]).unwrap();
    let mut ws = cuda::Workspace::new(&ctx.default_stream()).unwrap();
    let cfg = MultiLabel {
        reduction: Reduction::Sum,
        ..Default::default()
    };
    let shape = Shape::new(rows, cols);
    for offset in [0usize, 1] {
        let (xp, _a) = xd.device_ptr(&stream);
        let (yp, _b) = yd.device_ptr(&stream);
        let (gp, _c) = gd.device_ptr(&stream);
        let (lp, _d) = ld.device_ptr(&stream);
        let args = cuda::MlDeviceArgs {
            logits: xp + 4 * offset as u64,
            dtype: DType::F32,
            targets: yp + 4 * offset as u64,
            target_kind: cuda::TargetKind::F32,
            upstream: cuda::DevUpstream::Scalar(1.0),
            grad: gp + 4 * offset as u64,
            loss: lp,
        };
        // SAFETY: all buffers hold n + 1 elements, so n from `offset` are in bounds; they stay
        // alive until read_status has synchronized the stream.
        unsafe { cuda::multi_label_raw(&stream, &cfg, Pass::Fused, shape, &args, None, &mut ws) }
            .unwrap();
        let (bad, _, _) = ws.read_status(&stream).unwrap();
        assert_eq!(bad, None);
        let loss = stream.clone_dtoh(&ld).unwrap()[0];
        let grad: Vec<f64> = stream.clone_dtoh(&gd).unwrap()[offset..offset + n]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let want = reference::multi_label(
            &cfg,
            shape,
            Logits::F32(&x[offset..offset + n]),
            MultiTargets::F32(&y[offset..offset + n]),
            Upstream::Scalar(1.0),
        )
        .unwrap();
        assert_close("raw loss", &[loss as f64], &want.loss, 0.0, 1e-5);
        assert_close(
            "raw grad",
            &grad,
            &want.grad,
            1e-6 * max_abs(&want.grad),
            1e-4,
        );
    }
}

#[test]
fn past_two_to_the_31_elements() {
    if std::env::var("ASL_CUDA_BIG").as_deref() != Ok("1") {
        println!("SKIPPED: set ASL_CUDA_BIG=1 for the > 2^31-element test (11 GB of GPU memory)");
        return;
    }
    let Some(b) = backend() else { return };
    // f16 logits and u8 targets, periodic in the flat index (period 1021 * 7), so that the
    // exact sum follows from one period of the f64 reference.
    let (rows, cols) = (65_537usize, 32_768usize);
    let n = rows * cols;
    assert!(n > 1 << 31);
    let px: Vec<f16> = (0..1021)
        .map(|i| f16::from_f32(-6.0 + 12.0 * i as f32 / 1021.0))
        .collect();
    let py: [u8; 7] = [0, 1, 0, 0, 255, 0, 1];
    let x: Vec<f16> = (0..n).map(|i| px[i % 1021]).collect();
    let y: Vec<u8> = (0..n).map(|i| py[i % 7]).collect();
    let cfg = MultiLabel {
        reduction: Reduction::Sum,
        ..Default::default()
    };
    let shape = Shape::new(rows, cols);
    let inp = MultiInputs {
        shape,
        logits: Logits::F16(&x),
        targets: MultiTargets::U8(&y),
        upstream: Upstream::Scalar(1.0),
    };
    let mut g = vec![f16::NAN; n];
    let loss = b
        .multi_label(&cfg, Pass::Fused, &inp, Some(GradMut::F16(&mut g)))
        .unwrap();
    // Expected: each residue r of the period 7147 occurs n / 7147 (+1 for r < n % 7147) times.
    let period = 1021 * 7;
    let elem = |i: usize| {
        let yv = py[i % 7];
        if yv == 255 {
            return (0.0, 0.0);
        }
        let e = reference::MlElem::new(&cfg, 0);
        reference::ml_element(px[i % 1021].to_f64(), yv as f64, &e)
    };
    let mut want = 0.0;
    for r in 0..period {
        let count = (n / period + usize::from(r < n % period)) as f64;
        want += count * elem(r).0;
    }
    assert_close(
        "loss past 2^31",
        &[loss.unwrap().scalar().unwrap() as f64],
        &[want],
        0.0,
        1e-5,
    );
    for i in [0, (1 << 31) - 1, 1 << 31, (1 << 31) + 12_345, n - 1] {
        let (_, gw) = elem(i);
        assert_close(&format!("grad[{i}]"), &[g[i].to_f64()], &[gw], 6e-8, 1e-3);
    }
    assert!(
        g.iter().all(|v| !v.is_nan()),
        "some gradient elements were not written"
    );
}
