//! `asl train`: a linear multi-label classifier on sparse features, trained with the chosen
//! backend's fused loss and gradient, evaluated by test mean average precision after each
//! epoch.
//!
//! One step on a batch of `B` samples:
//! 1. forward: `Z = X W + b` (`B x C`, the model in `train/model.rs`);
//! 2. loss: the backend's [`asymloss::Backend::multi_label`] with [`Pass::Fused`] on `Z` and the
//!    batch's 0/1 targets (u8), upstream 1: the loss and `G = dL/dZ` from one read of `Z`;
//! 3. backward and update: `dL/dW = X^T G`, `dL/db = sum_r G[r]`, then SGD or (lazy) Adam.
//!
//! BCE and focal loss are not separate code: `--loss bce` is `MultiLabel::bce()` (both gammas 0,
//! no clip) and `--loss focal` is `MultiLabel::focal(2)` (equal gammas, no clip), run by the same
//! kernel as ASL. `--loss asl` is timm's default and `--loss asl-paper` the paper's training
//! setting (`MultiLabel::paper()`: gamma_pos 0, detached focusing, sum); every loss flag
//! overrides the preset.
//!
//! Determinism: the seed orders the samples (and picks the `--holdout` rows); the weights start
//! at zero and the biases at zero or the labels' prior log-odds (`--bias-init`). With the CPU
//! loss backend the whole run is bitwise the same on any number of threads (`--threads`): the
//! forward pass, backward pass, mAP and the CPU loss all add in fixed orders. A GPU backend is as
//! deterministic as its kernels (wgpu on llvmpipe repeated bitwise in our runs; the crate's
//! kernels use no float atomics).

mod metrics;
mod model;
mod svm;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use asymloss::{
    FocalGrad, GradMut, Logits, MultiInputs, MultiLabel, MultiTargets, Pass, Reduction, Shape,
    Upstream,
};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::backends::{self, Choice};
use crate::eval::{fmt_secs, LossFlags};
use crate::fail::{runtime, usage, Failure};
use model::{Linear, OptimKind, SparseRows};
use svm::Dataset;

/// `--loss`: a preset of the one multi-label ASL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LossPreset {
    /// ASL with timm's defaults: gamma_neg 4, gamma_pos 1, clip 0.05, differentiated, batchmean.
    Asl,
    /// ASL in the paper's training setting: gamma_neg 4, gamma_pos 0, clip 0.05, detached, sum.
    AslPaper,
    /// Binary cross-entropy: ASL with both gammas 0 and clip 0 (batchmean).
    Bce,
    /// Focal loss: ASL with gamma_neg = gamma_pos = 2 and clip 0 (batchmean).
    Focal,
}

impl LossPreset {
    fn name(self) -> &'static str {
        match self {
            LossPreset::Asl => "asl",
            LossPreset::AslPaper => "asl-paper",
            LossPreset::Bce => "bce",
            LossPreset::Focal => "focal",
        }
    }

    fn config(self) -> MultiLabel {
        match self {
            LossPreset::Asl => MultiLabel::default(),
            LossPreset::AslPaper => MultiLabel::paper(),
            LossPreset::Bce => MultiLabel::bce(),
            LossPreset::Focal => MultiLabel::focal(2.0),
        }
    }
}

/// `--optimizer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimArg {
    /// Plain mini-batch SGD: w -= lr g.
    Sgd,
    /// Adam (beta1 0.9, beta2 0.999, eps 1e-8); rows of W updated lazily, when their feature
    /// occurs in the batch.
    Adam,
}

/// `--bias-init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BiasInit {
    /// Every bias starts at 0 (probability 1/2 for every label).
    Zero,
    /// Each label's bias starts at the log-odds of its training frequency,
    /// ln((k + 0.5) / (n - k + 0.5)) for k positives in n rows (the focal loss paper's prior).
    Prior,
}

/// Train a linear multi-label classifier on sparse data with a fused loss backend.
///
/// The model is logits = x W + b (W: features seen in training x labels, zero at the start; b:
/// the labels' prior log-odds or zero);
/// each step's loss and gradient dL/dlogits come from the backend's fused pass.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Data: one sample a line, `label,label,... index:value index:value ...` (0-based; a line with no
  labels starts with a space; an optional first line `points features labels`). A malformed line
  is refused with its file and line number.
