use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
    compute_leaves,
};
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::basic::Compression;
use parquet::basic::Encoding;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A file written to the warehouse, as the run manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenFile {
    /// Warehouse-relative path where the file is published.
    pub path: String,
    /// Rows in the file (0 for files that are not tables).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
}

impl WrittenFile {
    /// Describes a non-table file from its content.
    pub fn of_bytes(path: impl Into<String>, rows: u64, data: &[u8]) -> Self {
        Self {
            path: path.into(),
            rows,
            bytes: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
        }
    }
}

/// Hashes and counts every byte on its way to the object store.
struct HashingWriter {
    inner: BufWriter,
    hasher: Sha256,
    bytes: u64,
}

impl AsyncFileWriter for HashingWriter {
    fn write(&mut self, bs: Bytes) -> BoxFuture<'_, parquet::errors::Result<()>> {
        self.hasher.update(&bs);
        self.bytes += bs.len() as u64;
        self.inner.write(bs)
    }

    fn complete(&mut self) -> BoxFuture<'_, parquet::errors::Result<()>> {
        self.inner.complete()
    }
}

/// Streams record batches into one Parquet object (Snappy-compressed, plain Arrow types, no
/// timestamps or host names in the metadata, so equal data gives byte-identical files).
///
/// Columns are encoded in parallel, on as many threads as the process may use (at most one per
/// column): a row group's columns are independent until they are put together in column order,
/// so the bytes are the same as one thread would write.
pub struct ParquetFileWriter {
    file: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// The column writers of the row group being filled, with its rows so far.
    in_progress: Option<(Vec<ArrowColumnWriter>, usize)>,
    sink: HashingWriter,
    threads: usize,
    rel: String,
    rows: u64,
}

/// Rows per row group.
const ROW_GROUP_ROWS: usize = 1024 * 1024;

impl ParquetFileWriter {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        rel: String,
        schema: SchemaRef,
    ) -> Result<Self> {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(concat!("clientele ", env!("CARGO_PKG_VERSION")).to_string())
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            // Source line numbers (raw tables) are unique and ascending: no dictionary, which
            // would be built only to be thrown away, and delta encoding, which stores them in
            // almost nothing.
            .set_column_dictionary_enabled(ColumnPath::from("_line"), false)
            .set_column_encoding(ColumnPath::from("_line"), Encoding::DELTA_BINARY_PACKED)
            .build();
        let sink = HashingWriter {
            inner: BufWriter::new(store, path),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let parquet_err = |source| Error::Parquet {
            path: rel.clone(),
            source,
        };
        let (file, factory) = ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(props))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(parquet_err)?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(schema.fields().len().max(1));
        Ok(Self {
            file,
            factory,
            schema,
            in_progress: None,
            sink,
            threads,
            rel,
            rows: 0,
        })
    }

    fn parquet_err(&self, source: parquet::errors::ParquetError) -> Error {
        Error::Parquet {
            path: self.rel.clone(),
            source,
        }
    }

    /// Appends one batch.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let (writers, buffered) = match self.in_progress.take() {
                Some(w) => w,
                None => {
                    let index = self.file.flushed_row_groups().len();
                    let writers = self
                        .factory
                        .create_column_writers(index)
                        .map_err(|e| self.parquet_err(e))?;
                    (writers, 0)
                }
            };
            let take = (ROW_GROUP_ROWS - buffered).min(batch.num_rows() - offset);
            let part = batch.slice(offset, take);
            offset += take;
            let mut writers = writers;
            encode_columns(&self.schema, &mut writers, &part, self.threads)
                .map_err(|e| self.parquet_err(e))?;
            self.rows += take as u64;
            if buffered + take >= ROW_GROUP_ROWS {
                self.close_row_group(writers).await?;
            } else {
                self.in_progress = Some((writers, buffered + take));
            }
        }
        Ok(())
    }

    /// Closes the columns of a row group, appends them in order and sends the bytes on.
    async fn close_row_group(&mut self, writers: Vec<ArrowColumnWriter>) -> Result<()> {
        let threads = self.threads;
        let file = &mut self.file;
        let appended = close_columns(writers, threads).and_then(|chunks| {
            let mut group = file.next_row_group()?;
            for chunk in chunks {
                chunk.append_to_row_group(&mut group)?;
            }
            group.close().map(|_| ())
        });
        appended.map_err(|e| self.parquet_err(e))?;
        self.send_buffered().await
    }

    /// Sends what the file writer has produced so far to the object store.
    async fn send_buffered(&mut self) -> Result<()> {
        let bytes = std::mem::take(self.file.inner_mut());
        if bytes.is_empty() {
            return Ok(());
        }
        self.sink
            .write(Bytes::from(bytes))
            .await
            .map_err(|e| self.parquet_err(e))
    }

    /// Finishes the file and returns what was written; `published_as` is the path recorded in the manifest.
    pub async fn finish(mut self, published_as: &str) -> Result<WrittenFile> {
        if let Some((writers, _)) = self.in_progress.take() {
            self.close_row_group(writers).await?;
        }
        self.file.finish().map_err(|e| self.parquet_err(e))?;
        self.file.flush().map_err(|e| Error::Parquet {
            path: self.rel.clone(),
            source: e.into(),
        })?;
        self.send_buffered().await?;
        self.sink
            .complete()
            .await
            .map_err(|e| self.parquet_err(e))?;
        Ok(WrittenFile {
            path: published_as.to_string(),
            rows: self.rows,
            bytes: self.sink.bytes,
            sha256: hex::encode(self.sink.hasher.finalize()),
        })
    }
}

