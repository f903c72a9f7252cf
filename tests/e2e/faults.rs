//! The fault-injection suite: a nightly run is made to fail at every step boundary and at every
//! point of publishing (an error, a panic, or the process aborting on the spot), and is killed with
//! SIGKILL at seeded random moments. After every fault the warehouse must hold the previous
//! snapshot or the new one whole (compared file by file, by checksum, with a clean run of the same
//! date: runs are deterministic), every committed file must read, and the next run must succeed
//! and publish exactly what the clean run published (so no row is lost or duplicated).
//!
//! The suite runs twice: with the warehouse on a local disk, and on an S3-compatible server
//! (s3s-fs, started by `tests/services/start.sh`), where each copy's directory is served as a
//! bucket of its own so that the same file-by-file checks read what the server stores.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::prelude::CommandCargoExt;
use clientele_testkit::{committed_files, lock_released, published_checksums, read_parquet};

use super::{TestResult, clientele, demo, service};

/// Where the faulted runs keep their warehouse.
enum Backend {
    /// The job's own `../warehouse` directory.
    Local,
    /// `s3://<bucket>/warehouse` on the S3-compatible test server, whose buckets are the
    /// directories below `root`.
    S3 { root: std::path::PathBuf },
}

/// A copy's bucket on the test server (a link to the copy's directory), removed when dropped.
struct Bucket(Option<std::path::PathBuf>);

impl Drop for Bucket {
    fn drop(&mut self) {
        if let Some(link) = &self.0 {
            let _ = std::fs::remove_file(link);
        }
    }
}

impl Backend {
    /// Points the job of the copy in `dir` at its warehouse on this backend.
    fn attach(&self, dir: &Path, job: &Path) -> Result<Bucket, Box<dyn std::error::Error>> {
        let Backend::S3 { root } = self else {
            return Ok(Bucket(None));
        };
        let name = dir
            .file_name()
            .ok_or("a temporary directory has a name")?
            .to_string_lossy()
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "");
        let bucket = format!("faults-{name}");
        let link = root.join(&bucket);
        std::os::unix::fs::symlink(dir, &link)?;
        point_job_at(job, &format!("s3://{bucket}/warehouse"))?;
        Ok(Bucket(Some(link)))
    }
}

