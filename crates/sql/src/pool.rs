//! The engine's memory pool under a memory limit: DataFusion's greedy pool, tracked (so that an
//! error names the largest consumers), which also notes how much the hash joins' build sides held
//! when an allocation failed. A hash join's build side cannot spill, whatever the pool: when they
//! held most of the pool, running the query again with a fair pool (which only makes spilling
//! operators spill sooner) would run out again, so [`crate::Engine::run_attempts`] goes straight
//! to sort-merge joins.
//!
//! Both that pool and the fair one of the later attempts grant a repartition's channels what they
//! ask for, outside the pool ([`RepartitionsGranted`]): DataFusion 55's `RepartitionExec`,
//! refused, writes its batches to a spill file its reader shares with the other inputs, and with
//! two such files open the reader can wait on the older for a batch that is in the newer, while
//! the writers wait on the reader: the query stops for good, every thread parked, no error
//! (apache/datafusion#24883, fixed in #24891 after 55). A repartition's channels hold a few
//! batches at a time (a writer waits while every channel has one), but what they ask for counts
//! each batch's buffers whole, and the batches a hash repartition makes of text columns (string
//! views) share their input's buffers: at ten million persons the channels of one query asked
//! for 12.0 GB while the whole process stayed under 3.1 GiB resident. Counted against the pool,
//! those figures ran queries out of memory that had room (`int_customer_consent` and
//! `fct_orders` ran again each time), so the channels are left out of the pool's count and of its
//! fair shares (docs/performance.md#data-tests-in-parts).

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::Result;
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
    TrackConsumersPool,
};

/// The consumer name DataFusion gives a hash join's build side (`HashJoinInput[partition]`).
const HASH_JOIN_BUILD_SIDE: &str = "HashJoinInput";

/// The consumer name DataFusion gives a repartition's output channels (`RepartitionExec[p]`).
const REPARTITION_CHANNELS: &str = "RepartitionExec";

/// Whether `reservation` is one a pool grants whatever it asks ([`RepartitionsGranted`]).
fn is_granted(reservation: &MemoryReservation) -> bool {
    reservation
        .consumer()
        .name()
        .starts_with(REPARTITION_CHANNELS)
}

/// A pool that grants a repartition's channels every allocation without counting it (nor
/// registering them, so a fair pool does not share itself out to them), and asks `inner` for
/// every other: see the module's doc for the hang this keeps DataFusion 55 out of.
#[derive(Debug)]
pub(crate) struct RepartitionsGranted {
    inner: Arc<dyn MemoryPool>,
}

impl RepartitionsGranted {
    pub(crate) fn new(inner: Arc<dyn MemoryPool>) -> Self {
        Self { inner }
    }
}

