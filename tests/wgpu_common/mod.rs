//! Helpers shared by the wgpu tests: one backend per test binary and subgroup mode, skipped
//! with a printed reason when there is no adapter (unless `ASL_REQUIRE_WGPU=1`), and the
//! tolerance policy against the float64 reference.
#![allow(dead_code)]

use asymloss::wgpu::{ContextOptions, SubgroupMode, WgpuBackend};
use asymloss::*;
use std::sync::OnceLock;

/// True when `ASL_REQUIRE_WGPU=1`: a missing adapter fails the test instead of skipping it.
pub fn required() -> bool {
    std::env::var("ASL_REQUIRE_WGPU").is_ok_and(|v| v == "1")
}

fn make(mode: SubgroupMode) -> Option<WgpuBackend> {
    match WgpuBackend::with_options(ContextOptions { subgroups: mode }) {
        Ok(mut b) => {
            b.set_poison_outputs(true);
            Some(b)
        }
        Err(e) => {
            assert!(!required(), "ASL_REQUIRE_WGPU=1 but no wgpu backend: {e}");
            eprintln!("skipping: no wgpu adapter ({e}); set ASL_REQUIRE_WGPU=1 to make this fail");
            None
        }
    }
}

/// The backend with subgroups when the adapter has them, poisoning its outputs.
pub fn backend() -> Option<&'static WgpuBackend> {
    static B: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    B.get_or_init(|| make(SubgroupMode::Auto)).as_ref()
}

/// The backend forced onto the workgroup-memory reductions.
pub fn backend_no_subgroups() -> Option<&'static WgpuBackend> {
    static B: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    B.get_or_init(|| make(SubgroupMode::Off)).as_ref()
}

/// Both reduction flavours (one entry when the adapter has no subgroups), with a label.
pub fn backends() -> Vec<(&'static str, &'static WgpuBackend)> {
    let mut v = Vec::new();
    if let Some(b) = backend() {
        let sg = b.context().uses_subgroups();
        v.push((if sg { "subgroups" } else { "workgroup" }, b));
        if sg {
            if let Some(w) = backend_no_subgroups() {
                v.push(("workgroup", w));
            }
        }
    }
    v
}

/// Tolerances against the float64 reference, per logits dtype.
///
/// f32: loss rtol 1e-5 (atol 1e-6 x the largest |loss|, for losses that sum to about 0);
/// gradient rtol 1e-4 and atol 1e-6 x max |grad ref| (the common brief's policy).
/// f16 / bf16: the logits are rounded before the reference sees them, so only the f32 math
/// and the final rounding of the gradient differ: gradient rtol 2^-10 (f16) or 2^-7 (bf16)
/// plus atol 1e-3 x max |grad| (values below the 16-bit types' range flush), loss as f32.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub loss_rtol: f64,
    pub grad_rtol: f64,
    pub grad_atol_rel: f64,
}

pub fn tol(dtype: DType) -> Tol {
    match dtype {
        DType::F32 => Tol {
            loss_rtol: 1e-5,
            grad_rtol: 1e-4,
            grad_atol_rel: 1e-6,
        },
        DType::F16 => Tol {
            loss_rtol: 1e-5,
            grad_rtol: 1.0 / 1024.0,
            grad_atol_rel: 1e-3,
        },
        DType::Bf16 => Tol {
            loss_rtol: 1e-5,
            grad_rtol: 1.0 / 128.0,
            grad_atol_rel: 1e-3,
        },
    }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter()
        .filter(|x| x.is_finite())
        .fold(0.0f64, |m, x| m.max(x.abs()))
}

/// Compares a loss (scalar or array) and a gradient against the reference: a scalar loss to
/// `loss_rtol`; an unreduced loss and the gradient element by element to `grad_rtol` with an
/// absolute floor of `grad_atol_rel` x the largest reference value (elements far below the
/// others' scale only need to be right in absolute terms).
pub fn check(
    what: &str,
    t: Tol,
    loss: Option<&[f64]>,
    want_loss: &[f64],
    grad: Option<&[f64]>,
    want_grad: &[f64],
) {
    if let Some(l) = loss {
        if want_loss.len() == 1 {
            super::common::assert_close(&format!("{what}: loss"), l, want_loss, 1e-30, t.loss_rtol);
        } else {
            let atol = t.grad_atol_rel * max_abs(want_loss) + 1e-30;
            super::common::assert_close(&format!("{what}: loss"), l, want_loss, atol, t.grad_rtol);
        }
    }
    if let Some(g) = grad {
        let atol = t.grad_atol_rel * max_abs(want_grad) + 1e-30;
        super::common::assert_close(&format!("{what}: grad"), g, want_grad, atol, t.grad_rtol);
    }
}

pub fn loss_vec(l: &LossValue) -> Vec<f64> {
    l.as_slice().iter().map(|&v| v as f64).collect()
}

/// A simple seeded generator (xorshift), so the tests need no extra crate features.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Roughly normal (sum of uniforms).
    pub fn normal(&mut self) -> f64 {
        (0..4).map(|_| self.uniform()).sum::<f64>() * 1.7320508 - 3.4641016
    }
}
