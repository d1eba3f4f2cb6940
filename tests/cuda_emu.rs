//! The real kernels (`kernels/multi_label.cu`, `kernels/single_label.cu`) run on the CPU under
//! a small CUDA emulation (`tests/cuda_emu.hpp`: a block's threads are OS threads, with real
//! barriers, warp shuffles and atomics), launched with the plans the backend makes
//! (`plan_multi_label`, `plan_single_label`), and compared with the f64 reference. This
//! covers, without a GPU: the grid-stride loops over several blocks, packed and scalar paths,
//! column tracking for per-class weights, the warp/block row modes and the row cache, the
//! count passes, the reductions and the last-block finish, the error flag, every pass and
//! dtype. It says nothing about speed or about the GPU's own math library.
//!
//! Needs a C++20 compiler (`$CXX`, c++, g++, clang++); without one it prints why and passes
//! unless `ASL_REQUIRE_CXX=1`. Tolerances as in tests/cuda_gpu.rs.
#![cfg(feature = "cuda")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use asymloss::cuda::{self, DevUpstream, MlDeviceArgs, SlDeviceArgs, TargetKind};
use asymloss::reference;
use asymloss::{
    ClassTargets, DType, FocalGrad, Logits, MultiLabel, MultiTargets, Pass, PosWeight, Reduction,
    Shape, SingleLabel, Upstream,
};
use common::assert_close;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Blocks per emulated launch at most (enough to exercise grid-stride loops and the
/// last-block finish without thousands of OS threads).
const EMU_GRID: u64 = 3;
/// The fake address of the reduced-loss slot (only its presence matters).
const SLOT: u64 = 0x7000_0000;

fn driver() -> Option<PathBuf> {
    static D: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cands: Vec<String> = std::env::var("CXX").into_iter().collect();
        cands.extend(["c++", "g++", "clang++"].map(String::from));
        let dir = std::env::temp_dir().join(format!("asl_cuda_emu_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("cuda_emu");
        let mut errors = String::new();
        for cxx in cands {
            let out = Command::new(&cxx)
                .args([
                    "-std=c++20",
                    "-O1",
                    "-pthread",
                    "-Wall",
                    "-Wno-unknown-pragmas",
                ])
                .arg("-I")
                .arg(root.join("kernels"))
                .arg("-I")
                .arg(root.join("tests"))
                .arg(root.join("tests/cuda_emu.cpp"))
                .arg("-o")
                .arg(&exe)
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    println!("built the CUDA emulation with {cxx}");
                    return Some(exe);
                }
                Ok(o) => errors += &format!("{cxx}: {}\n", String::from_utf8_lossy(&o.stderr)),
                Err(_) => {}
            }
        }
        let why = if errors.is_empty() {
            "no C++ compiler found (tried $CXX, c++, g++, clang++)".to_string()
        } else {
            format!("no C++20 compiler could build tests/cuda_emu.cpp:\n{errors}")
        };
        if std::env::var("ASL_REQUIRE_CXX").as_deref() == Ok("1") {
            panic!("ASL_REQUIRE_CXX=1 but {why}");
        }
        println!("SKIPPED: {why}");
        None
    })
    .clone()
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

fn name64(s: &str) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[..s.len()].copy_from_slice(s.as_bytes());
    b
}

struct Launch<'a> {
    kernel: &'a str,
    count: Option<&'a str>,
    grid: u32,
    block: u32,
    smem: u32,
    mode: u32,
    loss_scale: f64,
    n: u64,
    params: &'a [u8],
    loss_is_array: bool,
    bufs: [&'a [u8]; 7],
}

