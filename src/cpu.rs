//! The fast fused CPU path: one pass over the data, rows split over a thread pool, SIMD through
//! run-time dispatch.
//!
//! Decomposition:
//! - The rows are cut into *tasks* of `max(1, TASK_ELEMS / C)` rows. The cut depends on the shape
//!   only, never on the number of threads, and every task returns its partial sum; the partials
//!   are added in task order in f64. The same input therefore gives bitwise the same loss and
//!   gradient on 1 or 16 threads.
//! - Inside a task, a row is processed in chunks of [`CHUNK`] elements: the logits are widened to
//!   f32 into a stack buffer (half's slice conversion, itself SIMD), the element math of
//!   [`crate::math`] runs over the chunk as straight-line code that the compiler vectorises, and
//!   the gradient is narrowed back to the logits' type. `multiversion` compiles the chunk
//!   functions for AVX-512, AVX2+FMA and NEON and picks one at run time.
//! - No `N x C` temporary is allocated: a single-label task holds two rows of scratch.
//!
//! Precision: f32 element math ([`crate::math::PolyMath`], about 1 ulp per function), f32
//! lane sums within a row, f64 across rows and tasks.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::backend::Backend;
use crate::config::{MlParams, MultiLabel, PosWeight, Reduction, SingleLabel, SlParams};
use crate::error::{Error, Result};
use crate::math::{self, F32Math, MlConsts, PolyMath};
use crate::tensor::{
    check_multi, check_single, GradMut, Logits, LossValue, MultiInputs, MultiTargets, Pass,
    SingleInputs, Upstream, U8_UNKNOWN,
};

/// Elements per task (a task is a run of whole rows).
const TASK_ELEMS: usize = 32 * 1024;
/// Elements per chunk of a row (stack buffers of this size).
const CHUNK: usize = 256;
/// Lanes of the partial sums (a multiple of every SIMD width in f32).
const LANES: usize = 16;

/// The fast CPU backend.
#[derive(Debug, Default)]
pub struct Cpu {
    pool: Option<rayon::ThreadPool>,
}

impl Cpu {
    /// A CPU backend on rayon's global thread pool.
    pub fn new() -> Self {
        Cpu { pool: None }
    }

    /// A CPU backend with its own pool of `threads` threads (results do not depend on it).
    pub fn with_threads(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot build a thread pool: {e}")))?;
        Ok(Cpu { pool: Some(pool) })
    }

    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }
}

/// Rows per task for `cols` columns.
fn rows_per_task(cols: usize) -> usize {
    (TASK_ELEMS / cols.max(1)).max(1)
}

