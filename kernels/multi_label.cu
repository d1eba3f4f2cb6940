// multi_label.cu: the multi-label (sigmoid) Asymmetric Loss, fused forward + backward.
//
// Formula (per element, asl_math.cuh `asl_ml_element`, timm 1.0.31):
//   y <- y (1 - s) + s / 2 for known targets (s = smoothing; unknown targets add 0, grad 0)
//   l = -[pw y ln max(p, eps) + (1 - y) ln max(q~, eps)] (1 - pt)^g * class_weight[c]
//   grad = upstream * scale * dl/dx, scale = 1 (sum, none), 1/N (batchmean), 1/known (mean)
//
// Decomposition: a persistent grid-stride kernel over the flat N x C array (64-bit indices,
// correct past 2^31 elements). Each thread takes 16 bytes of logits at a time (4 f32 or 8
// f16/bf16 elements) with packed loads of the targets and packed stores of the gradient, then
// a scalar tail; with unaligned pointers everything takes the scalar path. The gradient is
// written in the same pass as the loss. The loss is summed per thread (f32 within a pack, f64
// across packs), reduced by an xor butterfly and a fixed-order pass over the warps, published
// as one f64 partial per block, and the last block to finish adds the partials in block order:
// the same input on the same device gives bitwise the same loss and gradient every run.
//
// Mean: the known count must be known before the gradient is scaled, so the host runs the
// count pass `multi_label_count_<target>` first (it reads only the targets) unless it already
// knows the count; the main kernel then divides by ws[ASL_WS_COUNT] (ASL_MODE_COUNT).
//
// Invalid targets (f32 NaN or > 1, u8 other than 0/1/255) record the first bad flat index in
// ws[ASL_WS_ERR] with atomicMin; the host turns it into Error::InvalidTarget. Their loss and
// gradient are 0.
//
// Entry points: multi_label_<pass>_<dtype> (f32 targets) and multi_label_<pass>_<dtype>_u8
// (u8 targets), pass in {forward, backward, fused}, dtype in {f32, f16, bf16}; and
// multi_label_count_f32 / multi_label_count_u8. Arguments, in this order: inputs (logits,
// targets, class_weight, pos_weight, upstream; null when absent), outputs (grad, loss), the
// workspace, the element count, the MlParams block, the mode bits and the loss scale.
//
// Precision: f32 element math, f64 loss accumulation; the gradient is rounded once to the
// logits' type at the store.
#include "asl_device.cuh"

// 256 threads: 8 warps per block keep the block reduction short. At least 4 resident blocks
// per SM (the launch bound caps registers at 64 per thread) keep 1024 threads x 32+ bytes of
// loads in flight per SM, about what H100/H200 bandwidth times latency asks for.
#define ML_THREADS 256
#define ML_MIN_BLOCKS 4
#define ML_WARPS (ML_THREADS / 32)

// f32 targets: negative = unknown, [0, 1] = known, anything else (NaN, > 1) invalid.
struct AslTargetF32 {
    typedef float raw;
    // 0 = known (y set), 1 = unknown, 2 = invalid.
    static __device__ __forceinline__ int decode(raw v, float& y) {
        y = v;
        return v < 0.0f ? 1 : (v <= 1.0f ? 0 : 2);
    }
};

// u8 targets: 0, 1, 255 = unknown, any other byte invalid.
struct AslTargetU8 {
    typedef unsigned char raw;
    static __device__ __forceinline__ int decode(raw v, float& y) {
        y = static_cast<float>(v);
        return v <= 1u ? 0 : (v == 255u ? 1 : 2);
    }
};

// Everything the element step needs besides the element itself.
struct MlCtx {
    AslMlConsts k;
    const float* __restrict__ class_weight;  // null = 1
    const float* __restrict__ pos_weight;    // null = the scalar below
    float pos_weight_scalar;
    float one_minus_s;  // 1 - smoothing
    float half_s;       // smoothing / 2
    unsigned int cols;
    unsigned long long* err;
};

