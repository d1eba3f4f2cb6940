// single_label.cu: the single-label (softmax) Asymmetric Loss, fused forward + backward.
//
// Formula (per row, target t, K = C classes, smoothing masses a_t = 1 - s + s/K, a_o = s/K):
//   l = -a_t (1 - p_t)^gp ln p_t - a_o sum_{j != t} p_j^gn ln p_j
//   dl/dz_k = g_k - p_k S,  S = sum_j g_j,  g_j = dl/d(ln p_j)   (reference.rs `sl_row`);
//   the target column is written g_t q_t - p_t S_rest so that nothing cancels when p_t ~ 1.
//   grad = upstream * scale * dl/dz, scale = 1 (sum, none) or 1/rows that count (mean).
//
// Decomposition: a persistent kernel over rows. Short rows (C <= 1024, the host decides) take one
// warp each (8 rows per 256-thread block, shuffles only); longer rows take a whole block. Per
// row, three passes over the columns:
//   1. online softmax over the non-target columns (running max m and sum e^(z - m), merged
//      across threads in a fixed tree), then the target terms (asl_sl_target);
//   2. the loss and S_rest = sum_{j != t} g_j (asl_sl_other), reduced in f64;
//   3. the gradient g_k - p_k S, written once in the logits' type.
// Rows of up to 12000 columns are cached as f32 in dynamic shared memory by pass 1,
// so the logits are read from global memory once; longer rows stream from global memory in
// every pass (the re-reads mostly hit L2). Row losses are added per warp/block in row order,
// then the last block adds the block partials in block order: bitwise repeatable.
//
// Mean with an ignore index: the number of rows that count must be known before the gradient
// is scaled; the host runs `single_label_count` first (it reads only the targets) unless it
// knows the count. Class indices are i32 (the host narrows validated i64 / u32 indices); an
// index outside [0, C) that is not the ignore index records the first bad row in ws[ASL_WS_ERR]
// (atomicMin) and the row is treated as ignored.
//
// Entry points: single_label_<pass>_<dtype>, pass in {forward, backward, fused}, dtype in
// {f32, f16, bf16}, and single_label_count. Arguments: inputs (logits, targets, upstream),
// outputs (grad, loss), the workspace, the SlParams block, the mode bits and the loss scale.
//
// Precision: f32 element math, row sums of the loss and of S in f64; NaN anywhere in a row
// gives a NaN loss and NaN gradient for that row (as reference.rs).
//
// TODO: packed 16-byte loads along rows (the multi-label kernel has them) and splitting very
// long rows over several blocks (64 x 100000 keeps only 64 SMs busy); both wait for profiling
// on a GPU.
#include "asl_device.cuh"

#define SL_THREADS 512          // block-per-row mode (and the launch bound)
#define SL_MIN_BLOCKS 2         // registers <= 64: two 512-thread blocks per SM at least
#define SL_WARP_THREADS 256     // warp-per-row mode: 8 rows in flight per block
// The host picks the mode per launch (src/cuda/single_label.rs): one warp per row up to 1024
// columns; a block per row above, with the row cached as f32 in dynamic shared memory up to
// 12000 columns (48 000 bytes plus the static shared memory stay under the 48 KiB default).

// Butterfly merge of the online-softmax state across a warp; every lane ends with the same
// state (asl_online_merge is commutative).
__device__ __forceinline__ AslOnline sl_warp_online(AslOnline o) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        AslOnline other;
        other.m = __shfl_xor_sync(0xffffffffu, o.m, off);
        other.s = __shfl_xor_sync(0xffffffffu, o.s, off);
        o = asl_online_merge(o, other);
    }
    return o;
}

struct SlShared {
    AslOnline online[SL_THREADS / 32];
    double loss[SL_THREADS / 32];
    double srest[SL_THREADS / 32];
    AslOnline online_all;
    float srest_all;
    double acc[SL_THREADS / 32];
};

