//! The comparison vectors of every candidate pair, held as one number per pair. Pairs share a
//! small set of patterns (their rule mask and their comparison levels: a few thousand distinct
//! ones among fifty million pairs), so each pair keeps the number of its pattern (2 bytes while there are at most 65,536) and the
//! pattern table keeps the levels and how many pairs have them. The pairs themselves are produced
//! again from the blocks ([`Candidates::for_each_pair`]) in the same order whenever they are needed.

use hashbrown::HashMap;

use crate::blocking::Candidates;
use crate::records::Records;
use crate::spec::Settings;
use crate::{Error, Result, compare};

/// One distinct comparison vector and the rules that found its pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Bit `r` set: rule `r`'s blocks hold the pairs.
    pub mask: u32,
    /// One level per comparison.
    pub levels: Box<[u8]>,
    /// Pairs with this pattern.
    pub count: u64,
}

/// The pattern of every candidate pair, in candidate order.
#[derive(Debug, Clone, Default)]
pub struct Compared {
    /// Distinct patterns, numbered in order of first appearance.
    pub patterns: Vec<Pattern>,
    /// Consecutive ranges of the candidates' units, each with the pattern number of every pair in
    /// it, in order: [`Compared::for_each_in_parts`] walks them on several threads. The numbers
    /// stay with the part that compared them (numbered again in place when the parts' patterns are
    /// merged), so they are never copied into one list: at ten million persons, 565 million pairs.
    parts: Vec<Walked>,
}

/// Equal when every pair has the same pattern, however the pairs were split to compare them.
impl PartialEq for Compared {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns && self.numbers().eq(other.numbers())
    }
}

impl Eq for Compared {}

/// One pattern number per pair: two bytes while there are at most 65,536 patterns (a few
/// thousand is usual: at a million persons, 49 million pairs share 2,772), four beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternNumbers {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Default for PatternNumbers {
    fn default() -> Self {
        PatternNumbers::Narrow(Vec::new())
    }
}

impl PatternNumbers {
    /// Adds `number`, widening to four bytes a number when it does not fit in two.
    fn push(&mut self, number: u32) {
        match self {
            PatternNumbers::Narrow(v) => match u16::try_from(number) {
                Ok(n) => v.push(n),
                Err(_) => {
                    let mut wide: Vec<u32> = v.iter().map(|n| u32::from(*n)).collect();
                    wide.push(number);
                    *self = PatternNumbers::Wide(wide);
                }
            },
            PatternNumbers::Wide(v) => v.push(number),
        }
    }

    fn get(&self, i: usize) -> Option<u32> {
        match self {
            PatternNumbers::Narrow(v) => v.get(i).map(|n| u32::from(*n)),
            PatternNumbers::Wide(v) => v.get(i).copied(),
        }
    }

    fn len(&self) -> usize {
        match self {
            PatternNumbers::Narrow(v) => v.len(),
            PatternNumbers::Wide(v) => v.len(),
        }
    }

    /// Every number, in order.
    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or(0))
    }

    /// Each number `n` replaced by `to[n]`, in place; four bytes a number when `wide`.
    fn renumber(self, to: &[u32], wide: bool) -> PatternNumbers {
        let new = |n: u32| to.get(n as usize).copied().unwrap_or(0);
        match self {
            PatternNumbers::Narrow(mut v) if !wide => {
                for n in &mut v {
                    *n = u16::try_from(new(u32::from(*n))).unwrap_or(u16::MAX);
                }
                PatternNumbers::Narrow(v)
            }
            PatternNumbers::Narrow(v) => {
                PatternNumbers::Wide(v.into_iter().map(|n| new(u32::from(n))).collect())
            }
            PatternNumbers::Wide(mut v) => {
                for n in &mut v {
                    *n = new(*n);
                }
                PatternNumbers::Wide(v)
            }
        }
    }
}

/// Patterns of one part of the pairs: numbered locally, merged in order afterwards.
#[derive(Default)]
struct Part {
    /// Pattern number by key (the mask's four bytes, then the levels).
    index: HashMap<Box<[u8]>, u32>,
    key: Vec<u8>,
    patterns: Vec<Pattern>,
    ids: PatternNumbers,
}

/// The lookup key of a pattern: the mask's four bytes, then the levels.
fn key_of(key: &mut Vec<u8>, mask: u32, levels: &[u8]) {
    key.clear();
    key.extend_from_slice(&mask.to_le_bytes());
    key.extend_from_slice(levels);
}

