//! Concurrency: the types that say they are `Send + Sync` are (checked at compile time), and 8
//! threads sharing one backend get correct results (against the float64 reference) that are
//! bitwise those of a single-threaded run: one `Cpu`, one `WgpuBackend`, one `WgpuContext`
//! through the raw entry points (its pipeline cache starting cold, so the threads race to fill
//! it), and one `CudaBackend` when a GPU is present.
//!
//! Tolerances against the reference: the common f32 policy (loss 1e-5 relative, gradient
//! `1e-6 * max|ref| + 1e-4 * |ref|`).
mod all_backends;
mod common;
#[cfg(feature = "wgpu")]
mod wgpu_common;

use asymloss::cpu::Cpu;
use asymloss::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const THREADS: usize = 8;

/// Compile-time: these types are `Send + Sync`, as the crate documents (`Backend: Send + Sync`,
/// "the context is Send + Sync and can be shared through an Arc", plain data everywhere else).
#[allow(dead_code)]
fn send_sync<T: Send + Sync + ?Sized>() {}

const _: fn() = || {
    send_sync::<Cpu>();
    send_sync::<dyn Backend>();
    send_sync::<Box<dyn Backend>>();
    send_sync::<Error>();
    send_sync::<MultiLabel>();
    send_sync::<SingleLabel>();
    send_sync::<LossValue>();
    send_sync::<MultiInputs<'static>>();
    send_sync::<SingleInputs<'static>>();
    send_sync::<GradMut<'static>>();
    send_sync::<config::MlParams>();
    send_sync::<config::SlParams>();
    send_sync::<reference::Output>();
    #[cfg(feature = "wgpu")]
    {
        use asymloss::wgpu::*;
        send_sync::<WgpuContext>();
        send_sync::<WgpuBackend>();
        send_sync::<std::sync::Arc<WgpuContext>>();
        send_sync::<BufferAt<'static>>();
        send_sync::<MultiLabelBuffers<'static>>();
        send_sync::<SingleLabelBuffers<'static>>();
        send_sync::<WorkspaceHeader>();
    }
    #[cfg(feature = "cuda")]
    {
        use asymloss::cuda::*;
        send_sync::<CudaBackend>();
        send_sync::<CudaKernels>();
        send_sync::<MlDeviceArgs>();
        send_sync::<SlDeviceArgs>();
        send_sync::<MlPlan>();
        send_sync::<SlPlan>();
    }
};

/// The `Error` type is a plain `std::error::Error` that crosses threads (e.g. `anyhow`).
#[test]
fn errors_cross_threads() {
    let e: Box<dyn std::error::Error + Send + Sync> = Box::new(Error::InvalidArgument("x".into()));
    let msg = std::thread::spawn(move || e.to_string()).join().unwrap();
    assert_eq!(msg, "invalid argument: x");
}

/// One job: a configuration and its inputs; thread `t` runs jobs `t, t+1, ...` (mod the
/// number of jobs), so every job runs on several threads at once.
struct Job {
    multi: bool,
    ml: MultiLabel,
    sl: SingleLabel,
    shape: Shape,
    x: Vec<f32>,
    y: Vec<u8>,
    classes: Vec<i64>,
}

fn jobs() -> Vec<Job> {
    let mut rng = StdRng::seed_from_u64(8);
    let shapes = [(64, 300), (7, 5000), (200, 13), (1, 1)];
    let ml = [
        MultiLabel::default(),
        MultiLabel {
            reduction: Reduction::Mean,
            ..MultiLabel::paper()
        },
        MultiLabel {
            reduction: Reduction::None,
            gamma_neg: 1.5,
            ..MultiLabel::default()
        },
    ];
    let sl = [
        SingleLabel::default(),
        SingleLabel {
            reduction: Reduction::None,
            ..SingleLabel::cross_entropy()
        },
    ];
    let mut out = Vec::new();
    for (k, &(rows, cols)) in shapes.iter().enumerate() {
        for multi in [true, false] {
            let n = rows * cols;
            out.push(Job {
                multi,
                ml: ml[k % ml.len()].clone(),
                sl: sl[k % sl.len()].clone(),
                shape: Shape::new(rows, cols),
                x: (0..n).map(|_| rng.random_range(-8.0f32..6.0)).collect(),
                y: (0..n)
                    .map(|_| [0u8, 0, 1, 255][rng.random_range(0..4)])
                    .collect(),
                classes: (0..rows)
                    .map(|_| rng.random_range(0..cols as i64))
                    .collect(),
            });
        }
    }
    out
}

