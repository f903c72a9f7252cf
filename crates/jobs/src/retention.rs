//! Retention: the raw and quarantined copies of the sources are kept for a set number of days
//! (`raw_retention_days` in the job), then dropped by the next successful run.
//!
//! Only the `raw` and `quarantine` layers are touched: they hold the sources as they arrived,
//! personal data included, and nothing downstream needs an old copy once the models built from it
//! are published. The newest partition of every table is always kept, however old, since it is
//! what incremental loads and `--only` runs read.

use chrono::NaiveDate;
use clientele_store::Warehouse;

use crate::error::Result;

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
}

/// Drops every partition of the retention layers dated before `as_of - days`, except the newest
/// partition of each table.
pub async fn apply(warehouse: &Warehouse, as_of: NaiveDate, days: u32) -> Result<RetentionReport> {
    let cutoff = as_of - chrono::Duration::days(i64::from(days));
    let mut report = RetentionReport {
        days,
        cutoff: cutoff.to_string(),
        dropped: Vec::new(),
    };
    for layer in LAYERS {
        // (table, date) of every partition, from the files' paths.
        let mut partitions: Vec<(String, NaiveDate)> = Vec::new();
        for (path, _) in warehouse.list(layer).await? {
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
                warehouse.delete_prefix(&dir).await?;
                report.dropped.push(dir);
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[tokio::test]
    async fn old_raw_partitions_go_and_the_newest_of_each_table_stays() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        let wh = Warehouse::open("wh", dir.path())?;
        for path in [
            "raw/crm/as_of=2025-01-01/part-0.parquet",
            "raw/crm/as_of=2025-06-01/part-0.parquet",
            "raw/crm/as_of=2025-12-31/part-0.parquet",
            "raw/vendor/as_of=2025-01-01/part-0.parquet",
            "quarantine/crm/as_of=2025-01-01/part-0.parquet",
            "quarantine/crm/as_of=2025-12-30/part-0.parquet",
            "marts/dim_customer/as_of=2025-01-01/part-0.parquet",
        ] {
            wh.put(path, "x".into()).await?;
        }
        let date = NaiveDate::from_ymd_opt(2025, 12, 31).ok_or(Error::Internal("date".into()))?;
        let report = apply(&wh, date, 30).await?;
        assert_eq!(
            report.dropped,
            [
                "raw/crm/as_of=2025-01-01",
                "raw/crm/as_of=2025-06-01",
                "quarantine/crm/as_of=2025-01-01"
            ]
        );
        let left: Vec<String> = wh.list("").await?.into_iter().map(|(p, _)| p).collect();
        assert!(left.contains(&"raw/vendor/as_of=2025-01-01/part-0.parquet".to_string()));
        assert!(left.contains(&"marts/dim_customer/as_of=2025-01-01/part-0.parquet".to_string()));
        assert!(left.contains(&"raw/crm/as_of=2025-12-31/part-0.parquet".to_string()));
        assert_eq!(left.len(), 4, "{left:?}");
        Ok(())
    }
}
