// single_label.wgsl: the fused single-label (softmax) asymmetric loss, timm's
// AsymmetricLossSingleLabel, forward and backward for one row per workgroup.
//
// Formula, per row z with target t, K = C classes, ln p = log_softmax(z):
//   a_t = 1 - s + s / K, a_j = s / K (label smoothing s),
//   l   = -a_t (1 - p_t)^gp ln p_t - sum_{j != t} a_j p_j^gn ln p_j,
//   g_j = dl/d(ln p_j) (sl_target / sl_other in asl_common.wgsl), S = sum_j g_j,
//   dl/dz_k = g_k - p_k S; for the target column g_t q_t - p_t S_rest (q_t = 1 - p_t,
//   S_rest = S - g_t summed on its own) so that nothing cancels when p_t is near 1.
// Rows whose class is the ignore index add 0 and get gradient 0; a class outside 0..C (and not
// the ignore index) is flagged in the workspace and treated the same (the host reports it).
// A NaN anywhere in a row makes its loss and every gradient element NaN.
//
// Decomposition: workgroup r owns row r of the chunk; invocation `lid` handles columns
// lid, lid + WG, lid + 2 WG, ... in every sweep.
//   1. Sweep 1 (online softmax): each invocation keeps its running max m, sum of e^(z - m)
//      and the same sum without the target column; the workgroup takes the max M and adds the
//      rescaled sums (e^(m - M) each) in a fixed tree.
//   2. The target terms, computed redundantly by every invocation from z_t.
//   3. Sweep 2 (only with smoothing, a_j != 0): the other columns' losses and S_rest.
//   4. Sweep 3 (gradient passes): g_k - p_k S, recomputing p_k and g_k from z_k.
// Rows of up to CACHE_LEN columns are kept in workgroup memory during sweep 1 (USE_CACHE), so
// the logits are read from global memory once; longer rows loop over global memory in every
// sweep (three reads, the later ones mostly from cache on hardware GPUs).
//
// TODO: short rows (C well below the workgroup size) leave most of a workgroup idle and pay
// three workgroup reductions per row; several rows per workgroup with segmented reductions
// would suit them better (4096 x 80 is about 3x slower per element than 1024 x 1000 on
// lavapipe).
//
// Passes (override constants, one source): WANT_LOSS / WANT_GRAD (forward-only, backward-only,
// fused); LOSS_ARRAY writes the per-row loss (reduction none) instead of a partial slot;
// UP_ARRAY reads a per-row upstream gradient; SCALE_BY_COUNT multiplies the gradient by
// 1 / (counted rows) from sl_count, which runs first (a read of the class indices only).
// CLASS_KIND: 0 i32, 1 u32, 2 i64 class indices (i64 read as two u32 words; a value that does
// not fit in i32 is out of range).
//
// Precision: f32 math and accumulation; the gradient is rounded once, at the store.
//
// Bindings: 0 logits and 5 grad (logits_<dtype>.wgsl), 1 class indices, 2 upstream, 6 loss,
// 7 workspace and 9 launch (workspace.wgsl), 8 params.

