//! The Fellegi-Sunter model: for each comparison level, m (the probability of the level among
//! matching pairs) and u (among non-matching pairs); a pair's match weight is the log2 of the prior
//! odds plus, per comparison, log2(m/u) of its level.
//!
//! - u comes from random pairs: nearly all of them are non-matches.
//! - m comes from anchor pairs where there are enough of them: for each comparison, the candidate
//!   pairs that agree exactly on at least two person identifiers other than itself (first name,
//!   birth date, email, phone: not surname or address, which a household shares) are nearly all
//!   the same person, so the levels of the comparison among them are its m. Household members,
//!   who share an address, a surname and a landline, are not anchors, and cannot pose as matches
//!   as they do in unsupervised training. A comparison with fewer than [`MIN_ANCHORS`] anchor pairs
//!   falls back to expectation maximisation without labels, one session per blocking rule over the
//!   pairs that rule produces, u held fixed (the columns a rule blocks on are not estimated in its
//!   session), each m the mean over the sessions, as Splink does.
//! - Groups: the comparisons of one group (a household's surname, address, landline and email)
//!   describe one thing and count once, by their strongest agreement and strongest disagreement.
//!   Exact agreement on a phone or email that only one person holds (no two of its records have
//!   different first names: a mobile, a personal email) is about the person, not the home, and
//!   counts on its own.
//! - The prior, the probability that two random records match, is the fixed point of
//!   lambda = (expected matches among candidates) / (all pairs), non-candidates counting as
//!   non-matches.
//! - Term frequencies: on a comparison with `term_frequency`, exact agreement on a value held by a
//!   share f of the records uses u = f instead of the average u, so a rare surname counts more.

use hashbrown::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::blocking::Candidates;
use crate::compare;
use crate::compared::Compared;
use crate::records::Records;
use crate::spec::{Kind, Settings};

/// Probabilities are kept inside [FLOOR, 1 - FLOOR] so that no level has an infinite weight;
/// except the u of exact agreement where it is counted, and term-frequency shares, which are
/// never 0 and must shrink with the base as the prior does (see `exact_agreement`).
const FLOOR: f64 = 1e-6;
const EM_MAX_ITERATIONS: usize = 100;
const EM_TOLERANCE: f64 = 1e-5;
/// Anchor pairs a comparison needs for its m to come from them rather than from EM.
pub const MIN_ANCHORS: usize = 200;

/// Parameters of one comparison; index 0 (null) is unused and weighs nothing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ComparisonParameters {
    pub column: String,
    pub labels: Vec<String>,
    pub m: Vec<f64>,
    pub u: Vec<f64>,
    /// Sessions that estimated m (0: m is the starting guess, reported as a warning).
    pub m_sessions: usize,
    /// Anchor pairs m was counted on (0: m came from EM).
    pub m_anchors: usize,
    pub term_frequency: bool,
    /// The comparison's group: comparisons of one group count once.
    pub group: Option<usize>,
    /// The comparison this one is a coarser part of (`part_of`: a postcode of the street).
    pub part_of: Option<usize>,
    /// m of each level among the anchor pairs whose `part_of` comparison disagrees (its last
    /// level), and how many there were; `None` without `part_of` or with fewer than
    /// [`MIN_ANCHORS`] such pairs. Agreeing on a postcode means little once the street differs.
    pub m_where_whole_differs: Option<(Vec<f64>, usize)>,
}

impl ComparisonParameters {
    /// The match weight of a level: log2(m/u); 0 for null.
    pub fn weight(&self, level: u8) -> f64 {
        let l = level as usize;
        if l == 0 || l >= self.m.len() {
            return 0.0;
        }
        (self.m[l] / self.u[l]).log2()
    }

    /// The weight of `level` for a pair whose `part_of` comparison disagrees, before term
    /// frequencies (`extra`, added): an agreeing level weighs log2(m/u) with m measured among
    /// such pairs, never below nothing; other levels, and a comparison without that m, keep
    /// their weight.
    pub fn weight_where_whole_differs(&self, level: u8, extra: f64) -> f64 {
        let weight = self.weight(level);
        let l = usize::from(level);
        match (&self.m_where_whole_differs, self.u.get(l)) {
            (Some((m, _)), Some(u)) if weight > 0.0 => {
                m.get(l).map_or(0.0, |m| ((m / u).log2() + extra).max(0.0))
            }
            _ => weight + extra,
        }
    }
}

/// The fitted model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Parameters {
    pub comparisons: Vec<ComparisonParameters>,
    /// The probability that two random records are the same person.
    pub prior: f64,
    /// Random pairs drawn for u, and EM iterations per session.
    pub u_pairs: u64,
    pub em_iterations: Vec<usize>,
    /// Each group's cap (see [`Parameters::group_cap`]), computed once: every candidate pair
    /// needs them.
    group_caps: Vec<f64>,
}

impl Parameters {
    /// The model of `comparisons` with prior `prior`.
    pub fn new(
        comparisons: Vec<ComparisonParameters>,
        prior: f64,
        u_pairs: u64,
        em_iterations: Vec<usize>,
    ) -> Self {
        let groups = comparisons
            .iter()
            .filter_map(|p| p.group)
            .max()
            .map_or(0, |g| g + 1);
        let group_caps = (0..groups)
            .map(|g| {
                comparisons
                    .iter()
                    .filter(|p| p.group == Some(g))
                    .map(|p| p.weight(1))
                    .fold(0.0, f64::max)
            })
            .collect();
        Self {
            comparisons,
            prior,
            u_pairs,
            em_iterations,
            group_caps,
        }
    }

    /// log2 of the prior odds.
    pub fn prior_weight(&self) -> f64 {
        (self.prior / (1.0 - self.prior)).log2()
    }

    /// Whether comparison `c` is a part of an address whose whole (`part_of`) disagrees in a pair
    /// at `levels`, and has m measured for that case.
    pub fn whole_differs(&self, c: usize, levels: &[u8]) -> bool {
        self.comparisons.get(c).is_some_and(|p| {
            p.m_where_whole_differs.is_some()
                && p.part_of.is_some_and(|w| {
                    let last = self.comparisons.get(w).map_or(0, |whole| whole.m.len() - 1);
                    let level = levels.get(w).map_or(0, |l| usize::from(*l));
                    level != 0 && level == last
                })
        })
    }

    /// The weights of pairs of `records`, with every logarithm taken once: per comparison and
    /// level, and per value for term frequencies. Build one for many pairs.
    pub fn weigher<'a>(&'a self, records: &'a Records) -> Weigher<'a> {
        Weigher::new(self, records)
    }

    /// Each comparison's weight for one pair (see [`Weigher::weights`]); for many pairs, use one
    /// [`Parameters::weigher`].
    pub fn weights(&self, records: &Records, a: usize, levels: &[u8]) -> (Vec<f64>, Vec<f64>) {
        self.weigher(records).weights(a, levels)
    }

    /// The match weight of one pair, prior aside (see [`Weigher::evidence_weight`]); for many
    /// pairs, use one [`Parameters::weigher`].
    pub fn evidence_weight(&self, records: &Records, a: usize, levels: &[u8]) -> f64 {
        self.weigher(records).evidence_weight(a, levels)
    }

    fn group_count(&self) -> usize {
        self.group_caps.len()
    }

    /// The most a group's agreements may add: the largest exact-agreement weight of one member
    /// (agreeing on everything a household shares says no more about the person than its best
    /// single identifier does).
    pub fn group_cap(&self, group: usize) -> f64 {
        self.group_caps.get(group).copied().unwrap_or(0.0)
    }
}

