use std::future::Future;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use url::Url;

use crate::error::{Error, Result};
use crate::parquet_file::ParquetFileWriter;

/// One warehouse: an object store and the prefix inside it where clientele keeps its tables.
#[derive(Debug, Clone)]
pub struct Warehouse {
    store: Arc<dyn ObjectStore>,
    /// `scheme://authority/` of the store, as DataFusion's object-store registry keys it.
    store_url: Url,
    /// The warehouse root inside the store.
    root: Path,
    /// How the user named it (for messages).
    display: String,
    /// Whether operations that fail with a transient error are tried again (remote stores).
    retries: bool,
}

impl Warehouse {
    /// Opens a warehouse. `location` is a local directory (relative paths resolve against `base_dir`)
    /// or a URL: `file:///abs/dir`, `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`
    /// (credentials and endpoints from the usual environment variables, see [`remote_store`]) or
    /// `memory://name` (tests). Nothing is
    /// written until the first put.
    pub fn open(location: &str, base_dir: &FsPath) -> Result<Self> {
        let bad = |reason: String| Error::BadLocation {
            location: location.to_string(),
            reason,
        };
        match Url::parse(location) {
            Ok(url) if url.scheme().len() > 1 => match url.scheme() {
                "file" => {
                    let dir = url
                        .to_file_path()
                        .map_err(|()| bad("not a local file URL".into()))?;
                    Self::open_local(&dir, location)
                }
                "memory" => Ok(Self {
                    store: Arc::new(InMemory::new()),
                    store_url: Url::parse(&format!(
                        "memory://{}/",
                        url.host_str().unwrap_or("warehouse")
                    ))
                    .map_err(|e| bad(e.to_string()))?,
                    root: Path::from(url.path().trim_matches('/')),
                    display: location.to_string(),
                    retries: false,
                }),
                _ => {
                    let (store, store_url, root) = remote_store(&url).map_err(bad)?;
                    Ok(Self {
                        store,
                        store_url,
                        root,
                        display: location.to_string(),
                        retries: true,
                    })
                }
            },
            _ => {
                let dir = base_dir.join(location);
                Self::open_local(&dir, location)
            }
        }
    }

