use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::layout::{LOCK_FILE, RunId};
use crate::warehouse::Warehouse;

/// What a lock says about its holder.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    /// The run holding the lock.
    pub run_id: String,
    /// Host name of the machine the run is on.
    pub host: String,
    /// Process id of the run.
    pub pid: u32,
    /// When the lock was taken (RFC 3339, UTC).
    pub started_at: String,
}

/// The warehouse write lock: one object created with put-if-absent, removed on release.
///
/// A lock is stale, and is taken over with a warning, when its holder ran on this host and that
/// process is gone, or when it is older than `stale_after_hours` (a run on another host that died).
#[derive(Debug)]
pub struct RunLock {
    warehouse: Warehouse,
    info: LockInfo,
}

impl RunLock {
    /// Takes the lock for `run`, or fails with [`Error::Locked`] naming the holder.
    pub async fn acquire(
        warehouse: &Warehouse,
        run: &RunId,
        now: DateTime<Utc>,
        stale_after_hours: i64,
    ) -> Result<Self> {
        let info = LockInfo {
            run_id: run.to_string(),
            host: host_name(),
            pid: std::process::id(),
            started_at: now.to_rfc3339(),
        };
        let body = serde_json::to_vec_pretty(&info).map_err(|source| Error::Json {
            path: LOCK_FILE.into(),
            source,
        })?;
        for _attempt in 0..2 {
            if warehouse
                .put_if_absent(LOCK_FILE, Bytes::from(body.clone()))
                .await?
            {
                return Ok(Self {
                    warehouse: warehouse.clone(),
                    info,
                });
            }
            let Some(held) = warehouse.get_opt(LOCK_FILE).await? else {
                continue;
            };
            let holder: Option<LockInfo> = serde_json::from_slice(&held).ok();
            match holder {
                Some(h) if !is_stale(&h, now, stale_after_hours) => {
                    return Err(Error::Locked {
                        run_id: h.run_id,
                        host: h.host,
                        pid: h.pid,
                        started_at: h.started_at,
                        lock_path: warehouse.url_of(LOCK_FILE, false),
                        stale_after_hours,
                    });
                }
                Some(h) => {
                    tracing::warn!(
                        stale_run = %h.run_id, host = %h.host, pid = h.pid, since = %h.started_at,
                        "taking over a stale warehouse lock left by a run that is gone"
                    );
                    warehouse.delete(LOCK_FILE).await?;
                }
                None => {
                    tracing::warn!("removing an unreadable warehouse lock");
                    warehouse.delete(LOCK_FILE).await?;
                }
            }
        }
        Err(Error::Locked {
            run_id: "unknown".into(),
            host: "unknown".into(),
            pid: 0,
            started_at: "unknown".into(),
            lock_path: warehouse.url_of(LOCK_FILE, false),
            stale_after_hours,
        })
    }

    /// Who holds the lock.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Releases the lock (only if this run still holds it).
    pub async fn release(self) -> Result<()> {
        if let Some(held) = self.warehouse.get_opt(LOCK_FILE).await? {
            let holder: Option<LockInfo> = serde_json::from_slice(&held).ok();
            if holder.as_ref() == Some(&self.info) {
                self.warehouse.delete(LOCK_FILE).await?;
            }
        }
        Ok(())
    }
}

fn is_stale(holder: &LockInfo, now: DateTime<Utc>, stale_after_hours: i64) -> bool {
    if holder.host == host_name() && !process_alive(holder.pid) {
        return true;
    }
    match DateTime::parse_from_rfc3339(&holder.started_at) {
        Ok(t) => now.signed_duration_since(t.with_timezone(&Utc)).num_hours() >= stale_after_hours,
        Err(_) => true,
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

fn process_alive(pid: u32) -> bool {
    let proc_root = std::path::Path::new("/proc");
    if !proc_root.join("self").exists() {
        // No procfs: we cannot tell, so trust the age rule alone.
        return true;
    }
    proc_root.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_run_is_refused_and_a_dead_holder_is_taken_over() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let wh = Warehouse::open("wh", dir.path())?;
        let now = Utc::now();
        let first = RunLock::acquire(&wh, &RunId::new("a"), now, 6).await?;
        let second = RunLock::acquire(&wh, &RunId::new("b"), now, 6).await;
        assert!(matches!(second, Err(Error::Locked { ref run_id, .. }) if run_id == "a"));
        first.release().await?;

        // A lock written by a process of this host that no longer exists.
        let dead = LockInfo {
            run_id: "dead".into(),
            host: host_name(),
            pid: u32::MAX - 1,
            started_at: now.to_rfc3339(),
        };
        wh.put(
            LOCK_FILE,
            Bytes::from(serde_json::to_vec(&dead).unwrap_or_default()),
        )
        .await?;
        let taken = RunLock::acquire(&wh, &RunId::new("c"), now, 6).await?;
        assert_eq!(taken.info().run_id, "c");
        taken.release().await?;
        assert!(wh.get_opt(LOCK_FILE).await?.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn an_old_lock_from_another_host_is_stale() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let wh = Warehouse::open("wh", dir.path())?;
        let now = Utc::now();
        let old = LockInfo {
            run_id: "old".into(),
            host: "elsewhere".into(),
            pid: 1,
            started_at: (now - chrono::Duration::hours(7)).to_rfc3339(),
        };
        wh.put(
            LOCK_FILE,
            Bytes::from(serde_json::to_vec(&old).unwrap_or_default()),
        )
        .await?;
        assert!(
            RunLock::acquire(&wh, &RunId::new("new"), now, 6)
                .await
                .is_ok()
        );
        Ok(())
    }
}
