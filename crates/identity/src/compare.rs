//! Comparison levels: for each compared column, how closely two records agree. Level 0 is "one of
//! them is null" (no evidence either way), level 1 is exact agreement, then the kind's partial levels
//! best first, and the last level is "else" (disagreement).

use hashbrown::HashMap;

use crate::records::{Column, NULL, Records};
use crate::spec::{Comparison, Kind};

/// The level of agreement of records `a` and `b` on one column.
pub fn level(comparison: &Comparison, column: &Column, a: usize, b: usize) -> u8 {
    let (ca, cb) = (
        column.codes.get(a).copied().unwrap_or(NULL),
        column.codes.get(b).copied().unwrap_or(NULL),
    );
    if ca == NULL || cb == NULL {
        return 0;
    }
    if comparison.kind == Kind::YearRange {
        let (la, ha, _) = column.dates.get(ca as usize).copied().unwrap_or((0, 0, 0));
        let (lb, hb, _) = column.dates.get(cb as usize).copied().unwrap_or((0, 0, 0));
        let (ha, hb) = (ha as i32, hb as i32);
        return if la == ha && lb == hb {
            0 // both know the year: the birth date compares them
        } else if la <= hb && lb <= ha {
            1
        } else {
            2
        };
    }
    if ca == cb {
        return 1;
    }
    let (Some(va), Some(vb)) = (column.value(a), column.value(b)) else {
        return 0;
    };
    let partial = match comparison.kind {
        Kind::Forename => jaro_winkler_level(va, vb, &comparison.thresholds)
            .or_else(|| initial(va, vb).then_some(comparison.thresholds.len())),
        Kind::Name => jaro_winkler_level(va, vb, &comparison.thresholds),
        Kind::Address | Kind::Text => {
            let d = bounded_levenshtein(va, vb, &comparison.thresholds);
            comparison.thresholds.iter().position(|t| d <= *t)
        }
        Kind::Email => {
            if local(va).is_some_and(|l| Some(l) == local(vb)) {
                Some(0)
            } else {
                let d = bounded_levenshtein(va, vb, &comparison.thresholds);
                comparison
                    .thresholds
                    .iter()
                    .position(|t| d <= *t)
                    .map(|i| i + 1)
            }
        }
        Kind::Postcode => {
            if cut(va, 2).is_some_and(|x| Some(x) == cut(vb, 2)) {
                Some(0)
            } else if cut(va, 3).is_some_and(|x| Some(x) == cut(vb, 3)) {
                Some(1)
            } else {
                None
            }
        }
        Kind::Phone => (va.len() >= 8 && vb.len() >= 8 && tail(va) == tail(vb)).then_some(0),
        Kind::Date => {
            let (ya, ma, da) = column.dates.get(ca as usize).copied().unwrap_or((0, 0, 0));
            let (yb, mb, db) = column.dates.get(cb as usize).copied().unwrap_or((0, 0, 0));
            if ya == yb && ma == db && da == mb {
                Some(0)
            } else if ya == yb && ma == mb {
                Some(1)
            } else if ya == yb {
                Some(2)
            } else {
                None
            }
        }
        Kind::Exact | Kind::YearRange => None,
    };
    let labels = comparison.level_count() - 2; // exact and else aside
    match partial {
        Some(i) => u8::try_from(2 + i.min(labels)).unwrap_or(u8::MAX),
        None => u8::try_from(comparison.level_count() - 1).unwrap_or(u8::MAX),
    }
}

/// One name is a single letter, the other's first (`j` and `john`).
fn initial(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.chars().count() == 1 && long.starts_with(short)
}

/// The local part of an email address.
fn local(email: &str) -> Option<&str> {
    email.split_once('@').map(|(l, _)| l)
}

/// All but the last `n` characters, when something is left.
fn cut(s: &str, n: usize) -> Option<&str> {
    s.get(..s.len().checked_sub(n + 1)? + 1)
}

/// The last 7 digits of a phone number.
fn tail(s: &str) -> Option<&str> {
    s.get(s.len().saturating_sub(7)..)
}

