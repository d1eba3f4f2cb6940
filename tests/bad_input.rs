//! Bad input through the library API, on every backend this machine has: the fast CPU path,
//! wgpu (lavapipe in CI), and CUDA (on a machine without a GPU: the clear
//! `Error::CudaUnavailable`; with one, the same table as the others). One table of bad calls
//! runs on each backend; every call must return the same error variant naming the problem, and
//! nothing may panic. Then the raw entry points: wgpu buffers (usage, offsets, sizes, aliasing,
//! the 32-bit index limit) and CUDA device addresses (what `plan_*` checks, host arithmetic
//! only, so it runs without a GPU).
//!
//! The README's table of bad inputs names this file for the rows it covers; tests/errors.rs,
//! tests/edges.rs, tests/wgpu_embed.rs and tests/cli.rs cover the rest.
mod all_backends;
mod common;
#[cfg(feature = "wgpu")]
mod wgpu_common;

use asymloss::cpu::Cpu;
use asymloss::*;
use half::{bf16, f16};

fn backends() -> Vec<(String, &'static dyn Backend)> {
    all_backends::all()
}

/// The error kinds the table expects.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Shape,
    Param,
    Target,
    Class,
    Arg,
}

fn kind_of(e: &Error) -> Option<Kind> {
    Some(match e {
        Error::Shape { .. } => Kind::Shape,
        Error::InvalidParameter { .. } => Kind::Param,
        Error::InvalidTarget { .. } => Kind::Target,
        Error::ClassOutOfRange { .. } => Kind::Class,
        Error::InvalidArgument(_) => Kind::Arg,
        _ => return None,
    })
}

type Call = Box<dyn Fn(&dyn Backend) -> Result<Option<LossValue>>>;

/// One bad call: a name, the call, the error kind and fragments its message must contain.
struct Row {
    name: &'static str,
    call: Call,
    kind: Kind,
    says: Vec<String>,
}

fn row(name: &'static str, kind: Kind, says: &[&str], call: Call) -> Row {
    Row {
        name,
        call,
        kind,
        says: says.iter().map(|s| s.to_string()).collect(),
    }
}

/// A multi-label call with owned inputs (f32 logits unless `x16`), fused unless `pass`.
#[allow(clippy::too_many_arguments)]
fn ml(
    cfg: MultiLabel,
    pass: Pass,
    shape: Shape,
    x: Vec<f32>,
    t: Vec<f32>,
    up: Option<Vec<f32>>,
    grad_len: Option<usize>,
) -> Call {
    Box::new(move |b| {
        let inp = MultiInputs {
            shape,
            logits: Logits::F32(&x),
            targets: MultiTargets::F32(&t),
            upstream: up.as_deref().map_or(Upstream::Scalar(1.0), Upstream::Array),
        };
        let mut g = vec![f32::NAN; grad_len.unwrap_or(0)];
        b.multi_label(&cfg, pass, &inp, grad_len.map(|_| GradMut::F32(&mut g)))
    })
}

fn ml_u8(shape: Shape, t: Vec<u8>) -> Call {
    Box::new(move |b| {
        let x = vec![0.5f32; t.len()];
        let inp = MultiInputs {
            shape,
            logits: Logits::F32(&x),
            targets: MultiTargets::U8(&t),
            upstream: Upstream::Scalar(1.0),
        };
        let mut g = vec![f32::NAN; t.len()];
        b.multi_label(
            &MultiLabel::default(),
            Pass::Fused,
            &inp,
            Some(GradMut::F32(&mut g)),
        )
    })
}

fn sl(cfg: SingleLabel, pass: Pass, shape: Shape, t: ClassVec, grad: bool) -> Call {
    Box::new(move |b| {
        let x = vec![0.25f32; shape.rows.saturating_mul(shape.cols).min(1 << 20)];
        let targets = match &t {
            ClassVec::I64(v) => ClassTargets::I64(v),
            ClassVec::I32(v) => ClassTargets::I32(v),
            ClassVec::U32(v) => ClassTargets::U32(v),
        };
        let inp = SingleInputs {
            shape,
            logits: Logits::F32(&x),
            targets,
            upstream: Upstream::Scalar(1.0),
        };
        let mut g = vec![f32::NAN; x.len()];
        b.single_label(&cfg, pass, &inp, grad.then(|| GradMut::F32(&mut g)))
    })
}

#[derive(Clone)]
enum ClassVec {
    I64(Vec<i64>),
    I32(Vec<i32>),
    U32(Vec<u32>),
}

fn s(r: usize, c: usize) -> Shape {
    Shape::new(r, c)
}

fn zeros(n: usize) -> Vec<f32> {
    vec![0.0; n]
}

