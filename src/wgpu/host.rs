//! [`WgpuBackend`]: the [`Backend`] on host slices (upload, record, submit, read back), and the
//! readback helpers of [`WgpuContext`].

use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::backend::Backend;
use crate::config::{MultiLabel, Reduction, SingleLabel};
use crate::error::{Error, Result};
use crate::tensor::{
    check_multi, check_single, ClassTargets, DType, GradMut, Logits, LossValue, MultiInputs,
    MultiTargets, Pass, SingleInputs, Upstream,
};
use crate::wgpu::context::{scoped, ContextOptions, WgpuContext};
use crate::wgpu::plan::{words, BufferAt};
use crate::wgpu::{
    ClassType, MultiLabelBuffers, RawUpstream, SingleLabelBuffers, TargetType, WorkspaceHeader,
    WORKSPACE_HEADER_BYTES,
};

/// The wgpu backend on host slices.
///
/// Each call uploads the inputs, records the loss with the raw entry points, submits, waits,
/// and reads the results back. Pipelines are compiled on first use and cached in the
/// [`WgpuContext`], which can be shared with other backends or the caller's own code.
#[derive(Debug, Clone)]
pub struct WgpuBackend {
    ctx: Arc<WgpuContext>,
    poison: bool,
}

impl WgpuBackend {
    /// Picks an adapter (see [`WgpuContext::new`] for `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`)
    /// and creates a device.
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when there is no usable adapter.
    pub fn new() -> Result<Self> {
        Ok(Self::from_context(Arc::new(WgpuContext::new()?)))
    }

    /// [`WgpuBackend::new`] with context options (for example subgroups off).
    pub fn with_options(options: ContextOptions) -> Result<Self> {
        Ok(Self::from_context(Arc::new(WgpuContext::with_options(
            options,
        )?)))
    }

    /// On a caller's device and queue. The adapter is unknown then, so
    /// [`Backend::is_hardware_gpu`] reports false.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        Ok(Self::from_context(Arc::new(WgpuContext::from_device(
            device, queue,
        )?)))
    }

    /// On an existing context.
    pub fn from_context(ctx: Arc<WgpuContext>) -> Self {
        WgpuBackend { ctx, poison: false }
    }

    /// The context (device, queue, pipeline cache).
    pub fn context(&self) -> &Arc<WgpuContext> {
        &self.ctx
    }

    /// Testing aid: fill the device's output buffers with NaN before every launch, so that an
    /// element the kernels fail to write shows up as NaN instead of wgpu's zero-initialised
    /// memory. Off by default (it costs an extra upload).
    pub fn set_poison_outputs(&mut self, on: bool) {
        self.poison = on;
    }

    fn device(&self) -> &wgpu::Device {
        &self.ctx.device
    }

    fn upload(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        self.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE,
            })
    }

    /// An output buffer of `bytes` (rounded up to words), NaN-filled when poisoning.
    fn output(&self, label: &str, bytes: u64, nan_word: u32) -> wgpu::Buffer {
        let size = words(bytes).max(4);
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        if self.poison {
            let fill: Vec<u32> = vec![nan_word; (size / 4) as usize];
            self.device()
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(&fill),
                    usage,
                })
        } else {
            self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        }
    }

    /// The device buffers of a host call besides its inputs: the upstream array (when the pass
    /// reads one), the NaN-poisoned gradient (`grad_bytes`) and unreduced loss (`loss_len` f32)
    /// outputs, and the workspace.
    fn outputs(
        &self,
        pass: Pass,
        upstream: Upstream<'_>,
        grad_bytes: u64,
        dtype: DType,
        loss_len: Option<usize>,
        ws_bytes: u64,
    ) -> Outputs {
        Outputs {
            up: match upstream {
                Upstream::Array(a) if pass.wants_grad() => {
                    Some(self.upload("asl_upstream", bytemuck::cast_slice(a)))
                }
                _ => None,
            },
            grad: pass
                .wants_grad()
                .then(|| self.output("asl_grad", grad_bytes, nan_word(dtype))),
            grad_bytes,
            loss: loss_len.map(|l| self.output("asl_loss", 4 * l as u64, nan_word(DType::F32))),
            loss_bytes: 4 * loss_len.unwrap_or(0) as u64,
            ws: self.output("asl_workspace", ws_bytes, 0),
        }
    }
}

