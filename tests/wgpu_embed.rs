//! Embedding: the raw entry points on a device the caller made (default limits, no optional
//! features, and a 1 MiB storage-binding limit so that moderate inputs are chunked), with every
//! array at a non-zero offset inside a larger buffer whose other bytes must survive, recorded
//! into the caller's own encoder between the caller's own commands. Also: argument validation
//! (errors, never panics), the pipeline cache, and in-kernel invalid-target reports.
#![cfg(feature = "wgpu")]

mod common;
mod wgpu_common;

use ::wgpu::util::DeviceExt;
use asymloss::reference;
use asymloss::wgpu::{
    BufferAt, ClassType, MultiLabelBuffers, RawUpstream, SingleLabelBuffers, TargetType,
    WgpuContext, WorkspaceHeader, WORKSPACE_HEADER_BYTES,
};
use asymloss::*;
use half::bf16;
use std::sync::OnceLock;
use wgpu_common::*;

/// Storage-binding limit of the caller's device: small, so that chunking is exercised.
const BINDING: u64 = 1 << 20;
/// Bytes of caller data in front of every array (a multiple of the 256-byte alignment).
const FRONT: u64 = 512;
/// The caller's data pattern around the arrays.
const SENTINEL: u8 = 0xA5;

struct Caller {
    device: ::wgpu::Device,
    queue: ::wgpu::Queue,
    ctx: WgpuContext,
}

fn caller() -> Option<&'static Caller> {
    static C: OnceLock<Option<Caller>> = OnceLock::new();
    C.get_or_init(|| {
        let instance = ::wgpu::Instance::new(
            ::wgpu::InstanceDescriptor::new_without_display_handle_from_env(),
        );
        let adapter = match pollster::block_on(
            instance.request_adapter(&::wgpu::RequestAdapterOptions::default()),
        ) {
            Ok(a) => a,
            Err(e) => {
                assert!(!required(), "ASL_REQUIRE_WGPU=1 but no adapter: {e}");
                eprintln!("skipping: no wgpu adapter ({e})");
                return None;
            }
        };
        let limits = ::wgpu::Limits {
            max_storage_buffer_binding_size: BINDING,
            ..::wgpu::Limits::default()
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&::wgpu::DeviceDescriptor {
                label: Some("caller"),
                required_limits: limits,
                ..Default::default()
            }))
            .expect("device with default limits");
        // Any wgpu error that escapes the crate's validation fails the test loudly.
        device.on_uncaptured_error(std::sync::Arc::new(|e: ::wgpu::Error| {
            panic!("uncaptured wgpu error: {e}")
        }));
        let ctx = WgpuContext::from_device(device.clone(), queue.clone()).unwrap();
        assert!(!ctx.supports_f16() && !ctx.uses_subgroups());
        Some(Caller { device, queue, ctx })
    })
    .as_ref()
}

impl Caller {
    /// A buffer of FRONT sentinel bytes, then `data`, then 256 sentinel bytes.
    fn buffer_with(&self, data: &[u8], usage: ::wgpu::BufferUsages) -> ::wgpu::Buffer {
        let mut bytes = vec![SENTINEL; FRONT as usize];
        bytes.extend_from_slice(data);
        bytes.resize((bytes.len().div_ceil(4) * 4) + 256, SENTINEL);
        self.device
            .create_buffer_init(&::wgpu::util::BufferInitDescriptor {
                label: Some("caller data"),
                contents: &bytes,
                usage: usage | ::wgpu::BufferUsages::COPY_SRC,
            })
    }