// One element: target decode, smoothing, weights, the math; returns the class-weighted loss
// and dl/dx (before the reduction scale and the upstream factor).
template <bool CLIP, class TG>
__device__ __forceinline__ void ml_one(float x, typename TG::raw t, unsigned long long i,
                                       unsigned int col, const MlCtx& c, float& l, float& g) {
    float y;
    const int state = TG::decode(t, y);
    if (state != 0) {
        if (state == 2) {
            atomicMin(c.err, i);
        }
        l = 0.0f;
        g = 0.0f;
        return;
    }
    // 1. Smoothing of known targets: y (1 - s) + s / 2.
    y = y * c.one_minus_s + c.half_s;
    // 2. Per-class weights (cached reads; C floats).
    const float pw = c.pos_weight != nullptr ? c.pos_weight[col] : c.pos_weight_scalar;
    const float cw = c.class_weight != nullptr ? c.class_weight[col] : 1.0f;
    // 3. The element math, then the class weight on loss and gradient.
    float le, ge;
    asl_ml_element<CLIP>(x, y, pw, c.k, le, ge);
    l = le * cw;
    g = ge * cw;
}

// The grid-stride body. Returns this thread's loss sum.
template <class L, class TG, int PASS, bool CLIP>
__device__ __forceinline__ double ml_body(const typename L::raw* __restrict__ logits,
                                          const typename TG::raw* __restrict__ targets,
                                          const float* __restrict__ upstream,
                                          typename L::raw* __restrict__ grad,
                                          float* __restrict__ loss_elems, unsigned long long n,
                                          const MlCtx& c, float gscale, bool vec) {
    constexpr int V = 16 / static_cast<int>(sizeof(typename L::raw));
    constexpr bool WANT_LOSS = PASS != ASL_BACKWARD;
    constexpr bool WANT_GRAD = PASS != ASL_FORWARD;
    const bool need_col = c.class_weight != nullptr || c.pos_weight != nullptr;
    const unsigned long long tid =
        static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
    double acc = 0.0;

    // 1. Packed body: V elements per step, one 16-byte load of logits.
    //    The column of the first element advances by (stride V) mod C per step (no division
    //    in the loop; only needed with per-class weights).
    const unsigned long long nvec = vec ? n / V : 0ull;
    const unsigned int cols = (need_col && c.cols > 0u) ? c.cols : 1u;  // no % 0 when n = 0
    const unsigned int vstep = static_cast<unsigned int>((stride * V) % cols);
    unsigned int col0 = static_cast<unsigned int>((tid * V) % cols);
    for (unsigned long long v = tid; v < nvec; v += stride) {
        const unsigned long long i0 = v * V;
        const AslPack<typename L::raw, V> xs = asl_load_pack<typename L::raw, V>(logits, i0);
        const AslPack<typename TG::raw, V> ts = asl_load_pack<typename TG::raw, V>(targets, i0);
        AslPack<float, V> ups;
        if (WANT_GRAD && upstream != nullptr) {
            ups = asl_load_pack<float, V>(upstream, i0);
        }
        unsigned int col = col0;
        AslPack<typename L::raw, V> gs;
        AslPack<float, V> ls;
        float lsum = 0.0f;
#pragma unroll
        for (int j = 0; j < V; ++j) {
            float l, g;
            ml_one<CLIP, TG>(L::load(xs.v[j]), ts.v[j], i0 + j, col, c, l, g);
            lsum += l;
            ls.v[j] = l;
            if (WANT_GRAD) {
                const float u = upstream != nullptr ? ups.v[j] : 1.0f;
                gs.v[j] = L::store(g * gscale * u);
            }
            if (++col == cols) {
                col = 0u;
            }
        }
        if (WANT_GRAD) {
            asl_store_pack<typename L::raw, V>(grad, i0, gs);
        }
        if (WANT_LOSS && loss_elems != nullptr) {
            asl_store_pack<float, V>(loss_elems, i0, ls);
        }
        acc += static_cast<double>(lsum);
        col0 += vstep;
        col0 = col0 >= cols ? col0 - cols : col0;
    }

    // 2. Scalar tail (everything when the pointers are not aligned for packed access).
    const unsigned int sstep = static_cast<unsigned int>(stride % cols);
    unsigned int col = static_cast<unsigned int>((nvec * V + tid) % cols);
    for (unsigned long long i = nvec * V + tid; i < n; i += stride) {
        float l, g;
        ml_one<CLIP, TG>(L::load(logits[i]), targets[i], i, col, c, l, g);
        if (WANT_GRAD) {
            const float u = upstream != nullptr ? upstream[i] : 1.0f;
            grad[i] = L::store(g * gscale * u);
        }
        if (WANT_LOSS && loss_elems != nullptr) {
            loss_elems[i] = l;
        }
        acc += static_cast<double>(l);
        col += sstep;
        col = col >= cols ? col - cols : col;
    }
    return acc;
}

