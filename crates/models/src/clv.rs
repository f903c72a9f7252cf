//! Customer lifetime value from buy-till-you-die models: BG/NBD for how many purchases, Gamma-Gamma
//! for how much each is worth, discounted month by month; and the simple formula beside it.
//!
//! For each customer, with the models fitted on everybody's purchases up to the as-of date (weeks):
//! - `p_alive`: the probability that the customer is still active;
//! - `expected_purchases`: expected purchases over the horizon;
//! - `expected_spend`: expected spend per purchase (Gamma-Gamma; the population mean for customers
//!   without repeat purchases);
//! - `clv`: the sum over months m = 1..H of (E[purchases by month m] - E[purchases by month m-1]) ×
//!   expected spend / (1 + d)^m, with d the monthly discount rate (a month is 365.25 / 12 days);
//! - `simple_clv`: the textbook formula, the sum over years t = 1..N of R / (1 + I)^t, with R the
//!   customer's spend in the last 365 days, I = (1 + d)^12 - 1 and N the horizon in whole years
//!   (at least one).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::btyd::{BgNbd, FitError, GammaGamma};
use crate::rfm::Error;
use crate::summary::{Histories, HistoriesBuilder, Transaction};

/// Days per week and per month used by the scores.
const WEEK_DAYS: f64 = 7.0;
const MONTH_DAYS: f64 = 365.25 / 12.0;

impl Histories {
    /// The histories of `transactions` (in any order) up to `as_of`, in weeks: what
    /// [`score_clv`] and [`clv_scores`] read.
    pub fn weeks(transactions: &[Transaction], as_of: i64) -> Self {
        Self::from_transactions(transactions, as_of, WEEK_DAYS)
    }
}

impl HistoriesBuilder {
    /// A builder of [`Histories::weeks`] up to `as_of`, for purchases streamed in order of
    /// customer and day.
    pub fn weeks(as_of: i64) -> Self {
        Self::new(as_of, WEEK_DAYS)
    }
}

/// How far ahead to value customers and how to discount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClvOptions {
    /// The horizon in months.
    pub horizon_months: u32,
    /// The monthly discount rate, such as 0.01 for 1% a month.
    pub monthly_discount_rate: f64,
}

/// The schema of the `customer_clv` table.
pub fn clv_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("frequency", DataType::Int64, false),
        Field::new("recency_weeks", DataType::Float64, false),
        Field::new("age_weeks", DataType::Float64, false),
        Field::new("monetary_value", DataType::Float64, false),
        Field::new("p_alive", DataType::Float64, false),
        Field::new("expected_purchases", DataType::Float64, false),
        Field::new("expected_spend", DataType::Float64, false),
        Field::new("clv", DataType::Float64, false),
        Field::new("simple_clv", DataType::Float64, false),
        Field::new("model_version", DataType::Utf8, false),
    ]))
}

/// The schema of the `model_metrics` table: one row per model and metric.
pub fn metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]))
}

/// The fitted parameters of the CLV models, as saved in a model artifact.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClvParams {
    /// BG/NBD (purchase counts and P(alive)).
    pub counts: BgNbd,
    /// Gamma-Gamma (spend per purchase).
    pub spend: GammaGamma,
}

/// The version written beside every score.
pub const MODEL_VERSION: &str = concat!("bgnbd+gamma_gamma/clientele ", env!("CARGO_PKG_VERSION"));

fn fit_error(e: FitError) -> Error {
    Error::BadInput(e.to_string())
}