/// Device buffers of one host call (see `WgpuBackend::outputs`).
struct Outputs {
    up: Option<wgpu::Buffer>,
    grad: Option<wgpu::Buffer>,
    grad_bytes: u64,
    loss: Option<wgpu::Buffer>,
    loss_bytes: u64,
    ws: wgpu::Buffer,
}

impl Outputs {
    /// The upstream as the kernels read it: the uploaded array, or the number (1 when the
    /// pass writes no gradient).
    fn upstream(&self, upstream: Upstream<'_>) -> RawUpstream<'_> {
        match (&self.up, upstream) {
            (Some(b), _) => RawUpstream::Array(BufferAt::whole(b)),
            (None, Upstream::Scalar(u)) => RawUpstream::Scalar(u),
            (None, Upstream::Array(_)) => RawUpstream::Scalar(1.0),
        }
    }

    /// What to read back: the workspace header, then the gradient and the loss array if any.
    fn ranges(&self) -> Vec<(&wgpu::Buffer, u64, u64)> {
        let mut r = vec![(&self.ws, 0, WORKSPACE_HEADER_BYTES)];
        if let Some(g) = &self.grad {
            r.push((g, 0, self.grad_bytes));
        }
        if let Some(l) = &self.loss {
            r.push((l, 0, self.loss_bytes));
        }
        r
    }
}

/// A word of NaN in `dtype` (two halves for the 16-bit types).
fn nan_word(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => 0x7fc0_0000,
        DType::F16 => 0x7e00_7e00,
        DType::Bf16 => 0x7fc0_7fc0,
    }
}

fn logits_bytes<'a>(l: &Logits<'a>) -> &'a [u8] {
    match *l {
        Logits::F32(v) => bytemuck::cast_slice(v),
        Logits::F16(v) => bytemuck::cast_slice(v),
        Logits::Bf16(v) => bytemuck::cast_slice(v),
    }
}

/// Copies `bytes` into the caller's gradient slice.
fn write_grad(grad: &mut GradMut<'_>, bytes: &[u8]) {
    let dst: &mut [u8] = match grad {
        GradMut::F32(v) => bytemuck::cast_slice_mut(v),
        GradMut::F16(v) => bytemuck::cast_slice_mut(v),
        GradMut::Bf16(v) => bytemuck::cast_slice_mut(v),
    };
    let n = dst.len();
    dst.copy_from_slice(&bytes[..n]);
}

fn empty_loss(pass: Pass, reduction: Reduction) -> Option<LossValue> {
    pass.wants_loss().then(|| {
        if reduction == Reduction::None {
            LossValue::Array(Vec::new())
        } else {
            LossValue::Scalar(0.0)
        }
    })
}

