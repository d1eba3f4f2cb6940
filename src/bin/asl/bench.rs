//! `asl bench`: median time per pass, elements/s and GB/s, against a memory copy measured on the
//! same device in the same run.
//!
//! Bytes a pass moves: the logits and targets it reads, plus the gradient it writes (backward
//! and fused passes); the loss itself (a few bytes per block) is not counted. The copy baseline
//! moves the same number of bytes:
//! - CPU (and the f64 reference): a memcpy, split over the thread pool's threads, of a buffer of
//!   half that size (it reads half and writes half).
//! - wgpu and CUDA: the [`Backend`] trait works on host slices and has no copy primitive, so a
//!   pass through it includes the upload of its inputs and the download of its outputs. The
//!   baseline is that round trip with no kernel: the input bytes uploaded to a device buffer
//!   and the output bytes read back, on the same adapter or device, through wgpu or the CUDA
//!   driver directly. "% of copy" then says how close a pass comes to the transfer bound of
//!   the host-slice API.
//!   TODO: time the kernels alone against a device-to-device copy once the GPU backends expose
//!   device-resident entry points to the command line.
//!
//! "% of copy" is (pass GB/s) / (copy GB/s) x 100, which is (copy time) / (pass time) x 100.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use asymloss::{
    ClassTargets, DType, GradMut, Logits, MultiInputs, MultiLabel, MultiTargets, Pass, Shape,
    SingleInputs, SingleLabel, Upstream,
};
use clap::ValueEnum;
use half::{bf16, f16};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use crate::backends::{self, Choice, Picked};
use crate::eval::fmt_secs;
use crate::fail::{runtime, usage, Failure};

/// `--loss`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    /// Sigmoid ASL with timm's defaults.
    MultiLabel,
    /// Softmax ASL with timm's defaults (i64 class targets).
    SingleLabel,
}

/// `--dtype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    /// float32 logits and gradient.
    F32,
    /// float16 logits and gradient.
    F16,
    /// bfloat16 logits and gradient.
    Bf16,
}

/// `--targets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetsArg {
    /// float32 0/1 targets (4 bytes each).
    F32,
    /// uint8 0/1 targets (1 byte each).
    U8,
}

/// `--pass`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PassArg {
    /// The loss only.
    Forward,
    /// The gradient only.
    Backward,
    /// Loss and gradient from one read of the logits.
    Fused,
}

fn parse_shape(s: &str) -> Result<(usize, usize), String> {
    let (n, c) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected NxC (for example 4096x80), got {s:?}"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("bad row count in {s:?}"))?;
    let c: usize = c
        .trim()
        .parse()
        .map_err(|_| format!("bad class count in {s:?}"))?;
    if n == 0 || c == 0 {
        return Err(format!("both sizes must be positive, got {s:?}"));
    }
    n.checked_mul(c).ok_or_else(|| format!("{s} overflows"))?;
    Ok((n, c))
}

