//! Campaign measurement: every campaign an earlier run sent with a control group, measured by
//! the purchases of the treated and the held-out customers within its response window.

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use chrono::NaiveDate;
use clientele_sql::Engine;
use clientele_sql::queries;

use crate::ExportSpec;
use crate::error::{Error, Result};

/// One campaign's measured effect: the customers sent and held out by an earlier run, and who of
/// them bought within the response window after the send.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CampaignResult {
    pub campaign_id: String,
    pub export: String,
    pub segment: String,
    pub sent_date: String,
    pub window_days: u32,
    /// Whether the whole response window lies before this run's as-of date.
    pub window_closed: bool,
    pub treated: u64,
    pub control: u64,
    pub treated_responders: u64,
    pub control_responders: u64,
    pub treated_response_rate: f64,
    pub control_response_rate: f64,
    /// Treated minus control response rate, with its 95% confidence interval (normal
    /// approximation to the difference of two proportions).
    pub lift: f64,
    pub lift_ci_low: f64,
    pub lift_ci_high: f64,
    pub treated_revenue_per_customer: f64,
    pub control_revenue_per_customer: f64,
    /// Treated minus control revenue per customer, with its 95% confidence interval (Welch).
    pub incremental_revenue_per_customer: f64,
    pub incremental_revenue_ci_low: f64,
    pub incremental_revenue_ci_high: f64,
    /// Incremental revenue per customer times the customers treated.
    pub incremental_revenue: f64,
}

/// The `campaign_results` table.
pub fn campaign_results_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field};
    let f = |n: &str, t: DataType| Field::new(n, t, false);
    let fl = |n: &str| Field::new(n, DataType::Float64, true);
    std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        f("campaign_id", DataType::Utf8),
        f("export", DataType::Utf8),
        f("segment", DataType::Utf8),
        f("sent_date", DataType::Utf8),
        f("window_days", DataType::Int32),
        f("window_closed", DataType::Boolean),
        f("treated", DataType::Int64),
        f("control", DataType::Int64),
        f("treated_responders", DataType::Int64),
        f("control_responders", DataType::Int64),
        fl("treated_response_rate"),
        fl("control_response_rate"),
        fl("lift"),
        fl("lift_ci_low"),
        fl("lift_ci_high"),
        fl("treated_revenue_per_customer"),
        fl("control_revenue_per_customer"),
        fl("incremental_revenue_per_customer"),
        fl("incremental_revenue_ci_low"),
        fl("incremental_revenue_ci_high"),
        fl("incremental_revenue"),
    ]))
}

/// Per group of one campaign: customers, responders, revenue and its sum of squares.
#[derive(Default, Clone, Copy)]
struct GroupOutcome {
    customers: f64,
    responders: f64,
    revenue: f64,
    revenue_sq: f64,
}

