//! Data tests declared beside each model, as comment lines in its SQL file:
//!
//! ```sql
//! -- test: unique(customer_id)
//! -- test: not_null(customer_id, first_seen_date)
//! -- test: accepted_values(source_system, 'crm', 'web')
//! -- test: relationships(customer_id, dim_customer.customer_id)
//! -- test: expression(monetary_value >= 0)
//! ```
//!
//! Each test is a query for the rows that break it; a test passes when that query returns nothing.

/// One kind of data test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataTest {
    /// No two rows share these columns.
    Unique(Vec<String>),
    /// None of these columns is null.
    NotNull(Vec<String>),
    /// A column holds only these values (SQL literals as written) or null.
    AcceptedValues { column: String, values: Vec<String> },
    /// Every non-null value of `column` is a value of `to_column` in `table`.
    Relationships {
        column: String,
        table: String,
        to_column: String,
    },
    /// Every row satisfies this SQL expression (a null result counts as a failure).
    Expression(String),
}

/// Whether a column holds contact data or a name, by its name: a failure message shows such a
/// column masked, never its value (logs and run reports carry no personal data).
pub fn is_personal_column(column: &str) -> bool {
    const PARTS: [&str; 9] = [
        "email", "phone", "mobile", "name", "street", "address", "postcode", "zip", "birth",
    ];
    let column = column.to_ascii_lowercase();
    PARTS.iter().any(|p| column.contains(p)) || column == "city"
}

/// How a personal value appears in a failure message: its length, never its characters.
pub fn masked(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        format!("<masked, {} characters>", value.chars().count())
    }
}

/// A test with where it was declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredTest {
    pub test: DataTest,
    /// 1-based line in the model file.
    pub line: usize,
    /// As written after `test:`.
    pub text: String,
}

impl DataTest {
    /// The query for the rows of `model` that break the test.
    pub fn failing_rows_sql(&self, model: &str) -> String {
        match self {
            Self::Unique(cols) => {
                let c = cols.join(", ");
                format!(
                    "select {c}, count(*) as duplicate_rows from {model} group by {c} having count(*) > 1"
                )
            }
            Self::NotNull(cols) => {
                let cond: Vec<String> = cols.iter().map(|c| format!("{c} is null")).collect();
                format!("select * from {model} where {}", cond.join(" or "))
            }
            Self::AcceptedValues { column, values } => format!(
                "select * from {model} where {column} is not null and {column} not in ({})",
                values.join(", ")
            ),
            Self::Relationships {
                column,
                table,
                to_column,
            } => {
                // `not exists`, not `not in`: both sides without nulls, they are the same test,
                // but `not in` plans a null-aware anti join that holds every row of the model in
                // one hash table, which can neither spill nor become a sort-merge join (at ten
                // million persons 3.5 GB for `fct_touchpoints`); this one builds on the parent's
                // keys and falls back to a sort-merge join that spills.
                format!(
                    "select tested.* from {model} as tested where tested.{column} is not null \
                     and not exists (select 1 from {table} as parent \
                     where parent.{to_column} = tested.{column})"
                )
            }
            Self::Expression(e) => {
                format!("select * from {model} where not coalesce(({e}), false)")
            }
        }
    }

    /// The columns of a failing row that a failure message shows: the row's identifiers (columns
    /// named `*_id`) and the columns the test names, in the order of `columns` (for `unique`, the
    /// key and the count of duplicates). Other columns are left out: they may hold personal data.
    pub fn shown_columns(&self, columns: &[String]) -> Vec<String> {
        let named: Vec<&str> = match self {
            Self::Unique(_) => return columns.to_vec(),
            Self::NotNull(cols) => cols.iter().map(String::as_str).collect(),
            Self::AcceptedValues { column, .. } | Self::Relationships { column, .. } => {
                vec![column.as_str()]
            }
            Self::Expression(e) => e
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .collect(),
        };
        columns
            .iter()
            .filter(|c| c.ends_with("_id") || named.iter().any(|n| n.eq_ignore_ascii_case(c)))
            .cloned()
            .collect()
    }

