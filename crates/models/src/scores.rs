//! The nightly `score` step's models and tables: churn and campaign-propensity classifiers
//! trained, validated on later time, checked against floors and applied; and the tables
//! `customer_scores`, `model_deciles` and `model_profiles` that publish them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use chrono::NaiveDate;

use crate::artifact::{ARTIFACT_FORMAT, Artifact, ArtifactModel};
use crate::classifier::{Selection, train_and_select};
use crate::features::FeatureTable;
use crate::rfm::{Error, Result};

/// A classifier as trained, validated and applied in one run.
#[derive(Debug, Clone)]
pub struct ClassifierRun {
    /// `churn` or `propensity`.
    pub model: String,
    /// The version written beside its scores.
    pub version: String,
    /// What was tried and kept.
    pub selection: Selection,
    /// Training rows of the compared fits.
    pub training_rows: usize,
    /// `(customer_id, probability)` for every scored row.
    pub scores: Vec<(String, f64)>,
    /// The artifact to save.
    pub artifact: Artifact,
}

/// What a classifier is trained and applied on.
#[derive(Debug, Clone)]
pub struct ClassifierData<'a> {
    /// `churn` or `propensity`.
    pub model: &'a str,
    /// The run's as-of date.
    pub as_of: NaiveDate,
    /// Rows the compared fits learn from: the training window's rows, or a sample of at most
    /// [`crate::MAX_TRAINING_ROWS`] of them ([`crate::FeatureTableBuilder::sampled`]; the fits
    /// would sample them so anyway).
    pub train: &'a FeatureTable,
    /// Rows in the training window before any sample was taken.
    pub train_window_rows: usize,
    /// Later rows they are judged on.
    pub valid: &'a FeatureTable,
    /// Rows the kept algorithm is refitted on (the latest labelled ones).
    pub refit: &'a FeatureTable,
    /// The training and validation windows, for the artifact.
    pub window: BTreeMap<String, String>,
    /// The scoring query with the date written `{as_of}`, for the artifact.
    pub scoring_query: String,
    /// Lowest acceptable validation ROC AUC.
    pub min_roc_auc: Option<f64>,
}

/// A classifier trained, validated and checked against its floor, with its artifact: what
/// [`TrainedClassifier::apply`] scores rows with. Training holds no scoring rows, so they can be
/// read once the training rows are gone.
#[derive(Debug, Clone)]
pub struct TrainedClassifier {
    /// `churn` or `propensity`.
    pub model: String,
    /// The version written beside its scores.
    pub version: String,
    /// What was tried and kept.
    pub selection: Selection,
    /// Training rows of the compared fits (before any sample).
    pub training_rows: usize,
    /// The artifact to save.
    pub artifact: Artifact,
}

impl TrainedClassifier {
    /// Scores every row of `score` (the rows as of the as-of date).
    pub fn apply(self, score: &FeatureTable) -> Result<ClassifierRun> {
        let p = self.selection.predictor.predict(score)?;
        let scores: Vec<(String, f64)> = score.ids.iter().map(str::to_string).zip(p).collect();
        Ok(self.scored(scores))
    }

    /// The run whose scores are `scores`, `(customer_id, probability)` per scored row: rows
    /// scored part by part as they were read ([`Predictor::predict`] on each part) rather than
    /// held whole as one [`FeatureTable`].
    pub fn scored(mut self, scores: Vec<(String, f64)>) -> ClassifierRun {
        self.artifact
            .metrics
            .insert("scored_rows".to_string(), scores.len() as f64);
        ClassifierRun {
            model: self.model,
            version: self.version,
            selection: self.selection,
            training_rows: self.training_rows,
            scores,
            artifact: self.artifact,
        }
    }
}

/// Trains, validates, checks the floor and scores `score`. A validation ROC AUC below the floor is
/// an error saying so.
pub fn run_classifier(data: &ClassifierData<'_>, score: &FeatureTable) -> Result<ClassifierRun> {
    train_classifier(data)?.apply(score)
}

