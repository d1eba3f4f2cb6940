// multi_label.wgsl: the fused multi-label (sigmoid) asymmetric loss, timm's
// AsymmetricLossMultiLabel, forward and backward in one pass over the logits.
//
// Formula, per element with p = sigmoid(x), y the smoothed target y (1 - s) + s / 2, m = clip:
//   q~ = min(1 - p + m, 1),  CE = pw y ln max(p, eps) + (1 - y) ln max(q~, eps),
//   pt = y p + (1 - y) q~,   g = gamma_pos y + gamma_neg (1 - y),  w = (1 - pt)^g,
//   l  = -CE w class_weight[c],   dl/dx from the closed forms (ml_element, asl_common.wgsl).
// Unknown targets (f32 < 0, u8 255) add 0 and get gradient 0; invalid ones (f32 NaN or > 1,
// u8 2..254) do the same and are flagged in the workspace (the host turns the first into an
// error), so no second pass over the targets is needed.
//
// Decomposition: the chunk's elements are flat (row-major, rows whole); workgroup g owns the
// WG * ITEMS elements from g * WG * ITEMS, invocation `lid` handles element
// g * WG * ITEMS + k * WG + lid for k = 0 .. ITEMS-1 (adjacent invocations read adjacent
// elements). Each invocation sums its ITEMS losses in order, the workgroup adds the WG sums in
// a fixed tree (red_sum2), and invocation 0 writes the workgroup's partial to the workspace;
// ws_finish adds the partials in a fixed order. No float atomics: the loss and the gradient
// are bitwise reproducible.
//
// Passes (override constants, one source): WANT_LOSS / WANT_GRAD select forward-only,
// backward-only or fused; LOSS_ARRAY writes the per-element loss (reduction none) instead of
// partial sums; UP_ARRAY reads a per-element upstream gradient; SCALE_BY_COUNT multiplies the
// gradient by 1 / known (reduction mean), the count coming from ml_count, which runs first
// (a read of the targets only: the count must be known before any gradient is written).
//
// Precision: f32 math and accumulation (logits of any dtype are widened on load); the
// gradient is rounded once, at the store, to the logits' dtype.
//
// Bindings: 0 logits and 5 grad (logits_<dtype>.wgsl), 1 targets (targets_<type>.wgsl),
// 2 upstream, 3 class_weight, 4 pos_weight, 6 loss, 7 workspace and 9 launch
// (workspace.wgsl), 8 params. Unused ones are bound to a small dummy buffer.

// NOTE: mirrors `MlParams` in src/config.rs field for field.
struct Params {
    rows: u32,
    cols: u32,
    gamma_pos: f32,
    gamma_neg: f32,
    clip: f32,
    ln_eps: f32,
    smoothing: f32,
    pos_weight: f32,
    grad_scale: f32,
    flags: u32,
    _pad0: u32,
    _pad1: u32,
}

// NOTE: the bits of `ml_flags` in src/config.rs.
const FLAG_DETACHED: u32 = 1u;
const FLAG_CLASS_WEIGHT: u32 = 2u;
const FLAG_POS_WEIGHT_VEC: u32 = 4u;
const FLAG_NO_FOCUS: u32 = 8u;
const FLAG_CLIP: u32 = 16u;

@group(0) @binding(2) var<storage, read> upstream: array<f32>;
@group(0) @binding(3) var<storage, read> class_weight: array<f32>;
@group(0) @binding(4) var<storage, read> pos_weight: array<f32>;
@group(0) @binding(6) var<storage, read_write> loss_out: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

// Workgroup size: 256 invocations, the WebGPU default limit and a multiple of every subgroup
// width in use. Must be a power of two (reduce_workgroup.wgsl).
override WG: u32 = 256u;
// Elements per invocation: 16 gives 4096 elements per workgroup, few enough partials that
// ws_finish is negligible and enough work per workgroup to hide its reduction.
override ITEMS: u32 = 16u;
override WANT_LOSS: bool = true;
override WANT_GRAD: bool = true;
override LOSS_ARRAY: bool = false;
override UP_ARRAY: bool = false;
override SCALE_BY_COUNT: bool = false;
// Both gammas are integers below 16 (and focusing is on or off for both): hard targets take
// ml_element_hard, soft ones the general ml_element.
override INT_GAMMAS: bool = false;

fn consts() -> MlConsts {
    return MlConsts(
        params.gamma_pos,
        params.gamma_neg,
        params.clip,
        params.ln_eps,
        (params.flags & FLAG_CLIP) != 0u,
        (params.flags & FLAG_NO_FOCUS) != 0u,
        (params.flags & FLAG_DETACHED) != 0u,
    );
}