/// Runs `work` on every item, spread over up to `threads` threads (the calling one included),
/// each taking the next item when it is free. Returns the first error.
fn in_parallel<T: Send>(
    items: Vec<T>,
    threads: usize,
    work: impl Fn(T) -> parquet::errors::Result<()> + Sync,
) -> parquet::errors::Result<()> {
    if threads <= 1 || items.len() <= 1 {
        return items.into_iter().try_for_each(work);
    }
    let queue = std::sync::Mutex::new(items.into_iter());
    let next = || queue.lock().ok().and_then(|mut q| q.next());
    let run = || -> parquet::errors::Result<()> {
        while let Some(item) = next() {
            work(item)?;
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(run)).collect();
        let mut result = run();
        for h in helpers {
            let joined = h.join().unwrap_or_else(|_| {
                Err(parquet::errors::ParquetError::General(
                    "a column encoding thread panicked".into(),
                ))
            });
            result = result.and(joined);
        }
        result
    })
}

/// Encodes one batch into the column writers of a row group.
fn encode_columns(
    schema: &SchemaRef,
    writers: &mut [ArrowColumnWriter],
    batch: &RecordBatch,
    threads: usize,
) -> parquet::errors::Result<()> {
    let mut leaves = Vec::with_capacity(writers.len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        leaves.extend(compute_leaves(field, column)?);
    }
    if leaves.len() != writers.len() {
        return Err(parquet::errors::ParquetError::General(format!(
            "{} leaf columns for {} column writers",
            leaves.len(),
            writers.len()
        )));
    }
    let pairs: Vec<(&mut ArrowColumnWriter, ArrowLeafColumn)> =
        writers.iter_mut().zip(leaves).collect();
    in_parallel(pairs, threads, |(writer, leaf)| writer.write(&leaf))
}

/// Closes the column writers of a row group (the last pages are compressed there too).
fn close_columns(
    writers: Vec<ArrowColumnWriter>,
    threads: usize,
) -> parquet::errors::Result<Vec<ArrowColumnChunk>> {
    let slots: Vec<std::sync::Mutex<Option<ArrowColumnChunk>>> = writers
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    let items: Vec<(usize, ArrowColumnWriter)> = writers.into_iter().enumerate().collect();
    in_parallel(items, threads, |(i, writer)| {
        let chunk = writer.close()?;
        if let Some(slot) = slots.get(i)
            && let Ok(mut s) = slot.lock()
        {
            *s = Some(chunk);
        }
        Ok(())
    })?;
    slots
        .into_iter()
        .map(|s| {
            s.into_inner().ok().flatten().ok_or_else(|| {
                parquet::errors::ParquetError::General("a column chunk went missing".into())
            })
        })
        .collect()
}
