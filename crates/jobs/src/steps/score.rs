//! The `score` step: RFM, buy-till-you-die CLV, churn and campaign propensity on the marts, into
//! `customer_scores` and the model tables, with an artifact per model. The windows the classifiers
//! learn on are [`ChurnWindows`] and [`PropensityWindow`] (clientele-models).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use chrono::NaiveDate;
use clientele_models::{
    ARTIFACT_FORMAT, AS_OF_PLACEHOLDER, Artifact, ArtifactModel, ChurnWindows, ClassifierData,
    ClassifierRun, ClvOptions, CustomerScores, FeatureTable, FeatureTableBuilder, Histories,
    HistoriesBuilder, MAX_TRAINING_ROWS, MAX_VALIDATION_ROWS, PropensityWindow, Scores,
    TrainedClassifier,
};
use clientele_sql::parts::{Parts, PartsKey};
use clientele_sql::queries::{self, date_param};
use clientele_sql::{Engine, HeldTable, date32};

use super::{
    CheckProblem, Checked, Declaration, Operation, PlanContext, SpecContext, StepContext,
    StepOutput, chain, table_for,
};
use crate::error::{Error, Result};
use crate::spec::{Problem, TableId};

/// The tables the step writes (layer, table).
pub const WRITES: [(&str, &str); 6] = [
    ("scores", "customer_rfm"),
    ("scores", "customer_clv"),
    ("scores", "model_metrics"),
    ("scores", "customer_scores"),
    ("scores", "model_deciles"),
    ("scores", "model_profiles"),
];

/// The tables the score step reads, with their layers, for scoring outside a run.
pub const SCORE_INPUT_TABLES: [(&str, &str); 4] = [
    ("marts", "fct_orders"),
    ("marts", "fct_touchpoints"),
    ("staging", "stg_service__tickets"),
    ("marts", "customer_view"),
];

/// `kind = "score"` as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreSpec {
    /// How many months ahead to value customers (default 12).
    #[serde(default)]
    horizon_months: Option<u32>,
    /// The monthly discount rate (default 0.01, 1% a month).
    #[serde(default)]
    monthly_discount_rate: Option<f64>,
    /// Churn is no purchase in this many days (default 90).
    #[serde(default)]
    churn_horizon_days: Option<u32>,
    /// Days after a campaign send within which responses count; later sends are not trained on
    /// yet (default 30).
    #[serde(default)]
    response_window_days: Option<u32>,
    /// The share of the latest past campaigns held back to validate propensity (default 0.25).
    #[serde(default)]
    campaign_holdout_share: Option<f64>,
    /// The lowest validation ROC AUC the churn model may have (default: no floor).
    #[serde(default)]
    min_churn_auc: Option<f64>,
    /// The lowest validation ROC AUC the propensity model may have (default: no floor).
    #[serde(default)]
    min_propensity_auc: Option<f64>,
    /// Models that must run (`clv`, `churn`, `propensity`): one that cannot fails the step.
    /// Others that cannot run (no campaigns yet, too few repeat buyers) are skipped, their scores
    /// left empty, and the nightly goes on (default: none).
    #[serde(default)]
    required: Vec<String>,
}

/// The models of the score step besides RFM, which always runs.
pub const MODELS: [&str; 3] = ["clv", "churn", "propensity"];

/// The options of a `score` step, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreOptions {
    /// CLV horizon in months.
    pub horizon_months: u32,
    /// Monthly discount rate.
    pub monthly_discount_rate: f64,
    /// Churn window in days.
    pub churn_horizon_days: u32,
    /// Response window in days.
    pub response_window_days: u32,
    /// Share of the latest campaigns held back.
    pub campaign_holdout_share: f64,
    /// Floor on the churn model's validation ROC AUC.
    pub min_churn_auc: Option<f64>,
    /// Floor on the propensity model's validation ROC AUC.
    pub min_propensity_auc: Option<f64>,
    /// Models that must run.
    pub required: Vec<String>,
}

impl Declaration for ScoreSpec {
    fn check(&self, cx: &SpecContext<'_>, problems: &mut Vec<CheckProblem>) -> Option<Checked> {
        let mut problem = |m: String| problems.push(CheckProblem::Step(m));
        let rate = self.monthly_discount_rate.unwrap_or(0.01);
        if !(rate.is_finite() && rate > -1.0 && rate < 1.0) {
            problem(format!(
                "monthly_discount_rate {rate} must lie between -1 and 1 (0.01 is 1% a month)"
            ));
        }
        let horizon = self.horizon_months.unwrap_or(12);
        if horizon == 0 || horizon > 600 {
            problem(format!(
                "horizon_months {horizon} must be between 1 and 600"
            ));
        }
        let churn_horizon_days = self.churn_horizon_days.unwrap_or(90);
        if !(7..=730).contains(&churn_horizon_days) {
            problem(format!(
                "churn_horizon_days {churn_horizon_days} must be between 7 and 730"
            ));
        }
        let response_window_days = self.response_window_days.unwrap_or(30);
        if !(1..=365).contains(&response_window_days) {
            problem(format!(
                "response_window_days {response_window_days} must be between 1 and 365"
            ));
        }
        let share = self.campaign_holdout_share.unwrap_or(0.25);
        if !(share > 0.0 && share < 1.0) {
            problem(format!(
                "campaign_holdout_share {share} must lie between 0 and 1 (0.25 holds back the latest quarter of the campaigns)"
            ));
        }
        for (name, floor) in [
            ("min_churn_auc", self.min_churn_auc),
            ("min_propensity_auc", self.min_propensity_auc),
        ] {
            if let Some(f) = floor
                && !(0.0..=1.0).contains(&f)
            {
                problem(format!(
                    "{name} {f} must lie between 0 and 1 (0.5 is chance)"
                ));
            }
        }
        for m in &self.required {
            if !MODELS.contains(&m.as_str()) {
                problem(format!(
                    "required model '{m}' is not one of the step's models ({})",
                    MODELS.join(", ")
                ));
            }
        }
        Some(Checked {
            operation: Arc::new(Score(ScoreOptions {
                horizon_months: horizon,
                monthly_discount_rate: rate,
                churn_horizon_days,
                response_window_days,
                campaign_holdout_share: share,
                min_churn_auc: self.min_churn_auc,
                min_propensity_auc: self.min_propensity_auc,
                required: self.required.clone(),
            })),
            reads: SCORE_INPUT_TABLES
                .iter()
                .map(|(_, t)| table_for(t, cx.models))
                .collect(),
            writes: WRITES.iter().map(|(l, t)| TableId::new(l, t)).collect(),
        })
    }
}

/// Scores customers.
#[derive(Debug, Clone, PartialEq)]
pub struct Score(pub ScoreOptions);