/// The table. Shapes are small; the bad element sits late in the array, with another bad one
/// after it, so that "the first" is tested, not "any".
fn table() -> Vec<Row> {
    use Kind::*;
    let d = MultiLabel::default;
    let f = Pass::Fused;
    let mut t_nan = zeros(40);
    t_nan[29] = f32::NAN;
    t_nan[35] = 2.0;
    let mut t_big = zeros(40);
    t_big[17] = 1.0001;
    t_big[18] = f32::NAN;
    let mut t_inf = zeros(40);
    t_inf[3] = f32::INFINITY;
    let mut u8_bad = vec![0u8; 40];
    u8_bad[22] = 2;
    u8_bad[39] = 254;
    u8_bad[5] = 255; // unknown: allowed
    let one = |v: f64| MultiLabel {
        gamma_neg: v,
        ..d()
    };
    vec![
        // Shapes and lengths.
        row(
            "ml logits length",
            Shape,
            &["logits", "[4, 10]", "[39]"],
            ml(d(), f, s(4, 10), zeros(39), zeros(40), None, Some(40)),
        ),
        row(
            "ml targets length",
            Shape,
            &["targets", "[41]"],
            ml(d(), f, s(4, 10), zeros(40), zeros(41), None, Some(40)),
        ),
        row(
            "ml grad length",
            Shape,
            &["grad", "[40]", "[39]"],
            ml(d(), f, s(4, 10), zeros(40), zeros(40), None, Some(39)),
        ),
        row(
            "ml backward without grad",
            Arg,
            &["backward", "gradient buffer"],
            ml(
                d(),
                Pass::Backward,
                s(4, 10),
                zeros(40),
                zeros(40),
                None,
                None,
            ),
        ),
        row(
            "ml upstream array, reduction batchmean",
            Arg,
            &["reduction none", "batchmean"],
            ml(
                d(),
                f,
                s(4, 10),
                zeros(40),
                zeros(40),
                Some(zeros(40)),
                Some(40),
            ),
        ),
        row(
            "ml upstream array length",
            Shape,
            &["upstream", "[40]", "[4]"],
            ml(
                MultiLabel {
                    reduction: Reduction::None,
                    ..d()
                },
                f,
                s(4, 10),
                zeros(40),
                zeros(40),
                Some(zeros(4)),
                Some(40),
            ),
        ),
        row(
            "ml N x C overflows usize",
            Arg,
            &["overflow"],
            ml(
                d(),
                f,
                s(usize::MAX / 2, 3),
                zeros(6),
                zeros(6),
                None,
                Some(6),
            ),
        ),
        row(
            "sl targets length",
            Shape,
            &["targets", "one class index per row", "[3]"],
            sl(
                SingleLabel::default(),
                f,
                s(4, 10),
                ClassVec::I64(vec![0; 3]),
                true,
            ),
        ),
        row(
            "sl zero classes",
            Shape,
            &["logits", "at least one class"],
            sl(
                SingleLabel::default(),
                f,
                s(3, 0),
                ClassVec::I64(vec![0; 3]),
                true,
            ),
        ),
        row(
            "sl backward without grad",
            Arg,
            &["gradient buffer"],
            sl(
                SingleLabel::default(),
                Pass::Backward,
                s(2, 3),
                ClassVec::I32(vec![0; 2]),
                false,
            ),
        ),
        row(
            "sl grad dtype",
            Arg,
            &["dtype", "f32", "bf16"],
            Box::new(|b| {
                let x = zeros(6);
                let mut g = vec![bf16::ZERO; 6];
                let inp = SingleInputs {
                    shape: s(2, 3),
                    logits: Logits::F32(&x),
                    targets: ClassTargets::I64(&[0, 1]),
                    upstream: Upstream::Scalar(1.0),
                };
                b.single_label(
                    &SingleLabel::default(),
                    Pass::Fused,
                    &inp,
                    Some(GradMut::Bf16(&mut g)),
                )
            }),
        ),
        row(
            "ml grad dtype",
            Arg,
            &["dtype", "f16", "f32"],
            Box::new(|b| {
                let x = vec![f16::ZERO; 6];
                let t = zeros(6);
                let mut g = zeros(6);
                let inp = MultiInputs {
                    shape: s(2, 3),
                    logits: Logits::F16(&x),
                    targets: MultiTargets::F32(&t),
                    upstream: Upstream::Scalar(1.0),
                };
                b.multi_label(
                    &MultiLabel::default(),
                    Pass::Fused,
                    &inp,
                    Some(GradMut::F32(&mut g)),
                )
            }),
        ),
        // Targets outside their set: the first bad element, its row and column, its value.
        row(
            "ml f32 target NaN",
            Target,
            &["element 29", "row 2", "column 9", "NaN"],
            ml(d(), f, s(4, 10), zeros(40), t_nan, None, Some(40)),
        ),
        row(
            "ml f32 target above 1",
            Target,
            &["element 17", "row 1", "column 7", "1.0001"],
            ml(
                MultiLabel {
                    reduction: Reduction::Mean,
                    ..d()
                },
                f,
                s(4, 10),
                zeros(40),
                t_big,
                None,
                Some(40),
            ),
        ),
        row(
            "ml f32 target +inf",
            Target,
            &["element 3", "inf"],
            ml(
                MultiLabel {
                    reduction: Reduction::None,
                    ..d()
                },
                Pass::Forward,
                s(4, 10),
                zeros(40),
                t_inf,
                None,
                None,
            ),
        ),
        row(
            "ml u8 target 2",
            Target,
            &["element 22", "row 2", "column 2", ": 2;", "255"],
            ml_u8(s(4, 10), u8_bad),
        ),
        // Class indices out of range (the ignore index is allowed).
        row(
            "sl class -1",
            Class,
            &["row 2", "-1", "classes: 10"],
            sl(
                SingleLabel::default(),
                f,
                s(4, 10),
                ClassVec::I64(vec![0, 9, -1, 10]),
                true,
            ),
        ),
        row(
            "sl class == C",
            Class,
            &["row 3", ": 10", "ignore_index: -100"],
            sl(
                SingleLabel {
                    ignore_index: Some(-100),
                    ..SingleLabel::default()
                },
                f,
                s(4, 10),
                ClassVec::I64(vec![0, -100, 9, 10]),
                true,
            ),
        ),
        row(
            "sl class 2^40 (i64)",
            Class,
            &["row 0", "1099511627776"],
            sl(
                SingleLabel::default(),
                Pass::Forward,
                s(2, 10),
                ClassVec::I64(vec![1 << 40, 0]),
                false,
            ),
        ),
        row(
            "sl class u32::MAX",
            Class,
            &["row 1", "4294967295"],
            sl(
                SingleLabel::default(),
                f,
                s(2, 10),
                ClassVec::U32(vec![3, u32::MAX]),
                true,
            ),
        ),
        row(
            "sl class i32::MIN",
            Class,
            &["row 0", "-2147483648"],
            sl(
                SingleLabel::default(),
                f,
                s(1, 10),
                ClassVec::I32(vec![i32::MIN]),
                true,
            ),
        ),
        // Parameters out of range.
        row(
            "gamma_neg -1",
            Param,
            &["gamma_neg", "-1", ">= 0"],
            ml(one(-1.0), f, s(2, 3), zeros(6), zeros(6), None, Some(6)),
        ),
        row(
            "gamma_neg inf",
            Param,
            &["gamma_neg", "inf", "finite"],
            ml(
                one(f64::INFINITY),
                f,
                s(2, 3),
                zeros(6),
                zeros(6),
                None,
                Some(6),
            ),
        ),
        row(
            "gamma_pos NaN",
            Param,
            &["gamma_pos", "NaN"],
            ml(
                MultiLabel {
                    gamma_pos: f64::NAN,
                    ..d()
                },
                f,
                s(2, 3),
                zeros(6),
                zeros(6),
                None,
                Some(6),
            ),
        ),
        row(
            "clip 1.5",
            Param,
            &["clip", "1.5", "[0, 1]"],
            ml(
                MultiLabel { clip: 1.5, ..d() },
                f,
                s(2, 3),
                zeros(6),
                zeros(6),
                None,
                Some(6),
            ),
        ),
        row(
            "clip NaN",
            Param,
            &["clip", "NaN"],
            ml(
                MultiLabel {
                    clip: f64::NAN,
                    ..d()
                },
                f,
                s(2, 3),
                zeros(6),
                zeros(6),
                None,
                Some(6),
            ),
        ),
        row(
            "eps -1e-8",
            Param,
            &["eps", "[0, 1)"],
            ml(
                MultiLabel { eps: -1e-8, ..d() },
                f,
                s(2, 3),
                zeros(6),
                zeros(6),
                None,
                Some(6),
            ),
        ),
        row(
            "smoothing 1",
            Param,
            &["smoothing", "[0, 1)"],
            ml(
                MultiLabel {
                    smoothing: 1.0,
                    ..d()
                },
                f,
                s(2, 3),
                zeros(6),
                zeros(6),
                None,
                Some(6),
            ),
        ),
        row(
            "class_weight length",
            Shape,
            &["class_weight", "[3] (one per class)", "[2]"],
            ml(
                MultiLabel {
                    class_weight: Some(vec![1.0; 2]),
                    ..d()
                },
                f,
                s(2, 3),
                zeros(6),
                zeros(6),
                None,
                Some(6),
            ),
        ),
        row(
            "class_weight NaN",
            Param,
            &["class_weight", "class 1", "finite"],
            ml(
                MultiLabel {
                    class_weight: Some(vec![1.0, f32::NAN, 1.0]),
                    ..d()
                },
                f,
                s(2, 3),
                zeros(6),
                zeros(6),
                None,
                Some(6),
            ),
        ),
        row(
            "pos_weight -inf",
            Param,
            &["pos_weight", "-inf"],
            ml(
                MultiLabel {
                    pos_weight: Some(PosWeight::Scalar(f32::NEG_INFINITY)),
                    ..d()
                },
                f,
                s(2, 3),
                zeros(6),
                zeros(6),
                None,
                Some(6),
            ),
        ),
        row(
            "pos_weight per class length",
            Shape,
            &["pos_weight", "[4]"],
            ml(
                MultiLabel {
                    pos_weight: Some(PosWeight::PerClass(vec![1.0; 4])),
                    ..d()
                },
                f,
                s(2, 3),
                zeros(6),
                zeros(6),
                None,
                Some(6),
            ),
        ),
        row(
            "sl smoothing -0.1",
            Param,
            &["smoothing", "-0.1"],
            sl(
                SingleLabel {
                    smoothing: -0.1,
                    ..SingleLabel::default()
                },
                f,
                s(2, 3),
                ClassVec::I64(vec![0, 1]),
                true,
            ),
        ),
        row(
            "sl gamma_pos -inf",
            Param,
            &["gamma_pos"],
            sl(
                SingleLabel {
                    gamma_pos: f64::NEG_INFINITY,
                    ..SingleLabel::default()
                },
                f,
                s(2, 3),
                ClassVec::I64(vec![0, 1]),
                true,
            ),
        ),
        row(
            "sl ignore_index 2^40",
            Param,
            &["ignore_index", "32 bits"],
            sl(
                SingleLabel {
                    ignore_index: Some(1 << 40),
                    ..SingleLabel::default()
                },
                f,
                s(2, 3),
                ClassVec::I64(vec![0, 1]),
                true,
            ),
        ),
    ]
}