impl Part {
    fn add(&mut self, mask: u32, levels: &[u8]) {
        key_of(&mut self.key, mask, levels);
        // Looked up by a borrowed key: nearly every pair repeats a pattern already seen.
        let id = match self.index.get(self.key.as_slice()) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(self.patterns.len()).unwrap_or(u32::MAX);
                self.index.insert(self.key.as_slice().into(), id);
                self.patterns.push(Pattern {
                    mask,
                    levels: levels.into(),
                    count: 0,
                });
                id
            }
        };
        if let Some(p) = self.patterns.get_mut(id as usize) {
            p.count += 1;
        }
        self.ids.push(id);
    }
}

/// `work(i)` for every part `i` in `0..parts`, on `threads` threads taking the next part as they
/// finish one; the results in part order. `failed`: the error when a thread panicked.
fn on_threads<T: Send>(
    threads: usize,
    parts: usize,
    failed: &str,
    work: impl Fn(usize) -> T + Sync,
) -> Result<Vec<T>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<T>>> =
        (0..parts).map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.clamp(1, parts.max(1)))
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(slot) = slots.get(i) else { break };
                        let result = work(i);
                        if let Ok(mut slot) = slot.lock() {
                            *slot = Some(result);
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| Error::Internal(failed.into())))
    })?;
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .ok()
                .flatten()
                .ok_or_else(|| Error::Internal(format!("{failed}: a part was not done")))
        })
        .collect()
}

/// A part of the pairs: its range of the candidates' units and each pair's pattern number.
type Walked = (std::ops::Range<usize>, PatternNumbers);

/// Threads that walk the pairs: every core, at most 16.
fn walking_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 16)
}

/// Calls `f(state, a, b, number, pattern)` for the pairs of one part, in order.
fn walk_part<T>(
    candidates: &Candidates,
    units: &std::ops::Range<usize>,
    numbers: &PatternNumbers,
    patterns: &[Pattern],
    state: &mut T,
    f: &impl Fn(&mut T, u32, u32, u32, &Pattern),
) {
    let mut pair = 0;
    candidates.for_each_pair(units.clone(), |a, b, _| {
        if let Some(number) = numbers.get(pair)
            && let Some(p) = patterns.get(number as usize)
        {
            f(state, a, b, number, p);
        }
        pair += 1;
    });
}

impl Compared {
    /// Compares every candidate pair of `candidates`, on every core (at most 16 threads), each
    /// thread over its own consecutive blocks; the result does not depend on the number of threads.
    pub fn compare(
        settings: &Settings,
        records: &Records,
        candidates: &Candidates,
    ) -> Result<Compared> {
        let threads = walking_threads();
        // More parts than threads, so that a part of a few huge blocks does not hold up the rest.
        Compared::compare_in_parts(settings, records, candidates, threads, threads * 4)
    }

    /// [`Compared::compare`] on `threads` threads over `parts` parts of the blocks.
    fn compare_in_parts(
        settings: &Settings,
        records: &Records,
        candidates: &Candidates,
        threads: usize,
        parts: usize,
    ) -> Result<Compared> {
        let width = settings.comparisons.len();
        let ranges = candidates.partition(parts);
        let parts = on_threads(threads, ranges.len(), "a comparison thread failed", |i| {
            let mut part = Part::default();
            let mut vector = Vec::with_capacity(width);
            let mut names = compare::NameLevels::default();
            if let Some(range) = ranges.get(i) {
                candidates.for_each_pair(range.clone(), |a, b, mask| {
                    vector.clear();
                    names.vector(
                        &settings.comparisons,
                        records,
                        a as usize,
                        b as usize,
                        &mut vector,
                    );
                    part.add(mask, &vector);
                });
            }
            part
        })?;
        // The patterns first, numbered in order of first appearance; then the pairs' numbers, as
        // narrow as the number of patterns allows.
        let mut patterns = Vec::new();
        let mut index: HashMap<Box<[u8]>, u32> = HashMap::new();
        let mut key = Vec::new();
        let globals: Vec<Vec<u32>> = parts
            .iter()
            .map(|part| {
                part.patterns
                    .iter()
                    .map(|p| {
                        key_of(&mut key, p.mask, &p.levels);
                        let next = u32::try_from(patterns.len()).unwrap_or(u32::MAX);
                        let id = *index.entry(key.as_slice().into()).or_insert(next);
                        if id == next {
                            patterns.push(Pattern {
                                count: 0,
                                ..p.clone()
                            });
                        }
                        id
                    })
                    .collect()
            })
            .collect();
        let wide = patterns.len() > usize::from(u16::MAX) + 1;
        let mut out = Compared {
            patterns,
            parts: Vec::with_capacity(ranges.len()),
        };
        for ((part, global), range) in parts.into_iter().zip(globals).zip(ranges) {
            for (local, p) in part.patterns.iter().enumerate() {
                if let Some(g) = global
                    .get(local)
                    .and_then(|g| out.patterns.get_mut(*g as usize))
                {
                    g.count += p.count;
                }
            }
            out.parts.push((range, part.ids.renumber(&global, wide)));
        }
        let compared: usize = out.parts.iter().map(|(_, n)| n.len()).sum();
        if compared != candidates.len() {
            return Err(Error::Internal(format!(
                "{} candidate pairs but {compared} compared",
                candidates.len(),
            )));
        }
        Ok(out)
    }

