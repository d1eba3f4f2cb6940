//! `asl eval`: the loss (and its gradient) of logits and targets stored as `.npy` files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use asymloss::{
    ClassTargets, FocalGrad, GradMut, Logits, LossValue, MultiInputs, MultiLabel, MultiTargets,
    Pass, PosWeight, Reduction, Shape, SingleInputs, SingleLabel, Upstream,
};
use clap::ValueEnum;
use half::f16;
use serde::Serialize;

use crate::backends::{self, Choice};
use crate::f64ref::{self, Up64};
use crate::fail::{usage, Failure};
use crate::npy::{self, Array, AtomicFile, Data};

/// Which loss (`--loss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LossKind {
    /// Multi-label when the targets have the logits' shape, single-label for one integer per row.
    Auto,
    /// Sigmoid ASL (timm `AsymmetricLossMultiLabel`).
    MultiLabel,
    /// Softmax ASL (timm `AsymmetricLossSingleLabel`).
    SingleLabel,
}

/// `--focal-grad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FocalGradArg {
    /// The gradient flows through the focusing weight (timm's default).
    Differentiated,
    /// The focusing weight is a constant for the gradient (the paper's training setting).
    Detached,
}

/// `--reduction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReductionArg {
    /// Sum / N rows (multi-label default; a synonym of mean for single-label).
    Batchmean,
    /// Sum of all contributions (the original ASL code).
    Sum,
    /// Sum / known elements (multi-label) or / rows that count (single-label; its default).
    Mean,
    /// No reduction: an N x C (multi-label) or N (single-label) array.
    None,
}

impl From<ReductionArg> for Reduction {
    fn from(r: ReductionArg) -> Self {
        match r {
            ReductionArg::Batchmean => Reduction::BatchMean,
            ReductionArg::Sum => Reduction::Sum,
            ReductionArg::Mean => Reduction::Mean,
            ReductionArg::None => Reduction::None,
        }
    }
}

/// Evaluate the loss of .npy logits and targets.
///
/// Parameters left out take each loss's defaults (timm 1.0.31): multi-label gamma_neg 4,
/// gamma_pos 1, clip 0.05, eps 1e-8, differentiated focusing, smoothing 0, batchmean;
/// single-label gamma_pos 1, gamma_neg 4, smoothing 0.1, mean.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Logits: an (N, C) float32, float16 or float64 array (float64 runs the float64 reference).
Multi-label targets: an (N, C) float, uint8, bool or integer array: 1 positive, 0 negative,
  soft labels in [0, 1]; negative values (and 255 in uint8) mean unknown (no loss, no gradient).
Single-label targets: (N,) integer class indices.
Outputs (--grad-out, --loss-out) are written whole or not at all.
--json prints one object with loss, loss_shape, backend, elements, seconds; loss is null for
  --reduction none (use --loss-out) and when it is not finite; seconds is the wall time of the
  computation (including a GPU backend's one-time kernel compilation), not of the file I/O.")]
pub struct Args {
    /// (N, C) logits (.npy).
    #[arg(long, value_name = "X.npy")]
    pub logits: PathBuf,
    /// Targets (.npy): (N, C) for multi-label, (N,) class indices for single-label.
    #[arg(long, value_name = "Y.npy")]
    pub targets: PathBuf,
    /// Which loss; auto decides from the targets' shape.
    #[arg(long, value_enum, default_value = "auto")]
    pub loss: LossKind,
    /// Backend (auto: the best available; f64 logits always run the float64 reference).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: Choice,
    /// The loss parameters.
    #[command(flatten)]
    pub flags: LossFlags,
    /// Rows with this class index add 0 and get gradient 0 (single-label).
    #[arg(long, value_name = "I", allow_hyphen_values = true)]
    pub ignore_index: Option<i64>,
    /// Gradient flowing into the loss: a number (default 1), or with --reduction none an array
    /// shaped like the loss.
    #[arg(long, value_name = "F|U.npy", allow_hyphen_values = true)]
    pub upstream: Option<String>,
    /// Write d(upstream * loss)/d logits here, in the logits' dtype.
    #[arg(long, value_name = "G.npy")]
    pub grad_out: Option<PathBuf>,
    /// Write the loss here (a 0-d array, or the unreduced array for --reduction none).
    #[arg(long, value_name = "L.npy")]
    pub loss_out: Option<PathBuf>,
    /// Print one JSON object: loss, loss_shape, backend, elements, seconds.
    #[arg(long)]
    pub json: bool,
}

/// Logits as read.
enum LogitsBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
    F64(Vec<f64>),
}

