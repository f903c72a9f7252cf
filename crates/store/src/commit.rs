//! The commit protocol: how a run's outputs become visible in one atomic step.
//!
//! 1. A run writes its files into its private `_staging/<run_id>/` area while it works.
//! 2. When every step has succeeded, each staged file moves to its final, run-unique physical name
//!    beside the files readers use now ([`layout::physical`]: `part-0-<run_id>.parquet`). Nothing
//!    reads these files yet.
//! 3. The run writes the next commit record, `_commits/<version>.json`, with put-if-absent: the
//!    whole snapshot (every logical path → its physical file) as it is after this run. This one
//!    write is the commit. A second writer of the same version fails ([`Error::CommitConflict`]).
//! 4. It updates `_latest.json`, a hint naming the version (readers check for a newer record, so
//!    a crash before the hint loses nothing), then removes the files this commit superseded.
//!
//! Readers ([`Warehouse::snapshot`]) read the latest commit and open the physical files it names,
//! so they see the previous run or this one whole, never a mix. A crash anywhere before step 3
//! leaves the previous snapshot; its moved files are orphans, which the next run removes
//! ([`Warehouse::collect_garbage`]) once their run is known to be over or after a grace period.
//! A warehouse written before commits existed reads as the snapshot of the files it holds.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::failpoint::reach;
use crate::layout::{self, RunId};
use crate::warehouse::Warehouse;

/// One committed state of the warehouse: which physical file holds each logical path.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// The commit's number: 1 for the first, 0 for a warehouse with no commit yet.
    pub version: u64,
    /// The run (or erasure) that committed it.
    #[serde(default)]
    pub run_id: Option<String>,
    /// When it was committed (RFC 3339).
    #[serde(default)]
    pub committed_at: Option<String>,
    /// Logical path (`marts/t/as_of=D/part-0.parquet`) → physical path.
    pub files: BTreeMap<String, String>,
}

/// What a commit changes.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Logical paths this run staged under `_staging/<run_id>/` and publishes.
    pub files: Vec<String>,
    /// Logical paths this commit removes (retention, erasures).
    pub removed: Vec<String>,
}

impl Snapshot {
    /// The physical file of a logical path, if it is published.
    pub fn resolve(&self, rel: &str) -> Option<&str> {
        self.files.get(rel).map(String::as_str)
    }

    /// Whether a logical path is published.
    pub fn contains(&self, rel: &str) -> bool {
        self.files.contains_key(rel)
    }

    /// Every published (logical, physical) pair whose logical path starts with `prefix`.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.files
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The physical files the snapshot uses.
    pub fn physical_files(&self) -> BTreeSet<&str> {
        self.files.values().map(String::as_str).collect()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LatestHint {
    version: u64,
}

/// Whether a warehouse-relative path is a published file (a table partition or an export), not
/// clientele's own bookkeeping under `_`.
fn is_published_path(rel: &str) -> bool {
    !rel.starts_with('_') && rel.split('/').any(|p| p.starts_with("as_of="))
}

impl Warehouse {
    /// The latest committed snapshot. A warehouse without commits (new, or written by clientele
    /// 0.1) reads as version 0 holding the published files it has.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let hinted = match self.get_opt(layout::LATEST_FILE).await? {
            Some(body) => serde_json::from_slice::<LatestHint>(&body)
                .ok()
                .map(|h| h.version),
            None => None,
        };
        let mut version = match hinted {
            Some(v) => v,
            None => self.highest_commit().await?,
        };
        // The hint may lag by a commit or more (a crash between commit and hint).
        while self.exists(&layout::commit_record(version + 1)).await? {
            version += 1;
        }
        if version == 0 {
            return self.legacy_snapshot().await;
        }
        let path = layout::commit_record(version);
        let body = self.get(&path).await?;
        serde_json::from_slice(&body).map_err(|source| Error::Json { path, source })
    }

    async fn highest_commit(&self) -> Result<u64> {
        Ok(self
            .highest_numbered(layout::COMMITS_DIR)
            .await?
            .unwrap_or(0))
    }

    async fn legacy_snapshot(&self) -> Result<Snapshot> {
        let files = self
            .list("")
            .await?
            .into_iter()
            .filter(|(p, _)| is_published_path(p))
            .map(|(p, _)| (p.clone(), p))
            .collect();
        Ok(Snapshot {
            files,
            ..Snapshot::default()
        })
    }