    /// Tables the test reads besides the model.
    pub fn reads(&self) -> Option<&str> {
        match self {
            Self::Relationships { table, .. } => Some(table),
            _ => None,
        }
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Splits on commas outside quotes and parentheses.
fn split_args(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut current) = (0i32, false, String::new());
    for c in text.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// One test as written after `test:`.
fn parse_test(text: &str) -> Result<DataTest, String> {
    let usage = "tests are unique(cols), not_null(cols), accepted_values(col, 'v', ...), \
                 relationships(col, table.col) or expression(sql)";
    let (name, rest) = text
        .split_once('(')
        .ok_or_else(|| format!("'{text}': {usage}"))?;
    let inner = rest
        .trim_end()
        .strip_suffix(')')
        .ok_or_else(|| format!("'{text}': the arguments end with ')'"))?;
    let columns = |args: &[String]| -> Result<Vec<String>, String> {
        if args.is_empty() {
            return Err(format!("'{text}': name at least one column"));
        }
        for a in args {
            if !is_identifier(a) {
                return Err(format!("'{text}': '{a}' is not a column name"));
            }
        }
        Ok(args.to_vec())
    };
    match name.trim() {
        "unique" => Ok(DataTest::Unique(columns(&split_args(inner))?)),
        "not_null" => Ok(DataTest::NotNull(columns(&split_args(inner))?)),
        "accepted_values" => {
            let args = split_args(inner);
            let Some((column, values)) = args.split_first() else {
                return Err(format!("'{text}': name the column and its values"));
            };
            columns(std::slice::from_ref(column))?;
            if values.is_empty() {
                return Err(format!("'{text}': list the accepted values"));
            }
            Ok(DataTest::AcceptedValues {
                column: column.clone(),
                values: values.to_vec(),
            })
        }
        "relationships" => {
            let args = split_args(inner);
            let [column, target] = args.as_slice() else {
                return Err(format!(
                    "'{text}': relationships(column, table.column) takes two arguments"
                ));
            };
            columns(std::slice::from_ref(column))?;
            let (table, to_column) = target.rsplit_once('.').ok_or_else(|| {
                format!("'{text}': the second argument is table.column, not '{target}'")
            })?;
            if !table.split('.').all(is_identifier) || !is_identifier(to_column) {
                return Err(format!("'{text}': '{target}' is not table.column"));
            }
            Ok(DataTest::Relationships {
                column: column.clone(),
                table: table.to_string(),
                to_column: to_column.to_string(),
            })
        }
        "expression" if !inner.trim().is_empty() => {
            Ok(DataTest::Expression(inner.trim().to_string()))
        }
        "expression" => Err(format!("'{text}': the expression is empty")),
        other => Err(format!("'{text}': unknown test '{other}'; {usage}")),
    }
}

/// Every `-- test:` line of a model file; an error carries the line.
pub fn parse_tests(sql: &str) -> Result<Vec<DeclaredTest>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in sql.lines().enumerate() {
        let Some(comment) = line.trim().strip_prefix("--") else {
            continue;
        };
        let Some(text) = comment.trim().strip_prefix("test:") else {
            continue;
        };
        let text = text.trim();
        let test = parse_test(text).map_err(|e| (i + 1, e))?;
        out.push(DeclaredTest {
            test,
            line: i + 1,
            text: text.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_and_becomes_a_query() {
        let sql = "-- A model.\n-- test: unique(a, b)\n-- test: not_null(a)\n\
                   -- test: accepted_values(kind, 'x', 'y,z')\n\
                   -- test: relationships(customer_id, dim_customer.customer_id)\n\
                   -- test: expression(coalesce(amount, 0) >= 0)\nselect 1";
        let tests = parse_tests(sql).unwrap();
        assert_eq!(tests.len(), 5);
        assert_eq!(tests[0].line, 2);
        assert_eq!(
            tests[2].test,
            DataTest::AcceptedValues {
                column: "kind".into(),
                values: vec!["'x'".into(), "'y,z'".into()]
            }
        );
        assert_eq!(tests[3].test.reads(), Some("dim_customer"));
        assert_eq!(
            tests[4].test.failing_rows_sql("m"),
            "select * from m where not coalesce((coalesce(amount, 0) >= 0), false)"
        );
        assert!(
            tests[0]
                .test
                .failing_rows_sql("m")
                .contains("group by a, b")
        );
    }

    #[test]
    fn bad_tests_name_their_line() {
        for (sql, part) in [
            ("select 1\n-- test: uniq(a)", "unknown test 'uniq'"),
            ("-- test: not_null(a b)", "is not a column name"),
            ("-- test: relationships(a, dim)", "table.column"),
            ("-- test: unique(a", "end with ')'"),
            ("-- test: accepted_values(a)", "accepted values"),
        ] {
            let Err((line, e)) = parse_tests(sql) else {
                panic!("accepted: {sql}")
            };
            assert!(e.contains(part), "{e}");
            assert_eq!(line, sql.lines().count());
        }
    }

    #[test]
    fn failure_messages_show_identifiers_and_the_tested_columns_never_other_personal_data() {
        let columns: Vec<String> = [
            "customer_id",
            "email",
            "first_name",
            "frequency",
            "record_id",
        ]
        .map(String::from)
        .to_vec();
        let shown = |sql: &str| parse_tests(sql).unwrap()[0].test.shown_columns(&columns);
        assert_eq!(
            shown("-- test: expression(frequency >= 0)"),
            ["customer_id", "frequency", "record_id"]
        );
        assert_eq!(
            shown("-- test: not_null(email)"),
            ["customer_id", "email", "record_id"]
        );
        assert!(is_personal_column("email") && is_personal_column("first_name"));
        assert!(is_personal_column("city") && !is_personal_column("frequency"));
        assert!(!is_personal_column("customer_id"));
        assert_eq!(masked("jane@example.com"), "<masked, 16 characters>");
        assert_eq!(masked(""), "");
    }
}
