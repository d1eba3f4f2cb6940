// asl_math.cuh: the per-element Asymmetric Loss math shared by the CUDA kernels and by a host
// test that compiles this header with the system C++ compiler.
//
// What it computes (timm 1.0.31 semantics, see src/config.rs and src/reference.rs):
//   multi-label, per element, p = sigmoid(x), q = 1 - p, m = clip:
//     q~ = min(q + m, 1),  CE = pw y ln max(p, eps) + (1 - y) ln max(q~, eps)
//     w  = (1 - pt)^g,  1 - pt = y q + (1 - y)(1 - q~),  g = gp y + gn (1 - y)
//     l  = -CE w,  dl/dx = -(CE' w + CE w')  (or -CE' w when the focusing weight is detached)
//   single-label, per row (softmax), target t, smoothing masses a_t and a_o:
//     l = -a_t (1 - p_t)^gp ln p_t - a_o sum_{j != t} p_j^gn ln p_j
//     dl/dz_k = g_k - p_k S,  S = sum_j g_j,  g_j = dl/d(ln p_j)
//
// Decomposition: every function here mirrors src/math.rs step for step (same numbered steps,
// same selects, same limits), so that the f32 CPU path, the WGSL kernels and these kernels
// agree to rounding. The row-level helpers (online softmax update and merge) are here too so
// that the host test exercises the exact merge order the kernels use.
//
// Precision: f32 throughout; transcendental functions are the accurate CUDA library ones
// (expf, logf, log1pf; no fast-math) on the device and the C library's on the host. The
// log-sigmoid forms keep full relative precision near saturation (semantics doc 3.3.6).
//
// Host build: without __CUDACC__ the qualifiers compile away and <cmath> supplies the math.
// NOTE: the parameter blocks below mirror `MlParams` / `SlParams` in src/config.rs (and the
// WGSL `Params` structs); change all of them together.
#ifndef ASL_MATH_CUH
#define ASL_MATH_CUH

#if defined(__CUDACC__)
#define ASL_HD __host__ __device__ __forceinline__
#else
#include <cmath>
#include <cstring>
#define ASL_HD inline
#endif

// ---------------------------------------------------------------------------------------------
// Parameter blocks (byte-for-byte the Rust #[repr(C)] structs).
// ---------------------------------------------------------------------------------------------

// Bit flags of MlParams::flags (src/config.rs `ml_flags`).
#define ASL_ML_DETACHED 1u
#define ASL_ML_CLASS_WEIGHT 2u
#define ASL_ML_POS_WEIGHT_VEC 4u
#define ASL_ML_NO_FOCUS 8u
#define ASL_ML_CLIP 16u

struct MlParams {
    unsigned int rows;
    unsigned int cols;
    float gamma_pos;
    float gamma_neg;
    float clip;
    float ln_eps;
    float smoothing;
    float pos_weight;
    float grad_scale;
    unsigned int flags;
    unsigned int pad0;
    unsigned int pad1;
};

struct SlParams {
    unsigned int rows;
    unsigned int cols;
    float gamma_pos;
    float gamma_neg;
    float a_target;
    float a_other;
    float grad_scale;
    unsigned int has_ignore;
    int ignore_index;
    unsigned int pad0;
    unsigned int pad1;
    unsigned int pad2;
};

static_assert(sizeof(MlParams) == 48, "MlParams must match src/config.rs");
static_assert(sizeof(SlParams) == 48, "SlParams must match src/config.rs");

// ---------------------------------------------------------------------------------------------
// Primitives.
// ---------------------------------------------------------------------------------------------

ASL_HD float asl_exp(float x) {
#if defined(__CUDACC__)
    return expf(x);
#else
    return std::exp(x);
#endif
}

ASL_HD float asl_ln(float x) {
#if defined(__CUDACC__)
    return logf(x);
#else
    return std::log(x);
#endif
}

