//! The `asl` binary, driven as a user would: the demo's values against timm's golden curves,
//! `eval` on small generated `.npy` files (every dtype, every reduction, the JSON object, the
//! gradient file against the float64 reference), `bench --json`, and the errors.
//!
//! Tolerances (f32 backend against the f64 reference or timm's float32 values): loss rtol 1e-5,
//! gradient rtol 1e-4 with atol 1e-6 * max|grad|; f16 logits: loss rtol 1e-3, gradient
//! rtol 1e-2 with atol 1e-3 * max|grad| (the gradient is stored in f16, 11 significant bits);
//! f64 logits run the f64 reference: rtol 1e-12.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use asymloss::{reference, ClassTargets, Logits, MultiLabel, MultiTargets, Reduction, Shape};
use asymloss::{FocalGrad, SingleLabel, Upstream};
use common::shared_dir;
use half::f16;
use serde_json::Value;

fn asl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asl"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the asl binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "asl failed ({:?}): {}",
        o.status,
        stderr(o)
    );
    stdout(o)
}

/// Exit status 2 and one line on stderr containing every fragment of `what`.
fn fails_with(o: &Output, what: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected exit status 2, got {:?}: {err}",
        o.status
    );
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("asl: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    for w in what {
        assert!(
            lines[0].contains(w),
            "error line {:?} does not mention {w:?}",
            lines[0]
        );
    }
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// A minimal .npy writer and reader (the test must not share the binary's code).

