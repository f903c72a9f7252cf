use clientele_ingest::SourceReport;
use clientele_segments::{ExportReport, SegmentSize};
use clientele_store::WrittenFile;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every step succeeded and the outputs were published.
    Succeeded,
    /// A step failed; nothing was published.
    Failed,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Succeeded,
    Failed,
    /// Not run because a step it depends on failed.
    Skipped,
}

/// One step of a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StepReport {
    pub name: String,
    pub kind: String,
    pub status: StepStatus,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
    /// The largest resident memory of the process while the step ran, in MiB (Linux; absent
    /// elsewhere and in manifests of older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_mib: Option<u64>,
    /// The CPU time of all the process's threads while the step ran (user plus system), in
    /// milliseconds: above `duration_ms` when the step kept several cores busy (Linux; absent
    /// elsewhere and in manifests of older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    /// Rows the step read (source records for ingest, input rows otherwise).
    pub rows_in: u64,
    /// Rows the step wrote.
    pub rows_out: u64,
    /// Files written, as they are (or would have been) published.
    pub outputs: Vec<WrittenFile>,
    /// The error, with its causes, when the step failed or was skipped.
    pub error: Option<String>,
}

/// What identity resolution did: counts, blocking rules, clusters, and accuracy when a truth table
/// was given.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IdentityReport {
    pub summary: clientele_identity::Summary,
    pub accuracy: Option<clientele_identity::Accuracy>,
    /// Households against the truth's `household_id`, when it has one (the demo's does).
    #[serde(default)]
    pub household_accuracy: Option<clientele_identity::Accuracy>,
}

/// One table written by a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TableSummary {
    /// Name as queried (`raw.crm_customers`, `customer_view`).
    pub table: String,
    /// The Parquet file.
    pub path: String,
    pub rows: u64,
}

/// Everything one run did; written to `_runs/RUN_ID.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunManifest {
    pub run_id: String,
    pub job: String,
    pub spec_path: String,
    pub spec_sha256: String,
    pub as_of: String,
    pub status: RunStatus,
    /// Whether the outputs were published.
    pub published: bool,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
    /// The steps asked for with `--only` (empty: all).
    pub only: Vec<String>,
    pub warehouse: String,
    pub clientele_version: String,
    pub steps: Vec<StepReport>,
    /// Per source and per file: read, loaded, quarantined, checksums.
    pub sources: Vec<SourceReport>,
    pub tables: Vec<TableSummary>,
    pub segments: Vec<SegmentSize>,
    /// Segments whose size changed beyond the job's alarm threshold since the last published
    /// run: the run still succeeds and publishes, with its own exit status (3) for schedulers.
    #[serde(default)]
    pub alarms: Vec<String>,
    /// Earlier campaigns measured against their control groups by this run.
    #[serde(default)]
    pub campaigns: Vec<clientele_segments::CampaignResult>,
    pub exports: Vec<ExportReport>,
    /// Identity resolution, when the job has an identity step.
    #[serde(default)]
    pub identity: Option<IdentityReport>,
    /// The models of the score step: version, customers scored, headline metrics.
    #[serde(default)]
    pub models: Vec<crate::ModelReport>,
    /// Copies of exports delivered (or not) to their locations after publishing: this run's and
    /// the ones earlier runs could not make.
    #[serde(default)]
    pub deliveries: Vec<crate::delivery::Delivery>,
    /// Raw and quarantined partitions dropped by the job's `raw_retention_days`.
    #[serde(default)]
    pub retention: Option<crate::retention::RetentionReport>,
    /// The warehouse version this run committed (`_commits/<version>.json`), when it published.
    #[serde(default)]
    pub commit_version: Option<u64>,
    /// Files that no commit used, left by crashed or failed runs, removed by this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub garbage_collected: Vec<String>,
    /// Where a failed run's staged outputs remain for inspection (until the next run).
    pub staging_dir: Option<String>,
    /// The first error, when the run failed.
    pub error: Option<String>,
}

impl RunManifest {
    /// Source records read.
    pub fn rows_in(&self) -> u64 {
        self.sources.iter().map(|s| s.rows_read).sum()
    }

    /// Rows written to tables.
    pub fn rows_out(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}
