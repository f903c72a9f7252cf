//! COBOL copybook text to a tree of data items (the subset mainframe extracts use).

use std::fmt;

/// How a numeric or alphanumeric item is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// One byte per character or digit (zoned decimal for numbers).
    Display,
    /// COMP-3: two digits per byte, the sign in the last nibble.
    Packed,
    /// COMP / COMP-4 / COMP-5 / BINARY: big-endian two's complement.
    Binary,
}

/// Where the sign of a DISPLAY number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignPosition {
    /// Overpunched in the zone of the last digit (the default).
    Trailing,
    /// Overpunched in the zone of the first digit.
    Leading,
    /// A separate `+` or `-` byte after the digits.
    TrailingSeparate,
    /// A separate `+` or `-` byte before the digits.
    LeadingSeparate,
}

/// What a PIC clause says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picture {
    /// `X(n)`, `A(n)` or an edited picture: characters.
    Alphanumeric { chars: usize },
    /// `S9(n)V9(m)`: digits, of which `scale` after the implied decimal point.
    Numeric {
        signed: bool,
        digits: usize,
        scale: usize,
    },
}

/// One data item of the copybook.
#[derive(Debug, Clone)]
pub struct Item {
    pub level: u8,
    /// Upper-case COBOL name; `FILLER` for unnamed items.
    pub name: String,
    pub picture: Option<Picture>,
    pub usage: Usage,
    pub sign: SignPosition,
    pub occurs: usize,
    pub redefines: Option<String>,
    pub children: Vec<Item>,
    /// Line of the copybook where the item starts.
    pub line: usize,
}

impl Item {
    pub fn is_filler(&self) -> bool {
        self.name == "FILLER"
    }
}

/// A problem in a copybook, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Strips sequence numbers (columns 1-6), the indicator (column 7) and the identification area
/// (columns 73-80) of fixed-format copybooks; free-format text is kept as it is. Comment lines
/// (`*` or `/` as indicator, or `*>` anywhere) become empty, so line numbers stay right.
fn source_lines(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let fixed = lines.iter().filter(|l| !l.trim().is_empty()).all(|l| {
        let chars: Vec<char> = l.chars().collect();
        chars
            .iter()
            .take(6)
            .all(|c| c.is_ascii_digit() || *c == ' ')
            && chars
                .get(6)
                .is_none_or(|c| matches!(c, ' ' | '*' | '/' | '-'))
    });
    lines
        .iter()
        .map(|l| {
            let content: String = if fixed {
                let chars: Vec<char> = l.chars().collect();
                if matches!(chars.get(6), Some('*' | '/')) {
                    return String::new();
                }
                chars.iter().skip(7).take(65).collect()
            } else {
                if l.trim_start().starts_with('*') {
                    return String::new();
                }
                (*l).to_string()
            };
            match content.find("*>") {
                Some(i) => content[..i].to_string(),
                None => content,
            }
        })
        .collect()
}

/// Words of one entry with the line each starts on; quoted literals are one word.
fn entries(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut start_line = 0;
    for (i, line) in source_lines(text).iter().enumerate() {
        let mut chars = line.chars().peekable();
        let mut word = String::new();
        let flush = |word: &mut String, words: &mut Vec<String>| {
            if !word.is_empty() {
                words.push(std::mem::take(word));
            }
        };
        while let Some(c) = chars.next() {
            if words.is_empty() && word.is_empty() && !c.is_whitespace() {
                start_line = i + 1;
            }
            match c {
                '\'' | '"' => {
                    word.push(c);
                    for q in chars.by_ref() {
                        word.push(q);
                        if q == c {
                            break;
                        }
                    }
                }
                '.' if chars.peek().is_none_or(|n| n.is_whitespace()) => {
                    flush(&mut word, &mut words);
                    if !words.is_empty() {
                        out.push((start_line, std::mem::take(&mut words)));
                    }
                }
                c if c.is_whitespace() || c == ',' || c == ';' => flush(&mut word, &mut words),
                c => word.push(c),
            }
        }
        flush(&mut word, &mut words);
    }
    if !words.is_empty() {
        out.push((start_line, words));
    }
    out
}

