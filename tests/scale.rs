//! Scale: the CPU path past 2^31 elements (about 11 GB of bf16 logits, u8 targets and a bf16
//! gradient), checked against the float64 reference of one row repeated.
//!
//! Every row holds the same values, so the loss of the whole batch is the reference loss of one
//! row (batchmean) and every row's gradient equals the reference gradient of that row. Elements
//! past index 2^31 are checked explicitly. It skips (saying why) with less than 13 GB of memory
//! available, or with `ASL_SKIP_SCALE=1`; `ASL_REQUIRE_SCALE=1` (set by CI) makes the first an
//! error.
use asymloss::cpu::Cpu;
use asymloss::reference;
use asymloss::*;
use half::bf16;

#[test]
fn cpu_path_beyond_two_to_the_31_elements() {
    if std::env::var_os("ASL_SKIP_SCALE").is_some() {
        eprintln!("skipped: ASL_SKIP_SCALE is set");
        return;
    }
    // About 11 GB live; skip (saying so) where the machine cannot hold it, unless required.
    let available_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m
                .lines()
                .find(|l| l.starts_with("MemAvailable:"))?
                .to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map(|kb| kb / 1e6);
    if let Some(gb) = available_gb.filter(|&gb| gb < 13.0) {
        assert!(
            std::env::var("ASL_REQUIRE_SCALE").map_or(true, |v| v != "1"),
            "ASL_REQUIRE_SCALE=1 but only {gb:.1} GB of memory is available (13 GB needed)"
        );
        eprintln!("skipped: {gb:.1} GB of memory available, the test needs about 13 GB");
        return;
    }
    let (rows, cols) = (21_475usize, 100_000usize);
    let n = rows * cols;
    assert!(n > 1 << 31);
    // One row's pattern: logits in [-6, 6], a positive every 50 columns, unknown every 997.
    let row_x: Vec<bf16> = (0..cols)
        .map(|c| bf16::from_f32((c % 97) as f32 / 8.0 - 6.0))
        .collect();
    let row_y: Vec<u8> = (0..cols)
        .map(|c| {
            if c % 997 == 0 {
                255
            } else {
                (c % 50 == 0) as u8
            }
        })
        .collect();
    let mut x = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..rows {
        x.extend_from_slice(&row_x);
        y.extend_from_slice(&row_y);
    }
    let mut g = vec![bf16::NAN; n];
    let cfg = MultiLabel::default();
    let inp = MultiInputs {
        shape: Shape::new(rows, cols),
        logits: Logits::Bf16(&x),
        targets: MultiTargets::U8(&y),
        upstream: Upstream::Scalar(1.0),
    };
    let loss = Cpu::new()
        .multi_label(&cfg, Pass::Fused, &inp, Some(GradMut::Bf16(&mut g)))
        .unwrap()
        .unwrap()
        .scalar()
        .unwrap() as f64;

    // The reference on one row (sum reduction): the batchmean of identical rows.
    let xr: Vec<f32> = row_x.iter().map(|v| v.to_f32()).collect();
    let one = MultiLabel {
        reduction: Reduction::Sum,
        ..cfg.clone()
    };
    let want = reference::multi_label(
        &one,
        Shape::new(1, cols),
        Logits::F32(&xr),
        MultiTargets::U8(&row_y),
        Upstream::Scalar(1.0),
    )
    .unwrap();
    assert!(
        (loss - want.loss[0]).abs() <= 1e-5 * want.loss[0],
        "{loss} vs {}",
        want.loss[0]
    );
    // Gradients scale by 1/rows under batchmean.
    let gmax = want.grad.iter().fold(0.0f64, |m, v| m.max(v.abs())) / rows as f64;
    for i in [0, (1 << 31) - 1, 1 << 31, (1 << 31) + 12_345, n - 1] {
        let w = want.grad[i % cols] / rows as f64;
        let got = g[i].to_f64();
        assert!(
            (got - w).abs() <= 1e-3 * gmax + 8e-3 * w.abs(),
            "grad[{i}] {got} vs {w}"
        );
    }
    // No element was left unwritten (the buffer was poisoned with NaN).
    assert!(
        !g.iter().any(|v| v.is_nan()),
        "an unwritten gradient element"
    );
}
