//! `asl train`: the sparse-data parser, mean average precision against hand-computed values
//! (ties included) and against the reference model of `../shared/data/debtags/` (0.503), a short
//! training run on a generated file (the loss falls, the run repeats bitwise, the thread count
//! does not matter), and the command's errors.
mod common;

#[allow(dead_code)]
#[path = "../src/bin/asl/train/svm.rs"]
mod svm;

#[allow(dead_code)]
#[path = "../src/bin/asl/train/metrics.rs"]
mod metrics;

#[allow(dead_code)]
#[path = "../src/bin/asl/train/model.rs"]
mod model;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use asymloss::{reference, Logits, MultiLabel, MultiTargets, Shape, Upstream};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The parser.

#[test]
fn parses_labels_features_and_empty_label_sets() {
    let text = b"2,7,10 3:0.5 9:1\n\
                 \x20 4:0.25 1:2\n\
                 5:1e-1\n\
                 \x20\n\
                 3,3,1\n\
                 0 2:-1.5 2:0.5\r\n";
    let ds = svm::parse(text).unwrap();
    assert_eq!(ds.rows(), 6);
    assert_eq!(ds.header, None);
    assert_eq!(ds.labels_of(0), [2, 7, 10]);
    assert_eq!(ds.features_of(0), (&[3u32, 9][..], &[0.5f32, 1.0][..]));
    // A leading space: no labels; features in file order.
    assert_eq!(ds.labels_of(1), [0u32; 0]);
    assert_eq!(ds.features_of(1), (&[4u32, 1][..], &[0.25f32, 2.0][..]));
    // Features alone: no labels.
    assert_eq!(ds.labels_of(2), [0u32; 0]);
    assert_eq!(ds.features_of(2), (&[5u32][..], &[0.1f32][..]));
    // Whitespace alone: neither.
    assert_eq!(ds.labels_of(3), [0u32; 0]);
    assert_eq!(ds.features_of(3).0.len(), 0);
    // Labels alone; a repeated label counts once (sorted).
    assert_eq!(ds.labels_of(4), [1, 3]);
    assert_eq!(ds.features_of(4).0.len(), 0);
    // CRLF; a repeated feature is kept (the model adds them).
    assert_eq!(ds.labels_of(5), [0]);
    assert_eq!(ds.features_of(5), (&[2u32, 2][..], &[-1.5f32, 0.5][..]));
    assert_eq!(ds.max_label(), Some(10));
    assert_eq!(ds.line_of(5), 6);
    // No final newline, and an empty file.
    assert_eq!(svm::parse(b"1 0:1").unwrap().rows(), 1);
    assert_eq!(svm::parse(b"").unwrap().rows(), 0);
}

