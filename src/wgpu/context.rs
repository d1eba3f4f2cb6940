//! The device handle: adapter selection, device creation, bind-group layouts, and the cache of
//! shader modules and pipelines (created once per device, keyed by module and specialisation).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::wgpu::plan::DevLimits;
use crate::wgpu::shaders::{ModuleKey, ModuleKind};

/// Whether the kernels use subgroup operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SubgroupMode {
    /// Use them when the device has `Features::SUBGROUP` (the default).
    #[default]
    Auto,
    /// Always use the workgroup-memory reductions (the tested fallback).
    Off,
}

/// Options of a [`WgpuContext`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ContextOptions {
    /// Subgroup operations. The environment variable `ASL_WGPU_SUBGROUPS=0` also turns them
    /// off for contexts created with [`SubgroupMode::Auto`].
    pub subgroups: SubgroupMode,
}

/// The specialisation of one pipeline (its override constants).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Spec {
    pub wg: u32,
    pub want_loss: bool,
    pub want_grad: bool,
    pub loss_array: bool,
    pub up_array: bool,
    pub scale_by_count: bool,
    pub int_gammas: bool,
    pub class_kind: u32,
    pub use_cache: bool,
    pub cache_len: u32,
}

impl Spec {
    /// The override constants of `kind`'s module.
    fn constants(&self, kind: ModuleKind) -> Vec<(&'static str, f64)> {
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        let mut c = vec![
            ("WG", self.wg as f64),
            ("WANT_LOSS", b(self.want_loss)),
            ("WANT_GRAD", b(self.want_grad)),
            ("LOSS_ARRAY", b(self.loss_array)),
            ("UP_ARRAY", b(self.up_array)),
            ("SCALE_BY_COUNT", b(self.scale_by_count)),
        ];
        match kind {
            ModuleKind::MultiLabel(..) => c.push(("INT_GAMMAS", b(self.int_gammas))),
            ModuleKind::SingleLabel(_) => {
                c.push(("CLASS_KIND", self.class_kind as f64));
                c.push(("USE_CACHE", b(self.use_cache)));
                c.push(("CACHE_LEN", self.cache_len.max(1) as f64));
            }
        }
        c
    }

    /// The part of the specialisation an entry point depends on (so that, for example, one
    /// `ws_init` pipeline serves every pass).
    fn for_entry(&self, entry: &str) -> Spec {
        match entry {
            "ws_init" | "ws_finish" | "ml_count" | "ml_report" => Spec {
                wg: self.wg,
                ..Default::default()
            },
            "sl_count" | "sl_report" => Spec {
                wg: self.wg,
                class_kind: self.class_kind,
                ..Default::default()
            },
            _ => *self,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    module: ModuleKey,
    entry: &'static str,
    spec: Spec,
}

/// A wgpu device and queue with everything the loss kernels need on it.
///
/// Create one per device and keep it: shader modules and pipelines are compiled on first use
/// and cached here, keyed by kernel and specialisation. All methods take `&self`; the context
/// is `Send + Sync` and can be shared through an `Arc`.
pub struct WgpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: Option<wgpu::AdapterInfo>,
    f16: bool,
    subgroups: bool,
    pub(crate) limits: wgpu::Limits,
    pub(crate) dev: DevLimits,
    ml_layout: wgpu::BindGroupLayout,
    ml_pipeline_layout: wgpu::PipelineLayout,
    sl_layout: wgpu::BindGroupLayout,
    sl_pipeline_layout: wgpu::PipelineLayout,
    pub(crate) dummy_read: wgpu::Buffer,
    pub(crate) dummy_write: wgpu::Buffer,
    modules: Mutex<HashMap<ModuleKey, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

impl std::fmt::Debug for WgpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuContext")
            .field("adapter", &self.info.as_ref().map(|i| &i.name))
            .field("f16", &self.f16)
            .field("subgroups", &self.subgroups)
            .finish_non_exhaustive()
    }
}

/// Bindings of the multi-label layout: 0 logits, 1 targets, 2 upstream, 3 class weight,
/// 4 pos weight (read-only storage); 5 grad, 6 loss, 7 workspace (read-write); 8 params,
/// 9 launch (uniform). The single-label layout has the same numbers without 3 and 4.
const ML_READ: &[u32] = &[0, 1, 2, 3, 4];
const SL_READ: &[u32] = &[0, 1, 2];
const WRITE: &[u32] = &[5, 6, 7];
const UNIFORM: &[u32] = &[8, 9];

fn layout(device: &wgpu::Device, label: &str, read: &[u32]) -> wgpu::BindGroupLayout {
    let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let mut entries = Vec::new();
    for &b in read {
        entries.push(entry(
            b,
            wgpu::BufferBindingType::Storage { read_only: true },
        ));
    }
    for &b in WRITE {
        entries.push(entry(
            b,
            wgpu::BufferBindingType::Storage { read_only: false },
        ));
    }
    for &b in UNIFORM {
        entries.push(entry(b, wgpu::BufferBindingType::Uniform));
    }
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    })
}

