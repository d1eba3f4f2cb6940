//! Single-label launches: the raw entry point on device pointers ([`single_label_raw`]) and the
//! convenience API on cudarc slices ([`single_label`]).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

use super::compile::{KernelFile, Unit};
use super::context::{driver_err, mode, CudaKernels, Workspace};
use super::multi_label::{checked_grad, DevUpstream, DeviceGrad, DeviceLogits, DeviceUpstream};
use crate::config::{Reduction, SingleLabel, SlParams};
use crate::error::{Error, Result};
use crate::tensor::{DType, LossValue, Pass, Shape};

// SAFETY: `SlParams` is #[repr(C)], plain old data (bytemuck::Pod), 48 bytes, and mirrored
// field for field by `struct SlParams` in kernels/asl_math.cuh (static_assert on the size).
unsafe impl DeviceRepr for SlParams {}

/// Threads per block when a block owns a row (`SL_THREADS` in single_label.cu).
pub const SL_THREADS: u32 = 512;
/// Threads per block when a warp owns a row (`SL_WARP_THREADS`): 8 rows per block.
pub const SL_WARP_THREADS: u32 = 256;
/// Rows with at most this many columns take one warp each.
pub const SL_WARP_MAX_COLS: usize = 1024;
/// Rows with at most this many columns are cached in dynamic shared memory (f32), so that the
/// logits are read from global memory once; 48 000 bytes plus the kernel's static shared
/// memory stay under the default 48 KiB limit.
pub const SL_CACHE_MAX_COLS: usize = 12_000;

/// Device buffers of one single-label call, as raw `CUdeviceptr` values (0 = absent).
#[derive(Clone, Copy, Debug)]
pub struct SlDeviceArgs {
    /// Logits, `N x C` (`dtype`).
    pub logits: u64,
    /// Element type of the logits and the gradient.
    pub dtype: DType,
    /// Class indices, `N` x i32 (PyTorch: `target.int()`); the ignore index or `0..C`.
    pub targets: u64,
    /// Upstream gradient (an array has one f32 per row, `Reduction::None` only).
    pub upstream: DevUpstream,
    /// Gradient output (`dtype`); required by backward and fused passes.
    pub grad: u64,
    /// Loss output, f32: one element for a reduced loss, `N` for `Reduction::None` (needed
    /// then). 0 for a reduced loss writes it to the workspace's loss slot.
    pub loss: u64,
}

/// The kernel name for a pass and logits dtype.
pub fn kernel_name(pass: Pass, dtype: DType) -> String {
    format!("single_label_{}_{}", pass.name(), dtype.name())
}

/// Everything a single-label launch decides before it touches the GPU (see
/// [`crate::cuda::multi_label::MlPlan`]).
#[derive(Clone, Debug)]
pub struct SlPlan {
    /// The main kernel (`single_label_<pass>_<dtype>`).
    pub kernel: String,
    /// Whether `single_label_count` runs first (mean with an ignore index, count unknown).
    pub count_first: bool,
    /// The unit both kernels belong to.
    pub unit: Unit,
    /// The parameter block.
    pub params: SlParams,
    /// Mode bits (`ASL_MODE_*`): warp rows, cached rows, count, loss array, upstream array.
    pub mode: u32,
    /// Factor on the summed loss.
    pub loss_scale: f64,
    /// Threads per block.
    pub block: u32,
    /// Dynamic shared memory per block (the row cache).
    pub smem: u32,
    /// Blocks that cover the rows (the launch caps it at the resident grid).
    pub blocks_needed: u64,
    /// The gradient address the kernel gets (0 when the pass writes none).
    pub grad: u64,
    /// The loss address the kernel gets.
    pub loss: u64,
    /// The upstream array address the kernel gets (0 for a scalar).
    pub upstream: u64,
}

