//! Blocking: the candidate pairs, from a union of rules. Records agreeing on every key of a rule
//! (none of them null) fall in one block and each pair in it is a candidate, once, credited to the
//! first rule that produces it. A block larger than the cap (`max_block_size`, about half as many
//! pairs per record) is split by the next key of `blocking_refinements` (the first letter of the
//! first name, the birth year, ...) until its parts fit, so that a postcode of thousands of people
//! refines `postcode + last_name:1` instead of losing the rule; only a block that no refinement
//! brings under the cap is skipped and reported. Records without the refinement's value form a
//! part of their own.
//!
//! A rule with `without:COLUMN` keeps, of its blocks' pairs, only those where one record or both
//! lack COLUMN: `first_name + last_name + without:postcode` compares a full name across the
//! country only for the records that have no postcode (a service ticket with a name and a phone),
//! leaving the records that have one to the rules that compare them within their postcode. Its
//! blocks are held to the cap by the pairs they make, not by their size.

use std::borrow::Cow;

use hashbrown::HashMap;

use crate::records::{NULL, Records};
use crate::spec::{BlockingRule, Settings};

/// Keys per rule at most.
pub const MAX_KEYS: usize = 4;
/// Rules at most (one bit each in a 32-bit mask).
pub const MAX_RULES: usize = 32;

/// What one rule produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleReport {
    pub rule: String,
    /// Candidate pairs first produced by this rule.
    pub pairs: u64,
    /// Blocks of two or more records.
    pub blocks: u64,
    /// Blocks over the cap, skipped, and the records in them.
    pub skipped_blocks: u64,
    pub skipped_records: u64,
    /// The largest skipped block: its key (masked) and size.
    pub largest_skipped: Option<(String, u64)>,
    /// Blocks over the cap split by a refinement key (each split counted once).
    #[serde(default)]
    pub refined_blocks: u64,
    /// A rule of `attach_blocking_rules`: its pairs only attach lone records.
    #[serde(default)]
    pub attach_only: bool,
}

/// The candidate pairs (`a < b`), each with the mask of the rules whose blocks hold both records
/// (bit `r` set: rule `r` puts both records in one kept block).
///
/// The pairs are not held: fifty million of them would take 400 MB before a single comparison.
/// The kept blocks are (each record in at most one block per rule), and the pairs are produced
/// from them again, in the same order, whenever they are needed: rule by rule, block by block,
/// each pair once, under the first rule whose block holds it. Which pairs of the blocks are
/// candidates is decided once, as the blocks are made, and kept as a bit per pair; a pair's mask
/// needs each record's block under every rule, which is let go once the pairs are compared
/// ([`Candidates::let_rule_blocks_go`]). [`Candidates::from_pairs`] takes a list of pairs
/// instead, for callers that have their own.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    pub reports: Vec<RuleReport>,
    /// Records in no kept block of any rule: every rule's key null or its block skipped.
    pub records_without_rule: u64,
    pairs: u64,
    source: PairSource,
}

#[derive(Debug, Clone)]
enum PairSource {
    Blocks {
        /// Every kept block, rule by rule.
        kept: KeptBlocks,
        /// Which pairs of the kept blocks are candidates.
        candidate: PairBits,
        /// What the pairs' rule masks are found from, until [`Candidates::let_rule_blocks_go`].
        rules: Option<RuleBlocks>,
    },
    Listed(Vec<(u32, u32, u32)>),
}

/// What a pair's rule mask is found from: each record's kept block under each rule.
#[derive(Debug, Clone)]
struct RuleBlocks {
    /// Per rule, each record's kept block (`NULL`: none).
    block_of: Vec<Vec<u32>>,
    /// Per rule with `without:`, each record's lack of that column: the rule's pairs are those
    /// with one record or both lacking it.
    lacking: Vec<Option<Vec<bool>>>,
}

impl RuleBlocks {
    /// Whether rule `r`'s `without:` lets the pair `a`, `b` through.
    fn passes(&self, r: usize, a: usize, b: usize) -> bool {
        self.lacking
            .get(r)
            .and_then(Option::as_ref)
            .is_none_or(|l| l.get(a) == Some(&true) || l.get(b) == Some(&true))
    }