/// Expands `X(3)9` into `XXX9` and checks the characters.
fn expand_picture(pic: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = pic.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'(') {
            chars.next();
            let count: String = chars.by_ref().take_while(|&d| d != ')').collect();
            let n: usize = count
                .trim()
                .parse()
                .map_err(|_| format!("PIC {pic}: '({count})' is not a repeat count"))?;
            if n == 0 || n > 1_000_000 {
                return Err(format!("PIC {pic}: repeat count {n} is out of range"));
            }
            out.extend(std::iter::repeat_n(c.to_ascii_uppercase(), n));
        } else {
            out.push(c.to_ascii_uppercase());
        }
    }
    Ok(out)
}

/// Interprets a PIC string.
pub fn parse_picture(pic: &str) -> Result<Picture, String> {
    let p = expand_picture(pic)?;
    if p.is_empty() {
        return Err("an empty PIC clause".into());
    }
    let numeric_only = p.chars().all(|c| matches!(c, '9' | 'S' | 'V'));
    if numeric_only {
        let signed = p.starts_with('S');
        if p.chars().skip(1).any(|c| c == 'S') {
            return Err(format!("PIC {pic}: S must come first"));
        }
        let body = p.trim_start_matches('S');
        let (int, frac) = body.split_once('V').unwrap_or((body, ""));
        if frac.contains('V') {
            return Err(format!("PIC {pic}: more than one V"));
        }
        let digits = int.len() + frac.len();
        if digits == 0 {
            return Err(format!("PIC {pic}: no digits"));
        }
        if digits > 38 {
            return Err(format!("PIC {pic}: {digits} digits (at most 38)"));
        }
        return Ok(Picture::Numeric {
            signed,
            digits,
            scale: frac.len(),
        });
    }
    if p.contains('P') {
        return Err(format!(
            "PIC {pic}: scaling positions (P) are not supported"
        ));
    }
    // Alphanumeric and edited pictures are read as text of their display width.
    let mut chars = p.chars().filter(|&c| c != 'V' && c != 'S').count();
    // CR and DB take two positions each but were counted as two letters already.
    if chars == 0 {
        chars = p.len();
    }
    Ok(Picture::Alphanumeric { chars })
}

