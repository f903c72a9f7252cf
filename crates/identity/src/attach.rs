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
//! - it conflicts with none of the customer's records and breaks no duplicate-free source.
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

const NONE: u32 = u32::MAX;
const BLOCKED: u32 = u32::MAX - 1;

/// Joins lone records of `clusters` (numbered from 0 by their first record, as
/// [`crate::cluster::cluster`] gives them) to the one customer they could be, and numbers the
/// clusters again by their first record. `refused` are the pairs at or above the link threshold
/// (those in different clusters were refused), `weak` the pairs from
/// `competitor_probability` up to the threshold. Returns how many records were attached.
pub fn attach(
    clusters: &mut [u32],
    refused: &[(u32, u32, f64)],
    weak: &[WeakPair],
    attach_probability: f64,
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
    for &(a, b, _) in refused {
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
        for (x, other) in [(pair.a, cb), (pair.b, ca)] {
            if !lone(x) {
                continue;
            }
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
    let strong_enough = |p: f32| f64::from(p) >= attach_probability - 1e-6;
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
        .filter(|(_, (y, p))| *y < BLOCKED && size[*y as usize] >= 2 && strong_enough(*p))
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
    fn a_lone_record_joins_the_one_customer_it_could_be() {
        // Customer {0, 1}; record 2 (a vendor "J SMITH" at their address) scored 0.8 with both.
        let mut clusters = vec![0, 0, 1];
        let n = attach(
            &mut clusters,
            &[],
            &[weak(0, 2, 0.8), weak(1, 2, 0.75)],
            0.7,
            &[0; 3],
            None,
        );
        assert_eq!(n, 1);
        assert_eq!(clusters, vec![0, 0, 0]);
    }

    #[test]
    fn two_lone_records_that_are_each_others_only_candidate_become_one() {
        let mut clusters = vec![0, 1, 2, 2];
        let n = attach(&mut clusters, &[], &[weak(0, 1, 0.8)], 0.7, &[0; 4], None);
        assert_eq!(n, 1);
        assert_eq!(clusters, vec![0, 0, 1, 1]);
        // Not when they conflict.
        let conflict = |_: u32, _: u32| true;
        let mut clusters = vec![0, 1];
        assert_eq!(
            attach(
                &mut clusters,
                &[],
                &[weak(0, 1, 0.8)],
                0.7,
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
        assert_eq!(attach(&mut clusters, &[], &pairs, 0.7, &[0; 5], None), 0);
        assert_eq!(clusters, vec![0, 0, 1, 1, 2]);
        // A lone record as the competitor counts too.
        let mut clusters = vec![0, 0, 1, 2];
        let pairs = [weak(0, 3, 0.85), weak(2, 3, 0.6)];
        assert_eq!(attach(&mut clusters, &[], &pairs, 0.7, &[0; 4], None), 0);
        // A lone record whose only candidate is another lone record that has others.
        let mut clusters = vec![0, 1, 2];
        let pairs = [weak(0, 1, 0.85), weak(1, 2, 0.6)];
        assert_eq!(attach(&mut clusters, &[], &pairs, 0.7, &[0; 3], None), 0);
        // One comparison that differs.
        let mut clusters = vec![0, 0, 1];
        let mut differs = weak(1, 2, 0.72);
        differs.disagrees = true;
        assert_eq!(
            attach(
                &mut clusters,
                &[],
                &[weak(0, 2, 0.8), differs],
                0.7,
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
                &[(2, 3, 12.0)],
                &[weak(0, 3, 0.8)],
                0.7,
                &[0; 4],
                None
            ),
            0
        );
        // Too weak.
        let mut clusters = vec![0, 0, 1];
        assert_eq!(
            attach(&mut clusters, &[], &[weak(0, 2, 0.65)], 0.7, &[0; 3], None),
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
            &[],
            &[weak(0, 1, 0.8)],
            0.7,
            &[0; 3],
            Some(&conflict),
        );
        assert_eq!(n, 0);
        // Records 3 and 4 (one duplicate-free source, bit 1) both point only at {1, 2}: the
        // stronger joins, the other stays alone; clusters are numbered by their first record.
        let mut clusters = vec![0, 1, 1, 2, 3];
        let pairs = [weak(1, 3, 0.75), weak(2, 4, 0.85)];
        let n = attach(&mut clusters, &[], &pairs, 0.7, &[0, 0, 0, 1, 1], None);
        assert_eq!(n, 1);
        assert_eq!(clusters, vec![0, 1, 1, 2, 1]);
    }
}
