// workspace.wgsl: the launch block, the workspace, and the two small kernels every loss
// module shares: `ws_init` (clears the workspace header) and `ws_finish` (the fixed-order
// final reduction of the per-workgroup partial losses).
//
// Workspace (binding 7, u32 words, allocated by the caller; size from the host's
// `*_workspace_bytes` query):
//   word 0  the reduced loss (f32 bits), written by ws_finish
//   word 1  first invalid target: 0 when none, else 0xffffffff - index (atomicMax keeps the
//           smallest index, whatever the order in which invocations find them)
//   word 2  the count for `mean`: known elements (multi-label) or counted rows (single-label),
//           summed by the count kernels with integer atomics (exact, order-independent)
//   word 3  the first invalid target's raw value (f32 bits, the u8 byte, or the low word of
//           the class index), written by the report kernels after the loss kernels
//   word 4  the high word of that class index (its sign extension for 32-bit types)
//   word 5-7 reserved (0)
//   word 8+ partial losses (f32 bits): one per workgroup (multi-label) or per row
//           (single-label), over all chunks; `launch.group0` is a chunk's first slot.
// Integer atomics only: there are no float atomics anywhere, so every float result is
// bitwise reproducible.
//
// ws_finish decomposition: one workgroup; invocation t sums slots t, t + WG, t + 2 WG, ... in
// order with Kahan compensation, then the workgroup tree (red_sum2) adds the WG values. The
// loss is that sum times the reduction's scale: `launch.host_scale` (1 for sum, 1/N for
// batchmean) or, with `launch.mode` = 1 (mean), 1 / max(word 2, 1).
//
// NOTE: `struct Launch` mirrors `Launch` in src/wgpu/plan.rs; change both together.

struct Launch {
    rows: u32,       // rows in this chunk
    row0: u32,       // the chunk's first row (global)
    elem0: u32,      // the chunk's first element (global), row0 * cols
    groups: u32,     // workgroups that do work in this dispatch
    groups_x: u32,   // x extent of the dispatch grid (group = x + y * groups_x)
    x_shift: u32,    // element shift of the logits (and of the gradient, g_shift)
    t_shift: u32,    // element shift of the targets
    u_shift: u32,    // element shift of the upstream array
    g_shift: u32,    // element shift of the gradient
    l_shift: u32,    // element shift of the loss array
    group0: u32,     // the chunk's first partial-loss slot
    count: u32,      // ws_finish: number of partial slots
    mode: u32,       // ws_finish: 0 scale by host_scale, 1 divide by the count (mean)
    host_scale: f32, // ws_finish: 1 (sum) or 1/N (batchmean)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(7) var<storage, read_write> ws: array<atomic<u32>>;
@group(0) @binding(9) var<uniform> launch: Launch;

const WS_LOSS: u32 = 0u;
const WS_BAD: u32 = 1u;
const WS_COUNT: u32 = 2u;
const WS_VALUE_LO: u32 = 3u;
const WS_VALUE_HI: u32 = 4u;
const WS_PARTIALS: u32 = 8u;

// Records that element (or row) `index` is invalid; the smallest index wins.
fn flag_bad(index: u32) {
    atomicMax(&ws[WS_BAD], 0xffffffffu - index);
}

// 1 / max(count, 1): the `mean` scale, from the count kernel's total.
fn mean_scale() -> f32 {
    return 1.0 / f32(max(atomicLoad(&ws[WS_COUNT]), 1u));
}

// The first invalid index (flat element or row), or 0xffffffff when there is none.
fn first_bad() -> u32 {
    return 0xffffffffu - atomicLoad(&ws[WS_BAD]);
}

@compute @workgroup_size(WS_PARTIALS)
fn ws_init(@builtin(local_invocation_index) lid: u32) {
    atomicStore(&ws[lid], 0u);
}

@compute @workgroup_size(WG)
fn ws_finish(ids: Ids) {
    // 1. Invocation-serial Kahan sum over a fixed stride: s + c' is the running sum.
    var s = 0.0;
    var c = 0.0;
    for (var k = ids.lid; k < launch.count; k += WG) {
        let v = bitcast<f32>(atomicLoad(&ws[WS_PARTIALS + k]));
        let y = v - c;
        let t = s + y;
        // An infinite running sum has no rounding error to carry (and inf - inf would be NaN).
        c = select((t - s) - y, 0.0, is_inf(t) || is_nan(t));
        s = t;
    }

    // 2. Fixed tree over the workgroup.
    let total = red_sum2(vec2<f32>(s - c, 0.0), ids).x;

    // 3. loss = total * scale.
    let scale = select(launch.host_scale, mean_scale(), launch.mode == 1u);
    if (ids.lid == 0u) {
        atomicStore(&ws[WS_LOSS], bitcast<u32>(total * scale));
    }
}
