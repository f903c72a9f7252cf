//! Profiles: a small CART-style decision tree (Gini impurity, binary splits) grown on the same
//! features as a classifier, printed as readable rules such as "days_since_last_order ≥ 200 and
//! orders_last_365_days < 2: 81% churn (1,204 customers)". The tree explains; it does not score.
//!
//! Numeric splits are tried at up to 32 quantiles of the node's values; rows without a value go
//! to whichever side lowers the impurity more, and the rule says "or unknown" on that side.
//! Categorical levels split as "is" / "is not". A split needs at least `min_leaf` rows on each
//! side; the tree stops at `max_depth`.

use serde::{Deserialize, Serialize};

use crate::features::{ColumnMeaning, FeatureColumn};

/// A node's numeric thresholds are chosen among at most this many of its values (taken evenly
/// through the node's rows); the rows on each side of a threshold are then counted over every
/// row. A node with no more values than this gets exactly the thresholds of its sorted values.
const THRESHOLD_SAMPLE: usize = 65_536;

/// One leaf of the profile tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRule {
    /// The conditions that lead to the leaf, joined with "and".
    pub rule: String,
    /// Rows in the leaf.
    pub rows: u64,
    /// Share of positive outcomes in the leaf.
    pub rate: f64,
}

/// One branch taken on the way to a leaf.
#[derive(Debug, Clone)]
struct Condition {
    column: usize,
    /// The "less than" side (for a level: "is not").
    below: bool,
    threshold: f64,
    /// Rows without a value took this branch.
    with_unknown: bool,
}

/// The conditions of a path as text: the bounds on one numeric feature are merged into one range
/// (`286 ≤ days < 535`), and "or unknown" is said when rows without a value stay on the path.
fn render(meanings: &[ColumnMeaning], path: &[Condition]) -> String {
    if path.is_empty() {
        return "everyone".into();
    }
    let mut columns: Vec<usize> = Vec::new();
    for c in path {
        if !columns.contains(&c.column) {
            columns.push(c.column);
        }
    }
    let mut parts = Vec::new();
    for column in columns {
        let on: Vec<&Condition> = path.iter().filter(|c| c.column == column).collect();
        match &meanings[column] {
            ColumnMeaning::Level(name, level) => {
                let is = on.iter().any(|c| !c.below);
                parts.push(if is {
                    format!("{name} is {level}")
                } else {
                    format!("{name} is not {level}")
                });
            }
            ColumnMeaning::Numeric(name) => {
                let lower = on
                    .iter()
                    .filter(|c| !c.below)
                    .map(|c| c.threshold)
                    .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
                let upper = on
                    .iter()
                    .filter(|c| c.below)
                    .map(|c| c.threshold)
                    .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t))));
                let range = match (lower, upper) {
                    (Some(l), Some(u)) => {
                        format!("{} ≤ {name} < {}", format_value(l), format_value(u))
                    }
                    (Some(l), None) => format!("{name} ≥ {}", format_value(l)),
                    (None, Some(u)) => format!("{name} < {}", format_value(u)),
                    (None, None) => name.clone(),
                };
                parts.push(if on.iter().all(|c| c.with_unknown) {
                    format!("({range} or unknown)")
                } else {
                    range
                });
            }
        }
    }
    parts.join(" and ")
}

struct Split {
    column: usize,
    threshold: f64,
    missing_left: bool,
    gain: f64,
}

