//! Arrow column builders fed with checked [`Value`]s.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;

use crate::spec::{FieldType, SourcePlan};
use crate::values::Value;

enum Column {
    Utf8(StringBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Bool(BooleanBuilder),
}

impl Column {
    fn new(ty: &FieldType) -> Self {
        match ty {
            FieldType::Utf8 => Self::Utf8(StringBuilder::new()),
            FieldType::Int64 => Self::Int64(Int64Builder::new()),
            FieldType::Float64 => Self::Float64(Float64Builder::new()),
            FieldType::Decimal { precision, scale } => {
                Self::Decimal(Decimal128Builder::new(), *precision, *scale)
            }
            FieldType::Date { .. } => Self::Date(Date32Builder::new()),
            FieldType::Timestamp { .. } => Self::Ts(TimestampMicrosecondBuilder::new()),
            FieldType::Boolean { .. } => Self::Bool(BooleanBuilder::new()),
        }
    }

    /// Appends a value; a value of the wrong kind is a bug and becomes an error.
    fn append(&mut self, v: &Value<'_>) -> Result<(), String> {
        match (self, v) {
            (Self::Utf8(b), Value::Null) => b.append_null(),
            (Self::Int64(b), Value::Null) => b.append_null(),
            (Self::Float64(b), Value::Null) => b.append_null(),
            (Self::Decimal(b, ..), Value::Null) => b.append_null(),
            (Self::Date(b), Value::Null) => b.append_null(),
            (Self::Ts(b), Value::Null) => b.append_null(),
            (Self::Bool(b), Value::Null) => b.append_null(),
            (Self::Utf8(b), Value::Str(s)) => b.append_value(s),
            (Self::Int64(b), Value::I64(v)) => b.append_value(*v),
            (Self::Float64(b), Value::F64(v)) => b.append_value(*v),
            (Self::Decimal(b, ..), Value::Dec(v)) => b.append_value(*v),
            (Self::Date(b), Value::Date(v)) => b.append_value(*v),
            (Self::Ts(b), Value::Ts(v)) => b.append_value(*v),
            (Self::Bool(b), Value::Bool(v)) => b.append_value(*v),
            (_, v) => return Err(format!("value {v:?} does not match its column type")),
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef, String> {
        Ok(match self {
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Decimal(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| e.to_string())?,
            ),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Ts(b) => Arc::new(b.finish().with_timezone("UTC")),
            Self::Bool(b) => Arc::new(b.finish()),
        })
    }
}

/// Accumulates the good rows of a source into record batches of the raw table's schema.
pub(crate) struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<Column>,
    /// The file of each row, as runs of rows from the same file.
    files: Vec<(String, usize)>,
    lines: Int64Builder,
    rows: usize,
}

impl BatchBuilder {
    pub(crate) fn new(plan: &SourcePlan) -> Self {
        Self {
            schema: plan.arrow_schema(),
            columns: plan.fields.iter().map(|f| Column::new(&f.ty)).collect(),
            files: Vec::new(),
            lines: Int64Builder::new(),
            rows: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// Appends one row whose values were all converted successfully.
    pub(crate) fn push(
        &mut self,
        values: &[Value<'_>],
        file: &str,
        line: u64,
    ) -> Result<(), String> {
        for (col, v) in self.columns.iter_mut().zip(values) {
            col.append(v)?;
        }
        match self.files.last_mut() {
            Some((f, n)) if f == file => *n += 1,
            _ => self.files.push((file.to_string(), 1)),
        }
        self.lines
            .append_value(i64::try_from(line).unwrap_or(i64::MAX));
        self.rows += 1;
        Ok(())
    }

    /// Takes the rows gathered so far as one batch.
    pub(crate) fn take(&mut self) -> Result<RecordBatch, String> {
        let mut arrays = Vec::with_capacity(self.columns.len() + 2);
        for c in &mut self.columns {
            arrays.push(c.finish()?);
        }
        let bytes: usize = self.files.iter().map(|(f, n)| f.len() * n).sum();
        let mut files = StringBuilder::with_capacity(self.rows, bytes);
        for (f, n) in self.files.drain(..) {
            for _ in 0..n {
                files.append_value(&f);
            }
        }
        arrays.push(Arc::new(files.finish()));
        arrays.push(Arc::new(self.lines.finish()));
        self.rows = 0;
        RecordBatch::try_new(Arc::clone(&self.schema), arrays).map_err(|e| e.to_string())
    }
}