#[async_trait::async_trait]
impl Operation for Score {
    fn kind(&self) -> &'static str {
        "score"
    }

    async fn plan(&self, cx: &PlanContext<'_>, problems: &mut Vec<Problem>) -> Result<Vec<String>> {
        let options = &self.0;
        let queries = [
            ("the RFM input", queries::RFM_INPUT.text().to_string()),
            (
                "the CLV transactions",
                fill(&clv_scoring_template(), cx.as_of),
            ),
            ("the churn rows", fill(&churn_scoring_template()?, cx.as_of)),
            (
                "the campaign propensity rows",
                fill(&propensity_scoring_template()?, cx.as_of),
            ),
        ];
        let mut details = Vec::new();
        let mut ok = true;
        for (what, sql) in queries {
            if let Err(e) = cx.engine.plan_schema(&sql).await {
                ok = false;
                problems.push(cx.problem(format!(
                    "step '{}': {what} cannot be built from fct_orders, fct_touchpoints, stg_service__tickets and customer_view: {}",
                    cx.step,
                    chain(&e)
                )));
            }
        }
        if ok {
            details.push(format!(
                "RFM, BG/NBD + Gamma-Gamma CLV over {} months, churn within {} days and campaign propensity (logistic regression against boosted trees){} -> customer_scores, model_metrics, model_deciles, model_profiles, artifacts",
                options.horizon_months,
                options.churn_horizon_days,
                match (options.min_churn_auc, options.min_propensity_auc) {
                    (None, None) => String::new(),
                    (c, p) => format!(
                        ", floors: churn AUC {}, propensity AUC {}",
                        c.map_or("none".into(), |v| v.to_string()),
                        p.map_or("none".into(), |v| v.to_string())
                    ),
                }
            ));
        }
        let schemas = [
            clientele_models::rfm_schema(),
            clientele_models::clv_schema(),
            clientele_models::model_metrics_schema(),
            clientele_models::customer_scores_schema(),
            clientele_models::deciles_schema(),
            clientele_models::profiles_schema(),
        ];
        for ((_, table), schema) in WRITES.iter().zip(schemas) {
            cx.engine.register_empty(table, schema)?;
        }
        Ok(details)
    }

    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput> {
        let output = score(cx.engine, cx.as_of, &self.0).await?;
        let mut out = StepOutput::default();
        for (name, table) in output.tables {
            out.add_table(match table {
                Table::Whole(batch) => cx.stage("scores", name, &batch).await?,
                Table::CustomerScores(scores) => {
                    let slices = scores.len().div_ceil(CUSTOMER_SCORES_SLICE_ROWS).max(1);
                    cx.stage_slices(
                        "scores",
                        name,
                        clientele_models::customer_scores_schema(),
                        slices,
                        |i| {
                            Ok(scores.slice(
                                i * CUSTOMER_SCORES_SLICE_ROWS,
                                CUSTOMER_SCORES_SLICE_ROWS,
                            )?)
                        },
                    )
                    .await?
                }
            });
        }
        for (model, json) in output.artifacts {
            let rel = format!("models/{model}/as_of={}/artifact.json", cx.as_of);
            let file = clientele_store::WrittenFile::of_bytes(rel.as_str(), 0, json.as_bytes());
            cx.warehouse
                .put(
                    &clientele_store::layout::staged(cx.run_id, &rel),
                    bytes::Bytes::from(json),
                )
                .await?;
            out.add_file(file);
        }
        out.report.models = output.reports;
        Ok(out)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Feature rows around a filled snapshot query (`sql/queries/features.sql`).
fn features(snapshots: &str) -> Result<String> {
    Ok(queries::FEATURES.fill(&[("snapshots", snapshots)])?)
}

/// The snapshots `snapshots` returns (one of the `*_snapshots` queries) held as a table
/// ([`Engine::hold`]), the feature query around it, and the parts of customers it runs in
/// ([`Engine::query_parts`]: under a memory limit, when its inputs are many against it; the
/// readers take the rows in any order). `sql/queries/features.sql` reads its snapshots four
/// times, and DataFusion would compute a `with` query at each of them: held, they are computed
/// once (at 1,000,000 persons the two churn windows' features 7.2 → 3.4 s,
/// docs/performance.md).
async fn held_features(
    engine: &Engine,
    what: &str,
    snapshots: &str,
) -> Result<(HeldTable, String, Option<Parts>)> {
    let held = engine.hold(what, snapshots).await?;
    let sql = features(&format!("select * from {}", held.name()))?;
    let key = PartsKey {
        table: held.name().to_string(),
        column: "customer_id".to_string(),
        line: 0,
        rows_per_mib: None,
    };
    let parts = engine
        .query_parts(&format!("the features of {what}"), &sql, &key, 1)
        .await?
        .map_err(|problem| {
            Error::Internal(format!(
                "the features of {what} cannot run in parts of customers: {problem:?}"
            ))
        })?;
    if let Some(parts) = &parts {
        tracing::info!(
            query = what,
            parts = parts.count(),
            keyed_rows = parts.keyed_rows(),
            memory_limit_mb = engine.memory_limit_mb(),
            "reading the features in parts of customers (docs/performance.md#models-in-parts)"
        );
    }
    Ok((held, sql, parts))
}

/// The churn snapshots as of `cutoff`, labelled by the `horizon_days` after it.
fn churn_snapshots(cutoff: NaiveDate, horizon_days: u32) -> Result<String> {
    let end = cutoff + chrono::Days::new(u64::from(horizon_days));
    Ok(queries::CHURN_SNAPSHOTS.fill(&[
        ("cutoff", &date_param(cutoff)),
        ("horizon_end", &date_param(end)),
    ])?)
}

/// Campaign sends up to `last_send`, each as of the day before it, labelled by a response.
fn propensity_snapshots(last_send: NaiveDate) -> Result<String> {
    Ok(queries::PROPENSITY_TRAINING_SNAPSHOTS.fill(&[("last_send", &date_param(last_send))])?)
}

/// The rows of `sql/queries/clv_transactions.sql` folded into each customer's history up to
/// `as_of_day` (days since 1970-01-01) as they are read, in order of customer and day: neither
/// the orders as Arrow arrays nor the orders themselves are held (forty million at ten million
/// customers). With the SHA-256 of every order read (customer id, day, amount), the artifact's
/// data checksum. A query that runs out of the job's memory limit is read again from the start,
/// the next way of `Engine::attempts`.
async fn read_histories(
    engine: &Engine,
    what: &str,
    sql: &str,
    as_of_day: i64,
) -> Result<(Histories, String)> {
    engine
        .run_attempts(what, out_of_memory, |attempt| async move {
            let mut stream = engine.stream_attempt(what, sql, attempt).await?;
            let mut orders = Orders {
                histories: HistoriesBuilder::weeks(as_of_day),
                checksum: sha2::Sha256::default(),
            };
            while let Some(batch) = stream.next().await {
                orders.push(&batch?)?;
            }
            use sha2::Digest;
            Ok::<_, Error>((
                orders.histories.finish(),
                hex::encode(orders.checksum.finalize()),
            ))
        })
        .await
}

/// The CLV query's orders as they are read: folded into the histories and the checksum.
struct Orders {
    histories: HistoriesBuilder,
    checksum: sha2::Sha256,
}

impl Orders {
    fn push(&mut self, b: &RecordBatch) -> Result<()> {
        use arrow::array::Array;
        use sha2::Digest;
        let bad = |m: &str| Error::Input(format!("the CLV query {m}"));
        let column = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| bad(&format!("returned no column '{name}'")))
        };
        let c = column("customer_id")?
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("returned customer_id not as text"))?;
        let d = column("order_date")?
            .as_primitive_opt::<arrow::datatypes::Date32Type>()
            .ok_or_else(|| bad("returned order_date not as a date"))?;
        let a = column("amount")?
            .as_primitive_opt::<arrow::datatypes::Float64Type>()
            .ok_or_else(|| bad("returned amount not as a number"))?;
        for i in 0..b.num_rows() {
            // The query keeps only orders with a customer; a date or amount is always present in
            // fct_orders, and an order without one carries nothing to model.
            if c.is_null(i) || d.is_null(i) || a.is_null(i) {
                continue;
            }
            let (customer, day, amount) = (c.value(i), i64::from(d.value(i)), a.value(i));
            self.checksum.update(customer.as_bytes());
            self.checksum.update(day.to_le_bytes());
            self.checksum.update(amount.to_le_bytes());
            self.histories
                .push(customer, day, amount)
                .map_err(|e| bad(&format!("returned orders out of order: {e}")))?;
        }
        Ok(())
    }
}

