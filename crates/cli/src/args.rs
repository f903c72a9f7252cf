//! Command-line arguments (raw flags; commands validate them into plans).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "clientele",
    version,
    about = "A batch customer data warehouse: ingest, consolidate, score, segment, export"
)]
pub struct Cli {
    /// Log format on stderr: `human`, or `json` for schedulers and log shippers.
    #[arg(long, value_enum, default_value = "human", global = true)]
    pub log_format: LogFormat,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

/// The demo retailer's country.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoCountry {
    /// Great Britain.
    Gb,
    /// Australia.
    Au,
    /// The United States.
    Us,
}

impl From<DemoCountry> for clientele_demo::Country {
    fn from(c: DemoCountry) -> Self {
        match c {
            DemoCountry::Gb => clientele_demo::Country::Gb,
            DemoCountry::Au => clientele_demo::Country::Au,
            DemoCountry::Us => clientele_demo::Country::Us,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate the demo retailer's sources and run the demo job on them.
    Demo {
        /// Directory to write the demo into (jobs/, sql/, sources/, warehouse/).
        #[arg(long, default_value = "clientele-demo")]
        dir: PathBuf,
        /// Number of persons behind the generated records.
        #[arg(long, default_value_t = 20_000)]
        persons: u64,
        /// Random seed; the same seed gives the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The demo's as-of date (the last day of its history).
        #[arg(long, default_value = "2025-12-31")]
        as_of: chrono::NaiveDate,
        /// The retailer's country: its postal system (British postcodes hold a few households,
        /// Australian postcodes and American ZIP codes thousands of people) and phone numbers.
        #[arg(long, value_enum, default_value_t = DemoCountry::Gb)]
        country: DemoCountry,
        /// The simple demo of earlier versions, for comparison: no households, no second accounts
        /// within one system, no placeholder values. Accuracy measured on it says little about a
        /// real customer base.
        #[arg(long)]
        simple: bool,
        /// The second act, on a demo directory that has run: customers respond to the campaigns
        /// of the latest run (the treated ones more often than the held-out control groups), and
        /// the job runs again `--response-days` later and measures the lift.
        #[arg(long)]
        respond: bool,
        /// Days between the campaigns and the second run.
        #[arg(long, default_value_t = 30)]
        response_days: u32,
        /// Only write the project and generate its sources, without running the job: run it
        /// later with `clientele run <dir>/jobs/demo.toml --as-of <date>` (as the nightly
        /// benchmark does, to time the run alone).
        #[arg(long, conflicts_with = "respond")]
        no_run: bool,
    },
    /// Run a job.
    Run {
        /// The job spec (TOML).
        job: PathBuf,
        /// The date every step uses instead of today (YYYY-MM-DD); default: today (UTC).
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Run only these steps (comma-separated); they read other steps' outputs as published.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Print the plan and plan every SQL query, without reading sources or writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Parse every source file again, instead of keeping the rows of files that have not changed
        /// (same name, size and SHA-256) since the last published load.
        #[arg(long)]
        full_refresh: bool,
    },
    /// Work with source declarations.
    Sources {
        #[command(subcommand)]
        command: SourcesCommand,
    },
    /// Check a job spec, its sources and every SQL model; each problem is reported with file and line.
    Validate {
        /// The job spec (TOML).
        job: PathBuf,
    },
    /// Run SQL over the published tables (every table has an `as_of` partition column).
    Query {
        /// The SQL.
        sql: String,
        /// The warehouse: a directory or URL.
        #[arg(
            long,
            env = "CLIENTELE_WAREHOUSE",
            default_value = "clientele-demo/warehouse"
        )]
        warehouse: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Explain how identity resolution scored a pair of records: the prior, then each compared
    /// field's level and how it moved the match weight, then the match probability, any shared
    /// address that makes them one household, and the customers and households the published run
    /// put them in.
    ExplainMatch {
        /// The job spec (TOML) whose identity settings and warehouse to use.
        job: PathBuf,
        /// The first record id (as in int_customer_identity, e.g. crm:00000012).
        record_a: String,
        /// The second record id.
        record_b: String,
        /// The as-of date of the run to explain (default: the latest).
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
    },
    /// Forget one person (the right to erasure): remove them from every published table and
    /// export file, keep them out of later loads by a tombstone of hashed identifiers, and
    /// record an audit entry without personal data (docs/privacy.md).
    #[command(group(clap::ArgGroup::new("person").required(true).args(["email", "phone", "customer_id"])))]
    Forget {
        /// The job spec (TOML) whose warehouse and identity settings to use.
        job: PathBuf,
        /// The person's email address.
        #[arg(long)]
        email: Option<String>,
        /// The person's phone number (national numbers take the job's default country code).
        #[arg(long)]
        phone: Option<String>,
        /// The person's customer id (customer_view.customer_id).
        #[arg(long)]
        customer_id: Option<String>,
        /// Who asks, for the audit entry (default: the login name).
        #[arg(long)]
        by: Option<String>,
    },
    /// List the segments of the latest published run with their sizes, changes since the run
    /// before, and alarms.
    Segments {
        /// The warehouse: a directory or URL.
        #[arg(
            long,
            env = "CLIENTELE_WAREHOUSE",
            default_value = "clientele-demo/warehouse"
        )]
        warehouse: String,
    },
    /// Pull one segment from the latest published run as a file for a campaign tool, with every
    /// suppression the job applies (opt-outs, the run's suppression lists, contact keys).
    Export(ExportArgs),
    /// Score customers again with a model artifact a run saved (models/<model>/as_of=D/artifact.json):
    /// its query on the warehouse's tables of one as-of date, its model applied.
    Score {
        /// The artifact (JSON).
        #[arg(long)]
        artifact: PathBuf,
        /// The warehouse whose published tables are scored: a directory or URL.
        #[arg(
            long,
            env = "CLIENTELE_WAREHOUSE",
            default_value = "clientele-demo/warehouse"
        )]
        warehouse: String,
        /// Score as of this date, on that date's published tables (default: the artifact's own).
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Write the scores here (.csv or .parquet) instead of CSV on standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fit customer models to a transaction file, for analysts (see docs/models.md).
    Fit {
        #[command(subcommand)]
        command: FitCommand,
    },
    /// Show the run history of a warehouse.
    Runs {
        /// The warehouse: a directory or URL.
        #[arg(
            long,
            env = "CLIENTELE_WAREHOUSE",
            default_value = "clientele-demo/warehouse"
        )]
        warehouse: String,
        /// Print the manifests as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FitCommand {
    /// Fit buy-till-you-die purchase models (BG/NBD, MBG/NBD) to transactions: parameters,
    /// standard errors, log-likelihood, and with --holdout-end, predicted against actual purchases.
    Btyd {
        #[command(flatten)]
        data: TransactionArgs,
        /// Which model: bgnbd, mbgnbd, paretonbd, or all three.
        #[arg(long, default_value = "all")]
        model: String,
    },
    /// Fit the Gamma-Gamma spend model to the repeat buyers of the calibration period.
    Spend {
        #[command(flatten)]
        data: TransactionArgs,
    },
}

