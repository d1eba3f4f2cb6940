//! The single-label loss on device buffers: the raw entry point that records into a caller's
//! command encoder, and its workspace query.

use crate::config::{Reduction, SingleLabel, SlParams};
use crate::error::{Error, Result};
use crate::tensor::{DType, Pass, Shape};
use crate::wgpu::context::{scoped, Spec, WgpuContext};
use crate::wgpu::multi_label::{validate_workspace, ws_binding};
use crate::wgpu::plan::{check_aliasing, check_pass_outputs, chunk_rows, Array, BufferAt, Launch};
use crate::wgpu::shaders::{ClassType, ModuleKind};
use crate::wgpu::{RawUpstream, WORKSPACE_HEADER_BYTES};

/// The device buffers of a single-label launch; see [`BufferAt`] for the offset and size
/// rules.
#[derive(Clone, Copy, Debug)]
pub struct SingleLabelBuffers<'a> {
    /// `N x C` logits of `logits_dtype`.
    pub logits: BufferAt<'a>,
    /// The logits' (and the gradient's) element type.
    pub logits_dtype: DType,
    /// `N` class indices.
    pub classes: BufferAt<'a>,
    /// Their element type.
    pub class_type: ClassType,
    /// The upstream gradient (a number, or `N` f32 for reduction `none`).
    pub upstream: RawUpstream<'a>,
    /// `N x C` gradient in the logits' dtype (backward and fused passes).
    pub grad: Option<BufferAt<'a>>,
    /// `N` f32 row losses (reduction `none` with a forward or fused pass).
    pub loss: Option<BufferAt<'a>>,
    /// Scratch of [`WgpuContext::single_label_workspace_bytes`] bytes, `STORAGE` usage; the
    /// first 32 bytes receive the [`crate::wgpu::WorkspaceHeader`] (reduced loss, first
    /// invalid row, counted rows).
    pub workspace: BufferAt<'a>,
}

impl WgpuContext {
    /// Bytes of workspace a single-label launch of `shape` needs (a 32-byte header plus one
    /// f32 per row).
    pub fn single_label_workspace_bytes(&self, shape: Shape) -> Result<u64> {
        Ok(WORKSPACE_HEADER_BYTES + 4 * shape.rows as u64)
    }

    /// Workgroup size for rows of `cols` classes: 64 invocations for short rows (most of a
    /// 256-wide workgroup would idle), 256 otherwise.
    fn sl_workgroup(cols: u64) -> u32 {
        if cols <= 512 {
            64
        } else {
            256
        }
    }