/// Match weights of pairs of one set of records under fitted [`Parameters`]: log2(m/u) of every
/// level, the term-frequency adjustment of every value and the weights where an address's whole
/// differs are computed once, so weighing one of fifty million candidate pairs is table lookups.
pub struct Weigher<'a> {
    params: &'a Parameters,
    /// What weighs each comparison, in the order of the comparisons (of a pair's levels).
    comparisons: Vec<ComparisonWeigher<'a>>,
}

/// What [`Weigher`] looks up for one comparison, together: it runs for every comparison of
/// every candidate pair (twice: once to estimate the prior, once to score).
struct ComparisonWeigher<'a> {
    /// log2(m/u) of each level (0 for null).
    level: Vec<f64>,
    /// With term frequencies, the adjustment of exact agreement on each value: log2(u / f), f the
    /// value's share of the records.
    term_frequency: Option<Vec<f64>>,
    /// u of exact agreement, for a value the table does not hold.
    exact_u: Option<f64>,
    /// The records' column (codes, frequencies, which values are personal).
    column: Option<&'a crate::records::Column>,
    /// The comparison's group.
    group: Option<usize>,
    /// With m measured where its whole differs: the whole's comparison and last level, and per
    /// level log2(m/u) among such pairs (`None`: no m for that level).
    where_whole_differs: Option<WholeDiffers>,
}

/// See [`ComparisonWeigher::where_whole_differs`].
struct WholeDiffers {
    whole: usize,
    last: usize,
    level: Vec<Option<f64>>,
}

impl<'a> Weigher<'a> {
    fn new(params: &'a Parameters, records: &'a Records) -> Self {
        let all = &params.comparisons;
        let comparisons = all
            .iter()
            .enumerate()
            .map(|(c, p)| {
                let column = records.columns.get(c);
                let term_frequency = match (p.term_frequency, column, p.u.get(1)) {
                    (true, Some(col), Some(u)) => Some(
                        (0..col.values.len())
                            .map(|code| {
                                let code = u32::try_from(code).unwrap_or(crate::records::NULL);
                                (u / col.frequency(code)).log2()
                            })
                            .collect(),
                    ),
                    _ => None,
                };
                let where_whole_differs = match (&p.m_where_whole_differs, p.part_of) {
                    (Some((m, _)), Some(whole)) => Some(WholeDiffers {
                        whole,
                        last: all.get(whole).map_or(0, |w| w.m.len() - 1),
                        level: p
                            .u
                            .iter()
                            .enumerate()
                            .map(|(l, u)| m.get(l).map(|m| (m / u).log2()))
                            .collect(),
                    }),
                    _ => None,
                };
                ComparisonWeigher {
                    level: (0..p.m.len())
                        .map(|l| p.weight(u8::try_from(l).unwrap_or(u8::MAX)))
                        .collect(),
                    term_frequency,
                    exact_u: p.u.get(1).copied(),
                    column,
                    group: p.group,
                    where_whole_differs,
                }
            })
            .collect();
        Self {
            params,
            comparisons,
        }
    }

    /// Each comparison's weight for a pair with levels `levels` (term frequency included, groups
    /// applied: a group's agreements are scaled down to its cap, and of its disagreements only the
    /// strongest counts), and the term-frequency part alone.
    pub fn weights(&self, a: usize, levels: &[u8]) -> (Vec<f64>, Vec<f64>) {
        let (mut w, mut tf): (Vec<f64>, Vec<f64>) = levels
            .iter()
            .enumerate()
            .map(|(c, &level)| {
                self.comparisons
                    .get(c)
                    .map_or((0.0, 0.0), |k| k.weight(k.code_at(a, level), level, levels))
            })
            .unzip();
        let group_of = |c: usize| {
            let level = levels.get(c).copied().unwrap_or(0);
            self.comparisons
                .get(c)
                .and_then(|k| k.group_of(k.code_at(a, level), level))
        };
        for g in 0..self.params.group_count() {
            let members: Vec<usize> = (0..w.len()).filter(|&c| group_of(c) == Some(g)).collect();
            let agree: f64 = members.iter().map(|&c| w[c].max(0.0)).sum();
            let cap = self.params.group_cap(g);
            let scale = if agree > cap && agree > 0.0 {
                cap / agree
            } else {
                1.0
            };
            let worst = members.iter().copied().filter(|&c| w[c] < 0.0).fold(
                None::<usize>,
                |b, c| match b {
                    Some(x) if w[x] <= w[c] => Some(x),
                    _ => Some(c),
                },
            );
            for c in members {
                if w[c] > 0.0 {
                    w[c] *= scale;
                    tf[c] *= scale;
                } else if w[c] < 0.0 && Some(c) != worst {
                    w[c] = 0.0;
                    tf[c] = 0.0;
                }
            }
        }
        (w, tf)
    }

    /// The match weight of a pair, prior aside: the comparisons' weights with groups applied (no
    /// allocation for up to 32 groups: this runs for every candidate pair).
    pub fn evidence_weight(&self, a: usize, levels: &[u8]) -> f64 {
        let mut agree = [0.0f64; 32];
        let mut worst = [0.0f64; 32];
        let mut grouped = 0usize;
        let mut total = 0.0;
        // A level past the comparisons weighs nothing (adding nothing to the total).
        for (k, &level) in self.comparisons.iter().zip(levels) {
            let code = k.code_at(a, level);
            let w = k.weight(code, level, levels).0;
            match k.group_of(code, level) {
                Some(g) if g < 32 => {
                    grouped = grouped.max(g + 1);
                    if w > 0.0 {
                        agree[g] += w;
                    } else {
                        worst[g] = worst[g].min(w);
                    }
                }
                _ => total += w,
            }
        }
        for g in 0..grouped {
            total += agree[g].min(self.params.group_cap(g)) + worst[g];
        }
        total
    }
}

impl ComparisonWeigher<'_> {
    /// The code of record `a`'s value where it matters, at exact agreement (term frequencies and
    /// personal values); null otherwise.
    #[inline]
    fn code_at(&self, a: usize, level: u8) -> u32 {
        match self.column {
            Some(col) if level == 1 => col.codes.get(a).copied().unwrap_or(crate::records::NULL),
            _ => crate::records::NULL,
        }
    }

    /// The weight at `level` for a pair whose first record's value is `code` (see
    /// [`ComparisonWeigher::code_at`]) and whose levels are `levels` (term frequency included),
    /// and the term-frequency part alone. An agreeing part of an address whose whole disagrees
    /// (the postcode of pairs at two streets) weighs log2(m/u) with m measured among such pairs,
    /// and never less than nothing.
    #[inline]
    fn weight(&self, code: u32, level: u8, levels: &[u8]) -> (f64, f64) {
        let l = usize::from(level);
        let adjust = match &self.term_frequency {
            Some(per_value) if level == 1 => {
                per_value.get(code as usize).copied().unwrap_or_else(|| {
                    // A record without a value (only levels given by hand say it agrees).
                    match (self.exact_u, self.column) {
                        (Some(u), Some(col)) => (u / col.frequency(code)).log2(),
                        _ => 0.0,
                    }
                })
            }
            _ => 0.0,
        };
        let weight = self.level.get(l).copied().unwrap_or(0.0);
        if weight > 0.0
            && let Some(differs) = &self.where_whole_differs
            && levels.get(differs.whole).is_some_and(|w| {
                let w = usize::from(*w);
                w != 0 && w == differs.last
            })
        {
            // Agreeing where the whole differs: m measured among such pairs, never below nothing.
            let given = match differs.level.get(l) {
                Some(Some(w)) => (w + adjust).max(0.0),
                Some(None) => 0.0,
                None => weight + adjust,
            };
            return if given > 0.0 {
                (given, adjust.min(given))
            } else {
                (0.0, 0.0)
            };
        }
        (weight + adjust, adjust)
    }

    /// The group the comparison counts in for a pair whose first record's value is `code` at
    /// `level`: its group, except that exact agreement on a value only one person holds (a
    /// mobile, a personal email: [`Records::mark_shared_values`]) is evidence about the person
    /// and counts on its own.
    #[inline]
    fn group_of(&self, code: u32, level: u8) -> Option<usize> {
        let group = self.group?;
        let personal = level == 1 && self.column.is_some_and(|col| col.is_personal(code));
        (!personal).then_some(group)
    }
}

