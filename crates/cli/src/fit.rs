//! `clientele fit btyd|spend`: read a transaction file, summarise the calibration period, fit the
//! models, print parameters and, given a holdout period, predicted against actual purchases.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use arrow::array::{Array, AsArray};
use chrono::NaiveDate;
use clientele_models::{
    BgNbd, CustomerSummary, GammaGamma, MbgNbd, ParetoNbd, Transaction, summarise,
};
use clientele_sql::date32;

use crate::args::{FitCommand, TransactionArgs};

pub(crate) fn run(command: &FitCommand) -> Result<ExitCode> {
    match command {
        FitCommand::Btyd { data, model } => btyd(data, model),
        FitCommand::Spend { data } => spend(data),
    }
}

/// A date in a transaction file: `YYYY-MM-DD`, `YYYYMMDD`, or a timestamp starting with a date.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let t = text.trim();
    NaiveDate::parse_from_str(t, "%Y%m%d")
        .ok()
        .filter(|_| t.len() == 8)
        .or_else(|| NaiveDate::parse_from_str(t.get(..10)?, "%Y-%m-%d").ok())
}

/// Reads (customer, date, amount) from the file through clientele's own readers (the CSV,
/// Parquet and whitespace formats of ingest), naming the file, row and column of any bad value.
fn read_transactions(args: &TransactionArgs, path: &Path) -> Result<Vec<Transaction>> {
    let shown = path.display().to_string();
    let plan = transaction_source(args, path)?;
    let read = clientele_ingest::read_local_file(&plan, path)?;
    if let Some(reason) = first_rejected(&read.quarantine) {
        bail!("{shown} {reason}");
    }
    let mut out = Vec::with_capacity(usize::try_from(read.report.rows_loaded).unwrap_or(0));
    for batch in &read.data {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| anyhow!("{shown}: the reader returned no column '{name}'"))
        };
        let (customers, dates, amounts) = (text("customer")?, text("date")?, text("amount")?);
        let lines = batch
            .column_by_name("_line")
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>())
            .ok_or_else(|| anyhow!("{shown}: the reader returned no line numbers"))?;
        for i in 0..batch.num_rows() {
            let row = lines.value(i);
            let value = |a: &'_ arrow::array::StringArray| -> String {
                if a.is_null(i) {
                    String::new()
                } else {
                    a.value(i).to_string()
                }
            };
            let (customer, date, amount) = (value(customers), value(dates), value(amounts));
            let (customer, date, amount) = (customer.as_str(), date.as_str(), amount.as_str());
            let day = parse_date(date).ok_or_else(|| {
                anyhow!("{shown} row {row}: date '{date}' is not a date (YYYY-MM-DD or YYYYMMDD)")
            })?;
            let amount: f64 = amount
                .trim()
                .parse()
                .ok()
                .filter(|a: &f64| a.is_finite())
                .ok_or_else(|| anyhow!("{shown} row {row}: amount '{amount}' is not a number"))?;
            if customer.trim().is_empty() {
                bail!("{shown} row {row}: the customer is empty");
            }
            out.push(Transaction {
                customer: customer.trim().into(),
                day: i64::from(date32(day)),
                amount,
            });
        }
    }
    if out.is_empty() {
        bail!("{shown}: no transactions");
    }
    Ok(out)
}

/// The file as a source of three text fields (customer, date, amount): CSV and Parquet by column
/// name, anything else as whitespace-aligned columns by number (the CDNOW order log).
fn transaction_source(args: &TransactionArgs, path: &Path) -> Result<clientele_ingest::SourcePlan> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    let given = [&args.customer_col, &args.date_col, &args.amount_col];
    let (format, positions) = match ext.as_str() {
        "csv" | "parquet" => {
            let defaults = ["customer_id", "date", "amount"];
            let headers = given
                .iter()
                .zip(defaults)
                .map(|(g, d)| format!("header = {}", quoted(g.as_deref().unwrap_or(d))));
            (
                if ext == "csv" { "delimited" } else { "parquet" },
                headers.collect::<Vec<_>>(),
            )
        }
        _ => {
            let mut columns = Vec::new();
            for ((g, default), what) in given
                .iter()
                .zip([1, 2, 4])
                .zip(["customer", "date", "amount"])
            {
                let n = match g {
                    None => default,
                    Some(text) => text.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        anyhow!("--{what}-col '{text}': whitespace text takes a column number from 1")
                    })?,
                };
                columns.push(format!("column = {n}"));
            }
            ("whitespace", columns)
        }
    };
    let fields: Vec<String> = ["customer", "date", "amount"]
        .iter()
        .zip(&positions)
        .map(|(name, at)| format!("{{ name = \"{name}\", type = \"string\", {at} }}"))
        .collect();
    let spec = format!(
        "name = \"transactions\"\nformat = \"{format}\"\nlocation = {}\nfields = [{}]\n",
        quoted(&path.display().to_string()),
        fields.join(", ")
    );
    let spec: clientele_ingest::SourceSpec =
        toml::from_str(&spec).map_err(|e| anyhow!("describing {}: {e}", path.display()))?;
    spec.plan(Path::new("."))
        .map_err(|problems| anyhow!("{}: {}", path.display(), problems.join("; ")))
}