/// Trains, validates and checks the floor. A validation ROC AUC below the floor is an error
/// saying so.
pub fn train_classifier(data: &ClassifierData<'_>) -> Result<TrainedClassifier> {
    let what = format!("{} model", data.model);
    let selection = train_and_select(&what, data.train, data.valid, data.refit)?;
    let auc = selection.validation.roc_auc;
    if let Some(floor) = data.min_roc_auc
        && auc
            .partial_cmp(&floor)
            .is_none_or(|o| o == std::cmp::Ordering::Less)
    {
        return Err(Error::BelowFloor(format!(
            "the {what}'s validation ROC AUC is {auc:.4}, below the floor of {floor} declared in the job (validated on {} rows)",
            selection.validation.rows
        )));
    }
    let algorithm = selection.predictor.algorithm().name();
    let version = format!(
        "{}:{algorithm}@{} (clientele {})",
        data.model,
        data.as_of.format("%Y-%m-%d"),
        env!("CARGO_PKG_VERSION")
    );
    let mut metrics = BTreeMap::new();
    let v = &selection.validation;
    for (name, value) in [
        ("validation_roc_auc", v.roc_auc),
        ("validation_pr_auc", v.pr_auc),
        ("validation_brier", v.brier),
        ("validation_log_loss", v.log_loss),
        ("validation_top_decile_lift", v.top_decile_lift),
        ("validation_rows", v.rows as f64),
        ("validation_positives", v.positives as f64),
        ("training_rows", data.train_window_rows as f64),
        ("refit_rows", data.refit.window_len() as f64),
    ] {
        metrics.insert(name.to_string(), value);
    }
    // Only when the validation window was read as a sample: how many rows it had.
    if data.valid.window_len() > data.valid.len() {
        metrics.insert(
            "validation_window_rows".to_string(),
            data.valid.window_len() as f64,
        );
    }
    for (alg, e) in &selection.candidates {
        metrics.insert(format!("{}_validation_roc_auc", alg.name()), e.roc_auc);
    }
    let mut checksums = BTreeMap::new();
    checksums.insert("training_rows".to_string(), data.train.checksum());
    checksums.insert("validation_rows".to_string(), data.valid.checksum());
    checksums.insert("refit_rows".to_string(), data.refit.checksum());
    let artifact = Artifact {
        artifact_format: ARTIFACT_FORMAT,
        model: data.model.to_string(),
        version: version.clone(),
        trained_as_of: data.as_of.format("%Y-%m-%d").to_string(),
        training_window: data.window.clone(),
        features: selection.predictor.encoding().feature_names(),
        scoring_query: data.scoring_query.clone(),
        model_params: ArtifactModel::Classifier {
            predictor: selection.predictor.clone(),
        },
        metrics,
        data_checksums: checksums,
    };
    Ok(TrainedClassifier {
        model: data.model.to_string(),
        version,
        selection,
        training_rows: data.train_window_rows,
        artifact,
    })
}

/// How campaign-send rows were split into training and validation rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignSplit {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    /// `latest campaigns` or, with one campaign, `customer hash within the one campaign`.
    pub method: &'static str,
}

/// Splits campaign-send rows (`_group` is the campaign) into training and validation rows. With
/// two campaigns or more, the latest `holdout_share` of the campaigns by first send date (at least
/// one, never all) are validation rows: the model is judged on a later campaign than it learnt
/// from. With one campaign, there is no later campaign: its sends are split by customer, the rows
/// whose SHA-256 of the customer id falls below `holdout_share` validating (deterministic, so the
/// same data gives the same split). No campaign, or a split that leaves either side empty, is
/// [`Error::BadInput`] saying so (the score step then skips propensity).
pub fn split_campaign_sends(table: &FeatureTable, holdout_share: f64) -> Result<CampaignSplit> {
    let (Some(groups), Some(days)) = (&table.groups, &table.snapshot_days) else {
        return Err(Error::BadInput(
            "campaign rows need _group and _snapshot_date".into(),
        ));
    };
    // A group's first send day, by code.
    let mut first_by_code: Vec<Option<i32>> = vec![None; groups.code_count()];
    for (&code, &d) in groups.codes().iter().zip(days) {
        if let Some(e) = first_by_code.get_mut(code as usize) {
            *e = Some(e.map_or(d, |e| e.min(d)));
        }
    }
    let mut first: BTreeMap<String, i32> = BTreeMap::new();
    for (code, d) in first_by_code.iter().enumerate() {
        if let (Some(d), Some(g)) = (d, u32::try_from(code).ok().and_then(|c| groups.value_of(c))) {
            let e = first.entry(g.to_string()).or_insert(*d);
            *e = (*e).min(*d);
        }
    }
    let holdout = CampaignHoldout::choose(&first, holdout_share)?;
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (i, (id, g)) in table.ids.iter().zip(groups.iter()).enumerate() {
        if holdout.holds(id, g) {
            valid.push(i);
        } else {
            train.push(i);
        }
    }
    holdout.check_sides(train.len(), valid.len())?;
    Ok(CampaignSplit {
        train,
        valid,
        method: holdout.method(),
    })
}

