//! Opening a device without panicking, the per-context kernel cache, and the workspace.
//!
//! [`CudaKernels::for_context`] keeps one kernel cache per context for the life of the
//! process, keyed by the raw `CUcontext`. A unit of kernels (one file, one logits dtype, one
//! target type) is compiled by NVRTC for the device's compute capability the first time one of
//! its kernels is launched and loaded into the context (SASS when NVRTC produced it, else PTX).
//! Compiled images are also cached per architecture, so a second device of the same kind does
//! not recompile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};
use cudarc::nvrtc::Ptx;

use super::compile::{self, CompileOptions, Compiled, Unit};
use crate::error::{Error, Result};

/// Words (u64) of the workspace header; the block partials follow.
/// NOTE: mirrors `ASL_WS_*` in `kernels/asl_device.cuh`.
pub const WS_HEADER_WORDS: usize = 8;
/// Index of the first-invalid-index word (all ones when none).
pub const WS_ERR: usize = 0;
/// Index of the count word (written by the count passes).
pub const WS_COUNT: usize = 1;
/// Index of the finished-blocks counter (reset to 0 by every kernel's last block).
pub const WS_DONE: usize = 2;
/// Index of the word whose low 32 bits receive a reduced loss when no output is given.
pub const WS_LOSS: usize = 3;
/// The most blocks any launch uses (one 64-bit partial each).
pub const MAX_GRID: u32 = 4096;
/// Total words of a workspace.
pub const WS_WORDS: usize = WS_HEADER_WORDS + MAX_GRID as usize;
/// Bytes of a workspace (for embedders who want to know what [`Workspace::new`] allocates).
pub const WS_BYTES: usize = WS_WORDS * 8;

/// Kernel mode bits (the `mode` argument). NOTE: mirrors `ASL_MODE_*` in `asl_device.cuh`.
pub mod mode {
    /// Every buffer is 16-byte aligned: packed loads and stores.
    pub const VEC: u32 = 1;
    /// Divide gradient and loss by the count the count pass left in the workspace.
    pub const COUNT: u32 = 2;
    /// Write the unreduced loss (reduction none); no reduction.
    pub const LOSS_ARRAY: u32 = 4;
    /// The upstream gradient is an array.
    pub const UP_ARRAY: u32 = 8;
    /// Single-label: one warp per row.
    pub const WARP_ROWS: u32 = 16;
    /// Single-label: the row is cached in dynamic shared memory.
    pub const CACHE_ROW: u32 = 32;
}

/// Converts a cudarc driver error.
pub(crate) fn driver_err(what: &str, e: cudarc::driver::DriverError) -> Error {
    Error::Cuda(format!("{what}: {e:?}"))
}

/// Whether the CUDA driver library (`libcuda`) can be loaded. With dynamic loading a missing
/// library would panic inside cudarc on first use, so every entry point checks this first.
pub fn driver_available() -> Result<()> {
    // SAFETY: `is_culib_present` only tries to open the library; nothing is called in it.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::CudaUnavailable(
            "the CUDA driver library (libcuda.so) was not found: no NVIDIA driver here".into(),
        ))
    }
}

/// Retains the primary context of device `ordinal` (the one the CUDA runtime, and so PyTorch,
/// uses), after checking that the driver and NVRTC are present.
///
/// # Errors
/// [`Error::CudaUnavailable`] when a library is missing, there is no such device, or the
/// driver fails to initialise. Never panics (a panic inside cudarc's loader is caught and
/// reported the same way).
pub fn open_context(ordinal: usize) -> Result<Arc<CudaContext>> {
    driver_available()?;
    compile::nvrtc_available()?;
    let attempt = std::panic::catch_unwind(|| -> Result<Arc<CudaContext>> {
        let count = CudaContext::device_count()
            .map_err(|e| Error::CudaUnavailable(format!("cuInit / device count: {e:?}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::CudaUnavailable(format!(
                "CUDA device {ordinal} requested, {count} present"
            )));
        }
        CudaContext::new(ordinal)
            .map_err(|e| Error::CudaUnavailable(format!("opening CUDA device {ordinal}: {e:?}")))
    });
    match attempt {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::CudaUnavailable(format!(
                "the CUDA driver could not be used: {msg}"
            )))
        }
    }
}

/// The kernels of one CUDA context, compiled and loaded unit by unit at first use, with what
/// the launch code needs to know about the device.
#[derive(Debug)]
pub struct CudaKernels {
    ctx: Arc<CudaContext>,
    name: String,
    arch: u32,
    sm_count: u32,
    units: Mutex<HashMap<Unit, Arc<LoadedUnit>>>,
    grid_cache: Mutex<HashMap<(String, u32, u32), u32>>,
}