    /// Publishes a run on top of `base` (the snapshot the run started from): moves its staged
    /// files to their physical names, commits the new snapshot, points `_latest.json` at it and
    /// removes what it superseded. Returns the new snapshot. Before the commit record is written
    /// nothing readers see has changed; after it, the run is published even if the clean-up
    /// fails (the next run's garbage collection finishes it).
    pub async fn publish(
        &self,
        run: &RunId,
        base: &Snapshot,
        changes: &Changes,
        now: DateTime<Utc>,
    ) -> Result<Snapshot> {
        let mut next = base.clone();
        next.version = base.version + 1;
        next.run_id = Some(run.to_string());
        next.committed_at = Some(now.to_rfc3339());
        for rel in &changes.removed {
            next.files.remove(rel);
        }
        for (i, rel) in changes.files.iter().enumerate() {
            let to = layout::physical(rel, run);
            self.rename(&layout::staged(run, rel), &to).await?;
            if i == 0 {
                reach("publish:renamed-first")?;
            }
            next.files.insert(rel.clone(), to);
        }
        reach("publish:renamed")?;
        let record = layout::commit_record(next.version);
        let body = serde_json::to_vec_pretty(&next).map_err(|source| Error::Json {
            path: record.clone(),
            source,
        })?;
        if !self.put_if_absent(&record, Bytes::from(body)).await? {
            return Err(Error::CommitConflict {
                version: next.version,
            });
        }
        tracing::info!(run = %run, version = next.version, files = changes.files.len(), "run committed");
        // From here on the run is published: a failure is logged, never returned.
        if let Err(e) = reach("publish:committed") {
            tracing::warn!(error = %e, "after the commit");
        }
        let hint = serde_json::to_vec(&LatestHint {
            version: next.version,
        })
        .map_err(|source| Error::Json {
            path: layout::LATEST_FILE.into(),
            source,
        })?;
        if let Err(e) = self.put(layout::LATEST_FILE, Bytes::from(hint)).await {
            tracing::warn!(error = %e, "the latest-commit hint could not be written; readers find the commit without it");
        }
        if let Err(e) = reach("publish:pointed") {
            tracing::warn!(error = %e, "after the commit");
        }
        let kept = next.physical_files();
        let superseded: Vec<&String> = base
            .files
            .values()
            .filter(|p| !kept.contains(p.as_str()))
            .collect();
        for path in superseded {
            if let Err(e) = self.delete(path).await {
                tracing::warn!(file = %path, error = %e, "a superseded file could not be removed; the next run's garbage collection will");
            }
        }
        if let Err(e) = self
            .delete_prefix(&format!("{}/{run}", layout::STAGING_DIR))
            .await
        {
            tracing::warn!(error = %e, "the run's staging area could not be removed");
        }
        self.prune_commits(next.version).await;
        Ok(next)
    }

    /// Keeps the last [`KEPT_COMMITS`] commit records; older ones go (readers need only the latest).
    async fn prune_commits(&self, latest: u64) {
        let Some(below) = latest.checked_sub(KEPT_COMMITS) else {
            return;
        };
        let Ok(records) = self.list(layout::COMMITS_DIR).await else {
            return;
        };
        for (path, _) in records {
            let version = path
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".json"))
                .and_then(|v| v.parse::<u64>().ok());
            if version.is_some_and(|v| v <= below)
                && let Err(e) = self.delete(&path).await
            {
                tracing::warn!(file = %path, error = %e, "an old commit record could not be removed");
            }
        }
    }

    /// Removes published-looking files that `snapshot` does not use: the files a crashed or
    /// failed run moved into place without committing, and superseded files a crash kept a
    /// committed run from removing. A file goes when the run named in it is over (`finished`:
    /// runs with a manifest, or whose stale lock was taken over) or when it is older than `grace`
    /// (a file of an unknown writer). Returns the paths removed. Call it only while holding the
    /// lock.
    pub async fn collect_garbage(
        &self,
        snapshot: &Snapshot,
        finished: &BTreeSet<String>,
        grace: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let used = snapshot.physical_files();
        let mut removed = Vec::new();
        for (rel, modified) in self.list_modified("").await? {
            if !is_published_path(&rel) || used.contains(rel.as_str()) {
                continue;
            }
            let name = rel.rsplit('/').next().unwrap_or(&rel);
            let of_finished_run = finished.iter().any(|run| name.contains(run.as_str()));
            let old = modified.is_some_and(|m| now.signed_duration_since(m) >= grace);
            if of_finished_run || old {
                self.delete(&rel).await?;
                removed.push(rel);
            }
        }
        if !removed.is_empty() {
            tracing::info!(
                files = removed.len(),
                "removed files no committed snapshot uses"
            );
        }
        Ok(removed)
    }
}

