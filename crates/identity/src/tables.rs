//! Arrow in and out: records from the input table's batches, and the five output tables.

use hashbrown::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float64Array, Float64Builder, Int32Array,
    Int64Array, RecordBatch, StringArray, StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::model::{ComparisonParameters, Parameters, Weigher};
use crate::records::Records;
use crate::spec::{Kind, Settings};
use crate::{LinksOf, Resolution, stable};

/// Label of the prior's row in the parameters table.
pub const PRIOR_ROW: &str = "(prior)";

fn strings(batch: &RecordBatch, column: &str) -> Result<StringArray> {
    let array = batch.column_by_name(column).ok_or_else(|| {
        let present: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        Error::Input(format!(
            "column '{column}' is missing (present: {})",
            present.join(", ")
        ))
    })?;
    let text = cast(array, &DataType::Utf8)
        .map_err(|e| Error::Input(format!("column '{column}' cannot be read as text: {e}")))?;
    text.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| Error::Input(format!("column '{column}' cannot be read as text")))
}

/// Records from batches holding `record_id`, `source_system` and every compared column (any type
/// that casts to text; dates as `YYYY-MM-DD`). A null or duplicate `record_id` is an error.
/// Placeholders are set aside ([`Records::set_aside_placeholders`]) and shared contact values
/// marked ([`Records::mark_shared_values`]).
pub fn records_from_batches(batches: &[RecordBatch], settings: &Settings) -> Result<Records> {
    let mut loader = RecordLoader::new(settings);
    for batch in batches {
        loader.add(batch)?;
    }
    loader.finish()
}

/// Builds [`Records`] batch by batch, so that a caller can stream its input instead of holding
/// all of it (what [`records_from_batches`] does for batches already held).
pub struct RecordLoader<'a> {
    settings: &'a Settings,
    records: Records,
}

impl<'a> RecordLoader<'a> {
    pub fn new(settings: &'a Settings) -> Self {
        RecordLoader {
            settings,
            records: Records::new(settings),
        }
    }

    /// Adds the rows of one batch.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let ids = strings(batch, "record_id")?;
        let sources = strings(batch, "source_system")?;
        let columns = self
            .settings
            .comparisons
            .iter()
            .map(|c| strings(batch, &c.column))
            .collect::<Result<Vec<_>>>()?;
        let rows = batch.num_rows();
        let mut row_ids = Vec::with_capacity(rows);
        let mut row_sources = Vec::with_capacity(rows);
        for row in 0..rows {
            if ids.is_null(row) {
                return Err(Error::Input(format!(
                    "record_id is null in row {} of the input",
                    self.records.len() + row + 1
                )));
            }
            row_ids.push(ids.value(row));
            row_sources.push(if sources.is_null(row) {
                ""
            } else {
                sources.value(row)
            });
        }
        self.records.push_many(&row_ids, &row_sources, |c, row| {
            columns
                .get(c)
                .and_then(|column| (!column.is_null(row)).then(|| column.value(row)))
        });
        Ok(())
    }

    /// The records, once every batch is added, in the order of their ids whatever the order of
    /// the batches ([`Records::sort_by_id`]): a record id held twice is an error.
    pub fn finish(self) -> Result<Records> {
        let mut records = self.records;
        records.sort_by_id().map_err(|id| {
            Error::Input(format!(
                "record_id '{id}' occurs more than once in the input"
            ))
        })?;
        records.finish_loading();
        records.set_aside_placeholders(self.settings);
        records.mark_shared_values(self.settings);
        Ok(records)
    }
}

fn batch(table: &'static str, schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, columns).map_err(|source| Error::Arrow { table, source })
}

/// The tables identity resolution writes, in the order [`output_tables`] returns them.
pub const OUTPUT_TABLES: [&str; 5] = [
    "int_customer_identity",
    "int_identity_links",
    "int_identity_changes",
    "int_identity_parameters",
    "int_customer_contacts",
];

/// The output tables' schemas, for planning without data.
pub fn output_schemas(settings: &Settings) -> [(&'static str, SchemaRef); 5] {
    let [identity, links, changes, parameters, contacts] = OUTPUT_TABLES;
    [
        (identity, identity_schema()),
        (links, links_schema(settings)),
        (changes, changes_schema()),
        (parameters, parameters_schema()),
        (contacts, contacts_schema()),
    ]
}

/// One output table of a resolution, by its name in [`OUTPUT_TABLES`] (built one at a time, each
/// written and dropped before the next, the step holds one table's arrays at a time).
pub fn output_table(
    name: &str,
    records: &Records,
    settings: &Settings,
    r: &Resolution,
) -> Result<RecordBatch> {
    let [identity, links, changes, parameters, contacts] = OUTPUT_TABLES;
    match name {
        n if n == identity => identity_table(records, r),
        n if n == links => links_table(records, settings, r),
        n if n == changes => changes_table(&r.changes),
        n if n == parameters => parameters_table(&r.parameters, settings),
        n if n == contacts => contacts_table(records, settings, r),
        other => Err(Error::Internal(format!(
            "identity resolution writes no table '{other}'"
        ))),
    }
}

/// Rows (records or links) per slice of [`OutputTable`].
pub const ROWS_PER_SLICE: usize = 250_000;

/// One output table of a resolution built a slice at a time, so that it is written without being
/// held whole: `int_customer_identity` and `int_customer_contacts` by slices of records,
/// `int_identity_links` by slices of links, the two small tables in one slice.
pub struct OutputTable<'a> {
    name: &'static str,
    records: &'a Records,
    settings: &'a Settings,
    resolution: &'a Resolution,
    rows: usize,
    sizes: Vec<i64>,
    contacts: Option<Contacts>,
    links: Option<LinksTable<'a>>,
}

