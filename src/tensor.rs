//! Borrowed views of the inputs and outputs every backend takes, and their validation.
//!
//! All arrays are dense and row-major: element `(r, c)` of an `N x C` array is at `r * C + c`.

use half::{bf16, f16};

use crate::config::{MultiLabel, Reduction, SingleLabel};
use crate::error::{Error, Result};

/// The shape `N x C` of the logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Rows (batch size) `N`.
    pub rows: usize,
    /// Columns (classes) `C`.
    pub cols: usize,
}

impl Shape {
    /// `rows x cols`.
    pub fn new(rows: usize, cols: usize) -> Self {
        Shape { rows, cols }
    }

    /// `N * C`, or an error when it overflows `usize`.
    pub fn elements(&self) -> Result<usize> {
        self.rows.checked_mul(self.cols).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{} x {} elements overflow usize",
                self.rows, self.cols
            ))
        })
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}]", self.rows, self.cols)
    }
}

/// Element type of logits and gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }

    /// Lower-case name (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }
}

/// Logits, `N x C`. The loss is always computed in f32 whatever their type.
#[derive(Clone, Copy, Debug)]
pub enum Logits<'a> {
    /// f32 logits.
    F32(&'a [f32]),
    /// f16 logits.
    F16(&'a [f16]),
    /// bf16 logits.
    Bf16(&'a [bf16]),
}

impl Logits<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Logits::F32(v) => v.len(),
            Logits::F16(v) => v.len(),
            Logits::Bf16(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Logits::F32(_) => DType::F32,
            Logits::F16(_) => DType::F16,
            Logits::Bf16(_) => DType::Bf16,
        }
    }

    /// Element `i` widened to f32.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            Logits::F32(v) => v[i],
            Logits::F16(v) => v[i].to_f32(),
            Logits::Bf16(v) => v[i].to_f32(),
        }
    }
}

/// Multi-label targets, `N x C`.
///
/// - `F32`: soft labels in `[0, 1]`; any negative value means *unknown* (adds 0, gradient 0).
/// - `U8`: `0`, `1`, or `255` = unknown.
///
/// Any other value (NaN, above 1, other bytes) is an [`Error::InvalidTarget`].
#[derive(Clone, Copy, Debug)]
pub enum MultiTargets<'a> {
    /// Soft labels; negative = unknown.
    F32(&'a [f32]),
    /// Hard labels 0/1; 255 = unknown.
    U8(&'a [u8]),
}

/// The `u8` target value that means *unknown*.
pub const U8_UNKNOWN: u8 = 255;

impl MultiTargets<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            MultiTargets::F32(v) => v.len(),
            MultiTargets::U8(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as f32: a negative value for unknown, NaN or a value above 1 for invalid.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            MultiTargets::F32(v) => v[i],
            MultiTargets::U8(v) => match v[i] {
                0 => 0.0,
                1 => 1.0,
                U8_UNKNOWN => -1.0,
                // Any other byte is invalid: map it above 1 so that one check catches it.
                b => 1.0 + b as f32,
            },
        }
    }

    /// The error for an invalid element `i` of an `N x C` target array.
    pub fn invalid(&self, i: usize, cols: usize) -> Error {
        let (value, allowed) = match self {
            MultiTargets::F32(v) => (
                v[i].to_string(),
                "f32 targets must be in [0, 1], or negative for unknown",
            ),
            MultiTargets::U8(v) => (
                v[i].to_string(),
                "u8 targets must be 0, 1, or 255 for unknown",
            ),
        };
        let cols = cols.max(1);
        Error::InvalidTarget {
            index: i,
            row: i / cols,
            col: i % cols,
            value,
            allowed,
        }
    }

    /// Index of the first invalid element, if any.
    pub fn first_invalid(&self) -> Option<usize> {
        match self {
            MultiTargets::F32(v) => v.iter().position(|&y| y.is_nan() || y > 1.0),
            MultiTargets::U8(v) => v.iter().position(|&b| b > 1 && b != U8_UNKNOWN),
        }
    }
}