/// Loss and gradient as f64 (exact widening) of one job.
fn run(b: &dyn Backend, j: &Job) -> (Vec<f64>, Vec<f64>) {
    let mut g = vec![f32::NAN; j.x.len()];
    let l = if j.multi {
        let inp = MultiInputs {
            shape: j.shape,
            logits: Logits::F32(&j.x),
            targets: MultiTargets::U8(&j.y),
            upstream: Upstream::Scalar(1.0),
        };
        b.multi_label(&j.ml, Pass::Fused, &inp, Some(GradMut::F32(&mut g)))
    } else {
        let inp = SingleInputs {
            shape: j.shape,
            logits: Logits::F32(&j.x),
            targets: ClassTargets::I64(&j.classes),
            upstream: Upstream::Scalar(1.0),
        };
        b.single_label(&j.sl, Pass::Fused, &inp, Some(GradMut::F32(&mut g)))
    };
    let l = l.unwrap_or_else(|e| panic!("{}: {e}", b.name())).unwrap();
    (
        l.as_slice().iter().map(|&v| v as f64).collect(),
        g.iter().map(|&v| v as f64).collect(),
    )
}

fn reference_of(j: &Job) -> reference::Output {
    if j.multi {
        reference::multi_label(
            &j.ml,
            j.shape,
            Logits::F32(&j.x),
            MultiTargets::U8(&j.y),
            Upstream::Scalar(1.0),
        )
    } else {
        reference::single_label(
            &j.sl,
            j.shape,
            Logits::F32(&j.x),
            ClassTargets::I64(&j.classes),
            Upstream::Scalar(1.0),
        )
    }
    .unwrap()
}

fn check_against_reference(what: &str, got: &(Vec<f64>, Vec<f64>), want: &reference::Output) {
    let max = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let (lr, la) = if want.loss.len() == 1 {
        (1e-5, 1e-30)
    } else {
        (1e-4, 1e-6 * max(&want.loss) + 1e-30)
    };
    common::assert_close(&format!("{what}: loss"), &got.0, &want.loss, la, lr);
    let ga = 1e-6 * max(&want.grad) + 1e-30;
    common::assert_close(&format!("{what}: grad"), &got.1, &want.grad, ga, 1e-4);
}

fn bits(r: &(Vec<f64>, Vec<f64>)) -> Vec<u64> {
    r.0.iter().chain(&r.1).map(|v| v.to_bits()).collect()
}

/// 8 threads share `b`; each runs every job (starting at a different one), twice. Every
/// result must be bitwise the single-threaded one, which must match the reference.
fn hammer(name: &str, b: &dyn Backend) {
    let jobs = jobs();
    let single: Vec<_> = jobs.iter().map(|j| run(b, j)).collect();
    for (j, r) in jobs.iter().zip(&single) {
        check_against_reference(name, r, &reference_of(j));
    }
    let expected: Vec<Vec<u64>> = single.iter().map(bits).collect();
    let barrier = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (jobs, expected, barrier) = (&jobs, &expected, &barrier);
            s.spawn(move || {
                barrier.wait(); // start together
                for k in 0..2 * jobs.len() {
                    let i = (t + k) % jobs.len();
                    let got = bits(&run(b, &jobs[i]));
                    assert!(got == expected[i], "{name}: thread {t}, job {i}: differs");
                }
            });
        }
    });
}

#[test]
fn eight_threads_share_one_cpu_backend() {
    hammer("cpu (global pool)", all_backends::cpu());
    hammer("cpu (own pool of 3)", &Cpu::with_threads(3).unwrap());
}

#[cfg(feature = "wgpu")]
#[test]
fn eight_threads_share_one_wgpu_backend() {
    if let Some(b) = all_backends::wgpu() {
        hammer(&b.name(), b);
    }
}

#[cfg(feature = "cuda")]
#[test]
fn eight_threads_share_one_cuda_backend() {
    if let Some(b) = all_backends::cuda() {
        hammer(&b.name(), b);
    }
}