/// Runs one launch; returns (grad bytes, loss bytes, workspace header).
fn run(exe: &Path, l: &Launch<'_>) -> (Vec<u8>, Vec<u8>, [u64; 8]) {
    let mut job = Vec::new();
    job.extend_from_slice(&name64(l.kernel));
    job.extend_from_slice(&name64(l.count.unwrap_or("")));
    for v in [l.grid, l.block, l.smem, l.mode] {
        job.extend_from_slice(&v.to_le_bytes());
    }
    job.extend_from_slice(&l.loss_scale.to_le_bytes());
    job.extend_from_slice(&l.n.to_le_bytes());
    job.extend_from_slice(l.params);
    job.extend_from_slice(&(l.loss_is_array as u32).to_le_bytes());
    for b in l.bufs {
        put(&mut job, b);
    }
    let dir = exe.parent().unwrap();
    let tag = format!("{:?}", std::thread::current().id()).replace(['(', ')'], "");
    let (jp, op) = (
        dir.join(format!("{tag}.job")),
        dir.join(format!("{tag}.out")),
    );
    std::fs::write(&jp, &job).unwrap();
    let st = Command::new(exe).arg(&jp).arg(&op).output().unwrap();
    assert!(
        st.status.success(),
        "{}: {}",
        l.kernel,
        String::from_utf8_lossy(&st.stderr)
    );
    let out = std::fs::read(&op).unwrap();
    let (g, rest) = out.split_at(l.bufs[5].len());
    let (lo, h) = rest.split_at(l.bufs[6].len());
    let mut header = [0u64; 8];
    for (i, w) in h.chunks_exact(8).enumerate() {
        header[i] = u64::from_le_bytes(w.try_into().unwrap());
    }
    (g.to_vec(), lo.to_vec(), header)
}

fn logits_bytes(x: &[f32], dt: DType) -> (Vec<u8>, Vec<f32>) {
    match dt {
        DType::F32 => (bytemuck::cast_slice(x).to_vec(), x.to_vec()),
        DType::F16 => {
            let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
            (
                bytemuck::cast_slice(&h).to_vec(),
                h.iter().map(|v| v.to_f32()).collect(),
            )
        }
        DType::Bf16 => {
            let h: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
            (
                bytemuck::cast_slice(&h).to_vec(),
                h.iter().map(|v| v.to_f32()).collect(),
            )
        }
    }
}

fn grad_values(b: &[u8], dt: DType) -> Vec<f64> {
    match dt {
        DType::F32 => f32s(b),
        DType::F16 => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        DType::Bf16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
    }
}

/// Little-endian f32 values of `b` (which need not be aligned), widened.
fn f32s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect()
}

fn nan_bytes(n: usize, dt: DType) -> Vec<u8> {
    logits_bytes(&vec![f32::NAN; n], dt).0
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter()
        .filter(|x| x.is_finite())
        .fold(0.0, |m, x| m.max(x.abs()))
}

fn grad_rtol(dt: DType) -> f64 {
    match dt {
        DType::F32 => 1e-4,
        DType::F16 => 1e-3,
        DType::Bf16 => 4e-3,
    }
}

