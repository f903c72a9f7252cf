//! The `score` step: RFM, buy-till-you-die CLV, churn and campaign propensity on the marts, into
//! `customer_scores` and the model tables, with an artifact per model.
//!
//! Windows, for an as-of date T and a churn window H days:
//! - churn is trained on customers as of T − 2H labelled by (T − 2H, T − H], validated on
//!   customers as of T − H labelled by (T − H, T], refitted on the latter and applied as of T;
//! - propensity is trained on the campaign sends up to T − response window, each as of the day
//!   before it, validated on the latest campaigns (`campaign_holdout_share` of them), refitted on
//!   all the sends and applied to every contactable customer as of T.

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use chrono::NaiveDate;
use clientele_models::{
    ARTIFACT_FORMAT, AS_OF_PLACEHOLDER, Artifact, ArtifactModel, ClassifierData, ClassifierRun,
    ClvOptions, FeatureTable, feature_sql,
};
use clientele_sql::Engine;

use crate::runner::BoxError;
use crate::spec::ScoreOptions;

/// A model's line in the run manifest and report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelReport {
    /// `clv`, `churn` or `propensity`.
    pub model: String,
    /// The version written beside its scores.
    pub version: String,
    /// Customers scored.
    pub scored: u64,
    /// Headline metrics by name (validation metrics for classifiers).
    pub metrics: BTreeMap<String, f64>,
    /// The profile rule with the highest rate, for classifiers.
    pub top_rule: Option<String>,
}

/// What the step produced: tables by name and artifacts by model.
pub(crate) struct ScoreOutput {
    pub tables: Vec<(&'static str, RecordBatch)>,
    pub artifacts: Vec<(String, String)>,
    pub reports: Vec<ModelReport>,
}

async fn table(engine: &Engine, what: &str, sql: &str) -> Result<FeatureTable, BoxError> {
    let batches = engine.collect(what, sql).await?;
    // The columns come with the batches; only a query without rows is planned for them.
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => engine.plan_schema(sql).await?,
    };
    Ok(FeatureTable::from_batches(what, &schema, &batches)?)
}

fn day_number(d: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (d - epoch).num_days()
}

fn days_before(d: NaiveDate, days: u32) -> Result<NaiveDate, BoxError> {
    d.checked_sub_days(chrono::Days::new(u64::from(days)))
        .ok_or_else(|| format!("{days} days before {d} is out of range").into())
}

/// The query of the churn model's scoring rows, with the date written `{as_of}`.
pub fn churn_scoring_template() -> String {
    feature_sql::features(&feature_sql::churn_scoring_snapshots(AS_OF_PLACEHOLDER))
}

/// The query of the propensity model's scoring rows, with the date written `{as_of}`.
pub fn propensity_scoring_template() -> String {
    feature_sql::features(&feature_sql::propensity_scoring_snapshots(
        AS_OF_PLACEHOLDER,
    ))
}

/// The query of the CLV model's transactions, with the date written `{as_of}`.
pub fn clv_scoring_template() -> String {
    crate::runner::clv_query(
        "fct_orders",
        &format!("cast('{AS_OF_PLACEHOLDER}' as date)"),
    )
}

/// A scoring query template with its date filled in.
pub(crate) fn fill(template: &str, d: NaiveDate) -> String {
    template.replace(AS_OF_PLACEHOLDER, &d.format("%Y-%m-%d").to_string())
}

fn report(run: &ClassifierRun) -> ModelReport {
    let mut metrics = BTreeMap::new();
    for key in [
        "validation_roc_auc",
        "validation_pr_auc",
        "validation_brier",
        "validation_top_decile_lift",
        "logistic_regression_validation_roc_auc",
        "boosted_trees_validation_roc_auc",
        "validation_rows",
    ] {
        if let Some(v) = run.artifact.metrics.get(key) {
            metrics.insert(key.to_string(), *v);
        }
    }
    ModelReport {
        model: run.model.clone(),
        version: run.version.clone(),
        scored: run.scores.len() as u64,
        metrics,
        top_rule: run.selection.profile.first().map(|r| {
            format!(
                "{}: {:.0}% ({} customers)",
                r.rule,
                r.rate * 100.0,
                crate::report::thousands(r.rows)
            )
        }),
    }
}