    /// Whether rule `r` puts `a` and `b` in one kept block and passes the pair.
    fn shares(&self, r: usize, a: usize, b: usize) -> bool {
        self.block_of.get(r).is_some_and(|of| {
            let x = of.get(a).copied().unwrap_or(NULL);
            x != NULL && Some(&x) == of.get(b) && self.passes(r, a, b)
        })
    }

    /// Whether the pair `a`, `b` of a block of rule `r` is a candidate of that rule: its
    /// `without:` passes it and no earlier rule holds it.
    fn is_candidate(&self, r: usize, a: usize, b: usize) -> bool {
        self.passes(r, a, b) && !(0..r).any(|e| self.shares(e, a, b))
    }

    /// The mask of a candidate pair of a block of rule `r`: `r` and every later rule holding it.
    fn mask(&self, r: usize, a: usize, b: usize) -> u32 {
        (r + 1..self.block_of.len())
            .filter(|e| self.shares(*e, a, b))
            .fold(1u32 << r, |m, e| m | (1 << e))
    }
}

/// One bit per pair of the kept blocks, in block order (within a block, as the pairs of its
/// members are walked): set when the pair is a candidate. It lets the walks after comparing skip
/// the pairs an earlier rule holds without each record's block under every rule (at ten million
/// persons, 580 MB of block numbers against 80 MB of bits).
#[derive(Debug, Clone, Default)]
struct PairBits {
    words: Vec<u64>,
    /// The first bit of every `BITS_STRIDE`-th block.
    firsts: Vec<u64>,
}

/// Blocks between two of [`PairBits`]'s known first bits.
const BITS_STRIDE: usize = 64;

/// The pairs of a block of `n` records.
fn pairs_of(n: usize) -> u64 {
    let n = n as u64;
    n * n.saturating_sub(1) / 2
}

impl PairBits {
    /// The bits of `kept`'s pairs, `candidate(rule, a, b)` deciding each.
    fn of(kept: &KeptBlocks, mut candidate: impl FnMut(usize, usize, usize) -> bool) -> PairBits {
        let mut bits = PairBits::default();
        let mut first = 0u64;
        for k in 0..kept.len() {
            if k % BITS_STRIDE == 0 {
                bits.firsts.push(first);
            }
            first += pairs_of(kept.block(k).1.len());
        }
        let mut at = 0u64;
        kept.each_pair(0..kept.len(), |r, a, b| {
            if at.is_multiple_of(64) {
                bits.words.push(0);
            }
            if candidate(r, a as usize, b as usize)
                && let Some(w) = bits.words.last_mut()
            {
                *w |= 1 << (at % 64);
            }
            at += 1;
        });
        bits.words.shrink_to_fit();
        bits
    }

    /// The first bit of block `k`.
    fn first_of(&self, kept: &KeptBlocks, k: usize) -> u64 {
        let from = k / BITS_STRIDE * BITS_STRIDE;
        let known = self.firsts.get(k / BITS_STRIDE).copied().unwrap_or(0);
        known
            + (from..k)
                .map(|u| pairs_of(kept.block(u).1.len()))
                .sum::<u64>()
    }

    fn get(&self, bit: u64) -> bool {
        self.words
            .get((bit / 64) as usize)
            .is_some_and(|w| w >> (bit % 64) & 1 == 1)
    }
}

impl Default for PairSource {
    fn default() -> Self {
        PairSource::Listed(Vec::new())
    }
}

impl Candidates {
    /// Candidates from a list of pairs `(a, b, rule mask)`, in that order.
    pub fn from_pairs(pairs: Vec<(u32, u32, u32)>) -> Candidates {
        Candidates {
            pairs: pairs.len() as u64,
            source: PairSource::Listed(pairs),
            ..Candidates::default()
        }
    }

    /// How many candidate pairs there are.
    pub fn len(&self) -> usize {
        usize::try_from(self.pairs).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.pairs == 0
    }

    /// The units the pairs come in (blocks, or listed pairs): [`Candidates::for_each_pair`] takes
    /// a range of them.
    pub fn units(&self) -> usize {
        match &self.source {
            PairSource::Blocks { kept, .. } => kept.len(),
            PairSource::Listed(p) => p.len(),
        }
    }

