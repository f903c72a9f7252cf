//! Where a source's bytes come from: local paths and globs, or object-store URLs, read as a plain
//! byte stream (decompressed on the way) with the SHA-256 and size of the stored bytes.

use std::cell::RefCell;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::spec::{Compression, SourcePlan};

/// Where one input file lives.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    Local(PathBuf),
    Remote {
        store: Arc<dyn ObjectStore>,
        path: object_store::path::Path,
    },
}

/// One file of a source.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The name recorded in `_file` and the manifest: relative to the job spec's directory when the
    /// file lies below it, the URL for object stores.
    pub display: String,
    /// Size of the stored (possibly compressed) bytes.
    pub size: u64,
    /// Last modification time, when the store knows it.
    pub modified: Option<DateTime<Utc>>,
    pub(crate) location: Location,
}

impl InputFile {
    /// The path used in error messages: the absolute local path, or the URL.
    pub fn error_path(&self) -> PathBuf {
        match &self.location {
            Location::Local(p) => p.clone(),
            Location::Remote { .. } => PathBuf::from(&self.display),
        }
    }

    /// The local path, when the file is local.
    pub(crate) fn local_path(&self) -> Option<&Path> {
        match &self.location {
            Location::Local(p) => Some(p),
            Location::Remote { .. } => None,
        }
    }

    /// Opens the stored bytes. Call on a blocking thread: remote reads block on `rt`.
    pub(crate) fn open(&self, rt: &Handle) -> io::Result<Box<dyn Read>> {
        match &self.location {
            Location::Local(p) => Ok(Box::new(std::fs::File::open(p)?)),
            Location::Remote { store, path } => {
                let result = rt.block_on(store.get(path)).map_err(io::Error::other)?;
                Ok(Box::new(StreamReader::new(
                    rt.clone(),
                    result.into_stream(),
                )))
            }
        }
    }

    /// Whether the stored bytes are compressed, and how.
    pub(crate) fn compression(&self, declared: Compression) -> Compression {
        compression_of(&self.display, declared)
    }
}

/// A stream of byte chunks (a remote object, a PostgreSQL COPY) as a blocking reader, one chunk at a
/// time, so memory stays bounded whatever the size.
pub(crate) struct StreamReader<E> {
    rt: Handle,
    stream: BoxStream<'static, std::result::Result<Bytes, E>>,
    chunk: Bytes,
}

impl<E> StreamReader<E> {
    pub fn new(rt: Handle, stream: BoxStream<'static, std::result::Result<Bytes, E>>) -> Self {
        Self {
            rt,
            stream,
            chunk: Bytes::new(),
        }
    }
}

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> Read for StreamReader<E> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

/// SHA-256 and byte count of everything read through a [`HashingReader`].
#[derive(Default)]
pub(crate) struct Digested {
    hasher: Sha256,
    pub bytes: u64,
}

impl Digested {
    pub fn hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

/// Hashes and counts every byte read through it; the digest stays readable after the reader was
/// handed to a decompressor or parser.
pub(crate) struct HashingReader<R> {
    inner: R,
    digest: Rc<RefCell<Digested>>,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> (Self, Rc<RefCell<Digested>>) {
        let digest = Rc::new(RefCell::new(Digested::default()));
        (
            Self {
                inner,
                digest: Rc::clone(&digest),
            },
            digest,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut d = self.digest.borrow_mut();
        d.hasher.update(&buf[..n]);
        d.bytes += n as u64;
        Ok(n)
    }
}

/// The compression of a file named `name`: the declared one, or with `auto` the one its extension
/// names (`.gz`, `.gzip`, `.zst`, `.zstd`).
pub(crate) fn compression_of(name: &str, declared: Compression) -> Compression {
    match declared {
        Compression::Auto => {
            let lower = name.to_ascii_lowercase();
            if lower.ends_with(".gz") || lower.ends_with(".gzip") {
                Compression::Gzip
            } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
                Compression::Zstd
            } else {
                Compression::None
            }
        }
        other => other,
    }
}

/// Wraps stored bytes in their decompressor.
pub(crate) fn decompress<'a>(
    reader: impl Read + 'a,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
        Compression::None | Compression::Auto => Box::new(reader),
    })
}

