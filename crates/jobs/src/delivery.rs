//! Copies of exports delivered to their locations, only after the run has published, and retried
//! by later runs until they arrive.
//!
//! Before a run publishes, it records one pending delivery per export that has a `location`
//! (`_deliveries/pending/<export>/as_of=<date>.json`). After publishing, every pending delivery
//! (this run's and any an earlier run could not make) copies the published files of its export
//! partition to the location; a delivery that arrives is removed from the pending list, one that
//! fails stays there with its error and is tried again by the next run. So a copy never holds
//! anything that was not published, and a failed delivery is never lost.

use std::path::Path;

use clientele_store::Warehouse;

use crate::error::{Error, Result};

/// Where pending deliveries are recorded.
pub const PENDING_DIR: &str = "_deliveries/pending";

/// One delivery, pending or made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    pub export: String,
    /// The export partition delivered.
    pub as_of: String,
    /// The location as the job declares it (a directory, relative to the job, or a URL).
    pub location: String,
    /// The run that published the export.
    pub published_by: String,
    /// Tries so far, this one included.
    pub attempts: u32,
    /// Whether the copies arrived.
    pub delivered: bool,
    /// Files copied (when delivered).
    #[serde(default)]
    pub files: u64,
    /// Where the copies are (when delivered).
    #[serde(default)]
    pub delivered_to: Option<String>,
    /// Why the last try failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Given up: the export partition was never published, so there is nothing to deliver.
    #[serde(default)]
    pub dropped: bool,
}

fn marker(export: &str, as_of: &str) -> String {
    format!("{PENDING_DIR}/{export}/as_of={as_of}.json")
}

/// Records the deliveries a run owes before it publishes: `(export, location)` for each export of
/// the run that declares a location.
pub async fn record_pending(
    warehouse: &Warehouse,
    run_id: &str,
    as_of: &str,
    exports: &[(String, String)],
) -> Result<()> {
    for (export, location) in exports {
        let pending = Delivery {
            export: export.clone(),
            as_of: as_of.to_string(),
            location: location.clone(),
            published_by: run_id.to_string(),
            attempts: 0,
            delivered: false,
            files: 0,
            delivered_to: None,
            error: None,
            dropped: false,
        };
        write_marker(warehouse, &pending).await?;
    }
    Ok(())
}

async fn write_marker(warehouse: &Warehouse, d: &Delivery) -> Result<()> {
    let body = serde_json::to_vec_pretty(d).map_err(|e| Error::Internal(e.to_string()))?;
    warehouse
        .put(&marker(&d.export, &d.as_of), body.into())
        .await?;
    Ok(())
}

/// Makes every pending delivery, oldest export partition first; returns what happened to each.
/// A delivery that fails stays pending (with its error) for the next run; only an unreadable
/// pending list is an error.
pub async fn deliver_pending(warehouse: &Warehouse, base_dir: &Path) -> Result<Vec<Delivery>> {
    let mut markers: Vec<String> = warehouse
        .list(PENDING_DIR)
        .await?
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| p.ends_with(".json"))
        .collect();
    markers.sort_by(|a, b| {
        let date = |p: &str| p.rsplit("as_of=").next().map(str::to_string);
        date(a).cmp(&date(b)).then(a.cmp(b))
    });
    let mut out = Vec::new();
    for path in markers {
        let body = warehouse.get(&path).await?;
        let mut d: Delivery = serde_json::from_slice(&body).map_err(|e| {
            Error::Input(format!(
                "pending delivery {path} cannot be read ({e}); delete it to stop retrying"
            ))
        })?;
        d.attempts += 1;
        let dir = format!("exports/{}/as_of={}", d.export, d.as_of);
        let snapshot = warehouse.snapshot().await?;
        let files: Vec<(String, String)> = snapshot
            .under(&format!("{dir}/"))
            .map(|(logical, physical)| (logical.to_string(), physical.to_string()))
            .collect();
        if files.is_empty() {
            // Recorded by a run that then did not publish (it crashed while publishing): there is
            // nothing to deliver, now or later.
            d.error = Some(format!(
                "{dir} was never published (the run that recorded it did not publish); dropped"
            ));
            d.dropped = true;
            warehouse.delete(&path).await?;
            tracing::warn!(export = %d.export, as_of = %d.as_of, "a pending delivery of an export that was never published is dropped");
            out.push(d);
            continue;
        }
        match copy(warehouse, base_dir, &d, &files).await {
            Ok((files, to)) => {
                d.delivered = true;
                d.files = files;
                d.delivered_to = Some(to);
                d.error = None;
                warehouse.delete(&path).await?;
                tracing::info!(export = %d.export, as_of = %d.as_of, files, "export delivered");
            }
            Err(e) => {
                d.error = Some(e.clone());
                write_marker(warehouse, &d).await?;
                tracing::warn!(export = %d.export, as_of = %d.as_of, attempts = d.attempts, error = %e, "export not delivered; the next run tries again");
            }
        }
        out.push(d);
    }
    Ok(out)
}