/// Probability from a match weight.
pub fn probability(weight: f64) -> f64 {
    1.0 / (1.0 + (-weight).exp2())
}

fn normalise(v: &mut [f64]) {
    let total: f64 = v.iter().skip(1).sum();
    for x in v.iter_mut().skip(1) {
        *x = if total > 0.0 { *x / total } else { 0.0 };
        *x = x.clamp(FLOOR, 1.0 - FLOOR);
    }
}

/// Records that must hold a value of a column for its exact agreement to be counted rather than
/// sampled.
const EXACT_U_MIN_RECORDS: u64 = 1000;

/// The share of pairs of records that both have a value of `column` whose values are the same
/// (`None` with fewer than [`EXACT_U_MIN_RECORDS`] values).
fn exact_agreement(column: &crate::records::Column) -> Option<f64> {
    let mut per_code = vec![0u64; column.values.len()];
    for &code in &column.codes {
        if let Some(n) = per_code.get_mut(code as usize) {
            *n += 1;
        }
    }
    let known: u64 = per_code.iter().sum();
    if known < EXACT_U_MIN_RECORDS {
        // A handful of records: the pairs of one person are a large share of all pairs, and
        // counting them would take agreement for chance; the sampled share is kept.
        return None;
    }
    let same: f64 = per_code.iter().map(|&n| n as f64 * (n as f64 - 1.0)).sum();
    // No two records sharing a value is rare, not impossible: counted as one pair that did.
    Some(same.max(2.0) / (known as f64 * (known as f64 - 1.0)))
}

/// u from `n` random pairs, seeded (exact agreement counted over every record); and per comparison, the share of random pairs (both known)
/// whose values begin with the same letter (for the forename's initial level).
fn estimate_u(
    settings: &Settings,
    records: &Records,
) -> crate::Result<(Vec<Vec<f64>>, u64, Vec<f64>)> {
    let mut first_letter = vec![(0.0f64, 0.0f64); settings.comparisons.len()];
    let n = records.len();
    let mut counts: Vec<Vec<f64>> = settings
        .comparisons
        .iter()
        .map(|c| vec![0.0; c.level_count()])
        .collect();
    let mut drawn = 0u64;
    if n >= 2 {
        // The pairs are drawn in order from the seeded generator, then compared on every core;
        // the counts are whole numbers, so their sums do not depend on how the pairs were split.
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let all_pairs = (n as u128) * (n as u128 - 1) / 2;
        let draws = (settings.u_sample_pairs as u128).min(all_pairs) as usize;
        let pairs: Vec<(u32, u32)> = (0..draws)
            .map(|_| {
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                (
                    u32::try_from(a).unwrap_or(u32::MAX),
                    u32::try_from(b).unwrap_or(u32::MAX),
                )
            })
            .collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, 16);
        let chunk = pairs.len().div_ceil(threads).max(1);
        let count_chunk = |chunk: &[(u32, u32)]| {
            let mut counts: Vec<Vec<f64>> = settings
                .comparisons
                .iter()
                .map(|c| vec![0.0; c.level_count()])
                .collect();
            let mut first_letter = vec![(0.0f64, 0.0f64); settings.comparisons.len()];
            let mut levels = Vec::with_capacity(settings.comparisons.len());
            for &(a, b) in chunk {
                let (a, b) = (a as usize, b as usize);
                levels.clear();
                compare::vector(&settings.comparisons, records, a, b, &mut levels);
                for (c, &l) in levels.iter().enumerate() {
                    counts[c][l as usize] += 1.0;
                    if l != 0 && settings.comparisons[c].kind == Kind::Forename {
                        let col = &records.columns[c];
                        let letter = |r: usize| col.value(r).and_then(|v| v.chars().next());
                        first_letter[c].1 += 1.0;
                        if letter(a) == letter(b) {
                            first_letter[c].0 += 1.0;
                        }
                    }
                }
            }
            (counts, first_letter)
        };
        let parts = std::thread::scope(|scope| {
            let handles: Vec<_> = pairs
                .chunks(chunk)
                .map(|c| scope.spawn(move || count_chunk(c)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().map_err(|_| {
                        crate::Error::Internal("a thread comparing random pairs failed".into())
                    })
                })
                .collect::<crate::Result<Vec<_>>>()
        })?;
        for (part_counts, part_letters) in parts {
            for (total, part) in counts.iter_mut().zip(part_counts) {
                for (t, p) in total.iter_mut().zip(part) {
                    *t += p;
                }
            }
            for (total, part) in first_letter.iter_mut().zip(part_letters) {
                total.0 += part.0;
                total.1 += part.1;
            }
        }
        drawn = pairs.len() as u64;
    }
    for (i, c) in counts.iter_mut().enumerate() {
        // Add-one smoothing: a level never seen among random pairs is rare, not impossible.
        for x in c.iter_mut().skip(1) {
            *x += 1.0;
        }
        normalise(c);
        // Exact agreement is counted, not sampled: among the pairs where both records have a
        // value, the share with the same value is sum n(n-1) / N(N-1) over the values' record
        // counts. A million random pairs hold a few dozen that agree on a birth date, and one
        // or two on an email: sampled, the weight of such a level moved by a bit from one
        // night's data to the next. The other levels keep their sampled shares of the rest.
        let comparison = &settings.comparisons[i];
        if comparison.kind != Kind::YearRange
            && c.len() > 2
            && let Some(exact) = records.columns.get(i).and_then(exact_agreement)
        {
            let rest: f64 = c.iter().skip(2).sum();
            // Not held to FLOOR: a personal phone or email is shared by one pair in tens of
            // millions, and its weight must grow with the base as the prior shrinks (held to
            // 1e-6, every pair that leant on it lost a bit and a half each time the base tripled).
            let u_exact = exact.min(1.0 - FLOOR);
            c[1] = u_exact;
            for x in c.iter_mut().skip(2) {
                *x = if rest > 0.0 {
                    *x / rest * (1.0 - u_exact)
                } else {
                    0.0
                };
                *x = x.clamp(FLOOR, 1.0 - FLOOR);
            }
        }
    }
    let shares = first_letter
        .into_iter()
        .map(|(same, all)| {
            if all > 0.0 {
                (same + 1.0) / (all + 1.0)
            } else {
                1.0
            }
        })
        .collect();
    Ok((counts, drawn, shares))
}

/// The starting m: exact 0.8, the partial levels share 0.15, else 0.05.
fn starting_m(levels: usize) -> Vec<f64> {
    let mut m = vec![0.0; levels];
    if levels < 3 {
        return m;
    }
    let partial = levels - 3;
    m[1] = 0.8;
    for x in m.iter_mut().take(levels - 1).skip(2) {
        *x = 0.15 / partial as f64;
    }
    m[levels - 1] = if partial == 0 { 0.2 } else { 0.05 };
    normalise(&mut m);
    m
}

