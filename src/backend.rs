//! The [`Backend`] trait: one interface on host slices for every implementation, so that tests,
//! benchmarks and the `asl` command treat them alike.

use crate::config::{MultiLabel, SingleLabel};
use crate::error::Result;
use crate::tensor::{GradMut, LossValue, MultiInputs, Pass, SingleInputs};

/// A loss implementation working on host memory.
///
/// `pass` says what to compute: [`Pass::Forward`] returns the loss and ignores `grad`;
/// [`Pass::Backward`] writes `d (upstream * loss) / d logits` into `grad` and returns `None`;
/// [`Pass::Fused`] does both from one read of the logits.
///
/// Every implementation validates its input and returns an error rather than panicking. When it
/// returns an error the contents of `grad` are unspecified.
pub trait Backend: Send + Sync {
    /// A short name for logs and tables (`cpu`, `wgpu (llvmpipe)`, `cuda (NVIDIA H200)`).
    fn name(&self) -> String;

    /// The multi-label loss.
    fn multi_label(
        &self,
        cfg: &MultiLabel,
        pass: Pass,
        inputs: &MultiInputs<'_>,
        grad: Option<GradMut<'_>>,
    ) -> Result<Option<LossValue>>;

    /// The single-label loss.
    fn single_label(
        &self,
        cfg: &SingleLabel,
        pass: Pass,
        inputs: &SingleInputs<'_>,
        grad: Option<GradMut<'_>>,
    ) -> Result<Option<LossValue>>;

    /// True for a hardware GPU; false for the CPU and for software adapters such as lavapipe.
    /// `--backend auto` prefers hardware GPUs, then the CPU path.
    fn is_hardware_gpu(&self) -> bool {
        false
    }

    /// Waits until all work this backend queued has finished (a no-op on the CPU). Benchmarks
    /// call it before reading the clock.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}

/// The backends this build knows about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The fast fused CPU path.
    Cpu,
    /// WGSL kernels through wgpu.
    Wgpu,
    /// CUDA C kernels through cudarc.
    Cuda,
}

impl BackendKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Creates the backend, or says why it is not available.
    pub fn create(self) -> Result<Box<dyn Backend>> {
        match self {
            BackendKind::Cpu => Ok(Box::new(crate::cpu::Cpu::new())),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => Ok(Box::new(crate::wgpu::WgpuBackend::new()?)),
            #[cfg(not(feature = "wgpu"))]
            BackendKind::Wgpu => Err(crate::Error::Unsupported(
                "this build has no wgpu backend (build with --features wgpu)".into(),
            )),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => Ok(Box::new(crate::cuda::CudaBackend::new(0)?)),
            #[cfg(not(feature = "cuda"))]
            BackendKind::Cuda => Err(crate::Error::Unsupported(
                "this build has no CUDA backend (build with --features cuda)".into(),
            )),
        }
    }
}

/// Backends that could be created, best first.
pub type Available = Vec<(BackendKind, Box<dyn Backend>)>;
/// Backends that could not be created, with the reason.
pub type Unavailable = Vec<(BackendKind, String)>;

/// Every backend that can be created on this machine, best first (CUDA, wgpu on a real GPU,
/// CPU, wgpu on a software adapter), with the reasons the others could not be created.
pub fn available_backends() -> (Available, Unavailable) {
    let mut ok = Vec::new();
    let mut missing = Vec::new();
    for kind in [BackendKind::Cuda, BackendKind::Wgpu, BackendKind::Cpu] {
        match kind.create() {
            Ok(b) => ok.push((kind, b)),
            Err(e) => missing.push((kind, e.to_string())),
        }
    }
    // Stable sort: hardware GPUs first, in the order above, then the rest.
    ok.sort_by_key(|(_, b)| !b.is_hardware_gpu());
    let cpu_first = ok.iter().position(|(k, _)| *k == BackendKind::Cpu);
    if let Some(i) = cpu_first {
        let first_soft = ok
            .iter()
            .position(|(_, b)| !b.is_hardware_gpu())
            .unwrap_or(i);
        let cpu = ok.remove(i);
        ok.insert(first_soft.min(ok.len()), cpu);
    }
    (ok, missing)
}
