//! Multi-label launches: the raw entry point on device pointers ([`multi_label_raw`]) and the
//! convenience API on cudarc slices ([`multi_label`]).

use std::sync::Arc;

use cudarc::driver::{
    CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
    SyncOnDrop,
};

use super::compile::{KernelFile, Unit};
use super::context::{driver_err, mode, CudaKernels, Workspace};
use crate::config::{MlParams, MultiLabel, PosWeight, Reduction};
use crate::error::{Error, Result};
use crate::tensor::{DType, LossValue, Pass, Shape};

// SAFETY: `MlParams` is #[repr(C)], plain old data (bytemuck::Pod), 48 bytes, and mirrored
// field for field by `struct MlParams` in kernels/asl_math.cuh (static_assert on the size).
unsafe impl DeviceRepr for MlParams {}

/// Threads per block of the multi-label kernels (`ML_THREADS` in multi_label.cu).
pub const ML_THREADS: u32 = 256;

/// Element type of multi-label targets on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// f32 soft labels in `[0, 1]`, negative = unknown.
    F32,
    /// u8 labels `0`, `1`, `255` = unknown.
    U8,
}

/// The upstream gradient of a raw launch.
#[derive(Clone, Copy, Debug)]
pub enum DevUpstream {
    /// One number (a reduced loss, or the same factor for every element).
    Scalar(f32),
    /// Device address of an f32 array shaped like the unreduced loss (`Reduction::None` only).
    Array(u64),
}

/// Device buffers of one multi-label call, as raw `CUdeviceptr` values (0 = absent). All
/// arrays are dense row-major `N x C`.
#[derive(Clone, Copy, Debug)]
pub struct MlDeviceArgs {
    /// Logits (`dtype`).
    pub logits: u64,
    /// Element type of the logits and the gradient.
    pub dtype: DType,
    /// Targets (`target_kind`).
    pub targets: u64,
    /// Element type of the targets.
    pub target_kind: TargetKind,
    /// Upstream gradient (used by backward and fused passes).
    pub upstream: DevUpstream,
    /// Gradient output (`dtype`); required by backward and fused passes.
    pub grad: u64,
    /// Loss output, f32: one element for a reduced loss, `N x C` for `Reduction::None` (needed
    /// then). 0 for a reduced loss writes it to the workspace's loss slot instead
    /// ([`Workspace::read_status`]).
    pub loss: u64,
}

/// The kernel name for a pass, logits dtype and target kind.
pub fn kernel_name(pass: Pass, dtype: DType, targets: TargetKind) -> String {
    let suffix = if targets == TargetKind::U8 { "_u8" } else { "" };
    format!("multi_label_{}_{}{}", pass.name(), dtype.name(), suffix)
}

fn fits_u32(shape: Shape) -> Result<()> {
    if u32::try_from(shape.rows).is_err() || shape.cols >= (1usize << 31) {
        return Err(Error::Unsupported(format!(
            "the CUDA kernels take at most 2^32 - 1 rows and 2^31 - 1 columns, got {shape}"
        )));
    }
    Ok(())
}

/// Everything a multi-label launch decides before it touches the GPU: which kernels, the
/// parameter block, the mode bits, the scales and the work size. [`plan_multi_label`] makes
/// it (validating the arguments); [`multi_label_raw`] launches it. Public so that the launch
/// logic can be inspected and tested without a GPU.
#[derive(Clone, Debug)]
pub struct MlPlan {
    /// The main kernel (`multi_label_<pass>_<dtype>[_u8]`).
    pub kernel: String,
    /// The count kernel to run first (mean with an unknown count), if any.
    pub count_kernel: Option<&'static str>,
    /// The unit (NVRTC program) both kernels belong to.
    pub unit: Unit,
    /// The parameter block.
    pub params: MlParams,
    /// Mode bits (`ASL_MODE_*` in asl_device.cuh).
    pub mode: u32,
    /// Factor on the summed loss (1, 1/N or 1/known; replaced on the device with ASL_MODE_COUNT).
    pub loss_scale: f64,
    /// Elements `N x C`.
    pub n: u64,
    /// Blocks of [`ML_THREADS`] that cover the work (the launch caps it at the resident grid).
    pub blocks_needed: u64,
    /// The gradient address the kernel gets (0 when the pass writes none).
    pub grad: u64,
    /// The loss address the kernel gets (`loss_slot` when `args.loss` is 0).
    pub loss: u64,
    /// The upstream array address the kernel gets (0 for a scalar).
    pub upstream: u64,
}

