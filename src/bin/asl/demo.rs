//! `asl demo`: the ASL walkthrough, its plots, and the shipped real sample on every backend.
//!
//! 1. Walkthrough (on the backend `--backend` picks), with the inputs of timm's seed example:
//!    single-label ASL with no focusing and no smoothing is cross-entropy; the single-label loss
//!    against `gamma_neg` with and without smoothing; the multi-label loss against `clip`.
//!    Every curve is also written to `OUT/walkthrough.json` under the key names of
//!    `golden/timm_asl_cases.json` `seed_curves`, which the tests compare with timm's values.
//! 2. `OUT/loss_vs_gamma_neg.png` and `OUT/loss_vs_clip.png`.
//! 3. The first 512 rows of the debtags test set (`data/debtags-sample`, embedded in the binary
//!    so that the demo runs from anywhere) on every available backend and the float64
//!    reference, with timm's defaults and with the paper's training setting.

use std::path::{Path, PathBuf};
use std::time::Instant;

use asymloss::{
    reference, ClassTargets, GradMut, Logits, MultiInputs, MultiLabel, MultiTargets, Pass,
    Reduction, Shape, SingleInputs, SingleLabel, Upstream,
};
use plotters::style::RGBColor;
use serde_json::json;

use crate::backends::{self, Choice, Picked};
use crate::eval::fmt_secs;
use crate::fail::{runtime, usage, Failure};
use crate::npy::{self, Data};
use crate::plot::{line_plot, Panel, Series};

/// Run the ASL walkthrough, draw its plots, and evaluate the shipped real sample.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Backend of the walkthrough (the real sample runs on every available backend).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: Choice,
    /// Directory for the plots and walkthrough.json (created if missing).
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// Evaluate this directory (logits.npy, targets.npy, optional labels.txt) instead of the
    /// shipped debtags sample.
    #[arg(long, value_name = "DIR")]
    pub sample: Option<PathBuf>,
    /// Timed fused passes per backend on the sample (the median is printed).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub repeats: usize,
}

static SAMPLE_LOGITS: &[u8] = include_bytes!("../../../data/debtags-sample/logits.npy");
static SAMPLE_TARGETS: &[u8] = include_bytes!("../../../data/debtags-sample/targets.npy");
static SAMPLE_LABELS: &str = include_str!("../../../data/debtags-sample/labels.txt");

/// `one_hot(idx, classes)` as row-major f32.
fn one_hot(idx: &[usize], classes: usize) -> Vec<f32> {
    let mut v = vec![0.0; idx.len() * classes];
    for (r, &c) in idx.iter().enumerate() {
        v[r * classes + c] = 1.0;
    }
    v
}

fn sl_loss(
    b: &Picked,
    cfg: &SingleLabel,
    logits: &[f32],
    targets: &[i64],
    cols: usize,
) -> Result<f32, Failure> {
    let inp = SingleInputs {
        shape: Shape::new(targets.len(), cols),
        logits: Logits::F32(logits),
        targets: ClassTargets::I64(targets),
        upstream: Upstream::Scalar(1.0),
    };
    let v = b.backend.single_label(cfg, Pass::Forward, &inp, None)?;
    v.and_then(|v| v.scalar())
        .ok_or_else(|| runtime("the backend returned no scalar loss"))
}

fn ml_loss(
    b: &Picked,
    cfg: &MultiLabel,
    logits: &[f32],
    targets: &[f32],
    shape: Shape,
) -> Result<f32, Failure> {
    let inp = MultiInputs {
        shape,
        logits: Logits::F32(logits),
        targets: MultiTargets::F32(targets),
        upstream: Upstream::Scalar(1.0),
    };
    let v = b.backend.multi_label(cfg, Pass::Forward, &inp, None)?;
    v.and_then(|v| v.scalar())
        .ok_or_else(|| runtime("the backend returned no scalar loss"))
}

/// Mean cross-entropy in f64, straight from its definition: logsumexp(z) - z_t.
fn cross_entropy(logits: &[f32], targets: &[i64], cols: usize) -> f64 {
    let rows = targets.len();
    let total: f64 = (0..rows)
        .map(|r| {
            let z: Vec<f64> = logits[r * cols..(r + 1) * cols]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            lse - z[targets[r] as usize]
        })
        .sum();
    total / rows as f64
}

