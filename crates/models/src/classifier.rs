//! Binary classifiers for churn and campaign response: logistic regression and gradient-boosted
//! trees (the `forust-ml` crate), trained on one window, compared on a later one, the better kept.
//!
//! [`train_and_select`] fits both algorithms on the training rows, evaluates each on the
//! validation rows (which come from a later time, never from the training rows), keeps the one
//! with the higher validation ROC AUC, refits it on the refit rows (the latest labelled window)
//! and grows a profile tree on them. The returned [`Predictor`] is plain data: saved as JSON in a
//! model artifact, it scores again without anything else.

use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

use crate::evaluate::{Evaluation, evaluate};
use crate::features::{Encoding, FeatureTable};
use crate::logistic::Logistic;
use crate::profile::{ProfileRule, profile};
use crate::rfm::{Error, Result};

/// The L2 penalty of the logistic regression (scikit-learn's C = 1).
const LOGISTIC_L2: f64 = 1.0;

/// Fewest training rows, and fewest of each outcome, a classifier is fitted on.
const MIN_ROWS: usize = 50;
const MIN_EACH_OUTCOME: usize = 10;

/// A trained classifier with the encoding of its features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum Predictor {
    /// Standardised numeric features and one-hot levels, L2-regularised.
    LogisticRegression {
        /// Feature encoding.
        encoding: Encoding,
        /// Coefficients.
        model: Logistic,
    },
    /// Gradient-boosted trees on raw numeric features (missing values routed by the trees) and
    /// one-hot levels; `booster` is forust's own JSON form.
    BoostedTrees {
        /// Feature encoding (levels only; numeric values are used as they are).
        encoding: Encoding,
        /// The booster, as forust writes it.
        booster: serde_json::Value,
    },
}

/// Which algorithm a [`Predictor`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// [`Predictor::LogisticRegression`].
    LogisticRegression,
    /// [`Predictor::BoostedTrees`].
    BoostedTrees,
}

impl Algorithm {
    /// The name used in tables and artifacts.
    pub fn name(self) -> &'static str {
        match self {
            Self::LogisticRegression => "logistic_regression",
            Self::BoostedTrees => "boosted_trees",
        }
    }
}