    /// Patterns from explicit comparison vectors (`levels`, `width` per pair) and rule masks.
    pub fn from_levels(masks: &[u32], levels: &[u8], width: usize) -> Compared {
        let mut part = Part::default();
        for (mask, v) in masks.iter().zip(levels.chunks_exact(width.max(1))) {
            part.add(*mask, v);
        }
        Compared {
            parts: vec![(0..part.ids.len(), part.ids)],
            patterns: part.patterns,
        }
    }

    /// The pattern of pair `i`.
    pub fn pattern(&self, i: usize) -> Option<&Pattern> {
        let mut i = i;
        for (_, numbers) in &self.parts {
            if i < numbers.len() {
                return numbers.get(i).and_then(|id| self.patterns.get(id as usize));
            }
            i -= numbers.len();
        }
        None
    }

    /// Every pair's pattern number, in candidate order.
    fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.parts.iter().flat_map(|(_, numbers)| numbers.iter())
    }

    /// Walks the candidate pairs on every core (at most 16 threads) in the parts they were
    /// compared in: for each part, `start()` makes a state and `f(state, a, b, number, pattern)`
    /// is called for the part's pairs in order. The states come back in the order of the parts, so
    /// whatever is gathered in them and joined in that order is what one walk in order gathers.
    /// `candidates` must be those the pairs were compared from.
    pub fn for_each_in_parts<T: Send>(
        &self,
        candidates: &Candidates,
        start: impl Fn() -> T + Sync,
        f: impl Fn(&mut T, u32, u32, u32, &Pattern) + Sync,
    ) -> Result<Vec<T>> {
        on_threads(
            walking_threads(),
            self.parts.len(),
            "a thread walking the pairs failed",
            |i| {
                let mut state = start();
                if let Some((units, numbers)) = self.parts.get(i) {
                    walk_part(candidates, units, numbers, &self.patterns, &mut state, &f);
                }
                state
            },
        )
    }

    /// [`Compared::for_each_in_parts`] for the last walk: each part's pattern numbers are let go
    /// as soon as the part has been walked, so that what the walk gathers grows as the numbers
    /// shrink instead of on top of them (at ten million persons, 1.1 GB of numbers beside 1.2 GB
    /// of links). Returns the states in the order of the parts, and the distinct patterns.
    pub fn into_each_part<T: Send>(
        self,
        candidates: &Candidates,
        start: impl Fn() -> T + Sync,
        f: impl Fn(&mut T, u32, u32, u32, &Pattern) + Sync,
    ) -> Result<(Vec<T>, Vec<Pattern>)> {
        let Compared { patterns, parts } = self;
        let parts: Vec<std::sync::Mutex<Option<Walked>>> = parts
            .into_iter()
            .map(|part| std::sync::Mutex::new(Some(part)))
            .collect();
        let states = on_threads(
            walking_threads(),
            parts.len(),
            "a thread walking the pairs failed",
            |i| {
                let mut state = start();
                let part = parts
                    .get(i)
                    .and_then(|slot| slot.lock().ok().and_then(|mut slot| slot.take()));
                if let Some((units, numbers)) = part {
                    walk_part(candidates, &units, &numbers, &patterns, &mut state, &f);
                }
                state
            },
        )?;
        Ok((states, patterns))
    }

    /// Calls `f(a, b, number, pattern)` for every candidate pair, in order (`number`: the
    /// pattern's index in `patterns`): one walk on one thread, which the tests compare the walks
    /// in parts with.
    #[cfg(test)]
    pub(crate) fn for_each(
        &self,
        candidates: &Candidates,
        mut f: impl FnMut(u32, u32, u32, &Pattern),
    ) {
        for (units, numbers) in &self.parts {
            let mut i = 0usize;
            candidates.for_each_pair(units.clone(), |a, b, _| {
                if let Some(number) = numbers.get(i)
                    && let Some(p) = self.patterns.get(number as usize)
                {
                    f(a, b, number, p);
                }
                i += 1;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pair_keeps_the_number_of_its_distinct_pattern() {
        let c = Compared::from_levels(&[1, 1, 2, 1], &[1, 3, 1, 3, 1, 3, 2, 0], 2);
        assert_eq!(c.numbers().collect::<Vec<_>>(), vec![0, 0, 1, 2]);
        assert!(matches!(c.parts[0].1, PatternNumbers::Narrow(_)));
        assert_eq!(c.patterns.len(), 3);
        assert_eq!(c.patterns[0].count, 2);
        assert_eq!(&*c.patterns[1].levels, &[1, 3]);
        assert_eq!(c.patterns[1].mask, 2);
        assert_eq!(c.pattern(3).map(|p| &*p.levels), Some(&[2u8, 0][..]));
    }

    #[test]
    fn numbers_widen_past_65536_patterns_and_keep_every_pair_its_own() {
        // 70,000 distinct patterns, the first one repeated at the end.
        let n = 70_000usize;
        let mut levels = Vec::with_capacity((n + 1) * 3);
        for i in (0..n).chain([0]) {
            levels.extend([(i % 256) as u8, (i / 256 % 256) as u8, (i / 65_536) as u8]);
        }
        let c = Compared::from_levels(&vec![1; n + 1], &levels, 3);
        assert_eq!(c.patterns.len(), n);
        assert!(matches!(c.parts[0].1, PatternNumbers::Wide(_)));
        let numbers: Vec<u32> = c.numbers().collect();
        assert_eq!(numbers.len(), n + 1);
        assert_eq!(
            (numbers[65_535], numbers[65_536], numbers[n]),
            (65_535, 65_536, 0)
        );
        assert_eq!(
            c.pattern(69_999).map(|p| &*p.levels),
            Some(&[111u8, 17, 1][..])
        );
        assert_eq!(c.patterns[0].count, 2);
        // Numbered again into a wide table, a narrow part keeps each pair's pattern.
        let narrow = PatternNumbers::Narrow(vec![2, 0, 1]).renumber(&[70_000, 5, 65_536], true);
        assert_eq!(narrow, PatternNumbers::Wide(vec![65_536, 70_000, 5]));
    }

    #[test]
    fn every_pair_gets_its_own_levels_however_the_blocks_are_split() -> Result<()> {
        let spec = crate::IdentitySpec {
            blocking_rules: Some(vec![vec!["last_name".into()], vec!["postcode".into()]]),
            ..crate::IdentitySpec::default()
        };
        let settings = spec.validate()?;
        let mut records = Records::new(&settings);
        let people = [
            ("ann", "lee", "LS1 4AB"),
            ("anne", "lee", "LS1 4AB"),
            ("bob", "lee", "M1 1AA"),
            ("rob", "stone", "M1 1AA"),
            ("amy", "stone", "LS1 4AB"),
            ("ann", "lee", "M1 1AA"),
            ("joe", "lee", "LS1 4AB"),
        ];
        for (i, (first, last, postcode)) in people.iter().enumerate() {
            let row = [
                Some(*first),
                Some(*last),
                None,
                None,
                Some(*postcode),
                None,
                None,
                None,
            ];
            records.push(&i.to_string(), "s", &row);
        }
        let candidates = crate::blocking::candidates(&settings, &records);
        let pairs = candidates.collect_pairs();
        assert!(pairs.len() > 10, "{pairs:?}");
        let whole = Compared::compare_in_parts(&settings, &records, &candidates, 1, 1)?;
        for (i, (a, b, mask)) in pairs.iter().enumerate() {
            let mut expected = Vec::new();
            compare::vector(
                &settings.comparisons,
                &records,
                *a as usize,
                *b as usize,
                &mut expected,
            );
            let pattern = whole
                .pattern(i)
                .ok_or(Error::Internal("no pattern".into()))?;
            assert_eq!((&*pattern.levels, pattern.mask), (&expected[..], *mask));
        }
        assert_eq!(
            whole.patterns.iter().map(|p| p.count).sum::<u64>(),
            pairs.len() as u64
        );
        for (threads, parts) in [(2, 3), (3, 7), (4, 50)] {
            let split =
                Compared::compare_in_parts(&settings, &records, &candidates, threads, parts)?;
            assert_eq!(split, whole, "{threads} threads, {parts} parts");
            // Walked part by part on several threads and joined in order: the pairs of one walk.
            let mut walked = Vec::new();
            whole.for_each(&candidates, |a, b, number, _| walked.push((a, b, number)));
            let joined: Vec<(u32, u32, u32)> = split
                .for_each_in_parts(&candidates, Vec::new, |seen, a, b, number, _| {
                    seen.push((a, b, number));
                })?
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(joined, walked, "{threads} threads, {parts} parts");
            // The last walk, letting each part's numbers go as it is walked: the same pairs, and
            // the patterns handed back.
            let patterns = split.patterns.clone();
            let (states, kept) =
                split.into_each_part(&candidates, Vec::new, |seen, a, b, n, _| {
                    seen.push((a, b, n));
                })?;
            assert_eq!(kept, patterns);
            assert_eq!(states.concat(), walked, "{threads} threads, {parts} parts");
        }
        Ok(())
    }
}