/// Where the transactions are and how the calibration period is cut.
#[derive(Debug, clap::Args)]
pub struct TransactionArgs {
    /// CSV (with a header), Parquet, or whitespace-aligned text such as the CDNOW order log.
    #[arg(long, required_unless_present = "summary", conflicts_with = "summary")]
    pub transactions: Option<PathBuf>,
    /// Instead of transactions: a CSV of per-customer summaries as `lifetimes` writes them
    /// (`customer_id` or the --customer-col name, `frequency`, `recency`, `T`, and for spend
    /// `monetary_value`), already in the model's time unit.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// The customer column: a name (CSV, Parquet; default customer_id) or a 1-based column number
    /// (whitespace text; default 1).
    #[arg(long)]
    pub customer_col: Option<String>,
    /// The date column (YYYY-MM-DD, YYYYMMDD, or a timestamp): name or number (default date, or 2).
    #[arg(long)]
    pub date_col: Option<String>,
    /// The amount column: name or number (default amount, or 4 as in CDNOW).
    #[arg(long)]
    pub amount_col: Option<String>,
    /// The last day of the calibration period (YYYY-MM-DD).
    #[arg(long, required_unless_present = "summary")]
    pub calibration_end: Option<chrono::NaiveDate>,
    /// The last day of the holdout period (YYYY-MM-DD): compare predictions with what happened.
    #[arg(long, conflicts_with = "summary")]
    pub holdout_end: Option<chrono::NaiveDate>,
    /// The model's time unit: day or week.
    #[arg(long, default_value = "week")]
    pub time_unit: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Propose a `[[sources]]` block (format, encoding, delimiter, header, typed fields) from a sample
    /// of a file; review it and paste it into the job spec.
    Infer {
        /// The file to sample (delimited or whitespace text, JSON lines, Parquet; .gz/.zst allowed).
        file: PathBuf,
        /// The location to write into the block (default: the file as given).
        #[arg(long)]
        location: Option<String>,
    },
}

/// How a pull compares with the run before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportMode {
    /// Everyone in the segment.
    Full,
    /// Only customers who were not in the last pull.
    Adds,
    /// Additions, changes and removals against the last pull.
    Diff,
}

impl ExportMode {
    /// The mode as export specs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Adds => "adds",
            Self::Diff => "diff",
        }
    }
}

/// What `clientele export` pulls and where it writes.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The segment id (as in `clientele segments`).
    pub segment: String,
    /// The destination format: csv, parquet, mailchimp, hubspot, salesforce_mc, braze,
    /// google_ads or meta.
    #[arg(long = "to")]
    pub format: String,
    /// A directory or object-store URL to write into (default: the current directory).
    #[arg(long, default_value = ".")]
    pub out: String,
    /// full, adds or diff (against the run before).
    #[arg(long, value_enum, default_value = "full")]
    pub mode: ExportMode,
    /// csv and parquet: the customer_view columns to write after customer_id.
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// ISO 3166 country of the customers, for the ad platforms.
    #[arg(long, default_value = "GB")]
    pub country: String,
    /// The calling code of national phone numbers.
    #[arg(long, default_value = "44")]
    pub calling_code: String,
    /// Pull even when the run published no suppression list (its job has no export step): only
    /// opt-outs and contact-level suppression then apply.
    #[arg(long)]
    pub without_suppression_list: bool,
    /// The channel the list is for (email, phone, sms, post, ads): only customers whose consent on
    /// it is granted are pulled. Default: the format's (email for the email tools, ads for Google
    /// Ads and Meta); csv and parquet without it apply only the general opt-out.
    #[arg(long)]
    pub channel: Option<String>,
    /// Also pull customers whose consent on the channel is unknown (never those who denied it).
    #[arg(long)]
    pub allow_unknown_consent: bool,
    /// The run to pull from, by as-of date (default: the latest published).
    #[arg(long)]
    pub as_of: Option<chrono::NaiveDate>,
    /// The warehouse: a directory or URL.
    #[arg(
        long,
        env = "CLIENTELE_WAREHOUSE",
        default_value = "clientele-demo/warehouse"
    )]
    pub warehouse: String,
}
