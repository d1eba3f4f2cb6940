//! Per-element f32 math: the single source that the WGSL and CUDA kernels mirror and that the
//! fast CPU path runs.
//!
//! The float64 [`crate::reference`] states the formulas plainly; this module states them the way
//! the kernels compute them: branch-free selects, one `exp` and one `ln1p` for the sigmoid and
//! both log-sigmoids, powers as `exp(g ln b)`. The functions are generic over [`F32Math`], the
//! transcendental functions: [`StdMath`] (the platform's libm, used in tests as a baseline) and
//! [`PolyMath`] (branch-free polynomials that the compiler vectorises, used by the CPU path).
//!
//! Precision: f32 throughout. Near saturation the log-sigmoid forms keep full relative precision
//! where timm's f32 `1 - sigmoid(x)` cancels (semantics doc section 3.3.6).

/// The transcendental functions the element math needs.
pub trait F32Math {
    /// `e^x`; 0 below about -87.3 (subnormal results are flushed), `+inf` above about 88.37.
    fn exp(x: f32) -> f32;
    /// `ln x` for `x >= 0` (`-inf` at 0).
    fn ln(x: f32) -> f32;
    /// `ln x` for a positive, normal, finite `x` only (cheaper: no special cases).
    #[inline(always)]
    fn ln_normal(x: f32) -> f32 {
        Self::ln(x)
    }
    /// `ln(1 + v)` for `v` in `[0, 1]` (the softplus term `ln(1 + e^-|x|)`).
    #[inline(always)]
    fn ln_1p_unit(v: f32) -> f32 {
        Self::ln_1p(v)
    }
    /// For `e = e^-|x|` in `[0, 1]`: `(1 / (1 + e), ln(1 + e))`, the two pieces every sigmoid
    /// and log-sigmoid here is built from.
    #[inline(always)]
    fn sigmoid_parts(e: f32) -> (f32, f32) {
        (1.0 / (1.0 + e), Self::ln_1p_unit(e))
    }
    /// `ln(1 + v)` for `v >= 0`, accurate for tiny `v`.
    #[inline(always)]
    fn ln_1p(v: f32) -> f32 {
        // Goldberg's trick: ln(u) * v / (u - 1) corrects the rounding of u = 1 + v.
        let u = 1.0 + v;
        let d = u - 1.0;
        if d == 0.0 {
            v
        } else {
            Self::ln(u) * (v / d)
        }
    }
}

/// The platform's `expf`/`logf`.
#[derive(Clone, Copy, Debug)]
pub struct StdMath;

impl F32Math for StdMath {
    #[inline(always)]
    fn exp(x: f32) -> f32 {
        x.exp()
    }
    #[inline(always)]
    fn ln(x: f32) -> f32 {
        x.ln()
    }
    #[inline(always)]
    fn ln_1p(v: f32) -> f32 {
        v.ln_1p()
    }
}

/// Branch-free Cephes-style polynomials (about 1 ulp) that vectorise.
///
/// The polynomials are evaluated with fused multiply-adds (`mul_add`): one instruction per
/// coefficient on every target the CPU path compiles for (AVX2+FMA, AVX-512, NEON). On an
/// x86-64 CPU without FMA (before 2013) the fallback calls libm's `fmaf`: correct, but slow.
#[derive(Clone, Copy, Debug)]
pub struct PolyMath;

impl PolyMath {
    /// `ln x` for a positive, normal, finite `x` (no special cases).
    #[inline(always)]
    fn ln_core(x: f32) -> f32 {
        // x = 2^e * m with m in [sqrt(1/2), sqrt(2)).
        let bits = x.to_bits();
        let mut e = ((bits >> 23) & 0xff) as i32 - 126;
        let mut m = f32::from_bits((bits & 0x807f_ffff) | 0x3f00_0000); // [0.5, 1)
        let small = m < std::f32::consts::FRAC_1_SQRT_2;
        e -= small as i32;
        m = if small { m + m - 1.0 } else { m - 1.0 };
        let ef = e as f32;
        // ln(1 + m) by a degree-9 polynomial (Cephes logf coefficients).
        let z = m * m;
        let mut y = 7.037_683_6e-2_f32;
        y = y.mul_add(m, -1.151_461e-1);
        y = y.mul_add(m, 1.167_699_9e-1);
        y = y.mul_add(m, -1.242_014_1e-1);
        y = y.mul_add(m, 1.424_932_3e-1);
        y = y.mul_add(m, -1.666_805_8e-1);
        y = y.mul_add(m, 2.000_071_4e-1);
        y = y.mul_add(m, -2.499_999_4e-1);
        y = y.mul_add(m, 0.333_333_3);
        y = y * m * z;
        y += -2.121_944_4e-4 * ef;
        y += -0.5 * z;
        m + y + 0.693_359_4 * ef
    }