#[derive(Debug)]
struct LoadedUnit {
    _module: Arc<CudaModule>,
    functions: HashMap<String, CudaFunction>,
}

type Registry = Mutex<Vec<(usize, Arc<CudaKernels>)>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

type ImageCache = Mutex<HashMap<(Unit, u32), Arc<Compiled>>>;

fn image_cache() -> &'static ImageCache {
    static C: OnceLock<ImageCache> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Compiles (or reuses) `unit` for `arch`; compiled images are shared by every context of the
/// same architecture.
fn compiled(unit: Unit, arch: u32) -> Result<Arc<Compiled>> {
    let key = (unit, arch);
    if let Some(c) = image_cache().lock().map_err(|_| poisoned())?.get(&key) {
        return Ok(c.clone());
    }
    let opts = CompileOptions {
        line_info: false,
        extra: unit.defines(),
    };
    let start = std::time::Instant::now();
    let c = Arc::new(compile::compile(unit.file, arch, &opts)?);
    log::debug!(
        "nvrtc: {} {:?} for sm_{arch} in {:.2} s",
        unit.file.file_name(),
        unit.defines(),
        start.elapsed().as_secs_f64()
    );
    if !c.log.is_empty() {
        log::debug!(
            "nvrtc log for {} (sm_{arch}):\n{}",
            unit.file.file_name(),
            c.log
        );
    }
    image_cache()
        .lock()
        .map_err(|_| poisoned())?
        .insert(key, c.clone());
    Ok(c)
}

fn poisoned() -> Error {
    Error::Cuda("a lock of the CUDA kernel cache was poisoned by a panic".into())
}

impl CudaKernels {
    /// The kernel cache of the context `ctx` (created at the first call for that context;
    /// kernels are compiled when first launched).
    pub fn for_context(ctx: &Arc<CudaContext>) -> Result<Arc<CudaKernels>> {
        driver_available()?;
        let key = ctx.cu_ctx() as usize;
        let mut reg = registry().lock().map_err(|_| poisoned())?;
        let found = reg
            .iter()
            .find(|(c, k)| *c == key && k.ctx.ordinal() == ctx.ordinal());
        if let Some((_, k)) = found {
            return Ok(k.clone());
        }
        let k = Arc::new(Self::build(ctx)?);
        reg.push((key, k.clone()));
        Ok(k)
    }

    /// The kernel cache of the context `stream` belongs to.
    pub fn for_stream(stream: &Arc<CudaStream>) -> Result<Arc<CudaKernels>> {
        Self::for_context(stream.context())
    }

    fn build(ctx: &Arc<CudaContext>) -> Result<CudaKernels> {
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| driver_err("compute capability", e))?;
        let arch = (major * 10 + minor) as u32;
        let name = ctx
            .name()
            .unwrap_or_else(|_| format!("CUDA device {}", ctx.ordinal()));
        let sm_count = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| driver_err("multiprocessor count", e))?
            .max(1) as u32;
        log::info!("cuda: {name} (sm_{arch}, {sm_count} SMs)");
        Ok(CudaKernels {
            ctx: ctx.clone(),
            name,
            arch,
            sm_count,
            units: Mutex::new(HashMap::new()),
            grid_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The device's name (`NVIDIA H200`).
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Compute capability as `major * 10 + minor`.
    pub fn arch(&self) -> u32 {
        self.arch
    }

    /// Number of streaming multiprocessors.
    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }

    /// The context these kernels live in.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Compiles and loads `unit` now (otherwise the first launch does it).
    pub fn preload(&self, unit: Unit) -> Result<()> {
        self.unit(unit).map(|_| ())
    }

    fn unit(&self, unit: Unit) -> Result<Arc<LoadedUnit>> {
        let mut units = self.units.lock().map_err(|_| poisoned())?;
        if let Some(u) = units.get(&unit) {
            return Ok(u.clone());
        }
        let module = load(&self.ctx, unit, self.arch)?;
        let mut functions = HashMap::new();
        for entry in unit.entry_points() {
            let f = module
                .load_function(&entry)
                .map_err(|e| driver_err(&format!("loading kernel {entry}"), e))?;
            functions.insert(entry, f);
        }
        let loaded = Arc::new(LoadedUnit {
            _module: module,
            functions,
        });
        units.insert(unit, loaded.clone());
        Ok(loaded)
    }

    /// The kernel `name` of `unit`, compiling and loading the unit at first use.
    pub(crate) fn function(&self, unit: Unit, name: &str) -> Result<CudaFunction> {
        self.unit(unit)?
            .functions
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Cuda(format!("kernel {name} is not in unit {unit:?}")))
    }

    /// The persistent grid for `func` at `block` threads and `smem` bytes of dynamic shared
    /// memory: resident blocks per SM x SMs, capped by the work (`blocks_needed`) and by
    /// [`MAX_GRID`], at least 1. Fixed per device, so partitioning (and rounding) is the same
    /// on every run.
    pub(crate) fn grid(
        &self,
        func: &CudaFunction,
        name: &str,
        block: u32,
        smem: u32,
        blocks_needed: u64,
    ) -> Result<u32> {
        let key = (name.to_string(), block, smem);
        let resident = {
            let mut cache = self.grid_cache.lock().map_err(|_| poisoned())?;
            match cache.get(&key) {
                Some(&r) => r,
                None => {
                    let per_sm = func
                        .occupancy_max_active_blocks_per_multiprocessor(block, smem as usize, None)
                        .map_err(|e| driver_err("occupancy query", e))?
                        .max(1);
                    let r = (per_sm * self.sm_count).min(MAX_GRID);
                    cache.insert(key, r);
                    r
                }
            }
        };
        Ok((blocks_needed.min(resident as u64) as u32).max(1))
    }
}