/// Distinct comparison vectors (the ignored comparisons set to null) and how many pairs have
/// each, from comparison vectors with their counts.
pub(crate) fn patterns<'a>(
    levels: impl Iterator<Item = (&'a [u8], f64)>,
    ignore: &[bool],
) -> Vec<(Vec<u8>, f64)> {
    let mut map: HashMap<Vec<u8>, f64> = HashMap::new();
    for (v, count) in levels {
        let key: Vec<u8> = v
            .iter()
            .zip(ignore)
            .map(|(l, skip)| if *skip { 0 } else { *l })
            .collect();
        *map.entry(key).or_insert(0.0) += count;
    }
    let mut out: Vec<_> = map.into_iter().collect();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

/// One EM session: m of the comparisons not ignored, and the share of matches; u fixed.
fn em_session(
    patterns: &[(Vec<u8>, f64)],
    m: &mut [Vec<f64>],
    u: &[Vec<f64>],
    ignore: &[bool],
) -> usize {
    let mut lambda = 0.5;
    for iteration in 1..=EM_MAX_ITERATIONS {
        let mut expected: Vec<Vec<f64>> = m.iter().map(|x| vec![0.0; x.len()]).collect();
        let (mut matches, mut total) = (0.0, 0.0);
        for (levels, count) in patterns {
            let (mut pm, mut pu) = (lambda, 1.0 - lambda);
            for (c, &l) in levels.iter().enumerate() {
                if ignore[c] || l == 0 {
                    continue;
                }
                pm *= m[c][l as usize];
                pu *= u[c][l as usize];
            }
            let p = if pm + pu > 0.0 { pm / (pm + pu) } else { 0.0 };
            matches += p * count;
            total += count;
            for (c, &l) in levels.iter().enumerate() {
                if !ignore[c] && l != 0 {
                    expected[c][l as usize] += p * count;
                }
            }
        }
        let mut change: f64 = 0.0;
        for (c, e) in expected.iter_mut().enumerate() {
            if ignore[c] {
                continue;
            }
            normalise(e);
            for (old, new) in m[c].iter_mut().zip(e.iter()).skip(1) {
                change = change.max((*old - new).abs());
                *old = *new;
            }
        }
        let new_lambda = if total > 0.0 {
            (matches / total).clamp(FLOOR, 1.0 - FLOOR)
        } else {
            lambda
        };
        change = change.max((new_lambda - lambda).abs());
        lambda = new_lambda;
        if change < EM_TOLERANCE {
            return iteration;
        }
    }
    EM_MAX_ITERATIONS
}

/// Fits the model to the candidate pairs, whose comparison vectors are `compared`.
pub fn fit(
    settings: &Settings,
    records: &Records,
    candidates: &Candidates,
    compared: &Compared,
) -> crate::Result<Parameters> {
    let width = settings.comparisons.len();
    let (u, u_pairs, same_letter) = estimate_u(settings, records)?;
    let start: Vec<Vec<f64>> = settings
        .comparisons
        .iter()
        .map(|c| starting_m(c.level_count()))
        .collect();
    let mut sums: Vec<Vec<f64>> = start.iter().map(|m| vec![0.0; m.len()]).collect();
    let mut sessions = vec![0usize; width];
    let mut em_iterations = Vec::new();
    for (r, rule) in settings.blocking_rules.iter().enumerate() {
        if rule.attach_only {
            // Its pairs do not train the model.
            continue;
        }
        let ignore: Vec<bool> = settings
            .comparisons
            .iter()
            .map(|c| rule.keys.iter().any(|k| k.column == c.column))
            .collect();
        if ignore.iter().all(|x| *x) {
            continue;
        }
        let session = compared
            .patterns
            .iter()
            .filter(|p| p.mask & (1 << r) != 0)
            .map(|p| (&*p.levels, p.count as f64));
        let pats = patterns(session, &ignore);
        if pats.is_empty() {
            continue;
        }
        let mut m = start.clone();
        em_iterations.push(em_session(&pats, &mut m, &u, &ignore));
        for c in 0..width {
            if !ignore[c] {
                sessions[c] += 1;
                for (s, x) in sums[c].iter_mut().zip(&m[c]) {
                    *s += x;
                }
            }
        }
    }
    let anchored = anchored_m(settings, compared, |_, _| true);
    // The parts of an address (`part_of`) measured again among the anchors whose whole disagrees.
    let where_whole_differs = anchored_m(settings, compared, |c, v| {
        let part_of = settings.comparisons.get(c).and_then(|s| s.part_of);
        part_of.is_some_and(|w| {
            let last = settings
                .comparisons
                .get(w)
                .map_or(0, |whole| whole.level_count() - 1);
            v.get(w).is_some_and(|l| *l != 0 && usize::from(*l) == last)
        })
    });
    let groups = group_indices(settings);
    let comparisons: Vec<ComparisonParameters> = settings
        .comparisons
        .iter()
        .enumerate()
        .map(|(c, spec)| {
            let (mut m, anchors) = match &anchored[c] {
                Some((m, n)) => (m.clone(), *n),
                None if sessions[c] == 0 => (start[c].clone(), 0),
                None => (sums[c].iter().map(|s| s / sessions[c] as f64).collect(), 0),
            };
            if spec.kind == Kind::Forename && anchors > 0 {
                initial_m(&mut m, &u[c], same_letter[c], spec.thresholds.len());
            }
            let group = groups[c];
            ComparisonParameters {
                column: spec.column.clone(),
                labels: std::iter::once("null".to_string())
                    .chain(spec.level_labels())
                    .collect(),
                m,
                u: u[c].clone(),
                m_sessions: sessions[c],
                m_anchors: anchors,
                term_frequency: spec.term_frequency,
                group,
                part_of: spec.part_of,
                m_where_whole_differs: where_whole_differs[c].clone(),
            }
        })
        .collect();
    let mut params = Parameters::new(comparisons, 1e-4, u_pairs, em_iterations);
    params.prior = estimate_prior(settings, &params, records, candidates, compared)?;
    Ok(params)
}

/// The m of the forename's "initial" level (`j` against `john`). Anchor pairs cannot see it: the
/// sources that keep only initials (a data vendor) carry no birth date, email or phone to anchor
/// on. A pair is at the level when one of its records has only an initial and the letters agree:
/// among random pairs that is u = q * s (q the chance that one is an initial, s that first letters
/// agree), among matches m = q, so m = u / s. The other levels keep their proportions.
fn initial_m(m: &mut [f64], u: &[f64], same_letter: f64, thresholds: usize) {
    let level = 2 + thresholds;
    let (Some(&u_initial), true) = (u.get(level), level < m.len()) else {
        return;
    };
    let target = (u_initial / same_letter.max(FLOOR)).clamp(FLOOR, 0.5);
    let rest: f64 = m
        .iter()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| i + 1 != level)
        .map(|(_, x)| x)
        .sum();
    if rest <= 0.0 {
        return;
    }
    for (i, x) in m.iter_mut().enumerate().skip(1) {
        *x = if i == level {
            target
        } else {
            *x / rest * (1.0 - target)
        };
    }
}

/// The group number of each comparison (groups numbered in order of first appearance).
pub fn group_indices(settings: &Settings) -> Vec<Option<usize>> {
    let mut names: Vec<&str> = Vec::new();
    settings
        .comparisons
        .iter()
        .map(|c| {
            c.group.as_deref().map(|g| {
                names.iter().position(|x| *x == g).unwrap_or_else(|| {
                    names.push(g);
                    names.len() - 1
                })
            })
        })
        .collect()
}