/// `int_identity_links` built a slice of links at a time, from a resolution or from the links of
/// [`crate::Clustered`] (written before the customer ids are given, so that the links can be let
/// go first).
pub struct LinksTable<'a> {
    records: &'a Records,
    settings: &'a Settings,
    of: LinksOf<'a>,
    /// The weights of the parameters, built once for every slice.
    weigher: Weigher<'a>,
}

impl<'a> LinksTable<'a> {
    pub fn new(records: &'a Records, settings: &'a Settings, of: LinksOf<'a>) -> Self {
        LinksTable {
            records,
            settings,
            of,
            weigher: of.parameters.weigher(records),
        }
    }

    /// How many slices there are (at least one, so that an empty table is still written).
    pub fn slices(&self) -> usize {
        self.of.links.len().div_ceil(ROWS_PER_SLICE).max(1)
    }

    /// Slice `i`, `0 <= i < slices()`.
    pub fn slice(&self, i: usize) -> Result<RecordBatch> {
        let rows = self.of.links.len();
        let range = i * ROWS_PER_SLICE..((i + 1) * ROWS_PER_SLICE).min(rows);
        links_rows(self.records, self.settings, self.of, &self.weigher, range)
    }
}

impl<'a> OutputTable<'a> {
    /// The table `name` (one of [`OUTPUT_TABLES`]).
    pub fn new(
        name: &str,
        records: &'a Records,
        settings: &'a Settings,
        resolution: &'a Resolution,
    ) -> Result<Self> {
        let [identity, links, _, _, contacts] = OUTPUT_TABLES;
        let Some(name) = OUTPUT_TABLES.iter().copied().find(|n| *n == name) else {
            return Err(Error::Internal(format!(
                "identity resolution writes no table '{name}'"
            )));
        };
        // Changes and parameters are small: one slice, whole.
        let rows = match name {
            n if n == identity || n == contacts => records.len(),
            n if n == links => resolution.links.len(),
            _ => 0,
        };
        Ok(OutputTable {
            name,
            records,
            settings,
            resolution,
            rows,
            sizes: if name == identity {
                cluster_sizes(resolution)
            } else {
                Vec::new()
            },
            contacts: (name == contacts).then(|| Contacts::new(records, settings)),
            links: (name == links)
                .then(|| LinksTable::new(records, settings, resolution.links_of())),
        })
    }

    /// How many slices there are (at least one, so that an empty table is still written).
    pub fn slices(&self) -> usize {
        match &self.links {
            Some(links) => links.slices(),
            None => self.rows.div_ceil(ROWS_PER_SLICE).max(1),
        }
    }

    /// Slice `i`, `0 <= i < slices()`.
    pub fn slice(&self, i: usize) -> Result<RecordBatch> {
        let [identity, _, changes, parameters, _] = OUTPUT_TABLES;
        let range = i * ROWS_PER_SLICE..((i + 1) * ROWS_PER_SLICE).min(self.rows);
        let (records, settings, r) = (self.records, self.settings, self.resolution);
        if let Some(links) = &self.links {
            return links.slice(i);
        }
        match (self.name, &self.contacts) {
            (_, Some(contacts)) => contacts.rows(records, settings, r, range),
            (n, _) if n == identity => identity_rows(records, r, &self.sizes, range),
            (n, _) if n == changes => changes_table(&r.changes),
            (n, _) if n == parameters => parameters_table(&r.parameters, settings),
            (other, _) => Err(Error::Internal(format!(
                "identity resolution writes no table '{other}'"
            ))),
        }
    }
}

/// The output tables of a resolution, in the order of [`OUTPUT_TABLES`].
pub fn output_tables(
    records: &Records,
    settings: &Settings,
    r: &Resolution,
) -> Result<Vec<(&'static str, RecordBatch)>> {
    OUTPUT_TABLES
        .iter()
        .map(|name| Ok((*name, output_table(name, records, settings, r)?)))
        .collect()
}

/// The schema of `int_customer_contacts`.
pub fn contacts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("record_id", DataType::Utf8, false),
        Field::new("source_system", DataType::Utf8, false),
        Field::new("contact_kind", DataType::Utf8, false),
        Field::new("contact_key", DataType::Utf8, false),
        Field::new("is_shared", DataType::Boolean, false),
    ]))
}

