//! The multi-label loss on device buffers: the raw entry point that records into a caller's
//! command encoder, and its workspace query.

use crate::config::{MlParams, MultiLabel, PosWeight, Reduction};
use crate::error::{Error, Result};
use crate::tensor::{DType, Pass, Shape};
use crate::wgpu::context::{scoped, Spec, WgpuContext};
use crate::wgpu::plan::{check_aliasing, check_pass_outputs, chunk_rows, Array, BufferAt, Launch};
use crate::wgpu::shaders::{ModuleKind, TargetType};
use crate::wgpu::{RawUpstream, WORKSPACE_HEADER_BYTES};

/// Workgroup size and elements per invocation of `ml_main` (the `WG` and `ITEMS` overrides).
const WG: u32 = 256;
const ITEMS: u64 = 16;
const PER_GROUP: u64 = WG as u64 * ITEMS;

/// The device buffers of a multi-label launch. Every array is dense and row-major; see
/// [`BufferAt`] for the offset and size rules.
#[derive(Clone, Copy, Debug)]
pub struct MultiLabelBuffers<'a> {
    /// `N x C` logits of `logits_dtype` (f16 needs `SHADER_F16`; bf16 is read as packed words).
    pub logits: BufferAt<'a>,
    /// The logits' (and the gradient's) element type.
    pub logits_dtype: DType,
    /// `N x C` targets.
    pub targets: BufferAt<'a>,
    /// Their element type.
    pub target_type: TargetType,
    /// The upstream gradient (read by backward and fused passes).
    pub upstream: RawUpstream<'a>,
    /// `N x C` gradient in the logits' dtype (backward and fused passes).
    pub grad: Option<BufferAt<'a>>,
    /// `N x C` f32 element losses (reduction `none` with a forward or fused pass).
    pub loss: Option<BufferAt<'a>>,
    /// Scratch of [`WgpuContext::multi_label_workspace_bytes`] bytes, `STORAGE` usage. Its
    /// first 32 bytes receive the [`crate::wgpu::WorkspaceHeader`] (reduced loss, first invalid
    /// target, known count).
    pub workspace: BufferAt<'a>,
}

/// Number of partial-loss slots (workgroups) over all chunks.
fn partial_slots(chunks: &[(u64, u64)], cols: u64) -> u64 {
    chunks
        .iter()
        .map(|&(_, nr)| (nr * cols).div_ceil(PER_GROUP))
        .sum()
}

impl WgpuContext {
    /// Bytes of workspace a multi-label launch of `shape` needs (a 32-byte header plus one f32
    /// per workgroup).
    pub fn multi_label_workspace_bytes(&self, shape: Shape) -> Result<u64> {
        let chunks = self.ml_chunks(shape)?;
        Ok(WORKSPACE_HEADER_BYTES + 4 * partial_slots(&chunks, shape.cols as u64))
    }

    fn ml_chunks(&self, shape: Shape) -> Result<Vec<(u64, u64)>> {
        // Every per-element array has at most 4 bytes per element.
        chunk_rows(shape.rows as u64, shape.cols as u64 * 4, &self.dev)
    }

