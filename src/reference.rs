//! The float64 reference: plain loops over timm's formulas with closed-form gradients.
//!
//! Everything else in the crate (the fast CPU path, the WGSL and CUDA kernels) is tested against
//! this module, and this module is tested against values produced by timm itself
//! (`../shared/golden`). It favours being obviously right over being fast: one element (or one
//! row) at a time, f64 throughout, no SIMD, no threads.
//!
//! Numerics (see `docs/asl-semantics.md` sections 1 to 3, summarised in the README):
//! - `ln p = -softplus(-x)` and `ln(1 - p) = -softplus(x)`, and `1 - p` is computed as
//!   `sigmoid(-x)`, so nothing cancels near saturation.
//! - Every clamp has timm's derivative: 0 on the clamped side (strict at ties).
//! - Where PyTorch's autograd forms `0 * inf` (a focusing base of exactly 0 with `0 < gamma < 1`,
//!   or `ln 0` times a zero weight) the result is the finite limit, 0.
//! - A NaN logit gives a NaN loss element (a NaN row for single-label) and NaN gradients.

use crate::config::{FocalGrad, MultiLabel, Reduction, SingleLabel};
use crate::error::Result;
use crate::tensor::{
    check_multi, check_single, ClassTargets, Logits, MultiTargets, Pass, Shape, Upstream,
};

/// Loss and gradient in float64.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// One value for a reduced loss; `N x C` (multi-label) or `N` (single-label) for `none`.
    pub loss: Vec<f64>,
    /// `d (upstream * loss) / d logits`, `N x C`.
    pub grad: Vec<f64>,
}

/// `a * b`, except that an exact zero `b` gives 0 even when `a` is infinite: the limit of the
/// products this crate forms where PyTorch returns `0 * inf = NaN`.
#[inline]
pub fn mul0(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a * b
    }
}

/// `b^g` with `0^0 = 1` (as `torch.pow`).
#[inline]
pub fn pow0(b: f64, g: f64) -> f64 {
    if g == 0.0 {
        1.0
    } else {
        b.powf(g)
    }
}

/// `(sigmoid(x), sigmoid(-x))`, each without cancellation.
#[inline]
pub fn sigmoid_pair(x: f64) -> (f64, f64) {
    if x >= 0.0 {
        let e = (-x).exp();
        (1.0 / (1.0 + e), e / (1.0 + e))
    } else {
        let e = x.exp();
        (e / (1.0 + e), 1.0 / (1.0 + e))
    }
}

/// `ln sigmoid(x) = -softplus(-x) = -(max(-x, 0) + ln(1 + e^-|x|))`.
#[inline]
pub fn log_sigmoid(x: f64) -> f64 {
    -((-x).max(0.0) + (-x.abs()).exp().ln_1p())
}

/// The multi-label parameters of one element, in f64.
#[derive(Clone, Copy, Debug)]
pub struct MlElem {
    /// `gamma_pos`.
    pub gamma_pos: f64,
    /// `gamma_neg`.
    pub gamma_neg: f64,
    /// `clip` (0 = off).
    pub clip: f64,
    /// `ln eps` (`-inf` for eps = 0).
    pub ln_eps: f64,
    /// `pos_weight` of this element's class.
    pub pos_weight: f64,
    /// Detached focusing.
    pub detached: bool,
}

impl MlElem {
    /// The element parameters of `cfg` for class `c`.
    pub fn new(cfg: &MultiLabel, c: usize) -> Self {
        MlElem {
            gamma_pos: cfg.gamma_pos,
            gamma_neg: cfg.gamma_neg,
            clip: cfg.clip,
            ln_eps: cfg.eps.ln(),
            pos_weight: cfg.pos_weight_of(c) as f64,
            detached: cfg.focal_grad == FocalGrad::Detached,
        }
    }
}