/// Whether a comparison identifies a person for anchoring (surnames and addresses are shared by a
/// household; first names and birth dates are not, and emails and phones mostly not).
fn identifies(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Forename | Kind::Date | Kind::Email | Kind::Phone
    )
}

/// m of each comparison counted on its anchor pairs: candidate pairs agreeing exactly on at least
/// two person identifiers other than the comparison, one of them a first name or birth date, and
/// found by a blocking rule that does not block on the comparison's column (a pair found only by
/// blocking on a column agrees on it by construction); for a year range, pairs that agree
/// exactly on the first name and two more comparisons and differ on none. `None` where a
/// comparison has fewer than [`MIN_ANCHORS`].
///
/// Only the anchors for which `keep(comparison, levels)` holds are counted.
fn anchored_m(
    settings: &Settings,
    compared: &Compared,
    keep: impl Fn(usize, &[u8]) -> bool,
) -> Vec<Option<(Vec<f64>, usize)>> {
    let comparisons = &settings.comparisons;
    // Per comparison, the rules that do not block on its column.
    let fair_rules: Vec<u32> = comparisons
        .iter()
        .map(|c| {
            settings
                .blocking_rules
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.attach_only && r.keys.iter().all(|k| k.column != c.column))
                .fold(0u32, |mask, (i, _)| mask | (1u32 << (i % 32)))
        })
        .collect();
    let strong: Vec<bool> = comparisons.iter().map(|c| identifies(c.kind)).collect();
    let personal: Vec<bool> = comparisons
        .iter()
        .map(|c| matches!(c.kind, Kind::Forename | Kind::Date))
        .collect();
    let mut counts: Vec<Vec<f64>> = comparisons
        .iter()
        .map(|c| vec![0.0; c.level_count()])
        .collect();
    let mut anchors = vec![0usize; comparisons.len()];
    // A year range is compared only where one record knows no more than a range (a data vendor's
    // age band), and such records carry no second person identifier: its anchors are pairs that
    // agree exactly on the first name and on at least two more comparisons, and differ on none.
    let ranged: Vec<bool> = comparisons
        .iter()
        .map(|c| c.kind == Kind::YearRange)
        .collect();
    let forename: Vec<bool> = comparisons
        .iter()
        .map(|c| c.kind == Kind::Forename)
        .collect();
    for pattern in &compared.patterns {
        let (v, found_by) = (&*pattern.levels, pattern.mask);
        for c in (0..v.len()).filter(|&c| ranged[c] && v[c] != 0) {
            let others: Vec<usize> = (0..v.len()).filter(|&o| o != c && !ranged[o]).collect();
            let exact_others = others.iter().filter(|&&o| v[o] == 1).count();
            let any_off = others.iter().any(|&o| v[o] > 1);
            let first_exact = others.iter().any(|&o| forename[o] && v[o] == 1);
            if first_exact
                && exact_others >= 3
                && !any_off
                && found_by & fair_rules[c] != 0
                && keep(c, v)
            {
                counts[c][v[c] as usize] += pattern.count as f64;
                anchors[c] += usize::try_from(pattern.count).unwrap_or(usize::MAX);
            }
        }
        let exact = |c: usize| v[c] == 1;
        let strong_exact = (0..v.len()).filter(|&c| strong[c] && exact(c)).count();
        let personal_exact = (0..v.len()).filter(|&c| personal[c] && exact(c)).count();
        if strong_exact < 2 || personal_exact == 0 {
            continue;
        }
        for (c, &l) in v.iter().enumerate() {
            if ranged[c] {
                continue;
            }
            let own_strong = usize::from(strong[c] && exact(c));
            let own_personal = usize::from(personal[c] && exact(c));
            if l == 0
                || strong_exact - own_strong < 2
                || personal_exact - own_personal == 0
                || found_by & fair_rules[c] == 0
                || !keep(c, v)
            {
                continue;
            }
            counts[c][l as usize] += pattern.count as f64;
            anchors[c] += usize::try_from(pattern.count).unwrap_or(usize::MAX);
        }
    }
    counts
        .into_iter()
        .zip(anchors)
        .map(|(mut m, n)| {
            if n < MIN_ANCHORS {
                return None;
            }
            // Half a pair per level: a level never seen among anchors is rare, not impossible.
            for x in m.iter_mut().skip(1) {
                *x += 0.5;
            }
            normalise(&mut m);
            Some((m, n))
        })
        .collect()
}

/// Bins per bit of the histogram of match weights that [`estimate_prior`] iterates over.
const PRIOR_BINS_PER_BIT: f64 = 64.0;

/// The fixed point of lambda = sum of match probabilities of the candidates / all pairs. The
/// candidates' Bayes factors (prior aside) do not change while lambda does, so they are counted
/// once into a histogram of 1/64-bit bins (a few thousand bins in place of a weight per pair, which
/// at fifty million pairs would be 400 MB) and each iteration sums over the bins.
fn estimate_prior(
    settings: &Settings,
    params: &Parameters,
    records: &Records,
    candidates: &Candidates,
    compared: &Compared,
) -> crate::Result<f64> {
    let n = records.len() as f64;
    let all_pairs = (n * (n - 1.0) / 2.0).max(1.0);
    let linking = crate::blocking::linking_rules(settings);
    let weigher = params.weigher(records);
    // Counted part by part on every core; the counts are whole numbers, so their sums do not
    // depend on how the pairs were split.
    let parts = compared.for_each_in_parts(
        candidates,
        || (Histogram::default(), 0usize),
        |(bins, counted), a, _, _, p| {
            // Pairs only an attaching rule found are not counted: they do not train the model.
            if p.mask & linking != 0 {
                let w = weigher.evidence_weight(a as usize, &p.levels);
                bins.add(w);
                *counted += 1;
            }
        },
    );
    let mut bins = Histogram::default();
    let mut counted = 0usize;
    for (part, n) in parts? {
        bins.merge(part);
        counted += n;
    }
    Ok(prior_fixed_point(&bins.into_bins(), counted, all_pairs))
}

/// Match weights counted into bins of 1/[`PRIOR_BINS_PER_BIT`] bit, for fifty million pairs: a
/// run of counts from the lowest bin seen (a weight's bin is found by arithmetic, not searched
/// for in a map per pair), and a map for bins the run cannot reach within
/// [`Histogram::DENSE_BINS`] (an infinite weight, a freak value).
#[derive(Default)]
struct Histogram {
    /// The bin of `dense[0]`.
    first: i64,
    dense: Vec<f64>,
    sparse: std::collections::BTreeMap<i64, f64>,
}

impl Histogram {
    /// Bins held in the run: 2^20, a run of 16,384 bits of weight (8 MB at most).
    const DENSE_BINS: i64 = 1 << 20;

    fn add(&mut self, weight: f64) {
        self.add_count((weight * PRIOR_BINS_PER_BIT).round() as i64, 1.0);
    }