fn booster_error(e: impl std::fmt::Display) -> Error {
    Error::BadInput(format!("boosted trees: {e}"))
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Predictor {
    /// Fits `algorithm` on the labelled `table`.
    pub fn fit(algorithm: Algorithm, table: &FeatureTable, what: &str) -> Result<Self> {
        let labels = table.labels(what)?;
        let positives = labels.iter().filter(|&&y| y == 1.0).count();
        let negatives = labels.len() - positives;
        if labels.len() < MIN_ROWS || positives < MIN_EACH_OUTCOME || negatives < MIN_EACH_OUTCOME {
            return Err(Error::BadInput(format!(
                "{what}: too little to learn from: {} rows, {positives} positive and {negatives} negative (at least {MIN_ROWS} rows and {MIN_EACH_OUTCOME} of each outcome)",
                labels.len()
            )));
        }
        let encoding = Encoding::learn(table);
        match algorithm {
            Algorithm::LogisticRegression => {
                let x = encoding.matrix(table, true)?;
                let model = Logistic::fit(&x, labels, LOGISTIC_L2)
                    .map_err(|e| Error::BadInput(format!("{what}: {e}")))?;
                Ok(Self::LogisticRegression { encoding, model })
            }
            Algorithm::BoostedTrees => {
                let (data, columns) = encoding.column_major_rows(table, 0..table.len())?;
                if columns == 0 {
                    return Err(Error::BadInput(format!("{what}: no features")));
                }
                let matrix = Matrix::new(&data, labels.len(), columns);
                let mut booster = GradientBooster::default()
                    .set_iterations(150)
                    .set_learning_rate(0.05)
                    .set_max_depth(4)
                    .set_min_leaf_weight(5.0)
                    .set_l2(1.0)
                    .set_nbins(128)
                    .set_seed(42)
                    // One thread: parallel histograms sum floats in a varying order, and the same
                    // inputs then gave a different tree now and then (the artifact differed on a rerun).
                    .set_parallel(false)
                    // Histograms filled row by row from a tiled copy of the binned rows: the same
                    // trees whatever the threads; at 1,000,000 persons the churn fits 18.3 -> 12.6 s
                    // at the same validation AUC (docs/performance.md).
                    .set_tiled_histograms(true);
                booster
                    .fit_unweighted(&matrix, labels, None)
                    .map_err(booster_error)?;
                let json = booster.json_dump().map_err(booster_error)?;
                let booster = serde_json::from_str(&json).map_err(booster_error)?;
                Ok(Self::BoostedTrees { encoding, booster })
            }
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::LogisticRegression { .. } => Algorithm::LogisticRegression,
            Self::BoostedTrees { .. } => Algorithm::BoostedTrees,
        }
    }

    /// The feature encoding.
    pub fn encoding(&self) -> &Encoding {
        match self {
            Self::LogisticRegression { encoding, .. } | Self::BoostedTrees { encoding, .. } => {
                encoding
            }
        }
    }

    /// The probability of the positive outcome for every row of `table`, scored a slice of
    /// [`PREDICT_ROWS`] rows at a time (the matrix of a whole large table is never built).
    pub fn predict(&self, table: &FeatureTable) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(table.len());
        let booster = match self {
            Self::BoostedTrees { booster, .. } if !table.is_empty() => {
                Some(GradientBooster::from_json(&booster.to_string()).map_err(booster_error)?)
            }
            _ => None,
        };
        let mut start = 0;
        while start < table.len() {
            let rows = start..(start + PREDICT_ROWS).min(table.len());
            let n = rows.len();
            match (self, &booster) {
                (Self::LogisticRegression { encoding, model }, _) => {
                    out.extend(model.predict(&encoding.matrix_rows(table, true, rows)?)?);
                }
                (Self::BoostedTrees { encoding, .. }, Some(booster)) => {
                    let (data, columns) = encoding.column_major_rows(table, rows)?;
                    let matrix = Matrix::new(&data, n, columns);
                    out.extend(booster.predict(&matrix, true).into_iter().map(sigmoid));
                }
                (Self::BoostedTrees { .. }, None) => {
                    return Err(Error::Internal("the booster was not loaded".into()));
                }
            }
            start += n;
        }
        Ok(out)
    }
}

/// Rows scored at once by [`Predictor::predict`].
pub const PREDICT_ROWS: usize = 65_536;

/// What [`train_and_select`] found.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The kept algorithm, refitted on the refit rows.
    pub predictor: Predictor,
    /// Each algorithm's evaluation on the validation rows, in the order tried.
    pub candidates: Vec<(Algorithm, Evaluation)>,
    /// The kept algorithm's validation evaluation.
    pub validation: Evaluation,
    /// The profile tree's leaves on the refit rows.
    pub profile: Vec<ProfileRule>,
}

/// Rows a classifier is fitted on at most: larger training and refit windows are sampled
/// ([`FeatureTable::sample`]); scoring always uses every row, validation every row up to
/// [`MAX_VALIDATION_ROWS`]. Measured on the realistic demo at 1,000,000 persons
/// (docs/performance.md): validation ROC AUC 0.829 against 0.830 with every row for churn
/// (783,187 training rows), 0.717 against 0.719 for propensity; the score step 149 s instead of
/// 333 s (most of it was the boosted trees' histograms).
pub const MAX_TRAINING_ROWS: usize = 200_000;

/// Rows the score step reads at most of a classifier's validation window: a larger window is
/// read as a sample ([`crate::FeatureTableBuilder::sampled`]), so the step's memory does not grow
/// with the customer base. The validation metrics of a sampled window are measured on the sample
/// (a ROC AUC on a million rows has a standard error near 0.001) and the window's size is
/// reported beside them (`validation_window_rows`).
pub const MAX_VALIDATION_ROWS: usize = 1_000_000;

