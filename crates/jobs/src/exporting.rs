//! The `export` step: every declared export of the step written with suppression, control
//! groups and diffs against the last export, the audiences recorded in `export_audience`, and
//! copies delivered to each export's location once every file is written.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use chrono::NaiveDate;
use clientele_segments::formats::Locale;
use clientele_segments::{
    ExportContext, ExportOutput, ExportReport, ExportSpec, PreviousRows, SuppressionList,
    audience_schema, export_segment,
};
use clientele_sql::Engine;
use clientele_store::{Warehouse, WrittenFile, layout};

use crate::runner::BoxError;
use crate::spec::{AUDIENCE_TABLE, JobSpec};

/// Reads the job's global suppression lists.
pub(crate) fn suppression_list(spec: &JobSpec) -> Result<SuppressionList, BoxError> {
    let mut list = SuppressionList::default();
    for pattern in &spec.suppression_lists {
        let full = spec.base_dir.join(pattern);
        let full = full.to_string_lossy();
        let paths: Vec<_> = glob::glob(&full)
            .map_err(|e| format!("suppression list '{pattern}': {e}"))?
            .filter_map(Result::ok)
            .collect();
        if paths.is_empty() {
            return Err(format!(
                "suppression list '{pattern}' matches no file: a missing list would let suppressed people through"
            )
            .into());
        }
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading the suppression list {}: {e}", path.display()))?;
            list.read(
                &path.display().to_string(),
                &text,
                &spec.identity.default_country_code,
            )?;
        }
    }
    Ok(list)
}

/// The last export's sent rows (customer → fingerprint, row) before `as_of`, and its date.
async fn previous_rows(
    engine: &Engine,
    export: &str,
    as_of: NaiveDate,
) -> Result<Option<(NaiveDate, PreviousRows)>, BoxError> {
    let name = export.replace('\'', "''");
    let sql = format!(
        "select cast(as_of as varchar) as as_of, customer_id, fingerprint, \"row\"
         from history.export_audience
         where export = '{name}' and \"group\" = 'treatment'
           and as_of = (select max(as_of) from history.export_audience
                        where export = '{name}' and as_of < cast('{as_of}' as date))
         order by customer_id"
    );
    let batches = engine
        .collect(
            &format!("reading the last audience of export '{export}'"),
            &sql,
        )
        .await?;
    let mut date = None;
    let mut rows = BTreeMap::new();
    for b in &batches {
        let col = |i: usize| {
            b.column(i)
                .as_string_opt::<i32>()
                .ok_or("export_audience columns are not text")
        };
        let (d, id, fp, row) = (col(0)?, col(1)?, col(2)?, col(3)?);
        for i in 0..b.num_rows() {
            if date.is_none() {
                date = NaiveDate::parse_from_str(d.value(i), "%Y-%m-%d").ok();
            }
            rows.insert(
                id.value(i).to_string(),
                (
                    if fp.is_null(i) {
                        String::new()
                    } else {
                        fp.value(i).to_string()
                    },
                    if row.is_null(i) {
                        "[]".to_string()
                    } else {
                        row.value(i).to_string()
                    },
                ),
            );
        }
    }
    Ok(date.map(|d| (d, rows)))
}

/// What the step produced.
pub(crate) struct ExportsDone {
    pub reports: Vec<ExportReport>,
    pub files: Vec<WrittenFile>,
    pub audience: RecordBatch,
    /// The suppression list as applied, for `clientele export` to apply it too.
    pub suppression: RecordBatch,
    /// Earlier campaigns measured against their control groups.
    pub campaigns: Vec<CampaignResult>,
}

/// The `suppression_list` table: what the job's global lists held when the run exported
/// (standardised emails and E.164 phones).
pub fn suppression_schema() -> arrow::datatypes::SchemaRef {
    std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("kind", arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new("value", arrow::datatypes::DataType::Utf8, false),
    ]))
}