    /// Records the multi-label `pass` over the caller's buffers into `encoder`: one compute
    /// pass with a workspace clear, a known-element count (reduction `mean` only), one fused
    /// dispatch per chunk of rows, and the final fixed-order reduction. Submits nothing.
    ///
    /// After the caller submits and the work completes, the workspace header holds the
    /// reduced loss, the first invalid target (check it: invalid targets are not an error
    /// until it is read) and the known count; read it with
    /// [`crate::wgpu::WorkspaceHeader::from_bytes`] or [`WgpuContext::read_workspace_header`].
    ///
    /// # Errors
    /// Invalid parameters, shapes that disagree with the buffers, buffers without `STORAGE`
    /// usage, misaligned offsets, buffers too small, an input sharing a buffer with an output,
    /// f16 logits on a device without `SHADER_F16`, or a wgpu validation error.
    pub fn record_multi_label(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        cfg: &MultiLabel,
        pass: Pass,
        shape: Shape,
        bufs: &MultiLabelBuffers<'_>,
    ) -> Result<()> {
        // 1. Arguments.
        cfg.validate(Some(shape.cols))?;
        let n = shape.elements()? as u64;
        if n >= u32::MAX as u64 {
            return Err(Error::Unsupported(format!(
                "{shape} has {n} elements; the kernels index with 32 bits (at most 2^32 - 2)"
            )));
        }
        self.check_dtype(bufs.logits_dtype)?;
        let (loss_array, up_array) = check_pass_outputs(
            pass,
            cfg.reduction,
            bufs.grad.is_some(),
            bufs.loss.is_some(),
            bufs.upstream,
        )?;
        let rows = shape.rows as u64;
        let cols = shape.cols as u64;
        let chunks = if n == 0 {
            Vec::new()
        } else {
            self.ml_chunks(shape)?
        };
        let slots = partial_slots(&chunks, cols);

        // 2. The arrays, validated (usage, alignment, size, no read/write sharing).
        let dtype_bytes = bufs.logits_dtype.size() as u64;
        let mut arrays = vec![
            Array {
                name: "logits",
                at: bufs.logits,
                elem_bytes: dtype_bytes,
                per_row: cols,
                writable: false,
            },
            Array {
                name: "targets",
                at: bufs.targets,
                elem_bytes: bufs.target_type.size(),
                per_row: cols,
                writable: false,
            },
        ];
        let idx_up = up_array.map(|at| {
            arrays.push(Array {
                name: "upstream",
                at,
                elem_bytes: 4,
                per_row: cols,
                writable: false,
            });
            arrays.len() - 1
        });
        let idx_grad = bufs.grad.filter(|_| pass.wants_grad()).map(|at| {
            arrays.push(Array {
                name: "grad",
                at,
                elem_bytes: dtype_bytes,
                per_row: cols,
                writable: true,
            });
            arrays.len() - 1
        });
        let idx_loss = bufs.loss.filter(|_| loss_array).map(|at| {
            arrays.push(Array {
                name: "loss",
                at,
                elem_bytes: 4,
                per_row: cols,
                writable: true,
            });
            arrays.len() - 1
        });
        let ws = Array {
            name: "workspace",
            at: bufs.workspace,
            elem_bytes: 4,
            per_row: 0,
            writable: true,
        };
        for a in &arrays {
            a.validate(rows, &self.dev)?;
        }
        let ws_bytes = WORKSPACE_HEADER_BYTES + 4 * slots;
        validate_workspace(&ws, ws_bytes, self)?;
        arrays.push(ws);
        check_aliasing(&arrays)?;

        // 3. Parameters: the gradient scale is upstream x (1, 1/N); mean multiplies by
        //    1 / known on the device, from the count kernel.
        let mean = cfg.reduction == Reduction::Mean;
        let u = match bufs.upstream {
            RawUpstream::Scalar(u) => u as f64,
            RawUpstream::Array(_) => 1.0,
        };
        let grad_scale = match cfg.reduction {
            Reduction::BatchMean => u / rows.max(1) as f64,
            _ => u,
        } as f32;
        let params = MlParams::new(cfg, shape.rows, shape.cols, grad_scale);
        let (mode, host_scale) = match cfg.reduction {
            Reduction::Mean => (1, 1.0),
            Reduction::BatchMean => (0, (1.0 / rows.max(1) as f64) as f32),
            _ => (0, 1.0),
        };
        let kind = ModuleKind::MultiLabel(bufs.logits_dtype, bufs.target_type);
        let module = self.module_key(kind);
        let spec = Spec {
            wg: WG,
            want_loss: pass.wants_loss(),
            want_grad: pass.wants_grad(),
            loss_array,
            up_array: idx_up.is_some(),
            scale_by_count: mean && pass.wants_grad(),
            int_gammas: int_gammas(cfg),
            ..Default::default()
        };
        let reduce_loss = pass.wants_loss() && !loss_array;
        let p_init = self.pipeline(module, "ws_init", spec)?;
        let p_count = if mean && n > 0 {
            Some(self.pipeline(module, "ml_count", spec)?)
        } else {
            None
        };
        let p_main = self.pipeline(module, "ml_main", spec)?;
        let p_report = self.pipeline(module, "ml_report", spec)?;
        let p_finish = if reduce_loss {
            Some(self.pipeline(module, "ws_finish", spec)?)
        } else {
            None
        };

        // 4. Per-chunk launch blocks and bind groups (chunk 0's also serves init and finish).
        let class_w = cfg
            .class_weight
            .as_ref()
            .map(|w| self.storage_f32("asl_class_weight", w));
        let pos_w = match &cfg.pos_weight {
            Some(PosWeight::PerClass(w)) => Some(self.storage_f32("asl_pos_weight", w)),
            _ => None,
        };
        let params_buf = self.uniform("asl_ml_params", &params);
        let mut plan = Vec::with_capacity(chunks.len().max(1));
        let mut group0 = 0u64;
        let whole = [(0u64, 0u64)];
        let list: &[(u64, u64)] = if chunks.is_empty() { &whole } else { &chunks };
        let bgl = self.bind_group_layout(kind);
        scoped(&self.device, "binding the multi-label buffers", || {
            for &(r0, nr) in list {
                let groups = (nr * cols).div_ceil(PER_GROUP);
                let win = |i: Option<usize>| i.map(|i| arrays[i].window(r0, nr, &self.dev));
                let (wx, wt) = (
                    arrays[0].window(r0, nr, &self.dev),
                    arrays[1].window(r0, nr, &self.dev),
                );
                let (wu, wg, wl) = (win(idx_up), win(idx_grad), win(idx_loss));
                let launch = Launch {
                    rows: nr as u32,
                    row0: r0 as u32,
                    elem0: (r0 * cols) as u32,
                    groups: groups as u32,
                    groups_x: self.dev.max_groups,
                    x_shift: wx.shift,
                    t_shift: wt.shift,
                    u_shift: wu.map_or(0, |w| w.shift),
                    g_shift: wg.map_or(0, |w| w.shift),
                    l_shift: wl.map_or(0, |w| w.shift),
                    group0: group0 as u32,
                    count: slots as u32,
                    mode,
                    host_scale,
                    _pad: [0; 2],
                };
                group0 += groups;
                let launch_buf = self.uniform("asl_ml_launch", &launch);
                let read = |i: Option<usize>, w: Option<_>| match (i, w) {
                    (Some(i), Some(w)) if n > 0 => arrays[i].binding(w),
                    _ => self.dummy_read.as_entire_binding(),
                };
                let write = |i: Option<usize>, w: Option<_>| match (i, w) {
                    (Some(i), Some(w)) if n > 0 => arrays[i].binding(w),
                    _ => self.dummy_write.as_entire_binding(),
                };
                let ws_arr = arrays.last().expect("workspace");
                // An empty input (N = 0 or C = 0) only clears the workspace header.
                let input = |i: usize, w| {
                    if n == 0 {
                        self.dummy_read.as_entire_binding()
                    } else {
                        arrays[i].binding(w)
                    }
                };
                let entries = [
                    (0, input(0, wx)),
                    (1, input(1, wt)),
                    (2, read(idx_up, wu)),
                    (
                        3,
                        class_w
                            .as_ref()
                            .unwrap_or(&self.dummy_read)
                            .as_entire_binding(),
                    ),
                    (
                        4,
                        pos_w
                            .as_ref()
                            .unwrap_or(&self.dummy_read)
                            .as_entire_binding(),
                    ),
                    (5, write(idx_grad, wg)),
                    (6, write(idx_loss, wl)),
                    (7, ws_binding(ws_arr, ws_bytes)),
                    (8, params_buf.as_entire_binding()),
                    (9, launch_buf.as_entire_binding()),
                ];
                let entries: Vec<wgpu::BindGroupEntry<'_>> = entries
                    .into_iter()
                    .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource })
                    .collect();
                let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("asl_multi_label"),
                    layout: bgl,
                    entries: &entries,
                });
                plan.push((bg, groups as u32));
            }
            Ok(())
        })?;

        // 5. Record: clear the header, count (mean), one fused dispatch per chunk, finish.
        let mut cpass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("asl_multi_label"),
            timestamp_writes: None,
        });
        cpass.set_pipeline(&p_init);
        cpass.set_bind_group(0, &plan[0].0, &[]);
        cpass.dispatch_workgroups(1, 1, 1);
        if n > 0 {
            if let Some(p) = &p_count {
                cpass.set_pipeline(p);
                for (bg, groups) in &plan {
                    let (x, y) = self.dev.grid(*groups)?;
                    cpass.set_bind_group(0, bg, &[]);
                    cpass.dispatch_workgroups(x, y, 1);
                }
            }
            cpass.set_pipeline(&p_main);
            for (bg, groups) in &plan {
                let (x, y) = self.dev.grid(*groups)?;
                cpass.set_bind_group(0, bg, &[]);
                cpass.dispatch_workgroups(x, y, 1);
            }
            cpass.set_pipeline(&p_report);
            for (bg, _) in &plan {
                cpass.set_bind_group(0, bg, &[]);
                cpass.dispatch_workgroups(1, 1, 1);
            }
            if let Some(p) = &p_finish {
                cpass.set_pipeline(p);
                cpass.set_bind_group(0, &plan[0].0, &[]);
                cpass.dispatch_workgroups(1, 1, 1);
            }
        }
        Ok(())
    }
}

