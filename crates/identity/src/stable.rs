//! Stable customer ids. A cluster inherits the id that most of its records had in the previous run
//! (largest overlap first), so a customer keeps the same `customer_id` when new records join. A new
//! id is a hash of the cluster's first record id, so reruns on the same data give the same ids.
//! Merges (a cluster holding records of several previous ids), splits (a previous id's records in
//! several clusters), new customers and retired ids are recorded.

use std::collections::{BTreeMap, HashMap};

use crate::records::{StringIndex, Strings};

use sha2::{Digest, Sha256};

/// One change of identity between the previous run and this one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub customer_id: Option<String>,
    /// `new`, `merged` (records of `previous_customer_id` joined `customer_id`), `split` (a new
    /// `customer_id` took records of `previous_customer_id`) or `retired` (the previous id is gone).
    pub change: &'static str,
    pub previous_customer_id: Option<String>,
    /// Records concerned.
    pub records: u64,
}

fn minted(record_id: &str, salt: u32) -> String {
    let text = if salt == 0 {
        record_id.to_string()
    } else {
        format!("{record_id}#{salt}")
    };
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    format!("C{}", &digest[..16])
}

/// No previous customer id (a record new since the last run).
pub const NONE: u32 = u32::MAX;

/// The customer ids of the last run as this run's records see them: each distinct id once, and
/// one number per record, not a map of strings (at millions of records that map alone would take
/// hundreds of megabytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Previous {
    /// The last run's distinct customer ids.
    pub customer_ids: Strings,
    /// The number of records each of `customer_ids` had then (records gone since included, so
    /// that an id whose records all left is retired with its count).
    pub records: Vec<u64>,
    /// Per record of this run, its customer id's index in `customer_ids`, or [`NONE`]. Shorter
    /// than the records (empty on a first run): the rest have none.
    pub of_record: Vec<u32>,
}

impl Previous {
    /// From a map of record ids to customer ids (`record_ids` are this run's records).
    pub fn from_map(
        record_ids: &crate::records::Strings,
        map: &HashMap<String, String>,
    ) -> Previous {
        // Every record of the last run counts, present in this one or not.
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for c in map.values() {
            *counts.entry(c.as_str()).or_insert(0) += 1;
        }
        let index: HashMap<&str, u32> = counts
            .keys()
            .enumerate()
            .map(|(i, c)| (*c, u32::try_from(i).unwrap_or(NONE - 1)))
            .collect();
        let of_record = record_ids
            .iter()
            .map(|r| {
                map.get(r)
                    .and_then(|c| index.get(c.as_str()))
                    .copied()
                    .unwrap_or(NONE)
            })
            .collect();
        Previous {
            customer_ids: counts.keys().collect(),
            records: counts.values().copied().collect(),
            of_record,
        }
    }

    /// Whether there was a previous run with customers.
    pub fn is_empty(&self) -> bool {
        self.customer_ids.is_empty()
    }

    /// The previous customer id of record `r`.
    pub fn of(&self, r: usize) -> Option<&str> {
        let i = *self.of_record.get(r)?;
        self.customer_ids.get(i as usize)
    }
}