/// A model's line in the run manifest and report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelReport {
    /// `clv`, `churn` or `propensity`.
    pub model: String,
    /// `ran`, `skipped: <why>` (the data cannot carry the model yet: no campaigns, too few
    /// repeat buyers) or `failed: <why>` (its fit failed); a model that did not run leaves its
    /// scores empty.
    #[serde(default = "ran")]
    pub status: String,
    /// The version written beside its scores.
    pub version: String,
    /// Customers scored.
    pub scored: u64,
    /// Headline metrics by name (validation metrics for classifiers).
    pub metrics: BTreeMap<String, f64>,
    /// The profile rule with the highest rate, for classifiers.
    pub top_rule: Option<String>,
}

fn ran() -> String {
    "ran".into()
}

/// A model that ran, or its status line when it did not.
enum Outcome<T> {
    Ran(T),
    NotRun(String),
}

impl<T> Outcome<T> {
    fn ran(&self) -> Option<&T> {
        match self {
            Outcome::Ran(v) => Some(v),
            Outcome::NotRun(_) => None,
        }
    }
}

/// A model's result as the nightly takes it: a floor that is not met fails the step, as does any
/// error of a model the step declares `required`; otherwise data that cannot carry the model (no
/// campaign sends, too few repeat buyers: the models' `BadInput`) skips it and any other model
/// error marks it failed, and the step goes on without its scores.
fn degrade<T>(
    model: &str,
    required: &[String],
    result: std::result::Result<T, clientele_models::Error>,
) -> Result<Outcome<T>> {
    match result {
        Ok(v) => Ok(Outcome::Ran(v)),
        Err(e @ clientele_models::Error::BelowFloor(_)) => Err(e.into()),
        Err(e) if required.iter().any(|r| r == model) => Err(Error::Input(format!(
            "the {model} model is required (the score step's `required`) but could not run: {e}"
        ))),
        Err(e) => {
            let status = match e {
                clientele_models::Error::BadInput(why) => format!("skipped: {why}"),
                other => format!("failed: {other}"),
            };
            tracing::warn!(model, %status, "a model did not run; the nightly goes on without its scores");
            Ok(Outcome::NotRun(status))
        }
    }
}

/// What the step produced: tables by name and artifacts by model.
pub(crate) struct ScoreOutput {
    pub tables: Vec<(&'static str, Table)>,
    pub artifacts: Vec<(String, String)>,
    pub reports: Vec<ModelReport>,
}

/// A table the step writes: held whole, or `customer_scores`, written slice by slice.
pub(crate) enum Table {
    Whole(RecordBatch),
    CustomerScores(Box<CustomerScores>),
}

/// Rows of `customer_scores` built and written at once.
const CUSTOMER_SCORES_SLICE_ROWS: usize = 1 << 18;

/// The trained classifiers applied to their scoring rows as of `as_of`. When both churn and
/// propensity were trained, their rows are read with one query (`sql/queries/scoring_snapshots.sql`
/// around the features): the features of a customer on a date are the same whichever model asks,
/// so each model scores the rows, and the values, its artifact's own scoring query gives, and the
/// features are computed once. Otherwise the one trained model reads its artifact's query.
async fn apply(
    engine: &Engine,
    churn: Outcome<TrainedClassifier>,
    propensity: Outcome<TrainedClassifier>,
    as_of: NaiveDate,
    opts: &ScoreOptions,
) -> Result<(Outcome<ClassifierRun>, Outcome<ClassifierRun>)> {
    // A query or row that fails stops the step; a model that cannot score its rows degrades as
    // the model's own errors do.
    let scored = |model: &str,
                  trained: TrainedClassifier,
                  scores: std::result::Result<Scores, clientele_models::Error>| {
        degrade(model, &opts.required, scores.map(|s| trained.scored(s)))
    };
    match (churn, propensity) {
        (Outcome::Ran(churn), Outcome::Ran(propensity)) => {
            let (_held, sql, parts) = both_scoring_rows(engine, as_of).await?;
            let scorers = [
                Scorer {
                    predictor: &churn.selection.predictor,
                    rows: Some("_churn"),
                },
                Scorer {
                    predictor: &propensity.selection.predictor,
                    rows: Some("_propensity"),
                },
            ];
            let what = "churn and campaign propensity scoring rows";
            let [c, p] = <[_; 2]>::try_from(
                scored_rows(
                    engine,
                    what,
                    &sql,
                    parts.as_ref(),
                    &scorers,
                    SCORING_PART_ROWS,
                )
                .await?,
            )
            .map_err(|_| Error::Internal(format!("{what}: not two models' scores")))?;
            Ok((
                scored("churn", churn, c)?,
                scored("propensity", propensity, p)?,
            ))
        }
        // One model trained (or none): it reads its artifact's own scoring query.
        (churn, propensity) => {
            let what = "campaign propensity scoring rows";
            Ok((
                apply_one(engine, "churn", "churn scoring rows", churn, as_of, &scored).await?,
                apply_one(engine, "propensity", what, propensity, as_of, &scored).await?,
            ))
        }
    }
}

/// One model's scores from its artifact's own scoring query, or its status when it did not run.
async fn apply_one(
    engine: &Engine,
    model: &str,
    what: &str,
    trained: Outcome<TrainedClassifier>,
    as_of: NaiveDate,
    scored: &impl Fn(
        &str,
        TrainedClassifier,
        std::result::Result<Scores, clientele_models::Error>,
    ) -> Result<Outcome<ClassifierRun>>,
) -> Result<Outcome<ClassifierRun>> {
    let trained = match trained {
        Outcome::NotRun(status) => return Ok(Outcome::NotRun(status)),
        Outcome::Ran(trained) => trained,
    };
    let sql = fill(&trained.artifact.scoring_query, as_of);
    let scorer = Scorer {
        predictor: &trained.selection.predictor,
        rows: None,
    };
    let scores = scored_rows(engine, what, &sql, None, &[scorer], SCORING_PART_ROWS)
        .await?
        .pop()
        .ok_or_else(|| Error::Internal(format!("{what}: no scores")))?;
    scored(model, trained, scores)
}

/// The query of the feature rows of both classifiers' scoring snapshots as of `as_of`, with
/// `_churn` and `_propensity` marking each model's rows (`sql/queries/scoring_snapshots.sql`),
/// and the snapshots it reads, held while it runs.
async fn both_scoring_rows(
    engine: &Engine,
    as_of: NaiveDate,
) -> Result<(HeldTable, String, Option<Parts>)> {
    let day = date_param(as_of);
    let snapshots = queries::SCORING_SNAPSHOTS.fill(&[
        (
            "churn",
            &queries::CHURN_SCORING_SNAPSHOTS.fill(&[("as_of", &day)])?,
        ),
        (
            "propensity",
            &queries::PROPENSITY_SCORING_SNAPSHOTS.fill(&[("as_of", &day)])?,
        ),
    ])?;
    held_features(engine, "the scoring snapshots", &snapshots).await
}

/// Rows of a scoring query scored at once: a part's feature rows are held, never all of them
/// (every customer's features at ten million customers would be gigabytes).
const SCORING_PART_ROWS: usize = 4 * clientele_models::PREDICT_ROWS;

/// A model scoring the rows of a query: all of them, or those whose boolean column `rows` is
/// true.
struct Scorer<'a> {
    predictor: &'a clientele_models::Predictor,
    rows: Option<&'a str>,
}

/// A scorer's rows as they are read: the part not scored yet and the parts scored, or why the
/// model could not score them.
struct Scoring {
    part: FeatureTableBuilder,
    scored: std::result::Result<
        Vec<(arrow::array::StringArray, arrow::array::Float64Array)>,
        clientele_models::Error,
    >,
}

