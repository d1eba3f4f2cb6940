// cuda_emu.hpp: just enough of CUDA to run kernels/multi_label.cu and kernels/single_label.cu
// on the CPU (tests/cuda_emu.rs). Not a general emulator.
//
// Model: the blocks of a launch run one after another; the threads of a block are real OS
// threads, so __syncthreads, the warp shuffles and votes, and the atomics have their CUDA
// meaning (a block barrier, a 32-lane exchange through a warp barrier, std::atomic_ref).
// Because one block runs at a time, `__shared__` can be a function-local `static`. The inline
// PTX of the kernels (f16 conversions, the f64 reciprocal estimate) and the dynamic shared
// memory are replaced through the ASL_EMULATION hooks in asl_device.cuh.
//
// What this cannot show: timing, occupancy, memory coalescing, races between blocks running
// concurrently (the last-block protocol is still exercised: every block publishes its partial
// and takes a ticket), or differences between the GPU's and the host's libm.
#ifndef ASL_CUDA_EMU_HPP
#define ASL_CUDA_EMU_HPP

#define ASL_EMULATION 1

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static
#define __align__(n) alignas(n)

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

// State of the block that is running.
struct AslEmuBlock {
    std::unique_ptr<std::barrier<>> block_barrier;
    std::vector<std::unique_ptr<std::barrier<>>> warp_barrier;
    std::vector<unsigned long long> warp_slots;  // 32 per warp
    std::vector<int> vote;                       // one per thread
    std::vector<unsigned char> dyn_smem;
};
inline AslEmuBlock asl_emu_block;

inline unsigned char* asl_emu_dynamic_smem() { return asl_emu_block.dyn_smem.data(); }

inline void __syncthreads() { asl_emu_block.block_barrier->arrive_and_wait(); }

inline int __syncthreads_or(int p) {
    asl_emu_block.vote[threadIdx.x] = p != 0;
    __syncthreads();
    int any = 0;
    for (unsigned int i = 0; i < blockDim.x; ++i) any |= asl_emu_block.vote[i];
    __syncthreads();
    return any;
}

inline void asl_emu_warp_sync() {
    asl_emu_block.warp_barrier[threadIdx.x >> 5]->arrive_and_wait();
}

template <typename T>
inline T __shfl_xor_sync(unsigned int, T v, int lane_mask) {
    static_assert(sizeof(T) <= 8, "64-bit shuffles at most");
    const unsigned int lane = threadIdx.x & 31u;
    unsigned long long* slots = &asl_emu_block.warp_slots[(threadIdx.x >> 5) * 32];
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    slots[lane] = bits;
    asl_emu_warp_sync();
    bits = slots[lane ^ static_cast<unsigned int>(lane_mask)];
    asl_emu_warp_sync();
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}

inline int __any_sync(unsigned int, int p) {
    unsigned long long* slots = &asl_emu_block.warp_slots[(threadIdx.x >> 5) * 32];
    slots[threadIdx.x & 31u] = p != 0;
    asl_emu_warp_sync();
    int any = 0;
    for (int i = 0; i < 32; ++i) any |= static_cast<int>(slots[i]);
    asl_emu_warp_sync();
    return any;
}

inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
    std::atomic_ref<unsigned long long> a(*p);
    unsigned long long old = a.load();
    while (v < old && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}

inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    return std::atomic_ref<unsigned int>(*p).fetch_add(v);
}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

inline float __uint_as_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float asl_emu_f16_to_f32(unsigned short h) {
    _Float16 v;
    std::memcpy(&v, &h, 2);
    return static_cast<float>(v);
}

inline unsigned short asl_emu_f32_to_f16(float f) {
    const _Float16 v = static_cast<_Float16>(f);  // round to nearest even, as cvt.rn
    unsigned short h;
    std::memcpy(&h, &v, 2);
    return h;
}

// Runs `kernel` on `grid` blocks of `block` threads, one block at a time.
inline void asl_emu_launch(unsigned int grid, unsigned int block, size_t smem,
                           const std::function<void()>& kernel) {
    for (unsigned int b = 0; b < grid; ++b) {
        AslEmuBlock& s = asl_emu_block;
        s.block_barrier = std::make_unique<std::barrier<>>(block);
        s.warp_barrier.clear();
        for (unsigned int w = 0; w < (block + 31) / 32; ++w) {
            s.warp_barrier.push_back(std::make_unique<std::barrier<>>(32));
        }
        s.warp_slots.assign(((block + 31) / 32) * 32, 0);
        s.vote.assign(block, 0);
        // Poison the dynamic shared memory: a read before a write shows up as NaN.
        s.dyn_smem.assign(smem + 16, 0xff);
        std::vector<std::thread> threads;
        threads.reserve(block);
        for (unsigned int t = 0; t < block; ++t) {
            threads.emplace_back([=, &kernel] {
                threadIdx = uint3{t, 0, 0};
                blockIdx = uint3{b, 0, 0};
                blockDim = dim3{block, 1, 1};
                gridDim = dim3{grid, 1, 1};
                kernel();
            });
        }
        for (auto& th : threads) th.join();
    }
}

#endif  // ASL_CUDA_EMU_HPP