/// Validates a multi-label call and decides its launch (see [`MlPlan`]). `loss_slot` is where
/// a reduced loss goes when `args.loss` is 0 (the workspace's slot).
pub fn plan_multi_label(
    cfg: &MultiLabel,
    pass: Pass,
    shape: Shape,
    args: &MlDeviceArgs,
    known: Option<u64>,
    loss_slot: u64,
) -> Result<MlPlan> {
    let n = shape.elements()? as u64;
    cfg.validate(Some(shape.cols))?;
    fits_u32(shape)?;
    if n > 0 && (args.logits == 0 || args.targets == 0) {
        return Err(Error::InvalidArgument(
            "logits and targets must be device buffers".into(),
        ));
    }
    if pass.wants_grad() && n > 0 && args.grad == 0 {
        return Err(Error::InvalidArgument(format!(
            "a {} pass needs a gradient buffer",
            pass.name()
        )));
    }
    let none = cfg.reduction == Reduction::None;
    if none && pass.wants_loss() && n > 0 && args.loss == 0 {
        return Err(Error::InvalidArgument(
            "reduction none needs an N x C loss buffer for the forward pass".into(),
        ));
    }

    // 1. Scales: the gradient factor (upstream x reduction scale) and the loss scale.
    let mut bits = 0u32;
    let (up_scalar, up_ptr) = match args.upstream {
        DevUpstream::Scalar(u) => (u as f64, 0u64),
        DevUpstream::Array(p) if none => {
            bits |= mode::UP_ARRAY;
            (1.0, p)
        }
        DevUpstream::Array(_) => {
            return Err(Error::InvalidArgument(format!(
                "an upstream array needs reduction none; reduction {} takes a number",
                cfg.reduction.name()
            )))
        }
    };
    let (grad_scale, loss_scale) = match cfg.reduction {
        Reduction::None | Reduction::Sum => (up_scalar, 1.0),
        Reduction::BatchMean => {
            let inv = 1.0 / shape.rows.max(1) as f64;
            (up_scalar * inv, inv)
        }
        Reduction::Mean => match known {
            Some(k) => {
                let inv = 1.0 / k.max(1) as f64;
                (up_scalar * inv, inv)
            }
            None => {
                bits |= mode::COUNT;
                (up_scalar, 1.0)
            }
        },
    };
    if none && pass.wants_loss() {
        bits |= mode::LOSS_ARRAY;
    }
    let loss = if args.loss != 0 { args.loss } else { loss_slot };
    let grad = if pass.wants_grad() { args.grad } else { 0 };

    // 2. Packed access when every buffer the kernel touches is 16-byte aligned.
    let mut used = vec![args.logits, args.targets];
    if grad != 0 {
        used.push(grad);
    }
    if bits & mode::UP_ARRAY != 0 {
        used.push(up_ptr);
    }
    if bits & mode::LOSS_ARRAY != 0 {
        used.push(loss);
    }
    let vec = used.iter().all(|p| p % 16 == 0);
    if vec {
        bits |= mode::VEC;
    }
    let per_step = if vec {
        (16 / args.dtype.size()) as u64
    } else {
        1
    };
    let count_kernel = (bits & mode::COUNT != 0).then_some(match args.target_kind {
        TargetKind::F32 => "multi_label_count_f32",
        TargetKind::U8 => "multi_label_count_u8",
    });
    Ok(MlPlan {
        kernel: kernel_name(pass, args.dtype, args.target_kind),
        count_kernel,
        unit: Unit {
            file: KernelFile::MultiLabel,
            dtype: args.dtype,
            u8_targets: args.target_kind == TargetKind::U8,
        },
        params: MlParams::new(cfg, shape.rows, shape.cols, grad_scale as f32),
        mode: bits,
        loss_scale,
        n,
        blocks_needed: n.div_ceil(per_step).div_ceil(ML_THREADS as u64),
        grad,
        loss,
        upstream: up_ptr,
    })
}