/// The probability of every row of a scoring query for each scorer (in order), in order of
/// customer id: the rows are read once and each scorer's are scored about `part_rows` at a time.
/// A query that runs out of the job's memory limit is read again from the start, as
/// [`read_query`] does. The inner error: a predictor could not score its rows.
async fn scored_rows(
    engine: &Engine,
    what: &str,
    sql: &str,
    parts: Option<&Parts>,
    scorers: &[Scorer<'_>],
    part_rows: usize,
) -> Result<Vec<std::result::Result<Scores, clientele_models::Error>>> {
    let parts = engine
        .run_attempts(what, out_of_memory, |attempt| async move {
            let mut stream = engine
                .stream_attempt_in_parts(what, sql, attempt, parts)
                .await?;
            let schema = stream.schema();
            let mut scoring = Vec::with_capacity(scorers.len());
            for _ in scorers {
                scoring.push(Scoring {
                    part: FeatureTableBuilder::new(what, &schema)?,
                    scored: Ok(Vec::new()),
                });
            }
            let score_part = |scorer: &Scorer<'_>, s: &mut Scoring| -> Result<()> {
                let part = std::mem::replace(&mut s.part, FeatureTableBuilder::new(what, &schema)?);
                if let Ok(parts) = &mut s.scored {
                    let rows = part.finish();
                    match scorer.predictor.predict(&rows) {
                        Ok(p) => parts.push((
                            arrow::array::StringArray::from_iter_values(rows.ids.iter()),
                            arrow::array::Float64Array::from(p),
                        )),
                        Err(e) => s.scored = Err(e),
                    }
                }
                Ok(())
            };
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                if scoring.iter().all(|s| s.scored.is_err()) {
                    // Every model failed to score: the rest of the rows would be read for none.
                    break;
                }
                for (scorer, s) in scorers.iter().zip(&mut scoring) {
                    if s.scored.is_err() {
                        continue;
                    }
                    match scorer.rows {
                        None => s.part.push(&batch)?,
                        Some(column) => s.part.push(&rows_where(&batch, what, column)?)?,
                    }
                    if s.part.rows_read() >= part_rows {
                        score_part(scorer, s)?;
                    }
                }
            }
            drop(stream);
            for (scorer, s) in scorers.iter().zip(&mut scoring) {
                score_part(scorer, s)?;
            }
            Ok::<_, Error>(scoring.into_iter().map(|s| s.scored).collect::<Vec<_>>())
        })
        .await?;
    Ok(parts
        .into_iter()
        .map(|parts| parts.and_then(|parts| Scores::from_parts(&parts)))
        .collect())
}

/// The rows of `batch` whose boolean column `column` is true (null counts as false).
fn rows_where(batch: &RecordBatch, what: &str, column: &str) -> Result<RecordBatch> {
    let mask = batch
        .column_by_name(column)
        .and_then(|c| c.as_boolean_opt())
        .ok_or_else(|| Error::Input(format!("{what} have no true-or-false column '{column}'")))?;
    if arrow::array::Array::null_count(mask) == 0 {
        return Ok(arrow::compute::filter_record_batch(batch, mask)?);
    }
    let mask = arrow::compute::prep_null_mask_filter(mask);
    Ok(arrow::compute::filter_record_batch(batch, &mask)?)
}

/// The result of a fit run on a thread of its own.
async fn finished<T>(what: &str, task: tokio::task::JoinHandle<T>) -> Result<T> {
    task.await
        .map_err(|e| Error::Internal(format!("the {what} model's fit stopped: {e}")))
}

/// Each campaign's first send day (days since 1970-01-01) among the propensity model's training
/// sends (the query `sends`): what the held-out campaigns are chosen by. The sends alone, without
/// their features.
async fn campaign_first_sends(engine: &Engine, sends: &str) -> Result<BTreeMap<String, i32>> {
    let sql = format!(
        "select cast(_group as varchar) as campaign, cast(min(_snapshot_date) as date) as first_send \
         from ({sends}) sends where _group is not null group by 1"
    );
    let batches = engine
        .collect("the campaigns' first send days", &sql)
        .await?;
    let mut first = BTreeMap::new();
    for b in &batches {
        let (Some(campaigns), Some(days)) = (
            b.column(0).as_string_opt::<i32>(),
            b.column(1)
                .as_primitive_opt::<arrow::datatypes::Date32Type>(),
        ) else {
            return Err(Error::Internal(
                "the campaigns' first send days are not text and dates".into(),
            ));
        };
        for (c, d) in campaigns.iter().zip(days.iter()) {
            if let (Some(c), Some(d)) = (c, d) {
                first.insert(c.to_string(), d);
            }
        }
    }
    Ok(first)
}

/// A classifier's rows read once and split as they are read: at most [`MAX_TRAINING_ROWS`] of
/// the rows of the training side (the sample the fits learn from), at most
/// [`MAX_VALIDATION_ROWS`] of the others, and, when asked, at most [`MAX_TRAINING_ROWS`] of every
/// row (a refit window that is the whole). The samples are those of splitting and sampling the
/// whole table, which is never held.
struct SplitRows {
    train: FeatureTable,
    /// Rows of the training side read, sampled or not.
    train_window_rows: usize,
    valid: FeatureTable,
    refit: Option<FeatureTable>,
}

/// [`SplitRows`] of the feature query `sql`, the validation side's rows marked by `in_valid`. A
/// query that runs out of the job's memory limit is read again from the start, the next way of
/// `Engine::attempts`.
async fn split_rows(
    engine: &Engine,
    what: &str,
    sql: &str,
    parts: Option<&Parts>,
    with_refit: bool,
    in_valid: impl Fn(&RecordBatch) -> Result<arrow::array::BooleanArray>,
) -> Result<SplitRows> {
    let in_valid = &in_valid;
    engine
        .run_attempts(what, out_of_memory, |attempt| async move {
            let mut stream = engine
                .stream_attempt_in_parts(what, sql, attempt, parts)
                .await?;
            let schema = stream.schema();
            let mut train = FeatureTableBuilder::sampled(what, &schema, MAX_TRAINING_ROWS)?;
            let mut valid = FeatureTableBuilder::sampled(what, &schema, MAX_VALIDATION_ROWS)?;
            let mut refit = match with_refit {
                true => Some(FeatureTableBuilder::sampled(
                    what,
                    &schema,
                    MAX_TRAINING_ROWS,
                )?),
                false => None,
            };
            let internal = |e: arrow::error::ArrowError| Error::Internal(format!("{what}: {e}"));
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let validating = in_valid(&batch)?;
                let training = arrow::compute::not(&validating).map_err(internal)?;
                train.push(
                    &arrow::compute::filter_record_batch(&batch, &training).map_err(internal)?,
                )?;
                valid.push(
                    &arrow::compute::filter_record_batch(&batch, &validating).map_err(internal)?,
                )?;
                if let Some(refit) = &mut refit {
                    refit.push(&batch)?;
                }
            }
            drop(stream);
            let train_window_rows = train.rows_read();
            Ok::<_, Error>(SplitRows {
                train: train.finish(),
                train_window_rows,
                valid: valid.finish(),
                refit: refit.map(FeatureTableBuilder::finish),
            })
        })
        .await
}

/// The churn model's rows, both windows read with one query (their snapshots held together,
/// [`held_features`]) and split by snapshot date: the training window's sample and the
/// validation window's (which is also the refit window). The same rows as reading each window
/// with a query of its own; the features' joins and aggregations run once for both.
async fn churn_tables(engine: &Engine, windows: &ChurnWindows) -> Result<SplitRows> {
    let what = "churn training and validation rows";
    let h = windows.horizon_days;
    let snapshots = format!(
        "select * from ({}) union all select * from ({})",
        churn_snapshots(windows.train_cutoff, h)?,
        churn_snapshots(windows.validation_cutoff, h)?
    );
    let (held, sql, parts) = held_features(engine, "the churn snapshots", &snapshots).await?;
    let validation_day = date32(windows.validation_cutoff);
    let rows = split_rows(engine, what, &sql, parts.as_ref(), false, |batch| {
        rows_on_day(batch, what, validation_day)
    })
    .await?;
    drop(held);
    Ok(rows)
}