#[test]
fn every_bad_call_is_refused_alike_on_every_backend() {
    let bs = backends();
    let rows = table();
    for (name, b) in &bs {
        for r in &rows {
            let e = match (r.call)(*b) {
                Ok(v) => panic!("{name}: {}: expected an error, got {v:?}", r.name),
                Err(e) => e,
            };
            assert_eq!(kind_of(&e), Some(r.kind), "{name}: {}: {e}", r.name);
            let msg = e.to_string();
            for frag in &r.says {
                assert!(
                    msg.contains(frag.as_str()),
                    "{name}: {}: {frag:?} not in {msg:?}",
                    r.name
                );
            }
            assert!(!msg.contains('\n'), "{name}: {}: one line: {msg:?}", r.name);
        }
    }
    eprintln!("{} bad calls on {} backend(s)", rows.len(), bs.len());
}

/// Empty input is not an error: zero rows (or zero classes for the multi-label loss) gives loss
/// +0 for every reduction (an empty array for `none`) and an empty gradient.
#[test]
fn zero_rows_or_classes_give_zero() {
    for (name, b) in backends() {
        for red in [
            Reduction::Sum,
            Reduction::Mean,
            Reduction::BatchMean,
            Reduction::None,
        ] {
            for shape in [s(0, 7), s(5, 0), s(0, 0)] {
                let cfg = MultiLabel {
                    reduction: red,
                    ..MultiLabel::default()
                };
                let inp = MultiInputs {
                    shape,
                    logits: Logits::Bf16(&[]),
                    targets: MultiTargets::U8(&[]),
                    upstream: Upstream::Scalar(1.0),
                };
                let l = b
                    .multi_label(&cfg, Pass::Fused, &inp, Some(GradMut::Bf16(&mut [])))
                    .unwrap_or_else(|e| panic!("{name}: ml {shape} {red:?}: {e}"))
                    .unwrap();
                match l {
                    LossValue::Scalar(v) => assert_eq!(v.to_bits(), 0, "{name}: +0"),
                    LossValue::Array(a) => assert!(a.is_empty() && red == Reduction::None),
                }
            }
            let scfg = SingleLabel {
                reduction: red,
                ..SingleLabel::default()
            };
            let inp = SingleInputs {
                shape: s(0, 5),
                logits: Logits::F32(&[]),
                targets: ClassTargets::U32(&[]),
                upstream: Upstream::Scalar(1.0),
            };
            let l = b
                .single_label(&scfg, Pass::Fused, &inp, Some(GradMut::F32(&mut [])))
                .unwrap_or_else(|e| panic!("{name}: sl {red:?}: {e}"))
                .unwrap();
            assert!(
                l.as_slice().iter().all(|v| v.to_bits() == 0),
                "{name}: {l:?}"
            );
        }
    }
}