/// Rewrites a job's `warehouse = ...` line.
pub(crate) fn point_job_at(job: &Path, warehouse: &str) -> TestResult {
    let spec = std::fs::read_to_string(job)?;
    let mut found = false;
    let rewritten: Vec<String> = spec
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("warehouse =") && !found {
                found = true;
                format!("warehouse = \"{warehouse}\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(found, "{} has no warehouse line", job.display());
    std::fs::write(job, rewritten.join("\n") + "\n")?;
    Ok(())
}

/// The date the faulted runs are for: the day after the demo's run.
const NEXT: &str = "2026-01-01";

/// Copies a directory tree (the demo's sources, jobs and warehouse).
fn copy_all(from: &Path, to: &Path) -> TestResult {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() {
            copy_all(&path, &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(&path, to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Every committed file reads: Parquet as Parquet, text as UTF-8.
fn every_committed_file_reads(wh: &Path, fault: &str) -> TestResult {
    for (logical, physical) in committed_files(wh) {
        if logical.ends_with(".parquet") {
            read_parquet(&physical)
                .map_err(|e| format!("{fault}: {logical} does not read: {e}"))?;
        } else {
            std::fs::read_to_string(&physical)
                .map_err(|e| format!("{fault}: {logical} does not read: {e}"))?;
        }
    }
    Ok(())
}

/// One fault's checks, given the warehouse after the faulted run.
struct Expected {
    old: BTreeMap<String, String>,
    new: BTreeMap<String, String>,
}

impl Expected {
    fn check(&self, dir: &Path, job: &Path, fault: &str) -> TestResult {
        let wh = dir.join("warehouse");
        let now = published_checksums(&wh);
        let state = if now == self.old {
            "old"
        } else if now == self.new {
            "new"
        } else {
            let differ: Vec<&String> = now
                .keys()
                .chain(self.new.keys())
                .filter(|k| now.get(*k) != self.new.get(*k) && now.get(*k) != self.old.get(*k))
                .take(5)
                .collect();
            return Err(format!(
                "{fault}: the warehouse holds neither the old snapshot nor the new one whole ({} files, {} old, {} new; differing: {differ:?})",
                now.len(),
                self.old.len(),
                self.new.len()
            )
            .into());
        };
        every_committed_file_reads(&wh, fault)?;
        let out = clientele()?
            .args(["run", "--as-of", NEXT])
            .arg(job)
            .env_remove("CLIENTELE_FAILPOINT")
            .output()?;
        assert!(
            out.status.success() || out.status.code() == Some(3),
            "{fault} (left the {state} snapshot): the rerun failed\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            published_checksums(&wh),
            self.new,
            "{fault} (left the {state} snapshot): the rerun published something else than a clean run"
        );
        assert!(lock_released(&wh), "{fault}: the rerun left the lock held");
        let orphans: Vec<String> = walk(&wh)
            .into_iter()
            .filter(|p| !p.starts_with('_'))
            .filter(|p| {
                !committed_files(&wh).values().any(|f| {
                    f.strip_prefix(&wh)
                        .is_ok_and(|f| f.to_string_lossy() == **p)
                })
            })
            .collect();
        assert!(
            orphans.is_empty(),
            "{fault}: files no commit uses are left after the rerun: {orphans:?}"
        );
        Ok(())
    }
}

/// Every file below `root`, relative to it.
fn walk(root: &Path) -> Vec<String> {
    fn go(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                go(&p, root, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    go(root, root, &mut out);
    out
}

/// A seeded generator for the kill moments (xorshift; no dependency needed for a handful).
struct Moments(u64);

impl Moments {
    fn next_below(&mut self, limit: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % limit.max(1)
    }
}

#[test]
fn every_injected_fault_leaves_the_old_snapshot_or_the_new_one_whole() -> TestResult {
    fault_suite(&Backend::Local)
}

#[test]
#[ignore = "needs an S3-compatible server: eval \"$(bash tests/services/start.sh)\""]
fn on_s3_every_injected_fault_leaves_the_old_snapshot_or_the_new_one_whole() -> TestResult {
    let root = service("CLIENTELE_TEST_S3_ROOT")?;
    service("AWS_ENDPOINT")?;
    fault_suite(&Backend::S3 { root: root.into() })
}

fn fault_suite(backend: &Backend) -> TestResult {
    let base = demo(300)?;
    let job_of = |dir: &Path| dir.join("jobs/demo.toml");

    // The reference: a clean run of the next date from the same state.
    let clean = tempfile::tempdir()?;
    copy_all(base.path(), clean.path())?;
    let _bucket = backend.attach(clean.path(), &job_of(clean.path()))?;
    let started = Instant::now();
    let out = clientele()?
        .args(["run", "--as-of", NEXT])
        .arg(job_of(clean.path()))
        .output()?;
    let clean_run = started.elapsed();
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "{out:?}"
    );
    let expected = Expected {
        old: published_checksums(&base.path().join("warehouse")),
        new: published_checksums(&clean.path().join("warehouse")),
    };
    assert_ne!(expected.old, expected.new);

    let steps = [
        "ingest",
        "transform",
        "resolve",
        "consolidate",
        "score",
        "qualify",
        "segment",
        "export",
    ];
    let mut faults: Vec<(String, String)> = Vec::new();
    for step in steps {
        for action in ["error", "panic", "crash"] {
            faults.push((format!("step:{step}"), action.to_string()));
        }
    }
    for point in ["publish:renamed-first", "publish:renamed"] {
        for action in ["error", "panic", "crash"] {
            faults.push((point.to_string(), action.to_string()));
        }
    }
    for point in ["publish:committed", "publish:pointed", "run:manifest"] {
        for action in ["panic", "crash"] {
            faults.push((point.to_string(), action.to_string()));
        }
    }
    // SIGKILL at seeded random moments of the run, the commit included: half of them in the
    // last fifth of the run, where publishing happens.
    let mut moments = Moments(0x5eed_c11e_47e1_u64);
    let span = u64::try_from(clean_run.as_millis()).unwrap_or(10_000);
    let mut jobs: Vec<Fault> = faults
        .into_iter()
        .map(|(point, action)| Fault::Point(format!("{point}={action}")))
        .collect();
    for kill in 0..14 {
        jobs.push(Fault::Kill(if kill % 2 == 0 {
            moments.next_below(span)
        } else {
            span * 4 / 5 + moments.next_below(span / 5 + 1)
        }));
    }
    let checked = jobs.len();

    // Each fault on its own copy; copies are independent, so a few run at once (a run on the S3
    // server spends much of its time waiting for answers).
    let workers = match backend {
        Backend::Local => 2,
        Backend::S3 { .. } => 3,
    };
    let queue = std::sync::Mutex::new(jobs);
    let failures = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some(job) = job else { break };
                    let name = job.name();
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        one_fault(&job, base.path(), backend, &expected).map_err(|e| e.to_string())
                    }));
                    let failed = match outcome {
                        Ok(Ok(())) => continue,
                        Ok(Err(e)) => e,
                        Err(panic) => panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "a panic".into()),
                    };
                    failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("{name}: {failed}"));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 50, "{checked} faults checked");
    Ok(())
}

/// One injected fault.
enum Fault {
    /// A failpoint, `point=action`.
    Point(String),
    /// A SIGKILL this many milliseconds into the run.
    Kill(u64),
}

impl Fault {
    fn name(&self) -> String {
        match self {
            Fault::Point(p) => p.clone(),
            Fault::Kill(at) => format!("SIGKILL at {at} ms"),
        }
    }
}

/// Injects one fault into a run of the next date on a fresh copy of `base`, then checks it.
fn one_fault(fault: &Fault, base: &Path, backend: &Backend, expected: &Expected) -> TestResult {
    let dir = tempfile::tempdir()?;
    copy_all(base, dir.path())?;
    let job = dir.path().join("jobs/demo.toml");
    let _bucket = backend.attach(dir.path(), &job)?;
    match fault {
        Fault::Point(point) => {
            let out = clientele()?
                .args(["run", "--as-of", NEXT])
                .arg(&job)
                .env("CLIENTELE_FAILPOINT", point)
                .env_remove("RUST_BACKTRACE")
                .output()?;
            assert!(
                !out.status.success(),
                "{point}: the faulted run exited 0\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Fault::Kill(at) => {
            let mut child = std::process::Command::cargo_bin("clientele")?
                .args(["--quiet", "run", "--as-of", NEXT])
                .arg(&job)
                .env_remove("CLIENTELE_FAILPOINT")
                .env_remove("CLIENTELE_WAREHOUSE")
                .env_remove("CLIENTELE_LOG")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            std::thread::sleep(Duration::from_millis(*at));
            child.kill()?;
            child.wait()?;
        }
    }
    expected.check(dir.path(), &job, &fault.name())
}
