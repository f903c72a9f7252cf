//! The warehouse write lock, built on put-if-absent alone (which a local disk and S3 both do
//! atomically): the lock is a sequence of generations `_lock/<n>.json`, and the highest one says
//! who holds it. Taking a free or stale lock and releasing one's own both write the next
//! generation with put-if-absent, so they are compare-and-swap steps: of two runs racing for a
//! stale lock exactly one writes generation n + 1, and a run whose lock was taken over cannot
//! release the new holder's. While a run lives it renews `_lock/<n>.heartbeat.json`.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::layout::{LEGACY_LOCK_FILE, LOCK_DIR, RunId};
use crate::warehouse::Warehouse;

/// How often a run renews its lock's heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
/// Generations kept behind the current one.
const KEPT_GENERATIONS: u64 = 4;

/// What a lock generation says about its holder.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    /// The run holding the lock (or that released it).
    pub run_id: String,
    /// Host name of the machine the run is on.
    pub host: String,
    /// Process id of the run.
    pub pid: u32,
    /// When the lock was taken (RFC 3339, UTC).
    pub started_at: String,
    /// This generation releases the lock: nobody holds it.
    #[serde(default)]
    pub released: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Heartbeat {
    at: String,
}

/// The warehouse write lock, held by one run.
///
/// A lock is stale, and is taken over with a warning, when its holder ran on this host and that
/// process is gone, or when it has not renewed its heartbeat for `stale_after_hours` (a run on
/// another host that died).
#[derive(Debug)]
pub struct RunLock {
    warehouse: Warehouse,
    info: LockInfo,
    generation: u64,
    taken_over: Option<LockInfo>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

fn generation_path(n: u64) -> String {
    format!("{LOCK_DIR}/{n:020}.json")
}

fn heartbeat_path(n: u64) -> String {
    format!("{LOCK_DIR}/{n:020}.heartbeat.json")
}

fn json<T: serde::Serialize>(path: &str, value: &T) -> Result<Bytes> {
    serde_json::to_vec_pretty(value)
        .map(Bytes::from)
        .map_err(|source| Error::Json {
            path: path.into(),
            source,
        })
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
            released: false,
        };
        let locked = |h: LockInfo| Error::Locked {
            run_id: h.run_id,
            host: h.host,
            pid: h.pid,
            started_at: h.started_at,
            lock_path: warehouse.url_of(LOCK_DIR, true),
            stale_after_hours,
        };
        let mut taken_over = None;
        if let Some(held) = warehouse.get_opt(LEGACY_LOCK_FILE).await? {
            // A lock of clientele 0.1: honoured while its holder may live.
            match serde_json::from_slice::<LockInfo>(&held) {
                Ok(h) if !is_stale(&h, None, now, stale_after_hours) => return Err(locked(h)),
                Ok(h) => taken_over = Some(h),
                Err(_) => {}
            }
            tracing::warn!("removing a stale warehouse lock of an earlier clientele version");
            warehouse.delete(LEGACY_LOCK_FILE).await?;
        }
        for _attempt in 0..3 {
            let (current, holder) = current_generation(warehouse).await?;
            if let Some(h) = &holder
                && !h.released
            {
                let beat = last_heartbeat(warehouse, current).await?;
                if !is_stale(h, beat, now, stale_after_hours) {
                    return Err(locked(h.clone()));
                }
            }
            let next = current + 1;
            let path = generation_path(next);
            if warehouse.put_if_absent(&path, json(&path, &info)?).await? {
                if let Some(h) = holder.filter(|h| !h.released) {
                    tracing::warn!(
                        stale_run = %h.run_id, host = %h.host, pid = h.pid, since = %h.started_at,
                        "took over a stale warehouse lock left by a run that is gone"
                    );
                    taken_over = Some(h);
                }
                prune(warehouse, next).await;
                let heartbeat = spawn_heartbeat(warehouse.clone(), next);
                return Ok(Self {
                    warehouse: warehouse.clone(),
                    info,
                    generation: next,
                    taken_over,
                    heartbeat,
                });
            }
            // Another run wrote that generation first: look again.
        }
        let (_, holder) = current_generation(warehouse).await?;
        Err(locked(holder.unwrap_or(LockInfo {
            run_id: "unknown".into(),
            host: "unknown".into(),
            pid: 0,
            started_at: "unknown".into(),
            released: false,
        })))
    }

    /// Who holds the lock.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// The holder of the stale lock this run took over, if it took one over: that run is over.
    pub fn taken_over(&self) -> Option<&LockInfo> {
        self.taken_over.as_ref()
    }

    /// Whether this run still holds the lock (no other run has taken it over).
    pub async fn still_held(&self) -> Result<bool> {
        let (current, _) = current_generation(&self.warehouse).await?;
        Ok(current == self.generation)
    }

    /// Releases the lock, only if this run still holds it: writes the next generation, marked
    /// released, with put-if-absent.
    pub async fn release(mut self) -> Result<()> {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        let mut released = self.info.clone();
        released.released = true;
        let path = generation_path(self.generation + 1);
        if !self
            .warehouse
            .put_if_absent(&path, json(&path, &released)?)
            .await?
        {
            tracing::warn!(run = %self.info.run_id, "the warehouse lock had been taken over by another run; left to it");
        }
        Ok(())
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

/// The highest generation and what it says (`(0, None)` when the lock was never taken).
async fn current_generation(warehouse: &Warehouse) -> Result<(u64, Option<LockInfo>)> {
    let Some(n) = warehouse.highest_numbered(LOCK_DIR).await? else {
        return Ok((0, None));
    };
    // Unreadable: treated as held by an unknown run, stale by age only.
    let holder = warehouse.get_opt(&generation_path(n)).await?.map(|body| {
        serde_json::from_slice::<LockInfo>(&body).unwrap_or_else(|_| LockInfo {
            run_id: "unreadable".into(),
            host: "unknown".into(),
            pid: 0,
            started_at: String::new(),
            released: false,
        })
    });
    Ok((n, holder))
}

async fn last_heartbeat(warehouse: &Warehouse, n: u64) -> Result<Option<DateTime<Utc>>> {
    Ok(warehouse
        .get_opt(&heartbeat_path(n))
        .await?
        .and_then(|b| serde_json::from_slice::<Heartbeat>(&b).ok())
        .and_then(|h| DateTime::parse_from_rfc3339(&h.at).ok())
        .map(|t| t.with_timezone(&Utc)))
}

/// Removes generations well behind `current` (best effort).
async fn prune(warehouse: &Warehouse, current: u64) {
    let Some(below) = current.checked_sub(KEPT_GENERATIONS) else {
        return;
    };
    let Ok(files) = warehouse.list(LOCK_DIR).await else {
        return;
    };
    for (path, _) in files {
        let n = path
            .rsplit('/')
            .next()
            .and_then(|f| f.split('.').next())
            .and_then(|n| n.parse::<u64>().ok());
        if n.is_some_and(|n| n < below) {
            let _ = warehouse.delete(&path).await;
        }
    }
}

fn spawn_heartbeat(warehouse: Warehouse, n: u64) -> Option<tokio::task::JoinHandle<()>> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    Some(handle.spawn(async move {
        loop {
            let path = heartbeat_path(n);
            let beat = Heartbeat {
                at: Utc::now().to_rfc3339(),
            };
            if let Ok(body) = json(&path, &beat)
                && let Err(e) = warehouse.put(&path, body).await
            {
                tracing::warn!(error = %e, "the warehouse lock's heartbeat could not be written");
            }
            tokio::time::sleep(HEARTBEAT_EVERY).await;
        }
    }))
}