#[test]
fn parses_the_optional_header() {
    let ds = svm::parse(b"2 10 4\n3 9:1\n0,1 0:1\n").unwrap();
    assert_eq!(
        ds.header,
        Some(svm::Header {
            points: 2,
            features: 10,
            labels: 4
        })
    );
    assert_eq!(ds.rows(), 2);
    assert_eq!(ds.line_of(0), 2);
    let e = svm::parse(b"2 10 4\n3 10:1\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.msg.contains("feature index 10"), "{e}");
    let e = svm::parse(b"2 10 4\n4 1:1\n").unwrap_err();
    assert!(e.to_string().starts_with("line 2: label 4"), "{e}");
    let e = svm::parse(b"3 10 4\n1 1:1\n").unwrap_err();
    assert!(
        e.msg.contains("declares 3 samples but the file has 1"),
        "{e}"
    );
}

#[test]
fn refuses_malformed_lines_with_their_number() {
    let cases: &[(&[u8], &str)] = &[
        (b"1,,2 3:1", "bad label \"\""),
        (b"1, 3:1", "bad label \"\""),
        (b"-1 3:1", "bad label \"-1\""),
        (b"x 3:1", "bad label \"x\""),
        (b"1 3", "bad feature \"3\""),
        (b"1 3:", "must be a finite number"),
        (b"1 :1", "index must be a 0-based integer"),
        (b"1 -3:1", "index must be a 0-based integer"),
        (b"1 3:nan", "must be a finite number"),
        (b"1 3:inf", "must be a finite number"),
        (b"1 3:1:2", "must be a finite number"),
        (b"1 99999999999:1", "index must be a 0-based integer"),
        (b"", "empty line"),
        (b"1 3:\xff", "not UTF-8"),
    ];
    for (bad, what) in cases {
        let mut text = b"0,1 1:1\n 2:0.5\n".to_vec();
        text.extend_from_slice(bad);
        text.extend_from_slice(b"\n4 5:1\n");
        let e = svm::parse(&text).unwrap_err();
        assert_eq!(e.line, 3, "{:?}: {e}", String::from_utf8_lossy(bad));
        assert!(
            e.to_string().starts_with("line 3: ") && e.msg.contains(what),
            "{:?}: {e}",
            String::from_utf8_lossy(bad)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Mean average precision.

fn ap(scores: &[f32], pos: &[u8]) -> Option<f64> {
    let p: Vec<bool> = pos.iter().map(|&v| v == 1).collect();
    metrics::average_precision(scores, &p)
}

#[test]
fn average_precision_by_hand() {
    let close = |a: Option<f64>, b: f64| assert!((a.unwrap() - b).abs() < 1e-12, "{a:?} {b}");
    // Positives at ranks 1 and 3: (1/1 + 2/3) / 2.
    close(
        ap(&[0.9, 0.8, 0.7, 0.6], &[1, 0, 1, 0]),
        (1.0 + 2.0 / 3.0) / 2.0,
    );
    // Order of the input does not matter, only the ranking.
    close(
        ap(&[0.7, 0.6, 0.9, 0.8], &[1, 0, 1, 0]),
        (1.0 + 2.0 / 3.0) / 2.0,
    );
    // Positives at ranks 2, 4, 5 of 5: (1/2 + 2/4 + 3/5) / 3.
    close(
        ap(&[5.0, 4.0, 3.0, 2.0, 1.0], &[0, 1, 0, 1, 1]),
        (0.5 + 0.5 + 0.6) / 3.0,
    );
    // A tie is one threshold: {0.9} then {0.5, 0.5}: 1/2 * 1/1 + 1/2 * 2/3, whichever of the
    // tied rows is listed first.
    close(ap(&[0.9, 0.5, 0.5, 0.1], &[1, 1, 0, 0]), 0.5 + 1.0 / 3.0);
    close(ap(&[0.9, 0.5, 0.5, 0.1], &[1, 0, 1, 0]), 0.5 + 1.0 / 3.0);
    // Everything tied: the precision of the whole set, the prevalence.
    close(ap(&[0.0, -0.0, 0.0, 0.0], &[1, 0, 0, 0]), 0.25);
    // NaN ranks last (and ties with NaN).
    close(
        ap(&[f32::NAN, 1.0, 0.0], &[1, 0, 1]),
        (1.0 / 2.0 + 2.0 / 3.0) / 2.0,
    );
    // No positive: no AP.
    assert_eq!(ap(&[0.3, 0.2], &[0, 0]), None);
    // Mean over labels with a positive: rows x 3 labels, the middle one never positive.
    let scores = [0.9, 0.1, 0.2, 0.8, 0.2, 0.7, 0.7, 0.3, 0.1f32];
    let targets = [1, 0, 0, 0, 0, 1, 1, 0, 0u8];
    let m = metrics::mean_average_precision(&scores, &targets, 3, 3);
    assert_eq!(m.scored, 2);
    assert_eq!(m.per_label[1], None);
    // label 0: scores 0.9 (pos), 0.8, 0.7 (pos) -> (1 + 2/3) / 2;
    // label 2: scores 0.2, 0.7 (pos), 0.1 -> 1.
    let want0 = (1.0 + 2.0 / 3.0) / 2.0;
    assert!((m.per_label[0].unwrap() - want0).abs() < 1e-12);
    assert!((m.per_label[2].unwrap() - 1.0).abs() < 1e-12);
    assert!((m.map - (want0 + 1.0) / 2.0).abs() < 1e-12);
    let none = metrics::mean_average_precision(&[0.5], &[0], 1, 1);
    assert!(none.map.is_nan() && none.scored == 0);
}

#[test]
fn debtags_reference_model_map_is_0_503() {
    let data = common::shared_dir().join("data").join("debtags");
    let read = |name: &str| std::fs::read(data.join(name)).expect("the debtags data");
    let xb = read("test_logits.npy");
    let yb = read("test_targets.npy");
    let xn = npyz::NpyFile::new(&xb[..]).unwrap();
    let shape = xn.shape().to_vec();
    let x: Vec<f32> = xn.into_vec().unwrap();
    let y: Vec<u8> = npyz::NpyFile::new(&yb[..]).unwrap().into_vec().unwrap();
    let (rows, cols) = (shape[0] as usize, shape[1] as usize);
    let m = metrics::mean_average_precision(&x, &y, rows, cols);
    println!(
        "reference model: test mAP {:.6} over {} labels",
        m.map, m.scored
    );
    // The data's README: "Its mean average precision over labels is 0.503".
    assert!((m.map - 0.503).abs() < 5e-4, "mAP {}", m.map);
    assert_eq!(m.scored, m.per_label.iter().flatten().count());
}

// ---------------------------------------------------------------------------------------------
// The linear layer.

/// 5 rows over 5 features (feature 3 only in row 1; row 3 has none; row 2 repeats feature 1).
fn sparse() -> (model::SparseRows, Vec<Vec<(u32, f32)>>) {
    let rows: Vec<Vec<(u32, f32)>> = vec![
        vec![(0, 0.5), (2, -1.0)],
        vec![(3, 2.0), (1, 0.25)],
        vec![(1, 1.0), (4, 0.75), (1, -0.5)],
        vec![],
        vec![(2, 0.3), (0, 1.5), (4, -2.0)],
    ];
    let mut x = model::SparseRows {
        ptr: vec![0],
        ..Default::default()
    };
    for r in &rows {
        for &(j, v) in r {
            x.idx.push(j);
            x.val.push(v);
        }
        x.ptr.push(x.idx.len());
    }
    (x, rows)
}

#[test]
fn linear_layer_forward_and_gradient() {
    let (x, dense) = sparse();
    let (f, c) = (5, 3);
    let batch = [4usize, 0, 2, 3];
    let mut m = model::Linear::new(f, c, model::OptimKind::Sgd, 1.0);
    for (i, w) in m.w.iter_mut().enumerate() {
        *w = ((i * 7 % 11) as f32 - 5.0) / 4.0;
    }
    m.b = vec![0.5, -1.0, 0.25];
    let targets: Vec<u8> = vec![1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0];
    let cfg = MultiLabel::default();
    let logits_at = |w: &[f32], b: &[f32]| -> Vec<f32> {
        let mut z = Vec::new();
        for &r in &batch {
            for k in 0..c {
                let mut s = b[k] as f64;
                for &(j, v) in &dense[r] {
                    s += v as f64 * w[j as usize * c + k] as f64;
                }
                z.push(s as f32);
            }
        }
        z
    };
    let loss_grad = |z: &[f32]| {
        reference::multi_label(
            &cfg,
            Shape::new(batch.len(), c),
            Logits::F32(z),
            MultiTargets::U8(&targets),
            Upstream::Scalar(1.0),
        )
        .unwrap()
    };

    // Forward against a dense f64 product.
    let mut z = vec![f32::NAN; batch.len() * c];
    m.forward(&x, &batch, &mut z);
    let want = logits_at(&m.w, &m.b);
    for (a, b) in z.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{z:?} {want:?}");
    }

    // One SGD step with lr 1 moves the parameters by minus the gradient.
    let g: Vec<f32> = loss_grad(&z).grad.iter().map(|&v| v as f32).collect();
    let (w0, b0) = (m.w.clone(), m.b.clone());
    m.backward_step(&x, &batch, &g);
    for j in 0..f {
        for k in 0..c {
            // dL/dW[j,k] = sum_r x_rj G[r,k]
            let mut want = 0.0f64;
            for (i, &r) in batch.iter().enumerate() {
                for &(jj, v) in &dense[r] {
                    if jj as usize == j {
                        want += v as f64 * g[i * c + k] as f64;
                    }
                }
            }
            let got = (w0[j * c + k] - m.w[j * c + k]) as f64;
            assert!((got - want).abs() < 1e-6, "W[{j},{k}]: {got} vs {want}");
            // And against central differences of the f64 loss.
            let h = 1e-2f32;
            let mut wp = w0.clone();
            wp[j * c + k] += h;
            let mut wm = w0.clone();
            wm[j * c + k] -= h;
            let fd = (loss_grad(&logits_at(&wp, &b0)).loss[0]
                - loss_grad(&logits_at(&wm, &b0)).loss[0])
                / (2.0 * h as f64);
            assert!(
                (fd - want).abs() < 2e-3 * (1.0 + want.abs()),
                "W[{j},{k}]: fd {fd}"
            );
        }
    }
    // Feature 3 is not in the batch: untouched.
    assert_eq!(&m.w[3 * c..4 * c], &w0[3 * c..4 * c]);
    for k in 0..c {
        let want: f64 = (0..batch.len()).map(|i| g[i * c + k] as f64).sum();
        assert!(((b0[k] - m.b[k]) as f64 - want).abs() < 1e-6);
    }

    // Adam's first step: m_hat = g, v_hat = g^2, so each touched weight moves by lr * sign(g);
    // a feature outside the batch is not touched (lazy rows).
    let mut a = model::Linear::new(f, c, model::OptimKind::Adam, 0.1);
    a.w.copy_from_slice(&w0);
    a.b.copy_from_slice(&b0);
    a.backward_step(&x, &batch, &g);
    for j in [0usize, 1, 2, 4] {
        for k in 0..c {
            let d = w0[j * c + k] - a.w[j * c + k];
            let gw = w0[j * c + k] - m.w[j * c + k];
            assert!((d - 0.1 * gw.signum()).abs() < 1e-5, "Adam W[{j},{k}]: {d}");
        }
    }
    assert_eq!(&a.w[3 * c..4 * c], &w0[3 * c..4 * c]);
    assert_eq!(a.steps(), 1);
}

// ---------------------------------------------------------------------------------------------
// The command.

fn asl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asl"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the asl binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status 2 and one error line containing every fragment of `what`.
fn fails_with(o: &Output, what: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "expected exit 2: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("asl: error:") || l.starts_with("error:"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    for w in what {
        assert!(
            lines[0].contains(w),
            "{:?} does not mention {w:?}",
            lines[0]
        );
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// A small learnable problem: 6 labels, each with 5 features of its own, plus noise features.
fn synthetic(rows: usize, seed: u64) -> String {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |n: u64| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % n
    };
    let mut out = String::new();
    for _ in 0..rows {
        let labels: Vec<u64> = (0..6).filter(|_| next(4) == 0).collect();
        let mut feats: Vec<(u64, f64)> = labels.iter().map(|&l| (l * 5 + next(5), 1.0)).collect();
        for _ in 0..3 {
            feats.push((30 + next(40), 0.5));
        }
        let lab: Vec<String> = labels.iter().map(u64::to_string).collect();
        if lab.is_empty() {
            out.push(' ');
        } else {
            out.push_str(&lab.join(","));
        }
        for (j, v) in feats {
            out.push_str(&format!(" {j}:{v}"));
        }
        out.push('\n');
    }
    out
}

struct Files {
    _dir: tempfile::TempDir,
    train: PathBuf,
    test: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.svm");
    let test = dir.path().join("test.svm");
    std::fs::write(&train, synthetic(400, 1)).unwrap();
    std::fs::write(&test, synthetic(150, 2)).unwrap();
    Files {
        _dir: dir,
        train,
        test,
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The per-epoch JSON objects of one run.
fn train_json(f: &Files, extra: &[&str]) -> Vec<Value> {
    try_train_json(f, extra).unwrap_or_else(|e| panic!("asl train failed: {e}"))
}

/// The per-epoch JSON objects of one run, or its stderr.
fn try_train_json(f: &Files, extra: &[&str]) -> Result<Vec<Value>, String> {
    let mut args = vec![
        "train",
        "--train",
        p(&f.train),
        "--test",
        p(&f.test),
        "--epochs",
        "6",
        "--batch",
        "32",
        "--json",
    ];
    if !extra.contains(&"--backend") {
        args.extend_from_slice(&["--backend", "cpu"]);
    }
    if !extra.contains(&"--lr") {
        args.extend_from_slice(&["--lr", "0.05"]);
    }
    args.extend_from_slice(extra);
    let o = asl(&args);
    if !o.status.success() {
        return Err(stderr(&o));
    }
    Ok(String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect())
}

/// Everything but the timings (and the backend's name, which names the thread count).
fn results(v: &[Value]) -> Vec<Value> {
    v.iter()
        .map(|o| {
            let mut o = o.clone();
            let m = o.as_object_mut().unwrap();
            for k in [
                "seconds",
                "forward_seconds",
                "loss_seconds",
                "backward_seconds",
                "loss_share",
                "eval_seconds",
                "backend",
            ] {
                assert!(m.remove(k).is_some(), "missing key {k}");
            }
            o
        })
        .collect()
}

#[test]
fn training_learns_and_repeats_bitwise() {
    let f = files();
    let a = train_json(&f, &["--seed", "7"]);
    assert_eq!(a.len(), 6);
    let loss: Vec<f64> = a
        .iter()
        .map(|o| o["train_loss"].as_f64().unwrap())
        .collect();
    let map: Vec<f64> = a.iter().map(|o| o["test_map"].as_f64().unwrap()).collect();
    assert!(loss.windows(2).all(|w| w[1] < w[0]), "loss {loss:?}");
    assert!(map[5] > 0.9, "test mAP {map:?}");
    assert_eq!(a[5]["test_labels_scored"], 6);
    assert_eq!(a[5]["steps"], 6 * 13); // 400 rows / 32 = 13 steps an epoch
    for o in &a {
        let share = o["loss_share"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share), "{o}");
        assert!(o["valid_map"].is_null());
    }
    // Same seed: the same numbers, bitwise; on one thread too.
    assert_eq!(results(&a), results(&train_json(&f, &["--seed", "7"])));
    let one = train_json(&f, &["--seed", "7", "--threads", "1"]);
    assert_eq!(results(&a), results(&one));
    // Another seed: another order, other numbers.
    assert_ne!(results(&a), results(&train_json(&f, &["--seed", "8"])));
}

/// Every other backend this build has trains like the CPU path: the same losses within f32
/// rounding (rtol 1e-5), the same test mAP within 1e-4. A GPU backend without a device is
/// skipped with a message (wgpu fails instead when `ASL_REQUIRE_WGPU=1`).
#[test]
fn every_backend_trains_alike() {
    let f = files();
    let cpu = train_json(&f, &[]);
    let mut others = vec![("reference", false)];
    if cfg!(feature = "wgpu") {
        let required = std::env::var("ASL_REQUIRE_WGPU").is_ok_and(|v| v == "1");
        others.push(("wgpu", required));
    }
    if cfg!(feature = "cuda") {
        others.push(("cuda", false));
    }
    for (name, required) in others {
        let got = match try_train_json(&f, &["--backend", name]) {
            Ok(v) => v,
            Err(e) if !required && e.contains("is not available") => {
                eprintln!("skipping --backend {name}: {}", e.trim());
                continue;
            }
            Err(e) => panic!("--backend {name} failed: {e}"),
        };
        for (a, b) in got.iter().zip(&cpu) {
            let (la, lb) = (
                a["train_loss"].as_f64().unwrap(),
                b["train_loss"].as_f64().unwrap(),
            );
            assert!(
                (la - lb).abs() <= 1e-5 * lb.abs(),
                "{name}: loss {la} vs cpu {lb}"
            );
            let (ma, mb) = (
                a["test_map"].as_f64().unwrap(),
                b["test_map"].as_f64().unwrap(),
            );
            assert!((ma - mb).abs() <= 1e-4, "{name}: test mAP {ma} vs cpu {mb}");
        }
    }
}

#[test]
fn every_preset_and_optimizer_trains() {
    let f = files();
    for extra in [
        &["--loss", "bce"][..],
        &["--loss", "focal"],
        &["--loss", "asl-paper", "--lr", "0.02"],
        &["--loss", "asl", "--optimizer", "sgd", "--lr", "2"],
        &[
            "--loss",
            "bce",
            "--holdout",
            "0.25",
            "--reduction",
            "mean",
            "--lr",
            "0.1",
        ],
    ] {
        let v = train_json(&f, extra);
        let first = v[0]["train_loss"].as_f64().unwrap();
        let last = v[5]["train_loss"].as_f64().unwrap();
        assert!(last < first, "{extra:?}: loss {first} -> {last}");
        let map = v[5]["test_map"].as_f64().unwrap();
        assert!(map > 0.8, "{extra:?}: test mAP {map}");
        assert_eq!(v[5]["loss"], extra[1]);
        if extra.contains(&"--holdout") {
            assert!(v[5]["valid_map"].as_f64().unwrap() > 0.8);
        }
    }
}

#[test]
fn text_output_names_each_epoch() {
    let f = files();
    let o = asl(&[
        "train",
        "--train",
        p(&f.train),
        "--test",
        p(&f.test),
        "--epochs",
        "2",
        "--backend",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("epoch   1/2  train loss"), "{out}");
    assert!(out.contains("epoch   2/2  train loss"), "{out}");
    assert!(out.contains("test mAP"), "{out}");
    assert!(out.contains("mean epoch"), "{out}");
}

#[test]
fn command_errors() {
    let f = files();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.svm");
    std::fs::write(&bad, "0 1:1\n1,2 3:1\n2 3:x\n").unwrap();
    let (tr, te) = (p(&f.train), p(&f.test));
    // Every case fails before training: no --epochs needed.
    let run = |args: &[&str]| {
        let mut a = vec!["train", "--backend", "cpu"];
        a.extend_from_slice(args);
        asl(&a)
    };
    fails_with(
        &run(&["--train", p(&bad), "--test", te]),
        &["bad.svm", "line 3", "bad feature \"3:x\""],
    );
    fails_with(
        &run(&["--train", tr, "--test", p(&bad)]),
        &["bad.svm", "line 3"],
    );
    fails_with(
        &run(&["--train", tr, "--test", te, "--labels", "4"]),
        &["train.svm", "line", "is not below the 4 labels"],
    );
    let missing = dir.path().join("missing.svm");
    fails_with(
        &run(&["--train", p(&missing), "--test", te]),
        &["cannot read", "missing.svm"],
    );
    let empty = dir.path().join("empty.svm");
    std::fs::write(&empty, "").unwrap();
    fails_with(
        &run(&["--train", p(&empty), "--test", te]),
        &["no training samples"],
    );
    fails_with(
        &run(&["--train", tr, "--test", te, "--reduction", "none"]),
        &["--reduction none"],
    );
    fails_with(&run(&["--train", tr, "--test", te, "--lr", "0"]), &["--lr"]);
    fails_with(
        &run(&["--train", tr, "--test", te, "--holdout", "1"]),
        &["--holdout"],
    );
    fails_with(
        &run(&["--train", tr, "--test", te, "--gamma-neg", "-1"]),
        &["gamma_neg"],
    );
    fails_with(
        &run(&["--train", tr, "--test", te, "--clip", "2"]),
        &["clip"],
    );
    fails_with(
        &run(&["--train", tr, "--test", te, "--epochs", "0"]),
        &["--epochs", "0"],
    );
    fails_with(
        &run(&["--train", tr, "--test", te, "--loss", "hinge"]),
        &["hinge"],
    );
    let names = dir.path().join("labels.txt");
    std::fs::write(&names, "a\n\nc\n").unwrap();
    fails_with(
        &run(&["--train", tr, "--test", te, "--labels", p(&names)]),
        &["labels.txt", "line 2", "empty label name"],
    );
    fails_with(
        &run(&["--train", tr, "--test", te, "--labels", "nope.txt"]),
        &["--labels nope.txt"],
    );
}
