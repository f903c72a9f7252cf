//! Segment alarms: a segment whose size changed sharply since the last run is worth a look before
//! its export goes out (a broken source or model shows up here first).

use std::collections::BTreeMap;

use crate::SegmentSize;

/// When a change in size raises an alarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmRule {
    /// A change by more than this share of the earlier size (0.5: grown or shrunk by half).
    pub share: f64,
    /// Segments below this many customers, now and before, raise none.
    pub min_customers: u64,
}

/// The earlier sizes compared against, and which run they came from (for the message).
pub struct EarlierSizes<'a> {
    pub sizes: &'a [SegmentSize],
    pub run_id: &'a str,
    pub as_of: &'a str,
}

/// One message per segment in both runs whose size changed by more than the rule allows.
pub fn size_alarms(now: &[SegmentSize], before: &EarlierSizes<'_>, rule: AlarmRule) -> Vec<String> {
    let earlier: BTreeMap<&str, u64> = before
        .sizes
        .iter()
        .map(|s| (s.segment.as_str(), s.customers))
        .collect();
    let mut alarms = Vec::new();
    for s in now.iter().filter(|s| s.skipped.is_none()) {
        let Some(&old) = earlier.get(s.segment.as_str()) else {
            continue;
        };
        let new = s.customers;
        if old.max(new) < rule.min_customers {
            continue;
        }
        let change = (new as f64 - old as f64) / (old.max(1) as f64);
        if change.abs() > rule.share {
            alarms.push(format!(
                "segment {} changed from {} to {} customers ({:+.0}%) since run {} as of {}",
                s.segment,
                thousands(old),
                thousands(new),
                change * 100.0,
                before.run_id,
                before.as_of
            ));
        }
    }
    alarms
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(segment: &str, customers: u64) -> SegmentSize {
        SegmentSize {
            segment: segment.into(),
            name: segment.into(),
            customers,
            skipped: None,
        }
    }

    #[test]
    fn a_segment_skipped_for_a_missing_score_raises_no_alarm() {
        let before = [size("grid_build_relationship", 500)];
        let earlier = EarlierSizes {
            sizes: &before,
            run_id: "r1",
            as_of: "2025-12-30",
        };
        let mut now = size("grid_build_relationship", 0);
        now.skipped = Some("needs customer_scores.propensity".into());
        let rule = AlarmRule {
            share: 0.5,
            min_customers: 20,
        };
        assert!(size_alarms(&[now], &earlier, rule).is_empty());
        assert_eq!(
            size_alarms(&[size("grid_build_relationship", 0)], &earlier, rule).len(),
            1
        );
    }

    #[test]
    fn a_sharp_change_of_a_large_enough_segment_raises_an_alarm() {
        let before = [
            size("a", 100),
            size("b", 100),
            size("c", 10),
            size("gone", 50),
        ];
        let now = [
            size("a", 140),
            size("b", 1_600),
            size("c", 1),
            size("new", 900),
        ];
        let rule = AlarmRule {
            share: 0.5,
            min_customers: 20,
        };
        let earlier = EarlierSizes {
            sizes: &before,
            run_id: "R1",
            as_of: "2025-12-30",
        };
        assert_eq!(
            size_alarms(&now, &earlier, rule),
            [
                "segment b changed from 100 to 1,600 customers (+1500%) since run R1 as of 2025-12-30"
            ]
        );
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
