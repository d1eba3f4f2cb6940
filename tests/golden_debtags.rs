//! timm's multi-label and single-label losses (float64) on a real model's logits: Debian's
//! package tags (`../shared/golden/debtags_test.json` and `debtags_test_grad_default.npy`).
mod common;
use asymloss::cpu::Cpu;
use asymloss::reference;
use asymloss::*;
use common::*;
use serde_json::Value;

fn read_npy<T: npyz::Deserialize>(path: std::path::PathBuf) -> (Vec<u64>, Vec<T>) {
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec().unwrap())
}

fn ml_cfg(p: &Value) -> MultiLabel {
    MultiLabel {
        gamma_neg: num(&p["gamma_neg"]),
        gamma_pos: num(&p["gamma_pos"]),
        clip: num(&p["clip"]),
        eps: num(&p["eps"]),
        focal_grad: if p["disable_torch_grad_focal_loss"].as_bool().unwrap() {
            FocalGrad::Detached
        } else {
            FocalGrad::Differentiated
        },
        smoothing: num(&p["smoothing"]),
        reduction: Reduction::parse(p["reduction"].as_str().unwrap()).unwrap(),
        class_weight: None,
        pos_weight: if p["pos_weight"].is_null() {
            None
        } else {
            Some(PosWeight::Scalar(num(&p["pos_weight"]) as f32))
        },
    }
}

#[test]
fn debtags_configurations() {
    let data = shared_dir().join("data").join("debtags");
    let (shape, x) = read_npy::<f32>(data.join("test_logits.npy"));
    let (_, y) = read_npy::<u8>(data.join("test_targets.npy"));
    let (rows, cols) = (shape[0] as usize, shape[1] as usize);
    let shape = Shape::new(rows, cols);
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(shared_dir().join("golden").join("debtags_test.json")).unwrap(),
    )
    .unwrap();
    // Single-label targets: each row's highest-logit positive tag (0 when none).
    let classes: Vec<i64> = (0..rows)
        .map(|r| {
            (0..cols)
                .filter(|&c| y[r * cols + c] == 1)
                .max_by(|&a, &b| x[r * cols + a].total_cmp(&x[r * cols + b]))
                .unwrap_or(0) as i64
        })
        .collect();
    let cpu = Cpu::new();
    for (name, c) in doc["configs"].as_object().unwrap() {
        let p = &c["params"];
        let single = name.starts_with("single");
        let out = if single {
            let cfg = SingleLabel {
                gamma_pos: num(&p["gamma_pos"]),
                gamma_neg: num(&p["gamma_neg"]),
                smoothing: num(&p["eps"]),
                ..SingleLabel::default()
            };
            let t = ClassTargets::I64(&classes);
            let fast = cpu
                .single_label(
                    &cfg,
                    Pass::Forward,
                    &SingleInputs {
                        shape,
                        logits: Logits::F32(&x),
                        targets: t,
                        upstream: Upstream::Scalar(1.0),
                    },
                    None,
                )
                .unwrap()
                .unwrap();
            let out =
                reference::single_label(&cfg, shape, Logits::F32(&x), t, Upstream::Scalar(1.0))
                    .unwrap();
            assert_close(
                &format!("{name} cpu"),
                &[fast.scalar().unwrap() as f64],
                &out.loss,
                0.0,
                1e-5,
            );
            out
        } else {
            let cfg = ml_cfg(p);
            let t = MultiTargets::U8(&y);
            let fast = cpu
                .multi_label(
                    &cfg,
                    Pass::Forward,
                    &MultiInputs {
                        shape,
                        logits: Logits::F32(&x),
                        targets: t,
                        upstream: Upstream::Scalar(1.0),
                    },
                    None,
                )
                .unwrap()
                .unwrap();
            let out =
                reference::multi_label(&cfg, shape, Logits::F32(&x), t, Upstream::Scalar(1.0))
                    .unwrap();
            assert_close(
                &format!("{name} cpu"),
                &[fast.scalar().unwrap() as f64],
                &out.loss,
                0.0,
                1e-5,
            );
            out
        };
        assert_close(
            &format!("{name} loss"),
            &out.loss,
            &[num(&c["loss"])],
            1e-12,
            1e-9,
        );
        let sum: f64 = out.grad.iter().sum();
        let l2 = out.grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        // The gradient sums cancel (single-label rows sum to 0): absolute tolerance on them.
        assert_close(
            &format!("{name} grad_sum"),
            &[sum],
            &[num(&c["grad_sum"])],
            1e-12,
            1e-9,
        );
        assert_close(
            &format!("{name} grad_l2"),
            &[l2],
            &[num(&c["grad_l2"])],
            1e-12,
            1e-9,
        );
        if name == "timm_default" {
            let (_, want) = read_npy::<f64>(
                shared_dir()
                    .join("golden")
                    .join("debtags_test_grad_default.npy"),
            );
            assert_close("timm_default grad", &out.grad, &want, 1e-12, 1e-9);
        }
    }
}