/// The gradient destination of one task.
enum GradRows<'a> {
    None,
    F32(&'a mut [f32]),
    F16(&'a mut [f16]),
    Bf16(&'a mut [bf16]),
}

impl GradRows<'_> {
    fn split(grad: Option<GradMut<'_>>, chunk: usize, tasks: usize) -> Vec<GradRows<'_>> {
        let chunk = chunk.max(1);
        match grad {
            None => (0..tasks).map(|_| GradRows::None).collect(),
            Some(GradMut::F32(g)) => g.chunks_mut(chunk).map(GradRows::F32).collect(),
            Some(GradMut::F16(g)) => g.chunks_mut(chunk).map(GradRows::F16).collect(),
            Some(GradMut::Bf16(g)) => g.chunks_mut(chunk).map(GradRows::Bf16).collect(),
        }
    }

    /// Writes `src` (f32) at element offset `at`.
    #[inline]
    fn store(&mut self, at: usize, src: &[f32]) {
        match self {
            GradRows::None => {}
            GradRows::F32(g) => g[at..at + src.len()].copy_from_slice(src),
            GradRows::F16(g) => g[at..at + src.len()].convert_from_f32_slice(src),
            GradRows::Bf16(g) => g[at..at + src.len()].convert_from_f32_slice(src),
        }
    }
}

/// Widens `len` logits at `at` into `dst`.
#[inline]
fn load_logits(logits: &Logits<'_>, at: usize, dst: &mut [f32]) {
    let n = dst.len();
    match logits {
        Logits::F32(v) => dst.copy_from_slice(&v[at..at + n]),
        Logits::F16(v) => v[at..at + n].convert_to_f32_slice(dst),
        Logits::Bf16(v) => v[at..at + n].convert_to_f32_slice(dst),
    }
}

/// Loads targets as f32: negative = unknown; u8 values other than 0/1/255 become 2 (invalid).
#[inline]
fn load_targets(t: &MultiTargets<'_>, at: usize, dst: &mut [f32]) {
    let n = dst.len();
    match t {
        MultiTargets::F32(v) => dst.copy_from_slice(&v[at..at + n]),
        MultiTargets::U8(v) => {
            for (d, &b) in dst.iter_mut().zip(&v[at..at + n]) {
                *d = match b {
                    0 => 0.0,
                    1 => 1.0,
                    U8_UNKNOWN => -1.0,
                    _ => 2.0,
                };
            }
        }
    }
}

/// Per-call constants of the multi-label chunk kernel.
#[derive(Clone, Copy)]
struct MlChunkConsts {
    k: MlConsts,
    smoothing: f32,
    pos_weight: f32,
    /// `(gamma_pos, gamma_neg)` as integers when both are integers below 16 and there is no
    /// smoothing: chunks of hard targets then take the multiplication-only focusing.
    hard: Option<(u32, u32)>,
    /// Logits below this are easy negatives when clipping is on (see `ml_chunk`).
    easy_below: f32,
}

/// One chunk of a row in f32: the stack buffers the multi-label chunk kernel works on. Lanes
/// past `len` are padding (an unknown target: they produce 0 and count as nothing).
struct MlChunk {
    len: usize,
    x: [f32; CHUNK],
    y: [f32; CHUNK],
    pw: [f32; CHUNK],
    /// Class weight of each element (1 without class weights).
    w: [f32; CHUNK],
    /// Factor on every gradient element (the reduction scale times a scalar upstream).
    scale: f32,
    l: [f32; CHUNK],
    g: [f32; CHUNK],
}

/// What the validity scan of a chunk found.
#[derive(Clone, Copy)]
struct ChunkScan {
    invalid: u32,
    known: u32,
    hard: bool,
    /// The chunk's weighted loss, summed over LANES interleaved lanes, then in f64.
    loss: f64,
}

/// The multi-label element math over one chunk. Writes `scale * w_c * dl/dx` into `ch.g` and the
/// weighted element loss `w_c * l` into `ch.l` (zero for unknown targets), and sums the loss.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn ml_chunk(clip: bool, c: &MlChunkConsts, ch: &mut MlChunk) -> ChunkScan {
    // 1. One scan of the targets: known y in [0, 1], unknown y < 0, anything else (NaN, > 1)
    //    invalid; and whether every target is hard (0, 1 or unknown).
    let (mut invalid, mut known, mut soft) = (0u32, 0u32, 0u32);
    let blocks = ch.len.div_ceil(LANES);
    for &t in ch.y[..blocks * LANES].iter() {
        invalid += (t.is_nan() | (t > 1.0)) as u32;
        known += (0.0..=1.0).contains(&t) as u32;
        soft += ((t > 0.0) & (t < 1.0)) as u32;
    }
    let mut scan = ChunkScan {
        invalid,
        known,
        hard: soft == 0,
        loss: 0.0,
    };
    let hard = c.hard.filter(|_| scan.hard);

    // 2. Element math in blocks of LANES (a constant trip count the compiler vectorises), with
    //    the smoothed target y (1 - s) + s / 2; unknown elements give 0. Hard targets with
    //    integer gammas take math::ml_element_hard (no exp/ln for the focusing weight).
    //    Easy negatives (y = 0 and p <= clip: loss and gradient exactly -0) are the bulk of
    //    real multi-label data; a block of them skips the math. The threshold sits 1e-3 below
    //    logit(clip), well clear of f32 rounding, so the result is bitwise the same.
    let skip_easy = clip && c.smoothing == 0.0;
    let MlChunk {
        x,
        y,
        pw,
        w,
        scale,
        l,
        g,
        ..
    } = ch;
    let scale = *scale;
    let mut acc = [0.0f32; LANES];
    //    3. Class weight on loss and gradient, the gradient scale, and the loss sum, in the same
    //       loop (the same operations in the same order as separate passes would do).
    //    A block without a positive target takes `$neg` (for hard targets: the element math
    //    with the positive side compiled out; the same result, fewer instructions).
    macro_rules! body {
        ($elem:expr) => {
            body!($elem, $elem)
        };
        ($elem:expr, $neg:expr) => {{
            for b in 0..blocks {
                let r = b * LANES..(b + 1) * LANES;
                let xb: &[f32; LANES] = x[r.clone()].try_into().unwrap();
                let yb: &[f32; LANES] = y[r.clone()].try_into().unwrap();
                let pb: &[f32; LANES] = pw[r.clone()].try_into().unwrap();
                let wb: &[f32; LANES] = w[r.clone()].try_into().unwrap();
                let lb: &mut [f32; LANES] = (&mut l[r.clone()]).try_into().unwrap();
                let gb: &mut [f32; LANES] = (&mut g[r]).try_into().unwrap();
                let mut easy = skip_easy;
                for j in 0..LANES {
                    easy &= (yb[j] == 0.0) & (xb[j] < c.easy_below);
                }
                if easy {
                    for j in 0..LANES {
                        let lw = -0.0 * wb[j];
                        lb[j] = lw;
                        gb[j] = -0.0 * wb[j] * scale;
                        acc[j] += lw;
                    }
                    continue;
                }
                let mut any_pos = false;
                for j in 0..LANES {
                    any_pos |= yb[j] == 1.0;
                }
                macro_rules! lanes {
                    ($f:expr) => {
                        for j in 0..LANES {
                            let known = (yb[j] >= 0.0) & (yb[j] <= 1.0);
                            let (li, gi) = $f(xb[j], yb[j], pb[j]);
                            let li = if known { li } else { 0.0 };
                            let gi = if known { gi } else { 0.0 };
                            let lw = li * wb[j];
                            lb[j] = lw;
                            gb[j] = gi * wb[j] * scale;
                            acc[j] += lw;
                        }
                    };
                }
                if any_pos {
                    lanes!($elem);
                } else {
                    lanes!($neg);
                }
            }
        }};
    }
    // The common integer gammas as constants (the powers unroll into multiplications): timm's
    // default (1, 4), the paper's (0, 4), BCE (0, 0), focal (2, 2).
    macro_rules! hard {
        ($clip:literal, $gp:expr, $gn:expr) => {
            body!(
                |x: f32, y: f32, pw: f32| {
                    math::ml_element_hard::<PolyMath, $clip>(x, y == 1.0, pw, &c.k, $gp, $gn)
                },
                |x: f32, _y: f32, pw: f32| {
                    math::ml_element_hard::<PolyMath, $clip>(x, false, pw, &c.k, $gp, $gn)
                }
            )
        };
    }
    match (hard, clip) {
        (Some((1, 4)), true) => hard!(true, 1, 4),
        (Some((0, 4)), true) => hard!(true, 0, 4),
        (Some((gp, gn)), true) => hard!(true, gp, gn),
        (Some((0, 0)), false) => hard!(false, 0, 0),
        (Some((2, 2)), false) => hard!(false, 2, 2),
        (Some((gp, gn)), false) => hard!(false, gp, gn),
        (None, true) => body!(|x: f32, y: f32, pw: f32| {
            let ys = if y >= 0.0 {
                y * (1.0 - c.smoothing) + 0.5 * c.smoothing
            } else {
                0.0
            };
            math::ml_element::<PolyMath, true>(x, ys, pw, &c.k)
        }),
        (None, false) => body!(|x: f32, y: f32, pw: f32| {
            let ys = if y >= 0.0 {
                y * (1.0 - c.smoothing) + 0.5 * c.smoothing
            } else {
                0.0
            };
            math::ml_element::<PolyMath, false>(x, ys, pw, &c.k)
        }),
    }
    scan.loss = lanes_total(&acc);
    scan
}

/// Sum of `v` in a fixed order: `LANES` interleaved f32 partial sums, then the lanes in f64.
#[inline]
fn lane_sum(v: &[f32], lanes: &mut [f32; LANES]) {
    let mut it = v.chunks_exact(LANES);
    for ch in &mut it {
        for (a, b) in lanes.iter_mut().zip(ch) {
            *a += *b;
        }
    }
    for (a, b) in lanes.iter_mut().zip(it.remainder()) {
        *a += *b;
    }
}

fn lanes_total(lanes: &[f32; LANES]) -> f64 {
    lanes.iter().map(|&v| v as f64).sum()
}

/// What one multi-label task returns.
#[derive(Default, Clone, Copy)]
struct MlPartial {
    sum: f64,
    known: u64,
    first_invalid: Option<usize>,
}

impl Backend for Cpu {
    fn name(&self) -> String {
        format!("cpu ({} threads)", self.install(rayon::current_num_threads))
    }

    fn multi_label(
        &self,
        cfg: &MultiLabel,
        pass: Pass,
        inputs: &MultiInputs<'_>,
        grad: Option<GradMut<'_>>,
    ) -> Result<Option<LossValue>> {
        let n = check_multi(cfg, pass, inputs, &grad)?;
        self.install(|| multi_label(cfg, pass, inputs, grad, n))
    }

    fn single_label(
        &self,
        cfg: &SingleLabel,
        pass: Pass,
        inputs: &SingleInputs<'_>,
        grad: Option<GradMut<'_>>,
    ) -> Result<Option<LossValue>> {
        let n = check_single(cfg, pass, inputs, &grad)?;
        self.install(|| single_label(cfg, pass, inputs, grad, n))
    }
}

/// A logit below which `sigmoid(x) <= clip` certainly holds in f32: logit(clip) less a margin
/// of 1e-3 (relative), far above f32 rounding of the sigmoid.
fn easy_threshold(clip: f64) -> f32 {
    if clip <= 0.0 {
        f32::NEG_INFINITY
    } else if clip >= 1.0 {
        f32::MAX
    } else {
        let t = (clip / (1.0 - clip)).ln();
        (t - 1e-3 * t.abs().max(1.0)) as f32
    }
}

/// Fills `dst` with the per-class values `v` of consecutive elements starting at column `col`,
/// wrapping at the end of a row.
fn per_class(v: &[f32], mut col: usize, dst: &mut [f32]) {
    let mut i = 0;
    while i < dst.len() {
        let n = (v.len() - col).min(dst.len() - i);
        dst[i..i + n].copy_from_slice(&v[col..col + n]);
        i += n;
        col = 0;
    }
}

/// `g` as an integer when it is one below 16.
fn small_int(g: f64) -> Option<u32> {
    (g.fract() == 0.0 && (0.0..16.0).contains(&g)).then_some(g as u32)
}

/// Known-element count and first invalid index (the pre-pass of `mean` with a gradient).
fn count_known(t: &MultiTargets<'_>, n: usize) -> (u64, Option<usize>) {
    let parts: Vec<(u64, Option<usize>)> = (0..n.div_ceil(TASK_ELEMS))
        .into_par_iter()
        .map(|k| {
            let (a, b) = (k * TASK_ELEMS, ((k + 1) * TASK_ELEMS).min(n));
            let mut known = 0;
            let mut bad = None;
            for i in a..b {
                let y = t.get(i);
                if (0.0..=1.0).contains(&y) {
                    known += 1;
                } else if (y.is_nan() || y > 1.0) && bad.is_none() {
                    bad = Some(i);
                }
            }
            (known, bad)
        })
        .collect();
    let known = parts.iter().map(|p| p.0).sum();
    (known, parts.iter().find_map(|p| p.1))
}

fn multi_label(
    cfg: &MultiLabel,
    pass: Pass,
    inp: &MultiInputs<'_>,
    grad: Option<GradMut<'_>>,
    n: usize,
) -> Result<Option<LossValue>> {
    let (rows, cols) = (inp.shape.rows, inp.shape.cols);
    let upstream = match inp.upstream {
        Upstream::Scalar(u) => u,
        Upstream::Array(_) => 1.0,
    };
    // 1. The gradient scale: upstream x (1 | 1/N | 1/known). `mean` needs the known count
    //    before any gradient is written: one extra read of the targets.
    let mut pre_known = None;
    if cfg.reduction == Reduction::Mean && pass.wants_grad() {
        let (known, bad) = count_known(&inp.targets, n);
        if let Some(i) = bad {
            return Err(inp.targets.invalid(i, cols));
        }
        pre_known = Some(known);
    }
    let scale = match cfg.reduction {
        Reduction::None | Reduction::Sum => 1.0,
        Reduction::BatchMean => 1.0 / rows.max(1) as f64,
        Reduction::Mean => 1.0 / pre_known.unwrap_or(1).max(1) as f64,
    };
    let params = MlParams::new(cfg, rows, cols, (upstream as f64 * scale) as f32);
    let consts = MlChunkConsts {
        k: MlConsts::from_params(&params),
        smoothing: params.smoothing,
        pos_weight: params.pos_weight,
        hard: small_int(cfg.gamma_pos)
            .zip(small_int(cfg.gamma_neg))
            .filter(|_| cfg.smoothing == 0.0),
        easy_below: easy_threshold(cfg.clip),
    };
    let clip = cfg.clip > 0.0;
    let pw_vec = match &cfg.pos_weight {
        Some(PosWeight::PerClass(v)) => Some(v.as_slice()),
        _ => None,
    };
    let cw = cfg.class_weight.as_deref();
    let up_arr = match inp.upstream {
        Upstream::Array(a) => Some(a),
        Upstream::Scalar(_) => None,
    };
    let want_none = cfg.reduction == Reduction::None && pass.wants_loss();
    let mut loss_none = if want_none {
        vec![0.0f32; n]
    } else {
        Vec::new()
    };

    // 2. One task per run of rows; each returns its partial sum.
    let rpt = rows_per_task(cols);
    let tasks = rows.div_ceil(rpt);
    let task_elems = rpt * cols;
    let grads = GradRows::split(
        if pass.wants_grad() { grad } else { None },
        task_elems,
        tasks,
    );
    let losses: Vec<Option<&mut [f32]>> = if want_none {
        loss_none.chunks_mut(task_elems.max(1)).map(Some).collect()
    } else {
        (0..tasks).map(|_| None).collect()
    };
    let grad_scale = params.grad_scale;
    let partials: Vec<MlPartial> = grads
        .into_par_iter()
        .zip(losses)
        .enumerate()
        .map(|(t, (mut g_out, mut l_out))| {
            let mut part = MlPartial::default();
            let mut ch = MlChunk {
                len: 0,
                x: [0.0; CHUNK],
                y: [-1.0; CHUNK],
                pw: [consts.pos_weight; CHUNK],
                w: [1.0; CHUNK],
                scale: if up_arr.is_some() { 1.0 } else { grad_scale },
                l: [0.0; CHUNK],
                g: [0.0; CHUNK],
            };
            // The task's rows are one contiguous run of elements: it is cut into chunks without
            // regard to row boundaries (so short rows cost no per-row overhead); `col` follows
            // the column of the chunk's first element for the per-class vectors.
            let e0 = t * rpt * cols;
            let e1 = ((t + 1) * rpt).min(rows) * cols;
            let mut at = e0;
            let mut col = 0;
            while at < e1 {
                let len = CHUNK.min(e1 - at);
                let local = at - e0;
                // Lanes past `len` keep x = 0 and become unknown targets (padding).
                ch.len = len;
                load_logits(&inp.logits, at, &mut ch.x[..len]);
                load_targets(&inp.targets, at, &mut ch.y[..len]);
                let padded = len.div_ceil(LANES) * LANES;
                ch.y[len..padded].fill(-1.0);
                if let Some(v) = pw_vec {
                    per_class(v, col, &mut ch.pw[..len]);
                }
                if let Some(v) = cw {
                    per_class(v, col, &mut ch.w[..len]);
                }
                let scan = ml_chunk(clip, &consts, &mut ch);
                if scan.invalid > 0 && part.first_invalid.is_none() {
                    let y = &ch.y[..len];
                    let j = (0..len).find(|&j| y[j].is_nan() || y[j] > 1.0).unwrap_or(0);
                    part.first_invalid = Some(at + j);
                }
                part.known += scan.known as u64;
                part.sum += scan.loss;
                let (lb, gb) = (&ch.l[..len], &mut ch.g[..len]);
                if let Some(lo) = l_out.as_deref_mut() {
                    lo[local..local + len].copy_from_slice(lb);
                }
                // 4. Gradient (already scaled, unless the upstream is an array for `none`).
                if pass.wants_grad() {
                    if let Some(u) = up_arr {
                        for (gv, uv) in gb.iter_mut().zip(&u[at..at + len]) {
                            *gv *= uv;
                        }
                    }
                    g_out.store(local, gb);
                }
                at += len;
                col = (col + len) % cols;
            }
            part
        })
        .collect();

    // 5. Fixed-order finish.
    if let Some(i) = partials.iter().find_map(|p| p.first_invalid) {
        return Err(inp.targets.invalid(i, cols));
    }
    if !pass.wants_loss() {
        return Ok(None);
    }
    let known: u64 = partials.iter().map(|p| p.known).sum();
    // Folded from +0 so that an empty batch gives 0, not Rust's empty float sum -0.
    let sum = partials.iter().fold(0.0f64, |a, p| a + p.sum);
    Ok(Some(match cfg.reduction {
        Reduction::None => LossValue::Array(loss_none),
        Reduction::Sum => LossValue::Scalar(sum as f32),
        Reduction::BatchMean => LossValue::Scalar((sum / rows.max(1) as f64) as f32),
        Reduction::Mean => LossValue::Scalar((sum / known.max(1) as f64) as f32),
    }))
}

/// What one single-label row pass needs besides the row.
#[derive(Clone, Copy)]
struct SlConsts {
    a_t: f32,
    a_o: f32,
    gamma_pos: f32,
    gamma_neg: f32,
    /// `gamma_neg` as an integer when it is one below 16.
    gn_int: Option<u32>,
}

/// One single-label row: `z` (f32, length C) in, `dl/dz` (before the row's scale) into `g`,
/// using `e` as scratch; returns the row loss.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn sl_row(z: &[f32], t: usize, c: &SlConsts, e: &mut [f32], g: &mut [f32]) -> f32 {
    let k = z.len();
    let (e, g) = (&mut e[..k], &mut g[..k]);
    // 1. Row maximum over LANES interleaved lanes; a NaN anywhere makes the whole row NaN.
    let mut mx = [f32::NEG_INFINITY; LANES];
    let mut nan = false;
    for ch in z.chunks(LANES) {
        for (m, &v) in mx.iter_mut().zip(ch) {
            *m = if v > *m { v } else { *m };
            nan |= v.is_nan();
        }
    }
    if nan {
        g.fill(f32::NAN);
        return f32::NAN;
    }
    let max = mx.iter().cloned().fold(f32::NEG_INFINITY, f32::max);

    // 2. e_j = e^(z_j - max); sum over all columns, and sum_rest over j != t separately so that
    //    1 - p_t = sum_rest / sum does not cancel.
    for (ev, &zv) in e.iter_mut().zip(z) {
        *ev = PolyMath::exp(math::sl_shift(zv, max));
    }
    let e_t = e[t];
    let mut lanes = [0.0f32; LANES];
    e[t] = 0.0;
    lane_sum(e, &mut lanes);
    e[t] = e_t;
    let sum_rest = lanes_total(&lanes);
    let sum_all = (sum_rest + e_t as f64) as f32;
    let sum_rest = sum_rest as f32;
    let ln_sum = PolyMath::ln(sum_all);

    // 3. Non-target columns: g_j = -a_o w (1 + gn ln p_j), l_j = -a_o w ln p_j, w = p_j^gn.
    //    With no smoothing they contribute nothing and are skipped.
    let mut loss_lanes = [0.0f32; LANES];
    let mut s_lanes = [0.0f32; LANES];
    let inv_sum = 1.0 / sum_all;
    macro_rules! others {
        ($elem:expr) => {{
            // Whole blocks of LANES columns as fixed-size arrays (constant trip count and no
            // bounds checks: vectorised), then the tail.
            let full = k / LANES * LANES;
            for b in 0..full / LANES {
                let r = b * LANES..(b + 1) * LANES;
                let zb: &[f32; LANES] = z[r.clone()].try_into().unwrap();
                let eb: &[f32; LANES] = e[r.clone()].try_into().unwrap();
                let gb: &mut [f32; LANES] = (&mut g[r]).try_into().unwrap();
                for lane in 0..LANES {
                    let (lj, gj) = $elem(math::sl_shift(zb[lane], max), eb[lane]);
                    let other = b * LANES + lane != t;
                    gb[lane] = if other { gj } else { 0.0 };
                    loss_lanes[lane] += if other { lj } else { 0.0 };
                    s_lanes[lane] += if other { gj } else { 0.0 };
                }
            }
            for j in full..k {
                let (lj, gj) = $elem(math::sl_shift(z[j], max), e[j]);
                let other = j != t;
                g[j] = if other { gj } else { 0.0 };
                loss_lanes[j - full] += if other { lj } else { 0.0 };
                s_lanes[j - full] += if other { gj } else { 0.0 };
            }
        }};
    }
    if c.a_o != 0.0 {
        match c.gn_int {
            // Integer gamma_neg: p_j = e_j / sum and w = p_j^gn by multiplication.
            Some(gn) => others!(|zs: f32, ev: f32| {
                math::sl_other_int(ev * inv_sum, zs, ln_sum, c.a_o, gn)
            }),
            None => others!(|zs: f32, _ev: f32| {
                let (_, lj, gj) = math::sl_other::<PolyMath>(zs, ln_sum, c.a_o, c.gamma_neg);
                (lj, gj)
            }),
        }
    } else {
        g.fill(0.0);
    }
    let s_rest = lanes_total(&s_lanes) as f32;

    // 4. Target column: p_t, q_t = 1 - p_t, l_t and g_t (math::sl_target).
    let (p_t, q_t, l_t, g_t) = math::sl_target::<PolyMath>(
        math::sl_shift(z[t], max),
        e_t,
        sum_all,
        sum_rest,
        ln_sum,
        c.a_t,
        c.gamma_pos,
    );
    let loss = (lanes_total(&loss_lanes) + l_t as f64) as f32;

    // 5. Softmax coupling: dl/dz_k = g_k - p_k S (p_k = e_k / sum), S = S_rest + g_t; the
    //    target column is g_t q_t - p_t S_rest.
    let s_all = s_rest + g_t;
    for (gv, &ev) in g.iter_mut().zip(e.iter()) {
        *gv -= math::mul0(s_all, ev * inv_sum);
    }
    g[t] = g_t * q_t - math::mul0(s_rest, p_t);
    loss
}