impl fmt::Display for RepartitionsGranted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl MemoryPool for RepartitionsGranted {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if !consumer.name().starts_with(REPARTITION_CHANNELS) {
            self.inner.register(consumer);
        }
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if !consumer.name().starts_with(REPARTITION_CHANNELS) {
            self.inner.unregister(consumer);
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        if !is_granted(reservation) {
            self.inner.grow(reservation, additional);
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        if !is_granted(reservation) {
            self.inner.shrink(reservation, shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        if is_granted(reservation) {
            return Ok(());
        }
        self.inner.try_grow(reservation, additional)
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

/// How many of the largest consumers an out-of-memory error names (every pool of the engine's).
pub(crate) const NAMED_CONSUMERS: NonZeroUsize = NonZeroUsize::MIN.saturating_add(4);

/// A greedy, tracked pool that remembers what the hash joins' build sides held at the last
/// allocation that failed (the engine puts it inside [`RepartitionsGranted`]).
#[derive(Debug)]
pub(crate) struct WatchedPool {
    tracked: TrackConsumersPool<GreedyMemoryPool>,
    size: usize,
    joins_at_failure: AtomicUsize,
}

impl WatchedPool {
    /// A pool of `size` bytes whose errors name the five largest consumers.
    pub(crate) fn new(size: usize) -> Self {
        Self {
            tracked: TrackConsumersPool::new(GreedyMemoryPool::new(size), NAMED_CONSUMERS),
            size,
            joins_at_failure: AtomicUsize::new(0),
        }
    }

    /// Forgets the last failure (before a query runs).
    pub(crate) fn forget_failure(&self) {
        self.joins_at_failure.store(0, Ordering::Relaxed);
    }

    /// Bytes the hash joins' build sides held (with what one of them asked for, when it was the
    /// one refused) at the last allocation that failed since [`WatchedPool::forget_failure`].
    pub(crate) fn joins_at_failure(&self) -> usize {
        self.joins_at_failure.load(Ordering::Relaxed)
    }

    /// Whether a query that ran out of this pool would run out of a fair pool of the same size
    /// too: its hash joins' build sides, which no pool can make spill, held at least two thirds
    /// of it. (At 10,000,000 persons the queries that ran out of a fair pool after the greedy
    /// one had 71 to 100% of the pool in build sides; those a fair pool then ran, 1 to 54%.)
    pub(crate) fn joins_fill_it(&self) -> bool {
        joins_fill(self.joins_at_failure(), self.size)
    }
}

/// Whether hash joins holding `joins` bytes fill a pool of `size` bytes beyond what a fair pool
/// could make room for: two thirds or more of it.
pub(crate) fn joins_fill(joins: usize, size: usize) -> bool {
    size > 0 && joins as u128 * 3 >= size as u128 * 2
}

impl fmt::Display for WatchedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.tracked.fmt(f)
    }
}

impl MemoryPool for WatchedPool {
    fn name(&self) -> &str {
        self.tracked.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.tracked.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.tracked.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.tracked.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.tracked.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.tracked
            .try_grow(reservation, additional)
            .inspect_err(|_| {
                let held: usize = self
                    .tracked
                    .metrics()
                    .iter()
                    .filter(|c| c.name.starts_with(HASH_JOIN_BUILD_SIDE))
                    .map(|c| c.reserved)
                    .sum();
                let asked = if reservation
                    .consumer()
                    .name()
                    .starts_with(HASH_JOIN_BUILD_SIDE)
                {
                    additional
                } else {
                    0
                };
                self.joins_at_failure
                    .store(held.saturating_add(asked), Ordering::Relaxed);
            })
    }

    fn reserved(&self) -> usize {
        self.tracked.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.tracked.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repartition's channels are granted past the pool and not counted, in the greedy pool
    /// and the fair one alike, so DataFusion 55's repartition never takes its spilling path and
    /// its channels' figures (their batches' shared buffers counted whole) take nothing from the
    /// operators that spill; every other consumer is refused as before.
    #[test]
    fn a_repartition_is_granted_outside_the_pool_and_a_sort_is_refused_past_it() {
        use datafusion::execution::memory_pool::FairSpillPool;
        let greedy: Arc<dyn MemoryPool> =
            Arc::new(RepartitionsGranted::new(Arc::new(WatchedPool::new(1_000))));
        let fair: Arc<dyn MemoryPool> = Arc::new(RepartitionsGranted::new(Arc::new(
            TrackConsumersPool::new(FairSpillPool::new(1_000), NAMED_CONSUMERS),
        )));
        for pool in [greedy, fair] {
            let channels = MemoryConsumer::new("RepartitionExec[0]")
                .with_can_spill(true)
                .register(&pool);
            let sort = MemoryConsumer::new("ExternalSorter[0]")
                .with_can_spill(true)
                .register(&pool);
            assert!(sort.try_grow(400).is_ok(), "{pool}");
            assert!(channels.try_grow(1_500).is_ok(), "{pool}");
            channels.grow(500);
            assert_eq!(channels.size(), 2_000, "{pool}");
            assert_eq!(pool.reserved(), 400, "{pool}");
            // The sort alone in the pool (the fair one's only spiller): 1,000 and no more.
            assert!(sort.try_grow(600).is_ok(), "{pool}");
            assert!(sort.try_grow(1).is_err(), "{pool}");
            channels.shrink(1_000);
            drop(channels);
            assert_eq!(pool.reserved(), 1_000, "{pool}");
            drop(sort);
            assert_eq!(pool.reserved(), 0, "{pool}");
        }
    }

    #[test]
    fn joins_fill_the_pool_from_two_thirds() {
        assert!(!joins_fill(0, 0));
        assert!(!joins_fill(0, 3_000));
        assert!(!joins_fill(1_999, 3_000));
        assert!(joins_fill(2_000, 3_000));
        assert!(joins_fill(3_000, 3_000));
        // The 10,000,000-person run's failures: int_customer_consent (2.9 of 4 GiB in build
        // sides) would skip the fair pool; dim_customer (1.0 GiB) would not.
        let gib = 1usize << 30;
        assert!(joins_fill(2_912 << 20, 4 * gib));
        assert!(!joins_fill(gib, 4 * gib));
    }

    #[test]
    fn a_refused_build_side_is_noted_and_a_refused_sort_only_counts_the_joins() {
        let pool: Arc<dyn MemoryPool> = Arc::new(WatchedPool::new(1_000));
        let watched = |p: &Arc<dyn MemoryPool>| -> usize {
            p.downcast_ref::<WatchedPool>()
                .map_or(usize::MAX, WatchedPool::joins_at_failure)
        };
        let join = MemoryConsumer::new("HashJoinInput[0]").register(&pool);
        let sort = MemoryConsumer::new("ExternalSorter[0]")
            .with_can_spill(true)
            .register(&pool);
        assert!(join.try_grow(600).is_ok());
        assert!(sort.try_grow(300).is_ok());
        assert_eq!(watched(&pool), 0);
        // The join asks for 200 more: refused, with 800 counted (600 held and 200 asked).
        assert!(join.try_grow(200).is_err());
        assert_eq!(watched(&pool), 800);
        // A sort refused counts only what the joins hold.
        assert!(sort.try_grow(200).is_err());
        assert_eq!(watched(&pool), 600);
        if let Some(p) = pool.downcast_ref::<WatchedPool>() {
            assert!(!p.joins_fill_it());
            p.forget_failure();
        }
        assert_eq!(watched(&pool), 0);
        assert!(join.try_grow(100).is_ok());
        assert!(join.try_grow(200).is_err());
        assert_eq!(watched(&pool), 900);
        assert!(
            pool.downcast_ref::<WatchedPool>()
                .is_some_and(WatchedPool::joins_fill_it)
        );
    }
}