    /// `2 atanh(u)` for `u` in `[0, 1/3]`: 2u (1 + u^2/3 + u^4/5 + ... + u^12/13); the first
    /// omitted term is below 1.5e-8 of the sum.
    #[inline(always)]
    fn atanh2(u: f32) -> f32 {
        let w = u * u;
        let mut s = 1.0 / 13.0f32;
        s = s.mul_add(w, 1.0 / 11.0);
        s = s.mul_add(w, 1.0 / 9.0);
        s = s.mul_add(w, 1.0 / 7.0);
        s = s.mul_add(w, 1.0 / 5.0);
        s = s.mul_add(w, 1.0 / 3.0);
        s = s.mul_add(w, 1.0);
        2.0 * u * s
    }
}

impl F32Math for PolyMath {
    #[inline(always)]
    fn ln_1p_unit(v: f32) -> f32 {
        // ln(1 + v) = 2 atanh(v / (2 + v)); tiny v keep full relative precision (no 1 + v
        // rounding).
        Self::atanh2(v / (2.0 + v))
    }

    #[inline(always)]
    fn exp(x: f32) -> f32 {
        // 1. Range reduction x = n ln2 + r, |r| <= ln2 / 2, with ln2 split in two for exactness.
        const HI: f32 = 88.376_26;
        const LO: f32 = -87.336_54;
        let xc = x.clamp(LO, HI);
        let n = xc.mul_add(std::f32::consts::LOG2_E, 0.5).floor();
        let r = xc - n * 0.693_359_4 + n * 2.121_944_4e-4;
        // 2. e^r by a degree-7 polynomial (Cephes expf coefficients).
        let mut y = 1.987_569_1e-4_f32;
        y = y.mul_add(r, 1.398_199_9e-3);
        y = y.mul_add(r, 8.333_452e-3);
        y = y.mul_add(r, 4.166_579_6e-2);
        y = y.mul_add(r, 1.666_666_5e-1);
        y = y.mul_add(r, 0.5);
        y = y * r * r + r + 1.0;
        // 3. Scale by 2^n through the exponent bits (n is in [-126, 127] after the clamp). The
        //    integer comes from the magic-number trick (n + 1.5 * 2^23 puts n in the low
        //    mantissa bits), which vectorises where a saturating float-to-int cast does not.
        let ni = (n + 12_582_912.0).to_bits().wrapping_sub(0x4b40_0000);
        let scale = f32::from_bits(ni.wrapping_add(127) << 23);
        let v = y * scale;
        let v = if x > HI { f32::INFINITY } else { v };
        if x < LO {
            0.0
        } else {
            v
        }
    }

    #[inline(always)]
    fn ln(x: f32) -> f32 {
        // 1. Bring subnormals into the normal range (x * 2^25), then the normal-range core.
        let tiny = x < f32::MIN_POSITIVE;
        let xs = if tiny { x * 33_554_432.0 } else { x };
        let r = Self::ln_core(xs)
            - if tiny {
                25.0 * std::f32::consts::LN_2
            } else {
                0.0
            };
        // 2. Special values: ln 0 = -inf, ln inf = inf, ln(negative or NaN) = NaN.
        let r = if x == 0.0 { f32::NEG_INFINITY } else { r };
        let r = if x == f32::INFINITY { f32::INFINITY } else { r };
        if x.is_nan() | (x < 0.0) {
            f32::NAN
        } else {
            r
        }
    }

    #[inline(always)]
    fn ln_normal(x: f32) -> f32 {
        Self::ln_core(x)
    }
}

/// Uniform multi-label parameters in f32 (from [`crate::config::MlParams`]).
#[derive(Clone, Copy, Debug)]
pub struct MlConsts {
    /// `gamma_pos`.
    pub gamma_pos: f32,
    /// `gamma_neg`.
    pub gamma_neg: f32,
    /// `clip`.
    pub clip: f32,
    /// `ln eps`.
    pub ln_eps: f32,
    /// Both gammas are 0.
    pub no_focus: bool,
    /// Detached focusing.
    pub detached: bool,
}