fn single_label(
    cfg: &SingleLabel,
    pass: Pass,
    inp: &SingleInputs<'_>,
    grad: Option<GradMut<'_>>,
    n: usize,
) -> Result<Option<LossValue>> {
    let (rows, cols) = (inp.shape.rows, inp.shape.cols);
    let _ = n;
    // 1. Rows that count (not the ignore index) and the gradient scale.
    let counted = match cfg.ignore_index {
        Some(ig) => (0..rows).filter(|&r| inp.targets.get(r) != ig).count(),
        None => rows,
    };
    let upstream = match inp.upstream {
        Upstream::Scalar(u) => u,
        Upstream::Array(_) => 1.0,
    };
    let scale = match cfg.reduction {
        Reduction::None | Reduction::Sum => 1.0,
        Reduction::Mean | Reduction::BatchMean => 1.0 / counted.max(1) as f64,
    };
    let params = SlParams::new(cfg, rows, cols, (upstream as f64 * scale) as f32);
    let consts = SlConsts {
        a_t: params.a_target,
        a_o: params.a_other,
        gamma_pos: params.gamma_pos,
        gamma_neg: params.gamma_neg,
        gn_int: small_int(cfg.gamma_neg),
    };
    let up_arr = match inp.upstream {
        Upstream::Array(a) => Some(a),
        Upstream::Scalar(_) => None,
    };

    // 2. Tasks of whole rows, each with two rows of scratch; partial sums in task order.
    let rpt = rows_per_task(cols);
    let tasks = rows.div_ceil(rpt);
    let grads = GradRows::split(
        if pass.wants_grad() { grad } else { None },
        rpt * cols,
        tasks,
    );
    let partials: Vec<(f64, Vec<f32>)> = grads
        .into_par_iter()
        .enumerate()
        .map(|(t, mut g_out)| {
            let mut z = vec![0.0f32; cols];
            let mut e = vec![0.0f32; cols];
            let mut g = vec![0.0f32; cols];
            let r0 = t * rpt;
            let r1 = ((t + 1) * rpt).min(rows);
            let mut sum = 0.0f64;
            let mut row_losses = Vec::with_capacity(r1 - r0);
            for r in r0..r1 {
                let target = inp.targets.get(r);
                let local = (r - r0) * cols;
                if Some(target) == cfg.ignore_index {
                    row_losses.push(0.0);
                    if pass.wants_grad() {
                        g.fill(0.0);
                        g_out.store(local, &g);
                    }
                    continue;
                }
                load_logits(&inp.logits, r * cols, &mut z);
                let l = sl_row(&z, target as usize, &consts, &mut e, &mut g);
                sum += l as f64;
                row_losses.push(l);
                if pass.wants_grad() {
                    let s = match up_arr {
                        Some(u) => u[r],
                        None => params.grad_scale,
                    };
                    for gv in g.iter_mut() {
                        *gv *= s;
                    }
                    g_out.store(local, &g);
                }
            }
            (sum, row_losses)
        })
        .collect();
    if !pass.wants_loss() {
        return Ok(None);
    }
    let sum = partials.iter().fold(0.0f64, |a, p| a + p.0);
    Ok(Some(match cfg.reduction {
        Reduction::None => LossValue::Array(partials.into_iter().flat_map(|p| p.1).collect()),
        Reduction::Sum => LossValue::Scalar(sum as f32),
        Reduction::Mean | Reduction::BatchMean => {
            LossValue::Scalar((sum / counted.max(1) as f64) as f32)
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Shape;

    /// The easy-negative shortcut writes exactly what the element math would: -0 loss and
    /// gradient, bit for bit, for logits right up to its threshold.
    #[test]
    fn easy_block_shortcut_is_bitwise_the_element_math() {
        for cfg in [
            MultiLabel::default(),
            MultiLabel::paper(),
            MultiLabel {
                clip: 1.0,
                ..MultiLabel::default()
            },
        ] {
            let t = easy_threshold(cfg.clip);
            let x: Vec<f32> = (0..64).map(|i| t.min(1e30) - i as f32 * 0.01).collect();
            let y = vec![0.0f32; 64];
            let mut g = vec![f32::NAN; 64];
            let inp = MultiInputs {
                shape: Shape::new(1, 64),
                logits: Logits::F32(&x),
                targets: MultiTargets::F32(&y),
                upstream: Upstream::Scalar(1.0),
            };
            let c = MultiLabel {
                reduction: Reduction::None,
                ..cfg.clone()
            };
            let l = Cpu::new().multi_label(&c, Pass::Fused, &inp, Some(GradMut::F32(&mut g)));
            let l = l.unwrap().unwrap();
            let k = MlConsts::from_params(&MlParams::new(&c, 1, 64, 1.0));
            let (gp, gn) = (c.gamma_pos as u32, c.gamma_neg as u32);
            for i in 0..64 {
                let (el, eg) =
                    math::ml_element_hard::<PolyMath, true>(x[i], false, 1.0, &k, gp, gn);
                assert_eq!(
                    l.as_slice()[i].to_bits(),
                    el.to_bits(),
                    "loss {i} at x = {}",
                    x[i]
                );
                assert_eq!(g[i].to_bits(), eg.to_bits(), "grad {i} at x = {}", x[i]);
            }
        }
    }
}
