//! Buffer arguments, their validation, row chunking and the per-launch uniform block.
//!
//! A storage binding may not exceed `max_storage_buffer_binding_size` (128 MiB by default) and
//! must start at a multiple of `min_storage_buffer_offset_alignment`. Larger inputs are split
//! into chunks of whole rows; each chunk binds a window of every row-shaped array that starts
//! at the aligned offset at or below the chunk's first element, and passes the distance from
//! there to the first element (the *shift*, in elements) in [`Launch`]. The caller's offsets
//! therefore only need the alignment once, at the start of each array.

use crate::error::{Error, Result};

/// A caller's buffer and the byte offset at which an array starts in it.
///
/// The offset must be a multiple of the device's `min_storage_buffer_offset_alignment`, and
/// the buffer must have `STORAGE` usage and hold the array rounded up to whole 4-byte words
/// (a storage binding is a whole number of words: an f16 array of odd length, or a u8 array
/// whose length is not a multiple of 4, needs the padding bytes).
#[derive(Clone, Copy, Debug)]
pub struct BufferAt<'a> {
    /// The buffer.
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of element 0.
    pub offset: u64,
}

impl<'a> BufferAt<'a> {
    /// The array at byte `offset` of `buffer`.
    pub fn new(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        BufferAt { buffer, offset }
    }

    /// The array at the start of `buffer`.
    pub fn whole(buffer: &'a wgpu::Buffer) -> Self {
        BufferAt { buffer, offset: 0 }
    }
}

/// The launch block of `shaders/workspace.wgsl` (binding 9), one per chunk.
///
/// NOTE: mirrors `struct Launch` in shaders/workspace.wgsl field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Launch {
    pub rows: u32,
    pub row0: u32,
    pub elem0: u32,
    pub groups: u32,
    pub groups_x: u32,
    pub x_shift: u32,
    pub t_shift: u32,
    pub u_shift: u32,
    pub g_shift: u32,
    pub l_shift: u32,
    pub group0: u32,
    pub count: u32,
    pub mode: u32,
    pub host_scale: f32,
    pub _pad: [u32; 2],
}

/// The device limits the planner needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DevLimits {
    pub max_binding: u64,
    pub align: u64,
    pub max_groups: u32,
}

impl DevLimits {
    pub fn of(l: &wgpu::Limits) -> Self {
        DevLimits {
            max_binding: l.max_storage_buffer_binding_size,
            align: u64::from(l.min_storage_buffer_offset_alignment).max(8),
            max_groups: l.max_compute_workgroups_per_dimension.max(1),
        }
    }

    /// The `(x, y)` grid for `groups` workgroups, x at most the per-dimension limit. Kernels
    /// linearise it as `x + y * groups_x` with `groups_x` = the limit.
    pub fn grid(&self, groups: u32) -> Result<(u32, u32)> {
        let gx = self.max_groups;
        let y = groups.div_ceil(gx);
        if y > gx {
            return Err(Error::Unsupported(format!(
                "{groups} workgroups exceed the device's {gx} x {gx} dispatch grid"
            )));
        }
        Ok((groups.min(gx), y.max(1)))
    }
}

/// Rounds up to a whole number of 4-byte words.
pub(crate) fn words(bytes: u64) -> u64 {
    bytes.div_ceil(4) * 4
}

/// One row-shaped array of a launch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Array<'a> {
    pub name: &'static str,
    pub at: BufferAt<'a>,
    /// Bytes per element.
    pub elem_bytes: u64,
    /// Elements per row (`C` for per-element arrays, 1 for per-row arrays).
    pub per_row: u64,
    /// Bound `read_write` (an output or the workspace).
    pub writable: bool,
}

/// A binding window: where a chunk's binding starts, its size, and the shift in elements from
/// the window start to the chunk's first element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub offset: u64,
    pub size: u64,
    pub shift: u32,
}

