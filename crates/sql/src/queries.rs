//! Parameterised queries: the SQL the steps run besides the models, kept in `sql/queries/` where
//! analysts read it and the slt harness tests it. Each file opens with `--` comment lines (what it
//! is, its `params:` and what it `reads:`), then the query, in which `{name}` marks a parameter.
//! [`Query::fill`] replaces the parameters it is given and refuses any other name; a parameter
//! left unfilled stays as written (a saved model's scoring query keeps `{as_of}`).

use crate::error::{Error, Result};

/// One query of `sql/queries/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// The file stem.
    pub name: &'static str,
    file: &'static str,
}

macro_rules! queries {
    ($($konst:ident = $name:literal),* $(,)?) => {
        $(
            #[doc = concat!("`sql/queries/", $name, ".sql`.")]
            pub const $konst: Query = Query {
                name: $name,
                file: include_str!(concat!("../../../sql/queries/", $name, ".sql")),
            };
        )*
        /// Every query of `sql/queries/`.
        pub const ALL: &[Query] = &[$($konst),*];
    };
}

queries! {
    FEATURES = "features",
    CHURN_SNAPSHOTS = "churn_snapshots",
    CHURN_SCORING_SNAPSHOTS = "churn_scoring_snapshots",
    PROPENSITY_TRAINING_SNAPSHOTS = "propensity_training_snapshots",
    PROPENSITY_SCORING_SNAPSHOTS = "propensity_scoring_snapshots",
    SCORING_SNAPSHOTS = "scoring_snapshots",
    RFM_INPUT = "rfm_input",
    RFM_SEGMENT_NAMES = "rfm_segment_names",
    CLV_TRANSACTIONS = "clv_transactions",
    CAMPAIGN_RESULTS = "campaign_results",
    PREVIOUS_AUDIENCE = "previous_audience",
    EXPORT_AUDIENCE = "export_audience",
    LISTED_CUSTOMERS = "listed_customers",
    IDENTITY_INPUT = "identity_input",
}

impl Query {
    /// The query without its leading comment lines and its final newline.
    pub fn text(&self) -> &'static str {
        let mut rest = self.file;
        while rest.starts_with("--") {
            rest = rest.split_once('\n').map_or("", |(_, r)| r);
        }
        rest.trim_start_matches('\n').trim_end_matches('\n')
    }

    /// The parameters the query takes, in order of first use.
    pub fn params(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        let mut rest = self.text();
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let name = &rest[start + 1..start + len];
            if !name.is_empty()
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && !out.contains(&name)
            {
                out.push(name);
            }
            rest = &rest[start + len + 1..];
        }
        out
    }

    /// The query with `params` filled in. A name the query does not take is an error (a typo
    /// would otherwise leave its `{name}` in the SQL).
    pub fn fill(&self, params: &[(&str, &str)]) -> Result<String> {
        let known = self.params();
        let mut sql = self.text().to_string();
        for (name, value) in params {
            if !known.contains(name) {
                return Err(Error::BadModel {
                    path: format!("sql/queries/{}.sql", self.name).into(),
                    reason: format!(
                        "the query has no parameter '{name}' (it takes: {})",
                        known.join(", ")
                    ),
                });
            }
            sql = sql.replace(&format!("{{{name}}}"), value);
        }
        Ok(sql)
    }
}

/// A date as the queries' date parameters take it.
pub fn date_param(d: chrono::NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_has_its_header_and_declares_its_params() {
        for q in ALL {
            assert!(q.file.starts_with("-- "), "{} has no header", q.name);
            let header: String = q
                .file
                .lines()
                .take_while(|l| l.starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(header.contains("-- reads:"), "{}: no reads line", q.name);
            for p in q.params() {
                assert!(
                    header.contains(p),
                    "{}: parameter {p} is not described",
                    q.name
                );
            }
            assert!(!q.text().starts_with("--") && !q.text().ends_with('\n'));
        }
    }

    #[test]
    fn fill_replaces_named_params_and_refuses_unknown_ones() -> Result<()> {
        let sql =
            CHURN_SNAPSHOTS.fill(&[("cutoff", "2025-07-04"), ("horizon_end", "2025-10-02")])?;
        assert!(sql.contains("order_date > cast('2025-07-04' as date)"));
        assert!(sql.contains("order_date <= cast('2025-10-02' as date)"));
        assert!(!sql.contains('{'));
        assert_eq!(CHURN_SNAPSHOTS.params(), ["cutoff", "horizon_end"]);
        assert!(CHURN_SNAPSHOTS.fill(&[("cut_off", "x")]).is_err());
        // Unfilled parameters stay for later.
        assert!(CHURN_SCORING_SNAPSHOTS.fill(&[])?.contains("{as_of}"));
        Ok(())
    }
}
