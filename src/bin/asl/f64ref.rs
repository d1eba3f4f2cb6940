//! The float64 reference on float64 logits, for `asl eval` on an `f8` array.
//!
//! The library's reference takes the f32/f16/bf16 logits every backend takes and widens them;
//! f64 logits would lose their low bits on the way. This module runs the same per-element and
//! per-row formulas ([`reference::ml_element`], [`reference::sl_row`]) and the same reductions,
//! in the same order, on the f64 values as they are. On f32-representable logits it gives
//! bitwise the library reference's result (tested below).

use asymloss::reference::{self, MlElem};
use asymloss::{ClassTargets, Error, MultiLabel, MultiTargets, Reduction, SingleLabel};

/// The gradient flowing into the loss, in f64.
#[derive(Clone, Copy, Debug)]
pub enum Up64<'a> {
    /// One number.
    Scalar(f64),
    /// Shaped like the unreduced loss (reduction `none` only).
    Array(&'a [f64]),
}

impl Up64<'_> {
    fn at(&self, i: usize) -> f64 {
        match self {
            Up64::Scalar(v) => *v,
            Up64::Array(a) => a[i],
        }
    }

    fn check(&self, reduction: Reduction, unreduced_len: usize) -> Result<(), Error> {
        match self {
            Up64::Scalar(_) => Ok(()),
            Up64::Array(a) if reduction != Reduction::None => Err(Error::InvalidArgument(format!(
                "an upstream array (length {}) needs reduction none; reduction {} takes a number",
                a.len(),
                reduction.name()
            ))),
            Up64::Array(a) if a.len() != unreduced_len => Err(Error::shape(
                "upstream",
                format!("[{unreduced_len}]"),
                format!("[{}]", a.len()),
            )),
            Up64::Array(_) => Ok(()),
        }
    }
}

/// Loss (one value, or the unreduced array) and gradient, in f64.
#[derive(Clone, Debug)]
pub struct Out64 {
    /// One value for a reduced loss, else `N x C` (multi-label) or `N` (single-label).
    pub loss: Vec<f64>,
    /// `d (upstream * loss) / d logits`, `N x C`.
    pub grad: Vec<f64>,
}

/// Multi-label loss and gradient of f64 `rows x cols` logits.
pub fn multi_label(
    cfg: &MultiLabel,
    rows: usize,
    cols: usize,
    logits: &[f64],
    targets: MultiTargets<'_>,
    up: Up64<'_>,
) -> Result<Out64, Error> {
    // 1. Validation, as `tensor::check_multi` does it.
    let n = rows
        .checked_mul(cols)
        .ok_or_else(|| Error::InvalidArgument("size overflow".into()))?;
    cfg.validate(Some(cols))?;
    if logits.len() != n {
        return Err(Error::shape(
            "logits",
            format!("[{rows}, {cols}]"),
            logits.len(),
        ));
    }
    if targets.len() != n {
        return Err(Error::shape(
            "targets",
            format!("[{rows}, {cols}]"),
            targets.len(),
        ));
    }
    up.check(cfg.reduction, n)?;
    if let Some(i) = targets.first_invalid() {
        return Err(targets.invalid(i, cols));
    }

    // 2. Element losses and derivatives; unknown targets (negative) stay 0.
    let s = cfg.smoothing;
    let mut loss = vec![0.0; n];
    let mut grad = vec![0.0; n];
    let mut known = 0usize;
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            let y = targets.get(i) as f64;
            if y < 0.0 {
                continue;
            }
            known += 1;
            let y = y * (1.0 - s) + 0.5 * s;
            let (l, g) = reference::ml_element(logits[i], y, &MlElem::new(cfg, c));
            let cw = cfg.class_weight_of(c) as f64;
            loss[i] = l * cw;
            grad[i] = g * cw;
        }
    }

    // 3. Reduction scale, applied to the loss and (with the upstream) to the gradient.
    let scale = match cfg.reduction {
        Reduction::None | Reduction::Sum => 1.0,
        Reduction::BatchMean => 1.0 / rows.max(1) as f64,
        Reduction::Mean => 1.0 / known.max(1) as f64,
    };
    for (i, g) in grad.iter_mut().enumerate() {
        *g *= up.at(i) * scale;
    }
    if cfg.reduction != Reduction::None {
        loss = vec![loss.iter().sum::<f64>() * scale];
    }
    Ok(Out64 { loss, grad })
}

