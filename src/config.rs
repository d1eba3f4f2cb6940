//! Loss configurations shared by every backend, their validation, and the parameter blocks the
//! kernels read.
//!
//! The defaults are timm 1.0.31's (`timm.loss.AsymmetricLossMultiLabel` and
//! `timm.loss.AsymmetricLossSingleLabel`). Each field's documentation names the timm argument it
//! corresponds to.

use crate::error::{Error, Result};

/// How the per-element (multi-label) or per-row (single-label) losses are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// No reduction: the loss is an array (`N x C` multi-label, `N` single-label).
    None,
    /// The sum of all contributions (the original ASL repository always sums).
    Sum,
    /// Multi-label: the sum divided by the number of *known* elements (all of them when there are
    /// no unknown targets). Single-label: the sum divided by the number of rows that count (rows
    /// whose target is not the ignore index).
    Mean,
    /// The sum divided by the number of rows `N` (timm 1.0.31's multi-label default). For the
    /// single-label loss this is the same as [`Reduction::Mean`].
    BatchMean,
}

impl Reduction {
    /// timm's name for this reduction.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Sum => "sum",
            Reduction::Mean => "mean",
            Reduction::BatchMean => "batchmean",
        }
    }

    /// Parses timm's name (`none`, `sum`, `mean`, `batchmean`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Reduction::None),
            "sum" => Ok(Reduction::Sum),
            "mean" => Ok(Reduction::Mean),
            "batchmean" => Ok(Reduction::BatchMean),
            _ => Err(Error::InvalidParameter {
                name: "reduction",
                value: s.to_string(),
                reason: "expected one of none, sum, mean, batchmean",
            }),
        }
    }
}

/// Whether the focusing weight `w = (1 - pt)^gamma` is differentiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FocalGrad {
    /// The gradient flows through `w` (timm's default, `disable_torch_grad_focal_loss=False`).
    Differentiated,
    /// `w` is a constant for the gradient (`disable_torch_grad_focal_loss=True`, the original
    /// ASL repository's `AsymmetricLoss` default and the paper's training setting).
    Detached,
}

/// `pos_weight`: a factor on the positive log term, before focusing.
#[derive(Clone, Debug, PartialEq)]
pub enum PosWeight {
    /// One factor for every class.
    Scalar(f32),
    /// One factor per class (length `C`).
    PerClass(Vec<f32>),
}

/// Multi-label (sigmoid) asymmetric loss: timm's `AsymmetricLossMultiLabel`.
///
/// Per element, with `p = sigmoid(x)`, `y` the (smoothed) target, `m = clip`:
///
/// ```text
/// q~  = min(1 - p + m, 1)                         (probability shifting; q~ = 1 - p when m = 0)
/// CE  = pw * y * ln max(p, eps) + (1 - y) * ln max(q~, eps)
/// pt  = y * p + (1 - y) * q~,   g = gamma_pos * y + gamma_neg * (1 - y)
/// w   = (1 - pt)^g              (w = 1 when both gammas are 0)
/// l   = -CE * w * class_weight[c]
/// ```
///
/// Targets: soft labels in `[0, 1]`; a negative target (or `255` in a `u8` target) means
/// *unknown*: it adds nothing to the loss and gets gradient 0.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiLabel {
    /// Focusing exponent of negatives (timm `gamma_neg`, default 4).
    pub gamma_neg: f64,
    /// Focusing exponent of positives (timm `gamma_pos`, default 1).
    pub gamma_pos: f64,
    /// Probability margin `m` of the shifted negative probability (timm `clip`, default 0.05;
    /// 0 turns it off, as timm's `None` does).
    pub clip: f64,
    /// Probability floor inside the logs (timm `eps`, default 1e-8). Not label smoothing.
    pub eps: f64,
    /// Whether the focusing weight is differentiated (timm `disable_torch_grad_focal_loss`).
    pub focal_grad: FocalGrad,
    /// Label smoothing `y <- y (1 - s) + s / 2` (timm 1.0.31 `smoothing`, default 0).
    pub smoothing: f64,
    /// Reduction (timm 1.0.31 `reduction`, default `batchmean`).
    pub reduction: Reduction,
    /// Per-class factor on the element loss (timm 1.0.31 `weight`), length `C`.
    pub class_weight: Option<Vec<f32>>,
    /// Factor on the positive log term (timm 1.0.31 `pos_weight`).
    pub pos_weight: Option<PosWeight>,
}