    fn add_count(&mut self, bin: i64, count: f64) {
        if self.dense.is_empty() {
            self.first = bin;
        }
        // A bin below the run moves its start down, while the run stays within its bound.
        let room = usize::try_from(Self::DENSE_BINS)
            .unwrap_or(usize::MAX)
            .saturating_sub(self.dense.len());
        if let Some(below) = self
            .first
            .checked_sub(bin)
            .and_then(|d| usize::try_from(d).ok())
            && below > 0
            && below <= room
        {
            self.dense.splice(0..0, std::iter::repeat_n(0.0, below));
            self.first = bin;
        }
        let at = bin
            .checked_sub(self.first)
            .filter(|i| (0..Self::DENSE_BINS).contains(i))
            .and_then(|i| usize::try_from(i).ok());
        match at {
            Some(i) => {
                if i >= self.dense.len() {
                    self.dense.resize(i + 1, 0.0);
                }
                if let Some(c) = self.dense.get_mut(i) {
                    *c += count;
                }
            }
            None => *self.sparse.entry(bin).or_insert(0.0) += count,
        }
    }

    fn merge(&mut self, other: Histogram) {
        for (bin, count) in other.nonempty() {
            self.add_count(bin, count);
        }
    }

    /// The bins with a count, in order.
    fn nonempty(self) -> impl Iterator<Item = (i64, f64)> {
        let first = self.first;
        let dense = self
            .dense
            .into_iter()
            .enumerate()
            .filter(|(_, c)| *c > 0.0)
            .map(move |(i, c)| (first + i64::try_from(i).unwrap_or(i64::MAX), c));
        let mut all: Vec<(i64, f64)> = self.sparse.into_iter().chain(dense).collect();
        // No bin is in both: the run's start only moves down, to a bin within its bound, so a bin
        // the map took is out of the run's reach for good.
        all.sort_by_key(|(bin, _)| *bin);
        all.into_iter()
    }

    /// The bins as (bin's weight, count), in order of weight.
    fn into_bins(self) -> Vec<(f64, f64)> {
        self.nonempty()
            .map(|(bin, count)| (bin as f64 / PRIOR_BINS_PER_BIT, count))
            .collect()
    }
}

/// Match weights counted into bins of 1/[`PRIOR_BINS_PER_BIT`] bit: (bin's weight, count).
#[cfg(test)]
fn weight_histogram(weights: impl Iterator<Item = f64>) -> Vec<(f64, f64)> {
    let mut bins = Histogram::default();
    for w in weights {
        bins.add(w);
    }
    bins.into_bins()
}

