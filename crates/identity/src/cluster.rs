//! Clustering: connected components over the accepted links, strongest link first, with a guard
//! against chains. A cluster may hold at most one record of each source declared duplicate-free, so
//! a weak link that would join two CRM customers through a shared web account is refused, and the
//! stronger links decide which cluster the web account joins. Nor may a cluster hold two records
//! whose identities conflict (both first names and both birth dates known and different): a link
//! that would join them through a shared address or landline is refused, so a household does not
//! become one customer through a chain of its members' records.

/// Union-find over records, each root with the mask of duplicate-free sources it holds.
struct Forest {
    parent: Vec<u32>,
    size: Vec<u32>,
    guarded: Vec<u64>,
    /// The records of each cluster as a ring: `next[r]` is the next record of r's cluster (kept
    /// only when conflicts are checked). Four bytes a record, and two rings join in one swap.
    next: Vec<u32>,
}

impl Forest {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    /// The records of `root`'s cluster.
    fn members(&self, root: u32) -> impl Iterator<Item = u32> + '_ {
        let mut at = Some(root);
        std::iter::from_fn(move || {
            let here = at?;
            let next = self.next.get(here as usize).copied().unwrap_or(root);
            at = (next != root).then_some(next);
            Some(here)
        })
    }
}

/// What clustering did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterReport {
    pub links_accepted: u64,
    /// Links above the threshold refused by the duplicate-free guard.
    pub links_refused_by_guard: u64,
    /// Links above the threshold refused because they would put two records of conflicting
    /// identity (different first names and different birth dates) into one customer.
    #[serde(default)]
    pub links_refused_by_conflict: u64,
    pub clusters: u64,
    pub largest_cluster: u64,
    /// Records left alone by the links and attached to the one customer they could be
    /// ([`crate::attach`]).
    #[serde(default)]
    pub records_attached: u64,
}

impl ClusterReport {
    /// Counts the clusters and the largest again (after attaching).
    pub fn recount(&mut self, clusters: &[u32]) {
        let count = clusters.iter().map(|c| *c as usize + 1).max().unwrap_or(0);
        let mut size = vec![0u64; count];
        for c in clusters {
            size[*c as usize] += 1;
        }
        self.clusters = count as u64;
        self.largest_cluster = size.iter().copied().max().unwrap_or(0);
    }
}

/// Two records may not share a cluster when this says they conflict; `None` checks nothing.
pub type Conflict<'a> = Option<&'a (dyn Fn(u32, u32) -> bool + Sync)>;