impl Default for MultiLabel {
    fn default() -> Self {
        MultiLabel {
            gamma_neg: 4.0,
            gamma_pos: 1.0,
            clip: 0.05,
            eps: 1e-8,
            focal_grad: FocalGrad::Differentiated,
            smoothing: 0.0,
            reduction: Reduction::BatchMean,
            class_weight: None,
            pos_weight: None,
        }
    }
}

impl MultiLabel {
    /// The paper's training setting (the original repository's `train.py`): `gamma_pos` 0,
    /// detached focusing, `sum` reduction.
    pub fn paper() -> Self {
        MultiLabel {
            gamma_pos: 0.0,
            focal_grad: FocalGrad::Detached,
            reduction: Reduction::Sum,
            ..Default::default()
        }
    }

    /// Binary cross-entropy with an `eps` floor: both gammas 0, no clip.
    pub fn bce() -> Self {
        MultiLabel {
            gamma_neg: 0.0,
            gamma_pos: 0.0,
            clip: 0.0,
            ..Default::default()
        }
    }

    /// Symmetric focal loss with exponent `gamma`: equal gammas, no clip.
    pub fn focal(gamma: f64) -> Self {
        MultiLabel {
            gamma_neg: gamma,
            gamma_pos: gamma,
            clip: 0.0,
            ..Default::default()
        }
    }

    /// Checks every parameter; `classes` is `C` when known (for the per-class vectors).
    pub fn validate(&self, classes: Option<usize>) -> Result<()> {
        check_gamma("gamma_neg", self.gamma_neg)?;
        check_gamma("gamma_pos", self.gamma_pos)?;
        if !(0.0..=1.0).contains(&self.clip) {
            return Err(bad(
                "clip",
                self.clip,
                "must be in [0, 1] (0 turns clipping off)",
            ));
        }
        if !(0.0..1.0).contains(&self.eps) {
            return Err(bad("eps", self.eps, "must be in [0, 1)"));
        }
        if !(0.0..1.0).contains(&self.smoothing) {
            return Err(bad("smoothing", self.smoothing, "must be in [0, 1)"));
        }
        if let Some(w) = &self.class_weight {
            check_vec("class_weight", w, classes)?;
        }
        match &self.pos_weight {
            Some(PosWeight::Scalar(v)) if !v.is_finite() => {
                return Err(bad("pos_weight", *v as f64, "must be finite"));
            }
            Some(PosWeight::PerClass(w)) => check_vec("pos_weight", w, classes)?,
            _ => {}
        }
        Ok(())
    }

    /// `pos_weight` of class `c` (1 when unset).
    pub fn pos_weight_of(&self, c: usize) -> f32 {
        match &self.pos_weight {
            None => 1.0,
            Some(PosWeight::Scalar(v)) => *v,
            Some(PosWeight::PerClass(w)) => w[c],
        }
    }

    /// `class_weight` of class `c` (1 when unset).
    pub fn class_weight_of(&self, c: usize) -> f32 {
        self.class_weight.as_ref().map_or(1.0, |w| w[c])
    }
}