/// Validates a single-label call and decides its launch. `loss_slot` is where a reduced loss
/// goes when `args.loss` is 0.
pub fn plan_single_label(
    cfg: &SingleLabel,
    pass: Pass,
    shape: Shape,
    args: &SlDeviceArgs,
    counted: Option<u64>,
    loss_slot: u64,
) -> Result<SlPlan> {
    let n = shape.elements()?;
    cfg.validate()?;
    if u32::try_from(shape.rows).is_err() || i32::try_from(shape.cols).is_err() {
        return Err(Error::Unsupported(format!(
            "the CUDA kernels take at most 2^32 - 1 rows and 2^31 - 1 classes, got {shape}"
        )));
    }
    if shape.cols == 0 && shape.rows > 0 {
        return Err(Error::shape("logits", "at least one class", shape));
    }
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
    if none && pass.wants_loss() && shape.rows > 0 && args.loss == 0 {
        return Err(Error::InvalidArgument(
            "reduction none needs an N-element loss buffer for the forward pass".into(),
        ));
    }

    // 1. Scales.
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
        Reduction::Mean | Reduction::BatchMean => {
            let known = match (cfg.ignore_index, counted) {
                (_, Some(c)) => Some(c),
                (None, None) => Some(shape.rows as u64),
                (Some(_), None) => None,
            };
            match known {
                Some(c) => {
                    let inv = 1.0 / c.max(1) as f64;
                    (up_scalar * inv, inv)
                }
                None => {
                    bits |= mode::COUNT;
                    (up_scalar, 1.0)
                }
            }
        }
    };
    if none && pass.wants_loss() {
        bits |= mode::LOSS_ARRAY;
    }

    // 2. Row decomposition: a warp per short row, a block per longer row (cached in shared
    //    memory up to SL_CACHE_MAX_COLS columns, streamed from global memory beyond).
    let rows = shape.rows as u64;
    let (block, smem, blocks_needed) = if shape.cols <= SL_WARP_MAX_COLS {
        bits |= mode::WARP_ROWS;
        (
            SL_WARP_THREADS,
            0u32,
            rows.div_ceil((SL_WARP_THREADS / 32) as u64),
        )
    } else if shape.cols <= SL_CACHE_MAX_COLS {
        bits |= mode::CACHE_ROW;
        (SL_THREADS, (shape.cols * 4) as u32, rows)
    } else {
        (SL_THREADS, 0u32, rows)
    };
    Ok(SlPlan {
        kernel: kernel_name(pass, args.dtype),
        count_first: bits & mode::COUNT != 0,
        unit: Unit {
            file: KernelFile::SingleLabel,
            dtype: args.dtype,
            u8_targets: false,
        },
        params: SlParams::new(cfg, shape.rows, shape.cols, grad_scale as f32),
        mode: bits,
        loss_scale,
        block,
        smem,
        blocks_needed,
        grad: if pass.wants_grad() { args.grad } else { 0 },
        loss: if args.loss != 0 { args.loss } else { loss_slot },
        upstream: up_ptr,
    })
}

/// Launches a single-label pass on device memory, without synchronizing.
///
/// `counted` is the number of rows whose target is not the ignore index, when the caller
/// knows it; with `Reduction::Mean`, an ignore index and `counted = None`, a count pass over
/// the targets runs first. A class index outside `0..C` (and not the ignore index) is reported
/// through [`Workspace::take_error`] as the first bad row; that row gets loss 0 and gradient 0.
///
/// # Safety
/// Every non-zero address in `args` must point to device memory of this stream's context
/// valid for the whole launch (`N x C` logits and gradient, `N` targets, `N` or 1 loss, `N`
/// upstream), and nothing else may write to those buffers until the stream has passed it.
///
/// # Errors
/// Invalid parameters, missing buffers, shapes the kernels cannot index, or a failed launch.
pub unsafe fn single_label_raw(
    stream: &Arc<CudaStream>,
    cfg: &SingleLabel,
    pass: Pass,
    shape: Shape,
    args: &SlDeviceArgs,
    counted: Option<u64>,
    ws: &mut Workspace,
) -> Result<()> {
    let plan = plan_single_label(cfg, pass, shape, args, counted, ws.loss_slot_ptr())?;
    let kernels = CudaKernels::for_stream(stream)?;
    let ws_ptr = ws.device_ptr();

    // 1. Count pass for mean with an ignore index (rows that count -> ws[COUNT]).
    if plan.count_first {
        let name = "single_label_count";
        let f = kernels.function(plan.unit, name)?;
        let blocks = (shape.rows as u64).div_ceil(SL_THREADS as u64);
        let grid = kernels.grid(&f, name, SL_THREADS, 0, blocks)?;
        let mut b = stream.launch_builder(&f);
        b.arg(&args.targets).arg(&ws_ptr).arg(&plan.params);
        let lc = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (SL_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: argument types and order match `single_label_count`; `targets` holds N i32
        // (caller); the workspace holds MAX_GRID partials and `grid` <= MAX_GRID.
        unsafe { b.launch(lc) }.map_err(|e| driver_err(name, e))?;
    }

    // 2. The rows.
    let name = &plan.kernel;
    let f = kernels.function(plan.unit, name)?;
    let grid = kernels.grid(&f, name, plan.block, plan.smem, plan.blocks_needed)?;
    let mut b = stream.launch_builder(&f);
    b.arg(&args.logits)
        .arg(&args.targets)
        .arg(&plan.upstream)
        .arg(&plan.grad)
        .arg(&plan.loss)
        .arg(&ws_ptr)
        .arg(&plan.params)
        .arg(&plan.mode)
        .arg(&plan.loss_scale);
    let lc = LaunchConfig {
        grid_dim: (grid, 1, 1),
        block_dim: (plan.block, 1, 1),
        shared_mem_bytes: plan.smem,
    };
    log::trace!(
        "cuda: {name} grid {grid} x {}, smem {}, mode {:#x}",
        plan.block,
        plan.smem,
        plan.mode
    );
    // SAFETY: argument types and order match SL_ENTRY in single_label.cu (pointers as u64,
    // `SlParams` by value, `mode` u32, `loss_scale` f64); the caller guarantees the buffers;
    // the dynamic shared memory holds `cols` f32 when the row cache is on; the workspace holds
    // MAX_GRID partials and `grid` <= MAX_GRID.
    unsafe { b.launch(lc) }.map_err(|e| driver_err(name, e))?;
    Ok(())
}

/// Single-label inputs on the device (the device counterpart of [`crate::SingleInputs`]).
#[derive(Debug)]
pub struct DeviceSingleInputs<'a> {
    /// `N x C`.
    pub shape: Shape,
    /// `N x C` logits.
    pub logits: DeviceLogits<'a>,
    /// `N` class indices, i32.
    pub targets: &'a CudaSlice<i32>,
    /// Upstream gradient (used by backward and fused passes).
    pub upstream: DeviceUpstream<'a>,
}