/// Fits the models on the customers' `histories` (summaries in weeks up to their calibration end,
/// the as-of date: [`Histories::weeks`]) and scores every customer who bought by then. Returns the `customer_clv` and `model_metrics`
/// batches and the fitted parameters. A fit that fails is an error naming the model and why.
pub fn score_clv(
    histories: &Histories,
    options: &ClvOptions,
) -> Result<(RecordBatch, RecordBatch, ClvParams), Error> {
    if !(options.monthly_discount_rate > -1.0 && options.monthly_discount_rate.is_finite()) {
        return Err(Error::BadInput(format!(
            "monthly discount rate {} must be above -1",
            options.monthly_discount_rate
        )));
    }
    let data = &histories.summaries;
    let counts = BgNbd::fit(data).map_err(fit_error)?;
    let spend = GammaGamma::fit(data).map_err(fit_error)?;
    let (m, g) = (counts.params, spend.params);
    let scores = clv_scores(&m, &g, histories, options)?;
    let n = scores.num_rows();

    let mut metrics: Vec<(&str, String, f64)> = Vec::new();
    for (name, value, se) in [
        ("r", m.r, counts.std_errors.first()),
        ("alpha", m.alpha, counts.std_errors.get(1)),
        ("a", m.a, counts.std_errors.get(2)),
        ("b", m.b, counts.std_errors.get(3)),
    ] {
        metrics.push(("bgnbd", name.into(), value));
        metrics.push((
            "bgnbd",
            format!("{name}_std_error"),
            se.copied().unwrap_or(f64::NAN),
        ));
    }
    metrics.push(("bgnbd", "log_likelihood".into(), counts.log_likelihood));
    metrics.push(("bgnbd", "customers".into(), n as f64));
    for (name, value, se) in [
        ("p", g.p, spend.std_errors.first()),
        ("q", g.q, spend.std_errors.get(1)),
        ("gamma", g.gamma, spend.std_errors.get(2)),
    ] {
        metrics.push(("gamma_gamma", name.into(), value));
        metrics.push((
            "gamma_gamma",
            format!("{name}_std_error"),
            se.copied().unwrap_or(f64::NAN),
        ));
    }
    metrics.push(("gamma_gamma", "log_likelihood".into(), spend.log_likelihood));
    let repeat = data
        .iter()
        .filter(|c| c.x > 0.0 && c.monetary_value > 0.0)
        .count();
    metrics.push(("gamma_gamma", "customers".into(), repeat as f64));
    let metrics = RecordBatch::try_new(
        metrics_schema(),
        vec![
            Arc::new(StringArray::from(
                metrics.iter().map(|m| m.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                metrics.iter().map(|m| m.1.clone()).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                metrics.iter().map(|m| m.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    Ok((
        scores,
        metrics,
        ClvParams {
            counts: m,
            spend: g,
        },
    ))
}

/// Scores every customer of `histories` (summaries in weeks: [`Histories::weeks`]) with fitted
/// parameters: the `customer_clv` batch. This is what a saved CLV artifact repeats.
pub fn clv_scores(
    m: &BgNbd,
    g: &GammaGamma,
    histories: &Histories,
    options: &ClvOptions,
) -> Result<RecordBatch, Error> {
    let d = options.monthly_discount_rate;
    let annual = (1.0 + d).powi(12) - 1.0;
    let years = options.horizon_months.div_ceil(12).max(1);

    let n = histories.len();
    // Each month's expected purchases of an active customer depend on the repeat purchases and
    // the age alone, which many customers share (a few per cent as many pairs as customers at
    // 1,000,000 persons): the hypergeometric series behind them is summed once a pair.
    let mut if_alive: HashMap<(u64, u64), std::ops::Range<usize>> = HashMap::new();
    let mut by_month: Vec<f64> = Vec::new();
    let mut cols = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let customers = histories.customers.iter();
    for ((customer, c), r) in customers
        .zip(&histories.summaries)
        .zip(&histories.last_year_spend)
    {
        let spend_per_purchase = g.expected_spend(c.x, c.monetary_value);
        let months = match if_alive.entry((c.x.to_bits(), c.t.to_bits())) {
            Entry::Occupied(e) => e.get().clone(),
            Entry::Vacant(e) => {
                let start = by_month.len();
                for month in 1..=options.horizon_months {
                    let weeks = f64::from(month) * MONTH_DAYS / WEEK_DAYS;
                    by_month.push(
                        m.expected_purchases_if_alive(c.x, c.t, weeks)
                            .map_err(fit_error)?,
                    );
                }
                e.insert(start..by_month.len()).clone()
            }
        };
        let p_alive = m.p_alive(c);
        let mut clv = 0.0;
        let mut before = 0.0;
        for (month, if_alive) in (1..).zip(&by_month[months]) {
            // As `BgNbd::conditional_expected_purchases`, to the bit.
            let by_now = if_alive * p_alive;
            clv += (by_now - before) * spend_per_purchase / (1.0 + d).powi(month);
            before = by_now;
        }
        // The expectation by the last month is the expectation over the horizon.
        let expected = before;
        let simple: f64 = (1..=years).map(|t| r / (1.0 + annual).powi(t as i32)).sum();
        cols.0.push(customer);
        cols.1.push(c.x as i64);
        cols.2.push(c.t_x);
        cols.3.push(c.t);
        cols.4.push(c.monetary_value);
        cols.5.push(p_alive);
        cols.6.push(expected);
        cols.7.push(spend_per_purchase);
        cols.8.push(clv);
        cols.9.push(simple);
    }
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(cols.0)),
        Arc::new(Int64Array::from(cols.1)),
        Arc::new(Float64Array::from(cols.2)),
        Arc::new(Float64Array::from(cols.3)),
        Arc::new(Float64Array::from(cols.4)),
        Arc::new(Float64Array::from(cols.5)),
        Arc::new(Float64Array::from(cols.6)),
        Arc::new(Float64Array::from(cols.7)),
        Arc::new(Float64Array::from(cols.8)),
        Arc::new(Float64Array::from(cols.9)),
        Arc::new(StringArray::from(vec![MODEL_VERSION; n])),
    ];
    RecordBatch::try_new(clv_schema(), arrays).map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(customer: &str, day: i64, amount: f64) -> Transaction {
        Transaction {
            customer: customer.into(),
            day,
            amount,
        }
    }

    #[test]
    fn scores_are_sane_and_discounting_lowers_value() -> Result<(), Error> {
        // 60 customers: some buy often and recently, some once long ago.
        let mut t = Vec::new();
        for c in 0..60i64 {
            let id = format!("c{c:02}");
            let first = c * 3;
            t.push(tx(&id, first, 20.0 + c as f64));
            for k in 1..=(c % 7) {
                t.push(tx(
                    &id,
                    first + k * (5 + c % 11),
                    15.0 + (k * c % 13) as f64,
                ));
            }
        }
        let as_of = 400;
        let opts = ClvOptions {
            horizon_months: 12,
            monthly_discount_rate: 0.0,
        };
        let (plain, metrics, _) = score_clv(&Histories::weeks(&t, as_of), &opts)?;
        assert_eq!(plain.num_rows(), 60);
        assert!(metrics.num_rows() > 10);
        let col = |b: &RecordBatch, name: &str| -> Vec<f64> {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
                .map(|a| a.values().to_vec())
                .unwrap_or_default()
        };
        let p_alive = col(&plain, "p_alive");
        assert!(p_alive.iter().all(|p| (0.0..=1.0).contains(p)));
        let clv0 = col(&plain, "clv");
        assert!(clv0.iter().all(|v| v.is_finite() && *v >= 0.0));
        // Without discounting, CLV is expected purchases times expected spend.
        let e = col(&plain, "expected_purchases");
        let s = col(&plain, "expected_spend");
        for i in 0..60 {
            assert!(
                (clv0[i] - e[i] * s[i]).abs() < 1e-6 * (1.0 + clv0[i]),
                "{i}"
            );
        }
        let (discounted, _, _) = score_clv(
            &Histories::weeks(&t, as_of),
            &ClvOptions {
                monthly_discount_rate: 0.02,
                ..opts
            },
        )?;
        let clv2 = col(&discounted, "clv");
        assert!(clv2.iter().zip(&clv0).all(|(d, p)| d <= p));
        assert!(clv2.iter().zip(&clv0).any(|(d, p)| d < p));
        Ok(())
    }

    #[test]
    fn customers_sharing_purchases_and_age_are_scored_as_each_alone() -> Result<(), Error> {
        // Pairs of customers with the same first purchase and number of purchases but different
        // last ones: the same x and T, another recency, so a memo keyed on the wrong fields
        // would give one the other's values.
        let mut t = Vec::new();
        for c in 0..40i64 {
            for twin in 0..2i64 {
                let id = format!("c{c:02}{twin}");
                let first = (c % 10) * 7;
                t.push(tx(&id, first, 30.0 + c as f64));
                for k in 1..=(c % 4) {
                    t.push(tx(&id, first + k * (9 + twin * 20), 20.0 + k as f64));
                }
            }
        }
        let histories = Histories::weeks(&t, 300);
        let m = BgNbd {
            r: 0.5,
            alpha: 7.5,
            a: 1.1,
            b: 6.3,
        };
        let g = GammaGamma {
            p: 6.2,
            q: 3.8,
            gamma: 15.6,
        };
        let opts = ClvOptions {
            horizon_months: 12,
            monthly_discount_rate: 0.01,
        };
        let batch = clv_scores(&m, &g, &histories, &opts)?;
        let col = |name: &str| -> Vec<f64> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
                .map(|a| a.values().to_vec())
                .unwrap_or_default()
        };
        let (clv, expected) = (col("clv"), col("expected_purchases"));
        let mut shared = 0;
        for (i, c) in histories.summaries.iter().enumerate() {
            let spend = g.expected_spend(c.x, c.monetary_value);
            let (mut alone, mut before) = (0.0, 0.0);
            for month in 1..=12u32 {
                let by_now = m
                    .conditional_expected_purchases(c, f64::from(month) * MONTH_DAYS / WEEK_DAYS)
                    .map_err(fit_error)?;
                alone += (by_now - before) * spend / 1.01f64.powi(month as i32);
                before = by_now;
            }
            assert_eq!(clv[i].to_bits(), alone.to_bits(), "customer {i}");
            assert_eq!(expected[i].to_bits(), before.to_bits(), "customer {i}");
            shared += histories
                .summaries
                .iter()
                .filter(|o| o.x == c.x && o.t == c.t && o.t_x != c.t_x)
                .count();
        }
        assert!(
            shared > 0,
            "no customers share x and T with another recency"
        );
        Ok(())
    }

    #[test]
    fn a_rate_below_minus_one_is_refused() {
        let t = vec![tx("a", 0, 1.0)];
        let opts = ClvOptions {
            horizon_months: 12,
            monthly_discount_rate: -1.5,
        };
        assert!(score_clv(&Histories::weeks(&t, 10), &opts).is_err());
    }
}
