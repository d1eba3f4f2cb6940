// targets_u8.wgsl: u8 multi-label targets (binding 1), four to a u32 word, byte 4k + j in bits
// 8j..8j+7 (little-endian, as the bytes lie in memory).
//
// `load_y(i)` maps the byte to the f32 convention of targets_f32.wgsl: 0 -> 0, 1 -> 1,
// 255 (unknown) -> -1, any other byte b -> 1 + b (above 1, so invalid).

@group(0) @binding(1) var<storage, read> targets: array<u32>;

fn load_y(i: u32) -> f32 {
    let k = i + launch.t_shift;
    let b = (targets[k >> 2u] >> ((k & 3u) * 8u)) & 0xffu;
    return select(select(1.0 + f32(b), -1.0, b == 255u), f32(b), b <= 1u);
}

// The raw byte, for the error message of an invalid target.
fn load_y_raw(i: u32) -> u32 {
    let k = i + launch.t_shift;
    return (targets[k >> 2u] >> ((k & 3u) * 8u)) & 0xffu;
}
