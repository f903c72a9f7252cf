//! An object store that tries reads again when they fail with a transient error: what a query
//! engine reads through. The client inside retries server errors and resumes cut-off downloads,
//! but a listing whose answer is cut off half way, or a request whose connection drops, fails at
//! once; over a long nightly on a busy store that happens. Writes pass through unchanged: the
//! warehouse's own operations ([`crate::Warehouse`]) retry them where retrying is safe.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// How many times an operation is tried before its error stands. The object store client already
/// retries server errors (5xx, 429) and unsent requests with backoff within each try; these tries
/// cover what it cannot: a connection dropped after a request that is not idempotent was sent (a
/// put-if-absent, whose answer was lost), an answer cut off half way, a reply that does not parse,
/// and a server that stays unavailable longer than its own retries last.
pub const ATTEMPTS: u32 = 5;

/// The pause after the first failed try; it doubles with every further one (0.2 s, ... 1.6 s).
const FIRST_PAUSE: Duration = Duration::from_millis(200);

/// Wraps a store so that reads (get, head, list) are tried again on transient errors.
#[derive(Debug)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }
}

impl std::fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Retrying({})", self.inner)
    }
}

/// Whether an object store error may go away when the operation is tried again. Answers that are
/// final (not found, already exists, a failed precondition, permission denied, not authenticated,
/// an invalid path, an unsupported operation) are not; transport and server trouble, which the
/// client reports as a generic error, is.
pub(crate) fn transient(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    )
}

/// Runs `op` until it succeeds, fails with an error that is not [`transient`], or has been tried
/// [`ATTEMPTS`] times, pausing longer after each failure; each retry is logged as a warning.
pub(crate) async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < ATTEMPTS && transient(&e) => {
                let pause = FIRST_PAUSE * 2u32.pow(attempt - 1);
                tracing::warn!(
                    "{what} failed (try {attempt} of {ATTEMPTS}), trying again in {:.1} s: {e}",
                    pause.as_secs_f64()
                );
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

#[async_trait]
impl ObjectStore for RetryingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        retry(&format!("reading {location}"), || {
            self.inner.get_opts(location, options.clone())
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        retry(&format!("reading {location}"), || {
            self.inner.get_ranges(location, ranges)
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        // Collected whole, so that a listing cut off half way is tried again from the start.
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            retry(
                &format!("listing {}", prefix.as_ref().map_or("", |p| p.as_ref())),
                || inner.list(prefix.as_ref()).try_collect::<Vec<_>>(),
            )
            .await
        })
        .map_ok(|metas| futures::stream::iter(metas.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        retry("listing", || self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