/// Cluster number of every record (clusters numbered by their first record), given the links
/// `(a, b, weight)` above the threshold; `guard_bit[i]` is the duplicate-free bit of record i's
/// source, or 0; `conflict` says which records may never be one customer. The links and the guard
/// bits are taken, not copied: the links are put in order where they are, and the bits become
/// those of the clusters as they join (at ten million persons, 400 and 230 MB not held twice).
pub fn cluster(
    records: usize,
    mut links: Vec<(u32, u32, f64)>,
    guard_bit: Vec<u64>,
    conflict: Conflict<'_>,
) -> (Vec<u32>, ClusterReport) {
    let n = u32::try_from(records).unwrap_or(u32::MAX);
    let mut guarded = guard_bit;
    guarded.resize(records, 0);
    let mut forest = Forest {
        parent: (0..n).collect(),
        size: vec![1; records],
        guarded,
        next: if conflict.is_some() {
            (0..n).collect()
        } else {
            Vec::new()
        },
    };
    // Strongest first; ties by record numbers, so the result never depends on input order. Links
    // that compare equal are the same link, so an unstable sort in place gives what a stable one
    // would, without its buffer.
    links.sort_unstable_by(|x, y| y.2.total_cmp(&x.2).then((x.0, x.1).cmp(&(y.0, y.1))));
    let mut report = ClusterReport::default();
    for (a, b, _) in links {
        let (ra, rb) = (forest.find(a), forest.find(b));
        if ra == rb {
            report.links_accepted += 1;
            continue;
        }
        if forest.guarded[ra as usize] & forest.guarded[rb as usize] != 0 {
            report.links_refused_by_guard += 1;
            continue;
        }
        if let Some(conflicts) = conflict
            && forest
                .members(ra)
                .any(|x| forest.members(rb).any(|y| conflicts(x, y)))
        {
            report.links_refused_by_conflict += 1;
            continue;
        }
        let (big, small) = if forest.size[ra as usize] >= forest.size[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        if conflict.is_some() {
            // Two rings become one: swap the successors of their roots.
            forest.next.swap(big as usize, small as usize);
        }
        forest.parent[small as usize] = big;
        forest.size[big as usize] += forest.size[small as usize];
        forest.guarded[big as usize] |= forest.guarded[small as usize];
        report.links_accepted += 1;
    }
    // Number clusters by their first record.
    let mut number = vec![u32::MAX; records];
    let mut out = Vec::with_capacity(records);
    let mut next = 0u32;
    for r in 0..records {
        let root = forest.find(u32::try_from(r).unwrap_or(u32::MAX)) as usize;
        if number[root] == u32::MAX {
            number[root] = next;
            next += 1;
            report.largest_cluster = report.largest_cluster.max(u64::from(forest.size[root]));
        }
        out.push(number[root]);
    }
    report.clusters = u64::from(next);
    (out, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_join_through_links() {
        let (c, r) = cluster(
            5,
            vec![(0, 1, 5.0), (1, 2, 3.0), (3, 4, 1.0)],
            vec![0; 5],
            None,
        );
        assert_eq!(c, vec![0, 0, 0, 1, 1]);
        assert_eq!(r.clusters, 2);
        assert_eq!(r.largest_cluster, 3);
    }

    #[test]
    fn the_guard_stops_a_chain_through_a_shared_record_and_keeps_the_best_link() {
        // Records 0 and 2 are from a duplicate-free CRM (bit 1); 1 is a web account that links to
        // both, more strongly to 2. The chain 0-1-2 would put two CRM customers in one cluster.
        let (c, r) = cluster(3, vec![(0, 1, 4.0), (1, 2, 9.0)], vec![1, 0, 1], None);
        assert_eq!(c, vec![0, 1, 1]);
        assert_eq!(r.links_refused_by_guard, 1);
    }

    #[test]
    fn conflicting_records_never_share_a_cluster_through_a_chain() {
        // A household: 0 and 2 are two people (their names and birth dates conflict); 1 is a
        // record with the shared address and landline only, linked to both. The stronger link
        // places it; the chain that would join the two people is refused.
        let conflict = |a: u32, b: u32| (a.min(b), a.max(b)) == (0, 2);
        let links = [(0, 1, 6.0), (1, 2, 8.0), (0, 2, 1.0)];
        let (c, r) = cluster(3, links.to_vec(), vec![0; 3], Some(&conflict));
        assert_eq!(c, vec![0, 1, 1]);
        assert_eq!(r.links_refused_by_conflict, 2);
        // Without the check, one customer.
        let (c, _) = cluster(3, links.to_vec(), vec![0; 3], None);
        assert_eq!(c, vec![0, 0, 0]);
    }

    #[test]
    fn a_conflict_anywhere_in_two_grown_clusters_refuses_their_join() {
        // {0, 1, 2} and {3, 4} grow first; 2 and 4 conflict, so the weak link 0-3 is refused,
        // while 5 joins {3, 4} (no conflict with any of them).
        let conflict = |a: u32, b: u32| (a.min(b), a.max(b)) == (2, 4);
        let links = [
            (0, 1, 9.0),
            (1, 2, 8.0),
            (3, 4, 7.0),
            (4, 5, 6.0),
            (0, 3, 2.0),
        ];
        let (c, r) = cluster(6, links.to_vec(), vec![0; 6], Some(&conflict));
        assert_eq!(c, vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(r.links_refused_by_conflict, 1);
        assert_eq!(r.largest_cluster, 3);
    }
}
