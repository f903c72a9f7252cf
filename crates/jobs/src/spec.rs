use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use clientele_identity::{IdentitySpec, Settings as IdentitySettings};
use clientele_ingest::{SourcePlan, SourceSpec};
use clientele_segments::{ExportSpec, Segment, load_segments};
use clientele_sql::{EngineOptions, ModelSet};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use toml::Spanned;

use crate::error::{Error, Result};
use crate::steps::{CheckProblem, Operation, SpecContext, StepHeader, StepSpec};

/// One problem in a spec or a file it names, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    job: Spanned<RawHeader>,
    #[serde(default)]
    sources: Vec<Spanned<SourceSpec>>,
    /// Read as tables first, then each as its kind, so a problem is reported at its own step.
    #[serde(default)]
    steps: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    exports: Vec<Spanned<ExportSpec>>,
    #[serde(default)]
    identity: Option<Spanned<IdentitySpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    #[serde(default)]
    description: String,
    warehouse: String,
    #[serde(default)]
    sql_dir: Option<String>,
    #[serde(default)]
    base_sql_dir: Option<String>,
    #[serde(default)]
    segments_dir: Option<String>,
    #[serde(default)]
    stale_lock_hours: Option<i64>,
    #[serde(default)]
    memory_limit_mb: Option<u64>,
    #[serde(default)]
    model_part_rows: Option<u64>,
    #[serde(default)]
    suppression_lists: Vec<String>,
    #[serde(default)]
    segment_alarm_share: Option<f64>,
    #[serde(default)]
    segment_alarm_min_customers: Option<u64>,
    #[serde(default)]
    target_partitions: Option<usize>,
    #[serde(default)]
    raw_retention_days: Option<u32>,
    #[serde(default)]
    reporting_currency: Option<String>,
}

/// A table as the warehouse lays it out: `layer/table`, queried as `name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    /// Name in SQL: `raw.<source>`, `quarantine.<source>`, or the table name.
    pub name: String,
    pub layer: String,
    pub table: String,
}

impl TableId {
    pub(crate) fn new(layer: &str, table: &str) -> Self {
        let name = if matches!(layer, "raw" | "quarantine" | "history") {
            format!("{layer}.{table}")
        } else {
            table.to_string()
        };
        Self {
            name,
            layer: layer.to_string(),
            table: table.to_string(),
        }
    }
}

/// A validated step with the tables it reads and writes.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub depends_on: Vec<String>,
    pub line: usize,
    pub reads: Vec<TableId>,
    pub writes: Vec<TableId>,
    /// What the step does.
    pub operation: Arc<dyn Operation>,
}

impl Step {
    /// The kind's name as written in specs.
    pub fn kind(&self) -> &'static str {
        self.operation.kind()
    }
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub path: PathBuf,
    /// Directory that relative paths in the spec are resolved against.
    pub base_dir: PathBuf,
    /// SHA-256 of the spec file as written.
    pub sha256: String,
    pub name: String,
    pub description: String,
    pub warehouse: String,
    pub sql_dir: PathBuf,
    pub segments_dir: PathBuf,
    pub stale_lock_hours: i64,
    pub engine: EngineOptions,
    pub sources: Vec<SourcePlan>,
    /// The line where each source is declared.
    pub source_lines: BTreeMap<String, usize>,
    pub steps: Vec<Step>,
    pub exports: Vec<ExportSpec>,
    pub models: ModelSet,
    pub segments: Vec<Segment>,
    /// The `[identity]` settings (defaults when the table is absent).
    pub identity: IdentitySettings,
    /// Global suppression list files (globs, resolved against `base_dir`): CSV with an `email`
    /// and/or `phone` column; nobody on them is exported.
    pub suppression_lists: Vec<String>,
    /// A segment whose size changes by more than this share since the last run raises an alarm
    /// (default 0.5).
    pub segment_alarm_share: f64,
    /// Segments smaller than this (now and before) raise no alarm (default 20).
    pub segment_alarm_min_customers: u64,
    /// Raw and quarantined partitions older than this many days before the as-of date are dropped
    /// by each successful run (the newest of each table stays); `None` keeps them all.
    pub raw_retention_days: Option<u32>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line of the key a serde message names (`unknown field `x``, `unknown variant `y``), looked