/// Targets as the library takes them.
enum TargetsBuf {
    F32(Vec<f32>),
    U8(Vec<u8>),
    Class(Vec<i64>),
}

/// A number or an array file (`--pos-weight`, `--upstream`).
enum NumOrFile {
    Num(f64),
    File(Array),
}

/// The loss parameters `eval` and `train` share, each with timm's default when absent.
#[derive(clap::Args, Debug)]
pub struct LossFlags {
    /// Focusing exponent of negatives (timm gamma_neg).
    #[arg(long, value_name = "F", allow_hyphen_values = true)]
    pub gamma_neg: Option<f64>,
    /// Focusing exponent of positives (timm gamma_pos).
    #[arg(long, value_name = "F", allow_hyphen_values = true)]
    pub gamma_pos: Option<f64>,
    /// Probability margin of the shifted negative probability, 0 = off (multi-label; timm clip).
    #[arg(long, value_name = "F", allow_hyphen_values = true)]
    pub clip: Option<f64>,
    /// Probability floor inside the logs (multi-label; timm eps).
    #[arg(long, value_name = "F", allow_hyphen_values = true)]
    pub eps: Option<f64>,
    /// Label smoothing (multi-label smoothing; single-label timm eps).
    #[arg(long, value_name = "F", allow_hyphen_values = true)]
    pub smoothing: Option<f64>,
    /// Whether the focusing weight is differentiated (multi-label; timm
    /// disable_torch_grad_focal_loss).
    #[arg(long, value_enum)]
    pub focal_grad: Option<FocalGradArg>,
    /// Reduction (`asl train` refuses none: a step needs one number).
    #[arg(long, value_enum)]
    pub reduction: Option<ReductionArg>,
    /// Per-class weight, a (C,) array (multi-label; timm weight).
    #[arg(long, value_name = "W.npy")]
    pub class_weight: Option<PathBuf>,
    /// Factor on the positive log term: a number, or a (C,) array (multi-label; timm pos_weight).
    #[arg(long, value_name = "F|W.npy", allow_hyphen_values = true)]
    pub pos_weight: Option<String>,
}

impl LossFlags {
    /// Applies every multi-label flag given to `c` (per-class vectors of length `cols`) and
    /// validates the result.
    pub fn apply_multi_label(&self, c: &mut MultiLabel, cols: usize) -> Result<(), Failure> {
        c.gamma_neg = self.gamma_neg.unwrap_or(c.gamma_neg);
        c.gamma_pos = self.gamma_pos.unwrap_or(c.gamma_pos);
        c.clip = self.clip.unwrap_or(c.clip);
        c.eps = self.eps.unwrap_or(c.eps);
        c.smoothing = self.smoothing.unwrap_or(c.smoothing);
        if let Some(f) = self.focal_grad {
            c.focal_grad = match f {
                FocalGradArg::Differentiated => FocalGrad::Differentiated,
                FocalGradArg::Detached => FocalGrad::Detached,
            };
        }
        if let Some(r) = self.reduction {
            c.reduction = r.into();
        }
        if let Some(p) = &self.class_weight {
            c.class_weight = Some(per_class(&npy::read(p)?, "class weight", cols)?);
        }
        if let Some(s) = &self.pos_weight {
            c.pos_weight = Some(match num_or_file(s)? {
                NumOrFile::Num(v) => PosWeight::Scalar(v as f32),
                NumOrFile::File(a) => PosWeight::PerClass(per_class(&a, "pos weight", cols)?),
            });
        }
        c.validate(Some(cols))?;
        Ok(())
    }
}

fn num_or_file(s: &str) -> Result<NumOrFile, Failure> {
    match s.trim().parse::<f64>() {
        Ok(v) => Ok(NumOrFile::Num(v)),
        Err(_) => npy::read(Path::new(s)).map(NumOrFile::File),
    }
}