/// Every contact point of one record in the forms a destination receives: each email (kind
/// email) as standardised, each phone in E.164 (kind phone), and the postal key (kind postal):
/// the standardised street, the compact postcode and the first name's initial, joined by `|`
/// (`12 high st|LS14AB|a`; the initial keeps a partner at the same address apart, a record
/// without a first name has none). Placeholders set aside by [`Records::set_aside_placeholders`]
/// are not contacts.
pub fn record_contacts(
    records: &Records,
    settings: &Settings,
    r: usize,
) -> Vec<(&'static str, String)> {
    let value = |c: usize| records.columns.get(c).and_then(|col| col.value(r));
    let first = |kind: Kind| settings.comparisons.iter().position(|c| c.kind == kind);
    let mut out = Vec::new();
    for (c, comparison) in settings.comparisons.iter().enumerate() {
        let kind = match comparison.kind {
            Kind::Email => "email",
            Kind::Phone => "phone",
            _ => continue,
        };
        if let Some(v) = value(c) {
            out.push((kind, v.to_string()));
        }
    }
    if let (Some(street), Some(postcode)) = (
        first(Kind::Address).and_then(value),
        first(Kind::Postcode).and_then(value),
    ) {
        out.push((
            "postal",
            crate::standardise::postal_key_of(
                street,
                postcode,
                first(Kind::Forename).and_then(value),
            ),
        ));
    }
    out
}

/// `int_customer_contacts`: one row per contact point of every record ([`record_contacts`]) with
/// the record's customer id, so that suppression can match an opt-out on any record, linked or
/// not, against every contact a customer holds. `is_shared`: two of the records holding the
/// contact point have first names that disagree (a family's landline, email or home with two
/// people of one initial), so it reaches more than one person.
pub fn contacts_table(
    records: &Records,
    settings: &Settings,
    r: &Resolution,
) -> Result<RecordBatch> {
    Contacts::new(records, settings).rows(records, settings, r, 0..records.len())
}

/// `int_customer_contacts` prepared: which contact points are shared, decided once over every
/// record, and the number of each record's contact points; the rows are then built a slice of
/// records at a time ([`Contacts::rows`]), their text made again from the records, so that the
/// table is never held whole.
pub struct Contacts {
    /// Per distinct contact point, whether it reaches more than one person.
    shared: Vec<bool>,
    /// The contact point numbers of every record: record `r`'s are `of[starts[r]..starts[r + 1]]`.
    of: Vec<u32>,
    starts: Vec<u32>,
}

impl Contacts {
    pub fn new(records: &Records, settings: &Settings) -> Contacts {
        let rule = crate::records::Holders::new(records, settings);
        // Each distinct contact point numbered, in the order `record_contacts` lists a record's.
        // An email or phone column alone of its kind numbers its points by its value codes (its
        // distinct values are distinct points: no text held for them). The postal keys, and the
        // values of a kind two columns share, are held end to end and found by their hash (no
        // string or map entry of their own; dropped once numbered), numbered after the coded ones.
        let kind_name = |kind: Kind| match kind {
            Kind::Email => Some("email"),
            Kind::Phone => Some("phone"),
            _ => None,
        };
        let mut coded = 0u32;
        let base: Vec<Option<u32>> = settings
            .comparisons
            .iter()
            .enumerate()
            .map(|(c, comparison)| {
                let alone = settings
                    .comparisons
                    .iter()
                    .filter(|o| o.kind == comparison.kind)
                    .count()
                    == 1;
                (kind_name(comparison.kind).is_some() && alone).then(|| {
                    let at = coded;
                    let values = records.columns.get(c).map_or(0, |col| col.values.len());
                    coded = coded.saturating_add(u32::try_from(values).unwrap_or(u32::MAX));
                    at
                })
            })
            .collect();
        let first = |kind: Kind| settings.comparisons.iter().position(|c| c.kind == kind);
        let (street, postcode, forename) = (
            first(Kind::Address),
            first(Kind::Postcode),
            first(Kind::Forename),
        );
        let mut points = crate::records::Strings::default();
        let mut number = crate::records::StringIndex::default();
        let mut key = String::new();
        let mut of = Vec::new();
        let mut starts = Vec::with_capacity(records.len() + 1);
        starts.push(0u32);
        let mut intern = |key: &str| coded.saturating_add(number.intern(&mut points, key).0);
        for i in 0..records.len() {
            let value = |c: usize| records.columns.get(c).and_then(|col| col.value(i));
            for (c, comparison) in settings.comparisons.iter().enumerate() {
                let Some(kind) = kind_name(comparison.kind) else {
                    continue;
                };
                let Some(v) = value(c) else { continue };
                let id = match (base.get(c).copied().flatten(), records.columns.get(c)) {
                    (Some(at), Some(col)) => {
                        at.saturating_add(col.codes.get(i).copied().unwrap_or(0))
                    }
                    _ => {
                        key.clear();
                        key.push_str(kind);
                        key.push('\u{1}');
                        key.push_str(v);
                        intern(&key)
                    }
                };
                of.push(id);
            }
            if let (Some(s), Some(p)) = (street.and_then(value), postcode.and_then(value)) {
                key.clear();
                key.push_str("postal\u{1}");
                key.push_str(&crate::standardise::postal_key_of(
                    s,
                    p,
                    forename.and_then(value),
                ));
                of.push(intern(&key));
            }
            starts.push(u32::try_from(of.len()).unwrap_or(u32::MAX));
        }
        let distinct = coded.saturating_add(u32::try_from(points.len()).unwrap_or(u32::MAX));
        let mut shared = vec![false; distinct as usize];
        drop((number, points));
        if let Some(rule) = &rule {
            // By contact point, its records in record order, as the rule looks at them: the
            // records of point p are `by_point[first[p]..first[p + 1]]`, placed by counting (four
            // bytes a holding, where a sorted list of (point, record) took eight and a sort).
            let mut first = vec![0u32; shared.len() + 1];
            for id in &of {
                if let Some(n) = first.get_mut(*id as usize + 1) {
                    *n += 1;
                }
            }
            for p in 1..first.len() {
                first[p] += first[p - 1];
            }
            let mut next = first.clone();
            let mut by_point = vec![0u32; of.len()];
            for (r, bounds) in starts.windows(2).enumerate() {
                for id in of
                    .get(bounds[0] as usize..bounds[1] as usize)
                    .unwrap_or(&[])
                {
                    if let Some(at) = next.get_mut(*id as usize) {
                        if let Some(slot) = by_point.get_mut(*at as usize) {
                            *slot = u32::try_from(r).unwrap_or(u32::MAX);
                        }
                        *at += 1;
                    }
                }
            }
            drop(next);
            let mut holders = Vec::new();
            for (p, slot) in shared.iter_mut().enumerate() {
                holders.clear();
                let (a, b) = (first[p] as usize, first[p + 1] as usize);
                for r in by_point.get(a..b).unwrap_or(&[]) {
                    rule.add(&mut holders, *r as usize);
                }
                *slot = rule.several_people(&holders);
            }
        }
        Contacts { shared, of, starts }
    }

