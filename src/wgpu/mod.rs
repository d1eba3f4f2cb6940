//! The wgpu backend: hand-written WGSL kernels (`shaders/`) for Vulkan, Metal, DX12 and
//! software adapters such as Mesa's lavapipe.
//!
//! Three layers:
//! 1. **Raw entry points** for embedding in another wgpu program:
//!    [`WgpuContext::from_device`] wraps the caller's `Device` and `Queue`;
//!    [`WgpuContext::record_multi_label`] and [`WgpuContext::record_single_label`] record the
//!    loss into the caller's `CommandEncoder` over the caller's buffers at byte offsets
//!    ([`BufferAt`]) and submit nothing; [`WgpuContext::multi_label_workspace_bytes`] and
//!    [`WgpuContext::single_label_workspace_bytes`] size the scratch the caller allocates;
//!    the result header is read with [`WorkspaceHeader`].
//! 2. **[`WgpuBackend`]**, the [`crate::Backend`] on host slices: picks an adapter (honouring
//!    `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`), uploads, records, submits, reads back.
//! 3. The CPU paths ([`crate::cpu`], [`crate::reference`]) with the same semantics.
//!
//! Support:
//!
//! | | f32 logits | f16 logits | bf16 logits |
//! |---|---|---|---|
//! | multi-label, f32 or u8 targets | yes | with `SHADER_F16` | yes (packed words) |
//! | single-label, i32/u32/i64 classes | yes | with `SHADER_F16` | yes (packed words) |
//!
//! f16 without `SHADER_F16` is [`Error::Unsupported`]. bf16 needs no feature: a bf16 is the high
//! half of an f32, so the kernels read packed u32 words and write the gradient's halves with
//! integer atomics (`logits_bf16.wgsl`).
//!
//! Every pass (forward, backward, fused) and reduction (`none`, `sum`, `mean`, `batchmean`)
//! runs; `mean` runs a small count kernel over the targets first (the divisor must be known
//! before any gradient element is written) and keeps the count in the workspace. Invalid
//! targets are flagged by the loss kernel itself and reported as the crate's errors (first
//! bad index). Results are bitwise reproducible run to run on one adapter: fixed partitioning,
//! fixed-order reductions, and integer atomics only (the subgroup and workgroup-memory
//! reductions may differ from each other in the last bits). Inputs larger than one storage
//! binding are split into chunks of rows. The kernels use subgroup operations when the device
//! has `Features::SUBGROUP` (any width; `ASL_WGPU_SUBGROUPS=0` or [`SubgroupMode::Off`] turns
//! them off) and workgroup-memory reductions otherwise.
//!
//! Buffer rules of the raw path: `STORAGE` usage; each array's offset a multiple of
//! `min_storage_buffer_offset_alignment`; room for the array rounded up to whole 4-byte words;
//! inputs (logits, targets, upstream) in buffers other than the outputs (gradient, loss,
//! workspace), because wgpu does not let one buffer be read-only and writable storage in one
//! dispatch. Violations are [`Error::InvalidArgument`], checked before anything is recorded.
//!
//! Embedding, in short:
//!
//! ```no_run
//! # fn demo(device: wgpu::Device, queue: wgpu::Queue, logits: wgpu::Buffer,
//! #         targets: wgpu::Buffer, grad: wgpu::Buffer) -> asymloss::Result<()> {
//! use asymloss::wgpu::{BufferAt, MultiLabelBuffers, RawUpstream, TargetType, WgpuContext};
//! use asymloss::{DType, MultiLabel, Pass, Shape};
//! let ctx = WgpuContext::from_device(device.clone(), queue.clone())?; // keep it: it caches
//! let shape = Shape::new(1024, 80);
//! let ws = device.create_buffer(&wgpu::BufferDescriptor {
//!     label: None,
//!     size: ctx.multi_label_workspace_bytes(shape)?,
//!     usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
//!     mapped_at_creation: false,
//! });
//! let mut encoder = device.create_command_encoder(&Default::default());
//! ctx.record_multi_label(&mut encoder, &MultiLabel::default(), Pass::Fused, shape,
//!     &MultiLabelBuffers {
//!         logits: BufferAt::whole(&logits),
//!         logits_dtype: DType::F32,
//!         targets: BufferAt::whole(&targets),
//!         target_type: TargetType::U8,
//!         upstream: RawUpstream::Scalar(1.0),
//!         grad: Some(BufferAt::whole(&grad)),
//!         loss: None,
//!         workspace: BufferAt::whole(&ws),
//!     })?;
//! queue.submit([encoder.finish()]);
//! let header = ctx.read_workspace_header(BufferAt::whole(&ws))?;
//! header.check_multi_label(shape, TargetType::U8)?; // invalid targets are an error here
//! println!("loss {}", header.loss);
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};