/// Runs a single-label pass on cudarc slices, synchronizes, and returns the loss (`None` for a
/// backward pass). Class indices are i32 (narrow PyTorch's int64 targets on the device, or
/// use [`crate::Backend`] on host slices, which validates and narrows them).
pub fn single_label(
    stream: &Arc<CudaStream>,
    cfg: &SingleLabel,
    pass: Pass,
    inputs: &DeviceSingleInputs<'_>,
    mut grad: Option<DeviceGrad<'_>>,
    ws: &mut Workspace,
) -> Result<Option<LossValue>> {
    let DeviceSingleInputs {
        shape,
        logits,
        targets,
        upstream,
    } = inputs;
    let shape = *shape;
    let n = shape.elements()?;
    cfg.validate()?;
    let (lp, dtype, llen, _g1) = logits.parts(stream);
    if llen != n {
        return Err(Error::shape("logits", shape, format!("[{llen}]")));
    }
    if targets.len() != shape.rows {
        return Err(Error::shape(
            "targets",
            format!("[{}] (one class index per row)", shape.rows),
            format!("[{}]", targets.len()),
        ));
    }
    if shape.cols == 0 && shape.rows > 0 {
        return Err(Error::shape("logits", "at least one class", shape));
    }
    let (tp, _g2) = targets.device_ptr(stream);
    let (up, _g3) = upstream.checked(stream, shape.rows)?;
    let grad_parts = checked_grad(&mut grad, stream, pass, n, dtype)?;
    let none = cfg.reduction == Reduction::None;
    if shape.rows == 0 {
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
        // SAFETY: every row's loss is written by the kernel before it is read back.
        loss_array =
            Some(unsafe { stream.alloc::<f32>(shape.rows) }.map_err(|e| driver_err("alloc", e))?);
    }
    let loss_ptr = match &loss_array {
        Some(a) => a.device_ptr(stream).0,
        None => 0,
    };
    let args = SlDeviceArgs {
        logits: lp,
        dtype,
        targets: tp,
        upstream: up,
        grad: grad_parts.as_ref().map_or(0, |(p, _)| *p),
        loss: loss_ptr,
    };
    // SAFETY: every address comes from a live cudarc slice of the checked length on this
    // stream's context, borrowed until after the synchronize in `read_status`.
    unsafe { single_label_raw(stream, cfg, pass, shape, &args, None, ws)? };
    let (bad, _, loss_slot) = ws.read_status(stream)?;
    if let Some(r) = bad {
        let r = r as usize;
        // Read the index back only if the row is in range (see multi_label.rs).
        let value = targets
            .try_slice(r..r + 1)
            .and_then(|s| stream.clone_dtoh(&s).ok())
            .map_or(i64::MIN, |v| v[0] as i64);
        return Err(Error::ClassOutOfRange {
            row: r,
            value,
            classes: shape.cols,
            ignore: cfg
                .ignore_index
                .map_or(String::new(), |i| format!(", ignore_index: {i}")),
        });
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