fn window(entries: &[(&str, String)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Runs the step's models on the tables registered in `engine`.
pub(crate) async fn run(
    engine: &Engine,
    as_of: NaiveDate,
    opts: &ScoreOptions,
) -> Result<ScoreOutput, BoxError> {
    // RFM.
    let rfm_input = engine
        .collect(
            "reading the RFM input 'customer_view'",
            &crate::runner::rfm_query("customer_view"),
        )
        .await?;
    let rfm = clientele_models::score_rfm(&rfm_input)?;

    // Buy-till-you-die CLV.
    let clv_template = clv_scoring_template();
    let orders = engine
        .collect("reading the orders for CLV", &fill(&clv_template, as_of))
        .await?;
    let transactions = crate::runner::clv_transactions(&orders)?;
    let clv_options = ClvOptions {
        horizon_months: opts.horizon_months,
        monthly_discount_rate: opts.monthly_discount_rate,
    };
    let (clv, clv_metrics, params) =
        clientele_models::score_clv(&transactions, day_number(as_of), &clv_options)?;
    let clv_version = format!(
        "clv:bgnbd+gamma_gamma@{} (clientele {})",
        as_of.format("%Y-%m-%d"),
        env!("CARGO_PKG_VERSION")
    );
    let mut clv_fit = BTreeMap::new();
    let names = clv_metrics
        .column(0)
        .as_string_opt::<i32>()
        .ok_or("model_metrics.model is not text")?;
    let metric = clv_metrics
        .column(1)
        .as_string_opt::<i32>()
        .ok_or("model_metrics.metric is not text")?;
    let values = clv_metrics
        .column(2)
        .as_primitive_opt::<arrow::datatypes::Float64Type>()
        .ok_or("model_metrics.value is not a number")?;
    for i in 0..clv_metrics.num_rows() {
        clv_fit.insert(
            format!("{}_{}", names.value(i), metric.value(i)),
            values.value(i),
        );
    }
    let mut clv_checksums = BTreeMap::new();
    {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for t in &transactions {
            h.update(t.customer.as_bytes());
            h.update(t.day.to_le_bytes());
            h.update(t.amount.to_le_bytes());
        }
        clv_checksums.insert("transactions".to_string(), hex::encode(h.finalize()));
    }
    let clv_artifact = Artifact {
        artifact_format: ARTIFACT_FORMAT,
        model: "clv".into(),
        version: clv_version.clone(),
        trained_as_of: as_of.format("%Y-%m-%d").to_string(),
        training_window: window(&[("calibration_end", as_of.to_string())]),
        features: Vec::new(),
        scoring_query: clv_template,
        model_params: ArtifactModel::Clv {
            params,
            horizon_months: opts.horizon_months,
            monthly_discount_rate: opts.monthly_discount_rate,
        },
        metrics: clv_fit.clone(),
        data_checksums: clv_checksums,
    };

    // Churn.
    let h = opts.churn_horizon_days;
    let valid_cutoff = days_before(as_of, h)?;
    let train_cutoff = days_before(valid_cutoff, h)?;
    let churn_train = table(
        engine,
        "churn training rows",
        &feature_sql::features(&feature_sql::churn_snapshots(train_cutoff, h)),
    )
    .await?;
    let churn_valid = table(
        engine,
        "churn validation rows",
        &feature_sql::features(&feature_sql::churn_snapshots(valid_cutoff, h)),
    )
    .await?;
    let churn_template = churn_scoring_template();
    let churn_score = table(engine, "churn scoring rows", &fill(&churn_template, as_of)).await?;
    let churn = clientele_models::run_classifier(&ClassifierData {
        model: "churn",
        as_of,
        train: &churn_train,
        valid: &churn_valid,
        refit: &churn_valid,
        score: &churn_score,
        window: window(&[
            ("train_cutoff", train_cutoff.to_string()),
            ("validation_cutoff", valid_cutoff.to_string()),
            ("refit_cutoff", valid_cutoff.to_string()),
            ("horizon_days", h.to_string()),
        ]),
        scoring_query: churn_template,
        min_roc_auc: opts.min_churn_auc,
    })?;

    // Campaign propensity.
    let last_send = days_before(as_of, opts.response_window_days)?;
    let sends = table(
        engine,
        "campaign propensity training rows",
        &feature_sql::features(&feature_sql::propensity_training_snapshots(last_send)),
    )
    .await?;
    let (train_rows, valid_rows) =
        clientele_models::split_latest_groups(&sends, opts.campaign_holdout_share)?;
    let prop_train = sends.select(&train_rows);
    let prop_valid = sends.select(&valid_rows);
    let prop_template = propensity_scoring_template();
    let prop_score = table(
        engine,
        "campaign propensity scoring rows",
        &fill(&prop_template, as_of),
    )
    .await?;
    let held: std::collections::BTreeSet<&str> = prop_valid
        .groups
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let propensity = clientele_models::run_classifier(&ClassifierData {
        model: "propensity",
        as_of,
        train: &prop_train,
        valid: &prop_valid,
        refit: &sends,
        score: &prop_score,
        window: window(&[
            ("last_send", last_send.to_string()),
            (
                "validation_campaigns",
                held.into_iter().collect::<Vec<_>>().join(","),
            ),
            (
                "response_window_days",
                opts.response_window_days.to_string(),
            ),
        ]),
        scoring_query: prop_template,
        min_roc_auc: opts.min_propensity_auc,
    })?;

    // Tables.
    let customers_batches = engine
        .collect(
            "listing customers",
            "select cast(customer_id as varchar) as customer_id from customer_view order by customer_id",
        )
        .await?;
    let mut customers = Vec::new();
    for b in &customers_batches {
        let ids = b
            .column(0)
            .as_string_opt::<i32>()
            .ok_or("customer_view.customer_id is not text")?;
        customers.extend(ids.iter().flatten().map(str::to_string));
    }
    let runs = [&churn, &propensity];
    let scores = clientele_models::customer_scores_batch(
        &customers,
        &rfm,
        &clv,
        &clv_version,
        &churn,
        &propensity,
    )?;
    let metrics = clientele_models::metrics_with_classifiers(&clv_metrics, &runs)?;
    let deciles = clientele_models::deciles_batch(&runs)?;
    let profiles = clientele_models::profiles_batch(&runs)?;
    let mut reports = vec![ModelReport {
        model: "clv".into(),
        version: clv_version,
        scored: clv.num_rows() as u64,
        metrics: clv_fit,
        top_rule: None,
    }];
    reports.extend(runs.iter().map(|r| report(r)));
    Ok(ScoreOutput {
        tables: vec![
            (crate::spec::RFM_TABLE.1, rfm),
            (crate::spec::CLV_TABLE.1, clv),
            (crate::spec::METRICS_TABLE.1, metrics),
            (crate::spec::SCORES_TABLE.1, scores),
            (crate::spec::DECILES_TABLE.1, deciles),
            (crate::spec::PROFILES_TABLE.1, profiles),
        ],
        artifacts: vec![
            ("clv".into(), clv_artifact.to_json()?),
            ("churn".into(), churn.artifact.to_json()?),
            ("propensity".into(), propensity.artifact.to_json()?),
        ],
        reports,
    })
}

/// The tables the score step reads, with their layers, for scoring outside a run.
pub const SCORE_INPUT_TABLES: [(&str, &str); 4] = [
    ("marts", "fct_orders"),
    ("marts", "fct_touchpoints"),
    ("staging", "stg_service__tickets"),
    ("marts", "customer_view"),
];

/// Scores again with a saved artifact: runs its query as of `as_of` on the tables registered in
/// `engine` and applies its model. Classifiers give `customer_id`, the probability (named
/// `churn_probability` or `propensity`) and `model_version`; CLV gives the `customer_clv` table.
pub async fn score_with_artifact(
    engine: &Engine,
    artifact: &Artifact,
    as_of: NaiveDate,
) -> Result<RecordBatch, BoxError> {
    let sql = artifact.scoring_query(as_of);
    match &artifact.model_params {
        ArtifactModel::Clv { .. } => {
            let Some((params, options)) = artifact.clv_options() else {
                return Err("the CLV artifact has no parameters".into());
            };
            let orders = engine.collect("reading the orders", &sql).await?;
            let transactions = crate::runner::clv_transactions(&orders)?;
            Ok(clientele_models::clv_scores(
                &params.counts,
                &params.spend,
                &transactions,
                day_number(as_of),
                &options,
            )?)
        }
        ArtifactModel::Classifier { predictor } => {
            let rows = table(engine, &format!("{} scoring rows", artifact.model), &sql).await?;
            let p = predictor.predict(&rows)?;
            let column = if artifact.model == "churn" {
                "churn_probability".to_string()
            } else {
                artifact.model.clone()
            };
            let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new(
                    "customer_id",
                    arrow::datatypes::DataType::Utf8,
                    false,
                ),
                arrow::datatypes::Field::new(column, arrow::datatypes::DataType::Float64, false),
                arrow::datatypes::Field::new(
                    "model_version",
                    arrow::datatypes::DataType::Utf8,
                    false,
                ),
            ]));
            let n = rows.len();
            Ok(RecordBatch::try_new(
                schema,
                vec![
                    std::sync::Arc::new(arrow::array::StringArray::from(rows.ids)),
                    std::sync::Arc::new(arrow::array::Float64Array::from(p)),
                    std::sync::Arc::new(arrow::array::StringArray::from(vec![
                        artifact
                            .version
                            .as_str();
                        n
                    ])),
                ],
            )?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clientele_sql::EngineOptions;
    use clientele_store::Warehouse;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    /// Marts small enough to reason about by hand.
    async fn engine(dir: &std::path::Path) -> Result<Engine, BoxError> {
        let wh = Warehouse::open(&dir.display().to_string(), dir)?;
        let engine = Engine::new(&wh, date(2025, 12, 31), &EngineOptions::default())?;
        for sql in [
            "create table fct_orders (customer_id varchar, order_date date, order_amount decimal(12, 2), channel varchar) as values
                ('A', date '2025-01-10', 10.00, 'web'), ('A', date '2025-06-01', 30.00, 'store'),
                ('A', date '2025-08-01', 20.00, 'web'), ('B', date '2025-03-01', 50.00, 'store'),
                ('B', date '2025-12-01', 50.00, 'store'), ('C', date '2025-07-15', 5.00, 'web')",
            "create table fct_touchpoints (customer_id varchar, touchpoint_type varchar, channel varchar, touch_date date, reference varchar, amount decimal(12, 2)) as values
                ('A', 'service_ticket', 'service', date '2025-05-01', 'T1', null),
                ('A', 'service_ticket', 'service', date '2025-07-05', 'T2', null),
                ('B', 'campaign_contact', 'email', date '2025-04-01', 'K1', null),
                ('B', 'campaign_response', 'email', date '2025-04-05', 'K1', null),
                ('A', 'campaign_contact', 'email', date '2025-04-01', 'K1', null)",
            "create table stg_service__tickets (ticket_id varchar, category varchar, closed_date date) as values
                ('T1', 'complaint', date '2025-07-10'), ('T2', 'complaint', null)",
            "create table customer_view (customer_id varchar, age_band varchar, income_band varchar, lifestyle_segment varchar, home_ownership varchar, is_business boolean, household_size bigint, is_opted_out boolean, has_valid_email boolean, has_valid_phone boolean, has_postal_address boolean) as values
                ('A', '35-44', 'high', null, 'owner', false, 2, false, true, false, true),
                ('B', null, null, null, null, null, null, true, true, true, true),
                ('C', '18-24', 'low', null, 'renter', false, 1, false, false, false, false)",
        ] {
            engine.context().sql(sql).await?.collect().await?;
        }
        Ok(engine)
    }

    fn value(t: &FeatureTable, row: usize, feature: &str) -> f64 {
        t.numeric
            .iter()
            .find(|(n, _)| n == feature)
            .map_or(f64::NAN, |(_, v)| v[row])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn features_see_only_what_was_known_on_the_snapshot_date() -> Result<(), BoxError> {
        let dir = tempfile::tempdir()?;
        let engine = engine(dir.path()).await?;
        let sql = feature_sql::features(&feature_sql::churn_snapshots(date(2025, 6, 30), 90));
        let t = table(&engine, "churn rows", &sql).await?;
        // C had not bought by the cutoff; A bought again within 90 days, B did not.
        assert_eq!(t.ids, ["A", "B"]);
        assert_eq!(t.labels.as_deref(), Some(&[0.0, 1.0][..]));
        assert_eq!(
            value(&t, 0, "orders"),
            2.0,
            "the August order is in the future"
        );
        assert_eq!(value(&t, 0, "days_since_last_order"), 29.0);
        assert_eq!(value(&t, 0, "mean_days_between_purchases"), 142.0);
        assert_eq!(value(&t, 0, "web_order_share"), 0.5);
        assert_eq!(
            value(&t, 0, "open_complaints"),
            1.0,
            "T1 was still open on the cutoff; T2 had not been opened"
        );
        assert_eq!(value(&t, 0, "complaints"), 1.0);
        assert_eq!(value(&t, 1, "campaign_responses"), 1.0);
        assert_eq!(value(&t, 1, "days_since_last_response"), 86.0);
        assert!(value(&t, 1, "mean_days_between_purchases").is_nan());
        let income = &t
            .categorical
            .iter()
            .find(|(n, _)| n == "income_band")
            .ok_or("income")?
            .1;
        assert_eq!(income, &[Some("high".to_string()), None]);

        // A campaign send is seen from the day before it: the send itself is not a feature.
        let sql = feature_sql::features(&feature_sql::propensity_training_snapshots(date(
            2025, 12, 1,
        )));
        let t = table(&engine, "campaign rows", &sql).await?;
        assert_eq!(t.ids, ["A", "B"]);
        assert_eq!(t.labels.as_deref(), Some(&[0.0, 1.0][..]));
        assert_eq!(
            t.snapshot_days.as_ref().map(|d| d[1]),
            Some(20_178),
            "2025-03-31"
        );
        assert_eq!(value(&t, 1, "campaign_contacts"), 0.0);
        assert_eq!(value(&t, 1, "campaign_responses"), 0.0);
        assert_eq!(value(&t, 1, "days_since_last_order"), 30.0);

        // Scoring for the next campaign leaves out B (opted out) and C (no way to reach them).
        let t = table(
            &engine,
            "next campaign",
            &fill(&propensity_scoring_template(), date(2025, 12, 31)),
        )
        .await?;
        assert_eq!(t.ids, ["A"]);
        Ok(())
    }
}