/// Single-label targets: one class index per row.
#[derive(Clone, Copy, Debug)]
pub enum ClassTargets<'a> {
    /// i64 indices (PyTorch's `long`).
    I64(&'a [i64]),
    /// i32 indices.
    I32(&'a [i32]),
    /// u32 indices.
    U32(&'a [u32]),
}

impl ClassTargets<'_> {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            ClassTargets::I64(v) => v.len(),
            ClassTargets::I32(v) => v.len(),
            ClassTargets::U32(v) => v.len(),
        }
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `r`'s class index, widened to i64.
    #[inline]
    pub fn get(&self, r: usize) -> i64 {
        match self {
            ClassTargets::I64(v) => v[r],
            ClassTargets::I32(v) => v[r] as i64,
            ClassTargets::U32(v) => v[r] as i64,
        }
    }

    /// Checks every index is in `0..classes` or equal to `ignore`.
    pub fn validate(&self, classes: usize, ignore: Option<i64>) -> Result<()> {
        for r in 0..self.len() {
            let t = self.get(r);
            if Some(t) != ignore && !(0..classes as i64).contains(&t) {
                return Err(Error::ClassOutOfRange {
                    row: r,
                    value: t,
                    classes,
                    ignore: ignore.map_or(String::new(), |i| format!(", ignore_index: {i}")),
                });
            }
        }
        Ok(())
    }
}

/// The gradient flowing into the loss (`d objective / d loss`).
#[derive(Clone, Copy, Debug)]
pub enum Upstream<'a> {
    /// One number, for a reduced loss (1 for a plain `loss.backward()`).
    Scalar(f32),
    /// An array shaped like the unreduced loss (`N x C` multi-label, `N` single-label); only
    /// with [`Reduction::None`].
    Array(&'a [f32]),
}

/// Where a backward or fused pass writes `d (upstream * loss) / d logits`, in the logits' type.
#[derive(Debug)]
pub enum GradMut<'a> {
    /// f32 gradient.
    F32(&'a mut [f32]),
    /// f16 gradient.
    F16(&'a mut [f16]),
    /// bf16 gradient.
    Bf16(&'a mut [bf16]),
}

impl GradMut<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            GradMut::F32(v) => v.len(),
            GradMut::F16(v) => v.len(),
            GradMut::Bf16(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            GradMut::F32(_) => DType::F32,
            GradMut::F16(_) => DType::F16,
            GradMut::Bf16(_) => DType::Bf16,
        }
    }

    /// A reborrow, so that the same buffer can be passed twice.
    pub fn reborrow(&mut self) -> GradMut<'_> {
        match self {
            GradMut::F32(v) => GradMut::F32(v),
            GradMut::F16(v) => GradMut::F16(v),
            GradMut::Bf16(v) => GradMut::Bf16(v),
        }
    }
}

/// Which pass to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pass {
    /// The loss only.
    Forward,
    /// The gradient only (given the upstream gradient).
    Backward,
    /// The loss and the gradient from one read of the logits.
    Fused,
}

impl Pass {
    /// True when the pass computes the loss.
    pub fn wants_loss(self) -> bool {
        !matches!(self, Pass::Backward)
    }

    /// True when the pass writes the gradient.
    pub fn wants_grad(self) -> bool {
        !matches!(self, Pass::Forward)
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Forward => "forward",
            Pass::Backward => "backward",
            Pass::Fused => "fused",
        }
    }
}

/// A computed loss.
#[derive(Clone, Debug, PartialEq)]
pub enum LossValue {
    /// A reduced loss.
    Scalar(f32),
    /// The unreduced loss ([`Reduction::None`]): `N x C` multi-label, `N` single-label.
    Array(Vec<f32>),
}

impl LossValue {
    /// The scalar, or `None` for an array.
    pub fn scalar(&self) -> Option<f32> {
        match self {
            LossValue::Scalar(v) => Some(*v),
            LossValue::Array(_) => None,
        }
    }

    /// The values as a slice (one element for a scalar).
    pub fn as_slice(&self) -> &[f32] {
        match self {
            LossValue::Scalar(v) => std::slice::from_ref(v),
            LossValue::Array(v) => v,
        }
    }
}

/// Multi-label inputs.
#[derive(Clone, Copy, Debug)]
pub struct MultiInputs<'a> {
    /// `N x C`.
    pub shape: Shape,
    /// `N x C` logits.
    pub logits: Logits<'a>,
    /// `N x C` targets.
    pub targets: MultiTargets<'a>,
    /// Upstream gradient (used by backward and fused passes).
    pub upstream: Upstream<'a>,
}