/// Launches a multi-label pass on device memory, without synchronizing.
///
/// Runs on `stream` (for memory owned by another framework, wrap its stream with
/// `CudaContext::wrap_borrowed_stream`; see the module documentation of [`crate::cuda`]).
/// `known` is the number of known (not unknown) targets when the caller knows it: with
/// `Reduction::Mean` and `known = None` a count pass over the targets runs first.
///
/// Invalid targets are reported through the workspace: call [`Workspace::take_error`] (it
/// synchronizes) before trusting the results; its index is the first bad flat element.
///
/// # Safety
/// Every non-zero address in `args` must point to device memory of this stream's context
/// that is valid for the whole launch, with at least `N x C` elements of the stated type
/// (one f32 for a reduced `loss`), and nothing else may write to those buffers until the
/// stream has passed this launch.
///
/// # Errors
/// Invalid parameters, missing buffers, shapes the kernels cannot index, or a failed launch.
pub unsafe fn multi_label_raw(
    stream: &Arc<CudaStream>,
    cfg: &MultiLabel,
    pass: Pass,
    shape: Shape,
    args: &MlDeviceArgs,
    known: Option<u64>,
    ws: &mut Workspace,
) -> Result<()> {
    let plan = plan_multi_label(cfg, pass, shape, args, known, ws.loss_slot_ptr())?;
    let kernels = CudaKernels::for_stream(stream)?;
    // Per-class vectors (uploaded into the workspace when they change).
    let pos_vec = match &cfg.pos_weight {
        Some(PosWeight::PerClass(v)) => Some(v.as_slice()),
        _ => None,
    };
    let (cw_ptr, pw_ptr) = ws.weights(cfg.class_weight.as_deref(), pos_vec)?;
    let ws_ptr = ws.device_ptr();
    let n = plan.n;

    // 1. Count pass for mean (known elements -> ws[COUNT]).
    if let Some(name) = plan.count_kernel {
        let f = kernels.function(plan.unit, name)?;
        let grid = kernels.grid(&f, name, ML_THREADS, 0, n.div_ceil(ML_THREADS as u64))?;
        let mut b = stream.launch_builder(&f);
        b.arg(&args.targets).arg(&ws_ptr).arg(&n);
        let lc = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (ML_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: argument types and order match `multi_label_count_*` in multi_label.cu; the
        // caller guarantees `targets` holds n elements; the workspace holds MAX_GRID partials
        // and `grid` <= MAX_GRID.
        unsafe { b.launch(lc) }.map_err(|e| driver_err(name, e))?;
    }

    // 2. The main pass.
    let name = &plan.kernel;
    let f = kernels.function(plan.unit, name)?;
    let grid = kernels.grid(&f, name, ML_THREADS, 0, plan.blocks_needed)?;
    let mut b = stream.launch_builder(&f);
    b.arg(&args.logits)
        .arg(&args.targets)
        .arg(&cw_ptr)
        .arg(&pw_ptr)
        .arg(&plan.upstream)
        .arg(&plan.grad)
        .arg(&plan.loss)
        .arg(&ws_ptr)
        .arg(&plan.n)
        .arg(&plan.params)
        .arg(&plan.mode)
        .arg(&plan.loss_scale);
    let lc = LaunchConfig {
        grid_dim: (grid, 1, 1),
        block_dim: (ML_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    log::trace!(
        "cuda: {name} grid {grid} x {ML_THREADS}, mode {:#x}, n {n}",
        plan.mode
    );
    // SAFETY: argument types and order match ML_ENTRY in multi_label.cu (pointers as u64,
    // `n` u64, `MlParams` by value, `mode` u32, `loss_scale` f64); the caller guarantees the
    // buffers (see # Safety); the weight vectors and the workspace are ours and hold C floats
    // each and MAX_GRID partials (`grid` <= MAX_GRID).
    unsafe { b.launch(lc) }.map_err(|e| driver_err(name, e))?;
    Ok(())
}

/// Logits on the device. f16 and bf16 are passed as their bit patterns (`u16`), since this
/// crate does not enable cudarc's `f16` feature.
#[derive(Debug)]
pub enum DeviceLogits<'a> {
    /// f32 logits.
    F32(&'a CudaSlice<f32>),
    /// f16 logits (bits).
    F16(&'a CudaSlice<u16>),
    /// bf16 logits (bits).
    Bf16(&'a CudaSlice<u16>),
}

/// A gradient buffer on the device, in the logits' type.
#[derive(Debug)]
pub enum DeviceGrad<'a> {
    /// f32 gradient.
    F32(&'a mut CudaSlice<f32>),
    /// f16 gradient (bits).
    F16(&'a mut CudaSlice<u16>),
    /// bf16 gradient (bits).
    Bf16(&'a mut CudaSlice<u16>),
}

/// Multi-label targets on the device.
#[derive(Debug)]
pub enum DeviceTargets<'a> {
    /// f32 soft labels, negative = unknown.
    F32(&'a CudaSlice<f32>),
    /// u8 labels, 255 = unknown.
    U8(&'a CudaSlice<u8>),
}

/// The upstream gradient on the device.
#[derive(Debug)]
pub enum DeviceUpstream<'a> {
    /// One number.
    Scalar(f32),
    /// An array shaped like the unreduced loss (`Reduction::None`).
    Array(&'a CudaSlice<f32>),
}

impl DeviceUpstream<'_> {
    /// The upstream as the kernels take it, checking an array's length against the unreduced
    /// loss (`len`); the guard keeps the array's stream ordering until the launch is queued.
    pub(crate) fn checked<'s>(
        &'s self,
        s: &'s CudaStream,
        len: usize,
    ) -> Result<(DevUpstream, Option<SyncOnDrop<'s>>)> {
        match self {
            DeviceUpstream::Scalar(u) => Ok((DevUpstream::Scalar(*u), None)),
            DeviceUpstream::Array(a) => {
                if a.len() != len {
                    return Err(Error::shape(
                        "upstream",
                        format!("[{len}]"),
                        format!("[{}]", a.len()),
                    ));
                }
                let (p, g) = a.device_ptr(s);
                Ok((DevUpstream::Array(p), Some(g)))
            }
        }
    }
}

/// The gradient buffer of a convenience call, checked: present for a backward or fused pass,
/// `n` elements of the logits' dtype. `None` when the pass writes no gradient.
pub(crate) fn checked_grad<'s>(
    grad: &'s mut Option<DeviceGrad<'_>>,
    s: &'s CudaStream,
    pass: Pass,
    n: usize,
    dtype: DType,
) -> Result<Option<(u64, SyncOnDrop<'s>)>> {
    match (grad, pass.wants_grad()) {
        (Some(g), true) => {
            let (p, gd, glen, guard) = g.parts(s);
            if glen != n {
                return Err(Error::shape("grad", format!("[{n}]"), format!("[{glen}]")));
            }
            if gd != dtype {
                return Err(Error::InvalidArgument(format!(
                    "the gradient must have the logits' dtype ({}), got {}",
                    dtype.name(),
                    gd.name()
                )));
            }
            Ok(Some((p, guard)))
        }
        (None, true) => Err(Error::InvalidArgument(format!(
            "a {} pass needs a gradient buffer",
            pass.name()
        ))),
        _ => Ok(None),
    }
}

impl DeviceLogits<'_> {
    pub(crate) fn parts<'s>(&'s self, s: &'s CudaStream) -> (u64, DType, usize, SyncOnDrop<'s>) {
        match self {
            DeviceLogits::F32(v) => {
                let (p, g) = v.device_ptr(s);
                (p, DType::F32, v.len(), g)
            }
            DeviceLogits::F16(v) => {
                let (p, g) = v.device_ptr(s);
                (p, DType::F16, v.len(), g)
            }
            DeviceLogits::Bf16(v) => {
                let (p, g) = v.device_ptr(s);
                (p, DType::Bf16, v.len(), g)
            }
        }
    }
}

impl DeviceGrad<'_> {
    pub(crate) fn parts<'s>(
        &'s mut self,
        s: &'s CudaStream,
    ) -> (u64, DType, usize, SyncOnDrop<'s>) {
        match self {
            DeviceGrad::F32(v) => {
                let len = v.len();
                let (p, g) = v.device_ptr_mut(s);
                (p, DType::F32, len, g)
            }
            DeviceGrad::F16(v) => {
                let len = v.len();
                let (p, g) = v.device_ptr_mut(s);
                (p, DType::F16, len, g)
            }
            DeviceGrad::Bf16(v) => {
                let len = v.len();
                let (p, g) = v.device_ptr_mut(s);
                (p, DType::Bf16, len, g)
            }
        }
    }
}

/// Multi-label inputs on the device (the device counterpart of [`crate::MultiInputs`]).
#[derive(Debug)]
pub struct DeviceMultiInputs<'a> {
    /// `N x C`.
    pub shape: Shape,
    /// `N x C` logits.
    pub logits: DeviceLogits<'a>,
    /// `N x C` targets.
    pub targets: DeviceTargets<'a>,
    /// Upstream gradient (used by backward and fused passes).
    pub upstream: DeviceUpstream<'a>,
}

