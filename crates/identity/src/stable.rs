//! Stable customer ids. A cluster inherits the id that most of its records had in the previous run
//! (largest overlap first), so a customer keeps the same `customer_id` when new records join. A new
//! id is a hash of the cluster's first record id, so reruns on the same data give the same ids.
//! Merges (a cluster holding records of several previous ids), splits (a previous id's records in
//! several clusters), new customers and retired ids are recorded.

use std::collections::{BTreeMap, HashMap, HashSet};

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
    /// The last run's distinct customer ids, each with the number of its records then (records
    /// gone since included, so that an id whose records all left is retired with its count).
    pub customer_ids: Vec<(String, u64)>,
    /// Per record of this run, its customer id's index in `customer_ids`, or [`NONE`]. Shorter
    /// than the records (empty on a first run): the rest have none.
    pub of_record: Vec<u32>,
}

impl Previous {
    /// From a map of record ids to customer ids (`record_ids` are this run's records).
    pub fn from_map(record_ids: &[String], map: &HashMap<String, String>) -> Previous {
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
            customer_ids: counts
                .into_iter()
                .map(|(c, n)| (c.to_string(), n))
                .collect(),
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
        self.customer_ids.get(i as usize).map(|(id, _)| id.as_str())
    }
}

/// The customer id of every cluster (`cluster[i]` is record i's cluster number, numbered from 0
/// by first record) and the changes since the `previous` run.
pub fn assign(
    record_ids: &[String],
    cluster: &[u32],
    previous: &Previous,
) -> (Vec<String>, Vec<Change>) {
    let clusters = cluster.iter().map(|c| *c as usize + 1).max().unwrap_or(0);
    let mut first_record: Vec<Option<&str>> = vec![None; clusters];
    let mut overlap: Vec<BTreeMap<&str, u64>> = vec![BTreeMap::new(); clusters];
    // The first record (by id) holding each previous id in each cluster.
    let mut anchor: HashMap<(usize, &str), &str> = HashMap::new();
    for (r, (id, &c)) in record_ids.iter().zip(cluster).enumerate() {
        let c = c as usize;
        if first_record[c].is_none_or(|f| id.as_str() < f) {
            first_record[c] = Some(id);
        }
        if let Some(prev) = previous.of(r) {
            *overlap[c].entry(prev).or_insert(0) += 1;
            let a = anchor.entry((c, prev)).or_insert(id.as_str());
            if id.as_str() < *a {
                *a = id.as_str();
            }
        }
    }
    // Claims, largest overlap first; on a tie the id held by the earliest record wins.
    let mut claims: Vec<(u64, &str, &str, usize)> = Vec::new();
    for (c, map) in overlap.iter().enumerate() {
        for (prev, n) in map {
            let first = anchor.get(&(c, *prev)).copied().unwrap_or("");
            claims.push((*n, first, prev, c));
        }
    }
    claims.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(y.1)).then(x.2.cmp(y.2)));
    let mut ids: Vec<Option<String>> = vec![None; clusters];
    let mut kept: HashSet<&str> = HashSet::new();
    for (_, _, prev, c) in &claims {
        if ids[*c].is_none() && !kept.contains(prev) {
            ids[*c] = Some((*prev).to_string());
            kept.insert(prev);
        }
    }
    // Ids in use: the previous run's, and those minted here.
    let previous_ids: HashSet<&str> = previous
        .customer_ids
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    let mut minted_here: HashSet<String> = HashSet::new();
    let mut changes = Vec::new();
    let mut out = Vec::with_capacity(clusters);
    for c in 0..clusters {
        let id = match ids[c].take() {
            Some(id) => {
                for (prev, n) in &overlap[c] {
                    if *prev != id {
                        changes.push(Change {
                            customer_id: Some(id.clone()),
                            change: "merged",
                            previous_customer_id: Some((*prev).to_string()),
                            records: *n,
                        });
                    }
                }
                id
            }
            None => {
                let first = first_record[c].unwrap_or("");
                let mut salt = 0;
                let mut id = minted(first, salt);
                while previous_ids.contains(id.as_str()) || minted_here.contains(&id) {
                    salt += 1;
                    id = minted(first, salt);
                }
                minted_here.insert(id.clone());
                if overlap[c].is_empty() {
                    if !previous.is_empty() {
                        changes.push(Change {
                            customer_id: Some(id.clone()),
                            change: "new",
                            previous_customer_id: None,
                            records: 0,
                        });
                    }
                } else {
                    for (prev, n) in &overlap[c] {
                        changes.push(Change {
                            customer_id: Some(id.clone()),
                            change: "split",
                            previous_customer_id: Some((*prev).to_string()),
                            records: *n,
                        });
                    }
                }
                id
            }
        };
        out.push(id);
    }
    // Count the records of each "new" cluster now that ids are known.
    let mut sizes: HashMap<&str, u64> = HashMap::new();
    for &c in cluster {
        *sizes.entry(out[c as usize].as_str()).or_insert(0) += 1;
    }
    for ch in &mut changes {
        if ch.change == "new" {
            ch.records = ch
                .customer_id
                .as_deref()
                .and_then(|id| sizes.get(id))
                .copied()
                .unwrap_or(0);
        }
    }
    // Previous ids that no cluster kept.
    let now: HashSet<&str> = out.iter().map(String::as_str).collect();
    let mut gone: BTreeMap<&str, u64> = BTreeMap::new();
    for (prev, n) in &previous.customer_ids {
        if !now.contains(prev.as_str()) && *n > 0 {
            *gone.entry(prev.as_str()).or_insert(0) += n;
        }
    }
    for (prev, n) in gone {
        changes.push(Change {
            customer_id: None,
            change: "retired",
            previous_customer_id: Some(prev.to_string()),
            records: n,
        });
    }
    (out, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn ids_survive_new_records_and_merges_and_splits_are_recorded() {
        let records = ids(&["a", "b", "c"]);
        // First run: a+b together, c alone.
        let (first, changes) = assign(&records, &[0, 0, 1], &Previous::default());
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
        let (second, changes) = assign(
            &records2,
            &[0, 0, 1, 1],
            &Previous::from_map(&records2, &previous),
        );
        assert_eq!(second, first);
        assert!(changes.is_empty(), "{changes:?}");
        let previous: HashMap<String, String> = records2
            .iter()
            .cloned()
            .zip([0, 0, 1, 1].map(|c: usize| second[c].clone()))
            .collect();
        let previous = Previous::from_map(&records2, &previous);
        // Third run: b splits off a; the new cluster gets a new id, a keeps its own.
        let (third, changes) = assign(&records2, &[0, 1, 2, 2], &previous);
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
        let (fourth, changes) = assign(&records2, &[0, 0, 0, 1], &previous);
        assert_eq!((&fourth[0], &fourth[1]), (&first[0], &first[1]));
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].change, changes[0].records), ("merged", 1));
        // Fifth run: everything in one cluster: c's and d's id is retired.
        let (fifth, changes) = assign(&records2, &[0, 0, 0, 0], &previous);
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
        let (_, changes) = assign(&records, &[0, 0, 0], &previous);
        let retired: Vec<_> = changes
            .iter()
            .filter(|c| c.change == "retired")
            .map(|c| (c.previous_customer_id.as_deref(), c.records))
            .collect();
        assert_eq!(retired, vec![(Some(first[1].as_str()), 1)]);
    }
}