/// How many commit records stay in `_commits/`.
pub const KEPT_COMMITS: u64 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::warehouse::temp_warehouse as temp;

    const T: &str = "marts/t/as_of=2025-01-01/part-0.parquet";

    async fn stage(wh: &Warehouse, run: &RunId, rel: &str, body: &'static [u8]) -> Result<()> {
        wh.put(&layout::staged(run, rel), Bytes::from_static(body))
            .await
    }

    #[tokio::test]
    async fn a_commit_switches_readers_from_one_run_to_the_next_whole() -> Result<()> {
        let (_dir, wh) = temp();
        let now = Utc::now();
        let empty = wh.snapshot().await?;
        assert_eq!(empty.version, 0);
        let first = RunId::new("r1");
        stage(&wh, &first, T, b"old").await?;
        let changes = Changes {
            files: vec![T.into()],
            removed: vec![],
        };
        let one = wh.publish(&first, &empty, &changes, now).await?;
        assert_eq!(one.version, 1);
        assert_eq!(wh.snapshot().await?, one);
        let second = RunId::new("r2");
        stage(&wh, &second, T, b"new").await?;
        let two = wh.publish(&second, &one, &changes, now).await?;
        let read = wh.snapshot().await?;
        assert_eq!(read.version, 2);
        let physical = read.resolve(T).unwrap_or_default().to_string();
        assert_eq!(&wh.get(&physical).await?[..], b"new");
        assert_eq!(two, read);
        // The superseded file and the staging areas are gone.
        let left: Vec<String> = wh.list("marts").await?.into_iter().map(|f| f.0).collect();
        assert_eq!(left, vec![physical]);
        assert!(wh.list(layout::STAGING_DIR).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_second_commit_of_one_version_is_refused() -> Result<()> {
        let (_dir, wh) = temp();
        let now = Utc::now();
        let base = wh.snapshot().await?;
        let changes = Changes {
            files: vec![T.into()],
            removed: vec![],
        };
        let (a, b) = (RunId::new("ra"), RunId::new("rb"));
        stage(&wh, &a, T, b"a").await?;
        stage(&wh, &b, T, b"b").await?;
        wh.publish(&a, &base, &changes, now).await?;
        let late = wh.publish(&b, &base, &changes, now).await;
        assert!(matches!(late, Err(Error::CommitConflict { version: 1 })));
        let read = wh.snapshot().await?;
        assert_eq!(read.run_id.as_deref(), Some("ra"));
        Ok(())
    }

    #[tokio::test]
    async fn readers_find_a_commit_whose_hint_was_never_written() -> Result<()> {
        let (_dir, wh) = temp();
        let now = Utc::now();
        let run = RunId::new("r1");
        stage(&wh, &run, T, b"x").await?;
        let changes = Changes {
            files: vec![T.into()],
            removed: vec![],
        };
        wh.publish(&run, &Snapshot::default(), &changes, now)
            .await?;
        wh.delete(layout::LATEST_FILE).await?;
        assert_eq!(wh.snapshot().await?.version, 1);
        // A hint one behind is rolled forward.
        wh.put(layout::LATEST_FILE, Bytes::from_static(b"{\"version\":0}"))
            .await?;
        assert_eq!(wh.snapshot().await?.version, 1);
        Ok(())
    }

    #[tokio::test]
    async fn removed_paths_leave_the_snapshot_and_the_disk() -> Result<()> {
        let (_dir, wh) = temp();
        let now = Utc::now();
        let run = RunId::new("r1");
        stage(&wh, &run, T, b"x").await?;
        let one = wh
            .publish(
                &run,
                &Snapshot::default(),
                &Changes {
                    files: vec![T.into()],
                    removed: vec![],
                },
                now,
            )
            .await?;
        let two = wh
            .publish(
                &RunId::new("r2"),
                &one,
                &Changes {
                    files: vec![],
                    removed: vec![T.into()],
                },
                now,
            )
            .await?;
        assert!(two.files.is_empty());
        assert!(wh.list("marts").await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn garbage_is_the_files_of_finished_runs_or_old_ones_only() -> Result<()> {
        let (_dir, wh) = temp();
        let now = Utc::now();
        let run = RunId::new("r1");
        stage(&wh, &run, T, b"x").await?;
        let snap = wh
            .publish(
                &run,
                &Snapshot::default(),
                &Changes {
                    files: vec![T.into()],
                    removed: vec![],
                },
                now,
            )
            .await?;
        // A crashed run's file and a file of a writer nobody knows.
        let crashed = layout::physical(T, &RunId::new("crashed"));
        let unknown = layout::physical(T, &RunId::new("unknown"));
        wh.put(&crashed, Bytes::from_static(b"c")).await?;
        wh.put(&unknown, Bytes::from_static(b"u")).await?;
        let finished: BTreeSet<String> = ["crashed".to_string()].into();
        let removed = wh
            .collect_garbage(&snap, &finished, chrono::Duration::hours(1), now)
            .await?;
        assert_eq!(removed, vec![crashed]);
        let later = now + chrono::Duration::hours(2);
        let removed = wh
            .collect_garbage(&snap, &finished, chrono::Duration::hours(1), later)
            .await?;
        assert_eq!(removed, vec![unknown]);
        assert!(wh.exists(snap.resolve(T).unwrap_or_default()).await?);
        Ok(())
    }

    #[tokio::test]
    async fn a_warehouse_without_commits_reads_as_its_files() -> Result<()> {
        let (_dir, wh) = temp();
        wh.put(T, Bytes::from_static(b"legacy")).await?;
        wh.put("_runs/x.json", Bytes::from_static(b"{}")).await?;
        let snap = wh.snapshot().await?;
        assert_eq!(snap.version, 0);
        assert_eq!(snap.resolve(T), Some(T));
        assert_eq!(snap.files.len(), 1);
        Ok(())
    }
}
