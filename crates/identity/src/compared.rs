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
#[derive(Debug, Default)]
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
/// thousand is usual: at a million persons, 49 million pairs share 2,772), four beyond; held in
/// memory, or written to a temporary file and read back in order when the pairs are walked.
#[derive(Debug)]
enum PatternNumbers {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
    /// `len` numbers of two bytes (four when `wide`), little-endian, in an unnamed temporary file
    /// (gone with the process, however it ends). A number `n` in the file is pattern `to[n]` (`n`
    /// itself when `to` is empty): a part is written as soon as it is compared, numbered by its
    /// own patterns, and never rewritten when the parts' patterns are numbered together.
    Spilled {
        file: std::fs::File,
        len: usize,
        wide: bool,
        to: Vec<u32>,
    },
}

/// Equal when they hold the same numbers, wherever they are held (a file that cannot be read is
/// equal to nothing).
impl PartialEq for PatternNumbers {
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() {
            return false;
        }
        let (mut a, mut b) = (self.reader(), other.reader());
        let same = a.by_ref().eq(b.by_ref());
        same && a.error.is_none() && b.error.is_none()
    }
}

impl Eq for PatternNumbers {}

/// The bytes of the numbers read from a spilled part at a time.
const SPILL_CHUNK: usize = 1 << 18;

/// A part's pattern numbers in order, from memory or from its file; a failed read ends the
/// numbers early and is kept in `error`.
struct NumberReader<'a> {
    numbers: &'a PatternNumbers,
    at: usize,
    file: Option<std::io::BufReader<&'a std::fs::File>>,
    error: Option<std::io::Error>,
}

impl Iterator for NumberReader<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        use std::io::Read;
        let number = match self.numbers {
            PatternNumbers::Narrow(v) => v.get(self.at).map(|n| u32::from(*n)),
            PatternNumbers::Wide(v) => v.get(self.at).copied(),
            PatternNumbers::Spilled { len, wide, to, .. } => {
                if self.at >= *len || self.error.is_some() {
                    return None;
                }
                let file = self.file.as_mut()?;
                let mut bytes = [0u8; 4];
                let width = if *wide { 4 } else { 2 };
                match file.read_exact(bytes.get_mut(..width)?) {
                    Ok(()) => {
                        let n = u32::from_le_bytes(bytes);
                        Some(if to.is_empty() {
                            n
                        } else {
                            to.get(n as usize).copied().unwrap_or(u32::MAX)
                        })
                    }
                    Err(e) => {
                        self.error = Some(e);
                        None
                    }
                }
            }
        };
        self.at += usize::from(number.is_some());
        number
    }
}

impl Default for PatternNumbers {
    fn default() -> Self {
        PatternNumbers::Narrow(Vec::new())
    }
}

impl PatternNumbers {
    /// Adds `number`, widening to four bytes a number when it does not fit in two (held numbers
    /// only: they are spilled once complete).
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
            PatternNumbers::Spilled { .. } => {}
        }
    }

    fn len(&self) -> usize {
        match self {
            PatternNumbers::Narrow(v) => v.len(),
            PatternNumbers::Wide(v) => v.len(),
            PatternNumbers::Spilled { len, .. } => *len,
        }
    }

    /// Every number, in order (from the start of the file when spilled).
    fn reader(&self) -> NumberReader<'_> {
        use std::io::Seek;
        let mut reader = NumberReader {
            numbers: self,
            at: 0,
            file: None,
            error: None,
        };
        if let PatternNumbers::Spilled { file, .. } = self {
            let mut handle = file;
            match handle.seek(std::io::SeekFrom::Start(0)) {
                Ok(_) => reader.file = Some(std::io::BufReader::with_capacity(SPILL_CHUNK, file)),
                Err(e) => reader.error = Some(e),
            }
        }
        reader
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
            PatternNumbers::Spilled {
                file,
                len,
                wide,
                to: written,
            } => {
                let to = if written.is_empty() {
                    to.to_vec()
                } else {
                    written.iter().map(|n| new(*n)).collect()
                };
                PatternNumbers::Spilled {
                    file,
                    len,
                    wide,
                    to,
                }
            }
        }
    }

    /// The numbers written to an unnamed file in `dir` and let go from memory.
    fn spill(self, dir: &std::path::Path) -> std::io::Result<PatternNumbers> {
        use std::io::Write;
        let file = tempfile::tempfile_in(dir)?;
        let mut out = std::io::BufWriter::with_capacity(SPILL_CHUNK, &file);
        let (len, wide) = match &self {
            PatternNumbers::Spilled { .. } => return Ok(self),
            PatternNumbers::Narrow(v) => (write_le(&mut out, v, u16::to_le_bytes)?, false),
            PatternNumbers::Wide(v) => (write_le(&mut out, v, u32::to_le_bytes)?, true),
        };
        out.flush()?;
        drop(out);
        Ok(PatternNumbers::Spilled {
            file,
            len,
            wide,
            to: Vec::new(),
        })
    }
}