Loss presets are parameter settings of the one ASL kernel: asl = timm default, asl-paper =
  gamma_pos 0, detached focusing, sum; bce = both gammas 0, clip 0; focal = both gammas 2, clip 0.
  Loss flags override the preset.
After each epoch: train loss (the loss summed over labels, averaged over the epoch's samples
  whatever the reduction), test mAP (per-label average precision, scikit-learn's definition with
  ties as one threshold, averaged over labels with a positive in the test set), the epoch's wall
  time and the loss backend's share of it. --json prints one object per epoch.
Deterministic for a seed; with the CPU backend also independent of the thread count.")]
pub struct Args {
    /// Training data (extreme-classification text format).
    #[arg(long, value_name = "train.svm")]
    pub train: PathBuf,
    /// Test data (same format).
    #[arg(long, value_name = "test.svm")]
    pub test: PathBuf,
    /// Number of labels, or a file with one label name per line [default: the header's, else
    /// 1 + the largest label in either file].
    #[arg(long, value_name = "N|labels.txt")]
    pub labels: Option<String>,
    /// Loss preset.
    #[arg(long, value_enum, default_value = "asl")]
    pub loss: LossPreset,
    /// Backend computing the loss and its gradient.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: Choice,
    /// Passes over the training data.
    #[arg(long, value_name = "E", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub epochs: u32,
    /// Samples per step.
    #[arg(long, value_name = "B", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Learning rate [default: 0.01 for adam; 1 for sgd, which scales with the reduction: sum
    /// needs about 1/batch of batchmean's].
    #[arg(long, value_name = "F", allow_hyphen_values = true)]
    pub lr: Option<f64>,
    /// Optimizer.
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimArg,
    /// Starting biases (the weights always start at 0).
    #[arg(long, value_enum, default_value = "zero")]
    pub bias_init: BiasInit,
    /// Seed of the sample order (and of the --holdout rows).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Hold out this fraction of the training rows (chosen by the seed) and report their mAP as
    /// valid_map, for choosing hyperparameters without the test set.
    #[arg(
        long,
        value_name = "F",
        allow_hyphen_values = true,
        default_value_t = 0.0
    )]
    pub holdout: f64,
    /// Worker threads [default: all cores]; results do not depend on it with the CPU backend.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// The loss parameters (they override the preset of --loss).
    #[command(flatten)]
    pub flags: LossFlags,
    /// Print one JSON object per epoch (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// One epoch's report (`--json` prints it as one line).
#[derive(Debug, Serialize)]
struct EpochReport {
    epoch: u32,
    epochs: u32,
    loss: &'static str,
    backend: String,
    optimizer: &'static str,
    lr: f64,
    batch: u32,
    steps: u64,
    /// The loss summed over labels, averaged over the epoch's training samples (null if not
    /// finite).
    train_loss: Option<f64>,
    /// Test mAP over labels with a positive in the test set (null if none).
    test_map: Option<f64>,
    /// Labels with a positive in the test set.
    test_labels_scored: usize,
    /// mAP of the held-out training rows (null without --holdout).
    valid_map: Option<f64>,
    /// Wall time of the epoch's training steps.
    seconds: f64,
    /// Of which: forward (X W + b).
    forward_seconds: f64,
    /// Of which: the loss backend's fused pass (including transfers for a GPU backend).
    loss_seconds: f64,
    /// Of which: backward through the linear layer and the optimizer update.
    backward_seconds: f64,
    /// loss_seconds / seconds.
    loss_share: f64,
    /// Wall time of the test (and held-out) evaluation, not in `seconds`.
    eval_seconds: f64,
}