template <class L, int PASS, bool WARP>
__device__ __forceinline__ void sl_rows(const typename L::raw* __restrict__ logits,
                                        const int* __restrict__ targets,
                                        const float* __restrict__ upstream,
                                        typename L::raw* __restrict__ grad,
                                        float* __restrict__ loss_rows, unsigned long long* ws,
                                        const SlParams& p, float gscale, bool cache,
                                        SlShared& sh, float* row_cache, double& acc) {
    constexpr bool WANT_LOSS = PASS != ASL_BACKWARD;
    constexpr bool WANT_GRAD = PASS != ASL_FORWARD;
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned int warp = threadIdx.x >> 5;
    const unsigned int gtid = WARP ? lane : threadIdx.x;
    const unsigned int gsize = WARP ? 32u : blockDim.x;
    const unsigned int warps = blockDim.x >> 5;
    const unsigned long long block = blockIdx.x;
    const unsigned long long first = WARP ? block * warps + warp : block;
    const unsigned long long groups =
        WARP ? static_cast<unsigned long long>(gridDim.x) * warps : gridDim.x;
    const unsigned int cols = p.cols;
    const bool smoothing = p.a_other != 0.0f;

    for (unsigned long long r = first; r < p.rows; r += groups) {
        const unsigned long long base = r * cols;
        const typename L::raw* __restrict__ z = logits + base;
        const int t = targets[r];
        const bool ignored = p.has_ignore != 0u && t == p.ignore_index;
        const bool bad = !ignored && (t < 0 || static_cast<unsigned int>(t) >= cols);

        // 0. Ignored (or invalid) row: loss 0, gradient 0.
        if (ignored || bad) {
            if (bad && gtid == 0) {
                atomicMin(ws + ASL_WS_ERR, r);
            }
            if (WANT_GRAD) {
                for (unsigned int j = gtid; j < cols; j += gsize) {
                    grad[base + j] = L::store(0.0f);
                }
            }
            if (WANT_LOSS && loss_rows != nullptr && gtid == 0) {
                loss_rows[r] = 0.0f;
            }
            continue;
        }
        const unsigned int tu = static_cast<unsigned int>(t);

        // 1. Online softmax over j != t: m = max z_j, s = sum e^(z_j - m); NaN flagged apart.
        AslOnline st = asl_online_empty();
        bool nan = false;
        for (unsigned int j = gtid; j < cols; j += gsize) {
            const float v = L::load(z[j]);
            if (!WARP && cache) {
                row_cache[j] = v;
            }
            if (j != tu) {
                if (asl_isnan(v)) {
                    nan = true;
                } else {
                    asl_online_add(st, v);
                }
            }
        }
        const float z_t = L::load(z[tu]);
        st = sl_warp_online(st);
        if (WARP) {
            nan = __any_sync(0xffffffffu, nan);
        } else {
            if (lane == 0) {
                sh.online[warp] = st;
            }
            nan = __syncthreads_or(nan) != 0;
            if (warp == 0) {
                AslOnline o = lane < warps ? sh.online[lane] : asl_online_empty();
                o = sl_warp_online(o);
                if (lane == 0) {
                    sh.online_all = o;
                }
            }
            __syncthreads();
            st = sh.online_all;
        }
        nan = nan || asl_isnan(z_t);

        // NaN in the row: NaN loss, NaN gradient (reference.rs sl_row).
        if (nan) {
            if (WANT_GRAD) {
                for (unsigned int j = gtid; j < cols; j += gsize) {
                    grad[base + j] = L::store(asl_nan());
                }
            }
            if (WANT_LOSS && gtid == 0) {
                if (loss_rows != nullptr) {
                    loss_rows[r] = asl_nan();
                }
                acc += static_cast<double>(asl_nan());
            }
            if (!WARP) {
                __syncthreads();  // the row cache is rewritten by the next row
            }
            continue;
        }

        // Row statistics and the target terms (every thread computes the same values).
        const AslRowStats rs = asl_row_stats(st, z_t);
        float p_t, q_t, l_t, g_t;
        asl_sl_target(rs.z_shift_t, rs.e_t, rs.sum, rs.sum_rest, rs.ln_sum, p.a_target,
                      p.gamma_pos, p_t, q_t, l_t, g_t);

        // 2. Loss and S_rest = sum_{j != t} g_j (only with smoothing: otherwise both are 0).
        double lsum = 0.0;
        double gsum = 0.0;
        if (smoothing) {
            float lpart = 0.0f;
            float gpart = 0.0f;
            for (unsigned int j = gtid; j < cols; j += gsize) {
                if (j == tu) {
                    continue;
                }
                const float v = (!WARP && cache) ? row_cache[j] : L::load(z[j]);
                float pj, lj, gj;
                asl_sl_other(asl_sl_shift(v, rs.mx), rs.ln_sum, p.a_other, p.gamma_neg, pj, lj,
                             gj);
                lpart += lj;
                gpart += gj;
            }
            lsum = asl_warp_sum(static_cast<double>(lpart));
            gsum = asl_warp_sum(static_cast<double>(gpart));
            if (!WARP) {
                if (lane == 0) {
                    sh.loss[warp] = lsum;
                    sh.srest[warp] = gsum;
                }
                __syncthreads();
                if (warp == 0) {
                    double a = lane < warps ? sh.loss[lane] : 0.0;
                    double b = lane < warps ? sh.srest[lane] : 0.0;
                    a = asl_warp_sum(a);
                    b = asl_warp_sum(b);
                    lsum = a;
                    if (lane == 0) {
                        sh.srest_all = static_cast<float>(b);
                    }
                }
                __syncthreads();
                gsum = static_cast<double>(sh.srest_all);
            }
        }
        const float s_rest = static_cast<float>(gsum);

        // 3. Gradient: g_k - p_k S for j != t, g_t q_t - p_t S_rest for the target.
        if (WANT_GRAD) {
            const float s_all = s_rest + g_t;
            const float u = upstream != nullptr ? upstream[r] : 1.0f;
            const float scale = gscale * u;
            for (unsigned int j = gtid; j < cols; j += gsize) {
                float gr;
                if (j == tu) {
                    gr = g_t * q_t - asl_mul0(s_rest, p_t);
                } else {
                    const float v = (!WARP && cache) ? row_cache[j] : L::load(z[j]);
                    const float zs = asl_sl_shift(v, rs.mx);
                    float pj, lj, gj;
                    if (smoothing) {
                        asl_sl_other(zs, rs.ln_sum, p.a_other, p.gamma_neg, pj, lj, gj);
                    } else {
                        pj = asl_exp(zs - rs.ln_sum);
                        gj = 0.0f;
                    }
                    gr = gj - asl_mul0(s_all, pj);
                }
                grad[base + j] = L::store(gr * scale);
            }
        }

        // Row loss (valid in the group's first thread).
        if (WANT_LOSS && gtid == 0) {
            const double row = static_cast<double>(l_t) + lsum;
            if (loss_rows != nullptr) {
                loss_rows[r] = static_cast<float>(row);
            }
            acc += row;
        }
        if (!WARP) {
            __syncthreads();  // the row cache is rewritten by the next row
        }
    }
}

