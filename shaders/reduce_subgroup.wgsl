// reduce_subgroup.wgsl: workgroup reductions through subgroup operations.
//
// What: `red_sum2` (the sum of a vec2 over the workgroup) and `red_max` (the maximum of an
// f32), both returning the result to every invocation. Used when the device has
// `Features::SUBGROUP`; `reduce_workgroup.wgsl` is the drop-in fallback with the same
// interface (the host picks one, the tests run both).
//
// Decomposition: `subgroupAdd` / `subgroupMax` inside each subgroup, then lane 0 of every
// subgroup writes its value to workgroup memory at `subgroup_id`, and after a barrier every
// invocation folds the `num_subgroups` values in index order. The width is read from the
// builtins, never assumed (8 on llvmpipe, 32 on NVIDIA, 64 on AMD, variable on Intel).
//
// Determinism: the order of a subgroup sum is fixed by the hardware for a given pipeline and
// the fold over subgroups is in index order, so the same input gives the same bits run to run
// on the same adapter; it may differ in the last bits from the fallback.
//
// Precision: f32. Call sites must be in workgroup-uniform control flow (each ends with a
// barrier so that the scratch can be reused at once).
//
// Requires `WG` (override, the workgroup size) from the kernel source.

struct Ids {
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
}

var<workgroup> red_v2: array<vec2<f32>, WG>;
var<workgroup> red_f: array<f32, WG>;

fn red_sum2(v: vec2<f32>, ids: Ids) -> vec2<f32> {
    let s = subgroupAdd(v);
    if (ids.lane == 0u) {
        red_v2[ids.sg] = s;
    }
    workgroupBarrier();
    var t = red_v2[0];
    for (var k = 1u; k < ids.nsg; k++) {
        t = t + red_v2[k];
    }
    workgroupBarrier();
    return t;
}

fn red_max(v: f32, ids: Ids) -> f32 {
    let s = subgroupMax(v);
    if (ids.lane == 0u) {
        red_f[ids.sg] = s;
    }
    workgroupBarrier();
    var t = red_f[0];
    for (var k = 1u; k < ids.nsg; k++) {
        t = max(t, red_f[k]);
    }
    workgroupBarrier();
    return t;
}