/// Fits both algorithms on `train`, evaluates them on `valid`, keeps the better by ROC AUC (the
/// logistic regression on a tie: it is simpler), refits it on `refit` and profiles `refit`. The
/// fits use at most [`MAX_TRAINING_ROWS`] rows of `train` and `refit`.
pub fn train_and_select(
    what: &str,
    train: &FeatureTable,
    valid: &FeatureTable,
    refit: &FeatureTable,
) -> Result<Selection> {
    train_and_select_on(what, train, valid, refit, MAX_TRAINING_ROWS)
}

/// [`train_and_select`] with the fits on at most `max_training_rows` rows.
pub fn train_and_select_on(
    what: &str,
    train: &FeatureTable,
    valid: &FeatureTable,
    refit: &FeatureTable,
    max_training_rows: usize,
) -> Result<Selection> {
    let profiled = refit;
    let train = train.sample(max_training_rows);
    let refit = refit.sample(max_training_rows);
    let (train, refit) = (train.as_ref(), refit.as_ref());
    let valid_labels = valid.labels(what)?;
    let positives = valid_labels.iter().filter(|&&y| y == 1.0).count();
    if positives == 0 || positives == valid_labels.len() {
        return Err(Error::BadInput(format!(
            "{what}: the validation rows ({}) have only one outcome, so nothing can be validated",
            valid_labels.len()
        )));
    }
    let mut candidates = Vec::new();
    for algorithm in [Algorithm::LogisticRegression, Algorithm::BoostedTrees] {
        let model = Predictor::fit(algorithm, train, &format!("{what} ({})", algorithm.name()))?;
        let p = model.predict(valid)?;
        candidates.push((algorithm, evaluate(&p, valid_labels)));
    }
    let (best, validation) = candidates
        .iter()
        .fold(None::<&(Algorithm, Evaluation)>, |best, c| match best {
            Some(b)
                if c.1.roc_auc.partial_cmp(&b.1.roc_auc) != Some(std::cmp::Ordering::Greater) =>
            {
                Some(b)
            }
            _ => Some(c),
        })
        .cloned()
        .ok_or_else(|| Error::Internal("no classifier was tried".into()))?;
    let predictor = Predictor::fit(best, refit, &format!("{what} ({}, refit)", best.name()))?;
    // The profile describes the refit rows as given (its counts are customers). Refit rows that
    // are themselves a sample of a larger window (the score step reads a sample of a large
    // window) stand for that window: each leaf's rows are scaled to it.
    let labels = profiled.labels(what)?;
    let encoding = predictor.encoding();
    let columns = encoding.feature_columns(profiled)?;
    let min_leaf = (profiled.len() / 40).max(20);
    let mut rules = profile(&encoding.columns(), &columns, labels, 3, min_leaf);
    if profiled.window_len() > profiled.len() && !profiled.is_empty() {
        let scale = profiled.window_len() as f64 / profiled.len() as f64;
        for r in &mut rules {
            r.rows = (r.rows as f64 * scale).round() as u64;
        }
    }
    Ok(Selection {
        predictor,
        candidates,
        validation,
        profile: rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows where the outcome depends on `x` through a threshold and on a level: trees and the
    /// logistic regression both learn it; both score far above chance on later rows.
    fn table(n: usize, offset: usize) -> FeatureTable {
        let mut x = Vec::new();
        let mut z = Vec::new();
        let mut band = Vec::new();
        let mut y = Vec::new();
        for i in offset..offset + n {
            let xi = ((i * 37) % 100) as f64;
            let zi = ((i * 11) % 7) as f64;
            let b = if i % 4 == 0 { "high" } else { "low" };
            let signal = xi > 60.0 || b == "high";
            let noise = (i * 7919) % 10 == 0;
            x.push(if i % 13 == 0 { f64::NAN } else { xi });
            z.push(zi);
            band.push(Some(b));
            y.push(if signal != noise { 1.0 } else { 0.0 });
        }
        FeatureTable {
            ids: (offset..offset + n).map(|i| format!("c{i}")).collect(),
            labels: Some(y),
            numeric: vec![("x".into(), x), ("z".into(), z)],
            categorical: vec![("band".into(), band.into_iter().collect())],
            ..FeatureTable::default()
        }
    }

    #[test]
    fn both_algorithms_learn_and_the_better_is_kept() -> Result<()> {
        let train = table(2000, 0);
        let valid = table(1000, 2000);
        let s = train_and_select("test", &train, &valid, &valid)?;
        assert_eq!(s.candidates.len(), 2);
        for (a, e) in &s.candidates {
            assert!(e.roc_auc > 0.75, "{} {}", a.name(), e.roc_auc);
        }
        let best = s
            .candidates
            .iter()
            .map(|c| c.1.roc_auc)
            .fold(f64::MIN, f64::max);
        assert_eq!(s.validation.roc_auc, best);
        assert!(!s.profile.is_empty());
        // Saved and loaded, the predictor scores the same.
        let json =
            serde_json::to_string(&s.predictor).map_err(|e| Error::Internal(e.to_string()))?;
        let back: Predictor =
            serde_json::from_str(&json).map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(back.predict(&valid)?, s.predictor.predict(&valid)?);
        Ok(())
    }

    #[test]
    fn fits_on_a_sample_of_a_large_window_and_validates_on_every_row() -> Result<()> {
        let train = table(6000, 0);
        let valid = table(1000, 6000);
        let sample = train.sample(1500);
        assert!(
            (1300..1700).contains(&sample.len()),
            "{} rows",
            sample.len()
        );
        assert_eq!(
            sample.ids,
            train.sample(1500).ids,
            "the same rows every time"
        );
        assert_eq!(train.sample(6000).len(), 6000);
        let sampled = train_and_select_on("test", &train, &valid, &train, 1500)?;
        let whole = train_and_select_on("test", &train, &valid, &train, usize::MAX)?;
        assert_eq!(sampled.validation.rows, 1000);
        assert!(
            (sampled.validation.roc_auc - whole.validation.roc_auc).abs() < 0.02,
            "{} against {}",
            sampled.validation.roc_auc,
            whole.validation.roc_auc
        );
        assert!(
            sampled.predictor != whole.predictor,
            "the sample was not used"
        );
        Ok(())
    }

    #[test]
    fn a_profile_of_a_sampled_refit_window_counts_the_window() -> Result<()> {
        let train = table(6000, 0);
        let valid = table(1000, 6000);
        let whole = train_and_select_on("test", &train, &valid, &train, 1500)?;
        let rows = |s: &Selection| s.profile.iter().map(|r| r.rows).sum::<u64>();
        assert_eq!(rows(&whole), 6000, "the leaves cover every refit row");
        // The refit rows as a sample of the window (as the score step reads a large window).
        let sample = train.sample(3000).into_owned();
        assert_eq!(sample.window_len(), 6000);
        let sampled = train_and_select_on("test", &train, &valid, &sample, 1500)?;
        let counted = rows(&sampled);
        assert!(
            counted.abs_diff(6000) <= sampled.profile.len() as u64,
            "{counted} rows: the leaves are scaled to the window"
        );
        // The refit fit samples the window as it would the whole: the same predictor.
        assert_eq!(sampled.predictor, whole.predictor);
        Ok(())
    }

    #[test]
    fn boosted_trees_are_deterministic_and_round_trip() -> Result<()> {
        let train = table(800, 0);
        let a = Predictor::fit(Algorithm::BoostedTrees, &train, "t")?;
        let b = Predictor::fit(Algorithm::BoostedTrees, &train, "t")?;
        assert_eq!(a, b);
        let p = a.predict(&table(100, 5000))?;
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        Ok(())
    }

    #[test]
    fn too_few_rows_are_refused_with_the_counts() {
        let t = table(30, 0);
        let e = Predictor::fit(Algorithm::LogisticRegression, &t, "churn training");
        assert!(e.is_err_and(|e| {
            e.to_string()
                .contains("churn training: too little to learn from: 30 rows")
        }));
    }
}