/// True when both gammas are integers in 0..16, so that hard targets can take the
/// multiplicative fast case (`ml_element_hard` in asl_common.wgsl, `math::ml_element_hard`).
fn int_gammas(cfg: &MultiLabel) -> bool {
    let int = |g: f64| g.fract() == 0.0 && (0.0..16.0).contains(&g);
    int(cfg.gamma_pos) && int(cfg.gamma_neg)
}

/// The workspace must hold `bytes` from its (aligned) offset and fit one binding.
pub(crate) fn validate_workspace(ws: &Array<'_>, bytes: u64, ctx: &WgpuContext) -> Result<()> {
    ws.validate(0, &ctx.dev)?;
    let have = ws.at.buffer.size().saturating_sub(ws.at.offset);
    if have < bytes {
        return Err(Error::InvalidArgument(format!(
            "the workspace is too small: {bytes} bytes needed from offset {}, {have} available \
             (ask the *_workspace_bytes query)",
            ws.at.offset
        )));
    }
    if bytes > ctx.dev.max_binding {
        return Err(Error::Unsupported(format!(
            "the workspace ({bytes} bytes) exceeds one storage binding ({} bytes)",
            ctx.dev.max_binding
        )));
    }
    Ok(())
}

/// The binding of the whole workspace.
pub(crate) fn ws_binding<'a>(ws: &Array<'a>, bytes: u64) -> wgpu::BindingResource<'a> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: ws.at.buffer,
        offset: ws.at.offset,
        size: wgpu::BufferSize::new(bytes),
    })
}