/// Time one pass per shape on one backend, against a memory copy on the same device.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Bytes per pass: logits read + targets read (+ gradient written for backward and fused).
Copy baseline: CPU, a multi-threaded memcpy moving the same bytes; wgpu and CUDA, the same bytes
uploaded and read back with no kernel (the host-slice API's transfer bound).")]
pub struct Args {
    /// Backend.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: Choice,
    /// Loss (timm's default parameters).
    #[arg(long, value_enum, default_value = "multi-label")]
    pub loss: LossArg,
    /// Shapes N x C (repeatable) [default: 4096x80 1024x1000 256x9605 64x100000].
    #[arg(long = "shape", value_name = "NxC", num_args = 1.., value_parser = parse_shape)]
    pub shapes: Vec<(usize, usize)>,
    /// Logits (and gradient) dtype.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DTypeArg,
    /// Multi-label target dtype [default: f32].
    #[arg(long, value_enum)]
    pub targets: Option<TargetsArg>,
    /// Which pass.
    #[arg(long, value_enum, default_value = "fused")]
    pub pass: PassArg,
    /// Minimum timed seconds per shape (and per copy baseline).
    #[arg(long, value_name = "S", default_value_t = 0.5)]
    pub min_time: f64,
    /// Minimum timed runs per shape.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub min_runs: usize,
    /// Print one JSON object instead of a table (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// Generated inputs of one shape.
struct Inputs {
    shape: Shape,
    logits: LogitsBuf,
    targets: TargetsBuf,
}

enum LogitsBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

enum TargetsBuf {
    F32(Vec<f32>),
    U8(Vec<u8>),
    Class(Vec<i64>),
}

impl Inputs {
    /// Seeded logits in [-6, 3) and about four positives per row (or a random class).
    fn generate(rows: usize, cols: usize, dtype: DTypeArg, targets: Option<TargetsArg>) -> Self {
        let mut rng = StdRng::seed_from_u64(0x5eed ^ (rows as u64) << 20 ^ cols as u64);
        let x: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random::<f32>() * 9.0 - 6.0)
            .collect();
        let logits = match dtype {
            DTypeArg::F32 => LogitsBuf::F32(x),
            DTypeArg::F16 => LogitsBuf::F16(x.iter().map(|&v| f16::from_f32(v)).collect()),
            DTypeArg::Bf16 => LogitsBuf::Bf16(x.iter().map(|&v| bf16::from_f32(v)).collect()),
        };
        let p = (4.0 / cols as f64).min(0.5);
        let targets = match targets {
            None => TargetsBuf::Class(
                (0..rows)
                    .map(|_| rng.random_range(0..cols as i64))
                    .collect(),
            ),
            Some(TargetsArg::U8) => {
                TargetsBuf::U8((0..rows * cols).map(|_| rng.random_bool(p) as u8).collect())
            }
            Some(TargetsArg::F32) => TargetsBuf::F32(
                (0..rows * cols)
                    .map(|_| rng.random_bool(p) as u8 as f32)
                    .collect(),
            ),
        };
        Inputs {
            shape: Shape::new(rows, cols),
            logits,
            targets,
        }
    }

    fn logits(&self) -> Logits<'_> {
        match &self.logits {
            LogitsBuf::F32(v) => Logits::F32(v),
            LogitsBuf::F16(v) => Logits::F16(v),
            LogitsBuf::Bf16(v) => Logits::Bf16(v),
        }
    }

    fn target_bytes(&self) -> usize {
        match &self.targets {
            TargetsBuf::F32(v) => v.len() * 4,
            TargetsBuf::U8(v) => v.len(),
            TargetsBuf::Class(v) => v.len() * 8,
        }
    }
}

/// A gradient buffer of the logits' dtype.
enum GradBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

impl GradBuf {
    fn new(dtype: DTypeArg, n: usize) -> Self {
        match dtype {
            DTypeArg::F32 => GradBuf::F32(vec![0.0; n]),
            DTypeArg::F16 => GradBuf::F16(vec![f16::ZERO; n]),
            DTypeArg::Bf16 => GradBuf::Bf16(vec![bf16::ZERO; n]),
        }
    }

    fn as_mut(&mut self) -> GradMut<'_> {
        match self {
            GradBuf::F32(v) => GradMut::F32(v),
            GradBuf::F16(v) => GradMut::F16(v),
            GradBuf::Bf16(v) => GradMut::Bf16(v),
        }
    }
}

/// One call of the pass under test.
fn call(
    b: &Picked,
    loss: LossArg,
    pass: Pass,
    inp: &Inputs,
    grad: &mut Option<GradBuf>,
) -> Result<(), Failure> {
    let g = grad.as_mut().map(GradBuf::as_mut);
    let up = Upstream::Scalar(1.0);
    match (loss, &inp.targets) {
        (LossArg::MultiLabel, t) => {
            let targets = match t {
                TargetsBuf::F32(v) => MultiTargets::F32(v),
                TargetsBuf::U8(v) => MultiTargets::U8(v),
                TargetsBuf::Class(_) => unreachable!("multi-label targets"),
            };
            let i = MultiInputs {
                shape: inp.shape,
                logits: inp.logits(),
                targets,
                upstream: up,
            };
            b.backend.multi_label(&MultiLabel::default(), pass, &i, g)?;
        }
        (LossArg::SingleLabel, TargetsBuf::Class(t)) => {
            let i = SingleInputs {
                shape: inp.shape,
                logits: inp.logits(),
                targets: ClassTargets::I64(t),
                upstream: up,
            };
            b.backend
                .single_label(&SingleLabel::default(), pass, &i, g)?;
        }
        _ => unreachable!("class targets"),
    }
    b.backend.synchronize()?;
    Ok(())
}

/// Runs `f` until `min_time` has passed and `min_runs` runs were made (at most 100 000), and
/// returns the median time and the number of runs.
fn time_median(
    min_time: f64,
    min_runs: usize,
    mut f: impl FnMut() -> Result<(), Failure>,
) -> Result<(f64, usize), Failure> {
    let start = Instant::now();
    let budget = Duration::from_secs_f64(min_time.max(0.0));
    let mut times = Vec::new();
    while (times.len() < min_runs.max(1) || start.elapsed() < budget) && times.len() < 100_000 {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times.len()))
}

