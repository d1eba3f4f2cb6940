//! Criterion benchmarks of the fast CPU path: one group per loss, dtype and pass, at the shapes
//! of `asl bench`, with the bytes each pass must move as the throughput, plus a memory-copy
//! group of the same sizes as the bandwidth yardstick.
use asymloss::cpu::Cpu;
use asymloss::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::{bf16, f16};
use std::hint::black_box;

const SHAPES: [(usize, usize); 4] = [(4096, 80), (1024, 1000), (256, 9605), (64, 100_000)];

fn logits(n: usize) -> Vec<f32> {
    // A deterministic spread of logits in about [-8, 4]: mostly easy negatives, as in practice.
    (0..n)
        .map(|i| ((i * 7919 % 1201) as f32 / 100.0) - 8.0)
        .collect()
}

fn targets(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 23 == 0) as u8).collect()
}

/// Bytes a multi-label pass must move: logits in, targets in, the gradient out.
fn ml_bytes(n: usize, dtype: usize, target: usize, pass: Pass) -> u64 {
    let grad = if pass.wants_grad() { dtype } else { 0 };
    (n * (dtype + target + grad)) as u64
}

fn multi_label(c: &mut Criterion) {
    let cpu = Cpu::new();
    let cfg = MultiLabel::default();
    for dtype in [DType::F32, DType::F16, DType::Bf16] {
        for u8_targets in [false, true] {
            for pass in [Pass::Forward, Pass::Fused] {
                if dtype != DType::F32 && (u8_targets || pass == Pass::Forward) {
                    continue; // keep the matrix small: half precision only fused with f32 targets
                }
                let tname = if u8_targets { "u8" } else { "f32" };
                let mut g = c.benchmark_group(format!(
                    "cpu_multi_label_{}_{}_targets_{tname}",
                    pass.name(),
                    dtype.name()
                ));
                g.sample_size(10);
                for (rows, cols) in SHAPES {
                    let n = rows * cols;
                    let x = logits(n);
                    let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
                    let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
                    let t8 = targets(n);
                    let tf: Vec<f32> = t8.iter().map(|&v| v as f32).collect();
                    let tsize = if u8_targets { 1 } else { 4 };
                    g.throughput(Throughput::Bytes(ml_bytes(n, dtype.size(), tsize, pass)));
                    let mut g32 = vec![0.0f32; n];
                    let mut g16 = vec![f16::ZERO; n];
                    let mut gb16 = vec![bf16::ZERO; n];
                    let id = BenchmarkId::from_parameter(format!("{rows}x{cols}"));
                    g.bench_function(id, |b| {
                        b.iter(|| {
                            let lg = match dtype {
                                DType::F32 => Logits::F32(&x),
                                DType::F16 => Logits::F16(&xh),
                                DType::Bf16 => Logits::Bf16(&xb),
                            };
                            let t = if u8_targets {
                                MultiTargets::U8(&t8)
                            } else {
                                MultiTargets::F32(&tf)
                            };
                            let inp = MultiInputs {
                                shape: Shape::new(rows, cols),
                                logits: lg,
                                targets: t,
                                upstream: Upstream::Scalar(1.0),
                            };
                            let grad = pass.wants_grad().then(|| match dtype {
                                DType::F32 => GradMut::F32(&mut g32),
                                DType::F16 => GradMut::F16(&mut g16),
                                DType::Bf16 => GradMut::Bf16(&mut gb16),
                            });
                            black_box(cpu.multi_label(&cfg, pass, &inp, grad).unwrap())
                        })
                    });
                }
                g.finish();
            }
        }
    }
}

fn single_label(c: &mut Criterion) {
    let cpu = Cpu::new();
    let cfg = SingleLabel::default();
    for pass in [Pass::Forward, Pass::Fused] {
        let mut g = c.benchmark_group(format!("cpu_single_label_{}_f32", pass.name()));
        g.sample_size(10);
        for (rows, cols) in SHAPES {
            let n = rows * cols;
            let x = logits(n);
            let t: Vec<i64> = (0..rows as i64).map(|r| r * 31 % cols as i64).collect();
            let grad_bytes = if pass.wants_grad() { 4 } else { 0 };
            g.throughput(Throughput::Bytes((n * (4 + grad_bytes) + rows * 8) as u64));
            let mut gr = vec![0.0f32; n];
            g.bench_function(BenchmarkId::from_parameter(format!("{rows}x{cols}")), |b| {
                b.iter(|| {
                    let inp = SingleInputs {
                        shape: Shape::new(rows, cols),
                        logits: Logits::F32(&x),
                        targets: ClassTargets::I64(&t),
                        upstream: Upstream::Scalar(1.0),
                    };
                    let grad = pass.wants_grad().then(|| GradMut::F32(&mut gr));
                    black_box(cpu.single_label(&cfg, pass, &inp, grad).unwrap())
                })
            });
        }
        g.finish();
    }
}

/// The yardstick: a parallel copy of `n` f32 (read n, write n: 8n bytes), on all threads with
/// the same task split as the loss.
fn copy(c: &mut Criterion) {
    use rayon::prelude::*;
    let mut g = c.benchmark_group("cpu_copy_f32");
    g.sample_size(10);
    for (rows, cols) in SHAPES {
        let n = rows * cols;
        let src = logits(n);
        let mut dst = vec![0.0f32; n];
        g.throughput(Throughput::Bytes((n * 8) as u64));
        g.bench_function(BenchmarkId::from_parameter(format!("{rows}x{cols}")), |b| {
            b.iter(|| {
                dst.par_chunks_mut(32 * 1024)
                    .zip(src.par_chunks(32 * 1024))
                    .for_each(|(d, s)| d.copy_from_slice(s));
                black_box(&dst);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, multi_label, single_label, copy);
criterion_main!(benches);
