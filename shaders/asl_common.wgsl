// asl_common.wgsl: the f32 element math shared by the multi-label and single-label kernels.
//
// What: the per-element ASL math of `src/math.rs`, step for step: `ml_element` (sigmoid,
// probability shifting, log floor, focusing, loss and dl/dx of one multi-label element) and
// its fast case `ml_element_hard` (hard target, integer gammas),
// `sl_target` / `sl_other` (the single-label row terms before the softmax coupling) and
// `sl_shift` (z - max with an infinite max taken as its limit).
//
// Precision: f32 throughout. The transcendental functions are the crate's own polynomials
// (`PolyMath` in src/math.rs: Cephes-style exp and ln, about 1 ulp), not WGSL's `exp`/`log`:
// the WGSL and Vulkan specs allow `exp` an error of 3 + 2|x| ulp and `log` an absolute error of
// 2^-21 near 1, which would lose the relative precision that the log-sigmoid forms keep near
// saturation. With the polynomials the kernels agree with the CPU path to a few ulp on every
// adapter. One deliberate difference: `asl_ln_1p` (see there).
//
// Non-finite values: WGSL has no inf/NaN literals and rejects overflowing constant
// expressions, so they are made at run time by a bitcast of a private variable. NaN tests look
// at the bits, so that no compiler can fold `x != x` away.
//
// This file has no bindings; it is concatenated in front of the kernel sources by
// src/wgpu/shaders.rs (WGSL has no #include).

var<private> BITS_INF: u32 = 0x7f800000u;
var<private> BITS_NAN: u32 = 0x7fc00000u;

fn f32_inf() -> f32 {
    return bitcast<f32>(BITS_INF);
}

fn f32_nan() -> f32 {
    return bitcast<f32>(BITS_NAN);
}

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn is_inf(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u;
}

// e^x (PolyMath::exp): 0 below -87.33654 (no subnormal results), +inf above 88.37626.
fn asl_exp(x: f32) -> f32 {
    // 1. Range reduction x = n ln2 + r, |r| <= ln2 / 2, with ln2 split in two for exactness.
    let xc = clamp(x, -87.33654, 88.37626);
    let n = floor(xc * 1.44269504 + 0.5);
    let r = xc - n * 0.693359375 + n * 2.12194440e-4;
    // 2. e^r by a degree-7 polynomial (Cephes expf coefficients).
    var y = 1.9875691e-4;
    y = y * r + 1.3981999e-3;
    y = y * r + 8.333452e-3;
    y = y * r + 4.1665796e-2;
    y = y * r + 1.6666665e-1;
    y = y * r + 5.0000001e-1;
    y = y * r * r + r + 1.0;
    // 3. Scale by 2^n through the exponent bits (n is in [-126, 127] after the clamp).
    let scale = bitcast<f32>(u32(i32(n) + 127) << 23u);
    var v = y * scale;
    v = select(v, f32_inf(), x > 88.37626);
    v = select(v, 0.0, x < -87.33654);
    return select(v, x, is_nan(x));
}

// ln x (PolyMath::ln): -inf at 0, +inf at +inf, NaN below 0 and for NaN.
fn asl_ln(x: f32) -> f32 {
    // 1. Bring subnormals into the normal range (x * 2^25).
    let tiny = x < 1.17549435e-38;
    let xs = select(x, x * 33554432.0, tiny);
    // 2. x = 2^e * m with m in [sqrt(1/2), sqrt(2)).
    let bits = bitcast<u32>(xs);
    var e = i32((bits >> 23u) & 0xffu) - 126;
    var m = bitcast<f32>((bits & 0x807fffffu) | 0x3f000000u);
    let small = m < 0.70710678;
    e = e - select(0, 1, small);
    m = select(m - 1.0, m + m - 1.0, small);
    let ef = f32(e) - select(0.0, 25.0, tiny);
    // 3. ln(1 + m) by a degree-9 polynomial (Cephes logf coefficients).
    let z = m * m;
    var y = 7.0376836e-2;
    y = y * m - 1.1514610e-1;
    y = y * m + 1.1676999e-1;
    y = y * m - 1.2420141e-1;
    y = y * m + 1.4249323e-1;
    y = y * m - 1.6668058e-1;
    y = y * m + 2.0000714e-1;
    y = y * m - 2.4999994e-1;
    y = y * m + 3.3333331e-1;
    y = y * m * z;
    y = y + -2.12194440e-4 * ef;
    y = y + -0.5 * z;
    var r = m + y + 0.693359375 * ef;
    // 4. Special values.
    r = select(r, -f32_inf(), x == 0.0);
    r = select(r, f32_inf(), bitcast<u32>(x) == 0x7f800000u);
    return select(r, f32_nan(), is_nan(x) || x < 0.0);
}