type Curve = Vec<(f64, f64)>;

fn curve_json(c: &Curve) -> serde_json::Value {
    json!(c.iter().map(|&(x, y)| [x, y]).collect::<Vec<_>>())
}

fn min_max(c: &Curve) -> (f64, f64) {
    c.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        })
}

/// Runs `asl demo`.
pub fn run(args: Args) -> Result<(), Failure> {
    std::fs::create_dir_all(&args.out)
        .map_err(|e| usage(format!("cannot create {}: {e}", args.out.display())))?;
    let b = backends::pick(args.backend)?;
    println!("ASL walkthrough on backend {}", b.name());
    println!();

    // 1a. No focusing, no smoothing: single-label ASL is cross-entropy.
    let c10 = 10;
    let x1 = one_hot(&[0, 9, 0], c10);
    let t_ce = [0i64, 0, 0];
    let asl_ce = sl_loss(&b, &SingleLabel::cross_entropy(), &x1, &t_ce, c10)?;
    let ce = cross_entropy(&x1, &t_ce, c10);
    println!("1. Single-label ASL with gamma_pos = gamma_neg = smoothing = 0 is cross-entropy.");
    println!("   logits one_hot([0, 9, 0], 10), class targets [0, 0, 0]:");
    println!("     ASL, both gammas and smoothing 0   {asl_ce:.7}");
    println!("     cross-entropy (f64, by definition) {ce:.7}");
    println!();

    // 1b. Single-label ASL against gamma_neg on logits 2 one_hot - 1, targets [0, 9, 0].
    let x2: Vec<f32> = x1.iter().map(|&v| 2.0 * v - 1.0).collect();
    let t2 = [0i64, 9, 0];
    let mut gneg_s01: Curve = Vec::new();
    for i in 0..80 {
        let g = 1.0 + 0.04 * i as f64;
        let cfg = SingleLabel {
            gamma_neg: g,
            smoothing: 0.1,
            ..SingleLabel::default()
        };
        gneg_s01.push((g, sl_loss(&b, &cfg, &x2, &t2, c10)? as f64));
    }
    let mut gneg_s0: Curve = Vec::new();
    for i in 0..100 {
        let g = 0.02 * i as f64;
        let cfg = SingleLabel {
            gamma_neg: g,
            smoothing: 0.0,
            ..SingleLabel::default()
        };
        gneg_s0.push((g, sl_loss(&b, &cfg, &x2, &t2, c10)? as f64));
    }
    let (lo, hi) = min_max(&gneg_s0);
    println!("2. Single-label ASL (gamma_pos 1, mean) against gamma_neg,");
    println!("   logits 2 one_hot([0, 9, 0], 10) - 1, class targets [0, 9, 0]:");
    println!("     smoothing 0.1, gamma_neg 1 .. 4.16:");
    for &i in &[0usize, 25, 50, 79] {
        println!(
            "       gamma_neg {:<5} loss {:.7}",
            fmt_x(gneg_s01[i].0),
            gneg_s01[i].1
        );
    }
    println!("     smoothing 0, gamma_neg 0 .. 1.98: loss {lo:.7} to {hi:.7} (flat: without");
    println!("       smoothing the non-target classes carry no mass, so gamma_neg has nothing");
    println!("       to act on)");
    println!();

    // 1c. Multi-label ASL against clip.
    let mut y3 = one_hot(&[0, 0, 0], c10);
    for (v, w) in y3.iter_mut().zip(one_hot(&[1, 9, 1], c10)) {
        *v += w;
    }
    let s3 = Shape::new(3, c10);
    let mut clip_sum: Curve = Vec::new();
    let mut clip_bm: Curve = Vec::new();
    for i in 0..100 {
        let m = i as f64 / 100.0;
        let sum = MultiLabel {
            clip: m,
            reduction: Reduction::Sum,
            ..MultiLabel::default()
        };
        let bm = MultiLabel {
            clip: m,
            reduction: Reduction::BatchMean,
            ..MultiLabel::default()
        };
        clip_sum.push((m, ml_loss(&b, &sum, &x2, &y3, s3)? as f64));
        clip_bm.push((m, ml_loss(&b, &bm, &x2, &y3, s3)? as f64));
    }
    println!("3. Multi-label ASL (gamma_neg 4, gamma_pos 1) against clip, same logits,");
    println!("   targets one_hot([0, 0, 0]) + one_hot([1, 9, 1]):");
    println!("       clip    sum         batchmean (sum / 3 rows)");
    for &i in &[0usize, 5, 20, 50, 99] {
        println!(
            "       {:<6}  {:.7}   {:.7}",
            fmt_x(clip_sum[i].0),
            clip_sum[i].1,
            clip_bm[i].1
        );
    }
    println!("     (clip 0.05 is timm's default. The loss falls as clip discards easy negatives:");
    println!("     a negative's weight is pm^4 with pm = max(sigmoid(-1) - clip, 0), tiny by clip");
    println!("     0.2 and exactly 0 from clip = sigmoid(-1) = 0.269 on)");
    println!();

    // 2. The curves as data and as plots.
    let walk = json!({
        "backend": b.name(),
        "seed_ce_equivalence": [[0.0, asl_ce as f64]],
        "cross_entropy_f64": ce,
        "single_gamma_neg_eps0.1": curve_json(&gneg_s01),
        "single_gamma_neg_eps0": curve_json(&gneg_s0),
        "multi_clip_sum": curve_json(&clip_sum),
        "multi_clip_batchmean": curve_json(&clip_bm),
    });
    let wpath = args.out.join("walkthrough.json");
    let mut wf = npy::AtomicFile::create(&wpath)?;
    wf.write_all(
        serde_json::to_string_pretty(&walk)
            .expect("plain data")
            .as_bytes(),
    )?;
    wf.commit()?;

    let gpath = args.out.join("loss_vs_gamma_neg.png");
    line_plot(
        &gpath,
        "Single-label ASL: loss against gamma_neg",
        "gamma_neg (focusing exponent of the non-target classes)",
        &[Panel {
            y_desc: "loss (mean over the 3 rows)".into(),
            series: vec![
                Series {
                    label: "smoothing 0.1".into(),
                    points: &gneg_s01,
                    color: BLUE,
                },
                Series {
                    label: "smoothing 0 (flat: no mass on non-targets)".into(),
                    points: &gneg_s0,
                    color: ORANGE,
                },
            ],
        }],
    )?;
    let cpath = args.out.join("loss_vs_clip.png");
    line_plot(
        &cpath,
        "Multi-label ASL: loss against clip (probability margin)",
        "clip",
        &[
            Panel {
                y_desc: "loss, reduction sum".into(),
                series: vec![Series {
                    label: "sum (the original ASL code)".into(),
                    points: &clip_sum,
                    color: BLUE,
                }],
            },
            Panel {
                y_desc: "loss, reduction batchmean".into(),
                series: vec![Series {
                    label: "batchmean = sum / 3 rows (timm 1.0.31)".into(),
                    points: &clip_bm,
                    color: ORANGE,
                }],
            },
        ],
    )?;
    println!(
        "Wrote {}, {} and {}",
        gpath.display(),
        cpath.display(),
        wpath.display()
    );
    println!();

    // 3. The real sample on every backend.
    real_sample(&args)
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(230, 120, 20);

/// `1`, `0.05`, `2.24`: an x value without float noise.
fn fmt_x(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// The sample: `(rows, cols, logits, targets, labels, origin)`.
type Sample = (usize, usize, Vec<f32>, Vec<u8>, Vec<String>, String);

fn load_sample(dir: Option<&Path>) -> Result<Sample, Failure> {
    let (la, ta, labels, origin) = match dir {
        None => (
            npy::parse(Path::new("data/debtags-sample/logits.npy"), SAMPLE_LOGITS)?,
            npy::parse(Path::new("data/debtags-sample/targets.npy"), SAMPLE_TARGETS)?,
            SAMPLE_LABELS.to_string(),
            "data/debtags-sample, the first 512 rows of the debtags test set: Debian \
             packages' tags,\n  predicted by a one-vs-rest logistic regression"
                .to_string(),
        ),
        Some(d) => (
            npy::read(&d.join("logits.npy"))?,
            npy::read(&d.join("targets.npy"))?,
            std::fs::read_to_string(d.join("labels.txt")).unwrap_or_default(),
            d.display().to_string(),
        ),
    };
    let (rows, cols) = match la.shape[..] {
        [r, c] => (r, c),
        _ => return Err(la.err(format!("logits must be 2-D; got {}", la.shape_str()))),
    };
    let logits = match la.data {
        Data::F32(v) => v,
        _ => return Err(la.err(format!("sample logits must be float32, got {}", la.descr))),
    };
    if ta.shape != [rows, cols] {
        return Err(ta.err(format!(
            "targets must have shape ({rows}, {cols}), got {}",
            ta.shape_str()
        )));
    }
    let targets = match ta.data {
        Data::U8(v) => v,
        Data::Bool(v) => v.into_iter().map(u8::from).collect(),
        _ => {
            return Err(ta.err(format!(
                "sample targets must be uint8 or bool, got {}",
                ta.descr
            )))
        }
    };
    let labels = labels.lines().map(str::to_string).collect();
    Ok((rows, cols, logits, targets, labels, origin))
}

/// One backend's result on one configuration.
struct Row {
    name: String,
    loss: f32,
    grad: Vec<f32>,
    seconds: f64,
}

fn time_backend(
    b: &Picked,
    cfg: &MultiLabel,
    inp: &MultiInputs<'_>,
    repeats: usize,
) -> Result<Row, Failure> {
    let n = inp.logits.len();
    let mut grad = vec![f32::NAN; n];
    // One untimed call: pipeline compilation and first-touch allocations are not the loss.
    b.backend
        .multi_label(cfg, Pass::Fused, inp, Some(GradMut::F32(&mut grad)))?;
    let mut times = Vec::with_capacity(repeats);
    let mut loss = f32::NAN;
    for _ in 0..repeats.max(1) {
        grad.fill(f32::NAN);
        let t0 = Instant::now();
        let v = b
            .backend
            .multi_label(cfg, Pass::Fused, inp, Some(GradMut::F32(&mut grad)))?;
        b.backend.synchronize()?;
        times.push(t0.elapsed().as_secs_f64());
        loss = v
            .and_then(|v| v.scalar())
            .ok_or_else(|| runtime("no scalar loss returned"))?;
    }
    times.sort_by(f64::total_cmp);
    Ok(Row {
        name: b.name(),
        loss,
        grad,
        seconds: times[times.len() / 2],
    })
}

fn real_sample(args: &Args) -> Result<(), Failure> {
    let (rows, cols, logits, targets, labels, origin) = load_sample(args.sample.as_deref())?;
    let shape = Shape::new(rows, cols);
    let positives = targets.iter().filter(|&&t| t == 1).count();
    println!("Real input: {origin}");
    println!(
        "  {rows} x {cols} float32 logits, 0/1 targets: {positives} positives, {:.2} per row, \
         {:.2}% of all labels",
        positives as f64 / rows.max(1) as f64,
        100.0 * positives as f64 / (rows * cols).max(1) as f64
    );
    let inp = MultiInputs {
        shape,
        logits: Logits::F32(&logits),
        targets: MultiTargets::U8(&targets),
        upstream: Upstream::Scalar(1.0),
    };
    let (picked, missing) = backends::all();
    for (k, why) in &missing {
        println!(
            "  (backend {} not available: {})",
            k.name(),
            crate::fail::one_line(why)
        );
    }
    let configs = [
        (
            "timm defaults",
            MultiLabel::default(),
            "gamma_neg 4, gamma_pos 1, clip 0.05, batchmean",
        ),
        (
            "paper setting",
            MultiLabel::paper(),
            "gamma_pos 0, detached focusing, sum",
        ),
    ];
    // Width of the backend column.
    let w = picked
        .iter()
        .map(|b| b.name().len())
        .max()
        .unwrap_or(0)
        .max(24);
    for (title, cfg, desc) in &configs {
        println!();
        println!("  {title}: {desc}");
        // f64 ground truth from the library's reference.
        let t0 = Instant::now();
        let r = reference::multi_label(cfg, shape, inp.logits, inp.targets, inp.upstream)?;
        let ref_secs = t0.elapsed().as_secs_f64();
        let ref_loss = r.loss[0];
        let gmax = r
            .grad
            .iter()
            .fold(0.0f64, |m, g| m.max(g.abs()))
            .max(f64::MIN_POSITIVE);
        println!(
            "    {:<w$} {:>14} {:>10} {:>11} {:>10}",
            "backend", "loss", "rel. diff", "max|dgrad|", "time"
        );
        println!(
            "    {:<w$} {:>14.8} {:>10} {:>11} {:>10}",
            "reference (f64, one run)",
            ref_loss,
            "-",
            "-",
            fmt_secs(ref_secs)
        );
        let mut results: Vec<Row> = Vec::new();
        for b in &picked {
            match time_backend(b, cfg, &inp, args.repeats) {
                Ok(row) => {
                    let rel = (row.loss as f64 - ref_loss).abs() / ref_loss.abs().max(1e-30);
                    let dg = row
                        .grad
                        .iter()
                        .zip(&r.grad)
                        .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
                    println!(
                        "    {:<w$} {:>14.8} {:>10.2e} {:>11.2e} {:>10}",
                        row.name,
                        row.loss,
                        rel,
                        dg / gmax,
                        fmt_secs(row.seconds)
                    );
                    results.push(row);
                }
                Err(e) => println!("    {:<w$} failed: {}", b.name(), e.one_line()),
            }
        }
        // The largest disagreement between any two backends (loss and gradient).
        let mut worst_loss = 0.0f64;
        let mut worst_grad = 0.0f64;
        for (i, a) in results.iter().enumerate() {
            for b in &results[i + 1..] {
                worst_loss = worst_loss.max((a.loss as f64 - b.loss as f64).abs());
                let d = a
                    .grad
                    .iter()
                    .zip(&b.grad)
                    .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
                worst_grad = worst_grad.max(d);
            }
        }
        if results.len() > 1 {
            let loss_diff = if worst_loss == 0.0 {
                "loss identical".to_string()
            } else {
                format!(
                    "loss {worst_loss:.2e} ({:.2e} relative)",
                    worst_loss / ref_loss.abs().max(1e-30)
                )
            };
            println!(
                "    largest difference between backends: {loss_diff}, gradient {:.2e} of \
                 max|grad|",
                worst_grad / gmax
            );
        } else {
            println!("    (one backend available: no difference between backends to show)");
        }
    }
    println!();
    println!(
        "  time: median of {} fused passes (loss and gradient) after one warm-up call;",
        args.repeats
    );
    println!("  rel. diff: |loss - reference| / reference; max|dgrad|: the largest gradient");
    println!("  difference from the reference, divided by max|grad|.");

    // Which tags the default loss spends most on (the per-class sum of the unreduced loss).
    if labels.len() == cols {
        let cfg = MultiLabel {
            reduction: Reduction::None,
            ..MultiLabel::default()
        };
        let r = reference::multi_label(&cfg, shape, inp.logits, inp.targets, inp.upstream)?;
        let mut per: Vec<(usize, f64)> = (0..cols)
            .map(|c| {
                (
                    c,
                    (0..rows).map(|i| r.loss[i * cols + c]).sum::<f64>() / rows as f64,
                )
            })
            .collect();
        per.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f64 = per.iter().map(|p| p.1).sum();
        println!();
        println!("  Tags carrying the most timm-default loss (share of the batchmean loss):");
        for &(c, v) in per.iter().take(5) {
            let pos = (0..rows).filter(|&i| targets[i * cols + c] == 1).count();
            println!(
                "    {:<32} {:>5.1}%  ({pos} positives)",
                labels[c],
                100.0 * v / total
            );
        }
    }
    Ok(())
}
