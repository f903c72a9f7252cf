//! `clientele segments` and `clientele export`: marketing's view of the latest published run,
//! without running the job.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clientele_jobs::{list_runs, thousands};
use clientele_segments::formats::Locale;
use clientele_segments::{
    ExportContext, ExportSpec, PreviousRows, SuppressionList, export_segment,
};
use clientele_sql::{Engine, EngineOptions};
use clientele_store::{Warehouse, layout};

use crate::args::ExportArgs;
use crate::commands::UsageError;

/// `clientele segments`.
pub(crate) async fn segments(warehouse: &str) -> Result<ExitCode> {
    let wh = Warehouse::open(warehouse, Path::new("."))
        .with_context(|| format!("opening the warehouse {warehouse}"))?;
    let runs = list_runs(&wh).await?;
    let mut published = runs
        .iter()
        .rev()
        .filter(|r| r.published && !r.segments.is_empty());
    let Some(latest) = published.next() else {
        return Err(UsageError(format!(
            "the warehouse {warehouse} has no published run with segments; run a job first"
        ))
        .into());
    };
    let before: BTreeMap<&str, u64> = published
        .next()
        .map(|r| {
            r.segments
                .iter()
                .map(|s| (s.segment.as_str(), s.customers))
                .collect()
        })
        .unwrap_or_default();
    outln!(
        "segments of run {} as of {} ({})",
        latest.run_id,
        latest.as_of,
        if before.is_empty() {
            "no earlier run to compare with".to_string()
        } else {
            "change since the run before".to_string()
        }
    );
    for s in &latest.segments {
        let change = match before.get(s.segment.as_str()) {
            Some(&old) => {
                let diff = s.customers as i64 - old as i64;
                format!(
                    "{diff:+} ({:+.0}%)",
                    100.0 * diff as f64 / (old.max(1) as f64)
                )
            }
            None => "new".to_string(),
        };
        let alarm = if latest
            .alarms
            .iter()
            .any(|a| a.starts_with(&format!("segment {} ", s.segment)))
        {
            "  ALARM"
        } else {
            ""
        };
        outln!(
            "  {:<30} {:>9}  {:<14} {}{alarm}",
            s.segment,
            thousands(s.customers),
            change,
            s.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The as-of dates with a published `layer/table` partition, ascending.
pub(crate) async fn published_dates(
    wh: &Warehouse,
    layer: &str,
    table: &str,
) -> Result<Vec<NaiveDate>> {
    let mut dates: Vec<NaiveDate> = wh
        .list(&format!("{layer}/{table}/"))
        .await?
        .into_iter()
        .filter_map(|(p, _)| {
            p.split('/')
                .find_map(|s| s.strip_prefix("as_of="))
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        })
        .collect();
    dates.sort();
    dates.dedup();
    Ok(dates)
}

/// An engine over the warehouse's tables of one as-of date, with the suppression list as that
/// run applied it.
async fn engine_for(wh: &Warehouse, as_of: NaiveDate) -> Result<(Engine, SuppressionList, bool)> {
    let engine = Engine::new(wh, as_of, &EngineOptions::default())?;
    for (layer, table) in [
        ("segments", "segment_membership"),
        ("marts", "customer_view"),
    ] {
        let rel = layout::partition_file(layer, table, as_of);
        if !wh.exists(&rel).await? {
            return Err(UsageError(format!(
                "the warehouse has no {table} published as of {as_of}"
            ))
            .into());
        }
        engine.register_file(table, &rel).await?;
    }
    let rel = layout::partition_file("segments", "suppression_list", as_of);
    let (list, found) = if wh.exists(&rel).await? {
        engine.register_file("suppression_list", &rel).await?;
        let batches = engine
            .collect(
                "reading the suppression list",
                "select kind, value from suppression_list",
            )
            .await?;
        (
            clientele_jobs::exporting::suppression_from_batches(&batches)
                .map_err(|e| anyhow::anyhow!(e))?,
            true,
        )
    } else {
        (SuppressionList::default(), false)
    };
    Ok((engine, list, found))
}

async fn has_closed_accounts(engine: &Engine) -> Result<bool> {
    Ok(engine
        .plan_schema("select * from customer_view")
        .await?
        .field_with_name("is_account_closed")
        .is_ok())
}

/// `clientele export`.
pub(crate) async fn export(pull: &ExportArgs) -> Result<ExitCode> {
    let as_of = pull
        .as_of
        .as_deref()
        .map(|d| crate::commands::parse_date(d, "--as-of"))
        .transpose()?;
    let wh = Warehouse::open(&pull.warehouse, Path::new("."))
        .with_context(|| format!("opening the warehouse {}", pull.warehouse))?;
    let dates = published_dates(&wh, "segments", "segment_membership").await?;
    let as_of = match as_of {
        Some(d) if dates.contains(&d) => d,
        Some(d) => {
            return Err(UsageError(format!(
                "no run published segments as of {d} (published: {})",
                dates
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
        None => *dates.last().ok_or_else(|| {
            UsageError(format!(
                "the warehouse {} has no published segments; run a job first",
                pull.warehouse
            ))
        })?,
    };
    let name = format!("{}_{}", pull.segment, pull.format).replace(['-', '.'], "_");
    let spec = ExportSpec {
        name: name.clone(),
        segment: pull.segment.clone(),
        format: pull.format.clone(),
        columns: pull.columns.clone(),
        mapping: BTreeMap::new(),
        mode: Some(pull.mode.clone()),
        location: None,
        campaign: None,
        holdout_share: None,
        country: Some(pull.country.clone()),
        response_window_days: None,
    };
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(UsageError(problems.join("; ")).into());
    }
    let locale = Locale {
        country: pull.country.clone(),
        calling_code: pull.calling_code.clone(),
    };
    let (engine, suppression, found) = engine_for(&wh, as_of).await?;
    let known = engine
        .collect(
            "listing the segments",
            "select distinct segment from segment_membership order by segment",
        )
        .await?;
    let segments: Vec<String> = known
        .iter()
        .flat_map(|b| {
            use arrow::array::AsArray;
            b.column(0)
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    if !segments.contains(&pull.segment) {
        return Err(UsageError(format!(
            "the run as of {as_of} has no segment '{}' (it has: {})",
            pull.segment,
            segments.join(", ")
        ))
        .into());
    }
    if !found {
        eprintln!(
            "note: the run as of {as_of} published no suppression list (its job has no export step); opt-outs and contact keys still apply"
        );
    }
    // For adds and diff: the same pull from the run before, as the previous rows.
    let previous = if pull.mode == "full" {
        None
    } else if let Some(before) = dates.iter().rev().find(|d| **d < as_of).copied() {
        let (old_engine, old_list, _) = engine_for(&wh, before).await?;
        let scratch = Warehouse::open("memory://previous-pull", Path::new("/"))?;
        let mut full = spec.clone();
        full.mode = Some("full".into());
        let ctx = ExportContext {
            engine: &old_engine,
            warehouse: &scratch,
            as_of: before,
            staged_dir: "previous".into(),
            published_dir: "previous".into(),
            locale: locale.clone(),
            suppression: &old_list,
            has_closed_accounts: has_closed_accounts(&old_engine).await?,
            previous: None,
        };
        let out = export_segment(&full, &ctx).await?;
        let mut rows = PreviousRows::new();
        let b = &out.audience;
        use arrow::array::AsArray;
        let (ids, fps, cells) = (
            b.column(4).as_string::<i32>(),
            b.column(6).as_string::<i32>(),
            b.column(7).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            rows.insert(
                ids.value(i).to_string(),
                (fps.value(i).to_string(), cells.value(i).to_string()),
            );
        }
        Some((before, rows))
    } else {
        None
    };
    let target = Warehouse::open(&pull.out, Path::new("."))
        .with_context(|| format!("opening {}", pull.out))?;
    let dir = format!("{name}_{as_of}");
    let ctx = ExportContext {
        engine: &engine,
        warehouse: &target,
        as_of,
        staged_dir: dir.clone(),
        published_dir: dir.clone(),
        locale,
        suppression: &suppression,
        has_closed_accounts: has_closed_accounts(&engine).await?,
        previous,
    };
    let out = export_segment(&spec, &ctx).await?;
    let r = &out.report;
    let suppressed: Vec<String> = r
        .suppressed
        .iter()
        .map(|(k, v)| format!("{k} {}", thousands(*v)))
        .collect();
    eprintln!(
        "{} as of {as_of}: {} eligible, suppressed: {}, {} exported",
        pull.segment,
        thousands(r.eligible),
        if suppressed.is_empty() {
            "none".to_string()
        } else {
            suppressed.join(", ")
        },
        thousands(r.exported)
    );
    for (f, _) in &out.files {
        outln!("{}", target.url_of(&f.path, false));
    }
    Ok(ExitCode::SUCCESS)
}