/// Loss `l` and derivative `dl/dx` of one known multi-label element with (smoothed) target
/// `y` in `[0, 1]`, before class weight and reduction.
pub fn ml_element(x: f64, y: f64, e: &MlElem) -> (f64, f64) {
    if x.is_nan() {
        return (f64::NAN, f64::NAN);
    }
    // 1. p = sigmoid(x), q = 1 - p = sigmoid(-x), s = dp/dx = p q.
    let (p, q) = sigmoid_pair(x);
    let s = p * q;
    let lp = log_sigmoid(x);

    // 2. Positive log term A = ln max(p, eps); dA/dx = q when p > eps, else 0.
    let (a, da) = if lp > e.ln_eps {
        (lp, q)
    } else {
        (e.ln_eps, 0.0)
    };

    // 3. Negative log term B = ln max(q~, eps) with the shifted probability q~ = min(q + m, 1).
    //    pm = 1 - q~ = max(p - m, 0) is the paper's shifted probability; dpm/dx = s when p > m.
    let (b, db, pm, dpm) = if e.clip > 0.0 {
        if p > e.clip {
            let qt = q + e.clip;
            let lqt = qt.ln();
            let (b, db) = if lqt > e.ln_eps {
                (lqt, -s / qt)
            } else {
                (e.ln_eps, 0.0)
            };
            (b, db, p - e.clip, s)
        } else {
            // q~ = 1: ln 1 = 0 and nothing moves.
            (0.0, 0.0, 0.0, 0.0)
        }
    } else {
        let lq = log_sigmoid(-x);
        let (b, db) = if lq > e.ln_eps {
            (lq, -p)
        } else {
            (e.ln_eps, 0.0)
        };
        (b, db, p, s)
    };

    // 4. CE = pw y A + (1 - y) B.
    let ce = mul0(a, e.pos_weight * y) + mul0(b, 1.0 - y);
    let dce = e.pos_weight * y * da + (1.0 - y) * db;

    // 5. Focusing w = (1 - pt)^g with 1 - pt = y q + (1 - y) pm and g = gp y + gn (1 - y).
    let (w, dw) = if e.gamma_pos == 0.0 && e.gamma_neg == 0.0 {
        (1.0, 0.0)
    } else {
        let base = y * q + (1.0 - y) * pm;
        let dbase = -y * s + (1.0 - y) * dpm;
        let g = e.gamma_pos * y + e.gamma_neg * (1.0 - y);
        let w = pow0(base, g);
        // dw = g base^(g-1) dbase; at base = 0 the product CE dw has limit 0 (either CE = 0 or
        // dbase = 0 there), where autograd gives 0 * inf = NaN for 0 < g < 1.
        let dw = if g == 0.0 || base == 0.0 {
            0.0
        } else {
            g * base.powf(g - 1.0) * dbase
        };
        (w, dw)
    };

    // 6. l = -CE w;  dl/dx = -(CE' w + CE w') (differentiated) or -CE' w (detached).
    let loss = -mul0(ce, w);
    let grad = if e.detached {
        -(dce * w)
    } else {
        -(dce * w + mul0(ce, dw))
    };
    (loss, grad)
}

/// Reads the upstream factor of unreduced element `i`.
fn upstream_at(up: &Upstream<'_>, i: usize) -> f64 {
    match up {
        Upstream::Scalar(v) => *v as f64,
        Upstream::Array(a) => a[i] as f64,
    }
}

/// Multi-label loss and gradient (always both) in float64.
///
/// `logits` and `targets` are row-major `shape`; `upstream` scales the gradient (a number, or an
/// `N x C` array for `Reduction::None`). Target values are validated here.
pub fn multi_label(
    cfg: &MultiLabel,
    shape: Shape,
    logits: Logits<'_>,
    targets: MultiTargets<'_>,
    upstream: Upstream<'_>,
) -> Result<Output> {
    let inp = crate::tensor::MultiInputs {
        shape,
        logits,
        targets,
        upstream,
    };
    let n = check_multi(cfg, Pass::Forward, &inp, &None)?;
    if let Some(i) = targets.first_invalid() {
        return Err(targets.invalid(i, shape.cols));
    }
    let s = cfg.smoothing;
    let mut elem_loss = vec![0.0; n];
    let mut elem_grad = vec![0.0; n];
    let mut known = 0usize;
    for r in 0..shape.rows {
        for c in 0..shape.cols {
            let i = r * shape.cols + c;
            let y = targets.get(i) as f64;
            if y < 0.0 {
                continue; // unknown: adds 0, gradient 0
            }
            known += 1;
            let y = y * (1.0 - s) + 0.5 * s;
            let (l, g) = ml_element(logits.get(i) as f64, y, &MlElem::new(cfg, c));
            let cw = cfg.class_weight_of(c) as f64;
            elem_loss[i] = l * cw;
            elem_grad[i] = g * cw;
        }
    }
    let scale = match cfg.reduction {
        Reduction::None | Reduction::Sum => 1.0,
        Reduction::BatchMean => 1.0 / shape.rows.max(1) as f64,
        Reduction::Mean => 1.0 / known.max(1) as f64,
    };
    let grad = (0..n)
        .map(|i| upstream_at(&upstream, i) * scale * elem_grad[i])
        .collect();
    let loss = if cfg.reduction == Reduction::None {
        elem_loss
    } else {
        vec![elem_loss.iter().fold(0.0, |a, v| a + v) * scale]
    };
    Ok(Output { loss, grad })
}