/// Single-label (softmax) asymmetric loss: timm's `AsymmetricLossSingleLabel`.
///
/// Per row, with `ln p = log_softmax(z)`, target class `y` and `K = C` classes:
///
/// ```text
/// a_y = 1 - s + s / K,  a_j = s / K              (label smoothing s; timm calls it `eps`)
/// w_y = (1 - p_y)^gamma_pos,  w_j = p_j^gamma_neg
/// l   = -sum_j a_j w_j ln p_j
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SingleLabel {
    /// Focusing exponent of the target class (timm `gamma_pos`, default 1).
    pub gamma_pos: f64,
    /// Focusing exponent of the other classes (timm `gamma_neg`, default 4). It only acts on the
    /// smoothing mass: with `smoothing = 0` it has no effect.
    pub gamma_neg: f64,
    /// Label smoothing (timm's single-label `eps`, default 0.1).
    pub smoothing: f64,
    /// Reduction: `mean` over the rows that count (default), `sum`, or `none` (one loss per row).
    /// `batchmean` is accepted as a synonym of `mean`.
    pub reduction: Reduction,
    /// Rows whose target equals this index add 0 and get gradient 0 (not in timm).
    pub ignore_index: Option<i64>,
}

impl Default for SingleLabel {
    fn default() -> Self {
        SingleLabel {
            gamma_pos: 1.0,
            gamma_neg: 4.0,
            smoothing: 0.1,
            reduction: Reduction::Mean,
            ignore_index: None,
        }
    }
}

impl SingleLabel {
    /// Plain cross-entropy: both gammas and smoothing 0.
    pub fn cross_entropy() -> Self {
        SingleLabel {
            gamma_pos: 0.0,
            gamma_neg: 0.0,
            smoothing: 0.0,
            ..Default::default()
        }
    }

    /// Checks every parameter.
    pub fn validate(&self) -> Result<()> {
        check_gamma("gamma_neg", self.gamma_neg)?;
        check_gamma("gamma_pos", self.gamma_pos)?;
        if !(0.0..1.0).contains(&self.smoothing) {
            return Err(bad("smoothing", self.smoothing, "must be in [0, 1)"));
        }
        if let Some(i) = self.ignore_index {
            if i32::try_from(i).is_err() {
                return Err(Error::InvalidParameter {
                    name: "ignore_index",
                    value: i.to_string(),
                    reason: "must fit in 32 bits (the GPU kernels' class index type)",
                });
            }
        }
        Ok(())
    }
}

fn bad(name: &'static str, value: f64, reason: &'static str) -> Error {
    Error::InvalidParameter {
        name,
        value: value.to_string(),
        reason,
    }
}

fn check_gamma(name: &'static str, g: f64) -> Result<()> {
    if g.is_finite() && g >= 0.0 {
        Ok(())
    } else {
        Err(bad(name, g, "must be finite and >= 0"))
    }
}

fn check_vec(name: &'static str, w: &[f32], classes: Option<usize>) -> Result<()> {
    if let Some(c) = classes {
        if w.len() != c {
            return Err(Error::shape(
                name,
                format!("[{c}] (one per class)"),
                format!("[{}]", w.len()),
            ));
        }
    }
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidParameter {
            name,
            value: format!("{} at class {i}", w[i]),
            reason: "every weight must be finite",
        });
    }
    Ok(())
}

/// Bit flags of [`MlParams::flags`].
pub mod ml_flags {
    /// The focusing weight is detached ([`super::FocalGrad::Detached`]).
    pub const DETACHED: u32 = 1;
    /// A per-class `class_weight` vector is bound.
    pub const CLASS_WEIGHT: u32 = 2;
    /// A per-class `pos_weight` vector is bound (otherwise `MlParams::pos_weight` is used).
    pub const POS_WEIGHT_VEC: u32 = 4;
    /// Both gammas are 0: no focusing at all (`w = 1`).
    pub const NO_FOCUS: u32 = 8;
    /// Clipping is on (`clip > 0`).
    pub const CLIP: u32 = 16;
}

