//! `kernels/asl_math.cuh` compiled by the system C++ compiler (no GPU, no CUDA) and compared
//! with the float64 reference on dense grids of logits, targets and parameters.
//!
//! The driver (`tests/cuda_math_host.cpp`) evaluates the header's multi-label element and the
//! single-label row the way `single_label.cu` computes it with 32 lanes (strided columns, xor
//! butterfly merges). The reference gets the same f32 parameters widened to f64 (the kernels'
//! `MlParams` are f32), so the comparison measures the math, not the parameter rounding.
//!
//! Tolerances (f32 against f64):
//! - everywhere: loss `1e-5 |ref| + 1e-6 m_l`, gradient `1e-4 |ref| + 1e-6 m_g`, with `m_l`,
//!   `m_g` the largest |loss| and |gradient| of the same parameters and target over the x grid;
//! - where nothing cancels (binary targets, except negatives with clip on, whose shifted
//!   probability p - clip cancels near p = clip): the same relative bounds with an absolute
//!   floor of 1e-35 only, so the log-sigmoid forms must keep relative precision deep into
//!   saturation (|x| up to 80);
//! - at a clamp boundary (x within 4 f32 ulps of ln eps or logit(clip)) any value in the range
//!   the reference takes within 4 ulps of x is accepted: the branch decision there depends on
//!   the last bit, and with gamma < 1 the focusing derivative is unbounded at the kink;
//! - multi-label values below f32's normal range count as 0 (absolute floor 1e-35);
//! - single-label rows: loss `1e-5 |ref| + 1e-15`, gradient `1e-4 |ref| + max(1e-6 m_g,
//!   1e-15)` (m_g the row's largest |gradient|); 1e-15 is the f64 reference's own accuracy
//!   near saturation, where its log-sum-exp rounds e^-40 away next to 1.
//!
//! Without a C++ compiler the test prints why and passes, unless `ASL_REQUIRE_CXX=1`. It needs
//! no CUDA and no cargo feature.

use std::path::{Path, PathBuf};
use std::process::Command;

use asymloss::reference::{self, MlElem};
use asymloss::{Reduction, SingleLabel};
use rand::{Rng, SeedableRng};