/// Writes `numbers` as `N` little-endian bytes each, a chunk at a time; returns how many.
pub(crate) fn write_le<T: Copy, const N: usize>(
    out: &mut impl std::io::Write,
    numbers: &[T],
    le: impl Fn(T) -> [u8; N],
) -> std::io::Result<usize> {
    let mut bytes = Vec::with_capacity(SPILL_CHUNK);
    for chunk in numbers.chunks(SPILL_CHUNK / N) {
        bytes.clear();
        bytes.extend(chunk.iter().flat_map(|n| le(*n)));
        out.write_all(&bytes)?;
    }
    Ok(numbers.len())
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
/// At most about this many candidate pairs make one part of the comparison when each part's
/// pattern numbers go to disk once it is compared ([`comparison_parts`]).
const SPILLED_PART_PAIRS: usize = 1 << 24;

/// How many parts [`Compared::compare`] cuts `pairs` candidate pairs into for `threads` threads:
/// four a thread, so that a part of a few huge blocks does not hold up the rest; and, when the
/// numbers are spilled (`spilling`), enough that a part has at most [`SPILLED_PART_PAIRS`] pairs:
/// a part holds its numbers (two bytes a pair, in a vector that doubles as it grows) until it
/// is written, so each thread's part is what the comparison holds at once. At ten million
/// persons 565 million pairs in 8 parts held up to 280 MB a thread (the step peaked in the
/// comparison at 3,954 to 4,208 MiB under a limit of 4,096); in 34 parts, 64 MB.
fn comparison_parts(threads: usize, pairs: usize, spilling: bool) -> usize {
    let spread = threads.max(1) * 4;
    if spilling {
        spread.max(pairs.div_ceil(SPILLED_PART_PAIRS))
    } else {
        spread
    }
}

fn walking_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 16)
}