fn is_stale(
    holder: &LockInfo,
    heartbeat: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    stale_after_hours: i64,
) -> bool {
    if holder.host == host_name() && !process_alive(holder.pid) {
        return true;
    }
    let started = DateTime::parse_from_rfc3339(&holder.started_at)
        .ok()
        .map(|t| t.with_timezone(&Utc));
    match started.into_iter().chain(heartbeat).max() {
        Some(alive_at) => now.signed_duration_since(alive_at).num_hours() >= stale_after_hours,
        None => true,
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

    fn dead_holder(now: DateTime<Utc>) -> LockInfo {
        LockInfo {
            run_id: "dead".into(),
            host: host_name(),
            pid: u32::MAX - 1,
            started_at: now.to_rfc3339(),
            released: false,
        }
    }

    async fn put_generation(wh: &Warehouse, n: u64, info: &LockInfo) -> Result<()> {
        let path = generation_path(n);
        wh.put(&path, json(&path, info)?).await
    }

    #[tokio::test]
    async fn a_second_run_is_refused_and_a_dead_holder_is_taken_over() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let wh = Warehouse::open("wh", dir.path())?;
        let now = Utc::now();
        let first = RunLock::acquire(&wh, &RunId::new("a"), now, 6).await?;
        let second = RunLock::acquire(&wh, &RunId::new("b"), now, 6).await;
        assert!(matches!(second, Err(Error::Locked { ref run_id, .. }) if run_id == "a"));
        assert!(first.still_held().await?);
        first.release().await?;
        let again = RunLock::acquire(&wh, &RunId::new("b"), now, 6).await?;
        assert!(again.taken_over().is_none(), "a released lock is free");
        again.release().await?;

        // A generation written by a process of this host that no longer exists.
        let (n, _) = current_generation(&wh).await?;
        put_generation(&wh, n + 1, &dead_holder(now)).await?;
        let taken = RunLock::acquire(&wh, &RunId::new("c"), now, 6).await?;
        assert_eq!(taken.info().run_id, "c");
        assert_eq!(taken.taken_over().map(|h| h.run_id.as_str()), Some("dead"));
        taken.release().await?;
        let (_, last) = current_generation(&wh).await?;
        assert!(last.is_some_and(|h| h.released));
        Ok(())
    }

    #[tokio::test]
    async fn a_run_whose_lock_was_taken_over_does_not_release_the_new_holders() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let wh = Warehouse::open("wh", dir.path())?;
        let now = Utc::now();
        let old = RunLock::acquire(&wh, &RunId::new("slow"), now, 6).await?;
        // Another run takes it over (as if `slow` had been silent for longer than the limit).
        let later = now + chrono::Duration::hours(7);
        let mut foreign = dead_holder(now);
        foreign.host = "elsewhere".into();
        let (n, _) = current_generation(&wh).await?;
        put_generation(&wh, n, &foreign).await?;
        wh.delete(&heartbeat_path(n)).await?;
        let new = RunLock::acquire(&wh, &RunId::new("new"), later, 6).await?;
        assert!(!old.still_held().await?);
        old.release().await?;
        assert!(new.still_held().await?, "the new holder keeps the lock");
        let refused = RunLock::acquire(&wh, &RunId::new("third"), later, 6).await;
        assert!(matches!(refused, Err(Error::Locked { ref run_id, .. }) if run_id == "new"));
        Ok(())
    }

    #[tokio::test]
    async fn a_heartbeat_keeps_an_old_lock_alive() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let wh = Warehouse::open("wh", dir.path())?;
        let now = Utc::now();
        let mut long_ago = dead_holder(now - chrono::Duration::hours(30));
        long_ago.host = "elsewhere".into();
        put_generation(&wh, 1, &long_ago).await?;
        let beat = Heartbeat {
            at: now.to_rfc3339(),
        };
        wh.put(&heartbeat_path(1), json("beat", &beat)?).await?;
        let refused = RunLock::acquire(&wh, &RunId::new("new"), now, 6).await;
        assert!(
            matches!(refused, Err(Error::Locked { .. })),
            "a run that renewed its heartbeat an instant ago is alive however long it has run"
        );
        wh.delete(&heartbeat_path(1)).await?;
        assert!(
            RunLock::acquire(&wh, &RunId::new("new"), now, 6)
                .await
                .is_ok()
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_lock_of_the_earlier_layout_is_honoured() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let wh = Warehouse::open("wh", dir.path())?;
        let now = Utc::now();
        let mut live = dead_holder(now);
        live.pid = std::process::id();
        wh.put(LEGACY_LOCK_FILE, json("l", &live)?).await?;
        assert!(
            RunLock::acquire(&wh, &RunId::new("x"), now, 6)
                .await
                .is_err()
        );
        wh.put(LEGACY_LOCK_FILE, json("l", &dead_holder(now))?)
            .await?;
        let taken = RunLock::acquire(&wh, &RunId::new("x"), now, 6).await?;
        assert_eq!(taken.taken_over().map(|h| h.run_id.as_str()), Some("dead"));
        assert!(!wh.exists(LEGACY_LOCK_FILE).await?);
        Ok(())
    }

    /// The child half of [`two_processes_racing_for_a_stale_lock_never_both_win`]: does nothing
    /// unless that test started it.
    #[tokio::test]
    async fn lock_race_child() -> Result<()> {
        let Ok(dir) = std::env::var("CLIENTELE_LOCK_RACE_DIR") else {
            return Ok(());
        };
        let dir = std::path::PathBuf::from(dir);
        let go = dir.join("go");
        while !go.exists() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let wh = Warehouse::open("wh", &dir)?;
        let me = RunId::new(format!("child-{}", std::process::id()));
        if RunLock::acquire(&wh, &me, Utc::now(), 6).await.is_ok() {
            std::fs::write(dir.join(format!("won-{}", std::process::id())), b"")
                .map_err(|e| Error::io(&dir, e))?;
            // Hold it (alive) while the other process decides.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        Ok(())
    }

    #[tokio::test]
    async fn two_processes_racing_for_a_stale_lock_never_both_win() -> Result<()> {
        let exe = std::env::current_exe().map_err(|e| Error::io("current exe", e))?;
        for trial in 0..25 {
            let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
            let wh = Warehouse::open("wh", dir.path())?;
            put_generation(&wh, 1, &dead_holder(Utc::now())).await?;
            let children: Vec<std::process::Child> = (0..2)
                .map(|_| {
                    std::process::Command::new(&exe)
                        .args(["--exact", "lock::tests::lock_race_child", "--quiet"])
                        .env("CLIENTELE_LOCK_RACE_DIR", dir.path())
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .map_err(|e| Error::io(&exe, e))
                })
                .collect::<Result<_>>()?;
            std::fs::write(dir.path().join("go"), b"").map_err(|e| Error::io("go", e))?;
            for mut c in children {
                let status = c.wait().map_err(|e| Error::io(&exe, e))?;
                assert!(status.success(), "trial {trial}: a child failed");
            }
            let winners = std::fs::read_dir(dir.path())
                .map_err(|e| Error::io("dir", e))?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("won-"))
                .count();
            assert_eq!(
                winners, 1,
                "trial {trial}: {winners} processes took the stale lock"
            );
        }
        Ok(())
    }
}