fn load(ctx: &Arc<CudaContext>, unit: Unit, arch: u32) -> Result<Arc<CudaModule>> {
    let file = unit.file.file_name();
    let c = match compiled(unit, arch) {
        Ok(c) => c,
        Err(e) => {
            // A device newer than this NVRTC: compile PTX for the newest architecture NVRTC
            // knows and let the driver JIT it forward.
            let Some(a) = newest_nvrtc_arch().filter(|&a| a < arch) else {
                return Err(e);
            };
            log::warn!("cuda: NVRTC cannot target sm_{arch} ({e}); using sm_{a} PTX");
            let c = compiled(unit, a)?;
            return ctx
                .load_module(Ptx::from_src(c.ptx.clone()))
                .map_err(|e| driver_err(&format!("loading {file} PTX"), e));
        }
    };
    if let Some(cubin) = &c.cubin {
        match ctx.load_module(Ptx::from_binary(cubin.clone())) {
            Ok(m) => return Ok(m),
            Err(e) => {
                log::warn!(
                    "cuda: the driver refused the sm_{arch} SASS of {file} ({e:?}); using PTX"
                )
            }
        }
    }
    ctx.load_module(Ptx::from_src(c.ptx.clone()))
        .map_err(|e| driver_err(&format!("loading {file} PTX"), e))
}