/// Which campaign sends validate the propensity model, chosen from the campaigns' first send days
/// alone, so the sends can be split as they are read ([`split_campaign_sends`] says how).
#[derive(Debug, Clone, PartialEq)]
pub enum CampaignHoldout {
    /// One campaign: the sends whose SHA-256 of the customer id falls below this share.
    Customers(f64),
    /// Two campaigns or more: the sends of these, the latest by first send day.
    Campaigns(BTreeSet<String>),
}

impl CampaignHoldout {
    /// The held-out sends for campaigns first sent on `first_send_days` (by campaign). No
    /// campaign is [`Error::BadInput`].
    pub fn choose(first_send_days: &BTreeMap<String, i32>, holdout_share: f64) -> Result<Self> {
        match first_send_days.len() {
            0 => Err(Error::BadInput(
                "no past campaign sends to learn campaign propensity from".into(),
            )),
            1 => Ok(Self::Customers(holdout_share)),
            n => {
                let mut order: Vec<(i32, &str)> = first_send_days
                    .iter()
                    .map(|(g, d)| (*d, g.as_str()))
                    .collect();
                order.sort();
                let k = ((n as f64 * holdout_share).round() as usize).clamp(1, n - 1);
                Ok(Self::Campaigns(
                    order[n - k..].iter().map(|(_, g)| g.to_string()).collect(),
                ))
            }
        }
    }

    /// Whether the send of campaign `group` to `customer_id` validates.
    pub fn holds(&self, customer_id: &str, group: Option<&str>) -> bool {
        match self {
            Self::Customers(share) => hash_fraction(customer_id) < *share,
            Self::Campaigns(held) => group.is_some_and(|g| held.contains(g)),
        }
    }

    /// `latest campaigns` or `customer hash within the one campaign`.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Customers(_) => "customer hash within the one campaign",
            Self::Campaigns(_) => "latest campaigns",
        }
    }

    /// [`Error::BadInput`] when either side of the split has no rows.
    pub fn check_sides(&self, train_rows: usize, valid_rows: usize) -> Result<()> {
        if train_rows == 0 || valid_rows == 0 {
            return Err(Error::BadInput(format!(
                "the campaign sends split into {train_rows} training and {valid_rows} validation rows ({}): too few to learn and judge campaign propensity",
                self.method()
            )));
        }
        Ok(())
    }
}

/// The first eight bytes of SHA-256(`text`) as a fraction of 2^64.
fn hash_fraction(text: &str) -> f64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) as f64 / 18_446_744_073_709_551_616.0
}

/// The `model_deciles` table: lift, gains and calibration by decile on the validation rows.
pub fn deciles_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("algorithm", DataType::Utf8, false),
        Field::new("decile", DataType::Int32, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("positives", DataType::Int64, false),
        Field::new("mean_predicted", DataType::Float64, true),
        Field::new("actual_rate", DataType::Float64, true),
        Field::new("lift", DataType::Float64, true),
        Field::new("cumulative_gain", DataType::Float64, true),
    ]))
}

/// The `model_profiles` table: the profile tree's rules, highest rate first.
pub fn profiles_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("rate", DataType::Float64, false),
    ]))
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

fn nan_to_null(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// The published `model_metrics` table: every metric with its model's status (`ran`), and for a
/// model that did not run one row (metric `status`, no value) whose status says why (`skipped:
/// no past campaign sends ...`), so that a BI tool sees which models ran without the manifest.
pub fn model_metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("status", DataType::Utf8, false),
    ]))
}

