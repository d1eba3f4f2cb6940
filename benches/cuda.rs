//! CUDA benchmarks.
//!
//! `cargo bench --no-default-features --features cuda --bench cuda` runs criterion groups
//! (throughput in bytes moved: logits and targets read, gradient written):
//! - `cuda_multi_label_fused_f32`, `cuda_single_label_fused_f32`: the fused kernels on device
//!   buffers (no host transfers in the timed region), one `BenchmarkId` per `N x C`;
//! - `cuda_copy`: a device-to-device copy of the logits, the bandwidth baseline.
//!
//! Each sample launches `iters` times, then synchronizes the stream before reading the clock.
//!
//! `... --bench cuda -- --table` (or the built bench binary run with `--table`) skips
//! criterion and measures, for 4096 x 80, 1024 x 1000, 4096 x 9605 and 64 x 100000, the fused
//! f32 time of both losses with CUDA events (median of 15 samples), GB/s and the percent of a
//! device-to-device copy measured in the same run; it prints one `ASLJSON {...}` line per
//! result (read by scripts/gpu_check.sh) and a table. Without a GPU it prints why and exits 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use asymloss::cuda::{self, DevUpstream, MlDeviceArgs, SlDeviceArgs, TargetKind, Workspace};
use asymloss::{DType, MultiLabel, Pass, Shape, SingleLabel};
use criterion::{BenchmarkId, Criterion, Throughput};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

const SHAPES: [(usize, usize); 4] = [(4096, 80), (1024, 1000), (4096, 9605), (64, 100_000)];

/// Device buffers of one shape, for both losses.
struct Problem {
    shape: Shape,
    logits: CudaSlice<f32>,
    targets: CudaSlice<f32>,
    classes: CudaSlice<i32>,
    grad: CudaSlice<f32>,
    copy_dst: CudaSlice<f32>,
}

impl Problem {
    fn new(stream: &Arc<CudaStream>, rows: usize, cols: usize) -> Problem {
        let n = rows * cols;
        // A cheap deterministic pattern: logits in [-8, 8), ~10% positive targets.
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let x: Vec<f32> = (0..n)
            .map(|_| (next() % 16_000) as f32 / 1000.0 - 8.0)
            .collect();
        let y: Vec<f32> = (0..n).map(|_| (next() % 10 == 0) as u8 as f32).collect();
        let t: Vec<i32> = (0..rows).map(|_| (next() % cols as u64) as i32).collect();
        Problem {
            shape: Shape::new(rows, cols),
            logits: stream.clone_htod(&x).unwrap(),
            targets: stream.clone_htod(&y).unwrap(),
            classes: stream.clone_htod(&t).unwrap(),
            grad: stream.alloc_zeros::<f32>(n).unwrap(),
            copy_dst: stream.alloc_zeros::<f32>(n).unwrap(),
        }
    }

    /// Bytes a fused multi-label pass moves: logits + targets read, gradient written.
    fn ml_bytes(&self) -> u64 {
        (self.logits.len() * 12) as u64
    }

    /// Bytes a fused single-label pass moves: logits read, gradient written, classes read.
    fn sl_bytes(&self) -> u64 {
        (self.logits.len() * 8 + self.classes.len() * 4) as u64
    }

    /// Bytes a device-to-device copy of the logits moves (read + write).
    fn copy_bytes(&self) -> u64 {
        (self.logits.len() * 8) as u64
    }

    fn ml(&self, stream: &Arc<CudaStream>, ws: &mut Workspace) {
        let (x, _a) = self.logits.device_ptr(stream);
        let (y, _b) = self.targets.device_ptr(stream);
        let (g, _c) = self.grad.device_ptr(stream);
        let args = MlDeviceArgs {
            logits: x,
            dtype: DType::F32,
            targets: y,
            target_kind: TargetKind::F32,
            upstream: DevUpstream::Scalar(1.0),
            grad: g,
            loss: 0,
        };
        let cfg = MultiLabel::default();
        // SAFETY: the buffers hold N x C f32 each and live as long as `self`; the benchmark
        // synchronizes before they are dropped.
        unsafe { cuda::multi_label_raw(stream, &cfg, Pass::Fused, self.shape, &args, None, ws) }
            .unwrap();
    }

    fn sl(&self, stream: &Arc<CudaStream>, ws: &mut Workspace) {
        let (x, _a) = self.logits.device_ptr(stream);
        let (t, _b) = self.classes.device_ptr(stream);
        let (g, _c) = self.grad.device_ptr(stream);
        let args = SlDeviceArgs {
            logits: x,
            dtype: DType::F32,
            targets: t,
            upstream: DevUpstream::Scalar(1.0),
            grad: g,
            loss: 0,
        };
        let cfg = SingleLabel::default();
        // SAFETY: as in `ml`; the class indices are in 0..C.
        unsafe { cuda::single_label_raw(stream, &cfg, Pass::Fused, self.shape, &args, None, ws) }
            .unwrap();
    }

    fn copy(&mut self, stream: &Arc<CudaStream>) {
        stream
            .memcpy_dtod(&self.logits, &mut self.copy_dst)
            .unwrap();
    }
}