// 0 = known, 1 = unknown, 2 = invalid, from the raw target (targets_<type>.wgsl convention).
fn target_kind(y: f32) -> u32 {
    if (y >= 0.0 && y <= 1.0) {
        return 0u;
    }
    if (y < 0.0) {
        return 1u;
    }
    return 2u; // NaN or above 1
}

// The workgroup's linear index in a 2-D grid (x wraps at the per-dimension limit).
fn group_index(ids: Ids) -> u32 {
    return ids.wid.x + ids.wid.y * launch.groups_x;
}

// Counts the known elements of the chunk into workspace word 2 (reduction mean only) and flags
// invalid targets. Same element decomposition as ml_main.
@compute @workgroup_size(WG)
fn ml_count(ids: Ids) {
    let g = group_index(ids);
    if (g >= launch.groups) {
        return;
    }
    let n = launch.rows * params.cols;
    var known = 0.0;
    for (var k = 0u; k < ITEMS; k++) {
        let i = g * WG * ITEMS + k * WG + ids.lid;
        if (i < n) {
            let kind = target_kind(load_y(i));
            known += select(0.0, 1.0, kind == 0u);
            if (kind == 2u) {
                flag_bad(launch.elem0 + i);
            }
        }
    }
    // At most WG * ITEMS = 4096 per workgroup: exact in f32.
    let total = red_sum2(vec2<f32>(known, 0.0), ids).x;
    if (ids.lid == 0u) {
        atomicAdd(&ws[WS_COUNT], u32(total));
    }
}

// After ml_main, one invocation per chunk: if the first invalid target lies in this chunk,
// copies its raw value to the workspace so that the error can name it.
@compute @workgroup_size(1)
fn ml_report() {
    let bad = first_bad();
    let n = launch.rows * params.cols;
    if (bad != 0xffffffffu && bad >= launch.elem0 && bad - launch.elem0 < n) {
        atomicStore(&ws[WS_VALUE_LO], load_y_raw(bad - launch.elem0));
    }
}

@compute @workgroup_size(WG)
fn ml_main(ids: Ids) {
    let g = group_index(ids);
    if (g >= launch.groups) {
        return;
    }
    let n = launch.rows * params.cols;
    let k = consts();

    // 1. Gradient factor: upstream x reduction scale (host), times 1 / known for mean.
    var scale = params.grad_scale;
    if (WANT_GRAD && SCALE_BY_COUNT) {
        scale = scale * mean_scale();
    }

    var acc = 0.0;
    for (var it = 0u; it < ITEMS; it++) {
        let i = g * WG * ITEMS + it * WG + ids.lid;
        if (i < n) {
            // 2. Classify the target: known, unknown (adds 0, gradient 0) or invalid (flagged).
            let raw = load_y(i);
            let kind = target_kind(raw);
            if (kind == 2u) {
                flag_bad(launch.elem0 + i);
            }

            // 3. Loss and dl/dx of a known element, times its class weight. Hard targets with
            //    integer gammas take the multiplicative fast case (as the CPU path does).
            var lg = vec2<f32>(0.0, 0.0);
            if (kind == 0u) {
                let c = i % params.cols;
                let y = raw * (1.0 - params.smoothing) + 0.5 * params.smoothing;
                var pw = params.pos_weight;
                if ((params.flags & FLAG_POS_WEIGHT_VEC) != 0u) {
                    pw = pos_weight[c];
                }
                if (INT_GAMMAS && (y == 0.0 || y == 1.0)) {
                    lg = ml_element_hard(load_x(i), y == 1.0, pw, k, u32(params.gamma_pos),
                                         u32(params.gamma_neg));
                } else {
                    lg = ml_element(load_x(i), y, pw, k);
                }
                if ((params.flags & FLAG_CLASS_WEIGHT) != 0u) {
                    lg = lg * class_weight[c];
                }
            }

            // 4. Loss: the element itself (none) or into the invocation's running sum.
            if (WANT_LOSS) {
                if (LOSS_ARRAY) {
                    loss_out[i + launch.l_shift] = lg.x;
                } else {
                    acc += lg.x;
                }
            }

            // 5. Gradient: upstream (per element for none) x scale x dl/dx, rounded at the store.
            if (WANT_GRAD) {
                var u = scale;
                if (UP_ARRAY) {
                    u = u * upstream[i + launch.u_shift];
                }
                store_g(i, u * lg.y);
            }
        }
    }

    // 6. Per-workgroup partial of the loss: a fixed tree, one slot per workgroup.
    if (WANT_LOSS && !LOSS_ARRAY) {
        let total = red_sum2(vec2<f32>(acc, 0.0), ids).x;
        if (ids.lid == 0u) {
            atomicStore(&ws[WS_PARTIALS + launch.group0 + g], bitcast<u32>(total));
        }
    }
}
