//! Attaching lone records to the one customer they could be.
//!
//! The pair model weighs two records against the whole population: a vendor record "J SMITH" at a
//! household's address, or a campaign contact with a name, an email and a postcode, agrees with a
//! customer's records on too little to be linked (a match probability of 0.7 to 0.9 is honest for
//! such a pair: somebody else of that initial may live there). What the pair cannot see is
//! whether that somebody else exists: every record that could compete was scored too. A record
//! that clustering left alone joins a customer when
//! - every candidate pair of the record at `attach_competitor_probability` or more points into
//!   that one customer, which holds two or more records, or is itself a lone record whose
//!   candidates all point back (the two then become one customer);
//! - the best of those pairs reaches `attach_probability`;
//! - none of those pairs disagrees on who the person is (the first name, the birth date or years
//!   at their last level: [`disagrees_on_the_person`]; a second email or phone is no bar), and no
//!   pair of the record above the link threshold was refused (a conflict or the duplicate-free
//!   guard);
//! - it conflicts with none of the customer's records, no record of the customer differs from it
//!   on who the person is (candidate pair or not: [`records_disagree_on_the_person`]), and it
//!   breaks no duplicate-free source.
//!
//! A record that has nothing but a name to be found by (a service ticket with a name and a phone
//! no other record has, no address) is paired by an attaching rule with every record of its full
//! name: those name pairs count as candidates at any probability, so another customer of the name
//! keeps it alone, and when they are all its candidates the best needs only
//! `attach_name_probability` (its customer is the only one of that name in the whole base, which
//! the pair's own probability, weighed against the population, cannot know).
//!
//! Each lone record is judged against the clusters as clustering left them, so the order of the
//! records does not matter; records attaching to one customer are taken strongest first, each
//! checked against those taken before it.

use crate::cluster::Conflict;
use crate::spec::{Comparison, Kind};

/// A scored candidate pair below the link threshold, as attaching reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeakPair {
    pub a: u32,
    pub b: u32,
    pub probability: f64,
    /// Some comparison of the pair is at its last level (the values differ).
    pub disagrees: bool,
    /// Per side (a, b): the pair is a name pair of an attaching rule for that record (found only
    /// by such a rule, and the record lacks what the rule's `without:` names). It then counts for
    /// the record at any probability.
    pub by_name: [bool; 2],
}

/// How strong the best pair must be for a lone record to join a customer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// `attach_probability`.
    pub attach: f64,
    /// `attach_name_probability`: for a record whose every candidate pair is a name pair of an
    /// attaching rule, each such pair counting as a candidate at any probability.
    pub by_name: f64,
    /// `attach_competitor_probability`: other pairs below it are no candidates.
    pub competitor: f64,
}

impl From<f64> for Thresholds {
    fn from(attach: f64) -> Self {
        Thresholds {
            attach,
            by_name: attach,
            competitor: 0.0,
        }
    }
}

/// Whether a pair's comparison levels disagree on who the person is: the first name, the birth
/// date or the years of birth at their last level (the values differ). That bars attaching; a
/// second phone, email or address does not (people have several, and the pair's probability has
/// weighed it).
pub fn disagrees_on_the_person(levels: &[u8], comparisons: &[Comparison]) -> bool {
    levels.iter().zip(comparisons).any(|(level, c)| {
        matches!(c.kind, Kind::Forename | Kind::Date | Kind::YearRange)
            && c.level_count() > 1
            && usize::from(*level) + 1 == c.level_count()
    })
}

/// Whether records `a` and `b` differ on who the person is ([`disagrees_on_the_person`] of their
/// comparison levels), whether or not they were a candidate pair: a lone record joins no customer
/// holding such a record.
pub fn records_disagree_on_the_person(
    settings: &crate::spec::Settings,
    records: &crate::records::Records,
    a: usize,
    b: usize,
) -> bool {
    let mut levels = Vec::with_capacity(settings.comparisons.len());
    crate::compare::vector(&settings.comparisons, records, a, b, &mut levels);
    disagrees_on_the_person(&levels, &settings.comparisons)
}