// NOTE: mirrors `SlParams` in src/config.rs field for field.
struct Params {
    rows: u32,
    cols: u32,
    gamma_pos: f32,
    gamma_neg: f32,
    a_target: f32,
    a_other: f32,
    grad_scale: f32,
    has_ignore: u32,
    ignore_index: i32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(1) var<storage, read> classes: array<u32>;
@group(0) @binding(2) var<storage, read> upstream: array<f32>;
@group(0) @binding(6) var<storage, read_write> loss_out: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

// Workgroup size: the host picks 64 for short rows (C <= 512) and 256 otherwise. A power of
// two (reduce_workgroup.wgsl).
override WG: u32 = 256u;
override WANT_LOSS: bool = true;
override WANT_GRAD: bool = true;
override LOSS_ARRAY: bool = false;
override UP_ARRAY: bool = false;
override SCALE_BY_COUNT: bool = false;
override CLASS_KIND: u32 = 0u;
override USE_CACHE: bool = false;
// Row cache length in f32. The host sizes it to the device's workgroup memory (4096 when
// 32 KiB are available, less under the 16 KiB default) and sets 1 when USE_CACHE is off.
override CACHE_LEN: u32 = 1u;

var<workgroup> row_cache: array<f32, CACHE_LEN>;
var<workgroup> wg_class: vec2<i32>;
var<workgroup> wg_nan: atomic<u32>;

const CLASS_VALID: i32 = 0;
const CLASS_IGNORED: i32 = 1;
const CLASS_INVALID: i32 = 2;

// Row r's class index and its kind (valid, ignored, invalid).
fn load_class(r: u32) -> vec2<i32> {
    let k = r + launch.t_shift;
    var v: i32;
    var fits = true;
    if (CLASS_KIND == 2u) {
        let lo = classes[2u * k];
        let hi = classes[2u * k + 1u];
        fits = (hi == 0u && lo < 0x80000000u) || (hi == 0xffffffffu && lo >= 0x80000000u);
        v = bitcast<i32>(lo);
    } else if (CLASS_KIND == 1u) {
        let raw = classes[k];
        fits = raw < 0x80000000u;
        v = bitcast<i32>(raw);
    } else {
        v = bitcast<i32>(classes[k]);
    }
    if (fits && params.has_ignore != 0u && v == params.ignore_index) {
        return vec2<i32>(v, CLASS_IGNORED);
    }
    if (fits && v >= 0 && u32(v) < params.cols) {
        return vec2<i32>(v, CLASS_VALID);
    }
    return vec2<i32>(v, CLASS_INVALID);
}

fn group_index(ids: Ids) -> u32 {
    return ids.wid.x + ids.wid.y * launch.groups_x;
}

// Column j of the current row: from the row cache or from global memory.
fn row_z(rowbase: u32, j: u32) -> f32 {
    if (USE_CACHE) {
        return row_cache[j];
    }
    return load_x(rowbase + j);
}

// Counts the rows that count for `mean` (valid, not ignored) into workspace word 2 and flags
// invalid classes. One row per invocation.
@compute @workgroup_size(WG)
fn sl_count(ids: Ids) {
    let g = group_index(ids);
    if (g >= launch.groups) {
        return;
    }
    let r = g * WG + ids.lid;
    var counted = 0.0;
    if (r < launch.rows) {
        let cls = load_class(r);
        counted = select(0.0, 1.0, cls.y == CLASS_VALID);
        if (cls.y == CLASS_INVALID) {
            flag_bad(launch.row0 + r);
        }
    }
    let total = red_sum2(vec2<f32>(counted, 0.0), ids).x;
    if (ids.lid == 0u) {
        atomicAdd(&ws[WS_COUNT], u32(total));
    }
}

// After sl_main, one invocation per chunk: if the first invalid row lies in this chunk,
// copies its raw class index (both words for i64) to the workspace for the error message.
@compute @workgroup_size(1)
fn sl_report() {
    let bad = first_bad();
    if (bad != 0xffffffffu && bad >= launch.row0 && bad - launch.row0 < launch.rows) {
        let k = bad - launch.row0 + launch.t_shift;
        var lo: u32;
        var hi: u32;
        if (CLASS_KIND == 2u) {
            lo = classes[2u * k];
            hi = classes[2u * k + 1u];
        } else {
            lo = classes[k];
            // Sign extension for i32, zero for u32.
            hi = select(0u, 0xffffffffu, CLASS_KIND == 0u && lo >= 0x80000000u);
        }
        atomicStore(&ws[WS_VALUE_LO], lo);
        atomicStore(&ws[WS_VALUE_HI], hi);
    }
}

// Writes row r's loss: into the loss array (none) or the row's partial slot.
fn write_row_loss(r: u32, l: f32) {
    if (LOSS_ARRAY) {
        loss_out[r + launch.l_shift] = l;
    } else {
        atomicStore(&ws[WS_PARTIALS + launch.group0 + r], bitcast<u32>(l));
    }
}

@compute @workgroup_size(WG)
fn sl_main(ids: Ids) {
    let r = group_index(ids);
    if (r >= launch.rows) {
        return;
    }
    let cols = params.cols;
    let rowbase = r * cols;

    // 0. The row's class, made workgroup-uniform; an ignored or invalid row writes zeros.
    if (ids.lid == 0u) {
        wg_class = load_class(r);
        atomicStore(&wg_nan, 0u);
    }
    let cls = workgroupUniformLoad(&wg_class);
    if (cls.y != CLASS_VALID) {
        if (cls.y == CLASS_INVALID && ids.lid == 0u) {
            flag_bad(launch.row0 + r);
        }
        if (WANT_GRAD) {
            for (var j = ids.lid; j < cols; j += WG) {
                store_g(rowbase + j, 0.0);
            }
        }
        if (WANT_LOSS && ids.lid == 0u) {
            write_row_loss(r, 0.0);
        }
        return;
    }
    let t = u32(cls.x);

    // 1. Sweep 1, online softmax: m = running max, s = sum_j e^(z_j - m), sr = the same
    //    without the target. A larger z rescales both sums by e^(m - z) (one exp per column).
    var m = -f32_inf();
    var s = 0.0;
    var sr = 0.0;
    var nan = false;
    for (var j = ids.lid; j < cols; j += WG) {
        let z = load_x(rowbase + j);
        if (USE_CACHE) {
            row_cache[j] = z;
        }
        nan = nan || is_nan(z);
        let other = select(1.0, 0.0, j == t);
        if (z > m) {
            let f = asl_exp(sl_shift(m, z));
            s = s * f + 1.0;
            sr = sr * f + other;
            m = z;
        } else {
            let e = asl_exp(sl_shift(z, m));
            s += e;
            sr += e * other;
        }
    }
    if (nan) {
        atomicOr(&wg_nan, 1u);
    }

    //    Workgroup: M = max_i m_i; sum = sum_i s_i e^(m_i - M) (and the same for sr).
    let mx = red_max(m, ids);
    let f = asl_exp(sl_shift(m, mx));
    let sums = red_sum2(vec2<f32>(s * f, sr * f), ids);
    let row_nan = atomicLoad(&wg_nan) != 0u;
    let sum = sums.x;
    let sum_rest = sums.y;
    let ln_sum = asl_ln(sum);

    // 2. Target terms (p_t, q_t, loss_t, g_t): every invocation computes the same values.
    let zt_shift = sl_shift(row_z(rowbase, t), mx);
    let tt = sl_target(zt_shift, asl_exp(zt_shift), sum, sum_rest, ln_sum, params.a_target,
                       params.gamma_pos);

    // 3. Sweep 2 (smoothing only): the other columns' losses and S_rest = sum_{j != t} g_j.
    //    Without smoothing a_j = 0, so their losses and g_j are 0 and the sweep is skipped.
    var rest = vec2<f32>(0.0, 0.0);
    let smoothing_on = params.a_other != 0.0;
    if (smoothing_on) {
        var acc = vec2<f32>(0.0, 0.0);
        for (var j = ids.lid; j < cols; j += WG) {
            if (j != t) {
                let o = sl_other(sl_shift(row_z(rowbase, j), mx), ln_sum, params.a_other,
                                 params.gamma_neg);
                acc += vec2<f32>(o.y, o.z);
            }
        }
        rest = red_sum2(acc, ids);
    }
    let s_rest = rest.y;
    let s_all = s_rest + tt.w;

    // 4. Sweep 3: dl/dz_k = g_k - p_k S (target: g_t q_t - p_t S_rest), times upstream and
    //    the reduction scale.
    if (WANT_GRAD) {
        var u = params.grad_scale;
        if (UP_ARRAY) {
            u = u * upstream[r + launch.u_shift];
        }
        if (SCALE_BY_COUNT) {
            u = u * mean_scale();
        }
        for (var j = ids.lid; j < cols; j += WG) {
            var gk: f32;
            if (j == t) {
                gk = tt.w * tt.y - mul0(s_rest, tt.x);
            } else {
                let zs = sl_shift(row_z(rowbase, j), mx);
                if (smoothing_on) {
                    let o = sl_other(zs, ln_sum, params.a_other, params.gamma_neg);
                    gk = o.z - mul0(s_all, o.x);
                } else {
                    gk = -mul0(s_all, asl_exp(zs - ln_sum));
                }
            }
            gk = select(gk, f32_nan(), row_nan);
            store_g(rowbase + j, u * gk);
        }
    }

    // 5. The row's loss: loss_t + sum_{j != t} loss_j (NaN for a row with a NaN).
    if (WANT_LOSS && ids.lid == 0u) {
        write_row_loss(r, select(tt.z + rest.x, f32_nan(), row_nan));
    }
}
