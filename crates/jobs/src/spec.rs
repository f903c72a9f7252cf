use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use clientele_identity::{IdentitySpec, Settings as IdentitySettings};
use clientele_ingest::{SourcePlan, SourceSpec};
use clientele_segments::{ExportSpec, Segment, load_segments};
use clientele_sql::{EngineOptions, ModelSet};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::error::{Error, Result};

/// One problem in a spec or a file it names, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    job: Spanned<RawHeader>,
    #[serde(default)]
    sources: Vec<Spanned<SourceSpec>>,
    #[serde(default)]
    steps: Vec<Spanned<StepSpec>>,
    #[serde(default)]
    exports: Vec<Spanned<ExportSpec>>,
    #[serde(default)]
    identity: Option<Spanned<IdentitySpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    #[serde(default)]
    description: String,
    warehouse: String,
    #[serde(default)]
    sql_dir: Option<String>,
    #[serde(default)]
    segments_dir: Option<String>,
    #[serde(default)]
    stale_lock_hours: Option<i64>,
    #[serde(default)]
    memory_limit_mb: Option<u64>,
    #[serde(default)]
    suppression_lists: Vec<String>,
    #[serde(default)]
    segment_alarm_share: Option<f64>,
    #[serde(default)]
    segment_alarm_min_customers: Option<u64>,
    #[serde(default)]
    target_partitions: Option<usize>,
}

/// A step as written in the spec.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Unique step name.
    pub name: String,
    /// `ingest`, `sql`, `identity`, `rfm`, `clv`, `score`, `segments` or `export`.
    pub kind: String,
    /// Steps that must finish first, besides the ones inferred from the tables the step reads.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// `ingest`: the sources (default: all).
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// `sql`: models or layers (default: all models).
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// `rfm`: the table to score (default `customer_view`); `identity`: the records to resolve
    /// (default `int_customer_records__unioned`); `clv`: the orders (default `fct_orders`).
    #[serde(default)]
    pub input: Option<String>,
    /// `clv`, `score`: how many months ahead to value customers (default 12).
    #[serde(default)]
    pub horizon_months: Option<u32>,
    /// `clv`, `score`: the monthly discount rate (default 0.01, 1% a month).
    #[serde(default)]
    pub monthly_discount_rate: Option<f64>,
    /// `export`: the exports (default: all).
    #[serde(default)]
    pub exports: Option<Vec<String>>,
    /// `score`: the churn window in days: churn is no purchase in this many days (default 90).
    #[serde(default)]
    pub churn_horizon_days: Option<u32>,
    /// `score`: days after a campaign send within which responses count; later sends are not
    /// trained on yet (default 30).
    #[serde(default)]
    pub response_window_days: Option<u32>,
    /// `score`: the share of the latest past campaigns held back to validate propensity
    /// (default 0.25).
    #[serde(default)]
    pub campaign_holdout_share: Option<f64>,
    /// `score`: the lowest validation ROC AUC the churn model may have (default: no floor).
    #[serde(default)]
    pub min_churn_auc: Option<f64>,
    /// `score`: the lowest validation ROC AUC the propensity model may have (default: no floor).
    #[serde(default)]
    pub min_propensity_auc: Option<f64>,
}

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
}

/// What a step does, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    Ingest {
        sources: Vec<String>,
    },
    Sql {
        models: Vec<String>,
    },
    Rfm {
        input: String,
    },
    Clv {
        input: String,
        horizon_months: u32,
        monthly_discount_rate: f64,
    },
    Identity {
        input: String,
    },
    Score(ScoreOptions),
    Segments,
    Export {
        exports: Vec<String>,
    },
}

impl StepKind {
    /// The kind's name as written in specs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ingest { .. } => "ingest",
            Self::Sql { .. } => "sql",
            Self::Rfm { .. } => "rfm",
            Self::Clv { .. } => "clv",
            Self::Identity { .. } => "identity",
            Self::Score(_) => "score",
            Self::Segments => "segments",
            Self::Export { .. } => "export",
        }
    }
}

/// A table as the warehouse lays it out: `layer/table`, queried as `name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    /// Name in SQL: `raw.<source>`, `quarantine.<source>`, or the table name.
    pub name: String,
    pub layer: String,
    pub table: String,
}