/// `iters` runs of `f`, synchronized before the clock is read.
fn timed(stream: &Arc<CudaStream>, iters: u64, mut f: impl FnMut()) -> Duration {
    stream.synchronize().unwrap();
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    stream.synchronize().unwrap();
    start.elapsed()
}

fn criterion_groups(stream: &Arc<CudaStream>, ws: &mut Workspace) {
    let mut c = Criterion::default().configure_from_args();
    let mut problems: Vec<Problem> = SHAPES
        .iter()
        .map(|&(r, k)| Problem::new(stream, r, k))
        .collect();
    {
        let mut g = c.benchmark_group("cuda_multi_label_fused_f32");
        for p in &problems {
            g.throughput(Throughput::Bytes(p.ml_bytes()));
            let id = BenchmarkId::from_parameter(format!("{}x{}", p.shape.rows, p.shape.cols));
            g.bench_function(id, |b| {
                b.iter_custom(|iters| timed(stream, iters, || p.ml(stream, ws)))
            });
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("cuda_single_label_fused_f32");
        for p in &problems {
            g.throughput(Throughput::Bytes(p.sl_bytes()));
            let id = BenchmarkId::from_parameter(format!("{}x{}", p.shape.rows, p.shape.cols));
            g.bench_function(id, |b| {
                b.iter_custom(|iters| timed(stream, iters, || p.sl(stream, ws)))
            });
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("cuda_copy");
        for p in problems.iter_mut() {
            g.throughput(Throughput::Bytes(p.copy_bytes()));
            let id = BenchmarkId::from_parameter(format!("{}x{}", p.shape.rows, p.shape.cols));
            g.bench_function(id, |b| {
                b.iter_custom(|iters| timed(stream, iters, || p.copy(stream)))
            });
        }
        g.finish();
    }
    c.final_summary();
}

/// Median milliseconds per call over 15 samples, each timed with CUDA events around enough
/// back-to-back calls to last about 2 ms.
fn event_ms(stream: &Arc<CudaStream>, mut f: impl FnMut()) -> f64 {
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    for _ in 0..3 {
        f();
    }
    stream.synchronize().unwrap();
    // Calibrate the batch size.
    let start = stream.record_event(flags).unwrap();
    f();
    let end = stream.record_event(flags).unwrap();
    let one = start.elapsed_ms(&end).unwrap().max(1e-3) as f64;
    let batch = ((2.0 / one).ceil() as usize).clamp(1, 1000);
    let mut samples = Vec::new();
    for _ in 0..15 {
        let start = stream.record_event(flags).unwrap();
        for _ in 0..batch {
            f();
        }
        let end = stream.record_event(flags).unwrap();
        samples.push(start.elapsed_ms(&end).unwrap() as f64 / batch as f64);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn table(stream: &Arc<CudaStream>, ws: &mut Workspace, device: &str) {
    let mut rows = Vec::new();
    for &(r, k) in &SHAPES {
        let mut p = Problem::new(stream, r, k);
        let copy_ms = event_ms(stream, || p.copy(stream));
        let copy_gbs = p.copy_bytes() as f64 / (copy_ms * 1e6);
        let ml_ms = event_ms(stream, || p.ml(stream, ws));
        let sl_ms = event_ms(stream, || p.sl(stream, ws));
        for (loss, ms, bytes) in [
            ("multi_label", ml_ms, p.ml_bytes()),
            ("single_label", sl_ms, p.sl_bytes()),
        ] {
            let gbs = bytes as f64 / (ms * 1e6);
            let pct = 100.0 * gbs / copy_gbs;
            println!(
                "ASLJSON {{\"device\":\"{device}\",\"loss\":\"{loss}\",\"rows\":{r},\"cols\":{k},\
                 \"dtype\":\"f32\",\"pass\":\"fused\",\"ms\":{ms:.6},\"gbs\":{gbs:.1},\
                 \"copy_ms\":{copy_ms:.6},\"copy_gbs\":{copy_gbs:.1},\"pct_copy\":{pct:.1}}}"
            );
            rows.push((loss, r, k, ms, gbs, copy_gbs, pct));
        }
    }
    println!("\n{device}, fused forward+backward, f32 logits (f32 targets / i32 classes)");
    println!(
        "{:<13} {:>13} {:>10} {:>9} {:>10} {:>8}",
        "loss", "shape", "ms", "GB/s", "copy GB/s", "% copy"
    );
    for (loss, r, k, ms, gbs, copy_gbs, pct) in rows {
        println!(
            "{loss:<13} {:>13} {ms:>10.4} {gbs:>9.1} {copy_gbs:>10.1} {pct:>8.1}",
            format!("{r}x{k}")
        );
    }
}

fn main() {
    let backend = match cuda::CudaBackend::new(0) {
        Ok(b) => b,
        Err(e) => {
            println!("cuda bench skipped: {e}");
            return;
        }
    };
    let stream = backend.stream().clone();
    let mut ws = Workspace::new(&stream).expect("workspace");
    let device = backend.kernels().device_name().to_string();
    if std::env::args().any(|a| a == "--table") {
        table(&stream, &mut ws, &device);
    } else {
        criterion_groups(&stream, &mut ws);
    }
}
