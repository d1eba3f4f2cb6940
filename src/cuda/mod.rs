//! The CUDA backend: hand-written CUDA C kernels (`kernels/*.cu`) compiled by NVRTC at first
//! use for the device's compute capability, launched through cudarc.
//!
//! Nothing CUDA is needed to build: cudarc loads `libcuda` and `libnvrtc` at run time. Every
//! entry point checks that they are present first and returns [`Error::CudaUnavailable`]
//! otherwise; it never panics for lack of CUDA.
//!
//! # Three layers
//! 1. Raw entry points on device addresses ([`multi_label_raw`], [`single_label_raw`]): they
//!    only enqueue work on the stream you give them, for memory owned by someone else.
//! 2. A convenience API on cudarc slices ([`multi_label()`], [`single_label()`]) that checks
//!    lengths, launches, synchronizes and returns the loss.
//! 3. [`CudaBackend`], the crate's [`crate::Backend`] on host slices (upload, launch, read
//!    back), used by the tests, the benchmarks and the `asl` command.
//!
//! # Embedding: PyTorch tensors on PyTorch's stream
//! [`open_context`] retains the device's *primary* context, the one the CUDA runtime (and so
//! PyTorch) uses, so device addresses from `tensor.data_ptr()` are valid in it. Wrap PyTorch's
//! current stream (`torch.cuda.current_stream().cuda_stream`, an integer `cudaStream_t`) so
//! that the kernels are ordered with PyTorch's own work:
//!
//! ```no_run
//! # #[cfg(feature = "cuda")] fn demo(logits_ptr: u64, targets_ptr: u64, grad_ptr: u64,
//! #     stream_handle: u64, rows: usize, cols: usize) -> asymloss::Result<()> {
//! use asymloss::cuda::{self, DevUpstream, MlDeviceArgs, TargetKind, Workspace};
//! use asymloss::{DType, MultiLabel, Pass, Shape};
//! let ctx = cuda::open_context(0)?;
//! // SAFETY: the handle is PyTorch's current stream on device 0 and outlives `stream`.
//! let stream = unsafe { ctx.wrap_borrowed_stream(stream_handle as _) };
//! let mut ws = Workspace::new(&ctx.default_stream())?; // keep it across calls
//! let args = MlDeviceArgs {
//!     logits: logits_ptr, dtype: DType::F16, targets: targets_ptr,
//!     target_kind: TargetKind::U8, upstream: DevUpstream::Scalar(1.0),
//!     grad: grad_ptr, loss: 0,
//! };
//! let cfg = MultiLabel::default();
//! // SAFETY: the tensors are contiguous rows x cols on device 0 and alive until the stream
//! // has run the kernel.
//! unsafe { cuda::multi_label_raw(&stream, &cfg, Pass::Fused, Shape::new(rows, cols),
//!     &args, None, &mut ws)? };
//! let (bad, _count, loss) = ws.read_status(&stream)?; // synchronizes
//! # let _ = (bad, loss); Ok(()) }
//! ```
//!
//! Tensors must be contiguous and row-major; single-label class indices must be i32
//! (`target.int()`). Passing `loss: 0` leaves a reduced loss in the workspace (read it with
//! [`Workspace::read_status`]); pass the address of a one-element f32 tensor instead to keep
//! everything on the device. Calls that share a workspace must be ordered on one stream.
//!
//! # Kernels
//! Entry points are `<loss>_<pass>_<dtype>` (`multi_label_fused_f32`,
//! `single_label_forward_bf16`, ...; multi-label with u8 targets adds `_u8`), f32 math for f32,
//! f16 and bf16 logits. Modules are compiled once per context ([`CudaKernels`]). See the header
//! comments of `kernels/multi_label.cu` and `kernels/single_label.cu` for the decomposition.
//!
//! # Determinism
//! No float atomics: loss partials are combined in a fixed order, and the grid depends only on
//! the device, so the same input on the same device gives bitwise the same loss and gradient.

pub mod compile;
pub mod context;
pub mod multi_label;
pub mod single_label;

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};

pub use compile::{nvrtc_available, KernelFile, Unit};
pub use context::{driver_available, open_context, CudaKernels, Workspace};
pub use multi_label::{
    multi_label, multi_label_raw, plan_multi_label, DevUpstream, DeviceGrad, DeviceLogits,
    DeviceMultiInputs, DeviceTargets, DeviceUpstream, MlDeviceArgs, MlPlan, TargetKind,
};
pub use single_label::{
    plan_single_label, single_label, single_label_raw, DeviceSingleInputs, SlDeviceArgs, SlPlan,
};

use crate::backend::Backend;
use crate::config::{MultiLabel, SingleLabel};
use crate::error::{Error, Result};
use crate::tensor::{
    check_multi, check_single, ClassTargets, GradMut, Logits, LossValue, MultiInputs, MultiTargets,
    Pass, SingleInputs, Upstream,
};
use context::driver_err;