/// Which rows of `batch` have the snapshot date `day` (days since 1970-01-01).
fn rows_on_day(batch: &RecordBatch, what: &str, day: i32) -> Result<arrow::array::BooleanArray> {
    let dates = batch
        .column_by_name("_snapshot_date")
        .ok_or_else(|| Error::Input(format!("{what} have no column '_snapshot_date'")))?;
    let dates = arrow::compute::cast(dates, &arrow::datatypes::DataType::Date32)
        .map_err(|e| Error::Input(format!("{what}: '_snapshot_date' is not a date: {e}")))?;
    let dates = dates.as_primitive::<arrow::datatypes::Date32Type>();
    Ok(dates.iter().map(|d| Some(d == Some(day))).collect())
}

/// The propensity model's rows, split as they are read: at most [`MAX_TRAINING_ROWS`] of the
/// training campaigns' sends (the sample the fits learn from), at most [`MAX_VALIDATION_ROWS`] of
/// the held-out sends, and at most [`MAX_TRAINING_ROWS`] of every send (the sample the kept
/// algorithm is refitted on, and its profile, whose counts are scaled to every send). The fits
/// get the same rows as from splitting and sampling the whole table, which is never held.
struct PropensityRows {
    train: FeatureTable,
    train_window_rows: usize,
    valid: FeatureTable,
    refit: FeatureTable,
    method: &'static str,
}

async fn propensity_tables(
    engine: &Engine,
    sql: &str,
    parts: Option<&Parts>,
    holdout: clientele_models::CampaignHoldout,
) -> Result<std::result::Result<PropensityRows, clientele_models::Error>> {
    let what = "campaign propensity training rows";
    let holdout = &holdout;
    let rows = split_rows(engine, what, sql, parts, true, |batch| {
        held_rows(batch, holdout)
    })
    .await?;
    let SplitRows {
        train,
        train_window_rows,
        valid,
        refit,
    } = rows;
    let refit = refit.ok_or_else(|| Error::Internal(format!("{what}: no refit rows")))?;
    Ok(holdout
        .check_sides(train_window_rows, valid.window_len())
        .map(|()| PropensityRows {
            train,
            train_window_rows,
            valid,
            refit,
            method: holdout.method(),
        }))
}

/// Which rows of a batch of campaign sends validate (`customer_id` and `_group` decide).
fn held_rows(
    batch: &RecordBatch,
    holdout: &clientele_models::CampaignHoldout,
) -> Result<arrow::array::BooleanArray> {
    use arrow::array::Array;
    let text = |name: &str| -> Result<arrow::array::ArrayRef> {
        let column = batch.column_by_name(name).ok_or_else(|| {
            Error::Input(format!(
                "the campaign propensity training rows have no column '{name}'"
            ))
        })?;
        arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).map_err(|e| {
            Error::Input(format!(
                "the campaign propensity training rows' '{name}' is not text: {e}"
            ))
        })
    };
    let (ids, groups) = (text("customer_id")?, text("_group")?);
    let (ids, groups) = (ids.as_string::<i32>(), groups.as_string::<i32>());
    Ok((0..batch.num_rows())
        .map(|i| {
            let group = (!groups.is_null(i)).then(|| groups.value(i));
            Some(holdout.holds(ids.value(i), group))
        })
        .collect())
}

/// Whether a query's error is running out of the job's memory limit: `Engine::run_attempts` then
/// runs it again the next way.
fn out_of_memory(e: &Error) -> bool {
    matches!(e, Error::Sql(e) if e.is_out_of_memory())
}

/// The query of the churn model's scoring rows, with the date written `{as_of}`.
pub fn churn_scoring_template() -> Result<String> {
    features(queries::CHURN_SCORING_SNAPSHOTS.text())
}

/// The query of the propensity model's scoring rows, with the date written `{as_of}`.
pub fn propensity_scoring_template() -> Result<String> {
    features(queries::PROPENSITY_SCORING_SNAPSHOTS.text())
}

/// The query of the CLV model's transactions, with the date written `{as_of}`.
pub fn clv_scoring_template() -> String {
    queries::CLV_TRANSACTIONS.text().to_string()
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
        "validation_window_rows",
    ] {
        if let Some(v) = run.artifact.metrics.get(key) {
            metrics.insert(key.to_string(), *v);
        }
    }
    ModelReport {
        status: ran(),
        model: run.model.clone(),
        version: run.version.clone(),
        scored: run.scores.len() as u64,
        metrics,
        top_rule: run.selection.profile.first().map(|r| {
            format!(
                "{}: {:.0}% ({} customers)",
                r.rule,
                r.rate * 100.0,
                crate::thousands(r.rows)
            )
        }),
    }
}