/// The customer id of every cluster (`cluster[i]` is record i's cluster number, numbered from 0
/// by first record) and the changes since the `previous` run.
///
/// Works on numbers and sorted lists, not maps of strings: at millions of records a map per
/// cluster would take more memory than the records.
pub fn assign(
    record_ids: &crate::records::Strings,
    cluster: &[u32],
    previous: &Previous,
) -> (Strings, Vec<Change>) {
    let clusters = cluster.iter().map(|c| *c as usize + 1).max().unwrap_or(0);
    let id_of = |r: u32| record_ids.get(r as usize).unwrap_or("");
    let prev_name = |p: u32| previous.customer_ids.get(p as usize).unwrap_or("");
    // The previous ids in text order: changes list them so.
    let mut by_text: Vec<u32> =
        (0..u32::try_from(previous.customer_ids.len()).unwrap_or(NONE)).collect();
    by_text.sort_unstable_by(|x, y| prev_name(*x).cmp(prev_name(*y)));
    let mut rank = vec![0u32; previous.customer_ids.len()];
    for (i, p) in by_text.iter().enumerate() {
        rank[*p as usize] = u32::try_from(i).unwrap_or(NONE);
    }
    // The first record (by id) of each cluster.
    let mut first_record: Vec<u32> = vec![NONE; clusters];
    for (r, &c) in cluster.iter().enumerate() {
        let r = u32::try_from(r).unwrap_or(NONE);
        if let Some(first) = first_record.get_mut(c as usize)
            && (*first == NONE || id_of(r) < id_of(*first))
        {
            *first = r;
        }
    }
    // Overlaps: (cluster, previous id by text rank, records, first record by id holding it),
    // ordered by cluster then previous id. The records with a previous id are grouped by cluster
    // by counting (a number per record and one per cluster, where a sorted list of (cluster,
    // previous, record) took twelve bytes a record: at ten million persons, 350 MB), and the
    // overlaps counted before they are listed, so that the list is made at its size.
    let prev_rank = |r: usize| -> Option<u32> {
        let p = *previous.of_record.get(r)?;
        rank.get(p as usize).copied()
    };
    let mut starts = vec![0u32; clusters + 1];
    for (r, &c) in cluster.iter().enumerate() {
        if prev_rank(r).is_some()
            && let Some(n) = starts.get_mut(c as usize + 1)
        {
            *n += 1;
        }
    }
    for c in 0..clusters {
        starts[c + 1] += starts[c];
    }
    let mut members = vec![NONE; starts[clusters] as usize];
    let mut next: Vec<u32> = starts[..clusters].to_vec();
    for (r, &c) in cluster.iter().enumerate() {
        if prev_rank(r).is_some()
            && let Some(at) = next.get_mut(c as usize)
        {
            if let Some(slot) = members.get_mut(*at as usize) {
                *slot = u32::try_from(r).unwrap_or(NONE);
            }
            *at += 1;
        }
    }
    drop(next);
    // Calls `f(cluster, rank, records, anchor)` for each overlap, in order.
    let each_overlap = |f: &mut dyn FnMut(u32, u32, u32, u32)| {
        let mut group: Vec<(u32, u32)> = Vec::new();
        for c in 0..clusters {
            let held = members
                .get(starts[c] as usize..starts[c + 1] as usize)
                .unwrap_or(&[]);
            group.clear();
            group.extend(
                held.iter()
                    .filter_map(|&r| Some((prev_rank(r as usize)?, r))),
            );
            group.sort_unstable();
            for same in group.chunk_by(|x, y| x.0 == y.0) {
                let anchor = same
                    .iter()
                    .map(|g| g.1)
                    .min_by(|x, y| id_of(*x).cmp(id_of(*y)))
                    .unwrap_or(NONE);
                let n = u32::try_from(same.len()).unwrap_or(NONE);
                f(u32::try_from(c).unwrap_or(NONE), same[0].0, n, anchor);
            }
        }
    };
    let mut count = 0usize;
    each_overlap(&mut |_, _, _, _| count += 1);
    let mut overlaps: Vec<(u32, u32, u32, u32)> = Vec::with_capacity(count);
    each_overlap(&mut |c, p, n, anchor| overlaps.push((c, p, n, anchor)));
    drop(members);
    drop(starts);
    drop(rank);
    let name = |rank: u32| by_text.get(rank as usize).map_or("", |p| prev_name(*p));
    // Claims, largest overlap first; on a tie the id held by the earliest record wins. The order
    // is total (the overlaps' own order, by cluster, last), so an unstable sort, which needs no
    // buffer of half the claims, gives the order of a stable one.
    let mut claims: Vec<u32> = (0..u32::try_from(overlaps.len()).unwrap_or(NONE)).collect();
    claims.sort_unstable_by(|&x, &y| {
        let (a, b) = (overlaps[x as usize], overlaps[y as usize]);
        b.2.cmp(&a.2)
            .then(id_of(a.3).cmp(id_of(b.3)))
            .then(a.1.cmp(&b.1))
            .then(a.0.cmp(&b.0))
    });
    // The previous id (by rank) each cluster keeps, or NONE.
    let mut kept_by: Vec<u32> = vec![NONE; clusters];
    let mut kept = vec![false; previous.customer_ids.len()];
    for i in claims {
        let (c, p, _, _) = overlaps[i as usize];
        if kept_by[c as usize] == NONE && !kept[p as usize] {
            kept_by[c as usize] = p;
            kept[p as usize] = true;
        }
    }
    // Ids in use: the previous run's, and those given to the clusters before (kept or minted
    // here), found by hash in the ids themselves rather than in sets of copies of them.
    let previous_ids = StringIndex::of(&previous.customer_ids);
    let mut out = Strings::default();
    let mut given = StringIndex::default();
    let mut changes = Vec::new();
    let mut new_clusters: Vec<(usize, usize)> = Vec::new();
    let mut next_overlap = 0usize;
    for c in 0..clusters {
        let start = next_overlap;
        while overlaps
            .get(next_overlap)
            .is_some_and(|o| o.0 as usize == c)
        {
            next_overlap += 1;
        }
        let own = &overlaps[start..next_overlap];
        let id = match Some(kept_by[c]).filter(|p| *p != NONE) {
            Some(p) => {
                let id = name(p).to_string();
                for (_, other, n, _) in own {
                    if *other != p {
                        changes.push(Change {
                            customer_id: Some(id.clone()),
                            change: "merged",
                            previous_customer_id: Some(name(*other).to_string()),
                            records: u64::from(*n),
                        });
                    }
                }
                id
            }
            None => {
                let first = id_of(first_record[c]);
                let mut salt = 0;
                let mut id = minted(first, salt);
                while previous_ids.get(&previous.customer_ids, &id).is_some()
                    || given.get(&out, &id).is_some()
                {
                    salt += 1;
                    id = minted(first, salt);
                }
                if own.is_empty() {
                    if !previous.is_empty() {
                        new_clusters.push((changes.len(), c));
                        changes.push(Change {
                            customer_id: Some(id.clone()),
                            change: "new",
                            previous_customer_id: None,
                            records: 0,
                        });
                    }
                } else {
                    for (_, other, n, _) in own {
                        changes.push(Change {
                            customer_id: Some(id.clone()),
                            change: "split",
                            previous_customer_id: Some(name(*other).to_string()),
                            records: u64::from(*n),
                        });
                    }
                }
                id
            }
        };
        given.push(&mut out, &id);
    }
    // Count the records of each "new" cluster (none on a first run or an unchanged base).
    if !new_clusters.is_empty() {
        let mut sizes = vec![0u32; clusters];
        for &c in cluster {
            if let Some(n) = sizes.get_mut(c as usize) {
                *n += 1;
            }
        }
        for (i, c) in new_clusters {
            if let Some(ch) = changes.get_mut(i) {
                ch.records = u64::from(sizes.get(c).copied().unwrap_or(0));
            }
        }
    }
    // Previous ids that no cluster kept, in text order (`kept` is by text rank).
    for (r, p) in by_text.iter().enumerate() {
        let (id, n) = (
            previous.customer_ids.get(*p as usize).unwrap_or(""),
            previous.records.get(*p as usize).copied().unwrap_or(0),
        );
        if !kept[r] && n > 0 {
            changes.push(Change {
                customer_id: None,
                change: "retired",
                previous_customer_id: Some(id.to_string()),
                records: n,
            });
        }
    }
    (out, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> crate::records::Strings {
        v.iter().collect()
    }

    /// [`assign`], each cluster's id as a `String`.
    fn assign_text(
        records: &crate::records::Strings,
        cluster: &[u32],
        previous: &Previous,
    ) -> (Vec<String>, Vec<Change>) {
        let (ids, changes) = assign(records, cluster, previous);
        (ids.iter().map(str::to_string).collect(), changes)
    }

    #[test]
    fn a_retired_id_is_found_when_the_last_run_ids_are_not_in_text_order() {
        // As the identity step reads them: numbered in order of first appearance. "Czz" is held
        // by record a and kept; "Caa" was held by a record gone since, and is retired.
        let records = ids(&["a", "b"]);
        let previous = Previous {
            customer_ids: ids(&["Czz", "Caa"]),
            records: vec![1, 1],
            of_record: vec![0, NONE],
        };
        let (given, changes) = assign_text(&records, &[0, 1], &previous);
        assert_eq!(given[0], "Czz");
        let retired: Vec<_> = changes
            .iter()
            .filter(|c| c.change == "retired")
            .map(|c| c.previous_customer_id.as_deref())
            .collect();
        assert_eq!(retired, vec![Some("Caa")], "{changes:?}");
    }

    #[test]
    fn overlaps_in_many_clusters_keep_the_largest_and_count_each() {
        // 30 records in 6 clusters; the last run had 4 ids over them (records 0..24), given in an
        // order that is not the text order.
        let names: Vec<String> = (0..30).map(|i| format!("r{i:02}")).collect();
        let records: crate::records::Strings = names.iter().collect();
        let cluster: Vec<u32> = (0..30u32).map(|r| r % 6).collect();
        let previous = Previous {
            customer_ids: ids(&["Cd", "Cb", "Cc", "Ca"]),
            records: vec![6, 6, 6, 7],
            of_record: (0..30u32)
                .map(|r| if r < 24 { r / 6 } else { NONE })
                .collect(),
        };
        let (given, changes) = assign_text(&records, &cluster, &previous);
        // Previous id k held records 6k..6k+6: one of each cluster. Every cluster overlaps all
        // four ids once; the tie goes to the id whose first record comes first: cluster c's
        // record c holds id 0 ("Cd"), so cluster 0 keeps "Cd", cluster 1 "Cb" (its record 7)...
        assert_eq!(&given[..4], &["Cd", "Cb", "Cc", "Ca"]);
        assert!(given[4].starts_with('C') && given[4].len() == 17);
        let merged = changes.iter().filter(|c| c.change == "merged").count();
        let split = changes.iter().filter(|c| c.change == "split").count();
        assert_eq!((merged, split), (12, 8), "{changes:?}");
        assert!(changes.iter().all(|c| c.records == 1));
        assert!(!changes.iter().any(|c| c.change == "retired"));
    }

    #[test]
    fn ids_survive_new_records_and_merges_and_splits_are_recorded() {
        let records = ids(&["a", "b", "c"]);
        // First run: a+b together, c alone.
        let (first, changes) = assign_text(&records, &[0, 0, 1], &Previous::default());
        assert!(changes.is_empty());
        assert_eq!(first[0], minted("a", 0));
        let previous: HashMap<String, String> = [
            ("a".to_string(), first[0].clone()),
            ("b".to_string(), first[0].clone()),
            ("c".to_string(), first[1].clone()),
        ]
        .into();
        // Second run: a new record d joins c's customer: both ids stay.
        let records2 = ids(&["a", "b", "c", "d"]);
        let (second, changes) = assign_text(
            &records2,
            &[0, 0, 1, 1],
            &Previous::from_map(&records2, &previous),
        );
        assert_eq!(second, first);
        assert!(changes.is_empty(), "{changes:?}");
        let previous: HashMap<String, String> = records2
            .iter()
            .map(str::to_string)
            .zip([0, 0, 1, 1].map(|c: usize| second[c].clone()))
            .collect();
        let previous = Previous::from_map(&records2, &previous);
        // Third run: b splits off a; the new cluster gets a new id, a keeps its own.
        let (third, changes) = assign_text(&records2, &[0, 1, 2, 2], &previous);
        assert_eq!((&third[0], &third[2]), (&first[0], &first[1]));
        assert!(third[1] != first[0] && third[1] != first[1]);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (
                changes[0].change,
                changes[0].previous_customer_id.as_deref()
            ),
            ("split", Some(first[0].as_str()))
        );
        // Fourth run: c joins a and b; d stays. The larger overlap keeps its id, c's move is a merge.
        let (fourth, changes) = assign_text(&records2, &[0, 0, 0, 1], &previous);
        assert_eq!((&fourth[0], &fourth[1]), (&first[0], &first[1]));
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].change, changes[0].records), ("merged", 1));
        // Fifth run: everything in one cluster: c's and d's id is retired.
        let (fifth, changes) = assign_text(&records2, &[0, 0, 0, 0], &previous);
        assert_eq!(fifth, vec![first[0].clone()]);
        let kinds: Vec<_> = changes.iter().map(|c| c.change).collect();
        assert_eq!(kinds, vec!["merged", "retired"]);
        // A record of the last run that is gone counts toward its retired id.
        let mut map: HashMap<String, String> = HashMap::new();
        map.insert("a".into(), first[0].clone());
        map.insert("gone".into(), first[1].clone());
        let previous = Previous::from_map(&records, &map);
        assert_eq!(
            (previous.of(0), previous.of(1), previous.of(2)),
            (Some(first[0].as_str()), None, None)
        );
        let (_, changes) = assign_text(&records, &[0, 0, 0], &previous);
        let retired: Vec<_> = changes
            .iter()
            .filter(|c| c.change == "retired")
            .map(|c| (c.previous_customer_id.as_deref(), c.records))
            .collect();
        assert_eq!(retired, vec![(Some(first[1].as_str()), 1)]);
    }
}
