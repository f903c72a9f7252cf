//! Clustering: connected components over the accepted links, strongest link first, with a guard
//! against chains. A cluster may hold at most one record of each source declared duplicate-free, so
//! a weak link that would join two CRM customers through a shared web account is refused, and the
//! stronger links decide which cluster the web account joins.

/// Union-find over records, each root with the mask of duplicate-free sources it holds.
struct Forest {
    parent: Vec<u32>,
    size: Vec<u32>,
    guarded: Vec<u64>,
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
}

/// What clustering did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterReport {
    pub links_accepted: u64,
    /// Links above the threshold refused by the duplicate-free guard.
    pub links_refused_by_guard: u64,
    pub clusters: u64,
    pub largest_cluster: u64,
}

/// Cluster number of every record (clusters numbered by their first record), given the links
/// `(a, b, weight)` above the threshold; `guard_bit[i]` is the duplicate-free bit of record i's
/// source, or 0.
pub fn cluster(
    records: usize,
    links: &[(u32, u32, f64)],
    guard_bit: &[u64],
) -> (Vec<u32>, ClusterReport) {
    let mut forest = Forest {
        parent: (0..u32::try_from(records).unwrap_or(u32::MAX)).collect(),
        size: vec![1; records],
        guarded: guard_bit.to_vec(),
    };
    let mut order: Vec<usize> = (0..links.len()).collect();
    // Strongest first; ties by record numbers, so the result never depends on input order.
    order.sort_by(|&x, &y| {
        links[y]
            .2
            .total_cmp(&links[x].2)
            .then((links[x].0, links[x].1).cmp(&(links[y].0, links[y].1)))
    });
    let mut report = ClusterReport::default();
    for i in order {
        let (a, b, _) = links[i];
        let (ra, rb) = (forest.find(a), forest.find(b));
        if ra == rb {
            report.links_accepted += 1;
            continue;
        }
        if forest.guarded[ra as usize] & forest.guarded[rb as usize] != 0 {
            report.links_refused_by_guard += 1;
            continue;
        }
        let (big, small) = if forest.size[ra as usize] >= forest.size[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
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
        let (c, r) = cluster(5, &[(0, 1, 5.0), (1, 2, 3.0), (3, 4, 1.0)], &[0; 5]);
        assert_eq!(c, vec![0, 0, 0, 1, 1]);
        assert_eq!(r.clusters, 2);
        assert_eq!(r.largest_cluster, 3);
    }

    #[test]
    fn the_guard_stops_a_chain_through_a_shared_record_and_keeps_the_best_link() {
        // Records 0 and 2 are from a duplicate-free CRM (bit 1); 1 is a web account that links to
        // both, more strongly to 2. The chain 0-1-2 would put two CRM customers in one cluster.
        let (c, r) = cluster(3, &[(0, 1, 4.0), (1, 2, 9.0)], &[1, 0, 1]);
        assert_eq!(c, vec![0, 1, 1]);
        assert_eq!(r.links_refused_by_guard, 1);
    }
}
