//! Names of everything in the warehouse. All paths are relative to the warehouse root and use `/`.
//!
//! ```text
//! raw/<source>/as_of=YYYY-MM-DD/part-0.parquet          typed rows of each source
//! quarantine/<source>/as_of=YYYY-MM-DD/part-0.parquet   rejected rows: file, line, raw text, field, reason
//! staging|intermediate|marts/<model>/as_of=.../part-0.parquet   SQL models
//! scores/<table>/as_of=.../part-0.parquet               model outputs (RFM, ...)
//! segments/segment_membership/as_of=.../part-0.parquet  segment members
//! exports/<export>/as_of=.../<file>                      campaign files and their export manifest
//! _runs/<run_id>.json                                    one manifest per run
//! _staging/<run_id>/...                                  a run's outputs before they are published
//! _commits/<version>.json                                the committed snapshots (see [`crate::commit`])
//! _latest.json                                           the latest commit's version (a hint)
//! _lock/<generation>.json                                the run lock (see [`crate::RunLock`])
//! _deliveries/pending/<export>/as_of=....json            export copies not yet delivered
//! _privacy/tombstones/<id>.json, _privacy/audit/<id>.json  erasures
//! ```
//!
//! These are the *logical* paths every part of clientele uses. A published file's *physical* name
//! carries the run that wrote it (`part-0-<run_id>.parquet`, [`physical`]), so a run's files and the
//! files of the snapshot readers use can sit side by side until the run commits; the committed
//! snapshot maps each logical path to its physical file.

use std::fmt;

/// The directory under which each run stages its outputs before publishing.
pub const STAGING_DIR: &str = "_staging";
/// The directory holding run manifests.
pub const RUNS_DIR: &str = "_runs";
/// The lock object of clientele 0.1 (still honoured when a warehouse has one).
pub const LEGACY_LOCK_FILE: &str = "_lock.json";
/// The directory of the lock's generations.
pub const LOCK_DIR: &str = "_lock";
/// The directory of commit records.
pub const COMMITS_DIR: &str = "_commits";
/// The hint naming the latest commit.
pub const LATEST_FILE: &str = "_latest.json";

/// Identifier of one run: sortable by start time.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// Wraps an existing id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// A new id from the run's start time (to the millisecond) and a disambiguating suffix, e.g.
    /// `20261123T161250.123Z-3f9a`.
    pub fn from_start(started_at: chrono::DateTime<chrono::Utc>, suffix: u16) -> Self {
        Self(format!(
            "{}-{:04x}",
            started_at.format("%Y%m%dT%H%M%S%.3fZ"),
            suffix
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The directory of one table: `LAYER/NAME`.
pub fn table_dir(layer: &str, name: &str) -> String {
    format!("{layer}/{name}")
}

/// The partition directory of one table for one as-of date.
pub fn partition_dir(layer: &str, name: &str, as_of: chrono::NaiveDate) -> String {
    format!("{layer}/{name}/as_of={}", as_of.format("%Y-%m-%d"))
}

/// The single Parquet file of one table partition.
pub fn partition_file(layer: &str, name: &str, as_of: chrono::NaiveDate) -> String {
    format!("{}/part-0.parquet", partition_dir(layer, name, as_of))
}

/// Where a run stages a file before publishing it.
pub fn staged(run: &RunId, rel: &str) -> String {
    format!("{STAGING_DIR}/{run}/{rel}")
}

/// The physical name of a logical path as run `run` publishes it: the run id goes before the file's
/// extensions (`a/as_of=D/part-0.parquet` → `a/as_of=D/part-0-<run>.parquet`,
/// `exports/x/as_of=D/x.csv` → `exports/x/as_of=D/x-<run>.csv`).
pub fn physical(rel: &str, run: &RunId) -> String {
    let (dir, file) = match rel.rsplit_once('/') {
        Some((d, f)) => (Some(d), f),
        None => (None, rel),
    };
    let (stem, ext) = match file.find('.') {
        Some(i) if i > 0 => file.split_at(i),
        _ => (file, ""),
    };
    let name = format!("{stem}-{run}{ext}");
    match dir {
        Some(d) => format!("{d}/{name}"),
        None => name,
    }
}

/// The record of commit `version`.
pub fn commit_record(version: u64) -> String {
    format!("{COMMITS_DIR}/{version:020}.json")
}

/// The manifest of one run.
pub fn run_manifest(run: &RunId) -> String {
    format!("{RUNS_DIR}/{run}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths_are_hive_style() {
        let d = chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap_or_default();
        assert_eq!(
            partition_file("marts", "customer_view", d),
            "marts/customer_view/as_of=2025-12-31/part-0.parquet"
        );
        assert_eq!(staged(&RunId::new("r1"), "x/y"), "_staging/r1/x/y");
    }

    #[test]
    fn physical_names_carry_the_run() {
        let run = RunId::new("20261203T235948.123Z-3f9a");
        assert_eq!(
            physical("marts/t/as_of=2025-12-31/part-0.parquet", &run),
            "marts/t/as_of=2025-12-31/part-0-20261203T235948.123Z-3f9a.parquet"
        );
        assert_eq!(
            physical("exports/x/as_of=2025-12-31/x.csv.gz", &run),
            "exports/x/as_of=2025-12-31/x-20261203T235948.123Z-3f9a.csv.gz"
        );
        assert_eq!(physical("README", &run), "README-20261203T235948.123Z-3f9a");
        assert_eq!(commit_record(7), "_commits/00000000000000000007.json");
    }

    #[test]
    fn run_ids_sort_by_start_time() {
        let a = chrono::DateTime::from_timestamp(1_000_000, 0).unwrap_or_default();
        let b = chrono::DateTime::from_timestamp(2_000_000, 0).unwrap_or_default();
        assert!(RunId::from_start(a, 0xffff) < RunId::from_start(b, 0));
        let c = a + chrono::Duration::milliseconds(1);
        assert!(
            RunId::from_start(a, 0xffff) < RunId::from_start(c, 0),
            "runs in the same second sort by start"
        );
    }
}