/// Any numeric array as f64 (the per-class vectors and the upstream array).
fn to_f64(a: &Array) -> Vec<f64> {
    match &a.data {
        Data::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
        Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
        Data::F64(v) => v.clone(),
        Data::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
        Data::U8(v) => v.iter().map(|&x| x as f64).collect(),
        Data::Int(v) => v.iter().map(|&x| x as f64).collect(),
        Data::Uint(v) => v.iter().map(|&x| x as f64).collect(),
    }
}

fn per_class(a: &Array, what: &str, cols: usize) -> Result<Vec<f32>, Failure> {
    if a.shape != [cols] {
        return Err(a.err(format!(
            "{what} must have shape ({cols},), one value per class; got {}",
            a.shape_str()
        )));
    }
    if matches!(a.data, Data::Bool(_)) {
        return Err(a.err(format!("{what} must be numeric, got bool")));
    }
    Ok(to_f64(a).into_iter().map(|v| v as f32).collect())
}

fn multi_targets(a: Array, logits_shape: &[usize]) -> Result<TargetsBuf, Failure> {
    if a.shape != logits_shape {
        return Err(a.err(format!(
            "multi-label targets must have the logits' shape {}; got {}",
            npy::shape_str(logits_shape),
            a.shape_str()
        )));
    }
    Ok(match a.data {
        Data::U8(v) => TargetsBuf::U8(v),
        Data::Bool(v) => TargetsBuf::U8(v.into_iter().map(u8::from).collect()),
        Data::F32(v) => TargetsBuf::F32(v),
        // Other floats and integers: negative means unknown, as for f32.
        _ => TargetsBuf::F32(to_f64(&a).into_iter().map(|v| v as f32).collect()),
    })
}

fn class_targets(a: Array, rows: usize) -> Result<TargetsBuf, Failure> {
    if a.shape != [rows] && a.shape != [rows, 1] {
        return Err(a.err(format!(
            "single-label targets must have shape ({rows},), one class index per row; got {}",
            a.shape_str()
        )));
    }
    let v = match a.data {
        Data::Int(v) => v,
        Data::U8(v) => v.into_iter().map(i64::from).collect(),
        Data::Uint(ref v) => {
            let mut out = Vec::with_capacity(v.len());
            for (r, &x) in v.iter().enumerate() {
                out.push(
                    i64::try_from(x)
                        .map_err(|_| a.err(format!("class index out of range at row {r}: {x}")))?,
                );
            }
            out
        }
        ref other => {
            return Err(a.err(format!(
                "single-label targets must be integer class indices, got {} ({})",
                other.kind(),
                a.descr
            )))
        }
    };
    Ok(TargetsBuf::Class(v))
}

/// The loss and gradient as computed (f32 from a backend, f64 from the f64 reference).
enum Outcome {
    F32 {
        loss: LossValue,
        grad: Option<GradBuf>,
    },
    F64 {
        loss: Vec<f64>,
        grad: Vec<f64>,
    },
}

enum GradBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

#[derive(Serialize)]
#[serde(untagged)]
enum Num {
    F32(f32),
    F64(f64),
}

#[derive(Serialize)]
struct JsonOut {
    loss: Option<Num>,
    loss_shape: Vec<usize>,
    backend: String,
    elements: usize,
    seconds: f64,
}

fn count_non_finite(logits: &LogitsBuf) -> (usize, usize, usize) {
    fn tally(it: impl Iterator<Item = f64>) -> (usize, usize, usize) {
        it.fold((0, 0, 0), |(n, p, m), v| {
            if v.is_nan() {
                (n + 1, p, m)
            } else if v == f64::INFINITY {
                (n, p + 1, m)
            } else if v == f64::NEG_INFINITY {
                (n, p, m + 1)
            } else {
                (n, p, m)
            }
        })
    }
    match logits {
        LogitsBuf::F32(v) => tally(v.iter().map(|&x| x as f64)),
        LogitsBuf::F16(v) => tally(v.iter().map(|x| x.to_f64())),
        LogitsBuf::F64(v) => tally(v.iter().copied()),
    }
}