ASL_HD float asl_ln1p(float v) {
#if defined(__CUDACC__)
    return log1pf(v);
#else
    return std::log1p(v);
#endif
}

// a / b for the per-row single-label terms. On the device this is PTX div.full.f32 (full
// range, at most 2 ulp) rather than the IEEE division, whose slow path is a subroutine call
// that makes ptxas save registers to the stack; the multi-label element keeps IEEE '/'.
ASL_HD float asl_div(float a, float b) {
#if defined(__CUDACC__)
    float r;
    asm("div.full.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
#else
    return a / b;
#endif
}

ASL_HD float asl_abs(float x) {
#if defined(__CUDACC__)
    return fabsf(x);
#else
    return std::fabs(x);
#endif
}

ASL_HD float asl_bits(unsigned int b) {
#if defined(__CUDACC__)
    return __uint_as_float(b);
#else
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
#endif
}

ASL_HD float asl_inf() { return asl_bits(0x7f800000u); }
ASL_HD float asl_nan() { return asl_bits(0x7fc00000u); }
ASL_HD bool asl_isnan(float x) { return x != x; }
ASL_HD bool asl_isinf(float x) { return x == asl_inf() || x == -asl_inf(); }
// max(a, b) for non-NaN operands (Rust's f32::max on the values the math passes it).
ASL_HD float asl_max(float a, float b) { return a > b ? a : (b == b ? b : a); }

// a * b, except that an exact zero b gives 0 even for an infinite a (math.rs `mul0`).
ASL_HD float asl_mul0(float a, float b) {
    const float r = a * b;
    return b == 0.0f ? 0.0f : r;
}

// ---------------------------------------------------------------------------------------------
// Multi-label element (math.rs `ml_element`).
// ---------------------------------------------------------------------------------------------

struct AslMlConsts {
    float gamma_pos;
    float gamma_neg;
    float clip;
    float ln_eps;
    bool no_focus;
    bool detached;
};

ASL_HD AslMlConsts asl_ml_consts(const MlParams& p) {
    AslMlConsts k;
    k.gamma_pos = p.gamma_pos;
    k.gamma_neg = p.gamma_neg;
    k.clip = p.clip;
    k.ln_eps = p.ln_eps;
    k.no_focus = (p.flags & ASL_ML_NO_FOCUS) != 0u;
    k.detached = (p.flags & ASL_ML_DETACHED) != 0u;
    return k;
}

// Loss and dl/dx of one known element: logit x, smoothed target y in [0, 1], positive weight
// pw. CLIP is clip > 0. Class weight and reduction scale are applied by the caller.
template <bool CLIP>
ASL_HD void asl_ml_element(float x, float y, float pw, const AslMlConsts& k, float& loss_out,
                           float& grad_out) {
    // 1. One exponential for everything sigmoid: e = e^-|x|.
    //    p = sigmoid(x), q = 1 - p = sigmoid(-x), s = p q,
    //    ln p = -(max(-x, 0) + ln1p(e)),  ln q = -(max(x, 0) + ln1p(e)).
    const float e = asl_exp(-asl_abs(x));
    const float l1p = asl_ln1p(e);
    const float inv = 1.0f / (1.0f + e);
    const bool pos = x >= 0.0f;
    const float p = pos ? inv : e * inv;
    const float q = pos ? e * inv : inv;
    const float s = p * q;
    const float lp = -(asl_max(-x, 0.0f) + l1p);

    // 2. Positive log term A = max(ln p, ln eps); dA/dx = q where ln p > ln eps.
    const bool pos_ok = lp > k.ln_eps;
    const float a = pos_ok ? lp : k.ln_eps;
    const float da = pos_ok ? q : 0.0f;

    // 3. Negative log term B = max(ln q~, ln eps), q~ = min(q + m, 1); pm = 1 - q~.
    float b, db, pm, dpm;
    if (CLIP) {
        const bool act = p > k.clip;  // q + m < 1
        const float qt = q + k.clip;
        const float lqt = asl_ln(qt);
        const bool ok = lqt > k.ln_eps;
        b = act ? (ok ? lqt : k.ln_eps) : 0.0f;
        db = (act && ok) ? -s / qt : 0.0f;
        pm = act ? p - k.clip : 0.0f;
        dpm = act ? s : 0.0f;
    } else {
        const float lq = -(asl_max(x, 0.0f) + l1p);
        const bool ok = lq > k.ln_eps;
        b = ok ? lq : k.ln_eps;
        db = ok ? -p : 0.0f;
        pm = p;
        dpm = s;
    }

    // 4. CE = pw y A + (1 - y) B and its derivative.
    const float ce = asl_mul0(a, pw * y) + asl_mul0(b, 1.0f - y);
    const float dce = pw * y * da + (1.0f - y) * db;

    // 5. Focusing w = base^g, base = 1 - pt = y q + (1 - y) pm, g = gp y + gn (1 - y);
    //    dw = g w dbase / base, and 0 where g = 0 or base = 0 (the limit of CE dw there).
    const float base = y * q + (1.0f - y) * pm;
    const float dbase = -y * s + (1.0f - y) * dpm;
    const float g = k.gamma_pos * y + k.gamma_neg * (1.0f - y);
    const float wpow = asl_exp(g * asl_ln(base));
    const bool zero_g = g == 0.0f || k.no_focus;
    const float w = zero_g ? 1.0f : (base == 0.0f ? 0.0f : wpow);
    const float dw = (zero_g || base == 0.0f) ? 0.0f : g * w * (dbase / base);

    // 6. l = -CE w;  dl/dx = -(CE' w + CE w'), or -CE' w when detached.
    const float loss = -asl_mul0(ce, w);
    const float grad_focus = k.detached ? 0.0f : asl_mul0(ce, dw);
    const float grad = -(dce * w + grad_focus);
    const bool bad = asl_isnan(x);
    loss_out = bad ? asl_nan() : loss;
    grad_out = bad ? asl_nan() : grad;
}

// ---------------------------------------------------------------------------------------------
// Single-label row pieces (math.rs `sl_shift`, `sl_target`, `sl_other`) and the online softmax.
// ---------------------------------------------------------------------------------------------

// z - max, with an infinite maximum taken as its limit (columns equal to it get 0, every other
// column -inf).
ASL_HD float asl_sl_shift(float z, float mx) {
    if (asl_isinf(mx)) {
        return z == mx ? 0.0f : -asl_inf();
    }
    return z - mx;
}

// The target-class terms: e_t = e^(z_t - max), sum = sum_j e^(z_j - max), sum_rest the same
// sum without the target (accumulated separately so that 1 - p_t does not cancel),
// ln_sum = ln(sum). Outputs p_t, q_t = 1 - p_t, the target loss and g_t = dl/d(ln p_t):
//   ln p_t = -ln1p(sum_rest / e_t),  q_t = sum_rest / sum,  w = q_t^gp
//   l_t = -a_t w ln p_t,   g_t = a_t [gp w (p_t ln p_t / q_t) - w]
ASL_HD void asl_sl_target(float z_shift, float e_t, float sum, float sum_rest, float ln_sum,
                          float a_t, float gamma_pos, float& p_out, float& q_out,
                          float& loss_out, float& g_out) {
    // NOTE: math.rs takes the ln1p form whenever e_t > 0; for a subnormal e_t (the target
    // about 88 to 104 below the row maximum) sum_rest / e_t overflows to inf and ln p_t would
    // be -inf instead of about z_t - max. Here the ln1p form is taken only while the ratio is
    // finite (it is only needed when p_t is close to 1).
    const float ratio = asl_div(sum_rest, e_t);
    const float lp = (e_t > 0.0f && ratio < asl_inf()) ? -asl_ln1p(ratio) : z_shift - ln_sum;
    const float p = asl_div(e_t, sum);
    const float q = asl_div(sum_rest, sum);
    const float w = gamma_pos == 0.0f ? 1.0f : asl_exp(gamma_pos * asl_ln(q));
    const float loss = -a_t * asl_mul0(lp, w);
    const float focus =
        (gamma_pos == 0.0f || q == 0.0f) ? 0.0f : gamma_pos * w * asl_div(asl_mul0(lp, p), q);
    p_out = p;
    q_out = q;
    loss_out = loss;
    g_out = a_t * (focus - w);
}

// A non-target column: ln p_j = z_j - max - ln_sum, w = p_j^gn = e^(gn ln p_j);
// l_j = -a_o w ln p_j and g_j = -a_o w (1 + gn ln p_j).
ASL_HD void asl_sl_other(float z_shift, float ln_sum, float a_o, float gamma_neg, float& p_out,
                         float& loss_out, float& g_out) {
    const float lp = z_shift - ln_sum;
    const float p = asl_exp(lp);
    const float w = gamma_neg == 0.0f ? 1.0f : asl_exp(gamma_neg * lp);
    p_out = p;
    loss_out = -a_o * asl_mul0(lp, w);
    // gn ln p with gn = 0 is 0 even at ln p = -inf (the derivative term vanishes).
    g_out = -a_o * asl_mul0(1.0f + asl_mul0(lp, gamma_neg), w);
}

// Online softmax state over a set of columns: m = their maximum, s = sum e^(z - m) with
// asl_sl_shift's limits, so that infinite maxima behave as in reference.rs (the columns equal
// to an infinite maximum share the mass). An empty set is (m, s) = (-inf, 0).
struct AslOnline {
    float m;
    float s;
};

ASL_HD AslOnline asl_online_empty() {
    AslOnline o;
    o.m = -asl_inf();
    o.s = 0.0f;
    return o;
}

// Adds column z (not NaN; NaN is tracked separately by the caller).
ASL_HD void asl_online_add(AslOnline& o, float z) {
    if (z > o.m) {
        // New maximum: rescale the old sum by e^(m_old - z) and count z itself as e^0 = 1.
        o.s = o.s * asl_exp(asl_sl_shift(o.m, z)) + 1.0f;
        o.m = z;
    } else {
        o.s += asl_exp(asl_sl_shift(z, o.m));
    }
}

// Merges two states (the order of the operands is fixed by the callers' reduction trees).
ASL_HD AslOnline asl_online_merge(AslOnline a, AslOnline b) {
    AslOnline r;
    r.m = a.m > b.m ? a.m : b.m;
    // An empty side (s = 0) contributes 0 whatever its scale; skipping it avoids 0 * NaN.
    const float sa = a.s == 0.0f ? 0.0f : a.s * asl_exp(asl_sl_shift(a.m, r.m));
    const float sb = b.s == 0.0f ? 0.0f : b.s * asl_exp(asl_sl_shift(b.m, r.m));
    r.s = sa + sb;
    return r;
}

// The row statistics the loss pass needs, from the state of the non-target columns and the
// target logit: mx = max over the row, sum_rest rescaled to mx, e_t, sum and ln(sum).
struct AslRowStats {
    float mx;
    float z_shift_t;
    float e_t;
    float sum_rest;
    float sum;
    float ln_sum;
};

ASL_HD AslRowStats asl_row_stats(AslOnline rest, float z_t) {
    AslRowStats r;
    r.mx = rest.m > z_t ? rest.m : z_t;
    r.sum_rest = rest.s == 0.0f ? 0.0f : rest.s * asl_exp(asl_sl_shift(rest.m, r.mx));
    r.z_shift_t = asl_sl_shift(z_t, r.mx);
    r.e_t = asl_exp(r.z_shift_t);
    r.sum = r.sum_rest + r.e_t;
    r.ln_sum = asl_ln(r.sum);
    return r;
}

#endif  // ASL_MATH_CUH