/// Levenshtein distance, or a value above the largest threshold when the distance is above it
/// (bit-parallel, and stopped as soon as every level is ruled out).
fn bounded_levenshtein(a: &str, b: &str, thresholds: &[f64]) -> f64 {
    let max = thresholds.iter().copied().fold(0.0, f64::max);
    // Distances are whole numbers: at most `max` is at most its floor.
    let cutoff = max.floor() as usize;
    let args = rapidfuzz::distance::levenshtein::Args::default().score_cutoff(cutoff);
    match rapidfuzz::distance::levenshtein::distance_with_args(a.chars(), b.chars(), &args) {
        Some(d) => d as f64,
        None => max + 1.0,
    }
}

/// The first of `thresholds` that the Jaro-Winkler similarity of `a` and `b` reaches. Pairs that
/// cannot reach the lowest are ruled out from their lengths and letters alone, without the
/// similarity (most pairs of names in a block share few letters).
fn jaro_winkler_level(a: &str, b: &str, thresholds: &[f64]) -> Option<usize> {
    let lowest = thresholds.iter().copied().fold(f64::INFINITY, f64::min);
    if jaro_winkler_bound(a, b).is_some_and(|bound| bound < lowest) {
        return None;
    }
    let s = strsim::jaro_winkler(a, b);
    thresholds.iter().position(|t| s >= *t)
}