/// The uniform parameter block of the multi-label kernels.
///
/// NOTE: mirrored field for field by `struct Params` in `shaders/multi_label.wgsl` and
/// `struct MlParams` in `kernels/asl_math.cuh`; change all three together.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MlParams {
    /// Rows `N`.
    pub rows: u32,
    /// Columns (classes) `C`.
    pub cols: u32,
    /// `gamma_pos`.
    pub gamma_pos: f32,
    /// `gamma_neg`.
    pub gamma_neg: f32,
    /// `clip` (0 when off).
    pub clip: f32,
    /// `ln(eps)` (negative infinity when `eps = 0`).
    pub ln_eps: f32,
    /// Label smoothing `s`: known targets become `y (1 - s) + s / 2`.
    pub smoothing: f32,
    /// Scalar `pos_weight` (1 when unset or per class).
    pub pos_weight: f32,
    /// Factor on every gradient element: upstream x reduction scale (1, 1/N or 1/known). For
    /// `Reduction::None` with an upstream array it is 1 and the array is read per element.
    pub grad_scale: f32,
    /// [`ml_flags`].
    pub flags: u32,
    /// Padding to 16 bytes (uniform buffer layout).
    pub _pad: [u32; 2],
}

impl MlParams {
    /// The block for `cfg` on an `rows x cols` input, with the given gradient scale.
    pub fn new(cfg: &MultiLabel, rows: usize, cols: usize, grad_scale: f32) -> Self {
        let mut flags = 0;
        if cfg.focal_grad == FocalGrad::Detached {
            flags |= ml_flags::DETACHED;
        }
        if cfg.class_weight.is_some() {
            flags |= ml_flags::CLASS_WEIGHT;
        }
        if matches!(cfg.pos_weight, Some(PosWeight::PerClass(_))) {
            flags |= ml_flags::POS_WEIGHT_VEC;
        }
        if cfg.gamma_pos == 0.0 && cfg.gamma_neg == 0.0 {
            flags |= ml_flags::NO_FOCUS;
        }
        if cfg.clip > 0.0 {
            flags |= ml_flags::CLIP;
        }
        let pos_weight = match cfg.pos_weight {
            Some(PosWeight::Scalar(v)) => v,
            _ => 1.0,
        };
        MlParams {
            rows: rows as u32,
            cols: cols as u32,
            gamma_pos: cfg.gamma_pos as f32,
            gamma_neg: cfg.gamma_neg as f32,
            clip: cfg.clip as f32,
            ln_eps: (cfg.eps as f32).ln(),
            smoothing: cfg.smoothing as f32,
            pos_weight,
            grad_scale,
            flags,
            _pad: [0; 2],
        }
    }
}

/// The uniform parameter block of the single-label kernels.
///
/// NOTE: mirrored by `struct Params` in `shaders/single_label.wgsl` and `struct SlParams` in
/// `kernels/asl_math.cuh`; change all three together.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SlParams {
    /// Rows `N`.
    pub rows: u32,
    /// Classes `C`.
    pub cols: u32,
    /// `gamma_pos`.
    pub gamma_pos: f32,
    /// `gamma_neg`.
    pub gamma_neg: f32,
    /// Smoothing mass of the target class: `1 - s + s / C`.
    pub a_target: f32,
    /// Smoothing mass of every other class: `s / C`.
    pub a_other: f32,
    /// Factor on every gradient element (upstream x reduction scale).
    pub grad_scale: f32,
    /// 1 when `ignore_index` is set.
    pub has_ignore: u32,
    /// The ignore index (only meaningful with `has_ignore`), as the kernels' 32-bit class type.
    pub ignore_index: i32,
    /// Padding to 16 bytes.
    pub _pad: [u32; 3],
}

impl SlParams {
    /// The block for `cfg` on an `rows x cols` input, with the given gradient scale.
    pub fn new(cfg: &SingleLabel, rows: usize, cols: usize, grad_scale: f32) -> Self {
        let k = cols.max(1) as f64;
        let s = cfg.smoothing;
        SlParams {
            rows: rows as u32,
            cols: cols as u32,
            gamma_pos: cfg.gamma_pos as f32,
            gamma_neg: cfg.gamma_neg as f32,
            a_target: (1.0 - s + s / k) as f32,
            a_other: (s / k) as f32,
            grad_scale,
            has_ignore: cfg.ignore_index.is_some() as u32,
            // `SingleLabel::validate` keeps the ignore index within i32.
            ignore_index: cfg.ignore_index.map_or(-1, |i| i as i32),
            _pad: [0; 3],
        }
    }
}