template <class L, class TG, int PASS>
__device__ __forceinline__ void ml_kernel(const typename L::raw* __restrict__ logits,
                                          const typename TG::raw* __restrict__ targets,
                                          const float* __restrict__ class_weight,
                                          const float* __restrict__ pos_weight,
                                          const float* __restrict__ upstream,
                                          typename L::raw* __restrict__ grad,
                                          float* __restrict__ loss, unsigned long long* ws,
                                          unsigned long long n, const MlParams& p,
                                          unsigned int mode, double loss_scale) {
    __shared__ double scratch[ML_WARPS];

    // 1. Uniform parameters; for mean, the known count from the count pass.
    MlCtx c;
    c.k = asl_ml_consts(p);
    c.class_weight = (p.flags & ASL_ML_CLASS_WEIGHT) ? class_weight : nullptr;
    c.pos_weight = (p.flags & ASL_ML_POS_WEIGHT_VEC) ? pos_weight : nullptr;
    c.pos_weight_scalar = p.pos_weight;
    c.one_minus_s = 1.0f - p.smoothing;
    c.half_s = 0.5f * p.smoothing;
    c.cols = p.cols;
    c.err = ws + ASL_WS_ERR;
    float gscale = p.grad_scale;
    if (mode & ASL_MODE_COUNT) {
        const unsigned long long known = ws[ASL_WS_COUNT];
        const double inv = asl_rcp_count(known);
        gscale = static_cast<float>(static_cast<double>(p.grad_scale) * inv);
        loss_scale = inv;
    }
    const bool loss_array = (mode & ASL_MODE_LOSS_ARRAY) != 0u;
    const bool vec = (mode & ASL_MODE_VEC) != 0u;
    const float* up = (mode & ASL_MODE_UP_ARRAY) ? upstream : nullptr;
    float* loss_elems = loss_array ? loss : nullptr;

    // 2. The element pass (clip on or off chosen once, outside the loop).
    double acc;
    if (p.flags & ASL_ML_CLIP) {
        acc = ml_body<L, TG, PASS, true>(logits, targets, up, grad, loss_elems, n, c, gscale, vec);
    } else {
        acc = ml_body<L, TG, PASS, false>(logits, targets, up, grad, loss_elems, n, c, gscale, vec);
    }

    // 3. Reduced loss: block sum, then the last block adds the partials in block order and
    //    scales: sum x 1, x 1/N or x 1/known.
    if (PASS == ASL_BACKWARD || loss_array) {
        return;
    }
    const double block_total = asl_block_sum<double>(acc, scratch);
    if (asl_publish_partial<double>(ws, block_total)) {
        const double total = asl_sum_partials<double>(ws, scratch);
        if (threadIdx.x == 0 && loss != nullptr) {
            loss[0] = static_cast<float>(total * loss_scale);
        }
    }
}

// Count pass for mean: known elements -> ws[ASL_WS_COUNT] (integer sums are exact).
template <class TG>
__device__ __forceinline__ void ml_count(const typename TG::raw* __restrict__ targets,
                                         unsigned long long* ws, unsigned long long n) {
    __shared__ unsigned long long scratch[ML_WARPS];
    const unsigned long long tid =
        static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
    unsigned long long known = 0ull;
    for (unsigned long long i = tid; i < n; i += stride) {
        float y;
        known += TG::decode(targets[i], y) == 0 ? 1ull : 0ull;
    }
    const unsigned long long block_total = asl_block_sum<unsigned long long>(known, scratch);
    if (asl_publish_partial<unsigned long long>(ws, block_total)) {
        const unsigned long long total = asl_sum_partials<unsigned long long>(ws, scratch);
        if (threadIdx.x == 0) {
            ws[ASL_WS_COUNT] = total;
        }
    }
}