impl WgpuContext {
    /// Submits `encoder` after appending copies of `(buffer, offset, bytes)` ranges into
    /// staging buffers, waits, and returns the bytes of each range.
    pub(crate) fn submit_and_read(
        &self,
        mut encoder: wgpu::CommandEncoder,
        ranges: &[(&wgpu::Buffer, u64, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let staging: Vec<wgpu::Buffer> = ranges
            .iter()
            .map(|&(src, off, bytes)| {
                let size = words(bytes).max(4);
                let dst = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("asl_readback"),
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                encoder.copy_buffer_to_buffer(src, off, &dst, 0, Some(size));
                dst
            })
            .collect();
        let index = self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, b) in staging.iter().enumerate() {
            let tx = tx.clone();
            b.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                // A failed send only means the receiver gave up; nothing to do then.
                let _ = tx.send((i, r));
            });
        }
        drop(tx);
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| Error::Wgpu(format!("waiting for the device: {e}")))?;
        for _ in 0..staging.len() {
            let (i, r) = rx
                .recv()
                .map_err(|_| Error::Wgpu("a readback was never completed".into()))?;
            r.map_err(|e| Error::Wgpu(format!("mapping readback buffer {i}: {e}")))?;
        }
        let mut out = Vec::with_capacity(staging.len());
        for (b, &(_, _, bytes)) in staging.iter().zip(ranges) {
            {
                let view = b
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| Error::Wgpu(format!("reading back: {e}")))?;
                out.push(view[..bytes as usize].to_vec());
            }
            b.unmap();
        }
        Ok(out)
    }

    /// Copies the workspace header to the host: submits a copy and waits (a convenience for
    /// raw callers; the workspace needs `COPY_SRC` usage as well as `STORAGE`).
    pub fn read_workspace_header(&self, workspace: BufferAt<'_>) -> Result<WorkspaceHeader> {
        if !workspace
            .buffer
            .usage()
            .contains(wgpu::BufferUsages::COPY_SRC)
        {
            return Err(Error::InvalidArgument(
                "read_workspace_header needs a workspace with COPY_SRC usage".into(),
            ));
        }
        let bytes = scoped(&self.device, "reading the workspace header", || {
            let enc = self.device.create_command_encoder(&Default::default());
            self.submit_and_read(
                enc,
                &[(workspace.buffer, workspace.offset, WORKSPACE_HEADER_BYTES)],
            )
        })?;
        WorkspaceHeader::from_bytes(&bytes[0])
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> String {
        match self.ctx.adapter_info() {
            Some(i) => format!("wgpu ({})", i.name),
            None => "wgpu".into(),
        }
    }

    fn multi_label(
        &self,
        cfg: &MultiLabel,
        pass: Pass,
        inp: &MultiInputs<'_>,
        mut grad: Option<GradMut<'_>>,
    ) -> Result<Option<LossValue>> {
        let n = check_multi(cfg, pass, inp, &grad)?;
        let dtype = inp.logits.dtype();
        self.ctx.check_dtype(dtype)?;
        if n == 0 {
            return Ok(empty_loss(pass, cfg.reduction));
        }
        let shape = inp.shape;
        let loss_array = pass.wants_loss() && cfg.reduction == Reduction::None;
        let out = scoped(self.device(), "multi-label launch", || {
            // 1. Upload the inputs; allocate the outputs and the workspace.
            let logits = self.upload("asl_logits", logits_bytes(&inp.logits));
            let (targets, target_type) = match inp.targets {
                MultiTargets::F32(t) => (
                    self.upload("asl_targets", bytemuck::cast_slice(t)),
                    TargetType::F32,
                ),
                MultiTargets::U8(t) => (self.upload("asl_targets", t), TargetType::U8),
            };
            let loss_len = loss_array.then_some(n);
            let ws_bytes = self.ctx.multi_label_workspace_bytes(shape)?;
            let o = self.outputs(
                pass,
                inp.upstream,
                (n * dtype.size()) as u64,
                dtype,
                loss_len,
                ws_bytes,
            );

            // 2. Record the launch.
            let bufs = MultiLabelBuffers {
                logits: BufferAt::whole(&logits),
                logits_dtype: dtype,
                targets: BufferAt::whole(&targets),
                target_type,
                upstream: o.upstream(inp.upstream),
                grad: o.grad.as_ref().map(BufferAt::whole),
                loss: o.loss.as_ref().map(BufferAt::whole),
                workspace: BufferAt::whole(&o.ws),
            };
            let mut enc = self.device().create_command_encoder(&Default::default());
            self.ctx
                .record_multi_label(&mut enc, cfg, pass, shape, &bufs)?;

            // 3. Submit and read back the header, the gradient and the loss array.
            self.ctx.submit_and_read(enc, &o.ranges())
        })?;

        // 4. Invalid targets are an error; otherwise hand out the results.
        let header = WorkspaceHeader::from_bytes(&out[0])?;
        if let Some(i) = header.first_invalid {
            return Err(inp.targets.invalid(i as usize, shape.cols));
        }
        let mut next = 1;
        if let Some(g) = grad.as_mut().filter(|_| pass.wants_grad()) {
            write_grad(g, &out[next]);
            next += 1;
        }
        Ok(pass.wants_loss().then(|| {
            if loss_array {
                LossValue::Array(bytemuck::pod_collect_to_vec(&out[next]))
            } else {
                LossValue::Scalar(header.loss)
            }
        }))
    }

    fn single_label(
        &self,
        cfg: &SingleLabel,
        pass: Pass,
        inp: &SingleInputs<'_>,
        mut grad: Option<GradMut<'_>>,
    ) -> Result<Option<LossValue>> {
        let n = check_single(cfg, pass, inp, &grad)?;
        let dtype = inp.logits.dtype();
        self.ctx.check_dtype(dtype)?;
        let shape = inp.shape;
        if shape.rows == 0 {
            return Ok(empty_loss(pass, cfg.reduction));
        }
        let loss_array = pass.wants_loss() && cfg.reduction == Reduction::None;
        let rows = shape.rows;
        let out = scoped(self.device(), "single-label launch", || {
            // 1. Upload; i64 indices were range-checked by `check_single` and fit i32 (the
            //    ignore index too, by `SingleLabel::validate`), so they are narrowed here.
            let logits = self.upload("asl_logits", logits_bytes(&inp.logits));
            let (classes, class_type) = match inp.targets {
                ClassTargets::I64(t) => {
                    let narrow: Vec<i32> = t.iter().map(|&v| v as i32).collect();
                    (
                        self.upload("asl_classes", bytemuck::cast_slice(&narrow)),
                        ClassType::I32,
                    )
                }
                ClassTargets::I32(t) => (
                    self.upload("asl_classes", bytemuck::cast_slice(t)),
                    ClassType::I32,
                ),
                ClassTargets::U32(t) => (
                    self.upload("asl_classes", bytemuck::cast_slice(t)),
                    ClassType::U32,
                ),
            };
            let loss_len = loss_array.then_some(rows);
            let ws_bytes = self.ctx.single_label_workspace_bytes(shape)?;
            let o = self.outputs(
                pass,
                inp.upstream,
                (n * dtype.size()) as u64,
                dtype,
                loss_len,
                ws_bytes,
            );

            // 2. Record.
            let bufs = SingleLabelBuffers {
                logits: BufferAt::whole(&logits),
                logits_dtype: dtype,
                classes: BufferAt::whole(&classes),
                class_type,
                upstream: o.upstream(inp.upstream),
                grad: o.grad.as_ref().map(BufferAt::whole),
                loss: o.loss.as_ref().map(BufferAt::whole),
                workspace: BufferAt::whole(&o.ws),
            };
            let mut enc = self.device().create_command_encoder(&Default::default());
            self.ctx
                .record_single_label(&mut enc, cfg, pass, shape, &bufs)?;

            // 3. Submit and read back.
            self.ctx.submit_and_read(enc, &o.ranges())
        })?;

        // 4. Results (an out-of-range class was already rejected on the host; the kernel's
        //    check is the raw path's).
        let header = WorkspaceHeader::from_bytes(&out[0])?;
        header.check_single_label(shape, cfg.ignore_index)?;
        let mut next = 1;
        if let Some(g) = grad.as_mut().filter(|_| pass.wants_grad()) {
            if n > 0 {
                write_grad(g, &out[next]);
            }
            next += 1;
        }
        Ok(pass.wants_loss().then(|| {
            if loss_array {
                LossValue::Array(bytemuck::pod_collect_to_vec(&out[next]))
            } else {
                LossValue::Scalar(header.loss)
            }
        }))
    }

    fn is_hardware_gpu(&self) -> bool {
        self.ctx.adapter_info().is_some_and(|i| {
            matches!(
                i.device_type,
                wgpu::DeviceType::DiscreteGpu
                    | wgpu::DeviceType::IntegratedGpu
                    | wgpu::DeviceType::VirtualGpu
            )
        })
    }

    fn synchronize(&self) -> Result<()> {
        self.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Wgpu(format!("waiting for the device: {e}")))
    }
}