/// A copy that moves a given number of bytes on one device.
trait CopyBaseline {
    /// What it does, for the report.
    fn describe(&self) -> String;
    /// One copy; returns when it has finished.
    fn run(&mut self) -> Result<(), Failure>;
}

/// CPU: `bytes / 2` copied from one buffer into another, one chunk per pool thread.
struct CpuCopy {
    src: Vec<u8>,
    dst: Vec<u8>,
    chunk: usize,
}

impl CpuCopy {
    fn new(total_bytes: usize) -> Self {
        let half = (total_bytes / 2).max(1);
        let threads = rayon::current_num_threads().max(1);
        // Chunks of whole cache lines, one per thread (the last one shorter).
        let chunk = half.div_ceil(threads).next_multiple_of(64);
        let src: Vec<u8> = (0..half).map(|i| i as u8).collect();
        CpuCopy {
            src,
            dst: vec![0; half],
            chunk,
        }
    }
}

impl CopyBaseline for CpuCopy {
    fn describe(&self) -> String {
        format!(
            "memcpy of {} into another buffer on {} threads",
            human_bytes(self.src.len()),
            rayon::current_num_threads()
        )
    }

    fn run(&mut self) -> Result<(), Failure> {
        self.dst
            .par_chunks_mut(self.chunk)
            .zip(self.src.par_chunks(self.chunk))
            .for_each(|(d, s)| d.copy_from_slice(s));
        std::hint::black_box(&self.dst);
        Ok(())
    }
}

#[cfg(feature = "wgpu")]
mod wgpu_copy {
    //! The host-to-device-to-host round trip of a host-slice wgpu call, without its kernel.
    use super::*;

    pub struct WgpuCopy {
        device: wgpu::Device,
        queue: wgpu::Queue,
        storage: wgpu::Buffer,
        staging: wgpu::Buffer,
        host_in: Vec<u8>,
        host_out: Vec<u8>,
        adapter: String,
    }

    fn err(e: impl std::fmt::Display) -> Failure {
        runtime(format!("wgpu copy baseline: {e}"))
    }

    impl WgpuCopy {
        /// Buffers for `bytes_in` up and `bytes_out` down on the adapter whose name appears in
        /// `backend_name` (or the default adapter).
        pub fn new(backend_name: &str, bytes_in: usize, bytes_out: usize) -> Result<Self, Failure> {
            let instance = wgpu::Instance::new(
                wgpu::InstanceDescriptor::new_without_display_handle_from_env(),
            );
            let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
            let adapter = match adapters
                .into_iter()
                .find(|a| backend_name.contains(a.get_info().name.as_str()))
            {
                Some(a) => a,
                None => pollster::block_on(
                    instance.request_adapter(&wgpu::RequestAdapterOptions::default()),
                )
                .map_err(err)?,
            };
            let name = adapter.get_info().name;
            log::info!("copy baseline on wgpu adapter {name}");
            let (device, queue) =
                pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                    label: Some("asl bench copy"),
                    required_limits: adapter.limits(),
                    ..Default::default()
                }))
                .map_err(err)?;
            // Copies and mappings move multiples of 4 bytes.
            let up = (bytes_in.max(bytes_out).max(4)).next_multiple_of(4) as u64;
            let down = bytes_out.max(4).next_multiple_of(4) as u64;
            let storage = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("copy in"),
                size: up,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let staging = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("copy out"),
                size: down,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let host_in = (0..bytes_in.max(4).next_multiple_of(4))
                .map(|i| i as u8)
                .collect();
            Ok(WgpuCopy {
                device,
                queue,
                storage,
                staging,
                host_in,
                host_out: vec![0; down as usize],
                adapter: name,
            })
        }
    }

    impl CopyBaseline for WgpuCopy {
        fn describe(&self) -> String {
            format!(
                "upload {} and read back {} on {} (no kernel)",
                human_bytes(self.host_in.len()),
                human_bytes(self.host_out.len()),
                self.adapter
            )
        }

        fn run(&mut self) -> Result<(), Failure> {
            // 1. Upload, 2. copy into the mappable buffer, 3. map, wait, read.
            self.queue.write_buffer(&self.storage, 0, &self.host_in);
            let mut enc = self.device.create_command_encoder(&Default::default());
            let n = self.host_out.len() as u64;
            enc.copy_buffer_to_buffer(&self.storage, 0, &self.staging, 0, n);
            self.queue.submit([enc.finish()]);
            let (tx, rx) = std::sync::mpsc::channel();
            self.staging.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = tx.send(r);
            });
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(err)?;
            rx.recv().map_err(err)?.map_err(err)?;
            {
                let view = self.staging.get_mapped_range(..).map_err(err)?;
                self.host_out.copy_from_slice(&view);
            }
            self.staging.unmap();
            Ok(())
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda_copy {
    //! The host-to-device-to-host round trip of a host-slice CUDA call, without its kernel.
    use super::*;
    use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
    use std::sync::Arc;

    pub struct CudaCopy {
        stream: Arc<CudaStream>,
        dev: CudaSlice<u8>,
        host_in: Vec<u8>,
        host_out: Vec<u8>,
    }

    fn err(e: impl std::fmt::Display) -> Failure {
        runtime(format!("CUDA copy baseline: {e}"))
    }

    impl CudaCopy {
        /// Device 0 (the one the CUDA backend opens).
        pub fn new(bytes_in: usize, bytes_out: usize) -> Result<Self, Failure> {
            // SAFETY: only probes whether the driver library can be loaded.
            if !unsafe { cudarc::driver::sys::is_culib_present() } {
                return Err(err("the CUDA driver library is not present"));
            }
            let ctx = CudaContext::new(0).map_err(err)?;
            let stream = ctx.default_stream();
            let dev = stream
                .alloc_zeros::<u8>(bytes_in.max(bytes_out).max(1))
                .map_err(err)?;
            Ok(CudaCopy {
                stream,
                dev,
                host_in: (0..bytes_in.max(1)).map(|i| i as u8).collect(),
                host_out: vec![0; bytes_out.max(1)],
            })
        }
    }

    impl CopyBaseline for CudaCopy {
        fn describe(&self) -> String {
            format!(
                "upload {} and read back {} on CUDA device 0 (pageable host memory, no kernel)",
                human_bytes(self.host_in.len()),
                human_bytes(self.host_out.len())
            )
        }

        fn run(&mut self) -> Result<(), Failure> {
            self.stream
                .memcpy_htod(&self.host_in, &mut self.dev)
                .map_err(err)?;
            let n = self.host_out.len();
            self.stream
                .memcpy_dtoh(&self.dev.slice(..n), &mut self.host_out)
                .map_err(err)?;
            self.stream.synchronize().map_err(err)
        }
    }
}