/// Copies `files` (the committed files of one export partition: logical path, physical file)
/// under their logical names; returns how many and where to.
async fn copy(
    warehouse: &Warehouse,
    base_dir: &Path,
    d: &Delivery,
    files: &[(String, String)],
) -> std::result::Result<(u64, String), String> {
    let target = Warehouse::open(&d.location, base_dir)
        .map_err(|e| format!("location {}: {e}", d.location))?;
    for (path, physical) in files {
        let name = path.rsplit('/').next().unwrap_or(path);
        let data = warehouse
            .get(physical)
            .await
            .map_err(|e| format!("reading {path}: {e}"))?;
        target
            .put(&format!("{}/as_of={}/{name}", d.export, d.as_of), data)
            .await
            .map_err(|e| format!("delivering {name} to {}: {e}", d.location))?;
    }
    Ok((files.len() as u64, target.url_of(&d.export, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_delivery_stays_pending_and_arrives_when_the_location_works_again()
    -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        let wh = Warehouse::open("wh", dir.path())?;
        let file = "exports/list/as_of=2025-12-31/list.csv";
        wh.put(file, "email\n".into()).await?;
        record_pending(&wh, "run-1", "2025-12-31", &[("list".into(), "out".into())]).await?;
        // The location is a file, not a directory: the copy cannot be made.
        std::fs::write(dir.path().join("out"), "x").map_err(|e| Error::Internal(e.to_string()))?;
        let first = deliver_pending(&wh, dir.path()).await?;
        assert_eq!(first.len(), 1);
        assert!(!first[0].delivered && first[0].error.is_some());
        assert_eq!(first[0].attempts, 1);
        std::fs::remove_file(dir.path().join("out")).map_err(|e| Error::Internal(e.to_string()))?;
        let second = deliver_pending(&wh, dir.path()).await?;
        assert!(second[0].delivered, "{second:?}");
        assert_eq!((second[0].attempts, second[0].files), (2, 1));
        assert!(
            dir.path()
                .join("out/list/as_of=2025-12-31/list.csv")
                .exists()
        );
        assert!(deliver_pending(&wh, dir.path()).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn nothing_is_delivered_that_was_not_published() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        let wh = Warehouse::open("wh", dir.path())?;
        record_pending(&wh, "run-1", "2025-12-31", &[("list".into(), "out".into())]).await?;
        let tried = deliver_pending(&wh, dir.path()).await?;
        assert!(!tried[0].delivered);
        assert!(tried[0].dropped);
        assert!(
            tried[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("never published"))
        );
        assert!(!dir.path().join("out").exists());
        assert!(
            deliver_pending(&wh, dir.path()).await?.is_empty(),
            "dropped, not retried"
        );
        Ok(())
    }
}