/// Single-label loss and gradient in float64.
pub fn single_label(
    cfg: &SingleLabel,
    shape: Shape,
    logits: Logits<'_>,
    targets: ClassTargets<'_>,
    upstream: Upstream<'_>,
) -> Result<Output> {
    let inp = crate::tensor::SingleInputs {
        shape,
        logits,
        targets,
        upstream,
    };
    let n = check_single(cfg, Pass::Forward, &inp, &None)?;
    let k = shape.cols;
    let mut row_loss = vec![0.0; shape.rows];
    let mut grad = vec![0.0; n];
    let mut counted = 0usize;
    let mut row_grads = Vec::with_capacity(shape.rows);
    for (r, row_l) in row_loss.iter_mut().enumerate() {
        let t = targets.get(r);
        if Some(t) == cfg.ignore_index {
            row_grads.push(None);
            continue;
        }
        counted += 1;
        let z: Vec<f64> = (0..k).map(|c| logits.get(r * k + c) as f64).collect();
        let (l, g) = sl_row(&z, t as usize, cfg);
        *row_l = l;
        row_grads.push(Some(g));
    }
    let scale = match cfg.reduction {
        Reduction::None | Reduction::Sum => 1.0,
        Reduction::Mean | Reduction::BatchMean => 1.0 / counted.max(1) as f64,
    };
    for (r, g) in row_grads.into_iter().enumerate() {
        if let Some(g) = g {
            let u = upstream_at(&upstream, r) * scale;
            for c in 0..k {
                grad[r * k + c] = u * g[c];
            }
        }
    }
    let loss = if cfg.reduction == Reduction::None {
        row_loss
    } else {
        vec![row_loss.iter().fold(0.0, |a, v| a + v) * scale]
    };
    Ok(Output { loss, grad })
}

/// Loss and `dl/dz` of one single-label row `z` with target class `t`.
pub fn sl_row(z: &[f64], t: usize, cfg: &SingleLabel) -> (f64, Vec<f64>) {
    let k = z.len();
    if z.iter().any(|v| v.is_nan()) {
        return (f64::NAN, vec![f64::NAN; k]);
    }
    // 1. log_softmax. An infinite maximum is handled as its limit: the columns equal to it
    //    share the probability mass, every other column has ln p = -inf.
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let shifted: Vec<f64> = z
        .iter()
        .map(|&v| {
            if m.is_infinite() {
                if v == m {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            } else {
                v - m
            }
        })
        .collect();
    let lse = shifted.iter().map(|v| v.exp()).sum::<f64>().ln();
    let lp: Vec<f64> = shifted.iter().map(|v| v - lse).collect();
    let p: Vec<f64> = lp.iter().map(|v| v.exp()).collect();

    // 2. Smoothed target mass a and per-column g_j = dl/d(ln p_j).
    let s = cfg.smoothing;
    let a_t = 1.0 - s + s / k as f64;
    let a_o = s / k as f64;
    let mut loss = 0.0;
    let mut g = vec![0.0; k];
    for j in 0..k {
        if j == t {
            // Target: w = (1 - p)^gp, l = -a w ln p,
            // g = a [gp p ln p (1 - p)^(gp - 1) - (1 - p)^gp]; 1 - p = -expm1(ln p).
            let q = -lp[j].exp_m1();
            let w = pow0(q, cfg.gamma_pos);
            loss -= a_t * mul0(lp[j], w);
            let focus = if cfg.gamma_pos == 0.0 || q == 0.0 {
                0.0
            } else {
                cfg.gamma_pos * mul0(lp[j], p[j]) * q.powf(cfg.gamma_pos - 1.0)
            };
            g[j] = a_t * (focus - w);
        } else if a_o != 0.0 {
            // Other class: w = p^gn, l = -a w ln p, g = -a w (1 + gn ln p).
            let w = pow0(p[j], cfg.gamma_neg);
            loss -= a_o * mul0(lp[j], w);
            // gn ln p with gn = 0 is 0 even at ln p = -inf (the derivative term vanishes).
            g[j] = -a_o * mul0(1.0 + mul0(lp[j], cfg.gamma_neg), w);
        }
    }

    // 3. Softmax coupling: dl/dz_k = g_k - p_k S with S = sum_j g_j. For the target column this
    //    is written g_t (1 - p_t) - p_t S_rest so that nothing cancels when p_t is near 1.
    let s_rest: f64 = (0..k).filter(|&j| j != t).map(|j| g[j]).sum();
    let s_all = s_rest + g[t];
    let q_t = -lp[t].exp_m1();
    let grad = (0..k)
        .map(|j| {
            if j == t {
                g[t] * q_t - mul0(s_rest, p[t])
            } else {
                g[j] - mul0(s_all, p[j])
            }
        })
        .collect();
    (loss, grad)
}
