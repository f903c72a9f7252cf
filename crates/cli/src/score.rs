//! `clientele score --artifact FILE`: score customers again with a model a run saved, on one
//! as-of date's published tables, without running the job.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clientele_jobs::Published;
use clientele_models::Artifact;

use crate::commands::UsageError;

pub(crate) async fn run(
    artifact_path: &Path,
    warehouse: &str,
    as_of: Option<NaiveDate>,
    out: Option<&Path>,
) -> Result<ExitCode> {
    let text = std::fs::read_to_string(artifact_path)
        .with_context(|| format!("reading the artifact {}", artifact_path.display()))?;
    let artifact = Artifact::from_json(&artifact_path.display().to_string(), &text)
        .map_err(|e| UsageError(e.to_string()))?;
    let as_of = match as_of {
        Some(d) => d,
        None => NaiveDate::parse_from_str(&artifact.trained_as_of, "%Y-%m-%d").map_err(|_| {
            UsageError(format!(
                "{}: trained_as_of '{}' is not a date; give --as-of",
                artifact_path.display(),
                artifact.trained_as_of
            ))
        })?,
    };
    let published = Published::open(warehouse, Path::new("."))
        .with_context(|| format!("opening the warehouse {warehouse}"))?;
    let engine = published
        .engine_at(as_of, &clientele_jobs::SCORE_INPUT_TABLES)
        .await?;
    let batch = clientele_jobs::score_with_artifact(&engine, &artifact, as_of)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("scoring with {}", artifact_path.display()))?;
    match out {
        None => {
            let mut buf = Vec::new();
            arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut buf)
                .write(&batch)?;
            // A reader that stops early (`| head`) is not an error.
            use std::io::Write;
            if let Err(e) = std::io::stdout().lock().write_all(&buf)
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                return Err(e.into());
            }
        }
        Some(path) => {
            let tmp = path.with_extension("partial");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            if path.extension().is_some_and(|e| e == "parquet") {
                let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
                w.write(&batch)?;
                w.close()?;
            } else {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(file);
                w.write(&batch)?;
            }
            std::fs::rename(&tmp, path)
                .with_context(|| format!("moving the scores into {}", path.display()))?;
            eprintln!(
                "{} customers scored by {} as of {as_of} -> {}",
                clientele_jobs::thousands(batch.num_rows() as u64),
                artifact.version,
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