impl MlConsts {
    /// From the kernel parameter block.
    pub fn from_params(p: &crate::config::MlParams) -> Self {
        use crate::config::ml_flags;
        MlConsts {
            gamma_pos: p.gamma_pos,
            gamma_neg: p.gamma_neg,
            clip: p.clip,
            ln_eps: p.ln_eps,
            no_focus: p.flags & ml_flags::NO_FOCUS != 0,
            detached: p.flags & ml_flags::DETACHED != 0,
        }
    }
}

/// `a * b` with an exact zero `b` giving 0 even for infinite `a` (the limits where PyTorch
/// forms `0 * inf = NaN`).
#[inline(always)]
pub fn mul0(a: f32, b: f32) -> f32 {
    let r = a * b;
    if b == 0.0 {
        0.0
    } else {
        r
    }
}

/// The sigmoid pieces of one logit (see [`sigmoid`]).
#[derive(Clone, Copy, Debug)]
pub struct Sig {
    /// `p = sigmoid(x)`.
    pub p: f32,
    /// `q = 1 - p = sigmoid(-x)`, without cancellation.
    pub q: f32,
    /// `s = p q = dp/dx`.
    pub s: f32,
    /// `ln p = -(max(-x, 0) + ln1p(e^-|x|))`.
    pub lp: f32,
    /// `ln1p(e^-|x|)`, so that `ln q = -(max(x, 0) + l1p)`.
    pub l1p: f32,
}

/// Step 1 of the multi-label element math: one exponential `e = e^-|x|` gives
/// `p = sigmoid(x)`, `q = sigmoid(-x)`, `s = p q` and both log-sigmoids.
#[inline(always)]
pub fn sigmoid<M: F32Math>(x: f32) -> Sig {
    let e = M::exp(-x.abs());
    let (inv, l1p) = M::sigmoid_parts(e);
    let pos = x >= 0.0;
    let p = if pos { inv } else { e * inv };
    let q = if pos { e * inv } else { inv };
    Sig {
        p,
        q,
        s: p * q,
        lp: -((-x).max(0.0) + l1p),
        l1p,
    }
}

/// The negative log term with probability shifting (clip `m > 0`): with `q~ = min(q + m, 1)`,
/// returns `(B, dB/dx, pm, dpm/dx)` where `B = max(ln q~, ln eps)` and `pm = 1 - q~ =
/// max(p - m, 0)` is the paper's shifted probability. For `p <= m` everything is 0.
#[inline(always)]
pub fn clipped_negative<M: F32Math>(p: f32, q: f32, s: f32, k: &MlConsts) -> (f32, f32, f32, f32) {
    let act = p > k.clip; // q + m < 1
    let qt = q + k.clip;
    let lqt = M::ln(qt);
    let ok = lqt > k.ln_eps;
    let b = if ok { lqt } else { k.ln_eps };
    (
        if act { b } else { 0.0 },
        if act & ok { -s / qt } else { 0.0 },
        if act { p - k.clip } else { 0.0 },
        if act { s } else { 0.0 },
    )
}

/// Loss and `dl/dx` of one known multi-label element: logit `x`, smoothed target `y` in
/// `[0, 1]`, positive weight `pw`. `CLIP` is `clip > 0` (a compile-time switch so that the
/// element loop has no data-independent branch). Class weight and reduction are applied by the
/// caller.
#[inline(always)]
pub fn ml_element<M: F32Math, const CLIP: bool>(
    x: f32,
    y: f32,
    pw: f32,
    k: &MlConsts,
) -> (f32, f32) {
    // 1. Sigmoid and log-sigmoids from one exponential.
    let Sig { p, q, s, lp, l1p } = sigmoid::<M>(x);

    // 2. Positive log term A = max(ln p, ln eps); dA/dx = q where ln p > ln eps.
    let pos_ok = lp > k.ln_eps;
    let a = if pos_ok { lp } else { k.ln_eps };
    let da = if pos_ok { q } else { 0.0 };

    // 3. Negative log term B = max(ln q~, ln eps), q~ = min(q + m, 1); pm = 1 - q~.
    let (b, db, pm, dpm) = if CLIP {
        clipped_negative::<M>(p, q, s, k)
    } else {
        let lq = -(x.max(0.0) + l1p);
        let ok = lq > k.ln_eps;
        (
            if ok { lq } else { k.ln_eps },
            if ok { -p } else { 0.0 },
            p,
            s,
        )
    };

    // 4. CE = pw y A + (1 - y) B and its derivative.
    let ce = mul0(a, pw * y) + mul0(b, 1.0 - y);
    let dce = pw * y * da + (1.0 - y) * db;

    // 5. Focusing w = base^g, base = 1 - pt = y q + (1 - y) pm, g = gp y + gn (1 - y);
    //    dw = g w dbase / base, and 0 where g = 0 or base = 0 (the limit of CE dw there).
    let base = y * q + (1.0 - y) * pm;
    let dbase = -y * s + (1.0 - y) * dpm;
    let g = k.gamma_pos * y + k.gamma_neg * (1.0 - y);
    let wpow = M::exp(g * M::ln(base));
    let zero_g = (g == 0.0) | k.no_focus;
    let w = if zero_g {
        1.0
    } else if base == 0.0 {
        0.0
    } else {
        wpow
    };
    let dw = if zero_g || base == 0.0 {
        0.0
    } else {
        g * w * (dbase / base)
    };

    // 6. l = -CE w;  dl/dx = -(CE' w + CE w'), or -CE' w when detached.
    let loss = -mul0(ce, w);
    let grad_focus = if k.detached { 0.0 } else { mul0(ce, dw) };
    let grad = -(dce * w + grad_focus);
    if x.is_nan() {
        (f32::NAN, f32::NAN)
    } else {
        (loss, grad)
    }
}