/// Runs the step's models on the tables registered in `engine`.
async fn score(engine: &Engine, as_of: NaiveDate, opts: &ScoreOptions) -> Result<ScoreOutput> {
    let mut clock = std::time::Instant::now();
    let mut lap = |phase: &str| {
        tracing::debug!(
            phase,
            seconds = clock.elapsed().as_secs_f64(),
            "score phase"
        );
        clock = std::time::Instant::now();
    };

    // The RFM cells' names, read first so that a grid that cannot be read fails the step before
    // the models run; RFM itself runs last.
    let grid = engine
        .collect(
            "naming the RFM cells (sql/queries/rfm_segment_names.sql)",
            queries::RFM_SEGMENT_NAMES.text(),
        )
        .await?;
    let rfm_names = clientele_models::RfmSegmentNames::from_batches(&grid)?;
    lap("rfm names");

    // Campaign propensity first: its rows' query is the step's largest. Then the churn rows, and
    // only then the fits, side by side: the propensity fits (single-threaded) on a thread of
    // their own, which owns the rows, the churn fits here; then CLV. No fit runs beside a
    // training query, and no more than two at once: a query's hash tables and a fit's rows and
    // matrices are the step's largest holdings, and two fits keep both cores as busy as a fit
    // beside a query does.
    let window = PropensityWindow::new(as_of, opts.response_window_days)?;
    // Which sends validate is chosen from the campaigns' first send days, before the rows are
    // read, so that only the samples the fits and the validation use are ever held.
    let (held_sends, propensity_sql, propensity_parts) = held_features(
        engine,
        "the campaign sends",
        &propensity_snapshots(window.last_send)?,
    )
    .await?;
    let first_sends =
        campaign_first_sends(engine, &format!("select * from {}", held_sends.name())).await?;
    let sends = match degrade(
        "propensity",
        &opts.required,
        clientele_models::CampaignHoldout::choose(&first_sends, opts.campaign_holdout_share),
    )? {
        Outcome::NotRun(status) => Outcome::NotRun(status),
        Outcome::Ran(holdout) => {
            let rows =
                propensity_tables(engine, &propensity_sql, propensity_parts.as_ref(), holdout)
                    .await?;
            degrade("propensity", &opts.required, rows)?
        }
    };
    drop(held_sends);
    lap("propensity rows");
    // Churn; its rows are dropped once it is trained.
    let windows = ChurnWindows::new(as_of, opts.churn_horizon_days)?;
    let churn_rows = churn_tables(engine, &windows).await?;
    let (churn_train, churn_train_rows, churn_valid) = (
        churn_rows.train,
        churn_rows.train_window_rows,
        churn_rows.valid,
    );
    lap("churn rows");

    let propensity_task = {
        let required = opts.required.clone();
        let min_auc = opts.min_propensity_auc;
        let scoring_query = propensity_scoring_template()?;
        tokio::task::spawn_blocking(move || -> Result<Outcome<TrainedClassifier>> {
            let rows = match sends {
                Outcome::NotRun(status) => return Ok(Outcome::NotRun(status)),
                Outcome::Ran(rows) => rows,
            };
            let held: std::collections::BTreeSet<&str> = rows
                .valid
                .groups
                .iter()
                .flat_map(|g| g.iter().flatten())
                .collect();
            let mut window = window.describe(&held.into_iter().collect::<Vec<_>>());
            window.insert("validation_split".into(), rows.method.into());
            degrade(
                "propensity",
                &required,
                clientele_models::train_classifier(&ClassifierData {
                    model: "propensity",
                    as_of,
                    train: &rows.train,
                    train_window_rows: rows.train_window_rows,
                    valid: &rows.valid,
                    refit: &rows.refit,
                    window,
                    scoring_query,
                    min_roc_auc: min_auc,
                }),
            )
        })
    };
    let churn = degrade(
        "churn",
        &opts.required,
        clientele_models::train_classifier(&ClassifierData {
            model: "churn",
            as_of,
            train: &churn_train,
            train_window_rows: churn_train_rows,
            valid: &churn_valid,
            refit: &churn_valid,
            window: windows.describe(),
            scoring_query: churn_scoring_template()?,
            min_roc_auc: opts.min_churn_auc,
        }),
    )?;
    drop((churn_train, churn_valid));
    lap("churn trained");

    // Buy-till-you-die CLV.
    let clv_template = clv_scoring_template();
    let as_of_day = i64::from(date32(as_of));
    let (histories, transactions_checksum) = read_histories(
        engine,
        "reading the orders for CLV",
        &fill(&clv_template, as_of),
        as_of_day,
    )
    .await?;
    lap("clv orders");
    let clv_checksums = BTreeMap::from([("transactions".to_string(), transactions_checksum)]);
    let clv_options = ClvOptions {
        horizon_months: opts.horizon_months,
        monthly_discount_rate: opts.monthly_discount_rate,
    };
    // The CLV fit is single-threaded: it runs beside the last propensity fits and the scoring
    // queries.
    let clv_task =
        tokio::task::spawn_blocking(move || clientele_models::score_clv(&histories, &clv_options));

    let propensity = finished("propensity", propensity_task).await??;
    lap("propensity trained");

    // Scoring: each model's rows as of the as-of date, read now that the training rows are gone.
    let (churn, propensity) = apply(engine, churn, propensity, as_of, opts).await?;
    lap("scored");
    let clv_outcome = degrade("clv", &opts.required, finished("CLV", clv_task).await?)?;
    let (clv, clv_metrics, params) = match &clv_outcome {
        Outcome::Ran((clv, metrics, params)) => (clv.clone(), metrics.clone(), Some(*params)),
        Outcome::NotRun(_) => (
            RecordBatch::new_empty(clientele_models::clv_schema()),
            RecordBatch::new_empty(clientele_models::metrics_schema()),
            None,
        ),
    };
    let clv_version = format!(
        "clv:bgnbd+gamma_gamma@{} (clientele {})",
        as_of.format("%Y-%m-%d"),
        env!("CARGO_PKG_VERSION")
    );
    let mut clv_fit = BTreeMap::new();
    let names = clv_metrics
        .column(0)
        .as_string_opt::<i32>()
        .ok_or_else(|| Error::Input("model_metrics.model is not text".into()))?;
    let metric = clv_metrics
        .column(1)
        .as_string_opt::<i32>()
        .ok_or_else(|| Error::Input("model_metrics.metric is not text".into()))?;
    let values = clv_metrics
        .column(2)
        .as_primitive_opt::<arrow::datatypes::Float64Type>()
        .ok_or_else(|| Error::Input("model_metrics.value is not a number".into()))?;
    for i in 0..clv_metrics.num_rows() {
        clv_fit.insert(
            format!("{}_{}", names.value(i), metric.value(i)),
            values.value(i),
        );
    }
    let clv_artifact = params.map(|params| Artifact {
        artifact_format: ARTIFACT_FORMAT,
        model: "clv".into(),
        version: clv_version.clone(),
        trained_as_of: as_of.format("%Y-%m-%d").to_string(),
        training_window: BTreeMap::from([("calibration_end".to_string(), as_of.to_string())]),
        features: Vec::new(),
        scoring_query: clv_template,
        model_params: ArtifactModel::Clv {
            params,
            horizon_months: opts.horizon_months,
            monthly_discount_rate: opts.monthly_discount_rate,
        },
        metrics: clv_fit.clone(),
        data_checksums: clv_checksums,
    });

    lap("churn and CLV fits finished");
    // RFM, last: its table is not held while the queries and fits above run.
    let rfm_input = engine
        .collect(
            "reading the RFM input 'customer_view'",
            queries::RFM_INPUT.text(),
        )
        .await?;
    lap("rfm input");
    let rfm = clientele_models::score_rfm(&rfm_input, &rfm_names)?;
    drop(rfm_input);
    lap("rfm");
    // Tables.
    let customers_batches = engine
        .collect(
            "listing customers",
            "select cast(customer_id as varchar) as customer_id from customer_view order by customer_id",
        )
        .await?;
    let mut ids = Vec::with_capacity(customers_batches.len());
    for b in &customers_batches {
        ids.push(
            b.column(0)
                .as_string_opt::<i32>()
                .ok_or_else(|| Error::Input("customer_view.customer_id is not text".into()))?
                as &dyn arrow::array::Array,
        );
    }
    let customers = clientele_models::joined_text(&ids)?;
    drop(customers_batches);
    let runs: Vec<&ClassifierRun> = [churn.ran(), propensity.ran()]
        .into_iter()
        .flatten()
        .collect();
    let scores = CustomerScores::new(
        &customers,
        &rfm,
        &clv,
        &clv_version,
        churn.ran(),
        propensity.ran(),
    )?;
    drop(customers);
    let metrics = clientele_models::metrics_with_classifiers(&clv_metrics, &runs)?;
    let deciles = clientele_models::deciles_batch(&runs)?;
    let profiles = clientele_models::profiles_batch(&runs)?;
    let not_run = |model: &str, status: &str| ModelReport {
        model: model.into(),
        status: status.into(),
        version: String::new(),
        scored: 0,
        metrics: BTreeMap::new(),
        top_rule: None,
    };
    let mut reports = vec![match &clv_outcome {
        Outcome::Ran(_) => ModelReport {
            model: "clv".into(),
            status: ran(),
            version: clv_version,
            scored: clv.num_rows() as u64,
            metrics: clv_fit,
            top_rule: None,
        },
        Outcome::NotRun(status) => not_run("clv", status),
    }];
    let mut artifacts = Vec::new();
    if let Some(a) = clv_artifact {
        artifacts.push(("clv".to_string(), a.to_json()?));
    }
    for (name, outcome) in [("churn", &churn), ("propensity", &propensity)] {
        match outcome {
            Outcome::Ran(run) => {
                reports.push(report(run));
                artifacts.push((name.to_string(), run.artifact.to_json()?));
            }
            Outcome::NotRun(status) => reports.push(not_run(name, status)),
        }
    }
    let not_run: Vec<(&str, &str)> = reports
        .iter()
        .filter(|r| r.status != "ran")
        .map(|r| (r.model.as_str(), r.status.as_str()))
        .collect();
    let metrics = clientele_models::model_metrics_table(&metrics, &not_run)?;
    lap("tables");
    Ok(ScoreOutput {
        tables: vec![
            (WRITES[0].1, Table::Whole(rfm)),
            (WRITES[1].1, Table::Whole(clv)),
            (WRITES[2].1, Table::Whole(metrics)),
            (WRITES[3].1, Table::CustomerScores(Box::new(scores))),
            (WRITES[4].1, Table::Whole(deciles)),
            (WRITES[5].1, Table::Whole(profiles)),
        ],
        artifacts,
        reports,
    })
}