/// Whether this machine can run the CUDA backend, with the reason when it cannot
/// (missing driver or NVRTC, no device). Never panics.
pub fn probe() -> Result<()> {
    open_context(0).map(|_| ())
}

/// The CUDA backend on host slices: uploads the inputs, runs the fused kernels on one device
/// and reads the results back.
#[derive(Debug)]
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: Arc<CudaKernels>,
    ws: Mutex<Workspace>,
}

impl CudaBackend {
    /// Opens CUDA device `ordinal`. Kernels are compiled by NVRTC when first launched (one unit
    /// of three kernels per logits dtype and target type, once per context).
    ///
    /// # Errors
    /// [`Error::CudaUnavailable`] when there is no driver, no NVRTC or no such device.
    pub fn new(ordinal: usize) -> Result<Self> {
        let ctx = open_context(ordinal)?;
        let kernels = CudaKernels::for_context(&ctx)?;
        let stream = ctx.default_stream();
        let ws = Mutex::new(Workspace::new(&stream)?);
        Ok(CudaBackend {
            ctx,
            stream,
            kernels,
            ws,
        })
    }

    /// The stream the backend runs on (the context's default stream).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The compiled kernels and device facts.
    pub fn kernels(&self) -> &Arc<CudaKernels> {
        &self.kernels
    }

    fn workspace(&self) -> Result<std::sync::MutexGuard<'_, Workspace>> {
        self.ws
            .lock()
            .map_err(|_| Error::Cuda("the workspace lock was poisoned".into()))
    }

    fn upload<T: cudarc::driver::DeviceRepr>(&self, v: &[T]) -> Result<CudaSlice<T>> {
        self.stream
            .clone_htod(v)
            .map_err(|e| driver_err("upload", e))
    }

    fn upload_logits(&self, l: &Logits<'_>) -> Result<DeviceBuf> {
        Ok(match l {
            Logits::F32(v) => DeviceBuf::F32(self.upload(v)?),
            Logits::F16(v) => DeviceBuf::F16(self.upload(bytemuck::cast_slice::<_, u16>(v))?),
            Logits::Bf16(v) => DeviceBuf::Bf16(self.upload(bytemuck::cast_slice::<_, u16>(v))?),
        })
    }

    /// A gradient buffer of `n` elements of `dtype`, filled with NaN (all-ones bytes are a NaN
    /// in f32, f16 and bf16) so that an element the kernel does not write cannot go unnoticed.
    fn poisoned_grad(&self, dtype: crate::tensor::DType, n: usize) -> Result<DeviceBuf> {
        use crate::tensor::DType;
        let e = |e| driver_err("alloc", e);
        // SAFETY: every byte is set by the memset below before anything reads the buffer.
        let buf = unsafe {
            match dtype {
                DType::F32 => DeviceBuf::F32(self.stream.alloc::<f32>(n).map_err(e)?),
                DType::F16 => DeviceBuf::F16(self.stream.alloc::<u16>(n).map_err(e)?),
                DType::Bf16 => DeviceBuf::Bf16(self.stream.alloc::<u16>(n).map_err(e)?),
            }
        };
        let ptr = match &buf {
            DeviceBuf::F32(v) => v.device_ptr(&self.stream).0,
            DeviceBuf::F16(v) | DeviceBuf::Bf16(v) => v.device_ptr(&self.stream).0,
        };
        // SAFETY: `ptr` is the start of an allocation of n * dtype.size() bytes on this stream.
        unsafe {
            cudarc::driver::result::memset_d8_async(
                ptr,
                0xff,
                n * dtype.size(),
                self.stream.cu_stream(),
            )
        }
        .map_err(|e| driver_err("memset", e))?;
        Ok(buf)
    }

    fn download_grad(&self, dev: &DeviceBuf, out: GradMut<'_>) -> Result<()> {
        let err = |e| driver_err("reading the gradient", e);
        match (dev, out) {
            (DeviceBuf::F32(d), GradMut::F32(o)) => self.stream.memcpy_dtoh(d, o).map_err(err)?,
            (DeviceBuf::F16(d), GradMut::F16(o)) => self
                .stream
                .memcpy_dtoh(d, bytemuck::cast_slice_mut::<_, u16>(o))
                .map_err(err)?,
            (DeviceBuf::Bf16(d), GradMut::Bf16(o)) => self
                .stream
                .memcpy_dtoh(d, bytemuck::cast_slice_mut::<_, u16>(o))
                .map_err(err)?,
            _ => return Err(Error::InvalidArgument("gradient dtype mismatch".into())),
        }
        self.stream
            .synchronize()
            .map_err(|e| driver_err("synchronize", e))
    }
}

/// A device copy of logits or a gradient.
enum DeviceBuf {
    F32(CudaSlice<f32>),
    F16(CudaSlice<u16>),
    Bf16(CudaSlice<u16>),
}