/// The effect of every campaign an earlier run sent with a control group: purchases (any order)
/// within each export's response window after the send, treated against control.
///
/// `exports` are the declared exports, whose response windows apply; an export no longer
/// declared keeps the default of 30 days. Reads `history.export_audience` and `fct_orders`.
pub async fn measure_campaigns(
    engine: &Engine,
    exports: &[ExportSpec],
    as_of: NaiveDate,
) -> Result<Vec<CampaignResult>> {
    let windows: BTreeMap<&str, u32> = exports
        .iter()
        .map(|e| (e.name.as_str(), e.response_window_days.unwrap_or(30)))
        .collect();
    // The window per export, as SQL (exports no longer declared keep the default).
    let mut window_sql = String::from("case a.export");
    for (name, w) in &windows {
        window_sql.push_str(&format!(" when '{}' then {w}", name.replace('\'', "''")));
    }
    window_sql.push_str(" else 30 end");
    let sql = queries::CAMPAIGN_RESULTS.fill(&[
        ("as_of", &queries::date_param(as_of)),
        ("window_days", &window_sql),
    ])?;
    let batches = engine
        .collect("measuring the campaigns against their control groups", &sql)
        .await?;
    let mut by_campaign: BTreeMap<(String, String, String, String, u32), [GroupOutcome; 2]> =
        BTreeMap::new();
    for b in &batches {
        let text = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
                .map_err(|e| Error::Internal(e.to_string()))
        };
        let num = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Float64)
                .map_err(|e| Error::Internal(e.to_string()))
        };
        let (c, e, s, d, grp) = (text(0)?, text(1)?, text(2)?, text(3)?, text(5)?);
        let (w, n, r, rev, sq) = (num(4)?, num(6)?, num(7)?, num(8)?, num(9)?);
        let (c, e, s, d, grp) = (
            c.as_string::<i32>(),
            e.as_string::<i32>(),
            s.as_string::<i32>(),
            d.as_string::<i32>(),
            grp.as_string::<i32>(),
        );
        let f = |a: &arrow::array::ArrayRef, i: usize| {
            a.as_primitive::<arrow::datatypes::Float64Type>().value(i)
        };
        for i in 0..b.num_rows() {
            let key = (
                c.value(i).to_string(),
                e.value(i).to_string(),
                s.value(i).to_string(),
                d.value(i).to_string(),
                f(&w, i) as u32,
            );
            let slot = usize::from(grp.value(i) == "control");
            by_campaign.entry(key).or_default()[slot] = GroupOutcome {
                customers: f(&n, i),
                responders: f(&r, i),
                revenue: f(&rev, i),
                revenue_sq: f(&sq, i),
            };
        }
    }
    let mut out = Vec::new();
    for ((campaign_id, export, segment, sent_date, window_days), [t, c]) in by_campaign {
        let rate = |g: &GroupOutcome| g.responders / g.customers.max(1.0);
        let (pt, pc) = (rate(&t), rate(&c));
        let se = (pt * (1.0 - pt) / t.customers.max(1.0) + pc * (1.0 - pc) / c.customers.max(1.0))
            .sqrt();
        let mean = |g: &GroupOutcome| g.revenue / g.customers.max(1.0);
        let var = |g: &GroupOutcome| {
            if g.customers > 1.0 {
                ((g.revenue_sq - g.customers * mean(g) * mean(g)) / (g.customers - 1.0)).max(0.0)
            } else {
                0.0
            }
        };
        let (mt, mc) = (mean(&t), mean(&c));
        let se_rev = (var(&t) / t.customers.max(1.0) + var(&c) / c.customers.max(1.0)).sqrt();
        let sent = NaiveDate::parse_from_str(&sent_date, "%Y-%m-%d").ok();
        out.push(CampaignResult {
            window_closed: sent
                .is_some_and(|d| d + chrono::Days::new(u64::from(window_days)) <= as_of),
            campaign_id,
            export,
            segment,
            sent_date,
            window_days,
            treated: t.customers as u64,
            control: c.customers as u64,
            treated_responders: t.responders as u64,
            control_responders: c.responders as u64,
            treated_response_rate: pt,
            control_response_rate: pc,
            lift: pt - pc,
            lift_ci_low: pt - pc - 1.96 * se,
            lift_ci_high: pt - pc + 1.96 * se,
            treated_revenue_per_customer: mt,
            control_revenue_per_customer: mc,
            incremental_revenue_per_customer: mt - mc,
            incremental_revenue_ci_low: mt - mc - 1.96 * se_rev,
            incremental_revenue_ci_high: mt - mc + 1.96 * se_rev,
            incremental_revenue: (mt - mc) * t.customers,
        });
    }
    Ok(out)
}

/// The `campaign_results` rows.
pub fn campaign_results_batch(results: &[CampaignResult]) -> Result<RecordBatch> {
    use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray};
    use std::sync::Arc;
    let s = |f: &dyn Fn(&CampaignResult) -> &str| -> ArrayRef {
        Arc::new(StringArray::from(results.iter().map(f).collect::<Vec<_>>()))
    };
    // Signed: Spark and some BI tools read unsigned Parquet integers as decimals.
    let u = |f: &dyn Fn(&CampaignResult) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from(
            results
                .iter()
                .map(|r| i64::try_from(f(r)).unwrap_or(i64::MAX))
                .collect::<Vec<_>>(),
        ))
    };
    let fl = |f: &dyn Fn(&CampaignResult) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from(
            results
                .iter()
                .map(|r| Some(f(r)).filter(|v| v.is_finite()))
                .collect::<Vec<_>>(),
        ))
    };
    RecordBatch::try_new(
        campaign_results_schema(),
        vec![
            s(&|r| &r.campaign_id),
            s(&|r| &r.export),
            s(&|r| &r.segment),
            s(&|r| &r.sent_date),
            Arc::new(Int32Array::from(
                results
                    .iter()
                    .map(|r| i32::try_from(r.window_days).unwrap_or(i32::MAX))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                results.iter().map(|r| r.window_closed).collect::<Vec<_>>(),
            )),
            u(&|r| r.treated),
            u(&|r| r.control),
            u(&|r| r.treated_responders),
            u(&|r| r.control_responders),
            fl(&|r| r.treated_response_rate),
            fl(&|r| r.control_response_rate),
            fl(&|r| r.lift),
            fl(&|r| r.lift_ci_low),
            fl(&|r| r.lift_ci_high),
            fl(&|r| r.treated_revenue_per_customer),
            fl(&|r| r.control_revenue_per_customer),
            fl(&|r| r.incremental_revenue_per_customer),
            fl(&|r| r.incremental_revenue_ci_low),
            fl(&|r| r.incremental_revenue_ci_high),
            fl(&|r| r.incremental_revenue),
        ],
    )
    .map_err(|e| Error::Internal(e.to_string()))
}
