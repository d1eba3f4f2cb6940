// Driver for tests/cuda_emu.rs: runs one launch of the real kernels (kernels/*.cu) under the
// CPU emulation of tests/cuda_emu.hpp.
//
//   cuda_emu <job> <out>
//
// Job (little-endian): kernel name[64], count kernel name[64] (empty: none), u32 grid,
// u32 block, u32 smem, u32 mode, f64 loss_scale, u64 n (elements; rows for single-label),
// params[48], u32 loss_is_array, then seven buffers, each u64 byte length + bytes: logits,
// targets, class_weight, pos_weight, upstream, grad (initial contents), loss (initial).
// Output: the grad buffer, the loss buffer, then the 8 header words of the workspace.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cuda_emu.hpp"
// The kernels, compiled for the CPU.
#include "multi_label.cu"
#include "single_label.cu"

namespace {

struct Reader {
    std::vector<unsigned char> data;
    size_t pos = 0;
    void take(void* dst, size_t n) {
        if (pos + n > data.size()) {
            std::fprintf(stderr, "job file too short\n");
            std::exit(2);
        }
        std::memcpy(dst, data.data() + pos, n);
        pos += n;
    }
    template <typename T>
    T get() {
        T v;
        take(&v, sizeof v);
        return v;
    }
    std::string name() {
        char buf[65] = {0};
        take(buf, 64);
        return std::string(buf);
    }
    // A 16-byte aligned copy of the next buffer (empty when its length is 0).
    std::vector<unsigned char> buffer(unsigned char*& aligned) {
        const auto len = get<uint64_t>();
        std::vector<unsigned char> v(len + 16);
        aligned = v.data() + ((16 - reinterpret_cast<uintptr_t>(v.data()) % 16) % 16);
        take(aligned, len);
        if (len == 0) aligned = nullptr;
        return v;
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <job> <out>\n", argv[0]);
        return 2;
    }
    Reader r;
    {
        FILE* f = std::fopen(argv[1], "rb");
        if (!f) return 2;
        unsigned char buf[65536];
        size_t k;
        while ((k = std::fread(buf, 1, sizeof buf, f)) > 0) {
            r.data.insert(r.data.end(), buf, buf + k);
        }
        std::fclose(f);
    }
    const std::string name = r.name();
    const std::string count = r.name();
    const auto grid = r.get<uint32_t>();
    const auto block = r.get<uint32_t>();
    const auto smem = r.get<uint32_t>();
    const auto mode = r.get<uint32_t>();
    const auto loss_scale = r.get<double>();
    const auto n = r.get<uint64_t>();
    unsigned char params[48];
    r.take(params, 48);
    const auto loss_is_array = r.get<uint32_t>();
    unsigned char *logits, *targets, *cw, *pw, *up, *grad, *loss;
    auto b0 = r.buffer(logits);
    auto b1 = r.buffer(targets);
    auto b2 = r.buffer(cw);
    auto b3 = r.buffer(pw);
    auto b4 = r.buffer(up);
    auto b5 = r.buffer(grad);
    auto b6 = r.buffer(loss);
    const size_t grad_len = b5.size() - 16, loss_len = b6.size() - 16;

    // The workspace, initialised as Workspace::new does.
    std::vector<unsigned long long> ws(8 + 4096, 0ull);
    ws[ASL_WS_ERR] = ~0ull;
    float* loss_ptr = loss_is_array ? reinterpret_cast<float*>(loss)
                                    : reinterpret_cast<float*>(&ws[ASL_WS_LOSS]);
    MlParams mp;
    SlParams sp;
    std::memcpy(&mp, params, 48);
    std::memcpy(&sp, params, 48);
    const auto* fcw = reinterpret_cast<const float*>(cw);
    const auto* fpw = reinterpret_cast<const float*>(pw);
    const auto* fup = reinterpret_cast<const float*>(up);
    unsigned long long* w = ws.data();

    // The count pass first (grid over elements / rows, like the host).
    if (!count.empty()) {
        if (count == "single_label_count") {
            const unsigned cg = static_cast<unsigned>(std::min<uint64_t>(3, (n + 511) / 512));
            asl_emu_launch(cg ? cg : 1, 512, 0, [&] {
                single_label_count(reinterpret_cast<const int*>(targets), w, sp);
            });
        } else {
            const unsigned cg = static_cast<unsigned>(std::min<uint64_t>(3, (n + 255) / 256));
            asl_emu_launch(cg ? cg : 1, 256, 0, [&] {
                if (count == "multi_label_count_f32") {
                    multi_label_count_f32(reinterpret_cast<const float*>(targets), w, n);
                } else {
                    multi_label_count_u8(reinterpret_cast<const unsigned char*>(targets), w, n);
                }
            });
        }
    }

    bool found = false;
#define ML_CASE(NAME, LRAW, TRAW)                                                             \
    if (name == #NAME) {                                                                      \
        found = true;                                                                         \
        asl_emu_launch(grid, block, smem, [&] {                                               \
            NAME(reinterpret_cast<const LRAW*>(logits), reinterpret_cast<const TRAW*>(targets), \
                 fcw, fpw, fup, reinterpret_cast<LRAW*>(grad), loss_ptr, w, n, mp, mode,      \
                 loss_scale);                                                                 \
        });                                                                                   \
    }
#define ML_DTYPES(PASS)                                                                    \
    ML_CASE(multi_label_##PASS##_f32, float, float)                                        \
    ML_CASE(multi_label_##PASS##_f16, unsigned short, float)                               \
    ML_CASE(multi_label_##PASS##_bf16, unsigned short, float)                              \
    ML_CASE(multi_label_##PASS##_f32_u8, float, unsigned char)                             \
    ML_CASE(multi_label_##PASS##_f16_u8, unsigned short, unsigned char)                    \
    ML_CASE(multi_label_##PASS##_bf16_u8, unsigned short, unsigned char)
    ML_DTYPES(forward)
    ML_DTYPES(backward)
    ML_DTYPES(fused)
#define SL_CASE(NAME, LRAW)                                                                 \
    if (name == #NAME) {                                                                    \
        found = true;                                                                       \
        asl_emu_launch(grid, block, smem, [&] {                                             \
            NAME(reinterpret_cast<const LRAW*>(logits), reinterpret_cast<const int*>(targets), \
                 fup, reinterpret_cast<LRAW*>(grad), loss_ptr, w, sp, mode, loss_scale);    \
        });                                                                                 \
    }
#define SL_DTYPES(PASS)                                                                    \
    SL_CASE(single_label_##PASS##_f32, float)                                              \
    SL_CASE(single_label_##PASS##_f16, unsigned short)                                     \
    SL_CASE(single_label_##PASS##_bf16, unsigned short)
    SL_DTYPES(forward)
    SL_DTYPES(backward)
    SL_DTYPES(fused)
    if (!found) {
        std::fprintf(stderr, "unknown kernel %s\n", name.c_str());
        return 2;
    }

    FILE* f = std::fopen(argv[2], "wb");
    if (!f) return 2;
    if (grad_len) std::fwrite(grad, 1, grad_len, f);
    if (loss_len) std::fwrite(loss, 1, loss_len, f);
    std::fwrite(ws.data(), 8, 8, f);
    std::fclose(f);
    return 0;
}