    /// The rows of the records in `range`.
    pub fn rows(
        &self,
        records: &Records,
        settings: &Settings,
        r: &Resolution,
        range: std::ops::Range<usize>,
    ) -> Result<RecordBatch> {
        let mut customer = StringBuilder::new();
        let mut record = StringBuilder::new();
        let mut source = StringBuilder::new();
        let mut kind = StringBuilder::new();
        let mut key = StringBuilder::new();
        let mut is_shared = BooleanBuilder::new();
        for i in range.start..range.end.min(records.len()) {
            let source_name = records
                .sources
                .get(i)
                .and_then(|s| records.source_names.get(*s as usize))
                .map_or("", String::as_str);
            let customer_id = r.customer_id(i);
            let id = records.ids.get(i).unwrap_or("");
            let numbers = match (self.starts.get(i), self.starts.get(i + 1)) {
                (Some(&a), Some(&b)) => self.of.get(a as usize..b as usize).unwrap_or(&[]),
                _ => &[],
            };
            let contacts = record_contacts(records, settings, i);
            if contacts.len() != numbers.len() {
                return Err(Error::Internal(format!(
                    "record {id}: {} contact points, {} numbered",
                    contacts.len(),
                    numbers.len()
                )));
            }
            for ((k, v), n) in contacts.iter().zip(numbers) {
                customer.append_value(customer_id);
                record.append_value(id);
                source.append_value(source_name);
                kind.append_value(k);
                key.append_value(v);
                is_shared.append_value(self.shared.get(*n as usize).copied().unwrap_or(false));
            }
        }
        batch(
            "int_customer_contacts",
            contacts_schema(),
            vec![
                Arc::new(customer.finish()),
                Arc::new(record.finish()),
                Arc::new(source.finish()),
                Arc::new(kind.finish()),
                Arc::new(key.finish()),
                Arc::new(is_shared.finish()),
            ],
        )
    }
}

/// The schema of `int_customer_identity`.
pub fn identity_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("record_id", DataType::Utf8, false),
        Field::new("source_system", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("cluster_size", DataType::Int64, false),
        Field::new("household_id", DataType::Utf8, false),
    ]))
}