/// The copy baseline for backend `b`, moving `bytes_in` + `bytes_out` bytes.
fn baseline(
    b: &Picked,
    bytes_in: usize,
    bytes_out: usize,
) -> Result<Box<dyn CopyBaseline>, Failure> {
    match b.kind {
        #[cfg(feature = "wgpu")]
        Some(asymloss::BackendKind::Wgpu) => Ok(Box::new(wgpu_copy::WgpuCopy::new(
            &b.name(),
            bytes_in,
            bytes_out,
        )?)),
        #[cfg(feature = "cuda")]
        Some(asymloss::BackendKind::Cuda) => {
            Ok(Box::new(cuda_copy::CudaCopy::new(bytes_in, bytes_out)?))
        }
        _ => Ok(Box::new(CpuCopy::new(bytes_in + bytes_out))),
    }
}

/// `12.3 MB`.
fn human_bytes(n: usize) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

#[derive(Serialize)]
struct ShapeResult {
    rows: usize,
    cols: usize,
    elements: usize,
    bytes: usize,
    runs: usize,
    median_s: f64,
    elements_per_s: f64,
    gb_per_s: f64,
    copy_median_s: f64,
    copy_gb_per_s: f64,
    percent_of_copy: f64,
    copy: String,
}

#[derive(Serialize)]
struct Report {
    backend: String,
    loss: &'static str,
    pass: &'static str,
    dtype: &'static str,
    targets: &'static str,
    bytes_per_pass: String,
    results: Vec<ShapeResult>,
}

