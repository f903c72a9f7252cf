//! The commands: each turns validated arguments into calls of the library crates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clientele_jobs::{
    JobSpec, PlannedStep, Published, RunManifest, RunOptions, RunStatus, Runner, render_report,
    thousands,
};
use clientele_sql::Engine;

use crate::args::{Cli, Command, OutputFormat};
use crate::embedded::{DEMO_JOB, SQL_FILES};
use crate::progress::Progress;

/// An argument the user got wrong (exit 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The error and its causes on one line, leaving out causes the message already quotes.
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let c = cause.to_string();
        if text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text
}

pub async fn dispatch(cli: Cli, interactive: bool) -> Result<ExitCode> {
    match cli.command {
        Command::Demo {
            dir,
            seed,
            respond: true,
            response_days,
            ..
        } => demo_responses(&dir, seed, response_days, interactive).await,
        Command::Demo {
            dir,
            persons,
            seed,
            as_of,
            country,
            simple,
            no_run,
            ..
        } => {
            let mut opts = clientele_demo::DemoOptions::new(persons, seed, as_of);
            opts.country = country.into();
            opts.realistic = !simple;
            demo(&dir, &opts, !no_run, interactive).await
        }
        Command::Run {
            job,
            as_of,
            only,
            dry_run,
            full_refresh,
        } => {
            // The clock is read here, once, and passed in.
            let as_of = as_of.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let spec = JobSpec::load(&job)?;
            let mut opts = RunOptions::new(as_of);
            opts.only = only;
            opts.full_refresh = full_refresh;
            if dry_run {
                dry_run_job(spec, opts).await
            } else {
                run_job(spec, opts, interactive).await
            }
        }
        Command::Validate { job } => validate(&job).await,
        Command::Sources {
            command: crate::args::SourcesCommand::Infer { file, location },
        } => {
            let location = location.unwrap_or_else(|| file.to_string_lossy().into_owned());
            let block =
                clientele_ingest::infer_source(&file, &location).map_err(anyhow::Error::msg)?;
            print!("{block}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Query {
            sql,
            warehouse,
            format,
        } => query(&sql, &warehouse, format).await,
        Command::Runs { warehouse, json } => runs(&warehouse, json).await,
        Command::Fit { command } => crate::fit::run(&command),
        Command::Segments { warehouse } => crate::export::segments(&warehouse).await,
        Command::Export(pull) => crate::export::export(&pull).await,
        Command::Score {
            artifact,
            warehouse,
            as_of,
            out,
        } => crate::score::run(&artifact, &warehouse, as_of, out.as_deref()).await,
        Command::Forget {
            job,
            email,
            phone,
            customer_id,
            by,
        } => {
            use clientele_jobs::forget::{Person, forget, rows_by_layer};
            let spec = JobSpec::load(&job)?;
            let person = match (email, phone, customer_id) {
                (Some(e), _, _) => Person::Email(e),
                (_, Some(p), _) => Person::Phone(p),
                (_, _, Some(c)) => Person::CustomerId(c),
                _ => {
                    return Err(UsageError(
                        "name the person: --email, --phone or --customer-id".into(),
                    )
                    .into());
                }
            };
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into());
            let audit = match forget(&spec, &person, &by, chrono::Utc::now()).await {
                Err(clientele_jobs::Error::Input(why)) => return Err(UsageError(why).into()),
                other => other?,
            };
            outln!(
                "erasure {}: {} customer(s), {} record(s); {} row(s) removed from {} file(s)",
                audit.id,
                audit.customers,
                audit.records,
                thousands(audit.rows_removed),
                audit.files.len()
            );
            for (layer, rows) in rows_by_layer(&audit) {
                outln!("  {layer:<14} {:>9} rows", thousands(rows));
            }
            outln!(
                "tombstone: {} hashed identifier(s); later loads leave them out; audit _privacy/audit/{}.json",
                audit.identifiers,
                audit.id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ExplainMatch {
            job,
            record_a,
            record_b,
            as_of,
        } => {
            let spec = JobSpec::load(&job)?;
            let text = clientele_jobs::explain_match(&spec, &record_a, &record_b, as_of).await?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit_for(manifest: &RunManifest) -> ExitCode {
    match manifest.status {
        RunStatus::Succeeded
            if !manifest.alarms.is_empty() || manifest.deliveries.iter().any(|d| !d.delivered) =>
        {
            ExitCode::from(crate::EXIT_ALARMS)
        }
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Failed => ExitCode::from(crate::EXIT_FAILED),
    }
}

async fn run_job(spec: JobSpec, opts: RunOptions, interactive: bool) -> Result<ExitCode> {
    let mut runner = Runner::new(spec, opts);
    let progress = interactive.then(|| Arc::new(Progress::new()));
    if let Some(p) = &progress {
        runner = runner.with_observer(Arc::clone(p) as Arc<dyn clientele_jobs::RunObserver>);
    }
    let manifest = runner.run().await?;
    if let Some(p) = &progress {
        p.finish();
    }
    print!("{}", render_report(&manifest));
    Ok(exit_for(&manifest))
}

fn print_plan(spec: &JobSpec, as_of: NaiveDate, steps: &[PlannedStep]) {
    outln!(
        "job {} ({}), as-of {as_of}, warehouse {}",
        spec.name,
        spec.path.display(),
        spec.warehouse
    );
    outln!(
        "{} source(s), {} SQL model(s), {} segment(s), {} export(s); every query planned\n",
        spec.sources.len(),
        spec.models.len(),
        spec.segments.len(),
        spec.exports.len()
    );
    for (i, s) in steps.iter().enumerate() {
        let only = if s.selected {
            ""
        } else {
            "   (not selected by --only)"
        };
        outln!("{}. {} [{}]{only}", i + 1, s.name, s.kind);
        if !s.depends_on.is_empty() {
            outln!("   after:  {}", s.depends_on.join(", "));
        }
        if !s.reads.is_empty() {
            outln!("   reads:  {}", s.reads.join(", "));
        }
        if !s.writes.is_empty() {
            outln!("   writes: {}", s.writes.join(", "));
        }
        for d in &s.details {
            outln!("     - {d}");
        }
    }
}

async fn dry_run_job(spec: JobSpec, opts: RunOptions) -> Result<ExitCode> {
    let as_of = opts.as_of;
    let runner = Runner::new(spec, opts);
    let steps = runner.plan(false).await?;
    print_plan(runner.spec(), as_of, &steps);
    outln!("\ndry run: nothing was read or written");
    Ok(ExitCode::SUCCESS)
}

async fn validate(job: &Path) -> Result<ExitCode> {
    let spec = JobSpec::load(job)?;
    let runner = Runner::new(spec, RunOptions::new(chrono::Utc::now().date_naive()));
    let steps = runner.plan(true).await?;
    let spec = runner.spec();
    outln!(
        "{}: ok ({} sources, {} SQL models, {} segments, {} exports, {} steps)",
        job.display(),
        spec.sources.len(),
        spec.models.len(),
        spec.segments.len(),
        spec.exports.len(),
        steps.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the embedded demo job and SQL into `dir`, laid out like the repository.
/// The demo job for the generated data: the country's calling code for phones and currency, and the CRM declared
/// duplicate-free only in the simple demo (the realistic CRM has second accounts of one person).
fn demo_job(opts: &clientele_demo::DemoOptions) -> Result<String> {
    let mut job = DEMO_JOB.to_string();
    for (from, to) in [
        (
            "default_country_code = \"44\"",
            format!("default_country_code = \"{}\"", opts.country.calling_code()),
        ),
        (
            "reporting_currency = \"GBP\"",
            format!("reporting_currency = \"{}\"", opts.country.currency()),
        ),
        (
            "duplicate_free_sources = [\"crm\", \"vendor\"]",
            if opts.realistic {
                "duplicate_free_sources = [\"vendor\"]".to_string()
            } else {
                "duplicate_free_sources = [\"crm\", \"vendor\"]".to_string()
            },
        ),
    ] {
        anyhow::ensure!(
            job.contains(from),
            "the built-in demo job has no `{from}` line"
        );
        job = job.replacen(from, &to, 1);
    }
    Ok(job)
}

fn write_demo_project(dir: &Path, opts: &clientele_demo::DemoOptions) -> Result<PathBuf> {
    let job = dir.join("jobs/demo.toml");
    for (rel, content) in SQL_FILES {
        let path = dir.join("sql").join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::create_dir_all(dir.join("jobs"))
        .with_context(|| format!("creating {}", dir.join("jobs").display()))?;
    std::fs::write(&job, demo_job(opts)?).with_context(|| format!("writing {}", job.display()))?;
    Ok(job)
}

async fn demo(
    dir: &Path,
    opts: &clientele_demo::DemoOptions,
    run: bool,
    interactive: bool,
) -> Result<ExitCode> {
    let as_of = opts.as_of;
    if opts.persons == 0 {
        return Err(UsageError("--persons must be at least 1".into()).into());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the demo directory {}", dir.display()))?;
    let job = write_demo_project(dir, opts)?;
    let started = std::time::Instant::now();
    let summary = clientele_demo::generate(dir, opts).context("generating the demo sources")?;
    outln!(
        "demo data: {} persons -> {} CRM records, {} order-log lines, {} web customers, {} web orders, {} vendor records, {} campaign contacts, {} service tickets ({} lines malformed on purpose) in {:.1}s",
        thousands(summary.persons),
        thousands(summary.crm_records),
        thousands(summary.order_log_lines),
        thousands(summary.web_customers),
        thousands(summary.web_orders),
        thousands(summary.vendor_records),
        thousands(summary.campaign_contacts),
        thousands(summary.service_tickets),
        thousands(summary.malformed_lines),
        started.elapsed().as_secs_f64()
    );
    if opts.realistic {
        outln!(
            "real-world cases ({}): {} households, {} persons sharing theirs; {} second CRM accounts, {} second web accounts; {} placeholder values; {} corrupted lines for the validation rules",
            opts.country.iso(),
            thousands(summary.households),
            thousands(summary.persons_in_shared_households),
            thousands(summary.crm_duplicates),
            thousands(summary.web_duplicates),
            thousands(summary.placeholders),
            thousands(summary.corrupted_lines),
        );
        outln!(
            "currencies: {} web orders paid in {} (reported in {})",
            thousands(summary.foreign_currency_orders),
            opts.country.foreign_currency_codes().join(" or "),
            opts.country.currency()
        );
    } else {
        outln!("simple demo: no households, no second accounts within one system, no placeholders");
    }
    outln!("job: {}\n", job.display());
    if !run {
        outln!("next:");
        outln!("  clientele run {} --as-of {as_of}", job.display());
        return Ok(ExitCode::SUCCESS);
    }
    let spec = JobSpec::load(&job)?;
    let code = run_job(spec, RunOptions::new(as_of), interactive).await?;
    let warehouse = dir.join("warehouse");
    outln!("\nnext:");
    outln!(
        "  clientele query --warehouse {} \"select rfm_cell, count(*) as customers from customer_rfm group by rfm_cell order by customers desc limit 5\"",
        warehouse.display()
    );
    outln!("  clientele runs --warehouse {}", warehouse.display());
    outln!(
        "  clientele run {} --as-of {as_of} --dry-run",
        job.display()
    );
    Ok(code)
}

/// `clientele demo --respond`: simulate the responses to the latest run's campaigns and run the
/// job again `days` later.
async fn demo_responses(dir: &Path, seed: u64, days: u32, interactive: bool) -> Result<ExitCode> {
    let job = dir.join("jobs/demo.toml");
    if !job.is_file() {
        return Err(UsageError(format!(
            "{} has no demo job: run `clientele demo --dir {}` first",
            dir.display(),
            dir.display()
        ))
        .into());
    }
    let published = Published::open(&dir.join("warehouse").display().to_string(), Path::new("."))?;
    let dates = published.dates("segments", "export_audience").await?;
    let Some(sent) = dates.last().copied() else {
        return Err(UsageError(format!(
            "{} has no published campaigns yet: run `clientele demo --dir {}` first",
            dir.display(),
            dir.display()
        ))
        .into());
    };
    let engine = published
        .engine_at(
            sent,
            &[
                ("segments", "export_audience"),
                ("intermediate", "int_customer_identity"),
            ],
        )
        .await?;
    let batches = engine
        .collect(
            "reading the campaigns' audiences",
            "select a.campaign_id, a.customer_id, a.\"group\",
                    min(case when i.source_system = 'web' then substr(i.record_id, length(i.source_system) + 2) end) as web_customer,
                    min(case when i.source_system = 'crm' then substr(i.record_id, length(i.source_system) + 2) end) as crm_customer
             from export_audience a
             left join int_customer_identity i on i.customer_id = a.customer_id
             where a.campaign_id in (select campaign_id from export_audience where \"group\" = 'control')
             group by a.campaign_id, a.customer_id, a.\"group\"
             order by a.campaign_id, a.customer_id",
        )
        .await?;
    let mut recipients = Vec::new();
    for b in &batches {
        use arrow::array::{Array, AsArray};
        let col = |i: usize| b.column(i).as_string::<i32>();
        let opt = |i: usize, r: usize| (!col(i).is_null(r)).then(|| col(i).value(r).to_string());
        for r in 0..b.num_rows() {
            recipients.push(clientele_demo::Recipient {
                campaign_id: col(0).value(r).to_string(),
                customer_id: col(1).value(r).to_string(),
                group: col(2).value(r).to_string(),
                web_customer: opt(3, r),
                crm_customer: opt(4, r),
            });
        }
    }
    let summary = clientele_demo::simulate_responses(dir, &recipients, sent, days, seed)
        .context("writing the simulated responses")?;
    outln!(
        "responses to the campaigns sent {sent}: {} of {} treated and {} of {} held-out customers bought within {days} days ({} web orders, {} order-log lines)",
        thousands(summary.treated_buyers),
        thousands(summary.treated),
        thousands(summary.control_buyers),
        thousands(summary.control),
        thousands(summary.web_orders),
        thousands(summary.legacy_orders),
    );
    let as_of = sent + chrono::Days::new(u64::from(days));
    outln!("job: {} as of {as_of}\n", job.display());
    let spec = JobSpec::load(&job)?;
    run_job(spec, RunOptions::new(as_of), interactive).await
}

async fn open_published(warehouse: &str) -> Result<(Engine, Vec<(String, String)>)> {
    let published = Published::open(warehouse, Path::new("."))
        .with_context(|| format!("opening the warehouse {warehouse}"))?;
    // Ad-hoc queries name their dates; as_of_date() is today's.
    Ok(published
        .engine_over_all(chrono::Utc::now().date_naive())
        .await?)
}

async fn query(sql: &str, warehouse: &str, format: OutputFormat) -> Result<ExitCode> {
    let (engine, tables) = open_published(warehouse).await?;
    if tables.is_empty() {
        return Err(UsageError(format!("the warehouse {warehouse} has no published tables; run a job first (clientele demo, clientele run)")).into());
    }
    let batches = engine.collect("the query", sql).await?;
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Table => {
            let text = arrow::util::pretty::pretty_format_batches(&batches)?;
            use std::io::Write;
            writeln!(out, "{text}")?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in &batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(out);
            let refs: Vec<&arrow::array::RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
            use std::io::Write;
            writeln!(std::io::stdout())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn runs(warehouse: &str, json: bool) -> Result<ExitCode> {
    let published = Published::open(warehouse, Path::new("."))
        .with_context(|| format!("opening the warehouse {warehouse}"))?;
    let wh = published.warehouse();
    let runs = published.runs().await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        outln!("no runs recorded in {}", wh.display());
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<24} {:<10} {:<10} {:<10} {:>9} {:>12} {:>12}  job",
        "run",
        "as-of",
        "status",
        "published",
        "duration",
        "rows in",
        "rows out"
    );
    for r in &runs {
        let status = match r.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        };
        outln!(
            "{:<24} {:<10} {:<10} {:<10} {:>8.1}s {:>12} {:>12}  {}",
            r.run_id,
            r.as_of,
            status,
            if r.published { "yes" } else { "no" },
            r.duration_ms as f64 / 1000.0,
            thousands(r.rows_in()),
            thousands(r.rows_out()),
            r.job
        );
    }
    Ok(ExitCode::SUCCESS)
}
