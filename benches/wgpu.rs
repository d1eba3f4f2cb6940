//! Criterion benchmarks of the wgpu backend through its raw entry points: one group per loss,
//! logits dtype, target type and pass, at the shapes of `asl bench`, with the bytes each pass
//! must move as the throughput.
//!
//! Inputs are uploaded once, outside the timed region. Each timed iteration records the launch
//! into a fresh encoder (bind groups and the small uniform blocks included, as a caller pays
//! them) and submits it; after the iterations the clock is read only once
//! `device.poll(wait)` has returned, so the time covers the GPU work (`iter_custom`).
//!
//! Skips with a message when there is no adapter. `WGPU_ADAPTER_NAME` picks one.
use std::time::{Duration, Instant};

use asymloss::wgpu::{
    BufferAt, ClassType, MultiLabelBuffers, RawUpstream, SingleLabelBuffers, TargetType,
    WgpuContext,
};
use asymloss::{DType, MultiLabel, Pass, Shape, SingleLabel};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::{bf16, f16};
use wgpu::util::DeviceExt;

const SHAPES: [(usize, usize); 4] = [(4096, 80), (1024, 1000), (256, 9605), (64, 100_000)];

fn context() -> Option<&'static WgpuContext> {
    static C: std::sync::OnceLock<Option<WgpuContext>> = std::sync::OnceLock::new();
    C.get_or_init(|| match WgpuContext::new() {
        Ok(c) => {
            let name = c.adapter_info().map_or("?".into(), |i| i.name.clone());
            eprintln!("wgpu bench on {name} (subgroups: {})", c.uses_subgroups());
            Some(c)
        }
        Err(e) => {
            eprintln!("skipping the wgpu benchmarks: {e}");
            None
        }
    })
    .as_ref()
}

fn logits(n: usize) -> Vec<f32> {
    // The CPU bench's deterministic spread in about [-8, 4]: mostly easy negatives.
    (0..n)
        .map(|i| ((i * 7919 % 1201) as f32 / 100.0) - 8.0)
        .collect()
}

fn storage(ctx: &WgpuContext, bytes: &[u8]) -> wgpu::Buffer {
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE,
        })
}

fn scratch(ctx: &WgpuContext, bytes: u64) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: bytes.div_ceil(4) * 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}

/// Times `iters` launches recorded by `record`, synchronised at the end.
fn timed(ctx: &WgpuContext, iters: u64, record: &dyn Fn(&mut wgpu::CommandEncoder)) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let mut enc = ctx.device().create_command_encoder(&Default::default());
        record(&mut enc);
        ctx.queue().submit([enc.finish()]);
    }
    ctx.device()
        .poll(wgpu::PollType::wait_indefinitely())
        .expect("poll");
    start.elapsed()
}

fn logits_bytes(x: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => bytemuck::cast_slice(x).to_vec(),
        DType::F16 => {
            let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
            bytemuck::cast_slice(&h).to_vec()
        }
        DType::Bf16 => {
            let h: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
            bytemuck::cast_slice(&h).to_vec()
        }
    }
}