/// `b^n` for `0 <= n < 16` by square-and-multiply over four bits: no `ln`/`exp`, and the same
/// instruction sequence for every lane.
#[inline(always)]
pub fn powi4(b: f32, n: u32) -> f32 {
    let mut r = 1.0f32;
    let mut p = b;
    for bit in 0..4 {
        r = if n & (1 << bit) != 0 { r * p } else { r };
        p *= p;
    }
    r
}

/// The fast case of [`ml_element`]: a hard target (`y` is exactly 0 or 1, no smoothing) and
/// integer gammas below 16 (`gp`, `gn`), which covers timm's defaults, the paper's setting,
/// BCE and focal loss. The focusing weight is then a product, not `exp(g ln b)`:
///
/// ```text
/// y = 1: base = q,  dbase = -s          y = 0: base = pm, dbase = dpm
/// w = base^g = base^(g-1) base,   dw = g base^(g-1) dbase      (w = 1, dw = 0 for g = 0)
/// ```
///
/// which also removes the division `dbase / base`. Everything else is [`ml_element`]'s.
#[inline(always)]
pub fn ml_element_hard<M: F32Math, const CLIP: bool>(
    x: f32,
    positive: bool,
    pw: f32,
    k: &MlConsts,
    gp: u32,
    gn: u32,
) -> (f32, f32) {
    // 1. One exponential: e = e^-|x|, p = sigmoid(x), q = sigmoid(-x), s = p q.
    let e = M::exp(-x.abs());
    let inv = 1.0 / (1.0 + e);
    let pos = x >= 0.0;
    let p = if pos { inv } else { e * inv };
    let q = if pos { e * inv } else { inv };
    let s = p * q;

    // 2. One logarithm per element: a positive needs ln(1 + e) (for ln p), a clipped negative
    //    ln(q + m); one `ln` of whichever is needed serves both. ln(1 + e) keeps its precision
    //    for tiny e by Goldberg's correction ln(u) e / (u - 1), u = 1 + e (exact in IEEE
    //    arithmetic). Without clipping the negative side needs ln(1 + e) too.
    let qt = q + k.clip;
    let u = if positive || !CLIP { 1.0 + e } else { qt };
    let lu = M::ln_normal(u); // u is in [clip, 2]: positive, normal, finite (or NaN)
    let d = u - 1.0;
    let l1p = if d == 0.0 { e } else { lu * (e / d) };
    let lp = -((-x).max(0.0) + l1p);

    // 3. CE and its derivative for the one term that is present.
    let (ce, dce, base, dbase) = if positive {
        let ok = lp > k.ln_eps;
        let a = if ok { lp } else { k.ln_eps };
        (mul0(a, pw), if ok { pw * q } else { 0.0 }, q, -s)
    } else if CLIP {
        // As clipped_negative, with ln(q + m) = lu.
        let act = p > k.clip;
        let ok = lu > k.ln_eps;
        let b = if ok { lu } else { k.ln_eps };
        (
            if act { b } else { 0.0 },
            if act & ok { -s / qt } else { 0.0 },
            if act { p - k.clip } else { 0.0 },
            if act { s } else { 0.0 },
        )
    } else {
        let lq = -(x.max(0.0) + l1p);
        let ok = lq > k.ln_eps;
        (
            if ok { lq } else { k.ln_eps },
            if ok { -p } else { 0.0 },
            p,
            s,
        )
    };

    // 4. Focusing by multiplication.
    //    Each side's power has a uniform exponent, so a caller that passes constant gammas gets
    //    straight multiplications.
    let (gp, gn) = if k.no_focus { (0, 0) } else { (gp, gn) };
    let g = if positive { gp } else { gn };
    let wm1 = if positive {
        powi4(base, gp.max(1) - 1)
    } else {
        powi4(base, gn.max(1) - 1)
    };
    let w = if g == 0 { 1.0 } else { wm1 * base };
    let dw = if g == 0 { 0.0 } else { g as f32 * wm1 * dbase };

    // 5. l = -CE w;  dl/dx = -(CE' w + CE w'), or -CE' w when detached.
    let loss = -mul0(ce, w);
    let grad_focus = if k.detached { 0.0 } else { mul0(ce, dw) };
    let grad = -(dce * w + grad_focus);
    if x.is_nan() {
        (f32::NAN, f32::NAN)
    } else {
        (loss, grad)
    }
}