fn gini(pos: f64, n: f64) -> f64 {
    if n == 0.0 {
        return 0.0;
    }
    let p = pos / n;
    2.0 * p * (1.0 - p) * n
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Grows the tree on `columns` (raw values, NaN for missing) and 0/1 `labels`, and returns its
/// leaves from the highest positive rate to the lowest.
pub fn profile(
    meanings: &[ColumnMeaning],
    columns: &[FeatureColumn<'_>],
    labels: &[f64],
    max_depth: usize,
    min_leaf: usize,
) -> Vec<ProfileRule> {
    let rows: Vec<usize> = (0..labels.len()).collect();
    let mut leaves = Vec::new();
    grow(
        meanings,
        columns,
        labels,
        rows,
        &[],
        max_depth,
        min_leaf.max(1),
        &mut leaves,
    );
    leaves.sort_by(|a: &ProfileRule, b| b.rate.total_cmp(&a.rate).then(b.rows.cmp(&a.rows)));
    leaves
}

#[allow(clippy::too_many_arguments)]
fn grow(
    meanings: &[ColumnMeaning],
    columns: &[FeatureColumn<'_>],
    labels: &[f64],
    rows: Vec<usize>,
    path: &[Condition],
    depth_left: usize,
    min_leaf: usize,
    leaves: &mut Vec<ProfileRule>,
) {
    let n = rows.len() as f64;
    let pos = rows.iter().filter(|&&i| labels[i] == 1.0).count() as f64;
    let leaf = |leaves: &mut Vec<ProfileRule>| {
        leaves.push(ProfileRule {
            rule: render(meanings, path),
            rows: rows.len() as u64,
            rate: if n > 0.0 { pos / n } else { f64::NAN },
        });
    };
    if depth_left == 0 || rows.len() < 2 * min_leaf || pos == 0.0 || pos == n {
        leaf(leaves);
        return;
    }
    let parent = gini(pos, n);
    let mut best: Option<Split> = None;
    for (c, values) in columns.iter().enumerate() {
        let (mut present_n, mut miss_n, mut miss_pos) = (0usize, 0.0, 0.0);
        for &i in &rows {
            if values.value(i).is_nan() {
                miss_n += 1.0;
                miss_pos += labels[i];
            } else {
                present_n += 1;
            }
        }
        if present_n == 0 {
            continue;
        }
        // The values thresholds are chosen among: all of the node's, or every `stride`-th.
        let stride = present_n.div_ceil(THRESHOLD_SAMPLE);
        let mut sample: Vec<f64> = rows
            .iter()
            .map(|&i| values.value(i))
            .filter(|v| !v.is_nan())
            .step_by(stride)
            .collect();
        sample.sort_by(f64::total_cmp);
        // Candidate thresholds: split before the first row of each distinct value at up to 32
        // evenly spaced ranks.
        let mut thresholds: Vec<f64> = Vec::new();
        let steps = 32.min(sample.len());
        for s in 1..steps {
            let mut k = s * sample.len() / steps;
            while k > 0 && k < sample.len() && sample[k - 1] == sample[k] {
                k += 1;
            }
            if k > 0 && k < sample.len() && thresholds.last() != Some(&sample[k]) {
                thresholds.push(sample[k]);
            }
        }
        if thresholds.is_empty() {
            continue;
        }
        // Rows and positives by bin: bin j holds the values in [thresholds[j-1], thresholds[j]).
        let mut bin_n = vec![0.0; thresholds.len() + 1];
        let mut bin_pos = vec![0.0; thresholds.len() + 1];
        for &i in &rows {
            let v = values.value(i);
            if v.is_nan() {
                continue;
            }
            let bin = thresholds.partition_point(|&t| t <= v);
            bin_n[bin] += 1.0;
            bin_pos[bin] += labels[i];
        }
        let total_present_pos: f64 = bin_pos.iter().sum();
        let (mut ln, mut lp) = (0.0, 0.0);
        for (j, &threshold) in thresholds.iter().enumerate() {
            ln += bin_n[j];
            lp += bin_pos[j];
            let (rn, rp) = (present_n as f64 - ln, total_present_pos - lp);
            for missing_left in [true, false] {
                if miss_n == 0.0 && !missing_left {
                    continue;
                }
                let (ln, lp, rn, rp) = if missing_left {
                    (ln + miss_n, lp + miss_pos, rn, rp)
                } else {
                    (ln, lp, rn + miss_n, rp + miss_pos)
                };
                if (ln as usize) < min_leaf || (rn as usize) < min_leaf {
                    continue;
                }
                let gain = parent - gini(lp, ln) - gini(rp, rn);
                if best.as_ref().is_none_or(|b| gain > b.gain + 1e-12) {
                    best = Some(Split {
                        column: c,
                        threshold,
                        missing_left,
                        gain,
                    });
                }
            }
        }
    }
    let Some(split) = best.filter(|s| s.gain > 1e-9 * n) else {
        leaf(leaves);
        return;
    };
    let values = &columns[split.column];
    let (left, right): (Vec<usize>, Vec<usize>) = rows.iter().partition(|&&i| {
        let v = values.value(i);
        if v.is_nan() {
            split.missing_left
        } else {
            v < split.threshold
        }
    });
    let has_missing = rows.iter().any(|&i| values.value(i).is_nan());
    for (side, below) in [(left, true), (right, false)] {
        let mut next = path.to_vec();
        next.push(Condition {
            column: split.column,
            below,
            threshold: split.threshold,
            with_unknown: has_missing && split.missing_left == below,
        });
        grow(
            meanings,
            columns,
            labels,
            side,
            &next,
            depth_left - 1,
            min_leaf,
            leaves,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_finds_the_planted_rule_and_states_it() {
        // Churn is 90% when days > 100 and there is an open complaint, 10% otherwise.
        let mut days = Vec::new();
        let mut complaint = Vec::new();
        let mut y = Vec::new();
        for i in 0..1000 {
            let d = f64::from(i % 200);
            let c = if i % 3 == 0 { 1.0 } else { 0.0 };
            let high = d >= 100.0 && c == 1.0;
            let label = if high { i % 10 != 0 } else { i % 10 == 0 };
            days.push(d);
            complaint.push(c);
            y.push(if label { 1.0 } else { 0.0 });
        }
        let meanings = vec![
            ColumnMeaning::Numeric("days_since_last_order".into()),
            ColumnMeaning::Level("open_complaint".into(), "yes".into()),
        ];
        let columns = [
            FeatureColumn::Numeric(&days),
            FeatureColumn::Numeric(&complaint),
        ];
        let rules = profile(&meanings, &columns, &y, 2, 20);
        assert_eq!(
            rules[0].rule,
            "open_complaint is yes and days_since_last_order ≥ 100"
        );
        assert!((rules[0].rate - 0.9).abs() < 0.02, "{rules:?}");
        assert_eq!(rules.iter().map(|r| r.rows).sum::<u64>(), 1000);
    }

    #[test]
    fn bounds_on_one_feature_merge_into_a_range() {
        let meanings = vec![ColumnMeaning::Numeric("days".into())];
        let path = [
            Condition {
                column: 0,
                below: false,
                threshold: 132.0,
                with_unknown: false,
            },
            Condition {
                column: 0,
                below: false,
                threshold: 286.0,
                with_unknown: false,
            },
            Condition {
                column: 0,
                below: true,
                threshold: 535.0,
                with_unknown: false,
            },
        ];
        assert_eq!(render(&meanings, &path), "286 ≤ days < 535");
        assert_eq!(render(&meanings, &path[..2]), "days ≥ 286");
    }

    #[test]
    fn unknown_values_are_named_on_their_side() {
        let x = vec![f64::NAN, f64::NAN, 1.0, 2.0, 30.0, 40.0];
        let y = vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0];
        let rules = profile(
            &[ColumnMeaning::Numeric("gap".into())],
            &[FeatureColumn::Numeric(&x)],
            &y,
            1,
            2,
        );
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].rule, "(gap ≥ 30 or unknown)");
        assert_eq!(rules[1].rule, "gap < 30");
    }

    #[test]
    fn a_large_node_chooses_thresholds_on_a_sample_and_counts_every_row() {
        // 200,000 rows (over the threshold sample): the rate jumps at x = 7 of 0..10, and a
        // level column reads its 0/1 values from codes.
        let n = 200_000;
        let x: Vec<f64> = (0..n).map(|i| f64::from((i / 7) % 10)).collect();
        let codes: Vec<u32> = (0..n).map(|i| i % 3).collect();
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if (v >= 7.0) != (i % 10 == 0) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let meanings = vec![
            ColumnMeaning::Numeric("x".into()),
            ColumnMeaning::Level("band".into(), "b".into()),
        ];
        let columns = [
            FeatureColumn::Numeric(&x),
            FeatureColumn::Level {
                codes: &codes,
                hit: vec![false, false, true],
            },
        ];
        let rules = profile(&meanings, &columns, &y, 1, 20);
        let high = x.iter().filter(|&&v| v >= 7.0).count() as u64;
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert_eq!(rules[0].rule, "x ≥ 7");
        assert_eq!(rules[0].rows, high, "every row of the side is counted");
        assert_eq!(rules[1].rows, u64::from(n) - high);
        assert!((rules[0].rate - 0.9).abs() < 0.01, "{rules:?}");
    }
}