/// Parses copybook text into its 01-level records (a copybook of bare 05 items gets one record).
pub fn parse(text: &str) -> Result<Vec<Item>, ParseError> {
    let mut flat: Vec<Item> = Vec::new();
    for (line, words) in entries(text) {
        let err = |message: String| ParseError { line, message };
        let mut w = words.iter().map(String::as_str).peekable();
        let level_word = w.next().unwrap_or_default();
        let level: u8 = level_word
            .parse()
            .map_err(|_| err(format!("expected a level number, found '{level_word}'")))?;
        match level {
            88 => continue, // condition names hold no data
            66 => return Err(err("RENAMES (level 66) is not supported".into())),
            1..=49 | 77 => {}
            _ => return Err(err(format!("level {level} is not a data level"))),
        }
        let mut item = Item {
            level: if level == 77 { 1 } else { level },
            name: "FILLER".into(),
            picture: None,
            usage: Usage::Display,
            sign: SignPosition::Trailing,
            occurs: 1,
            redefines: None,
            children: Vec::new(),
            line,
        };
        if let Some(&next) = w.peek() {
            let upper = next.to_ascii_uppercase();
            if !is_clause(&upper) {
                item.name = upper;
                w.next();
            }
        }
        let mut sign_leading = false;
        let mut sign_separate = false;
        while let Some(word) = w.next() {
            let upper = word.to_ascii_uppercase();
            match upper.as_str() {
                "PIC" | "PICTURE" => {
                    let mut pic = w.next().unwrap_or_default();
                    if pic.eq_ignore_ascii_case("IS") {
                        pic = w.next().unwrap_or_default();
                    }
                    item.picture = Some(parse_picture(pic).map_err(err)?);
                }
                "USAGE" | "IS" | "TIMES" | "SYNC" | "SYNCHRONIZED" | "JUST" | "JUSTIFIED"
                | "RIGHT" | "LEFT" | "DISPLAY" | "GLOBAL" | "EXTERNAL" => {}
                "COMP-3" | "COMPUTATIONAL-3" | "PACKED-DECIMAL" => item.usage = Usage::Packed,
                "COMP" | "COMP-4" | "COMP-5" | "COMPUTATIONAL" | "COMPUTATIONAL-4"
                | "COMPUTATIONAL-5" | "BINARY" => item.usage = Usage::Binary,
                "COMP-1" | "COMP-2" | "COMPUTATIONAL-1" | "COMPUTATIONAL-2" => {
                    return Err(err(format!(
                        "{upper} (floating point) is not supported; ask for it with a sample file"
                    )));
                }
                "OCCURS" => {
                    let n = w.next().unwrap_or_default();
                    item.occurs = n
                        .parse()
                        .ok()
                        .filter(|&n: &usize| (1..=100_000).contains(&n))
                        .ok_or_else(|| err(format!("OCCURS '{n}' is not a count")))?;
                    if w.peek().is_some_and(|x| x.eq_ignore_ascii_case("TO")) {
                        return Err(err(
                            "OCCURS ... DEPENDING ON (variable occurrences) is not supported"
                                .into(),
                        ));
                    }
                }
                "REDEFINES" => {
                    item.redefines = Some(w.next().unwrap_or_default().to_ascii_uppercase());
                }
                "SIGN" => {}
                "LEADING" => sign_leading = true,
                "TRAILING" => sign_leading = false,
                "SEPARATE" => sign_separate = true,
                "CHARACTER" => {}
                "VALUE" | "VALUES" => {
                    // The initial value does not affect the layout; skip to the next clause.
                    while w
                        .peek()
                        .is_some_and(|x| !is_clause(&x.to_ascii_uppercase()))
                    {
                        w.next();
                    }
                }
                "BLANK" => {
                    // BLANK WHEN ZERO
                    w.next();
                    if w.peek().is_some_and(|x| x.eq_ignore_ascii_case("ZERO")) {
                        w.next();
                    }
                }
                "INDEXED" | "ASCENDING" | "DESCENDING" => {
                    // OCCURS ... INDEXED BY name / KEY IS name
                    w.next();
                    while w
                        .peek()
                        .is_some_and(|x| !is_clause(&x.to_ascii_uppercase()))
                    {
                        w.next();
                    }
                }
                other => return Err(err(format!("'{other}' is not understood here"))),
            }
        }
        item.sign = match (sign_leading, sign_separate) {
            (false, false) => SignPosition::Trailing,
            (true, false) => SignPosition::Leading,
            (false, true) => SignPosition::TrailingSeparate,
            (true, true) => SignPosition::LeadingSeparate,
        };
        if item.usage != Usage::Display
            && !matches!(item.picture, Some(Picture::Numeric { .. }) | None)
        {
            return Err(err(format!(
                "{}: COMP usage needs a numeric PIC (9, S, V)",
                item.name
            )));
        }
        flat.push(item);
    }
    build_tree(flat)
}

fn is_clause(w: &str) -> bool {
    matches!(
        w,
        "PIC"
            | "PICTURE"
            | "USAGE"
            | "COMP"
            | "COMP-1"
            | "COMP-2"
            | "COMP-3"
            | "COMP-4"
            | "COMP-5"
            | "COMPUTATIONAL"
            | "COMPUTATIONAL-3"
            | "PACKED-DECIMAL"
            | "BINARY"
            | "DISPLAY"
            | "OCCURS"
            | "REDEFINES"
            | "SIGN"
            | "VALUE"
            | "VALUES"
            | "SYNC"
            | "SYNCHRONIZED"
            | "JUST"
            | "JUSTIFIED"
            | "BLANK"
            | "INDEXED"
            | "ASCENDING"
            | "DESCENDING"
    )
}

