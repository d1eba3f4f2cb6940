// targets_f32.wgsl: f32 multi-label targets (binding 1).
//
// `load_y(i)` returns the raw value: soft label in [0, 1]; negative = unknown; NaN or above 1
// = invalid (the kernel classifies).

@group(0) @binding(1) var<storage, read> targets: array<f32>;

fn load_y(i: u32) -> f32 {
    return targets[i + launch.t_shift];
}

// The raw bits, for the error message of an invalid target.
fn load_y_raw(i: u32) -> u32 {
    return bitcast<u32>(targets[i + launch.t_shift]);
}