/// The schema of `int_identity_links`: fixed columns, then a level and a weight per comparison.
pub fn links_schema(settings: &Settings) -> SchemaRef {
    let mut fields = vec![
        Field::new("record_id_a", DataType::Utf8, false),
        Field::new("record_id_b", DataType::Utf8, false),
        Field::new("blocking_rule", DataType::Utf8, false),
        Field::new("match_weight", DataType::Float64, false),
        Field::new("match_probability", DataType::Float64, false),
        Field::new("is_accepted", DataType::Boolean, false),
    ];
    for c in &settings.comparisons {
        fields.push(Field::new(
            format!("{}_level", c.column),
            DataType::Utf8,
            false,
        ));
        fields.push(Field::new(
            format!("{}_weight", c.column),
            DataType::Float64,
            false,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// The schema of `int_identity_changes`.
pub fn changes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, true),
        Field::new("change", DataType::Utf8, false),
        Field::new("previous_customer_id", DataType::Utf8, true),
        Field::new("records", DataType::Int64, false),
    ]))
}

/// `int_customer_identity`: one row per record with its customer id and the size of its cluster.
pub fn identity_table(records: &Records, r: &Resolution) -> Result<RecordBatch> {
    identity_rows(records, r, &cluster_sizes(r), 0..records.len())
}

/// The number of records of each cluster.
fn cluster_sizes(r: &Resolution) -> Vec<i64> {
    let mut sizes = vec![0i64; r.customer_ids_by_cluster.len()];
    for c in &r.clusters {
        if let Some(n) = sizes.get_mut(*c as usize) {
            *n += 1;
        }
    }
    sizes
}

/// The rows of `int_customer_identity` for the records in `range`.
fn identity_rows(
    records: &Records,
    r: &Resolution,
    sizes: &[i64],
    range: std::ops::Range<usize>,
) -> Result<RecordBatch> {
    let range = range.start.min(records.len())..range.end.min(records.len());
    let source: StringArray = records.sources[range.clone()]
        .iter()
        .map(|s| records.source_names.get(*s as usize).map(String::as_str))
        .collect();
    batch(
        "int_customer_identity",
        identity_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                range.clone().map(|i| records.ids.get(i).unwrap_or("")),
            )),
            Arc::new(source),
            Arc::new(StringArray::from_iter_values(
                range.clone().map(|i| r.customer_id(i)),
            )),
            Arc::new(Int64Array::from_iter_values(range.clone().map(|i| {
                r.clusters
                    .get(i)
                    .and_then(|c| sizes.get(*c as usize))
                    .copied()
                    .unwrap_or(1)
            }))),
            Arc::new(StringArray::from_iter_values(
                range.map(|i| r.household_id(i)),
            )),
        ],
    )
}

/// `int_identity_links`: scored candidate pairs with each comparison's level and weight.
pub fn links_table(records: &Records, settings: &Settings, r: &Resolution) -> Result<RecordBatch> {
    links_rows(
        records,
        settings,
        r.links_of(),
        &r.parameters.weigher(records),
        0..r.links.len(),
    )
}

/// The rows of `int_identity_links` for the links in `range`.
fn links_rows(
    records: &Records,
    settings: &Settings,
    r: LinksOf<'_>,
    weigher: &Weigher<'_>,
    range: std::ops::Range<usize>,
) -> Result<RecordBatch> {
    let n = range.len().min(r.links.len().saturating_sub(range.start));
    let links = r.links.range(range);
    let mut a = StringBuilder::with_capacity(n, n * 12);
    let mut b = StringBuilder::with_capacity(n, n * 12);
    let mut rule = StringBuilder::with_capacity(n, n * 16);
    let mut weight = Float64Builder::with_capacity(n);
    let mut prob = Float64Builder::with_capacity(n);
    let mut accepted = BooleanBuilder::with_capacity(n);
    let width = settings.comparisons.len();
    let mut levels: Vec<StringBuilder> = (0..width).map(|_| StringBuilder::new()).collect();
    let mut weights: Vec<Float64Builder> = (0..width).map(|_| Float64Builder::new()).collect();
    let mut read = 0usize;
    for link in links {
        read += 1;
        a.append_value(records.ids.get(link.a as usize).unwrap_or(""));
        b.append_value(records.ids.get(link.b as usize).unwrap_or(""));
        rule.append_value(
            settings
                .blocking_rules
                .get(link.rule as usize)
                .map_or("", |r| r.label.as_str()),
        );
        weight.append_value(link.weight);
        prob.append_value(link.probability());
        accepted.append_value(link.accepted);
        let link_levels = r.levels(&link);
        let (link_weights, _) = weigher.weights(link.a as usize, link_levels);
        for (c, p) in r.parameters.comparisons.iter().enumerate() {
            let l = link_levels.get(c).copied().unwrap_or(0) as usize;
            levels[c].append_value(p.labels.get(l).map_or("", String::as_str));
            weights[c].append_value(link_weights.get(c).copied().unwrap_or(0.0));
        }
    }
    // Spilled links that could not be read back end the walk early.
    if read != n {
        r.links.read_error()?;
        return Err(Error::Internal(format!(
            "{read} of {n} links read for int_identity_links"
        )));
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(a.finish()),
        Arc::new(b.finish()),
        Arc::new(rule.finish()),
        Arc::new(weight.finish()),
        Arc::new(prob.finish()),
        Arc::new(accepted.finish()),
    ];
    for (l, w) in levels.iter_mut().zip(weights.iter_mut()) {
        columns.push(Arc::new(l.finish()));
        columns.push(Arc::new(w.finish()));
    }
    batch("int_identity_links", links_schema(settings), columns)
}