fn npy_bytes(descr: &str, shape: &[usize], fortran: bool, data: &[u8]) -> Vec<u8> {
    let shape_s = match shape {
        [] => "()".to_string(),
        [a] => format!("({a},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let f = if fortran { "True" } else { "False" };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape_s}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    std::fs::write(path, npy_bytes(descr, shape, false, data)).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f16_bytes(v: &[f16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect()
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `(descr, shape, values as f64)` of a little-endian float .npy file.
fn read_npy(path: &Path) -> (String, Vec<usize>, Vec<f64>) {
    let b = std::fs::read(path).unwrap();
    assert!(b.starts_with(b"\x93NUMPY"));
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert_eq!((10 + hl) % 64, 0, "data must start on a 64-byte boundary");
    let h = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    let descr = h
        .split("'descr': '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    assert!(h.contains("'fortran_order': False"));
    let shape_s = h
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let d = &b[10 + hl..];
    let vals: Vec<f64> = match descr.as_str() {
        "<f4" => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        "<f8" => d
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        "<f2" => d
            .chunks_exact(2)
            .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f64())
            .collect(),
        other => panic!("unexpected dtype {other}"),
    };
    assert_eq!(
        vals.len(),
        shape
            .iter()
            .product::<usize>()
            .max(if shape.is_empty() { 1 } else { 0 })
    );
    (descr, shape, vals)
}

fn close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let okay = if w.is_nan() {
            g.is_nan()
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
        };
        assert!(okay, "{what}[{i}]: got {g}, want {w}");
    }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

// ---------------------------------------------------------------------------------------------
// Generated inputs.

const N: usize = 6;
const C: usize = 11;

/// Seeded logits in [-7, 5), including exact 0, large magnitudes, and f16-exact values.
fn logits() -> Vec<f32> {
    let mut s: u64 = 12345;
    (0..N * C)
        .map(|i| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            let x = match i % 17 {
                0 => 0.0,
                5 => 25.0,
                9 => -30.0,
                _ => u * 12.0 - 7.0,
            };
            // Round to f16 so that the same values are exact in every dtype.
            f16::from_f32(x).to_f32()
        })
        .collect()
}

/// Multi-label targets: 0, 1 and (every 7th) unknown.
fn targets_f32() -> Vec<f32> {
    (0..N * C)
        .map(|i| {
            if i % 7 == 3 {
                -1.0
            } else if i % 4 == 1 {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

fn classes() -> Vec<i64> {
    vec![0, 3, 10, 7, 3, 1]
}

struct Dir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Dir {
    fn new() -> Self {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().to_path_buf();
        Dir { _tmp: t, path }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.p(name).to_string_lossy().into_owned()
    }

    /// Writes the standard logits (f32, f16, f64) and targets (every kind).
    fn standard(&self) {
        let x = logits();
        write_npy(&self.p("x32.npy"), "<f4", &[N, C], &f32_bytes(&x));
        let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
        write_npy(&self.p("x16.npy"), "<f2", &[N, C], &f16_bytes(&xh));
        let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        write_npy(&self.p("x64.npy"), "<f8", &[N, C], &f64_bytes(&xd));
        let y = targets_f32();
        write_npy(&self.p("yf32.npy"), "<f4", &[N, C], &f32_bytes(&y));
        let yu8: Vec<u8> = y
            .iter()
            .map(|&v| if v < 0.0 { 255 } else { v as u8 })
            .collect();
        write_npy(&self.p("yu8.npy"), "|u1", &[N, C], &yu8);
        let yb: Vec<u8> = y.iter().map(|&v| (v == 1.0) as u8).collect();
        write_npy(&self.p("ybool.npy"), "|b1", &[N, C], &yb);
        let yi: Vec<i64> = y.iter().map(|&v| v as i64).collect();
        write_npy(&self.p("yi64.npy"), "<i8", &[N, C], &i64_bytes(&yi));
        write_npy(&self.p("cls.npy"), "<i8", &[N], &i64_bytes(&classes()));
        let c32: Vec<u8> = classes()
            .iter()
            .flat_map(|&c| (c as i32).to_le_bytes())
            .collect();
        write_npy(&self.p("cls32.npy"), "<i4", &[N], &c32);
    }
}

fn json_of(out: &str) -> Value {
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "--json prints one line: {out}");
    serde_json::from_str(lines[0]).unwrap()
}

fn ml_ref(cfg: &MultiLabel, targets: MultiTargets<'_>, up: f32) -> reference::Output {
    let x = logits();
    reference::multi_label(
        cfg,
        Shape::new(N, C),
        Logits::F32(&x),
        targets,
        Upstream::Scalar(up),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// demo

#[test]
fn demo_values_match_timm_seed_curves() {
    let d = Dir::new();
    let out = ok(&asl(&[
        "demo",
        "--backend",
        "cpu",
        "--out",
        &d.s("out"),
        "--repeats",
        "1",
    ]));
    // The key values, as printed.
    assert!(
        out.contains("1.7944835"),
        "cross-entropy equivalence value missing:\n{out}"
    );
    assert!(
        out.contains("0.4374580") || out.contains("0.4374581"),
        "flat curve value:\n{out}"
    );
    assert!(
        out.contains("timm defaults") && out.contains("paper setting"),
        "{out}"
    );
    assert!(out.contains("reference (f64"), "{out}");
    assert!(
        !out.contains(" failed: "),
        "a backend failed on the real sample:\n{out}"
    );

    // Every curve against timm's float32 values.
    let golden_text =
        std::fs::read_to_string(shared_dir().join("golden").join("timm_asl_cases.json")).unwrap();
    let golden: Value = serde_json::from_str(&golden_text).unwrap();
    let walk: Value =
        serde_json::from_str(&std::fs::read_to_string(d.p("out/walkthrough.json")).unwrap())
            .unwrap();
    let curves = golden["seed_curves"].as_object().unwrap();
    assert_eq!(curves.len(), 5);
    for (name, want) in curves {
        let got = walk[name]
            .as_array()
            .unwrap_or_else(|| panic!("walkthrough lacks {name}"));
        let want = want.as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{name}: number of points");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let (gx, gy) = (g[0].as_f64().unwrap(), g[1].as_f64().unwrap());
            let (wx, wy) = (w[0].as_f64().unwrap(), w[1].as_f64().unwrap());
            assert!((gx - wx).abs() <= 1e-12, "{name}[{i}]: x {gx} vs {wx}");
            assert!(
                (gy - wy).abs() <= 1e-5 * wy.abs(),
                "{name}[{i}]: loss {gy} vs timm {wy}"
            );
        }
    }
    // The flat curve is flat.
    let flat = walk["single_gamma_neg_eps0"].as_array().unwrap();
    let first = flat[0][1].as_f64().unwrap();
    assert!(flat
        .iter()
        .all(|p| (p[1].as_f64().unwrap() - first).abs() <= 1e-6 * first));

    // Two PNG files of a plausible size.
    for name in ["loss_vs_gamma_neg.png", "loss_vs_clip.png"] {
        let b = std::fs::read(d.p("out").join(name)).unwrap();
        assert!(b.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
        assert!(
            b.len() > 20_000,
            "{name} is suspiciously small ({} bytes)",
            b.len()
        );
    }
}

#[test]
fn demo_on_the_reference_backend_matches_too() {
    let d = Dir::new();
    ok(&asl(&[
        "demo",
        "--backend",
        "reference",
        "--out",
        &d.s("o"),
        "--repeats",
        "1",
    ]));
    let walk: Value =
        serde_json::from_str(&std::fs::read_to_string(d.p("o/walkthrough.json")).unwrap()).unwrap();
    let v = walk["seed_ce_equivalence"][0][1].as_f64().unwrap();
    assert!((v - 1.7944835424423218).abs() < 1e-6, "{v}");
}

// ---------------------------------------------------------------------------------------------
// eval: values

#[test]
fn eval_multi_label_every_target_dtype() {
    let d = Dir::new();
    d.standard();
    let y = targets_f32();
    let want = ml_ref(&MultiLabel::default(), MultiTargets::F32(&y), 1.0).loss[0];
    for t in ["yf32", "yu8", "yi64"] {
        let j = json_of(&ok(&asl(&[
            "eval",
            "--logits",
            &d.s("x32.npy"),
            "--targets",
            &d.s(&format!("{t}.npy")),
            "--backend",
            "cpu",
            "--json",
        ])));
        let got = j["loss"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "{t}: {got} vs {want}"
        );
    }
    // bool targets have no unknowns: compare with the reference on 0/1.
    let yb: Vec<f32> = y.iter().map(|&v| (v == 1.0) as u8 as f32).collect();
    let want_b = ml_ref(&MultiLabel::default(), MultiTargets::F32(&yb), 1.0).loss[0];
    let j = json_of(&ok(&asl(&[
        "eval",
        "--logits",
        &d.s("x32.npy"),
        "--targets",
        &d.s("ybool.npy"),
        "--json",
    ])));
    let got = j["loss"].as_f64().unwrap();
    assert!(
        (got - want_b).abs() <= 1e-5 * want_b.abs(),
        "bool: {got} vs {want_b}"
    );
}

/// Every backend this build has agrees with the reference (those not available here say so
/// with exit status 2 and are skipped).
#[test]
fn eval_on_every_backend() {
    let d = Dir::new();
    d.standard();
    let y = targets_f32();
    let r = ml_ref(&MultiLabel::default(), MultiTargets::F32(&y), 1.0);
    let x = logits();
    let t = classes();
    let rs = reference::single_label(
        &SingleLabel::default(),
        Shape::new(N, C),
        Logits::F32(&x),
        ClassTargets::I64(&t),
        Upstream::Scalar(1.0),
    )
    .unwrap();
    for b in ["auto", "cpu", "wgpu", "cuda", "reference"] {
        let g = d.s(&format!("g_{b}.npy"));
        let o = asl(&[
            "eval",
            "--logits",
            &d.s("x32.npy"),
            "--targets",
            &d.s("yu8.npy"),
            "--backend",
            b,
            "--grad-out",
            &g,
            "--json",
        ]);
        if o.status.code() == Some(2) && stderr(&o).contains("not available") {
            eprintln!("skipping backend {b}: {}", stderr(&o).trim());
            continue;
        }
        let j = json_of(&ok(&o));
        let loss = j["loss"].as_f64().unwrap();
        assert!(
            (loss - r.loss[0]).abs() <= 1e-5 * r.loss[0],
            "{b}: {loss} vs {}",
            r.loss[0]
        );
        let (_, _, gv) = read_npy(Path::new(&g));
        close(
            &format!("{b} grad"),
            &gv,
            &r.grad,
            1e-6 * max_abs(&r.grad),
            1e-4,
        );
        let o = asl(&[
            "eval",
            "--logits",
            &d.s("x32.npy"),
            "--targets",
            &d.s("cls.npy"),
            "--backend",
            b,
            "--grad-out",
            &g,
            "--json",
        ]);
        let loss = json_of(&ok(&o))["loss"].as_f64().unwrap();
        assert!(
            (loss - rs.loss[0]).abs() <= 1e-5 * rs.loss[0],
            "{b}: {loss} vs {}",
            rs.loss[0]
        );
        let (_, _, gv) = read_npy(Path::new(&g));
        close(
            &format!("{b} sl grad"),
            &gv,
            &rs.grad,
            1e-6 * max_abs(&rs.grad),
            1e-4,
        );
    }
}

#[test]
fn eval_json_object_has_exactly_the_specified_keys() {
    let d = Dir::new();
    d.standard();
    let j = json_of(&ok(&asl(&[
        "eval",
        "--logits",
        &d.s("x32.npy"),
        "--targets",
        &d.s("yf32.npy"),
        "--json",
    ])));
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["backend", "elements", "loss", "loss_shape", "seconds"]
    );
    assert!(j["loss"].is_number());
    assert_eq!(j["loss_shape"], serde_json::json!([]));
    assert_eq!(j["elements"], serde_json::json!(N * C));
    assert!(j["seconds"].as_f64().unwrap() >= 0.0);
    assert!(j["backend"].is_string());

    // Reduction none: loss null, loss_shape (N, C); single-label none: (N,).
    let j = json_of(&ok(&asl(&[
        "eval",
        "--logits",
        &d.s("x32.npy"),
        "--targets",
        &d.s("yf32.npy"),
        "--reduction",
        "none",
        "--json",
    ])));
    assert!(j["loss"].is_null());
    assert_eq!(j["loss_shape"], serde_json::json!([N, C]));
    let j = json_of(&ok(&asl(&[
        "eval",
        "--logits",
        &d.s("x32.npy"),
        "--targets",
        &d.s("cls.npy"),
        "--reduction",
        "none",
        "--json",
    ])));
    assert!(j["loss"].is_null());
    assert_eq!(j["loss_shape"], serde_json::json!([N]));
}

#[test]
fn eval_multi_label_reductions_and_outputs_match_the_reference() {
    let d = Dir::new();
    d.standard();
    let y = targets_f32();
    for red in ["batchmean", "sum", "mean", "none"] {
        let cfg = MultiLabel {
            reduction: Reduction::parse(red).unwrap(),
            gamma_neg: 3.0,
            gamma_pos: 0.5,
            clip: 0.1,
            smoothing: 0.1,
            focal_grad: FocalGrad::Detached,
            ..MultiLabel::default()
        };
        let r = ml_ref(&cfg, MultiTargets::F32(&y), 0.5);
        let (g, l) = (d.s(&format!("g_{red}.npy")), d.s(&format!("l_{red}.npy")));
        ok(&asl(&[
            "eval",
            "--logits",
            &d.s("x32.npy"),
            "--targets",
            &d.s("yf32.npy"),
            "--backend",
            "cpu",
            "--reduction",
            red,
            "--gamma-neg",
            "3",
            "--gamma-pos",
            "0.5",
            "--clip",
            "0.1",
            "--smoothing",
            "0.1",
            "--focal-grad",
            "detached",
            "--upstream",
            "0.5",
            "--grad-out",
            &g,
            "--loss-out",
            &l,
        ]));
        let (gd, gs, gv) = read_npy(Path::new(&g));
        assert_eq!((gd.as_str(), gs), ("<f4", vec![N, C]));
        close(
            &format!("{red} grad"),
            &gv,
            &r.grad,
            1e-6 * max_abs(&r.grad),
            1e-4,
        );
        let (ld, ls, lv) = read_npy(Path::new(&l));
        assert_eq!(ld, "<f4");
        if red == "none" {
            assert_eq!(ls, vec![N, C]);
        } else {
            assert!(ls.is_empty(), "a reduced loss is a 0-d array, got {ls:?}");
        }
        close(&format!("{red} loss"), &lv, &r.loss, 1e-7, 1e-5);
    }
}

#[test]
fn eval_class_weight_and_pos_weight_files() {
    let d = Dir::new();
    d.standard();
    let w: Vec<f32> = (0..C).map(|c| 0.5 + c as f32 * 0.1).collect();
    let pw: Vec<f64> = (0..C).map(|c| 2.0 - c as f64 * 0.1).collect();
    write_npy(&d.p("w.npy"), "<f4", &[C], &f32_bytes(&w));
    write_npy(&d.p("pw.npy"), "<f8", &[C], &f64_bytes(&pw));
    let cfg = MultiLabel {
        class_weight: Some(w.clone()),
        pos_weight: Some(asymloss::PosWeight::PerClass(
            pw.iter().map(|&v| v as f32).collect(),
        )),
        ..MultiLabel::default()
    };
    let y = targets_f32();
    let want = ml_ref(&cfg, MultiTargets::F32(&y), 1.0).loss[0];
    let j = json_of(&ok(&asl(&[
        "eval",
        "--logits",
        &d.s("x32.npy"),
        "--targets",
        &d.s("yf32.npy"),
        "--class-weight",
        &d.s("w.npy"),
        "--pos-weight",
        &d.s("pw.npy"),
        "--json",
    ])));
    let got = j["loss"].as_f64().unwrap();
    assert!((got - want).abs() <= 1e-5 * want.abs(), "{got} vs {want}");
    // A scalar pos_weight.
    let cfg = MultiLabel {
        pos_weight: Some(asymloss::PosWeight::Scalar(3.0)),
        ..MultiLabel::default()
    };
    let want = ml_ref(&cfg, MultiTargets::F32(&y), 1.0).loss[0];
    let j = json_of(&ok(&asl(&[
        "eval",
        "--logits",
        &d.s("x32.npy"),
        "--targets",
        &d.s("yf32.npy"),
        "--pos-weight",
        "3",
        "--json",
    ])));
    let got = j["loss"].as_f64().unwrap();
    assert!((got - want).abs() <= 1e-5 * want.abs(), "{got} vs {want}");
}

#[test]
fn eval_f16_logits_write_an_f16_gradient() {
    let d = Dir::new();
    d.standard();
    let y = targets_f32();
    let r = ml_ref(&MultiLabel::default(), MultiTargets::F32(&y), 1.0);
    let g = d.s("g16.npy");
    let j = json_of(&ok(&asl(&[
        "eval",
        "--logits",
        &d.s("x16.npy"),
        "--targets",
        &d.s("yu8.npy"),
        "--backend",
        "cpu",
        "--grad-out",
        &g,
        "--json",
    ])));
    let got = j["loss"].as_f64().unwrap();
    assert!((got - r.loss[0]).abs() <= 1e-3 * r.loss[0].abs());
    let (descr, shape, gv) = read_npy(Path::new(&g));
    assert_eq!((descr.as_str(), shape), ("<f2", vec![N, C]));
    close("f16 grad", &gv, &r.grad, 1e-3 * max_abs(&r.grad), 1e-2);
}

#[test]
fn eval_f64_logits_run_the_float64_reference() {
    let d = Dir::new();
    d.standard();
    let y = targets_f32();
    let cfg = MultiLabel {
        reduction: Reduction::Sum,
        ..MultiLabel::default()
    };
    let r = ml_ref(&cfg, MultiTargets::F32(&y), 2.0);
    let g = d.s("g64.npy");
    let l = d.s("l64.npy");
    let j = json_of(&ok(&asl(&[
        "eval",
        "--logits",
        &d.s("x64.npy"),
        "--targets",
        &d.s("yf32.npy"),
        "--reduction",
        "sum",
        "--upstream",
        "2",
        "--grad-out",
        &g,
        "--loss-out",
        &l,
        "--json",
    ])));
    assert!(j["backend"].as_str().unwrap().contains("reference"));
    close(
        "f64 loss (json)",
        &[j["loss"].as_f64().unwrap()],
        &r.loss,
        0.0,
        1e-12,
    );
    let (descr, _, gv) = read_npy(Path::new(&g));
    assert_eq!(descr, "<f8");
    close("f64 grad", &gv, &r.grad, 0.0, 1e-12);
    let (descr, shape, lv) = read_npy(Path::new(&l));
    assert_eq!((descr.as_str(), shape.len()), ("<f8", 0));
    close("f64 loss", &lv, &r.loss, 0.0, 1e-12);
}

#[test]
fn eval_single_label_targets_reductions_ignore_index() {
    let d = Dir::new();
    d.standard();
    let x = logits();
    let t = classes();
    for (red, up) in [("mean", 1.0f32), ("sum", 0.25), ("none", 1.0)] {
        let cfg = SingleLabel {
            reduction: Reduction::parse(red).unwrap(),
            ignore_index: Some(3),
            ..SingleLabel::default()
        };
        let r = reference::single_label(
            &cfg,
            Shape::new(N, C),
            Logits::F32(&x),
            ClassTargets::I64(&t),
            Upstream::Scalar(up),
        )
        .unwrap();
        for cls in ["cls.npy", "cls32.npy"] {
            let (g, l) = (d.s("g.npy"), d.s("l.npy"));
            let ups = up.to_string();
            ok(&asl(&[
                "eval",
                "--logits",
                &d.s("x32.npy"),
                "--targets",
                &d.s(cls),
                "--loss",
                "single-label",
                "--reduction",
                red,
                "--ignore-index",
                "3",
                "--upstream",
                &ups,
                "--grad-out",
                &g,
                "--loss-out",
                &l,
            ]));
            let (_, _, gv) = read_npy(Path::new(&g));
            close(
                &format!("sl {red} grad"),
                &gv,
                &r.grad,
                1e-6 * max_abs(&r.grad),
                1e-4,
            );
            let (_, ls, lv) = read_npy(Path::new(&l));
            assert_eq!(ls, if red == "none" { vec![N] } else { vec![] });
            close(&format!("sl {red} loss"), &lv, &r.loss, 1e-7, 1e-5);
        }
    }
}

#[test]
fn eval_upstream_array_with_reduction_none() {
    let d = Dir::new();
    d.standard();
    let up: Vec<f32> = (0..N * C).map(|i| (i % 5) as f32 - 2.0).collect();
    write_npy(&d.p("up.npy"), "<f4", &[N, C], &f32_bytes(&up));
    let cfg = MultiLabel {
        reduction: Reduction::None,
        ..MultiLabel::default()
    };
    let x = logits();
    let y = targets_f32();
    let r = reference::multi_label(
        &cfg,
        Shape::new(N, C),
        Logits::F32(&x),
        MultiTargets::F32(&y),
        Upstream::Array(&up),
    )
    .unwrap();
    let g = d.s("g.npy");
    ok(&asl(&[
        "eval",
        "--logits",
        &d.s("x32.npy"),
        "--targets",
        &d.s("yf32.npy"),
        "--reduction",
        "none",
        "--upstream",
        &d.s("up.npy"),
        "--grad-out",
        &g,
    ]));
    let (_, _, gv) = read_npy(Path::new(&g));
    close(
        "upstream-array grad",
        &gv,
        &r.grad,
        1e-6 * max_abs(&r.grad),
        1e-4,
    );
}

#[test]
fn eval_warns_about_non_finite_logits() {
    let d = Dir::new();
    d.standard();
    let mut x = logits();
    x[0] = f32::NAN;
    x[1] = f32::INFINITY;
    x[2] = f32::NEG_INFINITY;
    write_npy(&d.p("xn.npy"), "<f4", &[N, C], &f32_bytes(&x));
    let o = asl(&[
        "eval",
        "--logits",
        &d.s("xn.npy"),
        "--targets",
        &d.s("yf32.npy"),
        "--json",
    ]);
    ok(&o);
    let err = stderr(&o);
    assert!(err.contains("3 of 66 logits are not finite"), "{err}");
    // A NaN loss is null in JSON (JSON has no NaN).
    assert!(json_of(&stdout(&o))["loss"].is_null());
}

// ---------------------------------------------------------------------------------------------
// errors

#[test]
fn errors_exit_2_with_one_clear_line() {
    let d = Dir::new();
    d.standard();
    let x = d.s("x32.npy");
    let y = d.s("yf32.npy");

    // Missing file.
    fails_with(
        &asl(&["eval", "--logits", &d.s("nope.npy"), "--targets", &y]),
        &["cannot read", "nope.npy"],
    );

    // Truncated data.
    let full = std::fs::read(d.p("x32.npy")).unwrap();
    std::fs::write(d.p("trunc.npy"), &full[..full.len() - 10]).unwrap();
    fails_with(
        &asl(&["eval", "--logits", &d.s("trunc.npy"), "--targets", &y]),
        &["truncated"],
    );
    // Truncated inside the header.
    std::fs::write(d.p("trunc_h.npy"), &full[..20]).unwrap();
    fails_with(
        &asl(&["eval", "--logits", &d.s("trunc_h.npy"), "--targets", &y]),
        &["header"],
    );

    // Bad magic.
    std::fs::write(d.p("magic.npy"), b"PK\x03\x04 this is a zip, not an npy").unwrap();
    fails_with(
        &asl(&["eval", "--logits", &d.s("magic.npy"), "--targets", &y]),
        &["not a .npy"],
    );

    // Fortran order.
    let fx = npy_bytes("<f4", &[N, C], true, &f32_bytes(&logits()));
    std::fs::write(d.p("fortran.npy"), fx).unwrap();
    fails_with(
        &asl(&["eval", "--logits", &d.s("fortran.npy"), "--targets", &y]),
        &["Fortran"],
    );

    // Wrong shapes: 1-D logits; targets of another shape; class weight of the wrong length.
    write_npy(&d.p("x1d.npy"), "<f4", &[N * C], &f32_bytes(&logits()));
    fails_with(
        &asl(&["eval", "--logits", &d.s("x1d.npy"), "--targets", &y]),
        &["2-D"],
    );
    write_npy(&d.p("y35.npy"), "<f4", &[3, 5], &f32_bytes(&[0.0; 15]));
    fails_with(
        &asl(&["eval", "--logits", &x, "--targets", &d.s("y35.npy")]),
        &["shape"],
    );
    fails_with(
        &asl(&[
            "eval",
            "--logits",
            &x,
            "--targets",
            &d.s("y35.npy"),
            "--loss",
            "multi-label",
        ]),
        &["shape", "(6, 11)"],
    );
    write_npy(&d.p("w3.npy"), "<f4", &[3], &f32_bytes(&[1.0; 3]));
    fails_with(
        &asl(&[
            "eval",
            "--logits",
            &x,
            "--targets",
            &y,
            "--class-weight",
            &d.s("w3.npy"),
        ]),
        &["(11,)"],
    );

    // Out-of-range class.
    write_npy(
        &d.p("bad_cls.npy"),
        "<i8",
        &[N],
        &i64_bytes(&[0, 1, 2, 11, 0, 0]),
    );
    fails_with(
        &asl(&["eval", "--logits", &x, "--targets", &d.s("bad_cls.npy")]),
        &["row 3", "11"],
    );

    // Invalid multi-label target value (first bad index named).
    let mut yb = targets_f32();
    yb[15] = 2.0;
    write_npy(&d.p("ybad.npy"), "<f4", &[N, C], &f32_bytes(&yb));
    fails_with(
        &asl(&["eval", "--logits", &x, "--targets", &d.s("ybad.npy")]),
        &["element 15"],
    );

    // Float class indices, a bad parameter, a flag for the other loss.
    write_npy(&d.p("fcls.npy"), "<f4", &[N], &f32_bytes(&[0.0; N]));
    fails_with(
        &asl(&["eval", "--logits", &x, "--targets", &d.s("fcls.npy")]),
        &["integer"],
    );
    fails_with(
        &asl(&["eval", "--logits", &x, "--targets", &y, "--gamma-neg", "-1"]),
        &["gamma_neg"],
    );
    fails_with(
        &asl(&[
            "eval",
            "--logits",
            &x,
            "--targets",
            &y,
            "--ignore-index",
            "0",
        ]),
        &["single-label"],
    );

    // Unwritable output directory; nothing is written.
    let g = d.p("no/such/dir/g.npy");
    fails_with(
        &asl(&[
            "eval",
            "--logits",
            &x,
            "--targets",
            &y,
            "--grad-out",
            &g.to_string_lossy(),
        ]),
        &["cannot write"],
    );

    // Usage errors from clap also exit 2.
    let o = asl(&["eval", "--logits", &x]);
    assert_eq!(o.status.code(), Some(2));
    let o = asl(&[
        "eval",
        "--logits",
        &x,
        "--targets",
        &y,
        "--reduction",
        "avg",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_failed_eval_leaves_no_output_behind() {
    let d = Dir::new();
    d.standard();
    let g = d.p("g.npy");
    let l = d.p("l.npy");
    write_npy(
        &d.p("bad_cls.npy"),
        "<i8",
        &[N],
        &i64_bytes(&[0, 1, 2, 99, 0, 0]),
    );
    let o = asl(&[
        "eval",
        "--logits",
        &d.s("x32.npy"),
        "--targets",
        &d.s("bad_cls.npy"),
        "--grad-out",
        &g.to_string_lossy(),
        "--loss-out",
        &l.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!g.exists() && !l.exists());
    // No temporary files either.
    let left: Vec<_> = std::fs::read_dir(&d.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

// ---------------------------------------------------------------------------------------------
// help, bench

#[test]
fn help_for_every_command() {
    for args in [
        &["--help"][..],
        &["demo", "--help"],
        &["eval", "--help"],
        &["bench", "--help"],
    ] {
        let out = ok(&asl(args));
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
    let eval_help = ok(&asl(&["eval", "--help"]));
    for flag in [
        "--logits",
        "--targets",
        "--loss",
        "--backend",
        "--gamma-neg",
        "--gamma-pos",
        "--clip",
        "--eps",
        "--smoothing",
        "--focal-grad",
        "--reduction",
        "--class-weight",
        "--pos-weight",
        "--ignore-index",
        "--upstream",
        "--grad-out",
        "--loss-out",
        "--json",
    ] {
        assert!(eval_help.contains(flag), "eval --help lacks {flag}");
    }
}

#[test]
fn bench_json_reports_every_shape() {
    let o = asl(&[
        "bench",
        "--backend",
        "cpu",
        "--shape",
        "32x10",
        "--shape",
        "8x1000",
        "--min-time",
        "0",
        "--min-runs",
        "3",
        "--json",
    ]);
    let j = json_of(&ok(&o));
    assert!(
        stderr(&o).is_empty(),
        "no progress bar with --json: {}",
        stderr(&o)
    );
    let r = j["results"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0]["rows"].as_u64(), r[0]["cols"].as_u64()),
        (Some(32), Some(10))
    );
    // f32 logits + f32 targets + f32 gradient.
    assert_eq!(r[0]["bytes"].as_u64(), Some(32 * 10 * 12));
    for x in r {
        for k in [
            "median_s",
            "elements_per_s",
            "gb_per_s",
            "copy_gb_per_s",
            "percent_of_copy",
        ] {
            assert!(x[k].as_f64().unwrap() > 0.0, "{k}: {x}");
        }
    }
    let o = asl(&[
        "bench",
        "--backend",
        "cpu",
        "--loss",
        "single-label",
        "--shape",
        "16x20",
        "--pass",
        "forward",
        "--dtype",
        "f16",
        "--min-time",
        "0",
        "--min-runs",
        "2",
    ]);
    let out = ok(&o);
    assert!(out.contains("16x20") && out.contains("% of copy"), "{out}");
    assert_eq!(asl(&["bench", "--shape", "0x5"]).status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// More bad input (the README's table of bad inputs names these tests).

fn eval_with(d: &Dir, x: &str, y: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "eval".to_string(),
        "--logits".into(),
        d.s(x),
        "--targets".into(),
        d.s(y),
        "--backend".into(),
        "cpu".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    asl(&refs)
}

/// No temporary output file is left in `dir`.
fn no_temporaries(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn eval_refuses_wrong_dtypes_and_corrupt_headers() {
    let d = Dir::new();
    d.standard();
    let bytes = |descr: &str, shape: &[usize], data: &[u8]| npy_bytes(descr, shape, false, data);
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        // Integer, bool, complex and string logits.
        (
            "xi4.npy",
            bytes("<i4", &[N, C], &[0; 4 * N * C]),
            &["float32, float16 or float64", "<i4"],
        ),
        (
            "xb1.npy",
            bytes("|b1", &[N, C], &[0; N * C]),
            &["float32, float16 or float64"],
        ),
        (
            "xc8.npy",
            bytes("<c8", &[N, C], &[0; 8 * N * C]),
            &["unsupported dtype <c8"],
        ),
        (
            "xu3.npy",
            bytes("<U3", &[N, C], &[0; 12 * N * C]),
            &["unsupported dtype <U3"],
        ),
        // A header that is not a dict, a missing key, an unknown format version, no bytes.
        (
            "xh1.npy",
            {
                let mut b = bytes("<f4", &[N, C], &f32_bytes(&logits()));
                b[10] = b'[';
                b
            },
            &["header"],
        ),
        (
            "xh2.npy",
            {
                let mut b = bytes("<f4", &[N, C], &f32_bytes(&logits()));
                let at = b.windows(7).position(|w| w == b"'shape'").unwrap();
                b[at + 1] = b'S';
                b
            },
            &["header", "'shape'"],
        ),
        (
            "xh3.npy",
            {
                let mut b = bytes("<f4", &[N, C], &f32_bytes(&logits()));
                b[6] = 9;
                b
            },
            &["header", "version 9.0"],
        ),
        ("empty.npy", Vec::new(), &["not a .npy"]),
    ];
    for (name, content, says) in cases {
        std::fs::write(d.p(name), content).unwrap();
        fails_with(&eval_with(&d, name, "yf32.npy", &[]), says);
    }
    // A directory where a file should be; a missing targets file.
    std::fs::create_dir(d.p("adir.npy")).unwrap();
    fails_with(
        &eval_with(&d, "adir.npy", "yf32.npy", &[]),
        &["cannot read", "directory"],
    );
    fails_with(
        &eval_with(&d, "x32.npy", "nope.npy", &[]),
        &["cannot read", "nope.npy"],
    );
    // Big-endian logits are fine: the same loss as little-endian.
    let be: Vec<u8> = logits().iter().flat_map(|v| v.to_be_bytes()).collect();
    std::fs::write(d.p("xbe.npy"), bytes(">f4", &[N, C], &be)).unwrap();
    let a = json_of(&ok(&eval_with(&d, "xbe.npy", "yf32.npy", &["--json"])));
    let b = json_of(&ok(&eval_with(&d, "x32.npy", "yf32.npy", &["--json"])));
    assert_eq!(a["loss"], b["loss"]);
}

#[test]
fn eval_refuses_bad_targets_parameters_and_shapes() {
    let d = Dir::new();
    d.standard();
    // u8 targets outside {0, 1, 255}; NaN float targets; a bool byte that is not 0 or 1.
    let mut yu = vec![0u8; N * C];
    yu[40] = 7;
    write_npy(&d.p("ybad8.npy"), "|u1", &[N, C], &yu);
    fails_with(
        &eval_with(&d, "x32.npy", "ybad8.npy", &[]),
        &["element 40", "row 3", ": 7"],
    );
    let mut yf = targets_f32();
    yf[12] = f32::NAN;
    write_npy(&d.p("ynan.npy"), "<f4", &[N, C], &f32_bytes(&yf));
    fails_with(
        &eval_with(&d, "x32.npy", "ynan.npy", &[]),
        &["element 12", "NaN"],
    );
    let mut yb = vec![0u8; N * C];
    yb[5] = 2;
    write_npy(&d.p("ybadb.npy"), "|b1", &[N, C], &yb);
    fails_with(
        &eval_with(&d, "x32.npy", "ybadb.npy", &[]),
        &["bool element 5"],
    );
    // Class indices out of range for the u32-sized types too.
    let c: Vec<u8> = [0u32, 1, 2, 3, u32::MAX, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    write_npy(&d.p("clsu.npy"), "<u4", &[N], &c);
    fails_with(
        &eval_with(&d, "x32.npy", "clsu.npy", &[]),
        &["row 4", "4294967295"],
    );
    // Parameters out of range.
    for (flag, value, name) in [
        ("--clip", "2", "clip"),
        ("--eps", "-1", "eps"),
        ("--smoothing", "1", "smoothing"),
        ("--gamma-pos", "nan", "gamma_pos"),
        ("--pos-weight", "inf", "pos_weight"),
        ("--upstream", "nan", "--upstream must be finite"),
    ] {
        fails_with(
            &eval_with(&d, "x32.npy", "yf32.npy", &[flag, value]),
            &[name],
        );
    }
    fails_with(
        &eval_with(
            &d,
            "x32.npy",
            "cls.npy",
            &["--ignore-index", "1099511627776"],
        ),
        &["ignore_index"],
    );
    // Zero rows: loss 0 (not NaN); zero classes: 0 for multi-label, refused for single-label.
    write_npy(&d.p("x0.npy"), "<f4", &[0, C], &[]);
    write_npy(&d.p("y0.npy"), "<f4", &[0, C], &[]);
    let j = json_of(&ok(&eval_with(&d, "x0.npy", "y0.npy", &["--json"])));
    assert_eq!(j["loss"].as_f64(), Some(0.0));
    write_npy(&d.p("xc0.npy"), "<f4", &[N, 0], &[]);
    write_npy(&d.p("yc0.npy"), "<f4", &[N, 0], &[]);
    let j = json_of(&ok(&eval_with(&d, "xc0.npy", "yc0.npy", &["--json"])));
    assert_eq!(j["loss"].as_f64(), Some(0.0));
    fails_with(
        &eval_with(&d, "xc0.npy", "cls.npy", &["--loss", "single-label"]),
        &["at least one class"],
    );
    // 0-d and 3-D logits.
    write_npy(&d.p("x3d.npy"), "<f4", &[1, N, C], &f32_bytes(&logits()));
    fails_with(
        &eval_with(&d, "x3d.npy", "yf32.npy", &[]),
        &["2-D", "(1, 6, 11)"],
    );
}

/// Outputs that cannot be written: the error names the path, exit status 2, and no file (nor
/// temporary file) appears: a path under a regular file, a missing folder, a directory as the
/// output, and a read-only folder. CI runs as root, which ignores permission bits, so there
/// the read-only folder is made immutable with `chattr +i` (binding root too) when the file
/// system supports it, and the case is skipped with a note otherwise.
#[test]
fn eval_unwritable_outputs() {
    let d = Dir::new();
    d.standard();
    std::fs::write(d.p("file.txt"), "a regular file").unwrap();
    let dir = d.path.to_string_lossy().into_owned();
    for (flag, path, says) in [
        (
            "--grad-out",
            d.s("file.txt/g.npy"),
            ["cannot write", "Not a directory"],
        ),
        (
            "--loss-out",
            d.s("missing/dir/l.npy"),
            ["cannot write", "No such file"],
        ),
        ("--grad-out", dir, ["output path", "is a directory"]),
    ] {
        fails_with(&eval_with(&d, "x32.npy", "yf32.npy", &[flag, &path]), &says);
    }
    fails_with(
        &eval_with(
            &d,
            "x32.npy",
            "yf32.npy",
            &["--grad-out", &d.s("g.npy"), "--loss-out", &d.s("g.npy")],
        ),
        &["both name"],
    );
    no_temporaries(&d.path);
    assert!(!d.p("g.npy").exists());

    // A read-only folder.
    let ro = d.p("ro");
    std::fs::create_dir(&ro).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), b"x").is_ok() {
            // Root: permission bits do not bind; the immutable attribute does, where the file
            // system has it (ext4, xfs, btrfs; not tmpfs or overlayfs).
            std::fs::remove_file(ro.join("probe")).unwrap();
            let chattr = |flag: &str| {
                Command::new("chattr")
                    .arg(flag)
                    .arg(&ro)
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if chattr("+i") {
                struct Undo<F: Fn()>(F);
                impl<F: Fn()> Drop for Undo<F> {
                    fn drop(&mut self) {
                        (self.0)();
                    }
                }
                let _undo = Undo(|| {
                    chattr("-i");
                });
                let o = eval_with(&d, "x32.npy", "yf32.npy", &["--grad-out", &d.s("ro/g.npy")]);
                fails_with(&o, &["cannot write", "ro/g.npy", "not permitted"]);
                assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
            } else {
                eprintln!(
                    "note: root, and no immutable attribute here (chattr +i failed); the \
                     read-only folder case rests on the path under a regular file"
                );
            }
        } else {
            let o = eval_with(&d, "x32.npy", "yf32.npy", &["--grad-out", &d.s("ro/g.npy")]);
            fails_with(&o, &["cannot write", "ro/g.npy", "Permission denied"]);
            assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A write that fails half way (the file-size limit, RLIMIT_FSIZE, set by the shell with
/// SIGXFSZ ignored so that write() returns EFBIG; this binds root too): the error names the
/// file, the destination keeps its old content, and no temporary file is left.
#[cfg(unix)]
#[test]
fn eval_output_failing_mid_write_leaves_the_old_file() {
    let d = Dir::new();
    let (rows, cols) = (64, 100);
    let x: Vec<f32> = (0..rows * cols).map(|i| (i % 13) as f32 - 6.0).collect();
    let y: Vec<f32> = (0..rows * cols)
        .map(|i| (i % 5 == 0) as u8 as f32)
        .collect();
    write_npy(&d.p("x.npy"), "<f4", &[rows, cols], &f32_bytes(&x));
    write_npy(&d.p("y.npy"), "<f4", &[rows, cols], &f32_bytes(&y));
    std::fs::write(d.p("g.npy"), b"the previous gradient").unwrap();
    // 8 blocks: 4 KiB (dash) or 8 KiB (bash), either way less than the 25.7 KB gradient.
    let o = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 8 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_asl"))
        .args(["eval", "--backend", "cpu", "--logits"])
        .arg(d.p("x.npy"))
        .arg("--targets")
        .arg(d.p("y.npy"))
        .arg("--grad-out")
        .arg(d.p("g.npy"))
        .env_remove("RUST_LOG")
        .output()
        .expect("sh runs");
    fails_with(&o, &["cannot write", "g.npy", "too large"]);
    assert_eq!(
        std::fs::read(d.p("g.npy")).unwrap(),
        b"the previous gradient"
    );
    no_temporaries(&d.path);
    // Without the limit the same command writes the whole file.
    ok(&eval_with(
        &d,
        "x.npy",
        "y.npy",
        &["--grad-out", &d.s("g.npy")],
    ));
    assert_eq!(read_npy(&d.p("g.npy")).1, vec![rows, cols]);
}

#[test]
fn eval_warns_about_non_finite_half_and_double_logits() {
    let d = Dir::new();
    d.standard();
    let mut x = logits();
    x[7] = f32::NAN;
    x[8] = f32::NEG_INFINITY;
    let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    write_npy(&d.p("xh.npy"), "<f2", &[N, C], &f16_bytes(&xh));
    let o = eval_with(&d, "xh.npy", "yf32.npy", &["--reduction", "none", "--json"]);
    ok(&o);
    assert!(
        stderr(&o).contains("2 of 66 logits are not finite (1 NaN, 0 +inf, 1 -inf)"),
        "{}",
        stderr(&o)
    );
    let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    write_npy(&d.p("xd.npy"), "<f8", &[N, C], &f64_bytes(&xd));
    let o = eval_with(&d, "xd.npy", "yf32.npy", &["--json"]);
    assert!(
        stderr(&o).contains("2 of 66 logits are not finite"),
        "{}",
        stderr(&o)
    );
    // Finite logits: no warning at all.
    let o = eval_with(&d, "x32.npy", "yf32.npy", &["--json"]);
    assert!(!stderr(&o).contains("not finite"), "{}", stderr(&o));
}
