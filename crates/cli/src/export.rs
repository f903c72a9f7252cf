//! `clientele segments` and `clientele export`: marketing's view of the latest published run,
//! without running the job.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clientele_jobs::{PULL_TABLES, Published, customer_view_columns, thousands};
use clientele_segments::formats::Locale;
use clientele_segments::{
    ExportContext, ExportSpec, export_segment, listed_customers, opted_out_contacts,
};
use clientele_store::Warehouse;

use crate::args::ExportArgs;
use crate::commands::UsageError;

/// `clientele segments`.
pub(crate) async fn segments(warehouse: &str) -> Result<ExitCode> {
    let published = Published::open(warehouse, Path::new("."))
        .with_context(|| format!("opening the warehouse {warehouse}"))?;
    let Some(changes) = published.segment_changes().await? else {
        return Err(UsageError(format!(
            "the warehouse {warehouse} has no published run with segments; run a job first"
        ))
        .into());
    };
    outln!(
        "segments of run {} as of {} ({})",
        changes.run_id,
        changes.as_of,
        if changes.before.is_empty() {
            "no earlier run to compare with"
        } else {
            "change since the run before"
        }
    );
    for s in &changes.segments {
        let alarm = if changes.has_alarm(&s.segment) {
            "  ALARM"
        } else {
            ""
        };
        outln!(
            "  {:<30} {:>9}  {:<14} {}{alarm}",
            s.segment,
            thousands(s.customers),
            changes.change(s),
            s.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `clientele export`.
pub(crate) async fn export(pull: &ExportArgs) -> Result<ExitCode> {
    let as_of = pull.as_of;
    let published = Published::open(&pull.warehouse, Path::new("."))
        .with_context(|| format!("opening the warehouse {}", pull.warehouse))?;
    let (layer, table) = PULL_TABLES[0];
    let dates = published.dates(layer, table).await?;
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
        mode: Some(pull.mode.as_str().to_string()),
        location: None,
        campaign: None,
        holdout_share: None,
        country: Some(pull.country.clone()),
        response_window_days: None,
        one_per_household: false,
        channel: pull.channel.clone(),
        allow_unknown_consent: pull.allow_unknown_consent,
    };
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(UsageError(problems.join("; ")).into());
    }
    let locale = Locale {
        country: pull.country.clone(),
        calling_code: pull.calling_code.clone(),
    };
    let (engine, suppression) = published.pull_engine(as_of).await?;
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
    if suppression.is_none() {
        if !pull.without_suppression_list {
            return Err(UsageError(format!(
                "the run as of {as_of} published no suppression list (its job has no export step), so the people on it cannot be left out; pass --without-suppression-list to pull with opt-outs and contact-level suppression only"
            ))
            .into());
        }
        eprintln!(
            "note: the run as of {as_of} published no suppression list; --without-suppression-list: opt-outs and contact-level suppression still apply"
        );
    }
    // For adds and diff: the same pull from the run before, as the previous rows.
    let previous = if pull.mode == crate::args::ExportMode::Full {
        None
    } else {
        published.previous_pull(&spec, &locale, as_of).await?
    };
    let target = Warehouse::open(&pull.out, Path::new("."))
        .with_context(|| format!("opening {}", pull.out))?;
    let dir = format!("{name}_{as_of}");
    let view = customer_view_columns(&engine).await?;
    if !view.opted_out_contact {
        eprintln!(
            "note: the run as of {as_of} predates contact-level suppression (its customer view has no has_opted_out_contact): only opt-outs on the customer's own linked records apply"
        );
    }
    let suppression = suppression.unwrap_or_default();
    let listed = listed_customers(&engine, &suppression).await?;
    let opted_out = opted_out_contacts(&engine).await?;
    let ctx = ExportContext {
        engine: &engine,
        warehouse: &target,
        as_of,
        staged_dir: dir.clone(),
        published_dir: dir.clone(),
        locale,
        suppression: &suppression,
        listed_customers: &listed,
        opted_out_contacts: &opted_out,
        view,
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
    for f in &out.files {
        outln!("{}", target.url_of(&f.path, false));
    }
    Ok(ExitCode::SUCCESS)
}
