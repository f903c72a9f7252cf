//! The Fellegi-Sunter model: for each comparison level, m (the probability of the level among
//! matching pairs) and u (among non-matching pairs); a pair's match weight is the log2 of the prior
//! odds plus, per comparison, log2(m/u) of its level.
//!
//! - u comes from random pairs: nearly all of them are non-matches.
//! - m comes from expectation maximisation without labels, one session per blocking rule over the
//!   pairs that rule produces, u held fixed; the columns a rule blocks on are not estimated in its
//!   session (they agree by construction there). Each m is the mean over the sessions that
//!   estimated it, as Splink does.
//! - The prior, the probability that two random records match, is the fixed point of
//!   lambda = (expected matches among candidates) / (all pairs), non-candidates counting as
//!   non-matches.
//! - Term frequencies: on a comparison with `term_frequency`, exact agreement on a value held by a
//!   share f of the records uses u = f instead of the average u, so a rare surname counts more.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::blocking::Candidates;
use crate::compare;
use crate::records::Records;
use crate::spec::Settings;

/// Probabilities are kept inside [FLOOR, 1 - FLOOR] so that no level has an infinite weight.
const FLOOR: f64 = 1e-6;
const EM_MAX_ITERATIONS: usize = 100;
const EM_TOLERANCE: f64 = 1e-5;

/// Parameters of one comparison; index 0 (null) is unused and weighs nothing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ComparisonParameters {
    pub column: String,
    pub labels: Vec<String>,
    pub m: Vec<f64>,
    pub u: Vec<f64>,
    /// Sessions that estimated m (0: m is the starting guess, reported as a warning).
    pub m_sessions: usize,
    pub term_frequency: bool,
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
}

impl Parameters {
    /// log2 of the prior odds.
    pub fn prior_weight(&self) -> f64 {
        (self.prior / (1.0 - self.prior)).log2()
    }

    /// The weight of comparison `c` at `level` for a pair whose first record is `a` (term
    /// frequency included), and the term-frequency part alone.
    fn comparison_weight(&self, records: &Records, c: usize, a: usize, level: u8) -> (f64, f64) {
        let Some(p) = self.comparisons.get(c) else {
            return (0.0, 0.0);
        };
        let adjust = if level == 1 && p.term_frequency {
            records.columns.get(c).map_or(0.0, |col| {
                let code = col.codes.get(a).copied().unwrap_or(crate::records::NULL);
                let f = col.frequency(code).clamp(FLOOR, 1.0);
                (p.u[1] / f).log2()
            })
        } else {
            0.0
        };
        (p.weight(level) + adjust, adjust)
    }

    /// Each comparison's weight for a pair with levels `levels` (term frequency included), and the
    /// term-frequency part alone.
    pub fn weights(&self, records: &Records, a: usize, levels: &[u8]) -> (Vec<f64>, Vec<f64>) {
        levels
            .iter()
            .enumerate()
            .map(|(c, &level)| self.comparison_weight(records, c, a, level))
            .unzip()
    }