impl DeviceBuf {
    fn logits(&self) -> DeviceLogits<'_> {
        match self {
            DeviceBuf::F32(v) => DeviceLogits::F32(v),
            DeviceBuf::F16(v) => DeviceLogits::F16(v),
            DeviceBuf::Bf16(v) => DeviceLogits::Bf16(v),
        }
    }

    fn grad(&mut self) -> DeviceGrad<'_> {
        match self {
            DeviceBuf::F32(v) => DeviceGrad::F32(v),
            DeviceBuf::F16(v) => DeviceGrad::F16(v),
            DeviceBuf::Bf16(v) => DeviceGrad::Bf16(v),
        }
    }
}

fn empty_result(pass: Pass, none: bool, rows_for_none: usize) -> Option<LossValue> {
    pass.wants_loss().then(|| {
        if none {
            LossValue::Array(vec![0.0; rows_for_none])
        } else {
            LossValue::Scalar(0.0)
        }
    })
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        format!("cuda ({})", self.kernels.device_name())
    }

    fn multi_label(
        &self,
        cfg: &MultiLabel,
        pass: Pass,
        inputs: &MultiInputs<'_>,
        grad: Option<GradMut<'_>>,
    ) -> Result<Option<LossValue>> {
        let n = check_multi(cfg, pass, inputs, &grad)?;
        if n == 0 {
            return Ok(empty_result(
                pass,
                cfg.reduction == crate::Reduction::None,
                0,
            ));
        }
        let logits = self.upload_logits(&inputs.logits)?;
        let (tf, tu);
        let targets = match inputs.targets {
            MultiTargets::F32(v) => {
                tf = self.upload(v)?;
                DeviceTargets::F32(&tf)
            }
            MultiTargets::U8(v) => {
                tu = self.upload(v)?;
                DeviceTargets::U8(&tu)
            }
        };
        let up_dev;
        let upstream = match inputs.upstream {
            Upstream::Scalar(u) => DeviceUpstream::Scalar(u),
            Upstream::Array(a) => {
                up_dev = self.upload(a)?;
                DeviceUpstream::Array(&up_dev)
            }
        };
        let mut gdev = match pass.wants_grad() {
            true => Some(self.poisoned_grad(inputs.logits.dtype(), n)?),
            false => None,
        };
        let mut ws = self.workspace()?;
        let dev = DeviceMultiInputs {
            shape: inputs.shape,
            logits: logits.logits(),
            targets,
            upstream,
        };
        let r = multi_label::multi_label(
            &self.stream,
            cfg,
            pass,
            &dev,
            gdev.as_mut().map(|g| g.grad()),
            &mut ws,
        );
        let loss = match r {
            Err(Error::InvalidTarget { index, .. }) if index < n => {
                return Err(inputs.targets.invalid(index, inputs.shape.cols))
            }
            other => other?,
        };
        if let (Some(g), Some(out)) = (&gdev, grad) {
            self.download_grad(g, out)?;
        }
        Ok(loss)
    }

    fn single_label(
        &self,
        cfg: &SingleLabel,
        pass: Pass,
        inputs: &SingleInputs<'_>,
        grad: Option<GradMut<'_>>,
    ) -> Result<Option<LossValue>> {
        let n = check_single(cfg, pass, inputs, &grad)?;
        let rows = inputs.shape.rows;
        if n == 0 {
            return Ok(empty_result(
                pass,
                cfg.reduction == crate::Reduction::None,
                rows,
            ));
        }
        // Class indices are validated by check_single (0..C or the ignore index, which
        // SingleLabel::validate keeps within i32), so narrowing to i32 is exact.
        let narrowed: Vec<i32> = match inputs.targets {
            ClassTargets::I32(v) => v.to_vec(),
            t => (0..t.len()).map(|r| t.get(r) as i32).collect(),
        };
        let logits = self.upload_logits(&inputs.logits)?;
        let targets = self.upload(&narrowed)?;
        let up_dev;
        let upstream = match inputs.upstream {
            Upstream::Scalar(u) => DeviceUpstream::Scalar(u),
            Upstream::Array(a) => {
                up_dev = self.upload(a)?;
                DeviceUpstream::Array(&up_dev)
            }
        };
        let mut gdev = match pass.wants_grad() {
            true => Some(self.poisoned_grad(inputs.logits.dtype(), n)?),
            false => None,
        };
        let mut ws = self.workspace()?;
        let dev = DeviceSingleInputs {
            shape: inputs.shape,
            logits: logits.logits(),
            targets: &targets,
            upstream,
        };
        let loss = single_label::single_label(
            &self.stream,
            cfg,
            pass,
            &dev,
            gdev.as_mut().map(|g| g.grad()),
            &mut ws,
        )?;
        if let (Some(g), Some(out)) = (&gdev, grad) {
            self.download_grad(g, out)?;
        }
        Ok(loss)
    }

    fn is_hardware_gpu(&self) -> bool {
        true
    }

    fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| driver_err("synchronize", e))
    }
}