const NONE: u32 = u32::MAX;
const BLOCKED: u32 = u32::MAX - 1;

/// Joins lone records of `clusters` (numbered from 0 by their first record, as
/// [`crate::cluster::cluster`] gives them) to the one customer they could be, and numbers the
/// clusters again by their first record. `refused` are the pairs at or above the link threshold
/// (those in different clusters were refused), `weak` the pairs from
/// `competitor_probability` up to the threshold; each is read once, in order, so either may be
/// produced as it is read instead of held. Returns how many records were attached.
pub fn attach(
    clusters: &mut [u32],
    refused: impl IntoIterator<Item = (u32, u32)>,
    weak: impl IntoIterator<Item = WeakPair>,
    thresholds: Thresholds,
    guard_bit: &[u64],
    conflict: Conflict<'_>,
) -> u64 {
    let count = clusters.iter().map(|c| *c as usize + 1).max().unwrap_or(0);
    let mut size = vec![0u32; count];
    for c in clusters.iter() {
        size[*c as usize] += 1;
    }
    let cluster_of = |r: u32| clusters.get(r as usize).copied().unwrap_or(NONE);
    let lone = |r: u32| size.get(cluster_of(r) as usize).is_some_and(|s| *s == 1);
    // Per record: the one customer its candidates point into (or NONE / BLOCKED), and the best
    // probability towards it. Only lone records are ever set.
    let mut target: Vec<(u32, f32)> = vec![(NONE, 0.0); clusters.len()];
    // Per record: whether every candidate pair so far is a name pair of an attaching rule.
    let mut by_name_only = vec![true; clusters.len()];
    for (a, b) in refused {
        if cluster_of(a) != cluster_of(b) {
            for x in [a, b] {
                if lone(x) {
                    target[x as usize].0 = BLOCKED;
                }
            }
        }
    }
    for pair in weak {
        let (ca, cb) = (cluster_of(pair.a), cluster_of(pair.b));
        if ca == cb {
            continue;
        }
        for (side, x, other) in [(0, pair.a, cb), (1, pair.b, ca)] {
            if !lone(x) {
                continue;
            }
            let by_name = pair.by_name[side];
            if !by_name && pair.probability < thresholds.competitor {
                continue;
            }
            by_name_only[x as usize] &= by_name;
            let slot = &mut target[x as usize];
            *slot = match *slot {
                (BLOCKED, _) => (BLOCKED, 0.0),
                _ if pair.disagrees => (BLOCKED, 0.0),
                (NONE, _) => (other, pair.probability as f32),
                (y, best) if y == other => (y, best.max(pair.probability as f32)),
                _ => (BLOCKED, 0.0),
            };
        }
    }
    let strong_enough = |p: f32| f64::from(p) >= thresholds.attach - 1e-6;
    let strong_enough_for = |x: usize, p: f32| {
        strong_enough(p) || (by_name_only[x] && f64::from(p) >= thresholds.by_name - 1e-6)
    };
    let mut attached = 0u64;
    // Two lone records that are each other's only candidate become one customer.
    let mut record_of = vec![NONE; count];
    for (r, c) in clusters.iter().enumerate() {
        if size[*c as usize] == 1 {
            record_of[*c as usize] = u32::try_from(r).unwrap_or(NONE);
        }
    }
    for x in 0..clusters.len() {
        let (y, p) = target[x];
        if y >= BLOCKED || size[y as usize] != 1 || !strong_enough(p) {
            continue;
        }
        let z = record_of[y as usize];
        let (x, cx) = (u32::try_from(x).unwrap_or(NONE), clusters[x]);
        if z <= x || target.get(z as usize).is_none_or(|t| t.0 != cx) {
            continue;
        }
        let bits = |r: u32| guard_bit.get(r as usize).copied().unwrap_or(0);
        if bits(x) & bits(z) != 0 || conflict.is_some_and(|conflicts| conflicts(x, z)) {
            continue;
        }
        clusters[z as usize] = cx;
        attached += 1;
    }
    drop(record_of);
    // (customer, -probability, record): the strongest first within each customer.
    let mut moves: Vec<(u32, f32, u32)> = target
        .iter()
        .enumerate()
        .filter(|(x, (y, p))| *y < BLOCKED && size[*y as usize] >= 2 && strong_enough_for(*x, *p))
        .map(|(x, (y, p))| (*y, -*p, u32::try_from(x).unwrap_or(NONE)))
        .collect();
    drop(target);
    moves.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)).then(x.2.cmp(&y.2)));
    // The records of the customers attached to, by customer.
    let mut wanted = vec![false; count];
    for m in &moves {
        wanted[m.0 as usize] = true;
    }
    let mut members: Vec<(u32, u32)> = clusters
        .iter()
        .enumerate()
        .filter(|(_, c)| wanted[**c as usize])
        .map(|(r, c)| (*c, u32::try_from(r).unwrap_or(NONE)))
        .collect();
    members.sort_unstable();
    let mut at = 0usize;
    let mut start = 0usize;
    while start < moves.len() {
        let y = moves[start].0;
        let end = start + moves[start..].iter().take_while(|m| m.0 == y).count();
        while at < members.len() && members[at].0 < y {
            at += 1;
        }
        let mut group: Vec<u32> = members[at..]
            .iter()
            .take_while(|m| m.0 == y)
            .map(|m| m.1)
            .collect();
        let mut guarded = group.iter().fold(0u64, |g, r| {
            g | guard_bit.get(*r as usize).copied().unwrap_or(0)
        });
        for &(_, _, x) in &moves[start..end] {
            let bit = guard_bit.get(x as usize).copied().unwrap_or(0);
            if guarded & bit != 0 {
                continue;
            }
            if let Some(conflicts) = conflict
                && group.iter().any(|m| conflicts(x, *m))
            {
                continue;
            }
            guarded |= bit;
            group.push(x);
            clusters[x as usize] = y;
            attached += 1;
        }
        start = end;
    }
    // Number the clusters again by their first record.
    let mut number = vec![NONE; count];
    let mut next = 0u32;
    for c in clusters.iter_mut() {
        let slot = &mut number[*c as usize];
        if *slot == NONE {
            *slot = next;
            next += 1;
        }
        *c = *slot;
    }
    attached
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weak(a: u32, b: u32, probability: f64) -> WeakPair {
        WeakPair {
            a,
            b,
            probability,
            disagrees: false,
            by_name: [false; 2],
        }
    }

    #[test]
    fn only_a_disagreement_on_who_the_person_is_bars_attaching() -> crate::Result<()> {
        let settings = crate::spec::IdentitySpec::default().validate()?;
        let comparisons = &settings.comparisons;
        let at_last = |column: &str| -> Vec<u8> {
            comparisons
                .iter()
                .map(|c| {
                    if c.column == column {
                        u8::try_from(c.level_count() - 1).unwrap_or(u8::MAX)
                    } else {
                        1
                    }
                })
                .collect()
        };
        assert!(disagrees_on_the_person(&at_last("first_name"), comparisons));
        assert!(disagrees_on_the_person(&at_last("birth_date"), comparisons));
        for contact in ["email", "phone", "street", "postcode"] {
            assert!(
                comparisons.iter().any(|c| c.column == contact),
                "{contact} is a default comparison"
            );
            assert!(
                !disagrees_on_the_person(&at_last(contact), comparisons),
                "{contact}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_record_with_only_a_name_joins_the_one_customer_of_that_name() {
        let t = Thresholds {
            attach: 0.7,
            by_name: 0.3,
            competitor: 0.5,
        };
        // A name pair of an attaching rule for its b record (the one without a postcode).
        let name = |a: u32, b: u32, probability: f64| WeakPair {
            a,
            b,
            probability,
            disagrees: false,
            by_name: [false, true],
        };
        // Customer {0, 1}; record 2, a service ticket with a name and a phone no other record
        // has, shares its full name with record 0 only (0.45: the phone differs).
        let mut clusters = vec![0, 0, 1];
        assert_eq!(
            attach(&mut clusters, [], [name(0, 2, 0.45)], t, &[0; 3], None),
            1
        );
        assert_eq!(clusters, vec![0, 0, 0]);
        // Another customer {3, 4} of that name keeps it alone, however weak its pair.
        let mut clusters = vec![0, 0, 1, 2, 2];
        let pairs = [name(0, 2, 0.45), name(3, 2, 0.02)];
        assert_eq!(attach(&mut clusters, [], pairs, t, &[0; 5], None), 0);
        // Below attach_name_probability it stays alone.
        let mut clusters = vec![0, 0, 1];
        assert_eq!(
            attach(&mut clusters, [], [name(0, 2, 0.25)], t, &[0; 3], None),
            0
        );
        // A record with an ordinary candidate too needs attach_probability.
        let mut clusters = vec![0, 0, 1];
        let pairs = [name(0, 2, 0.45), weak(1, 2, 0.6)];
        assert_eq!(attach(&mut clusters, [], pairs, t, &[0; 3], None), 0);
        // For the record that has the postcode, a weak name pair is no candidate: lone record 0
        // joins customer {3, 4}, not held back by a name pair at 0.2 into customer {1, 2}.
        let mut clusters = vec![0, 1, 1, 2, 2];
        let pairs = [name(0, 1, 0.2), weak(0, 3, 0.8)];
        assert_eq!(attach(&mut clusters, [], pairs, t, &[0; 5], None), 1);
        assert_eq!(clusters, vec![0, 1, 1, 0, 0]);
    }

    #[test]
    fn any_record_of_the_customer_that_is_someone_else_bars_attaching() -> crate::Result<()> {
        let settings = crate::spec::IdentitySpec::default().validate()?;
        let mut records = crate::records::Records::new(&settings);
        // first_name, last_name, birth_date, street, postcode, city, phone, email
        for (id, first, birth, phone) in [
            ("a", "Paul", Some("1973-05-01"), Some("07700 900123")),
            ("b", "Paul", Some("2003-05-01"), None),
            ("c", "Paul", None, Some("07700 900456")),
            ("d", "Peter", None, None),
        ] {
            records.push(
                id,
                "s",
                &[
                    Some(first),
                    Some("Martin"),
                    birth,
                    None,
                    None,
                    None,
                    phone,
                    None,
                ],
            );
        }
        // Another birth date, another first name: someone else.
        assert!(records_disagree_on_the_person(&settings, &records, 0, 1));
        assert!(records_disagree_on_the_person(&settings, &records, 2, 3));
        // Another phone, or a birth date one of them lacks: no bar.
        assert!(!records_disagree_on_the_person(&settings, &records, 0, 2));
        assert!(!records_disagree_on_the_person(&settings, &records, 1, 2));
        Ok(())
    }

    #[test]
    fn a_lone_record_joins_the_one_customer_it_could_be() {
        // Customer {0, 1}; record 2 (a vendor "J SMITH" at their address) scored 0.8 with both.
        let mut clusters = vec![0, 0, 1];
        let n = attach(
            &mut clusters,
            [],
            [weak(0, 2, 0.8), weak(1, 2, 0.75)],
            0.7.into(),
            &[0; 3],
            None,
        );
        assert_eq!(n, 1);
        assert_eq!(clusters, vec![0, 0, 0]);
    }

    #[test]
    fn two_lone_records_that_are_each_others_only_candidate_become_one() {
        let mut clusters = vec![0, 1, 2, 2];
        let n = attach(
            &mut clusters,
            [],
            [weak(0, 1, 0.8)],
            0.7.into(),
            &[0; 4],
            None,
        );
        assert_eq!(n, 1);
        assert_eq!(clusters, vec![0, 0, 1, 1]);
        // Not when they conflict.
        let conflict = |_: u32, _: u32| true;
        let mut clusters = vec![0, 1];
        assert_eq!(
            attach(
                &mut clusters,
                [],
                [weak(0, 1, 0.8)],
                0.7.into(),
                &[0; 2],
                Some(&conflict)
            ),
            0
        );
    }

    #[test]
    fn two_possible_customers_or_a_disagreement_or_a_refusal_keep_it_alone() {
        // Customers {0, 1} and {2, 3}: record 4 could be either.
        let mut clusters = vec![0, 0, 1, 1, 2];
        let pairs = [weak(0, 4, 0.85), weak(2, 4, 0.55)];
        assert_eq!(
            attach(&mut clusters, [], pairs, 0.7.into(), &[0; 5], None),
            0
        );
        assert_eq!(clusters, vec![0, 0, 1, 1, 2]);
        // A lone record as the competitor counts too.
        let mut clusters = vec![0, 0, 1, 2];
        let pairs = [weak(0, 3, 0.85), weak(2, 3, 0.6)];
        assert_eq!(
            attach(&mut clusters, [], pairs, 0.7.into(), &[0; 4], None),
            0
        );
        // A lone record whose only candidate is another lone record that has others.
        let mut clusters = vec![0, 1, 2];
        let pairs = [weak(0, 1, 0.85), weak(1, 2, 0.6)];
        assert_eq!(
            attach(&mut clusters, [], pairs, 0.7.into(), &[0; 3], None),
            0
        );
        // One comparison that differs.
        let mut clusters = vec![0, 0, 1];
        let mut differs = weak(1, 2, 0.72);
        differs.disagrees = true;
        assert_eq!(
            attach(
                &mut clusters,
                [],
                [weak(0, 2, 0.8), differs],
                0.7.into(),
                &[0; 3],
                None
            ),
            0
        );
        // A link above the threshold that clustering refused.
        let mut clusters = vec![0, 0, 1, 2];
        assert_eq!(
            attach(
                &mut clusters,
                [(2, 3)],
                [weak(0, 3, 0.8)],
                0.7.into(),
                &[0; 4],
                None
            ),
            0
        );
        // Too weak.
        let mut clusters = vec![0, 0, 1];
        assert_eq!(
            attach(
                &mut clusters,
                [],
                [weak(0, 2, 0.65)],
                0.7.into(),
                &[0; 3],
                None
            ),
            0
        );
    }

    #[test]
    fn attaching_respects_conflicts_and_duplicate_free_sources_and_renumbers() {
        // Record 0 is lone; customer {1, 2}. Record 0 conflicts with 2: stays alone.
        let conflict = |a: u32, b: u32| (a.min(b), a.max(b)) == (0, 2);
        let mut clusters = vec![0, 1, 1];
        let n = attach(
            &mut clusters,
            [],
            [weak(0, 1, 0.8)],
            0.7.into(),
            &[0; 3],
            Some(&conflict),
        );
        assert_eq!(n, 0);
        // Records 3 and 4 (one duplicate-free source, bit 1) both point only at {1, 2}: the
        // stronger joins, the other stays alone; clusters are numbered by their first record.
        let mut clusters = vec![0, 1, 1, 2, 3];
        let pairs = [weak(1, 3, 0.75), weak(2, 4, 0.85)];
        let n = attach(&mut clusters, [], pairs, 0.7.into(), &[0, 0, 0, 1, 1], None);
        assert_eq!(n, 1);
        assert_eq!(clusters, vec![0, 1, 1, 2, 1]);
    }
}
