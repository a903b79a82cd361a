//! Tables as the version commands print them: aligned plain text, Markdown
//! or CSV, and the short forms of numbers and values in their cells.

use std::fmt::Write as _;

use serde_json::Value;

/// How a table is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Columns aligned with spaces.
    Plain,
    /// A Markdown table.
    Md,
    /// Comma-separated values, quoted where needed.
    Csv,
}

/// A table: headers, which columns align right, rows of cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub right: Vec<bool>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str], right: &[bool]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), right: right.to_vec(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Plain => self.plain(),
            Format::Md => self.markdown(),
            Format::Csv => self.csv(),
        }
    }

    fn widths(&self, min: usize) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h).max(min)).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(width(c));
            }
        }
        widths
    }

    fn line(&self, cells: &[String], widths: &[usize], sep: &str, edges: bool) -> String {
        let mut s = String::new();
        if edges {
            s.push('|');
        }
        for (i, ((c, w), r)) in cells.iter().zip(widths).zip(&self.right).enumerate() {
            let pad = " ".repeat(w - width(c));
            let cell = if *r { format!("{pad}{c}") } else { format!("{c}{pad}") };
            if edges {
                let _ = write!(s, " {cell} |");
            } else {
                if i > 0 {
                    s.push_str(sep);
                }
                s.push_str(&cell);
            }
        }
        if !edges {
            s.truncate(s.trim_end().len());
        }
        s.push('\n');
        s
    }

    fn plain(&self) -> String {
        let widths = self.widths(0);
        let mut out = self.line(&self.headers, &widths, "  ", false);
        for r in &self.rows {
            out.push_str(&self.line(r, &widths, "  ", false));
        }
        out
    }

    fn markdown(&self) -> String {
        // A `|` inside a cell would end it.
        let escaped = Table {
            headers: self.headers.iter().map(|c| c.replace('|', "\\|")).collect(),
            right: self.right.clone(),
            rows: self.rows.iter().map(|r| r.iter().map(|c| c.replace('|', "\\|")).collect()).collect(),
        };
        let widths = escaped.widths(3);
        let mut out = escaped.line(&escaped.headers, &widths, "", true);
        out.push('|');
        for (w, r) in widths.iter().zip(&self.right) {
            let dashes = "-".repeat(*w);
            let _ = if *r { write!(out, " {}: |", &dashes[1..]) } else { write!(out, " {dashes} |") };
        }
        out.push('\n');
        for r in &escaped.rows {
            out.push_str(&escaped.line(r, &widths, "", true));
        }
        out
    }

    fn csv(&self) -> String {
        let field = |c: &str| {
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.to_string()
            }
        };
        let mut out = String::new();
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            out.push_str(&r.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// A value for a table cell: numbers short, strings bare, the rest as
/// compact JSON, cut at 40 characters.
pub fn value_text(v: &Value) -> String {
    let s = match v {
        Value::Number(n) if n.is_f64() => number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(39).collect::<String>())
    } else {
        s
    }
}

/// An optional value: `-` when absent.
pub fn cell(v: Option<&Value>) -> String {
    v.map(value_text).unwrap_or_else(|| "-".into())
}

/// A float with at most 4 decimals, trailing zeros dropped; tiny ones in
/// scientific notation.
pub fn number(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        return format!("{x:.2e}");
    }
    let s = format!("{x:.4}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// A number with its sign.
pub fn signed(x: f64) -> String {
    let s = number(x);
    if x > 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

/// An integer with its sign.
pub fn signed_int(x: i64) -> String {
    if x > 0 {
        format!("+{x}")
    } else {
        x.to_string()
    }
}

/// Dotted metric names grouped for display: a name `P.R.C` whose prefix
/// `P` has at least two rows `R` (per category, per split) goes to a table
/// named `P` with one row per `R` and one column per `C`; every other name
/// stays a flat row. Returns (flat names, tables in order of first name).
pub fn nest<'a>(names: impl IntoIterator<Item = &'a str>) -> (Vec<&'a str>, Vec<Nested<'a>>) {
    let names: Vec<&str> = names.into_iter().collect();
    let split = |n: &'a str| -> Option<(&'a str, &'a str, &'a str)> {
        let (rest, col) = n.rsplit_once('.')?;
        let (prefix, row) = rest.rsplit_once('.')?;
        Some((prefix, row, col))
    };
    let mut rows_of: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for n in &names {
        if let Some((p, r, _)) = split(n) {
            let rows = rows_of.entry(p).or_default();
            if !rows.contains(&r) {
                rows.push(r);
            }
        }
    }
    let mut flat = Vec::new();
    let mut tables: Vec<Nested<'a>> = Vec::new();
    for n in names {
        match split(n) {
            Some((p, r, c)) if rows_of[p].len() >= 2 => {
                let t = match tables.iter_mut().position(|t| t.prefix == p) {
                    Some(i) => &mut tables[i],
                    None => {
                        tables.push(Nested { prefix: p, rows: Vec::new(), columns: Vec::new() });
                        tables.last_mut().expect("just pushed")
                    }
                };
                if !t.rows.contains(&r) {
                    t.rows.push(r);
                }
                if !t.columns.contains(&c) {
                    t.columns.push(c);
                }
            }
            _ => flat.push(n),
        }
    }
    (flat, tables)
}

/// One table of [`nest`]: `prefix.ROW.COLUMN` names.
#[derive(Debug, PartialEq, Eq)]
pub struct Nested<'a> {
    pub prefix: &'a str,
    pub rows: Vec<&'a str>,
    pub columns: Vec<&'a str>,
}

impl Nested<'_> {
    /// The full name of a cell.
    pub fn name(&self, row: &str, column: &str) -> String {
        format!("{}.{row}.{column}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.627), "0.627");
        assert_eq!(number(2.26431), "2.2643");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(-0.00001), "-1.00e-5");
        assert_eq!(signed(4.5 - 8.2), "-3.7");
        assert_eq!(signed(0.25), "+0.25");
    }

    #[test]
    fn tables_in_three_formats() {
        let mut t = Table::new(&["name", "n"], &[false, true]);
        t.push(vec!["a".into(), "10".into()]);
        t.push(vec!["long, name".into(), "2".into()]);
        let mut piped = Table::new(&["a"], &[false]);
        piped.push(vec!["x|y".into()]);
        assert_eq!(piped.render(Format::Md), "| a    |\n| ---- |\n| x\\|y |\n");
        assert_eq!(
            t.render(Format::Md),
            "| name       |   n |\n| ---------- | --: |\n| a          |  10 |\n| long, name |   2 |\n"
        );
        assert_eq!(t.render(Format::Plain), "name         n\na           10\nlong, name   2\n");
        assert_eq!(t.render(Format::Csv), "name,n\na,10\n\"long, name\",2\n");
    }

    #[test]
    fn nested_names_become_tables() {
        let names = ["categories.a.rate", "categories.a.total", "categories.b.rate", "loss", "eval.only.one"];
        let (flat, tables) = nest(names);
        assert_eq!(flat, ["loss", "eval.only.one"]);
        assert_eq!(tables, [Nested { prefix: "categories", rows: vec!["a", "b"], columns: vec!["rate", "total"] }]);
    }
}
