//! Mean average precision over labels, the ASL paper's metric.
//!
//! Definition (the same as scikit-learn's `average_precision_score` per label, then the mean):
//!
//! 1. For label `c`, rank the rows by score, highest first. Rows with equal scores form one
//!    group (a tie is one threshold: they enter the ranking together); NaN scores rank below
//!    every number and tie with each other.
//! 2. With `P` positives of label `c`, and for each group `g` its positives `tp_g`, the positives
//!    `TP_g` and rows `n_g` ranked at or above it:
//!    `AP_c = sum_g (tp_g / P) * (TP_g / n_g)` (recall step times precision at that threshold).
//!    Without ties this is the mean, over positives, of the precision at the positive's rank.
//! 3. `mAP = mean of AP_c over the labels with P >= 1`; labels with no positive among the
//!    scored rows have no AP and are left out (their count is reported).
//!
//! Arithmetic in f64; labels are processed in parallel but summed in label order, so the result
//! does not depend on the number of threads. This file depends on nothing else in the binary so
//! that the tests can include it.

use std::cmp::Ordering;

use rayon::prelude::*;

/// Score order: descending, NaN last, NaN equal to NaN, -0 equal to +0.
fn rank_order(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

/// Average precision of one label (`None` when it has no positive). Used by the tests.
#[allow(dead_code)]
pub fn average_precision(scores: &[f32], positive: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), positive.len(), "one flag per score");
    let mut ranked: Vec<(f32, bool)> = scores
        .iter()
        .copied()
        .zip(positive.iter().copied())
        .collect();
    ap_of(&mut ranked)
}

/// AP of `(score, positive)` pairs; sorts them in place.
fn ap_of(ranked: &mut [(f32, bool)]) -> Option<f64> {
    let total = ranked.iter().filter(|(_, p)| *p).count();
    if total == 0 {
        return None;
    }
    // Within a tie group the order does not matter: only the group's counts enter.
    ranked.sort_unstable_by(|a, b| rank_order(a.0, b.0));
    let (mut seen, mut hits, mut ap) = (0usize, 0usize, 0.0f64);
    let mut i = 0;
    while i < ranked.len() {
        // One group: every row whose score ties with ranked[i].
        let mut j = i;
        let mut tp = 0usize;
        while j < ranked.len() && rank_order(ranked[i].0, ranked[j].0) == Ordering::Equal {
            tp += usize::from(ranked[j].1);
            j += 1;
        }
        seen += j - i;
        hits += tp;
        // recall step tp / P times precision TP / n at this threshold.
        ap += (tp as f64 / total as f64) * (hits as f64 / seen as f64);
        i = j;
    }
    Some(ap)
}

/// The per-label APs and their mean.
#[derive(Clone, Debug, PartialEq)]
pub struct MeanAp {
    /// The mean over labels with at least one positive (NaN when there is none).
    pub map: f64,
    /// AP of each label; `None` for a label with no positive.
    pub per_label: Vec<Option<f64>>,
    /// How many labels have an AP.
    pub scored: usize,
}

/// mAP of row-major `rows x cols` scores against targets of the same shape (1 = positive,
/// anything else = negative).
pub fn mean_average_precision(scores: &[f32], targets: &[u8], rows: usize, cols: usize) -> MeanAp {
    assert_eq!(scores.len(), rows * cols, "scores are rows x cols");
    assert_eq!(targets.len(), rows * cols, "targets are rows x cols");
    let per_label: Vec<Option<f64>> = (0..cols)
        .into_par_iter()
        .map(|c| {
            let mut col: Vec<(f32, bool)> = (0..rows)
                .map(|r| (scores[r * cols + c], targets[r * cols + c] == 1))
                .collect();
            ap_of(&mut col)
        })
        .collect();
    let (mut sum, mut scored) = (0.0f64, 0usize);
    for ap in per_label.iter().flatten() {
        sum += ap;
        scored += 1;
    }
    MeanAp {
        map: if scored == 0 {
            f64::NAN
        } else {
            sum / scored as f64
        },
        per_label,
        scored,
    }
}