fn find_cxx() -> Option<String> {
    let mut candidates = Vec::new();
    if let Ok(c) = std::env::var("CXX") {
        candidates.push(c);
    }
    candidates.extend(["c++", "g++", "clang++"].map(String::from));
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// Builds the driver once per test process; `None` (after printing why) when there is no
/// compiler and it is not required.
fn driver() -> Option<PathBuf> {
    static DRIVER: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DRIVER
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let Some(cxx) = find_cxx() else {
                let why = "no C++ compiler found (tried $CXX, c++, g++, clang++)";
                if std::env::var("ASL_REQUIRE_CXX").as_deref() == Ok("1") {
                    panic!("ASL_REQUIRE_CXX=1 but {why}");
                }
                println!("SKIPPED: {why}");
                return None;
            };
            let dir = std::env::temp_dir().join(format!("asl_math_host_{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let exe = dir.join("driver");
            let out = Command::new(&cxx)
                .args(["-std=c++17", "-O2", "-Wall", "-Wextra", "-ffp-contract=off"])
                .arg("-I")
                .arg(root.join("kernels"))
                .arg(root.join("tests/cuda_math_host.cpp"))
                .arg("-o")
                .arg(&exe)
                .output()
                .expect("running the C++ compiler");
            assert!(
                out.status.success(),
                "{cxx} failed to compile asl_math.cuh:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let warnings = String::from_utf8_lossy(&out.stderr);
            assert!(
                !warnings.contains("warning"),
                "asl_math.cuh has warnings:\n{warnings}"
            );
            println!("compiled kernels/asl_math.cuh with {cxx}");
            Some(exe)
        })
        .clone()
}

fn run(exe: &Path, mode: &str, input: &[f32]) -> Vec<f32> {
    let dir = exe.parent().unwrap();
    let tag = format!("{mode}_{:?}", std::thread::current().id()).replace(['(', ')'], "");
    let (inp, outp) = (
        dir.join(format!("{tag}.in")),
        dir.join(format!("{tag}.out")),
    );
    std::fs::write(&inp, bytemuck::cast_slice(input)).unwrap();
    let st = Command::new(exe)
        .arg(mode)
        .arg(&inp)
        .arg(&outp)
        .status()
        .unwrap();
    assert!(st.success(), "driver {mode} failed");
    let bytes = std::fs::read(&outp).unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn close(a: f64, b: f64, atol: f64, rtol: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= atol + rtol * b.abs()
}

fn next_f32(x: f32, up: bool, steps: u32) -> f32 {
    (0..steps).fold(x, |v, _| if up { v.next_up() } else { v.next_down() })
}

fn x_grid() -> Vec<f32> {
    let mut xs: Vec<f32> = (0..=1600).map(|i| -40.0 + 0.05 * i as f32).collect();
    xs.extend([
        0.0,
        -0.0,
        1e-6,
        -1e-6,
        18.4207,
        -18.4207,
        18.420681,
        -18.420681,
        -2.944439,
        -1.386294,
        16.636,
        8.317,
        6.235,
        17.336,
        60.0,
        -60.0,
        80.0,
        -80.0,
        88.7,
        -88.7,
        100.0,
        -100.0,
        1e4,
        -1e4,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]);
    xs
}

#[derive(Clone, Copy, Debug)]
struct MlCase {
    gp: f32,
    gn: f32,
    clip: f32,
    ln_eps: f32,
    detached: bool,
    pw: f32,
}

#[test]
fn multi_label_element_matches_the_f64_reference_on_dense_grids() {
    let Some(exe) = driver() else { return };
    let xs = x_grid();
    let ys = [0.0f32, 1.0, 0.5, 0.3, 0.05, 0.9, 0.999, 1e-4, 0.025, 0.975];
    let gammas = [
        (0.0f32, 0.0f32),
        (1.0, 4.0),
        (0.0, 4.0),
        (0.5, 0.5),
        (2.0, 2.0),
        (4.0, 1.0),
        (0.25, 3.0),
    ];
    let mut cases = Vec::new();
    for &(gp, gn) in &gammas {
        for clip in [0.0f32, 0.05, 0.2] {
            for eps in [1e-8f32, 1e-3, 0.0] {
                for detached in [false, true] {
                    for pw in [1.0f32, 2.5] {
                        cases.push(MlCase {
                            gp,
                            gn,
                            clip,
                            ln_eps: eps.ln(),
                            detached,
                            pw,
                        });
                    }
                }
            }
        }
    }
    let mut input = Vec::with_capacity(cases.len() * ys.len() * xs.len() * 10);
    for c in &cases {
        for &y in &ys {
            for &x in &xs {
                input.extend([
                    (c.clip > 0.0) as u8 as f32,
                    c.gp,
                    c.gn,
                    c.clip,
                    c.ln_eps,
                    c.detached as u8 as f32,
                    (c.gp == 0.0 && c.gn == 0.0) as u8 as f32,
                    x,
                    y,
                    c.pw,
                ]);
            }
        }
    }
    let out = run(&exe, "ml", &input);
    assert_eq!(out.len(), input.len() / 5);

    let reference = |c: &MlCase, x: f32, y: f32| {
        let e = MlElem {
            gamma_pos: c.gp as f64,
            gamma_neg: c.gn as f64,
            clip: c.clip as f64,
            ln_eps: c.ln_eps as f64,
            pos_weight: c.pw as f64,
            detached: c.detached,
        };
        reference::ml_element(x as f64, y as f64, &e)
    };
    let boundary = |c: &MlCase, x: f32| {
        let near = |b: f64| ((x as f64) - b).abs() <= 4.0 * (b.abs() * f32::EPSILON as f64);
        let logit_clip = if c.clip > 0.0 {
            ((c.clip / (1.0 - c.clip)) as f64).ln()
        } else {
            f64::NAN
        };
        near(c.ln_eps as f64) || near(logit_clip)
    };

    let mut k = 0usize;
    let mut failures = Vec::new();
    let mut checked = 0usize;
    for c in &cases {
        for &y in &ys {
            let refs: Vec<(f64, f64)> = xs.iter().map(|&x| reference(c, x, y)).collect();
            let finite_max = |f: fn(&(f64, f64)) -> f64| {
                refs.iter()
                    .map(f)
                    .filter(|v| v.is_finite())
                    .fold(0.0f64, |m, v| m.max(v.abs()))
            };
            let m_l = finite_max(|r| r.0);
            let m_g = finite_max(|r| r.1);
            let strict = (y == 1.0) || (y == 0.0 && c.clip == 0.0);
            for (i, &x) in xs.iter().enumerate() {
                let (l, g) = (out[k] as f64, out[k + 1] as f64);
                k += 2;
                checked += 1;
                let (rl, rg) = refs[i];
                let (al, ag) = if strict {
                    (1e-35, 1e-35)
                } else {
                    (1e-6 * m_l, 1e-6 * m_g)
                };
                let mut ok = close(l, rl, al, 1e-5) && close(g, rg, ag, 1e-4);
                if !ok && boundary(c, x) {
                    // f32 cannot resolve the kink: accept anything in the range the reference
                    // takes within 4 ulps of x (plus the tolerance).
                    let near: Vec<(f64, f64)> = (1..=4u32)
                        .flat_map(|s| [next_f32(x, true, s), next_f32(x, false, s)])
                        .chain([x])
                        .map(|xn| reference(c, xn, y))
                        .collect();
                    let within = |v: f64, f: fn(&(f64, f64)) -> f64, atol: f64, rtol: f64| {
                        let lo = near.iter().map(f).fold(f64::INFINITY, f64::min);
                        let hi = near.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
                        v >= lo - atol - rtol * lo.abs() && v <= hi + atol + rtol * hi.abs()
                    };
                    ok = within(l, |r| r.0, al, 1e-5) && within(g, |r| r.1, ag, 1e-4);
                }
                if !ok && failures.len() < 12 {
                    failures.push(format!(
                        "{c:?} y {y} x {x}: loss {l:e} vs {rl:e}, grad {g:e} vs {rg:e}"
                    ));
                }
            }
        }
    }
    println!("multi-label: {checked} elements checked");
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

#[test]
fn single_label_row_matches_the_f64_reference() {
    let Some(exe) = driver() else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x05ee_da51);
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for &c in &[1usize, 2, 3, 7, 33, 80, 1000] {
        for scale in [1.0f32, 10.0, 50.0] {
            for _ in 0..3 {
                rows.push(
                    (0..c)
                        .map(|_| rng.random_range(-1.0f32..1.0) * scale)
                        .collect(),
                );
            }
        }
    }
    // Rows through the limits: target far below the maximum (subnormal e_t), beyond f32
    // range, infinities, NaN, ties, all equal.
    let special: Vec<Vec<f32>> = vec![
        vec![95.0, 0.0, 1.0],
        vec![0.0, 95.0, 1.0],
        vec![200.0, 0.0, -3.0],
        vec![0.0, 200.0, 5.0],
        vec![f32::NEG_INFINITY, 0.5, 1.0],
        vec![0.5, f32::NEG_INFINITY, 1.0],
        vec![f32::INFINITY, 0.5, 1.0],
        vec![f32::INFINITY, f32::INFINITY, 1.0],
        vec![f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY],
        vec![1.0, f32::NAN, 2.0],
        vec![3.0, 3.0, 3.0, 3.0],
        vec![12.0, 0.0, -3.0],
        vec![1e-3, 0.0, -1e-3, 2e-3],
    ];
    rows.extend(special);
    let params: Vec<(f32, f32, f32)> = {
        let mut v = Vec::new();
        for gp in [0.0f32, 0.5, 1.0, 4.0] {
            for gn in [0.0f32, 0.5, 4.0] {
                for s in [0.0f32, 0.1, 0.3] {
                    v.push((gp, gn, s));
                }
            }
        }
        v
    };
    let mut input = Vec::new();
    let mut meta = Vec::new();
    for (ri, z) in rows.iter().enumerate() {
        for (pi, &(gp, gn, s)) in params.iter().enumerate() {
            let k = z.len();
            for t in [0usize, k / 2, k - 1] {
                let a_t = (1.0 - s as f64 + s as f64 / k as f64) as f32;
                let a_o = (s as f64 / k as f64) as f32;
                input.extend([k as f32, t as f32, gp, gn, a_t, a_o, 32.0, 0.0]);
                input.extend_from_slice(z);
                meta.push((ri, pi, t));
            }
        }
    }
    let out = run(&exe, "sl", &input);
    let mut k = 0usize;
    let mut failures = Vec::new();
    for &(ri, pi, t) in &meta {
        let z = &rows[ri];
        let (gp, gn, s) = params[pi];
        let cfg = SingleLabel {
            gamma_pos: gp as f64,
            gamma_neg: gn as f64,
            smoothing: s as f64,
            reduction: Reduction::Sum,
            ignore_index: None,
        };
        let zf: Vec<f64> = z.iter().map(|&v| v as f64).collect();
        let (rl, rg) = reference::sl_row(&zf, t, &cfg);
        let l = out[k] as f64;
        let g: Vec<f64> = out[k + 1..k + 1 + z.len()]
            .iter()
            .map(|&v| v as f64)
            .collect();
        k += 1 + z.len();
        let m_g = rg
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        // The reference's own absolute accuracy is about 1e-16 (its log-sum-exp rounds
        // e^-40 away next to 1, where the f32 ln1p form keeps it), hence the 1e-15 floor.
        let mut ok = close(l, rl, 1e-15, 1e-5);
        let atol = (1e-6 * m_g).max(1e-15);
        let bad_cols: Vec<usize> = (0..z.len())
            .filter(|&j| !close(g[j], rg[j], atol, 1e-4))
            .collect();
        ok &= bad_cols.is_empty();
        if !ok && failures.len() < 12 {
            let j = bad_cols.first().copied().unwrap_or(0);
            failures.push(format!(
                "row {ri} ({} cols) t {t} gp {gp} gn {gn} s {s}: loss {l:e} vs {rl:e}; \
                 {} grads off, first [{j}] {:e} vs {:e}",
                z.len(),
                bad_cols.len(),
                g.get(j).copied().unwrap_or(f64::NAN),
                rg.get(j).copied().unwrap_or(f64::NAN)
            ));
        }
    }
    println!("single-label: {} rows checked", meta.len());
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}
