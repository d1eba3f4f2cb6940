//! Bad input gets a clear error naming the problem, never a panic or a wrong number.
use asymloss::cpu::Cpu;
use asymloss::*;

fn ml(
    cfg: &MultiLabel,
    rows: usize,
    cols: usize,
    x: &[f32],
    y: MultiTargets<'_>,
) -> Result<Option<LossValue>> {
    let inp = MultiInputs {
        shape: Shape::new(rows, cols),
        logits: Logits::F32(x),
        targets: y,
        upstream: Upstream::Scalar(1.0),
    };
    let mut g = vec![0.0f32; x.len()];
    Cpu::new().multi_label(cfg, Pass::Fused, &inp, Some(GradMut::F32(&mut g)))
}

#[test]
fn invalid_parameters_are_named() {
    let x = [0.0f32; 4];
    let y = [0.0f32; 4];
    let cases: Vec<(MultiLabel, &str)> = vec![
        (
            MultiLabel {
                gamma_neg: -1.0,
                ..Default::default()
            },
            "gamma_neg",
        ),
        (
            MultiLabel {
                gamma_pos: f64::NAN,
                ..Default::default()
            },
            "gamma_pos",
        ),
        (
            MultiLabel {
                clip: 1.5,
                ..Default::default()
            },
            "clip",
        ),
        (
            MultiLabel {
                clip: -0.1,
                ..Default::default()
            },
            "clip",
        ),
        (
            MultiLabel {
                eps: 1.0,
                ..Default::default()
            },
            "eps",
        ),
        (
            MultiLabel {
                smoothing: 1.0,
                ..Default::default()
            },
            "smoothing",
        ),
        (
            MultiLabel {
                class_weight: Some(vec![1.0; 3]),
                ..Default::default()
            },
            "class_weight",
        ),
        (
            MultiLabel {
                class_weight: Some(vec![1.0, f32::NAN]),
                ..Default::default()
            },
            "class_weight",
        ),
        (
            MultiLabel {
                pos_weight: Some(PosWeight::PerClass(vec![1.0])),
                ..Default::default()
            },
            "pos_weight",
        ),
        (
            MultiLabel {
                pos_weight: Some(PosWeight::Scalar(f32::INFINITY)),
                ..Default::default()
            },
            "pos_weight",
        ),
    ];
    for (cfg, name) in cases {
        let e = ml(&cfg, 2, 2, &x, MultiTargets::F32(&y)).unwrap_err();
        assert!(e.to_string().contains(name), "{name}: {e}");
    }
    let s = SingleLabel {
        smoothing: -0.1,
        ..Default::default()
    };
    let inp = SingleInputs {
        shape: Shape::new(1, 4),
        logits: Logits::F32(&x),
        targets: ClassTargets::I32(&[0]),
        upstream: Upstream::Scalar(1.0),
    };
    assert!(Cpu::new()
        .single_label(&s, Pass::Forward, &inp, None)
        .unwrap_err()
        .to_string()
        .contains("smoothing"));
    let s = SingleLabel {
        ignore_index: Some(1 << 40),
        ..Default::default()
    };
    assert!(Cpu::new()
        .single_label(&s, Pass::Forward, &inp, None)
        .unwrap_err()
        .to_string()
        .contains("ignore_index"));
    assert!(Reduction::parse("avg").is_err());
}

