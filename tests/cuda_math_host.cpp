// Host driver for tests/cuda_math_host.rs: evaluates kernels/asl_math.cuh (compiled by the
// system C++ compiler, so the CUDA qualifiers compile away) on inputs the Rust test writes,
// and writes the results back, all as raw little-endian f32.
//
//   driver ml <in> <out>: records of 10 f32
//       [clip_on, gamma_pos, gamma_neg, clip, ln_eps, detached, no_focus, x, y, pw]
//       -> [loss, grad] per record (asl_ml_element)
//   driver sl <in> <out>: rows of [C, t, gamma_pos, gamma_neg, a_t, a_o, lanes, 0, z_0..z_C-1]
//       -> [loss, grad_0..grad_C-1] per row, computed the way single_label.cu does it with
//       `lanes` threads per row (strided columns, xor-butterfly merges, f64 sums).
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "asl_math.cuh"

static std::vector<float> read_all(const char* path) {
    std::vector<float> v;
    FILE* f = std::fopen(path, "rb");
    if (!f) {
        std::perror(path);
        std::exit(2);
    }
    float buf[4096];
    size_t n;
    while ((n = std::fread(buf, sizeof(float), 4096, f)) > 0) {
        v.insert(v.end(), buf, buf + n);
    }
    std::fclose(f);
    return v;
}

static void write_all(const char* path, const std::vector<float>& v) {
    FILE* f = std::fopen(path, "wb");
    if (!f || std::fwrite(v.data(), sizeof(float), v.size(), f) != v.size()) {
        std::perror(path);
        std::exit(2);
    }
    std::fclose(f);
}

static int run_ml(const char* in, const char* out) {
    const std::vector<float> v = read_all(in);
    std::vector<float> r;
    r.reserve(v.size() / 5);
    for (size_t i = 0; i + 10 <= v.size(); i += 10) {
        AslMlConsts k;
        k.gamma_pos = v[i + 1];
        k.gamma_neg = v[i + 2];
        k.clip = v[i + 3];
        k.ln_eps = v[i + 4];
        k.detached = v[i + 5] != 0.0f;
        k.no_focus = v[i + 6] != 0.0f;
        float l, g;
        if (v[i] != 0.0f) {
            asl_ml_element<true>(v[i + 7], v[i + 8], v[i + 9], k, l, g);
        } else {
            asl_ml_element<false>(v[i + 7], v[i + 8], v[i + 9], k, l, g);
        }
        r.push_back(l);
        r.push_back(g);
    }
    write_all(out, r);
    return 0;
}

// The xor butterfly the kernels run with __shfl_xor_sync, on `lanes` simulated lanes.
template <typename T, typename F>
static T butterfly(std::vector<T> v, F merge) {
    for (size_t off = v.size() / 2; off > 0; off >>= 1) {
        std::vector<T> next(v.size());
        for (size_t i = 0; i < v.size(); ++i) {
            next[i] = merge(v[i], v[i ^ off]);
        }
        v = next;
    }
    return v[0];
}

static int run_sl(const char* in, const char* out) {
    const std::vector<float> v = read_all(in);
    std::vector<float> r;
    size_t i = 0;
    while (i + 8 <= v.size()) {
        const unsigned cols = static_cast<unsigned>(v[i]);
        const unsigned t = static_cast<unsigned>(v[i + 1]);
        const float gp = v[i + 2], gn = v[i + 3], a_t = v[i + 4], a_o = v[i + 5];
        const unsigned lanes = static_cast<unsigned>(v[i + 6]);
        const float* z = &v[i + 8];
        i += 8 + cols;

        // 1. Online softmax over j != t per lane, merged by the butterfly; NaN apart.
        std::vector<AslOnline> st(lanes, asl_online_empty());
        bool nan = false;
        for (unsigned lane = 0; lane < lanes; ++lane) {
            for (unsigned j = lane; j < cols; j += lanes) {
                if (j == t) continue;
                if (asl_isnan(z[j])) {
                    nan = true;
                } else {
                    asl_online_add(st[lane], z[j]);
                }
            }
        }
        const AslOnline all = butterfly(st, [](AslOnline a, AslOnline b) {
            return asl_online_merge(a, b);
        });
        const float z_t = z[t];
        nan = nan || asl_isnan(z_t);
        if (nan) {
            r.push_back(asl_nan());
            for (unsigned j = 0; j < cols; ++j) r.push_back(asl_nan());
            continue;
        }
        const AslRowStats rs = asl_row_stats(all, z_t);
        float p_t, q_t, l_t, g_t;
        asl_sl_target(rs.z_shift_t, rs.e_t, rs.sum, rs.sum_rest, rs.ln_sum, a_t, gp, p_t, q_t,
                      l_t, g_t);

        // 2. Loss and S_rest: per-lane f32 partials, f64 butterfly.
        double lsum = 0.0, gsum = 0.0;
        if (a_o != 0.0f) {
            std::vector<double> lp(lanes, 0.0), gpv(lanes, 0.0);
            for (unsigned lane = 0; lane < lanes; ++lane) {
                float lpart = 0.0f, gpart = 0.0f;
                for (unsigned j = lane; j < cols; j += lanes) {
                    if (j == t) continue;
                    float pj, lj, gj;
                    asl_sl_other(asl_sl_shift(z[j], rs.mx), rs.ln_sum, a_o, gn, pj, lj, gj);
                    lpart += lj;
                    gpart += gj;
                }
                lp[lane] = lpart;
                gpv[lane] = gpart;
            }
            auto add = [](double a, double b) { return a + b; };
            lsum = butterfly(lp, add);
            gsum = butterfly(gpv, add);
        }
        const float s_rest = static_cast<float>(gsum);

        // 3. Gradient.
        r.push_back(static_cast<float>(static_cast<double>(l_t) + lsum));
        const float s_all = s_rest + g_t;
        for (unsigned j = 0; j < cols; ++j) {
            float gr;
            if (j == t) {
                gr = g_t * q_t - asl_mul0(s_rest, p_t);
            } else {
                const float zs = asl_sl_shift(z[j], rs.mx);
                float pj, lj, gj;
                if (a_o != 0.0f) {
                    asl_sl_other(zs, rs.ln_sum, a_o, gn, pj, lj, gj);
                } else {
                    pj = asl_exp(zs - rs.ln_sum);
                    gj = 0.0f;
                }
                gr = gj - asl_mul0(s_all, pj);
            }
            r.push_back(gr);
        }
    }
    write_all(out, r);
    return 0;
}

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s ml|sl <in> <out>\n", argv[0]);
        return 2;
    }
    const char mode = argv[1][0];
    return mode == 'm' ? run_ml(argv[2], argv[3]) : run_sl(argv[2], argv[3]);
}
