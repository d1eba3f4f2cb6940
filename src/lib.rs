//! # asymloss
//!
//! Fused Asymmetric Loss (ASL, Ridnik et al., ICCV 2021) kernels with exactly timm's semantics:
//! the multi-label (sigmoid) loss of `timm.loss.AsymmetricLossMultiLabel` and the single-label
//! (softmax) loss of `timm.loss.AsymmetricLossSingleLabel`, computed in one pass with the
//! gradient written while the loss is summed.
//!
//! Backends:
//! - [`reference`]: float64, plain and obviously right; everything is tested against it.
//! - [`cpu`]: the fast fused CPU path (threads and SIMD with run-time dispatch), the default.
//! - `wgpu` (feature `wgpu`, on by default): hand-written WGSL kernels.
//! - `cuda` (feature `cuda`): hand-written CUDA C kernels compiled by NVRTC at run time.
//!
//! Every backend implements [`Backend`] on host slices; the GPU backends also offer raw entry
//! points on the caller's buffers.
#![warn(
    missing_docs,
    rust_2018_idioms,
    unsafe_op_in_unsafe_fn,
    missing_debug_implementations
)]

pub mod backend;
pub mod config;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod error;
pub mod math;
pub mod reference;
pub mod tensor;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub use backend::{available_backends, Backend, BackendKind};
pub use config::{FocalGrad, MultiLabel, PosWeight, Reduction, SingleLabel};
pub use error::{Error, Result};
pub use tensor::{
    ClassTargets, DType, GradMut, Logits, LossValue, MultiInputs, MultiTargets, Pass, Shape,
    SingleInputs, Upstream,
};