/// The first rejected row of a read, as `line N: field: reason`.
fn first_rejected(quarantine: &[arrow::array::RecordBatch]) -> Option<String> {
    let batch = quarantine.iter().find(|b| b.num_rows() > 0)?;
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).ok())
    };
    let (line, field, reason) = (text("line")?, text("field"), text("reason")?);
    let value = |a: &arrow::array::ArrayRef| {
        let s = a.as_string::<i32>();
        if s.is_null(0) {
            String::new()
        } else {
            s.value(0).to_string()
        }
    };
    let field = field.as_ref().map(value).filter(|f| !f.is_empty());
    Some(match field {
        Some(f) => format!("line {}: {f}: {}", value(&line), value(&reason)),
        None => format!("line {}: {}", value(&line), value(&reason)),
    })
}

fn unit_days(args: &TransactionArgs) -> Result<f64> {
    match args.time_unit.as_str() {
        "day" | "days" => Ok(1.0),
        "week" | "weeks" => Ok(7.0),
        other => bail!("--time-unit '{other}': day or week"),
    }
}

struct Prepared {
    transactions: Vec<Transaction>,
    summary: Vec<(String, CustomerSummary)>,
    unit: f64,
}

/// Reads a `lifetimes`-style summary CSV: customer, frequency, recency, T and, when present,
/// monetary_value.
fn read_summary(path: &Path, args: &TransactionArgs) -> Result<Vec<(String, CustomerSummary)>> {
    let shown = path.display().to_string();
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("opening {shown}"))?;
    let header = reader
        .headers()
        .with_context(|| format!("{shown}: reading the header"))?
        .clone();
    let find = |name: &str| header.iter().position(|h| h.trim() == name);
    let customer = args
        .customer_col
        .clone()
        .unwrap_or_else(|| "customer_id".into());
    let need =
        |name: &str| find(name).ok_or_else(|| anyhow!("{shown}: no column '{name}' in the header"));
    let idx = [
        need(&customer)?,
        need("frequency")?,
        need("recency")?,
        need("T")?,
    ];
    let monetary = find("monetary_value");
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{shown} line {line}"))?;
        let number = |k: usize, name: &str| -> Result<f64> {
            let text = record.get(k).unwrap_or("").trim();
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| anyhow!("{shown} line {line}: {name} '{text}' is not a number"))
        };
        out.push((
            record.get(idx[0]).unwrap_or("").trim().to_string(),
            CustomerSummary {
                x: number(idx[1], "frequency")?,
                t_x: number(idx[2], "recency")?,
                t: number(idx[3], "T")?,
                monetary_value: match monetary {
                    Some(k) => number(k, "monetary_value")?,
                    None => 0.0,
                },
            },
        ));
    }
    if out.is_empty() {
        bail!("{shown}: no customers");
    }
    Ok(out)
}

fn prepare(args: &TransactionArgs) -> Result<Prepared> {
    let unit = unit_days(args)?;
    if let Some(path) = &args.summary {
        return Ok(Prepared {
            transactions: Vec::new(),
            summary: read_summary(path, args)?,
            unit,
        });
    }
    let (Some(path), Some(end)) = (&args.transactions, args.calibration_end) else {
        bail!("give --transactions and --calibration-end, or --summary");
    };
    if let Some(h) = args.holdout_end
        && h <= end
    {
        bail!("--holdout-end {h} must be after --calibration-end {end}");
    }
    let transactions = read_transactions(args, path)?;
    let summary = summarise(&transactions, i64::from(date32(end)), unit);
    if summary.is_empty() {
        bail!("no customer bought on or before the calibration end {end}");
    }
    Ok(Prepared {
        transactions,
        summary,
        unit,
    })
}