/// Runs `asl eval`.
pub fn run(args: Args) -> Result<(), Failure> {
    // 1. Logits: a 2-D float array.
    let la = npy::read(&args.logits)?;
    let (rows, cols) = match la.shape[..] {
        [r, c] => (r, c),
        _ => {
            return Err(la.err(format!(
                "logits must be a 2-D (N, C) array; got shape {}",
                la.shape_str()
            )))
        }
    };
    let logits_shape = la.shape.clone();
    let logits_kind = la.data.kind();
    let logits = match la.data {
        Data::F32(v) => LogitsBuf::F32(v),
        Data::F16(v) => LogitsBuf::F16(v),
        Data::F64(v) => LogitsBuf::F64(v),
        ref other => {
            return Err(la.err(format!(
                "logits must be float32, float16 or float64; got {} ({})",
                other.kind(),
                la.descr
            )))
        }
    };

    // 2. Targets, and which loss they call for.
    let ta = npy::read(&args.targets)?;
    let kind = match args.loss {
        LossKind::Auto if ta.shape == logits_shape => LossKind::MultiLabel,
        LossKind::Auto if ta.shape == [rows] || (ta.shape == [rows, 1] && cols != 1) => {
            LossKind::SingleLabel
        }
        LossKind::Auto => {
            return Err(ta.err(format!(
                "targets of shape {} fit neither the multi-label loss ({rows}, {cols}) nor the \
                 single-label loss ({rows},)",
                ta.shape_str()
            )))
        }
        k => k,
    };
    let multi = kind == LossKind::MultiLabel;
    log::info!(
        "loss: {}",
        if multi { "multi-label" } else { "single-label" }
    );
    let targets = if multi {
        multi_targets(ta, &logits_shape)?
    } else {
        class_targets(ta, rows)?
    };

    // 3. Configuration: flags that do not apply to the chosen loss are refused, not ignored.
    let misplaced = |flag: &str, which: &str| {
        usage(format!(
            "{flag} applies to the {which} loss only (see asl eval --help)"
        ))
    };
    let (ml, sl) = if multi {
        if args.ignore_index.is_some() {
            return Err(misplaced("--ignore-index", "single-label"));
        }
        let mut c = MultiLabel::default();
        args.flags.apply_multi_label(&mut c, cols)?;
        (Some(c), None)
    } else {
        for (given, flag) in [
            (args.flags.clip.is_some(), "--clip"),
            (args.flags.eps.is_some(), "--eps"),
            (args.flags.focal_grad.is_some(), "--focal-grad"),
            (args.flags.class_weight.is_some(), "--class-weight"),
            (args.flags.pos_weight.is_some(), "--pos-weight"),
        ] {
            if given {
                return Err(misplaced(flag, "multi-label"));
            }
        }
        let mut c = SingleLabel::default();
        c.gamma_neg = args.flags.gamma_neg.unwrap_or(c.gamma_neg);
        c.gamma_pos = args.flags.gamma_pos.unwrap_or(c.gamma_pos);
        c.smoothing = args.flags.smoothing.unwrap_or(c.smoothing);
        if let Some(r) = args.flags.reduction {
            c.reduction = r.into();
        }
        c.ignore_index = args.ignore_index;
        c.validate()?;
        (None, Some(c))
    };
    let reduction = ml
        .as_ref()
        .map_or_else(|| sl.as_ref().unwrap().reduction, |c| c.reduction);
    let loss_shape: Vec<usize> = match (reduction, multi) {
        (Reduction::None, true) => vec![rows, cols],
        (Reduction::None, false) => vec![rows],
        _ => vec![],
    };

    // 4. Upstream gradient.
    let upstream: Option<Vec<f64>>;
    let up_scalar = match args.upstream.as_deref().map(num_or_file).transpose()? {
        None => {
            upstream = None;
            1.0
        }
        Some(NumOrFile::Num(v)) => {
            upstream = None;
            v
        }
        Some(NumOrFile::File(a)) => {
            if reduction != Reduction::None {
                return Err(a.err(format!(
                    "an upstream array needs --reduction none (reduction {} takes a number)",
                    reduction.name()
                )));
            }
            if a.shape != loss_shape {
                return Err(a.err(format!(
                    "the upstream array must have the unreduced loss's shape {}; got {}",
                    npy::shape_str(&loss_shape),
                    a.shape_str()
                )));
            }
            upstream = Some(to_f64(&a));
            1.0
        }
    };
    if !up_scalar.is_finite() {
        return Err(usage(format!("--upstream must be finite, got {up_scalar}")));
    }

    // 5. Non-finite logits are allowed (NaN propagates, infinities are limits) but worth a word.
    let (nan, pinf, ninf) = count_non_finite(&logits);
    if nan + pinf + ninf > 0 {
        log::warn!(
            "{} of {} logits are not finite ({nan} NaN, {pinf} +inf, {ninf} -inf): NaN gives a \
             NaN loss and gradient, infinities are taken as their limits",
            nan + pinf + ninf,
            rows * cols
        );
    }

    // 6. Outputs: open them now so that an unwritable path fails before any work.
    if let (Some(g), Some(l)) = (&args.grad_out, &args.loss_out) {
        if g == l {
            return Err(usage(format!(
                "--grad-out and --loss-out both name {}",
                g.display()
            )));
        }
    }
    let grad_file = args
        .grad_out
        .as_deref()
        .map(AtomicFile::create)
        .transpose()?;
    let loss_file = args
        .loss_out
        .as_deref()
        .map(AtomicFile::create)
        .transpose()?;
    let want_grad = grad_file.is_some();

    // 7. Compute.
    let shape = Shape::new(rows, cols);
    let (outcome, backend_name, seconds) = if let LogitsBuf::F64(x) = &logits {
        if !matches!(args.backend, Choice::Auto | Choice::Reference) {
            log::warn!("float64 logits run the float64 reference; --backend ignored");
        }
        let up = match &upstream {
            Some(a) => Up64::Array(a),
            None => Up64::Scalar(up_scalar),
        };
        let t0 = Instant::now();
        let out = match (&ml, &sl, &targets) {
            (Some(c), _, TargetsBuf::F32(t)) => {
                f64ref::multi_label(c, rows, cols, x, MultiTargets::F32(t), up)
            }
            (Some(c), _, TargetsBuf::U8(t)) => {
                f64ref::multi_label(c, rows, cols, x, MultiTargets::U8(t), up)
            }
            (_, Some(c), TargetsBuf::Class(t)) => {
                f64ref::single_label(c, rows, cols, x, ClassTargets::I64(t), up)
            }
            _ => unreachable!("targets match the loss"),
        }?;
        let secs = t0.elapsed().as_secs_f64();
        (
            Outcome::F64 {
                loss: out.loss,
                grad: out.grad,
            },
            "reference (f64)".to_string(),
            secs,
        )
    } else {
        let picked = backends::pick(args.backend)?;
        let b = &picked.backend;
        let up32: Option<Vec<f32>> = upstream.map(|u| u.into_iter().map(|v| v as f32).collect());
        let up = match &up32 {
            Some(a) => Upstream::Array(a),
            None => Upstream::Scalar(up_scalar as f32),
        };
        let lg = match &logits {
            LogitsBuf::F32(v) => Logits::F32(v),
            LogitsBuf::F16(v) => Logits::F16(v),
            LogitsBuf::F64(_) => unreachable!(),
        };
        // Poisoned, so that an element a backend never wrote cannot pass for a value.
        let mut grad = want_grad.then(|| match lg {
            Logits::F16(_) => GradBuf::F16(vec![f16::NAN; rows * cols]),
            _ => GradBuf::F32(vec![f32::NAN; rows * cols]),
        });
        let gm = grad.as_mut().map(|g| match g {
            GradBuf::F32(v) => GradMut::F32(v),
            GradBuf::F16(v) => GradMut::F16(v),
        });
        let pass = if want_grad {
            Pass::Fused
        } else {
            Pass::Forward
        };
        let t0 = Instant::now();
        let loss = match (&ml, &sl, &targets) {
            (Some(c), _, t) => {
                let targets = match t {
                    TargetsBuf::F32(v) => MultiTargets::F32(v),
                    TargetsBuf::U8(v) => MultiTargets::U8(v),
                    TargetsBuf::Class(_) => unreachable!(),
                };
                let inp = MultiInputs {
                    shape,
                    logits: lg,
                    targets,
                    upstream: up,
                };
                b.multi_label(c, pass, &inp, gm)?
            }
            (_, Some(c), TargetsBuf::Class(t)) => {
                let inp = SingleInputs {
                    shape,
                    logits: lg,
                    targets: ClassTargets::I64(t),
                    upstream: up,
                };
                b.single_label(c, pass, &inp, gm)?
            }
            _ => unreachable!("targets match the loss"),
        };
        b.synchronize()?;
        let secs = t0.elapsed().as_secs_f64();
        let loss = loss.ok_or_else(|| crate::fail::runtime("the backend returned no loss"))?;
        (Outcome::F32 { loss, grad }, picked.name(), secs)
    };

    // 8. Write the outputs (all or nothing): each straight from its array into its temporary
    //    file, then every rename; then report.
    let mut files = Vec::new();
    if let Some(mut f) = grad_file {
        match &outcome {
            Outcome::F64 { grad, .. } => f.write_npy(&logits_shape, grad)?,
            Outcome::F32 {
                grad: Some(GradBuf::F32(g)),
                ..
            } => f.write_npy(&logits_shape, g)?,
            Outcome::F32 {
                grad: Some(GradBuf::F16(g)),
                ..
            } => f.write_npy(&logits_shape, g)?,
            Outcome::F32 { grad: None, .. } => unreachable!("a fused pass writes the gradient"),
        }
        files.push(f);
    }
    if let Some(mut f) = loss_file {
        match &outcome {
            Outcome::F64 { loss, .. } => f.write_npy(&loss_shape, loss)?,
            Outcome::F32 { loss, .. } => f.write_npy(&loss_shape, loss.as_slice())?,
        }
        files.push(f);
    }
    let written: Vec<PathBuf> = files.iter().map(|f| f.dest().to_path_buf()).collect();
    npy::commit_all(files)?;

    let scalar = match &outcome {
        Outcome::F64 { loss, .. } if loss_shape.is_empty() => Some(Num::F64(loss[0])),
        Outcome::F32 {
            loss: LossValue::Scalar(v),
            ..
        } => Some(Num::F32(*v)),
        _ => None,
    };
    if args.json {
        let finite = match &scalar {
            Some(Num::F32(v)) => v.is_finite(),
            Some(Num::F64(v)) => v.is_finite(),
            None => true,
        };
        let out = JsonOut {
            loss: if finite { scalar } else { None },
            loss_shape,
            backend: backend_name,
            elements: rows * cols,
            seconds,
        };
        println!(
            "{}",
            serde_json::to_string(&out).expect("plain data serialises")
        );
        return Ok(());
    }
    let what = format!(
        "{}, {}; ({rows}, {cols}) {} logits; backend {backend_name}; {}",
        if multi { "multi-label" } else { "single-label" },
        reduction.name(),
        logits_kind,
        fmt_secs(seconds)
    );
    match scalar {
        Some(Num::F32(v)) => println!("loss: {v} ({what})"),
        Some(Num::F64(v)) => println!("loss: {v} ({what})"),
        None => {
            let vals: Vec<f64> = match &outcome {
                Outcome::F64 { loss, .. } => loss.clone(),
                Outcome::F32 { loss, .. } => loss.as_slice().iter().map(|&v| v as f64).collect(),
            };
            let sum: f64 = vals.iter().sum();
            let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mean = sum / vals.len().max(1) as f64;
            if vals.is_empty() {
                println!(
                    "loss: unreduced, shape {}: empty ({what})",
                    npy::shape_str(&loss_shape)
                );
            } else {
                println!(
                "loss: unreduced, shape {}: sum {sum:.7e}, mean {mean:.7e}, max {max:.7e} ({what})",
                npy::shape_str(&loss_shape),
            );
            }
        }
    }
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// `1.23 ms`, `45.6 us`, `2.01 s`.
pub fn fmt_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.1} us", s * 1e6)
    }
}