    fn read(&self, buf: &::wgpu::Buffer) -> Vec<u8> {
        let staging = self.device.create_buffer(&::wgpu::BufferDescriptor {
            label: None,
            size: buf.size(),
            usage: ::wgpu::BufferUsages::MAP_READ | ::wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, None);
        self.queue.submit([enc.finish()]);
        staging
            .slice(..)
            .map_async(::wgpu::MapMode::Read, |r| r.unwrap());
        self.device
            .poll(::wgpu::PollType::wait_indefinitely())
            .unwrap();
        let v = staging.slice(..).get_mapped_range().unwrap().to_vec();
        staging.unmap();
        v
    }

    fn workspace(&self, bytes: u64) -> ::wgpu::Buffer {
        self.buffer_with(&vec![0xEE; bytes as usize], ::wgpu::BufferUsages::STORAGE)
    }
}

/// The array at FRONT of `buf`, after checking the caller's bytes around it are untouched.
fn payload(all: &[u8], len: usize) -> Vec<u8> {
    let f = FRONT as usize;
    assert!(
        all[..f].iter().all(|&b| b == SENTINEL),
        "bytes before the array were written"
    );
    assert!(
        all[f + len..].iter().all(|&b| b == SENTINEL),
        "bytes after the array were written"
    );
    all[f..f + len].to_vec()
}

fn f32s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect()
}