// ln(1 + v) for v >= 0, accurate for tiny v.
//
// NOTE: deliberately not math.rs's Goldberg form ln(u) * v / (u - 1), u = 1 + v: it relies on
// `(1 + v) - 1` being evaluated as written, and Vulkan drivers may simplify it to `v` (Mesa's
// NIR does, for every float operation not marked exact, and naga marks none), which turns the
// result into ln(1) = 0 for v below 2^-24. Instead, for v <= 1:
//   ln(1 + v) = 2 atanh(t),  t = v / (2 + v) in [0, 1/3],
//   2 atanh(t) = 2 (t + t^3/3 + t^5/5 + ... + t^15/15)   (next term < 2^-25 relative),
// with no cancellation anywhere; above 1, ln(1 + v) itself (1 + v loses nothing relevant).
fn asl_ln_1p(v: f32) -> f32 {
    let t = v / (2.0 + v);
    let t2 = t * t;
    var y = 1.0 / 15.0;
    y = y * t2 + 1.0 / 13.0;
    y = y * t2 + 1.0 / 11.0;
    y = y * t2 + 1.0 / 9.0;
    y = y * t2 + 1.0 / 7.0;
    y = y * t2 + 1.0 / 5.0;
    y = y * t2 + 1.0 / 3.0;
    y = y * t2 + 1.0;
    return select(asl_ln(1.0 + v), 2.0 * t * y, v <= 1.0);
}

// a * b, except that an exact zero b gives 0 even for an infinite a (the 0 * inf limits).
fn mul0(a: f32, b: f32) -> f32 {
    return select(a * b, 0.0, b == 0.0);
}

// Uniform multi-label constants (from MlParams).
struct MlConsts {
    gamma_pos: f32,
    gamma_neg: f32,
    clip: f32,
    ln_eps: f32,
    use_clip: bool,
    no_focus: bool,
    detached: bool,
}

