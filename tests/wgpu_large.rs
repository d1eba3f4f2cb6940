//! An input larger than one storage binding: 4096 x 9605 f32 logits (157 MB) through the
//! backend's own device. On lavapipe (128 MiB bindings) it runs in two chunks of rows; on a
//! device with larger bindings in one. Both losses, fused, against the float64 reference.
#![cfg(feature = "wgpu")]

mod common;
mod wgpu_common;

use asymloss::reference;
use asymloss::*;
use wgpu_common::*;

const SHAPE: Shape = Shape {
    rows: 4096,
    cols: 9605,
};

fn inputs() -> (Vec<f32>, Vec<u8>, Vec<i64>) {
    let mut rng = Rng::new(31);
    let n = SHAPE.rows * SHAPE.cols;
    let x: Vec<f32> = (0..n).map(|_| (rng.normal() * 3.0 - 2.0) as f32).collect();
    let t: Vec<u8> = (0..n).map(|i| (i % 97 == 3) as u8).collect();
    let c: Vec<i64> = (0..SHAPE.rows as i64)
        .map(|r| r * 2371 % SHAPE.cols as i64)
        .collect();
    (x, t, c)
}

#[test]
fn logits_of_157_mb() {
    let Some(b) = backend() else { return };
    let limit = b
        .context()
        .device()
        .limits()
        .max_storage_buffer_binding_size;
    let bytes = (SHAPE.rows * SHAPE.cols * 4) as u64;
    eprintln!(
        "logits {bytes} bytes, storage binding limit {limit}: {} chunk(s)",
        if bytes > limit { "several" } else { "one" }
    );
    let (x, t, c) = inputs();
    let n = x.len();
    let up = Upstream::Scalar(1.0);

    let cfg = MultiLabel::default();
    let mut g = vec![f32::NAN; n];
    let inp = MultiInputs {
        shape: SHAPE,
        logits: Logits::F32(&x),
        targets: MultiTargets::U8(&t),
        upstream: up,
    };
    let l = b
        .multi_label(&cfg, Pass::Fused, &inp, Some(GradMut::F32(&mut g)))
        .unwrap()
        .unwrap();
    let want =
        reference::multi_label(&cfg, SHAPE, Logits::F32(&x), MultiTargets::U8(&t), up).unwrap();
    let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
    check(
        "ml 4096x9605",
        tol(DType::F32),
        Some(&loss_vec(&l)),
        &want.loss,
        Some(&g64),
        &want.grad,
    );
    drop(want);

    let cfg = SingleLabel::default();
    let mut g = vec![f32::NAN; n];
    let inp = SingleInputs {
        shape: SHAPE,
        logits: Logits::F32(&x),
        targets: ClassTargets::I64(&c),
        upstream: up,
    };
    let l = b
        .single_label(&cfg, Pass::Fused, &inp, Some(GradMut::F32(&mut g)))
        .unwrap()
        .unwrap();
    let want =
        reference::single_label(&cfg, SHAPE, Logits::F32(&x), ClassTargets::I64(&c), up).unwrap();
    let g64: Vec<f64> = g.iter().map(|&v| v as f64).collect();
    check(
        "sl 4096x9605",
        tol(DType::F32),
        Some(&loss_vec(&l)),
        &want.loss,
        Some(&g64),
        &want.grad,
    );
}