/// The target-class terms of a single-label row.
///
/// Inputs from the row pass: `e_t = e^(z_t - max)`, `sum = sum_j e^(z_j - max)` and
/// `sum_rest = sum_{j != t} e^(z_j - max)` (accumulated separately so that `1 - p_t` does not
/// cancel), and `ln_sum = ln(sum)`. Returns `(p_t, q_t = 1 - p_t, loss_t, g_t)` where
/// `g_t = dl/d(ln p_t)` before the softmax coupling:
///
/// ```text
/// ln p_t = -ln1p(sum_rest / e_t),  q_t = sum_rest / sum,  w = q_t^gp
/// l_t = -a_t w ln p_t,   g_t = a_t [gp w (p_t ln p_t / q_t) - w]
/// ```
#[inline(always)]
pub fn sl_target<M: F32Math>(
    z_shift: f32,
    e_t: f32,
    sum: f32,
    sum_rest: f32,
    ln_sum: f32,
    a_t: f32,
    gamma_pos: f32,
) -> (f32, f32, f32, f32) {
    // The ln1p form keeps ln p_t accurate when p_t is near 1; it is taken only while the ratio
    // is finite (a subnormal e_t, the target ~88-104 below the row maximum, would overflow it).
    let ratio = sum_rest / e_t;
    let lp = if e_t > 0.0 && ratio < f32::INFINITY {
        -M::ln_1p(ratio)
    } else {
        z_shift - ln_sum
    };
    let p = e_t / sum;
    let q = sum_rest / sum;
    let w = if gamma_pos == 0.0 {
        1.0
    } else {
        M::exp(gamma_pos * M::ln(q))
    };
    let loss = -a_t * mul0(lp, w);
    let focus = if gamma_pos == 0.0 || q == 0.0 {
        0.0
    } else {
        gamma_pos * w * (mul0(lp, p) / q)
    };
    (p, q, loss, a_t * (focus - w))
}

/// A non-target column of a single-label row: `ln p_j = z_j - max - ln_sum`,
/// `w = p_j^gn = e^(gn ln p_j)`; returns `(p_j, loss_j, g_j)` with
/// `l_j = -a_o w ln p_j` and `g_j = -a_o w (1 + gn ln p_j)`.
#[inline(always)]
pub fn sl_other<M: F32Math>(
    z_shift: f32,
    ln_sum: f32,
    a_o: f32,
    gamma_neg: f32,
) -> (f32, f32, f32) {
    let lp = z_shift - ln_sum;
    let p = M::exp(lp);
    let w = if gamma_neg == 0.0 {
        1.0
    } else {
        M::exp(gamma_neg * lp)
    };
    let loss = -a_o * mul0(lp, w);
    // gn ln p_j with gn = 0 is 0 even where ln p_j = -inf (the derivative term vanishes).
    let g = -a_o * mul0(1.0 + mul0(lp, gamma_neg), w);
    (p, loss, g)
}

/// [`sl_other`] given `p_j` already (as `e_j / sum` from the row pass) and an integer
/// `gamma_neg` below 16: `w = p_j^gn` by multiplication, no exponential at all.
#[inline(always)]
pub fn sl_other_int(p: f32, z_shift: f32, ln_sum: f32, a_o: f32, gn: u32) -> (f32, f32) {
    let lp = z_shift - ln_sum;
    let w = powi4(p, gn);
    let loss = -a_o * mul0(lp, w);
    let g = -a_o * mul0(1.0 + mul0(lp, gn as f32), w);
    (loss, g)
}