/// `int_identity_changes`: merges, splits, new and retired customer ids since the last run.
pub fn changes_table(changes: &[stable::Change]) -> Result<RecordBatch> {
    let schema = changes_schema();
    batch(
        "int_identity_changes",
        schema,
        vec![
            Arc::new(
                changes
                    .iter()
                    .map(|c| c.customer_id.as_deref())
                    .collect::<StringArray>(),
            ),
            Arc::new(StringArray::from_iter_values(
                changes.iter().map(|c| c.change),
            )),
            Arc::new(
                changes
                    .iter()
                    .map(|c| c.previous_customer_id.as_deref())
                    .collect::<StringArray>(),
            ),
            Arc::new(Int64Array::from_iter_values(
                changes
                    .iter()
                    .map(|c| i64::try_from(c.records).unwrap_or(i64::MAX)),
            )),
        ],
    )
}

/// The schema of `int_identity_parameters`.
pub fn parameters_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("comparison", DataType::Utf8, false),
        Field::new("level", DataType::Int32, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("m_probability", DataType::Float64, true),
        Field::new("u_probability", DataType::Float64, true),
        Field::new("match_weight", DataType::Float64, false),
        Field::new("m_sessions", DataType::Int64, false),
        Field::new("m_anchors", DataType::Int64, false),
        Field::new("term_frequency", DataType::Boolean, false),
        Field::new("comparison_group", DataType::Utf8, true),
        Field::new("m_where_whole_differs", DataType::Float64, true),
        Field::new("match_weight_where_whole_differs", DataType::Float64, true),
        Field::new("m_anchors_where_whole_differs", DataType::Int64, true),
    ]))
}

/// `int_identity_parameters`: m, u and weight of every level, and the prior as the first row.
pub fn parameters_table(p: &Parameters, settings: &Settings) -> Result<RecordBatch> {
    let mut comparison = vec![PRIOR_ROW.to_string()];
    let mut level = vec![0i32];
    let mut label = vec!["probability two random records match".to_string()];
    let mut m = vec![Some(p.prior)];
    let mut u: Vec<Option<f64>> = vec![None];
    let mut weight = vec![p.prior_weight()];
    let mut sessions = vec![0i64];
    let mut anchors = vec![0i64];
    let mut tf = vec![false];
    let mut groups: Vec<Option<String>> = vec![None];
    let mut m_given: Vec<Option<f64>> = vec![None];
    let mut weight_given: Vec<Option<f64>> = vec![None];
    let mut anchors_given: Vec<Option<i64>> = vec![None];
    for (c, spec) in p.comparisons.iter().zip(&settings.comparisons) {
        for l in 1..c.m.len() {
            let given = c.m_where_whole_differs.as_ref();
            let m_l = given.and_then(|(m, _)| m.get(l).copied());
            m_given.push(m_l);
            // Only an agreeing level is weighed again (never below nothing); the others keep
            // their weight.
            weight_given
                .push(m_l.map(|_| c.weight_where_whole_differs(u8::try_from(l).unwrap_or(0), 0.0)));
            anchors_given.push(given.map(|(_, n)| i64::try_from(*n).unwrap_or(i64::MAX)));
            comparison.push(c.column.clone());
            level.push(i32::try_from(l).unwrap_or(i32::MAX));
            label.push(c.labels.get(l).cloned().unwrap_or_default());
            m.push(Some(c.m[l]));
            u.push(c.u.get(l).copied());
            weight.push(c.weight(u8::try_from(l).unwrap_or(0)));
            sessions.push(i64::try_from(c.m_sessions).unwrap_or(0));
            anchors.push(i64::try_from(c.m_anchors).unwrap_or(0));
            tf.push(c.term_frequency);
            groups.push(spec.group.clone());
        }
    }
    batch(
        "int_identity_parameters",
        parameters_schema(),
        vec![
            Arc::new(StringArray::from(comparison)),
            Arc::new(Int32Array::from(level)),
            Arc::new(StringArray::from(label)),
            Arc::new(Float64Array::from(m)),
            Arc::new(Float64Array::from(u)),
            Arc::new(Float64Array::from(weight)),
            Arc::new(Int64Array::from(sessions)),
            Arc::new(Int64Array::from(anchors)),
            Arc::new(BooleanArray::from(tf)),
            Arc::new(StringArray::from(groups)),
            Arc::new(Float64Array::from(m_given)),
            Arc::new(Float64Array::from(weight_given)),
            Arc::new(Int64Array::from(anchors_given)),
        ],
    )
}

