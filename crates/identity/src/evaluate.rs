//! Accuracy against a known truth (the demo generator records the person behind every record):
//! pairwise precision and recall (over pairs of records put in one cluster), and cluster precision
//! and recall (the share of predicted clusters that are exactly one person's records, and of
//! persons whose records form exactly one cluster).

use std::collections::HashMap;

/// Precision, recall and F1 of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl Scores {
    fn new(precision: f64, recall: f64) -> Self {
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Self {
            precision,
            recall,
            f1,
        }
    }
}

/// Accuracy of a clustering.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Accuracy {
    /// Records with a known person.
    pub records: u64,
    pub persons: u64,
    pub pairwise: Scores,
    pub cluster: Scores,
    /// Pairs of records of one person, and how many of them were put together.
    pub true_pairs: u64,
    pub found_pairs: u64,
    pub predicted_pairs: u64,
}

fn pairs(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// Scores `cluster` (one number per record) against `person` (the number of the person behind
/// each record, `None` when unknown: such records are left out). Counted over sorted numbers, not
/// maps: at millions of records maps of every cluster and person would be the step's largest.
pub fn accuracy(cluster: &[u32], person: &[Option<u32>]) -> Accuracy {
    let mut known: Vec<(u32, u32)> = cluster
        .iter()
        .zip(person)
        .filter_map(|(&c, p)| p.map(|p| (c, p)))
        .collect();
    known.sort_unstable();
    let records = known.len() as u64;
    let dense = |n: Option<u32>| n.map_or(0, |m| m as usize + 1);
    let mut by_cluster = vec![0u64; dense(known.iter().map(|k| k.0).max())];
    let mut by_person = vec![0u64; dense(known.iter().map(|k| k.1).max())];
    for (c, p) in &known {
        by_cluster[*c as usize] += 1;
        by_person[*p as usize] += 1;
    }
    let (mut found, mut exact) = (0u64, 0u64);
    for group in known.chunk_by(|x, y| x == y) {
        let n = group.len() as u64;
        let (c, p) = group[0];
        found += pairs(n);
        // A cluster is exact when all its records are one person's and that person has no others.
        if by_cluster[c as usize] == n && by_person[p as usize] == n {
            exact += 1;
        }
    }
    let predicted: u64 = by_cluster.iter().map(|n| pairs(*n)).sum();
    let true_pairs: u64 = by_person.iter().map(|n| pairs(*n)).sum();
    let clusters = by_cluster.iter().filter(|n| **n > 0).count() as u64;
    let persons = by_person.iter().filter(|n| **n > 0).count() as u64;
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Accuracy {
        records,
        persons,
        pairwise: Scores::new(ratio(found, predicted), ratio(found, true_pairs)),
        cluster: Scores::new(ratio(exact, clusters), ratio(exact, persons)),
        true_pairs,
        found_pairs: found,
        predicted_pairs: predicted,
    }
}

/// Scores `cluster` against a truth that maps record ids to who (or which household) is behind
/// them; records the truth does not know are left out.
pub fn accuracy_against(
    ids: &[String],
    cluster: &[u32],
    truth: &HashMap<String, String>,
) -> Accuracy {
    let mut numbers: HashMap<&str, u32> = HashMap::new();
    let known: Vec<Option<u32>> = ids
        .iter()
        .map(|id| {
            truth.get(id).map(|p| {
                let next = u32::try_from(numbers.len()).unwrap_or(u32::MAX);
                *numbers.entry(p.as_str()).or_insert(next)
            })
        })
        .collect();
    accuracy(cluster, &known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_imperfect_clusterings() {
        let person = [Some(7), Some(7), Some(1), Some(2), None];
        let perfect = accuracy(&[0, 0, 1, 2, 3], &person);
        assert_eq!(perfect.pairwise.f1, 1.0);
        assert_eq!(perfect.cluster.f1, 1.0);
        assert_eq!(perfect.records, 4);
        // q and r wrongly together, p split: no pair right.
        let bad = accuracy(&[0, 1, 2, 2, 3], &person);
        assert_eq!(
            (bad.found_pairs, bad.predicted_pairs, bad.true_pairs),
            (0, 1, 1)
        );
        assert_eq!(bad.pairwise.f1, 0.0);
        // Clusters {0}, {1}, {2,3}: none is exactly a person.
        assert_eq!(bad.cluster.precision, 0.0);
        // The same through a truth of text ids.
        let ids: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let truth: HashMap<String, String> = [("a", "p"), ("b", "p"), ("c", "q"), ("d", "r")]
            .map(|(r, p)| (r.to_string(), p.to_string()))
            .into();
        assert_eq!(accuracy_against(&ids, &[0, 1, 2, 2, 3], &truth), bad);
        assert_eq!(accuracy_against(&ids, &[0, 0, 1, 2, 3], &truth), perfect);
    }
}