// Loss and dl/dx of one known multi-label element (math.rs `ml_element`): logit x, smoothed
// target y in [0, 1], positive weight pw. Class weight and reduction are the caller's.
fn ml_element(x: f32, y: f32, pw: f32, k: MlConsts) -> vec2<f32> {
    // 1. One exponential for everything sigmoid: e = e^-|x|.
    //    p = sigmoid(x), q = 1 - p = sigmoid(-x), s = p q,
    //    ln p = -(max(-x, 0) + ln1p(e)),  ln q = -(max(x, 0) + ln1p(e)).
    let e = asl_exp(-abs(x));
    let l1p = asl_ln_1p(e);
    let inv = 1.0 / (1.0 + e);
    let pos = x >= 0.0;
    let p = select(e * inv, inv, pos);
    let q = select(inv, e * inv, pos);
    let s = p * q;
    let lp = -(max(-x, 0.0) + l1p);

    // 2. Positive log term A = max(ln p, ln eps); dA/dx = q where ln p > ln eps.
    let pos_ok = lp > k.ln_eps;
    let a = select(k.ln_eps, lp, pos_ok);
    let da = select(0.0, q, pos_ok);

    // 3. Negative log term B = max(ln q~, ln eps), q~ = min(q + m, 1); pm = 1 - q~ = p - m.
    var b: f32;
    var db: f32;
    var pm: f32;
    var dpm: f32;
    if (k.use_clip) {
        let act = p > k.clip; // q + m < 1
        let qt = q + k.clip;
        let lqt = asl_ln(qt);
        let ok = lqt > k.ln_eps;
        b = select(0.0, select(k.ln_eps, lqt, ok), act);
        db = select(0.0, -s / qt, act && ok);
        pm = select(0.0, p - k.clip, act);
        dpm = select(0.0, s, act);
    } else {
        let lq = -(max(x, 0.0) + l1p);
        let ok = lq > k.ln_eps;
        b = select(k.ln_eps, lq, ok);
        db = select(0.0, -p, ok);
        pm = p;
        dpm = s;
    }

    // 4. CE = pw y A + (1 - y) B and its derivative.
    let ce = mul0(a, pw * y) + mul0(b, 1.0 - y);
    let dce = pw * y * da + (1.0 - y) * db;

    // 5. Focusing w = base^g, base = 1 - pt = y q + (1 - y) pm, g = gp y + gn (1 - y);
    //    dw = g w dbase / base, and 0 where g = 0 or base = 0 (the limit of CE dw there).
    let base = y * q + (1.0 - y) * pm;
    let dbase = -y * s + (1.0 - y) * dpm;
    let g = k.gamma_pos * y + k.gamma_neg * (1.0 - y);
    let wpow = asl_exp(g * asl_ln(base));
    let zero_g = g == 0.0 || k.no_focus;
    let w = select(select(wpow, 0.0, base == 0.0), 1.0, zero_g);
    let dw = select(g * w * (dbase / base), 0.0, zero_g || base == 0.0);

    // 6. l = -CE w;  dl/dx = -(CE' w + CE w'), or -CE' w when detached.
    let loss = -mul0(ce, w);
    let grad_focus = select(mul0(ce, dw), 0.0, k.detached);
    let grad = -(dce * w + grad_focus);
    return select(vec2<f32>(loss, grad), vec2<f32>(f32_nan()), is_nan(x));
}

// b^n for 0 <= n < 16 by square-and-multiply over four bits (math.rs `powi4`).
fn powi4(b: f32, n: u32) -> f32 {
    var r = 1.0;
    var p = b;
    for (var bit = 0u; bit < 4u; bit++) {
        r = select(r, r * p, (n & (1u << bit)) != 0u);
        p = p * p;
    }
    return r;
}

// The fast case of ml_element (math.rs `ml_element_hard`): a hard target (y exactly 0 or 1)
// and integer gammas below 16 (`gp`, `gn`). The focusing weight is a product instead of
// exp(g ln base), which saves an ln and an exp per element and the division dbase / base:
//   y = 1: base = q, dbase = -s;   y = 0: base = pm, dbase = dpm;
//   w = base^(g-1) base,  dw = g base^(g-1) dbase   (w = 1, dw = 0 for g = 0).
fn ml_element_hard(x: f32, positive: bool, pw: f32, k: MlConsts, gp: u32, gn: u32) -> vec2<f32> {
    // 1. Sigmoid and log-sigmoid from one exponential (as ml_element step 1).
    let e = asl_exp(-abs(x));
    let l1p = asl_ln_1p(e);
    let inv = 1.0 / (1.0 + e);
    let pos = x >= 0.0;
    let p = select(e * inv, inv, pos);
    let q = select(inv, e * inv, pos);
    let s = p * q;
    let lp = -(max(-x, 0.0) + l1p);

    // 2. CE and its derivative for the one term that is present.
    var ce: f32;
    var dce: f32;
    var base: f32;
    var dbase: f32;
    if (positive) {
        let ok = lp > k.ln_eps;
        ce = mul0(select(k.ln_eps, lp, ok), pw);
        dce = select(0.0, pw * q, ok);
        base = q;
        dbase = -s;
    } else if (k.use_clip) {
        let act = p > k.clip;
        let qt = q + k.clip;
        let lqt = asl_ln(qt);
        let ok = lqt > k.ln_eps;
        ce = select(0.0, select(k.ln_eps, lqt, ok), act);
        dce = select(0.0, -s / qt, act && ok);
        base = select(0.0, p - k.clip, act);
        dbase = select(0.0, s, act);
    } else {
        let lq = -(max(x, 0.0) + l1p);
        let ok = lq > k.ln_eps;
        ce = select(k.ln_eps, lq, ok);
        dce = select(0.0, -p, ok);
        base = p;
        dbase = s;
    }

    // 3. Focusing by multiplication.
    let g = select(select(gn, gp, positive), 0u, k.no_focus);
    let wm1 = powi4(base, max(g, 1u) - 1u);
    let w = select(wm1 * base, 1.0, g == 0u);
    let dw = select(f32(g) * wm1 * dbase, 0.0, g == 0u);

    // 4. l = -CE w;  dl/dx = -(CE' w + CE w'), or -CE' w when detached.
    let loss = -mul0(ce, w);
    let grad_focus = select(mul0(ce, dw), 0.0, k.detached);
    let grad = -(dce * w + grad_focus);
    return select(vec2<f32>(loss, grad), vec2<f32>(f32_nan()), is_nan(x));
}