#[test]
fn raw_multi_label_at_offsets_in_chunks() {
    let Some(c) = caller() else { return };
    let mut rng = Rng::new(23);
    // 301 x 999 f32 logits are 1.2 MB: two chunks under the 1 MiB binding limit, with chunk
    // starts that are not aligned (the kernels shift) and an odd element count (bf16 halves).
    let shape = Shape::new(301, 999);
    let n = shape.rows * shape.cols;
    let x: Vec<f32> = (0..n).map(|_| (rng.normal() * 4.0) as f32).collect();
    let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    let tb: Vec<u8> = (0..n).map(|i| [0u8, 1, 0, 255, 0][i % 5]).collect();
    let up: Vec<f32> = (0..n).map(|_| rng.range(-1.0, 1.0) as f32).collect();
    for (dtype, reduction, pass) in [
        (DType::F32, Reduction::BatchMean, Pass::Fused),
        (DType::F32, Reduction::Mean, Pass::Backward),
        (DType::F32, Reduction::None, Pass::Fused),
        (DType::Bf16, Reduction::Sum, Pass::Fused),
        (DType::Bf16, Reduction::None, Pass::Forward),
    ] {
        let cfg = MultiLabel {
            reduction,
            ..Default::default()
        };
        let xbytes: &[u8] = if dtype == DType::F32 {
            bytemuck::cast_slice(&x)
        } else {
            bytemuck::cast_slice(&xb)
        };
        let logits = c.buffer_with(xbytes, ::wgpu::BufferUsages::STORAGE);
        let targets = c.buffer_with(&tb, ::wgpu::BufferUsages::STORAGE);
        let upstream = c.buffer_with(bytemuck::cast_slice(&up), ::wgpu::BufferUsages::STORAGE);
        let gbytes = n * dtype.size();
        let grad = c.buffer_with(&vec![0xFF; gbytes], ::wgpu::BufferUsages::STORAGE);
        let loss = c.buffer_with(&vec![0xFF; 4 * n], ::wgpu::BufferUsages::STORAGE);
        let ws = c.workspace(c.ctx.multi_label_workspace_bytes(shape).unwrap());
        let none = reduction == Reduction::None;
        let bufs = MultiLabelBuffers {
            logits: BufferAt::new(&logits, FRONT),
            logits_dtype: dtype,
            targets: BufferAt::new(&targets, FRONT),
            target_type: TargetType::U8,
            upstream: if none {
                RawUpstream::Array(BufferAt::new(&upstream, FRONT))
            } else {
                RawUpstream::Scalar(0.75)
            },
            grad: pass.wants_grad().then(|| BufferAt::new(&grad, FRONT)),
            loss: (none && pass.wants_loss()).then(|| BufferAt::new(&loss, FRONT)),
            workspace: BufferAt::new(&ws, FRONT),
        };
        // The caller's own work before and after, in the same encoder.
        let scratch = c.device.create_buffer(&::wgpu::BufferDescriptor {
            label: None,
            size: 256,
            usage: ::wgpu::BufferUsages::COPY_DST | ::wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut enc = c.device.create_command_encoder(&Default::default());
        enc.clear_buffer(&scratch, 0, None);
        c.ctx
            .record_multi_label(&mut enc, &cfg, pass, shape, &bufs)
            .unwrap();
        enc.clear_buffer(&scratch, 0, None);
        c.queue.submit([enc.finish()]);

        let header = c
            .ctx
            .read_workspace_header(BufferAt::new(&ws, FRONT))
            .unwrap();
        header.check_multi_label(shape, TargetType::U8).unwrap();
        let lg = match dtype {
            DType::F32 => Logits::F32(&x),
            _ => Logits::Bf16(&xb),
        };
        let u = if none {
            Upstream::Array(&up)
        } else {
            Upstream::Scalar(0.75)
        };
        let want = reference::multi_label(&cfg, shape, lg, MultiTargets::U8(&tb), u).unwrap();
        let what = format!("raw ml {dtype:?} {} {}", reduction.name(), pass.name());
        let got_loss = if none {
            pass.wants_loss()
                .then(|| f32s(&payload(&c.read(&loss), 4 * n)))
        } else {
            pass.wants_loss().then(|| vec![header.loss as f64])
        };
        let got_grad: Option<Vec<f64>> = pass.wants_grad().then(|| {
            let b = payload(&c.read(&grad), gbytes);
            match dtype {
                DType::F32 => f32s(&b),
                _ => b
                    .chunks_exact(2)
                    .map(|h| bf16::from_le_bytes([h[0], h[1]]).to_f64())
                    .collect(),
            }
        });
        let want_grad: Vec<f64> = match dtype {
            DType::F32 => want.grad.clone(),
            _ => want
                .grad
                .iter()
                .map(|&v| bf16::from_f64(v).to_f64())
                .collect(),
        };
        check(
            &what,
            tol(dtype),
            got_loss.as_deref(),
            &want.loss,
            got_grad.as_deref(),
            &want_grad,
        );
        if reduction == Reduction::Mean {
            assert_eq!(
                header.count as usize,
                tb.iter().filter(|&&v| v != 255).count()
            );
        }
        // The arrays the pass does not use are untouched as well.
        if !pass.wants_grad() {
            assert!(c.read(&grad)[FRONT as usize..][..gbytes]
                .iter()
                .all(|&b| b == 0xFF));
        }
    }
}

#[test]
fn raw_single_label_at_offsets_in_chunks() {
    let Some(c) = caller() else { return };
    let mut rng = Rng::new(29);
    let shape = Shape::new(130, 2049); // 1.07 MB of f32 logits: two chunks
    let n = shape.rows * shape.cols;
    let x: Vec<f32> = (0..n).map(|_| (rng.normal() * 3.0) as f32).collect();
    let t: Vec<i64> = (0..shape.rows as i64)
        .map(|r| if r % 9 == 4 { -100 } else { r * 31 % 2049 })
        .collect();
    let up: Vec<f32> = (0..shape.rows)
        .map(|_| rng.range(-1.0, 1.0) as f32)
        .collect();
    let t32: Vec<i32> = t.iter().map(|&v| v as i32).collect();
    for (ct, reduction, pass) in [
        (ClassType::I64, Reduction::Mean, Pass::Fused),
        (ClassType::I32, Reduction::None, Pass::Fused),
        (ClassType::I64, Reduction::Sum, Pass::Backward),
    ] {
        let cfg = SingleLabel {
            reduction,
            ignore_index: Some(-100),
            ..Default::default()
        };
        let cbytes: &[u8] = if ct == ClassType::I64 {
            bytemuck::cast_slice(&t)
        } else {
            bytemuck::cast_slice(&t32)
        };
        let logits = c.buffer_with(bytemuck::cast_slice(&x), ::wgpu::BufferUsages::STORAGE);
        let classes = c.buffer_with(cbytes, ::wgpu::BufferUsages::STORAGE);
        let upstream = c.buffer_with(bytemuck::cast_slice(&up), ::wgpu::BufferUsages::STORAGE);
        let grad = c.buffer_with(&vec![0xFF; 4 * n], ::wgpu::BufferUsages::STORAGE);
        let loss = c.buffer_with(&vec![0xFF; 4 * shape.rows], ::wgpu::BufferUsages::STORAGE);
        let ws = c.workspace(c.ctx.single_label_workspace_bytes(shape).unwrap());
        let none = reduction == Reduction::None;
        let bufs = SingleLabelBuffers {
            logits: BufferAt::new(&logits, FRONT),
            logits_dtype: DType::F32,
            classes: BufferAt::new(&classes, FRONT),
            class_type: ct,
            upstream: if none {
                RawUpstream::Array(BufferAt::new(&upstream, FRONT))
            } else {
                RawUpstream::Scalar(1.5)
            },
            grad: pass.wants_grad().then(|| BufferAt::new(&grad, FRONT)),
            loss: none.then(|| BufferAt::new(&loss, FRONT)),
            workspace: BufferAt::new(&ws, FRONT),
        };
        let mut enc = c.device.create_command_encoder(&Default::default());
        c.ctx
            .record_single_label(&mut enc, &cfg, pass, shape, &bufs)
            .unwrap();
        c.queue.submit([enc.finish()]);
        let header = c
            .ctx
            .read_workspace_header(BufferAt::new(&ws, FRONT))
            .unwrap();
        header.check_single_label(shape, cfg.ignore_index).unwrap();
        let u = if none {
            Upstream::Array(&up)
        } else {
            Upstream::Scalar(1.5)
        };
        let want = reference::single_label(&cfg, shape, Logits::F32(&x), ClassTargets::I64(&t), u)
            .unwrap();
        let got_loss = if none {
            Some(f32s(&payload(&c.read(&loss), 4 * shape.rows)))
        } else {
            pass.wants_loss().then(|| vec![header.loss as f64])
        };
        let got_grad = pass
            .wants_grad()
            .then(|| f32s(&payload(&c.read(&grad), 4 * n)));
        check(
            &format!("raw sl {ct:?} {} {}", reduction.name(), pass.name()),
            tol(DType::F32),
            got_loss.as_deref(),
            &want.loss,
            got_grad.as_deref(),
            &want.grad,
        );
    }
}

/// Invalid targets in device buffers come back through the workspace header, with the value.
#[test]
fn raw_invalid_targets_are_reported() {
    let Some(c) = caller() else { return };
    let shape = Shape::new(300, 1000); // two chunks; the bad element is in the second
    let n = shape.rows * shape.cols;
    let x = vec![0.25f32; n];
    let mut tf = vec![0.0f32; n];
    tf[250_123] = 1.5;
    tf[299_000] = f32::NAN;
    let logits = c.buffer_with(bytemuck::cast_slice(&x), ::wgpu::BufferUsages::STORAGE);
    let targets = c.buffer_with(bytemuck::cast_slice(&tf), ::wgpu::BufferUsages::STORAGE);
    let grad = c.buffer_with(&vec![0; 4 * n], ::wgpu::BufferUsages::STORAGE);
    let ws = c.workspace(c.ctx.multi_label_workspace_bytes(shape).unwrap());
    let bufs = MultiLabelBuffers {
        logits: BufferAt::new(&logits, FRONT),
        logits_dtype: DType::F32,
        targets: BufferAt::new(&targets, FRONT),
        target_type: TargetType::F32,
        upstream: RawUpstream::Scalar(1.0),
        grad: Some(BufferAt::new(&grad, FRONT)),
        loss: None,
        workspace: BufferAt::new(&ws, FRONT),
    };
    let mut enc = c.device.create_command_encoder(&Default::default());
    c.ctx
        .record_multi_label(&mut enc, &MultiLabel::default(), Pass::Fused, shape, &bufs)
        .unwrap();
    c.queue.submit([enc.finish()]);
    let h = c
        .ctx
        .read_workspace_header(BufferAt::new(&ws, FRONT))
        .unwrap();
    assert_eq!(h.first_invalid, Some(250_123));
    match h.check_multi_label(shape, TargetType::F32) {
        Err(Error::InvalidTarget {
            index,
            row,
            col,
            value,
            ..
        }) => {
            assert_eq!(
                (index, row, col, value.as_str()),
                (250_123, 250, 123, "1.5")
            );
        }
        r => panic!("unexpected {r:?}"),
    }

    // Single-label: u32 classes, one out of range in the second chunk.
    let shape = Shape::new(300, 1000);
    let mut cls: Vec<u32> = (0..300).map(|r| r * 3).collect();
    cls[280] = 1000;
    cls[290] = u32::MAX;
    let classes = c.buffer_with(bytemuck::cast_slice(&cls), ::wgpu::BufferUsages::STORAGE);
    let ws = c.workspace(c.ctx.single_label_workspace_bytes(shape).unwrap());
    let bufs = SingleLabelBuffers {
        logits: BufferAt::new(&logits, FRONT),
        logits_dtype: DType::F32,
        classes: BufferAt::new(&classes, FRONT),
        class_type: ClassType::U32,
        upstream: RawUpstream::Scalar(1.0),
        grad: Some(BufferAt::new(&grad, FRONT)),
        loss: None,
        workspace: BufferAt::new(&ws, FRONT),
    };
    let mut enc = c.device.create_command_encoder(&Default::default());
    c.ctx
        .record_single_label(&mut enc, &SingleLabel::default(), Pass::Fused, shape, &bufs)
        .unwrap();
    c.queue.submit([enc.finish()]);
    let h = c
        .ctx
        .read_workspace_header(BufferAt::new(&ws, FRONT))
        .unwrap();
    match h.check_single_label(shape, None) {
        Err(Error::ClassOutOfRange {
            row: 280,
            value: 1000,
            classes: 1000,
            ..
        }) => {}
        r => panic!("unexpected {r:?}"),
    }
}

/// Wrong arguments are errors with a message, never a panic or an uncaptured wgpu error.
#[test]
fn raw_argument_errors() {
    let Some(c) = caller() else { return };
    let shape = Shape::new(4, 10);
    let n = 40;
    let storage = ::wgpu::BufferUsages::STORAGE;
    let logits = c.buffer_with(&vec![0; 4 * n], storage);
    let targets = c.buffer_with(&vec![0; n], storage);
    let grad = c.buffer_with(&vec![0; 4 * n], storage);
    let ws = c.workspace(c.ctx.multi_label_workspace_bytes(shape).unwrap());
    let copy_only = c.device.create_buffer(&::wgpu::BufferDescriptor {
        label: None,
        size: 4096,
        usage: ::wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let small_ws = c.device.create_buffer(&::wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: storage,
        mapped_at_creation: false,
    });
    let good = MultiLabelBuffers {
        logits: BufferAt::new(&logits, FRONT),
        logits_dtype: DType::F32,
        targets: BufferAt::new(&targets, FRONT),
        target_type: TargetType::U8,
        upstream: RawUpstream::Scalar(1.0),
        grad: Some(BufferAt::new(&grad, FRONT)),
        loss: None,
        workspace: BufferAt::new(&ws, FRONT),
    };
    let cfg = MultiLabel::default();
    let run = |b: &MultiLabelBuffers<'_>, cfg: &MultiLabel, pass: Pass, shape: Shape| {
        let mut enc = c.device.create_command_encoder(&Default::default());
        let r = c.ctx.record_multi_label(&mut enc, cfg, pass, shape, b);
        c.queue.submit([enc.finish()]);
        r
    };
    run(&good, &cfg, Pass::Fused, shape).unwrap();
    // The cache, on a context of its own (the shared one is busy with other tests' pipelines).
    let own = WgpuContext::from_device(c.device.clone(), c.queue.clone()).unwrap();
    let record = |cfg: &MultiLabel| {
        let mut enc = c.device.create_command_encoder(&Default::default());
        own.record_multi_label(&mut enc, cfg, Pass::Fused, shape, &good)
            .unwrap();
        c.queue.submit([enc.finish()]);
    };
    assert_eq!(own.cached_pipelines(), 0);
    record(&cfg);
    let first = own.cached_pipelines();
    assert!(first >= 3, "init, main, report, finish: {first}");
    record(&cfg);
    record(&cfg);
    assert_eq!(
        own.cached_pipelines(),
        first,
        "pipelines are cached per specialisation"
    );
    record(&MultiLabel {
        gamma_pos: 0.5,
        ..cfg.clone()
    });
    assert_eq!(
        own.cached_pipelines(),
        first + 1,
        "only the main kernel is re-specialised"
    );

    let cases: Vec<(&str, MultiLabelBuffers<'_>, MultiLabel, Pass, Shape)> = vec![
        (
            "misaligned",
            MultiLabelBuffers {
                logits: BufferAt::new(&logits, 4),
                ..good
            },
            cfg.clone(),
            Pass::Fused,
            shape,
        ),
        (
            "no STORAGE",
            MultiLabelBuffers {
                grad: Some(BufferAt::whole(&copy_only)),
                ..good
            },
            cfg.clone(),
            Pass::Fused,
            shape,
        ),
        (
            "too small",
            good,
            cfg.clone(),
            Pass::Fused,
            Shape::new(400, 10),
        ),
        (
            "alias",
            MultiLabelBuffers {
                grad: Some(BufferAt::new(&logits, FRONT)),
                ..good
            },
            cfg.clone(),
            Pass::Fused,
            shape,
        ),
        (
            "no grad",
            MultiLabelBuffers { grad: None, ..good },
            cfg.clone(),
            Pass::Backward,
            shape,
        ),
        (
            "f16",
            MultiLabelBuffers {
                logits_dtype: DType::F16,
                ..good
            },
            cfg.clone(),
            Pass::Fused,
            shape,
        ),
        (
            "upstream array",
            MultiLabelBuffers {
                upstream: RawUpstream::Array(BufferAt::new(&targets, FRONT)),
                ..good
            },
            cfg.clone(),
            Pass::Fused,
            shape,
        ),
        (
            "no loss buffer",
            good,
            MultiLabel {
                reduction: Reduction::None,
                ..cfg.clone()
            },
            Pass::Forward,
            shape,
        ),
        (
            "bad gamma",
            good,
            MultiLabel {
                gamma_neg: -1.0,
                ..cfg.clone()
            },
            Pass::Fused,
            shape,
        ),
        (
            "small workspace",
            MultiLabelBuffers {
                workspace: BufferAt::whole(&small_ws),
                ..good
            },
            cfg.clone(),
            Pass::Fused,
            shape,
        ),
    ];
    for (name, b, cfg, pass, shape) in cases {
        let e = run(&b, &cfg, pass, shape).expect_err(name);
        let ok = match name {
            "f16" => matches!(e, Error::Unsupported(_)),
            "bad gamma" => matches!(e, Error::InvalidParameter { .. }),
            _ => matches!(e, Error::InvalidArgument(_)),
        };
        assert!(ok, "{name}: unexpected error kind: {e}");
    }
    // The header parser rejects short input.
    assert!(WorkspaceHeader::from_bytes(&[0; 8]).is_err());
    assert_eq!(WORKSPACE_HEADER_BYTES, 32);
}