template <class L, int PASS>
__device__ __forceinline__ void sl_kernel(const typename L::raw* __restrict__ logits,
                                          const int* __restrict__ targets,
                                          const float* __restrict__ upstream,
                                          typename L::raw* __restrict__ grad,
                                          float* __restrict__ loss, unsigned long long* ws,
                                          const SlParams& p, unsigned int mode,
                                          double loss_scale) {
    __shared__ SlShared sh;
    float* row_cache = asl_dynamic_smem<float>();

    // 1. Uniform parameters; for mean with an ignore index, the count from the count pass.
    float gscale = p.grad_scale;
    if (mode & ASL_MODE_COUNT) {
        const unsigned long long counted = ws[ASL_WS_COUNT];
        const double inv = asl_rcp_count(counted);
        gscale = static_cast<float>(static_cast<double>(p.grad_scale) * inv);
        loss_scale = inv;
    }
    const bool loss_array = (mode & ASL_MODE_LOSS_ARRAY) != 0u;
    const float* up = (mode & ASL_MODE_UP_ARRAY) ? upstream : nullptr;
    float* loss_rows = loss_array ? loss : nullptr;
    const bool cache = (mode & ASL_MODE_CACHE_ROW) != 0u;

    // 2. The rows.
    double acc = 0.0;
    if (mode & ASL_MODE_WARP_ROWS) {
        sl_rows<L, PASS, true>(logits, targets, up, grad, loss_rows, ws, p, gscale, false, sh,
                               row_cache, acc);
    } else {
        sl_rows<L, PASS, false>(logits, targets, up, grad, loss_rows, ws, p, gscale, cache, sh,
                                row_cache, acc);
    }

    // 3. Reduced loss: the warps' row sums in warp order, then the blocks' in block order.
    if (PASS == ASL_BACKWARD || loss_array) {
        return;
    }
    if (mode & ASL_MODE_WARP_ROWS) {
        if ((threadIdx.x & 31u) == 0) {
            sh.acc[threadIdx.x >> 5] = acc;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            double b = 0.0;
            for (unsigned int w = 0; w < (blockDim.x >> 5); ++w) {
                b += sh.acc[w];
            }
            acc = b;
        }
    }
    if (asl_publish_partial<double>(ws, acc)) {
        const double total = asl_sum_partials<double>(ws, sh.loss);
        if (threadIdx.x == 0 && loss != nullptr) {
            loss[0] = static_cast<float>(total * loss_scale);
        }
    }
}