fn suppression_batch(list: &SuppressionList) -> Result<RecordBatch, BoxError> {
    let mut kinds = Vec::new();
    let mut values = Vec::new();
    for e in &list.emails {
        kinds.push("email");
        values.push(e.as_str());
    }
    for p in &list.phones {
        kinds.push("phone");
        values.push(p.as_str());
    }
    Ok(RecordBatch::try_new(
        suppression_schema(),
        vec![
            std::sync::Arc::new(arrow::array::StringArray::from(kinds)),
            std::sync::Arc::new(arrow::array::StringArray::from(values)),
        ],
    )?)
}

/// A suppression list from a published `suppression_list` table's rows.
pub fn suppression_from_batches(batches: &[RecordBatch]) -> Result<SuppressionList, BoxError> {
    let mut list = SuppressionList::default();
    for b in batches {
        let kind = b
            .column(0)
            .as_string_opt::<i32>()
            .ok_or("suppression_list.kind is not text")?;
        let value = b
            .column(1)
            .as_string_opt::<i32>()
            .ok_or("suppression_list.value is not text")?;
        for i in 0..b.num_rows() {
            match kind.value(i) {
                "email" => list.emails.insert(value.value(i).to_string()),
                _ => list.phones.insert(value.value(i).to_string()),
            };
        }
    }
    Ok(list)
}

