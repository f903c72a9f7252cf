use clientele_store::{Warehouse, layout};

use crate::error::{Error, Result};
use crate::manifest::RunManifest;

/// Every run manifest of a warehouse, oldest first.
pub async fn list_runs(warehouse: &Warehouse) -> Result<Vec<RunManifest>> {
    let mut runs = Vec::new();
    for (rel, _) in warehouse.list(layout::RUNS_DIR).await? {
        if !rel.ends_with(".json") {
            continue;
        }
        let bytes = warehouse.get(&rel).await?;
        let manifest: RunManifest =
            serde_json::from_slice(&bytes).map_err(|e| Error::Manifest {
                path: rel.clone(),
                reason: e.to_string(),
            })?;
        runs.push(manifest);
    }
    // By start time (parsed, so any offset sorts right), then id.
    let started = |m: &RunManifest| chrono::DateTime::parse_from_rfc3339(&m.started_at).ok();
    runs.sort_by(|a, b| {
        started(a)
            .cmp(&started(b))
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
    Ok(runs)
}