fn random_logits(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            if rng.random_bool(0.03) {
                [30.0, -30.0, 95.0, -95.0, 16.7, -18.5][rng.random_range(0..6)]
            } else {
                rng.random_range(-8.0f32..8.0)
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn check_ml(
    exe: &Path,
    cfg: &MultiLabel,
    pass: Pass,
    shape: Shape,
    dt: DType,
    u8_targets: bool,
    aligned: bool,
    x: &[f32],
    yf: &[f32],
) {
    let n = shape.rows * shape.cols;
    let (xb, xr) = logits_bytes(x, dt);
    let yu: Vec<u8> = yf
        .iter()
        .map(|&y| if y < 0.0 { 255 } else { (y >= 0.5) as u8 })
        .collect();
    let yb: Vec<u8> = if u8_targets {
        yu.clone()
    } else {
        bytemuck::cast_slice(yf).to_vec()
    };
    let up: Vec<f32> = (0..n).map(|i| 0.5 + (i % 3) as f32 * 0.25).collect();
    let none = cfg.reduction == Reduction::None;
    let off = if aligned { 0 } else { dt.size() as u64 };
    let args = MlDeviceArgs {
        logits: 0x1000_0000 + off,
        dtype: dt,
        targets: 0x2000_0000 + if aligned { 0 } else { 1 },
        target_kind: if u8_targets {
            TargetKind::U8
        } else {
            TargetKind::F32
        },
        upstream: if none {
            DevUpstream::Array(0x3000_0000)
        } else {
            DevUpstream::Scalar(0.75)
        },
        grad: 0x4000_0000 + off,
        loss: if none { 0x5000_0000 } else { 0 },
    };
    let plan = cuda::plan_multi_label(cfg, pass, shape, &args, None, SLOT).unwrap();
    assert_eq!(
        plan.mode & cuda::context::mode::VEC != 0,
        aligned,
        "{plan:?}"
    );
    let cw: Vec<u8> = cfg
        .class_weight
        .as_ref()
        .map_or(Vec::new(), |w| bytemuck::cast_slice(w).to_vec());
    let pw: Vec<u8> = match &cfg.pos_weight {
        Some(PosWeight::PerClass(w)) => bytemuck::cast_slice(w).to_vec(),
        _ => Vec::new(),
    };
    let grad0 = if plan.grad != 0 {
        nan_bytes(n, dt)
    } else {
        Vec::new()
    };
    let loss_array = plan.mode & cuda::context::mode::LOSS_ARRAY != 0;
    let loss0: Vec<u8> = if loss_array {
        bytemuck::cast_slice(&vec![f32::NAN; n]).to_vec()
    } else {
        Vec::new()
    };
    let upb: Vec<u8> = if plan.upstream != 0 {
        bytemuck::cast_slice(&up).to_vec()
    } else {
        Vec::new()
    };
    let (g, l, header) = run(
        exe,
        &Launch {
            kernel: &plan.kernel,
            count: plan.count_kernel,
            grid: plan.blocks_needed.clamp(1, EMU_GRID) as u32,
            block: cuda::multi_label::ML_THREADS,
            smem: 0,
            mode: plan.mode,
            loss_scale: plan.loss_scale,
            n: plan.n,
            params: bytemuck::bytes_of(&plan.params),
            loss_is_array: loss_array,
            bufs: [&xb, &yb, &cw, &pw, &upb, &grad0, &loss0],
        },
    );
    assert_eq!(
        header[2] & 0xffff_ffff,
        0,
        "the finished-block counter was not reset"
    );
    let targets = if u8_targets {
        MultiTargets::U8(&yu)
    } else {
        MultiTargets::F32(yf)
    };
    let upstream = if none {
        Upstream::Array(&up)
    } else {
        Upstream::Scalar(0.75)
    };
    let what = format!("{} {shape} {cfg:?} aligned {aligned}", plan.kernel);
    match reference::multi_label(cfg, shape, Logits::F32(&xr), targets, upstream) {
        Err(_) => {
            let first = targets.first_invalid().unwrap() as u64;
            assert_eq!(header[0], first, "{what}: error index");
        }
        Ok(want) => {
            assert_eq!(header[0], u64::MAX, "{what}: unexpected error flag");
            if pass.wants_loss() {
                let got: Vec<f64> = if loss_array {
                    f32s(&l)
                } else {
                    vec![f32::from_bits(header[3] as u32) as f64]
                };
                let atol = if got.len() > 1 {
                    1e-6 * max_abs(&want.loss)
                } else {
                    0.0
                };
                assert_close(&format!("{what}: loss"), &got, &want.loss, atol, 1e-5);
            }
            if pass.wants_grad() {
                let atol =
                    (1e-6 * max_abs(&want.grad)).max(if dt == DType::F16 { 6e-8 } else { 0.0 });
                assert_close(
                    &format!("{what}: grad"),
                    &grad_values(&g, dt),
                    &want.grad,
                    atol,
                    grad_rtol(dt),
                );
            }
        }
    }
}

#[test]
fn multi_label_kernels_match_the_reference_under_emulation() {
    let Some(exe) = driver() else { return };
    let mut rng = StdRng::seed_from_u64(7);
    let cfgs = [
        MultiLabel::default(),
        MultiLabel {
            reduction: Reduction::Mean,
            smoothing: 0.1,
            gamma_pos: 0.5,
            ..Default::default()
        },
        MultiLabel {
            reduction: Reduction::None,
            focal_grad: FocalGrad::Detached,
            clip: 0.0,
            ..Default::default()
        },
        MultiLabel {
            reduction: Reduction::Sum,
            pos_weight: Some(PosWeight::Scalar(2.0)),
            ..MultiLabel::paper()
        },
    ];
    let mut launches = 0;
    for (si, &(rows, cols)) in [
        (1usize, 1usize),
        (3, 7),
        (17, 80),
        (64, 33),
        (5, 1000),
        (0, 5),
        (4, 0),
    ]
    .iter()
    .enumerate()
    {
        let n = rows * cols;
        let x = random_logits(&mut rng, n);
        let yf: Vec<f32> = (0..n)
            .map(|_| match rng.random_range(0..8) {
                0 => -1.0,
                1 => rng.random_range(0.0f32..1.0),
                2 | 3 => 1.0,
                _ => 0.0,
            })
            .collect();
        for (ci, cfg) in cfgs.iter().enumerate() {
            let mut cfg = cfg.clone();
            if (si + ci) % 2 == 1 {
                cfg.class_weight = Some((0..cols).map(|c| 0.5 + (c % 4) as f32 * 0.5).collect());
                cfg.pos_weight = Some(PosWeight::PerClass(
                    (0..cols).map(|c| 1.0 + (c % 3) as f32).collect(),
                ));
            }
            let dt = [DType::F32, DType::F16, DType::Bf16][(si + ci) % 3];
            let u8_targets = (si + ci) % 2 == 0;
            let shape = Shape::new(rows, cols);
            for pass in [Pass::Fused, Pass::Forward, Pass::Backward] {
                for aligned in [true, false] {
                    check_ml(&exe, &cfg, pass, shape, dt, u8_targets, aligned, &x, &yf);
                    launches += 1;
                }
            }
        }
    }
    // Several grid-stride steps per thread with per-class weights, every dtype, packed and
    // scalar: the column of each element is tracked incrementally across steps.
    let (rows, cols) = (40, 777);
    let x = random_logits(&mut rng, rows * cols);
    let yf: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7) % 5 == 0) as u8 as f32)
        .collect();
    let cfg = MultiLabel {
        class_weight: Some((0..cols).map(|c| 0.25 + (c % 7) as f32 * 0.25).collect()),
        pos_weight: Some(PosWeight::PerClass(
            (0..cols).map(|c| 1.0 + (c % 5) as f32).collect(),
        )),
        ..Default::default()
    };
    for dt in [DType::F32, DType::F16, DType::Bf16] {
        for u8_targets in [false, true] {
            for aligned in [true, false] {
                let shape = Shape::new(rows, cols);
                check_ml(
                    &exe,
                    &cfg,
                    Pass::Fused,
                    shape,
                    dt,
                    u8_targets,
                    aligned,
                    &x,
                    &yf,
                );
                launches += 1;
            }
        }
    }

    // Invalid targets: the first bad flat index is reported (two bad elements, two blocks).
    let (rows, cols) = (40, 50);
    let x = random_logits(&mut rng, rows * cols);
    let mut yf = vec![0.0f32; rows * cols];
    yf[1234] = 1.5;
    yf[1999] = f32::NAN;
    for aligned in [true, false] {
        let shape = Shape::new(rows, cols);
        check_ml(
            &exe,
            &MultiLabel::default(),
            Pass::Fused,
            shape,
            DType::F32,
            false,
            aligned,
            &x,
            &yf,
        );
    }
    println!("{launches} emulated multi-label launches");
}