/// for in the table that starts at `start` of `text` (up to the next table header).
fn key_line(text: &str, start: usize, message: &str) -> Option<usize> {
    let quoted = message.split('`').nth(1)?;
    let region = text.get(start..)?;
    let mut offset = start;
    for (i, l) in region.split_inclusive('\n').enumerate() {
        let t = l.trim_start();
        if i > 0 && t.starts_with('[') && !t.starts_with("[\"") {
            break;
        }
        let key_matches = t
            .strip_prefix(quoted)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        let value_matches = t.starts_with("kind") && t.contains(&format!("\"{quoted}\""));
        if key_matches || value_matches {
            return Some(line_of(text, offset));
        }
        offset += l.len();
    }
    None
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Replaces `${VAR}` and `${VAR:-default}` from `lookup`; an unset variable without a default is a problem.
fn interpolate(
    text: &str,
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let expr = &rest[start + 2..start + end];
            let (var, default) = match expr.split_once(":-") {
                Some((v, d)) => (v, Some(d)),
                None => (expr, None),
            };
            match (lookup(var).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    problems.push(Problem {
                        file: file.to_path_buf(),
                        line: Some(i + 1),
                        message: format!("environment variable '{var}' is not set (write ${{{var}:-default}} to give a default)"),
                    });
                }
            }
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
    }
    out
}