/// Runs `f` inside validation and out-of-memory error scopes and turns a captured error into
/// [`Error::Wgpu`] (instead of the uncaptured-error handler, which panics by default).
pub(crate) fn scoped<T>(
    device: &wgpu::Device,
    what: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let val = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let r = f();
    let val_err = pollster::block_on(val.pop());
    let oom_err = pollster::block_on(oom.pop());
    let r = r?;
    if let Some(e) = val_err.or(oom_err) {
        return Err(Error::Wgpu(format!("{what}: {e}")));
    }
    Ok(r)
}

impl WgpuContext {
    /// Picks an adapter, creates a device with what the kernels can use, and wraps it.
    ///
    /// The adapter: the environment variable `WGPU_BACKEND` restricts the backends
    /// (`vulkan`, `metal`, `dx12`, comma-separated) and `WGPU_ADAPTER_NAME` selects by a
    /// case-insensitive substring of the adapter name (`llvmpipe` for lavapipe). Among the
    /// rest, a discrete GPU is preferred, then integrated, virtual, other, and a CPU adapter
    /// last. The device gets `SHADER_F16` and `SUBGROUP` when the adapter has them, and the
    /// adapter's limits (larger storage bindings mean fewer chunks).
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when no adapter matches or the device cannot be created.
    pub fn new() -> Result<Self> {
        Self::with_options(ContextOptions::default())
    }