/// Runs a multi-label pass on cudarc slices, synchronizes, and returns the loss (`None` for a
/// backward pass). Validates lengths, checks the target values on the device and reports the
/// first invalid one as [`Error::InvalidTarget`].
pub fn multi_label(
    stream: &Arc<CudaStream>,
    cfg: &MultiLabel,
    pass: Pass,
    inputs: &DeviceMultiInputs<'_>,
    mut grad: Option<DeviceGrad<'_>>,
    ws: &mut Workspace,
) -> Result<Option<LossValue>> {
    let DeviceMultiInputs {
        shape,
        logits,
        targets,
        upstream,
    } = inputs;
    let shape = *shape;
    let n = shape.elements()?;
    cfg.validate(Some(shape.cols))?;
    let (lp, dtype, llen, _g1) = logits.parts(stream);
    let (tp, kind, tlen, _g2) = match targets {
        DeviceTargets::F32(v) => {
            let (p, g) = v.device_ptr(stream);
            (p, TargetKind::F32, v.len(), g)
        }
        DeviceTargets::U8(v) => {
            let (p, g) = v.device_ptr(stream);
            (p, TargetKind::U8, v.len(), g)
        }
    };
    if llen != n {
        return Err(Error::shape("logits", shape, format!("[{llen}]")));
    }
    if tlen != n {
        return Err(Error::shape("targets", shape, format!("[{tlen}]")));
    }
    let (up, _g3) = upstream.checked(stream, n)?;
    let grad_parts = checked_grad(&mut grad, stream, pass, n, dtype)?;
    let none = cfg.reduction == Reduction::None;
    if n == 0 {
        return Ok(pass.wants_loss().then(|| {
            if none {
                LossValue::Array(Vec::new())
            } else {
                LossValue::Scalar(0.0)
            }
        }));
    }
    let mut loss_array: Option<CudaSlice<f32>> = None;
    if none && pass.wants_loss() {
        // SAFETY: every element is written by the kernel before it is read back.
        loss_array = Some(unsafe { stream.alloc::<f32>(n) }.map_err(|e| driver_err("alloc", e))?);
    }
    let loss_ptr = match &loss_array {
        Some(a) => a.device_ptr(stream).0,
        None => 0,
    };
    let args = MlDeviceArgs {
        logits: lp,
        dtype,
        targets: tp,
        target_kind: kind,
        upstream: up,
        grad: grad_parts.as_ref().map_or(0, |(p, _)| *p),
        loss: loss_ptr,
    };
    // SAFETY: every address comes from a live cudarc slice of the checked length on this
    // stream's context, and those slices stay borrowed until after the synchronize below.
    unsafe { multi_label_raw(stream, cfg, pass, shape, &args, None, ws)? };
    let (bad, _, loss_slot) = ws.read_status(stream)?;
    if let Some(i) = bad {
        return Err(invalid_target_on_device(
            stream, targets, i as usize, shape.cols,
        ));
    }
    drop(grad_parts);
    if !pass.wants_loss() {
        return Ok(None);
    }
    match loss_array {
        Some(a) => Ok(Some(LossValue::Array(
            stream
                .clone_dtoh(&a)
                .map_err(|e| driver_err("reading the loss", e))?,
        ))),
        None => Ok(Some(LossValue::Scalar(loss_slot))),
    }
}

