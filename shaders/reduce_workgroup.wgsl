// reduce_workgroup.wgsl: workgroup reductions through workgroup memory only (the fallback of
// reduce_subgroup.wgsl, with the same interface).
//
// What: `red_sum2` (the sum of a vec2 over the workgroup) and `red_max` (the maximum of an
// f32), both returning the result to every invocation.
//
// Decomposition: a binary tree in workgroup memory, halving the active range each step
// (log2(WG) barriers). `WG` must be a power of two (the host only uses 64 and 256).
//
// Determinism: the tree is fixed by the workgroup size, so the same input gives the same bits
// on every run and every adapter that executes IEEE f32 additions.
//
// Precision: f32. Call sites must be in workgroup-uniform control flow.
//
// Requires `WG` (override, the workgroup size) from the kernel source.

struct Ids {
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
}

var<workgroup> red_v2: array<vec2<f32>, WG>;
var<workgroup> red_f: array<f32, WG>;

fn red_sum2(v: vec2<f32>, ids: Ids) -> vec2<f32> {
    red_v2[ids.lid] = v;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        if (ids.lid < half) {
            red_v2[ids.lid] = red_v2[ids.lid] + red_v2[ids.lid + half];
        }
        workgroupBarrier();
    }
    let t = red_v2[0];
    workgroupBarrier();
    return t;
}

fn red_max(v: f32, ids: Ids) -> f32 {
    red_f[ids.lid] = v;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        if (ids.lid < half) {
            red_f[ids.lid] = max(red_f[ids.lid], red_f[ids.lid + half]);
        }
        workgroupBarrier();
    }
    let t = red_f[0];
    workgroupBarrier();
    return t;
}
