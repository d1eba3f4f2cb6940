// logits_bf16.wgsl: bf16 logits (binding 0) and bf16 gradient (binding 5), both as packed u32
// words (two bf16 per word, element 2k in the low half), so no shader feature is needed.
//
// A bf16 is the high half of an f32, so a load is a shift and a bitcast (exact). A store
// rounds to nearest even on the bits (NaN is kept quiet: 0x7fc0 with the sign) and writes its
// half of the word with `atomicAnd` (clear) then `atomicOr` (set). The two halves of a word may
// belong to different invocations (odd rows, chunk edges); the atomics touch disjoint bits, so
// the final word does not depend on their order and the result stays deterministic.
//
// TODO: the two atomics per element cost bandwidth on real GPUs; a pair-per-invocation layout
// would avoid them where rows are even and chunks aligned.

@group(0) @binding(0) var<storage, read> logits: array<u32>;
@group(0) @binding(5) var<storage, read_write> grad: array<atomic<u32>>;

fn load_x(i: u32) -> f32 {
    let k = i + launch.x_shift;
    let word = logits[k >> 1u];
    let bits = select(word << 16u, word & 0xffff0000u, (k & 1u) == 1u);
    return bitcast<f32>(bits);
}

fn f32_to_bf16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    // Round to nearest even: add 0x7fff plus the lowest kept bit, then truncate.
    let rounded = (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
    return select(rounded, ((b >> 16u) & 0x8000u) | 0x7fc0u, is_nan(v));
}

fn store_g(i: u32, v: f32) {
    let k = i + launch.g_shift;
    let sh = (k & 1u) * 16u;
    let h = f32_to_bf16_bits(v) << sh;
    atomicAnd(&grad[k >> 1u], ~(0xffffu << sh));
    atomicOr(&grad[k >> 1u], h);
}
