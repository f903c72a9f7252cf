//! The nightly `score` step's models and tables: churn and campaign-propensity classifiers
//! trained, validated on later time, checked against floors and applied; and the tables
//! `customer_scores`, `model_deciles` and `model_profiles` that publish them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    UInt32Array,
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
    /// The probability of every scored row, in order of customer id.
    pub scores: Scores,
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
    /// The run whose scores are `scores`: rows scored part by part as they were read
    /// ([`crate::Predictor::predict`] on each part) rather than held whole as one [`FeatureTable`].
    pub fn scored(mut self, scores: Scores) -> ClassifierRun {
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

/// A classifier's probability for each scored row, in order of customer id: the ids and the
/// probabilities as two Arrow arrays (at ten million customers, a third of the memory of a
/// `(String, f64)` per row).
#[derive(Debug, Clone)]
pub struct Scores {
    ids: StringArray,
    probabilities: Float64Array,
}

impl Scores {
    /// The scores of rows scored part by part (`(ids, probabilities)` of each part, of equal
    /// lengths), put in order of customer id; rows of one id keep the order they were read in.
    pub fn from_parts(parts: &[(StringArray, Float64Array)]) -> Result<Self> {
        if let Some((ids, p)) = parts.iter().find(|(ids, p)| ids.len() != p.len()) {
            return Err(Error::Internal(format!(
                "a scored part has {} ids and {} probabilities",
                ids.len(),
                p.len()
            )));
        }
        let ids: Vec<&dyn Array> = parts.iter().map(|(ids, _)| ids as &dyn Array).collect();
        let p: Vec<&dyn Array> = parts.iter().map(|(_, p)| p as &dyn Array).collect();
        let ids = joined_text(&ids)?;
        let p = if p.is_empty() {
            Float64Array::from(Vec::<f64>::new())
        } else {
            arrow::compute::concat(&p)
                .map_err(internal)?
                .as_primitive::<Float64Type>()
                .clone()
        };
        let order = UInt32Array::from(id_order(&ids)?);
        let take = |a: &dyn Array| arrow::compute::take(a, &order, None).map_err(internal);
        Ok(Self {
            ids: take(&ids)?.as_string::<i32>().clone(),
            probabilities: take(&p)?.as_primitive::<Float64Type>().clone(),
        })
    }

    /// Rows scored.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no row was scored.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The customer ids, in order.
    pub fn ids(&self) -> &StringArray {
        &self.ids
    }

    /// The probabilities, one per id.
    pub fn probabilities(&self) -> &Float64Array {
        &self.probabilities
    }
}

/// The rows of `ids` that hold an id (nulls left out), in order of id and, within one id, of row.
fn id_order(ids: &StringArray) -> Result<Vec<u32>> {
    let rows = u32::try_from(ids.len()).map_err(|_| {
        Error::Internal(format!(
            "{} rows are more than a table can index",
            ids.len()
        ))
    })?;
    let mut order: Vec<u32> = (0..rows).filter(|&i| ids.is_valid(i as usize)).collect();
    order.sort_unstable_by(|&a, &b| {
        ids.value(a as usize)
            .cmp(ids.value(b as usize))
            .then(a.cmp(&b))
    });
    Ok(order)
}

/// For each row of `customers`, the row of `ids` with the same id (the last such row when there
/// are several), or null: the rows to take from a table keyed by `ids` to line it up with
/// `customers` (`wanted`: the customers' [`id_order`]). Both are put in order once and walked
/// together, so nothing is held per id but the two orders.
fn positions(customers: &StringArray, wanted: &[u32], ids: &StringArray) -> Result<UInt32Array> {
    let held = id_order(ids)?;
    let mut rows: Vec<Option<u32>> = vec![None; customers.len()];
    let mut next = 0;
    for &c in wanted {
        let id = customers.value(c as usize);
        while next < held.len() && ids.value(held[next] as usize) < id {
            next += 1;
        }
        let mut last = next;
        while last < held.len() && ids.value(held[last] as usize) == id {
            rows[c as usize] = Some(held[last]);
            last += 1;
        }
    }
    Ok(UInt32Array::from(rows))
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

/// Text arrays (customer ids read batch by batch or scored part by part) joined into one, in
/// order; a null stays null, for the caller to say what a missing id means.
pub fn joined_text(parts: &[&dyn Array]) -> Result<StringArray> {
    if parts.is_empty() {
        return Ok(StringArray::from(Vec::<&str>::new()));
    }
    arrow::compute::concat(parts)
        .map_err(internal)?
        .as_string_opt::<i32>()
        .cloned()
        .ok_or_else(|| Error::Internal("customer ids that are not text".into()))
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

/// The `customer_scores` table of a run, built a slice of rows at a time
/// ([`CustomerScores::slice`]) so that it is never held whole: one row per customer (in the order
/// given), RFM from the `customer_rfm` table, value from `customer_clv` (which may be empty: CLV
/// was skipped), probabilities from the two classifier runs (empty where a customer was not
/// scored, or for every customer when the model did not run). What is held besides the tables
/// themselves is one row number per customer and table.
#[derive(Debug, Clone)]
pub struct CustomerScores {
    customers: StringArray,
    rfm: RecordBatch,
    rfm_rows: UInt32Array,
    clv: RecordBatch,
    clv_rows: UInt32Array,
    clv_version: String,
    classifiers: [Option<(Scores, UInt32Array, String)>; 2],
}

/// The RFM table's columns in `customer_scores`.
const RFM_COLUMNS: [&str; 8] = [
    "recency_days",
    "frequency",
    "monetary_value",
    "r_score",
    "f_score",
    "m_score",
    "rfm_cell",
    "rfm_segment",
];

/// The CLV table's columns in `customer_scores`.
const CLV_COLUMNS: [&str; 5] = [
    "p_alive",
    "expected_purchases",
    "expected_spend",
    "clv",
    "simple_clv",
];

impl CustomerScores {
    /// The table for `customers` (null ids left out) from the run's RFM and CLV tables (each with
    /// a text `customer_id` and the columns `customer_scores` takes from it, of its types) and
    /// classifier runs.
    pub fn new(
        customers: &StringArray,
        rfm: &RecordBatch,
        clv: &RecordBatch,
        clv_version: &str,
        churn: Option<&ClassifierRun>,
        propensity: Option<&ClassifierRun>,
    ) -> Result<Self> {
        let customers = if customers.null_count() == 0 {
            customers.clone()
        } else {
            StringArray::from_iter_values(customers.iter().flatten())
        };
        let schema = customer_scores_schema();
        let ids = |b: &RecordBatch| {
            b.column_by_name("customer_id")
                .and_then(|c| c.as_string_opt::<i32>())
                .cloned()
                .ok_or_else(|| Error::Internal("a score table has no text customer_id".into()))
        };
        // The RFM and CLV tables carry their own types; check they are the published ones.
        for (table, columns) in [(rfm, &RFM_COLUMNS[..]), (clv, &CLV_COLUMNS[..])] {
            for &name in columns {
                let field = schema.field_with_name(name).map_err(internal)?;
                let column = table.column_by_name(name).ok_or_else(|| {
                    Error::Internal(format!("a score table has no column '{name}'"))
                })?;
                if column.data_type() != field.data_type() {
                    return Err(Error::Internal(format!(
                        "customer_scores column {name} is {} not {}",
                        column.data_type(),
                        field.data_type()
                    )));
                }
            }
        }
        // The customers in order of id, once for the four tables lined up with them.
        let wanted = id_order(&customers)?;
        let classifier = |run: Option<&ClassifierRun>| -> Result<_> {
            run.map(|r| {
                Ok((
                    r.scores.clone(),
                    positions(&customers, &wanted, r.scores.ids())?,
                    r.version.clone(),
                ))
            })
            .transpose()
        };
        Ok(Self {
            rfm_rows: positions(&customers, &wanted, &ids(rfm)?)?,
            clv_rows: positions(&customers, &wanted, &ids(clv)?)?,
            rfm: rfm.clone(),
            clv: clv.clone(),
            clv_version: clv_version.to_string(),
            classifiers: [classifier(churn)?, classifier(propensity)?],
            customers,
        })
    }

    /// Rows of the table (one per customer).
    pub fn len(&self) -> usize {
        self.customers.len()
    }

    /// Whether there are no customers.
    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }

    /// The rows `offset..offset + len` (cut to the table's end).
    pub fn slice(&self, offset: usize, len: usize) -> Result<RecordBatch> {
        let offset = offset.min(self.len());
        let len = len.min(self.len() - offset);
        let take = |column: &ArrayRef, rows: &UInt32Array| {
            arrow::compute::take(column.as_ref(), &rows.slice(offset, len), None).map_err(internal)
        };
        let version = |rows: &UInt32Array, version: &str| -> ArrayRef {
            Arc::new(
                rows.slice(offset, len)
                    .iter()
                    .map(|row| row.map(|_| version))
                    .collect::<StringArray>(),
            )
        };
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(self.customers.slice(offset, len))];
        for (table, rows, columns) in [
            (&self.rfm, &self.rfm_rows, &RFM_COLUMNS[..]),
            (&self.clv, &self.clv_rows, &CLV_COLUMNS[..]),
        ] {
            for &name in columns {
                let column = table.column_by_name(name).ok_or_else(|| {
                    Error::Internal(format!("a score table has no column '{name}'"))
                })?;
                arrays.push(take(column, rows)?);
            }
        }
        for classifier in &self.classifiers {
            arrays.push(match classifier {
                Some((scores, rows, _)) => {
                    let p: ArrayRef = Arc::new(scores.probabilities().clone());
                    take(&p, rows)?
                }
                None => arrow::array::new_null_array(&DataType::Float64, len),
            });
        }
        arrays.push(version(&self.clv_rows, &self.clv_version));
        for classifier in &self.classifiers {
            arrays.push(match classifier {
                Some((_, rows, v)) => version(rows, v),
                None => arrow::array::new_null_array(&DataType::Utf8, len),
            });
        }
        RecordBatch::try_new(customer_scores_schema(), arrays).map_err(internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of `schema` with a row per id: numbers are the row's number plus one, text
    /// `<id>/<column>`.
    fn keyed(schema: SchemaRef, ids: &[&str]) -> Result<RecordBatch> {
        let rows = 1..=ids.len();
        let columns = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match (f.name().as_str(), f.data_type()) {
                    ("customer_id", _) => Arc::new(StringArray::from(ids.to_vec())),
                    (_, DataType::Int64) => {
                        Arc::new(Int64Array::from_iter_values(rows.clone().map(|r| r as i64)))
                    }
                    (_, DataType::Int32) => {
                        Arc::new(Int32Array::from_iter_values(rows.clone().map(|r| r as i32)))
                    }
                    (_, DataType::Float64) => Arc::new(Float64Array::from_iter_values(
                        rows.clone().map(|r| r as f64),
                    )),
                    (name, _) => Arc::new(StringArray::from_iter_values(
                        ids.iter().map(|id| format!("{id}/{name}")),
                    )),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).map_err(internal)
    }

    #[test]
    fn customer_scores_line_up_every_table_by_id_whatever_its_order_and_slice() -> Result<()> {
        // Customers out of order and one null id; the RFM table in another order with a
        // customer twice (its last row counts, as a later row replaces an earlier one); the CLV
        // table with one customer and one id that is not a customer.
        let customers =
            StringArray::from(vec![Some("c3"), Some("c1"), None, Some("c2"), Some("c4")]);
        let rfm = keyed(crate::rfm_schema(), &["c4", "c2", "c3", "c1", "c2"])?;
        let clv = keyed(crate::clv_schema(), &["c9", "c2"])?;
        let table = CustomerScores::new(&customers, &rfm, &clv, "clv-v", None, None)?;
        assert_eq!(table.len(), 4, "the null id is left out");
        let whole = table.slice(0, usize::MAX)?;
        let parts = [table.slice(0, 3)?, table.slice(3, 3)?, table.slice(9, 3)?];
        assert_eq!(parts[2].num_rows(), 0, "a slice past the end is empty");
        let sliced =
            arrow::compute::concat_batches(&customer_scores_schema(), &parts).map_err(internal)?;
        assert_eq!(whole, sliced, "slices make the whole table");
        let text = |name: &str| -> Vec<Option<String>> {
            whole
                .column_by_name(name)
                .map(|c| {
                    c.as_string::<i32>()
                        .iter()
                        .map(|v| v.map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let number = |name: &str| -> Vec<Option<f64>> {
            whole
                .column_by_name(name)
                .map(|c| {
                    let c = arrow::compute::cast(c, &DataType::Float64).map_err(internal)?;
                    Ok::<_, Error>(c.as_primitive::<Float64Type>().iter().collect())
                })
                .transpose()
                .map(Option::unwrap_or_default)
                .unwrap_or_default()
        };
        let some = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        assert_eq!(text("customer_id"), some(&["c3", "c1", "c2", "c4"]));
        assert_eq!(
            text("rfm_segment"),
            some(&[
                "c3/rfm_segment",
                "c1/rfm_segment",
                "c2/rfm_segment",
                "c4/rfm_segment"
            ])
        );
        // c3 is the RFM table's row 3, c1 row 4, c2 its last row (5), c4 row 1.
        assert_eq!(
            number("recency_days"),
            vec![Some(3.0), Some(4.0), Some(5.0), Some(1.0)]
        );
        assert_eq!(number("clv"), vec![None, None, Some(2.0), None]);
        assert_eq!(
            text("clv_model_version"),
            vec![None, None, Some("clv-v".to_string()), None]
        );
        for classifier in ["churn_probability", "propensity"] {
            assert_eq!(
                number(classifier),
                vec![None; 4],
                "{classifier}: the model did not run"
            );
        }
        for version in ["churn_model_version", "propensity_model_version"] {
            assert_eq!(
                text(version),
                vec![None; 4],
                "{version}: the model did not run"
            );
        }
        Ok(())
    }

    #[test]
    fn scores_scored_in_parts_are_put_in_order_of_id() -> Result<()> {
        let part = |ids: &[&str], p: &[f64]| {
            (
                StringArray::from(ids.to_vec()),
                Float64Array::from(p.to_vec()),
            )
        };
        let scores = Scores::from_parts(&[
            part(&["b", "a"], &[0.2, 0.1]),
            part(&["c", "a"], &[0.3, 0.4]),
        ])?;
        let ids: Vec<&str> = scores.ids().iter().flatten().collect();
        assert_eq!(ids, ["a", "a", "b", "c"]);
        assert_eq!(
            scores.probabilities().values().to_vec(),
            [0.1, 0.4, 0.2, 0.3],
            "one id's rows in the order read"
        );
        assert!(Scores::from_parts(&[])?.is_empty());
        assert!(
            Scores::from_parts(&[part(&["a"], &[0.1, 0.2])]).is_err(),
            "a part's lengths must agree"
        );
        // Lined up with customers, each customer takes its own row; the last of several.
        let customers = StringArray::from(vec!["c", "z", "a"]);
        let rows = positions(&customers, &id_order(&customers)?, scores.ids())?;
        assert_eq!(rows.iter().collect::<Vec<_>>(), [Some(3), None, Some(1)]);
        Ok(())
    }

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