/// Scores again with a saved artifact: runs its query as of `as_of` on the tables registered in
/// `engine` and applies its model. Classifiers give `customer_id`, the probability (named
/// `churn_probability` or `propensity`) and `model_version`; CLV gives the `customer_clv` table.
pub async fn score_with_artifact(
    engine: &Engine,
    artifact: &Artifact,
    as_of: NaiveDate,
) -> Result<RecordBatch> {
    let sql = artifact.scoring_query(as_of);
    match &artifact.model_params {
        ArtifactModel::Clv { .. } => {
            let Some((params, options)) = artifact.clv_options() else {
                return Err(Error::Input("the CLV artifact has no parameters".into()));
            };
            let as_of_day = i64::from(date32(as_of));
            let (histories, _) =
                read_histories(engine, "reading the orders", &sql, as_of_day).await?;
            Ok(clientele_models::clv_scores(
                &params.counts,
                &params.spend,
                &histories,
                &options,
            )?)
        }
        ArtifactModel::Classifier { predictor } => {
            let scorer = Scorer {
                predictor,
                rows: None,
            };
            let what = format!("{} scoring rows", artifact.model);
            let scores = scored_rows(engine, &what, &sql, None, &[scorer], SCORING_PART_ROWS)
                .await?
                .pop()
                .ok_or_else(|| Error::Internal(format!("{what}: no scores")))??;
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
            let n = scores.len();
            Ok(RecordBatch::try_new(
                schema,
                vec![
                    std::sync::Arc::new(scores.ids().clone()),
                    std::sync::Arc::new(scores.probabilities().clone()),
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
    #[test]
    fn models_degrade_unless_a_floor_or_the_job_requires_them() {
        use clientele_models::Error as ModelError;
        let no_data = || Err::<(), _>(ModelError::BadInput("no campaign sends".into()));
        assert!(matches!(
            degrade("propensity", &[], no_data()),
            Ok(Outcome::NotRun(s)) if s == "skipped: no campaign sends"
        ));
        assert!(
            degrade("propensity", &["propensity".to_string()], no_data())
                .is_err_and(|e| e.to_string().contains("the propensity model is required"))
        );
        assert!(
            degrade(
                "churn",
                &[],
                Err::<(), _>(ModelError::BelowFloor("AUC 0.5".into()))
            )
            .is_err()
        );
        assert!(matches!(
            degrade("clv", &[], Err::<(), _>(ModelError::Internal("boom".into()))),
            Ok(Outcome::NotRun(s)) if s.starts_with("failed:")
        ));
        assert!(matches!(
            degrade("clv", &[], Ok::<_, ModelError>(7)),
            Ok(Outcome::Ran(7))
        ));
    }

    use super::*;
    use clientele_sql::EngineOptions;
    use clientele_store::Warehouse;

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    /// A feature query's rows read into the builder `builder` makes for its columns. A query that
    /// runs out of the job's memory limit is read again from the start, the next way of
    /// `Engine::attempts` (a fair memory pool, then sort-merge joins).
    async fn read_query(
        engine: &Engine,
        what: &str,
        sql: &str,
        builder: impl Fn(&arrow::datatypes::SchemaRef) -> Result<FeatureTableBuilder>,
    ) -> Result<(FeatureTable, usize)> {
        let builder = &builder;
        engine
            .run_attempts(what, out_of_memory, |attempt| async move {
                let stream = engine.stream_attempt(what, sql, attempt).await?;
                let rows = builder(&stream.schema())?;
                read_rows(stream, rows).await
            })
            .await
    }

    /// Every batch of `stream` pushed into `builder`; the table and the rows read. The stream is
    /// dropped before the rows are sorted, so the query's hash tables are gone by then.
    async fn read_rows(
        mut stream: clientele_sql::BatchStream,
        mut builder: FeatureTableBuilder,
    ) -> Result<(FeatureTable, usize)> {
        while let Some(batch) = stream.next().await {
            builder.push(&batch?)?;
        }
        drop(stream);
        let rows = builder.rows_read();
        Ok((builder.finish(), rows))
    }

    /// Every row of a feature query as one table: what the step's streamed reads are checked
    /// against.
    async fn table(engine: &Engine, what: &str, sql: &str) -> Result<FeatureTable> {
        let rows = read_query(engine, what, sql, |schema| {
            Ok(FeatureTableBuilder::new(what, schema)?)
        });
        Ok(rows.await?.0)
    }

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
        let sql = features(&churn_snapshots(date(2025, 6, 30), 90)?)?;
        let t = table(&engine, "churn rows", &sql).await?;
        // C had not bought by the cutoff; A bought again within 90 days, B did not.
        assert_eq!(t.ids.iter().collect::<Vec<_>>(), ["A", "B"]);
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
        assert_eq!(income.iter().collect::<Vec<_>>(), [Some("high"), None]);

        // A campaign send is seen from the day before it: the send itself is not a feature.
        let sql = features(&propensity_snapshots(date(2025, 12, 1))?)?;
        let t = table(&engine, "campaign rows", &sql).await?;
        assert_eq!(t.ids.iter().collect::<Vec<_>>(), ["A", "B"]);
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
            &fill(&propensity_scoring_template()?, date(2025, 12, 31)),
        )
        .await?;
        assert_eq!(t.ids.iter().collect::<Vec<_>>(), ["A"]);
        Ok(())
    }

    /// Scoring a part of the rows at a time gives every customer the probability the whole table
    /// gives, in the whole table's order, however the parts fall: one row a part (each part
    /// coding its levels afresh), two, and all at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_scored_part_by_part_score_as_the_whole_table() -> Result<(), BoxError> {
        let dir = tempfile::tempdir()?;
        let engine = engine(dir.path()).await?;
        let sql = fill(&churn_scoring_template()?, date(2025, 12, 31));
        let whole = table(&engine, "churn scoring rows", &sql).await?;
        assert!(whole.len() >= 3, "every customer is scored");
        let predictor = logistic(&whole, -0.3);
        let expected: Vec<(String, f64)> = whole
            .ids
            .iter()
            .map(str::to_string)
            .zip(predictor.predict(&whole)?)
            .collect();
        for part_rows in [1, 2, usize::MAX] {
            let scores = scored(&engine, &sql, &[(&predictor, None)], part_rows).await?;
            assert_eq!(
                scores,
                std::slice::from_ref(&expected),
                "parts of {part_rows} rows"
            );
        }
        Ok(())
    }

    /// A logistic regression over every feature of `rows` (its levels learnt from them), with
    /// made-up coefficients.
    fn logistic(rows: &FeatureTable, intercept: f64) -> clientele_models::Predictor {
        let encoding = clientele_models::Encoding::learn(rows);
        assert!(
            !encoding.categorical.is_empty(),
            "the levels are part of what is checked"
        );
        let columns = encoding.columns().len();
        clientele_models::Predictor::LogisticRegression {
            encoding,
            model: clientele_models::Logistic {
                intercept,
                coefficients: (0..columns).map(|i| 0.1 + 0.37 * i as f64).collect(),
                l2: 0.0,
                iterations: 0,
            },
        }
    }

    /// `scored_rows` with each scorer's `(customer_id, probability)` pairs.
    async fn scored(
        engine: &Engine,
        sql: &str,
        scorers: &[(&clientele_models::Predictor, Option<&str>)],
        part_rows: usize,
    ) -> Result<Vec<Vec<(String, f64)>>, BoxError> {
        let scorers: Vec<Scorer<'_>> = scorers
            .iter()
            .map(|&(predictor, rows)| Scorer { predictor, rows })
            .collect();
        let mut out = Vec::new();
        for scores in scored_rows(engine, "scoring rows", sql, None, &scorers, part_rows).await? {
            let scores = scores?;
            out.push(
                scores
                    .ids()
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .zip(scores.probabilities().values().iter().copied())
                    .collect(),
            );
        }
        Ok(out)
    }

    /// Both classifiers scored from one query give each the rows and probabilities its own
    /// scoring query gives, though their customers differ (buyers for churn, the reachable who
    /// have not opted out for propensity).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_models_scored_from_one_query_score_as_from_their_own() -> Result<(), BoxError> {
        let dir = tempfile::tempdir()?;
        let engine = engine(dir.path()).await?;
        let as_of = date(2025, 12, 31);
        let churn_sql = fill(&churn_scoring_template()?, as_of);
        let propensity_sql = fill(&propensity_scoring_template()?, as_of);
        let churn = logistic(&table(&engine, "churn rows", &churn_sql).await?, -0.3);
        let propensity = logistic(
            &table(&engine, "propensity rows", &propensity_sql).await?,
            0.2,
        );
        let own = [
            scored(&engine, &churn_sql, &[(&churn, None)], usize::MAX).await?,
            scored(&engine, &propensity_sql, &[(&propensity, None)], usize::MAX).await?,
        ]
        .concat();
        let ids = |scores: &[(String, f64)]| scores.iter().map(|s| s.0.clone()).collect::<Vec<_>>();
        assert_ne!(
            ids(&own[0]),
            ids(&own[1]),
            "the two models score different customers"
        );
        assert!(own.iter().all(|s| !s.is_empty()));
        let (_held, sql, _parts) = both_scoring_rows(&engine, as_of).await?;
        for part_rows in [1, 3, usize::MAX] {
            let both = scored(
                &engine,
                &sql,
                &[(&churn, Some("_churn")), (&propensity, Some("_propensity"))],
                part_rows,
            )
            .await?;
            assert_eq!(both, own, "parts of {part_rows} rows");
        }
        Ok(())
    }

    /// The rows `propensity_tables` reads, checked against the whole table split.
    async fn split_as_the_whole_table(
        engine: &Engine,
        sql: &str,
        first: &BTreeMap<String, i32>,
        share: f64,
    ) -> Result<PropensityRows, BoxError> {
        let holdout = clientele_models::CampaignHoldout::choose(first, share)?;
        let whole = table(engine, "campaign rows", sql).await?;
        let split = clientele_models::split_campaign_sends(&whole, share)?;
        let rows = propensity_tables(engine, sql, None, holdout)
            .await?
            .map_err(|e| e.to_string())?;
        assert_eq!(rows.method, split.method);
        assert_eq!(rows.train_window_rows, split.train.len());
        assert_eq!(rows.train.checksum(), whole.select(&split.train).checksum());
        assert_eq!(rows.valid.checksum(), whole.select(&split.valid).checksum());
        assert_eq!(rows.refit.checksum(), whole.checksum());
        Ok(rows)
    }

    #[tokio::test]
    async fn campaign_sends_are_split_as_they_are_read_as_the_whole_table_splits()
    -> Result<(), BoxError> {
        let dir = tempfile::tempdir()?;
        let engine = engine(dir.path()).await?;
        let last_send = date(2025, 12, 1);
        let sends = propensity_snapshots(last_send)?;
        // Held, the sends give the rows the query around them gives.
        let (held, sql, _parts) = held_features(&engine, "the sends", &sends).await?;
        let first =
            campaign_first_sends(&engine, &format!("select * from {}", held.name())).await?;
        assert_eq!(first, BTreeMap::from([("K1".to_string(), 20_178)]));
        let rows = split_as_the_whole_table(&engine, &sql, &first, 0.5).await?;
        assert_eq!(rows.method, "customer hash within the one campaign");
        drop(held);
        // The same as the query read whole, with the snapshots written into it.
        let sql = features(&sends)?;
        // One campaign (K1): split by customer.
        let first = campaign_first_sends(&engine, &sends).await?;
        assert_eq!(first, BTreeMap::from([("K1".to_string(), 20_178)]));
        let rows = split_as_the_whole_table(&engine, &sql, &first, 0.5).await?;
        assert_eq!(rows.method, "customer hash within the one campaign");
        // Two more, the last answered by C: the latest (K3) validates.
        engine
            .context()
            .sql(
                "insert into fct_touchpoints values
                ('A', 'campaign_contact', 'email', date '2025-06-01', 'K2', null),
                ('B', 'campaign_contact', 'email', date '2025-06-01', 'K2', null),
                ('C', 'campaign_contact', 'email', date '2025-06-01', 'K2', null),
                ('A', 'campaign_contact', 'email', date '2025-09-01', 'K3', null),
                ('C', 'campaign_contact', 'email', date '2025-09-01', 'K3', null),
                ('C', 'campaign_response', 'email', date '2025-09-03', 'K3', null)",
            )
            .await?
            .collect()
            .await?;
        let first = campaign_first_sends(&engine, &sends).await?;
        assert_eq!(first.keys().collect::<Vec<_>>(), ["K1", "K2", "K3"]);
        for share in [0.34, 0.5, 0.75] {
            let rows = split_as_the_whole_table(&engine, &sql, &first, share).await?;
            assert_eq!(rows.refit.len(), 7, "{share}");
        }
        let held = |share| -> Result<Vec<String>, BoxError> {
            let holdout = clientele_models::CampaignHoldout::choose(&first, share)?;
            let clientele_models::CampaignHoldout::Campaigns(held) = holdout else {
                return Err("three campaigns are split by campaign".into());
            };
            Ok(held.into_iter().collect())
        };
        assert_eq!(held(0.34)?, ["K3"]);
        assert_eq!(held(0.75)?, ["K2", "K3"]);
        // Nothing sent before the first campaign: propensity is skipped, saying why.
        let none = campaign_first_sends(&engine, &propensity_snapshots(date(2025, 1, 1))?).await?;
        let refused = clientele_models::CampaignHoldout::choose(&none, 0.25);
        assert!(refused.is_err_and(|e| e.to_string().contains("no past campaign sends")));
        Ok(())
    }

    /// Both churn windows read with one query are the rows each window's own query gives.
    #[tokio::test]
    async fn churn_windows_read_together_are_the_rows_each_gives_alone() -> Result<(), BoxError> {
        let dir = tempfile::tempdir()?;
        let engine = engine(dir.path()).await?;
        let windows = ChurnWindows::new(date(2025, 12, 31), 90)?;
        let alone =
            |cutoff| -> Result<String, BoxError> { Ok(features(&churn_snapshots(cutoff, 90)?)?) };
        let train = table(&engine, "training", &alone(windows.train_cutoff)?).await?;
        let valid = table(&engine, "validation", &alone(windows.validation_cutoff)?).await?;
        // A and B had bought by the training cutoff, C too by the validation cutoff.
        assert_eq!((train.len(), valid.len()), (2, 3));
        let rows = churn_tables(&engine, &windows).await?;
        assert_eq!(rows.train_window_rows, 2);
        assert_eq!(rows.train.checksum(), train.checksum());
        assert_eq!(rows.valid.checksum(), valid.checksum());
        assert_ne!(train.checksum(), valid.checksum());
        Ok(())
    }
}
