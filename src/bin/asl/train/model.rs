//! The linear multi-label model `logits = x W + b` on sparse features, its backward pass and
//! its optimizers.
//!
//! - `W` is `F x C` (row `j` holds feature `j`'s weight for every label), `b` is `C`, both f32 and
//!   zero at the start (the caller may set `b`; the problem is convex for BCE, and the seed only
//!   orders the samples).
//!   `F` counts the features that occur in the training set, renumbered `0..F` in increasing
//!   order of their original index: a feature absent from training never gets a gradient, so
//!   its weights would stay 0 and dropping it is exact.
//! - Forward, one row per task: `z_r = b + sum_k v_k W[j_k]` with the row's features in file
//!   order.
//! - Backward, given `G = dL/dz` (`B x C`, from the loss backend's fused pass):
//!   `dL/dW[j] = sum_{r in batch, j in r} v_rj G[r]` and `dL/db = sum_r G[r]`. The batch's
//!   (feature, row, value) entries are sorted by feature, then row, then file order; each distinct
//!   feature is one task that sums its entries in that order and updates its own row of `W`
//!   (and of Adam's moments). The bias sums rows in order (f64). No float is ever added in an
//!   order that depends on the thread count, so results are bitwise the same on any number of
//!   threads.
//! - Optimizers: plain SGD, `w -= lr g`; Adam (Kingma and Ba, beta1 0.9, beta2 0.999, eps 1e-8,
//!   bias correction with the global step `t`): `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2)
//!   g^2`, `w -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`. Rows of `W` are updated
//!   *lazily* (as TensorFlow's LazyAdam): only at steps where the feature occurs in the batch,
//!   so a step costs the batch's features, not all `F x C` weights. The bias is updated every
//!   step.
//!   TODO: weight decay and momentum SGD; a learning-rate schedule.

use rayon::prelude::*;

/// Sparse rows whose feature indices are the model's compact ids.
#[derive(Clone, Debug, Default)]
pub struct SparseRows {
    /// Row `r` is `idx/val[ptr[r]..ptr[r + 1]]`.
    pub ptr: Vec<usize>,
    /// Compact feature ids.
    pub idx: Vec<u32>,
    /// Values.
    pub val: Vec<f32>,
}

impl SparseRows {
    /// Row `r`'s features.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let span = self.ptr[r]..self.ptr[r + 1];
        (&self.idx[span.clone()], &self.val[span])
    }
}

/// Which optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimKind {
    /// Plain mini-batch SGD.
    Sgd,
    /// Adam with lazy (sparse) rows.
    Adam,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f32 = 1e-8;

/// One Adam step's constants.
#[derive(Clone, Copy)]
struct AdamStep {
    b1: f32,
    b2: f32,
    /// lr / (1 - b1^t).
    lr_m: f32,
    /// 1 / (1 - b2^t).
    inv_c2: f32,
}

/// The model and its optimizer state.
#[derive(Debug)]
pub struct Linear {
    /// Labels `C`.
    pub cols: usize,
    /// `F x C` weights, row-major.
    pub w: Vec<f32>,
    /// `C` biases.
    pub b: Vec<f32>,
    kind: OptimKind,
    lr: f32,
    step: u64,
    // Adam's first and second moments (empty for SGD).
    m_w: Vec<f32>,
    v_w: Vec<f32>,
    m_b: Vec<f32>,
    v_b: Vec<f32>,
    // Reused per batch: (feature, row in batch, value), sorted.
    entries: Vec<(u32, u32, f32)>,
}

/// One distinct feature of a batch and its rows of parameters.
struct RowTask<'a> {
    /// The feature's entries in `entries`.
    span: std::ops::Range<usize>,
    w: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

/// Cuts `data` (`F x cols`) into the rows `rows` (strictly increasing), safely.
fn split_rows<'a>(data: &'a mut [f32], rows: &[usize], cols: usize) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(rows.len());
    let mut rest = data;
    let mut at = 0;
    for &r in rows {
        let tail = std::mem::take(&mut rest);
        let (_, tail) = tail.split_at_mut((r - at) * cols);
        let (row, tail) = tail.split_at_mut(cols);
        out.push(row);
        rest = tail;
        at = r + 1;
    }
    out
}

fn sgd_row(w: &mut [f32], g: &[f32], lr: f32) {
    for (w, &g) in w.iter_mut().zip(g) {
        *w -= lr * g;
    }
}

fn adam_row(w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], s: AdamStep) {
    for (((w, m), v), &g) in w.iter_mut().zip(m).zip(v).zip(g) {
        // m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        *m = s.b1 * *m + (1.0 - s.b1) * g;
        *v = s.b2 * *v + (1.0 - s.b2) * g * g;
        // w -= lr m_hat / (sqrt(v_hat) + eps)
        *w -= s.lr_m * *m / ((*v * s.inv_c2).sqrt() + ADAM_EPS);
    }
}

