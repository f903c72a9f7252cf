//! Cutting one record into the text of each field, by format.

use std::borrow::Cow;

use crate::spec::{FieldPlan, Position};

/// A record-level problem: the field it concerns (if one) and the reason.
pub(crate) type Reject = (Option<String>, String);

/// Fixed-width: fields at character positions. A record shorter than the layout is rejected whole.
pub(crate) fn split_fixed<'a>(
    line: &'a str,
    fields: &[FieldPlan],
    out: &mut Vec<Option<Cow<'a, str>>>,
) -> Result<(), Reject> {
    let needed = fields
        .iter()
        .filter_map(|f| match f.position {
            Position::Chars { end, .. } => Some(end),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    // Byte offsets of every character, only when the line is not plain ASCII.
    let offsets: Option<Vec<usize>> = (!line.is_ascii()).then(|| {
        line.char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(line.len()))
            .collect()
    });
    let chars = offsets.as_ref().map_or(line.len(), |o| o.len() - 1);
    if chars < needed {
        return Err((
            None,
            format!("the record is {chars} characters long; the layout needs {needed}"),
        ));
    }
    for f in fields {
        if let Position::Chars { start, end } = f.position {
            let text = match &offsets {
                None => &line[start..end],
                Some(o) => &line[o[start]..o[end]],
            };
            out.push(Some(Cow::Borrowed(text)));
        }
    }
    Ok(())
}

/// Whitespace-aligned: columns separated by runs of spaces or tabs; the count must match the layout.
pub(crate) fn split_whitespace<'a>(
    line: &'a str,
    fields: &[FieldPlan],
    out: &mut Vec<Option<Cow<'a, str>>>,
) -> Result<(), Reject> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let needed = fields
        .iter()
        .filter_map(|f| match f.position {
            Position::Column(c) => Some(c + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    if cols.len() < needed {
        return Err((
            None,
            format!(
                "the record has {} columns; the layout needs {needed}",
                cols.len()
            ),
        ));
    }
    for f in fields {
        if let Position::Column(c) = f.position {
            out.push(cols.get(c).map(|s| Cow::Borrowed(*s)));
        }
    }
    if cols.len() > needed {
        return Err((
            None,
            format!(
                "the record has {} columns; the layout has {needed}",
                cols.len()
            ),
        ));
    }
    Ok(())
}

/// JSON lines: one object per line; fields by dotted path; a missing path is an empty field.
pub(crate) fn split_json(
    line: &str,
    fields: &[FieldPlan],
    out: &mut Vec<Option<Cow<'static, str>>>,
) -> Result<(), Reject> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| (None, format!("not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err((None, "the line is valid JSON but not an object".into()));
    }
    for f in fields {
        let Position::JsonPath(path) = &f.position else {
            continue;
        };
        let mut node = Some(&value);
        for key in path {
            node = node.and_then(|n| n.get(key));
        }
        out.push(match node {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(Cow::Owned(s.clone())),
            Some(serde_json::Value::Bool(b)) => {
                Some(Cow::Borrowed(if *b { "true" } else { "false" }))
            }
            Some(serde_json::Value::Number(n)) => Some(Cow::Owned(n.to_string())),
            Some(other) => Some(Cow::Owned(other.to_string())),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::FieldType;

    fn f(name: &str, position: Position) -> FieldPlan {
        FieldPlan {
            name: name.into(),
            ty: FieldType::Utf8,
            position,
            nullable: true,
            trim: true,
            unknown: vec![],
            rules: Default::default(),
        }
    }

    #[test]
    fn fixed_width_counts_characters_not_bytes() {
        let fields = [
            f("a", Position::Chars { start: 0, end: 4 }),
            f("b", Position::Chars { start: 4, end: 6 }),
        ];
        let mut out = Vec::new();
        assert!(split_fixed("Zoë 42", &fields, &mut out).is_ok());
        assert_eq!(
            out,
            vec![Some(Cow::Borrowed("Zoë ")), Some(Cow::Borrowed("42"))]
        );
        out.clear();
        assert!(
            split_fixed("Zoë", &fields, &mut out).is_err_and(|e| e.1.contains("3 characters long"))
        );
    }

    #[test]
    fn whitespace_columns_must_match() {
        let fields = [f("a", Position::Column(0)), f("b", Position::Column(1))];
        let mut out = Vec::new();
        assert!(split_whitespace("  1   19970101 ", &fields, &mut out).is_ok());
        assert_eq!(out[1].as_deref(), Some("19970101"));
        out.clear();
        assert!(split_whitespace("1", &fields, &mut out).is_err());
        out.clear();
        assert!(split_whitespace("1 2 3", &fields, &mut out).is_err());
    }

    #[test]
    fn json_paths_reach_nested_values() {
        let fields = [
            f(
                "city",
                Position::JsonPath(vec!["address".into(), "city".into()]),
            ),
            f("x", Position::JsonPath(vec!["x".into()])),
        ];
        let mut out = Vec::new();
        assert!(split_json(r#"{"address":{"city":"Köln"},"x":null}"#, &fields, &mut out).is_ok());
        assert_eq!(out, vec![Some(Cow::Owned("Köln".to_string())), None]);
        out.clear();
        assert!(
            split_json(r#"{"address":"#, &fields, &mut out)
                .is_err_and(|e| e.1.starts_with("not valid JSON"))
        );
        out.clear();
        assert!(split_json("[1]", &fields, &mut out).is_err());
    }
}