/// Single-label loss and gradient of f64 `rows x cols` logits.
pub fn single_label(
    cfg: &SingleLabel,
    rows: usize,
    cols: usize,
    logits: &[f64],
    targets: ClassTargets<'_>,
    up: Up64<'_>,
) -> Result<Out64, Error> {
    // 1. Validation, as `tensor::check_single` does it.
    let n = rows
        .checked_mul(cols)
        .ok_or_else(|| Error::InvalidArgument("size overflow".into()))?;
    cfg.validate()?;
    if logits.len() != n {
        return Err(Error::shape(
            "logits",
            format!("[{rows}, {cols}]"),
            logits.len(),
        ));
    }
    if targets.len() != rows {
        return Err(Error::shape("targets", format!("[{rows}]"), targets.len()));
    }
    if cols == 0 && rows > 0 {
        return Err(Error::shape(
            "logits",
            "at least one class",
            format!("[{rows}, 0]"),
        ));
    }
    up.check(cfg.reduction, rows)?;
    targets.validate(cols, cfg.ignore_index)?;

    // 2. Row losses and gradients; ignored rows stay 0.
    let mut row_loss = vec![0.0; rows];
    let mut grad = vec![0.0; n];
    let mut counted = 0usize;
    for r in 0..rows {
        let t = targets.get(r);
        if Some(t) == cfg.ignore_index {
            continue;
        }
        counted += 1;
        let (l, g) = reference::sl_row(&logits[r * cols..(r + 1) * cols], t as usize, cfg);
        row_loss[r] = l;
        grad[r * cols..(r + 1) * cols].copy_from_slice(&g);
    }

    // 3. Reduction over the rows that count.
    let scale = match cfg.reduction {
        Reduction::None | Reduction::Sum => 1.0,
        Reduction::Mean | Reduction::BatchMean => 1.0 / counted.max(1) as f64,
    };
    for r in 0..rows {
        let u = up.at(r) * scale;
        for g in &mut grad[r * cols..(r + 1) * cols] {
            *g *= u;
        }
    }
    let loss = if cfg.reduction == Reduction::None {
        row_loss
    } else {
        vec![row_loss.iter().sum::<f64>() * scale]
    };
    Ok(Out64 { loss, grad })
}

#[cfg(test)]
mod tests {
    use super::*;
    use asymloss::{Logits, Shape, Upstream};

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn matches_library_reference_on_f32_values() {
        let (rows, cols) = (5, 7);
        let mut seed = 7;
        let x32: Vec<f32> = (0..rows * cols)
            .map(|_| (lcg(&mut seed) * 12.0 - 6.0) as f32)
            .collect();
        let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        let y: Vec<f32> = (0..rows * cols)
            .map(|i| [0.0, 1.0, -1.0, 0.3][i % 4])
            .collect();
        for red in [
            Reduction::BatchMean,
            Reduction::Sum,
            Reduction::Mean,
            Reduction::None,
        ] {
            let cfg = MultiLabel {
                reduction: red,
                smoothing: 0.1,
                ..MultiLabel::default()
            };
            let a = multi_label(
                &cfg,
                rows,
                cols,
                &x64,
                MultiTargets::F32(&y),
                Up64::Scalar(0.5),
            )
            .unwrap();
            let b = reference::multi_label(
                &cfg,
                Shape::new(rows, cols),
                Logits::F32(&x32),
                MultiTargets::F32(&y),
                Upstream::Scalar(0.5),
            )
            .unwrap();
            assert_eq!(a.loss, b.loss);
            assert_eq!(a.grad, b.grad);
        }
        let t: Vec<i64> = vec![0, 6, 3, 2, 1];
        for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let cfg = SingleLabel {
                reduction: red,
                ignore_index: Some(2),
                ..Default::default()
            };
            let a = single_label(
                &cfg,
                rows,
                cols,
                &x64,
                ClassTargets::I64(&t),
                Up64::Scalar(2.0),
            )
            .unwrap();
            let b = reference::single_label(
                &cfg,
                Shape::new(rows, cols),
                Logits::F32(&x32),
                ClassTargets::I64(&t),
                Upstream::Scalar(2.0),
            )
            .unwrap();
            assert_eq!(a.loss, b.loss);
            assert_eq!(a.grad, b.grad);
        }
    }
}
