//! Retention: the raw and quarantined copies of the sources are kept for a set number of days
//! (`raw_retention_days` in the job), then dropped by the next successful run.
//!
//! Only the `raw` and `quarantine` layers are touched: they hold the sources as they arrived,
//! personal data included, and nothing downstream needs an old copy once the models built from it
//! are published. The newest partition of every table is always kept, however old, since it is
//! what incremental loads and `--only` runs read.

use chrono::NaiveDate;
use clientele_store::Snapshot;

/// The layers retention applies to.
pub const LAYERS: [&str; 2] = ["raw", "quarantine"];

/// What retention dropped in one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionReport {
    /// The setting applied.
    pub days: u32,
    /// Partitions older than this were dropped.
    pub cutoff: String,
    /// The partitions dropped (`raw/<table>/as_of=<date>`).
    pub dropped: Vec<String>,
    /// The files (logical paths) the run's commit removes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// The partitions of the retention layers dated before `as_of - days`, except the newest
/// partition of each table, in `snapshot`: the run's commit removes them (so they go with the
/// run's outputs, in one step, or not at all).
pub fn plan(snapshot: &Snapshot, as_of: NaiveDate, days: u32) -> RetentionReport {
    let cutoff = as_of - chrono::Duration::days(i64::from(days));
    let mut report = RetentionReport {
        days,
        cutoff: cutoff.to_string(),
        ..RetentionReport::default()
    };
    for layer in LAYERS {
        // (table, date) of every partition, from the files' logical paths.
        let mut partitions: Vec<(String, NaiveDate)> = Vec::new();
        for (path, _) in snapshot.under(&format!("{layer}/")) {
            let mut parts = path.split('/');
            let (Some(_), Some(table), Some(dir)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(date) = dir
                .strip_prefix("as_of=")
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            else {
                continue;
            };
            partitions.push((table.to_string(), date));
        }
        partitions.sort();
        partitions.dedup();
        for (i, (table, date)) in partitions.iter().enumerate() {
            let newest = partitions.get(i + 1).is_none_or(|(t, _)| t != table);
            if *date < cutoff && !newest {
                let dir = format!("{layer}/{table}/as_of={date}");
                let prefix = format!("{dir}/");
                report
                    .removed
                    .extend(snapshot.under(&prefix).map(|(p, _)| p.to_string()));
                report.dropped.push(dir);
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_raw_partitions_go_and_the_newest_of_each_table_stays() {
        let mut snapshot = Snapshot::default();
        for path in [
            "raw/crm/as_of=2025-01-01/part-0.parquet",
            "raw/crm/as_of=2025-06-01/part-0.parquet",
            "raw/crm/as_of=2025-12-31/part-0.parquet",
            "raw/vendor/as_of=2025-01-01/part-0.parquet",
            "quarantine/crm/as_of=2025-01-01/part-0.parquet",
            "quarantine/crm/as_of=2025-12-30/part-0.parquet",
            "marts/dim_customer/as_of=2025-01-01/part-0.parquet",
        ] {
            snapshot
                .files
                .insert(path.into(), format!("{path}.physical"));
        }
        let date = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap_or_default();
        let report = plan(&snapshot, date, 30);
        assert_eq!(
            report.dropped,
            [
                "raw/crm/as_of=2025-01-01",
                "raw/crm/as_of=2025-06-01",
                "quarantine/crm/as_of=2025-01-01"
            ]
        );
        assert_eq!(
            report.removed,
            [
                "raw/crm/as_of=2025-01-01/part-0.parquet",
                "raw/crm/as_of=2025-06-01/part-0.parquet",
                "quarantine/crm/as_of=2025-01-01/part-0.parquet"
            ]
        );
    }
}
