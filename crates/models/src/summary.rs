//! Transactions to calibration summaries, as the buy-till-you-die literature computes them.

use crate::btyd::CustomerSummary;
use crate::features::TextColumn;

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
/// purchase is after the end do not appear. ([`Histories`] without the last year's spend.)
pub fn summarise(
    transactions: &[Transaction],
    calibration_end: i64,
    unit_days: f64,
) -> Vec<(String, CustomerSummary)> {
    let histories = Histories::from_transactions(transactions, calibration_end, unit_days);
    histories
        .customers
        .iter()
        .map(str::to_string)
        .zip(histories.summaries)
        .collect()
}

/// Each customer's calibration summary (as [`summarise`] gives it) and spend in the 365 days up to
/// the end of the calibration period, ordered by customer: what the CLV scores need of the
/// purchases. Built by [`HistoriesBuilder`] from purchases streamed in order of customer and day,
/// so that the purchases themselves (forty million at ten million customers) are never held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histories {
    /// The end of the calibration period (a day number).
    pub calibration_end: i64,
    /// Customer ids, ascending.
    pub customers: TextColumn,
    /// Each customer's summary.
    pub summaries: Vec<CustomerSummary>,
    /// Each customer's spend on days after `calibration_end - 365` and up to the end.
    pub last_year_spend: Vec<f64>,
}

impl Histories {
    /// The histories of `transactions` in any order (sorted first, a stable sort: one customer's
    /// purchases of one day keep their given order, so their spend sums the same either way).
    pub fn from_transactions(
        transactions: &[Transaction],
        calibration_end: i64,
        unit_days: f64,
    ) -> Self {
        let mut kept: Vec<&Transaction> = transactions.iter().collect();
        fn key<'a>(t: &&'a Transaction) -> (&'a str, i64) {
            (&t.customer, t.day)
        }
        if !kept.is_sorted_by(|a, b| key(a) <= key(b)) {
            kept.sort_by(|a, b| key(a).cmp(&key(b)));
        }
        let mut builder = HistoriesBuilder::new(calibration_end, unit_days);
        for t in kept {
            // Sorted just above by the builder's own order: nothing to check.
            builder.fold(&t.customer, t.day, t.amount);
        }
        builder.finish()
    }

    /// Number of customers.
    pub fn len(&self) -> usize {
        self.summaries.len()
    }

    /// Whether no customer bought by the end.
    pub fn is_empty(&self) -> bool {
        self.summaries.is_empty()
    }
}

/// Builds [`Histories`] from purchases pushed one by one in order of customer and day (the order
/// of the CLV query): each customer's purchases are folded into their summary as they arrive.
#[derive(Debug, Clone)]
pub struct HistoriesBuilder {
    unit_days: f64,
    out: Histories,
    /// The customer being read, and what is folded of their purchases so far.
    customer: String,
    open: Option<Open>,
}

/// One customer's purchases folded so far.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// The last purchase day seen (after the end too): the order check.
    seen_day: i64,
    /// Days up to the end: the first and the current one, the current day's spend so far.
    first_day: Option<i64>,
    day: i64,
    day_spend: f64,
    purchase_days: usize,
    repeat_spend: f64,
    last_year: f64,
}

impl HistoriesBuilder {
    /// A builder for the calibration period ending on day `calibration_end`, summaries in units
    /// of `unit_days` days.
    pub fn new(calibration_end: i64, unit_days: f64) -> Self {
        Self {
            unit_days,
            out: Histories {
                calibration_end,
                ..Histories::default()
            },
            customer: String::new(),
            open: None,
        }
    }

    /// Adds one purchase. Purchases must come in order of customer and then day (any order
    /// within a day); an error says which one did not.
    pub fn push(&mut self, customer: &str, day: i64, amount: f64) -> crate::Result<()> {
        if let Some(open) = &self.open {
            if self.customer.as_str() > customer {
                return Err(crate::Error::BadInput(format!(
                    "purchases are not in order of customer: '{customer}' came after '{}'",
                    self.customer
                )));
            }
            if self.customer == customer && day < open.seen_day {
                return Err(crate::Error::BadInput(format!(
                    "purchases of customer '{customer}' are not in order of day: day {day} came after day {}",
                    open.seen_day
                )));
            }
        }
        self.fold(customer, day, amount);
        Ok(())
    }

