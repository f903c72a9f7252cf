//! Transactions to calibration summaries, as the buy-till-you-die literature computes them.

use std::collections::BTreeMap;

use crate::btyd::CustomerSummary;

/// One purchase: the customer, the day (any day count, such as days since 1970-01-01) and the spend.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub customer: String,
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
    let mut days: BTreeMap<&str, BTreeMap<i64, f64>> = BTreeMap::new();
    for t in transactions.iter().filter(|t| t.day <= calibration_end) {
        *days
            .entry(t.customer.as_str())
            .or_default()
            .entry(t.day)
            .or_insert(0.0) += t.amount;
    }
    days.into_iter()
        .filter_map(|(customer, by_day)| {
            let (&first, _) = by_day.first_key_value()?;
            let (&last, _) = by_day.last_key_value()?;
            let x = by_day.len() - 1;
            let repeat_spend: f64 = by_day.range(first + 1..).map(|(_, v)| v).sum();
            Some((
                customer.to_string(),
                CustomerSummary {
                    x: x as f64,
                    t_x: (last - first) as f64 / unit_days,
                    t: (calibration_end - first) as f64 / unit_days,
                    monetary_value: if x == 0 { 0.0 } else { repeat_spend / x as f64 },
                },
            ))
        })
        .collect()
}