/// Reads the parameters back from `int_identity_parameters` (for `explain-match`), checking them
/// against the comparisons of `settings`.
pub fn parameters_from_batches(batches: &[RecordBatch], settings: &Settings) -> Result<Parameters> {
    let mut prior = None;
    // Per comparison, its rows: level, m, u, and m where the whole differs.
    type LevelRow = (usize, f64, f64, Option<f64>);
    let mut by_column: HashMap<String, Vec<LevelRow>> = HashMap::new();
    for b in batches {
        let comparison = strings(b, "comparison")?;
        let level = strings(b, "level")?;
        let m = strings(b, "m_probability")?;
        let u = strings(b, "u_probability")?;
        // Absent from the parameters of runs before 2026-12-05.
        let m_given = strings(b, "m_where_whole_differs").ok();
        for row in 0..b.num_rows() {
            let num = |a: &StringArray| -> Option<f64> {
                (!a.is_null(row))
                    .then(|| a.value(row).parse().ok())
                    .flatten()
            };
            if comparison.value(row) == PRIOR_ROW {
                prior = num(&m);
                continue;
            }
            let (Some(l), Some(mv), Some(uv)) =
                (level.value(row).parse::<usize>().ok(), num(&m), num(&u))
            else {
                return Err(Error::Input(format!(
                    "parameters row {} is incomplete",
                    row + 1
                )));
            };
            by_column
                .entry(comparison.value(row).to_string())
                .or_default()
                .push((l, mv, uv, m_given.as_ref().and_then(num)));
        }
    }
    let prior = prior.ok_or_else(|| Error::Input("the parameters hold no prior".into()))?;
    let mut comparisons = Vec::new();
    let groups = crate::model::group_indices(settings);
    for (c, group) in settings.comparisons.iter().zip(groups) {
        let rows = by_column.remove(&c.column).ok_or_else(|| {
            Error::Input(format!(
                "the parameters hold no comparison '{}': the spec changed since the run that fitted them",
                c.column
            ))
        })?;
        let n = c.level_count();
        if rows.len() != n - 1 || rows.iter().any(|(l, ..)| *l == 0 || *l >= n) {
            return Err(Error::Input(format!(
                "the parameters of '{}' have {} levels, the spec {}: the spec changed since the run that fitted them",
                c.column,
                rows.len(),
                n - 1
            )));
        }
        let (mut m, mut u) = (vec![0.0; n], vec![0.0; n]);
        let mut m_given = vec![0.0; n];
        let mut given_rows = 0;
        for (l, mv, uv, given) in rows {
            m[l] = mv;
            u[l] = uv;
            if let Some(g) = given {
                m_given[l] = g;
                given_rows += 1;
            }
        }
        comparisons.push(ComparisonParameters {
            column: c.column.clone(),
            labels: std::iter::once("null".to_string())
                .chain(c.level_labels())
                .collect(),
            m,
            u,
            m_sessions: 1,
            m_anchors: 0,
            term_frequency: c.term_frequency,
            group,
            part_of: c.part_of,
            m_where_whole_differs: (given_rows == n - 1).then_some((m_given, 0)),
        });
    }
    Ok(Parameters::new(comparisons, prior, 0, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentitySpec;

    #[test]
    fn the_declared_schemas_are_those_of_the_tables_written() -> Result<()> {
        let settings = IdentitySpec::default().validate()?;
        let records = Records::new(&settings);
        let r = crate::resolve(&records, &settings, &crate::Previous::default())?;
        let written = output_tables(&records, &settings, &r)?;
        for ((name, schema), (written_name, batch)) in
            output_schemas(&settings).iter().zip(&written)
        {
            assert_eq!(name, written_name);
            assert_eq!(schema, &batch.schema(), "{name}");
        }
        Ok(())
    }

    #[test]
    fn records_load_batch_by_batch_and_a_record_id_held_twice_is_refused() -> Result<()> {
        let settings = IdentitySpec::default().validate()?;
        let batch = |ids: &[&str]| -> Result<RecordBatch> {
            let mut columns: Vec<(String, ArrayRef)> = vec![
                (
                    "record_id".into(),
                    Arc::new(StringArray::from(ids.to_vec())) as ArrayRef,
                ),
                (
                    "source_system".into(),
                    Arc::new(StringArray::from(vec!["crm"; ids.len()])),
                ),
            ];
            for c in &settings.comparisons {
                columns.push((
                    c.column.clone(),
                    Arc::new(StringArray::from(vec![Some("x"); ids.len()])),
                ));
            }
            RecordBatch::try_from_iter(columns).map_err(|e| Error::Input(e.to_string()))
        };
        let mut loader = RecordLoader::new(&settings);
        loader.add(&batch(&["a", "b"])?)?;
        loader.add(&batch(&["c"])?)?;
        assert_eq!(
            loader.finish()?.ids.iter().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let mut loader = RecordLoader::new(&settings);
        loader.add(&batch(&["a", "b"])?)?;
        loader.add(&batch(&["c", "b"])?)?;
        match loader.finish() {
            Err(Error::Input(message)) => assert!(message.contains("'b'"), "{message}"),
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("a record id held twice was accepted"),
        }
        Ok(())
    }

    /// The `is_shared` column of the records' contact points, resolved.
    fn shared_flags(records: &Records, settings: &Settings) -> Result<Vec<Option<bool>>> {
        let r = crate::resolve(records, settings, &crate::Previous::default())?;
        let table = contacts_table(records, settings, &r)?;
        let shared = table
            .column_by_name("is_shared")
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
            .ok_or_else(|| Error::Internal("is_shared".into()))?;
        Ok(shared.iter().collect())
    }

    #[test]
    fn a_contact_two_first_names_hold_is_shared() -> Result<()> {
        let settings = IdentitySpec::default().validate()?;
        let mut records = Records::new(&settings);
        // A mother and son share a landline; the son's mobile is his.
        for (id, first, phone) in [
            ("crm:1", "Ann", "01632 960000"),
            ("crm:2", "Tom", "01632 960000"),
            ("web:3", "Tom", "07700 900123"),
            ("web:4", "Thomas", "07700 900123"),
        ] {
            records.push(
                id,
                "s",
                &[
                    Some(first),
                    Some("Lee"),
                    None,
                    None,
                    None,
                    None,
                    Some(phone),
                    None,
                ],
            );
        }
        assert_eq!(
            shared_flags(&records, &settings)?,
            vec![Some(true), Some(true), Some(false), Some(false)]
        );
        Ok(())
    }

    #[test]
    fn a_number_in_two_phone_columns_is_one_contact_point() -> Result<()> {
        let mut comparisons = crate::spec::default_comparisons();
        let mut mobile = comparisons
            .iter()
            .find(|c| c.kind == Kind::Phone)
            .cloned()
            .ok_or_else(|| Error::Internal("no phone comparison".into()))?;
        mobile.column = "mobile".into();
        comparisons.push(mobile);
        let settings = IdentitySpec {
            comparisons: Some(comparisons),
            ..IdentitySpec::default()
        }
        .validate()?;
        let mut records = Records::new(&settings);
        // Ann's landline is Tom's mobile; Tom's landline is Thomas's (the same name) mobile.
        for (id, first, phone, mobile) in [
            ("crm:1", "Ann", Some("01632 960000"), None),
            ("crm:2", "Tom", None, Some("01632 960000")),
            ("web:3", "Tom", Some("01632 960111"), None),
            ("web:4", "Thomas", None, Some("01632 960111")),
        ] {
            let mut raw = vec![
                Some(first),
                Some("Lee"),
                None,
                None,
                None,
                None,
                phone,
                None,
            ];
            raw.push(mobile);
            records.push(id, "s", &raw);
        }
        assert_eq!(
            shared_flags(&records, &settings)?,
            vec![Some(true), Some(true), Some(false), Some(false)]
        );
        Ok(())
    }

    #[test]
    fn every_record_lists_its_contacts_in_the_forms_destinations_receive() -> Result<()> {
        let settings = IdentitySpec::default().validate()?;
        let mut records = Records::new(&settings);
        // first, last, birth, street, postcode, city, phone, email
        records.push(
            "crm:1",
            "crm",
            &[
                Some("Ann"),
                Some("Lee"),
                None,
                Some("12 High Street"),
                Some("ls1 4ab"),
                Some("Leeds"),
                Some("07700 900123"),
                Some(" Ann.Lee@Example.com "),
            ],
        );
        records.push(
            "web:2",
            "web",
            &[
                None,
                Some("Lee"),
                None,
                Some("12 High St"),
                Some("LS1 4AB"),
                None,
                None,
                None,
            ],
        );
        records.push(
            "svc:3",
            "svc",
            &[
                Some("Bo"),
                None,
                None,
                None,
                Some("LS1 4AB"),
                None,
                None,
                Some("not an email"),
            ],
        );
        let contacts: Vec<Vec<(&str, String)>> = (0..3)
            .map(|r| record_contacts(&records, &settings, r))
            .collect();
        let key = |k: &'static str, v: &str| (k, v.to_string());
        assert_eq!(
            contacts[0],
            vec![
                key("phone", "+447700900123"),
                key("email", "ann.lee@example.com"),
                key("postal", "12 high st|LS14AB|a"),
            ]
        );
        // No first name, no initial; no street, no postal key; an invalid email is no contact.
        assert_eq!(contacts[1], vec![key("postal", "12 high st|LS14AB|")]);
        assert!(contacts[2].is_empty(), "{:?}", contacts[2]);
        let r = crate::resolve(&records, &settings, &crate::Previous::default())?;
        let table = contacts_table(&records, &settings, &r)?;
        assert_eq!(table.num_rows(), 4);
        // Nobody else holds Ann's phone and email; her postal key is hers alone (web:2 has no
        // first name, which is no disagreement).
        let shared = table
            .column_by_name("is_shared")
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
            .ok_or_else(|| Error::Internal("is_shared".into()))?;
        assert_eq!(shared.true_count(), 0);
        Ok(())
    }
}