/// A backend that this build lacks is an error that says how to get it.
#[test]
fn backends_not_built_or_not_present_say_why() {
    #[cfg(not(feature = "cuda"))]
    {
        let e = BackendKind::Cuda
            .create()
            .err()
            .expect("no CUDA in this build");
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("--features cuda"), "{e}");
    }
    #[cfg(feature = "cuda")]
    if let Err(e) = asymloss::cuda::CudaBackend::new(0) {
        assert!(matches!(e, Error::CudaUnavailable(_)), "{e}");
        // The same reason from the probe, from an absurd ordinal, and from the backend list.
        assert!(matches!(
            asymloss::cuda::probe(),
            Err(Error::CudaUnavailable(_))
        ));
        let (_, missing) = available_backends();
        assert!(missing
            .iter()
            .any(|(k, why)| *k == BackendKind::Cuda && why.starts_with("CUDA is unavailable")));
    }
    #[cfg(feature = "cuda")]
    {
        let e = asymloss::cuda::CudaBackend::new(1 << 20).expect_err("no such device");
        assert!(matches!(e, Error::CudaUnavailable(_)), "{e}");
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let e = BackendKind::Wgpu
            .create()
            .err()
            .expect("no wgpu in this build");
        assert!(e.to_string().contains("--features wgpu"), "{e}");
    }
}

/// The CPU backend's own constructor: a thread pool of 0 threads means one, not an error.
#[test]
fn cpu_thread_counts() {
    let b = Cpu::with_threads(0).unwrap();
    let l = b
        .single_label(
            &SingleLabel::default(),
            Pass::Forward,
            &SingleInputs {
                shape: s(1, 2),
                logits: Logits::F32(&[0.0, 0.0]),
                targets: ClassTargets::I32(&[1]),
                upstream: Upstream::Scalar(1.0),
            },
            None,
        )
        .unwrap();
    assert!(l.unwrap().scalar().unwrap().is_finite());
}

// ---------------------------------------------------------------------------------------------
// wgpu raw entry points: the caller's buffers.

#[cfg(feature = "wgpu")]
mod wgpu_raw {
    use super::*;
    use asymloss::wgpu::{
        BufferAt, ClassType, MultiLabelBuffers, RawUpstream, SingleLabelBuffers, TargetType,
        WgpuContext, WorkspaceHeader,
    };