/// Repeat purchase days of each customer in the holdout period (after the calibration end, up to
/// and including the holdout end).
fn holdout_actuals(p: &Prepared, args: &TransactionArgs) -> Option<BTreeMap<String, f64>> {
    let end = i64::from(date32(args.holdout_end?));
    let start = i64::from(date32(args.calibration_end?));
    let mut days: BTreeMap<&str, std::collections::BTreeSet<i64>> = BTreeMap::new();
    for t in p
        .transactions
        .iter()
        .filter(|t| t.day > start && t.day <= end)
    {
        days.entry(&*t.customer).or_default().insert(t.day);
    }
    Some(
        p.summary
            .iter()
            .map(|(c, _)| {
                (
                    c.clone(),
                    days.get(c.as_str()).map_or(0.0, |d| d.len() as f64),
                )
            })
            .collect(),
    )
}

/// A fitted purchase-count model: parameter names and values, standard errors, log-likelihood,
/// iterations, and its conditional expectation (summary, horizon).
type FittedCounts = (
    [&'static str; 4],
    [f64; 4],
    Vec<f64>,
    f64,
    usize,
    Box<dyn Fn(&CustomerSummary, f64) -> Result<f64>>,
);

fn btyd(args: &TransactionArgs, model: &str) -> Result<ExitCode> {
    let models: Vec<&str> = match model {
        "all" => vec!["bgnbd", "mbgnbd", "paretonbd"],
        "bgnbd" | "mbgnbd" | "paretonbd" => vec![model],
        other => bail!("--model '{other}': bgnbd, mbgnbd, paretonbd or all"),
    };
    let p = prepare(args)?;
    let data: Vec<CustomerSummary> = p.summary.iter().map(|(_, c)| *c).collect();
    let actual = holdout_actuals(&p, args);
    let horizon = args
        .holdout_end
        .zip(args.calibration_end)
        .map(|(h, c)| (i64::from(date32(h)) - i64::from(date32(c))) as f64 / p.unit);
    let mut reports = Vec::new();
    for m in models {
        let started = std::time::Instant::now();
        let (names, params, se, ll, iterations, predict): FittedCounts = if m == "bgnbd" {
            let fit = BgNbd::fit(&data)?;
            let q = fit.params;
            (
                ["r", "alpha", "a", "b"],
                [q.r, q.alpha, q.a, q.b],
                fit.std_errors,
                fit.log_likelihood,
                fit.iterations,
                Box::new(move |c, t| Ok(q.conditional_expected_purchases(c, t)?)),
            )
        } else if m == "mbgnbd" {
            let fit = MbgNbd::fit(&data)?;
            let q = fit.params;
            (
                ["r", "alpha", "a", "b"],
                [q.r, q.alpha, q.a, q.b],
                fit.std_errors,
                fit.log_likelihood,
                fit.iterations,
                Box::new(move |c, t| Ok(q.conditional_expected_purchases(c, t)?)),
            )
        } else {
            let fit = ParetoNbd::fit(&data)?;
            let q = fit.params;
            (
                ["r", "alpha", "s", "beta"],
                [q.r, q.alpha, q.s, q.beta],
                fit.std_errors,
                fit.log_likelihood,
                fit.iterations,
                Box::new(move |c, t| Ok(q.conditional_expected_purchases(c, t)?)),
            )
        };
        let fit_seconds = started.elapsed().as_secs_f64();
        // Predicted against actual holdout purchases, by calibration frequency (0..6, 7+).
        let mut groups: BTreeMap<u32, (u64, f64, f64)> = BTreeMap::new();
        if let (Some(actual), Some(t)) = (&actual, horizon) {
            for (customer, c) in &p.summary {
                let predicted = predict(c, t)?;
                let g = groups.entry((c.x as u32).min(7)).or_default();
                g.0 += 1;
                g.1 += actual.get(customer).copied().unwrap_or(0.0);
                g.2 += predicted;
            }
        }
        reports.push(serde_json::json!({
            "model": m,
            "fit_seconds": fit_seconds,
            "parameters": names.iter().zip(params).map(|(n, v)| (n.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "standard_errors": names.iter().zip(&se).map(|(n, v)| (n.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "log_likelihood": ll,
            "iterations": iterations,
            "holdout": groups.iter().map(|(x, (n, a, pr))| serde_json::json!({
                "frequency": if *x == 7 { "7+".to_string() } else { x.to_string() },
                "customers": n,
                "actual_mean": a / *n as f64,
                "predicted_mean": pr / *n as f64,
            })).collect::<Vec<_>>(),
        }));
    }
    print_report(args, &p, &reports, horizon);
    Ok(ExitCode::SUCCESS)
}

fn print_report(
    args: &TransactionArgs,
    p: &Prepared,
    reports: &[serde_json::Value],
    horizon: Option<f64>,
) {
    let customers = p.summary.len();
    let repeat = p.summary.iter().filter(|(_, c)| c.x > 0.0).count();
    let sum_x: f64 = p.summary.iter().map(|(_, c)| c.x).sum();
    if args.json {
        let out = serde_json::json!({
            "transactions": args.transactions.as_ref().map(|p| p.display().to_string()),
            "summary": args.summary.as_ref().map(|p| p.display().to_string()),
            "calibration_end": args.calibration_end.map(|d| d.to_string()),
            "holdout_end": args.holdout_end.map(|d| d.to_string()),
            "time_unit": args.time_unit,
            "customers": customers,
            "repeat_buyers": repeat,
            "repeat_purchases": sum_x,
            "models": reports,
        });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    let unit = args.time_unit.trim_end_matches('s');
    match (&args.transactions, args.calibration_end) {
        (Some(path), Some(end)) => outln!(
            "{}: {} transactions, {customers} customers ({repeat} repeat buyers, {sum_x} repeat purchases) to {end}, in {unit}s",
            path.display(),
            p.transactions.len(),
        ),
        _ => outln!(
            "{}: {customers} customers ({repeat} repeat buyers, {sum_x} repeat purchases), in {unit}s",
            args.summary
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string()),
        ),
    }
    for r in reports {
        outln!(
            "\n{}  log-likelihood {:.4}  ({} iterations)",
            r["model"].as_str().unwrap_or(""),
            r["log_likelihood"].as_f64().unwrap_or(f64::NAN),
            r["iterations"]
        );
        if let (Some(ps), Some(se)) = (
            r["parameters"].as_object(),
            r["standard_errors"].as_object(),
        ) {
            for name in ["r", "alpha", "a", "b", "s", "beta"] {
                let Some(v) = ps.get(name) else { continue };
                outln!(
                    "  {name:<6} {:>10.4}  (s.e. {:.4})",
                    v.as_f64().unwrap_or(f64::NAN),
                    se.get(name).and_then(|s| s.as_f64()).unwrap_or(f64::NAN)
                );
            }
        }
        if let (Some(groups), Some(t)) = (r["holdout"].as_array(), horizon)
            && !groups.is_empty()
        {
            outln!(
                "  holdout ({t:.2} {}s): mean purchases per customer by calibration frequency",
                args.time_unit.trim_end_matches('s')
            );
            outln!(
                "    {:>4} {:>9} {:>9} {:>9}",
                "x",
                "customers",
                "actual",
                "predicted"
            );
            for g in groups {
                outln!(
                    "    {:>4} {:>9} {:>9.3} {:>9.3}",
                    g["frequency"].as_str().unwrap_or(""),
                    g["customers"].as_u64().unwrap_or(0),
                    g["actual_mean"].as_f64().unwrap_or(f64::NAN),
                    g["predicted_mean"].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
    }
}

fn spend(args: &TransactionArgs) -> Result<ExitCode> {
    let p = prepare(args)?;
    let data: Vec<CustomerSummary> = p.summary.iter().map(|(_, c)| *c).collect();
    let started = std::time::Instant::now();
    let fit = GammaGamma::fit(&data)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let q = fit.params;
    let buyers = data
        .iter()
        .filter(|c| c.x > 0.0 && c.monetary_value > 0.0)
        .count();
    if args.json {
        let out = serde_json::json!({
            "model": "gamma_gamma",
            "fit_seconds": fit_seconds,
            "repeat_buyers": buyers,
            "parameters": { "p": q.p, "q": q.q, "gamma": q.gamma },
            "standard_errors": { "p": fit.std_errors.first(), "q": fit.std_errors.get(1), "gamma": fit.std_errors.get(2) },
            "log_likelihood": fit.log_likelihood,
            "iterations": fit.iterations,
            "population_mean_spend": q.p * q.gamma / (q.q - 1.0),
        });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        outln!(
            "gamma-gamma on {buyers} repeat buyers: log-likelihood {:.4} ({} iterations)",
            fit.log_likelihood,
            fit.iterations
        );
        for (name, v, se) in [
            ("p", q.p, fit.std_errors.first()),
            ("q", q.q, fit.std_errors.get(1)),
            ("gamma", q.gamma, fit.std_errors.get(2)),
        ] {
            outln!(
                "  {name:<6} {v:>10.4}  (s.e. {:.4})",
                se.copied().unwrap_or(f64::NAN)
            );
        }
        outln!(
            "  mean spend per purchase in the population: {:.2}",
            q.p * q.gamma / (q.q - 1.0)
        );
    }
    Ok(ExitCode::SUCCESS)
}