    /// Folds one purchase that comes in order (checked by [`HistoriesBuilder::push`], or known
    /// from a sort by the same key).
    fn fold(&mut self, customer: &str, day: i64, amount: f64) {
        if self.open.is_none() || self.customer != customer {
            self.close();
            self.customer.clear();
            self.customer.push_str(customer);
        }
        let end = self.out.calibration_end;
        let open = self.open.get_or_insert(Open {
            seen_day: day,
            first_day: None,
            day,
            day_spend: 0.0,
            purchase_days: 0,
            repeat_spend: 0.0,
            last_year: 0.0,
        });
        open.seen_day = day;
        if day > end {
            return;
        }
        if day > end - 365 {
            open.last_year += amount;
        }
        let new_day = match open.first_day {
            None => {
                open.first_day = Some(day);
                true
            }
            Some(_) if day == open.day => false,
            Some(_) => {
                Self::close_day(open);
                true
            }
        };
        if new_day {
            open.day = day;
            open.day_spend = 0.0;
        }
        // A day's spend summed in the order its purchases came, from 0.
        open.day_spend += amount;
    }

    /// Counts the current day as a purchase day, its spend a repeat's after the first day.
    fn close_day(open: &mut Open) {
        open.purchase_days += 1;
        if open.purchase_days > 1 {
            open.repeat_spend += open.day_spend;
        }
    }

    /// Writes the customer being read, if they bought by the end.
    fn close(&mut self) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        let Some(first_day) = open.first_day else {
            return;
        };
        Self::close_day(&mut open);
        let x = open.purchase_days - 1;
        let end = self.out.calibration_end;
        self.out.customers.push(&self.customer);
        self.out.summaries.push(CustomerSummary {
            x: x as f64,
            t_x: (open.day - first_day) as f64 / self.unit_days,
            t: (end - first_day) as f64 / self.unit_days,
            monetary_value: if x == 0 {
                0.0
            } else {
                open.repeat_spend / x as f64
            },
        });
        self.out.last_year_spend.push(open.last_year);
    }

    /// The histories of every purchase pushed.
    pub fn finish(mut self) -> Histories {
        self.close();
        self.out
    }
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

    #[test]
    fn histories_streamed_in_order_fold_each_customer_with_the_last_years_spend() {
        // The end is day 400: the last year is days 36 to 400.
        let mut b = HistoriesBuilder::new(400, 7.0);
        for (customer, day, amount) in [
            ("a", 10, 5.0), // before the last year
            ("a", 40, 2.5), // in it, two purchases on one day
            ("a", 40, 4.0),
            ("a", 400, 1.0),  // the end itself counts
            ("a", 401, 99.0), // after the end: left out
            ("b", 500, 7.0),  // bought only after the end: no history
            ("c", 35, 3.0),   // 365 days before the end: not in the last year
        ] {
            assert!(b.push(customer, day, amount).is_ok(), "{customer} {day}");
        }
        let h = b.finish();
        assert_eq!(h.customers.iter().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(h.last_year_spend, [7.5, 0.0]);
        assert_eq!(h.summaries[0].x, 2.0);
        assert_eq!(h.summaries[0].t_x, 390.0 / 7.0);
        assert_eq!(h.summaries[0].t, 390.0 / 7.0);
        assert_eq!(h.summaries[0].monetary_value, (6.5 + 1.0) / 2.0);
        assert_eq!(h.summaries[1].x, 0.0);
        assert_eq!(h.summaries[1].t, 365.0 / 7.0);
        // The same purchases in any order give the same histories through from_transactions.
        let rows = [
            t("c", 35, 3.0),
            t("a", 400, 1.0),
            t("a", 40, 2.5),
            t("a", 10, 5.0),
            t("a", 40, 4.0),
        ];
        assert_eq!(Histories::from_transactions(&rows, 400, 7.0), h);
    }

    #[test]
    fn purchases_out_of_order_are_refused_saying_which() {
        let mut b = HistoriesBuilder::new(100, 1.0);
        assert!(b.push("b", 5, 1.0).is_ok());
        let e = b.push("a", 6, 1.0).map_err(|e| e.to_string());
        assert!(
            e.as_ref().is_err_and(|e| e.contains("'a' came after 'b'")),
            "{e:?}"
        );
        let mut b = HistoriesBuilder::new(100, 1.0);
        assert!(b.push("a", 5, 1.0).is_ok());
        assert!(b.push("a", 200, 1.0).is_ok());
        let e = b.push("a", 7, 1.0).map_err(|e| e.to_string());
        assert!(
            e.as_ref()
                .is_err_and(|e| e.contains("day 7 came after day 200")),
            "{e:?}"
        );
    }
}