/// Writes every export of the step, then delivers the copies.
pub(crate) async fn run(
    engine: &Engine,
    warehouse: &Warehouse,
    spec: &JobSpec,
    exports: &[&ExportSpec],
    as_of: NaiveDate,
    run_id: &layout::RunId,
) -> Result<ExportsDone, BoxError> {
    let suppression = suppression_list(spec)?;
    let has_closed_accounts = engine
        .plan_schema("select * from customer_view")
        .await?
        .field_with_name("is_account_closed")
        .is_ok();
    engine.register_empty(AUDIENCE_TABLE.1, audience_schema())?;
    engine
        .register_history(AUDIENCE_TABLE.0, AUDIENCE_TABLE.1, AUDIENCE_TABLE.1)
        .await?;
    let campaigns = campaign_results(engine, spec, as_of).await?;
    let mut outputs: Vec<(&ExportSpec, ExportOutput)> = Vec::new();
    for export in exports {
        let dir = format!("exports/{}/as_of={as_of}", export.name);
        let previous = if export.mode() == "full" {
            None
        } else {
            previous_rows(engine, &export.name, as_of).await?
        };
        let ctx = ExportContext {
            engine,
            warehouse,
            as_of,
            staged_dir: layout::staged(run_id, &dir),
            published_dir: dir,
            locale: Locale {
                country: export.country.clone().unwrap_or_else(|| "GB".into()),
                calling_code: spec.identity.default_country_code.clone(),
            },
            suppression: &suppression,
            has_closed_accounts,
            previous,
        };
        outputs.push((export, export_segment(export, &ctx).await?));
    }
    // Every file is written: deliver the copies.
    for (export, out) in &mut outputs {
        let Some(location) = &export.location else {
            continue;
        };
        let target = Warehouse::open(location, &spec.base_dir)
            .map_err(|e| format!("export '{}': location {location}: {e}", export.name))?;
        for (file, data) in &out.files {
            let name = file.path.rsplit('/').next().unwrap_or(&file.path);
            let rel = format!("{}/as_of={as_of}/{name}", export.name);
            target.put(&rel, data.clone()).await.map_err(|e| {
                format!(
                    "export '{}': delivering {name} to {location}: {e}",
                    export.name
                )
            })?;
        }
        out.report.delivered_to = Some(target.url_of(&export.name, true));
        tracing::info!(export = %export.name, location = %target.display(), "export delivered");
    }
    let mut reports = Vec::new();
    let mut files = Vec::new();
    let mut audiences = Vec::new();
    for (_, out) in outputs {
        files.extend(out.files.into_iter().map(|(f, _)| f));
        audiences.push(out.audience);
        reports.push(out.report);
    }
    let audience = arrow::compute::concat_batches(&audience_schema(), &audiences)?;
    Ok(ExportsDone {
        reports,
        files,
        audience,
        suppression: suppression_batch(&suppression)?,
        campaigns,
    })
}

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
        f("window_days", DataType::UInt32),
        f("window_closed", DataType::Boolean),
        f("treated", DataType::UInt64),
        f("control", DataType::UInt64),
        f("treated_responders", DataType::UInt64),
        f("control_responders", DataType::UInt64),
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
pub(crate) async fn campaign_results(
    engine: &Engine,
    spec: &JobSpec,
    as_of: NaiveDate,
) -> Result<Vec<CampaignResult>, BoxError> {
    let windows: BTreeMap<&str, u32> = spec
        .exports
        .iter()
        .map(|e| (e.name.as_str(), e.response_window_days.unwrap_or(30)))
        .collect();
    // The window per export, as SQL (exports no longer declared keep the default).
    let mut window_sql = String::from("case a.export");
    for (name, w) in &windows {
        window_sql.push_str(&format!(" when '{}' then {w}", name.replace('\'', "''")));
    }
    window_sql.push_str(" else 30 end");
    let sql = format!(
        "with audience as (
             select cast(as_of as date) as sent_date, export, segment, campaign_id, customer_id, \"group\"
             from history.export_audience
             where as_of < cast('{as_of}' as date)
               and campaign_id in (select campaign_id from history.export_audience
                                   where \"group\" = 'control' and as_of < cast('{as_of}' as date))
         ),
         outcome as (
             select a.campaign_id, a.export, a.segment, a.sent_date, a.customer_id, a.\"group\",
                    {window_sql} as window_days,
                    count(o.order_id) as orders,
                    coalesce(sum(cast(o.order_amount as double)), 0) as revenue
             from audience a
             left join fct_orders o
               on o.customer_id = a.customer_id
              and o.order_date > a.sent_date
              and cast(o.order_date - a.sent_date as bigint) <= {window_sql}
              and o.order_date <= cast('{as_of}' as date)
             group by a.campaign_id, a.export, a.segment, a.sent_date, a.customer_id, a.\"group\"
         )
         select campaign_id, export, segment, cast(sent_date as varchar) as sent_date,
                max(window_days) as window_days, \"group\",
                count(*) as customers,
                sum(case when orders > 0 then 1 else 0 end) as responders,
                sum(revenue) as revenue,
                sum(revenue * revenue) as revenue_sq
         from outcome
         group by campaign_id, export, segment, sent_date, \"group\"
         order by campaign_id, \"group\""
    );
    let batches = engine
        .collect("measuring the campaigns against their control groups", &sql)
        .await?;
    let mut by_campaign: BTreeMap<(String, String, String, String, u32), [GroupOutcome; 2]> =
        BTreeMap::new();
    for b in &batches {
        let text = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
                .map_err(|e| -> BoxError { e.to_string().into() })
        };
        let num = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Float64)
                .map_err(|e| -> BoxError { e.to_string().into() })
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
pub(crate) fn campaign_results_batch(results: &[CampaignResult]) -> Result<RecordBatch, BoxError> {
    use arrow::array::{
        ArrayRef, BooleanArray, Float64Array, StringArray, UInt32Array, UInt64Array,
    };
    use std::sync::Arc;
    let s = |f: &dyn Fn(&CampaignResult) -> &str| -> ArrayRef {
        Arc::new(StringArray::from(results.iter().map(f).collect::<Vec<_>>()))
    };
    let u = |f: &dyn Fn(&CampaignResult) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from(results.iter().map(f).collect::<Vec<_>>()))
    };
    let fl = |f: &dyn Fn(&CampaignResult) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from(
            results
                .iter()
                .map(|r| Some(f(r)).filter(|v| v.is_finite()))
                .collect::<Vec<_>>(),
        ))
    };
    Ok(RecordBatch::try_new(
        campaign_results_schema(),
        vec![
            s(&|r| &r.campaign_id),
            s(&|r| &r.export),
            s(&|r| &r.segment),
            s(&|r| &r.sent_date),
            Arc::new(UInt32Array::from(
                results.iter().map(|r| r.window_days).collect::<Vec<_>>(),
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
    )?)
}