#[allow(clippy::too_many_arguments)]
fn check_sl(
    exe: &Path,
    cfg: &SingleLabel,
    pass: Pass,
    shape: Shape,
    dt: DType,
    x: &[f32],
    t: &[i32],
    expect_mode: u32,
) {
    let (rows, n) = (shape.rows, shape.rows * shape.cols);
    let (xb, xr) = logits_bytes(x, dt);
    let up: Vec<f32> = (0..rows).map(|r| 1.0 + (r % 3) as f32 * 0.5).collect();
    let none = cfg.reduction == Reduction::None;
    let args = SlDeviceArgs {
        logits: 0x1000_0000,
        dtype: dt,
        targets: 0x2000_0000,
        upstream: if none {
            DevUpstream::Array(0x3000_0000)
        } else {
            DevUpstream::Scalar(1.5)
        },
        grad: 0x4000_0000,
        loss: if none { 0x5000_0000 } else { 0 },
    };
    let plan = cuda::plan_single_label(cfg, pass, shape, &args, None, SLOT).unwrap();
    let shape_bits = cuda::context::mode::WARP_ROWS | cuda::context::mode::CACHE_ROW;
    assert_eq!(plan.mode & shape_bits, expect_mode, "{plan:?}");
    let grad0 = if plan.grad != 0 {
        nan_bytes(n, dt)
    } else {
        Vec::new()
    };
    let loss_array = plan.mode & cuda::context::mode::LOSS_ARRAY != 0;
    let loss0: Vec<u8> = if loss_array {
        bytemuck::cast_slice(&vec![f32::NAN; rows]).to_vec()
    } else {
        Vec::new()
    };
    let upb: Vec<u8> = if plan.upstream != 0 {
        bytemuck::cast_slice(&up).to_vec()
    } else {
        Vec::new()
    };
    let tb: Vec<u8> = bytemuck::cast_slice(t).to_vec();
    let (g, l, header) = run(
        exe,
        &Launch {
            kernel: &plan.kernel,
            count: plan.count_first.then_some("single_label_count"),
            grid: plan.blocks_needed.clamp(1, EMU_GRID) as u32,
            block: plan.block,
            smem: plan.smem,
            mode: plan.mode,
            loss_scale: plan.loss_scale,
            n: rows as u64,
            params: bytemuck::bytes_of(&plan.params),
            loss_is_array: loss_array,
            bufs: [&xb, &tb, &[], &[], &upb, &grad0, &loss0],
        },
    );
    assert_eq!(
        header[2] & 0xffff_ffff,
        0,
        "the finished-block counter was not reset"
    );
    let what = format!("{} {shape} {cfg:?}", plan.kernel);
    let bad = t
        .iter()
        .position(|&v| Some(v as i64) != cfg.ignore_index && !(0..shape.cols as i32).contains(&v));
    if let Some(row) = bad {
        assert_eq!(header[0], row as u64, "{what}: error row");
        return;
    }
    assert_eq!(header[0], u64::MAX, "{what}: unexpected error flag");
    let t64: Vec<i64> = t.iter().map(|&v| v as i64).collect();
    let upstream = if none {
        Upstream::Array(&up)
    } else {
        Upstream::Scalar(1.5)
    };
    let want = reference::single_label(
        cfg,
        shape,
        Logits::F32(&xr),
        ClassTargets::I64(&t64),
        upstream,
    )
    .unwrap();
    if pass.wants_loss() {
        let got: Vec<f64> = if loss_array {
            f32s(&l)
        } else {
            vec![f32::from_bits(header[3] as u32) as f64]
        };
        let atol = if got.len() > 1 {
            1e-6 * max_abs(&want.loss)
        } else {
            0.0
        };
        assert_close(&format!("{what}: loss"), &got, &want.loss, atol, 1e-5);
    }
    if pass.wants_grad() {
        let atol = (1e-6 * max_abs(&want.grad)).max(if dt == DType::F16 { 6e-8 } else { 0.0 });
        assert_close(
            &format!("{what}: grad"),
            &grad_values(&g, dt),
            &want.grad,
            atol,
            grad_rtol(dt),
        );
    }
}