impl TableId {
    pub(crate) fn new(layer: &str, table: &str) -> Self {
        let name = if matches!(layer, "raw" | "quarantine" | "history") {
            format!("{layer}.{table}")
        } else {
            table.to_string()
        };
        Self {
            name,
            layer: layer.to_string(),
            table: table.to_string(),
        }
    }
}

/// The scores table written by the `rfm` step.
pub const RFM_TABLE: (&str, &str) = ("scores", "customer_rfm");

/// The tables written by the `clv` step.
pub const CLV_TABLE: (&str, &str) = ("scores", "customer_clv");
pub const METRICS_TABLE: (&str, &str) = ("scores", "model_metrics");
/// The tables written by the `score` step besides the RFM, CLV and metrics tables.
pub const SCORES_TABLE: (&str, &str) = ("scores", "customer_scores");
pub const DECILES_TABLE: (&str, &str) = ("scores", "model_deciles");
pub const PROFILES_TABLE: (&str, &str) = ("scores", "model_profiles");
/// The tables the `score` step reads.
pub const SCORE_INPUTS: [&str; 4] = [
    "fct_orders",
    "fct_touchpoints",
    "stg_service__tickets",
    "customer_view",
];
/// The tables written by the `identity` step (layer, table).
pub const IDENTITY_TABLES: [(&str, &str); 4] = [
    ("intermediate", "int_customer_identity"),
    ("intermediate", "int_identity_links"),
    ("intermediate", "int_identity_changes"),
    ("intermediate", "int_identity_parameters"),
];
/// The membership table written by the `segments` step.
pub const MEMBERSHIP_TABLE: (&str, &str) = ("segments", "segment_membership");
/// Who each export sent and held out, written by the `export` step.
pub const AUDIENCE_TABLE: (&str, &str) = ("segments", "export_audience");
/// The global suppression list as the `export` step applied it.
pub const SUPPRESSION_TABLE: (&str, &str) = ("segments", "suppression_list");
/// Earlier campaigns measured against their control groups, written by the `export` step.
pub const CAMPAIGN_RESULTS_TABLE: (&str, &str) = ("segments", "campaign_results");

/// A validated step with the tables it reads and writes.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    pub depends_on: Vec<String>,
    pub line: usize,
    pub reads: Vec<TableId>,
    pub writes: Vec<TableId>,
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub path: PathBuf,
    /// Directory that relative paths in the spec are resolved against.
    pub base_dir: PathBuf,
    /// SHA-256 of the spec file as written.
    pub sha256: String,
    pub name: String,
    pub description: String,
    pub warehouse: String,
    pub sql_dir: PathBuf,
    pub segments_dir: PathBuf,
    pub stale_lock_hours: i64,
    pub engine: EngineOptions,
    pub sources: Vec<SourcePlan>,
    /// The line where each source is declared.
    pub source_lines: BTreeMap<String, usize>,
    pub steps: Vec<Step>,
    pub exports: Vec<ExportSpec>,
    pub models: ModelSet,
    pub segments: Vec<Segment>,
    /// The `[identity]` settings (defaults when the table is absent).
    pub identity: IdentitySettings,
    /// Global suppression list files (globs, resolved against `base_dir`): CSV with an `email`
    /// and/or `phone` column; nobody on them is exported.
    pub suppression_lists: Vec<String>,
    /// A segment whose size changes by more than this share since the last run raises an alarm
    /// (default 0.5).
    pub segment_alarm_share: f64,
    /// Segments smaller than this (now and before) raise no alarm (default 20).
    pub segment_alarm_min_customers: u64,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Replaces `${VAR}` and `${VAR:-default}` from `lookup`; an unset variable without a default is a problem.
fn interpolate(
    text: &str,
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let expr = &rest[start + 2..start + end];
            let (var, default) = match expr.split_once(":-") {
                Some((v, d)) => (v, Some(d)),
                None => (expr, None),
            };
            match (lookup(var).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    problems.push(Problem {
                        file: file.to_path_buf(),
                        line: Some(i + 1),
                        message: format!("environment variable '{var}' is not set (write ${{{var}:-default}} to give a default)"),
                    });
                }
            }
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
    }
    out
}

