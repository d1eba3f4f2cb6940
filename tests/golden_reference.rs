//! The float64 reference against timm's own values (`../shared/golden`).
mod common;
use asymloss::reference;
use asymloss::{ClassTargets, Logits, MultiTargets, Shape, Upstream};
use common::*;

#[test]
fn reference_reproduces_every_timm_case() {
    let cases = load_cases();
    assert!(
        cases.len() >= 300,
        "expected the whole golden file, got {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for c in &cases {
        let shape = Shape::new(c.rows, c.cols);
        let up = if c.upstream.len() == 1 && c.expected_loss.len() == 1 {
            Upstream::Scalar(c.upstream[0])
        } else {
            Upstream::Array(&c.upstream)
        };
        let out = if c.multi {
            let t: Vec<f32> = c.targets.iter().map(|&v| v as f32).collect();
            reference::multi_label(
                &c.ml,
                shape,
                Logits::F32(&c.logits),
                MultiTargets::F32(&t),
                up,
            )
        } else {
            let t: Vec<i64> = c.targets.iter().map(|&v| v as i64).collect();
            reference::single_label(
                &c.sl,
                shape,
                Logits::F32(&c.logits),
                ClassTargets::I64(&t),
                up,
            )
        }
        .unwrap();
        let r = std::panic::catch_unwind(|| {
            assert_close("loss", &out.loss, &c.expected_loss, 1e-12, 1e-9);
            assert_close("grad", &out.grad, &c.expected_grad, 1e-12, 1e-9);
        });
        if let Err(e) = r {
            let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
            failures.push(format!("{}: {msg}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
