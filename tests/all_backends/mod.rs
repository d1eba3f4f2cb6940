//! Every backend this machine has, for the tests that hold each backend to the same rules
//! (bad_input, nonfinite, determinism, concurrency): the fast CPU path always; wgpu when an
//! adapter is present (lavapipe in CI, required there by `ASL_REQUIRE_WGPU=1`); CUDA when the
//! build has it and a GPU is present. Without a GPU, `CudaBackend::new` must fail with
//! `Error::CudaUnavailable`, which is checked here and printed.
#![allow(dead_code)]

use asymloss::cpu::Cpu;
use asymloss::*;
use std::sync::OnceLock;

/// The CPU backend on rayon's global pool.
pub fn cpu() -> &'static Cpu {
    static C: OnceLock<Cpu> = OnceLock::new();
    C.get_or_init(Cpu::new)
}

/// The CUDA backend when this build has it and a GPU is present.
#[cfg(feature = "cuda")]
pub fn cuda() -> Option<&'static asymloss::cuda::CudaBackend> {
    static C: OnceLock<Option<asymloss::cuda::CudaBackend>> = OnceLock::new();
    C.get_or_init(|| match asymloss::cuda::CudaBackend::new(0) {
        Ok(b) => Some(b),
        Err(e) => {
            assert!(
                matches!(e, Error::CudaUnavailable(_)),
                "without a usable GPU, CudaBackend::new must say CudaUnavailable; got: {e}"
            );
            eprintln!("cuda skipped: {e}");
            None
        }
    })
    .as_ref()
}

/// The wgpu backend (subgroups when the adapter has them), outputs poisoned with NaN.
#[cfg(feature = "wgpu")]
pub fn wgpu() -> Option<&'static asymloss::wgpu::WgpuBackend> {
    crate::wgpu_common::backend()
}

/// Every backend available here, with a name for messages.
pub fn all() -> Vec<(String, &'static dyn Backend)> {
    let mut out: Vec<(String, &'static dyn Backend)> = vec![("cpu".into(), cpu())];
    #[cfg(feature = "wgpu")]
    if let Some(b) = crate::wgpu_common::backend() {
        out.push((b.name(), b));
    }
    #[cfg(feature = "cuda")]
    if let Some(b) = cuda() {
        out.push((b.name(), b));
    }
    out
}

/// [`all`], with both reduction flavours of wgpu (subgroups and workgroup memory) when the
/// adapter has subgroups.
pub fn all_flavours() -> Vec<(String, &'static dyn Backend)> {
    let mut out: Vec<(String, &'static dyn Backend)> = vec![("cpu".into(), cpu())];
    #[cfg(feature = "wgpu")]
    for (mode, b) in crate::wgpu_common::backends() {
        out.push((format!("{} [{mode}]", b.name()), b));
    }
    #[cfg(feature = "cuda")]
    if let Some(b) = cuda() {
        out.push((b.name(), b));
    }
    out
}