/// Builds `model_metrics` from the metrics of the models that ran (model, metric, value) and the
/// models that did not, each with its status line.
pub fn model_metrics_table(metrics: &RecordBatch, not_run: &[(&str, &str)]) -> Result<RecordBatch> {
    let (Some(models), Some(names)) = (
        metrics.column(0).as_string_opt::<i32>(),
        metrics.column(1).as_string_opt::<i32>(),
    ) else {
        return Err(Error::Internal("model_metrics columns are not text".into()));
    };
    let Some(values) = metrics.column(2).as_primitive_opt::<Float64Type>() else {
        return Err(Error::Internal(
            "model_metrics values are not numbers".into(),
        ));
    };
    let mut model: Vec<String> = models
        .iter()
        .map(|m| m.unwrap_or_default().to_string())
        .collect();
    let mut metric: Vec<String> = names
        .iter()
        .map(|m| m.unwrap_or_default().to_string())
        .collect();
    let mut value: Vec<Option<f64>> = values.iter().collect();
    let mut status: Vec<String> = vec!["ran".to_string(); metrics.num_rows()];
    for (m, why) in not_run {
        model.push((*m).to_string());
        metric.push("status".into());
        value.push(None);
        status.push((*why).to_string());
    }
    RecordBatch::try_new(
        model_metrics_schema(),
        vec![
            Arc::new(StringArray::from(model)),
            Arc::new(StringArray::from(metric)),
            Arc::new(Float64Array::from(value)),
            Arc::new(StringArray::from(status)),
        ],
    )
    .map_err(internal)
}

/// Counts as signed integers: Spark and some BI tools read unsigned Parquet integers as decimals.
fn signed(counts: Vec<u64>) -> Vec<i64> {
    counts
        .into_iter()
        .map(|c| i64::try_from(c).unwrap_or(i64::MAX))
        .collect()
}

/// The decile rows of every run.
pub fn deciles_batch(runs: &[&ClassifierRun]) -> Result<RecordBatch> {
    let (mut models, mut algorithms) = (Vec::<String>::new(), Vec::<&str>::new());
    let (mut decile, mut rows, mut positives) =
        (Vec::<i32>::new(), Vec::<u64>::new(), Vec::<u64>::new());
    let mut floats: [Vec<Option<f64>>; 4] = Default::default();
    for run in runs {
        for d in &run.selection.validation.deciles {
            models.push(run.model.clone());
            algorithms.push(run.selection.predictor.algorithm().name());
            decile.push(i32::from(d.decile));
            rows.push(d.rows);
            positives.push(d.positives);
            floats[0].push(nan_to_null(d.mean_predicted));
            floats[1].push(nan_to_null(d.actual_rate));
            floats[2].push(nan_to_null(d.lift));
            floats[3].push(nan_to_null(d.cumulative_gain));
        }
    }
    let [a, b, c, d] = floats;
    RecordBatch::try_new(
        deciles_schema(),
        vec![
            Arc::new(StringArray::from(models)),
            Arc::new(StringArray::from(algorithms)),
            Arc::new(Int32Array::from(decile)),
            Arc::new(Int64Array::from(signed(rows))),
            Arc::new(Int64Array::from(signed(positives))),
            Arc::new(Float64Array::from(a)),
            Arc::new(Float64Array::from(b)),
            Arc::new(Float64Array::from(c)),
            Arc::new(Float64Array::from(d)),
        ],
    )
    .map_err(internal)
}

/// The profile rows of every run.
pub fn profiles_batch(runs: &[&ClassifierRun]) -> Result<RecordBatch> {
    let (mut m, mut k, mut r, mut n, mut p) = (vec![], vec![], vec![], vec![], vec![]);
    for run in runs {
        for (i, rule) in run.selection.profile.iter().enumerate() {
            m.push(run.model.clone());
            k.push(i as i32 + 1);
            r.push(rule.rule.clone());
            n.push(rule.rows);
            p.push(rule.rate);
        }
    }
    RecordBatch::try_new(
        profiles_schema(),
        vec![
            Arc::new(StringArray::from(m)),
            Arc::new(Int32Array::from(k)),
            Arc::new(StringArray::from(r)),
            Arc::new(Int64Array::from(signed(n))),
            Arc::new(Float64Array::from(p)),
        ],
    )
    .map_err(internal)
}