/// `z - max`, with an infinite maximum taken as its limit (columns equal to it get 0, every
/// other column `-inf`).
#[inline(always)]
pub fn sl_shift(z: f32, max: f32) -> f32 {
    if max.is_infinite() {
        if z == max {
            0.0
        } else {
            f32::NEG_INFINITY
        }
    } else {
        z - max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f32, b: f64) -> f64 {
        ((a as f64 - b) / b.abs().max(1e-300)).abs()
    }

    #[test]
    fn poly_exp_matches_f64() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            worst = worst.max(rel(PolyMath::exp(x), (x as f64).exp()));
            x += 0.0137;
        }
        assert!(worst < 3e-7, "exp worst relative error {worst}");
        assert_eq!(PolyMath::exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(PolyMath::exp(-1000.0), 0.0);
        assert_eq!(PolyMath::exp(1000.0), f32::INFINITY);
        assert_eq!(PolyMath::exp(0.0), 1.0);
    }

    #[test]
    fn poly_ln_matches_f64() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let x = f32::from_bits(0x0000_1000 + i * 10_600);
            if x <= 0.0 || !x.is_finite() {
                continue;
            }
            let r = (x as f64).ln();
            let err = if r.abs() < 1e-3 {
                (PolyMath::ln(x) as f64 - r).abs()
            } else {
                rel(PolyMath::ln(x), r)
            };
            worst = worst.max(err);
        }
        assert!(worst < 3e-7, "ln worst relative error {worst}");
        assert_eq!(PolyMath::ln(0.0), f32::NEG_INFINITY);
        assert_eq!(PolyMath::ln(f32::INFINITY), f32::INFINITY);
        assert!(PolyMath::ln(-1.0).is_nan());
        assert_eq!(PolyMath::ln(1.0), 0.0);
    }

    #[test]
    fn hard_target_fast_case_equals_the_general_math() {
        for (gp, gn) in [(0u32, 0u32), (1, 4), (0, 4), (2, 2), (3, 8), (15, 1)] {
            for (clip, det) in [(0.05f32, false), (0.0, true), (0.3, true), (0.0, false)] {
                let k = MlConsts {
                    gamma_pos: gp as f32,
                    gamma_neg: gn as f32,
                    clip,
                    ln_eps: (1e-8f32).ln(),
                    no_focus: gp == 0 && gn == 0,
                    detached: det,
                };
                for i in -400..=400 {
                    let x = i as f32 * 0.07;
                    for y in [0.0f32, 1.0] {
                        let (a, b) = if clip > 0.0 {
                            (
                                ml_element::<StdMath, true>(x, y, 1.5, &k),
                                ml_element_hard::<StdMath, true>(x, y == 1.0, 1.5, &k, gp, gn),
                            )
                        } else {
                            (
                                ml_element::<StdMath, false>(x, y, 1.5, &k),
                                ml_element_hard::<StdMath, false>(x, y == 1.0, 1.5, &k, gp, gn),
                            )
                        };
                        let ok =
                            |u: f32, v: f32| (u - v).abs() <= 1e-30 + 2e-5 * u.abs().max(v.abs());
                        assert!(
                            ok(a.0, b.0) && ok(a.1, b.1),
                            "x={x} y={y} gp={gp} gn={gn}: {a:?} {b:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn poly_ln1p_unit_matches_f64() {
        let mut worst = 0.0f64;
        for i in 0..=100_000 {
            let v = i as f32 / 100_000.0;
            let v = if i % 2 == 0 { v } else { v * v * v * 1e-20 };
            if v > 0.0 {
                worst = worst.max(rel(PolyMath::ln_1p_unit(v), (v as f64).ln_1p()));
            }
        }
        assert!(worst < 3e-7, "ln1p_unit worst relative error {worst}");
        assert_eq!(PolyMath::ln_1p_unit(0.0), 0.0);
    }

    #[test]
    fn poly_ln1p_is_accurate_for_tiny_arguments() {
        for v in [1e-30f32, 1e-12, 3e-8, 1e-5, 0.3, 1.0] {
            let r = (v as f64).ln_1p();
            assert!(rel(PolyMath::ln_1p(v), r) < 4e-7, "ln1p({v})");
        }
    }
}