fn newest_nvrtc_arch() -> Option<u32> {
    use cudarc::nvrtc::sys as nvrtc_sys;
    let mut n = 0i32;
    // SAFETY: NVRTC is present (checked before any compile); valid out-pointer.
    unsafe { nvrtc_sys::nvrtcGetNumSupportedArchs(&mut n) }
        .result()
        .ok()?;
    let mut archs = vec![0i32; n.max(0) as usize];
    // SAFETY: `archs` has the length NVRTC reported.
    unsafe { nvrtc_sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
        .result()
        .ok()?;
    archs.into_iter().max().map(|a| a as u32)
}

/// Scratch memory of the kernels: a status header (first invalid index, count, the finished
/// block counter, a loss slot) and one 64-bit partial per block, plus the per-class weight
/// vectors of the last multi-label call.
///
/// Calls that share a workspace must be ordered (the same stream, or streams the caller
/// orders). The memory is allocated on the stream given to [`Workspace::new`] and freed there on
/// drop, so make that a stream that outlives the workspace (the context's default stream is
/// always safe). The invalid-target flag is sticky: after a launch through the raw API, call
/// [`Workspace::take_error`] (it synchronizes the stream and clears the flag).
#[derive(Debug)]
pub struct Workspace {
    alloc_stream: Arc<CudaStream>,
    buf: CudaSlice<u64>,
    weights: Option<UploadedWeights>,
}

/// The per-class vectors of the last multi-label call, on the device (class weights, then
/// pos weights, in one buffer) with the host copies they came from.
#[derive(Debug)]
struct UploadedWeights {
    class_weight: Option<Vec<f32>>,
    pos_weight: Option<Vec<f32>>,
    dev: CudaSlice<f32>,
}

impl Workspace {
    /// Allocates and initialises a workspace ([`WS_BYTES`] bytes) on `stream`.
    pub fn new(stream: &Arc<CudaStream>) -> Result<Self> {
        driver_available()?;
        let mut header = vec![0u64; WS_WORDS];
        header[WS_ERR] = u64::MAX;
        let buf = stream
            .clone_htod(&header)
            .map_err(|e| driver_err("workspace", e))?;
        stream
            .synchronize()
            .map_err(|e| driver_err("workspace", e))?;
        Ok(Workspace {
            alloc_stream: stream.clone(),
            buf,
            weights: None,
        })
    }

    /// The workspace's device address (the kernels' `ws` argument).
    pub fn device_ptr(&self) -> u64 {
        let (p, _record) = self.buf.device_ptr(&self.alloc_stream);
        p
    }

    /// The address of the loss slot (an f32 in the low half of word [`WS_LOSS`]).
    pub fn loss_slot_ptr(&self) -> u64 {
        self.device_ptr() + (WS_LOSS * 8) as u64
    }

    /// Synchronizes `stream` (the one the kernels ran on) and reads the header:
    /// `(first invalid index or row, count, loss slot)`. Clears the invalid flag when it was set.
    pub fn read_status(&mut self, stream: &Arc<CudaStream>) -> Result<(Option<u64>, u64, f32)> {
        let mut header = [0u64; WS_HEADER_WORDS];
        let base = self.device_ptr();
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| driver_err("binding the context", e))?;
        // SAFETY: the workspace holds at least WS_HEADER_WORDS words at `base`; `header` lives
        // until the synchronize below has completed the copy.
        unsafe {
            cudarc::driver::result::memcpy_dtoh_async(&mut header[..], base, stream.cu_stream())
        }
        .map_err(|e| driver_err("reading the workspace", e))?;
        stream
            .synchronize()
            .map_err(|e| driver_err("synchronize", e))?;
        let err = header[WS_ERR];
        if err != u64::MAX {
            // SAFETY: word 0 of the workspace; `ones` outlives the synchronize that follows.
            let ones = [0xffu8; 8];
            unsafe {
                cudarc::driver::result::memcpy_htod_async(base, &ones[..], stream.cu_stream())
            }
            .map_err(|e| driver_err("clearing the workspace flag", e))?;
            stream
                .synchronize()
                .map_err(|e| driver_err("synchronize", e))?;
        }
        let loss = f32::from_bits(header[WS_LOSS] as u32);
        Ok(((err != u64::MAX).then_some(err), header[WS_COUNT], loss))
    }

    /// Synchronizes `stream` and returns the first invalid flat index (multi-label) or row
    /// (single-label) recorded since the last check, clearing it.
    pub fn take_error(&mut self, stream: &Arc<CudaStream>) -> Result<Option<u64>> {
        Ok(self.read_status(stream)?.0)
    }

    /// Device addresses of the class-weight and pos-weight vectors (0 when absent), uploading
    /// them (on the allocation stream, synchronously) only when they differ from the previous
    /// call's.
    pub(crate) fn weights(
        &mut self,
        class_weight: Option<&[f32]>,
        pos_weight: Option<&[f32]>,
    ) -> Result<(u64, u64)> {
        let total = class_weight.map_or(0, |v| v.len()) + pos_weight.map_or(0, |v| v.len());
        if total == 0 {
            // Nothing to read (no vectors, or C = 0 and so no elements): no zero-byte upload.
            return Ok((0, 0));
        }
        let same = matches!(&self.weights, Some(w)
            if w.class_weight.as_deref() == class_weight && w.pos_weight.as_deref() == pos_weight);
        if !same {
            let mut host = Vec::new();
            host.extend_from_slice(class_weight.unwrap_or(&[]));
            host.extend_from_slice(pos_weight.unwrap_or(&[]));
            let s = &self.alloc_stream;
            let dev = s.clone_htod(&host).map_err(|e| driver_err("weights", e))?;
            s.synchronize().map_err(|e| driver_err("weights", e))?;
            self.weights = Some(UploadedWeights {
                class_weight: class_weight.map(|v| v.to_vec()),
                pos_weight: pos_weight.map(|v| v.to_vec()),
                dev,
            });
        }
        let Some(UploadedWeights { dev, .. }) = self.weights.as_ref() else {
            return Err(Error::Cuda("weights were not uploaded".into()));
        };
        let (base, _record) = dev.device_ptr(&self.alloc_stream);
        let cw = class_weight.map_or(0, |_| base);
        let pw = pos_weight.map_or(0, |_| base + 4 * class_weight.map_or(0, |v| v.len()) as u64);
        Ok((cw, pw))
    }
}
