//! How good a classifier's probabilities are on rows it was not trained on: ROC AUC, PR AUC
//! (average precision), Brier score, log loss, and lift, gains and calibration by decile.
//!
//! Definitions match scikit-learn's `roc_auc_score` (ties count half), `average_precision_score`
//! (precision at each distinct threshold weighted by the recall it adds) and `brier_score_loss`.
//! Deciles rank rows by predicted probability, highest first (equal probabilities keep row
//! order), and cut them into ten groups of sizes differing by at most one.

use serde::{Deserialize, Serialize};

/// One tenth of the rows, ranked by predicted probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decile {
    /// 1 for the highest predicted probabilities.
    pub decile: u8,
    /// Rows in the decile.
    pub rows: u64,
    /// Positive outcomes among them.
    pub positives: u64,
    /// Mean predicted probability (calibration: compare with `actual_rate`).
    pub mean_predicted: f64,
    /// Share of positive outcomes.
    pub actual_rate: f64,
    /// `actual_rate` over the overall rate.
    pub lift: f64,
    /// Share of all positives found in this and the higher deciles (the gains curve).
    pub cumulative_gain: f64,
}

/// The metrics of one set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Rows evaluated.
    pub rows: u64,
    /// Positive outcomes.
    pub positives: u64,
    /// Area under the ROC curve (0.5 is chance).
    pub roc_auc: f64,
    /// Average precision (the base rate is chance).
    pub pr_auc: f64,
    /// Mean squared difference of probability and outcome.
    pub brier: f64,
    /// Mean log loss (probabilities clipped to [1e-15, 1 - 1e-15]).
    pub log_loss: f64,
    /// Lift in the top decile.
    pub top_decile_lift: f64,
    /// The ten deciles.
    pub deciles: Vec<Decile>,
}

/// ROC AUC by the rank-sum formula, average ranks for ties. NaN when one outcome is absent.
pub fn roc_auc(scores: &[f64], labels: &[f64]) -> f64 {
    let n = scores.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j + 1) as f64 / 2.0;
        for &k in &order[i..j] {
            if labels[k] == 1.0 {
                rank_sum += avg_rank;
            }
        }
        i = j;
    }
    let pos = labels.iter().filter(|&&y| y == 1.0).count() as f64;
    let neg = n as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Average precision. NaN when there is no positive.
pub fn average_precision(scores: &[f64], labels: &[f64]) -> f64 {
    let n = scores.len();
    let pos = labels.iter().filter(|&&y| y == 1.0).count() as f64;
    if pos == 0.0 {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && scores[order[j]] == scores[order[i]] {
            if labels[order[j]] == 1.0 {
                tp += 1.0;
            }
            seen += 1.0;
            j += 1;
        }
        let recall = tp / pos;
        ap += (recall - last_recall) * (tp / seen);
        last_recall = recall;
        i = j;
    }
    ap
}

/// Evaluates probabilities `p` against 0/1 `labels`.
pub fn evaluate(p: &[f64], labels: &[f64]) -> Evaluation {
    let n = p.len();
    let positives = labels.iter().filter(|&&y| y == 1.0).count();
    let base_rate = if n == 0 {
        f64::NAN
    } else {
        positives as f64 / n as f64
    };
    let brier = p
        .iter()
        .zip(labels)
        .map(|(q, y)| (q - y) * (q - y))
        .sum::<f64>()
        / n.max(1) as f64;
    let log_loss = p
        .iter()
        .zip(labels)
        .map(|(q, y)| {
            let q = q.clamp(1e-15, 1.0 - 1e-15);
            -(y * q.ln() + (1.0 - y) * (1.0 - q).ln())
        })
        .sum::<f64>()
        / n.max(1) as f64;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let mut deciles = Vec::with_capacity(10);
    let mut cumulative = 0u64;
    for d in 0..10 {
        let rows = &order[d * n / 10..(d + 1) * n / 10];
        let k = rows.len() as u64;
        let pos = rows.iter().filter(|&&i| labels[i] == 1.0).count() as u64;
        cumulative += pos;
        let rate = if k == 0 {
            f64::NAN
        } else {
            pos as f64 / k as f64
        };
        deciles.push(Decile {
            decile: d as u8 + 1,
            rows: k,
            positives: pos,
            mean_predicted: if k == 0 {
                f64::NAN
            } else {
                rows.iter().map(|&i| p[i]).sum::<f64>() / k as f64
            },
            actual_rate: rate,
            lift: rate / base_rate,
            cumulative_gain: if positives == 0 {
                f64::NAN
            } else {
                cumulative as f64 / positives as f64
            },
        });
    }
    Evaluation {
        rows: n as u64,
        positives: positives as u64,
        roc_auc: roc_auc(p, labels),
        pr_auc: average_precision(p, labels),
        brier,
        log_loss,
        top_decile_lift: deciles[0].lift,
        deciles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scikit-learn's documented examples: `roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])`
    /// is 0.75 and `average_precision_score` of the same is 0.8333.
    #[test]
    fn scikit_learn_documented_examples() {
        let y = [0.0, 0.0, 1.0, 1.0];
        let s = [0.1, 0.4, 0.35, 0.8];
        assert!((roc_auc(&s, &y) - 0.75).abs() < 1e-12);
        assert!((average_precision(&s, &y) - 0.833_333_333_333).abs() < 1e-9);
    }

    #[test]
    fn ties_count_half_and_one_outcome_is_nan() {
        assert!((roc_auc(&[0.5, 0.5], &[0.0, 1.0]) - 0.5).abs() < 1e-12);
        assert!(roc_auc(&[0.1, 0.2], &[1.0, 1.0]).is_nan());
    }

    #[test]
    fn deciles_rank_and_accumulate() {
        let p: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
        let y: Vec<f64> = (0..100).map(|i| if i >= 80 { 1.0 } else { 0.0 }).collect();
        let e = evaluate(&p, &y);
        assert_eq!(e.rows, 100);
        assert_eq!(e.positives, 20);
        assert_eq!(e.deciles[0].positives, 10);
        assert!((e.top_decile_lift - 5.0).abs() < 1e-12);
        assert!((e.deciles[1].cumulative_gain - 1.0).abs() < 1e-12);
        assert!((e.roc_auc - 1.0).abs() < 1e-12);
        let brier: f64 = p
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            / 100.0;
        assert!((e.brier - brier).abs() < 1e-12);
        assert_eq!(e.deciles.iter().map(|d| d.rows).sum::<u64>(), 100);
    }
}