    fn open_local(dir: &FsPath, location: &str) -> Result<Self> {
        // Nothing is created here: a dry run must not write. Puts create directories as they need them.
        let abs = normalise_path(&std::path::absolute(dir).map_err(|e| Error::io(dir, e))?);
        let abs = std::fs::canonicalize(&abs).unwrap_or(abs);
        let bad = |reason: String| Error::BadLocation {
            location: location.to_string(),
            reason,
        };
        if abs.exists() && !abs.is_dir() {
            return Err(bad("it exists and is not a directory".into()));
        }
        let root = Path::from_absolute_path(&abs).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            store: Arc::new(LocalFileSystem::new()),
            store_url: Url::parse("file:///").map_err(|e| bad(e.to_string()))?,
            root,
            display: abs.display().to_string(),
            retries: false,
        })
    }

    /// The object store holding the warehouse, for a query engine or a writer: on a remote store
    /// its reads are tried again on transient errors ([`crate::retrying::RetryingStore`]; the
    /// warehouse's own operations retry in [`Self::with_retries`], so they use the store itself
    /// and are not retried twice).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        if self.retries {
            Arc::new(crate::retrying::RetryingStore::new(Arc::clone(&self.store)))
        } else {
            Arc::clone(&self.store)
        }
    }

    /// The URL under which the store must be registered with a query engine.
    pub fn store_url(&self) -> &Url {
        &self.store_url
    }

    /// A human-readable name of the warehouse location.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The object path of a warehouse-relative path.
    pub fn object_path(&self, rel: &str) -> Path {
        let mut p = self.root.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// A full URL (as a query engine takes it) of a warehouse-relative path; directories end in `/`.
    pub fn url_of(&self, rel: &str, is_dir: bool) -> String {
        let path = self.object_path(rel);
        let mut s = format!("{}{}", self.store_url, path);
        if is_dir {
            s.push('/');
        }
        s
    }

    /// Runs one operation on the store, trying it again with a growing pause while it fails with
    /// a transient error on a remote store ([`crate::retrying::ATTEMPTS`] tries in all).
    async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        path: &Path,
        mut op: F,
    ) -> std::result::Result<T, object_store::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, object_store::Error>>,
    {
        if !self.retries {
            return op().await;
        }
        crate::retrying::retry(&format!("{what} {path}"), op).await
    }

    /// The highest number among the `<number>.json` objects below a prefix (commit records, lock
    /// generations), if there is one.
    pub async fn highest_numbered(&self, prefix: &str) -> Result<Option<u64>> {
        Ok(self
            .list(prefix)
            .await?
            .iter()
            .filter_map(|(p, _)| {
                p.rsplit('/')
                    .next()?
                    .strip_suffix(".json")?
                    .parse::<u64>()
                    .ok()
            })
            .max())
    }

    /// Writes one object (atomically: a local file appears complete or not at all).
    pub async fn put(&self, rel: &str, data: Bytes) -> Result<()> {
        let path = self.object_path(rel);
        self.with_retries("writing", &path, || {
            self.store.put(&path, PutPayload::from(data.clone()))
        })
        .await
        .map_err(|e| Error::storage(&path, e))?;
        Ok(())
    }

    /// Writes one object only if none exists there yet; returns false if one did.
    ///
    /// On a remote store a try whose reply was lost may have written the object: when a write
    /// finds the object there, it reads it back, and an object holding exactly these bytes is this
    /// call's own write (lock generations and commit records name their run and time, so another
    /// writer's never matches).
    pub async fn put_if_absent(&self, rel: &str, data: Bytes) -> Result<bool> {
        let path = self.object_path(rel);
        let opts = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let outcome = self
            .with_retries("writing (if absent)", &path, || {
                let data = data.clone();
                let opts = opts();
                let path = &path;
                async move {
                    match self
                        .store
                        .put_opts(path, PutPayload::from(data.clone()), opts)
                        .await
                    {
                        Ok(_) => Ok(true),
                        // Also on the first try: the client may have retried the request
                        // itself after a reply was lost, and met its own write.
                        Err(object_store::Error::AlreadyExists { .. }) => {
                            let there = self.store.get(path).await?.bytes().await?;
                            if there != data {
                                return Ok(false);
                            }
                            tracing::info!(
                                "{path} was written by an earlier try whose reply was lost"
                            );
                            Ok(true)
                        }
                        Err(e) => Err(e),
                    }
                }
            })
            .await;
        outcome.map_err(|e| Error::storage(&path, e))
    }

    /// Reads one object.
    pub async fn get(&self, rel: &str) -> Result<Bytes> {
        let path = self.object_path(rel);
        self.with_retries("reading", &path, || async {
            self.store.get(&path).await?.bytes().await
        })
        .await
        .map_err(|e| Error::storage(&path, e))
    }

    /// Reads one object, or `None` when there is none.
    pub async fn get_opt(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.get(rel).await {
            Ok(b) => Ok(Some(b)),
            Err(Error::Storage {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists every object below a prefix as its metadata (tried again as a whole on a transient
    /// error), with paths relative to the warehouse root, sorted by path.
    async fn list_meta(&self, prefix: &str) -> Result<Vec<(String, object_store::ObjectMeta)>> {
        let path = self.object_path(prefix);
        let metas: Vec<object_store::ObjectMeta> = self
            .with_retries("listing", &path, || {
                self.store.list(Some(&path)).try_collect()
            })
            .await
            .map_err(|e| Error::storage(&path, e))?;
        let root = self.root.as_ref();
        let mut out: Vec<_> = metas
            .into_iter()
            .map(|m| {
                let full = m.location.as_ref();
                let rel = full
                    .strip_prefix(root)
                    .unwrap_or(full)
                    .trim_start_matches('/')
                    .to_string();
                (rel, m)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Lists every object below a warehouse-relative prefix, as (relative path, size), sorted by path.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .list_meta(prefix)
            .await?
            .into_iter()
            .map(|(rel, m)| (rel, m.size))
            .collect())
    }

    /// Deletes one object; a missing one is not an error. On a local disk a directory the
    /// deletion leaves empty goes too (object stores have no directories), so that a removed
    /// partition leaves no empty `as_of=` directory for readers to trip over.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        let path = self.object_path(rel);
        match self
            .with_retries("deleting", &path, || self.store.delete(&path))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::storage(&path, e)),
        }
        if self.store_url.scheme() == "file"
            && let Some((dir, _)) = rel.rsplit_once('/')
            && !dir.is_empty()
        {
            // Fails (and is meant to) while the directory holds anything.
            let _ = std::fs::remove_dir(format!("/{}", self.object_path(dir)));
        }
        Ok(())
    }

    /// Whether an object exists (a metadata request; nothing is downloaded).
    pub async fn exists(&self, rel: &str) -> Result<bool> {
        let path = self.object_path(rel);
        match self
            .with_retries("looking up", &path, || self.store.head(&path))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::storage(&path, e)),
        }
    }

    /// Deletes every object below a prefix: on a local disk the directory tree at once, elsewhere
    /// object by object.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        if self.store_url.scheme() == "file" {
            let dir = std::path::PathBuf::from(format!("/{}", self.object_path(prefix)));
            return match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(dir, e)),
            };
        }
        for (rel, _) in self.list(prefix).await? {
            self.delete(&rel).await?;
        }
        Ok(())
    }

    /// A streaming Parquet writer for one object; see [`ParquetFileWriter`].
    pub fn parquet_writer(
        &self,
        rel: &str,
        schema: arrow::datatypes::SchemaRef,
    ) -> Result<ParquetFileWriter> {
        ParquetFileWriter::new(self.store(), self.object_path(rel), rel.to_string(), schema)
    }

    /// Moves one object (an atomic rename on a local disk, a server-side copy and delete on S3).
    /// A try that finds the source gone and the destination there has found an earlier try's work
    /// done (run-unique destination names make that unambiguous).
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (self.object_path(from), self.object_path(to));
        self.with_retries("moving", &from, || {
            let (from, to) = (&from, &to);
            async move {
                match self.store.rename(from, to).await {
                    // Also on the first try: the client may have retried a copy or delete itself.
                    Err(object_store::Error::NotFound { .. })
                        if self.store.head(to).await.is_ok() =>
                    {
                        Ok(())
                    }
                    result => result,
                }
            }
        })
        .await
        .map_err(|e| Error::storage(&to, e))
    }

    /// Lists every object below a prefix with when it was last written, sorted by path.
    pub async fn list_modified(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Option<chrono::DateTime<chrono::Utc>>)>> {
        Ok(self
            .list_meta(prefix)
            .await?
            .into_iter()
            .map(|(rel, m)| (rel, Some(m.last_modified)))
            .collect())
    }
}