// extern "C" entry points, one per (pass, logits dtype, target type). The backend compiles one
// logits dtype x target type at a time (a "unit": -DASL_UNIT -DASL_UNIT_<F32|F16|BF16>
// -DASL_UNIT_<TF32|TU8>, with the count kernel of that target type), so that first use
// costs one NVRTC run of three kernels; without ASL_UNIT everything is compiled (CI check).
#define ML_ENTRY(NAME, L, TG, PASS)                                                        \
    extern "C" __global__ void __launch_bounds__(ML_THREADS, ML_MIN_BLOCKS)                \
        NAME(const L::raw* __restrict__ logits, const TG::raw* __restrict__ targets,       \
             const float* __restrict__ class_weight, const float* __restrict__ pos_weight, \
             const float* __restrict__ upstream, L::raw* __restrict__ grad,                \
             float* __restrict__ loss, unsigned long long* ws, unsigned long long n,       \
             MlParams p, unsigned int mode, double loss_scale) {                           \
        ml_kernel<L, TG, PASS>(logits, targets, class_weight, pos_weight, upstream, grad,  \
                               loss, ws, n, p, mode, loss_scale);                          \
    }

#if !defined(ASL_UNIT) || (defined(ASL_UNIT_F32) && defined(ASL_UNIT_TF32))
ML_ENTRY(multi_label_forward_f32, AslF32, AslTargetF32, ASL_FORWARD)
ML_ENTRY(multi_label_backward_f32, AslF32, AslTargetF32, ASL_BACKWARD)
ML_ENTRY(multi_label_fused_f32, AslF32, AslTargetF32, ASL_FUSED)
#endif
#if !defined(ASL_UNIT) || (defined(ASL_UNIT_F16) && defined(ASL_UNIT_TF32))
ML_ENTRY(multi_label_forward_f16, AslF16, AslTargetF32, ASL_FORWARD)
ML_ENTRY(multi_label_backward_f16, AslF16, AslTargetF32, ASL_BACKWARD)
ML_ENTRY(multi_label_fused_f16, AslF16, AslTargetF32, ASL_FUSED)
#endif
#if !defined(ASL_UNIT) || (defined(ASL_UNIT_BF16) && defined(ASL_UNIT_TF32))
ML_ENTRY(multi_label_forward_bf16, AslBf16, AslTargetF32, ASL_FORWARD)
ML_ENTRY(multi_label_backward_bf16, AslBf16, AslTargetF32, ASL_BACKWARD)
ML_ENTRY(multi_label_fused_bf16, AslBf16, AslTargetF32, ASL_FUSED)
#endif
#if !defined(ASL_UNIT) || (defined(ASL_UNIT_F32) && defined(ASL_UNIT_TU8))
ML_ENTRY(multi_label_forward_f32_u8, AslF32, AslTargetU8, ASL_FORWARD)
ML_ENTRY(multi_label_backward_f32_u8, AslF32, AslTargetU8, ASL_BACKWARD)
ML_ENTRY(multi_label_fused_f32_u8, AslF32, AslTargetU8, ASL_FUSED)
#endif
#if !defined(ASL_UNIT) || (defined(ASL_UNIT_F16) && defined(ASL_UNIT_TU8))
ML_ENTRY(multi_label_forward_f16_u8, AslF16, AslTargetU8, ASL_FORWARD)
ML_ENTRY(multi_label_backward_f16_u8, AslF16, AslTargetU8, ASL_BACKWARD)
ML_ENTRY(multi_label_fused_f16_u8, AslF16, AslTargetU8, ASL_FUSED)
#endif
#if !defined(ASL_UNIT) || (defined(ASL_UNIT_BF16) && defined(ASL_UNIT_TU8))
ML_ENTRY(multi_label_forward_bf16_u8, AslBf16, AslTargetU8, ASL_FORWARD)
ML_ENTRY(multi_label_backward_bf16_u8, AslBf16, AslTargetU8, ASL_BACKWARD)
ML_ENTRY(multi_label_fused_bf16_u8, AslBf16, AslTargetU8, ASL_FUSED)
#endif

#if !defined(ASL_UNIT) || defined(ASL_UNIT_TF32)
extern "C" __global__ void __launch_bounds__(ML_THREADS, ML_MIN_BLOCKS)
    multi_label_count_f32(const float* __restrict__ targets, unsigned long long* ws,
                          unsigned long long n) {
    ml_count<AslTargetF32>(targets, ws, n);
}
#endif

#if !defined(ASL_UNIT) || defined(ASL_UNIT_TU8)
extern "C" __global__ void __launch_bounds__(ML_THREADS, ML_MIN_BLOCKS)
    multi_label_count_u8(const unsigned char* __restrict__ targets, unsigned long long* ws,
                         unsigned long long n) {
    ml_count<AslTargetU8>(targets, ws, n);
}
#endif