    fn ctx() -> Option<&'static WgpuContext> {
        super::wgpu_common::backend().map(|b| b.context().as_ref())
    }

    fn buf(c: &WgpuContext, size: u64, usage: ::wgpu::BufferUsages) -> ::wgpu::Buffer {
        c.device().create_buffer(&::wgpu::BufferDescriptor {
            label: Some("bad_input"),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    fn record_ml(
        c: &WgpuContext,
        cfg: &MultiLabel,
        pass: Pass,
        shape: Shape,
        b: &MultiLabelBuffers<'_>,
    ) -> Result<()> {
        let mut enc = c.device().create_command_encoder(&Default::default());
        let r = c.record_multi_label(&mut enc, cfg, pass, shape, b);
        // Nothing is submitted: a refused call must not have recorded anything half-way that
        // a submit would then execute; dropping the encoder is the caller's way out.
        drop(enc);
        r
    }

    fn record_sl(
        c: &WgpuContext,
        cfg: &SingleLabel,
        pass: Pass,
        shape: Shape,
        b: &SingleLabelBuffers<'_>,
    ) -> Result<()> {
        let mut enc = c.device().create_command_encoder(&Default::default());
        let r = c.record_single_label(&mut enc, cfg, pass, shape, b);
        drop(enc);
        r
    }

    fn expect(r: Result<()>, what: &str, kind: fn(&Error) -> bool, says: &[&str]) {
        let e = r.expect_err(what);
        assert!(kind(&e), "{what}: unexpected variant: {e}");
        let msg = e.to_string();
        for f in says {
            assert!(msg.contains(f), "{what}: {f:?} not in {msg:?}");
        }
    }

    fn arg(e: &Error) -> bool {
        matches!(e, Error::InvalidArgument(_))
    }

    fn unsupported(e: &Error) -> bool {
        matches!(e, Error::Unsupported(_))
    }

    /// Each buffer rule, for the array it concerns, with the message naming that array.
    #[test]
    fn raw_buffer_rules_name_the_array() {
        let Some(c) = ctx() else { return };
        let align = u64::from(c.device().limits().min_storage_buffer_offset_alignment).max(8);
        let st = ::wgpu::BufferUsages::STORAGE;
        let shape = s(4, 10);
        let logits = buf(c, 2 * align + 160, st);
        let targets = buf(c, 2 * align + 40, st);
        let grad = buf(c, 2 * align + 160, st);
        let ws_bytes = c.multi_label_workspace_bytes(shape).unwrap();
        let ws = buf(c, ws_bytes + align, st | ::wgpu::BufferUsages::COPY_SRC);
        let copy_only = buf(c, 4096, ::wgpu::BufferUsages::COPY_SRC);
        let ten = buf(c, 10, st);
        let small = buf(c, 100, st);
        let good = MultiLabelBuffers {
            logits: BufferAt::new(&logits, align),
            logits_dtype: DType::F32,
            targets: BufferAt::new(&targets, align),
            target_type: TargetType::U8,
            upstream: RawUpstream::Scalar(1.0),
            grad: Some(BufferAt::new(&grad, align)),
            loss: None,
            workspace: BufferAt::whole(&ws),
        };
        let cfg = MultiLabel::default();
        record_ml(c, &cfg, Pass::Fused, shape, &good).unwrap();
        let al = align.to_string();
        for (what, b, says) in [
            (
                "targets offset",
                MultiLabelBuffers {
                    targets: BufferAt::new(&targets, 4),
                    ..good
                },
                vec!["`targets`", "offset 4", al.as_str()],
            ),
            (
                "grad offset",
                MultiLabelBuffers {
                    grad: Some(BufferAt::new(&grad, align + 4)),
                    ..good
                },
                vec!["`grad`", "not a multiple"],
            ),
            (
                "workspace offset",
                MultiLabelBuffers {
                    workspace: BufferAt::new(&ws, 4),
                    ..good
                },
                vec!["`workspace`", "offset 4"],
            ),
            (
                "logits without STORAGE",
                MultiLabelBuffers {
                    logits: BufferAt::whole(&copy_only),
                    ..good
                },
                vec!["`logits`", "STORAGE"],
            ),
            (
                "logits too small",
                MultiLabelBuffers {
                    logits: BufferAt::whole(&small),
                    ..good
                },
                vec!["`logits` is too small", "160 bytes needed", "100 available"],
            ),
            (
                // 10 u8 targets need 12 bytes: a storage binding is whole 4-byte words.
                "u8 targets without word padding",
                MultiLabelBuffers {
                    targets: BufferAt::whole(&ten),
                    ..good
                },
                vec!["`targets` is too small", "12 bytes needed", "10 available"],
            ),
            (
                "workspace too small",
                MultiLabelBuffers {
                    workspace: BufferAt::whole(&ten),
                    ..good
                },
                vec!["workspace is too small", "10 available", "workspace_bytes"],
            ),
            (
                "input aliases output",
                MultiLabelBuffers {
                    grad: Some(BufferAt::new(&logits, align)),
                    ..good
                },
                vec!["`logits`", "`grad`", "same buffer"],
            ),
            (
                "backward without grad",
                MultiLabelBuffers { grad: None, ..good },
                vec!["needs `grad`"],
            ),
        ] {
            let pass = if what.starts_with("backward") {
                Pass::Backward
            } else {
                Pass::Fused
            };
            let shape = if what.starts_with("u8") {
                s(2, 5)
            } else {
                shape
            };
            expect(record_ml(c, &cfg, pass, shape, &b), what, arg, &says);
        }
        let none = MultiLabel {
            reduction: Reduction::None,
            ..cfg.clone()
        };
        expect(
            record_ml(c, &none, Pass::Forward, shape, &good),
            "none without loss",
            arg,
            &["`loss` buffer"],
        );
        let up = MultiLabelBuffers {
            upstream: RawUpstream::Array(BufferAt::new(&logits, align)),
            ..good
        };
        expect(
            record_ml(c, &cfg, Pass::Fused, shape, &up),
            "upstream array",
            arg,
            &["reduction none"],
        );
        let f16 = MultiLabelBuffers {
            logits_dtype: DType::F16,
            ..good
        };
        let r = record_ml(c, &cfg, Pass::Fused, shape, &f16);
        if c.supports_f16() {
            r.unwrap();
        } else {
            expect(r, "f16 without SHADER_F16", unsupported, &["SHADER_F16"]);
        }

        // Single-label: the same rules on its arrays.
        let classes = buf(c, align + 16, st);
        let sws = buf(c, c.single_label_workspace_bytes(shape).unwrap(), st);
        let sgood = SingleLabelBuffers {
            logits: BufferAt::new(&logits, align),
            logits_dtype: DType::F32,
            classes: BufferAt::new(&classes, align),
            class_type: ClassType::I32,
            upstream: RawUpstream::Scalar(1.0),
            grad: Some(BufferAt::new(&grad, align)),
            loss: None,
            workspace: BufferAt::whole(&sws),
        };
        let scfg = SingleLabel::default();
        record_sl(c, &scfg, Pass::Fused, shape, &sgood).unwrap();
        for (what, b, says) in [
            (
                "classes offset",
                SingleLabelBuffers {
                    classes: BufferAt::new(&classes, 12),
                    ..sgood
                },
                vec!["`classes`", "offset 12"],
            ),
            (
                // 4 rows of i64 need 32 bytes.
                "i64 classes too small",
                SingleLabelBuffers {
                    class_type: ClassType::I64,
                    ..sgood
                },
                vec!["`classes` is too small", "32 bytes needed"],
            ),
            (
                "grad without STORAGE",
                SingleLabelBuffers {
                    grad: Some(BufferAt::whole(&copy_only)),
                    ..sgood
                },
                vec!["`grad`", "STORAGE"],
            ),
            (
                "input aliases workspace",
                SingleLabelBuffers {
                    workspace: BufferAt::whole(&logits),
                    ..sgood
                },
                vec!["`logits`", "`workspace`", "same buffer"],
            ),
            (
                "workspace too small",
                SingleLabelBuffers {
                    workspace: BufferAt::whole(&ten),
                    ..sgood
                },
                vec!["too small"],
            ),
        ] {
            expect(
                record_sl(c, &scfg, Pass::Fused, shape, &b),
                what,
                arg,
                &says,
            );
        }
        expect(
            record_sl(c, &scfg, Pass::Fused, s(4, 0), &sgood),
            "zero classes",
            |e| matches!(e, Error::Shape { .. }),
            &["at least one class"],
        );
        expect(
            record_sl(
                c,
                &SingleLabel {
                    smoothing: 2.0,
                    ..scfg.clone()
                },
                Pass::Fused,
                shape,
                &sgood,
            ),
            "bad smoothing",
            |e| matches!(e, Error::InvalidParameter { .. }),
            &["smoothing"],
        );

        // Reading the header back needs COPY_SRC; a short header is refused.
        let e = c.read_workspace_header(BufferAt::whole(&sws)).unwrap_err();
        assert!(e.to_string().contains("COPY_SRC"), "{e}");
        let e = WorkspaceHeader::from_bytes(&[0; 31]).unwrap_err();
        assert!(e.to_string().contains("32 bytes"), "{e}");
    }

    /// Scale: the WGSL kernels index with 32 bits, so `N x C >= 2^32 - 1` is refused with
    /// `Unsupported` before any buffer is looked at (tiny buffers stand in for the arrays);
    /// just below the limit the workspace query still answers, with arithmetic in 64 bits.
    #[test]
    fn raw_refuses_32_bit_index_overflow() {
        let Some(c) = ctx() else { return };
        let st = ::wgpu::BufferUsages::STORAGE;
        let tiny = buf(c, 256, st);
        let tiny2 = buf(c, 256, st);
        let tiny3 = buf(c, 256, st);
        let ml = MultiLabelBuffers {
            logits: BufferAt::whole(&tiny),
            logits_dtype: DType::Bf16,
            targets: BufferAt::whole(&tiny2),
            target_type: TargetType::U8,
            upstream: RawUpstream::Scalar(1.0),
            grad: Some(BufferAt::whole(&tiny3)),
            loss: None,
            workspace: BufferAt::whole(&tiny3),
        };
        for shape in [s(65_536, 65_536), s(1, u32::MAX as usize), s(3, 1 << 31)] {
            expect(
                record_ml(c, &MultiLabel::default(), Pass::Fused, shape, &ml),
                "ml 2^32",
                unsupported,
                &["32 bits", &shape.to_string()],
            );
        }
        let sl = SingleLabelBuffers {
            logits: BufferAt::whole(&tiny),
            logits_dtype: DType::F32,
            classes: BufferAt::whole(&tiny2),
            class_type: ClassType::I64,
            upstream: RawUpstream::Scalar(1.0),
            grad: Some(BufferAt::whole(&tiny3)),
            loss: None,
            workspace: BufferAt::whole(&tiny3),
        };
        expect(
            record_sl(
                c,
                &SingleLabel::default(),
                Pass::Fused,
                s(1 << 16, 1 << 16),
                &sl,
            ),
            "sl 2^32",
            unsupported,
            &["32 bits"],
        );
        // Just under the limit, past 2^31: the buffers are too small (an InvalidArgument that
        // quotes the 64-bit byte count), not an overflow.
        let shape = s(65_535, 65_536); // 4 294 901 760 elements
        expect(
            record_ml(c, &MultiLabel::default(), Pass::Fused, shape, &ml),
            "ml below 2^32",
            arg,
            &["`logits` is too small", "8589803520 bytes needed"],
        );
        let ws = c.multi_label_workspace_bytes(shape).unwrap();
        let n = 65_535u64 * 65_536;
        assert!(ws >= 32 + 4 * n.div_ceil(4096), "{ws}");
        assert!(ws < 32 + 4 * (n.div_ceil(4096) + 65_535), "{ws}");
        assert_eq!(
            c.single_label_workspace_bytes(s(3_000_000_000, 1)).unwrap(),
            32 + 12_000_000_000
        );
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA raw entry points: device addresses. `plan_multi_label` / `plan_single_label` are what
// `multi_label_raw` / `single_label_raw` run before touching the GPU; they are host code.

#[cfg(feature = "cuda")]
mod cuda_raw {
    use super::*;
    use asymloss::cuda::context::mode;
    use asymloss::cuda::{
        plan_multi_label, plan_single_label, DevUpstream, MlDeviceArgs, SlDeviceArgs, TargetKind,
    };

    const SLOT: u64 = 0x7000_0000;

    fn ml_args() -> MlDeviceArgs {
        MlDeviceArgs {
            logits: 0x1000_0000,
            dtype: DType::F32,
            targets: 0x2000_0000,
            target_kind: TargetKind::U8,
            upstream: DevUpstream::Scalar(1.0),
            grad: 0x3000_0000,
            loss: 0,
        }
    }

    fn sl_args() -> SlDeviceArgs {
        SlDeviceArgs {
            logits: 0x1000_0000,
            dtype: DType::F16,
            targets: 0x2000_0000,
            upstream: DevUpstream::Scalar(1.0),
            grad: 0x3000_0000,
            loss: 0,
        }
    }

    fn says(e: Error, kind: fn(&Error) -> bool, frags: &[&str]) {
        assert!(kind(&e), "unexpected variant: {e}");
        for f in frags {
            assert!(e.to_string().contains(f), "{f:?} not in {e}");
        }
    }

    #[test]
    fn raw_pointer_checks() {
        let cfg = MultiLabel::default();
        let sh = s(8, 100);
        let arg = |e: &Error| matches!(e, Error::InvalidArgument(_));
        let plan = |a: MlDeviceArgs, cfg: &MultiLabel, pass| {
            plan_multi_label(cfg, pass, sh, &a, None, SLOT)
        };
        plan(ml_args(), &cfg, Pass::Fused).unwrap();
        says(
            plan(
                MlDeviceArgs {
                    logits: 0,
                    ..ml_args()
                },
                &cfg,
                Pass::Fused,
            )
            .unwrap_err(),
            arg,
            &["device buffers"],
        );
        says(
            plan(
                MlDeviceArgs {
                    targets: 0,
                    ..ml_args()
                },
                &cfg,
                Pass::Forward,
            )
            .unwrap_err(),
            arg,
            &["device buffers"],
        );
        says(
            plan(
                MlDeviceArgs {
                    grad: 0,
                    ..ml_args()
                },
                &cfg,
                Pass::Backward,
            )
            .unwrap_err(),
            arg,
            &["backward", "gradient buffer"],
        );
        let none = MultiLabel {
            reduction: Reduction::None,
            ..cfg.clone()
        };
        says(
            plan(ml_args(), &none, Pass::Forward).unwrap_err(),
            arg,
            &["loss buffer"],
        );
        says(
            plan(
                MlDeviceArgs {
                    upstream: DevUpstream::Array(0x4000_0000),
                    ..ml_args()
                },
                &cfg,
                Pass::Fused,
            )
            .unwrap_err(),
            arg,
            &["reduction none"],
        );
        says(
            plan(
                ml_args(),
                &MultiLabel {
                    clip: -1.0,
                    ..cfg.clone()
                },
                Pass::Fused,
            )
            .unwrap_err(),
            |e| matches!(e, Error::InvalidParameter { .. }),
            &["clip"],
        );
        // A forward pass needs no gradient address; an empty batch needs no address at all.
        plan(
            MlDeviceArgs {
                grad: 0,
                ..ml_args()
            },
            &cfg,
            Pass::Forward,
        )
        .unwrap();
        let empty = MlDeviceArgs {
            logits: 0,
            targets: 0,
            grad: 0,
            ..ml_args()
        };
        plan_multi_label(&cfg, Pass::Fused, s(0, 100), &empty, None, SLOT).unwrap();

        // Alignment: addresses that are not 16-byte aligned are accepted and take the
        // element-wise path (no packed loads); element alignment itself is the caller's
        // `unsafe` contract and is not checked.
        let p = plan(ml_args(), &cfg, Pass::Fused).unwrap();
        assert_ne!(p.mode & mode::VEC, 0, "aligned: packed access");
        let odd = plan(
            MlDeviceArgs {
                grad: 0x3000_0004,
                ..ml_args()
            },
            &cfg,
            Pass::Fused,
        )
        .unwrap();
        assert_eq!(odd.mode & mode::VEC, 0, "4-byte aligned only: element-wise");
        assert_eq!(odd.blocks_needed, 800u64.div_ceil(256));
        let odd = plan(
            MlDeviceArgs {
                targets: 0x2000_0001,
                ..ml_args()
            },
            &cfg,
            Pass::Fused,
        )
        .unwrap();
        assert_eq!(odd.mode & mode::VEC, 0);

        // Single-label.
        let scfg = SingleLabel::default();
        let splan = |a: SlDeviceArgs, cfg: &SingleLabel, pass, sh| {
            plan_single_label(cfg, pass, sh, &a, None, SLOT)
        };
        splan(sl_args(), &scfg, Pass::Fused, sh).unwrap();
        says(
            splan(
                SlDeviceArgs {
                    logits: 0,
                    ..sl_args()
                },
                &scfg,
                Pass::Fused,
                sh,
            )
            .unwrap_err(),
            arg,
            &["device buffers"],
        );
        says(
            splan(
                SlDeviceArgs {
                    grad: 0,
                    ..sl_args()
                },
                &scfg,
                Pass::Fused,
                sh,
            )
            .unwrap_err(),
            arg,
            &["gradient buffer"],
        );
        says(
            splan(sl_args(), &scfg, Pass::Fused, s(8, 0)).unwrap_err(),
            |e| matches!(e, Error::Shape { .. }),
            &["at least one class"],
        );
        let none = SingleLabel {
            reduction: Reduction::None,
            ..scfg.clone()
        };
        says(
            splan(sl_args(), &none, Pass::Forward, sh).unwrap_err(),
            arg,
            &["loss buffer"],
        );
    }

    /// Scale, by construction: the CUDA kernels take `n = N x C` as a u64 (one grid-stride
    /// loop over 64-bit element indices), rows as u32 and columns below 2^31. Shapes past 2^31
    /// and 2^32 elements plan without truncation; shapes past the row and column limits are
    /// refused with `Unsupported`.
    #[test]
    fn index_arithmetic_past_2_to_the_32() {
        let cfg = MultiLabel::default();
        let unsupported = |e: &Error| matches!(e, Error::Unsupported(_));
        for (rows, cols) in [
            (21_475usize, 100_000usize),
            (65_536, 65_537),
            (1 << 20, 1 << 14),
        ] {
            let p =
                plan_multi_label(&cfg, Pass::Fused, s(rows, cols), &ml_args(), None, SLOT).unwrap();
            let n = rows as u64 * cols as u64;
            assert!(n > 1 << 31);
            assert_eq!(p.n, n, "{rows} x {cols}");
            // Packed f32: 4 elements a thread, 256 threads a block.
            assert_eq!(p.blocks_needed, n.div_ceil(4).div_ceil(256));
            assert_eq!(p.params.rows as u64 * p.params.cols as u64, n);
            let b = plan_multi_label(
                &cfg,
                Pass::Fused,
                s(rows, cols),
                &MlDeviceArgs {
                    dtype: DType::Bf16,
                    grad: 0x3000_0002,
                    ..ml_args()
                },
                None,
                SLOT,
            )
            .unwrap();
            assert_eq!(b.blocks_needed, n.div_ceil(256), "element-wise");
        }
        says(
            plan_multi_label(&cfg, Pass::Fused, s(1 << 32, 1), &ml_args(), None, SLOT).unwrap_err(),
            unsupported,
            &["2^32 - 1 rows"],
        );
        says(
            plan_multi_label(&cfg, Pass::Fused, s(1, 1 << 31), &ml_args(), None, SLOT).unwrap_err(),
            unsupported,
            &["2^31 - 1 columns"],
        );
        // Single-label: one row per warp or block; rows past 2^31 plan in 64 bits.
        let scfg = SingleLabel::default();
        let p = plan_single_label(
            &scfg,
            Pass::Fused,
            s(3_000_000_000, 2),
            &sl_args(),
            None,
            SLOT,
        )
        .unwrap();
        assert!(p.blocks_needed > 0 && p.blocks_needed < 3_000_000_000);
        let p = plan_single_label(
            &scfg,
            Pass::Fused,
            s(40_000, 100_000),
            &sl_args(),
            None,
            SLOT,
        )
        .unwrap();
        assert_eq!(p.blocks_needed, 40_000, "one block per long row");
        says(
            plan_single_label(&scfg, Pass::Fused, s(1 << 32, 2), &sl_args(), None, SLOT)
                .unwrap_err(),
            unsupported,
            &["2^32 - 1 rows"],
        );
        says(
            plan_single_label(&scfg, Pass::Fused, s(2, 1 << 31), &sl_args(), None, SLOT)
                .unwrap_err(),
            unsupported,
            &["2^31 - 1 classes"],
        );
    }
}