impl Array<'_> {
    /// Bytes the whole array occupies in its buffer, rounded up to words.
    pub fn bytes(&self, rows: u64) -> u64 {
        words(rows * self.per_row * self.elem_bytes)
    }

    /// Checks usage, offset alignment and size for `rows` rows.
    pub fn validate(&self, rows: u64, lim: &DevLimits) -> Result<()> {
        let usage = self.at.buffer.usage();
        if !usage.contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::InvalidArgument(format!(
                "buffer `{}` needs STORAGE usage (it has {usage:?})",
                self.name
            )));
        }
        if !self.at.offset.is_multiple_of(lim.align) {
            return Err(Error::InvalidArgument(format!(
                "buffer `{}`: offset {} is not a multiple of the device's storage offset \
                 alignment {}",
                self.name, self.at.offset, lim.align
            )));
        }
        let need = self.bytes(rows);
        let have = self.at.buffer.size().saturating_sub(self.at.offset);
        if have < need {
            return Err(Error::InvalidArgument(format!(
                "buffer `{}` is too small: {need} bytes needed from offset {} (whole 4-byte \
                 words), {have} available",
                self.name, self.at.offset
            )));
        }
        Ok(())
    }

    /// The window of rows `r0 .. r0 + nr`.
    pub fn window(&self, r0: u64, nr: u64, lim: &DevLimits) -> Window {
        window_of(
            self.at.offset,
            self.elem_bytes,
            self.per_row,
            r0,
            nr,
            lim.align,
        )
    }

    /// The binding for a window.
    pub fn binding(&self, w: Window) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.at.buffer,
            offset: w.offset,
            size: wgpu::BufferSize::new(w.size),
        })
    }
}

/// The window of rows `r0 .. r0 + nr` of an array at byte `base` with `per_row` elements of
/// `elem_bytes` bytes a row: the binding starts at the `align`-aligned byte at or below the
/// chunk's first element, `shift` elements before it. All arithmetic is in u64 bytes.
pub(crate) fn window_of(
    base: u64,
    elem_bytes: u64,
    per_row: u64,
    r0: u64,
    nr: u64,
    align: u64,
) -> Window {
    let start = base + r0 * per_row * elem_bytes;
    let offset = start / align * align;
    let shift = (start - offset) / elem_bytes;
    let size = words((shift + nr * per_row) * elem_bytes);
    Window {
        offset,
        size,
        shift: shift as u32,
    }
}