impl Linear {
    /// A zero model of `features x cols` with its optimizer.
    pub fn new(features: usize, cols: usize, kind: OptimKind, lr: f32) -> Self {
        let adam = kind == OptimKind::Adam;
        let moments = |n: usize| if adam { vec![0.0; n] } else { Vec::new() };
        Linear {
            cols,
            w: vec![0.0; features * cols],
            b: vec![0.0; cols],
            kind,
            lr,
            step: 0,
            m_w: moments(features * cols),
            v_w: moments(features * cols),
            m_b: moments(cols),
            v_b: moments(cols),
            entries: Vec::new(),
        }
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Logits of `rows` of `x` into `out` (`rows.len() x C`).
    pub fn forward(&self, x: &SparseRows, rows: &[usize], out: &mut [f32]) {
        let cols = self.cols;
        assert_eq!(out.len(), rows.len() * cols, "logits buffer is rows x C");
        out.par_chunks_mut(cols)
            .zip(rows.par_iter())
            .with_min_len(8)
            .for_each(|(z, &r)| {
                // z = b + sum_k v_k W[j_k]
                z.copy_from_slice(&self.b);
                let (idx, val) = x.row(r);
                for (&j, &v) in idx.iter().zip(val) {
                    let wj = &self.w[j as usize * cols..(j as usize + 1) * cols];
                    for (z, &w) in z.iter_mut().zip(wj) {
                        *z += v * w;
                    }
                }
            });
    }

    /// Pushes `grad = dL/dz` (`rows.len() x C`) back through the layer and takes one optimizer
    /// step.
    pub fn backward_step(&mut self, x: &SparseRows, rows: &[usize], grad: &[f32]) {
        let cols = self.cols;
        assert_eq!(grad.len(), rows.len() * cols, "gradient is rows x C");
        self.step += 1;
        let t = self.step as i32;
        let adam = AdamStep {
            b1: BETA1 as f32,
            b2: BETA2 as f32,
            lr_m: (self.lr as f64 / (1.0 - BETA1.powi(t))) as f32,
            inv_c2: (1.0 / (1.0 - BETA2.powi(t))) as f32,
        };

        // 1. Entries (feature, row, value), sorted by feature then row; the stable sort keeps
        //    file order for a feature repeated within a row.
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        for (k, &r) in rows.iter().enumerate() {
            let (idx, val) = x.row(r);
            entries.extend(idx.iter().zip(val).map(|(&j, &v)| (j, k as u32, v)));
        }
        entries.sort_by_key(|&(j, k, _)| (j, k));

        // 2. One task per distinct feature, owning its rows of W, m and v.
        let mut feats = Vec::new();
        let mut spans = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            let j = entries[i].0;
            let mut e = i;
            while e < entries.len() && entries[e].0 == j {
                e += 1;
            }
            feats.push(j as usize);
            spans.push(i..e);
            i = e;
        }
        let w_rows = split_rows(&mut self.w, &feats, cols);
        let is_adam = self.kind == OptimKind::Adam;
        let (m_rows, v_rows) = if is_adam {
            (
                split_rows(&mut self.m_w, &feats, cols),
                split_rows(&mut self.v_w, &feats, cols),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let mut m_it = m_rows.into_iter();
        let mut v_it = v_rows.into_iter();
        let tasks: Vec<RowTask<'_>> = spans
            .into_iter()
            .zip(w_rows)
            .map(|(span, w)| RowTask {
                span,
                w,
                m: m_it.next().unwrap_or_default(),
                v: v_it.next().unwrap_or_default(),
            })
            .collect();

        // 3. dL/dW[j] = sum over the feature's entries of v G[row], then the update.
        let lr = self.lr;
        let ents = &entries;
        tasks.into_par_iter().with_min_len(16).for_each_init(
            || vec![0.0f32; cols],
            |g, task| {
                g.fill(0.0);
                for &(_, k, v) in &ents[task.span] {
                    let gk = &grad[k as usize * cols..(k as usize + 1) * cols];
                    for (g, &d) in g.iter_mut().zip(gk) {
                        *g += v * d;
                    }
                }
                if is_adam {
                    adam_row(task.w, task.m, task.v, g, adam);
                } else {
                    sgd_row(task.w, g, lr);
                }
            },
        );
        self.entries = entries;

        // 4. dL/db = sum_r G[r], rows in order, in f64.
        let mut gb = vec![0.0f64; cols];
        for gr in grad.chunks_exact(cols) {
            for (s, &d) in gb.iter_mut().zip(gr) {
                *s += d as f64;
            }
        }
        let gb: Vec<f32> = gb.into_iter().map(|s| s as f32).collect();
        if is_adam {
            adam_row(&mut self.b, &mut self.m_b, &mut self.v_b, &gb, adam);
        } else {
            sgd_row(&mut self.b, &gb, lr);
        }
    }
}