impl JobSpec {
    /// Reads and validates a job spec, with variables from the process environment.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &|k| std::env::var(k).ok())
    }

    /// Reads and validates a job spec, with variables from `lookup`.
    pub fn load_with(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let problem = |line: Option<usize>, message: String| Problem {
            file: path.to_path_buf(),
            line,
            message,
        };
        let raw_text = std::fs::read_to_string(path).map_err(|e| Error::Spec {
            problems: vec![problem(None, format!("cannot read the job spec: {e}"))],
        })?;
        let base_dir = std::path::absolute(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .map_err(|e| Error::Spec {
            problems: vec![problem(None, e.to_string())],
        })?;
        let mut problems = Vec::new();
        let text = interpolate(&raw_text, path, lookup, &mut problems);
        let raw: RawJob = match toml::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                let line = e.span().map(|s| line_of(&text, s.start));
                problems.push(problem(line, e.message().trim().to_string()));
                return Err(Error::Spec { problems });
            }
        };
        let header_start = raw.job.span().start;
        let header_line = line_of(&text, header_start);
        let header = raw.job.into_inner();
        if header.memory_limit_mb == Some(0) {
            problems.push(problem(
                key_line(&text, header_start, "`memory_limit_mb`").or(Some(header_line)),
                "memory_limit_mb = 0 leaves the query engine no memory: set the MiB it may use \
                 (the demo job has 4096) or leave the key out for no limit"
                    .to_string(),
            ));
        }
        if header.model_part_rows == Some(0) {
            problems.push(problem(
                key_line(&text, header_start, "`model_part_rows`").or(Some(header_line)),
                "model_part_rows = 0 gives a model's parts no rows: set at most how many rows of \
                 its keyed inputs a part reads, or leave the key out (5,000 per MiB of \
                 memory_limit_mb)"
                    .to_string(),
            ));
        }
        if !is_identifier(&header.name) {
            problems.push(problem(
                Some(header_line),
                format!("job name '{}' must be lower_snake_case", header.name),
            ));
        }
        if header.warehouse.trim().is_empty() {
            problems.push(problem(
                Some(header_line),
                "warehouse must name a directory or URL".into(),
            ));
        }
        let sql_dir = base_dir.join(header.sql_dir.as_deref().unwrap_or("../sql"));
        let segments_dir = header
            .segments_dir
            .as_deref()
            .map_or_else(|| sql_dir.join("segments"), |d| base_dir.join(d));

        // Sources.
        let mut sources = Vec::new();
        let mut source_lines = BTreeMap::new();
        for s in &raw.sources {
            let line = Some(line_of(&text, s.span().start));
            source_lines
                .entry(s.get_ref().name.clone())
                .or_insert(line_of(&text, s.span().start));
            match s.get_ref().plan(&base_dir) {
                Ok(p) if sources.iter().any(|o: &SourcePlan| o.name == p.name) => {
                    problems.push(problem(
                        line,
                        format!("source '{}' is declared twice", p.name),
                    ));
                }
                Ok(p) => sources.push(p),
                Err(ps) => problems.extend(
                    ps.into_iter()
                        .map(|m| problem(line, format!("source '{}': {m}", s.get_ref().name))),
                ),
            }
        }

        // Models and segments.
        // A job without SQL steps (an ingest-only job, say) needs no SQL directory.
        let mut step_specs = Vec::new();
        for s in &raw.steps {
            let start = s.span().start;
            let mut keys = s.get_ref().clone();
            let mut header = toml::Table::new();
            for key in ["name", "depends_on"] {
                if let Some(v) = keys.remove(key) {
                    header.insert(key.to_string(), v);
                }
            }
            let parsed = toml::Value::Table(header)
                .try_into::<StepHeader>()
                .and_then(|h| Ok((h, toml::Value::Table(keys).try_into::<StepSpec>()?)));
            match parsed {
                Ok((header, spec)) => step_specs.push((line_of(&text, start), header, spec)),
                Err(e) => {
                    let message = e.message().trim().to_string();
                    let line =
                        key_line(&text, start, &message).unwrap_or_else(|| line_of(&text, start));
                    problems.push(problem(Some(line), message));
                }
            }
        }
        let has_sql_step = step_specs
            .iter()
            .any(|(_, _, s)| matches!(s, StepSpec::Sql(_)));
        let base_sql_dir = header.base_sql_dir.as_deref().map(|d| base_dir.join(d));
        let models = match ModelSet::load_layered(&sql_dir, base_sql_dir.as_deref()) {
            Err(_) if !has_sql_step && !sql_dir.exists() => ModelSet::default(),
            Ok(m) => m,
            Err(errors) => {
                problems.extend(errors.into_iter().map(|e| Problem {
                    file: sql_dir.clone(),
                    line: None,
                    message: e.to_string(),
                }));
                ModelSet::default()
            }
        };
        let segments = match load_segments(&segments_dir) {
            Ok(s) => s,
            Err(e) => {
                problems.push(Problem {
                    file: segments_dir.clone(),
                    line: None,
                    message: e.to_string(),
                });
                Vec::new()
            }
        };

        // Exports.
        let mut exports: Vec<ExportSpec> = Vec::new();
        for e in &raw.exports {
            let line = Some(line_of(&text, e.span().start));
            let spec = e.get_ref();
            problems.extend(
                spec.problems()
                    .into_iter()
                    .map(|m| problem(line, format!("export '{}': {m}", spec.name))),
            );
            if !segments.iter().any(|s| s.id == spec.segment) {
                problems.push(problem(
                    line,
                    format!(
                        "export '{}': segment '{}' has no file in {}",
                        spec.name,
                        spec.segment,
                        segments_dir.display()
                    ),
                ));
            }
            if exports.iter().any(|o| o.name == spec.name) {
                problems.push(problem(
                    line,
                    format!("export '{}' is declared twice", spec.name),
                ));
            }
            exports.push(spec.clone());
        }

        // Identity resolution.
        let identity = match &raw.identity {
            None => IdentitySpec::default().validate(),
            Some(i) => i.get_ref().validate(),
        };
        let identity = match identity {
            Ok(s) => s,
            Err(e) => {
                let line = raw
                    .identity
                    .as_ref()
                    .map(|i| line_of(&text, i.span().start));
                problems.push(problem(line, e.to_string()));
                IdentitySpec::default()
                    .validate()
                    .map_err(|e| Error::Spec {
                        problems: vec![problem(None, e.to_string())],
                    })?
            }
        };

        // Steps.
        let cx = SpecContext {
            sources: &sources,
            models: &models,
            exports: &exports,
            segments: &segments,
            identity: &identity,
            has_identity_step: step_specs
                .iter()
                .any(|(_, _, s)| matches!(s, StepSpec::Identity(_))),
        };
        let mut steps: Vec<Step> = Vec::new();
        for (line, header, s) in &step_specs {
            let line = *line;
            let declared = s.declaration();
            let name = header.name.as_str();
            let mut found = Vec::new();
            if !is_identifier(name) {
                found.push(CheckProblem::Step(
                    "the name must be lower_snake_case".into(),
                ));
            }
            if steps.iter().any(|o| o.name == name) {
                found.push(CheckProblem::Step("the name is used twice".into()));
            }
            let checked = declared.check(&cx, &mut found);
            problems.extend(found.into_iter().map(|p| match p {
                CheckProblem::Step(m) => problem(Some(line), format!("step '{name}': {m}")),
                CheckProblem::Elsewhere(p) => p,
            }));
            if let Some(c) = checked {
                steps.push(Step {
                    name: name.to_string(),
                    depends_on: header.depends_on.clone(),
                    line,
                    reads: c.reads,
                    writes: c.writes,
                    operation: c.operation,
                });
            }
        }
        if steps.is_empty() {
            problems.push(problem(None, "the job has no [[steps]]".into()));
        }

        // Every table read must be written by exactly one step; every dependency must exist.
        let mut writer_of: BTreeMap<&str, &str> = BTreeMap::new();
        for s in &steps {
            for w in &s.writes {
                if let Some(other) = writer_of.insert(&w.name, &s.name) {
                    problems.push(problem(
                        Some(s.line),
                        format!(
                            "step '{}': table '{}' is also written by step '{other}'",
                            s.name, w.name
                        ),
                    ));
                }
            }
        }
        for s in &steps {
            for r in &s.reads {
                // history.<table> is what earlier runs published: nobody writes it in this run.
                if r.layer != clientele_sql::HISTORY_SCHEMA
                    && !writer_of.contains_key(r.name.as_str())
                {
                    problems.push(problem(
                        Some(s.line),
                        format!(
                            "step '{}' reads table '{}', which no step writes",
                            s.name, r.name
                        ),
                    ));
                }
            }
            for d in &s.depends_on {
                if !steps.iter().any(|o| &o.name == d) {
                    problems.push(problem(
                        Some(s.line),
                        format!("step '{}' depends on '{d}', which is not a step", s.name),
                    ));
                }
            }
        }

        let spec = Self {
            path: path.to_path_buf(),
            base_dir,
            sha256: hex::encode(Sha256::digest(raw_text.as_bytes())),
            name: header.name,
            description: header.description,
            warehouse: header.warehouse,
            sql_dir,
            segments_dir,
            stale_lock_hours: header.stale_lock_hours.unwrap_or(6),
            raw_retention_days: header.raw_retention_days,
            engine: EngineOptions {
                target_partitions: header.target_partitions.unwrap_or(0),
                memory_limit_mb: header.memory_limit_mb,
                source_trust: identity.trust.clone(),
                reporting_currency: header.reporting_currency.clone(),
                model_part_rows: header.model_part_rows,
            },
            sources,
            source_lines,
            steps,
            exports,
            models,
            segments,
            identity,
            suppression_lists: header.suppression_lists,
            segment_alarm_share: header.segment_alarm_share.unwrap_or(0.5),
            segment_alarm_min_customers: header.segment_alarm_min_customers.unwrap_or(20),
        };
        if let Some(c) = &spec.engine.reporting_currency
            && !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            problems.push(problem(
                None,
                format!(
                    "reporting_currency '{c}' must be an ISO 4217 code such as GBP, EUR or AUD"
                ),
            ));
        }
        if !(spec.segment_alarm_share > 0.0 && spec.segment_alarm_share.is_finite()) {
            problems.push(problem(
                None,
                format!(
                    "segment_alarm_share {} must be above 0 (0.5 raises an alarm when a segment grows or shrinks by half)",
                    spec.segment_alarm_share
                ),
            ));
        }
        if problems.is_empty()
            && let Err(message) = spec.step_order()
        {
            problems.push(problem(None, message));
        }
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(Error::Spec { problems })
        }
    }

    /// Steps in the order they run: every step after the steps it depends on, otherwise as declared.
    pub fn step_order(&self) -> Result<Vec<&Step>, String> {
        let deps = |s: &Step| -> BTreeSet<String> { self.dependencies(s).into_iter().collect() };
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut order = Vec::new();
        while order.len() < self.steps.len() {
            let next = self
                .steps
                .iter()
                .find(|s| !done.contains(&s.name) && deps(s).iter().all(|d| done.contains(d)));
            match next {
                Some(s) => {
                    done.insert(s.name.clone());
                    order.push(s);
                }
                None => {
                    let stuck: Vec<&str> = self
                        .steps
                        .iter()
                        .filter(|s| !done.contains(&s.name))
                        .map(|s| s.name.as_str())
                        .collect();
                    return Err(format!(
                        "steps depend on each other in a cycle: {}",
                        stuck.join(", ")
                    ));
                }
            }
        }
        Ok(order)
    }

    /// The steps a step waits for: those writing what it reads, and its `depends_on`.
    pub fn dependencies(&self, step: &Step) -> Vec<String> {
        let mut out: BTreeSet<String> = step.depends_on.iter().cloned().collect();
        for r in &step.reads {
            for s in &self.steps {
                if s.name != step.name && s.writes.contains(r) {
                    out.insert(s.name.clone());
                }
            }
        }
        out.into_iter().collect()
    }

    /// A source by name.
    pub fn source(&self, name: &str) -> Option<&SourcePlan> {
        self.sources.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_replaced_and_missing_ones_reported_by_line() {
        let mut problems = Vec::new();
        let lookup = |k: &str| (k == "HOME_DIR").then(|| "/h".to_string());
        let out = interpolate(
            "a = \"${HOME_DIR}/x\"\nb = \"${NOPE:-d}\"\nc = \"${MISSING}\"\n",
            Path::new("j.toml"),
            &lookup,
            &mut problems,
        );
        assert_eq!(out, "a = \"/h/x\"\nb = \"d\"\nc = \"\"\n");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(3));
        assert!(
            problems[0]
                .to_string()
                .starts_with("j.toml:3: environment variable 'MISSING'")
        );
    }

    #[test]
    fn toml_errors_carry_their_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("job.toml");
        std::fs::write(
            &path,
            "[job]\nname = \"x\"\nwarehouse = \"w\"\nwarehose = 1\n",
        )
        .unwrap_or_default();
        let err = JobSpec::load_with(&path, &|_| None).err();
        let Some(Error::Spec { problems }) = err else {
            unreachable!("expected a spec error")
        };
        assert_eq!(problems[0].line, Some(4), "{problems:?}");
        assert!(
            problems[0].message.contains("unknown field `warehose`"),
            "{problems:?}"
        );
    }

    fn problems_of(spec: &str) -> Vec<Problem> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("job.toml");
        std::fs::write(&path, spec).unwrap_or_default();
        match JobSpec::load_with(&path, &|_| None) {
            Err(Error::Spec { problems }) => problems,
            other => unreachable!("expected a spec error, got {other:?}"),
        }
    }

    const HEADER: &str = "[job]\nname = \"x\"\nwarehouse = \"w\"\n\n[[steps]]\nname = \"load\"\nkind = \"ingest\"\n\n";

    #[test]
    fn a_key_of_another_step_kind_is_refused_at_its_step() {
        let problems = problems_of(&format!(
            "{HEADER}[[steps]]\nname = \"value\"\nkind = \"score\"\nsources = [\"a\"]\n"
        ));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].line,
            Some(12),
            "the line of the key: {problems:?}"
        );
        assert!(
            problems[0].message.contains("unknown field `sources`"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_memory_limit_of_zero_is_refused_at_its_line() {
        let spec = HEADER.replace(
            "warehouse = \"w\"\n",
            "warehouse = \"w\"\nmemory_limit_mb = 0\n",
        );
        let problems = problems_of(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, Some(4), "{problems:?}");
        assert!(
            problems[0]
                .message
                .contains("memory_limit_mb = 0 leaves the query engine no memory"),
            "{problems:?}"
        );
        let spec = HEADER.replace(
            "warehouse = \"w\"\n",
            "warehouse = \"w\"\nmemory_limit_mb = 1\n",
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("job.toml");
        std::fs::write(&path, spec).unwrap_or_default();
        let loaded = JobSpec::load_with(&path, &|_| None).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(loaded.engine.memory_limit_mb, Some(1));
        assert_eq!(loaded.engine.model_part_rows, None);
    }

    #[test]
    fn model_part_rows_of_zero_is_refused_at_its_line_and_others_reach_the_engine() {
        let spec = HEADER.replace(
            "warehouse = \"w\"\n",
            "warehouse = \"w\"\nmodel_part_rows = 0\n",
        );
        let problems = problems_of(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, Some(4), "{problems:?}");
        assert!(
            problems[0].message.contains("model_part_rows = 0 gives"),
            "{problems:?}"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("job.toml");
        let spec = HEADER.replace(
            "warehouse = \"w\"\n",
            "warehouse = \"w\"\nmodel_part_rows = 2000\n",
        );
        std::fs::write(&path, spec).unwrap_or_default();
        let loaded = JobSpec::load_with(&path, &|_| None).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(loaded.engine.model_part_rows, Some(2000));
    }

    #[test]
    fn an_unknown_step_kind_lists_the_kinds() {
        let problems = problems_of(&format!(
            "{HEADER}[[steps]]\nname = \"value\"\nkind = \"rfm\"\n"
        ));
        let message = &problems[0].message;
        assert!(message.contains("unknown variant `rfm`"), "{problems:?}");
        assert_eq!(problems[0].line, Some(11), "{problems:?}");
        for kind in crate::steps::STEP_KINDS {
            assert!(message.contains(kind), "{kind} missing: {message}");
        }
    }

    #[test]
    fn a_checked_step_keeps_its_operation_and_tables() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("job.toml");
        std::fs::write(&path, HEADER).unwrap_or_default();
        let spec = JobSpec::load_with(&path, &|_| None).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(spec.steps.len(), 1);
        assert_eq!(spec.steps[0].kind(), "ingest");
        assert_eq!(spec.steps[0].line, 5);
        assert!(spec.steps[0].reads.is_empty() && spec.steps[0].writes.is_empty());
    }
}