    /// Splits the units into at most `parts` consecutive ranges of about as many pairs each.
    pub fn partition(&self, parts: usize) -> Vec<std::ops::Range<usize>> {
        let units = self.units();
        let size = |u: usize| -> u64 {
            match &self.source {
                PairSource::Blocks { kept, .. } => pairs_of(kept.block(u).1.len()),
                PairSource::Listed(_) => 1,
            }
        };
        let total: u64 = (0..units).map(size).sum();
        let share = total.div_ceil(parts.max(1) as u64).max(1);
        let mut out = Vec::with_capacity(parts);
        let (mut start, mut sum) = (0usize, 0u64);
        for u in 0..units {
            sum += size(u);
            if sum >= share {
                out.push(start..u + 1);
                start = u + 1;
                sum = 0;
            }
        }
        if start < units || out.is_empty() {
            out.push(start..units);
        }
        out
    }

    /// Calls `f(a, b, mask)` for every candidate pair of the units in `units`, in order. Fails
    /// once the rules' blocks are let go ([`Candidates::let_rule_blocks_go`]): the masks are
    /// found from them.
    pub fn for_each_pair_with_mask(
        &self,
        units: std::ops::Range<usize>,
        mut f: impl FnMut(u32, u32, u32),
    ) -> crate::Result<()> {
        match &self.source {
            PairSource::Listed(pairs) => {
                for &(a, b, mask) in pairs.get(units).unwrap_or(&[]) {
                    f(a, b, mask);
                }
            }
            PairSource::Blocks {
                rules: Some(rules), ..
            } => self.walk_blocks(units, |r, a, b| {
                f(a, b, rules.mask(r, a as usize, b as usize));
            }),
            PairSource::Blocks { rules: None, .. } => {
                return Err(crate::Error::Internal(
                    "the candidate pairs' rule masks were asked for after their blocks were let go"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Calls `f(a, b)` for every candidate pair of the units in `units`, in order.
    pub fn for_each_pair(&self, units: std::ops::Range<usize>, mut f: impl FnMut(u32, u32)) {
        match &self.source {
            PairSource::Listed(pairs) => {
                for &(a, b, _) in pairs.get(units).unwrap_or(&[]) {
                    f(a, b);
                }
            }
            PairSource::Blocks { .. } => self.walk_blocks(units, |_, a, b| f(a, b)),
        }
    }

    /// Calls `f(rule, a, b)` for every candidate pair of the kept blocks `units`, in order.
    fn walk_blocks(&self, units: std::ops::Range<usize>, mut f: impl FnMut(usize, u32, u32)) {
        let PairSource::Blocks {
            kept, candidate, ..
        } = &self.source
        else {
            return;
        };
        let mut bit = candidate.first_of(kept, units.start);
        kept.each_pair(units, |r, a, b| {
            if candidate.get(bit) {
                f(r, a, b);
            }
            bit += 1;
        });
    }

    /// Lets go of what the pairs' rule masks are found from (each record's block under every
    /// rule), once the pairs are compared: the pairs can still be walked, without their masks.
    pub fn let_rule_blocks_go(&mut self) {
        if let PairSource::Blocks { rules, .. } = &mut self.source {
            *rules = None;
        }
    }

    /// Every candidate pair `(a, b, mask)` in order (for tests and small inputs: this holds them).
    pub fn collect_pairs(&self) -> crate::Result<Vec<(u32, u32, u32)>> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each_pair_with_mask(0..self.units(), |a, b, m| out.push((a, b, m)))?;
        Ok(out)
    }
}

/// The code of each record's value of one key (its prefix when the key has one), `NULL` when the
/// value is missing or the column is not compared.
fn key_codes<'r>(
    key: &crate::spec::BlockingKey,
    settings: &Settings,
    records: &'r Records,
) -> Cow<'r, [u32]> {
    let Some(col) = settings
        .comparisons
        .iter()
        .position(|c| c.column == key.column)
        .and_then(|i| records.columns.get(i))
    else {
        return Cow::Owned(vec![NULL; records.len()]);
    };
    match key.prefix {
        None => Cow::Borrowed(&col.codes),
        Some(n) => {
            let mut ids: HashMap<String, u32> = HashMap::new();
            let prefix_of: Vec<u32> = col
                .values
                .iter()
                .map(|v| {
                    let p: String = v.chars().take(n).collect();
                    let next = u32::try_from(ids.len()).unwrap_or(NULL - 1);
                    *ids.entry(p).or_insert(next)
                })
                .collect();
            Cow::Owned(
                col.codes
                    .iter()
                    .map(|c| prefix_of.get(*c as usize).copied().unwrap_or(NULL))
                    .collect(),
            )
        }
    }
}

/// The codes of each key of `rule`, one per record ([`NULL`]: missing).
fn rule_parts<'r>(
    rule: &BlockingRule,
    settings: &Settings,
    records: &'r Records,
) -> Vec<Cow<'r, [u32]>> {
    rule.keys
        .iter()
        .take(MAX_KEYS)
        .map(|k| key_codes(k, settings, records))
        .collect()
}