/// The `model_metrics` rows of the classifier runs, appended to `base` (the CLV metrics).
pub fn metrics_with_classifiers(
    base: &RecordBatch,
    runs: &[&ClassifierRun],
) -> Result<RecordBatch> {
    let (mut m, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
    let strings = |i: usize| {
        base.column(i).as_string_opt::<i32>().map(|a| {
            a.iter()
                .map(|s| s.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
    };
    let (Some(bm), Some(bk)) = (strings(0), strings(1)) else {
        return Err(Error::Internal("model_metrics columns are not text".into()));
    };
    let Some(bv) = base.column(2).as_primitive_opt::<Float64Type>() else {
        return Err(Error::Internal(
            "model_metrics values are not numbers".into(),
        ));
    };
    m.extend(bm);
    k.extend(bk);
    v.extend(bv.values().iter().copied());
    for run in runs {
        for (name, value) in &run.artifact.metrics {
            m.push(run.model.clone());
            k.push(name.clone());
            v.push(*value);
        }
    }
    RecordBatch::try_new(
        base.schema(),
        vec![
            Arc::new(StringArray::from(m)),
            Arc::new(StringArray::from(k)),
            Arc::new(Float64Array::from(v)),
        ],
    )
    .map_err(internal)
}

/// The `customer_scores` table.
pub fn customer_scores_schema() -> SchemaRef {
    let f = |n: &str, t: DataType| Field::new(n, t, true);
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        f("recency_days", DataType::Int64),
        f("frequency", DataType::Int64),
        f("monetary_value", DataType::Float64),
        f("r_score", DataType::Int32),
        f("f_score", DataType::Int32),
        f("m_score", DataType::Int32),
        f("rfm_cell", DataType::Utf8),
        f("rfm_segment", DataType::Utf8),
        f("p_alive", DataType::Float64),
        f("expected_purchases", DataType::Float64),
        f("expected_spend", DataType::Float64),
        f("clv", DataType::Float64),
        f("simple_clv", DataType::Float64),
        f("churn_probability", DataType::Float64),
        f("propensity", DataType::Float64),
        f("clv_model_version", DataType::Utf8),
        f("churn_model_version", DataType::Utf8),
        f("propensity_model_version", DataType::Utf8),
    ]))
}

/// Index of each customer's row in a batch with a `customer_id` column.
fn rows_by_id(batch: &RecordBatch) -> Result<BTreeMap<String, usize>> {
    let ids = batch
        .column_by_name("customer_id")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| Error::Internal("a score table has no text customer_id".into()))?;
    Ok((0..ids.len())
        .filter(|&i| !ids.is_null(i))
        .map(|i| (ids.value(i).to_string(), i))
        .collect())
}