#[test]
fn single_label_kernels_match_the_reference_under_emulation() {
    use cuda::context::mode::{CACHE_ROW, WARP_ROWS};
    let Some(exe) = driver() else { return };
    let mut rng = StdRng::seed_from_u64(8);
    let cfgs = [
        SingleLabel::default(),
        SingleLabel {
            reduction: Reduction::None,
            gamma_pos: 0.5,
            smoothing: 0.3,
            ..Default::default()
        },
        SingleLabel {
            ignore_index: Some(-100),
            ..Default::default()
        },
        SingleLabel {
            reduction: Reduction::Sum,
            ..SingleLabel::cross_entropy()
        },
    ];
    let shapes = [
        (0usize, 3usize, WARP_ROWS),
        (1, 1, WARP_ROWS),
        (4, 2, WARP_ROWS),
        (33, 7, WARP_ROWS),
        (40, 80, WARP_ROWS),
        (9, 1000, WARP_ROWS),
        (7, 1025, CACHE_ROW),
        (3, 12_001, 0),
    ];
    let mut launches = 0;
    for (si, &(rows, cols, expect)) in shapes.iter().enumerate() {
        let mut x = random_logits(&mut rng, rows * cols);
        if rows > 2 && si % 2 == 0 {
            x[2 * cols] = f32::NAN; // a NaN row
            x[cols + cols / 2] = f32::NEG_INFINITY;
        }
        for (ci, cfg) in cfgs.iter().enumerate() {
            let mut t: Vec<i32> = (0..rows)
                .map(|_| rng.random_range(0..cols as i32))
                .collect();
            if cfg.ignore_index == Some(-100) && rows > 3 {
                t[3] = -100;
            }
            let dt = [DType::F32, DType::F16, DType::Bf16][(si + ci) % 3];
            for pass in [Pass::Fused, Pass::Forward, Pass::Backward] {
                check_sl(&exe, cfg, pass, Shape::new(rows, cols), dt, &x, &t, expect);
                launches += 1;
            }
        }
    }
    // Out-of-range class indices: the first bad row is reported.
    let (rows, cols) = (30, 20);
    let x = random_logits(&mut rng, rows * cols);
    let mut t: Vec<i32> = vec![1; rows];
    t[17] = 20;
    t[25] = -3;
    check_sl(
        &exe,
        &SingleLabel::default(),
        Pass::Fused,
        Shape::new(rows, cols),
        DType::F32,
        &x,
        &t,
        WARP_ROWS,
    );
    println!("{launches} emulated single-label launches");
}
