// asl_device.cuh: device-only helpers shared by multi_label.cu and single_label.cu: element
// type adapters (f32 / f16 / bf16 without cuda_fp16.h, so that NVRTC needs no include path),
// packed vector loads, warp and block reductions in a fixed order, and the workspace layout
// with the deterministic last-block finish.
//
// Determinism: every reduction here is an xor butterfly within a warp (commutative operands,
// so every lane ends with the same bits) followed by a fixed-order pass over the warps; block
// partials are combined by the last block to finish, in block-index order. No float atomics.
//
// NOTE: the workspace layout (ASL_WS_*) is mirrored by `src/cuda/context.rs`; change both.
// With ASL_EMULATION defined (tests/cuda_emu.hpp, the CPU emulation test) the three pieces of
// inline PTX and the dynamic shared memory come from the emulator instead.
#ifndef ASL_DEVICE_CUH
#define ASL_DEVICE_CUH

#include "asl_math.cuh"

// ---------------------------------------------------------------------------------------------
// Workspace: an array of 64-bit words owned by the host (`Workspace` in src/cuda/context.rs).
// ---------------------------------------------------------------------------------------------
#define ASL_WS_ERR 0       // first invalid flat index / row (atomicMin); all ones when none
#define ASL_WS_COUNT 1     // known elements (multi-label) or counted rows, from a count pass
#define ASL_WS_DONE 2      // blocks finished (low 32 bits); the last block resets it to 0
#define ASL_WS_LOSS 3      // the reduced loss (low 32 bits, f32) when the host asks for it
#define ASL_WS_PARTIALS 8  // one 64-bit partial per block from here on

// Kernel mode bits (the `mode` argument; src/cuda/context.rs `mode`).
#define ASL_MODE_VEC 1u         // every pointer is 16-byte aligned: packed loads and stores
#define ASL_MODE_COUNT 2u       // divide gradient and loss by ws[ASL_WS_COUNT] (mean)
#define ASL_MODE_LOSS_ARRAY 4u  // write the unreduced loss (reduction none); no finish
#define ASL_MODE_UP_ARRAY 8u    // the upstream gradient is an array (reduction none)
#define ASL_MODE_WARP_ROWS 16u  // single-label: one warp per row
#define ASL_MODE_CACHE_ROW 32u  // single-label: the row is cached in dynamic shared memory

// Passes (template argument).
#define ASL_FORWARD 0
#define ASL_BACKWARD 1
#define ASL_FUSED 2

// ---------------------------------------------------------------------------------------------
// Element types. `raw` is the storage type; load widens to f32, store rounds to nearest even.
// ---------------------------------------------------------------------------------------------
struct AslF32 {
    typedef float raw;
    static __device__ __forceinline__ float load(raw v) { return v; }
    static __device__ __forceinline__ raw store(float f) { return f; }
};

struct AslF16 {
    typedef unsigned short raw;
    static __device__ __forceinline__ float load(raw v) {
#if defined(ASL_EMULATION)
        return asl_emu_f16_to_f32(v);
#else
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v));
        return f;
#endif
    }
    static __device__ __forceinline__ raw store(float f) {
#if defined(ASL_EMULATION)
        return asl_emu_f32_to_f16(f);
#else
        raw h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
        return h;
#endif
    }
};

struct AslBf16 {
    typedef unsigned short raw;
    static __device__ __forceinline__ float load(raw v) {
        return __uint_as_float(static_cast<unsigned int>(v) << 16);
    }
    static __device__ __forceinline__ raw store(float f) {
        unsigned int u = __float_as_uint(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            return static_cast<raw>((u >> 16) | 0x0040u);  // NaN stays a (quiet) NaN
        }
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
        return static_cast<raw>(u >> 16);
    }
};

// N consecutive elements moved as one access (16 bytes at most per instruction).
template <typename T, int N>
struct alignas(sizeof(T) * N > 16 ? 16 : sizeof(T) * N) AslPack {
    T v[N];
};

template <typename T, int N>
__device__ __forceinline__ AslPack<T, N> asl_load_pack(const T* __restrict__ p,
                                                      unsigned long long i) {
    return *reinterpret_cast<const AslPack<T, N>*>(p + i);
}