impl JobSpec {
    /// Reads and validates a job spec, with variables from the process environment.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &|k| std::env::var(k).ok())
    }

    /// Reads and validates a job spec, with variables from `lookup`.
    pub fn load_with(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let problem = |line: Option<usize>, message: String| Problem {
            file: path.to_path_buf(),
            line,
            message,
        };
        let raw_text = std::fs::read_to_string(path).map_err(|e| Error::Spec {
            problems: vec![problem(None, format!("cannot read the job spec: {e}"))],
        })?;
        let base_dir = std::path::absolute(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .map_err(|e| Error::Spec {
            problems: vec![problem(None, e.to_string())],
        })?;
        let mut problems = Vec::new();
        let text = interpolate(&raw_text, path, lookup, &mut problems);
        let raw: RawJob = match toml::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                let line = e.span().map(|s| line_of(&text, s.start));
                problems.push(problem(line, e.message().trim().to_string()));
                return Err(Error::Spec { problems });
            }
        };
        let header_line = line_of(&text, raw.job.span().start);
        let header = raw.job.into_inner();
        if !is_identifier(&header.name) {
            problems.push(problem(
                Some(header_line),
                format!("job name '{}' must be lower_snake_case", header.name),
            ));
        }
        if header.warehouse.trim().is_empty() {
            problems.push(problem(
                Some(header_line),
                "warehouse must name a directory or URL".into(),
            ));
        }
        let sql_dir = base_dir.join(header.sql_dir.as_deref().unwrap_or("../sql"));
        let segments_dir = header
            .segments_dir
            .as_deref()
            .map_or_else(|| sql_dir.join("segments"), |d| base_dir.join(d));

        // Sources.
        let mut sources = Vec::new();
        let mut source_lines = BTreeMap::new();
        for s in &raw.sources {
            let line = Some(line_of(&text, s.span().start));
            source_lines
                .entry(s.get_ref().name.clone())
                .or_insert(line_of(&text, s.span().start));
            match s.get_ref().plan(&base_dir) {
                Ok(p) if sources.iter().any(|o: &SourcePlan| o.name == p.name) => {
                    problems.push(problem(
                        line,
                        format!("source '{}' is declared twice", p.name),
                    ));
                }
                Ok(p) => sources.push(p),
                Err(ps) => problems.extend(
                    ps.into_iter()
                        .map(|m| problem(line, format!("source '{}': {m}", s.get_ref().name))),
                ),
            }
        }

        // Models and segments.
        // A job without SQL steps (an ingest-only job, say) needs no SQL directory.
        let has_sql_step = raw.steps.iter().any(|s| s.get_ref().kind == "sql");
        let models = match ModelSet::load(&sql_dir) {
            Err(_) if !has_sql_step && !sql_dir.exists() => ModelSet::default(),
            Ok(m) => m,
            Err(errors) => {
                problems.extend(errors.into_iter().map(|e| Problem {
                    file: sql_dir.clone(),
                    line: None,
                    message: e.to_string(),
                }));
                ModelSet::default()
            }
        };
        let segments = match load_segments(&segments_dir) {
            Ok(s) => s,
            Err(e) => {
                problems.push(Problem {
                    file: segments_dir.clone(),
                    line: None,
                    message: e.to_string(),
                });
                Vec::new()
            }
        };

        // Exports.
        let mut exports: Vec<ExportSpec> = Vec::new();
        for e in &raw.exports {
            let line = Some(line_of(&text, e.span().start));
            let spec = e.get_ref();
            problems.extend(
                spec.problems()
                    .into_iter()
                    .map(|m| problem(line, format!("export '{}': {m}", spec.name))),
            );
            if !segments.iter().any(|s| s.id == spec.segment) {
                problems.push(problem(
                    line,
                    format!(
                        "export '{}': segment '{}' has no file in {}",
                        spec.name,
                        spec.segment,
                        segments_dir.display()
                    ),
                ));
            }
            if exports.iter().any(|o| o.name == spec.name) {
                problems.push(problem(
                    line,
                    format!("export '{}' is declared twice", spec.name),
                ));
            }
            exports.push(spec.clone());
        }

        // Identity resolution.
        let identity = match &raw.identity {
            None => IdentitySpec::default().validate(),
            Some(i) => i.get_ref().validate(),
        };
        let identity = match identity {
            Ok(s) => s,
            Err(e) => {
                let line = raw
                    .identity
                    .as_ref()
                    .map(|i| line_of(&text, i.span().start));
                problems.push(problem(line, e.to_string()));
                IdentitySpec::default()
                    .validate()
                    .map_err(|e| Error::Spec {
                        problems: vec![problem(None, e.to_string())],
                    })?
            }
        };

        // Steps.
        let mut steps: Vec<Step> = Vec::new();
        for s in &raw.steps {
            let line = line_of(&text, s.span().start);
            let spec = s.get_ref();
            let mut step_problem = |m: String| {
                problems.push(problem(Some(line), format!("step '{}': {m}", spec.name)))
            };
            if !is_identifier(&spec.name) {
                step_problem("the name must be lower_snake_case".into());
            }
            if steps.iter().any(|o| o.name == spec.name) {
                step_problem("the name is used twice".into());
            }
            let misplaced = |field: &str, present: bool, allowed: &str| {
                (present && spec.kind != allowed)
                    .then(|| format!("'{field}' applies only to {allowed} steps"))
            };
            for m in [
                misplaced("sources", spec.sources.is_some(), "ingest"),
                misplaced("models", spec.models.is_some(), "sql"),
                (spec.input.is_some() && !matches!(spec.kind.as_str(), "rfm" | "identity" | "clv"))
                    .then(|| "'input' applies only to rfm, identity and clv steps".to_string()),
                (spec.horizon_months.is_some() && !matches!(spec.kind.as_str(), "clv" | "score"))
                    .then(|| "'horizon_months' applies only to clv and score steps".to_string()),
                (spec.monthly_discount_rate.is_some()
                    && !matches!(spec.kind.as_str(), "clv" | "score"))
                .then(|| "'monthly_discount_rate' applies only to clv and score steps".to_string()),
                misplaced("exports", spec.exports.is_some(), "export"),
                misplaced(
                    "churn_horizon_days",
                    spec.churn_horizon_days.is_some(),
                    "score",
                ),
                misplaced(
                    "response_window_days",
                    spec.response_window_days.is_some(),
                    "score",
                ),
                misplaced(
                    "campaign_holdout_share",
                    spec.campaign_holdout_share.is_some(),
                    "score",
                ),
                misplaced("min_churn_auc", spec.min_churn_auc.is_some(), "score"),
                misplaced(
                    "min_propensity_auc",
                    spec.min_propensity_auc.is_some(),
                    "score",
                ),
            ]
            .into_iter()
            .flatten()
            {
                step_problem(m);
            }
            let (kind, reads, writes) = match spec.kind.as_str() {
                "ingest" => {
                    let names = spec
                        .sources
                        .clone()
                        .unwrap_or_else(|| sources.iter().map(|s| s.name.clone()).collect());
                    for n in &names {
                        if !sources.iter().any(|s| &s.name == n) {
                            step_problem(format!("source '{n}' is not declared"));
                        }
                    }
                    let writes = names
                        .iter()
                        .flat_map(|n| [TableId::new("raw", n), TableId::new("quarantine", n)])
                        .collect();
                    (StepKind::Ingest { sources: names }, Vec::new(), writes)
                }
                "sql" => {
                    let selection = spec.models.clone().unwrap_or_default();
                    let chosen: Vec<_> = match models.ordered(&selection) {
                        Ok(m) => m,
                        Err(e) => {
                            step_problem(e.to_string());
                            Vec::new()
                        }
                    };
                    let writes: Vec<TableId> = chosen
                        .iter()
                        .map(|m| TableId::new(&m.layer, &m.name))
                        .collect();
                    let mut reads = BTreeSet::new();
                    for m in &chosen {
                        for r in &m.reads {
                            if writes.iter().any(|w| &w.name == r) {
                                continue;
                            }
                            reads.insert(r.clone());
                        }
                    }
                    let names = chosen.iter().map(|m| m.name.clone()).collect();
                    (
                        StepKind::Sql { models: names },
                        reads.into_iter().map(|r| table_for(&r, &models)).collect(),
                        writes,
                    )
                }
                "rfm" => {
                    let input = spec.input.clone().unwrap_or_else(|| "customer_view".into());
                    (
                        StepKind::Rfm {
                            input: input.clone(),
                        },
                        vec![table_for(&input, &models)],
                        vec![TableId::new(RFM_TABLE.0, RFM_TABLE.1)],
                    )
                }
                "score" => {
                    let (horizon, rate) = valuation(spec, &mut step_problem);
                    let churn_horizon_days = spec.churn_horizon_days.unwrap_or(90);
                    if !(7..=730).contains(&churn_horizon_days) {
                        step_problem(format!(
                            "churn_horizon_days {churn_horizon_days} must be between 7 and 730"
                        ));
                    }
                    let response_window_days = spec.response_window_days.unwrap_or(30);
                    if !(1..=365).contains(&response_window_days) {
                        step_problem(format!(
                            "response_window_days {response_window_days} must be between 1 and 365"
                        ));
                    }
                    let share = spec.campaign_holdout_share.unwrap_or(0.25);
                    if !(share > 0.0 && share < 1.0) {
                        step_problem(format!(
                            "campaign_holdout_share {share} must lie between 0 and 1 (0.25 holds back the latest quarter of the campaigns)"
                        ));
                    }
                    for (name, floor) in [
                        ("min_churn_auc", spec.min_churn_auc),
                        ("min_propensity_auc", spec.min_propensity_auc),
                    ] {
                        if let Some(f) = floor
                            && !(0.0..=1.0).contains(&f)
                        {
                            step_problem(format!(
                                "{name} {f} must lie between 0 and 1 (0.5 is chance)"
                            ));
                        }
                    }
                    (
                        StepKind::Score(ScoreOptions {
                            horizon_months: horizon,
                            monthly_discount_rate: rate,
                            churn_horizon_days,
                            response_window_days,
                            campaign_holdout_share: share,
                            min_churn_auc: spec.min_churn_auc,
                            min_propensity_auc: spec.min_propensity_auc,
                        }),
                        SCORE_INPUTS.iter().map(|t| table_for(t, &models)).collect(),
                        [
                            RFM_TABLE,
                            CLV_TABLE,
                            METRICS_TABLE,
                            SCORES_TABLE,
                            DECILES_TABLE,
                            PROFILES_TABLE,
                        ]
                        .iter()
                        .map(|(l, t)| TableId::new(l, t))
                        .collect(),
                    )
                }
                "clv" => {
                    let input = spec.input.clone().unwrap_or_else(|| "fct_orders".into());
                    let (horizon, rate) = valuation(spec, &mut step_problem);
                    (
                        StepKind::Clv {
                            input: input.clone(),
                            horizon_months: horizon,
                            monthly_discount_rate: rate,
                        },
                        vec![table_for(&input, &models)],
                        vec![
                            TableId::new(CLV_TABLE.0, CLV_TABLE.1),
                            TableId::new(METRICS_TABLE.0, METRICS_TABLE.1),
                        ],
                    )
                }
                "identity" => {
                    let input = spec
                        .input
                        .clone()
                        .unwrap_or_else(|| "int_customer_records__unioned".into());
                    let mut reads = vec![table_for(&input, &models)];
                    if let Some(truth) = &identity.truth {
                        reads.push(table_for(truth, &models));
                    }
                    (
                        StepKind::Identity { input },
                        reads,
                        IDENTITY_TABLES
                            .iter()
                            .map(|(l, t)| TableId::new(l, t))
                            .collect(),
                    )
                }
                "segments" => {
                    let mut reads = BTreeSet::new();
                    for seg in &segments {
                        match clientele_sql::parse_reads(&seg.sql) {
                            Ok(r) => reads.extend(r),
                            Err(e) => problems.push(Problem {
                                file: seg.path.clone(),
                                line: None,
                                message: e,
                            }),
                        }
                    }
                    let reads = reads.iter().map(|r| table_for(r, &models)).collect();
                    (
                        StepKind::Segments,
                        reads,
                        vec![TableId::new(MEMBERSHIP_TABLE.0, MEMBERSHIP_TABLE.1)],
                    )
                }
                "export" => {
                    let names = spec
                        .exports
                        .clone()
                        .unwrap_or_else(|| exports.iter().map(|e| e.name.clone()).collect());
                    for n in &names {
                        if !exports.iter().any(|e| &e.name == n) {
                            step_problem(format!("export '{n}' is not declared"));
                        }
                    }
                    let reads = vec![
                        TableId::new(MEMBERSHIP_TABLE.0, MEMBERSHIP_TABLE.1),
                        table_for("customer_view", &models),
                        table_for("fct_orders", &models),
                    ];
                    (
                        StepKind::Export { exports: names },
                        reads,
                        vec![
                            TableId::new(AUDIENCE_TABLE.0, AUDIENCE_TABLE.1),
                            TableId::new(SUPPRESSION_TABLE.0, SUPPRESSION_TABLE.1),
                            TableId::new(CAMPAIGN_RESULTS_TABLE.0, CAMPAIGN_RESULTS_TABLE.1),
                        ],
                    )
                }
                other => {
                    step_problem(format!(
                        "kind '{other}' is unknown (ingest, sql, identity, rfm, clv, score, segments, export)"
                    ));
                    continue;
                }
            };
            steps.push(Step {
                name: spec.name.clone(),
                kind,
                depends_on: spec.depends_on.clone(),
                line,
                reads,
                writes,
            });
        }
        if steps.is_empty() {
            problems.push(problem(None, "the job has no [[steps]]".into()));
        }

        // Every table read must be written by exactly one step; every dependency must exist.
        let mut writer_of: BTreeMap<&str, &str> = BTreeMap::new();
        for s in &steps {
            for w in &s.writes {
                if let Some(other) = writer_of.insert(&w.name, &s.name) {
                    problems.push(problem(
                        Some(s.line),
                        format!(
                            "step '{}': table '{}' is also written by step '{other}'",
                            s.name, w.name
                        ),
                    ));
                }
            }
        }
        for s in &steps {
            for r in &s.reads {
                // history.<table> is what earlier runs published: nobody writes it in this run.
                if r.layer != clientele_sql::HISTORY_SCHEMA
                    && !writer_of.contains_key(r.name.as_str())
                {
                    problems.push(problem(
                        Some(s.line),
                        format!(
                            "step '{}' reads table '{}', which no step writes",
                            s.name, r.name
                        ),
                    ));
                }
            }
            for d in &s.depends_on {
                if !steps.iter().any(|o| &o.name == d) {
                    problems.push(problem(
                        Some(s.line),
                        format!("step '{}' depends on '{d}', which is not a step", s.name),
                    ));
                }
            }
        }

        let spec = Self {
            path: path.to_path_buf(),
            base_dir,
            sha256: hex::encode(Sha256::digest(raw_text.as_bytes())),
            name: header.name,
            description: header.description,
            warehouse: header.warehouse,
            sql_dir,
            segments_dir,
            stale_lock_hours: header.stale_lock_hours.unwrap_or(6),
            engine: EngineOptions {
                target_partitions: header.target_partitions.unwrap_or(0),
                memory_limit_mb: header.memory_limit_mb,
            },
            sources,
            source_lines,
            steps,
            exports,
            models,
            segments,
            identity,
            suppression_lists: header.suppression_lists,
            segment_alarm_share: header.segment_alarm_share.unwrap_or(0.5),
            segment_alarm_min_customers: header.segment_alarm_min_customers.unwrap_or(20),
        };
        if !(spec.segment_alarm_share > 0.0 && spec.segment_alarm_share.is_finite()) {
            problems.push(problem(
                None,
                format!(
                    "segment_alarm_share {} must be above 0 (0.5 raises an alarm when a segment grows or shrinks by half)",
                    spec.segment_alarm_share
                ),
            ));
        }
        if problems.is_empty()
            && let Err(message) = spec.step_order()
        {
            problems.push(problem(None, message));
        }
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(Error::Spec { problems })
        }
    }

    /// Steps in the order they run: every step after the steps it depends on, otherwise as declared.
    pub fn step_order(&self) -> Result<Vec<&Step>, String> {
        let deps = |s: &Step| -> BTreeSet<String> { self.dependencies(s).into_iter().collect() };
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut order = Vec::new();
        while order.len() < self.steps.len() {
            let next = self
                .steps
                .iter()
                .find(|s| !done.contains(&s.name) && deps(s).iter().all(|d| done.contains(d)));
            match next {
                Some(s) => {
                    done.insert(s.name.clone());
                    order.push(s);
                }
                None => {
                    let stuck: Vec<&str> = self
                        .steps
                        .iter()
                        .filter(|s| !done.contains(&s.name))
                        .map(|s| s.name.as_str())
                        .collect();
                    return Err(format!(
                        "steps depend on each other in a cycle: {}",
                        stuck.join(", ")
                    ));
                }
            }
        }
        Ok(order)
    }

    /// The steps a step waits for: those writing what it reads, and its `depends_on`.
    pub fn dependencies(&self, step: &Step) -> Vec<String> {
        let mut out: BTreeSet<String> = step.depends_on.iter().cloned().collect();
        for r in &step.reads {
            for s in &self.steps {
                if s.name != step.name && s.writes.contains(r) {
                    out.insert(s.name.clone());
                }
            }
        }
        out.into_iter().collect()
    }

    /// A source by name.
    pub fn source(&self, name: &str) -> Option<&SourcePlan> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// Where a table read by name lives.