fn multi_label(c: &mut Criterion) {
    let Some(ctx) = context() else { return };
    let cfg = MultiLabel::default();
    let mut variants = vec![
        (DType::F32, TargetType::U8, Pass::Forward),
        (DType::F32, TargetType::U8, Pass::Fused),
        (DType::F32, TargetType::U8, Pass::Backward),
        (DType::F32, TargetType::F32, Pass::Fused),
        (DType::Bf16, TargetType::U8, Pass::Fused),
    ];
    if ctx.supports_f16() {
        variants.push((DType::F16, TargetType::U8, Pass::Fused));
    }
    for (dtype, ttype, pass) in variants {
        let tname = if ttype == TargetType::U8 { "u8" } else { "f32" };
        let mut g = c.benchmark_group(format!(
            "wgpu_multi_label_{}_{}_targets_{tname}",
            pass.name(),
            dtype.name()
        ));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        for (rows, cols) in SHAPES {
            let shape = Shape::new(rows, cols);
            let n = rows * cols;
            let x = storage(ctx, &logits_bytes(&logits(n), dtype));
            let t8: Vec<u8> = (0..n).map(|i| (i % 23 == 0) as u8).collect();
            let tf: Vec<f32> = t8.iter().map(|&v| v as f32).collect();
            let t = match ttype {
                TargetType::U8 => storage(ctx, &t8),
                TargetType::F32 => storage(ctx, bytemuck::cast_slice(&tf)),
            };
            let grad = scratch(ctx, (n * dtype.size()) as u64);
            let ws = scratch(ctx, ctx.multi_label_workspace_bytes(shape).unwrap());
            let bufs = MultiLabelBuffers {
                logits: BufferAt::whole(&x),
                logits_dtype: dtype,
                targets: BufferAt::whole(&t),
                target_type: ttype,
                upstream: RawUpstream::Scalar(1.0),
                grad: pass.wants_grad().then(|| BufferAt::whole(&grad)),
                loss: None,
                workspace: BufferAt::whole(&ws),
            };
            // Bytes the pass must move: the logits and targets in, the gradient out.
            let grad_bytes = if pass.wants_grad() { dtype.size() } else { 0 };
            let bytes = n * (dtype.size() + ttype.size() as usize + grad_bytes);
            g.throughput(Throughput::Bytes(bytes as u64));
            let record = |enc: &mut wgpu::CommandEncoder| {
                ctx.record_multi_label(enc, &cfg, pass, shape, &bufs)
                    .expect("record");
            };
            timed(ctx, 1, &record); // compile the pipelines outside the measurement
            g.bench_function(BenchmarkId::from_parameter(format!("{rows}x{cols}")), |b| {
                b.iter_custom(|iters| timed(ctx, iters, &record))
            });
        }
        g.finish();
    }
}

fn single_label(c: &mut Criterion) {
    let Some(ctx) = context() else { return };
    let cfg = SingleLabel::default();
    let mut variants = vec![
        (DType::F32, Pass::Forward),
        (DType::F32, Pass::Fused),
        (DType::Bf16, Pass::Fused),
    ];
    if ctx.supports_f16() {
        variants.push((DType::F16, Pass::Fused));
    }
    for (dtype, pass) in variants {
        let mut g = c.benchmark_group(format!(
            "wgpu_single_label_{}_{}",
            pass.name(),
            dtype.name()
        ));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        for (rows, cols) in SHAPES {
            let shape = Shape::new(rows, cols);
            let n = rows * cols;
            let x = storage(ctx, &logits_bytes(&logits(n), dtype));
            let cls: Vec<i32> = (0..rows as i32).map(|r| r * 31 % cols as i32).collect();
            let t = storage(ctx, bytemuck::cast_slice(&cls));
            let grad = scratch(ctx, (n * dtype.size()) as u64);
            let ws = scratch(ctx, ctx.single_label_workspace_bytes(shape).unwrap());
            let bufs = SingleLabelBuffers {
                logits: BufferAt::whole(&x),
                logits_dtype: dtype,
                classes: BufferAt::whole(&t),
                class_type: ClassType::I32,
                upstream: RawUpstream::Scalar(1.0),
                grad: pass.wants_grad().then(|| BufferAt::whole(&grad)),
                loss: None,
                workspace: BufferAt::whole(&ws),
            };
            // Bytes the pass must move: the logits once, the classes, the gradient out (rows
            // longer than the row cache are read three times; that is not counted).
            let grad_bytes = if pass.wants_grad() { dtype.size() } else { 0 };
            let bytes = n * (dtype.size() + grad_bytes) + rows * 4;
            g.throughput(Throughput::Bytes(bytes as u64));
            let record = |enc: &mut wgpu::CommandEncoder| {
                ctx.record_single_label(enc, &cfg, pass, shape, &bufs)
                    .expect("record");
            };
            timed(ctx, 1, &record);
            g.bench_function(BenchmarkId::from_parameter(format!("{rows}x{cols}")), |b| {
                b.iter_custom(|iters| timed(ctx, iters, &record))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, multi_label, single_label);
criterion_main!(benches);