/// Calls `f(state, a, b, number, pattern)` for the pairs of one part, in order. Fails when the
/// part's spilled numbers cannot be read back, or are fewer than its pairs.
fn walk_part<T>(
    candidates: &Candidates,
    units: &std::ops::Range<usize>,
    numbers: &PatternNumbers,
    patterns: &[Pattern],
    state: &mut T,
    f: &impl Fn(&mut T, u32, u32, u32, &Pattern),
) -> Result<()> {
    let mut reader = numbers.reader();
    let mut pairs = 0usize;
    candidates.for_each_pair(units.clone(), |a, b| {
        if let Some(number) = reader.next()
            && let Some(p) = patterns.get(number as usize)
        {
            f(state, a, b, number, p);
        }
        pairs += 1;
    });
    if let Some(e) = reader.error {
        // Only the identity step spills, to the system's temporary directory.
        return Err(Error::spilled_patterns(None)(e));
    }
    if pairs != numbers.len() {
        return Err(Error::Internal(format!(
            "{pairs} candidate pairs walked but {} pattern numbers held",
            numbers.len()
        )));
    }
    Ok(())
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
        let spill = settings.spill_dir.as_deref();
        Compared::compare_in_parts(
            settings,
            records,
            candidates,
            threads,
            comparison_parts(threads, candidates.len(), spill.is_some()),
            spill,
        )
    }

    /// [`Compared::compare`] on `threads` threads over `parts` parts of the blocks; with `spill`,
    /// each part's numbers are written to a file there as soon as the part is compared.
    fn compare_in_parts(
        settings: &Settings,
        records: &Records,
        candidates: &Candidates,
        threads: usize,
        parts: usize,
        spill: Option<&std::path::Path>,
    ) -> Result<Compared> {
        let width = settings.comparisons.len();
        let ranges = candidates.partition(parts);
        let parts = on_threads(threads, ranges.len(), "a comparison thread failed", |i| {
            let mut part = Part::default();
            let mut vector = Vec::with_capacity(width);
            let mut names = compare::NameLevels::default();
            if let Some(range) = ranges.get(i) {
                candidates.for_each_pair_with_mask(range.clone(), |a, b, mask| {
                    vector.clear();
                    names.vector(
                        &settings.comparisons,
                        records,
                        a as usize,
                        b as usize,
                        &mut vector,
                    );
                    part.add(mask, &vector);
                })?;
            }
            if let Some(dir) = spill {
                part.ids = std::mem::take(&mut part.ids)
                    .spill(dir)
                    .map_err(Error::spilled_patterns(Some(dir)))?;
            }
            Ok(part)
        })?
        .into_iter()
        .collect::<Result<Vec<Part>>>()?;
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

    /// Whether the pattern numbers are held on disk ([`Settings::spill_dir`]).
    #[cfg(test)]
    fn is_spilled(&self) -> bool {
        self.parts
            .iter()
            .any(|(_, n)| matches!(n, PatternNumbers::Spilled { .. }))
    }

    /// The pattern of pair `i`.
    pub fn pattern(&self, i: usize) -> Option<&Pattern> {
        let mut i = i;
        for (_, numbers) in &self.parts {
            if i < numbers.len() {
                return numbers
                    .reader()
                    .nth(i)
                    .and_then(|id| self.patterns.get(id as usize));
            }
            i -= numbers.len();
        }
        None
    }

    /// Every pair's pattern number, in candidate order.
    fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.parts.iter().flat_map(|(_, numbers)| numbers.reader())
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
                    walk_part(candidates, units, numbers, &self.patterns, &mut state, &f)?;
                }
                Ok(state)
            },
        )?
        .into_iter()
        .collect()
    }

    /// [`Compared::for_each_in_parts`] for the last walk: each part's pattern numbers are let go
    /// as soon as the part has been walked, so that what the walk gathers grows as the numbers
    /// shrink instead of on top of them (at ten million persons, 1.1 GB of numbers beside 1.2 GB
    /// of links). `end` is called on each part's state once the part is walked (to shrink what it
    /// gathered to its size while the other parts are walked). Returns the states in the order of
    /// the parts, and the distinct patterns.
    pub fn into_each_part<T: Send>(
        self,
        candidates: &Candidates,
        start: impl Fn() -> T + Sync,
        f: impl Fn(&mut T, u32, u32, u32, &Pattern) + Sync,
        end: impl Fn(&mut T) + Sync,
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
                    walk_part(candidates, &units, &numbers, &patterns, &mut state, &f)?;
                }
                end(&mut state);
                Ok(state)
            },
        )?
        .into_iter()
        .collect::<Result<Vec<T>>>()?;
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
            let mut numbers = numbers.reader();
            candidates.for_each_pair(units.clone(), |a, b| {
                if let Some(number) = numbers.next()
                    && let Some(p) = self.patterns.get(number as usize)
                {
                    f(a, b, number, p);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilled_comparisons_run_in_parts_of_at_most_sixteen_million_pairs() {
        // Four parts a thread whatever the pairs when the numbers stay in memory.
        assert_eq!(comparison_parts(2, 565_000_000, false), 8);
        assert_eq!(comparison_parts(0, 10, false), 4);
        // Spilled: four a thread while the parts are small (one million persons, 56 M pairs)...
        assert_eq!(comparison_parts(2, 56_000_000, true), 8);
        // ...and no part past 2^24 pairs at ten million (565 M pairs).
        let parts = comparison_parts(2, 565_656_939, true);
        assert_eq!(parts, 34);
        assert!(565_656_939usize.div_ceil(parts) <= SPILLED_PART_PAIRS);
    }

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
        let pairs = candidates.collect_pairs()?;
        assert!(pairs.len() > 10, "{pairs:?}");
        let whole = Compared::compare_in_parts(&settings, &records, &candidates, 1, 1, None)?;
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
                Compared::compare_in_parts(&settings, &records, &candidates, threads, parts, None)?;
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
            let (states, kept) = split.into_each_part(
                &candidates,
                Vec::new,
                |seen, a, b, n, _| seen.push((a, b, n)),
                Vec::shrink_to_fit,
            )?;
            assert_eq!(kept, patterns);
            assert!(
                states.iter().all(|s| s.capacity() == s.len()),
                "each part ended"
            );
            assert_eq!(states.concat(), walked, "{threads} threads, {parts} parts");
        }
        // Spilled to files, the numbers read back are the same, walk after walk.
        let dir = tempfile::tempdir().map_err(Error::spilled_patterns(None))?;
        let mut walked = Vec::new();
        whole.for_each(&candidates, |a, b, number, _| walked.push((a, b, number)));
        for (threads, parts) in [(1, 1), (3, 7)] {
            let spilled = Compared::compare_in_parts(
                &settings,
                &records,
                &candidates,
                threads,
                parts,
                Some(dir.path()),
            )?;
            assert!(spilled.is_spilled() && !whole.is_spilled());
            assert_eq!(spilled, whole);
            assert_eq!(spilled, whole, "read again from the start");
            let mut once = Vec::new();
            spilled.for_each(&candidates, |a, b, number, _| once.push((a, b, number)));
            assert_eq!(once, walked);
            let joined: Vec<(u32, u32, u32)> = spilled
                .for_each_in_parts(&candidates, Vec::new, |seen, a, b, number, _| {
                    seen.push((a, b, number));
                })?
                .concat();
            assert_eq!(joined, walked, "{threads} threads, {parts} parts");
            let (states, _) = spilled.into_each_part(
                &candidates,
                Vec::new,
                |seen, a, b, n, _| seen.push((a, b, n)),
                |_| {},
            )?;
            assert_eq!(states.concat(), walked, "{threads} threads, {parts} parts");
        }
        Ok(())
    }

    #[test]
    fn a_spilled_part_whose_file_lost_its_numbers_fails_the_walk_instead_of_skipping_pairs()
    -> Result<()> {
        let candidates = Candidates::from_pairs(vec![(0, 1, 1), (0, 2, 1), (1, 2, 1)]);
        let held = Compared::from_levels(&[1, 1, 1], &[1, 2, 1], 1);
        let dir = tempfile::tempdir().map_err(Error::spilled_patterns(None))?;
        let Compared { patterns, parts } = held;
        let parts = parts
            .into_iter()
            .map(|(units, numbers)| {
                Ok((
                    units,
                    numbers
                        .spill(dir.path())
                        .map_err(Error::spilled_patterns(None))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let spilled = Compared { patterns, parts };
        let mut walked = 0;
        spilled.for_each(&candidates, |_, _, _, _| walked += 1);
        assert_eq!(walked, 3);
        // The same part with a file holding one number of its three.
        let Compared {
            patterns,
            mut parts,
        } = spilled;
        let (units, numbers) = parts.remove(0);
        let PatternNumbers::Spilled {
            file,
            len,
            wide,
            to,
        } = numbers
        else {
            return Err(Error::Internal("not spilled".into()));
        };
        file.set_len(2).map_err(Error::spilled_patterns(None))?;
        let short = Compared {
            patterns,
            parts: vec![(
                units,
                PatternNumbers::Spilled {
                    file,
                    len,
                    wide,
                    to,
                },
            )],
        };
        let walk = short.for_each_in_parts(&candidates, || 0usize, |n, _, _, _, _| *n += 1);
        assert!(
            matches!(&walk, Err(Error::Spill { source: e, .. }) if e.kind() == std::io::ErrorKind::UnexpectedEof),
            "{walk:?}"
        );
        Ok(())
    }
}