/// Builds [`Error::InvalidTarget`] for element `i`, reading its value back from the device.
fn invalid_target_on_device(
    stream: &Arc<CudaStream>,
    targets: &DeviceTargets<'_>,
    i: usize,
    cols: usize,
) -> Error {
    let cols1 = cols.max(1);
    // The index comes from the device: read the element only if it is in range (a stale flag
    // from an unchecked raw launch could point anywhere).
    let unreadable = || "(out of range: a stale flag from an earlier launch?)".to_string();
    let (value, allowed) = match targets {
        DeviceTargets::F32(v) => (
            v.try_slice(i..i + 1).map_or_else(unreadable, |s| {
                stream
                    .clone_dtoh(&s)
                    .map_or_else(|e| format!("{e:?}"), |x| x[0].to_string())
            }),
            "f32 targets must be in [0, 1], or negative for unknown",
        ),
        DeviceTargets::U8(v) => (
            v.try_slice(i..i + 1).map_or_else(unreadable, |s| {
                stream
                    .clone_dtoh(&s)
                    .map_or_else(|e| format!("{e:?}"), |x| x[0].to_string())
            }),
            "u8 targets must be 0, 1, or 255 for unknown",
        ),
    };
    Error::InvalidTarget {
        index: i,
        row: i / cols1,
        col: i % cols1,
        value,
        allowed,
    }
}
