// logits_f32.wgsl: f32 logits (binding 0) and f32 gradient (binding 5).
//
// `load_x(i)` reads element i of the current chunk and `store_g(i, v)` writes the gradient of
// element i; both add the chunk's element shift (`launch.x_shift` / `launch.g_shift`: the
// distance from the aligned binding offset to the chunk's first element).

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;

fn load_x(i: u32) -> f32 {
    return logits[i + launch.x_shift];
}

fn store_g(i: u32, v: f32) {
    grad[i + launch.g_shift] = v;
}