/// An upper bound of the Jaro-Winkler similarity of two ASCII strings (`None` for others), a
/// hair above the true bound so that rounding never rules out a pair that reaches a threshold.
///
/// Jaro is (c/|a| + c/|b| + (c - t)/c) / 3 for c matching letters and t transpositions; c is at
/// most the number of letters the two have in common (counted with repeats), and t at least 0.
/// Winkler's boost, j + 0.1 p (1 - j) above 0.7 for a common prefix of p <= 4 letters, grows with
/// j, so the bound of j gives the bound of the whole.
fn jaro_winkler_bound(a: &str, b: &str) -> Option<f64> {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if !a.is_ascii() || !b.is_ascii() || a.is_empty() || b.is_empty() {
        return None;
    }
    let mut counts = [0u16; 128];
    for &x in a {
        let n = &mut counts[usize::from(x & 0x7f)];
        *n = n.saturating_add(1);
    }
    let mut common = 0usize;
    for &x in b {
        let n = &mut counts[usize::from(x & 0x7f)];
        if *n > 0 {
            *n -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return Some(0.0);
    }
    let c = common as f64;
    let jaro = (c / a.len() as f64 + c / b.len() as f64 + 1.0) / 3.0;
    let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count() as f64;
    let winkler = if jaro > 0.7 {
        jaro + 0.1 * prefix * (1.0 - jaro)
    } else {
        jaro
    };
    Some(winkler + 1e-9)
}

/// The comparison vector of a pair: one level per comparison.
pub fn vector(
    comparisons: &[Comparison],
    records: &Records,
    a: usize,
    b: usize,
    out: &mut Vec<u8>,
) {
    for (c, column) in comparisons.iter().zip(&records.columns) {
        out.push(level(c, column, a, b));
    }
}

/// [`vector`] for many pairs on one thread: the levels of name pairs (forenames and names, whose
/// Jaro-Winkler similarity is the dearest comparison) are kept by the pair of values and looked up
/// when the pair comes again, as common names meet in block after block (john and mary in
/// thousands of postcodes). A pure function of the two values, so the levels are those of
/// [`level`].
#[derive(Default)]
pub struct NameLevels {
    known: HashMap<u64, u8>,
}

impl NameLevels {
    /// Pairs kept at most; then the cache starts again (16 MB or so).
    const MOST: usize = 1 << 20;

    /// [`vector`], names looked up first.
    pub fn vector(
        &mut self,
        comparisons: &[Comparison],
        records: &Records,
        a: usize,
        b: usize,
        out: &mut Vec<u8>,
    ) {
        for (c, (comparison, column)) in comparisons.iter().zip(&records.columns).enumerate() {
            out.push(self.level(c, comparison, column, a, b));
        }
    }

    fn level(
        &mut self,
        c: usize,
        comparison: &Comparison,
        column: &Column,
        a: usize,
        b: usize,
    ) -> u8 {
        let (ca, cb) = (
            column.codes.get(a).copied().unwrap_or(NULL),
            column.codes.get(b).copied().unwrap_or(NULL),
        );
        let named = matches!(comparison.kind, Kind::Forename | Kind::Name);
        // Codes of up to 28 bits and 255 comparisons fit the key; the cheap cases go straight on.
        if !named
            || ca == NULL
            || cb == NULL
            || ca == cb
            || ca >= 1 << 28
            || cb >= 1 << 28
            || c > 255
        {
            return level(comparison, column, a, b);
        }
        let key = ((c as u64) << 56) | (u64::from(ca) << 28) | u64::from(cb);
        if let Some(&known) = self.known.get(&key) {
            return known;
        }
        let found = level(comparison, column, a, b);
        if self.known.len() >= Self::MOST {
            self.known.clear();
        }
        self.known.insert(key, found);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::IdentitySpec;

    fn records(rows: &[[Option<&str>; 8]]) -> (Vec<Comparison>, Records) {
        let settings = match IdentitySpec::default().validate() {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let mut r = Records::new(&settings);
        for (i, row) in rows.iter().enumerate() {
            r.push(&format!("r{i}"), "s", row);
        }
        (settings.comparisons, r)
    }

    #[test]
    fn names_looked_up_give_the_levels_of_names_compared() {
        let names = [
            "john", "jon", "mary", "marie", "j", "smith", "smyth", "jones",
        ];
        let rows: Vec<[Option<&str>; 8]> = (0..64)
            .map(|i| {
                let first = names[i % names.len()];
                let last = names[(i * 3 + 1) % names.len()];
                [Some(first), Some(last), None, None, None, None, None, None]
            })
            .collect();
        let (comparisons, r) = records(&rows);
        let mut cached = NameLevels::default();
        let (mut plain, mut looked_up) = (Vec::new(), Vec::new());
        // Every ordered pair twice: the second time from the cache.
        for _ in 0..2 {
            for a in 0..rows.len() {
                for b in 0..rows.len() {
                    plain.clear();
                    looked_up.clear();
                    vector(&comparisons, &r, a, b, &mut plain);
                    cached.vector(&comparisons, &r, a, b, &mut looked_up);
                    assert_eq!(plain, looked_up, "records {a} and {b}");
                }
            }
        }
        assert!(!cached.known.is_empty());
    }

    #[test]
    fn levels_per_kind() {
        // first, last, birth, street, postcode, city, phone, email
        let (c, r) = records(&[
            [
                Some("Bill"),
                Some("Smith"),
                Some("1980-03-04"),
                Some("12 Baker Street"),
                Some("SW1A 1AA"),
                Some("London"),
                Some("07700 900123"),
                Some("bill.smith@example.com"),
            ],
            [
                Some("William"),
                Some("Smyth"),
                Some("1980-04-03"),
                Some("12 Baker St"),
                Some("SW1A 1AB"),
                None,
                Some("+44 7700 900123"),
                Some("bill.smith@other.org"),
            ],
            [
                Some("Wilma"),
                Some("Jones"),
                Some("1980-03-30"),
                Some("99 Other Road"),
                Some("SW1A 9ZZ"),
                Some("Leeds"),
                Some("01610 900123"),
                Some("bill.smiht@example.com"),
            ],
        ]);
        let v = |a, b| {
            let mut out = Vec::new();
            vector(&c, &r, a, b, &mut out);
            out
        };
        // forename exact via nickname, surname JW >= 0.80 (smith/smyth 0.893), birth transposed,
        // street exact after abbreviation, postcode same sector, city null, phone exact, email same local.
        assert_eq!(v(0, 1), vec![1, 3, 2, 1, 2, 0, 1, 2]);
        // wilma/william JW 0.87 -> level 3, jones else, same year-month, street else, same district,
        // city else (london/leeds 0.62), phone same last 7 digits, email levenshtein 2.
        assert_eq!(v(0, 2), vec![3, 4, 3, 3, 3, 4, 2, 3]);
        // An initial against the full name: forename level 4 ("initial"), after the two
        // Jaro-Winkler levels; a different initial is "else" (5).
        let (c, r) = records(&[
            [Some("W"), None, None, None, None, None, None, None],
            [Some("William"), None, None, None, None, None, None, None],
            [Some("J"), None, None, None, None, None, None, None],
        ]);
        let v = |a, b| {
            let mut out = Vec::new();
            vector(&c, &r, a, b, &mut out);
            out[0]
        };
        assert_eq!((v(0, 1), v(1, 2)), (4, 5));
    }
    /// Random strings over `alphabet`, 0 to 23 characters; every other one a copy of `base` with
    /// a letter changed and perhaps two swapped (near pairs, where the levels lie).
    fn near_or_random(rng: &mut rand_chacha::ChaCha8Rng, alphabet: &[char], base: &str) -> String {
        use rand::Rng;
        if rng.random_bool(0.5) {
            let mut s: Vec<char> = base.chars().collect();
            if !s.is_empty() {
                let k = rng.random_range(0..s.len());
                s[k] = alphabet[rng.random_range(0..alphabet.len())];
                if rng.random_bool(0.3) && s.len() > 1 {
                    let last = s.len() - 1;
                    s.swap(0, last);
                }
            }
            s.into_iter().collect()
        } else {
            let n = rng.random_range(0..24);
            (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect()
        }
    }

    #[test]
    fn fast_similarity_levels_are_those_of_the_plain_measures() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let alphabets: Vec<Vec<char>> = ["ab", "abcde", "abcdefghijklmnopqrstuvwxyz ", "aébç"]
            .iter()
            .map(|a| a.chars().collect())
            .collect();
        let (jw, lev) = ([0.92, 0.80], [1.0, 2.0]);
        let mut ruled_out = 0;
        for i in 0..200_000 {
            let alphabet = &alphabets[i % alphabets.len()];
            let n = rng.random_range(0..24);
            let a: String = (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let b = near_or_random(&mut rng, alphabet, &a);
            let s = strsim::jaro_winkler(&a, &b);
            if let Some(bound) = jaro_winkler_bound(&a, &b) {
                assert!(bound >= s, "{a:?} {b:?}: bound {bound} below {s}");
                ruled_out += usize::from(bound < 0.80);
            }
            assert_eq!(
                jaro_winkler_level(&a, &b, &jw),
                jw.iter().position(|t| s >= *t),
                "{a:?} {b:?}"
            );
            let d = strsim::levenshtein(&a, &b) as f64;
            let fast = bounded_levenshtein(&a, &b, &lev);
            assert!(
                fast == d || (d > 2.0 && fast > 2.0),
                "{a:?} {b:?}: {fast} against {d}"
            );
        }
        assert!(ruled_out > 10_000, "the bound rules out {ruled_out} pairs");
    }
}

#[cfg(test)]
mod year_range_tests {
    use super::*;
    use crate::spec::{ComparisonSpec, IdentitySpec};

    #[test]
    fn a_year_meets_a_band_or_not_and_two_known_years_are_left_to_the_birth_date() {
        let spec = IdentitySpec {
            blocking_rules: Some(vec![vec!["birth_years".into()]]),
            comparisons: Some(vec![ComparisonSpec {
                column: "birth_years".into(),
                kind: Kind::YearRange,
                thresholds: None,
                term_frequency: false,
                group: None,
                part_of: None,
            }]),
            ..IdentitySpec::default()
        };
        let settings = match spec.validate() {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let mut r = Records::new(&settings);
        for (i, v) in ["1965", "1962-1971", "1990-1999", "1967", "1965"]
            .iter()
            .enumerate()
        {
            r.push(&format!("r{i}"), "s", &[Some(v)]);
        }
        let level = |a, b| {
            let mut out = Vec::new();
            vector(&settings.comparisons, &r, a, b, &mut out);
            out[0]
        };
        assert_eq!(level(0, 1), 1, "1965 is within 1962-1971");
        assert_eq!(level(1, 3), 1);
        assert_eq!(level(0, 2), 2, "1965 is not within 1990-1999");
        assert_eq!(level(1, 2), 2, "two bands that do not meet");
        assert_eq!(
            level(0, 3),
            0,
            "two known years: the birth date compares them"
        );
        assert_eq!(level(0, 4), 0, "not even when equal");
        assert_eq!(
            settings.comparisons[0].level_labels(),
            vec!["within".to_string(), "else".to_string()]
        );
    }
}