/// wgpu forbids one buffer bound both read-only and writable in a dispatch: checks that no
/// input shares a buffer with an output or the workspace.
pub(crate) fn check_aliasing(arrays: &[Array<'_>]) -> Result<()> {
    for r in arrays.iter().filter(|a| !a.writable) {
        for w in arrays.iter().filter(|a| a.writable) {
            if r.at.buffer == w.at.buffer {
                return Err(Error::InvalidArgument(format!(
                    "input `{}` and output `{}` are in the same buffer; wgpu does not allow a \
                     buffer to be read-only and writable storage in one dispatch, so inputs \
                     and outputs (and the workspace) must be in different buffers",
                    r.name, w.name
                )));
            }
        }
    }
    Ok(())
}

/// Splits `rows` rows of at most `row_bytes` bytes (per array) into chunks whose windows fit
/// one storage binding. Returns `(first row, rows)` pairs.
pub(crate) fn chunk_rows(rows: u64, row_bytes: u64, lim: &DevLimits) -> Result<Vec<(u64, u64)>> {
    // A window may start up to `align - 1` bytes early and end up to 3 bytes late.
    let budget = lim.max_binding.saturating_sub(lim.align + 4);
    let per = budget / row_bytes.max(1);
    if per == 0 {
        return Err(Error::Unsupported(format!(
            "one row takes {row_bytes} bytes, more than a storage binding of this device holds \
             ({} bytes)",
            lim.max_binding
        )));
    }
    let mut out = Vec::new();
    let mut r0 = 0;
    while r0 < rows {
        let nr = per.min(rows - r0);
        out.push((r0, nr));
        r0 += nr;
    }
    Ok(out)
}

/// What every raw entry point checks about the outputs a pass needs: a gradient buffer for a
/// backward or fused pass, a loss buffer for an unreduced forward or fused pass, and an
/// upstream array only with reduction `none`. Returns whether the loss is an array, and the
/// upstream array the kernels read (none when the pass writes no gradient).
pub(crate) fn check_pass_outputs(
    pass: crate::tensor::Pass,
    reduction: crate::config::Reduction,
    has_grad: bool,
    has_loss: bool,
    upstream: super::RawUpstream<'_>,
) -> Result<(bool, Option<BufferAt<'_>>)> {
    use crate::config::Reduction;
    let loss_array = pass.wants_loss() && reduction == Reduction::None;
    if pass.wants_grad() && !has_grad {
        return Err(Error::InvalidArgument(format!(
            "a {} pass needs `grad`",
            pass.name()
        )));
    }
    if loss_array && !has_loss {
        return Err(Error::InvalidArgument(
            "reduction none with a forward or fused pass needs a `loss` buffer".into(),
        ));
    }
    let up_array = match upstream {
        super::RawUpstream::Array(_) if reduction != Reduction::None => {
            return Err(Error::InvalidArgument(
                "an upstream array needs reduction none".into(),
            ))
        }
        super::RawUpstream::Array(a) => pass.wants_grad().then_some(a),
        super::RawUpstream::Scalar(_) => None,
    };
    Ok((loss_array, up_array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once_and_fit() {
        let lim = DevLimits {
            max_binding: 1 << 20,
            align: 256,
            max_groups: 65535,
        };
        for rows in [1u64, 7, 1000, 4096] {
            for row_bytes in [4u64, 80 * 4, 9605 * 4, 100_000 * 4] {
                let c = chunk_rows(rows, row_bytes, &lim).unwrap();
                let total: u64 = c.iter().map(|x| x.1).sum();
                assert_eq!(total, rows);
                for w in c.windows(2) {
                    assert_eq!(w[0].0 + w[0].1, w[1].0);
                }
                for (_, nr) in c {
                    assert!(nr * row_bytes + lim.align + 4 <= lim.max_binding);
                }
            }
        }
        assert!(chunk_rows(1, 1 << 20, &lim).is_err());
    }

    #[test]
    fn launch_block_is_sixteen_words() {
        // shaders/workspace.wgsl `struct Launch`; tests/shader_validation.rs checks that side.
        assert_eq!(std::mem::size_of::<Launch>(), 64);
    }

    #[test]
    fn grid_wraps_at_the_limit() {
        let lim = DevLimits {
            max_binding: 1 << 27,
            align: 256,
            max_groups: 65535,
        };
        assert_eq!(lim.grid(1).unwrap(), (1, 1));
        assert_eq!(lim.grid(65535).unwrap(), (65535, 1));
        assert_eq!(lim.grid(65536).unwrap(), (65535, 2));
    }

    /// Scale, by construction: chunks and windows of shapes past 2^31 and 2^32 elements, with
    /// the default 128 MiB binding and a 2 GiB one, for every array layout the kernels bind
    /// (f32/f16 per element, u8 targets, per-row classes), at aligned and shifted bases. No
    /// buffer is allocated: the planner's u64 byte arithmetic is checked against exact
    /// integer bounds, and the u32 values the kernels get (`shift`, `rows`, `elem0`) fit.
    #[test]
    fn chunks_and_windows_past_two_to_the_31_elements() {
        for max_binding in [128u64 << 20, 2u64 << 30] {
            let lim = DevLimits {
                max_binding,
                align: 256,
                max_groups: 65535,
            };
            for (rows, cols) in [
                (21_475u64, 100_000u64),
                (65_535, 65_536),
                (3_000_000, 1_000),
            ] {
                let n = rows * cols;
                assert!(n > 1 << 31);
                let chunks = chunk_rows(rows, cols * 4, &lim).unwrap();
                assert_eq!(chunks.iter().map(|c| c.1).sum::<u64>(), rows);
                let mut next = 0;
                for &(r0, nr) in &chunks {
                    assert_eq!(r0, next);
                    next = r0 + nr;
                    // The launch block's u32 fields, valid while N x C < 2^32.
                    assert!(u32::try_from(nr).is_ok() && u32::try_from(r0).is_ok());
                    if n < u32::MAX as u64 {
                        assert!(u32::try_from(r0 * cols).is_ok());
                    }
                    // (elem_bytes, per_row): logits/grad f32, f16, u8 targets, i64 classes.
                    for (eb, per_row) in [(4u64, cols), (2, cols), (1, cols), (8, 1)] {
                        for base in [0u64, 256, 1 << 20] {
                            let w = window_of(base, eb, per_row, r0, nr, lim.align);
                            let start = base + r0 * per_row * eb;
                            let end = start + nr * per_row * eb;
                            assert_eq!(w.offset % lim.align, 0);
                            assert!(w.offset <= start && start - w.offset < lim.align);
                            assert_eq!(w.offset + u64::from(w.shift) * eb, start);
                            assert!(w.offset + w.size >= end && w.size.is_multiple_of(4));
                            assert!(w.offset + w.size <= words(end).max(w.offset + 4));
                            assert!(w.size <= lim.max_binding, "{rows}x{cols} {eb} {w:?}");
                        }
                    }
                }
            }
        }
    }
}
