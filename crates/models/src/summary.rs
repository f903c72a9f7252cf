//! Transactions to calibration summaries, as the buy-till-you-die literature computes them.

use crate::btyd::CustomerSummary;

/// One purchase: the customer, the day (any day count, such as days since 1970-01-01) and the spend.
/// A customer's purchases may share one id (`Arc`): millions of transactions need not each hold a
/// copy of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub customer: std::sync::Arc<str>,
    pub day: i64,
    pub amount: f64,
}

/// Each customer's summary at the end of the calibration period (`calibration_end`, a day number
/// like [`Transaction::day`]), in units of `unit_days` days (1 for days, 7 for weeks), ordered by
/// customer. Purchases after the end are left out; purchases of one customer on one day count as one
/// purchase of their summed spend; `x` is the number of purchase days after the first; `t_x` and `T`
/// run from the first purchase day to the last and to the end; `monetary_value` is the mean spend of the
/// repeat purchase days (the first day is left out; 0 without repeats). Customers whose first
/// purchase is after the end do not appear.
pub fn summarise(
    transactions: &[Transaction],
    calibration_end: i64,
    unit_days: f64,
) -> Vec<(String, CustomerSummary)> {
    let mut kept: Vec<&Transaction> = transactions
        .iter()
        .filter(|t| t.day <= calibration_end)
        .collect();
    fn key<'a>(t: &&'a Transaction) -> (&'a str, i64) {
        (&t.customer, t.day)
    }
    // The scoring query returns them in this order already; a stable sort otherwise keeps one
    // day's purchases in their given order, so that their spend sums the same either way.
    if !kept.is_sorted_by(|a, b| key(a) <= key(b)) {
        kept.sort_by(|a, b| key(a).cmp(&key(b)));
    }
    let mut out = Vec::new();
    for purchases in kept.chunk_by(|a, b| a.customer == b.customer) {
        let (Some(first), Some(last)) = (purchases.first(), purchases.last()) else {
            continue;
        };
        let (first_day, last_day) = (first.day, last.day);
        let (mut purchase_days, mut repeat_spend) = (0usize, 0.0);
        for day in purchases.chunk_by(|a, b| a.day == b.day) {
            let spend = day.iter().fold(0.0, |sum, t| sum + t.amount);
            purchase_days += 1;
            if purchase_days > 1 {
                repeat_spend += spend;
            }
        }
        let x = purchase_days - 1;
        out.push((
            first.customer.to_string(),
            CustomerSummary {
                x: x as f64,
                t_x: (last_day - first_day) as f64 / unit_days,
                t: (calibration_end - first_day) as f64 / unit_days,
                monetary_value: if x == 0 { 0.0 } else { repeat_spend / x as f64 },
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(customer: &str, day: i64, amount: f64) -> Transaction {
        Transaction {
            customer: customer.into(),
            day,
            amount,
        }
    }

    #[test]
    fn one_day_is_one_purchase_and_the_order_of_rows_does_not_matter() {
        let rows = vec![
            t("b", 14, 5.0),
            t("a", 0, 10.0),
            t("a", 7, 20.0),
            t("a", 7, 2.0),
            t("a", 21, 30.0),
            t("b", 30, 9.0),
            t("c", 50, 1.0),
        ];
        let s = summarise(&rows, 28, 7.0);
        assert_eq!(s.len(), 2, "c bought after the end");
        assert_eq!(s[0].0, "a");
        assert_eq!(s[0].1.x, 2.0);
        assert_eq!(s[0].1.t_x, 3.0);
        assert_eq!(s[0].1.t, 4.0);
        assert_eq!(s[0].1.monetary_value, (22.0 + 30.0) / 2.0);
        assert_eq!(s[1].0, "b");
        assert_eq!(s[1].1.x, 0.0);
        assert_eq!(s[1].1.monetary_value, 0.0);
        let mut reversed = rows.clone();
        reversed.reverse();
        let r = summarise(&reversed, 28, 7.0);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].1.x, s[0].1.x);
        assert_eq!(r[0].1.t_x, s[0].1.t_x);
    }
}