/// Single-label inputs.
#[derive(Clone, Copy, Debug)]
pub struct SingleInputs<'a> {
    /// `N x C`.
    pub shape: Shape,
    /// `N x C` logits.
    pub logits: Logits<'a>,
    /// `N` class indices.
    pub targets: ClassTargets<'a>,
    /// Upstream gradient (used by backward and fused passes).
    pub upstream: Upstream<'a>,
}

fn check_upstream(up: &Upstream<'_>, reduction: Reduction, unreduced_len: usize) -> Result<()> {
    match up {
        Upstream::Scalar(_) => Ok(()),
        Upstream::Array(a) if reduction == Reduction::None => {
            if a.len() != unreduced_len {
                Err(Error::shape(
                    "upstream",
                    format!("[{unreduced_len}]"),
                    format!("[{}]", a.len()),
                ))
            } else {
                Ok(())
            }
        }
        Upstream::Array(a) => Err(Error::InvalidArgument(format!(
            "an upstream array (length {}) needs reduction none; reduction {} takes a number",
            a.len(),
            reduction.name()
        ))),
    }
}

fn check_grad(pass: Pass, grad: &Option<GradMut<'_>>, n: usize) -> Result<()> {
    match (pass.wants_grad(), grad) {
        (true, None) => Err(Error::InvalidArgument(format!(
            "a {} pass needs a gradient buffer",
            pass.name()
        ))),
        (true, Some(g)) if g.len() != n => Err(Error::shape(
            "grad",
            format!("[{n}]"),
            format!("[{}]", g.len()),
        )),
        _ => Ok(()),
    }
}

/// Checks shapes, lengths and parameters of a multi-label call (not the target values, which
/// the backends check in their own pass). Returns `N * C`.
pub fn check_multi(
    cfg: &MultiLabel,
    pass: Pass,
    inp: &MultiInputs<'_>,
    grad: &Option<GradMut<'_>>,
) -> Result<usize> {
    let n = inp.shape.elements()?;
    cfg.validate(Some(inp.shape.cols))?;
    if inp.logits.len() != n {
        return Err(Error::shape(
            "logits",
            inp.shape,
            format!("[{}]", inp.logits.len()),
        ));
    }
    if inp.targets.len() != n {
        return Err(Error::shape(
            "targets",
            inp.shape,
            format!("[{}]", inp.targets.len()),
        ));
    }
    check_upstream(&inp.upstream, cfg.reduction, n)?;
    check_grad(pass, grad, n)?;
    if let Some(g) = grad {
        if pass.wants_grad() && g.dtype() != inp.logits.dtype() {
            return Err(Error::InvalidArgument(format!(
                "the gradient must have the logits' dtype ({}), got {}",
                inp.logits.dtype().name(),
                g.dtype().name()
            )));
        }
    }
    Ok(n)
}

/// Checks shapes, lengths, parameters and class indices of a single-label call. Returns `N * C`.
pub fn check_single(
    cfg: &SingleLabel,
    pass: Pass,
    inp: &SingleInputs<'_>,
    grad: &Option<GradMut<'_>>,
) -> Result<usize> {
    let n = inp.shape.elements()?;
    cfg.validate()?;
    if inp.logits.len() != n {
        return Err(Error::shape(
            "logits",
            inp.shape,
            format!("[{}]", inp.logits.len()),
        ));
    }
    if inp.targets.len() != inp.shape.rows {
        return Err(Error::shape(
            "targets",
            format!("[{}] (one class index per row)", inp.shape.rows),
            format!("[{}]", inp.targets.len()),
        ));
    }
    if inp.shape.cols == 0 && inp.shape.rows > 0 {
        return Err(Error::shape("logits", "at least one class", inp.shape));
    }
    check_upstream(&inp.upstream, cfg.reduction, inp.shape.rows)?;
    check_grad(pass, grad, n)?;
    if let Some(g) = grad {
        if pass.wants_grad() && g.dtype() != inp.logits.dtype() {
            return Err(Error::InvalidArgument(format!(
                "the gradient must have the logits' dtype ({}), got {}",
                inp.logits.dtype().name(),
                g.dtype().name()
            )));
        }
    }
    inp.targets.validate(inp.shape.cols, cfg.ignore_index)?;
    Ok(n)
}
