use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::basic::Compression;
use parquet::basic::Encoding;
use parquet::file::properties::WriterProperties;
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
pub struct ParquetFileWriter {
    writer: AsyncArrowWriter<HashingWriter>,
    rel: String,
    rows: u64,
}

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
            .set_max_row_group_row_count(Some(1024 * 1024))
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
        let writer = AsyncArrowWriter::try_new(sink, schema, Some(props)).map_err(|source| {
            Error::Parquet {
                path: rel.clone(),
                source,
            }
        })?;
        Ok(Self {
            writer,
            rel,
            rows: 0,
        })
    }

    /// Appends one batch.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .await
            .map_err(|source| Error::Parquet {
                path: self.rel.clone(),
                source,
            })
    }

    /// Finishes the file and returns what was written; `published_as` is the path recorded in the manifest.
    pub async fn finish(mut self, published_as: &str) -> Result<WrittenFile> {
        self.writer
            .finish()
            .await
            .map_err(|source| Error::Parquet {
                path: self.rel.clone(),
                source,
            })?;
        let sink = self.writer.into_inner();
        Ok(WrittenFile {
            path: published_as.to_string(),
            rows: self.rows,
            bytes: sink.bytes,
            sha256: hex::encode(sink.hasher.finalize()),
        })
    }
}