/// SplitMix64: a small fixed generator, so the sample order never changes with a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (multiply-shift; the bias is below 2^-40 for these sizes).
    fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }

    /// Fisher-Yates.
    fn shuffle(&mut self, v: &mut [usize]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

fn read_svm(path: &Path) -> Result<Dataset, Failure> {
    let bytes =
        std::fs::read(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    svm::parse(&bytes).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// Label count and names from `--labels`.
fn label_arg(s: &str) -> Result<(usize, Option<Vec<String>>), Failure> {
    if let Ok(n) = s.trim().parse::<usize>() {
        if n == 0 {
            return Err(usage("--labels must be at least 1"));
        }
        return Ok((n, None));
    }
    let text = std::fs::read_to_string(s).map_err(|e| {
        usage(format!(
            "--labels {s}: not a number, and cannot read it as a file: {e}"
        ))
    })?;
    let names: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    if let Some(i) = names.iter().position(String::is_empty) {
        return Err(usage(format!(
            "{s}: line {}: empty label name (one name per line)",
            i + 1
        )));
    }
    if names.is_empty() {
        return Err(usage(format!("{s}: no label names")));
    }
    Ok((names.len(), Some(names)))
}

/// Refuses a label at or above `count`, naming the file and line.
fn check_labels(ds: &Dataset, path: &Path, count: usize, source: &str) -> Result<(), Failure> {
    for r in 0..ds.rows() {
        if let Some(&l) = ds.labels_of(r).iter().find(|&&l| l as usize >= count) {
            return Err(usage(format!(
                "{}: line {}: label {l} is not below the {count} labels ({source})",
                path.display(),
                ds.line_of(r)
            )));
        }
    }
    Ok(())
}

/// The training set's distinct features, sorted (position = compact id).
fn vocabulary(ds: &Dataset) -> Vec<u32> {
    let mut v = ds.feat_idx.clone();
    v.sort_unstable();
    v.dedup();
    v
}

/// `ds`'s features renumbered by `vocab`; features outside it are dropped (their weights would
/// stay 0). Returns the rows and the number of entries dropped.
fn compact(ds: &Dataset, vocab: &[u32]) -> (SparseRows, usize) {
    let mut out = SparseRows {
        ptr: vec![0],
        ..Default::default()
    };
    let mut dropped = 0;
    for r in 0..ds.rows() {
        let (idx, val) = ds.features_of(r);
        for (&j, &v) in idx.iter().zip(val) {
            match vocab.binary_search(&j) {
                Ok(c) => {
                    out.idx.push(c as u32);
                    out.val.push(v);
                }
                Err(_) => dropped += 1,
            }
        }
        out.ptr.push(out.idx.len());
    }
    (out, dropped)
}

/// Dense `rows x cols` u8 targets (1 positive, 0 negative) of `rows` of `ds`.
fn dense_targets(ds: &Dataset, rows: &[usize], cols: usize, out: &mut [u8]) {
    out.fill(0);
    for (k, &r) in rows.iter().enumerate() {
        for &l in ds.labels_of(r) {
            out[k * cols + l as usize] = 1;
        }
    }
}

/// The loss configuration: the preset, then every flag given.
fn loss_config(args: &Args, cols: usize) -> Result<MultiLabel, Failure> {
    let mut c = args.loss.config();
    args.flags.apply_multi_label(&mut c, cols)?;
    if c.reduction == Reduction::None {
        return Err(usage(
            "--reduction none cannot train: a step needs one loss (use batchmean, sum or mean)",
        ));
    }
    Ok(c)
}

fn describe(c: &MultiLabel) -> String {
    format!(
        "gamma_neg {}, gamma_pos {}, clip {}, eps {:e}, {} focusing, smoothing {}, {}",
        c.gamma_neg,
        c.gamma_pos,
        c.clip,
        c.eps,
        match c.focal_grad {
            FocalGrad::Differentiated => "differentiated",
            FocalGrad::Detached => "detached",
        },
        c.smoothing,
        c.reduction.name()
    )
}

/// Scores `rows` of `x` and returns their mAP against `ds`'s labels.
fn evaluate(model: &Linear, x: &SparseRows, ds: &Dataset, rows: &[usize]) -> metrics::MeanAp {
    let cols = model.cols;
    let mut z = vec![0.0f32; rows.len() * cols];
    model.forward(x, rows, &mut z);
    let mut y = vec![0u8; rows.len() * cols];
    dense_targets(ds, rows, cols, &mut y);
    metrics::mean_average_precision(&z, &y, rows.len(), cols)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Runs `asl train`.
pub fn run(args: Args) -> Result<(), Failure> {
    // 1. Arguments that clap cannot check alone.
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t as usize)
            .build_global()
            .map_err(|e| runtime(format!("cannot set up {t} threads: {e}")))?;
    }
    let kind = match args.optimizer {
        OptimArg::Sgd => OptimKind::Sgd,
        OptimArg::Adam => OptimKind::Adam,
    };
    let lr = args.lr.unwrap_or(match kind {
        OptimKind::Sgd => 1.0,
        OptimKind::Adam => 1e-2,
    });
    if !(lr.is_finite() && lr > 0.0) {
        return Err(usage(format!("--lr must be a positive number, got {lr}")));
    }
    if !(0.0..1.0).contains(&args.holdout) {
        return Err(usage(format!(
            "--holdout must be in [0, 1), got {}",
            args.holdout
        )));
    }
    let names = args.labels.as_deref().map(label_arg).transpose()?;

    // 2. Data, label count, compact features.
    let t_read = Instant::now();
    let train = read_svm(&args.train)?;
    let test = read_svm(&args.test)?;
    if train.rows() == 0 {
        return Err(usage(format!(
            "{}: no training samples",
            args.train.display()
        )));
    }
    if test.rows() == 0 {
        return Err(usage(format!("{}: no test samples", args.test.display())));
    }
    let header_labels = |d: &Dataset| d.header.map(|h| h.labels);
    let (cols, source) = match (&names, header_labels(&train), header_labels(&test)) {
        (Some((n, _)), _, _) => (*n, "from --labels"),
        (None, Some(a), Some(b)) if a != b => {
            return Err(usage(format!(
                "the headers disagree on the number of labels: {a} in {}, {b} in {}",
                args.train.display(),
                args.test.display()
            )))
        }
        (None, Some(a), _) | (None, None, Some(a)) => (a, "from the header"),
        (None, None, None) => {
            let max = train.max_label().max(test.max_label());
            match max {
                Some(m) => (m as usize + 1, "1 + the largest label in the data"),
                None => return Err(usage("neither file has a label: nothing to learn")),
            }
        }
    };
    check_labels(&train, &args.train, cols, source)?;
    check_labels(&test, &args.test, cols, source)?;
    let names = names.and_then(|(_, n)| n);
    let vocab = vocabulary(&train);
    let (x_train, _) = compact(&train, &vocab);
    let (x_test, dropped) = compact(&test, &vocab);
    log::info!(
        "read {} training and {} test samples in {}; {cols} labels ({source}); {} distinct \
         training features; {dropped} test feature entries unseen in training dropped",
        train.rows(),
        test.rows(),
        fmt_secs(t_read.elapsed().as_secs_f64()),
        vocab.len()
    );

    // 3. Loss, backend, model, sample split.
    let cfg = loss_config(&args, cols)?;
    let picked = backends::pick(args.backend)?;
    let backend = picked.backend;
    let backend_name = backend.name();
    let mut rng = SplitMix64(args.seed);
    let mut pool: Vec<usize> = (0..train.rows()).collect();
    let n_valid = (args.holdout * train.rows() as f64).floor() as usize;
    let valid_rows: Vec<usize> = if n_valid > 0 {
        rng.shuffle(&mut pool);
        let v = pool.split_off(train.rows() - n_valid);
        pool.sort_unstable();
        let mut v = v;
        v.sort_unstable();
        v
    } else {
        Vec::new()
    };
    if pool.is_empty() {
        return Err(usage("--holdout leaves no training samples"));
    }
    let test_rows: Vec<usize> = (0..test.rows()).collect();
    // A batch larger than the data is the whole data (and no larger buffers).
    let batch = (args.batch as usize).min(pool.len());
    let mut model = Linear::new(vocab.len(), cols, kind, lr as f32);
    if args.bias_init == BiasInit::Prior {
        // b_c = ln((k_c + 0.5) / (n - k_c + 0.5)) over the rows trained on.
        let mut k = vec![0usize; cols];
        for &r in &pool {
            for &l in train.labels_of(r) {
                k[l as usize] += 1;
            }
        }
        let n = pool.len() as f64;
        for (b, &k) in model.b.iter_mut().zip(&k) {
            *b = ((k as f64 + 0.5) / (n - k as f64 + 0.5)).ln() as f32;
        }
    }
    let opt_name = match kind {
        OptimKind::Sgd => "sgd",
        OptimKind::Adam => "adam",
    };
    let model_mib = (model.w.len() * if kind == OptimKind::Adam { 3 } else { 1 } * 4) as f64
        / (1u64 << 20) as f64;
    if !args.json {
        println!(
            "asl train: loss {} ({}); backend {backend_name}",
            args.loss.name(),
            describe(&cfg)
        );
        println!(
            "  {} training samples{}, {} test; {cols} labels; {} features seen in training \
             (model {model_mib:.0} MiB with optimizer state)",
            pool.len(),
            if n_valid > 0 {
                format!(" (+{n_valid} held out)")
            } else {
                String::new()
            },
            test.rows(),
            vocab.len()
        );
        println!(
            "  {opt_name}, lr {lr}, batch {batch}, {} epochs, seed {}, bias init {}",
            args.epochs,
            args.seed,
            match args.bias_init {
                BiasInit::Prior => "prior",
                BiasInit::Zero => "zero",
            }
        );
    }

    // 4. Buffers, and one untimed call so that a GPU backend's compilation is not an epoch's.
    let mut z = vec![0.0f32; batch * cols];
    let mut g = vec![0.0f32; batch * cols];
    let mut y = vec![0u8; batch * cols];
    {
        let k = batch.min(pool.len());
        let t0 = Instant::now();
        backend.multi_label(
            &cfg,
            Pass::Fused,
            &MultiInputs {
                shape: Shape::new(k, cols),
                logits: Logits::F32(&z[..k * cols]),
                targets: MultiTargets::U8(&y[..k * cols]),
                upstream: Upstream::Scalar(1.0),
            },
            Some(GradMut::F32(&mut g[..k * cols])),
        )?;
        backend.synchronize()?;
        log::info!(
            "warm-up call of the loss backend: {}",
            fmt_secs(t0.elapsed().as_secs_f64())
        );
    }

    // 5. Epochs.
    let show_bar = !args.json && std::io::stderr().is_terminal();
    let steps_per_epoch = pool.len().div_ceil(batch);
    let mut order = pool.clone();
    let mut history: Vec<EpochReport> = Vec::new();
    for epoch in 1..=args.epochs {
        let bar = if show_bar {
            let pb = ProgressBar::new(steps_per_epoch as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} steps {msg} [{elapsed}]",
            ) {
                pb.set_style(style);
            }
            pb.set_prefix(format!("{epoch}/{}", args.epochs));
            pb
        } else {
            ProgressBar::hidden()
        };
        order.copy_from_slice(&pool);
        rng.shuffle(&mut order);

        let (mut t_fwd, mut t_loss, mut t_bwd) = (0.0f64, 0.0f64, 0.0f64);
        let mut loss_sum = 0.0f64;
        let t_epoch = Instant::now();
        for (step, rows) in order.chunks(batch).enumerate() {
            let n = rows.len() * cols;
            // forward: Z = X W + b
            let t0 = Instant::now();
            model.forward(&x_train, rows, &mut z[..n]);
            dense_targets(&train, rows, cols, &mut y[..n]);
            let t1 = Instant::now();
            // loss and G = dL/dZ, fused
            let loss = backend
                .multi_label(
                    &cfg,
                    Pass::Fused,
                    &MultiInputs {
                        shape: Shape::new(rows.len(), cols),
                        logits: Logits::F32(&z[..n]),
                        targets: MultiTargets::U8(&y[..n]),
                        upstream: Upstream::Scalar(1.0),
                    },
                    Some(GradMut::F32(&mut g[..n])),
                )?
                .and_then(|v| v.scalar())
                .ok_or_else(|| runtime("the backend returned no scalar loss"))?;
            backend.synchronize()?;
            let t2 = Instant::now();
            // dL/dW = X^T G, dL/db = sum_r G[r]; optimizer step
            model.backward_step(&x_train, rows, &g[..n]);
            let t3 = Instant::now();
            t_fwd += (t1 - t0).as_secs_f64();
            t_loss += (t2 - t1).as_secs_f64();
            t_bwd += (t3 - t2).as_secs_f64();
            // The batch's loss as a sum over its elements (no target is unknown here).
            loss_sum += loss as f64
                * match cfg.reduction {
                    Reduction::Sum | Reduction::None => 1.0,
                    Reduction::BatchMean => rows.len() as f64,
                    Reduction::Mean => n as f64,
                };
            bar.inc(1);
            if step % 8 == 0 {
                bar.set_message(format!(
                    "loss {:.4}",
                    loss_sum / ((step + 1) * batch).min(order.len()) as f64
                ));
            }
        }
        let seconds = t_epoch.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let t_eval = Instant::now();
        let test_ap = evaluate(&model, &x_test, &test, &test_rows);
        let valid_map = (!valid_rows.is_empty())
            .then(|| evaluate(&model, &x_train, &train, &valid_rows).map)
            .and_then(finite);
        let eval_seconds = t_eval.elapsed().as_secs_f64();
        let train_loss = loss_sum / order.len() as f64;
        if !train_loss.is_finite() {
            log::warn!("epoch {epoch}: the training loss is {train_loss} (diverged? lower --lr)");
        }
        let rep = EpochReport {
            epoch,
            epochs: args.epochs,
            loss: args.loss.name(),
            backend: backend_name.clone(),
            optimizer: opt_name,
            lr,
            batch: args.batch,
            steps: model.steps(),
            train_loss: finite(train_loss),
            test_map: finite(test_ap.map),
            test_labels_scored: test_ap.scored,
            valid_map,
            seconds,
            forward_seconds: t_fwd,
            loss_seconds: t_loss,
            backward_seconds: t_bwd,
            loss_share: t_loss / seconds,
            eval_seconds,
        };
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&rep).expect("plain data serialises")
            );
        } else {
            let num = |v: Option<f64>, prec: usize| {
                v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.prec$}"))
            };
            println!(
                "epoch {epoch:>3}/{}  train loss {}  test mAP {}{}  {} (forward {}, loss {} = \
                 {:.1}%, backward {}); eval {}",
                args.epochs,
                num(rep.train_loss, 5),
                num(rep.test_map, 4),
                if valid_rows.is_empty() {
                    String::new()
                } else {
                    format!("  valid mAP {}", num(rep.valid_map, 4))
                },
                fmt_secs(seconds),
                fmt_secs(t_fwd),
                fmt_secs(t_loss),
                100.0 * rep.loss_share,
                fmt_secs(t_bwd),
                fmt_secs(eval_seconds)
            );
        }
        if epoch == args.epochs {
            report_labels(&test_ap, names.as_deref());
        }
        history.push(rep);
    }

    // 6. Summary.
    if !args.json {
        let e = history.len() as f64;
        let mean = |f: fn(&EpochReport) -> f64| history.iter().map(f).sum::<f64>() / e;
        let (s, l) = (mean(|r| r.seconds), mean(|r| r.loss_seconds));
        println!(
            "mean epoch {} on {backend_name}, of which the loss backend {} ({:.1}%); final test \
             mAP {} over {} labels",
            fmt_secs(s),
            fmt_secs(l),
            100.0 * l / s,
            history
                .last()
                .and_then(|r| r.test_map)
                .map_or_else(|| "n/a".into(), |v| format!("{v:.4}")),
            history.last().map_or(0, |r| r.test_labels_scored)
        );
    }
    Ok(())
}

/// Logs (at info) the best and worst labels by test AP.
fn report_labels(ap: &metrics::MeanAp, names: Option<&[String]>) {
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    let mut by: Vec<(usize, f64)> = ap
        .per_label
        .iter()
        .enumerate()
        .filter_map(|(c, a)| a.map(|a| (c, a)))
        .collect();
    by.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let name = |c: usize| {
        names
            .and_then(|n| n.get(c))
            .cloned()
            .unwrap_or(format!("label {c}"))
    };
    let list = |it: &mut dyn Iterator<Item = &(usize, f64)>| {
        it.map(|&(c, a)| format!("{} {a:.3}", name(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    log::info!("best test AP: {}", list(&mut by.iter().take(5)));
    log::info!("worst test AP: {}", list(&mut by.iter().rev().take(5)));
    let none = ap.per_label.len() - ap.scored;
    if none > 0 {
        log::info!("{none} labels have no positive in the test set and no AP");
    }
}