#define SL_ENTRY(NAME, L, PASS)                                                             \
    extern "C" __global__ void __launch_bounds__(SL_THREADS, SL_MIN_BLOCKS)                 \
        NAME(const L::raw* __restrict__ logits, const int* __restrict__ targets,            \
             const float* __restrict__ upstream, L::raw* __restrict__ grad,                 \
             float* __restrict__ loss, unsigned long long* ws, SlParams p,                  \
             unsigned int mode, double loss_scale) {                                        \
        sl_kernel<L, PASS>(logits, targets, upstream, grad, loss, ws, p, mode, loss_scale); \
    }

// One logits dtype per NVRTC run when the host defines ASL_UNIT (-DASL_UNIT_<F32|F16|BF16>);
// the count kernel comes with every unit. Without ASL_UNIT everything is compiled (CI check).
#if !defined(ASL_UNIT) || defined(ASL_UNIT_F32)
SL_ENTRY(single_label_forward_f32, AslF32, ASL_FORWARD)
SL_ENTRY(single_label_backward_f32, AslF32, ASL_BACKWARD)
SL_ENTRY(single_label_fused_f32, AslF32, ASL_FUSED)
#endif
#if !defined(ASL_UNIT) || defined(ASL_UNIT_F16)
SL_ENTRY(single_label_forward_f16, AslF16, ASL_FORWARD)
SL_ENTRY(single_label_backward_f16, AslF16, ASL_BACKWARD)
SL_ENTRY(single_label_fused_f16, AslF16, ASL_FUSED)
#endif
#if !defined(ASL_UNIT) || defined(ASL_UNIT_BF16)
SL_ENTRY(single_label_forward_bf16, AslBf16, ASL_FORWARD)
SL_ENTRY(single_label_backward_bf16, AslBf16, ASL_BACKWARD)
SL_ENTRY(single_label_fused_bf16, AslBf16, ASL_FUSED)
#endif

// Count pass for mean with an ignore index: rows whose target is not the ignore index.
extern "C" __global__ void __launch_bounds__(SL_THREADS, SL_MIN_BLOCKS)
    single_label_count(const int* __restrict__ targets, unsigned long long* ws, SlParams p) {
    __shared__ unsigned long long scratch[SL_THREADS / 32];
    const unsigned long long tid =
        static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
    unsigned long long counted = 0ull;
    for (unsigned long long r = tid; r < p.rows; r += stride) {
        counted += (p.has_ignore != 0u && targets[r] == p.ignore_index) ? 0ull : 1ull;
    }
    const unsigned long long block_total = asl_block_sum<unsigned long long>(counted, scratch);
    if (asl_publish_partial<unsigned long long>(ws, block_total)) {
        const unsigned long long total = asl_sum_partials<unsigned long long>(ws, scratch);
        if (threadIdx.x == 0) {
            ws[ASL_WS_COUNT] = total;
        }
    }
}
