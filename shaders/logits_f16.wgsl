// logits_f16.wgsl: f16 logits (binding 0) and f16 gradient (binding 5). Needs
// `Features::SHADER_F16` (the `enable f16;` directive is put first by the host).
//
// Loads widen to f32 (exact). Stores round to nearest f16; a magnitude of 65520 or more (the
// f16 overflow threshold) is stored as a signed infinity explicitly, because WGSL leaves the
// conversion of an out-of-range f32 to f16 unspecified. NaN stays NaN.

@group(0) @binding(0) var<storage, read> logits: array<f16>;
@group(0) @binding(5) var<storage, read_write> grad: array<f16>;

fn load_x(i: u32) -> f32 {
    return f32(logits[i + launch.x_shift]);
}

fn store_g(i: u32, v: f32) {
    let big = abs(v) >= 65520.0;
    let w = select(v, select(-f32_inf(), f32_inf(), v > 0.0), big);
    grad[i + launch.g_shift] = f16(w);
}