#[test]
fn shapes_lengths_and_passes() {
    let x = [0.0f32; 6];
    let y = [0.0f32; 6];
    // Logits of the wrong length.
    let e = ml(&MultiLabel::default(), 2, 4, &x, MultiTargets::F32(&y)).unwrap_err();
    assert!(matches!(e, Error::Shape { what: "logits", .. }), "{e}");
    // A backward pass without a gradient buffer; a gradient of the wrong length or dtype.
    let inp = MultiInputs {
        shape: Shape::new(2, 3),
        logits: Logits::F32(&x),
        targets: MultiTargets::F32(&y),
        upstream: Upstream::Scalar(1.0),
    };
    let cpu = Cpu::new();
    let e = cpu
        .multi_label(&MultiLabel::default(), Pass::Backward, &inp, None)
        .unwrap_err();
    assert!(e.to_string().contains("gradient buffer"), "{e}");
    let mut g = [0.0f32; 5];
    let e = cpu
        .multi_label(
            &MultiLabel::default(),
            Pass::Fused,
            &inp,
            Some(GradMut::F32(&mut g)),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Shape { what: "grad", .. }), "{e}");
    let mut g = [half::f16::ZERO; 6];
    let e = cpu
        .multi_label(
            &MultiLabel::default(),
            Pass::Fused,
            &inp,
            Some(GradMut::F16(&mut g)),
        )
        .unwrap_err();
    assert!(e.to_string().contains("dtype"), "{e}");
    // An upstream array needs reduction none, and the right length.
    let up = [1.0f32; 6];
    let inp2 = MultiInputs {
        upstream: Upstream::Array(&up),
        ..inp
    };
    let mut g = [0.0f32; 6];
    let e = cpu
        .multi_label(
            &MultiLabel::default(),
            Pass::Fused,
            &inp2,
            Some(GradMut::F32(&mut g)),
        )
        .unwrap_err();
    assert!(e.to_string().contains("reduction none"), "{e}");
    let cfg = MultiLabel {
        reduction: Reduction::None,
        ..Default::default()
    };
    let inp3 = MultiInputs {
        upstream: Upstream::Array(&up[..4]),
        ..inp
    };
    let e = cpu
        .multi_label(&cfg, Pass::Fused, &inp3, Some(GradMut::F32(&mut g)))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                what: "upstream",
                ..
            }
        ),
        "{e}"
    );
    // Single-label: one target per row; at least one class.
    let inp = SingleInputs {
        shape: Shape::new(2, 3),
        logits: Logits::F32(&x),
        targets: ClassTargets::I64(&[0]),
        upstream: Upstream::Scalar(1.0),
    };
    let e = cpu
        .single_label(&SingleLabel::default(), Pass::Forward, &inp, None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                what: "targets",
                ..
            }
        ),
        "{e}"
    );
    let inp = SingleInputs {
        shape: Shape::new(2, 0),
        logits: Logits::F32(&[]),
        targets: ClassTargets::I64(&[0, 0]),
        upstream: Upstream::Scalar(1.0),
    };
    assert!(cpu
        .single_label(&SingleLabel::default(), Pass::Forward, &inp, None)
        .is_err());
    // A shape whose element count overflows.
    let inp = MultiInputs {
        shape: Shape::new(usize::MAX, 3),
        logits: Logits::F32(&x),
        targets: MultiTargets::F32(&y),
        upstream: Upstream::Scalar(1.0),
    };
    assert!(cpu
        .multi_label(&MultiLabel::default(), Pass::Forward, &inp, None)
        .unwrap_err()
        .to_string()
        .contains("overflow"));
}

#[test]
fn invalid_targets_report_the_first_bad_element() {
    let x = [0.0f32; 6];
    let e = ml(
        &MultiLabel::default(),
        2,
        3,
        &x,
        MultiTargets::U8(&[0, 1, 255, 0, 7, 9]),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("element 4")
            && msg.contains("row 1")
            && msg.contains("column 1")
            && msg.contains(": 7"),
        "{msg}"
    );
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let cfg = MultiLabel {
            reduction: red,
            ..Default::default()
        };
        let e = ml(
            &cfg,
            2,
            3,
            &x,
            MultiTargets::F32(&[0.0, 0.5, 1.0, 1.0001, 2.0, 0.0]),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidTarget {
                    index: 3,
                    row: 1,
                    col: 0,
                    ..
                }
            ),
            "{e}"
        );
    }
    let inp = SingleInputs {
        shape: Shape::new(3, 2),
        logits: Logits::F32(&x),
        targets: ClassTargets::U32(&[0, 1, 2]),
        upstream: Upstream::Scalar(1.0),
    };
    let e = Cpu::new()
        .single_label(&SingleLabel::default(), Pass::Forward, &inp, None)
        .unwrap_err();
    assert!(
        e.to_string().contains("row 2") && e.to_string().contains("classes: 2"),
        "{e}"
    );
}