    /// Records the single-label `pass` over the caller's buffers into `encoder`: one compute
    /// pass with a workspace clear, a count of the rows that count (reduction `mean`), one
    /// dispatch of one workgroup per row for each chunk of rows, and the final fixed-order
    /// reduction. Submits nothing. Out-of-range class indices are flagged in the workspace
    /// header (check it after the work completes).
    ///
    /// # Errors
    /// As [`WgpuContext::record_multi_label`].
    pub fn record_single_label(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        cfg: &SingleLabel,
        pass: Pass,
        shape: Shape,
        bufs: &SingleLabelBuffers<'_>,
    ) -> Result<()> {
        // 1. Arguments.
        cfg.validate()?;
        let n = shape.elements()? as u64;
        if n >= u32::MAX as u64 {
            return Err(Error::Unsupported(format!(
                "{shape} has {n} elements; the kernels index with 32 bits (at most 2^32 - 2)"
            )));
        }
        if shape.cols == 0 && shape.rows > 0 {
            return Err(Error::shape("logits", "at least one class", shape));
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
        let wg = Self::sl_workgroup(cols);
        let chunks = if n == 0 {
            Vec::new()
        } else {
            chunk_rows(rows, (cols * 4).max(bufs.class_type.size()), &self.dev)?
        };

        // 2. The arrays, validated.
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
                name: "classes",
                at: bufs.classes,
                elem_bytes: bufs.class_type.size(),
                per_row: 1,
                writable: false,
            },
        ];
        let idx_up = up_array.map(|at| {
            arrays.push(Array {
                name: "upstream",
                at,
                elem_bytes: 4,
                per_row: 1,
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
                per_row: 1,
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
        let ws_bytes = self.single_label_workspace_bytes(shape)?;
        validate_workspace(&ws, ws_bytes, self)?;
        arrays.push(ws);
        check_aliasing(&arrays)?;

        // 3. Parameters: the gradient scale is the upstream number (1 for an array); mean
        //    multiplies by 1 / (counted rows) on the device.
        let mean = matches!(cfg.reduction, Reduction::Mean | Reduction::BatchMean);
        let grad_scale = match bufs.upstream {
            RawUpstream::Scalar(u) => u,
            RawUpstream::Array(_) => 1.0,
        };
        let params = SlParams::new(cfg, shape.rows, shape.cols, grad_scale);
        let cache = self.row_cache_len() as u64;
        let use_cache = cols <= cache;
        let kind = ModuleKind::SingleLabel(bufs.logits_dtype);
        let module = self.module_key(kind);
        let spec = Spec {
            wg,
            want_loss: pass.wants_loss(),
            want_grad: pass.wants_grad(),
            loss_array,
            up_array: idx_up.is_some(),
            scale_by_count: mean && pass.wants_grad(),
            int_gammas: false,
            class_kind: bufs.class_type.kind(),
            use_cache,
            // Power-of-two buckets from 256: few pipelines, no more workgroup memory than
            // the rows need.
            cache_len: if use_cache {
                cols.next_power_of_two().clamp(256, cache) as u32
            } else {
                1
            },
        };
        let reduce_loss = pass.wants_loss() && !loss_array;
        let p_init = self.pipeline(module, "ws_init", spec)?;
        let p_count = if mean && n > 0 {
            Some(self.pipeline(module, "sl_count", spec)?)
        } else {
            None
        };
        let p_main = self.pipeline(module, "sl_main", spec)?;
        let p_report = self.pipeline(module, "sl_report", spec)?;
        let p_finish = if reduce_loss {
            Some(self.pipeline(module, "ws_finish", spec)?)
        } else {
            None
        };

        // 4. Per-chunk launch blocks and bind groups.
        let params_buf = self.uniform("asl_sl_params", &params);
        let whole = [(0u64, 0u64)];
        let list: &[(u64, u64)] = if chunks.is_empty() { &whole } else { &chunks };
        let bgl = self.bind_group_layout(kind);
        let mut plan = Vec::with_capacity(list.len());
        scoped(&self.device, "binding the single-label buffers", || {
            for &(r0, nr) in list {
                let win = |i: Option<usize>| i.map(|i| arrays[i].window(r0, nr, &self.dev));
                let (wx, wt) = (
                    arrays[0].window(r0, nr, &self.dev),
                    arrays[1].window(r0, nr, &self.dev),
                );
                let (wu, wgr, wl) = (win(idx_up), win(idx_grad), win(idx_loss));
                let count_groups = nr.div_ceil(wg as u64);
                let launch = Launch {
                    rows: nr as u32,
                    row0: r0 as u32,
                    elem0: (r0 * cols) as u32,
                    groups: count_groups as u32,
                    groups_x: self.dev.max_groups,
                    x_shift: wx.shift,
                    t_shift: wt.shift,
                    u_shift: wu.map_or(0, |w| w.shift),
                    g_shift: wgr.map_or(0, |w| w.shift),
                    l_shift: wl.map_or(0, |w| w.shift),
                    group0: r0 as u32,
                    count: rows as u32,
                    mode: if mean { 1 } else { 0 },
                    host_scale: 1.0,
                    _pad: [0; 2],
                };
                let launch_buf = self.uniform("asl_sl_launch", &launch);
                // An empty input only clears the workspace header.
                let input = |i: usize, w| {
                    if n == 0 {
                        self.dummy_read.as_entire_binding()
                    } else {
                        arrays[i].binding(w)
                    }
                };
                let read = |i: Option<usize>, w: Option<_>| match (i, w) {
                    (Some(i), Some(w)) if n > 0 => arrays[i].binding(w),
                    _ => self.dummy_read.as_entire_binding(),
                };
                let write = |i: Option<usize>, w: Option<_>| match (i, w) {
                    (Some(i), Some(w)) if n > 0 => arrays[i].binding(w),
                    _ => self.dummy_write.as_entire_binding(),
                };
                let ws_arr = arrays.last().expect("workspace");
                let entries = [
                    (0, input(0, wx)),
                    (1, input(1, wt)),
                    (2, read(idx_up, wu)),
                    (5, write(idx_grad, wgr)),
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
                    label: Some("asl_single_label"),
                    layout: bgl,
                    entries: &entries,
                });
                plan.push((bg, count_groups as u32, nr as u32));
            }
            Ok(())
        })?;

        // 5. Record: clear the header, count (mean), one workgroup per row, finish.
        let mut cpass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("asl_single_label"),
            timestamp_writes: None,
        });
        cpass.set_pipeline(&p_init);
        cpass.set_bind_group(0, &plan[0].0, &[]);
        cpass.dispatch_workgroups(1, 1, 1);
        if n > 0 {
            if let Some(p) = &p_count {
                cpass.set_pipeline(p);
                for (bg, groups, _) in &plan {
                    let (x, y) = self.dev.grid(*groups)?;
                    cpass.set_bind_group(0, bg, &[]);
                    cpass.dispatch_workgroups(x, y, 1);
                }
            }
            cpass.set_pipeline(&p_main);
            for (bg, _, nrows) in &plan {
                let (x, y) = self.dev.grid(*nrows)?;
                cpass.set_bind_group(0, bg, &[]);
                cpass.dispatch_workgroups(x, y, 1);
            }
            cpass.set_pipeline(&p_report);
            for (bg, _, _) in &plan {
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