mod context;
mod host;
mod multi_label;
mod plan;
pub mod shaders;
mod single_label;

pub use context::{ContextOptions, SubgroupMode, WgpuContext};
pub use host::WgpuBackend;
pub use multi_label::MultiLabelBuffers;
pub use plan::BufferAt;
pub use shaders::{ClassType, TargetType};
pub use single_label::SingleLabelBuffers;

/// Bytes of the workspace header (eight u32 words: loss, first invalid index, count, the
/// invalid value's low and high words, three reserved).
pub const WORKSPACE_HEADER_BYTES: u64 = 32;

/// The upstream gradient of a raw launch.
#[derive(Clone, Copy, Debug)]
pub enum RawUpstream<'a> {
    /// One number (1 for a plain `loss.backward()`).
    Scalar(f32),
    /// An f32 array shaped like the unreduced loss (`N x C` multi-label, `N` single-label);
    /// reduction `none` only.
    Array(BufferAt<'a>),
}

/// The header of a workspace after a launch (its first [`WORKSPACE_HEADER_BYTES`] bytes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkspaceHeader {
    /// The reduced loss (0 for reduction `none` and for backward-only passes).
    pub loss: f32,
    /// The first invalid target: a flat `N x C` element index (multi-label) or a row
    /// (single-label class index out of range).
    pub first_invalid: Option<u32>,
    /// The raw bits of that target: f32 bits or the u8 byte (multi-label), or the class index
    /// as an i64 (single-label).
    pub invalid_bits: u64,
    /// For reduction `mean`: the known elements (multi-label) or counted rows (single-label).
    pub count: u32,
}

impl WorkspaceHeader {
    /// Parses the header from the workspace's first bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < WORKSPACE_HEADER_BYTES as usize {
            return Err(Error::InvalidArgument(format!(
                "a workspace header is {WORKSPACE_HEADER_BYTES} bytes, got {}",
                bytes.len()
            )));
        }
        let word = |i: usize| {
            u32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ])
        };
        let bad = word(1);
        Ok(WorkspaceHeader {
            loss: f32::from_bits(word(0)),
            first_invalid: (bad != 0).then(|| u32::MAX - bad),
            invalid_bits: u64::from(word(3)) | (u64::from(word(4)) << 32),
            count: word(2),
        })
    }

    /// [`Error::InvalidTarget`] for the first invalid multi-label target, if any.
    pub fn check_multi_label(&self, shape: crate::Shape, targets: TargetType) -> Result<()> {
        let Some(i) = self.first_invalid else {
            return Ok(());
        };
        let cols = shape.cols.max(1);
        let i = i as usize;
        let (value, allowed) = match targets {
            TargetType::F32 => (
                f32::from_bits(self.invalid_bits as u32).to_string(),
                "f32 targets must be in [0, 1], or negative for unknown",
            ),
            TargetType::U8 => (
                (self.invalid_bits & 0xff).to_string(),
                "u8 targets must be 0, 1, or 255 for unknown",
            ),
        };
        Err(Error::InvalidTarget {
            index: i,
            row: i / cols,
            col: i % cols,
            value,
            allowed,
        })
    }

    /// [`Error::ClassOutOfRange`] for the first invalid single-label row, if any.
    pub fn check_single_label(&self, shape: crate::Shape, ignore_index: Option<i64>) -> Result<()> {
        let Some(r) = self.first_invalid else {
            return Ok(());
        };
        Err(Error::ClassOutOfRange {
            row: r as usize,
            value: self.invalid_bits as i64,
            classes: shape.cols,
            ignore: ignore_index.map_or(String::new(), |i| format!(", ignore_index: {i}")),
        })
    }
}
