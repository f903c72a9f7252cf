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

/// Scores `cluster` (one number per record) against `person` (one id per record, `None` when
/// unknown: such records are left out).
pub fn accuracy<P: Eq + std::hash::Hash + Copy>(cluster: &[u32], person: &[Option<P>]) -> Accuracy {
    let mut by_cluster: HashMap<u32, u64> = HashMap::new();
    let mut by_person: HashMap<P, u64> = HashMap::new();
    let mut both: HashMap<(u32, P), u64> = HashMap::new();
    let mut records = 0;
    for (&c, p) in cluster.iter().zip(person) {
        let Some(p) = *p else { continue };
        records += 1;
        *by_cluster.entry(c).or_insert(0) += 1;
        *by_person.entry(p).or_insert(0) += 1;
        *both.entry((c, p)).or_insert(0) += 1;
    }
    let found: u64 = both.values().map(|n| pairs(*n)).sum();
    let predicted: u64 = by_cluster.values().map(|n| pairs(*n)).sum();
    let true_pairs: u64 = by_person.values().map(|n| pairs(*n)).sum();
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    // A cluster is exact when all its records are one person's and that person has no others.
    let exact = both
        .iter()
        .filter(|((c, p), n)| by_cluster.get(c) == Some(n) && by_person.get(p) == Some(n))
        .count() as u64;
    Accuracy {
        records,
        persons: by_person.len() as u64,
        pairwise: Scores::new(ratio(found, predicted), ratio(found, true_pairs)),
        cluster: Scores::new(
            ratio(exact, by_cluster.len() as u64),
            ratio(exact, by_person.len() as u64),
        ),
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
    let known: Vec<Option<&str>> = ids
        .iter()
        .map(|id| truth.get(id).map(String::as_str))
        .collect();
    accuracy(cluster, &known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_imperfect_clusterings() {
        let person = [Some("p"), Some("p"), Some("q"), Some("r"), None];
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
    }
}