/// lambda = sum over the candidates (`bins` of weight and count) of their match probability at
/// prior lambda, divided by `all_pairs`, iterated to its fixed point.
fn prior_fixed_point(bins: &[(f64, f64)], candidates: usize, all_pairs: f64) -> f64 {
    let mut lambda = (candidates as f64 / all_pairs / 4.0).clamp(1e-12, 0.5);
    for _ in 0..200 {
        let odds = (lambda / (1.0 - lambda)).log2();
        let expected: f64 = bins
            .iter()
            .map(|(w, count)| count * probability(odds + w))
            .sum();
        let next = (expected / all_pairs).clamp(1e-12, 0.5);
        if (next - lambda).abs() <= lambda * 1e-6 {
            return next;
        }
        lambda = next;
    }
    lambda
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Column;

    #[test]
    fn the_weight_histogram_counts_as_a_map_of_bins_would_whatever_the_weights() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut weights: Vec<f64> = (0..20_000).map(|_| rng.random_range(-40.0..60.0)).collect();
        // Far outside any run: infinities, a freak value, values far below that the run cannot
        // reach (to the map) and some it can (its start moves down to them).
        weights.extend([
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -20_000.0,
            -17_000.0,
            -17_000.0,
        ]);
        weights.extend((0..50).map(|i| -16_000.0 + f64::from(i)));
        let mut expected = std::collections::BTreeMap::<i64, f64>::new();
        for w in &weights {
            *expected
                .entry((w * PRIOR_BINS_PER_BIT).round() as i64)
                .or_insert(0.0) += 1.0;
        }
        let expected: Vec<(f64, f64)> = expected
            .into_iter()
            .map(|(bin, count)| (bin as f64 / PRIOR_BINS_PER_BIT, count))
            .collect();
        assert_eq!(weight_histogram(weights.iter().copied()), expected);
        // Counted in parts and merged, the same.
        let mut merged = Histogram::default();
        for part in weights.chunks(3_000) {
            let mut h = Histogram::default();
            for w in part {
                h.add(*w);
            }
            merged.merge(h);
        }
        assert_eq!(merged.into_bins(), expected);
    }

    #[test]
    fn exact_agreement_is_not_held_to_a_floor_as_the_base_grows() {
        // Two million records, each value held by two (a person's mobile on two records): the
        // share of agreeing pairs is 1 / (2,000,000 - 1), below the 1e-6 that every other
        // probability is kept above. Held to it, the weight of agreeing stopped growing with the
        // base while the prior kept shrinking.
        let n: u32 = 2_000_000;
        let mut pairs = Column::default();
        pairs.codes = (0..n).map(|i| i / 2).collect();
        pairs.values = (0..n / 2).map(|i| i.to_string()).collect();
        pairs.counts = vec![2; (n / 2) as usize];
        pairs.non_null = n;
        let u = exact_agreement(&pairs).unwrap_or(1.0);
        assert!((u - 1.0 / f64::from(n - 1)).abs() < 1e-15, "u = {u}");
        assert!(u < FLOOR);
        // No two records share a value: counted as one pair that did, never 0.
        let mut lone = Column::default();
        lone.codes = (0..n).collect();
        lone.values = (0..n).map(|i| i.to_string()).collect();
        lone.counts = vec![1; n as usize];
        lone.non_null = n;
        let u = exact_agreement(&lone).unwrap_or(1.0);
        let expected = 2.0 / (f64::from(n) * f64::from(n - 1));
        assert!((u - expected).abs() < 1e-20, "u = {u}");
        // A value one record of two million holds is a share of 5e-7 for term frequencies.
        assert!((lone.frequency(0) - 5e-7).abs() < 1e-18);
    }

    #[test]
    fn exact_agreement_is_counted_over_every_record_not_sampled() -> crate::Result<()> {
        let settings = crate::spec::IdentitySpec::default().validate()?;
        let mut records = Records::new(&settings);
        // first_name, last_name, birth_date, street, postcode, city, phone, email: 1,200 records,
        // 1,100 of them with a birth date among 40 days (27 or 28 records each).
        for i in 0..1200u32 {
            let id = i.to_string();
            let first = format!("name{i}");
            let born = format!("1980-01-{:02}", 1 + i % 28);
            let born2 = format!("1981-02-{:02}", 1 + i % 12);
            let birth = match i {
                0..100 => None,
                100..800 => Some(born.as_str()),
                _ => Some(born2.as_str()),
            };
            records.push(
                &id,
                "s",
                &[
                    Some(&first),
                    Some("lee"),
                    birth,
                    None,
                    None,
                    None,
                    None,
                    None,
                ],
            );
        }
        let date = settings
            .comparisons
            .iter()
            .position(|c| c.column == "birth_date")
            .unwrap_or(usize::MAX);
        let mut per_day = std::collections::HashMap::new();
        for i in 100..1200u32 {
            *per_day
                .entry((i >= 800, if i < 800 { i % 28 } else { i % 12 }))
                .or_insert(0u64) += 1;
        }
        let same: u64 = per_day.values().map(|n| n * (n - 1)).sum();
        let expected = same as f64 / (1100.0 * 1099.0);
        let exact = exact_agreement(&records.columns[date]).unwrap_or(f64::NAN);
        assert!(
            (exact - expected).abs() < 1e-12,
            "{exact} against {expected}"
        );
        let (u, _, _) = estimate_u(&settings, &records)?;
        assert!(
            (u[date][1] - exact).abs() < 1e-12,
            "{} against {exact}",
            u[date][1]
        );
        // The other levels share the rest.
        let total: f64 = u[date].iter().skip(1).sum();
        assert!((total - 1.0).abs() < 1e-3, "{total}");
        // Fewer records than EXACT_U_MIN_RECORDS keep the sampled share.
        let mut few = Records::new(&settings);
        for i in 0..10u32 {
            few.push(
                &i.to_string(),
                "s",
                &[
                    Some("ann"),
                    Some("lee"),
                    Some("1980-01-01"),
                    None,
                    None,
                    None,
                    None,
                    None,
                ],
            );
        }
        assert!(exact_agreement(&few.columns[date]).is_none());
        Ok(())
    }

    #[test]
    fn the_prior_from_a_histogram_of_weights_is_the_prior_from_every_weight() {
        // 200,000 candidate weights spread from -30 to +40 bits among 10^10 pairs.
        let weights: Vec<f64> = (0..200_000u32)
            .map(|i| -30.0 + 70.0 * f64::from(i.wrapping_mul(2_654_435_761) % 100_000) / 1e5)
            .collect();
        let exact: Vec<(f64, f64)> = weights.iter().map(|w| (*w, 1.0)).collect();
        let binned = weight_histogram(weights.iter().copied());
        assert!(binned.len() < 5_000, "{} bins", binned.len());
        let (a, b) = (
            prior_fixed_point(&exact, weights.len(), 1e10),
            prior_fixed_point(&binned, weights.len(), 1e10),
        );
        assert!((a - b).abs() / a < 0.005, "exact {a}, binned {b}");
    }

    #[test]
    fn starting_m_prefers_better_levels_and_sums_to_one() {
        let m = starting_m(5); // null, exact, two partial, else
        assert!(m[1] > m[2] && m[2] == m[3] && m[3] > m[4]);
        assert!((m.iter().skip(1).sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn em_recovers_m_from_a_known_mixture() {
        // Two comparisons with levels null, exact, else. 30% matches with m = (0.9, 0.1); non-matches
        // with u = (0.05, 0.95). The expected pattern counts of 10,000 pairs:
        let (mm, uu, share) = ([0.0, 0.9, 0.1], [0.0, 0.05, 0.95], 0.3);
        let mut pats = Vec::new();
        for a in 1..=2u8 {
            for b in 1..=2u8 {
                let count = 10_000.0
                    * (share * mm[a as usize] * mm[b as usize]
                        + (1.0 - share) * uu[a as usize] * uu[b as usize]);
                pats.push((vec![a, b], count));
            }
        }
        let u = vec![uu.to_vec(), uu.to_vec()];
        let mut m = vec![starting_m(3), starting_m(3)];
        em_session(&pats, &mut m, &u, &[false, false]);
        for c in &m {
            assert!((c[1] - 0.9).abs() < 0.01, "{m:?}");
        }
    }

    fn params(weights: &[(Option<usize>, f64)]) -> Parameters {
        // Levels: null, exact (weight w), else (weight -w / 2), with u fixed at 1/2^10.
        let u = 2f64.powi(-10);
        Parameters::new(
            weights
                .iter()
                .enumerate()
                .map(|(i, (group, w))| ComparisonParameters {
                    column: format!("c{i}"),
                    labels: vec!["null".into(), "exact".into(), "else".into()],
                    m: vec![0.0, u * w.exp2(), (1.0 - u) * (-w / 2.0).exp2()],
                    u: vec![0.0, u, 1.0 - u],
                    m_sessions: 1,
                    m_anchors: 0,
                    term_frequency: false,
                    group: *group,
                    part_of: None,
                    m_where_whole_differs: None,
                })
                .collect(),
            0.5,
            0,
            Vec::new(),
        )
    }

    #[test]
    fn a_part_of_an_address_whose_whole_differs_weighs_what_it_weighs_among_such_pairs() {
        // c0 a street (exact 12), c1 its postcode (exact 7), on their own (no group).
        let mut p = params(&[(None, 12.0), (None, 7.0)]);
        let r = Records::default();
        let whole_differs = |p: &Parameters| p.evidence_weight(&r, 0, &[2, 1]);
        let before = whole_differs(&p);
        assert!((before - (-6.0 + 7.0)).abs() < 1e-9, "{before}");
        // Among the pairs of one person at two streets, 1 in 512 share the postcode: u is 1 in
        // 1024, so agreeing on it is worth one bit there, not seven.
        let u = 2f64.powi(-10);
        p.comparisons[1].part_of = Some(0);
        p.comparisons[1].m_where_whole_differs = Some((vec![0.0, 2.0 * u, 1.0 - 2.0 * u], 500));
        let after = whole_differs(&p);
        assert!((after - (-6.0 + 1.0)).abs() < 1e-9, "{after}");
        // The street agreeing or unknown: the postcode keeps its own weight.
        assert!((p.evidence_weight(&r, 0, &[1, 1]) - 19.0).abs() < 1e-9);
        assert!((p.evidence_weight(&r, 0, &[0, 1]) - 7.0).abs() < 1e-9);
        // Never below nothing: fewer such pairs share the postcode than random ones.
        p.comparisons[1].m_where_whole_differs = Some((vec![0.0, u / 4.0, 1.0 - u / 4.0], 500));
        assert!((whole_differs(&p) - (-6.0)).abs() < 1e-9);
        // The postcode disagreeing keeps its weight.
        assert!((p.evidence_weight(&r, 0, &[2, 2]) - (-6.0 - 3.5)).abs() < 1e-9);
    }

    #[test]
    fn a_group_adds_its_agreements_up_to_its_cap_and_only_its_strongest_disagreement() {
        // c0 and c1 (exact 10 and 8) are one group; c2 (exact 4) stands alone.
        let p = params(&[(Some(0), 10.0), (Some(0), 8.0), (None, 4.0)]);
        let r = Records::default();
        let w = |levels: &[u8]| p.evidence_weight(&r, 0, levels);
        assert!((p.group_cap(0) - 10.0).abs() < 1e-9);
        // Both agree: the cap, 10, not 18; the lone comparison adds its own 4.
        assert!((w(&[1, 1, 1]) - 14.0).abs() < 1e-9, "{}", w(&[1, 1, 1]));
        // One agrees: its own weight.
        assert!((w(&[0, 1, 0]) - 8.0).abs() < 1e-9);
        // Both disagree: only the stronger disagreement (-5), not -9.
        let both = w(&[2, 2, 0]);
        assert!((both - p.comparisons[0].weight(2)).abs() < 1e-9, "{both}");
        // The per-comparison weights shown sum to the same total.
        for levels in [[1u8, 1, 1], [2, 2, 2], [1, 2, 1]] {
            let shown: f64 = p.weights(&r, 0, &levels).0.iter().sum();
            assert!((shown - w(&levels)).abs() < 1e-9, "{levels:?}");
        }
    }

    #[test]
    fn agreement_on_one_persons_own_value_counts_outside_the_group() {
        // c0 and c1 are one group (exact 10 and 8); c1's value 0 is one person's (a mobile),
        // value 1 a family's landline.
        let p = params(&[(Some(0), 10.0), (Some(0), 8.0)]);
        let mut r = Records::default();
        let mut phone = crate::records::Column::default();
        phone.codes = vec![0, 0, 1, 1];
        phone.shared = vec![false, true];
        r.columns = vec![crate::records::Column::default(), phone];
        let w = |a: usize| p.evidence_weight(&r, a, &[1, 1]);
        // The mobile adds its full 8 beside the group's 10; the landline is held to the cap.
        assert!((w(0) - 18.0).abs() < 1e-9, "{}", w(0));
        assert!((w(2) - 10.0).abs() < 1e-9, "{}", w(2));
        for a in [0, 2] {
            let shown: f64 = p.weights(&r, a, &[1, 1]).0.iter().sum();
            assert!((shown - w(a)).abs() < 1e-9, "record {a}");
        }
    }

    /// Pairs of every rule's blocks (mask 0b11111), each pattern of levels `n` times.
    fn repeated(patterns: &[(&[u8], usize)]) -> Compared {
        let width = patterns.first().map_or(1, |(p, _)| p.len().max(1));
        let mut levels = Vec::new();
        for (pattern, n) in patterns {
            for _ in 0..*n {
                levels.extend_from_slice(pattern);
            }
        }
        Compared::from_levels(&vec![0b11111; levels.len() / width], &levels, width)
    }

    #[test]
    fn the_parts_of_an_address_are_anchored_again_where_the_street_differs() -> Result<(), String> {
        let settings = crate::spec::IdentitySpec::default()
            .validate()
            .map_err(|e| e.to_string())?;
        let (street, postcode) = (3usize, 4usize);
        assert_eq!(settings.comparisons[postcode].part_of, Some(street));
        // One person's records: 300 at one address, 200 after a move to another postcode, 50
        // after a move within the postcode (first, last, birth, street, postcode, city, phone,
        // email).
        let same = [1u8, 1, 1, 1, 1, 1, 1, 1];
        let far = [1u8, 1, 1, 3, 4, 4, 1, 1];
        let near = [1u8, 1, 1, 3, 1, 1, 1, 1];
        let compared = repeated(&[(&same, 300), (&far, 200), (&near, 50)]);
        let everywhere = anchored_m(&settings, &compared, |_, _| true);
        let pc = everywhere[postcode]
            .as_ref()
            .ok_or("postcode not anchored")?;
        assert!((pc.0[1] - 350.0 / 550.0).abs() < 0.01, "{:?}", pc.0);
        let cp = &settings.comparisons;
        // The candidates the patterns are of (the walks check that every pair has its pattern).
        let pairs = Candidates::from_pairs(vec![(0, 1, 0b11111); 550]);
        let fitted = fit(&settings, &Records::new(&settings), &pairs, &compared)
            .map_err(|e| e.to_string())?;
        let given = fitted.comparisons[postcode]
            .m_where_whole_differs
            .as_ref()
            .ok_or("postcode not anchored where the street differs")?;
        assert_eq!(given.1, 250, "the movers are its anchors");
        assert!((given.0[1] - 50.0 / 250.0).abs() < 0.01, "{:?}", given.0);
        // The street itself, the first name and the others are not parts of an address.
        for c in [0, street, 6, 7] {
            assert!(
                fitted.comparisons[c].m_where_whole_differs.is_none(),
                "{}",
                cp[c].column
            );
        }
        Ok(())
    }

    #[test]
    fn anchors_keep_household_members_from_posing_as_matches() -> Result<(), String> {
        let settings = crate::spec::IdentitySpec::default()
            .validate()
            .map_err(|e| e.to_string())?;
        // Default comparisons: first, last, birth, street, postcode, city, phone, email; first
        // and birth have 6 levels (else 5), email 5 (else 4).
        let household = [5u8, 1, 5, 1, 1, 1, 1, 4]; // another person, same home and landline
        let same = [1u8, 1, 1, 1, 1, 1, 1, 1];
        let moved = [1u8, 1, 1, 3, 4, 4, 3, 1]; // the same person after a move
        let mut levels = Vec::new();
        for _ in 0..2_000 {
            levels.extend_from_slice(&household);
        }
        for _ in 0..300 {
            levels.extend_from_slice(&same);
        }
        for _ in 0..100 {
            levels.extend_from_slice(&moved);
        }
        let pairs = levels.len() / household.len();
        let compared = Compared::from_levels(&vec![0b11111; pairs], &levels, 8);
        let m = anchored_m(&settings, &compared, |_, _| true);
        // First names differ among the household pairs only: the anchors (which need two exact
        // person identifiers besides the first name) never include them.
        let first = m[0].as_ref().ok_or("first name not anchored")?;
        assert!(first.0[5] < 0.01, "m(first name differs) {:?}", first.0);
        // The street differs for the movers: a quarter of 400 anchors.
        let street = m[3].as_ref().ok_or("street not anchored")?;
        assert!((street.0[3] - 0.25).abs() < 0.01, "{:?}", street.0);
        // EM on the same pairs takes the households for matches.
        let ignore = vec![false; 8];
        let pats = patterns(levels.chunks_exact(8).map(|v| (v, 1.0)), &ignore);
        let mut em: Vec<Vec<f64>> = settings
            .comparisons
            .iter()
            .map(|c| starting_m(c.level_count()))
            .collect();
        let u: Vec<Vec<f64>> = settings
            .comparisons
            .iter()
            .map(|c| {
                let mut u = vec![0.01; c.level_count()];
                u[c.level_count() - 1] = 0.9;
                u
            })
            .collect();
        em_session(&pats, &mut em, &u, &ignore);
        assert!(em[0][5] > 0.5, "EM m(first name differs) {:?}", em[0]);
        Ok(())
    }

    #[test]
    fn a_year_range_is_anchored_on_pairs_that_agree_on_everything_else() -> Result<(), String> {
        let mut comparisons = crate::spec::default_comparisons();
        comparisons.push(crate::spec::ComparisonSpec {
            column: "birth_years".into(),
            kind: Kind::YearRange,
            thresholds: None,
            term_frequency: false,
            group: None,
            part_of: None,
        });
        let settings = crate::spec::IdentitySpec {
            comparisons: Some(comparisons),
            ..crate::spec::IdentitySpec::default()
        }
        .validate()
        .map_err(|e| e.to_string())?;
        // A vendor record (name and address, an age band) against a dated record: first, last,
        // birth (null), street, postcode, city, phone and email (null), then the year range
        // (1 within, 2 else).
        let within = [1u8, 1, 0, 1, 1, 1, 0, 0, 1];
        let outside = [1u8, 1, 0, 1, 1, 1, 0, 0, 2];
        let parent = [5u8, 1, 0, 1, 1, 1, 0, 0, 2]; // another member of the home
        let compared = repeated(&[(&within, 950), (&outside, 50), (&parent, 3_000)]);
        let m = anchored_m(&settings, &compared, |_, _| true);
        let years = m[8].as_ref().ok_or("year range not anchored")?;
        assert_eq!(years.1, 1_000, "the household's pairs are no anchors");
        assert!((years.0[1] - 0.95).abs() < 0.01, "{:?}", years.0);
        Ok(())
    }

    #[test]
    fn the_initial_level_gets_m_from_u_and_the_first_letter_share() {
        // null, exact, jw 0.92, jw 0.80, initial, else.
        let mut m = vec![0.0, 0.8, 0.1, 0.05, 0.0, 0.05];
        let u = vec![0.0, 0.006, 0.001, 0.005, 0.007, 0.981];
        initial_m(&mut m, &u, 0.07, 2);
        assert!((m[4] - 0.1).abs() < 1e-9, "{m:?}");
        assert!((m.iter().skip(1).sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(
            (m[1] / m[2] - 8.0).abs() < 1e-9,
            "the other levels keep their proportions"
        );
    }

    #[test]
    fn probability_of_weight() {
        assert!((probability(0.0) - 0.5).abs() < 1e-12);
        assert!((probability(10.0) - 1024.0 / 1025.0).abs() < 1e-12);
    }
}
