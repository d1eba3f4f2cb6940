//! Shared test helpers: the golden files, seeded generators, and the tolerance check.
#![allow(dead_code)]

use asymloss::{FocalGrad, MultiLabel, PosWeight, Reduction, SingleLabel};
use serde_json::Value;
use std::path::PathBuf;

/// `../shared` relative to the crate root.
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
}

/// Parses a JSON number or one of the strings "nan", "inf", "-inf".
pub fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => panic!("bad number string {other}"),
        },
        Value::Null => f64::NAN,
        other => panic!("not a number: {other}"),
    }
}

pub fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(num).collect()
}

/// One case of `golden/timm_asl_cases.json`.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub multi: bool,
    pub ml: MultiLabel,
    pub sl: SingleLabel,
    pub rows: usize,
    pub cols: usize,
    pub logits: Vec<f32>,
    pub targets: Vec<f64>,
    pub upstream: Vec<f32>,
    pub expected_loss: Vec<f64>,
    pub expected_grad: Vec<f64>,
}

fn f32_vec(v: &Value) -> Vec<f32> {
    nums(v).into_iter().map(|x| x as f32).collect()
}

pub fn load_cases() -> Vec<Case> {
    let path = shared_dir().join("golden").join("timm_asl_cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(parse_case)
        .collect()
}

pub fn parse_case(c: &Value) -> Case {
    let p = &c["params"];
    let multi = c["loss"] == "multi_label";
    let shape = c["shape"].as_array().unwrap();
    let (rows, cols) = (
        shape[0].as_u64().unwrap() as usize,
        shape[1].as_u64().unwrap() as usize,
    );
    let mut ml = MultiLabel::default();
    let mut sl = SingleLabel::default();
    if multi {
        ml.gamma_neg = num(&p["gamma_neg"]);
        ml.gamma_pos = num(&p["gamma_pos"]);
        ml.clip = if p["clip"].is_null() {
            0.0
        } else {
            num(&p["clip"])
        };
        ml.eps = num(&p["eps"]);
        ml.focal_grad = if p["disable_torch_grad_focal_loss"].as_bool().unwrap() {
            FocalGrad::Detached
        } else {
            FocalGrad::Differentiated
        };
        ml.smoothing = num(&p["smoothing"]);
        ml.reduction = Reduction::parse(p["reduction"].as_str().unwrap()).unwrap();
        if !p["weight"].is_null() {
            ml.class_weight = Some(f32_vec(&p["weight"]));
        }
        ml.pos_weight = match &p["pos_weight"] {
            Value::Null => None,
            Value::Array(_) => Some(PosWeight::PerClass(f32_vec(&p["pos_weight"]))),
            v => Some(PosWeight::Scalar(num(v) as f32)),
        };
    } else {
        sl.gamma_pos = num(&p["gamma_pos"]);
        sl.gamma_neg = num(&p["gamma_neg"]);
        sl.smoothing = num(&p["eps"]);
        sl.reduction = Reduction::parse(p["reduction"].as_str().unwrap()).unwrap();
    }
    Case {
        name: c["name"].as_str().unwrap().to_string(),
        multi,
        ml,
        sl,
        rows,
        cols,
        logits: f32_vec(&c["logits"]),
        targets: nums(&c["targets"]),
        upstream: f32_vec(&c["upstream"]),
        expected_loss: nums(&c["expected_loss"]),
        expected_grad: nums(&c["expected_grad"]),
    }
}

/// `|a - b| <= atol + rtol |b|`, NaN only where NaN is expected, equal infinities.
pub fn close(a: f64, b: f64, atol: f64, rtol: f64) -> bool {
    if b.is_nan() || a.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if b.is_infinite() || a.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= atol + rtol * b.abs()
}

/// Asserts element-wise closeness, printing the first few mismatches.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| !close(got[i], want[i], atol, rtol))
        .collect();
    if !bad.is_empty() {
        let shown: Vec<String> = bad
            .iter()
            .take(6)
            .map(|&i| format!("[{i}] got {:e} want {:e}", got[i], want[i]))
            .collect();
        panic!(
            "{what}: {} of {} differ (atol {atol:e}, rtol {rtol:e}): {}",
            bad.len(),
            got.len(),
            shown.join("; ")
        );
    }
}