/// SHA-256 (hex) and size of a file's stored bytes, reading it once.
pub(crate) fn checksum(file: &InputFile, rt: &Handle) -> io::Result<(String, u64)> {
    let (mut reader, digest) = HashingReader::new(file.open(rt)?);
    io::copy(&mut reader, &mut io::sink())?;
    let d = digest.borrow();
    Ok((d.hex(), d.bytes))
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The files of a source, sorted by name. `location` is a path or glob relative to `base_dir`, a
/// `file://` URL, or an object-store URL whose key may hold a glob (`s3://bucket/in/*.csv.gz`).
pub async fn resolve_inputs(plan: &SourcePlan, base_dir: &Path) -> Result<Vec<InputFile>> {
    let location = plan.location.as_str();
    let bad = |reason: String| Error::BadSpec {
        source_name: plan.name.clone(),
        problems: vec![reason],
    };
    let Some((scheme, rest)) = location.split_once("://").filter(|(s, _)| s.len() > 1) else {
        return resolve_local(plan, &base_dir.join(location), base_dir);
    };
    if scheme == "file" {
        return resolve_local(
            plan,
            Path::new(&format!("/{}", rest.trim_start_matches('/'))),
            base_dir,
        );
    }
    let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
    let root = url::Url::parse(&format!("{scheme}://{authority}/"))
        .map_err(|e| bad(format!("location '{location}': {e}")))?;
    let (store, _, _) = clientele_store::remote_store(&root)
        .map_err(|e| bad(format!("location '{location}': {e}")))?;
    let storage = |e: object_store::Error| Error::BadFile {
        source_name: plan.name.clone(),
        file: PathBuf::from(location),
        reason: format!("cannot be listed: {e}"),
    };
    let mut files = Vec::new();
    if has_glob(key) {
        let pattern = glob::Pattern::new(key)
            .map_err(|e| bad(format!("location '{location}' is not a valid glob: {e}")))?;
        let fixed = &key[..key.find(['*', '?', '[']).unwrap_or(key.len())];
        let prefix = fixed.rfind('/').map_or("", |i| &fixed[..i]);
        let prefix_path = (!prefix.is_empty()).then(|| object_store::path::Path::from(prefix));
        let metas: Vec<_> = store
            .list(prefix_path.as_ref())
            .try_collect()
            .await
            .map_err(storage)?;
        for m in metas {
            let k = m.location.as_ref();
            if pattern.matches_with(
                k,
                glob::MatchOptions {
                    require_literal_separator: true,
                    ..glob::MatchOptions::new()
                },
            ) {
                files.push(InputFile {
                    display: format!("{scheme}://{authority}/{k}"),
                    size: m.size,
                    modified: Some(m.last_modified),
                    location: Location::Remote {
                        store: Arc::clone(&store),
                        path: m.location,
                    },
                });
            }
        }
    } else {
        let path = object_store::path::Path::from(key);
        match store.head(&path).await {
            Ok(m) => files.push(InputFile {
                display: location.to_string(),
                size: m.size,
                modified: Some(m.last_modified),
                location: Location::Remote { store, path },
            }),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(storage(e)),
        }
    }
    files.sort_by(|a, b| a.display.cmp(&b.display));
    Ok(files)
}

fn resolve_local(plan: &SourcePlan, pattern: &Path, base_dir: &Path) -> Result<Vec<InputFile>> {
    let pattern_text = pattern.to_string_lossy();
    let paths = glob::glob(&pattern_text).map_err(|e| Error::BadSpec {
        source_name: plan.name.clone(),
        problems: vec![format!(
            "location '{}' is not a valid glob: {e}",
            plan.location
        )],
    })?;
    let mut files = Vec::new();
    for p in paths {
        let p = p.map_err(|e| Error::Io {
            path: e.path().to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?;
        let meta = std::fs::metadata(&p).map_err(|source| Error::Io {
            path: p.clone(),
            source,
        })?;
        if !meta.is_file() {
            continue;
        }
        let display = p
            .strip_prefix(base_dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        files.push(InputFile {
            display,
            size: meta.len(),
            modified: meta.modified().ok().map(DateTime::<Utc>::from),
            location: Location::Local(clientele_store::normalise_path(&p)),
        });
    }
    files.sort_by(|a, b| a.display.cmp(&b.display));
    Ok(files)
}