fn table_for(name: &str, models: &ModelSet) -> TableId {
    if let Some((schema, table)) = name.split_once('.') {
        return TableId::new(schema, table);
    }
    if let Some(m) = models.get(name) {
        return TableId::new(&m.layer, &m.name);
    }
    match name {
        n if n == RFM_TABLE.1 => TableId::new(RFM_TABLE.0, RFM_TABLE.1),
        n if n == CLV_TABLE.1 => TableId::new(CLV_TABLE.0, CLV_TABLE.1),
        n if n == METRICS_TABLE.1 => TableId::new(METRICS_TABLE.0, METRICS_TABLE.1),
        n if n == MEMBERSHIP_TABLE.1 => TableId::new(MEMBERSHIP_TABLE.0, MEMBERSHIP_TABLE.1),
        n if IDENTITY_TABLES.iter().any(|(_, t)| *t == n) => TableId::new("intermediate", n),
        n => TableId::new("unknown", n),
    }
}

/// The CLV horizon and discount rate of a `clv` or `score` step, defaults filled in and checked.
fn valuation(spec: &StepSpec, step_problem: &mut impl FnMut(String)) -> (u32, f64) {
    let rate = spec.monthly_discount_rate.unwrap_or(0.01);
    if !(rate.is_finite() && rate > -1.0 && rate < 1.0) {
        step_problem(format!(
            "monthly_discount_rate {rate} must lie between -1 and 1 (0.01 is 1% a month)"
        ));
    }
    let horizon = spec.horizon_months.unwrap_or(12);
    if horizon == 0 || horizon > 600 {
        step_problem(format!(
            "horizon_months {horizon} must be between 1 and 600"
        ));
    }
    (horizon, rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_replaced_and_missing_ones_reported_by_line() {
        let mut problems = Vec::new();
        let lookup = |k: &str| (k == "HOME_DIR").then(|| "/h".to_string());
        let out = interpolate(
            "a = \"${HOME_DIR}/x\"\nb = \"${NOPE:-d}\"\nc = \"${MISSING}\"\n",
            Path::new("j.toml"),
            &lookup,
            &mut problems,
        );
        assert_eq!(out, "a = \"/h/x\"\nb = \"d\"\nc = \"\"\n");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(3));
        assert!(
            problems[0]
                .to_string()
                .starts_with("j.toml:3: environment variable 'MISSING'")
        );
    }

    #[test]
    fn toml_errors_carry_their_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("job.toml");
        std::fs::write(
            &path,
            "[job]\nname = \"x\"\nwarehouse = \"w\"\nwarehose = 1\n",
        )
        .unwrap_or_default();
        let err = JobSpec::load_with(&path, &|_| None).err();
        let Some(Error::Spec { problems }) = err else {
            unreachable!("expected a spec error")
        };
        assert_eq!(problems[0].line, Some(4), "{problems:?}");
        assert!(
            problems[0].message.contains("unknown field `warehose`"),
            "{problems:?}"
        );
    }
}