    /// The sum of the comparisons' weights of a pair, prior aside (no allocation: this runs for
    /// every candidate pair).
    pub fn evidence_weight(&self, records: &Records, a: usize, levels: &[u8]) -> f64 {
        levels
            .iter()
            .enumerate()
            .map(|(c, &level)| self.comparison_weight(records, c, a, level).0)
            .sum()
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

/// u from `n` random pairs, seeded.
fn estimate_u(settings: &Settings, records: &Records) -> (Vec<Vec<f64>>, u64) {
    let n = records.len();
    let mut counts: Vec<Vec<f64>> = settings
        .comparisons
        .iter()
        .map(|c| vec![0.0; c.level_count()])
        .collect();
    let mut drawn = 0u64;
    if n >= 2 {
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let mut levels = Vec::with_capacity(settings.comparisons.len());
        let all_pairs = (n as u128) * (n as u128 - 1) / 2;
        let draws = (settings.u_sample_pairs as u128).min(all_pairs) as usize;
        for _ in 0..draws {
            let a = rng.random_range(0..n);
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            levels.clear();
            compare::vector(&settings.comparisons, records, a, b, &mut levels);
            for (c, &l) in levels.iter().enumerate() {
                counts[c][l as usize] += 1.0;
            }
            drawn += 1;
        }
    }
    for c in &mut counts {
        // Add-one smoothing: a level never seen among random pairs is rare, not impossible.
        for x in c.iter_mut().skip(1) {
            *x += 1.0;
        }
        normalise(c);
    }
    (counts, drawn)
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

/// Distinct comparison vectors and how many pairs have each.
pub(crate) fn patterns<'a>(
    levels: impl Iterator<Item = &'a [u8]>,
    ignore: &[bool],
) -> Vec<(Vec<u8>, f64)> {
    let mut map: HashMap<Vec<u8>, f64> = HashMap::new();
    for v in levels {
        let key: Vec<u8> = v
            .iter()
            .zip(ignore)
            .map(|(l, skip)| if *skip { 0 } else { *l })
            .collect();
        *map.entry(key).or_insert(0.0) += 1.0;
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

/// Fits the model to the candidate pairs, whose comparison vectors are `levels` (one slice of
/// `settings.comparisons.len()` per pair).
pub fn fit(
    settings: &Settings,
    records: &Records,
    candidates: &Candidates,
    levels: &[u8],
) -> Parameters {
    let width = settings.comparisons.len();
    let (u, u_pairs) = estimate_u(settings, records);
    let start: Vec<Vec<f64>> = settings
        .comparisons
        .iter()
        .map(|c| starting_m(c.level_count()))
        .collect();
    let mut sums: Vec<Vec<f64>> = start.iter().map(|m| vec![0.0; m.len()]).collect();
    let mut sessions = vec![0usize; width];
    let mut em_iterations = Vec::new();
    for (r, rule) in settings.blocking_rules.iter().enumerate() {
        let ignore: Vec<bool> = settings
            .comparisons
            .iter()
            .map(|c| rule.keys.iter().any(|k| k.column == c.column))
            .collect();
        if ignore.iter().all(|x| *x) {
            continue;
        }
        let session = levels
            .chunks_exact(width.max(1))
            .zip(&candidates.rules)
            .filter(|(_, mask)| *mask & (1 << r) != 0)
            .map(|(v, _)| v);
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
    let comparisons: Vec<ComparisonParameters> = settings
        .comparisons
        .iter()
        .enumerate()
        .map(|(c, spec)| {
            let m = if sessions[c] == 0 {
                start[c].clone()
            } else {
                sums[c].iter().map(|s| s / sessions[c] as f64).collect()
            };
            ComparisonParameters {
                column: spec.column.clone(),
                labels: std::iter::once("null".to_string())
                    .chain(spec.level_labels())
                    .collect(),
                m,
                u: u[c].clone(),
                m_sessions: sessions[c],
                term_frequency: spec.term_frequency,
            }
        })
        .collect();
    let mut params = Parameters {
        comparisons,
        prior: 1e-4,
        u_pairs,
        em_iterations,
    };
    params.prior = estimate_prior(&params, records, candidates, levels);
    params
}

/// The fixed point of lambda = sum of match probabilities of the candidates / all pairs.
fn estimate_prior(
    params: &Parameters,
    records: &Records,
    candidates: &Candidates,
    levels: &[u8],
) -> f64 {
    let n = records.len() as f64;
    let all_pairs = (n * (n - 1.0) / 2.0).max(1.0);
    let width = params.comparisons.len().max(1);
    // Each candidate's Bayes factor (prior aside) does not change while lambda does.
    let log_bf: Vec<f64> = levels
        .chunks_exact(width)
        .zip(&candidates.pairs)
        .map(|(v, (a, _))| params.evidence_weight(records, *a as usize, v))
        .collect();
    let mut lambda = (candidates.pairs.len() as f64 / all_pairs / 4.0).clamp(1e-12, 0.5);
    for _ in 0..200 {
        let odds = (lambda / (1.0 - lambda)).log2();
        let expected: f64 = log_bf.iter().map(|w| probability(odds + w)).sum();
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

    #[test]
    fn probability_of_weight() {
        assert!((probability(0.0) - 0.5).abs() < 1e-12);
        assert!((probability(10.0) - 1024.0 / 1025.0).abs() < 1e-12);
    }
}