template <typename T, int N>
__device__ __forceinline__ void asl_store_pack(T* __restrict__ p, unsigned long long i,
                                               const AslPack<T, N>& v) {
    *reinterpret_cast<AslPack<T, N>*>(p + i) = v;
}

// 1 / x in f64 for a count x >= 1 without the IEEE division's slow-path subroutine: the
// hardware estimate refined by two Newton steps (error about 1 ulp).
__device__ __forceinline__ double asl_rcp_count(unsigned long long count) {
    const double x = static_cast<double>(count > 0ull ? count : 1ull);
#if defined(ASL_EMULATION)
    double r = static_cast<double>(1.0f / static_cast<float>(x));  // a rough estimate, too
#else
    double r;
    asm("rcp.approx.ftz.f64 %0, %1;" : "=d"(r) : "d"(x));
#endif
    double e = fma(-x, r, 1.0);
    r = fma(r, e, r);
    e = fma(-x, r, 1.0);
    return fma(r, e, r);
}

// The block's dynamic shared memory (sized by the launch).
template <typename T>
__device__ __forceinline__ T* asl_dynamic_smem() {
#if defined(ASL_EMULATION)
    return reinterpret_cast<T*>(asl_emu_dynamic_smem());
#else
    extern __shared__ __align__(16) unsigned char asl_dyn_smem[];
    return reinterpret_cast<T*>(asl_dyn_smem);
#endif
}

// ---------------------------------------------------------------------------------------------
// Reductions.
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ double asl_warp_sum(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    return v;
}

__device__ __forceinline__ unsigned long long asl_warp_sum(unsigned long long v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    return v;
}

// Sum over the block (T is double or unsigned long long); the result is valid in thread 0.
// `scratch` holds one value per warp. Contains two __syncthreads(): call it from every thread.
template <typename T>
__device__ __forceinline__ T asl_block_sum(T v, T* scratch) {
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned int warp = threadIdx.x >> 5;
    const unsigned int warps = (blockDim.x + 31u) >> 5;
    v = asl_warp_sum(v);
    if (lane == 0) {
        scratch[warp] = v;
    }
    __syncthreads();
    T r = 0;
    if (warp == 0) {
        r = lane < warps ? scratch[lane] : static_cast<T>(0);
        r = asl_warp_sum(r);
    }
    __syncthreads();
    return r;
}

// ---------------------------------------------------------------------------------------------
// Last-block finish. Thread 0 of every block publishes its partial (64-bit, a double or a
// count) and takes a ticket; the block with the last ticket sees every partial and reduces them
// in block-index order, so the result does not depend on which block finished last.
// ---------------------------------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ bool asl_publish_partial(unsigned long long* ws, T partial) {
    __shared__ bool asl_is_last;
    if (threadIdx.x == 0) {
        volatile T* parts = reinterpret_cast<volatile T*>(ws + ASL_WS_PARTIALS);
        parts[blockIdx.x] = partial;
        __threadfence();
        const unsigned int ticket =
            atomicAdd(reinterpret_cast<unsigned int*>(ws + ASL_WS_DONE), 1u);
        asl_is_last = ticket == gridDim.x - 1u;
    }
    __syncthreads();
    if (asl_is_last) {
        __threadfence();
    }
    return asl_is_last;
}

// In the last block: the sum of all partials in a fixed order (valid in thread 0), after which
// thread 0 resets the ticket counter for the next launch on this workspace.
template <typename T>
__device__ __forceinline__ T asl_sum_partials(unsigned long long* ws, T* scratch) {
    const volatile T* parts = reinterpret_cast<const volatile T*>(ws + ASL_WS_PARTIALS);
    T acc = 0;
    for (unsigned int b = threadIdx.x; b < gridDim.x; b += blockDim.x) {
        acc += parts[b];
    }
    const T total = asl_block_sum<T>(acc, scratch);
    if (threadIdx.x == 0) {
        *reinterpret_cast<volatile unsigned int*>(ws + ASL_WS_DONE) = 0u;
    }
    return total;
}

#endif  // ASL_DEVICE_CUH