    /// [`WgpuContext::new`] with options.
    pub fn with_options(options: ContextOptions) -> Result<Self> {
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let wanted = std::env::var("WGPU_ADAPTER_NAME")
            .ok()
            .map(|s| s.to_lowercase());
        let names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
            })
            .collect();
        let rank = |t: wgpu::DeviceType| match t {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let adapter = adapters
            .into_iter()
            .filter(|a| {
                wanted
                    .as_ref()
                    .is_none_or(|w| a.get_info().name.to_lowercase().contains(w))
            })
            .min_by_key(|a| rank(a.get_info().device_type));
        let Some(adapter) = adapter else {
            let filter = wanted.map_or(String::new(), |w| {
                format!(" matching WGPU_ADAPTER_NAME={w}")
            });
            let found = if names.is_empty() {
                "none".to_string()
            } else {
                names.join("; ")
            };
            return Err(Error::NoAdapter(format!(
                "no adapter{filter} on backends {backends:?} (adapters found: {found})"
            )));
        };
        let info = adapter.get_info();
        let wanted_features = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted_features;
        let desc = wgpu::DeviceDescriptor {
            label: Some("asymloss"),
            required_features: features,
            required_limits: adapter.limits(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::NoAdapter(format!("creating a device on {}: {e}", info.name)))?;
        // Errors are captured by scopes around every call; anything that escapes is logged
        // rather than panicking in the default handler.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            log::error!("uncaptured wgpu error: {e}");
        }));
        log::info!(
            "wgpu adapter: {} ({:?}, {:?}, driver {} {}), features {:?}",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info,
            features
        );
        let mut ctx = Self::from_device_with_options(device, queue, options)?;
        ctx.info = Some(info);
        Ok(ctx)
    }

    /// Wraps a caller's device and queue (embedding). The kernels use `SHADER_F16` and
    /// `SUBGROUP` if the device was created with them, and respect its limits (inputs larger
    /// than one storage binding are processed in chunks of rows).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        Self::from_device_with_options(device, queue, ContextOptions::default())
    }

    /// [`WgpuContext::from_device`] with options.
    pub fn from_device_with_options(
        device: wgpu::Device,
        queue: wgpu::Queue,
        options: ContextOptions,
    ) -> Result<Self> {
        let features = device.features();
        let limits = device.limits();
        if limits.max_compute_invocations_per_workgroup < 256
            || limits.max_compute_workgroup_size_x < 256
        {
            return Err(Error::Unsupported(format!(
                "the kernels need 256 invocations per workgroup; the device allows {}",
                limits.max_compute_invocations_per_workgroup
            )));
        }
        let env_off = std::env::var("ASL_WGPU_SUBGROUPS").is_ok_and(|v| v == "0");
        let subgroups = features.contains(wgpu::Features::SUBGROUP)
            && options.subgroups == SubgroupMode::Auto
            && !env_off;
        let f16 = features.contains(wgpu::Features::SHADER_F16);
        let ml_layout = layout(&device, "asl_multi_label", ML_READ);
        let sl_layout = layout(&device, "asl_single_label", SL_READ);
        let pl = |l: &wgpu::BindGroupLayout, label| {
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(l)],
                immediate_size: 0,
            })
        };
        let ml_pipeline_layout = pl(&ml_layout, "asl_multi_label");
        let sl_pipeline_layout = pl(&sl_layout, "asl_single_label");
        let dummy = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 256,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let dummy_read = dummy("asl_dummy_read");
        let dummy_write = dummy("asl_dummy_write");
        let dev = DevLimits::of(&limits);
        Ok(WgpuContext {
            device,
            queue,
            info: None,
            f16,
            subgroups,
            limits,
            dev,
            ml_layout,
            ml_pipeline_layout,
            sl_layout,
            sl_pipeline_layout,
            dummy_read,
            dummy_write,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter's description, when this context picked the adapter itself.
    pub fn adapter_info(&self) -> Option<&wgpu::AdapterInfo> {
        self.info.as_ref()
    }

    /// True when f16 logits are supported (`SHADER_F16`).
    pub fn supports_f16(&self) -> bool {
        self.f16
    }

    /// True when the kernels use subgroup operations.
    pub fn uses_subgroups(&self) -> bool {
        self.subgroups
    }

    /// Errors unless logits of `dtype` are supported.
    pub(crate) fn check_dtype(&self, dtype: crate::tensor::DType) -> Result<()> {
        if dtype == crate::tensor::DType::F16 && !self.f16 {
            return Err(Error::Unsupported(
                "f16 logits need a device with Features::SHADER_F16, which this one lacks \
                 (convert to f32, or use bf16, which needs no feature)"
                    .into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn bind_group_layout(&self, kind: ModuleKind) -> &wgpu::BindGroupLayout {
        match kind {
            ModuleKind::MultiLabel(..) => &self.ml_layout,
            ModuleKind::SingleLabel(_) => &self.sl_layout,
        }
    }

    /// The module key of `kind` on this device.
    pub(crate) fn module_key(&self, kind: ModuleKind) -> ModuleKey {
        ModuleKey {
            kind,
            subgroups: self.subgroups,
        }
    }

    /// The pipeline of `entry` in `module` with `spec`, compiled on first use.
    pub(crate) fn pipeline(
        &self,
        module: ModuleKey,
        entry: &'static str,
        spec: Spec,
    ) -> Result<wgpu::ComputePipeline> {
        let key = PipelineKey {
            module,
            entry,
            spec: spec.for_entry(entry),
        };
        if let Some(p) = self.pipelines.lock().map_err(poisoned)?.get(&key) {
            return Ok(p.clone());
        }
        let shader = self.module(module)?;
        let label = format!("{}::{entry}", module.label());
        log::trace!("compiling pipeline {label} {:?}", key.spec);
        let constants = key.spec.constants(module.kind);
        let layout = match module.kind {
            ModuleKind::MultiLabel(..) => &self.ml_pipeline_layout,
            ModuleKind::SingleLabel(_) => &self.sl_pipeline_layout,
        };
        let pipeline = scoped(&self.device, &format!("creating pipeline {label}"), || {
            Ok(self
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: Some(layout),
                    module: &shader,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        // Every workgroup variable is written before it is read.
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                }))
        })?;
        self.pipelines
            .lock()
            .map_err(poisoned)?
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(&self, key: ModuleKey) -> Result<wgpu::ShaderModule> {
        if let Some(m) = self.modules.lock().map_err(poisoned)?.get(&key) {
            return Ok(m.clone());
        }
        let label = key.label();
        log::trace!("compiling shader module {label}");
        let source = key.source();
        let module = scoped(&self.device, &format!("compiling shader {label}"), || {
            Ok(self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&label),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                }))
        })?;
        self.modules
            .lock()
            .map_err(poisoned)?
            .insert(key, module.clone());
        Ok(module)
    }

    /// Number of pipelines compiled so far (for tests of the cache).
    pub fn cached_pipelines(&self) -> usize {
        self.pipelines.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// A small uniform buffer holding `data`.
    pub(crate) fn uniform<T: bytemuck::Pod>(&self, label: &str, data: &T) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(data),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// A read-only storage buffer holding `data` (class and positive weights).
    pub(crate) fn storage_f32(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::STORAGE,
            })
    }

    /// Workgroup memory (bytes) the single-label row cache may use: the device's limit minus
    /// the reduction scratch (12 bytes per invocation of a 256-wide workgroup) and a margin.
    pub(crate) fn row_cache_len(&self) -> u32 {
        let avail = self
            .limits
            .max_compute_workgroup_storage_size
            .saturating_sub(256 * 12 + 64);
        // Whole multiples of 256 columns, at most 4096 (16 KiB): longer rows loop over global
        // memory, and a larger cache would only lower occupancy.
        ((avail / 4) / 256 * 256).min(4096)
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> Error {
    Error::Wgpu("a pipeline cache lock was poisoned by a panic in another thread".into())
}