/// 8 threads share one `WgpuContext` through the raw entry points, each with its own buffers,
/// encoder and submission, on a fresh context whose pipeline cache is empty: the threads
/// compile the same pipelines at the same time. The losses (read from each thread's workspace
/// header) and gradients are bitwise those of the host-slice backend on another context.
#[cfg(feature = "wgpu")]
#[test]
fn eight_threads_share_one_wgpu_context_raw() {
    use ::wgpu::util::DeviceExt;
    use asymloss::wgpu::{
        BufferAt, MultiLabelBuffers, RawUpstream, TargetType, WgpuBackend, WgpuContext,
    };
    let Some(host) = all_backends::wgpu() else {
        return;
    };
    let ctx = match WgpuContext::new() {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => panic!("a second context on the adapter the first one found: {e}"),
    };
    assert_eq!(ctx.cached_pipelines(), 0);
    let jobs: Vec<Job> = jobs().into_iter().filter(|j| j.multi).collect();
    let want: Vec<_> = jobs.iter().map(|j| run(host, j)).collect();
    for (j, w) in jobs.iter().zip(&want) {
        check_against_reference("wgpu host path", w, &reference_of(j));
    }
    let barrier = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (jobs, want, barrier, ctx) = (&jobs, &want, &barrier, &ctx);
            s.spawn(move || {
                let dev = ctx.device();
                let init = |label, bytes: &[u8], usage| {
                    dev.create_buffer_init(&::wgpu::util::BufferInitDescriptor {
                        label: Some(label),
                        contents: bytes,
                        usage,
                    })
                };
                let st = ::wgpu::BufferUsages::STORAGE | ::wgpu::BufferUsages::COPY_SRC;
                barrier.wait();
                for k in 0..jobs.len() {
                    let i = (t + k) % jobs.len();
                    let j = &jobs[i];
                    let n = j.x.len();
                    let logits = init("x", bytemuck::cast_slice(&j.x), st);
                    let mut y = j.y.clone();
                    y.resize(n.div_ceil(4) * 4, 0);
                    let targets = init("y", &y, st);
                    let grad = init("g", &vec![0xff; 4 * n], st);
                    let loss = init("l", &vec![0xff; 4 * n], st);
                    let ws_bytes = ctx.multi_label_workspace_bytes(j.shape).unwrap();
                    let ws = init("ws", &vec![0u8; ws_bytes as usize], st);
                    let none = j.ml.reduction == Reduction::None;
                    let bufs = MultiLabelBuffers {
                        logits: BufferAt::whole(&logits),
                        logits_dtype: DType::F32,
                        targets: BufferAt::whole(&targets),
                        target_type: TargetType::U8,
                        upstream: RawUpstream::Scalar(1.0),
                        grad: Some(BufferAt::whole(&grad)),
                        loss: none.then(|| BufferAt::whole(&loss)),
                        workspace: BufferAt::whole(&ws),
                    };
                    let mut enc = dev.create_command_encoder(&Default::default());
                    ctx.record_multi_label(&mut enc, &j.ml, Pass::Fused, j.shape, &bufs)
                        .unwrap();
                    ctx.queue().submit([enc.finish()]);
                    let header = ctx.read_workspace_header(BufferAt::whole(&ws)).unwrap();
                    header.check_multi_label(j.shape, TargetType::U8).unwrap();
                    let g = read_f32(ctx, &grad, n);
                    let l = if none {
                        read_f32(ctx, &loss, n)
                    } else {
                        vec![header.loss as f64]
                    };
                    let what = format!("raw: thread {t}, job {i}");
                    assert!(
                        bits(&(l, g)) == bits(&want[i]),
                        "{what}: differs from the host path"
                    );
                }
            });
        }
    });
    // Every specialisation was compiled once: recording again adds nothing.
    let cached = ctx.cached_pipelines();
    let again = WgpuBackend::from_context(ctx.clone());
    for j in &jobs {
        run(&again, j);
    }
    assert_eq!(
        ctx.cached_pipelines(),
        cached,
        "a pipeline was compiled twice"
    );

    fn read_f32(ctx: &WgpuContext, buf: &::wgpu::Buffer, n: usize) -> Vec<f64> {
        let dev = ctx.device();
        let staging = dev.create_buffer(&::wgpu::BufferDescriptor {
            label: None,
            size: 4 * n as u64,
            usage: ::wgpu::BufferUsages::MAP_READ | ::wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = dev.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, Some(4 * n as u64));
        let idx = ctx.queue().submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging
            .slice(..)
            .map_async(::wgpu::MapMode::Read, move |r| tx.send(r).unwrap());
        dev.poll(::wgpu::PollType::Wait {
            submission_index: Some(idx),
            timeout: None,
        })
        .unwrap();
        rx.recv().unwrap().unwrap();
        let words: Vec<f32> =
            bytemuck::pod_collect_to_vec(&staging.slice(..).get_mapped_range().unwrap());
        let v: Vec<f64> = words.iter().map(|&x| x as f64).collect();
        staging.unmap();
        v
    }
}