// z - max, with an infinite max taken as its limit (math.rs `sl_shift`): columns equal to it
// get 0, every other column -inf.
fn sl_shift(z: f32, mx: f32) -> f32 {
    return select(z - mx, select(-f32_inf(), 0.0, z == mx), is_inf(mx));
}

// The target-class terms of a single-label row (math.rs `sl_target`). Inputs: z_shift =
// z_t - max, e_t = e^(z_t - max), sum = sum_j e^(z_j - max), sum_rest = the same without the
// target (kept apart so that 1 - p_t does not cancel), ln_sum = ln(sum).
// Returns (p_t, q_t = 1 - p_t, loss_t, g_t) with g_t = dl/d(ln p_t):
//   ln p_t = -ln1p(sum_rest / e_t),  q_t = sum_rest / sum,  w = q_t^gp,
//   l_t = -a_t w ln p_t,  g_t = a_t [gp w (p_t ln p_t / q_t) - w].
fn sl_target(z_shift: f32, e_t: f32, sum: f32, sum_rest: f32, ln_sum: f32, a_t: f32,
             gamma_pos: f32) -> vec4<f32> {
    // The ln1p form only while the ratio is finite: a subnormal e_t (the target ~88-104 below
    // the row maximum) would overflow it (3.4028235e38 is the largest f32).
    let ratio = sum_rest / e_t;
    let lp = select(z_shift - ln_sum, -asl_ln_1p(ratio), e_t > 0.0 && ratio <= 3.4028235e38);
    let p = e_t / sum;
    let q = sum_rest / sum;
    let w = select(asl_exp(gamma_pos * asl_ln(q)), 1.0, gamma_pos == 0.0);
    let loss = -a_t * mul0(lp, w);
    let focus = select(gamma_pos * w * (mul0(lp, p) / q), 0.0, gamma_pos == 0.0 || q == 0.0);
    return vec4<f32>(p, q, loss, a_t * (focus - w));
}

// A non-target column (math.rs `sl_other`): ln p_j = z_j - max - ln_sum, w = p_j^gn;
// returns (p_j, loss_j, g_j) with l_j = -a_o w ln p_j and g_j = -a_o w (1 + gn ln p_j).
fn sl_other(z_shift: f32, ln_sum: f32, a_o: f32, gamma_neg: f32) -> vec3<f32> {
    let lp = z_shift - ln_sum;
    let p = asl_exp(lp);
    let w = select(asl_exp(gamma_neg * lp), 1.0, gamma_neg == 0.0);
    let loss = -a_o * mul0(lp, w);
    // gn ln p with gn = 0 is 0 even at ln p = -inf (the derivative term vanishes).
    let g = -a_o * mul0(1.0 + mul0(lp, gamma_neg), w);
    return vec3<f32>(p, loss, g);
}
