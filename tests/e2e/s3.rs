//! The whole warehouse on an S3-compatible server (s3s-fs, started by `tests/services/start.sh`),
//! reached through a proxy that injects transient faults: the nightly, an incremental rerun,
//! `query`, `runs`, `export` and `score --artifact` work as on a local disk and publish the same
//! bytes, and a permanent error fails the run cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clientele_testkit::{committed, lock_released, manifests, published_checksums};

use super::faults::point_job_at;
use super::{TestResult, assert_ok, clientele, demo, service};

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Passes it on and relays the answer.
    None,
    /// Answers `503 Slow Down` without passing it on.
    SlowDown,
    /// Answers `500 Internal Error` without passing it on.
    InternalError,
    /// Closes the connection without passing it on.
    DropBefore,
    /// Passes it on (the server acts on it) and closes the connection without an answer.
    DropAfter,
    /// Passes it on and closes the connection half way through the answer.
    Truncate,
}

/// How many requests the proxy saw, and how many of each fault it injected.
#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    slow_down: AtomicU64,
    internal_error: AtomicU64,
    drop_before: AtomicU64,
    drop_after: AtomicU64,
    truncate: AtomicU64,
    denied: AtomicU64,
}

/// A TCP proxy in front of the S3 server that injects faults into a seeded share of the requests.
/// Each connection carries one request (the proxy asks the server to close after answering).
struct FaultProxy {
    addr: SocketAddr,
    counts: Arc<Counts>,
    /// Writes (PUT, POST, DELETE) to keys containing this are refused with `403 Access Denied`.
    deny: Arc<Mutex<Option<String>>>,
    /// Whether to inject transient faults.
    faulty: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    fn start(upstream: SocketAddr, seed: u64) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let proxy = Self {
            addr,
            counts: Arc::default(),
            deny: Arc::default(),
            faulty: Arc::new(AtomicBool::new(true)),
            stop: Arc::default(),
        };
        let (counts, deny, faulty, stop) = (
            Arc::clone(&proxy.counts),
            Arc::clone(&proxy.deny),
            Arc::clone(&proxy.faulty),
            Arc::clone(&proxy.stop),
        );
        let dice = Arc::new(Mutex::new(seed | 1));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let fault = if faulty.load(Ordering::SeqCst) {
                    let mut d = dice.lock().unwrap_or_else(|p| p.into_inner());
                    *d ^= *d << 13;
                    *d ^= *d >> 7;
                    *d ^= *d << 17;
                    // One request in eight is faulted.
                    match *d % 48 {
                        0 | 1 => Fault::SlowDown,
                        2 => Fault::InternalError,
                        3 => Fault::DropBefore,
                        4 => Fault::DropAfter,
                        5 => Fault::Truncate,
                        _ => Fault::None,
                    }
                } else {
                    Fault::None
                };
                let (counts, deny) = (Arc::clone(&counts), Arc::clone(&deny));
                std::thread::spawn(move || {
                    let _ = serve(client, upstream, fault, &counts, &deny);
                });
            }
        });
        Ok(proxy)
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn injected(&self) -> [u64; 5] {
        let c = &self.counts;
        [
            c.slow_down.load(Ordering::SeqCst),
            c.internal_error.load(Ordering::SeqCst),
            c.drop_before.load(Ordering::SeqCst),
            c.drop_after.load(Ordering::SeqCst),
            c.truncate.load(Ordering::SeqCst),
        ]
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one HTTP request from the client, then does what `fault` says.
fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    counts: &Counts,
    deny: &Mutex<Option<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut content_length = 0usize;
    let mut request_line = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if request_line.is_empty() {
            request_line = line.clone();
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    counts.requests.fetch_add(1, Ordering::SeqCst);
    let mut client = client;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let denied = deny
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|d| target.contains(d.as_str()) && method != "GET" && method != "HEAD");
    let answer = |client: &mut TcpStream, status: &str, code: &str| -> std::io::Result<()> {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>"
        );
        write!(
            client,
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        )?;
        client.shutdown(Shutdown::Both)
    };
    if denied {
        counts.denied.fetch_add(1, Ordering::SeqCst);
        return answer(&mut client, "403 Forbidden", "AccessDenied");
    }
    match fault {
        Fault::SlowDown => {
            counts.slow_down.fetch_add(1, Ordering::SeqCst);
            return answer(&mut client, "503 Slow Down", "SlowDown");
        }
        Fault::InternalError => {
            counts.internal_error.fetch_add(1, Ordering::SeqCst);
            return answer(&mut client, "500 Internal Server Error", "InternalError");
        }
        Fault::DropBefore => {
            counts.drop_before.fetch_add(1, Ordering::SeqCst);
            return client.shutdown(Shutdown::Both);
        }
        _ => {}
    }
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(&head)?;
    server.write_all(&body)?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    match fault {
        Fault::DropAfter => {
            counts.drop_after.fetch_add(1, Ordering::SeqCst);
            client.shutdown(Shutdown::Both)
        }
        Fault::Truncate if response.len() > 64 => {
            counts.truncate.fetch_add(1, Ordering::SeqCst);
            client.write_all(&response[..response.len() / 2])?;
            client.shutdown(Shutdown::Both)
        }
        _ => {
            client.write_all(&response)?;
            client.shutdown(Shutdown::Both)
        }
    }
}