/// The records that have every key of a rule (`parts`, from [`rule_parts`]), in the order of
/// their keys (the first key's code, then the second's, ...) and then of their numbers. Sorted by
/// counting, one key at a time from the last (each pass keeps the order of the one before): a
/// number a record and a count a value, where a list of (key, record) to sort took twenty bytes a
/// record (at ten million persons, 580 MB for one rule).
fn rule_order(parts: &[Cow<'_, [u32]>], records: usize) -> Vec<u32> {
    let code = |p: &[u32], i: u32| p.get(i as usize).copied().unwrap_or(NULL);
    let mut order: Vec<u32> = (0..u32::try_from(records).unwrap_or(u32::MAX))
        .filter(|i| parts.iter().all(|p| code(p, *i) != NULL))
        .collect();
    let mut sorted = vec![0u32; order.len()];
    for p in parts.iter().rev() {
        let distinct = order
            .iter()
            .map(|i| code(p, *i) as usize + 1)
            .max()
            .unwrap_or(0);
        // Where each code's records start, then the next free place of each.
        let mut next = vec![0u32; distinct + 1];
        for i in &order {
            if let Some(n) = next.get_mut(code(p, *i) as usize + 1) {
                *n += 1;
            }
        }
        for c in 1..next.len() {
            next[c] += next[c - 1];
        }
        for i in &order {
            if let Some(at) = next.get_mut(code(p, *i) as usize) {
                if let Some(slot) = sorted.get_mut(*at as usize) {
                    *slot = *i;
                }
                *at += 1;
            }
        }
        std::mem::swap(&mut order, &mut sorted);
    }
    order
}

/// The key of a record as text, for reports.
fn key_text(rule: &BlockingRule, settings: &Settings, records: &Records, record: usize) -> String {
    rule.keys
        .iter()
        .map(|k| {
            let value = settings
                .comparisons
                .iter()
                .position(|c| c.column == k.column)
                .and_then(|i| records.columns.get(i))
                .and_then(|c| c.value(record))
                .unwrap_or("");
            let value: String = match k.prefix {
                Some(n) => value.chars().take(n).collect(),
                None => value.to_string(),
            };
            crate::records::mask(&value)
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Where the blocks of one rule go: kept blocks get numbers, skipped records are counted.
struct Placing<'a> {
    cap: usize,
    /// The rule's `without:` column, lacked or not by each record.
    lacking: Option<&'a [bool]>,
    refinements: &'a [Cow<'a, [u32]>],
    /// Refinement keys this rule may use (not already one of its keys).
    usable: Vec<bool>,
    block_of: Vec<u32>,
    /// Records of skipped blocks.
    skipped: Vec<bool>,
    /// The kept blocks of every rule so far, end to end (see [`PairSource::Blocks`]): a kept
    /// block's members are appended here, not held as a vector each (millions of blocks).
    kept: &'a mut KeptBlocks,
    rule: u8,
    report: RuleReport,
}

/// Kept blocks end to end: block `k` is `members[starts[k]..starts[k + 1]]`, of rule `rule_of[k]`.
#[derive(Debug, Clone)]
struct KeptBlocks {
    members: Vec<u32>,
    starts: Vec<u32>,
    rule_of: Vec<u8>,
}

impl KeptBlocks {
    fn new() -> Self {
        KeptBlocks {
            members: Vec::new(),
            starts: vec![0],
            rule_of: Vec::new(),
        }
    }

    /// Appends a block of `rule` with `members`.
    fn push(&mut self, rule: u8, members: &[u32]) {
        self.members.extend_from_slice(members);
        self.starts
            .push(u32::try_from(self.members.len()).unwrap_or(u32::MAX));
        self.rule_of.push(rule);
    }

    /// Calls `f(rule, a, b)` for every pair of the blocks `units` (`a < b`), in order: block by
    /// block, each block's members pairwise.
    fn each_pair(&self, units: std::ops::Range<usize>, mut f: impl FnMut(usize, u32, u32)) {
        for k in units {
            let (rule, block) = self.block(k);
            let r = usize::from(rule);
            for (x, &a) in block.iter().enumerate() {
                for &b in &block[x + 1..] {
                    f(r, a.min(b), a.max(b));
                }
            }
        }
    }

    /// The number of blocks.
    fn len(&self) -> usize {
        self.rule_of.len()
    }

    /// Block `k`'s rule and members (`k < len()`; none past the end).
    fn block(&self, k: usize) -> (u8, &[u32]) {
        let range = match (self.starts.get(k), self.starts.get(k + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        };
        (
            self.rule_of.get(k).copied().unwrap_or(u8::MAX),
            self.members.get(range).unwrap_or(&[]),
        )
    }
}

impl Placing<'_> {
    /// Keeps `members` as one block, or splits it by the next usable refinement, or skips it.
    fn place(&mut self, members: &[u32], depth: usize) -> Option<usize> {
        if members.len() < 2 {
            return None;
        }
        let pairs = block_pairs(members, self.lacking);
        if pairs == 0 {
            // `without:`: every member has the column; the block makes no pair.
            return None;
        }
        let cap = self.cap as u64;
        if pairs <= cap * cap.saturating_sub(1) / 2 {
            let id = u32::try_from(self.report.blocks).unwrap_or(NULL - 1);
            for &m in members {
                self.block_of[m as usize] = id;
            }
            self.report.blocks += 1;
            self.kept.push(self.rule, members);
            return None;
        }
        let Some(next) = (depth..self.refinements.len()).find(|&d| self.usable[d]) else {
            // Nothing left to refine by: skipped; the caller reports it.
            self.report.skipped_blocks += 1;
            self.report.skipped_records += members.len() as u64;
            for &m in members {
                self.skipped[m as usize] = true;
            }
            return Some(members.len());
        };
        self.report.refined_blocks += 1;
        let codes = &self.refinements[next];
        let mut parts: Vec<(u32, u32)> = members
            .iter()
            .map(|&m| (codes.get(m as usize).copied().unwrap_or(NULL), m))
            .collect();
        parts.sort_unstable();
        let groups: Vec<Vec<u32>> = parts
            .chunk_by(|x, y| x.0 == y.0)
            .map(|g| g.iter().map(|x| x.1).collect())
            .collect();
        let mut largest_skipped: Option<usize> = None;
        for g in groups {
            if let Some(n) = self.place(&g, next + 1) {
                largest_skipped = Some(largest_skipped.map_or(n, |x| x.max(n)));
            }
        }
        largest_skipped
    }
}

/// The pairs a block of `members` makes: all of them, or under `without:` those with a member
/// lacking the column.
fn block_pairs(members: &[u32], lacking: Option<&[bool]>) -> u64 {
    let n = members.len() as u64;
    match lacking {
        None => n * n.saturating_sub(1) / 2,
        Some(l) => {
            let k = members
                .iter()
                .filter(|m| l.get(**m as usize).copied().unwrap_or(false))
                .count() as u64;
            k * (n - k) + k * k.saturating_sub(1) / 2
        }
    }
}

/// The rule mask of the rules whose pairs link and train the model (not `attach_blocking_rules`):
/// a pair whose mask has none of these bits only attaches lone records.
pub fn linking_rules(settings: &Settings) -> u32 {
    settings
        .blocking_rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.attach_only)
        .fold(0u32, |mask, (i, _)| mask | (1u32 << (i % 32)))
}

/// The candidate pairs of `records` under the rules of `settings`.
pub fn candidates(settings: &Settings, records: &Records) -> Candidates {
    let rules = &settings.blocking_rules;
    let refinements: Vec<Cow<'_, [u32]>> = settings
        .blocking_refinements
        .iter()
        .map(|k| key_codes(k, settings, records))
        .collect();
    // Pass 1: the kept blocks of each rule, and each record's block number under each rule (NULL:
    // in none, its key missing, alone, or its block skipped).
    let mut block_of: Vec<Vec<u32>> = Vec::with_capacity(rules.len());
    // A record alone under its key still has the rule; one without any key, or in skipped blocks
    // only, has none.
    let mut has_rule = vec![false; records.len()];
    let mut kept = KeptBlocks::new();
    let mut reports = Vec::with_capacity(rules.len());
    let lacking: Vec<Option<Vec<bool>>> = rules
        .iter()
        .map(|rule| {
            rule.without.as_ref().map(|column| {
                let key = crate::spec::BlockingKey {
                    column: column.clone(),
                    prefix: None,
                };
                key_codes(&key, settings, records)
                    .iter()
                    .map(|c| *c == NULL)
                    .collect()
            })
        })
        .collect();
    let mut run_members: Vec<u32> = Vec::new();
    for (r, (rule, lacking)) in rules.iter().zip(&lacking).enumerate() {
        let parts = rule_parts(rule, settings, records);
        let order = rule_order(&parts, records.len());
        let same_key = |x: &u32, y: &u32| {
            parts
                .iter()
                .all(|p| p.get(*x as usize) == p.get(*y as usize))
        };
        let mut placing = Placing {
            cap: settings.max_block_size,
            lacking: lacking.as_deref(),
            refinements: &refinements,
            usable: settings
                .blocking_refinements
                .iter()
                .map(|k| {
                    !rule.keys.iter().any(|own| {
                        own.column == k.column
                            && own.prefix.is_none_or(|p| k.prefix.is_some_and(|q| q <= p))
                    })
                })
                .collect(),
            block_of: vec![NULL; records.len()],
            skipped: vec![false; records.len()],
            kept: &mut kept,
            rule: u8::try_from(r).unwrap_or(u8::MAX),
            report: RuleReport {
                rule: rule.label.clone(),
                attach_only: rule.attach_only,
                ..RuleReport::default()
            },
        };
        for run in order.chunk_by(same_key) {
            run_members.clear();
            run_members.extend_from_slice(run);
            if let Some(size) = placing.place(&run_members, 0) {
                let size = size as u64;
                if placing
                    .report
                    .largest_skipped
                    .as_ref()
                    .is_none_or(|(_, s)| *s < size)
                {
                    let text = key_text(rule, settings, records, run[0] as usize);
                    placing.report.largest_skipped = Some((text, size));
                }
            }
        }
        drop(parts);
        for i in &order {
            if let (Some(has), Some(&false)) = (
                has_rule.get_mut(*i as usize),
                placing.skipped.get(*i as usize),
            ) {
                *has = true;
            }
        }
        block_of.push(placing.block_of);
        reports.push(placing.report);
    }
    let records_without_rule = has_rule.iter().filter(|h| !**h).count() as u64;
    // Which pairs of the blocks are candidates, and each rule's pairs counted (each pair once,
    // under the first rule that holds it).
    let rules = RuleBlocks { block_of, lacking };
    let mut per_rule = vec![0u64; reports.len()];
    let candidate = PairBits::of(&kept, |r, a, b| {
        let is = rules.is_candidate(r, a, b);
        if is && let Some(n) = per_rule.get_mut(r) {
            *n += 1;
        }
        is
    });
    let mut out = Candidates {
        reports,
        records_without_rule,
        pairs: 0,
        source: PairSource::Blocks {
            kept,
            candidate,
            rules: Some(rules),
        },
    };
    for (report, n) in out.reports.iter_mut().zip(&per_rule) {
        report.pairs = *n;
    }
    out.pairs = per_rule.iter().sum();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ComparisonSpec, IdentitySpec, Kind};

    #[test]
    fn records_are_ordered_by_their_keys_then_numbers_as_a_sort_of_key_tuples_orders_them() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let n = 5_000usize;
        for width in 1..=3usize {
            // Few distinct codes, so that many records share a key; some missing.
            let parts: Vec<Cow<'_, [u32]>> = (0..width)
                .map(|k| {
                    Cow::Owned(
                        (0..n)
                            .map(|_| {
                                let c: u32 = rng.random_range(0..(7 + 40 * k as u32));
                                if c == 3 { NULL } else { c }
                            })
                            .collect(),
                    )
                })
                .collect();
            let mut tuples: Vec<(Vec<u32>, u32)> = (0..n as u32)
                .filter_map(|i| {
                    let key: Vec<u32> = parts.iter().map(|p| p[i as usize]).collect();
                    (!key.contains(&NULL)).then_some((key, i))
                })
                .collect();
            tuples.sort_unstable();
            let expected: Vec<u32> = tuples.iter().map(|t| t.1).collect();
            assert!(expected.len() > n / 2 && expected.len() < n);
            assert_eq!(rule_order(&parts, n), expected, "{width} keys");
        }
        assert!(rule_order(&[], 0).is_empty());
    }

    /// Every candidate pair with its mask.
    fn pairs(c: &Candidates) -> Vec<(u32, u32, u32)> {
        match c.collect_pairs() {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_pairs_walked_without_the_rules_blocks_are_those_walked_with_them_from_any_block() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        // Names and phones drawn from few values, some missing, so that rules overlap and a
        // `without:` rule has records on both sides; a small cap so that blocks are refined.
        let mut s = settings(&[&["name", "without:phone"], &["phone"], &["name:1"]], 12);
        s.blocking_refinements = vec![crate::spec::BlockingKey {
            column: "name".into(),
            prefix: None,
        }];
        let mut r = Records::new(&s);
        for i in 0..3_000 {
            let name = format!(
                "{}{}",
                char::from(b'a' + rng.random_range(0..10u8)),
                rng.random_range(0..40)
            );
            let phone = format!("07700 9{:05}", rng.random_range(0..600));
            let name = (rng.random_range(0..10) > 0).then_some(name.as_str());
            let phone = (rng.random_range(0..3) > 0).then_some(phone.as_str());
            r.push(&i.to_string(), "s", &[name, phone]);
        }
        let mut c = candidates(&s, &r);
        let per_block: Vec<Vec<(u32, u32)>> = (0..c.units())
            .map(|k| {
                let mut out = Vec::new();
                match c.for_each_pair_with_mask(k..k + 1, |a, b, _| out.push((a, b))) {
                    Ok(()) => out,
                    Err(e) => panic!("{e}"),
                }
            })
            .collect();
        let all = pairs(&c);
        assert_eq!(all.len(), c.len());
        assert!(
            c.units() > 3 * BITS_STRIDE && c.len() > 1_000,
            "{} blocks, {} pairs",
            c.units(),
            c.len()
        );
        // Every rule has pairs of its own and a later rule also holds some of them.
        assert!(c.reports.iter().all(|r| r.pairs > 0), "{:?}", c.reports);
        assert!(all.iter().any(|p| p.2.count_ones() > 1));
        c.let_rule_blocks_go();
        assert!(c.collect_pairs().is_err());
        for _ in 0..200 {
            let start = rng.random_range(0..c.units());
            let end = rng.random_range(start..=c.units());
            let mut walked = Vec::new();
            c.for_each_pair(start..end, |a, b| walked.push((a, b)));
            assert_eq!(walked, per_block[start..end].concat(), "{start}..{end}");
        }
        let mut walked = Vec::new();
        c.for_each_pair(0..c.units(), |a, b| walked.push((a, b)));
        let expected: Vec<(u32, u32)> = all.iter().map(|p| (p.0, p.1)).collect();
        assert_eq!(walked, expected);
    }

    fn settings(rules: &[&[&str]], cap: usize) -> Settings {
        let spec = IdentitySpec {
            comparisons: Some(vec![
                ComparisonSpec {
                    column: "name".into(),
                    kind: Kind::Name,
                    thresholds: None,
                    term_frequency: false,
                    group: None,
                    part_of: None,
                },
                ComparisonSpec {
                    column: "phone".into(),
                    kind: Kind::Phone,
                    thresholds: None,
                    term_frequency: false,
                    group: None,
                    part_of: None,
                },
            ]),
            blocking_rules: Some(
                rules
                    .iter()
                    .map(|r| r.iter().map(|k| (*k).to_string()).collect())
                    .collect(),
            ),
            max_block_size: Some(cap),
            ..IdentitySpec::default()
        };
        match spec.validate() {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn pairs_come_once_from_the_first_rule_and_big_blocks_are_skipped() {
        let s = settings(&[&["name"], &["phone"], &["name:1"]], 3);
        let mut r = Records::new(&s);
        let phone = "07700 900123";
        for (i, (name, phone)) in [
            ("ann", Some(phone)),
            ("ann", Some(phone)),
            ("anna", Some(phone)),
            ("bob", None),
            ("bob", None),
            ("bob", None),
            ("bob", None),
        ]
        .iter()
        .enumerate()
        {
            r.push(&i.to_string(), "s", &[Some(name), *phone]);
        }
        let c = candidates(&s, &r);
        // name: (0,1); the bob block of 4 is over the cap. phone: (0,2), (1,2) new.
        // name:1: the "a" block adds nothing new; the "b" block of 4 is skipped again.
        assert_eq!(pairs(&c), vec![(0, 1, 0b111), (0, 2, 0b110), (1, 2, 0b110)]);
        assert_eq!(c.len(), 3);
        assert_eq!(c.reports[0].pairs, 1);
        assert_eq!(c.reports[0].skipped_blocks, 1);
        // The key is masked in reports.
        assert_eq!(c.reports[0].largest_skipped, Some(("b*b".into(), 4)));
        assert_eq!(c.reports[1].pairs, 2);
        assert_eq!(c.reports[2].pairs, 0);
        assert_eq!(c.reports[2].skipped_records, 4);
        // The four bobs have no phone and only skipped blocks: no rule can pair them.
        assert_eq!(c.records_without_rule, 4);
    }

    #[test]
    fn a_block_over_the_cap_is_refined_by_a_further_key_not_dropped() {
        let mut s = settings(&[&["phone"]], 3);
        s.blocking_refinements = vec![crate::spec::BlockingKey {
            column: "name".into(),
            prefix: Some(1),
        }];
        let mut r = Records::new(&s);
        // Five records share a phone (over the cap of 3): split by the name's first letter into
        // the a-block (3 records, kept) and the b-block (2, kept); the one without a name is alone.
        for (i, name) in [
            Some("ann"),
            Some("amy"),
            Some("abe"),
            Some("bob"),
            Some("bea"),
            None,
        ]
        .iter()
        .enumerate()
        {
            r.push(&i.to_string(), "s", &[*name, Some("07700 900123")]);
        }
        let c = candidates(&s, &r);
        let found: Vec<(u32, u32)> = pairs(&c).iter().map(|p| (p.0, p.1)).collect();
        assert_eq!(found, vec![(0, 1), (0, 2), (1, 2), (3, 4)]);
        assert_eq!(c.reports[0].refined_blocks, 1);
        assert_eq!(c.reports[0].skipped_blocks, 0);
        assert_eq!(c.records_without_rule, 0);
        // Without the refinement the whole block is skipped.
        s.blocking_refinements.clear();
        let c = candidates(&s, &r);
        assert!(c.is_empty() && pairs(&c).is_empty());
        assert_eq!(c.reports[0].skipped_records, 6);
    }

    #[test]
    fn a_without_rule_pairs_only_records_lacking_its_column() {
        // name + without:phone: of the four anns, the two with phones are not paired by it (the
        // phone rules compare them), each pair with a phoneless ann is; the second rule (name)
        // then adds the pair of the two with phones.
        let s = settings(&[&["name", "without:phone"], &["name"]], 4);
        let mut r = Records::new(&s);
        for (i, phone) in [Some("07700 900123"), Some("07700 900456"), None, None]
            .iter()
            .enumerate()
        {
            r.push(&i.to_string(), "s", &[Some("ann"), *phone]);
        }
        let c = candidates(&s, &r);
        assert_eq!(
            pairs(&c),
            vec![
                (0, 2, 0b11),
                (0, 3, 0b11),
                (1, 2, 0b11),
                (1, 3, 0b11),
                (2, 3, 0b11),
                (0, 1, 0b10)
            ]
        );
        assert_eq!((c.reports[0].pairs, c.reports[1].pairs), (5, 1));
        // The cap counts the pairs a without-rule makes (5), not its block's size (4): a cap of 3
        // (3 pairs) is exceeded and, with nothing to refine by, the block is skipped.
        let s = settings(&[&["name", "without:phone"]], 3);
        let c = candidates(&s, &r);
        assert_eq!(c.reports[0].skipped_blocks, 1);
        assert!(c.is_empty());
        // A block where every record has the column makes no pair and is no block.
        let mut r = Records::new(&s);
        r.push("0", "s", &[Some("bob"), Some("07700 900123")]);
        r.push("1", "s", &[Some("bob"), Some("07700 900456")]);
        let c = candidates(&s, &r);
        assert!(c.is_empty());
        assert_eq!(c.reports[0].blocks, 0);
    }
}
