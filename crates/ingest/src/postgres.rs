//! A PostgreSQL table or query as a source. Rows stream out of the server with
//! `COPY (...) TO STDOUT (FORMAT csv, HEADER)` and go through the delimited reader, so typing,
//! quarantine and reconciliation work exactly as for files, in bounded memory.

use std::io::BufReader;
use std::path::PathBuf;

use futures::StreamExt;
use tokio::runtime::Handle;

use crate::delimited::read_delimited;
use crate::error::{Error, Result};
use crate::input::{HashingReader, StreamReader};
use crate::postgres_tls::{TlsOptions, connector, split_tls_options, wire_mode};
use crate::readers::FileState;
use crate::spec::{Format, SourcePlan};

/// What to read from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// `schema.table` or `table`.
    Table(String),
    /// A SELECT statement.
    Query(String),
}

impl Relation {
    /// From the spec's `table` / `query` options: exactly one of them.
    pub(crate) fn from_spec(table: Option<&str>, query: Option<&str>) -> Result<Self, String> {
        match (table, query) {
            (Some(t), None) => {
                let ok = !t.is_empty()
                    && t.split('.').count() <= 2
                    && t.split('.').all(|p| {
                        !p.is_empty()
                            && p.chars()
                                .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
                    });
                if ok {
                    Ok(Self::Table(t.to_string()))
                } else {
                    Err(format!("table '{t}' must be a name or schema.name"))
                }
            }
            (None, Some(q)) if !q.trim().is_empty() => {
                Ok(Self::Query(q.trim().trim_end_matches(';').to_string()))
            }
            (None, Some(_)) => Err("query is empty".into()),
            (Some(_), Some(_)) => {
                Err("a postgres source takes 'table' or 'query', not both".into())
            }
            (None, None) => Err("a postgres source needs 'table' or 'query'".into()),
        }
    }

    /// The COPY statement that streams the rows as CSV with a header.
    fn copy_sql(&self) -> String {
        let select = match self {
            Self::Table(t) => {
                let quoted: Vec<String> = t
                    .split('.')
                    .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
                    .collect();
                format!("SELECT * FROM {}", quoted.join("."))
            }
            Self::Query(q) => q.clone(),
        };
        format!("COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER true)")
    }

    /// How the relation is named in reports: the location without its password, and the table.
    pub(crate) fn display(&self, location: &str) -> String {
        let place = redact(location);
        match self {
            Self::Table(t) => format!("{place}#{t}"),
            Self::Query(_) => format!("{place}#query"),
        }
    }
}

/// A connection URL without its password.
pub(crate) fn redact(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(connection string)".to_string(),
    }
}

/// The connection settings: the URL, with user and password from `PGUSER` / `PGPASSWORD` when the URL
/// has none, and its TLS options (see [`crate::postgres_tls`]).
fn config(plan: &SourcePlan) -> Result<(tokio_postgres::Config, TlsOptions)> {
    let bad = |reason: String| Error::BadSpec {
        source_name: plan.name.clone(),
        problems: vec![reason],
    };
    let tls = split_tls_options(&plan.location).map_err(|e| {
        bad(format!(
            "location '{}' is not a PostgreSQL connection URL: {e}",
            redact(&plan.location)
        ))
    })?;
    let mut config: tokio_postgres::Config = tls.location.parse().map_err(|e| {
        bad(format!(
            "location '{}' is not a PostgreSQL connection URL: {e}",
            redact(&plan.location)
        ))
    })?;
    if config.get_user().is_none() {
        config.user(std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into()));
    }
    if config.get_password().is_none()
        && let Ok(p) = std::env::var("PGPASSWORD")
    {
        config.password(p);
    }
    config.application_name("clientele");
    config.ssl_mode(wire_mode(tls.mode));
    Ok((config, tls))
}

/// Streams the relation through the delimited reader.
pub(crate) fn read_relation(
    state: &mut FileState<'_>,
    plan: &SourcePlan,
    relation: &Relation,
    rt: &Handle,
) -> Result<()> {
    let shown = relation.display(&plan.location);
    let failed = |what: &str, e: tokio_postgres::Error| Error::BadFile {
        source_name: plan.name.clone(),
        file: PathBuf::from(&shown),
        reason: format!("{what}: {}", pg_message(&e)),
    };
    let (config, tls) = config(plan)?;
    let connector = connector(&tls).map_err(|reason| Error::BadFile {
        source_name: plan.name.clone(),
        file: PathBuf::from(&shown),
        reason: format!("cannot set up TLS: {reason}"),
    })?;
    let (client, conn) = match connector {
        None => {
            let (client, connection) = rt
                .block_on(config.connect(tokio_postgres::NoTls))
                .map_err(|e| failed("cannot connect", e))?;
            (client, rt.spawn(drive(connection)))
        }
        Some(connector) => {
            let (client, connection) = rt
                .block_on(config.connect(connector))
                .map_err(|e| failed("cannot connect", e))?;
            (client, rt.spawn(drive(connection)))
        }
    };
    rt.block_on(client.batch_execute(
        "SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3; \
         SET default_transaction_read_only = on",
    ))
    .map_err(|e| failed("cannot prepare the session", e))?;
    let stream = rt
        .block_on(client.copy_out(&relation.copy_sql()))
        .map_err(|e| failed("cannot read", e))?;
    let (hashing, digest) = HashingReader::new(StreamReader::new(rt.clone(), stream.boxed()));
    let mut reader = BufReader::with_capacity(1 << 20, hashing);
    let csv = Format::Delimited {
        delimiter: b',',
        header: true,
        quote: Some(b'"'),
        escape: None,
        comment: None,
    };
    read_delimited(state, &PathBuf::from(&shown), &mut reader, &csv)?;
    drop(reader);
    drop(client);
    rt.block_on(conn).ok();
    let d = digest.borrow();
    state.report.bytes = d.bytes;
    state.report.sha256 = d.hex();
    Ok(())
}

/// Runs a connection until its client is dropped.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "PostgreSQL connection ended with an error");
    }
}

/// The server's message when there is one (it names the missing table or column).
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // The cause chain: a TLS failure says why only in its source ("invalid peer
            // certificate: UnknownIssuer").
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = cause.source();
            }
            message
        }
    }
}