/// Resolves `.` and `..` without touching the file system (the path may not exist yet).
pub fn normalise_path(path: &FsPath) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// An object store for a remote URL, with the URL it is registered under (`scheme://authority/`) and
/// the path inside it. Credentials, regions and endpoints come from the environment variables each
/// cloud's SDK reads (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
/// `AWS_ALLOW_HTTP`; `GOOGLE_SERVICE_ACCOUNT`; `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
/// ...). They are never logged or written to a manifest.
pub fn remote_store(url: &Url) -> std::result::Result<(Arc<dyn ObjectStore>, Url, Path), String> {
    let authority = url
        .host_str()
        .ok_or_else(|| format!("a {} URL needs a bucket or container", url.scheme()))?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "az" | "abfs" | "abfss" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(|e| e.to_string())?,
        ),
        other => {
            return Err(format!(
                "the '{other}' scheme is not supported (use a local path, file://, s3://, gs:// or az://)"
            ));
        }
    };
    let store_url =
        Url::parse(&format!("{}://{authority}/", url.scheme())).map_err(|e| e.to_string())?;
    let root = Path::from(url.path().trim_matches('/'));
    Ok((store, store_url, root))
}

/// A warehouse in a fresh temporary directory, for tests.
#[cfg(test)]
pub(crate) fn temp_warehouse() -> (tempfile::TempDir, Warehouse) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let wh = Warehouse::open("wh", dir.path()).unwrap_or_else(|e| unreachable!("{e}"));
    (dir, wh)
}

#[cfg(test)]
mod tests {
    use super::temp_warehouse as temp;
    use super::*;

    #[tokio::test]
    async fn put_if_absent_refuses_a_second_writer() -> Result<()> {
        let (_dir, wh) = temp();
        assert!(
            wh.put_if_absent("_lock.json", Bytes::from_static(b"a"))
                .await?
        );
        assert!(
            !wh.put_if_absent("_lock.json", Bytes::from_static(b"b"))
                .await?
        );
        assert_eq!(&wh.get("_lock.json").await?[..], b"a");
        assert!(wh.exists("_lock.json").await?);
        assert!(!wh.exists("nothing/here.parquet").await?);
        Ok(())
    }

    #[test]
    fn relative_locations_resolve_without_creating_anything() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let wh = Warehouse::open("../x/./wh", &dir.path().join("jobs"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(
            wh.url_of("", true).ends_with("/x/wh/"),
            "{}",
            wh.url_of("", true)
        );
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let err = Warehouse::open("ftp://host/x", FsPath::new("/"))
            .err()
            .map(|e| e.to_string());
        assert!(
            err.unwrap_or_default()
                .contains("'ftp' scheme is not supported")
        );
    }

    #[test]
    fn urls_of_local_tables_are_file_urls() {
        let (dir, wh) = temp();
        let url = wh.url_of("marts/t", true);
        assert!(url.starts_with("file:///"), "{url}");
        assert!(url.ends_with("/wh/marts/t/"), "{url}");
        drop(dir);
    }
}
