use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::resolve::resolve_table_references;

use crate::error::{Error, Result};

/// The directories under `sql/` that hold models, in the order they usually run.
pub const LAYERS: [&str; 3] = ["staging", "intermediate", "marts"];

/// One SQL model: a single `SELECT` in `sql/<layer>/<name>.sql`.
#[derive(Debug, Clone)]
pub struct Model {
    /// Table name of the model's output (the file stem).
    pub name: String,
    /// `staging`, `intermediate` or `marts`.
    pub layer: String,
    /// The file.
    pub path: PathBuf,
    /// The query text.
    pub sql: String,
    /// The leading `--` comment lines.
    pub description: String,
    /// Every table the query and its data tests read, as written (`raw.crm_customers`,
    /// `stg_crm__customers`).
    pub reads: Vec<String>,
    /// The data tests declared in the file (`-- test: ...` lines).
    pub tests: Vec<crate::data_tests::DeclaredTest>,
    /// The key it can run in parts by (a `-- parts: <table>.<column>` line; [`crate::parts`]).
    pub parts: Option<crate::parts::PartsKey>,
}

/// All models of a project, with their dependencies.
#[derive(Debug, Clone, Default)]
pub struct ModelSet {
    models: BTreeMap<String, Model>,
}

fn layer_rank(layer: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| *l == layer)
        .unwrap_or(LAYERS.len())
}

/// The tables a single query reads (CTE names excluded), sorted; an error says why the text is not
/// exactly one query.
pub fn parse_reads(sql: &str) -> std::result::Result<Vec<String>, String> {
    let statements = DFParser::parse_sql(sql).map_err(|e| format!("SQL does not parse: {e}"))?;
    if statements.len() != 1 {
        return Err(format!(
            "a model holds exactly one SELECT; found {} statements",
            statements.len()
        ));
    }
    let Some(statement) = statements.front() else {
        return Err("empty model".into());
    };
    let is_query = matches!(statement, Statement::Statement(s) if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Query(_)));
    if !is_query {
        return Err("a model must be a query (SELECT or WITH ... SELECT)".into());
    }
    let (refs, _ctes) = resolve_table_references(statement, true).map_err(|e| e.to_string())?;
    let mut reads: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
    reads.sort();
    reads.dedup();
    Ok(reads)
}

/// Parses one model file; checks it holds exactly one query and lists the tables it reads.
pub fn parse_model(path: &Path, layer: &str, sql: String) -> Result<Model> {
    let bad = |reason: String| Error::BadModel {
        path: path.to_path_buf(),
        reason,
    };
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| bad("the file name is not UTF-8".into()))?
        .to_string();
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(bad(format!("model name '{name}' must be lower_snake_case")));
    }
    let mut reads = parse_reads(&sql).map_err(bad)?;
    let tests = crate::data_tests::parse_tests(&sql)
        .map_err(|(line, e)| bad(format!("line {line}: {e}")))?;
    for t in &tests {
        if let Some(table) = t.test.reads()
            && table != name
            && !reads.iter().any(|r| r == table)
        {
            reads.push(table.to_string());
        }
    }
    reads.sort();
    let parts =
        crate::parts::parse_parts(&sql).map_err(|(line, e)| bad(format!("line {line}: {e}")))?;
    if let Some(key) = &parts
        && !reads.contains(&key.table)
    {
        return Err(bad(format!(
            "line {}: 'parts: {}.{}': the query does not read '{}'",
            key.line, key.table, key.column, key.table
        )));
    }
    let description = sql
        .lines()
        .map_while(|l| l.trim().strip_prefix("--"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("test:") && !l.starts_with("parts:"))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Model {
        name,
        layer: layer.to_string(),
        path: path.to_path_buf(),
        sql,
        description,
        reads,
        tests,
        parts,
    })
}