/// Nests the items by level number.
fn build_tree(flat: Vec<Item>) -> Result<Vec<Item>, ParseError> {
    let Some(first) = flat.first() else {
        return Err(ParseError {
            line: 1,
            message: "the copybook declares no data items".into(),
        });
    };
    let top_level = first.level;
    // A stack of open groups, outermost first.
    let mut stack: Vec<Item> = Vec::new();
    let mut roots: Vec<Item> = Vec::new();
    let close = |stack: &mut Vec<Item>, roots: &mut Vec<Item>| {
        if let Some(done) = stack.pop() {
            match stack.last_mut() {
                Some(parent) => parent.children.push(done),
                None => roots.push(done),
            }
        }
    };
    for item in flat {
        if item.level < top_level {
            return Err(ParseError {
                line: item.line,
                message: format!(
                    "level {:02} is above the first item's level {top_level:02}",
                    item.level
                ),
            });
        }
        while stack.last().is_some_and(|open| open.level >= item.level) {
            close(&mut stack, &mut roots);
        }
        if let Some(parent) = stack.last()
            && parent.picture.is_some()
        {
            return Err(ParseError {
                line: item.line,
                message: format!(
                    "{} is nested under {}, which has a PIC clause and so cannot be a group",
                    item.name, parent.name
                ),
            });
        }
        stack.push(item);
    }
    while !stack.is_empty() {
        close(&mut stack, &mut roots);
    }
    for item in &roots {
        check_groups(item)?;
    }
    // Bare items without an 01 record around them form one record.
    if top_level != 1 {
        return Ok(vec![Item {
            level: 1,
            name: "RECORD".into(),
            picture: None,
            usage: Usage::Display,
            sign: SignPosition::Trailing,
            occurs: 1,
            redefines: None,
            line: roots.first().map_or(1, |r| r.line),
            children: roots,
        }]);
    }
    Ok(roots)
}

fn check_groups(item: &Item) -> Result<(), ParseError> {
    if item.picture.is_none() && item.children.is_empty() {
        return Err(ParseError {
            line: item.line,
            message: format!(
                "{} has neither a PIC clause nor subordinate items",
                item.name
            ),
        });
    }
    item.children.iter().try_for_each(check_groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures() {
        assert_eq!(
            parse_picture("S9(7)V99"),
            Ok(Picture::Numeric {
                signed: true,
                digits: 9,
                scale: 2
            })
        );
        assert_eq!(
            parse_picture("X(12)"),
            Ok(Picture::Alphanumeric { chars: 12 })
        );
        assert_eq!(
            parse_picture("ZZ9.99"),
            Ok(Picture::Alphanumeric { chars: 6 })
        );
        assert!(parse_picture("9(0)").is_err());
        assert!(parse_picture("9(40)").is_err());
    }

    #[test]
    fn fixed_format_with_sequence_numbers_and_comments() {
        let text = "\
000100* CUSTOMER MASTER
000200 01  CUST-REC.                                                    CUSTMAST
000300     05  CUST-ID          PIC 9(6).
000400     05  CUST-NAME        PIC X(20).
000500     05  BALANCE          PIC S9(7)V99 COMP-3.
000600     05  PHONES           OCCURS 2 TIMES.
000700         10  PHONE-NO     PIC X(10).
000800     05  STATUS-CODE      PIC X.
000900         88  ACTIVE       VALUE 'A'.
";
        let records = parse(text).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(records.len(), 1);
        let rec = &records[0];
        assert_eq!(rec.name, "CUST-REC");
        let names: Vec<&str> = rec.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["CUST-ID", "CUST-NAME", "BALANCE", "PHONES", "STATUS-CODE"]
        );
        assert_eq!(rec.children[2].usage, Usage::Packed);
        assert_eq!(rec.children[3].occurs, 2);
        assert_eq!(rec.children[3].children[0].line, 7);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("01 A.\n   05 B PIC X(3) COMP-3.\n").err();
        assert_eq!(e.map(|e| e.line), Some(2));
        let e = parse("01 A.\n   05 B PIC X(3) FROBNICATE.\n").err();
        assert!(e.is_some_and(|e| e.message.contains("FROBNICATE")));
        let e = parse("01 A.\n   05 B PIC X.\n      10 C PIC X.\n").err();
        assert!(e.is_some_and(|e| e.line == 3));
    }
}