/// Runs `asl bench`.
pub fn run(args: Args) -> Result<(), Failure> {
    if args.loss == LossArg::SingleLabel && args.targets.is_some() {
        return Err(usage(
            "--targets applies to the multi-label loss (single-label takes i64 \
                          class indices)",
        ));
    }
    if !(args.min_time.is_finite() && args.min_time >= 0.0) {
        return Err(usage(format!(
            "--min-time must be a non-negative number, got {}",
            args.min_time
        )));
    }
    let shapes = if args.shapes.is_empty() {
        vec![(4096, 80), (1024, 1000), (256, 9605), (64, 100_000)]
    } else {
        args.shapes.clone()
    };
    let targets = match args.loss {
        LossArg::MultiLabel => Some(args.targets.unwrap_or(TargetsArg::F32)),
        LossArg::SingleLabel => None,
    };
    let pass = match args.pass {
        PassArg::Forward => Pass::Forward,
        PassArg::Backward => Pass::Backward,
        PassArg::Fused => Pass::Fused,
    };
    let dtype = match args.dtype {
        DTypeArg::F32 => DType::F32,
        DTypeArg::F16 => DType::F16,
        DTypeArg::Bf16 => DType::Bf16,
    };
    let b = backends::pick(args.backend)?;
    let tname = match targets {
        Some(TargetsArg::F32) => "f32",
        Some(TargetsArg::U8) => "u8",
        None => "i64",
    };
    let formula = format!(
        "N*C*{} (logits) + {} (targets){}",
        dtype.size(),
        if targets.is_some() {
            format!("N*C*{}", if tname == "u8" { 1 } else { 4 })
        } else {
            "N*8".into()
        },
        if pass.wants_grad() {
            format!(" + N*C*{} (gradient)", dtype.size())
        } else {
            String::new()
        }
    );

    let bar = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let pb = ProgressBar::new(2 * shapes.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]") {
            pb.set_style(style);
        }
        pb
    };

    let mut results = Vec::new();
    for &(rows, cols) in &shapes {
        let n = rows * cols;
        bar.set_message(format!("{rows}x{cols}: generating inputs"));
        let inp = Inputs::generate(rows, cols, args.dtype, targets);
        let bytes_in = n * dtype.size() + inp.target_bytes();
        let bytes_out = if pass.wants_grad() {
            n * dtype.size()
        } else {
            0
        };
        let bytes = bytes_in + bytes_out;
        let mut grad = pass.wants_grad().then(|| GradBuf::new(args.dtype, n));

        bar.set_message(format!("{rows}x{cols}: {} pass", pass.name()));
        // Two untimed calls: compilation, caches, first-touch pages.
        for _ in 0..2 {
            call(&b, args.loss, pass, &inp, &mut grad)?;
        }
        let (t, runs) = time_median(args.min_time, args.min_runs, || {
            call(&b, args.loss, pass, &inp, &mut grad)
        })?;
        bar.inc(1);

        bar.set_message(format!("{rows}x{cols}: copy baseline"));
        let mut copy = baseline(&b, bytes_in, bytes_out)?;
        copy.run()?;
        let (tc, _) = time_median(args.min_time, args.min_runs, || copy.run())?;
        bar.inc(1);

        let gbs = bytes as f64 / t / 1e9;
        let copy_gbs = bytes as f64 / tc / 1e9;
        results.push(ShapeResult {
            rows,
            cols,
            elements: n,
            bytes,
            runs,
            median_s: t,
            elements_per_s: n as f64 / t,
            gb_per_s: gbs,
            copy_median_s: tc,
            copy_gb_per_s: copy_gbs,
            percent_of_copy: 100.0 * tc / t,
            copy: copy.describe(),
        });
    }
    bar.finish_and_clear();

    let report = Report {
        backend: b.name(),
        loss: match args.loss {
            LossArg::MultiLabel => "multi-label",
            LossArg::SingleLabel => "single-label",
        },
        pass: pass.name(),
        dtype: dtype.name(),
        targets: tname,
        bytes_per_pass: formula,
        results,
    };
    if args.json {
        let s = serde_json::to_string(&report).map_err(|e| runtime(e.to_string()))?;
        println!("{s}");
        return Ok(());
    }
    println!(
        "asl bench: backend {}, {} loss (timm defaults), {} pass, {} logits, {} targets",
        report.backend, report.loss, report.pass, report.dtype, report.targets
    );
    println!("bytes per pass: {}", report.bytes_per_pass);
    println!(
        "median of >= {} runs and >= {} s per shape; copy baseline moves the same bytes",
        args.min_runs, args.min_time
    );
    println!();
    println!(
        "{:>12} {:>10} {:>11} {:>13} {:>9} {:>10} {:>10}",
        "shape", "bytes", "median", "elements/s", "GB/s", "copy GB/s", "% of copy"
    );
    for r in &report.results {
        println!(
            "{:>12} {:>10} {:>11} {:>13} {:>9.2} {:>10.2} {:>9.1}%",
            format!("{}x{}", r.rows, r.cols),
            human_bytes(r.bytes),
            fmt_secs(r.median_s),
            format!("{:.3e}", r.elements_per_s),
            r.gb_per_s,
            r.copy_gb_per_s,
            r.percent_of_copy
        );
    }
    println!();
    println!("copy baselines (measured right after each shape's pass):");
    for r in &report.results {
        println!("  {:>12}: {}", format!("{}x{}", r.rows, r.cols), r.copy);
    }
    Ok(())
}