impl ModelSet {
    /// Loads every `.sql` file in the layer directories below `dir`. Returns every problem found.
    pub fn load(dir: &Path) -> Result<Self, Vec<Error>> {
        Self::load_layered(dir, None)
    }

    /// Loads the models of `dir` over those of `base`: a model of `dir` replaces the model of the
    /// same name in `base`, and the staging models of `base` are left out (a business writes its
    /// staging models and takes the intermediate models and marts from clientele's own `sql/`).
    /// Returns every problem found.
    pub fn load_layered(dir: &Path, base: Option<&Path>) -> Result<Self, Vec<Error>> {
        let mut problems = Vec::new();
        let mut models = Self::load_dir(dir, &mut problems);
        if let Some(base) = base {
            // Staging belongs to the business: its sources are its own.
            for (name, model) in Self::load_dir(base, &mut problems) {
                if model.layer != "staging" {
                    models.entry(name).or_insert(model);
                }
            }
        }
        let set = Self { models };
        if problems.is_empty()
            && let Err(e) = set.ordered(&[])
        {
            problems.push(e);
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(problems)
        }
    }

    fn load_dir(dir: &Path, problems: &mut Vec<Error>) -> BTreeMap<String, Model> {
        let mut models: BTreeMap<String, Model> = BTreeMap::new();
        if !dir.is_dir() {
            problems.push(Error::BadModel {
                path: dir.to_path_buf(),
                reason: "the SQL directory does not exist".into(),
            });
            return models;
        }
        for layer in LAYERS {
            let layer_dir = dir.join(layer);
            let Ok(entries) = std::fs::read_dir(&layer_dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            {
                let sql = match std::fs::read_to_string(&path) {
                    Ok(s) => s,
                    Err(source) => {
                        problems.push(Error::Io { path, source });
                        continue;
                    }
                };
                match parse_model(&path, layer, sql) {
                    Ok(m) => {
                        if let Some(other) = models.get(&m.name) {
                            problems.push(Error::BadModel {
                                path: m.path.clone(),
                                reason: format!(
                                    "model name '{}' is also used by {}",
                                    m.name,
                                    other.path.display()
                                ),
                            });
                        } else {
                            models.insert(m.name.clone(), m);
                        }
                    }
                    Err(e) => problems.push(e),
                }
            }
        }
        models
    }

    /// Builds a set from models already parsed (tests).
    pub fn from_models(models: impl IntoIterator<Item = Model>) -> Self {
        Self {
            models: models.into_iter().map(|m| (m.name.clone(), m)).collect(),
        }
    }

    /// A model by name.
    pub fn get(&self, name: &str) -> Option<&Model> {
        self.models.get(name)
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether there are no models.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The models a model reads directly.
    pub fn upstream<'a>(&'a self, model: &'a Model) -> impl Iterator<Item = &'a Model> + 'a {
        model.reads.iter().filter_map(|r| self.models.get(r))
    }

    /// The selected models (layer names or model names; empty selects all) in dependency order; ties are
    /// broken by layer, then name, so the order is always the same.
    pub fn ordered(&self, selection: &[String]) -> Result<Vec<&Model>> {
        let mut chosen: BTreeSet<&str> = BTreeSet::new();
        for s in selection {
            let by_layer: Vec<&str> = self
                .models
                .values()
                .filter(|m| &m.layer == s)
                .map(|m| m.name.as_str())
                .collect();
            if !by_layer.is_empty() {
                chosen.extend(by_layer);
            } else if let Some(m) = self.models.get(s) {
                chosen.insert(m.name.as_str());
            } else {
                return Err(Error::BadModel {
                    path: PathBuf::from(s),
                    reason: format!("'{s}' names neither a model nor a layer with models"),
                });
            }
        }
        if selection.is_empty() {
            chosen = self.models.keys().map(String::as_str).collect();
        }
        // Kahn's algorithm over all models, keeping the chosen ones.
        let mut indegree: BTreeMap<&str, usize> = BTreeMap::new();
        let mut downstream: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for m in self.models.values() {
            let ups: BTreeSet<&str> = self
                .upstream(m)
                .map(|u| u.name.as_str())
                .filter(|u| *u != m.name)
                .collect();
            indegree.insert(&m.name, ups.len());
            for u in ups {
                downstream.entry(u).or_default().push(&m.name);
            }
            if m.reads.contains(&m.name) {
                return Err(Error::BadModel {
                    path: m.path.clone(),
                    reason: format!("model '{}' reads itself", m.name),
                });
            }
        }
        let key = |name: &str| {
            (
                self.models
                    .get(name)
                    .map_or(usize::MAX, |m| layer_rank(&m.layer)),
                name.to_string(),
            )
        };
        let mut ready: BTreeSet<(usize, String)> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| key(n))
            .collect();
        let mut order = Vec::new();
        while let Some(next) = ready.pop_first() {
            let name = next.1;
            for d in downstream.get(name.as_str()).into_iter().flatten() {
                if let Some(deg) = indegree.get_mut(d) {
                    *deg -= 1;
                    if *deg == 0 {
                        ready.insert(key(d));
                    }
                }
            }
            order.push(name);
        }
        if order.len() != self.models.len() {
            let stuck: Vec<&str> = indegree
                .iter()
                .filter(|(n, _)| !order.iter().any(|o| o == *n))
                .map(|(n, _)| *n)
                .collect();
            let path = stuck
                .first()
                .and_then(|n| self.models.get(*n))
                .map(|m| m.path.clone())
                .unwrap_or_default();
            return Err(Error::BadModel {
                path,
                reason: format!("models read each other in a cycle: {}", stuck.join(", ")),
            });
        }
        Ok(order
            .iter()
            .filter(|n| chosen.contains(n.as_str()))
            .filter_map(|n| self.models.get(n))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, layer: &str, sql: &str) -> Model {
        parse_model(
            Path::new(&format!("sql/{layer}/{name}.sql")),
            layer,
            sql.to_string(),
        )
        .unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn models_run_after_what_they_read() -> Result<()> {
        let set = ModelSet::from_models([
            model(
                "customer_view",
                "marts",
                "select * from dim_customer join fct_orders using (customer_id)",
            ),
            model(
                "dim_customer",
                "marts",
                "with c as (select * from stg_a) select * from c",
            ),
            model("fct_orders", "marts", "select * from stg_a"),
            model(
                "stg_a",
                "staging",
                "-- Customers of A.\n-- Cleaned.\nselect * from raw.a",
            ),
        ]);
        let order: Vec<&str> = set.ordered(&[])?.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            order,
            ["stg_a", "dim_customer", "fct_orders", "customer_view"]
        );
        assert_eq!(
            set.get("stg_a").map(|m| m.description.as_str()),
            Some("Customers of A. Cleaned.")
        );
        assert_eq!(
            set.get("dim_customer").map(|m| m.reads.clone()),
            Some(vec!["stg_a".to_string()])
        );
        let marts: Vec<&str> = set
            .ordered(&["marts".into()])?
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(marts, ["dim_customer", "fct_orders", "customer_view"]);
        Ok(())
    }

    #[test]
    fn cycles_and_non_queries_are_refused() {
        let set = ModelSet::from_models([
            model("a", "marts", "select * from b"),
            model("b", "marts", "select * from a"),
        ]);
        assert!(
            set.ordered(&[])
                .is_err_and(|e| e.to_string().contains("cycle: a, b"))
        );
        let err = parse_model(Path::new("sql/marts/x.sql"), "marts", "drop table y".into());
        assert!(err.is_err_and(|e| e.to_string().contains("must be a query")));
        let err = parse_model(
            Path::new("sql/marts/x.sql"),
            "marts",
            "select 1; select 2".into(),
        );
        assert!(err.is_err_and(|e| e.to_string().contains("exactly one SELECT")));
    }
}