/// The demo's sources, SQL and job, without its warehouse, in a directory of their own.
fn sources_only(base: &Path) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    for entry in std::fs::read_dir(base)? {
        let entry = entry?;
        if entry.file_name() == "warehouse" {
            continue;
        }
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &dir.path().join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name()))?;
        }
    }
    Ok(dir)
}

fn copy_tree(from: &Path, to: &Path) -> TestResult {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
#[ignore = "needs an S3-compatible server: eval \"$(bash tests/services/start.sh)\""]
fn the_whole_warehouse_runs_on_s3_through_transient_faults_and_fails_cleanly_on_a_permanent_one()
-> TestResult {
    let root = std::path::PathBuf::from(service("CLIENTELE_TEST_S3_ROOT")?);
    let upstream: SocketAddr = service("CLIENTELE_TEST_S3_ENDPOINT")?
        .trim_start_matches("http://")
        .parse()?;
    let proxy = FaultProxy::start(upstream, 0x5eed_0053)?;
    let base = demo(300)?;

    // The same job twice: on a local disk, and on S3 through the proxy. The S3 copy's directory
    // is served as a bucket, so that its files can be compared with the local ones.
    let local = sources_only(base.path())?;
    let remote = sources_only(base.path())?;
    let bucket = format!("s3e2e-{}", std::process::id());
    let link = root.join(&bucket);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(remote.path(), &link)?;
    struct Unlink(std::path::PathBuf);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _unlink = Unlink(link);
    let url = format!("s3://{bucket}/warehouse");
    let (local_job, remote_job) = (
        local.path().join("jobs/demo.toml"),
        remote.path().join("jobs/demo.toml"),
    );
    point_job_at(&remote_job, &url)?;
    let (local_wh, remote_wh) = (
        local.path().join("warehouse"),
        remote.path().join("warehouse"),
    );
    let s3 = |args: &[&str]| -> Result<std::process::Output, Box<dyn std::error::Error>> {
        Ok(clientele()?
            .args(args)
            .env("AWS_ENDPOINT", proxy.endpoint())
            .env("CLIENTELE_LOG", "warn")
            .output()?)
    };
    let job = |p: &Path| p.to_string_lossy().into_owned();

    for as_of in ["2025-12-31", "2026-01-01"] {
        let out = clientele()?
            .args(["run", "--as-of", as_of])
            .arg(&local_job)
            .output()?;
        assert!(matches!(out.status.code(), Some(0 | 3)), "{}", text(&out));
        let out = s3(&["run", "--as-of", as_of, &job(&remote_job)])?;
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "the run on S3 failed: {}",
            text(&out)
        );
        assert_eq!(
            published_checksums(&remote_wh),
            published_checksums(&local_wh),
            "{as_of}: the run on S3 published other bytes than the run on a local disk"
        );
        assert!(lock_released(&remote_wh));
    }
    let runs = manifests(&remote_wh)?;
    assert_eq!(runs.len(), 2);
    // The second run's incremental load found every source file unchanged on S3.
    let files = runs[1]["sources"]
        .as_array()
        .ok_or("sources in the manifest")?
        .iter()
        .flat_map(|s| s["files"].as_array().cloned().unwrap_or_default())
        .collect::<Vec<_>>();
    assert!(!files.is_empty());
    assert!(
        files.iter().all(|f| f["status"] == "unchanged"),
        "{files:?}"
    );

    // The readers: query, runs, export and score --artifact, on S3 as on the local disk.
    let sql = "select count(*) as n, sum(monetary_value) as m from customer_view where as_of = date '2026-01-01'";
    let on_s3 = s3(&["query", "--warehouse", &url, "--format", "csv", sql])?;
    assert_ok(&on_s3);
    let on_disk = clientele()?
        .args([
            "query",
            "--warehouse",
            &job(&local_wh),
            "--format",
            "csv",
            sql,
        ])
        .output()?;
    assert_ok(&on_disk);
    assert_eq!(on_s3.stdout, on_disk.stdout);
    let runs_out = s3(&["runs", "--warehouse", &url])?;
    assert_ok(&runs_out);
    let listed = String::from_utf8_lossy(&runs_out.stdout);
    assert!(
        listed.contains("2025-12-31") && listed.contains("2026-01-01"),
        "{listed}"
    );
    let pulls = remote.path().join("pulls");
    let out = s3(&[
        "export",
        "rfm_champions",
        "--to",
        "csv",
        "--warehouse",
        &url,
        "--out",
        &job(&pulls),
    ])?;
    assert_ok(&out);
    let local_pulls = local.path().join("pulls");
    let out = clientele()?
        .args(["export", "rfm_champions", "--to", "csv", "--warehouse"])
        .arg(&local_wh)
        .arg("--out")
        .arg(&local_pulls)
        .output()?;
    assert_ok(&out);
    type Files = Vec<(String, Vec<u8>)>;
    let pulled = |d: &Path| -> Result<Files, Box<dyn std::error::Error>> {
        let mut files = Vec::new();
        for e in walkdir(d) {
            files.push((
                e.strip_prefix(d)?.to_string_lossy().into_owned(),
                std::fs::read(&e)?,
            ));
        }
        files.sort();
        Ok(files)
    };
    let exported = pulled(&pulls)?;
    assert!(!exported.is_empty());
    assert_eq!(exported, pulled(&local_pulls)?);
    let artifact = committed(&remote_wh, "models/churn/as_of=2026-01-01/artifact.json");
    let scored = remote.path().join("churn_again.csv");
    let out = s3(&[
        "score",
        "--artifact",
        &job(&artifact),
        "--warehouse",
        &url,
        "--out",
        &job(&scored),
    ])?;
    assert_ok(&out);
    assert!(std::fs::read_to_string(&scored)?.lines().count() > 100);

    // The proxy did inject every kind of transient fault, and the runs retried through them.
    let injected = proxy.injected();
    assert!(
        injected.iter().all(|&n| n > 0),
        "faults injected (503, 500, dropped before, dropped after, truncated): {injected:?} of {} requests",
        proxy.counts.requests.load(Ordering::SeqCst)
    );

    // A permanent error (the commit record may not be written) fails the run with exit 1,
    // naming the object, and leaves the published snapshot as it was; the next run succeeds.
    let before = published_checksums(&remote_wh);
    *proxy.deny.lock().unwrap_or_else(|p| p.into_inner()) = Some("/_commits/".into());
    proxy.faulty.store(false, Ordering::SeqCst);
    let out = s3(&["run", "--as-of", "2026-01-02", &job(&remote_job)])?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("_commits"), "{stderr}");
    assert_eq!(published_checksums(&remote_wh), before);
    assert!(lock_released(&remote_wh));
    *proxy.deny.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let out = s3(&["run", "--as-of", "2026-01-02", &job(&remote_job)])?;
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", text(&out));
    assert_ne!(published_checksums(&remote_wh), before);
    Ok(())
}

/// Every file below a directory.
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}