/// One row per customer of `customers` (in that order): RFM from `rfm`, value from `clv` (which
/// may be empty: CLV was skipped), probabilities from the two classifier runs (empty where a
/// customer was not scored, or for every customer when the model did not run).
pub fn customer_scores_batch(
    customers: &[String],
    rfm: &RecordBatch,
    clv: &RecordBatch,
    clv_version: &str,
    churn: Option<&ClassifierRun>,
    propensity: Option<&ClassifierRun>,
) -> Result<RecordBatch> {
    let rfm_rows = rows_by_id(rfm)?;
    let clv_rows = rows_by_id(clv)?;
    let probabilities = |run: Option<&ClassifierRun>| -> BTreeMap<String, f64> {
        run.map(|r| r.scores.iter().cloned().collect())
            .unwrap_or_default()
    };
    let churn_p = probabilities(churn);
    let prop_p = probabilities(propensity);
    let version_of =
        |run: Option<&ClassifierRun>| run.map(|r| r.version.clone()).unwrap_or_default();
    let col = |b: &RecordBatch, name: &str| {
        b.column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("a score table has no column '{name}'")))
    };
    let take = |b: &RecordBatch, rows: &BTreeMap<String, usize>, name: &str| -> Result<ArrayRef> {
        let c = col(b, name)?;
        let idx: arrow::array::UInt32Array = customers
            .iter()
            .map(|id| rows.get(id).map(|&i| i as u32))
            .collect();
        arrow::compute::take(c.as_ref(), &idx, None).map_err(internal)
    };
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from(customers.to_vec()))];
    for name in [
        "recency_days",
        "frequency",
        "monetary_value",
        "r_score",
        "f_score",
        "m_score",
        "rfm_cell",
        "rfm_segment",
    ] {
        arrays.push(take(rfm, &rfm_rows, name)?);
    }
    for name in [
        "p_alive",
        "expected_purchases",
        "expected_spend",
        "clv",
        "simple_clv",
    ] {
        arrays.push(take(clv, &clv_rows, name)?);
    }
    let probs = |m: &BTreeMap<String, f64>| -> ArrayRef {
        Arc::new(Float64Array::from(
            customers
                .iter()
                .map(|id| m.get(id).copied())
                .collect::<Vec<_>>(),
        ))
    };
    arrays.push(probs(&churn_p));
    arrays.push(probs(&prop_p));
    let version = |present: &dyn Fn(&str) -> bool, v: &str| -> ArrayRef {
        Arc::new(StringArray::from(
            customers
                .iter()
                .map(|id| present(id).then(|| v.to_string()))
                .collect::<Vec<_>>(),
        ))
    };
    arrays.push(version(&|id| clv_rows.contains_key(id), clv_version));
    arrays.push(version(&|id| churn_p.contains_key(id), &version_of(churn)));
    arrays.push(version(
        &|id| prop_p.contains_key(id),
        &version_of(propensity),
    ));
    // The RFM and CLV tables carry their own types; check they are the published ones.
    let schema = customer_scores_schema();
    for (field, array) in schema.fields().iter().zip(&arrays) {
        if field.data_type() != array.data_type() {
            return Err(Error::Internal(format!(
                "customer_scores column {} is {} not {}",
                field.name(),
                array.data_type(),
                field.data_type()
            )));
        }
    }
    RecordBatch::try_new(schema, arrays).map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_campaigns_are_held_out() -> Result<()> {
        let t = FeatureTable {
            ids: (0..6).map(|i| format!("c{i}")).collect(),
            groups: Some(
                ["b", "a", "c", "c", "a", "d"]
                    .into_iter()
                    .map(Some)
                    .collect(),
            ),
            snapshot_days: Some(vec![20, 10, 30, 31, 11, 40]),
            ..FeatureTable::default()
        };
        let split = split_campaign_sends(&t, 0.25)?;
        assert_eq!(split.valid, vec![5]);
        assert_eq!(split.train, vec![0, 1, 2, 3, 4]);
        assert_eq!(split.method, "latest campaigns");
        let split = split_campaign_sends(&t, 0.5)?;
        assert_eq!(split.valid, vec![2, 3, 5]);
        Ok(())
    }

    #[test]
    fn one_campaign_is_split_by_customer_and_none_is_refused() -> Result<()> {
        let n = 400;
        let t = FeatureTable {
            ids: (0..n).map(|i| format!("C{i:05}")).collect(),
            groups: Some(std::iter::repeat_n(Some("only"), n).collect()),
            snapshot_days: Some(vec![100; n]),
            ..FeatureTable::default()
        };
        let split = split_campaign_sends(&t, 0.25)?;
        assert_eq!(split.method, "customer hash within the one campaign");
        assert_eq!(split.train.len() + split.valid.len(), n);
        // About a quarter validates, and the same data always splits the same way.
        assert!(
            (70..130).contains(&split.valid.len()),
            "{}",
            split.valid.len()
        );
        assert_eq!(split_campaign_sends(&t, 0.25)?, split);
        let none = t.select(&[]);
        assert!(
            split_campaign_sends(&none, 0.25)
                .is_err_and(|e| e.to_string().contains("no past campaign sends"))
        );
        // Two sends of one campaign cannot make both sides.
        let tiny = t.select(&[0]);
        assert!(
            split_campaign_sends(&tiny, 0.25).is_err_and(|e| e.to_string().contains("too few"))
        );
        Ok(())
    }
}
